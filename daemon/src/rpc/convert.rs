//! Domain records to wire objects. The only place that decides what a client sees of a record
//! (an agent's environment values, for one, never leave the daemon).

use editor_protocol::objects as wire;
use serde_json::Value;

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
        created_at: t.created_at.clone(),
        updated_at: t.updated_at.clone(),
    }
}

/// A decision.
pub fn decision(d: &DecisionRecord) -> wire::Decision {
    let source = match &d.source {
        DecisionSource::Agent { id, .. } => wire::DecisionSource {
            kind: "agent".into(),
            id: Some(id.clone()),
        },
        DecisionSource::Task { id } => wire::DecisionSource {
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
    let data = match &e.body {
        B::AgentSpawned { agent: a } => serde_json::json!({ "agent": to_value(agent(a)) }),
        B::TaskCreated { task: t } => serde_json::json!({ "task": to_value(task(t)) }),
        B::DecisionRequested { decision: d } => {
            serde_json::json!({ "decision": to_value(decision(d)) })
        }
        B::SessionCreated { session: s } => {
            serde_json::json!({ "session": to_value(session(s, &State::default())) })
        }
        B::TerminalOpened { terminal: t } => {
            serde_json::json!({ "terminal": to_value(terminal(t, None)) })
        }
        other => {
            let mut v = serde_json::to_value(other).expect("events serialize");
            v.get_mut("data").map(Value::take).unwrap_or(Value::Null)
        }
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
