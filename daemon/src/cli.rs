//! The `orch` command line: `serve` and `lsp` for the daemon's two entry points, and commands
//! for people (tables) and scripts (`--json`) that talk to the workspace daemon, starting it
//! first when none runs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::clock;
use crate::paths::WorkspacePaths;
use crate::transport::client::{CallError, Client};

#[derive(Parser)]
#[command(
    name = "orch",
    version,
    about = "Run and watch AI coding agents in terminals, per workspace"
)]
struct Cli {
    /// Workspace root (default: $ORCH_WORKSPACE, else the nearest directory upwards with an
    /// orch.toml or .git, else the current directory).
    #[arg(long, short = 'w', global = true)]
    workspace: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon for the workspace (on its local socket).
    Serve {
        /// Serve one client on stdin/stdout instead of the socket.
        #[arg(long)]
        stdio: bool,
    },
    /// Stdio forwarder for editors: connects to (or starts) the workspace daemon.
    Lsp,
    /// Print the workspace daemon's socket path.
    SocketPath,
    /// Show the daemon's status.
    Status,
    /// Stop the daemon (its agents are stopped first).
    Stop,
    /// Print events; with --follow, keep printing new ones.
    Events {
        /// Only events after this seq.
        #[arg(long)]
        since: Option<u64>,
        /// Keep following.
        #[arg(long, short)]
        follow: bool,
        /// Only kinds with this prefix (repeatable).
        #[arg(long)]
        kind: Vec<String>,
        /// Only events about this id (repeatable).
        #[arg(long)]
        subject: Vec<String>,
    },
    /// Call any method with JSON params and print the result.
    Call {
        /// The method (`orch/status`).
        method: String,
        /// JSON params (default `{}`).
        params: Option<String>,
    },
    /// Agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// An interactive view of an agent in this terminal (Ctrl-] detaches).
    Attach {
        /// Agent id or name.
        agent: String,
    },
    /// Tasks.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Decisions.
    #[command(subcommand)]
    Decision(DecisionCmd),
    /// For an agent's command hooks: hand the hook's JSON (stdin) to the daemon for the agent in
    /// $ORCH_AGENT_ID. Prints nothing and exits 0 at once, whatever happens: a broken hook must
    /// never break the agent.
    Hook,
    /// What an agent's worktree changed against its base: the unified diff, or a table with
    /// --stat.
    Diff {
        /// Agent id or name.
        agent: String,
        /// Compare against this branch, tag or commit instead of the worktree's base.
        #[arg(long)]
        base: Option<String>,
        /// The changed files with lines added and deleted, instead of the diff.
        #[arg(long)]
        stat: bool,
    },
    /// Land an agent's worktree in its base branch (a merge commit unless --squash or --rebase);
    /// its uncommitted work is committed first. A conflict leaves the workspace as it was.
    Merge {
        /// Agent id or name.
        agent: String,
        /// One commit with all of the agent's changes.
        #[arg(long, conflicts_with = "rebase")]
        squash: bool,
        /// The agent's commits replayed onto the base, which is fast-forwarded.
        #[arg(long)]
        rebase: bool,
        /// The commit message (not with --rebase, which keeps the agent's).
        #[arg(long, short, conflicts_with = "rebase")]
        message: Option<String>,
    },
    /// Remove a stopped agent's worktree and branch. Unmerged work raises a decision first,
    /// unless --force.
    Discard {
        /// Agent id or name.
        agent: String,
        /// Discard unmerged work without asking.
        #[arg(long)]
        force: bool,
    },
    /// Remove a stopped agent's checkout, keeping its branch (`orch resume` brings it back).
    Pause {
        /// Agent id or name.
        agent: String,
    },
    /// Check a paused agent's branch out again and restart the agent there.
    Resume {
        /// Agent id or name.
        agent: String,
    },
    /// Wait for a task to finish: exit 0 done, 1 failed/escalated/cancelled, 2 timeout.
    Wait {
        /// Task id.
        task: String,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Start an agent: `orch agent spawn claude` or `orch agent spawn -- python bot.py`.
    Spawn(SpawnArgs),
    /// List agents.
    List {
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one agent.
    Get {
        /// Agent id or name.
        agent: String,
    },
    /// Type text into an agent (Enter is pressed after it unless --no-submit).
    Send {
        /// Agent id or name.
        agent: String,
        /// The text.
        text: String,
        /// Do not press Enter.
        #[arg(long)]
        no_submit: bool,
    },
    /// Print an agent's screen.
    Screen {
        /// Agent id or name.
        agent: String,
        /// Lines of history above the screen.
        #[arg(long, default_value_t = 0)]
        scrollback: u32,
    },
    /// Stop an agent (SIGTERM, SIGKILL after a grace period).
    Stop {
        /// Agent id or name.
        agent: String,
        /// SIGKILL at once.
        #[arg(long)]
        force: bool,
    },
    /// Restart an agent.
    Restart {
        /// Agent id or name.
        agent: String,
    },
}

#[derive(Args)]
struct SpawnArgs {
    /// A kind from orch.toml or the built-ins (shell, claude, codex, gemini, aider).
    kind: Option<String>,
    /// Name (default `<kind>-<n>`).
    #[arg(long)]
    name: Option<String>,
    /// Backend: pty or tmux.
    #[arg(long)]
    backend: Option<String>,
    /// A host from orch.toml's [hosts.<name>]: run it in that machine's tmux, over SSH.
    #[arg(long)]
    host: Option<String>,
    /// Working directory.
    #[arg(long)]
    cwd: Option<String>,
    /// Extra environment, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Run it in a git worktree of its own, on a new branch made from the workspace's current
    /// branch.
    #[arg(long)]
    worktree: bool,
    /// The worktree's branch (default `orch/<name>`).
    #[arg(long, requires = "worktree")]
    branch: Option<String>,
    /// The branch, tag or commit the worktree starts from, and where it merges.
    #[arg(long, requires = "worktree")]
    base: Option<String>,
    /// The command to run instead of a kind.
    #[arg(last = true)]
    argv: Vec<String>,
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Create a task.
    New {
        /// Title.
        title: String,
        /// What the agent is told.
        #[arg(long)]
        prompt: String,
        /// Give it to this agent now.
        #[arg(long)]
        agent: Option<String>,
        /// A gate from orch.toml (repeatable).
        #[arg(long = "gate")]
        gates: Vec<String>,
        /// Attempts before escalation.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// low, normal, high or urgent.
        #[arg(long)]
        priority: Option<String>,
    },
    /// List tasks.
    List {
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one task.
    Get {
        /// Task id.
        id: String,
    },
    /// Say a task's work is done: its gates run (default: $ORCH_TASK_ID, or this agent's task).
    Complete {
        /// Task id.
        id: Option<String>,
        /// What was done.
        #[arg(long)]
        summary: Option<String>,
    },
    /// Cancel a task.
    Cancel {
        /// Task id.
        id: String,
    },
}

#[derive(Subcommand)]
enum DecisionCmd {
    /// List decisions (pending first).
    List {
        /// pending or resolved.
        #[arg(long)]
        state: Option<String>,
    },
    /// Answer a decision.
    Resolve {
        /// Decision id.
        id: String,
        /// One of its options.
        choice: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Run the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Hook) {
        hook();
        return 0;
    }
    if !matches!(cli.command, Command::Serve { .. } | Command::Lsp) {
        // `orch agent list | head` should end quietly when the reader goes away, as other
        // command-line tools do, not panic on the broken pipe. The daemon keeps SIGPIPE ignored:
        // a client that disconnects is an error on one socket, not a reason to die.
        // SAFETY: restoring the default disposition of a signal before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if matches!(cli.command, Command::Serve { .. }) {
        limit_malloc_arenas();
    }
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orch: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("orch: {e:#}");
            1
        }
    }
}

/// `orch hook`: read the hook's JSON, give it to the daemon, never fail. The reply is awaited
/// (briefly) so that two hooks fired in a row reach the daemon in order.
fn hook() {
    use std::io::{IsTerminal, Read};
    const MAX_INPUT: u64 = 16 << 20;
    const DEADLINE: Duration = Duration::from_secs(2);
    // The input is read first, whatever follows: a hook runner writing to a hook that has
    // already gone would see a broken pipe.
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return;
    }
    let mut input = Vec::new();
    if stdin
        .lock()
        .take(MAX_INPUT)
        .read_to_end(&mut input)
        .is_err()
    {
        return;
    }
    let (Some(agent), Some(socket)) = (
        std::env::var_os("ORCH_AGENT_ID"),
        std::env::var_os("ORCH_SOCKET"),
    ) else {
        return;
    };
    let Ok(event) = serde_json::from_slice::<Value>(&input) else {
        return;
    };
    let params = json!({
        "agentId": agent.to_string_lossy(),
        "terminalId": std::env::var("ORCH_TERMINAL_ID").ok(),
        "event": event,
    });
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let deliver = async move {
        let mut c = Client::connect(std::path::Path::new(&socket)).await?;
        c.initialize(json!({}))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        c.call("orch/hook", params)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok::<_, std::io::Error>(())
    };
    let _ = rt.block_on(async { tokio::time::timeout(DEADLINE, deliver).await });
}

/// The workspace root: explicit, else `$ORCH_WORKSPACE`, else the nearest ancestor with an
/// `orch.toml` or `.git`, else the current directory.
fn workspace_root(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(w) = explicit.or_else(|| std::env::var_os("ORCH_WORKSPACE").map(PathBuf::from)) {
        return Ok(w);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    for marker in ["orch.toml", ".git"] {
        if let Some(dir) = cwd.ancestors().find(|d| d.join(marker).exists()) {
            return Ok(dir.to_path_buf());
        }
    }
    Ok(cwd)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let root = workspace_root(cli.workspace.clone())?;
    let paths = WorkspacePaths::for_root(&root)?;
    match cli.command {
        Command::Serve { stdio } => {
            crate::server::serve(paths, stdio).await?;
            Ok(0)
        }
        Command::Lsp => {
            let result = crate::transport::forward::run(&paths).await;
            // tokio's stdin reader sits in a blocking read that would hold up runtime shutdown:
            // once forwarding is over, leave at once.
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("orch lsp: {e:#}");
                    1
                }
            };
            std::process::exit(code);
        }
        Command::SocketPath => {
            println!("{}", paths.socket.display());
            Ok(0)
        }
        Command::Stop => {
            let Ok(mut c) = Client::connect(&paths.socket).await else {
                if !cli.json {
                    println!("no daemon runs for {}", paths.root.display());
                }
                return Ok(0);
            };
            c.initialize(json!({})).await?;
            c.call("orch/daemon/stop", json!({})).await?;
            // Wait until it has let go of its socket, so a following start is clean.
            for _ in 0..200 {
                if Client::connect(&paths.socket).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if !cli.json {
                println!("stopped the daemon for {}", paths.root.display());
            }
            Ok(0)
        }
        cmd => {
            let mut c = Client::connect_or_start(&paths).await?;
            c.initialize(json!({})).await?;
            let json_out = cli.json;
            command(&mut c, cmd, json_out, &paths).await
        }
    }
}

async fn call(c: &mut Client, method: &str, params: Value) -> anyhow::Result<Value> {
    c.call(method, params).await.map_err(|e| match e {
        CallError::Rpc(e) => anyhow!("{}", e.message),
        other => anyhow!(other),
    })
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn command(
    c: &mut Client,
    cmd: Command,
    json_out: bool,
    paths: &WorkspacePaths,
) -> anyhow::Result<i32> {
    match cmd {
        Command::Status => {
            let s = call(c, "orch/status", json!({})).await?;
            if json_out {
                print_json(&s);
            } else {
                print_status(&s);
            }
        }
        Command::Call { method, params } => {
            let params: Value = match params {
                Some(p) => serde_json::from_str(&p)
                    .with_context(|| format!("params are not valid JSON: {p}"))?,
                None => json!({}),
            };
            print_json(&call(c, &method, params).await?);
        }
        Command::Events {
            since,
            follow,
            kind,
            subject,
        } => return events(c, since, follow, kind, subject, json_out).await,
        Command::Agent(a) => return agent(c, a, json_out).await,
        Command::Attach { agent } => return attach(c, &agent, paths).await,
        Command::Task(t) => return task(c, t, json_out).await,
        Command::Decision(d) => return decision(c, d, json_out).await,
        Command::Wait { task, timeout } => return wait(c, &task, timeout, json_out).await,
        Command::Diff { agent, base, stat } => {
            let mut p = json!({ "id": agent });
            if let Some(b) = base {
                p["base"] = json!(b);
            }
            let d = call(c, "orch/agent/diff", p).await?;
            if json_out {
                print_json(&d);
            } else if stat {
                print_stat(&d);
            } else {
                print_diff(&d, &agent);
            }
        }
        Command::Merge {
            agent,
            squash,
            rebase,
            message,
        } => return merge(c, &agent, squash, rebase, message, json_out).await,
        Command::Discard { agent, force } => return discard(c, &agent, force, json_out).await,
        Command::Pause { agent } => {
            let a = call(c, "orch/agent/pause", json!({ "id": agent })).await?;
            if json_out {
                print_json(&a);
            } else {
                agent_rows(std::slice::from_ref(&a));
            }
        }
        Command::Resume { agent } => {
            let a = call(c, "orch/agent/resume", json!({ "id": agent })).await?;
            if json_out {
                print_json(&a);
            } else {
                agent_rows(std::slice::from_ref(&a));
            }
        }
        Command::Serve { .. }
        | Command::Lsp
        | Command::SocketPath
        | Command::Stop
        | Command::Hook => {
            unreachable!("handled before connecting")
        }
    }
    Ok(0)
}

fn print_status(s: &Value) {
    let by_state: Vec<String> = s["agents"]["byState"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{v} {k}")).collect())
        .unwrap_or_default();
    println!("workspace  {}", s["workspace"].as_str().unwrap_or(""));
    println!(
        "daemon     pid {}, version {}, up {}",
        s["pid"],
        s["version"].as_str().unwrap_or(""),
        human_duration(s["uptimeMs"].as_u64().unwrap_or(0) / 1000)
    );
    println!(
        "agents     {} total{}",
        s["agents"]["total"],
        if by_state.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_state.join(", "))
        }
    );
    println!("clients    {}", s["clients"]);
    println!("events     last seq {}", s["lastSeq"]);
    for b in s["backends"].as_array().into_iter().flatten() {
        let mark = if b["available"].as_bool() == Some(true) {
            "available"
        } else {
            "unavailable"
        };
        println!(
            "backend    {} {mark} ({})",
            b["name"].as_str().unwrap_or(""),
            b["detail"].as_str().unwrap_or("")
        );
    }
    for h in s["hosts"].as_array().into_iter().flatten() {
        let mut line = format!(
            "host       {} {}",
            h["name"].as_str().unwrap_or(""),
            h["state"].as_str().unwrap_or("")
        );
        if let Some(v) = h["tmuxVersion"].as_str() {
            line.push_str(&format!(", tmux {v}"));
        }
        if let Some(rtt) = h["rttMs"].as_f64() {
            line.push_str(&format!(", rtt {rtt:.1} ms"));
        }
        if let Some(d) = h["detail"].as_str() {
            line.push_str(&format!(" ({d})"));
        }
        println!("{line}");
    }
    println!(
        "store      {} ({} bytes)",
        s["store"]["path"].as_str().unwrap_or(""),
        s["store"]["sizeBytes"]
    );
    if let Some(max) = s["limits"]["liveAgents"].as_u64() {
        println!(
            "limits     {} of {max} live terminals in use",
            s["limits"]["liveAgentsNow"].as_u64().unwrap_or(0)
        );
    }
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn age(t: &Value) -> String {
    let Some(then) = t.as_str().and_then(clock::parse_rfc3339_secs) else {
        return "?".into();
    };
    let now = clock::parse_rfc3339_secs(&clock::now_rfc3339()).unwrap_or(then);
    human_duration((now - then).max(0) as u64)
}

/// Print rows as aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Agents as a table; a BRANCH column (the worktree's branch and changed files) only when one of
/// them has a worktree, so the usual table stays as narrow as it was.
fn agent_rows(items: &[Value]) {
    let branches = items.iter().any(|a| a["worktree"].is_object());
    let mut header = vec!["ID", "NAME", "KIND", "STATE", "BACKEND", "PID", "TASK"];
    if branches {
        header.push("BRANCH");
    }
    header.push("AGE");
    table(
        &header,
        items
            .iter()
            .map(|a| {
                let mut row = vec![
                    s(&a["id"]),
                    s(&a["name"]),
                    s(&a["kind"]),
                    s(&a["state"]),
                    match a["host"].as_str() {
                        Some(h) => format!("{}@{h}", s(&a["backend"])),
                        None => s(&a["backend"]),
                    },
                    s(&a["pid"]),
                    s(&a["taskId"]),
                ];
                if branches {
                    row.push(branch_cell(&a["worktree"]));
                }
                row.push(age(&a["createdAt"]));
                row
            })
            .collect(),
    );
}

/// `orch/w1 (3)`: a worktree's branch and how many files it changed; `-` without a worktree.
fn branch_cell(w: &Value) -> String {
    if !w.is_object() {
        return "-".into();
    }
    let paused = if w["paused"] == true { ", paused" } else { "" };
    format!("{} ({}{paused})", s(&w["branch"]), s(&w["changes"]))
}

async fn list_all(c: &mut Client, method: &str, mut params: Value) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    params["limit"] = json!(1000);
    loop {
        let page = call(c, method, params.clone()).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(cur) => params["cursor"] = json!(cur),
            None => return Ok(items),
        }
    }
}

async fn agent(c: &mut Client, cmd: AgentCmd, json_out: bool) -> anyhow::Result<i32> {
    let out = |v: &Value| {
        if json_out {
            print_json(v)
        } else {
            agent_rows(std::slice::from_ref(v))
        }
    };
    match cmd {
        AgentCmd::Spawn(a) => {
            let mut p = json!({});
            match (a.kind, a.argv.is_empty()) {
                (Some(k), true) => p["kind"] = json!(k),
                (None, false) => p["command"] = json!(a.argv),
                (Some(_), false) => bail!("give a kind or a command after --, not both"),
                (None, true) => bail!("give a kind (`orch agent spawn shell`) or a command (`orch agent spawn -- python bot.py`)"),
            }
            for (k, v) in [
                ("name", a.name),
                ("backend", a.backend),
                ("host", a.host),
                ("cwd", a.cwd),
            ] {
                if let Some(v) = v {
                    p[k] = json!(v);
                }
            }
            if !a.env.is_empty() {
                let mut env = serde_json::Map::new();
                for kv in a.env {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| anyhow!("--env {kv:?} is not KEY=VALUE"))?;
                    env.insert(k.into(), json!(v));
                }
                p["env"] = Value::Object(env);
            }
            if a.worktree {
                p["worktree"] = match (a.branch, a.base) {
                    (None, None) => json!(true),
                    (branch, base) => {
                        let mut w = json!({});
                        if let Some(b) = branch {
                            w["branch"] = json!(b);
                        }
                        if let Some(b) = base {
                            w["base"] = json!(b);
                        }
                        w
                    }
                };
            }
            out(&call(c, "orch/agent/spawn", p).await?);
        }
        AgentCmd::List { state } => {
            let mut p = json!({});
            if let Some(st) = state {
                p["state"] = json!(st);
            }
            let items = list_all(c, "orch/agent/list", p).await?;
            if json_out {
                print_json(&json!(items));
            } else {
                agent_rows(&items);
            }
        }
        AgentCmd::Get { agent } => {
            let a = call(c, "orch/agent/get", json!({ "id": agent })).await?;
            out(&a);
            let w = &a["worktree"];
            if !json_out && w.is_object() {
                let at = if w["paused"] == true {
                    "paused, its checkout removed".to_string()
                } else {
                    s(&w["path"])
                };
                println!(
                    "  worktree {at}: branch {} from {}, {} changed files",
                    s(&w["branch"]),
                    s(&w["base"]),
                    s(&w["changes"])
                );
            }
        }
        AgentCmd::Send {
            agent,
            text,
            no_submit,
        } => {
            call(
                c,
                "orch/agent/send",
                json!({ "id": agent, "text": text, "submit": !no_submit }),
            )
            .await?;
        }
        AgentCmd::Screen { agent, scrollback } => {
            let screen = call(
                c,
                "orch/agent/screen",
                json!({ "id": agent, "scrollback": scrollback }),
            )
            .await?;
            if json_out {
                print_json(&screen);
            } else {
                let mut lines: Vec<&str> = screen["lines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                while lines.last().is_some_and(|l| l.trim().is_empty()) {
                    lines.pop();
                }
                for l in lines {
                    println!("{l}");
                }
            }
        }
        AgentCmd::Stop { agent, force } => {
            out(&call(c, "orch/agent/stop", json!({ "id": agent, "force": force })).await?)
        }
        AgentCmd::Restart { agent } => {
            out(&call(c, "orch/agent/restart", json!({ "id": agent })).await?)
        }
    }
    Ok(0)
}

fn task_rows(items: &[Value]) {
    table(
        &[
            "ID", "TITLE", "STATE", "PRIORITY", "AGENT", "ATTEMPTS", "DECISION", "AGE",
        ],
        items
            .iter()
            .map(|t| {
                vec![
                    s(&t["id"]),
                    s(&t["title"]),
                    s(&t["state"]),
                    s(&t["priority"]),
                    s(&t["agentId"]),
                    format!("{}/{}", t["attempts"], t["maxAttempts"]),
                    s(&t["decisionId"]),
                    age(&t["createdAt"]),
                ]
            })
            .collect(),
    );
}

async fn task(c: &mut Client, cmd: TaskCmd, json_out: bool) -> anyhow::Result<i32> {
    let out = |v: &Value| {
        if json_out {
            print_json(v)
        } else {
            task_rows(std::slice::from_ref(v))
        }
    };
    match cmd {
        TaskCmd::New {
            title,
            prompt,
            agent,
            gates,
            max_attempts,
            priority,
        } => {
            let mut p = json!({ "title": title, "prompt": prompt });
            if let Some(a) = agent {
                p["agentId"] = json!(a);
            }
            if !gates.is_empty() {
                p["gates"] = json!(gates);
            }
            if let Some(m) = max_attempts {
                p["maxAttempts"] = json!(m);
            }
            if let Some(pr) = priority {
                p["priority"] = json!(pr);
            }
            out(&call(c, "orch/task/create", p).await?);
        }
        TaskCmd::List { state } => {
            let mut p = json!({});
            if let Some(st) = state {
                p["state"] = json!(st);
            }
            let items = list_all(c, "orch/task/list", p).await?;
            if json_out {
                print_json(&json!(items));
            } else {
                task_rows(&items);
            }
        }
        TaskCmd::Get { id } => {
            let t = call(c, "orch/task/get", json!({ "id": id })).await?;
            if json_out {
                print_json(&t);
            } else {
                task_rows(std::slice::from_ref(&t));
                for r in t["gateResults"].as_array().into_iter().flatten() {
                    let verdict = if r["ok"].as_bool() == Some(true) {
                        "passed"
                    } else {
                        "failed"
                    };
                    println!(
                        "  gate {} attempt {}: {verdict} (exit {}, {} ms)",
                        s(&r["name"]),
                        r["attempt"],
                        s(&r["exitCode"]),
                        r["durationMs"]
                    );
                }
            }
        }
        TaskCmd::Complete { id, summary } => {
            // Inside an agent: its current task (it may have changed since the agent started, so
            // this wins over the spawn-time ORCH_TASK_ID).
            let own = match std::env::var("ORCH_AGENT_ID")
                .ok()
                .filter(|a| !a.is_empty())
            {
                Some(agent) if id.is_none() => {
                    let a = call(c, "orch/agent/get", json!({ "id": agent })).await?;
                    a["taskId"].as_str().map(String::from)
                }
                _ => None,
            };
            let id = id
                .or(own)
                .or_else(|| std::env::var("ORCH_TASK_ID").ok().filter(|s| !s.is_empty()))
                .ok_or_else(|| {
                    anyhow!("give a task id (this agent has no task, and no ORCH_TASK_ID is set)")
                })?;
            let mut p = json!({ "id": id });
            if let Some(sm) = summary {
                p["summary"] = json!(sm);
            }
            out(&call(c, "orch/task/complete", p).await?);
        }
        TaskCmd::Cancel { id } => out(&call(c, "orch/task/cancel", json!({ "id": id })).await?),
    }
    Ok(0)
}

async fn decision(c: &mut Client, cmd: DecisionCmd, json_out: bool) -> anyhow::Result<i32> {
    let rows = |items: &[Value]| {
        table(
            &["ID", "STATE", "TITLE", "OPTIONS", "CHOICE", "SOURCE", "AGE"],
            items
                .iter()
                .map(|d| {
                    let opts: Vec<String> = d["options"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(s)
                        .collect();
                    vec![
                        s(&d["id"]),
                        s(&d["state"]),
                        s(&d["title"]),
                        opts.join("/"),
                        s(&d["choice"]),
                        format!("{} {}", s(&d["source"]["kind"]), s(&d["source"]["id"])),
                        age(&d["createdAt"]),
                    ]
                })
                .collect(),
        )
    };
    match cmd {
        DecisionCmd::List { state } => {
            let mut p = json!({});
            if let Some(st) = state {
                p["state"] = json!(st);
            }
            let mut items = list_all(c, "orch/decision/list", p).await?;
            // Pending first, each group in creation order.
            items.sort_by_key(|d| d["state"] != "pending");
            if json_out {
                print_json(&json!(items))
            } else {
                rows(&items)
            }
        }
        DecisionCmd::Resolve { id, choice, reason } => {
            let mut p = json!({ "id": id, "choice": choice });
            if let Some(r) = reason {
                p["reason"] = json!(r);
            }
            let d = call(c, "orch/decision/resolve", p).await?;
            if json_out {
                print_json(&d)
            } else {
                rows(std::slice::from_ref(&d))
            }
        }
    }
    Ok(0)
}

/// The rows of `orch diff --stat`, a summary line after them (pure, for tests).
fn stat_lines(d: &Value) -> (Vec<Vec<String>>, String) {
    let files = d["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    let (mut added, mut deleted) = (0, 0);
    let rows = files
        .iter()
        .map(|f| {
            added += f["additions"].as_u64().unwrap_or(0);
            deleted += f["deletions"].as_u64().unwrap_or(0);
            let path = match f["oldPath"].as_str() {
                Some(old) => format!("{old} -> {}", s(&f["path"])),
                None => s(&f["path"]),
            };
            if f["binary"] == true {
                vec![
                    s(&f["status"]),
                    format!("{path} (binary)"),
                    "-".into(),
                    "-".into(),
                ]
            } else {
                vec![
                    s(&f["status"]),
                    path,
                    s(&f["additions"]),
                    s(&f["deletions"]),
                ]
            }
        })
        .collect();
    let plural = |n: usize, one: &str| {
        if n == 1 {
            one.to_string()
        } else {
            format!("{one}s")
        }
    };
    let summary = format!(
        "{} {} changed, +{added} -{deleted} ({} against {} at {})",
        files.len(),
        plural(files.len(), "file"),
        s(&d["branch"]),
        s(&d["base"]),
        short(&d["mergeBase"]),
    );
    (rows, summary)
}

/// A commit's first 12 hex digits.
fn short(commit: &Value) -> String {
    let c = s(commit);
    c.get(..12).map(String::from).unwrap_or(c)
}

fn print_stat(d: &Value) {
    let (rows, summary) = stat_lines(d);
    if !rows.is_empty() {
        table(&["STATUS", "PATH", "+", "-"], rows);
    }
    println!("{summary}");
}

/// The unified diff as the daemon gave it, for people and for `git apply`: notes go to stderr.
fn print_diff(d: &Value, agent: &str) {
    let diff = d["diff"].as_str().unwrap_or("");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(diff.as_bytes());
    if !diff.is_empty() && !diff.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
    let files = d["files"].as_array().map_or(0, Vec::len);
    if files == 0 {
        eprintln!(
            "{} has no changes against {}",
            s(&d["branch"]),
            s(&d["base"])
        );
    } else if d["truncated"] == true {
        eprintln!(
            "orch: the diff was cut at the daemon's size limit; `orch diff {agent} --stat` lists all {files} changed files"
        );
    }
}

/// `orch merge`: a conflict prints the files in conflict and exits 1.
async fn merge(
    c: &mut Client,
    agent: &str,
    squash: bool,
    rebase: bool,
    message: Option<String>,
    json_out: bool,
) -> anyhow::Result<i32> {
    let strategy = match (squash, rebase) {
        (true, _) => "squash",
        (_, true) => "rebase",
        _ => "merge",
    };
    // For the report: what lands where (the merge itself may change the agent).
    let a = call(c, "orch/agent/get", json!({ "id": agent })).await?;
    let mut p = json!({ "id": agent, "strategy": strategy });
    if let Some(m) = message {
        p["message"] = json!(m);
    }
    let merged = match c.call("orch/agent/merge", p).await {
        Ok(v) => v,
        Err(CallError::Rpc(e)) => {
            let files = e
                .data
                .as_ref()
                .and_then(|d| d["files"].as_array())
                .filter(|_| e.code == editor_protocol::errors::CONFLICT);
            eprintln!("orch: {}", e.message);
            if let Some(files) = files {
                eprintln!("files in conflict:");
                for f in files {
                    eprintln!("  {}", s(f));
                }
            }
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    if json_out {
        print_json(&merged);
        return Ok(0);
    }
    let w = &a["worktree"];
    println!(
        "merged {} into {} ({strategy}): {}",
        s(&w["branch"]),
        s(&w["base"]),
        s(&merged["commit"])
    );
    for f in merged["files"].as_array().into_iter().flatten() {
        println!("  {}", s(f));
    }
    Ok(0)
}

/// `orch discard`: refused for a live agent; unmerged work raises a decision unless --force.
async fn discard(c: &mut Client, agent: &str, force: bool, json_out: bool) -> anyhow::Result<i32> {
    let p = json!({ "id": agent, "force": force });
    match c.call("orch/agent/discard", p).await {
        Ok(v) if json_out => print_json(&v),
        Ok(_) => println!("discarded the worktree and branch of {agent}"),
        Err(CallError::Rpc(e)) => {
            eprintln!("orch: {}", e.message);
            if e.code == editor_protocol::errors::CONFLICT && e.message.contains("decision") {
                eprintln!(
                    "answer the decision with `orch decision resolve`, or discard anyway with `orch discard {agent} --force`"
                );
            }
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}

fn event_line(e: &Value) -> String {
    let data = &e["data"];
    let detail = match (data.get("state"), data.get("evidence")) {
        (Some(st), Some(ev)) => format!("{} -> {} ({})", s(&data["previous"]), s(st), s(ev)),
        _ => serde_json::to_string(data).unwrap_or_default(),
    };
    format!(
        "{:>6}  {}  {:<20} {:<8} {}",
        e["seq"],
        s(&e["time"]),
        s(&e["kind"]),
        s(&e["subject"]),
        detail
    )
}

async fn events(
    c: &mut Client,
    since: Option<u64>,
    follow: bool,
    kinds: Vec<String>,
    subjects: Vec<String>,
    json_out: bool,
) -> anyhow::Result<i32> {
    let print = |e: &Value| {
        if json_out {
            println!("{}", serde_json::to_string(e).unwrap_or_default())
        } else {
            println!("{}", event_line(e))
        }
    };
    if follow {
        // Live events only, unless asked to replay from a seq.
        let mut p = json!({});
        if let Some(since) = since {
            p["since"] = json!(since);
        }
        if !kinds.is_empty() {
            p["kinds"] = json!(kinds);
        }
        if !subjects.is_empty() {
            p["subjects"] = json!(subjects);
        }
        call(c, "orch/events/subscribe", p).await?;
        loop {
            let n = c.next_notification().await.map_err(|e| anyhow!("{e}"))?;
            if n.method == "orch/event" {
                print(&n.params["event"]);
                let _ = std::io::stdout().flush();
            }
        }
    }
    let mut p = json!({ "limit": 1000 });
    if let Some(since) = since {
        p["since"] = json!(since);
    }
    if !kinds.is_empty() {
        p["kinds"] = json!(kinds);
    }
    if !subjects.is_empty() {
        p["subjects"] = json!(subjects);
    }
    loop {
        let page = call(c, "orch/events/query", p.clone()).await?;
        for e in page["items"].as_array().into_iter().flatten() {
            print(e);
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(cur) => p["cursor"] = json!(cur),
            None => return Ok(0),
        }
    }
}

async fn wait(
    c: &mut Client,
    task: &str,
    timeout: Option<u64>,
    json_out: bool,
) -> anyhow::Result<i32> {
    let verdict = |t: &Value| match t["state"].as_str() {
        Some("done") => Some(0),
        Some("failed" | "escalated" | "cancelled") => Some(1),
        _ => None,
    };
    call(
        c,
        "orch/events/subscribe",
        json!({ "kinds": ["task."], "subjects": [task] }),
    )
    .await?;
    let t = call(c, "orch/task/get", json!({ "id": task })).await?;
    let finish = |t: &Value, code: i32| {
        if json_out {
            print_json(t);
        } else {
            println!("task {} is {}", s(&t["id"]), s(&t["state"]));
        }
        code
    };
    if let Some(code) = verdict(&t) {
        return Ok(finish(&t, code));
    }
    let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let next = c.next_notification();
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d, next).await {
                Ok(n) => n,
                Err(_) => {
                    eprintln!("orch: timed out waiting for task {task}");
                    return Ok(2);
                }
            },
            None => next.await,
        };
        let n = n.map_err(|e| anyhow!("{e}"))?;
        if n.method == "orch/event" && n.params["event"]["kind"] == "task.state" {
            let t = call(c, "orch/task/get", json!({ "id": task })).await?;
            if let Some(code) = verdict(&t) {
                return Ok(finish(&t, code));
            }
        }
    }
}

/// Raw mode on a tty, restored on drop.
struct RawMode {
    /// The settings to restore.
    saved: libc::termios,
}

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        // SAFETY: termios calls on stdin with a zeroed struct filled by tcgetattr.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                bail!("attach needs a terminal on stdin");
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Ok(Self { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring settings read by tcgetattr.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

/// The detach key: Ctrl-].
const DETACH: u8 = 0x1d;

async fn attach(c: &mut Client, agent: &str, paths: &WorkspacePaths) -> anyhow::Result<i32> {
    let a = call(c, "orch/agent/get", json!({ "id": agent })).await?;
    if a["backend"] == "tmux" {
        // A tmux agent is best seen in tmux itself: attach to its window.
        let terms = list_all(c, "orch/terminal/list", json!({})).await?;
        let handle = terms
            .iter()
            .find(|t| t["id"] == a["terminalId"])
            .and_then(|t| t["handle"].as_str())
            .ok_or_else(|| anyhow!("agent {agent} has no live tmux window"))?;
        let config = crate::config::Config::load(&paths.root)?;
        let argv = match a["host"].as_str() {
            // On its host, through `ssh -t`.
            Some(host) => crate::adapters::host_tmux_config(paths, &config, host)
                .ok_or_else(|| {
                    anyhow!("agent {agent} runs on host {host}, which orch.toml no longer names")
                })?
                .attach_argv(handle),
            None => crate::adapters::tmux_attach_command(paths, &config, handle),
        };
        let err = std::os::unix::process::CommandExt::exec(
            std::process::Command::new(&argv[0]).args(&argv[1..]),
        );
        bail!("cannot run {}: {err}", argv[0]);
    }
    let tid = s(&a["terminalId"]);
    let screen = call(c, "orch/terminal/screen", json!({ "id": tid })).await?;
    call(c, "orch/terminal/subscribe", json!({ "id": tid })).await?;
    let _raw = RawMode::enable()?;
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "\x1b[2J\x1b[H{}", s(&screen["ansi"]));
    let _ = stdout.flush();
    let (key_tx, mut key_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        loop {
            // SAFETY: read into a stack buffer from fd 0.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || key_tx.send(buf[..n as usize].to_vec()).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            keys = key_rx.recv() => {
                let Some(keys) = keys else { break };
                if let Some(pos) = keys.iter().position(|b| *b == DETACH) {
                    if pos > 0 {
                        c.notify("orch/terminal/write", json!({ "id": tid, "data": String::from_utf8_lossy(&keys[..pos]) })).await.map_err(|e| anyhow!("{e}"))?;
                    }
                    break;
                }
                c.notify("orch/terminal/write", json!({ "id": tid, "data": String::from_utf8_lossy(&keys) })).await.map_err(|e| anyhow!("{e}"))?;
            }
            n = c.next_notification() => {
                let n = n.map_err(|e| anyhow!("{e}"))?;
                if n.method != "orch/terminal/output" || n.params["id"] != json!(tid) { continue }
                if n.params["resync"] == json!(true) {
                    let screen = call(c, "orch/terminal/screen", json!({ "id": tid })).await?;
                    let _ = write!(stdout, "\x1b[2J\x1b[H{}", s(&screen["ansi"]));
                } else if let Some(d) = n.params["data"].as_str() {
                    let _ = stdout.write_all(d.as_bytes());
                }
                let _ = stdout.flush();
            }
        }
    }
    drop(_raw);
    println!("\r\n[detached from {agent}; it keeps running]");
    Ok(0)
}

/// The daemon lives long and its threads come and go (the runtime's, a reader per terminal,
/// blocking work): glibc gives each thread an arena of its own and keeps what was freed in each,
/// which was a third of the daemon's growth under 100,000 events (tests/e2e/events.rs). Two
/// arenas serve two runtime workers; an explicit `MALLOC_ARENA_MAX` still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called before the runtime starts any thread; mallopt only sets a limit.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use serde_json::{json, Value};

    fn check_stat(diff: Value, expect: Expect) {
        let (rows, summary) = super::stat_lines(&diff);
        let mut text: Vec<String> = rows.iter().map(|r| r.join(" | ")).collect();
        text.push(summary);
        expect.assert_eq(&text.join("\n"));
    }

    #[test]
    fn diff_stat_rows_and_summary() {
        check_stat(
            json!({
                "base": "main", "mergeBase": "0123456789abcdef0123", "branch": "orch/w1",
                "files": [
                    { "path": "a.txt", "status": "modified", "additions": 1, "deletions": 0 },
                    { "path": "b.txt", "status": "added", "additions": 2, "deletions": 0 },
                    { "path": "c.txt", "status": "deleted", "additions": 0, "deletions": 3 },
                    { "path": "d.rs", "oldPath": "e.rs", "status": "renamed", "additions": 0, "deletions": 0 },
                    { "path": "logo.png", "status": "added", "additions": 0, "deletions": 0, "binary": true },
                ],
                "diff": "", "truncated": false,
            }),
            expect![[r#"
                modified | a.txt | 1 | 0
                added | b.txt | 2 | 0
                deleted | c.txt | 0 | 3
                renamed | e.rs -> d.rs | 0 | 0
                added | logo.png (binary) | - | -
                5 files changed, +3 -3 (orch/w1 against main at 0123456789ab)"#]],
        );
        check_stat(
            json!({ "base": "v1.0", "mergeBase": "abc", "branch": "fix", "files": [
                { "path": "a", "status": "modified", "additions": 1, "deletions": 1 },
            ] }),
            expect!["modified | a | 1 | 1\n1 file changed, +1 -1 (fix against v1.0 at abc)"],
        );
    }

    #[test]
    fn worktree_options_parse_and_conflict() {
        use clap::{CommandFactory, Parser};
        super::Cli::command().debug_assert();
        let parses = |args: &[&str]| {
            super::Cli::try_parse_from(["orch"].iter().chain(args))
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.kind().to_string())
        };
        let seen: Vec<String> = [
            &[
                "agent",
                "spawn",
                "shell",
                "--worktree",
                "--branch",
                "b",
                "--base",
                "main",
            ][..],
            &["agent", "spawn", "shell", "--branch", "b"],
            &["diff", "w1", "--stat", "--base", "main"],
            &["merge", "w1", "--squash", "-m", "landed"],
            &["merge", "w1", "--squash", "--rebase"],
            &["merge", "w1", "--rebase", "-m", "x"],
            &["discard", "w1", "--force"],
            &["pause", "w1"],
            &["resume", "w1"],
        ]
        .iter()
        .map(|a| format!("{}: {}", a.join(" "), parses(a)))
        .collect();
        expect![[r#"
            agent spawn shell --worktree --branch b --base main: ok
            agent spawn shell --branch b: one or more required arguments were not provided
            diff w1 --stat --base main: ok
            merge w1 --squash -m landed: ok
            merge w1 --squash --rebase: an argument cannot be used with one or more of the other specified arguments
            merge w1 --rebase -m x: an argument cannot be used with one or more of the other specified arguments
            discard w1 --force: ok
            pause w1: ok
            resume w1: ok"#]]
        .assert_eq(&seen.join("\n"));
    }

    #[test]
    fn branch_cells() {
        let cells: Vec<String> = [
            json!(null),
            json!({ "branch": "orch/w1", "changes": 3, "paused": false }),
            json!({ "branch": "orch/w2", "changes": 0, "paused": true }),
        ]
        .iter()
        .map(super::branch_cell)
        .collect();
        expect![[r#"["-", "orch/w1 (3)", "orch/w2 (0, paused)"]"#]]
            .assert_eq(&format!("{cells:?}"));
    }
}
