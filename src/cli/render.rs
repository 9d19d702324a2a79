//! Terminal rendering for the CLI verbs: tables that fit the terminal, a colourised diff, and
//! a one-line live progress display. Plain text when stdout/stderr are not terminals.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use boocoder::domain::{Task, TaskState, now_ms};

pub fn width() -> usize {
    terminal_size::terminal_size()
        .map(|(w, _)| w.0 as usize)
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .unwrap_or(120)
        .max(40)
}

/// Cut `s` to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.lines().next().unwrap_or("").trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max <= 1 {
        return "…".into();
    }
    format!("{}…", s.chars().take(max - 1).collect::<String>())
}

/// A table whose last column takes the remaining width.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fixed: usize = widths[..n - 1].iter().map(|w| w + 2).sum();
    widths[n - 1] = widths[n - 1].min(width().saturating_sub(fixed).max(10));
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let c = clip(c, widths[i]);
            if i + 1 == n {
                out.push_str(&c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub fn age(ms: i64) -> String {
    human(Duration::from_millis((now_ms() - ms).max(0) as u64)) + " ago"
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn duration(t: &Task) -> String {
    match (t.started_at, t.ended_at) {
        (Some(s), Some(e)) => human(Duration::from_millis((e - s).max(0) as u64)),
        (Some(s), None) => human(Duration::from_millis((now_ms() - s).max(0) as u64)) + "…",
        _ => "-".into(),
    }
}

/// A unified diff, with colour when writing to a terminal.
pub fn diff(text: &str, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    text.lines()
        .map(|l| {
            let code = if l.starts_with("+++") || l.starts_with("---") || l.starts_with("diff ") {
                "1"
            } else if l.starts_with('+') {
                "32"
            } else if l.starts_with('-') {
                "31"
            } else if l.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                format!("{l}\n")
            } else {
                format!("\x1b[{code}m{l}\x1b[0m\n")
            }
        })
        .collect()
}

/// Live progress on stderr: a spinner line on a terminal, plain lines otherwise.
pub struct Progress {
    tty: bool,
    start: Instant,
    frame: usize,
    last: String,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            frame: 0,
            last: String::new(),
        }
    }

    /// Show the state and the latest transcript line.
    pub fn update(&mut self, state: TaskState, line: Option<&str>) {
        let line = line.map(str::trim).filter(|l| !l.is_empty());
        let mut err = std::io::stderr();
        if self.tty {
            const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            self.frame = (self.frame + 1) % FRAMES.len();
            if let Some(l) = line {
                self.last = l.to_string();
            }
            let head = format!(
                "{} {:>6} {:<9} ",
                FRAMES[self.frame],
                human(self.start.elapsed()),
                state.as_str()
            );
            let room = width().saturating_sub(head.chars().count() + 1);
            let _ = write!(err, "\r\x1b[2K{head}{}", clip(&self.last, room));
        } else if let Some(l) = line
            && l != self.last
        {
            self.last = l.to_string();
            let _ = writeln!(
                err,
                "[{} {}] {l}",
                human(self.start.elapsed()),
                state.as_str()
            );
        }
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
