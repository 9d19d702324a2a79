//! `session/request_permission`: the policy decides (allow → the allow-once option, deny →
//! reject, ask → the task shows `blocked` while the engine offers the question to whoever can
//! answer — a form, `answer_permission`, `boocoder answer` — then rejects on the timeout), and
//! every decision is written to the transcript with who made it. Runs in a spawned task, never
//! in the connection's dispatch loop, because `ask` waits.

use std::sync::Arc;
use std::time::Duration;

use agent_client_protocol::v1::schema as s;
use tokio_util::sync::CancellationToken;

use crate::backend::{Asker, EventSink, TurnEvent, emit};
use crate::domain::{Decider, Decision, PermissionPolicy, Question, QuestionOption, new_id};

/// Most characters of an edit's diff shown with a question.
const PREVIEW_MAX: usize = 1500;

/// What the running turn contributes to a permission decision.
#[derive(Clone)]
pub(super) struct PermissionCtx {
    pub events: EventSink,
    pub policy: PermissionPolicy,
    pub ask_timeout: Duration,
    /// Fires when the turn is cancelled: a pending question is answered `cancelled`.
    pub cancel: CancellationToken,
    pub task_id: String,
    /// Who can answer an `ask` (none: it times out into a rejection).
    pub asker: Option<Arc<dyn Asker>>,
}

/// Decide one request. `None` context means no turn is running (the agent asked between
/// turns): nobody can have asked for the action, so it is rejected.
pub(super) async fn decide(
    ctx: Option<PermissionCtx>,
    req: &s::RequestPermissionRequest,
) -> s::RequestPermissionOutcome {
    let what = req
        .tool_call
        .fields
        .title
        .clone()
        .unwrap_or_else(|| req.tool_call.tool_call_id.0.to_string());
    let Some(ctx) = ctx else {
        tracing::warn!(tool = %what, "permission asked outside a turn; rejected");
        return reject(&req.options).0;
    };
    let (outcome, how) = match ctx.policy {
        PermissionPolicy::Allow => match pick(
            &req.options,
            &[
                s::PermissionOptionKind::AllowOnce,
                s::PermissionOptionKind::AllowAlways,
            ],
        ) {
            Some((id, name)) => (selected(id), format!("allowed (`{name}`) by policy allow")),
            None => {
                let (o, n) = reject(&req.options);
                (
                    o,
                    format!("{n}: policy allow, but the agent offered no allow option"),
                )
            }
        },
        PermissionPolicy::Deny => {
            let (o, n) = reject(&req.options);
            (o, format!("{n} by policy deny"))
        }
        PermissionPolicy::Ask => return ask(&ctx, req, &what).await,
    };
    emit(
        &ctx.events,
        TurnEvent::Notice(format!("permission for `{what}`: {how}")),
    )
    .await;
    outcome
}

/// Block the turn on the question until someone answers, the timeout rejects it, or the
/// turn's cancellation withdraws it.
async fn ask(
    ctx: &PermissionCtx,
    req: &s::RequestPermissionRequest,
    what: &str,
) -> s::RequestPermissionOutcome {
    let q = question_of(req, what);
    let offered: Vec<_> = q.options.iter().map(|o| o.label.clone()).collect();
    if let Some(a) = &ctx.asker
        && let Err(e) = a.open(&ctx.task_id, &q).await
    {
        // Nobody could see the question: fail closed at once.
        let (o, n) = reject(&req.options);
        let how = format!("{n}: the question could not be recorded ({e})");
        emit(
            &ctx.events,
            TurnEvent::Notice(format!("permission for `{what}`: {how}")),
        )
        .await;
        return o;
    }
    emit(
        &ctx.events,
        TurnEvent::Blocked(format!(
            "permission for `{what}` (options: {}; request {})",
            offered.join(", "),
            q.request_id
        )),
    )
    .await;
    let decision = match &ctx.asker {
        Some(a) => {
            a.ask(&ctx.task_id, q, ctx.ask_timeout, ctx.cancel.clone())
                .await
        }
        None => {
            let by = tokio::select! {
                _ = tokio::time::sleep(ctx.ask_timeout) => Decider::Timeout,
                _ = ctx.cancel.cancelled() => Decider::Cancelled,
            };
            Decision {
                option_id: None,
                by,
            }
        }
    };
    let (outcome, how) = settle(&decision, &req.options, ctx.ask_timeout);
    emit(
        &ctx.events,
        TurnEvent::Unblocked(format!("permission for `{what}`: {how}")),
    )
    .await;
    outcome
}

/// The agent's outcome for a decision, and how the transcript tells it.
fn settle(
    d: &Decision,
    options: &[s::PermissionOption],
    timeout: Duration,
) -> (s::RequestPermissionOutcome, String) {
    let by = match d.by {
        Decider::Form => "by the caller's form".to_string(),
        Decider::Tool => "by answer_permission".to_string(),
        Decider::TaskUpdate => "by the caller's tasks/update".to_string(),
        Decider::Retry => "by the caller's retry (input responses)".to_string(),
        Decider::Cli => "by `boocoder answer`".to_string(),
        Decider::Timeout => format!("policy ask, no decision within {} s", timeout.as_secs()),
        Decider::Cancelled => {
            return (
                s::RequestPermissionOutcome::Cancelled,
                "withdrawn: the task was cancelled".into(),
            );
        }
    };
    let chosen = d
        .option_id
        .as_deref()
        .and_then(|id| options.iter().find(|o| o.option_id.0.as_ref() == id));
    match chosen {
        Some(o) => {
            let verdict = match o.kind {
                s::PermissionOptionKind::AllowOnce | s::PermissionOptionKind::AllowAlways => {
                    "allowed"
                }
                _ => "rejected",
            };
            (
                selected(o.option_id.clone()),
                format!("{verdict} (`{}`) {by}", o.name),
            )
        }
        None if d.by == Decider::Timeout => {
            let (o, n) = reject(options);
            (o, format!("{n}: {by}"))
        }
        None => {
            let (o, n) = reject(options);
            (o, format!("{n} {by}"))
        }
    }
}

/// The question as the channels show it: what, the options, the paths and an edit's diff.
fn question_of(req: &s::RequestPermissionRequest, what: &str) -> Question {
    let f = &req.tool_call.fields;
    let kind = f.kind.as_ref().map(super::updates::enum_name);
    let mut paths: Vec<String> = f
        .locations
        .iter()
        .flatten()
        .map(|l| l.path.display().to_string())
        .collect();
    let mut preview = String::new();
    for c in f.content.iter().flatten() {
        if let s::ToolCallContent::Diff(d) = c {
            let path = d.path.display().to_string();
            if !paths.contains(&path) {
                paths.push(path.clone());
            }
            preview += &diff_preview(&path, d.old_text.as_deref(), &d.new_text);
        }
    }
    if preview.chars().count() > PREVIEW_MAX {
        preview = preview.chars().take(PREVIEW_MAX).collect::<String>() + "\n…";
    }
    Question {
        request_id: new_id("q"),
        question: match kind {
            Some(k) => format!("{what} ({k})"),
            None => what.to_string(),
        },
        options: req
            .options
            .iter()
            .map(|o| QuestionOption {
                id: o.option_id.0.to_string(),
                label: o.name.clone(),
                kind: super::updates::enum_name(&o.kind),
            })
            .collect(),
        paths,
        preview: (!preview.is_empty()).then_some(preview),
    }
}

/// The old lines and the new, as a reader skims them (not a minimal diff).
fn diff_preview(path: &str, old: Option<&str>, new: &str) -> String {
    let mut out = format!("--- {path}\n+++ {path}\n");
    for l in old.unwrap_or("").lines() {
        out += &format!("-{l}\n");
    }
    for l in new.lines() {
        out += &format!("+{l}\n");
    }
    out
}

fn selected(id: s::PermissionOptionId) -> s::RequestPermissionOutcome {
    s::RequestPermissionOutcome::Selected(s::SelectedPermissionOutcome::new(id))
}

/// The first option of the preferred kinds, in preference order (never by position).
fn pick(
    options: &[s::PermissionOption],
    kinds: &[s::PermissionOptionKind],
) -> Option<(s::PermissionOptionId, String)> {
    kinds.iter().find_map(|k| {
        options
            .iter()
            .find(|o| o.kind == *k)
            .map(|o| (o.option_id.clone(), o.name.clone()))
    })
}

/// Reject once if offered, else reject always, else cancel the request (never allow).
fn reject(options: &[s::PermissionOption]) -> (s::RequestPermissionOutcome, String) {
    match pick(
        options,
        &[
            s::PermissionOptionKind::RejectOnce,
            s::PermissionOptionKind::RejectAlways,
        ],
    ) {
        Some((id, name)) => (selected(id), format!("rejected (`{name}`)")),
        None => (
            s::RequestPermissionOutcome::Cancelled,
            "refused (no reject option; request cancelled)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> s::RequestPermissionRequest {
        s::RequestPermissionRequest::new(
            "sess",
            s::ToolCallUpdate::new("tc1", s::ToolCallUpdateFields::new().title("write a.txt")),
            vec![
                s::PermissionOption::new("always", "Always", s::PermissionOptionKind::AllowAlways),
                s::PermissionOption::new("once", "Allow", s::PermissionOptionKind::AllowOnce),
                s::PermissionOption::new("no", "Reject", s::PermissionOptionKind::RejectOnce),
            ],
        )
    }

    fn ctx(policy: PermissionPolicy) -> (PermissionCtx, tokio::sync::mpsc::Receiver<TurnEvent>) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        (
            PermissionCtx {
                events: tx,
                policy,
                ask_timeout: Duration::from_millis(20),
                cancel: CancellationToken::new(),
                task_id: "t-1".into(),
                asker: None,
            },
            rx,
        )
    }

    fn chosen(o: &s::RequestPermissionOutcome) -> String {
        match o {
            s::RequestPermissionOutcome::Selected(sel) => sel.option_id.0.to_string(),
            _ => "cancelled".into(),
        }
    }

    #[tokio::test]
    async fn allow_picks_allow_once_and_records_it() {
        let (c, mut rx) = ctx(PermissionPolicy::Allow);
        assert_eq!(chosen(&decide(Some(c), &request()).await), "once");
        let ev = rx.recv().await.expect("notice");
        assert!(
            matches!(&ev, TurnEvent::Notice(t) if t.contains("allowed")),
            "{ev:?}"
        );
    }

    #[tokio::test]
    async fn deny_and_no_turn_reject() {
        let (c, mut rx) = ctx(PermissionPolicy::Deny);
        assert_eq!(chosen(&decide(Some(c), &request()).await), "no");
        assert!(matches!(rx.recv().await, Some(TurnEvent::Notice(t)) if t.contains("policy deny")));
        assert_eq!(chosen(&decide(None, &request()).await), "no");
    }

    #[tokio::test]
    async fn ask_blocks_then_denies_on_timeout() {
        let (c, mut rx) = ctx(PermissionPolicy::Ask);
        assert_eq!(chosen(&decide(Some(c), &request()).await), "no");
        assert!(matches!(rx.recv().await, Some(TurnEvent::Blocked(_))));
        assert!(
            matches!(rx.recv().await, Some(TurnEvent::Unblocked(t)) if t.contains("no decision"))
        );
    }
}
