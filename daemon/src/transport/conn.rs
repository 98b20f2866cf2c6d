//! One JSON-RPC connection over any byte stream (socket or stdio).
//!
//! One reader: frames are decoded and handled strictly in arrival order, and each request and
//! `orch/*` notification is handed, in that order, to a [`Dispatch`] (the daemon's rpc layer), so
//! keystrokes are never reordered; a request's answer goes straight into the connection's queue
//! through its [`ReplyTo`], unless it was cancelled meanwhile. The lifecycle (`initialize` first,
//! `shutdown`, `exit`, `$/cancelRequest`) is handled here. One writer: responses and events
//! through an unbounded queue (capped: a client that stops reading is dropped rather than growing
//! memory), terminal output through a small bounded queue so a slow client backs up into its
//! coalescing buffer instead. Server-to-client requests wait in a pending map with a timeout.
//! Knows nothing of agents or tasks, nor of what a method means.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use editor_protocol::errors;
use editor_protocol::framing::{FrameDecoder, FrameError, DEFAULT_MAX_BODY};
use editor_protocol::jsonrpc::{
    self, excerpt, Id, Message, Notification, Request, Response, ResponseError,
};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A connection's id, unique for the daemon's life.
pub type ConnId = u64;
/// Requests of one connection awaiting their reply, shared by its reader (for cancellation) and
/// whoever answers.
pub type Inflight = Arc<Mutex<std::collections::HashSet<Id, IdHash>>>;

/// Hashes request ids in a connection's in-flight set: each request is looked up three times
/// (taken in, checked before it runs, answered), and std's SipHash was 4 % of the daemon's time
/// answering pipelined requests. Multiplicative (Fibonacci) hashing, a word at a time: the set
/// is the connection's own, so a client that picked colliding ids would slow only itself.
pub type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// See [`IdHash`].
#[derive(Default)]
pub struct IdHasher(u64);

impl IdHasher {
    /// 2^64 divided by the golden ratio: spreads a word's bits over the high ones.
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.mix(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        // The table's index takes the low bits: give them the high ones' mixing.
        self.0 ^ (self.0 >> 32)
    }
}

/// Where a connection's messages go: the meaning of methods is not transport's business.
pub trait Dispatch: Send + Sync + 'static {
    /// A connection opened; its id.
    fn open(&self, out: Outbound) -> ConnId;
    /// It closed.
    fn close(&self, conn: ConnId);
    /// A request (lifecycle checks passed), in arrival order; answer through `reply`.
    fn request(&self, conn: ConnId, method: String, params: Value, reply: ReplyTo);
    /// An `orch/*` method sent as a notification, in arrival order; `done` is called with its
    /// error, if any, once it was applied.
    fn notification(
        &self,
        conn: ConnId,
        method: String,
        params: Value,
        done: Box<dyn FnOnce(Option<ResponseError>) + Send>,
    );
}

/// Where one request's answer goes: its connection's queue, unless it was cancelled (or the
/// connection closed) meanwhile.
pub struct ReplyTo {
    /// The connection's sending half.
    out: Outbound,
    /// The request's id.
    id: Id,
    /// The connection's requests in flight; answering removes the id.
    inflight: Inflight,
}

impl ReplyTo {
    /// Whether the client withdrew the request (`$/cancelRequest`) or went away.
    pub fn is_cancelled(&self) -> bool {
        !self.inflight.lock().unwrap().contains(&self.id)
    }

    /// Answer; false if nobody takes it (cancelled and answered already, or gone).
    pub fn send(self, outcome: Result<Value, ResponseError>) -> bool {
        let open = self.inflight.lock().unwrap().remove(&self.id);
        open && self.out.send(&Message::Response(Response {
            id: Some(self.id),
            outcome,
        }))
    }

    /// Answer with a result serialized already (`outcome`'s bytes are its JSON), or an error;
    /// false as [`Self::send`].
    pub fn send_json(self, outcome: Result<Vec<u8>, ResponseError>) -> bool {
        let result = match outcome {
            Ok(result) => result,
            Err(e) => return self.send(Err(e)),
        };
        let open = self.inflight.lock().unwrap().remove(&self.id);
        open && self.out.send_with(|| response_body(&self.id, &result))
    }

    /// The connection this answer goes to.
    pub fn out(&self) -> &Outbound {
        &self.out
    }

    /// Whether the request is still wanted, asked later (from another thread): false once it was
    /// cancelled or its connection closed.
    pub fn live_check(&self) -> Box<dyn Fn() -> bool + Send> {
        let (inflight, id) = (self.inflight.clone(), self.id.clone());
        Box::new(move || inflight.lock().unwrap().contains(&id))
    }
}

/// Messages (responses, events) a client may have queued before it is dropped as unresponsive.
pub const MAX_QUEUED: usize = 100_000;
/// Requests awaiting their reply on one connection.
pub const MAX_INFLIGHT: usize = 4096;
/// A client whose socket has taken nothing for this long, while more than [`STALLED_BYTES`] wait
/// for it, has stopped reading and is dropped. One that reads, however slowly, is not (a replay
/// of the whole log may queue far more than that); one that stops reading with little waiting is
/// not either (it costs nothing).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes waiting for a stalled client beyond which it is dropped: see [`STALL_TIMEOUT`].
pub const STALLED_BYTES: usize = 1 << 20;
/// Terminal output batches queued per connection before output backs up into the coalescer.
const OUTPUT_QUEUE: usize = 8;
/// How long a socket connection may take to send its first complete message. Clients send
/// `initialize` at once; a connection that trickles a header or sends nothing would otherwise
/// hold its slot (one of `socket::MAX_CONNECTIONS`) and its buffers for ever.
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

type Pending = Arc<Mutex<HashMap<Id, oneshot::Sender<Result<Value, ResponseError>>>>>;

/// The sending half of a connection, shared by the runtime and the connection's tasks. Every
/// request's reply holds one: a clone is one reference count, not one per field (the clones
/// and drops of nine `Arc`s, on the reader's and the loop's threads, were 3 % of the daemon's
/// time answering pipelined requests).
#[derive(Clone)]
pub struct Outbound(Arc<Shared>);

/// What an [`Outbound`] holds.
pub struct Shared {
    /// Responses, events and requests, framed: never dropped while the client keeps up.
    tx: mpsc::UnboundedSender<Queued>,
    /// Terminal output, framed: bounded, so a slow reader backs up into its coalescing buffer.
    output_tx: mpsc::Sender<Vec<u8>>,
    /// Messages in `tx` not yet written.
    queued: Arc<AtomicUsize>,
    /// Bytes of the messages in `tx` (framed; estimated for those the writer makes itself).
    queued_bytes: Arc<AtomicUsize>,
    /// Set when the client fell too far behind; everything is refused from then on.
    overloaded: Arc<AtomicBool>,
    /// Server-to-client requests awaiting their response.
    pending: Pending,
    /// Ids for server-to-client requests.
    next_id: Arc<AtomicI64>,
    /// Who is on the other end, for logs.
    peer: Arc<str>,
    /// Tells the reader to give up on the connection: the writer failed, or the client stopped
    /// reading (a reader waiting on a silent peer would otherwise keep it registered for ever).
    closing: Arc<tokio::sync::Notify>,
}

impl std::ops::Deref for Outbound {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Outbound {
    /// Queue a message. Returns false if the connection is gone or overloaded.
    pub fn send(&self, msg: &Message) -> bool {
        self.send_with(|| msg.to_bytes())
    }

    /// Queue `messages` messages, `bytes` bytes framed, that the connection's writer appends to
    /// its buffer with `render` when their turn comes: work shared by many connections (a
    /// batch of events serialized once) is done once, and each connection's own share of it
    /// (framing) off the caller's thread. Returns false as [`Self::send`] does.
    pub fn send_rendered(&self, messages: usize, bytes: usize, render: Render) -> bool {
        self.queue(messages, || (Framed::Rendered(render), bytes))
    }

    /// Queue the body `body` makes, made only if the connection takes it.
    fn send_with(&self, body: impl FnOnce() -> Vec<u8>) -> bool {
        self.queue(1, || {
            let body = body();
            if tracing::enabled!(tracing::Level::TRACE) {
                tracing::trace!(peer = %self.peer, dir = "out", msg = %redacted(&body));
            }
            let mut frame = Vec::with_capacity(body.len() + 32);
            push_frame(&mut frame, &body);
            let bytes = frame.len();
            (Framed::Bytes(frame), bytes)
        })
    }

    /// Queue the `messages` messages `make` makes (and their size), made only if the
    /// connection takes them.
    fn queue(&self, messages: usize, make: impl FnOnce() -> (Framed, usize)) -> bool {
        if self.overloaded.load(Ordering::Relaxed) {
            return false;
        }
        if self.queued.fetch_add(messages, Ordering::Relaxed) >= MAX_QUEUED {
            tracing::warn!(peer = %self.peer, "client stopped reading; dropping the connection");
            self.overloaded.store(true, Ordering::Relaxed);
            self.closing.notify_one();
            return false;
        }
        let (framed, bytes) = make();
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.tx
            .send(Queued {
                framed,
                messages,
                bytes,
            })
            .is_ok()
    }

    /// Queue a notification.
    pub fn notify(&self, method: &str, params: Value) -> bool {
        self.send(&Message::Notification(Notification {
            method: method.into(),
            params,
        }))
    }

    /// Send a notification through the bounded output queue, waiting for room.
    pub async fn notify_output(&self, method: &str, params: Value) -> bool {
        let body = Message::Notification(Notification {
            method: method.into(),
            params,
        })
        .to_bytes();
        let mut frame = Vec::with_capacity(body.len() + 32);
        push_frame(&mut frame, &body);
        self.output_tx.send(frame).await.is_ok()
    }

    /// Send a request to the client and wait for its answer, at most `timeout`.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ResponseError> {
        let id = Id::Str(format!(
            "orch-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        let sent = self.send(&Message::Request(Request {
            id: id.clone(),
            method: method.into(),
            params,
        }));
        let gone = || {
            ResponseError::new(
                errors::INTERNAL_ERROR,
                "disconnected",
                "client disconnected",
            )
        };
        if !sent {
            self.pending.lock().unwrap().remove(&id);
            return Err(gone());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(gone()),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                Err(ResponseError::new(
                    errors::INTERNAL_ERROR,
                    "timeout",
                    format!(
                        "client did not answer {method} within {}s",
                        timeout.as_secs()
                    ),
                ))
            }
        }
    }

    /// Whether everything queued has been handed to the socket (or the connection is gone).
    pub fn drained(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0 || !self.is_open()
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed() && !self.overloaded.load(Ordering::Relaxed)
    }

    /// Peer description.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

/// Appends frames to a connection writer's buffer: see [`Outbound::send_rendered`].
pub type Render = Box<dyn FnOnce(&mut Vec<u8>) + Send>;

/// Messages for the writer: one or more, in order.
struct Queued {
    /// The messages.
    framed: Framed,
    /// How many.
    messages: usize,
    /// Their bytes, framed.
    bytes: usize,
}

/// Messages as frames, or what makes them.
enum Framed {
    /// The frames, one after the other.
    Bytes(Vec<u8>),
    /// Appends the frames to the writer's buffer.
    Rendered(Render),
}

impl Framed {
    /// Append the frames to `buf`; `peer` names the connection in the trace log.
    fn append_to(self, buf: &mut Vec<u8>, peer: &str) {
        match self {
            Framed::Bytes(bytes) => buf.extend_from_slice(&bytes),
            Framed::Rendered(render) => {
                let start = buf.len();
                render(buf);
                // Messages made here are logged here (the others were, when queued).
                if tracing::enabled!(tracing::Level::TRACE) {
                    let mut frames = FrameDecoder::new(usize::MAX);
                    frames.push(&buf[start..]);
                    while let Ok(Some(body)) = frames.next_frame() {
                        tracing::trace!(peer, dir = "out", msg = %redacted(&body));
                    }
                }
            }
        }
    }
}

/// Per-connection protocol state owned by the reader.
struct ConnState {
    /// `initialize` was received.
    initialized: bool,
    /// `shutdown` was received.
    shutting_down: bool,
    /// Notifications handed to the runtime and not yet applied (bounded like requests).
    notes_inflight: Arc<AtomicUsize>,
    /// Requests whose replies are awaited, for `$/cancelRequest`.
    inflight: Inflight,
}

/// Serve one connection until EOF, `exit`, an unrecoverable framing error, or overload; or,
/// with `first_message_within`, until that long has passed without a complete first message.
pub async fn serve<R, W>(
    mut reader: R,
    writer: W,
    rt: Arc<dyn Dispatch>,
    peer: String,
    first_message_within: Option<Duration>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let (output_tx, output_rx) = mpsc::channel(OUTPUT_QUEUE);
    let out = Outbound(Arc::new(Shared {
        tx,
        output_tx,
        queued: Arc::new(AtomicUsize::new(0)),
        queued_bytes: Arc::new(AtomicUsize::new(0)),
        overloaded: Arc::new(AtomicBool::new(false)),
        pending: Arc::default(),
        next_id: Arc::new(AtomicI64::new(1)),
        peer: peer.clone().into(),
        closing: Arc::new(tokio::sync::Notify::new()),
    }));
    let closing = out.closing.clone();
    let writer_task = tokio::spawn(write_loop(
        writer,
        rx,
        output_rx,
        WriterLinks {
            queued: out.queued.clone(),
            queued_bytes: out.queued_bytes.clone(),
            overloaded: out.overloaded.clone(),
            closing: out.closing.clone(),
            peer: out.peer.clone(),
        },
    ));
    let conn = rt.open(out.clone());
    let mut state = ConnState {
        notes_inflight: Arc::default(),
        initialized: false,
        shutting_down: false,
        inflight: Arc::default(),
    };
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_BODY);
    let mut buf = vec![0u8; 64 * 1024];
    tracing::debug!(%peer, conn, "connection opened");
    // Until the first message is complete, reads race this deadline.
    let mut first_deadline = first_message_within.map(|d| Box::pin(tokio::time::sleep(d)));
    'read: loop {
        let read = tokio::select! {
            r = reader.read(&mut buf) => r,
            _ = closing.notified() => break,
            _ = async { first_deadline.as_mut().unwrap().await }, if first_deadline.is_some() => {
                let within = first_message_within.unwrap_or_default();
                tracing::warn!(%peer, "no complete message within {within:?} of connecting, closing");
                out.send(&Message::Response(Response {
                    id: None,
                    outcome: Err(ResponseError::new(
                        errors::LIMIT_EXCEEDED,
                        "limit",
                        format!("no complete message within {} s of connecting", within.as_secs()),
                    )
                    .with("limit", "seconds to the first message")
                    .with("max", within.as_secs())),
                }));
                break;
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(%peer, "read failed: {e}");
                break;
            }
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(body)) => {
                    first_deadline = None;
                    if tracing::enabled!(tracing::Level::TRACE) {
                        tracing::trace!(%peer, dir = "in", msg = %redacted(&body));
                    }
                    match jsonrpc::parse(&body) {
                        Ok(Message::Request(req)) => {
                            handle_request(&*rt, conn, &out, &mut state, req)
                        }
                        Ok(Message::Notification(n)) => {
                            if !handle_notification(&*rt, conn, &out, &mut state, n) {
                                break 'read;
                            }
                        }
                        Ok(Message::Response(resp)) => handle_response(&out, resp),
                        Err(failure) => {
                            tracing::warn!(%peer, "bad message: {}", failure.error.message);
                            out.send(&Message::Response(Response {
                                id: failure.id,
                                outcome: Err(failure.error),
                            }));
                        }
                    }
                    if !out.is_open() {
                        break 'read;
                    }
                }
                Err(e) => {
                    // The stream position is lost: answer once and close.
                    tracing::warn!(%peer, "framing error, closing: {e}");
                    let error = match &e {
                        FrameError::TooLarge { max, .. } => {
                            ResponseError::new(errors::LIMIT_EXCEEDED, "limit", e.to_string())
                                .with("limit", "message bytes")
                                .with("max", *max as u64)
                        }
                        _ => ResponseError::new(errors::PARSE_ERROR, "parse", e.to_string()),
                    };
                    out.send(&Message::Response(Response {
                        id: None,
                        outcome: Err(error),
                    }));
                    break 'read;
                }
            }
        }
    }
    tracing::debug!(%peer, conn, "connection closing");
    // Requests already handed over are still applied (only `$/cancelRequest` withdraws one);
    // their replies go nowhere.
    // Server-to-client requests (decision prompts, progress tokens) end now, "disconnected",
    // and drop their hold on this connection.
    out.pending.lock().unwrap().clear();
    rt.close(conn);
    drop(out);
    // What was queued is flushed if the peer still reads; a stuck one does not keep us.
    let mut writer_task = writer_task;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut writer_task)
        .await
        .is_err()
    {
        writer_task.abort();
    }
}

/// What a connection's writer shares with its [`Outbound`]s (not the queue's sending half:
/// the writer ends when the last of those is gone).
struct WriterLinks {
    /// [`Outbound::queued`].
    queued: Arc<AtomicUsize>,
    /// [`Outbound::queued_bytes`].
    queued_bytes: Arc<AtomicUsize>,
    /// [`Outbound::overloaded`].
    overloaded: Arc<AtomicBool>,
    /// [`Outbound::closing`].
    closing: Arc<tokio::sync::Notify>,
    /// [`Outbound::peer`].
    peer: Arc<str>,
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    mut output_rx: mpsc::Receiver<Vec<u8>>,
    links: WriterLinks,
) {
    let WriterLinks {
        queued,
        queued_bytes,
        overloaded,
        closing,
        peer,
    } = links;
    // However the writer ends, the reader stops too.
    struct Closing(Arc<tokio::sync::Notify>);
    impl Drop for Closing {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let _closing = Closing(closing);
    let mut output_open = true;
    let taken = |q: Queued| {
        queued.fetch_sub(q.messages, Ordering::Relaxed);
        queued_bytes.fetch_sub(q.bytes, Ordering::Relaxed);
        q.framed
    };
    // Frames of more than one message are gathered here: kept between writes while messages
    // come, so a busy connection does not allocate (and fault in) a fresh buffer for each write.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(q) => taken(q),
                None => break,
            },
            m = output_rx.recv(), if output_open => match m {
                Some(b) => Framed::Bytes(b),
                None => { output_open = false; continue; }
            },
        };
        if overloaded.load(Ordering::Relaxed) {
            break;
        }
        // Coalesce whatever else is ready into one write: fewer syscalls under load. A lone
        // message framed already is written as it is.
        buf.clear();
        let lone = match rx.try_recv() {
            Err(_) => match first {
                Framed::Bytes(bytes) => Some(bytes),
                other => {
                    other.append_to(&mut buf, &peer);
                    None
                }
            },
            Ok(next) => {
                first.append_to(&mut buf, &peer);
                taken(next).append_to(&mut buf, &peer);
                while buf.len() < 256 * 1024 {
                    match rx.try_recv() {
                        Ok(q) => taken(q).append_to(&mut buf, &peer),
                        Err(_) => break,
                    }
                }
                None
            }
        };
        // Written with an eye on the clock: a client that takes nothing for STALL_TIMEOUT while
        // much waits for it is dropped, whether or not anything more is sent to it.
        let frames = lone.as_deref().unwrap_or(&buf);
        let written = write_watched(&mut writer, frames, &queued_bytes).await;
        if written == Written::Stalled {
            overloaded.store(true, Ordering::Relaxed);
        }
        if written != Written::Yes {
            break;
        }
        // An idle connection does not keep a burst's buffer.
        if rx.is_empty() && buf.capacity() > 64 * 1024 {
            buf = Vec::new();
        }
    }
    let _ = writer.shutdown().await;
}

/// How [`write_watched`] went.
#[derive(PartialEq, Eq)]
enum Written {
    /// All of it.
    Yes,
    /// The connection failed.
    Failed,
    /// The client read nothing for too long with too much waiting for it.
    Stalled,
}

/// Write `frame` whole, unless the client takes nothing of a piece of it (256 KiB) for
/// [`STALL_TIMEOUT`] while more than [`STALLED_BYTES`] wait for it (`queued_bytes` besides this
/// write), whether or not anything more is sent to it. A client that reads, however slowly,
/// finishes pieces and is not dropped.
async fn write_watched<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
    queued_bytes: &AtomicUsize,
) -> Written {
    for piece in frame.chunks(256 * 1024) {
        let started = tokio::time::Instant::now();
        let write = writer.write_all(piece);
        tokio::pin!(write);
        loop {
            match tokio::time::timeout(Duration::from_secs(1), &mut write).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return Written::Failed,
                Err(_) => {
                    let waiting = queued_bytes.load(Ordering::Relaxed);
                    if started.elapsed() >= STALL_TIMEOUT && waiting > STALLED_BYTES {
                        tracing::warn!(
                            "client read nothing for {}s with {waiting} bytes waiting; dropping the connection",
                            started.elapsed().as_secs()
                        );
                        return Written::Stalled;
                    }
                }
            }
        }
    }
    match writer.flush().await {
        Ok(()) => Written::Yes,
        Err(_) => Written::Failed,
    }
}

/// The body of a successful response to `id` whose result is the JSON `result`: the bytes
/// [`Message::to_bytes`] makes of it.
fn response_body(id: &Id, result: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(result.len() + 48);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    serde_json::to_writer(&mut body, id).expect("an id serializes");
    body.extend_from_slice(br#","result":"#);
    body.extend_from_slice(result);
    body.push(b'}');
    body
}

/// Append `body` framed to `out`: what [`editor_protocol::framing::encode`] makes, without a
/// buffer of its own.
fn push_frame(out: &mut Vec<u8>, body: &[u8]) {
    editor_protocol::framing::push_header(out, body.len());
    out.extend_from_slice(body);
}

fn handle_request(
    rt: &dyn Dispatch,
    conn: ConnId,
    out: &Outbound,
    state: &mut ConnState,
    req: Request,
) {
    let reply = |outcome: Result<Value, ResponseError>| {
        out.send(&Message::Response(Response {
            id: Some(req.id.clone()),
            outcome,
        }));
    };
    if req.method == "initialize" {
        if state.initialized {
            return reply(Err(ResponseError::new(
                errors::INVALID_REQUEST,
                "invalidRequest",
                "initialize was already received on this connection",
            )));
        }
        // Set before the reply arrives: pipelined requests after it are handled after it.
        state.initialized = true;
    } else if !state.initialized {
        return reply(Err(ResponseError::new(
            errors::SERVER_NOT_INITIALIZED,
            "notInitialized",
            format!(
                "server not initialized: send initialize before {}",
                excerpt(&req.method)
            ),
        )));
    } else if state.shutting_down {
        return reply(Err(ResponseError::new(
            errors::INVALID_REQUEST,
            "shuttingDown",
            format!(
                "connection is shutting down: {} refused after shutdown",
                excerpt(&req.method)
            ),
        )));
    } else if req.method == "shutdown" {
        state.shutting_down = true;
        return reply(Ok(Value::Null));
    } else if req.method.starts_with("$/") {
        return reply(Err(ResponseError::new(
            errors::METHOD_NOT_FOUND,
            "methodNotFound",
            format!("method not found: {}", excerpt(&req.method)),
        )
        .with("method", excerpt(&req.method))));
    }
    // Registered before the runtime can answer; the runtime writes the reply itself.
    let mut inflight = state.inflight.lock().unwrap();
    if inflight.contains(&req.id) {
        drop(inflight);
        return reply(Err(ResponseError::new(
            errors::INVALID_REQUEST,
            "invalidRequest",
            format!(
                "request id {} is already in flight on this connection",
                req.id
            ),
        )));
    }
    if inflight.len() >= MAX_INFLIGHT {
        drop(inflight);
        let e = ResponseError::new(
            errors::LIMIT_EXCEEDED,
            "limit",
            format!("more than {MAX_INFLIGHT} requests in flight on this connection"),
        );
        return reply(Err(e
            .with("limit", "requests in flight")
            .with("max", MAX_INFLIGHT as u64)));
    }
    inflight.insert(req.id.clone());
    drop(inflight);
    let reply = ReplyTo {
        out: out.clone(),
        id: req.id,
        inflight: state.inflight.clone(),
    };
    rt.request(conn, req.method, req.params, reply);
}

/// Returns false when the connection should close (`exit`).
fn handle_notification(
    rt: &dyn Dispatch,
    conn: ConnId,
    out: &Outbound,
    state: &mut ConnState,
    n: Notification,
) -> bool {
    match n.method.as_str() {
        "exit" => return false,
        "initialized" => {}
        "$/cancelRequest" => {
            let Some(id) = n
                .params
                .get("id")
                .and_then(|v| serde_json::from_value::<Id>(v.clone()).ok())
            else {
                return true;
            };
            if state.inflight.lock().unwrap().remove(&id) {
                out.send(&Message::Response(Response {
                    id: Some(id.clone()),
                    outcome: Err(ResponseError::new(
                        errors::REQUEST_CANCELLED,
                        "cancelled",
                        format!("request {id} was cancelled"),
                    )),
                }));
            }
        }
        m if m.starts_with("$/") => {}
        _ if !state.initialized || state.shutting_down => {}
        _ => {
            // An orch/* method sent as a notification (keystrokes, fire-and-forget): applied in
            // order like a request; an error is reported to the client's log.
            if state.notes_inflight.load(Ordering::Relaxed) >= MAX_INFLIGHT {
                out.notify("window/logMessage", json!({ "type": 1, "message": format!("{}: dropped, more than {MAX_INFLIGHT} notifications in flight", excerpt(&n.method)) }));
                return true;
            }
            let out = out.clone();
            let counter = state.notes_inflight.clone();
            counter.fetch_add(1, Ordering::Relaxed);
            let method = excerpt(&n.method);
            rt.notification(
                conn,
                n.method,
                n.params,
                Box::new(move |error| {
                    counter.fetch_sub(1, Ordering::Relaxed);
                    if let Some(e) = error {
                        out.notify(
                            "window/logMessage",
                            json!({ "type": 1, "message": format!("{method}: {}", e.message) }),
                        );
                    }
                }),
            );
        }
    }
    true
}

/// A message for the trace log, with environment values replaced: logs never carry them.
fn redacted(body: &[u8]) -> String {
    fn scrub(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k == "env" {
                        if let Value::Object(env) = v {
                            for val in env.values_mut() {
                                *val = Value::String("<redacted>".into());
                            }
                        }
                    } else {
                        scrub(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) if body.windows(5).any(|w| w == b"\"env\"") => {
            scrub(&mut v);
            v.to_string()
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

fn handle_response(out: &Outbound, resp: Response) {
    let Some(id) = resp.id else { return };
    if let Some(tx) = out.pending.lock().unwrap().remove(&id) {
        let _ = tx.send(resp.outcome);
    }
}

#[cfg(test)]
mod tests {
    /// Ids of every shape hash apart: a set holds each once and finds each, and sequential
    /// numbers spread over the table's low bits.
    #[test]
    fn request_ids_hash_apart() {
        use super::IdHash;
        use editor_protocol::jsonrpc::Id;
        use std::hash::BuildHasher;
        let mut ids: Vec<Id> = (-500..5000).map(Id::Num).collect();
        ids.extend((0..2000).map(|n| Id::Str(format!("r-{n}"))));
        ids.extend(["", "a", "ab", "ab\0", "12345678", "123456789"].map(|s| Id::Str(s.into())));
        let mut set: std::collections::HashSet<Id, IdHash> = Default::default();
        for id in &ids {
            assert!(set.insert(id.clone()), "{id} twice");
        }
        assert!(ids.iter().all(|id| set.contains(id)));
        assert!(!set.contains(&Id::Str("r-2000".into())));
        let buckets: std::collections::HashSet<u64> = (0..4096)
            .map(|n| IdHash::default().hash_one(Id::Num(n)) & 4095)
            .collect();
        assert!(buckets.len() > 2500, "{} of 4096 buckets", buckets.len());
        for id in &ids {
            assert!(set.remove(id));
        }
        assert!(set.is_empty());
    }

    #[test]
    fn frames_pushed_are_encoded_frames() {
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for body in [&b""[..], b"{}", &[b'x'; 70_000][..]] {
            super::push_frame(&mut out, body);
            expected.extend_from_slice(&editor_protocol::framing::encode(body));
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn responses_of_serialized_results_are_the_messages_bytes() {
        use editor_protocol::jsonrpc::{Id, Message, Response};
        let results = [
            serde_json::json!({}),
            serde_json::json!({ "a": [1, "two\n\"3\""], "b": null }),
            serde_json::json!("text"),
            serde_json::json!(null),
        ];
        for id in [Id::Num(7), Id::Num(-1), Id::Str("x \"y\" \u{e9}".into())] {
            for result in &results {
                let want = Message::Response(Response {
                    id: Some(id.clone()),
                    outcome: Ok(result.clone()),
                })
                .to_bytes();
                let got = super::response_body(&id, &serde_json::to_vec(result).unwrap());
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap()
                );
            }
        }
    }

    #[test]
    fn trace_log_never_shows_environment_values() {
        let body =
            br#"{"method":"orch/agent/spawn","params":{"command":["x"],"env":{"TOKEN":"s3cret"}}}"#;
        let logged = super::redacted(body);
        assert!(!logged.contains("s3cret"), "{logged}");
        assert!(logged.contains("TOKEN"), "{logged}");
    }
}
