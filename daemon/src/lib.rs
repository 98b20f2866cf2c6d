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
pub mod clock;
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
mod layering;
