//! Remote hosts on the runtime: which backend an agent's terminal lives on, what a host's
//! connection changing means for its agents (`unreachable` while it is down, adopted again by
//! pane id when it is back), and the checks of a spawn onto a host.

use std::sync::Arc;

use super::{OpError, Runtime};
use crate::core::agent::{AgentRecord, AgentState, Evidence};
use crate::core::event::EventBody;
use crate::ports::{BackendError, HostState, HostStatus, RemoteHost, TerminalBackend};

/// An agent on a host whose connection is down, or not yet adopted after a daemon start: its
/// program is believed to run there, with no live terminal here.
pub fn awaits_host(agent: &AgentRecord, host: &str, live_here: bool) -> bool {
    agent.host.as_deref() == Some(host) && agent.state.is_live() && !live_here
}

/// Whether a window found on a host for terminal `terminal` has nothing left to do: the terminal
/// is not live here and its agent (if any) is not waiting to be adopted.
pub fn stale_terminal(state: &crate::core::state::State, terminal: &str, live_here: bool) -> bool {
    if live_here {
        return false;
    }
    match state.terminals.get(terminal) {
        // Not of this workspace's record (a store that was reset): not ours to judge.
        None => false,
        Some(t) => match t.agent_id.as_ref().and_then(|a| state.agents.get(a)) {
            Some(agent) => !agent.state.is_live() || agent.terminal_id != terminal,
            None => !t.alive,
        },
    }
}

/// The working directory of an agent on a host: `cwd` as given when absolute (or `~...`), else
/// under the host's `cwd` (or its home).
pub fn host_cwd(given: Option<&str>, host_cwd: Option<&str>) -> Result<String, String> {
    let base = host_cwd.unwrap_or("~");
    match given {
        None => Ok(base.to_owned()),
        Some(c) if c.contains(['\0', '\n']) || c.is_empty() => Err(format!("{c:?} is not a path")),
        Some(c) if c.starts_with('/') || c == "~" || c.starts_with("~/") => Ok(c.to_owned()),
        Some(c) => Ok(format!("{}/{c}", base.trim_end_matches('/'))),
    }
}

impl Runtime {
    /// The host called `name`, or the error naming `field`.
    pub(super) fn host(&self, name: &str, field: &str) -> Result<Arc<dyn RemoteHost>, OpError> {
        self.hosts.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
            OpError::invalid(
                field,
                format!(
                    "unknown host {name:?}; configured hosts: {}",
                    if known.is_empty() {
                        "none (add a [hosts.<name>] table to orch.toml)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// A host's backend when its connection is up; else why not.
    pub(super) fn connected_host(
        &self,
        name: &str,
        field: &str,
    ) -> Result<Arc<dyn TerminalBackend>, OpError> {
        let host = self.host(name, field)?;
        let status = host.status();
        if status.state != HostState::Connected {
            return Err(OpError::BackendUnavailable {
                backend: "tmux".into(),
                detail: format!(
                    "host {name} is {}{}",
                    status.state.as_str(),
                    if status.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", status.detail)
                    }
                ),
            });
        }
        Ok(host.backend())
    }

    /// The backend an agent's terminal lives on: its host's, else its backend's.
    pub(super) fn agent_backend(
        &self,
        agent: &AgentRecord,
    ) -> Result<Arc<dyn TerminalBackend>, OpError> {
        match &agent.host {
            Some(h) => self.connected_host(h, "host"),
            None => self.backend(&agent.backend, "backend"),
        }
    }

    /// A host's connection changed: record it; a host that went away makes its agents
    /// `unreachable`, one that came back gets them adopted again.
    pub(super) fn on_host(&mut self, name: &str, status: HostStatus) {
        self.emit(EventBody::HostState {
            name: name.into(),
            state: status.state.as_str().into(),
            detail: status.detail.clone(),
        });
        match status.state {
            HostState::Connected => {
                let waiting: Vec<AgentRecord> = self
                    .state
                    .agents
                    .values()
                    .filter(|a| awaits_host(a, name, self.terminals.contains_key(&a.terminal_id)))
                    .cloned()
                    .collect();
                for agent in waiting {
                    self.readopt(name, &agent);
                }
                self.close_leftovers(name);
                // Gates that waited for the host run now, if their task still waits for them.
                for (task, index) in self.work.deferred_gates.remove(name).unwrap_or_default() {
                    let verifying = self
                        .state
                        .tasks
                        .get(&task)
                        .is_some_and(|t| t.state == crate::core::task::TaskState::Verifying);
                    if verifying {
                        self.run_gate(&task, index);
                    }
                }
            }
            HostState::Unreachable => {
                let on_host: Vec<AgentRecord> = self
                    .state
                    .agents
                    .values()
                    .filter(|a| a.host.as_deref() == Some(name) && a.state.is_live())
                    .cloned()
                    .collect();
                for agent in on_host {
                    // The program runs on over there: let go of the terminal without closing
                    // its window.
                    self.terminals.remove(&agent.terminal_id);
                    self.terminals.activity().forget(&agent.terminal_id);
                    self.clients.park_followers(&agent.terminal_id);
                    self.drop_typing(&agent.id, "its host is unreachable");
                    // A stop under way cannot reach it now: whoever waits for it hears so.
                    if self.stopping.remove(&agent.id) {
                        for (waiter, _) in self.waiters.remove(&agent.id).unwrap_or_default() {
                            self.hold(waiter(Err(OpError::Conflict {
                                kind: "agent",
                                id: agent.id.clone(),
                                state: "unreachable".into(),
                                what: format!("its host {name} went out of reach while it was being stopped; stop it again when the host is back"),
                            })));
                        }
                    }
                    if agent.state != AgentState::Unreachable {
                        let evidence = Evidence::Daemon {
                            what: format!("host {name}: {}", status.detail),
                        };
                        self.set_agent_state(&agent.id, AgentState::Unreachable, evidence, None);
                    }
                }
            }
            HostState::Connecting => {}
        }
    }

    /// Close the windows on host `name` whose agents are no longer live here (a daemon stopped
    /// while the host was unreachable could not reach them; their programs ran on).
    fn close_leftovers(&mut self, name: &str) {
        let Ok(backend) = self.connected_host(name, "host") else {
            return;
        };
        let leftovers = match backend.leftovers() {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(host = %name, "cannot list the host's windows: {e}");
                return;
            }
        };
        for (handle, terminal) in leftovers {
            if !stale_terminal(
                &self.state,
                &terminal,
                self.terminals.contains_key(&terminal),
            ) {
                continue;
            }
            tracing::info!(host = %name, %terminal, %handle, "closing a window whose agent ended");
            if let Err(e) = backend.close_leftover(&handle) {
                tracing::warn!(host = %name, %terminal, "cannot close its window: {e}");
            }
        }
    }

    /// Take over a host agent's pane again (after its host came back, or after a daemon start);
    /// a pane that is gone makes the agent lost.
    fn readopt(&mut self, host: &str, agent: &AgentRecord) {
        let handle = self
            .state
            .terminals
            .get(&agent.terminal_id)
            .and_then(|t| t.handle.clone());
        let Ok(backend) = self.connected_host(host, "host") else {
            return;
        };
        let spec = self.adopt_spec(agent);
        let adopted = match handle {
            Some(handle) => backend.adopt(spec, &handle, self.terminals.observer()),
            None => Err(BackendError::Gone {
                id: agent.terminal_id.clone(),
            }),
        };
        match adopted {
            Ok(term) => {
                self.take_over(agent, term);
                // Whoever followed its output follows it again (what it printed meanwhile is in
                // the screen's history).
                for conn in self.clients.unpark(&agent.terminal_id) {
                    if let Err(e) = self.follow_terminal(conn, &agent.terminal_id) {
                        tracing::debug!(terminal = %agent.terminal_id, "cannot follow again: {e}");
                    }
                }
                if agent.state == AgentState::Unreachable {
                    self.set_agent_state(
                        &agent.id,
                        AgentState::Running,
                        Evidence::Daemon {
                            what: format!("host {host}: reconnected, its pane adopted"),
                        },
                        None,
                    );
                }
            }
            // It ended while the host was out of reach: its exit, as if seen.
            Err(BackendError::Ended { exit_code, .. }) => {
                tracing::info!(agent = %agent.id, %host, ?exit_code, "ended while unreachable");
                self.on_exit(&agent.terminal_id, exit_code, None);
            }
            Err(why @ BackendError::Gone { .. }) => {
                tracing::info!(agent = %agent.id, %host, "cannot adopt: {why}");
                let evidence = Evidence::Daemon {
                    what: format!("host {host}: its tmux pane is gone"),
                };
                self.end_lost(agent, evidence, "its pane on the host is gone");
            }
            // The connection failed again, or tmux did not answer: nothing is known of the
            // pane. The agent waits for the host's next return.
            Err(why) => {
                tracing::info!(agent = %agent.id, %host, "cannot adopt now: {why}");
                if agent.state != AgentState::Unreachable {
                    self.set_agent_state(
                        &agent.id,
                        AgentState::Unreachable,
                        Evidence::Daemon {
                            what: format!("host {host}: {why}"),
                        },
                        None,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cwd_is_under_the_hosts_workspace() {
        assert_eq!(host_cwd(None, Some("/srv/w")).unwrap(), "/srv/w");
        assert_eq!(host_cwd(None, None).unwrap(), "~");
        assert_eq!(
            host_cwd(Some("sub"), Some("/srv/w/")).unwrap(),
            "/srv/w/sub"
        );
        assert_eq!(host_cwd(Some("sub"), None).unwrap(), "~/sub");
        assert_eq!(host_cwd(Some("/abs"), Some("/srv")).unwrap(), "/abs");
        assert_eq!(host_cwd(Some("~/x"), Some("/srv")).unwrap(), "~/x");
        assert!(host_cwd(Some("a\nb"), None).is_err());
    }
}
