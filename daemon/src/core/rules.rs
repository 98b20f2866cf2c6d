//! The rules: what a command or an observation means, decided from the state alone.
//!
//! A rule takes a [`Draft`] of the state and the command's or observation's data. It checks the
//! command against the state (a [`Refusal`] names what is wrong), records what happens as events
//! (each applied to the draft at once, so a later step sees it) and asks for the effects the
//! runtime must carry out ([`Effect`]: type a prompt, run a gate, signal a process, set a timer).
//! The runtime runs the effects and feeds their results back as observations, which are rules
//! again. No rule does I/O, reads a clock or spawns anything: time comes in as `now`.
//!
//! - [`agents`]: how an agent's process ended, its restart policy.
//! - [`tasks`]: creation, assignment, dispatch, the queue, completion, gates, retries,
//!   escalation, an agent that ended or restarted, reconciliation after a restart.
//! - [`decisions`]: first answer wins, what a choice does, dismissal.
//! - [`sessions`]: create, close.

pub mod agents;
pub mod decisions;
pub mod sessions;
pub mod tasks;

use super::event::{EventBody, StoredEvent};
use super::state::State;

/// Whether a snapshot is due after `since` events past the last one, which held `objects`
/// objects: every `every` events (`[daemon] snapshot_every`), and never before as many events as
/// the last snapshot held objects. A snapshot costs in proportion to the state, and the state can
/// have grown by at most one object per event since the last one, so its cost per event stays
/// constant however much history the state holds (a daemon with 100,000 objects wrote all of them
/// every 1,000 events); a restart replays at most that many events after loading it, about what
/// loading it costs.
pub fn snapshot_due(since: u64, every: u64, objects: usize) -> bool {
    since >= every.max(objects as u64)
}

/// A rule's working copy: the events it records are applied at once, in order, and kept with
/// the effects it asks for.
pub struct Draft<'a> {
    state: &'a mut State,
    now: &'a str,
    /// What happened, in order, with seqs that continue the state's log.
    pub events: Vec<StoredEvent>,
    /// What the runtime must do.
    pub effects: Vec<Effect>,
}

impl<'a> Draft<'a> {
    /// A draft over `state` at time `now` (RFC 3339).
    pub fn new(state: &'a mut State, now: &'a str) -> Self {
        Self {
            state,
            now,
            events: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// The state, with this draft's events applied.
    pub fn state(&self) -> &State {
        self.state
    }

    /// The time of the command.
    pub fn now(&self) -> &str {
        self.now
    }

    /// Record an event: applied now.
    pub fn emit(&mut self, body: EventBody) {
        let event = StoredEvent {
            seq: self.state.last_seq + 1,
            time: self.now.to_string(),
            body,
        };
        self.state.apply(&event);
        self.events.push(event);
    }

    /// Ask the runtime to do something.
    pub fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    /// A fresh id for `prefix`.
    pub fn new_id(&self, prefix: &str) -> String {
        self.state.ids().next(prefix)
    }
}

/// Something a rule needs done outside the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Give an assigned task's prompt (or its gate's feedback) to its agent if it takes input.
    Dispatch {
        /// The task.
        task: String,
    },
    /// Type text into an agent and press Enter (once it takes input).
    Type {
        /// The agent.
        agent: String,
        /// The text.
        text: String,
    },
    /// Write the keys of a chosen answer into an agent's terminal.
    Keys {
        /// The agent.
        agent: String,
        /// The keys.
        keys: String,
    },
    /// Give an ACP agent the option chosen for its permission request.
    Permit {
        /// The agent.
        agent: String,
        /// Its request.
        request: u64,
        /// The agent's `optionId` of the choice.
        option_id: String,
        /// The choice, as the decision named it.
        choice: String,
    },
    /// Run gate `index` of a verifying task.
    RunGate {
        /// The task.
        task: String,
        /// Which of its gates.
        index: usize,
    },
    /// Kill a task's running gate (its process group).
    KillGate {
        /// The task.
        task: String,
    },
    /// Kill what a previous daemon's gate left running, if it is still that gate (the leader of
    /// the process group runs the gate's program: pids are reused).
    KillOrphanedGate {
        /// The task.
        task: String,
        /// The gate's process group.
        pgid: u32,
        /// The gate's program (its `argv[0]`).
        program: String,
    },
    /// Restart an agent after a delay (its restart policy), unless it was restarted or
    /// stopped by hand meanwhile.
    RestartAfter {
        /// The agent.
        agent: String,
        /// Its terminal when the restart was decided.
        terminal: String,
        /// The backoff.
        delay_ms: u64,
    },
    /// Merge an agent's worktree into its base: its task is done.
    Land {
        /// The agent.
        agent: String,
        /// `merge`, `squash` or `rebase`.
        strategy: String,
        /// The task that was done.
        task: String,
    },
    /// Stop a best-of-N candidate that was not chosen and remove its worktree once it ended.
    Retire {
        /// The agent.
        agent: String,
    },
    /// Remove an agent's worktree and branch (a person chose to discard unmerged work).
    Discard {
        /// The agent.
        agent: String,
    },
    /// Stop an agent: SIGTERM to its process group, SIGKILL after the grace period.
    Stop {
        /// The agent.
        agent: String,
    },
}

/// Why a command was refused, in terms the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A parameter is wrong.
    Invalid {
        /// The field's name on the wire.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An object does not exist.
    NotFound {
        /// Its kind (`task`, `agent`).
        kind: &'static str,
        /// The id given.
        id: String,
    },
    /// The object's state forbids it.
    Conflict {
        /// Its kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// Its state, in words.
        state: String,
        /// What cannot be done.
        what: String,
    },
    /// A size or count limit.
    Limit {
        /// What is limited.
        limit: &'static str,
        /// The limit.
        max: u64,
    },
}

impl Refusal {
    /// `field` is wrong.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Refusal::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Table tests of rules: a state built from events, a rule run on it, and what it recorded
    //! and asked for, as text for `expect-test` snapshots.

    use super::*;

    /// Run `rule` on `state` at a fixed time; the events (kind, subject, data) and effects, one
    /// per line, or the refusal.
    pub fn run<T: std::fmt::Debug>(
        state: &mut State,
        rule: impl FnOnce(&mut Draft) -> Result<T, Refusal>,
    ) -> String {
        let mut d = Draft::new(state, "2026-11-28T00:00:00Z");
        let result = rule(&mut d);
        let mut out: Vec<String> = d
            .events
            .iter()
            .map(|e| format!("event {}", describe(&e.body)))
            .chain(d.effects.iter().map(|e| format!("effect {e:?}")))
            .collect();
        match result {
            Ok(v) => {
                let v = format!("{v:?}");
                if v != "()" {
                    out.push(format!("=> {v}"));
                }
            }
            Err(r) => out.push(format!("refused {r:?}")),
        }
        out.join("\n")
    }

    /// An event in a line: its kind, subject and the few fields a reader checks.
    pub fn describe(b: &EventBody) -> String {
        use EventBody::*;
        match b {
            TaskStateChanged {
                id,
                state,
                previous,
                evidence,
            } => format!(
                "{id} task {} -> {} ({evidence})",
                previous.as_str(),
                state.as_str()
            ),
            AgentStateChanged {
                id,
                state,
                previous,
                evidence,
                ..
            } => format!(
                "{id} agent {} -> {} ({evidence})",
                previous.as_str(),
                state.as_str()
            ),
            TaskAssigned { id, agent_id } => format!("{id} assigned to {agent_id:?}"),
            TaskAttempt { id, attempt } => format!("{id} attempt {attempt}"),
            TaskCompleted { id, summary } => format!("{id} completed {summary:?}"),
            TaskCreated { task } => format!(
                "{} created {:?} {} gates={:?} max={}",
                task.id,
                task.title,
                task.priority.as_str(),
                task.gates.iter().map(|g| &g.name).collect::<Vec<_>>(),
                task.max_attempts
            ),
            TaskGate { id, result } => format!(
                "{id} gate {} attempt {} ok={} {:?}",
                result.name, result.attempt, result.ok, result.output_tail
            ),
            DecisionRequested { decision } => format!(
                "{} decision {:?} options={:?} source={:?}",
                decision.id, decision.title, decision.options, decision.source
            ),
            DecisionResolved {
                id, choice, reason, ..
            } => format!("{id} resolved {choice:?} ({reason:?})"),
            AgentRestarting {
                id,
                attempt,
                delay_ms,
                reason,
            } => format!("{id} restarting attempt {attempt} in {delay_ms}ms ({reason})"),
            AgentGaveUp { id, restarts } => format!("{id} gave up after {restarts}"),
            SessionClosed { id, .. } => format!("{id} session closed"),
            SessionCreated { session } => format!("{} session {:?}", session.id, session.name),
            other => format!("{} {}", other.kind(), other.subject()),
        }
    }

    /// A state with the default session and, for each `(name, kind, state)`, an agent in that
    /// state (ids a-2, a-4, ... with terminals t-3, t-5, ...).
    pub fn world(agents: &[(&str, &str, crate::core::agent::AgentState)]) -> State {
        use crate::core::agent::{AgentRecord, AgentState, Evidence, RestartPolicy, Watch};
        let mut state = State::default();
        let mut d = Draft::new(&mut state, "2026-11-28T00:00:00Z");
        super::sessions::create(&mut d, "default".into()).unwrap();
        for (name, kind, st) in agents {
            let mut ids = d.state().ids();
            let (id, terminal) = (ids.next("a"), ids.next("t"));
            d.emit(EventBody::AgentSpawned {
                agent: AgentRecord {
                    id: id.clone(),
                    name: name.to_string(),
                    kind: kind.to_string(),
                    command: vec![kind.to_string()],
                    cwd: "/w".into(),
                    env: Default::default(),
                    session_id: "s-1".into(),
                    terminal_id: terminal,
                    backend: "pty".into(),
                    host: None,
                    acp_session: None,
                    worktree: None,
                    state: AgentState::Starting,
                    exit_code: None,
                    pid: Some(10),
                    task_id: None,
                    restarts: 0,
                    watch: Watch {
                        restart: RestartPolicy::OnFailure,
                        max_restarts: 2,
                        ..Watch::default()
                    },
                    cols: 80,
                    rows: 24,
                    created_at: "2026-11-28T00:00:00Z".into(),
                    updated_at: "2026-11-28T00:00:00Z".into(),
                },
            });
            if *st != AgentState::Starting {
                super::agents::set_state(&mut d, &id, *st, Evidence::Output, None);
            }
        }
        state
    }

    /// A task with `gates` (names only) and `max_attempts`, given to `agent` if any; its id.
    pub fn add_task(
        state: &mut State,
        title: &str,
        gates: &[&str],
        max_attempts: u32,
        agent: Option<&str>,
    ) -> String {
        let mut d = Draft::new(state, "2026-11-28T00:00:00Z");
        super::tasks::create(
            &mut d,
            super::tasks::NewTask {
                title: title.into(),
                prompt: format!("do {title}"),
                priority: None,
                agent: agent.map(Into::into),
                gates: gates
                    .iter()
                    .map(|g| crate::core::task::GateSpec {
                        name: g.to_string(),
                        command: vec![g.to_string()],
                        timeout_s: 60,
                    })
                    .collect(),
                max_attempts,
                merge: None,
                group: None,
            },
        )
        .unwrap()
    }

    /// A gate run.
    pub fn gate_run(name: &str, attempt: u32, ok: bool) -> crate::core::task::GateRun {
        crate::core::task::GateRun {
            name: name.into(),
            attempt,
            ok,
            exit_code: Some(if ok { 0 } else { 1 }),
            duration_ms: 5,
            output_tail: if ok { "fine".into() } else { "broken".into() },
        }
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::snapshot_due;

    /// A small state snapshots every `every` events; a large one once per its own size, so the
    /// snapshots' total cost grows with the events, never with the events times the history.
    #[test]
    fn snapshots_are_due_every_n_events_and_never_before_the_state_size() {
        assert!(!snapshot_due(999, 1000, 10));
        assert!(snapshot_due(1000, 1000, 10));
        assert!(snapshot_due(1000, 1000, 1000));
        assert!(!snapshot_due(1000, 1000, 100_000));
        assert!(!snapshot_due(99_999, 1000, 100_000));
        assert!(snapshot_due(100_000, 1000, 100_000));
        assert!(snapshot_due(1, 1, 0));
        // Objects written by snapshots while 1,000,000 events are appended to a state that
        // already holds 100,000 objects (none added): ten snapshots, not a thousand.
        let run = |mut objects: usize, grows: bool| {
            let (mut since, mut last, mut written, mut snapshots) = (0u64, objects, 0usize, 0);
            for _ in 0..1_000_000 {
                since += 1;
                objects += usize::from(grows);
                if snapshot_due(since, 1000, last) {
                    written += objects;
                    last = objects;
                    snapshots += 1;
                    since = 0;
                }
            }
            (snapshots, written)
        };
        assert_eq!(run(100_000, false), (10, 1_000_000));
        // Every event a new object, from nothing: snapshots double in spacing, and what they
        // write stays within twice the events.
        let (snapshots, written) = run(0, true);
        assert_eq!(snapshots, 10, "{written}");
        assert!(written <= 2_000_000, "{written}");
    }
}
