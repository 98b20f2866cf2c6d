//! LSP base-protocol framing: `Content-Length: N\r\n\r\n` followed by N bytes.
//!
//! [`FrameDecoder`] is fed whatever bytes arrived and yields whole bodies. The announced length is
//! checked against the limit before any body buffer is reserved, and headers are bounded too, so a
//! hostile peer cannot make the reader allocate. No I/O here.

use std::fmt;

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
    /// The header section did not end within [`MAX_HEADER_BYTES`].
    HeaderTooLong,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadHeader(line) => write!(f, "malformed header line {line:?}"),
            FrameError::MissingLength => write!(f, "header has no Content-Length"),
            FrameError::BadLength(v) => write!(f, "Content-Length {v:?} is not a number"),
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
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
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
                let Some(end) = find_header_end(pending) else {
                    if pending.len() > MAX_HEADER_BYTES {
                        return Err(FrameError::HeaderTooLong);
                    }
                    return Ok(None);
                };
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
        d.push(&vec![b'x'; MAX_HEADER_BYTES + 1]);
        assert_eq!(d.next_frame(), Err(FrameError::HeaderTooLong));
    }
}
