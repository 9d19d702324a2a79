//! One `session/prompt`: the prompt read line by line, each line one directive, until the
//! prompt ends or `session/cancel` arrives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_client_protocol::Client;
use agent_client_protocol::v1::{ConnectionTo, schema as s};

use crate::directives;
use crate::session::{Res, Session, State, say, state_file, update};

/// A turn in progress: where its updates go, the session as the turn began, and its tool
/// calls so far (their ids count up within the turn).
pub struct Turn {
    pub cx: ConnectionTo<Client>,
    pub sid: s::SessionId,
    pub sess: Session,
    pub tool_n: u32,
    /// What the turn's `session/prompt` response reports (`tokens` / `gemini-tokens`).
    pub usage: Option<s::Usage>,
    pub meta: Option<s::Meta>,
}

/// Whether the prompt goes on after a directive.
enum Flow {
    Next,
    Cancelled,
}

pub async fn run_prompt(
    state: Arc<State>,
    cx: ConnectionTo<Client>,
    req: s::PromptRequest,
) -> Res<s::PromptResponse> {
    let sid = req.session_id.clone();
    let sess = begin_turn(&state, &sid)?;
    let mut turn = Turn {
        cx,
        sid,
        sess,
        tool_n: 0,
        usage: None,
        meta: None,
    };
    for line in prompt_text(&req).lines() {
        if state.cancelled.load(Ordering::SeqCst) {
            return Ok(s::PromptResponse::new(s::StopReason::Cancelled));
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        if let Flow::Cancelled = directive(&state, &mut turn, cmd, rest).await? {
            return Ok(s::PromptResponse::new(s::StopReason::Cancelled));
        }
    }
    let stop = if state.cancelled.load(Ordering::SeqCst) {
        s::StopReason::Cancelled
    } else {
        s::StopReason::EndTurn
    };
    Ok(s::PromptResponse::new(stop)
        .usage(turn.usage)
        .meta(turn.meta))
}

/// Count the turn in the session, in memory and on disk (for a later `session/load`).
fn begin_turn(state: &State, sid: &s::SessionId) -> Res<Session> {
    let Some(mut sess) = state
        .sessions
        .lock()
        .ok()
        .and_then(|m| m.get(&sid.0.to_string()).cloned())
    else {
        return Err(agent_client_protocol::Error::invalid_params().data("unknown session"));
    };
    sess.turns += 1;
    if let Ok(mut m) = state.sessions.lock() {
        m.insert(sid.0.to_string(), sess.clone());
    }
    // why: losing the counter only weakens the `history` directive.
    let _ = std::fs::write(state_file(&sid.0), sess.turns.to_string());
    Ok(sess)
}

fn prompt_text(req: &s::PromptRequest) -> String {
    req.prompt
        .iter()
        .filter_map(|b| match b {
            s::ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn directive(state: &State, t: &mut Turn, cmd: &str, rest: &str) -> Res<Flow> {
    let (cx, sid) = (&t.cx, &t.sid);
    match cmd {
        "say" => say(cx, sid, rest)?,
        "think" => update(
            cx,
            sid,
            s::SessionUpdate::AgentThoughtChunk(s::ContentChunk::new(rest.to_string().into())),
        )?,
        "plan" => directives::plan(t, rest)?,
        "tool" => directives::tool(t, rest)?,
        "write" => directives::write(t, rest).await?,
        "perm-write" => {
            if directives::ask_permission(t, rest).await? {
                directives::write(t, rest).await?;
            }
        }
        "read" => directives::read(t, rest).await?,
        "term" => directives::term(t, rest).await?,
        "symlink" => {
            let (name, target) = rest.split_once(' ').unwrap_or((rest, ""));
            let r = std::os::unix::fs::symlink(target, t.sess.cwd.join(name));
            say(cx, sid, format!("symlink {name}: {r:?}"))?;
        }
        "rm" => {
            // why: a missing file is fine; the directive only tidies up.
            let _ = std::fs::remove_file(t.sess.cwd.join(rest));
        }
        "sleep" => {
            if sleep_cancellable(state, rest.parse().unwrap_or(0)).await {
                return Ok(Flow::Cancelled);
            }
        }
        "sleep-hard" => {
            tokio::time::sleep(Duration::from_millis(rest.parse().unwrap_or(0))).await;
        }
        "usage" => directives::usage_update(t, rest)?,
        "tokens" | "gemini-tokens" | "qwen-tokens" => directives::tokens(t, cmd, rest)?,
        "pid" => say(cx, sid, format!("pid={}", std::process::id()))?,
        "env" => say(cx, sid, directives::env(rest))?,
        "unknown" => directives::unknown(t).await?,
        "whoami" => say(
            cx,
            sid,
            format!(
                "mode={} model={} thinking={}",
                t.sess.mode, t.sess.model, t.sess.thinking
            ),
        )?,
        "history" => say(
            cx,
            sid,
            format!("turns={} how={}", t.sess.turns, t.sess.how),
        )?,
        "crash" => {
            eprintln!("fixture: crashing on purpose");
            // Let the messages already sent reach the client, as a real crash would.
            tokio::time::sleep(Duration::from_millis(200)).await;
            std::process::exit(3);
        }
        "raw" => directives::raw(t, rest).await?,
        "stderr-flood" => directives::stderr_flood(rest)?,
        "detach" => directives::detach(rest)?,
        "exit" => std::process::exit(0),
        "" => {}
        other => say(cx, sid, format!("unknown directive: {other}"))?,
    }
    Ok(Flow::Next)
}

pub fn resolve(cwd: &Path, raw: &str) -> PathBuf {
    let p = raw.replace("{cwd}", &cwd.to_string_lossy());
    if p.starts_with('/') || p.starts_with("..") {
        PathBuf::from(p)
    } else {
        cwd.join(p)
    }
}

/// Sleep in small steps; true when cancelled meanwhile.
async fn sleep_cancellable(state: &State, ms: u64) -> bool {
    let mut left = ms;
    while left > 0 {
        if state.cancelled.load(Ordering::SeqCst) {
            return true;
        }
        let step = left.min(20);
        tokio::time::sleep(Duration::from_millis(step)).await;
        left -= step;
    }
    state.cancelled.load(Ordering::SeqCst)
}
