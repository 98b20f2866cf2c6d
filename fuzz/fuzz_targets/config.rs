//! The orch.toml parser and validator on arbitrary text. Properties: no panic; an error names the
//! file and a line within the text; a configuration accepted is valid by the rules the runtime
//! relies on, and renders as JSON for `orch/config/get` with environment values hidden.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, std::path::Path::new("orch.toml")) {
        Err(e) => {
            assert_eq!(e.file, "orch.toml");
            assert!(e.line <= text.matches('\n').count() + 1, "line {}", e.line);
        }
        Ok(config) => {
            assert!(matches!(config.daemon.backend.as_str(), "pty" | "tmux"));
            assert!((1..=1000).contains(&config.daemon.cols));
            assert!((1..=1000).contains(&config.daemon.rows));
            assert!(!config.tmux.command.is_empty());
            for kind in config.agents.values() {
                assert!(!kind.command.is_empty());
            }
            let json = config.to_json();
            for kind in json["agents"].as_object().expect("agents").values() {
                if let Some(env) = kind["env"].as_object() {
                    assert!(env.values().all(|v| v == "<set>"), "{env:?}");
                }
            }
        }
    }
});
