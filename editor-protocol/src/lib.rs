//! The orch wire contract: JSON-RPC 2.0 messages in LSP base-protocol framing, the objects that
//! cross the wire, and one type per method.
//!
//! This crate is the only place that knows the wire format (`../shared/PROTOCOL.md`). It has no
//! async runtime and does no I/O: the daemon and clients feed it bytes and get messages back.
//!
//! - [`framing`]: `Content-Length` framing with a size limit checked before allocating.
//! - [`jsonrpc`]: requests, notifications, responses, ids, and strict parsing of each shape.
//! - [`errors`]: the error codes of the contract.
//! - [`objects`]: Agent, Terminal, Session, Task, Decision, Event, Screen, Status, lists.
//! - [`methods`]: one uninhabited type per method with `Params`, `Result` and `METHOD`.

pub mod errors;
pub mod framing;
pub mod jsonrpc;
pub mod methods;
pub mod objects;

#[cfg(test)]
mod mutate;

/// The protocol version announced in `initialize` (`experimental.orch.protocolVersion`).
pub const PROTOCOL_VERSION: u32 = 1;
