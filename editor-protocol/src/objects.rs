//! The objects that cross the wire (PROTOCOL.md, Objects), in camelCase JSON.
//!
//! Plain data: no behaviour beyond serialization. The daemon converts its domain types into these
//! in its `rpc` module; clients deserialize them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An agent: a program in a terminal plus what the daemon knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// Unique, never reused.
    pub id: String,
    /// Unique in the workspace for its whole life (not reused); accepted wherever an id is.
    pub name: String,
    /// The configured kind, or `"command"` for a bare argv.
    pub kind: String,
    /// The argv that runs.
    pub command: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// The session it belongs to.
    pub session_id: String,
    /// Its terminal.
    pub terminal_id: String,
    /// `"pty"` or `"tmux"` (a program in a terminal), or `"acp"` (an ACP agent, whose screen
    /// is orch's drawing of its conversation).
    pub backend: String,
    /// How orch talks to it: `"pty"` (through its terminal) or `"acp"` (the Agent Client
    /// Protocol).
    #[serde(default = "pty")]
    pub protocol: String,
    /// An ACP agent's session, once it has one (a restart continues it where the agent can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acp_session_id: Option<String>,
    /// Its own git worktree, when it was spawned with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeInfo>,
    /// The remote host whose tmux runs it (`[hosts.<name>]`); absent: this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `starting | running | idle | busy | waiting | exited | failed | stopped | lost |
    /// exiting | unreachable`.
    pub state: String,
    /// Exit code once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Process id while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The task it works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// An agent's git worktree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorktreeInfo {
    /// Where it is checked out (absent while paused).
    pub path: String,
    /// Its branch.
    pub branch: String,
    /// What it was based on (a branch, tag or commit, as named), where merges land.
    pub base: String,
    /// Files changed against the base, as last counted (`worktree.changed`).
    pub changes: u64,
    /// The checkout was removed; the branch is kept (`orch/agent/resume` brings it back).
    pub paused: bool,
}

fn pty() -> String {
    "pty".into()
}

/// A terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminal {
    /// Unique, never reused.
    pub id: String,
    /// `"pty"` or `"tmux"`.
    pub backend: String,
    /// The argv that runs in it.
    pub command: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Width in cells.
    pub cols: u16,
    /// Height in cells.
    pub rows: u16,
    /// Process id while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Whether the program runs.
    pub alive: bool,
    /// Exit code once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Title the program set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Extension: the backend's own handle for it (a tmux pane id such as `%3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

/// A session: a named group of agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Unique, never reused.
    pub id: String,
    /// Unique among active sessions.
    pub name: String,
    /// `"active"` or `"closed"`.
    pub state: String,
    /// Agents in it.
    pub agent_ids: Vec<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC, once closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
}

/// A quality gate: a command that must succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Its name (`test`, `lint`, ...).
    pub name: String,
    /// The argv.
    pub command: Vec<String>,
    /// Killed after this many seconds.
    pub timeout_s: u64,
}

/// One run of one gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    /// The gate's name.
    pub name: String,
    /// Which attempt of the task.
    pub attempt: u32,
    /// Whether it passed.
    pub ok: bool,
    /// Its exit code (`null` when killed or interrupted).
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
    /// The last lines of its output.
    pub output_tail: String,
}

/// A task: a prompt for an agent, with gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Unique, never reused.
    pub id: String,
    /// Short title.
    pub title: String,
    /// What the agent is told.
    pub prompt: String,
    /// `low | normal | high | urgent`.
    pub priority: String,
    /// The agent it is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// `pending | assigned | running | verifying | done | failed | escalated | cancelled`.
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed before escalation.
    pub max_attempts: u32,
    /// Gates run on completion.
    pub gates: Vec<Gate>,
    /// Results of every gate run.
    pub gate_results: Vec<GateResult>,
    /// The decision raised by escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// Extension: what the completer said was done (`orch/task/complete` `summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// How the agent's worktree lands once the task is done: `merge | squash | rebase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<String>,
    /// Best of N: its candidates, one task per agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// A candidate: the best-of-N task it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// Who raised a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionSource {
    /// `"agent" | "task" | "user"`.
    pub kind: String,
    /// The agent's or task's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A question for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Unique, never reused.
    pub id: String,
    /// Short question.
    pub title: String,
    /// Context.
    pub detail: String,
    /// The allowed choices.
    pub options: Vec<String>,
    /// `"pending"` or `"resolved"`.
    pub state: String,
    /// The chosen option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked.
    pub source: DecisionSource,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

/// An entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Strictly increasing, gap-free, never reused.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// Dotted kind (`agent.state`).
    pub kind: String,
    /// The id of the object it is about.
    pub subject: String,
    /// Kind-specific data.
    pub data: Value,
}

/// Cursor position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// 0-based row.
    pub row: u16,
    /// 0-based column.
    pub col: u16,
}

/// A rendered terminal screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Screen {
    /// Scrollback lines requested, then the visible lines.
    pub lines: Vec<String>,
    /// Cursor position.
    pub cursor: Cursor,
    /// Width.
    pub cols: u16,
    /// Height.
    pub rows: u16,
    /// Window title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Escape sequences that repaint the screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ansi: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Agent counts in `orch/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCounts {
    /// All agents.
    pub total: u64,
    /// Count per state (only states with agents).
    pub by_state: BTreeMap<String, u64>,
}

/// A backend in `orch/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `"pty"` or `"tmux"`.
    pub name: String,
    /// Usable now.
    pub available: bool,
    /// Version or reason.
    pub detail: String,
}

/// The store in `orch/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    /// Where it lives.
    pub path: String,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// The seq of the snapshot the daemon started from (0: none).
    #[serde(default)]
    pub snapshot_seq: u64,
    /// Events replayed after that snapshot when the daemon started.
    #[serde(default)]
    pub replayed: u64,
}

/// `orch/status` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Canonical workspace root.
    pub workspace: String,
    /// Daemon version.
    pub version: String,
    /// Daemon pid.
    pub pid: u32,
    /// Since start.
    pub uptime_ms: u64,
    /// [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Agent counts.
    pub agents: AgentCounts,
    /// Connected clients.
    pub clients: u64,
    /// Last event seq.
    pub last_seq: u64,
    /// Terminal backends.
    pub backends: Vec<BackendInfo>,
    /// The event store.
    pub store: StoreInfo,
    /// Remote hosts (`[hosts.<name>]`) and their connections.
    #[serde(default)]
    pub hosts: Vec<HostInfo>,
    /// Limits that apply to this daemon.
    #[serde(default)]
    pub limits: Limits,
}

/// A remote host in `orch/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    /// Its configured name.
    pub name: String,
    /// `connecting | connected | unreachable`.
    pub state: String,
    /// The host's tmux version, once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmux_version: Option<String>,
    /// The last round trip through the connection, while connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Why it is unreachable (the SSH or tmux error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `orch/status` `limits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Most agents alive at once (a spawn beyond it is refused with -32005).
    pub live_agents: u64,
    /// Agents alive now.
    #[serde(default)]
    pub live_agents_now: u64,
}

/// A scheduler job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Its name.
    pub name: String,
    /// Period in seconds.
    pub every_s: u64,
    /// Whether paused.
    pub paused: bool,
    /// RFC 3339 UTC of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// Whether the last run succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<bool>,
}
