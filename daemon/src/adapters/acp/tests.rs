//! Tests of the ACP adapter with real processes: the real agents (`gemini --acp`,
//! `claude-agent-acp`), each with its own HOME and pointed at the project's loopback model server
//! (`tests/model-server/server.py`), and a small scripted fake agent that misbehaves on purpose.
//!
//! The real agents are installed by CI into `~/.cache/orch-ci/agents` (`.ci/acp.sh` for
//! claude-agent-acp); without them these tests fail under `CI=true` and are skipped elsewhere.
//! Nothing reaches a real service: every agent's base URL is the loopback server. Conditions are
//! awaited with deadlines, never fixed sleeps.

use std::collections::BTreeSet;
use std::process::Child;
use std::sync::Condvar;

use tempfile::TempDir;

use super::*;

/// Longest wait for anything a real agent should do (node agents start slowly on a busy
/// machine).
const PATIENCE: Duration = Duration::from_secs(90);

fn ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// Whether `path` is there to run; under CI a missing one is a failure, elsewhere the test is
/// skipped.
fn require(path: &Path, what: &str) -> bool {
    if path.is_file() {
        return true;
    }
    assert!(
        !ci(),
        "{what} is required when CI=true but {} is missing (.ci/acp.sh installs it)",
        path.display()
    );
    eprintln!("skipping: {what} is not installed at {}", path.display());
    false
}

/// Where CI installs the real agents.
fn agents_dir() -> PathBuf {
    match std::env::var_os("ORCH_AGENTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/orch-ci/agents"),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock Python's `time.monotonic_ns` reads, so times
/// taken in the fake agent and here compare.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the observer was told.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a test's record; size does not matter
enum Seen {
    Acp(AcpEvent),
    Exited(Option<i32>),
}

/// An observer that records everything and wakes waiters; optionally forwards permission
/// requests to a channel, as the runtime would.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    changed: Condvar,
    /// Output callbacks so far.
    outputs: Mutex<u64>,
    /// Where permission requests go, with the time they arrived.
    permissions: Mutex<Option<mpsc::Sender<(PermissionId, u64)>>>,
}

impl TerminalObserver for Recorder {
    fn output(&self, _id: &str) {
        *lock(&self.outputs) += 1;
        self.changed.notify_all();
    }

    fn exited(&self, _id: &str, exit_code: Option<i32>) {
        lock(&self.seen).push(Seen::Exited(exit_code));
        self.changed.notify_all();
    }
}

impl AcpObserver for Recorder {
    fn acp(&self, _id: &str, event: AcpEvent) {
        if let AcpEvent::PermissionRequested(request) = &event {
            let now = monotonic_ns();
            if let Some(tx) = lock(&self.permissions).as_ref() {
                let _ = tx.send((request.id, now));
            }
        }
        lock(&self.seen).push(Seen::Acp(event));
        self.changed.notify_all();
    }
}

/// Lock, ignoring poison: a failed assertion on the test's thread must not make the adapter's
/// threads panic too.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A started agent, its observer, and what a failed wait shows.
struct Run {
    agent: Arc<AcpAgent>,
    rec: Arc<Recorder>,
    /// Events already looked at by `next`.
    cursor: usize,
}

impl Run {
    fn start(spec: AcpSpec) -> Self {
        let rec = Arc::new(Recorder::default());
        let agent = AcpAgent::start(spec, rec.clone()).unwrap_or_else(|err| panic!("start: {err}"));
        Self {
            agent,
            rec,
            cursor: 0,
        }
    }

    fn screen_text(&self) -> String {
        self.agent.screen(200).unwrap().lines.join("\n")
    }

    fn events(&self) -> Vec<Seen> {
        self.rec.seen.lock().unwrap().clone()
    }

    /// Wait until `find` picks something from the events after the cursor; the cursor moves
    /// past it.
    fn next<T>(&mut self, what: &str, find: impl Fn(&Seen) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = self.rec.seen.lock().unwrap();
        loop {
            if let Some((i, found)) = seen
                .iter()
                .enumerate()
                .skip(self.cursor)
                .find_map(|(i, s)| find(s).map(|f| (i, f)))
            {
                self.cursor = i + 1;
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let events: Vec<String> = seen
                    .iter()
                    .skip(self.cursor)
                    .map(|s| format!("{s:?}").chars().take(300).collect())
                    .collect();
                drop(seen);
                panic!(
                    "no {what} in time; events since the last one:\n{}\nscreen:\n{}",
                    events.join("\n"),
                    self.screen_text()
                );
            }
            seen = self.rec.changed.wait_timeout(seen, left).unwrap().0;
        }
    }

    fn ready(&mut self) -> Ready {
        self.next("ready", |s| match s {
            Seen::Acp(AcpEvent::Ready(ready)) => Some(ready.clone()),
            Seen::Acp(AcpEvent::Failed(why)) => panic!("the agent failed: {why}"),
            _ => None,
        })
    }

    fn turn_ended(&mut self, turn: TurnId) -> TurnEnd {
        self.next("the turn's end", |s| match s {
            Seen::Acp(AcpEvent::TurnEnded { turn: t, end }) if *t == turn => Some(end.clone()),
            _ => None,
        })
    }

    fn permission(&mut self) -> PermissionRequest {
        self.next("a permission request", |s| match s {
            Seen::Acp(AcpEvent::PermissionRequested(r)) => Some(r.clone()),
            _ => None,
        })
    }

    fn exited(&mut self) -> Option<i32> {
        self.next("the exit", |s| match s {
            Seen::Exited(code) => Some(*code),
            _ => None,
        })
    }

    fn started(&self, status: PromptStatus) -> TurnId {
        match status {
            PromptStatus::Started { turn } | PromptStatus::Queued { turn, .. } => turn,
        }
    }

    /// Wait until the screen shows `text`.
    fn wait_screen(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.screen_text().contains(text) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{text:?} not on the screen in time; it shows:\n{}",
                self.screen_text()
            );
            let outputs = self.rec.outputs.lock().unwrap();
            let _ = self
                .rec
                .changed
                .wait_timeout(outputs, left.min(Duration::from_millis(200)));
        }
    }

    /// Agent message text of the events so far.
    fn message_text(&self) -> String {
        self.events()
            .iter()
            .filter_map(|s| match s {
                Seen::Acp(AcpEvent::Update {
                    update: SessionUpdate::AgentMessage { text, .. },
                    ..
                }) => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The kinds of session updates seen, by name.
    fn update_kinds(&self) -> BTreeSet<String> {
        self.events()
            .iter()
            .filter_map(|s| match s {
                Seen::Acp(AcpEvent::Update { update, .. }) => Some(
                    match update {
                        SessionUpdate::UserMessage { .. } => "user_message_chunk",
                        SessionUpdate::AgentMessage { .. } => "agent_message_chunk",
                        SessionUpdate::Thought { .. } => "agent_thought_chunk",
                        SessionUpdate::ToolCall(_) => "tool_call",
                        SessionUpdate::ToolCallUpdate(_) => "tool_call_update",
                        SessionUpdate::Plan(_) => "plan",
                        SessionUpdate::AvailableCommands(_) => "available_commands_update",
                        SessionUpdate::CurrentMode { .. } => "current_mode_update",
                        SessionUpdate::SessionInfo { .. } => "session_info_update",
                        SessionUpdate::Other { kind } => kind,
                    }
                    .to_string(),
                ),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.agent.close();
    }
}

/// A terminal spec in `dir` for `command`.
fn terminal_spec(
    dir: &Path,
    cwd: &Path,
    command: Vec<String>,
    env: Vec<(String, String)>,
) -> TerminalSpec {
    TerminalSpec {
        id: "a-1".to_string(),
        name: "agent".to_string(),
        command,
        cwd: cwd.to_path_buf(),
        env,
        cols: 100,
        rows: 30,
        log_path: dir.join("logs/a-1.log"),
        scrollback: 1000,
        log_limit: 8 << 20,
    }
}

/// The project's loopback model server, killed on drop.
struct ModelServer {
    child: Child,
    port: u16,
    /// Holds the server's request log.
    _dir: TempDir,
}

impl ModelServer {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/model-server/server.py")
    }

    fn start() -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("model.log");
        let mut child = std::process::Command::new("python3")
            .arg(Self::script())
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the model server");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the model server said {first:?}"));
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real agent ready to start: its HOME, its working directory, its spec.
struct Setup {
    home: TempDir,
    work: TempDir,
    spec: AcpSpec,
}

impl Setup {
    /// Environment every real agent gets: its own HOME and XDG directories, nothing of the
    /// machine's user.
    fn base_env(home: &Path) -> Vec<(String, String)> {
        let h = home.to_string_lossy().into_owned();
        vec![
            ("HOME".into(), h.clone()),
            ("XDG_CONFIG_HOME".into(), format!("{h}/.config")),
            ("XDG_CACHE_HOME".into(), format!("{h}/.cache")),
            ("XDG_DATA_HOME".into(), format!("{h}/.local/share")),
            ("XDG_STATE_HOME".into(), format!("{h}/.local/state")),
            ("NO_UPDATE_NOTIFIER".into(), "1".into()),
        ]
    }

    fn new(command: Vec<String>, env: impl FnOnce(&Path, &Path) -> Vec<(String, String)>) -> Self {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let cwd = work.path().join("project");
        std::fs::create_dir_all(&cwd).unwrap();
        let cwd = cwd.canonicalize().unwrap();
        let mut vars = Self::base_env(home.path());
        vars.extend(env(home.path(), &cwd));
        let spec = AcpSpec::new(terminal_spec(work.path(), &cwd, command, vars));
        Self { home, work, spec }
    }

    fn cwd(&self) -> PathBuf {
        self.spec.terminal.cwd.clone()
    }

    fn gemini(server: &ModelServer) -> Option<Self> {
        let bin = agents_dir().join("gemini/node_modules/.bin/gemini");
        if !require(&bin, "gemini (Gemini CLI 0.61.0)") {
            return None;
        }
        let url = server.url();
        Some(Self::new(
            vec![bin.to_string_lossy().into_owned(), "--acp".into()],
            |home, cwd| {
                let dir = home.join(".gemini");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    dir.join("settings.json"),
                    json!({"security": {"auth": {"selectedType": "gemini-api-key"}}}).to_string(),
                )
                .unwrap();
                std::fs::write(
                    dir.join("trustedFolders.json"),
                    json!({cwd.to_string_lossy(): "TRUST_FOLDER"}).to_string(),
                )
                .unwrap();
                vec![
                    ("GEMINI_API_KEY".into(), "dummy".into()),
                    ("GOOGLE_GEMINI_BASE_URL".into(), url),
                ]
            },
        ))
    }

    fn claude(server: &ModelServer) -> Option<Self> {
        let bin = agents_dir().join("claude-acp/node_modules/.bin/claude-agent-acp");
        if !require(&bin, "claude-agent-acp") {
            return None;
        }
        let url = server.url();
        // IS_SANDBOX (set on this project's machines) makes claude-agent-acp 0.101.0 start
        // Claude with --dangerously-skip-permissions, which Claude refuses to do as root: the
        // session cannot even be created. The agent must not see it.
        let command = ["env", "-u", "IS_SANDBOX"]
            .into_iter()
            .map(str::to_string)
            .chain([bin.to_string_lossy().into_owned()])
            .collect();
        let mut setup = Self::new(command, |home, cwd| {
            std::fs::write(
                home.join(".claude.json"),
                json!({"hasCompletedOnboarding": true, "theme": "dark",
                       "projects": {cwd.to_string_lossy(): {"hasTrustDialogAccepted": true}}})
                .to_string(),
            )
            .unwrap();
            vec![
                ("ANTHROPIC_AUTH_TOKEN".into(), "dummy".into()),
                ("ANTHROPIC_BASE_URL".into(), url),
                ("DISABLE_AUTOUPDATER".into(), "1".into()),
                (
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                    "1".into(),
                ),
            ]
        });
        // Its default mode ("auto") lets a classifier decide instead of asking; "default"
        // ("Manual") asks before every command.
        setup.spec.mode = Some("default".into());
        Some(setup)
    }
}

/// What a real agent is expected to do where agents differ.
struct Expected {
    /// The option ids it offers when it asks to run `touch x`.
    options: &'static [&'static str],
    /// Why `session/load` of its session may fail in a new process (it may also work).
    load_fails: Option<&'static str>,
}

/// The whole life of a real agent: start, a reply, a permission allowed, a permission cancelled,
/// a kill mid-turn, and a restart that loads the session.
fn real_agent_scenario(setup: Setup, expected: Expected) {
    let cwd = setup.cwd();
    let mut run = Run::start(setup.spec.clone());
    let ready = run.ready();
    assert!(!ready.session_id.is_empty());
    assert_eq!(ready.origin, SessionOrigin::New);
    assert_eq!(
        run.agent.session_id().as_deref(),
        Some(ready.session_id.as_str())
    );
    assert_eq!(run.agent.status().phase, AcpPhase::Idle);
    eprintln!("ready: {ready:?}");

    // A reply streams onto the screen; the turn ends end_turn.
    let turn = run.started(run.agent.prompt("@reply(Hello from the model)").unwrap());
    assert_eq!(turn, 1);
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    assert!(
        run.message_text().contains("Hello from the model"),
        "{}",
        run.message_text()
    );
    run.wait_screen("Hello from the model");
    run.wait_screen("› @reply(Hello from the model)");

    // A shell command asks first; allowed, it runs.
    let turn = run.started(run.agent.prompt("@bash(touch x)").unwrap());
    let ask = run.permission();
    eprintln!("permission request: {ask:?}");
    let ids: Vec<&str> = ask.options.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, expected.options);
    assert_eq!(ask.turn, Some(turn));
    assert_eq!(ask.title, "touch x");
    assert_eq!(run.agent.status().phase, AcpPhase::Waiting);
    run.wait_screen("? Allow touch x?");
    let allow = ask.options.iter().find(|o| o.kind == "allow_once").unwrap();
    run.agent.answer_permission(ask.id, &allow.id).unwrap();
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    assert!(cwd.join("x").exists(), "touch x did not run");
    run.wait_screen(&format!("? touch x → {}", allow.name));
    run.wait_screen("✓ touch x (completed)");
    run.wait_screen("Tool finished");

    // Another, cancelled while the request is open: answered cancelled, reported dismissed.
    let turn = run.started(run.agent.prompt("@bash(touch y)").unwrap());
    let ask = run.permission();
    assert!(run.agent.cancel().unwrap());
    let dismissed = run.next("the dismissal", |s| match s {
        Seen::Acp(AcpEvent::PermissionDismissed { id, why }) => Some((*id, why.clone())),
        _ => None,
    });
    assert_eq!(dismissed, (ask.id, "the turn was cancelled".to_string()));
    assert_eq!(
        run.turn_ended(turn),
        TurnEnd::Stopped(StopReason::Cancelled)
    );
    assert!(!cwd.join("y").exists());
    run.wait_screen("? touch y → dismissed: the turn was cancelled");
    assert_eq!(run.agent.status().phase, AcpPhase::Idle);

    // Killed mid-turn: the turn fails, the exit is reported.
    let turn = run.started(
        run.agent
            .prompt("@slow(30) @reply(never finished)")
            .unwrap(),
    );
    // The model takes 30 s to answer: the turn is still running when the agent dies.
    run.agent.signal(true).unwrap();
    match run.turn_ended(turn) {
        TurnEnd::Failed(why) => assert!(
            why.starts_with("the agent was killed by a signal during the turn"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(run.exited(), None);
    assert!(!run.agent.alive());
    run.wait_screen("[the agent was killed by a signal]");
    assert!(matches!(
        run.agent.prompt("more"),
        Err(AcpError::Ended { .. })
    ));
    eprintln!("update kinds: {:?}", run.update_kinds());
    eprintln!("screen:\n{}", run.screen_text());
    drop(run);

    // A new process continues the session: the conversation is replayed onto the screen.
    let mut spec = setup.spec.clone();
    spec.resume_session = Some(ready.session_id.clone());
    let mut run = Run::start(spec);
    let resumed = run.ready();
    let loaded = resumed.origin == SessionOrigin::Loaded;
    eprintln!("restart: {:?}, {:?}", resumed.origin, resumed.resume_error);
    match expected.load_fails {
        Some(why) if !loaded => {
            // A new session instead, and the reason on the screen and in the event.
            assert_ne!(resumed.session_id, ready.session_id);
            assert_eq!(resumed.origin, SessionOrigin::New);
            let error = resumed.resume_error.clone().unwrap_or_default();
            assert!(error.contains(why), "{error}");
            run.wait_screen(why);
        }
        _ => {
            assert_eq!(resumed.session_id, ready.session_id, "{resumed:?}");
            assert_eq!(resumed.origin, SessionOrigin::Loaded, "{resumed:?}");
            assert_eq!(resumed.resume_error, None);
            run.wait_screen("Hello from the model");
        }
    }
    let turn = run.started(run.agent.prompt("@reply(after the restart)").unwrap());
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    run.wait_screen("after the restart");
    eprintln!("screen after the restart:\n{}", run.screen_text());
    drop(setup.home);
    drop(setup.work);
}

#[test]
fn gemini_acp() {
    let server = ModelServer::start();
    let Some(setup) = Setup::gemini(&server) else {
        return;
    };
    real_agent_scenario(
        setup,
        Expected {
            options: &["proceed_always", "proceed_once", "cancel"],
            // Gemini CLI 0.61.0 offers loadSession, but its session/load races with itself: the
            // new process's start-up may rewrite the session's record before the load reads it.
            load_fails: Some("No previous sessions found for this project."),
        },
    );
}

/// Gemini CLI with no auth type chosen in its settings, and orch told to authenticate with its
/// API-key method (the key comes from GEMINI_API_KEY): `authenticate` against the real agent.
#[test]
fn gemini_acp_authenticates() {
    let server = ModelServer::start();
    let Some(mut setup) = Setup::gemini(&server) else {
        return;
    };
    let settings = setup.home.path().join(".gemini/settings.json");
    std::fs::remove_file(&settings).unwrap();
    setup.spec.auth_method = Some("gemini-api-key".into());
    let mut run = Run::start(setup.spec.clone());
    run.ready();
    let turn = run.started(run.agent.prompt("@reply(authenticated)").unwrap());
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    run.wait_screen("authenticated");
    // Gemini keeps the choice in its settings.
    let saved = std::fs::read_to_string(&settings).unwrap();
    assert!(saved.contains("gemini-api-key"), "{saved}");
}

#[test]
fn claude_agent_acp() {
    let server = ModelServer::start();
    let Some(setup) = Setup::claude(&server) else {
        return;
    };
    real_agent_scenario(
        setup,
        Expected {
            options: &["allow-once", "reject"],
            load_fails: None,
        },
    );
}

/// A fake ACP agent in Python, scripted by its arguments (how it starts) and by its prompts
/// (a JSON list of actions; any other prompt is echoed).
const FAKE_AGENT: &str = r#"
import json, sys, time
args = sys.argv[1:]
pending = []
state = {"authed": False, "cancelled": False, "next": 1000}

def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

def read():
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    return json.loads(line)

def note(m):
    if m.get("method") == "session/cancel":
        state["cancelled"] = True
    else:
        pending.append(m)

def call(method, params):
    state["next"] += 1
    i = state["next"]
    send({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
    while True:
        m = read()
        if m.get("id") == i and "method" not in m:
            return m
        note(m)

def say(text):
    send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "fake",
          "update": {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}}})

if "--exit-at-start" in args:
    sys.stderr.write("fake: loading the model\nfake: cannot start: no such model\n")
    sys.exit(3)
if "--garbage" in args:
    for i in range(5):
        print("% garbage", i, flush=True)
    print('{"jsonrpc": "2.0", "id": 99, "result": {}}', flush=True)
if "--silent" in args or "--garbage" in args:
    while True:
        time.sleep(60)

while True:
    m = pending.pop(0) if pending else read()
    method, i = m.get("method"), m.get("id")
    if method == "initialize":
        auth = [{"id": "login", "name": "Log in with a browser"},
                {"id": "api-key", "name": "API key", "description": "from FAKE_KEY"}]
        send({"jsonrpc": "2.0", "id": i, "result": {"protocolVersion": 1,
              "agentInfo": {"name": "fake", "version": "1"},
              "agentCapabilities": {}, "authMethods": auth if "--auth" in args else []}})
    elif method == "authenticate":
        state["authed"] = m["params"]["methodId"] == "api-key"
        send({"jsonrpc": "2.0", "id": i, "result": {}})
    elif method == "session/new":
        if "--auth" in args and not state["authed"]:
            send({"jsonrpc": "2.0", "id": i, "error": {"code": -32000, "message": "Authentication required"}})
        else:
            send({"jsonrpc": "2.0", "id": i, "result": {"sessionId": "fake"}})
    elif method == "session/cancel":
        state["cancelled"] = True
    elif method == "session/prompt":
        state["cancelled"] = False
        text = m["params"]["prompt"][0]["text"]
        try:
            actions = json.loads(text)
        except ValueError:
            actions = [{"say": "echo: " + text}]
        stop = "end_turn"
        for a in actions:
            if "say" in a:
                say(a["say"])
            elif "raw" in a:
                sys.stdout.write(a["raw"] + "\n"); sys.stdout.flush()
            elif "call" in a:
                r = call(a["call"], a.get("params", {}))
                say(json.dumps(r.get("result", r.get("error"))) + "\n")
            elif "exit" in a:
                sys.exit(a["exit"])
            elif "flood" in a:
                for k in range(a["flood"]):
                    say("chunk %d\n" % k)
            elif "stderr" in a:
                block = "e" * 65535 + "\n"
                for k in range(a["stderr"] // 65536):
                    sys.stderr.write(block)
                sys.stderr.flush()
            elif "huge" in a:
                sys.stdout.write(json.dumps({"jsonrpc": "2.0", "method": "session/update",
                    "params": {"x": "a" * a["huge"]}}) + "\n"); sys.stdout.flush()
            elif "bench" in a:
                times = []
                for k in range(a["bench"]):
                    state["next"] += 1
                    rid = state["next"]
                    t0 = time.monotonic_ns()
                    send({"jsonrpc": "2.0", "id": rid, "method": "session/request_permission", "params": {
                        "sessionId": "fake", "toolCall": {"toolCallId": "b%d" % k, "title": "bench %d" % k},
                        "options": [{"optionId": "ok", "name": "OK", "kind": "allow_once"}], "_meta": {"t": t0}}})
                    while True:
                        r = read()
                        t1 = time.monotonic_ns()
                        if r.get("id") == rid and "method" not in r:
                            break
                        note(r)
                    times.append([t0, t1])
                say("BENCH " + json.dumps(times) + "\n")
            elif "ask" in a:
                r = call("session/request_permission", {"sessionId": "fake",
                    "toolCall": {"toolCallId": "t1", "title": a["ask"], "kind": "execute"},
                    "options": [{"optionId": "yes", "name": "Yes", "kind": "allow_once"},
                                {"optionId": "no", "name": "No", "kind": "reject_once"}]})
                say("outcome: " + json.dumps(r["result"]["outcome"]) + "\n")
            elif "sleep" in a:
                time.sleep(a["sleep"])
        if state["cancelled"]:
            stop = "cancelled"
        send({"jsonrpc": "2.0", "id": i, "result": {"stopReason": stop}})
    elif i is not None:
        send({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "no " + str(method)}})
"#;

/// A fake agent's spec, or `None` when python3 is missing (skipped outside CI).
fn fake(args: &[&str]) -> Option<(TempDir, AcpSpec)> {
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
    if !require(&python, "python3") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake_agent.py");
    std::fs::write(&script, FAKE_AGENT).unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut command = vec![
        python.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
    ];
    command.extend(args.iter().map(|a| a.to_string()));
    let mut spec = AcpSpec::new(terminal_spec(dir.path(), &cwd, command, Vec::new()));
    spec.handshake_timeout = Duration::from_secs(2);
    Some((dir, spec))
}

fn failed(run: &mut Run) -> String {
    run.next("a failure", |s| match s {
        Seen::Acp(AcpEvent::Failed(why)) => Some(why.clone()),
        _ => None,
    })
}

#[test]
fn an_agent_that_prints_garbage_and_never_answers_fails_cleanly() {
    let Some((_dir, spec)) = fake(&["--garbage"]) else {
        return;
    };
    let started = Instant::now();
    let mut run = Run::start(spec);
    let problem = run.next("a problem", |s| match s {
        Seen::Acp(AcpEvent::Problem(p)) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        problem,
        "the agent sent a malformed message (not JSON: expected value at line 1 column 1): % garbage 0"
    );
    let problem = run.next("the stray answer", |s| match s {
        Seen::Acp(AcpEvent::Problem(p)) if p.contains("99") => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        problem,
        "the agent answered request 99, which orch did not send or was already answered"
    );
    assert_eq!(
        failed(&mut run),
        "the agent did not answer initialize within 2 s"
    );
    assert_eq!(run.exited(), None, "killed");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    run.wait_screen("orch: the agent did not answer initialize within 2 s");
    assert_eq!(run.agent.status().phase, AcpPhase::Exited);
}

#[test]
fn an_agent_that_exits_at_start_says_why() {
    let Some((dir, spec)) = fake(&["--exit-at-start"]) else {
        return;
    };
    let mut run = Run::start(spec);
    // A prompt given before the session exists is accepted, and ends with the agent.
    let turn = run.started(run.agent.prompt("hello").unwrap());
    assert_eq!(
        failed(&mut run),
        "the agent exited with code 3; its last words on stderr: fake: loading the model | fake: cannot start: no such model before its session was ready"
    );
    assert!(
        matches!(run.turn_ended(turn), TurnEnd::Failed(why) if why.ends_with("before the turn began"))
    );
    assert_eq!(run.exited(), Some(3));
    let stderr = std::fs::read_to_string(dir.path().join("logs/a-1.log.stderr")).unwrap();
    assert!(stderr.contains("no such model"), "{stderr}");
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = AcpSpec::new(terminal_spec(
        dir.path(),
        dir.path(),
        vec!["/nonexistent/agent".into()],
        Vec::new(),
    ));
    match AcpAgent::start(spec, Arc::new(Recorder::default())) {
        Err(BackendError::Spawn { program, detail }) => {
            assert_eq!(program, "/nonexistent/agent");
            assert!(detail.contains("No such file"), "{detail}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("started"),
    }
}

/// Threads of this process named `acp-<job>-<id>`.
fn threads_of(id: &str) -> Vec<String> {
    let suffix = format!("-{id}");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .filter(|name| name.starts_with("acp-") && name.ends_with(&suffix))
        .collect()
}

#[test]
fn a_quiet_agent_keeps_one_thread_and_its_view_sleeps() {
    let Some((_dir, mut spec)) = fake(&[]) else {
        return;
    };
    // Its own id: threads are found by name.
    spec.terminal.id = "q2".to_string();
    let mut run = Run::start(spec);
    run.ready();
    let turn = run.started(run.agent.prompt("hello there").unwrap());
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(threads_of("q2") == ["acp-io-q2"] && run.agent.shared.lock_view().emulator.is_asleep())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "threads {:?}, view asleep {}",
            threads_of("q2"),
            run.agent.shared.lock_view().emulator.is_asleep()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Asleep, the view still answers with what was drawn, and a new turn draws on it.
    assert!(
        run.screen_text().contains("hello there"),
        "{}",
        run.screen_text()
    );
    let turn = run.started(run.agent.prompt("second prompt").unwrap());
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    run.wait_screen("second prompt");
    assert!(run.screen_text().contains("hello there"));
    // The end is seen and reported without a waiting thread; once closed, none is left.
    let pid = run.agent.shared.pid;
    run.agent.close().unwrap();
    while !threads_of("q2").is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "threads {:?} after close",
            threads_of("q2")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fake_agent_protocol_paths() {
    let Some((dir, spec)) = fake(&["--auth"]) else {
        return;
    };
    let cwd = spec.terminal.cwd.canonicalize().unwrap();
    std::fs::write(cwd.join("inside.txt"), "one\ntwo\n").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), cwd.join("link")).unwrap();
    let mut run = Run::start(spec);
    // It required authentication; orch picked the method that needs no browser.
    let ready = run.ready();
    assert_eq!(ready.session_id, "fake");
    run.wait_screen("[authenticating with API key]");

    // File requests, confined to the cwd.
    let p = |name: &str| cwd.join(name).to_string_lossy().into_owned();
    let actions = json!([
        {"call": "fs/read_text_file", "params": {"sessionId": "fake", "path": p("inside.txt"), "line": 2}},
        {"call": "fs/read_text_file", "params": {"sessionId": "fake", "path": p("link")}},
        {"call": "fs/write_text_file", "params": {"sessionId": "fake", "path": p("new/file.txt"), "content": "written"}},
        {"call": "fs/write_text_file", "params": {"sessionId": "fake", "path": p("link"), "content": "pwned"}},
        {"call": "terminal/create", "params": {"sessionId": "fake", "command": "ls"}},
    ]);
    let turn = run.started(run.agent.prompt(&actions.to_string()).unwrap());
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    let outside = format!(
        "{} is outside the agent's working directory {}",
        p("link"),
        cwd.display()
    );
    let expected = [
        json!({"content": "two\n"}),
        json!({"code": -32602, "message": outside}),
        json!(null),
        json!({"code": -32602, "message": outside}),
        json!({"code": -32601, "message": "orch does not offer terminal/create"}),
    ];
    let got: Vec<Value> = run
        .message_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        std::fs::read_to_string(cwd.join("new/file.txt")).unwrap(),
        "written"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("outside.txt")).unwrap(),
        "secret"
    );

    // Typing into the terminal: Enter sends the line as a prompt.
    run.agent.write(b"hello there").unwrap();
    run.wait_screen("› hello there");
    run.agent.write(b"\r").unwrap();
    let (turn, text) = run.next("the typed turn", |s| match s {
        Seen::Acp(AcpEvent::TurnStarted { turn, text }) => Some((*turn, text.clone())),
        _ => None,
    });
    assert_eq!(text, "hello there");
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    run.wait_screen("echo: hello there");

    // Esc while a permission is open cancels the turn and dismisses the request.
    let turn = run.started(
        run.agent
            .prompt(&json!([{"ask": "rm -rf /"}]).to_string())
            .unwrap(),
    );
    let ask = run.permission();
    assert_eq!(ask.title, "rm -rf /");
    run.agent.write(b"\x1b").unwrap();
    assert_eq!(
        run.turn_ended(turn),
        TurnEnd::Stopped(StopReason::Cancelled)
    );
    run.wait_screen(r#"outcome: {"outcome": "cancelled"}"#);
    assert!(run.events().iter().any(|s| matches!(s,
        Seen::Acp(AcpEvent::PermissionDismissed { id, .. }) if *id == ask.id)));

    // Exit mid-turn.
    let turn = run.started(
        run.agent
            .prompt(&json!([{"say": "about to die"}, {"exit": 1}]).to_string())
            .unwrap(),
    );
    assert_eq!(
        run.turn_ended(turn),
        TurnEnd::Failed("the agent exited with code 1 during the turn".into())
    );
    assert_eq!(run.exited(), Some(1));
    run.wait_screen("[the agent exited with code 1]");
    let log = std::fs::read_to_string(dir.path().join("logs/a-1.log")).unwrap();
    assert!(
        log.contains("about to die"),
        "the output log has the screen's output"
    );
}

#[test]
fn a_flood_of_updates_and_a_huge_line_are_survived() {
    let Some((dir, mut spec)) = fake(&[]) else {
        return;
    };
    spec.terminal.log_limit = 1 << 20;
    let mut run = Run::start(spec);
    run.ready();
    let started = Instant::now();
    let actions = json!([
        {"stderr": 20 << 20},
        {"flood": 50000},
        {"huge": LINE_LIMIT + 10},
        {"raw": "{\"jsonrpc\": \"2.0\", \"method\": \"session/update\", \"params\": {\"update\": {\"sessionUpdate\": \"mystery\"}}}"},
        {"say": "still here"},
    ]);
    let turn = run.started(run.agent.prompt(&actions.to_string()).unwrap());
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    let elapsed = started.elapsed();
    eprintln!(
        "50000 updates and a {} MiB line in {elapsed:?}",
        (LINE_LIMIT + 10) >> 20
    );
    let problems: Vec<String> = run
        .events()
        .iter()
        .filter_map(|s| match s {
            Seen::Acp(AcpEvent::Problem(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("more than the 16777216 orch takes; it was dropped"),
        "{problems:?}"
    );
    assert!(run.update_kinds().contains("mystery"));
    run.wait_screen("still here");
    assert!(run.screen_text().contains("chunk 49999"));
    let snapshot = run.agent.screen(5000).unwrap();
    assert!(
        snapshot.lines.len() <= 1000 + 30,
        "history is bounded: {}",
        snapshot.lines.len()
    );
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    // 20 MiB of stderr and the screen's output: each log and its rotation within the limit.
    assert!(dir.path().join("logs/a-1.log.stderr.1").exists(), "rotated");
    for log in ["a-1.log", "a-1.log.1", "a-1.log.stderr", "a-1.log.stderr.1"] {
        let len = std::fs::metadata(dir.path().join("logs").join(log)).map_or(0, |m| m.len());
        assert!(len <= 1 << 20, "{log} has {len} bytes");
    }
}

#[test]
fn prompts_queue_behind_the_running_turn() {
    let Some((_dir, spec)) = fake(&[]) else {
        return;
    };
    let mut run = Run::start(spec);
    let first = run
        .agent
        .prompt(&json!([{"sleep": 0.3}, {"say": "first"}]).to_string())
        .unwrap();
    assert_eq!(
        first,
        PromptStatus::Queued {
            turn: 1,
            position: 1
        },
        "before ready"
    );
    run.ready();
    let second = run.agent.prompt("second").unwrap();
    assert_eq!(
        second,
        PromptStatus::Queued {
            turn: 2,
            position: 1
        }
    );
    assert_eq!(run.agent.status().queued, 1);
    assert_eq!(run.turn_ended(1), TurnEnd::Stopped(StopReason::EndTurn));
    assert_eq!(run.turn_ended(2), TurnEnd::Stopped(StopReason::EndTurn));
    assert_eq!(run.message_text(), "firstecho: second");
    run.agent.close().unwrap();
    run.agent.close().unwrap();
    assert!(matches!(run.agent.prompt("x"), Err(AcpError::Ended { .. })));
    assert!(matches!(
        run.agent.write(b"x"),
        Err(BackendError::Gone { .. })
    ));
    assert_eq!(run.exited(), None);
}

/// Percentiles of a sample in microseconds.
fn describe(mut micros: Vec<f64>) -> String {
    micros.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.0} us, p90 {:.0} us, max {:.0} us",
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

/// The latency the adapter adds to a permission request (agent → runtime callback) and to its
/// answer (runtime call → agent), against a minimal raw ACP client reading and writing the same
/// fake agent's pipes in this process.
#[test]
fn permission_round_trip_latency() {
    const N: usize = 200;
    let Some((_dir, spec)) = fake(&[]) else {
        return;
    };

    // The raw client: a thread reading lines and answering each request at once.
    let raw = {
        use std::io::{BufRead, Write};
        let mut child = std::process::Command::new(&spec.terminal.command[0])
            .args(&spec.terminal.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut send = |v: Value| {
            stdin.write_all(format!("{v}\n").as_bytes()).unwrap();
            stdin.flush().unwrap();
        };
        send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}),
        );
        send(
            json!({"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {"cwd": "/", "mcpServers": []}}),
        );
        send(
            json!({"jsonrpc": "2.0", "id": 3, "method": "session/prompt", "params": {"sessionId": "fake",
            "prompt": [{"type": "text", "text": json!([{"bench": N}]).to_string()}]}}),
        );
        let mut to_client = Vec::new();
        let mut answered_at = Vec::new();
        let result = loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the fake agent ended"
            );
            let now = monotonic_ns();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["method"] == "session/request_permission" {
                to_client.push((now - v["params"]["_meta"]["t"].as_u64().unwrap()) as f64 / 1e3);
                let t = monotonic_ns();
                send(
                    json!({"jsonrpc": "2.0", "id": v["id"], "result": {"outcome": {"outcome": "selected", "optionId": "ok"}}}),
                );
                answered_at.push(t);
            } else if let Some(text) = v["params"]["update"]["content"]["text"].as_str() {
                if let Some(times) = text.strip_prefix("BENCH ") {
                    break serde_json::from_str::<Vec<(u64, u64)>>(times.trim()).unwrap();
                }
            }
        };
        let to_agent: Vec<f64> = result
            .iter()
            .zip(&answered_at)
            .map(|((_, recv), sent)| (recv - sent) as f64 / 1e3)
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        (to_client, to_agent)
    };

    // The adapter, answered from another thread as the runtime would.
    let (tx, rx) = mpsc::channel();
    let rec = Arc::new(Recorder::default());
    *rec.permissions.lock().unwrap() = Some(tx);
    let agent = AcpAgent::start(spec, rec.clone()).unwrap();
    let mut run = Run {
        agent,
        rec,
        cursor: 0,
    };
    run.ready();
    let answerer = {
        let agent = run.agent.clone();
        thread::spawn(move || {
            let mut answered = Vec::new();
            for (id, callback_at) in rx.iter().take(N) {
                let t = monotonic_ns();
                agent.answer_permission(id, "ok").unwrap();
                answered.push((callback_at, t));
            }
            answered
        })
    };
    let turn = run.started(
        run.agent
            .prompt(&json!([{"bench": N}]).to_string())
            .unwrap(),
    );
    assert_eq!(run.turn_ended(turn), TurnEnd::Stopped(StopReason::EndTurn));
    let answered = answerer.join().unwrap();
    let text = run.message_text();
    let times: Vec<(u64, u64)> =
        serde_json::from_str(text.trim().strip_prefix("BENCH ").unwrap()).unwrap();
    let to_callback: Vec<f64> = times
        .iter()
        .zip(&answered)
        .map(|((sent, _), (callback, _))| (callback - sent) as f64 / 1e3)
        .collect();
    let to_agent: Vec<f64> = times
        .iter()
        .zip(&answered)
        .map(|((_, recv), (_, answer))| (recv - answer) as f64 / 1e3)
        .collect();
    eprintln!("raw client:  agent → client: {}", describe(raw.0.clone()));
    eprintln!("raw client:  client → agent: {}", describe(raw.1.clone()));
    eprintln!(
        "adapter:     request_permission → callback: {}",
        describe(to_callback.clone())
    );
    eprintln!(
        "adapter:     answer_permission → agent: {}",
        describe(to_agent.clone())
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Generous: a loaded CI machine schedules late; the numbers printed are what counts.
    assert!(median(to_callback) < 20_000.0);
    assert!(median(to_agent) < 20_000.0);
}
