//! Seeded random mutation of inputs, for the fuzz-like tests that run on stable within the
//! normal test suite (the long runs are `cargo fuzz`, in `fuzz/`; see docs/testing.md). A small
//! xorshift generator, and mutations of a corpus of valid inputs: bit flips, bytes set, ranges
//! deleted, duplicated or repeated, tokens that matter to our parsers inserted, other corpus
//! entries spliced in. Deterministic: a failing case is named by its round and replays exactly.
//!
//! Test-only, and shared with the daemon's tests (`#[path]` include), so it depends on nothing.

#![allow(dead_code)]

/// Largest input a mutation makes: enough to cross every limit that matters per read, small
/// enough to keep thousands of rounds fast.
pub const MAX_LEN: usize = 64 << 10;

/// xorshift64: tiny, fast, and good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    /// A generator; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that mean something to framing, JSON, TOML, tmux control mode or a terminal.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"Content-Length: ",
    b"Content-Length: 99999999999999999999",
    b"Content-Type: x",
    b":",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1.5",
    b"1e999",
    b"9223372036854775808",
    b"18446744073709551616",
    b"\"id\":",
    b"\"method\":",
    b"\"params\":",
    b"=",
    b"[[",
    b"]]",
    b"'''",
    b"%begin 1 2 1",
    b"%end 1 2 1",
    b"%error 1 2 1",
    b"%output %1 ",
    b"%exit",
    b"\\033",
    b"\\377",
    b"\x1b",
    b"\x1b[",
    b"\x1b]",
    b"\x1b[?1049h",
    b"\x1b[6n",
    b"\x07",
    b"\x9b",
    b"\x00",
    b"\xff",
    b"\xc3",
    "é".as_bytes(),
    "🦀".as_bytes(),
    "\u{200b}".as_bytes(),
    b"~",
    b"%",
    b"#{",
];

/// A mutation of `input`: one to four edits, some of which splice in parts of `corpus`.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at.min(end)..end);
            }
            3 => {
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = out[at.min(end)..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            4 | 5 => {
                let token = rng.pick(TOKENS);
                out.splice(at..at, token.iter().copied());
            }
            6 if !corpus.is_empty() => {
                let other = rng.pick(corpus);
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(other.len() + 1)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            7 => out.truncate(at),
            _ => {
                // A range repeated: long lines, deep nesting, many headers.
                let end = (at + 1 + rng.below(8)).min(len);
                let piece = out[at.min(end)..end].to_vec();
                let times = 1 + rng.below(2000);
                let grown: Vec<u8> = piece.repeat(times);
                out.splice(at..at, grown);
            }
        }
        out.truncate(MAX_LEN);
    }
    out
}

/// Cut `bytes` into reads of random sizes (some of one byte, some of everything).
pub fn reads<'a>(rng: &mut Rng, bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let max = *rng.pick(&[1, 7, 64, 4096, usize::MAX]);
    while !rest.is_empty() {
        let n = (1 + rng.below(max.min(rest.len()))).min(rest.len());
        let (read, tail) = rest.split_at(n);
        out.push(read);
        rest = tail;
    }
    out
}
