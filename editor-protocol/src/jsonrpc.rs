//! JSON-RPC 2.0 messages and their strict parsing.
//!
//! [`parse`] turns one framed body into a [`Message`], or into the error response the peer should
//! get (-32700 for bytes that are not JSON, -32600 for JSON that is not a message), keeping the
//! request id whenever one can be read so the peer can match the error.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::errors;

/// A request id: number or string (LSP allows both).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id.
    Num(i64),
    /// A string id.
    Str(String),
}

/// For messages: a string id is quoted, and only its [`excerpt`].
impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{:?}", excerpt(s)),
        }
    }
}

/// Characters of client input an error message or `data` field quotes: enough to recognise the
/// input, never so much that an error repeats a huge input back (a 10 MB method name got a
/// 20 MB response).
pub const EXCERPT_CHARS: usize = 64;

/// `text` for quoting in an error: its first [`EXCERPT_CHARS`] characters, and `…` if there was
/// more.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// A JSON value for quoting in an error, like [`excerpt`]. Serialization stops once the excerpt
/// is full, so a huge value costs no more than a short one.
pub fn excerpt_json(value: &Value) -> String {
    /// Takes bytes up to `max`, then refuses, which ends serialization.
    struct Bounded {
        buf: Vec<u8>,
        max: usize,
    }
    impl std::io::Write for Bounded {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let room = self.max - self.buf.len();
            if room == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let n = bytes.len().min(room);
            self.buf.extend_from_slice(&bytes[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // One character more than the excerpt keeps, in the widest UTF-8: enough to tell whether
    // there was more.
    let mut w = Bounded {
        buf: Vec::new(),
        max: (EXCERPT_CHARS + 1) * 4,
    };
    let complete = serde_json::to_writer(&mut w, value).is_ok();
    let text = match std::str::from_utf8(&w.buf) {
        Ok(text) => text,
        // Cut inside a character: keep the whole ones.
        Err(e) => std::str::from_utf8(&w.buf[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut out = excerpt(text);
    if !complete && !out.ends_with('…') {
        out.push('…');
    }
    out
}

/// `message` with each quoted piece (`"…"` as Rust's `{:?}` writes it, or `` `…` `` as serde
/// quotes names) cut to its [`excerpt`]: for messages made elsewhere that quote client input.
/// Input with quote marks of its own can pair the pieces wrongly, so callers also bound the
/// whole.
pub fn excerpt_quotes(message: &str) -> String {
    let mut out = String::new();
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let close = c;
        let mut escaped = false;
        for (inside, c) in chars.by_ref().enumerate() {
            if c == close && !escaped {
                out.push(c);
                break;
            }
            // serde writes strings with Rust's escapes: `\"` does not end one.
            escaped = close == '"' && c == '\\' && !escaped;
            if inside < EXCERPT_CHARS {
                out.push(c);
            } else if inside == EXCERPT_CHARS {
                out.push('…');
            }
        }
    }
    out
}

/// A request: expects a response with the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id the response must carry.
    pub id: Id,
    /// The method name.
    pub method: String,
    /// Parameters (`null` when absent).
    pub params: Value,
}

/// A notification: no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name.
    pub method: String,
    /// Parameters (`null` when absent).
    pub params: Value,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    /// One of [`crate::errors`].
    pub code: i32,
    /// Human-readable, names the offending field or object.
    pub message: String,
    /// `{kind, ...}` details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ResponseError {
    /// An error with a code and message and `data.kind`.
    pub fn new(code: i32, kind: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: Some(json!({ "kind": kind })),
        }
    }

    /// Add a key to `data`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Some(Value::Object(map)) = &mut self.data {
            map.insert(key.to_string(), value.into());
        }
        self
    }

    /// -32602 naming `field`.
    pub fn invalid_params(field: &str, message: impl Into<String>) -> Self {
        Self::new(errors::INVALID_PARAMS, "invalidParams", message).with("field", field)
    }
}

/// A response to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id; `None` (JSON null) when the request's id could not be read.
    pub id: Option<Id>,
    /// `Ok(result)` or `Err(error)`.
    pub outcome: Result<Value, ResponseError>,
}

/// Any message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Has an id and a method.
    Request(Request),
    /// Has a method and no id.
    Notification(Notification),
    /// Has an id and a result or error.
    Response(Response),
}

impl Message {
    /// The JSON value of this message.
    pub fn to_value(&self) -> Value {
        match self {
            Message::Request(r) => {
                let mut m = json!({ "jsonrpc": "2.0", "id": r.id, "method": r.method });
                if !r.params.is_null() {
                    m["params"] = r.params.clone();
                }
                m
            }
            Message::Notification(n) => {
                let mut m = json!({ "jsonrpc": "2.0", "method": n.method });
                if !n.params.is_null() {
                    m["params"] = n.params.clone();
                }
                m
            }
            Message::Response(r) => match &r.outcome {
                Ok(v) => json!({ "jsonrpc": "2.0", "id": r.id, "result": v }),
                Err(e) => json!({ "jsonrpc": "2.0", "id": r.id, "error": e }),
            },
        }
    }

    /// Serialized body, ready for [`crate::framing::encode`]. Written straight from the message
    /// (no intermediate JSON value): this is on every reply's path.
    pub fn to_bytes(&self) -> Vec<u8> {
        fn null(v: &&Value) -> bool {
            v.is_null()
        }
        #[derive(Serialize)]
        struct Req<'a> {
            jsonrpc: &'static str,
            id: &'a Id,
            method: &'a str,
            #[serde(skip_serializing_if = "null")]
            params: &'a Value,
        }
        #[derive(Serialize)]
        struct Note<'a> {
            jsonrpc: &'static str,
            method: &'a str,
            #[serde(skip_serializing_if = "null")]
            params: &'a Value,
        }
        #[derive(Serialize)]
        struct Ok<'a> {
            jsonrpc: &'static str,
            id: &'a Option<Id>,
            result: &'a Value,
        }
        #[derive(Serialize)]
        struct Err<'a> {
            jsonrpc: &'static str,
            id: &'a Option<Id>,
            error: &'a ResponseError,
        }
        let out = match self {
            Message::Request(r) => serde_json::to_vec(&Req {
                jsonrpc: "2.0",
                id: &r.id,
                method: &r.method,
                params: &r.params,
            }),
            Message::Notification(n) => serde_json::to_vec(&Note {
                jsonrpc: "2.0",
                method: &n.method,
                params: &n.params,
            }),
            Message::Response(r) => match &r.outcome {
                Result::Ok(v) => serde_json::to_vec(&Ok {
                    jsonrpc: "2.0",
                    id: &r.id,
                    result: v,
                }),
                Result::Err(e) => serde_json::to_vec(&Err {
                    jsonrpc: "2.0",
                    id: &r.id,
                    error: e,
                }),
            },
        };
        out.expect("a message always serializes")
    }
}

/// Why a body is not a message, with the response to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseFailure {
    /// The id, when one could be read (so the peer can match the error).
    pub id: Option<Id>,
    /// -32700 or -32600 with a message saying what was wrong.
    pub error: ResponseError,
}

/// Parse one framed body.
pub fn parse(body: &[u8]) -> Result<Message, ParseFailure> {
    if let Some(message) = parse_plain(body) {
        return Ok(message);
    }
    let text = std::str::from_utf8(body).map_err(|e| ParseFailure {
        id: None,
        error: ResponseError::new(
            errors::PARSE_ERROR,
            "parse",
            format!(
                "message body is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ),
        ),
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| ParseFailure {
        id: None,
        error: ResponseError::new(
            errors::PARSE_ERROR,
            "parse",
            format!("message body is not valid JSON: {e}"),
        ),
    })?;
    from_value(value)
}

/// A request or notification as clients write them, read straight into its parts: building a
/// [`Value`] of the whole message (a map of its keys) and taking it apart was a tenth of the
/// daemon's time answering pipelined requests. Anything else, or anything wrong (a duplicate
/// key, a null id, odd params), is left to [`from_value`], which says what is wrong.
#[derive(Deserialize)]
struct Plain<'a> {
    #[serde(borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    method: Option<String>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Value>,
}

/// A field that is there, even as `null` (which `Option` would read as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// [`Plain`] read from `body`, if it is a well-formed request or notification.
fn parse_plain(body: &[u8]) -> Option<Message> {
    let plain: Plain = serde_json::from_slice(body).ok()?;
    if plain.jsonrpc.as_deref() != Some("2.0") {
        return None;
    }
    let method = plain.method?;
    let params = match plain.params {
        None | Some(Value::Null) => Value::Null,
        Some(v @ (Value::Object(_) | Value::Array(_))) => v,
        Some(_) => return None,
    };
    match plain.id {
        None => Some(Message::Notification(Notification { method, params })),
        Some(Value::Number(n)) => Some(Message::Request(Request {
            id: Id::Num(n.as_i64()?),
            method,
            params,
        })),
        Some(Value::String(id)) => Some(Message::Request(Request {
            id: Id::Str(id),
            method,
            params,
        })),
        Some(_) => None,
    }
}

fn invalid(id: Option<Id>, message: String) -> ParseFailure {
    ParseFailure {
        id,
        error: ResponseError::new(errors::INVALID_REQUEST, "invalidRequest", message),
    }
}

/// Interpret a JSON value as a message.
pub fn from_value(value: Value) -> Result<Message, ParseFailure> {
    let Value::Object(mut obj) = value else {
        let what = match value {
            Value::Array(_) => "an array (batches are not supported)",
            _ => "not an object",
        };
        return Err(invalid(None, format!("message is {what}")));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(read_id(v).map_err(|m| invalid(None, m))?)),
    };
    let known_id = id.clone().flatten();
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        other => {
            return Err(invalid(
                known_id,
                format!(
                    "field jsonrpc must be \"2.0\", got {}",
                    other.map_or("nothing".into(), excerpt_json)
                ),
            ))
        }
    }
    let params = take_params(&mut obj).map_err(|m| invalid(known_id.clone(), m))?;
    match obj.remove("method") {
        Some(Value::String(method)) => match id {
            None => Ok(Message::Notification(Notification { method, params })),
            Some(Some(id)) => Ok(Message::Request(Request { id, method, params })),
            Some(None) => Err(invalid(
                None,
                "field id must not be null in a request".into(),
            )),
        },
        Some(other) => Err(invalid(
            known_id,
            format!(
                "field method must be a string, got {}",
                excerpt_json(&other)
            ),
        )),
        None => {
            let Some(id) = id else {
                return Err(invalid(None, "message has neither method nor id".into()));
            };
            let outcome = match (obj.remove("result"), obj.remove("error")) {
                (Some(r), None) => Ok(r),
                (None, Some(e)) => Err(serde_json::from_value::<ResponseError>(e.clone())
                    .map_err(|_| {
                        invalid(
                            id.clone(),
                            format!("field error is not an error object: {}", excerpt_json(&e)),
                        )
                    })?),
                _ => {
                    return Err(invalid(
                        id,
                        "a response needs exactly one of result and error".into(),
                    ))
                }
            };
            Ok(Message::Response(Response { id, outcome }))
        }
    }
}

fn take_params(obj: &mut Map<String, Value>) -> Result<Value, String> {
    match obj.remove("params") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
        Some(v) => Err(format!(
            "field params must be an object or array, got {}",
            excerpt_json(&v)
        )),
    }
}

/// A request id: an integer that fits in 64 signed bits, or a string. The message says which
/// rule a number broke, rather than only that it is not an id.
fn read_id(v: Value) -> Result<Id, String> {
    match v {
        Value::String(s) => Ok(Id::Str(s)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Id::Num(i));
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            // 2^63: an integer literal beyond i64 reaches here as a float of at least this size.
            let out_of_range =
                n.is_u64() || (f.fract() == 0.0 && f.abs() >= 9.223_372_036_854_776e18);
            let shown = excerpt(&n.to_string());
            Err(if out_of_range {
                format!(
                    "field id {shown} is out of range: a number id must be an integer from {} to {} (or use a string)",
                    i64::MIN,
                    i64::MAX
                )
            } else if f.fract() == 0.0 {
                format!("field id {shown} is not written as an integer: write a number id without a fraction or exponent (or use a string)")
            } else {
                format!("field id {shown} is not an integer: a number id must be an integer (or use a string)")
            })
        }
        other => Err(format!(
            "field id must be a number or string, got {}",
            excerpt_json(&other)
        )),
    }
}

#[cfg(test)]
mod tests {
    /// Whatever the fast path reads, the full path reads the same; whatever it leaves, the full
    /// path answers (with the error that names what is wrong).
    #[test]
    fn the_plain_path_reads_what_the_full_path_reads() {
        let bodies = [
            r#"{"jsonrpc":"2.0","id":1,"method":"orch/status","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":"a\"b","method":"orch/x","params":[1,{"k":null}]}"#,
            r#"{"method":"m","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","method":"m","params":null,"extra":true}"#,
            r#"{"jsonrpc":"2\u002e0","id":-9223372036854775808,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","method":"n"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            r#"{"id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#,
        ];
        for body in bodies {
            let value: Value = serde_json::from_str(body).unwrap();
            let full = from_value(value).map_err(|f| f.error.message);
            if let Some(plain) = super::parse_plain(body.as_bytes()) {
                assert_eq!(Ok(plain), full, "{body}");
            }
            let parsed = parse(body.as_bytes()).map_err(|f| f.error.message);
            assert_eq!(parsed, full, "{body}");
        }
        assert!(super::parse_plain(bodies[0].as_bytes()).is_some());
        assert!(
            super::parse_plain(bodies[7].as_bytes()).is_none(),
            "null id"
        );
    }

    use super::*;

    fn kind(body: &str) -> String {
        match parse(body.as_bytes()) {
            Ok(Message::Request(r)) => format!("request {} {}", r.id, r.method),
            Ok(Message::Notification(n)) => format!("notification {}", n.method),
            Ok(Message::Response(r)) => format!("response {:?} {}", r.id, r.outcome.is_ok()),
            Err(f) => format!("error {:?} {} {}", f.id, f.error.code, f.error.message),
        }
    }

    #[test]
    fn shapes() {
        let cases = [
            (r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#, "request 1 a"),
            (r#"{"jsonrpc":"2.0","id":"x","method":"a","params":{}}"#, "request \"x\" a"),
            (r#"{"jsonrpc":"2.0","method":"n"}"#, "notification n"),
            (r#"{"jsonrpc":"2.0","id":3,"result":null}"#, "response Some(Num(3)) true"),
            (r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}"#, "response Some(Num(3)) false"),
            (r#"{"id":1,"method":"a"}"#, "error Some(Num(1)) -32600 field jsonrpc must be \"2.0\", got nothing"),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, "error Some(Num(1)) -32600 field method must be a string, got 5"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#, "error Some(Num(1)) -32600 field params must be an object or array, got 3"),
            (r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#, "error None -32600 field id must be a number or string, got {}"),
            (r#"{"jsonrpc":"2.0","id":9223372036854775807,"method":"a"}"#, "request 9223372036854775807 a"),
            (r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"a"}"#, "request -9223372036854775808 a"),
            (r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"a"}"#, "error None -32600 field id 9223372036854775808 is out of range: a number id must be an integer from -9223372036854775808 to 9223372036854775807 (or use a string)"),
            (r#"{"jsonrpc":"2.0","id":-9223372036854775809,"method":"a"}"#, "error None -32600 field id -9.223372036854776e+18 is out of range: a number id must be an integer from -9223372036854775808 to 9223372036854775807 (or use a string)"),
            (r#"{"jsonrpc":"2.0","id":1e300,"method":"a"}"#, "error None -32600 field id 1e+300 is out of range: a number id must be an integer from -9223372036854775808 to 9223372036854775807 (or use a string)"),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"a"}"#, "error None -32600 field id 1.5 is not an integer: a number id must be an integer (or use a string)"),
            (r#"{"jsonrpc":"2.0","id":2.0,"method":"a"}"#, "error None -32600 field id 2.0 is not written as an integer: write a number id without a fraction or exponent (or use a string)"),
            (r#"[1]"#, "error None -32600 message is an array (batches are not supported)"),
            (r#"{"jsonrpc":"2.0"}"#, "error None -32600 message has neither method nor id"),
            (r#"{"#, "error None -32700 message body is not valid JSON: EOF while parsing an object at line 1 column 1"),
        ];
        for (body, want) in cases {
            assert_eq!(kind(body), want, "{body}");
        }
        let bad = parse(b"\xff\xfe").unwrap_err();
        assert_eq!(bad.error.code, errors::PARSE_ERROR);
    }

    #[test]
    fn errors_quote_only_a_prefix_of_the_input() {
        let huge = "y".repeat(1 << 20);
        let bodies = [
            json!({"jsonrpc": huge, "id": 1, "method": "a"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": [huge]}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "a", "params": huge}),
            json!({"jsonrpc": "2.0", "id": [huge], "method": "a"}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": huge}}),
        ];
        for body in bodies {
            let failure = from_value(body).unwrap_err();
            let wire = Message::Response(Response {
                id: failure.id,
                outcome: Err(failure.error),
            })
            .to_bytes();
            assert!(wire.len() < 300, "{}", String::from_utf8_lossy(&wire));
            assert!(String::from_utf8_lossy(&wire).contains("yyy…"));
        }
        // A huge number id: its digits are quoted as text, so cut like text.
        let digits = "9".repeat(1000);
        let body = format!(r#"{{"jsonrpc":"2.0","id":{digits},"method":"a"}}"#);
        let failure = parse(body.as_bytes()).unwrap_err();
        assert!(
            failure.error.message.len() < 300,
            "{}",
            failure.error.message
        );
        assert_eq!(
            Id::Str(huge.clone()).to_string(),
            format!("{:?}", excerpt(&huge))
        );
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt("short"), "short");
        let exact = "é".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact), exact);
        assert_eq!(excerpt(&format!("{exact}!")), format!("{exact}…"));
        assert_eq!(excerpt_json(&json!("a")), r#""a""#);
        assert_eq!(excerpt_json(&json!({"k": [1, 2]})), r#"{"k":[1,2]}"#);
        let long = json!(["🦀".repeat(100)]);
        let shown = excerpt_json(&long);
        assert_eq!(shown, format!("[\"{}…", "🦀".repeat(EXCERPT_CHARS - 2)));
        let long = "q".repeat(100);
        assert_eq!(
            excerpt_quotes(&format!(
                r#"{:?} and `{long}` and "a\"b" stay"#,
                format!("{long}\"{long}")
            )),
            format!(
                r#""{}…" and `{}…` and "a\"b" stay"#,
                &format!("{long:?}")[1..EXCERPT_CHARS + 1],
                &long[..EXCERPT_CHARS]
            )
        );
        // Exactly full, then cut: still marked.
        let full = json!("é".repeat(2 * EXCERPT_CHARS));
        assert!(excerpt_json(&full).ends_with('…'));
    }

    #[test]
    fn bytes_match_the_json_value() {
        let msgs = [
            Message::Request(Request {
                id: Id::Str("a".into()),
                method: "m".into(),
                params: Value::Null,
            }),
            Message::Notification(Notification {
                method: "n".into(),
                params: json!({"x": [1]}),
            }),
            Message::Response(Response {
                id: None,
                outcome: Err(ResponseError::new(-1, "k", "boom")),
            }),
            Message::Response(Response {
                id: Some(Id::Num(2)),
                outcome: Ok(json!(null)),
            }),
        ];
        for m in msgs {
            let from_bytes: Value = serde_json::from_slice(&m.to_bytes()).unwrap();
            assert_eq!(from_bytes, m.to_value());
        }
    }

    #[test]
    fn round_trip() {
        let m = Message::Request(Request {
            id: Id::Num(7),
            method: "orch/status".into(),
            params: json!({}),
        });
        assert_eq!(parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn numbers_read_exactly_and_survive_being_written_again() {
        // Found by the jsonrpc fuzz target (fuzz/: a message parsed, written and parsed again must
        // be the same message): serde_json's default float parsing can be off by one unit in the
        // last place, so a number read and written back (a hook event, a relayed result) changed.
        // The workspace enables serde_json's `float_roundtrip`.
        let body = br#"{"jsonrpc":"2.0","method":"n","params":[3.9252506537613346e-227,-1.6810777060633125e53,1.9152320786075119e86]}"#;
        let m = parse(body).unwrap();
        assert_eq!(parse(&m.to_bytes()).unwrap(), m);
        let Message::Notification(n) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            n.params,
            json!([
                3.9252506537613346e-227,
                -1.6810777060633125e53,
                1.9152320786075119e86
            ])
        );
    }

    #[test]
    fn mutated_bodies_never_panic_and_errors_stay_short() {
        // The stable stand-in for `cargo fuzz run jsonrpc` (fuzz/): what parses survives being
        // written and parsed again; what does not is answered with a short error.
        use crate::mutate::{mutate, Rng};
        let corpus: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":1,"method":"orch/status","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":"a-1","method":"orch/agent/get","params":{"id":"x"}}"#,
            br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":3}}"#,
            br#"{"jsonrpc":"2.0","id":4,"result":{"items":[1,2,{"k":null}]}}"#,
            br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"m","data":{"kind":"x"}}}"#,
            br#"{"jsonrpc":"2.0","id":null,"result":null}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"}]"#,
            br#"{"jsonrpc":"2.0","id":1.5,"method":"a","params":[1,"two",3.0]}"#,
        ];
        let mut rng = Rng::new(0x1d_c0de);
        let (mut ok, mut failed) = (0, 0);
        for round in 0..20_000 {
            let base = *rng.pick(corpus);
            let body = mutate(&mut rng, base, corpus);
            match parse(&body) {
                Ok(m) => {
                    ok += 1;
                    let again = parse(&m.to_bytes());
                    assert_eq!(again.as_ref(), Ok(&m), "round {round}");
                }
                Err(f) => {
                    failed += 1;
                    let wire = Message::Response(Response {
                        id: f.id.clone(),
                        outcome: Err(f.error),
                    })
                    .to_bytes();
                    let id = f.id.map_or(0, |id| serde_json::to_vec(&id).unwrap().len());
                    assert!(
                        wire.len() <= id + 1024,
                        "round {round}: {} bytes",
                        wire.len()
                    );
                }
            }
        }
        assert!(ok > 300 && failed > 5_000, "{ok} parsed, {failed} refused");
    }
}
