//! tmux commands as values: each request is a control-mode line (one or more commands, quoted for
//! tmux's command parser) paired with the format it asks for and the parser of its reply.
//!
//! Everything that knows tmux's syntax lives here: argument quoting, format escaping, the format
//! strings and how their output is read back. It knows nothing of processes, threads or
//! terminals: it turns values into text and reply blocks into values, and is tested as such.

use std::fmt;

use super::control::Block;

/// The name of the placeholder window that keeps the workspace session alive without agents.
pub const PLACEHOLDER_WINDOW: &str = "orch";

/// The window option that records which terminal id a window belongs to, so that a later daemon
/// can tell its own panes apart and never adopts a pane id that tmux reused for another program.
pub const TERMINAL_ID_OPTION: &str = "@orch_id";

/// Bytes of input carried by one `send-keys -H` command (three characters of line per byte).
pub const SEND_CHUNK: usize = 1024;

/// Bytes of paste text carried by one `set-buffer` command.
pub const PASTE_CHUNK: usize = 8 * 1024;

/// How the start script marks the end of its program: the pane title is set to
/// `orch-exited:<terminal id>:<status>` (an OSC 2 sequence in the program's output).
pub const EXIT_MARKER: &str = "orch-exited:";

/// The shell script that runs every program, as `/bin/sh -c SCRIPT orch <id> <cwd> <argv...>`.
///
/// tmux would silently start a program in the home directory when `-c` names a missing one, and
/// run a one-word command through the user's shell: `/bin/sh` enters the directory or fails
/// loudly, then runs the exact argv. It stays as the pane's process instead of `exec`ing because
/// tmux throws away a pane's output that it has not yet sent to control clients the moment the
/// pane's process exits (and with it the last words of a crashing agent): after the program
/// ends, the script writes the exit marker and keeps the terminal open for two seconds. tmux sets
/// the title while reading the output, so a reply that shows the title comes after everything
/// the program printed. The script survives SIGINT, SIGQUIT and SIGTERM meant for its program,
/// which gets them with default handlers.
const START_SCRIPT: &str = "id=$1\n\
    case $2 in \"~\") d=$HOME ;; \"~/\"*) d=$HOME/${2#\"~/\"} ;; *) d=$2 ;; esac\n\
    if cd -- \"$d\"; then\n\
    shift 2\n\
    trap : INT QUIT TERM\n\
    \"$@\"\n\
    s=$?\n\
    trap - INT QUIT TERM\n\
    else s=126; fi\n\
    printf '\\033]2;orch-exited:%s:%s\\033\\\\' \"$id\" \"$s\"\n\
    sleep 2\n\
    exit \"$s\"";

/// Fields of one pane, tab separated: free-form fields (set by people or programs) come last and
/// tmux prints names with tabs and newlines escaped.
const PANE_FORMAT: &str = "#{pane_id}\t#{pane_pid}\t#{pane_dead}\t#{pane_dead_status}\t\
                           #{pane_dead_signal}\t#{window_id}\t#{session_name}\t#{@orch_id}\t\
                           #{window_name}\t#{pane_title}";

/// What `new-window -P` prints about the pane it made.
const NEW_PANE_FORMAT: &str = "#{pane_id}\t#{pane_pid}\t#{window_id}";

/// Cursor, size and title of a pane; the title comes last and only its first line is read.
const CURSOR_FORMAT: &str =
    "#{cursor_x}\t#{cursor_y}\t#{pane_width}\t#{pane_height}\t#{host}\t#{pane_title}";

/// What went wrong running or reading a tmux command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// tmux answered `%error`; its words.
    #[error("tmux {command} failed: {message}")]
    Tmux { command: String, message: String },
    /// The reply was not what the format promised.
    #[error("unexpected reply to tmux {command}: {detail}")]
    Parse { command: String, detail: String },
    /// An argument cannot be passed to tmux at all.
    #[error("cannot pass {what} to tmux: it contains a NUL byte")]
    Nul { what: String },
}

impl CommandError {
    /// Whether tmux said the pane, window or session named in the command does not exist.
    pub fn is_missing_target(&self) -> bool {
        match self {
            CommandError::Tmux { message, .. } => {
                message.starts_with("can't find") || message.starts_with("no such")
            }
            _ => false,
        }
    }
}

/// One tmux command: its name and arguments, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The command name followed by its arguments, as tmux should receive them.
    words: Vec<String>,
}

impl Cmd {
    /// A command with no arguments yet.
    pub fn new(name: &str) -> Self {
        Self {
            words: vec![name.to_owned()],
        }
    }

    /// Append one argument (quoted when rendered).
    pub fn arg(mut self, word: impl Into<String>) -> Self {
        self.words.push(word.into());
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.words.extend(words.into_iter().map(Into::into));
        self
    }

    /// The command's name, for error messages.
    pub fn name(&self) -> &str {
        &self.words[0]
    }

    fn render(&self, out: &mut String) -> Result<(), CommandError> {
        for (i, word) in self.words.iter().enumerate() {
            if word.contains('\0') {
                return Err(CommandError::Nul {
                    what: format!("an argument of {}", self.name()),
                });
            }
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&quote(word));
        }
        Ok(())
    }
}

/// Reads the blocks of a successful reply into a value, or says what was wrong with them.
type Parser<T> = dyn Fn(&[Block]) -> Result<T, String> + Send + Sync;

/// A request: commands sent as one control-mode line, answered with one block per command, and
/// the parser that turns those blocks into a value.
pub struct Request<T> {
    /// The commands, run by tmux in one go (nothing else runs between them).
    cmds: Vec<Cmd>,
    /// Reads the blocks of a successful reply.
    parse: Box<Parser<T>>,
}

impl<T> fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request").field("cmds", &self.cmds).finish()
    }
}

impl<T> Request<T> {
    fn new(
        cmds: Vec<Cmd>,
        parse: impl Fn(&[Block]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            cmds,
            parse: Box::new(parse),
        }
    }

    /// Number of commands, which is the number of reply blocks when all succeed.
    pub fn commands(&self) -> usize {
        self.cmds.len()
    }

    /// The names of the commands, for messages.
    pub fn describe(&self) -> String {
        self.cmds
            .iter()
            .map(Cmd::name)
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// The words of a one-command request, as argv for a tmux process of its own.
    pub fn argv(&self) -> Vec<String> {
        self.cmds
            .iter()
            .flat_map(|c| c.words.iter().cloned())
            .collect()
    }

    /// The control-mode line, without its newline. Never empty: an empty line would detach the
    /// control client.
    pub fn line(&self) -> Result<String, CommandError> {
        let mut out = String::new();
        for (i, cmd) in self.cmds.iter().enumerate() {
            if i > 0 {
                out.push_str(" ; ");
            }
            cmd.render(&mut out)?;
        }
        Ok(out)
    }

    /// Read the reply blocks: tmux stops a line at the first failing command, so an `%error`
    /// block may come before all blocks did.
    pub fn finish(&self, blocks: &[Block]) -> Result<T, CommandError> {
        if let Some((i, failed)) = blocks.iter().enumerate().find(|(_, b)| b.error) {
            return Err(CommandError::Tmux {
                command: self.cmds.get(i).map_or("?", Cmd::name).to_owned(),
                message: failed.lines.join("; "),
            });
        }
        if blocks.len() != self.cmds.len() {
            return Err(CommandError::Parse {
                command: self.describe(),
                detail: format!(
                    "{} reply blocks for {} commands",
                    blocks.len(),
                    self.cmds.len()
                ),
            });
        }
        (self.parse)(blocks).map_err(|detail| CommandError::Parse {
            command: self.describe(),
            detail,
        })
    }
}

#[cfg(test)]
impl Request<()> {
    /// Any commands, with a reply that is not read.
    pub fn test(cmds: Vec<Cmd>) -> Self {
        Self::new(cmds, |_| Ok(()))
    }
}

/// Quote one argument for tmux's command parser so that it arrives as exactly these characters:
/// plain words stay bare, anything else is double-quoted with `\`, `"`, `$` and `~` escaped and
/// control characters written as octal escapes (a raw newline would end the control-mode line).
/// tmux expands a `~` that begins a word, quoted or not, into a home directory (`"~root"` became
/// `/root`), so every `~` is escaped: an argv is never interpreted.
/// A NUL cannot be passed; [`Cmd`] refuses it before quoting.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && !word.starts_with(['%', '='])
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@/.,:+-_".contains(c));
    if plain || is_target(word) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\\' | '"' | '$' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `word` is a pane, window or exact session target made by this module (`%3`, `@2`,
/// `=ws:4`), which reads better bare.
fn is_target(word: &str) -> bool {
    let rest = word.strip_prefix(['%', '@', '=']).unwrap_or("");
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c))
}

/// Escape `#` for arguments that tmux expands as formats (`new-window -n` and `-c`), so that
/// `#{...}` and `#(...)` in a name or path are shown, not evaluated.
pub fn escape_format(text: &str) -> String {
    text.replace('#', "##")
}

/// A name tmux accepts as a session or socket name and prints back unchanged: letters, digits,
/// `-` and `_`; anything else becomes `_` (tmux itself turns `:` and `.` into `_`).
pub fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "orch".to_owned()
    } else {
        clean
    }
}

/// An exact-match session target (`=name`), so that `ws` never matches a session `ws2`.
fn session_target(session: &str) -> String {
    format!("={session}")
}

/// The arguments after the tmux prefix that start the control client: attach to the workspace
/// session, creating it (and the server) when absent. Plain words only, so that a remote prefix
/// (`ssh host tmux`) can pass them through a shell unchanged.
pub fn control_argv(socket: &str, session: &str) -> Vec<String> {
    [
        // UTF-8 whatever the locale (an SSH login often has none): without it tmux prints the
        // tabs of our formats, and any non-ASCII text, as `_`.
        "-u",
        "-L",
        socket,
        "-C",
        "new-session",
        "-A",
        "-s",
        session,
        "-n",
        PLACEHOLDER_WINDOW,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One pane as tmux reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneInfo {
    /// The pane id (`%N`), unique while the server lives.
    pub pane_id: String,
    /// Process id of the pane's program, if it has one.
    pub pid: Option<u32>,
    /// Whether the program ended (the pane stays because of `remain-on-exit`).
    pub dead: bool,
    /// The program's exit code, when it ended with one (not by a signal).
    pub exit_status: Option<i32>,
    /// The signal that ended the program, when one did.
    pub exit_signal: Option<i32>,
    /// The window (`@N`) holding the pane.
    pub window_id: String,
    /// The session holding the window.
    pub session: String,
    /// The terminal id orch tagged the window with, if any.
    pub terminal_id: Option<String>,
    /// The window's name.
    pub window_name: String,
    /// The pane's title, where the start script leaves its exit marker.
    pub title: String,
}

fn parse_pane_line(line: &str) -> Result<PaneInfo, String> {
    let f: Vec<&str> = line.splitn(10, '\t').collect();
    if f.len() != 10 || !f[0].starts_with('%') {
        return Err(format!("not a pane line: {line:?}"));
    }
    let dead = f[2] == "1";
    Ok(PaneInfo {
        pane_id: f[0].to_owned(),
        pid: f[1].parse().ok(),
        dead,
        exit_status: f[3].parse().ok().filter(|_| dead),
        exit_signal: f[4].parse().ok().filter(|_| dead),
        window_id: f[5].to_owned(),
        session: f[6].to_owned(),
        terminal_id: (!f[7].is_empty()).then(|| f[7].to_owned()),
        window_name: f[8].to_owned(),
        title: f[9].to_owned(),
    })
}

/// What is known about how a pane's program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Still running.
    Running,
    /// Ended; the exit code, or `None` when a signal ended it.
    Ended(Option<i32>),
    /// The pane is dead but tmux has not read its status yet.
    Unsettled,
}

impl PaneInfo {
    /// How the program of terminal `id` ended: the start script's exit marker says it exactly
    /// (and only once every byte the program printed is ahead of this reply); without one (the
    /// script was killed, or the pane was not made by this version) tmux's own status is used.
    pub fn ending(&self, id: &str) -> Ending {
        if let Some(status) = self.marker_status(id) {
            return Ending::Ended(exit_code(status));
        }
        if !self.dead {
            Ending::Running
        } else if let Some(code) = self.exit_status {
            Ending::Ended(exit_code(code))
        } else if self.exit_signal.is_some() {
            Ending::Ended(None)
        } else {
            Ending::Unsettled
        }
    }

    fn marker_status(&self, id: &str) -> Option<i32> {
        let rest = self
            .title
            .strip_prefix(EXIT_MARKER)?
            .strip_prefix(id)?
            .strip_prefix(':')?;
        rest.parse().ok()
    }
}

/// The exit code a shell status stands for: 129 to 192 mean "killed by signal N - 128", which
/// the port reports as no code.
pub fn exit_code(status: i32) -> Option<i32> {
    (!(129..=192).contains(&status)).then_some(status)
}

/// The exit marker the start script writes for terminal `id`, up to the status.
pub fn marker_prefix(id: &str) -> String {
    format!("\x1b]2;{EXIT_MARKER}{id}:")
}

/// Every pane of the server (`None`) or of one session.
pub fn list_panes(session: Option<&str>) -> Request<Vec<PaneInfo>> {
    let cmd = match session {
        None => Cmd::new("list-panes").arg("-a"),
        Some(s) => Cmd::new("list-panes")
            .arg("-s")
            .arg("-t")
            .arg(session_target(s)),
    };
    Request::new(vec![cmd.arg("-F").arg(PANE_FORMAT)], |blocks| {
        blocks[0].lines.iter().map(|l| parse_pane_line(l)).collect()
    })
}

/// One pane, by id. `list-panes -t` fails for a missing pane, where `display-message -t` would
/// print empty fields.
pub fn pane_info(pane: &str) -> Request<PaneInfo> {
    let wanted = pane.to_owned();
    Request::new(
        vec![Cmd::new("list-panes")
            .args(["-t", pane, "-F"])
            .arg(PANE_FORMAT)],
        move |blocks| {
            let panes: Vec<PaneInfo> = blocks[0]
                .lines
                .iter()
                .map(|l| parse_pane_line(l))
                .collect::<Result<_, _>>()?;
            panes
                .into_iter()
                .find(|p| p.pane_id == wanted)
                .ok_or_else(|| format!("pane {wanted} is not in its own window"))
        },
    )
}

/// The process id of the tmux server, so that a restart can wait for the old one to be gone.
pub fn server_pid() -> Request<u32> {
    Request::new(
        vec![Cmd::new("display-message").args(["-p", "#{pid}"])],
        |blocks| {
            let line = blocks[0].lines.first().map_or("", String::as_str);
            line.parse().map_err(|_| format!("not a pid: {line:?}"))
        },
    )
}

/// The server's process id and version, in one round trip (on connecting to a host).
pub fn server_pid_and_version() -> Request<(u32, String)> {
    Request::new(
        vec![Cmd::new("display-message").args(["-p", "#{pid} #{version}"])],
        |blocks| {
            let line = blocks[0].lines.first().map_or("", String::as_str);
            let (pid, version) = line.split_once(' ').unwrap_or((line, ""));
            let pid = pid.parse().map_err(|_| format!("not a pid: {line:?}"))?;
            Ok((pid, version.to_owned()))
        },
    )
}

/// Indexes of the windows of a session.
pub fn window_indexes(session: &str) -> Request<Vec<u32>> {
    Request::new(
        vec![Cmd::new("list-windows")
            .arg("-t")
            .arg(session_target(session))
            .args(["-F", "#{window_index}"])],
        |blocks| {
            blocks[0]
                .lines
                .iter()
                .map(|l| l.parse().map_err(|_| format!("not a window index: {l:?}")))
                .collect()
        },
    )
}

/// Everything needed to open a window for one program.
#[derive(Debug, Clone)]
pub struct NewWindow<'a> {
    /// The workspace session.
    pub session: &'a str,
    /// The free window index to use: known in advance so that the options below can name the
    /// window in the same line, before the program has any chance to exit.
    pub index: u32,
    /// The window name (shown to people; `#` is escaped).
    pub name: &'a str,
    /// The working directory.
    pub cwd: &'a str,
    /// Extra environment, `NAME=value`.
    pub env: &'a [(String, String)],
    /// The program and its arguments.
    pub argv: &'a [String],
    /// Initial width in cells.
    pub cols: u16,
    /// Initial height in cells.
    pub rows: u16,
    /// Lines of history tmux keeps for the pane.
    pub history: usize,
    /// The orch terminal id, stored in the window for later adoption.
    pub terminal_id: &'a str,
}

/// What tmux made for a [`NewWindow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPane {
    /// The pane id (`%N`).
    pub pane_id: String,
    /// Process id of the program.
    pub pid: Option<u32>,
    /// The window id (`@N`).
    pub window_id: String,
}

/// Index of the `new-window` block in the reply to [`new_window`].
pub const NEW_WINDOW_BLOCK: usize = 1;

/// Open a window running `w.argv`, with `remain-on-exit` (so the exit status can be read), a fixed
/// size and the terminal id, all in one line: tmux runs a line's commands back to back, so the
/// options are in place before the program can exit.
pub fn new_window(w: &NewWindow<'_>) -> Request<NewPane> {
    let target = format!("{}:{}", session_target(w.session), w.index);
    let mut new = Cmd::new("new-window")
        .args(["-d", "-P", "-F", NEW_PANE_FORMAT, "-t"])
        .arg(&target)
        .arg("-n")
        .arg(escape_format(w.name));
    if !w.cwd.starts_with('~') {
        // `~` (a host's home) is the start script's to resolve: tmux does not expand it.
        new = new.arg("-c").arg(escape_format(w.cwd));
    }
    for (key, value) in w.env {
        new = new.arg("-e").arg(format!("{key}={value}"));
    }
    let new = new
        .args(["--", "/bin/sh", "-c", START_SCRIPT, "orch"])
        .arg(w.terminal_id)
        .arg(w.cwd)
        .args(w.argv.iter().cloned());
    let set = |name: &str, value: &str| {
        Cmd::new("set-option")
            .args(["-w", "-t"])
            .arg(&target)
            .arg(name)
            .arg(value)
    };
    Request::new(
        vec![
            // history-limit applies to panes made after it is set, so it goes first.
            // set-option reads `=ws` as a window; `=ws:` names the session.
            Cmd::new("set-option")
                .arg("-t")
                .arg(format!("{}:", session_target(w.session)))
                .arg("history-limit")
                .arg(w.history.min(i32::MAX as usize).to_string()),
            new,
            set("remain-on-exit", "on"),
            set(TERMINAL_ID_OPTION, w.terminal_id),
            set("window-size", "manual"),
            resize_cmd(&target, w.cols, w.rows),
        ],
        |blocks| parse_new_pane(&blocks[NEW_WINDOW_BLOCK]),
    )
}

/// Read the `new-window -P` block.
pub fn parse_new_pane(block: &Block) -> Result<NewPane, String> {
    let line = block.lines.first().map_or("", String::as_str);
    let f: Vec<&str> = line.split('\t').collect();
    match f.as_slice() {
        [pane, pid, window] if pane.starts_with('%') && window.starts_with('@') => Ok(NewPane {
            pane_id: pane.to_string(),
            pid: pid.parse().ok(),
            window_id: window.to_string(),
        }),
        _ => Err(format!("not a new pane: {line:?}")),
    }
}

/// Make sure an adopted window keeps its pane after the program exits.
pub fn keep_on_exit(window: &str) -> Request<()> {
    Request::new(
        vec![Cmd::new("set-option").args(["-w", "-t", window, "remain-on-exit", "on"])],
        |_| Ok(()),
    )
}

fn resize_cmd(window: &str, cols: u16, rows: u16) -> Cmd {
    Cmd::new("resize-window")
        .args(["-t", window, "-x"])
        .arg(cols.to_string())
        .arg("-y")
        .arg(rows.to_string())
}

/// Resize a window (its only pane follows).
pub fn resize_window(window: &str, cols: u16, rows: u16) -> Request<()> {
    Request::new(vec![resize_cmd(window, cols, rows)], |_| Ok(()))
}

/// Close a window, ending its program (tmux sends it SIGHUP).
pub fn kill_window(window: &str) -> Request<()> {
    Request::new(vec![Cmd::new("kill-window").args(["-t", window])], |_| {
        Ok(())
    })
}

/// Input bytes as `send-keys -H` commands, one line each: hex digits reach the program as exactly
/// these bytes and can never be read as tmux syntax.
pub fn send_bytes(pane: &str, data: &[u8]) -> Vec<Request<()>> {
    data.chunks(SEND_CHUNK)
        .map(|chunk| {
            let hex = chunk.iter().map(|b| format!("{b:02x}"));
            Request::new(
                vec![Cmd::new("send-keys").args(["-H", "-t", pane]).args(hex)],
                |_| Ok(()),
            )
        })
        .collect()
}

/// A paste as commands: the text goes into a named buffer (quoted, in chunks), then
/// `paste-buffer -p` adds bracketed-paste markers only if the program asked for them, `-r` keeps
/// newlines as they are, and `-d` deletes the buffer.
pub fn paste(pane: &str, buffer: &str, text: &str) -> Vec<Request<()>> {
    let mut sets = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(PASTE_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        let mut cmd = Cmd::new("set-buffer");
        if !sets.is_empty() {
            cmd = cmd.arg("-a");
        }
        sets.push(cmd.args(["-b", buffer]).arg("--").arg(chunk));
        rest = tail;
    }
    let Some(last) = sets.pop() else {
        return Vec::new();
    };
    let paste = Cmd::new("paste-buffer").args(["-p", "-r", "-d", "-b", buffer, "-t", pane]);
    let mut out: Vec<Request<()>> = sets
        .into_iter()
        .map(|cmd| Request::new(vec![cmd], |_| Ok(())))
        .collect();
    // The last chunk and the paste share a line: tmux runs them back to back and answers both
    // in one write, one round trip for a short text (which matters most over SSH).
    out.push(Request::new(vec![last, paste], |_| Ok(())));
    out
}

/// Delete a paste buffer left behind by a paste that failed half way.
pub fn delete_buffer(buffer: &str) -> Request<()> {
    Request::new(vec![Cmd::new("delete-buffer").args(["-b", buffer])], |_| {
        Ok(())
    })
}

/// A pane's screen as tmux renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Lines with colour and attribute escapes (wrapped lines joined).
    pub styled: Vec<String>,
    /// The same lines as plain text.
    pub plain: Vec<String>,
    /// Cursor column.
    pub cursor_x: u16,
    /// Cursor row within the visible screen.
    pub cursor_y: u16,
    /// Width in cells.
    pub width: u16,
    /// Height in cells.
    pub height: u16,
    /// The pane title, unless it is tmux's default (the host name) or the exit marker.
    pub title: Option<String>,
}

/// Capture a pane with `scrollback` lines of history, styled and plain, plus its cursor, in one
/// line so that all three describe the same moment.
pub fn capture(pane: &str, scrollback: usize) -> Request<Capture> {
    let start = if scrollback == 0 {
        "0".to_owned()
    } else {
        format!("-{scrollback}")
    };
    let cap = |styled: bool| {
        let cmd = Cmd::new("capture-pane")
            .args(["-p", "-J", "-t", pane, "-S"])
            .arg(&start);
        if styled {
            cmd.arg("-e")
        } else {
            cmd
        }
    };
    Request::new(
        vec![
            cap(true),
            cap(false),
            Cmd::new("display-message")
                .args(["-p", "-t", pane])
                .arg(CURSOR_FORMAT),
        ],
        |blocks| {
            let line = blocks[2].lines.first().map_or("", String::as_str);
            let f: Vec<&str> = line.splitn(6, '\t').collect();
            if f.len() != 6 {
                return Err(format!("not a cursor line: {line:?}"));
            }
            let num = |s: &str| s.parse::<u16>().map_err(|_| format!("not a number: {s:?}"));
            Ok(Capture {
                styled: blocks[0].lines.clone(),
                plain: blocks[1].lines.clone(),
                cursor_x: num(f[0])?,
                cursor_y: num(f[1])?,
                width: num(f[2])?,
                height: num(f[3])?,
                // tmux's default title is the host name, and the exit marker is ours.
                title: (!f[5].is_empty() && f[5] != f[4] && !f[5].starts_with(EXIT_MARKER))
                    .then(|| f[5].to_owned()),
            })
        },
    )
}

/// Signal a process group from the tmux server's host (for a remote tmux, where the daemon cannot
/// signal the process itself). The pid is a number, so the shell sees no text of ours.
pub fn signal_group(pid: u32, force: bool) -> Request<()> {
    let sig = if force { "KILL" } else { "TERM" };
    Request::new(
        vec![Cmd::new("run-shell").arg(format!("kill -s {sig} -- -{pid} 2>/dev/null || true"))],
        |_| Ok(()),
    )
}

/// Make the tmux server reap its children: the job's exit raises SIGCHLD, on which tmux collects
/// every exited child, including panes whose own SIGCHLD it missed.
pub fn reap_children() -> Request<()> {
    Request::new(vec![Cmd::new("run-shell").arg("true")], |_| Ok(()))
}

/// Read `tmux -V` output: the version words and whether this tmux is new enough (3.0 or later:
/// `new-window -e` and `send-keys -H`). Unparseable versions (`tmux master`) are trusted.
pub fn check_version(stdout: &str) -> Result<String, String> {
    let version = stdout.trim();
    let number = version.strip_prefix("tmux ").unwrap_or(version);
    let number = number.strip_prefix("next-").unwrap_or(number);
    let major: Option<u32> = number.split('.').next().and_then(|m| m.parse().ok());
    match major {
        Some(m) if m < 3 => Err(format!("{version} is too old (3.0 or newer is needed)")),
        _ => Ok(version.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check_quote(word: &str, expect: Expect) {
        expect.assert_eq(&quote(word));
    }

    #[test]
    fn quoting() {
        check_quote("new-window", expect![["new-window"]]);
        check_quote("%12", expect![["%12"]]);
        check_quote("=ws:3", expect![["=ws:3"]]);
        check_quote("", expect![[r#""""#]]);
        check_quote(
            "hello' ; new-window -d -n INJECTED 'sleep 99",
            expect![[r#""hello' ; new-window -d -n INJECTED 'sleep 99""#]],
        );
        check_quote(
            r#"say "hi" \ $HOME ~ #{session_name} #(id) {;}"#,
            expect![[r#""say \"hi\" \\ \$HOME \~ #{session_name} #(id) {;}""#]],
        );
        check_quote(
            "two\nlines\r\ttab\x1b[0m\x7f",
            expect![[r#""two\nlines\015\011tab\033[0m\177""#]],
        );
        check_quote("é ✓ 🦀", expect![[r#""é ✓ 🦀""#]]);
        check_quote("-", expect![["-"]]);
        check_quote("%", expect![[r##""%""##]]);
        check_quote("=", expect![[r##""=""##]]);
        check_quote("~root", expect![[r#""\~root""#]]);
    }

    #[test]
    fn request_lines() {
        let w = NewWindow {
            session: "ws",
            index: 4,
            name: "agent #{host}",
            cwd: "/tmp/a b",
            env: &[("K".into(), "v; $x".into())],
            argv: &["printf".into(), "%s\n".into(), "a'b".into()],
            cols: 80,
            rows: 24,
            history: 5000,
            terminal_id: "t-1",
        };
        expect![[r##"set-option -t =ws: history-limit 5000 ; new-window -d -P -F "#{pane_id}\011#{pane_pid}\011#{window_id}" -t =ws:4 -n "agent ##{host}" -c "/tmp/a b" -e "K=v; \$x" -- /bin/sh -c "id=\$1\ncase \$2 in \"\~\") d=\$HOME ;; \"\~/\"*) d=\$HOME/\${2#\"\~/\"} ;; *) d=\$2 ;; esac\nif cd -- \"\$d\"; then\nshift 2\ntrap : INT QUIT TERM\n\"\$@\"\ns=\$?\ntrap - INT QUIT TERM\nelse s=126; fi\nprintf '\\033]2;orch-exited:%s:%s\\033\\\\' \"\$id\" \"\$s\"\nsleep 2\nexit \"\$s\"" orch t-1 "/tmp/a b" printf "%s\n" "a'b" ; set-option -w -t =ws:4 remain-on-exit on ; set-option -w -t =ws:4 @orch_id t-1 ; set-option -w -t =ws:4 window-size manual ; resize-window -t =ws:4 -x 80 -y 24"##]]
            .assert_eq(&new_window(&w).line().unwrap());
        let sends = send_bytes("%3", b"a;\n");
        expect![["send-keys -H -t %3 61 3b 0a"]].assert_eq(&sends[0].line().unwrap());
        assert_eq!(send_bytes("%3", &[0u8; SEND_CHUNK + 1]).len(), 2);
        let pastes = paste("%3", "orch-1", "x\ny");
        let lines: Vec<String> = pastes.iter().map(|r| r.line().unwrap()).collect();
        expect![[r#"
            [
                "set-buffer -b orch-1 -- \"x\\ny\" ; paste-buffer -p -r -d -b orch-1 -t %3",
            ]
        "#]]
        .assert_debug_eq(&lines);
        expect![[r##"capture-pane -p -J -t %3 -S -100 -e ; capture-pane -p -J -t %3 -S -100 ; display-message -p -t %3 "#{cursor_x}\011#{cursor_y}\011#{pane_width}\011#{pane_height}\011#{host}\011#{pane_title}""##]]
            .assert_eq(&capture("%3", 100).line().unwrap());
    }

    #[test]
    fn nul_is_refused() {
        let err = send_bytes("%1", b"x").pop().unwrap();
        assert!(err.line().is_ok());
        let req = paste("%1", "b", "a\0b");
        assert_eq!(
            req[0].line().unwrap_err().to_string(),
            "cannot pass an argument of set-buffer to tmux: it contains a NUL byte"
        );
    }

    fn block(lines: &[&str], error: bool) -> Block {
        Block {
            lines: lines.iter().map(|s| s.to_string()).collect(),
            error,
        }
    }

    #[test]
    fn replies_are_parsed() {
        let panes = list_panes(None)
            .finish(&[block(
                &[
                    "%0\t100\t0\t\t\t@0\tws\t\torch\thost",
                    "%3\t200\t1\t3\t\t@2\tws\tt-7\tname\ttitle\twith tab",
                    "%4\t300\t1\t\t15\t@3\tws\tt-8\tkilled\t",
                    "%5\t400\t0\t\t\t@4\tws\tt-9\tlinger\torch-exited:t-9:3",
                ],
                false,
            )])
            .unwrap();
        expect![[r#"
            [
                PaneInfo {
                    pane_id: "%0",
                    pid: Some(
                        100,
                    ),
                    dead: false,
                    exit_status: None,
                    exit_signal: None,
                    window_id: "@0",
                    session: "ws",
                    terminal_id: None,
                    window_name: "orch",
                    title: "host",
                },
                PaneInfo {
                    pane_id: "%3",
                    pid: Some(
                        200,
                    ),
                    dead: true,
                    exit_status: Some(
                        3,
                    ),
                    exit_signal: None,
                    window_id: "@2",
                    session: "ws",
                    terminal_id: Some(
                        "t-7",
                    ),
                    window_name: "name",
                    title: "title\twith tab",
                },
                PaneInfo {
                    pane_id: "%4",
                    pid: Some(
                        300,
                    ),
                    dead: true,
                    exit_status: None,
                    exit_signal: Some(
                        15,
                    ),
                    window_id: "@3",
                    session: "ws",
                    terminal_id: Some(
                        "t-8",
                    ),
                    window_name: "killed",
                    title: "",
                },
                PaneInfo {
                    pane_id: "%5",
                    pid: Some(
                        400,
                    ),
                    dead: false,
                    exit_status: None,
                    exit_signal: None,
                    window_id: "@4",
                    session: "ws",
                    terminal_id: Some(
                        "t-9",
                    ),
                    window_name: "linger",
                    title: "orch-exited:t-9:3",
                },
            ]
        "#]]
        .assert_debug_eq(&panes);

        let err = pane_info("%9")
            .finish(&[block(&["can't find pane: %9"], true)])
            .unwrap_err();
        assert!(err.is_missing_target());
        assert_eq!(
            err.to_string(),
            "tmux list-panes failed: can't find pane: %9"
        );

        // A line stops at its first failing command: one error block for six commands.
        let w = NewWindow {
            session: "ws",
            index: 1,
            name: "n",
            cwd: "/",
            env: &[],
            argv: &["true".into()],
            cols: 1,
            rows: 1,
            history: 0,
            terminal_id: "t",
        };
        let req = new_window(&w);
        let err = req
            .finish(&[block(&[], false), block(&["index in use: 1"], true)])
            .unwrap_err();
        assert_eq!(err.to_string(), "tmux new-window failed: index in use: 1");
        let err = req.finish(&[block(&[], false)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected reply to tmux set-option + new-window + set-option + set-option + \
             set-option + resize-window: 1 reply blocks for 6 commands"
        );

        let cap = capture("%1", 0)
            .finish(&[
                block(&["\u{1b}[1mA\u{1b}[0m", ""], false),
                block(&["A", ""], false),
                block(&["1\t0\t80\t24\thost\thost"], false),
            ])
            .unwrap();
        assert_eq!(
            (cap.cursor_x, cap.cursor_y, cap.width, cap.height),
            (1, 0, 80, 24)
        );
        assert_eq!(cap.title, None);
    }

    #[test]
    fn endings() {
        let pane = |dead: bool, status: Option<i32>, signal: Option<i32>, title: &str| PaneInfo {
            pane_id: "%1".into(),
            pid: Some(1),
            dead,
            exit_status: status,
            exit_signal: signal,
            window_id: "@1".into(),
            session: "ws".into(),
            terminal_id: Some("t-1".into()),
            window_name: "n".into(),
            title: title.into(),
        };
        assert_eq!(
            pane(false, None, None, "vim").ending("t-1"),
            Ending::Running
        );
        assert_eq!(
            pane(false, None, None, "orch-exited:t-1:3").ending("t-1"),
            Ending::Ended(Some(3))
        );
        assert_eq!(
            pane(true, None, None, "orch-exited:t-1:143").ending("t-1"),
            Ending::Ended(None)
        );
        // Another terminal's marker (or a program imitating one) is not ours.
        assert_eq!(
            pane(false, None, None, "orch-exited:t-2:3").ending("t-1"),
            Ending::Running
        );
        assert_eq!(
            pane(true, Some(4), None, "x").ending("t-1"),
            Ending::Ended(Some(4))
        );
        assert_eq!(
            pane(true, None, Some(9), "x").ending("t-1"),
            Ending::Ended(None)
        );
        assert_eq!(pane(true, None, None, "x").ending("t-1"), Ending::Unsettled);
        assert_eq!(exit_code(128), Some(128));
        assert_eq!(exit_code(130), None);
        assert_eq!(exit_code(193), Some(193));
    }

    #[test]
    fn versions() {
        assert_eq!(check_version("tmux 3.3a\n"), Ok("tmux 3.3a".into()));
        assert_eq!(check_version("tmux next-3.5"), Ok("tmux next-3.5".into()));
        assert_eq!(check_version("tmux master"), Ok("tmux master".into()));
        assert_eq!(
            check_version("tmux 2.9a"),
            Err("tmux 2.9a is too old (3.0 or newer is needed)".into())
        );
    }

    #[test]
    fn names() {
        assert_eq!(sanitize_name("my.project:1"), "my_project_1");
        assert_eq!(sanitize_name("été-2_x"), "été-2_x");
        assert_eq!(sanitize_name(""), "orch");
    }
}
