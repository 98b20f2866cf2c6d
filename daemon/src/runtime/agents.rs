//! Agents on the runtime: spawning programs into terminals (with the environment of the terminal
//! they really run in, and the hooks their kind reports through), stopping and restarting them,
//! their exits, and reconciling after a daemon restart. How their state is read while they run is
//! `watching.rs`. Every transition is an `agent.state` event with its evidence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::watching::WatchState;
use super::{OpError, Runtime, Timer};
use crate::core::agent::{
    AgentProtocol, AgentRecord, AgentState, Evidence, HookDialect, TerminalRecord, WorktreeRecord,
};
use crate::core::event::EventBody;
use crate::core::ids;
use crate::core::rules;
use crate::core::task::DecisionSource;
use crate::ports::{BackendError, ConversationSpec, Terminal, TerminalBackend, TerminalSpec};

/// Most live terminals a daemon runs at once.
pub const MAX_LIVE_TERMINALS: usize = 256;
/// A run this long resets the automatic-restart count.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What `orch/agent/spawn` asks for, after wire decoding.
#[derive(Debug, Default, Clone)]
pub struct SpawnArgs {
    /// A configured kind.
    pub kind: Option<String>,
    /// An argv.
    pub command: Option<Vec<String>>,
    /// A name.
    pub name: Option<String>,
    /// A working directory.
    pub cwd: Option<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Backend name.
    pub backend: Option<String>,
    /// A configured remote host whose tmux runs it.
    pub host: Option<String>,
    /// How orch talks to it (else the kind's).
    pub protocol: Option<AgentProtocol>,
    /// A worktree of its own (`Some(None)`: none, whatever the kind says), else the kind's
    /// choice.
    pub worktree: Option<Option<WorktreeArgs>>,
    /// Session id or name.
    pub session: Option<String>,
    /// Size.
    pub cols: Option<u16>,
    /// Size.
    pub rows: Option<u16>,
}

/// A worktree asked for at spawn.
#[derive(Debug, Default, Clone)]
pub struct WorktreeArgs {
    /// Its branch; default `orch/<agent name>`.
    pub branch: Option<String>,
    /// What to start from; default the workspace's current branch.
    pub base: Option<String>,
}

/// A spawn's arguments, checked: the agent to start.
pub struct Prepared {
    /// Its unique name.
    pub name: String,
    kind_label: String,
    command: Vec<String>,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    session_id: String,
    backend_name: String,
    host: Option<String>,
    watch: crate::core::agent::Watch,
    cols: u16,
    rows: u16,
    /// The worktree it should get, if any.
    pub worktree: Option<WorktreeArgs>,
}

impl Runtime {
    /// A backend by name, or the error the client should see.
    pub fn backend(&self, name: &str, field: &str) -> Result<Arc<dyn TerminalBackend>, OpError> {
        let Some(b) = self.backends.get(name) else {
            if matches!(name, "pty" | "tmux") {
                return Err(OpError::BackendUnavailable {
                    backend: name.into(),
                    detail: "not configured in this daemon".into(),
                });
            }
            return Err(OpError::invalid(
                field,
                format!("unknown backend {name:?}; expected \"pty\" or \"tmux\""),
            ));
        };
        let probe = b.probe();
        if !probe.available {
            return Err(OpError::BackendUnavailable {
                backend: name.into(),
                detail: probe.detail,
            });
        }
        Ok(b.clone())
    }

    fn resolve_cwd(&self, cwd: Option<&str>, field: &str) -> Result<PathBuf, OpError> {
        let path = match cwd {
            None => return Ok(self.paths.root.clone()),
            Some(c) if Path::new(c).is_absolute() => PathBuf::from(c),
            Some(c) => self.paths.root.join(c),
        };
        if !path.is_dir() {
            return Err(OpError::invalid(
                field,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(path)
    }

    fn check_size(v: Option<u16>, default: u16, field: &str) -> Result<u16, OpError> {
        match v {
            None => Ok(default),
            Some(n) if (1..=1000).contains(&n) => Ok(n),
            Some(n) => Err(OpError::invalid(
                field,
                format!("{n} is out of range 1..=1000"),
            )),
        }
    }

    fn live_terminals(&self) -> usize {
        self.state.terminals.values().filter(|t| t.alive).count()
    }

    /// Start a program in a new terminal; returns the live handle and its record.
    fn start_terminal(
        &mut self,
        backend: &Arc<dyn TerminalBackend>,
        spec: TerminalSpec,
        agent_id: Option<String>,
    ) -> Result<(Arc<dyn Terminal>, TerminalRecord), OpError> {
        let observer = self.terminals.observer();
        let b = backend.clone();
        self.open_with(backend.name(), spec, agent_id, move |spec| {
            b.spawn(spec, observer)
        })
    }

    /// Start an agent's process: in a terminal of its backend, or, for an ACP agent, as a
    /// conversation (whose terminal is orch's drawing of it) continuing its last session.
    fn start_agent_process(
        &mut self,
        agent: &AgentRecord,
        spec: TerminalSpec,
    ) -> Result<TerminalRecord, OpError> {
        if agent.watch.protocol != AgentProtocol::Acp {
            let backend = self.agent_backend(agent)?;
            return Ok(self
                .start_terminal(&backend, spec, Some(agent.id.clone()))?
                .1);
        }
        let Some(backend) = self.conversations.clone() else {
            return Err(OpError::BackendUnavailable {
                backend: "acp".into(),
                detail: "not configured in this daemon".into(),
            });
        };
        let observer = self.terminals.conversation_observer();
        let spec = ConversationSpec {
            terminal: spec,
            resume_session: agent.acp_session.clone(),
            mode: agent.watch.acp_mode.clone(),
            auth_method: agent.watch.acp_auth_method.clone(),
        };
        let mut talk = None;
        let (_t, record) = self.open_with(
            backend.name(),
            spec.terminal.clone(),
            Some(agent.id.clone()),
            |_| {
                let (term, conversation) = backend.start(spec, observer)?;
                talk = Some(conversation);
                Ok(term)
            },
        )?;
        if let Some(c) = talk {
            self.terminals.insert_conversation(record.id.clone(), c);
        }
        Ok(record)
    }

    /// Start a terminal with `start`, within the live-terminal limit; its record.
    fn open_with(
        &mut self,
        backend: &str,
        spec: TerminalSpec,
        agent_id: Option<String>,
        start: impl FnOnce(TerminalSpec) -> Result<Arc<dyn Terminal>, BackendError>,
    ) -> Result<(Arc<dyn Terminal>, TerminalRecord), OpError> {
        if self.live_terminals() >= MAX_LIVE_TERMINALS {
            return Err(OpError::Limit {
                limit: "live terminals",
                max: MAX_LIVE_TERMINALS as u64,
            });
        }
        let record = TerminalRecord {
            id: spec.id.clone(),
            backend: backend.into(),
            command: spec.command.clone(),
            cwd: spec.cwd.display().to_string(),
            cols: spec.cols,
            rows: spec.rows,
            pid: None,
            alive: true,
            exit_code: None,
            agent_id,
            handle: None,
            closed: false,
        };
        let term = start(spec).map_err(|e| match e {
            BackendError::Unavailable { backend, detail } => OpError::BackendUnavailable {
                backend: backend.into(),
                detail,
            },
            BackendError::Spawn { .. } => OpError::invalid("command", e.to_string()),
            other => OpError::Internal(other.to_string()),
        })?;
        let record = TerminalRecord {
            pid: term.pid(),
            handle: term.handle(),
            ..record
        };
        self.terminals.insert(record.id.clone(), term.clone());
        Ok((term, record))
    }

    #[allow(clippy::too_many_arguments)] // one place builds specs; a builder would only rename these
    pub(super) fn spec(
        &self,
        id: &str,
        name: &str,
        command: Vec<String>,
        cwd: PathBuf,
        env: Vec<(String, String)>,
        cols: u16,
        rows: u16,
    ) -> TerminalSpec {
        TerminalSpec {
            id: id.into(),
            name: name.into(),
            command,
            cwd,
            env,
            cols,
            rows,
            log_path: self.paths.output_log(id),
            scrollback: self.config.daemon.scrollback,
            log_limit: self.config.retention.output_log_bytes / 2,
        }
    }

    /// What an agent's process gets on top of its terminal's environment: its kind's and its
    /// spawn's variables, then orch's own (which tell `orch hook` and `orch task complete` inside
    /// the agent who they are and where the daemon is).
    fn agent_env(&self, agent: &AgentRecord) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        env.extend(agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.push(("ORCH_AGENT_ID".into(), agent.id.clone()));
        env.push(("ORCH_TERMINAL_ID".into(), agent.terminal_id.clone()));
        env.push(("ORCH_AGENT_NAME".into(), agent.name.clone()));
        env.push((
            "ORCH_SOCKET".into(),
            self.paths.socket.display().to_string(),
        ));
        env.push((
            "ORCH_WORKSPACE".into(),
            self.paths.root.display().to_string(),
        ));
        env.push((
            "ORCH_TASK_ID".into(),
            agent.task_id.clone().unwrap_or_default(),
        ));
        env
    }

    /// The argv an agent's process runs: its command, plus what its kind's hooks need.
    fn program_argv(&self, agent: &AgentRecord) -> Result<Vec<String>, OpError> {
        let mut argv = agent.command.clone();
        if agent.watch.hooks == Some(HookDialect::Claude) && agent.host.is_none() {
            // Claude Code takes extra settings for one run: orch's hooks go there, never into
            // the user's ~/.claude or the project's .claude/.
            let path = self.write_hook_settings(agent)?;
            argv.push("--settings".into());
            argv.push(path.display().to_string());
        }
        Ok(argv)
    }

    /// Write the settings file whose command hooks run `orch hook` for every event orch reads,
    /// private to the user, in the agent's directory under the state directory.
    fn write_hook_settings(&self, agent: &AgentRecord) -> Result<PathBuf, OpError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let exe = own_binary()
            .map_err(|e| OpError::Internal(format!("cannot find orch's own binary: {e}")))?;
        let dir = self.paths.state_dir.join("agents").join(&agent.id);
        let path = dir.join("claude-settings.json");
        let settings = claude_settings(&format!(
            "{} hook",
            crate::config::shell_quote(&exe.to_string_lossy())
        ));
        let write = || -> std::io::Result<()> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            let tmp = dir.join("claude-settings.json.tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(settings.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            OpError::Internal(format!(
                "cannot write hook settings {}: {e}",
                path.display()
            ))
        })?;
        Ok(path)
    }

    /// `orch/agent/spawn` without a worktree: the agent, started.
    pub fn spawn_agent(&mut self, args: SpawnArgs) -> Result<AgentRecord, OpError> {
        let p = self.prepare_spawn(&args)?;
        self.launch(p, None)
    }

    /// Check a spawn's arguments and work out the agent it makes, without starting anything.
    pub(super) fn prepare_spawn(&mut self, args: &SpawnArgs) -> Result<Prepared, OpError> {
        rules::agents::check_env(&args.env)?;
        let kind_name = args.kind.clone();
        let kind = match &kind_name {
            Some(k) => Some(self.config.agents.get(k).cloned().ok_or_else(|| {
                let known: Vec<&str> = self.config.agents.keys().map(String::as_str).collect();
                OpError::invalid(
                    "kind",
                    format!("unknown kind {k:?}; configured kinds: {}", known.join(", ")),
                )
            })?),
            None => None,
        };
        let command = match (&args.command, &kind) {
            (Some(c), _) if c.is_empty() || c[0].is_empty() => {
                return Err(OpError::invalid("command", "must be a non-empty argv"))
            }
            (Some(c), _) => c.clone(),
            (None, Some(k)) => k.command.clone(),
            (None, None) => return Err(OpError::invalid("kind", "give a kind or a command")),
        };
        let kind = kind.unwrap_or_default();
        let kind_label = kind_name.clone().unwrap_or_else(|| "command".into());
        let session_id = match &args.session {
            Some(s) => {
                let sess = self.state.session(s).ok_or_else(|| OpError::NotFound {
                    kind: "session",
                    id: s.clone(),
                })?;
                if sess.closed {
                    return Err(OpError::Conflict {
                        kind: "session",
                        id: sess.id.clone(),
                        state: "closed".into(),
                        what: "cannot add an agent".into(),
                    });
                }
                sess.id.clone()
            }
            None => self
                .state
                .default_session()
                .map(|s| s.id.clone())
                .unwrap_or_default(),
        };
        let name = match &args.name {
            Some(n) => {
                if n.is_empty()
                    || n.len() > 64
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(OpError::invalid(
                        "name",
                        format!(
                            "{n:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
                        ),
                    ));
                }
                if let Some(a) = self.state.agent_named(n) {
                    return Err(OpError::invalid(
                        "name",
                        format!("{n:?} is already the name of agent {}", a.id),
                    ));
                }
                if self.trees.is_reserved(n) {
                    return Err(OpError::invalid(
                        "name",
                        format!("{n:?} is the name of an agent whose worktree is being made"),
                    ));
                }
                if n.split_once('-').is_some_and(|(p, num)| {
                    ["a", "t", "s", "k", "d"].contains(&p)
                        && !num.is_empty()
                        && num.bytes().all(|b| b.is_ascii_digit())
                }) {
                    return Err(OpError::invalid(
                        "name",
                        format!("{n:?} has the shape of an id (like a-7); choose another name"),
                    ));
                }
                if self.state.agents.contains_key(n) {
                    return Err(OpError::invalid("name", format!("{n:?} is an agent id")));
                }
                n.clone()
            }
            None => {
                let base = kind_name.clone().unwrap_or_else(|| {
                    Path::new(&command[0])
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "agent".into())
                });
                let base: String = base
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                (1..)
                    .map(|n| format!("{base}-{n}"))
                    .find(|n| self.state.agent_named(n).is_none() && !self.trees.is_reserved(n))
                    .expect("unbounded")
            }
        };
        let mut watch = kind.watch();
        if let Some(p) = args.protocol {
            watch.protocol = p;
        }
        let host = match (&args.host, &kind.host) {
            (Some(h), _) if h.is_empty() => None,
            (Some(h), _) => Some(h.clone()),
            (None, h) => h.clone(),
        };
        let host_config = match &host {
            Some(h) => {
                self.host(h, "host")?;
                Some(self.config.hosts.get(h).cloned().ok_or_else(|| {
                    OpError::invalid(
                        "host",
                        format!("{h:?} is no longer in orch.toml (hosts are read when the daemon starts)"),
                    )
                })?)
            }
            None => None,
        };
        let cwd = match &host_config {
            // A path on the host: nothing here to check it against.
            Some(hc) => PathBuf::from(
                super::hosts::host_cwd(
                    args.cwd.as_deref().or(kind.cwd.as_deref()),
                    hc.cwd.as_deref(),
                )
                .map_err(|e| OpError::invalid("cwd", e))?,
            ),
            None => self.resolve_cwd(args.cwd.as_deref().or(kind.cwd.as_deref()), "cwd")?,
        };
        let backend_name = if let Some(h) = &host {
            if watch.protocol == AgentProtocol::Acp {
                return Err(OpError::invalid(
                    "host",
                    "ACP agents run on this machine; remote hosts run agents in tmux",
                ));
            }
            if let Some(b) = args.backend.as_ref().filter(|b| b.as_str() != "tmux") {
                return Err(OpError::invalid(
                    "backend",
                    format!("{b:?}: agents on host {h} run in its tmux; leave backend out"),
                ));
            }
            if args.worktree.as_ref().is_some_and(|w| w.is_some())
                || (args.worktree.is_none() && kind.worktree)
            {
                return Err(OpError::invalid(
                    "worktree",
                    format!("worktrees are made in this workspace's repository, not on host {h}"),
                ));
            }
            self.connected_host(h, "host")?;
            // Its hooks would call this machine's `orch` through a socket the host does not
            // have: its state comes from its screen there.
            watch.hooks = None;
            "tmux".to_string()
        } else if watch.protocol == AgentProtocol::Acp {
            // An ACP agent speaks on its stdio: it has no terminal backend of its own.
            if let Some(b) = args.backend.as_ref().filter(|b| b.as_str() != "acp") {
                return Err(OpError::invalid(
                    "backend",
                    format!("{b:?} runs programs in terminals, but this agent speaks ACP; leave backend out"),
                ));
            }
            "acp".to_string()
        } else {
            let name = args
                .backend
                .clone()
                .or(kind.backend.clone())
                .unwrap_or_else(|| self.config.daemon.backend.clone());
            self.backend(&name, "backend")?.name().to_string()
        };
        let cols = Self::check_size(args.cols, self.config.daemon.cols, "cols")?;
        let rows = Self::check_size(args.rows, self.config.daemon.rows, "rows")?;
        for p in kind
            .waiting_patterns
            .iter()
            .chain(&kind.ready_patterns)
            .chain(&kind.busy_patterns)
        {
            Regex::new(p).map_err(|e| OpError::invalid("kind", format!("pattern {p:?}: {e}")))?;
        }
        let mut env = host_config.map(|h| h.env).unwrap_or_default();
        env.extend(kind.env.clone());
        env.extend(args.env.clone());
        let worktree = match &args.worktree {
            Some(w) => w.clone(),
            None if kind.worktree => Some(WorktreeArgs::default()),
            None => None,
        };
        Ok(Prepared {
            name,
            kind_label,
            command,
            cwd,
            env,
            session_id,
            backend_name,
            host,
            watch,
            cols,
            rows,
            worktree,
        })
    }

    /// Start the agent `p` describes (in `worktree`, when it has one).
    pub(super) fn launch(
        &mut self,
        p: Prepared,
        worktree: Option<WorktreeRecord>,
    ) -> Result<AgentRecord, OpError> {
        let Prepared {
            name,
            kind_label,
            command,
            mut cwd,
            env,
            session_id,
            backend_name,
            host,
            watch,
            cols,
            rows,
            worktree: _,
        } = p;
        if let Some(w) = &worktree {
            // The same place in the agent's own checkout.
            let within = cwd.strip_prefix(&self.paths.root).unwrap_or(Path::new(""));
            cwd = PathBuf::from(&w.path).join(within);
            if !cwd.is_dir() {
                cwd = PathBuf::from(&w.path);
            }
        }
        let mut gen = self.state.ids();
        let id = gen.next(ids::AGENT);
        let terminal_id = gen.next(ids::TERMINAL);
        let now = self.clock.now_rfc3339();
        let mut agent = AgentRecord {
            id: id.clone(),
            name: name.clone(),
            kind: kind_label,
            command: command.clone(),
            cwd: cwd.display().to_string(),
            env,
            session_id,
            terminal_id: terminal_id.clone(),
            backend: backend_name,
            host,
            acp_session: None,
            worktree: worktree.clone(),
            state: AgentState::Starting,
            exit_code: None,
            pid: None,
            task_id: None,
            restarts: 0,
            watch,
            cols,
            rows,
            created_at: now.clone(),
            updated_at: now,
        };
        let spec = self.spec(
            &terminal_id,
            &name,
            self.program_argv(&agent)?,
            cwd,
            self.agent_env(&agent),
            cols,
            rows,
        );
        let record = self.start_agent_process(&agent, spec)?;
        agent.pid = record.pid;
        self.emit(EventBody::TerminalOpened { terminal: record });
        self.emit(EventBody::AgentSpawned {
            agent: agent.clone(),
        });
        if let Some(w) = worktree {
            self.emit(EventBody::WorktreeCreated {
                id: id.clone(),
                worktree: w,
            });
        }
        self.watch.insert(id.clone(), WatchState::new(&agent.watch));
        self.set_agent_state(
            &id,
            AgentState::Running,
            Evidence::Spawned { pid: agent.pid },
            None,
        );
        Ok(self.state.agents[&id].clone())
    }

    /// `orch/terminal/open`: a terminal without an agent.
    pub fn open_terminal(
        &mut self,
        command: Vec<String>,
        cwd: Option<String>,
        env: BTreeMap<String, String>,
        backend: Option<String>,
        cols: Option<u16>,
        rows: Option<u16>,
    ) -> Result<TerminalRecord, OpError> {
        if command.is_empty() || command[0].is_empty() {
            return Err(OpError::invalid("command", "must be a non-empty argv"));
        }
        rules::agents::check_env(&env)?;
        let cwd = self.resolve_cwd(cwd.as_deref(), "cwd")?;
        let backend = self.backend(
            &backend.unwrap_or_else(|| self.config.daemon.backend.clone()),
            "backend",
        )?;
        let cols = Self::check_size(cols, self.config.daemon.cols, "cols")?;
        let rows = Self::check_size(rows, self.config.daemon.rows, "rows")?;
        let id = self.new_id(ids::TERMINAL);
        let mut envv = vec![("TERM".to_string(), "xterm-256color".to_string())];
        envv.extend(env);
        envv.push((
            "ORCH_SOCKET".into(),
            self.paths.socket.display().to_string(),
        ));
        let spec = self.spec(&id, &id, command, cwd, envv, cols, rows);
        let (_t, record) = self.start_terminal(&backend, spec, None)?;
        self.emit(EventBody::TerminalOpened { terminal: record });
        Ok(self.state.terminals[&id].clone())
    }

    /// An agent by id or name.
    pub fn agent_ref(&self, id: &str) -> Result<&AgentRecord, OpError> {
        self.state.agent(id).ok_or_else(|| OpError::NotFound {
            kind: "agent",
            id: id.into(),
        })
    }

    /// The live terminal of an agent, or a conflict naming its state.
    pub fn agent_terminal(
        &self,
        id: &str,
        what: &str,
    ) -> Result<(AgentRecord, Arc<dyn Terminal>), OpError> {
        let agent = self.agent_ref(id)?.clone();
        match self.terminals.get(&agent.terminal_id) {
            Some(t) if agent.state.is_live() => Ok((agent, t.clone())),
            _ => Err(OpError::Conflict {
                kind: "agent",
                id: agent.id.clone(),
                state: agent.state.as_str().into(),
                what: what.into(),
            }),
        }
    }

    /// `orch/agent/stop`: SIGTERM now, SIGKILL after the grace period (or at once with `force`).
    /// Returns the agent's id; the caller waits for its exit.
    pub fn stop_agent(&mut self, id: &str, force: bool) -> Result<String, OpError> {
        let (agent, term) = self.agent_terminal(id, "cannot stop")?;
        self.stopping.insert(agent.id.clone());
        term.signal(force)
            .map_err(|e| OpError::Internal(e.to_string()))?;
        if !force {
            self.after(
                Duration::from_millis(self.config.daemon.stop_grace_ms),
                Timer::StopGrace {
                    agent: agent.id.clone(),
                },
            );
        }
        Ok(agent.id)
    }

    /// `orch/agent/stop` for a client: `waiter` answers with the agent once it exited.
    pub fn stop_agent_for(
        &mut self,
        conn: super::ConnId,
        id: &str,
        force: bool,
        waiter: super::Waiter<AgentRecord>,
    ) -> Result<(), OpError> {
        let id = self.stop_agent(id, force)?;
        self.waiters.entry(id).or_default().push((waiter, conn));
        Ok(())
    }

    pub(super) fn stop_grace_over(&mut self, agent: &str) {
        if !self.stopping.contains(agent) {
            return;
        }
        if let Ok((_, term)) = self.agent_terminal(agent, "") {
            tracing::info!(agent, "grace period over, sending SIGKILL");
            let _ = term.signal(true);
        }
    }

    /// `orch/agent/restart`: a new process in a new terminal, now.
    pub fn restart_agent(&mut self, id: &str) -> Result<AgentRecord, OpError> {
        let agent = self.agent_ref(id)?.clone();
        if agent.state == AgentState::Unreachable {
            // Its program runs on out of reach: a second one would run beside it.
            return Err(OpError::Conflict {
                kind: "agent",
                id: agent.id.clone(),
                state: "unreachable".into(),
                what: "cannot restart it until its host is back".into(),
            });
        }
        if let Some(old) = self.terminals.remove(&agent.terminal_id) {
            // The old terminal's exit is ignored: the agent no longer points at it.
            let _ = old.close();
            self.emit(EventBody::TerminalClosed {
                id: agent.terminal_id.clone(),
            });
        }
        self.stopping.remove(&agent.id);
        if let Some(w) = self.watch.get_mut(&agent.id) {
            w.auto_restarts = 0;
        }
        self.task_agent_restarted(&agent.id);
        let why = Evidence::Request {
            what: "restarted on request".into(),
        };
        if let Err(e) = self.respawn(&agent.id, why) {
            // The old process is gone: say so rather than leave a live agent with no terminal.
            self.set_agent_state(
                &agent.id,
                AgentState::Failed,
                Evidence::Daemon {
                    what: format!("restart failed: {e}"),
                },
                None,
            );
            self.task_agent_ended(&agent.id, None);
            return Err(e);
        }
        Ok(self.state.agents[&agent.id].clone())
    }

    /// Start an agent's program again in a new terminal.
    fn respawn(&mut self, id: &str, evidence: Evidence) -> Result<(), OpError> {
        let agent = self.state.agents[id].clone();
        if agent.worktree.as_ref().is_some_and(|w| w.paused) {
            return Err(OpError::Conflict {
                kind: "agent",
                id: agent.id.clone(),
                state: "paused".into(),
                what: "cannot start it: its worktree is paused (orch/agent/resume)".into(),
            });
        }
        if agent.watch.protocol != AgentProtocol::Acp {
            self.agent_backend(&agent)?;
        }
        self.dismiss_wait_decision(id, "the agent was restarted");
        self.drop_typing(id, "the agent was restarted");
        if let Some(old) = self.terminals.remove(&agent.terminal_id) {
            // Releases the ended program (reaped on close) and anything it left running.
            let _ = old.close();
        }
        let terminal_id = self.new_id(ids::TERMINAL);
        let spec = self.spec(
            &terminal_id,
            &agent.name,
            self.program_argv(&agent)?,
            PathBuf::from(&agent.cwd),
            self.agent_env(&AgentRecord {
                terminal_id: terminal_id.clone(),
                ..agent.clone()
            }),
            agent.cols,
            agent.rows,
        );
        let record = self.start_agent_process(&agent, spec)?;
        let pid = record.pid;
        self.emit(EventBody::TerminalOpened { terminal: record });
        if agent.state.is_live() {
            self.set_agent_state(
                id,
                AgentState::Stopped,
                Evidence::Request {
                    what: "restarting".into(),
                },
                None,
            );
        }
        self.emit(EventBody::AgentRestarted {
            id: id.into(),
            terminal_id,
            pid,
            restarts: agent.restarts + 1,
        });
        self.set_agent_state(id, AgentState::Starting, evidence, None);
        self.watch
            .entry(id.into())
            .or_insert_with(|| WatchState::new(&agent.watch))
            .reset(&agent.watch);
        self.set_agent_state(id, AgentState::Running, Evidence::Spawned { pid }, None);
        Ok(())
    }

    pub(super) fn restart_due(&mut self, id: &str, terminal: &str) {
        let Some(agent) = self.state.agents.get(id) else {
            return;
        };
        if agent.terminal_id != terminal || agent.state.is_live() || self.daemon_stop.is_some() {
            return; // restarted or stopped by hand meanwhile
        }
        let attempt = self.watch.get(id).map_or(0, |w| w.auto_restarts);
        let why = Evidence::Daemon {
            what: format!("restart policy (attempt {attempt})"),
        };
        if let Err(e) = self.respawn(id, why) {
            tracing::warn!(agent = id, "restart failed: {e}");
            let evidence = Evidence::Daemon {
                what: format!("restart failed: {e}"),
            };
            self.set_agent_state(id, AgentState::Failed, evidence.clone(), None);
            self.after_end(id, AgentState::Failed, evidence);
        }
    }

    /// A terminal's program ended, or (`lost`) its backend went away.
    pub(super) fn on_exit(&mut self, terminal: &str, code: Option<i32>, lost: Option<String>) {
        if self.state.terminals.get(terminal).is_some_and(|t| t.alive) {
            self.emit(EventBody::TerminalExited {
                id: terminal.into(),
                exit_code: code,
            });
        }
        self.release_terminal(terminal);
        let Some(agent) = self.state.agent_by_terminal(terminal) else {
            return;
        };
        if !agent.state.is_live() {
            return;
        }
        let id = agent.id.clone();
        self.emit(EventBody::AgentExited {
            id: id.clone(),
            exit_code: code,
        });
        let stopping = self.stopping.remove(&id);
        let (mut state, mut evidence) = rules::agents::ending(code, lost, stopping);
        // An ACP agent given up on (its handshake failed) failed, whatever its exit code.
        if let Some(why) = self.watch.get_mut(&id).and_then(|w| w.acp_failure.take()) {
            if !stopping {
                state = AgentState::Failed;
                evidence = Evidence::Acp {
                    what: format!("{why} ({evidence})"),
                };
            }
        }
        self.set_agent_state(&id, state, evidence.clone(), code);
        self.dismiss_wait_decision(&id, "the agent ended");
        self.drop_typing(&id, "the agent ended");
        let agent = self.state.agents[&id].clone();
        for (waiter, _) in self.waiters.remove(&id).unwrap_or_default() {
            // Answered after this batch's sync, like every other reply.
            self.hold(waiter(Ok(agent.clone())));
        }
        self.task_agent_ended(&id, code);
        self.finish_daemon_stop(false);
        self.count_changes(&id);
        self.retired(&id);
        self.after_end(&id, state, evidence);
    }

    /// The daemon's stop waited long enough: SIGKILL an agent that is still live and settle
    /// everything that hung on it (its terminal, question, typing and task), as its exit would.
    pub(super) fn kill_on_daemon_stop(&mut self, id: &str) {
        let Some(agent) = self.state.agents.get(id).cloned() else {
            return;
        };
        if let Some(t) = self.terminals.get(&agent.terminal_id) {
            let _ = t.signal(true);
        }
        self.terminal_gone(&agent.terminal_id);
        self.release_terminal(&agent.terminal_id);
        self.stopping.remove(id);
        let (state, what) = match (agent.state, &agent.host) {
            // Nothing reached it: say so rather than call it stopped.
            (AgentState::Unreachable, Some(host)) => (
                AgentState::Lost,
                format!("daemon stopped while host {host} was unreachable: it may still run there"),
            ),
            _ => (
                AgentState::Stopped,
                "daemon stopped (SIGKILL after grace period)".into(),
            ),
        };
        self.set_agent_state(id, state, Evidence::Daemon { what }, None);
        self.dismiss_wait_decision(id, "the daemon stopped");
        self.drop_typing(id, "the daemon stopped");
        self.task_agent_ended(id, None);
    }

    /// Apply the restart policy to an agent that ended in `state`.
    fn after_end(&mut self, id: &str, state: AgentState, evidence: Evidence) {
        if self.daemon_stop.is_some() {
            return;
        }
        let Some(agent) = self.state.agents.get(id).cloned() else {
            return;
        };
        let ws = self
            .watch
            .entry(id.into())
            .or_insert_with(|| WatchState::new(&agent.watch));
        // A run that lasted is a success of the last restart: the count starts over, so an
        // `always` agent that crashes once a day is not given up on after five days.
        if ws.started.elapsed() >= HEALTHY_RUN {
            ws.auto_restarts = 0;
        }
        let restarts = ws.auto_restarts;
        if let Ok(count) =
            self.rule(|d| Ok(rules::agents::after_end(d, id, state, &evidence, restarts)))
        {
            if let Some(ws) = self.watch.get_mut(id) {
                ws.auto_restarts = count;
            }
        }
    }

    /// After a daemon start: pty agents died with the old daemon (lost, then their restart
    /// policy); tmux agents whose panes survive are adopted.
    pub(super) fn reconcile_agents(&mut self) {
        let live: Vec<AgentRecord> = self
            .state
            .agents
            .values()
            .filter(|a| a.state.is_live())
            .cloned()
            .collect();
        for agent in live {
            if agent.host.is_some() {
                // Adopted when its host connects (see `hosts`), which may take a while.
                continue;
            }
            let handle = self
                .state
                .terminals
                .get(&agent.terminal_id)
                .and_then(|t| t.handle.clone());
            let backend = self.backends.get(agent.backend.as_str()).cloned();
            let adopted = match (handle, backend) {
                (Some(handle), Some(b)) => {
                    match b.adopt(self.adopt_spec(&agent), &handle, self.terminals.observer()) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::info!(agent = %agent.id, "cannot adopt {handle}: {e}");
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(term) = adopted {
                self.take_over(&agent, term);
                continue;
            }
            let mut ended = false;
            if matches!(agent.backend.as_str(), "acp" | "pty") {
                // An ACP agent may outlive its daemon (it is not in a terminal that closes), and
                // so may a pty agent that ignores the hangup its terminal's end sends (Gemini CLI
                // does): end what is left of it before it is restarted.
                if let Some(pid) = self
                    .state
                    .terminals
                    .get(&agent.terminal_id)
                    .and_then(|t| t.pid)
                {
                    ended = super::conversations::end_orphaned_agent(
                        pid,
                        &agent.terminal_id,
                        &self.paths.socket,
                    );
                }
            }
            let what = match agent.backend.as_str() {
                "pty" if ended => "daemon restarted: its pty died with the previous daemon (orch ended the processes it left running)".to_string(),
                "pty" => "daemon restarted: its pty died with the previous daemon".to_string(),
                "acp" => "daemon restarted: its ACP agent died with the previous daemon".to_string(),
                b => format!("daemon restarted: its {b} terminal is gone"),
            };
            let evidence = Evidence::Daemon { what };
            self.end_lost(
                &agent,
                evidence,
                "the agent was lost with the previous daemon",
            );
        }
        // Standalone terminals of a dead daemon are gone too.
        let dead: Vec<String> = self
            .state
            .terminals
            .values()
            .filter(|t| t.alive && t.agent_id.is_none() && !self.terminals.contains_key(&t.id))
            .map(|t| t.id.clone())
            .collect();
        for id in dead {
            self.emit(EventBody::TerminalExited {
                id,
                exit_code: None,
            });
        }
    }

    /// An agent whose program orch cannot reach any more ends `lost`: its terminal, question,
    /// typing and task settle as at an exit, then its restart policy applies.
    pub(super) fn end_lost(&mut self, agent: &AgentRecord, evidence: Evidence, why: &str) {
        self.terminal_gone(&agent.terminal_id);
        self.set_agent_state(&agent.id, AgentState::Lost, evidence.clone(), None);
        self.dismiss_wait_decision(&agent.id, why);
        self.drop_typing(&agent.id, "the agent was lost");
        self.task_agent_ended(&agent.id, None);
        self.after_end(&agent.id, AgentState::Lost, evidence);
    }

    /// A terminal recorded as running ended without an exit status: record that it did.
    fn terminal_gone(&mut self, terminal: &str) {
        if self.state.terminals.get(terminal).is_some_and(|t| t.alive) {
            self.emit(EventBody::TerminalExited {
                id: terminal.into(),
                exit_code: None,
            });
        }
    }

    /// The spec that finds an agent's surviving terminal again (tmux, after a daemon start or
    /// its host's return).
    pub(super) fn adopt_spec(&self, agent: &AgentRecord) -> TerminalSpec {
        self.spec(
            &agent.terminal_id,
            &agent.name,
            agent.command.clone(),
            PathBuf::from(&agent.cwd),
            Vec::new(),
            agent.cols,
            agent.rows,
        )
    }

    /// An agent's surviving terminal, adopted: live again, watched afresh, with a question it
    /// was asking before still its own.
    pub(super) fn take_over(&mut self, agent: &AgentRecord, term: Arc<dyn Terminal>) {
        self.terminals
            .insert(agent.terminal_id.clone(), term.clone());
        self.emit(EventBody::AgentAdopted {
            id: agent.id.clone(),
            pid: term.pid(),
        });
        let mut ws = WatchState::new(&agent.watch);
        ws.adopt_question(
            self.state
                .decisions
                .values()
                .find(|d| {
                    !d.resolved
                        && matches!(&d.source, DecisionSource::Agent { id, .. } if *id == agent.id)
                })
                .map(|d| d.id.clone()),
        );
        self.watch.insert(agent.id.clone(), ws);
    }

    /// Free an ended terminal's resources, keeping its last screen (see [`super::terminals`]);
    /// clients stop following it.
    fn release_terminal(&mut self, terminal: &str) {
        self.terminals.release(terminal);
        self.clients.forget_terminal(terminal);
    }

    /// `orch/terminal/resize`: the program's terminal and the emulator reflow.
    pub fn resize_terminal(&mut self, id: &str, cols: u16, rows: u16) -> Result<(), OpError> {
        for (field, v) in [("cols", cols), ("rows", rows)] {
            if !(1..=1000).contains(&v) {
                return Err(OpError::invalid(
                    field,
                    format!("{v} is out of range 1..=1000"),
                ));
            }
        }
        let rec = self.terminal_record(id)?.clone();
        let term = match self.terminals.get(id) {
            Some(t) if rec.alive => t.clone(),
            _ => {
                let state = if rec.closed { "closed" } else { "exited" };
                return Err(OpError::Conflict {
                    kind: "terminal",
                    id: id.into(),
                    state: state.into(),
                    what: "cannot resize".into(),
                });
            }
        };
        term.resize(cols, rows)
            .map_err(|e| OpError::Internal(e.to_string()))?;
        self.emit(EventBody::TerminalResized {
            id: id.into(),
            cols,
            rows,
        });
        Ok(())
    }

    /// `orch/terminal/close`: not while an agent runs in it (stop the agent instead).
    pub fn close_terminal(&mut self, id: &str) -> Result<(), OpError> {
        let rec = self.terminal_record(id)?.clone();
        if rec.closed {
            return Err(OpError::Conflict {
                kind: "terminal",
                id: id.into(),
                state: "closed".into(),
                what: "cannot close".into(),
            });
        }
        if let Some(agent) = rec.agent_id.as_ref().and_then(|a| self.state.agents.get(a)) {
            if agent.state.is_live() && agent.terminal_id == rec.id {
                return Err(OpError::Conflict {
                    kind: "terminal",
                    id: id.into(),
                    state: format!("in use by agent {} ({})", agent.name, agent.state.as_str()),
                    what: "cannot close; stop the agent instead".into(),
                });
            }
        }
        if let Some(t) = self.terminals.remove(id) {
            let _ = t.close();
        }
        self.emit(EventBody::TerminalClosed { id: id.into() });
        Ok(())
    }

    /// A terminal id, or an agent's id or name meaning its current terminal.
    pub fn terminal_or_agent(&self, id: &str) -> Result<String, OpError> {
        if self.state.terminals.contains_key(id) {
            return Ok(id.to_string());
        }
        match self.state.agent(id) {
            Some(a) => Ok(a.terminal_id.clone()),
            None => Err(OpError::NotFound {
                kind: "terminal",
                id: id.into(),
            }),
        }
    }

    /// A live terminal, or a conflict naming why there is none.
    fn live_terminal(&self, id: &str, what: &str) -> Result<Arc<dyn Terminal>, OpError> {
        let rec = self.terminal_record(id)?;
        match self.terminals.get(id) {
            Some(t) if rec.alive => Ok(t.clone()),
            _ => Err(OpError::Conflict {
                kind: "terminal",
                id: id.into(),
                state: self
                    .away(rec)
                    .unwrap_or_else(|| if rec.closed { "closed" } else { "exited" }.into()),
                what: what.into(),
            }),
        }
    }

    /// Why a live terminal of an agent on a host is not here now (its host is unreachable, or
    /// not connected yet since the daemon started), in words; `None` for any other terminal.
    fn away(&self, rec: &TerminalRecord) -> Option<String> {
        let agent = self.state.agents.get(rec.agent_id.as_deref()?)?;
        let host = agent.host.as_deref()?;
        (rec.alive && agent.state.is_live()).then(|| {
            format!("unreachable (on host {host}, which cannot be reached now; it comes back with the host)")
        })
    }

    /// A terminal's screen with `scrollback` lines of history: live, or the last one of an
    /// ended terminal while it is kept.
    pub fn terminal_screen(
        &self,
        id: &str,
        scrollback: usize,
    ) -> Result<crate::ports::ScreenSnapshot, OpError> {
        let rec = self.terminal_record(id)?;
        let Some(term) = self.terminals.get(id) else {
            if let Some(last) = self.terminals.final_screen(id) {
                let mut s = last.clone();
                let keep = (s.rows as usize + scrollback).min(s.lines.len());
                s.lines.drain(..s.lines.len() - keep);
                return Ok(s);
            }
            return Err(OpError::Conflict {
                kind: "terminal",
                id: id.into(),
                state: match self.away(rec) {
                    Some(why) => why,
                    None if rec.closed => "closed".into(),
                    None => {
                        "gone (its process did not survive a daemon restart; see its output log)"
                            .into()
                    }
                },
                what: "no screen".into(),
            });
        };
        term.screen(scrollback)
            .map_err(|e| OpError::Internal(e.to_string()))
    }

    /// The title a live terminal's program set, if any.
    pub fn terminal_title(&self, id: &str) -> Option<String> {
        self.terminals
            .get(id)
            .and_then(|t| t.screen(0).ok())
            .and_then(|s| s.title)
    }

    /// `orch/terminal/write`: bytes to a live terminal's program.
    pub fn write_terminal(&mut self, id: &str, data: &str) -> Result<(), OpError> {
        const MAX_WRITE: usize = 1 << 20;
        if data.len() > MAX_WRITE {
            return Err(OpError::Limit {
                limit: "data bytes",
                max: MAX_WRITE as u64,
            });
        }
        let t = self.live_terminal(id, "cannot write")?;
        t.write(data.as_bytes())
            .map_err(|e| OpError::Internal(e.to_string()))
    }

    /// `orch/terminal/subscribe`: `conn` follows the terminal's output (idempotent).
    pub fn follow_terminal(&mut self, conn: super::ConnId, id: &str) -> Result<(), OpError> {
        let id = self.terminal_or_agent(id)?;
        let term = self.live_terminal(&id, "cannot subscribe")?;
        if self.clients.follows(conn, &id) {
            return Ok(());
        }
        let sub = term.subscribe();
        if let Err(e) = self.clients.follow(conn, &id, sub.clone()) {
            term.unsubscribe(&sub);
            return Err(e);
        }
        Ok(())
    }

    /// `orch/terminal/unsubscribe`.
    pub fn unfollow_terminal(&mut self, conn: super::ConnId, id: &str) -> Result<(), OpError> {
        let id = self.terminal_or_agent(id)?;
        if let Some(sub) = self.clients.unfollow(conn, &id) {
            if let Some(t) = self.terminals.get(&id) {
                t.unsubscribe(&sub);
            }
        }
        Ok(())
    }

    /// A terminal's record by id.
    pub fn terminal_record(&self, id: &str) -> Result<&TerminalRecord, OpError> {
        self.state
            .terminals
            .get(id)
            .ok_or_else(|| OpError::NotFound {
                kind: "terminal",
                id: id.into(),
            })
    }
}

/// Claude Code settings whose command hooks run `command` for each event orch reads (the event's
/// JSON arrives on the hook's stdin).
fn claude_settings(command: &str) -> String {
    let hook = serde_json::json!([{
        "matcher": "*",
        "hooks": [{"type": "command", "command": command, "timeout": 10}],
    }]);
    let hooks: serde_json::Map<String, serde_json::Value> = crate::core::hooks::EVENTS
        .iter()
        .map(|e| (e.to_string(), hook.clone()))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "hooks": hooks })).expect("json")
}

/// The path of orch's binary for agents' hooks. After an upgrade replaced the binary under a
/// running daemon, Linux names the old one `<path> (deleted)`: the new binary at the same path
/// speaks the same hook protocol, and is the one to run.
fn own_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(path) if Path::new(path).exists() => Ok(PathBuf::from(path)),
        _ => Ok(exe),
    }
}
