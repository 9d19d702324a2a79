//! `boocoder schemas`: the tools' JSON Schemas, the source of the checked-in `tool-schemas/`.

use anyhow::{Context, Result};
use boocoder::mcp;

/// Keys in sorted order, so the checked-in files do not depend on whether some dependency
/// turned on serde_json's `preserve_order` (agent-client-protocol does).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let by_key: std::collections::BTreeMap<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(by_key.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

pub fn run(write: bool, dir: &std::path::Path) -> Result<()> {
    let defs = mcp::tool_definitions();
    if !write {
        let all: serde_json::Map<String, serde_json::Value> = defs.into_iter().collect();
        let text = serde_json::to_string_pretty(&sorted(serde_json::Value::Object(all)))?;
        #[allow(clippy::print_stdout)]
        {
            println!("{text}");
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for (name, value) in defs {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(
            &path,
            format!("{}\n", serde_json::to_string_pretty(&sorted(value))?),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
