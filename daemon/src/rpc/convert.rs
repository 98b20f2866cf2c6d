//! Domain records to wire objects. The only place that decides what a client sees of a record
//! (an agent's environment values, for one, never leave the daemon).

use editor_protocol::objects as wire;
use serde_json::{json, Value};

use crate::core::agent::{AgentRecord, TerminalRecord};
use crate::core::event::StoredEvent;
use crate::core::hooks::HookEvent;
use crate::core::state::State;
use crate::core::task::{DecisionRecord, DecisionSource, GateRun, SessionRecord, TaskRecord};
use crate::ports::ScreenSnapshot;
use crate::runtime::OpError;

/// An agent.
pub fn agent(a: &AgentRecord) -> wire::Agent {
    wire::Agent {
        id: a.id.clone(),
        name: a.name.clone(),
        kind: a.kind.clone(),
        command: a.command.clone(),
        cwd: a.cwd.clone(),
        session_id: a.session_id.clone(),
        terminal_id: a.terminal_id.clone(),
        backend: a.backend.clone(),
        host: a.host.clone(),
        protocol: a.watch.protocol.as_str().into(),
        acp_session_id: a.acp_session.clone(),
        worktree: a.worktree.as_ref().map(|w| wire::WorktreeInfo {
            path: w.path.clone(),
            branch: w.branch.clone(),
            base: w.base.clone(),
            changes: w.changes,
            paused: w.paused,
        }),
        state: a.state.as_str().into(),
        exit_code: a.exit_code,
        pid: a.pid,
        task_id: a.task_id.clone(),
        restarts: a.restarts,
        created_at: a.created_at.clone(),
        updated_at: a.updated_at.clone(),
    }
}

/// A terminal, with the title from its live screen if known.
pub fn terminal(t: &TerminalRecord, title: Option<String>) -> wire::Terminal {
    wire::Terminal {
        id: t.id.clone(),
        backend: t.backend.clone(),
        command: t.command.clone(),
        cwd: t.cwd.clone(),
        cols: t.cols,
        rows: t.rows,
        pid: t.pid,
        alive: t.alive,
        exit_code: t.exit_code,
        title,
        handle: t.handle.clone(),
    }
}

/// A session, with its agents.
pub fn session(s: &SessionRecord, state: &State) -> wire::Session {
    wire::Session {
        id: s.id.clone(),
        name: s.name.clone(),
        state: if s.closed { "closed" } else { "active" }.into(),
        agent_ids: state
            .agents
            .values()
            .filter(|a| a.session_id == s.id)
            .map(|a| a.id.clone())
            .collect(),
        created_at: s.created_at.clone(),
        closed_at: s.closed_at.clone(),
    }
}

fn gate_result(r: &GateRun) -> wire::GateResult {
    wire::GateResult {
        name: r.name.clone(),
        attempt: r.attempt,
        ok: r.ok,
        exit_code: r.exit_code,
        duration_ms: r.duration_ms,
        output_tail: r.output_tail.clone(),
    }
}

/// A task.
pub fn task(t: &TaskRecord) -> wire::Task {
    wire::Task {
        id: t.id.clone(),
        title: t.title.clone(),
        prompt: t.prompt.clone(),
        priority: t.priority.as_str().into(),
        agent_id: t.agent_id.clone(),
        state: t.state.as_str().into(),
        attempts: t.attempts,
        max_attempts: t.max_attempts,
        gates: t
            .gates
            .iter()
            .map(|g| wire::Gate {
                name: g.name.clone(),
                command: g.command.clone(),
                timeout_s: g.timeout_s,
            })
            .collect(),
        gate_results: t.gate_results.iter().map(gate_result).collect(),
        decision_id: t.decision_id.clone(),
        summary: t.summary.clone(),
        merge: t.merge.clone(),
        candidates: t.candidates.clone(),
        group: t.group.clone(),
        created_at: t.created_at.clone(),
        updated_at: t.updated_at.clone(),
    }
}

/// A decision.
pub fn decision(d: &DecisionRecord) -> wire::Decision {
    let source = match &d.source {
        DecisionSource::Agent { id, .. }
        | DecisionSource::Permission { id, .. }
        | DecisionSource::Discard { id } => wire::DecisionSource {
            kind: "agent".into(),
            id: Some(id.clone()),
        },
        DecisionSource::Task { id } | DecisionSource::BestOf { task: id } => wire::DecisionSource {
            kind: "task".into(),
            id: Some(id.clone()),
        },
        DecisionSource::User => wire::DecisionSource {
            kind: "user".into(),
            id: None,
        },
    };
    wire::Decision {
        id: d.id.clone(),
        title: d.title.clone(),
        detail: d.detail.clone(),
        options: d.options.clone(),
        state: if d.resolved { "resolved" } else { "pending" }.into(),
        choice: d.choice.clone(),
        reason: d.reason.clone(),
        source,
        created_at: d.created_at.clone(),
        resolved_at: d.resolved_at.clone(),
    }
}

/// A screen.
pub fn screen(s: ScreenSnapshot) -> wire::Screen {
    wire::Screen {
        lines: s.lines,
        cursor: wire::Cursor {
            row: s.cursor_row,
            col: s.cursor_col,
        },
        cols: s.cols,
        rows: s.rows,
        title: s.title,
        ansi: Some(s.ansi),
    }
}

/// An event: records embedded in its data are shown as their wire objects.
pub fn event(e: &StoredEvent) -> wire::Event {
    use crate::core::event::EventBody as B;
    // Every kind spelled out: the wire form is the protocol's, not a serialization of the
    // domain's types (a new kind does not compile until it has one).
    let data = match &e.body {
        B::DaemonStarted {
            pid,
            version,
            workspace,
        } => json!({ "pid": pid, "version": version, "workspace": workspace }),
        B::DaemonStopping { pid } => json!({ "pid": pid }),
        B::SessionCreated { session: s } => {
            json!({ "session": to_value(session(s, &State::default())) })
        }
        B::SessionClosed { id, at } => json!({ "id": id, "at": at }),
        B::TerminalOpened { terminal: t } => json!({ "terminal": to_value(terminal(t, None)) }),
        B::TerminalExited { id, exit_code } => json!({ "id": id, "exitCode": exit_code }),
        B::TerminalClosed { id } => json!({ "id": id }),
        B::TerminalResized { id, cols, rows } => json!({ "id": id, "cols": cols, "rows": rows }),
        B::AgentSpawned { agent: a } => json!({ "agent": to_value(agent(a)) }),
        B::AgentStateChanged {
            id,
            state,
            previous,
            evidence,
            exit_code,
        } => {
            let mut v = json!({
                "id": id,
                "state": state.as_str(),
                "previous": previous.as_str(),
                "evidence": evidence,
            });
            if let Some(code) = exit_code {
                v["exitCode"] = json!(code);
            }
            v
        }
        B::AgentExited { id, exit_code } => json!({ "id": id, "exitCode": exit_code }),
        B::AgentRestarting {
            id,
            attempt,
            delay_ms,
            reason,
        } => json!({ "id": id, "attempt": attempt, "delayMs": delay_ms, "reason": reason }),
        B::AgentRestarted {
            id,
            terminal_id,
            pid,
            restarts,
        } => json!({ "id": id, "terminalId": terminal_id, "pid": pid, "restarts": restarts }),
        B::AgentGaveUp { id, restarts } => json!({ "id": id, "restarts": restarts }),
        B::AgentAdopted { id, pid } => json!({ "id": id, "pid": pid }),
        B::AgentAcpSession {
            id,
            acp_session_id,
            origin,
        } => json!({ "id": id, "acpSessionId": acp_session_id, "origin": origin }),
        B::AgentMessage { id, role, text } => json!({ "id": id, "role": role, "text": text }),
        B::AgentToolCall {
            id,
            tool_call_id,
            title,
            tool_kind,
            status,
        } => json!({
            "id": id,
            "toolCallId": tool_call_id,
            "title": title,
            "kind": tool_kind,
            "status": status,
        }),
        B::WorktreeCreated { id, worktree: w } => json!({
            "id": id,
            "path": w.path,
            "branch": w.branch,
            "base": w.base,
            "baseCommit": w.base_commit,
        }),
        B::WorktreeChanged { id, files } => json!({ "id": id, "files": files }),
        B::WorktreeMerged {
            id,
            strategy,
            commit,
            files,
        } => json!({ "id": id, "strategy": strategy, "commit": commit, "files": files }),
        B::WorktreeRemoved { id, branch_kept } => json!({ "id": id, "branchKept": branch_kept }),
        B::AgentPlan { id, entries } => json!({
            "id": id,
            "entries": entries
                .iter()
                .map(|e| json!({ "content": e.content, "priority": e.priority, "status": e.status }))
                .collect::<Vec<_>>(),
        }),
        B::TaskCreated { task: t } => json!({ "task": to_value(task(t)) }),
        B::TaskAssigned { id, agent_id } => json!({ "id": id, "agentId": agent_id }),
        B::TaskStateChanged {
            id,
            state,
            previous,
            evidence,
        } => json!({
            "id": id,
            "state": state.as_str(),
            "previous": previous.as_str(),
            "evidence": evidence,
        }),
        B::TaskAttempt { id, attempt } => json!({ "id": id, "attempt": attempt }),
        B::TaskCompleted { id, summary } => json!({ "id": id, "summary": summary }),
        B::TaskGateStarted {
            id,
            name,
            attempt,
            pgid,
        } => {
            let mut v = json!({ "id": id, "name": name, "attempt": attempt });
            if let Some(pgid) = pgid {
                v["pgid"] = json!(pgid);
            }
            v
        }
        B::TaskGate { id, result } => json!({ "id": id, "result": to_value(gate_result(result)) }),
        B::DecisionRequested { decision: d } => json!({ "decision": to_value(decision(d)) }),
        B::DecisionResolved {
            id,
            choice,
            reason,
            at,
        } => json!({ "id": id, "choice": choice, "reason": reason, "at": at }),
        B::ConfigReloaded { path } => json!({ "path": path }),
        B::HostState {
            name,
            state,
            detail,
        } => json!({ "name": name, "state": state, "detail": detail }),
        B::JobFailed { name, error } => json!({ "name": name, "error": error }),
    };
    wire::Event {
        seq: e.seq,
        time: e.time.clone(),
        kind: e.body.kind().into(),
        subject: e.body.subject().into(),
        data,
    }
}

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("wire objects serialize")
}

/// Read a hook's JSON (Claude Code's or Codex's) into what orch acts on. Strings are bounded: a
/// tool's input can be a whole file.
pub fn hook_event(v: &Value) -> Result<HookEvent, OpError> {
    const MAX: usize = 2000;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(|s| bounded(s, MAX));
    let Some(name) = text("hook_event_name") else {
        return Err(OpError::invalid(
            "event.hook_event_name",
            "missing: the hook's JSON names its event in hook_event_name",
        ));
    };
    let tool_input = v.get("tool_input").map(|i| {
        // The words a person recognises: the command, the file, else the input as JSON.
        let words = ["command", "file_path", "path", "url", "pattern"]
            .iter()
            .find_map(|k| i.get(k).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| i.to_string());
        bounded(&words, MAX)
    });
    Ok(HookEvent {
        name,
        tool: text("tool_name"),
        tool_input,
        reason: text("source").or_else(|| text("reason")),
        notification_type: text("notification_type"),
    })
}

/// At most `max` bytes of `s`, cut at a character boundary, marked when cut.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    /// Every event kind as clients see it in `orch/event` and `orch/events/query`: the wire
    /// form, pinned (PROTOCOL.md fixes it; an agent's environment never shows).
    #[test]
    fn every_event_kind_on_the_wire() {
        let lines: Vec<String> = crate::core::event::samples()
            .iter()
            .map(|e| serde_json::to_string(&super::event(e)).unwrap())
            .collect();
        expect_test::expect![[r#"
            {"seq":1,"time":"2026-11-28T00:00:00.000Z","kind":"daemon.started","subject":"daemon","data":{"pid":1,"version":"0.1.0","workspace":"/w"}}
            {"seq":2,"time":"2026-11-28T00:00:00.000Z","kind":"daemon.stopping","subject":"daemon","data":{"pid":1}}
            {"seq":3,"time":"2026-11-28T00:00:00.000Z","kind":"session.created","subject":"s-1","data":{"session":{"agentIds":[],"createdAt":"2026-11-28T00:00:00.000Z","id":"s-1","name":"default","state":"active"}}}
            {"seq":4,"time":"2026-11-28T00:00:00.000Z","kind":"session.closed","subject":"s-6","data":{"at":"2026-11-28T00:00:01.000Z","id":"s-6"}}
            {"seq":5,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.opened","subject":"t-3","data":{"terminal":{"alive":true,"backend":"tmux","cols":120,"command":["claude"],"cwd":"/w","handle":"%7","id":"t-3","pid":42,"rows":40}}}
            {"seq":6,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.exited","subject":"t-3","data":{"exitCode":0,"id":"t-3"}}
            {"seq":7,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.closed","subject":"t-3","data":{"id":"t-3"}}
            {"seq":8,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.resized","subject":"t-3","data":{"cols":100,"id":"t-3","rows":30}}
            {"seq":9,"time":"2026-11-28T00:00:00.000Z","kind":"agent.spawned","subject":"a-2","data":{"agent":{"backend":"pty","command":["claude"],"createdAt":"2026-11-28T00:00:00.000Z","cwd":"/w","host":"buildhost","id":"a-2","kind":"claude","name":"claude-1","pid":42,"protocol":"pty","restarts":0,"sessionId":"s-1","state":"starting","terminalId":"t-3","updatedAt":"2026-11-28T00:00:00.000Z"}}}
            {"seq":10,"time":"2026-11-28T00:00:00.000Z","kind":"agent.state","subject":"a-2","data":{"evidence":"hook: PermissionRequest Bash","id":"a-2","previous":"busy","state":"waiting"}}
            {"seq":11,"time":"2026-11-28T00:00:00.000Z","kind":"agent.state","subject":"a-2","data":{"evidence":"exit 2","exitCode":2,"id":"a-2","previous":"busy","state":"failed"}}
            {"seq":12,"time":"2026-11-28T00:00:00.000Z","kind":"agent.exited","subject":"a-2","data":{"exitCode":null,"id":"a-2"}}
            {"seq":13,"time":"2026-11-28T00:00:00.000Z","kind":"agent.restarting","subject":"a-2","data":{"attempt":1,"delayMs":500,"id":"a-2","reason":"exit 2"}}
            {"seq":14,"time":"2026-11-28T00:00:00.000Z","kind":"agent.restarted","subject":"a-2","data":{"id":"a-2","pid":43,"restarts":1,"terminalId":"t-8"}}
            {"seq":15,"time":"2026-11-28T00:00:00.000Z","kind":"agent.gaveUp","subject":"a-2","data":{"id":"a-2","restarts":5}}
            {"seq":16,"time":"2026-11-28T00:00:00.000Z","kind":"agent.adopted","subject":"a-2","data":{"id":"a-2","pid":null}}
            {"seq":17,"time":"2026-11-28T00:00:00.000Z","kind":"task.created","subject":"k-4","data":{"task":{"agentId":"a-2","attempts":0,"createdAt":"2026-11-28T00:00:00.000Z","gateResults":[{"attempt":2,"durationMs":5230,"exitCode":101,"name":"test","ok":false,"outputTail":"1 failed"}],"gates":[{"command":["cargo","test"],"name":"test","timeoutS":900}],"id":"k-4","maxAttempts":3,"priority":"high","prompt":"make it pass","state":"pending","title":"fix","updatedAt":"2026-11-28T00:00:00.000Z"}}}
            {"seq":18,"time":"2026-11-28T00:00:00.000Z","kind":"task.assigned","subject":"k-4","data":{"agentId":null,"id":"k-4"}}
            {"seq":19,"time":"2026-11-28T00:00:00.000Z","kind":"task.state","subject":"k-4","data":{"evidence":"prompt typed into claude-1 (attempt 1)","id":"k-4","previous":"assigned","state":"running"}}
            {"seq":20,"time":"2026-11-28T00:00:00.000Z","kind":"task.attempt","subject":"k-4","data":{"attempt":1,"id":"k-4"}}
            {"seq":21,"time":"2026-11-28T00:00:00.000Z","kind":"task.completed","subject":"k-4","data":{"id":"k-4","summary":"done"}}
            {"seq":22,"time":"2026-11-28T00:00:00.000Z","kind":"task.gateStarted","subject":"k-4","data":{"attempt":1,"id":"k-4","name":"test","pgid":77}}
            {"seq":23,"time":"2026-11-28T00:00:00.000Z","kind":"task.gateStarted","subject":"k-4","data":{"attempt":1,"id":"k-4","name":"test"}}
            {"seq":24,"time":"2026-11-28T00:00:00.000Z","kind":"task.gate","subject":"k-4","data":{"id":"k-4","result":{"attempt":2,"durationMs":5230,"exitCode":101,"name":"test","ok":false,"outputTail":"1 failed"}}}
            {"seq":25,"time":"2026-11-28T00:00:00.000Z","kind":"decision.requested","subject":"d-5","data":{"decision":{"createdAt":"2026-11-28T00:00:00.000Z","detail":"Do you want to proceed?","id":"d-5","options":["Yes","No"],"source":{"id":"a-2","kind":"agent"},"state":"pending","title":"claude-1 is waiting for an answer"}}}
            {"seq":26,"time":"2026-11-28T00:00:00.000Z","kind":"decision.resolved","subject":"d-5","data":{"at":"2026-11-28T00:00:02.000Z","choice":"Yes","id":"d-5","reason":null}}
            {"seq":27,"time":"2026-11-28T00:00:00.000Z","kind":"config.reloaded","subject":"config","data":{"path":"/w/orch.toml"}}
            {"seq":28,"time":"2026-11-28T00:00:00.000Z","kind":"host.state","subject":"buildhost","data":{"detail":"the connection ended","name":"buildhost","state":"unreachable"}}
            {"seq":29,"time":"2026-11-28T00:00:00.000Z","kind":"job.failed","subject":"retention","data":{"error":"disk full","name":"retention"}}
            {"seq":30,"time":"2026-11-28T00:00:00.000Z","kind":"agent.spawned","subject":"a-9","data":{"agent":{"acpSessionId":"sess-1","backend":"acp","command":["gemini","--acp"],"createdAt":"2026-11-28T00:00:00.000Z","cwd":"/w","host":"buildhost","id":"a-9","kind":"gemini-acp","name":"gemini-acp-1","pid":42,"protocol":"acp","restarts":0,"sessionId":"s-1","state":"starting","terminalId":"t-10","updatedAt":"2026-11-28T00:00:00.000Z"}}}
            {"seq":31,"time":"2026-11-28T00:00:00.000Z","kind":"agent.acpSession","subject":"a-9","data":{"acpSessionId":"sess-1","id":"a-9","origin":"loaded"}}
            {"seq":32,"time":"2026-11-28T00:00:00.000Z","kind":"agent.message","subject":"a-9","data":{"id":"a-9","role":"agent","text":"Done: all tests pass."}}
            {"seq":33,"time":"2026-11-28T00:00:00.000Z","kind":"agent.toolCall","subject":"a-9","data":{"id":"a-9","kind":"execute","status":"pending","title":"touch x","toolCallId":"call-1"}}
            {"seq":34,"time":"2026-11-28T00:00:00.000Z","kind":"agent.plan","subject":"a-9","data":{"entries":[{"content":"write the test","priority":"high","status":"in_progress"}],"id":"a-9"}}
            {"seq":35,"time":"2026-11-28T00:00:00.000Z","kind":"decision.requested","subject":"d-11","data":{"decision":{"createdAt":"2026-11-28T00:00:00.000Z","detail":"touch x","id":"d-11","options":["Allow","Reject"],"source":{"id":"a-9","kind":"agent"},"state":"pending","title":"gemini-acp-1 asks permission"}}}
            {"seq":36,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.created","subject":"a-9","data":{"base":"main","baseCommit":"0123abcd","branch":"orch/gemini-acp-1","id":"a-9","path":"/state/worktrees/gemini-acp-1"}}
            {"seq":37,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.changed","subject":"a-9","data":{"files":3,"id":"a-9"}}
            {"seq":38,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.merged","subject":"a-9","data":{"commit":"89abcdef","files":["src/lib.rs"],"id":"a-9","strategy":"squash"}}
            {"seq":39,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.removed","subject":"a-9","data":{"branchKept":true,"id":"a-9"}}
            {"seq":40,"time":"2026-11-28T00:00:00.000Z","kind":"decision.requested","subject":"d-12","data":{"decision":{"createdAt":"2026-11-28T00:00:00.000Z","detail":"2 commit(s) not in its base","id":"d-12","options":["discard","keep"],"source":{"id":"a-9","kind":"agent"},"state":"pending","title":"Discard gemini-acp-1's unmerged work on orch/gemini-acp-1?"}}}
            {"seq":41,"time":"2026-11-28T00:00:00.000Z","kind":"task.created","subject":"k-13","data":{"task":{"agentId":"a-9","attempts":0,"createdAt":"2026-11-28T00:00:00.000Z","gateResults":[{"attempt":2,"durationMs":5230,"exitCode":101,"name":"test","ok":false,"outputTail":"1 failed"}],"gates":[{"command":["cargo","test"],"name":"test","timeoutS":900}],"id":"k-13","maxAttempts":3,"merge":"squash","priority":"high","prompt":"make it pass","state":"pending","title":"fix","updatedAt":"2026-11-28T00:00:00.000Z"}}}"#]].assert_eq(&lines.join("\n"));
    }
}
