//! The LSP frame decoder on arbitrary bytes, cut into reads of arbitrary sizes. Properties: no
//! panic; no body over the limit; nothing buffered beyond one header, one body and one read; an
//! error's message is short whatever the input; and how the bytes are cut into reads changes
//! nothing (the same bodies, then the same error or the same wait for more).
#![no_main]

use editor_protocol::framing::{FrameDecoder, FrameError, MAX_HEADER_BYTES};
use editor_protocol::jsonrpc::EXCERPT_CHARS;
use libfuzzer_sys::fuzz_target;

/// Bodies decoded and how the stream ended: an error, or waiting for more bytes.
type Outcome = (Vec<Vec<u8>>, Option<FrameError>);

fn decode(bytes: &[u8], chunk: usize, max_body: usize) -> Outcome {
    let mut d = FrameDecoder::new(max_body);
    let mut bodies = Vec::new();
    for read in bytes.chunks(chunk) {
        d.push(read);
        loop {
            match d.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= max_body, "{} > {max_body}", body.len());
                    bodies.push(body);
                }
                Ok(None) => break,
                Err(e) => {
                    // At most EXCERPT_CHARS characters of input, each escaped to at most 10.
                    let len = e.to_string().len();
                    assert!(len <= 10 * EXCERPT_CHARS + 64, "{len} bytes: {e}");
                    return (bodies, Some(e));
                }
            }
        }
        assert!(
            d.buffered() <= MAX_HEADER_BYTES + 4 + max_body + read.len(),
            "{} bytes buffered",
            d.buffered()
        );
    }
    (bodies, None)
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let chunk = usize::from(*a % 64) + 1;
    let max_body = 1usize << (b % 24);
    let cut = decode(rest, chunk, max_body);
    let whole = decode(rest, rest.len().max(1), max_body);
    assert_eq!(cut, whole, "reads of {chunk} bytes and one read disagree");
});
