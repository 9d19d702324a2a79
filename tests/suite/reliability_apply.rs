//! Issue 11, items 1–5 and the apply half of 8: the write path under attack. Concurrent applies
//! from two processes, kill -9 in the middle of a large apply, an I/O error mid-apply, a server
//! killed mid-turn, file modes, awkward names and tree shapes, links leaving the project.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::support::*;

/// Every file under `dir` except `.git`: path bytes → (content or link target, kind).
fn tree(dir: &Path) -> BTreeMap<Vec<u8>, (Vec<u8>, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, (Vec<u8>, u32)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let rel = path
                .strip_prefix(base)
                .expect("prefix")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&path).expect("link");
                out.insert(rel, (t.as_os_str().as_bytes().to_vec(), 0o120000));
            } else if meta.is_dir() {
                walk(base, &path, out);
            } else {
                let mode = meta.permissions().mode() & 0o111;
                out.insert(rel, (std::fs::read(&path).expect("read"), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Run a task to completion in a new session (or in `session`); returns its final status.
async fn completed_task(c: &Client, prompt: &str, session: Option<&str>) -> TaskStatus {
    let mut args = json!({"prompt": prompt});
    if let Some(s) = session {
        args["session_id"] = json!(s);
    }
    let s = run_task(c, args).await;
    assert_eq!(s.state, TaskState::Completed, "{s:#?}");
    s
}

/// `boocoder <verb> …` as a separate process on the same data directory and store.
fn cli(env: &Env, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(env.args()).args(args).env("NO_COLOR", "1");
    cmd.kill_on_drop(true);
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn worktree_of(env: &Env, session: &str) -> PathBuf {
    env.data.join("worktrees").join(session)
}

crate::both_stores!(item1_concurrent_applies_from_two_processes);
/// Two sessions rewrite the same files (and many others); their changes are applied at the
/// same moment by two processes. Exactly one wins; the other is refused naming the shared file,
/// the checkout holds exactly the winner's content, and the loser's change is still pending.
async fn item1_concurrent_applies_from_two_processes(env: Env) {
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    for round in 0..3 {
        let a = completed_task(
            c,
            &format!("write README.md from A {round}\nmany a{round} 300 A"),
            None,
        )
        .await;
        let b = completed_task(
            c,
            &format!("write README.md from B {round}\nmany b{round} 300 B"),
            None,
        )
        .await;
        let (sa, sb) = (a.session_id, b.session_id);
        let before = tree(&env.repo);
        let (ra, rb) = tokio::join!(
            cli(&env, &["apply", &sa]).output(),
            cli(&env, &["apply", &sb]).output()
        );
        let (ra, rb) = (ra.expect("apply a"), rb.expect("apply b"));
        assert!(
            ra.status.success() != rb.status.success(),
            "exactly one apply wins: A: {} B: {}",
            text(&ra),
            text(&rb)
        );
        let (winner, loser, loser_out, w) = if ra.status.success() {
            (&sa, &sb, &rb, 'A')
        } else {
            (&sb, &sa, &ra, 'B')
        };
        assert!(
            text(loser_out).contains("README.md"),
            "the refusal names the shared file: {}",
            text(loser_out)
        );
        let after = tree(&env.repo);
        let readme = String::from_utf8_lossy(&after[&b"README.md".to_vec()].0).into_owned();
        assert_eq!(readme, format!("from {w} {round}\n"));
        let prefix = format!("{}{round}/", w.to_ascii_lowercase());
        let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        assert_eq!(added.len(), 300, "only the winner's files were added");
        assert!(added.iter().all(|k| k.starts_with(prefix.as_bytes())));
        // The loser's change is intact and still pending: it can be discarded cleanly.
        let status = call(
            c,
            "apply_pending",
            json!({"session_id": loser, "dry_run": true}),
        )
        .await
        .expect_err("the loser still conflicts");
        assert!(status.contains("README.md"), "{status}");
        call(c, "discard_pending", json!({"session_id": loser}))
            .await
            .expect("the loser's change is still pending and can be discarded");
        let _ = winner;
        // Commit so the next round starts from a clean checkout.
        git(&env.repo, &["add", "-A"]);
        git(&env.repo, &["commit", "-q", "-m", "round"]);
    }
    server.stop().await;
}

/// Wait until `cond` holds, polling fast; false after `limit`.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

#[tokio::test]
/// A 4000-file apply killed with SIGKILL at several points (journal just written, halfway
/// through the files, at the last file): after recovery — by the next apply, or by a server's
/// start-up — the checkout is exactly as before, the change is still pending, and applying it
/// again writes all of it.
async fn item2_kill_9_during_a_large_apply_then_restart() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let s = completed_task(
        c,
        "write README.md rewritten\ndelete keep.txt\nmany big 4000 content",
        None,
    )
    .await;
    let session = s.session_id.clone();
    server.stop().await;
    let original = tree(&env.repo);
    let journal = env.repo.join(".git/boocoder-apply/journal.json");
    let half = env.repo.join("big/f02000.txt");
    let last = env.repo.join("big/f03999.txt");

    // Each kill point is the moment a path appears in the checkout.
    let points = [
        ("journal written", journal.clone()),
        ("halfway", half),
        ("last file", last),
    ];
    let mut hits = 0;
    for (i, (point, mark)) in points.iter().enumerate() {
        let mut child = cli(&env, &["apply", &session])
            .spawn()
            .expect("spawn apply");
        let hit = until(Duration::from_secs(30), || mark.exists()).await;
        child.start_kill().expect("kill -9");
        let _ = child.wait().await;
        hits += usize::from(hit);
        let interrupted = journal.exists();
        eprintln!("kill at {point}: reached={hit} journal left={interrupted}");
        if i == 1 {
            // Recovery by a server's start-up, with no apply call at all.
            let server = Server::stdio(&env, &[]).await;
            assert!(!journal.exists(), "start-up settled the journal");
            server.stop().await;
        } else {
            // Recovery by the next apply (a dry run takes the lock and settles it too).
            let o = cli(&env, &["apply", &session, "--dry-run"])
                .output()
                .await
                .expect("dry run");
            assert!(o.status.success(), "{}", text(&o));
        }
        let now = tree(&env.repo);
        if now != original {
            // The only other acceptable state: the whole change applied and recorded.
            let wt = tree(&worktree_of(&env, &session));
            assert_eq!(
                now, wt,
                "after a kill at {point}: neither untouched nor complete"
            );
            return;
        }
        let leftovers: Vec<_> = now
            .keys()
            .filter(|k| String::from_utf8_lossy(k).contains(".boocoder-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }
    assert!(hits >= 2, "the kills landed mid-apply");
    let o = cli(&env, &["apply", &session])
        .output()
        .await
        .expect("apply");
    assert!(o.status.success(), "the change is not stuck: {}", text(&o));
    assert_eq!(tree(&env.repo), tree(&worktree_of(&env, &session)));
    assert!(!journal.exists());
}

/// Make `path` impossible to replace: immutable (root on ext4), else a read-only parent.
/// Returns false when neither works here.
fn pin(path: &Path) -> bool {
    let ok = std::process::Command::new("chattr")
        .arg("+i")
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if nix_uid_is_root() {
        return false;
    }
    let dir = path.parent().expect("parent");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).is_ok()
}

fn unpin(path: &Path) {
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(path)
        .output();
    if let Some(dir) = path.parent() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
}

fn nix_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
/// The third file of an apply cannot be written (immutable): the first two are rolled back,
/// the error says what failed, the change stays pending, and applies once the file is free.
async fn item2_io_error_mid_apply_rolls_back() {
    let env = Env::new();
    for f in ["a.txt", "b.txt", "c/c.txt"] {
        let p = env.repo.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "old\n").expect("write");
    }
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "three"]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let s = completed_task(
        c,
        "write a.txt new\nwrite b.txt new\nwrite c/c.txt new",
        None,
    )
    .await;
    let session = s.session_id.clone();
    let before = tree(&env.repo);
    let pinned = env.repo.join("c/c.txt");
    if !pin(&pinned) {
        eprintln!("SKIP: cannot make a file unwritable on this machine");
        server.stop().await;
        return;
    }
    let err = call(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect_err("the write fails");
    unpin(&pinned);
    assert!(
        err.to_lowercase().contains("not permitted") || err.contains("denied"),
        "{err}"
    );
    assert_eq!(tree(&env.repo), before, "nothing of the change remains");
    assert!(!env.repo.join(".git/boocoder-apply").exists());
    let ok: ApplyOutcome = call_as(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect("applies once the file is writable");
    assert_eq!(ok.files.len(), 3, "{ok:#?}");
    assert_eq!(env.read("c/c.txt").as_deref(), Some("new\n"));
    server.stop().await;
}

crate::both_stores!(item3_crash_mid_turn_keeps_edits_and_close_refuses);
/// The server dies (SIGKILL) while an agent is mid-turn: after a restart the task is failed,
/// its edits are the session's pending change (listed in its status), applying it writes them,
/// and `close` without --force refused while they were unapplied.
async fn item3_crash_mid_turn_keeps_edits_and_close_refuses(env: Env) {
    let mut server = Server::stdio(&env, &[]).await;
    let t = new_task(
        &server.client,
        json!({"prompt": "write partial.txt written before the crash\nsleep 60"}),
    )
    .await;
    let (task, session) = (t.task_id, t.session_id);
    let partial = worktree_of(&env, &session).join("partial.txt");
    assert!(
        until(Duration::from_secs(30), || std::fs::read_to_string(
            &partial
        )
        .is_ok_and(|t| t.ends_with('\n')))
        .await
    );
    server.child.start_kill().expect("kill -9 the server");
    let _ = server.child.wait().await;

    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let s = task_status(c, &task).await;
    assert_eq!(s.state, TaskState::Failed, "{s:#?}");
    assert_eq!(
        changed(&s),
        vec![("partial.txt".to_string(), 1, 0)],
        "the crashed turn's edit is listed: {s:#?}"
    );
    let close = cli(&env, &["close", &session])
        .output()
        .await
        .expect("close");
    assert!(!close.status.success(), "close refuses: {}", text(&close));
    assert!(text(&close).contains("unapplied"), "{}", text(&close));
    assert!(partial.exists(), "the edit survived the refused close");
    let dry: ApplyOutcome = call_as(
        c,
        "apply_pending",
        json!({"session_id": session, "dry_run": true}),
    )
    .await
    .expect("dry run");
    assert_eq!(dry.files[0].path, "partial.txt", "{dry:#?}");
    call(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect("apply");
    assert_eq!(
        env.read("partial.txt").as_deref(),
        Some("written before the crash\n")
    );
    server.stop().await;
}

#[tokio::test]
/// The base moves only to what was applied: an edit that reaches the worktree after the
/// change was queued is neither written to the checkout nor folded into the base; it shows in
/// the next diff, and `close` refuses (queueing it) rather than delete it.
async fn item3_only_applied_content_enters_the_base() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;
    let s = completed_task(c, "write a.txt from the task", None).await;
    let session = s.session_id.clone();
    std::fs::write(worktree_of(&env, &session).join("late.txt"), "late\n").expect("late");
    let applied: ApplyOutcome = call_as(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect("apply");
    assert_eq!(applied.files.len(), 1, "{applied:#?}");
    assert!(
        env.read("late.txt").is_none(),
        "only the queued change is applied"
    );
    let close = cli(&env, &["close", &session])
        .output()
        .await
        .expect("close");
    assert!(!close.status.success(), "{}", text(&close));
    assert!(text(&close).contains("late.txt"), "{}", text(&close));
    let again: ApplyOutcome = call_as(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect("the late edit is now a pending change");
    assert_eq!(again.files[0].path, "late.txt", "{again:#?}");
    assert_eq!(env.read("late.txt").as_deref(), Some("late\n"));
    server.stop().await;
}

#[tokio::test]
/// Modes are part of the preimage: a local `chmod +x` on a file the task edits refuses the
/// apply (the bit is not silently reverted), and a task's mode-only change is refused over a
/// file edited locally.
async fn item4_file_modes_are_checked() {
    let env = Env::new();
    std::fs::write(env.repo.join("tool.sh"), "echo one\n").expect("write");
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "tool"]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let edit = completed_task(c, "write README.md edited by the task", None).await;
    std::fs::set_permissions(
        env.repo.join("README.md"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let err = call(c, "apply_pending", json!({"session_id": edit.session_id}))
        .await
        .expect_err("mode changed locally");
    assert!(err.contains("README.md") && err.contains("mode"), "{err}");
    let mode = std::fs::metadata(env.repo.join("README.md"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the local chmod stands");

    let chmod = completed_task(c, "run chmod +x tool.sh", None).await;
    assert_eq!(chmod.files_changed.len(), 1, "{chmod:#?}");
    std::fs::write(env.repo.join("tool.sh"), "echo local edit\n").expect("edit");
    let err = call(c, "apply_pending", json!({"session_id": chmod.session_id}))
        .await
        .expect_err("content changed locally");
    assert!(err.contains("tool.sh") && err.contains("modified"), "{err}");
    assert_eq!(env.read("tool.sh").as_deref(), Some("echo local edit\n"));
    let mode = std::fs::metadata(env.repo.join("tool.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "not made executable over the local edit");
    server.stop().await;
}

#[tokio::test]
/// Names with spaces and non-UTF-8 bytes, a rename into a spaced directory, a directory
/// replaced by a file and another by a symlink: all apply, byte for byte, and the dry run
/// agrees. A nested repository and a parent directory replaced by a file in the checkout are
/// refused up front by the dry run and the real apply alike, naming the path; a symlink
/// leaving the project is refused.
async fn item5_awkward_names_and_tree_shapes() {
    let env = Env::new();
    for f in ["docs/a.md", "docs/b.md", "tools/x.sh", "src/lib.rs"] {
        let p = env.repo.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, format!("{f}\n")).expect("write");
    }
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "shapes"]);
    let server = Server::stdio(&env, &[]).await;
    let c = &server.client;

    let shapes = completed_task(
        c,
        "write dir with space/new file.txt spaced\n\
         run mkdir -p 'moved dir' && git mv keep.txt 'moved dir/re named.txt'\n\
         run printf 'latin1\\n' > $'caf\\xe9.txt'\n\
         run rm -r docs && printf 'now a file\\n' > docs\n\
         run rm -r tools && ln -s README.md tools",
        None,
    )
    .await;
    let session = shapes.session_id.clone();
    assert!(
        !shapes.files_changed.is_empty(),
        "{shapes:#?}\n{}",
        server.log()
    );
    let dry: ApplyOutcome = call_as(
        c,
        "apply_pending",
        json!({"session_id": session, "dry_run": true}),
    )
    .await
    .expect("dry run");
    let applied: ApplyOutcome = call_as(c, "apply_pending", json!({"session_id": session}))
        .await
        .expect("apply");
    assert_eq!(dry.files, applied.files, "the dry run agrees");
    assert_eq!(tree(&env.repo), tree(&worktree_of(&env, &session)));
    assert!(
        env.repo
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"))
            .is_file()
    );
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "applied"]);

    let nested = completed_task(
        c,
        "run (git init -q lib/nested && cd lib/nested && echo x > x && git add x && \
         git -c user.name=t -c user.email=t@e commit -q -m x)\nwrite plain.txt plain",
        None,
    )
    .await;
    refused_alike(c, &env, &nested.session_id, &["nested", "repository"]).await;

    let deep = completed_task(c, "write src/lib.rs changed", None).await;
    std::fs::remove_dir_all(env.repo.join("src")).expect("rm src");
    std::fs::write(env.repo.join("src"), "a file now\n").expect("file");
    refused_alike(
        c,
        &env,
        &deep.session_id,
        &["src/lib.rs", "parent `src` is a file"],
    )
    .await;

    let outside =
        completed_task(c, "run ln -s /etc/passwd pw && ln -s ../../escape up", None).await;
    let sid = outside.session_id.clone();
    let err = call(
        c,
        "apply_pending",
        json!({"session_id": sid, "dry_run": true}),
    )
    .await
    .expect_err("links leaving the project");
    assert!(
        err.contains("pw") && err.contains("outside the project"),
        "{err}"
    );
    assert!(err.contains("up"), "{err}");
    server.stop().await;
}

/// The dry run and the real apply both refuse the session's change up front, with an error
/// holding every one of `needles`, and the checkout is untouched.
async fn refused_alike(c: &Client, env: &Env, session: &str, needles: &[&str]) {
    let before = tree(&env.repo);
    for dry_run in [true, false] {
        let err = call(
            c,
            "apply_pending",
            json!({"session_id": session, "dry_run": dry_run}),
        )
        .await
        .expect_err("refused");
        assert!(needles.iter().all(|n| err.contains(n)), "{err}");
    }
    assert_eq!(tree(&env.repo), before);
}

#[tokio::test]
/// Item 6, apply side: a session created under a wider `--allow-root` cannot write into its
/// project once the server runs with roots that exclude it.
async fn item6_apply_rechecks_the_allowed_roots() {
    let env = Env::new();
    let server = Server::stdio(&env, &[]).await;
    let s = completed_task(&server.client, "write a.txt pending", None).await;
    let session = s.session_id.clone();
    server.stop().await;
    let narrow = env.root().join("elsewhere");
    std::fs::create_dir_all(&narrow).expect("mkdir");
    let mut args = env.args();
    let i = args.iter().position(|a| a == "--allow-root").expect("flag");
    args[i + 1] = narrow.display().to_string();
    let i = args.iter().position(|a| a == "--project").expect("flag");
    args.drain(i..i + 2);
    let server = Server::stdio_with(&env, args, &[]).await;
    let err = call(
        &server.client,
        "apply_pending",
        json!({"session_id": session}),
    )
    .await
    .expect_err("outside the allowed roots now");
    assert!(err.contains("outside the allowed roots"), "{err}");
    assert!(env.read("a.txt").is_none());
    server.stop().await;
}
