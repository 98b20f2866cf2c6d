//! The wire contract: lifecycle, error codes, bad input, on the socket and through `orch lsp`.

use orch_tests::{Daemon, Via, BOTH, WAIT};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn initialize_reports_the_contract() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.raw_client(via);
        let r = c.ok(
            "initialize",
            json!({ "processId": null, "capabilities": {} }),
        );
        assert_eq!(r["serverInfo"]["name"], "orch", "{via:?}");
        assert_eq!(r["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        let orch = &r["capabilities"]["experimental"]["orch"];
        assert_eq!(orch["protocolVersion"], 1);
        assert_eq!(
            orch["workspace"],
            json!(std::fs::canonicalize(d.root()).unwrap())
        );
        assert!(orch["backends"].as_array().unwrap().contains(&json!("pty")));
        let cmds = r["capabilities"]["executeCommandProvider"]["commands"]
            .as_array()
            .unwrap();
        for m in editor_protocol::methods::ALL {
            assert!(
                cmds.contains(&json!(m.replace('/', "."))),
                "{m} missing from commands"
            );
        }
        // A second initialize on the same connection is refused.
        c.err("initialize", json!({ "capabilities": {} }), -32600);
    }
}

#[test]
fn requests_before_initialize_and_unknown_methods() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.raw_client(via);
        let e = c.err("orch/status", json!({}), -32002);
        assert!(e["message"].as_str().unwrap().contains("initialize"), "{e}");
        c.initialize();
        let e = c.err("orch/nope", json!({}), -32601);
        assert!(e["message"].as_str().unwrap().contains("orch/nope"));
        c.err("$/somethingElse", json!({}), -32601);
        // $/ notifications are ignored, not answered.
        c.notify("$/setTrace", json!({ "value": "off" }));
        let s = c.ok("orch/status", json!({}));
        assert_eq!(s["protocolVersion"], 1);
        assert!(s["clients"].as_u64().unwrap() >= 1);
        assert_eq!(s["backends"][0]["name"], "pty");
    }
}

#[test]
fn invalid_params_name_the_field() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let e = c.err("orch/agent/send", json!({ "id": "x", "text": 5 }), -32602);
        assert_eq!(e["data"]["field"], "text", "{e}");
        let e = c.err(
            "orch/terminal/resize",
            json!({ "id": "t-1", "cols": "wide", "rows": 2 }),
            -32602,
        );
        assert_eq!(e["data"]["field"], "cols", "{e}");
        assert!(e["message"].as_str().unwrap().contains("cols"), "{e}");
        let e = c.err("orch/agent/list", json!({ "limit": 5000 }), -32602);
        assert_eq!(e["data"]["field"], "limit");
        assert!(e["message"].as_str().unwrap().contains("5000"), "{e}");
        let e = c.err(
            "orch/events/subscribe",
            json!({ "kinds": vec!["x"; 300] }),
            -32005,
        );
        assert_eq!(e["data"]["limit"], "kinds");
        let e = c.err("orch/agent/get", json!({ "id": "nobody" }), -32001);
        assert_eq!(e["data"]["kind"], "agent");
        assert_eq!(e["data"]["id"], "nobody");
        let e = c.err("orch/agent/spawn", json!({ "kind": "nonesuch" }), -32602);
        assert!(e["message"].as_str().unwrap().contains("nonesuch"), "{e}");
        let e = c.err(
            "orch/agent/spawn",
            json!({ "command": ["/no/such/program"] }),
            -32602,
        );
        assert!(
            e["message"].as_str().unwrap().contains("/no/such/program"),
            "{e}"
        );
        let e = c.err(
            "orch/agent/spawn",
            json!({ "command": ["true"], "cwd": "/no/such/dir" }),
            -32602,
        );
        assert_eq!(e["data"]["field"], "cwd");
        // Environment names a process cannot have, and NUL in a value: refused naming `env`
        // (was: accepted, or a NUL reported against `command`), for agents and bare terminals.
        for method in ["orch/agent/spawn", "orch/terminal/open"] {
            for (key, value, field) in [
                ("A=B", "1", "env"),
                ("", "1", "env"),
                ("A\0", "1", "env"),
                ("B", "x\0y", "env.B"),
            ] {
                let e = c.err(
                    method,
                    json!({ "command": ["true"], "env": { key: value } }),
                    -32602,
                );
                assert_eq!(e["data"]["field"], field, "{method} {key:?}: {e}");
            }
        }
        assert_eq!(c.ok("orch/agent/list", json!({}))["items"], json!([]));
        // The daemon keeps serving.
        c.ok("orch/status", json!({}));
    }
}

/// Garbage of every kind on one connection: each gets the right error, and a second client
/// connected throughout keeps working.
#[test]
fn bad_input_never_hurts_another_client() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut bystander = d.client(Via::Socket);
        let mut c = d.client(via);
        // Invalid JSON, invalid UTF-8, wrong shapes: answered, connection kept.
        c.send_raw(b"Content-Length: 5\r\n\r\n{oops");
        let r = c.wait_message("parse error", WAIT, |v| v["error"]["code"] == json!(-32700));
        assert!(r["id"].is_null());
        c.send_raw(b"Content-Length: 4\r\n\r\n\xff\xfe\xfd\xfc");
        let r = c.wait_message("utf-8 error", WAIT, |v| {
            v["error"]["code"] == json!(-32700)
                && v["error"]["message"].as_str().unwrap().contains("UTF-8")
        });
        assert!(r["id"].is_null());
        c.send(&json!({ "jsonrpc": "2.0", "id": 77, "method": 5 }));
        let r = c.wait_message("invalid request", WAIT, |v| v["id"] == json!(77));
        assert_eq!(r["error"]["code"], -32600);
        c.send(&json!([1, 2]));
        c.wait_message("batch refusal", WAIT, |v| {
            v["error"]["code"] == json!(-32600)
                && v["error"]["message"].as_str().unwrap().contains("array")
        });
        c.send(&json!({ "id": 78, "method": "orch/status" }));
        let r = c.wait_message("missing jsonrpc", WAIT, |v| v["id"] == json!(78));
        assert_eq!(r["error"]["code"], -32600);
        c.ok("orch/status", json!({}));
        bystander.ok("orch/status", json!({}));

        // Unrecoverable framing: answered once, then the connection is closed.
        for garbage in [
            &b"Content-Length: abc\r\n\r\n{}"[..],
            b"Content-Length: 99999999999\r\n\r\n",
            b"Nonsense\r\n\r\n",
        ] {
            let mut c = d.client(via);
            c.send_raw(garbage);
            let r = c.wait_message("framing error", WAIT, |v| v.get("error").is_some());
            assert!(
                [-32700, -32005].contains(&r["error"]["code"].as_i64().unwrap()),
                "{r}"
            );
            assert!(
                c.closed_within(Duration::from_secs(10)),
                "connection stays open after {garbage:?}"
            );
            bystander.ok("orch/status", json!({}));
        }
        // A truncated header, then the client goes away: nothing breaks.
        let mut c = d.raw_client(via);
        c.send_raw(b"Content-Len");
        drop(c);
        bystander.ok("orch/status", json!({}));
    }
}

#[test]
fn header_limit_holds_when_the_header_arrives_in_one_piece() {
    // The probe's cases, each a whole frame in one write: 5,000 header lines, and one header
    // line of 8,332 bytes. Both were accepted; the limit is 8 KiB.
    let d = Daemon::started(None);
    let status = br#"{"jsonrpc":"2.0","id":1,"method":"orch/status"}"#;
    let mut lines = b"X-Pad: 123\r\n".repeat(5000);
    lines.extend_from_slice(format!("Content-Length: {}\r\n\r\n", status.len()).as_bytes());
    lines.extend_from_slice(status);
    let mut long_line = b"X-Pad: ".to_vec();
    long_line.resize(8332, b'a');
    long_line.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", status.len()).as_bytes());
    long_line.extend_from_slice(status);
    for via in BOTH {
        let mut bystander = d.client(Via::Socket);
        for frame in [&lines, &long_line] {
            let mut c = d.client(via);
            c.send_raw(frame);
            let r = c.wait_message("the refusal", WAIT, |v| v["id"].is_null());
            assert_eq!(r["error"]["code"], -32700, "{r}");
            assert_eq!(
                r["error"]["message"], "header section longer than 8192 bytes",
                "{r}"
            );
            assert!(
                c.closed_within(Duration::from_secs(10)),
                "{via:?}: connection stays open"
            );
            bystander.ok("orch/status", json!({}));
        }
    }
}

#[test]
fn error_responses_quote_only_a_prefix_of_the_input() {
    // A 10 MB method name was answered with a 20 MB -32601; huge names and ids were echoed
    // whole. Every error quotes at most a short excerpt of what the client sent.
    let d = Daemon::started(None);
    let huge = "x".repeat(4 << 20);
    let mut bystander = d.client(Via::Socket);
    for via in BOTH {
        // Before initialize.
        let mut raw = d.raw_client(via);
        let e = raw.err(&huge, json!({}), -32002);
        assert!(e.to_string().len() < 1024, "{}", e.to_string().len());
        let mut c = d.client(via);
        let cases = [
            (huge.clone(), json!({}), -32601),
            (format!("$/{huge}"), json!({}), -32601),
            ("orch/agent/get".into(), json!({ "id": huge }), -32001),
            ("orch/agent/stop".into(), json!({ "id": huge }), -32001),
            ("orch/task/get".into(), json!({ "id": huge }), -32001),
            (
                "orch/session/create".into(),
                json!({ "name": huge }),
                -32602,
            ),
            (
                "orch/agent/spawn".into(),
                json!({ "command": ["true"], "name": huge }),
                -32602,
            ),
            (
                "orch/agent/spawn".into(),
                json!({ "command": ["true"], "cwd": huge }),
                -32602,
            ),
            (
                "orch/agent/spawn".into(),
                json!({ "command": ["true"], "backend": huge }),
                -32602,
            ),
            ("orch/agent/spawn".into(), json!({ "kind": huge }), -32602),
            (
                "orch/agent/spawn".into(),
                json!({ "command": ["true"], "env": { huge.clone(): 1 } }),
                -32602,
            ),
            (
                "orch/terminal/resize".into(),
                json!({ "id": "t", "cols": huge, "rows": 1 }),
                -32602,
            ),
            ("orch/agent/list".into(), json!({ "state": huge }), -32602),
            (
                "orch/task/create".into(),
                json!({ "title": "t", "prompt": "p", "priority": huge }),
                -32602,
            ),
            (
                "orch/task/create".into(),
                json!({ "title": "t", "prompt": "p", "gates": [huge] }),
                -32602,
            ),
            (
                "workspace/executeCommand".into(),
                json!({ "command": huge }),
                -32602,
            ),
            ("orch/jobs/pause".into(), json!({ "name": huge }), -32001),
        ];
        for (method, params, code) in cases {
            let shown = params.to_string();
            let what = format!("{via:?} {method:.20} {:.40}", shown);
            let started = std::time::Instant::now();
            let e = c.call(&method, params).err();
            let e = e.unwrap_or_else(|| panic!("{what} succeeded"));
            assert_eq!(e["code"], code, "{what}: {:.300}", e.to_string());
            let len = e.to_string().len();
            assert!(len < 2048, "{what}: an error of {len} bytes");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{what}: {:?}",
                started.elapsed()
            );
        }
        bystander.ok("orch/status", json!({}));
    }
}

#[test]
fn a_number_id_out_of_range_is_named_as_such() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        for (id, want) in [
            (
                "9223372036854775808",
                "field id 9223372036854775808 is out of range",
            ),
            ("1.5", "field id 1.5 is not an integer"),
        ] {
            c.send_raw(&editor_protocol::framing::encode(
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"orch/status"}}"#).as_bytes(),
            ));
            let r = c.wait_message("the refusal", WAIT, |v| v["id"].is_null());
            assert_eq!(r["error"]["code"], -32600, "{r}");
            let message = r["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(want), "{message}");
        }
        c.ok("orch/status", json!({}));
    }
}

#[test]
fn a_connection_without_a_first_message_within_seconds_is_closed() {
    // 200 connections trickling a header byte a second were all held open. Now whoever has not
    // sent a complete first message within 5 s is answered -32005 and closed, on the socket and
    // through `orch lsp`; a client past its first message may stay idle as long as it likes.
    let d = Daemon::started(None);
    let mut bystander = d.client(Via::Socket);
    let started = Instant::now();
    let mut slow: Vec<(Via, orch_tests::Client)> = (0..20)
        .map(|_| (Via::Socket, d.raw_client(Via::Socket)))
        .chain((0..2).map(|_| (Via::Lsp, d.raw_client(Via::Lsp))))
        .collect();
    let mut silent = d.raw_client(Via::Socket);
    let frame = b"Content-Length: 40\r\n\r\n";
    let mut closed_at = vec![None; slow.len()];
    for byte in frame.iter().cycle() {
        for (i, (_, c)) in slow.iter_mut().enumerate() {
            if closed_at[i].is_none() {
                // A write may fail once the daemon has closed: that is what is awaited.
                let _ = c.try_send_raw(&[*byte]);
                if c.closed_within(Duration::ZERO) {
                    closed_at[i] = Some(started.elapsed());
                }
            }
        }
        if closed_at.iter().all(Option::is_some) || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        // Trickling is the point: one byte a second.
        std::thread::sleep(Duration::from_secs(1));
    }
    for ((via, c), at) in slow.iter_mut().zip(&closed_at) {
        let at =
            at.unwrap_or_else(|| panic!("{via:?}: a trickling connection stayed open for 20 s"));
        assert!(
            at >= Duration::from_secs(4),
            "{via:?}: closed after only {at:?}"
        );
        let e = c.wait_message("the refusal", WAIT, |v| v.get("error").is_some());
        assert_eq!(e["error"]["code"], -32005, "{e}");
        assert_eq!(
            e["error"]["data"]["limit"], "seconds to the first message",
            "{e}"
        );
    }
    assert!(
        silent.closed_within(Duration::from_secs(5)),
        "a silent connection stayed open"
    );
    // Idle for longer than the limit, after its first message: still served.
    assert!(started.elapsed() > Duration::from_secs(5));
    bystander.ok("orch/status", json!({}));
    let mut late = d.client(Via::Socket);
    late.ok("orch/status", json!({}));
}

#[test]
fn connections_are_capped_with_a_clear_refusal() {
    // 2,000 idle connections were all accepted. Past the cap (256) a connection is answered
    // -32005 naming the limit and closed; one freed slot lets the next client in.
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let d = Daemon::started(None);
    let mut bystander = d.client(Via::Socket);
    let init = editor_protocol::framing::encode(
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}"#,
    );
    // The first answer on a new connection: initialize's result, or the refusal.
    let first_answer = |s: &mut UnixStream| -> serde_json::Value {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut dec = editor_protocol::framing::FrameDecoder::default();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(body) = dec.next_frame().unwrap() {
                return serde_json::from_slice(&body).unwrap();
            }
            let n = s.read(&mut buf).expect("an answer");
            assert!(n > 0, "closed without an answer");
            dec.push(&buf[..n]);
        }
    };
    let mut held = Vec::new();
    let refusal = loop {
        let mut s = UnixStream::connect(d.socket()).unwrap();
        // A refused connection may be closed before this is written.
        let _ = s.write_all(&init);
        let answer = first_answer(&mut s);
        if answer.get("error").is_some() {
            break answer;
        }
        held.push(s);
        assert!(held.len() <= 256, "more than 256 connections served");
    };
    // The bystander holds one slot; the daemon may still be closing the harness's probe.
    assert!(
        (253..=255).contains(&held.len()),
        "refused after {} connections",
        held.len()
    );
    assert_eq!(refusal["error"]["code"], -32005, "{refusal}");
    assert_eq!(
        refusal["error"]["data"]["limit"], "connections",
        "{refusal}"
    );
    assert_eq!(refusal["error"]["data"]["max"], 256, "{refusal}");
    // The CLI and `orch lsp` say so too.
    let (code, _, err) = d.run(&["status"]);
    assert_ne!(code, 0);
    assert!(err.contains("too many connections"), "{err}");
    let lsp = d
        .orch()
        .arg("lsp")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!lsp.status.success());
    let err = String::from_utf8_lossy(&lsp.stderr);
    assert!(err.contains("too many connections"), "{err}");
    bystander.ok("orch/status", json!({}));
    // A freed slot is taken by the next client.
    held.pop();
    orch_tests::wait_for("a free slot", WAIT, || {
        let mut s = UnixStream::connect(d.socket()).unwrap();
        let _ = s.write_all(&init);
        first_answer(&mut s).get("result").map(|_| ())
    });
    drop(held);
    for via in BOTH {
        d.client(via).ok("orch/status", json!({}));
    }
}

#[test]
fn shutdown_and_exit_end_only_that_connection() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut other = d.client(Via::Socket);
        let mut c = d.client(via);
        c.ok("shutdown", json!(null));
        c.err("orch/status", json!({}), -32600);
        c.notify("exit", json!(null));
        assert!(c.closed_within(Duration::from_secs(10)));
        other.ok("orch/status", json!({}));
    }
}

#[test]
fn execute_command_maps_to_methods() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let s = c.ok("workspace/executeCommand", json!({ "command": "orch.session.create", "arguments": [{ "name": format!("via-{via:?}") }] }));
        assert_eq!(s["name"], format!("via-{via:?}"));
        let st = c.ok(
            "workspace/executeCommand",
            json!({ "command": "orch.status", "arguments": [] }),
        );
        assert!(st["pid"].as_u64().is_some());
        let e = c.err(
            "workspace/executeCommand",
            json!({ "command": "orch.bogus" }),
            -32602,
        );
        assert_eq!(e["data"]["field"], "command");
    }
}

#[test]
fn cancel_request_answers_cancelled() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let agent = orch_tests::spawn(
            &mut c,
            &["bash", "-c", "trap '' TERM; echo trapped; sleep 30"],
        );
        orch_tests::wait_screen(&mut c, agent["id"].as_str().unwrap(), "trapped");
        // A stop waits for the exit (SIGTERM is ignored, so for the grace period): cancel it.
        let id = c.request("orch/agent/stop", json!({ "id": agent["id"] }));
        c.notify("$/cancelRequest", json!({ "id": id }));
        let r = c.response(id);
        assert_eq!(r["error"]["code"], -32800, "{r}");
        c.ok(
            "orch/agent/stop",
            json!({ "id": agent["id"], "force": true }),
        );
    }
}

#[test]
fn sessions_default_create_list_close() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let list = c.ok("orch/session/list", json!({ "state": "active" }));
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"default"), "{list}");
        let name = format!("review-{via:?}");
        let s = c.ok("orch/session/create", json!({ "name": name }));
        assert_eq!(s["state"], "active");
        let e = c.err("orch/session/create", json!({ "name": name }), -32602);
        assert_eq!(e["data"]["field"], "name");
        let closed = c.ok("orch/session/close", json!({ "id": s["id"] }));
        assert_eq!(closed["state"], "closed");
        assert!(closed["closedAt"].is_string());
        c.err("orch/session/close", json!({ "id": s["id"] }), -32003);
        let def = names.iter().position(|n| *n == "default").unwrap();
        let e = c.err(
            "orch/session/close",
            json!({ "id": list["items"][def]["id"] }),
            -32003,
        );
        assert!(e["message"].as_str().unwrap().contains("default"));
    }
}

#[test]
fn pagination_of_lists() {
    let d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    for i in 0..7 {
        c.ok("orch/session/create", json!({ "name": format!("s{i}") }));
    }
    let seen: Vec<String> = c
        .list_all("orch/session/list", json!({ "limit": 3 }))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = std::iter::once("default".to_string())
        .chain((0..7).map(|i| format!("s{i}")))
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn config_get_and_reload_name_file_line_and_key() {
    let d = Daemon::started(Some("[agents.shell]\nidle_after_ms = 300\n"));
    for via in BOTH {
        let mut c = d.client(via);
        let cfg = c.ok("orch/config/get", json!({}));
        assert_eq!(cfg["agents"]["shell"]["idle_after_ms"], 300);
        assert!(
            cfg["agents"]["claude"].is_object(),
            "built-in kinds are present"
        );
        std::fs::write(
            d.root().join("orch.toml"),
            "[agents.shell]\nidle_after_ms = 300\n\n[daemon]\nbackend = \"vt100\"\n",
        )
        .unwrap();
        let e = c.err("orch/config/reload", json!({}), -32602);
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains("orch.toml:5: must be \"pty\" or \"tmux\"")
                && e["data"]["field"] == "daemon.backend",
            "{e}"
        );
        // The old configuration stays in force.
        assert_eq!(
            c.ok("orch/config/get", json!({}))["agents"]["shell"]["idle_after_ms"],
            300
        );
        std::fs::write(
            d.root().join("orch.toml"),
            "[agents.shell]\nidle_after_ms = 700\n",
        )
        .unwrap();
        let cfg = c.ok("orch/config/reload", json!({}));
        assert_eq!(cfg["agents"]["shell"]["idle_after_ms"], 700);
        std::fs::write(
            d.root().join("orch.toml"),
            "[agents.shell]\nidle_after_ms = 300\n",
        )
        .unwrap();
        c.ok("orch/config/reload", json!({}));
    }
}

#[test]
fn second_daemon_refuses_and_names_the_first() {
    let d = Daemon::started(None);
    let pid = d.pid();
    let (code, _, err) = d.run(&["serve"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("already running"), "{err}");
    // The first one is untouched.
    let mut c = d.client(Via::Socket);
    assert_eq!(c.ok("orch/status", json!({}))["pid"], pid);
}

#[test]
fn socket_and_state_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::started(None);
    let sock = d.socket();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut c = d.client(Via::Socket);
    let a = orch_tests::spawn(&mut c, &["true"]);
    let store = std::path::PathBuf::from(
        c.ok("orch/status", json!({}))["store"]["path"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    // The state directory holds agents' environments: only we may enter it.
    let state = store.parent().unwrap();
    assert_eq!(
        std::fs::metadata(state).unwrap().permissions().mode() & 0o777,
        0o700,
        "{}",
        state.display()
    );
    assert!(a["id"].is_string());
    // And so is everything in it: the store's files were 0644 and its directories 0755.
    orch_tests::wait_agent(&mut c, a["id"].as_str().unwrap(), "exited", |a| {
        a["state"] == "exited"
    });
    let mut wrong = Vec::new();
    let mut todo = vec![state.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want && !meta.file_type().is_symlink() {
            wrong.push(format!("{} {mode:o}", p.display()));
        }
    }
    assert!(wrong.is_empty(), "not private: {wrong:#?}");

    // A socket directory that others can reach is refused, with the reason, and left as it was.
    let mut open = Daemon::new(None);
    std::fs::set_permissions(
        open.runtime_dir.path(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let (code, _, err) = open.run(&["serve"]);
    assert_eq!(code, 1);
    assert!(err.contains("has mode 755: others can reach it"), "{err}");
    assert_eq!(
        std::fs::metadata(open.runtime_dir.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    open.child = None;
}

#[test]
fn daemon_stop_flushes_and_exits() {
    let mut d = Daemon::started(None);
    let mut c = d.client(Via::Socket);
    let agent = orch_tests::spawn(&mut c, &["sleep", "100"]);
    c.ok("orch/daemon/stop", json!({}));
    let status = d.child.as_mut().unwrap().wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!d.socket().exists(), "the socket file is removed");
    // Started again (auto-started by the CLI): the agent was stopped, not lost.
    let (code, out, err) = d.run(&["--json", "agent", "get", agent["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["state"], "stopped", "{a}");
}

#[test]
fn a_client_naming_another_workspace_is_warned() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.raw_client(via);
        let other = tempfile::tempdir().unwrap();
        let uri = format!("file://{}", other.path().display());
        c.ok("initialize", json!({ "capabilities": {}, "rootUri": uri }));
        let log = c.notification("window/logMessage", WAIT, |p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.contains("this daemon serves"))
        });
        assert!(
            log["message"]
                .as_str()
                .unwrap()
                .contains(&other.path().display().to_string()),
            "{log}"
        );
        // Its own workspace (or a folder inside it) is fine: no warning.
        let mut ok = d.raw_client(via);
        let inside = format!("file://{}", d.root().display());
        ok.ok(
            "initialize",
            json!({ "capabilities": {}, "workspaceFolders": [{ "uri": inside, "name": "w" }] }),
        );
        let warnings: Vec<_> = ok
            .drain(Duration::from_millis(200))
            .into_iter()
            .filter(|m| m["method"] == "window/logMessage")
            .collect();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[test]
fn a_duplicate_request_id_in_flight_is_refused() {
    let d = Daemon::started(None);
    for via in BOTH {
        let mut c = d.client(via);
        let a = orch_tests::spawn(
            &mut c,
            &["bash", "-c", "trap '' TERM; echo trapped; sleep 30"],
        );
        orch_tests::wait_screen(&mut c, a["id"].as_str().unwrap(), "trapped");
        // A stop waits for the exit, so its id stays in flight.
        c.send(&json!({ "jsonrpc": "2.0", "id": 500, "method": "orch/agent/stop", "params": { "id": a["id"] } }));
        c.send(&json!({ "jsonrpc": "2.0", "id": 500, "method": "orch/status" }));
        let r = c.wait_message("the refusal", WAIT, |m| {
            m["id"] == json!(500) && m.get("error").is_some()
        });
        assert_eq!(r["error"]["code"], -32600, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("already in flight"),
            "{r}"
        );
        // The first request with that id is still answered, once the agent has stopped.
        let _ = c.call("orch/agent/stop", json!({ "id": a["id"], "force": true }));
        let stopped = c.wait_message("the stop's own reply", WAIT, |m| {
            m["id"] == json!(500) && m.get("result").is_some()
        });
        assert_eq!(stopped["result"]["state"], "stopped");
    }
}

/// `orch serve --stdio`: a private daemon on stdin/stdout, ending with its one client.
#[test]
fn serve_stdio_is_a_private_daemon() {
    let d = Daemon::new(None);
    let child = d
        .orch()
        .args(["serve", "--stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut c = orch_tests::Client::process(child);
    c.err("orch/status", json!({}), -32002);
    c.initialize();
    let s = c.ok("orch/status", json!({}));
    assert_eq!(s["pid"], pid);
    assert_eq!(s["clients"], 1);
    let a = orch_tests::spawn(&mut c, &["bash", "-c", "echo private-$((1+2)); sleep 30"]);
    orch_tests::wait_screen(&mut c, a["id"].as_str().unwrap(), "private-3");
    c.ok("shutdown", json!(null));
    c.notify("exit", json!(null));
    // With its only client gone the private daemon stops, its agents first.
    orch_tests::wait_for("the private daemon to exit", WAIT, || {
        // SAFETY: probing a child pid.
        (unsafe { libc::kill(pid, 0) } != 0
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")))
        .then_some(())
    });
}

/// `orch lsp` starts the workspace daemon when none runs, detached: the daemon outlives it.
#[test]
fn orch_lsp_starts_a_daemon_that_outlives_the_editor() {
    let d = Daemon::new(None);
    let mut editor = d.raw_client(Via::Lsp);
    editor.initialize();
    let s = editor.ok("orch/status", json!({}));
    let daemon_pid = s["pid"].as_i64().unwrap() as i32;
    drop(editor); // the editor goes away, killing its `orch lsp`
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: probing a pid.
    assert_eq!(
        unsafe { libc::kill(daemon_pid, 0) },
        0,
        "the daemon survived its starter"
    );
    let mut c = d.client(Via::Socket);
    assert_eq!(c.ok("orch/status", json!({}))["pid"], daemon_pid);
    // Its own session: not in the test's process group, so a terminal's hangup does not reach it.
    let sid = std::fs::read_to_string(format!("/proc/{daemon_pid}/stat")).unwrap();
    let fields: Vec<&str> = sid.rsplit(')').next().unwrap().split_whitespace().collect();
    assert_eq!(
        fields[3],
        daemon_pid.to_string(),
        "the daemon leads its own session"
    );
}
