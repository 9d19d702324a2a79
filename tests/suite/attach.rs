//! `boocoder attach`: follows a running task's transcript as it is written (here through a
//! running server with `--url`), Ctrl-C detaches without cancelling, and attaching to a
//! finished task (locally) prints its transcript and result.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

#[tokio::test]
async fn attach_follows_live_lines_and_detaching_does_not_cancel() {
    let env = Env::new();
    let (_server, url, _log) = Server::http(&env, &[]).await;
    let c = http_client(&env, &url).await;
    let t = new_task(
        &c,
        json!({"prompt": "say line one\nsleep 1\nsay line two\nsleep 4\nsay the end"}),
    )
    .await;

    let mut attach = Command::new(BIN)
        .args(env.args())
        .args(["--url", &url, "attach", &t.task_id])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("attach");
    let mut lines = BufReader::new(attach.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.expect("read") {
            let done = l.contains("line two");
            seen.push(l);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no live line two: {seen:?}"));
    assert!(seen.iter().any(|l| l.contains("line one")), "{seen:?}");
    // the line arrived while the task still runs
    assert_eq!(task_status(&c, &t.task_id).await.state, TaskState::Running);

    let pid = nix::unistd::Pid::from_raw(attach.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = tokio::time::timeout(Duration::from_secs(10), attach.wait_with_output())
        .await
        .expect("attach exits on Ctrl-C")
        .expect("wait");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it keeps running"),
        "{out:?}"
    );

    let done = wait_done(&c, &t.task_id).await;
    assert_eq!(
        done.state,
        TaskState::Completed,
        "detaching cancelled it: {done:#?}"
    );

    // attaching to a finished task, on the store directly, prints it whole and ends
    let whole = Command::new(BIN)
        .args(env.args())
        .args(["attach", &t.task_id])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("attach");
    let text = String::from_utf8_lossy(&whole.stdout);
    assert!(whole.status.success(), "{text}");
    for want in ["line one", "line two", "the end", "completed in"] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
}
