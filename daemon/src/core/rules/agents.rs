//! Agent rules: what an agent's process ending means, its restart policy with backoff and a
//! give-up limit, and which agents a restarted daemon lost.
//!
//! The agent state machine itself is [`AgentState::can_become`]; [`set_state`] checks it.

use std::collections::BTreeMap;

use super::{Draft, Effect, Refusal};
use crate::core::agent::{AgentState, Evidence, RestartPolicy};
use crate::core::event::EventBody;

/// Change an agent's state if the state machine allows it; returns whether it changed.
pub fn set_state(
    d: &mut Draft,
    id: &str,
    state: AgentState,
    evidence: Evidence,
    exit_code: Option<i32>,
) -> bool {
    let Some(prev) = d.state().agents.get(id).map(|a| a.state) else {
        return false;
    };
    if !prev.can_become(state) {
        return false;
    }
    d.emit(EventBody::AgentStateChanged {
        id: id.into(),
        state,
        previous: prev,
        evidence: evidence.to_string(),
        exit_code,
    });
    true
}

/// Environment a client gives a program (`env` of a spawn or a terminal): names that a process
/// can have (not empty, no `=`, no NUL; refused as field `env`, the name quoted) and values without
/// NUL (refused as field `env.<name>`).
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), Refusal> {
    for (key, value) in env {
        let name_problem = if key.is_empty() {
            Some("must not be empty")
        } else if key.contains('=') {
            Some("must not contain '='")
        } else if key.contains('\0') {
            Some("must not contain a NUL byte")
        } else {
            None
        };
        if let Some(why) = name_problem {
            return Err(Refusal::Invalid {
                field: "env".into(),
                message: format!("the variable name {key:?} {why}"),
            });
        }
        if value.contains('\0') {
            return Err(Refusal::Invalid {
                field: format!("env.{key}"),
                message: "the value must not contain a NUL byte".into(),
            });
        }
    }
    Ok(())
}

/// How an agent's process ended: lost with its backend, stopped on request, exited 0, or
/// failed.
pub fn ending(code: Option<i32>, lost: Option<String>, stopping: bool) -> (AgentState, Evidence) {
    if let Some(why) = lost {
        (AgentState::Lost, Evidence::Daemon { what: why })
    } else if stopping {
        let what = format!("stopped on request ({})", Evidence::Exit { code });
        (AgentState::Stopped, Evidence::Request { what })
    } else if code == Some(0) {
        (AgentState::Exited, Evidence::Exit { code })
    } else {
        (AgentState::Failed, Evidence::Exit { code })
    }
}

/// What the restart policy does with an agent that ended in `state`: nothing, give up (its
/// restarts in a row reached the limit), or restart after a backoff. `restarts` is its
/// automatic restarts in a row (a run that lasted resets them before this is asked). Returns
/// the new count of restarts in a row.
pub fn after_end(d: &mut Draft, id: &str, state: AgentState, why: &Evidence, restarts: u32) -> u32 {
    let Some(agent) = d.state().agents.get(id).cloned() else {
        return restarts;
    };
    if !agent.watch.restart.wants_restart(state) {
        return restarts;
    }
    if restarts >= agent.watch.max_restarts {
        d.emit(EventBody::AgentGaveUp {
            id: id.into(),
            restarts,
        });
        return restarts;
    }
    let attempt = restarts + 1;
    let delay_ms = RestartPolicy::backoff_ms(attempt);
    d.emit(EventBody::AgentRestarting {
        id: id.into(),
        attempt,
        delay_ms,
        reason: why.to_string(),
    });
    d.effect(Effect::RestartAfter {
        agent: id.into(),
        terminal: agent.terminal_id,
        delay_ms,
    });
    attempt
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::core::rules::testing::{run, world};

    /// Environment names and values a process cannot have are refused, naming the variable.
    #[test]
    fn env_names_and_values() {
        let rows: Vec<String> = [
            ("A", "1"),
            ("", "1"),
            ("A=B", "1"),
            ("A\0", "1"),
            ("B", "x\0y"),
        ]
        .into_iter()
        .map(|(k, v)| {
            let env = BTreeMap::from([(k.to_string(), v.to_string())]);
            format!("{k:?}={v:?}: {:?}", check_env(&env))
        })
        .collect();
        expect![[r#"
            "A"="1": Ok(())
            ""="1": Err(Invalid { field: "env", message: "the variable name \"\" must not be empty" })
            "A=B"="1": Err(Invalid { field: "env", message: "the variable name \"A=B\" must not contain '='" })
            "A\0"="1": Err(Invalid { field: "env", message: "the variable name \"A\\0\" must not contain a NUL byte" })
            "B"="x\0y": Err(Invalid { field: "env.B", message: "the value must not contain a NUL byte" })"#]].assert_eq(&rows.join("\n"));
    }

    /// The agent state machine, every pair: which changes are allowed.
    #[test]
    fn every_transition() {
        let mut rows = Vec::new();
        for from in AgentState::ALL {
            let to: Vec<&str> = AgentState::ALL
                .into_iter()
                .filter(|to| from.can_become(*to))
                .map(|to| to.as_str())
                .collect();
            rows.push(format!("{:>8} -> {}", from.as_str(), to.join(" ")));
        }
        expect![[r#"
            starting -> running idle busy waiting exited failed stopped lost exiting unreachable
             running -> idle busy waiting exited failed stopped lost exiting unreachable
                idle -> running busy waiting exited failed stopped lost exiting unreachable
                busy -> running idle waiting exited failed stopped lost exiting unreachable
             waiting -> running idle busy exited failed stopped lost exiting unreachable
              exited -> starting failed
              failed -> starting
             stopped -> starting failed
                lost -> starting failed
             exiting -> running idle busy waiting exited failed stopped lost unreachable
            unreachable -> running idle busy waiting exited failed stopped lost exiting"#]]
        .assert_eq(&rows.join("\n"));
    }

    #[test]
    fn how_a_process_ended() {
        let rows: Vec<String> = [
            (Some(0), None, false),
            (Some(2), None, false),
            (None, None, false),
            (Some(143), None, true),
            (None, Some("tmux server gone: killed".to_string()), false),
        ]
        .into_iter()
        .map(|(code, lost, stopping)| {
            let (state, evidence) = ending(code, lost, stopping);
            format!("{}: {evidence}", state.as_str())
        })
        .collect();
        expect![[r#"
            exited: exit 0
            failed: exit 2
            failed: killed by a signal
            stopped: stopped on request (exit 143)
            lost: tmux server gone: killed"#]]
        .assert_eq(&rows.join("\n"));
    }

    /// `on-failure` with at most two restarts in a row: 500 ms, 1 s, then it gives up; a clean
    /// exit is not restarted.
    #[test]
    fn restarts_back_off_then_give_up() {
        let mut s = world(&[("bot-1", "bot", AgentState::Busy)]);
        let why = Evidence::Exit { code: Some(1) };
        let mut restarts = 0;
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(run(&mut s, |d| {
                restarts = after_end(d, "a-2", AgentState::Failed, &why, restarts);
                Ok(())
            }));
        }
        out.push(run(&mut s, |d| {
            after_end(
                d,
                "a-2",
                AgentState::Exited,
                &Evidence::Exit { code: Some(0) },
                0,
            );
            Ok(())
        }));
        expect![[r#"
            event a-2 restarting attempt 1 in 500ms (exit 1)
            effect RestartAfter { agent: "a-2", terminal: "t-3", delay_ms: 500 }
            event a-2 restarting attempt 2 in 1000ms (exit 1)
            effect RestartAfter { agent: "a-2", terminal: "t-3", delay_ms: 1000 }
            event a-2 gave up after 2
        "#]]
        .assert_eq(&out.join("\n"));
    }
}
