//! Agents and terminals: their records, states and restart policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state of an agent (PROTOCOL.md, Agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Spawn requested, process not confirmed.
    Starting,
    /// Process runs, no output classified yet.
    Running,
    /// Quiet for `idle_after_ms`.
    Idle,
    /// Output is flowing.
    Busy,
    /// A waiting pattern matched: it asks the human something.
    Waiting,
    /// Ended with exit code 0.
    Exited,
    /// Ended with a non-zero code or a signal, or could not start.
    Failed,
    /// Stopped on request.
    Stopped,
    /// Its process did not survive a daemon restart (or its tmux server died).
    Lost,
    /// It said it is ending its session (a `SessionEnd` hook); its exit follows.
    Exiting,
    /// It runs on a remote host that cannot be reached right now; it comes back when the host
    /// does.
    Unreachable,
}

impl AgentState {
    /// Every state, in protocol order.
    pub const ALL: [AgentState; 11] = [
        AgentState::Starting,
        AgentState::Running,
        AgentState::Idle,
        AgentState::Busy,
        AgentState::Waiting,
        AgentState::Exited,
        AgentState::Failed,
        AgentState::Stopped,
        AgentState::Lost,
        AgentState::Exiting,
        AgentState::Unreachable,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Idle => "idle",
            AgentState::Busy => "busy",
            AgentState::Waiting => "waiting",
            AgentState::Exited => "exited",
            AgentState::Failed => "failed",
            AgentState::Stopped => "stopped",
            AgentState::Lost => "lost",
            AgentState::Exiting => "exiting",
            AgentState::Unreachable => "unreachable",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the process is (believed to be) alive.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            AgentState::Starting
                | AgentState::Running
                | AgentState::Idle
                | AgentState::Busy
                | AgentState::Waiting
                | AgentState::Exiting
                | AgentState::Unreachable
        )
    }

    /// The agent state machine: whether `self` may become `next`.
    ///
    /// A live agent may move between live states freely (the evidence decides) and end in any
    /// way; it starts again only after it ended (a restart of a live agent records `stopped`
    /// first). An ended agent may start again, or fail (a restart that could not start).
    pub fn can_become(self, next: AgentState) -> bool {
        use AgentState::*;
        match (self, next) {
            (a, b) if a == b => false,
            (_, Starting) => !self.is_live(),
            (a, _) if a.is_live() => true,
            (_, Failed) => true,
            _ => false,
        }
    }
}

/// Why an agent changed state: the source of the evidence, as data. Its text (`Display`) is the
/// `evidence` of `agent.state` events and always names the source first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Its process was started.
    Spawned {
        /// The process id, when the backend knows it.
        pid: Option<u32>,
    },
    /// Output arrived after quiet (an agent without busy patterns or hooks).
    Output,
    /// No output for this long.
    Quiet {
        /// The configured quiet time.
        ms: u64,
    },
    /// Something on its screen.
    Screen {
        /// What was seen: `pattern <regex>`, `busy <regex>`, `the question left the screen`.
        what: String,
    },
    /// The agent's own hook said so.
    Hook {
        /// The hook event (`PermissionRequest`).
        event: String,
        /// What it is about (`Bash`), if anything.
        detail: Option<String>,
    },
    /// Its process ended.
    Exit {
        /// The exit code; `None` when a signal killed it.
        code: Option<i32>,
    },
    /// The agent said so over the Agent Client Protocol.
    Acp {
        /// What it said: `session ready`, `prompt`, `end_turn`, `request_permission`.
        what: String,
    },
    /// A person or client asked for it (stop, restart).
    Request {
        /// What was asked, in words.
        what: String,
    },
    /// The daemon's own doing (restart policy, a lost terminal, a failed restart).
    Daemon {
        /// What happened, in words.
        what: String,
    },
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::Spawned { pid: Some(p) } => write!(f, "spawned pid {p}"),
            Evidence::Spawned { pid: None } => write!(f, "spawned"),
            Evidence::Output => write!(f, "screen: output"),
            Evidence::Quiet { ms } => write!(f, "quiet {ms}ms"),
            Evidence::Screen { what } => write!(f, "screen: {what}"),
            Evidence::Hook {
                event,
                detail: Some(d),
            } => write!(f, "hook: {event} {d}"),
            Evidence::Hook {
                event,
                detail: None,
            } => write!(f, "hook: {event}"),
            Evidence::Acp { what } => write!(f, "acp: {what}"),
            Evidence::Exit { code: Some(c) } => write!(f, "exit {c}"),
            Evidence::Exit { code: None } => write!(f, "killed by a signal"),
            Evidence::Request { what } | Evidence::Daemon { what } => f.write_str(what),
        }
    }
}

/// When to restart an agent whose process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    Never,
    /// When it failed (non-zero exit, signal, lost).
    OnFailure,
    /// Whenever it ended, unless stopped on request.
    Always,
}

impl RestartPolicy {
    /// Whether an agent that ended in `state` should be restarted.
    pub fn wants_restart(self, state: AgentState) -> bool {
        match (self, state) {
            (_, AgentState::Stopped) => false,
            (RestartPolicy::Always, s) => !s.is_live(),
            (RestartPolicy::OnFailure, AgentState::Failed | AgentState::Lost) => true,
            _ => false,
        }
    }

    /// Backoff before restart number `attempt` (1-based): 500 ms doubling, capped at 30 s.
    pub fn backoff_ms(attempt: u32) -> u64 {
        (500u64 << attempt.saturating_sub(1).min(16)).min(30_000)
    }
}

/// How an agent's state is read from its screen; copied from its kind at spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Quiet this long while running means idle.
    pub idle_after_ms: u64,
    /// Regexes on the visible screen meaning it waits for the human.
    pub waiting_patterns: Vec<String>,
    /// Decision options when waiting, and the keys each one types.
    pub waiting_options: Vec<(String, String)>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Restarts allowed before giving up.
    pub max_restarts: u32,
    /// Regexes on the screen meaning the agent takes input (its prompt is drawn); while set and
    /// none matches, it is never called idle.
    pub ready_patterns: Vec<String>,
    /// Regexes on the screen meaning it works; while set, output alone is not `busy` (spinners
    /// and redraws are output too).
    pub busy_patterns: Vec<String>,
    /// The hooks through which the agent reports what it does, if any.
    pub hooks: Option<HookDialect>,
    /// Keys that interrupt its current turn.
    pub interrupt_keys: String,
    /// Lines above the cursor (or a footer below it) that screen patterns look at: a question
    /// answered long ago is out of sight even while it stays on the screen.
    pub look_back: usize,
    /// A menu choice picked by its number needs Enter to take effect.
    pub menu_enter: bool,
    /// How orch talks to it: through its terminal, or over the Agent Client Protocol.
    pub protocol: AgentProtocol,
    /// ACP: the session mode to switch to once the session exists (`default`, `plan`, ...).
    pub acp_mode: Option<String>,
    /// ACP: the `authenticate` method to use before creating the session.
    pub acp_auth_method: Option<String>,
}

/// How orch talks to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentProtocol {
    /// A program in a terminal (the `pty` or `tmux` backend): typed into, its screen read.
    #[default]
    Pty,
    /// The Agent Client Protocol on the program's stdio: prompts, tool calls and permission
    /// requests as messages; the conversation is drawn on a screen of its own.
    Acp,
}

impl AgentProtocol {
    /// Its name in `orch.toml` and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentProtocol::Pty => "pty",
            AgentProtocol::Acp => "acp",
        }
    }
}

/// An agent's git worktree as the daemon records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeRecord {
    /// Where it is checked out.
    pub path: String,
    /// Its branch.
    pub branch: String,
    /// What it was based on, as named (where merges land).
    pub base: String,
    /// The commit the base was when the worktree was created.
    pub base_commit: String,
    /// Files changed against the base, as last counted.
    pub changes: u64,
    /// The checkout was removed; the branch is kept.
    pub paused: bool,
}

/// One step of an agent's plan (`agent.plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    /// What the step is.
    pub content: String,
    /// `high`, `medium` or `low`, as the agent says.
    pub priority: String,
    /// `pending`, `in_progress` or `completed`, as the agent says.
    pub status: String,
}

fn default_look_back() -> usize {
    3
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            idle_after_ms: 1500,
            waiting_patterns: Vec::new(),
            waiting_options: Vec::new(),
            restart: RestartPolicy::Never,
            max_restarts: 5,
            ready_patterns: Vec::new(),
            busy_patterns: Vec::new(),
            hooks: None,
            interrupt_keys: default_interrupt_keys(),
            look_back: default_look_back(),
            menu_enter: false,
            protocol: AgentProtocol::Pty,
            acp_mode: None,
            acp_auth_method: None,
        }
    }
}

fn default_interrupt_keys() -> String {
    "\x1b".into()
}

/// Whose command hooks an agent speaks (`orch hook` turns them into states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookDialect {
    /// Claude Code: settings passed with `--settings <file>`.
    Claude,
    /// Codex: `hooks.json` in its home, `[features] hooks = true`.
    Codex,
}

/// An agent as the daemon records it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// `a-<n>`.
    pub id: String,
    /// Unique among agents.
    pub name: String,
    /// Kind name or `command`.
    pub kind: String,
    /// The argv.
    pub command: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Extra environment, kept for restarts; never sent on the wire or logged.
    pub env: BTreeMap<String, String>,
    /// Session.
    pub session_id: String,
    /// The current terminal (a new one per restart).
    pub terminal_id: String,
    /// `pty`, `tmux` or `acp`.
    pub backend: String,
    /// The configured host (`[hosts.<name>]`) whose tmux runs it; `None`: this machine.
    pub host: Option<String>,
    /// The ACP session of an ACP agent, once it has one: a restart continues it.
    pub acp_session: Option<String>,
    /// Its own git worktree, if it was spawned with one.
    pub worktree: Option<WorktreeRecord>,
    /// Current state.
    pub state: AgentState,
    /// Exit code once ended.
    pub exit_code: Option<i32>,
    /// Pid while running.
    pub pid: Option<u32>,
    /// Current task.
    pub task_id: Option<String>,
    /// Restarts so far, automatic and manual (the automatic-restart limit counts separately).
    pub restarts: u32,
    /// How its state is watched.
    pub watch: Watch,
    /// Terminal size.
    pub cols: u16,
    /// Terminal size.
    pub rows: u16,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A terminal as the daemon records it.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalRecord {
    /// `t-<n>`.
    pub id: String,
    /// `pty`, `tmux` or `acp`.
    pub backend: String,
    /// The argv.
    pub command: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Size.
    pub cols: u16,
    /// Size.
    pub rows: u16,
    /// Pid while running.
    pub pid: Option<u32>,
    /// Whether the program runs.
    pub alive: bool,
    /// Exit code once ended.
    pub exit_code: Option<i32>,
    /// The agent in it, if any.
    pub agent_id: Option<String>,
    /// Backend handle that survives the daemon (tmux pane id).
    pub handle: Option<String>,
    /// Whether it was closed (kept for history, hidden from lists).
    pub closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy() {
        use AgentState::*;
        assert!(!RestartPolicy::Never.wants_restart(Failed));
        assert!(RestartPolicy::OnFailure.wants_restart(Failed));
        assert!(RestartPolicy::OnFailure.wants_restart(Lost));
        assert!(!RestartPolicy::OnFailure.wants_restart(Exited));
        assert!(RestartPolicy::Always.wants_restart(Exited));
        assert!(!RestartPolicy::Always.wants_restart(Stopped));
        let delays: Vec<u64> = (1..=8).map(RestartPolicy::backoff_ms).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
