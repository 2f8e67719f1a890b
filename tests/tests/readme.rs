//! The README's framework programs are the adapters' `readme` examples,
//! which `cargo test` and clippy compile: the README must quote them
//! exactly, and they may name no session crate but their adapter, so a
//! crate that depends on the adapter alone compiles them unchanged.

use std::path::Path;

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_readme_quotes_each_adapter_example_exactly() {
    let readme = read("README.md");
    for (adapter, crate_name) in [
        ("session-axum", "session_axum"),
        ("session-actix", "session_actix"),
        ("session-rocket", "session_rocket"),
    ] {
        let example = read(&format!("{adapter}/examples/readme.rs"));
        let quoted = format!("```rust,no_run\n{example}```");
        assert!(
            readme.contains(&quoted),
            "README.md no longer quotes {adapter}/examples/readme.rs exactly"
        );
        for other in ["session_core", "session_backends", "std::sync::Arc"] {
            assert!(
                !example.contains(other),
                "{adapter}'s example names {other}: a user adding only {crate_name} could not build it"
            );
        }
        assert!(example.contains(&format!("use {crate_name}::")));
    }
}
