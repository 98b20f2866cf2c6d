//! The screen of an ACP agent: its conversation rendered as terminal output, so that every view
//! made for terminal agents (screen, attach, output subscriptions) shows ACP agents unchanged.
//!
//! The output is append-only history plus a live tail at the bottom. History is what will not
//! change any more: prompts, finished message lines, finished tool calls, answered permission
//! requests, notes. The tail is redrawn in place on every change: the line of the message being
//! streamed, tool calls still running, the plan, open permission requests, a status line and
//! the person's input line. Text is wrapped here, at the screen's width, so the tail's height
//! is always known and can be erased exactly; it never grows taller than the screen. History is
//! kept (bounded) so that a resize can redraw everything at the new width.
//!
//! Also here: the input line's editor, which turns keystrokes into edits, a prompt on Enter, or a
//! cancel. Pure: values in, bytes out; knows nothing of processes, ACP's wire or the runtime.

use std::collections::VecDeque;
use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

use super::proto::{PlanEntry, ToolStatus};

/// Most characters the input line holds; more typing is ignored.
const INPUT_LIMIT: usize = 64 * 1024;
/// Tool calls drawn in the tail; more are summed up in one line.
const TAIL_TOOLS: usize = 6;
/// Plan entries drawn in the tail; more are summed up in one line.
const TAIL_PLAN: usize = 10;
/// Running tool calls kept in the tail; past this the oldest goes to history as it stands.
const RUNNING_TOOLS: usize = 256;

/// How a piece of text looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    /// The person's prompts.
    Prompt,
    /// The agent's reasoning.
    Thought,
    /// Secondary information: status, notes, option kinds.
    Dim,
    /// Something finished well.
    Good,
    /// Something failed.
    Bad,
    /// Something runs.
    Busy,
    /// A question for the person.
    Ask,
    /// orch's own error reports.
    Error,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Self::Plain => "",
            Self::Prompt => "\x1b[1m",
            Self::Thought => "\x1b[2;3m",
            Self::Dim => "\x1b[2m",
            Self::Good => "\x1b[32m",
            Self::Bad => "\x1b[31m",
            Self::Busy => "\x1b[33m",
            Self::Ask => "\x1b[1;33m",
            Self::Error => "\x1b[1;31m",
        }
    }
}

/// A run of text in one style.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    style: Style,
    text: String,
}

/// A logical line: spans, no newline; wrapped into rows when drawn.
type Line = Vec<Span>;

fn span(style: Style, text: impl Into<String>) -> Span {
    Span {
        style,
        text: text.into(),
    }
}

/// A drawn row of history.
#[derive(Debug, Clone)]
struct Row {
    spans: Line,
    /// This row continues the previous one (the line was wrapped), so a redraw at another
    /// width joins them again.
    joined: bool,
}

/// Which stream a message chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    User,
    Agent,
    Thought,
}

/// A tool call as the screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolView {
    pub id: String,
    pub title: String,
    pub status: Option<ToolStatus>,
    /// A line of detail shown under a failed call (the first line of its output).
    pub detail: Option<String>,
}

/// One change to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    /// A prompt the person sent.
    Prompt(String),
    /// Part of a streamed message: appended to the open one of the same kind and id.
    Chunk {
        kind: ChunkKind,
        text: String,
        message_id: Option<String>,
    },
    /// A tool call appeared or changed: running ones live in the tail, a finished one becomes
    /// history.
    Tool(ToolView),
    /// The agent's whole plan, replacing the previous one.
    Plan(Vec<PlanEntry>),
    /// A permission request opened.
    Ask {
        id: u64,
        title: String,
        /// `(name, kind)` of each option, in the agent's order.
        options: Vec<(String, String)>,
    },
    /// A permission request closed; `outcome` in words.
    Asked { id: u64, outcome: String },
    /// A line of its own in history.
    Note { style: Style, text: String },
    /// The turn is over: the open message, running tools and the plan become history.
    Settle,
    /// The window title.
    Title(String),
}

/// The open message: the last, unfinished row of it stays in the tail until it is complete.
#[derive(Debug)]
struct Open {
    kind: ChunkKind,
    message_id: Option<String>,
    /// The part of the current line not yet in history.
    line: Line,
    /// Part of the current line is already in history (it wrapped).
    continued: bool,
}

/// An open permission request as drawn.
#[derive(Debug)]
struct AskView {
    id: u64,
    title: String,
    options: Vec<(String, String)>,
}

/// The conversation's screen: history, the live tail, and the input line.
pub struct Screen {
    cols: usize,
    rows: usize,
    /// Rows drawn into history, for redrawing after a resize.
    history: VecDeque<Row>,
    /// Most rows of history kept.
    history_limit: usize,
    open: Option<Open>,
    /// Tool calls still running, in the order they appeared.
    tools: Vec<ToolView>,
    plan: Vec<PlanEntry>,
    asks: Vec<AskView>,
    /// The status line's text.
    status: String,
    /// The person's input line as it is to be drawn (a copy: the editor's owner keeps it).
    pub input: Input,
    /// Rows the tail takes on screen now; the cursor is on its last row.
    drawn_tail: usize,
}

impl Screen {
    /// A screen of `cols` x `rows` keeping `history_limit` rows for redraws.
    pub fn new(cols: u16, rows: u16, history_limit: usize) -> Self {
        Self {
            cols: usize::from(cols.max(4)),
            rows: usize::from(rows.max(2)),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            open: None,
            tools: Vec::new(),
            plan: Vec::new(),
            asks: Vec::new(),
            status: String::new(),
            input: Input::default(),
            drawn_tail: 0,
        }
    }

    /// What a fresh view needs first: bracketed paste on (so that views send pastes as such),
    /// then the tail.
    pub fn start(&mut self) -> Vec<u8> {
        let mut out = b"\x1b[?2004h".to_vec();
        self.apply(Vec::new(), &mut out);
        out
    }

    pub fn set_status(&mut self, status: String) {
        self.status = status;
    }

    /// Show changes (none: just redraw the tail, after an edit of the input line); the bytes
    /// that bring the terminal there are appended to `out`.
    pub fn apply(&mut self, changes: Vec<Show>, out: &mut Vec<u8>) {
        self.erase_tail(out);
        for change in changes {
            self.show(change, out);
        }
        self.draw_tail(out);
    }

    /// Change the size: clear everything, history included, and draw it all again at the new
    /// width.
    pub fn resize(&mut self, cols: u16, rows: u16, out: &mut Vec<u8>) {
        self.cols = usize::from(cols.max(4));
        self.rows = usize::from(rows.max(2));
        out.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J\x1b[3J");
        self.drawn_tail = 0;
        let rows: Vec<Row> = self.history.drain(..).collect();
        let mut logical: Vec<Line> = Vec::new();
        for row in rows {
            match logical.last_mut() {
                Some(last) if row.joined => last.extend(row.spans),
                _ => logical.push(row.spans),
            }
        }
        for line in logical {
            self.commit_line(line, false, out);
        }
        if let Some(open) = self.open.as_mut() {
            open.continued = false;
        }
        self.draw_tail(out);
    }

    fn show(&mut self, change: Show, out: &mut Vec<u8>) {
        match change {
            Show::Prompt(text) => {
                self.close_open(out);
                self.chunk(ChunkKind::User, &text, None, out);
                self.close_open(out);
            }
            Show::Chunk {
                kind,
                text,
                message_id,
            } => self.chunk(kind, &text, message_id, out),
            Show::Tool(tool) => {
                let known = self.tools.iter().position(|t| t.id == tool.id);
                if tool.status.is_some_and(ToolStatus::finished) {
                    if let Some(i) = known {
                        self.tools.remove(i);
                    }
                    self.close_open(out);
                    self.commit_tool(&tool, out);
                } else if let Some(i) = known {
                    self.tools[i] = tool;
                } else {
                    if self.tools.len() >= RUNNING_TOOLS {
                        let oldest = self.tools.remove(0);
                        self.close_open(out);
                        self.commit_tool(&oldest, out);
                    }
                    self.tools.push(tool);
                }
            }
            Show::Plan(entries) => self.plan = entries,
            Show::Ask { id, title, options } => self.asks.push(AskView { id, title, options }),
            Show::Asked { id, outcome } => {
                let title = match self.asks.iter().position(|a| a.id == id) {
                    Some(i) => self.asks.remove(i).title,
                    None => return,
                };
                self.close_open(out);
                self.commit_line(
                    vec![
                        span(Style::Ask, "? "),
                        span(Style::Plain, clean(&title)),
                        span(Style::Dim, format!(" → {}", clean(&outcome))),
                    ],
                    false,
                    out,
                );
            }
            Show::Note { style, text } => {
                self.close_open(out);
                for line in clean(&text).split('\n') {
                    self.commit_line(vec![span(style, line)], false, out);
                }
            }
            Show::Settle => {
                self.close_open(out);
                for tool in std::mem::take(&mut self.tools) {
                    self.commit_tool(&tool, out);
                }
                let plan = std::mem::take(&mut self.plan);
                for line in plan_lines(&plan, usize::MAX) {
                    self.commit_line(line, false, out);
                }
            }
            Show::Title(title) => {
                let title: String = clean(&title).chars().filter(|&c| c != '\n').collect();
                let _ = write!(ByteWriter(out), "\x1b]2;{title}\x07");
            }
        }
    }

    /// Append a chunk to the open message, opening a new one when the kind or message differs.
    fn chunk(
        &mut self,
        kind: ChunkKind,
        text: &str,
        message_id: Option<String>,
        out: &mut Vec<u8>,
    ) {
        let same = self
            .open
            .as_ref()
            .is_some_and(|o| o.kind == kind && o.message_id == message_id);
        if !same {
            self.close_open(out);
            if kind == ChunkKind::User && !self.history.is_empty() {
                self.commit_line(Vec::new(), false, out);
            }
            let line = match kind {
                ChunkKind::User => vec![span(Style::Prompt, "› ")],
                _ => Vec::new(),
            };
            self.open = Some(Open {
                kind,
                message_id,
                line,
                continued: false,
            });
        }
        let style = match kind {
            ChunkKind::User => Style::Prompt,
            ChunkKind::Agent => Style::Plain,
            ChunkKind::Thought => Style::Thought,
        };
        let text = clean(text);
        let cols = self.cols;
        let mut pieces = text.split('\n').peekable();
        while let Some(piece) = pieces.next() {
            let newline = pieces.peek().is_some();
            let open = self.open.as_mut().expect("opened above");
            if !piece.is_empty() {
                push_text(&mut open.line, style, piece);
            }
            let (rows, continued) = if newline {
                // The line is complete.
                let line = std::mem::take(&mut open.line);
                (
                    wrap(&line, cols),
                    std::mem::replace(&mut open.continued, false),
                )
            } else {
                // Rows that are full already go to history; the last one stays open.
                let mut rows = wrap(&open.line, cols);
                if rows.len() < 2 {
                    continue;
                }
                open.line = rows.pop().unwrap_or_default();
                (rows, std::mem::replace(&mut open.continued, true))
            };
            for (i, row) in rows.into_iter().enumerate() {
                self.push_row(row, continued || i > 0, out);
            }
        }
    }

    /// The open message's unfinished line goes to history; no message is open after.
    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            if !open.line.is_empty() {
                self.commit_line(open.line, open.continued, out);
            }
        }
    }

    fn commit_tool(&mut self, tool: &ToolView, out: &mut Vec<u8>) {
        self.commit_line(tool_line(tool), false, out);
        if tool.status == Some(ToolStatus::Failed) {
            if let Some(detail) = tool.detail.as_deref() {
                self.commit_line(
                    vec![span(Style::Dim, format!("  {}", clean(detail)))],
                    false,
                    out,
                );
            }
        }
    }

    /// Draw a logical line into history, wrapped.
    fn commit_line(&mut self, line: Line, continued: bool, out: &mut Vec<u8>) {
        for (i, row) in wrap(&line, self.cols).into_iter().enumerate() {
            self.push_row(row, continued || i > 0, out);
        }
    }

    fn push_row(&mut self, spans: Line, joined: bool, out: &mut Vec<u8>) {
        draw_row(&spans, out);
        out.extend_from_slice(b"\r\n");
        self.history.push_back(Row { spans, joined });
        while self.history.len() > self.history_limit {
            self.history.pop_front();
            if let Some(front) = self.history.front_mut() {
                front.joined = false;
            }
        }
    }

    /// Erase the tail drawn last; the cursor ends where it began.
    fn erase_tail(&mut self, out: &mut Vec<u8>) {
        if self.drawn_tail == 0 {
            return;
        }
        out.push(b'\r');
        if self.drawn_tail > 1 {
            let _ = write!(ByteWriter(out), "\x1b[{}A", self.drawn_tail - 1);
        }
        out.extend_from_slice(b"\x1b[0m\x1b[J");
        self.drawn_tail = 0;
    }

    /// The tail's rows, top to bottom, the input row last; at most the screen's height.
    fn tail_rows(&self) -> (Vec<Line>, usize) {
        let mut lines: Vec<Line> = Vec::new();
        if let Some(open) = &self.open {
            if !open.line.is_empty() {
                lines.push(open.line.clone());
            }
        }
        for tool in self.tools.iter().take(TAIL_TOOLS) {
            lines.push(tool_line(tool));
        }
        if self.tools.len() > TAIL_TOOLS {
            lines.push(vec![span(
                Style::Dim,
                format!("  … {} more tool calls", self.tools.len() - TAIL_TOOLS),
            )]);
        }
        lines.extend(plan_lines(&self.plan, TAIL_PLAN));
        for ask in &self.asks {
            lines.push(vec![
                span(Style::Ask, "? Allow "),
                span(Style::Plain, clean(&ask.title)),
                span(Style::Ask, "?"),
            ]);
            for (i, (name, kind)) in ask.options.iter().enumerate() {
                lines.push(vec![
                    span(Style::Plain, format!("  {}. {}", i + 1, clean(name))),
                    span(Style::Dim, format!(" ({})", clean(kind))),
                ]);
            }
        }
        if !self.status.is_empty() {
            lines.push(vec![span(Style::Dim, clean(&self.status))]);
        }
        let mut rows: Vec<Line> = lines
            .iter()
            .flat_map(|line| wrap(line, self.cols))
            .collect();
        let (input, cursor) = self.input.row(self.cols);
        rows.push(input);
        if rows.len() > self.rows {
            rows.drain(..rows.len() - self.rows);
        }
        (rows, cursor)
    }

    fn draw_tail(&mut self, out: &mut Vec<u8>) {
        let (rows, cursor) = self.tail_rows();
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n");
            }
            draw_row(row, out);
        }
        out.push(b'\r');
        if cursor > 0 {
            let _ = write!(ByteWriter(out), "\x1b[{cursor}C");
        }
        self.drawn_tail = rows.len();
    }
}

/// `fmt::Write` into a byte buffer.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn tool_line(tool: &ToolView) -> Line {
    let (mark, style) = match tool.status {
        None | Some(ToolStatus::Pending) => ("◌", Style::Busy),
        Some(ToolStatus::InProgress) => ("◐", Style::Busy),
        Some(ToolStatus::Completed) => ("✓", Style::Good),
        Some(ToolStatus::Failed) => ("✗", Style::Bad),
    };
    let words = tool.status.unwrap_or(ToolStatus::Pending).words();
    let title = if tool.title.is_empty() {
        "tool call"
    } else {
        &tool.title
    };
    vec![
        span(style, format!("{mark} ")),
        span(Style::Plain, clean(title)),
        span(Style::Dim, format!(" ({words})")),
    ]
}

fn plan_lines(plan: &[PlanEntry], limit: usize) -> Vec<Line> {
    if plan.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![vec![span(Style::Dim, "Plan:")]];
    for entry in plan.iter().take(limit) {
        let (mark, style) = match entry.status.as_str() {
            "completed" => ("☑", Style::Good),
            "in_progress" => ("◐", Style::Busy),
            _ => ("☐", Style::Plain),
        };
        lines.push(vec![
            span(style, format!("  {mark} ")),
            span(Style::Plain, clean(&entry.content)),
        ]);
    }
    if plan.len() > limit {
        lines.push(vec![span(
            Style::Dim,
            format!("  … {} more steps", plan.len() - limit),
        )]);
    }
    lines
}

/// Append text to a line, merging with the last span when the style is the same.
fn push_text(line: &mut Line, style: Style, text: &str) {
    match line.last_mut() {
        Some(last) if last.style == style => last.text.push_str(text),
        _ => line.push(span(style, text)),
    }
}

/// Text safe to draw: no control characters (so no escape sequence of the agent's reaches a
/// view) but newlines; tabs as spaces.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Cut a line into rows of at most `cols` cells; an empty line is one empty row.
fn wrap(line: &Line, cols: usize) -> Vec<Line> {
    let mut rows: Vec<Line> = vec![Vec::new()];
    let mut width = 0;
    for s in line {
        for c in s.text.chars() {
            let w = c.width().unwrap_or(0);
            if w > 0 && width + w > cols && width > 0 {
                rows.push(Vec::new());
                width = 0;
            }
            let row = rows.last_mut().expect("never empty");
            match row.last_mut() {
                Some(last) if last.style == s.style => last.text.push(c),
                _ => row.push(span(s.style, c.to_string())),
            }
            width += w;
        }
    }
    rows
}

fn draw_row(spans: &[Span], out: &mut Vec<u8>) {
    let mut styled = false;
    for s in spans {
        if s.style != Style::Plain || styled {
            out.extend_from_slice(b"\x1b[0m");
            out.extend_from_slice(s.style.sgr().as_bytes());
            styled = s.style != Style::Plain;
        }
        out.extend_from_slice(s.text.as_bytes());
    }
    if styled {
        out.extend_from_slice(b"\x1b[0m");
    }
}

/// What a keystroke asks for beyond editing the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Enter on a non-empty line: send it as a prompt.
    Submit(String),
    /// Ctrl-C on an empty line, or Esc: cancel the running turn.
    Cancel,
}

/// The person's input line: text, cursor, and the state of a key sequence split across writes.
#[derive(Debug, Default, Clone)]
pub struct Input {
    text: Vec<char>,
    /// Position of the cursor, in characters.
    cursor: usize,
    /// An escape sequence read so far.
    esc: Vec<u8>,
    /// An incomplete UTF-8 character read so far.
    utf8: Vec<u8>,
    /// Inside a bracketed paste: line ends are text, not Enter.
    paste: bool,
}

impl Input {
    /// Take keystrokes as a terminal sends them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        for &b in bytes {
            if !self.esc.is_empty() {
                self.esc.push(b);
                self.escape(&mut keys);
                continue;
            }
            if !self.utf8.is_empty() || b >= 0x80 {
                self.utf8.push(b);
                match std::str::from_utf8(&self.utf8) {
                    Ok(text) => {
                        let text = text.to_string();
                        self.utf8.clear();
                        self.insert(&text);
                    }
                    Err(err) if err.error_len().is_some() || self.utf8.len() >= 4 => {
                        self.utf8.clear();
                    }
                    Err(_) => {}
                }
                continue;
            }
            match b {
                0x1b => self.esc.push(b),
                b'\r' | b'\n' if self.paste => self.insert("\n"),
                b'\r' | b'\n' => {
                    let text: String = self.text.iter().collect();
                    if !text.trim().is_empty() {
                        keys.push(Key::Submit(text));
                    }
                    self.text.clear();
                    self.cursor = 0;
                }
                b'\t' => self.insert(" "),
                0x7f | 0x08 => {
                    if self.cursor > 0 {
                        self.cursor -= 1;
                        self.text.remove(self.cursor);
                    }
                }
                0x03 => {
                    if self.text.is_empty() {
                        keys.push(Key::Cancel);
                    }
                    self.text.clear();
                    self.cursor = 0;
                }
                0x15 => {
                    self.text.drain(..self.cursor);
                    self.cursor = 0;
                }
                0x0b => self.text.truncate(self.cursor),
                0x17 => {
                    let end = self.cursor;
                    while self.cursor > 0 && self.text[self.cursor - 1] == ' ' {
                        self.cursor -= 1;
                    }
                    while self.cursor > 0 && self.text[self.cursor - 1] != ' ' {
                        self.cursor -= 1;
                    }
                    self.text.drain(self.cursor..end);
                }
                0x01 => self.cursor = 0,
                0x05 => self.cursor = self.text.len(),
                0x02 => self.cursor = self.cursor.saturating_sub(1),
                0x06 => self.cursor = (self.cursor + 1).min(self.text.len()),
                b if b < 0x20 => {}
                b => self.insert(&(b as char).to_string()),
            }
        }
        // A lone escape at the end of a write is the Esc key: views send one key per write.
        if self.esc == [0x1b] && !self.paste {
            self.esc.clear();
            keys.push(Key::Cancel);
        }
        keys
    }

    /// Look at the escape sequence read so far; act once it is complete.
    fn escape(&mut self, keys: &mut Vec<Key>) {
        let seq = &self.esc;
        let last = *seq.last().expect("not empty");
        let complete = match seq[1] {
            b'[' => seq.len() > 2 && (0x40..=0x7e).contains(&last),
            b'O' => seq.len() > 2,
            0x1b => {
                // Esc pressed, and a new sequence starts.
                self.esc = vec![0x1b];
                if !self.paste {
                    keys.push(Key::Cancel);
                }
                return;
            }
            _ => true,
        };
        if !complete {
            if seq.len() > 32 {
                self.esc.clear();
            }
            return;
        }
        let seq = std::mem::take(&mut self.esc);
        let body = &seq[2..];
        match (seq[1], body) {
            (b'[', b"200~") => self.paste = true,
            (b'[', b"201~") => self.paste = false,
            (b'[' | b'O', b"D") => self.cursor = self.cursor.saturating_sub(1),
            (b'[' | b'O', b"C") => self.cursor = (self.cursor + 1).min(self.text.len()),
            (b'[' | b'O', b"H") | (b'[', b"1~" | b"7~") => self.cursor = 0,
            (b'[' | b'O', b"F") | (b'[', b"4~" | b"8~") => self.cursor = self.text.len(),
            (b'[', b"3~") if self.cursor < self.text.len() => {
                self.text.remove(self.cursor);
            }
            _ => {}
        }
    }

    /// Insert text at the cursor (a paste, or typed characters).
    pub fn insert(&mut self, text: &str) {
        for c in text.chars() {
            if self.text.len() >= INPUT_LIMIT {
                break;
            }
            let c = match c {
                '\r' => '\n',
                '\t' => ' ',
                c if c.is_control() && c != '\n' => continue,
                c => c,
            };
            self.text.insert(self.cursor, c);
            self.cursor += 1;
        }
    }

    /// The text typed so far.
    #[cfg(test)]
    pub fn text(&self) -> String {
        self.text.iter().collect()
    }

    /// The input row at `cols` wide, scrolled so the cursor shows, and the cursor's column.
    fn row(&self, cols: usize) -> (Line, usize) {
        const PROMPT: &str = "› ";
        let room = cols.saturating_sub(3).max(1);
        let shown: Vec<char> = self
            .text
            .iter()
            .map(|&c| if c == '\n' { '↵' } else { c })
            .collect();
        let width = |cs: &[char]| cs.iter().map(|c| c.width().unwrap_or(0)).sum::<usize>();
        let mut start = 0;
        while width(&shown[start..self.cursor]) > room {
            start += 1;
        }
        let mut end = self.cursor;
        while end < shown.len() && width(&shown[start..=end]) <= room {
            end += 1;
        }
        let cursor = 2 + width(&shown[start..self.cursor]);
        let text: String = shown[start..end].iter().collect();
        (
            vec![span(Style::Prompt, PROMPT), span(Style::Plain, text)],
            cursor,
        )
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::adapters::emulator::Emulator;

    /// A screen and the emulator it draws into.
    struct Term {
        screen: Screen,
        emulator: Emulator,
    }

    impl Term {
        fn new(cols: u16, rows: u16) -> Self {
            let mut screen = Screen::new(cols, rows, 1000);
            let mut emulator = Emulator::new(cols, rows, 1000);
            emulator.feed(&screen.start());
            Self { screen, emulator }
        }

        fn show(&mut self, changes: Vec<Show>) -> &mut Self {
            let mut out = Vec::new();
            self.screen.apply(changes, &mut out);
            self.emulator.feed(&out);
            self
        }

        fn status(&mut self, status: &str) -> &mut Self {
            self.screen.set_status(status.to_string());
            self.show(Vec::new())
        }

        fn keys(&mut self, bytes: &[u8]) -> Vec<Key> {
            let keys = self.screen.input.feed(bytes);
            self.show(Vec::new());
            keys
        }

        fn resize(&mut self, cols: u16, rows: u16) {
            let mut out = Vec::new();
            self.emulator.resize(cols, rows);
            self.screen.resize(cols, rows, &mut out);
            self.emulator.feed(&out);
        }

        /// History and screen, with the cursor drawn as `▏`.
        fn text(&mut self, history: usize) -> String {
            let snap = self.emulator.snapshot(history);
            let offset = snap.lines.len() - usize::from(snap.rows);
            let mut lines = snap.lines.clone();
            let row = offset + usize::from(snap.cursor_row);
            let mut chars: Vec<char> = lines[row].chars().collect();
            let col = usize::from(snap.cursor_col);
            while chars.len() < col {
                chars.push(' ');
            }
            chars.insert(col, '▏');
            lines[row] = chars.into_iter().collect();
            while lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            lines.join("\n")
        }

        fn check(&mut self, expect: Expect) {
            expect.assert_eq(&self.text(100));
        }
    }

    fn chunk(kind: ChunkKind, text: &str) -> Show {
        Show::Chunk {
            kind,
            text: text.to_string(),
            message_id: None,
        }
    }

    fn tool(id: &str, title: &str, status: Option<ToolStatus>) -> Show {
        Show::Tool(ToolView {
            id: id.into(),
            title: title.into(),
            status,
            detail: None,
        })
    }

    #[test]
    fn a_turn_streams_into_history() {
        let mut t = Term::new(30, 8);
        t.status("gemini · idle");
        t.check(expect![[r#"
            gemini · idle
            › ▏"#]]);
        t.show(vec![Show::Prompt("@reply(Hello)".into())])
            .status("gemini · working");
        t.show(vec![chunk(ChunkKind::Agent, "Hello fr")]);
        t.check(expect![[r#"
            › @reply(Hello)
            Hello fr
            gemini · working
            › ▏"#]]);
        t.show(vec![chunk(ChunkKind::Agent, "om the m")])
            .show(vec![chunk(
                ChunkKind::Agent,
                "odel\nand a second line that wraps",
            )]);
        t.check(expect![[r#"
            › @reply(Hello)
            Hello from the model
            and a second line that wraps
            gemini · working
            › ▏"#]]);
        t.show(vec![Show::Settle]).status("gemini · idle");
        t.show(vec![Show::Prompt("next".into())]);
        t.check(expect![[r#"
            › @reply(Hello)
            Hello from the model
            and a second line that wraps

            › next
            gemini · idle
            › ▏"#]]);
    }

    #[test]
    fn long_lines_wrap_and_scroll_into_history() {
        let mut t = Term::new(12, 4);
        t.status("s");
        t.show(vec![chunk(
            ChunkKind::Agent,
            "one two three four five six seven",
        )]);
        // The full rows went to history; the last row stays in the tail.
        t.check(expect![[r#"
            one two thre
            e four five
            six seven
            s
            › ▏"#]]);
        t.show(vec![chunk(ChunkKind::Agent, " eight")]);
        t.check(expect![[r#"
            one two thre
            e four five
            six seven ei
            ght
            s
            › ▏"#]]);
    }

    #[test]
    fn thoughts_messages_and_ids_make_paragraphs() {
        let mut t = Term::new(40, 10);
        t.show(vec![
            chunk(ChunkKind::Thought, "Let me think"),
            chunk(ChunkKind::Agent, "Answer"),
            Show::Chunk {
                kind: ChunkKind::Agent,
                text: "first".into(),
                message_id: Some("m1".into()),
            },
            Show::Chunk {
                kind: ChunkKind::Agent,
                text: " message".into(),
                message_id: Some("m1".into()),
            },
            Show::Chunk {
                kind: ChunkKind::Agent,
                text: "second".into(),
                message_id: Some("m2".into()),
            },
        ]);
        t.check(expect![[r#"
            Let me think
            Answer
            first message
            second
            › ▏"#]]);
        // The thought is dim and italic.
        let ansi = t.emulator.snapshot(0).ansi;
        assert!(ansi.contains("\x1b[0;2;3mLet me think"), "{ansi:?}");
    }

    #[test]
    fn tool_calls_update_in_place_then_settle() {
        let mut t = Term::new(40, 10);
        t.show(vec![
            chunk(ChunkKind::Agent, "Running it"),
            tool("t1", "Terminal", Some(ToolStatus::Pending)),
        ]);
        t.check(expect![[r#"
            Running it
            ◌ Terminal (pending)
            › ▏"#]]);
        t.show(vec![tool("t1", "touch x", Some(ToolStatus::InProgress))]);
        t.check(expect![[r#"
            Running it
            ◐ touch x (in progress)
            › ▏"#]]);
        t.show(vec![
            tool("t2", "ls", None),
            Show::Tool(ToolView {
                id: "t1".into(),
                title: "touch x".into(),
                status: Some(ToolStatus::Failed),
                detail: Some("Permission denied".into()),
            }),
        ]);
        t.check(expect![[r#"
            Running it
            ✗ touch x (failed)
              Permission denied
            ◌ ls (pending)
            › ▏"#]]);
        t.show(vec![Show::Settle]);
        t.check(expect![[r#"
            Running it
            ✗ touch x (failed)
              Permission denied
            ◌ ls (pending)
            › ▏"#]]);
        assert!(t.screen.tools.is_empty());
    }

    #[test]
    fn plans_are_checklists() {
        let mut t = Term::new(40, 10);
        let entry = |content: &str, status: &str| PlanEntry {
            content: content.into(),
            priority: "high".into(),
            status: status.into(),
        };
        t.show(vec![Show::Plan(vec![
            entry("Read the code", "completed"),
            entry("Fix the bug", "in_progress"),
            entry("Run the tests", "pending"),
        ])]);
        t.check(expect![[r#"
            Plan:
              ☑ Read the code
              ◐ Fix the bug
              ☐ Run the tests
            › ▏"#]]);
        t.show(vec![
            Show::Plan(vec![
                entry("Read the code", "completed"),
                entry("Fix the bug", "completed"),
            ]),
            Show::Settle,
            chunk(ChunkKind::Agent, "Done"),
        ]);
        t.check(expect![[r#"
            Plan:
              ☑ Read the code
              ☑ Fix the bug
            Done
            › ▏"#]]);
    }

    #[test]
    fn permission_requests_show_their_options() {
        let mut t = Term::new(50, 10);
        t.status("waiting");
        t.show(vec![Show::Ask {
            id: 1,
            title: "touch x".into(),
            options: vec![
                ("Allow for this session".into(), "allow_always".into()),
                ("Allow".into(), "allow_once".into()),
                ("Reject".into(), "reject_once".into()),
            ],
        }]);
        t.check(expect![[r#"
            ? Allow touch x?
              1. Allow for this session (allow_always)
              2. Allow (allow_once)
              3. Reject (reject_once)
            waiting
            › ▏"#]]);
        t.show(vec![Show::Asked {
            id: 1,
            outcome: "Allow".into(),
        }]);
        t.check(expect![[r#"
            ? touch x → Allow
            waiting
            › ▏"#]]);
    }

    #[test]
    fn notes_titles_and_agent_escapes() {
        let mut t = Term::new(40, 6);
        t.show(vec![
            chunk(ChunkKind::Agent, "evil \x1b[2J\x1b]2;pwned\x07text\tend"),
            Show::Note {
                style: Style::Error,
                text: "orch: a problem\nsecond line".into(),
            },
            Show::Title("Test \x1bsession".into()),
        ]);
        t.check(expect![[r#"
            evil [2J]2;pwnedtext    end
            orch: a problem
            second line
            › ▏"#]]);
        assert_eq!(
            t.emulator.snapshot(0).title.as_deref(),
            Some("Test session")
        );
    }

    #[test]
    fn a_tail_taller_than_the_screen_keeps_its_bottom() {
        let mut t = Term::new(30, 5);
        t.status("status");
        t.show(
            (0..9)
                .map(|i| tool(&format!("t{i}"), &format!("tool {i}"), None))
                .collect(),
        );
        t.check(expect![[r#"
            ◌ tool 4 (pending)
            ◌ tool 5 (pending)
              … 3 more tool calls
            status
            › ▏"#]]);
        t.show(vec![Show::Settle]);
        t.check(expect![[r#"
            ◌ tool 0 (pending)
            ◌ tool 1 (pending)
            ◌ tool 2 (pending)
            ◌ tool 3 (pending)
            ◌ tool 4 (pending)
            ◌ tool 5 (pending)
            ◌ tool 6 (pending)
            ◌ tool 7 (pending)
            ◌ tool 8 (pending)
            status
            › ▏"#]]);
    }

    #[test]
    fn resize_redraws_everything_at_the_new_width() {
        let mut t = Term::new(20, 6);
        t.show(vec![
            Show::Prompt("a prompt".into()),
            chunk(ChunkKind::Agent, "a long answer that wraps around\nshort"),
            chunk(ChunkKind::Agent, " and open"),
        ]);
        t.check(expect![[r#"
            › a prompt
            a long answer that w
            raps around
            short and open
            › ▏"#]]);
        t.resize(40, 6);
        t.check(expect![[r#"
            › a prompt
            a long answer that wraps around
            short and open
            › ▏"#]]);
        t.show(vec![chunk(ChunkKind::Agent, "!")]);
        t.check(expect![[r#"
            › a prompt
            a long answer that wraps around
            short and open!
            › ▏"#]]);
    }

    #[test]
    fn typing_edits_the_input_line() {
        let mut t = Term::new(20, 4);
        assert_eq!(t.keys(b"hello wrld"), []);
        t.keys(b"\x1b[D\x1b[D\x1b[D");
        t.keys("o€".as_bytes());
        t.check(expect!["› hello wo€▏rld"]);
        t.keys(b"\x7f\x1b[F");
        t.check(expect!["› hello world▏"]);
        // Split UTF-8 and escape sequences across writes.
        t.keys(&"é".as_bytes()[..1]);
        t.keys(&"é".as_bytes()[1..]);
        t.keys(b"\x1b[");
        t.keys(b"H");
        t.check(expect!["› ▏hello worldé"]);
        assert_eq!(t.keys(b"\r"), [Key::Submit("hello worldé".into())]);
        t.check(expect!["› ▏"]);
        assert_eq!(t.keys(b"\r"), []);
        // Pastes keep their line ends.
        assert_eq!(t.keys(b"\x1b[200~one\rtwo\x1b[201~"), []);
        t.check(expect!["› one↵two▏"]);
        assert_eq!(t.keys(b"\x15"), []);
        assert_eq!(t.screen.input.text(), "");
        assert_eq!(t.keys(b"\x03"), [Key::Cancel]);
        assert_eq!(t.keys(b"x\x03"), []);
        assert_eq!(t.keys(b"\x1b"), [Key::Cancel]);
        t.keys(b"abc def\x17");
        assert_eq!(t.screen.input.text(), "abc ");
    }

    #[test]
    fn a_long_input_line_scrolls() {
        let mut t = Term::new(12, 3);
        t.keys(b"0123456789abcdef");
        t.check(expect!["› 789abcdef▏"]);
        t.keys(b"\x01");
        t.check(expect!["› ▏012345678"]);
    }
}
