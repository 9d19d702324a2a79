//! Heavy ignored directories brought into a new worktree, and kept out of its change.

use super::*;

#[test]
fn ignored_directories_are_brought_and_never_reach_the_change() {
    let fx = Fx::new();
    let p = &fx.project;
    fs::create_dir_all(p.join("target/debug/deps")).unwrap();
    fs::write(p.join("target/debug/deps/libx.rlib"), BIN).unwrap();
    fs::write(p.join(".git/info/exclude"), "cache/\n").unwrap();
    fs::create_dir_all(p.join("cache")).unwrap();
    fs::write(p.join("cache/blob"), "cached\n").unwrap();
    let info = fx.create();
    let dirs = [
        ("target".to_string(), BringStrategy::Copy),
        ("cache".to_string(), BringStrategy::Symlink),
        ("src".to_string(), BringStrategy::Copy),
        ("../elsewhere".to_string(), BringStrategy::Copy),
        ("node_modules".to_string(), BringStrategy::Copy),
    ];
    let brought = bring(p, &fx.wt, &dirs).unwrap();
    let by = |path: &str| brought.iter().find(|b| b.path == path).unwrap().clone();
    assert!(
        matches!(by("target").how, Some("reflink" | "copy")),
        "{brought:?}"
    );
    assert_eq!(
        fs::read(fx.wt.join("target/debug/deps/libx.rlib")).unwrap(),
        BIN
    );
    let cache = by("cache");
    match cache.how {
        Some("symlink") => {
            assert_eq!(fs::read_link(fx.wt.join("cache")).unwrap(), p.join("cache"))
        }
        Some("reflink") => assert!(fs::symlink_metadata(fx.wt.join("cache")).unwrap().is_dir()),
        other => panic!("cache brought as {other:?}"),
    }
    assert_eq!(
        fs::read_to_string(fx.wt.join("cache/blob")).unwrap(),
        "cached\n"
    );
    let notes = |path: &str| by(path).note.unwrap_or_default();
    assert!(
        notes("src").contains("git does not ignore it"),
        "{brought:?}"
    );
    assert!(notes("../elsewhere").contains("not a plain relative path"));
    assert!(notes("node_modules").contains("not in the checkout"));
    // neither the copy nor the symlink (which the worktree's own rules do not ignore) is part
    // of the change, even after the agent wrote into the copy
    fs::write(fx.wt.join("target/debug/new.o"), "x").unwrap();
    assert!(diff(&fx.wt, &info.base_commit).unwrap().is_empty());
}
