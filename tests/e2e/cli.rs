//! The `orch` CLI as people and scripts use it: tables, `--json`, exit codes, auto-start, attach.

use orch_tests::{wait_for, wait_screen, Daemon, Via, WAIT};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[agents.shell]
command = ["bash", "--norc", "--noprofile", "-i"]
idle_after_ms = 300

[gates.pass]
command = ["true"]

[gates.never]
command = ["false"]
"#;

#[test]
fn commands_auto_start_the_daemon_and_print_tables_or_json() {
    let d = Daemon::new(Some(CONFIG));
    // No daemon yet: the first command starts one, detached.
    let (code, out, err) = d.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("workspace") && out.contains("backend    pty available"),
        "{out}"
    );
    let (_, out, _) = d.run(&["--json", "status"]);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["protocolVersion"], 1);

    let (code, out, err) = d.run(&["agent", "spawn", "shell", "--name", "sh"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("NAME") && out.contains("sh"), "{out}");
    let (code, _, err) = d.run(&["agent", "send", "sh", "echo cli-$((20+22))"]);
    assert_eq!(code, 0, "{err}");
    wait_for("the answer on the screen", WAIT, || {
        let (_, out, _) = d.run(&["agent", "screen", "sh"]);
        out.lines().any(|l| l.trim() == "cli-42").then_some(())
    });
    let (_, out, _) = d.run(&["agent", "list"]);
    let row = out
        .lines()
        .find(|l| l.contains(" sh "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("shell") && row.contains("pty"), "{row}");
    let (_, out, _) = d.run(&["--json", "agent", "list"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["name"], "sh");
    let (code, out, _) = d.run(&["agent", "stop", "sh"]);
    assert_eq!(code, 0);
    assert!(out.contains("stopped"), "{out}");
    let (_, out, _) = d.run(&["events", "--kind", "agent.state"]);
    assert!(
        out.contains("agent.state") && out.contains("-> stopped"),
        "{out}"
    );

    // Errors name what was wrong and exit non-zero.
    let (code, _, err) = d.run(&["agent", "send", "nobody", "hi"]);
    assert_eq!(code, 1);
    assert!(err.contains("agent nobody not found"), "{err}");
    let (code, _, err) = d.run(&["call", "orch/agent/spawn", "{not json"]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid JSON"), "{err}");
    let (code, out, _) = d.run(&["call", "orch/session/list", r#"{"state":"active"}"#]);
    assert_eq!(code, 0);
    assert!(out.contains("\"default\""), "{out}");
    let (code, out, err) = d.run(&["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = d.run(&["stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("no daemon runs"), "{out}");
}

#[test]
fn tasks_decisions_and_wait_exit_codes() {
    let d = Daemon::started(Some(CONFIG));
    let (code, out, err) = d.run(&[
        "--json", "task", "new", "ok task", "--prompt", "p", "--gate", "pass",
    ]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let id = t["id"].as_str().unwrap();
    let (code, _, _) = d.run(&["wait", id, "--timeout", "1"]);
    assert_eq!(code, 2, "pending task: timeout");
    let (code, _, err) = d.run(&["task", "complete", id]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = d.run(&["wait", id, "--timeout", "30"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("done"));

    let (_, out, _) = d.run(&[
        "--json",
        "task",
        "new",
        "bad task",
        "--prompt",
        "p",
        "--gate",
        "never",
        "--max-attempts",
        "1",
    ]);
    let bad: Value = serde_json::from_str(&out).unwrap();
    let bid = bad["id"].as_str().unwrap();
    d.run(&["task", "complete", bid]);
    let (code, out, _) = d.run(&["wait", bid, "--timeout", "30"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("escalated"), "{out}");
    let (_, out, _) = d.run(&["decision", "list"]);
    assert!(out.contains("retry/reassign/accept/cancel"), "{out}");
    let (_, out, _) = d.run(&["--json", "decision", "list", "--state", "pending"]);
    let decs: Value = serde_json::from_str(&out).unwrap();
    let did = decs[0]["id"].as_str().unwrap();
    let (code, _, err) = d.run(&["decision", "resolve", did, "sometimes"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"sometimes\" is not one of the options"),
        "{err}"
    );
    let (code, _, err) = d.run(&[
        "decision",
        "resolve",
        did,
        "accept",
        "--reason",
        "good enough",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = d.run(&["wait", bid, "--timeout", "30"]);
    assert_eq!(code, 0);
    let (_, out, _) = d.run(&["task", "list"]);
    assert_eq!(
        out.lines().filter(|l| l.contains(" done ")).count(),
        2,
        "{out}"
    );
}

/// `orch attach` needs a terminal: run it in a pty agent of its own and type into that.
#[test]
fn attach_shows_the_agent_and_detaches_leaving_it_running() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    c.ok(
        "orch/agent/spawn",
        json!({ "kind": "shell", "name": "target" }),
    );
    orch_tests::wait_agent(&mut c, "target", "idle", |a| a["state"] == "idle");
    c.ok(
        "orch/agent/send",
        json!({ "id": "target", "text": "echo before-attach" }),
    );
    wait_screen(&mut c, "target", "before-attach");
    let bin = orch_tests::orch_bin();
    let viewer = c.ok(
        "orch/agent/spawn",
        json!({ "command": [bin, "attach", "target"], "name": "viewer" }),
    );
    // The view repaints the target's screen, then follows it.
    wait_screen(&mut c, "viewer", "before-attach");
    c.ok(
        "orch/terminal/write",
        json!({ "id": viewer["terminalId"], "data": "echo typed-$((3*3))\r" }),
    );
    wait_screen(&mut c, "target", "typed-9");
    wait_screen(&mut c, "viewer", "typed-9");
    // Ctrl-] detaches: the viewer ends, the target runs on.
    c.ok(
        "orch/terminal/write",
        json!({ "id": viewer["terminalId"], "data": "\u{1d}" }),
    );
    let v = orch_tests::wait_agent(&mut c, "viewer", "the viewer to exit", |a| {
        a["state"] == "exited" || a["state"] == "failed"
    });
    assert_eq!(v["exitCode"], 0, "{v}");
    wait_screen(&mut c, "viewer", "detached from target");
    let t = c.ok("orch/agent/get", json!({ "id": "target" }));
    assert!(
        ["idle", "busy", "running"].contains(&t["state"].as_str().unwrap()),
        "{t}"
    );
}

#[test]
fn events_follow_prints_live_events() {
    use std::io::BufRead;
    let d = Daemon::started(None);
    let mut follow = d
        .orch()
        .args(["events", "--follow", "--kind", "session."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut c = d.client(Via::Socket);
    // Create until the follower has subscribed and prints one: it is live-only by default.
    let line = wait_for("a followed event", WAIT, || {
        c.ok(
            "orch/session/create",
            json!({ "name": format!("live-{}", rand_suffix()) }),
        );
        rx.recv_timeout(std::time::Duration::from_millis(200)).ok()
    });
    assert!(line.contains("session.created"), "{line}");
    assert!(
        !line.contains("\"default\""),
        "history is not replayed without --since: {line}"
    );
    let _ = follow.kill();
    let _ = follow.wait();
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `orch hook`, what an agent's command hooks run: the hook's JSON on stdin becomes the agent's
/// state, with the hook as evidence; nothing is printed (Claude Code would read it), and it exits
/// 0 at once, also when the daemon is gone or the input is not a hook's.
#[test]
fn orch_hook_hands_a_hook_to_the_daemon_and_never_fails() {
    use std::io::Write;
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    // Any agent may report through `orch hook` (Claude Code's kind is given settings whose
    // hooks run it); here the test plays the hooks itself.
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "command": ["bash", "--norc", "--noprofile", "-c", "exec sleep 600"] }),
    );
    let id = a["id"].as_str().unwrap().to_string();
    let terminal = a["terminalId"].as_str().unwrap().to_string();
    let socket = d.socket();
    let hook = |env: &[(&str, &str)], input: &str| {
        let started = std::time::Instant::now();
        let mut cmd = d.orch();
        cmd.arg("hook")
            .env_remove("ORCH_AGENT_ID")
            .env_remove("ORCH_SOCKET")
            .env_remove("ORCH_TERMINAL_ID")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out, started.elapsed())
    };
    let socket_s = socket.display().to_string();
    let env = [
        ("ORCH_AGENT_ID", id.as_str()),
        ("ORCH_TERMINAL_ID", terminal.as_str()),
        ("ORCH_SOCKET", socket_s.as_str()),
    ];
    let (out, _) = hook(
        &env,
        r#"{"hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": {"command": "rm -rf build"}}"#,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let a = c.ok("orch/agent/get", json!({ "id": id }));
    assert_eq!(
        a["state"], "waiting",
        "the answer came after the state: {a}"
    );
    let ev = c.ok(
        "orch/events/query",
        json!({ "kinds": ["agent.state"], "subjects": [id] }),
    );
    let last = ev["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["data"]["evidence"], "hook: PermissionRequest Bash",
        "{last}"
    );
    // Its decision names the tool and its input.
    let d2 = orch_tests::pending_decision_for(&mut c, &id);
    assert!(
        d2["detail"]
            .as_str()
            .unwrap()
            .starts_with("Bash: rm -rf build"),
        "{d2}"
    );
    // A hook of another (earlier) terminal of the agent says nothing now.
    let old = [
        ("ORCH_AGENT_ID", id.as_str()),
        ("ORCH_TERMINAL_ID", "t-999"),
        ("ORCH_SOCKET", socket_s.as_str()),
    ];
    let (out, _) = hook(&old, r#"{"hook_event_name": "Stop"}"#);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        c.ok("orch/agent/get", json!({ "id": id }))["state"],
        "waiting"
    );
    let (out, _) = hook(&env, r#"{"hook_event_name": "Stop"}"#);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(c.ok("orch/agent/get", json!({ "id": id }))["state"], "idle");
    // Never a failure: no daemon, no agent, not JSON, no environment.
    for (env, input) in [
        (
            vec![
                ("ORCH_AGENT_ID", "a-1"),
                ("ORCH_SOCKET", "/nonexistent/orch.sock"),
            ],
            r#"{"hook_event_name": "Stop"}"#,
        ),
        (
            vec![
                ("ORCH_AGENT_ID", "a-424242"),
                ("ORCH_SOCKET", socket_s.as_str()),
            ],
            r#"{"hook_event_name": "Stop"}"#,
        ),
        (env.to_vec(), "not json at all"),
        (vec![], r#"{"hook_event_name": "Stop"}"#),
    ] {
        let (out, took) = hook(&env, input);
        assert_eq!(out.status.code(), Some(0), "{env:?} {input}");
        assert!(out.stdout.is_empty(), "{env:?}: {:?}", out.stdout);
        assert!(took < WAIT / 4, "{env:?} took {took:?}");
    }
}
