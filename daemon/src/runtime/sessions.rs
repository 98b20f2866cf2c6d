//! Sessions on the runtime: named groups of agents, with a `default` one that always exists.

use super::{clock, OpError, Runtime};
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::state::DEFAULT_SESSION;
use crate::core::task::SessionRecord;

impl Runtime {
    /// `orch/session/create`: a name unique among active sessions.
    pub fn create_session(&mut self, name: String) -> Result<SessionRecord, OpError> {
        if name.trim().is_empty() || name.len() > 64 {
            return Err(OpError::invalid(
                "name",
                format!("{name:?} must be 1-64 characters"),
            ));
        }
        if let Some(s) = self
            .state
            .sessions
            .values()
            .find(|s| s.name == name && !s.closed)
        {
            return Err(OpError::invalid(
                "name",
                format!("{name:?} is already the name of active session {}", s.id),
            ));
        }
        let id = self.new_id(ids::SESSION);
        let session = SessionRecord {
            id: id.clone(),
            name,
            closed: false,
            created_at: clock::now_rfc3339(),
            closed_at: None,
        };
        self.emit(EventBody::SessionCreated { session });
        Ok(self.state.sessions[&id].clone())
    }

    /// `orch/session/close`: refused while agents run unless `stop_agents`, which stops them the
    /// usual way (SIGTERM, SIGKILL after the grace period). `default` is never closed.
    pub fn close_session(&mut self, id: &str, stop_agents: bool) -> Result<SessionRecord, OpError> {
        let s = self
            .state
            .session(id)
            .cloned()
            .ok_or_else(|| OpError::NotFound {
                kind: "session",
                id: id.into(),
            })?;
        let conflict = |state: String, what: &str| OpError::Conflict {
            kind: "session",
            id: s.id.clone(),
            state,
            what: what.into(),
        };
        if s.closed {
            return Err(conflict("closed".into(), "cannot close"));
        }
        if s.name == DEFAULT_SESSION {
            return Err(conflict(
                "active".into(),
                "the default session cannot be closed",
            ));
        }
        let live: Vec<String> = self
            .state
            .agents
            .values()
            .filter(|a| a.session_id == s.id && a.state.is_live())
            .map(|a| a.id.clone())
            .collect();
        if !live.is_empty() && !stop_agents {
            return Err(conflict(
                format!("running {} agent(s): {}", live.len(), live.join(", ")),
                "cannot close; pass stopAgents: true",
            ));
        }
        for a in live {
            self.stop_agent(&a, false)?;
        }
        self.emit(EventBody::SessionClosed {
            id: s.id.clone(),
            at: clock::now_rfc3339(),
        });
        Ok(self.state.sessions[&s.id].clone())
    }
}
