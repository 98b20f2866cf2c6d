//! Sessions on the runtime: named groups of agents, with a `default` one that always exists. The
//! rules are `core::rules::sessions`.

use super::{OpError, Runtime};
use crate::core::rules;
use crate::core::task::SessionRecord;

impl Runtime {
    /// `orch/session/create`: a name unique among active sessions.
    pub fn create_session(&mut self, name: String) -> Result<SessionRecord, OpError> {
        let id = self.rule(|d| rules::sessions::create(d, name))?;
        Ok(self.state.sessions[&id].clone())
    }

    /// `orch/session/close`: refused while agents run unless `stop_agents`, which stops them the
    /// usual way (SIGTERM, SIGKILL after the grace period). `default` is never closed.
    pub fn close_session(&mut self, id: &str, stop_agents: bool) -> Result<SessionRecord, OpError> {
        let id = self.rule(|d| rules::sessions::close(d, id, stop_agents))?;
        Ok(self.state.sessions[&id].clone())
    }
}
