//! JSON-RPC error codes of the orch contract, standard and daemon-specific.

/// Invalid JSON was received.
pub const PARSE_ERROR: i32 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i32 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// Invalid method parameters; `data.field` names the field.
pub const INVALID_PARAMS: i32 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i32 = -32603;
/// A request other than `initialize` came first.
pub const SERVER_NOT_INITIALIZED: i32 = -32002;
/// The request was cancelled with `$/cancelRequest`.
pub const REQUEST_CANCELLED: i32 = -32800;
/// The object does not exist (`data.kind`, `data.id`).
pub const NOT_FOUND: i32 = -32001;
/// The object's state forbids the operation (`data.state`).
pub const CONFLICT: i32 = -32003;
/// The terminal backend is unavailable (`data.backend`).
pub const BACKEND_UNAVAILABLE: i32 = -32004;
/// A size or count limit was exceeded (`data.limit`).
pub const LIMIT_EXCEEDED: i32 = -32005;
/// The peer is not allowed.
pub const UNAUTHORIZED: i32 = -32006;
