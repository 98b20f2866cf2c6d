//! Agents' own hooks: what a hook event (Claude Code's or Codex's command hooks, handed over by
//! `orch hook`) says about the agent's state.
//!
//! Both CLIs name their events the same way. The mapping:
//!
//! | event | state |
//! |---|---|
//! | `SessionStart` | idle: it is ready for a prompt |
//! | `UserPromptSubmit`, `PreToolUse`, `PostToolUse`, `PostToolUseFailure` | busy |
//! | `PermissionRequest`; `Notification` of type `permission_prompt` | waiting: a question |
//! | `Stop` | idle: its turn ended |
//! | `SessionEnd` (but for `/clear`, which starts a new session in the same process) | exiting |
//! | anything else (`SubagentStop`, `PreCompact`, other notifications) | no change |

use super::agent::{AgentState, Evidence};

/// The events orch asks an agent's hooks to report.
pub const EVENTS: [&str; 9] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "Stop",
    "SessionEnd",
];

/// One hook event, as far as orch reads it (decoded from the hook's JSON at the wire's edge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookEvent {
    /// `hook_event_name`.
    pub name: String,
    /// `tool_name`, for tool events.
    pub tool: Option<String>,
    /// `tool_input` in words (a command, a file path), bounded.
    pub tool_input: Option<String>,
    /// `source` of `SessionStart`, `reason` of `SessionEnd`.
    pub reason: Option<String>,
    /// `notification_type` of `Notification`.
    pub notification_type: Option<String>,
}

/// What a hook event means for the agent's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookReading {
    /// The agent is in this state now.
    State(AgentState),
    /// It asks a person for permission: waiting, with a question.
    Permission,
    /// Nothing orch acts on.
    Nothing,
}

/// Read a hook event: its meaning and the evidence to record (`hook: PermissionRequest Bash`).
pub fn read(e: &HookEvent) -> (HookReading, Evidence) {
    let reading = match e.name.as_str() {
        "SessionStart" => HookReading::State(AgentState::Idle),
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "PostToolUseFailure" => {
            HookReading::State(AgentState::Busy)
        }
        "PermissionRequest" => HookReading::Permission,
        "Notification" if e.notification_type.as_deref() == Some("permission_prompt") => {
            HookReading::Permission
        }
        "Stop" => HookReading::State(AgentState::Idle),
        "SessionEnd" if e.reason.as_deref() == Some("clear") => HookReading::Nothing,
        "SessionEnd" => HookReading::State(AgentState::Exiting),
        _ => HookReading::Nothing,
    };
    let detail = match e.name.as_str() {
        "SessionStart" | "SessionEnd" => e.reason.clone(),
        "Notification" => e.notification_type.clone(),
        _ => e.tool.clone(),
    };
    (
        reading,
        Evidence::Hook {
            event: e.name.clone(),
            detail,
        },
    )
}

/// What a permission request is about, for its decision's detail: the tool and its input.
pub fn about(e: &HookEvent) -> Option<String> {
    match (&e.tool, &e.tool_input) {
        (Some(t), Some(i)) => Some(format!("{t}: {i}")),
        (Some(t), None) => Some(t.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_its_meaning_and_evidence() {
        let ev = |name: &str, tool: Option<&str>, reason: Option<&str>, nt: Option<&str>| {
            let e = HookEvent {
                name: name.into(),
                tool: tool.map(Into::into),
                tool_input: None,
                reason: reason.map(Into::into),
                notification_type: nt.map(Into::into),
            };
            let (r, evidence) = read(&e);
            format!("{name}: {r:?} / {evidence}")
        };
        let got = [
            ev("SessionStart", None, Some("startup"), None),
            ev("UserPromptSubmit", None, None, None),
            ev("PreToolUse", Some("Bash"), None, None),
            ev("PermissionRequest", Some("Bash"), None, None),
            ev("Notification", None, None, Some("permission_prompt")),
            ev("Notification", None, None, Some("idle_prompt")),
            ev("PostToolUse", Some("Bash"), None, None),
            ev("Stop", None, None, None),
            ev("SessionEnd", None, Some("clear"), None),
            ev("SessionEnd", None, Some("prompt_input_exit"), None),
            ev("SubagentStop", None, None, None),
        ]
        .join("\n");
        expect_test::expect![[r#"
            SessionStart: State(Idle) / hook: SessionStart startup
            UserPromptSubmit: State(Busy) / hook: UserPromptSubmit
            PreToolUse: State(Busy) / hook: PreToolUse Bash
            PermissionRequest: Permission / hook: PermissionRequest Bash
            Notification: Permission / hook: Notification permission_prompt
            Notification: Nothing / hook: Notification idle_prompt
            PostToolUse: State(Busy) / hook: PostToolUse Bash
            Stop: State(Idle) / hook: Stop
            SessionEnd: Nothing / hook: SessionEnd clear
            SessionEnd: State(Exiting) / hook: SessionEnd prompt_input_exit
            SubagentStop: Nothing / hook: SubagentStop"#]]
        .assert_eq(&got);
    }
}
