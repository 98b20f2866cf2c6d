//! The workspace state: everything the event log folds into.
//!
//! [`State::apply`] is the only mutation. It is total: an event that refers to an object the state
//! does not have is ignored rather than panicking, so a damaged or trimmed log still loads.

use std::collections::{BTreeMap, HashMap};

use super::agent::{AgentRecord, AgentState, TerminalRecord};
use super::event::{EventBody, StoredEvent};
use super::ids::{self, IdGen};
use super::task::{DecisionRecord, SessionRecord, TaskRecord, TaskState};

/// Name of the session that always exists.
pub const DEFAULT_SESSION: &str = "default";

/// Everything the daemon knows, rebuilt from snapshot + log at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// The next id number; ids are never reused.
    pub next_id: u64,
    /// Seq of the last applied event.
    pub last_seq: u64,
    /// Sessions by id.
    pub sessions: BTreeMap<String, SessionRecord>,
    /// Agents by id.
    pub agents: BTreeMap<String, AgentRecord>,
    /// Terminals by id.
    pub terminals: BTreeMap<String, TerminalRecord>,
    /// Tasks by id.
    pub tasks: BTreeMap<String, TaskRecord>,
    /// Decisions by id.
    pub decisions: BTreeMap<String, DecisionRecord>,
    /// Derived: the id of each active session by name, and of each agent by name (names are
    /// looked up on every create and by clients; a scan cost as much as the history, 98% of a
    /// daemon's time with 100,000 sessions). Kept by [`State::apply`], rebuilt by
    /// [`State::reindex`] for a state made otherwise (a snapshot).
    pub names: Names,
}

/// Name indexes of a [`State`], derived from its maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    /// Active sessions: name -> id.
    sessions: HashMap<String, String>,
    /// Agents: name -> id.
    agents: HashMap<String, String>,
}

impl State {
    /// How many objects the state holds: what a snapshot of it costs to write.
    pub fn objects(&self) -> usize {
        self.sessions.len()
            + self.agents.len()
            + self.terminals.len()
            + self.tasks.len()
            + self.decisions.len()
    }

    /// An id generator continuing this state's counter.
    pub fn ids(&self) -> IdGen {
        IdGen::new(self.next_id.max(1))
    }

    /// Rebuild the name indexes from the maps (after building a state other than by `apply`).
    pub fn reindex(&mut self) {
        self.names = Names::default();
        for s in self.sessions.values().filter(|s| !s.closed) {
            self.names.sessions.insert(s.name.clone(), s.id.clone());
        }
        for a in self.agents.values() {
            self.names.agents.insert(a.name.clone(), a.id.clone());
        }
    }

    /// An agent by id or name.
    pub fn agent(&self, id_or_name: &str) -> Option<&AgentRecord> {
        // Names are unique for the workspace's life (spawn refuses a used one or an id's shape).
        self.agents
            .get(id_or_name)
            .or_else(|| self.agent_named(id_or_name))
    }

    /// The agent named `name`.
    pub fn agent_named(&self, name: &str) -> Option<&AgentRecord> {
        self.names
            .agents
            .get(name)
            .and_then(|id| self.agents.get(id))
    }

    /// A session by id or name (active sessions win for names).
    pub fn session(&self, id_or_name: &str) -> Option<&SessionRecord> {
        self.sessions
            .get(id_or_name)
            .or_else(|| self.active_session_named(id_or_name))
    }

    /// The active session named `name`.
    pub fn active_session_named(&self, name: &str) -> Option<&SessionRecord> {
        self.names
            .sessions
            .get(name)
            .and_then(|id| self.sessions.get(id))
    }

    /// The active `default` session.
    pub fn default_session(&self) -> Option<&SessionRecord> {
        self.active_session_named(DEFAULT_SESSION)
    }

    /// The agent running in terminal `terminal_id`.
    pub fn agent_by_terminal(&self, terminal_id: &str) -> Option<&AgentRecord> {
        self.agents.values().find(|a| a.terminal_id == terminal_id)
    }

    /// Fold one event in.
    pub fn apply(&mut self, event: &StoredEvent) {
        self.last_seq = self.last_seq.max(event.seq);
        let at = event.time.clone();
        match &event.body {
            EventBody::DaemonStarted { .. }
            | EventBody::DaemonStopping { .. }
            | EventBody::ConfigReloaded { .. }
            | EventBody::HostState { .. }
            | EventBody::JobFailed { .. }
            | EventBody::AgentRestarting { .. }
            | EventBody::AgentGaveUp { .. }
            | EventBody::AgentMessage { .. }
            | EventBody::AgentToolCall { .. }
            | EventBody::AgentPlan { .. } => {}
            EventBody::WorktreeCreated { id, worktree } => {
                if let Some(a) = self.agents.get_mut(id) {
                    a.cwd = worktree.path.clone();
                    a.worktree = Some(worktree.clone());
                    a.updated_at = at;
                }
            }
            EventBody::WorktreeChanged { id, files } => {
                if let Some(w) = self.agents.get_mut(id).and_then(|a| a.worktree.as_mut()) {
                    w.changes = *files;
                }
            }
            EventBody::WorktreeMerged { .. } => {}
            EventBody::WorktreeRemoved { id, branch_kept } => {
                if let Some(a) = self.agents.get_mut(id) {
                    if *branch_kept {
                        if let Some(w) = a.worktree.as_mut() {
                            w.paused = true;
                        }
                    } else {
                        a.worktree = None;
                    }
                    a.updated_at = at;
                }
            }
            EventBody::AgentAcpSession {
                id, acp_session_id, ..
            } => {
                if let Some(a) = self.agents.get_mut(id) {
                    a.acp_session = Some(acp_session_id.clone());
                    a.updated_at = at;
                }
            }
            EventBody::TaskGateStarted {
                id,
                name,
                attempt,
                pgid,
            } => {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.running_gate = Some((name.clone(), *attempt));
                    t.running_gate_pgid = *pgid;
                }
            }
            EventBody::SessionCreated { session } => {
                self.bump(&session.id);
                if !session.closed {
                    self.names
                        .sessions
                        .insert(session.name.clone(), session.id.clone());
                }
                self.sessions.insert(session.id.clone(), session.clone());
            }
            EventBody::SessionClosed { id, at } => {
                if let Some(s) = self.sessions.get_mut(id) {
                    s.closed = true;
                    s.closed_at = Some(at.clone());
                    if self.names.sessions.get(&s.name) == Some(id) {
                        self.names.sessions.remove(&s.name);
                    }
                }
            }
            EventBody::TerminalOpened { terminal } => {
                self.bump(&terminal.id);
                self.terminals.insert(terminal.id.clone(), terminal.clone());
            }
            EventBody::TerminalExited { id, exit_code } => {
                if let Some(t) = self.terminals.get_mut(id) {
                    t.alive = false;
                    t.exit_code = *exit_code;
                    t.pid = None;
                }
            }
            EventBody::TerminalClosed { id } => {
                if let Some(t) = self.terminals.get_mut(id) {
                    t.alive = false;
                    t.closed = true;
                    t.pid = None;
                }
            }
            EventBody::TerminalResized { id, cols, rows } => {
                if let Some(t) = self.terminals.get_mut(id) {
                    t.cols = *cols;
                    t.rows = *rows;
                }
                if let Some(a) = self.agents.values_mut().find(|a| &a.terminal_id == id) {
                    a.cols = *cols;
                    a.rows = *rows;
                }
            }
            EventBody::AgentSpawned { agent } => {
                self.bump(&agent.id);
                self.names
                    .agents
                    .insert(agent.name.clone(), agent.id.clone());
                self.agents.insert(agent.id.clone(), agent.clone());
            }
            EventBody::AgentStateChanged {
                id,
                state,
                exit_code,
                ..
            } => {
                if let Some(a) = self.agents.get_mut(id) {
                    a.state = *state;
                    a.updated_at = at;
                    if !state.is_live() {
                        a.pid = None;
                        if exit_code.is_some() {
                            a.exit_code = *exit_code;
                        }
                    } else if *state == AgentState::Starting {
                        a.exit_code = None;
                    }
                }
            }
            EventBody::AgentExited { id, exit_code } => {
                if let Some(a) = self.agents.get_mut(id) {
                    a.exit_code = *exit_code;
                    a.updated_at = at;
                }
            }
            EventBody::AgentRestarted {
                id,
                terminal_id,
                pid,
                restarts,
            } => {
                if let Some(a) = self.agents.get_mut(id) {
                    a.terminal_id = terminal_id.clone();
                    a.pid = *pid;
                    a.restarts = *restarts;
                    a.exit_code = None;
                    a.updated_at = at;
                }
            }
            EventBody::AgentAdopted { id, pid } => {
                if let Some(a) = self.agents.get_mut(id) {
                    a.pid = *pid;
                    a.updated_at = at;
                }
            }
            EventBody::TaskCreated { task } => {
                self.bump(&task.id);
                if let Some(group) = task.group.as_ref().and_then(|g| self.tasks.get_mut(g)) {
                    if !group.candidates.contains(&task.id) {
                        group.candidates.push(task.id.clone());
                    }
                }
                self.tasks.insert(task.id.clone(), task.clone());
            }
            EventBody::TaskAssigned { id, agent_id } => {
                let previous = self.tasks.get(id).and_then(|t| t.agent_id.clone());
                if let Some(prev) = previous.and_then(|p| self.agents.get_mut(&p)) {
                    if prev.task_id.as_deref() == Some(id) {
                        prev.task_id = None;
                    }
                }
                if let Some(t) = self.tasks.get_mut(id) {
                    t.agent_id = agent_id.clone();
                    t.updated_at = at.clone();
                }
                if let Some(a) = agent_id.as_ref().and_then(|a| self.agents.get_mut(a)) {
                    a.task_id = Some(id.clone());
                }
            }
            EventBody::TaskStateChanged { id, state, .. } => {
                let Some(t) = self.tasks.get_mut(id) else {
                    return;
                };
                t.state = *state;
                t.updated_at = at;
                if matches!(
                    state,
                    TaskState::Done
                        | TaskState::Cancelled
                        | TaskState::Failed
                        | TaskState::Escalated
                ) {
                    // The agent is free for other work once its task is settled.
                    if let Some(a) = t.agent_id.clone().and_then(|a| self.agents.get_mut(&a)) {
                        if a.task_id.as_deref() == Some(id) {
                            a.task_id = None;
                        }
                    }
                }
            }
            EventBody::TaskAttempt { id, attempt } => {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.attempts = *attempt;
                    t.updated_at = at;
                }
            }
            EventBody::TaskCompleted { id, summary } => {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.summary = summary.clone();
                    t.updated_at = at;
                }
            }
            EventBody::TaskGate { id, result } => {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.running_gate = None;
                    t.gate_results.push(result.clone());
                    t.updated_at = at;
                }
            }
            EventBody::DecisionRequested { decision } => {
                self.bump(&decision.id);
                if let super::task::DecisionSource::Task { id } = &decision.source {
                    if let Some(t) = self.tasks.get_mut(id) {
                        t.decision_id = Some(decision.id.clone());
                    }
                }
                self.decisions.insert(decision.id.clone(), decision.clone());
            }
            EventBody::DecisionResolved {
                id,
                choice,
                reason,
                at,
            } => {
                if let Some(d) = self.decisions.get_mut(id) {
                    d.resolved = true;
                    d.choice = Some(choice.clone());
                    d.reason = reason.clone();
                    d.resolved_at = Some(at.clone());
                }
            }
        }
    }

    fn bump(&mut self, id: &str) {
        if let Some(n) = ids::number(id) {
            self.next_id = self.next_id.max(n + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::agent::Watch;

    fn ev(seq: u64, body: EventBody) -> StoredEvent {
        StoredEvent {
            seq,
            time: format!("2026-01-01T00:00:{seq:02}Z"),
            body,
        }
    }

    /// Names find the active session (a closed one's name is free again, and its reuse is found),
    /// and the index `apply` keeps is the one `reindex` rebuilds from the maps.
    #[test]
    fn names_follow_sessions_opening_and_closing() {
        let session = |id: &str, name: &str| EventBody::SessionCreated {
            session: SessionRecord {
                id: id.into(),
                name: name.into(),
                closed: false,
                created_at: "t".into(),
                closed_at: None,
            },
        };
        let mut st = State::default();
        st.apply(&ev(1, session("s-1", "work")));
        st.apply(&ev(2, session("s-2", "other")));
        assert_eq!(st.session("work").map(|s| s.id.as_str()), Some("s-1"));
        st.apply(&ev(
            3,
            EventBody::SessionClosed {
                id: "s-1".into(),
                at: "t".into(),
            },
        ));
        assert!(st.active_session_named("work").is_none());
        assert_eq!(st.session("s-1").map(|s| s.closed), Some(true));
        st.apply(&ev(4, session("s-3", "work")));
        assert_eq!(st.session("work").map(|s| s.id.as_str()), Some("s-3"));
        let mut rebuilt = st.clone();
        rebuilt.names = Names::default();
        rebuilt.reindex();
        assert_eq!(rebuilt, st);
    }

    fn agent(id: &str, name: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            name: name.into(),
            kind: "shell".into(),
            command: vec!["bash".into()],
            cwd: "/w".into(),
            env: Default::default(),
            session_id: "s-1".into(),
            terminal_id: "t-3".into(),
            backend: "pty".into(),
            host: None,
            acp_session: None,
            worktree: None,
            state: AgentState::Starting,
            exit_code: None,
            pid: Some(10),
            task_id: None,
            restarts: 0,
            watch: Watch::default(),
            cols: 80,
            rows: 24,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn replay_rebuilds_state_and_ids_are_never_reused() {
        let mut s = State::default();
        s.apply(&ev(
            1,
            EventBody::AgentSpawned {
                agent: agent("a-2", "shell-1"),
            },
        ));
        s.apply(&ev(
            2,
            EventBody::AgentStateChanged {
                id: "a-2".into(),
                state: AgentState::Exited,
                previous: AgentState::Starting,
                evidence: "exit 0".into(),
                exit_code: Some(0),
            },
        ));
        assert_eq!(s.next_id, 3);
        assert_eq!(s.last_seq, 2);
        let a = s.agent("shell-1").unwrap();
        assert_eq!(
            (a.state, a.exit_code, a.pid),
            (AgentState::Exited, Some(0), None)
        );
        assert_eq!(s.ids().next("a"), "a-3");
        // Unknown subjects are ignored, not fatal.
        s.apply(&ev(
            3,
            EventBody::AgentExited {
                id: "a-99".into(),
                exit_code: None,
            },
        ));
        assert_eq!(s.last_seq, 3);
    }
}
