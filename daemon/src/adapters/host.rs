//! Remote hosts (`[hosts.<name>]`): another machine's tmux, reached over SSH. The terminal
//! backend is the tmux backend with `ssh ...` in front of its command, so one SSH connection per
//! host carries the control-mode client and every command and output line (multiplexed by tmux's
//! own protocol, not a process per command). Programs run in the host's tmux server and outlive
//! both the daemon and the connection.
//!
//! A watcher thread per host keeps that connection up: it connects, pings every
//! [`PING_EVERY`] (the round trip is the host's `rttMs`; a ping unanswered within
//! [`PING_TIMEOUT`] ends the connection, so a network that went silent is noticed without waiting
//! for TCP), and when the connection ends it reports the host unreachable and reconnects with
//! backoff ([`backoff`]). The runtime marks the host's agents `unreachable` and re-adopts them by
//! pane id when the host is back; what they printed meanwhile is in tmux's history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use super::tmux::{TmuxBackend, TmuxConfig};
use crate::ports::{HostObserver, HostState, HostStatus, RemoteHost, TerminalBackend};

/// How often a connected host is pinged.
const PING_EVERY: Duration = Duration::from_secs(2);

/// A ping unanswered this long ends the connection.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the watcher looks whether the connection ended between pings.
const TICK: Duration = Duration::from_millis(50);

/// The wait before reconnect attempt `n` (from 1): 500 ms doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((500u64 << attempt.saturating_sub(1).min(16)).min(30_000))
}

/// A host reached over SSH.
pub struct SshHost {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    backend: Arc<TmuxBackend>,
    status: Mutex<HostStatus>,
    watching: AtomicBool,
}

impl SshHost {
    /// The host `name` whose tmux `config` describes (`config.ssh` not empty). Nothing connects
    /// until [`RemoteHost::watch`].
    pub fn new(name: &str, config: TmuxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                backend: Arc::new(TmuxBackend::new(config)),
                status: Mutex::new(HostStatus {
                    state: HostState::Connecting,
                    tmux_version: None,
                    rtt_ms: None,
                    detail: String::new(),
                }),
                watching: AtomicBool::new(false),
            }),
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        // The watcher holds only a weak reference and ends on its next tick.
        self.inner.backend.disconnect();
    }
}

impl RemoteHost for SshHost {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn backend(&self) -> Arc<dyn TerminalBackend> {
        self.inner.backend.clone()
    }

    fn status(&self) -> HostStatus {
        self.inner.status.lock().unwrap().clone()
    }

    fn watch(&self, observer: Arc<dyn HostObserver>) {
        if self.inner.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let spawned = thread::Builder::new()
            .name(format!("host-{}", self.inner.name))
            .spawn(move || keep_connected(weak, observer));
        if let Err(e) = spawned {
            tracing::error!(host = %self.inner.name, error = %e, "cannot start the host's watcher");
        }
    }
}

impl Inner {
    fn status(&self) -> HostStatus {
        self.status.lock().unwrap().clone()
    }

    /// Record `status`; tell the observer when the state changed.
    fn set(&self, status: HostStatus, observer: &dyn HostObserver) {
        let changed = {
            let mut current = self.status.lock().unwrap();
            let changed = current.state != status.state;
            *current = status.clone();
            changed
        };
        if changed {
            match status.state {
                HostState::Unreachable => {
                    tracing::warn!(host = %self.name, detail = %status.detail, "host unreachable")
                }
                _ => tracing::info!(host = %self.name, state = status.state.as_str(), "host"),
            }
            observer.host_changed(&self.name, status);
        }
    }
}

/// The watcher: connect, ping while connected, reconnect with backoff. Ends when the host is
/// dropped.
fn keep_connected(host: Weak<Inner>, observer: Arc<dyn HostObserver>) {
    let mut attempt = 0u32;
    loop {
        let Some(inner) = host.upgrade() else { return };
        match inner.backend.connect_now() {
            Ok(version) => {
                attempt = 0;
                let rtt = inner.backend.ping(PING_TIMEOUT);
                inner.set(
                    HostStatus {
                        state: HostState::Connected,
                        tmux_version: Some(version.clone()),
                        rtt_ms: rtt.map(ms),
                        detail: String::new(),
                    },
                    &*observer,
                );
                drop(inner);
                let why = watch_connection(&host);
                let Some(inner) = host.upgrade() else { return };
                inner.set(
                    HostStatus {
                        state: HostState::Unreachable,
                        tmux_version: Some(version),
                        rtt_ms: None,
                        detail: why,
                    },
                    &*observer,
                );
            }
            Err(e) => {
                attempt += 1;
                let previous = inner.status();
                inner.set(
                    HostStatus {
                        state: HostState::Unreachable,
                        tmux_version: previous.tmux_version,
                        rtt_ms: None,
                        detail: e.to_string(),
                    },
                    &*observer,
                );
                drop(inner);
                let wait = backoff(attempt);
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "host reconnect");
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until {
                    if host.strong_count() == 0 {
                        return;
                    }
                    thread::sleep(TICK);
                }
            }
        }
    }
}

/// While the connection is up: ping it, keep the round trip. Returns why it ended.
fn watch_connection(host: &Weak<Inner>) -> String {
    let mut since_ping = Duration::ZERO;
    loop {
        thread::sleep(TICK);
        since_ping += TICK;
        let Some(inner) = host.upgrade() else {
            return "orch stopped".into();
        };
        if !inner.backend.is_connected() {
            return "the connection ended".into();
        }
        if since_ping < PING_EVERY {
            continue;
        }
        since_ping = Duration::ZERO;
        match inner.backend.ping(PING_TIMEOUT) {
            Some(rtt) => inner.status.lock().unwrap().rtt_ms = Some(ms(rtt)),
            None if !inner.backend.is_connected() => return "the connection ended".into(),
            // A ping queued behind a long answer (a big screen over a slow link) is late, not
            // lost, while tmux is still sending.
            None if inner.backend.quiet_for().is_some_and(|q| q < PING_TIMEOUT) => continue,
            None => {
                inner.backend.disconnect();
                return format!("no answer within {} s", PING_TIMEOUT.as_secs());
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }
}
