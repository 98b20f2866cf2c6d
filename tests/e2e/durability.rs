//! Durability: acknowledged state survives SIGKILL, and `seq` continues without a gap.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use orch_tests::{Client, Daemon, Via, WAIT};
use serde_json::{json, Value};

/// Kill-and-restart cycles of [`acknowledged_changes_survive_sigkill_in_a_loop`].
const CYCLES: usize = 200;
/// Agents each cycle spawns (each is a process: keep it small).
const AGENTS_PER_CYCLE: usize = 2;
/// Session and task writers per cycle (each of the two).
const WRITERS: usize = 2;
/// Acknowledged session and task changes (each) a cycle waits for before the kill.
const ACKS_BEFORE_KILL: usize = 4;
/// Pause between a writer's changes: the kill still comes mid-stream, and the state to check
/// after each of the cycles stays small enough to read back quickly.
const PACE: Duration = Duration::from_millis(20);
/// Writer threads' name prefix: their panics (a call to a killed daemon) are expected and quiet.
const WRITER: &str = "durability-writer";

/// `asker` asks a question its waiting pattern matches, and ends once answered. Its ready pattern
/// never shows, so it is never `idle` and the queue never gives it a task: the tasks of this test
/// move only as the test moves them.
const CONFIG: &str = r#"
[daemon]
snapshot_every = 200

[agents.asker]
command = ["bash", "--norc", "--noprofile", "-c", "printf 'Proceed? [y/N] '; read -r a; echo \"answered $a\""]
waiting_patterns = ["Proceed\\? \\[y/N\\]"]
waiting_options = [["approve", "y\r"], ["deny", "n\r"]]
ready_patterns = ["this never shows"]
idle_after_ms = 50
"#;

/// The states a session moves through, in order: after a restart a session is in its
/// acknowledged state or a later one.
const SESSION_ORDER: [&str; 2] = ["active", "closed"];
/// The same for tasks. Nothing assigns these tasks (no agent is ever idle), so the only move is
/// the test's own cancel; any other state after a restart is a failure.
const TASK_ORDER: [&str; 2] = ["pending", "cancelled"];

/// Whether `found` is `acked` or a later state in `order`.
fn at_or_after(order: &[&str], acked: &str, found: &str) -> bool {
    let pos = |s: &str| order.iter().position(|o| *o == s);
    matches!((pos(acked), pos(found)), (Some(a), Some(f)) if f >= a)
}

/// What the daemon acknowledged (a successful response, nothing else), across all cycles.
#[derive(Default)]
struct Acked {
    /// Session id → (name, state acknowledged last).
    sessions: HashMap<String, (String, String)>,
    /// Task id → (title, state acknowledged last).
    tasks: HashMap<String, (String, String)>,
    /// Agent id → name.
    agents: HashMap<String, String>,
    /// Decision id → (the agent that asked, the choice acknowledged).
    decisions: HashMap<String, (String, String)>,
    /// Acknowledged session changes, task changes and resolved decisions, so far.
    counts: [usize; 3],
    /// Error responses a writer got (none is expected: the daemon only goes away).
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Acked>>;

/// A writer's connection. Each call is answered, or finds the daemon killed: then the writer
/// stops, and what it sent last may or may not have happened.
struct Writer {
    c: Client,
    acked: Shared,
}

impl Writer {
    /// Connect and initialize, unless the daemon is already gone.
    fn connect(socket: &Path, acked: &Shared) -> Option<Self> {
        let c = std::panic::catch_unwind(|| {
            let mut c = Client::socket(socket);
            c.initialize();
            c
        })
        .ok()?;
        Some(Self {
            c,
            acked: acked.clone(),
        })
    }

    /// The result of a successful call; `None` when the daemon is gone, or when it answered
    /// with an error, which is recorded for the test to fail on.
    fn call(&mut self, method: &str, params: Value) -> Option<Value> {
        let c = &mut self.c;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.call(method, params.clone())
        }))
        .ok()?;
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                let mut a = self.acked.lock().unwrap();
                a.errors.push(format!("{method} {params}: {e}"));
                None
            }
        }
    }

    /// `v[key]`, a string; its absence is recorded as an error.
    fn str(&self, v: &Value, key: &str) -> Option<String> {
        let s = v[key].as_str().map(str::to_string);
        if s.is_none() {
            self.ack(|a| a.errors.push(format!("no {key} in {v}")));
        }
        s
    }

    /// Record an acknowledgement.
    fn ack(&self, f: impl FnOnce(&mut Acked)) {
        f(&mut self.acked.lock().unwrap());
    }
}

/// Creates sessions and closes every other one.
fn session_writer(mut w: Writer, cycle: usize, n: usize) -> Option<()> {
    for i in 0.. {
        std::thread::sleep(PACE);
        let name = format!("c{cycle}-s{n}-{i}");
        let s = w.call("orch/session/create", json!({ "name": name }))?;
        let (id, state) = (w.str(&s, "id")?, w.str(&s, "state")?);
        w.ack(|a| {
            a.sessions.insert(id.clone(), (name.clone(), state));
            a.counts[0] += 1;
        });
        if i % 2 == 1 {
            let s = w.call("orch/session/close", json!({ "id": id }))?;
            let state = w.str(&s, "state")?;
            w.ack(|a| {
                a.sessions.insert(id, (name, state));
                a.counts[0] += 1;
            });
        }
    }
    Some(())
}

/// Creates tasks (no agent: they queue) and cancels every other one.
fn task_writer(mut w: Writer, cycle: usize, n: usize) -> Option<()> {
    for i in 0.. {
        std::thread::sleep(PACE);
        let title = format!("c{cycle}-k{n}-{i}");
        let t = w.call(
            "orch/task/create",
            json!({ "title": title, "prompt": "survive a SIGKILL" }),
        )?;
        let (id, state) = (w.str(&t, "id")?, w.str(&t, "state")?);
        w.ack(|a| {
            a.tasks.insert(id.clone(), (title.clone(), state));
            a.counts[1] += 1;
        });
        if i % 2 == 1 {
            let t = w.call("orch/task/cancel", json!({ "id": id }))?;
            let state = w.str(&t, "state")?;
            w.ack(|a| {
                a.tasks.insert(id, (title, state));
                a.counts[1] += 1;
            });
        }
    }
    Some(())
}

/// Spawns named agents one after the other, waits for each one's question and answers it.
fn agent_writer(mut w: Writer, cycle: usize) -> Option<()> {
    for i in 0..AGENTS_PER_CYCLE {
        let name = format!("c{cycle}-a{i}");
        let agent = w.call("orch/agent/spawn", json!({ "kind": "asker", "name": name }))?;
        let id = w.str(&agent, "id")?;
        w.ack(|a| {
            a.agents.insert(id.clone(), name.clone());
        });
        let deadline = Instant::now() + WAIT;
        let decision = loop {
            let pending = w.call(
                "orch/decision/list",
                json!({ "state": "pending", "limit": 1000 }),
            )?;
            if let Some(d) = pending["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["source"]["id"] == json!(id))
            {
                break d.clone();
            }
            if Instant::now() > deadline {
                w.ack(|a| {
                    a.errors
                        .push(format!("agent {id} ({name}) raised no decision"))
                });
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let choice = if (cycle + i).is_multiple_of(2) {
            "approve"
        } else {
            "deny"
        };
        let d = w.call(
            "orch/decision/resolve",
            json!({ "id": decision["id"], "choice": choice }),
        )?;
        let (did, state, got) = (w.str(&d, "id")?, w.str(&d, "state")?, w.str(&d, "choice")?);
        w.ack(|a| {
            if state != "resolved" || got != choice {
                a.errors
                    .push(format!("resolving {did} with {choice} answered {d}"));
            }
            a.decisions.insert(did, (id, got));
            a.counts[2] += 1;
        });
    }
    Some(())
}

/// Writer threads panic when the daemon they write to is killed; that is expected, so their
/// panics are not printed (others' are, as before).
fn quiet_writer_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(WRITER))
            {
                default(info);
            }
        }));
    });
}

/// Start a writer thread named `{WRITER}-{what}`.
fn writer_thread(
    what: String,
    socket: &Path,
    acked: &Shared,
    body: impl FnOnce(Writer) -> Option<()> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let (socket, acked) = (socket.to_path_buf(), acked.clone());
    std::thread::Builder::new()
        .name(format!("{WRITER}-{what}"))
        .spawn(move || {
            if let Some(w) = Writer::connect(&socket, &acked) {
                body(w);
            }
        })
        .unwrap()
}

/// Everything acknowledged so far is there, in its acknowledged state or a later one.
fn check_acknowledged(c: &mut Client, acked: &Acked, cycle: usize) {
    let all = |c: &mut Client, method: &str, params: Value| -> HashMap<String, Value> {
        c.list_all(method, params)
            .into_iter()
            .map(|o| (o["id"].as_str().unwrap().to_string(), o))
            .collect()
    };
    let sessions = all(c, "orch/session/list", json!({ "limit": 1000 }));
    for (id, (name, state)) in &acked.sessions {
        let s = sessions.get(id).unwrap_or_else(|| {
            panic!("cycle {cycle}: acknowledged session {id} ({name}, {state}) is missing after SIGKILL")
        });
        assert!(
            s["name"] == json!(name) && at_or_after(&SESSION_ORDER, state, s["state"].as_str().unwrap()),
            "cycle {cycle}: session {id} was acknowledged as {name} {state}, after SIGKILL it is {s}"
        );
    }
    let tasks = all(c, "orch/task/list", json!({ "limit": 1000 }));
    for (id, (title, state)) in &acked.tasks {
        let t = tasks.get(id).unwrap_or_else(|| {
            panic!(
                "cycle {cycle}: acknowledged task {id} ({title}, {state}) is missing after SIGKILL"
            )
        });
        assert!(
            t["title"] == json!(title)
                && at_or_after(&TASK_ORDER, state, t["state"].as_str().unwrap()),
            "cycle {cycle}: task {id} was acknowledged as {title} {state}, after SIGKILL it is {t}"
        );
    }
    let agents = all(c, "orch/agent/list", json!({ "limit": 1000 }));
    for (id, name) in &acked.agents {
        let a = agents.get(id).unwrap_or_else(|| {
            panic!("cycle {cycle}: acknowledged agent {id} ({name}) is missing after SIGKILL")
        });
        assert_eq!(
            a["name"],
            json!(name),
            "cycle {cycle}: agent {id} after SIGKILL: {a}"
        );
    }
    let decisions = all(c, "orch/decision/list", json!({ "limit": 1000 }));
    for (id, (agent, choice)) in &acked.decisions {
        let d = decisions.get(id).unwrap_or_else(|| {
            panic!("cycle {cycle}: decision {id} of {agent}, acknowledged as resolved with {choice}, is missing after SIGKILL")
        });
        assert!(
            d["state"] == "resolved" && d["choice"] == json!(choice) && d["source"]["id"] == json!(agent),
            "cycle {cycle}: decision {id} of {agent} was acknowledged as resolved with {choice}, after SIGKILL it is {d}"
        );
    }
}

/// 200 cycles: sessions, tasks, agents and decisions change concurrently, the daemon is
/// SIGKILLed mid-stream, restarted, and everything acknowledged in any cycle is checked; at the
/// end, the log's seqs are gap-free from 1.
#[test]
fn acknowledged_changes_survive_sigkill_in_a_loop() {
    quiet_writer_panics();
    let started = Instant::now();
    let mut d = Daemon::started(Some(CONFIG));
    let socket = d.socket();
    let acked: Shared = Arc::default();
    let mut last_seq = 0;
    for cycle in 0..CYCLES {
        let before = acked.lock().unwrap().counts;
        let mut writers = Vec::new();
        for n in 0..WRITERS {
            writers.push(writer_thread(
                format!("sessions-{n}"),
                &socket,
                &acked,
                move |w| session_writer(w, cycle, n),
            ));
            writers.push(writer_thread(
                format!("tasks-{n}"),
                &socket,
                &acked,
                move |w| task_writer(w, cycle, n),
            ));
        }
        writers.push(writer_thread("agents".into(), &socket, &acked, move |w| {
            agent_writer(w, cycle)
        }));
        // Let some of each kind of change be acknowledged, then kill without warning.
        orch_tests::wait_for("changes to be acknowledged", WAIT, || {
            let a = acked.lock().unwrap();
            assert!(a.errors.is_empty(), "cycle {cycle}: {:#?}", a.errors);
            let done = a.counts[0] >= before[0] + ACKS_BEFORE_KILL
                && a.counts[1] >= before[1] + ACKS_BEFORE_KILL
                && a.counts[2] > before[2];
            done.then_some(())
        });
        // The seq the daemon reports is acknowledged too.
        let reported = d.client(Via::Socket).ok("orch/status", json!({}))["lastSeq"]
            .as_u64()
            .unwrap();
        d.kill9();
        for w in writers {
            if let Err(p) = w.join() {
                let why = p.downcast_ref::<String>().map(String::as_str);
                panic!(
                    "cycle {cycle}: a writer failed: {}",
                    why.or(p.downcast_ref::<&str>().copied()).unwrap_or("?")
                );
            }
        }
        let a = acked.lock().unwrap();
        assert!(a.errors.is_empty(), "cycle {cycle}: {:#?}", a.errors);
        d.start();
        let mut c = d.client(Via::Socket);
        let last = c.ok("orch/status", json!({}))["lastSeq"].as_u64().unwrap();
        assert!(
            last > last_seq && last > reported,
            "cycle {cycle}: seq went backwards: {last} after the restart, {reported} reported before the kill, {last_seq} after the previous restart"
        );
        last_seq = last;
        check_acknowledged(&mut c, &a, cycle);
    }
    // The whole log is gap-free from 1.
    let mut c = d.client(Via::Socket);
    let seqs: Vec<u64> = c
        .list_all("orch/events/query", json!({ "limit": 1000 }))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "seq is gap-free across {CYCLES} SIGKILLs");
    assert!(seqs.len() as u64 >= last_seq);
    let a = acked.lock().unwrap();
    eprintln!(
        "{CYCLES} SIGKILLs in {:?}: {} sessions, {} tasks, {} agents, {} decisions acknowledged; {} events",
        started.elapsed(),
        a.sessions.len(),
        a.tasks.len(),
        a.agents.len(),
        a.decisions.len(),
        seqs.len()
    );
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

/// The daemon's stop writes a snapshot of everything before it says it stopped, whether the
/// snapshot thread runs (snapshots came due before) or not (none did): a restart replays nothing.
#[test]
fn a_stopped_daemon_restarts_from_the_snapshot_its_stop_wrote() {
    for (config, sessions) in [(None, 5), (Some("[daemon]\nsnapshot_every = 50\n"), 120)] {
        let mut d = Daemon::new(config);
        d.start();
        let mut c = d.client(Via::Socket);
        for i in 0..sessions {
            c.ok("orch/session/create", json!({ "name": format!("n{i}") }));
        }
        let before = c.ok("orch/status", json!({}))["lastSeq"].as_u64().unwrap();
        c.ok("orch/daemon/stop", json!({}));
        let status = d.child.as_mut().unwrap().wait().unwrap();
        assert!(status.success(), "{status}");
        d.start();
        let mut c = d.client(Via::Socket);
        let store = &c.ok("orch/status", json!({}))["store"];
        let snapshot = store["snapshotSeq"].as_u64().unwrap();
        assert!(
            snapshot > before,
            "{sessions} sessions: {store}, {before} before the stop"
        );
        assert_eq!(store["replayed"], 0, "{sessions} sessions: {store}");
    }
}

/// Snapshots are written on a thread of their own while the daemon goes on (a burst of
/// pipelined requests keeps coming), stay spaced by the state's size (each waits at least as
/// many events as the one before held objects: a snapshot's report queued behind the burst
/// once let them come twice as often), and the last one written is the one a restart loads.
#[test]
fn snapshots_during_a_burst_keep_their_spacing_and_the_last_one_is_loaded() {
    const WRITERS: usize = 4;
    const EACH: usize = 600;
    const WAVES: usize = 4;
    let mut d = Daemon::new(Some("[daemon]\nsnapshot_every = 100\n"));
    d.start();
    let mut clients: Vec<_> = (0..WRITERS).map(|_| d.client(Via::Socket)).collect();
    // Waves of pipelined requests: however the daemon batches a wave, each ends in a commit,
    // so snapshots come due during the run (objects double between them: 2,400, 4,800, ...).
    for wave in 0..WAVES {
        let mut ids = Vec::new();
        for (w, c) in clients.iter_mut().enumerate() {
            for i in 0..EACH {
                ids.push((
                    w,
                    c.request(
                        "orch/session/create",
                        json!({ "name": format!("b{wave}-{w}-{i}") }),
                    ),
                ));
            }
        }
        for (w, id) in ids {
            let r = clients[w].response(id);
            assert!(r.get("result").is_some(), "{r}");
        }
    }
    drop(clients);
    // A snapshot due at the burst's last commits may still be being written: the log is read
    // once the daemon is gone, so it holds every snapshot that was written and logged.
    d.kill9();
    // (seq, objects) of every snapshot the daemon wrote, in order.
    let written: Vec<(u64, u64)> = d
        .log_text()
        .lines()
        .filter(|l| l.contains("snapshot written"))
        .map(|l| {
            let field = |name: &str| -> u64 {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.trim_matches('"').parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in {l}"))
            };
            (field("seq="), field("objects="))
        })
        .collect();
    assert!(written.len() >= 2, "snapshots written: {written:?}");
    for pair in written.windows(2) {
        let ((seq, objects), (next, _)) = (pair[0], pair[1]);
        assert!(
            next - seq >= objects.max(100),
            "a snapshot at {next} came {} events after one of {objects} objects at {seq}: {written:?}",
            next - seq
        );
    }
    let last = written.last().unwrap().0;
    d.start();
    let mut c = d.client(Via::Socket);
    let store = &c.ok("orch/status", json!({}))["store"];
    // The last one logged, or one the kill caught between its write and its log line: never
    // an older one (one that landed after a newer).
    let loaded = store["snapshotSeq"].as_u64().unwrap();
    assert!(
        loaded >= last,
        "the last snapshot written ({last}) is not the one loaded: {store}"
    );
    assert_eq!(
        c.list_all("orch/session/list", json!({})).len(),
        WAVES * WRITERS * EACH + 1,
        "every session created is there"
    );
}

/// Retention drops all but the newest `[retention] events` at start-up even when the backlog is
/// several of the job's batches (it removes 2,000 per run, on the runtime task, and goes on at
/// the next tick), and a replay from before what is kept is refused, naming the oldest kept.
#[test]
fn retention_drops_a_backlog_larger_than_a_batch() {
    const KEEP: u64 = 1000;
    const EVENTS: u64 = 24_000;
    let mut d = Daemon::new(Some(&format!(
        "[daemon]\nsnapshot_every = 100\n[retention]\nevents = {KEEP}\n"
    )));
    d.start();
    let writers = crate::events::reload_writers(&d, EVENTS, 4);
    for w in writers {
        w.join().unwrap();
    }
    let mut c = d.client(Via::Socket);
    let filled = c.ok("orch/status", json!({}))["lastSeq"].as_u64().unwrap();
    assert!(filled >= EVENTS, "{filled}");
    drop(c);
    // The retention job is due at start (then hourly).
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    // The oldest event kept, from the refusal of a replay from the start (1 while nothing was
    // dropped: the replay is accepted).
    let oldest = |c: &mut Client| -> u64 {
        let Err(e) = c.call("orch/events/subscribe", json!({ "since": 0 })) else {
            return 1;
        };
        assert_eq!(e["code"], -32003, "{e}");
        let text = e.to_string();
        let n = text
            .split("the oldest event kept is ")
            .nth(1)
            .unwrap_or_else(|| panic!("no oldest event named in {text}"));
        n.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    // The store keeps events in groups (a commit's, 4 KiB of records each: a few dozen
    // `config.reloaded` events at most) and retention drops whole groups, so up to a group
    // more than asked may stay.
    const GROUP_SLACK: u64 = 64;
    let kept_from = orch_tests::wait_for("retention to drop the backlog", WAIT, || {
        let o = oldest(&mut c);
        (o + KEEP + GROUP_SLACK >= filled).then_some(o)
    });
    let last = c.ok("orch/status", json!({}))["lastSeq"].as_u64().unwrap();
    assert!(
        last + 1 - kept_from >= KEEP,
        "kept {} events (from {kept_from} to {last}), fewer than {KEEP}",
        last + 1 - kept_from
    );
    // What is kept replays whole.
    let r = c.ok("orch/events/subscribe", json!({ "since": kept_from - 1 }));
    assert!(r.get("subscriptionId").is_some(), "{r}");
    let jobs = c.ok("orch/jobs/list", json!({}));
    let retention = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "retention")
        .unwrap();
    assert_eq!(retention["lastOk"], true, "{retention}");
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
