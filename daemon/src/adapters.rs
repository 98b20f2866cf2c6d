//! Adapters: the implementations of the ports in `ports.rs` — the sled event store and the
//! terminal backends — plus the output fan-out they share.
//!
//! Only this module names sled, portable-pty, alacritty_terminal or tmux.

pub mod fanout;
pub mod sled_store;
pub mod emulator;
pub mod pty;

use std::sync::Arc;

use crate::config::Config;
use crate::ports::TerminalBackend;
use crate::transport::paths::WorkspacePaths;

/// The argv that attaches this terminal to a tmux agent's window, for `orch attach`.
pub fn tmux_attach_command(_agent: &serde_json::Value) -> Option<Vec<String>> {
    None
}

/// The tmux backend for this workspace, if this build has one.
pub fn tmux_backend(_paths: &WorkspacePaths, _config: &Config) -> Option<Arc<dyn TerminalBackend>> {
    None
}
