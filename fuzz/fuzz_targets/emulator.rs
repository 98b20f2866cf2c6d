//! The terminal emulator on arbitrary program output, with resizes between reads. The first two
//! bytes choose the size; after that a 0xff byte (never part of UTF-8) followed by two more is a
//! resize, everything else is output. Properties: no panic; answers to the program stay in
//! proportion to its output; the screen keeps the size it was given (two columns at least), the
//! cursor on it, and a snapshot holds at most the history asked for; and the snapshot's repaint,
//! played into a fresh view of the same size, shows the same text and title with the cursor in
//! the same place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch::adapters::emulator::Emulator;

// Sizes and history kept modest: initialising cells dominates each run (every cell of a grid is
// compared under the fuzzer's instrumentation), and small grids reach every edge as well.
const HISTORY: usize = 20;
const MAX_COLS: u8 = 120;
const MAX_ROWS: u8 = 40;

fuzz_target!(|data: &[u8]| {
    let [cols, rows, rest @ ..] = data else {
        return;
    };
    let (mut cols, mut rows) = (
        u16::from(*cols % MAX_COLS) + 1,
        u16::from(*rows % MAX_ROWS) + 1,
    );
    let mut term = Emulator::new(cols, rows, HISTORY);
    let mut answers = 0;
    for (i, part) in rest.split(|&b| b == 0xff).enumerate() {
        let mut output = part;
        if i > 0 {
            if let [c, r, more @ ..] = part {
                (cols, rows) = (u16::from(*c % MAX_COLS) + 1, u16::from(*r % MAX_ROWS) + 1);
                term.resize(cols, rows);
                output = more;
            }
        }
        answers += term.feed(output).len();
    }
    assert!(
        answers <= 64 * rest.len() + 64,
        "{answers} bytes of answers"
    );
    // Fewer than two columns are emulated two wide (a wide character must fit).
    let cols = cols.max(2);
    let snap = term.snapshot(HISTORY);
    assert_eq!((snap.cols, snap.rows), (cols, rows));
    assert!(snap.lines.len() <= usize::from(rows) + HISTORY);
    assert!(snap.cursor_row < rows && snap.cursor_col <= cols);
    let text = term.visible_text();
    assert_eq!(text.split('\n').count(), usize::from(rows));

    let mut view = Emulator::new(cols, rows, 0);
    view.feed(snap.ansi.as_bytes());
    let again = view.snapshot(0);
    assert_eq!(
        view.visible_text(),
        text,
        "the repaint shows another screen"
    );
    assert_eq!(
        (again.cursor_row, again.cursor_col),
        (snap.cursor_row, snap.cursor_col),
        "the repaint puts the cursor elsewhere"
    );
    assert_eq!(again.title, snap.title, "the repaint sets another title");
});
