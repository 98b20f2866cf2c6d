//! Decision rules: the first answer wins (later ones are refused, naming the answer that won),
//! what a choice does (keys typed into the agent that asked; a task's retry, reassign, accept or
//! cancel), and dismissal of questions that became moot.

use super::{tasks, Draft, Effect, Refusal};
use crate::core::event::EventBody;
use crate::core::task::{DecisionRecord, DecisionSource};

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

/// Dismiss every pending question of agent `agent`.
pub fn dismiss_agent(d: &mut Draft, agent: &str, why: &str) {
    dismiss(
        d,
        |s| matches!(s, DecisionSource::Agent { id, .. } if id == agent),
        why,
    );
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
}
