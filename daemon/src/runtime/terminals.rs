//! The runtime's terminals: the live handles by terminal id (and, for ACP agents, the protocol
//! side of the same terminal), the output activity backend threads report, and the last screens
//! of terminals that ended, kept (bounded) for screen requests after their resources were
//! released.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::Input;
use crate::ports::{
    Conversation, ConversationObserver, Said, ScreenSnapshot, Terminal, TerminalObserver,
};

/// Last screens of ended terminals kept.
const KEEP_SCREENS: usize = 64;
/// Lines of history kept with each.
const KEEP_SCROLLBACK: usize = 200;

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

impl crate::ports::HostObserver for Observer {
    fn host_changed(&self, name: &str, status: crate::ports::HostStatus) {
        let _ = self.tx.send(Input::Host(name.to_string(), status));
    }
}

impl ConversationObserver for Observer {
    fn said(&self, id: &str, said: Said) {
        let _ = self.tx.send(Input::Said(id.to_string(), said));
    }
}

/// The live terminals and the last screens of ended ones.
pub struct Terminals {
    /// Live terminal handles by terminal id.
    live: HashMap<String, Arc<dyn Terminal>>,
    /// The protocol side of live ACP agents' terminals, by terminal id.
    conversations: HashMap<String, Arc<dyn Conversation>>,
    /// Last screens of ended terminals whose resources were released, bounded.
    final_screens: HashMap<String, ScreenSnapshot>,
    /// Release order of `final_screens`, oldest first.
    final_order: VecDeque<String>,
    /// Output activity shared with backends.
    activity: Arc<Activity>,
    /// The observer handed to backends.
    observer: Arc<Observer>,
}

impl Terminals {
    /// No terminals yet; backends report to the runtime through `tx`.
    pub fn new(tx: mpsc::UnboundedSender<Input>) -> Self {
        let activity = Arc::new(Activity::default());
        Self {
            live: HashMap::new(),
            conversations: HashMap::new(),
            final_screens: HashMap::new(),
            final_order: VecDeque::new(),
            observer: Arc::new(Observer {
                tx,
                activity: activity.clone(),
            }),
            activity,
        }
    }

    /// The live terminal `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Terminal>> {
        self.live.get(id)
    }

    /// Whether `id` is live here.
    pub fn contains_key(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    /// A terminal started (or adopted).
    pub fn insert(&mut self, id: String, t: Arc<dyn Terminal>) {
        self.live.insert(id, t);
    }

    /// An ACP agent's terminal started: its conversation.
    pub fn insert_conversation(&mut self, id: String, c: Arc<dyn Conversation>) {
        self.conversations.insert(id, c);
    }

    /// The conversation of live ACP agent terminal `id`.
    pub fn conversation(&self, id: &str) -> Option<&Arc<dyn Conversation>> {
        self.conversations.get(id)
    }

    /// Take a terminal out without keeping its screen (a restart replaces it).
    pub fn remove(&mut self, id: &str) -> Option<Arc<dyn Terminal>> {
        self.conversations.remove(id);
        self.live.remove(id)
    }

    /// What backends report to.
    pub fn observer(&self) -> Arc<dyn TerminalObserver> {
        self.observer.clone()
    }

    /// What remote hosts report to.
    pub fn host_observer(&self) -> Arc<dyn crate::ports::HostObserver> {
        self.observer.clone()
    }

    /// What conversation backends report to.
    pub fn conversation_observer(&self) -> Arc<dyn ConversationObserver> {
        self.observer.clone()
    }

    /// Output activity.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Free an ended terminal's resources (its reaped process, threads, descriptors, emulator),
    /// keeping its last screen, bounded, for `screen` requests about it.
    pub fn release(&mut self, id: &str) {
        self.activity.forget(id);
        self.conversations.remove(id);
        let Some(t) = self.live.remove(id) else {
            return;
        };
        if let Ok(screen) = t.screen(KEEP_SCROLLBACK) {
            self.final_screens.insert(id.to_string(), screen);
            self.final_order.push_back(id.to_string());
            while self.final_order.len() > KEEP_SCREENS {
                if let Some(old) = self.final_order.pop_front() {
                    self.final_screens.remove(&old);
                }
            }
        }
        let _ = t.close();
    }

    /// The last screen of an ended terminal, while it is kept.
    pub fn final_screen(&self, id: &str) -> Option<&ScreenSnapshot> {
        self.final_screens.get(id)
    }

    /// Let go of every live terminal: pty programs die with the daemon, tmux windows stay for
    /// the next one.
    pub fn clear(&mut self) {
        self.conversations.clear();
        self.live.clear();
    }
}
