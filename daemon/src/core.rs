//! The pure domain: records for agents, terminals, sessions, tasks and decisions, the events that
//! change them, and [`state::State`], which folds events.
//!
//! Invariant (checked by the test in `layering.rs`): nothing under `core` names another module of
//! the crate or an outside crate but `serde`, so it does no I/O, spawns nothing, reads no clock. Times come in as strings from the runtime; `State::apply` is the only
//! way state changes, so replaying the log rebuilds exactly the state the daemon had.

pub mod agent;
pub mod event;
pub mod hooks;
pub mod ids;
pub mod rules;
pub mod state;
pub mod task;
