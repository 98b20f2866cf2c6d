//! One type per method: `Params`, `Result` and `METHOD` (rust-analyzer's lsp_ext shape).
//!
//! The daemon's dispatch table and the protocol reference test are both driven by [`ALL`], so a
//! method cannot be implemented without being listed, nor listed without being implemented.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jsonrpc::{excerpt, excerpt_quotes, ResponseError, EXCERPT_CHARS};
use crate::objects::{self, Agent, Decision, Event, Job, Page, Screen, Session, Task, Terminal};

/// A request method of the contract.
pub trait Method {
    /// What the client sends.
    type Params: DeserializeOwned + Serialize;
    /// What the daemon answers.
    type Result: DeserializeOwned + Serialize;
    /// The wire name.
    const METHOD: &'static str;
}

/// Decode `params` (JSON null counts as `{}`), naming the offending field on failure.
pub fn parse_params<T: DeserializeOwned>(params: Value) -> Result<T, ResponseError> {
    decode_params(params).map_err(|e| ResponseError::invalid_params(&e.field, e.to_string()))
}

/// Why params did not decode: the offending field (`gates[0].command`) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsError {
    /// The field's path, or `params` for the whole object.
    pub field: String,
    /// serde's words for the problem.
    pub message: String,
}

impl std::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid params: field {}: {}", self.field, self.message)
    }
}

/// Decode `params` (JSON null counts as `{}`), with the offending field named on failure.
pub fn decode_params<T: DeserializeOwned>(params: Value) -> Result<T, ParamsError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_path_to_error::deserialize::<_, T>(params).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "params".to_string()
        } else {
            path
        };
        let message = shorten_quotes(&e.into_inner().to_string());
        // serde says "missing field `x`" at the parent path; name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|s| s.split('`').next())
        {
            Some(missing) if field == "params" => missing.to_string(),
            Some(missing) => format!("{field}.{missing}"),
            None => field,
        };
        ParamsError {
            field: excerpt(&field),
            message,
        }
    })
}

/// Longest params error message: serde's words, the field's path and excerpts of the input.
const MAX_MESSAGE_CHARS: usize = 4 * EXCERPT_CHARS;

/// serde's message with each piece of quoted input cut to its excerpt, and the whole bounded
/// too (input with quote marks of its own can make the pieces pair up wrongly).
fn shorten_quotes(message: &str) -> String {
    let out = excerpt_quotes(message);
    match out.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

/// `{}`: no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoParams {}

/// `{}`: an empty result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// `{id}`: a method on one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdParams {
    /// The object's id (or an agent's name).
    pub id: String,
}

/// `{limit?, cursor?}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListParams {
    /// Page size, default 100, at most 1000.
    #[serde(default)]
    pub limit: Option<u64>,
    /// From a previous page's `nextCursor`.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `orch/agent/spawn` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpawnParams {
    /// A kind from the workspace configuration.
    #[serde(default)]
    pub kind: Option<String>,
    /// An argv (instead of `kind`, or overriding its command).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Unique name; default `<kind>-<n>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Working directory; default the workspace root.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// `"pty"` or `"tmux"`; default from the configuration.
    #[serde(default)]
    pub backend: Option<String>,
    /// A configured remote host (`[hosts.<name>]`) whose tmux runs it; default the kind's,
    /// else this machine.
    #[serde(default)]
    pub host: Option<String>,
    /// `"pty"` (a program in a terminal) or `"acp"` (the Agent Client Protocol on its stdio);
    /// default the kind's, else `"pty"`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// A git worktree of its own: `true`, or `{branch?, base?}`.
    #[serde(default)]
    pub worktree: Option<WorktreeParam>,
    /// Session; default the `default` session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Width, default 120.
    #[serde(default)]
    pub cols: Option<u16>,
    /// Height, default 40.
    #[serde(default)]
    pub rows: Option<u16>,
}

/// `orch/agent/spawn` `worktree`: `true` (defaults), `false` (none), or what to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorktreeParam {
    /// `true` or `false`.
    On(bool),
    /// A worktree with these settings.
    With(WorktreeSpec),
}

/// A worktree to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorktreeSpec {
    /// Its branch; default `orch/<agent name>`.
    #[serde(default)]
    pub branch: Option<String>,
    /// What to start from; default the workspace's current branch (or commit).
    #[serde(default)]
    pub base: Option<String>,
}

/// `orch/agent/diff` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDiffParams {
    /// Agent id or name.
    pub id: String,
    /// Compare against this instead of the worktree's base.
    #[serde(default)]
    pub base: Option<String>,
}

/// A changed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFile {
    /// Relative to the worktree's top.
    pub path: String,
    /// `added | modified | deleted | renamed`.
    pub status: String,
    /// A renamed file's old path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// Lines added.
    pub additions: u64,
    /// Lines deleted.
    pub deletions: u64,
    /// git considers it binary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

/// `orch/agent/diff` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDiffResult {
    /// The base compared against, as named.
    pub base: String,
    /// The commit compared against (where the base and the branch meet).
    pub merge_base: String,
    /// The agent's branch.
    pub branch: String,
    /// Its worktree (absent while paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every changed file: committed, uncommitted and untracked.
    pub files: Vec<ChangedFile>,
    /// The unified diff.
    pub diff: String,
    /// `diff` was cut at the size limit (`files` is complete).
    pub truncated: bool,
}

/// `orch/agent/merge` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentMergeParams {
    /// Agent id or name.
    pub id: String,
    /// `merge` (default), `squash` or `rebase`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// The commit message (merge and squash).
    #[serde(default)]
    pub message: Option<String>,
}

/// `orch/agent/merge` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentMergeResult {
    /// The base branch's new head.
    pub commit: String,
    /// The files the merge changed.
    pub files: Vec<String>,
}

/// `orch/agent/discard` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentDiscardParams {
    /// Agent id or name.
    pub id: String,
    /// Discard unmerged work without asking.
    #[serde(default)]
    pub force: Option<bool>,
}

/// `orch/agent/list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentListParams {
    /// Only agents in this state.
    #[serde(default)]
    pub state: Option<String>,
    /// Only agents of this session.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Continuation.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `orch/agent/send` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSendParams {
    /// Agent id or name.
    pub id: String,
    /// The text to type.
    pub text: String,
    /// Press Enter after the text (default true).
    #[serde(default)]
    pub submit: Option<bool>,
}

/// `orch/hook` params: what an agent's own hook reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookParams {
    /// The agent whose hook fired (`$ORCH_AGENT_ID` in the hook's environment).
    pub agent_id: String,
    /// The agent's terminal when its process started (`$ORCH_TERMINAL_ID`): a hook of an
    /// earlier process of the agent is ignored.
    #[serde(default)]
    pub terminal_id: Option<String>,
    /// The hook's JSON as the agent wrote it on the hook's stdin (`hook_event_name`,
    /// `tool_name`, `tool_input`, ...).
    pub event: Value,
}

/// `orch/agent/stop` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStopParams {
    /// Agent id or name.
    pub id: String,
    /// SIGKILL at once.
    #[serde(default)]
    pub force: Option<bool>,
}

/// `orch/terminal/open` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalOpenParams {
    /// The argv.
    pub command: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Backend.
    #[serde(default)]
    pub backend: Option<String>,
    /// Width.
    #[serde(default)]
    pub cols: Option<u16>,
    /// Height.
    #[serde(default)]
    pub rows: Option<u16>,
}

/// `orch/terminal/write` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalWriteParams {
    /// Terminal id.
    pub id: String,
    /// UTF-8 text, control characters included.
    pub data: String,
}

/// `orch/terminal/resize` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalResizeParams {
    /// Terminal id.
    pub id: String,
    /// Width.
    pub cols: u16,
    /// Height.
    pub rows: u16,
}

/// `orch/terminal/screen` and `orch/agent/screen` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenParams {
    /// Terminal id (agent id or name for `orch/agent/screen`).
    pub id: String,
    /// Lines of history above the screen.
    #[serde(default)]
    pub scrollback: Option<u32>,
}

/// `orch/session/create` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreateParams {
    /// Unique among active sessions.
    pub name: String,
}

/// `orch/session/list` and `orch/decision/list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateListParams {
    /// Only this state.
    #[serde(default)]
    pub state: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Continuation.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `orch/session/close` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCloseParams {
    /// Session id (or name).
    pub id: String,
    /// Stop its agents too.
    #[serde(default)]
    pub stop_agents: Option<bool>,
}

/// A gate in `orch/task/create`: a configured gate's name, or an inline gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GateRef {
    /// `[gates.<name>]` from `orch.toml`.
    Name(String),
    /// `{name, command, timeoutS?}`.
    Inline(InlineGate),
}

/// An inline gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InlineGate {
    /// Its name.
    pub name: String,
    /// The argv.
    pub command: Vec<String>,
    /// Timeout, default 900.
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// `orch/task/create` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCreateParams {
    /// Short title.
    pub title: String,
    /// What the agent is told.
    pub prompt: String,
    /// Default `normal`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Assign and dispatch at once.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Gates run on completion.
    #[serde(default)]
    pub gates: Option<Vec<GateRef>>,
    /// Default 3.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Land the agent's worktree when the task is done: `merge | squash | rebase`.
    #[serde(default)]
    pub merge: Option<String>,
    /// Best of N: the same task for each of these agents (ids or names of agents with a
    /// worktree, or kinds to spawn with one); a person picks the candidate that lands.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
}

/// `orch/task/list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskListParams {
    /// Only this state.
    #[serde(default)]
    pub state: Option<String>,
    /// Only this agent's tasks.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Continuation.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `orch/task/assign` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssignParams {
    /// Task id.
    pub id: String,
    /// Agent id or name.
    pub agent_id: String,
}

/// `orch/task/complete` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleteParams {
    /// Task id.
    pub id: String,
    /// What was done.
    #[serde(default)]
    pub summary: Option<String>,
}

/// `orch/decision/resolve` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionResolveParams {
    /// Decision id.
    pub id: String,
    /// One of the decision's options.
    pub choice: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `orch/events/subscribe` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventsSubscribeParams {
    /// Kind prefixes (`agent.`, `task.state`); all when absent.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Subject ids; all when absent.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    /// Replay events after this seq first.
    #[serde(default)]
    pub since: Option<u64>,
}

/// `orch/events/subscribe` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsSubscribeResult {
    /// For `orch/event` notifications and unsubscribe.
    pub subscription_id: String,
    /// The last seq at subscription time.
    pub last_seq: u64,
}

/// `orch/events/unsubscribe` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsUnsubscribeParams {
    /// From subscribe.
    pub subscription_id: String,
}

/// `orch/events/query` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventsQueryParams {
    /// Events after this seq.
    #[serde(default)]
    pub since: Option<u64>,
    /// Kind prefixes.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Subject ids.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Continuation (a seq).
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `orch/jobs/pause|resume` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobNameParams {
    /// The job's name.
    pub name: String,
}

/// `orch/event` notification params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventNotification {
    /// Which subscription.
    pub subscription_id: String,
    /// The event.
    pub event: Event,
}

/// `orch/terminal/output` notification params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalOutput {
    /// Terminal id.
    pub id: String,
    /// The output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The client fell behind: fetch the screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<bool>,
}

/// `orch/event`.
pub const EVENT_NOTIFICATION: &str = "orch/event";
/// `orch/terminal/output`.
pub const TERMINAL_OUTPUT_NOTIFICATION: &str = "orch/terminal/output";

macro_rules! methods {
    ($( $(#[$doc:meta])* $name:ident = $method:literal, $params:ty => $result:ty; )*) => {
        $(
            $(#[$doc])*
            pub enum $name {}
            impl Method for $name {
                type Params = $params;
                type Result = $result;
                const METHOD: &'static str = $method;
            }
        )*
        /// Every `orch/*` request method, in the order of PROTOCOL.md.
        pub const ALL: &[&str] = &[$($method),*];

        /// Decode `params` as those of `method` and drop them; `None` if `method` is not in
        /// [`ALL`]. For tests and fuzzing, which must reach every method's params by name.
        pub fn decode_params_of(method: &str, params: Value) -> Option<Result<(), ParamsError>> {
            match method {
                $($method => Some(decode_params::<$params>(params).map(drop)),)*
                _ => None,
            }
        }
    };
}

methods! {
    /// Daemon status.
    Status = "orch/status", NoParams => objects::Status;
    /// Start an agent.
    AgentSpawn = "orch/agent/spawn", AgentSpawnParams => Agent;
    /// List agents.
    AgentList = "orch/agent/list", AgentListParams => Page<Agent>;
    /// One agent.
    AgentGet = "orch/agent/get", IdParams => Agent;
    /// Type text into an agent.
    AgentSend = "orch/agent/send", AgentSendParams => Empty;
    /// Stop an agent.
    AgentStop = "orch/agent/stop", AgentStopParams => Agent;
    /// Restart an agent.
    AgentRestart = "orch/agent/restart", IdParams => Agent;
    /// Interrupt an agent's current turn.
    AgentInterrupt = "orch/agent/interrupt", IdParams => Empty;
    /// An agent's screen.
    AgentScreen = "orch/agent/screen", ScreenParams => Screen;
    /// What an agent's worktree changed.
    AgentDiff = "orch/agent/diff", AgentDiffParams => AgentDiffResult;
    /// Land an agent's worktree in its base.
    AgentMerge = "orch/agent/merge", AgentMergeParams => AgentMergeResult;
    /// Remove an agent's worktree and branch.
    AgentDiscard = "orch/agent/discard", AgentDiscardParams => Empty;
    /// Remove an agent's checkout, keeping its branch.
    AgentPause = "orch/agent/pause", IdParams => Agent;
    /// Check a paused agent's branch out again and restart it there.
    AgentResume = "orch/agent/resume", IdParams => Agent;
    /// Open a terminal.
    TerminalOpen = "orch/terminal/open", TerminalOpenParams => Terminal;
    /// List terminals.
    TerminalList = "orch/terminal/list", ListParams => Page<Terminal>;
    /// Write to a terminal.
    TerminalWrite = "orch/terminal/write", TerminalWriteParams => Empty;
    /// Resize a terminal.
    TerminalResize = "orch/terminal/resize", TerminalResizeParams => Empty;
    /// A terminal's screen.
    TerminalScreen = "orch/terminal/screen", ScreenParams => Screen;
    /// Follow a terminal's output.
    TerminalSubscribe = "orch/terminal/subscribe", IdParams => Empty;
    /// Stop following.
    TerminalUnsubscribe = "orch/terminal/unsubscribe", IdParams => Empty;
    /// Close a terminal.
    TerminalClose = "orch/terminal/close", IdParams => Empty;
    /// Create a session.
    SessionCreate = "orch/session/create", SessionCreateParams => Session;
    /// List sessions.
    SessionList = "orch/session/list", StateListParams => Page<Session>;
    /// Close a session.
    SessionClose = "orch/session/close", SessionCloseParams => Session;
    /// Create a task.
    TaskCreate = "orch/task/create", TaskCreateParams => Task;
    /// List tasks.
    TaskList = "orch/task/list", TaskListParams => Page<Task>;
    /// One task.
    TaskGet = "orch/task/get", IdParams => Task;
    /// Assign a task.
    TaskAssign = "orch/task/assign", TaskAssignParams => Task;
    /// The work is done: run gates.
    TaskComplete = "orch/task/complete", TaskCompleteParams => Task;
    /// Cancel a task.
    TaskCancel = "orch/task/cancel", IdParams => Task;
    /// List decisions.
    DecisionList = "orch/decision/list", StateListParams => Page<Decision>;
    /// Answer a decision.
    DecisionResolve = "orch/decision/resolve", DecisionResolveParams => Decision;
    /// Follow events.
    EventsSubscribe = "orch/events/subscribe", EventsSubscribeParams => EventsSubscribeResult;
    /// Stop following events.
    EventsUnsubscribe = "orch/events/unsubscribe", EventsUnsubscribeParams => Empty;
    /// Read the event log.
    EventsQuery = "orch/events/query", EventsQueryParams => Page<Event>;
    /// The effective configuration.
    ConfigGet = "orch/config/get", NoParams => Value;
    /// Re-read `orch.toml`.
    ConfigReload = "orch/config/reload", NoParams => Value;
    /// Scheduler jobs.
    JobsList = "orch/jobs/list", NoParams => Vec<Job>;
    /// Pause a job.
    JobsPause = "orch/jobs/pause", JobNameParams => Job;
    /// Resume a job.
    JobsResume = "orch/jobs/resume", JobNameParams => Job;
    /// Stop the daemon.
    DaemonStop = "orch/daemon/stop", NoParams => Empty;
    /// What an agent's own hook reported.
    Hook = "orch/hook", HookParams => Empty;
}

/// The `workspace/executeCommand` name of a method: `orch/agent/spawn` -> `orch.agent.spawn`.
pub fn command_name(method: &str) -> String {
    method.replace('/', ".")
}

/// The method of an `orch.<noun>.<verb>` command, if it names one.
pub fn method_of_command(command: &str) -> Option<&'static str> {
    ALL.iter().copied().find(|m| command_name(m) == command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_errors_name_the_field() {
        let e = parse_params::<AgentSendParams>(json!({"id": "a", "text": 5})).unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "text");
        let e = parse_params::<AgentSendParams>(json!({"text": "x"})).unwrap_err();
        assert_eq!(e.message, "invalid params: field id: missing field `id`");
        let e = parse_params::<TerminalResizeParams>(json!({"id": "t", "cols": -1, "rows": 2}))
            .unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "cols");
        let e = parse_params::<TaskCreateParams>(
            json!({"title": "t", "prompt": "p", "gates": [{"name": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "gates[0]");
        assert!(parse_params::<NoParams>(Value::Null).is_ok());
    }

    #[test]
    fn params_errors_quote_only_a_prefix_of_the_input() {
        // Every field name any method has, each given a huge value of every JSON type: what an
        // error quotes of it stays short. The probe sent 10 MB values and got them back whole.
        let huge = "x".repeat(100_000);
        let fields = [
            "agentId",
            "backend",
            "choice",
            "cols",
            "command",
            "cursor",
            "cwd",
            "data",
            "env",
            "event",
            "force",
            "gates",
            "id",
            "kind",
            "kinds",
            "limit",
            "maxAttempts",
            "name",
            "priority",
            "prompt",
            "reason",
            "rows",
            "scrollback",
            "sessionId",
            "since",
            "state",
            "stopAgents",
            "subjects",
            "submit",
            "subscriptionId",
            "summary",
            "terminalId",
            "text",
            "title",
        ];
        let values = [
            json!(huge),
            json!([huge]),
            json!({ huge.clone(): huge }),
            json!({ "name": huge, "command": huge, "timeoutS": huge }),
            json!([{ "name": 1, "command": [huge] }]),
            json!(format!("{huge}`\"{huge}")),
            json!(1.5),
        ];
        let mut errors = 0;
        for method in ALL {
            for field in fields {
                for value in &values {
                    let mut params = serde_json::Map::new();
                    params.insert(field.to_string(), value.clone());
                    // The other fields a method needs, so the huge one is what fails.
                    for (k, v) in [("id", "a"), ("name", "n"), ("title", "t"), ("prompt", "p")] {
                        params.entry(k).or_insert(json!(v));
                    }
                    params.entry("command").or_insert(json!(["c"]));
                    params.entry("text").or_insert(json!("t"));
                    params.entry("data").or_insert(json!("d"));
                    params.entry("cols").or_insert(json!(1));
                    params.entry("rows").or_insert(json!(1));
                    params.entry("agentId").or_insert(json!("a"));
                    params.entry("choice").or_insert(json!("c"));
                    params.entry("subscriptionId").or_insert(json!("s"));
                    params.entry("event").or_insert(json!({}));
                    let Err(e) = decode_params_of(method, Value::Object(params)).unwrap() else {
                        continue;
                    };
                    errors += 1;
                    let wire =
                        serde_json::to_vec(&ResponseError::invalid_params(&e.field, e.to_string()))
                            .unwrap()
                            .len();
                    assert!(wire < 1024, "{method} {field}: {wire} bytes");
                    assert!(
                        e.field.chars().count() <= EXCERPT_CHARS + 1,
                        "{method} {field}: field {}",
                        e.field.len()
                    );
                    assert!(
                        e.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
                        "{method} {field}: {}",
                        excerpt(&e.message)
                    );
                }
            }
        }
        assert!(errors > 400, "{errors} errors");
        let e = parse_params::<TerminalResizeParams>(json!({"id": "t", "cols": huge, "rows": 1}))
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "invalid params: field cols: invalid type: string \"{}…\", expected u16",
                &huge[..EXCERPT_CHARS]
            )
        );
        let e = decode_params::<AgentSpawnParams>(json!({"env": {"K": 1}})).unwrap_err();
        assert_eq!(e.field, "env.K");
        let e = decode_params::<AgentSpawnParams>(json!({"env": {huge.clone(): 1}})).unwrap_err();
        assert_eq!(e.field, excerpt(&format!("env.{huge}")));
    }

    #[test]
    fn every_method_decodes_by_name() {
        for method in ALL {
            assert!(decode_params_of(method, json!({})).is_some(), "{method}");
        }
        assert!(decode_params_of("orch/nope", json!({})).is_none());
    }

    #[test]
    fn commands_map_to_methods() {
        assert_eq!(
            method_of_command("orch.agent.spawn"),
            Some("orch/agent/spawn")
        );
        assert_eq!(method_of_command("orch.nope"), None);
    }

    /// Valid params of every method, as a client would send them.
    const VALID_PARAMS: &[&str] = &[
        r#"{}"#,
        r#"{"kind":"shell","command":["bash","-i"],"name":"n","cwd":"/tmp","env":{"K":"v"},"backend":"pty","sessionId":"s-1","cols":80,"rows":24}"#,
        r#"{"state":"idle","sessionId":"s-1","limit":10,"cursor":"a-3"}"#,
        r#"{"id":"a-1"}"#,
        r#"{"id":"a-1","text":"hello","submit":true}"#,
        r#"{"id":"a-1","force":true}"#,
        r#"{"id":"t-1","scrollback":100}"#,
        r#"{"command":["cat"],"cwd":"/","env":{},"backend":"tmux","cols":1,"rows":1}"#,
        r#"{"limit":1000,"cursor":"t-1"}"#,
        r#"{"id":"t-1","data":"\u001b[A\r"}"#,
        r#"{"id":"t-1","cols":120,"rows":40}"#,
        r#"{"name":"s"}"#,
        r#"{"id":"s-1","stopAgents":true}"#,
        r#"{"title":"t","prompt":"p","priority":"high","agentId":"a-1","gates":[{"name":"test","command":["cargo","test"],"timeoutS":60}],"maxAttempts":3}"#,
        r#"{"state":"pending","agentId":"a-1","limit":5}"#,
        r#"{"id":"k-1","agentId":"a-2"}"#,
        r#"{"id":"k-1","summary":"done"}"#,
        r#"{"id":"d-1","choice":"yes","reason":"why"}"#,
        r#"{"kinds":["agent."],"subjects":["a-1"],"since":0}"#,
        r#"{"subscriptionId":"sub-1"}"#,
        r#"{"since":5,"kinds":[],"subjects":[],"limit":100,"cursor":"9"}"#,
        r#"{"name":"retention"}"#,
        r#"{"agentId":"a-1","terminalId":"t-1","event":{"hook_event_name":"Stop","tool_input":{"x":[1]}}}"#,
    ];

    /// A JSON value of a kind that breaks decoders: wrong types, extremes, huge and deep.
    fn odd_value(rng: &mut crate::mutate::Rng) -> Value {
        let huge = "h".repeat(1 + rng.below(20_000));
        let deep = (0..rng.below(200)).fold(json!(1), |v, _| json!([v]));
        match rng.below(14) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(-1),
            3 => json!(1.5),
            4 => json!(u64::MAX),
            5 => json!(i64::MIN),
            6 => json!(""),
            7 => json!(huge),
            8 => json!([huge]),
            9 => json!({ huge.clone(): huge }),
            10 => deep,
            11 => json!("a\u{0}b\n\u{1b}[31m"),
            12 => json!({}),
            _ => json!((0..rng.below(2000)).collect::<Vec<_>>()),
        }
    }

    /// `v` with one node (or a new key) replaced by an odd value.
    fn mutate_value(rng: &mut crate::mutate::Rng, v: &mut Value) {
        match v {
            Value::Object(map) if !map.is_empty() && !rng.one_in(4) => {
                let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
                let child = map.get_mut(&key).unwrap();
                if rng.one_in(2) {
                    mutate_value(rng, child);
                } else {
                    *child = odd_value(rng);
                }
            }
            Value::Array(items) if !items.is_empty() && !rng.one_in(4) => {
                let i = rng.below(items.len());
                mutate_value(rng, &mut items[i]);
            }
            Value::Object(map) => {
                let key = (*rng.pick(&["id", "name", "command", "env", "gates", "x"])).to_string();
                map.insert(key, odd_value(rng));
            }
            other => *other = odd_value(rng),
        }
    }

    #[test]
    fn mutated_params_of_every_method_never_panic_and_errors_stay_short() {
        // The stable stand-in for `cargo fuzz run params` (fuzz/): every method's params
        // decoder on mutated valid params, as JSON values and as bytes.
        use crate::mutate::{mutate, Rng};
        let corpus: Vec<&[u8]> = VALID_PARAMS.iter().map(|p| p.as_bytes()).collect();
        let mut rng = Rng::new(0xfa_7a);
        let (mut ok, mut failed) = (0, 0);
        for round in 0..6_000 {
            let base = *rng.pick(VALID_PARAMS);
            let params = if rng.one_in(2) {
                let mut v: Value = serde_json::from_str(base).unwrap();
                mutate_value(&mut rng, &mut v);
                v
            } else {
                match serde_json::from_slice(&mutate(&mut rng, base.as_bytes(), &corpus)) {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            for method in ALL {
                match decode_params_of(method, params.clone()).unwrap() {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        assert!(
                            e.field.chars().count() <= EXCERPT_CHARS + 1,
                            "round {round} {method}: field {}",
                            excerpt(&e.field)
                        );
                        assert!(
                            e.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
                            "round {round} {method}: {}",
                            excerpt(&e.message)
                        );
                    }
                }
            }
        }
        assert!(
            ok > 10_000 && failed > 10_000,
            "{ok} decoded, {failed} refused"
        );
    }
}
