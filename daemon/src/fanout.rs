//! Terminal output fan-out: every subscriber gets its own coalescing buffer.
//!
//! The backend reader pushes bytes with [`OutputFanout::publish`], which only appends to each
//! subscriber's buffer under a short lock and wakes it: it never waits for a client. A subscriber
//! that falls more than its limit behind loses the buffered bytes and is told to resync instead.
//! Knows nothing of the wire or of any backend.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Default bytes a subscriber may fall behind before it is told to resync.
pub const DEFAULT_SUBSCRIBER_LIMIT: usize = 1 << 20;

/// What a subscriber takes out of its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    /// Output as text (lossy only where the program wrote invalid UTF-8).
    Data(String),
    /// The subscriber fell too far behind; it should fetch the screen again.
    Resync,
    /// The terminal is gone; no more output will come.
    Closed,
}

#[derive(Default)]
struct Pending {
    /// Bytes not yet taken.
    bytes: Vec<u8>,
    /// Set when bytes were dropped because the subscriber fell behind.
    resync: bool,
    /// Set when the terminal closed.
    closed: bool,
}

/// One subscriber's coalescing buffer.
pub struct OutputSubscriber {
    /// Bytes waiting for the subscriber, and its flags.
    pending: Mutex<Pending>,
    /// Wakes the subscriber's pump when something is pending.
    notify: Notify,
    /// Most bytes kept before falling back to a resync.
    limit: usize,
}

impl OutputSubscriber {
    /// A subscriber that may fall `limit` bytes behind.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
            limit,
        })
    }

    fn push(&self, data: &[u8]) {
        let mut p = self.pending.lock().unwrap();
        if p.resync {
            // Already told to resync: the screen fetch will cover these bytes.
            return;
        }
        if p.bytes.len() + data.len() > self.limit {
            p.bytes = Vec::new();
            p.resync = true;
        } else {
            p.bytes.extend_from_slice(data);
        }
        drop(p);
        self.notify.notify_one();
    }

    fn close(&self) {
        self.pending.lock().unwrap().closed = true;
        self.notify.notify_one();
    }

    /// Take what is pending now, without waiting.
    pub fn try_take(&self) -> Option<OutputChunk> {
        let mut p = self.pending.lock().unwrap();
        if p.resync {
            p.resync = false;
            p.bytes.clear();
            return Some(OutputChunk::Resync);
        }
        if !p.bytes.is_empty() {
            // Keep an incomplete UTF-8 sequence at the end for the next chunk, so a character
            // split across two reads is not turned into replacement characters.
            let keep = incomplete_utf8_tail(&p.bytes);
            let cut = p.bytes.len() - keep;
            if cut > 0 {
                let tail = p.bytes.split_off(cut);
                let head = std::mem::replace(&mut p.bytes, tail);
                return Some(OutputChunk::Data(
                    String::from_utf8_lossy(&head).into_owned(),
                ));
            }
        }
        if p.closed {
            let rest = std::mem::take(&mut p.bytes);
            if !rest.is_empty() {
                return Some(OutputChunk::Data(
                    String::from_utf8_lossy(&rest).into_owned(),
                ));
            }
            return Some(OutputChunk::Closed);
        }
        None
    }

    /// Wait until something is pending and take it.
    pub async fn next(&self) -> OutputChunk {
        loop {
            let notified = self.notify.notified();
            if let Some(chunk) = self.try_take() {
                return chunk;
            }
            notified.await;
        }
    }
}

/// Length of an incomplete UTF-8 sequence at the end of `bytes` (0 to 3).
fn incomplete_utf8_tail(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=3.min(n) {
        let b = bytes[n - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = if b & 0b1110_0000 == 0b1100_0000 {
            2
        } else if b & 0b1111_0000 == 0b1110_0000 {
            3
        } else if b & 0b1111_1000 == 0b1111_0000 {
            4
        } else {
            return 0;
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// The set of subscribers of one terminal.
#[derive(Default)]
pub struct OutputFanout {
    /// Current subscribers; publish walks them.
    subs: Mutex<Vec<Arc<OutputSubscriber>>>,
}

impl OutputFanout {
    /// An empty fan-out.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a subscriber with the default limit.
    pub fn subscribe(&self) -> Arc<OutputSubscriber> {
        let sub = OutputSubscriber::new(DEFAULT_SUBSCRIBER_LIMIT);
        self.subs.lock().unwrap().push(sub.clone());
        sub
    }

    /// Remove a subscriber (no-op if absent).
    pub fn unsubscribe(&self, sub: &Arc<OutputSubscriber>) {
        self.subs.lock().unwrap().retain(|s| !Arc::ptr_eq(s, sub));
        sub.close();
    }

    /// Hand `data` to every subscriber. Never blocks on a subscriber.
    pub fn publish(&self, data: &[u8]) {
        for sub in self.subs.lock().unwrap().iter() {
            sub.push(data);
        }
    }

    /// Tell every subscriber the terminal is gone, and forget them.
    pub fn close(&self) {
        for sub in self.subs.lock().unwrap().drain(..) {
            sub.close();
        }
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.subs.lock().unwrap().len()
    }

    /// Whether there are no subscribers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_and_keeps_split_characters() {
        let fan = OutputFanout::new();
        let sub = fan.subscribe();
        let euro = "€".as_bytes(); // 3 bytes
        fan.publish(b"a");
        fan.publish(&euro[..1]);
        assert_eq!(sub.try_take(), Some(OutputChunk::Data("a".into())));
        assert_eq!(sub.try_take(), None);
        fan.publish(&euro[1..]);
        assert_eq!(sub.try_take(), Some(OutputChunk::Data("€".into())));
    }

    #[test]
    fn falling_behind_means_resync_not_blocking() {
        let fan = OutputFanout::new();
        let sub = fan.subscribe();
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            fan.publish(&block);
        }
        assert_eq!(sub.try_take(), Some(OutputChunk::Resync));
        fan.publish(b"after");
        assert_eq!(sub.try_take(), Some(OutputChunk::Data("after".into())));
    }

    #[test]
    fn close_flushes_then_reports_closed() {
        let fan = OutputFanout::new();
        let sub = fan.subscribe();
        fan.publish(b"bye\xe2");
        fan.close();
        assert_eq!(sub.try_take(), Some(OutputChunk::Data("bye".into())));
        assert_eq!(sub.try_take(), Some(OutputChunk::Data("\u{fffd}".into())));
        assert_eq!(sub.try_take(), Some(OutputChunk::Closed));
    }
}
