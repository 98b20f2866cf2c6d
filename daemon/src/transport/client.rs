//! A small JSON-RPC client over the local socket, for the CLI and the `orch lsp` version check,
//! and the daemon auto-start they share.

use std::collections::VecDeque;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use editor_protocol::framing::{encode, FrameDecoder};
use editor_protocol::jsonrpc::{self, Id, Message, Notification, Request, ResponseError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::paths::WorkspacePaths;

/// A connected, sequential client.
pub struct Client {
    /// The socket.
    stream: UnixStream,
    /// Incoming bytes.
    decoder: FrameDecoder,
    /// Next request id.
    next_id: i64,
    /// Notifications received while waiting for a response.
    notifications: VecDeque<Notification>,
}

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Rpc(ResponseError),
    /// The connection failed.
    #[error("connection to the daemon failed: {0}")]
    Io(String),
}

impl Client {
    /// Connect to a socket.
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = connect_own(path).await?;
        Ok(Self {
            stream,
            decoder: FrameDecoder::default(),
            next_id: 1,
            notifications: VecDeque::new(),
        })
    }

    /// Connect, starting the workspace's daemon first if none answers.
    pub async fn connect_or_start(paths: &WorkspacePaths) -> anyhow::Result<Self> {
        if let Ok(c) = Self::connect(&paths.socket).await {
            return Ok(c);
        }
        start_daemon(paths).await?;
        Self::connect(&paths.socket)
            .await
            .with_context(|| format!("cannot connect to {}", paths.socket.display()))
    }

    /// Send `initialize` and return its result.
    pub async fn initialize(&mut self, capabilities: Value) -> Result<Value, CallError> {
        let pid = std::process::id();
        self.call("initialize", json!({ "processId": pid, "capabilities": capabilities, "clientInfo": { "name": "orch-cli" } })).await
    }

    /// Send a request and wait for its response (notifications meanwhile are queued).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, CallError> {
        let id = Id::Num(self.next_id);
        self.next_id += 1;
        let msg = Message::Request(Request {
            id: id.clone(),
            method: method.into(),
            params,
        });
        if let Err(e) = self.send(&msg).await {
            // A daemon that refused the connection (too many open) said why before closing,
            // and what it said is still there to read.
            if let Ok(Message::Response(r)) = self.read_message().await {
                if let (None, Err(refusal)) = (r.id, r.outcome) {
                    return Err(CallError::Rpc(refusal));
                }
            }
            return Err(e);
        }
        loop {
            match self.read_message().await? {
                Message::Response(r) if r.id.as_ref() == Some(&id) => {
                    return r.outcome.map_err(CallError::Rpc)
                }
                Message::Response(r) if r.id.is_none() => {
                    return Err(CallError::Rpc(r.outcome.err().unwrap_or_else(|| {
                        ResponseError::new(-32603, "internal", "malformed response")
                    })))
                }
                Message::Notification(n) => self.notifications.push_back(n),
                _ => {}
            }
        }
    }

    /// Send a notification.
    pub async fn notify(&mut self, method: &str, params: Value) -> Result<(), CallError> {
        self.send(&Message::Notification(Notification {
            method: method.into(),
            params,
        }))
        .await
    }

    /// The next notification from the daemon.
    pub async fn next_notification(&mut self) -> Result<Notification, CallError> {
        if let Some(n) = self.notifications.pop_front() {
            return Ok(n);
        }
        loop {
            if let Message::Notification(n) = self.read_message().await? {
                return Ok(n);
            }
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<(), CallError> {
        self.stream
            .write_all(&encode(&msg.to_bytes()))
            .await
            .map_err(|e| CallError::Io(e.to_string()))
    }

    async fn read_message(&mut self) -> Result<Message, CallError> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(body) = self
                .decoder
                .next_frame()
                .map_err(|e| CallError::Io(e.to_string()))?
            {
                return jsonrpc::parse(&body).map_err(|f| CallError::Io(f.error.message));
            }
            let n = self
                .stream
                .read(&mut buf)
                .await
                .map_err(|e| CallError::Io(e.to_string()))?;
            if n == 0 {
                return Err(CallError::Io("the daemon closed the connection".into()));
            }
            self.decoder.push(&buf[..n]);
        }
    }
}

/// Connect to a daemon socket, refusing one served by another user: in a shared temp directory
/// someone else could have put a socket at our predictable path.
pub async fn connect_own(path: &Path) -> std::io::Result<UnixStream> {
    let stream = UnixStream::connect(path).await?;
    let theirs = stream.peer_cred()?.uid();
    if theirs != crate::paths::uid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is served by uid {theirs}, not by us ({}): refusing to talk to it",
                path.display(),
                crate::paths::uid()
            ),
        ));
    }
    Ok(stream)
}

/// Start `orch serve` for the workspace, detached in its own session so that closing the editor
/// or terminal that started it does not end it, and wait for its socket with backoff.
pub async fn start_daemon(paths: &WorkspacePaths) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the orch executable")?;
    super::socket::prepare_private_dir(&paths.state_dir)?;
    let log_path = paths.daemon_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("serve")
        .arg("--workspace")
        .arg(&paths.root)
        .current_dir(&paths.root);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and only affects the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut delay = Duration::from_millis(5);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if UnixStream::connect(&paths.socket).await.is_ok() {
            // Reap the child in the background; it is the daemon (or a loser of a start race).
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            // A concurrent start may have won the lock: its socket will appear.
            if UnixStream::connect(&paths.socket).await.is_ok() {
                return Ok(());
            }
            if !status.success()
                && std::time::Instant::now() + Duration::from_millis(200) > deadline
            {
                bail!(
                    "the daemon exited with {status}; see {}",
                    log_path.display()
                );
            }
            if !status.success() && super::socket::lock_owner(paths).is_none() {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last: Vec<&str> = tail.lines().rev().take(5).collect();
                bail!(
                    "the daemon exited with {status}: {}",
                    last.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the daemon did not open {} within 15s; see {}",
                paths.socket.display(),
                log_path.display()
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
