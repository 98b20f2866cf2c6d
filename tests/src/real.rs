//! The real agent CLIs (Claude Code, Codex, Gemini CLI, Aider) run offline against a scripted
//! model server on loopback (`tests/model-server/server.py`), so tests drive the real programs
//! instead of look-alikes.
//!
//! [`ModelServer`] starts the server and reads its request log; [`RealAgent::prepare`] writes
//! into a temporary `HOME` what an agent needs to skip its first-run screens and talk to that
//! server, and returns the argv and environment to start it with (what an `orch.toml` agent kind
//! or `orch/agent/spawn` is given). What the model answers is decided by directives in the
//! prompt; `tests/fixtures/screens/README.md` lists them and what each CLI shows.
//!
//! This module knows the CLIs' files and flags, never the daemon: it starts no `orch`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::{ci, WAIT};

/// The repository root (`tests/` is this crate's manifest directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The scripted model server, killed when dropped.
pub struct ModelServer {
    /// `python3 server.py`.
    child: Child,
    /// Where it listens on 127.0.0.1.
    port: u16,
    /// One JSON line per request.
    log: PathBuf,
    /// Holds the log and the server's stderr; removed on drop.
    _dir: TempDir,
}

impl ModelServer {
    /// Start `tests/model-server/server.py` on a free port and wait until it listens.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-model-")
            .tempdir()
            .expect("a temporary directory for the model server");
        let log = dir.path().join("requests.jsonl");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("the model server's stderr file");
        let script = repo_root().join("tests/model-server/server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--log")
            .arg(&log)
            .arg("--port")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
        // The first stdout line says where it listens; a thread reads it so a server that never
        // prints cannot hang the test, then keeps draining stdout until the server exits.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let first = rx.recv_timeout(WAIT);
        let port = match first {
            Ok(Some(Ok(ref line))) => line
                .strip_prefix("PORT ")
                .and_then(|p| p.trim().parse::<u16>().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the model server did not print `PORT <n>` (got {first:?}); its stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request log (one JSON object per line).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Every request logged so far, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        let text = match std::fs::read_to_string(&self.log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!(
                "cannot read the model server's log {}: {e}",
                self.log.display()
            ),
        };
        // A line is complete once its newline is written; a reader may see the last one half
        // written, so only complete lines count.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("the model server logged a line that is not JSON ({e}): {l}")
                })
            })
            .collect()
    }

    /// The first logged request matching `pred`, waiting up to `timeout` for it.
    pub fn wait_request(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        self.try_wait_request(what, timeout, pred)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`ModelServer::wait_request`], with the failure returned so that the caller can add what
    /// it knows (the agent's screen).
    pub fn try_wait_request(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if let Some(r) = reqs.iter().find(|r| pred(r)) {
                return Ok(r.clone());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; the model server saw:\n{}",
                    summary(&reqs)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One line per request, for failure messages.
fn summary(reqs: &[Value]) -> String {
    if reqs.is_empty() {
        return "  (no requests)".into();
    }
    reqs.iter()
        .map(|r| {
            format!(
                "  {} {} api={} side={} directive={} user={:?}",
                r["method"].as_str().unwrap_or("?"),
                r["path"].as_str().unwrap_or("?"),
                r["api"],
                r["side"],
                r["directive"],
                r["last_user_text"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real agent CLI at the version `.ci/agents.sh` pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealAgent {
    /// Claude Code (Anthropic Messages).
    Claude,
    /// Codex CLI (OpenAI Responses).
    Codex,
    /// Gemini CLI (Gemini API).
    Gemini,
    /// Aider (Chat Completions).
    Aider,
}

/// What starts a prepared agent: exactly what an agent kind or `orch/agent/spawn` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSetup {
    /// The argv: the absolute path of the CLI, then its flags.
    pub command: Vec<String>,
    /// Environment to add to the inherited one (`HOME` among them).
    pub env: Vec<(String, String)>,
}

impl AgentSetup {
    /// The value of `env` named `key`.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `{command, env}` for `orch/agent/spawn`.
    pub fn spawn_params(&self) -> Value {
        let env: serde_json::Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({ "command": self.command, "env": env })
    }

    /// An `[agents.<kind>]` table for `orch.toml` with this argv and environment (more keys of
    /// the kind may follow it).
    pub fn orch_toml(&self, kind: &str) -> String {
        let command = self
            .command
            .iter()
            .map(|a| toml_string(a))
            .collect::<Vec<_>>()
            .join(", ");
        let env = self
            .env
            .iter()
            .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
            .collect::<Vec<_>>()
            .join(", ");
        // Inline tables, so a test can append more keys of the kind after these lines.
        format!("[agents.{kind}]\ncommand = [{command}]\nenv = {{ {env} }}\n")
    }
}

/// Which first-run screens `prepare` skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Everything answered beforehand: the agent starts at its prompt.
    Ready,
    /// The workspace is not trusted (Aider: not a git repository and `--no-git` left out), so the
    /// agent's own first question shows.
    FirstRun,
}

impl RealAgent {
    /// All four, for tests that run each.
    pub const ALL: [RealAgent; 4] = [
        RealAgent::Claude,
        RealAgent::Codex,
        RealAgent::Gemini,
        RealAgent::Aider,
    ];

    /// The command's name: `claude`, `codex`, `gemini`, `aider`.
    pub fn name(self) -> &'static str {
        match self {
            RealAgent::Claude => "claude",
            RealAgent::Codex => "codex",
            RealAgent::Gemini => "gemini",
            RealAgent::Aider => "aider",
        }
    }

    /// Where `.ci/agents.sh` puts it, relative to the agents directory.
    fn installed_path(self) -> &'static str {
        match self {
            RealAgent::Claude => "claude/node_modules/.bin/claude",
            RealAgent::Codex => "codex/node_modules/.bin/codex",
            RealAgent::Gemini => "gemini/node_modules/.bin/gemini",
            RealAgent::Aider => "aider/bin/aider",
        }
    }

    /// The agents directory: `$ORCH_AGENTS_DIR`, else `$HOME/.cache/orch-ci/agents`.
    pub fn agents_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("ORCH_AGENTS_DIR") {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".cache/orch-ci/agents")
    }

    /// The installed CLI: in the agents directory, else on `PATH`.
    pub fn binary(self) -> Option<PathBuf> {
        let installed = Self::agents_dir().join(self.installed_path());
        if is_executable(&installed) {
            return Some(installed);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(self.name()))
            .find(|p| is_executable(p))
    }

    /// Write into `home` what this agent needs to start at its prompt in `workspace` and use
    /// `server`, and return how to start it.
    ///
    /// Panics when the CLI is not installed: call [`require`] first.
    pub fn prepare(self, home: &Path, workspace: &Path, server: &ModelServer) -> AgentSetup {
        self.prepare_run(home, workspace, server, Run::Ready)
    }

    /// Like [`RealAgent::prepare`], but the workspace is not trusted, so the agent starts with
    /// its first-run question (Claude's, Codex's and Gemini's folder trust, Aider's offer to
    /// create a git repository). Codex asks only inside a git repository, so for Codex a
    /// workspace that is not in one is made one (`git init`).
    pub fn prepare_first_run(
        self,
        home: &Path,
        workspace: &Path,
        server: &ModelServer,
    ) -> AgentSetup {
        self.prepare_run(home, workspace, server, Run::FirstRun)
    }

    fn prepare_run(
        self,
        home: &Path,
        workspace: &Path,
        server: &ModelServer,
        run: Run,
    ) -> AgentSetup {
        let binary = self.binary().unwrap_or_else(|| {
            panic!(
                "the {} CLI is not installed (looked in {} and on PATH): check with \
                 orch_tests::real::require first, install with `bash .ci/agents.sh`",
                self.name(),
                Self::agents_dir().display()
            )
        });
        // The CLIs key trust by the resolved path (/tmp may be a link).
        let ws = std::fs::canonicalize(workspace).unwrap_or_else(|e| {
            panic!(
                "the workspace {} cannot be resolved: {e}",
                workspace.display()
            )
        });
        let ws = ws.to_string_lossy().into_owned();
        let home_s = home.to_string_lossy().into_owned();
        let trusted = run == Run::Ready;
        let mut command = vec![binary.to_string_lossy().into_owned()];
        // A HOME of its own, and the XDG directories inside it, so nothing of this machine's user
        // is read or written.
        let mut env = vec![
            ("HOME".to_string(), home_s.clone()),
            ("XDG_CONFIG_HOME".into(), format!("{home_s}/.config")),
            ("XDG_CACHE_HOME".into(), format!("{home_s}/.cache")),
            ("XDG_DATA_HOME".into(), format!("{home_s}/.local/share")),
            ("XDG_STATE_HOME".into(), format!("{home_s}/.local/state")),
        ];
        match self {
            RealAgent::Claude => {
                let mut config = json!({ "hasCompletedOnboarding": true, "theme": "dark" });
                if trusted {
                    config["projects"] = json!({ ws.clone(): { "hasTrustDialogAccepted": true } });
                }
                write(&home.join(".claude.json"), &config.to_string());
                env.extend([
                    // With ANTHROPIC_API_KEY instead, the TUI says "Not logged in" and sends nothing.
                    ("ANTHROPIC_AUTH_TOKEN".into(), "dummy".into()),
                    ("ANTHROPIC_BASE_URL".into(), server.url()),
                    ("DISABLE_AUTOUPDATER".into(), "1".into()),
                    (
                        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                        "1".into(),
                    ),
                ]);
            }
            RealAgent::Codex => {
                let codex_home = home.join(".codex");
                let mut config = format!(
                    "model = \"mock-model\"\n\
                     model_provider = \"mock\"\n\
                     approval_policy = \"on-request\"\n\
                     sandbox_mode = \"workspace-write\"\n\
                     check_for_update_on_startup = false\n\
                     \n\
                     [model_providers.mock]\n\
                     name = \"mock\"\n\
                     base_url = {}\n\
                     env_key = \"MOCK_API_KEY\"\n\
                     wire_api = \"responses\"\n",
                    toml_string(&format!("{}/v1", server.url()))
                );
                if trusted {
                    // Codex keys trust by the git repository's root when there is one.
                    let mut keys = vec![ws.clone()];
                    if let Some(root) = git_root(Path::new(&ws)) {
                        keys.push(root.to_string_lossy().into_owned());
                    }
                    keys.dedup();
                    for key in keys {
                        config.push_str(&format!(
                            "\n[projects.{}]\ntrust_level = \"trusted\"\n",
                            toml_string(&key)
                        ));
                    }
                } else if git_root(Path::new(&ws)).is_none() {
                    // Codex asks about an untrusted folder only inside a git repository.
                    git_init(Path::new(&ws));
                }
                write(&codex_home.join("config.toml"), &config);
                // Without --no-daemon it copies itself into its home and leaves
                // `codex app-server --managed-daemon` running after the TUI exits.
                command.push("--no-daemon".into());
                env.extend([
                    (
                        "CODEX_HOME".into(),
                        codex_home.to_string_lossy().into_owned(),
                    ),
                    ("MOCK_API_KEY".into(), "dummy".into()),
                ]);
            }
            RealAgent::Gemini => {
                let settings = json!({
                    "security": {
                        "auth": { "selectedType": "gemini-api-key" },
                        "folderTrust": { "enabled": true }
                    },
                    "privacy": { "usageStatisticsEnabled": false },
                    "telemetry": { "enabled": false },
                    "general": { "disableAutoUpdate": true, "disableUpdateNag": true }
                });
                write(&home.join(".gemini/settings.json"), &settings.to_string());
                if trusted {
                    write(
                        &home.join(".gemini/trustedFolders.json"),
                        &json!({ ws.clone(): "TRUST_FOLDER" }).to_string(),
                    );
                }
                env.extend([
                    ("GEMINI_API_KEY".into(), "dummy".into()),
                    ("GOOGLE_GEMINI_BASE_URL".into(), server.url()),
                    // With CI=true (the tests' own, inherited) it refuses to be interactive: "No
                    // input provided via stdin", and exits.
                    ("CI".into(), "false".into()),
                ]);
            }
            RealAgent::Aider => {
                // A fresh model-metadata cache: otherwise Aider downloads litellm's price list
                // from GitHub at every start.
                let metadata = json!({ "openai/mock-model": {
                    "max_input_tokens": 128000, "max_output_tokens": 8192, "max_tokens": 8192,
                    "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                    "litellm_provider": "openai", "mode": "chat"
                }});
                write(
                    &home.join(".aider/caches/model_prices_and_context_window.json"),
                    &metadata.to_string(),
                );
                command.extend(
                    [
                        "--openai-api-base",
                        &format!("{}/v1", server.url()),
                        "--model",
                        "openai/mock-model",
                        // Only with the diff format does it offer to run a reply's shell block.
                        "--edit-format",
                        "diff",
                        "--no-check-update",
                        "--no-show-model-warnings",
                        "--no-show-release-notes",
                        "--no-gitignore",
                        "--analytics-disable",
                        // Its histories go to HOME, not into the workspace under test.
                        "--input-history-file",
                        &format!("{home_s}/.aider.input.history"),
                        "--chat-history-file",
                        &format!("{home_s}/.aider.chat.history.md"),
                    ]
                    .map(String::from),
                );
                if trusted {
                    command.push("--no-git".into());
                }
                env.extend([
                    ("OPENAI_API_KEY".into(), "dummy".into()),
                    ("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into()),
                ]);
            }
        }
        AgentSetup { command, env }
    }
}

/// The installed `agent`, or `None` (and a "skipping" line) when it is missing; with `CI=true` a
/// missing agent fails the test instead.
pub fn require(agent: RealAgent) -> Option<PathBuf> {
    let found = agent.binary();
    if found.is_none() {
        assert!(
            !ci(),
            "the real {} CLI is required when CI=true but is not installed (looked in {} and on \
             PATH): run `bash .ci/agents.sh`",
            agent.name(),
            RealAgent::agents_dir().display()
        );
        eprintln!(
            "skipping: the real {} CLI is not installed (`bash .ci/agents.sh` installs it)",
            agent.name()
        );
    }
    found
}

/// The root of the git repository `dir` is in, if any.
fn git_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

fn git_init(dir: &Path) {
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run git init in {}: {e}", dir.display()));
    assert!(
        status.success(),
        "git init in {} failed: {status}",
        dir.display()
    );
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn write(path: &Path, contents: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let mut f = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    f.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A real agent that speaks the Agent Client Protocol, as `.ci/acp.sh` installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpAgent {
    /// `gemini --acp` (Gemini CLI, the same install as [`RealAgent::Gemini`]).
    Gemini,
    /// `claude-agent-acp` (Claude Code through Zed's ACP adapter; it bundles its own Claude).
    Claude,
}

impl AcpAgent {
    /// Its built-in kind: `gemini-acp`, `claude-acp`.
    pub fn kind(self) -> &'static str {
        match self {
            AcpAgent::Gemini => "gemini-acp",
            AcpAgent::Claude => "claude-acp",
        }
    }

    /// The installed program, if any.
    pub fn binary(self) -> Option<PathBuf> {
        match self {
            AcpAgent::Gemini => RealAgent::Gemini.binary(),
            AcpAgent::Claude => {
                let p =
                    RealAgent::agents_dir().join("claude-acp/node_modules/.bin/claude-agent-acp");
                is_executable(&p).then_some(p)
            }
        }
    }

    /// The installed program, or `None` (and a "skipping" line) when it is missing; with
    /// `CI=true` a missing agent fails the test instead.
    pub fn require(self) -> Option<PathBuf> {
        let found = self.binary();
        if found.is_none() {
            assert!(
                !ci(),
                "the real {} agent is required when CI=true but is not installed in {}: run \
                 `bash .ci/agents.sh` and `bash .ci/acp.sh`",
                self.kind(),
                RealAgent::agents_dir().display()
            );
            eprintln!("skipping: the real {} agent is not installed", self.kind());
        }
        found
    }

    /// Write into `home` what the agent needs to work in `workspace` against `server`, and
    /// return how to start it (as for [`RealAgent::prepare`]).
    pub fn prepare(self, home: &Path, workspace: &Path, server: &ModelServer) -> AgentSetup {
        match self {
            AcpAgent::Gemini => {
                let mut setup = RealAgent::Gemini.prepare(home, workspace, server);
                setup.command.push("--acp".into());
                setup
            }
            AcpAgent::Claude => {
                let bin = self.binary().expect("claude-agent-acp is installed");
                // The same home, trust and model server as Claude Code's own.
                let mut setup = RealAgent::Claude.prepare(home, workspace, server);
                // IS_SANDBOX (set on this project's machines) makes claude-agent-acp start
                // Claude with --dangerously-skip-permissions, which Claude refuses as root: the
                // session could not even be created. The agent must not see it.
                setup.command = ["env", "-u", "IS_SANDBOX"]
                    .into_iter()
                    .map(String::from)
                    .chain([bin.to_string_lossy().into_owned()])
                    .collect();
                setup
            }
        }
    }
}
