//! The JSON-RPC parser on arbitrary bodies. Properties: no panic; a message parsed survives being
//! written and parsed again; a body refused gets -32700 or -32600 with a short message, and the
//! response sent back does not grow with the input (except for the id, echoed as the protocol
//! requires).
#![no_main]

use editor_protocol::errors::{INVALID_REQUEST, PARSE_ERROR};
use editor_protocol::jsonrpc::{parse, Message, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(m) => {
            let again = parse(&m.to_bytes()).expect("a message written parses");
            assert_eq!(again, m);
        }
        Err(f) => {
            assert!(
                [PARSE_ERROR, INVALID_REQUEST].contains(&f.error.code),
                "code {}",
                f.error.code
            );
            assert!(f.error.message.len() <= 1024, "{}", f.error.message.len());
            let wire = Message::Response(Response {
                id: f.id.clone(),
                outcome: Err(f.error),
            })
            .to_bytes();
            let id = f.id.map_or(0, |id| serde_json::to_vec(&id).unwrap().len());
            assert!(wire.len() <= id + 2048, "{} bytes", wire.len());
        }
    }
});
