//! The event stream: replay then live, none missed, none twice, in order, across clients.

use orch_tests::{Daemon, Via, BOTH, WAIT};
use serde_json::{json, Value};
use std::time::Duration;

fn seqs_of(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[test]
fn one_subscribes_another_changes_state() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut watcher = d.client(via);
        let mut writer = d.client(Via::Socket);
        let sub = watcher.ok("orch/events/subscribe", json!({ "kinds": ["session."] }));
        let sub_id = sub["subscriptionId"].clone();
        let mut names = Vec::new();
        for i in 0..30 {
            let name = format!("{via:?}-{i}");
            writer.ok("orch/session/create", json!({ "name": name }));
            names.push(name);
        }
        let mut got = Vec::new();
        while got.len() < names.len() {
            let n = watcher.notification("orch/event", WAIT, |p| p["subscriptionId"] == sub_id);
            got.push(n["event"].clone());
        }
        let got_names: Vec<&str> = got
            .iter()
            .map(|e| e["data"]["session"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            got_names,
            names.iter().map(String::as_str).collect::<Vec<_>>()
        );
        let seqs = seqs_of(&got);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        // Nothing more arrives: each exactly once.
        let extra: Vec<Value> = watcher
            .drain(Duration::from_millis(300))
            .into_iter()
            .filter(|m| m["method"] == "orch/event")
            .collect();
        assert!(extra.is_empty(), "duplicates: {extra:?}");
    }
}

#[test]
fn replay_since_then_live_without_gaps_or_duplicates() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut writer = d.client(Via::Socket);
        for i in 0..10 {
            writer.ok(
                "orch/session/create",
                json!({ "name": format!("before-{via:?}-{i}") }),
            );
        }
        let mid = writer.ok("orch/status", json!({}))["lastSeq"]
            .as_u64()
            .unwrap()
            - 5;
        let mut watcher = d.client(via);
        // Writes race with the subscription: the stream must still be exact.
        let handle = {
            let socket = d.socket();
            let tag = format!("{via:?}");
            std::thread::spawn(move || {
                let mut w = orch_tests::Client::socket(&socket);
                w.initialize();
                for i in 0..20 {
                    w.ok(
                        "orch/session/create",
                        json!({ "name": format!("during-{tag}-{i}") }),
                    );
                }
                w.ok("orch/status", json!({}))["lastSeq"].as_u64().unwrap()
            })
        };
        let sub = watcher.ok("orch/events/subscribe", json!({ "since": mid }));
        let last = handle.join().unwrap();
        let mut seqs = Vec::new();
        while seqs.last().is_none_or(|s| *s < last) {
            let n = watcher.notification("orch/event", WAIT, |p| {
                p["subscriptionId"] == sub["subscriptionId"]
            });
            seqs.push(n["event"]["seq"].as_u64().unwrap());
        }
        let want: Vec<u64> = (mid + 1..=last).collect();
        assert_eq!(seqs, want, "every event after {mid} exactly once, in order");
        let unsub = watcher.ok(
            "orch/events/unsubscribe",
            json!({ "subscriptionId": sub["subscriptionId"] }),
        );
        assert_eq!(unsub, json!({}));
        watcher.err(
            "orch/events/unsubscribe",
            json!({ "subscriptionId": sub["subscriptionId"] }),
            -32001,
        );
    }
}

#[test]
fn query_filters_and_pages() {
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    for i in 0..12 {
        c.ok("orch/session/create", json!({ "name": format!("q{i}") }));
    }
    // Pages of 5: the cursor carries the filter across pages.
    let all = c.list_all(
        "orch/events/query",
        json!({ "kinds": ["session.created"], "limit": 5 }),
    );
    // The default session plus the twelve.
    assert_eq!(all.len(), 13, "{all:?}");
    assert!(all.iter().all(
        |e| e["kind"] == "session.created" && e["subject"].as_str().unwrap().starts_with("s-")
    ));
    let first = &all[1];
    let by_subject = c.ok(
        "orch/events/query",
        json!({ "subjects": [first["subject"]] }),
    );
    assert_eq!(by_subject["items"].as_array().unwrap().len(), 1);
    let started = c.ok("orch/events/query", json!({ "kinds": ["daemon.started"] }));
    assert_eq!(
        started["items"][0]["data"]["pid"],
        c.ok("orch/status", json!({}))["pid"]
    );
}
