//! Agents in their own git worktrees: spawning into one, reviewing (diff), landing (merge),
//! discarding, pausing and resuming, counting changes after each turn, and finding them again
//! after a daemon restart.
//!
//! Git is slow next to the loop (processes, setup commands that may run for minutes), so every
//! call through the [`Worktrees`] port runs off the loop (`Runtime::off_loop`) and its result
//! comes back as a job on the loop, where events are recorded and the waiting request answered.
//! Names of agents whose worktree is being made are reserved meanwhile, merges into the
//! workspace run one at a time (the port's lock), and an agent's worktree work is never started
//! twice at once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::agents::{Prepared, SpawnArgs, WorktreeArgs};
use super::tasks::CreateTask;
use super::{Call, Input, OpError, Runtime, Waiter};
use crate::core::agent::{AgentRecord, WorktreeRecord};
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::rules;
use crate::core::task::{DecisionRecord, DecisionSource};
use crate::ports::{DiffReport, Landed, VcsError, WorktreeFound, WorktreeRequest, Worktrees};

/// Runtime-only worktree bookkeeping.
#[derive(Default)]
pub struct TreeState {
    /// Names of agents whose worktree is being made.
    reserved: HashSet<String>,
    /// Agents with worktree work under way (a merge, a discard, a pause, a count).
    busy: HashSet<String>,
    /// Best-of-N candidates that were not chosen: their worktree goes once they ended.
    retiring: HashSet<String>,
}

impl TreeState {
    /// Whether `name` is taken by an agent whose worktree is being made.
    pub fn is_reserved(&self, name: &str) -> bool {
        self.reserved.contains(name)
    }
}

/// A best-of-N task waiting for its agents to be spawned.
struct Gather {
    /// Per entry of `agents`: the agent's id, or (while it is spawned) its kind.
    slots: Vec<Result<String, String>>,
    /// Spawns not answered yet.
    waiting: usize,
    /// The first spawn that failed.
    failed: Option<OpError>,
    /// The agents spawned for it.
    spawned: Vec<String>,
    /// The task to create.
    new: Option<rules::tasks::NewTask>,
    /// Who waits for it.
    reply: Option<Waiter<crate::core::task::TaskRecord>>,
}

/// What a client is told about a [`VcsError`] about agent `id` (`field` names the parameter a
/// missing repository is blamed on).
fn op_error(e: VcsError, id: &str, field: &str) -> OpError {
    match e {
        VcsError::Unavailable(m) => OpError::invalid(field, m),
        VcsError::Invalid { field, message } => OpError::invalid(field, message),
        VcsError::Conflict { files } => OpError::MergeConflict {
            id: id.into(),
            files,
        },
        VcsError::Refused(message) => OpError::Refused {
            id: id.into(),
            message,
        },
        VcsError::Failed(m) => OpError::Internal(m),
    }
}

impl Runtime {
    /// Run `work` on a blocking thread; `then` gets its result on the loop.
    pub(super) fn off_loop<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
        then: impl FnOnce(&mut Runtime, T) + Send + 'static,
    ) {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let out = work();
            let _ = tx.send(Input::Call(Call {
                conn: 0,
                live: Box::new(|| true),
                job: Box::new(move |rt| {
                    then(rt, out);
                    None
                }),
            }));
        });
    }

    fn trees_port(&self, field: &str) -> Result<Arc<dyn Worktrees>, OpError> {
        self.worktrees
            .clone()
            .ok_or_else(|| OpError::invalid(field, "this daemon has no worktree support"))
    }

    /// Where agent `name`'s worktree is checked out.
    fn worktree_path(&self, name: &str) -> PathBuf {
        let dir = match &self.config.worktrees.dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => self.paths.root.join(d),
            None => self.paths.state_dir.join("worktrees"),
        };
        dir.join(name)
    }

    /// An agent with a worktree, for a worktree operation.
    fn with_worktree(
        &self,
        id: &str,
        what: &str,
    ) -> Result<(AgentRecord, WorktreeRecord), OpError> {
        let a = self.agent_ref(id)?.clone();
        let Some(w) = a.worktree.clone() else {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: "without a worktree".into(),
                what: what.into(),
            });
        };
        if self.trees.busy.contains(&a.id) {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: "busy with its worktree".into(),
                what: format!("{what} (another worktree operation runs)"),
            });
        }
        Ok((a, w))
    }

    /// `orch/agent/spawn`: the agent, started at once, or (with a worktree) once its worktree
    /// is made. `reply` hears either way.
    pub fn spawn(&mut self, args: SpawnArgs, reply: Waiter<AgentRecord>) -> Result<(), OpError> {
        let p = self.prepare_spawn(&args)?;
        let Some(wt) = p.worktree.clone() else {
            let agent = self.launch(p, None)?;
            self.hold(reply(Ok(agent)));
            return Ok(());
        };
        let port = self.trees_port("worktree")?;
        let branch = match wt.branch {
            Some(b) => b,
            None => format!("orch/{}", p.name),
        };
        let req = WorktreeRequest {
            path: self.worktree_path(&p.name),
            branch,
            base: wt.base,
        };
        self.trees.reserved.insert(p.name.clone());
        self.off_loop(
            move || port.create(&req).map(|made| (made, req)),
            move |rt: &mut Runtime, made| rt.worktree_made(p, made, reply),
        );
        Ok(())
    }

    /// A spawn's worktree is made (or could not be): start the agent in it.
    fn worktree_made(
        &mut self,
        p: Prepared,
        made: Result<(crate::ports::WorktreeMade, WorktreeRequest), VcsError>,
        reply: Waiter<AgentRecord>,
    ) {
        self.trees.reserved.remove(&p.name);
        let made = match made {
            Ok((made, _)) => made,
            Err(e) => {
                let e = op_error(e, &p.name, "worktree");
                return self.hold(reply(Err(e)));
            }
        };
        for note in &made.notes {
            tracing::info!(agent = %p.name, "worktree: {note}");
        }
        let wt = made.worktree;
        let started = if self.is_stopping() {
            Err(OpError::Conflict {
                kind: "daemon",
                id: "daemon".into(),
                state: "stopping".into(),
                what: "orch/agent/spawn: the daemon is stopping".into(),
            })
        } else {
            self.launch(p, Some(wt.clone()))
        };
        match started {
            Ok(agent) => self.hold(reply(Ok(agent))),
            Err(e) => {
                // Nothing of the agent exists: its fresh worktree goes too.
                if let Some(port) = self.worktrees.clone() {
                    self.off_loop(
                        move || port.discard(&wt),
                        |_, r| {
                            if let Err(e) = r {
                                tracing::warn!("cannot remove the worktree of a failed spawn: {e}");
                            }
                        },
                    );
                }
                self.hold(reply(Err(e)));
            }
        }
    }

    /// `orch/task/create {agents}`: best of N. Kinds among `agents` are spawned first, each
    /// with a worktree; once all of them run, the task and its candidates are created and
    /// `reply` hears. If a spawn fails, the agents spawned for it are stopped and their fresh
    /// worktrees removed, and the error is the answer.
    pub fn create_best_of(
        &mut self,
        req: CreateTask,
        reply: Waiter<crate::core::task::TaskRecord>,
    ) -> Result<(), OpError> {
        let agents = req.agents.clone().unwrap_or_default();
        // What the rule would refuse, refused before any agent is spawned for it.
        if req.agent.is_some() {
            return Err(OpError::invalid("agentId", "give either agentId or agents"));
        }
        if agents.len() < 2 {
            return Err(OpError::invalid(
                "agents",
                format!("best of N needs at least two agents, got {}", agents.len()),
            ));
        }
        if agents.len() > rules::tasks::MAX_CANDIDATES {
            return Err(OpError::Limit {
                limit: "agents per task",
                max: rules::tasks::MAX_CANDIDATES as u64,
            });
        }
        let mut slots: Vec<Result<String, String>> = Vec::new();
        for (i, a) in agents.iter().enumerate() {
            if let Some(agent) = self.state.agent(a) {
                slots.push(Ok(agent.id.clone()));
            } else if self.config.agents.contains_key(a) {
                slots.push(Err(a.clone()));
            } else {
                return Err(OpError::invalid(
                    &format!("agents[{i}]"),
                    format!("{a:?} is neither an agent nor a configured kind"),
                ));
            }
        }
        // Checked now (title, gates, ...) so that no agent is spawned for a task that cannot be.
        let (new, _) = self.new_task(CreateTask {
            agents: None,
            ..req.clone()
        })?;
        let kinds: Vec<(usize, String)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.clone().err().map(|k| (i, k)))
            .collect();
        if kinds.is_empty() {
            let ids: Vec<String> = slots.into_iter().filter_map(Result::ok).collect();
            let id = self.rule(|d| rules::tasks::create_best_of(d, new, &ids))?;
            self.hold(reply(Ok(self.state.tasks[&id].clone())));
            return Ok(());
        }
        // Spawn each kind; the last spawn to answer creates the task.
        let gather = Arc::new(std::sync::Mutex::new(Gather {
            slots,
            waiting: kinds.len(),
            failed: None,
            spawned: Vec::new(),
            new: Some(new),
            reply: Some(reply),
        }));
        for (i, kind) in kinds {
            let g = gather.clone();
            let tx = self.tx.clone();
            let spawned: Waiter<AgentRecord> = Box::new(move |r| {
                let _ = tx.send(Input::Call(Call {
                    conn: 0,
                    live: Box::new(|| true),
                    job: Box::new(move |rt| {
                        rt.candidate_spawned(&g, i, r);
                        None
                    }),
                }));
                Box::new(|| {})
            });
            let args = SpawnArgs {
                kind: Some(kind),
                worktree: Some(Some(WorktreeArgs::default())),
                ..SpawnArgs::default()
            };
            if let Err(e) = self.spawn(args, spawned) {
                // Refused before anything ran: as if it had answered.
                let mut gl = gather.lock().unwrap();
                gl.waiting -= 1;
                gl.failed.get_or_insert(e);
            }
        }
        let done = gather.lock().unwrap().waiting == 0;
        if done {
            self.best_of_gathered(&gather);
        }
        Ok(())
    }

    /// One of a best-of-N task's agents was spawned (or not).
    fn candidate_spawned(
        &mut self,
        gather: &Arc<std::sync::Mutex<Gather>>,
        slot: usize,
        r: Result<AgentRecord, OpError>,
    ) {
        let all_in = {
            let mut g = gather.lock().unwrap();
            g.waiting -= 1;
            match r {
                Ok(a) => {
                    g.spawned.push(a.id.clone());
                    g.slots[slot] = Ok(a.id);
                }
                Err(e) => {
                    g.failed.get_or_insert(e);
                }
            }
            g.waiting == 0
        };
        if all_in {
            self.best_of_gathered(gather);
        }
    }

    /// Every spawn of a best-of-N task answered: create it, or undo the spawns.
    fn best_of_gathered(&mut self, gather: &Arc<std::sync::Mutex<Gather>>) {
        let (slots, failed, new, reply) = {
            let mut g = gather.lock().unwrap();
            (
                std::mem::take(&mut g.slots),
                g.failed.take(),
                g.new.take(),
                g.reply.take(),
            )
        };
        let (Some(new), Some(reply)) = (new, reply) else {
            return;
        };
        let ids: Vec<String> = slots.iter().filter_map(|s| s.clone().ok()).collect();
        let result = match failed {
            Some(e) => Err(e),
            None => self
                .rule(|d| rules::tasks::create_best_of(d, new, &ids))
                .map(|id| self.state.tasks[&id].clone()),
        };
        if result.is_err() {
            // The agents spawned for it have nothing to do: they and their worktrees go.
            let spawned = std::mem::take(&mut gather.lock().unwrap().spawned);
            for agent in spawned {
                self.retire(&agent);
            }
        }
        self.hold(reply(result));
    }

    /// A best-of-N candidate that was not chosen: stop its agent and remove its worktree once
    /// it ended (now, when it has).
    pub(super) fn retire(&mut self, agent: &str) {
        let Some(a) = self.state.agents.get(agent).cloned() else {
            return;
        };
        if a.state.is_live() {
            self.trees.retiring.insert(a.id.clone());
            if let Err(e) = self.stop_agent(&a.id, false) {
                tracing::warn!(agent, "cannot stop a candidate that was not chosen: {e}");
            }
            return;
        }
        self.discard_now(&a.id);
    }

    /// An agent ended: a retiring candidate's worktree goes now.
    pub(super) fn retired(&mut self, agent: &str) {
        if self.trees.retiring.remove(agent) {
            self.discard_now(agent);
        }
    }

    /// Remove an ended agent's worktree and branch, whatever they hold (a person chose so).
    fn discard_now(&mut self, agent: &str) {
        let Ok((a, w)) = self.with_worktree(agent, "cannot discard its worktree") else {
            return;
        };
        let Some(port) = self.worktrees.clone() else {
            return;
        };
        self.trees.busy.insert(a.id.clone());
        self.off_loop(
            move || port.discard(&w),
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&a.id);
                match r {
                    Ok(()) => rt.emit(EventBody::WorktreeRemoved {
                        id: a.id.clone(),
                        branch_kept: false,
                    }),
                    Err(e) => {
                        rt.warn_clients(&format!("cannot discard the worktree of {}: {e}", a.name))
                    }
                }
            },
        );
    }

    /// `orch/agent/diff`.
    pub fn diff_agent(
        &mut self,
        id: &str,
        base: Option<String>,
        reply: Waiter<(DiffReport, WorktreeRecord)>,
    ) -> Result<(), OpError> {
        let (a, w) = self.with_worktree(id, "cannot show a diff")?;
        let port = self.trees_port("id")?;
        self.off_loop(
            move || port.diff(&w, base.as_deref()).map(|d| (d, w)),
            move |rt: &mut Runtime, r| {
                let r = r.map_err(|e| op_error(e, &a.id, "base"));
                rt.hold(reply(r));
            },
        );
        Ok(())
    }

    /// `orch/agent/merge`: commit what the agent left (when `[worktrees] commit_on_done`), then
    /// merge its branch into its base.
    pub fn merge_agent(
        &mut self,
        id: &str,
        strategy: String,
        message: Option<String>,
        reply: Option<Waiter<Landed>>,
    ) -> Result<(), OpError> {
        let (a, w) = self.with_worktree(id, "cannot merge")?;
        if !matches!(strategy.as_str(), "merge" | "squash" | "rebase") {
            return Err(OpError::invalid(
                "strategy",
                format!("{strategy:?} is not a strategy; expected merge, squash or rebase"),
            ));
        }
        if message.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(OpError::invalid("message", "must not be empty"));
        }
        let port = self.trees_port("id")?;
        let commit_first = self.config.worktrees.commit_on_done;
        self.trees.busy.insert(a.id.clone());
        let name = a.name.clone();
        self.off_loop(
            move || {
                port.land(&w, &strategy, message.as_deref(), commit_first, &name)
                    .map(|l| (l, strategy))
            },
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&a.id);
                let r = match r {
                    Ok((landed, strategy)) => {
                        rt.emit(EventBody::WorktreeMerged {
                            id: a.id.clone(),
                            strategy,
                            commit: landed.commit.clone(),
                            files: landed.files.clone(),
                        });
                        rt.count_changes(&a.id);
                        Ok(landed)
                    }
                    Err(e) => Err(op_error(e, &a.id, "id")),
                };
                match reply {
                    Some(reply) => rt.hold(reply(r)),
                    None => {
                        if let Err(e) = r {
                            tracing::warn!(agent = %a.id, "its done task's work did not land: {e}");
                            rt.warn_clients(&format!(
                                "the work of {} did not land in {}: {e}",
                                a.name,
                                a.worktree
                                    .as_ref()
                                    .map(|w| w.base.as_str())
                                    .unwrap_or("its base")
                            ));
                        }
                    }
                }
            },
        );
        Ok(())
    }

    /// `orch/agent/discard`: remove an ended agent's worktree and branch. Work that was never
    /// merged is only thrown away with `force`, or once a person chose to in a decision (its id
    /// is in the error).
    pub fn discard_agent(
        &mut self,
        id: &str,
        force: bool,
        reply: Waiter<()>,
    ) -> Result<(), OpError> {
        let (a, w) = self.with_worktree(id, "cannot discard its worktree")?;
        if a.state.is_live() {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: a.state.as_str().into(),
                what: "cannot discard its worktree (stop it first)".into(),
            });
        }
        let port = self.trees_port("id")?;
        self.trees.busy.insert(a.id.clone());
        self.off_loop(
            move || {
                if force {
                    return port.discard(&w).map(|()| None);
                }
                let unmerged = port.unmerged(&w)?;
                if unmerged.exists() {
                    return Ok(Some(unmerged));
                }
                port.discard(&w).map(|()| None)
            },
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&a.id);
                match r {
                    Ok(None) => {
                        rt.emit(EventBody::WorktreeRemoved {
                            id: a.id.clone(),
                            branch_kept: false,
                        });
                        rt.hold(reply(Ok(())));
                    }
                    Ok(Some(unmerged)) => {
                        let decision = rt.ask_discard(&a, &unmerged);
                        rt.hold(reply(Err(OpError::Refused {
                            id: a.id.clone(),
                            message: format!(
                                "{}'s branch {} has work that was never merged; decision {decision} asks whether to discard it (or discard with force)",
                                a.name,
                                a.worktree.as_ref().map(|w| w.branch.as_str()).unwrap_or("")
                            ),
                        })));
                    }
                    Err(e) => rt.hold(reply(Err(op_error(e, &a.id, "id")))),
                }
            },
        );
        Ok(())
    }

    /// Ask a person whether to throw away an agent's unmerged work; the decision's id.
    fn ask_discard(&mut self, a: &AgentRecord, unmerged: &crate::ports::Unmerged) -> String {
        // One question per agent at a time.
        if let Some(d) = self.state.decisions.values().find(|d| {
            !d.resolved && matches!(&d.source, DecisionSource::Discard { id } if *id == a.id)
        }) {
            return d.id.clone();
        }
        let mut detail = Vec::new();
        if unmerged.commits > 0 {
            detail.push(format!("{} commit(s) not in its base", unmerged.commits));
        }
        if !unmerged.uncommitted.is_empty() {
            let shown: Vec<&str> = unmerged
                .uncommitted
                .iter()
                .take(20)
                .map(String::as_str)
                .collect();
            detail.push(format!("uncommitted: {}", shown.join(", ")));
        }
        let id = self.new_id(ids::DECISION);
        let branch = a
            .worktree
            .as_ref()
            .map(|w| w.branch.clone())
            .unwrap_or_default();
        self.emit(EventBody::DecisionRequested {
            decision: DecisionRecord {
                id: id.clone(),
                title: format!("Discard {}'s unmerged work on {branch}?", a.name),
                detail: detail.join("\n"),
                options: vec![
                    rules::decisions::DISCARD.into(),
                    rules::decisions::KEEP.into(),
                ],
                resolved: false,
                choice: None,
                reason: None,
                source: DecisionSource::Discard { id: a.id.clone() },
                created_at: self.clock.now_rfc3339(),
                resolved_at: None,
            },
        });
        id
    }

    /// A person chose to discard an agent's unmerged work.
    pub(super) fn discard_decided(&mut self, agent: &str) {
        let Ok((a, w)) = self.with_worktree(agent, "cannot discard its worktree") else {
            return;
        };
        if a.state.is_live() {
            return self.warn_clients(&format!(
                "{} was restarted meanwhile: its worktree is kept",
                a.name
            ));
        }
        let Some(port) = self.worktrees.clone() else {
            return;
        };
        self.trees.busy.insert(a.id.clone());
        self.off_loop(
            move || port.discard(&w),
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&a.id);
                match r {
                    Ok(()) => rt.emit(EventBody::WorktreeRemoved {
                        id: a.id.clone(),
                        branch_kept: false,
                    }),
                    Err(e) => {
                        rt.warn_clients(&format!("cannot discard the worktree of {}: {e}", a.name))
                    }
                }
            },
        );
    }

    /// `orch/agent/pause`: commit what the agent left, remove its checkout, keep its branch.
    pub fn pause_agent(&mut self, id: &str, reply: Waiter<AgentRecord>) -> Result<(), OpError> {
        let (a, w) = self.with_worktree(id, "cannot pause")?;
        if a.state.is_live() {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: a.state.as_str().into(),
                what: "cannot pause (stop it first)".into(),
            });
        }
        if w.paused {
            self.hold(reply(Ok(a)));
            return Ok(());
        }
        let port = self.trees_port("id")?;
        self.trees.busy.insert(a.id.clone());
        let name = a.name.clone();
        self.off_loop(
            move || port.pause(&w, &name),
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&a.id);
                match r {
                    Ok(()) => {
                        rt.emit(EventBody::WorktreeRemoved {
                            id: a.id.clone(),
                            branch_kept: true,
                        });
                        let a = rt.state.agents[&a.id].clone();
                        rt.hold(reply(Ok(a)));
                    }
                    Err(e) => rt.hold(reply(Err(op_error(e, &a.id, "id")))),
                }
            },
        );
        Ok(())
    }

    /// `orch/agent/resume`: check a paused agent's branch out again and restart it there.
    pub fn resume_agent(&mut self, id: &str, reply: Waiter<AgentRecord>) -> Result<(), OpError> {
        let (a, w) = self.with_worktree(id, "cannot resume")?;
        if !w.paused {
            return Err(OpError::Conflict {
                kind: "agent",
                id: a.id.clone(),
                state: "not paused".into(),
                what: "cannot resume".into(),
            });
        }
        let port = self.trees_port("id")?;
        self.trees.busy.insert(a.id.clone());
        self.off_loop(
            move || port.resume(&w),
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&a.id);
                let made = match r {
                    Ok(made) => made,
                    Err(e) => return rt.hold(reply(Err(op_error(e, &a.id, "id")))),
                };
                rt.emit(EventBody::WorktreeCreated {
                    id: a.id.clone(),
                    worktree: made.worktree,
                });
                let r = rt.restart_agent(&a.id);
                rt.hold(reply(r));
            },
        );
        Ok(())
    }

    /// Count what an agent's worktree changed (after a turn, a merge, an exit); a
    /// `worktree.changed` event when the count moved.
    pub(super) fn count_changes(&mut self, agent: &str) {
        let Some(a) = self.state.agents.get(agent) else {
            return;
        };
        let Some(w) = a.worktree.clone().filter(|w| !w.paused) else {
            return;
        };
        let Some(port) = self.worktrees.clone() else {
            return;
        };
        if !self.trees.busy.insert(format!("count {agent}")) {
            return; // a count runs already; the next turn counts again
        }
        let agent = agent.to_string();
        self.off_loop(
            move || port.changed_count(&w),
            move |rt: &mut Runtime, r| {
                rt.trees.busy.remove(&format!("count {agent}"));
                match r {
                    Ok(n) => {
                        let known = rt
                            .state
                            .agents
                            .get(&agent)
                            .and_then(|a| a.worktree.as_ref())
                            .filter(|w| !w.paused)
                            .map(|w| w.changes);
                        if known.is_some_and(|k| k != n) {
                            rt.emit(EventBody::WorktreeChanged {
                                id: agent,
                                files: n,
                            });
                        }
                    }
                    Err(e) => tracing::debug!(agent, "cannot count the worktree's changes: {e}"),
                }
            },
        );
    }

    /// After a daemon start: what each recorded worktree is now. A checkout removed by hand is
    /// recorded as paused (its branch is there) or removed (gone); a checkout on another branch
    /// is reported.
    pub(super) fn reconcile_worktrees(&mut self) {
        let recorded: Vec<(String, WorktreeRecord)> = self
            .state
            .agents
            .values()
            .filter_map(|a| a.worktree.clone().map(|w| (a.id.clone(), w)))
            .filter(|(_, w)| !w.paused)
            .collect();
        if recorded.is_empty() {
            return;
        }
        let Some(port) = self.worktrees.clone() else {
            return;
        };
        self.off_loop(
            move || {
                let trees: Vec<WorktreeRecord> = recorded.iter().map(|(_, w)| w.clone()).collect();
                port.reconcile(&trees).map(|found| (recorded, found))
            },
            |rt: &mut Runtime, r| match r {
                Ok((recorded, found)) => {
                    for ((agent, w), f) in recorded.into_iter().zip(found) {
                        match f {
                            WorktreeFound::CheckedOut => rt.count_changes(&agent),
                            WorktreeFound::Paused => rt.emit(EventBody::WorktreeRemoved {
                                id: agent,
                                branch_kept: true,
                            }),
                            WorktreeFound::Gone => rt.emit(EventBody::WorktreeRemoved {
                                id: agent,
                                branch_kept: false,
                            }),
                            WorktreeFound::OnOtherBranch(b) => rt.warn_clients(&format!(
                                "the worktree of {agent} at {} is on {} instead of {}",
                                w.path,
                                b.as_deref().unwrap_or("a detached HEAD"),
                                w.branch
                            )),
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot check the agents' worktrees: {e}"),
            },
        );
    }
}
