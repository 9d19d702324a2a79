//! Permission questions as MCP elicitation forms (2025-11-25 session clients that declared
//! form elicitation): one enum field holding the agent's own options. A question answered
//! elsewhere first withdraws the form (`notifications/cancelled`).

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{
    ClientResult, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationSchema, EnumSchema, ServerRequest,
};
use rmcp::service::{ElicitationMode, Peer, PeerRequestOptions};
use tokio_util::sync::CancellationToken;

use crate::backend::BoxFuture;
use crate::domain::Question;
use crate::engine::{Caller, Elicited, Elicitor};

/// The form's one field.
const FIELD: &str = "decision";

/// What the client of `peer` offers its tasks.
pub fn caller_of(peer: &Peer<RoleServer>) -> Caller {
    Caller {
        sampler: super::sampling::sampler_for(peer),
        elicitor: peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Form)
            .then(|| Arc::new(FormElicitor { peer: peer.clone() }) as Arc<dyn Elicitor>),
        roots: Default::default(),
    }
}

struct FormElicitor {
    peer: Peer<RoleServer>,
}

impl Elicitor for FormElicitor {
    fn elicit<'a>(
        &'a self,
        message: String,
        question: &'a Question,
        withdrawn: CancellationToken,
    ) -> BoxFuture<'a, Elicited> {
        Box::pin(async move {
            let Some(params) = form(message, question) else {
                return Elicited::Nothing;
            };
            let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
            let handle = match self
                .peer
                .send_cancellable_request(request, PeerRequestOptions::no_options())
                .await
            {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(error = %e, "could not send the permission form");
                    return Elicited::Nothing;
                }
            };
            let mut handle = handle;
            let answer = tokio::select! {
                r = &mut handle.rx => r,
                _ = withdrawn.cancelled() => {
                    // why: the client may be gone; the question is settled either way.
                    let _ = handle.cancel(Some("answered on another channel".into())).await;
                    return Elicited::Nothing;
                }
            };
            match answer {
                Ok(Ok(ClientResult::ElicitResult(r))) => match answer_of(&r) {
                    Answer::Chosen(id) if question.options.iter().any(|o| o.id == id) => {
                        Elicited::Chosen(id.to_string())
                    }
                    Answer::Declined => Elicited::Declined,
                    Answer::Chosen(_) | Answer::Empty => Elicited::Nothing,
                },
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => Elicited::Nothing,
            }
        })
    }
}

/// What a person answered in the permission form, wherever it was shown (a form request,
/// a Tasks input request, an MRTR input request).
pub(super) enum Answer<'a> {
    /// Accepted with this option id.
    Chosen(&'a str),
    /// Declined or cancelled: the question is rejected.
    Declined,
    /// Accepted without a choice.
    Empty,
}

pub(super) fn answer_of(r: &ElicitResult) -> Answer<'_> {
    if r.action != ElicitationAction::Accept {
        return Answer::Declined;
    }
    r.content
        .as_ref()
        .and_then(|c| c.get(FIELD))
        .and_then(|v| v.as_str())
        .map_or(Answer::Empty, Answer::Chosen)
}

/// The form: the message, and one required enum field of the options (ids as values, the
/// agent's labels as titles).
pub(super) fn form(message: String, q: &Question) -> Option<ElicitRequestParams> {
    let ids: Vec<String> = q.options.iter().map(|o| o.id.clone()).collect();
    let labels: Vec<String> = q.options.iter().map(|o| o.label.clone()).collect();
    let choice = EnumSchema::builder(ids)
        .enum_titles(labels)
        .ok()?
        .description("Your decision")
        .build();
    let schema = ElicitationSchema::builder()
        .required_enum_schema(FIELD, choice)
        .build()
        .ok()?;
    Some(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema: schema,
    })
}
