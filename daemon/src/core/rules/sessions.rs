//! Session rules: named groups of agents, with a `default` one that always exists and is never
//! closed.
//!
//! Closing a session with running agents is one decision: either it is refused and nothing
//! happens, or the session closes and every one of its live agents is asked to stop. (The
//! runtime used to stop agents one by one and could fail half-way: some agents signalled, the
//! session still open.)

use super::{Draft, Effect, Refusal};
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::state::DEFAULT_SESSION;
use crate::core::task::SessionRecord;

/// `orch/session/create`: a name unique among active sessions, without control characters.
pub fn create(d: &mut Draft, name: String) -> Result<String, Refusal> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(Refusal::invalid(
            "name",
            format!("{name:?} must be 1-64 characters"),
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(Refusal::invalid(
            "name",
            format!("must not contain control characters (found {c:?})"),
        ));
    }
    if let Some(s) = d.state().active_session_named(&name) {
        return Err(Refusal::invalid(
            "name",
            format!("{name:?} is already the name of active session {}", s.id),
        ));
    }
    let id = d.new_id(ids::SESSION);
    let now = d.now().to_string();
    d.emit(EventBody::SessionCreated {
        session: SessionRecord {
            id: id.clone(),
            name,
            closed: false,
            created_at: now,
            closed_at: None,
        },
    });
    Ok(id)
}

/// `orch/session/close`: refused while agents run unless `stop_agents`, which asks each of them
/// to stop (SIGTERM, SIGKILL after the grace period). Returns the session's id.
pub fn close(d: &mut Draft, id: &str, stop_agents: bool) -> Result<String, Refusal> {
    let s = d
        .state()
        .session(id)
        .cloned()
        .ok_or_else(|| Refusal::NotFound {
            kind: "session",
            id: id.into(),
        })?;
    let conflict = |state: String, what: &str| Refusal::Conflict {
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
    let live: Vec<String> = d
        .state()
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
    let at = d.now().to_string();
    d.emit(EventBody::SessionClosed {
        id: s.id.clone(),
        at,
    });
    for agent in live {
        d.effect(Effect::Stop { agent });
    }
    Ok(s.id)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::core::agent::AgentState::{Busy, Exited};
    use crate::core::rules::testing::{run, world};

    #[test]
    fn closing_is_all_or_nothing() {
        let mut s = world(&[
            ("a", "shell", Busy),
            ("b", "shell", Busy),
            ("c", "shell", Exited),
        ]);
        let mut d = Draft::new(&mut s, "2026-11-28T00:00:00Z");
        let review = create(&mut d, "review".into()).unwrap();
        for agent in ["a-2", "a-3", "a-4"] {
            if let Some(a) = s.agents.get_mut(agent) {
                a.session_id = review.clone();
            }
        }
        let out = [
            run(&mut s.clone(), |d| close(d, "default", true).map(|_| ())),
            run(&mut s.clone(), |d| close(d, "nope", true).map(|_| ())),
            run(&mut s.clone(), |d| close(d, &review, false).map(|_| ())),
            run(&mut s, |d| close(d, "review", true).map(|_| ())),
            run(&mut s.clone(), |d| close(d, &review, true).map(|_| ())),
            run(&mut s.clone(), |d| {
                create(d, "bad\nname".into()).map(|_| ())
            }),
        ];
        expect![[r#"
            refused Conflict { kind: "session", id: "s-1", state: "active", what: "the default session cannot be closed" }
            -- 
            refused NotFound { kind: "session", id: "nope" }
            -- 
            refused Conflict { kind: "session", id: "s-5", state: "running 2 agent(s): a-2, a-3", what: "cannot close; pass stopAgents: true" }
            -- 
            event s-5 session closed
            effect Stop { agent: "a-2" }
            effect Stop { agent: "a-3" }
            -- 
            refused Conflict { kind: "session", id: "s-5", state: "closed", what: "cannot close" }
            -- 
            refused Invalid { field: "name", message: "must not contain control characters (found '\\n')" }"#]].assert_eq(&out.join("\n-- \n"));
    }
}
