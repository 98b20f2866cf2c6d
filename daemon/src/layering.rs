//! The architecture's layers, checked (`docs/architecture.md`, "Layers"): which top-level module
//! may name which, and which outside crates the pure domain may use. Reads the `crate::...` and
//! `use` paths of every source file (imports and paths in code alike, comments and string
//! literals left out), not text patterns, and names the file and line of each path that crosses
//! the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The daemon's top-level modules, and the modules each may name (besides itself).
const RULES: &[(&str, &[&str])] = &[
    // The pure domain: nothing of the crate outside it.
    ("core", &[]),
    ("paths", &[]),
    ("fanout", &[]),
    ("clock", &["ports"]),
    ("config", &["core"]),
    ("ports", &["core", "fanout"]),
    ("adapters", &["core", "ports", "fanout", "paths", "config"]),
    (
        "runtime",
        &["core", "ports", "fanout", "paths", "config", "clock"],
    ),
    // Bytes and framing: knows nothing of what a method means.
    ("transport", &["paths"]),
    (
        "rpc",
        &[
            "core",
            "ports",
            "fanout",
            "runtime",
            "transport",
            "config",
            "paths",
        ],
    ),
    (
        "server",
        &[
            "core",
            "ports",
            "adapters",
            "runtime",
            "rpc",
            "transport",
            "config",
            "paths",
            "clock",
        ],
    ),
    (
        "cli",
        &[
            "core",
            "adapters",
            "transport",
            "config",
            "paths",
            "server",
            "clock",
        ],
    ),
    ("layering", &[]),
];

/// Test-only modules at the crate root (`#[cfg(test)]`, so only tests can name them), which any
/// module may use: `mutate`, the seeded input mutation of the fuzz-like tests.
const TEST_SUPPORT: &[&str] = &["mutate"];

/// Outside crates the pure domain may use (its tests may use test crates).
const CORE_CRATES: &[&str] = &["std", "serde", "core", "alloc"];
/// Parts of std the pure domain must not touch: I/O, processes, threads, the environment.
const CORE_FORBIDDEN_STD: &[&str] = &["fs", "net", "process", "thread", "io", "env"];
/// Clocks the pure domain must not read (time comes in as a value).
const CORE_FORBIDDEN_NAMES: &[&str] = &["SystemTime", "Instant"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`runtime/agents.rs` -> `runtime`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file with comments and string and char literals blanked out (newlines kept, so
/// positions keep their line numbers), and everything from the first `#[cfg(test)]` on removed
/// when `without_tests` (tests sit at the bottom of a file).
fn code(text: &str, without_tests: bool) -> String {
    let text = match (without_tests, text.find("#[cfg(test)]")) {
        (true, Some(i)) => &text[..i],
        _ => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let start = 1 + hashes + 1;
            let end = rest[start.min(rest.len())..]
                .windows(close.len())
                .position(|w| w == close)
                .map_or(rest.len(), |e| start + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal (not a lifetime).
            let end = rest[1..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(1, |e| e + 2);
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The top-level modules a file's code names through `crate::`, with their line numbers.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    paths_under(code, "crate::")
}

/// The first segments after `root` (`crate::`, `std::`) wherever it starts a path, braces
/// included (`std::{fs, io}`), with their line numbers.
fn paths_under(code: &str, root: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(root) {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue; // `mycrate::`
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + root.len()..];
        if let Some(inner) = rest.strip_prefix('{') {
            // `crate::{a::x, b}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push((line, first_segment(&item)));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push((line, first_segment(&item)));
        } else {
            found.push((line, first_segment(rest)));
        }
    }
    // Items at the crate root (`crate::VERSION`) belong to no layer.
    found.retain(|(_, m)| m.starts_with(|c: char| c.is_ascii_lowercase()));
    found
}

fn first_segment(s: &str) -> String {
    s.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The outside crates a file's `use` statements name (first segments other than `crate`,
/// `super`, `self`).
fn used_crates(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("use ") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let seg = first_segment(code[at + 4..].trim_start_matches(':'));
        // `use AgentState::*` inside a function names a type, not a crate.
        let is_crate = seg.starts_with(|c: char| c.is_ascii_lowercase());
        if is_crate && !["crate", "super", "self"].contains(&seg.as_str()) {
            found.push((line, seg));
        }
    }
    found
}

#[test]
fn modules_keep_their_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut problems = BTreeSet::new();
    for file in &files {
        let module = module_of(&src, file);
        if ["main", "lib"].contains(&module.as_str()) {
            continue;
        }
        let Some((_, allowed)) = RULES.iter().find(|(m, _)| *m == module) else {
            problems.insert(format!(
                "{}: module {module} has no rule in layering.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in crate_paths(&code(&text, false)) {
            if target != module
                && !allowed.contains(&target.as_str())
                && !TEST_SUPPORT.contains(&target.as_str())
            {
                problems.insert(format!(
                    "{}:{line}: {module} names crate::{target}",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
        if module == "core" {
            let core_code = code(&text, true);
            for (line, part) in paths_under(&core_code, "std::") {
                if CORE_FORBIDDEN_STD.contains(&part.as_str()) {
                    problems.insert(format!(
                        "{}:{line}: core names std::{part}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
            for name in CORE_FORBIDDEN_NAMES {
                for (at, _) in core_code.match_indices(name) {
                    let line = core_code[..at].matches('\n').count() + 1;
                    problems.insert(format!(
                        "{}:{line}: core names {name}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
            for (line, krate) in used_crates(&core_code) {
                if !CORE_CRATES.contains(&krate.as_str()) {
                    problems.insert(format!(
                        "{}:{line}: core uses the crate {krate} (only {CORE_CRATES:?})",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n  {}",
        problems.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

/// The reader catches what it must: paths in code and in braces, and not in comments or
/// strings.
#[test]
fn the_reader_sees_paths_not_words() {
    let text = r#"
use crate::{runtime::Runtime, ports};
// crate::rpc in a comment
let s = "crate::transport in a string";
fn f() { crate::adapters::pty::x(); }
use tokio::sync;
use std::{fs, io};
"#;
    let c = code(text, false);
    let mods: Vec<String> = crate_paths(&c).into_iter().map(|(_, m)| m).collect();
    assert_eq!(mods, ["runtime", "ports", "adapters"]);
    let crates: Vec<String> = used_crates(&c).into_iter().map(|(_, m)| m).collect();
    assert_eq!(crates, ["tokio", "std"]);
    let std: Vec<String> = paths_under(&c, "std::")
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(std, ["fs", "io"]);
}
