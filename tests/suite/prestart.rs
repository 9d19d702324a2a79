//! Pre-started agents: with `--prestart`, an ACP agent is started and initialized ahead of
//! need in an empty directory; a new session's first turn takes it (no new process), binds it
//! to the session's worktree (fs and terminals confined there) and a replacement is parked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// Processes whose working directory is `dir`.
fn pids_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cwd: PathBuf = std::fs::read_link(e.path().join("cwd")).ok()?;
            (cwd == dir).then_some(pid)
        })
        .collect()
}

async fn parked(dir: &Path, not: Option<u32>) -> u32 {
    for _ in 0..200 {
        if let Some(p) = pids_in(dir).into_iter().find(|p| Some(*p) != not) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no agent was parked in {}", dir.display());
}

#[tokio::test]
async fn a_pre_started_agent_serves_a_new_session_s_first_turn_with_no_new_process() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--prestart", "fake", "--pool-size", "0"]).await;
    let c = &server.client;
    let park = env.data.join("prestart").join("fake");
    let pid = parked(&park, None).await;

    let s = run_task(
        c,
        json!({"prompt": "pid\nwrite made.txt by a parked agent\nterm pwd\nsay done", "agent": "fake"}),
    )
    .await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    assert_eq!(changed(&s), vec![("made.txt".to_string(), 1, 0)]);
    let text = transcript_text(c, &s.task_id).await;
    assert!(
        text.contains(&format!("pre-started agent `fake` (pid {pid}")),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("started agent")),
        "{text}"
    );
    // the terminal ran in the session's worktree, not where the agent was parked
    let worktree = env.data.join("worktrees").join(&s.session_id);
    assert!(
        text.contains(
            &worktree
                .canonicalize()
                .expect("worktree")
                .display()
                .to_string()
        ),
        "{text}"
    );
    assert!(!park.join("made.txt").exists());

    // a replacement is parked; the taken agent stays the session's warm agent
    let next = parked(&park, Some(pid)).await;
    assert_ne!(next, pid);
    let again = run_task(
        c,
        json!({"prompt": "pid\nsay again", "session_id": s.session_id}),
    )
    .await;
    assert_eq!(again.state, TaskState::Completed, "{again:#?}");
    let text = transcript_text(c, &again.task_id).await;
    assert!(
        text.contains(&format!("reusing warm agent `fake` (pid {pid})")),
        "{text}"
    );
}

/// The fixture's `session/new` log: (pid, cwd) per line.
fn sessions_opened(env: &Env) -> Vec<(u32, String)> {
    std::fs::read_to_string(env.root().join("acp-state").join("session-new.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pid, cwd) = l.split_once(' ')?;
            Some((pid.parse().ok()?, cwd.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn a_parked_agent_opens_its_session_in_a_spare_and_the_next_new_session_takes_both() {
    let env = Env::new();
    let server = Server::stdio(&env, &["--prestart", "fake", "--pool-size", "1"]).await;
    let c = &server.client;
    let park = env.data.join("prestart").join("fake");
    let first = parked(&park, None).await;
    let a = run_task(c, json!({"prompt": "say first", "agent": "fake"})).await;
    assert_eq!(a.state, TaskState::Completed, "{a:#?}");

    // the replacement agent opens a session ahead of need in the spare made after `a`
    let worktrees = env
        .data
        .join("worktrees")
        .canonicalize()
        .expect("worktrees");
    let mut ahead = None;
    for _ in 0..300 {
        ahead = sessions_opened(&env)
            .into_iter()
            .find(|(pid, cwd)| *pid != first && cwd.starts_with(&worktrees.display().to_string()));
        if ahead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (pid, spare) = ahead.expect("no session opened ahead of need in a spare");
    let opened = sessions_opened(&env).len();

    let b = run_task(
        c,
        json!({"prompt": "pid\nwrite made.txt by a pre-opened session\nsay done", "agent": "fake"}),
    )
    .await;
    assert_eq!(b.state, TaskState::Completed, "{b:#?}");
    // the session took that spare (its id is the spare's) and that agent, and no process
    // and no `session/new` were started on its turn's path
    assert_eq!(
        Path::new(&spare),
        worktrees.join(&b.session_id),
        "the new session did not take the spare the agent opened its session in"
    );
    let text = transcript_text(c, &b.task_id).await;
    assert!(
        text.contains(&format!("pre-started agent `fake` (pid {pid}")),
        "{text}"
    );
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    let later: Vec<_> = sessions_opened(&env).into_iter().skip(opened).collect();
    assert!(
        later.iter().all(|(p, _)| *p != pid),
        "the turn opened another session: {later:?}"
    );
    assert_eq!(changed(&b), vec![("made.txt".to_string(), 1, 0)]);
    assert!(Path::new(&spare).join("made.txt").exists());
}
