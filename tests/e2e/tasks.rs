//! Tasks, gates, escalation and decisions, with scripted agents in real terminals.

use std::time::Duration;

use orch_tests::{wait_agent, wait_for, wait_task, Daemon, Via, BOTH, WAIT};
use serde_json::{json, Value};

/// A scripted agent: for each prompt line naming a task (or asking for a fix) it appends the
/// line to work.txt and marks its task complete with the orch CLI, as a real agent would.
const CONFIG: &str = r#"
[agents.worker]
command = ["bash", "--norc", "--noprofile", "-c", '''
while IFS= read -r line; do
  case "$line" in
    *TASK*|*"Please fix"*)
      echo "$line" >> work.txt
      echo "working on it"
      "$ORCH_BIN" task complete --summary "edited work.txt" >/dev/null || echo "complete failed"
      ;;
    *) echo "note: $line" ;;
  esac
done
''']
idle_after_ms = 300

[gates.pass]
command = ["true"]
timeout_s = 30

[gates.third-time]
command = ["bash", "-c", "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; if [ $n -lt 3 ]; then echo \"failure number $n\"; exit 1; fi; echo fine"]

[gates.never]
command = ["bash", "-c", "echo always broken; exit 2"]

[gates.hang]
command = ["bash", "-c", "sleep 4242 & sleep 4243; echo unreachable"]
timeout_s = 1

[gates.slow]
command = ["sleep", "30"]

[gates.leaves-a-child]
command = ["bash", "-c", "sleep 4244 & echo passed, leaving a child; exit 0"]
timeout_s = 20
"#;

fn worker(c: &mut orch_tests::Client) -> String {
    let a = c.ok("orch/agent/spawn", json!({ "kind": "worker" }));
    let id = a["id"].as_str().unwrap().to_string();
    wait_agent(c, &id, "the worker to be idle", |a| a["state"] == "idle");
    id
}

fn task(c: &mut orch_tests::Client, agent: &str, gates: &[&str], max_attempts: u32) -> Value {
    c.ok("orch/task/create", json!({ "title": "edit", "prompt": "TASK: edit work.txt", "agentId": agent, "gates": gates, "maxAttempts": max_attempts }))
}

#[test]
fn passing_gate_means_done() {
    let d = Daemon::started(Some(CONFIG));
    for via in BOTH {
        let mut c = d.client(via);
        let agent = worker(&mut c);
        let t = task(&mut c, &agent, &["pass"], 3);
        assert_eq!(t["agentId"], json!(agent));
        let done = wait_task(&mut c, t["id"].as_str().unwrap(), "done");
        assert_eq!(done["attempts"], 1);
        assert_eq!(done["gateResults"].as_array().unwrap().len(), 1);
        assert_eq!(done["gateResults"][0]["ok"], true);
        assert_eq!(done["gateResults"][0]["exitCode"], 0);
        assert_eq!(done["summary"], "edited work.txt", "the agent's own words");
        let work = std::fs::read_to_string(d.root().join("work.txt")).unwrap();
        assert!(work.contains("TASK: edit work.txt"), "{work}");
        let ev = c.ok(
            "orch/events/query",
            json!({ "kinds": ["task.state"], "subjects": [t["id"]] }),
        );
        let path: Vec<&str> = ev["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["state"].as_str().unwrap())
            .collect();
        assert_eq!(path, ["assigned", "running", "verifying", "done"]);
        // The agent is free again.
        let a = c.ok("orch/agent/get", json!({ "id": agent }));
        assert!(a.get("taskId").is_none_or(Value::is_null), "{a}");
        c.ok("orch/agent/stop", json!({ "id": agent, "force": true }));
    }
}

#[test]
fn failing_gate_feeds_back_until_it_passes() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let agent = worker(&mut c);
    let t = task(&mut c, &agent, &["third-time"], 3);
    let done = wait_task(&mut c, t["id"].as_str().unwrap(), "done");
    assert_eq!(done["attempts"], 3);
    let oks: Vec<bool> = done["gateResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(oks, [false, false, true]);
    let attempts: Vec<u64> = done["gateResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(done["gateResults"][0]["outputTail"]
        .as_str()
        .unwrap()
        .contains("failure number 1"));
    // The agent received the failure text as its next prompt.
    let screen = c.ok(
        "orch/agent/screen",
        json!({ "id": agent, "scrollback": 200 }),
    );
    let text: Vec<&str> = screen["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let text = text.join("\n");
    assert!(
        text.contains("note: failure number 1") && text.contains("note: failure number 2"),
        "{text}"
    );
}

#[test]
fn escalation_then_retry_then_cancel() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let agent = worker(&mut c);
    let t = task(&mut c, &agent, &["never"], 2);
    let id = t["id"].as_str().unwrap();
    let esc = wait_task(&mut c, id, "escalated");
    assert_eq!(esc["attempts"], 2);
    let dec_id = esc["decisionId"]
        .as_str()
        .expect("escalation raises a decision")
        .to_string();
    let decs = c.ok("orch/decision/list", json!({ "state": "pending" }));
    let dec = decs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == json!(dec_id))
        .unwrap()
        .clone();
    assert_eq!(
        dec["options"],
        json!(["retry", "reassign", "accept", "cancel"])
    );
    assert_eq!(dec["source"], json!({ "kind": "task", "id": id }));
    assert!(
        dec["detail"].as_str().unwrap().contains("always broken"),
        "{dec}"
    );
    c.ok(
        "orch/decision/resolve",
        json!({ "id": dec_id, "choice": "retry" }),
    );
    // It runs again: one more attempt, then escalated again with a new decision.
    let again = wait_for("a second escalation", Duration::from_secs(60), || {
        let t = c.ok("orch/task/get", json!({ "id": id }));
        (t["state"] == "escalated" && t["decisionId"] != json!(dec_id)).then_some(t)
    });
    assert_eq!(again["attempts"], 3);
    assert_eq!(again["gateResults"].as_array().unwrap().len(), 3);
    c.ok(
        "orch/decision/resolve",
        json!({ "id": again["decisionId"], "choice": "cancel" }),
    );
    let cancelled = wait_task(&mut c, id, "cancelled");
    assert_eq!(cancelled["state"], "cancelled");
    let e = c.err("orch/task/complete", json!({ "id": id }), -32003);
    assert_eq!(e["data"]["state"], "cancelled");
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            });
            if cmd.contains(marker) && !zombie {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn a_hanging_gate_is_killed_at_its_timeout() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "hang", "prompt": "p", "gates": ["hang"], "maxAttempts": 1 }),
    );
    let id = t["id"].as_str().unwrap();
    // A person says the work is done; no agent needed.
    c.ok(
        "orch/task/complete",
        json!({ "id": id, "summary": "by hand" }),
    );
    let esc = wait_task(&mut c, id, "escalated");
    let r = &esc["gateResults"][0];
    assert_eq!(r["ok"], false);
    assert!(r["exitCode"].is_null(), "{r}");
    assert!(
        r["outputTail"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{r}"
    );
    wait_for("no gate process left", WAIT, || {
        (processes_with("sleep 4242").is_empty() && processes_with("sleep 4243").is_empty())
            .then_some(())
    });
}

/// A gate passes when its command exits 0, even if it left a process holding its output open
/// (before, the gate waited for the output to close, timed out and failed); what it left behind
/// is ended with it.
#[test]
fn a_gate_that_leaves_a_process_behind_passes_when_its_command_does() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "bg", "prompt": "p", "gates": ["leaves-a-child"], "maxAttempts": 1 }),
    );
    let id = t["id"].as_str().unwrap();
    c.ok("orch/task/complete", json!({ "id": id }));
    let done = wait_task(&mut c, id, "done");
    let r = &done["gateResults"][0];
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["exitCode"], 0, "{r}");
    assert!(r["durationMs"].as_u64().unwrap() < 10_000, "{r}");
    assert!(
        r["outputTail"]
            .as_str()
            .unwrap()
            .contains("passed, leaving a child"),
        "{r}"
    );
    wait_for("the gate's leftover process ended", WAIT, || {
        processes_with("sleep 4244").is_empty().then_some(())
    });
}

#[test]
fn two_clients_offered_a_decision_first_answer_wins() {
    let d = Daemon::started(Some(CONFIG));
    let caps = json!({ "window": { "showMessage": { "messageActionItem": { "additionalPropertiesSupport": false } } } });
    let mut a = d.raw_client(Via::Socket);
    a.initialize_with(caps.clone());
    let mut b = d.raw_client(Via::Lsp);
    b.initialize_with(caps);
    let t = a.ok(
        "orch/task/create",
        json!({ "title": "x", "prompt": "p", "gates": ["never"], "maxAttempts": 1 }),
    );
    a.ok("orch/task/complete", json!({ "id": t["id"] }));
    let req_a = a.wait_message("a decision prompt", WAIT, |m| {
        m["method"] == "window/showMessageRequest"
    });
    let req_b = b.wait_message("a decision prompt", WAIT, |m| {
        m["method"] == "window/showMessageRequest"
    });
    let titles: Vec<&str> = req_a["params"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["retry", "reassign", "accept", "cancel"]);
    assert_eq!(req_b["params"]["actions"], req_a["params"]["actions"]);
    a.send(&json!({ "jsonrpc": "2.0", "id": req_a["id"], "result": { "title": "accept" } }));
    let done = wait_task(&mut a, t["id"].as_str().unwrap(), "done");
    assert_eq!(done["state"], "done");
    // The second client's answer is stale: ignored.
    b.send(&json!({ "jsonrpc": "2.0", "id": req_b["id"], "result": { "title": "cancel" } }));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        a.ok("orch/task/get", json!({ "id": t["id"] }))["state"],
        "done"
    );
    // Asked directly, the second answer is a conflict naming the state.
    let dec = done["decisionId"].clone();
    let e = b.err(
        "orch/decision/resolve",
        json!({ "id": dec, "choice": "cancel" }),
        -32003,
    );
    assert!(
        e["data"]["state"].as_str().unwrap().starts_with("resolved"),
        "{e}"
    );
    let resolved = b.ok("orch/decision/list", json!({ "state": "resolved" }));
    let d0 = resolved["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == dec)
        .unwrap()
        .clone();
    assert_eq!(d0["choice"], "accept");
}

#[test]
fn progress_is_reported_to_clients_that_support_it() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.raw_client(Via::Socket);
    c.initialize_with(json!({ "window": { "workDoneProgress": true } }));
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "prog", "prompt": "p", "gates": ["pass"] }),
    );
    c.ok("orch/task/complete", json!({ "id": t["id"] }));
    let create = c.wait_message("progress token creation", WAIT, |m| {
        m["method"] == "window/workDoneProgress/create"
    });
    let token = create["params"]["token"].clone();
    c.send(&json!({ "jsonrpc": "2.0", "id": create["id"], "result": null }));
    let mut kinds = Vec::new();
    let mut messages = Vec::new();
    while kinds.last() != Some(&"end".to_string()) {
        let p = c.notification("$/progress", WAIT, |p| p["token"] == token);
        kinds.push(p["value"]["kind"].as_str().unwrap().to_string());
        messages.push(p["value"]["message"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(kinds.first().unwrap(), "begin");
    assert!(
        messages.iter().any(|m| m.contains("gate pass running")),
        "{messages:?}"
    );
    wait_task(&mut c, t["id"].as_str().unwrap(), "done");
}

#[test]
fn restart_mid_task_records_the_interrupted_gate() {
    let mut d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    // A pending decision from an earlier escalation must survive too.
    let old = c.ok(
        "orch/task/create",
        json!({ "title": "old", "prompt": "p", "gates": ["never"], "maxAttempts": 1 }),
    );
    c.ok("orch/task/complete", json!({ "id": old["id"] }));
    let old = wait_task(&mut c, old["id"].as_str().unwrap(), "escalated");
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "slow", "prompt": "p", "gates": ["slow"] }),
    );
    let id = t["id"].as_str().unwrap().to_string();
    c.ok("orch/task/complete", json!({ "id": id }));
    wait_for("the slow gate to start", WAIT, || {
        let ev = c.ok(
            "orch/events/query",
            json!({ "kinds": ["task.gateStarted"], "subjects": [id] }),
        );
        (!ev["items"].as_array().unwrap().is_empty()).then_some(())
    });
    drop(c);
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    let after = c.ok("orch/task/get", json!({ "id": id }));
    assert_eq!(
        after["state"], "verifying",
        "verification restarts: {after}"
    );
    let r = &after["gateResults"][0];
    assert_eq!(
        (r["name"].as_str(), r["ok"].as_bool()),
        (Some("slow"), Some(false))
    );
    assert!(
        r["outputTail"].as_str().unwrap().starts_with("interrupted"),
        "{r}"
    );
    let decs = c.ok("orch/decision/list", json!({ "state": "pending" }));
    assert!(
        decs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == old["decisionId"]),
        "the pending decision is intact"
    );
    c.ok("orch/task/cancel", json!({ "id": id }));
}

#[test]
fn queued_tasks_go_to_idle_agents_by_priority() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let low = c.ok(
        "orch/task/create",
        json!({ "title": "low", "prompt": "TASK low", "priority": "low", "gates": ["pass"] }),
    );
    let urgent = c.ok("orch/task/create", json!({ "title": "urgent", "prompt": "TASK urgent", "priority": "urgent", "gates": ["pass"] }));
    assert_eq!(low["state"], "pending");
    let e = c.err(
        "orch/task/create",
        json!({ "title": "x", "prompt": "p", "priority": "whenever" }),
        -32602,
    );
    assert_eq!(e["data"]["field"], "priority");
    let e = c.err(
        "orch/task/create",
        json!({ "title": "x", "prompt": "p", "gates": ["nope"] }),
        -32602,
    );
    assert_eq!(e["data"]["field"], "gates[0]");
    worker(&mut c);
    wait_task(&mut c, urgent["id"].as_str().unwrap(), "done");
    wait_task(&mut c, low["id"].as_str().unwrap(), "done");
    let work = std::fs::read_to_string(d.root().join("work.txt")).unwrap();
    let (u, l) = (
        work.find("TASK urgent").unwrap(),
        work.find("TASK low").unwrap(),
    );
    assert!(u < l, "urgent first: {work}");
}

#[test]
fn jobs_list_pause_resume() {
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let jobs = c.ok("orch/jobs/list", json!({}));
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dispatch", "health", "retention"]);
    let p = c.ok("orch/jobs/pause", json!({ "name": "retention" }));
    assert_eq!(p["paused"], true);
    let r = c.ok("orch/jobs/resume", json!({ "name": "retention" }));
    assert_eq!(r["paused"], false);
    c.err("orch/jobs/pause", json!({ "name": "nope" }), -32001);
}

#[test]
fn a_failed_gate_with_no_agent_goes_back_to_the_queue() {
    let d = Daemon::started(Some(CONFIG));
    let mut c = d.client(Via::Socket);
    let t = c.ok("orch/task/create", json!({ "title": "nobody", "prompt": "TASK nobody", "gates": ["third-time"], "maxAttempts": 3 }));
    let id = t["id"].as_str().unwrap();
    c.ok("orch/task/complete", json!({ "id": id }));
    let back = wait_task(&mut c, id, "pending");
    assert_eq!(back["attempts"], 1);
    assert!(back.get("agentId").is_none_or(Value::is_null));
    // The next free agent takes it from the queue and finishes it.
    worker(&mut c);
    let done = wait_task(&mut c, id, "done");
    assert_eq!(done["gateResults"].as_array().unwrap().len(), 3);
}

#[test]
fn a_gate_left_running_by_a_killed_daemon_is_ended() {
    let mut d = Daemon::started(Some(&CONFIG.replace(
        "[gates.slow]\ncommand = [\"sleep\", \"30\"]",
        "[gates.slow]\ncommand = [\"sleep\", \"31\"]",
    )));
    let mut c = d.client(Via::Socket);
    let t = c.ok(
        "orch/task/create",
        json!({ "title": "slow", "prompt": "p", "gates": ["slow"] }),
    );
    let id = t["id"].as_str().unwrap().to_string();
    c.ok("orch/task/complete", json!({ "id": id }));
    let started = wait_for("the gate to start", WAIT, || {
        let ev = c.ok(
            "orch/events/query",
            json!({ "kinds": ["task.gateStarted"], "subjects": [id] }),
        );
        ev["items"].as_array().unwrap().first().cloned()
    });
    let pgid = started["data"]["pgid"]
        .as_i64()
        .expect("the gate's process group is recorded");
    drop(c);
    d.kill9();
    assert!(
        std::path::Path::new(&format!("/proc/{pgid}")).exists(),
        "the gate outlived the daemon"
    );
    d.start();
    wait_for("the orphaned gate to be ended", WAIT, || {
        std::fs::read_to_string(format!("/proc/{pgid}/stat"))
            .map_or(true, |s| {
                s.rsplit(')').next().unwrap().trim_start().starts_with('Z')
            })
            .then_some(())
    });
    let mut c = d.client(Via::Socket);
    c.ok("orch/task/cancel", json!({ "id": id }));
}
