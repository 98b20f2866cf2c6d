//! The tmux control-mode client: one long-lived `tmux -C` process per tmux server. Command lines
//! are written to its stdin; replies come back as `%begin`…`%end`/`%error` blocks and are matched
//! to the lines in the order they were sent; `%output` notifications are decoded to bytes and
//! handed to a [`ControlEvents`] sink from the reader thread.
//!
//! It knows the control-mode framing only. Which commands exist, how they are quoted and what
//! their replies mean live in `command.rs`; which pane belongs to which terminal lives in
//! `tmux.rs`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Most bytes of the client's stderr kept for error messages.
const STDERR_LIMIT: usize = 4096;

/// The output of one tmux command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Output lines, without their newline (lossy where tmux printed invalid UTF-8).
    pub lines: Vec<String>,
    /// Whether the block ended with `%error`: the command failed and `lines` say why.
    pub error: bool,
}

/// What can go wrong talking to the control client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The client could not be started.
    #[error("cannot run {program}: {detail}")]
    Start { program: String, detail: String },
    /// The client ended (server killed, session gone, client detached); the reason as tmux or
    /// its stderr gave it.
    #[error("tmux control client ended: {0}")]
    Closed(String),
    /// No reply in time.
    #[error("tmux did not answer within {0:?}")]
    Timeout(Duration),
}

/// Receives what the server says on its own. Called on the reader thread: must not block.
pub trait ControlEvents: Send + Sync + 'static {
    /// A pane (`%N`) printed `data`.
    fn output(&self, pane: &str, data: &[u8]);
    /// The client ended without being asked to: the server died, or the client was detached.
    fn closed(&self, reason: &str);
}

/// Runs on the reader thread when a line's reply is complete, before any later line of tmux's
/// output is read, so that it can start routing output of a pane the reply names.
pub type ReplyHook = Box<dyn FnOnce(&[Block]) + Send>;

/// Where a reply goes once complete.
type ReplySender = mpsc::Sender<Result<Vec<Block>, ControlError>>;

/// A line written to tmux whose reply is not complete yet.
struct Pending {
    /// Number of commands in the line, so the number of blocks when none fails.
    expect: usize,
    /// Blocks received so far.
    blocks: Vec<Block>,
    /// Where the reply goes.
    reply: ReplySender,
    /// Run on the reader thread with the blocks, before the reply is sent.
    hook: Option<ReplyHook>,
}

/// One classified line of control-mode output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `%begin <time> <number> <flags>`.
    Begin(Guard),
    /// `%end <time> <number> <flags>`.
    End(Guard),
    /// `%error <time> <number> <flags>`.
    Error(Guard),
    /// `%output %<pane> <data>`, data decoded.
    Output { pane: String, data: Vec<u8> },
    /// `%exit [reason]`: the client is about to end.
    Exit(Option<String>),
    /// Any other notification (`%window-add`, `%session-changed`, ...), or text.
    Other(String),
}

/// The three numbers that open and close a reply block. Flags are 1 for a command from this
/// client's stdin and 0 for the client's initial command and for hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// Server time the command ran.
    pub time: u64,
    /// Server-wide command number.
    pub number: u64,
    /// Flags (see above).
    pub flags: u32,
}

/// What the framing layer makes of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete reply block and its flags.
    Block { block: Block, flags: u32 },
    /// Pane output.
    Output { pane: String, data: Vec<u8> },
    /// `%exit`, with tmux's reason.
    Exit(Option<String>),
    /// Nothing for anyone (other notifications, or a line inside a block).
    None,
}

/// Splits control-mode output into blocks and notifications. Inside a block every line is data
/// until the `%end`/`%error` whose numbers match the `%begin`, so command output that happens to
/// start with `%` is never taken for a notification.
#[derive(Debug, Default)]
pub struct Framer {
    /// The block being read: its guard and lines so far.
    open: Option<(Guard, Vec<String>)>,
}

impl Framer {
    /// Read one line (without its newline).
    pub fn feed(&mut self, raw: &[u8]) -> Event {
        if let Some((guard, lines)) = &mut self.open {
            let error = match parse_line(raw) {
                Line::End(g) if g == *guard => false,
                Line::Error(g) if g == *guard => true,
                _ => {
                    lines.push(String::from_utf8_lossy(raw).into_owned());
                    return Event::None;
                }
            };
            let (guard, lines) = self.open.take().expect("open block");
            return Event::Block {
                block: Block { lines, error },
                flags: guard.flags,
            };
        }
        match parse_line(raw) {
            Line::Begin(g) => {
                self.open = Some((g, Vec::new()));
                Event::None
            }
            Line::Output { pane, data } => Event::Output { pane, data },
            Line::Exit(reason) => Event::Exit(reason),
            _ => Event::None,
        }
    }
}

/// Classify one line of control-mode output.
pub fn parse_line(raw: &[u8]) -> Line {
    if let Some(rest) = raw.strip_prefix(b"%output ") {
        let (pane, data) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        return Line::Output {
            pane: String::from_utf8_lossy(pane).into_owned(),
            data: decode_output(data),
        };
    }
    let text = String::from_utf8_lossy(raw);
    let mut words = text.split(' ');
    let kind = words.next().unwrap_or("");
    let guard = |mut words: std::str::Split<'_, char>| -> Option<Guard> {
        let g = Guard {
            time: words.next()?.parse().ok()?,
            number: words.next()?.parse().ok()?,
            flags: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(g)
    };
    match kind {
        "%begin" | "%end" | "%error" => match guard(words) {
            Some(g) if kind == "%begin" => Line::Begin(g),
            Some(g) if kind == "%end" => Line::End(g),
            Some(g) => Line::Error(g),
            None => Line::Other(text.into_owned()),
        },
        "%exit" => {
            let reason = text.strip_prefix("%exit").unwrap_or("").trim();
            Line::Exit((!reason.is_empty()).then(|| reason.to_owned()))
        }
        _ => Line::Other(text.into_owned()),
    }
}

/// Decode `%output` data: tmux writes bytes below 32 and `\` as `\ooo` octal escapes and every
/// other byte as is (so UTF-8, valid or not, passes through raw).
pub fn decode_output(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\\' && i + 3 < data.len() && is_octal(&data[i + 1..i + 4]) {
            let d = &data[i + 1..i + 4];
            let value = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
            out.push(value as u8);
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn is_octal(digits: &[u8]) -> bool {
    digits.len() == 3 && digits.iter().all(|d| (b'0'..=b'7').contains(d))
}

/// Matches reply blocks to the lines that asked for them, in order.
#[derive(Default)]
struct Replies {
    /// Lines awaiting their reply, oldest first.
    queue: VecDeque<Pending>,
    /// Whether the first block (the reply to the client's initial command, flags 0) has come.
    attached: bool,
}

impl Replies {
    /// Take a block; returns the entry it completed, with all its blocks.
    fn on_block(&mut self, block: Block, flags: u32) -> Option<Pending> {
        if self.attached && flags & 1 == 0 {
            // A hook's output (flags 0): not a reply to any line of ours.
            tracing::debug!(lines = ?block.lines, "tmux block from a hook, ignored");
            return None;
        }
        self.attached = true;
        let Some(front) = self.queue.front_mut() else {
            tracing::warn!(lines = ?block.lines, "tmux reply block with no command waiting");
            return None;
        };
        let error = block.error;
        front.blocks.push(block);
        // tmux stops a line at its first failing command: no more blocks will come for it.
        if error || front.blocks.len() >= front.expect {
            return self.queue.pop_front();
        }
        None
    }
}

/// State shared between the client handle and its reader thread.
struct Shared {
    /// Lines awaiting replies.
    replies: Mutex<Replies>,
    /// Set once the client ended; no more lines are accepted.
    closed: AtomicBool,
    /// Set when the handle is dropped: the end is ours, not news for the sink.
    closing: AtomicBool,
    /// Why the client ended, once it did.
    reason: Mutex<Option<String>>,
    /// The end of the client's stderr, for error messages.
    stderr: Mutex<String>,
    /// Who to tell about output and an unexpected end.
    events: Arc<dyn ControlEvents>,
    /// Names the server in logs (its socket name).
    peer: String,
    /// When the last line arrived, in milliseconds since `started`.
    last_line_ms: std::sync::atomic::AtomicU64,
    /// When the client started.
    started: std::time::Instant,
}

impl Shared {
    fn closed_error(&self) -> ControlError {
        let reason = self.reason.lock().unwrap().clone();
        ControlError::Closed(reason.unwrap_or_else(|| "tmux control client exited".to_owned()))
    }
}

/// A live control-mode client. Dropping it ends the client (not the server, whose panes live on)
/// without telling the sink.
pub struct ControlClient {
    /// Reply queue and flags, shared with the reader thread.
    shared: Arc<Shared>,
    /// The client's stdin; taken (closed) on drop. Locked across queueing and writing so that
    /// the reply queue and the lines on the wire are in the same order.
    stdin: Mutex<Option<ChildStdin>>,
    /// The `tmux -C` process, killed and reaped on drop.
    child: Mutex<Child>,
    /// The reader thread, which must never wait for a reply (only it could read one).
    reader: thread::ThreadId,
}

impl ControlClient {
    /// Start `argv` (a tmux prefix plus control-mode arguments whose command attaches to a
    /// session) and wait for the reply to that initial command.
    pub fn start(
        argv: &[String],
        peer: &str,
        events: Arc<dyn ControlEvents>,
        timeout: Duration,
    ) -> Result<(Self, Vec<Block>), ControlError> {
        let (program, args) = argv.split_first().ok_or_else(|| ControlError::Start {
            program: "tmux".into(),
            detail: "the tmux command is empty".into(),
        })?;
        let mut command = Command::new(program);
        // A daemon started inside tmux must not look like a nested client to the server, and a
        // server this client starts must not hand the daemon's own terminal to its programs.
        for (key, _) in std::env::vars_os() {
            if crate::adapters::foreign_terminal_var(&key.to_string_lossy()) {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ControlError::Start {
                program: program.clone(),
                detail: e.to_string(),
            })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdin = child.stdin.take().expect("piped stdin");

        let (tx, rx) = mpsc::channel();
        let mut replies = Replies::default();
        replies.queue.push_back(Pending {
            expect: 1,
            blocks: Vec::new(),
            reply: tx,
            hook: None,
        });
        let shared = Arc::new(Shared {
            replies: Mutex::new(replies),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            reason: Mutex::new(None),
            stderr: Mutex::new(String::new()),
            events,
            peer: peer.to_owned(),
            last_line_ms: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        });
        let s = shared.clone();
        thread::Builder::new()
            .name(format!("tmux-stderr-{peer}"))
            .spawn(move || read_stderr(stderr, &s))
            .map_err(|e| ControlError::Start {
                program: program.clone(),
                detail: e.to_string(),
            })?;
        let s = shared.clone();
        let reader = thread::Builder::new()
            .name(format!("tmux-reader-{peer}"))
            .spawn(move || read_loop(stdout, &s))
            .map_err(|e| ControlError::Start {
                program: program.clone(),
                detail: e.to_string(),
            })?;
        let client = Self {
            shared,
            stdin: Mutex::new(Some(stdin)),
            child: Mutex::new(child),
            reader: reader.thread().id(),
        };

        let blocks = wait(&rx, timeout, &client.shared)?;
        if let Some(failed) = blocks.iter().find(|b| b.error) {
            // tmux refused the initial command (bad session name, unknown option): retrying
            // would not help.
            return Err(ControlError::Start {
                program: program.clone(),
                detail: failed.lines.join("; "),
            });
        }
        Ok((client, blocks))
    }

    /// Write a line of `commands` commands and return where its reply will arrive. `hook` runs on
    /// the reader thread when the reply is complete.
    pub fn send(
        &self,
        line: &str,
        commands: usize,
        hook: Option<ReplyHook>,
    ) -> Result<mpsc::Receiver<Result<Vec<Block>, ControlError>>, ControlError> {
        // An empty line detaches a control client, and a newline would split the line in two.
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "bad control-mode line {line:?}"
        );
        if thread::current().id() == self.reader {
            // The reply could only be read by this very thread: waiting would hang until the
            // timeout. Sinks and hooks must not call back into the client.
            return Err(ControlError::Closed(
                "a command was sent from the tmux reader thread".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let mut stdin = self.stdin.lock().unwrap();
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(self.shared.closed_error());
        }
        let Some(pipe) = stdin.as_mut() else {
            return Err(ControlError::Closed("the client is shutting down".into()));
        };
        // Queue before writing: the reply may be read before `write_all` returns.
        self.shared
            .replies
            .lock()
            .unwrap()
            .queue
            .push_back(Pending {
                expect: commands.max(1),
                blocks: Vec::new(),
                reply: tx,
                hook,
            });
        tracing::trace!(peer = %self.shared.peer, dir = "->", line, "tmux");
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if let Err(e) = pipe.write_all(&bytes).and_then(|()| pipe.flush()) {
            // The reader will see EOF and fail every queued reply, this one included.
            tracing::debug!(peer = %self.shared.peer, error = %e, "writing to tmux failed");
        }
        Ok(rx)
    }

    /// Send a line and wait for its reply.
    pub fn request(
        &self,
        line: &str,
        commands: usize,
        hook: Option<ReplyHook>,
        timeout: Duration,
    ) -> Result<Vec<Block>, ControlError> {
        let rx = self.send(line, commands, hook)?;
        self.wait(&rx, timeout)
    }

    /// Wait for a reply returned by [`ControlClient::send`].
    pub fn wait(
        &self,
        rx: &mpsc::Receiver<Result<Vec<Block>, ControlError>>,
        timeout: Duration,
    ) -> Result<Vec<Block>, ControlError> {
        wait(rx, timeout, &self.shared)
    }

    /// End the client's process (a connection that stopped answering): the reader sees the end
    /// and closes the client as if the server had gone.
    pub fn kill(&self) {
        let _ = self.child.lock().unwrap().kill();
    }

    /// How long since tmux last sent a line (a reply, output, a notification).
    pub fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.shared.last_line_ms.load(Ordering::Relaxed));
        self.shared.started.elapsed().saturating_sub(last)
    }

    /// Whether the client ended (its server may be gone).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl Drop for ControlClient {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Closing stdin makes tmux end the client cleanly; the kill covers a client that hangs.
        drop(self.stdin.lock().unwrap().take());
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn wait(
    rx: &mpsc::Receiver<Result<Vec<Block>, ControlError>>,
    timeout: Duration,
    shared: &Shared,
) -> Result<Vec<Block>, ControlError> {
    match rx.recv_timeout(timeout) {
        Ok(reply) => reply,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(ControlError::Timeout(timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(shared.closed_error()),
    }
}

fn read_loop(stdout: impl Read, shared: &Shared) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut framer = Framer::default();
    let mut raw = Vec::new();
    let mut exit_reason = None;
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                exit_reason.get_or_insert_with(|| format!("reading from tmux failed: {e}"));
                break;
            }
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        shared.last_line_ms.store(
            shared.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        match framer.feed(&raw) {
            Event::Block { block, flags } => {
                tracing::trace!(peer = %shared.peer, dir = "<-", ?block, flags, "tmux");
                let done = shared.replies.lock().unwrap().on_block(block, flags);
                if let Some(mut pending) = done {
                    if let Some(hook) = pending.hook.take() {
                        hook(&pending.blocks);
                    }
                    let _ = pending.reply.send(Ok(pending.blocks));
                }
            }
            Event::Output { pane, data } => {
                tracing::trace!(peer = %shared.peer, dir = "<-", %pane, bytes = data.len(), "tmux output");
                shared.events.output(&pane, &data);
            }
            Event::Exit(reason) => {
                tracing::debug!(peer = %shared.peer, ?reason, "tmux %exit");
                exit_reason = Some(reason.unwrap_or_else(|| "tmux client exited".to_owned()));
            }
            Event::None => {}
        }
    }
    // Without a `%exit` line the client's stderr says why (`no server running`, `lost server`);
    // give its reader a moment to catch the last words.
    let reason = match exit_reason {
        Some(reason) => reason,
        None => {
            let deadline = Instant::now() + Duration::from_millis(100);
            loop {
                let text = shared.stderr.lock().unwrap().trim().to_owned();
                if !text.is_empty() {
                    break text;
                }
                if Instant::now() >= deadline {
                    break "tmux control client exited".to_owned();
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
    };
    *shared.reason.lock().unwrap() = Some(reason.clone());
    shared.closed.store(true, Ordering::SeqCst);
    let pending: Vec<Pending> = shared.replies.lock().unwrap().queue.drain(..).collect();
    for p in pending {
        let _ = p.reply.send(Err(ControlError::Closed(reason.clone())));
    }
    if shared.closing.load(Ordering::SeqCst) {
        tracing::debug!(peer = %shared.peer, "tmux control client closed");
    } else {
        tracing::info!(peer = %shared.peer, %reason, "tmux control client ended");
        shared.events.closed(&reason);
    }
}

fn read_stderr(mut stderr: impl Read, shared: &Shared) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut kept = shared.stderr.lock().unwrap();
        if kept.len() < STDERR_LIMIT {
            kept.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_decoded_as_bytes() {
        assert_eq!(decode_output(br"a\015\012b"), b"a\r\nb");
        assert_eq!(decode_output(br"\033[1mX\033[0m"), b"\x1b[1mX\x1b[0m");
        assert_eq!(decode_output(br"back\134slash"), b"back\\slash");
        // UTF-8 (and invalid bytes above 127) arrive raw.
        assert_eq!(decode_output("é✓🦀".as_bytes()), "é✓🦀".as_bytes());
        assert_eq!(decode_output(b"\xff\xfe"), b"\xff\xfe");
        // A backslash not followed by three octal digits is kept as is.
        assert_eq!(decode_output(br"\9\01"), br"\9\01");
        assert_eq!(decode_output(br"\000"), b"\0");
    }

    #[test]
    fn lines_are_classified() {
        assert_eq!(
            parse_line(br"%output %12 hi\015\012"),
            Line::Output {
                pane: "%12".into(),
                data: b"hi\r\n".to_vec()
            }
        );
        assert_eq!(
            parse_line(b"%output %1 "),
            Line::Output {
                pane: "%1".into(),
                data: vec![]
            }
        );
        assert_eq!(
            parse_line(b"%begin 1795238664 266 1"),
            Line::Begin(Guard {
                time: 1795238664,
                number: 266,
                flags: 1
            })
        );
        assert_eq!(
            parse_line(b"%error 1 2 0"),
            Line::Error(Guard {
                time: 1,
                number: 2,
                flags: 0
            })
        );
        assert_eq!(parse_line(b"%exit"), Line::Exit(None));
        assert_eq!(
            parse_line(b"%exit server exited unexpectedly"),
            Line::Exit(Some("server exited unexpectedly".into()))
        );
        assert_eq!(
            parse_line(b"%window-add @1"),
            Line::Other("%window-add @1".into())
        );
        assert_eq!(parse_line(b"%end 1 2"), Line::Other("%end 1 2".into()));
    }

    fn feed_all(framer: &mut Framer, text: &str) -> Vec<Event> {
        text.lines()
            .map(|l| framer.feed(l.as_bytes()))
            .filter(|e| *e != Event::None)
            .collect()
    }

    #[test]
    fn blocks_keep_lines_that_look_like_notifications() {
        let mut f = Framer::default();
        let events = feed_all(
            &mut f,
            "%begin 10 5 1\n\
             first line\n\
             %output %1 not-output\n\
             %end 10 4 1\n\
             %exit not really\n\
             \n\
             %end 10 5 1\n\
             %output %2 x\\134y\n\
             %begin 11 6 1\n\
             can't find pane: %9\n\
             %error 11 6 1\n",
        );
        assert_eq!(
            events,
            vec![
                Event::Block {
                    block: Block {
                        lines: vec![
                            "first line".into(),
                            "%output %1 not-output".into(),
                            "%end 10 4 1".into(),
                            "%exit not really".into(),
                            "".into(),
                        ],
                        error: false,
                    },
                    flags: 1,
                },
                Event::Output {
                    pane: "%2".into(),
                    data: b"x\\y".to_vec()
                },
                Event::Block {
                    block: Block {
                        lines: vec!["can't find pane: %9".into()],
                        error: true
                    },
                    flags: 1,
                },
            ]
        );
    }

    fn pending(expect: usize) -> (Pending, mpsc::Receiver<Result<Vec<Block>, ControlError>>) {
        let (tx, rx) = mpsc::channel();
        (
            Pending {
                expect,
                blocks: vec![],
                reply: tx,
                hook: None,
            },
            rx,
        )
    }

    fn block(line: &str, error: bool) -> Block {
        Block {
            lines: vec![line.into()],
            error,
        }
    }

    #[test]
    fn replies_match_lines_in_order() {
        let mut r = Replies::default();
        let (attach, _a) = pending(1);
        let (two, _b) = pending(2);
        let (failing, _c) = pending(3);
        let (last, _d) = pending(1);
        r.queue.extend([attach, two, failing, last]);

        // The attach reply has flags 0 and belongs to the first entry.
        let done = r.on_block(block("attached", false), 0).unwrap();
        assert_eq!(done.blocks, vec![block("attached", false)]);
        // A hook's block (flags 0) afterwards belongs to nobody.
        assert!(r.on_block(block("hook", false), 0).is_none());
        // Two commands in one line: complete after the second block.
        assert!(r.on_block(block("a", false), 1).is_none());
        assert!(r.on_block(block("hook", false), 0).is_none());
        let done = r.on_block(block("b", false), 1).unwrap();
        assert_eq!(done.blocks, vec![block("a", false), block("b", false)]);
        // Three commands, the first fails: tmux skips the rest, the entry is complete.
        let done = r.on_block(block("no such window", true), 1).unwrap();
        assert_eq!(done.blocks, vec![block("no such window", true)]);
        let done = r.on_block(block("z", false), 1).unwrap();
        assert_eq!(done.blocks, vec![block("z", false)]);
        assert!(r.queue.is_empty());
    }

    #[test]
    fn mutated_transcripts_never_panic() {
        // The stable stand-in for `cargo fuzz run tmux_control` (fuzz/): the framing of mutated
        // control-mode output. Decoded output never grows, a block holds only lines fed inside
        // it, and a block closes only on its own guard.
        use crate::mutate::{mutate, Rng};
        let corpus: &[&[u8]] = &[
            b"%begin 1700000000 12 0\n%end 1700000000 12 0\n%session-changed $0 ws\n",
            b"%begin 1 5 1\n%1\t123\t@4\n%end 1 5 1\n%output %1 hello\\015\\012\n",
            b"%begin 1 6 1\nparse error: syntax error\n%error 1 6 1\n",
            b"%begin 1 7 1\n%end 1 6 1\n%output %2 \\033[31mred\\033[0m \xc3\xa9 \\134\n%end 1 7 1\n",
            b"%window-add @3\n%layout-change @3 abcd,80x24,0,0,3\n%exit server exited\n",
            b"%output %9\n%output  x\n%begin x y z\n%begin 1 2\n%end 1 2 3 4\n",
        ];
        let mut rng = Rng::new(0x7e_a5);
        let (mut blocks, mut outputs) = (0, 0);
        for round in 0..20_000 {
            let base = *rng.pick(corpus);
            let input = mutate(&mut rng, base, corpus);
            let mut framer = Framer::default();
            // Lines fed since the open block's `%begin`.
            let mut inside: Option<usize> = None;
            for line in input.split(|&b| b == b'\n') {
                assert!(decode_output(line).len() <= line.len(), "round {round}");
                let was_open = framer.open.is_some();
                match framer.feed(line) {
                    Event::Block { block, .. } => {
                        blocks += 1;
                        assert_eq!(Some(block.lines.len()), inside, "round {round}");
                        assert!(
                            matches!(parse_line(line), Line::End(_) | Line::Error(_)),
                            "round {round}: a block closed by {line:?}"
                        );
                        inside = None;
                    }
                    event => {
                        if let Event::Output { data, .. } = event {
                            outputs += 1;
                            assert!(!was_open && data.len() <= line.len(), "round {round}");
                        }
                        if was_open {
                            *inside.as_mut().expect("counting") += 1;
                        } else if framer.open.is_some() {
                            inside = Some(0);
                        }
                    }
                }
            }
        }
        assert!(
            blocks > 2_000 && outputs > 2_000,
            "{blocks} blocks, {outputs} outputs"
        );
    }
}
