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

/// Subscriptions with different filters, on two connections, while pipelining writers make
/// the daemon commit events in large batches: each gets exactly the events it asked for, in
/// order, once. (A batch goes to every subscription at once; the daemon shares the work among
/// those that get the same events, so subscriptions that differ must not be given another's.)
#[test]
fn subscriptions_with_different_filters_each_get_exactly_theirs_from_large_batches() {
    const EACH: usize = 400;
    const AGENTS: usize = 8;
    let d = Daemon::started(None);
    let mut conns = [d.client(Via::Socket), d.client(Via::Socket)];
    let first = conns[0].ok("orch/status", json!({}))["lastSeq"]
        .as_u64()
        .unwrap();
    // (connection, subscription id, kind prefix it asked for; "" is every event)
    let mut subs = Vec::new();
    for (conn, prefix) in [
        (0, ""),
        (0, "session."),
        (0, "agent."),
        (1, "terminal."),
        (1, "config."),
        (1, ""),
    ] {
        let params = if prefix.is_empty() {
            json!({})
        } else {
            json!({ "kinds": [prefix] })
        };
        let sub = conns[conn].ok("orch/events/subscribe", params);
        subs.push((conn, sub["subscriptionId"].clone(), prefix));
    }
    // An agent's spawn commits events of two kinds at once (`agent.`, `terminal.`): batches
    // whose events go to different subscriptions, however fast the daemon takes requests in.
    let writers: Vec<_> = [
        ("orch/session/create", EACH),
        ("orch/config/reload", EACH),
        ("orch/agent/spawn", AGENTS),
    ]
    .into_iter()
    .map(|(method, count)| {
        let socket = d.socket();
        std::thread::spawn(move || {
            let mut c = orch_tests::Client::socket(&socket);
            c.initialize();
            let ids: Vec<i64> = (0..count)
                .map(|i| {
                    let params = match method {
                        "orch/session/create" => json!({ "name": format!("batch-{i}") }),
                        "orch/agent/spawn" => json!({ "command": ["sleep", "60"] }),
                        _ => json!({}),
                    };
                    c.request(method, params)
                })
                .collect();
            for id in ids {
                let r = c.response(id);
                assert!(r.get("error").is_none(), "{method}: {r}");
            }
        })
    })
    .collect();
    for w in writers {
        w.join().unwrap();
    }
    let last = conns[0].ok("orch/status", json!({}))["lastSeq"]
        .as_u64()
        .unwrap();
    assert!(last - first >= 2 * EACH as u64, "{first}..{last}");
    // Each connection's unfiltered subscription reaches the last event (every earlier message
    // is kept meanwhile); then whatever else was sent is in too.
    let mut got: Vec<Vec<Value>> = vec![Vec::new(); subs.len()];
    for (conn, c) in conns.iter_mut().enumerate() {
        let every = subs
            .iter()
            .position(|(n, _, prefix)| *n == conn && prefix.is_empty())
            .unwrap();
        let reached = c.notification("orch/event", WAIT, |p| {
            p["subscriptionId"] == subs[every].1 && p["event"]["seq"] == json!(last)
        });
        for m in c.drain(Duration::from_millis(300)) {
            // Agents that go idle later make events after `last`: not this test's.
            if m["method"] != "orch/event" || m["params"]["event"]["seq"].as_u64() > Some(last) {
                continue;
            }
            let i = subs
                .iter()
                .position(|(n, id, _)| *n == conn && *id == m["params"]["subscriptionId"])
                .unwrap_or_else(|| panic!("an event of no subscription of this connection: {m}"));
            got[i].push(m["params"]["event"].clone());
        }
        // The unfiltered subscription's last: nothing of it came after.
        got[every].push(reached["event"].clone());
    }
    let all = &got[0];
    let all_seqs = seqs_of(all);
    assert_eq!(
        all_seqs,
        (first + 1..=last).collect::<Vec<_>>(),
        "every event once, in order"
    );
    for (i, (_, id, prefix)) in subs.iter().enumerate() {
        let want: Vec<u64> = all
            .iter()
            .filter(|e| e["kind"].as_str().unwrap().starts_with(prefix))
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs_of(&got[i]), want, "subscription {id} ({prefix:?})");
    }
    // Every kind the test counts on came (an agent's spawn is more than one event).
    let kinds = |prefix: &str| {
        all.iter()
            .filter(|e| e["kind"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    assert_eq!((kinds("session."), kinds("config.")), (EACH, EACH));
    assert!(
        kinds("agent.") >= AGENTS && kinds("terminal.") >= AGENTS,
        "{all:?}"
    );
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

/// The daemon's resident memory in KiB, from `/proc/<pid>/status`.
fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Everything a stuck client was sent before the daemon closed it; `None` if it is still open
/// after `timeout`.
fn read_until_closed(
    mut r: impl std::io::Read + Send + 'static,
    timeout: Duration,
) -> Option<Vec<Value>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut dec = editor_protocol::framing::FrameDecoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = Vec::new();
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => dec.push(&buf[..n]),
            }
            while let Ok(Some(body)) = dec.next_frame() {
                got.push(serde_json::from_slice::<Value>(&body).unwrap());
            }
        }
        let _ = tx.send(got);
    });
    rx.recv_timeout(timeout).ok()
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_others_see_every_event() {
    // 100,000 events while one client on the socket and one through `orch lsp` subscribe to
    // everything and never read: both are dropped, the daemon's memory stays bounded, and the
    // clients that do read see every event, in order. Takes about 45 s.
    use std::io::Write;
    const EVENTS: u64 = 100_000;
    const WRITERS: u64 = 4;
    let d = Daemon::started(None);
    let pid = d.pid();
    let init =
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}});
    let subscribe =
        json!({"jsonrpc": "2.0", "id": 2, "method": "orch/events/subscribe", "params": {}});
    let hello: Vec<u8> = [init, subscribe]
        .iter()
        .flat_map(|m| editor_protocol::framing::encode(&serde_json::to_vec(m).unwrap()))
        .collect();
    let mut stuck_socket = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    stuck_socket.write_all(&hello).unwrap();
    let mut stuck_lsp = d
        .orch()
        .arg("lsp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    stuck_lsp.stdin.as_mut().unwrap().write_all(&hello).unwrap();
    let mut readers: Vec<(Via, orch_tests::Client, Value)> = BOTH
        .iter()
        .map(|via| {
            let mut c = d.client(*via);
            let sub = c.ok("orch/events/subscribe", json!({ "kinds": ["config."] }));
            (*via, c, sub["subscriptionId"].clone())
        })
        .collect();
    let first = readers[0].1.ok("orch/status", json!({}))["lastSeq"]
        .as_u64()
        .unwrap();
    let baseline = vm_rss_kib(pid);

    let started = std::time::Instant::now();
    let (elapsed, max_rss) = events_read_while_sampling(&d, &mut readers, first, EVENTS, WRITERS);
    eprintln!("every event read after {elapsed:?}");

    // Dropped: what the stuck clients were sent ends, well short of every event.
    let lsp_out = stuck_lsp.stdout.take().unwrap();
    for (what, got) in [
        ("socket", read_until_closed(stuck_socket, WAIT)),
        ("orch lsp", read_until_closed(lsp_out, WAIT)),
    ] {
        let Some(got) = got else {
            let _ = stuck_lsp.kill();
            panic!("the stuck client ({what}) is still connected");
        };
        let events = got.iter().filter(|m| m["method"] == "orch/event").count();
        assert!(
            events < EVENTS as usize / 2,
            "the stuck client ({what}) was sent {events} events before it was dropped"
        );
    }
    let _ = stuck_lsp.wait();
    let grew_mib = max_rss.saturating_sub(baseline) / 1024;
    eprintln!(
        "{EVENTS} events in {:?}; daemon VmRSS {} MiB at the start, {} MiB at most",
        started.elapsed(),
        baseline / 1024,
        max_rss / 1024
    );
    // Alone this run grows the daemon by about 50 MiB (sled's cache, the event cache, the
    // readers' backlogs); under the whole suite on two cores the readers fall further behind and
    // their queues (which they do drain) held up to 69 MiB. Two stuck clients that were never
    // dropped would hold every event they were sent besides, 30-50 MB each for 100,000 events.
    assert!(grew_mib < 96, "the daemon grew by {grew_mib} MiB");

    for (_, c, _) in &mut readers {
        c.ok("orch/status", json!({}));
    }
}

/// `count` `config.` events made by `writers` pipelining clients, each read by every reader, in
/// order, after `from`; how long it took and the daemon's highest VmRSS meanwhile, in KiB.
fn events_read_while_sampling(
    d: &Daemon,
    readers: &mut [(Via, orch_tests::Client, Value)],
    from: u64,
    count: u64,
    writers: u64,
) -> (Duration, u64) {
    let pid = d.pid();
    let started = std::time::Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(vm_rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        })
    };
    let writers = reload_writers(d, count, writers);
    // The readers drain their sockets all along (a thread each); their events are checked here.
    for (via, c, sub) in readers.iter_mut() {
        let mut seqs = Vec::with_capacity(count as usize);
        while seqs.len() < count as usize {
            let n = c.notification("orch/event", WAIT, |p| p["subscriptionId"] == *sub);
            seqs.push(n["event"]["seq"].as_u64().unwrap());
        }
        eprintln!("{via:?} reader: every event after {:?}", started.elapsed());
        let want: Vec<u64> = (from + 1..=from + count).collect();
        assert!(seqs == want, "{via:?}: every event once, in order");
    }
    for w in writers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (elapsed, sampler.join().unwrap())
}

/// `writers` clients that make `count` `config.reloaded` events between them (`count` a
/// multiple of 500 per writer), each pipelining its reloads 500 at a time: many events in
/// flight, a bounded backlog of replies. Join them to wait for every reply.
pub(crate) fn reload_writers(
    d: &Daemon,
    count: u64,
    writers: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..writers)
        .map(|_| {
            let socket = d.socket();
            std::thread::spawn(move || {
                let mut w = orch_tests::Client::socket(&socket);
                w.initialize();
                for _ in 0..count / writers / 500 {
                    let ids: Vec<i64> = (0..500)
                        .map(|_| w.request("orch/config/reload", json!({})))
                        .collect();
                    for id in ids {
                        let r = w.response(id);
                        assert!(r.get("result").is_some(), "{r}");
                    }
                }
            })
        })
        .collect()
}
