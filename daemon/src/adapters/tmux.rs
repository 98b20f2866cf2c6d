//! The tmux terminal backend: one tmux session per workspace on orch's own tmux server
//! (`tmux -L orch-<uid>`), a window per terminal, all driven through one long-lived control-mode
//! client per server rather than a tmux process per command. Programs survive the daemon; a
//! person can `tmux -L orch-<uid> attach` and watch them; a later daemon re-adopts them by pane id.
//!
//! Output arrives as `%output` notifications on the client's reader thread and is published to
//! the terminal's subscribers, appended to its log and announced to the observer. Every program
//! runs under a small `/bin/sh` start script (see `command.rs`) that, when the program ends,
//! prints an exit marker (an OSC 2 title sequence, `orch-exited:<id>:<status>`) and keeps the
//! pane open until tmux has sent all output. The reader thread finds the marker in the pane's
//! `%output`, after every byte the program printed, keeps it out of the output and reports the
//! exit at once. A thread that lists the panes every 200 ms while a terminal runs is the
//! fallback: it reads the marker from the pane title, or tmux's own status when there is no
//! marker (a killed start script), and reports a pane
//! that vanished (windows keep their dead pane, so the screen can still be read). A dead server
//! ends every terminal on it as lost, and the next spawn starts a new server after the old one
//! is gone.
//!
//! This is the only module that knows tmux exists; it implements the ports and knows nothing of
//! the runtime, the wire or the store. `control.rs` is the protocol client, `command.rs` the
//! commands and their parsers, `log.rs` the output log.

mod command;
// Public only to the fuzzer (`cargo fuzz` builds with `--cfg fuzzing`): the framing of untrusted
// tmux output is fuzzed directly, without a tmux server.
#[cfg(fuzzing)]
pub mod control;
#[cfg(not(fuzzing))]
mod control;
mod log;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::fanout::{OutputFanout, OutputSubscriber};
use crate::ports::{
    BackendError, BackendProbe, ScreenSnapshot, Terminal, TerminalBackend, TerminalObserver,
    TerminalSpec,
};

use command::{CommandError, Ending, Request};
use control::{Block, ControlClient, ControlError, ControlEvents, ReplyHook};
use log::OutputLog;
#[cfg(test)]
use log::LOG_LIMIT;

/// The backend's name, as on the wire.
const NAME: &str = "tmux";

/// How long a command may take before the caller gets an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a host's first answer may take: an SSH login runs the user's shell start-up files,
/// which can be slow (a client killed half way through them may leave their locks behind).
const REMOTE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to keep retrying to start a client while an old server is still going away.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// How long to wait for a dead server's process to end before starting a new one.
const SERVER_EXIT_WAIT: Duration = Duration::from_secs(5);

/// How often panes are checked for exited programs.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Polls a dead pane may go without an exit status before it is reported with none (tmux is
/// nudged to reap it on each of them, see [`watch_exits`]).
const UNSETTLED_POLLS: u32 = 10;

/// Most lines of history a screen request may ask tmux for.
const MAX_SCROLLBACK: usize = 100_000;

/// Where the tmux backend runs its programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmuxConfig {
    /// The command that runs tmux, before tmux's own arguments: `["tmux"]` by default; on a
    /// remote host, the program on that host (`["tmux"]`).
    pub tmux: Vec<String>,
    /// The server's socket name (`tmux -L`): orch's own server, apart from the user's.
    pub socket_name: String,
    /// The session holding this workspace's windows, named after the workspace.
    pub session: String,
    /// A remote host: the argv that reaches it (`["ssh", "me@buildhost"]`), to which the tmux
    /// command goes as one shell line. Empty: tmux runs on this machine.
    pub ssh: Vec<String>,
}

impl TmuxConfig {
    /// The defaults for a workspace: `tmux` from `PATH`, socket `orch-<uid>`.
    pub fn new(session: impl Into<String>) -> Self {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        Self {
            tmux: vec!["tmux".into()],
            socket_name: format!("orch-{uid}"),
            session: session.into(),
            ssh: Vec::new(),
        }
    }

    /// The argv that runs tmux with `args` (the socket is the caller's to give): the tmux
    /// command then `args`, or on a remote host the `ssh` argv then that as one shell line.
    pub fn argv(&self, args: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut tmux = if self.tmux.is_empty() {
            vec!["tmux".into()]
        } else {
            self.tmux.clone()
        };
        tmux.extend(args);
        if self.ssh.is_empty() {
            return tmux;
        }
        let mut argv = self.ssh.clone();
        argv.push(crate::config::shell_line(&tmux));
        argv
    }

    /// The command that shows a person the window of pane `handle` (`tmux -L <socket>
    /// attach-session -t %N` selects the pane's window); on a remote host through `ssh -t`.
    pub fn attach_argv(&self, handle: &str) -> Vec<String> {
        let mut argv = self.argv([
            "-L".into(),
            command::sanitize_name(&self.socket_name),
            "attach-session".into(),
            "-t".into(),
            handle.into(),
        ]);
        if !self.ssh.is_empty() {
            // tmux attach needs a terminal on the host.
            argv.insert(1, "-t".into());
        }
        argv
    }

    /// Whether tmux runs on this machine (no host, and the prefix's program is `tmux` itself), so
    /// that paths can be checked and process groups signalled here.
    pub fn is_local(&self) -> bool {
        self.ssh.is_empty()
            && self
                .tmux
                .first()
                .and_then(|p| Path::new(p).file_name())
                .is_some_and(|name| name == "tmux")
    }
}

/// A pane found on the server that an orch daemon made, for re-adoption after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurvivingPane {
    /// The pane id (`%N`) to pass to [`TerminalBackend::adopt`].
    pub handle: String,
    /// The terminal id the pane was spawned for.
    pub terminal_id: String,
    /// The window name.
    pub name: String,
    /// Process id of the program.
    pub pid: Option<u32>,
    /// Whether the program still runs (adopting a dead one gives [`BackendError::Gone`]).
    pub alive: bool,
    /// The exit code of a program that ended with one.
    pub exit_code: Option<i32>,
}

/// The tmux backend. Connects to tmux on first use and again after a server died.
///
/// Its methods and its terminals' block the calling thread for one round trip through the
/// control client (tens of microseconds; `REPLY_TIMEOUT` at worst), and a (re)connect for up to
/// a few seconds while an old server goes away: call them where blocking is allowed. Observers
/// are called on the client's reader thread (`output`, and `exited` when the server dies) and on
/// its poll thread (`exited`); a command sent from the reader thread fails rather than hang.
pub struct TmuxBackend {
    /// The configuration, with socket and session names made safe for tmux.
    config: TmuxConfig,
    /// The current server connection, and the pid of a server that died.
    slot: Mutex<Slot>,
    /// Serializes spawns, which choose a free window index before creating the window.
    spawn_lock: Mutex<()>,
    /// The last probe and when it ran: `tmux -V` is a process, too slow for every status request.
    probed: Arc<Mutex<Option<(std::time::Instant, BackendProbe)>>>,
}

/// How long a probe result is reused.
const PROBE_TTL: Duration = Duration::from_secs(5);

/// The backend's view of its server.
#[derive(Default)]
struct Slot {
    /// The live connection, if any.
    server: Option<Arc<Server>>,
    /// Process id of the last server whose connection ended, to wait for before starting anew.
    dead_pid: Option<u32>,
}

impl TmuxBackend {
    /// A backend for `config`. Socket and session names are reduced to letters, digits, `-` and
    /// `_`, as tmux would otherwise rewrite them behind our back.
    pub fn new(mut config: TmuxConfig) -> Self {
        config.socket_name = command::sanitize_name(&config.socket_name);
        config.session = command::sanitize_name(&config.session);
        if config.tmux.is_empty() {
            config.tmux = vec!["tmux".into()];
        }
        Self {
            config,
            slot: Mutex::new(Slot::default()),
            spawn_lock: Mutex::new(()),
            probed: Arc::new(Mutex::new(None)),
        }
    }

    /// The configuration in use (names as sanitized).
    pub fn config(&self) -> &TmuxConfig {
        &self.config
    }

    /// Connect now if not connected (starting tmux where none runs); the server's tmux version.
    pub fn connect_now(&self) -> Result<String, BackendError> {
        let server = self.server_or_connect(true)?;
        Ok(server.version.clone().unwrap_or_default())
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected().is_ok()
    }

    /// The live connection, without connecting (a remote host's watcher owns that).
    fn connected(&self) -> Result<Arc<Server>, BackendError> {
        self.slot
            .lock()
            .unwrap()
            .server
            .clone()
            .filter(|s| !s.control.is_closed())
            .ok_or_else(|| unavailable("not connected".into()))
    }

    /// One round trip through the live connection, timed; `None` without one or when it failed
    /// within `timeout`.
    pub fn ping(&self, timeout: Duration) -> Option<Duration> {
        let server = self.connected().ok()?;
        let line = command::server_pid().line().ok()?;
        let started = Instant::now();
        server
            .control
            .request(&line, 1, None, timeout)
            .ok()
            .map(|_| started.elapsed())
    }

    /// How long since the live connection last carried anything from tmux; `None` without one.
    pub fn quiet_for(&self) -> Option<Duration> {
        let server = self.connected().ok()?;
        Some(server.control.quiet_for())
    }

    /// End the connection (one that stopped answering): its terminals end as the router says.
    pub fn disconnect(&self) {
        let server = self.slot.lock().unwrap().server.take();
        if let Some(server) = server {
            server.control.kill();
        }
    }

    /// Panes in the workspace session that an orch daemon spawned, alive or not, for
    /// reconciliation after a restart. Starts no server: none running means no pane survived.
    pub fn surviving(&self) -> Result<Vec<SurvivingPane>, BackendError> {
        let request = command::list_panes(Some(&self.config.session));
        let connected = self.connected().ok();
        let panes = match connected {
            Some(server) => server.run(&request).map_err(|e| e.into_backend(None))?,
            None => match self.one_off(&request)? {
                Some(panes) => panes,
                None => return Ok(Vec::new()),
            },
        };
        Ok(panes
            .into_iter()
            .filter_map(|p| {
                let terminal_id = p.terminal_id.clone()?;
                let ending = p.ending(&terminal_id);
                Some(SurvivingPane {
                    handle: p.pane_id,
                    terminal_id,
                    name: p.window_name,
                    pid: p.pid,
                    alive: ending == Ending::Running,
                    exit_code: match ending {
                        Ending::Ended(code) => code,
                        _ => None,
                    },
                })
            })
            .collect())
    }

    /// Run one command in a tmux process of its own (no control client, so no server started);
    /// `None` when there is no server or no session.
    fn one_off<T>(&self, request: &Request<T>) -> Result<Option<T>, BackendError> {
        let mut args = vec![
            "-u".to_string(),
            "-L".into(),
            self.config.socket_name.clone(),
        ];
        args.extend(request.argv());
        let argv = self.config.argv(args);
        let (program, rest) = argv.split_first().expect("non-empty argv");
        let output = Command::new(program)
            .args(rest)
            .env_remove("TMUX")
            .output()
            .map_err(|e| unavailable(format!("cannot run {program}: {e}")))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            if stderr.contains("no server running")
                || stderr.contains("can't find session")
                || stderr.contains("error connecting")
            {
                return Ok(None);
            }
            return Err(BackendError::Other(format!(
                "tmux {} failed: {}",
                request.describe(),
                stderr.trim()
            )));
        }
        let lines = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        request
            .finish(&[Block {
                lines,
                error: false,
            }])
            .map(Some)
            .map_err(|e| BackendError::Other(e.to_string()))
    }

    /// The live server connection, connecting (and starting tmux) if there is none. A remote
    /// host's connection is made only by its watcher ([`TmuxBackend::connect_now`]), which
    /// reports the outage and the return: a call from anywhere else fails at once without one.
    fn server(&self) -> Result<Arc<Server>, BackendError> {
        self.server_or_connect(self.config.ssh.is_empty())
    }

    fn server_or_connect(&self, connect: bool) -> Result<Arc<Server>, BackendError> {
        let mut slot = self.slot.lock().unwrap();
        if let Some(server) = &slot.server {
            if !server.control.is_closed() {
                return Ok(server.clone());
            }
            slot.dead_pid = server.pid;
            slot.server = None;
        }
        if let Some(pid) = slot.dead_pid.take().filter(|_| self.config.is_local()) {
            // `kill-server` returns before the server is gone: a client started now could reach
            // the dying server and be dropped, so wait for its process to end first.
            wait_for_exit(pid, SERVER_EXIT_WAIT);
        }
        if !connect {
            return Err(unavailable("not connected to the host".into()));
        }
        let server = self.connect()?;
        slot.server = Some(server.clone());
        Ok(server)
    }

    fn connect(&self) -> Result<Arc<Server>, BackendError> {
        let remote = !self.config.ssh.is_empty();
        if !remote {
            // (A host's tmux is known once connected: no second SSH connection to ask first.)
            let probe = self.probe();
            if !probe.available {
                return Err(unavailable(probe.detail));
            }
        }
        let argv = self.config.argv(command::control_argv(
            &self.config.socket_name,
            &self.config.session,
        ));
        let peer = self.config.socket_name.clone();
        let deadline = Instant::now() + CONNECT_DEADLINE;
        let mut delay = Duration::from_millis(10);
        loop {
            let router = Arc::new(Router {
                remote,
                ..Router::default()
            });
            let first_answer = if remote {
                REMOTE_START_TIMEOUT
            } else {
                REPLY_TIMEOUT
            };
            match ControlClient::start(&argv, &peer, router.clone(), first_answer) {
                Ok((control, _)) => {
                    let mut server = Server {
                        control,
                        router,
                        pid: None,
                        version: None,
                        local: self.config.is_local(),
                        buffers: AtomicU64::new(0),
                    };
                    if let Ok((pid, version)) = server.run(&command::server_pid_and_version()) {
                        server.pid = Some(pid);
                        server.version = Some(version);
                    }
                    if remote {
                        // A host's tmux is checked here, where its version is first known.
                        let version = server.version.clone().unwrap_or_default();
                        if let Err(why) = command::check_version(&format!("tmux {version}")) {
                            server.control.kill();
                            return Err(unavailable(format!("the host's {why}")));
                        }
                    }
                    let server = Arc::new(server);
                    let weak = Arc::downgrade(&server);
                    thread::Builder::new()
                        .name(format!("tmux-poll-{peer}"))
                        .spawn(move || watch_exits(weak))
                        .map_err(|e| BackendError::Other(format!("cannot start a thread: {e}")))?;
                    tracing::info!(socket = %peer, session = %self.config.session, pid = ?server.pid, "connected to tmux");
                    return Ok(server);
                }
                Err(ControlError::Start { program, detail }) => {
                    return Err(unavailable(format!("cannot run {program}: {detail}")));
                }
                // An old server on its way out drops new clients: try again until it is gone.
                Err(e @ ControlError::Closed(_))
                    if !remote && Instant::now() + delay < deadline =>
                {
                    tracing::debug!(socket = %peer, error = %e, "tmux client ended at start, retrying");
                    thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(250));
                }
                Err(e) => return Err(unavailable(e.to_string())),
            }
        }
    }
}

/// Run `tmux -V` now (on the host, for a remote one): whether tmux can be used, and its
/// version.
fn probe_tmux(config: &TmuxConfig) -> BackendProbe {
    {
        let argv = config.argv(["-V".to_string()]);
        let (program, rest) = argv.split_first().expect("non-empty argv");
        match Command::new(program)
            .args(rest)
            .stdin(std::process::Stdio::null())
            .output()
        {
            Err(e) => BackendProbe {
                available: false,
                detail: format!("cannot run {program}: {e}"),
            },
            Ok(out) if !out.status.success() => BackendProbe {
                available: false,
                detail: format!(
                    "{program} -V failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            },
            Ok(out) => match command::check_version(&String::from_utf8_lossy(&out.stdout)) {
                Ok(version) => BackendProbe {
                    available: true,
                    detail: version,
                },
                Err(why) => BackendProbe {
                    available: false,
                    detail: why,
                },
            },
        }
    }
}

impl TerminalBackend for TmuxBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self) -> BackendProbe {
        let mut probed = self.probed.lock().unwrap();
        match probed.as_ref() {
            Some((at, p)) if at.elapsed() < PROBE_TTL => p.clone(),
            Some((_, p)) => {
                // Stale: answer with it now and refresh on a thread of its own, so no request
                // (`orch/status` runs on the daemon's single loop) ever waits for `tmux -V`.
                let stale = p.clone();
                *probed = Some((std::time::Instant::now(), stale.clone()));
                let cache = self.probed.clone();
                let config = self.config.clone();
                std::thread::spawn(move || {
                    let fresh = probe_tmux(&config);
                    *cache.lock().unwrap() = Some((std::time::Instant::now(), fresh));
                });
                stale
            }
            None => {
                let p = probe_tmux(&self.config);
                *probed = Some((std::time::Instant::now(), p.clone()));
                p
            }
        }
    }

    fn spawn(
        &self,
        spec: TerminalSpec,
        observer: Arc<dyn TerminalObserver>,
    ) -> Result<Arc<dyn Terminal>, BackendError> {
        let program = spec.command.first().cloned().unwrap_or_default();
        let spawn_err = |detail: String| BackendError::Spawn {
            program: program.clone(),
            detail,
        };
        let cwd = check_spec(&spec).map_err(spawn_err)?;
        if self.config.is_local() {
            check_local(&spec).map_err(spawn_err)?;
        }
        let server = self.server()?;
        let pane = Arc::new(Pane::new(&spec, observer));
        let _one_at_a_time = self.spawn_lock.lock().unwrap();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let indexes = server
                .run(&command::window_indexes(&self.config.session))
                .map_err(|e| e.into_backend(None))?;
            let name = if spec.name.is_empty() {
                &spec.id
            } else {
                &spec.name
            };
            let request = command::new_window(&command::NewWindow {
                session: &self.config.session,
                index: indexes.iter().max().map_or(0, |i| i + 1),
                name,
                cwd,
                env: &spec.env,
                argv: &spec.command,
                cols: spec.cols,
                rows: spec.rows,
                history: spec.scrollback,
                terminal_id: &spec.id,
            });
            // Route the pane's output from the moment tmux names it: the hook runs on the reader
            // thread before any later `%output` line is read.
            let router = server.router.clone();
            let routed = pane.clone();
            let hook: ReplyHook = Box::new(move |blocks| {
                if let Some(made) = made_pane(blocks) {
                    router.insert(&made.pane_id, routed);
                }
            });
            let blocks = server
                .raw(&request, Some(hook))
                .map_err(|e| e.into_backend(None))?;
            match request.finish(&blocks) {
                Ok(made) => {
                    tracing::info!(id = %spec.id, pane = %made.pane_id, pid = ?made.pid, "tmux window opened");
                    return Ok(Arc::new(TmuxTerminal {
                        server,
                        pane,
                        pane_id: made.pane_id,
                        window_id: made.window_id,
                        pid: made.pid,
                    }));
                }
                Err(CommandError::Tmux { command, message })
                    if command == "new-window" && message.contains("in use") && attempts < 5 =>
                {
                    // A person made a window at that index meanwhile: choose again.
                    continue;
                }
                Err(e) => {
                    if let Some(made) = made_pane(&blocks) {
                        server.router.remove(&made.pane_id);
                        let _ = server.run(&command::kill_window(&made.window_id));
                    }
                    return Err(spawn_err(e.to_string()));
                }
            }
        }
    }

    fn leftovers(&self) -> Result<Vec<(String, String)>, BackendError> {
        Ok(self
            .surviving()?
            .into_iter()
            .map(|p| (p.handle, p.terminal_id))
            .collect())
    }

    fn close_leftover(&self, handle: &str) -> Result<(), BackendError> {
        // A pane id names its window too.
        self.connected()?
            .run(&command::kill_window(handle))
            .map_err(|e| e.into_backend(None))
    }

    fn adopt(
        &self,
        spec: TerminalSpec,
        handle: &str,
        observer: Arc<dyn TerminalObserver>,
    ) -> Result<Arc<dyn Terminal>, BackendError> {
        let gone = || BackendError::Gone {
            id: spec.id.clone(),
        };
        let valid = handle
            .strip_prefix('%')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            return Err(gone());
        }
        let server = self.server()?;
        let pane = Arc::new(Pane::new(&spec, observer));
        let request = command::pane_info(handle);
        let session = self.config.session.clone();
        let id = spec.id.clone();
        let target = handle.to_owned();
        let router = server.router.clone();
        let routed = pane.clone();
        // Checked and routed on the reader thread, so no output between the check and the
        // routing is lost.
        let hook: ReplyHook = Box::new(move |blocks| {
            if let Ok(info) = command::pane_info(&target).finish(blocks) {
                if adoptable(&info, &id, &session) {
                    router.insert(&info.pane_id, routed);
                }
            }
        });
        // A connection that fails now says nothing of the pane: not `Gone`.
        let blocks = server
            .raw(&request, Some(hook))
            .map_err(|e| e.into_backend(None))?;
        let info = request
            .finish(&blocks)
            .map_err(|e| match e.is_missing_target() {
                true => gone(),
                false => BackendError::Other(e.to_string()),
            })?;
        if info.terminal_id.as_deref() != Some(spec.id.as_str()) {
            // tmux reuses pane ids after a server restart: this pane is someone else's.
            return Err(gone());
        }
        if info.session != self.config.session {
            return Err(BackendError::Other(format!(
                "pane {handle} is in tmux session {}, not {}",
                info.session, self.config.session
            )));
        }
        match info.ending(&spec.id) {
            Ending::Running => {}
            ending => {
                // Its program ended while no daemon watched; the window has nothing more to
                // give.
                let _ = server.run(&command::kill_window(&info.window_id));
                return Err(match ending {
                    Ending::Ended(exit_code) => BackendError::Ended {
                        id: spec.id.clone(),
                        exit_code,
                    },
                    _ => gone(),
                });
            }
        }
        let _ = server.run(&command::keep_on_exit(&info.window_id));
        tracing::info!(id = %spec.id, pane = %info.pane_id, "tmux pane adopted");
        Ok(Arc::new(TmuxTerminal {
            server,
            pane,
            pane_id: info.pane_id,
            window_id: info.window_id,
            pid: info.pid,
        }))
    }
}

/// Whether a pane found by id is the live pane of terminal `id` in our session.
fn adoptable(info: &command::PaneInfo, id: &str, session: &str) -> bool {
    info.ending(id) == Ending::Running
        && info.terminal_id.as_deref() == Some(id)
        && info.session == session
}

/// The pane a `new-window` reply made, if it made one.
fn made_pane(blocks: &[Block]) -> Option<command::NewPane> {
    let block = blocks.get(command::NEW_WINDOW_BLOCK).filter(|b| !b.error)?;
    command::parse_new_pane(block).ok()
}

/// Check what tmux would otherwise accept silently or choke on; returns the working directory.
fn check_spec(spec: &TerminalSpec) -> Result<&str, String> {
    if spec.command.is_empty() {
        return Err("the command is empty".into());
    }
    if spec.cols == 0 || spec.rows == 0 {
        return Err(format!(
            "terminal size {}x{} is empty",
            spec.cols, spec.rows
        ));
    }
    for (key, _) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(format!("environment variable name {key:?} is invalid"));
        }
    }
    let texts = spec
        .command
        .iter()
        .chain(spec.env.iter().map(|(_, v)| v))
        .chain([&spec.name]);
    if texts.into_iter().any(|t| t.contains('\0')) {
        return Err("the command, environment or name contains a NUL byte".into());
    }
    let cwd = spec.cwd.to_str().ok_or_else(|| {
        format!(
            "working directory {} is not valid UTF-8",
            spec.cwd.display()
        )
    })?;
    if cwd.contains('\0') || cwd.is_empty() {
        return Err(format!("working directory {cwd:?} is invalid"));
    }
    Ok(cwd)
}

/// Checks that need the tmux server's file system, done here when that is ours: tmux would run
/// the program in the home directory when `cwd` is missing, and only report a missing program
/// as an exit status.
fn check_local(spec: &TerminalSpec) -> Result<(), String> {
    if !spec.cwd.is_dir() {
        return Err(format!(
            "working directory {} is not a directory",
            spec.cwd.display()
        ));
    }
    let program = &spec.command[0];
    if program.contains('/') {
        let path = spec.cwd.join(program);
        return if is_executable(&path) {
            Ok(())
        } else {
            Err(format!("{} is not an executable file", path.display()))
        };
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.into())
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program))) {
        Ok(())
    } else {
        Err("not found on PATH".into())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn unavailable(detail: String) -> BackendError {
    BackendError::Unavailable {
        backend: NAME,
        detail,
    }
}

/// The foreground process group of the terminal of process `pid`, from `/proc` (Linux; `None`
/// elsewhere or when it has no terminal).
fn foreground_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after its last `)`.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // state ppid pgrp session tty_nr tpgid
    let tpgid: i64 = fields.get(5)?.parse().ok()?;
    u32::try_from(tpgid).ok().filter(|&g| g > 0)
}

/// Wait until process `pid` has ended, or `limit` passed.
fn wait_for_exit(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    // SAFETY: kill with signal 0 only checks whether the process exists.
    while unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

/// One connection to a tmux server: the control client and the routing of its output.
struct Server {
    /// The control-mode client all commands go through.
    control: ControlClient,
    /// Which pane's output goes to which terminal.
    router: Arc<Router>,
    /// The server's process id, to wait for after it died.
    pid: Option<u32>,
    /// The server's tmux version.
    version: Option<String>,
    /// Whether the server runs on this machine (signals are sent directly).
    local: bool,
    /// Numbers paste buffers, so concurrent pastes never share one.
    buffers: AtomicU64,
}

/// What a request through the server can fail with.
#[derive(Debug)]
enum ServerError {
    /// The client failed (server gone, timeout).
    Control(ControlError),
    /// tmux refused the command or answered nonsense.
    Command(CommandError),
}

impl ServerError {
    /// The port's error; `terminal` names the terminal the command was for, if any.
    fn into_backend(self, terminal: Option<&str>) -> BackendError {
        match (self, terminal) {
            (ServerError::Control(ControlError::Closed(_)), Some(id)) => {
                BackendError::Gone { id: id.to_owned() }
            }
            (ServerError::Command(e), Some(id)) if e.is_missing_target() => {
                BackendError::Gone { id: id.to_owned() }
            }
            (ServerError::Control(e @ ControlError::Timeout(_)), _) => {
                BackendError::Other(e.to_string())
            }
            (ServerError::Control(e), _) => unavailable(e.to_string()),
            (ServerError::Command(e), _) => BackendError::Other(e.to_string()),
        }
    }
}

impl Server {
    /// Send a request and return its raw reply blocks.
    fn raw<T>(
        &self,
        request: &Request<T>,
        hook: Option<ReplyHook>,
    ) -> Result<Vec<Block>, ServerError> {
        let line = request.line().map_err(ServerError::Command)?;
        self.control
            .request(&line, request.commands(), hook, REPLY_TIMEOUT)
            .map_err(ServerError::Control)
    }

    /// Send a request and parse its reply.
    fn run<T>(&self, request: &Request<T>) -> Result<T, ServerError> {
        let blocks = self.raw(request, None)?;
        request.finish(&blocks).map_err(ServerError::Command)
    }

    /// Send several one-line requests back to back, then wait for all replies: for input and
    /// pastes, whose order tmux keeps, one round trip instead of one per chunk.
    fn run_all(&self, requests: &[Request<()>]) -> Result<(), ServerError> {
        let mut waiting = Vec::with_capacity(requests.len());
        for request in requests {
            let line = request.line().map_err(ServerError::Command)?;
            let rx = self
                .control
                .send(&line, request.commands(), None)
                .map_err(ServerError::Control)?;
            waiting.push((request, rx));
        }
        let mut first_error = None;
        for (request, rx) in waiting {
            let result = self
                .control
                .wait(&rx, REPLY_TIMEOUT)
                .map_err(ServerError::Control)
                .and_then(|blocks| request.finish(&blocks).map_err(ServerError::Command));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Routes `%output` to terminals by pane id, and ends them all when the client ends.
#[derive(Default)]
struct Router {
    /// Terminals by pane id (`%N`).
    routes: Mutex<HashMap<String, Arc<Pane>>>,
    /// The server is on a remote host: a connection that ends says nothing of the programs,
    /// which run on; the host's watcher reports the host unreachable instead of each terminal
    /// lost.
    remote: bool,
}

impl Router {
    fn insert(&self, pane_id: &str, pane: Arc<Pane>) {
        self.routes.lock().unwrap().insert(pane_id.to_owned(), pane);
    }

    fn remove(&self, pane_id: &str) {
        self.routes.lock().unwrap().remove(pane_id);
    }

    /// Panes whose program has not been reported ended yet.
    fn running(&self) -> Vec<(String, Arc<Pane>)> {
        let routes = self.routes.lock().unwrap();
        routes
            .iter()
            .filter(|(_, p)| !p.finished.load(Ordering::SeqCst))
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect()
    }
}

impl ControlEvents for Router {
    fn output(&self, pane: &str, data: &[u8]) {
        // Panes that are not ours (the placeholder, windows people open) are ignored.
        let route = self.routes.lock().unwrap().get(pane).cloned();
        if let Some(route) = route {
            route.output(data);
        }
    }

    fn closed(&self, reason: &str) {
        let panes: Vec<Arc<Pane>> = self
            .routes
            .lock()
            .unwrap()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for pane in panes {
            if self.remote {
                tracing::info!(id = %pane.id, %reason, "connection to the host's tmux ended");
                pane.finished.store(true, Ordering::SeqCst);
                pane.fanout.close();
            } else {
                tracing::warn!(id = %pane.id, %reason, "tmux server gone, terminal lost");
                pane.lose(reason);
            }
        }
    }
}

/// What the reader thread needs to deliver one terminal's output.
struct Pane {
    /// The terminal id, for the observer.
    id: String,
    /// Subscribers' buffers.
    fanout: OutputFanout,
    /// The output log.
    log: Mutex<OutputLog>,
    /// Told about output and the end.
    observer: Arc<dyn TerminalObserver>,
    /// Set once the end was reported (or the terminal closed), so it is reported once.
    finished: AtomicBool,
    /// Polls that found the pane dead without an exit status yet.
    unsettled: AtomicU32,
    /// The start of the exit marker the start script prints, kept out of the output.
    marker: String,
    /// The start of a marker that `%output` split (it may go on in the next notification),
    /// held back until it is complete or shown not to be one.
    held: Mutex<Vec<u8>>,
}

impl Pane {
    fn new(spec: &TerminalSpec, observer: Arc<dyn TerminalObserver>) -> Self {
        Self {
            id: spec.id.clone(),
            fanout: OutputFanout::new(),
            log: Mutex::new(OutputLog::new(spec.log_path.clone(), spec.log_limit)),
            observer,
            finished: AtomicBool::new(false),
            unsettled: AtomicU32::new(0),
            marker: command::marker_prefix(&spec.id),
            held: Mutex::new(Vec::new()),
        }
    }

    fn output(&self, data: &[u8]) {
        let (data, status) = {
            let mut held = self.held.lock().unwrap();
            let (data, status) = strip_marker(&mut held, data, self.marker.as_bytes());
            (data.into_owned(), status)
        };
        if !data.is_empty() {
            self.fanout.publish(&data);
            self.log.lock().unwrap().append(&data);
            self.observer.output(&self.id);
        }
        if let Some(status) = status {
            // The start script's marker comes after every byte the program printed: the end is
            // known now, without waiting for the next pane listing.
            self.finish(command::exit_code(status));
        }
    }

    /// Report that the server went away, once.
    fn lose(&self, reason: &str) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            self.fanout.close();
            self.observer
                .lost(&self.id, &format!("tmux server gone: {reason}"));
        }
    }

    /// Report the end once: subscribers are closed, then the observer told.
    fn finish(&self, exit_code: Option<i32>) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            self.fanout.close();
            self.observer.exited(&self.id, exit_code);
        }
    }
}

/// Most bytes of a marker held back (its prefix, an exit status, the terminator): more is not
/// a marker of ours and goes on as output.
const MARKER_TAIL: usize = 16;

/// `data` without the start script's exit marker (`ESC ] 2 ; orch-exited:<id>:<n> ESC \`), which
/// is ours, not the program's, and the status it carries. tmux may split the marker across two
/// `%output` notifications: a chunk that ends inside one (or inside its prefix) keeps that end in
/// `held`, which the next chunk continues.
fn strip_marker<'a>(
    held: &mut Vec<u8>,
    data: &'a [u8],
    prefix: &[u8],
) -> (std::borrow::Cow<'a, [u8]>, Option<i32>) {
    let joined;
    let data: std::borrow::Cow<'a, [u8]> = if held.is_empty() {
        data.into()
    } else {
        joined = [std::mem::take(held).as_slice(), data].concat();
        joined.into()
    };
    let Some(start) = data.windows(prefix.len()).position(|w| w == prefix) else {
        // A chunk ending with the marker's first bytes: hold them for the next one.
        let keep = (1..prefix.len().min(data.len() + 1))
            .rev()
            .find(|&k| data.ends_with(&prefix[..k]))
            .unwrap_or(0);
        if keep == 0 {
            return (data, None);
        }
        held.extend_from_slice(&data[data.len() - keep..]);
        return (data[..data.len() - keep].to_vec().into(), None);
    };
    let rest = &data[start + prefix.len()..];
    let Some(end) = rest.windows(2).position(|w| w == b"\x1b\\") else {
        if rest.len() <= MARKER_TAIL {
            held.extend_from_slice(&data[start..]);
            return (data[..start].to_vec().into(), None);
        }
        return (data, None);
    };
    let status = std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|s| s.parse().ok());
    let mut out = data[..start].to_vec();
    out.extend_from_slice(&rest[end + 2..]);
    (out.into(), status)
}

/// Find exited programs: tmux sends no notification when a pane's program dies, so its panes
/// are listed every [`POLL_INTERVAL`] while any terminal runs. Ends with the server.
fn watch_exits(server: Weak<Server>) {
    loop {
        thread::sleep(POLL_INTERVAL);
        let Some(server) = server.upgrade() else {
            return;
        };
        if server.control.is_closed() {
            return;
        }
        // Taken before asking: a pane added later is not in this reply, and not expected to be.
        let running = server.router.running();
        if running.is_empty() {
            continue;
        }
        let panes = match server.run(&command::list_panes(None)) {
            Ok(panes) => panes,
            Err(e) => {
                tracing::debug!(error = ?e, "tmux list-panes failed");
                continue;
            }
        };
        let mut unreaped = false;
        for (pane_id, pane) in running {
            match panes
                .iter()
                .find(|p| p.pane_id == pane_id)
                .map(|p| p.ending(&pane.id))
            {
                None => pane.finish(None),
                Some(Ending::Ended(code)) => pane.finish(code),
                Some(Ending::Unsettled) => {
                    if pane.unsettled.fetch_add(1, Ordering::SeqCst) >= UNSETTLED_POLLS {
                        pane.finish(None);
                    } else {
                        unreaped = true;
                    }
                }
                Some(Ending::Running) => {}
            }
        }
        if unreaped {
            // tmux (3.3a with libutempter) resets its SIGCHLD handler while a utempter helper
            // runs, which it starts when a pane's terminal closes: the program's own SIGCHLD can
            // fall in that gap and be lost, leaving a zombie whose status tmux never reads. Any
            // later SIGCHLD makes tmux reap every child, so run a trivial job to cause one.
            if let Err(e) = server.run(&command::reap_children()) {
                tracing::debug!(error = ?e, "tmux run-shell failed");
            }
        }
    }
}

/// One terminal: a window with one pane.
struct TmuxTerminal {
    /// The connection the pane lives on; a dead one makes every operation report the terminal
    /// gone.
    server: Arc<Server>,
    /// Output routing state shared with the reader thread.
    pane: Arc<Pane>,
    /// The pane id (`%N`): the handle for adoption and the target of input.
    pane_id: String,
    /// The window id (`@N`): the target of resizes and of closing.
    window_id: String,
    /// Process id of the start script that runs the program: the leader of the process group
    /// the program runs in (tmux makes each pane a session).
    pid: Option<u32>,
}

impl TmuxTerminal {
    fn err(&self, e: ServerError) -> BackendError {
        e.into_backend(Some(&self.pane.id))
    }

    fn check_running(&self) -> Result<(), BackendError> {
        if self.pane.finished.load(Ordering::SeqCst) || self.server.control.is_closed() {
            return Err(BackendError::Gone {
                id: self.pane.id.clone(),
            });
        }
        Ok(())
    }
}

impl Terminal for TmuxTerminal {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn handle(&self) -> Option<String> {
        Some(self.pane_id.clone())
    }

    fn write(&self, data: &[u8]) -> Result<(), BackendError> {
        self.check_running()?;
        self.server
            .run_all(&command::send_bytes(&self.pane_id, data))
            .map_err(|e| self.err(e))
    }

    fn paste(&self, text: &str) -> Result<(), BackendError> {
        self.check_running()?;
        // tmux pastes the buffer as is between the markers: an ESC in the text could end the
        // bracketed paste early and turn the rest into keystrokes, so (as the pty backend does)
        // pasted text carries none. A NUL cannot be passed to tmux at all.
        let text: String = text.chars().filter(|&c| c != '\x1b' && c != '\0').collect();
        let n = self.server.buffers.fetch_add(1, Ordering::Relaxed);
        let buffer = format!("orch-paste-{n}");
        let result = self
            .server
            .run_all(&command::paste(&self.pane_id, &buffer, &text));
        if result.is_err() {
            // The paste (which deletes the buffer) may not have run.
            let _ = self.server.run(&command::delete_buffer(&buffer));
        }
        result.map_err(|e| self.err(e))
    }

    fn resize(&self, cols: u16, rows: u16) -> Result<(), BackendError> {
        if cols == 0 || rows == 0 {
            return Err(BackendError::Other(format!(
                "terminal size {cols}x{rows} is empty"
            )));
        }
        self.check_running()?;
        self.server
            .run(&command::resize_window(&self.window_id, cols, rows))
            .map_err(|e| self.err(e))
    }

    fn screen(&self, scrollback: usize) -> Result<ScreenSnapshot, BackendError> {
        let cap = self
            .server
            .run(&command::capture(
                &self.pane_id,
                scrollback.min(MAX_SCROLLBACK),
            ))
            .map_err(|e| self.err(e))?;
        let mut ansi = String::from("\x1b[0m\x1b[H\x1b[2J\x1b[3J");
        ansi.push_str(&cap.styled.join("\r\n"));
        ansi.push_str(&format!(
            "\x1b[0m\x1b[{};{}H",
            cap.cursor_y + 1,
            cap.cursor_x + 1
        ));
        Ok(ScreenSnapshot {
            lines: cap.plain.iter().map(|l| l.trim_end().to_owned()).collect(),
            cursor_row: cap.cursor_y,
            cursor_col: cap.cursor_x,
            cols: cap.width,
            rows: cap.height,
            title: cap.title,
            ansi,
        })
    }

    fn subscribe(&self) -> Arc<OutputSubscriber> {
        let sub = self.pane.fanout.subscribe();
        if self.pane.finished.load(Ordering::SeqCst) {
            // No output will come: say so at once rather than leave the subscriber waiting.
            self.pane.fanout.unsubscribe(&sub);
        }
        sub
    }

    fn unsubscribe(&self, sub: &Arc<OutputSubscriber>) {
        self.pane.fanout.unsubscribe(sub);
    }

    fn signal(&self, force: bool) -> Result<(), BackendError> {
        // After the end the pid may belong to someone else by now.
        if self.pane.finished.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(pid) = self.pid else {
            return Err(BackendError::Other(format!(
                "terminal {} has no process id",
                self.pane.id
            )));
        };
        if !self.server.local {
            return self
                .server
                .run(&command::signal_group(pid, force))
                .map_err(|e| self.err(e));
        }
        let signal = if force { libc::SIGKILL } else { libc::SIGTERM };
        // A program that made its own process group (an interactive shell) and took over the
        // terminal is not in the start script's group: signal the terminal's foreground group
        // too.
        if let Some(fg) = foreground_group(pid).filter(|&fg| fg != pid) {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe { libc::killpg(fg as libc::pid_t, signal) };
        }
        // SAFETY: killpg and kill have no memory-safety preconditions.
        let mut result = unsafe { libc::killpg(pid as libc::pid_t, signal) };
        if result != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            // Just after spawning, the pane's process may not have made its own session yet
            // (tmux forks, then the child calls setsid): signal the process itself, which holds
            // the signal until it runs with default handlers.
            // SAFETY: as above.
            result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
        if result != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(BackendError::Other(format!(
                    "cannot signal process group {pid} of terminal {}: {e}",
                    self.pane.id
                )));
            }
        }
        Ok(())
    }

    fn alive(&self) -> bool {
        if self.pane.finished.load(Ordering::SeqCst) || self.server.control.is_closed() {
            return false;
        }
        self.server
            .run(&command::pane_info(&self.pane_id))
            .is_ok_and(|info| info.ending(&self.pane.id) == Ending::Running)
    }

    fn close(&self) -> Result<(), BackendError> {
        // Closing is the runtime's own act: no `exited` follows it.
        self.pane.finished.store(true, Ordering::SeqCst);
        self.server.router.remove(&self.pane_id);
        self.pane.fanout.close();
        if self.server.control.is_closed() {
            return Ok(());
        }
        match self.server.run(&command::kill_window(&self.window_id)) {
            Ok(()) => Ok(()),
            Err(ServerError::Command(e)) if e.is_missing_target() => Ok(()),
            Err(ServerError::Control(ControlError::Closed(_))) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}
