//! orch: a per-workspace daemon that runs and watches AI coding agents in terminals, gives them
//! tasks, checks their work with quality gates and asks a person when something needs a decision.
//! Editors and scripts drive it over one LSP-framed JSON-RPC protocol (`editor-protocol`).
//!
//! Layout (see `docs/architecture.md`):
//! - [`core`]: the pure domain — records, events, `State::apply`, the agent and task state
//!   machines, what a hook event means ([`core::hooks`]) and the rules ([`core::rules`]): what
//!   a command or an observation means, as events plus effects for the runtime to run.
//! - [`ports`]: the traits the runtime needs — `EventStore`, `TerminalBackend` and `Terminal`,
//!   `ConversationBackend` and `Conversation` (ACP agents), `Worktrees`, `ClientPort`, `Clock`.
//! - [`adapters`]: the sled store with its own on-disk records, the pty and tmux backends, the
//!   terminal emulator, the ACP client, the git worktree layer.
//! - [`runtime`]: the single owner of state; the command loop, which runs the rules and their
//!   effects; agents and their watching, terminals, clients, tasks, gates, the scheduler.
//! - [`rpc`]: what methods mean on the wire: the dispatch table, handlers, conversions to and
//!   from wire objects, the client as a `ClientPort`.
//! - [`transport`]: framing and the JSON-RPC lifecycle on sockets and stdio, the `orch lsp`
//!   forwarder, the CLI's client.
//! - [`paths`], [`fanout`], [`clock`]: where a workspace's files live, the terminal output
//!   fan-out, the system clock; shared by the layers above.
//! - [`config`]: the workspace configuration, `orch.toml`.
//! - [`server`], [`cli`]: the `orch` binary's two halves.
//!
//! Invariants:
//! - State changes only on the runtime loop, through events that are durable before they are
//!   acknowledged or broadcast.
//! - Each top-level module names only the modules its layer allows, and the layers have no
//!   cycle; `core` does no I/O, reads no clock and uses no outside crate but `serde`. Both are
//!   checked by the test in `layering.rs`.
//! - The wire format is `editor-protocol`'s. In the daemon, `rpc` alone gives methods their
//!   meaning and converts between wire objects and domain records; `transport` handles JSON-RPC
//!   messages without knowing what a method means; `runtime` and `core` never see JSON, request
//!   ids or wire errors. The store's on-disk records are `adapters::sled_store`'s own.

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

/// Seeded input mutation for the fuzz-like tests, shared with `editor-protocol`'s (test-only).
#[cfg(test)]
#[path = "../../editor-protocol/src/mutate.rs"]
mod mutate;

/// This build's version, reported in `initialize` and checked by `orch lsp`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod layering;
