//! Input schemas as a model reads them: every `tools/list` byte is context the client pays for
//! in each conversation. schemars writes what a validator needs (`"default": null`,
//! `["string", "null"]`, integer formats, `$defs` behind `anyOf`); this keeps what says how to
//! call the tool: types, enums, descriptions, `required`, `additionalProperties`.

use serde_json::{Map, Value};

/// `schema` without its noise: no `$schema`, no `null` or `false` defaults, no `format`, no
/// `minimum: 0`; optional fields typed as their value (omitting them is how to leave them
/// out); `$defs` inlined where used; a choice among constants as one `enum`.
pub fn compact(schema: &Map<String, Value>) -> Map<String, Value> {
    let mut root = schema.clone();
    let defs = match root.remove("$defs") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    root.remove("$schema");
    match walk(Value::Object(root), &defs, 0) {
        Value::Object(o) => o,
        // why: the root was an object and `walk` keeps objects objects.
        _ => schema.clone(),
    }
}

/// Deep enough for any parameter struct; a recursive `$ref` stops here rather than looping.
const MAX_DEPTH: usize = 16;

fn walk(v: Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| walk(i, defs, depth + 1))
                .collect(),
        ),
        Value::Object(o) if depth < MAX_DEPTH => Value::Object(node(o, defs, depth)),
        other => other,
    }
}

fn node(mut o: Map<String, Value>, defs: &Map<String, Value>, depth: usize) -> Map<String, Value> {
    if matches!(o.get("default"), Some(Value::Null | Value::Bool(false))) {
        o.remove("default");
    }
    o.remove("format");
    if o.get("minimum").and_then(Value::as_u64) == Some(0) {
        o.remove("minimum");
    }
    if let Some(Value::Array(types)) = o.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let kept = match <[Value; 1]>::try_from(kept) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        o.insert("type".into(), kept);
    }
    // `Option<T>` of a named type: `anyOf: [T, null]` is T.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = o.remove(key) {
            let mut alts: Vec<Value> = alts
                .into_iter()
                .filter(|a| a != &serde_json::json!({"type": "null"}))
                .collect();
            if alts.len() == 1 {
                if let Some(Value::Object(one)) = alts.pop() {
                    for (k, v) in one {
                        o.entry(k).or_insert(v);
                    }
                }
            } else {
                o.insert(key.into(), Value::Array(alts));
            }
        }
    }
    if let Some(Value::String(r)) = o.remove("$ref") {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(Value::Object(def)) = defs.get(name) {
            for (k, v) in def {
                // The field's own description says what the value means here.
                if k == "description" && o.contains_key("description") {
                    continue;
                }
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
            return node(o, defs, depth + 1);
        }
        o.insert("$ref".into(), Value::String(r));
    }
    let mut o: Map<String, Value> = o
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "enum" | "required" | "const" => (k, v),
            _ => (k.clone(), walk(v, defs, depth + 1)),
        })
        .collect();
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = o.get(key)
            && let Some(choice) = strings_of(alts)
        {
            o.remove(key);
            o.insert("type".into(), "string".into());
            if let Some(values) = choice {
                o.insert("enum".into(), Value::Array(values));
            }
        }
    }
    o
}

/// When every alternative is a string: `Some(Some(values))` for constants only, `Some(None)`
/// when any string goes (a known name or any other); `None` otherwise.
fn strings_of(alts: &[Value]) -> Option<Option<Vec<Value>>> {
    let mut values = Vec::new();
    let mut any = false;
    for a in alts {
        let a = a.as_object()?;
        if let Some(c) = a.get("const") {
            values.push(c.clone());
        } else if let Some(Value::Array(e)) = a.get("enum") {
            values.extend(e.iter().cloned());
        } else if a.get("type").and_then(Value::as_str) == Some("string") {
            any = true;
        } else {
            return None;
        }
    }
    if values.iter().any(|v| !v.is_string()) {
        return None;
    }
    Some((!any).then_some(values))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn keeps_what_says_how_to_call() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {
                "Mode": {"description": "How.", "oneOf": [
                    {"const": "a", "description": "A.", "type": "string"},
                    {"const": "b", "description": "B.", "type": "string"}
                ]},
                "Kind": {"anyOf": [{"enum": ["x"], "type": "string"}, {"type": "string"}]}
            },
            "additionalProperties": false,
            "properties": {
                "mode": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}],
                         "default": null, "description": "The mode."},
                "kind": {"anyOf": [{"$ref": "#/$defs/Kind"}, {"type": "null"}], "default": null},
                "n": {"default": null, "format": "uint32", "minimum": 0,
                      "type": ["integer", "null"], "description": "How many."},
                "all": {"default": false, "type": "boolean"},
                "id": {"type": "string"}
            },
            "required": ["id"],
            "type": "object"
        });
        let out = super::compact(schema.as_object().expect("object"));
        assert_eq!(
            serde_json::Value::Object(out),
            json!({
                "additionalProperties": false,
                "properties": {
                    "mode": {"description": "The mode.", "enum": ["a", "b"], "type": "string"},
                    "kind": {"type": "string"},
                    "n": {"description": "How many.", "type": "integer"},
                    "all": {"type": "boolean"},
                    "id": {"type": "string"}
                },
                "required": ["id"],
                "type": "object"
            })
        );
    }
}
