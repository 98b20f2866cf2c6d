//! Params decoding of every method on arbitrary JSON. Properties: no panic; an error names a
//! field (`params` for the whole object) of bounded length and has a bounded message, however
//! long the keys and values it complains about.
#![no_main]

use editor_protocol::jsonrpc::EXCERPT_CHARS;
use editor_protocol::methods::{decode_params_of, ALL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(params) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for method in ALL {
        if let Err(e) = decode_params_of(method, params.clone()).expect("a method of ALL") {
            assert!(
                !e.field.is_empty(),
                "{method}: no field named: {}",
                e.message
            );
            assert!(
                e.field.chars().count() <= EXCERPT_CHARS + 1,
                "{method}: {}",
                e.field
            );
            assert!(
                e.message.chars().count() <= 4 * EXCERPT_CHARS + 1,
                "{method}: {}",
                e.message
            );
        }
    }
});
