//! The runtime: one task that owns [`State`] and applies every command in order.
//!
//! Inputs (requests from connections, terminal activity, timers, gate results) arrive on one
//! channel as the closed enum [`Input`]. The loop handles everything that is ready, then commits
//! the batch: one store sync for all the batch's events (group commit), then the held replies,
//! then the events to subscribers. So a state change is durable before it is acknowledged or
//! seen, and a burst of commands costs one device flush. Side effects go through the ports and
//! come back as inputs. No locks around domain state: only this task touches it.
//!
//! - [`agents`]: spawn, watch (busy/idle/waiting), stop, restart, exits.
//! - [`sessions`]: named groups of agents.
//! - [`tasks`]: tasks, gates, decisions and the scheduler's jobs.
//! - [`clock`]: RFC 3339 times.

pub mod agents;
pub mod clock;
pub mod screen;
pub mod sessions;
pub mod tasks;
pub mod watching;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use editor_protocol::jsonrpc::{Id, Message, Response, ResponseError};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::config::Config;
use crate::core::event::{EventBody, StoredEvent};
use crate::core::state::{State, DEFAULT_SESSION};
use crate::core::task::SessionRecord;
use crate::fanout::OutputSubscriber;
use crate::paths::WorkspacePaths;
use crate::ports::{EventStore, Terminal, TerminalBackend, TerminalObserver};
use crate::transport::conn::Outbound;

/// A connection's id, unique for the daemon's life.
pub type ConnId = u64;
/// Requests of one connection awaiting their reply, shared by its reader (for cancellation) and
/// the runtime (which answers).
pub type Inflight = Arc<Mutex<HashSet<Id>>>;

/// Where a request's result goes.
pub enum Reply {
    /// An in-process caller waiting on a channel.
    Channel(oneshot::Sender<Result<Value, ResponseError>>),
    /// Straight into the connection's outbound queue, unless the request was cancelled
    /// meanwhile: no task and no channel per request on the hot path.
    Conn {
        /// The connection's sending half.
        out: Outbound,
        /// The request's id.
        id: Id,
        /// The connection's requests in flight; answering removes the id.
        inflight: Inflight,
    },
}

impl Reply {
    /// Whether the client cancelled the request before the runtime took it up.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Reply::Channel(tx) => tx.is_closed(),
            Reply::Conn { id, inflight, .. } => !inflight.lock().unwrap().contains(id),
        }
    }

    /// Deliver the result; false if nobody takes it (the caller is gone, or the request was
    /// cancelled and answered already).
    pub fn send(self, result: Result<Value, ResponseError>) -> bool {
        match self {
            Reply::Channel(tx) => tx.send(result).is_ok(),
            Reply::Conn { out, id, inflight } => {
                let open = inflight.lock().unwrap().remove(&id);
                open && out.send(&Message::Response(Response {
                    id: Some(id),
                    outcome: result,
                }))
            }
        }
    }
}

/// Everything the runtime reacts to.
pub enum Input {
    /// A request (or an orch/* notification) from a connection.
    Request {
        /// Which connection.
        conn: ConnId,
        /// Method name.
        method: String,
        /// Raw params.
        params: Value,
        /// Where the result goes.
        reply: Reply,
    },
    /// A connection opened.
    ConnOpened(ConnId, Outbound),
    /// A connection closed.
    ConnClosed(ConnId),
    /// A terminal printed after being quiet.
    Output(String),
    /// A terminal's program ended.
    Exited(String, Option<i32>),
    /// A terminal was lost with its backend (why).
    Lost(String, String),
    /// A timer fired.
    Timer(Timer),
    /// A gate run finished.
    GateDone(tasks::GateOutcome),
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
    /// Hand a request to the runtime; requests are applied in the order submitted.
    pub fn submit(
        &self,
        conn: ConnId,
        method: String,
        params: Value,
    ) -> oneshot::Receiver<Result<Value, ResponseError>> {
        let (reply, rx) = oneshot::channel();
        self.submit_reply(conn, method, params, Reply::Channel(reply));
        rx
    }

    /// Hand a request to the runtime with its reply's destination.
    pub fn submit_reply(&self, conn: ConnId, method: String, params: Value, reply: Reply) {
        let _ = self.tx.send(Input::Request {
            conn,
            method,
            params,
            reply,
        });
    }

    /// Register a connection.
    pub fn open_connection(&self, out: Outbound) -> ConnId {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Input::ConnOpened(id, out));
        id
    }

    /// Forget a connection.
    pub fn close_connection(&self, conn: ConnId) {
        let _ = self.tx.send(Input::ConnClosed(conn));
    }
}

/// Output-activity bookkeeping shared with terminal reader threads.
#[derive(Default)]
pub struct Activity {
    /// Per terminal: last output time, and whether an `Output` input was posted since the
    /// runtime last settled the terminal (so a busy terminal posts once, not per read).
    map: Mutex<HashMap<String, (Instant, bool)>>,
}

impl Activity {
    /// Last output time of a terminal.
    pub fn last(&self, terminal: &str) -> Option<Instant> {
        self.map.lock().unwrap().get(terminal).map(|e| e.0)
    }

    /// The terminal ended: forget it.
    pub fn forget(&self, terminal: &str) {
        self.map.lock().unwrap().remove(terminal);
    }

    /// The runtime settled the terminal (idle or waiting): the next output posts again.
    pub fn rearm(&self, terminal: &str) {
        if let Some(e) = self.map.lock().unwrap().get_mut(terminal) {
            e.1 = false;
        }
    }
}

/// The [`TerminalObserver`] the runtime gives backends: posts inputs, never blocks.
pub struct Observer {
    /// The runtime's input channel.
    tx: mpsc::UnboundedSender<Input>,
    /// Shared activity map.
    activity: Arc<Activity>,
}

impl TerminalObserver for Observer {
    fn output(&self, id: &str) {
        let mut map = self.activity.map.lock().unwrap();
        let now = Instant::now();
        let entry = map.entry(id.to_string()).or_insert((now, false));
        entry.0 = now;
        if !entry.1 {
            entry.1 = true;
            let _ = self.tx.send(Input::Output(id.to_string()));
        }
    }

    fn exited(&self, id: &str, exit_code: Option<i32>) {
        let _ = self.tx.send(Input::Exited(id.to_string(), exit_code));
    }

    fn lost(&self, id: &str, why: &str) {
        let _ = self.tx.send(Input::Lost(id.to_string(), why.to_string()));
    }
}

/// What the runtime knows about a connection.
pub struct Conn {
    /// Its sending half.
    pub out: Outbound,
    /// The client declared `window.showMessage` support.
    pub show_message: bool,
    /// The client declared `window.workDoneProgress` support.
    pub work_done_progress: bool,
    /// Terminal output subscriptions: terminal id -> (subscriber, pump task).
    pub terminal_subs: HashMap<String, (Arc<OutputSubscriber>, AbortHandle)>,
    /// Decisions already offered to this client (each is offered once).
    pub offered: HashSet<String>,
}

/// An event subscription.
pub struct EventSub {
    /// Owning connection.
    pub conn: ConnId,
    /// Kind prefixes (empty: all).
    pub kinds: Vec<String>,
    /// Subjects (empty: all).
    pub subjects: Vec<String>,
    /// Events up to this seq were delivered (by replay); live delivery starts after it.
    pub delivered: u64,
}

impl EventSub {
    /// Whether the event passes the filters.
    pub fn matches(&self, e: &StoredEvent) -> bool {
        event_matches(&self.kinds, &self.subjects, e)
    }
}

/// Filter shared by subscriptions and queries.
pub fn event_matches(kinds: &[String], subjects: &[String], e: &StoredEvent) -> bool {
    (kinds.is_empty() || kinds.iter().any(|k| e.body.kind().starts_with(k.as_str())))
        && (subjects.is_empty() || subjects.iter().any(|s| s == e.body.subject()))
}

/// The single owner of the workspace's state.
pub struct Runtime {
    /// Where everything lives.
    pub paths: WorkspacePaths,
    /// The effective configuration.
    pub config: Config,
    /// The domain state.
    pub state: State,
    /// The event log.
    pub store: Box<dyn EventStore>,
    /// Terminal backends by name.
    pub backends: BTreeMap<&'static str, Arc<dyn TerminalBackend>>,
    /// Live terminal handles by terminal id.
    pub terminals: HashMap<String, Arc<dyn Terminal>>,
    /// Connections.
    pub conns: HashMap<ConnId, Conn>,
    /// Event subscriptions by id.
    pub subs: HashMap<String, EventSub>,
    /// Subscription ids.
    next_sub: u64,
    /// Events appended in this batch, not yet synced.
    staged: Vec<StoredEvent>,
    /// Seq of the last event made durable.
    pub committed_seq: u64,
    /// Replies waiting for the batch's sync.
    held: Vec<(Reply, Result<Value, ResponseError>)>,
    /// Replies that wait for something later (an agent to exit), by agent id.
    pub waiters: HashMap<String, Vec<(Reply, ConnId)>>,
    /// The input channel, for timers and tasks the runtime starts.
    pub tx: mpsc::UnboundedSender<Input>,
    /// Output activity shared with backends.
    pub activity: Arc<Activity>,
    /// The observer handed to backends.
    pub observer: Arc<Observer>,
    /// Agents being stopped on request (their exit means `stopped`).
    pub stopping: HashSet<String>,
    /// Agent watch state (compiled patterns, restart counters).
    pub watch: HashMap<String, watching::WatchState>,
    /// Task/gate/scheduler state that is not domain state.
    pub work: tasks::WorkState,
    /// When the daemon started.
    pub started: Instant,
    /// Seq of the last snapshot.
    last_snapshot: u64,
    /// Set while `orch/daemon/stop` runs: its reply.
    pub daemon_stop: Option<Reply>,
    /// Tells the accept loop and `main` to finish.
    pub shutdown: watch::Sender<bool>,
    /// The loop ends after this batch.
    finished: bool,
    /// Last screens of ended terminals whose resources were released, bounded.
    pub final_screens: HashMap<String, crate::ports::ScreenSnapshot>,
    /// Release order of `final_screens`, oldest first.
    pub final_order: std::collections::VecDeque<String>,
    /// A snapshot is due at the next commit.
    want_snapshot: bool,
    /// Connections that initialized in this batch and get pending decisions offered after it.
    pub offer_after_commit: Vec<ConnId>,
    /// How start-up loaded the state: the snapshot's seq (0: none) and the events replayed.
    pub loaded: (u64, u64),
}

impl Runtime {
    /// Open the state: snapshot plus the log's tail, then record the start and reconcile agents.
    pub fn start(
        paths: WorkspacePaths,
        config: Config,
        store: Box<dyn EventStore>,
        backends: Vec<Arc<dyn TerminalBackend>>,
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
        let activity = Arc::new(Activity::default());
        let observer = Arc::new(Observer {
            tx: tx.clone(),
            activity: activity.clone(),
        });
        let committed = state.last_seq;
        let mut rt = Runtime {
            paths,
            config,
            state,
            store,
            backends: backends.into_iter().map(|b| (b.name(), b)).collect(),
            terminals: HashMap::new(),
            conns: HashMap::new(),
            subs: HashMap::new(),
            next_sub: 1,
            staged: Vec::new(),
            committed_seq: committed,
            held: Vec::new(),
            waiters: HashMap::new(),
            tx: tx.clone(),
            activity,
            observer,
            stopping: HashSet::new(),
            watch: HashMap::new(),
            work: tasks::WorkState::default(),
            started: Instant::now(),
            last_snapshot: snap_seq,
            daemon_stop: None,
            shutdown,
            finished: false,
            final_screens: HashMap::new(),
            final_order: std::collections::VecDeque::new(),
            want_snapshot: false,
            offer_after_commit: Vec::new(),
            loaded: (snap_seq, replayed),
        };
        rt.emit(EventBody::DaemonStarted {
            pid: std::process::id(),
            version: crate::VERSION.into(),
            workspace: rt.paths.root.display().to_string(),
        });
        if rt.state.default_session().is_none() {
            let id = rt.state.ids().next(crate::core::ids::SESSION);
            let now = clock::now_rfc3339();
            rt.emit(EventBody::SessionCreated {
                session: SessionRecord {
                    id,
                    name: DEFAULT_SESSION.into(),
                    closed: false,
                    created_at: now,
                    closed_at: None,
                },
            });
        }
        rt.reconcile_agents();
        rt.reconcile_tasks();
        rt.commit();
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
        while Instant::now() < deadline && !self.conns.values().all(|c| c.out.drained()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Release terminals: pty programs die with us; tmux windows stay for the next daemon.
        self.terminals.clear();
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Request {
                conn,
                method,
                params,
                reply,
            } => {
                if reply.is_cancelled() {
                    return; // answered -32800 by the connection already: do not act on it
                }
                if (self.daemon_stop.is_some() || self.finished) && method != "orch/status" {
                    let e = ResponseError::new(
                        editor_protocol::errors::CONFLICT,
                        "daemon",
                        format!("{method}: the daemon is stopping"),
                    )
                    .with("state", "stopping");
                    let _ = reply.send(Err(e));
                    return;
                }
                let mut slot = Some(reply);
                let result = crate::rpc::dispatch(self, conn, &method, params, &mut slot);
                if let Some(reply) = slot {
                    self.held.push((reply, result));
                }
            }
            Input::ConnOpened(id, out) => {
                self.conns.insert(
                    id,
                    Conn {
                        out,
                        show_message: false,
                        work_done_progress: false,
                        terminal_subs: HashMap::new(),
                        offered: HashSet::new(),
                    },
                );
            }
            Input::ConnClosed(id) => {
                if let Some(conn) = self.conns.remove(&id) {
                    for (tid, (sub, pump)) in conn.terminal_subs {
                        pump.abort();
                        if let Some(t) = self.terminals.get(&tid) {
                            t.unsubscribe(&sub);
                        }
                    }
                }
                self.subs.retain(|_, s| s.conn != id);
                // Nothing may keep a closed connection's sending half alive.
                for waiting in self.waiters.values_mut() {
                    waiting.retain(|(_, c)| *c != id);
                }
                self.work.progress.retain(|(c, _), _| *c != id);
            }
            Input::Output(terminal) => self.on_output(&terminal),
            Input::Exited(terminal, code) => self.on_exit(&terminal, code, None),
            Input::Lost(terminal, why) => self.on_exit(&terminal, None, Some(why)),
            Input::Timer(t) => self.on_timer(t),
            Input::GateDone(outcome) => self.on_gate_done(outcome),
        }
    }

    /// Answer `reply` once the current batch is durable.
    pub fn hold(&mut self, reply: Reply, result: Result<Value, ResponseError>) {
        self.held.push((reply, result));
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

    /// Record an event: applied now; appended with the rest of its batch and made durable at the
    /// batch's commit (one sled batch, so a handler's events are durable together or not at all).
    pub fn emit(&mut self, body: EventBody) {
        let event = StoredEvent {
            seq: self.state.last_seq + 1,
            time: clock::now_rfc3339(),
            body,
        };
        tracing::debug!(
            seq = event.seq,
            kind = event.body.kind(),
            subject = event.body.subject(),
            "event"
        );
        self.state.apply(&event);
        self.staged.push(event);
    }

    /// Make the batch durable, then answer and fan out.
    pub fn commit(&mut self) {
        if !self.staged.is_empty() {
            if let Err(e) = self.store.append(&self.staged) {
                // The log is the source of truth: continuing without it would lose acknowledged work.
                tracing::error!("cannot append to the event log, stopping: {e}");
                eprintln!("orch: cannot append to the event log, stopping: {e}");
                std::process::exit(70);
            }
            if let Err(e) = self.store.sync() {
                tracing::error!("cannot sync the event log, stopping: {e}");
                eprintln!("orch: cannot sync the event log, stopping: {e}");
                std::process::exit(70);
            }
            self.committed_seq = self.state.last_seq;
        }
        for (reply, result) in self.held.drain(..) {
            let _ = reply.send(result);
        }
        if !self.staged.is_empty() {
            let staged = std::mem::take(&mut self.staged);
            for (sub_id, sub) in &mut self.subs {
                let Some(conn) = self.conns.get(&sub.conn) else {
                    continue;
                };
                let upto = sub.delivered;
                for e in staged.iter().filter(|e| e.seq > upto) {
                    if sub.matches(e) {
                        crate::rpc::notify::event(&conn.out, sub_id, e);
                    }
                    sub.delivered = e.seq;
                }
            }
            for e in &staged {
                self.react(e);
            }
            if self.state.last_seq - self.last_snapshot >= self.config.daemon.snapshot_every {
                self.want_snapshot = true;
            }
        }
        // Offers to clients that initialized in this batch: only now are their decisions durable.
        for conn in std::mem::take(&mut self.offer_after_commit) {
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
        if std::mem::take(&mut self.want_snapshot) {
            // Only here is the state exactly the durable log's: a snapshot is never ahead of it.
            match self.store.save_snapshot(self.state.last_seq, &self.state) {
                Ok(()) => self.last_snapshot = self.state.last_seq,
                Err(e) => tracing::warn!("snapshot failed: {e}"),
            }
        }
    }

    /// Ask for a snapshot of the state at the next commit.
    pub fn snapshot(&mut self) {
        self.want_snapshot = true;
    }

    /// Reactions to committed events that reach outside (decision prompts, progress).
    fn react(&mut self, e: &StoredEvent) {
        if let EventBody::JobFailed { name, error } = &e.body {
            // Worth every client's log: something periodic keeps failing.
            let message = format!("orch: job {name} failed: {error}");
            for c in self.conns.values() {
                crate::rpc::notify::warning(&c.out, &message);
            }
        }
        if e.body.kind().starts_with("task.") {
            self.report_progress(e);
        }
        if let EventBody::DecisionRequested { decision } = &e.body {
            let conns: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.show_message)
                .map(|(id, _)| *id)
                .collect();
            for conn in conns {
                self.offer_decision(conn, &decision.id);
            }
        }
    }

    /// Register an event subscription and replay what it asked for.
    pub fn subscribe_events(
        &mut self,
        conn: ConnId,
        kinds: Vec<String>,
        subjects: Vec<String>,
        since: Option<u64>,
    ) -> Result<(String, u64), OpError> {
        const MAX_SUBS_PER_CONN: usize = 64;
        if self.subs.values().filter(|s| s.conn == conn).count() >= MAX_SUBS_PER_CONN {
            return Err(OpError::Limit {
                limit: "subscriptions per connection",
                max: MAX_SUBS_PER_CONN as u64,
            });
        }
        let id = format!("sub-{}", self.next_sub);
        self.next_sub += 1;
        if let Some(since) = since {
            self.check_since_available(since)?;
        }
        let upto = self.committed_seq;
        let sub = EventSub {
            conn,
            kinds,
            subjects,
            delivered: upto,
        };
        if let (Some(since), Some(c)) = (since, self.conns.get(&conn)) {
            let mut from = since;
            while from < upto {
                let batch = self
                    .store
                    .read_since(from, 1024)
                    .map_err(|e| OpError::Internal(e.to_string()))?;
                let Some(last) = batch.last() else { break };
                from = last.seq;
                for e in batch.iter().filter(|e| e.seq <= upto) {
                    if sub.matches(e) {
                        crate::rpc::notify::event(&c.out, &id, e);
                    }
                }
            }
        }
        self.subs.insert(id.clone(), sub);
        Ok((id, upto))
    }

    /// Refuse a `since` older than the log still holds: "none missed" cannot be kept, and the
    /// client must know to fetch state afresh instead.
    pub fn check_since_available(&self, since: u64) -> Result<(), OpError> {
        let first = self
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

    /// Start stopping the daemon: every agent first, then state flushed, then the reply.
    pub fn begin_daemon_stop(&mut self, reply: Reply) {
        self.daemon_stop = Some(reply);
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
            if let Some(a) = self.state.agents.get(&agent) {
                let a =
                    serde_json::to_value(crate::rpc::convert::agent(a)).expect("agent serializes");
                for (reply, _) in waiting {
                    self.held.push((reply, Ok(a.clone())));
                }
            }
        }
        self.emit(EventBody::DaemonStopping {
            pid: std::process::id(),
        });
        self.snapshot();
        let reply = self.daemon_stop.take().expect("checked above");
        self.held.push((reply, Ok(json!({}))));
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
}
