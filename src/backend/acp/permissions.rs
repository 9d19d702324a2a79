//! `session/request_permission`: the policy decides (allow → the allow-once option, deny →
//! reject, ask → the task shows `blocked` until a decision or the timeout, then deny), and
//! every decision is written to the transcript. Runs in a spawned task, never in the
//! connection's dispatch loop, because `ask` waits.

use std::time::Duration;

use agent_client_protocol::v1::schema as s;
use tokio_util::sync::CancellationToken;

use crate::backend::{EventSink, TurnEvent, emit};
use crate::domain::PermissionPolicy;

/// What the running turn contributes to a permission decision.
#[derive(Clone)]
pub(super) struct PermissionCtx {
    pub events: EventSink,
    pub policy: PermissionPolicy,
    pub ask_timeout: Duration,
    /// Fires when the turn is cancelled: a pending question is answered `cancelled`.
    pub cancel: CancellationToken,
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
        PermissionPolicy::Ask => {
            let question = format!(
                "permission for `{what}` (options: {})",
                req.options
                    .iter()
                    .map(|o| o.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            emit(&ctx.events, TurnEvent::Blocked(question)).await;
            // Forwarding the question to a human comes later; until then nobody can answer,
            // so the wait ends by timeout (deny) or by the turn's cancellation.
            let how = tokio::select! {
                _ = tokio::time::sleep(ctx.ask_timeout) => None,
                _ = ctx.cancel.cancelled() => Some("cancelled with the turn".to_string()),
            };
            let (outcome, how) = match how {
                Some(how) => (s::RequestPermissionOutcome::Cancelled, how),
                None => {
                    let (o, n) = reject(&req.options);
                    (
                        o,
                        format!(
                            "{n}: policy ask, no decision within {} s",
                            ctx.ask_timeout.as_secs()
                        ),
                    )
                }
            };
            emit(
                &ctx.events,
                TurnEvent::Unblocked(format!("permission for `{what}`: {how}")),
            )
            .await;
            return outcome;
        }
    };
    emit(
        &ctx.events,
        TurnEvent::Notice(format!("permission for `{what}`: {how}")),
    )
    .await;
    outcome
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
