//! LSP base-protocol framing: `Content-Length: N\r\n\r\n` followed by N bytes.
//!
//! [`FrameDecoder`] is fed whatever bytes arrived and yields whole bodies. The announced length is
//! checked against the limit before any body buffer is reserved, and headers are bounded too, so a
//! hostile peer cannot make the reader allocate. No I/O here.

use std::fmt;

use crate::jsonrpc::excerpt;

/// Default largest body accepted: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;
/// Largest header section accepted before `\r\n\r\n`.
pub const MAX_HEADER_BYTES: usize = 8 << 10;

/// Framing failures. All are unrecoverable for the connection: the stream position is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header section is not `Name: value` lines, or not ASCII.
    BadHeader(String),
    /// No `Content-Length` header.
    MissingLength,
    /// `Content-Length` is not a non-negative integer.
    BadLength(String),
    /// `Content-Length` exceeds the limit.
    TooLarge { length: u64, max: usize },
    /// The header section is longer than [`MAX_HEADER_BYTES`].
    HeaderTooLong,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadHeader(line) => {
                write!(f, "malformed header line {:?}", excerpt(line))
            }
            FrameError::MissingLength => write!(f, "header has no Content-Length"),
            FrameError::BadLength(v) => {
                write!(f, "Content-Length {:?} is not a number", excerpt(v))
            }
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "Content-Length {length} exceeds the limit of {max} bytes"
                )
            }
            FrameError::HeaderTooLong => {
                write!(f, "header section longer than {MAX_HEADER_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Frame `body` for sending.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    push_header(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// Append the header of a frame whose body has `len` bytes (`Content-Length: N\r\n\r\n`),
/// without the formatting machinery: a server framing many small messages pays for this once
/// per message.
pub fn push_header(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Bytes of the frame of a `len`-byte body: its header and the body.
pub fn frame_len(len: usize) -> usize {
    "Content-Length: \r\n\r\n".len() + len.checked_ilog10().unwrap_or(0) as usize + 1 + len
}

/// Incremental decoder of framed bodies.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes received; those before `start` are consumed.
    buf: Vec<u8>,
    /// Where unconsumed bytes begin: frames are cut by moving this, not by copying what
    /// follows them (which made decoding quadratic in the bytes buffered).
    start: usize,
    /// Largest body accepted.
    max_body: usize,
    /// Body length of the frame whose header was parsed, while its body is incomplete.
    want: Option<usize>,
    /// Bytes after `start` already searched for the header's end without finding it, so a
    /// header trickled a byte at a time is not searched again from its start on every byte.
    scanned: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY)
    }
}

impl FrameDecoder {
    /// A decoder refusing bodies over `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_body,
            want: None,
            scanned: 0,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        // Reclaim consumed space before growing, so the buffer stays near one read's size.
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned (a partial frame).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let want = match self.want {
            Some(n) => n,
            None => {
                let pending = &self.buf[self.start..];
                // The header's end is only looked for where a header within the limit could
                // end: a section longer than the limit is refused whether its end is in this
                // read, a later one, or never (it arrived in one piece, or is trickled).
                let window = &pending[..pending.len().min(MAX_HEADER_BYTES + 4)];
                let from = self.scanned.saturating_sub(3);
                let Some(end) = find_header_end(&window[from..]).map(|i| from + i) else {
                    if window.len() == MAX_HEADER_BYTES + 4 {
                        return Err(FrameError::HeaderTooLong);
                    }
                    self.scanned = window.len();
                    return Ok(None);
                };
                self.scanned = 0;
                let n = parse_header(&pending[..end], self.max_body)?;
                self.start += end + 4;
                self.want = Some(n);
                n
            }
        };
        let have = self.buf.len() - self.start;
        if have < want {
            // Reserve only now that the length is known to be within the limit.
            self.buf.reserve(want - have);
            return Ok(None);
        }
        let body = self.buf[self.start..self.start + want].to_vec();
        self.start += want;
        self.want = None;
        Ok(Some(body))
    }
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_header(header: &[u8], max_body: usize) -> Result<usize, FrameError> {
    let text = std::str::from_utf8(header)
        .map_err(|_| FrameError::BadHeader(String::from_utf8_lossy(header).into_owned()))?;
    let mut length = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FrameError::BadHeader(line.to_string()));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            let n: u64 = value
                .parse()
                .map_err(|_| FrameError::BadLength(value.to_string()))?;
            if n > max_body as u64 {
                return Err(FrameError::TooLarge {
                    length: n,
                    max: max_body,
                });
            }
            length = Some(n as usize);
        }
        // Content-Type and unknown headers are accepted and ignored.
    }
    length.ok_or(FrameError::MissingLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_frame_lengths_match_formatting() {
        for len in [0, 1, 9, 10, 99, 100, 12_345, 1 << 20, usize::MAX] {
            let mut out = Vec::new();
            push_header(&mut out, len);
            assert_eq!(out, format!("Content-Length: {len}\r\n\r\n").into_bytes());
            if len < 1 << 30 {
                assert_eq!(frame_len(len), encode(&vec![b'x'; len]).len());
            }
        }
    }

    #[test]
    fn decodes_split_and_pipelined_frames() {
        let mut d = FrameDecoder::default();
        let mut bytes = encode(b"{\"a\":1}");
        bytes.extend(encode(b"{}"));
        let (a, b) = bytes.split_at(5);
        d.push(a);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(b);
        assert_eq!(d.next_frame(), Ok(Some(b"{\"a\":1}".to_vec())));
        assert_eq!(d.next_frame(), Ok(Some(b"{}".to_vec())));
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn many_frames_in_one_read_and_splits_across_reads() {
        let mut d = FrameDecoder::default();
        let bodies: Vec<String> = (0..1000).map(|i| format!("{{\"i\":{i}}}")).collect();
        let stream: Vec<u8> = bodies.iter().flat_map(|b| encode(b.as_bytes())).collect();
        let mut got = Vec::new();
        // Uneven reads: every split point of headers and bodies is exercised somewhere.
        for chunk in stream.chunks(777) {
            d.push(chunk);
            while let Some(body) = d.next_frame().unwrap() {
                got.push(String::from_utf8(body).unwrap());
            }
        }
        assert_eq!(got, bodies);
        assert_eq!(d.buffered(), 0);
        assert!(
            d.buf.len() < 2 * 777,
            "consumed space is reclaimed: {}",
            d.buf.len()
        );
    }

    #[test]
    fn content_type_is_ignored() {
        let mut d = FrameDecoder::default();
        d.push(b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(d.next_frame(), Ok(Some(b"{}".to_vec())));
    }

    #[test]
    fn refuses_huge_length_before_allocating() {
        let mut d = FrameDecoder::new(1024);
        d.push(b"Content-Length: 99999999999999\r\n\r\n");
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                length: 99999999999999,
                max: 1024
            })
        );
        assert!(d.buf.capacity() < 4096);
    }

    #[test]
    fn refuses_bad_headers() {
        let mut d = FrameDecoder::default();
        d.push(b"Content-Length: abc\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadLength("abc".into())));
        let mut d = FrameDecoder::default();
        d.push(b"X-Other: 1\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::MissingLength));
        let mut d = FrameDecoder::default();
        d.push(b"garbage\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadHeader("garbage".into())));
        let mut d = FrameDecoder::default();
        d.push(&vec![b'x'; MAX_HEADER_BYTES + 4]);
        assert_eq!(d.next_frame(), Err(FrameError::HeaderTooLong));
    }

    /// A header section of exactly `len` bytes (before `\r\n\r\n`) announcing a 2-byte body.
    fn header_of(len: usize) -> Vec<u8> {
        let tail = b"\r\nContent-Length: 2";
        let mut h = b"X-Pad: ".to_vec();
        h.resize(len - tail.len(), b'a');
        h.extend_from_slice(tail);
        assert_eq!(h.len(), len);
        h
    }

    #[test]
    fn header_limit_holds_when_the_header_arrives_in_one_piece() {
        // The probe's cases: 5,000 header lines (58,890 bytes) and one 8,332-byte line, each
        // in one read with the whole frame.
        let lines: Vec<u8> = b"X-Pad: 123\r\n"
            .repeat(5000)
            .into_iter()
            .chain(b"Content-Length: 2\r\n\r\n{}".iter().copied())
            .collect();
        let mut long_line = b"X-Pad: ".to_vec();
        long_line.resize(8332, b'a');
        long_line.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\n{}");
        for frame in [lines, long_line] {
            let mut d = FrameDecoder::default();
            d.push(&frame);
            assert_eq!(d.next_frame(), Err(FrameError::HeaderTooLong));
        }
        // Exactly at the limit is fine; one byte over is not, however the bytes arrive.
        for chunk in [1, 3, 7, 4096, usize::MAX] {
            for (len, ok) in [(MAX_HEADER_BYTES, true), (MAX_HEADER_BYTES + 1, false)] {
                let mut frame = header_of(len);
                frame.extend_from_slice(b"\r\n\r\n{}");
                let mut d = FrameDecoder::default();
                let mut got = Ok(None);
                for piece in frame.chunks(chunk.min(frame.len())) {
                    d.push(piece);
                    got = d.next_frame();
                    if got != Ok(None) {
                        break;
                    }
                }
                let want = if ok {
                    Ok(Some(b"{}".to_vec()))
                } else {
                    Err(FrameError::HeaderTooLong)
                };
                assert_eq!(got, want, "header of {len} bytes in pieces of {chunk}");
            }
        }
    }

    #[test]
    fn an_over_long_header_is_refused_once_the_limit_is_passed() {
        // Trickled a byte at a time, a header without an end is refused as soon as it is too
        // long, not when some larger buffer fills; nothing large is held meanwhile.
        let mut d = FrameDecoder::default();
        for i in 0.. {
            d.push(b"a");
            match d.next_frame() {
                Ok(None) => assert!(i < MAX_HEADER_BYTES + 4, "still waiting after {i} bytes"),
                Err(e) => {
                    assert_eq!(e, FrameError::HeaderTooLong);
                    assert_eq!(i + 1, MAX_HEADER_BYTES + 4);
                    break;
                }
                Ok(Some(_)) => unreachable!(),
            }
        }
        assert!(d.buf.capacity() < 4 * MAX_HEADER_BYTES);
    }

    #[test]
    fn header_errors_quote_only_a_prefix() {
        let mut d = FrameDecoder::default();
        let mut line = vec![b'z'; 8000];
        line.extend_from_slice(b"\r\n\r\n");
        d.push(&line);
        let e = d.next_frame().unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
        let mut d = FrameDecoder::default();
        let mut bad = b"Content-Length: ".to_vec();
        bad.extend(vec![b'9'; 8000]);
        bad.extend_from_slice(b"x\r\n\r\n");
        d.push(&bad);
        let e = d.next_frame().unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn mutated_streams_never_panic_and_stay_bounded() {
        // The stable stand-in for `cargo fuzz run frame_decoder` (fuzz/): mutations of valid
        // streams, cut into reads of random sizes, against decoders with various limits.
        use crate::jsonrpc::EXCERPT_CHARS;
        use crate::mutate::{mutate, reads, Rng};
        let mut pipelined = encode(br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#);
        pipelined.extend(encode(b"{}"));
        pipelined.extend(encode(&[b'x'; 300]));
        let corpus: Vec<Vec<u8>> = vec![
            encode(b"{}"),
            pipelined,
            b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"
                .to_vec(),
            b"content-length:0\r\n\r\n".to_vec(),
            header_of(MAX_HEADER_BYTES),
        ];
        let corpus: Vec<&[u8]> = corpus.iter().map(Vec::as_slice).collect();
        let mut rng = Rng::new(0x5eed_f4a3);
        let (mut frames, mut errors) = (0, 0);
        for round in 0..20_000 {
            let base = *rng.pick(&corpus);
            let input = mutate(&mut rng, base, &corpus);
            let max_body = 1usize << rng.below(20);
            let mut d = FrameDecoder::new(max_body);
            'stream: for read in reads(&mut rng, &input) {
                d.push(read);
                loop {
                    match d.next_frame() {
                        Ok(Some(body)) => {
                            frames += 1;
                            assert!(body.len() <= max_body, "round {round}");
                        }
                        Ok(None) => break,
                        Err(e) => {
                            errors += 1;
                            // At most EXCERPT_CHARS characters of input, each escaped to
                            // at most 10 (`\u{10ffff}`).
                            let len = e.to_string().len();
                            assert!(len <= 10 * EXCERPT_CHARS + 64, "round {round}: {e}");
                            break 'stream;
                        }
                    }
                }
                assert!(
                    d.buffered() <= MAX_HEADER_BYTES + 4 + max_body + read.len(),
                    "round {round}: {} bytes buffered",
                    d.buffered()
                );
            }
        }
        // The mutations reach both sides.
        assert!(
            frames > 5_000 && errors > 2_000,
            "{frames} frames, {errors} errors"
        );
    }
}
