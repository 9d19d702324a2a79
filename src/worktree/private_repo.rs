//! The private repository of a session's worktree: its git directory written by hand, its
//! objects borrowed from the project, and its first checkout.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::{Repository, build::CheckoutBuilder};

use super::{GIT_REDIRECTS, WorktreeError};

/// Make `wt_abs` a repository whose objects are the project's, on `branch` at `base`, and
/// check it out. Nothing of the user's repository is copied (no hooks, no config) except
/// facts: what the project's git found out about the filesystem (`core.filemode` and the
/// like), the shallow boundary (without it, history walks fail on a shallow clone's missing
/// parents) and where Git LFS keeps file contents (without it, the smudge filter looks in
/// the empty private store and fails the checkout). The git directory is written directly
/// (it is a handful of files in git's documented layout): libgit2's init probes the
/// filesystem and costs about 10 ms, half of a new session's dispatch.
pub(super) fn init_private(
    project: &Repository,
    wt_abs: &Path,
    branch: &str,
    base: git2::Oid,
    use_cli: bool,
) -> Result<(), WorktreeError> {
    let head_ref = format!("refs/heads/{branch}");
    if !git2::Reference::is_valid_name(&head_ref) {
        return Err(git2::Error::from_str(&format!("invalid branch name `{branch}`")).into());
    }
    let git_dir = wt_abs.join(".git");
    let info = git_dir.join("objects").join("info");
    for dir in [
        &info,
        &git_dir.join("objects/pack"),
        &git_dir.join("refs/tags"),
    ] {
        fs::create_dir_all(dir)?;
    }
    let mut config = String::from(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tlogallrefupdates = true\n",
    );
    let project_config = project.config()?;
    for key in ["filemode", "symlinks", "ignorecase", "precomposeunicode"] {
        if let Ok(v) = project_config.get_bool(&format!("core.{key}")) {
            config.push_str(&format!("\t{key} = {v}\n"));
        }
    }
    let lfs = project.commondir().join("lfs");
    if lfs.is_dir() {
        let lfs = fs::canonicalize(lfs)?.to_string_lossy().into_owned();
        let quoted = lfs.replace('\\', "\\\\").replace('"', "\\\"");
        config.push_str(&format!("[lfs]\n\tstorage = \"{quoted}\"\n"));
    }
    fs::write(git_dir.join("config"), config)?;
    let objects = fs::canonicalize(project.commondir().join("objects"))?;
    let mut line = objects.as_os_str().as_bytes().to_vec();
    line.push(b'\n');
    fs::write(info.join("alternates"), line)?;
    if project.is_shallow() {
        fs::copy(project.commondir().join("shallow"), git_dir.join("shallow"))?;
    }
    let ref_file = git_dir.join(&head_ref);
    if let Some(parent) = ref_file.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(ref_file, format!("{base}\n"))?;
    fs::write(git_dir.join("HEAD"), format!("ref: {head_ref}\n"))?;
    if use_cli && git_cli_checkout(wt_abs)? {
        return Ok(());
    }
    let private = Repository::open(wt_abs)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    private.checkout_head(Some(&mut checkout))?;
    Ok(())
}

/// `git read-tree -u` with parallel checkout: 3–6× faster than libgit2's single-threaded
/// checkout on large trees (measured in notes/perf.md and by the bench). Hooks are disabled
/// (the private repository has none, but a global `core.hooksPath` would apply). Returns
/// `Ok(false)` when no git binary is available (the caller falls back to libgit2).
fn git_cli_checkout(wt_abs: &Path) -> Result<bool, WorktreeError> {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C").arg(wt_abs).args([
        "-c",
        "checkout.workers=0",
        "-c",
        "core.hooksPath=/dev/null",
        "read-tree",
        "--reset",
        "-u",
        "HEAD",
    ]);
    // The repository is the one in `wt_abs`, whatever environment boocoder was started in.
    for var in GIT_REDIRECTS {
        cmd.env_remove(var);
    }
    match cmd.stdin(std::process::Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
        Ok(o) if o.status.success() => Ok(true),
        Ok(o) => Err(WorktreeError::Io(std::io::Error::other(format!(
            "git read-tree failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )))),
    }
}
