//! A headless terminal emulator: the screen, scrollback, cursor and modes of one terminal, kept
//! by feeding it everything the program prints.
//!
//! It wraps alacritty_terminal's `Term` and its escape-sequence parser, captures what the
//! terminal would send back to the program (cursor position reports, device attributes) so the
//! caller can write it to the pty, and renders the screen as text lines and as a repaint
//! sequence for a fresh view. It knows nothing of ptys, processes, threads or the wire: bytes in,
//! replies and snapshots out.

mod asleep;

use std::fmt::Write as _;
use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alacritty_terminal::event::{Event, EventListener};
use alacritty_terminal::grid::{Dimensions, Grid, Row};
use alacritty_terminal::index::{Column, Line};
use alacritty_terminal::term::cell::{Cell, Flags};
use alacritty_terminal::term::{Config, Term, TermMode};
use alacritty_terminal::vte::ansi::{Color, NamedColor, Processor, Timeout};

use crate::ports::ScreenSnapshot;

use asleep::Asleep;

/// One terminal's screen state, fed with the program's output.
pub struct Emulator {
    /// Grids (primary with scrollback, alternate), cursor and modes.
    term: Term<Listener>,
    /// The escape-sequence parser; it keeps a sequence split across two feeds until it ends.
    parser: Processor<NoSync>,
    /// Replies and title captured from the terminal's events, shared with its listener.
    captured: Arc<Mutex<Captured>>,
    /// Lines of history kept, as configured.
    scrollback: usize,
    /// The screen while it sleeps (see [`Emulator::sleep`]); `term` then holds tiny grids.
    asleep: Option<Asleep>,
}

impl Emulator {
    /// A blank terminal of `cols` x `rows` cells keeping `scrollback` lines of history. A size
    /// below one row is raised to one (the grid cannot be empty), and below two columns to two
    /// (see [`MIN_COLS`]).
    pub fn new(cols: u16, rows: u16, scrollback: usize) -> Self {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let config = Config {
            scrolling_history: scrollback,
            ..Config::default()
        };
        let size = Size::new(cols, rows);
        let term = Term::new(
            config,
            &size,
            Listener {
                captured: captured.clone(),
            },
        );
        Self {
            term,
            parser: Processor::new(),
            captured,
            scrollback,
            asleep: None,
        }
    }

    /// Put the screen away small while the program is quiet: the primary grid's cells are
    /// encoded (about a byte per character instead of 24 bytes per cell, see [`asleep`]) and
    /// the alternate grid, which holds nothing outside the alternate screen, is dropped. Every
    /// other method wakes it as needed, exactly as it was; `feed` leaves it awake, the others
    /// put it back to sleep. Returns whether it sleeps: a program on the alternate screen
    /// keeps both grids live (the primary one cannot be reached and given back without
    /// disturbing it), and so does a display scrolled back into history (never done here).
    pub fn sleep(&mut self) -> bool {
        if self.asleep.is_some() {
            return true;
        }
        if self.term.mode().contains(TermMode::ALT_SCREEN) || self.term.grid().display_offset() != 0
        {
            return false;
        }
        let primary = mem::replace(self.term.grid_mut(), tiny_grid());
        // The alternate grid is reachable only by switching to it. Entering resets it and
        // copies the (tiny) cursor to it, which changes nothing that lasts: its content is
        // cleared at every entry anyway. Leaving switches back; no mode changes in all.
        self.term.swap_alt();
        let alternate = mem::replace(self.term.grid_mut(), tiny_grid());
        self.term.swap_alt();
        self.asleep = Some(Asleep::of(&primary, alternate.saved_cursor));
        true
    }

    /// Width and height in cells, without waking the screen.
    pub fn size(&self) -> (u16, u16) {
        match &self.asleep {
            Some(asleep) => {
                let (lines, columns) = asleep.size();
                (columns as u16, lines as u16)
            }
            None => (
                self.term.grid().columns() as u16,
                self.term.grid().screen_lines() as u16,
            ),
        }
    }

    /// Whether the screen is asleep (see [`Emulator::sleep`]).
    pub fn is_asleep(&self) -> bool {
        self.asleep.is_some()
    }

    /// Bytes the sleeping screen's encoding holds, `None` when awake.
    pub fn asleep_bytes(&self) -> Option<usize> {
        self.asleep.as_ref().map(Asleep::heap_bytes)
    }

    /// Bring the screen back as [`Emulator::sleep`] found it.
    fn wake(&mut self) {
        let Some(asleep) = self.asleep.take() else {
            return;
        };
        let (lines, columns) = asleep.size();
        // The alternate grid again at full size, as `Term::new` makes it, with its saved cursor.
        self.term.swap_alt();
        let mut alternate = Grid::new(lines, columns, 0);
        alternate.saved_cursor = asleep.alternate_saved_cursor.clone();
        *self.term.grid_mut() = alternate;
        self.term.swap_alt();
        *self.term.grid_mut() = asleep.grid(self.scrollback);
    }

    /// Run `f` on the awake screen, and put it back to sleep after if it was asleep.
    fn awake<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let was_asleep = self.asleep.is_some();
        self.wake();
        let result = f(self);
        if was_asleep {
            self.sleep();
        }
        result
    }

    /// Apply output from the program. Returns the bytes the terminal answers with (cursor
    /// position reports, device attributes, mode reports), which the caller must write back to
    /// the program: TUIs wait for them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.wake();
        self.parser.advance(&mut self.term, bytes);
        std::mem::take(&mut self.captured.lock().unwrap().replies)
    }

    /// Change the size (raised as in [`Emulator::new`]); the primary screen reflows wrapped
    /// lines.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.awake(|emulator| emulator.resize_awake(cols, rows));
    }

    fn resize_awake(&mut self, cols: u16, rows: u16) {
        self.term.resize(Size::new(cols, rows));
        // The alternate screen is not reflowed: a narrower one cuts its rows, and a wide
        // character that lost its second half would stay in the last column, where no terminal
        // can draw it. Blank it, as the cut did to its other half.
        let grid = self.term.grid_mut();
        let last = Column(grid.columns() - 1);
        for line in 0..grid.screen_lines() {
            let cell = &mut grid[Line(line as i32)][last];
            if cell.flags.contains(Flags::WIDE_CHAR) {
                cell.clear_wide();
            }
        }
    }

    /// Whether the program asked for bracketed paste (`ESC[?2004h`).
    pub fn bracketed_paste(&self) -> bool {
        self.term.mode().contains(TermMode::BRACKETED_PASTE)
    }

    /// The visible lines, right-trimmed, joined by `\n`: what pattern matching looks at.
    pub fn visible_text(&mut self) -> String {
        match &self.asleep {
            // The screen's rows alone, without waking (or decoding) the history.
            Some(asleep) => visible_text_of(&asleep.tail(0, self.scrollback)),
            None => visible_text_of(self.term.grid()),
        }
    }

    /// The screen with up to `scrollback` lines of history above it, and a sequence that
    /// repaints the visible part into a view of the same size. A sleeping screen answers from
    /// the rows asked for, decoded apart: it stays asleep, and its history is not decoded
    /// further back than asked.
    pub fn snapshot(&mut self, scrollback: usize) -> ScreenSnapshot {
        let title = self.title();
        let mode = *self.term.mode();
        match &self.asleep {
            Some(asleep) => snapshot_of(
                &asleep.tail(scrollback, self.scrollback),
                mode,
                title,
                scrollback,
            ),
            None => snapshot_of(self.term.grid(), mode, title, scrollback),
        }
    }

    /// The title the program set, copied out so that no lock is held while rendering.
    fn title(&self) -> Option<String> {
        self.captured.lock().unwrap().title.clone()
    }
}

/// The visible lines of `grid`, right-trimmed, joined by `\n`.
fn visible_text_of(grid: &Grid<Cell>) -> String {
    let mut text = String::new();
    for line in 0..grid.screen_lines() {
        if line > 0 {
            text.push('\n');
        }
        push_row_text(&mut text, grid, Line(line as i32));
    }
    text
}

/// What [`Emulator::snapshot`] returns, rendered from `grid` with the terminal's modes and
/// title.
fn snapshot_of(
    grid: &Grid<Cell>,
    mode: TermMode,
    title: Option<String>,
    scrollback: usize,
) -> ScreenSnapshot {
    let history = scrollback.min(grid.history_size()) as i32;
    let lines = (-history..grid.screen_lines() as i32)
        .map(|line| {
            let mut text = String::new();
            push_row_text(&mut text, grid, Line(line));
            text
        })
        .collect();
    let cursor = grid.cursor.point;
    let ansi = repaint(grid, mode, title.as_deref());
    ScreenSnapshot {
        lines,
        cursor_row: cursor.line.0.max(0) as u16,
        cursor_col: cursor.column.0 as u16,
        cols: grid.columns() as u16,
        rows: grid.screen_lines() as u16,
        title,
        ansi,
    }
}

/// Escape sequences that bring a view (fresh, or one that fell behind and resyncs) to this
/// screen: modes that change how the view draws or encodes keys, the visible cells with
/// their attributes, the cursor and the pen the program is writing with.
fn repaint(grid: &Grid<Cell>, mode: TermMode, title: Option<&str>) -> String {
    let mut out = String::with_capacity(grid.columns() * grid.screen_lines() * 2);

    // Undo whatever state a reused view may be in before painting: attributes, scroll
    // region, origin mode; then pick the screen buffer the program is on, and clear it.
    out.push_str("\x1b[0m\x1b[r\x1b[?6l\x1b[?7h");
    out.push_str(if mode.contains(TermMode::ALT_SCREEN) {
        "\x1b[?1049h"
    } else {
        "\x1b[?1049l"
    });
    out.push_str("\x1b[H\x1b[2J");

    let mut pen = Pen::default();
    for line in 0..grid.screen_lines() {
        if line > 0 {
            out.push_str("\r\n");
        }
        let row = &grid[Line(line as i32)];
        let end = (0..grid.columns())
            .rev()
            .find(|&c| !is_blank(&row[Column(c)]))
            .map_or(0, |c| c + 1);
        for col in 0..end {
            push_cell(&mut out, &mut pen, row, col);
        }
    }

    let cursor = &grid.cursor;
    let (line, col) = (cursor.point.line.0 + 1, cursor.point.column.0 + 1);
    let last_column = cursor.point.column.0 + 1 == grid.columns();
    if cursor.input_needs_wrap && mode.contains(TermMode::LINE_WRAP) && last_column {
        // The program wrote the last column and the next character wraps. A cursor move
        // cannot express that, so write the last cell again: the view lands in the same
        // pending-wrap state. A wide character is written again whole, from its first half.
        // (A resize can leave a wrap pending short of the last column, which no view can
        // copy: there the cursor is only placed.)
        let row = &grid[cursor.point.line];
        let mut at = cursor.point.column.0;
        if at > 0 && row[Column(at)].flags.contains(Flags::WIDE_CHAR_SPACER) && !unpaired(row, at) {
            at -= 1;
        }
        let _ = write!(out, "\x1b[{line};{}H", at + 1);
        push_cell(&mut out, &mut pen, row, at);
    } else {
        let _ = write!(out, "\x1b[{line};{col}H");
    }
    push_sgr(&mut out, &Pen::of(&cursor.template));

    push_modes(&mut out, mode);
    if let Some(title) = title {
        let _ = write!(out, "\x1b]2;{title}\x07");
    }
    out
}

/// Private modes the repaint sets or resets, with the flag that says which.
const REPAINTED_MODES: &[(TermMode, &str)] = &[
    (TermMode::APP_CURSOR, "1"),
    (TermMode::LINE_WRAP, "7"),
    (TermMode::SHOW_CURSOR, "25"),
    (TermMode::MOUSE_REPORT_CLICK, "1000"),
    (TermMode::MOUSE_DRAG, "1002"),
    (TermMode::MOUSE_MOTION, "1003"),
    (TermMode::FOCUS_IN_OUT, "1004"),
    (TermMode::UTF8_MOUSE, "1005"),
    (TermMode::SGR_MOUSE, "1006"),
    (TermMode::BRACKETED_PASTE, "2004"),
];

/// Set every mode of [`REPAINTED_MODES`] as the program left it, so that the view encodes keys,
/// pastes and mouse events the way the program expects. Origin mode is left off: the scroll
/// region it refers to is not readable from the emulator.
fn push_modes(out: &mut String, mode: TermMode) {
    for (flag, number) in REPAINTED_MODES {
        let _ = write!(
            out,
            "\x1b[?{number}{}",
            if mode.contains(*flag) { 'h' } else { 'l' }
        );
    }
    out.push_str(if mode.contains(TermMode::APP_KEYPAD) {
        "\x1b="
    } else {
        "\x1b>"
    });
    out.push_str(if mode.contains(TermMode::INSERT) {
        "\x1b[4h"
    } else {
        "\x1b[4l"
    });
}

/// Append the text of one grid row, right-trimmed.
fn push_row_text(out: &mut String, grid: &Grid<Cell>, line: Line) {
    let start = out.len();
    let row = &grid[line];
    for col in 0..grid.columns() {
        let cell = &row[Column(col)];
        if unpaired(row, col) {
            out.push(' ');
            continue;
        }
        if cell
            .flags
            .intersects(Flags::WIDE_CHAR_SPACER | Flags::LEADING_WIDE_CHAR_SPACER)
        {
            continue;
        }
        out.push(printable(cell.c));
        if let Some(extra) = cell.zerowidth() {
            out.extend(extra);
        }
    }
    let trimmed = out[start..].trim_end().len();
    out.truncate(start + trimmed);
}

/// Whether the cell at `col` is half of a wide character without its other half. Alacritty
/// leaves such halves when it inserts or deletes cells inside a wide character (insert mode,
/// `CSI @`, `CSI P`): no terminal can draw one, and one erases them, so they show as blanks.
fn unpaired(row: &Row<Cell>, col: usize) -> bool {
    let flags = row[Column(col)].flags;
    if flags.contains(Flags::WIDE_CHAR) {
        col + 1 >= row.len() || !row[Column(col + 1)].flags.contains(Flags::WIDE_CHAR_SPACER)
    } else if flags.contains(Flags::WIDE_CHAR_SPACER) {
        col == 0 || !row[Column(col - 1)].flags.contains(Flags::WIDE_CHAR)
    } else {
        false
    }
}

/// Append the cell at `col` of `row` to a repaint, switching attributes first when they differ
/// from `pen`.
fn push_cell(out: &mut String, pen: &mut Pen, row: &Row<Cell>, col: usize) {
    let cell = &row[Column(col)];
    let unpaired = unpaired(row, col);
    // The second half of a wide character: the view advances past it when it draws the first.
    if cell.flags.contains(Flags::WIDE_CHAR_SPACER) && !unpaired {
        return;
    }
    let want = Pen::of(cell);
    if want != *pen {
        push_sgr(out, &want);
        *pen = want;
    }
    if unpaired || cell.flags.contains(Flags::LEADING_WIDE_CHAR_SPACER) {
        out.push(' ');
        return;
    }
    out.push(printable(cell.c));
    if let Some(extra) = cell.zerowidth() {
        out.extend(extra);
    }
}

/// The character to draw for a cell's content. Alacritty stores a tab in the cell where it
/// started, to copy it back out; drawn as a tab it would move the view's cursor, so it is a
/// space here.
fn printable(c: char) -> char {
    if c == '\t' {
        ' '
    } else {
        c
    }
}

/// Whether a cell looks like an untouched one: trailing runs of these need not be drawn because
/// the clear before painting leaves the same.
fn is_blank(cell: &Cell) -> bool {
    (cell.c == ' ' || cell.c == '\t')
        && cell.bg == Color::Named(NamedColor::Background)
        && !cell.flags.intersects(
            Flags::INVERSE
                | Flags::ALL_UNDERLINES
                | Flags::STRIKEOUT
                | Flags::LEADING_WIDE_CHAR_SPACER,
        )
        && cell.zerowidth().is_none()
}

/// The drawing attributes of a cell, compared to emit SGR only where they change.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Pen {
    /// Foreground colour.
    fg: Color,
    /// Background colour.
    bg: Color,
    /// Underline colour, when set apart from the foreground.
    underline: Option<Color>,
    /// Attribute flags (bold, italic, ...), with layout-only flags removed.
    flags: Flags,
}

impl Default for Pen {
    fn default() -> Self {
        Self {
            fg: Color::Named(NamedColor::Foreground),
            bg: Color::Named(NamedColor::Background),
            underline: None,
            flags: Flags::empty(),
        }
    }
}

impl Pen {
    /// Flags that are drawing attributes; the rest describe layout (wrapping, wide characters).
    const STYLE: Flags = Flags::BOLD
        .union(Flags::DIM)
        .union(Flags::ITALIC)
        .union(Flags::ALL_UNDERLINES)
        .union(Flags::INVERSE)
        .union(Flags::HIDDEN)
        .union(Flags::STRIKEOUT);

    fn of(cell: &Cell) -> Self {
        Self {
            fg: cell.fg,
            bg: cell.bg,
            underline: cell.underline_color(),
            flags: cell.flags & Self::STYLE,
        }
    }
}

/// Append one SGR sequence that sets exactly `pen`, starting from a reset.
fn push_sgr(out: &mut String, pen: &Pen) {
    out.push_str("\x1b[0");
    let flags = pen.flags;
    for (flag, code) in [
        (Flags::BOLD, "1"),
        (Flags::DIM, "2"),
        (Flags::ITALIC, "3"),
        (Flags::UNDERLINE, "4"),
        (Flags::DOUBLE_UNDERLINE, "4:2"),
        (Flags::UNDERCURL, "4:3"),
        (Flags::DOTTED_UNDERLINE, "4:4"),
        (Flags::DASHED_UNDERLINE, "4:5"),
        (Flags::INVERSE, "7"),
        (Flags::HIDDEN, "8"),
        (Flags::STRIKEOUT, "9"),
    ] {
        if flags.contains(flag) {
            out.push(';');
            out.push_str(code);
        }
    }
    push_color(out, pen.fg, 30, 90, 38);
    push_color(out, pen.bg, 40, 100, 48);
    if let Some(color) = pen.underline {
        push_color(out, color, 58, 58, 58);
    }
    out.push('m');
}

/// Append `;<code>` for a colour: the 16 named ones as `base + n` / `bright + n - 8`, indexed
/// and true colours as `extended;5;n` / `extended;2;r;g;b`. The default colours need nothing
/// after the reset that starts every SGR.
fn push_color(out: &mut String, color: Color, base: u16, bright: u16, extended: u16) {
    let _ = match color {
        Color::Named(named) => match named as u16 {
            n @ 0..8 if base != extended => write!(out, ";{}", base + n),
            n @ 8..16 if base != extended => write!(out, ";{}", bright + n - 8),
            n @ 0..16 => write!(out, ";{extended};5;{n}"),
            _ => Ok(()),
        },
        Color::Indexed(n) => write!(out, ";{extended};5;{n}"),
        Color::Spec(rgb) => write!(out, ";{extended};2;{};{};{}", rgb.r, rgb.g, rgb.b),
    };
}

/// What the terminal's listener captured while the parser ran.
#[derive(Default)]
struct Captured {
    /// Bytes to send back to the program, in the order the terminal produced them.
    replies: Vec<u8>,
    /// The window title the program set (OSC 0/2), `None` after a reset.
    title: Option<String>,
}

/// Receives the terminal's events. Only replies and the title matter headless: colour and
/// pixel-size queries go unanswered because a headless terminal has neither, and clipboard
/// requests are refused by ignoring them.
struct Listener {
    /// Where events are recorded for [`Emulator`] to pick up.
    captured: Arc<Mutex<Captured>>,
}

impl EventListener for Listener {
    fn send_event(&self, event: Event) {
        match event {
            Event::PtyWrite(text) => self
                .captured
                .lock()
                .unwrap()
                .replies
                .extend_from_slice(text.as_bytes()),
            Event::Title(title) => self.captured.lock().unwrap().title = Some(title),
            Event::ResetTitle => self.captured.lock().unwrap().title = None,
            _ => {}
        }
    }
}

/// Synchronized-update timing that never holds output back. Alacritty buffers the bytes between
/// `ESC[?2026h` and `ESC[?2026l` until a renderer's timer fires; there is no renderer here, so
/// updates apply at once and a snapshot never shows a screen older than the output fed.
#[derive(Default)]
struct NoSync;

impl Timeout for NoSync {
    fn set_timeout(&mut self, _duration: Duration) {}

    fn clear_timeout(&mut self) {}

    fn pending_timeout(&self) -> bool {
        false
    }
}

/// What stands in for a grid while the screen sleeps.
fn tiny_grid() -> Grid<Cell> {
    Grid::new(1, usize::from(MIN_COLS), 0)
}

/// Fewest columns emulated. Alacritty cannot place a wide character in one column: writing one
/// indexes past the row (a panic), and a resize to one column with one on the screen reflows
/// without end, allocating until the process is killed. A terminal asked to be narrower (its pty
/// may well be) is emulated two columns wide.
const MIN_COLS: u16 = 2;

/// A terminal size in cells, as alacritty's `Term` takes it.
struct Size {
    /// Width in cells, at least [`MIN_COLS`].
    cols: usize,
    /// Height in cells, at least 1.
    rows: usize,
}

impl Size {
    fn new(cols: u16, rows: u16) -> Self {
        Self {
            cols: usize::from(cols.max(MIN_COLS)),
            rows: usize::from(rows.max(1)),
        }
    }
}

impl Dimensions for Size {
    fn total_lines(&self) -> usize {
        self.rows
    }

    fn screen_lines(&self) -> usize {
        self.rows
    }

    fn columns(&self) -> usize {
        self.cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(cols: u16, rows: u16, bytes: &[u8]) -> Emulator {
        let mut emu = Emulator::new(cols, rows, 100);
        emu.feed(bytes);
        emu
    }

    #[test]
    fn text_and_cursor() {
        let mut emu = fed(20, 4, b"hello\r\nworld  \x1b[2;3H");
        assert_eq!(emu.visible_text(), "hello\nworld\n\n");
        let snap = emu.snapshot(0);
        assert_eq!(snap.lines, ["hello", "world", "", ""]);
        assert_eq!((snap.cursor_row, snap.cursor_col), (1, 2));
        assert_eq!((snap.cols, snap.rows), (20, 4));
        assert!(snap.ansi.contains("hello\r\nworld"), "{:?}", snap.ansi);
        assert!(snap.ansi.contains("\x1b[2;3H"), "{:?}", snap.ansi);
    }

    #[test]
    fn scrollback_comes_before_the_screen() {
        let mut emu = fed(10, 2, b"one\r\ntwo\r\nthree\r\nfour");
        assert_eq!(emu.snapshot(0).lines, ["three", "four"]);
        assert_eq!(emu.snapshot(1).lines, ["two", "three", "four"]);
        assert_eq!(emu.snapshot(99).lines, ["one", "two", "three", "four"]);
    }

    #[test]
    fn colours_and_attributes_are_in_the_repaint() {
        let mut emu = fed(
            40,
            2,
            b"\x1b[1;31mred\x1b[0m plain \x1b[38;2;1;2;3;48;5;200mrgb\x1b[0m",
        );
        let ansi = emu.snapshot(0).ansi;
        assert!(ansi.contains("\x1b[0;1;31mred\x1b[0m plain "), "{ansi:?}");
        assert!(ansi.contains("\x1b[0;38;2;1;2;3;48;5;200mrgb"), "{ansi:?}");
        assert_eq!(emu.snapshot(0).lines[0], "red plain rgb");
    }

    #[test]
    fn repaint_reproduces_the_screen() {
        let mut source = fed(
            12,
            4,
            "\x1b]2;the title\x07\x1b[44m  blue \x1b[0m\r\nwide 界 é\r\n\x1b[7minv\x1b[0m\ttab\x1b[?25l\x1b[?2004h\x1b[3;2H\x1b[32m"
                .as_bytes(),
        );
        let snap = source.snapshot(0);
        let mut copy = fed(12, 4, snap.ansi.as_bytes());
        let copied = copy.snapshot(0);
        assert_eq!(copied.lines, snap.lines);
        assert_eq!(
            (copied.cursor_row, copied.cursor_col),
            (snap.cursor_row, snap.cursor_col)
        );
        assert_eq!(copied.title.as_deref(), Some("the title"));
        assert!(copy.bracketed_paste());
        assert!(!copy.term.mode().contains(TermMode::SHOW_CURSOR));
        for line in 0..4 {
            for col in 0..12 {
                let (a, b) = (
                    &source.term.grid()[Line(line)][Column(col)],
                    &copy.term.grid()[Line(line)][Column(col)],
                );
                // A tab is repainted as the blank it shows as.
                assert_eq!(
                    (printable(a.c), a.fg, a.bg, a.flags),
                    (b.c, b.fg, b.bg, b.flags),
                    "cell {line},{col}"
                );
            }
        }
        assert_eq!(
            copy.term.grid().cursor.template.fg,
            Color::Named(NamedColor::Green)
        );
    }

    #[test]
    fn pending_wrap_survives_the_repaint() {
        let mut source = fed(5, 3, b"abcde");
        let mut copy = fed(5, 3, source.snapshot(0).ansi.as_bytes());
        copy.feed(b"f");
        assert_eq!(copy.snapshot(0).lines, ["abcde", "f", ""]);
    }

    #[test]
    fn a_wrap_left_pending_by_a_reflow_keeps_the_cursor_in_place() {
        // Found by the emulator fuzz target: after a resize the emulator can keep a wrap pending
        // with the cursor short of the last column. Writing the cell under the cursor again (the
        // repaint's way to leave a wrap pending) then moved the view's cursor one column right
        // of where the snapshot said.
        let mut source = Emulator::new(2, 1, 10);
        source.feed(b"abc");
        source.resize(3, 1);
        let snap = source.snapshot(0);
        let mut copy = fed(3, 1, snap.ansi.as_bytes());
        let copied = copy.snapshot(0);
        assert_eq!(
            (copied.cursor_row, copied.cursor_col),
            (snap.cursor_row, snap.cursor_col)
        );
        assert_eq!(copy.visible_text(), source.visible_text());
    }

    #[test]
    fn a_wide_character_cut_by_a_narrower_alternate_screen_is_blanked() {
        // Found by the emulator fuzz target: the alternate screen is not reflowed, so a resize
        // cuts its rows, and a wide character that lost its second half stayed in the last
        // column. The snapshot's text showed it there, where no view can draw it: the repaint's
        // copy wrapped it onto the next line.
        let mut source = Emulator::new(4, 2, 0);
        source.feed("\x1b[?1049hab界".as_bytes());
        source.resize(3, 2);
        let snap = source.snapshot(0);
        assert_eq!(snap.lines, ["ab", ""]);
        let mut copy = fed(3, 2, snap.ansi.as_bytes());
        assert_eq!(copy.visible_text(), source.visible_text());
        // The primary screen reflows instead: the character moves to the next line whole.
        let mut primary = Emulator::new(4, 2, 10);
        primary.feed("ab界".as_bytes());
        primary.resize(3, 2);
        assert_eq!(primary.snapshot(10).lines.concat(), "ab界");
    }

    #[test]
    fn half_a_wide_character_shows_as_a_blank() {
        // Found by the emulator fuzz target: inserting a character (insert mode, or `CSI @`)
        // on the second half of a wide character moves that half away from the first, and
        // alacritty keeps both. The snapshot's text showed the character whole with the
        // inserted one after it, one column off what a view painted from the snapshot showed.
        // Half a wide character shows as a blank, as a terminal erases it.
        let mut source = fed(10, 2, "\x1b[4h文\x08j".as_bytes());
        assert_eq!(source.visible_text(), " j\n");
        let mut copy = fed(10, 2, source.snapshot(0).ansi.as_bytes());
        assert_eq!(copy.visible_text(), source.visible_text());
        // Cells inserted before one push its second half off the end of the row.
        let mut source = fed(5, 2, "ab文\x1b[1G\x1b[2@".as_bytes());
        assert_eq!(source.visible_text(), "  ab\n");
        let mut copy = fed(5, 2, source.snapshot(0).ansi.as_bytes());
        assert_eq!(copy.visible_text(), source.visible_text());
    }

    #[test]
    fn a_wrap_pending_after_a_wide_character_survives_the_repaint() {
        // Found reading the repaint while fixing half_a_wide_character_shows_as_a_blank: the
        // repaint recreated a pending wrap by writing the last cell again, but when that cell is
        // the second half of a wide character it wrote nothing, so the view's next character
        // overwrote the wide character instead of starting the next line.
        let mut source = fed(4, 3, "ab界".as_bytes());
        let mut copy = fed(4, 3, source.snapshot(0).ansi.as_bytes());
        source.feed(b"x");
        copy.feed(b"x");
        assert_eq!(source.visible_text(), "ab界\nx\n");
        assert_eq!(copy.visible_text(), source.visible_text());
    }

    #[test]
    fn cursor_position_report() {
        let mut emu = Emulator::new(80, 24, 0);
        assert_eq!(emu.feed(b"abc\r\nde\x1b[6n"), b"\x1b[2;3R");
        assert_eq!(emu.feed(b"\x1b[c"), b"\x1b[?6c");
        assert_eq!(emu.feed(b"nothing to answer"), b"");
    }

    #[test]
    fn a_query_split_across_feeds_is_answered_once_complete() {
        let mut emu = Emulator::new(80, 24, 0);
        assert_eq!(emu.feed(b"\x1b["), b"");
        assert_eq!(emu.feed(b"6n"), b"\x1b[1;1R");
    }

    #[test]
    fn resize_reflows() {
        let mut emu = fed(10, 3, b"0123456789abcde");
        assert_eq!(emu.snapshot(0).lines, ["0123456789", "abcde", ""]);
        emu.resize(20, 3);
        assert_eq!(emu.snapshot(0).lines, ["0123456789abcde", "", ""]);
        // Narrower: the line wraps again, and the rows above the cursor's go to history.
        emu.resize(5, 3);
        assert_eq!(emu.snapshot(10).lines, ["01234", "56789", "abcde", "", ""]);
        assert_eq!((emu.snapshot(0).cols, emu.snapshot(0).rows), (5, 3));
    }

    #[test]
    fn title_set_and_reset() {
        let mut emu = Emulator::new(80, 24, 0);
        assert_eq!(emu.snapshot(0).title, None);
        emu.feed(b"\x1b]0;agent: busy\x07");
        assert_eq!(emu.snapshot(0).title.as_deref(), Some("agent: busy"));
        emu.feed(b"\x1b]2;done\x1b\\");
        assert_eq!(emu.snapshot(0).title.as_deref(), Some("done"));
    }

    #[test]
    fn bracketed_paste_mode() {
        let mut emu = Emulator::new(80, 24, 0);
        assert!(!emu.bracketed_paste());
        emu.feed(b"\x1b[?2004h");
        assert!(emu.bracketed_paste());
        emu.feed(b"\x1b[?2004l");
        assert!(!emu.bracketed_paste());
    }

    #[test]
    fn synchronized_updates_apply_at_once() {
        let mut emu = fed(20, 2, b"\x1b[?2026hhalf a frame");
        assert_eq!(emu.snapshot(0).lines[0], "half a frame");
    }

    #[test]
    fn alternate_screen_is_repainted_as_such() {
        let mut emu = fed(20, 2, b"shell$ ");
        emu.feed(b"\x1b[?1049h\x1b[Hfull screen");
        let ansi = emu.snapshot(0).ansi;
        assert!(ansi.contains("\x1b[?1049h"), "{ansi:?}");
        emu.feed(b"\x1b[?1049l");
        assert_eq!(emu.snapshot(0).lines[0], "shell$");
        assert!(emu.snapshot(0).ansi.contains("\x1b[?1049l"));
    }

    #[test]
    fn zero_size_is_raised_to_two_columns_and_one_row() {
        let mut emu = Emulator::new(0, 0, 0);
        emu.feed(b"x");
        emu.resize(0, 0);
        assert_eq!((emu.snapshot(0).cols, emu.snapshot(0).rows), (2, 1));
    }

    #[test]
    fn one_column_is_emulated_two_wide_so_wide_characters_fit() {
        // Found by the emulator's fuzz-like test (mutated_output_never_panics_..., which ran out
        // of memory at its round 314): alacritty cannot place a wide character in one column.
        // Writing one into a one-column terminal indexed past the row (a panic in the terminal's
        // screen thread, poisoning the emulator's lock for every later snapshot), and resizing a
        // terminal with one on its screen to one column reflowed without end, allocating until
        // the daemon was killed. A client may ask for `cols: 1`.
        let mut narrow = Emulator::new(1, 3, 10);
        narrow.feed("中x".as_bytes());
        assert_eq!(narrow.snapshot(0).lines, ["中", "x", ""]);
        let mut wide = Emulator::new(8, 3, 10);
        wide.feed("中文".as_bytes());
        wide.resize(1, 3);
        let snap = wide.snapshot(10);
        assert_eq!((snap.cols, snap.rows), (2, 3));
        assert_eq!(snap.lines, ["中", "文", "", ""]);
    }

    #[test]
    fn mutated_output_never_panics_and_the_screen_keeps_its_size() {
        // The stable stand-in for `cargo fuzz run emulator` (fuzz/): mutated program output,
        // fed in pieces, with resizes between them. The screen keeps the size it was given,
        // snapshots hold at most the history asked for, answers stay in proportion, and the
        // snapshot's repaint shows a fresh view the same screen.
        use crate::mutate::{mutate, reads, Rng};
        let corpus: &[&[u8]] = &[
            b"hello\r\nworld\x1b[2;3Hx\x1b[K\x1b[1;31mred\x1b[0m\x1b[38;5;200mp\x1b[48;2;1;2;3mq",
            b"\x1b[?1049h\x1b[?2004h\x1b[6n\x1b[c\x1b[>c\x1b[5n\x1b[?25l\x1b[?1049l",
            b"\x1b]0;title\x07\x1b]2;other\x1b\\\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",
            b"\x1b[3;10r\x1b[10B\x1bM\x1bD\x1b[5S\x1b[5T\x1b[4h\x1b[4l\x1b[2J\x1b[3J\x1bc",
            "wide 🦀 中文 e\u{301} \u{200b}\ttab\x08\x08\x7f".as_bytes(),
            b"\x1b(0lqk\x1b(B\x1b#8\x1b[?7l long line without wrap ................\x1b[?7h",
            b"\x1bP$q\"p\x1b\\\x1b[?2026$p\x1b[18t\x1b[14t\x1b[?1h\x1b=",
        ];
        let mut rng = Rng::new(0xe_3a7);
        for round in 0..1_500 {
            let base = *rng.pick(corpus);
            let input = mutate(&mut rng, base, corpus);
            let (mut cols, mut rows) = (1 + rng.below(200) as u16, 1 + rng.below(60) as u16);
            let history = rng.below(200);
            let mut emu = Emulator::new(cols, rows, history);
            let mut answers = 0;
            let reads = reads(&mut rng, &input);
            // A few resizes per round, however many reads: each reflows the whole history.
            let resize_one_in = (reads.len() / 4).max(8);
            for read in reads {
                answers += emu.feed(read).len();
                if rng.one_in(resize_one_in) {
                    (cols, rows) = (1 + rng.below(200) as u16, 1 + rng.below(60) as u16);
                    emu.resize(cols, rows);
                }
            }
            assert!(
                answers <= 64 * input.len() + 64,
                "round {round}: {answers} bytes of answers"
            );
            // Fewer than MIN_COLS columns are emulated MIN_COLS wide.
            let cols = cols.max(MIN_COLS);
            let snap = emu.snapshot(history);
            assert_eq!((snap.cols, snap.rows), (cols, rows), "round {round}");
            assert!(
                snap.lines.len() <= usize::from(rows) + history,
                "round {round}: {} lines",
                snap.lines.len()
            );
            assert!(
                usize::from(snap.cursor_row) < usize::from(rows),
                "round {round}"
            );
            assert!(
                usize::from(snap.cursor_col) <= usize::from(cols),
                "round {round}"
            );
            let text = emu.visible_text();
            assert_eq!(text.split('\n').count(), usize::from(rows), "round {round}");
            // A view painted from the snapshot shows the same screen.
            let mut view = Emulator::new(cols, rows, 0);
            view.feed(snap.ansi.as_bytes());
            let again = view.snapshot(0);
            assert_eq!(
                view.visible_text(),
                text,
                "round {round}: the repaint differs"
            );
            assert_eq!(
                (again.cursor_row, again.cursor_col, &again.title),
                (snap.cursor_row, snap.cursor_col, &snap.title),
                "round {round}: the repaint's cursor or title differs"
            );
        }
    }

    /// Everything a sleep must keep: every cell of history and screen, both cursors, the modes,
    /// and what a client sees (lines, repaint).
    fn whole_state(emu: &mut Emulator) -> String {
        // Asked while it may sleep (answered from the rows asked for), then awake.
        let snap = emu.snapshot(usize::MAX);
        let (screen, two) = (emu.snapshot(0), emu.snapshot(2));
        let text = emu.visible_text();
        emu.wake();
        let grid = emu.term.grid();
        let mut out = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
            emu.term.mode(),
            grid.cursor,
            grid.saved_cursor,
            snap.lines,
            snap.ansi,
            (
                screen.lines,
                screen.ansi,
                screen.cursor_row,
                screen.cursor_col
            ),
            two.lines,
            text,
        );
        for line in -(grid.history_size() as i32)..grid.screen_lines() as i32 {
            let row = &grid[Line(line)];
            for col in 0..grid.columns() {
                let cell = &row[Column(col)];
                if *cell == Cell::default() {
                    out.push('.');
                } else {
                    let _ = write!(out, "{cell:?}");
                }
            }
            out.push('\n');
        }
        // Hyperlinks without an id get one from a process-wide counter: two emulators fed the
        // same link differ there, asleep or not.
        let mut normalized = String::with_capacity(out.len());
        for (i, part) in out.split("_alacritty").enumerate() {
            if i > 0 {
                normalized.push_str("#_alacritty");
            }
            normalized.push_str(part.trim_end_matches(|c: char| c.is_ascii_digit()));
        }
        normalized
    }

    /// The first line where two states differ, for a readable failure.
    fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
        a.lines()
            .zip(b.lines())
            .enumerate()
            .find(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| {
                (
                    i,
                    x.chars().take(3000).collect(),
                    y.chars().take(3000).collect(),
                )
            })
            .or_else(|| {
                (a.len() != b.len()).then(|| (usize::MAX, a.len().to_string(), b.len().to_string()))
            })
    }

    #[test]
    fn a_sleeping_screen_wakes_as_it_was_and_goes_on_the_same() {
        let mut output = String::new();
        for i in 0..300 {
            let _ = write!(
                output,
                "\x1b[3{}mline {i}\x1b[0m plain \x1b[1;4;48;2;10;20;{}mbold\x1b[0m\r\n",
                i % 8,
                i % 256
            );
        }
        output.push_str(
            "wide 🦀 中文 e\u{301} \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[4:3m\x1b[58;5;9mcurly\x1b[0m",
        );
        // A saved cursor, a scroll region, a pen with colours, a wrap pending at the last column.
        output.push_str("\x1b[5;7H\x1b7\x1b[3;20r\x1b[31;44m\x1b[40;1H");
        output.push_str(&"x".repeat(120));
        let output = output.into_bytes();
        let mut awake = Emulator::new(120, 40, 1000);
        let mut slept = Emulator::new(120, 40, 1000);
        awake.feed(&output);
        slept.feed(&output);
        let before = whole_state(&mut awake);
        assert!(slept.sleep());
        assert!(slept.is_asleep());
        let bytes = slept.asleep_bytes().unwrap();
        assert!(bytes < 40_000, "{bytes} bytes asleep for 300 lines");
        // Reading wakes it for the answer and leaves it asleep.
        assert_eq!(slept.visible_text(), awake.visible_text());
        assert!(slept.is_asleep());
        assert_eq!(first_difference(&whole_state(&mut slept), &before), None);
        // The same output after it lands the same: scroll region, saved cursor, pending wrap.
        for emu in [&mut awake, &mut slept] {
            emu.feed(b"y\x1b8z\x1b[20;1H\n\n\n\x1b[0mnext\x1b[?1049hon alt\x1b[?1049lback");
        }
        assert!(!slept.is_asleep());
        let (asleep, never) = (whole_state(&mut slept), whole_state(&mut awake));
        assert_eq!(first_difference(&asleep, &never), None);
        // A resize while asleep reflows as it would awake.
        assert!(slept.sleep());
        slept.resize(50, 10);
        awake.resize(50, 10);
        assert!(slept.is_asleep());
        let (asleep, never) = (whole_state(&mut slept), whole_state(&mut awake));
        assert_eq!(first_difference(&asleep, &never), None);
    }

    #[test]
    fn a_blank_screen_asleep_costs_a_byte_a_row() {
        let mut emu = Emulator::new(120, 40, 10_000);
        assert!(emu.sleep());
        // One byte per row (its length, zero), no attribute set.
        assert_eq!(emu.asleep_bytes(), Some(40));
        // On the alternate screen both grids stay live.
        let mut alt = fed(120, 40, b"\x1b[?1049hfull screen");
        assert!(!alt.sleep());
        assert_eq!(alt.visible_text().lines().next(), Some("full screen"));
    }

    #[test]
    fn mutated_output_is_the_same_whether_the_screen_slept_between_reads() {
        // Two emulators fed the same mutated output and resizes; one sleeps after every read
        // (when it can). Every cell, cursor, mode and the snapshot must agree at the end.
        use crate::mutate::{mutate, reads, Rng};
        let corpus: &[&[u8]] = &[
            b"hello\r\nworld\x1b[2;3Hx\x1b[K\x1b[1;31mred\x1b[0m\x1b[38;5;200mp\x1b[48;2;1;2;3mq\r\n\r\n\r\n",
            b"\x1b[?1049h\x1b[?2004h\x1b7\x1b[5;5H\x1b8\x1b[6n\x1b[?25l\x1b[?1049l\x1b[?1047h\x1b[?1047l",
            b"\x1b]0;title\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\x1b[4:3m\x1b[58:2::1:2:3mu\r\n",
            b"\x1b[3;10r\x1b[10B\x1bM\x1bD\x1b[5S\x1b[5T\x1b[4h\x1b[4l\x1b[2J\x1b[3J\x1bc\x1b[r",
            "wide 🦀 中文 e\u{301} \u{200b}\ttab\x08\x08\x7f\r\n".as_bytes(),
            b"\x1b(0lqk\x1b(B\x1b#8\x1b[?7l long line without wrap ................\x1b[?7h",
            b"\x1b7\x1b[?6h\x1b[2;4r\x1b[H\x1b[Lab\x1b[?6l\x1b8\x1b[20S\x1b[44m\x1b[2K\n\n\n\n",
        ];
        let mut rng = Rng::new(0x5_1ee9);
        let mut slept_once = 0;
        for round in 0..300 {
            let base = *rng.pick(corpus);
            let input = mutate(&mut rng, base, corpus);
            let (cols, rows) = (1 + rng.below(100) as u16, 1 + rng.below(30) as u16);
            let history = rng.below(50);
            let mut awake = Emulator::new(cols, rows, history);
            let mut sleepy = Emulator::new(cols, rows, history);
            let reads = reads(&mut rng, &input);
            let resize_one_in = (reads.len() / 4).max(8);
            for read in reads {
                assert_eq!(
                    awake.feed(read),
                    sleepy.feed(read),
                    "round {round}: replies"
                );
                // Not after every read: each wake rebuilds the whole grid.
                if rng.one_in(4) && sleepy.sleep() {
                    slept_once += 1;
                }
                if rng.one_in(resize_one_in) {
                    let (cols, rows) = (1 + rng.below(100) as u16, 1 + rng.below(30) as u16);
                    awake.resize(cols, rows);
                    sleepy.resize(cols, rows);
                }
            }
            let (asleep, awake) = (whole_state(&mut sleepy), whole_state(&mut awake));
            assert_eq!(
                first_difference(&asleep, &awake),
                None,
                "round {round}: input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        assert!(slept_once > 300, "slept only {slept_once} times");
    }
}
