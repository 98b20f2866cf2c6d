//! Agents in their own git worktrees, with real git and scripted agents in real ptys: two agents
//! editing the same file without touching each other or the workspace; the diff of exactly an
//! agent's changes (modified, added, deleted, untracked); a squash merge landing one commit; a
//! conflicting merge leaving the workspace untouched and naming the file; discarding unmerged
//! work only after a decision or with force; pause and resume; a failing setup command failing the
//! spawn; a done task landing by itself; a daemon killed mid-work keeping the worktree.

use orch_tests::{wait_agent, wait_for, wait_task, Client, Daemon, Via, WAIT};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// `git args...` in `dir`; its stdout, trimmed. Fails the test when git fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A daemon whose workspace is a git repository on `main` with a.txt, b.txt and c.txt
/// committed, and `orch_toml` (committed too, so the workspace is clean).
fn repo_daemon(orch_toml: &str) -> Daemon {
    let mut d = Daemon::new(Some(orch_toml));
    let ws = d.workspace.path();
    git(ws, &["init", "-q", "-b", "main"]);
    for (f, text) in [
        ("a.txt", "one\ntwo\nthree\n"),
        ("b.txt", "bee\n"),
        ("c.txt", "sea\n"),
    ] {
        std::fs::write(ws.join(f), text).unwrap();
    }
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-q", "-m", "start"]);
    d.start();
    d
}

/// An agent in a worktree whose shell runs `script`, then waits.
fn spawn_in_worktree(c: &mut Client, name: &str, worktree: Value, script: &str) -> Value {
    c.ok(
        "orch/agent/spawn",
        json!({
            "name": name,
            "command": ["bash", "--norc", "--noprofile", "-c", format!("{script}\nexec sleep 600")],
            "worktree": worktree,
        }),
    )
}

fn worktree_path(a: &Value) -> std::path::PathBuf {
    std::path::PathBuf::from(a["worktree"]["path"].as_str().expect("a worktree path"))
}

/// Stop an agent and wait for it to end.
fn stop(c: &mut Client, id: &str) {
    c.ok("orch/agent/stop", json!({ "id": id }));
}

fn events(c: &mut Client, kind: &str, subject: &str) -> Vec<Value> {
    c.ok(
        "orch/events/query",
        json!({ "kinds": [kind], "subjects": [subject], "limit": 1000 }),
    )["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn two_agents_in_worktrees_then_review_merge_conflict_and_discard() {
    let d = repo_daemon("");
    let ws = d.workspace.path().to_path_buf();
    let mut c = d.client(Via::Socket);
    let mut other = d.client(Via::Lsp);
    let head = git(&ws, &["rev-parse", "HEAD"]);

    // Two agents edit the same file at once, each in its own checkout.
    let a = spawn_in_worktree(
        &mut c,
        "alpha",
        json!(true),
        "echo from-alpha >> a.txt; echo new > d.txt; rm c.txt; touch .alpha-done",
    );
    let b = spawn_in_worktree(
        &mut c,
        "beta",
        json!({ "branch": "feature/beta" }),
        "echo from-beta >> a.txt; touch .beta-done",
    );
    let (wa, wb) = (worktree_path(&a), worktree_path(&b));
    assert_eq!(a["worktree"]["branch"], "orch/alpha", "{a}");
    assert_eq!(a["worktree"]["base"], "main", "{a}");
    assert_eq!(b["worktree"]["branch"], "feature/beta", "{b}");
    assert_eq!(a["cwd"], json!(wa.to_string_lossy()), "{a}");
    assert_ne!(wa, wb);
    for w in [&wa, &wb] {
        assert!(
            !w.starts_with(&ws),
            "{} is inside the workspace",
            w.display()
        );
    }
    wait_for("both agents to work", WAIT, || {
        (wa.join(".alpha-done").exists() && wb.join(".beta-done").exists()).then_some(())
    });
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&wa.join("a.txt")), "one\ntwo\nthree\nfrom-alpha\n");
    assert_eq!(read(&wb.join("a.txt")), "one\ntwo\nthree\nfrom-beta\n");
    assert_eq!(
        read(&ws.join("a.txt")),
        "one\ntwo\nthree\n",
        "the workspace was touched"
    );
    assert!(ws.join("c.txt").exists());
    assert_eq!(
        events(&mut c, "worktree.created", a["id"].as_str().unwrap()).len(),
        1
    );

    // The diff is exactly alpha's work: modified, added (untracked), deleted.
    let diff = other.ok("orch/agent/diff", json!({ "id": "alpha" }));
    let mut files: Vec<(String, String, u64, u64)> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["path"].as_str().unwrap().starts_with('.'))
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
                f["additions"].as_u64().unwrap(),
                f["deletions"].as_u64().unwrap(),
            )
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ("a.txt".to_string(), "modified".to_string(), 1, 0),
            ("c.txt".to_string(), "deleted".to_string(), 0, 1),
            ("d.txt".to_string(), "added".to_string(), 1, 0),
        ],
        "{diff}"
    );
    assert_eq!(diff["branch"], "orch/alpha");
    assert_eq!(diff["mergeBase"], head.as_str());
    let patch = diff["diff"].as_str().unwrap();
    assert!(patch.contains("+from-alpha"), "{patch}");
    assert!(patch.contains("-sea"), "{patch}");
    assert_eq!(diff["truncated"], false);

    // Squash: one new commit on main with alpha's work (its uncommitted files committed first).
    stop(&mut c, "alpha");
    let merged = other.ok(
        "orch/agent/merge",
        json!({ "id": "alpha", "strategy": "squash", "message": "alpha's work" }),
    );
    let new_head = git(&ws, &["rev-parse", "HEAD"]);
    assert_eq!(merged["commit"], new_head.as_str(), "{merged}");
    assert_eq!(
        git(&ws, &["rev-list", "--count", &format!("{head}..HEAD")]),
        "1"
    );
    assert_eq!(git(&ws, &["log", "-1", "--format=%s"]), "alpha's work");
    assert_eq!(read(&ws.join("a.txt")), "one\ntwo\nthree\nfrom-alpha\n");
    assert!(ws.join("d.txt").exists() && !ws.join("c.txt").exists());
    let landed = events(&mut c, "worktree.merged", a["id"].as_str().unwrap());
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0]["data"]["strategy"], "squash");

    // beta's edit of the same line now conflicts: refused, the workspace exactly as it was.
    stop(&mut c, "beta");
    let status_before = git(&ws, &["status", "--porcelain"]);
    let err = other.err("orch/agent/merge", json!({ "id": "beta" }), -32003);
    assert_eq!(err["data"]["files"], json!(["a.txt"]), "{err}");
    assert!(err["message"].as_str().unwrap().contains("a.txt"), "{err}");
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), new_head);
    assert_eq!(git(&ws, &["status", "--porcelain"]), status_before);
    assert_eq!(read(&ws.join("a.txt")), "one\ntwo\nthree\nfrom-alpha\n");

    // beta's work was never merged: discarding it asks first.
    let err = c.err("orch/agent/discard", json!({ "id": "beta" }), -32003);
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("never merged"), "{err}");
    let decision = c.ok("orch/decision/list", json!({ "state": "pending" }))["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source"]["id"] == b["id"])
        .cloned()
        .expect("a decision about beta's work");
    assert!(message.contains(decision["id"].as_str().unwrap()), "{err}");
    assert_eq!(decision["options"], json!(["discard", "keep"]));
    assert!(wb.exists(), "nothing is removed before the decision");
    other.ok(
        "orch/decision/resolve",
        json!({ "id": decision["id"], "choice": "discard" }),
    );
    wait_for("beta's worktree to go", WAIT, || {
        (!wb.exists()).then_some(())
    });
    wait_agent(&mut c, "beta", "beta without a worktree", |a| {
        a["worktree"].is_null()
    });
    assert_eq!(git(&ws, &["branch", "--list", "feature/beta"]), "");

    // alpha's work landed: discarding it needs no question.
    c.ok("orch/agent/discard", json!({ "id": "alpha" }));
    assert!(!wa.exists());
    assert_eq!(git(&ws, &["branch", "--list", "orch/alpha"]), "");
    let removed = events(&mut c, "worktree.removed", a["id"].as_str().unwrap());
    assert_eq!(removed[0]["data"]["branchKept"], false);
}

#[test]
fn force_discard_pause_and_resume() {
    let d = repo_daemon("");
    let ws = d.workspace.path().to_path_buf();
    let mut c = d.client(Via::Socket);

    // A live agent's worktree cannot be discarded or paused.
    let g = spawn_in_worktree(
        &mut c,
        "gamma",
        json!(true),
        "echo kept > notes.txt; touch .done",
    );
    let wg = worktree_path(&g);
    wait_for("gamma to work", WAIT, || {
        wg.join(".done").exists().then_some(())
    });
    let err = c.err("orch/agent/pause", json!({ "id": "gamma" }), -32003);
    assert!(
        err["message"].as_str().unwrap().contains("stop it first"),
        "{err}"
    );
    c.err(
        "orch/agent/discard",
        json!({ "id": "gamma", "force": true }),
        -32003,
    );

    // Paused: the checkout goes, what the agent left is committed on its branch.
    stop(&mut c, "gamma");
    let paused = c.ok("orch/agent/pause", json!({ "id": "gamma" }));
    assert_eq!(paused["worktree"]["paused"], true, "{paused}");
    assert!(!wg.exists());
    assert_eq!(
        git(&ws, &["show", "orch/gamma:notes.txt"]),
        "kept",
        "the paused work is on the branch"
    );
    let err = c.err("orch/agent/restart", json!({ "id": "gamma" }), -32003);
    assert!(err["message"].as_str().unwrap().contains("paused"), "{err}");

    // Resumed: checked out again, the agent runs there with its work.
    let resumed = c.ok("orch/agent/resume", json!({ "id": "gamma" }));
    assert_eq!(resumed["worktree"]["paused"], false, "{resumed}");
    assert!(wg.join("notes.txt").exists());
    wait_agent(&mut c, "gamma", "gamma running again", |a| {
        ["running", "busy", "idle"].contains(&a["state"].as_str().unwrap())
    });

    // Forced: unmerged work goes without a question.
    stop(&mut c, "gamma");
    c.ok(
        "orch/agent/discard",
        json!({ "id": "gamma", "force": true }),
    );
    assert!(!wg.exists());
    assert_eq!(git(&ws, &["branch", "--list", "orch/gamma"]), "");
    let pending = c.ok("orch/decision/list", json!({ "state": "pending" }));
    assert_eq!(pending["items"], json!([]), "{pending}");
}

#[test]
fn spawn_errors_name_what_is_wrong() {
    // A setup command that fails fails the spawn with its output, and leaves nothing behind.
    let d = repo_daemon(
        r#"
[worktrees]
copy = [".env"]
setup = [["bash", "-c", "test -f .env && echo setup-broke-42; exit 3"]]
"#,
    );
    let ws = d.workspace.path().to_path_buf();
    std::fs::write(ws.join(".env"), "SECRET=1\n").unwrap();
    let mut c = d.client(Via::Socket);
    let err = c.err(
        "orch/agent/spawn",
        json!({ "name": "delta", "command": ["true"], "worktree": true }),
        -32603,
    );
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("setup-broke-42"), "{err}");
    assert!(message.contains("exit"), "{err}");
    assert_eq!(git(&ws, &["branch", "--list", "orch/delta"]), "");
    let agents = c.ok("orch/agent/list", json!({}));
    assert_eq!(agents["items"], json!([]), "{agents}");
    // The name is free again.
    let err = c.err(
        "orch/agent/spawn",
        json!({ "name": "delta", "command": ["true"], "worktree": { "branch": "../up" } }),
        -32602,
    );
    assert_eq!(err["data"]["field"], "worktree", "{err}");
    let err = c.err(
        "orch/agent/spawn",
        json!({ "command": ["true"], "worktree": { "base": "no-such-branch" } }),
        -32602,
    );
    assert_eq!(err["data"]["field"], "base", "{err}");

    // Outside a git repository: a clear error naming worktree.
    let plain = Daemon::started(None);
    let mut c = plain.client(Via::Socket);
    let err = c.err(
        "orch/agent/spawn",
        json!({ "command": ["true"], "worktree": true }),
        -32602,
    );
    assert_eq!(err["data"]["field"], "worktree", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("not a git repository"),
        "{err}"
    );
    c.err("orch/agent/diff", json!({ "id": "nobody" }), -32001);
}

/// A scripted agent: each prompt line is a shell command it runs; `orch task complete` is one.
const WORKER: &str = r#"
[agents.worker]
command = ["bash", "--norc", "--noprofile", "-c", 'while IFS= read -r line; do eval "$line"; echo ran; done']
idle_after_ms = 300
worktree = true
restart = "on-failure"

[gates.has-result]
command = ["test", "-f", "result.txt"]
timeout_s = 30
"#;

#[test]
fn a_done_task_lands_by_itself_and_a_killed_daemon_keeps_the_worktree() {
    let mut d = repo_daemon(WORKER);
    let ws = d.workspace.path().to_path_buf();
    let mut c = d.client(Via::Socket);
    let a = c.ok("orch/agent/spawn", json!({ "kind": "worker" }));
    let id = a["id"].as_str().unwrap().to_string();
    let w = worktree_path(&a);
    wait_agent(&mut c, &id, "the worker to be idle", |a| {
        a["state"] == "idle"
    });

    // The gate runs in the worktree; once it passes the task's work lands on main.
    let t = c.ok(
        "orch/task/create",
        json!({
            "title": "result",
            "prompt": "echo 42 > result.txt; \"$ORCH_BIN\" task complete >/dev/null",
            "agentId": id,
            "gates": ["has-result"],
            "merge": "squash",
        }),
    );
    assert_eq!(t["merge"], "squash");
    wait_task(&mut c, t["id"].as_str().unwrap(), "done");
    let landed = wait_for("the task's work to land", WAIT, || {
        let e = events(&mut c, "worktree.merged", &id);
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(landed[0]["data"]["strategy"], "squash");
    assert_eq!(
        landed[0]["data"]["commit"],
        git(&ws, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("result.txt")).unwrap(),
        "42\n"
    );
    assert_eq!(
        git(&ws, &["log", "--format=%H", "--", "result.txt"])
            .lines()
            .count(),
        1,
        "one commit on main brought result.txt"
    );
    assert_eq!(
        git(&ws, &["status", "--porcelain"]),
        "",
        "main is clean after the landing"
    );
    // After its turn, its change count is known.
    let changed = wait_for("a worktree.changed event", WAIT, || {
        let e = events(&mut c, "worktree.changed", &id);
        (!e.is_empty()).then_some(e)
    });
    assert!(changed.last().unwrap()["data"]["files"].is_u64());
    // A merge strategy for an agent without a worktree is refused, naming the field.
    let plain = c.ok(
        "orch/agent/spawn",
        json!({ "command": ["sleep", "600"], "worktree": false }),
    );
    let err = c.err(
        "orch/task/create",
        json!({ "title": "x", "prompt": "x", "agentId": plain["id"], "merge": "squash" }),
        -32602,
    );
    assert_eq!(err["data"]["field"], "merge", "{err}");

    // Work in progress, then the daemon dies: the next one keeps the worktree and the agent's
    // association, and restarts the agent in it.
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "echo unsaved > wip.txt" }),
    );
    wait_for("the agent to write", WAIT, || {
        w.join("wip.txt").exists().then_some(())
    });
    drop(c);
    d.kill9();
    d.start();
    let mut c = d.client(Via::Socket);
    let back = wait_agent(&mut c, &id, "the worker restarted", |a| {
        a["state"] == "idle" && a["restarts"].as_u64() >= Some(1)
    });
    assert_eq!(
        back["worktree"]["path"],
        json!(w.to_string_lossy()),
        "{back}"
    );
    assert_eq!(back["cwd"], json!(w.to_string_lossy()), "{back}");
    assert!(w.join("wip.txt").exists(), "the work in progress survived");
    c.ok(
        "orch/agent/send",
        json!({ "id": id, "text": "pwd > where.txt" }),
    );
    let wrote = wait_for("the restarted agent to work in its worktree", WAIT, || {
        std::fs::read_to_string(w.join("where.txt"))
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    assert_eq!(wrote.trim(), w.canonicalize().unwrap().to_string_lossy());
}

/// Three candidates, each writing its own answer in its own worktree; a person picks the second.
const CANDIDATE: &str = r#"
[agents.candidate]
command = ["bash", "--norc", "--noprofile", "-c", 'while IFS= read -r line; do echo "answer from $ORCH_AGENT_NAME" > answer.txt; "$ORCH_BIN" task complete >/dev/null; echo done; done']
idle_after_ms = 300
worktree = true

[gates.answered]
command = ["test", "-s", "answer.txt"]
timeout_s = 30
"#;

#[test]
fn best_of_three_lands_the_one_a_person_picks() {
    let d = repo_daemon(CANDIDATE);
    let ws = d.workspace.path().to_path_buf();
    let mut c = d.client(Via::Socket);
    let mut other = d.client(Via::Lsp);
    // Errors first: too few agents, an unknown one.
    let err = c.err(
        "orch/task/create",
        json!({ "title": "t", "prompt": "p", "agents": ["candidate"] }),
        -32602,
    );
    assert_eq!(err["data"]["field"], "agents", "{err}");
    let err = c.err(
        "orch/task/create",
        json!({ "title": "t", "prompt": "p", "agents": ["candidate", "no-such-thing"] }),
        -32602,
    );
    assert_eq!(err["data"]["field"], "agents[1]", "{err}");
    assert_eq!(c.ok("orch/agent/list", json!({}))["items"], json!([]));

    let group = c.ok(
        "orch/task/create",
        json!({
            "title": "answer",
            "prompt": "write your answer",
            "agents": ["candidate", "candidate", "candidate"],
            "gates": ["answered"],
            "merge": "squash",
        }),
    );
    let candidates = group["candidates"].as_array().unwrap().clone();
    assert_eq!(candidates.len(), 3, "{group}");
    let gid = group["id"].as_str().unwrap().to_string();
    // Every candidate runs in its own worktree, and passes its gate there.
    let mut agents = Vec::new();
    for k in &candidates {
        let t = wait_task(&mut c, k.as_str().unwrap(), "done");
        assert_eq!(t["group"], gid.as_str(), "{t}");
        let a = c.ok("orch/agent/get", json!({ "id": t["agentId"] }));
        assert!(a["worktree"]["path"].is_string(), "{a}");
        agents.push(a);
    }
    // A person picks the second.
    let decision = wait_for("the best-of decision", WAIT, || {
        c.ok("orch/decision/list", json!({ "state": "pending" }))["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["source"]["id"] == gid.as_str())
            .cloned()
    });
    let names: Vec<String> = agents
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<Value> = names.iter().map(|n| json!(n)).collect();
    expected.push(json!("none"));
    assert_eq!(decision["options"], json!(expected), "{decision}");
    let detail = decision["detail"].as_str().unwrap();
    assert!(detail.contains("answered passed"), "{detail}");
    other.ok(
        "orch/decision/resolve",
        json!({ "id": decision["id"], "choice": names[1] }),
    );
    wait_task(&mut c, &gid, "done");
    let merged = wait_for("the chosen work to land", WAIT, || {
        let e = events(&mut c, "worktree.merged", agents[1]["id"].as_str().unwrap());
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(merged[0]["data"]["strategy"], "squash");
    assert_eq!(
        std::fs::read_to_string(ws.join("answer.txt")).unwrap(),
        format!("answer from {}\n", names[1])
    );
    // The others are stopped and their worktrees removed.
    for i in [0, 2] {
        let id = agents[i]["id"].as_str().unwrap();
        let a = wait_agent(&mut c, id, "a candidate not chosen to be retired", |a| {
            a["state"] == "stopped" && a["worktree"].is_null()
        });
        assert!(
            !Path::new(agents[i]["worktree"]["path"].as_str().unwrap()).exists(),
            "{a}"
        );
    }
    let chosen = c.ok("orch/agent/get", json!({ "id": agents[1]["id"] }));
    assert!(
        chosen["worktree"].is_object(),
        "the chosen one keeps its worktree: {chosen}"
    );
}
