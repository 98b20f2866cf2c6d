//! What the daemon sends unasked, on the wire: a connection as a [`ClientPort`]. Event
//! notifications, log messages, decision prompts (`window/showMessageRequest`), work-done
//! progress and terminal output. The runtime decides *when* and *what* in domain terms; this
//! module alone knows the shapes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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

/// The wire form of the latest events, each converted and serialized once however many
/// subscriptions it goes to: the runtime publishes every event to every matching subscription
/// from its one loop, and converting it for each was most of that loop's time with many
/// subscribers. Keyed by seq (never reused) and checked against the event's time.
#[derive(Default)]
pub struct EventCache {
    /// The events kept, by increasing seq, and their bytes in all.
    recent: Mutex<(VecDeque<CachedEvent>, usize)>,
}

/// `(seq, time, JSON of the wire event)`.
type CachedEvent = (u64, String, Arc<[u8]>);

impl EventCache {
    /// `e` as the `event` of an `orch/event` notification, serialized.
    fn wire(&self, e: &StoredEvent) -> Arc<[u8]> {
        let mut guard = self.recent.lock().unwrap();
        let (recent, bytes) = &mut *guard;
        if let Ok(i) = recent.binary_search_by_key(&e.seq, |(seq, _, _)| *seq) {
            if recent[i].1 == e.time {
                return recent[i].2.clone();
            }
        }
        // The same bytes as serializing the notification's params as a JSON value.
        let json: Arc<[u8]> = serde_json::to_vec(
            &serde_json::to_value(super::convert::event(e)).expect("event serializes"),
        )
        .expect("event serializes")
        .into();
        // Only newer events are kept (a replay of older ones passes through).
        if recent.back().is_none_or(|(seq, _, _)| *seq < e.seq) {
            *bytes += json.len();
            recent.push_back((e.seq, e.time.clone(), json.clone()));
            while recent.len() > EVENT_CACHE_EVENTS || *bytes > EVENT_CACHE_BYTES {
                let Some((_, _, old)) = recent.pop_front() else {
                    break;
                };
                *bytes -= old.len();
            }
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

    fn event(&self, subscription: &str, e: &StoredEvent) {
        self.out
            .send_body(event_notification(subscription, &self.events.wire(e)));
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

/// The body of an `orch/event` notification for `subscription` around `event` (the wire event,
/// serialized): the same bytes as the [`Notification`](editor_protocol::jsonrpc::Notification)
/// of `EventNotification` params, built without converting the event again.
fn event_notification(subscription: &str, event: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(event.len() + subscription.len() + 96);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
    serde_json::to_writer(&mut body, editor_protocol::methods::EVENT_NOTIFICATION)
        .expect("a string serializes");
    // A JSON value's keys come sorted: `event`, then `subscriptionId`.
    body.extend_from_slice(br#","params":{"event":"#);
    body.extend_from_slice(event);
    body.extend_from_slice(br#","subscriptionId":"#);
    serde_json::to_writer(&mut body, subscription).expect("a string serializes");
    body.extend_from_slice(b"}}");
    body
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
                // Twice: converted, then from the cache.
                for _ in 0..2 {
                    let got = event_notification(sub, &cache.wire(&e));
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
