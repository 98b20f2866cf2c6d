//! Task rules: creation, assignment, dispatch, the queue, completion, gates with retries and
//! escalation, agents that end or restart under a task, and reconciliation after a restart.
//!
//! The task state machine ([`TaskState::can_become`]) is checked on every change.

use super::{decisions, Draft, Effect, Refusal};
use crate::core::agent::AgentState;
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::task::{
    DecisionRecord, DecisionSource, GateRun, GateSpec, Priority, TaskRecord, TaskState,
};

/// Bytes of a task's prompt at most.
pub const MAX_PROMPT: usize = 1 << 20;
/// Bytes of a task's title at most.
pub const MAX_TITLE: usize = 1024;
/// Gates of one task at most.
pub const MAX_GATES: usize = 32;
/// Kinds that never take queued work: a plain shell or command is not an agent that reads prompts.
pub const NO_QUEUE_KINDS: [&str; 2] = ["shell", "command"];
/// The options of an escalated task's decision.
pub const ESCALATION_OPTIONS: [&str; 4] = ["retry", "reassign", "accept", "cancel"];

/// `orch/task/create`, with its gates already resolved from the configuration.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Title.
    pub title: String,
    /// What the agent is told.
    pub prompt: String,
    /// Priority's wire name.
    pub priority: Option<String>,
    /// An agent (id or name) to give it to at once.
    pub agent: Option<String>,
    /// Its gates.
    pub gates: Vec<GateSpec>,
    /// Attempts before escalation.
    pub max_attempts: u32,
    /// How its agent's worktree lands once it is done.
    pub merge: Option<String>,
    /// The best-of-N task it is a candidate of.
    pub group: Option<String>,
}

/// Most candidates of a best-of-N task.
pub const MAX_CANDIDATES: usize = 8;
/// The option of a best-of-N decision that lands none of the candidates.
pub const NONE_OF_THEM: &str = "none";

/// Change a task's state (the state machine is checked: a change outside it is a bug).
pub fn set_state(d: &mut Draft, id: &str, state: TaskState, evidence: String) {
    let Some(prev) = d.state().tasks.get(id).map(|t| t.state) else {
        return;
    };
    if prev == state {
        return;
    }
    debug_assert!(
        prev.can_become(state),
        "task {id}: {} -> {}",
        prev.as_str(),
        state.as_str()
    );
    if !prev.can_become(state) {
        return;
    }
    d.emit(EventBody::TaskStateChanged {
        id: id.into(),
        state,
        previous: prev,
        evidence,
    });
    if state == TaskState::Done {
        land_when_done(d, id);
    }
    if let Some(group) = d.state().tasks.get(id).and_then(|t| t.group.clone()) {
        group_progress(d, &group);
    }
}

/// `orch/task/create {agents}`: the same task for each agent, each working in its own worktree;
/// returns the best-of-N task whose candidates they are. When every candidate is settled, a
/// person picks the one that lands ([`best_of_decided`]).
pub fn create_best_of(d: &mut Draft, t: NewTask, agents: &[String]) -> Result<String, Refusal> {
    if t.agent.is_some() {
        return Err(Refusal::invalid("agentId", "give either agentId or agents"));
    }
    if agents.len() < 2 {
        return Err(Refusal::invalid(
            "agents",
            format!("best of N needs at least two agents, got {}", agents.len()),
        ));
    }
    if agents.len() > MAX_CANDIDATES {
        return Err(Refusal::Limit {
            limit: "agents per task",
            max: MAX_CANDIDATES as u64,
        });
    }
    let mut ids: Vec<String> = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let id = assignable(d, a, None)?;
        let agent = &d.state().agents[&id];
        if agent.worktree.as_ref().is_none_or(|w| w.paused) {
            return Err(Refusal::invalid(
                &format!("agents[{i}]"),
                format!("agent {} has no worktree of its own to work in", agent.name),
            ));
        }
        if ids.contains(&id) {
            return Err(Refusal::invalid(
                &format!("agents[{i}]"),
                format!("agent {} is named twice", agent.name),
            ));
        }
        ids.push(id);
    }
    let group = create(
        d,
        NewTask {
            gates: Vec::new(),
            group: None,
            agent: None,
            ..t.clone()
        },
    )?;
    for agent in ids {
        create(
            d,
            NewTask {
                agent: Some(agent),
                merge: None,
                group: Some(group.clone()),
                ..t.clone()
            },
        )?;
    }
    Ok(group)
}

/// Whether a candidate has nothing more coming: done, failed, cancelled, escalated, or back in
/// the queue with no agent.
fn settled(t: &TaskRecord) -> bool {
    t.state.is_final()
        || matches!(t.state, TaskState::Failed | TaskState::Escalated)
        || (t.state == TaskState::Pending && t.agent_id.is_none())
}

/// How a candidate is named in its group's decision: its agent's name, else its task id.
fn candidate_label(d: &Draft, t: &TaskRecord) -> String {
    t.agent_id
        .as_ref()
        .and_then(|a| d.state().agents.get(a))
        .map(|a| a.name.clone())
        .unwrap_or_else(|| t.id.clone())
}

/// A candidate settled: once all of them are, the best-of-N task asks a person to pick one.
fn group_progress(d: &mut Draft, group: &str) {
    let Some(g) = d.state().tasks.get(group).cloned() else {
        return;
    };
    if g.state != TaskState::Pending {
        return;
    }
    let candidates: Vec<TaskRecord> = g
        .candidates
        .iter()
        .filter_map(|c| d.state().tasks.get(c).cloned())
        .collect();
    if candidates.is_empty() || !candidates.iter().all(settled) {
        return;
    }
    set_state(
        d,
        group,
        TaskState::Verifying,
        "every candidate is settled; a person picks one".into(),
    );
    let mut options = Vec::new();
    let mut detail = Vec::new();
    for c in &candidates {
        let label = candidate_label(d, c);
        let gates: Vec<String> = c
            .gate_results
            .iter()
            .rev()
            .take(c.gates.len())
            .rev()
            .map(|r| format!("{} {}", r.name, if r.ok { "passed" } else { "failed" }))
            .collect();
        let changes = c
            .agent_id
            .as_ref()
            .and_then(|a| d.state().agents.get(a))
            .and_then(|a| a.worktree.as_ref())
            .map(|w| format!("{} files changed", w.changes))
            .unwrap_or_else(|| "no worktree".into());
        let gates = if gates.is_empty() {
            "no gates".to_string()
        } else {
            gates.join(", ")
        };
        detail.push(format!(
            "{label} ({}): {}; {gates}; {changes}",
            c.id,
            c.state.as_str()
        ));
        options.push(label);
    }
    options.push(NONE_OF_THEM.into());
    let id = d.new_id(ids::DECISION);
    let now = d.now().to_string();
    d.emit(EventBody::DecisionRequested {
        decision: DecisionRecord {
            id,
            title: format!("Which candidate of {} ({}) lands?", g.id, g.title),
            detail: detail.join("\n"),
            options,
            resolved: false,
            choice: None,
            reason: None,
            source: DecisionSource::BestOf { task: group.into() },
            created_at: now,
            resolved_at: None,
        },
    });
}

/// A person picked the best-of-N task's candidate that lands (or none): it is merged into its
/// base, the other candidates' agents are stopped and their worktrees removed.
pub fn best_of_decided(d: &mut Draft, group: &str, choice: &str) {
    let Some(g) = d.state().tasks.get(group).cloned() else {
        return;
    };
    let strategy = g.merge.clone().unwrap_or_else(|| "merge".into());
    let mut chosen = None;
    for c in &g.candidates {
        let Some(t) = d.state().tasks.get(c).cloned() else {
            continue;
        };
        close_decision(d, c, "a candidate was chosen");
        let label = candidate_label(d, &t);
        if label == choice {
            if t.state == TaskState::Escalated {
                set_state(d, c, TaskState::Done, "chosen as the best candidate".into());
            }
            chosen = Some(label);
            if let Some(agent) = t.agent_id.clone() {
                d.effect(Effect::Land {
                    agent,
                    strategy: strategy.clone(),
                    task: group.into(),
                });
            }
        } else {
            if !t.state.is_final() && t.state.can_become(TaskState::Cancelled) {
                set_state(
                    d,
                    c,
                    TaskState::Cancelled,
                    "another candidate was chosen".into(),
                );
            }
            if let Some(agent) = t.agent_id.clone() {
                d.effect(Effect::Retire { agent });
            }
        }
    }
    match chosen {
        Some(label) => set_state(d, group, TaskState::Done, format!("{label} was chosen")),
        None => set_state(
            d,
            group,
            TaskState::Cancelled,
            "no candidate was chosen".into(),
        ),
    }
}

/// A done task that says how its work lands: its agent's worktree is merged into its base.
fn land_when_done(d: &mut Draft, id: &str) {
    let t = &d.state().tasks[id];
    let (Some(strategy), Some(agent)) = (t.merge.clone(), t.agent_id.clone()) else {
        return;
    };
    let has_worktree = d
        .state()
        .agents
        .get(&agent)
        .and_then(|a| a.worktree.as_ref())
        .is_some();
    if has_worktree {
        d.effect(Effect::Land {
            agent,
            strategy,
            task: id.into(),
        });
    }
}

/// A task by id.
pub fn task<'s>(d: &'s Draft, id: &str) -> Result<&'s TaskRecord, Refusal> {
    d.state().tasks.get(id).ok_or_else(|| Refusal::NotFound {
        kind: "task",
        id: id.into(),
    })
}

/// `orch/task/create`: a pending task, given to `agent` at once if one is named. Returns its id.
pub fn create(d: &mut Draft, t: NewTask) -> Result<String, Refusal> {
    if t.title.trim().is_empty() {
        return Err(Refusal::invalid("title", "must not be empty"));
    }
    if t.title.len() > MAX_TITLE {
        return Err(Refusal::Limit {
            limit: "title bytes",
            max: MAX_TITLE as u64,
        });
    }
    if let Some(c) = t.title.chars().find(|c| c.is_control()) {
        return Err(Refusal::invalid(
            "title",
            format!("must not contain control characters (found {c:?})"),
        ));
    }
    if t.prompt.len() > MAX_PROMPT {
        return Err(Refusal::Limit {
            limit: "prompt bytes",
            max: MAX_PROMPT as u64,
        });
    }
    if t.prompt.contains('\0') {
        return Err(Refusal::invalid("prompt", "must not contain NUL"));
    }
    let priority = match &t.priority {
        None => Priority::Normal,
        Some(p) => Priority::parse(p).ok_or_else(|| {
            Refusal::invalid(
                "priority",
                format!("{p:?} is not one of low, normal, high, urgent"),
            )
        })?,
    };
    if !(1..=100).contains(&t.max_attempts) {
        return Err(Refusal::invalid(
            "maxAttempts",
            format!("{} is out of range 1..=100", t.max_attempts),
        ));
    }
    if t.gates.len() > MAX_GATES {
        return Err(Refusal::Limit {
            limit: "gates per task",
            max: MAX_GATES as u64,
        });
    }
    let agent = match &t.agent {
        Some(a) => Some(assignable(d, a, None)?),
        None => None,
    };
    if let Some(m) = &t.merge {
        if !matches!(m.as_str(), "merge" | "squash" | "rebase") {
            return Err(Refusal::invalid(
                "merge",
                format!("{m:?} is not a strategy; expected merge, squash or rebase"),
            ));
        }
        if let Some(a) = agent.as_ref().and_then(|a| d.state().agents.get(a)) {
            if a.worktree.is_none() {
                return Err(Refusal::invalid(
                    "merge",
                    format!("agent {} has no worktree to merge", a.name),
                ));
            }
        }
    }
    let id = d.new_id(ids::TASK);
    let now = d.now().to_string();
    d.emit(EventBody::TaskCreated {
        task: TaskRecord {
            id: id.clone(),
            title: t.title,
            prompt: t.prompt,
            priority,
            agent_id: None,
            state: TaskState::Pending,
            attempts: 0,
            max_attempts: t.max_attempts,
            gates: t.gates,
            gate_results: Vec::new(),
            decision_id: None,
            summary: None,
            running_gate: None,
            running_gate_pgid: None,
            merge: t.merge,
            candidates: Vec::new(),
            group: t.group,
            created_at: now.clone(),
            updated_at: now,
        },
    });
    if let Some(agent) = agent {
        assign(d, &id, &agent, "assigned at creation");
    }
    Ok(id)
}

/// An agent that can take a task now (`task`: the one it may already have); its id.
pub fn assignable(d: &Draft, agent: &str, task: Option<&str>) -> Result<String, Refusal> {
    let a = d.state().agent(agent).ok_or_else(|| Refusal::NotFound {
        kind: "agent",
        id: agent.into(),
    })?;
    if !a.state.is_live() {
        return Err(Refusal::Conflict {
            kind: "agent",
            id: a.id.clone(),
            state: a.state.as_str().into(),
            what: "cannot take a task".into(),
        });
    }
    if let Some(other) = a.task_id.as_deref().filter(|t| Some(*t) != task) {
        return Err(Refusal::Conflict {
            kind: "agent",
            id: a.id.clone(),
            state: format!("busy with task {other}"),
            what: "cannot take another task".into(),
        });
    }
    Ok(a.id.clone())
}

/// Give a task to an agent; its prompt goes in when the agent takes input.
pub fn assign(d: &mut Draft, task: &str, agent: &str, evidence: &str) {
    d.emit(EventBody::TaskAssigned {
        id: task.into(),
        agent_id: Some(agent.into()),
    });
    set_state(d, task, TaskState::Assigned, format!("{evidence}: {agent}"));
    d.effect(Effect::Dispatch { task: task.into() });
}

/// `orch/task/assign`.
pub fn assign_to(d: &mut Draft, id: &str, agent: &str) -> Result<(), Refusal> {
    let t = task(d, id)?;
    if !matches!(
        t.state,
        TaskState::Pending | TaskState::Assigned | TaskState::Escalated | TaskState::Failed
    ) {
        return Err(Refusal::Conflict {
            kind: "task",
            id: t.id.clone(),
            state: t.state.as_str().into(),
            what: "cannot assign".into(),
        });
    }
    let agent = assignable(d, agent, Some(id))?;
    close_decision(d, id, "the task was assigned again");
    assign(d, id, &agent, "assigned");
    Ok(())
}

/// Type an assigned task's prompt into its agent, if the agent is idle and its terminal runs:
/// the task's prompt, or after a failed gate the failure (with the prompt too for a process
/// that never saw the task: `seen` says whether this terminal had the task's prompt).
pub fn dispatch(d: &mut Draft, id: &str, seen: bool, terminal_live: bool) {
    let Some(t) = d.state().tasks.get(id).cloned() else {
        return;
    };
    if t.state != TaskState::Assigned {
        return;
    }
    let Some(agent) = t
        .agent_id
        .as_ref()
        .and_then(|a| d.state().agents.get(a))
        .cloned()
    else {
        return;
    };
    if agent.state != AgentState::Idle || !terminal_live {
        return;
    }
    let failed = t
        .gate_results
        .iter()
        .rev()
        .find(|r| !r.ok && r.attempt == t.attempts)
        .filter(|_| t.attempts > 0);
    let prompt = match failed {
        Some(failed) if seen => feedback(&t, failed),
        Some(failed) => format!("{}\n\n{}", t.prompt, feedback(&t, failed)),
        None => t.prompt.clone(),
    };
    d.effect(Effect::Type {
        agent: agent.id.clone(),
        text: prompt,
    });
    d.emit(EventBody::TaskAttempt {
        id: id.into(),
        attempt: t.attempts + 1,
    });
    set_state(
        d,
        id,
        TaskState::Running,
        format!(
            "prompt typed into {} (attempt {})",
            agent.name,
            t.attempts + 1
        ),
    );
}

/// The follow-up prompt after a failed gate.
pub fn feedback(t: &TaskRecord, failed: &GateRun) -> String {
    let code = failed
        .exit_code
        .map_or("no exit code".to_string(), |c| format!("exit code {c}"));
    format!(
        "The quality gate `{}` failed ({code}) for task \"{}\" (attempt {} of {}). Its output ended with:\n{}\nPlease fix this and mark the task complete again.",
        failed.name, t.title, t.attempts, t.max_attempts, failed.output_tail.trim_end()
    )
}

/// The queue: pending tasks without an agent go to idle agents without a task (not shells or
/// bare commands), highest priority first, oldest first among equals.
pub fn dispatch_queue(d: &mut Draft) {
    let mut pending: Vec<(Priority, String)> = d
        .state()
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Pending && t.agent_id.is_none())
        // A best-of-N task and its candidates are not for whichever agent is free.
        .filter(|t| t.candidates.is_empty() && t.group.is_none())
        .map(|t| (t.priority, t.id.clone()))
        .collect();
    pending.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| ids::order_key(&a.1).cmp(&ids::order_key(&b.1)))
    });
    for (_, task) in pending {
        let free = d
            .state()
            .agents
            .values()
            .find(|a| {
                a.state == AgentState::Idle
                    && a.task_id.is_none()
                    && !NO_QUEUE_KINDS.contains(&a.kind.as_str())
            })
            .map(|a| a.id.clone());
        let Some(agent) = free else { break };
        assign(d, &task, &agent, "taken from the queue");
    }
    let assigned: Vec<String> = d
        .state()
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Assigned)
        .map(|t| t.id.clone())
        .collect();
    for t in assigned {
        d.effect(Effect::Dispatch { task: t });
    }
}

/// `orch/task/complete`: the work is done; gates run next.
pub fn complete(d: &mut Draft, id: &str, summary: Option<String>) -> Result<(), Refusal> {
    let t = task(d, id)?.clone();
    // A person may also say a task is done that no agent worked on (pending).
    if !matches!(
        t.state,
        TaskState::Running | TaskState::Assigned | TaskState::Pending
    ) {
        return Err(Refusal::Conflict {
            kind: "task",
            id: t.id,
            state: t.state.as_str().into(),
            what: "cannot complete".into(),
        });
    }
    d.emit(EventBody::TaskCompleted {
        id: id.into(),
        summary,
    });
    if t.attempts == 0 {
        d.emit(EventBody::TaskAttempt {
            id: id.into(),
            attempt: 1,
        });
    }
    set_state(d, id, TaskState::Verifying, "marked complete".into());
    next_gate(d, id, 0);
    Ok(())
}

/// `orch/task/cancel`.
pub fn cancel(d: &mut Draft, id: &str) -> Result<(), Refusal> {
    let t = task(d, id)?.clone();
    if t.state.is_final() {
        return Err(Refusal::Conflict {
            kind: "task",
            id: t.id,
            state: t.state.as_str().into(),
            what: "cannot cancel".into(),
        });
    }
    if t.state == TaskState::Verifying {
        d.effect(Effect::KillGate { task: id.into() });
    }
    for c in &t.candidates {
        let _ = cancel(d, c);
    }
    set_state(d, id, TaskState::Cancelled, "cancelled".into());
    close_decision(d, id, "the task was cancelled");
    Ok(())
}

/// Dismiss a task's pending decision: its question is moot.
fn close_decision(d: &mut Draft, task: &str, why: &str) {
    decisions::dismiss(
        d,
        |s| matches!(s, DecisionSource::Task { id } if id == task),
        why,
    );
}

/// Gate `index` of a verifying task runs next; after the last, the task is done.
pub fn next_gate(d: &mut Draft, id: &str, index: usize) {
    let Some(t) = d.state().tasks.get(id) else {
        return;
    };
    if t.state != TaskState::Verifying {
        return;
    }
    if index < t.gates.len() {
        d.effect(Effect::RunGate {
            task: id.into(),
            index,
        });
        return;
    }
    let evidence = if t.gates.is_empty() {
        "no gates"
    } else {
        "all gates passed"
    };
    set_state(d, id, TaskState::Done, evidence.into());
}

/// Gate `index` of a task finished: the next one runs, or after a failure the task goes back to
/// its agent with the failure as its next prompt (to the queue if it has no live agent), or,
/// with its attempts used up, escalates to a person.
pub fn gate_done(d: &mut Draft, id: &str, index: usize, run: GateRun) {
    let Some(t) = d.state().tasks.get(id).cloned() else {
        return;
    };
    if t.state != TaskState::Verifying {
        return; // cancelled meanwhile
    }
    let (ok, name) = (run.ok, run.name.clone());
    d.emit(EventBody::TaskGate {
        id: id.into(),
        result: run,
    });
    if ok {
        return next_gate(d, id, index + 1);
    }
    if t.attempts >= t.max_attempts {
        return escalate(d, id, &name);
    }
    if t.group.is_some() && !live_now(d, &t) {
        // A candidate works in its own agent's worktree: nobody else can take it over.
        return escalate(d, id, &name);
    }
    let live_agent = t
        .agent_id
        .as_ref()
        .and_then(|a| d.state().agents.get(a))
        .is_some_and(|a| a.state.is_live());
    if live_agent {
        // Back to the agent with the failure as its next prompt.
        set_state(d, id, TaskState::Assigned, format!("gate {name} failed"));
        d.effect(Effect::Dispatch { task: id.into() });
    } else {
        // Nobody to fix it: back to the queue, where the next free agent takes it.
        d.emit(EventBody::TaskAssigned {
            id: id.into(),
            agent_id: None,
        });
        set_state(
            d,
            id,
            TaskState::Pending,
            format!("gate {name} failed; no agent to fix it, back in the queue"),
        );
    }
}

/// Whether the task's agent runs.
fn live_now(d: &Draft, t: &TaskRecord) -> bool {
    t.agent_id
        .as_ref()
        .and_then(|a| d.state().agents.get(a))
        .is_some_and(|a| a.state.is_live())
}

/// Gates kept failing: a person decides (retry, reassign, accept, cancel).
fn escalate(d: &mut Draft, id: &str, gate: &str) {
    let t = d.state().tasks[id].clone();
    set_state(
        d,
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
    let decision = d.new_id(ids::DECISION);
    let now = d.now().to_string();
    d.emit(EventBody::DecisionRequested {
        decision: DecisionRecord {
            id: decision,
            title: format!("Task {} ({}) keeps failing its gates", t.id, t.title),
            detail,
            options: ESCALATION_OPTIONS.map(String::from).to_vec(),
            resolved: false,
            choice: None,
            reason: None,
            source: DecisionSource::Task { id: id.into() },
            created_at: now,
            resolved_at: None,
        },
    });
}

/// What an escalated task's decision does once chosen.
pub fn decided(d: &mut Draft, task: &str, choice: &str) {
    match choice {
        "retry" => {
            // Its agent again if that agent is alive and free; else the queue.
            let agent = d.state().tasks[task]
                .agent_id
                .clone()
                .filter(|a| assignable(d, a, Some(task)).is_ok());
            match agent {
                Some(agent) => {
                    d.emit(EventBody::TaskAssigned {
                        id: task.into(),
                        agent_id: Some(agent),
                    });
                    set_state(d, task, TaskState::Assigned, "retry decided".into());
                    d.effect(Effect::Dispatch { task: task.into() });
                }
                None => {
                    d.emit(EventBody::TaskAssigned {
                        id: task.into(),
                        agent_id: None,
                    });
                    set_state(
                        d,
                        task,
                        TaskState::Pending,
                        "retry decided; its agent is gone or busy, back in the queue".into(),
                    );
                }
            }
        }
        "reassign" => {
            d.emit(EventBody::TaskAssigned {
                id: task.into(),
                agent_id: None,
            });
            set_state(
                d,
                task,
                TaskState::Pending,
                "reassign decided: back in the queue".into(),
            );
        }
        "accept" => set_state(d, task, TaskState::Done, "accepted by a person".into()),
        "cancel" => set_state(d, task, TaskState::Cancelled, "cancel decided".into()),
        _ => {}
    }
}

/// An agent ended (exit, stop, lost): its task is complete if it exited 0 while running it,
/// else failed.
pub fn agent_ended(d: &mut Draft, agent: &str, code: Option<i32>) {
    let Some(id) = d.state().agents.get(agent).and_then(|a| a.task_id.clone()) else {
        return;
    };
    let Some(t) = d.state().tasks.get(&id).cloned() else {
        return;
    };
    match t.state {
        TaskState::Running if code == Some(0) => {
            let _ = complete(d, &id, Some(format!("agent {agent} exited 0")));
        }
        TaskState::Running | TaskState::Assigned => {
            let what = code.map_or("ended".to_string(), |c| format!("exited {c}"));
            set_state(
                d,
                &id,
                TaskState::Failed,
                format!("agent {agent} {what} before completing it"),
            );
        }
        _ => {}
    }
}

/// An agent was restarted by hand: its running task goes to the new process.
pub fn agent_restarted(d: &mut Draft, agent: &str) {
    let Some(id) = d.state().agents.get(agent).and_then(|a| a.task_id.clone()) else {
        return;
    };
    if d.state()
        .tasks
        .get(&id)
        .is_some_and(|t| t.state == TaskState::Running)
    {
        set_state(
            d,
            &id,
            TaskState::Assigned,
            format!("agent {agent} restarted: the prompt goes to the new process"),
        );
    }
}

/// After a daemon start: a gate that ran when the daemon died is recorded as interrupted (what
/// it left running is killed), and its task's verification starts again.
pub fn reconcile(d: &mut Draft) {
    let interrupted: Vec<TaskRecord> = d
        .state()
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Verifying)
        .cloned()
        .collect();
    for t in interrupted {
        let program = t
            .running_gate
            .as_ref()
            .and_then(|(name, _)| t.gates.iter().find(|g| &g.name == name))
            .and_then(|g| g.command.first().cloned());
        if let (Some(pgid), Some(program)) = (t.running_gate_pgid, program) {
            d.effect(Effect::KillOrphanedGate {
                task: t.id.clone(),
                pgid,
                program,
            });
        }
        let (name, attempt) = t
            .running_gate
            .clone()
            .unwrap_or_else(|| ("?".into(), t.attempts));
        d.emit(EventBody::TaskGate {
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
        next_gate(d, &t.id, 0);
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::core::agent::AgentState::{Busy, Idle};
    use crate::core::rules::decisions;
    use crate::core::rules::testing::{add_task, gate_run, run, world};

    fn new(title: &str, priority: Option<&str>, agent: Option<&str>, max: u32) -> NewTask {
        NewTask {
            title: title.into(),
            prompt: "p".into(),
            priority: priority.map(Into::into),
            agent: agent.map(Into::into),
            gates: Vec::new(),
            max_attempts: max,
            merge: None,
            group: None,
        }
    }

    #[test]
    fn creation_checks_what_it_is_given() {
        let mut s = world(&[("claude-1", "claude", Idle), ("busy-1", "claude", Busy)]);
        add_task(&mut s, "taken", &[], 3, Some("busy-1"));
        let cases = [
            new("", None, None, 3),
            new(&"t".repeat(MAX_TITLE + 1), None, None, 3),
            new("a\u{1b}[31mred", None, None, 3),
            new("t", Some("soon"), None, 3),
            new("t", None, None, 0),
            new("t", None, Some("nobody"), 3),
            new("t", None, Some("busy-1"), 3),
        ];
        let got: Vec<String> = cases
            .into_iter()
            .map(|c| run(&mut s.clone(), |d| create(d, c)))
            .collect();
        expect![[r#"
            refused Invalid { field: "title", message: "must not be empty" }
            refused Limit { limit: "title bytes", max: 1024 }
            refused Invalid { field: "title", message: "must not contain control characters (found '\\u{1b}')" }
            refused Invalid { field: "priority", message: "\"soon\" is not one of low, normal, high, urgent" }
            refused Invalid { field: "maxAttempts", message: "0 is out of range 1..=100" }
            refused NotFound { kind: "agent", id: "nobody" }
            refused Conflict { kind: "agent", id: "a-3", state: "busy with task k-4", what: "cannot take another task" }"#]]
        .assert_eq(&got.join("\n"));
        expect![[r#"
            event k-5 created "t" high gates=[] max=3
            event k-5 assigned to Some("a-2")
            event k-5 task pending -> assigned (assigned at creation: a-2)
            effect Dispatch { task: "k-5" }
            => "k-5""#]]
        .assert_eq(&run(&mut s, |d| {
            create(d, new("t", Some("high"), Some("claude-1"), 3))
        }));
    }

    #[test]
    fn dispatch_types_the_prompt_into_an_idle_agent_only() {
        let mut s = world(&[("claude-1", "claude", Idle)]);
        let k = add_task(&mut s, "fix", &["test"], 3, Some("claude-1"));
        expect![[""]].assert_eq(&run(&mut s.clone(), |d| {
            dispatch(d, &k, false, false);
            Ok(())
        }));
        expect![[r#"
            event k-3 attempt 1
            event k-3 task assigned -> running (prompt typed into claude-1 (attempt 1))
            effect Type { agent: "a-2", text: "do fix" }"#]]
        .assert_eq(&run(&mut s, |d| {
            dispatch(d, &k, false, true);
            Ok(())
        }));
        // Running already: nothing more is typed.
        expect![[""]].assert_eq(&run(&mut s, |d| {
            dispatch(d, &k, true, true);
            Ok(())
        }));
    }

    /// The gated loop: complete, a gate fails, the failure goes back to the agent, it fails
    /// again with the attempts used up, a person is asked, retry, then accept.
    #[test]
    fn gates_retry_with_feedback_then_escalate() {
        let mut s = world(&[("claude-1", "claude", Idle)]);
        let k = add_task(&mut s, "fix", &["lint", "test"], 2, Some("claude-1"));
        let mut steps = Vec::new();
        let mut step = |s: &mut crate::core::state::State,
                        name: &str,
                        rule: &dyn Fn(&mut Draft) -> Result<(), Refusal>| {
            steps.push(format!("-- {name}\n{}", run(s, rule)));
        };
        step(&mut s, "dispatch", &|d| {
            dispatch(d, &k, false, true);
            Ok(())
        });
        step(&mut s, "complete", &|d| {
            complete(d, &k, Some("done".into()))
        });
        step(&mut s, "lint passes", &|d| {
            gate_done(d, &k, 0, gate_run("lint", 1, true));
            Ok(())
        });
        step(&mut s, "test fails", &|d| {
            gate_done(d, &k, 1, gate_run("test", 1, false));
            Ok(())
        });
        // The agent goes idle again: the failure, not the task, is its next prompt.
        step(&mut s, "dispatch the feedback", &|d| {
            dispatch(d, &k, true, true);
            Ok(())
        });
        step(&mut s, "complete again", &|d| complete(d, &k, None));
        step(&mut s, "lint fails on the last attempt", &|d| {
            gate_done(d, &k, 0, gate_run("lint", 2, false));
            Ok(())
        });
        step(&mut s, "completing an escalated task", &|d| {
            complete(d, &k, None)
        });
        let decision = s.tasks[&k]
            .decision_id
            .clone()
            .expect("escalated with a decision");
        step(&mut s, "retry", &|d| {
            decisions::resolve(d, &decision, "retry", None).map(|_| ())
        });
        step(&mut s, "cancel", &|d| cancel(d, &k));
        expect![[r#"
            -- dispatch
            event k-3 attempt 1
            event k-3 task assigned -> running (prompt typed into claude-1 (attempt 1))
            effect Type { agent: "a-2", text: "do fix" }
            -- complete
            event k-3 completed Some("done")
            event k-3 task running -> verifying (marked complete)
            effect RunGate { task: "k-3", index: 0 }
            -- lint passes
            event k-3 gate lint attempt 1 ok=true "fine"
            effect RunGate { task: "k-3", index: 1 }
            -- test fails
            event k-3 gate test attempt 1 ok=false "broken"
            event k-3 task verifying -> assigned (gate test failed)
            effect Dispatch { task: "k-3" }
            -- dispatch the feedback
            event k-3 attempt 2
            event k-3 task assigned -> running (prompt typed into claude-1 (attempt 2))
            effect Type { agent: "a-2", text: "The quality gate `test` failed (exit code 1) for task \"fix\" (attempt 1 of 2). Its output ended with:\nbroken\nPlease fix this and mark the task complete again." }
            -- complete again
            event k-3 completed None
            event k-3 task running -> verifying (marked complete)
            effect RunGate { task: "k-3", index: 0 }
            -- lint fails on the last attempt
            event k-3 gate lint attempt 2 ok=false "broken"
            event k-3 task verifying -> escalated (gate lint failed after 2 attempts)
            event d-4 decision "Task k-3 (fix) keeps failing its gates" options=["retry", "reassign", "accept", "cancel"] source=Task { id: "k-3" }
            -- completing an escalated task
            refused Conflict { kind: "task", id: "k-3", state: "escalated", what: "cannot complete" }
            -- retry
            event d-4 resolved "retry" (None)
            event k-3 assigned to Some("a-2")
            event k-3 task escalated -> assigned (retry decided)
            effect Dispatch { task: "k-3" }
            -- cancel
            event k-3 task assigned -> cancelled (cancelled)"#]]
        .assert_eq(&steps.join("\n"));
    }

    #[test]
    fn a_failed_gate_without_a_live_agent_goes_back_to_the_queue() {
        let mut s = add_then(world(&[]), |s| add_task(s, "orphan", &["test"], 3, None));
        let k = "k-2";
        run(&mut s, |d| complete(d, k, None));
        expect![[r#"
            event k-2 gate test attempt 1 ok=false "broken"
            event k-2 assigned to None
            event k-2 task verifying -> pending (gate test failed; no agent to fix it, back in the queue)"#]]
        .assert_eq(&run(&mut s, |d| {
            gate_done(d, k, 0, gate_run("test", 1, false));
            Ok(())
        }));
    }

    fn add_then(
        mut s: crate::core::state::State,
        f: impl FnOnce(&mut crate::core::state::State) -> String,
    ) -> crate::core::state::State {
        f(&mut s);
        s
    }

    #[test]
    fn the_queue_goes_by_priority_to_idle_agents_that_read_prompts() {
        let mut s = world(&[
            ("shell-1", "shell", Idle),
            ("claude-1", "claude", Idle),
            ("codex-1", "codex", Busy),
        ]);
        for (title, priority) in [("low", "low"), ("urgent", "urgent"), ("normal", "normal")] {
            let mut d = Draft::new(&mut s, "2026-11-28T00:00:00Z");
            create(&mut d, new(title, Some(priority), None, 3)).unwrap();
        }
        expect![[r#"
            event k-6 assigned to Some("a-3")
            event k-6 task pending -> assigned (taken from the queue: a-3)
            effect Dispatch { task: "k-6" }
            effect Dispatch { task: "k-6" }"#]]
        .assert_eq(&run(&mut s, |d| {
            dispatch_queue(d);
            Ok(())
        }));
    }

    #[test]
    fn an_agent_that_ends_settles_its_task() {
        let mut s = world(&[("claude-1", "claude", Idle)]);
        let k = add_task(&mut s, "fix", &[], 3, Some("claude-1"));
        run(&mut s, |d| {
            dispatch(d, &k, false, true);
            Ok(())
        });
        expect!["event k-3 task running -> failed (agent a-2 exited 2 before completing it)"]
            .assert_eq(&run(&mut s.clone(), |d| {
                agent_ended(d, "a-2", Some(2));
                Ok(())
            }));
        // Exit 0 while running means done: completion, and no gates means done.
        expect![[r#"
            event k-3 completed Some("agent a-2 exited 0")
            event k-3 task running -> verifying (marked complete)
            event k-3 task verifying -> done (no gates)"#]]
        .assert_eq(&run(&mut s.clone(), |d| {
            agent_ended(d, "a-2", Some(0));
            Ok(())
        }));
        expect!["event k-3 task running -> assigned (agent a-2 restarted: the prompt goes to the new process)"]
        .assert_eq(&run(&mut s, |d| {
            agent_restarted(d, "a-2");
            Ok(())
        }));
    }

    #[test]
    fn a_restart_records_the_interrupted_gate_and_verifies_again() {
        let mut s = world(&[("claude-1", "claude", Idle)]);
        let k = add_task(&mut s, "fix", &["test"], 3, Some("claude-1"));
        run(&mut s, |d| complete(d, &k, None));
        run(&mut s, |d| {
            d.emit(EventBody::TaskGateStarted {
                id: k.clone(),
                name: "test".into(),
                attempt: 1,
                pgid: Some(4242),
            });
            Ok(())
        });
        expect![[r#"
            event k-3 gate test attempt 1 ok=false "interrupted: the daemon stopped while this gate ran; verification restarts"
            effect KillOrphanedGate { task: "k-3", pgid: 4242, program: "test" }
            effect RunGate { task: "k-3", index: 0 }"#]]
        .assert_eq(&run(&mut s, |d| {
            reconcile(d);
            Ok(())
        }));
    }

    /// Best of N: a task per candidate, each for its own agent; when all are settled a person
    /// picks one, which lands, and the others' agents are retired.
    #[test]
    fn best_of_three_asks_once_all_are_settled_and_lands_the_pick() {
        let mut s = world(&[
            ("c-one", "candidate", Idle),
            ("c-two", "candidate", Idle),
            ("c-three", "candidate", Idle),
            ("plain", "candidate", Idle),
        ]);
        {
            let ids: Vec<String> = ["c-one", "c-two", "c-three"]
                .iter()
                .map(|n| s.agent(n).unwrap().id.clone())
                .collect();
            let mut d = Draft::new(&mut s, "2026-11-28T00:00:00Z");
            for a in &ids {
                d.emit(EventBody::WorktreeCreated {
                    id: a.into(),
                    worktree: crate::core::agent::WorktreeRecord {
                        path: format!("/wt/{a}"),
                        branch: format!("orch/{a}"),
                        base: "main".into(),
                        base_commit: "c0".into(),
                        changes: 2,
                        paused: false,
                    },
                });
            }
        }
        let refusals = [
            run(&mut s, |d| {
                create_best_of(d, new("x", None, None, 2), &["c-one".into()])
            }),
            run(&mut s, |d| {
                create_best_of(
                    d,
                    new("x", None, None, 2),
                    &["c-one".into(), "plain".into()],
                )
            }),
            run(&mut s, |d| {
                create_best_of(
                    d,
                    new("x", None, None, 2),
                    &["c-one".into(), "c-one".into()],
                )
            }),
        ];
        expect![[r#"
            refused Invalid { field: "agents", message: "best of N needs at least two agents, got 1" }
            refused Invalid { field: "agents[1]", message: "agent plain has no worktree of its own to work in" }
            refused Invalid { field: "agents[1]", message: "agent c-one is named twice" }"#]].assert_eq(&refusals.join("\n"));
        let mut t = new("answer", None, None, 2);
        t.merge = Some("squash".into());
        let created = run(&mut s, |d| {
            create_best_of(d, t, &["c-one".into(), "c-two".into(), "c-three".into()])
        });
        expect![[r#"
            event k-6 created "answer" normal gates=[] max=2
            event k-7 created "answer" normal gates=[] max=2
            event k-7 assigned to Some("a-2")
            event k-7 task pending -> assigned (assigned at creation: a-2)
            event k-8 created "answer" normal gates=[] max=2
            event k-8 assigned to Some("a-3")
            event k-8 task pending -> assigned (assigned at creation: a-3)
            event k-9 created "answer" normal gates=[] max=2
            event k-9 assigned to Some("a-4")
            event k-9 task pending -> assigned (assigned at creation: a-4)
            effect Dispatch { task: "k-7" }
            effect Dispatch { task: "k-8" }
            effect Dispatch { task: "k-9" }
            => "k-6""#]]
        .assert_eq(&created);
        let group = s
            .tasks
            .values()
            .find(|t| !t.candidates.is_empty())
            .unwrap()
            .clone();
        let kids = group.candidates.clone();
        // Two settle: nothing asked yet; the third does: the decision.
        let steps = [
            run(&mut s, |d| {
                complete(d, &kids[0], None)?;
                next_gate(d, &kids[0], 0);
                Ok(())
            }),
            run(&mut s, |d| cancel(d, &kids[2])),
            run(&mut s, |d| {
                complete(d, &kids[1], None)?;
                next_gate(d, &kids[1], 0);
                Ok(())
            }),
        ];
        expect![[r#"
            event k-7 completed None
            event k-7 attempt 1
            event k-7 task assigned -> verifying (marked complete)
            event k-7 task verifying -> done (no gates)
            --
            event k-9 task assigned -> cancelled (cancelled)
            --
            event k-8 completed None
            event k-8 attempt 1
            event k-8 task assigned -> verifying (marked complete)
            event k-8 task verifying -> done (no gates)
            event k-6 task pending -> verifying (every candidate is settled; a person picks one)
            event d-10 decision "Which candidate of k-6 (answer) lands?" options=["c-one", "c-two", "c-three", "none"] source=BestOf { task: "k-6" }"#]].assert_eq(&steps.join("\n--\n"));
        let decision = s
            .decisions
            .values()
            .find(|d| !d.resolved)
            .unwrap()
            .id
            .clone();
        expect![[r#"
            event d-10 resolved "c-two" (None)
            event k-6 task verifying -> done (c-two was chosen)
            effect Retire { agent: "a-2" }
            effect Land { agent: "a-3", strategy: "squash", task: "k-6" }
            effect Retire { agent: "a-4" }"#]]
        .assert_eq(&run(&mut s, |d| {
            decisions::resolve(d, &decision, "c-two", None).map(|_| ())
        }));
    }
}
