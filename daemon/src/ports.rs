//! Ports: the small traits the runtime needs from the outside world — an event store, terminal
//! backends, its clients, a clock — and the plain data that crosses them.
//!
//! Nothing here names sled, tmux, a pty crate or tokio's I/O types: adapters implement these
//! traits, and the runtime only ever sees `dyn` ports. An operation a backend lacks returns
//! [`BackendError::Unsupported`] rather than being faked.

use std::path::PathBuf;
use std::sync::Arc;

use crate::core::event::StoredEvent;
use crate::core::state::State;
use crate::core::task::DecisionRecord;
use crate::fanout::OutputSubscriber;

/// What can go wrong in a terminal backend, as the runtime needs to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be used on this machine (tmux missing, server gone).
    #[error("backend {backend} is unavailable: {detail}")]
    Unavailable {
        backend: &'static str,
        detail: String,
    },
    /// The backend exists but cannot do this operation.
    #[error("backend {backend} does not support {what}")]
    Unsupported {
        backend: &'static str,
        what: &'static str,
    },
    /// Starting the program failed (no such file, bad cwd, ...).
    #[error("cannot start {program}: {detail}")]
    Spawn { program: String, detail: String },
    /// The terminal is gone (process exited and the terminal was closed, pane vanished).
    #[error("terminal {id} is gone")]
    Gone { id: String },
    /// Adopting: the terminal's program ended while no one watched it, with this exit code
    /// when it left one.
    #[error("the program of terminal {id} ended while no one watched it")]
    Ended { id: String, exit_code: Option<i32> },
    /// Anything else, with words.
    #[error("{0}")]
    Other(String),
}

/// Everything a backend needs to start one program in one terminal.
#[derive(Debug, Clone)]
pub struct TerminalSpec {
    /// The terminal id chosen by the runtime (`t-…`); backends key logs and windows by it.
    pub id: String,
    /// A human name (the agent's name, or the terminal id): the tmux window name.
    pub name: String,
    /// The program and its arguments; run without a shell.
    pub command: Vec<String>,
    /// Working directory of the program.
    pub cwd: PathBuf,
    /// Extra environment for the program (added to the daemon's own).
    pub env: Vec<(String, String)>,
    /// Initial size in cells.
    pub cols: u16,
    /// Initial size in cells.
    pub rows: u16,
    /// Where to append everything the program prints (bounded and rotated by the backend).
    pub log_path: PathBuf,
    /// Lines of scrollback the emulator keeps.
    pub scrollback: usize,
    /// Bytes of output log kept before it is rotated to `<log>.1` (so about twice this on disk).
    pub log_limit: u64,
}

/// A rendered screen, as `orch/terminal/screen` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenSnapshot {
    /// Scrollback lines requested (oldest first) followed by the visible lines, trailing blanks
    /// trimmed per line.
    pub lines: Vec<String>,
    /// Cursor row within the visible screen (0-based).
    pub cursor_row: u16,
    /// Cursor column (0-based).
    pub cursor_col: u16,
    /// Width in cells.
    pub cols: u16,
    /// Height in cells.
    pub rows: u16,
    /// The window title the program set, if any.
    pub title: Option<String>,
    /// Escape sequences that repaint this screen (colours included) into a fresh terminal view.
    pub ansi: String,
}

/// Callbacks from a terminal to the runtime. Called from backend reader threads: implementations
/// must be cheap and must never block (they post to a channel).
pub trait TerminalObserver: Send + Sync + 'static {
    /// Output arrived on terminal `id` (already fed to the emulator, log and subscribers).
    fn output(&self, id: &str);
    /// The program in terminal `id` ended. `exit_code` is `None` when it died of a signal or the
    /// code could not be learned (for example a vanished tmux pane).
    fn exited(&self, id: &str, exit_code: Option<i32>);
    /// Terminal `id` is gone without an exit status because its backend went away (a tmux
    /// server died): its program may or may not still run somewhere, but orch lost it.
    fn lost(&self, id: &str, why: &str) {
        let _ = why;
        self.exited(id, None);
    }
}

/// One live terminal: a program, its screen and its output stream.
pub trait Terminal: Send + Sync {
    /// Process id of the program (its process group leader), when known.
    fn pid(&self) -> Option<u32>;
    /// A backend handle that survives the daemon (tmux pane id), for [`TerminalBackend::adopt`].
    fn handle(&self) -> Option<String> {
        None
    }
    /// Write raw bytes (keystrokes, control characters) to the program's input.
    fn write(&self, data: &[u8]) -> Result<(), BackendError>;
    /// Write text as a paste: wrapped in bracketed-paste markers when the program enabled them.
    fn paste(&self, text: &str) -> Result<(), BackendError>;
    /// Resize; the emulator reflows.
    fn resize(&self, cols: u16, rows: u16) -> Result<(), BackendError>;
    /// The current screen with `scrollback` lines of history above it.
    fn screen(&self, scrollback: usize) -> Result<ScreenSnapshot, BackendError>;
    /// A new output subscription; output is coalesced into it and never blocks the reader.
    fn subscribe(&self) -> Arc<OutputSubscriber>;
    /// Drop a subscription made by [`Terminal::subscribe`].
    fn unsubscribe(&self, sub: &Arc<OutputSubscriber>);
    /// SIGTERM (or SIGKILL when `force`) to the program's whole process group.
    fn signal(&self, force: bool) -> Result<(), BackendError>;
    /// Whether the program still runs.
    fn alive(&self) -> bool;
    /// Release the terminal's resources (kill the program if it still runs, close the pane).
    fn close(&self) -> Result<(), BackendError>;
}

/// Availability of a backend, for `orch/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendProbe {
    /// Whether terminals can be opened on it now.
    pub available: bool,
    /// Version or reason, in words.
    pub detail: String,
}

/// A way to run programs in terminals (`pty`, `tmux`).
pub trait TerminalBackend: Send + Sync {
    /// `"pty"` or `"tmux"`, as on the wire.
    fn name(&self) -> &'static str;
    /// Whether it can be used now, and its version.
    fn probe(&self) -> BackendProbe;
    /// Start `spec.command` in a new terminal.
    fn spawn(
        &self,
        spec: TerminalSpec,
        observer: Arc<dyn TerminalObserver>,
    ) -> Result<Arc<dyn Terminal>, BackendError>;
    /// Take over a terminal that outlived a previous daemon, found by its handle.
    fn adopt(
        &self,
        spec: TerminalSpec,
        handle: &str,
        observer: Arc<dyn TerminalObserver>,
    ) -> Result<Arc<dyn Terminal>, BackendError> {
        let _ = (spec, handle, observer);
        Err(BackendError::Unsupported {
            backend: self.name(),
            what: "adopting terminals",
        })
    }
    /// Terminals of this workspace found on the backend that outlived their daemon: `(handle,
    /// terminal id)`, for [`TerminalBackend::close_leftover`]. None on backends whose
    /// terminals die with the daemon.
    fn leftovers(&self) -> Result<Vec<(String, String)>, BackendError> {
        Ok(Vec::new())
    }
    /// Close a leftover terminal by its handle (its program is ended with it).
    fn close_leftover(&self, handle: &str) -> Result<(), BackendError> {
        let _ = handle;
        Ok(())
    }
}

/// How a remote host's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// The first connection is being made.
    Connecting,
    /// Connected: its agents can be driven.
    Connected,
    /// The connection failed or dropped; orch retries with backoff.
    Unreachable,
}

impl HostState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Connecting => "connecting",
            HostState::Connected => "connected",
            HostState::Unreachable => "unreachable",
        }
    }
}

/// A remote host's connection, for `orch/status` and the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct HostStatus {
    /// How it stands.
    pub state: HostState,
    /// The host's tmux version, once connected.
    pub tmux_version: Option<String>,
    /// The last round trip through the connection.
    pub rtt_ms: Option<f64>,
    /// Why it is unreachable (the SSH or tmux error), in words; empty otherwise.
    pub detail: String,
}

/// Told when a host's connection changes state (connected, dropped). Called on the host's own
/// watcher thread: implementations post and return.
pub trait HostObserver: Send + Sync + 'static {
    /// Host `name` is now as `status` says.
    fn host_changed(&self, name: &str, status: HostStatus);
}

/// A remote host whose tmux runs agents (`[hosts.<name>]`): its terminal backend, and one
/// connection kept up with reconnects.
pub trait RemoteHost: Send + Sync {
    /// The configured name.
    fn name(&self) -> &str;
    /// The terminal backend that runs programs there.
    fn backend(&self) -> Arc<dyn TerminalBackend>;
    /// How the connection stands now.
    fn status(&self) -> HostStatus;
    /// Start keeping the connection up, reporting each change of state to `observer`.
    fn watch(&self, observer: Arc<dyn HostObserver>);
}

/// What an agent that speaks the Agent Client Protocol needs to start, beyond a terminal's spec
/// (its screen is a drawing of the conversation, with the same log and subscriptions).
#[derive(Debug, Clone)]
pub struct ConversationSpec {
    /// Command, cwd, env, size, output log: as for a terminal.
    pub terminal: TerminalSpec,
    /// A session of an earlier run of this agent, to continue where the agent can.
    pub resume_session: Option<String>,
    /// A session mode to switch to.
    pub mode: Option<String>,
    /// An `authenticate` method to use before creating the session.
    pub auth_method: Option<String>,
}

/// What a prompt given to a [`Conversation`] became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompted {
    /// Sent: the turn runs.
    Started,
    /// Waiting behind the running turn (or the handshake), `position` from 1.
    Queued {
        /// Its place in the queue.
        position: usize,
    },
}

/// A permission request's option, as the agent gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitOption {
    /// The agent's `optionId`.
    pub id: String,
    /// Its label.
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once`, `reject_always`.
    pub kind: String,
}

/// What an ACP agent says, in order, in domain terms. Streamed message chunks arrive whole
/// ([`Said::Message`] once the message is complete); history a continued session replays is
/// not repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// The session is ready for prompts.
    Ready {
        /// The agent's session id.
        session_id: String,
        /// `new`, `loaded` or `resumed`.
        origin: &'static str,
        /// Why the session asked for could not be continued, if so.
        note: Option<String>,
    },
    /// A prompt was sent: its turn runs.
    TurnStarted {
        /// The prompt.
        text: String,
    },
    /// A turn ended: `Ok(stopReason)`, or `Err(why)` when the agent failed it.
    TurnEnded {
        /// How.
        end: Result<String, String>,
    },
    /// A whole message.
    Message {
        /// `agent` or `thought` (prompts are [`Said::TurnStarted`]).
        role: &'static str,
        /// Its text.
        text: String,
    },
    /// A tool call appeared or changed status.
    ToolCall {
        /// The agent's id of the call.
        call_id: String,
        /// What it does, for people.
        title: String,
        /// `read`, `edit`, `execute`, ...
        kind: String,
        /// `pending`, `in_progress`, `completed` or `failed`.
        status: String,
    },
    /// The plan, whole.
    Plan(Vec<crate::core::agent::PlanStep>),
    /// The agent asks permission.
    PermissionRequested {
        /// The request, numbered by this process.
        request: u64,
        /// What it is about (the tool call's title).
        title: String,
        /// Its input, in words.
        detail: String,
        /// The agent's options, in its order.
        options: Vec<PermitOption>,
    },
    /// An open request went away unanswered (its turn ended or was cancelled).
    PermissionDismissed {
        /// The request.
        request: u64,
        /// Why, in words.
        why: String,
    },
    /// The agent did something wrong that orch survives.
    Problem(String),
    /// The agent is given up on (its handshake failed); its exit follows.
    Failed(String),
}

/// Callbacks from an ACP agent: its terminal's, and what it says. The same rules as
/// [`TerminalObserver`]: cheap, never blocking.
pub trait ConversationObserver: TerminalObserver {
    /// Agent terminal `id` said something.
    fn said(&self, id: &str, said: Said);
}

/// The protocol side of a running ACP agent (its screen side is a [`Terminal`]).
pub trait Conversation: Send + Sync {
    /// Send a prompt, or queue it behind the running turn.
    fn prompt(&self, text: &str) -> Result<Prompted, BackendError>;
    /// Cancel the running turn (`session/cancel`); whether one was running.
    fn cancel(&self) -> Result<bool, BackendError>;
    /// Answer open permission request `request` with the agent's `option_id`.
    fn permit(&self, request: u64, option_id: &str) -> Result<(), BackendError>;
}

/// A started ACP agent: its screen side and its protocol side.
pub type ConversationStarted = (Arc<dyn Terminal>, Arc<dyn Conversation>);

/// A way to run agents that speak a protocol (`acp`).
pub trait ConversationBackend: Send + Sync {
    /// `"acp"`, as on the wire.
    fn name(&self) -> &'static str;
    /// Start an agent; the handshake runs in the background ([`Said::Ready`] or
    /// [`Said::Failed`] tells how it went).
    fn start(
        &self,
        spec: ConversationSpec,
        observer: Arc<dyn ConversationObserver>,
    ) -> Result<ConversationStarted, BackendError>;
}

/// What can go wrong with an agent's worktree, as the runtime tells it apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VcsError {
    /// Worktrees cannot be made here: not a git repository, git missing or too old.
    #[error("{0}")]
    Unavailable(String),
    /// A value the person gave is wrong; `field` names it.
    #[error("{message}")]
    Invalid {
        /// The field on the wire.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The merge conflicts in these files; the workspace was left exactly as it was.
    #[error("merge conflict in {}", .files.join(", "))]
    Conflict {
        /// The conflicting files.
        files: Vec<String>,
    },
    /// The repository's state forbids it now (uncommitted changes in the way, the base not
    /// checked out, nothing to merge).
    #[error("{0}")]
    Refused(String),
    /// Anything else: git failed, a setup command failed, I/O.
    #[error("{0}")]
    Failed(String),
}

/// A worktree to make for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeRequest {
    /// Where to check it out (outside the repository).
    pub path: PathBuf,
    /// Its branch.
    pub branch: String,
    /// What to start from; default the workspace's current branch (or commit).
    pub base: Option<String>,
}

/// A worktree made (or checked out again), and what a person may want to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeMade {
    /// The record to keep.
    pub worktree: crate::core::agent::WorktreeRecord,
    /// Files skipped, setup output.
    pub notes: Vec<String>,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    /// Relative to the worktree's top.
    pub path: String,
    /// `added`, `modified`, `deleted` or `renamed`.
    pub status: &'static str,
    /// A renamed file's old path.
    pub old_path: Option<String>,
    /// Lines added.
    pub additions: u64,
    /// Lines deleted.
    pub deletions: u64,
    /// git considers it binary.
    pub binary: bool,
}

/// What a worktree changed against a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffReport {
    /// The base, as named.
    pub base: String,
    /// Where the base and the branch meet.
    pub merge_base: String,
    /// The branch.
    pub branch: String,
    /// Every changed file.
    pub files: Vec<ChangedFile>,
    /// The unified diff, cut at a line boundary when too long.
    pub diff: String,
    /// Whether it was cut.
    pub truncated: bool,
}

/// A landed merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The base's new head.
    pub commit: String,
    /// The files the merge changed.
    pub files: Vec<String>,
}

/// Work on a worktree's branch that its base does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmerged {
    /// Commits not in the base (and not already landed by a squash).
    pub commits: u64,
    /// Uncommitted and untracked files.
    pub uncommitted: Vec<String>,
}

impl Unmerged {
    /// Whether discarding would lose something.
    pub fn exists(&self) -> bool {
        self.commits > 0 || !self.uncommitted.is_empty()
    }
}

/// What a recorded worktree is now, after a daemon restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorktreeFound {
    /// Checked out where recorded, on its branch.
    CheckedOut,
    /// Checked out where recorded, on another branch (or detached).
    OnOtherBranch(Option<String>),
    /// Not checked out; its branch exists.
    Paused,
    /// Neither the checkout nor the branch exists.
    Gone,
}

/// Agents' own checkouts of the workspace's repository (git worktrees). Every call blocks
/// (git processes, setup commands): the runtime makes them off its loop.
pub trait Worktrees: Send + Sync {
    /// Make a worktree on a new branch and prepare it (copied files, setup commands).
    fn create(&self, req: &WorktreeRequest) -> Result<WorktreeMade, VcsError>;
    /// What it changed against its base (or `base`).
    fn diff(
        &self,
        wt: &crate::core::agent::WorktreeRecord,
        base: Option<&str>,
    ) -> Result<DiffReport, VcsError>;
    /// How many files it changed against its base.
    fn changed_count(&self, wt: &crate::core::agent::WorktreeRecord) -> Result<u64, VcsError>;
    /// Commit what the agent left uncommitted (when `commit_first`), then merge its branch into
    /// its base, checked out in the workspace. Merges into one workspace run one at a time.
    fn land(
        &self,
        wt: &crate::core::agent::WorktreeRecord,
        strategy: &str,
        message: Option<&str>,
        commit_first: bool,
        agent: &str,
    ) -> Result<Landed, VcsError>;
    /// Work its base does not have.
    fn unmerged(&self, wt: &crate::core::agent::WorktreeRecord) -> Result<Unmerged, VcsError>;
    /// Remove the checkout and the branch, whatever they hold.
    fn discard(&self, wt: &crate::core::agent::WorktreeRecord) -> Result<(), VcsError>;
    /// Commit what the agent left uncommitted, then remove the checkout; the branch stays.
    fn pause(&self, wt: &crate::core::agent::WorktreeRecord, agent: &str) -> Result<(), VcsError>;
    /// Check a paused worktree's branch out again, prepared like a new one.
    fn resume(&self, wt: &crate::core::agent::WorktreeRecord) -> Result<WorktreeMade, VcsError>;
    /// What each recorded worktree is now.
    fn reconcile(
        &self,
        recorded: &[crate::core::agent::WorktreeRecord],
    ) -> Result<Vec<WorktreeFound>, VcsError>;
}

/// What can go wrong in the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store was written by a newer orch; it is never overwritten.
    #[error("store at {path} has schema version {found}, newer than this orch supports ({supported}); upgrade orch or use another ORCH_STATE_DIR")]
    TooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    /// A record could not be decoded.
    #[error("store record {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    /// The underlying storage failed.
    #[error("store I/O failed: {0}")]
    Io(String),
}

/// Saves snapshots of the state from any thread: [`EventStore::snapshot_writer`].
pub trait SnapshotWrite: Send {
    /// Save a snapshot of `state` as of `seq`, durably (the device flushed).
    fn write(&self, seq: u64, state: &State) -> Result<(), StoreError>;
}

/// What [`EventStore::compact`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Events dropped.
    pub removed: u64,
    /// More events could be dropped: `at_most` stopped it.
    pub more: bool,
}

/// The durable, append-only event log plus snapshots of the state it folds into.
pub trait EventStore: Send {
    /// The last appended sequence number (0 for an empty log).
    fn last_seq(&self) -> u64;
    /// Append events (their `seq` must continue the log without a gap). Not yet durable.
    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// Make everything appended so far durable (device flush). Called once per batch.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Events with `seq > since`, in order, at most `limit`.
    fn read_since(&self, since: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;
    /// The newest snapshot, if any: the state as of its `seq`.
    fn load_snapshot(&self) -> Result<Option<(u64, State)>, StoreError>;
    /// Save a snapshot of `state` as of `seq`, durably.
    fn save_snapshot(&mut self, seq: u64, state: &State) -> Result<(), StoreError> {
        self.snapshot_writer().write(seq, state)
    }
    /// Something that saves snapshots from another thread (the runtime's snapshot thread).
    /// Snapshots must be written one at a time and in order (a later snapshot must never be
    /// overwritten by an earlier one: retention drops what the newest covers).
    fn snapshot_writer(&self) -> Box<dyn SnapshotWrite>;
    /// Drop the oldest events with `seq < before` that a snapshot already covers (retention),
    /// about `at_most` of them: a store keeping events in groups drops whole groups, so fewer
    /// (never more) unless the first group alone is larger. Says how many went and whether
    /// more would have gone but for `at_most`.
    fn compact(&mut self, before: u64, at_most: usize) -> Result<Compacted, StoreError>;
    /// Bytes on disk, for `orch/status`.
    fn size_bytes(&self) -> u64;
    /// Where it lives, for `orch/status`.
    fn path(&self) -> PathBuf;
}

/// One connected client, as the runtime speaks to it: in domain terms. The rpc layer implements
/// it on a connection and alone knows the wire shapes; the runtime never sees JSON.
pub trait ClientPort: Send + Sync {
    /// Who it is (`socket pid 4242`, `stdio`), for logs and decision reasons.
    fn peer(&self) -> String;
    /// Whether everything sent to it was written out (the daemon's stop waits for this).
    fn drained(&self) -> bool;
    /// Events for one of its subscriptions (`orch/event` each), in order, handed over at once:
    /// those of `batch` at the indices `matching`. A batch goes to every subscription, most
    /// of which get the same events: the port may share its work on them.
    fn events(&self, subscription: &str, batch: &Arc<[StoredEvent]>, matching: &[usize]);
    /// A warning for its log (`window/logMessage`).
    fn warn(&self, message: &str);
    /// Ask it to choose one of a decision's options (`window/showMessageRequest`); `answer` is
    /// called with the option if the client chooses one.
    fn ask(&self, decision: &DecisionRecord, answer: Box<dyn FnOnce(String) + Send>);
    /// A step of a task's work-done progress (`$/progress`); steps for one task are sent in
    /// order, the first one begins the progress and `End` ends it.
    fn progress(&self, task: &str, step: Progress);
    /// Deliver a terminal's output from `sub` (`orch/terminal/output`) until the returned
    /// handle is stopped; a slow client's output backs up into `sub`, never into the terminal.
    fn follow(&self, terminal: &str, sub: Arc<OutputSubscriber>) -> FollowHandle;
}

/// Stops a [`ClientPort::follow`] delivery when told to, or when dropped.
pub struct FollowHandle(Option<Box<dyn FnOnce() + Send>>);

impl FollowHandle {
    /// A handle that runs `stop` once.
    pub fn new(stop: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(stop)))
    }

    /// Stop the delivery.
    pub fn stop(mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Drop for FollowHandle {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// One step of a task's progress, for clients that show work-done progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Something happened (the first one begins the progress, with `title`).
    Report {
        /// Shown when the progress begins.
        title: String,
        /// What happens now.
        message: String,
    },
    /// The task is settled.
    End {
        /// How it ended.
        message: String,
    },
}

/// The time of day, for the events the runtime records (rules take it as a value).
pub trait Clock: Send + Sync {
    /// Now, as an RFC 3339 UTC string with milliseconds.
    fn now_rfc3339(&self) -> String;
}
