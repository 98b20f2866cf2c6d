//! Test harness for cross-component tests: a real `orch` daemon on temporary directories, a
//! typed JSON-RPC client that speaks either to the socket directly or through `orch lsp`
//! (every protocol case runs both ways), and helpers to wait for conditions instead of sleeping.
//!
//! The `orch` binary is the workspace's `target/<profile>/orch` (or `$ORCH_BIN`): build it first
//! (`cargo build -p orch`), as the README's test command does.

pub mod real;
pub mod sshd;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(20);

/// The `orch` binary under test.
pub fn orch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ORCH_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/orch
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("orch");
    assert!(bin.exists(), "{} is missing: run `cargo build -p orch` before the tests (the README's test command does)", bin.display());
    bin
}

/// Wait until `f` returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Whether CI asked for every tool to be present (`CI=true`): then a missing tool fails a test.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` runs; under CI a missing tool is a failure, elsewhere the test is skipped.
pub fn require_tool(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !ci(),
            "{tool} is required when CI=true but is not installed"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// A workspace with its own runtime and state directories, and the daemon serving it.
pub struct Daemon {
    /// The workspace root.
    pub workspace: TempDir,
    /// `ORCH_RUNTIME_DIR`.
    pub runtime_dir: TempDir,
    /// `ORCH_STATE_DIR`.
    pub state_dir: TempDir,
    /// The `orch serve` process, when started by [`Daemon::start`].
    pub child: Option<Child>,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// A workspace without a daemon yet; `orch_toml` is written as its configuration if given.
    pub fn new(orch_toml: Option<&str>) -> Self {
        let workspace = tempfile::Builder::new()
            .prefix("orch-ws-")
            .tempdir()
            .unwrap();
        if let Some(t) = orch_toml {
            std::fs::write(workspace.path().join("orch.toml"), t).unwrap();
        }
        let runtime_dir = tempfile::Builder::new()
            .prefix("orch-run-")
            .tempdir()
            .unwrap();
        // The daemon refuses a socket directory others can reach, as it should.
        std::fs::set_permissions(
            runtime_dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Self {
            workspace,
            runtime_dir,
            state_dir: tempfile::Builder::new()
                .prefix("orch-state-")
                .tempdir()
                .unwrap(),
            child: None,
            env: Vec::new(),
        }
    }

    /// A started daemon.
    pub fn started(orch_toml: Option<&str>) -> Self {
        let mut d = Self::new(orch_toml);
        d.start();
        d
    }

    /// A command for `orch` with this workspace's environment.
    pub fn orch(&self) -> Command {
        let mut c = Command::new(orch_bin());
        c.current_dir(self.workspace.path())
            .env("ORCH_RUNTIME_DIR", self.runtime_dir.path())
            .env("ORCH_STATE_DIR", self.state_dir.path())
            .env("ORCH_WORKSPACE", self.workspace.path())
            // A home of its own: agents' shells must not read this machine's ~/.bashrc.
            .env("HOME", self.state_dir.path())
            // Scripted agents call `$ORCH_BIN task complete`.
            .env("ORCH_BIN", orch_bin())
            .env_remove("ORCH_SOCKET")
            .env_remove("ORCH_AGENT_ID")
            .env_remove("ORCH_TASK_ID");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run `orch args...`, returning (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .orch()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run orch");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        let (code, out, err) = self.run(&["socket-path"]);
        assert_eq!(code, 0, "socket-path failed: {err}");
        PathBuf::from(out.trim())
    }

    /// Start `orch serve` and wait for its socket to answer.
    pub fn start(&mut self) {
        let log = std::fs::File::create(
            self.state_dir
                .path()
                .join(format!("serve-{}.log", std::process::id())),
        )
        .unwrap();
        let child = self
            .orch()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start orch serve");
        self.child = Some(child);
        let socket = self.socket();
        wait_for("the daemon's socket", WAIT, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("orch serve exited early with {status}: {}", self.log_tail());
            }
            UnixStream::connect(&socket).ok()
        });
    }

    /// The last lines the daemon logged.
    pub fn log_tail(&self) -> String {
        let all = self.log_text();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Everything the daemon logged (what `orch serve` wrote to its stderr).
    pub fn log_text(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.state_dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".log") {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        all
    }

    /// The daemon's pid as `orch/status` reports it (works for auto-started daemons too).
    pub fn pid(&self) -> i32 {
        let mut c = self.client(Via::Socket);
        c.call("orch/status", json!({})).unwrap()["pid"]
            .as_i64()
            .unwrap() as i32
    }

    /// SIGKILL the daemon and wait until it is gone.
    pub fn kill9(&mut self) {
        let pid = self.pid();
        // SAFETY: kill with a pid we read from the daemon itself.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        wait_for("the killed daemon to be gone", WAIT, || {
            // SAFETY: signal 0 only checks existence.
            let alive = unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
            (!alive).then_some(())
        });
    }

    /// Connect a client, initialized, over `via`.
    pub fn client(&self, via: Via) -> Client {
        let mut c = self.raw_client(via);
        c.initialize();
        c
    }

    /// Connect a client without initializing it.
    pub fn raw_client(&self, via: Via) -> Client {
        match via {
            Via::Socket => Client::socket(&self.socket()),
            Via::Lsp => {
                let child = self
                    .orch()
                    .arg("lsp")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start orch lsp");
                Client::process(child)
            }
        }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        self.workspace.path()
    }
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Stop whatever daemon serves this workspace (started here or auto-started), agents too.
        if UnixStream::connect(self.socket()).is_ok() {
            let _ = self
                .orch()
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Which way a client reaches the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The local socket.
    Socket,
    /// `orch lsp` over stdio.
    Lsp,
}

/// Both ways, for tests that must hold on each.
pub const BOTH: [Via; 2] = [Via::Socket, Via::Lsp];

/// A JSON-RPC client for tests: a reader thread decodes frames into a channel.
pub struct Client {
    /// Where requests go.
    writer: Box<dyn Write + Send>,
    /// Decoded messages, or the reader's end.
    rx: mpsc::Receiver<Value>,
    /// Messages read while looking for something else.
    backlog: Vec<Value>,
    /// Next request id.
    next_id: i64,
    /// The `orch lsp` process, if any.
    child: Option<Child>,
    /// The socket, to shut down on drop.
    stream: Option<UnixStream>,
}

fn reader_thread(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut dec = editor_protocol::framing::FrameDecoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    let v: Value = serde_json::from_slice(&body)
                        .unwrap_or_else(|e| json!({ "undecodable": e.to_string() }));
                    if tx.send(v).is_err() {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(json!({ "framingError": e.to_string() }));
                    return;
                }
            }
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => dec.push(&buf[..n]),
            }
        }
    });
    rx
}

impl Client {
    /// Over a socket.
    pub fn socket(path: &Path) -> Self {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        let rx = reader_thread(stream.try_clone().unwrap());
        Self {
            writer: Box::new(stream.try_clone().unwrap()),
            rx,
            backlog: Vec::new(),
            next_id: 1,
            child: None,
            stream: Some(stream),
        }
    }

    /// Over a child's stdio (`orch lsp`).
    pub fn process(mut child: Child) -> Self {
        let rx = reader_thread(child.stdout.take().unwrap());
        let writer = Box::new(child.stdin.take().unwrap());
        Self {
            writer,
            rx,
            backlog: Vec::new(),
            next_id: 1,
            child: Some(child),
            stream: None,
        }
    }

    /// Write raw bytes (for malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Write raw bytes, reporting a failure (the daemon closed the connection) instead of
    /// panicking.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Send a framed JSON value.
    pub fn send(&mut self, v: &Value) {
        let body = serde_json::to_vec(v).unwrap();
        self.send_raw(&editor_protocol::framing::encode(&body));
    }

    /// Send a request, returning its id.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    /// Send a notification.
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// The next message matching `pred` (others are kept), within `timeout`.
    pub fn wait_message(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => self.backlog.push(v),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "timed out waiting for {what}; got meanwhile: {:?}",
                    self.backlog
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "connection closed while waiting for {what}; got: {:?}",
                    self.backlog
                ),
            }
        }
    }

    /// Whether the connection was closed by the daemon within `timeout` (messages before are kept).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(v) => self.backlog.push(v),
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// The response to request `id`.
    pub fn response(&mut self, id: i64) -> Value {
        self.wait_message(&format!("the response to request {id}"), WAIT, |v| {
            v["id"] == json!(id) && v.get("method").is_none()
        })
    }

    /// Call a method: `Ok(result)` or `Err(error object)`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.call_within(method, params, WAIT)
    }

    /// Call a method whose answer may take up to `timeout` (text typed into an agent that is
    /// still starting is answered once it was typed).
    pub fn call_within(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, Value> {
        let id = self.request(method, params);
        let r = self.wait_message(&format!("the response to request {id}"), timeout, |v| {
            v["id"] == json!(id) && v.get("method").is_none()
        });
        match r.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"].clone()),
        }
    }

    /// Call and expect success.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params.clone())
            .unwrap_or_else(|e| panic!("{method} {params} failed: {e}"))
    }

    /// Call and expect an error with `code`.
    pub fn err(&mut self, method: &str, params: Value, code: i64) -> Value {
        match self.call(method, params.clone()) {
            Ok(r) => panic!("{method} {params} succeeded with {r}, expected error {code}"),
            Err(e) => {
                assert_eq!(e["code"], json!(code), "{method} {params}: {e}");
                e
            }
        }
    }

    /// Every item of a list method, following `nextCursor` page by page (`params` may set `limit`).
    pub fn list_all(&mut self, method: &str, params: Value) -> Vec<Value> {
        let mut items = Vec::new();
        let mut p = params;
        loop {
            let page = self.ok(method, p.clone());
            items.extend(
                page["items"]
                    .as_array()
                    .expect("a list result has items")
                    .iter()
                    .cloned(),
            );
            match page.get("nextCursor") {
                Some(cur) if !cur.is_null() => p["cursor"] = cur.clone(),
                _ => return items,
            }
        }
    }

    /// `initialize` with the capabilities an editor declares.
    pub fn initialize(&mut self) -> Value {
        self.initialize_with(json!({}))
    }

    /// `initialize` with these client capabilities.
    pub fn initialize_with(&mut self, capabilities: Value) -> Value {
        let r = self.ok("initialize", json!({ "processId": std::process::id(), "capabilities": capabilities, "rootUri": null }));
        self.notify("initialized", json!({}));
        r
    }

    /// The next notification of `method` matching `pred`.
    pub fn notification(
        &mut self,
        method: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        self.wait_message(&format!("a {method} notification"), timeout, |v| {
            v["method"] == json!(method) && v.get("id").is_none() && pred(&v["params"])
        })["params"]
            .clone()
    }

    /// Messages received and not consumed yet, after waiting `settle` for more.
    pub fn drain(&mut self, settle: Duration) -> Vec<Value> {
        while let Ok(v) = self.rx.recv_timeout(settle) {
            self.backlog.push(v);
        }
        std::mem::take(&mut self.backlog)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(s) = &self.stream {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawn an agent running `argv` and return it.
pub fn spawn(c: &mut Client, argv: &[&str]) -> Value {
    c.ok("orch/agent/spawn", json!({ "command": argv }))
}

/// Poll an agent until `pred` holds.
pub fn wait_agent(c: &mut Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, WAIT, || {
        let a = c.ok("orch/agent/get", json!({ "id": id }));
        pred(&a).then_some(a)
    })
}

/// Wait for the pending decision raised by `agent` (a waiting pattern matched).
pub fn pending_decision_for(c: &mut Client, agent: &str) -> Value {
    wait_for(&format!("a pending decision of {agent}"), WAIT, || {
        let l = c.ok("orch/decision/list", json!({ "state": "pending" }));
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["source"]["id"] == json!(agent))
            .cloned()
    })
}

/// Poll a terminal's screen until its text contains `needle`.
pub fn wait_screen(c: &mut Client, agent: &str, needle: &str) -> String {
    wait_for(&format!("{needle:?} on {agent}'s screen"), WAIT, || {
        let s = c.ok("orch/agent/screen", json!({ "id": agent }));
        let text = s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        text.contains(needle).then_some(text)
    })
}

/// Poll a task until it is in `state`.
pub fn wait_task(c: &mut Client, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = c.ok("orch/task/get", json!({ "id": id }));
        if t["state"] == json!(state) {
            return t;
        }
        if Instant::now() > deadline {
            panic!("task {id} never reached {state}; last: {last}");
        }
        last = t;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An isolated tmux server (`tmux -L <unique name>`), killed (with its socket file's server)
/// when dropped, even when the test fails.
pub struct IsolatedTmux {
    /// `tmux -L` socket name.
    pub name: String,
}

impl IsolatedTmux {
    /// A server name unique to this test process and call; `tag` says whose it is.
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        Self {
            name: format!(
                "orch-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        }
    }

    /// Run `tmux -L <name> args...`.
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// `tmux -L <name> args...`: whether it succeeded, and its stdout.
    pub fn tmux(&self, args: &[&str]) -> (bool, String) {
        let out = self.run(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `tmux -L <name> args...`, which must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The names of the server's windows, in every session.
    pub fn window_names(&self) -> Vec<String> {
        self.tmux(&["list-windows", "-a", "-F", "#{window_name}"])
            .1
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for IsolatedTmux {
    fn drop(&mut self) {
        // Killing the server only hangs up its panes, and some programs (Gemini CLI) outlive a
        // hangup: each pane's process group (its program leads one) is killed first.
        let (_, panes) = self.tmux(&["list-panes", "-a", "-F", "#{pane_pid}"]);
        for pid in panes
            .lines()
            .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
            .filter(|&p| p > 1)
        {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The `agent.state` events of agent `id`, oldest first.
pub fn agent_states(c: &mut Client, id: &str) -> Vec<Value> {
    let ev = c.ok(
        "orch/events/query",
        json!({ "kinds": ["agent.state"], "subjects": [id] }),
    );
    ev["items"].as_array().cloned().unwrap_or_default()
}
