//! Tasks with gates, decisions, and sessions: records and the task state machine.

use serde::{Deserialize, Serialize};

/// The state of a task (PROTOCOL.md, Task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting in the queue for an agent.
    Pending,
    /// Has an agent; the prompt is not typed yet.
    Assigned,
    /// The agent works on it.
    Running,
    /// Gates run.
    Verifying,
    /// Gates passed (or accepted by a person).
    Done,
    /// Could not be carried out (its agent ended without completing it).
    Failed,
    /// Gates kept failing; a decision asks a person.
    Escalated,
    /// Cancelled.
    Cancelled,
}

impl TaskState {
    /// Every state, in protocol order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Verifying,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Escalated,
        TaskState::Cancelled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Running => "running",
            TaskState::Verifying => "verifying",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Escalated => "escalated",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No further transitions (but a decision may reopen an escalated or failed task).
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Done | TaskState::Cancelled)
    }

    /// Whether moving to `next` is allowed: the task state machine, checked on every change.
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        match (self, next) {
            (Done | Cancelled, _) => false,
            (_, Cancelled) => true,
            // A person may say work is done that no agent was given (or before dispatch).
            (Pending, Assigned | Verifying) => true,
            (Assigned, Running | Verifying | Failed) => true,
            // An agent restarted by hand gets its running task again.
            (Running, Verifying | Failed | Assigned) => true,
            // A failed gate sends the task back to its agent (or to the queue without one).
            (Verifying, Done | Assigned | Pending | Escalated) => true,
            // Decisions: retry, reassign (or retry without an agent), accept.
            (Escalated, Assigned | Pending | Done) => true,
            (Failed, Assigned) => true,
            _ => false,
        }
    }
}

/// Task priority.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Low.
    Low,
    /// Normal (default).
    #[default]
    Normal,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

impl Priority {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A gate as a task holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSpec {
    /// Its name.
    pub name: String,
    /// The argv.
    pub command: Vec<String>,
    /// Timeout in seconds.
    pub timeout_s: u64,
}

/// One gate run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRun {
    /// The gate's name.
    pub name: String,
    /// Which attempt.
    pub attempt: u32,
    /// Passed.
    pub ok: bool,
    /// Exit code; `None` when killed at the timeout or interrupted.
    pub exit_code: Option<i32>,
    /// Duration.
    pub duration_ms: u64,
    /// Last lines of output (or why it has none).
    pub output_tail: String,
}

/// A task as the daemon records it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// `k-<n>`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Prompt.
    pub prompt: String,
    /// Priority.
    pub priority: Priority,
    /// Assigned agent.
    pub agent_id: Option<String>,
    /// State.
    pub state: TaskState,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Gates.
    pub gates: Vec<GateSpec>,
    /// Every gate run.
    pub gate_results: Vec<GateRun>,
    /// Escalation decision.
    pub decision_id: Option<String>,
    /// What the completer said was done.
    pub summary: Option<String>,
    /// The gate running now (name, attempt): an interrupted run is recorded after a restart.
    pub running_gate: Option<(String, u32)>,
    /// The running gate's process group.
    pub running_gate_pgid: Option<u32>,
    /// How its agent's worktree lands once it is done (`merge`, `squash`, `rebase`).
    pub merge: Option<String>,
    /// A best-of-N task: its candidates, one task per agent (derived: each candidate's
    /// `task.created` names this task as its group).
    pub candidates: Vec<String>,
    /// A candidate: the best-of-N task it is one of.
    pub group: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// What a decision is about, so resolving it can act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionSource {
    /// An agent waits for the human; options map to keys typed into it.
    Agent {
        /// The agent.
        id: String,
        /// Option -> keys.
        keys: Vec<(String, String)>,
    },
    /// An ACP agent asks permission for a tool call; options map to the agent's `optionId`s.
    Permission {
        /// The agent.
        id: String,
        /// The request, as its agent's process numbers them.
        request: u64,
        /// Option -> the agent's `optionId`.
        options: Vec<(String, String)>,
    },
    /// Discard an agent's worktree although its branch has work that was never merged.
    Discard {
        /// The agent.
        id: String,
    },
    /// The candidates of best-of-N task `task` are done: a person picks the one that lands.
    BestOf {
        /// The best-of-N task.
        task: String,
    },
    /// A task escalated.
    Task {
        /// The task.
        id: String,
    },
    /// Asked by a person or script.
    User,
}

/// A decision as the daemon records it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// `d-<n>`.
    pub id: String,
    /// Question.
    pub title: String,
    /// Context.
    pub detail: String,
    /// Choices.
    pub options: Vec<String>,
    /// Resolved yet.
    pub resolved: bool,
    /// The choice.
    pub choice: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Who asked.
    pub source: DecisionSource,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub resolved_at: Option<String>,
}

/// A session as the daemon records it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// `s-<n>`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Closed yet.
    pub closed: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub closed_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use TaskState::*;
        assert!(Pending.can_become(Assigned));
        assert!(Running.can_become(Verifying));
        assert!(Verifying.can_become(Assigned)); // a failed gate sends it back
        assert!(Escalated.can_become(Assigned)); // retry
        assert!(!Done.can_become(Running));
        assert!(!Cancelled.can_become(Cancelled));
        assert!(!Pending.can_become(Done));
    }
}
