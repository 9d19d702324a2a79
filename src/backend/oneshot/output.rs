//! What a one-shot agent prints, turned into transcript events line by line: plain text as
//! today, or the JSON event streams of `claude -p --output-format stream-json` ([`super::claude`])
//! and `codex exec --json` ([`super::codex`]). A line no parser understands is kept as text.

use crate::backend::TurnEvent;
use crate::backend::process::capped_text;
use crate::domain::Usage;

/// How a CLI agent's stdout is read.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// Plain text: every line goes to the transcript, all of it is the final message.
    #[default]
    Text,
    /// `claude -p --output-format stream-json --verbose`: messages, tool calls, and a final
    /// `result` with the answer, the session id, usage and `total_cost_usd`.
    ClaudeStreamJson,
    /// `codex exec --json`: thread and item events, `turn.completed` with the thread's token
    /// counts.
    CodexJson,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Text => "text",
            OutputFormat::ClaudeStreamJson => "claude-stream-json",
            OutputFormat::CodexJson => "codex-json",
        }
    }

    /// Whether the agent names its conversation, so a later turn can resume it.
    pub fn names_conversation(self) -> bool {
        self != OutputFormat::Text
    }
}

/// Most bytes of stdout kept for the final message; more is dropped with a note.
pub(super) const STDOUT_CAP: usize = 1 << 20;
/// Longest JSON line parsed; a longer one is cut and kept as a note.
pub(super) const JSON_LINE_CAP: usize = 4 << 20;
/// Most characters of a tool's output kept in one transcript entry (as for ACP agents).
pub(super) const TOOL_OUTPUT_MAX: usize = 4000;
/// How much of an unparseable over-long line a note quotes.
const CUT_LINE_QUOTE: usize = 2000;

/// What a run printed, once its stdout closed.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Parsed {
    pub final_message: String,
    /// The conversation the agent ran in (claude's `session_id`, codex's `thread_id`).
    pub conversation: Option<String>,
    /// Usage as the agent reported it (codex: the thread's totals so far).
    pub usage: Usage,
    /// What the agent said went wrong (an error result, a failed turn, a last error event).
    pub error: Option<String>,
    /// The agent reported that its turn failed, whatever its exit status.
    pub failed: bool,
    /// The agent got as far as starting its conversation (its first event).
    pub started: bool,
}

/// One parser per run, fed stdout line by line.
pub(super) enum Parser {
    Text(TextParser),
    Claude(super::claude::Parser),
    Codex(super::codex::Parser),
}

impl Parser {
    pub fn new(format: OutputFormat) -> Parser {
        match format {
            OutputFormat::Text => Parser::Text(TextParser::default()),
            OutputFormat::ClaudeStreamJson => Parser::Claude(Default::default()),
            OutputFormat::CodexJson => Parser::Codex(Default::default()),
        }
    }

    /// The most bytes the next line may have. Plain text is bounded as a whole; JSON events
    /// are bounded per line (the answer comes last, after any amount of work).
    pub fn line_cap(&self) -> usize {
        match self {
            Parser::Text(t) => STDOUT_CAP.saturating_sub(t.out.len()).max(1),
            _ => JSON_LINE_CAP,
        }
    }

    /// The events one line becomes; `skipped` bytes of it were cut by the cap.
    pub fn line(&mut self, line: &[u8], skipped: usize) -> Vec<TurnEvent> {
        let json = match self {
            Parser::Text(t) => return t.line(line, skipped),
            Parser::Claude(_) | Parser::Codex(_) => JsonLine::read(line, skipped),
        };
        let raw = match json {
            JsonLine::Blank => return Vec::new(),
            JsonLine::Cut(note) => return vec![TurnEvent::Notice(note)],
            JsonLine::Object(v, raw) => {
                let events = match self {
                    Parser::Claude(p) => p.event(&v),
                    Parser::Codex(p) => p.event(&v),
                    Parser::Text(_) => None,
                };
                match events {
                    Some(events) => return events,
                    None => raw,
                }
            }
            JsonLine::Other(raw) => raw,
        };
        // Not an event this parser knows: kept as the agent's text, never lost.
        let text = format!("{raw}\n");
        match self {
            Parser::Claude(p) => p.plain.push(&text),
            Parser::Codex(p) => p.plain.push(&text),
            Parser::Text(_) => {}
        }
        vec![TurnEvent::Text(text)]
    }

    pub fn finish(self) -> Parsed {
        match self {
            Parser::Text(t) => Parsed {
                final_message: t.out.trim().to_string(),
                ..Parsed::default()
            },
            Parser::Claude(p) => p.finish(),
            Parser::Codex(p) => p.finish(),
        }
    }
}

/// Plain output: each line is transcript text and part of the final message (capped).
#[derive(Default)]
pub(super) struct TextParser {
    out: String,
    truncated: bool,
}

impl TextParser {
    fn line(&mut self, line: &[u8], skipped: usize) -> Vec<TurnEvent> {
        let mut events = Vec::new();
        let room = STDOUT_CAP.saturating_sub(self.out.len());
        if skipped > 0 || room == 0 {
            if !self.truncated {
                self.truncated = true;
                let note = format!("[stdout truncated at {STDOUT_CAP} bytes]");
                events.push(TurnEvent::Notice(note));
            }
            if room == 0 {
                return events;
            }
        }
        let text = String::from_utf8_lossy(line).into_owned();
        self.out.push_str(&text);
        events.push(TurnEvent::Text(text));
        events
    }
}

/// Text kept outside the JSON events (a crash message, a line no parser knows), the final
/// message when the agent gave none; capped.
#[derive(Default)]
pub(super) struct Plain(String);

impl Plain {
    pub fn push(&mut self, text: &str) {
        let room = STDOUT_CAP.saturating_sub(self.0.len());
        self.0.push_str(cut(text, room));
    }

    pub fn into_message(self) -> String {
        self.0.trim().to_string()
    }
}

/// One stdout line of a JSON format.
enum JsonLine {
    Blank,
    /// Too long to parse: a note quoting its start.
    Cut(String),
    Object(serde_json::Value, String),
    Other(String),
}

impl JsonLine {
    fn read(line: &[u8], skipped: usize) -> JsonLine {
        if skipped > 0 {
            let text = capped_text(line, 0);
            return JsonLine::Cut(format!(
                "an output line of {} bytes was too long to read; it began: {}",
                line.len() + skipped,
                cut(text.trim_end(), CUT_LINE_QUOTE)
            ));
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return JsonLine::Blank;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.is_object() => JsonLine::Object(v, text.to_string()),
            _ => JsonLine::Other(text.to_string()),
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(super) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A tool's output for the transcript: at most [`TOOL_OUTPUT_MAX`] characters, with a note
/// saying how much was left out; `None` when empty.
pub(super) fn tool_output(text: &str) -> Option<String> {
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    match text.char_indices().nth(TOOL_OUTPUT_MAX) {
        None => Some(text.to_string()),
        Some((at, _)) => Some(format!(
            "{}\n[… {} more bytes]",
            &text[..at],
            text.len() - at
        )),
    }
}

/// A string field of a JSON object.
pub(super) fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// A count field of a JSON object.
pub(super) fn count(v: &serde_json::Value, key: &str) -> Option<u64> {
    v.get(key).and_then(serde_json::Value::as_u64)
}

/// Text ending in a newline, so the agent's messages stay apart in the transcript.
pub(super) fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_every_line_and_the_whole_output() {
        let mut p = Parser::new(OutputFormat::Text);
        assert_eq!(
            p.line(b"hello\n", 0),
            vec![TurnEvent::Text("hello\n".into())]
        );
        p.line(b"world\n", 0);
        assert_eq!(p.finish().final_message, "hello\nworld");
    }

    #[test]
    fn json_formats_keep_what_they_do_not_understand() {
        for format in [OutputFormat::ClaudeStreamJson, OutputFormat::CodexJson] {
            let mut p = Parser::new(format);
            assert_eq!(
                p.line(b"Error: not json\n", 0),
                vec![TurnEvent::Text("Error: not json\n".into())]
            );
            assert_eq!(
                p.line(b"{\"type\":\"from.the.future\",\"x\":1}\n", 0),
                vec![TurnEvent::Text(
                    "{\"type\":\"from.the.future\",\"x\":1}\n".into()
                )]
            );
            assert_eq!(
                p.line(b"[1,2]\n", 0),
                vec![TurnEvent::Text("[1,2]\n".into())]
            );
            assert_eq!(p.line(b"\xff\xfe{\n", 0).len(), 1, "bad UTF-8 is text");
            assert!(p.line(b"\n", 0).is_empty());
            let cut = p.line(b"{\"type\":\"assistant\",", 10 << 20);
            assert!(
                matches!(&cut[..], [TurnEvent::Notice(n)] if n.contains("too long") && n.contains("assistant")),
                "{cut:?}"
            );
            let parsed = p.finish();
            assert!(
                parsed.final_message.starts_with("Error: not json"),
                "{parsed:?}"
            );
            assert!(parsed.usage.is_empty());
            assert_eq!(parsed.conversation, None);
        }
    }

    #[test]
    fn tool_output_is_capped_on_a_character_boundary() {
        let long = "é".repeat(TOOL_OUTPUT_MAX + 10);
        let out = tool_output(&long).expect("some");
        assert!(
            out.ends_with("[… 20 more bytes]"),
            "{}",
            &out[out.len() - 40..]
        );
        assert_eq!(tool_output("  \n"), None);
        assert_eq!(cut("aé", 2), "a");
    }
}
