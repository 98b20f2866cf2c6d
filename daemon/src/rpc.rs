//! The only place that knows the wire: the dispatch table from method names to `handle_*`
//! functions, parameter decoding, and conversion of results and errors.
//!
//! Handlers run on the runtime's loop with `&mut Runtime`. A handler that must answer later (an
//! agent stop waits for the exit) takes the reply channel out of `reply` and returns
//! [`OpError::Deferred`].

pub mod convert;
pub mod notify;

use std::collections::BTreeMap;

use editor_protocol::errors;
use editor_protocol::jsonrpc::{excerpt, excerpt_quotes, ResponseError};
use editor_protocol::methods::{self as m, Method};
use editor_protocol::objects as wire;
use serde::Serialize;
use serde_json::{json, Value};

use crate::core::agent::AgentState;
use crate::core::ids;
use crate::core::task::TaskState;
use crate::runtime::agents::SpawnArgs;
use crate::runtime::tasks::{CreateTask, GateArg};
use crate::runtime::{ConnId, OpError, Reply, Runtime};

/// Default page size.
const DEFAULT_LIMIT: u64 = 100;
/// Largest page size.
const MAX_LIMIT: u64 = 1000;

type Handler = fn(&mut Runtime, &mut Call) -> Result<Value, OpError>;

/// One request being handled.
pub struct Call {
    /// Which connection.
    pub conn: ConnId,
    /// Raw params.
    pub params: Value,
    /// The reply channel, for handlers that answer later.
    pub reply: Option<Reply>,
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
}

fn ok<T: Serialize>(v: T) -> Result<Value, OpError> {
    Ok(serde_json::to_value(v).expect("wire types serialize"))
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

/// Handle one request on the loop.
pub fn dispatch(
    rt: &mut Runtime,
    conn: ConnId,
    method: &str,
    params: Value,
    reply: &mut Option<Reply>,
) -> Result<Value, ResponseError> {
    let Some((_, handler)) = TABLE.iter().find(|(name, _)| *name == method) else {
        return Err(ResponseError::new(
            errors::METHOD_NOT_FOUND,
            "methodNotFound",
            format!("method not found: {}", excerpt(method)),
        )
        .with("method", excerpt(method)));
    };
    let mut call = Call {
        conn,
        params,
        reply: reply.take(),
    };
    let result = handler(rt, &mut call);
    // Handlers that did not defer leave the reply for the commit.
    *reply = call.reply.take();
    result.map_err(to_response_error)
}

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
) -> Result<Value, OpError> {
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

fn handle_initialize(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = std::mem::take(&mut call.params);
    let window = &p["capabilities"]["window"];
    let show_message = window.get("showMessage").is_some_and(|v| !v.is_null());
    let progress = window["workDoneProgress"].as_bool().unwrap_or(false);
    if let Some(c) = rt.conns.get_mut(&call.conn) {
        c.show_message = show_message;
        c.work_done_progress = progress;
    }
    // PROTOCOL.md: the workspace is workspaceFolders[0], else rootUri, else the daemon's own. A
    // daemon serves one workspace; a client naming another (not below it) is told so.
    let uri = p["workspaceFolders"][0]["uri"]
        .as_str()
        .or(p["rootUri"].as_str())
        .map(str::to_string);
    if let Some(path) = uri
        .as_deref()
        .and_then(|u| u.strip_prefix("file://"))
        .map(percent_decode)
    {
        let asked = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone().into());
        if !asked.starts_with(&rt.paths.root) {
            if let Some(c) = rt.conns.get(&call.conn) {
                let message = format!(
                    "orch: this daemon serves {}, not {}; start `orch lsp` in that workspace for its agents",
                    rt.paths.root.display(),
                    asked.display()
                );
                c.out.notify(
                    "window/logMessage",
                    json!({ "type": 2, "message": message }),
                );
            }
        }
    }
    if show_message {
        // Offered after this batch's commit, when every pending decision is durable.
        rt.offer_after_commit.push(call.conn);
    }
    let commands: Vec<String> = m::ALL.iter().map(|m| m::command_name(m)).collect();
    let backends: Vec<&str> = rt.backends.keys().copied().collect();
    Ok(json!({
        "serverInfo": { "name": "orch", "version": crate::VERSION },
        "capabilities": {
            "executeCommandProvider": { "commands": commands },
            "experimental": { "orch": {
                "protocolVersion": editor_protocol::PROTOCOL_VERSION,
                "backends": backends,
                "workspace": rt.paths.root.display().to_string(),
            } }
        }
    }))
}

fn handle_status(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    call.params::<m::Status>()?;
    let mut by_state = BTreeMap::new();
    for a in rt.state.agents.values() {
        *by_state.entry(a.state.as_str().to_string()).or_insert(0u64) += 1;
    }
    ok(wire::Status {
        workspace: rt.paths.root.display().to_string(),
        version: crate::VERSION.into(),
        pid: std::process::id(),
        uptime_ms: rt.uptime().as_millis() as u64,
        protocol_version: editor_protocol::PROTOCOL_VERSION,
        agents: wire::AgentCounts {
            total: rt.state.agents.len() as u64,
            by_state,
        },
        clients: rt.conns.len() as u64,
        last_seq: rt.state.last_seq,
        backends: rt
            .backends
            .values()
            .map(|b| {
                let p = b.probe();
                wire::BackendInfo {
                    name: b.name().into(),
                    available: p.available,
                    detail: p.detail,
                }
            })
            .collect(),
        store: wire::StoreInfo {
            path: rt.store.path().display().to_string(),
            size_bytes: rt.store.size_bytes(),
            snapshot_seq: rt.loaded.0,
            replayed: rt.loaded.1,
        },
    })
}

fn handle_agent_spawn(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentSpawn>()?;
    if p.env.as_ref().is_some_and(|e| e.len() > 256) {
        return Err(OpError::Limit {
            limit: "env entries",
            max: 256,
        });
    }
    let a = rt.spawn_agent(SpawnArgs {
        kind: p.kind,
        command: p.command,
        name: p.name,
        cwd: p.cwd,
        env: p.env.unwrap_or_default(),
        backend: p.backend,
        session: p.session_id,
        cols: p.cols,
        rows: p.rows,
    })?;
    ok(convert::agent(&a))
}

fn handle_agent_list(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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
            rt.state
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
        rt.state.agents.values().filter(|a| {
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

fn handle_agent_get(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentGet>()?;
    ok(convert::agent(rt.agent_ref(&p.id)?))
}

fn handle_agent_send(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentSend>()?;
    // Answered once the text was typed (an agent that does not take input yet gets it later).
    rt.agent_terminal(&p.id, "cannot send text")?;
    let reply = call.reply.take().expect("reply present until taken");
    let _ = rt.send_to_agent(&p.id, &p.text, p.submit.unwrap_or(true), Some(reply));
    Err(OpError::Deferred)
}

fn handle_agent_stop(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentStop>()?;
    let id = rt.stop_agent(&p.id, p.force.unwrap_or(false))?;
    // Answered with the stopped agent when its process has exited.
    let reply = call.reply.take().expect("reply present until taken");
    rt.waiters.entry(id).or_default().push((reply, call.conn));
    Err(OpError::Deferred)
}

fn handle_agent_restart(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentRestart>()?;
    ok(convert::agent(&rt.restart_agent(&p.id)?))
}

fn handle_agent_interrupt(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentInterrupt>()?;
    rt.interrupt_agent(&p.id)?;
    ok(m::Empty {})
}

fn handle_hook(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::Hook>()?;
    let event = convert::hook_event(&p.event)?;
    rt.on_hook(&p.agent_id, p.terminal_id.as_deref(), event)?;
    ok(m::Empty {})
}

fn handle_agent_screen(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::AgentScreen>()?;
    let agent = rt.agent_ref(&p.id)?.clone();
    screen_of(rt, &agent.terminal_id, p.scrollback)
}

fn screen_of(rt: &Runtime, terminal: &str, scrollback: Option<u32>) -> Result<Value, OpError> {
    const MAX_SCROLLBACK: u32 = 100_000;
    let scrollback = scrollback.unwrap_or(0);
    if scrollback > MAX_SCROLLBACK {
        return Err(OpError::invalid(
            "scrollback",
            format!("{scrollback} exceeds the maximum of {MAX_SCROLLBACK}"),
        ));
    }
    let rec = rt.terminal_record(terminal)?;
    let Some(term) = rt.terminals.get(terminal) else {
        // An ended terminal's last screen, while it is still kept.
        if let Some(last) = rt.final_screens.get(terminal) {
            let mut s = last.clone();
            let keep = (s.rows as usize + scrollback as usize).min(s.lines.len());
            s.lines.drain(..s.lines.len() - keep);
            return ok(convert::screen(s));
        }
        return Err(OpError::Conflict {
            kind: "terminal",
            id: terminal.into(),
            state: if rec.closed {
                "closed".into()
            } else {
                "gone (its process did not survive a daemon restart; see its output log)".into()
            },
            what: "no screen".into(),
        });
    };
    let s = term
        .screen(scrollback as usize)
        .map_err(|e| OpError::Internal(e.to_string()))?;
    ok(convert::screen(s))
}

fn handle_terminal_open(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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

fn handle_terminal_list(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TerminalList>()?;
    let items = sorted(rt.state.terminals.values().filter(|t| !t.closed), |t| &t.id);
    let titles: BTreeMap<String, Option<String>> = items
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                rt.terminals
                    .get(&t.id)
                    .and_then(|h| h.screen(0).ok())
                    .and_then(|s| s.title),
            )
        })
        .collect();
    page(
        items,
        |t| &t.id,
        p.limit,
        p.cursor.as_deref(),
        |t| convert::terminal(t, titles.get(&t.id).cloned().flatten()),
    )
}

fn live_terminal(
    rt: &Runtime,
    id: &str,
    what: &str,
) -> Result<std::sync::Arc<dyn crate::ports::Terminal>, OpError> {
    let rec = rt.terminal_record(id)?;
    match rt.terminals.get(id) {
        Some(t) if rec.alive => Ok(t.clone()),
        _ => Err(OpError::Conflict {
            kind: "terminal",
            id: id.into(),
            state: if rec.closed { "closed" } else { "exited" }.into(),
            what: what.into(),
        }),
    }
}

fn handle_terminal_write(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TerminalWrite>()?;
    const MAX_WRITE: usize = 1 << 20;
    if p.data.len() > MAX_WRITE {
        return Err(OpError::Limit {
            limit: "data bytes",
            max: MAX_WRITE as u64,
        });
    }
    let t = live_terminal(rt, &p.id, "cannot write")?;
    t.write(p.data.as_bytes())
        .map_err(|e| OpError::Internal(e.to_string()))?;
    ok(m::Empty {})
}

fn handle_terminal_resize(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TerminalResize>()?;
    rt.resize_terminal(&p.id, p.cols, p.rows)?;
    ok(m::Empty {})
}

fn handle_terminal_screen(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TerminalScreen>()?;
    screen_of(rt, &p.id, p.scrollback)
}

fn handle_terminal_subscribe(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    const MAX_TERMINAL_SUBS: usize = 64;
    let p = call.params::<m::TerminalSubscribe>()?;
    // An agent's id or name is accepted too: it means the agent's current terminal.
    let id = terminal_or_agent(rt, &p.id)?;
    let term = live_terminal(rt, &id, "cannot subscribe")?;
    let conn = rt
        .conns
        .get_mut(&call.conn)
        .ok_or_else(|| OpError::Internal("connection is gone".into()))?;
    // Subscriptions of terminals that ended do not count against the limit.
    conn.terminal_subs.retain(|tid, (_, pump)| {
        let keep = rt.terminals.contains_key(tid);
        if !keep {
            pump.abort();
        }
        keep
    });
    if conn.terminal_subs.contains_key(&id) {
        return ok(m::Empty {});
    }
    if conn.terminal_subs.len() >= MAX_TERMINAL_SUBS {
        return Err(OpError::Limit {
            limit: "terminal subscriptions per connection",
            max: MAX_TERMINAL_SUBS as u64,
        });
    }
    let sub = term.subscribe();
    let out = conn.out.clone();
    let sub2 = sub.clone();
    let tid = id.clone();
    let pump = tokio::spawn(async move {
        use crate::fanout::OutputChunk;
        loop {
            let params = match sub2.next().await {
                OutputChunk::Data(data) => json!({ "id": tid, "data": data }),
                OutputChunk::Resync => json!({ "id": tid, "resync": true }),
                OutputChunk::Closed => break,
            };
            if !out
                .notify_output(m::TERMINAL_OUTPUT_NOTIFICATION, params)
                .await
            {
                break;
            }
        }
    });
    conn.terminal_subs.insert(id, (sub, pump.abort_handle()));
    ok(m::Empty {})
}

/// A terminal id, or an agent's id or name meaning its current terminal.
fn terminal_or_agent(rt: &Runtime, id: &str) -> Result<String, OpError> {
    if rt.state.terminals.contains_key(id) {
        return Ok(id.to_string());
    }
    match rt.state.agent(id) {
        Some(a) => Ok(a.terminal_id.clone()),
        None => Err(OpError::NotFound {
            kind: "terminal",
            id: id.into(),
        }),
    }
}

fn handle_terminal_unsubscribe(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TerminalUnsubscribe>()?;
    let id = terminal_or_agent(rt, &p.id)?;
    if let Some((sub, pump)) = rt
        .conns
        .get_mut(&call.conn)
        .and_then(|c| c.terminal_subs.remove(&id))
    {
        pump.abort();
        if let Some(t) = rt.terminals.get(&id) {
            t.unsubscribe(&sub);
        }
    }
    ok(m::Empty {})
}

fn handle_terminal_close(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TerminalClose>()?;
    rt.close_terminal(&p.id)?;
    ok(m::Empty {})
}

fn handle_session_create(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::SessionCreate>()?;
    let session = rt.create_session(p.name)?;
    ok(convert::session(&session, &rt.state))
}

fn handle_session_list(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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
        rt.state
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
        |s| convert::session(s, &rt.state),
    )
}

fn handle_session_close(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::SessionClose>()?;
    let session = rt.close_session(&p.id, p.stop_agents.unwrap_or(false))?;
    ok(convert::session(&session, &rt.state))
}

fn handle_task_create(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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
    let t = rt.create_task(CreateTask {
        title: p.title,
        prompt: p.prompt,
        priority: p.priority,
        agent: p.agent_id,
        gates,
        max_attempts: p.max_attempts,
    })?;
    ok(convert::task(&t))
}

fn handle_task_list(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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
        rt.state.tasks.values().filter(|t| {
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

fn handle_task_get(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TaskGet>()?;
    ok(convert::task(rt.task_ref(&p.id)?))
}

fn handle_task_assign(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TaskAssign>()?;
    ok(convert::task(&rt.assign_task(&p.id, &p.agent_id)?))
}

fn handle_task_complete(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TaskComplete>()?;
    ok(convert::task(&rt.complete_task(&p.id, p.summary)?))
}

fn handle_task_cancel(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::TaskCancel>()?;
    ok(convert::task(&rt.cancel_task(&p.id)?))
}

fn handle_decision_list(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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
        rt.state
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

fn handle_decision_resolve(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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

fn handle_events_subscribe(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::EventsSubscribe>()?;
    let (kinds, subjects) = filters(p.kinds, p.subjects)?;
    let (id, last) = rt.subscribe_events(call.conn, kinds, subjects, p.since)?;
    ok(m::EventsSubscribeResult {
        subscription_id: id,
        last_seq: last,
    })
}

fn handle_events_unsubscribe(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::EventsUnsubscribe>()?;
    match rt.subs.get(&p.subscription_id) {
        Some(s) if s.conn == call.conn => {
            rt.subs.remove(&p.subscription_id);
            ok(m::Empty {})
        }
        _ => Err(OpError::NotFound {
            kind: "subscription",
            id: p.subscription_id,
        }),
    }
}

fn handle_events_query(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::EventsQuery>()?;
    let (kinds, subjects) = filters(p.kinds, p.subjects)?;
    let limit = check_limit(p.limit)? as usize;
    // Asked from a seq the log no longer has: say so. Without one, read what is kept.
    if let (None, Some(since)) = (&p.cursor, p.since) {
        rt.check_since_available(since)?;
    }
    let mut from = match &p.cursor {
        Some(c) => c.parse::<u64>().map_err(|_| {
            OpError::invalid(
                "cursor",
                format!("{c:?} is not a cursor from a previous page"),
            )
        })?,
        None => p.since.unwrap_or(0),
    };
    // Scan a bounded number of events per call; a sparse filter continues via the cursor.
    const SCAN: usize = 100_000;
    let (mut items, mut scanned) = (Vec::new(), 0);
    let upto = rt.committed_seq;
    while items.len() < limit && scanned < SCAN && from < upto {
        let batch = rt
            .store
            .read_since(from, 1024)
            .map_err(|e| OpError::Internal(e.to_string()))?;
        if batch.first().is_none_or(|e| e.seq > upto) {
            break; // nothing durable left to read (a batch can only move forward)
        }
        for e in batch {
            if e.seq > upto || items.len() == limit {
                break;
            }
            from = e.seq;
            scanned += 1;
            if crate::runtime::event_matches(&kinds, &subjects, &e) {
                items.push(convert::event(&e));
            }
        }
    }
    let next_cursor =
        (from < upto && (items.len() == limit || scanned >= SCAN)).then(|| from.to_string());
    ok(wire::Page { items, next_cursor })
}

fn handle_config_get(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    call.params::<m::ConfigGet>()?;
    Ok(rt.config.to_json())
}

fn handle_config_reload(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    call.params::<m::ConfigReload>()?;
    rt.reload_config()?;
    Ok(rt.config.to_json())
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

fn handle_jobs_list(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    call.params::<m::JobsList>()?;
    ok(rt.work.jobs.iter().map(job).collect::<Vec<_>>())
}

fn handle_jobs_pause(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::JobsPause>()?;
    ok(job(&rt.set_job_paused(&p.name, true)?))
}

fn handle_jobs_resume(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    let p = call.params::<m::JobsResume>()?;
    ok(job(&rt.set_job_paused(&p.name, false)?))
}

fn handle_daemon_stop(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
    call.params::<m::DaemonStop>()?;
    if rt.daemon_stop.is_some() {
        return Err(OpError::Conflict {
            kind: "daemon",
            id: "daemon".into(),
            state: "stopping".into(),
            what: "already stopping".into(),
        });
    }
    let reply = call.reply.take().expect("reply present until taken");
    rt.begin_daemon_stop(reply);
    Err(OpError::Deferred)
}

fn handle_execute_command(rt: &mut Runtime, call: &mut Call) -> Result<Value, OpError> {
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
