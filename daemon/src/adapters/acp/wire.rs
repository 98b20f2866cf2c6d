//! JSON-RPC 2.0 as newline-delimited JSON, the framing ACP uses on stdio: splitting a byte
//! stream into bounded lines, telling requests, notifications and responses apart, and encoding
//! what orch sends.
//!
//! Knows nothing of ACP's methods or of processes: lines in, messages out.

use serde_json::{json, Value};

/// The JSON-RPC error code for a method the receiver does not implement.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The JSON-RPC error code for parameters the receiver cannot use.
pub const INVALID_PARAMS: i64 = -32602;
/// The JSON-RPC error code for a failure while handling a valid request.
pub const INTERNAL_ERROR: i64 = -32603;
/// ACP's `auth_required`: the agent wants `authenticate` before it creates a session.
pub const AUTH_REQUIRED: i64 = -32000;

/// One message received from the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A call that expects an answer carrying the same `id` (a number or a string; echoed as
    /// received).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A call that expects no answer.
    Notification { method: String, params: Value },
    /// The answer to one of our requests.
    Response {
        id: Value,
        result: Result<Value, RpcError>,
    },
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code (JSON-RPC's or the application's).
    pub code: i64,
    /// The peer's words.
    pub message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// Parse one line into a message, or say in words why it is not one.
pub fn parse(line: &[u8]) -> Result<Incoming, String> {
    let value: Value = serde_json::from_slice(line).map_err(|err| format!("not JSON: {err}"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".to_string());
    };
    if let Some(version) = obj.get("jsonrpc") {
        if version != "2.0" {
            return Err(format!("jsonrpc is {version}, not \"2.0\""));
        }
    }
    let id = obj.remove("id").filter(|id| !id.is_null());
    if let Some(method) = obj.remove("method") {
        let Value::String(method) = method else {
            return Err("method is not a string".to_string());
        };
        let params = obj.remove("params").unwrap_or(Value::Null);
        return Ok(match id {
            Some(id) => {
                check_id(&id)?;
                Incoming::Request { id, method, params }
            }
            None => Incoming::Notification { method, params },
        });
    }
    let Some(id) = id else {
        return Err("neither a request, a notification nor a response".to_string());
    };
    check_id(&id)?;
    if let Some(error) = obj.remove("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let mut message = match error.get("message") {
            Some(Value::String(text)) => text.clone(),
            _ => format!("error without a message: {error}"),
        };
        // Agents put the useful part in `data` ("Internal error" + {"details": "No previous
        // sessions found for this project."} from Gemini CLI).
        let details = match error.get("data") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(data) => match data.get("details").or_else(|| data.get("message")) {
                Some(Value::String(text)) => Some(text.clone()),
                _ => Some(data.to_string()),
            },
        };
        if let Some(details) = details {
            let details: String = details.chars().take(300).collect();
            message = format!("{message}: {details}");
        }
        return Ok(Incoming::Response {
            id,
            result: Err(RpcError { code, message }),
        });
    }
    match obj.remove("result") {
        Some(result) => Ok(Incoming::Response {
            id,
            result: Ok(result),
        }),
        None => Err("a response with neither result nor error".to_string()),
    }
}

/// An id must be a number or a string.
fn check_id(id: &Value) -> Result<(), String> {
    if id.is_number() || id.is_string() {
        Ok(())
    } else {
        Err(format!("id {id} is neither a number nor a string"))
    }
}

/// A request line (with its newline).
pub fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    line(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

/// A notification line.
pub fn notification(method: &str, params: Value) -> Vec<u8> {
    line(json!({"jsonrpc": "2.0", "method": method, "params": params}))
}

/// A successful response line.
pub fn response(id: &Value, result: Value) -> Vec<u8> {
    line(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// An error response line.
pub fn error_response(id: &Value, code: i64, message: &str) -> Vec<u8> {
    line(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

fn line(value: Value) -> Vec<u8> {
    // serde_json escapes every control character inside strings, so the only newline is ours.
    let mut out = serde_json::to_vec(&value).expect("a JSON value always serializes");
    out.push(b'\n');
    out
}

/// Splits a byte stream into lines of at most `limit` bytes. A longer line is dropped whole
/// (up to its newline) and reported once, so one huge message costs no more memory than the
/// limit.
pub struct LineSplitter {
    /// Bytes of the current, unfinished line.
    partial: Vec<u8>,
    /// Most bytes a line may have.
    limit: usize,
    /// Set while the rest of an oversized line is being skipped; holds its length so far.
    skipping: Option<usize>,
}

/// What [`LineSplitter::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A complete line, without its newline (and without a `\r` before it).
    Line(Vec<u8>),
    /// A line longer than the limit was dropped; its length in bytes.
    TooLong(usize),
}

impl LineSplitter {
    pub fn new(limit: usize) -> Self {
        Self {
            partial: Vec::new(),
            limit,
            skipping: None,
        }
    }

    /// Feed bytes; complete lines and oversize reports come out in order.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Piece>) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, ends) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if let Some(skipped) = self.skipping.as_mut() {
                *skipped += chunk.len() + usize::from(ends);
                if ends {
                    out.push(Piece::TooLong(*skipped));
                    self.skipping = None;
                }
                continue;
            }
            if self.partial.len() + chunk.len() > self.limit {
                let skipped = self.partial.len() + chunk.len() + usize::from(ends);
                self.partial = Vec::new();
                if ends {
                    out.push(Piece::TooLong(skipped));
                } else {
                    self.skipping = Some(skipped);
                }
                continue;
            }
            self.partial.extend_from_slice(chunk);
            if ends {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    out.push(Piece::Line(line));
                }
            }
        }
    }

    /// Bytes of an unfinished line held now.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(line: &str, expect: Expect) {
        let parsed = match parse(line.as_bytes()) {
            Ok(message) => format!("{message:?}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&parsed);
    }

    #[test]
    fn messages() {
        check(
            r#"{"jsonrpc":"2.0","id":0,"method":"session/request_permission","params":{"a":1}}"#,
            expect![[
                r#"Request { id: Number(0), method: "session/request_permission", params: Object {"a": Number(1)} }"#
            ]],
        );
        check(
            r#"{"jsonrpc":"2.0","method":"session/update","params":{}}"#,
            expect![[r#"Notification { method: "session/update", params: Object {} }"#]],
        );
        check(
            r#"{"jsonrpc":"2.0","id":"x","result":null}"#,
            expect![[r#"Response { id: String("x"), result: Ok(Null) }"#]],
        );
        check(
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"Authentication required"}}"#,
            expect![[
                r#"Response { id: Number(3), result: Err(RpcError { code: -32000, message: "Authentication required" }) }"#
            ]],
        );
        check(
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"Internal error","data":{"details":"No previous sessions found for this project."}}}"#,
            expect![[
                r#"Response { id: Number(2), result: Err(RpcError { code: -32603, message: "Internal error: No previous sessions found for this project." }) }"#
            ]],
        );
        check(
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"Internal error","data":[1]}}"#,
            expect![[
                r#"Response { id: Number(2), result: Err(RpcError { code: -32603, message: "Internal error: [1]" }) }"#
            ]],
        );
        check(
            r#"{"id":4,"error":{"code":1}}"#,
            expect![[
                r#"Response { id: Number(4), result: Err(RpcError { code: 1, message: "error without a message: {\"code\":1}" }) }"#
            ]],
        );
    }

    #[test]
    fn malformed() {
        check(
            "hello",
            expect!["error: not JSON: expected value at line 1 column 1"],
        );
        check("[1,2]", expect!["error: not a JSON object"]);
        check(
            r#"{"jsonrpc":"1.0","id":1,"result":1}"#,
            expect![[r#"error: jsonrpc is "1.0", not "2.0""#]],
        );
        check(
            r#"{"jsonrpc":"2.0","method":7}"#,
            expect!["error: method is not a string"],
        );
        check(
            r#"{"jsonrpc":"2.0"}"#,
            expect!["error: neither a request, a notification nor a response"],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1}"#,
            expect!["error: a response with neither result nor error"],
        );
        check(
            r#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
            expect!["error: id [1] is neither a number nor a string"],
        );
    }

    #[test]
    fn encoding_has_one_newline() {
        let line = request(7, "session/prompt", json!({"text": "a\nb"}));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        assert_eq!(
            String::from_utf8(response(
                &json!(0),
                json!({"outcome": {"outcome": "cancelled"}})
            ))
            .unwrap(),
            "{\"id\":0,\"jsonrpc\":\"2.0\",\"result\":{\"outcome\":{\"outcome\":\"cancelled\"}}}\n"
        );
    }

    #[test]
    fn splitting_is_bounded() {
        let mut split = LineSplitter::new(8);
        let mut out = Vec::new();
        split.push(b"abc\r\n\n  \nde", &mut out);
        split.push(b"f\n0123456789", &mut out);
        assert_eq!(split.pending(), 0);
        split.push(b"abc\nok\n", &mut out);
        split.push(b"12345678\n123456789\n", &mut out);
        assert_eq!(
            out,
            [
                Piece::Line(b"abc".to_vec()),
                Piece::Line(b"def".to_vec()),
                Piece::TooLong(14),
                Piece::Line(b"ok".to_vec()),
                Piece::Line(b"12345678".to_vec()),
                Piece::TooLong(10),
            ]
        );
    }
}
