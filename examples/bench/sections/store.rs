//! The store alone: task transitions (insert, claim, finish) per second.

use std::time::Instant;

use anyhow::Result;

use super::fig;
use crate::{Figure, Opts};

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let n = if opts.quick { 200 } else { 2000 };
    let mut out = Vec::new();
    let sqlite = boocoder::store::Store::open_sqlite(&opts.work.path().join("store.db")).await?;
    out.push(fig(
        "store",
        "SQLite task transitions",
        "/s",
        vec![transitions(&sqlite, n, "sq").await?],
        None,
    ));
    sqlite.close().await;
    if let Some(url) = &opts.database_url {
        let pg = boocoder::store::Store::open_postgres(url).await?;
        let tag = format!("pg{}", std::process::id());
        out.push(fig(
            "store",
            "PostgreSQL task transitions",
            "/s",
            vec![transitions(&pg, n / 4, &tag).await?],
            Some("SQLite task transitions"),
        ));
        pg.close().await;
    }
    Ok(out)
}

/// Insert `n` tasks, then claim and finish each: 2n transitions over the elapsed time.
async fn transitions(store: &boocoder::store::Store, n: usize, tag: &str) -> Result<f64> {
    for i in 0..n {
        store
            .insert_task(&boocoder::store::NewTaskRow {
                retry_of: None,
                budget: Default::default(),
                options: Default::default(),
                id: format!("t-{tag}-{i}"),
                project_path: "/bench".into(),
                session_id: format!("s-{tag}-{i}"),
                new_session_provider: Some("noop".into()),
                new_session_worktree: None,
                parent_task_id: None,
                prompt: "x".into(),
                provider: "noop".into(),
                model: None,
                mode: None,
                permission: None,
            })
            .await?;
    }
    let t0 = Instant::now();
    let mut done = 0;
    while let Some(claimed) = store.claim_next("bench", "bench-host").await? {
        let id = claimed.id().to_owned();
        let outcome = boocoder::store::Outcome::Completed {
            summary: "ok".into(),
            final_message: "ok".into(),
        };
        store
            .finish_task(&id, &outcome, Default::default(), &[])
            .await?;
        done += 1;
    }
    anyhow::ensure!(done >= n, "claimed {done} of {n}");
    Ok((2 * done) as f64 / t0.elapsed().as_secs_f64())
}
