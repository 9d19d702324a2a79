//! Where a three-way text merge gives up, said in lines: the regions of the common base that
//! both sides changed (or touched at the same spot), with each side's lines there now. This
//! only explains a conflict libgit2's merge found; it decides nothing.

use git2::{DiffOptions, Patch};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// At most this many lines of each side are quoted per hunk.
const QUOTED_LINES: usize = 12;
/// A quoted line is cut at this many characters.
const QUOTED_CHARS: usize = 200;

/// A run of lines in one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LineSpan {
    /// First line (1-based). An empty span (`count` 0) sits just before this line.
    pub start: u32,
    pub count: u32,
}

impl std::fmt::Display for LineSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count {
            0 => write!(f, "none (before line {})", self.start),
            1 => write!(f, "line {}", self.start),
            n => write!(f, "lines {}-{}", self.start, self.start + n - 1),
        }
    }
}

/// One region both sides changed differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConflictHunk {
    /// The lines of the change's base (what both sides started from) the region covers.
    pub base: LineSpan,
    /// Where the region is in the checkout now, and its lines there (at most 12 quoted).
    pub checkout: LineSpan,
    pub checkout_lines: Vec<String>,
    /// Where the region is in the session's version, and its lines there.
    pub session: LineSpan,
    pub session_lines: Vec<String>,
}

/// One side's edit of the base: base lines `[old, old + old_len)` became lines
/// `[new, new + new_len)` of that side (0-based).
#[derive(Debug, Clone, Copy)]
struct Edit {
    old: usize,
    old_len: usize,
    new_len: usize,
    ours: bool,
}

impl Edit {
    fn end(&self) -> usize {
        self.old + self.old_len
    }

    fn growth(&self) -> isize {
        self.new_len as isize - self.old_len as isize
    }
}

/// The regions where `ours` (the checkout) and `theirs` (the session) both edited `base`,
/// touching or overlapping, with different results.
pub(super) fn conflicting(
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
) -> Result<Vec<ConflictHunk>, git2::Error> {
    let mut all = edits(base, ours, true)?;
    all.extend(edits(base, theirs, false)?);
    all.sort_by_key(|e| (e.old, e.end()));
    let (ours_lines, theirs_lines) = (lines(ours), lines(theirs));
    let (mut ours_shift, mut theirs_shift) = (0isize, 0isize);
    let mut hunks = Vec::new();
    let mut i = 0;
    while i < all.len() {
        // A cluster: edits that overlap or touch, transitively.
        let (start, mut end) = (all[i].old, all[i].end());
        let mut j = i + 1;
        while j < all.len() && all[j].old <= end {
            end = end.max(all[j].end());
            j += 1;
        }
        let cluster = &all[i..j];
        let growth = |ours: bool| -> isize {
            cluster
                .iter()
                .filter(|e| e.ours == ours)
                .map(Edit::growth)
                .sum()
        };
        let (og, tg) = (growth(true), growth(false));
        if cluster.iter().any(|e| e.ours) && cluster.iter().any(|e| !e.ours) {
            let o = span(start, end, ours_shift, og);
            let t = span(start, end, theirs_shift, tg);
            let (ol, tl) = (slice(&ours_lines, o), slice(&theirs_lines, t));
            if ol != tl {
                hunks.push(ConflictHunk {
                    base: span(start, end, 0, 0),
                    checkout: o,
                    checkout_lines: quote(ol),
                    session: t,
                    session_lines: quote(tl),
                });
            }
        }
        ours_shift += og;
        theirs_shift += tg;
        i = j;
    }
    Ok(hunks)
}

/// The edits turning `old` into `new`, without context lines.
fn edits(old: &[u8], new: &[u8], ours: bool) -> Result<Vec<Edit>, git2::Error> {
    let mut opts = DiffOptions::new();
    opts.context_lines(0).interhunk_lines(0);
    let patch = Patch::from_buffers(old, None, new, None, Some(&mut opts))?;
    let mut out = Vec::new();
    for h in 0..patch.num_hunks() {
        let (hunk, _) = patch.hunk(h)?;
        let old_len = hunk.old_lines() as usize;
        // A pure insertion names the line it follows; otherwise the first line replaced.
        let old = hunk.old_start() as usize - usize::from(old_len > 0);
        out.push(Edit {
            old,
            old_len,
            new_len: hunk.new_lines() as usize,
            ours,
        });
    }
    Ok(out)
}

/// Base lines `[start, end)` seen in a side shifted by `shift` lines before them and grown by
/// `growth` lines within them, as a 1-based span.
fn span(start: usize, end: usize, shift: isize, growth: isize) -> LineSpan {
    let first = (start as isize + shift).max(0);
    let count = ((end - start) as isize + growth).max(0);
    LineSpan {
        start: u32::try_from(first + 1).unwrap_or(u32::MAX),
        count: u32::try_from(count).unwrap_or(u32::MAX),
    }
}

fn lines(content: &[u8]) -> Vec<&[u8]> {
    content.split_inclusive(|b| *b == b'\n').collect()
}

fn slice<'a>(lines: &'a [&'a [u8]], span: LineSpan) -> &'a [&'a [u8]] {
    let from = (span.start as usize - 1).min(lines.len());
    let to = (from + span.count as usize).min(lines.len());
    &lines[from..to]
}

/// Lines as text for a reader: at most [`QUOTED_LINES`], each cut at [`QUOTED_CHARS`].
fn quote(lines: &[&[u8]]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .take(QUOTED_LINES)
        .map(|l| {
            let text = String::from_utf8_lossy(l);
            let text = text.trim_end_matches(['\n', '\r']);
            match text.char_indices().nth(QUOTED_CHARS) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_string(),
            }
        })
        .collect();
    if lines.len() > QUOTED_LINES {
        out.push(format!("… {} more line(s)", lines.len() - QUOTED_LINES));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn one_line_changed_on_both_sides() {
        let base = numbered(5);
        let ours = base.replace("line 3\n", "ours 3\n");
        let theirs = base.replace("line 3\n", "theirs 3\n");
        let h = conflicting(base.as_bytes(), ours.as_bytes(), theirs.as_bytes()).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].base, LineSpan { start: 3, count: 1 });
        assert_eq!(h[0].checkout_lines, vec!["ours 3"]);
        assert_eq!(h[0].session_lines, vec!["theirs 3"]);
        assert_eq!(h[0].checkout.to_string(), "line 3");
    }

    #[test]
    fn distant_edits_are_not_a_hunk_and_shifts_are_followed() {
        let base = numbered(12);
        // ours inserts two lines at the top and changes line 10; theirs changes line 1 and 10
        let ours = format!("new a\nnew b\n{}", base.replace("line 10\n", "ours 10\n"));
        let theirs = base
            .replace("line 10\n", "theirs 10\n")
            .replace("line 5\n", "theirs 5\n");
        let h = conflicting(base.as_bytes(), ours.as_bytes(), theirs.as_bytes()).unwrap();
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(
            h[0].base,
            LineSpan {
                start: 10,
                count: 1
            }
        );
        assert_eq!(
            h[0].checkout,
            LineSpan {
                start: 12,
                count: 1
            }
        );
        assert_eq!(h[0].checkout_lines, vec!["ours 10"]);
        assert_eq!(
            h[0].session,
            LineSpan {
                start: 10,
                count: 1
            }
        );
    }

    #[test]
    fn identical_edits_and_long_quotes() {
        let base = numbered(3);
        let same = base.replace("line 2\n", "same\n");
        let h = conflicting(base.as_bytes(), same.as_bytes(), same.as_bytes()).unwrap();
        assert!(h.is_empty(), "{h:?}");
        let many: String = (0..20).map(|i| format!("x{i}\n")).collect();
        let theirs = base.replace("line 2\n", &many);
        let ours = base.replace("line 2\n", "y\n");
        let h = conflicting(base.as_bytes(), ours.as_bytes(), theirs.as_bytes()).unwrap();
        assert_eq!(h[0].session.count, 20);
        assert_eq!(h[0].session_lines.len(), QUOTED_LINES + 1);
        assert!(h[0].session_lines[QUOTED_LINES].contains("8 more"));
    }
}
