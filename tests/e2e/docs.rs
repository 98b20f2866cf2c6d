//! `docs/protocol.md` against the code: every method has a section, no section names a method
//! that does not exist, every error code is documented, and the notifications clients rely on
//! have sections.
//!
//! A section is a heading of exactly the form ``### `name` ``. The test reads the file; it starts
//! no daemon.

use std::collections::BTreeSet;
use std::path::PathBuf;

use editor_protocol::errors;
use editor_protocol::methods::{self, EVENT_NOTIFICATION, TERMINAL_OUTPUT_NOTIFICATION};

/// The LSP methods the daemon serves beside `methods::ALL`.
const LSP_METHODS: [&str; 5] = [
    "initialize",
    "shutdown",
    "exit",
    "$/cancelRequest",
    "workspace/executeCommand",
];

fn protocol_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The names of the ``### `name` `` headings.
fn sections(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::trim)
        .filter_map(|h| h.strip_prefix('`').and_then(|h| h.strip_suffix('`')))
        .filter(|name| !name.contains('`'))
        .map(String::from)
        .collect()
}

/// Whether `code` appears in `doc` as a number of its own (`-32001`, not part of `-320011`).
fn mentions_code(doc: &str, code: i32) -> bool {
    let needle = code.to_string();
    doc.match_indices(&needle).any(|(at, _)| {
        let before = doc[..at].chars().next_back();
        let after = doc[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn protocol_md_matches_the_code() {
    let doc = protocol_md();
    let sections = sections(&doc);
    let mut problems = Vec::new();

    for method in methods::ALL.iter().chain(LSP_METHODS.iter()) {
        if !sections.contains(*method) {
            problems.push(format!("method {method} has no \"### `{method}`\" section"));
        }
    }
    let notifications = [EVENT_NOTIFICATION, TERMINAL_OUTPUT_NOTIFICATION];
    for n in notifications {
        if !sections.contains(n) {
            problems.push(format!("notification {n} has no \"### `{n}`\" section"));
        }
    }
    for name in sections.iter().filter(|s| s.starts_with("orch/")) {
        if !methods::ALL.contains(&name.as_str()) && !notifications.contains(&name.as_str()) {
            problems.push(format!(
                "section \"### `{name}`\" names no method of editor_protocol::methods::ALL"
            ));
        }
    }
    for (name, code) in errors::ALL {
        if !mentions_code(&doc, *code) {
            problems.push(format!("error code {name} ({code}) does not appear"));
        }
    }

    assert!(
        problems.is_empty(),
        "docs/protocol.md is out of step with the code:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checks_catch_what_they_should() {
    let doc = "### `orch/status`\n### `orch/gone`\n### Methods sent as notifications\nCode -32001 and -320055.\n";
    let s = sections(doc);
    assert_eq!(
        s.into_iter().collect::<Vec<_>>(),
        ["orch/gone", "orch/status"]
    );
    assert!(mentions_code(doc, -32001));
    assert!(
        !mentions_code(doc, -32005),
        "-32005 is only part of -320055"
    );
}
