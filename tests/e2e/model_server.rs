//! The scripted model server (`tests/model-server/server.py`) over plain HTTP: each API it speaks,
//! each directive, its request log and its robustness; and what `real::RealAgent::prepare`
//! writes. No agent CLI runs here except in the last tests, which start each installed CLI once
//! in an isolated tmux server and check that a prompt reaches the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use orch_tests::real::{require, ModelServer, RealAgent};
use orch_tests::{require_tool, wait_for, IsolatedTmux, WAIT};
use serde_json::{json, Value};

/// A response read to the end (the server closes every connection after one response).
struct Response {
    status: u16,
    headers: String,
    body: String,
    /// When each SSE event (a block ending in a blank line) arrived, from the request's start.
    arrivals: Vec<Duration>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }

    /// The SSE events: `(event name, data)`; comment lines are left out.
    fn events(&self) -> Vec<(Option<String>, String)> {
        assert_eq!(
            self.header("content-type"),
            Some("text/event-stream"),
            "{}",
            self.headers
        );
        self.body
            .split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .filter_map(|block| {
                let mut event = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = Some(e.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(d.to_string());
                    }
                }
                data.map(|d| (event, d))
            })
            .collect()
    }

    /// The data of every SSE event, as JSON (`[DONE]` left out).
    fn data(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(_, d)| d != "[DONE]")
            .map(|(_, d)| {
                serde_json::from_str(&d)
                    .unwrap_or_else(|e| panic!("an SSE data line is not JSON ({e}): {d}"))
            })
            .collect()
    }
}

fn request(server: &ModelServer, method: &str, path: &str, body: Option<&[u8]>) -> Response {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).expect("connect to the server");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read the response");
        if n == 0 {
            break;
        }
        let before = count_blank_lines(&raw);
        raw.extend_from_slice(&buf[..n]);
        for _ in before..count_blank_lines(&raw) {
            arrivals.push(start.elapsed());
        }
    }
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (headers, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {headers:?}"));
    // The first blank line ends the headers, not an event.
    let arrivals = arrivals.into_iter().skip(1).collect();
    Response {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
        arrivals,
    }
}

fn count_blank_lines(raw: &[u8]) -> usize {
    raw.windows(2).filter(|w| w == b"\n\n").count()
        + raw.windows(4).filter(|w| w == b"\r\n\r\n").count()
}

fn post(server: &ModelServer, path: &str, body: Value) -> Response {
    request(
        server,
        "POST",
        path,
        Some(serde_json::to_string(&body).unwrap().as_bytes()),
    )
}

/// The request the server logged for `path`, the last one if several.
fn logged(server: &ModelServer, path: &str) -> Value {
    server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r["path"] == json!(path))
        .unwrap_or_else(|| panic!("no request to {path} in the log: {:?}", server.requests()))
}

// --- Anthropic Messages (Claude Code) ---

const MESSAGES: &str = "/v1/messages?beta=true";

fn bash_tool() -> Value {
    json!({ "name": "Bash", "description": "Run a command",
            "input_schema": { "type": "object", "properties": {
                "command": { "type": "string" }, "description": { "type": "string" } },
                "required": ["command"] } })
}

fn user(text: &str) -> Value {
    json!({ "role": "user", "content": [{ "type": "text", "text": text }] })
}

/// The text an Anthropic stream carries, and its stop reason.
fn anthropic_text(r: &Response) -> (String, String) {
    let events = r.events();
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let mut text = String::new();
    let mut stop = String::new();
    for d in r.data() {
        match d["type"].as_str().unwrap() {
            "content_block_delta" if d["delta"]["type"] == "text_delta" => {
                text.push_str(d["delta"]["text"].as_str().unwrap())
            }
            "message_delta" => stop = d["delta"]["stop_reason"].as_str().unwrap().to_string(),
            _ => {}
        }
    }
    (text, stop)
}

/// The tool calls of an Anthropic stream: `(name, input)`.
fn anthropic_tool_uses(r: &Response) -> Vec<(String, Value)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in r.data() {
        match d["type"].as_str().unwrap() {
            "content_block_start" if d["content_block"]["type"] == "tool_use" => out.push((
                d["content_block"]["name"].as_str().unwrap().to_string(),
                String::new(),
            )),
            "content_block_delta" if d["delta"]["type"] == "input_json_delta" => out
                .last_mut()
                .expect("input before its tool_use block")
                .1
                .push_str(d["delta"]["partial_json"].as_str().unwrap()),
            _ => {}
        }
    }
    out.into_iter()
        .map(|(n, j)| (n, serde_json::from_str(&j).expect("tool input is JSON")))
        .collect()
}

#[test]
fn anthropic_without_a_directive_streams_ok_and_the_prompt() {
    let s = ModelServer::start();
    let r = post(
        &s,
        MESSAGES,
        json!({ "model": "claude-x", "stream": true, "messages": [user("hello there,\n  world")] }),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        anthropic_text(&r),
        ("OK: hello there, world".into(), "end_turn".into())
    );
    let log = logged(&s, MESSAGES);
    assert_eq!(log["api"], "anthropic");
    assert_eq!(log["model"], "claude-x");
    assert_eq!(log["last_user_text"], "hello there,\n  world");
    assert_eq!(log["directive"], Value::Null);
    assert_eq!(log["stream"], true);
    assert_eq!(log["side"], false);
    assert_eq!(
        log["body"]["messages"][0]["content"][0]["text"],
        "hello there,\n  world"
    );
    assert!(log["time"].as_f64().unwrap() > 0.0, "{log}");
}

#[test]
fn anthropic_cuts_the_echo_to_sixty_characters_of_one_line() {
    let s = ModelServer::start();
    let long = format!("{}\nsecond line", "x".repeat(100));
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [user(&long)] }),
    );
    assert_eq!(anthropic_text(&r).0, format!("OK: {}", "x".repeat(60)));
}

#[test]
fn anthropic_reply_and_the_last_occurrence_wins() {
    let s = ModelServer::start();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [user("@reply(first) then @reply(second (nested) one)")] }),
    );
    assert_eq!(anthropic_text(&r).0, "second (nested) one");
    assert_eq!(logged(&s, MESSAGES)["directive"], "reply");
}

#[test]
fn anthropic_skips_what_claude_code_adds_to_the_turn() {
    let s = ModelServer::start();
    let turn = json!({ "role": "user", "content": [
        { "type": "text", "text": "<system-reminder>\n@reply(not this)\n</system-reminder>\n" },
        { "type": "text", "text": "the prompt" }
    ]});
    // Claude Code puts a `system` message after the user's turn; the user's turn still counts.
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [turn, { "role": "system", "content": "agents" }] }),
    );
    assert_eq!(anthropic_text(&r).0, "OK: the prompt");
    assert_eq!(logged(&s, MESSAGES)["last_user_text"], "the prompt");
}

#[test]
fn anthropic_bash_calls_the_bash_tool() {
    let s = ModelServer::start();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "tools": [bash_tool()],
                "messages": [user("please @bash(echo $(date) > out)")] }),
    );
    let (_, stop) = anthropic_text(&r);
    assert_eq!(stop, "tool_use");
    let calls = anthropic_tool_uses(&r);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "Bash");
    assert_eq!(calls[0].1["command"], "echo $(date) > out");
    assert!(calls[0].1["description"].is_string(), "{calls:?}");
    let log = logged(&s, MESSAGES);
    assert_eq!(log["directive"], "bash");
    assert_eq!(log["tools"], json!(["Bash"]));
}

#[test]
fn anthropic_run_is_the_same_bash_call() {
    let s = ModelServer::start();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "tools": [bash_tool()], "messages": [user("@run(ls)")] }),
    );
    assert_eq!(anthropic_tool_uses(&r)[0].1["command"], "ls");
}

#[test]
fn anthropic_tool_result_ends_the_turn_with_its_output() {
    let s = ModelServer::start();
    let output = format!("line one\n{}", "y".repeat(300));
    let messages = json!([
        user("@bash(touch x)"),
        { "role": "assistant", "content": [{ "type": "tool_use", "id": "t1", "name": "Bash", "input": { "command": "touch x" } }] },
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "t1", "content": output }] }
    ]);
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "tools": [bash_tool()], "messages": messages }),
    );
    let expected: String = output.chars().take(200).collect();
    assert_eq!(
        anthropic_text(&r),
        (format!("Tool finished: {expected}"), "end_turn".into())
    );
    assert!(anthropic_tool_uses(&r).is_empty());
    let log = logged(&s, MESSAGES);
    assert_eq!(log["tool_results"], json!([output]));
    assert_eq!(log["directive"], "tool_result");
}

#[test]
fn anthropic_a_refused_tool_with_a_new_prompt_follows_the_prompt() {
    // Claude Code sends a refused tool's result, an interruption marker and the next prompt in
    // one turn.
    let s = ModelServer::start();
    let turn = json!({ "role": "user", "content": [
        { "type": "tool_result", "tool_use_id": "t1", "is_error": true, "content": "The user doesn't want to proceed" },
        { "type": "text", "text": "[Request interrupted by user for tool use]\n" },
        { "type": "text", "text": "@reply(next)" }
    ]});
    let r = post(&s, MESSAGES, json!({ "stream": true, "messages": [turn] }));
    assert_eq!(anthropic_text(&r).0, "next");
}

#[test]
fn anthropic_ask_uses_the_question_tool_claude_declares() {
    let s = ModelServer::start();
    let ask = json!({ "name": "AskUserQuestion", "input_schema": { "type": "object" } });
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "tools": [bash_tool(), ask],
                "messages": [user("@ask(Which color should I use?|Red|Blue)")] }),
    );
    let calls = anthropic_tool_uses(&r);
    assert_eq!(calls[0].0, "AskUserQuestion");
    let q = &calls[0].1["questions"][0];
    assert_eq!(q["question"], "Which color should I use?");
    assert_eq!(q["multiSelect"], false);
    assert!(q["header"].as_str().unwrap().len() <= 12, "{q}");
    let labels: Vec<&str> = q["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Red", "Blue"]);
    assert!(q["options"][0]["description"].is_string(), "{q}");
}

#[test]
fn anthropic_ask_without_the_tool_asks_in_text() {
    let s = ModelServer::start();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [user("@ask(Go on?|Yes|No)")] }),
    );
    assert_eq!(anthropic_text(&r).0, "Go on? Yes / No");
}

#[test]
fn anthropic_structured_side_request_gets_json_fitting_its_schema() {
    let s = ModelServer::start();
    let schema = json!({ "type": "object", "properties": {
        "title": { "type": "string" }, "tags": { "type": "array", "items": { "type": "string" } },
        "kind": { "enum": ["a", "b"] } }, "required": ["title", "kind"] });
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "output_config": { "format": { "type": "json_schema", "schema": schema } },
                "messages": [user("<session>\n@bash(rm -rf x)\n</session>\nWrite the title")] }),
    );
    let (text, _) = anthropic_text(&r);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(v["title"].is_string(), "{v}");
    assert_eq!(v["kind"], "a");
    assert!(v.get("tags").is_none(), "only required keys: {v}");
    let log = logged(&s, MESSAGES);
    assert_eq!(log["side"], true);
    assert_eq!(log["directive"], "structured");
}

#[test]
fn anthropic_count_tokens_and_a_non_streamed_message() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/messages/count_tokens?beta=true",
        json!({ "messages": [user("hi")] }),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    let r = post(
        &s,
        "/v1/messages",
        json!({ "tools": [bash_tool()], "messages": [user("@bash(ls)")] }),
    );
    let v = r.json();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["name"], "Bash");
    assert_eq!(v["content"][0]["input"]["command"], "ls");
}

#[test]
fn slow_spreads_the_answer_over_the_seconds_asked() {
    let s = ModelServer::start();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [user("wait @slow(1.5) please")] }),
    );
    assert_eq!(anthropic_text(&r).0, "OK: wait @slow(1.5) please");
    let first = *r.arrivals.first().unwrap();
    let last = *r.arrivals.last().unwrap();
    assert!(
        last - first >= Duration::from_millis(1200),
        "events arrived within {:?}: {:?}",
        last - first,
        r.arrivals
    );
    // Streamed as it goes: something arrives every tick, not all at the end.
    let gaps: Vec<Duration> = r.arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g < Duration::from_millis(700)),
        "{:?}",
        r.arrivals
    );
    assert_eq!(logged(&s, MESSAGES)["directive"], "slow");
}

#[test]
fn slow_applies_to_a_tool_call_too() {
    let s = ModelServer::start();
    let start = Instant::now();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "tools": [bash_tool()], "messages": [user("@slow(1) @bash(ls)")] }),
    );
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(anthropic_tool_uses(&r)[0].1["command"], "ls");
}

// --- OpenAI Responses (Codex) ---

fn exec_command_tool() -> Value {
    json!({ "type": "function", "name": "exec_command", "parameters": { "type": "object", "properties": {
        "cmd": { "type": "string" }, "justification": { "type": "string" },
        "sandbox_permissions": { "type": "string", "enum": ["use_default", "require_escalated"] } },
        "required": ["cmd"] } })
}

fn responses_input(text: &str) -> Value {
    json!([
        { "type": "message", "role": "developer", "content": [{ "type": "input_text", "text": "@reply(no)" }] },
        { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": "<environment_context>@reply(no)</environment_context>" }] },
        { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": text }] }
    ])
}

/// The completed output items of a Responses stream (after checking its framing).
fn responses_output(r: &Response) -> Vec<Value> {
    let data = r.data();
    let types: Vec<&str> = data.iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    let completed = data.last().unwrap();
    assert!(completed["response"]["id"].is_string(), "{completed}");
    assert!(completed["response"]["usage"].is_object(), "{completed}");
    data.iter()
        .filter(|d| d["type"] == "response.output_item.done")
        .map(|d| d["item"].clone())
        .collect()
}

#[test]
fn responses_stream_text_deltas_and_the_done_message() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/responses",
        json!({ "model": "m", "stream": true, "input": responses_input("hello codex") }),
    );
    let deltas: String = r
        .data()
        .iter()
        .filter(|d| d["type"] == "response.output_text.delta")
        .map(|d| d["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deltas, "OK: hello codex");
    let out = responses_output(&r);
    assert_eq!(out[0]["type"], "message");
    assert_eq!(out[0]["content"][0]["text"], "OK: hello codex");
    let log = logged(&s, "/v1/responses");
    assert_eq!(log["api"], "responses");
    assert_eq!(log["last_user_text"], "hello codex");
}

#[test]
fn responses_bash_asks_codex_to_run_it_escalated() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/responses",
        json!({ "stream": true, "tools": [exec_command_tool()], "input": responses_input("@bash(touch made)") }),
    );
    let out = responses_output(&r);
    assert_eq!(out[0]["type"], "function_call");
    assert_eq!(out[0]["name"], "exec_command");
    assert!(out[0]["call_id"].is_string());
    let args: Value = serde_json::from_str(out[0]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["cmd"], "touch made");
    assert_eq!(args["sandbox_permissions"], "require_escalated");
    assert!(args["justification"].as_str().unwrap().len() > 10, "{args}");
}

#[test]
fn responses_run_stays_in_the_sandbox() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/responses",
        json!({ "stream": true, "tools": [exec_command_tool()], "input": responses_input("@run(touch made)") }),
    );
    let out = responses_output(&r);
    let args: Value = serde_json::from_str(out[0]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({ "cmd": "touch made" }));
}

#[test]
fn responses_function_output_ends_the_turn() {
    let s = ModelServer::start();
    let mut input = responses_input("@bash(ls)");
    let items = input.as_array_mut().unwrap();
    items.push(json!({ "type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}" }));
    items
        .push(json!({ "type": "function_call_output", "call_id": "c1", "output": "a.txt\nb.txt" }));
    // Codex notes an approved command prefix after the output; the turn is still the output.
    items.push(json!({ "type": "message", "role": "developer",
                       "content": [{ "type": "input_text", "text": "Approved command prefix saved" }] }));
    let r = post(
        &s,
        "/v1/responses",
        json!({ "stream": true, "tools": [exec_command_tool()], "input": input }),
    );
    let out = responses_output(&r);
    assert_eq!(out[0]["content"][0]["text"], "Tool finished: a.txt\nb.txt");
    assert_eq!(
        logged(&s, "/v1/responses")["tool_results"],
        json!(["a.txt\nb.txt"])
    );
}

#[test]
fn responses_structured_side_request_gets_schema_json() {
    let s = ModelServer::start();
    let schema = json!({ "type": "object", "properties": { "title": { "type": "string" } }, "required": ["title"] });
    let r = post(
        &s,
        "/v1/responses",
        json!({ "stream": true, "text": { "format": { "type": "json_schema", "name": "t", "schema": schema } },
                "input": responses_input("Generate a title for @bash(ls)") }),
    );
    let out = responses_output(&r);
    let v: Value = serde_json::from_str(out[0]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert!(v["title"].is_string(), "{v}");
    assert_eq!(logged(&s, "/v1/responses")["side"], true);
}

// --- Chat Completions (Aider) ---

fn chat_text(r: &Response) -> String {
    let events = r.events();
    assert_eq!(
        events.last().map(|(_, d)| d.as_str()),
        Some("[DONE]"),
        "{events:?}"
    );
    let data = r.data();
    assert_eq!(
        data.last().unwrap()["choices"][0]["finish_reason"],
        "stop",
        "{data:?}"
    );
    data.iter()
        .filter_map(|d| d["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn chat_streams_chunks_then_done() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/chat/completions",
        json!({ "model": "openai/mock-model", "stream": true, "messages": [
            { "role": "system", "content": "@reply(no)" },
            { "role": "user", "content": "hi\n\n# *SEARCH/REPLACE block* Rules:\n\n@reply(no)" }] }),
    );
    assert_eq!(chat_text(&r), "OK: hi");
    let first = &r.data()[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let log = logged(&s, "/v1/chat/completions");
    assert_eq!(log["api"], "chat");
    assert_eq!(log["last_user_text"], "hi");
}

#[test]
fn chat_bash_is_a_fenced_block_aider_offers_to_run() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/chat/completions",
        json!({ "stream": true, "messages": [{ "role": "user", "content": "@bash(touch made-by-aider)" }] }),
    );
    assert!(
        chat_text(&r).contains("```bash\ntouch made-by-aider\n```"),
        "{}",
        r.body
    );
}

#[test]
fn chat_not_streamed_and_tool_messages() {
    let s = ModelServer::start();
    let r = post(
        &s,
        "/v1/chat/completions",
        json!({ "messages": [{ "role": "user", "content": "@reply(plain)" }] }),
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "plain");
    let r = post(
        &s,
        "/v1/chat/completions",
        json!({ "messages": [
            { "role": "user", "content": "@bash(ls)" },
            { "role": "assistant", "content": null, "tool_calls": [] },
            { "role": "tool", "tool_call_id": "c", "content": "listing" }] }),
    );
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Tool finished: listing"
    );
}

// --- Gemini ---

const GEMINI_STREAM: &str = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse";

fn gemini_turn(text: &str) -> Value {
    json!({ "role": "user", "parts": [
        { "text": "<session_context>\n@reply(no)\n</session_context>" }, { "text": text }] })
}

fn gemini_parts(r: &Response) -> Vec<Value> {
    let data = r.data();
    assert_eq!(
        data.last().unwrap()["candidates"][0]["finishReason"],
        "STOP",
        "{data:?}"
    );
    assert!(data.last().unwrap()["usageMetadata"].is_object());
    data.iter()
        .flat_map(|d| {
            d["candidates"][0]["content"]["parts"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

fn gemini_text(r: &Response) -> String {
    gemini_parts(r)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[test]
fn gemini_streams_text_and_skips_its_session_context() {
    let s = ModelServer::start();
    let r = post(
        &s,
        GEMINI_STREAM,
        json!({ "contents": [gemini_turn("hello gemini")] }),
    );
    assert_eq!(gemini_text(&r), "OK: hello gemini");
    let log = logged(&s, GEMINI_STREAM);
    assert_eq!(log["api"], "gemini");
    assert_eq!(log["model"], "gemini-x");
    assert_eq!(log["stream"], true);
}

#[test]
fn gemini_bash_calls_run_shell_command() {
    let s = ModelServer::start();
    let tools = json!([{ "functionDeclarations": [{ "name": "run_shell_command", "parametersJsonSchema": {} }] }]);
    let r = post(
        &s,
        GEMINI_STREAM,
        json!({ "tools": tools, "contents": [gemini_turn("@bash(touch g)")] }),
    );
    let parts = gemini_parts(&r);
    let call = parts
        .iter()
        .find_map(|p| p.get("functionCall"))
        .unwrap_or_else(|| panic!("no functionCall in {parts:?}"));
    assert_eq!(call["name"], "run_shell_command");
    assert_eq!(call["args"]["command"], "touch g");
    assert!(call["args"]["description"].is_string());
    assert_eq!(
        logged(&s, GEMINI_STREAM)["tools"],
        json!(["run_shell_command"])
    );
}

#[test]
fn gemini_function_response_ends_the_turn() {
    let s = ModelServer::start();
    let contents = json!([
        gemini_turn("@bash(ls)"),
        { "role": "model", "parts": [{ "functionCall": { "name": "run_shell_command", "args": {} } }] },
        { "role": "user", "parts": [{ "functionResponse": { "name": "run_shell_command", "response": { "output": "Output: (empty)" } } }] }
    ]);
    let r = post(&s, GEMINI_STREAM, json!({ "contents": contents }));
    assert_eq!(gemini_text(&r), "Tool finished: Output: (empty)");
}

#[test]
fn gemini_router_request_gets_json_fitting_its_schema() {
    let s = ModelServer::start();
    let path = "/v1beta/models/gemini-lite:generateContent";
    let schema = json!({ "type": "OBJECT", "properties": {
        "complexity_reasoning": { "type": "STRING" }, "complexity_score": { "type": "INTEGER" } },
        "required": ["complexity_reasoning", "complexity_score"] });
    let r = post(
        &s,
        path,
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "@bash(ls)" }] }],
                "generationConfig": { "responseMimeType": "application/json", "responseJsonSchema": schema } }),
    );
    let text = r.json()["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["complexity_reasoning"].is_string(), "{v}");
    assert!(v["complexity_score"].is_i64(), "{v}");
    assert_eq!(logged(&s, path)["side"], true);
}

#[test]
fn gemini_slow_ticks_without_sse_comments() {
    // Gemini CLI fails on SSE comment lines ("Incomplete JSON segment"), so every event of a
    // slow answer is data.
    let s = ModelServer::start();
    let r = post(
        &s,
        GEMINI_STREAM,
        json!({ "contents": [gemini_turn("@slow(1) @reply(hi)")] }),
    );
    assert!(
        !r.body.contains("\n:") && !r.body.starts_with(':'),
        "{}",
        r.body
    );
    assert_eq!(gemini_text(&r), "hi");
    assert!(r.arrivals.len() >= 4, "{:?}", r.arrivals);
}

// --- the rest of the surface ---

#[test]
fn root_model_lists_and_unknown_paths() {
    let s = ModelServer::start();
    assert_eq!(request(&s, "HEAD", "/", None).status, 200);
    assert_eq!(request(&s, "GET", "/", None).status, 200);
    let models = request(&s, "GET", "/v1/models", None).json();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "mock-model"));
    let r = request(&s, "GET", "/no/such/thing", None);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/no/such/thing"));
    let log = s.wait_request("the 404 in the log", WAIT, |r| r["status"] == 404);
    assert_eq!(log["api"], "unknown");
    assert_eq!(log["method"], "GET");
    let apis: Vec<Value> = s.requests().iter().map(|r| r["api"].clone()).collect();
    assert_eq!(
        apis,
        [
            json!("root"),
            json!("root"),
            json!("models"),
            json!("unknown")
        ]
    );
}

#[test]
fn bad_bodies_are_refused_and_the_server_keeps_serving() {
    let s = ModelServer::start();
    let r = request(&s, "POST", MESSAGES, Some(b"{not json"));
    assert_eq!(r.status, 400);
    let r = request(&s, "POST", "/v1/responses", Some(b"[1, 2]"));
    assert_eq!(r.status, 400);
    // A well-formed object of the wrong shape is the server's problem to survive too.
    let r = post(&s, MESSAGES, json!({ "messages": "not a list" }));
    assert!(r.status == 200 || r.status == 500, "{}", r.status);
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [user("still here")] }),
    );
    assert_eq!(anthropic_text(&r).0, "OK: still here");
    assert_eq!(
        s.requests().len(),
        4,
        "every request is logged: {:?}",
        s.requests()
    );
}

#[test]
fn requests_are_served_concurrently() {
    let s = ModelServer::start();
    let port = s.port();
    let slow = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = json!({ "stream": true, "messages": [user("@slow(2)")] }).to_string();
        write!(
            c,
            "POST {MESSAGES} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    });
    // Its log line is written before its answer streams, so a test sees a prompt reach the model
    // while the agent is still busy with it.
    s.wait_request("the slow request to arrive", WAIT, |r| {
        r["directive"] == "slow"
    });
    assert!(
        !slow.is_finished(),
        "the slow request was logged only once answered"
    );
    let start = Instant::now();
    let r = post(
        &s,
        MESSAGES,
        json!({ "stream": true, "messages": [user("fast")] }),
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(anthropic_text(&r).0, "OK: fast");
    assert!(slow.join().unwrap().contains("message_stop"));
}

// --- prepare ---

/// A workspace reached through a symbolic link, to check that trust is keyed by the real path.
struct Dirs {
    home: tempfile::TempDir,
    real_ws: tempfile::TempDir,
    link_dir: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        let d = Self {
            home: tempfile::tempdir().unwrap(),
            real_ws: tempfile::tempdir().unwrap(),
            link_dir: tempfile::tempdir().unwrap(),
        };
        std::os::unix::fs::symlink(d.real_ws.path(), d.link()).unwrap();
        d
    }

    fn link(&self) -> std::path::PathBuf {
        self.link_dir.path().join("ws")
    }

    fn canonical(&self) -> String {
        std::fs::canonicalize(self.real_ws.path())
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn read(&self, rel: &str) -> String {
        let p = self.home.path().join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

fn check_common(setup: &orch_tests::real::AgentSetup, agent: RealAgent, home: &Path) {
    let bin = Path::new(&setup.command[0]);
    assert!(
        bin.is_absolute() && bin.exists(),
        "{agent:?}: {:?}",
        setup.command
    );
    assert_eq!(setup.env_var("HOME"), Some(home.to_str().unwrap()));
    let spawn = setup.spawn_params();
    assert_eq!(spawn["command"][0], json!(setup.command[0]));
    assert_eq!(spawn["env"]["HOME"], json!(home.to_str().unwrap()));
    let toml = setup.orch_toml("k");
    assert!(toml.starts_with("[agents.k]\ncommand = [\""), "{toml}");
}

#[test]
fn prepare_claude_trusts_the_resolved_workspace() {
    let Some(_) = require(RealAgent::Claude) else {
        return;
    };
    let s = ModelServer::start();
    let d = Dirs::new();
    let setup = RealAgent::Claude.prepare(d.home.path(), &d.link(), &s);
    check_common(&setup, RealAgent::Claude, d.home.path());
    let config: Value = serde_json::from_str(&d.read(".claude.json")).unwrap();
    assert_eq!(config["hasCompletedOnboarding"], true);
    assert_eq!(
        config["projects"][d.canonical()]["hasTrustDialogAccepted"],
        true,
        "{config}"
    );
    assert_eq!(setup.env_var("ANTHROPIC_BASE_URL"), Some(s.url().as_str()));
    assert_eq!(setup.env_var("ANTHROPIC_AUTH_TOKEN"), Some("dummy"));
    assert_eq!(setup.env_var("ANTHROPIC_API_KEY"), None);
    let first = RealAgent::Claude.prepare_first_run(d.home.path(), &d.link(), &s);
    assert_eq!(first.command, setup.command);
    let config: Value = serde_json::from_str(&d.read(".claude.json")).unwrap();
    assert!(config.get("projects").is_none(), "{config}");
}

#[test]
fn prepare_codex_points_its_home_at_the_server() {
    let Some(_) = require(RealAgent::Codex) else {
        return;
    };
    let s = ModelServer::start();
    let d = Dirs::new();
    let setup = RealAgent::Codex.prepare(d.home.path(), &d.link(), &s);
    check_common(&setup, RealAgent::Codex, d.home.path());
    assert_eq!(setup.command[1..], ["--no-daemon"]);
    let codex_home = d.home.path().join(".codex");
    assert_eq!(setup.env_var("CODEX_HOME"), codex_home.to_str());
    let config = d.read(".codex/config.toml");
    for line in [
        "model_provider = \"mock\"".to_string(),
        "approval_policy = \"on-request\"".into(),
        "sandbox_mode = \"workspace-write\"".into(),
        format!("base_url = \"{}/v1\"", s.url()),
        "env_key = \"MOCK_API_KEY\"".into(),
        format!("[projects.\"{}\"]", d.canonical()),
        "trust_level = \"trusted\"".into(),
    ] {
        assert!(config.lines().any(|l| l == line), "{line:?} in:\n{config}");
    }
    RealAgent::Codex.prepare_first_run(d.home.path(), &d.link(), &s);
    assert!(!d.read(".codex/config.toml").contains("[projects."));
    assert!(
        d.real_ws.path().join(".git").is_dir(),
        "Codex asks about trust only in a git repository"
    );
    // In a repository, Codex keys trust by its root: a workspace below it is trusted there too.
    let sub = d.real_ws.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    RealAgent::Codex.prepare(d.home.path(), &sub, &s);
    let config = d.read(".codex/config.toml");
    for key in [d.canonical(), format!("{}/sub", d.canonical())] {
        assert!(
            config.contains(&format!("[projects.\"{key}\"]")),
            "{key} in:\n{config}"
        );
    }
}

#[test]
fn prepare_gemini_selects_the_api_key_and_trusts_the_folder() {
    let Some(_) = require(RealAgent::Gemini) else {
        return;
    };
    let s = ModelServer::start();
    let d = Dirs::new();
    let setup = RealAgent::Gemini.prepare(d.home.path(), &d.link(), &s);
    check_common(&setup, RealAgent::Gemini, d.home.path());
    let settings: Value = serde_json::from_str(&d.read(".gemini/settings.json")).unwrap();
    assert_eq!(
        settings["security"]["auth"]["selectedType"],
        "gemini-api-key"
    );
    let trusted: Value = serde_json::from_str(&d.read(".gemini/trustedFolders.json")).unwrap();
    assert_eq!(trusted[d.canonical()], "TRUST_FOLDER");
    assert_eq!(
        setup.env_var("GOOGLE_GEMINI_BASE_URL"),
        Some(s.url().as_str())
    );
    let home2 = tempfile::tempdir().unwrap();
    RealAgent::Gemini.prepare_first_run(home2.path(), &d.link(), &s);
    assert!(!home2.path().join(".gemini/trustedFolders.json").exists());
}

#[test]
fn prepare_aider_flags_and_offline_model_metadata() {
    let Some(_) = require(RealAgent::Aider) else {
        return;
    };
    let s = ModelServer::start();
    let d = Dirs::new();
    let setup = RealAgent::Aider.prepare(d.home.path(), &d.link(), &s);
    check_common(&setup, RealAgent::Aider, d.home.path());
    let args = setup.command[1..].join(" ");
    for flag in [
        format!("--openai-api-base {}/v1", s.url()),
        "--model openai/mock-model".into(),
        "--edit-format diff".into(),
        "--no-git".into(),
        "--no-check-update".into(),
    ] {
        assert!(args.contains(&flag), "{flag:?} in {args}");
    }
    let meta: Value =
        serde_json::from_str(&d.read(".aider/caches/model_prices_and_context_window.json"))
            .unwrap();
    assert!(meta["openai/mock-model"].is_object());
    let first = RealAgent::Aider.prepare_first_run(d.home.path(), &d.link(), &s);
    assert!(!first.command.contains(&"--no-git".to_string()));
}

// --- each installed CLI, started once from `prepare`, reaches the server ---

/// What pane 0 of `tmux` shows.
fn screen(tmux: &IsolatedTmux) -> String {
    tmux.ok(&["capture-pane", "-p", "-t", "0"])
}

/// Start `agent` from `prepare` in a 120x40 tmux pane with `TERM=xterm-256color`, wait for its
/// prompt, type a prompt as a bracketed paste followed by Enter on its own, and wait for it at
/// the server.
fn reaches_the_server(agent: RealAgent, ready: &str) {
    if require(agent).is_none() || !require_tool("tmux", &["-V"]) {
        return;
    }
    let s = ModelServer::start();
    let home = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    let setup = agent.prepare(home.path(), ws.path(), &s);
    let tmux = IsolatedTmux::new(&format!("kit-{}", agent.name()));
    let mut argv: Vec<String> = vec!["env".into(), "TERM=xterm-256color".into()];
    argv.extend(setup.env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(setup.command.iter().cloned());
    let mut args = vec![
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-c",
    ];
    args.push(ws.path().to_str().unwrap());
    args.push("--");
    args.extend(argv.iter().map(String::as_str));
    tmux.ok(&args);
    wait_for(
        &format!("{agent:?}'s prompt"),
        Duration::from_secs(60),
        || screen(&tmux).contains(ready).then_some(()),
    );
    let prompt = format!("hello from {}", agent.name());
    tmux.ok(&["set-buffer", "-b", "kit", "--", &prompt]);
    tmux.ok(&["paste-buffer", "-p", "-d", "-b", "kit", "-t", "0"]);
    // Enter goes on its own, after the paste. A prompt typed while the CLI is still starting can
    // stay unsent in its input box (tests/fixtures/screens/README.md); Enter again sends it once.
    let sent = |s: &ModelServer| {
        s.requests()
            .iter()
            .any(|r| r["side"] == false && r["last_user_text"].as_str() == Some(prompt.as_str()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    'submit: loop {
        std::thread::sleep(Duration::from_millis(300));
        tmux.ok(&["send-keys", "-t", "0", "Enter"]);
        let waited = Instant::now();
        while waited.elapsed() < Duration::from_millis(1500) {
            if sent(&s) {
                break 'submit;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            Instant::now() < deadline,
            "{agent:?} never sent {prompt:?}; screen:\n{}",
            screen(&tmux)
        );
    }
    let expected = format!("OK: {prompt}");
    wait_for(&format!("{expected:?} on {agent:?}'s screen"), WAIT, || {
        screen(&tmux).contains(&expected).then_some(())
    });
}

#[test]
fn real_claude_reaches_the_server() {
    reaches_the_server(RealAgent::Claude, "? for shortcuts");
}

#[test]
fn real_codex_reaches_the_server() {
    reaches_the_server(RealAgent::Codex, "Ask Codex to do anything");
}

#[test]
fn real_gemini_reaches_the_server() {
    reaches_the_server(RealAgent::Gemini, "Type your message");
}

#[test]
fn real_aider_reaches_the_server() {
    reaches_the_server(RealAgent::Aider, "diff>");
}
