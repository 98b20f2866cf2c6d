//! The runtime: one task that owns [`State`] and applies every command in order.
//!
//! Inputs (calls from clients, connections opening and closing, terminal activity, timers, gate
//! results) arrive on one channel as the closed enum [`Input`]. A client's request is a [`Call`]:
//! a closure the rpc layer built, applied here with `&mut Runtime`, which returns the
//! [`Delivery`] of its answer (or leaves a [`Waiter`] that answers later). The runtime never sees
//! JSON, request ids or wire errors, and speaks to clients only through [`ClientPort`].
//!
//! What a command or an observation means is decided by the rules in [`crate::core::rules`]:
//! [`Runtime::rule`] runs one on a [`Draft`] of the state, stages the events it recorded and
//! carries out the [`Effect`]s it asked for (`Runtime::run_effect`), whose results come back as
//! inputs. Observations that need no rule are recorded with [`Runtime::emit`]. Time comes from
//! the [`Clock`] port.
//!
//! The loop handles everything that is ready, then commits the batch: one store sync for all the
//! batch's events (group commit), then the held deliveries, then the events to subscribers. So a
//! state change is durable before it is acknowledged or seen, and a burst of commands costs one
//! device flush. No locks around domain state: only this task touches it.
//!
//! - [`agents`]: spawn (with the hook settings of kinds that report through hooks), stop,
//!   restart, exits, restart policies, reconciliation after a daemon restart; terminal operations.
//! - [`watching`]: each agent's state from its hooks, screen and quiet; typing into agents.
//! - [`screen`]: pure reading of a screen: ready, busy, questions and their choices.
//! - [`terminals`]: live terminal handles, output activity, last screens of ended terminals.
//! - [`clients`]: connections, event subscriptions, decision offers, progress, followed output.
//! - [`tasks`]: tasks, gates, decisions, progress and the scheduler's jobs.
//! - [`sessions`]: named groups of agents.
//! - [`conversations`]: ACP agents: what they say as states, decisions and events; prompts,
//!   cancels and permission answers back to them.
//! - [`worktrees`]: agents in their own git worktrees: spawn, diff, merge, discard, pause,
//!   resume, change counts, reconciliation.

pub mod agents;
pub mod clients;
pub mod conversations;
pub mod hosts;
pub mod screen;
pub mod sessions;
mod snapshots;
pub mod tasks;
pub mod terminals;
pub mod watching;
pub mod worktrees;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::core::agent::AgentRecord;
use crate::core::event::{EventBody, StoredEvent};
use crate::core::rules::{self, Draft, Effect, Refusal};
use crate::core::state::{State, DEFAULT_SESSION};
use crate::paths::WorkspacePaths;
use crate::ports::{
    ClientPort, Clock, ConversationBackend, EventStore, Said, TerminalBackend, Worktrees,
};

pub use clients::event_matches;

/// A client connection's id, unique for the daemon's life.
pub type ConnId = u64;

/// What is delivered to a client once the batch it belongs to is durable: an answer, made by
/// whoever asked (the rpc layer). The runtime only runs it, after the batch's commit.
pub type Delivery = Box<dyn FnOnce() + Send>;

/// Answers a request later (when an agent exited, when a text was typed): turns the outcome into
/// the [`Delivery`] to make.
pub type Waiter<T> = Box<dyn FnOnce(Result<T, OpError>) -> Delivery + Send>;

/// A call's work: applied to the runtime, it returns what to deliver after the commit, or
/// `None` when a [`Waiter`] it left behind answers later.
pub type Job = Box<dyn FnOnce(&mut Runtime) -> Option<Delivery> + Send>;

/// Work a client asked for, applied on the loop in arrival order.
pub struct Call {
    /// The connection it came on (0: the daemon itself).
    pub conn: ConnId,
    /// Whether anybody still waits for it: a call cancelled before it is applied is not applied.
    pub live: Box<dyn Fn() -> bool + Send>,
    /// Apply it.
    pub job: Job,
}

/// Everything the runtime reacts to.
pub enum Input {
    /// Work a client asked for.
    Call(Call),
    /// A connection opened.
    ConnOpened(ConnId, Arc<dyn ClientPort>),
    /// A connection closed.
    ConnClosed(ConnId),
    /// A terminal printed after being quiet.
    Output(String),
    /// A terminal's program ended.
    Exited(String, Option<i32>),
    /// A terminal was lost with its backend (why).
    Lost(String, String),
    /// An ACP agent's terminal said something.
    Said(String, Said),
    /// A timer fired.
    Timer(Timer),
    /// A gate run finished.
    GateDone(tasks::GateOutcome),
    /// A remote host's connection changed state.
    Host(String, crate::ports::HostStatus),
    /// A snapshot landed (the snapshot thread has its outcome).
    Snapshotted,
}

/// Delayed work, scheduled with [`Runtime::after`].
#[derive(Debug, Clone)]
pub enum Timer {
    /// Restart an agent (after its backoff).
    Restart {
        /// The agent.
        agent: String,
        /// Its terminal when the restart was scheduled (stale if it changed since).
        terminal: String,
    },
    /// The grace period of a stop ran out: SIGKILL.
    StopGrace {
        /// The agent.
        agent: String,
    },
    /// The daemon's stop waited long enough for agents.
    DaemonStopGrace,
    /// Write keys into a terminal (Enter after a paste).
    Keys {
        /// The terminal.
        terminal: String,
        /// The bytes.
        keys: String,
    },
}

/// What went wrong in a runtime operation; converted to a JSON-RPC error in `rpc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    /// -32602 naming a field.
    #[error("invalid params: field {field}: {message}")]
    Invalid { field: String, message: String },
    /// -32001.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// -32003: the object's state forbids it.
    #[error("{what}: {kind} {id} is {state}")]
    Conflict {
        kind: &'static str,
        id: String,
        state: String,
        what: String,
    },
    /// -32003: git refused (the workspace's state is in the way), in git's words.
    #[error("{message}")]
    Refused { id: String, message: String },
    /// -32003: merging agent `id`'s branch conflicts in `files`; nothing was changed.
    #[error("merging {id}'s branch conflicts in {}; the workspace was left as it was", .files.join(", "))]
    MergeConflict { id: String, files: Vec<String> },
    /// -32004.
    #[error("backend {backend} is unavailable: {detail}")]
    BackendUnavailable { backend: String, detail: String },
    /// -32005.
    #[error("limit exceeded: {limit} is at most {max}")]
    Limit { limit: &'static str, max: u64 },
    /// -32603.
    #[error("internal error: {0}")]
    Internal(String),
    /// The handler took the reply channel and will answer later.
    #[error("deferred")]
    Deferred,
}

impl From<Refusal> for OpError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid { field, message } => OpError::Invalid { field, message },
            Refusal::NotFound { kind, id } => OpError::NotFound { kind, id },
            Refusal::Conflict {
                kind,
                id,
                state,
                what,
            } => OpError::Conflict {
                kind,
                id,
                state,
                what,
            },
            Refusal::Limit { limit, max } => OpError::Limit { limit, max },
        }
    }
}

impl OpError {
    /// -32602 for `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        OpError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The cheap, cloneable way to talk to the runtime.
#[derive(Clone)]
pub struct RuntimeHandle {
    /// The input channel.
    tx: mpsc::UnboundedSender<Input>,
    /// Connection ids.
    next_conn: Arc<AtomicU64>,
}

impl RuntimeHandle {
    /// Hand work to the runtime; calls are applied in the order submitted.
    pub fn submit(&self, call: Call) {
        let _ = self.tx.send(Input::Call(call));
    }

    /// Run `job` on the loop, for the daemon itself (signals, a private daemon's end).
    pub fn run(&self, job: impl FnOnce(&mut Runtime) + Send + 'static) {
        self.submit(Call {
            conn: 0,
            live: Box::new(|| true),
            job: Box::new(move |rt| {
                job(rt);
                None
            }),
        });
    }

    /// Stop the daemon as `orch/daemon/stop` does; resolves when the stop is done.
    pub async fn stop_daemon(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.run(move |rt| {
            rt.begin_daemon_stop(Box::new(move |_| {
                Box::new(move || {
                    let _ = tx.send(());
                })
            }))
        });
        let _ = rx.await;
    }

    /// Register a connection.
    pub fn open_connection(&self, port: Arc<dyn ClientPort>) -> ConnId {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Input::ConnOpened(id, port));
        id
    }

    /// Forget a connection.
    pub fn close_connection(&self, conn: ConnId) {
        let _ = self.tx.send(Input::ConnClosed(conn));
    }
}

/// Where programs run: this machine's terminal backends (`pty`, `tmux`) and the remote hosts
/// (`[hosts.<name>]`) with their tmux.
pub struct Backends {
    /// By name.
    pub local: Vec<Arc<dyn TerminalBackend>>,
    /// By host.
    pub hosts: Vec<Arc<dyn crate::ports::RemoteHost>>,
}

/// The single owner of the workspace's state.
pub struct Runtime {
    /// Where everything lives.
    paths: WorkspacePaths,
    /// The effective configuration.
    config: Config,
    /// The domain state.
    state: State,
    /// The event log, and what of it is durable.
    log: Log,
    /// Terminal backends by name.
    backends: BTreeMap<&'static str, Arc<dyn TerminalBackend>>,
    /// Remote hosts by name (`[hosts.<name>]`), each with its tmux backend.
    hosts: BTreeMap<String, Arc<dyn crate::ports::RemoteHost>>,
    /// How ACP agents run, when this daemon runs them.
    conversations: Option<Arc<dyn ConversationBackend>>,
    /// Agents' git worktrees, when this daemon makes them.
    worktrees: Option<Arc<dyn Worktrees>>,
    /// Worktree work under way.
    trees: worktrees::TreeState,
    /// Live terminals and the last screens of ended ones.
    terminals: terminals::Terminals,
    /// Connections, subscriptions, offers, progress, followed output.
    clients: clients::Clients,
    /// Answers waiting for the batch's commit.
    held: Vec<Delivery>,
    /// Answers that wait for an agent to exit (`orch/agent/stop`), by agent id.
    waiters: HashMap<String, Vec<(Waiter<AgentRecord>, ConnId)>>,
    /// The input channel, for timers and tasks the runtime starts.
    tx: mpsc::UnboundedSender<Input>,
    /// The time of day for events.
    clock: Arc<dyn Clock>,
    /// Agents being stopped on request (their exit means `stopped`).
    stopping: HashSet<String>,
    /// Agent watch state (compiled patterns, restart counters, typing).
    watch: HashMap<String, watching::WatchState>,
    /// Task/gate/scheduler state that is not domain state.
    work: tasks::WorkState,
    /// When the daemon started.
    started: Instant,
    /// Set while `orch/daemon/stop` runs: who waits for it.
    daemon_stop: Option<Waiter<()>>,
    /// Tells the accept loop and `main` to finish.
    shutdown: watch::Sender<bool>,
    /// The loop ends after this batch.
    finished: bool,
    /// What `orch/status` says of the daemon that never changes, made once: paths as text
    /// (a lossy UTF-8 conversion) and the pid (a system call) were a tenth of answering it.
    identity: Identity,
}

/// See [`Runtime::identity`].
struct Identity {
    /// The workspace root.
    workspace: String,
    /// The event store's directory.
    store_path: String,
    /// This process.
    pid: u32,
}

/// The event log as the runtime writes it: events staged in the current batch, what is durable,
/// snapshots.
struct Log {
    /// The store.
    store: Box<dyn EventStore>,
    /// Events appended in this batch, not yet synced.
    staged: Vec<StoredEvent>,
    /// Seq of the last event made durable.
    committed_seq: u64,
    /// Seq of the last snapshot.
    last_snapshot: u64,
    /// Objects the state held at the last snapshot (or at start): the next one waits at least
    /// as many events ([`rules::snapshot_due`]).
    snapshot_objects: usize,
    /// A snapshot is due at the next commit by the spacing ([`rules::snapshot_due`]).
    want_snapshot: bool,
    /// A snapshot was asked for ([`Runtime::snapshot`]: retention, the daemon's stop) and is
    /// taken at the next commit whatever the spacing.
    snapshot_asked: bool,
    /// The snapshot thread and its copy of the state, from the first snapshot on
    /// ([`snapshots`]).
    shadow: Option<snapshots::Shadow>,
    /// The seq of the snapshot being written, while one is: one at a time, so that an older
    /// snapshot never lands after a newer one.
    snapshot_in_flight: Option<u64>,
    /// The next snapshot is written before the commit returns (the daemon's stop).
    snapshot_here: bool,
    /// How start-up loaded the state: the snapshot's seq (0: none) and the events replayed.
    loaded: (u64, u64),
}

impl Runtime {
    /// Open the state: snapshot plus the log's tail, then record the start and reconcile agents.
    /// Programs run on this machine's terminal backends and on the remote hosts' tmux.
    pub fn start(
        paths: WorkspacePaths,
        config: Config,
        store: Box<dyn EventStore>,
        Backends {
            local: backends,
            hosts,
        }: Backends,
        conversations: Option<Arc<dyn ConversationBackend>>,
        worktrees: Option<Arc<dyn Worktrees>>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<(
        Self,
        RuntimeHandle,
        mpsc::UnboundedReceiver<Input>,
        watch::Receiver<bool>,
    )> {
        let (mut state, snap_seq) = match store.load_snapshot()? {
            Some((seq, s)) => (s, seq),
            None => (State::default(), 0),
        };
        let snapshot_objects = state.objects();
        let mut since = snap_seq.max(state.last_seq);
        let mut replayed = 0u64;
        loop {
            let batch = store.read_since(since, 4096)?;
            let Some(last) = batch.last() else { break };
            since = last.seq;
            replayed += batch.len() as u64;
            for e in &batch {
                state.apply(e);
            }
        }
        if state.last_seq > store.last_seq() {
            anyhow::bail!(
                "the snapshot is at seq {} but the event log ends at {}: the store is damaged",
                state.last_seq,
                store.last_seq()
            );
        }
        if state.last_seq < store.last_seq() {
            anyhow::bail!(
                "event log ends at {} but only {} could be read",
                store.last_seq(),
                state.last_seq
            );
        }
        state.last_seq = store.last_seq();
        let (tx, rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let committed = state.last_seq;
        let identity = Identity {
            workspace: paths.root.display().to_string(),
            store_path: store.path().display().to_string(),
            pid: std::process::id(),
        };
        let mut rt = Runtime {
            identity,
            paths,
            config,
            state,
            log: Log {
                store,
                staged: Vec::new(),
                committed_seq: committed,
                last_snapshot: snap_seq,
                snapshot_objects,
                want_snapshot: false,
                snapshot_asked: false,
                shadow: None,
                snapshot_in_flight: None,
                snapshot_here: false,
                loaded: (snap_seq, replayed),
            },
            backends: backends.into_iter().map(|b| (b.name(), b)).collect(),
            hosts: hosts
                .into_iter()
                .map(|h| (h.name().to_owned(), h))
                .collect(),
            conversations,
            worktrees,
            trees: worktrees::TreeState::default(),
            terminals: terminals::Terminals::new(tx.clone()),
            clients: clients::Clients::default(),
            held: Vec::new(),
            waiters: HashMap::new(),
            tx: tx.clone(),
            clock,
            stopping: HashSet::new(),
            watch: HashMap::new(),
            work: tasks::WorkState::default(),
            started: Instant::now(),
            daemon_stop: None,
            shutdown,
            finished: false,
        };
        rt.emit(EventBody::DaemonStarted {
            pid: std::process::id(),
            version: crate::VERSION.into(),
            workspace: rt.paths.root.display().to_string(),
        });
        if rt.state.default_session().is_none() {
            rt.rule(|d| rules::sessions::create(d, DEFAULT_SESSION.into()))?;
        }
        rt.reconcile_agents();
        rt.reconcile_worktrees();
        rt.reconcile_tasks();
        rt.commit();
        // Hosts connect in the background; their agents are adopted when they do.
        let observer = rt.terminals.host_observer();
        for host in rt.hosts.values() {
            host.watch(observer.clone());
        }
        let handle = RuntimeHandle {
            tx,
            next_conn: Arc::new(AtomicU64::new(1)),
        };
        Ok((rt, handle, rx, shutdown_rx))
    }

    /// Run until `orch/daemon/stop` finishes.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_jobs = Instant::now();
        while !self.finished {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(i) => self.handle(i),
                    None => break,
                },
                _ = tick.tick() => {
                    self.tick();
                    if last_jobs.elapsed() >= Duration::from_secs(1) {
                        last_jobs = Instant::now();
                        self.run_due_jobs();
                    }
                }
            }
            // Group commit: take everything already waiting, then one sync for all of it.
            for _ in 0..512 {
                match rx.try_recv() {
                    Ok(i) => self.handle(i),
                    Err(_) => break,
                }
            }
            self.commit();
        }
        // The last replies (the stop's own among them) reach their clients before the process
        // ends: wait, briefly, for every connection's queue to drain.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !self.clients.drained() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Release terminals: pty programs die with us; tmux windows stay for the next daemon.
        self.terminals.clear();
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Call(call) => {
                if !(call.live)() {
                    return; // cancelled before it was applied: do not act on it
                }
                if let Some(delivery) = (call.job)(self) {
                    self.held.push(delivery);
                }
            }
            Input::ConnOpened(id, port) => self.clients.open(id, port),
            Input::ConnClosed(id) => {
                for (terminal, sub) in self.clients.close(id) {
                    if let Some(t) = self.terminals.get(&terminal) {
                        t.unsubscribe(&sub);
                    }
                }
                // Nothing may keep a closed connection's answers alive.
                for waiting in self.waiters.values_mut() {
                    waiting.retain(|(_, c)| *c != id);
                }
            }
            Input::Output(terminal) => self.on_output(&terminal),
            Input::Exited(terminal, code) => self.on_exit(&terminal, code, None),
            Input::Lost(terminal, why) => self.on_exit(&terminal, None, Some(why)),
            Input::Said(terminal, said) => self.on_said(&terminal, said),
            Input::Timer(t) => self.on_timer(t),
            Input::GateDone(outcome) => self.on_gate_done(outcome),
            Input::Host(name, status) => self.on_host(&name, status),
            // Its outcome was sent before this: taken in now, unless a commit took it already
            // (and another snapshot may be on its way: never wait for that one here).
            Input::Snapshotted => self.snapshot_written(false),
        }
    }

    /// Apply a rule: it decides from the state, records events (applied now, durable at the
    /// batch's commit like every other) and asks for effects, which run here. An agent a rule
    /// made idle gets its assigned task.
    pub fn rule<T>(
        &mut self,
        f: impl FnOnce(&mut Draft) -> Result<T, Refusal>,
    ) -> Result<T, OpError> {
        let now = self.clock.now_rfc3339();
        let mut draft = Draft::new(&mut self.state, &now);
        let result = f(&mut draft);
        let (events, effects) = (draft.events, draft.effects);
        // Events a refused rule recorded before refusing are kept: the state has them.
        let idle: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::AgentStateChanged {
                    id,
                    state: crate::core::agent::AgentState::Idle,
                    ..
                } => Some(id.clone()),
                _ => None,
            })
            .collect();
        for e in events {
            tracing::debug!(
                seq = e.seq,
                kind = e.body.kind(),
                subject = e.body.subject(),
                "event"
            );
            self.log.staged.push(e);
        }
        for e in effects {
            self.run_effect(e);
        }
        for agent in idle {
            self.agent_became_idle(&agent);
            self.count_changes(&agent);
        }
        result.map_err(OpError::from)
    }

    /// Carry out what a rule asked for.
    fn run_effect(&mut self, e: Effect) {
        match e {
            Effect::Dispatch { task } => self.try_dispatch(&task),
            Effect::Type { agent, text } => {
                if let Err(e) = self.type_into(&agent, &text, true, None) {
                    tracing::warn!(agent, "dispatch failed: {e}");
                }
            }
            Effect::Keys { agent, keys } => self.answer_question(&agent, &keys),
            Effect::Permit {
                agent,
                request,
                option_id,
                choice,
            } => self.permit(&agent, request, &option_id, &choice),
            Effect::Land {
                agent,
                strategy,
                task,
            } => {
                if let Err(e) = self.merge_agent(&agent, strategy, None, None) {
                    tracing::warn!(agent, task, "cannot land the done task's work: {e}");
                    self.warn_clients(&format!(
                        "task {task} is done but its work did not land: {e}"
                    ));
                }
            }
            Effect::Discard { agent } => self.discard_decided(&agent),
            Effect::Retire { agent } => self.retire(&agent),
            Effect::RunGate { task, index } => self.run_gate(&task, index),
            Effect::KillGate { task } => self.work.kill_gate(&task),
            Effect::KillOrphanedGate {
                task,
                pgid,
                program,
            } => tasks::end_orphaned_gate(&task, pgid, &program),
            Effect::RestartAfter {
                agent,
                terminal,
                delay_ms,
            } => self.after(
                Duration::from_millis(delay_ms),
                Timer::Restart { agent, terminal },
            ),
            Effect::Stop { agent } => {
                if let Err(e) = self.stop_agent(&agent, false) {
                    tracing::warn!(agent, "cannot stop: {e}");
                }
            }
        }
    }

    /// Deliver `d` once the current batch is durable.
    pub fn hold(&mut self, d: Delivery) {
        self.held.push(d);
    }

    /// Schedule `timer` after `delay`.
    pub fn after(&self, delay: Duration, timer: Timer) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Input::Timer(timer));
        });
    }

    fn on_timer(&mut self, t: Timer) {
        match t {
            Timer::Restart { agent, terminal } => self.restart_due(&agent, &terminal),
            Timer::StopGrace { agent } => self.stop_grace_over(&agent),
            Timer::DaemonStopGrace => self.finish_daemon_stop(true),
            Timer::Keys { terminal, keys } => {
                if let Some(t) = self.terminals.get(&terminal) {
                    let _ = t.write(keys.as_bytes());
                }
            }
        }
    }

    /// Record an observation's event (a terminal opened, a gate started): applied now;
    /// appended with the rest of its batch and made durable at the batch's commit (one sled
    /// batch, so a handler's events are durable together or not at all).
    pub fn emit(&mut self, body: EventBody) {
        let event = StoredEvent {
            seq: self.state.last_seq + 1,
            time: self.clock.now_rfc3339(),
            body,
        };
        tracing::debug!(
            seq = event.seq,
            kind = event.body.kind(),
            subject = event.body.subject(),
            "event"
        );
        self.state.apply(&event);
        self.log.staged.push(event);
    }

    /// Make the batch durable, then answer and fan out.
    pub fn commit(&mut self) {
        if !self.log.staged.is_empty() {
            if let Err(e) = self.log.store.append(&self.log.staged) {
                // The log is the source of truth: continuing without it would lose acknowledged work.
                tracing::error!("cannot append to the event log, stopping: {e}");
                eprintln!("orch: cannot append to the event log, stopping: {e}");
                std::process::exit(70);
            }
            if let Err(e) = self.log.store.sync() {
                tracing::error!("cannot sync the event log, stopping: {e}");
                eprintln!("orch: cannot sync the event log, stopping: {e}");
                std::process::exit(70);
            }
            self.log.committed_seq = self.state.last_seq;
        }
        for delivery in std::mem::take(&mut self.held) {
            delivery();
        }
        if !self.log.staged.is_empty() {
            let staged: Arc<[StoredEvent]> = std::mem::take(&mut self.log.staged).into();
            if let Some(shadow) = &self.log.shadow {
                if !shadow.events(&staged) {
                    self.shadow_gone();
                }
            }
            self.clients.publish(&staged);
            for e in staged.iter() {
                self.react(e);
            }
            // A snapshot written since counts from here, even if its report is still queued
            // behind a burst of requests.
            self.snapshot_written(false);
            if rules::snapshot_due(
                self.state.last_seq - self.log.last_snapshot,
                self.config.daemon.snapshot_every,
                self.log.snapshot_objects,
            ) {
                self.log.want_snapshot = true;
            }
        }
        // Offers to clients that initialized in this batch: only now are their decisions durable.
        for conn in self.clients.take_new_askable() {
            let pending: Vec<String> = self
                .state
                .decisions
                .values()
                .filter(|d| !d.resolved)
                .map(|d| d.id.clone())
                .collect();
            for d in pending {
                self.offer_decision(conn, &d);
            }
        }
        if self.log.want_snapshot || self.log.snapshot_asked {
            self.take_snapshot();
        }
    }

    /// Snapshot the state as of the last commit (a snapshot is never ahead of the durable log).
    /// The snapshot thread keeps a copy of the state fed with every committed batch and writes
    /// it: the loop copies the state only to start that thread, at the first snapshot. One
    /// snapshot at a time (while one is written, a due one waits for a later commit). The
    /// daemon's stop waits for its last one.
    fn take_snapshot(&mut self) {
        // The last one first: a newer snapshot never lands before an older one. Until its
        // outcome is known, the spacing counts from the one before: a due snapshot waits
        // (the daemon's stop waits for it instead).
        let in_flight = self.log.snapshot_in_flight.is_some();
        self.snapshot_written(self.log.snapshot_here);
        if self.log.snapshot_in_flight.is_some() {
            return;
        }
        // One that was being written has just landed: the spacing counts from it now (its
        // outcome was taken in above), so a snapshot due from the one before may not be due.
        if in_flight && !self.log.want_snapshot && !self.log.snapshot_asked {
            return;
        }
        let seq = self.log.committed_seq;
        if self.log.shadow.is_none() && std::mem::take(&mut self.log.snapshot_here) {
            // The daemon's stop, with no snapshot thread yet: not worth starting one.
            self.snapshot_in_place(seq);
            return;
        }
        let copying = Instant::now();
        if self.log.shadow.is_none() {
            // The shadow starts from the state at the last commit: with events staged since
            // (a reaction's), they would reach it twice. Rare; the next commit tries again.
            if self.state.last_seq != seq {
                return;
            }
            let tx = self.tx.clone();
            match snapshots::Shadow::start(
                self.state.clone(),
                self.log.store.snapshot_writer(),
                move || {
                    let _ = tx.send(Input::Snapshotted);
                },
            ) {
                Ok(shadow) => self.log.shadow = Some(shadow),
                Err(e) => {
                    tracing::warn!("cannot start the snapshot thread: {e}");
                    return;
                }
            }
        }
        let loop_ms = copying.elapsed().as_secs_f64() * 1e3;
        self.log.want_snapshot = false;
        self.log.snapshot_asked = false;
        if !self
            .log
            .shadow
            .as_ref()
            .is_some_and(|s| s.snapshot(seq, loop_ms))
        {
            self.shadow_gone();
            if std::mem::take(&mut self.log.snapshot_here) {
                self.snapshot_in_place(seq);
            }
            return;
        }
        self.log.snapshot_in_flight = Some(seq);
        if std::mem::take(&mut self.log.snapshot_here) {
            self.snapshot_written(true);
        }
    }

    /// Take in the outcome of the snapshot being written, if it is done (or, with `wait`,
    /// once it is).
    fn snapshot_written(&mut self, wait: bool) {
        let (Some(_), Some(shadow)) = (self.log.snapshot_in_flight, &self.log.shadow) else {
            return;
        };
        match shadow.landing(wait) {
            snapshots::Landing::Writing => {}
            snapshots::Landing::Landed(l) => {
                self.log.snapshot_in_flight = None;
                self.on_snapshotted(l.seq, l.objects, l.result);
                if l.stale {
                    // Its state is not the log's: the next snapshot starts from the loop's.
                    self.shadow_gone();
                }
            }
            snapshots::Landing::Gone => self.shadow_gone(),
        }
    }

    /// Write a snapshot of the loop's own state as of `seq`, here (the daemon's stop when the
    /// snapshot thread cannot write it), if the state is at `seq`.
    fn snapshot_in_place(&mut self, seq: u64) {
        if self.state.last_seq != seq {
            tracing::warn!(
                seq,
                "no snapshot at the stop: events were recorded after the last commit"
            );
            return;
        }
        let (objects, writing) = (self.state.objects(), Instant::now());
        let result = self.log.store.save_snapshot(seq, &self.state);
        tracing::info!(
            seq,
            objects,
            loop_ms = format!("{:.1}", writing.elapsed().as_secs_f64() * 1e3),
            ok = result.is_ok(),
            "snapshot written"
        );
        self.on_snapshotted(seq, objects, result);
    }

    /// The snapshot thread is gone (it panicked): the next snapshot starts another, from the
    /// state as it is then.
    fn shadow_gone(&mut self) {
        tracing::warn!("the snapshot thread ended; the next snapshot starts another");
        self.log.shadow = None;
        self.log.snapshot_in_flight = None;
    }

    /// A snapshot landed (or failed): the next one is due from here.
    fn on_snapshotted(
        &mut self,
        seq: u64,
        objects: usize,
        result: Result<(), crate::ports::StoreError>,
    ) {
        match result {
            Ok(()) => {
                self.log.last_snapshot = seq;
                self.log.snapshot_objects = objects;
                // Asked while it was written because the old one was still the last: ask
                // again only if one is due from this one.
                self.log.want_snapshot = rules::snapshot_due(
                    self.state.last_seq - self.log.last_snapshot,
                    self.config.daemon.snapshot_every,
                    self.log.snapshot_objects,
                );
            }
            Err(e) => tracing::warn!("snapshot failed: {e}"),
        }
    }

    /// Ask for a snapshot of the state at the next commit.
    pub fn snapshot(&mut self) {
        self.log.snapshot_asked = true;
    }

    /// A warning to every client's log, and the daemon's.
    pub(super) fn warn_clients(&self, message: &str) {
        tracing::warn!("{message}");
        self.clients.warn_all(&format!("orch: {message}"));
    }

    /// Reactions to committed events that reach outside (decision prompts, progress).
    fn react(&mut self, e: &StoredEvent) {
        if let EventBody::JobFailed { name, error } = &e.body {
            // Worth every client's log: something periodic keeps failing.
            self.clients
                .warn_all(&format!("orch: job {name} failed: {error}"));
        }
        if e.body.kind().starts_with("task.") {
            self.report_progress(e);
        }
        if let EventBody::DecisionRequested { decision } = &e.body {
            for conn in self.clients.askable() {
                self.offer_decision(conn, &decision.id);
            }
        }
    }

    /// Register an event subscription and replay what it asked for: the events after `since`
    /// up to the last durable one, then live ones, none missed, none twice.
    pub fn subscribe_events(
        &mut self,
        conn: ConnId,
        kinds: Vec<String>,
        subjects: Vec<String>,
        since: Option<u64>,
    ) -> Result<(String, u64), OpError> {
        if let Some(since) = since {
            self.check_since_available(since)?;
        }
        let upto = self.log.committed_seq;
        let store = &self.log.store;
        let id = self
            .clients
            .subscribe(conn, kinds, subjects, upto, |deliver| {
                let Some(mut from) = since else {
                    return Ok(());
                };
                while from < upto {
                    let batch = store
                        .read_since(from, 1024)
                        .map_err(|e| OpError::Internal(e.to_string()))?;
                    let Some(last) = batch.last() else { break };
                    from = last.seq;
                    for e in batch.iter().filter(|e| e.seq <= upto) {
                        deliver(e);
                    }
                }
                Ok(())
            })?;
        Ok((id, upto))
    }

    /// `orch/events/unsubscribe`.
    pub fn unsubscribe_events(&mut self, conn: ConnId, id: &str) -> Result<(), OpError> {
        if self.clients.unsubscribe(conn, id) {
            Ok(())
        } else {
            Err(OpError::NotFound {
                kind: "subscription",
                id: id.into(),
            })
        }
    }

    /// `orch/events/query`: durable events after `from` that match, at most `limit`; the seq to
    /// continue from when more may follow. At most 100,000 events are scanned per call, so a
    /// sparse filter continues through the returned seq rather than scanning the whole log.
    pub fn query_events(
        &self,
        mut from: u64,
        kinds: &[String],
        subjects: &[String],
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Option<u64>), OpError> {
        const SCAN: usize = 100_000;
        let (mut items, mut scanned) = (Vec::new(), 0);
        let upto = self.log.committed_seq;
        while items.len() < limit && scanned < SCAN && from < upto {
            let batch = self
                .log
                .store
                .read_since(from, 1024)
                .map_err(|e| OpError::Internal(e.to_string()))?;
            if batch.first().is_none_or(|e| e.seq > upto) {
                break; // nothing durable left to read (a batch can only move forward)
            }
            for e in batch {
                if e.seq > upto || items.len() == limit {
                    break;
                }
                from = e.seq;
                scanned += 1;
                if event_matches(kinds, subjects, &e) {
                    items.push(e);
                }
            }
        }
        let next = (from < upto && (items.len() == limit || scanned >= SCAN)).then_some(from);
        Ok((items, next))
    }

    /// Refuse a `since` older than the log still holds: "none missed" cannot be kept, and the
    /// client must know to fetch state afresh instead.
    pub fn check_since_available(&self, since: u64) -> Result<(), OpError> {
        let first = self
            .log
            .store
            .read_since(0, 1)
            .map_err(|e| OpError::Internal(e.to_string()))?;
        match first.first() {
            Some(e) if e.seq > since + 1 => Err(OpError::Conflict {
                kind: "events",
                id: since.to_string(),
                state: format!("compacted: the oldest event kept is {}", e.seq),
                what: "cannot replay from there; read the objects afresh, then follow from lastSeq"
                    .into(),
            }),
            _ => Ok(()),
        }
    }

    /// Start stopping the daemon: every agent first, then state flushed, then `done`.
    pub fn begin_daemon_stop(&mut self, done: Waiter<()>) {
        if self.daemon_stop.is_some() || self.finished {
            self.hold(done(Err(OpError::Conflict {
                kind: "daemon",
                id: "daemon".into(),
                state: "stopping".into(),
                what: "cannot stop again".into(),
            })));
            return;
        }
        self.daemon_stop = Some(done);
        let live: Vec<String> = self
            .state
            .agents
            .values()
            .filter(|a| a.state.is_live())
            .map(|a| a.id.clone())
            .collect();
        for id in &live {
            self.stopping.insert(id.clone());
            if let Some(t) = self
                .state
                .agents
                .get(id)
                .and_then(|a| self.terminals.get(&a.terminal_id))
            {
                let _ = t.signal(false);
            }
        }
        self.after(
            Duration::from_millis(self.config.daemon.stop_grace_ms),
            Timer::DaemonStopGrace,
        );
        self.finish_daemon_stop(false);
    }

    /// Whether the daemon is stopping (requests other than status are refused).
    pub fn is_stopping(&self) -> bool {
        self.daemon_stop.is_some() || self.finished
    }

    /// Finish the daemon stop once no agent runs (or `force` after the grace period).
    pub fn finish_daemon_stop(&mut self, force: bool) {
        if self.daemon_stop.is_none() {
            return;
        }
        let live: Vec<String> = self
            .state
            .agents
            .values()
            .filter(|a| a.state.is_live())
            .map(|a| a.id.clone())
            .collect();
        if !live.is_empty() && !force {
            return;
        }
        for id in live {
            self.kill_on_daemon_stop(&id);
        }
        self.work.interrupt_gates();
        // Whoever waited for an agent to stop gets it now, stopped.
        for (agent, waiting) in std::mem::take(&mut self.waiters) {
            if let Some(a) = self.state.agents.get(&agent).cloned() {
                for (waiter, _) in waiting {
                    self.held.push(waiter(Ok(a.clone())));
                }
            }
        }
        self.emit(EventBody::DaemonStopping {
            pid: std::process::id(),
        });
        self.snapshot();
        // The last snapshot is on disk before the daemon says it stopped: this commit writes
        // it and waits for it, the next one answers.
        self.log.snapshot_here = true;
        self.commit();
        let done = self.daemon_stop.take().expect("checked above");
        self.held.push(done(Ok(())));
        self.commit();
        let _ = self.shutdown.send(true);
        self.finished = true;
    }

    /// `orch/config/reload`: re-read `orch.toml`; on an error the running configuration stays.
    pub fn reload_config(&mut self) -> Result<(), OpError> {
        let config = Config::load(&self.paths.root).map_err(|e| OpError::Invalid {
            field: e.key.clone(),
            message: format!("{}:{}: {}", e.file, e.line, e.message),
        })?;
        let path = config
            .path
            .as_ref()
            .map_or("(defaults)".to_string(), |p| p.display().to_string());
        self.config = config;
        self.emit(EventBody::ConfigReloaded { path });
        Ok(())
    }

    /// Uptime.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A fresh id for `prefix`.
    pub fn new_id(&self, prefix: &str) -> String {
        self.state.ids().next(prefix)
    }

    /// The domain state, to read.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where everything lives.
    pub fn paths(&self) -> &WorkspacePaths {
        &self.paths
    }

    /// What `orch/status` reports beside the state.
    pub fn status(&self) -> Status {
        Status {
            uptime: self.uptime(),
            clients: self.clients.count(),
            backends: self
                .backends
                .values()
                .map(|b| (b.name(), b.probe()))
                .collect(),
            workspace: self.identity.workspace.clone(),
            pid: self.identity.pid,
            store_path: self.identity.store_path.clone(),
            store_bytes: self.log.store.size_bytes(),
            loaded: self.log.loaded,
            hosts: self
                .hosts
                .iter()
                .map(|(name, h)| (name.clone(), h.status()))
                .collect(),
        }
    }

    /// The backends this daemon offers, by name.
    pub fn backend_names(&self) -> Vec<&'static str> {
        self.backends.keys().copied().collect()
    }

    /// What a client declared in `initialize`; a client whose workspace is another is told so.
    pub fn client_initialized(
        &mut self,
        conn: ConnId,
        show_message: bool,
        progress: bool,
        workspace: Option<std::path::PathBuf>,
    ) {
        self.clients.set_capabilities(conn, show_message, progress);
        if let Some(asked) = workspace {
            if !asked.starts_with(&self.paths.root) {
                let message = format!(
                    "orch: this daemon serves {}, not {}; start `orch lsp` in that workspace for its agents",
                    self.paths.root.display(),
                    asked.display()
                );
                self.clients.warn(conn, &message);
            }
        }
    }
}

/// What `orch/status` reports of the daemon itself.
pub struct Status {
    /// Since the daemon started.
    pub uptime: Duration,
    /// Open connections.
    pub clients: usize,
    /// Each backend and whether it can be used.
    pub backends: Vec<(&'static str, crate::ports::BackendProbe)>,
    /// The workspace, as text.
    pub workspace: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The store's location, as text.
    pub store_path: String,
    /// The store's size.
    pub store_bytes: u64,
    /// The snapshot start-up loaded and the events it replayed.
    pub loaded: (u64, u64),
    /// Each remote host and its connection.
    pub hosts: Vec<(String, crate::ports::HostStatus)>,
}
