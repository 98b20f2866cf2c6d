//! The store's own records: what an event and a snapshot are on disk, version 1.
//!
//! They mirror the domain's types field by field and convert both ways by exhaustive
//! destructuring, so a change to a domain type does not compile until its record says what it
//! becomes on disk — the disk is never a side effect of the domain's shapes. A change to a record
//! is a new record version with a reader for the old one; `every_event_kind_on_disk` and
//! `v1_record_compatibility` pin the format. Enumerations whose names the protocol fixes
//! (`AgentState`, `TaskState`, `Priority`, `RestartPolicy`, `HookDialect`) are stored by those
//! names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::agent::{
    AgentProtocol, AgentRecord, AgentState, HookDialect, PlanStep, RestartPolicy, TerminalRecord,
    Watch, WorktreeRecord,
};
use crate::core::event::{EventBody, StoredEvent};
use crate::core::state::State;
use crate::core::task::{
    DecisionRecord, DecisionSource, GateRun, GateSpec, Priority, SessionRecord, TaskRecord,
    TaskState,
};

/// An event as stored: `{seq, time, kind, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventV1 {
    /// Strictly increasing, gap-free.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// What happened.
    #[serde(flatten)]
    pub body: BodyV1,
}

/// What happened, tagged by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all_fields = "camelCase")]
#[allow(clippy::large_enum_variant)] // as EventBody: built once, written, dropped
pub enum BodyV1 {
    #[serde(rename = "daemon.started")]
    DaemonStarted {
        pid: u32,
        version: String,
        workspace: String,
    },
    #[serde(rename = "daemon.stopping")]
    DaemonStopping { pid: u32 },
    #[serde(rename = "session.created")]
    SessionCreated { session: SessionV1 },
    #[serde(rename = "session.closed")]
    SessionClosed { id: String, at: String },
    #[serde(rename = "terminal.opened")]
    TerminalOpened { terminal: TerminalV1 },
    #[serde(rename = "terminal.exited")]
    TerminalExited { id: String, exit_code: Option<i32> },
    #[serde(rename = "terminal.closed")]
    TerminalClosed { id: String },
    #[serde(rename = "terminal.resized")]
    TerminalResized { id: String, cols: u16, rows: u16 },
    #[serde(rename = "agent.spawned")]
    AgentSpawned { agent: AgentV1 },
    #[serde(rename = "agent.state")]
    AgentStateChanged {
        id: String,
        state: AgentState,
        previous: AgentState,
        evidence: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    #[serde(rename = "agent.exited")]
    AgentExited { id: String, exit_code: Option<i32> },
    #[serde(rename = "agent.restarting")]
    AgentRestarting {
        id: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    #[serde(rename = "agent.restarted")]
    AgentRestarted {
        id: String,
        terminal_id: String,
        pid: Option<u32>,
        restarts: u32,
    },
    #[serde(rename = "agent.gaveUp")]
    AgentGaveUp { id: String, restarts: u32 },
    #[serde(rename = "agent.adopted")]
    AgentAdopted { id: String, pid: Option<u32> },
    #[serde(rename = "agent.acpSession")]
    AgentAcpSession {
        id: String,
        acp_session_id: String,
        origin: String,
    },
    #[serde(rename = "agent.message")]
    AgentMessage {
        id: String,
        role: String,
        text: String,
    },
    #[serde(rename = "agent.toolCall")]
    AgentToolCall {
        id: String,
        tool_call_id: String,
        title: String,
        tool_kind: String,
        status: String,
    },
    #[serde(rename = "agent.plan")]
    AgentPlan {
        id: String,
        entries: Vec<PlanStepV1>,
    },
    #[serde(rename = "worktree.created")]
    WorktreeCreated { id: String, worktree: WorktreeV1 },
    #[serde(rename = "worktree.changed")]
    WorktreeChanged { id: String, files: u64 },
    #[serde(rename = "worktree.merged")]
    WorktreeMerged {
        id: String,
        strategy: String,
        commit: String,
        files: Vec<String>,
    },
    #[serde(rename = "worktree.removed")]
    WorktreeRemoved { id: String, branch_kept: bool },
    #[serde(rename = "task.created")]
    TaskCreated { task: TaskV1 },
    #[serde(rename = "task.assigned")]
    TaskAssigned {
        id: String,
        agent_id: Option<String>,
    },
    #[serde(rename = "task.state")]
    TaskStateChanged {
        id: String,
        state: TaskState,
        previous: TaskState,
        evidence: String,
    },
    #[serde(rename = "task.attempt")]
    TaskAttempt { id: String, attempt: u32 },
    #[serde(rename = "task.completed")]
    TaskCompleted { id: String, summary: Option<String> },
    #[serde(rename = "task.gateStarted")]
    TaskGateStarted {
        id: String,
        name: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgid: Option<u32>,
    },
    #[serde(rename = "task.gate")]
    TaskGate { id: String, result: GateRunV1 },
    #[serde(rename = "decision.requested")]
    DecisionRequested { decision: DecisionV1 },
    #[serde(rename = "decision.resolved")]
    DecisionResolved {
        id: String,
        choice: String,
        reason: Option<String>,
        at: String,
    },
    #[serde(rename = "config.reloaded")]
    ConfigReloaded { path: String },
    #[serde(rename = "host.state")]
    HostState {
        name: String,
        state: String,
        detail: String,
    },
    #[serde(rename = "job.failed")]
    JobFailed { name: String, error: String },
}

/// An agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentV1 {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub command: Vec<String>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    pub session_id: String,
    pub terminal_id: String,
    pub backend: String,
    /// Came later in version 1; absent for agents on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Came later in version 1; absent for agents without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acp_session: Option<String>,
    /// Came later in version 1; absent for agents without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeV1>,
    pub state: AgentState,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    pub task_id: Option<String>,
    pub restarts: u32,
    pub watch: WatchV1,
    pub cols: u16,
    pub rows: u16,
    pub created_at: String,
    pub updated_at: String,
}

/// How an agent is watched. Fields after `max_restarts` came later in version 1: records
/// without them read with the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchV1 {
    pub idle_after_ms: u64,
    pub waiting_patterns: Vec<String>,
    pub waiting_options: Vec<(String, String)>,
    pub restart: RestartPolicy,
    pub max_restarts: u32,
    #[serde(default)]
    pub ready_patterns: Vec<String>,
    #[serde(default)]
    pub busy_patterns: Vec<String>,
    #[serde(default)]
    pub hooks: Option<HookDialect>,
    #[serde(default = "default_interrupt_keys")]
    pub interrupt_keys: String,
    #[serde(default = "default_look_back")]
    pub look_back: usize,
    #[serde(default)]
    pub menu_enter: bool,
    /// Written only for ACP agents: the records of terminal agents are as before.
    #[serde(default, skip_serializing_if = "is_pty")]
    pub protocol: AgentProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acp_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acp_auth_method: Option<String>,
}

fn is_pty(p: &AgentProtocol) -> bool {
    *p == AgentProtocol::Pty
}

/// An agent's worktree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorktreeV1 {
    pub path: String,
    pub branch: String,
    pub base: String,
    pub base_commit: String,
    pub changes: u64,
    pub paused: bool,
}

impl From<WorktreeRecord> for WorktreeV1 {
    fn from(w: WorktreeRecord) -> Self {
        let WorktreeRecord {
            path,
            branch,
            base,
            base_commit,
            changes,
            paused,
        } = w;
        WorktreeV1 {
            path,
            branch,
            base,
            base_commit,
            changes,
            paused,
        }
    }
}

impl From<WorktreeV1> for WorktreeRecord {
    fn from(w: WorktreeV1) -> Self {
        let WorktreeV1 {
            path,
            branch,
            base,
            base_commit,
            changes,
            paused,
        } = w;
        WorktreeRecord {
            path,
            branch,
            base,
            base_commit,
            changes,
            paused,
        }
    }
}

/// A step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStepV1 {
    pub content: String,
    pub priority: String,
    pub status: String,
}

fn default_interrupt_keys() -> String {
    Watch::default().interrupt_keys
}

fn default_look_back() -> usize {
    Watch::default().look_back
}

/// A terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalV1 {
    pub id: String,
    pub backend: String,
    pub command: Vec<String>,
    pub cwd: String,
    pub cols: u16,
    pub rows: u16,
    pub pid: Option<u32>,
    pub alive: bool,
    pub exit_code: Option<i32>,
    pub agent_id: Option<String>,
    pub handle: Option<String>,
    pub closed: bool,
}

/// A gate as a task holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateSpecV1 {
    pub name: String,
    pub command: Vec<String>,
    pub timeout_s: u64,
}

/// A gate run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRunV1 {
    pub name: String,
    pub attempt: u32,
    pub ok: bool,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub output_tail: String,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskV1 {
    pub id: String,
    pub title: String,
    pub prompt: String,
    pub priority: Priority,
    pub agent_id: Option<String>,
    pub state: TaskState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub gates: Vec<GateSpecV1>,
    pub gate_results: Vec<GateRunV1>,
    pub decision_id: Option<String>,
    pub summary: Option<String>,
    #[serde(default)]
    pub running_gate: Option<(String, u32)>,
    #[serde(default)]
    pub running_gate_pgid: Option<u32>,
    /// Came later in version 1; absent for tasks without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// Came later in version 1; absent for tasks that are not best-of-N groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Came later in version 1; absent for tasks that are not candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Who asked a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum SourceV1 {
    Agent {
        id: String,
        keys: Vec<(String, String)>,
    },
    Permission {
        id: String,
        request: u64,
        options: Vec<(String, String)>,
    },
    Discard {
        id: String,
    },
    BestOf {
        task: String,
    },
    Task {
        id: String,
    },
    User,
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionV1 {
    pub id: String,
    pub title: String,
    pub detail: String,
    pub options: Vec<String>,
    pub resolved: bool,
    pub choice: Option<String>,
    pub reason: Option<String>,
    pub source: SourceV1,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

/// A session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionV1 {
    pub id: String,
    pub name: String,
    pub closed: bool,
    pub created_at: String,
    pub closed_at: Option<String>,
}

/// The whole state, for snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateV1 {
    pub next_id: u64,
    pub last_seq: u64,
    pub sessions: BTreeMap<String, SessionV1>,
    pub agents: BTreeMap<String, AgentV1>,
    pub terminals: BTreeMap<String, TerminalV1>,
    pub tasks: BTreeMap<String, TaskV1>,
    pub decisions: BTreeMap<String, DecisionV1>,
}

// ---------------------------------------------------------------------------------------------
// Domain -> record

impl From<&StoredEvent> for EventV1 {
    fn from(e: &StoredEvent) -> Self {
        EventV1 {
            seq: e.seq,
            time: e.time.clone(),
            body: (&e.body).into(),
        }
    }
}

impl From<&EventBody> for BodyV1 {
    fn from(b: &EventBody) -> Self {
        use EventBody as E;
        match b.clone() {
            E::DaemonStarted {
                pid,
                version,
                workspace,
            } => BodyV1::DaemonStarted {
                pid,
                version,
                workspace,
            },
            E::DaemonStopping { pid } => BodyV1::DaemonStopping { pid },
            E::SessionCreated { session } => BodyV1::SessionCreated {
                session: (&session).into(),
            },
            E::SessionClosed { id, at } => BodyV1::SessionClosed { id, at },
            E::TerminalOpened { terminal } => BodyV1::TerminalOpened {
                terminal: (&terminal).into(),
            },
            E::TerminalExited { id, exit_code } => BodyV1::TerminalExited { id, exit_code },
            E::TerminalClosed { id } => BodyV1::TerminalClosed { id },
            E::TerminalResized { id, cols, rows } => BodyV1::TerminalResized { id, cols, rows },
            E::AgentSpawned { agent } => BodyV1::AgentSpawned {
                agent: (&agent).into(),
            },
            E::AgentStateChanged {
                id,
                state,
                previous,
                evidence,
                exit_code,
            } => BodyV1::AgentStateChanged {
                id,
                state,
                previous,
                evidence,
                exit_code,
            },
            E::AgentExited { id, exit_code } => BodyV1::AgentExited { id, exit_code },
            E::AgentRestarting {
                id,
                attempt,
                delay_ms,
                reason,
            } => BodyV1::AgentRestarting {
                id,
                attempt,
                delay_ms,
                reason,
            },
            E::AgentRestarted {
                id,
                terminal_id,
                pid,
                restarts,
            } => BodyV1::AgentRestarted {
                id,
                terminal_id,
                pid,
                restarts,
            },
            E::AgentGaveUp { id, restarts } => BodyV1::AgentGaveUp { id, restarts },
            E::AgentAdopted { id, pid } => BodyV1::AgentAdopted { id, pid },
            E::AgentAcpSession {
                id,
                acp_session_id,
                origin,
            } => BodyV1::AgentAcpSession {
                id,
                acp_session_id,
                origin,
            },
            E::AgentMessage { id, role, text } => BodyV1::AgentMessage { id, role, text },
            E::AgentToolCall {
                id,
                tool_call_id,
                title,
                tool_kind,
                status,
            } => BodyV1::AgentToolCall {
                id,
                tool_call_id,
                title,
                tool_kind,
                status,
            },
            E::WorktreeCreated { id, worktree } => BodyV1::WorktreeCreated {
                id,
                worktree: worktree.into(),
            },
            E::WorktreeChanged { id, files } => BodyV1::WorktreeChanged { id, files },
            E::WorktreeMerged {
                id,
                strategy,
                commit,
                files,
            } => BodyV1::WorktreeMerged {
                id,
                strategy,
                commit,
                files,
            },
            E::WorktreeRemoved { id, branch_kept } => BodyV1::WorktreeRemoved { id, branch_kept },
            E::AgentPlan { id, entries } => BodyV1::AgentPlan {
                id,
                entries: entries
                    .into_iter()
                    .map(
                        |PlanStep {
                             content,
                             priority,
                             status,
                         }| PlanStepV1 {
                            content,
                            priority,
                            status,
                        },
                    )
                    .collect(),
            },
            E::TaskCreated { task } => BodyV1::TaskCreated {
                task: (&task).into(),
            },
            E::TaskAssigned { id, agent_id } => BodyV1::TaskAssigned { id, agent_id },
            E::TaskStateChanged {
                id,
                state,
                previous,
                evidence,
            } => BodyV1::TaskStateChanged {
                id,
                state,
                previous,
                evidence,
            },
            E::TaskAttempt { id, attempt } => BodyV1::TaskAttempt { id, attempt },
            E::TaskCompleted { id, summary } => BodyV1::TaskCompleted { id, summary },
            E::TaskGateStarted {
                id,
                name,
                attempt,
                pgid,
            } => BodyV1::TaskGateStarted {
                id,
                name,
                attempt,
                pgid,
            },
            E::TaskGate { id, result } => BodyV1::TaskGate {
                id,
                result: (&result).into(),
            },
            E::DecisionRequested { decision } => BodyV1::DecisionRequested {
                decision: (&decision).into(),
            },
            E::DecisionResolved {
                id,
                choice,
                reason,
                at,
            } => BodyV1::DecisionResolved {
                id,
                choice,
                reason,
                at,
            },
            E::ConfigReloaded { path } => BodyV1::ConfigReloaded { path },
            E::HostState {
                name,
                state,
                detail,
            } => BodyV1::HostState {
                name,
                state,
                detail,
            },
            E::JobFailed { name, error } => BodyV1::JobFailed { name, error },
        }
    }
}

impl From<&AgentRecord> for AgentV1 {
    fn from(a: &AgentRecord) -> Self {
        let AgentRecord {
            id,
            name,
            kind,
            command,
            cwd,
            env,
            session_id,
            terminal_id,
            backend,
            host,
            acp_session,
            worktree,
            state,
            exit_code,
            pid,
            task_id,
            restarts,
            watch,
            cols,
            rows,
            created_at,
            updated_at,
        } = a.clone();
        AgentV1 {
            id,
            name,
            kind,
            command,
            cwd,
            env,
            session_id,
            terminal_id,
            backend,
            host,
            acp_session,
            worktree: worktree.map(Into::into),
            state,
            exit_code,
            pid,
            task_id,
            restarts,
            watch: (&watch).into(),
            cols,
            rows,
            created_at,
            updated_at,
        }
    }
}

impl From<&Watch> for WatchV1 {
    fn from(w: &Watch) -> Self {
        let Watch {
            idle_after_ms,
            waiting_patterns,
            waiting_options,
            restart,
            max_restarts,
            ready_patterns,
            busy_patterns,
            hooks,
            interrupt_keys,
            look_back,
            menu_enter,
            protocol,
            acp_mode,
            acp_auth_method,
        } = w.clone();
        WatchV1 {
            idle_after_ms,
            waiting_patterns,
            waiting_options,
            restart,
            max_restarts,
            ready_patterns,
            busy_patterns,
            hooks,
            interrupt_keys,
            look_back,
            menu_enter,
            protocol,
            acp_mode,
            acp_auth_method,
        }
    }
}

impl From<&TerminalRecord> for TerminalV1 {
    fn from(t: &TerminalRecord) -> Self {
        let TerminalRecord {
            id,
            backend,
            command,
            cwd,
            cols,
            rows,
            pid,
            alive,
            exit_code,
            agent_id,
            handle,
            closed,
        } = t.clone();
        TerminalV1 {
            id,
            backend,
            command,
            cwd,
            cols,
            rows,
            pid,
            alive,
            exit_code,
            agent_id,
            handle,
            closed,
        }
    }
}

impl From<&GateSpec> for GateSpecV1 {
    fn from(g: &GateSpec) -> Self {
        let GateSpec {
            name,
            command,
            timeout_s,
        } = g.clone();
        GateSpecV1 {
            name,
            command,
            timeout_s,
        }
    }
}

impl From<&GateRun> for GateRunV1 {
    fn from(r: &GateRun) -> Self {
        let GateRun {
            name,
            attempt,
            ok,
            exit_code,
            duration_ms,
            output_tail,
        } = r.clone();
        GateRunV1 {
            name,
            attempt,
            ok,
            exit_code,
            duration_ms,
            output_tail,
        }
    }
}

impl From<&TaskRecord> for TaskV1 {
    fn from(t: &TaskRecord) -> Self {
        let TaskRecord {
            id,
            title,
            prompt,
            priority,
            agent_id,
            state,
            attempts,
            max_attempts,
            gates,
            gate_results,
            decision_id,
            summary,
            running_gate,
            running_gate_pgid,
            merge,
            candidates,
            group,
            created_at,
            updated_at,
        } = t.clone();
        TaskV1 {
            id,
            title,
            prompt,
            priority,
            agent_id,
            state,
            attempts,
            max_attempts,
            gates: gates.iter().map(Into::into).collect(),
            gate_results: gate_results.iter().map(Into::into).collect(),
            decision_id,
            summary,
            running_gate,
            running_gate_pgid,
            merge,
            candidates,
            group,
            created_at,
            updated_at,
        }
    }
}

impl From<&DecisionRecord> for DecisionV1 {
    fn from(d: &DecisionRecord) -> Self {
        let DecisionRecord {
            id,
            title,
            detail,
            options,
            resolved,
            choice,
            reason,
            source,
            created_at,
            resolved_at,
        } = d.clone();
        DecisionV1 {
            id,
            title,
            detail,
            options,
            resolved,
            choice,
            reason,
            source: match source {
                DecisionSource::Agent { id, keys } => SourceV1::Agent { id, keys },
                DecisionSource::Discard { id } => SourceV1::Discard { id },
                DecisionSource::BestOf { task } => SourceV1::BestOf { task },
                DecisionSource::Permission {
                    id,
                    request,
                    options,
                } => SourceV1::Permission {
                    id,
                    request,
                    options,
                },
                DecisionSource::Task { id } => SourceV1::Task { id },
                DecisionSource::User => SourceV1::User,
            },
            created_at,
            resolved_at,
        }
    }
}

impl From<&SessionRecord> for SessionV1 {
    fn from(s: &SessionRecord) -> Self {
        let SessionRecord {
            id,
            name,
            closed,
            created_at,
            closed_at,
        } = s.clone();
        SessionV1 {
            id,
            name,
            closed,
            created_at,
            closed_at,
        }
    }
}

impl From<&State> for StateV1 {
    fn from(s: &State) -> Self {
        let State {
            next_id,
            last_seq,
            sessions,
            agents,
            terminals,
            tasks,
            decisions,
            // Derived from the maps, rebuilt on load.
            names: _,
        } = s;
        StateV1 {
            next_id: *next_id,
            last_seq: *last_seq,
            sessions: sessions
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
            agents: agents.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
            terminals: terminals
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
            tasks: tasks.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
            decisions: decisions
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Record -> domain

impl From<EventV1> for StoredEvent {
    fn from(e: EventV1) -> Self {
        StoredEvent {
            seq: e.seq,
            time: e.time,
            body: e.body.into(),
        }
    }
}

impl From<BodyV1> for EventBody {
    fn from(b: BodyV1) -> Self {
        use EventBody as E;
        match b {
            BodyV1::DaemonStarted {
                pid,
                version,
                workspace,
            } => E::DaemonStarted {
                pid,
                version,
                workspace,
            },
            BodyV1::DaemonStopping { pid } => E::DaemonStopping { pid },
            BodyV1::SessionCreated { session } => E::SessionCreated {
                session: session.into(),
            },
            BodyV1::SessionClosed { id, at } => E::SessionClosed { id, at },
            BodyV1::TerminalOpened { terminal } => E::TerminalOpened {
                terminal: terminal.into(),
            },
            BodyV1::TerminalExited { id, exit_code } => E::TerminalExited { id, exit_code },
            BodyV1::TerminalClosed { id } => E::TerminalClosed { id },
            BodyV1::TerminalResized { id, cols, rows } => E::TerminalResized { id, cols, rows },
            BodyV1::AgentSpawned { agent } => E::AgentSpawned {
                agent: agent.into(),
            },
            BodyV1::AgentStateChanged {
                id,
                state,
                previous,
                evidence,
                exit_code,
            } => E::AgentStateChanged {
                id,
                state,
                previous,
                evidence,
                exit_code,
            },
            BodyV1::AgentExited { id, exit_code } => E::AgentExited { id, exit_code },
            BodyV1::AgentRestarting {
                id,
                attempt,
                delay_ms,
                reason,
            } => E::AgentRestarting {
                id,
                attempt,
                delay_ms,
                reason,
            },
            BodyV1::AgentRestarted {
                id,
                terminal_id,
                pid,
                restarts,
            } => E::AgentRestarted {
                id,
                terminal_id,
                pid,
                restarts,
            },
            BodyV1::AgentGaveUp { id, restarts } => E::AgentGaveUp { id, restarts },
            BodyV1::AgentAdopted { id, pid } => E::AgentAdopted { id, pid },
            BodyV1::AgentAcpSession {
                id,
                acp_session_id,
                origin,
            } => E::AgentAcpSession {
                id,
                acp_session_id,
                origin,
            },
            BodyV1::AgentMessage { id, role, text } => E::AgentMessage { id, role, text },
            BodyV1::AgentToolCall {
                id,
                tool_call_id,
                title,
                tool_kind,
                status,
            } => E::AgentToolCall {
                id,
                tool_call_id,
                title,
                tool_kind,
                status,
            },
            BodyV1::WorktreeCreated { id, worktree } => E::WorktreeCreated {
                id,
                worktree: worktree.into(),
            },
            BodyV1::WorktreeChanged { id, files } => E::WorktreeChanged { id, files },
            BodyV1::WorktreeMerged {
                id,
                strategy,
                commit,
                files,
            } => E::WorktreeMerged {
                id,
                strategy,
                commit,
                files,
            },
            BodyV1::WorktreeRemoved { id, branch_kept } => E::WorktreeRemoved { id, branch_kept },
            BodyV1::AgentPlan { id, entries } => E::AgentPlan {
                id,
                entries: entries
                    .into_iter()
                    .map(
                        |PlanStepV1 {
                             content,
                             priority,
                             status,
                         }| PlanStep {
                            content,
                            priority,
                            status,
                        },
                    )
                    .collect(),
            },
            BodyV1::TaskCreated { task } => E::TaskCreated { task: task.into() },
            BodyV1::TaskAssigned { id, agent_id } => E::TaskAssigned { id, agent_id },
            BodyV1::TaskStateChanged {
                id,
                state,
                previous,
                evidence,
            } => E::TaskStateChanged {
                id,
                state,
                previous,
                evidence,
            },
            BodyV1::TaskAttempt { id, attempt } => E::TaskAttempt { id, attempt },
            BodyV1::TaskCompleted { id, summary } => E::TaskCompleted { id, summary },
            BodyV1::TaskGateStarted {
                id,
                name,
                attempt,
                pgid,
            } => E::TaskGateStarted {
                id,
                name,
                attempt,
                pgid,
            },
            BodyV1::TaskGate { id, result } => E::TaskGate {
                id,
                result: result.into(),
            },
            BodyV1::DecisionRequested { decision } => E::DecisionRequested {
                decision: decision.into(),
            },
            BodyV1::DecisionResolved {
                id,
                choice,
                reason,
                at,
            } => E::DecisionResolved {
                id,
                choice,
                reason,
                at,
            },
            BodyV1::ConfigReloaded { path } => E::ConfigReloaded { path },
            BodyV1::HostState {
                name,
                state,
                detail,
            } => E::HostState {
                name,
                state,
                detail,
            },
            BodyV1::JobFailed { name, error } => E::JobFailed { name, error },
        }
    }
}

impl From<AgentV1> for AgentRecord {
    fn from(a: AgentV1) -> Self {
        let AgentV1 {
            id,
            name,
            kind,
            command,
            cwd,
            env,
            session_id,
            terminal_id,
            backend,
            host,
            acp_session,
            worktree,
            state,
            exit_code,
            pid,
            task_id,
            restarts,
            watch,
            cols,
            rows,
            created_at,
            updated_at,
        } = a;
        AgentRecord {
            id,
            name,
            kind,
            command,
            cwd,
            env,
            session_id,
            terminal_id,
            backend,
            host,
            acp_session,
            worktree: worktree.map(Into::into),
            state,
            exit_code,
            pid,
            task_id,
            restarts,
            watch: watch.into(),
            cols,
            rows,
            created_at,
            updated_at,
        }
    }
}

impl From<WatchV1> for Watch {
    fn from(w: WatchV1) -> Self {
        let WatchV1 {
            idle_after_ms,
            waiting_patterns,
            waiting_options,
            restart,
            max_restarts,
            ready_patterns,
            busy_patterns,
            hooks,
            interrupt_keys,
            look_back,
            menu_enter,
            protocol,
            acp_mode,
            acp_auth_method,
        } = w;
        Watch {
            idle_after_ms,
            waiting_patterns,
            waiting_options,
            restart,
            max_restarts,
            ready_patterns,
            busy_patterns,
            hooks,
            interrupt_keys,
            look_back,
            menu_enter,
            protocol,
            acp_mode,
            acp_auth_method,
        }
    }
}

impl From<TerminalV1> for TerminalRecord {
    fn from(t: TerminalV1) -> Self {
        let TerminalV1 {
            id,
            backend,
            command,
            cwd,
            cols,
            rows,
            pid,
            alive,
            exit_code,
            agent_id,
            handle,
            closed,
        } = t;
        TerminalRecord {
            id,
            backend,
            command,
            cwd,
            cols,
            rows,
            pid,
            alive,
            exit_code,
            agent_id,
            handle,
            closed,
        }
    }
}

impl From<GateSpecV1> for GateSpec {
    fn from(g: GateSpecV1) -> Self {
        let GateSpecV1 {
            name,
            command,
            timeout_s,
        } = g;
        GateSpec {
            name,
            command,
            timeout_s,
        }
    }
}

impl From<GateRunV1> for GateRun {
    fn from(r: GateRunV1) -> Self {
        let GateRunV1 {
            name,
            attempt,
            ok,
            exit_code,
            duration_ms,
            output_tail,
        } = r;
        GateRun {
            name,
            attempt,
            ok,
            exit_code,
            duration_ms,
            output_tail,
        }
    }
}

impl From<TaskV1> for TaskRecord {
    fn from(t: TaskV1) -> Self {
        let TaskV1 {
            id,
            title,
            prompt,
            priority,
            agent_id,
            state,
            attempts,
            max_attempts,
            gates,
            gate_results,
            decision_id,
            summary,
            running_gate,
            running_gate_pgid,
            merge,
            candidates,
            group,
            created_at,
            updated_at,
        } = t;
        TaskRecord {
            id,
            title,
            prompt,
            priority,
            agent_id,
            state,
            attempts,
            max_attempts,
            gates: gates.into_iter().map(Into::into).collect(),
            gate_results: gate_results.into_iter().map(Into::into).collect(),
            decision_id,
            summary,
            running_gate,
            running_gate_pgid,
            merge,
            candidates,
            group,
            created_at,
            updated_at,
        }
    }
}

impl From<DecisionV1> for DecisionRecord {
    fn from(d: DecisionV1) -> Self {
        let DecisionV1 {
            id,
            title,
            detail,
            options,
            resolved,
            choice,
            reason,
            source,
            created_at,
            resolved_at,
        } = d;
        DecisionRecord {
            id,
            title,
            detail,
            options,
            resolved,
            choice,
            reason,
            source: match source {
                SourceV1::Agent { id, keys } => DecisionSource::Agent { id, keys },
                SourceV1::Discard { id } => DecisionSource::Discard { id },
                SourceV1::BestOf { task } => DecisionSource::BestOf { task },
                SourceV1::Permission {
                    id,
                    request,
                    options,
                } => DecisionSource::Permission {
                    id,
                    request,
                    options,
                },
                SourceV1::Task { id } => DecisionSource::Task { id },
                SourceV1::User => DecisionSource::User,
            },
            created_at,
            resolved_at,
        }
    }
}

impl From<SessionV1> for SessionRecord {
    fn from(s: SessionV1) -> Self {
        let SessionV1 {
            id,
            name,
            closed,
            created_at,
            closed_at,
        } = s;
        SessionRecord {
            id,
            name,
            closed,
            created_at,
            closed_at,
        }
    }
}

impl From<StateV1> for State {
    fn from(s: StateV1) -> Self {
        let StateV1 {
            next_id,
            last_seq,
            sessions,
            agents,
            terminals,
            tasks,
            decisions,
        } = s;
        let mut state = State {
            next_id,
            last_seq,
            sessions: sessions.into_iter().map(|(k, v)| (k, v.into())).collect(),
            agents: agents.into_iter().map(|(k, v)| (k, v.into())).collect(),
            terminals: terminals.into_iter().map(|(k, v)| (k, v.into())).collect(),
            tasks: tasks.into_iter().map(|(k, v)| (k, v.into())).collect(),
            decisions: decisions.into_iter().map(|(k, v)| (k, v.into())).collect(),
            names: Default::default(),
        };
        state.reindex();
        state
    }
}
