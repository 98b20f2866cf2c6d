//! What the daemon sends unasked, on the wire: a connection as a [`ClientPort`]. Event
//! notifications, log messages, decision prompts (`window/showMessageRequest`), work-done
//! progress and terminal output. The runtime decides *when* and *what* in domain terms; this
//! module alone knows the shapes.

use std::collections::HashMap;
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
}

impl WireClient {
    /// The client on `out`.
    pub fn new(out: Outbound) -> Self {
        Self {
            out,
            progress: Mutex::new(HashMap::new()),
        }
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
        let params = editor_protocol::methods::EventNotification {
            subscription_id: subscription.to_string(),
            event: super::convert::event(e),
        };
        self.out.notify(
            editor_protocol::methods::EVENT_NOTIFICATION,
            serde_json::to_value(params).expect("event serializes"),
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
