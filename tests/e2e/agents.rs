//! Agents in built-in terminals (the pty backend): real programs in real ptys.

use std::time::{Duration, Instant};

use orch_tests::{
    agent_states, wait_agent, wait_for, wait_screen, Client, Daemon, Via, BOTH, WAIT,
};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[agents.shell]
command = ["bash", "--norc", "--noprofile", "-i"]
idle_after_ms = 400

[agents.asker]
command = ["bash", "--norc", "--noprofile", "-c", "printf 'Proceed? [y/N] '; read a; echo \"got=$a\"; [ \"$a\" = y ]"]
waiting_patterns = ["Proceed\\?"]
idle_after_ms = 400

[agents.crasher]
command = ["bash", "-c", "exit 1"]
restart = "on-failure"
max_restarts = 3
"#;

/// Events about `subject` from a subscription, until `done` says the sequence is complete.
fn collect_events(
    c: &mut Client,
    sub: &Value,
    subject: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    while !done(&got) {
        let n = c.notification("orch/event", WAIT, |p| {
            p["subscriptionId"] == sub["subscriptionId"] && p["event"]["subject"] == json!(subject)
        });
        got.push(n["event"].clone());
    }
    got
}

fn states(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "agent.state")
        .map(|e| e["data"]["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bash_answers_and_goes_busy_then_idle() {
    let d = Daemon::started(Some(CONFIG));
    for via in BOTH {
        let mut c = d.client(via);
        let a = c.ok("orch/agent/spawn", json!({ "kind": "shell" }));
        assert_eq!(a["backend"], "pty");
        assert!(a["name"].as_str().unwrap().starts_with("shell-"), "{a}");
        let id = a["id"].as_str().unwrap().to_string();
        wait_agent(&mut c, &id, "the shell to settle", |a| a["state"] == "idle");
        let sub = c.ok(
            "orch/events/subscribe",
            json!({ "kinds": ["agent.state"], "subjects": [id] }),
        );
        c.ok(
            "orch/agent/send",
            json!({ "id": a["name"], "text": "echo $((6*7))" }),
        );
        let screen = wait_screen(&mut c, &id, "42");
        assert!(screen.lines().any(|l| l.trim() == "42"), "{screen}");
        let events = collect_events(&mut c, &sub, &id, |ev| {
            states(ev).last().is_some_and(|s| s == "idle")
        });
        assert_eq!(states(&events), ["busy", "idle"], "{events:?}");
        assert_eq!(events[0]["data"]["evidence"], "screen: output");
        assert_eq!(events[0]["data"]["previous"], "idle");
        assert_eq!(events[1]["data"]["evidence"], "quiet 400ms");
        // By name too, and the terminal shows in the list.
        let got = c.ok("orch/agent/get", json!({ "id": a["name"] }));
        assert_eq!(got["id"], json!(id));
        let terms = c.ok("orch/terminal/list", json!({}));
        assert!(terms["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == a["terminalId"] && t["alive"] == true));
        c.ok("orch/agent/stop", json!({ "id": id, "force": true }));
    }
}

#[test]
fn waiting_pattern_raises_a_decision_and_send_answers_it() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    let id = a["id"].as_str().unwrap();
    let w = wait_agent(&mut c, id, "waiting", |a| a["state"] == "waiting");
    assert_eq!(w["state"], "waiting");
    let ev = c.ok(
        "orch/events/query",
        json!({ "kinds": ["agent.state"], "subjects": [id] }),
    );
    let waiting = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["state"] == "waiting")
        .unwrap()
        .clone();
    assert_eq!(waiting["data"]["evidence"], "screen: pattern Proceed\\?");
    let decisions = c.ok("orch/decision/list", json!({ "state": "pending" }));
    let dec = decisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source"]["id"] == json!(id))
        .expect("a decision for the waiting agent")
        .clone();
    assert_eq!(dec["options"], json!(["approve", "deny"]));
    assert!(
        dec["detail"].as_str().unwrap().contains("Proceed?"),
        "{dec}"
    );
    c.ok("orch/agent/send", json!({ "id": id, "text": "y" }));
    let done = wait_agent(&mut c, id, "exit", |a| {
        !["waiting", "busy", "idle", "running"].contains(&a["state"].as_str().unwrap())
    });
    assert_eq!(done["state"], "exited", "{done}");
    assert_eq!(done["exitCode"], 0);
    // The question was answered in the terminal: the decision does not linger.
    let d2 = c.ok("orch/decision/list", json!({ "state": "pending" }));
    assert!(
        d2["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["source"]["id"] != json!(id)),
        "{d2}"
    );
}

#[test]
fn resolving_the_decision_types_the_answer() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    let id = a["id"].as_str().unwrap();
    wait_agent(&mut c, id, "waiting", |a| a["state"] == "waiting");
    let dec = orch_tests::pending_decision_for(&mut c, id);
    let e = c.err(
        "orch/decision/resolve",
        json!({ "id": dec["id"], "choice": "maybe" }),
        -32602,
    );
    assert!(
        e["message"].as_str().unwrap().contains("approve, deny"),
        "{e}"
    );
    let r = c.ok(
        "orch/decision/resolve",
        json!({ "id": dec["id"], "choice": "approve" }),
    );
    assert_eq!(r["state"], "resolved");
    let done = wait_agent(&mut c, id, "exit", |a| {
        a["state"] == "exited" || a["state"] == "failed"
    });
    assert_eq!(done["exitCode"], 0, "approve typed y: {done}");
    wait_screen(&mut c, id, "got=y");
    c.err(
        "orch/decision/resolve",
        json!({ "id": dec["id"], "choice": "deny" }),
        -32003,
    );
}

#[test]
fn cursor_position_queries_are_answered() {
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let a = orch_tests::spawn(
        &mut c,
        &[
            "bash",
            "-c",
            r#"printf '\033[6n'; IFS= read -rs -d R reply; printf '\ncpr=%s\n' "${reply:1}"; sleep 5"#,
        ],
    );
    let screen = wait_screen(&mut c, a["id"].as_str().unwrap(), "cpr=[");
    assert!(
        screen.contains("cpr=[1;1"),
        "the reply is the cursor position: {screen}"
    );
}

/// A program printing 20 MB finishes promptly although one client subscribed and never reads;
/// a client that reads gets either all the output or a resync.
#[test]
fn flood_with_a_stuck_subscriber() {
    use std::io::Write;
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "command": ["bash", "-c", "sleep 0.5; head -c 20000000 /dev/zero | tr '\\0' x; echo; echo flood-done; sleep 30"] }));
    let tid = a["terminalId"].clone();
    // The stuck client: subscribes, then never reads a byte.
    let mut stuck = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    for (i, (m, p)) in [
        ("initialize", json!({ "capabilities": {} })),
        ("orch/terminal/subscribe", json!({ "id": tid })),
    ]
    .into_iter()
    .enumerate()
    {
        let body =
            serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": i, "method": m, "params": p }))
                .unwrap();
        stuck
            .write_all(&editor_protocol::framing::encode(&body))
            .unwrap();
    }
    // The reading client.
    let mut reader = d.client(Via::Socket);
    reader.ok("orch/terminal/subscribe", json!({ "id": tid }));
    let started = Instant::now();
    let mut xs = 0usize;
    let mut resynced = false;
    loop {
        let n = reader.notification("orch/terminal/output", Duration::from_secs(60), |p| {
            p["id"] == tid
        });
        if n["resync"] == true {
            resynced = true;
            break;
        }
        let data = n["data"].as_str().unwrap();
        xs += data.bytes().filter(|b| *b == b'x').count();
        if data.contains("flood-done") {
            break;
        }
    }
    assert!(
        resynced || xs == 20_000_000,
        "a reader gets all output or a resync: {xs} bytes, no resync"
    );
    wait_screen(&mut c, a["id"].as_str().unwrap(), "flood-done");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "the program was held up for {took:?}"
    );
    drop(stuck);
    c.ok("orch/agent/stop", json!({ "id": a["id"], "force": true }));
}

fn group_members(pgid: i64) -> Vec<i64> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Fields after the ")" of the command: state ppid pgrp ...
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        if rest.len() > 2 && rest[2].parse::<i64>() == Ok(pgid) && rest[0] != "Z" {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn stop_kills_the_whole_process_tree() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let a = orch_tests::spawn(
            &mut c,
            &["bash", "-c", "sleep 1000 & sleep 1000 & echo started; wait"],
        );
        let id = a["id"].as_str().unwrap();
        let pid = a["pid"].as_i64().unwrap();
        wait_screen(&mut c, id, "started");
        let members = wait_for("three processes in the group", WAIT, || {
            let m = group_members(pid);
            (m.len() >= 3).then_some(m)
        });
        let stopped = c.ok("orch/agent/stop", json!({ "id": id }));
        assert_eq!(stopped["state"], "stopped", "{stopped}");
        wait_for("every process of the tree to be gone", WAIT, || {
            group_members(pid).is_empty().then_some(())
        });
        for m in members {
            // SAFETY: signal 0 only probes.
            let alive = unsafe { libc::kill(m as i32, 0) } == 0
                && std::fs::read_to_string(format!("/proc/{m}/stat"))
                    .is_ok_and(|s| !s.contains(") Z"));
            assert!(!alive, "process {m} survived the stop");
        }
        let e = c.err("orch/agent/stop", json!({ "id": id }), -32003);
        assert_eq!(e["data"]["state"], "stopped");
    }
}

#[test]
fn restart_policy_backs_off_then_gives_up() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let sub = c.ok("orch/events/subscribe", json!({ "kinds": ["agent."] }));
    let a = c.ok("orch/agent/spawn", json!({ "kind": "crasher" }));
    let id = a["id"].as_str().unwrap();
    let events = collect_events(&mut c, &sub, id, |ev| {
        ev.iter().any(|e| e["kind"] == "agent.gaveUp")
    });
    let delays: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "agent.restarting")
        .map(|e| e["data"]["delayMs"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, [500, 1000, 2000], "{events:?}");
    let restarts = events
        .iter()
        .filter(|e| e["kind"] == "agent.restarted")
        .count();
    assert_eq!(restarts, 3);
    let fails = events
        .iter()
        .filter(|e| {
            e["kind"] == "agent.state"
                && e["data"]["state"] == "failed"
                && e["data"]["evidence"] == "exit 1"
        })
        .count();
    assert_eq!(fails, 4, "the first run and three restarts each failed");
    let final_ = c.ok("orch/agent/get", json!({ "id": id }));
    assert_eq!(final_["state"], "failed");
    assert_eq!(final_["restarts"], 3);
}

#[test]
fn pty_agents_are_lost_after_a_daemon_kill_and_their_log_survives() {
    let mut d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let a = orch_tests::spawn(
        &mut c,
        &["bash", "-c", "echo marker-$((40+2))-out; sleep 1000"],
    );
    let id = a["id"].as_str().unwrap().to_string();
    wait_screen(&mut c, &id, "marker-42-out");
    drop(c);
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    let lost = c.ok("orch/agent/get", json!({ "id": id }));
    assert_eq!(lost["state"], "lost", "{lost}");
    let last = agent_states(&mut c, &id).pop().unwrap();
    assert!(
        last["data"]["evidence"]
            .as_str()
            .unwrap()
            .contains("daemon restarted"),
        "{last}"
    );
    let tid = a["terminalId"].as_str().unwrap();
    let log =
        find_file(d.state_dir.path(), &format!("{tid}.log")).expect("the terminal's output log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("marker-42-out"), "{text:?}");
    let e = c.err("orch/agent/screen", json!({ "id": id }), -32003);
    assert!(e["message"].as_str().unwrap().contains("log"), "{e}");
}

#[test]
fn a_pty_agent_that_ignores_the_hangup_is_ended_by_the_next_daemon() {
    // Like Gemini CLI: it survives the SIGHUP its terminal's end sends when the daemon dies, and
    // so does the child it started (in its process group, which outlives the leader).
    let mut d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let a = orch_tests::spawn(
        &mut c,
        &[
            "sh",
            "-c",
            "trap '' HUP; sh -c 'trap \"\" HUP; echo child=$$; exec sleep 1000' & echo ready; wait",
        ],
    );
    let id = a["id"].as_str().unwrap().to_string();
    let leader = a["pid"].as_i64().unwrap() as i32;
    let screen = wait_screen(&mut c, &id, "ready");
    let screen = if screen.contains("child=") {
        screen
    } else {
        wait_screen(&mut c, &id, "child=")
    };
    let child: i32 = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("child="))
        .and_then(|n| n.parse().ok())
        .expect("the child's pid on the screen");
    drop(c);
    d.kill9();
    // SAFETY: signal 0 only checks that the processes exist.
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) } == 0 && !orch_tests::is_zombie(pid);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        alive(leader) && alive(child),
        "the agent should have survived the hangup (leader {leader}: {}, child {child}: {})",
        alive(leader),
        alive(child)
    );
    d.start();
    let mut c = d.client(Via::Socket);
    wait_for("the orphaned agent ended", WAIT, || {
        (!alive(leader) && !alive(child)).then_some(())
    });
    let last = agent_states(&mut c, &id).pop().unwrap();
    assert_eq!(last["data"]["state"], "lost", "{last}");
    assert!(
        last["data"]["evidence"]
            .as_str()
            .unwrap()
            .contains("orch ended the processes it left running"),
        "{last}"
    );
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if e.file_name() == name {
            return Some(p);
        }
    }
    None
}

#[test]
fn terminals_write_resize_screen_close() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let t = c.ok(
            "orch/terminal/open",
            json!({ "command": ["bash", "--norc", "--noprofile"], "cols": 60, "rows": 10 }),
        );
        let id = t["id"].clone();
        assert_eq!(
            (t["cols"].as_u64(), t["rows"].as_u64()),
            (Some(60), Some(10))
        );
        c.ok("orch/terminal/subscribe", json!({ "id": id }));
        c.ok(
            "orch/terminal/write",
            json!({ "id": id, "data": "echo hel''lo-term\r" }),
        );
        let mut seen = String::new();
        while !seen.contains("hello-term") {
            let n = c.notification("orch/terminal/output", WAIT, |p| p["id"] == id);
            seen.push_str(n["data"].as_str().unwrap_or(""));
        }
        c.ok(
            "orch/terminal/resize",
            json!({ "id": id, "cols": 100, "rows": 20 }),
        );
        let s = c.ok("orch/terminal/screen", json!({ "id": id }));
        assert_eq!(
            (s["cols"].as_u64(), s["rows"].as_u64()),
            (Some(100), Some(20))
        );
        assert!(s["ansi"].as_str().unwrap().contains("hello-term"));
        assert!(s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("hello-term")));
        c.ok("orch/terminal/unsubscribe", json!({ "id": id }));
        c.ok("orch/terminal/close", json!({ "id": id }));
        c.err(
            "orch/terminal/write",
            json!({ "id": id, "data": "x" }),
            -32003,
        );
        let list = c.ok("orch/terminal/list", json!({}));
        assert!(list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != id));
    }
}

#[test]
fn restart_gives_a_new_process() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "kind": "shell", "name": "worker" }),
    );
    wait_agent(&mut c, "worker", "idle", |a| a["state"] == "idle");
    let r = c.ok("orch/agent/restart", json!({ "id": "worker" }));
    assert_ne!(r["pid"], a["pid"]);
    assert_ne!(r["terminalId"], a["terminalId"]);
    assert_eq!(r["restarts"], 1);
    c.ok(
        "orch/agent/send",
        json!({ "id": "worker", "text": "echo again-$((1+1))" }),
    );
    wait_screen(&mut c, "worker", "again-2");
    let e = c.err(
        "orch/agent/spawn",
        json!({ "kind": "shell", "name": "worker" }),
        -32602,
    );
    assert_eq!(e["data"]["field"], "name");
}

fn open_fds(pid: i64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Ended programs are released (no zombies, threads or descriptors pile up), their last screen
/// stays readable, and subscriptions to them do not count against the per-connection limit.
#[test]
fn ended_terminals_are_released_and_keep_their_last_screen() {
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let pid = d.pid() as i64;
    let warm = orch_tests::spawn(&mut c, &["bash", "-c", "echo warm"]);
    wait_agent(&mut c, warm["id"].as_str().unwrap(), "exit", |a| {
        a["state"] == "exited"
    });
    let before = open_fds(pid);
    let mut last = Value::Null;
    for i in 0..64 {
        let a = orch_tests::spawn(&mut c, &["bash", "-c", &format!("echo run-{i}; sleep 1")]);
        c.ok("orch/terminal/subscribe", json!({ "id": a["terminalId"] }));
        last = a;
    }
    let id = last["id"].as_str().unwrap().to_string();
    wait_for("all 64 to exit", WAIT, || {
        let l = c.ok(
            "orch/agent/list",
            json!({ "state": "exited", "limit": 1000 }),
        );
        (l["items"].as_array().unwrap().len() >= 65).then_some(())
    });
    let after = wait_for("descriptors to be released", WAIT, || {
        let n = open_fds(pid);
        (n <= before + 8).then_some(n)
    });
    assert!(after <= before + 8, "fds grew from {before} to {after}");
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                let rest: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
                rest.len() > 1 && rest[0] == "Z" && rest[1] == pid.to_string()
            })
        })
        .count();
    assert_eq!(zombies, 0, "the daemon reaped its ended children");
    let s = c.ok("orch/agent/screen", json!({ "id": id }));
    assert!(
        s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("run-63")),
        "{s}"
    );
    // 64 subscriptions of ended terminals do not block a new one (the limit is 64).
    let live = orch_tests::spawn(&mut c, &["sleep", "30"]);
    c.ok(
        "orch/terminal/subscribe",
        json!({ "id": live["terminalId"] }),
    );
}

#[test]
fn restarting_a_waiting_agent_dismisses_its_question() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    let id = a["id"].as_str().unwrap();
    wait_agent(&mut c, id, "waiting", |a| a["state"] == "waiting");
    let pending = |c: &mut Client| -> usize {
        let l = c.ok("orch/decision/list", json!({ "state": "pending" }));
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["source"]["id"] == json!(id))
            .count()
    };
    wait_for("the decision", WAIT, || {
        (pending(&mut c) == 1).then_some(())
    });
    c.ok("orch/agent/restart", json!({ "id": id }));
    wait_agent(&mut c, id, "waiting again", |a| a["state"] == "waiting");
    // The old question was dismissed; only the new one is pending.
    wait_for("exactly one pending decision", WAIT, || {
        (pending(&mut c) == 1).then_some(())
    });
    let resolved = c.ok("orch/decision/list", json!({ "state": "resolved" }));
    let old = resolved["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source"]["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(old["choice"], "dismissed");
    assert_eq!(old["reason"], "the agent was restarted");
}

/// An agent gets the environment of the terminal it really runs in: not the tmux, terminal or
/// editor the daemon was started from (Claude Code told `TMUX` believes it runs in tmux).
#[test]
fn agents_get_the_environment_of_their_own_terminal() {
    let mut d = Daemon::new(None);
    d.env = vec![
        ("TMUX".into(), "/tmp/tmux-0/default,1234,0".into()),
        ("TMUX_PANE".into(), "%3".into()),
        ("TERM_PROGRAM".into(), "vscode".into()),
        ("VSCODE_IPC_HOOK_CLI".into(), "/tmp/vscode-ipc.sock".into()),
        ("TERM".into(), "screen".into()),
        ("ORCH_TEST_KEPT".into(), "kept".into()),
    ];
    d.start();
    let mut c = d.client(Via::Socket);
    let a = c.ok(
        "orch/agent/spawn",
        json!({
            "command": ["bash", "--norc", "--noprofile", "-c", "env | grep -E '^(TERM|COLORTERM|TMUX|VSCODE|ORCH)' | sort; echo END; exec sleep 60"],
            "env": {"TERM_PROGRAM": "set-by-the-spawn"},
        }),
    );
    let id = a["id"].as_str().unwrap();
    let screen = wait_screen(&mut c, id, "END");
    let vars: Vec<&str> = screen.lines().collect();
    for want in [
        "TERM=xterm-256color",
        "COLORTERM=truecolor",
        "ORCH_TEST_KEPT=kept",
        "TERM_PROGRAM=set-by-the-spawn",
    ] {
        assert!(vars.contains(&want), "{want} missing: {screen}");
    }
    assert!(
        vars.iter().any(|v| v.starts_with("ORCH_AGENT_ID=a-")),
        "{screen}"
    );
    assert!(
        vars.iter().any(|v| v.starts_with("ORCH_TERMINAL_ID=t-")),
        "{screen}"
    );
    for gone in ["TMUX=", "TMUX_PANE=", "VSCODE_IPC_HOOK_CLI="] {
        assert!(
            !vars.iter().any(|v| v.starts_with(gone)),
            "{gone} leaked: {screen}"
        );
    }
}

/// A daemon stop whose grace period runs out (agents that ignore SIGTERM) kills them and settles
/// what hung on them, as their exit would: terminals ended (not counted as live), their task no
/// longer running, their questions dismissed. Before, only the agents' states changed.
#[test]
fn a_forced_daemon_stop_settles_what_hung_on_its_agents() {
    let mut d = Daemon::started(Some(
        r#"
[daemon]
stop_grace_ms = 300

[agents.stubborn]
command = ["bash", "--norc", "--noprofile", "-c", "trap '' TERM; while read line; do echo \"got $line\"; done"]
idle_after_ms = 300

[agents.asker]
command = ["bash", "--norc", "--noprofile", "-c", "trap '' TERM; printf 'Proceed? [y/N] '; read a; sleep 600"]
waiting_patterns = ["Proceed\\?"]
"#,
    ));
    let mut c = d.client(Via::Socket);
    let worker = c.ok("orch/agent/spawn", json!({ "kind": "stubborn" }));
    let worker = worker["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &worker, "idle", |a| a["state"] == "idle");
    let task = c.ok(
        "orch/task/create",
        json!({ "title": "t", "prompt": "do it", "agentId": worker }),
    );
    let task = task["id"].as_str().unwrap().to_string();
    orch_tests::wait_task(&mut c, &task, "running");
    let asker = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    let asker = asker["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &asker, "waiting", |a| a["state"] == "waiting");
    orch_tests::pending_decision_for(&mut c, &asker);
    drop(c);
    let (code, _, err) = d.run(&["stop"]);
    assert_eq!(code, 0, "{err}");
    d.child.as_mut().unwrap().wait().unwrap();
    d.start();
    let mut c = d.client(Via::Socket);
    for id in [&worker, &asker] {
        let a = c.ok("orch/agent/get", json!({ "id": id }));
        assert_eq!(a["state"], "stopped", "{a}");
        let terminals = c.list_all("orch/terminal/list", json!({}));
        let t = terminals
            .iter()
            .find(|t| t["id"] == a["terminalId"])
            .unwrap_or_else(|| panic!("terminal of {a} listed: {terminals:?}"));
        assert_eq!(t["alive"], false, "{t}");
    }
    let t = c.ok("orch/task/get", json!({ "id": task }));
    assert_ne!(t["state"], "running", "{t}");
    let pending = c.ok("orch/decision/list", json!({ "state": "pending" }));
    assert_eq!(pending["items"], json!([]), "{pending}");
}
