//! Spare worktrees made ahead of need, at the path a session will keep: a spare of a project
//! is an ordinary private-repository worktree `WORKTREES/<sid>` on branch `boocoder/<sid>`
//! (with the project ref `refs/boocoder/<sid>`), where `sid` is the id the session that takes
//! it will get. Nothing is renamed when it is taken, so an agent can open its session in the
//! spare before anyone asks for it, and a taken spare is at once where the store says the
//! session's files are.
//!
//! The pool itself is a directory per project holding one token file per spare:
//! `spare-<sid>` while it is on offer, `taken-<sid>` from the moment a process claims it until
//! the session row that owns it is written, `moving-<sid>` while it is brought forward. Who
//! renames the token owns the spare: rename succeeds for one process only, so several
//! processes on one data directory never hand out the same spare, and a new session claims
//! one without waiting for the project's worktree lock (held by every worktree being made
//! for the project). Moving a spare happens under that lock from its first rename to the
//! one back, so a `moving-` token seen by a holder of the lock was left by a process that
//! died. A spare's git directory carries `SPARE` while no
//! session owns it: a worktree with that marker, no token and no session was never used by an
//! agent (a crash between claiming or dropping and recording), so it is removed whatever files
//! it holds.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use git2::{Oid, Repository};

use super::create::{Checkout, base_ref, create_with, lock_worktrees, worktree_name};
use super::remove::clean_up;
use super::{GIT_REDIRECTS, WorktreeError, WorktreeInfo, project_root};

/// In a spare's git directory: the spare is complete (bootstrapped) and may be taken.
pub const READY: &str = "boocoder-spare-ready";
/// In a spare's git directory: no session owns this worktree yet.
pub const SPARE: &str = "boocoder-spare";
const SPARE_PREFIX: &str = "spare-";
const TAKEN_PREFIX: &str = "taken-";
const MOVING_PREFIX: &str = "moving-";
/// In a project's pool directory: the project's path (the directory is named by its hash).
const PROJECT_FILE: &str = "project";

/// The projects that have a pool directory under `pool_root`, with that directory.
pub fn pooled_projects(pool_root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = fs::read_dir(pool_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let bytes = fs::read(dir.join(PROJECT_FILE)).ok()?;
            let project = PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
            );
            Some((project, dir))
        })
        .collect()
}

/// The session id a token file names, for tokens with `prefix`.
fn token_sid<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix).filter(|sid| {
        !sid.is_empty()
            && sid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// Remove every spare on offer in a project's pool directory, and the directory unless a
/// claim is in flight (a `taken-` token: the claiming process records its session next).
pub fn drop_pool(project: &Path, dir: &Path, worktrees: &Path) -> Result<(), WorktreeError> {
    let mut claims = false;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                // a spare of the earlier layout, kept inside the pool directory
                super::remove(project, &path, "")?;
            } else if let Some(sid) = token_sid(&name, SPARE_PREFIX) {
                drop_spare(project, &Spare::offered(worktrees, dir, sid))?;
            } else if let Some(sid) = token_sid(&name, MOVING_PREFIX) {
                drop_spare(project, &Spare::moving(worktrees, dir, sid))?;
            } else if name.starts_with(TAKEN_PREFIX) {
                claims = true;
            }
        }
    }
    if claims {
        return Ok(());
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// One spare of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    /// The worktree (the session's path once taken).
    pub path: PathBuf,
    /// Its token in the pool directory.
    pub token: PathBuf,
    /// The commit it is checked out at.
    pub base: String,
    pub ready: bool,
    /// A spare of the earlier layout (a directory inside the pool): never taken, dropped.
    pub legacy: bool,
    /// Its token says it is being brought forward (or a process died doing so).
    pub moving: bool,
}

impl Spare {
    fn offered(worktrees: &Path, dir: &Path, sid: &str) -> Spare {
        Spare {
            path: worktrees.join(sid),
            token: dir.join(format!("{SPARE_PREFIX}{sid}")),
            base: String::new(),
            ready: false,
            legacy: false,
            moving: false,
        }
    }

    /// A spare whose move forward did not finish (its token is `moving-`).
    fn moving(worktrees: &Path, dir: &Path, sid: &str) -> Spare {
        Spare {
            token: dir.join(format!("{MOVING_PREFIX}{sid}")),
            moving: true,
            ..Spare::offered(worktrees, dir, sid)
        }
    }

    /// The session id it is made for.
    pub fn session_id(&self) -> Option<String> {
        self.path.file_name()?.to_str().map(str::to_string)
    }
}

/// Where the spares of `project` (a checkout root) live under `pool_root`: one directory per
/// project, named by a hash of its path.
pub fn pool_dir(pool_root: &Path, project: &Path) -> PathBuf {
    let hash = Oid::hash_object(
        git2::ObjectType::Blob,
        project.as_os_str().as_encoded_bytes(),
    )
    .map(|o| o.to_string())
    .unwrap_or_default();
    pool_root.join(&hash[..hash.len().min(16)])
}

/// Make a new spare of `project` for the future session `sid`, at `worktrees/<sid>`, not yet
/// ready: the caller bootstraps it, then marks it with [`mark_ready`]. The token is written
/// first, so a crash during creation leaves a spare the pool knows of (dropped once
/// abandoned), never a worktree nobody claims.
pub fn make_spare(
    project: &Path,
    pool_root: &Path,
    worktrees: &Path,
    sid: &str,
) -> Result<PathBuf, WorktreeError> {
    let root = project_root(project)?;
    let dir = pool_dir(pool_root, &root);
    if token_sid(&format!("{SPARE_PREFIX}{sid}"), SPARE_PREFIX).is_none() {
        return Err(WorktreeError::InvalidWorktreePath {
            path: sid.to_string(),
        });
    }
    fs::create_dir_all(&dir)?;
    fs::create_dir_all(worktrees)?;
    fs::write(dir.join(PROJECT_FILE), root.as_os_str().as_encoded_bytes())?;
    fs::write(dir.join(format!("{SPARE_PREFIX}{sid}")), b"")?;
    let info = create_with(
        &root,
        &worktrees.join(sid),
        &format!("boocoder/{sid}"),
        Checkout::Locked,
    )?;
    fs::write(info.path.join(".git").join(SPARE), b"")?;
    Ok(info.path)
}

pub fn mark_ready(spare: &Path) -> Result<(), WorktreeError> {
    // why: the marker holds the commit, so taking a spare reads one small file instead of
    // opening each spare's repository (on the path of every new session).
    let base = Repository::open(spare)?
        .head()?
        .peel_to_commit()?
        .id()
        .to_string();
    fs::write(spare.join(".git").join(READY), base.as_bytes())?;
    Ok(())
}

/// The commit a ready spare is at, as [`mark_ready`] recorded it (`None`: not ready, or a
/// marker written before it held one).
fn ready_base(spare: &Path) -> Option<String> {
    let base = fs::read_to_string(spare.join(".git").join(READY)).ok()?;
    (base.len() == 40 && base.bytes().all(|b| b.is_ascii_hexdigit())).then_some(base)
}

/// The spares of `project` (on offer, or still being prepared), and spares of the earlier
/// layout (`legacy`).
pub fn spares(
    project: &Path,
    pool_root: &Path,
    worktrees: &Path,
) -> Result<Vec<Spare>, WorktreeError> {
    let root = project_root(project)?;
    let dir = pool_dir(pool_root, &root);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut spare = if entry.path().is_dir() && name.starts_with(SPARE_PREFIX) {
            Spare {
                path: entry.path(),
                token: entry.path(),
                base: String::new(),
                ready: false,
                legacy: true,
                moving: false,
            }
        } else if let Some(sid) = token_sid(&name, SPARE_PREFIX) {
            Spare::offered(worktrees, &dir, sid)
        } else if let Some(sid) = token_sid(&name, MOVING_PREFIX) {
            // being brought forward, or left so by a process that died: never ready
            Spare::moving(worktrees, &dir, sid)
        } else {
            continue;
        };
        let ready = (!spare.legacy && !spare.moving)
            .then(|| ready_base(&spare.path))
            .flatten();
        spare.ready = ready.is_some();
        spare.base = ready.unwrap_or_else(|| {
            Repository::open(&spare.path)
                .ok()
                .and_then(|r| r.head().ok().and_then(|h| h.target()))
                .map(|o| o.to_string())
                .unwrap_or_default()
        });
        out.push(spare);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The spares of a pool directory on offer and ready: their session id and commit, sorted.
fn ready_spares(dir: &Path, worktrees: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let sid = token_sid(&name.to_string_lossy(), SPARE_PREFIX)?.to_string();
            let base = ready_base(&worktrees.join(&sid))?;
            Some((sid, base))
        })
        .collect();
    out.sort();
    out
}

/// A spare claimed by [`take_spare`]: the session it is made for, and its worktree.
#[derive(Debug, Clone)]
pub struct Taken {
    pub session_id: String,
    pub info: WorktreeInfo,
    token: PathBuf,
}

/// Claim a ready spare at the project's current HEAD (`prefer` first, when it is one of
/// them); `None` when there is none. The caller records the session `session_id` with the
/// worktree, then calls [`settle_taken`]; or [`give_back`] when it could not.
pub fn take_spare(
    project: &Path,
    pool_root: &Path,
    worktrees: &Path,
    prefer: Option<&Path>,
) -> Result<Option<Taken>, WorktreeError> {
    // why: this is on the path of every new session, and in a burst most submits find no
    // ready spare. One listing (a small file read per spare) says which are ready; only then
    // is the repository opened, once, for its HEAD.
    let root = fs::canonicalize(project)?;
    let dir = pool_dir(pool_root, &root);
    let mut ready = ready_spares(&dir, worktrees);
    if ready.is_empty() {
        return Ok(None);
    }
    let head = Repository::open(&root)?
        .head()?
        .peel_to_commit()?
        .id()
        .to_string();
    // No lock: every worktree being made for the project holds it, and in a burst that is a
    // wait per new session. The token is the claim, and the marker is read again once the
    // token is ours.
    ready.sort_by_key(|(sid, _)| {
        prefer.and_then(Path::file_name) != Some(std::ffi::OsStr::new(sid))
    });
    for (sid, base) in ready {
        if base != head {
            continue;
        }
        let token = dir.join(format!("{SPARE_PREFIX}{sid}"));
        let taken = dir.join(format!("{TAKEN_PREFIX}{sid}"));
        // The claim: whoever renames the token first has the spare.
        if fs::rename(&token, &taken).is_err() {
            continue;
        }
        let path = worktrees.join(&sid);
        // Between the listing and the claim it may have been moved forward (and not yet
        // prepared again): offered back as it is, markers untouched.
        if ready_base(&path).as_deref() != Some(head.as_str()) {
            // (a failed rename leaves a spare no token owns: the reaper removes it)
            let _ = fs::rename(&taken, &token);
            continue;
        }
        let git_dir = path.join(".git");
        remove_marker(&git_dir.join(READY))?;
        remove_marker(&git_dir.join(SPARE))?;
        return Ok(Some(Taken {
            info: WorktreeInfo {
                path: fs::canonicalize(&path)?,
                branch: format!("boocoder/{sid}"),
                base_commit: head,
            },
            session_id: sid,
            token: taken,
        }));
    }
    Ok(None)
}

fn remove_marker(path: &Path) -> Result<(), WorktreeError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The session that took `taken` is recorded: the claim token goes.
pub fn settle_taken(taken: &Taken) -> Result<(), WorktreeError> {
    remove_marker(&taken.token)
}

/// Offer a claimed spare again (its session could not be recorded; no agent touched it).
pub fn give_back(taken: &Taken) -> Result<(), WorktreeError> {
    let git_dir = taken.info.path.join(".git");
    fs::write(git_dir.join(SPARE), b"")?;
    fs::write(git_dir.join(READY), taken.info.base_commit.as_bytes())?;
    let offered = taken
        .token
        .with_file_name(format!("{SPARE_PREFIX}{}", taken.session_id));
    fs::rename(&taken.token, offered)?;
    Ok(())
}

/// Claims in a project's pool directory whose session may not have been recorded: the
/// session id, the worktree and how long ago it was claimed.
pub fn claims(
    project: &Path,
    pool_root: &Path,
    worktrees: &Path,
) -> Vec<(String, PathBuf, Duration)> {
    let Ok(root) = project_root(project) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(pool_dir(pool_root, &root)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let sid = token_sid(&name, TAKEN_PREFIX)?.to_string();
            let age = token_age(&e.path())?;
            Some((sid.clone(), worktrees.join(&sid), age))
        })
        .collect()
}

/// How long ago a token was written or last renamed: its ctime, which a rename changes and
/// its mtime does not (a claim, a give-back, the end of a move).
pub fn token_age(token: &Path) -> Option<Duration> {
    let ctime = fs::metadata(token).ok()?.ctime();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs(now.saturating_sub(ctime).max(0) as u64))
}

/// Forget a claim whose session was recorded (`drop` false), or drop the worktree of one
/// whose session never was (`drop` true: the claiming process died before recording it).
pub fn end_claim(
    project: &Path,
    pool_root: &Path,
    worktrees: &Path,
    sid: &str,
    drop: bool,
) -> Result<(), WorktreeError> {
    let root = project_root(project)?;
    let token = pool_dir(pool_root, &root).join(format!("{TAKEN_PREFIX}{sid}"));
    if drop {
        let repo = Repository::open(&root)?;
        let _lock = lock_worktrees(&repo)?;
        clean_up(&repo, sid, &worktrees.join(sid), "")?;
    }
    remove_marker(&token)
}

/// Whether the worktree named `sid` is a spare the pool owns (on offer or being claimed).
pub fn is_pooled(pool_root: &Path, sid: &str) -> bool {
    pooled_projects(pool_root).iter().any(|(_, dir)| {
        [SPARE_PREFIX, TAKEN_PREFIX, MOVING_PREFIX]
            .iter()
            .any(|prefix| dir.join(format!("{prefix}{sid}")).exists())
    })
}

/// What [`bring_forward`] did with a spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Moved to HEAD: it needs preparing again before anyone takes it.
    Moved,
    /// Already at HEAD (another process moved it, and makes it ready): left as it is.
    AtHead,
    /// Not moved: taken meanwhile (a session's worktree now), being moved by someone else,
    /// or its files are in the way. The caller drops it (which finds no token when taken).
    Gone,
}

/// Move a spare still on offer forward to the project's current HEAD (it is no longer
/// ready), touching only the files that changed between the two commits (git's two-tree
/// `read-tree -m -u`, hooks off). The spare is claimed first, by renaming its token as a
/// taker would, so nobody takes it half moved.
pub fn bring_forward(project: &Path, spare: &Spare) -> Result<Forward, WorktreeError> {
    let root = project_root(project)?;
    let repo = Repository::open(&root)?;
    let head = repo.head()?.peel_to_commit()?.id();
    let _lock = lock_worktrees(&repo)?;
    let Some(sid) = spare.session_id() else {
        return Ok(Forward::Gone);
    };
    if spare.legacy || spare.moving {
        return Ok(Forward::Gone);
    }
    let moving = spare.token.with_file_name(format!("{MOVING_PREFIX}{sid}"));
    if fs::rename(&spare.token, &moving).is_err() {
        return Ok(Forward::Gone);
    }
    let moved = move_spare(&repo, &spare.path, head);
    // Back on offer: the caller prepares it again, or drops it.
    fs::rename(&moving, &spare.token)?;
    moved
}

fn move_spare(repo: &Repository, path: &Path, head: Oid) -> Result<Forward, WorktreeError> {
    let private = Repository::open(path)?;
    let old = private.head()?.peel_to_commit()?.id();
    if old == head {
        // what the listing said is stale: another process moved it since
        return Ok(Forward::AtHead);
    }
    // Moved, it needs preparing again (setup for the new commits) before anyone takes it.
    remove_marker(&path.join(".git").join(READY))?;
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(path).args([
        "-c",
        "core.hooksPath=/dev/null",
        "read-tree",
        "-m",
        "-u",
        &old.to_string(),
        &head.to_string(),
    ]);
    for var in GIT_REDIRECTS {
        cmd.env_remove(var);
    }
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Ok(Forward::Gone);
    }
    let branch = private
        .head()?
        .name()
        .map(str::to_string)
        .map_err(|_| git2::Error::from_str("a spare's HEAD is not a branch"))?;
    private.reference(&branch, head, true, "boocoder: spare brought forward")?;
    let name = worktree_name(path)?;
    repo.reference(
        &base_ref(&name),
        head,
        true,
        "boocoder: spare brought forward",
    )?;
    Ok(Forward::Moved)
}

/// Remove a spare on offer (its worktree, the project's base ref, then its token). The token
/// is claimed first, under the project's worktree lock, so a spare another process has just
/// taken is never removed (a `moving-` token found under the lock was left by a process that
/// died moving the spare: it is dropped the same way); a crash after the claim leaves a
/// worktree marked `SPARE` with no token, which the reaper removes.
pub fn drop_spare(project: &Path, spare: &Spare) -> Result<(), WorktreeError> {
    if spare.legacy {
        return super::remove(project, &spare.path, "");
    }
    let root = project_root(project)?;
    let repo = Repository::open(&root)?;
    let _lock = lock_worktrees(&repo)?;
    match fs::remove_file(&spare.token) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let name = worktree_name(&spare.path)?;
    clean_up(&repo, &name, &spare.path, "")?;
    Ok(())
}

/// The commit the project's HEAD is at, if it can be read.
pub fn head_commit(project: &Path) -> Option<String> {
    let repo = Repository::open(project).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}

/// What a project's pool holds on disk, for `doctor` and `project show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    pub project: PathBuf,
    pub spares: usize,
    /// Allocated bytes (each hard-linked file counted once; reflinked extents are counted as
    /// if unshared, so this is an upper bound on copy-on-write filesystems).
    pub bytes: u64,
}

/// The pools under `pool_root` and their disk use (spares live in `worktrees`).
pub fn disk_use(pool_root: &Path, worktrees: &Path) -> Vec<PoolUse> {
    pooled_projects(pool_root)
        .into_iter()
        .map(|(project, _)| {
            let spares = spares(&project, pool_root, worktrees).unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            PoolUse {
                project,
                spares: spares.len(),
                bytes: spares.iter().map(|s| allocated(&s.path, &mut seen)).sum(),
            }
        })
        .collect()
}

fn allocated(dir: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        // symlink_metadata: a link is counted as itself, never followed out of the pool
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += allocated(&e.path(), seen);
        }
    }
    total
}
