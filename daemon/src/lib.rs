//! orch: a per-workspace daemon that runs and watches AI coding agents in terminals, gives them
//! tasks, checks their work with quality gates and asks a person when something needs a decision.
//! Editors and scripts drive it over one LSP-framed JSON-RPC protocol (`editor-protocol`).
//!
//! Layout (see `docs/architecture.md`):
//! - [`core`]: the pure domain — records, events, `State::apply`. No I/O, no clock, no tokio.
//! - [`ports`]: the traits the runtime needs — `EventStore`, `TerminalBackend`, `Terminal`.
//! - [`adapters`]: sled store, pty and tmux backends, the output fan-out, the git worktree layer.
//! - [`runtime`]: the single owner of state; the command loop, agents, tasks, gates, scheduler.
//! - [`rpc`]: the wire: dispatch table, handlers, conversions.
//! - [`transport`]: framing on sockets and stdio, the `orch lsp` forwarder, the CLI client.
//! - [`config`]: the workspace configuration, `orch.toml`.
//! - [`server`], [`cli`]: the `orch` binary's two halves.
//!
//! Invariants: state changes only on the runtime loop, through events that are durable before
//! they are acknowledged or broadcast; `core` does no I/O (checked by a test below); only
//! `editor-protocol` and `rpc` know the wire format.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod core;
pub mod fanout;
pub mod paths;
pub mod ports;
pub mod rpc;
pub mod runtime;
pub mod server;
pub mod transport;

/// This build's version, reported in `initialize` and checked by `orch lsp`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    /// `core` is pure: no I/O, no clock, no processes, no async runtime, no store.
    #[test]
    fn core_is_pure() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.push(dir.with_extension("rs"));
        let forbidden = [
            "tokio::",
            "sled::",
            "std::fs",
            "std::net",
            "std::process",
            "std::thread",
            "SystemTime",
            "Instant::",
            "portable_pty",
            "alacritty_terminal",
            "std::io",
        ];
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for word in forbidden {
                assert!(!text.contains(word), "{} mentions {word}", f.display());
            }
        }
    }
}
