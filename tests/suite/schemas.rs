//! `tool-schemas/*.json` are generated from the tool types; this fails when they are stale.

use std::collections::BTreeMap;

use crate::support::BIN;

#[test]
fn tool_schemas_are_current() {
    let out = std::process::Command::new(BIN)
        .arg("schemas")
        .output()
        .expect("run schemas");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("json");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tool-schemas");
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("tool-schemas/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        on_disk.insert(name, value);
    }
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        on_disk.keys().collect::<Vec<_>>(),
        "tool set changed; run `cargo run -- schemas --write`"
    );
    for (name, schema) in &generated {
        assert_eq!(
            Some(schema),
            on_disk.get(name),
            "tool-schemas/{name}.json is stale; run `cargo run -- schemas --write`"
        );
    }
}
