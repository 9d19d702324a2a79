//! Path guard: the one place that decides whether a path named by an agent,
//! a patch or a caller stays inside a root directory. Everything that writes
//! or deletes under a checkout or worktree on someone else's say-so goes
//! through here, so the rules (lexical `..` handling, symlink resolution,
//! component-wise containment) live in exactly one spot.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path {path:?} escapes the root directory")]
    Escapes { path: String },
    #[error("absolute path {path:?} is outside the root directory")]
    Absolute { path: String },
    #[error("path is empty")]
    Empty,
    #[error("path {path:?} contains a NUL byte")]
    Nul { path: String },
    #[error("cannot resolve {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Resolve `requested` (relative to `root`, or absolute) to a path inside `root`.
///
/// The existing part of the path is canonicalized so that a symlink anywhere
/// along it cannot smuggle the result outside `root`; the part that does not
/// exist yet is re-appended as plain names, because that is what a later
/// create/write will produce. The returned path is the one callers must use:
/// it is the path that was checked.
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, PathError> {
    if requested.is_empty() {
        return Err(PathError::Empty);
    }
    if requested.contains('\0') {
        return Err(PathError::Nul {
            path: requested.to_owned(),
        });
    }
    let root = fs::canonicalize(root).map_err(|source| PathError::Io {
        path: root.display().to_string(),
        source,
    })?;
    let req = Path::new(requested);
    let escapes = || PathError::Escapes {
        path: requested.to_owned(),
    };
    let outside = || {
        if req.is_absolute() {
            PathError::Absolute {
                path: requested.to_owned(),
            }
        } else {
            escapes()
        }
    };

    let normal = if req.is_absolute() {
        normalise(req)
    } else {
        // Relative paths may never climb above the root, even transiently
        // ("../root-name/x"): that would let a caller probe the parent.
        let tail = normalise_relative(req).ok_or_else(escapes)?;
        root.join(tail)
    };

    let (existing, tail) = split_existing(&normal).map_err(|source| PathError::Io {
        path: requested.to_owned(),
        source,
    })?;
    let canonical = fs::canonicalize(&existing).map_err(|source| PathError::Io {
        path: requested.to_owned(),
        source,
    })?;
    if !canonical.starts_with(&root) {
        // An absolute path that lexically sits in root but canonically does
        // not went through a symlink: that is an escape, not a wrong root.
        return Err(if normal.starts_with(&root) {
            escapes()
        } else {
            outside()
        });
    }
    let mut resolved = canonical;
    for name in tail {
        let next = resolved.join(&name);
        // A dangling symlink is "missing" for canonicalize, but writing
        // through it would land wherever it points.
        if let Ok(target) = fs::read_link(&next) {
            let target = normalise(&resolved.join(target));
            if !target.starts_with(&root) {
                return Err(escapes());
            }
        }
        resolved = next;
    }
    Ok(resolved)
}

/// True when `candidate` exists and, fully canonicalized, lies inside the
/// canonical `root`. Containment is by path components, so `<root>-evil` is
/// not inside `<root>`.
pub fn is_within(root: &Path, candidate: &Path) -> bool {
    match (fs::canonicalize(root), fs::canonicalize(candidate)) {
        (Ok(root), Ok(candidate)) => candidate.starts_with(root),
        _ => false,
    }
}

/// Lexically normalise an absolute path; `..` at the filesystem root stays at
/// the root, as the kernel does.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Lexically normalise a relative path; `None` when `..` would climb above
/// its starting point.
fn normalise_relative(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(name) => parts.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Split into the longest existing ancestor and the missing names after it.
fn split_existing(path: &Path) -> io::Result<(PathBuf, Vec<OsString>)> {
    let mut existing = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        match fs::symlink_metadata(&existing) {
            Ok(meta) => {
                // A symlink whose target is missing counts as missing, so
                // that `resolve` inspects where it points.
                let dangling = meta.file_type().is_symlink() && fs::metadata(&existing).is_err();
                if !dangling {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
            break;
        };
        tail.push(name);
        if !existing.pop() {
            break;
        }
    }
    tail.reverse();
    Ok((existing, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("root-evil");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("sub/file.txt"), b"x").unwrap();
        fs::write(outside.join("secret"), b"s").unwrap();
        Fixture {
            _dir: dir,
            root,
            outside,
        }
    }

    #[test]
    fn relative_existing_and_missing_paths_resolve_inside() {
        let f = fixture();
        assert_eq!(
            resolve(&f.root, "sub/file.txt").unwrap(),
            f.root.join("sub/file.txt")
        );
        assert_eq!(
            resolve(&f.root, "sub/new/deeper/x.rs").unwrap(),
            f.root.join("sub/new/deeper/x.rs")
        );
        assert_eq!(
            resolve(&f.root, "./sub/../sub/./file.txt").unwrap(),
            f.root.join("sub/file.txt")
        );
        assert_eq!(resolve(&f.root, ".").unwrap(), f.root);
    }

    #[test]
    fn dotdot_climbing_out_is_refused() {
        let f = fixture();
        for p in ["..", "../root-evil/secret", "sub/../../x", "../root/sub"] {
            assert!(
                matches!(resolve(&f.root, p), Err(PathError::Escapes { .. })),
                "{p}"
            );
        }
    }

    #[test]
    fn absolute_paths_inside_are_accepted_outside_refused() {
        let f = fixture();
        let inside = f.root.join("sub/new.txt");
        assert_eq!(resolve(&f.root, inside.to_str().unwrap()).unwrap(), inside);
        assert!(matches!(
            resolve(&f.root, "/etc/passwd"),
            Err(PathError::Absolute { .. })
        ));
        let climb = format!("{}/../root-evil/secret", f.root.display());
        assert!(matches!(
            resolve(&f.root, &climb),
            Err(PathError::Absolute { .. })
        ));
    }

    #[test]
    fn sibling_prefix_is_not_inside() {
        let f = fixture();
        let evil = f.outside.join("secret");
        let err = resolve(&f.root, evil.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, PathError::Absolute { .. }));
        assert!(err.to_string().contains("root-evil"));
        assert!(!is_within(&f.root, &evil));
        assert!(!is_within(&f.root, &f.outside));
    }

    #[test]
    fn symlinks_pointing_outside_are_refused() {
        let f = fixture();
        symlink(&f.outside, f.root.join("dirlink")).unwrap();
        symlink(f.outside.join("secret"), f.root.join("filelink")).unwrap();
        symlink(f.outside.join("nothing-yet"), f.root.join("dangling")).unwrap();
        for p in ["dirlink/secret", "dirlink/new/file", "filelink", "dangling"] {
            assert!(
                matches!(resolve(&f.root, p), Err(PathError::Escapes { .. })),
                "{p}"
            );
        }
        let abs = f.root.join("dirlink/secret");
        assert!(matches!(
            resolve(&f.root, abs.to_str().unwrap()),
            Err(PathError::Escapes { .. })
        ));
        assert!(!is_within(&f.root, &f.root.join("filelink")));
    }

    #[test]
    fn symlinks_inside_root_are_fine() {
        let f = fixture();
        symlink(f.root.join("sub"), f.root.join("sublink")).unwrap();
        symlink("sub/file.txt", f.root.join("filelink")).unwrap();
        symlink("sub/later.txt", f.root.join("dangling-inside")).unwrap();
        assert_eq!(
            resolve(&f.root, "sublink/file.txt").unwrap(),
            f.root.join("sub/file.txt")
        );
        assert_eq!(
            resolve(&f.root, "filelink").unwrap(),
            f.root.join("sub/file.txt")
        );
        assert_eq!(
            resolve(&f.root, "dangling-inside").unwrap(),
            f.root.join("dangling-inside")
        );
        assert!(is_within(&f.root, &f.root.join("sublink/file.txt")));
    }

    #[test]
    fn empty_and_nul_are_refused() {
        let f = fixture();
        assert!(matches!(resolve(&f.root, ""), Err(PathError::Empty)));
        assert!(matches!(
            resolve(&f.root, "sub/a\0b"),
            Err(PathError::Nul { .. })
        ));
    }

    #[test]
    fn missing_root_is_an_io_error() {
        let f = fixture();
        let err = resolve(&f.root.join("nope"), "x").unwrap_err();
        assert!(matches!(err, PathError::Io { .. }));
        assert!(!is_within(&f.root, &f.root.join("missing")));
    }

    #[test]
    fn root_given_through_symlink_is_canonicalized() {
        let f = fixture();
        let alias = f.outside.join("alias");
        symlink(&f.root, &alias).unwrap();
        assert_eq!(
            resolve(&alias, "sub/file.txt").unwrap(),
            f.root.join("sub/file.txt")
        );
        let through_alias = alias.join("sub/file.txt");
        assert_eq!(
            resolve(&f.root, through_alias.to_str().unwrap()).unwrap(),
            f.root.join("sub/file.txt")
        );
    }
}
