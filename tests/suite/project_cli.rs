//! `boocoder project …` edits the server's per-project settings, `project show` says what a new
//! worktree gets, and a repository's committed `.boocoder/project.json` runs only when trusted
//! (`--trust-repo-setup`, or `project trust` for that project).

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

fn boocoder(env: &Env, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(env.args())
        .args(["--pool-size", "0"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run boocoder")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn runs(counter: &std::path::Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn project_verbs_edit_the_server_entry_and_show_what_a_worktree_gets() {
    let env = Env::new();
    let repo = env.repo.display().to_string();
    // a path inside the checkout names the checkout
    let sub = env.repo.join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let o = boocoder(
        &env,
        &[
            "project",
            "set-setup",
            &sub.display().to_string(),
            "--timeout-secs",
            "90",
            "--",
            "npm",
            "ci",
            "--prefer-offline",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("setup: npm ci --prefer-offline (timeout 90 s)"),
        "{}",
        text(&o)
    );
    let o = boocoder(
        &env,
        &[
            "project",
            "bring",
            &repo,
            "node_modules/",
            "--strategy",
            "symlink",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(env.data.join("projects.json")).expect("projects.json"),
    )
    .expect("json");
    assert_eq!(
        saved["projects"][&repo],
        serde_json::json!({
            "setup": ["npm", "ci", "--prefer-offline"],
            "setup_timeout_secs": 90,
            "bring": [{"path": "node_modules", "strategy": "symlink"}],
        })
    );

    let show = boocoder(&env, &["project", "show", &repo, "--json"]);
    assert!(show.status.success(), "{}", text(&show));
    let v: Value = serde_json::from_slice(&show.stdout).expect("show --json");
    assert_eq!(
        v["new_worktree_gets"]["setup"],
        serde_json::json!({"argv": ["npm", "ci", "--prefer-offline"], "timeout_secs": 90, "source": "projects.json"})
    );
    assert_eq!(
        v["new_worktree_gets"]["bring"],
        serde_json::json!([{"path": "node_modules", "strategy": "symlink"}])
    );
    assert_eq!(
        v["repository_file"],
        serde_json::json!({"present": false, "trusted": false})
    );

    // errors name what is wrong and change nothing
    let before = std::fs::read_to_string(env.data.join("projects.json")).expect("read");
    let o = boocoder(&env, &["project", "unbring", &repo, "target"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`target` is not brought into"),
        "{}",
        text(&o)
    );
    let o = boocoder(&env, &["project", "bring", &repo, "../outside"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("`bring`: `../outside`"), "{}", text(&o));
    let o = boocoder(
        &env,
        &[
            "project",
            "set-setup",
            &repo,
            "--timeout-secs",
            "0",
            "--",
            "x",
        ],
    );
    assert!(text(&o).contains("setup_timeout_secs"), "{}", text(&o));
    let outside = env.root().join("not-a-repo");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let o = boocoder(&env, &["project", "show", &outside.display().to_string()]);
    assert!(
        text(&o).contains("is not inside a git checkout"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(env.data.join("projects.json")).expect("read"),
        before
    );
    let o = boocoder(
        &env,
        &["--url", "http://127.0.0.1:1/mcp", "project", "show", &repo],
    );
    assert!(
        text(&o).contains("run it where the server runs"),
        "{}",
        text(&o)
    );

    let o = boocoder(&env, &["project", "clear-setup", &repo]);
    assert!(o.status.success(), "{}", text(&o));
    let o = boocoder(&env, &["project", "unbring", &repo, "node_modules"]);
    assert!(o.status.success(), "{}", text(&o));
    let show = text(&boocoder(&env, &["project", "show", &repo]));
    assert!(
        show.contains("setup: none") && !show.contains("bring:"),
        "{show}"
    );
    assert!(show.contains("pool: 0 spare worktree(s)"), "{show}");
}

#[test]
fn the_repository_s_setup_runs_only_when_trusted() {
    let env = Env::new();
    let repo = env.repo.display().to_string();
    let counter = env.root().join("repo-setup-runs");
    std::fs::create_dir_all(env.repo.join(".boocoder")).expect("mkdir");
    let committed = serde_json::json!({
        "setup": ["sh", "-c", format!("echo run >> '{}'", counter.display())]
    });
    std::fs::write(
        env.repo.join(".boocoder/project.json"),
        committed.to_string(),
    )
    .expect("write");
    git(&env.repo, &["add", "-A"]);
    git(&env.repo, &["commit", "-q", "-m", "project file"]);

    let show = text(&boocoder(&env, &["project", "show", &repo]));
    assert!(
        show.contains("repository file present: yes (ignored"),
        "{show}"
    );
    assert!(show.contains("setup: none"), "{show}");
    let o = boocoder(&env, &["run", "say untrusted", "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runs(&counter), 0, "an untrusted repository's setup ran");

    let o = boocoder(
        &env,
        &["--trust-repo-setup", "run", "say trusted by flag", "--wait"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runs(&counter), 1);

    let o = boocoder(&env, &["project", "trust", &repo]);
    assert!(o.status.success(), "{}", text(&o));
    let show = text(&boocoder(&env, &["project", "show", &repo]));
    assert!(show.contains("from .boocoder/project.json"), "{show}");
    let o = boocoder(&env, &["run", "say trusted by entry", "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runs(&counter), 2);

    let o = boocoder(&env, &["project", "trust", &repo, "--off"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = boocoder(&env, &["run", "say untrusted again", "--wait"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runs(&counter), 2);
}
