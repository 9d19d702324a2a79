//! Import invariants from ARCHITECTURE.md, checked by reading the sources.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_the_acp_backend_imports_the_acp_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = src.join("backend/acp");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&allowed))
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .contains("agent_client_protocol")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "agent_client_protocol used outside src/backend/acp: {offenders:?}"
    );
}

/// Files under `src/` outside `allowed` (relative to `src/`) whose text contains `needle`.
fn used_outside(needle: &str, allowed: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .filter(|f| !allowed.iter().any(|a| f.starts_with(src.join(a))))
        .filter(|f| std::fs::read_to_string(f).expect("read").contains(needle))
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn layers_keep_their_dependencies() {
    // The protocol edge: only `mcp/` speaks rmcp.
    assert_eq!(used_outside("rmcp::", &["mcp"]), Vec::<String>::new());
    // Only the store writes SQL.
    assert_eq!(used_outside("sqlx::", &["store"]), Vec::<String>::new());
    // Only the worktree module touches git objects.
    assert_eq!(used_outside("git2::", &["worktree"]), Vec::<String>::new());
    // Nothing runs a shell.
    let shells: Vec<String> = [
        "Command::new(\"sh\")",
        "Command::new(\"bash\")",
        "Command::new(\"/bin/sh\")",
    ]
    .iter()
    .flat_map(|n| used_outside(n, &[]))
    .collect();
    assert_eq!(shells, Vec::<String>::new());
}
