//! The tmux backend: agents in windows of orch's own tmux server (an isolated server per test,
//! `tmux -L <unique>`), surviving the daemon, injection-proof input, and a dying server.

use orch_tests::{
    require_tool, wait_agent, wait_for, wait_screen, Daemon, IsolatedTmux as Server, Via, BOTH,
    WAIT,
};
use serde_json::{json, Value};

/// orch.toml for a daemon on tmux server `server`, with a quiet shell kind and `extra`.
fn config(server: &Server, extra: &str) -> String {
    format!(
        "[daemon]\nbackend = \"tmux\"\n\n[tmux]\nsocket_name = \"{}\"\n\n[agents.shell]\ncommand = [\"bash\", \"--norc\", \"--noprofile\", \"-i\"]\nidle_after_ms = 400\n{extra}",
        server.name
    )
}

/// The tmux entry of an `orch/status` result's backends.
fn tmux_backend(status: &Value) -> Value {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "tmux")
        .expect("status lists tmux")
        .clone()
}

fn screen_text(c: &mut orch_tests::Client, id: &str) -> String {
    let s = c.ok("orch/agent/screen", json!({ "id": id }));
    s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bash_on_tmux_is_a_window_and_answers() {
    if !require_tool("tmux", &["-V"]) {
        return;
    }
    let server = Server::new("e2e");
    let d = Daemon::started(Some(&config(&server, "")));
    for via in BOTH {
        let mut c = d.client(via);
        let st = c.ok("orch/status", json!({}));
        let tmux = tmux_backend(&st);
        assert_eq!(tmux["available"], true, "{tmux}");
        assert!(
            tmux["detail"].as_str().unwrap().contains("3."),
            "version: {tmux}"
        );
        let name = format!("tm-{via:?}").to_lowercase();
        let a = c.ok("orch/agent/spawn", json!({ "kind": "shell", "name": name }));
        assert_eq!(a["backend"], "tmux");
        let id = a["id"].as_str().unwrap();
        wait_agent(&mut c, id, "idle", |a| a["state"] == "idle");
        let sub = c.ok(
            "orch/events/subscribe",
            json!({ "kinds": ["agent.state"], "subjects": [id] }),
        );
        c.ok("orch/terminal/subscribe", json!({ "id": a["terminalId"] }));
        c.ok(
            "orch/agent/send",
            json!({ "id": name, "text": "echo $((6*7))" }),
        );
        let screen = wait_screen(&mut c, id, "42");
        assert!(screen.lines().any(|l| l.trim() == "42"), "{screen}");
        // Output subscriptions work for tmux agents too.
        let mut seen = String::new();
        while !seen.contains("42") {
            let n = c.notification("orch/terminal/output", WAIT, |p| p["id"] == a["terminalId"]);
            seen.push_str(n["data"].as_str().unwrap_or(""));
        }
        // busy then idle, with evidence, as for pty agents.
        let mut states = Vec::new();
        while states.last().map(String::as_str) != Some("idle") {
            let n = c.notification("orch/event", WAIT, |p| {
                p["subscriptionId"] == sub["subscriptionId"]
            });
            states.push(n["event"]["data"]["state"].as_str().unwrap().to_string());
        }
        assert_eq!(states, ["busy", "idle"]);
        assert!(
            server.window_names().contains(&name),
            "{:?}",
            server.window_names()
        );
    }
}

#[test]
fn injection_payload_arrives_verbatim_and_runs_nothing() {
    if !require_tool("tmux", &["-V"]) {
        return;
    }
    let server = Server::new("e2e");
    let d = Daemon::started(Some(&config(&server, "")));
    let mut c = d.client(Via::Socket);
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "command": ["cat"], "name": "catter" }),
    );
    let id = a["id"].as_str().unwrap();
    let payload = "hello' ; new-window -d -n INJECTED 'sleep 99";
    c.ok("orch/agent/send", json!({ "id": id, "text": payload }));
    let odd = "#{pane_id} $(echo no) ; \"quoted\" \\";
    c.ok("orch/agent/send", json!({ "id": id, "text": odd }));
    wait_for("both lines echoed by cat", WAIT, || {
        let text = screen_text(&mut c, id);
        (text.matches(payload).count() >= 2 && text.matches(odd).count() >= 2).then_some(())
    });
    assert!(
        !server.window_names().iter().any(|w| w.contains("INJECTED")),
        "{:?}",
        server.window_names()
    );
    assert_eq!(
        server
            .window_names()
            .iter()
            .filter(|w| *w == "catter")
            .count(),
        1
    );
}

#[test]
fn argv_is_never_interpreted_on_tmux() {
    // The probe's case: tmux's parser turned `~root`, `~` and `~/x` into home directories.
    if !require_tool("tmux", &["-V"]) {
        return;
    }
    let server = Server::new("e2e");
    let d = Daemon::started(Some(&config(&server, "")));
    let mut c = d.client(Via::Socket);
    let words = ["~root", "~", "a~b", "~/x", "$HOME", "#{pane_id}"];
    let mut command = vec!["printf", "<%s>\n"];
    command.extend(words);
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "command": command, "name": "argv", "backend": "tmux" }),
    );
    let id = a["id"].as_str().unwrap();
    let text = wait_for("every word printed", WAIT, || {
        let text = screen_text(&mut c, id);
        text.contains("<#{pane_id}>").then_some(text)
    });
    let printed: Vec<&str> = text.lines().filter(|l| l.starts_with('<')).collect();
    let want: Vec<String> = words.iter().map(|w| format!("<{w}>")).collect();
    assert_eq!(printed, want, "{text}");
}

#[test]
fn agents_survive_a_daemon_kill_and_are_adopted() {
    if !require_tool("tmux", &["-V"]) {
        return;
    }
    let server = Server::new("e2e");
    let mut d = Daemon::started(Some(&config(&server, "")));
    let mut c = d.client(Via::Socket);
    let a = c.ok(
        "orch/agent/spawn",
        json!({ "kind": "shell", "name": "survivor" }),
    );
    let id = a["id"].as_str().unwrap().to_string();
    wait_agent(&mut c, &id, "idle", |a| a["state"] == "idle");
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "export MARK=kept-$((2+3))" }),
    );
    drop(c);
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    let ev = c.ok(
        "orch/events/query",
        json!({ "kinds": ["agent.adopted"], "subjects": [id] }),
    );
    assert_eq!(
        ev["items"].as_array().unwrap().len(),
        1,
        "an event says it was adopted: {ev}"
    );
    let again = c.ok("orch/agent/get", json!({ "id": id }));
    assert_ne!(again["state"], "lost", "{again}");
    // The same shell, with its state: it still answers.
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "echo mark=$MARK" }),
    );
    wait_screen(&mut c, &id, "mark=kept-5");
}

#[test]
fn a_dead_tmux_server_makes_agents_lost_and_the_daemon_carries_on() {
    if !require_tool("tmux", &["-V"]) {
        return;
    }
    let server = Server::new("e2e");
    let d = Daemon::started(Some(&config(&server, "")));
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": "shell" }));
    let b = c.ok("orch/agent/spawn", json!({ "command": ["sleep", "1000"] }));
    wait_agent(&mut c, a["id"].as_str().unwrap(), "idle", |a| {
        a["state"] == "idle"
    });
    assert!(server.tmux(&["kill-server"]).0);
    for agent in [&a, &b] {
        let lost = wait_agent(&mut c, agent["id"].as_str().unwrap(), "lost", |a| {
            a["state"] == "lost"
        });
        assert_eq!(lost["state"], "lost");
    }
    let ev = c.ok(
        "orch/events/query",
        json!({ "kinds": ["agent.state"], "subjects": [a["id"]] }),
    );
    let last = ev["items"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["data"]["evidence"]
            .as_str()
            .unwrap()
            .contains("tmux server gone"),
        "{last}"
    );
    c.ok("orch/status", json!({}));
    // A new spawn brings up a new server.
    let n = c.ok(
        "orch/agent/spawn",
        json!({ "kind": "shell", "name": "phoenix" }),
    );
    c.ok(
        "orch/agent/send",
        json!({ "id": n["id"], "text": "echo risen" }),
    );
    wait_screen(&mut c, n["id"].as_str().unwrap(), "risen");
    assert!(server.window_names().contains(&"phoenix".to_string()));
}

#[test]
fn waiting_patterns_work_on_tmux() {
    if !require_tool("tmux", &["-V"]) {
        return;
    }
    let server = Server::new("e2e");
    let extra = "\n[agents.asker]\ncommand = [\"bash\", \"-c\", \"printf 'Proceed? [y/N] '; read a; echo got=$a; sleep 2\"]\nwaiting_patterns = [\"Proceed\\\\?\"]\nidle_after_ms = 400\n";
    let d = Daemon::started(Some(&config(&server, extra)));
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": "asker" }));
    let id = a["id"].as_str().unwrap();
    wait_agent(&mut c, id, "waiting", |a| a["state"] == "waiting");
    let dec = orch_tests::pending_decision_for(&mut c, id);
    c.ok(
        "orch/decision/resolve",
        json!({ "id": dec["id"], "choice": "approve" }),
    );
    wait_screen(&mut c, id, "got=y");
    let done = wait_agent(&mut c, id, "exit", |a| a["state"] == "exited");
    assert_eq!(done["exitCode"], 0);
}

#[test]
fn missing_tmux_is_backend_unavailable() {
    let d = Daemon::started(Some("[tmux]\ncommand = [\"/nonexistent/tmux\"]\n"));
    let mut c = d.client(Via::Socket);
    let st = c.ok("orch/status", json!({}));
    let tmux = tmux_backend(&st);
    assert_eq!(tmux["available"], false);
    assert!(
        tmux["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/tmux"),
        "{tmux}"
    );
    let e = c.err(
        "orch/agent/spawn",
        json!({ "command": ["true"], "backend": "tmux" }),
        -32004,
    );
    assert_eq!(e["data"]["backend"], "tmux");
    // The pty default still works.
    c.ok("orch/agent/spawn", json!({ "command": ["true"] }));
}
