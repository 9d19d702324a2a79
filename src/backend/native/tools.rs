//! The model's tools. Every path goes through the worktree path guard, `.git` is off limits,
//! and every result is capped so one large file cannot flood the context. Errors are returned
//! to the model as text (it can correct itself); nothing here panics on model input.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::worktree::guard;

/// Most bytes of one tool result given back to the model.
pub const RESULT_CAP: usize = 24 * 1024;
/// Most matches one search returns.
const SEARCH_MATCHES: usize = 200;
/// Longest matching line shown by search.
const SEARCH_LINE: usize = 300;
/// Files larger than this are skipped by search (generated or binary data).
const SEARCH_FILE_MAX: u64 = 2 << 20;

/// The tool definitions sent with every request (OpenAI `tools` array).
pub fn definitions() -> Value {
    let tool = |name: &str, description: &str, params: Value| json!({"type": "function", "function": {"name": name, "description": description, "parameters": params}});
    let path = json!({"type": "string", "description": "Path relative to the worktree root"});
    json!([
        tool(
            "read_file",
            "Read a text file. Optionally a 1-based inclusive line range.",
            json!({
            "type": "object", "required": ["path"],
            "properties": {"path": path, "start_line": {"type": "integer", "minimum": 1}, "end_line": {"type": "integer", "minimum": 1}}})
        ),
        tool(
            "list_dir",
            "List a directory (default: the worktree root). Directories end with '/'.",
            json!({
            "type": "object", "properties": {"path": path}})
        ),
        tool(
            "search",
            "Search file contents with a regular expression (Rust regex syntax), respecting .gitignore. Returns path:line: text.",
            json!({
            "type": "object", "required": ["pattern"],
            "properties": {"pattern": {"type": "string"}, "path": {"type": "string", "description": "Directory or file to search in (default: the worktree root)"}}})
        ),
        tool(
            "write_file",
            "Create or overwrite a file with the given content; parent directories are created.",
            json!({
            "type": "object", "required": ["path", "content"],
            "properties": {"path": path, "content": {"type": "string"}}})
        ),
        tool(
            "edit_file",
            "Replace one exact occurrence of old_string with new_string. old_string must occur exactly once; include surrounding lines to make it unique.",
            json!({
            "type": "object", "required": ["path", "old_string", "new_string"],
            "properties": {"path": path, "old_string": {"type": "string"}, "new_string": {"type": "string"}}})
        ),
        tool(
            "delete_file",
            "Delete a file.",
            json!({
            "type": "object", "required": ["path"], "properties": {"path": path}})
        ),
    ])
}

/// A tool call the model made, parsed and checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "name", content = "args", rename_all = "snake_case")]
pub enum ToolInput {
    ReadFile {
        path: String,
        start_line: Option<usize>,
        end_line: Option<usize>,
    },
    ListDir {
        path: Option<String>,
    },
    Search {
        pattern: String,
        path: Option<String>,
    },
    WriteFile {
        path: String,
        content: String,
    },
    EditFile {
        path: String,
        old_string: String,
        new_string: String,
    },
    DeleteFile {
        path: String,
    },
}

impl ToolInput {
    /// Parse a call; the error is phrased for the model.
    pub fn parse(name: &str, arguments: &str) -> Result<ToolInput, String> {
        let args: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|e| format!("error: the arguments are not valid JSON ({e})"))?
        };
        serde_json::from_value(json!({"name": name, "args": args})).map_err(|e| {
            format!("error: bad call to `{name}`: {e}. Available tools: read_file, list_dir, search, write_file, edit_file, delete_file")
        })
    }

    /// A short line for the transcript, and the ACP-style kind.
    pub fn title(&self) -> (String, &'static str) {
        match self {
            ToolInput::ReadFile { path, .. } => (format!("read_file {path}"), "read"),
            ToolInput::ListDir { path } => (
                format!("list_dir {}", path.as_deref().unwrap_or(".")),
                "read",
            ),
            ToolInput::Search { pattern, .. } => (format!("search {pattern}"), "search"),
            ToolInput::WriteFile { path, .. } => (format!("write_file {path}"), "edit"),
            ToolInput::EditFile { path, .. } => (format!("edit_file {path}"), "edit"),
            ToolInput::DeleteFile { path } => (format!("delete_file {path}"), "delete"),
        }
    }
}

/// Run one tool in the worktree `root`. `Ok` and `Err` both go back to the model; `Err` marks
/// the call failed in the transcript. Blocking file IO: call from a blocking thread.
pub fn run(root: &Path, input: &ToolInput) -> Result<String, String> {
    let out = match input {
        ToolInput::ReadFile {
            path,
            start_line,
            end_line,
        } => read_file(root, path, *start_line, *end_line),
        ToolInput::ListDir { path } => list_dir(root, path.as_deref().unwrap_or(".")),
        ToolInput::Search { pattern, path } => search(root, pattern, path.as_deref()),
        ToolInput::WriteFile { path, content } => {
            let p = resolve(root, path)?;
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_err(path, e))?;
            }
            std::fs::write(&p, content).map_err(|e| io_err(path, e))?;
            Ok(format!("wrote {path} ({} bytes)", content.len()))
        }
        ToolInput::EditFile {
            path,
            old_string,
            new_string,
        } => {
            let p = resolve(root, path)?;
            let text = std::fs::read_to_string(&p).map_err(|e| io_err(path, e))?;
            let new = replace_unique(&text, old_string, new_string)
                .map_err(|e| format!("error: {path}: {e}"))?;
            std::fs::write(&p, new).map_err(|e| io_err(path, e))?;
            Ok(format!("edited {path}"))
        }
        ToolInput::DeleteFile { path } => {
            let p = resolve(root, path)?;
            if p.is_dir() {
                return Err(format!(
                    "error: {path} is a directory; delete files one by one"
                ));
            }
            std::fs::remove_file(&p).map_err(|e| io_err(path, e))?;
            Ok(format!("deleted {path}"))
        }
    }?;
    Ok(cap(out))
}

fn io_err(path: &str, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("error: {path}: no such file or directory"),
        _ => format!("error: {path}: {e}"),
    }
}

/// The guard, plus `.git`: the worktree's git metadata is boocoder's, not the model's.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, String> {
    let p = guard::resolve(root, path)
        .map_err(|e| format!("error: refused: {e}; only paths inside the worktree are allowed"))?;
    let canon_root = root.canonicalize().map_err(|e| format!("error: {e}"))?;
    let in_git = p
        .strip_prefix(&canon_root)
        .ok()
        .and_then(|rel| rel.components().next())
        .is_some_and(|c| c.as_os_str() == ".git");
    if in_git {
        return Err(format!("error: refused: {path} is inside .git"));
    }
    Ok(p)
}

/// Exact, unique replacement: a missing or ambiguous `old` is an error that says which.
pub fn replace_unique(text: &str, old: &str, new: &str) -> Result<String, String> {
    if old.is_empty() {
        return Err("old_string is empty; use write_file to create a file".into());
    }
    match text.matches(old).count() {
        0 => Err("old_string was not found; read the file and copy the text exactly, including whitespace".into()),
        1 => Ok(text.replacen(old, new, 1)),
        n => Err(format!(
            "old_string occurs {n} times; include more surrounding lines so it matches exactly once"
        )),
    }
}

fn read_file(
    root: &Path,
    path: &str,
    start: Option<usize>,
    end: Option<usize>,
) -> Result<String, String> {
    let p = resolve(root, path)?;
    if p.is_dir() {
        return Err(format!("error: {path} is a directory; use list_dir"));
    }
    let bytes = std::fs::read(&p).map_err(|e| io_err(path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("error: {path} is not UTF-8 text (binary file?)"))?;
    if start.is_none() && end.is_none() {
        return Ok(text);
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let total = lines.len();
    let from = start.unwrap_or(1).max(1);
    let to = end.unwrap_or(total).min(total);
    if from > total.max(1) || from > to {
        return Err(format!(
            "error: {path} has {total} lines; the range {from}..{to} is empty"
        ));
    }
    Ok(format!(
        "[{path}: lines {from}-{to} of {total}]\n{}",
        lines[from - 1..to].concat()
    ))
}

fn list_dir(root: &Path, path: &str) -> Result<String, String> {
    let p = resolve(root, path)?;
    let rd = std::fs::read_dir(&p).map_err(|e| io_err(path, e))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".git" {
                return None;
            }
            let dir = e.file_type().ok()?.is_dir();
            Some(if dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Ok(format!("{path} is empty"));
    }
    Ok(names.join("\n"))
}

fn search(root: &Path, pattern: &str, path: Option<&str>) -> Result<String, String> {
    let re = regex::Regex::new(pattern).map_err(|e| format!("error: bad regex: {e}"))?;
    let canon_root = root.canonicalize().map_err(|e| format!("error: {e}"))?;
    let start = resolve(root, path.unwrap_or("."))?;
    let walker = ignore::WalkBuilder::new(&start)
        .hidden(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut hits = Vec::new();
    'files: for entry in walker {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file())
            || entry.metadata().is_ok_and(|m| m.len() > SEARCH_FILE_MAX)
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue; // why: binary or unreadable files have no lines to match
        };
        let rel = entry
            .path()
            .strip_prefix(&canon_root)
            .unwrap_or(entry.path())
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            if re.is_match(line) {
                if hits.len() == SEARCH_MATCHES {
                    hits.push(format!(
                        "[stopped at {SEARCH_MATCHES} matches; narrow the pattern or path]"
                    ));
                    break 'files;
                }
                hits.push(format!(
                    "{rel}:{}: {}",
                    n + 1,
                    cut(line.trim_end(), SEARCH_LINE)
                ));
            }
        }
    }
    if hits.is_empty() {
        return Ok(format!("no matches for /{pattern}/"));
    }
    Ok(hits.join("\n"))
}

/// Cap a tool result, saying how much was cut so the model can ask for a narrower range.
pub fn cap(s: String) -> String {
    if s.len() <= RESULT_CAP {
        return s;
    }
    let total = s.len();
    let mut out = cut(&s, RESULT_CAP);
    out.push_str(&format!(
        "\n[output truncated: {RESULT_CAP} of {total} bytes shown; read a line range or narrow the search]"
    ));
    out
}

/// The first `max` bytes of `s`, at a character boundary, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_is_exact_and_unique() {
        assert_eq!(replace_unique("a b c", "b", "B"), Ok("a B c".into()));
        let missing = replace_unique("a b c", "x", "y").expect_err("missing");
        assert!(missing.contains("not found"), "{missing}");
        let twice = replace_unique("x x", "x", "y").expect_err("ambiguous");
        assert!(twice.contains("occurs 2 times"), "{twice}");
        assert!(replace_unique("x", "", "y").is_err());
    }

    #[test]
    fn tools_stay_in_the_worktree() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("wt");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        std::fs::write(root.join("a.txt"), "one\ntwo\nthree\n").expect("write");
        std::fs::write(dir.path().join("secret"), "s").expect("write");
        let run_ = |name: &str, args: Value| {
            run(
                &root,
                &ToolInput::parse(name, &args.to_string()).expect("parse"),
            )
        };
        assert_eq!(
            run_(
                "read_file",
                json!({"path": "a.txt", "start_line": 2, "end_line": 2})
            ),
            Ok("[a.txt: lines 2-2 of 3]\ntwo\n".into())
        );
        for bad in ["../secret", "/etc/passwd", ".git/config"] {
            let e = run_("read_file", json!({ "path": bad })).expect_err(bad);
            assert!(e.contains("refused"), "{e}");
        }
        assert_eq!(
            run_("write_file", json!({"path": "d/b.txt", "content": "x\n"})),
            Ok("wrote d/b.txt (2 bytes)".into())
        );
        assert_eq!(run_("list_dir", json!({})), Ok("a.txt\nd/".into()));
        assert_eq!(
            run_("search", json!({"pattern": "^t"})),
            Ok("a.txt:2: two\na.txt:3: three".into())
        );
        assert_eq!(
            run_("delete_file", json!({"path": "d/b.txt"})),
            Ok("deleted d/b.txt".into())
        );
        assert!(ToolInput::parse("rm_rf", "{}").is_err());
        assert!(ToolInput::parse("read_file", "{not json").is_err());
    }

    #[test]
    fn search_respects_gitignore() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "target/\n").expect("write");
        std::fs::create_dir_all(root.join("target")).expect("mkdir");
        std::fs::write(root.join("target/x.txt"), "needle\n").expect("write");
        std::fs::write(root.join("src.txt"), "needle\n").expect("write");
        assert_eq!(search(root, "needle", None), Ok("src.txt:1: needle".into()));
    }

    #[test]
    fn big_results_are_capped_with_a_note() {
        let s = cap("é".repeat(RESULT_CAP));
        assert!(s.len() < RESULT_CAP + 200);
        assert!(s.ends_with("narrow the search]"), "{}", &s[s.len() - 80..]);
    }
}
