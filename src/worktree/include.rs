//! `.worktreeinclude`: files git ignores that a project still needs in every session worktree
//! (`.env`, local settings), named in gitignore syntax at the checkout's root, the convention
//! Claude Code and qwen-code use. Only files git ignores and that exist in the checkout are
//! candidates (tracked files are already checked out; an untracked file that is not ignored
//! would be part of the user's own next commit); symlinks are recreated as links, never
//! followed, and one that leads out of the project is skipped. What was copied is recorded in
//! the worktree's git directory so that snapshots leave it out: these files never flow back
//! into a pending change.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use git2::{Repository, Status, StatusOptions};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::WorktreeError;

/// The file at the checkout's root that selects what is copied.
pub const INCLUDE_FILE: &str = ".worktreeinclude";

/// In the worktree's git directory: the copied paths, NUL-separated.
const RECORD: &str = "boocoder-included";

/// What `.worktreeinclude` brought into a new worktree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Included {
    /// Paths relative to the worktree, as they were copied (a directory stands for its
    /// content).
    pub copied: Vec<String>,
    /// `path: why` for each candidate left out (a symlink leading out of the project, a bad
    /// pattern line, an unreadable file).
    pub skipped: Vec<String>,
}

/// Copy what the checkout of `project` selects with its `.worktreeinclude` into the worktree
/// `wt_abs`, and record it. Nothing to do (and no git walk) when the file is absent.
pub fn copy_included(project: &Path, wt_abs: &Path) -> Result<Included, WorktreeError> {
    let project = Repository::open(project)?;
    let mut out = Included::default();
    let Some(root) = project.workdir() else {
        return Ok(out);
    };
    let root = fs::canonicalize(root)?;
    let Some(patterns) = read_patterns(&root, &mut out.skipped)? else {
        return Ok(out);
    };
    let copy = Copier {
        root: &root,
        wt: wt_abs,
        matcher: &patterns.matcher,
    };
    for (rel, is_dir) in ignored_entries(&project)? {
        if copy.selected(&rel, is_dir) {
            copy.entry(&rel, &mut out);
        } else if is_dir && patterns.reach_inside(&rel) {
            copy.search(&rel, &patterns, &mut out);
        }
    }
    out.copied.sort();
    record(wt_abs, &out.copied)?;
    Ok(out)
}

/// The paths a snapshot of `wt` must leave out (empty when nothing was included).
pub(super) fn recorded(wt: &Path) -> Vec<Vec<u8>> {
    match fs::read(wt.join(".git").join(RECORD)) {
        Ok(bytes) => bytes
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Add `paths` to the worktree's record of what came from the checkout.
pub(super) fn record(wt: &Path, paths: &[String]) -> Result<(), WorktreeError> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for p in paths {
        bytes.extend_from_slice(p.as_bytes());
        bytes.push(0);
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(wt.join(".git").join(RECORD))?;
    f.write_all(&bytes)?;
    Ok(())
}

struct Patterns {
    matcher: Gitignore,
    /// Non-negated patterns that name a directory path (`config/*/local.yml`), split into
    /// segments: only those can select something inside a directory git ignores as a whole.
    anchored: Vec<Vec<String>>,
}

impl Patterns {
    /// Whether some pattern could select a path under the ignored directory `dir`. A pattern
    /// without a slash (`.env`) does not reach into ignored directories: `node_modules` holds
    /// thousands of `.env`-like files no one meant to copy, and walking it would cost seconds.
    fn reach_inside(&self, dir: &str) -> bool {
        let segs: Vec<&str> = dir.split('/').collect();
        self.anchored.iter().any(|pat| {
            for (i, seg) in segs.iter().enumerate() {
                match pat.get(i) {
                    Some(p) if p == "**" => return true,
                    Some(p) if p == seg || p.contains(['*', '?', '[']) => {}
                    _ => return false,
                }
            }
            pat.len() > segs.len()
        })
    }
}

/// The patterns of `root/.worktreeinclude`, or `None` when there is none. A line that is not
/// a valid pattern is skipped and reported; it does not cost the others.
fn read_patterns(
    root: &Path,
    skipped: &mut Vec<String>,
) -> Result<Option<Patterns>, WorktreeError> {
    let path = root.join(INCLUDE_FILE);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            skipped.push(format!("{INCLUDE_FILE}: not a regular file"));
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let text = fs::read_to_string(&path)?;
    let mut builder = GitignoreBuilder::new(root);
    let mut anchored = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Err(e) = builder.add_line(Some(path.clone()), line) {
            skipped.push(format!("{INCLUDE_FILE} line {}: {e}", n + 1));
            continue;
        }
        let pat = line.trim();
        if pat.is_empty() || pat.starts_with('#') || pat.starts_with('!') {
            continue;
        }
        let pat = pat.trim_end_matches('/');
        if pat.contains('/') {
            anchored.push(
                pat.trim_start_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    let matcher = builder
        .build()
        .map_err(|e| std::io::Error::other(format!("{INCLUDE_FILE}: {e}")))?;
    Ok(Some(Patterns { matcher, anchored }))
}

/// Every path git ignores in the checkout, without descending into ignored directories
/// (reported once, as `dir`, with `is_dir`). Git's own walk: it already knows the project's
/// ignore rules (`.gitignore` files, `info/exclude`, `core.excludesFile`).
fn ignored_entries(project: &Repository) -> Result<Vec<(String, bool)>, WorktreeError> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true)
        .no_refresh(true);
    let statuses = project.statuses(Some(&mut opts))?;
    let mut out = Vec::new();
    for s in statuses.iter() {
        if !s.status().contains(Status::IGNORED) {
            continue;
        }
        let Ok(path) = std::str::from_utf8(s.path_bytes()) else {
            continue;
        };
        match path.strip_suffix('/') {
            Some(dir) => out.push((dir.to_string(), true)),
            None => out.push((path.to_string(), false)),
        }
    }
    Ok(out)
}

struct Copier<'a> {
    root: &'a Path,
    wt: &'a Path,
    matcher: &'a Gitignore,
}

impl Copier<'_> {
    fn selected(&self, rel: &str, is_dir: bool) -> bool {
        self.matcher
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }

    /// Look inside an ignored directory no pattern selects as a whole, for paths some
    /// anchored pattern selects.
    fn search(&self, dir: &str, patterns: &Patterns, out: &mut Included) {
        let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = format!("{dir}/{name}");
            // file_type does not follow symlinks: a link to a directory is not walked.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if self.selected(&rel, is_dir) {
                self.entry(&rel, out);
            } else if is_dir && patterns.reach_inside(&rel) {
                self.search(&rel, patterns, out);
            }
        }
    }

    /// Copy one selected path (a directory with everything in it).
    fn entry(&self, rel: &str, out: &mut Included) {
        match self.destination(Path::new(rel)) {
            Ok(dst) => {
                if self.copy_to(&self.root.join(rel), &dst, rel, out) {
                    out.copied.push(rel.to_string());
                }
            }
            Err(why) => out.skipped.push(format!("{rel}: {why}")),
        }
    }

    /// Copy `src` to `dst`; what cannot be copied (here or inside a directory) is recorded
    /// in `out.skipped` and costs only itself. False when `src` itself was skipped.
    fn copy_to(&self, src: &Path, dst: &Path, rel: &str, out: &mut Included) -> bool {
        let done = fs::symlink_metadata(src)
            .map_err(|e| e.to_string())
            .and_then(|meta| {
                let kind = meta.file_type();
                if kind.is_symlink() {
                    self.link_inside(src)?;
                    let target = fs::read_link(src).map_err(|e| e.to_string())?;
                    std::os::unix::fs::symlink(target, dst).map_err(|e| e.to_string())
                } else if kind.is_dir() {
                    fs::create_dir(dst).map_err(|e| e.to_string())?;
                    for entry in fs::read_dir(src).map_err(|e| e.to_string())?.flatten() {
                        let name = entry.file_name();
                        let child = format!("{rel}/{}", name.to_string_lossy());
                        self.copy_to(&src.join(&name), &dst.join(&name), &child, out);
                    }
                    Ok(())
                } else if kind.is_file() {
                    fs::copy(src, dst).map(|_| ()).map_err(|e| e.to_string())
                } else {
                    Err("not a regular file, directory or symlink".into())
                }
            });
        match done {
            Ok(()) => true,
            Err(why) => {
                out.skipped.push(format!("{rel}: {why}"));
                false
            }
        }
    }

    /// A symlink is copied as a link, and only when what it points at lies in the project: a
    /// link to `~/.aws/credentials` would hand the agent a file outside the project.
    fn link_inside(&self, link: &Path) -> Result<(), String> {
        match fs::canonicalize(link) {
            Ok(target) if target.starts_with(self.root) => Ok(()),
            Ok(_) => Err("a symlink leading outside the project; not copied".into()),
            Err(_) => Err("a dangling symlink; not copied".into()),
        }
    }

    /// Where `rel` goes in the worktree, its parent directories created. A parent that
    /// exists as a symlink (checked out from the project) would carry the copy out of the
    /// worktree, and a path that exists already is the project's own: both are refused.
    fn destination(&self, rel: &Path) -> Result<PathBuf, String> {
        let mut at = self.wt.to_path_buf();
        let parts: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(format!("unexpected path component in `{}`", rel.display())),
            })
            .collect::<Result<_, _>>()?;
        let Some((last, parents)) = parts.split_last() else {
            return Err("empty path".into());
        };
        for part in parents {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(format!(
                        "`{}` in the worktree is not a directory",
                        String::from_utf8_lossy(part.as_bytes())
                    ));
                }
                Err(_) => fs::create_dir(&at).map_err(|e| e.to_string())?,
            }
        }
        at.push(last);
        if fs::symlink_metadata(&at).is_ok() {
            return Err("exists in the worktree already".into());
        }
        Ok(at)
    }
}
