//! Tool arguments whose deserialisation errors name the argument. rmcp's own `Parameters`
//! reports serde_json's bare message (`invalid type: integer 123, expected a string`), which
//! leaves a model guessing which of a dozen fields it got wrong.

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResult, ContentBlock, ErrorCode};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// Marks an invalid-params error raised here, so `call_tool` turns it into a tool error the
/// model reads (`isError`) rather than a JSON-RPC error, as rmcp does for its own.
const MARK: &str = "boocoder_argument";

/// The typed arguments of one tool call. Named `Parameters` on purpose: rmcp's `#[tool]`
/// macro finds a handler's input schema by that name.
pub struct Parameters<P>(pub P);

impl<P: JsonSchema> JsonSchema for Parameters<P> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        P::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        P::json_schema(generator)
    }
}

impl<S, P: DeserializeOwned + JsonSchema> FromContextPart<ToolCallContext<'_, S>>
    for Parameters<P>
{
    fn from_context_part(context: &mut ToolCallContext<S>) -> Result<Self, rmcp::ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        parse(serde_json::Value::Object(arguments))
            .map(Parameters)
            .map_err(|message| {
                rmcp::ErrorData::invalid_params(message, Some(serde_json::json!({ MARK: true })))
            })
    }
}

/// Deserialise tool arguments; the error starts with ``invalid `path`:`` when the fault lies
/// inside an argument (`env.KEY`, `command[1]`), and names the field itself when one is
/// unknown, or every required one that is missing (serde stops at the first).
pub fn parse<P: DeserializeOwned + JsonSchema>(value: serde_json::Value) -> Result<P, String> {
    let given: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path != "." {
            return format!("invalid `{path}`: {inner}");
        }
        if inner.to_string().starts_with("missing field") {
            let schema = schemars::schema_for!(P);
            let missing: Vec<String> = schema
                .get("required")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .filter(|r| !given.iter().any(|g| g == r))
                .map(|r| format!("`{r}`"))
                .collect();
            if !missing.is_empty() {
                return format!("invalid arguments: missing {}", missing.join(", "));
            }
        }
        format!("invalid arguments: {inner}")
    })
}

/// An argument error from [`Parameters`] becomes a tool error; any other error passes.
pub fn into_tool_error(e: rmcp::ErrorData) -> Result<CallToolResult, rmcp::ErrorData> {
    let ours =
        e.code == ErrorCode::INVALID_PARAMS && e.data.as_ref().and_then(|d| d.get(MARK)).is_some();
    if ours {
        Ok(CallToolResult::error(vec![ContentBlock::text(e.message)]))
    } else {
        Err(e)
    }
}

/// The change a session tool acts on: `task_id` or `session_id`, exactly one.
pub(super) fn target(
    task_id: Option<String>,
    session_id: Option<String>,
) -> Result<String, String> {
    let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    match (clean(task_id), clean(session_id)) {
        (Some(t), None) => Ok(t),
        (None, Some(s)) if s.starts_with("s-") => Ok(s),
        (None, Some(s)) => Err(format!(
            "invalid `session_id`: `{s}` is not a session id (they start with `s-`)"
        )),
        (Some(_), Some(_)) => {
            Err("invalid `task_id`: give either `task_id` or `session_id`, not both".into())
        }
        (None, None) => Err("invalid `task_id`: give `task_id` or `session_id`".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        name: String,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        env: Option<std::collections::BTreeMap<String, String>>,
    }

    #[test]
    fn errors_name_the_argument() {
        let e = super::parse::<P>(json!({"name": "x", "limit": "ten"})).unwrap_err();
        assert!(
            e.starts_with("invalid `limit`: invalid type: string"),
            "{e}"
        );
        let e = super::parse::<P>(json!({"name": 1})).unwrap_err();
        assert!(e.starts_with("invalid `name`:"), "{e}");
        let e = super::parse::<P>(json!({"name": "x", "env": {"K": 1}})).unwrap_err();
        assert!(e.starts_with("invalid `env.K`:"), "{e}");
        let e = super::parse::<P>(json!({})).unwrap_err();
        assert_eq!(e, "invalid arguments: missing `name`");
        let e = super::parse::<P>(json!({"name": "x", "bogus": 1})).unwrap_err();
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }
}
