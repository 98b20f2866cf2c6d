//! Transport: bytes in, commands to the runtime; events and replies out as framed JSON-RPC.
//!
//! - [`conn`]: one connection over any byte stream — framing, dispatch in arrival order, a single
//!   writer, server-to-client requests, cancellation.
//! - [`socket`]: the local socket listener (0700 dir, 0600 socket, peer uid check) and the lock
//!   that makes one daemon per workspace.
//! - [`client`]: a small client for the CLI, with daemon auto-start.
//! - [`forward`]: `orch lsp`, the stdio forwarder editors start.
//!
//! Knows the wire only through `editor-protocol`; knows nothing of agents or tasks.

pub mod client;
pub mod conn;
pub mod forward;
pub mod socket;
