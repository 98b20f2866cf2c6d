//! The ACP adapter as the runtime's [`ConversationBackend`]: [`AcpBackend`] starts
//! [`AcpAgent`]s and turns what they report ([`AcpEvent`]) into [`Said`], in domain terms.
//!
//! What it adds on the way: streamed message chunks are joined into whole messages (a message
//! ends when something else happens: another kind of update, a tool call, a permission request,
//! the turn's end, the process's exit; a very long one is cut into pieces of
//! [`MESSAGE_PIECE`]); tool call updates are merged into the call they change, and only a new
//! call or a change of its status or title is told; history a loaded session replays is not
//! repeated (its events are in the log from the agent's earlier life).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{AcpAgent, AcpError, AcpEvent, AcpObserver, AcpSpec, PromptStatus, SessionOrigin};
use super::{SessionUpdate, ToolCall, ToolStatus, TurnEnd};
use crate::core::agent::PlanStep;
use crate::ports::{
    BackendError, Conversation, ConversationBackend, ConversationObserver, ConversationSpec,
    ConversationStarted, PermitOption, Prompted, Said, TerminalObserver,
};

/// Most bytes of one `Said::Message`: a longer message is told in pieces of this size.
pub const MESSAGE_PIECE: usize = 64 * 1024;
/// Most bytes of a permission request's detail.
const DETAIL_LIMIT: usize = 2000;
/// Most tool calls remembered per agent (a turn rarely has more; the oldest are forgotten).
const MAX_TOOL_CALLS: usize = 512;

/// The `acp` conversation backend.
#[derive(Debug, Default)]
pub struct AcpBackend;

impl ConversationBackend for AcpBackend {
    fn name(&self) -> &'static str {
        "acp"
    }

    fn start(
        &self,
        spec: ConversationSpec,
        observer: Arc<dyn ConversationObserver>,
    ) -> Result<ConversationStarted, BackendError> {
        let mut acp = AcpSpec::new(spec.terminal);
        acp.resume_session = spec.resume_session;
        acp.mode = spec.mode;
        acp.auth_method = spec.auth_method;
        let bridge = Arc::new(Bridge {
            observer,
            open: Mutex::new(Open::default()),
        });
        let agent = AcpAgent::start(acp, bridge)?;
        Ok((agent.clone(), agent))
    }
}

impl Conversation for AcpAgent {
    fn prompt(&self, text: &str) -> Result<Prompted, BackendError> {
        match AcpAgent::prompt(self, text).map_err(refused)? {
            PromptStatus::Started { .. } => Ok(Prompted::Started),
            PromptStatus::Queued { position, .. } => Ok(Prompted::Queued { position }),
        }
    }

    fn cancel(&self) -> Result<bool, BackendError> {
        AcpAgent::cancel(self).map_err(refused)
    }

    fn permit(&self, request: u64, option_id: &str) -> Result<(), BackendError> {
        self.answer_permission(request, option_id).map_err(refused)
    }
}

fn refused(e: AcpError) -> BackendError {
    match e {
        AcpError::Ended { id, .. } => BackendError::Gone { id },
        other => BackendError::Other(other.to_string()),
    }
}

/// Turns one agent's [`AcpEvent`]s into [`Said`].
struct Bridge {
    observer: Arc<dyn ConversationObserver>,
    open: Mutex<Open>,
}

/// What is being put together.
#[derive(Default)]
struct Open {
    /// The message whose chunks are arriving: its role, its id, its text so far.
    message: Option<(&'static str, Option<String>, String)>,
    /// Tool calls as merged so far, by id, with the order they came in.
    calls: HashMap<String, ToolCall>,
    order: std::collections::VecDeque<String>,
}

impl Bridge {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tell the message being put together, if any.
    fn flush(&self, id: &str, open: &mut Open) {
        if let Some((role, _, text)) = open.message.take() {
            if !text.trim().is_empty() {
                self.observer.said(id, Said::Message { role, text });
            }
        }
    }

    /// A chunk of a message.
    fn chunk(
        &self,
        id: &str,
        open: &mut Open,
        role: &'static str,
        message_id: Option<String>,
        text: &str,
    ) {
        let same = open
            .message
            .as_ref()
            .is_some_and(|(r, m, _)| *r == role && (message_id.is_none() || *m == message_id));
        if !same {
            self.flush(id, open);
            open.message = Some((role, message_id, String::new()));
        }
        let Some((_, _, buf)) = open.message.as_mut() else {
            return;
        };
        buf.push_str(text);
        while buf.len() > MESSAGE_PIECE {
            let mut cut = MESSAGE_PIECE;
            while !buf.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = buf.split_off(cut);
            let piece = std::mem::replace(buf, rest);
            self.observer.said(id, Said::Message { role, text: piece });
        }
    }

    /// A tool call, new or changed: told when it is new or its status or title changed.
    fn call(&self, id: &str, open: &mut Open, call: ToolCall, new: bool) {
        let told = open
            .calls
            .get(&call.id)
            .map(|c| (c.status, c.title.clone()));
        let changed = new || told != Some((call.status, call.title.clone()));
        if !open.calls.contains_key(&call.id) {
            open.order.push_back(call.id.clone());
            if open.order.len() > MAX_TOOL_CALLS {
                if let Some(old) = open.order.pop_front() {
                    open.calls.remove(&old);
                }
            }
        }
        open.calls.insert(call.id.clone(), call.clone());
        if changed {
            self.observer.said(
                id,
                Said::ToolCall {
                    call_id: call.id.clone(),
                    title: title_of(&call),
                    kind: call.kind.clone(),
                    status: status_name(call.status).into(),
                },
            );
        }
    }
}

impl TerminalObserver for Bridge {
    fn output(&self, id: &str) {
        self.observer.output(id);
    }

    fn exited(&self, id: &str, exit_code: Option<i32>) {
        let mut open = self.open();
        self.flush(id, &mut open);
        drop(open);
        self.observer.exited(id, exit_code);
    }

    fn lost(&self, id: &str, why: &str) {
        self.observer.lost(id, why);
    }
}

impl AcpObserver for Bridge {
    fn acp(&self, id: &str, event: AcpEvent) {
        let mut open = self.open();
        let said = match event {
            AcpEvent::Update { replay: true, .. } => return,
            AcpEvent::Update { update, .. } => match update {
                SessionUpdate::AgentMessage { text, message_id } => {
                    return self.chunk(id, &mut open, "agent", message_id, &text);
                }
                SessionUpdate::Thought { text, message_id } => {
                    return self.chunk(id, &mut open, "thought", message_id, &text);
                }
                // The person's own words come as the turn's prompt.
                SessionUpdate::UserMessage { .. } => return,
                SessionUpdate::ToolCall(call) => {
                    self.flush(id, &mut open);
                    return self.call(id, &mut open, call, true);
                }
                SessionUpdate::ToolCallUpdate(u) => {
                    self.flush(id, &mut open);
                    let mut call = open.calls.get(&u.id).cloned().unwrap_or_else(|| ToolCall {
                        id: u.id.clone(),
                        ..ToolCall::default()
                    });
                    let new = !open.calls.contains_key(&u.id);
                    if let Some(t) = u.title {
                        call.title = t;
                    }
                    if let Some(k) = u.kind {
                        call.kind = k;
                    }
                    if u.status.is_some() {
                        call.status = u.status;
                    }
                    if let Some(r) = u.raw_input {
                        call.raw_input = Some(r);
                    }
                    return self.call(id, &mut open, call, new);
                }
                SessionUpdate::Plan(entries) => {
                    self.flush(id, &mut open);
                    Said::Plan(
                        entries
                            .into_iter()
                            .map(|e| PlanStep {
                                content: e.content,
                                priority: e.priority,
                                status: e.status,
                            })
                            .collect(),
                    )
                }
                SessionUpdate::AvailableCommands(_)
                | SessionUpdate::CurrentMode { .. }
                | SessionUpdate::SessionInfo { .. }
                | SessionUpdate::Other { .. } => return,
            },
            AcpEvent::Ready(r) => Said::Ready {
                session_id: r.session_id,
                origin: match r.origin {
                    SessionOrigin::New => "new",
                    SessionOrigin::Loaded => "loaded",
                    SessionOrigin::Resumed => "resumed",
                },
                note: r.resume_error,
            },
            AcpEvent::TurnStarted { text, .. } => {
                self.flush(id, &mut open);
                Said::TurnStarted { text }
            }
            AcpEvent::TurnEnded { end, .. } => {
                self.flush(id, &mut open);
                Said::TurnEnded {
                    end: match end {
                        TurnEnd::Stopped(reason) => Ok(reason.as_str().to_string()),
                        TurnEnd::Failed(why) => Err(why),
                    },
                }
            }
            AcpEvent::PermissionRequested(p) => {
                self.flush(id, &mut open);
                Said::PermissionRequested {
                    request: p.id,
                    title: p.title.clone(),
                    detail: detail_of(&p.tool_call),
                    options: p
                        .options
                        .into_iter()
                        .map(|o| PermitOption {
                            id: o.id,
                            name: o.name,
                            kind: o.kind,
                        })
                        .collect(),
                }
            }
            AcpEvent::PermissionDismissed { id: request, why } => {
                Said::PermissionDismissed { request, why }
            }
            AcpEvent::Problem(p) => Said::Problem(p),
            AcpEvent::Failed(why) => Said::Failed(why),
        };
        self.observer.said(id, said);
    }
}

fn status_name(s: Option<ToolStatus>) -> &'static str {
    match s {
        None | Some(ToolStatus::Pending) => "pending",
        Some(ToolStatus::InProgress) => "in_progress",
        Some(ToolStatus::Completed) => "completed",
        Some(ToolStatus::Failed) => "failed",
    }
}

fn title_of(call: &ToolCall) -> String {
    if call.title.is_empty() {
        call.kind.clone()
    } else {
        call.title.clone()
    }
}

/// A tool call's input in words: its title, then each field of its input (`command: touch
/// x`), then the files it touches; bounded.
fn detail_of(call: &ToolCall) -> String {
    let mut lines = vec![title_of(call)];
    match &call.raw_input {
        Some(Value::Object(fields)) => {
            for (k, v) in fields {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                lines.push(format!("{k}: {v}"));
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => lines.push(other.to_string()),
    }
    if !call.locations.is_empty() {
        lines.push(format!("files: {}", call.locations.join(", ")));
    }
    let mut text = lines.join("\n");
    if text.len() > DETAIL_LIMIT {
        let mut cut = DETAIL_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the bridge tells.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl TerminalObserver for Heard {
        fn output(&self, _id: &str) {}
        fn exited(&self, _id: &str, code: Option<i32>) {
            self.0.lock().unwrap().push(format!("exited {code:?}"));
        }
    }

    impl ConversationObserver for Heard {
        fn said(&self, _id: &str, said: Said) {
            self.0.lock().unwrap().push(format!("{said:?}"));
        }
    }

    fn bridge() -> (Arc<Heard>, Bridge) {
        let heard = Arc::new(Heard::default());
        let b = Bridge {
            observer: heard.clone(),
            open: Mutex::new(Open::default()),
        };
        (heard, b)
    }

    fn update(u: SessionUpdate) -> AcpEvent {
        AcpEvent::Update {
            update: u,
            replay: false,
        }
    }

    #[test]
    fn chunks_become_whole_messages_and_calls_are_told_on_change() {
        let (heard, b) = bridge();
        let msg = |t: &str| {
            update(SessionUpdate::AgentMessage {
                text: t.into(),
                message_id: None,
            })
        };
        for e in [
            AcpEvent::TurnStarted {
                turn: 1,
                text: "make x".into(),
            },
            update(SessionUpdate::Thought {
                text: "I will touch x".into(),
                message_id: None,
            }),
            msg("Creating "),
            msg("x now."),
            update(SessionUpdate::ToolCall(ToolCall {
                id: "c1".into(),
                title: "touch x".into(),
                kind: "execute".into(),
                status: Some(ToolStatus::Pending),
                raw_input: Some(serde_json::json!({"command": "touch x"})),
                ..ToolCall::default()
            })),
            // Content only: not told.
            update(SessionUpdate::ToolCallUpdate(
                super::super::ToolCallUpdate {
                    id: "c1".into(),
                    ..Default::default()
                },
            )),
            update(SessionUpdate::ToolCallUpdate(
                super::super::ToolCallUpdate {
                    id: "c1".into(),
                    status: Some(ToolStatus::Completed),
                    ..Default::default()
                },
            )),
            AcpEvent::Update {
                update: SessionUpdate::AgentMessage {
                    text: "old history".into(),
                    message_id: None,
                },
                replay: true,
            },
            msg("Done."),
            AcpEvent::TurnEnded {
                turn: 1,
                end: TurnEnd::Stopped(super::super::StopReason::EndTurn),
            },
        ] {
            b.acp("t-1", e);
        }
        b.exited("t-1", Some(0));
        expect_test::expect![[r#"
            TurnStarted { text: "make x" }
            Message { role: "thought", text: "I will touch x" }
            Message { role: "agent", text: "Creating x now." }
            ToolCall { call_id: "c1", title: "touch x", kind: "execute", status: "pending" }
            ToolCall { call_id: "c1", title: "touch x", kind: "execute", status: "completed" }
            Message { role: "agent", text: "Done." }
            TurnEnded { end: Ok("end_turn") }
            exited Some(0)"#]]
        .assert_eq(&heard.0.lock().unwrap().join("\n"));
    }

    #[test]
    fn a_long_message_is_told_in_pieces_on_char_boundaries() {
        let (heard, b) = bridge();
        let text = "é".repeat(MESSAGE_PIECE); // two bytes each
        b.acp(
            "t-1",
            update(SessionUpdate::AgentMessage {
                text: text.clone(),
                message_id: None,
            }),
        );
        b.exited("t-1", None);
        let heard = heard.0.lock().unwrap();
        assert_eq!(heard.len(), 3, "two pieces and the exit");
        assert!(heard[0].len() <= MESSAGE_PIECE + 64);
    }

    #[test]
    fn a_permission_detail_names_the_input() {
        let call = ToolCall {
            id: "c1".into(),
            title: "Shell".into(),
            kind: "execute".into(),
            raw_input: Some(serde_json::json!({"command": "rm -rf build", "timeout": 5})),
            locations: vec!["/w/build".into()],
            ..ToolCall::default()
        };
        expect_test::expect![[r#"
            Shell
            command: rm -rf build
            timeout: 5
            files: /w/build"#]]
        .assert_eq(&detail_of(&call));
    }
}
