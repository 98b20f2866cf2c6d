//! Decision rules: the first answer wins (later ones are refused, naming the answer that won),
//! what a choice does (keys typed into the agent that asked; a task's retry, reassign, accept or
//! cancel), and dismissal of questions that became moot.

use super::{tasks, Draft, Effect, Refusal};
use crate::core::agent::AgentState;
use crate::core::event::EventBody;
use crate::core::task::{DecisionRecord, DecisionSource};

/// The options of a decision about discarding unmerged work.
pub const DISCARD: &str = "discard";
/// Keep the work.
pub const KEEP: &str = "keep";

/// `orch/decision/resolve`: record the answer and do what it says.
pub fn resolve(
    d: &mut Draft,
    id: &str,
    choice: &str,
    reason: Option<String>,
) -> Result<DecisionRecord, Refusal> {
    let dec = d
        .state()
        .decisions
        .get(id)
        .cloned()
        .ok_or_else(|| Refusal::NotFound {
            kind: "decision",
            id: id.into(),
        })?;
    if dec.resolved {
        return Err(Refusal::Conflict {
            kind: "decision",
            id: dec.id,
            state: format!("resolved (choice {})", dec.choice.unwrap_or_default()),
            what: "cannot resolve again".into(),
        });
    }
    if let DecisionSource::Agent { id: agent, .. } = &dec.source {
        // Its keys could not be typed: the answer would be lost while the question stays.
        if d.state()
            .agents
            .get(agent)
            .is_some_and(|a| a.state == AgentState::Unreachable)
        {
            return Err(Refusal::Conflict {
                kind: "decision",
                id: dec.id,
                state: format!("asked by agent {agent}, which is unreachable"),
                what: "cannot answer it until its host is back".into(),
            });
        }
    }
    if !dec.options.iter().any(|o| o == choice) {
        return Err(Refusal::invalid(
            "choice",
            format!(
                "{choice:?} is not one of the options: {}",
                dec.options.join(", ")
            ),
        ));
    }
    let at = d.now().to_string();
    d.emit(EventBody::DecisionResolved {
        id: id.into(),
        choice: choice.into(),
        reason,
        at,
    });
    match &dec.source {
        DecisionSource::Agent { id: agent, keys } => {
            let keys = keys
                .iter()
                .find(|(o, _)| o == choice)
                .map(|(_, k)| k.clone())
                .unwrap_or_default();
            d.effect(Effect::Keys {
                agent: agent.clone(),
                keys,
            });
        }
        DecisionSource::Permission {
            id: agent,
            request,
            options,
        } => {
            let option_id = options
                .iter()
                .find(|(o, _)| o == choice)
                .map(|(_, id)| id.clone())
                .unwrap_or_default();
            d.effect(Effect::Permit {
                agent: agent.clone(),
                request: *request,
                option_id,
                choice: choice.into(),
            });
        }
        DecisionSource::Discard { id: agent } => {
            if choice == DISCARD {
                d.effect(Effect::Discard {
                    agent: agent.clone(),
                });
            }
        }
        DecisionSource::BestOf { task } => tasks::best_of_decided(d, task, choice),
        DecisionSource::Task { id: task } => tasks::decided(d, task, choice),
        DecisionSource::User => {}
    }
    Ok(d.state().decisions[id].clone())
}

/// Resolve as `dismissed` every pending decision whose source matches: its question is moot
/// (the agent stopped waiting, the task was cancelled or reassigned).
pub fn dismiss(d: &mut Draft, source: impl Fn(&DecisionSource) -> bool, why: &str) {
    let pending: Vec<String> = d
        .state()
        .decisions
        .values()
        .filter(|dec| !dec.resolved && source(&dec.source))
        .map(|dec| dec.id.clone())
        .collect();
    for id in pending {
        let at = d.now().to_string();
        d.emit(EventBody::DecisionResolved {
            id,
            choice: "dismissed".into(),
            reason: Some(why.into()),
            at,
        });
    }
}

/// Dismiss every pending question of agent `agent` (on its screen or over ACP).
pub fn dismiss_agent(d: &mut Draft, agent: &str, why: &str) {
    dismiss(d, |s| asked_by(s, agent), why);
}

/// Whether a decision's source is a question of agent `agent`.
pub fn asked_by(source: &DecisionSource, agent: &str) -> bool {
    match source {
        DecisionSource::Agent { id, .. } | DecisionSource::Permission { id, .. } => id == agent,
        DecisionSource::Discard { .. }
        | DecisionSource::BestOf { .. }
        | DecisionSource::Task { .. }
        | DecisionSource::User => false,
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::core::agent::AgentState::Waiting;
    use crate::core::rules::testing::{run, world};

    /// An agent's question with two options, each typing its keys.
    fn asked(state: &mut crate::core::state::State, agent: &str) -> String {
        let mut d = Draft::new(state, "2026-11-28T00:00:00Z");
        let id = d.new_id("d");
        d.emit(EventBody::DecisionRequested {
            decision: DecisionRecord {
                id: id.clone(),
                title: "claude-1 is waiting for an answer".into(),
                detail: "Do you want to proceed?".into(),
                options: vec!["Yes".into(), "No".into()],
                resolved: false,
                choice: None,
                reason: None,
                source: DecisionSource::Agent {
                    id: agent.into(),
                    keys: vec![("Yes".into(), "1".into()), ("No".into(), "3".into())],
                },
                created_at: "2026-11-28T00:00:00Z".into(),
                resolved_at: None,
            },
        });
        id
    }

    #[test]
    fn the_first_answer_wins_and_types_its_keys_once() {
        let mut s = world(&[("claude-1", "claude", Waiting)]);
        let d = asked(&mut s, "a-2");
        let answers = [
            run(&mut s, |dr| resolve(dr, "d-404", "Yes", None).map(|_| ())),
            run(&mut s, |dr| resolve(dr, &d, "Maybe", None).map(|_| ())),
            run(&mut s, |dr| {
                resolve(dr, &d, "Yes", Some("answered by nvim".into())).map(|_| ())
            }),
            run(&mut s, |dr| resolve(dr, &d, "No", None).map(|_| ())),
        ];
        expect![[r#"
            refused NotFound { kind: "decision", id: "d-404" }
            refused Invalid { field: "choice", message: "\"Maybe\" is not one of the options: Yes, No" }
            event d-3 resolved "Yes" (Some("answered by nvim"))
            effect Keys { agent: "a-2", keys: "1" }
            refused Conflict { kind: "decision", id: "d-3", state: "resolved (choice Yes)", what: "cannot resolve again" }"#]].assert_eq(&answers.join("\n"));
    }

    #[test]
    fn a_moot_question_is_dismissed_with_the_reason() {
        let mut s = world(&[
            ("claude-1", "claude", Waiting),
            ("codex-1", "codex", Waiting),
        ]);
        let mine = asked(&mut s, "a-2");
        let other = asked(&mut s, "a-4");
        expect![[r#"event d-4 resolved "dismissed" (Some("answered in the agent's terminal"))"#]]
            .assert_eq(&run(&mut s, |d| {
                dismiss_agent(d, "a-2", "answered in the agent's terminal");
                Ok(())
            }));
        assert!(s.decisions[&mine].resolved);
        assert!(!s.decisions[&other].resolved);
        // Nothing pending left for it: a second dismissal records nothing.
        expect![[""]].assert_eq(&run(&mut s, |d| {
            dismiss_agent(d, "a-2", "again");
            Ok(())
        }));
    }

    /// An ACP agent's permission request: the first answer gives the agent the chosen option's
    /// `optionId`; its pending requests are dismissed with its other questions.
    #[test]
    fn a_permission_answer_names_the_agents_option() {
        let mut s = world(&[("gemini-acp-1", "gemini-acp", Waiting)]);
        let ask = |s: &mut crate::core::state::State, request: u64| {
            let mut d = Draft::new(s, "2026-11-28T00:00:00Z");
            let id = d.new_id("d");
            d.emit(EventBody::DecisionRequested {
                decision: DecisionRecord {
                    id: id.clone(),
                    title: "gemini-acp-1 asks permission".into(),
                    detail: "touch x".into(),
                    options: vec!["Allow".into(), "Reject".into()],
                    resolved: false,
                    choice: None,
                    reason: None,
                    source: DecisionSource::Permission {
                        id: "a-2".into(),
                        request,
                        options: vec![
                            ("Allow".into(), "proceed_once".into()),
                            ("Reject".into(), "cancel".into()),
                        ],
                    },
                    created_at: "2026-11-28T00:00:00Z".into(),
                    resolved_at: None,
                },
            });
            id
        };
        let first = ask(&mut s, 1);
        let second = ask(&mut s, 2);
        let lines = [
            run(&mut s, |d| resolve(d, &first, "Allow", None).map(|_| ())),
            run(&mut s, |d| resolve(d, &first, "Reject", None).map(|_| ())),
            run(&mut s, |d| {
                dismiss_agent(d, "a-2", "the turn ended");
                Ok(())
            }),
        ];
        expect![[r#"
            event d-3 resolved "Allow" (None)
            effect Permit { agent: "a-2", request: 1, option_id: "proceed_once", choice: "Allow" }
            refused Conflict { kind: "decision", id: "d-3", state: "resolved (choice Allow)", what: "cannot resolve again" }
            event d-4 resolved "dismissed" (Some("the turn ended"))"#]].assert_eq(&lines.join("\n"));
        assert!(s.decisions[&second].resolved);
    }
}
