//! `orch.toml`: the workspace configuration, its defaults, and validation whose errors name the
//! file, the line and the key.
//!
//! Every key is optional. Built-in agent kinds (`shell`, `claude`, `codex`, `gemini`, `aider`)
//! are merged under the user's `[agents.*]` tables, so a user overrides a kind key by key.
//! Knows nothing of the runtime: it parses and validates, nothing more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::core::agent::{AgentProtocol, HookDialect, RestartPolicy, Watch};

/// The file name looked up at the workspace root.
pub const FILE_NAME: &str = "orch.toml";

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// The dotted key (`agents.shell.restart`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Config {
    /// Where it was read from (`None`: defaults only).
    pub path: Option<PathBuf>,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[tmux]`.
    pub tmux: TmuxConfig,
    /// `[hosts.<name>]`: other machines whose tmux runs agents, reached over SSH.
    pub hosts: BTreeMap<String, HostConfig>,
    /// `[agents.<kind>]`, built-ins merged in.
    pub agents: BTreeMap<String, AgentKind>,
    /// `[gates.<name>]`.
    pub gates: BTreeMap<String, GateConfig>,
    /// `[tasks]`.
    pub tasks: TasksConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[worktrees]`.
    pub worktrees: WorktreesConfig,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Default backend for new terminals: `pty` or `tmux`.
    pub backend: String,
    /// A snapshot of the state every this many events.
    pub snapshot_every: u64,
    /// Grace period between SIGTERM and SIGKILL on stop.
    pub stop_grace_ms: u64,
    /// Default terminal size.
    pub cols: u16,
    /// Default terminal size.
    pub rows: u16,
    /// Lines of scrollback kept per terminal.
    pub scrollback: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            backend: "pty".into(),
            snapshot_every: 1000,
            stop_grace_ms: 3000,
            cols: 120,
            rows: 40,
            scrollback: 10_000,
        }
    }
}

/// `[tmux]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TmuxConfig {
    /// The tmux command prefix (a remote host: `["ssh", "host", "tmux"]`).
    pub command: Vec<String>,
    /// `tmux -L` socket name; empty means `orch-<uid>`.
    pub socket_name: String,
}

impl Default for TmuxConfig {
    fn default() -> Self {
        Self {
            command: vec!["tmux".into()],
            socket_name: String::new(),
        }
    }
}

/// `[hosts.<name>]`: a machine whose tmux runs agents, reached over SSH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The argv that reaches the host (`["ssh", "-p", "2222", "me@buildhost"]`); orch appends its
    /// tmux command line and nothing else, so SSH's own configuration (keys, known_hosts,
    /// ProxyJump, keep-alives) applies as is.
    pub ssh: Vec<String>,
    /// The remote workspace: agents' default working directory there (else the remote home);
    /// a relative `cwd` at spawn is taken under it.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment for every agent on the host (the spawn's and kind's variables win).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The tmux program on the host.
    #[serde(default = "default_remote_tmux")]
    pub tmux: String,
    /// The host's tmux socket name (`tmux -L`); empty means `orch-<local uid>`.
    #[serde(default)]
    pub socket_name: String,
}

fn default_remote_tmux() -> String {
    "tmux".into()
}

impl HostConfig {
    /// The local argv that runs shell line `line` on the host: the `ssh` argv, then the line
    /// as one argument (SSH hands it to the remote user's shell).
    pub fn run_line(&self, line: String) -> Vec<String> {
        let mut argv = self.ssh.clone();
        argv.push(line);
        argv
    }

    /// The host's tmux socket name: the configured one, else `orch-<local uid>`.
    pub fn socket(&self) -> String {
        if self.socket_name.is_empty() {
            // SAFETY: getuid has no preconditions and cannot fail.
            format!("orch-{}", unsafe { libc::getuid() })
        } else {
            self.socket_name.clone()
        }
    }
}

/// `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,%@+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `argv` as one shell line that runs exactly it.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A shell command that enters directory `dir` on a host: `~` and `~/...` are the remote home.
pub fn shell_cd(dir: &str) -> String {
    match dir {
        "" | "~" => "cd".into(),
        d if d.starts_with("~/") => format!("cd ~/{}", shell_quote(&d[2..])),
        d => format!("cd -- {}", shell_quote(d)),
    }
}

/// Whether `name` may name a host: 1-64 letters, digits, `-`, `_` or `.`.
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `[agents.<kind>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentKind {
    /// The argv.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the workspace root.
    pub cwd: Option<String>,
    /// Quiet this long means idle.
    pub idle_after_ms: u64,
    /// Screen regexes meaning the agent asks the human something.
    pub waiting_patterns: Vec<String>,
    /// Decision options when waiting, in order, with the keys each types (`"\r"` is Enter):
    /// `[["Yes", "y\r"], ["No", "n\r"]]` (a table works too, in alphabetical order). Empty: the
    /// choices of the numbered menu on the screen, in the agent's words, else approve/deny.
    #[serde(deserialize_with = "options_from_toml")]
    pub waiting_options: Vec<(String, String)>,
    /// Screen regexes meaning the agent takes input (its prompt is drawn): until one shows, the
    /// agent is not idle and nothing is typed into it.
    pub ready_patterns: Vec<String>,
    /// Screen regexes meaning the agent works: when set, output alone (spinners, redraws) does
    /// not make it busy.
    pub busy_patterns: Vec<String>,
    /// Lines above the cursor that the patterns look at (a TUI's dialog is taller than a line).
    pub look_back: usize,
    /// The agent's own hooks report its state: `"claude"` (settings passed with `--settings`) or
    /// `"codex"`.
    pub hooks: Option<HookDialect>,
    /// Keys that interrupt the agent's current turn.
    pub interrupt_keys: String,
    /// A menu choice picked by its number needs Enter to take effect (the choice's key is the
    /// number, then Enter; a key hint such as `(y)` still acts alone).
    pub menu_enter: bool,
    /// `never | on-failure | always`.
    pub restart: RestartPolicy,
    /// Restarts before giving up.
    pub max_restarts: u32,
    /// Backend override for this kind.
    pub backend: Option<String>,
    /// Run agents of this kind on a configured host (`[hosts.<name>]`), in its tmux.
    pub host: Option<String>,
    /// `"pty"` (a program in a terminal, the default) or `"acp"` (the Agent Client Protocol
    /// on its stdio).
    pub protocol: AgentProtocol,
    /// ACP: the session mode to switch to (`default`, `plan`, ... as the agent names them).
    pub acp_mode: Option<String>,
    /// ACP: the `authenticate` method to use before creating a session (else one that needs
    /// no person, when the agent asks for authentication).
    pub acp_auth_method: Option<String>,
    /// Every agent of this kind gets its own git worktree (as `orch/agent/spawn {worktree:
    /// true}`).
    pub worktree: bool,
}

impl Default for AgentKind {
    fn default() -> Self {
        let watch = Watch::default();
        Self {
            command: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            idle_after_ms: watch.idle_after_ms,
            waiting_patterns: Vec::new(),
            waiting_options: Vec::new(),
            ready_patterns: Vec::new(),
            busy_patterns: Vec::new(),
            look_back: watch.look_back,
            hooks: None,
            interrupt_keys: watch.interrupt_keys,
            menu_enter: false,
            restart: RestartPolicy::Never,
            max_restarts: watch.max_restarts,
            backend: None,
            host: None,
            protocol: AgentProtocol::Pty,
            acp_mode: None,
            acp_auth_method: None,
            worktree: false,
        }
    }
}

impl AgentKind {
    /// How an agent of this kind is watched.
    pub fn watch(&self) -> Watch {
        Watch {
            idle_after_ms: self.idle_after_ms,
            waiting_patterns: self.waiting_patterns.clone(),
            waiting_options: self.waiting_options.clone(),
            restart: self.restart,
            max_restarts: self.max_restarts,
            ready_patterns: self.ready_patterns.clone(),
            busy_patterns: self.busy_patterns.clone(),
            hooks: self.hooks,
            interrupt_keys: self.interrupt_keys.clone(),
            look_back: self.look_back,
            menu_enter: self.menu_enter,
            protocol: self.protocol,
            acp_mode: self.acp_mode.clone(),
            acp_auth_method: self.acp_auth_method.clone(),
        }
    }
}

/// `waiting_options` as written: an array of `[label, keys]` pairs (in order) or a table.
fn options_from_toml<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Options {
        Pairs(Vec<(String, String)>),
        Table(BTreeMap<String, String>),
    }
    Ok(match Options::deserialize(d)? {
        Options::Pairs(p) => p,
        Options::Table(t) => t.into_iter().collect(),
    })
}

/// `[gates.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// The argv.
    pub command: Vec<String>,
    /// Killed after this long.
    #[serde(default = "default_gate_timeout")]
    pub timeout_s: u64,
}

fn default_gate_timeout() -> u64 {
    900
}

/// `[tasks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// Attempts before escalation.
    pub max_attempts: u32,
    /// Gates every task runs unless it names its own.
    pub default_gates: Vec<String>,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            default_gates: Vec::new(),
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events kept in the log (older ones are dropped once a snapshot covers them).
    pub events: u64,
    /// Bytes of output log kept per terminal (current file plus one rotated).
    pub output_log_bytes: u64,
    /// Output logs of closed terminals older than this are deleted.
    pub output_log_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: 100_000,
            output_log_bytes: 8 << 20,
            output_log_days: 14,
        }
    }
}

/// `[worktrees]`: agents' own git worktrees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorktreesConfig {
    /// Where worktrees are checked out, one directory per agent; default `worktrees` in the
    /// state directory. Relative paths are taken from the workspace root; it must be outside
    /// the repository.
    pub dir: Option<PathBuf>,
    /// Untracked files copied from the workspace into every new worktree (`.env`).
    pub copy: Vec<PathBuf>,
    /// Commands (argv) run once in a new worktree before its agent starts.
    pub setup: Vec<Vec<String>>,
    /// How long each setup command may run.
    pub setup_timeout_s: u64,
    /// Commit what an agent left uncommitted before its branch is merged (or paused).
    pub commit_on_done: bool,
}

impl Default for WorktreesConfig {
    fn default() -> Self {
        Self {
            dir: None,
            copy: Vec::new(),
            setup: Vec::new(),
            setup_timeout_s: 600,
            commit_on_done: true,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    daemon: DaemonConfig,
    #[serde(default)]
    tmux: TmuxConfig,
    #[serde(default)]
    hosts: BTreeMap<String, HostConfig>,
    #[serde(default)]
    agents: BTreeMap<String, toml::Table>,
    #[serde(default)]
    gates: BTreeMap<String, GateConfig>,
    #[serde(default)]
    tasks: TasksConfig,
    #[serde(default)]
    retention: RetentionConfig,
    #[serde(default)]
    worktrees: WorktreesConfig,
}

/// The built-in kinds, before the user's overrides. The screens they recognise are those of the
/// pinned versions in `docs/agents.md`; `tests/fixtures/screens/` holds captures of them.
pub fn builtin_kinds() -> BTreeMap<String, AgentKind> {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let shell = AgentKind {
        command: strings(&["bash", "-i"]),
        ..AgentKind::default()
    };
    let claude = AgentKind {
        command: strings(&["claude"]),
        hooks: Some(HookDialect::Claude),
        ready_patterns: strings(&[r"\? for shortcuts", r"(?m)^❯ "]),
        busy_patterns: strings(&[r"esc to interrupt"]),
        waiting_patterns: strings(&[
            r"Do you want to (proceed|make this edit|create|overwrite|allow)",
            r"Enter to select",
            r"Is this a project you created or one you trust",
        ]),
        look_back: 14,
        ..AgentKind::default()
    };
    let codex = AgentKind {
        command: strings(&["codex", "--no-daemon"]),
        ready_patterns: strings(&[r"(?m)^› "]),
        busy_patterns: strings(&[r"esc to interrupt"]),
        waiting_patterns: strings(&[
            r"Would you like to (run the following command|make the following edits)",
            r"Trust this folder\?",
            r"Hooks need review",
            r"Sign in with ChatGPT",
        ]),
        look_back: 14,
        // Its selection screens (folder trust, hooks to review) move on a digit and act on
        // Enter; its approval acts on the key in parentheses.
        menu_enter: true,
        ..AgentKind::default()
    };
    let gemini = AgentKind {
        command: strings(&["gemini"]),
        ready_patterns: strings(&[r"Type your message"]),
        busy_patterns: strings(&[r"esc to cancel"]),
        waiting_patterns: strings(&[
            r"Allow execution of",
            r"Apply this change\?",
            r"Do you trust (the files in )?this folder",
        ]),
        look_back: 14,
        ..AgentKind::default()
    };
    let aider = AgentKind {
        command: strings(&["aider"]),
        // A line-based program that is quiet while it waits: its output (a spinner while the model
        // thinks, the answer streaming) is its work, so no busy patterns.
        ready_patterns: strings(&[r"(?m)^\S*> ?$"]),
        waiting_patterns: strings(&[r"\(Y\)es/\(N\)o"]),
        interrupt_keys: "\x03".into(),
        // The question is the line the cursor waits on; once answered, it is history.
        look_back: 1,
        ..AgentKind::default()
    };
    // The same agents over the Agent Client Protocol: exact states and permission requests
    // with the agent's own options, no screen to read.
    let gemini_acp = AgentKind {
        command: strings(&["gemini", "--acp"]),
        protocol: AgentProtocol::Acp,
        ..AgentKind::default()
    };
    let claude_acp = AgentKind {
        command: strings(&["claude-agent-acp"]),
        protocol: AgentProtocol::Acp,
        // Its own default mode lets a classifier approve commands; "default" asks a person.
        acp_mode: Some("default".into()),
        ..AgentKind::default()
    };
    BTreeMap::from([
        ("shell".into(), shell),
        ("gemini-acp".into(), gemini_acp),
        ("claude-acp".into(), claude_acp),
        ("claude".into(), claude),
        ("codex".into(), codex),
        ("gemini".into(), gemini),
        ("aider".into(), aider),
    ])
}

impl Config {
    /// Defaults only.
    pub fn defaults() -> Self {
        Self {
            path: None,
            daemon: DaemonConfig::default(),
            tmux: TmuxConfig::default(),
            hosts: BTreeMap::new(),
            agents: builtin_kinds(),
            gates: BTreeMap::new(),
            tasks: TasksConfig::default(),
            retention: RetentionConfig::default(),
            worktrees: WorktreesConfig::default(),
        }
    }

    /// Read `orch.toml` from `root` (defaults when absent).
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let path = root.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::defaults()),
            Err(e) => Err(ConfigError {
                file: path.display().to_string(),
                line: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Parse and validate `text` read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, message: String| ConfigError {
            file: file.clone(),
            line: line_of_key(text, key),
            key: key.to_string(),
            message,
        };
        let parsed: FileConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            let message = e.message().to_string();
            ConfigError {
                file: file.clone(),
                line,
                key: key_at_line(text, line),
                message,
            }
        })?;
        let mut agents = builtin_kinds();
        for (name, table) in parsed.agents {
            // A user's table overrides a built-in key by key.
            let mut merged = match agents.get(&name) {
                Some(base) => toml::Table::try_from(base).expect("a kind serializes to a table"),
                None => toml::Table::new(),
            };
            for (k, v) in table {
                merged.insert(k, v);
            }
            let kind: AgentKind =
                toml::Value::Table(merged)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        err(&format!("agents.{name}"), e.message().to_string())
                    })?;
            agents.insert(name, kind);
        }
        let config = Self {
            path: Some(path.to_path_buf()),
            daemon: parsed.daemon,
            tmux: parsed.tmux,
            hosts: parsed.hosts,
            agents,
            gates: parsed.gates,
            tasks: parsed.tasks,
            retention: parsed.retention,
            worktrees: parsed.worktrees,
        };
        config
            .validate()
            .map_err(|(key, message)| err(&key, message))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if !matches!(self.daemon.backend.as_str(), "pty" | "tmux") {
            return Err((
                "daemon.backend".into(),
                format!("must be \"pty\" or \"tmux\", got {:?}", self.daemon.backend),
            ));
        }
        for (key, v) in [
            ("daemon.cols", self.daemon.cols),
            ("daemon.rows", self.daemon.rows),
        ] {
            if !(1..=1000).contains(&v) {
                return Err((key.into(), format!("{v} is out of range 1..=1000")));
            }
        }
        if self.daemon.snapshot_every == 0 {
            return Err(("daemon.snapshot_every".into(), "must be at least 1".into()));
        }
        if self.retention.events < self.daemon.snapshot_every {
            return Err((
                "retention.events".into(),
                format!("{} is below daemon.snapshot_every ({}): events must outlive the snapshot that covers them", self.retention.events, self.daemon.snapshot_every),
            ));
        }
        if self.tmux.command.is_empty() {
            return Err(("tmux.command".into(), "must not be empty".into()));
        }
        for (name, host) in &self.hosts {
            if !valid_host_name(name) {
                return Err((
                    format!("hosts.{name}"),
                    format!("{name:?}: a host name is 1-64 letters, digits, '-', '_' or '.'"),
                ));
            }
            if host.ssh.first().is_none_or(|p| p.is_empty()) {
                return Err((
                    format!("hosts.{name}.ssh"),
                    "must be a non-empty argv, such as [\"ssh\", \"me@buildhost\"]".into(),
                ));
            }
            if let Some(bad) = host.ssh.iter().find(|a| a.contains('\0')) {
                return Err((
                    format!("hosts.{name}.ssh"),
                    format!("{bad:?} holds a NUL byte"),
                ));
            }
            if let Some(cwd) = &host.cwd {
                if !(cwd.starts_with('/') || cwd == "~" || cwd.starts_with("~/"))
                    || cwd.contains(['\0', '\n'])
                {
                    return Err((
                        format!("hosts.{name}.cwd"),
                        format!("{cwd:?} must be an absolute path on the host (or ~/...)"),
                    ));
                }
            }
            if host.tmux.is_empty() || host.tmux.contains(['\0', '\n']) {
                return Err((
                    format!("hosts.{name}.tmux"),
                    format!("{:?} is not a program", host.tmux),
                ));
            }
            for (key, value) in &host.env {
                let shell_name = key
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !shell_name {
                    return Err((
                        format!("hosts.{name}.env"),
                        format!("{key:?} is not a variable name (letters, digits and _, not first a digit)"),
                    ));
                }
                if value.contains(['\0', '\n']) {
                    return Err((
                        format!("hosts.{name}.env"),
                        format!("the value of {key} holds a NUL or a newline"),
                    ));
                }
            }
        }
        for (name, kind) in &self.agents {
            if let Some(h) = &kind.host {
                if !self.hosts.contains_key(h) {
                    return Err((
                        format!("agents.{name}.host"),
                        format!("names host {h:?}, which has no [hosts.{h}] table"),
                    ));
                }
                if kind.protocol == AgentProtocol::Acp {
                    return Err((
                        format!("agents.{name}.host"),
                        "ACP agents run on this machine; remote hosts run agents in tmux".into(),
                    ));
                }
            }
            if kind.command.is_empty() {
                return Err((format!("agents.{name}.command"), "must not be empty".into()));
            }
            for (key, patterns) in [
                ("waiting_patterns", &kind.waiting_patterns),
                ("ready_patterns", &kind.ready_patterns),
                ("busy_patterns", &kind.busy_patterns),
            ] {
                for (i, p) in patterns.iter().enumerate() {
                    if let Err(e) = Regex::new(p) {
                        return Err((
                            format!("agents.{name}.{key}"),
                            format!("pattern {i} {p:?} is not a valid regex: {e}"),
                        ));
                    }
                }
            }
            if kind.look_back > 200 {
                return Err((
                    format!("agents.{name}.look_back"),
                    format!("{} is out of range 0..=200", kind.look_back),
                ));
            }
            let mut labels = std::collections::HashSet::new();
            for (label, _) in &kind.waiting_options {
                if label.is_empty() || !labels.insert(label) {
                    return Err((
                        format!("agents.{name}.waiting_options"),
                        format!("option {label:?} is empty or given twice"),
                    ));
                }
            }
            if kind.protocol == AgentProtocol::Acp {
                let terminal_only = [
                    ("backend", kind.backend.is_some()),
                    ("hooks", kind.hooks.is_some()),
                    ("waiting_patterns", !kind.waiting_patterns.is_empty()),
                    ("ready_patterns", !kind.ready_patterns.is_empty()),
                    ("busy_patterns", !kind.busy_patterns.is_empty()),
                ];
                if let Some((key, _)) = terminal_only.iter().find(|(_, set)| *set) {
                    return Err((
                        format!("agents.{name}.{key}"),
                        "is for agents in a terminal; this kind speaks ACP (protocol = \"acp\")"
                            .into(),
                    ));
                }
            } else {
                for (key, set) in [
                    ("acp_mode", kind.acp_mode.is_some()),
                    ("acp_auth_method", kind.acp_auth_method.is_some()),
                ] {
                    if set {
                        return Err((
                            format!("agents.{name}.{key}"),
                            "is for ACP agents; set protocol = \"acp\" too".into(),
                        ));
                    }
                }
            }
            if let Some(b) = &kind.backend {
                if !matches!(b.as_str(), "pty" | "tmux") {
                    return Err((
                        format!("agents.{name}.backend"),
                        format!("must be \"pty\" or \"tmux\", got {b:?}"),
                    ));
                }
            }
        }
        for (name, gate) in &self.gates {
            if gate.command.is_empty() {
                return Err((format!("gates.{name}.command"), "must not be empty".into()));
            }
            if gate.timeout_s == 0 {
                return Err((
                    format!("gates.{name}.timeout_s"),
                    "must be at least 1".into(),
                ));
            }
        }
        for g in &self.tasks.default_gates {
            if !self.gates.contains_key(g) {
                return Err((
                    "tasks.default_gates".into(),
                    format!("names gate {g:?}, which has no [gates.{g}] table"),
                ));
            }
        }
        for (i, argv) in self.worktrees.setup.iter().enumerate() {
            if argv.is_empty() || argv[0].is_empty() {
                return Err((
                    "worktrees.setup".into(),
                    format!("command {i} must be a non-empty argv"),
                ));
            }
        }
        if self.worktrees.setup_timeout_s == 0 {
            return Err((
                "worktrees.setup_timeout_s".into(),
                "must be at least 1".into(),
            ));
        }
        if self.tasks.max_attempts == 0 {
            return Err(("tasks.max_attempts".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// As JSON, for `orch/config/get` (environment values are not shown, only their names).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Some(agents) = v.get_mut("agents").and_then(|a| a.as_object_mut()) {
            for kind in agents.values_mut() {
                if let Some(env) = kind.get_mut("env").and_then(|e| e.as_object_mut()) {
                    for value in env.values_mut() {
                        *value = serde_json::Value::String("<set>".into());
                    }
                }
            }
        }
        v
    }
}

/// The line where `key` (dotted) is set or its table starts, best effort.
fn line_of_key(text: &str, key: &str) -> usize {
    let parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.last().copied().unwrap_or_default();
    let table = parts[..parts.len().saturating_sub(1)].join(".");
    let mut in_table = table.is_empty();
    let mut table_line = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = name == table;
            if in_table {
                table_line = i + 1;
            }
            if name == key {
                return i + 1;
            }
            continue;
        }
        if in_table && t.split('=').next().map(str::trim) == Some(leaf) {
            return i + 1;
        }
    }
    table_line
}

/// The dotted key defined at `line`, best effort (for parse errors).
fn key_at_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line {
            if let Some((k, _)) = t.split_once('=') {
                let k = k.trim();
                return if table.is_empty() {
                    k.to_string()
                } else {
                    format!("{table}.{k}")
                };
            }
            return table;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn check(text: &str, want: expect_test::Expect) {
        let got = match Config::parse(text, Path::new("/w/orch.toml")) {
            Ok(c) => format!(
                "ok backend={} kinds={:?}",
                c.daemon.backend,
                c.agents.keys().collect::<Vec<_>>()
            ),
            Err(e) => e.to_string(),
        };
        want.assert_eq(&got);
    }

    #[test]
    fn hosts_are_checked() {
        check(
            "[hosts.lab]\nssh = [\"ssh\", \"me@lab\"]\ncwd = \"/srv/w\"\n[agents.far]\ncommand = [\"x\"]\nhost = \"lab\"\n",
            expect![[
                r#"ok backend=pty kinds=["aider", "claude", "claude-acp", "codex", "far", "gemini", "gemini-acp", "shell"]"#
            ]],
        );
        check(
            "[hosts.lab]\nssh = []\n",
            expect![[
                r#"/w/orch.toml:2: hosts.lab.ssh: must be a non-empty argv, such as ["ssh", "me@buildhost"]"#
            ]],
        );
        check(
            "[hosts.lab]\nssh = [\"ssh\", \"lab\"]\ncwd = \"rel/dir\"\n",
            expect![[
                r#"/w/orch.toml:3: hosts.lab.cwd: "rel/dir" must be an absolute path on the host (or ~/...)"#
            ]],
        );
        check(
            "[hosts.\"a b\"]\nssh = [\"ssh\", \"lab\"]\n",
            expect![[
                r#"/w/orch.toml:0: hosts.a b: "a b": a host name is 1-64 letters, digits, '-', '_' or '.'"#
            ]],
        );
        check(
            "[hosts.lab]\nssh = [\"ssh\", \"lab\"]\nenv = { K = \"a\\nb\" }\n",
            expect![[r#"/w/orch.toml:3: hosts.lab.env: the value of K holds a NUL or a newline"#]],
        );
        check(
            "[agents.far]\ncommand = [\"x\"]\nhost = \"nowhere\"\n",
            expect![[
                r#"/w/orch.toml:3: agents.far.host: names host "nowhere", which has no [hosts.nowhere] table"#
            ]],
        );
        check(
            "[hosts.lab]\nssh = [\"ssh\", \"lab\"]\nport = 22\n",
            expect![[
                r#"/w/orch.toml:3: hosts.lab.port: unknown field `port`, expected one of `ssh`, `cwd`, `env`, `tmux`, `socket_name`"#
            ]],
        );
    }

    #[test]
    fn shell_words_survive_a_remote_shell() {
        assert_eq!(shell_quote("plain-word_1.2/x=y"), "plain-word_1.2/x=y");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's $HOME ~"), "'it'\\''s $HOME ~'");
        assert_eq!(
            shell_line(&["printf".into(), "<%s>\n".into(), "~root".into()]),
            "printf '<%s>\n' '~root'"
        );
        assert_eq!(shell_cd("~"), "cd");
        assert_eq!(shell_cd("~/w s"), "cd ~/'w s'");
        assert_eq!(shell_cd("/srv/w"), "cd -- /srv/w");
        // What a real shell makes of a quoted line: the words as given.
        let words = ["a b", "it's", "$(touch /tmp/x)", "~", "`id`", "\\", "*"];
        let argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", shell_line(&argv)))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            words
        );
    }

    #[test]
    fn defaults_and_errors() {
        check(
            "",
            expect![[
                r#"ok backend=pty kinds=["aider", "claude", "claude-acp", "codex", "gemini", "gemini-acp", "shell"]"#
            ]],
        );
        check(
            "[daemon]\nbackend = \"tmux\"\n[agents.asker]\ncommand = [\"ask\"]\n",
            expect![[
                r#"ok backend=tmux kinds=["aider", "asker", "claude", "claude-acp", "codex", "gemini", "gemini-acp", "shell"]"#
            ]],
        );
        check(
            "[daemon]\nbackend = \"screen\"\n",
            expect![[r#"/w/orch.toml:2: daemon.backend: must be "pty" or "tmux", got "screen""#]],
        );
        check(
            "[daemon]\nbakend = 1\n",
            expect![[
                r#"/w/orch.toml:2: daemon.bakend: unknown field `bakend`, expected one of `backend`, `snapshot_every`, `stop_grace_ms`, `cols`, `rows`, `scrollback`"#
            ]],
        );
        check(
            "\n[agents.x]\ncommand = [\"a\"]\nwaiting_patterns = [\"(\"]\n",
            expect![[
                r#"/w/orch.toml:4: agents.x.waiting_patterns: pattern 0 "(" is not a valid regex: regex parse error:
    (
    ^
error: unclosed group"#
            ]],
        );
        check(
            "[agents.shell]\nrestart = \"sometimes\"\n",
            expect![[
                r#"/w/orch.toml:1: agents.shell: unknown variant `sometimes`, expected one of `never`, `on-failure`, `always`"#
            ]],
        );
        check(
            "[gates.test]\ncommand = []\n",
            expect![[r#"/w/orch.toml:2: gates.test.command: must not be empty"#]],
        );
        check(
            "[daemon\n",
            expect![[r#"/w/orch.toml:1: daemon: invalid table header
expected `.`, `]`"#]],
        );
    }

    #[test]
    fn user_overrides_builtin_key_by_key() {
        let c = Config::parse(
            "[agents.shell]\nidle_after_ms = 200\n",
            Path::new("orch.toml"),
        )
        .unwrap();
        let shell = &c.agents["shell"];
        assert_eq!(shell.idle_after_ms, 200);
        assert_eq!(shell.command, ["bash", "-i"]);
    }

    #[test]
    fn mutated_files_never_panic() {
        // The stable stand-in for `cargo fuzz run config` (fuzz/): parsing and validating
        // mutations of valid files gives a configuration or an error, nothing else.
        use crate::mutate::{mutate, Rng};
        let full = r#"
[daemon]
backend = "pty"
snapshot_every = 1000
stop_grace_ms = 3000
cols = 120
rows = 40
scrollback = 5000

[tmux]
command = ["tmux", "-f", "/dev/null"]
socket_name = "orch-x"

[agents.shell]
command = ["bash", "-i"]
env = { A = "b", "C D" = "e" }
cwd = "sub"
idle_after_ms = 1500
waiting_patterns = ["Proceed\\?", '(?m)^\s*\[y/N\]']
ready_patterns = ["\\$ $"]
restart = "on-failure"
max_restarts = 3
backend = "tmux"

[agents.claude]
hooks = "claude"

[gates.test]
command = ["cargo", "test"]
timeout_s = 900

[tasks]
max_attempts = 3
default_gates = ["test"]

[retention]
events = 100000
output_log_bytes = 1048576
output_log_days = 7
"#;
        let corpus: &[&[u8]] = &[
            full.as_bytes(),
            b"[daemon]\nbackend = \"tmux\"\n",
            b"[agents.x]\ncommand = [\"a\"]\nwaiting_patterns = [\"(\"]\n",
            b"",
            b"[gates.a]\ncommand = ['x']\n[tasks]\ndefault_gates = ['a', 'b']\n",
        ];
        let mut rng = Rng::new(0xc0_f1);
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..3_000 {
            let base = *rng.pick(corpus);
            let text = String::from_utf8_lossy(&mutate(&mut rng, base, corpus)).into_owned();
            match Config::parse(&text, Path::new("/w/orch.toml")) {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    assert!(e.to_string().starts_with("/w/orch.toml:"), "{e}");
                }
            }
        }
        assert!(ok > 100 && failed > 1_000, "{ok} parsed, {failed} refused");
    }
}
