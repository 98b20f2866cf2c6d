//! Events: every state change the daemon makes, as stored in the log.
//!
//! `kind` and `data` are what the wire shows (`agent.state` with `{state, previous, evidence}`);
//! the store keeps them with a record version so an older log stays readable (see
//! `adapters/sled_store.rs` and its compatibility test).

use super::agent::{AgentRecord, AgentState, PlanStep, TerminalRecord, WorktreeRecord};
use super::task::{DecisionRecord, GateRun, SessionRecord, TaskRecord, TaskState};

/// What happened.
// Events carrying a whole record are the larger ones; an event is built once and moved into
// the log, so boxing them would cost more than it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// The daemon started (every start, with its pid).
    DaemonStarted {
        pid: u32,
        version: String,
        workspace: String,
    },
    /// The daemon is stopping on request.
    DaemonStopping { pid: u32 },
    /// A session was created.
    SessionCreated { session: SessionRecord },
    /// A session was closed.
    SessionClosed { id: String, at: String },
    /// A terminal was opened (for an agent or on its own).
    TerminalOpened { terminal: TerminalRecord },
    /// A terminal's program ended.
    TerminalExited { id: String, exit_code: Option<i32> },
    /// A terminal was closed.
    TerminalClosed { id: String },
    /// A terminal was resized.
    TerminalResized { id: String, cols: u16, rows: u16 },
    /// An agent was created and its program started.
    AgentSpawned { agent: AgentRecord },
    /// An agent changed state.
    AgentStateChanged {
        id: String,
        state: AgentState,
        previous: AgentState,
        evidence: String,
        exit_code: Option<i32>,
    },
    /// An agent's program ended (its state event follows).
    AgentExited { id: String, exit_code: Option<i32> },
    /// A restart is scheduled after a backoff.
    AgentRestarting {
        id: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// An agent runs again, in a new terminal.
    AgentRestarted {
        id: String,
        terminal_id: String,
        pid: Option<u32>,
        restarts: u32,
    },
    /// The restart limit was reached.
    AgentGaveUp { id: String, restarts: u32 },
    /// An agent that outlived the previous daemon (tmux) was taken over.
    AgentAdopted { id: String, pid: Option<u32> },
    /// An ACP agent has a session: a new one, or an earlier one it continued (`origin`:
    /// `new`, `loaded` or `resumed`).
    AgentAcpSession {
        id: String,
        acp_session_id: String,
        origin: String,
    },
    /// An ACP agent's message, whole: `role` is `user` (a prompt), `agent` or `thought`.
    AgentMessage {
        id: String,
        role: String,
        text: String,
    },
    /// An ACP agent's tool call appeared or changed status.
    AgentToolCall {
        id: String,
        tool_call_id: String,
        title: String,
        tool_kind: String,
        status: String,
    },
    /// An ACP agent's plan (the whole plan, replacing the last one).
    AgentPlan { id: String, entries: Vec<PlanStep> },
    /// Agent `id` got a worktree (a new one, or its paused one checked out again).
    WorktreeCreated {
        id: String,
        worktree: WorktreeRecord,
    },
    /// Agent `id`'s worktree has `files` changed files against its base.
    WorktreeChanged { id: String, files: u64 },
    /// Agent `id`'s branch landed in its base.
    WorktreeMerged {
        id: String,
        strategy: String,
        commit: String,
        files: Vec<String>,
    },
    /// Agent `id`'s checkout was removed: paused (`branch_kept`) or discarded.
    WorktreeRemoved { id: String, branch_kept: bool },
    /// A task was created.
    TaskCreated { task: TaskRecord },
    /// A task was given to an agent.
    TaskAssigned {
        id: String,
        agent_id: Option<String>,
    },
    /// A task changed state.
    TaskStateChanged {
        id: String,
        state: TaskState,
        previous: TaskState,
        evidence: String,
    },
    /// A new attempt started (the prompt was typed into the agent).
    TaskAttempt { id: String, attempt: u32 },
    /// Someone said the work is done.
    TaskCompleted { id: String, summary: Option<String> },
    /// A gate started.
    TaskGateStarted {
        id: String,
        name: String,
        attempt: u32,
        /// The gate's process group, so a daemon that died mid-gate can end it on restart.
        pgid: Option<u32>,
    },
    /// A gate finished (or was interrupted).
    TaskGate { id: String, result: GateRun },
    /// A decision is asked.
    DecisionRequested { decision: DecisionRecord },
    /// A decision was answered.
    DecisionResolved {
        id: String,
        choice: String,
        reason: Option<String>,
        at: String,
    },
    /// `orch.toml` was re-read.
    ConfigReloaded { path: String },
    /// A scheduler job failed.
    JobFailed { name: String, error: String },
    /// A remote host's connection changed state (`connected`, `unreachable`, ...), with why.
    HostState {
        name: String,
        state: String,
        detail: String,
    },
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
            EventBody::AgentAcpSession { .. } => "agent.acpSession",
            EventBody::AgentMessage { .. } => "agent.message",
            EventBody::AgentToolCall { .. } => "agent.toolCall",
            EventBody::AgentPlan { .. } => "agent.plan",
            EventBody::WorktreeCreated { .. } => "worktree.created",
            EventBody::WorktreeChanged { .. } => "worktree.changed",
            EventBody::WorktreeMerged { .. } => "worktree.merged",
            EventBody::WorktreeRemoved { .. } => "worktree.removed",
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
            EventBody::HostState { .. } => "host.state",
            EventBody::JobFailed { .. } => "job.failed",
        }
    }

    /// The id of the object it is about (`daemon` and `config` for daemon-wide events).
    pub fn subject(&self) -> &str {
        match self {
            EventBody::DaemonStarted { .. } | EventBody::DaemonStopping { .. } => "daemon",
            EventBody::ConfigReloaded { .. } => "config",
            EventBody::JobFailed { name, .. } | EventBody::HostState { name, .. } => name,
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
            | EventBody::AgentAcpSession { id, .. }
            | EventBody::AgentMessage { id, .. }
            | EventBody::AgentToolCall { id, .. }
            | EventBody::AgentPlan { id, .. }
            | EventBody::WorktreeCreated { id, .. }
            | EventBody::WorktreeChanged { id, .. }
            | EventBody::WorktreeMerged { id, .. }
            | EventBody::WorktreeRemoved { id, .. }
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
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Strictly increasing, gap-free.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// What happened.
    pub body: EventBody,
}

/// One event of every kind, with every field set, for tests that pin their wire and disk forms.
#[cfg(test)]
pub(crate) fn samples() -> Vec<StoredEvent> {
    use super::agent::{AgentProtocol, HookDialect, RestartPolicy, Watch};
    use super::task::{DecisionSource, GateSpec, Priority};
    let agent = AgentRecord {
        id: "a-2".into(),
        name: "claude-1".into(),
        kind: "claude".into(),
        command: vec!["claude".into()],
        cwd: "/w".into(),
        env: [("TOKEN".to_string(), "s3cret".to_string())].into(),
        session_id: "s-1".into(),
        terminal_id: "t-3".into(),
        backend: "pty".into(),
        host: Some("buildhost".into()),
        state: AgentState::Starting,
        exit_code: None,
        pid: Some(42),
        task_id: None,
        restarts: 0,
        watch: Watch {
            idle_after_ms: 1500,
            waiting_patterns: vec!["Proceed\\?".into()],
            waiting_options: vec![("Yes".into(), "1".into())],
            restart: RestartPolicy::OnFailure,
            max_restarts: 5,
            ready_patterns: vec!["> ".into()],
            busy_patterns: vec!["esc to interrupt".into()],
            hooks: Some(HookDialect::Claude),
            interrupt_keys: "\u{1b}".into(),
            look_back: 14,
            menu_enter: false,
            protocol: AgentProtocol::Pty,
            acp_mode: None,
            acp_auth_method: None,
        },
        acp_session: None,
        worktree: None,
        cols: 120,
        rows: 40,
        created_at: "2026-11-28T00:00:00.000Z".into(),
        updated_at: "2026-11-28T00:00:00.000Z".into(),
    };
    let terminal = TerminalRecord {
        id: "t-3".into(),
        backend: "tmux".into(),
        command: vec!["claude".into()],
        cwd: "/w".into(),
        cols: 120,
        rows: 40,
        pid: Some(42),
        alive: true,
        exit_code: None,
        agent_id: Some("a-2".into()),
        handle: Some("%7".into()),
        closed: false,
    };
    let run = GateRun {
        name: "test".into(),
        attempt: 2,
        ok: false,
        exit_code: Some(101),
        duration_ms: 5230,
        output_tail: "1 failed".into(),
    };
    let task = TaskRecord {
        id: "k-4".into(),
        title: "fix".into(),
        prompt: "make it pass".into(),
        priority: Priority::High,
        agent_id: Some("a-2".into()),
        state: TaskState::Pending,
        attempts: 0,
        max_attempts: 3,
        gates: vec![GateSpec {
            name: "test".into(),
            command: vec!["cargo".into(), "test".into()],
            timeout_s: 900,
        }],
        gate_results: vec![run.clone()],
        decision_id: None,
        summary: None,
        running_gate: Some(("test".into(), 1)),
        running_gate_pgid: Some(77),
        merge: None,
        candidates: Vec::new(),
        group: None,
        created_at: "2026-11-28T00:00:00.000Z".into(),
        updated_at: "2026-11-28T00:00:00.000Z".into(),
    };
    let decision = DecisionRecord {
        id: "d-5".into(),
        title: "claude-1 is waiting for an answer".into(),
        detail: "Do you want to proceed?".into(),
        options: vec!["Yes".into(), "No".into()],
        resolved: false,
        choice: None,
        reason: None,
        source: DecisionSource::Agent {
            id: "a-2".into(),
            keys: vec![("Yes".into(), "1".into()), ("No".into(), "3".into())],
        },
        created_at: "2026-11-28T00:00:00.000Z".into(),
        resolved_at: None,
    };
    let mut acp_agent = agent.clone();
    acp_agent.id = "a-9".into();
    acp_agent.name = "gemini-acp-1".into();
    acp_agent.kind = "gemini-acp".into();
    acp_agent.command = vec!["gemini".into(), "--acp".into()];
    acp_agent.env.clear();
    acp_agent.terminal_id = "t-10".into();
    acp_agent.backend = "acp".into();
    acp_agent.acp_session = Some("sess-1".into());
    acp_agent.watch = Watch {
        protocol: AgentProtocol::Acp,
        acp_mode: Some("default".into()),
        acp_auth_method: Some("gemini-api-key".into()),
        ..Watch::default()
    };
    let permission = DecisionRecord {
        id: "d-11".into(),
        title: "gemini-acp-1 asks permission".into(),
        detail: "touch x".into(),
        options: vec!["Allow".into(), "Reject".into()],
        resolved: false,
        choice: None,
        reason: None,
        source: DecisionSource::Permission {
            id: "a-9".into(),
            request: 1,
            options: vec![
                ("Allow".into(), "proceed_once".into()),
                ("Reject".into(), "cancel".into()),
            ],
        },
        created_at: "2026-11-28T00:00:00.000Z".into(),
        resolved_at: None,
    };
    let task_for_merge = task.clone();
    let session = SessionRecord {
        id: "s-1".into(),
        name: "default".into(),
        closed: false,
        created_at: "2026-11-28T00:00:00.000Z".into(),
        closed_at: None,
    };
    let bodies = vec![
        EventBody::DaemonStarted {
            pid: 1,
            version: "0.1.0".into(),
            workspace: "/w".into(),
        },
        EventBody::DaemonStopping { pid: 1 },
        EventBody::SessionCreated { session },
        EventBody::SessionClosed {
            id: "s-6".into(),
            at: "2026-11-28T00:00:01.000Z".into(),
        },
        EventBody::TerminalOpened { terminal },
        EventBody::TerminalExited {
            id: "t-3".into(),
            exit_code: Some(0),
        },
        EventBody::TerminalClosed { id: "t-3".into() },
        EventBody::TerminalResized {
            id: "t-3".into(),
            cols: 100,
            rows: 30,
        },
        EventBody::AgentSpawned { agent },
        EventBody::AgentStateChanged {
            id: "a-2".into(),
            state: AgentState::Waiting,
            previous: AgentState::Busy,
            evidence: "hook: PermissionRequest Bash".into(),
            exit_code: None,
        },
        EventBody::AgentStateChanged {
            id: "a-2".into(),
            state: AgentState::Failed,
            previous: AgentState::Busy,
            evidence: "exit 2".into(),
            exit_code: Some(2),
        },
        EventBody::AgentExited {
            id: "a-2".into(),
            exit_code: None,
        },
        EventBody::AgentRestarting {
            id: "a-2".into(),
            attempt: 1,
            delay_ms: 500,
            reason: "exit 2".into(),
        },
        EventBody::AgentRestarted {
            id: "a-2".into(),
            terminal_id: "t-8".into(),
            pid: Some(43),
            restarts: 1,
        },
        EventBody::AgentGaveUp {
            id: "a-2".into(),
            restarts: 5,
        },
        EventBody::AgentAdopted {
            id: "a-2".into(),
            pid: None,
        },
        EventBody::TaskCreated { task },
        EventBody::TaskAssigned {
            id: "k-4".into(),
            agent_id: None,
        },
        EventBody::TaskStateChanged {
            id: "k-4".into(),
            state: TaskState::Running,
            previous: TaskState::Assigned,
            evidence: "prompt typed into claude-1 (attempt 1)".into(),
        },
        EventBody::TaskAttempt {
            id: "k-4".into(),
            attempt: 1,
        },
        EventBody::TaskCompleted {
            id: "k-4".into(),
            summary: Some("done".into()),
        },
        EventBody::TaskGateStarted {
            id: "k-4".into(),
            name: "test".into(),
            attempt: 1,
            pgid: Some(77),
        },
        EventBody::TaskGateStarted {
            id: "k-4".into(),
            name: "test".into(),
            attempt: 1,
            pgid: None,
        },
        EventBody::TaskGate {
            id: "k-4".into(),
            result: run,
        },
        EventBody::DecisionRequested { decision },
        EventBody::DecisionResolved {
            id: "d-5".into(),
            choice: "Yes".into(),
            reason: None,
            at: "2026-11-28T00:00:02.000Z".into(),
        },
        EventBody::ConfigReloaded {
            path: "/w/orch.toml".into(),
        },
        EventBody::HostState {
            name: "buildhost".into(),
            state: "unreachable".into(),
            detail: "the connection ended".into(),
        },
        EventBody::JobFailed {
            name: "retention".into(),
            error: "disk full".into(),
        },
        EventBody::AgentSpawned { agent: acp_agent },
        EventBody::AgentAcpSession {
            id: "a-9".into(),
            acp_session_id: "sess-1".into(),
            origin: "loaded".into(),
        },
        EventBody::AgentMessage {
            id: "a-9".into(),
            role: "agent".into(),
            text: "Done: all tests pass.".into(),
        },
        EventBody::AgentToolCall {
            id: "a-9".into(),
            tool_call_id: "call-1".into(),
            title: "touch x".into(),
            tool_kind: "execute".into(),
            status: "pending".into(),
        },
        EventBody::AgentPlan {
            id: "a-9".into(),
            entries: vec![PlanStep {
                content: "write the test".into(),
                priority: "high".into(),
                status: "in_progress".into(),
            }],
        },
        EventBody::DecisionRequested {
            decision: permission,
        },
        EventBody::WorktreeCreated {
            id: "a-9".into(),
            worktree: WorktreeRecord {
                path: "/state/worktrees/gemini-acp-1".into(),
                branch: "orch/gemini-acp-1".into(),
                base: "main".into(),
                base_commit: "0123abcd".into(),
                changes: 0,
                paused: false,
            },
        },
        EventBody::WorktreeChanged {
            id: "a-9".into(),
            files: 3,
        },
        EventBody::WorktreeMerged {
            id: "a-9".into(),
            strategy: "squash".into(),
            commit: "89abcdef".into(),
            files: vec!["src/lib.rs".into()],
        },
        EventBody::WorktreeRemoved {
            id: "a-9".into(),
            branch_kept: true,
        },
        EventBody::DecisionRequested {
            decision: DecisionRecord {
                id: "d-12".into(),
                title: "Discard gemini-acp-1's unmerged work on orch/gemini-acp-1?".into(),
                detail: "2 commit(s) not in its base".into(),
                options: vec!["discard".into(), "keep".into()],
                resolved: false,
                choice: None,
                reason: None,
                source: DecisionSource::Discard { id: "a-9".into() },
                created_at: "2026-11-28T00:00:00.000Z".into(),
                resolved_at: None,
            },
        },
        EventBody::TaskCreated {
            task: TaskRecord {
                id: "k-13".into(),
                merge: Some("squash".into()),
                agent_id: Some("a-9".into()),
                ..task_for_merge
            },
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| StoredEvent {
            seq: i as u64 + 1,
            time: "2026-11-28T00:00:00.000Z".into(),
            body,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds and subjects of every event, pinned: the kind is the name clients filter on.
    #[test]
    fn kinds_and_subjects() {
        let rows: Vec<String> = samples()
            .iter()
            .map(|e| format!("{} {}", e.body.kind(), e.body.subject()))
            .collect();
        expect_test::expect![[r#"
            daemon.started daemon
            daemon.stopping daemon
            session.created s-1
            session.closed s-6
            terminal.opened t-3
            terminal.exited t-3
            terminal.closed t-3
            terminal.resized t-3
            agent.spawned a-2
            agent.state a-2
            agent.state a-2
            agent.exited a-2
            agent.restarting a-2
            agent.restarted a-2
            agent.gaveUp a-2
            agent.adopted a-2
            task.created k-4
            task.assigned k-4
            task.state k-4
            task.attempt k-4
            task.completed k-4
            task.gateStarted k-4
            task.gateStarted k-4
            task.gate k-4
            decision.requested d-5
            decision.resolved d-5
            config.reloaded config
            host.state buildhost
            job.failed retention
            agent.spawned a-9
            agent.acpSession a-9
            agent.message a-9
            agent.toolCall a-9
            agent.plan a-9
            decision.requested d-11
            worktree.created a-9
            worktree.changed a-9
            worktree.merged a-9
            worktree.removed a-9
            decision.requested d-12
            task.created k-13"#]]
        .assert_eq(&rows.join("\n"));
    }
}
