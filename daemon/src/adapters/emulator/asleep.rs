//! A quiet terminal's screen, put away small: the primary grid's rows (history and screen)
//! encoded as runs of characters sharing their attributes, its cursors kept as they are.
//!
//! Alacritty keeps every cell of every row as a 24-byte struct, rows of the history included,
//! and allocates a thousand rows at the first scroll: a terminal that ever scrolled holds about
//! 3 MB at 120 columns, and 29 MB with 10,000 lines of history. Text is a byte or so per
//! character here. Encoding and decoding are exact: every cell comes back equal, attributes,
//! wide-character halves and the rare cell with extras (zero-width characters, underline
//! colour, hyperlink) included.

use std::collections::HashMap;

use alacritty_terminal::grid::{Cursor, Dimensions, Grid};
use alacritty_terminal::index::{Column, Line};
use alacritty_terminal::term::cell::{Cell, CellExtra};
use alacritty_terminal::vte::ansi::Color;

/// A primary grid put away by [`Asleep::of`] and brought back by [`Asleep::grid`].
pub(super) struct Asleep {
    /// Every row, oldest history line first: its length without trailing default cells, then
    /// runs of cells with one attribute set (see [`Asleep::of`] for the layout).
    rows: Vec<u8>,
    /// The attribute sets the runs refer to, as cells whose character is not used.
    attrs: Vec<Cell>,
    /// Lines of history above the screen.
    history: usize,
    /// Screen height in lines.
    lines: usize,
    /// Width in cells.
    columns: usize,
    /// The grid's cursor and saved cursor (DECSC), kept whole.
    cursor: Cursor<Cell>,
    saved_cursor: Cursor<Cell>,
    /// The alternate grid's saved cursor, the one thing of it that outlives leaving the
    /// alternate screen.
    pub(super) alternate_saved_cursor: Cursor<Cell>,
}

/// The attributes of a cell without extras, as a hash key.
type AttrKey = (u64, u64, u16);

fn color_key(color: Color) -> u64 {
    match color {
        Color::Named(named) => named as u64,
        Color::Indexed(index) => 1 << 32 | u64::from(index),
        Color::Spec(rgb) => {
            2 << 32 | u64::from(rgb.r) << 16 | u64::from(rgb.g) << 8 | u64::from(rgb.b)
        }
    }
}

impl Asleep {
    /// Encode `grid` (its display must be at the bottom: nothing here scrolls it back).
    ///
    /// Each row is `len` (cells up to the last one that is not a default blank), then runs
    /// covering those cells: `attr << 1 | same`, `count`, and the characters — one when every
    /// cell of the run holds the same character (`same`), else `count` of them. Numbers are
    /// LEB128 varints, characters their scalar values.
    pub(super) fn of(grid: &Grid<Cell>, alternate_saved_cursor: Cursor<Cell>) -> Self {
        let columns = grid.columns();
        let history = grid.history_size();
        let default = Cell::default();
        let mut rows = Vec::new();
        let mut attrs: Vec<Cell> = Vec::new();
        let mut index: HashMap<AttrKey, u32> = HashMap::new();
        let mut attr_of = |cell: &Cell| -> u32 {
            let mut template = || {
                attrs.push(Cell {
                    c: ' ',
                    ..cell.clone()
                });
                (attrs.len() - 1) as u32
            };
            if cell.extra.is_some() {
                // Rare, and not hashable: every such cell gets its own entry.
                return template();
            }
            let key = (color_key(cell.fg), color_key(cell.bg), cell.flags.bits());
            *index.entry(key).or_insert_with(template)
        };
        for line in -(history as i32)..grid.screen_lines() as i32 {
            let row = &grid[Line(line)];
            let len = (0..columns)
                .rev()
                .find(|&col| row[Column(col)] != default)
                .map_or(0, |col| col + 1);
            put(&mut rows, len as u64);
            let mut col = 0;
            while col < len {
                let attr = attr_of(&row[Column(col)]);
                let mut end = col + 1;
                if row[Column(col)].extra.is_none() {
                    while end < len && same_attrs(&row[Column(end)], &row[Column(col)]) {
                        end += 1;
                    }
                }
                let cells = &row[Column(col)..Column(end)];
                let same = cells.iter().all(|cell| cell.c == cells[0].c);
                put(&mut rows, u64::from(attr) << 1 | u64::from(same));
                put(&mut rows, cells.len() as u64);
                if same {
                    put(&mut rows, u64::from(cells[0].c));
                } else {
                    for cell in cells {
                        put(&mut rows, u64::from(cell.c));
                    }
                }
                col = end;
            }
        }
        rows.shrink_to_fit();
        attrs.shrink_to_fit();
        Self {
            rows,
            attrs,
            history,
            lines: grid.screen_lines(),
            columns,
            cursor: grid.cursor.clone(),
            saved_cursor: grid.saved_cursor.clone(),
            alternate_saved_cursor,
        }
    }

    /// Screen height and width of the grid put away.
    pub(super) fn size(&self) -> (usize, usize) {
        (self.lines, self.columns)
    }

    /// Bytes this holds beyond its own struct: what a sleeping screen costs.
    pub(super) fn heap_bytes(&self) -> usize {
        self.rows.capacity()
            + self.attrs.capacity() * std::mem::size_of::<Cell>()
            + self
                .attrs
                .iter()
                .filter(|cell| cell.extra.is_some())
                .count()
                * std::mem::size_of::<CellExtra>()
    }

    /// The grid again, with `max_history` lines of history allowed as before.
    pub(super) fn grid(self, max_history: usize) -> Grid<Cell> {
        let mut grid = self.decode(self.history, max_history);
        grid.cursor = self.cursor;
        grid.saved_cursor = self.saved_cursor;
        grid
    }

    /// A copy of the grid with only its newest `history` lines of history (at most as many as
    /// it has), to read from while this stays asleep: rows further back are skipped, not
    /// decoded.
    pub(super) fn tail(&self, history: usize, max_history: usize) -> Grid<Cell> {
        let mut grid = self.decode(history.min(self.history), max_history);
        grid.cursor = self.cursor.clone();
        grid.saved_cursor = self.saved_cursor.clone();
        grid
    }

    /// The rows decoded into a new grid keeping the newest `history` lines of history.
    fn decode(&self, history: usize, max_history: usize) -> Grid<Cell> {
        let mut grid = Grid::new(self.lines, self.columns, max_history.max(history));
        if history > 0 {
            // Scrolling the whole screen up makes the history; every row is written below.
            grid.scroll_up::<Color>(&(Line(0)..Line(self.lines as i32)), history);
        }
        let default = Cell::default();
        let mut at = 0;
        for _ in history..self.history {
            skip_row(&self.rows, &mut at);
        }
        for line in -(history as i32)..self.lines as i32 {
            let row = &mut grid[Line(line)];
            row.reset::<Color>(&default);
            let len = take(&self.rows, &mut at) as usize;
            let mut col = 0;
            while col < len {
                let head = take(&self.rows, &mut at);
                let count = take(&self.rows, &mut at) as usize;
                let attr = &self.attrs[(head >> 1) as usize];
                let same = head & 1 == 1;
                let mut c = ' ';
                for i in 0..count {
                    if i == 0 || !same {
                        c = char::from_u32(take(&self.rows, &mut at) as u32).unwrap_or(' ');
                    }
                    row[Column(col)] = Cell { c, ..attr.clone() };
                    col += 1;
                }
            }
        }
        grid
    }
}

/// Move `*at` past one encoded row.
fn skip_row(bytes: &[u8], at: &mut usize) {
    let len = take(bytes, at) as usize;
    let mut col = 0;
    while col < len {
        let head = take(bytes, at);
        let count = take(bytes, at) as usize;
        let chars = if head & 1 == 1 { 1 } else { count };
        for _ in 0..chars {
            take(bytes, at);
        }
        col += count.max(1);
    }
}

/// Whether two cells without extras share every attribute (their characters may differ).
fn same_attrs(a: &Cell, b: &Cell) -> bool {
    a.extra.is_none() && a.fg == b.fg && a.bg == b.bg && a.flags == b.flags
}

/// Append `value` as a LEB128 varint.
fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Read a varint written by [`put`] at `*at`, moving past it. The bytes are our own encoding:
/// a malformed one cannot occur, and reading past the end yields zero rather than a panic.
fn take(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    while let Some(&byte) = bytes.get(*at) {
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    value
}
