//! Neovim scenarios: each `tests/nvim/<name>.lua` runs in a fresh headless Neovim
//! (`nvim --headless --clean -u NONE -l <scenario>`) with the repository on its runtime path,
//! against the real `orch` binary, in its own temporary workspace, socket and state directories.
//!
//! A scenario prints one transcript line per check (`ok ...` / `FAIL ...: ...`) and exits non-zero
//! on any failure; this module only runs it, enforces a time limit, stops the workspace daemon
//! afterwards and shows the transcript when it failed. It knows nothing about what is checked.
//!
//! Neovim is `$ORCH_NVIM`, else `nvim` on `PATH`. Without it the tests are skipped, except on CI
//! (`CI=true`), where a missing Neovim is a failure. The binary under test is `$ORCH_BIN`, else
//! the workspace's `target/<profile>/orch` (build it first: `cargo build -p orch`).

use std::env;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long one scenario may take before it is killed (`ORCH_NVIM_TIMEOUT_S` overrides).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `orch stop` may take after a scenario.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn nvim_setup() {
    run_scenario("setup");
}

#[test]
fn nvim_agents() {
    run_scenario("agents");
}

#[test]
fn nvim_decisions() {
    run_scenario("decisions");
}

#[test]
fn nvim_tasks() {
    run_scenario("tasks");
}

#[test]
fn nvim_reconnect() {
    run_scenario("reconnect");
}

#[test]
fn nvim_health() {
    run_scenario("health");
}

#[test]
fn nvim_worktrees() {
    run_scenario("worktrees");
}

/// The repository root (the parent of the `tests` crate).
fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The `orch` binary under test: `$ORCH_BIN`, else `orch` in the profile directory of this test
/// executable (`target/<profile>/deps/e2e-*` -> `target/<profile>/orch`), else
/// `target/debug/orch` of this workspace.
fn orch_bin() -> PathBuf {
    if let Some(bin) = env::var_os("ORCH_BIN").filter(|s| !s.is_empty()) {
        return PathBuf::from(bin);
    }
    let beside = env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("orch")));
    match beside {
        Some(bin) if is_executable(&bin) => bin,
        _ => repo_root().join("target").join("debug").join("orch"),
    }
}

/// Neovim: `$ORCH_NVIM`, else the first executable `nvim` on `PATH`.
fn find_nvim() -> Option<PathBuf> {
    if let Some(nvim) = env::var_os("ORCH_NVIM").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(nvim));
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join("nvim"))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The isolated directories of one scenario, removed when dropped.
struct Sandbox {
    /// Owns every directory below; dropping it deletes them.
    _tmp: TempDir,
    /// The workspace root the daemon serves (the scenario's cwd).
    workspace: PathBuf,
    /// Environment given to Neovim, the CLI and (through them) the daemon.
    env: Vec<(String, PathBuf)>,
    /// Where Neovim's stdout (the transcript) and stderr go: files, not pipes, so that a daemon
    /// inheriting them can never block the scenario.
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Sandbox {
    fn new(orch: &Path) -> Sandbox {
        let tmp = TempDir::new().expect("create a temporary directory");
        let root = tmp
            .path()
            .canonicalize()
            .expect("canonicalize the temporary directory");
        let mkdir = |name: &str| {
            let dir = root.join(name);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            dir
        };
        let workspace = mkdir("workspace");
        let runtime = mkdir("runtime");
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700))
                .expect("chmod the runtime directory");
        }
        let state = mkdir("state");
        let env = vec![
            ("ORCH_REPO".to_string(), repo_root()),
            ("ORCH_BIN".to_string(), orch.to_path_buf()),
            ("ORCH_WORKSPACE".to_string(), workspace.clone()),
            ("ORCH_RUNTIME_DIR".to_string(), runtime),
            ("ORCH_STATE_DIR".to_string(), state),
            // A home of its own: the agents' `bash -i` must not source the machine's ~/.bashrc
            // (slow, and it may wait on locks such as pyenv's), and nothing may write to the
            // user's home.
            ("HOME".to_string(), mkdir("home")),
            // Keep Neovim's own state (LSP log, shada) out of the user's home.
            ("XDG_CONFIG_HOME".to_string(), mkdir("xdg/config")),
            ("XDG_DATA_HOME".to_string(), mkdir("xdg/data")),
            ("XDG_STATE_HOME".to_string(), mkdir("xdg/state")),
            ("XDG_CACHE_HOME".to_string(), mkdir("xdg/cache")),
        ];
        Sandbox {
            stdout: root.join("nvim.stdout"),
            stderr: root.join("nvim.stderr"),
            _tmp: tmp,
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
        cmd
    }
}

/// Wait for `child` up to `timeout`; kill its process group when it takes longer.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                // The child leads its own process group (see `process_group(0)`).
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

/// Stop the workspace daemon the scenario started (through `orch lsp`); errors are ignored, there
/// may be none running.
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

/// The `(major, minor)` version `nvim --version` reports, if it runs.
fn nvim_version(nvim: &Path) -> Option<(u32, u32)> {
    let out = Command::new(nvim)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next()?.strip_prefix("NVIM v")?;
    let mut parts = version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Skip (or, on CI, fail) when no usable Neovim exists.
fn missing_nvim(name: &str, why: &str) {
    if env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{why}; CI=true requires Neovim >= 0.11 (set ORCH_NVIM or put nvim on PATH)");
    }
    eprintln!("skipping Neovim scenario {name}: {why} (set ORCH_NVIM or put nvim >= 0.11 on PATH)");
}

fn run_scenario(name: &str) {
    let Some(nvim) = find_nvim() else {
        missing_nvim(name, "nvim not found");
        return;
    };
    match nvim_version(&nvim) {
        Some(v) if v >= (0, 11) => {}
        Some((major, minor)) => {
            let why = format!("{} is Neovim {major}.{minor}", nvim.display());
            missing_nvim(name, &why);
            return;
        }
        None => {
            let why = format!("`{} --version` failed", nvim.display());
            missing_nvim(name, &why);
            return;
        }
    }
    let orch = orch_bin();
    assert!(
        is_executable(&orch),
        "orch binary not found at {} (build it with `cargo build -p orch`, or set ORCH_BIN)",
        orch.display()
    );
    let script = repo_root()
        .join("tests")
        .join("nvim")
        .join(format!("{name}.lua"));
    assert!(
        script.is_file(),
        "scenario {} does not exist",
        script.display()
    );

    let sandbox = Sandbox::new(&orch);
    let timeout = env::var("ORCH_NVIM_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(SCENARIO_TIMEOUT);
    let started = Instant::now();
    let mut child = sandbox
        .command(&nvim)
        .args(["--headless", "--clean", "-u", "NONE", "-l"])
        .arg(&script)
        .stdout(File::create(&sandbox.stdout).expect("create the transcript file"))
        .stderr(File::create(&sandbox.stderr).expect("create the stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", nvim.display()));
    let status = wait_with_timeout(&mut child, timeout);
    let elapsed = started.elapsed();
    stop_daemon(&sandbox, &orch);

    let transcript = fs::read_to_string(&sandbox.stdout).unwrap_or_default();
    let stderr = fs::read_to_string(&sandbox.stderr).unwrap_or_default();
    let verdict = match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("exited with {s}")),
        None => Some(format!(
            "timed out after {} s and was killed",
            timeout.as_secs()
        )),
    };
    match verdict {
        None => println!("scenario {name} passed in {:.1} s\n{transcript}", elapsed.as_secs_f64()),
        Some(why) => panic!(
            "Neovim scenario {name} {why}\n--- transcript ({}) ---\n{transcript}\n--- stderr ---\n{stderr}",
            script.display()
        ),
    }
}
