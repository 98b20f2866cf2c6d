//! The real agent CLIs (Claude Code, Codex, Gemini CLI, Aider at the versions `.ci/agents.sh`
//! pins) driven by a real daemon, offline, against the project's loopback model server
//! (`orch_tests::real`). What the model does is scripted by directives in the prompts
//! (`@reply(...)`, `@slow(N)`, `@bash(cmd)`, `@run(cmd)`); what reached the model is read from
//! the server's request log.
//!
//! One scenario per agent (and Claude Code once more on tmux), each on its own daemon, in the
//! order a person meets it: a prompt right after the start lands on the first try and the agent
//! goes busy then idle; a multi-line text lands whole; a tool call makes it wait, with a decision
//! whose options are the agent's own words, answered from a second client, and the tool runs; a
//! question answered in the agent's terminal instead dismisses the decision; a task with a gate
//! that fails once feeds the failure back to the model and ends `done`, the model's own tool call
//! running `orch task complete`. With `CI=true` a missing CLI fails the test.

use std::path::Path;
use std::time::{Duration, Instant};

use orch_tests::real::{require, ModelServer, RealAgent};
use orch_tests::{orch_bin, wait_for, Client, Daemon, Via};
use serde_json::{json, Value};

/// Real agents start in seconds and answer in seconds: waits are longer than the harness's.
pub(crate) const LONG: Duration = Duration::from_secs(90);

#[test]
fn claude_code_on_pty() {
    scenario(RealAgent::Claude, "pty");
}

#[test]
fn claude_code_on_tmux() {
    if !orch_tests::require_tool("tmux", &["-V"]) {
        return;
    }
    scenario(RealAgent::Claude, "tmux");
}

#[test]
fn codex_on_pty() {
    scenario(RealAgent::Codex, "pty");
}

#[test]
fn gemini_on_pty() {
    scenario(RealAgent::Gemini, "pty");
}

#[test]
fn aider_on_pty() {
    scenario(RealAgent::Aider, "pty");
}

#[test]
fn claude_code_first_run() {
    first_run(RealAgent::Claude, "Yes, I trust this folder");
}

#[test]
fn codex_first_run() {
    first_run(RealAgent::Codex, "Trust and continue");
}

#[test]
fn gemini_first_run() {
    first_run(RealAgent::Gemini, "Trust folder");
}

#[test]
fn aider_first_run() {
    first_run(RealAgent::Aider, "Yes");
}

/// An agent's first-run question (an untrusted folder; Aider's offer to make a git repository) is
/// a question like any other: waiting, a decision with the agent's own choices; answered, the
/// agent gets to its prompt, and a text sent meanwhile waited for that and lands once.
fn first_run(agent: RealAgent, trust: &str) {
    if require(agent).is_none() {
        return;
    }
    let b = Bench::with(agent, "pty", true);
    let name = agent.name();
    let mut c = b.daemon.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": name }));
    let id = a["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + LONG;
    let waiting = wait_for(
        &format!("{name} to ask its first-run question"),
        LONG,
        || {
            if Instant::now() + Duration::from_secs(1) > deadline {
                eprintln!("{name}'s screen:\n{}", screen_text(&mut c, &id));
            }
            let events = state_events(&mut c, &id, 0);
            match events.iter().find(|e| e["data"]["state"] == "waiting") {
                Some(e) => Some(e.clone()),
                None => {
                    let a = c.ok("orch/agent/get", json!({ "id": id }));
                    assert!(
                        !["exited", "failed"].contains(&a["state"].as_str().unwrap()),
                        "{name} ended: {a}\n{}",
                        screen_text(&mut c, &id)
                    );
                    None
                }
            }
        },
    );
    assert!(
        waiting["data"]["evidence"]
            .as_str()
            .unwrap()
            .starts_with("screen: pattern "),
        "{name}: {waiting}"
    );
    let d = pending_decision(&mut c, &id);
    let first = d["options"][0].as_str().unwrap().to_string();
    assert!(first.starts_with(trust), "{name}: {d}");
    // Sent while the question shows: it must not be typed into the question.
    c.request(
        "orch/agent/send",
        json!({ "id": id, "text": "after-first-run-2c7d @reply(ready)" }),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(b.prompts_with("after-first-run-2c7d").is_empty(), "{name}");
    c.ok(
        "orch/decision/resolve",
        json!({ "id": d["id"], "choice": first }),
    );
    b.prompt_reached_the_model_once(&mut c, &id, "after-first-run-2c7d");
    wait_agent_state(&mut c, &id, "idle");
}

/// A daemon for one real agent: its kind is the built-in one of the same name with the argv and
/// environment `prepare` gives, on `backend`.
struct Bench {
    daemon: Daemon,
    server: ModelServer,
    agent: RealAgent,
    /// The tmux server name, when on tmux (killed at the end).
    tmux: Option<String>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(name) = &self.tmux {
            let _ = std::process::Command::new("tmux")
                .args(["-L", name, "kill-server"])
                .status();
        }
    }
}

impl Bench {
    fn new(agent: RealAgent, backend: &str) -> Self {
        Self::with(agent, backend, false)
    }

    /// With `first_run`, the agent starts at its first-run question.
    fn with(agent: RealAgent, backend: &str, first_run: bool) -> Self {
        let server = ModelServer::start();
        let mut daemon = Daemon::new(None);
        let home = daemon.state_dir.path().join("agent-home");
        std::fs::create_dir_all(&home).unwrap();
        let mut setup = if first_run {
            agent.prepare_first_run(&home, daemon.workspace.path(), &server)
        } else {
            agent.prepare(&home, daemon.workspace.path(), &server)
        };
        // The model's tool calls run `orch ...` inside the agent, as they would on a machine with
        // orch installed.
        let bin_dir = orch_bin().parent().unwrap().to_path_buf();
        let path = std::env::var("PATH").unwrap_or_default();
        setup
            .env
            .push(("PATH".into(), format!("{}:{path}", bin_dir.display())));
        let tmux = (backend == "tmux").then(|| format!("orch-real-{}", std::process::id()));
        let mut toml = setup.orch_toml(agent.name());
        toml.push_str(&format!("backend = \"{backend}\"\n"));
        if let Some(name) = &tmux {
            toml.push_str(&format!("\n[tmux]\nsocket_name = \"{name}\"\n"));
        }
        // Fails once, saying so with a directive the model server acts on, then passes: the
        // failure must reach the model, whose answer completes the task again.
        toml.push_str(
            r#"
[gates.check]
command = ["bash", "-c", "if [ -e .gate-passed-once ]; then echo all good; exit 0; fi; touch .gate-passed-once; echo 'gate-failure-7f3a: please retry @bash($ORCH_BIN task complete)'; exit 1"]
timeout_s = 60
"#,
        );
        std::fs::write(daemon.workspace.path().join("orch.toml"), toml).unwrap();
        daemon.start();
        Bench {
            daemon,
            server,
            agent,
            tmux,
        }
    }

    fn workspace(&self) -> &Path {
        self.daemon.workspace.path()
    }

    /// Requests that carried a prompt the agent submitted (not its side requests: titles,
    /// routing) whose last user text contains `marker`.
    fn prompts_with(&self, marker: &str) -> Vec<Value> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r["side"] != true)
            .filter(|r| r["last_user_text"].as_str().unwrap_or("").contains(marker))
            .collect()
    }

    /// Wait until the model got exactly one prompt with `marker` (and give a stray second one a
    /// moment to show up).
    /// On a timeout, the failure shows agent `id`'s record and screen.
    fn prompt_reached_the_model_once(&self, c: &mut Client, id: &str, marker: &str) -> Value {
        let waited =
            self.server
                .try_wait_request(&format!("a prompt with {marker:?}"), LONG, |r| {
                    r["side"] != true && r["last_user_text"].as_str().unwrap_or("").contains(marker)
                });
        if let Err(e) = waited {
            let agent = c.call("orch/agent/get", json!({ "id": id }));
            panic!(
                "{}: {e}\nthe agent: {agent:?}\nits screen:\n{}",
                self.agent.name(),
                screen_text(c, id)
            );
        }
        std::thread::sleep(Duration::from_millis(1500));
        let got = self.prompts_with(marker);
        assert_eq!(
            got.len(),
            1,
            "{}: the prompt {marker:?} reached the model {} times",
            self.agent.name(),
            got.len()
        );
        got[0].clone()
    }
}

fn scenario(agent: RealAgent, backend: &str) {
    if require(agent).is_none() {
        return;
    }
    let b = Bench::new(agent, backend);
    let name = agent.name();
    let mut c = b.daemon.client(Via::Socket);
    let mut other = b.daemon.client(Via::Lsp);

    // Spawned and, at once, given a prompt: it waits until the agent takes input, then lands on
    // the first try; the agent works (busy) and finishes (idle).
    let a = c.ok("orch/agent/spawn", json!({ "kind": name }));
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["backend"], backend, "{a}");
    let first_seq = last_seq(&mut c);
    send(&mut c, &id, "first-prompt-41c9 @slow(4)");
    b.prompt_reached_the_model_once(&mut c, &id, "first-prompt-41c9");
    let states = wait_states(&mut c, &id, first_seq, &["busy", "idle"]);
    if agent == RealAgent::Claude {
        // Claude Code's hooks say what it does: the evidence names them.
        for e in &states {
            let evidence = e["data"]["evidence"].as_str().unwrap();
            if ["busy", "idle"].contains(&e["data"]["state"].as_str().unwrap()) {
                assert!(evidence.starts_with("hook: "), "{name}: {e}");
            }
        }
        // An idle Claude Code redraws; that is not work.
        let quiet_from = last_seq(&mut c);
        std::thread::sleep(Duration::from_secs(10));
        let changes = state_events(&mut c, &id, quiet_from);
        assert!(
            changes.is_empty(),
            "{name}: 10 s of idle Claude Code changed its state: {changes:?}"
        );
    }

    // A multi-line text lands whole, once.
    send(
        &mut c,
        &id,
        "multi-line-5d2e first line\nsecond line of it @reply(got both)",
    );
    let req = b.prompt_reached_the_model_once(&mut c, &id, "multi-line-5d2e");
    let text = req["last_user_text"].as_str().unwrap();
    assert!(text.contains("second line of it"), "{name}: {text:?}");
    wait_agent_state(&mut c, &id, "idle");

    // A tool call: waiting, with the agent's own choices; answered from another client; the tool
    // runs; the agent goes back to idle.
    let from = last_seq(&mut c);
    send(&mut c, &id, "make a file @bash(touch made-by-orch-test)");
    let waiting = wait_states(&mut c, &id, from, &["waiting"]).pop().unwrap();
    let evidence = waiting["data"]["evidence"].as_str().unwrap();
    if agent == RealAgent::Claude {
        assert_eq!(
            evidence, "hook: PermissionRequest Bash",
            "{name}: {waiting}"
        );
    } else {
        assert!(
            evidence.starts_with("screen: pattern "),
            "{name}: {waiting}"
        );
    }
    let d = pending_decision(&mut c, &id);
    let options: Vec<&str> = d["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let allow = *options.first().expect("options");
    let (allow_word, no_key) = match agent {
        RealAgent::Claude => ("Yes", "3"),
        RealAgent::Codex => ("Yes, proceed", "\u{1b}"),
        RealAgent::Gemini => ("Allow once", "\u{1b}"),
        RealAgent::Aider => ("Yes", "n\r"),
    };
    assert_eq!(allow, allow_word, "{name}: options {options:?}");
    assert!(
        options.iter().any(|o| o.starts_with("No")),
        "{name}: options {options:?}"
    );
    let resolved = other.ok(
        "orch/decision/resolve",
        json!({ "id": d["id"], "choice": allow }),
    );
    assert_eq!(resolved["state"], "resolved");
    let made = b.workspace().join("made-by-orch-test");
    wait_for(&format!("{name} to run the tool"), LONG, || {
        made.exists().then_some(())
    });
    wait_agent_state(&mut c, &id, "idle");
    other.err(
        "orch/decision/resolve",
        json!({ "id": d["id"], "choice": allow }),
        -32003,
    );

    // The same question answered in the agent's own terminal: the decision is dismissed, and
    // nothing is typed twice.
    let from = last_seq(&mut c);
    send(
        &mut c,
        &id,
        "another file @bash(touch never-made-by-orch-test)",
    );
    wait_states(&mut c, &id, from, &["waiting"]);
    let d = pending_decision(&mut c, &id);
    let terminal = c.ok("orch/agent/get", json!({ "id": id }))["terminalId"].clone();
    c.ok(
        "orch/terminal/write",
        json!({ "id": terminal, "data": no_key }),
    );
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
    assert!(
        closed["reason"].as_str().unwrap().contains("terminal"),
        "{name}: {closed}"
    );
    assert!(!b.workspace().join("never-made-by-orch-test").exists());
    wait_agent_state(&mut c, &id, "idle");

    // The whole loop with no one typing: the model's tool call completes the task, the gate
    // fails once and its output reaches the model as the next prompt, the model completes it
    // again, the gate passes. Questions on the way are answered by a client.
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
        // An editor answering whatever the agent asks on the way.
        let pending = c.ok("orch/decision/list", json!({ "state": "pending" }));
        for d in pending["items"].as_array().unwrap() {
            if d["source"]["id"] == json!(id) {
                let choice = d["options"][0].clone();
                let _ = other.call(
                    "orch/decision/resolve",
                    json!({ "id": d["id"], "choice": choice }),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let results = done["gateResults"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{name}: {done}");
    assert_eq!(results[0]["ok"], false, "{name}: {done}");
    assert_eq!(results[1]["ok"], true, "{name}: {done}");
    assert_eq!(done["attempts"], 2, "{name}: {done}");
    // The task's prompt reached the model once, and so did the failed gate's output.
    assert_eq!(b.prompts_with("task-prompt-9b1e").len(), 1, "{name}");
    assert!(
        !b.prompts_with("gate-failure-7f3a").is_empty(),
        "{name}: the gate's failure never reached the model"
    );
}

/// `orch/agent/send`, answered once the text was typed.
pub(crate) fn send(c: &mut Client, agent: &str, text: &str) {
    if let Err(e) = c.call_within(
        "orch/agent/send",
        json!({ "id": agent, "text": text }),
        LONG,
    ) {
        let screen = screen_text(c, agent);
        panic!("sending {text:?} to {agent} failed: {e}\nits screen:\n{screen}");
    }
}

/// The agent's screen with some history, blank lines left out, for failure messages.
pub(crate) fn screen_text(c: &mut Client, agent: &str) -> String {
    c.call(
        "orch/agent/screen",
        json!({ "id": agent, "scrollback": 100 }),
    )
    .map(|s| {
        s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// The daemon's last seq.
pub(crate) fn last_seq(c: &mut Client) -> u64 {
    c.ok("orch/status", json!({}))["lastSeq"].as_u64().unwrap()
}

/// `agent.state` events of `agent` after `since`.
pub(crate) fn state_events(c: &mut Client, agent: &str, since: u64) -> Vec<Value> {
    c.ok(
        "orch/events/query",
        json!({ "since": since, "kinds": ["agent.state"], "subjects": [agent], "limit": 1000 }),
    )["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Wait until the agent's states after `since` include `want` in that order; the events up to
/// the last one wanted.
pub(crate) fn wait_states(c: &mut Client, agent: &str, since: u64, want: &[&str]) -> Vec<Value> {
    wait_for(&format!("{agent} to go through {want:?}"), LONG, || {
        let events = state_events(c, agent, since);
        let mut i = 0;
        for (n, e) in events.iter().enumerate() {
            if e["data"]["state"] == want[i] {
                i += 1;
                if i == want.len() {
                    return Some(events[..=n].to_vec());
                }
            }
        }
        None
    })
}

pub(crate) fn wait_agent_state(c: &mut Client, agent: &str, state: &str) -> Value {
    wait_for(&format!("{agent} to be {state}"), LONG, || {
        let a = c.ok("orch/agent/get", json!({ "id": agent }));
        (a["state"] == state).then_some(a)
    })
}

pub(crate) fn pending_decision(c: &mut Client, agent: &str) -> Value {
    wait_for(&format!("a pending decision of {agent}"), LONG, || {
        c.ok("orch/decision/list", json!({ "state": "pending" }))["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["source"]["id"] == json!(agent))
            .cloned()
    })
}
