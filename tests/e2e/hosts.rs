//! Agents on another machine: a `[hosts.<name>]` entry reaching a real OpenSSH server on
//! loopback (its own keys, a random port), whose tmux runs the agents. The "remote" machine is
//! this one seen through SSH: what runs there carries `SSH_CONNECTION`, which is how the tests
//! tell it ran on the host and not beside the daemon.

use std::process::Command;
use std::time::Duration;

use orch_tests::sshd::Sshd;
use orch_tests::{
    agent_states, ci, pending_decision_for, require_tool, wait_agent, wait_for, wait_screen,
    wait_task, Daemon, IsolatedTmux, Via, WAIT,
};
use serde_json::{json, Value};

/// Whether the test can run: sshd and tmux installed (with CI=true, a missing one fails).
fn tools() -> bool {
    if !require_tool("tmux", &["-V"]) {
        return false;
    }
    if !Sshd::available() {
        assert!(
            !ci(),
            "the OpenSSH server (/usr/sbin/sshd, Debian's openssh-server) is required when CI=true"
        );
        eprintln!("skipping: sshd is not installed");
        return false;
    }
    true
}

/// A test's remote host: the sshd, the host's tmux server, its workspace (with a `marker` file),
/// and a daemon whose `lab` host reaches them, connected, with a client. Fields drop in reverse
/// order of a destructuring `let`: daemon first, sshd last.
struct Lab {
    sshd: Sshd,
    tmux: IsolatedTmux,
    remote: tempfile::TempDir,
    d: Daemon,
    c: orch_tests::Client,
    /// The host's `orch/status` entry once connected.
    connected: Value,
}

/// A connected [`Lab`]; `None` when sshd or tmux is missing (and CI is not set).
fn lab() -> Option<Lab> {
    if !tools() {
        return None;
    }
    let sshd = Sshd::start();
    let tmux = IsolatedTmux::new("e2e-host");
    let remote = tempfile::tempdir().unwrap();
    std::fs::write(remote.path().join("marker"), "").unwrap();
    let d = Daemon::started(Some(&config(&sshd, &tmux, remote.path())));
    let mut c = d.client(Via::Socket);
    let connected = wait_host(&mut c, "lab", "connected", WAIT);
    Some(Lab {
        sshd,
        tmux,
        remote,
        d,
        c,
        connected,
    })
}

/// orch.toml with host `lab` on `sshd`, its workspace `remote_dir`, and the test's kinds.
fn config(sshd: &Sshd, tmux: &IsolatedTmux, remote_dir: &std::path::Path) -> String {
    let ssh: Vec<String> = sshd.ssh_argv().iter().map(|a| format!("{a:?}")).collect();
    format!(
        r#"
[hosts.lab]
ssh = [{}]
cwd = "{}"
socket_name = "{}"
env = {{ LAB_GREETING = "hello from the lab" }}

[agents.shell]
command = ["bash", "--norc", "--noprofile", "-i"]
idle_after_ms = 400

[agents.asker]
command = ["bash", "-c", "printf 'Deploy? [y/N] '; read a; echo deployed=$a; sleep 1"]
waiting_patterns = ["Deploy\\?"]
idle_after_ms = 400
host = "lab"

[agents.ticker]
command = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.1; done"]
host = "lab"

[gates.on-host]
command = ["sh", "-c", "echo via=${{SSH_CONNECTION:-none}} dir=$(pwd) greeting=$LAB_GREETING; test -f marker"]
timeout_s = 60
"#,
        ssh.join(", "),
        remote_dir.display(),
        tmux.name
    )
}

fn host_entry(c: &mut orch_tests::Client, name: &str) -> Value {
    let st = c.ok("orch/status", json!({}));
    st["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("status lists no host {name}: {st}"))
        .clone()
}

fn wait_host(c: &mut orch_tests::Client, name: &str, state: &str, within: Duration) -> Value {
    wait_for(&format!("host {name} {state}"), within, || {
        let h = host_entry(c, name);
        (h["state"] == state).then_some(h)
    })
}

/// The agent's screen with `scrollback` lines of history, as text.
fn history(c: &mut orch_tests::Client, terminal: &Value, scrollback: u64) -> String {
    let s = c.ok(
        "orch/terminal/screen",
        json!({ "id": terminal, "scrollback": scrollback }),
    );
    s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ticks on a screen, in order.
fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tick")?.parse().ok())
        .collect()
}

#[test]
fn an_agent_on_a_host_is_driven_over_ssh() {
    let Some(Lab {
        sshd,
        tmux,
        remote,
        d,
        mut c,
        connected: h,
    }) = lab()
    else {
        return;
    };
    assert!(
        h["tmuxVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{h}"
    );
    assert!(h["rttMs"].as_f64().is_some(), "{h}");

    // Spawn, send, screen: the shell runs in the host's tmux, in the host's workspace, with the
    // host's environment, behind SSH.
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "kind": "shell", "host": "lab", "name": "remote-sh" }),
    );
    assert_eq!(a["host"], "lab");
    assert_eq!(a["backend"], "tmux");
    assert_eq!(a["cwd"], remote.path().display().to_string());
    let id = a["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &id, "idle", |a| a["state"] == "idle");
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "echo \"[$((6*7))] $(pwd) $LAB_GREETING via ${SSH_CONNECTION:-none}\"" }),
    );
    let screen = wait_screen(&mut c, &id, "[42]");
    let port = format!("127.0.0.1 {}", sshd.port);
    let line = screen.lines().find(|l| l.starts_with("[42]")).unwrap_or("");
    assert!(
        line.contains(&remote.path().display().to_string()),
        "{screen}"
    );
    assert!(line.contains("hello from the lab"), "{screen}");
    assert!(
        line.contains(&port),
        "not run through the host's sshd: {screen}"
    );
    assert!(
        tmux.window_names().contains(&"remote-sh".to_string()),
        "{:?}",
        tmux.window_names()
    );

    // Its output reaches subscribers as a local agent's does.
    let mut watcher = d.client(Via::Socket);
    watcher.ok("orch/terminal/subscribe", json!({ "id": a["terminalId"] }));
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "echo out-$((1+1))" }),
    );
    let mut seen = String::new();
    while !seen.contains("out-2") {
        let n = watcher.notification("orch/terminal/output", WAIT, |p| p["id"] == a["terminalId"]);
        seen.push_str(n["data"].as_str().unwrap_or(""));
    }

    // `orch status` shows the host.
    let (code, out, err) = d.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("host")).unwrap_or("");
    assert!(line.contains("lab connected, tmux 3"), "{out}");
    assert!(line.contains("rtt"), "{out}");

    // `~` is the home directory on the host.
    let home = c.ok(
        "orch/agent/spawn",
        json!({ "command": ["sh", "-c", "echo \"home=$(pwd)\"; sleep 30"], "host": "lab", "cwd": "~" }),
    );
    let home_id = home["id"].as_str().unwrap();
    let remote_home = String::from_utf8(
        Command::new(&sshd.ssh_argv()[0])
            .args(&sshd.ssh_argv()[1..])
            .arg("echo $HOME")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(remote_home.starts_with('/'), "{remote_home:?}");
    wait_screen(&mut c, home_id, &format!("home={remote_home}"));
    c.ok("orch/agent/stop", json!({ "id": home_id, "force": true }));

    // A task's prompt lands in the remote agent; its gate runs on the host, over SSH.
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "remote", "prompt": "echo TASK-$((40+2))", "agentId": id, "gates": ["on-host"], "maxAttempts": 1 }),
    );
    wait_screen(&mut c, &id, "TASK-42");
    c.ok(
        "orch/task/complete",
        json!({ "id": t["id"], "summary": "done on the lab" }),
    );
    let done = wait_task(&mut c, t["id"].as_str().unwrap(), "done");
    let tail = done["gateResults"][0]["outputTail"].as_str().unwrap_or("");
    assert!(tail.contains(&port), "gate did not run over SSH: {done}");
    assert!(
        tail.contains(&format!("dir={}", remote.path().display())),
        "{done}"
    );
    assert!(tail.contains("greeting=hello from the lab"), "{done}");

    // A waiting pattern on the host's screen becomes a decision; the answer is typed there.
    let asker = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    assert_eq!(asker["host"], "lab", "the kind's host");
    let asker_id = asker["id"].as_str().unwrap();
    wait_agent(&mut c, asker_id, "waiting", |a| a["state"] == "waiting");
    let dec = pending_decision_for(&mut c, asker_id);
    let mut other = d.client(Via::Socket);
    other.ok(
        "orch/decision/resolve",
        json!({ "id": dec["id"], "choice": "approve" }),
    );
    wait_screen(&mut c, asker_id, "deployed=y");
    let ended = wait_agent(&mut c, asker_id, "exit", |a| a["state"] == "exited");
    assert_eq!(ended["exitCode"], 0);

    // Restart: a new terminal, on the host again.
    let again = c.ok("orch/agent/restart", json!({ "id": id }));
    assert_eq!(again["host"], "lab");
    assert_ne!(again["terminalId"], a["terminalId"]);
    wait_agent(&mut c, &id, "idle after the restart", |a| {
        a["state"] == "idle"
    });
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "echo again=${SSH_CONNECTION:+ssh}" }),
    );
    wait_screen(&mut c, &id, "again=ssh");

    // Stop: the window on the host goes.
    c.ok("orch/agent/stop", json!({ "id": id }));
    wait_agent(&mut c, &id, "stopped", |a| a["state"] == "stopped");
    wait_for("the window to close on the host", WAIT, || {
        (!tmux.window_names().contains(&"remote-sh".to_string())).then_some(())
    });

    // Bad input names the field and the value.
    let e = c.err(
        "orch/agent/spawn",
        json!({ "kind": "shell", "host": "nowhere" }),
        -32602,
    );
    assert!(e["message"].as_str().unwrap().contains("host"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("nowhere"), "{e}");
    let e = c.err(
        "orch/agent/spawn",
        json!({ "kind": "shell", "host": "lab", "backend": "pty" }),
        -32602,
    );
    assert!(e["message"].as_str().unwrap().contains("backend"), "{e}");
}

#[test]
fn a_host_that_drops_is_unreachable_then_its_agents_come_back() {
    let Some(Lab {
        mut sshd,
        tmux: _tmux,
        remote: _remote,
        mut d,
        mut c,
        connected: _,
    }) = lab()
    else {
        return;
    };
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "kind": "ticker", "name": "ticker" }),
    );
    let id = a["id"].as_str().unwrap().to_string();
    let term = a["terminalId"].clone();
    wait_screen(&mut c, &id, "tick5");
    // And one asking a question when the host goes.
    let asker = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    let asker_id = asker["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &asker_id, "waiting", |a| a["state"] == "waiting");
    let question = pending_decision_for(&mut c, &asker_id);

    // A client follows its output.
    let mut follower = d.client(Via::Socket);
    follower.ok("orch/terminal/subscribe", json!({ "id": term }));
    follower.notification("orch/terminal/output", WAIT, |p| p["id"] == term);

    // The host goes away mid-output: the agent is unreachable, not lost.
    let printed_before = ticks(&history(&mut c, &term, 5000)).last().copied();
    // And one that ends while the host is away.
    let quitter = c.ok(
        "orch/agent/spawn",
        json!({ "command": ["sh", "-c", "sleep 1; exit 3"], "host": "lab" }),
    );
    let quitter = quitter["id"].as_str().unwrap().to_string();
    sshd.stop();
    let gone = wait_agent(&mut c, &id, "unreachable", |a| a["state"] == "unreachable");
    assert!(
        gone["pid"].is_number(),
        "it still runs, with its pid: {gone}"
    );
    let h = host_entry(&mut c, "lab");
    assert_eq!(h["state"], "unreachable", "{h}");
    let e = c.err("orch/agent/send", json!({ "id": id, "text": "x" }), -32003);
    assert!(
        e["message"].as_str().unwrap().contains("unreachable"),
        "{e}"
    );
    let e = c.err(
        "orch/terminal/screen",
        json!({ "id": term, "scrollback": 10 }),
        -32003,
    );
    assert!(
        e["message"].as_str().unwrap().contains("unreachable"),
        "{e}"
    );
    // Nothing reaches it now: an answer or a restart would be lost, and are refused.
    let e = c.err(
        "orch/decision/resolve",
        json!({ "id": question["id"], "choice": "approve" }),
        -32003,
    );
    assert!(
        e["message"].as_str().unwrap().contains("unreachable"),
        "{e}"
    );
    let e = c.err("orch/agent/restart", json!({ "id": id }), -32003);
    assert!(
        e["message"].as_str().unwrap().contains("unreachable"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(1500));

    // Back: re-adopted by pane id, and what it printed meanwhile is in tmux's history.
    sshd.start_again();
    wait_host(&mut c, "lab", "connected", Duration::from_secs(40));
    let back = wait_agent(&mut c, &id, "live again", |a| {
        a["state"] != "unreachable" && a["state"] != "starting"
    });
    assert!(
        ["running", "busy", "idle"].contains(&back["state"].as_str().unwrap()),
        "{back}"
    );
    // The follower follows it again: output printed after the return reaches it.
    let resumed_at = ticks(&history(&mut c, &term, 5000))
        .last()
        .copied()
        .unwrap();
    let mut got = String::new();
    let fresh = loop {
        let n = follower.notification("orch/terminal/output", WAIT, |p| p["id"] == term);
        got.push_str(n["data"].as_str().unwrap_or(""));
        if let Some(t) = ticks(&got.replace('\r', ""))
            .into_iter()
            .find(|&t| t > resumed_at)
        {
            break t;
        }
    };
    assert!(fresh > resumed_at);

    // The one that ended meanwhile is reported with its exit status.
    let ended = wait_agent(&mut c, &quitter, "ended", |a| a["state"] == "failed");
    assert_eq!(ended["exitCode"], 3, "{ended}");
    let states = agent_states(&mut c, &quitter);
    let path: Vec<&str> = states
        .iter()
        .filter_map(|e| e["data"]["state"].as_str())
        .collect();
    assert!(path.ends_with(&["unreachable", "failed"]), "{path:?}");

    // The question asked before the drop is still the one pending, and its answer lands.
    wait_agent(&mut c, &asker_id, "waiting again", |a| {
        a["state"] == "waiting"
    });
    let pending = c.ok("orch/decision/list", json!({ "state": "pending" }));
    let mine: Vec<&Value> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["source"]["id"] == json!(asker_id))
        .collect();
    assert_eq!(mine.len(), 1, "{pending}");
    assert_eq!(mine[0]["id"], question["id"]);
    c.ok(
        "orch/decision/resolve",
        json!({ "id": question["id"], "choice": "approve" }),
    );
    wait_screen(&mut c, &asker_id, "deployed=y");
    let seen = wait_for("ticks printed while the host was away", WAIT, || {
        let t = ticks(&history(&mut c, &term, 5000));
        (t.len() > 30).then_some(t)
    });
    let first = seen[0];
    assert_eq!(
        seen,
        (first..first + seen.len() as u64).collect::<Vec<_>>(),
        "a gap in the ticks (before the drop the last was {printed_before:?})"
    );
    assert!(
        seen.last().copied() > printed_before.map(|n| n + 10),
        "no output from the outage: {printed_before:?} then {seen:?}"
    );
    let events = c.ok(
        "orch/events/query",
        json!({ "kinds": ["host.state"], "subjects": ["lab"] }),
    );
    let states: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["state"].as_str())
        .collect();
    assert!(
        states.ends_with(&["connected", "unreachable", "connected"]),
        "{states:?}"
    );

    // A daemon killed outright: the next one adopts the agent on the host again.
    let adopted = c.ok(
        "orch/events/query",
        json!({ "kinds": ["agent.adopted"], "subjects": [id] }),
    );
    drop(c);
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    wait_host(&mut c, "lab", "connected", WAIT);
    wait_for("the agent adopted after the restart", WAIT, || {
        let ev = c.ok(
            "orch/events/query",
            json!({ "kinds": ["agent.adopted"], "subjects": [id] }),
        );
        (ev["items"].as_array().unwrap().len() > adopted["items"].as_array().unwrap().len())
            .then_some(())
    });
    let a = c.ok("orch/agent/get", json!({ "id": id }));
    assert!(a["state"] != "lost" && a["state"] != "unreachable", "{a}");
    let before = ticks(&history(&mut c, &term, 5000))
        .last()
        .copied()
        .unwrap();
    wait_for("new ticks after the restart", WAIT, || {
        let t = ticks(&history(&mut c, &term, 5000));
        (t.last().copied().unwrap() > before + 5).then_some(())
    });
    c.ok("orch/agent/stop", json!({ "id": id, "force": true }));
    wait_agent(&mut c, &id, "stopped", |a| a["state"] == "stopped");
    let _ = sshd.log();
}

#[test]
fn windows_left_by_a_daemon_stopped_during_an_outage_are_closed_when_the_host_is_back() {
    let Some(Lab {
        mut sshd,
        tmux,
        remote: _remote,
        mut d,
        mut c,
        connected: _,
    }) = lab()
    else {
        return;
    };
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "command": ["sleep", "1000"], "host": "lab", "name": "left-behind" }),
    );
    let id = a["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &id, "running", |a| a["state"] == "running");
    sshd.stop();
    wait_agent(&mut c, &id, "unreachable", |a| a["state"] == "unreachable");
    // The daemon stops while the host is away: nothing can reach the agent, which is lost, not
    // stopped, and its window stays on the host.
    let pid = d.pid();
    c.ok("orch/daemon/stop", json!({}));
    wait_for("the daemon to stop", WAIT, || {
        // SAFETY: signal 0 only checks existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0 && !orch_tests::is_zombie(pid);
        (!alive).then_some(())
    });
    if let Some(mut child) = d.child.take() {
        let _ = child.wait();
    }
    assert!(
        tmux.window_names().contains(&"left-behind".to_string()),
        "{:?}",
        tmux.window_names()
    );
    sshd.start_again();
    d.start();
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/get", json!({ "id": id }));
    assert_eq!(a["state"], "lost", "{a}");
    let last = agent_states(&mut c, &id).pop().unwrap();
    assert!(
        last["data"]["evidence"]
            .as_str()
            .unwrap()
            .contains("may still run there"),
        "{last}"
    );
    wait_host(&mut c, "lab", "connected", Duration::from_secs(40));
    wait_for("the left-behind window to close on the host", WAIT, || {
        (!tmux.window_names().contains(&"left-behind".to_string())).then_some(())
    });
}

#[test]
fn a_gate_due_while_its_host_is_away_runs_when_the_host_is_back() {
    let Some(Lab {
        mut sshd,
        tmux: _tmux,
        remote: _remote,
        d: _d,
        mut c,
        connected: _,
    }) = lab()
    else {
        return;
    };
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "kind": "shell", "host": "lab" }),
    );
    let id = a["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &id, "idle", |a| a["state"] == "idle");
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "t", "prompt": "echo working", "agentId": id, "gates": ["on-host"], "maxAttempts": 1 }),
    );
    let task = t["id"].as_str().unwrap().to_string();
    wait_screen(&mut c, &id, "working");
    sshd.stop();
    wait_agent(&mut c, &id, "unreachable", |a| a["state"] == "unreachable");
    // Done while the host is away: the gate waits for it instead of failing on SSH (which,
    // with one attempt allowed, would fail the task).
    c.ok("orch/task/complete", json!({ "id": task }));
    std::thread::sleep(Duration::from_millis(1500));
    let waiting = c.ok("orch/task/get", json!({ "id": task }));
    assert_eq!(waiting["state"], "verifying", "{waiting}");
    assert!(
        waiting["gateResults"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{waiting}"
    );
    sshd.start_again();
    let done = wait_task(&mut c, &task, "done");
    assert_eq!(done["attempts"], 1, "{done}");
    let tail = done["gateResults"][0]["outputTail"].as_str().unwrap_or("");
    assert!(
        tail.contains(&format!("127.0.0.1 {}", sshd.port)),
        "the gate ran over SSH: {done}"
    );
}
