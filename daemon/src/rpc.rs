//! The wire side of the daemon: the dispatch table from method names to `handle_*` functions,
//! parameter decoding, and conversion of results and errors; [`Rpc`] is what connections hand
//! their messages to (`transport::conn::Dispatch`), and `notify` is what the runtime's clients
//! are on the wire (`ports::ClientPort`).
//!
//! A request becomes a [`runtime::Call`](crate::runtime::Call): its handler runs on the
//! runtime's loop with `&mut Runtime`, decodes params, calls one runtime operation and converts
//! the result; the answer is delivered after the batch's commit. A handler whose answer comes
//! later (an agent stop waits for the exit) leaves a [`Waiter`] with the runtime and returns
//! [`OpError::Deferred`]. The runtime never sees JSON, request ids or wire errors.

pub mod convert;
pub mod notify;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use editor_protocol::errors;
use editor_protocol::jsonrpc::{excerpt, excerpt_quotes, ResponseError};
use editor_protocol::methods::{self as m, Method};
use editor_protocol::objects as wire;
use serde::Serialize;
use serde_json::{json, Value};

use crate::core::agent::{AgentProtocol, AgentState};
use crate::core::ids;
use crate::core::task::TaskState;
use crate::runtime::agents::{SpawnArgs, WorktreeArgs};
use crate::runtime::tasks::{CreateTask, GateArg};
use crate::runtime::{ConnId, Delivery, OpError, Runtime, RuntimeHandle, Waiter};
use crate::transport::conn::{Dispatch, Outbound, ReplyTo};

/// Default page size.
const DEFAULT_LIMIT: u64 = 100;
/// Largest page size.
const MAX_LIMIT: u64 = 1000;

type Handler = fn(&mut Runtime, &mut Call) -> Result<Json, OpError>;

/// A result serialized for the wire, straight from its wire type: no JSON value is built,
/// walked and dropped on the runtime's loop for each answer.
pub struct Json(Vec<u8>);

impl Json {
    /// `v` serialized.
    fn of<T: Serialize + ?Sized>(v: &T) -> Self {
        Json(serde_json::to_vec(v).expect("wire types serialize"))
    }
}

/// Where one call's answer goes.
enum Answer {
    /// A request's response, on its connection.
    Reply(ReplyTo),
    /// An `orch/*` notification: only its error is worth anything (the client's log).
    Logged(Box<dyn FnOnce(Option<ResponseError>) + Send>),
}

impl Answer {
    fn deliver(self, result: Result<Json, ResponseError>) {
        match self {
            Answer::Reply(r) => {
                r.send_json(result.map(|j| j.0));
            }
            Answer::Logged(done) => done(result.err()),
        }
    }
}

/// An answer a handler and a waiter it leaves behind may both reach: whoever takes it answers.
type Slot = Arc<Mutex<Option<Answer>>>;

/// One request being handled.
pub struct Call {
    /// Which connection.
    pub conn: ConnId,
    /// Raw params.
    pub params: Value,
    /// The answer, until a waiter takes it.
    answer: Slot,
}

impl Call {
    fn params<M: Method>(&mut self) -> Result<M::Params, OpError> {
        m::decode_params::<M::Params>(std::mem::take(&mut self.params)).map_err(|e| {
            OpError::Invalid {
                field: e.field,
                message: e.message,
            }
        })
    }

    /// A waiter for an answer that comes later, converted by `conv`. The handler returns
    /// [`OpError::Deferred`] once the runtime holds it; if the runtime refused before taking it,
    /// the handler's error is the answer.
    fn later<T: 'static, R: Serialize>(
        &self,
        conv: impl FnOnce(T) -> R + Send + 'static,
    ) -> Waiter<T> {
        let slot = self.answer.clone();
        Box::new(move |result: Result<T, OpError>| {
            let answer = slot.lock().unwrap().take();
            let result = result
                .map(|t| Json::of(&conv(t)))
                .map_err(to_response_error);
            Box::new(move || {
                if let Some(a) = answer {
                    a.deliver(result);
                }
            }) as Delivery
        })
    }
}

/// What connections hand their messages to: each becomes a call on the runtime's loop, in
/// arrival order.
pub struct Rpc {
    /// The runtime.
    rt: RuntimeHandle,
    /// Recent events' wire form, shared by every connection's subscriptions.
    events: Arc<notify::EventCache>,
}

impl Rpc {
    /// Dispatch to `rt`.
    pub fn new(rt: RuntimeHandle) -> Arc<Self> {
        Arc::new(Self {
            rt,
            events: Arc::default(),
        })
    }

    fn submit(&self, conn: ConnId, method: String, params: Value, answer: Answer) {
        let Some(handler) = TABLE
            .iter()
            .find(|(name, _)| *name == method)
            .map(|(_, h)| *h)
        else {
            return answer.deliver(Err(ResponseError::new(
                errors::METHOD_NOT_FOUND,
                "methodNotFound",
                format!("method not found: {}", excerpt(&method)),
            )
            .with("method", excerpt(&method))));
        };
        let live: Box<dyn Fn() -> bool + Send> = match &answer {
            Answer::Reply(r) => r.live_check(),
            Answer::Logged(_) => Box::new(|| true),
        };
        let slot: Slot = Arc::new(Mutex::new(Some(answer)));
        let job = move |rt: &mut Runtime| -> Option<Delivery> {
            let result = if rt.is_stopping() && method != m::Status::METHOD {
                Err(OpError::Conflict {
                    kind: "daemon",
                    id: "daemon".into(),
                    state: "stopping".into(),
                    what: format!("{method}: the daemon is stopping"),
                })
            } else {
                let mut call = Call {
                    conn,
                    params,
                    answer: slot.clone(),
                };
                handler(rt, &mut call)
            };
            if matches!(result, Err(OpError::Deferred)) {
                return None; // a waiter answers later
            }
            let answer = slot.lock().unwrap().take()?; // a waiter answered already
            let result = result.map_err(to_response_error);
            Some(Box::new(move || answer.deliver(result)))
        };
        self.rt.submit(crate::runtime::Call {
            conn,
            live,
            job: Box::new(job),
        });
    }
}

impl Dispatch for Rpc {
    fn open(&self, out: Outbound) -> ConnId {
        self.rt
            .open_connection(Arc::new(notify::WireClient::new(out, self.events.clone())))
    }

    fn close(&self, conn: ConnId) {
        self.rt.close_connection(conn);
    }

    fn request(&self, conn: ConnId, method: String, params: Value, reply: ReplyTo) {
        self.submit(conn, method, params, Answer::Reply(reply));
    }

    fn notification(
        &self,
        conn: ConnId,
        method: String,
        params: Value,
        done: Box<dyn FnOnce(Option<ResponseError>) + Send>,
    ) {
        self.submit(conn, method, params, Answer::Logged(done));
    }
}

fn ok<T: Serialize>(v: T) -> Result<Json, OpError> {
    Ok(Json::of(&v))
}

/// Every method the daemon serves, with its handler. `initialize` is here too: the connection
/// layer checks ordering, the runtime records capabilities.
pub const TABLE: &[(&str, Handler)] = &[
    ("initialize", handle_initialize),
    (m::Status::METHOD, handle_status),
    (m::AgentSpawn::METHOD, handle_agent_spawn),
    (m::AgentList::METHOD, handle_agent_list),
    (m::AgentGet::METHOD, handle_agent_get),
    (m::AgentSend::METHOD, handle_agent_send),
    (m::AgentStop::METHOD, handle_agent_stop),
    (m::AgentRestart::METHOD, handle_agent_restart),
    (m::AgentInterrupt::METHOD, handle_agent_interrupt),
    (m::AgentScreen::METHOD, handle_agent_screen),
    (m::AgentDiff::METHOD, handle_agent_diff),
    (m::AgentMerge::METHOD, handle_agent_merge),
    (m::AgentDiscard::METHOD, handle_agent_discard),
    (m::AgentPause::METHOD, handle_agent_pause),
    (m::AgentResume::METHOD, handle_agent_resume),
    (m::TerminalOpen::METHOD, handle_terminal_open),
    (m::TerminalList::METHOD, handle_terminal_list),
    (m::TerminalWrite::METHOD, handle_terminal_write),
    (m::TerminalResize::METHOD, handle_terminal_resize),
    (m::TerminalScreen::METHOD, handle_terminal_screen),
    (m::TerminalSubscribe::METHOD, handle_terminal_subscribe),
    (m::TerminalUnsubscribe::METHOD, handle_terminal_unsubscribe),
    (m::TerminalClose::METHOD, handle_terminal_close),
    (m::SessionCreate::METHOD, handle_session_create),
    (m::SessionList::METHOD, handle_session_list),
    (m::SessionClose::METHOD, handle_session_close),
    (m::TaskCreate::METHOD, handle_task_create),
    (m::TaskList::METHOD, handle_task_list),
    (m::TaskGet::METHOD, handle_task_get),
    (m::TaskAssign::METHOD, handle_task_assign),
    (m::TaskComplete::METHOD, handle_task_complete),
    (m::TaskCancel::METHOD, handle_task_cancel),
    (m::DecisionList::METHOD, handle_decision_list),
    (m::DecisionResolve::METHOD, handle_decision_resolve),
    (m::EventsSubscribe::METHOD, handle_events_subscribe),
    (m::EventsUnsubscribe::METHOD, handle_events_unsubscribe),
    (m::EventsQuery::METHOD, handle_events_query),
    (m::ConfigGet::METHOD, handle_config_get),
    (m::ConfigReload::METHOD, handle_config_reload),
    (m::JobsList::METHOD, handle_jobs_list),
    (m::JobsPause::METHOD, handle_jobs_pause),
    (m::JobsResume::METHOD, handle_jobs_resume),
    (m::DaemonStop::METHOD, handle_daemon_stop),
    (m::Hook::METHOD, handle_hook),
    ("workspace/executeCommand", handle_execute_command),
];

/// `%20` and friends in a `file://` URI path, back to bytes.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Longest error message sent, under the excerpts: input a handler's message names without
/// quotes (a path, say) is bounded too.
const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// An [`OpError`] on the wire. Ids and field paths come from the client: only their excerpts are
/// quoted, in the message and in `data`, and so are the quoted values in handlers' messages (a
/// 10 MB name was repeated back whole).
pub fn to_response_error(e: OpError) -> ResponseError {
    let e = match e {
        OpError::Invalid { field, message } => OpError::Invalid {
            field: excerpt(&field),
            message,
        },
        OpError::NotFound { kind, id } => OpError::NotFound {
            kind,
            id: excerpt(&id),
        },
        OpError::Conflict {
            kind,
            id,
            state,
            what,
        } => OpError::Conflict {
            kind,
            id: excerpt(&id),
            state,
            what,
        },
        e => e,
    };
    let mut message = excerpt_quotes(&e.to_string());
    if let Some((cut, _)) = message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    match e {
        OpError::Invalid { field, .. } => {
            ResponseError::new(errors::INVALID_PARAMS, "invalidParams", message)
                .with("field", field)
        }
        OpError::NotFound { kind, id } => {
            ResponseError::new(errors::NOT_FOUND, kind, message).with("id", id)
        }
        OpError::Conflict {
            kind, id, state, ..
        } => ResponseError::new(errors::CONFLICT, kind, message)
            .with("id", id)
            .with("state", state),
        OpError::Refused { id, .. } => {
            ResponseError::new(errors::CONFLICT, "agent", message).with("id", id)
        }
        OpError::MergeConflict { id, files } => {
            ResponseError::new(errors::CONFLICT, "agent", message)
                .with("id", id)
                .with("state", "conflict")
                .with("files", files)
        }
        OpError::BackendUnavailable { backend, .. } => {
            ResponseError::new(errors::BACKEND_UNAVAILABLE, "backend", message)
                .with("backend", backend)
        }
        OpError::Limit { limit, max } => {
            ResponseError::new(errors::LIMIT_EXCEEDED, "limit", message)
                .with("limit", limit)
                .with("max", max)
        }
        OpError::Internal(_) | OpError::Deferred => {
            ResponseError::new(errors::INTERNAL_ERROR, "internal", message)
        }
    }
}

/// Page through `items` (already in creation order) by id cursor.
fn page<T, W: Serialize>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    limit: Option<u64>,
    cursor: Option<&str>,
    conv: impl Fn(&T) -> W,
) -> Result<Json, OpError> {
    let limit = check_limit(limit)? as usize;
    let after = cursor.map(ids::order_key);
    let rest: Vec<&T> = items
        .iter()
        .filter(|i| after.is_none_or(|c| ids::order_key(id(i)) > c))
        .collect();
    let taken = &rest[..rest.len().min(limit)];
    let next_cursor = (rest.len() > limit).then(|| id(taken[taken.len() - 1]).to_string());
    ok(wire::Page {
        items: taken.iter().map(|t| conv(t)).collect(),
        next_cursor,
    })
}

fn check_limit(limit: Option<u64>) -> Result<u64, OpError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(OpError::invalid("limit", "must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(OpError::invalid(
            "limit",
            format!("{n} exceeds the maximum of {MAX_LIMIT}"),
        )),
        Some(n) => Ok(n),
    }
}

fn sorted<'a, T>(it: impl Iterator<Item = &'a T>, id: impl Fn(&T) -> &str) -> Vec<&'a T> {
    let mut v: Vec<&T> = it.collect();
    v.sort_by(|a, b| ids::order_key(id(a)).cmp(&ids::order_key(id(b))));
    v
}

fn handle_initialize(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = std::mem::take(&mut call.params);
    let window = &p["capabilities"]["window"];
    let show_message = window.get("showMessage").is_some_and(|v| !v.is_null());
    let progress = window["workDoneProgress"].as_bool().unwrap_or(false);
    // PROTOCOL.md: the workspace is workspaceFolders[0], else rootUri, else the daemon's own. A
    // daemon serves one workspace; a client naming another (not below it) is told so.
    let uri = p["workspaceFolders"][0]["uri"]
        .as_str()
        .or(p["rootUri"].as_str())
        .map(str::to_string);
    let asked = uri
        .as_deref()
        .and_then(|u| u.strip_prefix("file://"))
        .map(percent_decode)
        .map(|path| std::fs::canonicalize(&path).unwrap_or_else(|_| path.into()));
    rt.client_initialized(call.conn, show_message, progress, asked);
    let commands: Vec<String> = m::ALL.iter().map(|m| m::command_name(m)).collect();
    ok(json!({
        "serverInfo": { "name": "orch", "version": crate::VERSION },
        "capabilities": {
            "executeCommandProvider": { "commands": commands },
            "experimental": { "orch": {
                "protocolVersion": editor_protocol::PROTOCOL_VERSION,
                "backends": rt.backend_names(),
                "workspace": rt.paths().root.display().to_string(),
            } }
        }
    }))
}

fn handle_status(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    call.params::<m::Status>()?;
    let state = rt.state();
    let mut by_state = BTreeMap::new();
    let mut live = 0u64;
    for a in state.agents.values() {
        *by_state.entry(a.state.as_str().to_string()).or_insert(0u64) += 1;
        live += u64::from(a.state.is_live());
    }
    let status = rt.status();
    ok(wire::Status {
        workspace: status.workspace,
        version: crate::VERSION.into(),
        pid: status.pid,
        uptime_ms: status.uptime.as_millis() as u64,
        protocol_version: editor_protocol::PROTOCOL_VERSION,
        agents: wire::AgentCounts {
            total: state.agents.len() as u64,
            by_state,
        },
        clients: status.clients as u64,
        last_seq: state.last_seq,
        backends: status
            .backends
            .into_iter()
            .map(|(name, p)| wire::BackendInfo {
                name: name.into(),
                available: p.available,
                detail: p.detail,
            })
            .collect(),
        store: wire::StoreInfo {
            path: status.store_path,
            size_bytes: status.store_bytes,
            snapshot_seq: status.loaded.0,
            replayed: status.loaded.1,
        },
        hosts: status
            .hosts
            .into_iter()
            .map(|(name, h)| wire::HostInfo {
                name,
                state: h.state.as_str().into(),
                tmux_version: h.tmux_version,
                rtt_ms: h.rtt_ms,
                detail: h.detail,
            })
            .collect(),
        limits: wire::Limits {
            live_agents: crate::runtime::agents::MAX_LIVE_TERMINALS as u64,
            live_agents_now: live,
        },
    })
}

fn handle_agent_spawn(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentSpawn>()?;
    if p.env.as_ref().is_some_and(|e| e.len() > 256) {
        return Err(OpError::Limit {
            limit: "env entries",
            max: 256,
        });
    }
    let protocol = match p.protocol.as_deref() {
        None => None,
        Some("pty") => Some(AgentProtocol::Pty),
        Some("acp") => Some(AgentProtocol::Acp),
        Some(other) => {
            return Err(OpError::invalid(
                "protocol",
                format!("{other:?} is not a protocol; expected \"pty\" or \"acp\""),
            ))
        }
    };
    let worktree = match p.worktree {
        None => None,
        Some(m::WorktreeParam::On(false)) => Some(None),
        Some(m::WorktreeParam::On(true)) => Some(Some(WorktreeArgs::default())),
        Some(m::WorktreeParam::With(w)) => Some(Some(WorktreeArgs {
            branch: w.branch,
            base: w.base,
        })),
    };
    // Answered once the agent runs: at once, or once its worktree is made.
    let spawned = call.later(|a| convert::agent(&a));
    rt.spawn(
        SpawnArgs {
            kind: p.kind,
            protocol,
            command: p.command,
            name: p.name,
            cwd: p.cwd,
            env: p.env.unwrap_or_default(),
            backend: p.backend,
            host: p.host,
            session: p.session_id,
            cols: p.cols,
            rows: p.rows,
            worktree,
        },
        spawned,
    )?;
    Err(OpError::Deferred)
}

fn handle_agent_diff(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentDiff>()?;
    let shown = call.later(
        |(d, w): (crate::ports::DiffReport, crate::core::agent::WorktreeRecord)| {
            m::AgentDiffResult {
                base: d.base,
                merge_base: d.merge_base,
                branch: d.branch,
                path: (!w.paused).then_some(w.path),
                files: d
                    .files
                    .into_iter()
                    .map(|f| m::ChangedFile {
                        path: f.path,
                        status: f.status.into(),
                        old_path: f.old_path,
                        additions: f.additions,
                        deletions: f.deletions,
                        binary: f.binary,
                    })
                    .collect(),
                diff: d.diff,
                truncated: d.truncated,
            }
        },
    );
    rt.diff_agent(&p.id, p.base, shown)?;
    Err(OpError::Deferred)
}

fn handle_agent_merge(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentMerge>()?;
    let landed = call.later(|l: crate::ports::Landed| m::AgentMergeResult {
        commit: l.commit,
        files: l.files,
    });
    let strategy = p.strategy.unwrap_or_else(|| "merge".into());
    rt.merge_agent(&p.id, strategy, p.message, Some(landed))?;
    Err(OpError::Deferred)
}

fn handle_agent_discard(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentDiscard>()?;
    let gone = call.later(|()| json!({}));
    rt.discard_agent(&p.id, p.force.unwrap_or(false), gone)?;
    Err(OpError::Deferred)
}

fn handle_agent_pause(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentPause>()?;
    let paused = call.later(|a| convert::agent(&a));
    rt.pause_agent(&p.id, paused)?;
    Err(OpError::Deferred)
}

fn handle_agent_resume(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentResume>()?;
    let resumed = call.later(|a| convert::agent(&a));
    rt.resume_agent(&p.id, resumed)?;
    Err(OpError::Deferred)
}

fn handle_agent_list(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentList>()?;
    let state = match &p.state {
        Some(s) => Some(
            AgentState::parse(s)
                .ok_or_else(|| OpError::invalid("state", format!("{s:?} is not an agent state")))?,
        ),
        None => None,
    };
    let session = match &p.session_id {
        Some(s) => Some(
            rt.state()
                .session(s)
                .ok_or_else(|| OpError::NotFound {
                    kind: "session",
                    id: s.clone(),
                })?
                .id
                .clone(),
        ),
        None => None,
    };
    let items = sorted(
        rt.state().agents.values().filter(|a| {
            state.is_none_or(|s| a.state == s)
                && session.as_ref().is_none_or(|s| &a.session_id == s)
        }),
        |a| &a.id,
    );
    page(
        items,
        |a| &a.id,
        p.limit,
        p.cursor.as_deref(),
        |a| convert::agent(a),
    )
}

fn handle_agent_get(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentGet>()?;
    ok(convert::agent(rt.agent_ref(&p.id)?))
}

fn handle_agent_send(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentSend>()?;
    // Answered once the text was typed (an agent that does not take input yet gets it later).
    let typed = call.later(|()| json!({}));
    rt.send_to_agent(&p.id, &p.text, p.submit.unwrap_or(true), Some(typed))?;
    Err(OpError::Deferred)
}

fn handle_agent_stop(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentStop>()?;
    // Answered with the stopped agent when its process has exited.
    let stopped = call.later(|a| convert::agent(&a));
    rt.stop_agent_for(call.conn, &p.id, p.force.unwrap_or(false), stopped)?;
    Err(OpError::Deferred)
}

fn handle_agent_restart(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentRestart>()?;
    ok(convert::agent(&rt.restart_agent(&p.id)?))
}

fn handle_agent_interrupt(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentInterrupt>()?;
    rt.interrupt_agent(&p.id)?;
    ok(m::Empty {})
}

fn handle_hook(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::Hook>()?;
    let event = convert::hook_event(&p.event)?;
    rt.on_hook(&p.agent_id, p.terminal_id.as_deref(), event)?;
    ok(m::Empty {})
}

fn handle_agent_screen(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::AgentScreen>()?;
    let agent = rt.agent_ref(&p.id)?.clone();
    screen_of(rt, &agent.terminal_id, p.scrollback)
}

fn screen_of(rt: &Runtime, terminal: &str, scrollback: Option<u32>) -> Result<Json, OpError> {
    const MAX_SCROLLBACK: u32 = 100_000;
    let scrollback = scrollback.unwrap_or(0);
    if scrollback > MAX_SCROLLBACK {
        return Err(OpError::invalid(
            "scrollback",
            format!("{scrollback} exceeds the maximum of {MAX_SCROLLBACK}"),
        ));
    }
    ok(convert::screen(
        rt.terminal_screen(terminal, scrollback as usize)?,
    ))
}

fn handle_terminal_open(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalOpen>()?;
    let t = rt.open_terminal(
        p.command,
        p.cwd,
        p.env.unwrap_or_default(),
        p.backend,
        p.cols,
        p.rows,
    )?;
    ok(convert::terminal(&t, None))
}

fn handle_terminal_list(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalList>()?;
    let items = sorted(rt.state().terminals.values().filter(|t| !t.closed), |t| {
        &t.id
    });
    let titles: BTreeMap<String, Option<String>> = items
        .iter()
        .map(|t| (t.id.clone(), rt.terminal_title(&t.id)))
        .collect();
    page(
        items,
        |t| &t.id,
        p.limit,
        p.cursor.as_deref(),
        |t| convert::terminal(t, titles.get(&t.id).cloned().flatten()),
    )
}

fn handle_terminal_write(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalWrite>()?;
    rt.write_terminal(&p.id, &p.data)?;
    ok(m::Empty {})
}

fn handle_terminal_resize(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalResize>()?;
    rt.resize_terminal(&p.id, p.cols, p.rows)?;
    ok(m::Empty {})
}

fn handle_terminal_screen(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalScreen>()?;
    screen_of(rt, &p.id, p.scrollback)
}

fn handle_terminal_subscribe(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalSubscribe>()?;
    // An agent's id or name is accepted too: it means the agent's current terminal.
    rt.follow_terminal(call.conn, &p.id)?;
    ok(m::Empty {})
}

fn handle_terminal_unsubscribe(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalUnsubscribe>()?;
    rt.unfollow_terminal(call.conn, &p.id)?;
    ok(m::Empty {})
}

fn handle_terminal_close(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TerminalClose>()?;
    rt.close_terminal(&p.id)?;
    ok(m::Empty {})
}

fn handle_session_create(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::SessionCreate>()?;
    let session = rt.create_session(p.name)?;
    ok(convert::session(&session, rt.state()))
}

fn handle_session_list(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::SessionList>()?;
    let closed = match p.state.as_deref() {
        None => None,
        Some("active") => Some(false),
        Some("closed") => Some(true),
        Some(s) => {
            return Err(OpError::invalid(
                "state",
                format!("{s:?} is not \"active\" or \"closed\""),
            ))
        }
    };
    let items = sorted(
        rt.state()
            .sessions
            .values()
            .filter(|s| closed.is_none_or(|c| s.closed == c)),
        |s| &s.id,
    );
    page(
        items,
        |s| &s.id,
        p.limit,
        p.cursor.as_deref(),
        |s| convert::session(s, rt.state()),
    )
}

fn handle_session_close(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::SessionClose>()?;
    let session = rt.close_session(&p.id, p.stop_agents.unwrap_or(false))?;
    ok(convert::session(&session, rt.state()))
}

fn handle_task_create(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TaskCreate>()?;
    let gates = p.gates.map(|gs| {
        gs.into_iter()
            .map(|g| match g {
                m::GateRef::Name(n) => GateArg::Name(n),
                m::GateRef::Inline(i) => GateArg::Inline(crate::core::task::GateSpec {
                    name: i.name,
                    command: i.command,
                    timeout_s: i.timeout_s.unwrap_or(900),
                }),
            })
            .collect()
    });
    let req = CreateTask {
        title: p.title,
        prompt: p.prompt,
        priority: p.priority,
        agent: p.agent_id,
        gates,
        max_attempts: p.max_attempts,
        merge: p.merge,
        agents: p.agents,
    };
    if req.agents.is_none() {
        return ok(convert::task(&rt.create_task(req)?));
    }
    // Best of N: answered once its candidates' agents run (kinds are spawned first).
    let created = call.later(|t| convert::task(&t));
    rt.create_best_of(req, created)?;
    Err(OpError::Deferred)
}

fn handle_task_list(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TaskList>()?;
    let state = match &p.state {
        Some(s) => Some(
            TaskState::parse(s)
                .ok_or_else(|| OpError::invalid("state", format!("{s:?} is not a task state")))?,
        ),
        None => None,
    };
    let agent = match &p.agent_id {
        Some(a) => Some(rt.agent_ref(a)?.id.clone()),
        None => None,
    };
    let items = sorted(
        rt.state().tasks.values().filter(|t| {
            state.is_none_or(|s| t.state == s)
                && agent
                    .as_ref()
                    .is_none_or(|a| t.agent_id.as_ref() == Some(a))
        }),
        |t| &t.id,
    );
    page(
        items,
        |t| &t.id,
        p.limit,
        p.cursor.as_deref(),
        |t| convert::task(t),
    )
}

fn handle_task_get(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TaskGet>()?;
    ok(convert::task(rt.task_ref(&p.id)?))
}

fn handle_task_assign(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TaskAssign>()?;
    ok(convert::task(&rt.assign_task(&p.id, &p.agent_id)?))
}

fn handle_task_complete(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TaskComplete>()?;
    ok(convert::task(&rt.complete_task(&p.id, p.summary)?))
}

fn handle_task_cancel(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::TaskCancel>()?;
    ok(convert::task(&rt.cancel_task(&p.id)?))
}

fn handle_decision_list(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::DecisionList>()?;
    let resolved = match p.state.as_deref() {
        None => None,
        Some("pending") => Some(false),
        Some("resolved") => Some(true),
        Some(s) => {
            return Err(OpError::invalid(
                "state",
                format!("{s:?} is not \"pending\" or \"resolved\""),
            ))
        }
    };
    let items = sorted(
        rt.state()
            .decisions
            .values()
            .filter(|d| resolved.is_none_or(|r| d.resolved == r)),
        |d| &d.id,
    );
    page(
        items,
        |d| &d.id,
        p.limit,
        p.cursor.as_deref(),
        |d| convert::decision(d),
    )
}

fn handle_decision_resolve(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::DecisionResolve>()?;
    ok(convert::decision(
        &rt.resolve_decision(&p.id, &p.choice, p.reason)?,
    ))
}

fn filters(
    kinds: Option<Vec<String>>,
    subjects: Option<Vec<String>>,
) -> Result<(Vec<String>, Vec<String>), OpError> {
    const MAX_FILTERS: usize = 256;
    let kinds = kinds.unwrap_or_default();
    let subjects = subjects.unwrap_or_default();
    if kinds.len() > MAX_FILTERS {
        return Err(OpError::Limit {
            limit: "kinds",
            max: MAX_FILTERS as u64,
        });
    }
    if subjects.len() > MAX_FILTERS {
        return Err(OpError::Limit {
            limit: "subjects",
            max: MAX_FILTERS as u64,
        });
    }
    Ok((kinds, subjects))
}

fn handle_events_subscribe(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::EventsSubscribe>()?;
    let (kinds, subjects) = filters(p.kinds, p.subjects)?;
    let (id, last) = rt.subscribe_events(call.conn, kinds, subjects, p.since)?;
    ok(m::EventsSubscribeResult {
        subscription_id: id,
        last_seq: last,
    })
}

fn handle_events_unsubscribe(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::EventsUnsubscribe>()?;
    rt.unsubscribe_events(call.conn, &p.subscription_id)?;
    ok(m::Empty {})
}

fn handle_events_query(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::EventsQuery>()?;
    let (kinds, subjects) = filters(p.kinds, p.subjects)?;
    let limit = check_limit(p.limit)? as usize;
    // Asked from a seq the log no longer has: say so. Without one, read what is kept.
    if let (None, Some(since)) = (&p.cursor, p.since) {
        rt.check_since_available(since)?;
    }
    let from = match &p.cursor {
        Some(c) => c.parse::<u64>().map_err(|_| {
            OpError::invalid(
                "cursor",
                format!("{c:?} is not a cursor from a previous page"),
            )
        })?,
        None => p.since.unwrap_or(0),
    };
    let (events, next) = rt.query_events(from, &kinds, &subjects, limit)?;
    ok(wire::Page {
        items: events.iter().map(convert::event).collect(),
        next_cursor: next.map(|n| n.to_string()),
    })
}

fn handle_config_get(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    call.params::<m::ConfigGet>()?;
    ok(rt.config().to_json())
}

fn handle_config_reload(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    call.params::<m::ConfigReload>()?;
    rt.reload_config()?;
    ok(rt.config().to_json())
}

fn job(j: &crate::runtime::tasks::Job) -> wire::Job {
    wire::Job {
        name: j.name.into(),
        every_s: j.every.as_secs(),
        paused: j.paused,
        last_run: j.last_run.clone(),
        last_ok: j.last_ok,
    }
}

fn handle_jobs_list(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    call.params::<m::JobsList>()?;
    ok(rt.jobs().iter().map(job).collect::<Vec<_>>())
}

fn handle_jobs_pause(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::JobsPause>()?;
    ok(job(&rt.set_job_paused(&p.name, true)?))
}

fn handle_jobs_resume(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = call.params::<m::JobsResume>()?;
    ok(job(&rt.set_job_paused(&p.name, false)?))
}

fn handle_daemon_stop(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    call.params::<m::DaemonStop>()?;
    // Answered once every agent stopped and the state is flushed.
    rt.begin_daemon_stop(call.later(|()| json!({})));
    Err(OpError::Deferred)
}

fn handle_execute_command(rt: &mut Runtime, call: &mut Call) -> Result<Json, OpError> {
    let p = std::mem::take(&mut call.params);
    let command = p["command"].as_str().ok_or_else(|| {
        OpError::invalid(
            "command",
            "must be a string naming an orch.<noun>.<verb> command",
        )
    })?;
    let method = m::method_of_command(command)
        .ok_or_else(|| OpError::invalid("command", format!("unknown command {command:?}")))?;
    let args = match &p["arguments"] {
        Value::Null => Value::Null,
        Value::Array(a) if a.len() <= 1 => a.first().cloned().unwrap_or(Value::Null),
        Value::Array(_) => {
            return Err(OpError::invalid(
                "arguments",
                "takes at most one element: the method's params",
            ))
        }
        _ => return Err(OpError::invalid("arguments", "must be an array")),
    };
    let handler = TABLE
        .iter()
        .find(|(n, _)| *n == method)
        .map(|(_, h)| *h)
        .expect("every command has a handler");
    call.params = args;
    handler(rt, call)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method of the contract has a handler, and every handler is in the contract.
    #[test]
    fn table_matches_the_contract() {
        for method in m::ALL {
            assert!(
                TABLE.iter().any(|(n, _)| n == method),
                "{method} has no handler"
            );
        }
        for (name, _) in TABLE {
            assert!(
                m::ALL.contains(name) || ["initialize", "workspace/executeCommand"].contains(name),
                "{name} is not in the contract"
            );
        }
    }
}
