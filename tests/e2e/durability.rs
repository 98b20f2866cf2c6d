//! Durability: acknowledged state survives SIGKILL, and `seq` continues without a gap.

use std::sync::{Arc, Mutex};

use orch_tests::{Client, Daemon, Via};
use serde_json::json;

/// 50 cycles: concurrent writers, SIGKILL mid-stream, restart, check everything acknowledged.
#[test]
fn acknowledged_events_survive_sigkill_in_a_loop() {
    let mut d = Daemon::started(None);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut last_seq_seen = 0;
    for cycle in 0..50 {
        let socket = d.socket();
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let socket = socket.clone();
                let acked = acked.clone();
                std::thread::spawn(move || {
                    let mut c = Client::socket(&socket);
                    c.initialize();
                    for i in 0.. {
                        let name = format!("c{cycle}-w{w}-{i}");
                        let id = c.request("orch/session/create", json!({ "name": name }));
                        // Stop at the first failure: the daemon was killed.
                        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            c.response(id)
                        })) {
                            Ok(r) => r,
                            Err(_) => return,
                        };
                        if r.get("result").is_none() {
                            return;
                        }
                        acked.lock().unwrap().push(name);
                    }
                })
            })
            .collect();
        // Let some writes be acknowledged, then kill without warning.
        let target = acked.lock().unwrap().len() + 12;
        orch_tests::wait_for("writes to be acknowledged", orch_tests::WAIT, || {
            (acked.lock().unwrap().len() >= target).then_some(())
        });
        d.kill9();
        for w in writers {
            let _ = w.join();
        }
        d.start();
        let mut c = d.client(Via::Socket);
        let status = c.ok("orch/status", json!({}));
        let last = status["lastSeq"].as_u64().unwrap();
        assert!(
            last > last_seq_seen,
            "cycle {cycle}: seq went backwards ({last} <= {last_seq_seen})"
        );
        last_seq_seen = last;
        // Every acknowledged session is there.
        let names: std::collections::HashSet<String> = c
            .list_all("orch/session/list", json!({ "limit": 1000 }))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        for name in acked.lock().unwrap().iter() {
            assert!(
                names.contains(name),
                "cycle {cycle}: acknowledged session {name} is missing after SIGKILL"
            );
        }
    }
    // The whole log is gap-free from 1.
    let mut c = d.client(Via::Socket);
    let seqs: Vec<u64> = c
        .list_all("orch/events/query", json!({ "limit": 1000 }))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "seq is gap-free across 50 SIGKILLs");
    assert!(acked.lock().unwrap().len() >= 600);
}

/// Start-up does not replay all history: a snapshot covers it.
#[test]
fn restart_loads_from_snapshot() {
    let mut d = Daemon::new(Some("[daemon]\nsnapshot_every = 50\n"));
    d.start();
    let mut c = d.client(Via::Socket);
    for i in 0..120 {
        c.ok("orch/session/create", json!({ "name": format!("n{i}") }));
    }
    drop(c);
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    let list = c.ok("orch/session/list", json!({ "limit": 1000 }));
    assert_eq!(list["items"].as_array().unwrap().len(), 121);
    // The state came from a snapshot plus a short tail, not from replaying the whole log.
    let store = &c.ok("orch/status", json!({}))["store"];
    let (snapshot, replayed) = (
        store["snapshotSeq"].as_u64().unwrap(),
        store["replayed"].as_u64().unwrap(),
    );
    assert!(snapshot >= 100, "no recent snapshot was loaded: {store}");
    assert!(
        replayed < 60,
        "{replayed} events replayed after the snapshot: {store}"
    );
}

/// A store written by a newer orch is refused with a clear message and left untouched.
#[test]
fn newer_store_is_refused() {
    let mut d = Daemon::started(None);
    let store = {
        let mut c = d.client(Via::Socket);
        std::path::PathBuf::from(
            c.ok("orch/status", json!({}))["store"]["path"]
                .as_str()
                .unwrap(),
        )
    };
    d.kill9();
    std::fs::write(store.join("SCHEMA"), "99\n").unwrap();
    let (code, _, err) = d.run(&["serve"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("schema version 99, newer than this orch supports"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(store.join("SCHEMA")).unwrap(),
        "99\n"
    );
    std::fs::write(store.join("SCHEMA"), "1\n").unwrap();
}
