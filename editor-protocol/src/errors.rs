//! JSON-RPC error codes of the orch contract, standard and daemon-specific.
//!
//! Declared through one macro so that [`ALL`] lists every code: the protocol reference test
//! checks that `docs/protocol.md` documents each, and a code cannot be added without it.

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        $($(#[$doc])* pub const $name: i32 = $value;)*
        /// Every code, by name.
        pub const ALL: &[(&str, i32)] = &[$((stringify!($name), $name)),*];
    };
}

codes! {
    /// Invalid JSON was received.
    PARSE_ERROR = -32700;
    /// The JSON sent is not a valid request object.
    INVALID_REQUEST = -32600;
    /// The method does not exist.
    METHOD_NOT_FOUND = -32601;
    /// Invalid method parameters; `data.field` names the field.
    INVALID_PARAMS = -32602;
    /// Internal error.
    INTERNAL_ERROR = -32603;
    /// A request other than `initialize` came first.
    SERVER_NOT_INITIALIZED = -32002;
    /// The request was cancelled with `$/cancelRequest`.
    REQUEST_CANCELLED = -32800;
    /// The object does not exist (`data.kind`, `data.id`).
    NOT_FOUND = -32001;
    /// The object's state forbids the operation (`data.state`).
    CONFLICT = -32003;
    /// The terminal backend is unavailable (`data.backend`).
    BACKEND_UNAVAILABLE = -32004;
    /// A size or count limit was exceeded (`data.limit`).
    LIMIT_EXCEEDED = -32005;
    /// The peer is not allowed.
    UNAUTHORIZED = -32006;
}
