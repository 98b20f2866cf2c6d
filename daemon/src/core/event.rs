//! Events: every state change the daemon makes, as stored in the log.
//!
//! `kind` and `data` are what the wire shows (`agent.state` with `{state, previous, evidence}`);
//! the store keeps them with a record version so an older log stays readable (see
//! `adapters/sled_store.rs` and its compatibility test).

use serde::{Deserialize, Serialize};

use super::agent::{AgentRecord, AgentState, TerminalRecord};
use super::task::{DecisionRecord, GateRun, SessionRecord, TaskRecord, TaskState};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all_fields = "camelCase")]
pub enum EventBody {
    /// The daemon started (every start, with its pid).
    #[serde(rename = "daemon.started")]
    DaemonStarted {
        pid: u32,
        version: String,
        workspace: String,
    },
    /// The daemon is stopping on request.
    #[serde(rename = "daemon.stopping")]
    DaemonStopping { pid: u32 },
    /// A session was created.
    #[serde(rename = "session.created")]
    SessionCreated { session: SessionRecord },
    /// A session was closed.
    #[serde(rename = "session.closed")]
    SessionClosed { id: String, at: String },
    /// A terminal was opened (for an agent or on its own).
    #[serde(rename = "terminal.opened")]
    TerminalOpened { terminal: TerminalRecord },
    /// A terminal's program ended.
    #[serde(rename = "terminal.exited")]
    TerminalExited { id: String, exit_code: Option<i32> },
    /// A terminal was closed.
    #[serde(rename = "terminal.closed")]
    TerminalClosed { id: String },
    /// A terminal was resized.
    #[serde(rename = "terminal.resized")]
    TerminalResized { id: String, cols: u16, rows: u16 },
    /// An agent was created and its program started.
    #[serde(rename = "agent.spawned")]
    AgentSpawned { agent: AgentRecord },
    /// An agent changed state.
    #[serde(rename = "agent.state")]
    AgentStateChanged {
        id: String,
        state: AgentState,
        previous: AgentState,
        evidence: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// An agent's program ended (its state event follows).
    #[serde(rename = "agent.exited")]
    AgentExited { id: String, exit_code: Option<i32> },
    /// A restart is scheduled after a backoff.
    #[serde(rename = "agent.restarting")]
    AgentRestarting {
        id: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// An agent runs again, in a new terminal.
    #[serde(rename = "agent.restarted")]
    AgentRestarted {
        id: String,
        terminal_id: String,
        pid: Option<u32>,
        restarts: u32,
    },
    /// The restart limit was reached.
    #[serde(rename = "agent.gaveUp")]
    AgentGaveUp { id: String, restarts: u32 },
    /// An agent that outlived the previous daemon (tmux) was taken over.
    #[serde(rename = "agent.adopted")]
    AgentAdopted { id: String, pid: Option<u32> },
    /// A task was created.
    #[serde(rename = "task.created")]
    TaskCreated { task: TaskRecord },
    /// A task was given to an agent.
    #[serde(rename = "task.assigned")]
    TaskAssigned {
        id: String,
        agent_id: Option<String>,
    },
    /// A task changed state.
    #[serde(rename = "task.state")]
    TaskStateChanged {
        id: String,
        state: TaskState,
        previous: TaskState,
        evidence: String,
    },
    /// A new attempt started (the prompt was typed into the agent).
    #[serde(rename = "task.attempt")]
    TaskAttempt { id: String, attempt: u32 },
    /// Someone said the work is done.
    #[serde(rename = "task.completed")]
    TaskCompleted { id: String, summary: Option<String> },
    /// A gate started.
    #[serde(rename = "task.gateStarted")]
    TaskGateStarted {
        id: String,
        name: String,
        attempt: u32,
        /// The gate's process group, so a daemon that died mid-gate can end it on restart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgid: Option<u32>,
    },
    /// A gate finished (or was interrupted).
    #[serde(rename = "task.gate")]
    TaskGate { id: String, result: GateRun },
    /// A decision is asked.
    #[serde(rename = "decision.requested")]
    DecisionRequested { decision: DecisionRecord },
    /// A decision was answered.
    #[serde(rename = "decision.resolved")]
    DecisionResolved {
        id: String,
        choice: String,
        reason: Option<String>,
        at: String,
    },
    /// `orch.toml` was re-read.
    #[serde(rename = "config.reloaded")]
    ConfigReloaded { path: String },
    /// A scheduler job failed.
    #[serde(rename = "job.failed")]
    JobFailed { name: String, error: String },
}

impl EventBody {
    /// The dotted kind (`agent.state`).
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::DaemonStarted { .. } => "daemon.started",
            EventBody::DaemonStopping { .. } => "daemon.stopping",
            EventBody::SessionCreated { .. } => "session.created",
            EventBody::SessionClosed { .. } => "session.closed",
            EventBody::TerminalOpened { .. } => "terminal.opened",
            EventBody::TerminalExited { .. } => "terminal.exited",
            EventBody::TerminalClosed { .. } => "terminal.closed",
            EventBody::TerminalResized { .. } => "terminal.resized",
            EventBody::AgentSpawned { .. } => "agent.spawned",
            EventBody::AgentStateChanged { .. } => "agent.state",
            EventBody::AgentExited { .. } => "agent.exited",
            EventBody::AgentRestarting { .. } => "agent.restarting",
            EventBody::AgentRestarted { .. } => "agent.restarted",
            EventBody::AgentGaveUp { .. } => "agent.gaveUp",
            EventBody::AgentAdopted { .. } => "agent.adopted",
            EventBody::TaskCreated { .. } => "task.created",
            EventBody::TaskAssigned { .. } => "task.assigned",
            EventBody::TaskStateChanged { .. } => "task.state",
            EventBody::TaskAttempt { .. } => "task.attempt",
            EventBody::TaskCompleted { .. } => "task.completed",
            EventBody::TaskGateStarted { .. } => "task.gateStarted",
            EventBody::TaskGate { .. } => "task.gate",
            EventBody::DecisionRequested { .. } => "decision.requested",
            EventBody::DecisionResolved { .. } => "decision.resolved",
            EventBody::ConfigReloaded { .. } => "config.reloaded",
            EventBody::JobFailed { .. } => "job.failed",
        }
    }

    /// The id of the object it is about (`daemon` and `config` for daemon-wide events).
    pub fn subject(&self) -> &str {
        match self {
            EventBody::DaemonStarted { .. } | EventBody::DaemonStopping { .. } => "daemon",
            EventBody::ConfigReloaded { .. } => "config",
            EventBody::JobFailed { name, .. } => name,
            EventBody::SessionCreated { session } => &session.id,
            EventBody::TerminalOpened { terminal } => &terminal.id,
            EventBody::AgentSpawned { agent } => &agent.id,
            EventBody::TaskCreated { task } => &task.id,
            EventBody::DecisionRequested { decision } => &decision.id,
            EventBody::SessionClosed { id, .. }
            | EventBody::TerminalExited { id, .. }
            | EventBody::TerminalClosed { id }
            | EventBody::TerminalResized { id, .. }
            | EventBody::AgentStateChanged { id, .. }
            | EventBody::AgentExited { id, .. }
            | EventBody::AgentRestarting { id, .. }
            | EventBody::AgentRestarted { id, .. }
            | EventBody::AgentGaveUp { id, .. }
            | EventBody::AgentAdopted { id, .. }
            | EventBody::TaskAssigned { id, .. }
            | EventBody::TaskStateChanged { id, .. }
            | EventBody::TaskAttempt { id, .. }
            | EventBody::TaskCompleted { id, .. }
            | EventBody::TaskGateStarted { id, .. }
            | EventBody::TaskGate { id, .. }
            | EventBody::DecisionResolved { id, .. } => id,
        }
    }
}

/// An event with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Strictly increasing, gap-free.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_matches_serde_tag() {
        let e = EventBody::AgentStateChanged {
            id: "a-1".into(),
            state: AgentState::Idle,
            previous: AgentState::Busy,
            evidence: "quiet 1500ms".into(),
            exit_code: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], e.kind());
        assert_eq!(
            v["data"],
            serde_json::json!({"id":"a-1","state":"idle","previous":"busy","evidence":"quiet 1500ms"})
        );
        assert_eq!(e.subject(), "a-1");
    }
}
