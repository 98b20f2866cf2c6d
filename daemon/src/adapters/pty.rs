//! The built-in terminal backend: each program runs on its own pseudo-terminal, with a headless
//! emulator holding its screen, an output log on disk and a fan-out to subscribers.
//!
//! A quiet terminal keeps one thread, the reader, which owns all I/O on the pty master: it reads
//! output as soon as it arrives (a pty buffers only about 17 KB, so a reader that waits makes the
//! program wait) and hands it on through a short bounded queue; it writes queued input, so that
//! neither a client nor a program that stops reading its input can block anyone; and it watches
//! the program's end through a pidfd. While output flows a screen worker takes each chunk in
//! order: feeds the emulator and queues its replies, appends to the log, publishes to
//! subscribers, tells the observer. Parsing is the costly step, and on its own thread it runs
//! while the program goes on printing rather than after. The reader starts the worker when
//! output arrives; after [`SCREEN_IDLE`] without any the worker ends, and the screen sleeps
//! small (see [`Emulator::sleep`]) with the log's buffer given back. When the program ends, a
//! short-lived thread waits for its last output to be taken in and reports the exit; the
//! program is reaped once it has ended and the terminal is closed. Programs start without a
//! shell, as session leaders, so their process group id is their pid and a stop reaches the whole
//! tree. Nothing here knows the runtime, the wire or agents: it implements the terminal ports and
//! speaks through [`TerminalObserver`].

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};

use crate::adapters::emulator::Emulator;
use crate::fanout::{OutputFanout, OutputSubscriber};
use crate::ports::{
    BackendError, BackendProbe, ScreenSnapshot, Terminal, TerminalBackend, TerminalObserver,
    TerminalSpec,
};

/// Most bytes read from the pty at once.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks queued between the reader and the screen worker: with [`READ_CHUNK`], at most 1 MiB
/// of output read ahead of the screen. When full, the reader waits for the emulator (never for a
/// client) and the program waits for the reader.
const CHUNKS_AHEAD: usize = 16;
/// How long the screen worker waits for more output before it ends and the screen sleeps. Long
/// enough that a program printing now and then (a spinner, a clock) keeps its worker; the next
/// output after it starts one again (a thread start and a screen wake, well under a
/// millisecond for a screen without much history).
#[cfg(not(test))]
pub(super) const SCREEN_IDLE: Duration = Duration::from_secs(10);
#[cfg(test)]
pub(super) const SCREEN_IDLE: Duration = Duration::from_millis(300);
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
}

/// State shared between a terminal's handle and its threads.
struct Shared {
    /// The runtime's terminal id, passed to the observer.
    id: String,
    /// The program's pid (and process group id).
    pid: u32,
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
    /// Output read and not yet taken in by the screen, and who takes it.
    backlog: Mutex<Backlog>,
    /// Signalled whenever the backlog changes: a chunk queued or taken in, the reader ended, a
    /// worker gone. The worker, the reader (for room) and the exit report wait on it.
    backlog_changed: Condvar,
    /// The output log, written by the screen worker.
    log: Mutex<OutputLog>,
    /// Whether the program has ended and the terminal is closed: both, and it is reaped.
    reaping: Mutex<Reaping>,
}

/// The queue between the reader and the screen worker.
#[derive(Default)]
struct Backlog {
    /// Chunks in the order read.
    chunks: VecDeque<Vec<u8>>,
    /// A screen worker runs (or is starting); the reader starts one when none does.
    working: bool,
    /// The reader reads no more (end of file, or the terminal closed).
    ended: bool,
    /// Chunks queued since the start.
    read: u64,
    /// Chunks taken in since the start: while fewer than `read`, output is on its way and the
    /// exit report waits for it.
    fed: u64,
}

/// The two conditions for reaping the program.
///
/// Reaping late is what makes signalling the group safe: until then the program is a zombie
/// that keeps its pid, and so its process group id, from being reused. A signal sent to the
/// group after the program exited (to stop what it left running) cannot reach a stranger's
/// process group that happens to get the same number.
#[derive(Default)]
pub(super) struct Reaping {
    /// The program has ended (it is a zombie until reaped).
    pub(super) ended: bool,
    /// The terminal is closed.
    pub(super) closed: bool,
    /// Reaped already.
    reaped: bool,
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

        let setup = || -> io::Result<(File, File, File, File)> {
            let fd = master
                .as_raw_fd()
                .ok_or_else(|| io::Error::other("pty master has no fd"))?;
            // SAFETY: the master owns `fd` and outlives this borrow; the clone is our own fd.
            let io = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
            set_nonblocking(&io)?;
            let (wake_rx, wake_tx) = pipe()?;
            let ended = program_end_fd(pid, &spec.id)?;
            Ok((
                File::from(io),
                File::from(wake_rx),
                File::from(wake_tx),
                ended,
            ))
        };
        let (io, wake_rx, wake_tx, ended) = match setup() {
            Ok(fds) => fds,
            Err(err) => {
                reap_after_failure(pid);
                return Err(spawn_error(format!("cannot set up the pty: {err}")));
            }
        };

        let mut emulator = Emulator::new(spec.cols, spec.rows, spec.scrollback);
        // Blank until the program prints: asleep, it costs a byte a row.
        emulator.sleep();
        let shared = Arc::new(Shared {
            id: spec.id.clone(),
            pid,
            emulator: Mutex::new(emulator),
            io,
            input: Mutex::new(Vec::new()),
            wake: wake_tx,
            fanout: OutputFanout::new(),
            observer,
            exited: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            backlog: Mutex::new(Backlog::default()),
            backlog_changed: Condvar::new(),
            log: Mutex::new(log),
            reaping: Mutex::new(Reaping::default()),
        });

        if let Err(err) = start_thread("read", &spec.id, &shared, move |shared| {
            read_loop(shared, wake_rx, ended)
        }) {
            reap_after_failure(pid);
            return Err(spawn_error(err));
        }

        tracing::debug!(terminal = %spec.id, pid, program = %program, "pty terminal started");
        Ok(Self {
            id: spec.id,
            pid,
            shared,
            master: Mutex::new(Some(master)),
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
        let mut emulator = self.shared.emulator.lock().unwrap();
        let asleep = emulator.is_asleep();
        let snapshot = emulator.snapshot(scrollback);
        drop(emulator);
        if asleep && snapshot.lines.len() > 1_000 {
            // A long history was decoded for the answer: give back what that took. (A sleeping
            // screen answers without waking; only the rows asked for are decoded.)
            give_back_memory_soon();
        }
        Ok(snapshot)
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
        self.master.lock().unwrap().take();
        self.shared.finished.store(true, Ordering::SeqCst);
        self.shared.fanout.close();
        self.shared.reap_when(|reaping| reaping.closed = true);
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
/// worker, and queued input goes out from here when the pty was full. It also watches for the
/// program's end (`ended`, a pidfd) and starts the exit report. Ends once the program has ended
/// and the pty is at end of file (every holder of the slave closed it) or the terminal closed.
fn read_loop(shared: &Arc<Shared>, wake: File, ended: File) {
    let mut reading = true;
    let mut running = true;
    while running || (reading && !shared.closed.load(Ordering::SeqCst)) {
        let want_write = reading && !shared.input.lock().unwrap().is_empty();
        let mut fds = [
            libc::pollfd {
                // A negative fd is left out of the poll.
                fd: if reading { shared.io.as_raw_fd() } else { -1 },
                events: libc::POLLIN | if want_write { libc::POLLOUT } else { 0 },
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if running { ended.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Err(err) = poll(&mut fds, -1) {
            tracing::warn!(terminal = %shared.id, "polling the pty failed: {err}");
            break;
        }
        let [pty, wake_fd, end_fd] = fds;
        if wake_fd.revents & libc::POLLIN != 0 {
            let mut sink = [0u8; 64];
            // Drained only to reset readiness; the bytes carry no meaning.
            let _ = (&wake).read(&mut sink);
        }
        if end_fd.revents != 0 {
            running = false;
            shared.program_ended();
        }
        if reading && shared.closed.load(Ordering::SeqCst) {
            reading = false;
            shared.end_backlog();
        }
        if !reading {
            continue;
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
        let (chunk, more) = read_available(shared);
        if !chunk.is_empty() {
            shared.queue_output(chunk);
        }
        if !more {
            reading = false;
            shared.end_backlog();
        }
    }
    // Ended by a failed poll, or closed while still reading: no more output comes either way.
    shared.end_backlog();
    if running {
        // The poll failed before the program ended: learn of its end the old way, so that it
        // is still reported and reaped.
        let _ = wait_without_reaping(shared.pid);
        shared.program_ended();
    }
}

/// Read what the pty has now, up to [`READ_CHUNK`]: a pty hands out at most about 4 KiB per
/// read, and taking all there is at once empties the pty sooner and makes one emulator feed,
/// one publish and one observer call of several reads. Reads go through a 4 KiB buffer on the
/// stack into the chunk, which is sized to what came (a full chunk is reserved once a read
/// comes back full): nothing is held between outputs, and an echo costs a few bytes, not 64
/// KiB. Returns the bytes read and whether more may come (false at end of file).
fn read_available(shared: &Shared) -> (Vec<u8>, bool) {
    let mut chunk: Vec<u8> = Vec::new();
    let mut piece = [0u8; 4096];
    let more = loop {
        let want = (READ_CHUNK - chunk.len()).min(piece.len());
        if want == 0 {
            break true;
        }
        match (&shared.io).read(&mut piece[..want]) {
            Ok(0) => break false,
            Ok(n) => {
                if n == piece.len() && chunk.capacity() < READ_CHUNK {
                    chunk.reserve_exact(READ_CHUNK - chunk.len());
                }
                chunk.extend_from_slice(&piece[..n]);
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => break true,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            // EIO is how Linux reports that every holder of the slave has closed it.
            Err(err) if err.raw_os_error() == Some(libc::EIO) => break false,
            Err(err) => {
                tracing::warn!(terminal = %shared.id, "reading the pty failed: {err}");
                break false;
            }
        }
    };
    if chunk.len() < chunk.capacity() / 4 {
        chunk.shrink_to_fit();
    }
    (chunk, more)
}

/// The screen worker: each chunk, in order, through the emulator, the log, the subscribers and
/// the observer. Ends when no chunk came for `idle` (at once for a zero `idle`), or after the
/// last one once the reader has ended; the screen then sleeps and the log gives back its buffer.
fn screen_work(shared: &Shared, idle: Duration) {
    let mut backlog = shared.backlog.lock().unwrap();
    loop {
        if let Some(chunk) = backlog.chunks.pop_front() {
            // Room for the reader.
            shared.backlog_changed.notify_all();
            drop(backlog);
            shared.take_output(&chunk);
            backlog = shared.backlog.lock().unwrap();
            backlog.fed += 1;
            shared.backlog_changed.notify_all();
            continue;
        }
        // Nothing is waiting: put the log on disk now, so that a burst of small chunks costs one
        // write and what was printed is on disk as soon as the program pauses.
        drop(backlog);
        shared.log.lock().unwrap().flush();
        backlog = shared.backlog.lock().unwrap();
        if !backlog.chunks.is_empty() {
            continue;
        }
        if backlog.ended || idle.is_zero() {
            break;
        }
        let (guard, wait) = shared.backlog_changed.wait_timeout(backlog, idle).unwrap();
        backlog = guard;
        if wait.timed_out() && backlog.chunks.is_empty() {
            break;
        }
    }
    backlog.working = false;
    shared.backlog_changed.notify_all();
    drop(backlog);
    // A worker started after this one may already be feeding: sleeping and feeding both hold
    // the emulator's lock, and either order leaves the same screen.
    shared.emulator.lock().unwrap().sleep();
    shared.log.lock().unwrap().release();
    give_back_memory();
}

impl Shared {
    /// Make the reader look at queued input and the closed flag again.
    fn wake_reader(&self) {
        // A full pipe already means the reader will wake up; nothing else can fail here.
        let _ = (&self.wake).write(&[1]);
    }

    /// Queue a chunk for the screen, waiting while [`CHUNKS_AHEAD`] are queued, and start a
    /// worker when none runs.
    fn queue_output(self: &Arc<Self>, chunk: Vec<u8>) {
        let mut backlog = self.backlog.lock().unwrap();
        while backlog.chunks.len() >= CHUNKS_AHEAD && backlog.working {
            backlog = self.backlog_changed.wait(backlog).unwrap();
        }
        backlog.chunks.push_back(chunk);
        backlog.read += 1;
        self.backlog_changed.notify_all();
        if backlog.working {
            return;
        }
        backlog.working = true;
        drop(backlog);
        if let Err(err) = start_thread("screen", &self.id, self, |shared| {
            screen_work(shared, SCREEN_IDLE)
        }) {
            // No thread to be had: take the output in here, late rather than never.
            tracing::warn!(terminal = %self.id, "{err}; taking output in on the reader");
            screen_work(self, Duration::ZERO);
        }
    }

    /// The reader reads no more: a worker ends after the last chunk, and the exit report knows
    /// that nothing more is on its way.
    fn end_backlog(&self) {
        self.backlog.lock().unwrap().ended = true;
        self.backlog_changed.notify_all();
    }

    /// One chunk of output: screen first (so that the observer and subscribers never see output
    /// the screen has not), then log, subscribers and observer.
    fn take_output(&self, data: &[u8]) {
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
        self.log.lock().unwrap().write(data);
        self.fanout.publish(data);
        self.observer.output(&self.id);
    }

    /// The program has ended (the reader saw its pidfd): learn how, and report it from a
    /// thread of its own, which waits for the output still on its way.
    fn program_ended(self: &Arc<Self>) {
        let code = match wait_without_reaping(self.pid) {
            Ok(code) => code,
            Err(err) => {
                tracing::warn!(terminal = %self.id, pid = self.pid, "learning how the program ended failed: {err}");
                None
            }
        };
        self.exited.store(true, Ordering::SeqCst);
        if let Err(err) = start_thread("exit", &self.id, self, move |shared| {
            shared.report_exit(code)
        }) {
            // The reader must not wait for the drain (it is the one reading); report now.
            tracing::warn!(terminal = %self.id, "{err}; reporting the exit at once");
            self.close_and_report(code);
        }
    }

    /// Let the output drain, close the subscribers, report the exit; then the program may be
    /// reaped once the terminal closes.
    fn report_exit(&self, code: Option<i32>) {
        // Returns as soon as the reader has ended and every chunk it read was taken in, or once
        // nothing was read or fed for DRAIN_AFTER_EXIT with every chunk read also fed (a slow
        // emulator on a busy machine is still draining, not done), or after DRAIN_LIMIT in all.
        let since = Instant::now();
        let mut backlog = self.backlog.lock().unwrap();
        let mut last = (backlog.read, backlog.fed);
        let mut moved = Instant::now();
        loop {
            let now = (backlog.read, backlog.fed);
            if backlog.ended && backlog.fed == backlog.read {
                break;
            }
            if now != last {
                (last, moved) = (now, Instant::now());
            } else if now.0 <= now.1 && moved.elapsed() >= DRAIN_AFTER_EXIT {
                break;
            }
            if since.elapsed() >= DRAIN_LIMIT {
                break;
            }
            backlog = wait_a_little(&self.backlog_changed, backlog);
        }
        drop(backlog);
        // What was taken in is on disk before anyone hears of the exit (the worker flushes only
        // once it finds the queue empty, which may be after this).
        self.log.lock().unwrap().flush();
        self.close_and_report(code);
    }

    /// Subscribers are closed first, so that whoever hears of the exit finds every stream
    /// complete; then the program is reaped if the terminal is closed already.
    fn close_and_report(&self, code: Option<i32>) {
        self.finished.store(true, Ordering::SeqCst);
        self.fanout.close();
        self.observer.exited(&self.id, code);
        self.reap_when(|reaping| reaping.ended = true);
    }

    /// Record one condition for reaping; reap once both hold.
    fn reap_when(&self, record: impl FnOnce(&mut Reaping)) {
        reap_when(&self.reaping, self.pid, record);
    }
}

/// Record one condition for reaping program `pid`; reap it once both hold.
pub(super) fn reap_when(reaping: &Mutex<Reaping>, pid: u32, record: impl FnOnce(&mut Reaping)) {
    let mut reaping = reaping.lock().unwrap_or_else(|p| p.into_inner());
    record(&mut reaping);
    if reaping.ended && reaping.closed && !reaping.reaped {
        reaping.reaped = true;
        // A zombie by now: this returns at once.
        reap_now(pid);
    }
}

/// Hand the memory a screen freed as it went to sleep back to the system. glibc keeps what is
/// freed in its arenas for reuse and returns only what is at an arena's top, so the megabytes
/// of a large screen's grid stayed resident after it slept (6 MB per terminal that had printed
/// 2,000 lines); `malloc_trim` gives back every whole free page of every arena. It walks them
/// all holding their locks (1-2 ms with 256 terminals), so trims are spaced by [`TRIM_SPACING`]:
/// a worker that comes too soon waits for its turn, and one that finds a trim already waiting
/// leaves its memory to that one, which runs after its frees.
pub(super) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// When the last trim ran, and whether a worker waits to run the next.
        static TRIMS: Mutex<(Option<Instant>, bool)> = Mutex::new((None, false));
        let mut trims = TRIMS.lock().unwrap();
        if trims.1 {
            return;
        }
        if let Some(due) = trims.0.map(|last| last + TRIM_SPACING) {
            let now = Instant::now();
            if due > now {
                trims.1 = true;
                drop(trims);
                thread::sleep(due - now);
                trims = TRIMS.lock().unwrap();
                trims.1 = false;
            }
        }
        trims.0 = Some(Instant::now());
        drop(trims);
        // SAFETY: malloc_trim only releases free memory; it may be called from any thread.
        unsafe { libc::malloc_trim(0) };
    }
}

/// [`give_back_memory`] from a thread of its own, for a caller that must not wait for a trim's
/// turn (the runtime asking for a screen, an ACP agent's only thread).
pub(super) fn give_back_memory_soon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Err(err) = thread::Builder::new()
        .name("orch-trim".into())
        .spawn(give_back_memory)
    {
        tracing::debug!("no thread to give memory back: {err}");
    }
}

/// Least time between two [`give_back_memory`] trims.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_SPACING: Duration = Duration::from_secs(1);

/// Wait on `changed` for at most 50 ms: long enough not to spin, short enough to notice time
/// limits without a notification.
fn wait_a_little<'a>(changed: &Condvar, guard: MutexGuard<'a, Backlog>) -> MutexGuard<'a, Backlog> {
    changed
        .wait_timeout(guard, Duration::from_millis(50))
        .unwrap()
        .0
}

/// An fd that becomes readable when program `pid` ends: its pidfd (Linux 5.3 and later), or
/// where that call is missing or refused the read end of a pipe that a thread writes to once `waitid` returns
/// (a thread per program there, as before pidfds).
pub(super) fn program_end_fd(pid: u32, id: &str) -> io::Result<File> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd >= 0 {
        // SAFETY: the syscall returned a new descriptor that nobody else owns.
        return Ok(File::from(unsafe {
            OwnedFd::from_raw_fd(fd as libc::c_int)
        }));
    }
    let err = io::Error::last_os_error();
    // Older kernels lack the call; some seccomp profiles refuse calls they do not know.
    if !matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES)
    ) {
        return Err(err);
    }
    let (rx, tx) = pipe()?;
    thread::Builder::new()
        .name(format!("pty-wait-{id}"))
        .spawn(move || {
            let _ = wait_without_reaping(pid);
            let _ = File::from(tx).write(&[1]);
        })?;
    Ok(File::from(rx))
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
    body: impl FnOnce(&Arc<Shared>) + Send + 'static,
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
    /// The open log; `None` after a write failed, so that a full disk costs one warning, not
    /// one per chunk.
    file: Option<File>,
    /// Output not yet written, so that many small chunks make one write; given back when the
    /// terminal is quiet (see [`OutputLog::release`]).
    buf: Vec<u8>,
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
            file: Some(file),
            buf: Vec::new(),
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
        if self.file.is_none() {
            return;
        }
        if self.buf.len() + data.len() > READ_CHUNK {
            self.flush();
        }
        if data.len() >= READ_CHUNK {
            let written = match self.file.as_mut() {
                Some(file) => file.write_all(data),
                None => return,
            };
            match written {
                Ok(()) => self.len += data.len() as u64,
                Err(err) => self.fail("writing", err),
            }
            return;
        }
        self.buf.extend_from_slice(data);
        self.len += data.len() as u64;
    }

    pub(super) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let written = match self.file.as_mut() {
            Some(file) => file.write_all(&self.buf),
            None => Ok(()),
        };
        self.buf.clear();
        if let Err(err) = written {
            self.fail("writing", err);
        }
    }

    /// Write what is buffered and give the buffer's memory back: the terminal is quiet.
    pub(super) fn release(&mut self) {
        self.flush();
        self.buf = Vec::new();
    }

    /// Move the current log to `<path>.1`, replacing the previous one, and start a new file.
    fn rotate(&mut self) -> io::Result<()> {
        self.flush();
        if self.file.take().is_none() {
            // Writing failed and logging stopped (said once, by `fail`).
            return Ok(());
        }
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        fs::rename(&self.path, PathBuf::from(old))?;
        self.file = Some(open_log(&self.path)?);
        self.len = 0;
        Ok(())
    }

    fn fail(&mut self, what: &str, err: io::Error) {
        tracing::warn!(log = %self.path.display(), "{what} the output log failed, logging stops: {err}");
        self.file = None;
    }
}

impl Drop for OutputLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::fanout::OutputChunk;
    use std::sync::mpsc;

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

    /// Threads of this process whose name ends with `-<id>` (`pty-read-q1`, ...).
    fn threads_of(id: &str) -> Vec<String> {
        let suffix = format!("-{id}");
        fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|task| fs::read_to_string(task.path().join("comm")).ok())
            .map(|name| name.trim_end().to_string())
            .filter(|name| name.ends_with(&suffix))
            .collect()
    }

    #[test]
    fn a_quiet_terminal_keeps_only_its_reader_and_its_screen_sleeps() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), &["sh", "-c", "seq 300; echo ready; exec cat"]);
        // An id of its own: the threads are found by name, and other tests use `t-1`.
        spec.id = "q1".to_string();
        let (tx, calls) = mpsc::channel();
        let term = PtyTerminal::spawn(
            spec,
            Arc::new(Recorder {
                calls: tx,
                slow: Duration::ZERO,
            }),
        )
        .unwrap();
        let screen = |term: &PtyTerminal| term.screen(0).unwrap().lines.join("\n");
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + PATIENCE;
            while !done() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                let _ = calls.recv_timeout(Duration::from_millis(20));
            }
        };
        wait_for("ready", &|| screen(&term).contains("ready"));
        // Quiet for SCREEN_IDLE: the worker is gone and the screen (300 lines of history)
        // sleeps small; the reader alone watches the pty and the program.
        wait_for("the screen worker to end", &|| {
            threads_of("q1") == ["pty-read-q1"]
        });
        let asleep = term.shared.emulator.lock().unwrap().asleep_bytes();
        assert!(
            asleep.is_some_and(|bytes| bytes < 4_000),
            "screen asleep in {asleep:?} bytes"
        );
        assert!(screen(&term).contains("ready"));
        assert!(term.shared.emulator.lock().unwrap().is_asleep());
        // Output again: a worker takes it in, the screen wakes with its history, and sleeps
        // again once quiet.
        term.write(b"hello\r").unwrap();
        wait_for("the echo", &|| screen(&term).matches("hello").count() == 2);
        let snap = term.screen(usize::MAX).unwrap();
        assert_eq!(snap.lines[0], "1", "history kept: {:?}", &snap.lines[..3]);
        wait_for("the screen to sleep again", &|| {
            term.shared.emulator.lock().unwrap().is_asleep() && threads_of("q1") == ["pty-read-q1"]
        });
        // The program's end is seen without a thread waiting for it, and once closed, no
        // thread is left.
        let pid = term.pid;
        term.signal(false).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match calls.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Call::Exited(code)) => {
                    assert_eq!(code, None, "killed by SIGTERM");
                    break;
                }
                Ok(Call::Output) => {}
                Err(_) => panic!("no exit reported"),
            }
        }
        term.close().unwrap();
        wait_for("every thread to end", &|| threads_of("q1").is_empty());
        assert!(!PathBuf::from(format!("/proc/{pid}")).exists(), "reaped");
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
