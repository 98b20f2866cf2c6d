//! The local socket: a 0700 directory, a 0600 socket file, peers of another uid refused, and the
//! lock file that makes one daemon per workspace.
//!
//! The lock is an `flock` on `<name>.lock` holding `pid version`. A second daemon fails to take it
//! and reports the first one's pid without touching its socket; only the lock holder removes a
//! stale socket file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use editor_protocol::jsonrpc::ResponseError;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::conn::Dispatch;
use crate::paths::{uid, WorkspacePaths};

/// The held per-workspace lock; released when dropped (and by the kernel if the daemon dies).
pub struct DaemonLock {
    /// The open, locked file.
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error("an orch daemon is already running for {workspace} (pid {pid}, version {version}); stop it with `orch stop`")]
    Running {
        workspace: String,
        pid: String,
        version: String,
    },
    /// I/O failed.
    #[error("{0}")]
    Io(String),
}

/// Create a private directory (mode 0700), or check that an existing one is ours and private.
/// An existing directory with wider permissions is refused, not changed: it may be someone's
/// own directory named by `ORCH_RUNTIME_DIR` or `ORCH_STATE_DIR`.
pub fn prepare_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
    let meta = std::fs::metadata(dir)?;
    if meta.uid() != uid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "directory {} belongs to uid {}, not to us ({})",
                dir.display(),
                meta.uid(),
                uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("directory {} has mode {mode:o}: others can reach it; make it private (chmod 700) or choose another", dir.display()),
        ));
    }
    Ok(())
}

/// Take the workspace lock, writing our pid and version into it.
pub fn acquire_lock(paths: &WorkspacePaths) -> Result<DaemonLock, LockError> {
    prepare_private_dir(&paths.runtime_dir).map_err(|e| LockError::Io(e.to_string()))?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(|e| LockError::Io(format!("cannot open lock {}: {e}", paths.lock.display())))?;
    // SAFETY: flock on a valid, open fd.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let mut parts = text.split_whitespace();
        return Err(LockError::Running {
            workspace: paths.root.display().to_string(),
            pid: parts.next().unwrap_or("unknown").to_string(),
            version: parts.next().unwrap_or("unknown").to_string(),
        });
    }
    file.set_len(0)
        .and_then(|_| file.rewind())
        .map_err(|e| LockError::Io(e.to_string()))?;
    writeln!(file, "{} {}", std::process::id(), crate::VERSION)
        .map_err(|e| LockError::Io(e.to_string()))?;
    file.flush().map_err(|e| LockError::Io(e.to_string()))?;
    Ok(DaemonLock { _file: file })
}

/// Read the pid and version of the daemon holding the lock, if the lock file names one.
pub fn lock_owner(paths: &WorkspacePaths) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(&paths.lock).ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.to_string()))
}

/// Bind the socket (mode 0600). Call only while holding the lock: it removes a stale socket file.
pub fn bind(paths: &WorkspacePaths) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(&paths.socket) {
        Ok(()) => tracing::info!("removed stale socket {}", paths.socket.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The directory is private (0700), so the moment before the chmod below exposes nothing; the
    // process-wide umask is left alone (other threads create files meanwhile).
    let listener = UnixListener::bind(&paths.socket);
    let listener = listener.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind {}: {e}", paths.socket.display()),
        )
    })?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Connections served at once. Each holds a task, a descriptor and its buffers (64 KiB to read
/// into, at the least), so 2,000 idle connections cost 128 MiB and descriptors agents need; a
/// connection past the limit is answered -32005 and closed. Editors, scripts and the CLI
/// together rarely hold more than a few dozen.
pub const MAX_CONNECTIONS: usize = 256;

/// Accept connections until `stop` turns true.
pub async fn accept_loop(
    listener: UnixListener,
    rt: Arc<dyn Dispatch>,
    mut stop: watch::Receiver<bool>,
) {
    let me = uid();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning and flooding the log.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot read peer credentials, refusing: {e}");
                continue;
            }
        };
        if cred.uid() != me {
            tracing::warn!(
                peer_uid = cred.uid(),
                "refused a connection from another user"
            );
            let e = ResponseError::new(
                editor_protocol::errors::UNAUTHORIZED,
                "unauthorized",
                format!("uid {} may not use this daemon", cred.uid()),
            );
            tokio::spawn(refuse(stream, e));
            continue;
        }
        let peer = format!(
            "socket pid {}",
            cred.pid().map_or("?".into(), |p| p.to_string())
        );
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "refused a connection: {MAX_CONNECTIONS} are open");
            let e = ResponseError::new(
                editor_protocol::errors::LIMIT_EXCEEDED,
                "limit",
                format!(
                    "too many connections: this daemon serves at most {MAX_CONNECTIONS} at once"
                ),
            )
            .with("limit", "connections")
            .with("max", MAX_CONNECTIONS as u64);
            // Answered on a task of its own: a peer that does not read cannot stall accepting.
            tokio::spawn(refuse(stream, e));
            continue;
        };
        let (r, w) = stream.into_split();
        let rt = rt.clone();
        tokio::spawn(async move {
            super::conn::serve(r, w, rt, peer, Some(super::conn::FIRST_MESSAGE_TIMEOUT)).await;
            drop(slot);
        });
    }
}

/// Send one error (no id) and close.
async fn refuse(mut stream: tokio::net::UnixStream, error: ResponseError) {
    use editor_protocol::jsonrpc::{Message, Response};
    use tokio::io::AsyncWriteExt;
    let msg = Message::Response(Response {
        id: None,
        outcome: Err(error),
    });
    let bytes = editor_protocol::framing::encode(&msg.to_bytes());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
