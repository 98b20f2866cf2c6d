//! What the daemon sends unasked, on the wire: event notifications, log messages, decision
//! prompts (`window/showMessageRequest`) and work-done progress. The runtime decides *when* and
//! *what* in domain terms; this module alone knows the shapes.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::core::event::StoredEvent;
use crate::core::task::DecisionRecord;
use crate::transport::conn::Outbound;

/// How long a client may take to answer a decision prompt.
const DECISION_PROMPT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `orch/event` for subscription `sub_id`.
pub fn event(out: &Outbound, sub_id: &str, e: &StoredEvent) {
    let params = editor_protocol::methods::EventNotification {
        subscription_id: sub_id.to_string(),
        event: super::convert::event(e),
    };
    out.notify(
        editor_protocol::methods::EVENT_NOTIFICATION,
        serde_json::to_value(params).expect("event serializes"),
    );
}

/// `window/logMessage` at warning level.
pub fn warning(out: &Outbound, message: &str) {
    out.notify(
        "window/logMessage",
        json!({ "type": 2, "message": message }),
    );
}

/// Ask a client to choose one of a decision's options; `None` when it dismissed the prompt,
/// went away or did not answer in time.
pub async fn ask_decision(out: &Outbound, d: &DecisionRecord) -> Option<String> {
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

/// One step of a task's progress.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Something happened (the first one becomes the `begin`, carrying `title`).
    Report {
        /// Shown with `begin`.
        title: String,
        /// What happens now.
        message: String,
    },
    /// The task is settled.
    End {
        /// How it ended.
        message: String,
    },
}

/// Start a work-done progress stream for `token` on one client: the token is created with
/// `window/workDoneProgress/create`, then the steps sent in order as `$/progress` until `End`.
pub fn progress_stream(out: Outbound, token: String) -> mpsc::UnboundedSender<Progress> {
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
