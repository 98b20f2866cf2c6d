//! The `orch` CLI as people and scripts use it: tables, `--json`, exit codes, auto-start, attach,
//! and the worktree commands (`diff`, `merge`, `discard`, `pause`, `resume`) against real git.

use std::path::Path;

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

/// `git args...` in `dir`; its stdout, trimmed. Fails the test when git fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
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

/// A daemon (not started: the first command starts it) whose workspace is a git repository on
/// `main` with `a.txt` and `c.txt` and the configuration committed.
fn repo_workspace() -> Daemon {
    let d = Daemon::new(Some(CONFIG));
    let ws = d.root();
    git(ws, &["init", "-q", "-b", "main"]);
    std::fs::write(ws.join("a.txt"), "one\ntwo\n").unwrap();
    std::fs::write(ws.join("c.txt"), "gone\n").unwrap();
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-q", "-m", "start"]);
    d
}

/// The rows of `orch diff --stat` output: (status, path, +, -).
fn stat_rows(out: &str) -> Vec<(String, String, String, String)> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|w| w.len() == 4)
        .map(|w| (w[0].clone(), w[1].clone(), w[2].clone(), w[3].clone()))
        .collect()
}

/// A row of `orch agent list` naming `name`.
fn agent_row(d: &Daemon, name: &str) -> (String, String) {
    let (code, out, err) = d.run(&["agent", "list"]);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("{name} is not listed: {out}"))
        .to_string();
    (out.lines().next().unwrap_or("").to_string(), row)
}

#[test]
fn worktree_agent_reviewed_squashed_and_discarded_from_the_cli() {
    let d = repo_workspace();
    let ws = d.root().to_path_buf();
    let start = git(&ws, &["rev-parse", "HEAD"]);
    let (code, out, err) = d.run(&[
        "agent",
        "spawn",
        "--worktree",
        "--name",
        "w1",
        "--",
        "bash",
        "--norc",
        "--noprofile",
        "-c",
        "echo changed >> a.txt; echo new > b.txt; rm c.txt; exec sleep 600",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap().contains(" BRANCH "), "{out}");
    assert!(out.contains("orch/w1 ("), "{out}");

    // --stat: exactly the three files, with their statuses and line counts.
    let stat = wait_for(
        "the agent's three changes in orch diff --stat",
        WAIT,
        || {
            let (code, out, err) = d.run(&["diff", "w1", "--stat"]);
            assert_eq!(code, 0, "{err}");
            (stat_rows(&out).len() == 3).then_some(out)
        },
    );
    let row = |st: &str, p: &str, a: &str, dl: &str| (st.into(), p.into(), a.into(), dl.into());
    assert_eq!(
        stat_rows(&stat),
        [
            row("modified", "a.txt", "1", "0"),
            row("added", "b.txt", "1", "0"),
            row("deleted", "c.txt", "0", "1"),
        ],
        "{stat}"
    );
    assert!(stat.starts_with("STATUS"), "{stat}");
    let summary = stat.lines().last().unwrap();
    assert_eq!(
        summary,
        format!(
            "3 files changed, +2 -1 (orch/w1 against main at {})",
            &start[..12]
        )
    );

    // The unified diff, as git writes it (blob ids depend only on the contents).
    let (code, out, err) = d.run(&["diff", "w1"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out,
        concat!(
            "diff --git a/a.txt b/a.txt\n",
            "index 814f4a4..a3648dc 100644\n",
            "--- a/a.txt\n",
            "+++ b/a.txt\n",
            "@@ -1,2 +1,3 @@\n",
            " one\n",
            " two\n",
            "+changed\n",
            "diff --git a/b.txt b/b.txt\n",
            "new file mode 100644\n",
            "index 0000000..3e75765\n",
            "--- /dev/null\n",
            "+++ b/b.txt\n",
            "@@ -0,0 +1 @@\n",
            "+new\n",
            "diff --git a/c.txt b/c.txt\n",
            "deleted file mode 100644\n",
            "index 286c5f5..0000000\n",
            "--- a/c.txt\n",
            "+++ /dev/null\n",
            "@@ -1 +0,0 @@\n",
            "-gone\n",
        )
    );
    let (_, out, _) = d.run(&["--json", "diff", "w1"]);
    let diff: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["mergeBase"], start.as_str(), "{diff}");
    assert_eq!(diff["truncated"], false);
    let path = std::path::PathBuf::from(diff["path"].as_str().unwrap());
    assert!(path.join("b.txt").exists(), "{diff}");

    // The list shows the branch and, once the agent is quiet, its change count.
    wait_for(
        "orch agent list to show w1's branch and 3 changes",
        WAIT,
        || {
            let (header, row) = agent_row(&d, "w1");
            (header.contains("BRANCH") && row.contains("orch/w1 (3)")).then_some(())
        },
    );

    // Discard refuses a live agent, then asks about unmerged work.
    let (code, _, err) = d.run(&["discard", "w1"]);
    assert_eq!(code, 1);
    assert!(err.contains("stop it first"), "{err}");
    let (code, _, err) = d.run(&["agent", "stop", "w1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.run(&["discard", "w1"]);
    assert_eq!(code, 1);
    let (_, out, _) = d.run(&["--json", "decision", "list", "--state", "pending"]);
    let pending: Value = serde_json::from_str(&out).unwrap();
    let decision = pending[0]["id"].as_str().expect("a pending decision");
    assert!(
        err.contains(decision),
        "the message names {decision}: {err}"
    );
    assert!(err.contains("orch discard w1 --force"), "{err}");
    assert!(path.exists(), "nothing was removed");

    // Squash: one commit on main with the agent's work.
    let (code, out, err) = d.run(&["merge", "w1", "--squash", "-m", "w1 lands"]);
    assert_eq!(code, 0, "{err}");
    let head = git(&ws, &["rev-parse", "HEAD"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("merged orch/w1 into main (squash): {head}")
    );
    assert_eq!(lines.collect::<Vec<_>>(), ["  a.txt", "  b.txt", "  c.txt"]);
    assert_eq!(
        git(&ws, &["log", "--format=%s", &format!("{start}..main")]),
        "w1 lands"
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).unwrap(),
        "one\ntwo\nchanged\n"
    );
    assert!(ws.join("b.txt").exists() && !ws.join("c.txt").exists());

    // Landed work is discarded without a question: worktree and branch go.
    let (code, out, err) = d.run(&["discard", "w1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "discarded the worktree and branch of w1\n");
    assert!(!path.exists());
    assert_eq!(git(&ws, &["branch", "--list", "orch/w1"]), "");
    let (header, _) = agent_row(&d, "w1");
    assert!(
        !header.contains("BRANCH"),
        "no agent has a worktree: {header}"
    );
}

#[test]
fn merge_conflict_pause_and_resume_from_the_cli() {
    let d = repo_workspace();
    let ws = d.root().to_path_buf();
    let (code, _, err) = d.run(&[
        "agent",
        "spawn",
        "--worktree",
        "--branch",
        "feat/x",
        "--name",
        "w2",
        "--",
        "bash",
        "--norc",
        "--noprofile",
        "-c",
        "echo agent-line > a.txt; exec sleep 600",
    ]);
    assert_eq!(code, 0, "{err}");
    wait_for("the agent's edit in orch diff --stat", WAIT, || {
        let (_, out, _) = d.run(&["diff", "w2", "--stat"]);
        (stat_rows(&out) == [("modified".into(), "a.txt".into(), "1".into(), "2".into())])
            .then_some(())
    });
    // The person changes the same lines on main meanwhile.
    std::fs::write(ws.join("a.txt"), "main-line\n").unwrap();
    git(&ws, &["commit", "-q", "-am", "on main"]);
    let head = git(&ws, &["rev-parse", "HEAD"]);
    let (code, _, err) = d.run(&["agent", "stop", "w2"]);
    assert_eq!(code, 0, "{err}");

    // A conflict names the files, exits non-zero, and leaves the workspace as it was.
    let (code, out, err) = d.run(&["merge", "w2"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("files in conflict:\n  a.txt\n"), "{err}");
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");

    // Pause: the checkout goes, the branch stays (and is still reviewed).
    let (_, out, _) = d.run(&["--json", "agent", "get", "w2"]);
    let path = std::path::PathBuf::from(
        serde_json::from_str::<Value>(&out).unwrap()["worktree"]["path"]
            .as_str()
            .unwrap(),
    );
    let (code, out, err) = d.run(&["pause", "w2"]);
    assert_eq!(code, 0, "{err}");
    // (The change count is the one last counted: the agent was stopped before it went quiet.)
    assert!(
        out.contains("feat/x (") && out.contains(", paused)"),
        "{out}"
    );
    assert!(!path.exists());
    assert_eq!(git(&ws, &["branch", "--list", "feat/x"]), "feat/x");
    let (code, out, err) = d.run(&["diff", "w2", "--stat"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stat_rows(&out).len(), 1, "{out}");
    let (code, _, err) = d.run(&["agent", "get", "w2"]);
    assert_eq!(code, 0, "{err}");

    // Resume: checked out again where it was, and running there.
    let (code, out, err) = d.run(&["resume", "w2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("feat/x (") && !out.contains("paused"), "{out}");
    assert_eq!(
        std::fs::read_to_string(path.join("a.txt")).unwrap(),
        "agent-line\n"
    );
    let (_, out, _) = d.run(&["agent", "get", "w2"]);
    assert!(
        out.contains(&format!("  worktree {}", path.display())),
        "{out}"
    );
    assert!(!out.contains(" stopped "), "{out}");

    // Forced, unmerged work goes without a question.
    d.run(&["agent", "stop", "w2"]);
    let (code, _, err) = d.run(&["discard", "w2", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(!path.exists());
    assert_eq!(git(&ws, &["branch", "--list", "feat/x"]), "");
}
