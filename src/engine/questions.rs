//! Permission questions under the `ask` policy reach someone who can answer. A question is a
//! row in the store (so `boocoder answer` in another process, or a tool call on another node,
//! can settle it) and is offered at once on every channel the task's caller has: an
//! elicitation form when the client that submitted the task declared one, and always
//! `waiting_for` in statuses with `answer_permission`. The first answer wins (a conditional
//! update); the others are refused and the form is withdrawn. No answer in time → rejected;
//! the task cancelled → withdrawn. Only the asking agent request waits: every other tool
//! keeps answering meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::requests::invalid;
use super::{Engine, EngineError, Inner, Result};
use crate::backend::{Asker, BoxFuture};
use crate::domain::{Decider, Decision, Question, QuestionOption};

/// How often a waiting question looks for an answer given by another process.
const POLL: Duration = Duration::from_millis(250);

/// A client that can put a question to a person (an MCP elicitation form).
pub trait Elicitor: Send + Sync {
    /// Ask `message` with the question's options; resolves when the person answers, or
    /// promptly once `withdrawn` fires (the request is then cancelled on the client).
    fn elicit<'a>(
        &'a self,
        message: String,
        question: &'a Question,
        withdrawn: CancellationToken,
    ) -> BoxFuture<'a, Elicited>;
}

/// What an elicitation came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Elicited {
    Chosen(String),
    /// Declined or cancelled by the person: the question is rejected.
    Declined,
    /// The channel failed or was withdrawn: other channels stay open.
    Nothing,
}

/// Questions being waited on in this process, and the forms of the tasks' callers.
#[derive(Default)]
pub(super) struct Questions {
    elicitors: Mutex<HashMap<String, Arc<dyn Elicitor>>>,
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Questions {
    /// The caller of `task_id` can be asked by form.
    pub(super) fn set_elicitor(&self, task_id: &str, e: Arc<dyn Elicitor>) {
        lock(&self.elicitors).insert(task_id.to_string(), e);
    }

    /// The task ended: nobody asks its caller any more.
    pub(super) fn forget(&self, task_id: &str) {
        lock(&self.elicitors).remove(task_id);
    }

    fn wake(&self, request_id: &str) {
        if let Some(n) = lock(&self.waiting).get(request_id) {
            n.notify_one();
        }
    }
}

/// The engine as the backends' [`Asker`], for one turn.
pub(super) struct EngineAsker(pub Arc<Inner>);

impl std::fmt::Debug for EngineAsker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineAsker")
    }
}

impl Asker for EngineAsker {
    fn open<'a>(
        &'a self,
        task_id: &'a str,
        question: &'a Question,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            self.0
                .store
                .open_question(task_id, question)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn ask<'a>(
        &'a self,
        task_id: &'a str,
        question: Question,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(ask(&self.0, task_id, question, timeout, cancel))
    }
}

async fn ask(
    inner: &Arc<Inner>,
    task_id: &str,
    q: Question,
    timeout: Duration,
    cancel: CancellationToken,
) -> Decision {
    let request_id = q.request_id.clone();
    let notify = Arc::new(Notify::new());
    lock(&inner.questions.waiting).insert(request_id.clone(), notify.clone());
    let withdrawn = CancellationToken::new();
    let form = lock(&inner.questions.elicitors).get(task_id).cloned();
    if let Some(form) = form {
        let message = form_message(inner, task_id, &q).await;
        let (inner2, q2, w) = (inner.clone(), q.clone(), withdrawn.clone());
        inner.tracker.spawn(async move {
            let chosen = match form.elicit(message, &q2, w).await {
                Elicited::Chosen(id) => Some(id),
                Elicited::Declined => None,
                Elicited::Nothing => return,
            };
            let d = Decision {
                option_id: chosen,
                by: Decider::Form,
            };
            if let Ok(true) = inner2.store.decide_question(&q2.request_id, &d).await {
                inner2.questions.wake(&q2.request_id);
            }
        });
    }
    let decision = wait(inner, &request_id, &notify, timeout, &cancel).await;
    withdrawn.cancel();
    lock(&inner.questions.waiting).remove(&request_id);
    decision
}

/// Until the question is decided here or elsewhere; the timeout and the task's cancellation
/// decide it themselves unless an answer got there first.
async fn wait(
    inner: &Inner,
    request_id: &str,
    notify: &Notify,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Decision {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match inner.store.question(request_id).await {
            Ok(Some((_, _, Some(d)))) => return d,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not read a permission question"),
        }
        let closing = tokio::select! {
            _ = notify.notified() => None,
            _ = tokio::time::sleep(POLL) => None,
            _ = tokio::time::sleep_until(deadline) => Some(Decider::Timeout),
            _ = cancel.cancelled() => Some(Decider::Cancelled),
        };
        if let Some(by) = closing {
            let d = Decision {
                option_id: None,
                by,
            };
            match inner.store.decide_question(request_id, &d).await {
                Ok(true) => return d,
                // An answer got there first: the loop reads it.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not settle a permission question");
                    return d;
                }
            }
        }
    }
}

/// What the form says: the task, its agent, and the question with its paths and preview.
async fn form_message(inner: &Inner, task_id: &str, q: &Question) -> String {
    let agent = inner.store.task(task_id).await.ok().flatten();
    q.message(task_id, agent.as_ref().map(|t| t.provider.as_str()))
}

/// What `answer_permission` settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub task_id: String,
    pub request_id: String,
    pub chosen: QuestionOption,
}

impl Engine {
    /// Answer an open permission question of `task_id` with one of its options.
    pub async fn answer_permission(
        &self,
        task_id: &str,
        request_id: &str,
        option_id: &str,
        by: Decider,
    ) -> Result<Answered> {
        let (owner, q) = self.open_question(task_id, request_id).await?;
        let Some(chosen) = q.options.iter().find(|o| o.id == option_id).cloned() else {
            let ids: Vec<_> = q.options.iter().map(|o| format!("`{}`", o.id)).collect();
            return Err(invalid(
                "option_id",
                format!(
                    "`{option_id}` is not offered; choose one of {}",
                    ids.join(", ")
                ),
            ));
        };
        self.decide(request_id, Some(chosen.id.clone()), by).await?;
        Ok(Answered {
            task_id: owner,
            request_id: request_id.to_string(),
            chosen,
        })
    }

    /// Reject an open permission question of `task_id` without choosing one of the agent's
    /// options (a declined or cancelled form, wherever it was shown).
    pub async fn decline_permission(
        &self,
        task_id: &str,
        request_id: &str,
        by: Decider,
    ) -> Result<()> {
        self.open_question(task_id, request_id).await?;
        self.decide(request_id, None, by).await
    }

    /// The task's undecided question `request_id`.
    async fn open_question(&self, task_id: &str, request_id: &str) -> Result<(String, Question)> {
        let store = &self.inner.store;
        if store.task(task_id).await?.is_none() {
            return Err(EngineError::NotFound {
                what: "task",
                id: task_id.to_string(),
            });
        }
        match store.question(request_id).await? {
            Some((owner, _, Some(d))) if owner == task_id => Err(already(&d)),
            Some((owner, q, None)) if owner == task_id => Ok((owner, q)),
            _ => Err(invalid(
                "request_id",
                format!("`{request_id}` is not a question of task `{task_id}`"),
            )),
        }
    }

    /// Record the first answer; a later one is refused, naming the one that won.
    async fn decide(&self, request_id: &str, option_id: Option<String>, by: Decider) -> Result<()> {
        let inner = &self.inner;
        let d = Decision { option_id, by };
        if !inner.store.decide_question(request_id, &d).await? {
            let settled = inner.store.question(request_id).await?.and_then(|f| f.2);
            return Err(settled.map_or_else(
                || EngineError::State("the question was just settled".into()),
                |d| already(&d),
            ));
        }
        inner.questions.wake(request_id);
        Ok(())
    }
}

fn already(d: &Decision) -> EngineError {
    let what = match &d.option_id {
        Some(id) => format!("`{id}`"),
        None => "rejected".into(),
    };
    EngineError::State(format!(
        "the question was already settled ({what}, by {})",
        d.by.as_str()
    ))
}
