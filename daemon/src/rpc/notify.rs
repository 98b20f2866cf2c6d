//! What the daemon sends unasked, on the wire: a connection as a [`ClientPort`]. Event
//! notifications, log messages, decision prompts (`window/showMessageRequest`), work-done
//! progress and terminal output. The runtime decides *when* and *what* in domain terms; this
//! module alone knows the shapes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::core::event::StoredEvent;
use crate::core::task::DecisionRecord;
use crate::fanout::{OutputChunk, OutputSubscriber};
use crate::ports::{ClientPort, FollowHandle, Progress};
use crate::transport::conn::Outbound;

/// How long a client may take to answer a decision prompt.
const DECISION_PROMPT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A connection, as the runtime's client.
pub struct WireClient {
    /// Its sending half.
    out: Outbound,
    /// Progress streams by task: the steps go through each in order.
    progress: Mutex<HashMap<String, mpsc::UnboundedSender<Progress>>>,
    /// Recent events' wire form, shared with the other connections.
    events: Arc<EventCache>,
}

impl WireClient {
    /// The client on `out`, taking events' wire form from `events`.
    pub fn new(out: Outbound, events: Arc<EventCache>) -> Self {
        Self {
            out,
            progress: Mutex::new(HashMap::new()),
            events,
        }
    }
}

/// Most events [`EventCache`] keeps: more than one commit's worth (the runtime commits at most
/// a few hundred requests at a time and publishes each subscription's events in turn).
const EVENT_CACHE_EVENTS: usize = 4096;
/// Most bytes of wire form [`EventCache`] keeps.
const EVENT_CACHE_BYTES: usize = 4 << 20;

/// The wire form of the latest events, each converted and serialized about once however many
/// subscriptions it goes to (converting it for each was most of the work with many
/// subscribers), by the connection writers that need it. Keyed by seq (never reused) and
/// checked against the event's time.
#[derive(Default)]
pub struct EventCache {
    /// The events kept, by increasing seq, and their bytes in all.
    recent: Mutex<(VecDeque<CachedEvent>, usize)>,
    /// The batches [`Self::batch`] gave for the latest commit (kept until the next one's).
    latest: Mutex<LatestBatches>,
}

/// `(seq, time, JSON of the wire event)`.
type CachedEvent = (u64, String, Arc<[u8]>);

/// Events of a commit bound for subscriptions, and their wire form once one connection's writer
/// made it: shared by every subscription that gets exactly these events.
struct WireBatch {
    /// The indices in the commit's batch of the events meant (what tells batches apart).
    matching: Vec<usize>,
    /// The commit's batch, or, when the events meant are less than half of it, a copy of
    /// them alone: a slow subscriber with a narrow filter holds only its own events. Either
    /// way, when it has as many events as are meant, they are all of it.
    events: Arc<[StoredEvent]>,
    /// Their wire form, made by the first writer that needs it.
    wire: OnceLock<Vec<Arc<[u8]>>>,
}

impl WireBatch {
    /// The events' wire form, made now unless another writer made it (a writer that needs it
    /// meanwhile waits for that one, for as long as serializing these events takes).
    fn wire(&self, cache: &EventCache) -> &[Arc<[u8]>] {
        self.wire.get_or_init(|| {
            if self.events.len() == self.matching.len() {
                self.events.iter().map(|e| cache.wire(e)).collect()
            } else {
                self.matching
                    .iter()
                    .map(|&i| cache.wire(&self.events[i]))
                    .collect()
            }
        })
    }
}

/// Where [`EventCache::wire`] finds an event.
enum Lookup {
    /// Made already.
    Found(Arc<[u8]>),
    /// To be kept at this position once made.
    Keep(usize),
    /// Not to be kept.
    PassThrough,
}

/// The latest commit's batch (the key, compared by address) and the [`WireBatch`]es given for
/// it, one per set of matching events.
type LatestBatches = Option<(Arc<[StoredEvent]>, Vec<Arc<WireBatch>>)>;

impl EventCache {
    /// `batch`'s events at `matching`, to be made wire form by a writer. The runtime hands a
    /// commit's events to one subscription after another: those that get the same events
    /// (without a filter, or with the same one) get the same [`WireBatch`], made wire form
    /// once, off the runtime's loop.
    fn batch(&self, batch: &Arc<[StoredEvent]>, matching: &[usize]) -> Arc<WireBatch> {
        let mut latest = self.latest.lock().unwrap();
        if !matches!(&*latest, Some((b, _)) if Arc::ptr_eq(b, batch)) {
            *latest = Some((batch.clone(), Vec::new()));
        }
        let (_, given) = latest.as_mut().expect("set above");
        if let Some(w) = given.iter().find(|w| w.matching == matching) {
            return w.clone();
        }
        let events = if matching.len() * 2 < batch.len() {
            matching.iter().map(|&i| batch[i].clone()).collect()
        } else {
            batch.clone()
        };
        let made = Arc::new(WireBatch {
            matching: matching.to_vec(),
            events,
            wire: OnceLock::new(),
        });
        given.push(made.clone());
        made
    }

    /// `e` as the `event` of an `orch/event` notification, serialized (outside the lock:
    /// writers of other batches do not wait for it).
    fn wire(&self, e: &StoredEvent) -> Arc<[u8]> {
        let look = |recent: &VecDeque<CachedEvent>| match recent
            .binary_search_by_key(&e.seq, |(seq, _, _)| *seq)
        {
            Ok(i) if recent[i].1 == e.time => Lookup::Found(recent[i].2.clone()),
            // Kept in seq order (writers reach batches in any order); an event older than all
            // of a full cache (a replay) passes through.
            Err(i) if i > 0 || recent.len() < EVENT_CACHE_EVENTS => Lookup::Keep(i),
            _ => Lookup::PassThrough,
        };
        if let Lookup::Found(json) = look(&self.recent.lock().unwrap().0) {
            return json;
        }
        // The same bytes as serializing the notification's params as a JSON value.
        let json: Arc<[u8]> = serde_json::to_vec(
            &serde_json::to_value(super::convert::event(e)).expect("event serializes"),
        )
        .expect("event serializes")
        .into();
        let mut guard = self.recent.lock().unwrap();
        let (recent, bytes) = &mut *guard;
        match look(recent) {
            // Another writer made it meanwhile.
            Lookup::Found(made) => return made,
            Lookup::Keep(i) => {
                *bytes += json.len();
                recent.insert(i, (e.seq, e.time.clone(), json.clone()));
                while recent.len() > EVENT_CACHE_EVENTS || *bytes > EVENT_CACHE_BYTES {
                    let Some((_, _, old)) = recent.pop_front() else {
                        break;
                    };
                    *bytes -= old.len();
                }
            }
            Lookup::PassThrough => {}
        }
        json
    }
}

impl ClientPort for WireClient {
    fn peer(&self) -> String {
        self.out.peer().to_string()
    }

    fn drained(&self) -> bool {
        self.out.drained()
    }

    fn events(&self, subscription: &str, batch: &Arc<[StoredEvent]>, matching: &[usize]) {
        let batch = self.events.batch(batch, matching);
        let subscription = serde_json::to_vec(subscription).expect("a string serializes");
        // The bytes as the writer will frame them, but for the events' size, not known
        // until it makes their wire form: a typical event's is assumed.
        let bytes = matching.len()
            * editor_protocol::framing::frame_len(
                event_notification_len(&subscription, &[]) + TYPICAL_EVENT_BYTES,
            );
        let cache = self.events.clone();
        // Serialized and framed by the connection's writer: the runtime's loop only hands the
        // batch over.
        self.out.send_rendered(
            matching.len(),
            bytes,
            Box::new(move |out| {
                for e in batch.wire(&cache) {
                    push_event_notification(out, &subscription, e);
                }
            }),
        );
    }

    fn warn(&self, message: &str) {
        self.out.notify(
            "window/logMessage",
            json!({ "type": 2, "message": message }),
        );
    }

    fn ask(&self, d: &DecisionRecord, answer: Box<dyn FnOnce(String) + Send>) {
        let out = self.out.clone();
        let d = d.clone();
        tokio::spawn(async move {
            if let Some(choice) = ask_decision(&out, &d).await {
                answer(choice);
            }
        });
    }

    fn progress(&self, task: &str, step: Progress) {
        let mut streams = self.progress.lock().unwrap();
        let end = matches!(step, Progress::End { .. });
        let stream = streams
            .entry(task.to_string())
            .or_insert_with(|| progress_stream(self.out.clone(), format!("orch-task-{task}")));
        let _ = stream.send(step);
        if end {
            streams.remove(task);
        }
    }

    fn follow(&self, terminal: &str, sub: Arc<OutputSubscriber>) -> FollowHandle {
        let out = self.out.clone();
        let id = terminal.to_string();
        let pump = tokio::spawn(async move {
            loop {
                let params = match sub.next().await {
                    OutputChunk::Data(data) => json!({ "id": id, "data": data }),
                    OutputChunk::Resync => json!({ "id": id, "resync": true }),
                    OutputChunk::Closed => break,
                };
                if !out
                    .notify_output(
                        editor_protocol::methods::TERMINAL_OUTPUT_NOTIFICATION,
                        params,
                    )
                    .await
                {
                    break;
                }
            }
        });
        let abort = pump.abort_handle();
        FollowHandle::new(move || abort.abort())
    }
}

/// Append the framed `orch/event` notification for `subscription` (serialized as a JSON string)
/// around `event` (the wire event, serialized): the frame of the
/// [`Notification`](editor_protocol::jsonrpc::Notification) of `EventNotification` params, built
/// without converting the event again.
fn push_event_notification(out: &mut Vec<u8>, subscription: &[u8], event: &[u8]) {
    let len = event_notification_len(subscription, event);
    editor_protocol::framing::push_header(out, len);
    out.reserve(len);
    for piece in [EVENT_HEAD, event, EVENT_MIDDLE, subscription, EVENT_TAIL] {
        out.extend_from_slice(piece);
    }
}

// The pieces of an `orch/event` notification around its event and subscription. A JSON
// value's keys come sorted: `event`, then `subscriptionId`.
const EVENT_HEAD: &[u8] = br#"{"jsonrpc":"2.0","method":"orch/event","params":{"event":"#;
const EVENT_MIDDLE: &[u8] = br#","subscriptionId":"#;
const EVENT_TAIL: &[u8] = b"}}";

/// An event's wire form, as counted in a connection's queue before it is made.
const TYPICAL_EVENT_BYTES: usize = 256;

/// Bytes of the body [`push_event_notification`] frames.
fn event_notification_len(subscription: &[u8], event: &[u8]) -> usize {
    EVENT_HEAD.len() + event.len() + EVENT_MIDDLE.len() + subscription.len() + EVENT_TAIL.len()
}

/// Ask a client to choose one of a decision's options; `None` when it dismissed the prompt,
/// went away or did not answer in time.
async fn ask_decision(out: &Outbound, d: &DecisionRecord) -> Option<String> {
    let params = json!({
        "type": 2,
        "message": if d.detail.is_empty() { d.title.clone() } else { format!("{}\n\n{}", d.title, d.detail) },
        "actions": d.options.iter().map(|o| json!({ "title": o })).collect::<Vec<_>>(),
    });
    let answer = out
        .request("window/showMessageRequest", params, DECISION_PROMPT_TIMEOUT)
        .await
        .ok()?;
    answer
        .get("title")
        .and_then(Value::as_str)
        .map(String::from)
}

/// Start a work-done progress stream for `token` on one client: the token is created with
/// `window/workDoneProgress/create`, then the steps sent in order as `$/progress` until `End`.
fn progress_stream(out: Outbound, token: String) -> mpsc::UnboundedSender<Progress> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
    tokio::spawn(async move {
        if out
            .request(
                "window/workDoneProgress/create",
                json!({ "token": token }),
                Duration::from_secs(30),
            )
            .await
            .is_err()
        {
            return;
        }
        let mut begun = false;
        while let Some(step) = rx.recv().await {
            let (value, end) = match step {
                Progress::Report { title, message } if !begun => (
                    json!({ "kind": "begin", "title": title, "message": message }),
                    false,
                ),
                Progress::Report { message, .. } => {
                    (json!({ "kind": "report", "message": message }), false)
                }
                Progress::End { message } => (json!({ "kind": "end", "message": message }), true),
            };
            begun = true;
            out.notify("$/progress", json!({ "token": token, "value": value }));
            if end {
                break;
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use editor_protocol::jsonrpc::{Message, Notification};

    #[test]
    fn event_notifications_are_the_bytes_of_the_params_value() {
        let cache = EventCache::default();
        for e in crate::core::event::samples() {
            for sub in ["sub-1", "sub-\"quoted\"-2"] {
                let expected = Message::Notification(Notification {
                    method: editor_protocol::methods::EVENT_NOTIFICATION.into(),
                    params: serde_json::to_value(editor_protocol::methods::EventNotification {
                        subscription_id: sub.into(),
                        event: super::super::convert::event(&e),
                    })
                    .unwrap(),
                })
                .to_bytes();
                let expected = editor_protocol::framing::encode(&expected);
                // Twice: converted, then from the cache.
                for _ in 0..2 {
                    let mut got = Vec::new();
                    let sub = serde_json::to_vec(sub).unwrap();
                    push_event_notification(&mut got, &sub, &cache.wire(&e));
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        String::from_utf8(expected.clone()).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn the_cache_keeps_the_latest_events_and_checks_their_time() {
        let cache = EventCache::default();
        let samples = crate::core::event::samples();
        let mut e = samples[0].clone();
        for seq in 1..=(EVENT_CACHE_EVENTS as u64 + 10) {
            e.seq = seq;
            cache.wire(&e);
        }
        let guard = cache.recent.lock().unwrap();
        let (recent, bytes) = &*guard;
        assert_eq!(recent.len(), EVENT_CACHE_EVENTS);
        assert_eq!(recent.front().unwrap().0, 11);
        assert_eq!(
            *bytes,
            recent.iter().map(|(_, _, j)| j.len()).sum::<usize>()
        );
        drop(guard);
        // Another event under a cached seq (never so in one log) is converted, not confused.
        let mut other = samples[1].clone();
        other.seq = 20;
        other.time = "2030-01-01T00:00:00.000Z".into();
        let json: Value = serde_json::from_slice(&cache.wire(&other)).unwrap();
        assert_eq!(json["time"], "2030-01-01T00:00:00.000Z");
    }
}
