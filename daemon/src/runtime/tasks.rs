//! Tasks on the runtime: the queue, dispatch into agents, completion, gates with timeouts,
//! retries with the failure as feedback, escalation, decisions, progress, and the scheduler's
//! periodic jobs.
//!
//! Gate commands run outside the loop (spawned tasks, each in its own process group so a timeout
//! kills the whole tree) and report back as [`super::Input::GateDone`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{clock, ConnId, Input, OpError, Runtime};
use crate::core::agent::AgentState;
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::task::{
    DecisionRecord, DecisionSource, GateRun, GateSpec, Priority, TaskRecord, TaskState,
};

/// Bytes of a gate's output kept in `gateResults[].outputTail`.
const TAIL_BYTES: usize = 4096;
/// Kinds that never take queued work: a plain shell or command is not an agent that reads prompts.
const NO_QUEUE_KINDS: [&str; 2] = ["shell", "command"];

/// A gate run's result, posted back to the loop.
#[derive(Debug)]
pub struct GateOutcome {
    /// The task.
    pub task: String,
    /// Index of the gate in the task's list.
    pub index: usize,
    /// The result.
    pub run: GateRun,
}

/// A scheduler job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its name.
    pub name: &'static str,
    /// Period.
    pub every: Duration,
    /// Paused by a person.
    pub paused: bool,
    /// Last run (monotonic, for scheduling).
    pub last: Option<Instant>,
    /// Last run (wall clock, for display).
    pub last_run: Option<String>,
    /// Whether it succeeded.
    pub last_ok: Option<bool>,
}

/// Runtime-only task state.
pub struct WorkState {
    /// Gate processes running: task id -> process group id.
    pub gate_pids: HashMap<String, u32>,
    /// Progress streams: (connection, task) -> sender of `$/progress` values.
    pub progress: HashMap<(ConnId, String), mpsc::UnboundedSender<crate::rpc::notify::Progress>>,
    /// Scheduler jobs.
    pub jobs: Vec<Job>,
    /// The terminal each task's prompt was last typed into.
    pub prompted: HashMap<String, String>,
    /// Terminals the health job found dead without an exit report (settled on the next run).
    pub silent_exits: std::collections::HashSet<String>,
}

impl Default for WorkState {
    fn default() -> Self {
        let job = |name, secs| Job {
            name,
            every: Duration::from_secs(secs),
            paused: false,
            last: None,
            last_run: None,
            last_ok: None,
        };
        Self {
            gate_pids: HashMap::new(),
            progress: HashMap::new(),
            silent_exits: Default::default(),
            prompted: HashMap::new(),
            jobs: vec![
                job("dispatch", 2),
                job("health", 10),
                job("retention", 3600),
            ],
        }
    }
}

impl WorkState {
    /// Kill every running gate (daemon stop); the next daemon records them as interrupted.
    pub fn interrupt_gates(&mut self) {
        for (_, pgid) in self.gate_pids.drain() {
            // SAFETY: killpg with a pgid we created; a stale one fails harmlessly.
            unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
        }
    }
}

/// What `orch/task/create` asks for, after wire decoding.
pub struct CreateTask {
    /// Title.
    pub title: String,
    /// Prompt.
    pub prompt: String,
    /// Priority name.
    pub priority: Option<String>,
    /// Agent id or name.
    pub agent: Option<String>,
    /// Gates: names or inline.
    pub gates: Option<Vec<GateArg>>,
    /// Attempts.
    pub max_attempts: Option<u32>,
}

/// A gate argument.
pub enum GateArg {
    /// A configured gate.
    Name(String),
    /// An inline gate.
    Inline(GateSpec),
}

impl Runtime {
    /// A task by id.
    pub fn task_ref(&self, id: &str) -> Result<&TaskRecord, OpError> {
        self.state.tasks.get(id).ok_or_else(|| OpError::NotFound {
            kind: "task",
            id: id.into(),
        })
    }

    fn set_task_state(&mut self, id: &str, state: TaskState, evidence: String) {
        let Some(prev) = self.state.tasks.get(id).map(|t| t.state) else {
            return;
        };
        if prev == state {
            return;
        }
        if !prev.can_become(state) {
            // A bug, not a user error: loud in tests, logged in production.
            tracing::error!(
                task = id,
                "task state {} -> {} is not a transition of the state machine",
                prev.as_str(),
                state.as_str()
            );
            debug_assert!(false, "task {id}: {} -> {}", prev.as_str(), state.as_str());
        }
        self.emit(EventBody::TaskStateChanged {
            id: id.into(),
            state,
            previous: prev,
            evidence,
        });
    }

    /// `orch/task/create`.
    pub fn create_task(&mut self, req: CreateTask) -> Result<TaskRecord, OpError> {
        const MAX_PROMPT: usize = 1 << 20;
        if req.title.trim().is_empty() {
            return Err(OpError::invalid("title", "must not be empty"));
        }
        if req.prompt.len() > MAX_PROMPT {
            return Err(OpError::Limit {
                limit: "prompt bytes",
                max: MAX_PROMPT as u64,
            });
        }
        let priority = match &req.priority {
            None => Priority::Normal,
            Some(p) => Priority::parse(p).ok_or_else(|| {
                OpError::invalid(
                    "priority",
                    format!("{p:?} is not one of low, normal, high, urgent"),
                )
            })?,
        };
        let max_attempts = req.max_attempts.unwrap_or(self.config.tasks.max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err(OpError::invalid(
                "maxAttempts",
                format!("{max_attempts} is out of range 1..=100"),
            ));
        }
        let gate_args = req.gates.unwrap_or_else(|| {
            self.config
                .tasks
                .default_gates
                .iter()
                .cloned()
                .map(GateArg::Name)
                .collect()
        });
        if gate_args.len() > 32 {
            return Err(OpError::Limit {
                limit: "gates per task",
                max: 32,
            });
        }
        let mut gates = Vec::new();
        for (i, g) in gate_args.into_iter().enumerate() {
            let field = format!("gates[{i}]");
            gates.push(match g {
                GateArg::Name(name) => {
                    let c = self.config.gates.get(&name).ok_or_else(|| {
                        let known: Vec<&str> =
                            self.config.gates.keys().map(String::as_str).collect();
                        OpError::invalid(
                            &field,
                            format!(
                                "no gate named {name:?} in orch.toml (configured: {})",
                                if known.is_empty() {
                                    "none".into()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        )
                    })?;
                    GateSpec {
                        name,
                        command: c.command.clone(),
                        timeout_s: c.timeout_s,
                    }
                }
                GateArg::Inline(spec) => {
                    if spec.command.is_empty() || spec.command[0].is_empty() {
                        return Err(OpError::invalid(
                            &format!("{field}.command"),
                            "must be a non-empty argv",
                        ));
                    }
                    if spec.timeout_s == 0 {
                        return Err(OpError::invalid(
                            &format!("{field}.timeoutS"),
                            "must be at least 1",
                        ));
                    }
                    spec
                }
            });
        }
        let agent = match &req.agent {
            Some(a) => Some(self.assignable_agent(a, None)?),
            None => None,
        };
        let id = self.new_id(ids::TASK);
        let now = clock::now_rfc3339();
        self.emit(EventBody::TaskCreated {
            task: TaskRecord {
                id: id.clone(),
                title: req.title,
                prompt: req.prompt,
                priority,
                agent_id: None,
                state: TaskState::Pending,
                attempts: 0,
                max_attempts,
                gates,
                gate_results: Vec::new(),
                decision_id: None,
                summary: None,
                running_gate: None,
                running_gate_pgid: None,
                created_at: now.clone(),
                updated_at: now,
            },
        });
        if let Some(agent) = agent {
            self.assign(&id, &agent, "assigned at creation")?;
        }
        Ok(self.state.tasks[&id].clone())
    }

    /// An agent that can take a task now.
    fn assignable_agent(&self, id: &str, task: Option<&str>) -> Result<String, OpError> {
        let a = self.agent_ref(id)?;
        if !a.state.is_live() {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: a.state.as_str().into(),
                what: "cannot take a task".into(),
            });
        }
        if let Some(other) = a.task_id.as_deref().filter(|t| Some(*t) != task) {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: format!("busy with task {other}"),
                what: "cannot take another task".into(),
            });
        }
        Ok(a.id.clone())
    }

    fn assign(&mut self, task: &str, agent: &str, evidence: &str) -> Result<(), OpError> {
        self.emit(EventBody::TaskAssigned {
            id: task.into(),
            agent_id: Some(agent.into()),
        });
        self.set_task_state(task, TaskState::Assigned, format!("{evidence}: {agent}"));
        self.try_dispatch(task);
        Ok(())
    }

    /// `orch/task/assign`.
    pub fn assign_task(&mut self, id: &str, agent: &str) -> Result<TaskRecord, OpError> {
        let t = self.task_ref(id)?.clone();
        if !matches!(
            t.state,
            TaskState::Pending | TaskState::Assigned | TaskState::Escalated | TaskState::Failed
        ) {
            return Err(OpError::Conflict {
                kind: "task",
                id: t.id,
                state: t.state.as_str().into(),
                what: "cannot assign".into(),
            });
        }
        let agent = self.assignable_agent(agent, Some(id))?;
        self.close_task_decision(id, "the task was assigned again");
        self.assign(id, &agent, "assigned")?;
        Ok(self.state.tasks[id].clone())
    }

    /// Type the task's prompt into its agent if the agent is idle.
    fn try_dispatch(&mut self, task: &str) {
        let Some(t) = self.state.tasks.get(task).cloned() else {
            return;
        };
        if t.state != TaskState::Assigned {
            return;
        }
        let Some(agent) = t
            .agent_id
            .as_ref()
            .and_then(|a| self.state.agents.get(a))
            .cloned()
        else {
            return;
        };
        if agent.state != AgentState::Idle {
            return;
        }
        if !self.terminals.contains_key(&agent.terminal_id) {
            return;
        }
        let failed = t
            .gate_results
            .iter()
            .rev()
            .find(|r| !r.ok && r.attempt == t.attempts)
            .filter(|_| t.attempts > 0);
        // A process that never saw the task (another agent after a requeue, or a restarted one)
        // needs the task itself, not only what went wrong with someone's attempt at it.
        let seen = self.work.prompted.get(task) == Some(&agent.terminal_id);
        let prompt = match failed {
            Some(failed) if seen => feedback(&t, failed),
            Some(failed) => format!("{}\n\n{}", t.prompt, feedback(&t, failed)),
            None => t.prompt.clone(),
        };
        if let Err(e) = self.type_into(&agent.id, &prompt, true, None) {
            tracing::warn!(task, "dispatch failed: {e}");
            return;
        }
        self.work
            .prompted
            .insert(task.to_string(), agent.terminal_id.clone());
        self.emit(EventBody::TaskAttempt {
            id: task.into(),
            attempt: t.attempts + 1,
        });
        self.set_task_state(
            task,
            TaskState::Running,
            format!(
                "prompt typed into {} (attempt {})",
                agent.name,
                t.attempts + 1
            ),
        );
    }

    /// An agent went idle: give it its assigned task.
    pub(super) fn agent_became_idle(&mut self, agent: &str) {
        if let Some(task) = self.state.agents.get(agent).and_then(|a| a.task_id.clone()) {
            self.try_dispatch(&task);
        }
    }

    /// Queue: pending tasks without an agent go to idle agents without a task, by priority.
    fn dispatch_queue(&mut self) {
        let mut pending: Vec<(Priority, String)> = self
            .state
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Pending && t.agent_id.is_none())
            .map(|t| (t.priority, t.id.clone()))
            .collect();
        pending.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| ids::order_key(&a.1).cmp(&ids::order_key(&b.1)))
        });
        for (_, task) in pending {
            let free = self
                .state
                .agents
                .values()
                .find(|a| {
                    a.state == AgentState::Idle
                        && a.task_id.is_none()
                        && !NO_QUEUE_KINDS.contains(&a.kind.as_str())
                })
                .map(|a| a.id.clone());
            let Some(agent) = free else { break };
            let _ = self.assign(&task, &agent, "taken from the queue");
        }
        let assigned: Vec<String> = self
            .state
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Assigned)
            .map(|t| t.id.clone())
            .collect();
        for t in assigned {
            self.try_dispatch(&t);
        }
    }

    /// `orch/task/complete`: gates run next.
    pub fn complete_task(
        &mut self,
        id: &str,
        summary: Option<String>,
    ) -> Result<TaskRecord, OpError> {
        let t = self.task_ref(id)?.clone();
        // A person may also say a task is done that no agent worked on (pending).
        if !matches!(
            t.state,
            TaskState::Running | TaskState::Assigned | TaskState::Pending
        ) {
            return Err(OpError::Conflict {
                kind: "task",
                id: t.id,
                state: t.state.as_str().into(),
                what: "cannot complete".into(),
            });
        }
        self.emit(EventBody::TaskCompleted {
            id: id.into(),
            summary,
        });
        if t.attempts == 0 {
            self.emit(EventBody::TaskAttempt {
                id: id.into(),
                attempt: 1,
            });
        }
        self.set_task_state(id, TaskState::Verifying, "marked complete".into());
        self.start_gate(id, 0);
        Ok(self.state.tasks[id].clone())
    }

    /// `orch/task/cancel`.
    pub fn cancel_task(&mut self, id: &str) -> Result<TaskRecord, OpError> {
        let t = self.task_ref(id)?.clone();
        if t.state.is_final() {
            return Err(OpError::Conflict {
                kind: "task",
                id: t.id,
                state: t.state.as_str().into(),
                what: "cannot cancel".into(),
            });
        }
        if let Some(pgid) = self.work.gate_pids.remove(id) {
            // SAFETY: killpg on the gate's own process group.
            unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
        }
        self.set_task_state(id, TaskState::Cancelled, "cancelled".into());
        self.close_task_decision(id, "the task was cancelled");
        Ok(self.state.tasks[id].clone())
    }

    fn close_task_decision(&mut self, task: &str, why: &str) {
        self.dismiss_decisions(
            |s| matches!(s, DecisionSource::Task { id } if id == task),
            why,
        );
    }

    /// Resolve as `dismissed` every pending decision whose source matches: its question is
    /// moot (the agent stopped waiting, the task was cancelled or reassigned).
    pub fn dismiss_decisions(&mut self, source: impl Fn(&DecisionSource) -> bool, why: &str) {
        let pending: Vec<String> = self
            .state
            .decisions
            .values()
            .filter(|d| !d.resolved && source(&d.source))
            .map(|d| d.id.clone())
            .collect();
        for d in pending {
            self.emit(EventBody::DecisionResolved {
                id: d,
                choice: "dismissed".into(),
                reason: Some(why.into()),
                at: clock::now_rfc3339(),
            });
        }
    }

    /// Start gate `index` of a verifying task, or finish verification.
    fn start_gate(&mut self, id: &str, index: usize) {
        let t = self.state.tasks[id].clone();
        if t.state != TaskState::Verifying {
            return;
        }
        let Some(gate) = t.gates.get(index).cloned() else {
            self.set_task_state(
                id,
                TaskState::Done,
                if t.gates.is_empty() {
                    "no gates".into()
                } else {
                    "all gates passed".into()
                },
            );
            return;
        };
        let attempt = t.attempts.max(1);
        let cwd = t
            .agent_id
            .as_ref()
            .and_then(|a| self.state.agents.get(a))
            .map(|a| PathBuf::from(&a.cwd))
            .unwrap_or_else(|| self.paths.root.clone());
        let log = self
            .paths
            .state_dir
            .join("gates")
            .join(format!("{id}-{attempt}-{}.log", sanitize(&gate.name)));
        let task = id.to_string();
        // Spawning is synchronous and quick; only the waiting happens off the loop.
        let spawned = spawn_gate(&gate, &cwd);
        let pgid = spawned.as_ref().ok().and_then(|c| c.id());
        self.emit(EventBody::TaskGateStarted {
            id: id.into(),
            name: gate.name.clone(),
            attempt,
            pgid,
        });
        match spawned {
            Ok(child) => {
                if let Some(pid) = pgid {
                    self.work.gate_pids.insert(task.clone(), pid);
                }
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let run = run_gate(child, &gate, attempt, &log).await;
                    let _ = tx.send(Input::GateDone(GateOutcome { task, index, run }));
                });
            }
            Err(e) => {
                let run = GateRun {
                    name: gate.name.clone(),
                    attempt,
                    ok: false,
                    exit_code: None,
                    duration_ms: 0,
                    output_tail: format!("cannot start {:?}: {e}", gate.command[0]),
                };
                let _ = self
                    .tx
                    .send(Input::GateDone(GateOutcome { task, index, run }));
            }
        }
    }

    pub(super) fn on_gate_done(&mut self, o: GateOutcome) {
        self.work.gate_pids.remove(&o.task);
        let Some(t) = self.state.tasks.get(&o.task).cloned() else {
            return;
        };
        if t.state != TaskState::Verifying {
            return; // cancelled meanwhile
        }
        let ok = o.run.ok;
        let name = o.run.name.clone();
        self.emit(EventBody::TaskGate {
            id: o.task.clone(),
            result: o.run,
        });
        if ok {
            return self.start_gate(&o.task, o.index + 1);
        }
        if t.attempts >= t.max_attempts {
            self.escalate(&o.task, &name);
        } else {
            let live_agent = t
                .agent_id
                .as_ref()
                .and_then(|a| self.state.agents.get(a))
                .is_some_and(|a| a.state.is_live());
            if live_agent {
                // Back to the agent with the failure as its next prompt.
                self.set_task_state(&o.task, TaskState::Assigned, format!("gate {name} failed"));
                self.try_dispatch(&o.task);
            } else {
                // Nobody to fix it: back to the queue, where the next free agent takes it.
                self.emit(EventBody::TaskAssigned {
                    id: o.task.clone(),
                    agent_id: None,
                });
                self.set_task_state(
                    &o.task,
                    TaskState::Pending,
                    format!("gate {name} failed; no agent to fix it, back in the queue"),
                );
            }
        }
    }

    fn escalate(&mut self, id: &str, gate: &str) {
        let t = self.state.tasks[id].clone();
        self.set_task_state(
            id,
            TaskState::Escalated,
            format!("gate {gate} failed after {} attempts", t.attempts),
        );
        let last = t.gate_results.iter().rev().find(|r| !r.ok);
        let detail = match last {
            Some(r) => format!(
                "Gate {} failed on attempt {} of {}.\n{}",
                r.name, r.attempt, t.max_attempts, r.output_tail
            ),
            None => format!("Gate {gate} failed."),
        };
        let decision = self.new_id(ids::DECISION);
        self.emit(EventBody::DecisionRequested {
            decision: DecisionRecord {
                id: decision,
                title: format!("Task {} ({}) keeps failing its gates", t.id, t.title),
                detail,
                options: ["retry", "reassign", "accept", "cancel"]
                    .map(String::from)
                    .to_vec(),
                resolved: false,
                choice: None,
                reason: None,
                source: DecisionSource::Task { id: id.into() },
                created_at: clock::now_rfc3339(),
                resolved_at: None,
            },
        });
    }

    /// `orch/decision/resolve`: the first answer wins; the choice takes effect.
    pub fn resolve_decision(
        &mut self,
        id: &str,
        choice: &str,
        reason: Option<String>,
    ) -> Result<DecisionRecord, OpError> {
        let d = self
            .state
            .decisions
            .get(id)
            .cloned()
            .ok_or_else(|| OpError::NotFound {
                kind: "decision",
                id: id.into(),
            })?;
        if d.resolved {
            return Err(OpError::Conflict {
                kind: "decision",
                id: d.id,
                state: format!("resolved (choice {})", d.choice.unwrap_or_default()),
                what: "cannot resolve again".into(),
            });
        }
        if !d.options.iter().any(|o| o == choice) {
            return Err(OpError::invalid(
                "choice",
                format!(
                    "{choice:?} is not one of the options: {}",
                    d.options.join(", ")
                ),
            ));
        }
        self.emit(EventBody::DecisionResolved {
            id: id.into(),
            choice: choice.into(),
            reason,
            at: clock::now_rfc3339(),
        });
        match &d.source {
            DecisionSource::Agent { id: agent, keys } => {
                if let Some(ws) = self.watch.get_mut(agent) {
                    ws.decision = None;
                }
                let keys = keys
                    .iter()
                    .find(|(o, _)| o == choice)
                    .map(|(_, k)| k.clone())
                    .unwrap_or_default();
                if let Some(term) = self
                    .state
                    .agents
                    .get(agent)
                    .and_then(|a| self.terminals.get(&a.terminal_id))
                    .cloned()
                {
                    let _ = term.write(keys.as_bytes());
                }
            }
            DecisionSource::Task { id: task } => {
                let task = task.clone();
                match choice {
                    "retry" => {
                        // Its agent again if that agent is alive and free; else the queue.
                        let agent = self.state.tasks[&task]
                            .agent_id
                            .clone()
                            .filter(|a| self.assignable_agent(a, Some(&task)).is_ok());
                        match agent {
                            Some(agent) => {
                                self.emit(EventBody::TaskAssigned {
                                    id: task.clone(),
                                    agent_id: Some(agent),
                                });
                                self.set_task_state(
                                    &task,
                                    TaskState::Assigned,
                                    "retry decided".into(),
                                );
                                self.try_dispatch(&task);
                            }
                            None => {
                                self.emit(EventBody::TaskAssigned {
                                    id: task.clone(),
                                    agent_id: None,
                                });
                                self.set_task_state(
                                    &task,
                                    TaskState::Pending,
                                    "retry decided; its agent is gone or busy, back in the queue"
                                        .into(),
                                );
                            }
                        }
                    }
                    "reassign" => {
                        self.emit(EventBody::TaskAssigned {
                            id: task.clone(),
                            agent_id: None,
                        });
                        self.set_task_state(
                            &task,
                            TaskState::Pending,
                            "reassign decided: back in the queue".into(),
                        );
                    }
                    "accept" => {
                        self.set_task_state(&task, TaskState::Done, "accepted by a person".into())
                    }
                    "cancel" => {
                        self.set_task_state(&task, TaskState::Cancelled, "cancel decided".into())
                    }
                    _ => {}
                }
            }
            DecisionSource::User => {}
        }
        Ok(self.state.decisions[id].clone())
    }

    /// An agent ended (exit, stop, lost): settle its task.
    pub(super) fn task_agent_ended(&mut self, agent: &str, code: Option<i32>) {
        let Some(task) = self.state.agents.get(agent).and_then(|a| a.task_id.clone()) else {
            return;
        };
        let Some(t) = self.state.tasks.get(&task).cloned() else {
            return;
        };
        match t.state {
            TaskState::Running if code == Some(0) => {
                let _ = self.complete_task(&task, Some(format!("agent {agent} exited 0")));
            }
            TaskState::Running | TaskState::Assigned => {
                let what = code.map_or("ended".to_string(), |c| format!("exited {c}"));
                self.set_task_state(
                    &task,
                    TaskState::Failed,
                    format!("agent {agent} {what} before completing it"),
                );
            }
            _ => {}
        }
    }

    /// An agent was restarted by hand: its running task goes to the new process.
    pub(super) fn task_agent_restarted(&mut self, agent: &str) {
        let Some(task) = self.state.agents.get(agent).and_then(|a| a.task_id.clone()) else {
            return;
        };
        if self
            .state
            .tasks
            .get(&task)
            .is_some_and(|t| t.state == TaskState::Running)
        {
            self.set_task_state(
                &task,
                TaskState::Assigned,
                format!("agent {agent} restarted: the prompt goes to the new process"),
            );
        }
    }

    /// After a start: a gate that ran when the daemon died is recorded as interrupted, and the
    /// task's verification starts again.
    pub(super) fn reconcile_tasks(&mut self) {
        let interrupted: Vec<TaskRecord> = self
            .state
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Verifying)
            .cloned()
            .collect();
        for t in interrupted {
            if let Some(pgid) = t.running_gate_pgid {
                end_orphaned_gate(pgid, &t);
            }
            let (name, attempt) = t
                .running_gate
                .clone()
                .unwrap_or_else(|| ("?".into(), t.attempts));
            self.emit(EventBody::TaskGate {
                id: t.id.clone(),
                result: GateRun {
                    name,
                    attempt,
                    ok: false,
                    exit_code: None,
                    duration_ms: 0,
                    output_tail:
                        "interrupted: the daemon stopped while this gate ran; verification restarts"
                            .into(),
                },
            });
            self.start_gate(&t.id, 0);
        }
    }

    /// Offer a pending decision to one client as `window/showMessageRequest`.
    pub fn offer_decision(&mut self, conn: ConnId, decision: &str) {
        let (Some(c), Some(d)) = (
            self.conns.get_mut(&conn),
            self.state.decisions.get(decision),
        ) else {
            return;
        };
        if d.resolved || !c.offered.insert(d.id.clone()) {
            return; // answered, or already asked of this client
        }
        let out = c.out.clone();
        let d = d.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let Some(choice) = crate::rpc::notify::ask_decision(&out, &d).await else {
                return;
            };
            let (reply, rx) = tokio::sync::oneshot::channel();
            let params = json!({ "id": d.id, "choice": choice, "reason": format!("answered by {}", out.peer()) });
            let _ = tx.send(Input::Request {
                conn,
                method: "orch/decision/resolve".into(),
                params,
                reply: super::Reply::Channel(reply),
            });
            if let Ok(Err(e)) = rx.await {
                // Another client answered first: this prompt was stale.
                tracing::debug!("decision answer ignored: {}", e.message);
            }
        });
    }

    /// Work-done progress for tasks and gates, to clients that support it.
    pub(super) fn report_progress(&mut self, e: &crate::core::event::StoredEvent) {
        use crate::rpc::notify::Progress;
        let (task, step) = match &e.body {
            EventBody::TaskStateChanged {
                id,
                state,
                evidence,
                ..
            } => {
                let message = format!("{}: {}", state.as_str(), evidence);
                match state {
                    TaskState::Running | TaskState::Verifying => (
                        id.clone(),
                        Progress::Report {
                            title: format!("orch task {}", self.state.tasks[id].title),
                            message,
                        },
                    ),
                    TaskState::Done
                    | TaskState::Failed
                    | TaskState::Escalated
                    | TaskState::Cancelled
                    | TaskState::Pending => (id.clone(), Progress::End { message }),
                    TaskState::Assigned => return,
                }
            }
            EventBody::TaskGateStarted {
                id, name, attempt, ..
            } => {
                let title = format!("orch task {}", self.state.tasks[id].title);
                (
                    id.clone(),
                    Progress::Report {
                        title,
                        message: format!("gate {name} running (attempt {attempt})"),
                    },
                )
            }
            EventBody::TaskGate { id, result } => {
                let verdict = if result.ok { "passed" } else { "failed" };
                let title = format!("orch task {}", self.state.tasks[id].title);
                (
                    id.clone(),
                    Progress::Report {
                        title,
                        message: format!("gate {} {verdict}", result.name),
                    },
                )
            }
            _ => return,
        };
        let end = matches!(step, Progress::End { .. });
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.work_done_progress)
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            let key = (conn, task.clone());
            if !self.work.progress.contains_key(&key) {
                if end {
                    continue; // nothing begun for this client: nothing to end
                }
                let stream = crate::rpc::notify::progress_stream(
                    self.conns[&conn].out.clone(),
                    format!("orch-task-{task}"),
                );
                self.work.progress.insert(key.clone(), stream);
            }
            if let Some(stream) = self.work.progress.get(&key) {
                let _ = stream.send(step.clone());
            }
            if end {
                self.work.progress.remove(&key);
            }
        }
    }

    /// Run the scheduler's due jobs. A failing job is an event and a log line, never a crash.
    pub(super) fn run_due_jobs(&mut self) {
        let now = Instant::now();
        for i in 0..self.work.jobs.len() {
            let job = &self.work.jobs[i];
            if job.paused || job.last.is_some_and(|l| now.duration_since(l) < job.every) {
                continue;
            }
            let name = job.name;
            let result = match name {
                "dispatch" => {
                    self.dispatch_queue();
                    Ok(())
                }
                "health" => self.job_health(),
                "retention" => self.job_retention(),
                _ => Ok(()),
            };
            let job = &mut self.work.jobs[i];
            job.last = Some(now);
            job.last_run = Some(clock::now_rfc3339());
            job.last_ok = Some(result.is_ok());
            if let Err(error) = result {
                tracing::warn!(job = name, "job failed: {error}");
                self.emit(EventBody::JobFailed {
                    name: name.into(),
                    error,
                });
            }
        }
    }

    /// Agents whose process is gone without an exit report, and backends that vanished.
    fn job_health(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        let live: Vec<(String, String)> = self
            .state
            .agents
            .values()
            .filter(|a| a.state.is_live())
            .map(|a| (a.id.clone(), a.terminal_id.clone()))
            .collect();
        for (agent, tid) in live {
            match self.terminals.get(&tid) {
                Some(t) if t.alive() => {
                    self.work.silent_exits.remove(&tid);
                }
                // A backend reports exits itself, shortly after the process ends: only a
                // terminal found dead twice in a row, with no report between, is settled here.
                Some(_) if self.work.silent_exits.remove(&tid) => {
                    problems.push(format!("agent {agent} ended without an exit report"));
                    self.on_exit(&tid, None, None);
                }
                Some(_) => {
                    self.work.silent_exits.insert(tid);
                }
                None => problems.push(format!("agent {agent} has no terminal")),
            }
        }
        for b in self.backends.values() {
            let p = b.probe();
            if !p.available
                && self
                    .state
                    .agents
                    .values()
                    .any(|a| a.state.is_live() && a.backend == b.name())
            {
                problems.push(format!("backend {} unavailable: {}", b.name(), p.detail));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Bound the event log and the output logs.
    fn job_retention(&mut self) -> Result<(), String> {
        let keep = self.config.retention.events;
        if self.state.last_seq > keep {
            self.snapshot();
            self.store
                .compact(self.state.last_seq - keep)
                .map_err(|e| e.to_string())?;
        }
        let max_age = Duration::from_secs(self.config.retention.output_log_days * 86_400);
        let dir = self.paths.state_dir.join("output");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let tid = name.split('.').next().unwrap_or_default().to_string();
            let live = self.state.terminals.get(&tid).is_some_and(|t| t.alive);
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > max_age);
            if !live && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// `orch/jobs/pause|resume`.
    pub fn set_job_paused(&mut self, name: &str, paused: bool) -> Result<Job, OpError> {
        let job = self
            .work
            .jobs
            .iter_mut()
            .find(|j| j.name == name)
            .ok_or_else(|| OpError::NotFound {
                kind: "job",
                id: name.into(),
            })?;
        job.paused = paused;
        Ok(job.clone())
    }
}

/// SIGKILL the process group of a gate a dead daemon left running, if it is still that gate:
/// the group leader's command line must start with the gate's program (pids are reused).
fn end_orphaned_gate(pgid: u32, t: &TaskRecord) {
    let Some((name, _)) = &t.running_gate else {
        return;
    };
    let Some(gate) = t.gates.iter().find(|g| &g.name == name) else {
        return;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pgid}/cmdline")) else {
        return;
    };
    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    if program == gate.command[0].as_bytes() {
        tracing::info!(task = %t.id, pgid, "ending the gate the previous daemon left running");
        // SAFETY: killpg of a group whose leader we just identified as the gate.
        unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The follow-up prompt after a failed gate.
fn feedback(t: &TaskRecord, failed: &GateRun) -> String {
    let code = failed
        .exit_code
        .map_or("no exit code".to_string(), |c| format!("exit code {c}"));
    format!(
        "The quality gate `{}` failed ({code}) for task \"{}\" (attempt {} of {}). Its output ended with:\n{}\nPlease fix this and mark the task complete again.",
        failed.name, t.title, t.attempts, t.max_attempts, failed.output_tail.trim_end()
    )
}

/// Start a gate: argv without a shell, in its own process group (so a timeout kills the tree).
fn spawn_gate(gate: &GateSpec, cwd: &std::path::Path) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&gate.command[0]);
    cmd.args(&gate.command[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// Wait for a started gate: output to a log (tail kept), killed with its group at the timeout.
/// How long a gate's output is still read after its command exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

async fn run_gate(
    mut child: tokio::process::Child,
    gate: &GateSpec,
    attempt: u32,
    log: &std::path::Path,
) -> GateRun {
    let started = Instant::now();
    let done = |ok, exit_code, tail: String| GateRun {
        name: gate.name.clone(),
        attempt,
        ok,
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        output_tail: tail,
    };
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Both streams into one buffer, in the order they arrive, bounded: keep the tail. It lives
    // outside the timed future so a gate killed at its timeout still shows what it printed.
    let mut all: Vec<u8> = Vec::new();
    // The gate ends when its command exits, not when its output closes: a process it left in the
    // background may hold the pipes open for ever. What is already written is read for a short
    // while after the exit.
    let (exited_tx, mut exited_rx) = tokio::sync::oneshot::channel::<()>();
    let collect = async {
        const MAX_LOG: u64 = 16 << 20;
        let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
        let (mut a_open, mut b_open) = (true, true);
        let mut file = log
            .parent()
            .and_then(|d| crate::paths::create_private_dirs(d).ok())
            .and_then(|_| {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(log)
                    .ok()
            });
        let mut logged = 0u64;
        let mut drain_until: Option<tokio::time::Instant> = None;
        while a_open || b_open {
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let chunk = tokio::select! {
                r = stdout.read(&mut a), if a_open => match r { Ok(0) | Err(_) => { a_open = false; continue } Ok(n) => a[..n].to_vec() },
                r = stderr.read(&mut b), if b_open => match r { Ok(0) | Err(_) => { b_open = false; continue } Ok(n) => b[..n].to_vec() },
                _ = &mut exited_rx, if drain_until.is_none() => {
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                    continue;
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break,
            };
            if let Some(f) = file.as_mut().filter(|_| logged < MAX_LOG) {
                use std::io::Write;
                let _ = f.write_all(&chunk);
                logged += chunk.len() as u64;
            }
            all.extend_from_slice(&chunk);
            if all.len() > 4 * TAIL_BYTES {
                all.drain(..all.len() - TAIL_BYTES);
            }
        }
    };
    let timeout = Duration::from_secs(gate.timeout_s);
    let result = tokio::time::timeout(timeout, async {
        let wait = async {
            let status = child.wait().await;
            let _ = exited_tx.send(());
            status
        };
        tokio::join!(collect, wait).1
    })
    .await;
    match result {
        Ok(status) => {
            if let Some(pid) = pid {
                // What the gate left running in its process group goes with it: a gate is a
                // check, and a check leaves nothing behind. (ESRCH when nothing is left.)
                // SAFETY: the gate's own process group (process_group(0) above).
                unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
            }
            let code = status.ok().and_then(|s| s.code());
            done(code == Some(0), code, tail(&all))
        }
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: the gate's own process group (process_group(0) above).
                unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait().await;
            let printed = tail(&all);
            let note = format!(
                "timed out after {}s; killed with its process group",
                gate.timeout_s
            );
            done(
                false,
                None,
                if printed.is_empty() {
                    note
                } else {
                    format!("{printed}\n{note}")
                },
            )
        }
    }
}

fn tail(out: &[u8]) -> String {
    let start = out.len().saturating_sub(TAIL_BYTES);
    let text = String::from_utf8_lossy(&out[start..]).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
