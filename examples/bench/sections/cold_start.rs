//! Cold start: spawn to `initialize` answered, with an empty store and with a large one,
//! against the echo server.

use anyhow::Result;

use super::{fig, setup};
use crate::rpc::StdioClient;
use crate::{Figure, Opts};

pub async fn run(opts: &Opts) -> Result<Vec<Figure>> {
    let mut empty = Vec::new();
    let mut echo = Vec::new();
    let mut big = Vec::new();
    let tasks = if opts.quick { 1000 } else { 10_000 };
    let (big_data, repo, big_args) = setup(opts, "cold-big")?;
    {
        let store = boocoder::store::Store::open_sqlite(&big_data.join("boocoder.db")).await?;
        for i in 0..tasks {
            let sid = format!("s-{i:012}");
            store
                .insert_task(&boocoder::store::NewTaskRow {
                    retry_of: None,
                    budget: Default::default(),
                    options: Default::default(),
                    id: format!("t-{i:012}"),
                    project_path: repo.display().to_string(),
                    session_id: sid,
                    new_session_provider: Some("noop".into()),
                    new_session_worktree: None,
                    parent_task_id: None,
                    prompt: format!("task {i}"),
                    provider: "noop".into(),
                    model: None,
                    mode: None,
                    permission: None,
                })
                .await?;
        }
        // Leave them terminal so the server has nothing to dispatch.
        for i in 0..tasks {
            store.cancel_pending(&format!("t-{i:012}"), "bench").await?;
        }
        store.close().await;
    }
    for rep in 0..opts.reps.max(3) {
        let (_d, _r, mut a) = setup(opts, &format!("cold-{rep}"))?;
        a.push("serve".into());
        empty.push(
            StdioClient::spawn(&opts.boocoder, &a)
                .await?
                .1
                .as_secs_f64()
                * 1e3,
        );
        let mut b = big_args.clone();
        b.push("serve".into());
        big.push(
            StdioClient::spawn(&opts.boocoder, &b)
                .await?
                .1
                .as_secs_f64()
                * 1e3,
        );
        echo.push(
            StdioClient::spawn(&opts.echo, &["--pipes".into()])
                .await?
                .1
                .as_secs_f64()
                * 1e3,
        );
    }
    Ok(vec![
        fig("cold", "echo spawn→initialize", "ms", echo, None),
        fig(
            "cold",
            "boocoder spawn→initialize, empty store",
            "ms",
            empty,
            Some("echo spawn→initialize"),
        ),
        fig(
            "cold",
            format!("boocoder spawn→initialize, {tasks}-task store"),
            "ms",
            big,
            Some("boocoder spawn→initialize, empty store"),
        ),
    ])
}
