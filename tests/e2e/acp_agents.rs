//! The real ACP agents (`gemini --acp` and `claude-agent-acp`, as `.ci/agents.sh` and
//! `.ci/acp.sh` install them) driven by a real daemon through their built-in kinds, offline,
//! against the project's loopback model server.
//!
//! One scenario per agent, on its own daemon: spawned, it goes idle when its session is ready;
//! a prompt makes a turn (busy, then idle with the agent's `stopReason`), its answer is on the
//! agent's screen and in `agent.message` events; a tool call makes it wait, with a decision
//! whose options are the agent's own, answered from a second client, and the tool runs; a turn
//! cancelled by `orch/agent/interrupt` dismisses its open decision; a task with a gate that fails
//! once ends `done`, the model's own tool call running `orch task complete`; a daemon killed with
//! SIGKILL comes back, the agent is restarted by its policy and continues its session where the
//! agent can. With `CI=true` a missing agent fails the test.

use std::time::{Duration, Instant};

use orch_tests::real::{AcpAgent, ModelServer};
use orch_tests::{orch_bin, wait_for, Client, Daemon, Via};
use serde_json::{json, Value};

use crate::real_agents::{
    last_seq, pending_decision, screen_text, send, state_events, wait_agent_state, LONG,
};

/// Wait until the agent's states after `since` include `want` in that order; on a timeout, the
/// agent's screen and events say what happened instead.
fn wait_states(c: &mut Client, agent: &str, since: u64, want: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let events = state_events(c, agent, since);
        let mut i = 0;
        for (n, e) in events.iter().enumerate() {
            if e["data"]["state"] == want[i] {
                i += 1;
                if i == want.len() {
                    return events[..=n].to_vec();
                }
            }
        }
        if Instant::now() > deadline {
            let all = c.ok(
                "orch/events/query",
                json!({ "since": since, "subjects": [agent], "limit": 1000 }),
            );
            panic!(
                "{agent} did not go through {want:?}; its events:\n{}\nits screen:\n{}",
                all["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| format!("{} {}", e["kind"], e["data"]))
                    .collect::<Vec<_>>()
                    .join("\n"),
                screen_text(c, agent)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn gemini_over_acp() {
    scenario(AcpAgent::Gemini);
}

#[test]
fn claude_over_acp() {
    scenario(AcpAgent::Claude);
}

/// A daemon whose `gemini-acp` or `claude-acp` kind runs the installed agent against the model
/// server, restarted on failure, with a gate that fails once.
struct Bench {
    daemon: Daemon,
    server: ModelServer,
}

impl Bench {
    fn new(agent: AcpAgent) -> Self {
        let server = ModelServer::start();
        let mut daemon = Daemon::new(None);
        let home = daemon.state_dir.path().join("agent-home");
        std::fs::create_dir_all(&home).unwrap();
        let mut setup = agent.prepare(&home, daemon.workspace.path(), &server);
        let bin_dir = orch_bin().parent().unwrap().to_path_buf();
        let path = std::env::var("PATH").unwrap_or_default();
        setup
            .env
            .push(("PATH".into(), format!("{}:{path}", bin_dir.display())));
        let mut toml = setup.orch_toml(agent.kind());
        toml.push_str("restart = \"on-failure\"\n");
        toml.push_str(
            r#"
[gates.check]
command = ["bash", "-c", "if [ -e .gate-passed-once ]; then echo all good; exit 0; fi; touch .gate-passed-once; echo 'gate-failure-7f3a: please retry @bash($ORCH_BIN task complete)'; exit 1"]
timeout_s = 60
"#,
        );
        std::fs::write(daemon.workspace.path().join("orch.toml"), toml).unwrap();
        daemon.start();
        Bench { daemon, server }
    }

    /// Requests that carried a prompt (not the agent's side requests: titles, routing) whose
    /// last user text contains `marker`.
    fn prompts_with(&self, marker: &str) -> Vec<Value> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r["side"] != true)
            .filter(|r| {
                r["last_user_text"]
                    .as_str()
                    .is_some_and(|t| t.contains(marker))
            })
            .collect()
    }
}

/// `kind` events about `agent` after `since`.
fn events(c: &mut Client, agent: &str, since: u64, kind: &str) -> Vec<Value> {
    c.ok(
        "orch/events/query",
        json!({ "since": since, "kinds": [kind], "subjects": [agent], "limit": 1000 }),
    )["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The option of a permission decision that allows the tool once.
fn allow_once(d: &Value) -> String {
    let options: Vec<&str> = d["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // "Allow once" or plain "Allow"; never what would stop the agent asking again ("Allow for
    // this session", "Always allow"): the tests after this one need it to ask.
    let lower = |o: &&&str| o.to_lowercase();
    let allow = options
        .iter()
        .find(|o| lower(o).contains("once"))
        .or_else(|| {
            options
                .iter()
                .find(|o| lower(o) == "allow" || lower(o) == "yes")
        })
        .or_else(|| {
            options.iter().find(|o| {
                let l = lower(o);
                l.starts_with("allow") && !l.contains("session") && !l.contains("always")
            })
        })
        .unwrap_or_else(|| panic!("no option allows the tool: {options:?}"));
    allow.to_string()
}

fn scenario(agent: AcpAgent) {
    if agent.require().is_none() {
        return;
    }
    let b = Bench::new(agent);
    let name = agent.kind();
    let mut c = b.daemon.client(Via::Socket);
    let mut other = b.daemon.client(Via::Lsp);

    // Spawned: idle once its session is ready, the session kept on the agent.
    let a = c.ok("orch/agent/spawn", json!({ "kind": name }));
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["protocol"], "acp", "{a}");
    assert_eq!(a["backend"], "acp", "{a}");
    let ready = wait_states(&mut c, &id, 0, &["idle"]).pop().unwrap();
    assert_eq!(
        ready["data"]["evidence"], "acp: session ready",
        "{name}: {ready}"
    );
    let a = c.ok("orch/agent/get", json!({ "id": id }));
    let session = a["acpSessionId"].as_str().unwrap_or_default().to_string();
    assert!(!session.is_empty(), "{name}: {a}");

    // A prompt is a turn: busy, then idle with the agent's stop reason; the answer is on the
    // screen and in an agent.message event, the prompt in another.
    let from = last_seq(&mut c);
    send(
        &mut c,
        &id,
        "first-prompt-41c9 @reply(answer-from-the-model-77)",
    );
    let states = wait_states(&mut c, &id, from, &["busy", "idle"]);
    assert_eq!(
        states[0]["data"]["evidence"], "acp: prompt",
        "{name}: {states:?}"
    );
    assert_eq!(
        states.last().unwrap()["data"]["evidence"],
        "acp: end_turn",
        "{name}: {states:?}"
    );
    assert_eq!(b.prompts_with("first-prompt-41c9").len(), 1, "{name}");
    let messages = events(&mut c, &id, from, "agent.message");
    assert!(
        messages.iter().any(|m| m["data"]["role"] == "user"
            && m["data"]["text"]
                .as_str()
                .unwrap()
                .contains("first-prompt-41c9")),
        "{name}: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m["data"]["role"] == "agent"
            && m["data"]["text"]
                .as_str()
                .unwrap()
                .contains("answer-from-the-model-77")),
        "{name}: {messages:?}"
    );
    let screen = screen_text(&mut c, &id);
    assert!(
        screen.contains("answer-from-the-model-77"),
        "{name}: {screen}"
    );

    // Typed into its terminal (an attached view) and Enter: a prompt like any other.
    let from = last_seq(&mut c);
    let terminal = c.ok("orch/agent/get", json!({ "id": id }))["terminalId"].clone();
    c.ok(
        "orch/terminal/write",
        json!({ "id": terminal, "data": "typed-in-a-view-5f1a @reply(typed answer)\r" }),
    );
    wait_states(&mut c, &id, from, &["busy", "idle"]);
    assert_eq!(b.prompts_with("typed-in-a-view-5f1a").len(), 1, "{name}");

    // A tool call: waiting, a decision with the agent's own options, answered from another
    // client; the tool runs and its call is recorded; the agent goes back to idle.
    let from = last_seq(&mut c);
    send(&mut c, &id, "make a file @bash(touch made-by-acp-test)");
    let waiting = wait_states(&mut c, &id, from, &["waiting"]).pop().unwrap();
    assert_eq!(
        waiting["data"]["evidence"], "acp: request_permission",
        "{name}: {waiting}"
    );
    let d = pending_decision(&mut c, &id);
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains("touch made-by-acp-test"),
        "{name}: {d}"
    );
    let allow = allow_once(&d);
    let resolved = other.ok(
        "orch/decision/resolve",
        json!({ "id": d["id"], "choice": allow }),
    );
    assert_eq!(resolved["state"], "resolved");
    let made = b.daemon.workspace.path().join("made-by-acp-test");
    wait_for(&format!("{name} to run the tool"), LONG, || {
        made.exists().then_some(())
    });
    wait_agent_state(&mut c, &id, "idle");
    let calls = events(&mut c, &id, from, "agent.toolCall");
    assert!(
        calls.iter().any(|e| e["data"]["status"] == "completed"),
        "{name}: {calls:?}"
    );
    other.err(
        "orch/decision/resolve",
        json!({ "id": d["id"], "choice": allow }),
        -32003,
    );

    // Interrupted while it asks: the turn is cancelled and its question dismissed, the tool
    // never runs.
    let from = last_seq(&mut c);
    send(
        &mut c,
        &id,
        "another file @bash(touch never-made-by-acp-test)",
    );
    wait_states(&mut c, &id, from, &["waiting"]);
    let d = pending_decision(&mut c, &id);
    c.ok("orch/agent/interrupt", json!({ "id": id }));
    let closed = wait_for(&format!("{name}'s decision to be dismissed"), LONG, || {
        let d = c.ok("orch/decision/list", json!({}))["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == d["id"])
            .cloned()?;
        (d["state"] == "resolved").then_some(d)
    });
    assert_eq!(closed["choice"], "dismissed", "{name}: {closed}");
    let idle = wait_states(&mut c, &id, from, &["waiting", "idle"])
        .pop()
        .unwrap();
    assert_eq!(idle["data"]["evidence"], "acp: cancelled", "{name}: {idle}");
    assert!(!b
        .daemon
        .workspace
        .path()
        .join("never-made-by-acp-test")
        .exists());

    // The gated loop with no one typing: the model completes the task, the gate fails once and
    // its output reaches the model, the model completes it again, the gate passes.
    let task = c.ok(
        "orch/task/create",
        json!({
            "title": "gated",
            "prompt": "task-prompt-9b1e: do the work @bash($ORCH_BIN task complete)",
            "agentId": id,
            "gates": ["check"],
            "maxAttempts": 3,
        }),
    );
    let task_id = task["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        let t = c.ok("orch/task/get", json!({ "id": task_id }));
        if t["state"] == "done" {
            break t;
        }
        assert!(
            !["failed", "escalated", "cancelled"].contains(&t["state"].as_str().unwrap()),
            "{name}: the task ended {t}\nthe agent's screen:\n{}",
            screen_text(&mut c, &id)
        );
        assert!(
            Instant::now() < deadline,
            "{name}: the task is not done after 240 s: {t}\nthe agent's screen:\n{}",
            screen_text(&mut c, &id)
        );
        let pending = c.ok("orch/decision/list", json!({ "state": "pending" }));
        for d in pending["items"].as_array().unwrap() {
            if d["source"]["id"] == json!(id) {
                let _ = other.call(
                    "orch/decision/resolve",
                    json!({ "id": d["id"], "choice": allow_once(d) }),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let results = done["gateResults"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{name}: {done}");
    assert_eq!(results[0]["ok"], false, "{name}: {done}");
    assert_eq!(results[1]["ok"], true, "{name}: {done}");
    assert_eq!(b.prompts_with("task-prompt-9b1e").len(), 1, "{name}");
    assert!(
        !b.prompts_with("gate-failure-7f3a").is_empty(),
        "{name}: the gate's failure never reached the model"
    );

    // The agent's turn ends first: a tool call still under way could run `orch task complete`
    // after the kill below, and that command starts a daemon of its own when none answers (the
    // restart then found the workspace taken: seen once under the full suite).
    wait_for(&format!("{name} to end its turn"), LONG, || {
        let a = c.ok("orch/agent/get", json!({ "id": id }));
        (a["state"] == "idle").then_some(())
    });

    // The daemon dies; the next one finds the agent lost, ends what the old process left and
    // restarts it (its policy is on-failure); the new process continues the session where the
    // agent can.
    drop(c);
    drop(other);
    let old_pid = b.daemon_agent_pid(&id);
    let mut b = b;
    b.daemon.kill9();
    b.daemon.start();
    let mut c = b.daemon.client(Via::Socket);
    let restarted = wait_for(&format!("{name} to be restarted"), LONG, || {
        let a = c.ok("orch/agent/get", json!({ "id": id }));
        (a["state"] == "idle" && a["restarts"].as_u64() >= Some(1)).then_some(a)
    });
    assert_ne!(
        restarted["pid"].as_u64(),
        Some(u64::from(old_pid)),
        "{restarted}"
    );
    wait_for(&format!("{name}'s old process to be gone"), LONG, || {
        // SAFETY: signal 0 only checks existence.
        let alive = unsafe { libc::kill(old_pid as i32, 0) } == 0;
        (!alive || orch_tests::is_zombie(old_pid as i32)).then_some(())
    });
    let sessions = events(&mut c, &id, 0, "agent.acpSession");
    let last = sessions.last().unwrap();
    let origin = last["data"]["origin"].as_str().unwrap();
    match agent {
        // claude-agent-acp loads its sessions from disk in a new process.
        AcpAgent::Claude => {
            assert_eq!(origin, "loaded", "{name}: {sessions:?}");
            assert_eq!(last["data"]["acpSessionId"], session.as_str(), "{name}");
        }
        // Gemini CLI 0.61.0 offers session/load, but it races with its own start-up (see
        // daemon/src/adapters/acp/tests.rs): a new session is as good an answer.
        AcpAgent::Gemini => assert!(
            ["loaded", "resumed", "new"].contains(&origin),
            "{name}: {sessions:?}"
        ),
    }
    send(&mut c, &id, "after-restart-3e8a @reply(still here)");
    wait_for(&format!("{name} to answer after the restart"), LONG, || {
        (!b.prompts_with("after-restart-3e8a").is_empty()).then_some(())
    });
    wait_agent_state(&mut c, &id, "idle");
    if std::env::var_os("ORCH_TEST_VERBOSE").is_some() {
        let all = c.ok(
            "orch/events/query",
            json!({ "subjects": [id], "limit": 1000 }),
        );
        for e in all["items"].as_array().unwrap() {
            eprintln!("{} {} {}", e["seq"], e["kind"], e["data"]);
        }
        eprintln!("{}", screen_text(&mut c, &id));
        let decisions = c.ok("orch/decision/list", json!({ "limit": 1000 }));
        for d in decisions["items"].as_array().unwrap() {
            eprintln!("decision {} {} {}", d["title"], d["options"], d["detail"]);
        }
    }
}

impl Bench {
    /// The pid of agent `id`'s process.
    fn daemon_agent_pid(&self, id: &str) -> u32 {
        let mut c = self.daemon.client(Via::Socket);
        c.ok("orch/agent/get", json!({ "id": id }))["pid"]
            .as_u64()
            .expect("a live agent has a pid") as u32
    }
}

/// An agent that does not speak ACP: it fails with the reason, never leaving the daemon stuck;
/// the daemon goes on serving.
#[test]
fn an_agent_that_is_not_acp_fails_with_the_reason() {
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let a = c.ok(
        "orch/agent/spawn",
        json!({
            "command": ["sh", "-c", "echo this is not JSON-RPC; sleep 1; exit 3"],
            "protocol": "acp",
        }),
    );
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["protocol"], "acp");
    let failed = wait_agent_state(&mut c, &id, "failed");
    let events = state_events(&mut c, &id, 0);
    let last = events.last().unwrap();
    let evidence = last["data"]["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("acp: "), "{evidence}");
    assert!(evidence.contains("exit 3"), "{evidence}");
    assert_eq!(failed["exitCode"], 3, "{failed}");
    // A prompt now is refused, naming the state.
    let err = c.err(
        "orch/agent/send",
        json!({ "id": id, "text": "hello" }),
        -32003,
    );
    assert!(err["message"].as_str().unwrap().contains("failed"), "{err}");
    // A terminal-only option for an ACP agent is refused, naming the field.
    let err = c.err(
        "orch/agent/spawn",
        json!({ "command": ["true"], "protocol": "acp", "backend": "tmux" }),
        -32602,
    );
    assert!(
        err["message"].as_str().unwrap().contains("backend"),
        "{err}"
    );
    let err = c.err(
        "orch/agent/spawn",
        json!({ "command": ["true"], "protocol": "telnet" }),
        -32602,
    );
    assert!(err["message"].as_str().unwrap().contains("telnet"), "{err}");
    c.ok("orch/status", json!({}));
}
