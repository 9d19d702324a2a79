//! The client's `fs/read_text_file` and `fs/write_text_file`, served from the session's
//! worktree only. Every path goes through the path guard, so `..`, foreign absolute paths,
//! `<root>-evil` siblings and symlinks that leave the worktree are refused.

use std::path::Path;

use crate::worktree::guard;

/// Largest file served to an agent in one read; bigger reads must page with `line`/`limit`.
const READ_MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub(super) enum FsError {
    #[error("refused: {0}")]
    Refused(#[from] guard::PathError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is {size} bytes; read it in pages with `line` and `limit`")]
    TooLarge { path: String, size: u64 },
    #[error("{0}: not valid UTF-8 text")]
    NotText(String),
}

impl FsError {
    /// Whether the guard refused the path (as opposed to an ordinary I/O failure).
    pub(super) fn is_refusal(&self) -> bool {
        matches!(self, FsError::Refused(_))
    }

    /// The JSON-RPC error code: invalid params for a refused path, ACP's resource-not-found
    /// for a missing file (agents test for it before creating one), internal otherwise.
    pub(super) fn code(&self) -> i32 {
        match self {
            FsError::Refused(_) => -32602,
            FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => -32002,
            FsError::Io { .. } | FsError::TooLarge { .. } | FsError::NotText(_) => -32603,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Read a text file, optionally from 1-based `line` for `limit` lines.
pub(super) async fn read(
    root: &Path,
    requested: &Path,
    line: Option<u32>,
    limit: Option<u32>,
) -> Result<String, FsError> {
    let path = guard::resolve(root, &requested.to_string_lossy())?;
    let meta = tokio::fs::metadata(&path).await.map_err(io(&path))?;
    if meta.len() > READ_MAX_BYTES && line.is_none() && limit.is_none() {
        return Err(FsError::TooLarge {
            path: path.display().to_string(),
            size: meta.len(),
        });
    }
    let bytes = tokio::fs::read(&path).await.map_err(io(&path))?;
    let text =
        String::from_utf8(bytes).map_err(|_| FsError::NotText(path.display().to_string()))?;
    Ok(slice_lines(&text, line, limit))
}

/// Write (create or replace) a text file; missing parent directories are created inside the
/// worktree. The write goes to a temporary file first so a reader never sees half a file.
pub(super) async fn write(root: &Path, requested: &Path, content: &str) -> Result<(), FsError> {
    let path = guard::resolve(root, &requested.to_string_lossy())?;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
        // Creating directories cannot have moved the target outside, but re-check the final
        // path in case a directory was swapped for a symlink meanwhile.
        guard::resolve(root, &path.to_string_lossy())?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.boocoder-tmp"));
    tokio::fs::write(&tmp, content).await.map_err(io(&tmp))?;
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        // why: the temp file is ours; failing to remove it only leaves a stray file.
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io(&path)(e));
    }
    Ok(())
}

/// Lines `line..line+limit` (1-based), keeping line endings.
fn slice_lines(text: &str, line: Option<u32>, limit: Option<u32>) -> String {
    if line.is_none() && limit.is_none() {
        return text.to_string();
    }
    let skip = line.unwrap_or(1).max(1) as usize - 1;
    let take = limit.map(|l| l as usize).unwrap_or(usize::MAX);
    text.split_inclusive('\n').skip(skip).take(take).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_limit_page_the_file() {
        let t = "a\nb\nc\nd";
        assert_eq!(slice_lines(t, None, None), t);
        assert_eq!(slice_lines(t, Some(2), Some(2)), "b\nc\n");
        assert_eq!(slice_lines(t, Some(4), None), "d");
        assert_eq!(slice_lines(t, None, Some(1)), "a\n");
        assert_eq!(slice_lines(t, Some(9), Some(1)), "");
        assert_eq!(slice_lines(t, Some(0), Some(1)), "a\n");
    }

    #[tokio::test]
    async fn writes_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canon");
        let root = base.join("wt");
        let evil = base.join("wt-evil");
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir_all(&evil).expect("evil");
        std::os::unix::fs::symlink(&evil, root.join("link")).expect("symlink");

        write(&root, &root.join("src/new.txt"), "hi\n")
            .await
            .expect("inside");
        assert_eq!(
            read(&root, &root.join("src/new.txt"), None, None)
                .await
                .expect("read"),
            "hi\n"
        );
        for bad in [
            root.join("../escape.txt"),
            Path::new("/etc/passwd-boocoder").to_path_buf(),
            evil.join("x.txt"),
            root.join("link/x.txt"),
        ] {
            let err = write(&root, &bad, "x").await.expect_err("escape");
            assert!(err.is_refusal(), "{bad:?}: {err}");
        }
        assert!(!evil.join("x.txt").exists());
        let missing = read(&root, &root.join("nope.txt"), None, None)
            .await
            .expect_err("missing");
        assert_eq!(missing.code(), -32002);
        assert!(
            read(&root, &root.join("../wt-evil/x"), None, None)
                .await
                .is_err()
        );
    }
}
