//! Watching agents: what state each is in, from the best evidence there is, and typing into them
//! so that what is typed lands.
//!
//! Evidence, best first:
//! - **hooks**: an agent whose hooks have spoken (`orch hook`, see [`crate::core::hooks`]) is in
//!   the state its last hook said; output, spinners and redraws do not override it. The screen is
//!   still read while it waits on a question, to see the question's choices and to see it go
//!   when a person answers in the terminal.
//! - **the screen** ([`super::screen`]): a waiting pattern near the cursor is a question (a
//!   decision with the choices on the screen); a busy pattern is work; a ready pattern is the
//!   agent's prompt. Kinds without busy patterns count any output as work.
//! - **quiet**: no output for `idle_after_ms` (with the ready prompt drawn, if the kind has one)
//!   is idle.
//! - **the process**: its exit (see `agents.rs`).
//!
//! Typing ([`Runtime::type_into`]): text waits until the agent takes input (its ready prompt has
//! shown, or its hooks said it is ready), is pasted, and Enter follows as its own write once the
//! paste was taken. Enter is pressed again while the text still sits in the input box and the
//! agent has not taken it (Claude Code draws its prompt seconds before it accepts an Enter), so
//! a prompt is submitted exactly once and never typed twice. One text at a time per agent: the
//! next waits until the previous one was taken.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::screen::{self, ScreenRules};
use super::{OpError, Runtime, Waiter};
use crate::core::agent::{AgentState, Evidence, Watch};
use crate::core::event::EventBody;
use crate::core::hooks::{self, HookEvent, HookReading};
use crate::core::ids;
use crate::core::rules;
use crate::core::task::{DecisionRecord, DecisionSource};

/// Output pause after which the screen is read.
const SETTLE: Duration = Duration::from_millis(250);
/// While output flows, the screen is read at most this often (busy and ready patterns).
const READ_EVERY: Duration = Duration::from_millis(500);
/// A kind with hooks is not typed into before its hooks speak, for at most this long; then the
/// screen's ready prompt is trusted instead (hooks that never come must not block the agent).
const HOOK_GRACE: Duration = Duration::from_secs(10);
/// How long a question a hook announced waits for its choices to show on the screen before the
/// decision is raised with the kind's fallback choices.
const QUESTION_GRACE: Duration = Duration::from_millis(1500);
/// After a paste, Enter goes once the agent echoed it and was quiet this long...
const PASTE_TAKEN: Duration = Duration::from_millis(60);
/// ...or after this long without an echo.
const PASTE_TIMEOUT: Duration = Duration::from_millis(600);
/// An Enter not taken within this long (the text still in the input box) is pressed again.
const ENTER_RETRY: Duration = Duration::from_millis(1000);
/// Enters pressed for one text at most (about ten seconds of an agent not yet taking input).
const MAX_ENTERS: u32 = 10;
/// How long a text that never showed in the input box is looked for before the typing counts as
/// done (an agent that does not echo, or draws a placeholder for a long paste).
const UNSEEN_PATIENCE: Duration = Duration::from_secs(8);
/// Most texts waiting to be typed into one agent.
const MAX_INBOX: usize = 64;
/// Most bytes typed at once.
const MAX_TEXT: usize = 1 << 20;

/// Runtime-only watch state of one agent (its current process).
pub struct WatchState {
    /// Compiled screen rules.
    rules: ScreenRules,
    /// When the current process started (quiet is measured from here before any output).
    pub(super) started: Instant,
    /// The output instant the screen was last read for, so a quiet screen is read once.
    checked: Option<Instant>,
    /// When the screen was last read.
    read_at: Option<Instant>,
    /// Automatic restarts in a row (reset by a manual restart).
    pub auto_restarts: u32,
    /// The decision raised by the current question.
    pub decision: Option<String>,
    /// The agent's hooks have spoken since this process started.
    hooks_live: bool,
    /// The current state was said by a hook (the screen does not override it).
    hook_said: bool,
    /// The question the agent asks, while it lasts.
    question: Option<Question>,
    /// The ready prompt has shown since this process started.
    ready_seen: bool,
    /// The last screen read showed a busy pattern.
    last_busy: bool,
    /// The last screen read showed a ready pattern.
    last_ready: bool,
    /// Texts waiting to be typed.
    inbox: VecDeque<Typing>,
    /// The text being typed.
    typing: Option<Typing>,
    /// ACP: why the agent was given up on, for the state its exit gets.
    pub(super) acp_failure: Option<String>,
    /// ACP: open permission requests and their decisions.
    pub(super) permissions: Vec<(u64, String)>,
}

/// A question the agent asks a person.
struct Question {
    /// When it was first known.
    since: Instant,
    /// What a hook said it is about (tool and input), for the decision's detail.
    about: Option<String>,
    /// It was seen on the screen, so its leaving the screen means it was answered there.
    seen: bool,
    /// Its decision was raised (a question is asked once, however long it stays on screen).
    raised: bool,
    /// The screen line it was seen on (see [`screen::Reading::question_line`]).
    line: Option<String>,
    /// What identifies it on the screen (see [`screen::Reading::question_key`]).
    key: Option<String>,
}

/// Text on its way into an agent.
struct Typing {
    /// Who waits to hear that it was typed (`orch/agent/send`).
    reply: Option<Waiter<()>>,
    /// The text.
    text: String,
    /// Press Enter after it.
    submit: bool,
    /// When it was pasted.
    pasted: Option<Instant>,
    /// When Enter was last pressed.
    entered: Option<Instant>,
    /// Enters pressed so far.
    enters: u32,
    /// The agent said it took it (a `UserPromptSubmit` hook, busy on the screen).
    taken: bool,
    /// The text was seen in the agent's input box.
    seen: bool,
}

impl WatchState {
    /// Watch state for a process that starts now.
    pub fn new(watch: &Watch) -> Self {
        Self {
            rules: ScreenRules::new(watch),
            started: Instant::now(),
            checked: None,
            read_at: None,
            auto_restarts: 0,
            decision: None,
            hooks_live: false,
            hook_said: false,
            question: None,
            ready_seen: false,
            last_busy: false,
            last_ready: false,
            inbox: VecDeque::new(),
            typing: None,
            acp_failure: None,
            permissions: Vec::new(),
        }
    }

    /// A new process of the same agent: everything but the restart count starts over.
    pub fn reset(&mut self, watch: &Watch) {
        let auto_restarts = self.auto_restarts;
        *self = Self::new(watch);
        self.auto_restarts = auto_restarts;
    }

    /// A question asked before a daemon restart is still this process's question.
    pub fn adopt_question(&mut self, decision: Option<String>) {
        if decision.is_some() {
            self.question = Some(Question {
                since: Instant::now(),
                about: None,
                seen: true,
                raised: true,
                line: None,
                key: None,
            });
        }
        self.decision = decision;
        // An adopted agent already showed its prompt in its previous daemon's life.
        self.ready_seen = true;
    }
}

impl Runtime {
    /// Emit an `agent.state` event if the state changes and the state machine allows it.
    pub fn set_agent_state(
        &mut self,
        id: &str,
        state: AgentState,
        evidence: Evidence,
        exit_code: Option<i32>,
    ) {
        // An idle agent gets its assigned task (`rule` sees to it).
        let _ = self.rule(|d| {
            rules::agents::set_state(d, id, state, evidence, exit_code);
            Ok(())
        });
    }

    /// `orch/agent/send`: type text into an agent (Enter after it with `submit`). `reply` hears
    /// once it was typed (Enter pressed), which may be later: an agent that does not take input
    /// yet gets it once it does.
    pub fn send_to_agent(
        &mut self,
        id: &str,
        text: &str,
        submit: bool,
        reply: Option<Waiter<()>>,
    ) -> Result<(), OpError> {
        let (agent, _) = self.agent_terminal(id, "cannot send text")?;
        self.type_into(&agent.id, text, submit, reply)
    }

    /// Type `text` into an agent: now if it takes input and nothing else is being typed, else
    /// once it does. `reply`, if any, is answered in every case (an error too).
    pub fn type_into(
        &mut self,
        agent: &str,
        text: &str,
        submit: bool,
        reply: Option<Waiter<()>>,
    ) -> Result<(), OpError> {
        let refuse = |rt: &mut Self, reply: Option<Waiter<()>>, e: OpError| {
            if let Some(reply) = reply {
                rt.hold(reply(Err(e.clone())));
            }
            Err(e)
        };
        if text.len() > MAX_TEXT {
            let e = OpError::Limit {
                limit: "text bytes",
                max: MAX_TEXT as u64,
            };
            return refuse(self, reply, e);
        }
        if self.speaks_acp(agent) {
            // A prompt is a message: it lands whole or is refused, nothing to watch for.
            let result = if submit {
                self.prompt_acp(agent, text)
            } else {
                Err(OpError::invalid(
                    "submit",
                    "an ACP agent takes whole prompts; send with submit",
                ))
            };
            return match result {
                Ok(()) => {
                    if let Some(reply) = reply {
                        self.hold(reply(Ok(())));
                    }
                    Ok(())
                }
                Err(e) => refuse(self, reply, e),
            };
        }
        let Some(ws) = self.watch.get_mut(agent) else {
            let e = OpError::Internal(format!("agent {agent} is not watched"));
            return refuse(self, reply, e);
        };
        if ws.inbox.len() >= MAX_INBOX {
            let e = OpError::Limit {
                limit: "texts waiting to be typed into one agent",
                max: MAX_INBOX as u64,
            };
            return refuse(self, reply, e);
        }
        ws.inbox.push_back(Typing {
            reply,
            text: text.to_string(),
            submit,
            pasted: None,
            entered: None,
            enters: 0,
            taken: false,
            seen: false,
        });
        self.advance_typing(agent);
        Ok(())
    }

    /// Whether an agent takes input now: its ready prompt showed (or its hooks said ready), and
    /// a kind with hooks had them speak (or gave up waiting for them).
    fn takes_input(&self, agent: &str) -> bool {
        let (Some(ws), Some(a)) = (self.watch.get(agent), self.state.agents.get(agent)) else {
            return false;
        };
        if !a.state.is_live() || a.state == AgentState::Starting {
            return false;
        }
        let waiting_for_hooks =
            a.watch.hooks.is_some() && !ws.hooks_live && ws.started.elapsed() < HOOK_GRACE;
        let ready = ws.ready_seen || ws.hooks_live || !ws.rules.has_ready();
        ready && !waiting_for_hooks
    }

    /// Move an agent's typing along: start the next text, press Enter once a paste was taken,
    /// press it again while the text sits unsent, finish when it was taken.
    fn advance_typing(&mut self, agent: &str) {
        loop {
            match self.typing_step(agent) {
                Step::Wait => return,
                Step::Next => continue,
                Step::Typed(reply) => {
                    if let Some(reply) = reply {
                        self.hold(reply(Ok(())));
                    }
                }
                Step::Failed(reply, e) => {
                    tracing::warn!(agent, "typing failed: {e}");
                    if let Some(reply) = reply {
                        self.hold(reply(Err(e)));
                    }
                }
            }
        }
    }

    /// One step of [`Self::advance_typing`].
    fn typing_step(&mut self, agent: &str) -> Step {
        let Some(term) = self
            .state
            .agents
            .get(agent)
            .and_then(|a| self.terminals.get(&a.terminal_id))
            .cloned()
        else {
            return Step::Wait;
        };
        let now = Instant::now();
        let takes_input = self.takes_input(agent);
        let a = &self.state.agents[agent];
        // Kinds that say when they take input get their Enter checked; a plain program (a shell,
        // a script) takes it like a terminal would.
        let checked = a.watch.hooks.is_some() || !a.watch.ready_patterns.is_empty();
        let waiting = a.state == AgentState::Waiting;
        let last_output = self.terminals.activity().last(&a.terminal_id);
        let Some(ws) = self.watch.get_mut(agent) else {
            return Step::Wait;
        };
        let Some(t) = ws.typing.as_mut() else {
            if !takes_input || ws.inbox.is_empty() {
                return Step::Wait;
            }
            // Never into a question (a first-run dialog, a permission): its Enter would answer
            // it. The text waits until the question is gone.
            if checked
                && (waiting
                    || term
                        .screen(0)
                        .is_ok_and(|s| ws.rules.read(&s.lines).question.is_some()))
            {
                return Step::Wait;
            }
            let mut t = ws.inbox.pop_front().expect("not empty");
            if !t.text.is_empty() {
                if let Err(e) = term.paste(&t.text) {
                    return Step::Failed(t.reply.take(), OpError::Internal(e.to_string()));
                }
            }
            t.pasted = Some(now);
            if !t.submit {
                return Step::Typed(t.reply.take());
            }
            ws.typing = Some(t);
            return Step::Next;
        };
        let pasted = t.pasted.expect("pasted before it is typing");
        // Whether the text shows in the input box (never while a question shows: Enter would
        // answer it). Read only where it matters: kinds that say when they take input.
        let in_box = |t: &Typing, rules: &ScreenRules| -> bool {
            checked
                && term.screen(0).is_ok_and(|s| {
                    screen::shows_input(&s.lines, &t.text)
                        && rules.read(&s.lines).question.is_none()
                })
        };
        let Some(entered) = t.entered else {
            // Enter goes as its own write once the paste was taken: the agent echoed it (and,
            // for a kind that says when it takes input, the text shows in its input box), or it
            // had long enough.
            let echoed = last_output.is_some_and(|o| o > pasted);
            let quiet = last_output.is_none_or(|o| now.duration_since(o) >= PASTE_TAKEN);
            let timed_out = now.duration_since(pasted) >= PASTE_TIMEOUT;
            let ready = t.text.is_empty()
                || timed_out
                || (echoed
                    && quiet
                    && (!checked || {
                        let seen = in_box(t, &ws.rules);
                        t.seen |= seen;
                        seen
                    }));
            if !ready {
                return Step::Wait;
            }
            if let Err(e) = term.write(b"\r") {
                let reply = t.reply.take();
                ws.typing = None;
                return Step::Failed(reply, OpError::Internal(e.to_string()));
            }
            t.entered = Some(now);
            t.enters = 1;
            let reply = t.reply.take();
            if !checked || t.text.is_empty() {
                ws.typing = None;
            }
            return Step::Typed(reply);
        };
        if t.taken {
            ws.typing = None;
            return Step::Next;
        }
        if now.duration_since(entered) < ENTER_RETRY {
            return Step::Wait;
        }
        // Not taken yet. Still in the input box: Enter again. Seen there before and gone: it was
        // taken. Never seen: the agent may not have drawn the paste yet; look again later.
        if in_box(t, &ws.rules) {
            t.seen = true;
            if t.enters < MAX_ENTERS {
                tracing::info!(
                    agent,
                    enters = t.enters,
                    "the text is still in the input box: Enter again"
                );
                let _ = term.write(b"\r");
                t.entered = Some(now);
                t.enters += 1;
                return Step::Wait;
            }
            tracing::warn!(
                agent,
                "the agent never took the text after {} Enters",
                t.enters
            );
        } else if !t.seen && now.duration_since(pasted) < UNSEEN_PATIENCE {
            t.entered = Some(now);
            return Step::Wait;
        }
        ws.typing = None;
        Step::Next
    }

    /// The agent's process ended or is replaced: whoever waits for a text to be typed into it
    /// hears that it was not, and nothing is typed into the next process.
    pub(super) fn drop_typing(&mut self, agent: &str, why: &str) {
        let Some(ws) = self.watch.get_mut(agent) else {
            return;
        };
        let state = self
            .state
            .agents
            .get(agent)
            .map_or("ended", |a| a.state.as_str());
        let pending: Vec<Typing> = ws
            .typing
            .take()
            .into_iter()
            .chain(ws.inbox.drain(..))
            .collect();
        for t in pending {
            if let Some(reply) = t.reply {
                let e = OpError::Conflict {
                    kind: "agent",
                    id: agent.into(),
                    state: state.into(),
                    what: format!("the text was not typed: {why}"),
                };
                self.hold(reply(Err(e)));
            }
        }
    }

    /// A decision about an agent's question was answered: type the chosen answer's keys, once.
    pub(super) fn answer_question(&mut self, agent: &str, keys: &str) {
        if let Some(ws) = self.watch.get_mut(agent) {
            ws.decision = None;
        }
        if let Some(term) = self
            .state
            .agents
            .get(agent)
            .and_then(|a| self.terminals.get(&a.terminal_id))
        {
            let _ = term.write(keys.as_bytes());
        }
    }

    /// `orch/agent/interrupt`: the keys that stop the agent's current turn (its kind's
    /// `interrupt_keys`, Escape by default), typed at once, ahead of anything waiting to be typed.
    pub fn interrupt_agent(&mut self, id: &str) -> Result<(), OpError> {
        let (agent, term) = self.agent_terminal(id, "cannot interrupt")?;
        if agent.watch.protocol == crate::core::agent::AgentProtocol::Acp {
            return self.cancel_acp(&agent.id);
        }
        term.write(agent.watch.interrupt_keys.as_bytes())
            .map_err(|e| OpError::Internal(e.to_string()))?;
        Ok(())
    }

    /// Output after quiet. Without hooks or busy patterns, output is work.
    pub(super) fn on_output(&mut self, terminal: &str) {
        let Some(agent) = self.state.agent_by_terminal(terminal) else {
            return;
        };
        let (id, state) = (agent.id.clone(), agent.state);
        if agent.watch.protocol == crate::core::agent::AgentProtocol::Acp {
            return; // its states come from what it says, not from its screen
        }
        let Some(ws) = self.watch.get(&id) else {
            return;
        };
        if (ws.hooks_live && ws.hook_said) || ws.rules.has_busy() {
            return;
        }
        // A waiting agent stays waiting until its question leaves the screen (see `tick`): TUIs
        // redraw while they wait, and that is not an answer.
        if matches!(state, AgentState::Running | AgentState::Idle) {
            self.set_agent_state(&id, AgentState::Busy, Evidence::Output, None);
        }
    }

    /// Periodic: read screens where output changed them, call quiet agents idle, move typing
    /// along.
    pub(super) fn tick(&mut self) {
        let ids: Vec<String> = self
            .state
            .agents
            .values()
            .filter(|a| a.state.is_live() && a.state != AgentState::Starting)
            .filter(|a| a.watch.protocol != crate::core::agent::AgentProtocol::Acp)
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            self.watch_agent(&id);
            self.advance_typing(&id);
        }
    }

    fn watch_agent(&mut self, id: &str) {
        let now = Instant::now();
        let agent = &self.state.agents[id];
        let (tid, state, idle_after) = (
            agent.terminal_id.clone(),
            agent.state,
            agent.watch.idle_after_ms,
        );
        let Some(term) = self.terminals.get(&tid).cloned() else {
            return;
        };
        let last = self.terminals.activity().last(&tid);
        let Some(ws) = self.watch.get_mut(id) else {
            return;
        };
        let since = last.unwrap_or(ws.started);
        let quiet = now.saturating_duration_since(since);
        let hooks_rule = ws.hooks_live && ws.hook_said;
        // When to read the screen: once output settled, and now and then while it flows.
        let changed = ws.checked != Some(since);
        let settled = changed && quiet >= SETTLE.min(Duration::from_millis(idle_after));
        let flowing = changed
            && ws
                .read_at
                .is_none_or(|r| now.duration_since(r) >= READ_EVERY);
        let question_pending = ws
            .question
            .as_ref()
            .is_some_and(|q| !q.raised && now.duration_since(q.since) >= QUESTION_GRACE);
        let wants_screen = ws.rules.has_waiting()
            || ws.rules.has_busy()
            || ws.rules.has_ready()
            || ws.question.is_some();
        if wants_screen && (settled || (flowing && !hooks_rule) || question_pending) {
            ws.checked = Some(since);
            ws.read_at = Some(now);
            if let Ok(s) = term.screen(0) {
                self.read_screen(id, &s.lines);
            }
        } else if changed && settled {
            ws.checked = Some(since);
        }
        // Quiet: idle, unless a hook said otherwise or the screen says it is not ready or busy.
        let Some(ws) = self.watch.get(id) else {
            return;
        };
        let state_now = self.state.agents[id].state;
        let _ = state;
        if matches!(state_now, AgentState::Running | AgentState::Busy)
            && !(ws.hooks_live && ws.hook_said)
            && quiet >= Duration::from_millis(idle_after)
            && ws.question.is_none()
        {
            let waiting_for_hooks = self.state.agents[id].watch.hooks.is_some()
                && !ws.hooks_live
                && ws.started.elapsed() < HOOK_GRACE;
            let ready = !ws.rules.has_ready() || ws.last_ready;
            let busy = ws.rules.has_busy() && ws.last_busy;
            if ready && !busy && !waiting_for_hooks {
                self.terminals.activity().rearm(&tid);
                self.set_agent_state(
                    id,
                    AgentState::Idle,
                    Evidence::Quiet { ms: idle_after },
                    None,
                );
            }
        }
    }

    /// Act on what the screen shows.
    fn read_screen(&mut self, id: &str, lines: &[String]) {
        let state = self.state.agents[id].state;
        let tid = self.state.agents[id].terminal_id.clone();
        let ws = self.watch.get_mut(id).expect("watched");
        let reading = ws.rules.read(lines);
        ws.last_busy = reading.busy.is_some();
        ws.last_ready = reading.ready.is_some();
        if reading.ready.is_some() {
            ws.ready_seen = true;
        }
        if reading.busy.is_some() {
            if let Some(t) = ws.typing.as_mut() {
                if t.entered.is_some() {
                    t.taken = true;
                }
            }
        }
        let hooks_rule = ws.hooks_live && ws.hook_said;
        match (&reading.question, ws.question.as_mut()) {
            // A question shows: waiting, and a decision with its choices.
            (Some(pattern), q) => {
                let pattern = pattern.clone();
                let line = reading.question_line.clone();
                let key = reading.question_key.clone();
                // Another question where the last one was: that one was answered.
                let another = q
                    .as_ref()
                    .is_some_and(|q| q.raised && q.key.is_some() && q.key != key);
                if another && ws.decision.is_some() {
                    self.dismiss_wait_decision(id, "answered in the agent's terminal");
                }
                let ws = self.watch.get_mut(id).expect("watched");
                match ws.question.as_mut() {
                    Some(q) if !another => {
                        q.seen = true;
                        q.line = line;
                        q.key = key;
                    }
                    _ => {
                        ws.question = Some(Question {
                            since: Instant::now(),
                            about: None,
                            seen: true,
                            raised: false,
                            line,
                            key,
                        })
                    }
                }
                self.terminals.activity().rearm(&tid);
                if state != AgentState::Waiting {
                    self.set_agent_state(
                        id,
                        AgentState::Waiting,
                        Evidence::Screen {
                            what: format!("pattern {pattern}"),
                        },
                        None,
                    );
                }
                let ws = self.watch.get(id).expect("watched");
                let raised = ws.question.as_ref().is_some_and(|q| q.raised);
                if !raised && self.state.agents[id].state == AgentState::Waiting {
                    let region = ws.rules.region(lines).to_vec();
                    self.raise_question_decision(id, &region);
                }
                return;
            }
            // The question left the screen: answered (by a decision, or in the terminal).
            (None, Some(q)) if q.seen => {
                ws.question = None;
                ws.hook_said = false;
                let answered_here = ws.decision.is_some();
                if answered_here {
                    self.dismiss_wait_decision(id, "answered in the agent's terminal");
                }
                if self.state.agents[id].state == AgentState::Waiting {
                    let what = if answered_here {
                        "the question left the screen (answered in the terminal)"
                    } else {
                        "the question left the screen"
                    };
                    self.set_agent_state(
                        id,
                        AgentState::Busy,
                        Evidence::Screen { what: what.into() },
                        None,
                    );
                }
            }
            // A question a hook announced that has not shown (yet): raise its decision with the
            // kind's choices once it had time to show.
            (None, Some(q)) => {
                if !q.raised && q.since.elapsed() >= QUESTION_GRACE {
                    let region = ws.rules.region(lines).to_vec();
                    self.raise_question_decision(id, &region);
                }
                return;
            }
            (None, None) => {}
        }
        if hooks_rule {
            return;
        }
        let state = self.state.agents[id].state;
        if let Some(pattern) = reading.busy {
            if matches!(state, AgentState::Running | AgentState::Idle) {
                self.set_agent_state(
                    id,
                    AgentState::Busy,
                    Evidence::Screen {
                        what: format!("busy {pattern}"),
                    },
                    None,
                );
            }
        }
    }

    /// Raise the decision of an agent's current question: the kind's choices, else those the
    /// screen shows (a numbered menu, `(Y)es/(N)o`), else approve (`y`, Enter) or deny (`n`,
    /// Enter).
    fn raise_question_decision(&mut self, id: &str, region: &[String]) {
        let agent = self.state.agents[id].clone();
        let question = self.watch.get(id).and_then(|w| w.question.as_ref());
        let about = question.and_then(|q| q.about.clone());
        let line = question.and_then(|q| q.line.clone());
        let mut options = agent.watch.waiting_options.clone();
        if options.is_empty() {
            options = screen::choices(region, line.as_deref(), agent.watch.menu_enter);
        }
        if options.is_empty() {
            options = vec![
                ("approve".into(), "y\r".into()),
                ("deny".into(), "n\r".into()),
            ];
        }
        let on_screen = screen::question_detail(region);
        let detail = match about {
            Some(about) if on_screen.is_empty() => about,
            Some(about) => format!("{about}\n\n{on_screen}"),
            None => on_screen,
        };
        let decision_id = self.new_id(ids::DECISION);
        self.emit(EventBody::DecisionRequested {
            decision: DecisionRecord {
                id: decision_id.clone(),
                title: format!("{} is waiting for an answer", agent.name),
                detail,
                options: options.iter().map(|(k, _)| k.clone()).collect(),
                resolved: false,
                choice: None,
                reason: None,
                source: DecisionSource::Agent {
                    id: id.into(),
                    keys: options,
                },
                created_at: self.clock.now_rfc3339(),
                resolved_at: None,
            },
        });
        if let Some(ws) = self.watch.get_mut(id) {
            ws.decision = Some(decision_id);
            if let Some(q) = ws.question.as_mut() {
                q.raised = true;
            }
        }
    }

    /// The agent stopped waiting without the decision: close it so no stale question lingers.
    pub(super) fn dismiss_wait_decision(&mut self, id: &str, why: &str) {
        if let Some(w) = self.watch.get_mut(id) {
            w.decision = None;
            w.question = None;
            w.permissions.clear();
        }
        // Every pending question of this agent, including one asked before a daemon restart.
        self.dismiss_decisions(|s| rules::decisions::asked_by(s, id), why);
    }

    /// `orch/hook`: what an agent's own hook says it does.
    pub fn on_hook(
        &mut self,
        agent: &str,
        terminal: Option<&str>,
        event: HookEvent,
    ) -> Result<(), OpError> {
        let a = self.agent_ref(agent)?.clone();
        // A hook of an earlier process of this agent (or of one that ended) says nothing now.
        if terminal.is_some_and(|t| t != a.terminal_id) || !a.state.is_live() {
            return Ok(());
        }
        let (reading, evidence) = hooks::read(&event);
        let Some(ws) = self.watch.get_mut(&a.id) else {
            return Ok(());
        };
        ws.hooks_live = true;
        if let Some(t) = ws.typing.as_mut() {
            if event.name == "UserPromptSubmit" && t.entered.is_some() {
                t.taken = true;
            }
        }
        match reading {
            HookReading::Nothing => {}
            HookReading::Permission => {
                ws.hook_said = true;
                // A new permission request while an earlier one was asked: the earlier one was
                // answered (the agent shows one dialog at a time). A later notification about the
                // same dialog is not a new question.
                let renewed = event.name == "PermissionRequest"
                    && ws.question.as_ref().is_some_and(|q| q.raised);
                if renewed {
                    ws.question = None;
                    if ws.decision.is_some() {
                        self.dismiss_wait_decision(&a.id, "answered in the agent's terminal");
                    }
                }
                let ws = self.watch.get_mut(&a.id).expect("watched");
                if ws.question.is_none() {
                    ws.question = Some(Question {
                        since: Instant::now(),
                        about: hooks::about(&event),
                        seen: false,
                        raised: false,
                        line: None,
                        key: None,
                    });
                }
                self.terminals.activity().rearm(&a.terminal_id);
                self.set_agent_state(&a.id, AgentState::Waiting, evidence, None);
            }
            HookReading::State(state) => {
                ws.hook_said = true;
                if ws.question.is_some() {
                    // The agent moved on: whatever it asked was answered, in its terminal if
                    // the decision is still open.
                    ws.question = None;
                    if ws.decision.is_some() {
                        self.dismiss_wait_decision(&a.id, "answered in the agent's terminal");
                    }
                }
                if state == AgentState::Idle {
                    if let Some(ws) = self.watch.get_mut(&a.id) {
                        ws.ready_seen = true;
                    }
                }
                self.set_agent_state(&a.id, state, evidence, None);
            }
        }
        self.advance_typing(&a.id);
        Ok(())
    }
}

/// What [`Runtime::typing_step`] did.
enum Step {
    /// Nothing more to do now.
    Wait,
    /// Look again at once.
    Next,
    /// A text was typed (Enter pressed): tell whoever waits.
    Typed(Option<Waiter<()>>),
    /// A text could not be typed.
    Failed(Option<Waiter<()>>, OpError),
}
