//! The ACP payloads orch reads, as typed values, parsed leniently: a missing field gets its
//! default, an unknown update kind or status is kept as a name or ignored, never an error. Only
//! what orch uses is read; everything else in a message is left alone.
//!
//! Pure: JSON values in, typed values out. Knows nothing of processes, screens or the runtime.

use serde_json::Value;

/// Who the agent says it is (`initialize`'s `agentInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInfo {
    /// Its programmatic name, e.g. `gemini-cli`.
    pub name: String,
    /// Its name for people, when it gives one.
    pub title: Option<String>,
    /// Its version, when it gives one.
    pub version: Option<String>,
}

/// What the agent said it can do, of what orch uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCapabilities {
    /// `session/load` (replays the conversation as updates).
    pub load_session: bool,
    /// `session/resume` (`sessionCapabilities.resume`: continues without a replay).
    pub resume_session: bool,
}

/// A way to authenticate that the agent offers (`authMethods[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthMethod {
    /// What `authenticate` takes as `methodId`.
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// Whether it works without a person at a browser: an API key or a token from the
    /// environment, as far as the agent's description tells.
    pub unattended: bool,
}

/// `initialize`'s result, of what orch uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Initialized {
    /// The protocol version the agent chose.
    pub protocol_version: u64,
    pub agent: AgentInfo,
    pub capabilities: AgentCapabilities,
    pub auth_methods: Vec<AuthMethod>,
}

/// A session mode the agent offers (`modes.availableModes[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionMode {
    pub id: String,
    pub name: String,
}

/// The modes of a new or loaded session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modes {
    pub available: Vec<SessionMode>,
    pub current: Option<String>,
}

/// Why a prompt turn ended (`session/prompt`'s `stopReason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    MaxTurnRequests,
    Refusal,
    Cancelled,
    /// A reason this orch does not know, by name.
    Other(String),
}

impl StopReason {
    pub fn parse(name: &str) -> Self {
        match name {
            "end_turn" => Self::EndTurn,
            "max_tokens" => Self::MaxTokens,
            "max_turn_requests" => Self::MaxTurnRequests,
            "refusal" => Self::Refusal,
            "cancelled" => Self::Cancelled,
            other => Self::Other(other.to_string()),
        }
    }

    /// The name as ACP spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::EndTurn => "end_turn",
            Self::MaxTokens => "max_tokens",
            Self::MaxTurnRequests => "max_turn_requests",
            Self::Refusal => "refusal",
            Self::Cancelled => "cancelled",
            Self::Other(name) => name,
        }
    }
}

/// Where a tool call is (`pending`, `in_progress`, `completed`, `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    Pending,
    InProgress,
    Completed,
    Failed,
}

impl ToolStatus {
    fn parse(value: &Value) -> Option<Self> {
        Some(match value.as_str()? {
            "pending" => Self::Pending,
            "in_progress" => Self::InProgress,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the call is over.
    pub fn finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// The name as ACP spells it, with a space for people.
    pub fn words(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// Something a tool call produced or shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolContent {
    /// Text (or the text of a content block; other blocks as a short placeholder).
    Text(String),
    /// A change to a file.
    Diff {
        path: String,
        old_text: Option<String>,
        new_text: String,
    },
    /// Output of a terminal the agent created on the client (orch offers none).
    Terminal { terminal_id: String },
}

/// A tool call as the agent reported it first (`tool_call`); also what an update builds on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub title: String,
    /// `read`, `edit`, `delete`, `move`, `search`, `execute`, `think`, `fetch`, `other`, ...
    pub kind: String,
    pub status: Option<ToolStatus>,
    pub content: Vec<ToolContent>,
    /// Files it touches.
    pub locations: Vec<String>,
    /// The tool's input as the agent gave it.
    pub raw_input: Option<Value>,
}

/// A change to a tool call (`tool_call_update`): only the fields present change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallUpdate {
    pub id: String,
    pub title: Option<String>,
    pub kind: Option<String>,
    pub status: Option<ToolStatus>,
    pub content: Option<Vec<ToolContent>>,
    pub locations: Option<Vec<String>>,
    pub raw_input: Option<Value>,
    pub raw_output: Option<Value>,
}

/// One step of the agent's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    pub content: String,
    /// `high`, `medium` or `low` as the agent says.
    pub priority: String,
    /// `pending`, `in_progress` or `completed` as the agent says.
    pub status: String,
}

/// A command the agent accepts as a prompt starting with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableCommand {
    pub name: String,
    pub description: String,
}

/// One `session/update`, typed. Unknown kinds are kept by name only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionUpdate {
    /// Part of a message of the person's (seen when a loaded session replays its history).
    UserMessage {
        text: String,
        message_id: Option<String>,
    },
    /// Part of the agent's answer: chunks of one message are to be appended.
    AgentMessage {
        text: String,
        message_id: Option<String>,
    },
    /// Part of the agent's reasoning.
    Thought {
        text: String,
        message_id: Option<String>,
    },
    ToolCall(ToolCall),
    ToolCallUpdate(ToolCallUpdate),
    /// The whole plan, replacing any earlier one.
    Plan(Vec<PlanEntry>),
    AvailableCommands(Vec<AvailableCommand>),
    CurrentMode {
        mode_id: String,
    },
    /// The session's title (and other metadata) changed.
    SessionInfo {
        title: Option<String>,
    },
    /// A kind orch does not render (`usage_update`, `config_option_update`, newer ones).
    Other {
        kind: String,
    },
}

/// An option of a permission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionOption {
    /// What the answer names (`optionId`).
    pub id: String,
    /// Its label for people.
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once`, `reject_always` (or a newer kind).
    pub kind: String,
}

/// `session/request_permission`'s params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionAsk {
    /// The tool call it is about (its id, title, kind and input, as far as given).
    pub tool_call: ToolCall,
    pub options: Vec<PermissionOption>,
}

/// The text of a content block: its text, or a short placeholder for other kinds.
pub fn content_text(block: &Value) -> String {
    match block.get("type").and_then(Value::as_str) {
        Some("text") | None => str_field(block, "text"),
        Some("image") => "[image]".to_string(),
        Some("audio") => "[audio]".to_string(),
        Some("resource_link") => format!("[{}]", str_field(block, "uri")),
        Some("resource") => {
            let resource = block.get("resource").unwrap_or(&Value::Null);
            match resource.get("text").and_then(Value::as_str) {
                Some(text) => text.to_string(),
                None => format!("[{}]", str_field(resource, "uri")),
            }
        }
        Some(other) => format!("[{other}]"),
    }
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn opt_str(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn parse_initialized(result: &Value) -> Initialized {
    let info = result.get("agentInfo").unwrap_or(&Value::Null);
    let caps = result.get("agentCapabilities").unwrap_or(&Value::Null);
    let resume = caps
        .get("sessionCapabilities")
        .and_then(|s| s.get("resume"))
        .is_some_and(|r| !r.is_null() && r != &Value::Bool(false));
    Initialized {
        protocol_version: result
            .get("protocolVersion")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        agent: AgentInfo {
            name: str_field(info, "name"),
            title: opt_str(info, "title"),
            version: opt_str(info, "version"),
        },
        capabilities: AgentCapabilities {
            load_session: caps.get("loadSession").and_then(Value::as_bool) == Some(true),
            resume_session: resume,
        },
        auth_methods: array(result, "authMethods")
            .iter()
            .map(parse_auth_method)
            .collect(),
    }
}

fn parse_auth_method(method: &Value) -> AuthMethod {
    let id = str_field(method, "id");
    let name = str_field(method, "name");
    let meta = method.get("_meta");
    let kind = method.get("type").and_then(Value::as_str);
    let words = format!("{id} {name}").to_ascii_lowercase();
    // Newer ACP names the kind (`env_var`: a key from the environment; `terminal`: an
    // interactive login); older agents say it in `_meta` or only in the id.
    let unattended = kind == Some("env_var")
        || meta.is_some_and(|m| m.get("api-key").is_some())
        || ["api-key", "api_key", "apikey", "api key", "token"]
            .iter()
            .any(|w| words.contains(w));
    AuthMethod {
        id,
        name,
        unattended: unattended && kind != Some("terminal"),
    }
}

/// The modes in a `session/new` or `session/load` result.
pub fn parse_modes(result: &Value) -> Modes {
    let modes = result.get("modes").unwrap_or(&Value::Null);
    Modes {
        available: array(modes, "availableModes")
            .iter()
            .map(|m| SessionMode {
                id: str_field(m, "id"),
                name: str_field(m, "name"),
            })
            .collect(),
        current: opt_str(modes, "currentModeId"),
    }
}

fn parse_tool_content(items: &[Value]) -> Vec<ToolContent> {
    items
        .iter()
        .filter_map(|item| match item.get("type").and_then(Value::as_str) {
            Some("content") => Some(ToolContent::Text(content_text(
                item.get("content").unwrap_or(&Value::Null),
            ))),
            Some("diff") => Some(ToolContent::Diff {
                path: str_field(item, "path"),
                old_text: opt_str(item, "oldText"),
                new_text: str_field(item, "newText"),
            }),
            Some("terminal") => Some(ToolContent::Terminal {
                terminal_id: str_field(item, "terminalId"),
            }),
            _ => None,
        })
        .collect()
}

fn parse_locations(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|l| l.get("path").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// A tool call from `tool_call` or from a permission request's `toolCall`.
pub fn parse_tool_call(value: &Value) -> ToolCall {
    ToolCall {
        id: str_field(value, "toolCallId"),
        title: str_field(value, "title"),
        kind: opt_str(value, "kind").unwrap_or_else(|| "other".to_string()),
        status: value.get("status").and_then(ToolStatus::parse),
        content: parse_tool_content(array(value, "content")),
        locations: parse_locations(array(value, "locations")),
        raw_input: value.get("rawInput").filter(|v| !v.is_null()).cloned(),
    }
}

fn parse_tool_call_update(value: &Value) -> ToolCallUpdate {
    ToolCallUpdate {
        id: str_field(value, "toolCallId"),
        title: opt_str(value, "title"),
        kind: opt_str(value, "kind"),
        status: value.get("status").and_then(ToolStatus::parse),
        content: value
            .get("content")
            .and_then(Value::as_array)
            .map(|items| parse_tool_content(items)),
        locations: value
            .get("locations")
            .and_then(Value::as_array)
            .map(|items| parse_locations(items)),
        raw_input: value.get("rawInput").filter(|v| !v.is_null()).cloned(),
        raw_output: value.get("rawOutput").filter(|v| !v.is_null()).cloned(),
    }
}

/// A `session/update` notification's params. `Err` only when there is no update object to
/// read at all.
pub fn parse_update(params: &Value) -> Result<SessionUpdate, String> {
    let update = params
        .get("update")
        .filter(|u| u.is_object())
        .ok_or("session/update without an update object")?;
    let kind = update
        .get("sessionUpdate")
        .and_then(Value::as_str)
        .ok_or("session/update without a sessionUpdate kind")?;
    let chunk = || {
        (
            content_text(update.get("content").unwrap_or(&Value::Null)),
            opt_str(update, "messageId"),
        )
    };
    Ok(match kind {
        "user_message_chunk" => {
            let (text, message_id) = chunk();
            SessionUpdate::UserMessage { text, message_id }
        }
        "agent_message_chunk" => {
            let (text, message_id) = chunk();
            SessionUpdate::AgentMessage { text, message_id }
        }
        "agent_thought_chunk" => {
            let (text, message_id) = chunk();
            SessionUpdate::Thought { text, message_id }
        }
        "tool_call" => SessionUpdate::ToolCall(parse_tool_call(update)),
        "tool_call_update" => SessionUpdate::ToolCallUpdate(parse_tool_call_update(update)),
        "plan" => SessionUpdate::Plan(
            array(update, "entries")
                .iter()
                .map(|e| PlanEntry {
                    content: str_field(e, "content"),
                    priority: str_field(e, "priority"),
                    status: str_field(e, "status"),
                })
                .collect(),
        ),
        "available_commands_update" => SessionUpdate::AvailableCommands(
            array(update, "availableCommands")
                .iter()
                .map(|c| AvailableCommand {
                    name: str_field(c, "name"),
                    description: str_field(c, "description"),
                })
                .collect(),
        ),
        "current_mode_update" => SessionUpdate::CurrentMode {
            mode_id: opt_str(update, "currentModeId")
                .or_else(|| opt_str(update, "modeId"))
                .unwrap_or_default(),
        },
        "session_info_update" => SessionUpdate::SessionInfo {
            title: opt_str(update, "title"),
        },
        other => SessionUpdate::Other {
            kind: other.to_string(),
        },
    })
}

/// A `session/request_permission`'s params.
pub fn parse_permission(params: &Value) -> Result<PermissionAsk, String> {
    let options: Vec<PermissionOption> = array(params, "options")
        .iter()
        .map(|o| PermissionOption {
            id: str_field(o, "optionId"),
            name: str_field(o, "name"),
            kind: str_field(o, "kind"),
        })
        .filter(|o| !o.id.is_empty())
        .collect();
    if options.is_empty() {
        return Err("a permission request without options".to_string());
    }
    Ok(PermissionAsk {
        tool_call: parse_tool_call(params.get("toolCall").unwrap_or(&Value::Null)),
        options,
    })
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use serde_json::json;

    use super::*;

    fn check_update(update: Value, expect: Expect) {
        let parsed = parse_update(&json!({"sessionId": "s", "update": update}));
        expect.assert_eq(&format!("{parsed:#?}"));
    }

    #[test]
    fn initialize_results_of_the_real_agents() {
        // As gemini 0.61.0 answers.
        let gemini = parse_initialized(&json!({"protocolVersion": 1, "authMethods": [
            {"id": "oauth-personal", "name": "Log in with Google", "description": "Log in with your Google account"},
            {"id": "gemini-api-key", "name": "Gemini API key", "_meta": {"api-key": {"provider": "google"}}},
            {"id": "vertex-ai", "name": "Vertex AI", "description": "Use an API key with Vertex AI GenAI API"},
            {"id": "gateway", "name": "AI API Gateway", "_meta": {"gateway": {"protocol": "google"}}}],
            "agentInfo": {"name": "gemini-cli", "title": "Gemini CLI", "version": "0.61.0"},
            "agentCapabilities": {"loadSession": true, "promptCapabilities": {"image": true}}}));
        expect![[r#"
            Initialized {
                protocol_version: 1,
                agent: AgentInfo {
                    name: "gemini-cli",
                    title: Some(
                        "Gemini CLI",
                    ),
                    version: Some(
                        "0.61.0",
                    ),
                },
                capabilities: AgentCapabilities {
                    load_session: true,
                    resume_session: false,
                },
                auth_methods: [
                    AuthMethod {
                        id: "oauth-personal",
                        name: "Log in with Google",
                        unattended: false,
                    },
                    AuthMethod {
                        id: "gemini-api-key",
                        name: "Gemini API key",
                        unattended: true,
                    },
                    AuthMethod {
                        id: "vertex-ai",
                        name: "Vertex AI",
                        unattended: false,
                    },
                    AuthMethod {
                        id: "gateway",
                        name: "AI API Gateway",
                        unattended: false,
                    },
                ],
            }"#]]
        .assert_eq(&format!("{gemini:#?}"));
        // As claude-agent-acp 0.101.0 answers (abridged).
        let claude = parse_initialized(&json!({"protocolVersion": 1,
            "agentCapabilities": {"loadSession": true, "sessionCapabilities": {"close": {}, "resume": {}}},
            "agentInfo": {"name": "@agentclientprotocol/claude-agent-acp", "version": "0.101.0"},
            "authMethods": []}));
        assert_eq!(
            claude.capabilities,
            AgentCapabilities {
                load_session: true,
                resume_session: true
            }
        );
        assert!(claude.auth_methods.is_empty());
        let newer = parse_initialized(&json!({"authMethods": [
            {"id": "login", "name": "Log in", "type": "terminal"},
            {"id": "key", "name": "Key", "type": "env_var"}]}));
        assert_eq!(
            newer
                .auth_methods
                .iter()
                .map(|m| m.unattended)
                .collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(parse_initialized(&json!("junk")), Initialized::default());
    }

    #[test]
    fn message_chunks() {
        check_update(
            json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Hello fr"}, "messageId": "m1"}),
            expect![[r#"
                Ok(
                    AgentMessage {
                        text: "Hello fr",
                        message_id: Some(
                            "m1",
                        ),
                    },
                )"#]],
        );
        check_update(
            json!({"sessionUpdate": "agent_thought_chunk", "content": {"type": "image", "data": "..."}}),
            expect![[r#"
                Ok(
                    Thought {
                        text: "[image]",
                        message_id: None,
                    },
                )"#]],
        );
        check_update(
            json!({"sessionUpdate": "user_message_chunk", "content": {"type": "resource", "resource": {"uri": "file:///a", "text": "body"}}}),
            expect![[r#"
                Ok(
                    UserMessage {
                        text: "body",
                        message_id: None,
                    },
                )"#]],
        );
    }

    #[test]
    fn tool_calls() {
        // claude-agent-acp: a call, then its input, then its end.
        check_update(
            json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_1", "sessionUpdate": "tool_call",
                   "rawInput": {}, "status": "pending", "title": "Terminal", "kind": "execute", "content": []}),
            expect![[r#"
                Ok(
                    ToolCall(
                        ToolCall {
                            id: "toolu_1",
                            title: "Terminal",
                            kind: "execute",
                            status: Some(
                                Pending,
                            ),
                            content: [],
                            locations: [],
                            raw_input: Some(
                                Object {},
                            ),
                        },
                    ),
                )"#]],
        );
        check_update(
            json!({"toolCallId": "toolu_1", "sessionUpdate": "tool_call_update", "status": "failed",
                   "content": [{"type": "content", "content": {"type": "text", "text": "rejected"}},
                               {"type": "diff", "path": "/w/a.rs", "oldText": null, "newText": "x"},
                               {"type": "future"}],
                   "locations": [{"path": "/w/a.rs", "line": 3}]}),
            expect![[r#"
                Ok(
                    ToolCallUpdate(
                        ToolCallUpdate {
                            id: "toolu_1",
                            title: None,
                            kind: None,
                            status: Some(
                                Failed,
                            ),
                            content: Some(
                                [
                                    Text(
                                        "rejected",
                                    ),
                                    Diff {
                                        path: "/w/a.rs",
                                        old_text: None,
                                        new_text: "x",
                                    },
                                ],
                            ),
                            locations: Some(
                                [
                                    "/w/a.rs",
                                ],
                            ),
                            raw_input: None,
                            raw_output: None,
                        },
                    ),
                )"#]],
        );
        // An unknown status is no status.
        let Ok(SessionUpdate::ToolCallUpdate(update)) = parse_update(
            &json!({"update": {"sessionUpdate": "tool_call_update", "toolCallId": "t", "status": "paused"}}),
        ) else {
            panic!()
        };
        assert_eq!(update.status, None);
    }

    #[test]
    fn other_kinds() {
        check_update(
            json!({"sessionUpdate": "plan", "entries": [
                {"content": "Read the code", "priority": "high", "status": "completed"},
                {"content": "Fix it", "priority": "medium", "status": "in_progress"}]}),
            expect![[r#"
                Ok(
                    Plan(
                        [
                            PlanEntry {
                                content: "Read the code",
                                priority: "high",
                                status: "completed",
                            },
                            PlanEntry {
                                content: "Fix it",
                                priority: "medium",
                                status: "in_progress",
                            },
                        ],
                    ),
                )"#]],
        );
        check_update(
            json!({"sessionUpdate": "available_commands_update", "availableCommands": [{"name": "init", "description": "Analyzes the project", "input": null}]}),
            expect![[r#"
                Ok(
                    AvailableCommands(
                        [
                            AvailableCommand {
                                name: "init",
                                description: "Analyzes the project",
                            },
                        ],
                    ),
                )"#]],
        );
        check_update(
            json!({"sessionUpdate": "current_mode_update", "currentModeId": "plan"}),
            expect![[r#"
                Ok(
                    CurrentMode {
                        mode_id: "plan",
                    },
                )"#]],
        );
        check_update(
            json!({"sessionUpdate": "session_info_update", "title": "Test session", "updatedAt": "2026-11-28T08:10:56.873Z"}),
            expect![[r#"
                Ok(
                    SessionInfo {
                        title: Some(
                            "Test session",
                        ),
                    },
                )"#]],
        );
        check_update(
            json!({"sessionUpdate": "usage_update", "used": 11, "size": 1000000}),
            expect![[r#"
                Ok(
                    Other {
                        kind: "usage_update",
                    },
                )"#]],
        );
        check_update(
            json!("not an object"),
            expect![[r#"
                Err(
                    "session/update without an update object",
                )"#]],
        );
        check_update(
            json!({"content": {}}),
            expect![[r#"
                Err(
                    "session/update without a sessionUpdate kind",
                )"#]],
        );
    }

    #[test]
    fn permission_requests_of_the_real_agents() {
        // As gemini 0.61.0 asks: no tool_call update came before it.
        let gemini = parse_permission(&json!({"sessionId": "s", "options": [
            {"optionId": "proceed_always", "name": "Allow for this session", "kind": "allow_always"},
            {"optionId": "proceed_once", "name": "Allow", "kind": "allow_once"},
            {"optionId": "cancel", "name": "Reject", "kind": "reject_once"}],
            "toolCall": {"toolCallId": "run_shell_command_1", "status": "pending", "title": "touch x",
                         "content": [{"type": "content", "content": {"type": "text", "text": "[cwd /w] (Run)"}}],
                         "locations": [], "kind": "execute"}}))
        .unwrap();
        expect![[r#"
            PermissionAsk {
                tool_call: ToolCall {
                    id: "run_shell_command_1",
                    title: "touch x",
                    kind: "execute",
                    status: Some(
                        Pending,
                    ),
                    content: [
                        Text(
                            "[cwd /w] (Run)",
                        ),
                    ],
                    locations: [],
                    raw_input: None,
                },
                options: [
                    PermissionOption {
                        id: "proceed_always",
                        name: "Allow for this session",
                        kind: "allow_always",
                    },
                    PermissionOption {
                        id: "proceed_once",
                        name: "Allow",
                        kind: "allow_once",
                    },
                    PermissionOption {
                        id: "cancel",
                        name: "Reject",
                        kind: "reject_once",
                    },
                ],
            }"#]]
        .assert_eq(&format!("{gemini:#?}"));
        assert_eq!(
            parse_permission(&json!({"options": [], "toolCall": {}})),
            Err("a permission request without options".to_string())
        );
    }
}
