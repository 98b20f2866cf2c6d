//! ACP agents on the runtime: what they say becomes states, decisions and events, and prompts,
//! cancels and permission answers go back to them.
//!
//! Their states are exact, never read from a screen: `idle` once the session is ready and when a
//! turn ends (its `stopReason` as evidence), `busy` while a turn runs, `waiting` while a
//! permission request is open. A permission request is a decision whose options are the agent's
//! own; the first answer goes back as its `optionId`, and a request that goes away unanswered
//! (its turn ended or was cancelled) dismisses it. Messages, tool calls and plans are recorded as
//! `agent.message`, `agent.toolCall` and `agent.plan` events.

use super::{OpError, Runtime};
use crate::core::agent::{AgentProtocol, AgentState, Evidence};
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::task::{DecisionRecord, DecisionSource};
use crate::ports::{Prompted, Said};

impl Runtime {
    /// Whether `agent` speaks ACP.
    pub(super) fn speaks_acp(&self, agent: &str) -> bool {
        self.state
            .agents
            .get(agent)
            .is_some_and(|a| a.watch.protocol == AgentProtocol::Acp)
    }

    /// Give an ACP agent a prompt: sent now, or queued behind its running turn.
    pub(super) fn prompt_acp(&mut self, agent: &str, text: &str) -> Result<(), OpError> {
        let (a, _) = self.agent_terminal(agent, "cannot take a prompt")?;
        let Some(c) = self.terminals.conversation(&a.terminal_id).cloned() else {
            return Err(OpError::Internal(format!(
                "agent {agent} has no conversation"
            )));
        };
        match c.prompt(text) {
            Ok(Prompted::Started) => Ok(()),
            Ok(Prompted::Queued { position }) => {
                tracing::debug!(agent, position, "prompt queued behind the running turn");
                Ok(())
            }
            Err(e) => Err(OpError::Conflict {
                kind: "agent",
                id: a.id,
                state: a.state.as_str().into(),
                what: format!("cannot take a prompt: {e}"),
            }),
        }
    }

    /// `orch/agent/interrupt` for an ACP agent: `session/cancel` for the running turn (its end,
    /// `cancelled`, follows; its open permission requests are dismissed).
    pub(super) fn cancel_acp(&mut self, agent: &str) -> Result<(), OpError> {
        let (a, _) = self.agent_terminal(agent, "cannot interrupt")?;
        let Some(c) = self.terminals.conversation(&a.terminal_id).cloned() else {
            return Err(OpError::Internal(format!(
                "agent {agent} has no conversation"
            )));
        };
        c.cancel()
            .map(|_| ())
            .map_err(|e| OpError::Internal(e.to_string()))
    }

    /// A permission decision was answered: give the agent the chosen option.
    pub(super) fn permit(&mut self, agent: &str, request: u64, option_id: &str, choice: &str) {
        let Some(a) = self.state.agents.get(agent).cloned() else {
            return;
        };
        if let Some(ws) = self.watch.get_mut(agent) {
            ws.permissions.retain(|(r, _)| *r != request);
        }
        let Some(c) = self.terminals.conversation(&a.terminal_id).cloned() else {
            return;
        };
        if let Err(e) = c.permit(request, option_id) {
            // The request went away meanwhile (its turn ended): nothing waits for the answer.
            tracing::info!(agent, request, "permission answer not delivered: {e}");
            return;
        }
        let still_asking = self
            .watch
            .get(agent)
            .is_some_and(|w| !w.permissions.is_empty());
        if !still_asking && a.state == AgentState::Waiting {
            self.set_agent_state(
                agent,
                AgentState::Busy,
                Evidence::Acp {
                    what: format!("permission answered ({choice})"),
                },
                None,
            );
        }
    }

    /// What an ACP agent's terminal said.
    pub(super) fn on_said(&mut self, terminal: &str, said: Said) {
        let Some(agent) = self.state.agent_by_terminal(terminal).cloned() else {
            return;
        };
        // What an earlier process of the agent says, or one that ended, says nothing now.
        if agent.terminal_id != terminal || !agent.state.is_live() {
            return;
        }
        let id = agent.id.clone();
        let acp = |what: String| Evidence::Acp { what };
        match said {
            Said::Ready {
                session_id,
                origin,
                note,
            } => {
                if let Some(note) = &note {
                    tracing::warn!(agent = %id, "session {:?} not continued: {note}", agent.acp_session);
                }
                self.emit(EventBody::AgentAcpSession {
                    id: id.clone(),
                    acp_session_id: session_id,
                    origin: origin.into(),
                });
                let what = match (origin, note) {
                    ("new", None) => "session ready".to_string(),
                    ("new", Some(note)) => {
                        let note: String = note.chars().take(200).collect();
                        format!("session ready (the last one was not continued: {note})")
                    }
                    (other, _) => format!("session {other}"),
                };
                self.set_agent_state(&id, AgentState::Idle, acp(what), None);
            }
            Said::TurnStarted { text } => {
                self.emit(EventBody::AgentMessage {
                    id: id.clone(),
                    role: "user".into(),
                    text,
                });
                self.set_agent_state(&id, AgentState::Busy, acp("prompt".into()), None);
            }
            Said::TurnEnded { end } => {
                let what = match end {
                    Ok(reason) => reason,
                    Err(why) => format!("turn failed: {why}"),
                };
                self.dismiss_permissions(&id, None, "the turn ended");
                self.set_agent_state(&id, AgentState::Idle, acp(what), None);
            }
            Said::Message { role, text } => self.emit(EventBody::AgentMessage {
                id,
                role: role.into(),
                text,
            }),
            Said::ToolCall {
                call_id,
                title,
                kind,
                status,
            } => self.emit(EventBody::AgentToolCall {
                id,
                tool_call_id: call_id,
                title,
                tool_kind: kind,
                status,
            }),
            Said::Plan(entries) => self.emit(EventBody::AgentPlan { id, entries }),
            Said::PermissionRequested {
                request,
                title,
                detail,
                options,
            } => {
                self.set_agent_state(
                    &id,
                    AgentState::Waiting,
                    acp("request_permission".into()),
                    None,
                );
                // Options are chosen by name: names the agent repeats get their id added.
                let mut named: Vec<(String, String)> = Vec::new();
                for o in options {
                    let mut name = if o.name.trim().is_empty() {
                        o.id.clone()
                    } else {
                        o.name.clone()
                    };
                    if named.iter().any(|(n, _)| *n == name) {
                        name = format!("{name} ({})", o.id);
                    }
                    named.push((name, o.id));
                }
                let decision = self.new_id(ids::DECISION);
                let detail = if detail.is_empty() {
                    title.clone()
                } else {
                    detail
                };
                self.emit(EventBody::DecisionRequested {
                    decision: DecisionRecord {
                        id: decision.clone(),
                        title: format!("{} asks permission: {title}", agent.name),
                        detail,
                        options: named.iter().map(|(n, _)| n.clone()).collect(),
                        resolved: false,
                        choice: None,
                        reason: None,
                        source: DecisionSource::Permission {
                            id: id.clone(),
                            request,
                            options: named,
                        },
                        created_at: self.clock.now_rfc3339(),
                        resolved_at: None,
                    },
                });
                if let Some(ws) = self.watch.get_mut(&id) {
                    ws.permissions.push((request, decision));
                }
            }
            Said::PermissionDismissed { request, why } => {
                self.dismiss_permissions(&id, Some(request), &why);
                let asking = self
                    .watch
                    .get(&id)
                    .is_some_and(|w| !w.permissions.is_empty());
                if !asking && self.state.agents[&id].state == AgentState::Waiting {
                    self.set_agent_state(
                        &id,
                        AgentState::Busy,
                        acp(format!("permission request withdrawn ({why})")),
                        None,
                    );
                }
            }
            Said::Problem(what) => {
                tracing::warn!(agent = %id, "ACP agent misbehaved: {what}");
            }
            Said::Failed(why) => {
                tracing::warn!(agent = %id, "ACP agent given up on: {why}");
                if let Some(ws) = self.watch.get_mut(&id) {
                    ws.acp_failure = Some(why);
                }
            }
        }
    }

    /// Dismiss an agent's open permission decisions (`request`, or all of them).
    fn dismiss_permissions(&mut self, agent: &str, request: Option<u64>, why: &str) {
        let Some(ws) = self.watch.get_mut(agent) else {
            return;
        };
        let gone: Vec<String> = ws
            .permissions
            .iter()
            .filter(|(r, _)| request.is_none_or(|q| q == *r))
            .map(|(_, d)| d.clone())
            .collect();
        ws.permissions
            .retain(|(r, _)| request.is_some_and(|q| q != *r));
        if gone.is_empty() {
            return;
        }
        self.dismiss_decisions(
            |s| matches!(s, DecisionSource::Permission { id, request: r, .. } if id == agent && request.is_none_or(|q| q == *r)),
            why,
        );
    }
}

/// End the process group `pgid` of an agent a previous daemon left running (an ACP agent, or a
/// pty agent that survived its terminal's hangup), if it is still that agent's: one of its
/// processes has an environment naming the agent's terminal and this workspace's socket (pids are
/// reused). The group leader may be gone while a child it started lives on, so every process of
/// the group is looked at. Returns whether a group was ended.
pub(super) fn end_orphaned_agent(pgid: u32, terminal: &str, socket: &std::path::Path) -> bool {
    let marks = [
        format!("ORCH_TERMINAL_ID={terminal}"),
        format!("ORCH_SOCKET={}", socket.display()),
    ];
    let ours = |pid: u32| {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false;
        };
        marks
            .iter()
            .all(|m| environ.split(|b| *b == 0).any(|v| v == m.as_bytes()))
    };
    let found = std::iter::once(pgid).chain(group_members(pgid)).any(ours);
    if !found {
        return false;
    }
    tracing::info!(
        pgid,
        terminal,
        "ending the agent the previous daemon left running"
    );
    // SAFETY: killpg of a group one of whose processes we just identified as the agent's.
    unsafe { libc::killpg(pgid as i32, libc::SIGKILL) == 0 }
}

/// The processes of process group `pgid` (Linux: from `/proc`).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // state ppid pgrp: after the command name's last `)`.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}
