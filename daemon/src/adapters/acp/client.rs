//! The ACP client's state machine: the start-up handshake, prompt turns and their queue,
//! cancels, permission requests, session updates, and what the agent's end means for each.
//!
//! Functional core: every input (a message from the agent, a call from the runtime, a timeout,
//! the process's exit) changes the state and leaves effects — lines to send, events for the
//! runtime, changes to show on the screen, a kill — which the shell in `acp.rs` carries out in
//! order. No I/O, no threads, no clock here, so the protocol's rules are tested without a process.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Value};

use super::proto::{self, Initialized, Modes, SessionUpdate, StopReason, ToolCall, ToolStatus};
use super::render::{ChunkKind, Show, Style, ToolView};
use super::wire::{self, Incoming, RpcError};
use super::{
    AcpError, AcpEvent, AcpPhase, AcpStatus, PermissionId, PermissionRequest, PromptStatus, Ready,
    SessionOrigin, TurnEnd, TurnId, MAX_OPEN_PERMISSIONS, MAX_PROMPT_BYTES, MAX_QUEUED_PROMPTS,
};

/// Problems reported one by one before the rest are only counted.
const PROBLEMS_REPORTED: u64 = 16;
/// Tool calls remembered (for titles and to show changes); the oldest are forgotten first.
const TOOLS_REMEMBERED: usize = 512;

/// What the shell must do, in this order.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Write this line to the agent's stdin.
    Send(Vec<u8>),
    /// Tell the runtime.
    Event(AcpEvent),
    /// Change the screen.
    Show(Show),
    /// The agent is beyond saving: kill its process group.
    Kill,
}

/// What orch asks of the session, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The agent's working directory, canonical, as sent in `session/*`.
    pub cwd: String,
    /// A session to continue instead of starting a new one.
    pub resume: Option<String>,
    /// A session mode to switch to once the session exists.
    pub mode: Option<String>,
    /// The `authenticate` method to use before the session is created.
    pub auth_method: Option<String>,
}

/// A request of ours the agent has not answered yet.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Initialize,
    Authenticate(String),
    NewSession,
    LoadSession,
    ResumeSession,
    SetMode(String),
    Prompt(TurnId),
}

impl Call {
    fn method(&self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Authenticate(_) => "authenticate",
            Self::NewSession => "session/new",
            Self::LoadSession => "session/load",
            Self::ResumeSession => "session/resume",
            Self::SetMode(_) => "session/set_mode",
            Self::Prompt(_) => "session/prompt",
        }
    }
}

/// Where the client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Handshake under way.
    Starting,
    /// The session exists.
    Ready,
    /// Given up on (the process is being killed); waits for the exit.
    Failed,
    /// The process ended.
    Exited,
}

/// The running turn.
#[derive(Debug)]
struct Turn {
    id: TurnId,
    /// Our `session/prompt` request's id.
    request: u64,
    /// `session/cancel` was sent.
    cancelling: bool,
}

/// An open permission request.
#[derive(Debug)]
struct Ask {
    id: PermissionId,
    /// The agent's JSON-RPC id, echoed in the answer.
    rpc_id: Value,
    options: Vec<proto::PermissionOption>,
}

/// A tool call as known so far, and what the screen last showed of it.
#[derive(Debug, Default)]
struct Tool {
    call: ToolCall,
    /// Status and title last shown, to show only changes.
    shown: Option<(Option<ToolStatus>, String)>,
}

/// The client: handshake, turns, permissions, updates.
pub struct Client {
    /// The runtime's id of this agent, for error messages.
    agent_id: String,
    options: Options,
    phase: Phase,
    next_request: u64,
    pending: HashMap<u64, Call>,
    /// Bumped with every handshake request, so the shell can time each one.
    handshake_step: u64,
    initialized: Option<Initialized>,
    /// `authenticate` succeeded (or was tried: it is never tried twice).
    authenticated: bool,
    /// A resume was tried (so a failure falls back to a new session once).
    resume_tried: bool,
    resume_error: Option<String>,
    session_id: Option<String>,
    origin: SessionOrigin,
    modes: Modes,
    turn: Option<Turn>,
    queue: VecDeque<(TurnId, String)>,
    next_turn: TurnId,
    asks: Vec<Ask>,
    next_ask: PermissionId,
    tools: HashMap<String, Tool>,
    /// Tool call ids in the order they were first seen, to forget the oldest.
    tool_order: VecDeque<String>,
    problems: u64,
    /// Why the agent failed, once it has.
    failure: Option<String>,
    effects: Vec<Effect>,
}

impl Client {
    pub fn new(agent_id: &str, options: Options) -> Self {
        Self {
            agent_id: agent_id.to_string(),
            options,
            phase: Phase::Starting,
            next_request: 1,
            pending: HashMap::new(),
            handshake_step: 0,
            initialized: None,
            authenticated: false,
            resume_tried: false,
            resume_error: None,
            session_id: None,
            origin: SessionOrigin::New,
            modes: Modes::default(),
            turn: None,
            queue: VecDeque::new(),
            next_turn: 1,
            asks: Vec::new(),
            next_ask: 1,
            tools: HashMap::new(),
            tool_order: VecDeque::new(),
            problems: 0,
            failure: None,
            effects: Vec::new(),
        }
    }

    /// The effects of everything since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn emit(&mut self, event: AcpEvent) {
        self.effects.push(Effect::Event(event));
    }

    fn show(&mut self, change: Show) {
        self.effects.push(Effect::Show(change));
    }

    fn note(&mut self, style: Style, text: impl Into<String>) {
        self.show(Show::Note {
            style,
            text: text.into(),
        });
    }

    fn request(&mut self, call: Call, params: Value) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.effects
            .push(Effect::Send(wire::request(id, call.method(), params)));
        if self.phase == Phase::Starting {
            self.handshake_step += 1;
        }
        self.pending.insert(id, call);
        id
    }

    fn send_notification(&mut self, method: &str, params: Value) {
        self.effects
            .push(Effect::Send(wire::notification(method, params)));
    }

    /// Begin: `initialize`, offering what orch implements.
    pub fn start(&mut self) {
        self.request(
            Call::Initialize,
            json!({
                "protocolVersion": 1,
                "clientCapabilities": {
                    "fs": {"readTextFile": true, "writeTextFile": true},
                    "terminal": false,
                },
                "clientInfo": {"name": "orch", "title": "orch", "version": crate::VERSION},
            }),
        );
    }

    /// The handshake request the agent owes an answer to, with a number that changes with
    /// every new one: the shell times each.
    pub fn handshake_wait(&self) -> Option<(u64, &'static str)> {
        if self.phase != Phase::Starting {
            return None;
        }
        // While starting, every pending request is part of the handshake.
        self.pending
            .values()
            .next()
            .map(|call| (self.handshake_step, call.method()))
    }

    /// The handshake request in `handshake_wait` was not answered in time.
    pub fn timed_out(&mut self, what: &str, after_secs: u64) {
        self.fail(format!(
            "the agent did not answer {what} within {after_secs} s"
        ));
    }

    /// A line that is no message (not JSON, too long, wrong shape).
    pub fn malformed(&mut self, why: &str, line: &[u8]) {
        let excerpt: String = String::from_utf8_lossy(&line[..line.len().min(80)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let excerpt = if line.len() > 80 {
            format!("{excerpt}…")
        } else {
            excerpt
        };
        self.problem(format!(
            "the agent sent a malformed message ({why}): {excerpt}"
        ));
    }

    /// A line longer than the limit was dropped.
    pub fn too_long(&mut self, len: usize, limit: usize) {
        self.problem(format!(
            "the agent sent a message of {len} bytes, more than the {limit} orch takes; it was dropped"
        ));
    }

    /// Give up on the agent for a reason the shell found (it does not read its input).
    pub fn give_up(&mut self, why: String) {
        self.fail(why);
    }

    /// Something the agent did wrong that orch survives.
    pub fn problem(&mut self, text: String) {
        self.problems += 1;
        if self.problems <= PROBLEMS_REPORTED {
            tracing::warn!(agent = %self.agent_id, "{text}");
            self.note(Style::Error, format!("orch: {text}"));
            self.emit(AcpEvent::Problem(text));
        } else if self.problems == PROBLEMS_REPORTED + 1 {
            let text = "the agent keeps sending bad messages; further ones are not reported";
            self.note(Style::Error, format!("orch: {text}"));
            self.emit(AcpEvent::Problem(text.to_string()));
        }
    }

    /// Give up on the agent: report, end what waits, kill it.
    fn fail(&mut self, why: String) {
        if matches!(self.phase, Phase::Failed | Phase::Exited) {
            return;
        }
        tracing::warn!(agent = %self.agent_id, "acp agent failed: {why}");
        self.phase = Phase::Failed;
        self.failure = Some(why.clone());
        self.emit(AcpEvent::Failed(why.clone()));
        self.note(Style::Error, format!("orch: {why}"));
        self.end_everything("the agent failed", false);
        self.effects.push(Effect::Kill);
    }

    /// End the turn, the queue and the open requests, because the agent is gone or going.
    fn end_everything(&mut self, why: &str, can_answer: bool) {
        self.dismiss_asks(why, can_answer);
        if let Some(turn) = self.turn.take() {
            self.pending.remove(&turn.request);
            self.emit(AcpEvent::TurnEnded {
                turn: turn.id,
                end: TurnEnd::Failed(format!("{why} during the turn")),
            });
        }
        for (turn, _) in std::mem::take(&mut self.queue) {
            self.emit(AcpEvent::TurnEnded {
                turn,
                end: TurnEnd::Failed(format!("{why} before the turn began")),
            });
        }
        self.show(Show::Settle);
    }

    /// The process ended (`code` is `None` for a signal).
    pub fn exited(&mut self, code: Option<i32>, stderr_tail: &str) {
        if self.phase == Phase::Exited {
            return;
        }
        let how = match code {
            Some(code) => format!("the agent exited with code {code}"),
            None => "the agent was killed by a signal".to_string(),
        };
        // What it said on stderr explains an exit of its own; after a kill it is noise.
        let explains = self.phase == Phase::Starting || code.is_some_and(|c| c != 0);
        let words = if stderr_tail.is_empty() || !explains {
            how.clone()
        } else {
            format!("{how}; its last words on stderr: {stderr_tail}")
        };
        match self.phase {
            Phase::Starting => {
                self.failure = Some(format!("{words} before its session was ready"));
                self.emit(AcpEvent::Failed(format!(
                    "{words} before its session was ready"
                )));
            }
            Phase::Ready if self.turn.is_some() => {
                self.note(Style::Error, format!("orch: {words} during the turn"));
            }
            _ => {}
        }
        self.end_everything(&how, false);
        self.phase = Phase::Exited;
        self.pending.clear();
        self.note(Style::Dim, format!("[{how}]"));
    }

    /// A message from the agent (file system requests are the shell's).
    pub fn handle(&mut self, message: Incoming) {
        match message {
            Incoming::Response { id, result } => self.response(&id, result),
            Incoming::Notification { method, params } => self.notification(&method, &params),
            Incoming::Request { id, method, params } => self.agent_request(id, &method, &params),
        }
    }

    fn response(&mut self, id: &Value, result: Result<Value, RpcError>) {
        let call = id
            .as_u64()
            .and_then(|n| self.pending.remove(&n).map(|c| (n, c)));
        let Some((request, call)) = call else {
            self.problem(format!(
                "the agent answered request {id}, which orch did not send or was already answered"
            ));
            return;
        };
        if matches!(self.phase, Phase::Failed | Phase::Exited) {
            return;
        }
        match call {
            Call::Initialize => match result {
                Ok(result) => self.initialized(&result),
                Err(err) => self.fail(format!("initialize failed: {err}")),
            },
            Call::Authenticate(method) => match result {
                Ok(_) => {
                    self.authenticated = true;
                    self.open_session();
                }
                Err(err) => self.fail(format!("authenticate with method {method} failed: {err}")),
            },
            Call::NewSession => match result {
                Ok(result) => match result.get("sessionId").and_then(Value::as_str) {
                    Some(session) => {
                        self.session_id = Some(session.to_string());
                        self.origin = SessionOrigin::New;
                        self.modes = proto::parse_modes(&result);
                        self.session_open();
                    }
                    None => self.fail("session/new answered without a sessionId".to_string()),
                },
                Err(err) if err.code == wire::AUTH_REQUIRED && !self.authenticated => {
                    self.authenticate_for(&err)
                }
                Err(err) => self.fail(format!("session/new failed: {err}")),
            },
            Call::LoadSession | Call::ResumeSession => match result {
                Ok(result) => {
                    self.session_id = self.options.resume.clone();
                    self.origin = if call == Call::LoadSession {
                        SessionOrigin::Loaded
                    } else {
                        SessionOrigin::Resumed
                    };
                    self.modes = proto::parse_modes(&result);
                    self.session_open();
                }
                Err(err) if err.code == wire::AUTH_REQUIRED && !self.authenticated => {
                    self.resume_tried = false;
                    self.authenticate_for(&err)
                }
                Err(err) => {
                    self.resume_error = Some(format!("{} failed: {err}", call.method()));
                    self.note(
                        Style::Dim,
                        format!("[{} failed: {err}; starting a new session]", call.method()),
                    );
                    self.new_session();
                }
            },
            Call::SetMode(mode) => {
                match result {
                    Ok(_) => self.modes.current = Some(mode),
                    Err(err) => self.problem(format!("session/set_mode {mode} failed: {err}")),
                }
                if self.phase == Phase::Starting {
                    self.ready();
                }
            }
            Call::Prompt(turn) => {
                let Some(running) = self.turn.as_ref().filter(|t| t.request == request) else {
                    return;
                };
                debug_assert_eq!(running.id, turn);
                let end = match result {
                    Ok(result) => TurnEnd::Stopped(StopReason::parse(
                        result
                            .get("stopReason")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown"),
                    )),
                    Err(err) => TurnEnd::Failed(format!("session/prompt failed: {err}")),
                };
                self.end_turn(end);
            }
        }
    }

    fn initialized(&mut self, result: &Value) {
        let init = proto::parse_initialized(result);
        if init.protocol_version > 1 {
            return self.fail(format!(
                "the agent speaks ACP version {}, orch speaks version 1",
                init.protocol_version
            ));
        }
        let preferred = self.options.auth_method.clone();
        self.initialized = Some(init);
        match preferred {
            Some(method) => {
                let offered = self.auth_methods();
                if offered.iter().any(|m| m.id == method) {
                    self.authenticate(method);
                } else {
                    self.fail(format!(
                        "auth method {method} is not one the agent offers ({})",
                        describe_methods(&offered)
                    ));
                }
            }
            None => self.open_session(),
        }
    }

    fn auth_methods(&self) -> Vec<proto::AuthMethod> {
        self.initialized
            .as_ref()
            .map(|i| i.auth_methods.clone())
            .unwrap_or_default()
    }

    fn authenticate(&mut self, method: String) {
        self.authenticated = true;
        self.request(
            Call::Authenticate(method.clone()),
            json!({"methodId": method}),
        );
    }

    /// `session/*` said authentication is required: use a method that needs no person.
    fn authenticate_for(&mut self, err: &RpcError) {
        let methods = self.auth_methods();
        match methods.iter().find(|m| m.unattended) {
            Some(method) => {
                let id = method.id.clone();
                self.note(Style::Dim, format!("[authenticating with {}]", method.name));
                self.authenticate(id);
            }
            None => self.fail(format!(
                "the agent requires authentication ({}) and none of its methods works without a person: {}",
                err.message,
                describe_methods(&methods)
            )),
        }
    }

    /// Load or resume the given session where the agent can, else start a new one.
    fn open_session(&mut self) {
        let caps = self
            .initialized
            .as_ref()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let Some(resume) = self.options.resume.clone().filter(|_| !self.resume_tried) else {
            return self.new_session();
        };
        self.resume_tried = true;
        let params = json!({"sessionId": resume, "cwd": self.options.cwd, "mcpServers": []});
        if caps.load_session {
            self.request(Call::LoadSession, params);
        } else if caps.resume_session {
            self.request(Call::ResumeSession, params);
        } else {
            self.resume_error =
                Some("the agent supports neither session/load nor session/resume".to_string());
            self.new_session();
        }
    }

    fn new_session(&mut self) {
        self.request(
            Call::NewSession,
            json!({"cwd": self.options.cwd, "mcpServers": []}),
        );
    }

    /// The session exists: switch mode if asked, then ready.
    fn session_open(&mut self) {
        let Some(mode) = self.options.mode.clone() else {
            return self.ready();
        };
        if self.modes.current.as_deref() == Some(mode.as_str()) {
            return self.ready();
        }
        if !self.modes.available.is_empty() && !self.modes.available.iter().any(|m| m.id == mode) {
            let offered: Vec<&str> = self.modes.available.iter().map(|m| m.id.as_str()).collect();
            self.problem(format!(
                "mode {mode} is not one the agent offers ({})",
                offered.join(", ")
            ));
            return self.ready();
        }
        let session = self.session_id.clone().unwrap_or_default();
        self.request(
            Call::SetMode(mode.clone()),
            json!({"sessionId": session, "modeId": mode}),
        );
    }

    fn ready(&mut self) {
        self.phase = Phase::Ready;
        let init = self.initialized.clone().unwrap_or_default();
        let ready = Ready {
            session_id: self.session_id.clone().unwrap_or_default(),
            origin: self.origin,
            resume_error: self.resume_error.clone(),
            agent: init.agent,
            capabilities: init.capabilities,
            modes: self.modes.clone(),
        };
        tracing::debug!(agent = %self.agent_id, session = %ready.session_id, "acp session ready");
        self.emit(AcpEvent::Ready(ready));
        self.start_next_turn();
    }

    fn start_next_turn(&mut self) {
        if self.phase != Phase::Ready || self.turn.is_some() {
            return;
        }
        if let Some((turn, text)) = self.queue.pop_front() {
            self.start_turn(turn, text);
        }
    }

    fn start_turn(&mut self, turn: TurnId, text: String) {
        let session = self.session_id.clone().unwrap_or_default();
        let request = self.request(
            Call::Prompt(turn),
            json!({"sessionId": session, "prompt": [{"type": "text", "text": text}]}),
        );
        self.turn = Some(Turn {
            id: turn,
            request,
            cancelling: false,
        });
        self.show(Show::Prompt(text.clone()));
        self.emit(AcpEvent::TurnStarted { turn, text });
    }

    fn end_turn(&mut self, end: TurnEnd) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        let why = if turn.cancelling {
            "the turn was cancelled"
        } else {
            "the turn ended"
        };
        self.dismiss_asks(why, true);
        self.show(Show::Settle);
        match &end {
            TurnEnd::Stopped(StopReason::EndTurn) => {}
            TurnEnd::Stopped(reason) => self.note(Style::Dim, format!("[{}]", reason.as_str())),
            TurnEnd::Failed(why) => self.note(Style::Error, format!("orch: {why}")),
        }
        self.emit(AcpEvent::TurnEnded { turn: turn.id, end });
        self.start_next_turn();
    }

    /// Answer every open permission request `cancelled` (when the agent can still hear it)
    /// and tell the runtime they are gone.
    fn dismiss_asks(&mut self, why: &str, answer: bool) {
        for ask in std::mem::take(&mut self.asks) {
            if answer {
                self.effects.push(Effect::Send(wire::response(
                    &ask.rpc_id,
                    json!({"outcome": {"outcome": "cancelled"}}),
                )));
            }
            self.show(Show::Asked {
                id: ask.id,
                outcome: format!("dismissed: {why}"),
            });
            self.emit(AcpEvent::PermissionDismissed {
                id: ask.id,
                why: why.to_string(),
            });
        }
    }

    fn notification(&mut self, method: &str, params: &Value) {
        if method != "session/update" {
            tracing::trace!(agent = %self.agent_id, method, "acp notification ignored");
            return;
        }
        if matches!(self.phase, Phase::Failed | Phase::Exited) {
            return;
        }
        let update = match proto::parse_update(params) {
            Ok(update) => update,
            Err(why) => return self.problem(why),
        };
        let replay = self.phase == Phase::Starting;
        match &update {
            SessionUpdate::UserMessage { text, message_id } => self.show(Show::Chunk {
                kind: ChunkKind::User,
                text: text.clone(),
                message_id: message_id.clone(),
            }),
            SessionUpdate::AgentMessage { text, message_id } => self.show(Show::Chunk {
                kind: ChunkKind::Agent,
                text: text.clone(),
                message_id: message_id.clone(),
            }),
            SessionUpdate::Thought { text, message_id } => self.show(Show::Chunk {
                kind: ChunkKind::Thought,
                text: text.clone(),
                message_id: message_id.clone(),
            }),
            SessionUpdate::ToolCall(call) => {
                let tool = self.tool(&call.id);
                tool.call = call.clone();
                self.show_tool(&call.id);
            }
            SessionUpdate::ToolCallUpdate(update) => {
                let tool = self.tool(&update.id);
                let call = &mut tool.call;
                call.id = update.id.clone();
                if let Some(title) = &update.title {
                    call.title = title.clone();
                }
                if let Some(kind) = &update.kind {
                    call.kind = kind.clone();
                }
                if update.status.is_some() {
                    call.status = update.status;
                }
                if let Some(content) = &update.content {
                    call.content = content.clone();
                }
                if let Some(locations) = &update.locations {
                    call.locations = locations.clone();
                }
                if update.raw_input.is_some() {
                    call.raw_input = update.raw_input.clone();
                }
                self.show_tool(&update.id);
            }
            SessionUpdate::Plan(entries) => self.show(Show::Plan(entries.clone())),
            SessionUpdate::CurrentMode { mode_id } => {
                self.modes.current = Some(mode_id.clone());
                self.note(Style::Dim, format!("[mode: {mode_id}]"));
            }
            SessionUpdate::SessionInfo { title: Some(title) } => {
                self.show(Show::Title(title.clone()))
            }
            SessionUpdate::SessionInfo { title: None }
            | SessionUpdate::AvailableCommands(_)
            | SessionUpdate::Other { .. } => {}
        }
        self.emit(AcpEvent::Update { update, replay });
    }

    /// The tool call with this id, remembered from now on (the oldest forgotten past the
    /// bound).
    fn tool(&mut self, id: &str) -> &mut Tool {
        if !self.tools.contains_key(id) {
            if self.tool_order.len() >= TOOLS_REMEMBERED {
                if let Some(old) = self.tool_order.pop_front() {
                    self.tools.remove(&old);
                }
            }
            self.tool_order.push_back(id.to_string());
        }
        self.tools.entry(id.to_string()).or_default()
    }

    /// Show a tool call if its status or title changed since it was last shown.
    fn show_tool(&mut self, id: &str) {
        let Some(tool) = self.tools.get_mut(id) else {
            return;
        };
        let now = (tool.call.status, tool.call.title.clone());
        if tool.shown.as_ref() == Some(&now) {
            return;
        }
        tool.shown = Some(now);
        let detail = tool.call.content.iter().find_map(|c| match c {
            proto::ToolContent::Text(text) => text
                .lines()
                .map(|l| l.trim_matches('`').trim())
                .find(|l| !l.is_empty())
                .map(|l| l.chars().take(200).collect()),
            _ => None,
        });
        let view = ToolView {
            id: id.to_string(),
            title: tool.call.title.clone(),
            status: tool.call.status,
            detail,
        };
        self.show(Show::Tool(view));
    }

    fn agent_request(&mut self, id: Value, method: &str, params: &Value) {
        if method != "session/request_permission" {
            self.effects.push(Effect::Send(wire::error_response(
                &id,
                wire::METHOD_NOT_FOUND,
                &format!("orch does not offer {method}"),
            )));
            return;
        }
        let ask = match proto::parse_permission(params) {
            Ok(ask) => ask,
            Err(why) => {
                self.effects.push(Effect::Send(wire::error_response(
                    &id,
                    wire::INVALID_PARAMS,
                    &why,
                )));
                return self.problem(why);
            }
        };
        let refuse =
            |text: &str| json!({"outcome": {"outcome": "cancelled"}, "_meta": {"orch": text}});
        if self.phase != Phase::Ready || self.turn.as_ref().is_some_and(|t| t.cancelling) {
            // Nobody can answer it any more: cancelled is the answer ACP prescribes.
            self.effects.push(Effect::Send(wire::response(
                &id,
                refuse("no turn is running"),
            )));
            return;
        }
        if self.asks.len() >= MAX_OPEN_PERMISSIONS {
            self.effects.push(Effect::Send(wire::response(
                &id,
                refuse("too many open permission requests"),
            )));
            return self.problem(format!(
                "the agent asked for more than {MAX_OPEN_PERMISSIONS} permissions at once; the rest were cancelled"
            ));
        }
        let call = ask.tool_call;
        // Gemini asks before it reports the tool call: the request introduces it.
        let title = {
            let known = self.tools.get(&call.id).map(|t| t.call.title.clone());
            let title = if call.title.is_empty() {
                known.unwrap_or_default()
            } else {
                call.title.clone()
            };
            if title.is_empty() {
                call.kind.clone()
            } else {
                title
            }
        };
        if !call.id.is_empty() {
            let tool = self.tool(&call.id);
            if tool.call.id.is_empty() {
                tool.call = call.clone();
            }
            // Seen from here on as the request shows it: a later update shows the change.
            tool.shown = Some((tool.call.status, tool.call.title.clone()));
        }
        let permission = self.next_ask;
        self.next_ask += 1;
        let request = PermissionRequest {
            id: permission,
            turn: self.turn.as_ref().map(|t| t.id),
            title: title.clone(),
            tool_call: call,
            options: ask.options.clone(),
        };
        // The runtime first: it is what a person waits for.
        self.emit(AcpEvent::PermissionRequested(request));
        self.show(Show::Ask {
            id: permission,
            title: title.clone(),
            options: ask
                .options
                .iter()
                .map(|o| (o.name.clone(), o.kind.clone()))
                .collect(),
        });
        self.asks.push(Ask {
            id: permission,
            rpc_id: id,
            options: ask.options,
        });
    }

    fn check_alive(&self) -> Result<(), AcpError> {
        match self.phase {
            Phase::Starting | Phase::Ready => Ok(()),
            Phase::Failed | Phase::Exited => Err(AcpError::Ended {
                id: self.agent_id.clone(),
                why: self
                    .failure
                    .clone()
                    .unwrap_or_else(|| "its process exited".to_string()),
            }),
        }
    }

    /// A prompt from the runtime or the input line: sent now, or queued behind the running
    /// turn (or the handshake).
    pub fn prompt(&mut self, text: &str) -> Result<PromptStatus, AcpError> {
        self.check_alive()?;
        if text.trim().is_empty() {
            return Err(AcpError::EmptyPrompt);
        }
        if text.len() > MAX_PROMPT_BYTES {
            return Err(AcpError::PromptTooLarge {
                len: text.len(),
                limit: MAX_PROMPT_BYTES,
            });
        }
        let busy = self.phase != Phase::Ready || self.turn.is_some();
        if busy && self.queue.len() >= MAX_QUEUED_PROMPTS {
            return Err(AcpError::QueueFull {
                id: self.agent_id.clone(),
                limit: MAX_QUEUED_PROMPTS,
            });
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        if busy {
            self.queue.push_back((turn, text.to_string()));
            return Ok(PromptStatus::Queued {
                turn,
                position: self.queue.len(),
            });
        }
        self.start_turn(turn, text.to_string());
        Ok(PromptStatus::Started { turn })
    }

    /// Cancel the running turn: `session/cancel`, and open permission requests answered
    /// `cancelled`. Queued prompts stay queued. Whether a turn was running.
    pub fn cancel(&mut self) -> Result<bool, AcpError> {
        self.check_alive()?;
        let Some(turn) = self.turn.as_mut() else {
            return Ok(false);
        };
        if !turn.cancelling {
            turn.cancelling = true;
            let session = self.session_id.clone().unwrap_or_default();
            self.send_notification("session/cancel", json!({"sessionId": session}));
            self.dismiss_asks("the turn was cancelled", true);
        }
        Ok(true)
    }

    /// Answer an open permission request with one of its options.
    pub fn answer(&mut self, permission: PermissionId, option: &str) -> Result<(), AcpError> {
        self.check_alive()?;
        let Some(index) = self.asks.iter().position(|a| a.id == permission) else {
            return Err(AcpError::NoSuchPermission {
                id: self.agent_id.clone(),
                permission,
            });
        };
        let Some(chosen) = self.asks[index].options.iter().find(|o| o.id == option) else {
            let options: Vec<&str> = self.asks[index]
                .options
                .iter()
                .map(|o| o.id.as_str())
                .collect();
            return Err(AcpError::NoSuchOption {
                permission,
                option: option.to_string(),
                options: options.join(", "),
            });
        };
        let outcome = chosen.name.clone();
        let ask = self.asks.remove(index);
        self.effects.push(Effect::Send(wire::response(
            &ask.rpc_id,
            json!({"outcome": {"outcome": "selected", "optionId": option}}),
        )));
        self.show(Show::Asked {
            id: permission,
            outcome,
        });
        Ok(())
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub fn status(&self) -> AcpStatus {
        let phase = match self.phase {
            Phase::Starting => AcpPhase::Starting,
            Phase::Ready if !self.asks.is_empty() => AcpPhase::Waiting,
            Phase::Ready if self.turn.is_some() => AcpPhase::Busy,
            Phase::Ready => AcpPhase::Idle,
            Phase::Failed => AcpPhase::Failed,
            Phase::Exited => AcpPhase::Exited,
        };
        AcpStatus {
            phase,
            session_id: self.session_id.clone(),
            turn: self.turn.as_ref().map(|t| t.id),
            queued: self.queue.len(),
            permissions: self.asks.iter().map(|a| a.id).collect(),
        }
    }

    /// The status line for the screen.
    pub fn status_line(&self) -> String {
        let name = self
            .initialized
            .as_ref()
            .map(|i| {
                let agent = &i.agent;
                let name = agent.title.clone().unwrap_or_else(|| agent.name.clone());
                match &agent.version {
                    Some(version) => format!("{name} {version}"),
                    None => name,
                }
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "agent".to_string());
        let mut line = match self.phase {
            Phase::Starting => format!("{name} · starting…"),
            Phase::Ready if !self.asks.is_empty() => {
                format!("{name} · waiting for a permission answer")
            }
            Phase::Ready => match &self.turn {
                Some(turn) if turn.cancelling => format!("{name} · cancelling…"),
                Some(_) => format!("{name} · working (esc to cancel)"),
                None => format!("{name} · idle"),
            },
            Phase::Failed => format!("{name} · failed"),
            Phase::Exited => format!("{name} · exited"),
        };
        if !self.queue.is_empty() {
            line.push_str(&format!(" · {} queued", self.queue.len()));
        }
        line
    }
}

fn describe_methods(methods: &[proto::AuthMethod]) -> String {
    if methods.is_empty() {
        return "none".to_string();
    }
    methods
        .iter()
        .map(|m| format!("{} ({})", m.name, m.id))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    /// A client and a log of its effects in words.
    struct Run {
        client: Client,
    }

    impl Run {
        fn new(options: Options) -> Self {
            let mut client = Client::new(
                "a-1",
                Options {
                    cwd: "/w".into(),
                    ..options
                },
            );
            client.start();
            Self { client }
        }

        fn agent(&mut self, line: Value) -> String {
            let message = wire::parse(line.to_string().as_bytes()).unwrap();
            self.client.handle(message);
            self.effects()
        }

        fn effects(&mut self) -> String {
            let mut out = String::new();
            for effect in self.client.take_effects() {
                let line = match effect {
                    Effect::Send(bytes) => {
                        let text = String::from_utf8(bytes).unwrap();
                        // The initialize request carries the build's version.
                        let text = text.replace(crate::VERSION, "V");
                        format!("send {}", text.trim_end())
                    }
                    Effect::Event(event) => format!("event {event:?}"),
                    Effect::Show(show) => format!("show {show:?}"),
                    Effect::Kill => "kill".to_string(),
                };
                out.push_str(&line);
                out.push('\n');
            }
            out
        }

        fn check(&mut self, line: Value, expect: Expect) {
            let effects = self.agent(line);
            expect.assert_eq(&effects);
        }

        /// Through the handshake to a ready session `s1`.
        fn ready(options: Options) -> Self {
            let mut run = Self::new(options);
            run.effects();
            run.agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1}}));
            run.agent(json!({"jsonrpc": "2.0", "id": 2, "result": {"sessionId": "s1"}}));
            run
        }
    }

    #[test]
    fn handshake_with_mode_then_queued_prompts() {
        let mut run = Run::new(Options {
            mode: Some("default".into()),
            ..Options::default()
        });
        expect![[r#"
            send {"id":1,"jsonrpc":"2.0","method":"initialize","params":{"clientCapabilities":{"fs":{"readTextFile":true,"writeTextFile":true},"terminal":false},"clientInfo":{"name":"orch","title":"orch","version":"V"},"protocolVersion":1}}
        "#]]
        .assert_eq(&run.effects());
        assert_eq!(run.client.handshake_wait(), Some((1, "initialize")));
        // A prompt before the session exists waits for it.
        assert_eq!(
            run.client.prompt("first").unwrap(),
            PromptStatus::Queued {
                turn: 1,
                position: 1
            }
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1, "agentInfo": {"name": "fake", "version": "1"}, "authMethods": []}}),
            expect![[r#"
                send {"id":2,"jsonrpc":"2.0","method":"session/new","params":{"cwd":"/w","mcpServers":[]}}
            "#]],
        );
        assert_eq!(run.client.handshake_wait(), Some((2, "session/new")));
        run.check(
            json!({"jsonrpc": "2.0", "id": 2, "result": {"sessionId": "s1", "modes": {"currentModeId": "auto", "availableModes": [{"id": "default", "name": "Manual"}, {"id": "auto", "name": "Auto"}]}}}),
            expect![[r#"
                send {"id":3,"jsonrpc":"2.0","method":"session/set_mode","params":{"modeId":"default","sessionId":"s1"}}
            "#]],
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
            expect![[r#"
                event Ready(Ready { session_id: "s1", origin: New, resume_error: None, agent: AgentInfo { name: "fake", title: None, version: Some("1") }, capabilities: AgentCapabilities { load_session: false, resume_session: false }, modes: Modes { available: [SessionMode { id: "default", name: "Manual" }, SessionMode { id: "auto", name: "Auto" }], current: Some("default") } })
                send {"id":4,"jsonrpc":"2.0","method":"session/prompt","params":{"prompt":[{"text":"first","type":"text"}],"sessionId":"s1"}}
                show Prompt("first")
                event TurnStarted { turn: 1, text: "first" }
            "#]],
        );
        assert_eq!(run.client.handshake_wait(), None);
        assert_eq!(
            run.client.prompt("second").unwrap(),
            PromptStatus::Queued {
                turn: 2,
                position: 1
            }
        );
        assert_eq!(
            run.client.status_line(),
            "fake 1 · working (esc to cancel) · 1 queued"
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 4, "result": {"stopReason": "end_turn"}}),
            expect![[r#"
                show Settle
                event TurnEnded { turn: 1, end: Stopped(EndTurn) }
                send {"id":5,"jsonrpc":"2.0","method":"session/prompt","params":{"prompt":[{"text":"second","type":"text"}],"sessionId":"s1"}}
                show Prompt("second")
                event TurnStarted { turn: 2, text: "second" }
            "#]],
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32603, "message": "boom"}}),
            expect![[r#"
                show Settle
                show Note { style: Error, text: "orch: session/prompt failed: boom (code -32603)" }
                event TurnEnded { turn: 2, end: Failed("session/prompt failed: boom (code -32603)") }
            "#]],
        );
        assert_eq!(run.client.status().phase, AcpPhase::Idle);
    }

    #[test]
    fn prompts_are_bounded() {
        let mut run = Run::new(Options::default());
        assert!(matches!(
            run.client.prompt("  \n"),
            Err(AcpError::EmptyPrompt)
        ));
        let huge = "x".repeat(MAX_PROMPT_BYTES + 1);
        assert!(matches!(
            run.client.prompt(&huge),
            Err(AcpError::PromptTooLarge { .. })
        ));
        for _ in 0..MAX_QUEUED_PROMPTS {
            run.client.prompt("p").unwrap();
        }
        let full = run.client.prompt("p").unwrap_err();
        assert_eq!(full.to_string(), "agent a-1 already has 32 prompts waiting");
    }

    #[test]
    fn permission_answered() {
        let mut run = Run::ready(Options::default());
        run.client.prompt("go").unwrap();
        run.effects();
        run.check(
            json!({"jsonrpc": "2.0", "id": 0, "method": "session/request_permission", "params": {"sessionId": "s1",
                "toolCall": {"toolCallId": "t1", "title": "touch x", "kind": "execute", "status": "pending"},
                "options": [{"optionId": "allow-once", "name": "Yes", "kind": "allow_once"}, {"optionId": "reject", "name": "No", "kind": "reject_once"}]}}),
            expect![[r#"
                event PermissionRequested(PermissionRequest { id: 1, turn: Some(1), title: "touch x", tool_call: ToolCall { id: "t1", title: "touch x", kind: "execute", status: Some(Pending), content: [], locations: [], raw_input: None }, options: [PermissionOption { id: "allow-once", name: "Yes", kind: "allow_once" }, PermissionOption { id: "reject", name: "No", kind: "reject_once" }] })
                show Ask { id: 1, title: "touch x", options: [("Yes", "allow_once"), ("No", "reject_once")] }
            "#]],
        );
        assert_eq!(run.client.status().phase, AcpPhase::Waiting);
        assert_eq!(
            run.client.answer(1, "maybe").unwrap_err().to_string(),
            "permission request 1 has no option maybe; its options are allow-once, reject"
        );
        assert_eq!(
            run.client.answer(7, "reject").unwrap_err().to_string(),
            "agent a-1 has no open permission request 7"
        );
        run.client.answer(1, "allow-once").unwrap();
        expect![[r#"
            send {"id":0,"jsonrpc":"2.0","result":{"outcome":{"optionId":"allow-once","outcome":"selected"}}}
            show Asked { id: 1, outcome: "Yes" }
        "#]]
        .assert_eq(&run.effects());
        assert!(run.client.answer(1, "allow-once").is_err());
        // The tool call's later updates show only what changed.
        run.check(
            json!({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "s1", "update": {"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "completed"}}}),
            expect![[r#"
                show Tool(ToolView { id: "t1", title: "touch x", status: Some(Completed), detail: None })
                event Update { update: ToolCallUpdate(ToolCallUpdate { id: "t1", title: None, kind: None, status: Some(Completed), content: None, locations: None, raw_input: None, raw_output: None }), replay: false }
            "#]],
        );
    }

    #[test]
    fn cancel_dismisses_open_permissions() {
        let mut run = Run::ready(Options::default());
        assert!(!run.client.cancel().unwrap());
        run.client.prompt("go").unwrap();
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": "p", "method": "session/request_permission", "params": {
            "toolCall": {"toolCallId": "t1"}, "options": [{"optionId": "a", "name": "Allow", "kind": "allow_once"}]}}));
        assert!(run.client.cancel().unwrap());
        expect![[r#"
            send {"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"s1"}}
            send {"id":"p","jsonrpc":"2.0","result":{"outcome":{"outcome":"cancelled"}}}
            show Asked { id: 1, outcome: "dismissed: the turn was cancelled" }
            event PermissionDismissed { id: 1, why: "the turn was cancelled" }
        "#]]
        .assert_eq(&run.effects());
        // A second cancel sends nothing; a late request is refused at once.
        assert!(run.client.cancel().unwrap());
        assert_eq!(run.effects(), "");
        run.check(
            json!({"jsonrpc": "2.0", "id": 9, "method": "session/request_permission", "params": {
                "toolCall": {}, "options": [{"optionId": "a", "name": "Allow", "kind": "allow_once"}]}}),
            expect![[r#"
                send {"id":9,"jsonrpc":"2.0","result":{"_meta":{"orch":"no turn is running"},"outcome":{"outcome":"cancelled"}}}
            "#]],
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "cancelled"}}),
            expect![[r#"
                show Settle
                show Note { style: Dim, text: "[cancelled]" }
                event TurnEnded { turn: 1, end: Stopped(Cancelled) }
            "#]],
        );
    }

    #[test]
    fn a_turn_that_ends_dismisses_open_permissions() {
        let mut run = Run::ready(Options::default());
        run.client.prompt("go").unwrap();
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": 5, "method": "session/request_permission", "params": {
            "toolCall": {"toolCallId": "t1", "kind": "edit"}, "options": [{"optionId": "a", "name": "Allow", "kind": "allow_once"}]}}));
        run.check(
            json!({"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "refusal"}}),
            expect![[r#"
                send {"id":5,"jsonrpc":"2.0","result":{"outcome":{"outcome":"cancelled"}}}
                show Asked { id: 1, outcome: "dismissed: the turn ended" }
                event PermissionDismissed { id: 1, why: "the turn ended" }
                show Settle
                show Note { style: Dim, text: "[refusal]" }
                event TurnEnded { turn: 1, end: Stopped(Refusal) }
            "#]],
        );
    }

    #[test]
    fn exit_mid_turn_ends_everything() {
        let mut run = Run::ready(Options::default());
        run.client.prompt("one").unwrap();
        run.client.prompt("two").unwrap();
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": 5, "method": "session/request_permission", "params": {
            "toolCall": {"title": "rm"}, "options": [{"optionId": "a", "name": "Allow", "kind": "allow_once"}]}}));
        run.client.exited(Some(3), "boom");
        expect![[r#"
            show Note { style: Error, text: "orch: the agent exited with code 3; its last words on stderr: boom during the turn" }
            show Asked { id: 1, outcome: "dismissed: the agent exited with code 3" }
            event PermissionDismissed { id: 1, why: "the agent exited with code 3" }
            event TurnEnded { turn: 1, end: Failed("the agent exited with code 3 during the turn") }
            event TurnEnded { turn: 2, end: Failed("the agent exited with code 3 before the turn began") }
            show Settle
            show Note { style: Dim, text: "[the agent exited with code 3]" }
        "#]]
        .assert_eq(&run.effects());
        assert_eq!(
            run.client.prompt("three").unwrap_err().to_string(),
            "agent a-1 has ended: its process exited"
        );
        run.client.exited(Some(3), "");
        assert_eq!(run.effects(), "");
    }

    #[test]
    fn handshake_failures() {
        // Timeout.
        let mut run = Run::new(Options::default());
        run.effects();
        run.client.prompt("waits").unwrap();
        run.client.timed_out("initialize", 5);
        expect![[r#"
            event Failed("the agent did not answer initialize within 5 s")
            show Note { style: Error, text: "orch: the agent did not answer initialize within 5 s" }
            event TurnEnded { turn: 1, end: Failed("the agent failed before the turn began") }
            show Settle
            kill
        "#]]
        .assert_eq(&run.effects());
        run.client.exited(None, "");
        assert!(
            !run.effects().contains("Failed("),
            "a failure is reported once"
        );

        // An error answer, a newer protocol.
        let mut run = Run::new(Options::default());
        run.effects();
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad version"}}))
            .contains(r#"event Failed("initialize failed: bad version (code -32602)")"#));
        let mut run = Run::new(Options::default());
        run.effects();
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 2}}))
            .contains("the agent speaks ACP version 2, orch speaks version 1"));

        // Exit during start-up, with stderr.
        let mut run = Run::new(Options::default());
        run.effects();
        run.client.exited(Some(1), "Error: no such model");
        assert!(run.effects().contains(
            r#"event Failed("the agent exited with code 1; its last words on stderr: Error: no such model before its session was ready")"#
        ));
    }

    #[test]
    fn authentication_when_the_agent_requires_it() {
        let methods = json!([
            {"id": "oauth-personal", "name": "Log in with Google"},
            {"id": "gemini-api-key", "name": "Gemini API key", "_meta": {"api-key": {"provider": "google"}}}]);
        let mut run = Run::new(Options::default());
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": 1, "authMethods": methods}}));
        run.check(
            json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32000, "message": "Authentication required."}}),
            expect![[r#"
                show Note { style: Dim, text: "[authenticating with Gemini API key]" }
                send {"id":3,"jsonrpc":"2.0","method":"authenticate","params":{"methodId":"gemini-api-key"}}
            "#]],
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
            expect![[r#"
                send {"id":4,"jsonrpc":"2.0","method":"session/new","params":{"cwd":"/w","mcpServers":[]}}
            "#]],
        );
        // Required again after authenticating: no loop.
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32000, "message": "Authentication required."}}))
            .contains(r#"event Failed("session/new failed: Authentication required. (code -32000)")"#));

        // Only methods that need a person.
        let mut run = Run::new(Options::default());
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"authMethods": [{"id": "oauth-personal", "name": "Log in with Google"}]}}));
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32000, "message": "Authentication required."}}))
            .contains("the agent requires authentication (Authentication required.) and none of its methods works without a person: Log in with Google (oauth-personal)"));

        // A method named in the options is used first; one not offered is an error.
        let mut run = Run::new(Options {
            auth_method: Some("gemini-api-key".into()),
            ..Options::default()
        });
        run.effects();
        run.check(
            json!({"jsonrpc": "2.0", "id": 1, "result": {"authMethods": methods}}),
            expect![[r#"
                send {"id":2,"jsonrpc":"2.0","method":"authenticate","params":{"methodId":"gemini-api-key"}}
            "#]],
        );
        let mut run = Run::new(Options {
            auth_method: Some("token".into()),
            ..Options::default()
        });
        run.effects();
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"authMethods": methods}}))
            .contains("auth method token is not one the agent offers (Log in with Google (oauth-personal), Gemini API key (gemini-api-key))"));
    }

    #[test]
    fn resuming_a_session() {
        let resume = Options {
            resume: Some("old".into()),
            ..Options::default()
        };
        // session/load where offered; its replay is marked as such.
        let mut run = Run::new(resume.clone());
        run.effects();
        run.check(
            json!({"jsonrpc": "2.0", "id": 1, "result": {"agentCapabilities": {"loadSession": true, "sessionCapabilities": {"resume": {}}}}}),
            expect![[r#"
                send {"id":2,"jsonrpc":"2.0","method":"session/load","params":{"cwd":"/w","mcpServers":[],"sessionId":"old"}}
            "#]],
        );
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "old", "update": {"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": "hi"}}}}))
            .contains("replay: true"));
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 2, "result": {}}))
            .contains(
                r#"event Ready(Ready { session_id: "old", origin: Loaded, resume_error: None"#
            ));

        // session/resume where only that is offered.
        let mut run = Run::new(resume.clone());
        run.effects();
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"agentCapabilities": {"sessionCapabilities": {"resume": {}}}}}))
            .contains(r#""method":"session/resume""#));
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 2, "result": {}}))
            .contains("origin: Resumed"));

        // A failed load falls back to a new session and says why.
        let mut run = Run::new(resume.clone());
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": 1, "result": {"agentCapabilities": {"loadSession": true}}}));
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "Session not found"}}))
            .contains(r#""method":"session/new""#));
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 3, "result": {"sessionId": "new"}}))
            .contains(r#"session_id: "new", origin: New, resume_error: Some("session/load failed: Session not found (code -32603)")"#));

        // Neither offered.
        let mut run = Run::new(resume);
        run.effects();
        run.agent(json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        assert!(run
            .agent(json!({"jsonrpc": "2.0", "id": 2, "result": {"sessionId": "new"}}))
            .contains(r#"resume_error: Some("the agent supports neither session/load nor session/resume")"#));
    }

    #[test]
    fn bad_messages_are_problems_not_failures() {
        let mut run = Run::ready(Options::default());
        run.check(
            json!({"jsonrpc": "2.0", "id": 77, "result": {}}),
            expect![[r#"
                show Note { style: Error, text: "orch: the agent answered request 77, which orch did not send or was already answered" }
                event Problem("the agent answered request 77, which orch did not send or was already answered")
            "#]],
        );
        run.check(
            json!({"jsonrpc": "2.0", "id": 8, "method": "terminal/create", "params": {}}),
            expect![[r#"
                send {"error":{"code":-32601,"message":"orch does not offer terminal/create"},"id":8,"jsonrpc":"2.0"}
            "#]],
        );
        run.check(
            json!({"jsonrpc": "2.0", "method": "session/update", "params": {"update": {"sessionUpdate": "brand_new_kind", "x": 1}}}),
            expect![[r#"
                event Update { update: Other { kind: "brand_new_kind" }, replay: false }
            "#]],
        );
        assert_eq!(
            run.agent(json!({"jsonrpc": "2.0", "method": "_auth/status_update", "params": {}})),
            ""
        );
        for _ in 0..40 {
            run.client.malformed("not JSON", b"garbage");
        }
        let effects = run.effects();
        assert_eq!(effects.matches("event Problem").count(), 16, "{effects}");
        assert!(effects.contains("further ones are not reported"));
        assert_eq!(run.client.status().phase, AcpPhase::Idle);
    }
}
