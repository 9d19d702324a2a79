//! The providers file on disk: read entry by entry (one bad entry costs only itself, and its
//! diagnostic names the line and field), and edited by `configure_provider` with a field-level
//! merge written atomically (temp file + rename), so untouched entries and fields survive.

use std::path::Path;

use serde_json::{Map, Value};

use super::ProviderOverride;

/// Why the providers file could not be edited.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file exists but is not valid JSON; editing it would lose what the user wrote.
    #[error(
        "{path}: the providers file is not valid JSON (line {line}, column {column}: {message}); fix or remove it before configuring providers"
    )]
    Corrupt {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
    /// The edited entry does not validate; `field` names the culprit.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One entry as read from the file, with the line it starts on (for diagnostics).
pub(super) struct RawEntry {
    pub id: String,
    pub line: usize,
    pub entry: Result<ProviderOverride, String>,
    /// Fields this version does not know, with their lines: reported, then ignored, so a file
    /// written for another version (or the original providers file) still loads.
    pub unknown: Vec<(String, usize)>,
}

/// The fields of an entry ([`ProviderOverride`]'s, as the file spells them).
pub(super) const FIELDS: [&str; 14] = [
    "extends",
    "label",
    "description",
    "command",
    "env",
    "prompt",
    "model_args",
    "output",
    "resume_args",
    "enabled",
    "timeout_secs",
    "client_fs",
    "permission",
    "permission_timeout_secs",
];

/// `command` as an argument vector, or as one string of plain words split on spaces (the
/// original providers file's form). A string that needs a shell to mean what it says (quotes,
/// escapes, variables, pipes) is refused rather than guessed at: nothing here runs a shell.
pub(super) fn argv<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Argv {
        Words(Vec<String>),
        Line(String),
    }
    match <Option<Argv> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(Argv::Words(v)) => Ok(Some(v)),
        Some(Argv::Line(line)) => {
            if let Some(c) = line.chars().find(|c| "'\"\\$`|&;<>(){}*?~#".contains(*c)) {
                return Err(serde::de::Error::custom(format!(
                    "a string `command` is split on spaces only, and `{c}` would need a shell; write it as an array, e.g. [\"my-agent\", \"--acp\"]"
                )));
            }
            Ok(Some(line.split_whitespace().map(str::to_string).collect()))
        }
    }
}

/// Parse the file text into entries; `Err` is a file-level problem (bad JSON, wrong shape).
pub(super) fn parse(text: &str) -> Result<Vec<RawEntry>, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        // why: serde_json's message repeats the position at its end.
        let msg = e.to_string();
        let msg = msg
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(&msg)
            .to_string();
        format!("invalid providers file at line {line} column {column}: {msg}")
    })?;
    let Value::Object(mut root) = root else {
        return Err("the providers file must be a JSON object: {\"providers\": {…}}".into());
    };
    let providers = match root.remove("providers") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("`providers` must be an object keyed by provider id".into()),
    };
    if let Some(k) = root.keys().next() {
        return Err(format!(
            "unknown top-level key `{k}` (line {}); only `providers` is allowed",
            line_of_key(text, k, 0)
        ));
    }
    Ok(providers
        .into_iter()
        .map(|(id, mut v)| {
            let line = line_of_key(text, &id, 0);
            let unknown = strip_unknown(&mut v)
                .into_iter()
                .map(|k| {
                    let at = line_of_key(text, &k, line.saturating_sub(1));
                    (k, at)
                })
                .collect();
            RawEntry {
                line,
                entry: parse_entry(v),
                id,
                unknown,
            }
        })
        .collect())
}

/// Remove the fields of an entry that are not [`FIELDS`]; returns their names.
fn strip_unknown(entry: &mut Value) -> Vec<String> {
    let Value::Object(fields) = entry else {
        return Vec::new();
    };
    let unknown: Vec<String> = fields
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        fields.remove(k);
    }
    unknown
}

/// One entry, with a type error attributed to its field (serde's message alone does not say
/// which field had the wrong type).
fn parse_entry(v: Value) -> Result<ProviderOverride, String> {
    let whole = match serde_json::from_value::<ProviderOverride>(v.clone()) {
        Ok(o) => return Ok(o),
        Err(e) => e.to_string(),
    };
    let Value::Object(fields) = v else {
        return Err(format!("an entry must be an object of fields: {whole}"));
    };
    for (k, val) in fields {
        let one = Value::Object(Map::from_iter([(k.clone(), val)]));
        if let Err(e) = serde_json::from_value::<ProviderOverride>(one) {
            if e.to_string().contains("unknown field") {
                return Err(e.to_string());
            }
            return Err(format!("field `{k}`: {e}"));
        }
    }
    Err(whole)
}

/// The 1-based line where `"key"` first appears as an object key after the first `skip`
/// lines; 0 when not found.
fn line_of_key(text: &str, key: &str, skip: usize) -> usize {
    let quoted = match serde_json::to_string(key) {
        Ok(q) => q,
        Err(_) => return 0,
    };
    let mut from = match skip {
        0 => 0,
        n => match text.match_indices('\n').nth(n - 1) {
            Some((at, _)) => at + 1,
            None => return 0,
        },
    };
    while let Some(at) = text[from..].find(&quoted) {
        let end = from + at + quoted.len();
        if text[end..].trim_start().starts_with(':') {
            return text[..from + at].matches('\n').count() + 1;
        }
        from = end;
    }
    0
}

/// The fields `configure_provider` may set: the providers file's own entry shape, where
/// `None` leaves the file's value alone and, in `env`, an empty value removes the key.
pub type EntryPatch = ProviderOverride;

impl EntryPatch {
    pub fn is_empty(&self) -> bool {
        self.extends.is_none()
            && self.label.is_none()
            && self.description.is_none()
            && self.command.is_none()
            && self.env.is_none()
            && self.prompt.is_none()
            && self.model_args.is_none()
            && self.output.is_none()
            && self.resume_args.is_none()
            && self.enabled.is_none()
            && self.timeout_secs.is_none()
            && self.client_fs.is_none()
            && self.permission.is_none()
            && self.permission_timeout_secs.is_none()
    }

    /// Names of the fields this patch sets.
    fn given(&self) -> Vec<&'static str> {
        let set = [
            ("extends", self.extends.is_some()),
            ("label", self.label.is_some()),
            ("description", self.description.is_some()),
            ("command", self.command.is_some()),
            ("env", self.env.is_some()),
            ("prompt", self.prompt.is_some()),
            ("model_args", self.model_args.is_some()),
            ("output", self.output.is_some()),
            ("resume_args", self.resume_args.is_some()),
            ("enabled", self.enabled.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
            ("client_fs", self.client_fs.is_some()),
            ("permission", self.permission.is_some()),
            (
                "permission_timeout_secs",
                self.permission_timeout_secs.is_some(),
            ),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| k)
            .collect()
    }

    /// Set the given fields on `entry`, leaving every other field as it was.
    fn apply(&self, entry: &mut Map<String, Value>) {
        let fields = [
            ("extends", json(&self.extends)),
            ("label", json(&self.label)),
            ("description", json(&self.description)),
            ("command", json(&self.command)),
            ("prompt", json(&self.prompt)),
            ("model_args", json(&self.model_args)),
            ("output", json(&self.output)),
            ("resume_args", json(&self.resume_args)),
            ("enabled", json(&self.enabled)),
            ("timeout_secs", json(&self.timeout_secs)),
            ("client_fs", json(&self.client_fs)),
            ("permission", json(&self.permission)),
            (
                "permission_timeout_secs",
                json(&self.permission_timeout_secs),
            ),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                entry.insert(k.into(), v);
            }
        }
        if let Some(env) = &self.env {
            let slot = entry
                .entry("env")
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(m) = slot {
                for (k, v) in env {
                    if v.is_empty() {
                        m.remove(k);
                    } else {
                        m.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
        }
    }
}

/// A patch field as JSON; `None` when it was not given.
fn json<T: serde::Serialize>(v: &Option<T>) -> Option<Value> {
    // why: the field types are plain data (strings, numbers, enums) that always serialise.
    v.as_ref().and_then(|v| serde_json::to_value(v).ok())
}

/// What an edit does to the entry of one id.
pub enum Edit<'a> {
    Patch(&'a EntryPatch),
    /// Drop the file's entry: a built-in returns to its defaults, a custom agent goes away.
    Remove,
}

/// Read the file, apply `edit` to entry `id`, check the result with `validate`, and write it
/// back atomically. Other entries are carried over as they were (key order preserved).
pub(super) fn edit(
    path: &Path,
    id: &str,
    edit: Edit<'_>,
    validate: impl FnOnce(&ProviderOverride) -> Result<(), String>,
) -> Result<(), FileError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{}".into(),
        Err(source) => {
            return Err(FileError::Io {
                path: shown,
                source,
            });
        }
    };
    let text = if text.trim().is_empty() { "{}" } else { &text };
    let mut root: Value = serde_json::from_str(text).map_err(|e| FileError::Corrupt {
        path: shown.clone(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let shape = |message: &str| FileError::Shape {
        path: shown.clone(),
        message: message.into(),
    };
    let Value::Object(root_map) = &mut root else {
        return Err(shape("the providers file must be a JSON object"));
    };
    let providers = root_map
        .entry("providers")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(providers) = providers else {
        return Err(shape("`providers` must be an object keyed by provider id"));
    };
    match edit {
        Edit::Remove => {
            if providers.remove(id).is_none() {
                return Err(FileError::Invalid {
                    field: "id",
                    message: format!("the providers file has no entry `{id}` to remove"),
                });
            }
        }
        Edit::Patch(patch) => {
            let mut entry = match providers.remove(id) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            patch.apply(&mut entry);
            // Fields this version does not know stay in the file, unread, as on load.
            let mut known = Value::Object(entry.clone());
            strip_unknown(&mut known);
            let parsed = parse_entry(known).map_err(|e| FileError::Invalid {
                field: field_named(&e, &[]),
                message: format!("the entry `{id}` in the file is invalid: {e}"),
            })?;
            validate(&parsed).map_err(|message| FileError::Invalid {
                field: field_named(&message, &patch.given()),
                message,
            })?;
            providers.insert(id.to_string(), Value::Object(entry));
        }
    }
    write_atomically(path, &root).map_err(|source| FileError::Io {
        path: shown,
        source,
    })
}

/// The field a merge error talks about, so the tool error names it: of the fields the message
/// mentions, one the caller set, else the first mentioned.
fn field_named(message: &str, given: &[&str]) -> &'static str {
    let mentioned = |f: &str| {
        message.match_indices(f).any(|(at, _)| {
            let before = message[..at].chars().next_back();
            let after = message[at + f.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    };
    // why: a field whose name contains another's (`permission_timeout_secs`, `permission`)
    // is only "mentioned" as a whole word, so the order of FIELDS does not matter.
    FIELDS
        .into_iter()
        .filter(|f| mentioned(f))
        .min_by_key(|f| (!given.contains(f), message.find(*f)))
        .unwrap_or("id")
}

/// The file pretty-printed, written atomically (keeping its mode: `env` may hold secrets).
fn write_atomically(path: &Path, value: &Value) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    crate::config::write_atomically(path, text.as_bytes())
}
