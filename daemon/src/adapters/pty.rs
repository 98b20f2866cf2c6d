//! The built-in terminal backend: each program runs on its own pseudo-terminal, with a headless
//! emulator holding its screen, an output log on disk and a fan-out to subscribers.
//!
//! Per terminal there are three threads. The reader owns all I/O on the pty master: it reads
//! output as soon as it arrives (a pty buffers only about 17 KB, so a reader that waits makes the
//! program wait) and hands it on through a short bounded queue; it also writes queued input, so
//! that neither a client nor a program that stops reading its input can block anyone. The screen
//! thread takes each chunk in order: feeds the emulator and queues its replies, appends to the
//! log, publishes to subscribers, tells the observer. Parsing is the costly step, and on its own
//! thread it runs while the program goes on printing rather than after. The waiter learns how
//! the program ended, reports it, and reaps it when the terminal closes. Programs start without a
//! shell, as session leaders, so their process group id is their pid and a stop reaches the whole
//! tree. Nothing here knows the runtime, the wire or agents: it implements the terminal ports and
//! speaks through [`TerminalObserver`].

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};

use crate::adapters::emulator::Emulator;
use crate::fanout::{OutputFanout, OutputSubscriber};
use crate::ports::{
    BackendError, BackendProbe, ScreenSnapshot, Terminal, TerminalBackend, TerminalObserver,
    TerminalSpec,
};

/// Most bytes read from the pty at once.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks queued between the reader and the screen thread: with [`READ_CHUNK`], at most 1 MiB
/// of output read ahead of the screen. When full, the reader waits for the emulator (never for a
/// client) and the program waits for the reader.
const CHUNKS_AHEAD: usize = 16;
/// Size at which the output log is rotated to `<log>.1`.
#[cfg(test)]
const LOG_LIMIT: u64 = 8 << 20;
/// How long the exit report waits for the output the program left behind to be read and fed
/// while none arrives. Processes that inherited the terminal can keep it open for ever; the
/// report must not wait for them.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);
/// Longest the exit report waits while output still arrives (a process left behind printing
/// on): up to a megabyte can be queued for the emulator, and on a busy machine feeding it took
/// longer than [`DRAIN_AFTER_EXIT`], so subscribers were closed before the program's last
/// output reached them.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Most input bytes queued for a program that does not read them, before writes are refused.
const INPUT_LIMIT: usize = 4 << 20;
/// `TERM` for programs whose spec does not set one: what the emulator understands.
const DEFAULT_TERM: &str = "xterm-256color";

/// Runs programs on pseudo-terminals of this machine; needs nothing installed.
#[derive(Debug, Default)]
pub struct PtyBackend;

impl PtyBackend {
    /// The backend; it holds no state of its own, each terminal owns its resources.
    pub fn new() -> Self {
        Self
    }
}

impl TerminalBackend for PtyBackend {
    fn name(&self) -> &'static str {
        "pty"
    }

    fn probe(&self) -> BackendProbe {
        BackendProbe {
            available: true,
            detail: "built in".to_string(),
        }
    }

    fn spawn(
        &self,
        spec: TerminalSpec,
        observer: Arc<dyn TerminalObserver>,
    ) -> Result<Arc<dyn Terminal>, BackendError> {
        let terminal = PtyTerminal::spawn(spec, observer)?;
        Ok(Arc::new(terminal))
    }
}

/// One program on one pty, as the runtime holds it.
struct PtyTerminal {
    /// The runtime's terminal id, for errors.
    id: String,
    /// The program's pid, which is also its process group id since it leads its own session.
    pid: u32,
    /// What the terminal's threads share with this handle.
    shared: Arc<Shared>,
    /// The pty master, kept for resizing; taken and dropped on close.
    master: Mutex<Option<Box<dyn MasterPty + Send>>>,
    /// Held until close; dropping it lets the waiter reap the program, which frees its pid.
    reap: Mutex<Option<mpsc::Sender<()>>>,
}

/// State shared between a terminal's handle and its threads.
struct Shared {
    /// The runtime's terminal id, passed to the observer.
    id: String,
    /// The screen; locked only for one feed, resize or snapshot at a time.
    emulator: Mutex<Emulator>,
    /// A duplicate of the pty master, non-blocking, for reading output and writing input.
    io: File,
    /// Input not yet accepted by the pty: keystrokes and the emulator's replies, in order.
    input: Mutex<Vec<u8>>,
    /// Write end of the reader's wake-up pipe: a byte makes it look at queued input and at
    /// `closed` again.
    wake: File,
    /// Subscribers of the output stream.
    fanout: OutputFanout,
    /// Who is told about output and exit.
    observer: Arc<dyn TerminalObserver>,
    /// Set once the program has ended (it is reaped later, when the terminal closes).
    exited: AtomicBool,
    /// Set once no more output goes to subscribers (exit reported, or terminal closed): a later
    /// subscriber is closed at once instead of waiting for ever.
    finished: AtomicBool,
    /// Set by [`Terminal::close`]: the terminal refuses further operations and the reader stops.
    closed: AtomicBool,
    /// Chunks the screen thread has taken in: the exit report waits on while this moves.
    fed: AtomicU64,
    /// Chunks the reader has read (and sent, or is sending, to the screen thread): while more
    /// were read than fed, output is on its way and the exit report waits for it.
    read: AtomicU64,
}

impl PtyTerminal {
    fn spawn(
        spec: TerminalSpec,
        observer: Arc<dyn TerminalObserver>,
    ) -> Result<Self, BackendError> {
        let program = spec
            .command
            .first()
            .cloned()
            .ok_or_else(|| BackendError::Spawn {
                program: format!("terminal {}", spec.id),
                detail: "the command is empty".to_string(),
            })?;
        let spawn_error = |detail: String| BackendError::Spawn {
            program: program.clone(),
            detail,
        };
        if spec.cols == 0 || spec.rows == 0 {
            return Err(spawn_error(format!(
                "terminal size {}x{} has no cells",
                spec.cols, spec.rows
            )));
        }
        // portable-pty silently falls back to the home directory when the cwd is not a
        // directory; a program must never run somewhere else than asked.
        match fs::metadata(&spec.cwd) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(spawn_error(format!(
                    "working directory {} is not a directory",
                    spec.cwd.display()
                )))
            }
            Err(err) => {
                return Err(spawn_error(format!(
                    "working directory {}: {err}",
                    spec.cwd.display()
                )))
            }
        }
        let path_env = spec
            .env
            .iter()
            .rev()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| OsString::from(value))
            .or_else(|| std::env::var_os("PATH"));
        check_program(&program, &spec.cwd, path_env.as_deref()).map_err(&spawn_error)?;

        let log = OutputLog::open(&spec.log_path, spec.log_limit).map_err(|err| {
            BackendError::Other(format!(
                "cannot open output log {}: {err}",
                spec.log_path.display()
            ))
        })?;

        let size = PtySize {
            rows: spec.rows,
            cols: spec.cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        let pair = native_pty_system()
            .openpty(size)
            .map_err(|err| spawn_error(format!("cannot open a pty: {err:#}")))?;
        let mut argv: Vec<OsString> = spec.command.iter().map(OsString::from).collect();
        if program.contains('/') && !program.starts_with('/') {
            // Exec takes a name with a slash relative to the working directory; the pty crate
            // would look `dir/tool` up in PATH. An absolute path makes both agree.
            argv[0] = spec.cwd.join(&program).into_os_string();
        }
        let mut cmd = CommandBuilder::from_argv(argv);
        cmd.cwd(&spec.cwd);
        for (key, _) in std::env::vars_os() {
            if super::foreign_terminal_var(&key.to_string_lossy()) {
                cmd.env_remove(key);
            }
        }
        // What this terminal really is: the emulator behind it speaks xterm with 24-bit colour.
        cmd.env("TERM", DEFAULT_TERM);
        cmd.env("COLORTERM", "truecolor");
        for (key, value) in &spec.env {
            cmd.env(key, value);
        }
        let child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|err| spawn_error(format!("{err:#}").replace('\n', " ")))?;
        // Our copy of the slave must go: the reader sees end of file only once every process
        // holding the slave has closed it.
        drop(pair.slave);
        let master = pair.master;
        let Some(pid) = child.process_id() else {
            return Err(spawn_error(
                "the pty crate reported no process id".to_string(),
            ));
        };
        // The pty crate's handle would reap the program; this backend reaps it itself, late (see
        // `wait_loop`), so the handle goes.
        drop(child);

        let setup = || -> io::Result<(File, File, File)> {
            let fd = master
                .as_raw_fd()
                .ok_or_else(|| io::Error::other("pty master has no fd"))?;
            // SAFETY: the master owns `fd` and outlives this borrow; the clone is our own fd.
            let io = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
            set_nonblocking(&io)?;
            let (wake_rx, wake_tx) = pipe()?;
            Ok((File::from(io), File::from(wake_rx), File::from(wake_tx)))
        };
        let (io, wake_rx, wake_tx) = match setup() {
            Ok(fds) => fds,
            Err(err) => {
                reap_after_failure(pid);
                return Err(spawn_error(format!("cannot set up the pty: {err}")));
            }
        };

        let shared = Arc::new(Shared {
            id: spec.id.clone(),
            emulator: Mutex::new(Emulator::new(spec.cols, spec.rows, spec.scrollback)),
            io,
            input: Mutex::new(Vec::new()),
            wake: wake_tx,
            fanout: OutputFanout::new(),
            observer,
            exited: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            fed: AtomicU64::new(0),
            read: AtomicU64::new(0),
        });

        let (chunks_tx, chunks_rx) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_AHEAD);
        // The screen thread holds `drained_tx` until it has taken in the last chunk; the waiter
        // learns that from the channel disconnecting, without any message being sent.
        let (drained_tx, drained_rx) = mpsc::channel::<()>();
        // Likewise this handle holds `reap_tx` until it closes, and then the waiter reaps.
        let (reap_tx, reap_rx) = mpsc::channel::<()>();
        let started = start_thread("read", &spec.id, &shared, move |shared| {
            read_loop(shared, wake_rx, chunks_tx)
        })
        .and_then(|()| {
            start_thread("screen", &spec.id, &shared, move |shared| {
                screen_loop(shared, chunks_rx, log, drained_tx)
            })
        })
        .and_then(|()| {
            start_thread("wait", &spec.id, &shared, move |shared| {
                wait_loop(shared, pid, drained_rx, reap_rx)
            })
        });
        if let Err(err) = started {
            // Killing the program ends the threads already started: the reader meets end of
            // file, and the rest follow it.
            reap_after_failure(pid);
            return Err(spawn_error(err));
        }

        tracing::debug!(terminal = %spec.id, pid, program = %program, "pty terminal started");
        Ok(Self {
            id: spec.id,
            pid,
            shared,
            master: Mutex::new(Some(master)),
            reap: Mutex::new(Some(reap_tx)),
        })
    }

    fn check_open(&self) -> Result<(), BackendError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(BackendError::Gone {
                id: self.id.clone(),
            });
        }
        Ok(())
    }

    /// Queue input and push as much as the pty takes now; the reader writes the rest when the
    /// pty has room.
    fn send(&self, data: &[u8]) -> Result<(), BackendError> {
        self.check_open()?;
        let mut input = self.shared.input.lock().unwrap();
        if input.len() + data.len() > INPUT_LIMIT {
            return Err(BackendError::Other(format!(
                "terminal {} is not reading its input: {} bytes are already waiting",
                self.id,
                input.len()
            )));
        }
        input.extend_from_slice(data);
        let flushed = flush_input(&self.shared.io, &mut input);
        let waiting = !input.is_empty();
        drop(input);
        flushed.map_err(|err| {
            BackendError::Other(format!("cannot write to terminal {}: {err}", self.id))
        })?;
        if waiting {
            self.shared.wake_reader();
        }
        Ok(())
    }
}

impl Terminal for PtyTerminal {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn write(&self, data: &[u8]) -> Result<(), BackendError> {
        self.send(data)
    }

    fn paste(&self, text: &str) -> Result<(), BackendError> {
        let bracketed = self.shared.emulator.lock().unwrap().bracketed_paste();
        self.send(&paste_bytes(text, bracketed))
    }

    fn resize(&self, cols: u16, rows: u16) -> Result<(), BackendError> {
        self.check_open()?;
        if cols == 0 || rows == 0 {
            return Err(BackendError::Other(format!(
                "terminal size {cols}x{rows} for terminal {} has no cells",
                self.id
            )));
        }
        let master = self.master.lock().unwrap();
        let Some(master) = master.as_ref() else {
            return Err(BackendError::Gone {
                id: self.id.clone(),
            });
        };
        // The emulator changes size first and stays locked until the pty has too, so the
        // program's redraw for the new size (after SIGWINCH) is never fed at the old one.
        let mut emulator = self.shared.emulator.lock().unwrap();
        emulator.resize(cols, rows);
        master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|err| {
                BackendError::Other(format!("cannot resize terminal {}: {err:#}", self.id))
            })
    }

    fn screen(&self, scrollback: usize) -> Result<ScreenSnapshot, BackendError> {
        Ok(self.shared.emulator.lock().unwrap().snapshot(scrollback))
    }

    fn subscribe(&self) -> Arc<OutputSubscriber> {
        let sub = self.shared.fanout.subscribe();
        // `finished` is set before the fan-out is closed: a subscriber added after the close
        // sees the flag here and is closed now, one added before is closed by the fan-out.
        if self.shared.finished.load(Ordering::SeqCst) {
            self.shared.fanout.unsubscribe(&sub);
        }
        sub
    }

    fn unsubscribe(&self, sub: &Arc<OutputSubscriber>) {
        self.shared.fanout.unsubscribe(sub);
    }

    fn signal(&self, force: bool) -> Result<(), BackendError> {
        self.check_open()?;
        let signal = if force { libc::SIGKILL } else { libc::SIGTERM };
        match kill_group(self.pid, signal) {
            Ok(()) => Ok(()),
            Err(err) => Err(BackendError::Other(format!(
                "cannot signal process group {} of terminal {}: {err}",
                self.pid, self.id
            ))),
        }
    }

    fn alive(&self) -> bool {
        !self.shared.exited.load(Ordering::SeqCst)
    }

    fn close(&self) -> Result<(), BackendError> {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // The whole group, even when the leader has already exited: what it left running
        // would otherwise hold the pty and keep writing to nobody.
        let killed = kill_group(self.pid, libc::SIGKILL);
        self.shared.wake_reader();
        self.reap.lock().unwrap().take();
        self.master.lock().unwrap().take();
        self.shared.finished.store(true, Ordering::SeqCst);
        self.shared.fanout.close();
        killed.map_err(|err| {
            BackendError::Other(format!(
                "cannot kill process group {} of terminal {}: {err}",
                self.pid, self.id
            ))
        })
    }
}

impl Drop for PtyTerminal {
    fn drop(&mut self) {
        // A terminal nobody holds can never be stopped again: release it as close would.
        if let Err(err) = self.close() {
            tracing::warn!(terminal = %self.id, "closing a dropped terminal failed: {err}");
        }
    }
}

/// The reader thread: everything the program prints comes in here and goes on to the screen
/// thread, and queued input goes out from here when the pty was full. Ends at end of file
/// (every holder of the slave closed it) or when the terminal is closed.
fn read_loop(shared: &Shared, wake: File, chunks: mpsc::SyncSender<Vec<u8>>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let want_write = !shared.input.lock().unwrap().is_empty();
        let mut fds = [
            libc::pollfd {
                fd: shared.io.as_raw_fd(),
                events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Err(err) = poll(&mut fds, -1) {
            tracing::warn!(terminal = %shared.id, "polling the pty failed: {err}");
            break;
        }
        let [pty, wake_fd] = fds;
        if wake_fd.revents & libc::POLLIN != 0 {
            let mut sink = [0u8; 64];
            // Drained only to reset readiness; the bytes carry no meaning.
            let _ = (&wake).read(&mut sink);
        }
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        if pty.revents & libc::POLLOUT != 0 {
            let mut input = shared.input.lock().unwrap();
            if let Err(err) = flush_input(&shared.io, &mut input) {
                tracing::debug!(terminal = %shared.id, "input dropped: {err}");
                input.clear();
            }
        }
        if pty.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            continue;
        }
        let (filled, more) = read_available(shared, &mut buf);
        if filled > 0 {
            // Counted before the send, which may wait for room: the chunk is on its way.
            shared.read.fetch_add(1, Ordering::SeqCst);
            // A send fails only when the screen thread is gone, and then nobody needs output.
            if chunks.send(buf[..filled].to_vec()).is_err() {
                break;
            }
        }
        if !more {
            break;
        }
    }
}

/// The screen thread: each chunk, in order, through the emulator, the log, the subscribers and
/// the observer. Ends after the last chunk once the reader has ended.
fn screen_loop(
    shared: &Shared,
    chunks: mpsc::Receiver<Vec<u8>>,
    mut log: OutputLog,
    _drained: mpsc::Sender<()>,
) {
    loop {
        let chunk = match chunks.try_recv() {
            Ok(chunk) => chunk,
            Err(mpsc::TryRecvError::Empty) => {
                // Nothing is waiting: put the log on disk now, so that a burst of small chunks
                // costs one write and what was printed is on disk as soon as the program pauses.
                log.flush();
                match chunks.recv() {
                    Ok(chunk) => chunk,
                    Err(mpsc::RecvError) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        shared.take_output(&chunk, &mut log);
        shared.fed.fetch_add(1, Ordering::SeqCst);
    }
    log.flush();
}

/// Read what the pty has now, up to a full buffer: a pty hands out at most about 4 KiB per
/// read, and taking all there is at once empties the pty sooner and makes one emulator feed,
/// one publish and one observer call of several reads. Returns the bytes read and whether more
/// may come (false at end of file).
fn read_available(shared: &Shared, buf: &mut [u8]) -> (usize, bool) {
    let mut filled = 0;
    while filled < buf.len() {
        match (&shared.io).read(&mut buf[filled..]) {
            Ok(0) => return (filled, false),
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            // EIO is how Linux reports that every holder of the slave has closed it.
            Err(err) if err.raw_os_error() == Some(libc::EIO) => return (filled, false),
            Err(err) => {
                tracing::warn!(terminal = %shared.id, "reading the pty failed: {err}");
                return (filled, false);
            }
        }
    }
    (filled, true)
}

impl Shared {
    /// Make the reader look at queued input and the closed flag again.
    fn wake_reader(&self) {
        // A full pipe already means the reader will wake up; nothing else can fail here.
        let _ = (&self.wake).write(&[1]);
    }

    /// One chunk of output: screen first (so that the observer and subscribers never see output
    /// the screen has not), then log, subscribers and observer.
    fn take_output(&self, data: &[u8], log: &mut OutputLog) {
        let replies = self.emulator.lock().unwrap().feed(data);
        if !replies.is_empty() {
            let mut input = self.input.lock().unwrap();
            input.extend_from_slice(&replies);
            if let Err(err) = flush_input(&self.io, &mut input) {
                tracing::debug!(terminal = %self.id, "terminal reply dropped: {err}");
            }
            if !input.is_empty() {
                drop(input);
                self.wake_reader();
            }
        }
        log.write(data);
        self.fanout.publish(data);
        self.observer.output(&self.id);
    }
}

/// The waiter thread: learn how the program ended, let the output drain, close the
/// subscribers, report the exit; then, once the terminal is closed, reap the program.
///
/// Reaping late is what makes signalling the group safe: until then the program is a zombie
/// that keeps its pid, and so its process group id, from being reused. A signal sent to the
/// group after the program exited (to stop what it left running) cannot reach a stranger's
/// process group that happens to get the same number.
fn wait_loop(shared: &Shared, pid: u32, drained: mpsc::Receiver<()>, reap: mpsc::Receiver<()>) {
    let code = match wait_without_reaping(pid) {
        Ok(code) => code,
        Err(err) => {
            tracing::warn!(terminal = %shared.id, pid, "waiting for the program failed: {err}");
            None
        }
    };
    shared.exited.store(true, Ordering::SeqCst);
    // Returns as soon as the screen thread has taken in the last chunk (the sender drops), or
    // once nothing was read or fed for DRAIN_AFTER_EXIT with every chunk read also fed (a slow
    // emulator on a busy machine is still draining, not done), or after DRAIN_LIMIT in all.
    let since = std::time::Instant::now();
    let progress = || {
        (
            shared.read.load(Ordering::SeqCst),
            shared.fed.load(Ordering::SeqCst),
        )
    };
    let mut last = progress();
    while let Err(mpsc::RecvTimeoutError::Timeout) = drained.recv_timeout(DRAIN_AFTER_EXIT) {
        let now = progress();
        let (read, fed) = now;
        if (now == last && read <= fed) || since.elapsed() >= DRAIN_LIMIT {
            break;
        }
        last = now;
    }
    // Subscribers are closed first, so that whoever hears of the exit finds every stream
    // complete.
    shared.finished.store(true, Ordering::SeqCst);
    shared.fanout.close();
    shared.observer.exited(&shared.id, code);
    // Returns when the terminal is closed or dropped.
    let _ = reap.recv();
    reap_now(pid);
}

/// Block until process `pid` has ended, leaving it unreaped; its exit code, or `None` when a
/// signal ended it.
pub(super) fn wait_without_reaping(pid: u32) -> io::Result<Option<i32>> {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, exclusively borrowed siginfo_t for the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            // SAFETY: waitid succeeded for a child that exited, so si_status is set.
            let status = unsafe { info.si_status() };
            return Ok((info.si_code == libc::CLD_EXITED).then_some(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reap process `pid`, waiting for it to end if it has not.
pub(super) fn reap_now(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid with a valid out-pointer; retried only on EINTR.
    while unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == ErrorKind::Interrupted
    {}
}

/// Start one of a terminal's threads, named after its job and the terminal.
fn start_thread(
    job: &str,
    id: &str,
    shared: &Arc<Shared>,
    body: impl FnOnce(&Shared) + Send + 'static,
) -> Result<(), String> {
    let shared = shared.clone();
    thread::Builder::new()
        .name(format!("pty-{job}-{id}"))
        .spawn(move || body(&shared))
        .map(drop)
        .map_err(|err| format!("cannot start the {job} thread: {err}"))
}

/// Kill a spawned program whose terminal could not be set up, and reap it.
fn reap_after_failure(pid: u32) {
    let _ = kill_group(pid, libc::SIGKILL);
    reap_now(pid);
}

/// Write as much queued input as the non-blocking pty takes now, removing it from the queue.
pub(super) fn flush_input(io: &File, input: &mut Vec<u8>) -> io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == input.len() {
            break Ok(());
        }
        match (&*io).write(&input[written..]) {
            Ok(0) => break Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => written += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    input.drain(..written);
    result
}

/// What a paste sends: bracketed, minus any escape character that could end the bracket early;
/// or plain, with line ends as the Enter key sends them. Both as terminals do it.
fn paste_bytes(text: &str, bracketed: bool) -> Vec<u8> {
    if bracketed {
        let mut out = Vec::with_capacity(text.len() + 12);
        out.extend_from_slice(b"\x1b[200~");
        out.extend(text.bytes().filter(|&b| b != 0x1b));
        out.extend_from_slice(b"\x1b[201~");
        out
    } else {
        text.replace("\r\n", "\r").replace('\n', "\r").into_bytes()
    }
}

/// SIGTERM or SIGKILL to a whole process group. A group that no longer exists is not an error:
/// what was to be stopped is stopped.
pub(super) fn kill_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(io::Error::other)?;
    // SAFETY: killpg has no memory-safety preconditions.
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Why `program` cannot be started from `cwd`, looked up the way the exec will: a name with a
/// slash relative to `cwd`, a bare name through `PATH`. Checked first because the pty crate's
/// own message lists the whole `PATH`, and environment values stay out of logs.
fn check_program(program: &str, cwd: &Path, path_env: Option<&OsStr>) -> Result<(), String> {
    if program.contains('/') {
        let path = cwd.join(program);
        return match fs::metadata(&path) {
            Err(err) => Err(format!("{}: {err}", path.display())),
            Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
            Ok(_) if !executable(&path) => Err(format!("{} is not executable", path.display())),
            Ok(_) => Ok(()),
        };
    }
    let Some(path_env) = path_env else {
        return Err("not found: PATH is not set".to_string());
    };
    let found = std::env::split_paths(path_env).any(|dir| {
        let candidate = cwd.join(dir).join(program);
        candidate.is_file() && executable(&candidate)
    });
    if found {
        Ok(())
    } else {
        Err("no executable of that name in PATH".to_string())
    }
}

/// Whether this process may execute `path`.
fn executable(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

/// `poll(2)` over `fds`, retried on EINTR; `timeout_ms` -1 waits for ever.
pub(super) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Make reads and writes on `fd` (and every duplicate of it) return instead of waiting.
pub(super) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Open a log for appending, creating it readable by this user only: programs print secrets.
fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The append-only output log of one terminal, rotated to `<path>.1` past its limit.
pub(super) struct OutputLog {
    /// Where the log lives.
    path: PathBuf,
    /// The open log, buffered so that many small chunks make one write; `None` after a write
    /// failed, so that a full disk costs one warning, not one per chunk.
    file: Option<BufWriter<File>>,
    /// Bytes in the current file, to know when to rotate.
    len: u64,
    /// Bytes in the current file before it is rotated.
    limit: u64,
}

impl OutputLog {
    pub(super) fn open(path: &Path, limit: u64) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            crate::paths::create_private_dirs(parent)?;
        }
        let file = open_log(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(BufWriter::with_capacity(READ_CHUNK, file)),
            len,
            limit: limit.max(READ_CHUNK as u64),
        })
    }

    pub(super) fn write(&mut self, data: &[u8]) {
        if self.len > 0 && self.len + data.len() as u64 > self.limit {
            if let Err(err) = self.rotate() {
                self.fail("rotating", err);
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match file.write_all(data) {
            Ok(()) => self.len += data.len() as u64,
            Err(err) => self.fail("writing", err),
        }
    }

    pub(super) fn flush(&mut self) {
        if let Some(file) = self.file.as_mut() {
            if let Err(err) = file.flush() {
                self.fail("writing", err);
            }
        }
    }

    /// Move the current log to `<path>.1`, replacing the previous one, and start a new file.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        fs::rename(&self.path, PathBuf::from(old))?;
        let file = open_log(&self.path)?;
        self.file = Some(BufWriter::with_capacity(READ_CHUNK, file));
        self.len = 0;
        Ok(())
    }

    fn fail(&mut self, what: &str, err: io::Error) {
        tracing::warn!(log = %self.path.display(), "{what} the output log failed, logging stops: {err}");
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::fanout::OutputChunk;

    /// How long any condition in these tests may take before the test fails.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// A callback the observer received.
    #[derive(Debug, PartialEq)]
    enum Call {
        Output,
        Exited(Option<i32>),
    }

    /// Records observer callbacks on a channel, as the runtime's observer posts them.
    struct Recorder {
        /// Where each callback is sent.
        calls: mpsc::Sender<Call>,
        /// How long each output callback takes (a busy machine's slow screen thread).
        slow: Duration,
    }

    impl TerminalObserver for Recorder {
        fn output(&self, _id: &str) {
            std::thread::sleep(self.slow);
            let _ = self.calls.send(Call::Output);
        }

        fn exited(&self, _id: &str, exit_code: Option<i32>) {
            let _ = self.calls.send(Call::Exited(exit_code));
        }
    }

    /// A program started on a pty, with its observer's calls and a scratch directory.
    struct Run {
        /// The terminal under test.
        term: Arc<dyn Terminal>,
        /// Callbacks received so far and to come.
        calls: mpsc::Receiver<Call>,
        /// The exit reported, once it was.
        exit: Option<Option<i32>>,
        /// Holds the output log; removed when the test ends.
        dir: tempfile::TempDir,
    }

    fn spec(dir: &Path, command: &[&str]) -> TerminalSpec {
        TerminalSpec {
            id: "t-1".to_string(),
            name: "test".to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            cwd: dir.to_path_buf(),
            env: vec![
                ("PS1".to_string(), "$ ".to_string()),
                ("HISTFILE".to_string(), "/dev/null".to_string()),
            ],
            cols: 80,
            rows: 24,
            log_path: dir.join("logs").join("t-1.log"),
            scrollback: 1000,
            log_limit: LOG_LIMIT,
        }
    }

    fn try_start(
        spec: TerminalSpec,
    ) -> (
        Result<Arc<dyn Terminal>, BackendError>,
        mpsc::Receiver<Call>,
    ) {
        try_start_slow(spec, Duration::ZERO)
    }

    fn try_start_slow(
        spec: TerminalSpec,
        slow: Duration,
    ) -> (
        Result<Arc<dyn Terminal>, BackendError>,
        mpsc::Receiver<Call>,
    ) {
        let (tx, rx) = mpsc::channel();
        (
            PtyBackend::new().spawn(spec, Arc::new(Recorder { calls: tx, slow })),
            rx,
        )
    }

    /// Everything a subscription holds, up to its end (a resync fails the test).
    fn taken_until_closed(sub: &OutputSubscriber) -> String {
        let mut got = String::new();
        while let Some(chunk) = sub.try_take() {
            match chunk {
                OutputChunk::Data(d) => got.push_str(&d),
                OutputChunk::Closed => break,
                OutputChunk::Resync => panic!("resync"),
            }
        }
        got
    }

    fn start(command: &[&str]) -> Run {
        start_slow(command, Duration::ZERO)
    }

    /// As [`start`], with an observer whose output callback takes `slow`.
    fn start_slow(command: &[&str], slow: Duration) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let (term, calls) = try_start_slow(spec(dir.path(), command), slow);
        let term = term.unwrap_or_else(|err| panic!("spawn {command:?}: {err}"));
        Run {
            term,
            calls,
            exit: None,
            dir,
        }
    }

    impl Run {
        fn screen_text(&self) -> String {
            self.term.screen(0).unwrap().lines.join("\n")
        }

        /// Wait until the screen satisfies `done`, looking again after every output callback.
        fn wait_screen(&mut self, what: &str, done: impl Fn(&str) -> bool) {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let text = self.screen_text();
                if done(&text) {
                    return;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match self.calls.recv_timeout(left) {
                    Ok(Call::Output) => {}
                    Ok(Call::Exited(code)) => self.exit = Some(code),
                    Err(_) => panic!("no {what} on the screen in time; it shows:\n{text}"),
                }
            }
        }

        /// Wait for the exit callback and return its code.
        fn wait_exit(&mut self) -> Option<i32> {
            let deadline = Instant::now() + PATIENCE;
            while self.exit.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.calls.recv_timeout(left) {
                    Ok(Call::Output) => {}
                    Ok(Call::Exited(code)) => self.exit = Some(code),
                    Err(_) => panic!("no exit reported in time; screen:\n{}", self.screen_text()),
                }
            }
            self.exit.unwrap()
        }

        fn log_path(&self) -> PathBuf {
            self.dir.path().join("logs").join("t-1.log")
        }
    }

    /// Poll `done` until it holds; for conditions nothing notifies about (processes in /proc).
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Live (not zombie) processes whose process group is `pgid`, from `/proc/*/stat`.
    fn group_members(pgid: u32) -> Vec<u32> {
        let mut members = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
                members.push(pid);
            }
        }
        members
    }

    fn spawn_error(command: &[&str], cwd: Option<&Path>) -> (String, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), command);
        if let Some(cwd) = cwd {
            spec.cwd = cwd.to_path_buf();
        }
        match try_start(spec).0 {
            Err(err @ BackendError::Spawn { .. }) => {
                let message = err.to_string();
                let BackendError::Spawn { program, detail } = err else {
                    unreachable!()
                };
                (program, detail, message)
            }
            Err(err) => panic!("expected a spawn error, got {err}"),
            Ok(_) => panic!("{command:?} started"),
        }
    }

    #[test]
    fn probe_and_name() {
        let backend = PtyBackend::new();
        assert_eq!(backend.name(), "pty");
        assert_eq!(
            backend.probe(),
            BackendProbe {
                available: true,
                detail: "built in".into()
            }
        );
    }

    #[test]
    fn interactive_shell_computes() {
        let mut run = start(&["bash", "--norc", "--noprofile", "-i"]);
        run.term.write(b"echo $((6*7))\r").unwrap();
        run.wait_screen("42", |text| text.lines().any(|line| line == "42"));
        run.term.write(b"exit\r").unwrap();
        assert_eq!(run.wait_exit(), Some(0));
        assert!(!run.term.alive());
    }

    #[test]
    fn cursor_position_query_is_answered() {
        let mut run = start(&[
            "bash",
            "-c",
            r#"printf 'ab\033[6n'; IFS= read -rsd R reply; echo; echo "got${reply#?}""#,
        ]);
        assert_eq!(run.wait_exit(), Some(0));
        assert!(
            run.screen_text().lines().any(|line| line == "got[1;3"),
            "{}",
            run.screen_text()
        );
    }

    #[test]
    fn huge_output_never_waits_for_a_subscriber() {
        let started = Instant::now();
        let mut run = start(&["sh", "-c", "head -c 20000000 /dev/zero | tr '\\0' x"]);
        let sub = run.term.subscribe();
        assert_eq!(run.wait_exit(), Some(0));
        let elapsed = started.elapsed();
        assert_eq!(sub.try_take(), Some(OutputChunk::Resync));
        let mut rest = Vec::new();
        while let Some(chunk) = sub.try_take() {
            let closed = chunk == OutputChunk::Closed;
            rest.push(chunk);
            if closed {
                break;
            }
        }
        assert_eq!(
            rest.last(),
            Some(&OutputChunk::Closed),
            "{} chunks after resync",
            rest.len()
        );
        eprintln!("20 MB through the pty backend in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(20), "20 MB took {elapsed:?}");

        // The log kept the newest output within its bound: the current file and one rotation.
        let log = fs::metadata(run.log_path()).unwrap().len();
        let rotated = fs::metadata(run.dir.path().join("logs").join("t-1.log.1"))
            .unwrap()
            .len();
        assert!(
            log <= LOG_LIMIT && rotated <= LOG_LIMIT,
            "log {log}, rotated {rotated}"
        );
        assert!(rotated > LOG_LIMIT - READ_CHUNK as u64, "rotated {rotated}");
        let screen = run.term.screen(0).unwrap();
        assert!(screen
            .lines
            .iter()
            .all(|line| line.chars().all(|c| c == 'x')));
    }

    #[test]
    fn stop_kills_the_process_tree() {
        let mut run = start(&["bash", "-c", "sleep 1000 & sleep 1000 & wait"]);
        let pid = run.term.pid().unwrap();
        // The program leads its own session and process group.
        assert_eq!(
            unsafe { libc::getpgid(pid as libc::pid_t) },
            pid as libc::pid_t
        );
        assert_eq!(
            unsafe { libc::getsid(pid as libc::pid_t) },
            pid as libc::pid_t
        );
        wait_until("bash and both sleeps", || group_members(pid).len() == 3);
        assert!(run.term.alive());
        run.term.signal(false).unwrap();
        assert_eq!(run.wait_exit(), None, "killed by a signal has no exit code");
        wait_until("the whole group to end", || group_members(pid).is_empty());
        assert!(!run.term.alive());
    }

    #[test]
    fn force_kills_what_ignores_sigterm() {
        let mut run = start(&["bash", "-c", "trap '' TERM; sleep 1000 & wait"]);
        let pid = run.term.pid().unwrap();
        wait_until("bash and sleep", || group_members(pid).len() == 2);
        run.term.signal(false).unwrap();
        run.term.signal(true).unwrap();
        assert_eq!(run.wait_exit(), None);
        wait_until("the whole group to end", || group_members(pid).is_empty());
    }

    #[test]
    fn exit_code_is_reported() {
        let mut run = start(&["bash", "-c", "exit 3"]);
        assert_eq!(run.wait_exit(), Some(3));
    }

    #[test]
    fn a_leftover_child_does_not_hold_back_the_exit() {
        // The sleep ignores the SIGHUP the kernel sends when the session leader exits.
        let mut run = start(&["bash", "-c", "trap '' HUP; sleep 1000 & exit 5"]);
        let pid = run.term.pid().unwrap();
        let started = Instant::now();
        assert_eq!(run.wait_exit(), Some(5));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The sleep still holds the pty; closing the terminal takes it down too.
        assert_eq!(group_members(pid).len(), 1);
        run.term.close().unwrap();
        wait_until("the leftover sleep to end", || {
            group_members(pid).is_empty()
        });
    }

    #[test]
    fn output_a_leftover_child_prints_after_the_exit_reaches_subscribers() {
        // The exit report waits while output still comes (it used to close subscribers 300 ms
        // after the exit, losing whatever was printed or still queued for the emulator).
        let mut run = start(&[
            "bash",
            "-c",
            "trap '' HUP; (for i in $(seq 1 20); do echo tick-$i; sleep 0.05; done) & exit 0",
        ]);
        let sub = run.term.subscribe();
        assert_eq!(run.wait_exit(), Some(0));
        let got = taken_until_closed(&sub);
        assert!(got.contains("tick-20"), "{got:?}");

        // One that never stops printing holds the report back at most DRAIN_LIMIT.
        let mut run = start(&[
            "bash",
            "-c",
            "trap '' HUP; (while :; do echo more; sleep 0.05; done) & exit 4",
        ]);
        let pid = run.term.pid().unwrap();
        let started = Instant::now();
        assert_eq!(run.wait_exit(), Some(4));
        let took = started.elapsed();
        assert!(
            took >= DRAIN_LIMIT && took < DRAIN_LIMIT + Duration::from_secs(3),
            "{took:?}"
        );
        run.term.close().unwrap();
        wait_until("the printer to end", || group_members(pid).is_empty());
    }

    #[test]
    fn output_queued_behind_a_slow_screen_thread_reaches_subscribers() {
        // On a busy machine the screen thread may take longer than DRAIN_AFTER_EXIT over one
        // chunk while more wait behind it: the exit report used to close subscribers then, and
        // the bench's pty group caught the tail of 50 MB missing (28 KB).
        let mut run = start_slow(
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7; do echo line-$i; sleep 0.02; done; echo THE-END",
            ],
            DRAIN_AFTER_EXIT + Duration::from_millis(100),
        );
        let sub = run.term.subscribe();
        assert_eq!(run.wait_exit(), Some(0));
        let got = taken_until_closed(&sub);
        assert!(
            got.contains("THE-END"),
            "{} bytes, ending {:?}",
            got.len(),
            &got[got.len().saturating_sub(40)..]
        );
        for i in 1..=7 {
            assert!(got.contains(&format!("line-{i}")), "{got:?}");
        }
    }

    #[test]
    fn output_log_has_what_was_printed() {
        let mut run = start(&["printf", "line one\\nline two\\n"]);
        assert_eq!(run.wait_exit(), Some(0));
        assert_eq!(
            fs::read_to_string(run.log_path()).unwrap(),
            "line one\r\nline two\r\n"
        );
    }

    #[test]
    fn split_utf8_reaches_subscribers_whole() {
        let mut run = start(&[
            "sh",
            "-c",
            "read x; printf '\\342'; sleep 0.2; printf '\\202\\254\\n'",
        ]);
        let sub = run.term.subscribe();
        run.term.write(b"\r").unwrap();
        let mut text = String::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match sub.try_take() {
                Some(OutputChunk::Data(data)) => text.push_str(&data),
                Some(OutputChunk::Closed) => break,
                Some(OutputChunk::Resync) => panic!("resync for a few bytes"),
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match run.calls.recv_timeout(left) {
                        Ok(Call::Output) => {}
                        Ok(Call::Exited(code)) => run.exit = Some(code),
                        Err(_) => panic!("output did not end; got {text:?}"),
                    }
                }
            }
        }
        assert!(text.ends_with("€\r\n"), "{text:?}");
        assert!(!text.contains('\u{fffd}'), "{text:?}");
        assert!(run.screen_text().contains('€'));
    }

    #[test]
    fn paste_is_bracketed_when_the_program_asks() {
        let mut run = start(&[
            "bash",
            "-c",
            r#"stty raw -echo; printf '\033[?2004hready\r\n'; head -c 14 | tr '\033' E"#,
        ]);
        run.wait_screen("ready", |text| text.contains("ready"));
        run.term.paste("h\x1bi").unwrap();
        assert_eq!(run.wait_exit(), Some(0));
        assert!(
            run.screen_text().contains("E[200~hiE[201~"),
            "{}",
            run.screen_text()
        );
    }

    #[test]
    fn plain_paste_sends_enter_for_line_ends() {
        let mut run = start(&[
            "bash",
            "-c",
            r#"stty raw -echo; printf 'ready\r\n'; head -c 3 | tr '\r' R"#,
        ]);
        run.wait_screen("ready", |text| text.contains("ready"));
        run.term.paste("a\nb").unwrap();
        assert_eq!(run.wait_exit(), Some(0));
        assert!(run.screen_text().contains("aRb"), "{}", run.screen_text());
    }

    #[test]
    fn resize_reaches_program_and_screen() {
        let mut run = start(&["bash", "-c", "printf 'ready\\n'; read x; stty size"]);
        run.wait_screen("ready", |text| text.contains("ready"));
        run.term.resize(100, 30).unwrap();
        run.term.write(b"\r").unwrap();
        run.wait_screen("the new size", |text| {
            text.lines().any(|line| line == "30 100")
        });
        let screen = run.term.screen(0).unwrap();
        assert_eq!((screen.cols, screen.rows), (100, 30));
        assert!(run.term.resize(0, 10).is_err());
    }

    #[test]
    fn large_input_to_a_program_that_does_not_read_never_blocks() {
        let mut run = start(&["bash", "-c", "printf 'ready\\n'; sleep 1000"]);
        run.wait_screen("ready", |text| text.contains("ready"));
        // Far more than a pty takes; the rest waits in the queue until the limit.
        let block = vec![b'x'; 1 << 20];
        let started = Instant::now();
        let refused = (0..8).map(|_| run.term.write(&block)).find_map(Result::err);
        assert!(started.elapsed() < Duration::from_secs(5));
        let refused = refused.expect("the input queue is bounded").to_string();
        assert!(refused.contains("not reading its input"), "{refused}");
        run.term.close().unwrap();
    }

    #[test]
    fn after_exit_and_close() {
        let mut run = start(&["true"]);
        let pid = run.term.pid().unwrap();
        assert_eq!(run.wait_exit(), Some(0));
        let late = run.term.subscribe();
        assert_eq!(late.try_take(), Some(OutputChunk::Closed));
        // The exited program keeps its pid (as a zombie) until the terminal is closed.
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        assert!(fs::read_to_string(&stat).unwrap().contains(") Z "));
        run.term.close().unwrap();
        wait_until("the program to be reaped", || !stat.exists());
        run.term.close().unwrap();
        assert!(matches!(
            run.term.write(b"x"),
            Err(BackendError::Gone { .. })
        ));
        assert!(matches!(
            run.term.signal(false),
            Err(BackendError::Gone { .. })
        ));
        assert!(run.term.screen(0).is_ok());
    }

    #[test]
    fn a_program_path_with_a_slash_is_relative_to_the_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("bin").join("tool");
        fs::create_dir_all(tool.parent().unwrap()).unwrap();
        fs::write(
            &tool,
            "#!/bin/sh\necho tool ran in \"$(basename \"$PWD\")\"\n",
        )
        .unwrap();
        fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (term, calls) = try_start(spec(dir.path(), &["bin/tool"]));
        let mut run = Run {
            term: term.unwrap(),
            calls,
            exit: None,
            dir,
        };
        assert_eq!(run.wait_exit(), Some(0));
        let name = run
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            run.term.screen(0).unwrap().lines[0],
            format!("tool ran in {name}")
        );
    }

    #[test]
    fn bad_program_or_cwd_is_a_spawn_error() {
        let (program, detail, message) = spawn_error(&["/nonexistent/prog"], None);
        assert_eq!(program, "/nonexistent/prog");
        assert!(detail.contains("No such file"), "{message}");

        let (program, detail, message) = spawn_error(&["no-such-program-for-orch", "x"], None);
        assert_eq!(program, "no-such-program-for-orch");
        assert_eq!(
            message,
            "cannot start no-such-program-for-orch: no executable of that name in PATH"
        );
        assert!(!detail.contains("/usr"), "PATH must not leak: {detail}");

        let (program, detail, _) = spawn_error(&["true"], Some(Path::new("/nonexistent/dir")));
        assert_eq!(program, "true");
        assert!(
            detail.starts_with("working directory /nonexistent/dir: "),
            "{detail}"
        );

        let (_, detail, _) = spawn_error(&["true"], Some(Path::new("/etc/passwd")));
        assert_eq!(detail, "working directory /etc/passwd is not a directory");

        let (program, detail, _) = spawn_error(&["/etc/passwd"], None);
        assert_eq!(program, "/etc/passwd");
        assert_eq!(detail, "/etc/passwd is not executable");

        let (program, detail, _) = spawn_error(&[], None);
        assert_eq!(
            (program.as_str(), detail.as_str()),
            ("terminal t-1", "the command is empty")
        );
    }
}
