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

use tokio::io::AsyncReadExt;

use super::{ConnId, Input, OpError, Runtime};
use crate::core::event::EventBody;
use crate::core::rules;
use crate::core::task::{DecisionRecord, DecisionSource, GateRun, GateSpec, TaskRecord, TaskState};

/// Bytes of a gate's output kept in `gateResults[].outputTail`.
const TAIL_BYTES: usize = 4096;

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

/// Most events one run of the retention job drops. Removing runs on the runtime task: the
/// first start after a million events held it 7.4 s in one go, 74 ms per 10,000. A longer
/// backlog goes a batch per tick (50 ms), about 15 ms each.
pub const RETENTION_BATCH: usize = 2_000;

/// Runtime-only task state.
pub struct WorkState {
    /// Gate processes running: task id -> process group id.
    pub gate_pids: HashMap<String, u32>,
    /// Scheduler jobs.
    pub jobs: Vec<Job>,
    /// The terminal each task's prompt was last typed into.
    pub prompted: HashMap<String, String>,
    /// Terminals the health job found dead without an exit report (settled on the next run).
    pub silent_exits: std::collections::HashSet<String>,
    /// The retention job stopped at [`RETENTION_BATCH`] events and goes on at the next tick.
    pub retention_backlog: bool,
    /// Gates of remote agents whose host is out of reach, by host: `(task, gate index)`, run
    /// when it is back rather than failing on the SSH error and using up an attempt.
    pub deferred_gates: HashMap<String, Vec<(String, usize)>>,
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
            deferred_gates: HashMap::new(),
            silent_exits: Default::default(),
            prompted: HashMap::new(),
            retention_backlog: false,
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

    /// Kill a task's running gate with its process group (the task was cancelled).
    pub fn kill_gate(&mut self, task: &str) {
        if let Some(pgid) = self.gate_pids.remove(task) {
            // SAFETY: killpg on the gate's own process group.
            unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
        }
    }
}

/// What `orch/task/create` asks for, after wire decoding.
#[derive(Clone)]
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
    /// How its agent's worktree lands once it is done.
    pub merge: Option<String>,
    /// Best of N: agent ids or names, or kinds to spawn (each with a worktree).
    pub agents: Option<Vec<String>>,
}

/// A gate argument.
#[derive(Clone)]
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

    /// `orch/task/create`: the gates named or given inline resolved against the
    /// configuration, then the rule.
    pub fn create_task(&mut self, req: CreateTask) -> Result<TaskRecord, OpError> {
        let (new, agents) = self.new_task(req)?;
        let id = match agents {
            None => self.rule(|d| rules::tasks::create(d, new))?,
            Some(agents) => self.rule(|d| rules::tasks::create_best_of(d, new, &agents))?,
        };
        Ok(self.state.tasks[&id].clone())
    }

    /// A task request checked against the configuration: the task to create, and its
    /// candidates' agents for best of N.
    pub(super) fn new_task(
        &self,
        req: CreateTask,
    ) -> Result<(rules::tasks::NewTask, Option<Vec<String>>), OpError> {
        let max_attempts = req.max_attempts.unwrap_or(self.config.tasks.max_attempts);
        let gate_args = req.gates.unwrap_or_else(|| {
            self.config
                .tasks
                .default_gates
                .iter()
                .cloned()
                .map(GateArg::Name)
                .collect()
        });
        if gate_args.len() > rules::tasks::MAX_GATES {
            return Err(OpError::Limit {
                limit: "gates per task",
                max: rules::tasks::MAX_GATES as u64,
            });
        }
        let mut gates = Vec::new();
        for (i, g) in gate_args.into_iter().enumerate() {
            gates.push(self.resolve_gate(i, g)?);
        }
        Ok((
            rules::tasks::NewTask {
                title: req.title,
                prompt: req.prompt,
                priority: req.priority,
                agent: req.agent,
                gates,
                max_attempts,
                merge: req.merge,
                group: None,
            },
            req.agents,
        ))
    }

    /// A gate argument as the task will hold it: a configured gate by name, or an inline one.
    fn resolve_gate(&self, i: usize, g: GateArg) -> Result<GateSpec, OpError> {
        let field = format!("gates[{i}]");
        match g {
            GateArg::Name(name) => {
                let c = self.config.gates.get(&name).ok_or_else(|| {
                    let known: Vec<&str> = self.config.gates.keys().map(String::as_str).collect();
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
                Ok(GateSpec {
                    name,
                    command: c.command.clone(),
                    timeout_s: c.timeout_s,
                })
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
                Ok(spec)
            }
        }
    }

    /// `orch/task/assign`.
    pub fn assign_task(&mut self, id: &str, agent: &str) -> Result<TaskRecord, OpError> {
        self.rule(|d| rules::tasks::assign_to(d, id, agent))?;
        Ok(self.state.tasks[id].clone())
    }

    /// Type an assigned task's prompt into its agent if the agent is idle (the effect of
    /// [`Effect::Dispatch`]).
    pub(super) fn try_dispatch(&mut self, task: &str) {
        let Some(agent) = self
            .state
            .tasks
            .get(task)
            .and_then(|t| t.agent_id.as_ref())
            .and_then(|a| self.state.agents.get(a))
        else {
            return;
        };
        // A process that never saw the task (another agent after a requeue, or a restarted one)
        // needs the task itself, not only what went wrong with someone's attempt at it.
        let seen = self.work.prompted.get(task) == Some(&agent.terminal_id);
        let terminal_live = self.terminals.contains_key(&agent.terminal_id);
        let terminal = agent.terminal_id.clone();
        let _ = self.rule(|d| {
            rules::tasks::dispatch(d, task, seen, terminal_live);
            Ok(())
        });
        if self.state.tasks.get(task).map(|t| t.state) == Some(TaskState::Running) {
            self.work.prompted.insert(task.to_string(), terminal);
        }
    }

    /// An agent went idle: give it its assigned task.
    pub(super) fn agent_became_idle(&mut self, agent: &str) {
        if let Some(task) = self.state.agents.get(agent).and_then(|a| a.task_id.clone()) {
            self.try_dispatch(&task);
        }
    }

    /// The scheduler's `dispatch` job: queued tasks to idle agents.
    fn dispatch_queue(&mut self) {
        let _ = self.rule(|d| {
            rules::tasks::dispatch_queue(d);
            Ok(())
        });
    }

    /// The scheduler's jobs.
    pub fn jobs(&self) -> &[Job] {
        &self.work.jobs
    }

    /// `orch/task/complete`: gates run next.
    pub fn complete_task(
        &mut self,
        id: &str,
        summary: Option<String>,
    ) -> Result<TaskRecord, OpError> {
        self.rule(|d| rules::tasks::complete(d, id, summary))?;
        Ok(self.state.tasks[id].clone())
    }

    /// `orch/task/cancel`.
    pub fn cancel_task(&mut self, id: &str) -> Result<TaskRecord, OpError> {
        self.rule(|d| rules::tasks::cancel(d, id))?;
        Ok(self.state.tasks[id].clone())
    }

    /// Resolve as `dismissed` every pending decision whose source matches: its question is
    /// moot (the agent stopped waiting, the task was cancelled or reassigned).
    pub fn dismiss_decisions(&mut self, source: impl Fn(&DecisionSource) -> bool, why: &str) {
        let _ = self.rule(|d| {
            rules::decisions::dismiss(d, source, why);
            Ok(())
        });
    }

    /// Run gate `index` of a verifying task (the effect of [`Effect::RunGate`]): the process
    /// starts now, its wait runs off the loop and reports as [`Input::GateDone`].
    pub(super) fn run_gate(&mut self, id: &str, index: usize) {
        let Some(t) = self.state.tasks.get(id).cloned() else {
            return;
        };
        let Some(gate) = t.gates.get(index).cloned() else {
            return;
        };
        let attempt = t.attempts.max(1);
        let agent = t.agent_id.as_ref().and_then(|a| self.state.agents.get(a));
        if let Some(host) = agent.and_then(|a| a.host.as_deref()).filter(|h| {
            self.hosts
                .get(*h)
                .is_some_and(|h| h.status().state != crate::ports::HostState::Connected)
        }) {
            tracing::info!(task = %id, gate = %gate.name, %host, "gate waits for its host");
            self.work
                .deferred_gates
                .entry(host.to_owned())
                .or_default()
                .push((id.to_owned(), index));
            return;
        }
        // A remote agent's gate runs on its host, in its directory there, over SSH.
        let launch = match agent.and_then(|a| Some((a, a.host.as_deref()?))) {
            Some((a, host)) => match self.config.hosts.get(host) {
                Some(h) => Ok(remote_gate(h, &a.cwd, &gate)),
                None => Err(format!(
                    "its agent runs on host {host}, which orch.toml no longer names"
                )),
            },
            None => Ok(GateLaunch {
                argv: gate.command.clone(),
                cwd: agent
                    .map(|a| PathBuf::from(&a.cwd))
                    .unwrap_or_else(|| self.paths.root.clone()),
                stdin: None,
            }),
        };
        let log = self
            .paths
            .state_dir
            .join("gates")
            .join(format!("{id}-{attempt}-{}.log", sanitize(&gate.name)));
        let task = id.to_string();
        // Spawning is synchronous and quick; only the waiting happens off the loop.
        let spawned = launch.and_then(|l| {
            spawn_gate(l).map_err(|e| format!("cannot start {:?}: {e}", gate.command[0]))
        });
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
                    output_tail: e,
                };
                let _ = self
                    .tx
                    .send(Input::GateDone(GateOutcome { task, index, run }));
            }
        }
    }

    /// A gate finished.
    pub(super) fn on_gate_done(&mut self, o: GateOutcome) {
        self.work.gate_pids.remove(&o.task);
        let _ = self.rule(|d| {
            rules::tasks::gate_done(d, &o.task, o.index, o.run);
            Ok(())
        });
    }

    /// `orch/decision/resolve`: the first answer wins; the choice takes effect.
    pub fn resolve_decision(
        &mut self,
        id: &str,
        choice: &str,
        reason: Option<String>,
    ) -> Result<DecisionRecord, OpError> {
        self.rule(|d| rules::decisions::resolve(d, id, choice, reason))
    }

    /// An agent ended (exit, stop, lost): settle its task.
    pub(super) fn task_agent_ended(&mut self, agent: &str, code: Option<i32>) {
        let _ = self.rule(|d| {
            rules::tasks::agent_ended(d, agent, code);
            Ok(())
        });
    }

    /// An agent was restarted by hand: its running task goes to the new process.
    pub(super) fn task_agent_restarted(&mut self, agent: &str) {
        let _ = self.rule(|d| {
            rules::tasks::agent_restarted(d, agent);
            Ok(())
        });
    }

    /// After a start: gates interrupted by the previous daemon's end are recorded and run again.
    pub(super) fn reconcile_tasks(&mut self) {
        let _ = self.rule(|d| {
            rules::tasks::reconcile(d);
            Ok(())
        });
    }

    /// Offer decision `decision` to client `conn` (once): its answer resolves it, unless another
    /// client answered first (then this prompt was stale and its answer changes nothing).
    pub fn offer_decision(&mut self, conn: ConnId, decision: &str) {
        let Some(d) = self.state.decisions.get(decision).cloned() else {
            return;
        };
        let handle = self.tx.clone();
        let peer = self.clients.peer(conn).unwrap_or_default();
        let id = d.id.clone();
        self.clients.ask(
            conn,
            &d,
            Box::new(move |choice| {
                let job = move |rt: &mut Runtime| {
                    if let Err(e) =
                        rt.resolve_decision(&id, &choice, Some(format!("answered by {peer}")))
                    {
                        tracing::debug!("decision answer ignored: {e}");
                    }
                    None
                };
                let _ = handle.send(Input::Call(super::Call {
                    conn,
                    live: Box::new(|| true),
                    job: Box::new(job),
                }));
            }),
        );
    }

    /// Work-done progress for tasks and gates, to clients that support it.
    pub(super) fn report_progress(&mut self, e: &crate::core::event::StoredEvent) {
        use crate::ports::Progress;
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
        self.clients.progress(&task, step);
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
            let mut again = false;
            let result = match name {
                "dispatch" => {
                    self.dispatch_queue();
                    Ok(())
                }
                "health" => self.job_health(),
                "retention" => self.job_retention().map(|more| again = more),
                _ => Ok(()),
            };
            let last_run = self.clock.now_rfc3339();
            let job = &mut self.work.jobs[i];
            // A job with more to do is due again at the next tick.
            job.last = (!again).then_some(now);
            job.last_run = Some(last_run);
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
            // A remote agent's terminal comes and goes with its host's connection, which the
            // host's watcher reports: it is looked at here only while the host is connected.
            .filter(|a| {
                a.host.as_ref().is_none_or(|h| {
                    self.hosts
                        .get(h)
                        .is_some_and(|h| h.status().state == crate::ports::HostState::Connected)
                        && self.terminals.contains_key(&a.terminal_id)
                })
            })
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
                    .any(|a| a.state.is_live() && a.host.is_none() && a.backend == b.name())
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

    /// Bound the event log and the output logs. True when events beyond the limit remain: the
    /// job runs again at the next tick (a batch at a time, see [`RETENTION_BATCH`]).
    fn job_retention(&mut self) -> Result<bool, String> {
        let keep = self.config.retention.events;
        let mut more = false;
        if self.state.last_seq > keep {
            if !std::mem::take(&mut self.work.retention_backlog) {
                // A new round: the snapshot compaction trusts is saved at the next commit.
                self.snapshot();
            }
            more = self
                .log
                .store
                // Only what a snapshot that has landed covers: the store's newest one may
                // still be being written (and flushed) by the snapshot thread.
                .compact(
                    (self.state.last_seq - keep).min(self.log.last_snapshot + 1),
                    RETENTION_BATCH,
                )
                .map_err(|e| e.to_string())?
                .more;
            self.work.retention_backlog = more;
        }
        if more {
            return Ok(true);
        }
        let max_age = Duration::from_secs(self.config.retention.output_log_days * 86_400);
        let dir = self.paths.state_dir.join("output");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(false);
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
        Ok(false)
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
pub(super) fn end_orphaned_gate(task: &str, pgid: u32, gate_program: &str) {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pgid}/cmdline")) else {
        return;
    };
    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    if program == gate_program.as_bytes() {
        tracing::info!(
            task,
            pgid,
            "ending the gate the previous daemon left running"
        );
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

/// How a gate's process starts.
#[derive(Debug, PartialEq)]
pub struct GateLaunch {
    /// The local argv.
    pub argv: Vec<String>,
    /// The local working directory.
    pub cwd: PathBuf,
    /// What its stdin gets (then closed); `None`: nothing.
    pub stdin: Option<Vec<u8>>,
}

/// The gate `gate` of an agent on host `host`, in directory `dir` there: one shell line over
/// SSH. The host's `timeout` ends it at the gate's timeout even when the connection is gone
/// (killing the local `ssh` at the timeout does not reach the remote program). The host's
/// environment goes through stdin, one `NAME=value` a line, never on a command line.
pub fn remote_gate(host: &crate::config::HostConfig, dir: &str, gate: &GateSpec) -> GateLaunch {
    use crate::config::{shell_cd, shell_line};
    let mut run = vec![
        "timeout".to_string(),
        "-k".into(),
        "5".into(),
        gate.timeout_s.to_string(),
    ];
    run.extend(gate.command.iter().cloned());
    let mut line = shell_cd(dir);
    let mut stdin = None;
    if !host.env.is_empty() {
        line.push_str(" && while IFS= read -r kv && [ -n \"$kv\" ]; do export \"$kv\"; done");
        let mut vars = String::new();
        for (k, v) in &host.env {
            vars.push_str(&format!("{k}={v}\n"));
        }
        vars.push('\n');
        stdin = Some(vars.into_bytes());
    }
    line.push_str(&format!(" && exec {} </dev/null", shell_line(&run)));
    GateLaunch {
        argv: host.run_line(line),
        cwd: std::env::temp_dir(),
        stdin,
    }
}

/// Start a gate: argv without a shell, in its own process group (so a timeout kills the tree).
fn spawn_gate(launch: GateLaunch) -> std::io::Result<tokio::process::Child> {
    let GateLaunch { argv, cwd, stdin } = launch;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A few hundred bytes at most (the host's variables), written off the loop; the pipe
        // closes after them.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = pipe.write_all(&bytes).await;
        });
    }
    Ok(child)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_gate_runs_over_ssh_with_its_environment_on_stdin() {
        let host = crate::config::HostConfig {
            ssh: vec!["ssh".into(), "lab".into()],
            cwd: Some("/srv/w".into()),
            env: [("TOKEN".to_string(), "s3cret".to_string())].into(),
            tmux: "tmux".into(),
            socket_name: String::new(),
        };
        let gate = GateSpec {
            name: "test".into(),
            command: vec!["cargo".into(), "test".into(), "a b".into()],
            timeout_s: 90,
        };
        let launch = remote_gate(&host, "/srv/w/sub dir", &gate);
        assert_eq!(launch.argv[..2], ["ssh", "lab"]);
        assert_eq!(
            launch.argv[2],
            "cd -- '/srv/w/sub dir' && while IFS= read -r kv && [ -n \"$kv\" ]; do export \"$kv\"; done && exec timeout -k 5 90 cargo test 'a b' </dev/null"
        );
        assert!(
            !launch.argv.iter().any(|a| a.contains("s3cret")),
            "a secret on the command line"
        );
        assert_eq!(launch.stdin.as_deref(), Some(&b"TOKEN=s3cret\n\n"[..]));
        let plain = remote_gate(
            &crate::config::HostConfig {
                env: Default::default(),
                ..host
            },
            "~",
            &gate,
        );
        assert_eq!(
            plain.argv[2],
            "cd && exec timeout -k 5 90 cargo test 'a b' </dev/null"
        );
        assert_eq!(plain.stdin, None);
    }
}
