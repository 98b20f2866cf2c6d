//! The runtime's clients: connections with what they declared, their event subscriptions, the
//! decisions offered to each, their task progress and the terminals whose output they follow.
//!
//! Owns all of it; the rest of the runtime asks through these methods. It speaks to a client
//! only through its [`ClientPort`], in domain terms: what that becomes on the wire is rpc's
//! business.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{ConnId, OpError};
use crate::core::event::StoredEvent;
use crate::core::task::DecisionRecord;
use crate::fanout::OutputSubscriber;
use crate::ports::{ClientPort, FollowHandle, Progress};

/// Most event subscriptions one connection may hold.
const MAX_SUBS_PER_CONN: usize = 64;
/// Most terminals one connection may follow.
pub const MAX_FOLLOWED_PER_CONN: usize = 64;
/// Events a replay hands to a connection at once.
const REPLAY_CHUNK: usize = 256;

/// One connected client.
struct Client {
    /// How to reach it.
    port: Arc<dyn ClientPort>,
    /// It declared `window.showMessage` support: decisions are offered to it.
    show_message: bool,
    /// It declared `window.workDoneProgress` support: task progress goes to it.
    work_done_progress: bool,
    /// Terminals whose output it follows, with what stops the delivery.
    followed: HashMap<String, (Arc<OutputSubscriber>, FollowHandle)>,
    /// Decisions already offered to it (each is offered once).
    offered: HashSet<String>,
}

/// An event subscription.
struct EventSub {
    /// Owning connection.
    conn: ConnId,
    /// Kind prefixes (empty: all).
    kinds: Vec<String>,
    /// Subjects (empty: all).
    subjects: Vec<String>,
    /// Events up to this seq were delivered (by replay); live delivery starts after it.
    delivered: u64,
}

/// Every client of the daemon.
#[derive(Default)]
pub struct Clients {
    conns: HashMap<ConnId, Client>,
    subs: HashMap<String, EventSub>,
    next_sub: u64,
    /// Connections that initialized in this batch: pending decisions are offered to them after
    /// the batch's commit, once those decisions are durable.
    offer_after_commit: Vec<ConnId>,
    /// (connection, task) pairs whose progress began.
    progressing: HashSet<(ConnId, String)>,
    /// Connections that followed a terminal now out of reach (its host is unreachable), by
    /// terminal: they follow it again when it is back.
    parked: HashMap<String, Vec<ConnId>>,
}

/// Filter shared by subscriptions and queries.
pub fn event_matches(kinds: &[String], subjects: &[String], e: &StoredEvent) -> bool {
    (kinds.is_empty() || kinds.iter().any(|k| e.body.kind().starts_with(k.as_str())))
        && (subjects.is_empty() || subjects.iter().any(|s| s == e.body.subject()))
}

impl Clients {
    /// A connection opened.
    pub fn open(&mut self, conn: ConnId, port: Arc<dyn ClientPort>) {
        self.conns.insert(
            conn,
            Client {
                port,
                show_message: false,
                work_done_progress: false,
                followed: HashMap::new(),
                offered: HashSet::new(),
            },
        );
    }

    /// A connection closed: everything of it goes. Returns the terminal subscriptions to drop
    /// from their terminals.
    pub fn close(&mut self, conn: ConnId) -> Vec<(String, Arc<OutputSubscriber>)> {
        self.subs.retain(|_, s| s.conn != conn);
        self.progressing.retain(|(c, _)| *c != conn);
        self.offer_after_commit.retain(|c| *c != conn);
        let Some(client) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        client
            .followed
            .into_iter()
            .map(|(terminal, (sub, follow))| {
                follow.stop();
                (terminal, sub)
            })
            .collect()
    }

    /// What a connection declared in `initialize`.
    pub fn set_capabilities(&mut self, conn: ConnId, show_message: bool, progress: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.show_message = show_message;
            c.work_done_progress = progress;
            if show_message {
                self.offer_after_commit.push(conn);
            }
        }
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// Whether every connection's queue was written out.
    pub fn drained(&self) -> bool {
        self.conns.values().all(|c| c.port.drained())
    }

    /// Who is on connection `conn`.
    pub fn peer(&self, conn: ConnId) -> Option<String> {
        self.conns.get(&conn).map(|c| c.port.peer())
    }

    /// A warning to one client's log.
    pub fn warn(&self, conn: ConnId, message: &str) {
        if let Some(c) = self.conns.get(&conn) {
            c.port.warn(message);
        }
    }

    /// A warning to every client's log.
    pub fn warn_all(&self, message: &str) {
        for c in self.conns.values() {
            c.port.warn(message);
        }
    }

    /// Register an event subscription that has had events up to `delivered`; `replay` sends it
    /// older events first. Returns its id.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        kinds: Vec<String>,
        subjects: Vec<String>,
        delivered: u64,
        replay: impl FnOnce(&mut dyn FnMut(&StoredEvent)) -> Result<(), OpError>,
    ) -> Result<String, OpError> {
        let Some(client) = self.conns.get(&conn) else {
            return Err(OpError::Internal("the connection is gone".into()));
        };
        if self.subs.values().filter(|s| s.conn == conn).count() >= MAX_SUBS_PER_CONN {
            return Err(OpError::Limit {
                limit: "subscriptions per connection",
                max: MAX_SUBS_PER_CONN as u64,
            });
        }
        let id = format!("sub-{}", self.next_sub + 1);
        self.next_sub += 1;
        let port = client.port.clone();
        // Handed over in chunks: one hand-off to the connection for many events.
        let mut chunk = Vec::new();
        let hand_over = |chunk: &mut Vec<StoredEvent>| {
            let events: Arc<[StoredEvent]> = std::mem::take(chunk).into();
            port.events(&id, &events, &(0..events.len()).collect::<Vec<_>>());
        };
        replay(&mut |e| {
            if event_matches(&kinds, &subjects, e) {
                chunk.push(e.clone());
                if chunk.len() == REPLAY_CHUNK {
                    hand_over(&mut chunk);
                }
            }
        })?;
        if !chunk.is_empty() {
            hand_over(&mut chunk);
        }
        self.subs.insert(
            id.clone(),
            EventSub {
                conn,
                kinds,
                subjects,
                delivered,
            },
        );
        Ok(id)
    }

    /// Drop one of `conn`'s subscriptions; false when it has no such subscription.
    pub fn unsubscribe(&mut self, conn: ConnId, id: &str) -> bool {
        match self.subs.get(id) {
            Some(s) if s.conn == conn => {
                self.subs.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Newly durable events to every subscription they match, in order.
    pub fn publish(&mut self, events: &Arc<[StoredEvent]>) {
        for (id, sub) in &mut self.subs {
            let Some(c) = self.conns.get(&sub.conn) else {
                continue;
            };
            let upto = sub.delivered;
            let matching: Vec<usize> = (0..events.len())
                .filter(|&i| {
                    let e = &events[i];
                    e.seq > upto && event_matches(&sub.kinds, &sub.subjects, e)
                })
                .collect();
            if !matching.is_empty() {
                c.port.events(id, events, &matching);
            }
            if let Some(last) = events.last() {
                sub.delivered = sub.delivered.max(last.seq);
            }
        }
    }

    /// Connections that initialized in the batch just committed, to offer pending decisions to.
    pub fn take_new_askable(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.offer_after_commit)
    }

    /// Connections that take decision prompts.
    pub fn askable(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.show_message)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Offer decision `d` to `conn` once; `answer` is called with its choice.
    pub fn ask(
        &mut self,
        conn: ConnId,
        d: &DecisionRecord,
        answer: Box<dyn FnOnce(String) + Send>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if d.resolved || !c.offered.insert(d.id.clone()) {
            return; // answered, or already asked of this client
        }
        c.port.ask(d, answer);
    }

    /// A task's progress step to every client that shows progress: the first step begins it
    /// there, `End` ends it (and is not sent where nothing began).
    pub fn progress(&mut self, task: &str, step: Progress) {
        let end = matches!(step, Progress::End { .. });
        for (id, c) in &self.conns {
            if !c.work_done_progress {
                continue;
            }
            let key = (*id, task.to_string());
            let begun = self.progressing.contains(&key);
            if end {
                if begun {
                    self.progressing.remove(&key);
                    c.port.progress(task, step.clone());
                }
                continue;
            }
            if !begun {
                self.progressing.insert(key);
            }
            c.port.progress(task, step.clone());
        }
    }

    /// Follow a terminal's output on `conn`, from `sub`; false when the connection is gone.
    pub fn follow(
        &mut self,
        conn: ConnId,
        terminal: &str,
        sub: Arc<OutputSubscriber>,
    ) -> Result<(), OpError> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(OpError::Internal("the connection is gone".into()));
        };
        if c.followed.len() >= MAX_FOLLOWED_PER_CONN && !c.followed.contains_key(terminal) {
            return Err(OpError::Limit {
                limit: "terminal subscriptions per connection",
                max: MAX_FOLLOWED_PER_CONN as u64,
            });
        }
        let handle = c.port.follow(terminal, sub.clone());
        if let Some((_, old)) = c.followed.insert(terminal.to_string(), (sub, handle)) {
            old.stop();
        }
        Ok(())
    }

    /// Whether `conn` follows `terminal`.
    pub fn follows(&self, conn: ConnId, terminal: &str) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.followed.contains_key(terminal))
    }

    /// Stop following a terminal on `conn`; its subscriber, to drop from the terminal.
    pub fn unfollow(&mut self, conn: ConnId, terminal: &str) -> Option<Arc<OutputSubscriber>> {
        if let Some(parked) = self.parked.get_mut(terminal) {
            parked.retain(|c| *c != conn);
        }
        let (sub, follow) = self.conns.get_mut(&conn)?.followed.remove(terminal)?;
        follow.stop();
        Some(sub)
    }

    /// A terminal went out of reach for a while: its followers stop following it and are kept
    /// to follow it again ([`Clients::unpark`]).
    pub fn park_followers(&mut self, terminal: &str) {
        let mut parked = Vec::new();
        for (conn, c) in &mut self.conns {
            if let Some((_, follow)) = c.followed.remove(terminal) {
                follow.stop();
                parked.push(*conn);
            }
        }
        if !parked.is_empty() {
            self.parked
                .entry(terminal.to_string())
                .or_default()
                .extend(parked);
        }
    }

    /// The connections still open that followed `terminal` when it went out of reach.
    pub fn unpark(&mut self, terminal: &str) -> Vec<ConnId> {
        let mut conns = self.parked.remove(terminal).unwrap_or_default();
        conns.retain(|c| self.conns.contains_key(c));
        conns
    }

    /// A terminal was released: every client stops following it.
    pub fn forget_terminal(&mut self, terminal: &str) {
        self.parked.remove(terminal);
        for c in self.conns.values_mut() {
            if let Some((_, follow)) = c.followed.remove(terminal) {
                follow.stop();
            }
        }
    }
}
