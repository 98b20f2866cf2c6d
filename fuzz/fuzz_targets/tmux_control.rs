//! The tmux control-mode framing on arbitrary output, split into lines as the reader does.
//! Properties: no panic; `%output` data never grows when decoded; and the framer agrees with a
//! model of the protocol: a block opens on `%begin` outside a block, holds every line fed until
//! the `%end`/`%error` with the same numbers (anything else, `%output` included, is data inside
//! it), and a notification outside a block is passed on as parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch::adapters::tmux::control::{decode_output, parse_line, Event, Framer, Line};

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::default();
    // The model: the open block's guard and how many lines it holds.
    let mut open = None;
    for line in data.split(|&b| b == b'\n') {
        assert!(decode_output(line).len() <= line.len());
        let parsed = parse_line(line);
        let event = framer.feed(line);
        match (open.take(), parsed) {
            (Some((guard, n)), Line::End(g) | Line::Error(g)) if g == guard => {
                let Event::Block { block, flags } = event else {
                    panic!("{line:?} closes the block, got {event:?}");
                };
                assert_eq!(block.lines.len(), n);
                assert_eq!(block.error, line.starts_with(b"%error"));
                assert_eq!(flags, guard.flags);
            }
            (Some((guard, n)), _) => {
                assert_eq!(event, Event::None, "{line:?} inside a block");
                open = Some((guard, n + 1));
            }
            (None, Line::Begin(g)) => {
                assert_eq!(event, Event::None);
                open = Some((g, 0));
            }
            (None, Line::Output { pane, data: out }) => {
                assert!(out.len() <= line.len());
                assert_eq!(event, Event::Output { pane, data: out });
            }
            (None, Line::Exit(reason)) => assert_eq!(event, Event::Exit(reason)),
            (None, _) => assert_eq!(event, Event::None),
        }
    }
});
