//! The Agent Client Protocol adapter: orch as the ACP *client* of an agent that speaks ACP
//! (JSON-RPC 2.0, one JSON object per line) on its stdin and stdout, such as `gemini --acp` or
//! `claude-agent-acp`.
//!
//! # What it does
//!
//! [`AcpAgent::start`] starts the agent's process (argv, cwd, env of a [`TerminalSpec`]; its own
//! session and process group; stderr to a bounded log) and returns at once. The handshake runs
//! in the background: `initialize` (protocol version 1; orch offers `fs.readTextFile` and
//! `fs.writeTextFile`, confined to the agent's cwd, and no terminals), `authenticate` when
//! [`AcpSpec::auth_method`] names a method, or when `session/new` answers `auth_required` and
//! one of the agent's methods needs no person (an API key or token); then `session/load` or
//! `session/resume` when [`AcpSpec::resume_session`] names a session and the agent offers one
//! (`session/load` preferred: it replays the conversation onto the screen), else
//! `session/new {cwd, mcpServers: []}`; then `session/set_mode` when [`AcpSpec::mode`] asks for
//! a mode the session is not in. [`AcpEvent::Ready`] carries the session id, or
//! [`AcpEvent::Failed`] says why there is none (each handshake request has
//! [`AcpSpec::handshake_timeout`]; the process is killed).
//!
//! # Turns
//!
//! [`AcpAgent::prompt`] sends `session/prompt`. A prompt while a turn runs, or before the session
//! is ready, is **queued** (at most [`MAX_QUEUED_PROMPTS`], then refused with
//! [`AcpError::QueueFull`]) and sent when the turn before it ends. Every accepted prompt gets a
//! [`TurnId`] and ends with exactly one [`AcpEvent::TurnEnded`] — with the agent's
//! `stopReason`, or failed when the agent errs, fails or exits, even if it never started.
//! [`AcpAgent::cancel`] sends the `session/cancel` notification for the running turn (queued
//! prompts stay queued); the turn ends when the agent answers the prompt, normally with
//! `cancelled`.
//!
//! # Permissions
//!
//! The agent's `session/request_permission` becomes [`AcpEvent::PermissionRequested`] with a
//! [`PermissionId`] and the agent's own options; [`AcpAgent::answer_permission`] sends the
//! chosen `optionId`. A request still open when its turn ends or is cancelled is answered
//! `cancelled` (as ACP requires) and reported with [`AcpEvent::PermissionDismissed`]; so is one
//! open when the agent exits (no answer then). At most [`MAX_OPEN_PERMISSIONS`] are open.
//!
//! # The screen
//!
//! [`AcpAgent`] is a [`Terminal`]: the conversation is rendered as text into a headless
//! emulator (prompts, streamed messages, dimmed thoughts, tool calls with their status, the plan
//! as a checklist, permission requests with their options, a status line), with an output log
//! and subscriptions like a pty terminal's, so `orch agent screen`, attach views and output
//! subscriptions work unchanged. Typing edits an input line at the bottom; Enter sends it as a
//! prompt, Esc (or Ctrl-C on an empty line) cancels the turn, a paste inserts text. `signal`
//! kills the process group; `close` kills it and releases everything.
//!
//! # For the runtime
//!
//! ```text
//! let agent = AcpAgent::start(spec, observer)?;   // Arc<AcpAgent>; also an Arc<dyn Terminal>
//! // observer.acp(id, AcpEvent::Ready(..))        -> idle, keep ready.session_id for restarts
//! agent.prompt(text)?                              // task dispatch / send: Started or Queued
//! // TurnStarted -> busy; PermissionRequested -> waiting + a Decision with its options
//! agent.answer_permission(id, option_id)?          // the decision's first answer
//! // PermissionDismissed -> dismiss the decision; TurnEnded -> idle (stopReason as evidence)
//! agent.cancel()?                                  // orch/agent/interrupt
//! // Update { .. } -> agent.message / agent.toolCall / agent.plan events
//! // observer.exited(id, code)                     -> as for any terminal; restart with
//! //                                                  spec.resume_session = the session id
//! ```
//!
//! Observer callbacks come from the adapter's threads (and from the caller's thread, for what a
//! call causes), one at a time and in order, with the adapter's lock held: they must be cheap,
//! must never block, and must not call back into the agent (post to a channel). Events are per
//! update, uncoalesced: an agent that floods updates floods the channel too. The screen is
//! drawn just after the events of a change (and `output` follows), so a screen fetched the
//! moment an event arrives may not show it yet.
//!
//! # Threads and bounds
//!
//! Two threads per agent. The I/O thread polls the agent's stdout, stderr and (when output waits)
//! stdin: it splits stdout into lines of at most [`LINE_LIMIT`] bytes, handles file requests,
//! feeds everything else to the protocol state machine (`client.rs`), times the handshake, and
//! logs stderr. The waiter learns how the process ended, reports it, and reaps it when the agent
//! is closed. Calls from the runtime take the lock, act, write to the agent's stdin without
//! blocking (what the pipe does not take waits in a bounded queue), and return. Nothing here
//! knows the runtime, the wire to editors, or agent kinds.

mod bridge;
mod client;
mod fs;
mod proto;
mod render;
#[cfg(test)]
mod tests;
mod wire;

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use bridge::AcpBackend;
pub use proto::{
    AgentCapabilities, AgentInfo, AvailableCommand, Modes, PermissionOption, PlanEntry,
    SessionMode, SessionUpdate, StopReason, ToolCall, ToolCallUpdate, ToolContent, ToolStatus,
};

use crate::adapters::emulator::Emulator;
use crate::adapters::pty::{
    flush_input, give_back_memory_soon, kill_group, pipe, poll, program_end_fd, reap_now,
    reap_when, set_nonblocking, wait_without_reaping, OutputLog, Reaping, SCREEN_IDLE,
};
use crate::fanout::{OutputFanout, OutputSubscriber};
use crate::ports::{BackendError, ScreenSnapshot, Terminal, TerminalObserver, TerminalSpec};
use client::{Client, Effect};
use render::{Input, Screen, Show, Style};
use wire::{Incoming, LineSplitter, Piece};

/// Most bytes of one message from the agent; a longer line is dropped and reported.
pub const LINE_LIMIT: usize = 16 << 20;
/// Most prompts waiting behind the running turn.
pub const MAX_QUEUED_PROMPTS: usize = 32;
/// Most bytes of one prompt.
pub const MAX_PROMPT_BYTES: usize = 1 << 20;
/// Most permission requests open at once; more are answered `cancelled` at once.
pub const MAX_OPEN_PERMISSIONS: usize = 16;
/// Most bytes waiting for an agent that does not read its stdin before it is given up on.
const OUTBOX_LIMIT: usize = 32 << 20;
/// How long a handshake request may go unanswered by default. Node agents take a few seconds
/// to start on a loaded machine.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes read from a pipe at once.
const READ_CHUNK: usize = 64 * 1024;
/// How long the exit report waits for the I/O thread to read what the agent left in its pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
/// Bytes of the end of stderr kept for error messages.
const STDERR_TAIL: usize = 4096;

/// A prompt turn, numbered per agent from 1 in the order prompts were accepted.
pub type TurnId = u64;
/// An open permission request, numbered per agent from 1.
pub type PermissionId = u64;

/// Everything needed to start one ACP agent.
#[derive(Debug, Clone)]
pub struct AcpSpec {
    /// Command, cwd, env, screen size, output log, scrollback — as for a pty terminal.
    pub terminal: TerminalSpec,
    /// Where the agent's stderr goes (bounded and rotated like the output log).
    pub stderr_log: PathBuf,
    /// A session id from an earlier run of this agent, to load or resume.
    pub resume_session: Option<String>,
    /// A session mode to switch to (`default`, `plan`, ... as the agent names them).
    pub mode: Option<String>,
    /// An `authenticate` method to use before creating the session.
    pub auth_method: Option<String>,
    /// How long each handshake request may go unanswered.
    pub handshake_timeout: Duration,
}

impl AcpSpec {
    /// A spec with defaults: stderr beside the output log as `<log>.stderr`, a new session,
    /// the agent's own mode and authentication, [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn new(terminal: TerminalSpec) -> Self {
        let mut stderr = terminal.log_path.clone().into_os_string();
        stderr.push(".stderr");
        Self {
            stderr_log: stderr.into(),
            terminal,
            resume_session: None,
            mode: None,
            auth_method: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// How the session came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOrigin {
    New,
    /// `session/load`: the agent replayed the conversation (as updates with `replay: true`).
    Loaded,
    /// `session/resume`: continued without a replay.
    Resumed,
}

/// The session is ready for prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Keep it: a restarted agent can continue this session.
    pub session_id: String,
    pub origin: SessionOrigin,
    /// Why the session asked for could not be continued (a new one was started instead).
    pub resume_error: Option<String>,
    pub agent: AgentInfo,
    pub capabilities: AgentCapabilities,
    pub modes: Modes,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// The agent answered the prompt with this `stopReason`.
    Stopped(StopReason),
    /// It did not: the agent answered with an error, failed, or exited. In words.
    Failed(String),
}

/// A permission request from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRequest {
    /// What [`AcpAgent::answer_permission`] takes.
    pub id: PermissionId,
    /// The turn it came in.
    pub turn: Option<TurnId>,
    /// What it is about, for people (the tool call's title, else its kind).
    pub title: String,
    pub tool_call: ToolCall,
    /// The agent's options, in its order.
    pub options: Vec<PermissionOption>,
}

/// What the adapter tells the runtime, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcpEvent {
    /// The handshake is done.
    Ready(Ready),
    /// A prompt was sent to the agent: the turn runs.
    TurnStarted {
        turn: TurnId,
        text: String,
    },
    /// A turn is over (or will never run: see [`TurnEnd::Failed`]).
    TurnEnded {
        turn: TurnId,
        end: TurnEnd,
    },
    /// The agent reported progress. `replay` marks history a loaded session replays.
    Update {
        update: SessionUpdate,
        replay: bool,
    },
    PermissionRequested(PermissionRequest),
    /// An open request went away unanswered; `why` in words.
    PermissionDismissed {
        id: PermissionId,
        why: String,
    },
    /// The agent did something wrong that orch survives (a malformed message, an answer to
    /// nothing). Reported one by one up to a bound, then counted.
    Problem(String),
    /// The agent is given up on (handshake failed or timed out, exited before it was ready, does
    /// not read its input); its process is being killed. `exited` follows.
    Failed(String),
}

/// Where an agent is, as [`AcpAgent::status`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpPhase {
    Starting,
    Idle,
    Busy,
    /// A permission request is open.
    Waiting,
    Failed,
    Exited,
}

/// A snapshot of an agent's protocol state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpStatus {
    pub phase: AcpPhase,
    pub session_id: Option<String>,
    /// The running turn.
    pub turn: Option<TurnId>,
    /// Prompts waiting.
    pub queued: usize,
    /// Open permission requests.
    pub permissions: Vec<PermissionId>,
}

/// What [`AcpAgent::prompt`] did with a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptStatus {
    /// Sent: the turn runs.
    Started { turn: TurnId },
    /// Waiting behind the running turn or the handshake, `position` from 1.
    Queued { turn: TurnId, position: usize },
}

/// Why a call on an agent was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcpError {
    #[error("agent {id} has ended: {why}")]
    Ended { id: String, why: String },
    #[error("agent {id} already has {limit} prompts waiting")]
    QueueFull { id: String, limit: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {len} bytes, more than the {limit} an agent takes")]
    PromptTooLarge { len: usize, limit: usize },
    #[error("agent {id} has no open permission request {permission}")]
    NoSuchPermission {
        id: String,
        permission: PermissionId,
    },
    #[error("permission request {permission} has no option {option}; its options are {options}")]
    NoSuchOption {
        permission: PermissionId,
        option: String,
        options: String,
    },
}

/// Callbacks from an ACP agent to the runtime; see the module doc for the rules (cheap, never
/// blocking, no calls back into the agent). `output` and `exited` are the terminal's.
pub trait AcpObserver: TerminalObserver {
    /// Something happened in agent `id`'s protocol.
    fn acp(&self, id: &str, event: AcpEvent);
}

/// One running ACP agent, as the runtime holds it.
pub struct AcpAgent {
    /// What the agent's threads share with this handle.
    shared: Arc<Shared>,
}

/// State shared between an agent's handle and its threads.
struct Shared {
    /// The runtime's id of the agent (its terminal id).
    id: String,
    /// The process id, which is also its process group id.
    pid: u32,
    /// The protocol state. Locked first; the view after it, never the other way round.
    core: Mutex<Core>,
    /// The screen and its output. Taken before the protocol lock is released when there is
    /// something to draw (so changes are drawn in the order they happened), but drawing happens
    /// after that release: an answer to the agent never waits for the screen.
    view: Mutex<View>,
    /// Our end of the agent's stdin, non-blocking.
    stdin: File,
    /// Write end of the I/O thread's wake-up pipe.
    wake: File,
    fanout: OutputFanout,
    observer: Arc<dyn AcpObserver>,
    /// The last bytes of stderr, for error messages.
    stderr_tail: Mutex<Vec<u8>>,
    /// Set once the process has ended.
    exited: AtomicBool,
    /// Set once no more output goes to subscribers.
    finished: AtomicBool,
    /// Set by close: the agent refuses further calls and its I/O thread stops.
    closed: AtomicBool,
    /// Whether the process has ended and the agent is closed: both, and it is reaped.
    reaping: Mutex<Reaping>,
}

/// The protocol's state, under the first lock.
struct Core {
    client: Client,
    /// The person's input line (the screen draws a copy).
    input: Input,
    /// Bytes for the agent's stdin that the pipe has not taken yet.
    outbox: Vec<u8>,
}

/// What is drawn, under the second lock.
struct View {
    screen: Screen,
    emulator: Emulator,
    log: OutputLog,
}

impl AcpAgent {
    /// Start the agent and its handshake; returns once the process runs.
    pub fn start(spec: AcpSpec, observer: Arc<dyn AcpObserver>) -> Result<Arc<Self>, BackendError> {
        let t = &spec.terminal;
        let program = t
            .command
            .first()
            .cloned()
            .ok_or_else(|| BackendError::Spawn {
                program: format!("agent {}", t.id),
                detail: "the command is empty".to_string(),
            })?;
        let spawn_error = |detail: String| BackendError::Spawn {
            program: program.clone(),
            detail,
        };
        if t.cols == 0 || t.rows == 0 {
            return Err(spawn_error(format!(
                "terminal size {}x{} has no cells",
                t.cols, t.rows
            )));
        }
        if !t.cwd.is_dir() {
            return Err(spawn_error(format!(
                "working directory {} is not a directory",
                t.cwd.display()
            )));
        }
        let confinement = fs::Confinement::new(&t.cwd)
            .map_err(|err| spawn_error(format!("working directory {}: {err}", t.cwd.display())))?;
        let open_log = |path: &Path| {
            OutputLog::open(path, t.log_limit).map_err(|err| {
                BackendError::Other(format!("cannot open log {}: {err}", path.display()))
            })
        };
        let log = open_log(&t.log_path)?;
        let stderr_log = open_log(&spec.stderr_log)?;

        let mut argv0 = OsString::from(&program);
        if program.contains('/') && !program.starts_with('/') {
            argv0 = t.cwd.join(&program).into_os_string();
        }
        let mut cmd = Command::new(argv0);
        cmd.args(&t.command[1..])
            .current_dir(&t.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if super::foreign_terminal_var(&key.to_string_lossy()) {
                cmd.env_remove(key);
            }
        }
        // Not in a terminal: programs that look at TERM should not draw for one.
        cmd.env("TERM", "dumb");
        for (key, value) in &t.env {
            cmd.env(key, value);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|err| spawn_error(err.to_string()))?;
        let pid = child.id();
        let pipes = (|| {
            let stdin = OwnedFd::from(child.stdin.take()?);
            let stdout = OwnedFd::from(child.stdout.take()?);
            let stderr = OwnedFd::from(child.stderr.take()?);
            Some((stdin, stdout, stderr))
        })();
        // The handle would reap the process; the waiter does that itself, late.
        drop(child);
        let setup = || -> std::io::Result<(File, File, File, File, File, File)> {
            let (stdin, stdout, stderr) =
                pipes.ok_or_else(|| std::io::Error::other("a pipe is missing"))?;
            for fd in [&stdin, &stdout, &stderr] {
                set_nonblocking(fd)?;
            }
            let (wake_rx, wake_tx) = pipe()?;
            let ended = program_end_fd(pid, &t.id)?;
            Ok((
                File::from(stdin),
                File::from(stdout),
                File::from(stderr),
                File::from(wake_rx),
                File::from(wake_tx),
                ended,
            ))
        };
        let (stdin, stdout, stderr, wake_rx, wake_tx, ended) = match setup() {
            Ok(files) => files,
            Err(err) => {
                let _ = kill_group(pid, libc::SIGKILL);
                reap_now(pid);
                return Err(spawn_error(format!("cannot set up its pipes: {err}")));
            }
        };

        let mut client = Client::new(
            &t.id,
            client::Options {
                cwd: confinement.root().to_string_lossy().into_owned(),
                resume: spec.resume_session.clone(),
                mode: spec.mode.clone(),
                auth_method: spec.auth_method.clone(),
            },
        );
        client.start();
        let mut screen = Screen::new(t.cols, t.rows, t.scrollback + usize::from(t.rows));
        let mut emulator = Emulator::new(t.cols, t.rows, t.scrollback);
        let mut log = log;
        let first = screen.start();
        emulator.feed(&first);
        log.write(&first);
        let shared = Arc::new(Shared {
            id: t.id.clone(),
            pid,
            core: Mutex::new(Core {
                client,
                input: Input::default(),
                outbox: Vec::new(),
            }),
            view: Mutex::new(View {
                screen,
                emulator,
                log,
            }),
            stdin,
            wake: wake_tx,
            fanout: OutputFanout::new(),
            observer,
            stderr_tail: Mutex::new(Vec::new()),
            exited: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            reaping: Mutex::new(Reaping::default()),
        });
        shared.settle(shared.lock(), Vec::new(), false);

        let timeout = spec.handshake_timeout;
        let started = start_thread("io", &t.id, &shared, move |shared| {
            io_loop(
                shared,
                Io {
                    stdout,
                    stderr,
                    wake: wake_rx,
                    ended,
                    stderr_log,
                    confinement,
                    timeout,
                },
            )
        });
        if let Err(err) = started {
            shared.closed.store(true, Ordering::SeqCst);
            shared.wake_io();
            let _ = kill_group(pid, libc::SIGKILL);
            reap_now(pid);
            return Err(spawn_error(err));
        }
        tracing::debug!(agent = %t.id, pid, program = %program, "acp agent started");
        Ok(Arc::new(Self { shared }))
    }

    fn check_open(&self) -> Result<(), AcpError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(AcpError::Ended {
                id: self.shared.id.clone(),
                why: "it was closed".to_string(),
            });
        }
        Ok(())
    }

    /// Run `f` on the protocol state, then carry out its effects.
    fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> T) -> Result<T, AcpError> {
        self.check_open()?;
        let mut core = self.shared.lock();
        let result = f(&mut core.client);
        self.shared.settle(core, Vec::new(), false);
        Ok(result)
    }

    /// Send a prompt, or queue it behind the running turn (see the module doc).
    pub fn prompt(&self, text: &str) -> Result<PromptStatus, AcpError> {
        self.with_client(|client| client.prompt(text))?
    }

    /// Cancel the running turn; whether one was running.
    pub fn cancel(&self) -> Result<bool, AcpError> {
        self.with_client(Client::cancel)?
    }

    /// Answer an open permission request with one of its options' `optionId`.
    pub fn answer_permission(&self, id: PermissionId, option_id: &str) -> Result<(), AcpError> {
        self.with_client(|client| client.answer(id, option_id))?
    }

    /// The ACP session id, once there is one.
    pub fn session_id(&self) -> Option<String> {
        self.shared.lock().client.session_id().map(str::to_string)
    }

    /// Where the agent is now.
    pub fn status(&self) -> AcpStatus {
        self.shared.lock().client.status()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while the lock was held leaves the state as it was at that point, which the
        // state machine tolerates: keep serving rather than poison every later call.
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_view(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_io(&self) {
        let _ = (&self.wake).write_all_nonblocking(&[1]);
    }

    /// Carry out the client's effects, in order: lines to the agent first (so an answer is on
    /// its way before anything else), then a kill, then events, then — with the view locked
    /// and the protocol lock released — the screen.
    fn settle(&self, mut core: MutexGuard<'_, Core>, mut extra: Vec<Show>, redraw: bool) {
        let mut events = Vec::new();
        let mut kill = false;
        let mut changed = redraw || !extra.is_empty();
        loop {
            let effects = core.client.take_effects();
            if effects.is_empty() {
                break;
            }
            changed = true;
            for effect in effects {
                match effect {
                    Effect::Send(line) => {
                        tracing::trace!(agent = %self.id, "→ {}", String::from_utf8_lossy(&line).trim_end());
                        core.outbox.extend_from_slice(&line);
                    }
                    Effect::Event(event) => events.push(event),
                    Effect::Show(show) => extra.push(show),
                    Effect::Kill => kill = true,
                }
            }
            if !core.outbox.is_empty() {
                if let Err(err) = flush_input(&self.stdin, &mut core.outbox) {
                    // The agent closed its stdin: it is ending, and its exit is reported.
                    tracing::debug!(agent = %self.id, "writing to the agent failed: {err}");
                    core.outbox.clear();
                }
                if core.outbox.len() > OUTBOX_LIMIT {
                    core.outbox.clear();
                    core.client.give_up(format!(
                        "the agent does not read its input ({} MiB wait)",
                        OUTBOX_LIMIT >> 20
                    ));
                    continue;
                }
                if !core.outbox.is_empty() {
                    self.wake_io();
                }
            }
        }
        if kill {
            if let Err(err) = kill_group(self.pid, libc::SIGKILL) {
                tracing::warn!(agent = %self.id, "cannot kill the agent: {err}");
            }
        }
        for event in events {
            self.observer.acp(&self.id, event);
        }
        if !changed {
            return;
        }
        let status = core.client.status_line();
        let input = core.input.clone();
        let mut view = self.lock_view();
        drop(core);
        view.screen.set_status(status);
        view.screen.input = input;
        let mut out = Vec::new();
        view.screen.apply(extra, &mut out);
        self.output(&mut view, &out);
    }

    /// Bytes for the screen: emulator, log, subscribers, observer.
    fn output(&self, view: &mut View, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // A terminal's answers to queries go nowhere: the screen's only writer is orch.
        let was_asleep = view.emulator.is_asleep();
        view.emulator.feed(bytes);
        if was_asleep {
            // The I/O thread may be waiting with no time limit: it times the view's next sleep.
            self.wake_io();
        }
        view.log.write(bytes);
        self.fanout.publish(bytes);
        self.observer.output(&self.id);
    }

    /// The last lines of stderr, for an error message.
    fn stderr_words(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let words = lines[lines.len().saturating_sub(3)..].join(" | ");
        let chars: Vec<char> = words.chars().collect();
        if chars.len() > 400 {
            chars[chars.len() - 400..].iter().collect()
        } else {
            words
        }
    }
}

/// Write without waiting; a full pipe is ignored (the reader is awake anyway).
trait WriteNonblocking {
    fn write_all_nonblocking(self, data: &[u8]) -> std::io::Result<()>;
}

impl WriteNonblocking for &File {
    fn write_all_nonblocking(self, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut this = self;
        match this.write(data) {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl Terminal for AcpAgent {
    fn pid(&self) -> Option<u32> {
        Some(self.shared.pid)
    }

    fn write(&self, data: &[u8]) -> Result<(), BackendError> {
        self.check_terminal()?;
        let mut core = self.shared.lock();
        let keys = core.input.feed(data);
        let mut notes = Vec::new();
        for key in keys {
            let result = match key {
                render::Key::Submit(text) => core.client.prompt(&text).map(drop),
                render::Key::Cancel => core.client.cancel().map(drop),
            };
            if let Err(err) = result {
                notes.push(Show::Note {
                    style: Style::Error,
                    text: format!("orch: {err}"),
                });
            }
        }
        // The input line changed even when nothing else did.
        self.shared.settle(core, notes, true);
        Ok(())
    }

    fn paste(&self, text: &str) -> Result<(), BackendError> {
        self.check_terminal()?;
        let mut core = self.shared.lock();
        core.input.insert(text);
        self.shared.settle(core, Vec::new(), true);
        Ok(())
    }

    fn resize(&self, cols: u16, rows: u16) -> Result<(), BackendError> {
        self.check_terminal()?;
        if cols == 0 || rows == 0 {
            return Err(BackendError::Other(format!(
                "terminal size {cols}x{rows} for agent {} has no cells",
                self.shared.id
            )));
        }
        let mut view = self.shared.lock_view();
        if view.emulator.size() == (cols, rows) {
            return Ok(());
        }
        view.emulator.resize(cols, rows);
        let mut out = Vec::new();
        view.screen.resize(cols, rows, &mut out);
        self.shared.output(&mut view, &out);
        Ok(())
    }

    fn screen(&self, scrollback: usize) -> Result<ScreenSnapshot, BackendError> {
        Ok(self.shared.lock_view().emulator.snapshot(scrollback))
    }

    fn subscribe(&self) -> Arc<OutputSubscriber> {
        let sub = self.shared.fanout.subscribe();
        if self.shared.finished.load(Ordering::SeqCst) {
            self.shared.fanout.unsubscribe(&sub);
        }
        sub
    }

    fn unsubscribe(&self, sub: &Arc<OutputSubscriber>) {
        self.shared.fanout.unsubscribe(sub);
    }

    fn signal(&self, force: bool) -> Result<(), BackendError> {
        self.check_terminal()?;
        let signal = if force { libc::SIGKILL } else { libc::SIGTERM };
        kill_group(self.shared.pid, signal).map_err(|err| {
            BackendError::Other(format!(
                "cannot signal process group {} of agent {}: {err}",
                self.shared.pid, self.shared.id
            ))
        })
    }

    fn alive(&self) -> bool {
        !self.shared.exited.load(Ordering::SeqCst)
    }

    fn close(&self) -> Result<(), BackendError> {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let killed = kill_group(self.shared.pid, libc::SIGKILL);
        self.shared.wake_io();
        self.shared.finished.store(true, Ordering::SeqCst);
        self.shared.fanout.close();
        reap_when(&self.shared.reaping, self.shared.pid, |r| r.closed = true);
        killed.map_err(|err| {
            BackendError::Other(format!(
                "cannot kill process group {} of agent {}: {err}",
                self.shared.pid, self.shared.id
            ))
        })
    }
}

impl AcpAgent {
    fn check_terminal(&self) -> Result<(), BackendError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(BackendError::Gone {
                id: self.shared.id.clone(),
            });
        }
        Ok(())
    }
}

impl Drop for AcpAgent {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::warn!(agent = %self.shared.id, "closing a dropped agent failed: {err}");
        }
    }
}

/// What the I/O thread owns.
struct Io {
    stdout: File,
    stderr: File,
    /// Read end of the wake-up pipe.
    wake: File,
    /// Readable once the process has ended (its pidfd).
    ended: File,
    stderr_log: OutputLog,
    confinement: fs::Confinement,
    timeout: Duration,
}

/// One item of a batch of lines read together.
enum Item {
    Message(Incoming),
    Bad(String, Vec<u8>),
    TooLong(usize),
}

/// The I/O thread, the agent's only one while it runs: reads stdout (messages) and stderr
/// (log), writes what waits for stdin, times the handshake, and watches for the process's end
/// (its pidfd), reported from a short-lived thread once the output is read. Ends when the
/// process has ended and both outputs are closed or the agent is closed.
fn io_loop(shared: &Arc<Shared>, mut io: Io) {
    let mut splitter = LineSplitter::new(LINE_LIMIT);
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut out_open, mut err_open) = (true, true);
    let mut running = true;
    // Held until both outputs are closed: the exit report waits for that (or a moment).
    let (drained_tx, drained_rx) = mpsc::channel::<()>();
    let (mut drained_tx, mut drained_rx) = (Some(drained_tx), Some(drained_rx));
    let mut reading = true;
    // (handshake step, when it times out, what it waits for)
    let mut deadline: Option<(u64, Instant, &'static str)> = None;
    use std::os::fd::AsRawFd;
    loop {
        let (want_write, wait) = {
            let core = shared.lock();
            (!core.outbox.is_empty(), core.client.handshake_wait())
        };
        deadline = match (wait, deadline) {
            (None, _) => None,
            (Some((step, _)), Some(d)) if d.0 == step => Some(d),
            (Some((step, what)), _) => Some((step, Instant::now() + io.timeout, what)),
        };
        // An awake view is put to sleep after SCREEN_IDLE without anything to do, as a quiet
        // pty terminal's screen is.
        let idle_at =
            (!shared.lock_view().emulator.is_asleep()).then(|| Instant::now() + SCREEN_IDLE);
        let timeout_ms = deadline
            .map(|(_, at, _)| at)
            .into_iter()
            .chain(idle_at)
            .min()
            .map_or(-1, |at| {
                let left = at.saturating_duration_since(Instant::now());
                i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX)
            });
        let mut fds = Vec::with_capacity(4);
        let mut tags = Vec::with_capacity(4);
        let mut add = |fd: i32, events: i16, tag: u8| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tags.push(tag);
        };
        add(io.wake.as_raw_fd(), libc::POLLIN, b'w');
        if running {
            add(io.ended.as_raw_fd(), libc::POLLIN, b'x');
        }
        if reading && out_open {
            add(io.stdout.as_raw_fd(), libc::POLLIN, b'o');
        }
        if reading && err_open {
            add(io.stderr.as_raw_fd(), libc::POLLIN, b'e');
        }
        if reading && want_write {
            add(shared.stdin.as_raw_fd(), libc::POLLOUT, b'i');
        }
        let timeout_ms = if reading { timeout_ms } else { -1 };
        let ready = match poll(&mut fds, timeout_ms) {
            Ok(ready) => ready,
            Err(err) => {
                tracing::warn!(agent = %shared.id, "polling the agent's pipes failed: {err}");
                break;
            }
        };
        if ready == 0 && reading && idle_at.is_some_and(|at| Instant::now() >= at) {
            let mut view = shared.lock_view();
            let asleep = view.emulator.sleep();
            view.log.release();
            drop(view);
            if asleep {
                // Not here: a trim may wait its turn, and this thread is the agent's only one.
                give_back_memory_soon();
            }
        }
        if reading && shared.closed.load(Ordering::SeqCst) {
            reading = false;
            drained_tx.take();
        }
        if !reading && fds[0].revents & libc::POLLIN != 0 {
            // The per-fd loop below is skipped from now on: drain the wake-up pipe here, or
            // a byte left in it would make every poll return at once.
            let mut sink = [0u8; 64];
            let _ = (&io.wake).read(&mut sink);
        }
        if let Some(at) = fds
            .iter()
            .zip(&tags)
            .position(|(fd, tag)| *tag == b'x' && fd.revents != 0)
        {
            fds[at].revents = 0;
            running = false;
            shared.process_ended(drained_rx.take());
        }
        if !reading {
            if !running {
                break;
            }
            continue;
        }
        if let Some((_, at, what)) = deadline {
            if Instant::now() >= at {
                let mut core = shared.lock();
                core.client.timed_out(what, io.timeout.as_secs());
                shared.settle(core, Vec::new(), false);
                deadline = None;
            }
        }
        for (fd, tag) in fds.iter().zip(&tags) {
            let ready = fd.revents & (libc::POLLIN | libc::POLLOUT | libc::POLLHUP | libc::POLLERR);
            if ready == 0 {
                continue;
            }
            match tag {
                b'w' => {
                    let mut sink = [0u8; 64];
                    let _ = (&io.wake).read(&mut sink);
                }
                b'i' => {
                    let mut core = shared.lock();
                    if let Err(err) = flush_input(&shared.stdin, &mut core.outbox) {
                        tracing::debug!(agent = %shared.id, "writing to the agent failed: {err}");
                        core.outbox.clear();
                    }
                }
                b'o' => {
                    let (n, more) = read_available(&io.stdout, &mut buf);
                    if n > 0 {
                        take_stdout(shared, &io.confinement, &mut splitter, &buf[..n]);
                    }
                    out_open = more;
                }
                _ => {
                    let (n, more) = read_available(&io.stderr, &mut buf);
                    if n > 0 {
                        io.stderr_log.write(&buf[..n]);
                        let mut tail = shared.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
                        tail.extend_from_slice(&buf[..n]);
                        let excess = tail.len().saturating_sub(STDERR_TAIL);
                        tail.drain(..excess);
                    }
                    err_open = more;
                }
            }
        }
        if !out_open && !err_open {
            io.stderr_log.flush();
            shared.lock_view().log.flush();
            reading = false;
            drained_tx.take();
            if !running {
                break;
            }
            continue;
        }
        if !want_write {
            // Quiet for now: put the logs on disk.
            io.stderr_log.flush();
        }
    }
    io.stderr_log.flush();
    shared.lock_view().log.flush();
}

/// Read what a pipe has now, up to a full buffer; the bytes read and whether more may come.
fn read_available(file: &File, buf: &mut [u8]) -> (usize, bool) {
    let mut filled = 0;
    let mut reader = file;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return (filled, false),
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (filled, false),
        }
    }
    (filled, true)
}

/// Messages from stdout: file requests are served here, outside the lock; the rest go to the
/// client in batches, one lock per batch.
fn take_stdout(
    shared: &Shared,
    confinement: &fs::Confinement,
    splitter: &mut LineSplitter,
    data: &[u8],
) {
    let mut pieces = Vec::new();
    splitter.push(data, &mut pieces);
    let mut batch = Vec::new();
    for piece in pieces {
        let line = match piece {
            Piece::TooLong(len) => {
                batch.push(Item::TooLong(len));
                continue;
            }
            Piece::Line(line) => line,
        };
        tracing::trace!(agent = %shared.id, "← {}", String::from_utf8_lossy(&line));
        match wire::parse(&line) {
            Ok(Incoming::Request { id, method, params }) if method.starts_with("fs/") => {
                deliver(shared, std::mem::take(&mut batch));
                let reply = serve_file(confinement, &id, &method, &params);
                let mut core = shared.lock();
                core.outbox.extend_from_slice(&reply);
                // Not an effect of the client's: flushed here.
                if let Err(err) = flush_input(&shared.stdin, &mut core.outbox) {
                    tracing::debug!(agent = %shared.id, "writing to the agent failed: {err}");
                    core.outbox.clear();
                }
                if !core.outbox.is_empty() {
                    shared.wake_io();
                }
            }
            Ok(message) => batch.push(Item::Message(message)),
            Err(why) => batch.push(Item::Bad(why, line)),
        }
    }
    deliver(shared, batch);
}

fn deliver(shared: &Shared, batch: Vec<Item>) {
    if batch.is_empty() {
        return;
    }
    let mut core = shared.lock();
    for item in batch {
        match item {
            Item::Message(message) => core.client.handle(message),
            Item::Bad(why, line) => core.client.malformed(&why, &line),
            Item::TooLong(len) => core.client.too_long(len, LINE_LIMIT),
        }
    }
    shared.settle(core, Vec::new(), false);
}

/// Answer `fs/read_text_file` or `fs/write_text_file`, confined.
fn serve_file(confinement: &fs::Confinement, id: &Value, method: &str, params: &Value) -> Vec<u8> {
    let path = params
        .get("path")
        .and_then(Value::as_str)
        .map(PathBuf::from);
    let result = match (method, path) {
        (_, None) => Err(fs::FsError::Refused("the request has no path".to_string())),
        ("fs/read_text_file", Some(path)) => confinement
            .read(
                &path,
                params.get("line").and_then(Value::as_u64),
                params.get("limit").and_then(Value::as_u64),
            )
            .map(|content| json!({"content": content})),
        ("fs/write_text_file", Some(path)) => match params.get("content").and_then(Value::as_str) {
            Some(content) => confinement.write(&path, content).map(|()| Value::Null),
            None => Err(fs::FsError::Refused(
                "the request has no content".to_string(),
            )),
        },
        (other, Some(_)) => {
            return wire::error_response(
                id,
                wire::METHOD_NOT_FOUND,
                &format!("orch does not offer {other}"),
            )
        }
    };
    match result {
        Ok(result) => wire::response(id, result),
        Err(err @ fs::FsError::Refused(_)) => {
            wire::error_response(id, wire::INVALID_PARAMS, err.message())
        }
        Err(err) => wire::error_response(id, wire::INTERNAL_ERROR, err.message()),
    }
}

impl Shared {
    /// The process has ended (the I/O thread saw its pidfd): learn how, and report it from a
    /// thread of its own once the output is read (`drained` disconnects) or after
    /// [`DRAIN_AFTER_EXIT`]; the process is reaped once the agent is closed as well.
    fn process_ended(self: &Arc<Self>, drained: Option<mpsc::Receiver<()>>) {
        let code = match wait_without_reaping(self.pid) {
            Ok(code) => code,
            Err(err) => {
                tracing::warn!(agent = %self.id, "learning how the agent ended failed: {err}");
                None
            }
        };
        self.exited.store(true, Ordering::SeqCst);
        let report = move |shared: &Shared| {
            if let Some(drained) = drained {
                let _ = drained.recv_timeout(DRAIN_AFTER_EXIT);
            }
            shared.report_exit(code);
        };
        if let Err(err) = start_thread("exit", &self.id, self, move |shared| report(shared)) {
            // The I/O thread must not wait for its own drain: report at once.
            tracing::warn!(agent = %self.id, "{err}; reporting the exit now");
            self.report_exit(code);
        }
    }

    fn report_exit(&self, code: Option<i32>) {
        let words = self.stderr_words();
        {
            let mut core = self.lock();
            core.client.exited(code, &words);
            self.settle(core, Vec::new(), false);
            self.lock_view().log.flush();
        }
        self.finished.store(true, Ordering::SeqCst);
        self.fanout.close();
        self.observer.exited(&self.id, code);
        reap_when(&self.reaping, self.pid, |r| r.ended = true);
    }
}

fn start_thread(
    job: &str,
    id: &str,
    shared: &Arc<Shared>,
    body: impl FnOnce(&Arc<Shared>) + Send + 'static,
) -> Result<(), String> {
    let shared = shared.clone();
    thread::Builder::new()
        .name(format!("acp-{job}-{id}"))
        .spawn(move || body(&shared))
        .map(drop)
        .map_err(|err| format!("cannot start the {job} thread: {err}"))
}
