//! The pure domain: records for agents, terminals, sessions, tasks and decisions, the events that
//! change them, and [`state::State`], which folds events.
//!
//! Invariant (checked by a test in `lib.rs`): nothing under `core` does I/O, spawns, reads a clock
//! or names tokio or sled. Times come in as strings from the runtime; `State::apply` is the only
//! way state changes, so replaying the log rebuilds exactly the state the daemon had.

pub mod agent;
pub mod event;
pub mod hooks;
pub mod ids;
pub mod rules;
pub mod state;
pub mod task;
