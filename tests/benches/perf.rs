//! The performance bench: the real release `orch` daemon on real Unix sockets, each row measured
//! against a baseline in the same run, printed as markdown tables and, with `--write-docs` (or
//! `ORCH_BENCH_WRITE_DOCS=1`), written to `docs/performance.md` with the command, the machine and
//! a reading of the numbers against the goals. Performance goals are checked here, never by timed
//! tests.
//!
//! Run: `cargo build --release -p orch && cargo bench -p orch-tests --bench perf -- --write-docs`.
//! Naming groups (`-- protocol`) runs only those; unknown arguments (cargo passes `--bench`) are
//! ignored.
//!
//! The rows come in groups, listed in [`GROUPS`]: a group is one function that starts what it
//! needs (daemons on temporary directories, baselines, isolated tmux servers), measures with fixed
//! sample sizes, and returns [`Section`]s (a table, the goals it checks, a reading): `protocol`,
//! `peers` (the protocol rows against a serde_json JSON-RPC echo, rust-analyzer's `lsp-server`
//! and `tower-lsp`, run in the bench on Unix sockets), `clients` (writers with 64 clients
//! subscribed to every event against the same writers alone), `durability`, `history`, `pty`
//! (ingest of a program printing 50 MB of coloured text through the pty backend against a raw pty
//! with no emulator; keystroke echo), `tmux` (command latency and
//! ingest through control mode against a raw control-mode client; skipped, saying so, without
//! tmux), `agents` and `worktrees` (an agent's git worktree made by `orch/agent/spawn` and read
//! by `orch/agent/diff`, on a generated repository of 10,000 files, against plain git). Rows
//! whose component has not landed are listed in the document under "Not measured yet"
//! ([`NOT_MEASURED_YET`]).
//!
//! The bench knows the wire only through `editor-protocol` (framing, method names); it must not
//! know the daemon's internals.

use std::fmt::Write as _;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use editor_protocol::framing::{encode, FrameDecoder};
use editor_protocol::methods::{
    AgentDiff, AgentDiscard, AgentGet, AgentSpawn, ConfigReload, EventsQuery, EventsSubscribe,
    Method, SessionClose, SessionCreate, Status, EVENT_NOTIFICATION,
};
use orch_tests::Daemon;
use serde_json::{json, Value};

/// Sequential round trips per server before measuring (connection, caches, CPU frequency).
const RTT_WARMUP: usize = 2_000;
/// Sequential round trips measured per server.
const RTT_SAMPLES: usize = 20_000;
/// The measured round trips alternate between the servers in this many blocks, so that load from
/// elsewhere on a shared machine falls on both rather than on whichever ran second.
const RTT_BLOCKS: usize = 4;
/// Requests sent without waiting, per pipelined run.
const PIPELINE_REQUESTS: usize = 50_000;
/// Most requests a pipelining client leaves unanswered: servers bound requests in flight per
/// connection (the daemon refuses beyond its limit), so a client keeps a window.
const PIPELINE_WINDOW: usize = 1_024;
/// How often the pipelined reader tells the writer how many answers it has (a multiple of it
/// divides [`PIPELINE_WINDOW`], so the writer never waits for a count that is not published).
const ANSWERED_EVERY: usize = 64;
const _: () = assert!(PIPELINE_WINDOW / ANSWERED_EVERY * ANSWERED_EVERY == PIPELINE_WINDOW);
/// Pipelined runs per server (alternating); the median is reported.
const PIPELINE_RUNS: usize = 3;
/// `write` + `fdatasync` pairs for the durable-commit ceiling.
const FSYNC_WRITES: usize = 2_000;
/// Bytes per write for the durable-commit ceiling: about one small event.
const FSYNC_BYTES: usize = 200;
/// Sequential `orch/session/create` requests for the single-writer row.
const SINGLE_WRITER_EVENTS: usize = 2_000;
/// Concurrent connections for the group-commit row.
const GROUP_CONNECTIONS: usize = 8;
/// Pipelined `orch/session/create` requests per connection for the group-commit row.
const GROUP_EVENTS_PER_CONNECTION: usize = 1_000;

/// Finished objects (sessions created, then closed) a daemon holds before the history row.
const HISTORY_OBJECTS: usize = 100_000;
/// Pipelined `orch/session/create` requests per connection measured in the history rows: as many
/// events in all as the history holds objects, so the run covers the snapshots it costs.
const HISTORY_EVENTS_PER_CONNECTION: usize = HISTORY_OBJECTS / GROUP_CONNECTIONS;
/// Events of history in the start-up row (the goal's million).
const STARTUP_HISTORY_EVENTS: usize = 1_000_000;
/// Start-ups timed per store.
const STARTUP_RUNS: usize = 7;

/// Bytes of coloured text that `cat` prints in the pty ingest rows.
const PTY_INGEST_BYTES: usize = 50_000_000;
/// Measured runs per pty ingest variant, after one warm-up run each; the median is reported.
const PTY_INGEST_RUNS: usize = 7;
/// Keystroke echo samples per path before measuring.
const ECHO_WARMUP: usize = 50;
/// Keystroke echo samples measured per path.
const ECHO_SAMPLES: usize = 500;
/// The echo samples alternate between the paths in this many blocks.
const ECHO_BLOCKS: usize = 5;
/// tmux command round trips per path before measuring.
const TMUX_RTT_WARMUP: usize = 50;
/// tmux command round trips measured per path.
const TMUX_RTT_SAMPLES: usize = 500;
/// The tmux round trips alternate between the paths in this many blocks.
const TMUX_RTT_BLOCKS: usize = 5;
/// Bytes of coloured text that `cat` prints in the tmux ingest rows.
const TMUX_INGEST_BYTES: usize = 20_000_000;
/// Measured runs per tmux ingest path, after one warm-up run each; the median is reported.
const TMUX_INGEST_RUNS: usize = 5;
// Keys typed into one `cat` stay on its line (no Enter is ever typed): a canonical-mode line
// holds at most 4095 characters, beyond which a pty drops input.
const _: () = assert!(ECHO_WARMUP + ECHO_SAMPLES < 4_000);
const _: () = assert!(2 * (TMUX_RTT_WARMUP + TMUX_RTT_SAMPLES) < 4_000);

/// The exact command that produces `docs/performance.md`.
const COMMAND: &str =
    "cargo build --release -p orch && cargo bench -p orch-tests --bench perf -- --write-docs";

/// Every group of rows, in the order they run and appear. Add a group here: a function returning
/// its sections.
const GROUPS: &[Group] = &[
    Group {
        name: "protocol",
        run: protocol_group,
    },
    Group {
        name: "peers",
        run: peers_group,
    },
    Group {
        name: "clients",
        run: clients_group,
    },
    Group {
        name: "durability",
        run: durability_group,
    },
    Group {
        name: "history",
        run: history_group,
    },
    Group {
        name: "pty",
        run: pty_group,
    },
    Group {
        name: "footprint",
        run: footprint_group,
    },
    Group {
        name: "tmux",
        run: tmux_group,
    },
    Group {
        name: "hosts",
        run: hosts_group,
    },
    Group {
        name: "agents",
        run: agents_group,
    },
    Group {
        name: "worktrees",
        run: worktrees_group,
    },
];

/// Rows the goals name whose component has not landed: listed in the document so that a reader
/// sees what is missing rather than assuming it was measured.
const NOT_MEASURED_YET: &[&str] = &[];

/// Start and end markers of the hand-written notes in `docs/performance.md`, kept when the bench
/// rewrites the file.
const NOTES_START: &str = "<!-- notes: written by hand, kept when the bench rewrites this file -->";
const NOTES_END: &str = "<!-- /notes -->";

/// A group of rows: one subsystem measured against its baselines.
struct Group {
    /// Name for selecting it on the command line.
    name: &'static str,
    /// Measures and returns the group's sections.
    run: fn(&Env) -> Result<Vec<Section>>,
}

/// What every group may need from the bench.
struct Env {
    /// The `orch` binary measured (also exported as `ORCH_BIN` for [`Daemon`]).
    orch_bin: PathBuf,
    /// A directory for generated inputs and outputs, removed at the end.
    scratch: tempfile::TempDir,
    /// Generated text files by requested size, made once and shared by the groups.
    texts: Mutex<Vec<(usize, Arc<TextFile>)>>,
}

/// One table of results with the goals it checks.
struct Section {
    /// Heading.
    title: String,
    /// How it was measured, with the fixed sample sizes.
    method: String,
    /// The rows.
    table: Table,
    /// The goals these rows check.
    goals: Vec<Goal>,
    /// Observations computed from the numbers.
    reading: Vec<String>,
}

/// A markdown table.
struct Table {
    /// Column headings.
    head: Vec<&'static str>,
    /// Cells, row by row.
    rows: Vec<Vec<String>>,
}

/// A goal and whether this run met it.
struct Goal {
    /// The goal as stated.
    goal: String,
    /// What was measured against it.
    measured: String,
    /// Whether it holds in this run.
    met: bool,
}

/// Percentiles and mean of a latency sample.
#[derive(Clone, Copy)]
struct Latency {
    /// Median.
    p50: Duration,
    /// 99th percentile.
    p99: Duration,
    /// Mean.
    mean: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let write_docs = args.iter().any(|a| a == "--write-docs")
        || std::env::var("ORCH_BENCH_WRITE_DOCS").is_ok_and(|v| v == "1");
    let selected: Vec<&Group> = GROUPS
        .iter()
        .filter(|g| args.iter().any(|a| a == g.name))
        .collect();
    let groups: Vec<&Group> = if selected.is_empty() {
        GROUPS.iter().collect()
    } else {
        selected
    };
    if write_docs && groups.len() != GROUPS.len() {
        eprintln!("perf: --write-docs writes every group; run it without group names");
        std::process::exit(2);
    }
    let Some(orch_bin) = release_orch() else {
        std::process::exit(1);
    };
    // Daemon (the test harness) starts `$ORCH_BIN`; set it before any thread exists.
    std::env::set_var("ORCH_BIN", &orch_bin);
    warn_if_stale(&orch_bin);
    let scratch = match tempfile::Builder::new().prefix("orch-bench-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("perf: cannot make a scratch directory: {e}");
            std::process::exit(1);
        }
    };
    let env = Env {
        orch_bin,
        scratch,
        texts: Mutex::new(Vec::new()),
    };

    let load_before = loadavg();
    let started = Instant::now();
    let mut sections = Vec::new();
    for g in groups {
        eprintln!("perf: running the {} group", g.name);
        match (g.run)(&env) {
            Ok(s) => sections.extend(s),
            Err(e) => {
                eprintln!("perf: the {} group failed: {e:#}", g.name);
                // Exiting skips destructors: remove the generated files here.
                let _ = std::fs::remove_dir_all(env.scratch.path());
                std::process::exit(1);
            }
        }
    }
    let load_after = loadavg();
    let run = RunInfo {
        load_before,
        load_after,
        took: started.elapsed(),
        orch_bin: env.orch_bin.clone(),
    };

    let report = render_results(&sections);
    println!("{report}");
    println!("{}", render_goals(&sections));
    eprintln!(
        "perf: took {:.1}s; load average before {} / after {}",
        run.took.as_secs_f64(),
        run.load_before,
        run.load_after
    );
    if write_docs {
        match write_document(&sections, &run) {
            Ok(path) => eprintln!("perf: wrote {}", path.display()),
            Err(e) => {
                eprintln!("perf: cannot write docs/performance.md: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Group: protocol (request round trip, pipelined throughput)

/// `orch/status` round trips and pipelined throughput against a framing-only echo server.
fn protocol_group(_env: &Env) -> Result<Vec<Section>> {
    let (spread, pipe, status_bytes) = {
        let daemon = Daemon::started(None);
        let orch = Server::Orch(daemon.socket());
        let echo_server = SocketServer::echo()?;
        let echo = Server::Echo(echo_server.path.clone());
        eprintln!("perf:   round trips, placed by the scheduler");
        let spread = round_trips_both(&orch, &echo)?;
        let pipe = pipelined_section(&orch, &echo)?;
        (spread, pipe, status_size(&orch)?)
    };
    // A second daemon and echo server, started from a thread bound to one CPU, inherit the binding.
    let one_cpu = on_one_cpu(|| {
        let daemon = Daemon::started(None);
        let echo_server = SocketServer::echo()?;
        eprintln!("perf:   round trips, everything on one CPU");
        round_trips_both(
            &Server::Orch(daemon.socket()),
            &Server::Echo(echo_server.path.clone()),
        )
    })?;
    Ok(vec![
        round_trip_section(spread, one_cpu, status_bytes),
        pipe,
    ])
}

/// Round-trip latencies of the echo server and of orch: `(echo, orch)`.
fn round_trips_both(orch: &Server, echo: &Server) -> Result<(Latency, Latency)> {
    let l = round_trips_all(&[echo, orch])?;
    Ok((l[0], l[1]))
}

/// `orch/status` round-trip latencies of each of `servers`, measured in alternating blocks.
fn round_trips_all(servers: &[&Server]) -> Result<Vec<Latency>> {
    let mut conns = Vec::new();
    let mut samples = Vec::new();
    for s in servers.iter() {
        let mut c = s.connect()?;
        // Warm-up ids are negative so they never collide with measured ones.
        let warm = requests(Status::METHOD, -(RTT_WARMUP as i64), RTT_WARMUP, |_| {
            json!({})
        });
        let (_, answers) = round_trips(&mut c, &warm)?;
        s.verify(&answers, &warm)?;
        conns.push(c);
        samples.push(Vec::with_capacity(RTT_SAMPLES));
    }
    let per_block = RTT_SAMPLES / RTT_BLOCKS;
    for block in 0..RTT_BLOCKS {
        for (i, s) in servers.iter().enumerate() {
            let reqs = requests(
                Status::METHOD,
                1 + (block * per_block) as i64,
                per_block,
                |_| json!({}),
            );
            let (lat, answers) = round_trips(&mut conns[i], &reqs)?;
            s.verify(&answers, &reqs)?;
            samples[i].extend(lat);
        }
    }
    Ok(samples.iter_mut().map(|v| latency(v)).collect())
}

/// Run `f` with the calling thread bound to one CPU (the first it may use), so that every thread
/// and process `f` starts is bound there too: a hand-off between client and server is then a
/// context switch on that CPU rather than a wake-up of another one, which on a virtual machine
/// whose other CPU is idle costs tens of microseconds. The binding is undone afterwards.
fn on_one_cpu<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a zeroed cpu_set_t is a valid empty set; pid 0 is the calling thread.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    let cpu = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .find(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .ok_or_else(|| anyhow!("no CPU in this thread's affinity mask"))?;
    // SAFETY: as above.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a cpu_set_t of `size` bytes.
    if unsafe { libc::sched_setaffinity(0, size, &one) } != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    let result = f();
    // SAFETY: `allowed` is the mask read above.
    if unsafe { libc::sched_setaffinity(0, size, &allowed) } != 0 {
        bail!(
            "restoring the affinity mask: {}",
            std::io::Error::last_os_error()
        );
    }
    result
}

/// The round-trip table from latencies `(echo, orch)` with the scheduler's placement and on one
/// CPU.
fn round_trip_section(
    spread: (Latency, Latency),
    one_cpu: (Latency, Latency),
    status_bytes: usize,
) -> Section {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let mut rows = Vec::new();
    for (placement, (echo, orch)) in [("scheduler's choice", spread), ("one CPU", one_cpu)] {
        rows.push(vec![
            placement.into(),
            "echo (framing only)".into(),
            count(RTT_SAMPLES),
            us(echo.p50),
            us(echo.p99),
            us(echo.mean),
        ]);
        rows.push(vec![
            placement.into(),
            format!("orch `{}`", Status::METHOD),
            count(RTT_SAMPLES),
            us(orch.p50),
            us(orch.p99),
            us(orch.mean),
        ]);
        rows.push(vec![
            placement.into(),
            "**orch / echo**".into(),
            String::new(),
            times(ratio(orch.p50, echo.p50)),
            times(ratio(orch.p99, echo.p99)),
            times(ratio(orch.mean, echo.mean)),
        ]);
    }
    let p50_goal = |(echo, orch): (Latency, Latency), how: &str| {
        let r = ratio(orch.p50, echo.p50);
        Goal {
            goal: format!("request round trip p50 within 2x of a minimal echo server ({how})"),
            measured: format!("{} vs {} = {}", us(orch.p50), us(echo.p50), times(r)),
            met: r <= 2.0,
        }
    };
    let goals = vec![
        p50_goal(spread, "placed by the scheduler"),
        p50_goal(one_cpu, "everything on one CPU"),
        Goal {
            goal: "request round trip p99 under 100 us (placed by the scheduler)".into(),
            measured: us(spread.1.p99),
            met: spread.1.p99 < Duration::from_micros(100),
        },
    ];
    let mut reading = vec![format!(
        "On one CPU, a round trip of `{}` costs {} at the median against {} for the echo server: the \
         {} between them is the daemon's own work per request (decode, JSON-RPC parse, the hand-offs \
         between its tasks, the status itself, encode, write).",
        Status::METHOD,
        us(one_cpu.1.p50),
        us(one_cpu.0.p50),
        us(one_cpu.1.p50.saturating_sub(one_cpu.0.p50)),
    )];
    if spread.0.p50 > one_cpu.0.p50 * 2 {
        reading.push(format!(
            "Placed by the scheduler, even the echo server's median round trip is {} against {} on one CPU: \
             the other CPU was idle and each wake-up of it dominates both servers' round trips, which hides \
             the daemon's own cost; on a busy machine the scheduler's placement approaches the one-CPU ratio.",
            us(spread.0.p50),
            us(one_cpu.0.p50),
        ));
    }
    Section {
        title: "Request round trip".into(),
        method: format!(
            "One connection per server, one request at a time: write a framed `{}` request, read until \
             one whole frame is decoded (`editor_protocol::framing::FrameDecoder`, given at most {} KiB \
             at a time), repeat. The client code is the same for both servers; requests are encoded before \
             timing, answers are copied aside and checked after it. {} warm-up round trips, then {} measured \
             per server in {} alternating blocks. The echo server is a thread in the bench that decodes \
             frames the same way and writes each read's bodies back framed in one write, on a Unix socket in \
             a 0700 directory like the daemon's. Its answer is the request (about {} bytes); orch's is the \
             status object (about {} bytes). Measured twice, each time with a fresh daemon and echo server: \
             placed by the scheduler, and with the client, the echo server and the daemon bound to one CPU, \
             where hand-offs cost a context switch instead of waking another CPU.",
            Status::METHOD,
            FEED / 1024,
            count(RTT_WARMUP),
            count(RTT_SAMPLES),
            RTT_BLOCKS,
            requests(Status::METHOD, 1, 1, |_| json!({}))[0].body.len(),
            status_bytes,
        ),
        table: Table { head: vec!["placement", "server", "round trips", "p50", "p99", "mean"], rows },
        goals,
        reading,
    }
}

fn pipelined_section(orch: &Server, echo: &Server) -> Result<Section> {
    let rates = pipelined_rates(&[echo, orch])?;
    let (echo_r, orch_r) = (rates[0], rates[1]);
    let ratio = orch_r.0 / echo_r.0;
    let row = |name: String, r: (f64, f64, f64)| {
        vec![
            name,
            count(PIPELINE_REQUESTS),
            per_s(r.0),
            format!("{} – {}", per_s(r.1), per_s(r.2)),
            us(Duration::from_secs_f64(1.0 / r.0)),
        ]
    };
    let mut rows = vec![
        row("echo (framing only)".into(), echo_r),
        row(format!("orch `{}`", Status::METHOD), orch_r),
    ];
    rows.push(vec![
        "**orch / echo**".into(),
        String::new(),
        times(ratio),
        String::new(),
        String::new(),
    ]);
    Ok(Section {
        title: "Pipelined throughput".into(),
        method: format!(
            "One connection per run: a writer thread writes {} framed `{}` requests without waiting for \
             answers, keeping at most {} unanswered (servers bound the requests in flight per connection; \
             each write sends every request the window allows), while the reader decodes answers until \
             it has all of them; the time is from the start of writing to the last answer. One warm-up \
             run, then {} runs per server, alternating; the median is reported with the range. Answers \
             are checked after timing (every id answered once, no error).",
            count(PIPELINE_REQUESTS),
            Status::METHOD,
            count(PIPELINE_WINDOW),
            PIPELINE_RUNS,
        ),
        table: Table {
            head: vec!["server", "requests", "requests/s (median)", "range", "time per request"],
            rows,
        },
        goals: vec![Goal {
            goal: "pipelined throughput at least half of the echo server's".into(),
            measured: format!("{} vs {} = {}", per_s(orch_r.0), per_s(echo_r.0), times(ratio)),
            met: ratio >= 0.5,
        }],
        reading: vec![format!(
            "Pipelined, orch answers {} `{}` requests per second, {} the framing-only echo server's rate: \
             one answer every {} against one every {}.",
            per_s(orch_r.0),
            Status::METHOD,
            times(ratio),
            us(Duration::from_secs_f64(1.0 / orch_r.0)),
            us(Duration::from_secs_f64(1.0 / echo_r.0)),
        )],
    })
}

/// Pipelined `orch/status` throughput of each of `servers` (see [`pipelined_section`]): the
/// median, lowest and highest requests per second of [`PIPELINE_RUNS`] runs after a warm-up.
fn pipelined_rates(servers: &[&Server]) -> Result<Vec<(f64, f64, f64)>> {
    eprintln!("perf:   pipelined ({PIPELINE_RUNS} x {PIPELINE_REQUESTS} requests per server)");
    let reqs = requests(Status::METHOD, 1, PIPELINE_REQUESTS, |_| json!({}));
    let frames = Frames::of(&reqs);
    let mut rates: Vec<Vec<f64>> = servers.iter().map(|_| Vec::new()).collect();
    // Run 0 warms up (allocator, page cache, queues) and is not counted.
    for run in 0..=PIPELINE_RUNS {
        for (i, s) in servers.iter().enumerate() {
            let c = s.connect()?;
            let t = Instant::now();
            let answers = pipeline(c, frames.clone(), PIPELINE_WINDOW)?;
            let took = t.elapsed();
            s.verify(&answers, &reqs)?;
            let rate = reqs.len() as f64 / took.as_secs_f64();
            eprintln!(
                "perf:     {} run {run}{}: {} requests/s",
                s.name(),
                if run == 0 { " (warm-up)" } else { "" },
                per_s(rate)
            );
            if run > 0 {
                rates[i].push(rate);
            }
        }
    }
    Ok(rates
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Group: peers (orch against other JSON-RPC servers)

/// `orch/status` round trips and pipelined throughput against three JSON-RPC servers answering
/// with the same result: a serde_json echo (the least a JSON-RPC server does per request),
/// rust-analyzer's `lsp-server` and `tower-lsp`, each in the bench on a Unix socket.
fn peers_group(_env: &Env) -> Result<Vec<Section>> {
    let (spread, pipe, reply_bytes) = {
        let daemon = Daemon::started(None);
        let orch = Server::Orch(daemon.socket());
        let peers = Peers::start(status_result(&orch)?)?;
        let servers = peers.servers();
        let all = [&servers[0], &servers[1], &servers[2], &orch];
        eprintln!("perf:   round trips, placed by the scheduler");
        let spread = round_trips_all(&all)?;
        let pipe = pipelined_rates(&all)?;
        (spread, pipe, status_size(&orch)?)
    };
    // As in the protocol group: started from a thread bound to one CPU, the daemon, the peers'
    // threads and the runtime's workers inherit the binding.
    let one_cpu = on_one_cpu(|| {
        let daemon = Daemon::started(None);
        let orch = Server::Orch(daemon.socket());
        let peers = Peers::start(status_result(&orch)?)?;
        let servers = peers.servers();
        eprintln!("perf:   round trips, everything on one CPU");
        round_trips_all(&[&servers[0], &servers[1], &servers[2], &orch])
    })?;
    Ok(vec![
        peers_round_trip_section(&spread, &one_cpu, reply_bytes),
        peers_pipelined_section(&pipe),
    ])
}

/// The servers of the peers rows, in their order: names for the tables.
const PEER_NAMES: [&str; 4] = [
    "JSON-RPC echo (serde_json)",
    "`lsp-server` 0.10",
    "`tower-lsp` 0.20",
    "orch",
];

fn peers_round_trip_section(
    spread: &[Latency],
    one_cpu: &[Latency],
    reply_bytes: usize,
) -> Section {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let mut rows = Vec::new();
    for (placement, l) in [("scheduler's choice", spread), ("one CPU", one_cpu)] {
        let orch = l[3];
        for (i, name) in PEER_NAMES.iter().enumerate() {
            rows.push(vec![
                placement.into(),
                (*name).into(),
                count(RTT_SAMPLES),
                us(l[i].p50),
                us(l[i].p99),
                us(l[i].mean),
                if i == 3 {
                    String::new()
                } else {
                    format!(
                        "**{}** / {}",
                        times(ratio(orch.p50, l[i].p50)),
                        times(ratio(orch.p99, l[i].p99))
                    )
                },
            ]);
        }
    }
    let p50_goal = |l: &[Latency], how: &str| {
        let orch = l[3].p50;
        Goal {
            goal: format!("request round trip p50 below `lsp-server`'s and `tower-lsp`'s ({how})"),
            measured: format!("{} vs {} and {}", us(orch), us(l[1].p50), us(l[2].p50)),
            met: orch < l[1].p50 && orch < l[2].p50,
        }
    };
    let mut reading = Vec::new();
    for (how, l) in [("Placed by the scheduler", spread), ("On one CPU", one_cpu)] {
        reading.push(format!(
            "{how}, orch's median round trip is {} against {} for `lsp-server`, {} for `tower-lsp` \
             and {} for the serde_json echo ({} / {} / {}); at the 99th percentile {} against {}, \
             {} and {}.",
            us(l[3].p50),
            us(l[1].p50),
            us(l[2].p50),
            us(l[0].p50),
            times(ratio(l[3].p50, l[1].p50)),
            times(ratio(l[3].p50, l[2].p50)),
            times(ratio(l[3].p50, l[0].p50)),
            us(l[3].p99),
            us(l[1].p99),
            us(l[2].p99),
            us(l[0].p99),
        ));
    }
    Section {
        title: "Request round trip against other JSON-RPC servers".into(),
        method: format!(
            "As the request round trip above (one connection per server, {} warm-up round trips, \
             then {} measured per server in {} alternating blocks, the same client code, answers \
             checked after timing), against three servers in the bench process, each on its own \
             Unix socket in a 0700 directory and answering `{}` with the same result: the status \
             object a fresh daemon gave (about {} bytes with the JSON-RPC envelope, as orch's). \
             JSON-RPC echo: a thread per connection that decodes frames like the echo server, \
             parses each request with serde_json (id, method, params), checks the method and \
             serializes a response carrying the result, answering each read's requests in one \
             write. `lsp-server` (rust-analyzer's): its socket transport (a reader thread, a \
             writer thread and rendezvous channels, as in the crate's `socket.rs`, which takes a \
             `TcpStream`) on the Unix stream, `Connection::initialize`, then a main loop answering \
             `Response::new_ok`. `tower-lsp`: an `LspService` with `{}` as a custom method on a \
             2-worker tokio runtime (as the daemon's), one `Server::serve` per connection with the \
             default concurrency. Connections to `lsp-server`, `tower-lsp` and orch start with \
             `initialize` and `initialized` (outside timing). Measured twice, each time with fresh \
             servers: placed by the scheduler, and everything bound to one CPU. The last column is \
             orch's p50 and p99 over the row's.",
            count(RTT_WARMUP),
            count(RTT_SAMPLES),
            RTT_BLOCKS,
            Status::METHOD,
            reply_bytes,
            Status::METHOD,
        ),
        table: Table {
            head: vec![
                "placement",
                "server",
                "round trips",
                "p50",
                "p99",
                "mean",
                "orch / server (p50 / p99)",
            ],
            rows,
        },
        goals: vec![
            p50_goal(spread, "placed by the scheduler"),
            p50_goal(one_cpu, "everything on one CPU"),
        ],
        reading,
    }
}

fn peers_pipelined_section(rates: &[(f64, f64, f64)]) -> Section {
    let orch = rates[3].0;
    let rows = PEER_NAMES
        .iter()
        .zip(rates)
        .enumerate()
        .map(|(i, (name, r))| {
            vec![
                (*name).into(),
                count(PIPELINE_REQUESTS),
                per_s(r.0),
                format!("{} – {}", per_s(r.1), per_s(r.2)),
                us(Duration::from_secs_f64(1.0 / r.0)),
                if i == 3 {
                    String::new()
                } else {
                    format!("**{}**", times(orch / r.0))
                },
            ]
        })
        .collect();
    let echo_ratio = orch / rates[0].0;
    Section {
        title: "Pipelined throughput against other JSON-RPC servers".into(),
        method: format!(
            "As the pipelined throughput above ({} `{}` requests per run, at most {} unanswered, one \
             warm-up run, then {} runs per server, alternating; the median with the range; answers \
             checked after timing), against the servers of the round-trip rows above, placed by \
             the scheduler.",
            count(PIPELINE_REQUESTS),
            Status::METHOD,
            count(PIPELINE_WINDOW),
            PIPELINE_RUNS,
        ),
        table: Table {
            head: vec!["server", "requests", "requests/s (median)", "range", "time per request", "orch / server"],
            rows,
        },
        goals: vec![
            Goal {
                goal: "pipelined throughput above `lsp-server`'s and `tower-lsp`'s".into(),
                measured: format!(
                    "{} vs {} and {} requests/s",
                    per_s(orch),
                    per_s(rates[1].0),
                    per_s(rates[2].0)
                ),
                met: orch > rates[1].0 && orch > rates[2].0,
            },
            Goal {
                goal: "pipelined throughput at least half of a JSON-RPC echo's (serde_json, the same reply)".into(),
                measured: format!(
                    "{} vs {} = {}",
                    per_s(orch),
                    per_s(rates[0].0),
                    times(echo_ratio)
                ),
                met: echo_ratio >= 0.5,
            },
        ],
        reading: vec![format!(
            "Pipelined, orch answers {} `{}` requests per second: {} `lsp-server`'s {}, {} \
             `tower-lsp`'s {} and {} the serde_json echo's {}.",
            per_s(orch),
            Status::METHOD,
            times(orch / rates[1].0),
            per_s(rates[1].0),
            times(orch / rates[2].0),
            per_s(rates[2].0),
            times(echo_ratio),
            per_s(rates[0].0),
        )],
    }
}

/// The result of an `orch/status`: what the peers serve.
fn status_result(server: &Server) -> Result<Value> {
    let mut v = server.connect()?.call(-1, Status::METHOD, json!({}))?;
    match v.get_mut("result") {
        Some(r) => Ok(r.take()),
        None => bail!("orch/status failed: {v}"),
    }
}

/// The peers' servers, each on its own socket, serving the same `orch/status` result.
struct Peers {
    /// The serde_json echo.
    jsonrpc: SocketServer,
    /// rust-analyzer's `lsp-server`.
    lsp_server: SocketServer,
    /// `tower-lsp`, on its own tokio runtime.
    tower_lsp: SocketServer,
    /// The result they serve.
    reply: Arc<Value>,
}

impl Peers {
    fn start(reply: Value) -> Result<Self> {
        let reply = Arc::new(reply);
        let r = reply.clone();
        let jsonrpc = SocketServer::start("jsonrpc", None, move |s| {
            let r = r.clone();
            std::thread::spawn(move || jsonrpc_echo_connection(s, r));
        })?;
        let r = reply.clone();
        let lsp_server = SocketServer::start("lsp-server", None, move |s| {
            let r = r.clone();
            std::thread::spawn(move || {
                // A connection that breaks off only ends its threads.
                let _ = lsp_server_connection(s, r);
            });
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let r = reply.clone();
        let tower_lsp = SocketServer::start("tower-lsp", Some(runtime), move |s| {
            handle.spawn(tower_lsp_connection(s, r.clone()));
        })?;
        Ok(Self {
            jsonrpc,
            lsp_server,
            tower_lsp,
            reply,
        })
    }

    /// The three as servers to measure, in [`PEER_NAMES`] order.
    fn servers(&self) -> [Server; 3] {
        let peer = |name, s: &SocketServer, initialize| Server::Peer {
            name,
            path: s.path.clone(),
            initialize,
            reply: self.reply.clone(),
        };
        [
            peer("jsonrpc-echo", &self.jsonrpc, false),
            peer("lsp-server", &self.lsp_server, true),
            peer("tower-lsp", &self.tower_lsp, true),
        ]
    }
}

/// A request as the JSON-RPC echo parses it.
#[derive(serde::Deserialize)]
struct EchoRequest {
    /// Echoed in the answer.
    id: Value,
    /// Checked.
    method: String,
    /// Parsed, unused (`orch/status` takes none).
    #[serde(default)]
    #[allow(dead_code)]
    params: Value,
}

/// The JSON-RPC echo's answer.
#[derive(serde::Serialize)]
struct EchoResponse<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// Answer framed JSON-RPC requests until EOF: parse each, serialize its response with `reply` as
/// the result, and write each read's answers in one write (as [`echo_connection`]).
fn jsonrpc_echo_connection(mut s: UnixStream, reply: Arc<Value>) {
    let mut reader = FrameReader::new();
    let mut out = Vec::new();
    let mut body = Vec::new();
    loop {
        loop {
            match reader.next_buffered() {
                Ok(Some(frame)) => {
                    let Ok(req) = serde_json::from_slice::<EchoRequest>(&frame) else {
                        return;
                    };
                    let known = req.method == Status::METHOD;
                    body.clear();
                    let written = serde_json::to_writer(
                        &mut body,
                        &EchoResponse {
                            jsonrpc: "2.0",
                            id: &req.id,
                            result: known.then_some(&*reply),
                            error: (!known)
                                .then(|| json!({ "code": -32601, "message": "method not found" })),
                        },
                    );
                    if written.is_err() {
                        return;
                    }
                    out.extend_from_slice(&encode(&body));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if !matches!(reader.fill(&mut s), Ok(true)) {
            return;
        }
    }
}

/// One `lsp-server` connection: initialize, then answer `orch/status` with `reply` until the
/// client goes away.
fn lsp_server_connection(stream: UnixStream, reply: Arc<Value>) -> Result<()> {
    use lsp_server::{ErrorCode, Message, Response};
    let (conn, threads) = lsp_server_transport(stream)?;
    conn.initialize(json!({}))?;
    for msg in &conn.receiver {
        if let Message::Request(req) = msg {
            if conn.handle_shutdown(&req)? {
                break;
            }
            let resp = if req.method == Status::METHOD {
                Response::new_ok(req.id, &*reply)
            } else {
                Response::new_err(
                    req.id,
                    ErrorCode::MethodNotFound as i32,
                    "method not found".into(),
                )
            };
            conn.sender.send(resp.into())?;
        }
    }
    drop(conn);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// `lsp-server`'s socket transport (its `socket.rs`, which takes a `TcpStream`) on a Unix stream:
/// a reader thread and a writer thread joined to the [`lsp_server::Connection`] by rendezvous
/// channels, and a thread dropping written messages. Unlike the crate's, a broken connection ends
/// the threads instead of panicking them.
fn lsp_server_transport(
    stream: UnixStream,
) -> Result<(lsp_server::Connection, [JoinHandle<()>; 3])> {
    use lsp_server::Message;
    let read_half = stream.try_clone()?;
    let (reader_sender, reader_receiver) = crossbeam_channel::bounded::<Message>(0);
    let reader = std::thread::spawn(move || {
        let mut buf_read = std::io::BufReader::new(read_half);
        while let Ok(Some(msg)) = Message::read(&mut buf_read) {
            let is_exit = matches!(&msg, Message::Notification(n) if n.method == "exit");
            if reader_sender.send(msg).is_err() || is_exit {
                break;
            }
        }
    });
    let (writer_sender, writer_receiver) = crossbeam_channel::bounded::<Message>(0);
    let (drop_sender, drop_receiver) = crossbeam_channel::bounded::<Message>(0);
    let mut stream = stream;
    let writer = std::thread::spawn(move || {
        for msg in writer_receiver {
            let written = msg.write(&mut stream);
            let _ = drop_sender.send(msg);
            if written.is_err() {
                break;
            }
        }
    });
    let dropper = std::thread::spawn(move || drop_receiver.into_iter().for_each(drop));
    Ok((
        lsp_server::Connection {
            sender: writer_sender,
            receiver: reader_receiver,
        },
        [reader, writer, dropper],
    ))
}

/// The `tower-lsp` server: only the lifecycle and `orch/status`.
struct TowerBackend {
    /// The result served.
    reply: Arc<Value>,
}

/// A shared result, serialized as the value it holds (no copy per request before the crate's own).
struct SharedValue(Arc<Value>);

impl serde::Serialize for SharedValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[tower_lsp::async_trait]
impl tower_lsp::LanguageServer for TowerBackend {
    async fn initialize(
        &self,
        _: tower_lsp::lsp_types::InitializeParams,
    ) -> tower_lsp::jsonrpc::Result<tower_lsp::lsp_types::InitializeResult> {
        Ok(Default::default())
    }

    async fn shutdown(&self) -> tower_lsp::jsonrpc::Result<()> {
        Ok(())
    }
}

impl TowerBackend {
    /// `orch/status`, a custom method taking params (`{}`).
    async fn status(&self, _params: Value) -> tower_lsp::jsonrpc::Result<SharedValue> {
        Ok(SharedValue(self.reply.clone()))
    }
}

/// Serve one `tower-lsp` connection on the runtime until the client goes away.
async fn tower_lsp_connection(s: UnixStream, reply: Arc<Value>) {
    if s.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(s) = tokio::net::UnixStream::from_std(s) else {
        return;
    };
    let (read, write) = s.into_split();
    let (service, socket) = tower_lsp::LspService::build(|_client| TowerBackend { reply })
        .custom_method(Status::METHOD, TowerBackend::status)
        .finish();
    tower_lsp::Server::new(read, write, socket)
        .serve(service)
        .await;
}

// ---------------------------------------------------------------------------------------------
// Group: clients (many subscribers while writers append)

/// Clients subscribed to every event in the clients rows.
const SUBSCRIBERS: usize = 64;
/// Measured runs per side in the clients rows, alternating, each on a fresh daemon, after one
/// warm-up run per side; the median is reported.
const CLIENTS_RUNS: usize = 3;
/// How long a subscriber waits for its next message before it is counted as not delivered to.
const SUBSCRIBER_WAIT: Duration = Duration::from_secs(30);

/// Writers' throughput with [`SUBSCRIBERS`] clients subscribed to every event and reading,
/// against the same writers with no subscriber; every subscriber must get every event in order.
fn clients_group(_env: &Env) -> Result<Vec<Section>> {
    let total = GROUP_CONNECTIONS * GROUP_EVENTS_PER_CONNECTION;
    let mut alone = Vec::new();
    let mut watched = Vec::new();
    let mut ceilings = Vec::new();
    let mut problems = Vec::new();
    let mut sample = None;
    // Run 0 warms up and is not counted.
    for run in 0..=CLIENTS_RUNS {
        for subscribers in [0, SUBSCRIBERS] {
            let r = clients_run(subscribers, &format!("clients-{run}-{subscribers}"))?;
            if sample.is_none() {
                sample = r.sample.clone();
            }
            eprintln!(
                "perf:     {subscribers} subscribers, run {run}{}: writers {} events/s{}",
                if run == 0 { " (warm-up)" } else { "" },
                per_s(r.rate),
                r.delivered
                    .map(|d| format!(", all delivered after {}", ms(d)))
                    .unwrap_or_default()
            );
            problems.extend(r.problem.clone());
            if run > 0 {
                if subscribers == 0 {
                    &mut alone
                } else {
                    &mut watched
                }
                .push(r);
            }
        }
        if let Some(body) = &sample {
            let took = delivery_ceiling(body, total)?;
            eprintln!(
                "perf:     delivery ceiling, run {run}{}: {}",
                if run == 0 { " (warm-up)" } else { "" },
                ms(took)
            );
            if run > 0 {
                ceilings.push(took);
            }
        }
    }
    ceilings.sort();
    let ceiling = ceilings.get(ceilings.len() / 2).copied();
    let median = |runs: &mut Vec<ClientsRun>| {
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let rates = (
            runs[runs.len() / 2].rate,
            runs[0].rate,
            runs[runs.len() - 1].rate,
        );
        let mut d: Vec<Duration> = runs.iter().filter_map(|r| r.delivered).collect();
        d.sort();
        (rates, d.get(d.len() / 2).copied())
    };
    let (alone_r, _) = median(&mut alone);
    let (watched_r, delivered) = median(&mut watched);
    let ratio = watched_r.0 / alone_r.0;
    let notes = (SUBSCRIBERS * total) as f64;
    let table = Table {
        head: vec![
            "clients",
            "events",
            "writers' events/s (median)",
            "range",
            "all delivered (median)",
            "notifications/s",
        ],
        rows: vec![
            vec![
                format!("{GROUP_CONNECTIONS} writers, no subscriber"),
                count(total),
                per_s(alone_r.0),
                format!("{} – {}", per_s(alone_r.1), per_s(alone_r.2)),
                String::new(),
                String::new(),
            ],
            vec![
                format!(
                    "{GROUP_CONNECTIONS} writers, {SUBSCRIBERS} subscribers reading every event"
                ),
                count(total),
                per_s(watched_r.0),
                format!("{} – {}", per_s(watched_r.1), per_s(watched_r.2)),
                delivered.map(ms).unwrap_or_default(),
                delivered
                    .map(|d| per_s(notes / d.as_secs_f64()))
                    .unwrap_or_default(),
            ],
            vec![
                format!(
                    "ceiling, no daemon: the bench writing the notifications, serialized \
                     beforehand, to the same {SUBSCRIBERS} readers"
                ),
                count(total),
                ceiling
                    .map(|d| per_s(total as f64 / d.as_secs_f64()))
                    .unwrap_or_default(),
                String::new(),
                ceiling.map(ms).unwrap_or_default(),
                ceiling
                    .map(|d| per_s(notes / d.as_secs_f64()))
                    .unwrap_or_default(),
            ],
            vec![
                "**with / without subscribers**".into(),
                String::new(),
                times(ratio),
                String::new(),
                String::new(),
                String::new(),
            ],
        ],
    };
    let mut reading = vec![format!(
        "With {SUBSCRIBERS} clients subscribed to every event and reading, {GROUP_CONNECTIONS} \
         pipelining writers append {} events/s against {} with none ({}).",
        per_s(watched_r.0),
        per_s(alone_r.0),
        times(ratio),
    )];
    if let Some(c) = ceiling {
        let needed = 0.7 * alone_r.0;
        reading.push(format!(
            "0.7x of the writers' rate alone is {} events/s, which with every event going to \
             {SUBSCRIBERS} clients is {} notifications/s. With no daemon at all, the bench's \
             threads writing notifications serialized beforehand reach {} notifications/s to the \
             same {SUBSCRIBERS} readers on this machine ({} events/s to each), {} the rate the \
             goal needs: the readers, on the same {} cores, are part of the cost.",
            per_s(needed),
            per_s(needed * SUBSCRIBERS as f64),
            per_s(notes / c.as_secs_f64()),
            per_s(total as f64 / c.as_secs_f64()),
            times(total as f64 / c.as_secs_f64() / needed),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        ));
    }
    if let Some(d) = delivered {
        reading.push(format!(
            "The last subscriber had the last event {} after the writers started: {} notifications \
             ({} events to each of {SUBSCRIBERS} clients) at {} per second.",
            ms(d),
            count(SUBSCRIBERS * total),
            count(total),
            per_s(notes / d.as_secs_f64()),
        ));
    }
    Ok(vec![Section {
        title: "Many clients".into(),
        method: format!(
            "{GROUP_CONNECTIONS} writers each pipelining {per} `{create}` requests ({total} events, \
             each durable before its answer, as in the group-commit row), on a fresh daemon, \
             with no other client, and with {SUBSCRIBERS} more connections (`initialize`d) that \
             each sent `{subscribe}` `{{}}` (every event) before the writers started and read \
             continuously from then on, each on its own thread, decoding frames and copying the \
             bodies aside until it has as many messages as the writers make events. The writers' \
             rate is \
             from their start to their last answer (the event count checked against `lastSeq`); \
             \"all delivered\" is from the same start until the last subscriber has the last \
             event. One warm-up run per side, then {runs} per side, alternating, each on a fresh \
             daemon; the median is reported with the range. Checked after timing, for every \
             subscriber of every run: every message is an `{note}` of its subscription, the seqs \
             run without a gap or repeat from its `lastSeq` at subscription to the log's last, \
             every event is the creation of a session of this run, and the sessions come in the \
             same order for every subscriber, each writer's in the order it sent them. The \
             ceiling row has no daemon: {SUBSCRIBERS} socket pairs, each with a thread writing \
             the first notification a subscriber got, framed, {total} times in writes of up to \
             256 KiB (as the daemon coalesces) and a reader like the subscribers'; the time until \
             the last reader has them all, measured after each round's two orch runs (median).",
            per = count(GROUP_EVENTS_PER_CONNECTION),
            create = SessionCreate::METHOD,
            total = count(total),
            subscribe = EventsSubscribe::METHOD,
            note = EVENT_NOTIFICATION,
            runs = CLIENTS_RUNS,
        ),
        table,
        goals: vec![
            Goal {
                goal: format!(
                    "every one of {SUBSCRIBERS} subscribers gets every event, in order, while \
                     {GROUP_CONNECTIONS} writers append"
                ),
                measured: match problems.first() {
                    None => format!(
                        "{} events to each subscriber in each of {} runs: all, in order",
                        count(total),
                        CLIENTS_RUNS + 1
                    ),
                    Some(p) => format!("{} problems; the first: {p}", problems.len()),
                },
                met: problems.is_empty(),
            },
            Goal {
                goal: format!(
                    "with {SUBSCRIBERS} clients subscribed to every event, the writers' \
                     throughput at least 0.7x of the same writers with no subscriber"
                ),
                measured: format!(
                    "{} vs {} events/s = {}",
                    per_s(watched_r.0),
                    per_s(alone_r.0),
                    times(ratio)
                ),
                met: ratio >= 0.7,
            },
        ],
        reading,
    }])
}

/// One run of the clients rows.
#[derive(Clone)]
struct ClientsRun {
    /// The writers' events per second.
    rate: f64,
    /// From the writers' start until the last subscriber had the last event (with subscribers).
    delivered: Option<Duration>,
    /// What went wrong with the deliveries, if anything.
    problem: Option<String>,
    /// The first notification a subscriber read, for the delivery ceiling.
    sample: Option<Vec<u8>>,
}

/// What one subscriber read.
struct Subscribed {
    /// Its subscription.
    id: String,
    /// `lastSeq` at subscription.
    start: u64,
    /// Every message it read after the subscription's answer.
    bodies: Received,
    /// When it had the last event.
    done: Instant,
}

/// A fresh daemon, `subscribers` clients subscribed to every event and reading, and the writers
/// creating sessions named after `tag`.
fn clients_run(subscribers: usize, tag: &str) -> Result<ClientsRun> {
    let total = GROUP_CONNECTIONS * GROUP_EVENTS_PER_CONNECTION;
    let daemon = Daemon::started(None);
    let server = Server::Orch(daemon.socket());
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut c = server.connect()?;
        let v = c.call(1, EventsSubscribe::METHOD, json!({}))?;
        let r = result_of(&v)?;
        let id = r["subscriptionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no subscriptionId in {v}"))?
            .to_string();
        let start = r["lastSeq"]
            .as_u64()
            .ok_or_else(|| anyhow!("no lastSeq in {v}"))?;
        c.stream.set_read_timeout(Some(SUBSCRIBER_WAIT))?;
        readers.push(std::thread::spawn(move || -> Result<Subscribed> {
            // Nothing but its events is sent to a subscriber that does nothing else: it reads
            // as many messages as there will be events, copies them aside and checks them after
            // timing (a stray message would be reported there, and an event missing).
            let mut bodies = Received::with_capacity(total);
            while bodies.len() < total {
                bodies.push(&c.recv()?);
            }
            Ok(Subscribed {
                id,
                start,
                bodies,
                done: Instant::now(),
            })
        }));
    }
    let (rate, started) = pipelined_events_timed(
        &server,
        GROUP_EVENTS_PER_CONNECTION,
        SessionCreate::METHOD,
        |w, id| json!({ "name": format!("{tag}-{w}-{id}") }),
    )?;
    let last = last_seq(&mut server.connect()?)?;
    let mut delivered = None;
    let mut problem = None;
    let mut sample = None;
    let mut expected: Option<Vec<String>> = None;
    for (i, reader) in readers.into_iter().enumerate() {
        let got = reader
            .join()
            .map_err(|_| anyhow!("a subscriber thread panicked"))?;
        let checked = got.and_then(|s| {
            let names = check_subscriber(&s, last, total, tag)?;
            if sample.is_none() {
                sample = s.bodies.iter().next().map(<[u8]>::to_vec);
            }
            match &expected {
                None => expected = Some(names),
                Some(e) => ensure!(
                    *e == names,
                    "its sessions came in another order than subscriber 0's"
                ),
            }
            Ok(s.done)
        });
        match checked {
            Ok(done) => {
                let d = done.saturating_duration_since(started);
                delivered = Some(delivered.map_or(d, |m: Duration| m.max(d)));
            }
            Err(e) => {
                problem.get_or_insert(format!("subscriber {i}: {e:#}"));
            }
        }
    }
    Ok(ClientsRun {
        rate,
        delivered: if problem.is_none() { delivered } else { None },
        problem,
        sample,
    })
}

/// The bench alone delivering `total` copies of the notification `body` to each of
/// [`SUBSCRIBERS`] readers that read as the subscribers do, over socket pairs, one writer thread
/// per reader writing up to 256 KiB at a time (as the daemon coalesces): the time until the last
/// reader has them all.
fn delivery_ceiling(body: &[u8], total: usize) -> Result<Duration> {
    let frame = encode(body);
    let per_write = (256 * 1024 / frame.len()).max(1);
    let chunk: Arc<Vec<u8>> = Arc::new(frame.repeat(per_write));
    let barrier = Arc::new(Barrier::new(2 * SUBSCRIBERS + 1));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (mut w, r) = UnixStream::pair()?;
        r.set_read_timeout(Some(SUBSCRIBER_WAIT))?;
        let mut c = FramedConn {
            stream: r,
            reader: FrameReader::new(),
        };
        let start = barrier.clone();
        readers.push(std::thread::spawn(move || -> Result<Instant> {
            start.wait();
            let mut bodies = Received::with_capacity(total);
            while bodies.len() < total {
                bodies.push(&c.recv()?);
            }
            Ok(Instant::now())
        }));
        let (start, chunk, len) = (barrier.clone(), chunk.clone(), frame.len());
        writers.push(std::thread::spawn(move || -> std::io::Result<()> {
            start.wait();
            let mut left = total;
            while left > 0 {
                let n = left.min(per_write);
                w.write_all(&chunk[..n * len])?;
                left -= n;
            }
            Ok(())
        }));
    }
    barrier.wait();
    let t = Instant::now();
    for w in writers {
        w.join()
            .map_err(|_| anyhow!("a ceiling writer panicked"))?
            .context("write the notifications")?;
    }
    let mut last = t;
    for r in readers {
        last = last.max(
            r.join()
                .map_err(|_| anyhow!("a ceiling reader panicked"))??,
        );
    }
    Ok(last - t)
}

/// Check what one subscriber read: only `orch/event`s of its subscription, seqs from its start to
/// `last` without a gap or repeat, `total` of them, each the creation of a session of this run
/// (named `{tag}-{writer}-{n}`), each writer's in the order sent. The session names, in order.
fn check_subscriber(s: &Subscribed, last: u64, total: usize, tag: &str) -> Result<Vec<String>> {
    ensure!(
        last - s.start == total as u64,
        "subscribed at seq {}, the log ended at {last}: not {total} events",
        s.start
    );
    let mut names = Vec::with_capacity(total);
    let mut next_of_writer = [1i64; GROUP_CONNECTIONS];
    let mut seq = s.start;
    for body in s.bodies.iter() {
        let v: Value = serde_json::from_slice(body)?;
        ensure!(
            v["method"] == EVENT_NOTIFICATION && v["params"]["subscriptionId"] == *s.id,
            "not an event of its subscription: {v}"
        );
        let e = &v["params"]["event"];
        ensure!(
            e["seq"].as_u64() == Some(seq + 1),
            "after seq {seq} came {}",
            e["seq"]
        );
        seq += 1;
        let name = e["data"]["session"]["name"].as_str().unwrap_or_default();
        let writer_and_n = name
            .strip_prefix(tag)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(w, n)| Some((w.parse::<usize>().ok()?, n.parse::<i64>().ok()?)));
        let Some((w, n)) =
            writer_and_n.filter(|&(w, _)| e["kind"] == "session.created" && w < GROUP_CONNECTIONS)
        else {
            bail!("seq {seq} is not the creation of a session of this run: {e}");
        };
        ensure!(
            n == next_of_writer[w],
            "writer {w}'s session {n} came where {} was due",
            next_of_writer[w]
        );
        next_of_writer[w] += 1;
        names.push(name.to_string());
    }
    ensure!(seq == last, "the last event it read was {seq}, not {last}");
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Group: durability (event append with fdatasync, group commit)

/// Durable event appends: one writer against group commit, with raw `fdatasync` as the ceiling.
fn durability_group(_env: &Env) -> Result<Vec<Section>> {
    // The ceiling is measured in a state directory, on the filesystem the daemon's store uses.
    let scratch = Daemon::new(None);
    let fs = filesystem_of(scratch.state_dir.path());
    let mut probes = Vec::new();
    for (how, name) in [
        (SyncProbe::Append, "append"),
        (SyncProbe::Overwrite, "overwrite"),
    ] {
        eprintln!("perf:   fdatasync {name} ({FSYNC_WRITES} x {FSYNC_BYTES} B)");
        let mut lat = fdatasync_loop(&scratch.state_dir.path().join("fdatasync-probe"), how)?;
        let rate = FSYNC_WRITES as f64 / lat.iter().sum::<Duration>().as_secs_f64();
        probes.push((rate, latency(&mut lat)));
    }
    drop(scratch);
    let [(append_rate, append_l), (overwrite_rate, overwrite_l)] = [probes[0], probes[1]];
    // The cheaper durable write at the median: what one sync per event can approach at best.
    let (ceiling, ceiling_l, ceiling_how) = if overwrite_l.p50 <= append_l.p50 {
        (overwrite_rate, overwrite_l, "overwriting")
    } else {
        (append_rate, append_l, "appending")
    };

    eprintln!("perf:   single writer ({SINGLE_WRITER_EVENTS} sequential creates)");
    let (single_rate, single_l) = {
        let daemon = Daemon::started(None);
        let server = Server::Orch(daemon.socket());
        let mut c = server.connect()?;
        let before = last_seq(&mut c)?;
        let reqs = requests(
            SessionCreate::METHOD,
            1,
            SINGLE_WRITER_EVENTS,
            |id| json!({ "name": format!("bench-single-{id}") }),
        );
        let t = Instant::now();
        let (mut lat, answers) = round_trips(&mut c, &reqs)?;
        let took = t.elapsed();
        server.verify(&answers, &reqs)?;
        let after = last_seq(&mut c)?;
        ensure!(
            after - before == SINGLE_WRITER_EVENTS as u64,
            "expected {SINGLE_WRITER_EVENTS} events, the log grew by {}",
            after - before
        );
        (
            SINGLE_WRITER_EVENTS as f64 / took.as_secs_f64(),
            latency(&mut lat),
        )
    };

    let group_total = GROUP_CONNECTIONS * GROUP_EVENTS_PER_CONNECTION;
    eprintln!(
        "perf:   group commit ({GROUP_CONNECTIONS} connections x {GROUP_EVENTS_PER_CONNECTION} \
         pipelined creates)"
    );
    let group_rate = {
        let daemon = Daemon::started(None);
        pipelined_events(
            &Server::Orch(daemon.socket()),
            GROUP_EVENTS_PER_CONNECTION,
            SessionCreate::METHOD,
            |w, id| json!({ "name": format!("bench-group-{w}-{id}") }),
        )?
    };

    let speedup = group_rate / single_rate;
    let probe_row = |what: &str, rate: f64, l: Latency| {
        vec![
            format!("raw `write` {FSYNC_BYTES} B + `fdatasync`, {what}"),
            count(FSYNC_WRITES),
            per_s(rate),
            us(l.p50),
            us(l.p99),
            String::new(),
        ]
    };
    let table = Table {
        head: vec!["measurement", "events", "events/s", "p50", "p99", "vs"],
        rows: vec![
            probe_row("appending (the file grows)", append_rate, append_l),
            probe_row("overwriting a synced file", overwrite_rate, overwrite_l),
            vec![
                format!(
                    "orch, single writer: sequential `{}`",
                    SessionCreate::METHOD
                ),
                count(SINGLE_WRITER_EVENTS),
                per_s(single_rate),
                us(single_l.p50),
                us(single_l.p99),
                format!(
                    "p50 {} the raw {ceiling_how} p50",
                    times(single_l.p50.as_secs_f64() / ceiling_l.p50.as_secs_f64())
                ),
            ],
            vec![
                format!(
                    "orch, group commit: {GROUP_CONNECTIONS} connections x {} pipelined",
                    count(GROUP_EVENTS_PER_CONNECTION)
                ),
                count(group_total),
                per_s(group_rate),
                String::new(),
                String::new(),
                format!("**{} the single writer**", times(speedup)),
            ],
        ],
    };
    let mut reading = vec![format!(
        "One writer commits {} events/s; its median commit takes {}, {} a bare `write` + `fdatasync` \
         {ceiling_how} ({} at the median, {}/s on average, p99 {}): a device flush per event bounds it, \
         and the difference is the daemon's own work per durable request.",
        per_s(single_rate),
        us(single_l.p50),
        times(single_l.p50.as_secs_f64() / ceiling_l.p50.as_secs_f64()),
        us(ceiling_l.p50),
        per_s(ceiling),
        us(ceiling_l.p99),
    )];
    reading.push(if speedup > 1.0 {
        format!(
            "With {GROUP_CONNECTIONS} connections pipelining, group commit reaches {} events/s: {} the single \
             writer and {} the raw rate of one sync per write, so batches of events share flushes.",
            per_s(group_rate),
            times(speedup),
            times(group_rate / ceiling),
        )
    } else {
        format!(
            "With {GROUP_CONNECTIONS} connections pipelining, the daemon reaches only {} events/s ({} the single \
             writer): batches are not sharing flushes.",
            per_s(group_rate),
            times(speedup),
        )
    });
    Ok(vec![Section {
        title: "Event append with durability".into(),
        method: format!(
            "Every `{method}` (unique name) appends one event that the daemon makes durable (sled flush, \
             then `fdatasync`) before it answers. Single writer: one connection, {single} requests one at \
             a time, so each acknowledgement is one durable commit. Group commit: {conns} connections each \
             pipelining {per} requests at once ({total} in all), so the runtime can make a batch durable \
             with one sync; time from the start to the last answer. Each row runs on a fresh daemon; the \
             event count is checked against `lastSeq`. The raw rows are {writes} writes of {bytes} bytes, each \
             followed by `fdatasync`, to a file in a state directory ({fs}): appending, where each sync also \
             commits the file's new size, and overwriting a file written and synced beforehand, where only \
             data is flushed.",
            method = SessionCreate::METHOD,
            single = count(SINGLE_WRITER_EVENTS),
            conns = GROUP_CONNECTIONS,
            per = count(GROUP_EVENTS_PER_CONNECTION),
            total = count(group_total),
            writes = count(FSYNC_WRITES),
            bytes = FSYNC_BYTES,
        ),
        table,
        goals: vec![Goal {
            goal: "group commit beats one sync per event (DESIGN.md: a burst of commands costs one device flush)".into(),
            measured: format!("{} vs {} = {}", per_s(group_rate), per_s(single_rate), times(speedup)),
            met: speedup > 1.0,
        }],
        reading,
    }])
}

/// How the `fdatasync` probe writes its records.
#[derive(Clone, Copy)]
enum SyncProbe {
    /// Appending: the file grows, so every `fdatasync` also commits the new size (a journal write
    /// on ext4).
    Append,
    /// Over a file written and synced beforehand: only data reaches the device, the cheapest
    /// durable write there is (a log that grows in preallocated segments, as sled's does, is
    /// mostly this).
    Overwrite,
}

/// `FSYNC_WRITES` writes of `FSYNC_BYTES` bytes to a new file at `path`, each followed by
/// `fdatasync`; the duration of each pair.
fn fdatasync_loop(path: &Path, how: SyncProbe) -> Result<Vec<Duration>> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    if let SyncProbe::Overwrite = how {
        f.write_all(&vec![0u8; FSYNC_WRITES * FSYNC_BYTES])?;
        f.sync_all()?;
        f.seek(SeekFrom::Start(0))?;
    }
    let record = [b'e'; FSYNC_BYTES];
    let mut out = Vec::with_capacity(FSYNC_WRITES);
    for _ in 0..FSYNC_WRITES {
        let t = Instant::now();
        f.write_all(&record)?;
        f.sync_data()?;
        out.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(path)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Group: history (appending with a large state)

/// Appending to a daemon that holds 100,000 finished objects against appending to an empty one:
/// the cost of an event must not grow with the history (snapshots write the whole state).
fn history_group(_env: &Env) -> Result<Vec<Section>> {
    let per = HISTORY_EVENTS_PER_CONNECTION;
    let total = GROUP_CONNECTIONS * per;
    let create =
        |tag: &'static str| move |w: usize, id: i64| json!({ "name": format!("{tag}-{w}-{id}") });
    eprintln!("perf:   appending {total} events to an empty daemon");
    let (empty_rate, empty_size, empty_json, empty_probe) = {
        let daemon = Daemon::started(None);
        let server = Server::Orch(daemon.socket());
        let probe = StatusProbe::start(&server)?;
        let rate = pipelined_events(&server, per, SessionCreate::METHOD, create("fresh"))?;
        let probe = probe.stop()?;
        (rate, store_bytes(&server)?, events_json(&server)?, probe)
    };
    eprintln!("perf:   filling a daemon with {HISTORY_OBJECTS} finished sessions");
    let daemon = Daemon::started(None);
    let server = Server::Orch(daemon.socket());
    let fill = Instant::now();
    pipelined_events(&server, per, SessionCreate::METHOD, create("old"))?;
    pipelined_events(
        &server,
        per,
        SessionClose::METHOD,
        |w, id| json!({ "id": format!("old-{w}-{id}") }),
    )?;
    let filled_in = fill.elapsed();
    eprintln!("perf:   appending {total} events to it (filled in {filled_in:.1?})");
    let earlier = snapshot_log_lines(&daemon).len();
    let probe = StatusProbe::start(&server)?;
    let history_rate = pipelined_events(&server, per, SessionCreate::METHOD, create("new"))?;
    let history_probe = probe.stop()?;
    let history_size = store_bytes(&server)?;
    let history_json = events_json(&server)?;
    let snapshots: Vec<String> = snapshot_log_lines(&daemon).split_off(earlier);
    drop(daemon);
    let ratio = empty_rate / history_rate;
    let table = Table {
        head: vec![
            "daemon",
            "events appended",
            "events/s",
            "store after",
            "JSON of the events it holds",
            "vs",
        ],
        rows: vec![
            vec![
                "empty".into(),
                count(total),
                per_s(empty_rate),
                mib(empty_size),
                format!(
                    "{} ({} events)",
                    mib(empty_json.bytes),
                    count(empty_json.events)
                ),
                String::new(),
            ],
            vec![
                format!("holding {} finished sessions", count(HISTORY_OBJECTS)),
                count(total),
                per_s(history_rate),
                mib(history_size),
                format!(
                    "{} ({} events)",
                    mib(history_json.bytes),
                    count(history_json.events)
                ),
                format!("**{} the time per event**", times(ratio)),
            ],
        ],
    };
    let size_ratio = |size: u64, json: &EventsJson| size as f64 / json.bytes as f64;
    let size_goals = [
        ("empty", empty_size, &empty_json),
        ("holding finished sessions", history_size, &history_json),
    ]
    .map(|(daemon, size, json)| Goal {
        goal: format!(
            "store size at most 2x the JSON bytes of the events it holds ({daemon}, after \
             appending; the snapshot included)"
        ),
        measured: format!(
            "{} vs {} = {}",
            mib(size),
            mib(json.bytes),
            times(size_ratio(size, json))
        ),
        met: size_ratio(size, json) <= 2.0,
    });
    let (empty_max, history_max) = (empty_probe.max, history_probe.max);
    let pause_table = Table {
        head: vec![
            "daemon",
            "`orch/status` answers timed",
            "p50",
            "p99",
            "longest",
        ],
        rows: vec![
            vec![
                "empty, while appending".into(),
                count(empty_probe.n),
                us(empty_probe.latency.p50),
                us(empty_probe.latency.p99),
                us(empty_max),
            ],
            vec![
                format!(
                    "holding {} finished sessions, while appending",
                    count(HISTORY_OBJECTS)
                ),
                count(history_probe.n),
                us(history_probe.latency.p50),
                us(history_probe.latency.p99),
                format!("**{}**", us(history_max)),
            ],
        ],
    };
    Ok(vec![
        Section {
            title: "Appending with history".into(),
            method: format!(
                "{conns} connections each pipelining {per} `{create}` requests ({total} events, \
             each durable before its answer), on a fresh daemon and on one that first created and \
             closed {objects} sessions ({fill} events, not timed), so its state holds {objects} \
             finished objects. As many events are appended as the history holds objects, so the \
             run pays for the snapshots it is due (a snapshot writes the whole state; the daemon \
             takes one at most once per as many events as the last one held objects). Defaults of \
             `orch.toml` otherwise (`snapshot_every` 1000). Store size from `orch/status` \
             (sled's files: its log, blob files, the snapshot among them), against the JSON of \
             every event the store holds (`orch/events/query` from the first, each event \
             serialized compactly).",
                conns = GROUP_CONNECTIONS,
                per = count(per),
                create = SessionCreate::METHOD,
                objects = count(HISTORY_OBJECTS),
                fill = count(2 * HISTORY_OBJECTS),
            ),
            table,
            goals: [Goal {
                goal: format!(
                "appending with {} finished objects in the store within 1.2x of an empty daemon",
                count(HISTORY_OBJECTS)
            ),
                measured: format!(
                    "{} vs {} events/s = {}",
                    per_s(history_rate),
                    per_s(empty_rate),
                    times(ratio)
                ),
                met: ratio <= 1.2,
            }]
            .into_iter()
            .chain(size_goals)
            .collect(),
            reading: vec![format!(
            "With {} finished objects the daemon appends {} events/s against {} on an empty one \
             ({} the time per event).",
            count(HISTORY_OBJECTS),
            per_s(history_rate),
            per_s(empty_rate),
            times(ratio)
        )],
        },
        Section {
            title: "Snapshots and the runtime".into(),
            method: format!(
                "During both appending runs above, one more connection sends `orch/status` one at a \
                 time, back to back, and times each answer: a request waits for whatever holds the \
                 runtime loop. The run on the daemon holding {} finished sessions is due a snapshot \
                 of all of them; the empty daemon's snapshots are small. The daemon's log says \
                 how long each snapshot held the loop (`snapshot written`, `loop_ms`) and took in all.",
                count(HISTORY_OBJECTS)
            ),
            table: pause_table,
            goals: vec![Goal {
                goal: format!(
                    "the runtime never blocks on a snapshot: the longest `orch/status` answer while \
                     a snapshot of {} objects is written within 2x of the longest on an empty daemon",
                    count(HISTORY_OBJECTS)
                ),
                measured: format!(
                    "{} vs {} = {}",
                    us(history_max),
                    us(empty_max),
                    times(history_max.as_secs_f64() / empty_max.as_secs_f64())
                ),
                met: history_max.as_secs_f64() <= 2.0 * empty_max.as_secs_f64(),
            }],
            reading: if snapshots.is_empty() {
                vec!["The daemon's log named no snapshot during the run.".into()]
            } else {
                vec![format!(
                    "Snapshots the daemon logged during the run on the loaded daemon: {}.",
                    snapshots.join("; ")
                )]
            },
        },
        startup_section()?,
    ])
}

/// `orch/status` answers timed one at a time on a connection of its own, until stopped.
struct StatusProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<Duration>>>,
}

/// What a [`StatusProbe`] saw.
struct Probed {
    n: usize,
    latency: Latency,
    max: Duration,
}

impl StatusProbe {
    fn start(server: &Server) -> Result<Self> {
        let mut c = server.connect()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut times = Vec::new();
            let mut id = 1_000_000_i64;
            while !stopped.load(Ordering::Relaxed) {
                id += 1;
                let t = Instant::now();
                let v = c.call(id, "orch/status", json!({}))?;
                times.push(t.elapsed());
                result_of(&v)?;
            }
            Ok(times)
        });
        Ok(Self { stop, thread })
    }

    fn stop(self) -> Result<Probed> {
        self.stop.store(true, Ordering::Relaxed);
        let mut times = self
            .thread
            .join()
            .map_err(|_| anyhow!("the status probe panicked"))??;
        ensure!(!times.is_empty(), "the status probe timed no answer");
        let max = times.iter().copied().max().unwrap_or_default();
        Ok(Probed {
            n: times.len(),
            latency: latency(&mut times),
            max,
        })
    }
}

/// The `snapshot written` lines of a daemon's log, shortened to their numbers.
fn snapshot_log_lines(daemon: &Daemon) -> Vec<String> {
    daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("snapshot written"))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| w.contains('='))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
}

/// Start-up of a daemon killed with SIGKILL (the restart that must lose nothing), on an empty
/// store and on one holding a million events, each against opening the same sled store alone.
fn startup_section() -> Result<Section> {
    eprintln!("perf:   start-up with an empty store");
    let mut empty = Daemon::started(None);
    let empty_runs = startup_runs(&mut empty)?;
    drop(empty);
    eprintln!(
        "perf:   appending {} events for start-up with history",
        count(STARTUP_HISTORY_EVENTS)
    );
    let mut full = Daemon::started(None);
    let server = Server::Orch(full.socket());
    pipelined_events(
        &server,
        STARTUP_HISTORY_EVENTS / GROUP_CONNECTIONS,
        ConfigReload::METHOD,
        |_, _| json!({}),
    )?;
    let size = store_bytes(&server)?;
    let full_runs = startup_runs(&mut full)?;
    drop(full);
    let [(empty_daemon, empty_sled), (full_daemon, full_sled)] =
        [empty_runs, full_runs].map(|(mut d, mut s)| (latency(&mut d).p50, latency(&mut s).p50));
    let row = |what: String, daemon: Duration, sled: Duration| {
        vec![
            what,
            ms(daemon),
            ms(sled),
            format!("{}", times(daemon.as_secs_f64() / sled.as_secs_f64())),
        ]
    };
    let table = Table {
        head: vec![
            "store",
            "orch serve to first answer (p50)",
            "sled open alone (p50)",
            "vs",
        ],
        rows: vec![
            row("empty".into(), empty_daemon, empty_sled),
            row(
                format!("{} events ({})", count(STARTUP_HISTORY_EVENTS), mib(size)),
                full_daemon,
                full_sled,
            ),
        ],
    };
    Ok(Section {
        title: "Start-up".into(),
        method: format!(
            "A daemon is killed with SIGKILL, then `orch serve` is started and timed until its first \
             `orch/status` answer (connecting every millisecond, then `initialize` and \
             `orch/status`); {runs} times each, p50. Before each start the bench opens a copy of \
             the store with sled alone, as the daemon does (same mode and cache size), reads its \
             schema version, makes one durable write (the daemon's `daemon.started` event is \
             durable before it answers) and times that: sled recovers at open what was written since its last \
             open, so both start from the same bytes. On an empty store and on one filled with {events} \
             `{reload}` events by {conns} pipelining connections. Retention as shipped: the \
             retention job, due at start and then hourly, drops all but the last 100,000 events, \
             2,000 per 50 ms tick; each daemon runs 2 s after its answer before it is killed, so \
             the first start opens the million and each later one a store compacted a little \
             further.",
            runs = STARTUP_RUNS,
            events = count(STARTUP_HISTORY_EVENTS),
            reload = ConfigReload::METHOD,
            conns = GROUP_CONNECTIONS,
        ),
        table,
        goals: vec![
            Goal {
                goal: "start-up to the first answer with an empty store within 20 ms".into(),
                measured: format!("{} (sled alone {})", ms(empty_daemon), ms(empty_sled)),
                met: empty_daemon <= Duration::from_millis(20),
            },
            Goal {
                goal: format!(
                    "start-up to the first answer with {} events within 100 ms",
                    count(STARTUP_HISTORY_EVENTS)
                ),
                measured: format!("{} (sled alone {})", ms(full_daemon), ms(full_sled)),
                met: full_daemon <= Duration::from_millis(100),
            },
        ],
        reading: vec![format!(
            "orch answers {} after it starts on an empty store and {} on a million events; opening \
             the sled store alone with one durable write takes {} and {}: the rest is the daemon's \
             own start (process, configuration, snapshot and the events after it, socket). With a \
             million events most of it is sled's: its recovery reads what was written since its \
             last open, and its first write zeroes the segments retention freed (`perf record`; \
             daemon.log gives `store_opened_ms` and `state_loaded_ms` at each start).",
            ms(empty_daemon),
            ms(full_daemon),
            ms(empty_sled),
            ms(full_sled)
        )],
    })
}

/// [`STARTUP_RUNS`] times: kill `d`'s daemon, open its sled store alone (timed), start `orch
/// serve` and time it to its first `orch/status` answer. The daemon is left stopped.
fn startup_runs(d: &mut Daemon) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let db = d
        .state_dir
        .path()
        .join(workspace_state_name(d)?)
        .join("store/db");
    ensure!(db.is_dir(), "no sled store at {}", db.display());
    d.kill9();
    let (mut daemon, mut sled_alone) = (Vec::new(), Vec::new());
    for _ in 0..STARTUP_RUNS {
        // sled recovers at open what was written since its last open and then records where it
        // got: opened here first, the daemon would find that work done. So the baseline opens a
        // copy, and both start from the same bytes.
        let copy = db.with_file_name("db-baseline-copy");
        let _ = std::fs::remove_dir_all(&copy);
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(&db)
            .arg(&copy)
            .status()?;
        ensure!(cp.success(), "cp -a {} failed: {cp}", db.display());
        let conf = std::fs::read(copy.join("conf"))?;
        let compressed = String::from_utf8_lossy(&conf).contains("use_compression: true");
        flush_dirty_pages();
        let t = Instant::now();
        let store = sled::Config::new()
            .path(&copy)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(16 << 20)
            // As the daemon made it (sled refuses another setting): compressed at zstd level 1,
            // or not, by an orch from before compression (`ORCH_BIN`).
            .use_compression(compressed)
            .compression_factor(1)
            .open()
            .with_context(|| format!("open {}", copy.display()))?;
        let meta = store.open_tree("meta")?;
        ensure!(
            meta.get("schema_version")?.is_some(),
            "no schema version in {}",
            copy.display()
        );
        // The daemon's first event (daemon.started) is durable before it answers, and sled's
        // first write after an open sets its segments up (zeroing the free ones): so does this.
        meta.insert("bench-probe", &[1u8][..])?;
        store.flush()?;
        sled_alone.push(t.elapsed());
        drop(store);
        std::fs::remove_dir_all(&copy)?;
        let t = Instant::now();
        let mut child = d
            .orch()
            .arg("serve")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let answered = loop {
            if let Ok(c) = Server::Orch(d.socket()).connect() {
                let mut c = c;
                let v = c.call(1, Status::METHOD, json!({}))?;
                result_of(&v)?;
                break t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("orch serve did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        daemon.push(answered);
        // Its start-up jobs (retention among them) get to run, then SIGKILL as before.
        std::thread::sleep(Duration::from_secs(2));
        child.kill()?;
        child.wait()?;
    }
    Ok((daemon, sled_alone))
}

/// The name of the directory `d`'s daemon keeps its state in, under its state directory.
fn workspace_state_name(d: &Daemon) -> Result<String> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(d.state_dir.path())? {
        let e = e?;
        if e.path().join("store").is_dir() {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one workspace state directory, found {names:?}"),
    }
}

/// The events a daemon's store holds, as JSON.
struct EventsJson {
    /// How many.
    events: usize,
    /// Their compact JSON's bytes, summed.
    bytes: u64,
}

/// Every event the daemon holds, read with `orch/events/query` from the first, and the bytes of
/// their compact JSON.
fn events_json(server: &Server) -> Result<EventsJson> {
    let mut c = server.connect()?;
    let mut out = EventsJson {
        events: 0,
        bytes: 0,
    };
    let mut cursor: Option<String> = None;
    for id in 1.. {
        let mut params = json!({ "limit": 1000 });
        if let Some(c) = &cursor {
            params["cursor"] = json!(c);
        }
        let v = c.call(id, EventsQuery::METHOD, params)?;
        let page = v
            .get("result")
            .ok_or_else(|| anyhow!("query failed: {v}"))?;
        let items = page["items"].as_array().context("no items")?;
        for e in items {
            out.events += 1;
            out.bytes += serde_json::to_vec(e)?.len() as u64;
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}

/// The store's size on disk from `orch/status`: measured after a sync at most once a second, so
/// a second later one more event (a session named `probe`) refreshes it.
fn store_bytes(server: &Server) -> Result<u64> {
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = server.connect()?;
    let v = c.call(-2, SessionCreate::METHOD, json!({ "name": "probe" }))?;
    ensure!(v.get("result").is_some(), "the size probe failed: {v}");
    let v = c.call(-1, Status::METHOD, json!({}))?;
    v["result"]["store"]["sizeBytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("no store.sizeBytes in {v}"))
}

// ---------------------------------------------------------------------------------------------
// Group: pty (output ingest through the emulator, keystroke echo)

/// The pty group: ingest of a program printing coloured text through the pty backend against a
/// raw pty read by the bench, and keystroke echo against the same round trip on a raw pty.
fn pty_group(env: &Env) -> Result<Vec<Section>> {
    let text = env.text(PTY_INGEST_BYTES)?;
    let daemon = Daemon::started(None);
    let socket = daemon.socket();
    // Echo first, while nothing the ingest wrote is being written back to disk.
    flush_dirty_pages();
    let echo = pty_echo_section(&socket)?;
    let ingest = pty_ingest_section(&socket, &text)?;
    Ok(vec![ingest, echo])
}

/// Idle agents spawned per footprint variant: the live-terminal limit (`orch/status`
/// `limits.liveAgents`), checked against the daemon's own number in the run.
const FOOTPRINT_AGENTS: usize = 256;
/// Lines each agent of the "printed" variant prints before it goes quiet.
const FOOTPRINT_LINES: usize = 2_000;
/// How long agents are left quiet before the daemon is measured: past the 10 s after which a
/// pty terminal's screen worker ends and its screen sleeps, with time for the memory trims.
const FOOTPRINT_QUIET: Duration = Duration::from_secs(14);

/// Threads of process `pid` that belong to a pty terminal (named `pty-<job>-<terminal>`).
fn terminal_threads(pid: i32) -> Result<u64> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.starts_with("pty-") {
            n += 1;
        }
    }
    Ok(n)
}

/// The daemon's resident memory (KiB) and thread count, from `/proc/<pid>/status`.
fn rss_and_threads(pid: i32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("Threads:")?))
}

/// One footprint variant: a fresh daemon measured before its agents, with them just started
/// (their screens awake), and after they have been quiet for [`FOOTPRINT_QUIET`].
struct Footprint {
    /// What the agents run.
    what: String,
    /// (KiB, threads) before any agent, right after the last spawn's output was on every
    /// screen, and after the quiet time.
    before: (u64, u64),
    busy: (u64, u64),
    quiet: (u64, u64),
    /// Threads named after a terminal once quiet.
    quiet_terminal_threads: u64,
}

impl Footprint {
    fn per_agent_kib(after: (u64, u64), before: (u64, u64)) -> f64 {
        (after.0 as f64 - before.0 as f64) / FOOTPRINT_AGENTS as f64
    }

    fn per_agent_threads(after: (u64, u64), before: (u64, u64)) -> f64 {
        (after.1 as f64 - before.1 as f64) / FOOTPRINT_AGENTS as f64
    }

    fn terminal_threads_per_agent(&self) -> f64 {
        self.quiet_terminal_threads as f64 / FOOTPRINT_AGENTS as f64
    }
}

fn footprint_group(_env: &Env) -> Result<Vec<Section>> {
    let silent = footprint_run("sleep 600 (prints nothing)", &["sleep", "600"], None)?;
    let script = format!("seq {FOOTPRINT_LINES}; exec sleep 600");
    let printed = footprint_run(
        &format!("`sh -c 'seq {FOOTPRINT_LINES}; exec sleep 600'` (a screen and {FOOTPRINT_LINES} lines of history)"),
        &["sh", "-c", &script],
        Some(&FOOTPRINT_LINES.to_string()),
    )?;
    let mut rows = Vec::new();
    for f in [&silent, &printed] {
        for (moment, at) in [("started", f.busy), ("quiet 14 s", f.quiet)] {
            rows.push(vec![
                f.what.clone(),
                moment.into(),
                format!("{} KiB / {}", count(f.before.0 as usize), f.before.1),
                format!("{} KiB / {}", count(at.0 as usize), at.1),
                format!("{:.1} KiB", Footprint::per_agent_kib(at, f.before)),
                format!("{:.2}", Footprint::per_agent_threads(at, f.before)),
            ]);
        }
    }
    let worst_kib = [&silent, &printed]
        .iter()
        .map(|f| Footprint::per_agent_kib(f.quiet, f.before))
        .fold(f64::MIN, f64::max);
    let worst_threads = [&silent, &printed]
        .iter()
        .map(|f| f.terminal_threads_per_agent())
        .fold(f64::MIN, f64::max);
    let goals = vec![
        Goal {
            goal: format!(
                "an idle agent costs the daemon at most 128 KiB, at the live-agent limit ({FOOTPRINT_AGENTS} agents)"
            ),
            measured: format!(
                "{:.1} KiB (prints nothing), {:.1} KiB (printed {FOOTPRINT_LINES} lines)",
                Footprint::per_agent_kib(silent.quiet, silent.before),
                Footprint::per_agent_kib(printed.quiet, printed.before)
            ),
            met: worst_kib <= 128.0,
        },
        Goal {
            goal: "at most one daemon thread per idle agent".into(),
            measured: format!(
                "{:.2} and {:.2} terminal threads per agent ({} and {} more threads in the daemon in all)",
                silent.terminal_threads_per_agent(),
                printed.terminal_threads_per_agent(),
                silent.quiet.1 - silent.before.1,
                printed.quiet.1 - printed.before.1,
            ),
            met: worst_threads <= 1.0,
        },
    ];
    let reading = vec![format!(
        "Right after printing {FOOTPRINT_LINES} lines an agent's screen is awake: alacritty's grids ({:.0} KiB per \
         agent here, most of it the 24 bytes per cell of the history and the thousand rows alacritty allocates at \
         the first scroll). Quiet for 10 s, the screen worker ends and the screen sleeps encoded (about a byte per \
         character): {:.1} KiB per agent, {:.2} threads (the reader, which also watches the program's end).",
        Footprint::per_agent_kib(printed.busy, printed.before),
        Footprint::per_agent_kib(printed.quiet, printed.before),
        Footprint::per_agent_threads(printed.quiet, printed.before),
    )];
    Ok(vec![Section {
        title: "Idle agents".into(),
        method: format!(
            "Per variant a fresh daemon (release build) is measured from `/proc/<pid>/status` (VmRSS, Threads) \
             before any agent, then {FOOTPRINT_AGENTS} pty agents (the live limit `orch/status` reports) are spawned \
             on 120x40 terminals with 10,000 lines of scrollback (the defaults) and measured once every one's \
             output is on its screen, and again after {} s without output. Per agent: the difference from the \
             daemon before them, divided by {FOOTPRINT_AGENTS}. The baseline is the same daemon with no agent. \
             Threads per agent in the goal are those named after a terminal (`pty-<job>-<id>`); the daemon's \
             own pools may add one or two of their own while it works, shown in the table's totals.",
            FOOTPRINT_QUIET.as_secs()
        ),
        table: Table {
            head: vec![
                "agents run",
                "when",
                "daemon before (RSS / threads)",
                "daemon with the agents",
                "memory per agent",
                "threads per agent",
            ],
            rows,
        },
        goals,
        reading,
    }])
}

/// Spawn [`FOOTPRINT_AGENTS`] pty agents running `argv` on a fresh daemon and measure it (see
/// [`Footprint`]); `shows`, when given, is waited for on each agent's screen.
fn footprint_run(what: &str, argv: &[&str], shows: Option<&str>) -> Result<Footprint> {
    eprintln!("perf:   footprint: {FOOTPRINT_AGENTS} agents running {what}");
    let daemon = Daemon::started(None);
    let mut c = orch_conn(&daemon.socket())?;
    let status = result_of(&c.call(1, "orch/status", json!({}))?)?.clone();
    let limit = status["limits"]["liveAgents"].as_u64().unwrap_or(0) as usize;
    ensure!(
        limit == FOOTPRINT_AGENTS,
        "the daemon's live limit is {limit}, the bench measures at {FOOTPRINT_AGENTS}"
    );
    // Settled: the daemon has answered and its runtime threads exist.
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_and_threads(daemon.pid())?;
    let mut agents = Vec::new();
    for i in 0..FOOTPRINT_AGENTS {
        let agent = result_of(&c.call(
            10 + i as i64,
            "orch/agent/spawn",
            json!({ "command": argv, "backend": "pty" }),
        )?)?
        .clone();
        agents.push(agent["id"].as_str().unwrap_or_default().to_string());
    }
    if let Some(needle) = shows {
        for (i, id) in agents.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let screen = result_of(&c.call(
                    1_000 + i as i64,
                    "orch/agent/screen",
                    json!({ "id": id }),
                )?)?
                .clone();
                let lines = screen["lines"].as_array().cloned().unwrap_or_default();
                if lines.iter().any(|l| l.as_str() == Some(needle)) {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "agent {id} never showed {needle}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let busy = rss_and_threads(daemon.pid())?;
    std::thread::sleep(FOOTPRINT_QUIET);
    let quiet = rss_and_threads(daemon.pid())?;
    let quiet_terminal_threads = terminal_threads(daemon.pid())?;
    // Checked after: the sleeping screens still answer with what the agents printed.
    if let Some(needle) = shows {
        let screen = result_of(&c.call(
            5_000,
            "orch/agent/screen",
            json!({ "id": agents[0], "scrollback": FOOTPRINT_LINES }),
        )?)?
        .clone();
        let lines: Vec<&str> = screen["lines"]
            .as_array()
            .map(|l| l.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        ensure!(
            lines.first() == Some(&"1") && lines.contains(&needle),
            "a quiet agent's screen lost its history: starts {:?}",
            &lines[..lines.len().min(3)]
        );
    }
    eprintln!(
        "perf:     before {} KiB / {} threads, started {} KiB / {}, quiet {} KiB / {}",
        before.0, before.1, busy.0, busy.1, quiet.0, quiet.1
    );
    Ok(Footprint {
        what: what.to_string(),
        before,
        busy,
        quiet,
        quiet_terminal_threads,
    })
}

/// One variant of an ingest measurement: its runs' times, for the median and range.
struct Ingest {
    /// Wall time of each measured run.
    times: Vec<Duration>,
}

impl Ingest {
    fn new() -> Self {
        Self { times: Vec::new() }
    }

    /// Median, fastest and slowest run.
    fn spread(&self) -> (Duration, Duration, Duration) {
        let mut t = self.times.clone();
        t.sort_unstable();
        (t[t.len() / 2], t[0], t[t.len() - 1])
    }

    /// MB/s (10^6 bytes) at the median time.
    fn rate(&self, bytes: u64) -> f64 {
        bytes as f64 / self.spread().0.as_secs_f64() / 1e6
    }

    /// A table row: name, bytes, runs, median rate, range of rates, median time, and `vs`.
    fn row(&self, name: String, bytes: u64, vs: String) -> Vec<String> {
        let (median, fast, slow) = self.spread();
        let mbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
        vec![
            name,
            count(bytes as usize),
            self.times.len().to_string(),
            format!("{:.1}", mbs(median)),
            format!("{:.1} – {:.1}", mbs(slow), mbs(fast)),
            ms(median),
            vs,
        ]
    }
}

fn pty_ingest_section(socket: &Path, text: &TextFile) -> Result<Section> {
    let expected = text.pty_bytes();
    let mut events = orch_conn(socket)?;
    subscribe_agent_states(&mut events)?;
    let mut next_id = 100;
    let mut variants = [Ingest::new(), Ingest::new(), Ingest::new()];
    let names = ["raw pty", "orch, no client", "orch, one subscribed client"];
    let mut checked_agents = Vec::new();
    let mut subscribed_checks = Vec::new();
    eprintln!(
        "perf:   pty ingest: {} MB, 1 warm-up + {PTY_INGEST_RUNS} runs per variant",
        text.bytes / 1_000_000
    );
    for round in 0..=PTY_INGEST_RUNS {
        for k in 0..variants.len() {
            // Each round starts with another variant, so that none is always first or last.
            let v = (round + k) % variants.len();
            // The last run's output log is not written back during this one.
            flush_dirty_pages();
            let took = match v {
                0 => {
                    let (took, n) = raw_pty_ingest(text)?;
                    ensure!(
                        n == expected,
                        "the raw pty gave {n} bytes, expected {expected} (file plus a CR per line)"
                    );
                    took
                }
                1 => {
                    next_id += 10;
                    let (took, agent) = orch_ingest(
                        &mut events,
                        next_id,
                        json!({ "command": ["cat", text.path], "backend": "pty" }),
                    )?;
                    checked_agents.push(agent);
                    took
                }
                _ => {
                    next_id += 10;
                    let run = orch_ingest_subscribed(&mut events, next_id, text)?;
                    let took = run.done;
                    subscribed_checks.push((round > 0, run));
                    took
                }
            };
            eprintln!(
                "perf:     {} run {round}{}: {:.1} MB/s",
                names[v],
                if round == 0 { " (warm-up)" } else { "" },
                expected as f64 / took.as_secs_f64() / 1e6
            );
            if round > 0 {
                variants[v].times.push(took);
            }
        }
    }
    // Checked after timing: every orch run showed the file's last line, every subscriber got
    // every byte.
    for agent in &checked_agents {
        check_screen_shows(&mut events, agent, &text.last_line)?;
    }
    // Measured runs in which the subscriber was told to resync.
    let mut resyncs = 0;
    for (measured, run) in &subscribed_checks {
        if *measured && run.resyncs > 0 {
            resyncs += 1;
        }
        if run.resyncs == 0 {
            ensure!(
                run.bytes == expected + 2,
                "the subscriber got {} bytes, expected {} (the output plus the echo of the Enter that \
                 started it)",
                run.bytes,
                expected + 2
            );
        }
        ensure!(
            run.tail.contains(&text.last_line),
            "the subscriber's output does not end with the file's last line"
        );
    }

    let [raw, plain, subscribed] = &variants;
    let (raw_r, plain_r, sub_r) = (
        raw.rate(expected),
        plain.rate(expected),
        subscribed.rate(expected),
    );
    let rows = vec![
        raw.row(
            "raw pty, no emulator (the bench reads the master)".into(),
            expected,
            String::new(),
        ),
        plain.row(
            "orch pty agent, no client reading".into(),
            expected,
            format!("**{}**", times(plain_r / raw_r)),
        ),
        subscribed.row(
            format!(
                "orch pty agent, one client subscribed and reading everything{}",
                if resyncs > 0 {
                    format!(
                        " (told to resync in {resyncs} run{})",
                        if resyncs == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                }
            ),
            expected,
            format!("**{}**", times(sub_r / raw_r)),
        ),
    ];
    let goals = vec![
        Goal {
            goal: "pty output ingest (emulator included, no client) at least 0.6x of a raw pty with no emulator"
                .into(),
            measured: format!("{plain_r:.1} vs {raw_r:.1} MB/s = {}", times(plain_r / raw_r)),
            met: plain_r / raw_r >= 0.6,
        },
        Goal {
            goal: "the same ingest with one client subscribed and reading everything still at least 0.6x of the raw pty"
                .into(),
            measured: format!("{sub_r:.1} vs {raw_r:.1} MB/s = {}", times(sub_r / raw_r)),
            met: sub_r / raw_r >= 0.6,
        },
    ];
    let reading = vec![format!(
        "pty ingest: orch takes in {plain_r:.1} MB/s of coloured text through its emulator, {} the {raw_r:.1} MB/s \
         at which the bench drains a raw pty; a client subscribed to the output and decoding every \
         notification moves it to {sub_r:.1} MB/s ({} the run with no client{}).",
        times(plain_r / raw_r),
        times(sub_r / plain_r),
        if resyncs > 0 {
            format!(
                "; in {resyncs} of the {PTY_INGEST_RUNS} runs the client fell more than 1 MiB behind \
                 and was told to resync, so it did not get every byte there"
            )
        } else {
            ", with every byte delivered".into()
        },
    )];
    Ok(Section {
        title: "pty output ingest".into(),
        method: format!(
            "The program is `cat` of a generated file of {bytes} bytes ({lines} lines of words with SGR colours \
             in 16, 256 and 24-bit forms, bold, dim and reset, tabs, accented, CJK and emoji text; lines of up to \
             about 200 columns, so some wrap), on a 120x40 terminal. The pty turns each `\\n` into `\\r\\n`, so \
             {out} bytes come out. Raw pty: the bench opens a pty (`openpty`), starts `cat` on the slave in a new \
             session, and reads the master 64 KiB at a time until EIO; timed from `openpty` to the exit status. \
             orch, no client: `orch/agent/spawn` of the same `cat` on the pty backend (emulator, output log and \
             state tracking included) with no output subscriber; timed from sending the request to the \
             `orch/event` `agent.state` → `exited` on a connection subscribed to `agent.state` before the spawn \
             (events are sent once durable). orch, one subscribed client: the program is `sh -c 'read _ && exec \
             cat FILE'`, so that the client can subscribe before any output: spawn, `orch/terminal/subscribe`, \
             `orch/terminal/write` of Enter, then read every `orch/terminal/output` notification on the same \
             connection (JSON-decoded, bytes counted); timed from the spawn request to whichever comes later, \
             the exit event or the last output byte, so the three round trips before the output starts are \
             included. One fresh daemon for the group; one warm-up run of each variant (the file is then in the \
             page cache), then {runs} runs of each, the starting variant rotating per round, with a `sync` \
             before every run (outside timing) so that no earlier run's output log is written back during it; \
             the median time is reported, MB = 10^6 bytes. Checked after timing: the raw pty gave exactly {out} bytes, every orch \
             agent exited with 0 and its screen (`orch/agent/screen`) shows the file's last line, and every \
             subscriber's output ended with that line and, unless it was told to resync (a subscriber more \
             than 1 MiB behind loses its buffered output), was exactly the program's output plus the 2-byte \
             echo of its Enter.",
            bytes = count(text.bytes as usize),
            lines = count(text.newlines as usize),
            out = count(expected as usize),
            runs = PTY_INGEST_RUNS,
        ),
        table: Table {
            head: vec![
                "measurement",
                "bytes",
                "runs",
                "MB/s (median)",
                "range",
                "time (median)",
                "vs raw pty",
            ],
            rows,
        },
        goals,
        reading,
    })
}

/// Run `cat FILE` on a new raw pty and read everything: the time from `openpty` to the exit
/// status, and the bytes read.
fn raw_pty_ingest(text: &TextFile) -> Result<(Duration, u64)> {
    let path = text.path.to_string_lossy();
    let t = Instant::now();
    let mut pty = RawPty::spawn(&["cat", &path])?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match pty.master.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            // EIO: every holder of the slave closed it, and everything was read.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read the pty master"),
        }
    }
    let status = pty.child.wait()?;
    let took = t.elapsed();
    ensure!(status.success(), "cat on the raw pty ended with {status}");
    Ok((took, n))
}

/// Spawn an agent with `params` and wait for the `agent.state` event saying it exited, on a
/// connection subscribed to `agent.state`: the time from sending the request, and the agent id.
fn orch_ingest(c: &mut FramedConn, id: i64, params: Value) -> Result<(Duration, String)> {
    let frame = request_frame(id, "orch/agent/spawn", params);
    let mut ends = Ends::default();
    let t = Instant::now();
    c.send(&frame)?;
    let mut agent = None;
    loop {
        let v = recv_value(c)?;
        if v["id"] == json!(id) {
            agent = Some(
                result_of(&v)?["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        } else {
            ends.note(&v);
        }
        if let Some(a) = &agent {
            if let Some(state) = ends.of(a) {
                let took = t.elapsed();
                ensure!(state == "exited", "agent {a} ended {state}, not exited");
                return Ok((took, a.clone()));
            }
        }
    }
}

/// Agents' final states seen in `orch/event` notifications.
#[derive(Default)]
struct Ends(Vec<(String, String)>);

impl Ends {
    /// Record `v` if it is an `agent.state` event into an end state.
    fn note(&mut self, v: &Value) {
        if v["method"] != "orch/event" {
            return;
        }
        let data = &v["params"]["event"]["data"];
        if let (Some(id), Some(state)) = (data["id"].as_str(), data["state"].as_str()) {
            if matches!(state, "exited" | "failed" | "stopped" | "lost") {
                self.0.push((id.to_string(), state.to_string()));
            }
        }
    }

    fn of(&self, agent: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(a, _)| a == agent)
            .map(|(_, s)| s.as_str())
    }
}

/// A subscribed ingest run.
struct SubscribedRun {
    /// From the spawn request to the exit event or the last output byte, whichever came later.
    done: Duration,
    /// Output bytes received.
    bytes: u64,
    /// `resync: true` notices received.
    resyncs: usize,
    /// The last few KiB of output, as text.
    tail: String,
}

/// Spawn a `cat` gated on Enter, subscribe to its output, release it, and read everything.
fn orch_ingest_subscribed(c: &mut FramedConn, id: i64, text: &TextFile) -> Result<SubscribedRun> {
    let spawn = request_frame(
        id,
        "orch/agent/spawn",
        json!({
            "command": ["/bin/sh", "-c", "read _ && exec cat \"$0\"", text.path],
            "backend": "pty",
        }),
    );
    let expected = text.pty_bytes() + 2;
    let mut ends = Ends::default();
    let t = Instant::now();
    c.send(&spawn)?;
    let (agent, terminal) = loop {
        let v = recv_value(c)?;
        if v["id"] == json!(id) {
            let r = result_of(&v)?;
            break (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["terminalId"].as_str().unwrap_or_default().to_string(),
            );
        }
        ends.note(&v);
    };
    c.send(&request_frame(
        id + 1,
        "orch/terminal/subscribe",
        json!({ "id": terminal }),
    ))?;
    loop {
        let v = recv_value(c)?;
        if v["id"] == json!(id + 1) {
            result_of(&v)?;
            break;
        }
        ends.note(&v);
    }
    c.send(&request_frame(
        id + 2,
        "orch/terminal/write",
        json!({ "id": terminal, "data": "\n" }),
    ))?;
    let (mut bytes, mut resyncs, mut tail) = (0u64, 0usize, String::new());
    let mut exit_at = None;
    let mut last_byte = t.elapsed();
    loop {
        if exit_at.is_some() && bytes >= expected {
            break;
        }
        // After the exit, whatever output is still queued follows at once; a subscriber that was
        // told to resync never gets every byte, so stop when the stream goes quiet.
        let body = if exit_at.is_some() {
            match c.try_recv(Duration::from_secs(2))? {
                Some(b) => b,
                None => break,
            }
        } else {
            c.recv()?
        };
        let at = t.elapsed();
        let v: Value = serde_json::from_slice(&body)?;
        if v["method"] == "orch/terminal/output" && v["params"]["id"] == json!(terminal) {
            if v["params"]["resync"] == json!(true) {
                resyncs += 1;
            } else if let Some(data) = v["params"]["data"].as_str() {
                bytes += data.len() as u64;
                last_byte = at;
                tail.push_str(data);
                if tail.len() > 16 * 1024 {
                    let mut cut = tail.len() - 8 * 1024;
                    while !tail.is_char_boundary(cut) {
                        cut += 1;
                    }
                    tail.drain(..cut);
                }
            }
        } else if v["id"] == json!(id + 2) {
            result_of(&v)?;
        } else {
            ends.note(&v);
            if exit_at.is_none() {
                if let Some(state) = ends.of(&agent) {
                    ensure!(state == "exited", "agent {agent} ended {state}, not exited");
                    exit_at = Some(at);
                }
            }
        }
    }
    let exit_at = exit_at.ok_or_else(|| anyhow!("agent {agent} never exited"))?;
    Ok(SubscribedRun {
        done: exit_at.max(last_byte),
        bytes,
        resyncs,
        tail,
    })
}

/// Fail unless the screen of `agent` shows `line`.
fn check_screen_shows(c: &mut FramedConn, agent: &str, line: &str) -> Result<()> {
    let v = c.call(-7, "orch/agent/screen", json!({ "id": agent }))?;
    let screen = result_of(&v)?;
    let lines: Vec<&str> = screen["lines"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(
        lines.iter().any(|l| l.contains(line)),
        "the screen of {agent} does not show {line:?}: {lines:?}"
    );
    Ok(())
}

fn pty_echo_section(socket: &Path) -> Result<Section> {
    eprintln!(
        "perf:   pty keystroke echo: {ECHO_WARMUP} warm-up + {ECHO_SAMPLES} samples per path"
    );
    let mut raw = RawPty::spawn(&["cat"])?;
    let mut c = orch_conn(socket)?;
    let open = c.call(
        -3,
        "orch/terminal/open",
        json!({ "command": ["cat"], "backend": "pty" }),
    )?;
    let terminal = result_of(&open)?["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no terminal id in {open}"))?
        .to_string();
    result_of(&c.call(-4, "orch/terminal/subscribe", json!({ "id": terminal }))?)?;
    let mut orch_echo = OrchEcho {
        terminal: terminal.clone(),
        next_id: 1_000,
        answers: Vec::new(),
    };
    let mut key = 0usize;
    let mut next_key = || {
        key += 1;
        b'a' + (key % 26) as u8
    };
    for _ in 0..ECHO_WARMUP {
        raw_echo(&mut raw, next_key())?;
        orch_echo.sample(&mut c, next_key())?;
    }
    let (mut raw_lat, mut orch_lat) = (Vec::new(), Vec::new());
    for _ in 0..ECHO_BLOCKS {
        for _ in 0..ECHO_SAMPLES / ECHO_BLOCKS {
            raw_lat.push(raw_echo(&mut raw, next_key())?);
        }
        for _ in 0..ECHO_SAMPLES / ECHO_BLOCKS {
            orch_lat.push(orch_echo.sample(&mut c, next_key())?);
        }
    }
    // Every write answered, successfully (responses may trail their echoes).
    let sent = (orch_echo.next_id - 1_000) as usize;
    while orch_echo.answers.len() < sent {
        let v = recv_value(&mut c)?;
        if v.get("id").is_some() && v.get("method").is_none() {
            result_of(&v)?;
            orch_echo.answers.push(v["id"].as_i64().unwrap_or_default());
        }
    }
    let mut ids = orch_echo.answers.clone();
    ids.sort_unstable();
    ids.dedup();
    ensure!(
        ids.len() == sent,
        "{} distinct answers to {sent} writes",
        ids.len()
    );
    drop(raw);
    let (raw_l, orch_l) = (latency(&mut raw_lat), latency(&mut orch_lat));
    let ratio = |a: Duration, b: Duration| times(a.as_secs_f64() / b.as_secs_f64());
    let rows = vec![
        vec![
            "raw pty: write one byte to the master, read its echo".into(),
            count(ECHO_SAMPLES),
            us(raw_l.p50),
            us(raw_l.p99),
            us(raw_l.mean),
        ],
        vec![
            "orch: `orch/terminal/write` of one key to the `orch/terminal/output` with its echo"
                .into(),
            count(ECHO_SAMPLES),
            us(orch_l.p50),
            us(orch_l.p99),
            us(orch_l.mean),
        ],
        vec![
            "**orch / raw pty**".into(),
            String::new(),
            ratio(orch_l.p50, raw_l.p50),
            ratio(orch_l.p99, raw_l.p99),
            ratio(orch_l.mean, raw_l.mean),
        ],
    ];
    Ok(Section {
        title: "Keystroke echo through the pty backend".into(),
        method: format!(
            "A `cat` on a pty (canonical mode, echo on: the line discipline echoes each key, and `cat` prints \
             nothing before a newline, which never comes). orch: `orch/terminal/open` of `cat`, subscribed to \
             its output on the same connection; a sample is one framed `orch/terminal/write` of one letter, \
             timed from the write to the socket until the `orch/terminal/output` notification whose data holds \
             that letter is read (responses, which may trail the echo, are skipped and checked after timing: \
             every write answered once, successfully). Raw pty: the bench's own pty running `cat`; a sample is \
             a one-byte write to the master and blocking reads until that byte comes back. The letter changes \
             every sample. Measured on the group's fresh daemon before the ingest rows, after a `sync`. {w} \
             warm-up samples per path, then {n} per path in {b} alternating blocks.",
            w = ECHO_WARMUP,
            n = count(ECHO_SAMPLES),
            b = ECHO_BLOCKS,
        ),
        table: Table {
            head: vec!["path", "samples", "p50", "p99", "mean"],
            rows,
        },
        goals: Vec::new(),
        reading: vec![format!(
            "Keystroke echo: {} at the median through orch (p99 {}) against {} on a raw pty: {} spent in the \
             daemon's reader, screen thread and connection writer, and in framing and JSON on both sides.",
            us(orch_l.p50),
            us(orch_l.p99),
            us(raw_l.p50),
            us(orch_l.p50.saturating_sub(raw_l.p50)),
        )],
    })
}

/// A one-byte keystroke on the bench's own pty: the time until its echo is read.
fn raw_echo(pty: &mut RawPty, key: u8) -> Result<Duration> {
    let mut buf = [0u8; 256];
    let t = Instant::now();
    pty.master.write_all(&[key])?;
    loop {
        let n = pty.master.read(&mut buf)?;
        ensure!(n > 0, "the raw pty closed");
        if buf[..n].contains(&key) {
            return Ok(t.elapsed());
        }
    }
}

/// Keystrokes through `orch/terminal/write`, echoes through `orch/terminal/output`.
struct OrchEcho {
    /// The terminal written to and subscribed to.
    terminal: String,
    /// Id of the next write.
    next_id: i64,
    /// Ids of the write responses seen.
    answers: Vec<i64>,
}

impl OrchEcho {
    fn sample(&mut self, c: &mut FramedConn, key: u8) -> Result<Duration> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = request_frame(
            id,
            "orch/terminal/write",
            json!({ "id": self.terminal, "data": (key as char).to_string() }),
        );
        let t = Instant::now();
        c.send(&frame)?;
        loop {
            let body = c.recv()?;
            let at = t.elapsed();
            let v: Value = serde_json::from_slice(&body)?;
            if v["method"] == "orch/terminal/output" {
                if v["params"]["id"] == json!(self.terminal)
                    && v["params"]["data"]
                        .as_str()
                        .is_some_and(|d| d.as_bytes().contains(&key))
                {
                    return Ok(at);
                }
            } else if v.get("id").is_some() && v.get("method").is_none() {
                result_of(&v)?;
                self.answers.push(v["id"].as_i64().unwrap_or_default());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Group: tmux (command latency, output ingest through control mode)

/// The tmux group: `orch/agent/send` against a raw control-mode command, and ingest through
/// tmux against a raw control-mode client. Skipped, and said so, when tmux is not installed.
fn tmux_group(env: &Env) -> Result<Vec<Section>> {
    let version = tmux_version();
    let Some(version) = version else {
        eprintln!("perf:   tmux is not installed: the tmux group is skipped");
        return Ok(vec![Section {
            title: "tmux backend".into(),
            method: "Skipped in this run: `tmux -V` did not run (tmux is not installed).".into(),
            table: Table {
                head: vec!["measurement", "result"],
                rows: vec![vec!["every tmux row".into(), "skipped: no tmux".into()]],
            },
            goals: Vec::new(),
            reading: vec!["The tmux rows were skipped: tmux is not installed.".into()],
        }]);
    };
    let text = env.text(TMUX_INGEST_BYTES)?;
    // Both servers are isolated (`-L`), and killed when the group ends, even on failure.
    let orch_server = TmuxServer::new("orch");
    let raw_server = TmuxServer::new("raw");
    raw_server.start_session(RAW_SESSION)?;
    let mut raw = ControlMode::attach(&raw_server, RAW_SESSION)?;
    let daemon = Daemon::started(Some(&format!(
        "[tmux]\nsocket_name = \"{}\"\n",
        orch_server.name
    )));
    let socket = daemon.socket();
    let raw_pane = raw_first_pane(&mut raw)?;
    flush_dirty_pages();
    let target = TmuxTarget::local();
    let latency = tmux_latency_section(&socket, &mut raw, &raw_pane, &version, &target)?;
    let ingest = tmux_ingest_section(&socket, &mut raw, &raw_pane, &text, env, &target)?;
    drop(raw);
    drop(daemon);
    Ok(vec![latency, ingest])
}

/// Where the tmux rows' agents run, and how the rows name it: this machine's tmux, or a remote
/// host's through SSH (the hosts group).
struct TmuxTarget {
    /// Added to the spawn params: `backend: "tmux"`, or `host: "<name>"`.
    spawn: Value,
    /// The sections' titles start with this.
    title: &'static str,
    /// How the orch side is set up, in words.
    orch_setup: &'static str,
    /// How the raw client is started, in words.
    raw_setup: &'static str,
    /// Goals the rows check: the orch/raw ratio bound for command latency, if any.
    latency_bound: Option<f64>,
}

impl TmuxTarget {
    fn local() -> Self {
        Self {
            spawn: json!({ "backend": "tmux" }),
            title: "tmux",
            orch_setup: "a fresh daemon whose `orch.toml` names an isolated tmux server (`[tmux] socket_name`, a \
                         unique name, killed at the end), agents spawned with `backend: \"tmux\"`",
            raw_setup: "a control-mode client started by the bench (`tmux -L <another isolated server> -C \
                        attach`)",
            latency_bound: None,
        }
    }

    fn spawn(&self, command: Value) -> Value {
        let mut p = self.spawn.clone();
        p["command"] = command;
        p
    }
}

/// `tmux -V`, when tmux runs here.
fn tmux_version() -> Option<String> {
    std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The pane of the raw session's first window (where its `cat` runs).
fn raw_first_pane(raw: &mut ControlMode) -> Result<String> {
    raw.command(&format!(
        "list-panes -t ={RAW_SESSION}:0 -F \"#{{pane_id}}\""
    ))?
    .first()
    .cloned()
    .ok_or_else(|| anyhow!("no pane in the raw session"))
}

/// The session of the raw control-mode client's server.
const RAW_SESSION: &str = "bench";

fn tmux_latency_section(
    socket: &Path,
    raw: &mut ControlMode,
    raw_pane: &str,
    version: &str,
    target: &TmuxTarget,
) -> Result<Section> {
    eprintln!(
        "perf:   tmux command latency: {TMUX_RTT_WARMUP} warm-up + {TMUX_RTT_SAMPLES} round trips per path"
    );
    let send_keys = format!("send-keys -t {raw_pane} -H 61");

    let server = Server::Orch(socket.to_path_buf());
    let mut c = server.connect()?;
    let agent = c.call(-2, "orch/agent/spawn", target.spawn(json!(["cat"])))?;
    let agent = result_of(&agent)?;
    let (agent_id, terminal) = (
        agent["id"].as_str().unwrap_or_default().to_string(),
        agent["terminalId"].as_str().unwrap_or_default().to_string(),
    );
    ensure!(
        agent["backend"] == "tmux",
        "the agent is not on tmux: {agent}"
    );
    let sends = |first: i64, n: usize| {
        requests(
            "orch/agent/send",
            first,
            n,
            |_| json!({ "id": agent_id, "text": "a", "submit": false }),
        )
    };
    let writes = |first: i64, n: usize| {
        requests(
            "orch/terminal/write",
            first,
            n,
            |_| json!({ "id": terminal, "data": "a" }),
        )
    };
    let mut raw_rtt = |n: usize| -> Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            raw.command(&send_keys)?;
            out.push(t.elapsed());
        }
        Ok(out)
    };
    raw_rtt(TMUX_RTT_WARMUP)?;
    for reqs in [
        sends(-10_000, TMUX_RTT_WARMUP),
        writes(-20_000, TMUX_RTT_WARMUP),
    ] {
        let (_, answers) = round_trips(&mut c, &reqs)?;
        server.verify(&answers, &reqs)?;
    }
    let per = TMUX_RTT_SAMPLES / TMUX_RTT_BLOCKS;
    let (mut raw_lat, mut send_lat, mut write_lat) = (Vec::new(), Vec::new(), Vec::new());
    for block in 0..TMUX_RTT_BLOCKS {
        raw_lat.extend(raw_rtt(per)?);
        for (reqs, lat) in [
            (sends(1 + (block * per) as i64, per), &mut send_lat),
            (writes(100_001 + (block * per) as i64, per), &mut write_lat),
        ] {
            let (l, answers) = round_trips(&mut c, &reqs)?;
            server.verify(&answers, &reqs)?;
            lat.extend(l);
        }
    }
    // Checked after timing: every key reached the orch agent's `cat` (its echo is on the screen).
    let typed = 2 * (TMUX_RTT_WARMUP + TMUX_RTT_SAMPLES);
    let screen = c.call(-5, "orch/agent/screen", json!({ "id": agent_id }))?;
    let shown: usize = result_of(&screen)?["lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|l| l.matches('a').count())
                .sum()
        })
        .unwrap_or(0);
    ensure!(
        shown == typed,
        "the tmux agent's screen shows {shown} typed letters, {typed} were sent"
    );
    let (raw_l, send_l, write_l) = (
        latency(&mut raw_lat),
        latency(&mut send_lat),
        latency(&mut write_lat),
    );
    let ratio = |a: Duration, b: Duration| times(a.as_secs_f64() / b.as_secs_f64());
    let row = |name: &str, l: Latency| {
        vec![
            name.to_string(),
            count(TMUX_RTT_SAMPLES),
            us(l.p50),
            us(l.p99),
            us(l.mean),
        ]
    };
    let ratio_row = |name: &str, l: Latency| {
        vec![
            name.to_string(),
            String::new(),
            ratio(l.p50, raw_l.p50),
            ratio(l.p99, raw_l.p99),
            ratio(l.mean, raw_l.mean),
        ]
    };
    let rows = vec![
        row(
            "raw control-mode client: `send-keys -H 61`, to its `%end`",
            raw_l,
        ),
        row(
            "orch `orch/agent/send` (`submit: false`, text `a`), to its response",
            send_l,
        ),
        row(
            "orch `orch/terminal/write` (data `a`), to its response",
            write_l,
        ),
        ratio_row("**`orch/agent/send` / raw**", send_l),
        ratio_row("**`orch/terminal/write` / raw**", write_l),
    ];
    let goals = match target.latency_bound {
        None => Vec::new(),
        Some(bound) => [("`orch/agent/send`", send_l), ("`orch/terminal/write`", write_l)]
            .into_iter()
            .map(|(what, l)| {
                let r = l.p50.as_secs_f64() / raw_l.p50.as_secs_f64();
                Goal {
                    goal: format!("{what} to a remote tmux agent within {bound}x of a raw `ssh host tmux -C` client (p50)"),
                    measured: format!("{} vs {} = {}", us(l.p50), us(raw_l.p50), times(r)),
                    met: r <= bound,
                }
            })
            .collect(),
    };
    Ok(Section {
        title: format!("{} command latency", target.title),
        method: format!(
            "{version}. orch: {orch}, one `cat` agent; a sample is one \
             framed request written and its response read on one connection. `orch/agent/send` types text as a \
             paste (`set-buffer`, then `paste-buffer`, two control-mode commands); `orch/terminal/write` sends the \
             bytes as one `send-keys -H`. Raw: {raw} on a session whose window runs `cat`; a sample is writing the line \
             `send-keys -t <pane> -H 61` and reading until the `%end` of its reply (the echo's `%output` lines \
             read on the way are skipped). After a `sync`, {w} warm-up round trips per path, then {n} per path in \
             {b} alternating blocks. Checked after timing: every orch response is a result, and the agent's screen \
             shows every letter typed.",
            w = TMUX_RTT_WARMUP,
            n = count(TMUX_RTT_SAMPLES),
            b = TMUX_RTT_BLOCKS,
            orch = target.orch_setup,
            raw = target.raw_setup,
        ),
        table: Table {
            head: vec!["path", "round trips", "p50", "p99", "mean"],
            rows,
        },
        goals,
        reading: vec![format!(
            "{} commands: `orch/agent/send` takes {} at the median (p99 {}) against {} for one `send-keys` \
             from a raw control-mode client ({}); `orch/terminal/write`, one `send-keys` through orch, takes {} \
             ({}). The difference is the daemon's request path plus its control client's hand-offs.",
            target.title,
            us(send_l.p50),
            us(send_l.p99),
            us(raw_l.p50),
            ratio(send_l.p50, raw_l.p50),
            us(write_l.p50),
            ratio(write_l.p50, raw_l.p50),
        )],
    })
}

/// The title the raw client's window command sets when `cat` is done: after every byte of output.
const RAW_DONE: &[u8] = b"\x1b]2;orch-bench-done\x1b\\";

fn tmux_ingest_section(
    socket: &Path,
    raw: &mut ControlMode,
    raw_pane: &str,
    text: &TextFile,
    env: &Env,
    target: &TmuxTarget,
) -> Result<Section> {
    let expected = text.pty_bytes();
    eprintln!(
        "perf:   tmux ingest: {} MB, 1 warm-up + {TMUX_INGEST_RUNS} runs per path",
        text.bytes / 1_000_000
    );
    let mut events = orch_conn(socket)?;
    subscribe_agent_states(&mut events)?;
    let out_path = env.scratch.path().join("tmux-raw-output");
    let mut variants = [Ingest::new(), Ingest::new()];
    let names = ["raw control-mode client", "orch tmux agent"];
    let mut agents = Vec::new();
    let mut next_id = 1_000;
    for round in 0..=TMUX_INGEST_RUNS {
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            flush_dirty_pages();
            let took = if v == 0 {
                let (took, n) = raw_tmux_ingest(raw, raw_pane, text, &out_path)?;
                ensure!(
                    n == expected,
                    "the raw control client got {n} bytes of output, expected {expected}"
                );
                took
            } else {
                next_id += 10;
                let (took, agent) = orch_ingest(
                    &mut events,
                    next_id,
                    target.spawn(json!(["cat", text.path])),
                )?;
                agents.push(agent);
                took
            };
            eprintln!(
                "perf:     {} run {round}{}: {:.1} MB/s",
                names[v],
                if round == 0 { " (warm-up)" } else { "" },
                expected as f64 / took.as_secs_f64() / 1e6
            );
            if round > 0 {
                variants[v].times.push(took);
            }
        }
    }
    // Checked after timing: the raw client's output is exactly what the pty made of the file,
    // and every orch agent's screen shows the file's last line.
    let got = std::fs::read(&out_path)?;
    let mut want = Vec::with_capacity(expected as usize);
    for &b in &std::fs::read(&text.path)? {
        if b == b'\n' {
            want.push(b'\r');
        }
        want.push(b);
    }
    ensure!(
        got == want,
        "the raw control client's output differs from the file as a pty prints it"
    );
    for agent in &agents {
        check_screen_shows(&mut events, agent, &text.last_line)?;
    }
    let [raw_v, orch_v] = &variants;
    let (raw_r, orch_r) = (raw_v.rate(expected), orch_v.rate(expected));
    let gap = orch_v.spread().0.saturating_sub(raw_v.spread().0);
    Ok(Section {
        title: format!("{} output ingest", target.title),
        method: format!(
            "The program is `cat` of a generated file like the pty group's, {bytes} bytes ({out} bytes of pty \
             output), in a 120x40 window with 10,000 lines of history. orch: `orch/agent/spawn` of `cat FILE` \
             on {orch} (its start script runs `cat`, then sets an exit marker \
             as the pane title and holds the pane), no output subscriber; timed from the spawn request to the \
             `agent.state` → `exited` event, as in the pty group. orch learns of the exit from that marker \
             in `%output` (a pane listing every 200 ms is the fallback). Raw: the bench's control-mode client writes `new-window` running `sh -c 'cat FILE; printf \
             <title marker>; exec sleep 2'` and reads `%output` lines, decoding the octal escapes and writing \
             the pane's bytes to a file, until the marker arrives; timed from writing `new-window`. A marker \
             rather than `%window-close`: tmux drops a pane's output not yet sent to control clients when the \
             pane's window closes (with plain `cat` as the window's command, about 55 KB of 20 MB never \
             arrived in a trial), and the marker comes after every byte. One warm-up run per path, then {runs} \
             runs per path, the starting path alternating, a `sync` before each; median times, MB = 10^6 bytes. Checked after \
             timing: the raw client's file equals the input with `\\n` as `\\r\\n`, and every orch agent \
             exited with 0 and its screen shows the file's last line.",
            bytes = count(text.bytes as usize),
            out = count(expected as usize),
            runs = TMUX_INGEST_RUNS,
            orch = target.orch_setup,
        ),
        table: Table {
            head: vec![
                "measurement",
                "bytes",
                "runs",
                "MB/s (median)",
                "range",
                "time (median)",
                "vs raw client",
            ],
            rows: vec![
                raw_v.row(
                    "raw control-mode client (decodes `%output` to a file, stops at the marker)".into(),
                    expected,
                    String::new(),
                ),
                orch_v.row(
                    "orch tmux agent, no client reading (until the exit event)".into(),
                    expected,
                    format!("**{}**", times(orch_r / raw_r)),
                ),
            ],
        },
        goals: Vec::new(),
        reading: vec![format!(
            "{} ingest: tmux itself delivers {raw_r:.1} MB/s to a minimal control-mode client; orch's tmux \
             agent reaches {orch_r:.1} MB/s to its exit event ({}), {} later at the median (the exit is read \
             from the start script's marker in `%output`).",
            target.title,
            times(orch_r / raw_r),
            ms(gap),
        )],
    })
}

/// Run `cat FILE` in a new window through the raw control-mode client and write its decoded
/// output to `out` until the done marker: the time from writing `new-window`, and the bytes
/// before the marker.
fn raw_tmux_ingest(
    raw: &mut ControlMode,
    raw_pane: &str,
    text: &TextFile,
    out: &Path,
) -> Result<(Duration, u64)> {
    let line = format!(
        "new-window -d -P -F \"#{{pane_id}}\" -t ={RAW_SESSION}: -- /bin/sh -c 'cat \"$0\"; \
         printf \"\\033]2;orch-bench-done\\033\\134\"; exec sleep 2' {}",
        tmux_quote(&text.path.to_string_lossy())
    );
    let mut file = std::io::BufWriter::with_capacity(
        256 * 1024,
        std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?,
    );
    let mut pane: Option<String> = None;
    let mut written = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    let mut decoded = Vec::with_capacity(64 * 1024);
    let t = Instant::now();
    raw.write_line(&line)?;
    let took = loop {
        match raw.next()? {
            Control::Reply(lines) => {
                pane = Some(
                    lines
                        .first()
                        .cloned()
                        .ok_or_else(|| anyhow!("new-window printed no pane"))?,
                );
            }
            Control::Output { pane: p, data } => {
                // Late echoes of the latency rows come from the session's first pane.
                if p == raw_pane || pane.as_deref().is_some_and(|mine| mine != p) {
                    continue;
                }
                decoded.clear();
                decode_octal(data, &mut decoded);
                file.write_all(&decoded)?;
                written += decoded.len() as u64;
                tail.extend_from_slice(&decoded);
                if tail.windows(RAW_DONE.len()).any(|w| w == RAW_DONE) {
                    break t.elapsed();
                }
                let keep = tail.len().saturating_sub(RAW_DONE.len());
                tail.drain(..keep);
            }
            Control::Other => {}
        }
    };
    file.flush()?;
    drop(file);
    let pane = pane.ok_or_else(|| anyhow!("no reply to new-window"))?;
    raw.command(&format!("kill-window -t {pane}"))?;
    // The marker ends the output: drop it from the file.
    let n = written - RAW_DONE.len() as u64;
    let f = std::fs::OpenOptions::new().write(true).open(out)?;
    f.set_len(n)?;
    Ok((took, n))
}

/// `%output` data decoded: tmux writes bytes below 32 and `\` as `\ooo`.
fn decode_octal(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\\'
            && i + 3 < data.len()
            && data[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let d = &data[i + 1..i + 4];
            out.push(((d[0] - b'0') << 6) | ((d[1] - b'0') << 3) | (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
}

/// A word for tmux's command parser: single-quoted (no expansion inside), or bare when plain.
fn tmux_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        return word.to_string();
    }
    assert!(!word.contains('\''), "cannot quote {word:?} for tmux");
    format!("'{word}'")
}

/// An isolated tmux server (`tmux -L <unique name>`), killed when dropped.
struct TmuxServer {
    /// Its socket name.
    name: String,
}

impl TmuxServer {
    fn new(tag: &str) -> Self {
        Self {
            name: format!("orch-bench-{}-{tag}", std::process::id()),
        }
    }

    /// `tmux -L <name> -f /dev/null args...`; stdout on success.
    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.name, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .context("run tmux")?;
        ensure!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Start the server with a detached session whose window runs `cat`, with the window size and
    /// history orch gives its windows.
    fn start_session(&self, session: &str) -> Result<()> {
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            "cat",
        ])?;
        // New windows take the session's size (`-x`, `-y`); a global `window-size manual` would
        // make tmux 3.3a crash on the next `new-window` from a control client.
        self.tmux(&["set-option", "-g", "history-limit", "10000"])?;
        Ok(())
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.name, "kill-server"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        // tmux leaves its socket file behind: `$TMUX_TMPDIR/tmux-<uid>/<name>` (`/tmp` by default).
        let dir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(Path::new(&dir).join(format!("tmux-{uid}")).join(&self.name));
    }
}

/// What a control-mode client reads next.
enum Control<'a> {
    /// The lines of a reply block to a command of ours.
    Reply(Vec<String>),
    /// `%output %<pane> <data>`, data still escaped.
    Output { pane: &'a str, data: &'a [u8] },
    /// Any other notification, or a hook's block.
    Other,
}

/// A control-mode client (`tmux -C attach`) driven by the bench, one command at a time.
struct ControlMode {
    /// The client process.
    child: std::process::Child,
    /// Where command lines go.
    stdin: std::process::ChildStdin,
    /// What tmux says.
    out: std::io::BufReader<std::process::ChildStdout>,
    /// The current line.
    line: Vec<u8>,
    /// The last line other than output that tmux sent (`%exit <reason>` when it ends).
    notice: String,
}

impl ControlMode {
    fn attach(server: &TmuxServer, session: &str) -> Result<Self> {
        Self::start(
            [
                "tmux",
                "-L",
                &server.name,
                "-C",
                "attach-session",
                "-t",
                session,
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    /// A control-mode client whose process is `argv` (`ssh ... 'tmux -C attach ...'`).
    fn start(argv: Vec<String>) -> Result<Self> {
        let mut child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_remove("TMUX")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start tmux -C")?;
        let stdin = child.stdin.take().expect("piped");
        let out = std::io::BufReader::with_capacity(64 * 1024, child.stdout.take().expect("piped"));
        let mut c = Self {
            child,
            stdin,
            out,
            line: Vec::new(),
            notice: String::new(),
        };
        // The attach command's own reply (flags 0) comes first.
        loop {
            let l = c.read_line()?;
            if l.starts_with(b"%end") || l.starts_with(b"%error") {
                break;
            }
        }
        Ok(c)
    }

    fn read_line(&mut self) -> Result<&[u8]> {
        self.line.clear();
        let n = self.out.read_until(b'\n', &mut self.line)?;
        ensure!(
            n > 0,
            "the tmux control client ended (last notification: {:?})",
            self.notice
        );
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        }
        if self.line.starts_with(b"%") && !self.line.starts_with(b"%output ") {
            self.notice = String::from_utf8_lossy(&self.line).into_owned();
        }
        Ok(&self.line)
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.stdin.write_all(&bytes).context("write to tmux -C")
    }

    /// The next reply block, output line or other line.
    fn next(&mut self) -> Result<Control<'_>> {
        self.read_line()?;
        if self.line.starts_with(b"%begin ") {
            let flags_of = |l: &[u8]| {
                String::from_utf8_lossy(l)
                    .rsplit(' ')
                    .next()
                    .and_then(|f| f.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            let ours = flags_of(&self.line) & 1 == 1;
            let mut lines = Vec::new();
            loop {
                let l = self.read_line()?;
                if l.starts_with(b"%end ") || l.starts_with(b"%error ") {
                    let failed = l.starts_with(b"%error ");
                    if !ours {
                        return Ok(Control::Other);
                    }
                    ensure!(!failed, "tmux refused a command: {}", lines.join("; "));
                    return Ok(Control::Reply(lines));
                }
                lines.push(String::from_utf8_lossy(l).into_owned());
            }
        }
        if let Some(rest) = self.line.strip_prefix(b"%output ") {
            let i = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let pane = std::str::from_utf8(&rest[..i]).unwrap_or("");
            let data = rest.get(i + 1..).unwrap_or(b"");
            return Ok(Control::Output { pane, data });
        }
        Ok(Control::Other)
    }

    /// Run one command and return its reply's lines, skipping output and notifications.
    fn command(&mut self, line: &str) -> Result<Vec<String>> {
        self.write_line(line)?;
        loop {
            if let Control::Reply(lines) = self.next()? {
                return Ok(lines);
            }
        }
    }
}

impl Drop for ControlMode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the terminal groups: generated text, raw ptys, orch connections with events

/// A generated file of coloured text.
struct TextFile {
    /// Where it is.
    path: PathBuf,
    /// Its size.
    bytes: u64,
    /// Its lines (each ends with `\n`).
    newlines: u64,
    /// The last line, plain text: on the screen once everything was taken in.
    last_line: String,
}

impl TextFile {
    /// What a program printing the file puts out through a pty: `\n` becomes `\r\n`.
    fn pty_bytes(&self) -> u64 {
        self.bytes + self.newlines
    }
}

impl Env {
    /// A file of at least `size` bytes of coloured text, made on first use.
    fn text(&self, size: usize) -> Result<Arc<TextFile>> {
        let mut texts = self.texts.lock().unwrap();
        if let Some((_, t)) = texts.iter().find(|(s, _)| *s == size) {
            return Ok(t.clone());
        }
        let (data, lines, last_line) = coloured_text(size);
        let path = self.scratch.path().join(format!("coloured-{size}.txt"));
        std::fs::write(&path, &data).with_context(|| format!("write {}", path.display()))?;
        let t = Arc::new(TextFile {
            path,
            bytes: data.len() as u64,
            newlines: lines,
            last_line,
        });
        texts.push((size, t.clone()));
        Ok(t)
    }
}

/// At least `size` bytes of lines of words in colours (16, 256 and 24-bit SGR forms), bold,
/// dim and reset, with tabs and non-ASCII text, each line numbered and reset at its end; then a
/// plain last line. Deterministic. Returns the text, its line count and its last line.
fn coloured_text(size: usize) -> (Vec<u8>, u64, String) {
    const WORDS: &[&str] = &[
        "the",
        "daemon",
        "reads",
        "every",
        "byte",
        "of",
        "output",
        "while",
        "agents",
        "work",
        "compiling",
        "orch",
        "v0.1.0",
        "warning:",
        "unused",
        "variable",
        "error[E0382]:",
        "borrow",
        "moved",
        "value",
        "src/runtime.rs:417:9",
        "-->",
        "|",
        "=",
        "note:",
        "test",
        "ok",
        "FAILED",
        "passed;",
        "0",
        "1.23s",
        "résumé",
        "naïve",
        "Größe",
        "façade",
        "déjà",
        "日本語",
        "テスト",
        "漢字",
        "ελληνικά",
        "кириллица",
        "→",
        "✓",
        "✗",
        "…",
        "🙂",
        "│",
        "─",
        "0x7ffd",
        "{",
        "}",
        "fn",
        "main()",
        "let",
        "mut",
        "=>",
        "Ok(())",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11
    };
    let mut out = Vec::with_capacity(size + 1024);
    let mut lines = 0u64;
    while out.len() < size {
        lines += 1;
        let _ = write!(out, "\x1b[2m{lines:>8}\x1b[22m ");
        let words = 3 + rand() % 26;
        for _ in 0..words {
            match rand() % 20 {
                0..=2 => {
                    let base = if rand() % 2 == 0 { 30 } else { 90 };
                    let _ = write!(out, "\x1b[{}m", base + rand() % 8);
                }
                3 => {
                    let _ = write!(out, "\x1b[{}m", 40 + rand() % 8);
                }
                4 | 5 => {
                    let _ = write!(out, "\x1b[38;5;{}m", rand() % 256);
                }
                6 => {
                    let _ = write!(out, "\x1b[48;5;{}m", rand() % 256);
                }
                7 | 8 => {
                    let _ = write!(
                        out,
                        "\x1b[38;2;{};{};{}m",
                        rand() % 256,
                        rand() % 256,
                        rand() % 256
                    );
                }
                9 => out.extend_from_slice(b"\x1b[1m"),
                10 => out.extend_from_slice(b"\x1b[2m"),
                11 => out.extend_from_slice(b"\x1b[22m"),
                12 => out.extend_from_slice(b"\x1b[0m"),
                13 => out.push(b'\t'),
                _ => {}
            }
            out.extend_from_slice(WORDS[(rand() % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\x1b[0m\n");
    }
    lines += 1;
    let last_line = format!("end of the bench text: {lines} lines");
    out.extend_from_slice(last_line.as_bytes());
    out.push(b'\n');
    (out, lines, last_line)
}

/// A program on a pty the bench opened itself: no emulator, nothing but reads and writes.
struct RawPty {
    /// The master side.
    master: std::fs::File,
    /// The program, leading its own session with the pty as its controlling terminal.
    child: std::process::Child,
}

impl RawPty {
    /// Open a 120x40 pty (default line discipline) and start `argv` on its slave.
    fn spawn(argv: &[&str]) -> Result<Self> {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid out-pointers; no name buffer, default termios, a valid winsize.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        if rc != 0 {
            bail!("openpty: {}", std::io::Error::last_os_error());
        }
        // SAFETY: openpty returned two new descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        for fd in [&master, &slave] {
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let mut cmd = std::process::Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {argv:?} on a pty"))?;
        // The command holds the slave's descriptors: the master reads EIO only once they are
        // all closed.
        drop(cmd);
        Ok(Self {
            master: std::fs::File::from(master),
            child,
        })
    }
}

impl Drop for RawPty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An initialized connection to the daemon at `socket` that fails rather than hangs.
fn orch_conn(socket: &Path) -> Result<FramedConn> {
    let c = Server::Orch(socket.to_path_buf()).connect()?;
    c.stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(c)
}

/// Subscribe `c` to `agent.state` events.
fn subscribe_agent_states(c: &mut FramedConn) -> Result<()> {
    let v = c.call(
        -1,
        "orch/events/subscribe",
        json!({ "kinds": ["agent.state"] }),
    )?;
    result_of(&v)?;
    Ok(())
}

/// A framed request.
fn request_frame(id: i64, method: &str, params: Value) -> Vec<u8> {
    encode(
        &serde_json::to_vec(
            &json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
        )
        .expect("a JSON value serializes"),
    )
}

fn recv_value(c: &mut FramedConn) -> Result<Value> {
    Ok(serde_json::from_slice(&c.recv()?)?)
}

/// The result of response `v`, or its error.
fn result_of(v: &Value) -> Result<&Value> {
    v.get("result")
        .filter(|_| v.get("error").is_none())
        .ok_or_else(|| anyhow!("request failed: {v}"))
}

/// Write dirty pages out now (`sync`), outside any timing, so that writeback of earlier runs'
/// files (generated text, output logs) does not compete with the next measurement.
fn flush_dirty_pages() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------
// Group: hosts (a remote host's tmux over SSH against a raw control-mode client over the same SSH)

/// The hosts group: the tmux rows again, with the agents on a remote host reached through a real
/// OpenSSH server on loopback (the test kit's), against a raw control-mode client that runs
/// `ssh ... 'tmux -C attach'` through the same server. Skipped, and said so, without sshd or tmux.
fn hosts_group(env: &Env) -> Result<Vec<Section>> {
    use orch_tests::sshd::Sshd;
    let version = tmux_version();
    let (Some(version), true) = (version, Sshd::available()) else {
        eprintln!("perf:   tmux or sshd is not installed: the hosts group is skipped");
        return Ok(vec![Section {
            title: "remote host (tmux over SSH)".into(),
            method: "Skipped in this run: tmux or the OpenSSH server (`/usr/sbin/sshd`) is not installed.".into(),
            table: Table {
                head: vec!["measurement", "result"],
                rows: vec![vec!["every remote-host row".into(), "skipped: no tmux or sshd".into()]],
            },
            goals: Vec::new(),
            reading: vec!["The remote-host rows were skipped: tmux or sshd is not installed.".into()],
        }]);
    };
    let sshd = Sshd::start();
    let text = env.text(TMUX_INGEST_BYTES)?;
    let orch_server = TmuxServer::new("host-orch");
    let raw_server = TmuxServer::new("host-raw");
    raw_server.start_session(RAW_SESSION)?;
    let mut argv = sshd.ssh_argv();
    argv.push(format!(
        "tmux -L {} -C attach-session -t {RAW_SESSION}",
        raw_server.name
    ));
    let mut raw = ControlMode::start(argv)?;
    let ssh: Vec<String> = sshd.ssh_argv().iter().map(|a| format!("{a:?}")).collect();
    let daemon = Daemon::started(Some(&format!(
        "[hosts.lab]\nssh = [{}]\nsocket_name = \"{}\"\n",
        ssh.join(", "),
        orch_server.name
    )));
    let socket = daemon.socket();
    // The host connects in the background: wait for it.
    let mut c = Server::Orch(socket.clone()).connect()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = c.call(-1, "orch/status", json!({}))?;
        let h = &result_of(&st)?["hosts"][0];
        if h["state"] == "connected" {
            break;
        }
        ensure!(Instant::now() < deadline, "host lab never connected: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    let raw_pane = raw_first_pane(&mut raw)?;
    let target = TmuxTarget {
        spawn: json!({ "host": "lab" }),
        title: "Remote host (tmux over SSH)",
        orch_setup: "a fresh daemon whose `orch.toml` has a `[hosts.lab]` reaching the test kit's OpenSSH \
                     server on a loopback port (keys of its own; the \"host\" is this machine through SSH) and \
                     naming an isolated tmux server there, agents spawned with `host: \"lab\"`: one SSH \
                     connection carries the daemon's control-mode client",
        raw_setup: "a control-mode client started by the bench through the same sshd (`ssh ... 'tmux -L \
                    <another isolated server> -C attach'`)",
        latency_bound: Some(1.5),
    };
    flush_dirty_pages();
    let latency = tmux_latency_section(&socket, &mut raw, &raw_pane, &version, &target)?;
    let ingest = tmux_ingest_section(&socket, &mut raw, &raw_pane, &text, env, &target)?;
    drop(raw);
    drop(daemon);
    drop(sshd);
    Ok(vec![latency, ingest])
}

// ---------------------------------------------------------------------------------------------
// Group: agents (from a question to `waiting`, from a task to the model)

/// Samples per path of the question rows.
const QUESTION_SAMPLES: usize = 30;
/// Prompts per path of the task-to-model rows (each is a real Claude Code turn).
const PROMPT_SAMPLES: usize = 8;

/// Claude Code's permission dialog as it draws it (`tests/fixtures/screens/claude-approval.txt`).
const CLAUDE_DIALOG: &str = " Bash command\n\n   touch made-by-claude\n   Run a scripted command\n\n Do you want to proceed?\n ❯ 1. Yes\n   2. Yes, and always allow access to ws/ from this project\n   3. No\n\n Esc to cancel · Tab to amend · ctrl+e to explain\n";

/// How fast orch knows that an agent asks something, and how fast a task's prompt reaches the
/// model through a real agent.
fn agents_group(env: &Env) -> Result<Vec<Section>> {
    let mut sections = vec![question_section(env)?];
    sections.push(acp_section()?);
    sections.push(prompt_section()?);
    Ok(sections)
}

/// Permission requests measured after warm-up, per path.
const ACP_SAMPLES: usize = 200;
/// Permission requests before them, not measured.
const ACP_WARMUP: usize = 20;

/// A minimal ACP agent for the bench: on a prompt of `N`, it asks permission `N` times in a
/// row (each request stamped with `time.monotonic_ns()` in `_meta.t`), records when each answer
/// arrived, and ends the turn with a message `BENCH [[asked, answered], ...]`.
const ACP_BENCH_AGENT: &str = r#"
import json, sys, time
def send(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line)
    method, mid = m.get("method"), m.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []}})
    elif method == "session/new":
        send({"jsonrpc": "2.0", "id": mid, "result": {"sessionId": "bench"}})
    elif method == "session/prompt":
        n = int(m["params"]["prompt"][0]["text"])
        times = []
        for i in range(n):
            t = time.monotonic_ns()
            send({"jsonrpc": "2.0", "id": 1000 + i, "method": "session/request_permission", "params": {
                "sessionId": "bench", "toolCall": {"toolCallId": "c%d" % i, "title": "touch x", "kind": "execute"},
                "options": [{"optionId": "ok", "name": "OK", "kind": "allow_once"},
                            {"optionId": "no", "name": "No", "kind": "reject_once"}],
                "_meta": {"t": t}}})
            while True:
                r = json.loads(sys.stdin.readline())
                if r.get("id") == 1000 + i and "result" in r:
                    break
            times.append([t, time.monotonic_ns()])
        send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": "bench", "update": {
            "sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "BENCH " + json.dumps(times)}}}})
        send({"jsonrpc": "2.0", "id": mid, "result": {"stopReason": "end_turn"}})
"#;

/// `CLOCK_MONOTONIC` in nanoseconds, the clock Python's `time.monotonic_ns` reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `BENCH` report of the bench agent: `(asked, answered)` per request.
fn acp_report(text: &str) -> Result<Vec<(u64, u64)>> {
    let times = text
        .trim()
        .strip_prefix("BENCH ")
        .ok_or_else(|| anyhow!("not the bench agent's report: {text:.80}"))?;
    Ok(serde_json::from_str(times)?)
}

/// A permission request's way through orch and back, against the same agent driven by a
/// minimal ACP client over its pipes.
fn acp_section() -> Result<Section> {
    let n = ACP_WARMUP + ACP_SAMPLES;
    eprintln!("perf:   ACP permissions: {ACP_SAMPLES} samples per path");
    // The raw client: reads the agent's lines, answers each request at once.
    let (raw_in, raw_out) = {
        let mut child = std::process::Command::new("python3")
            .args(["-c", ACP_BENCH_AGENT])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("run python3 for the bench's ACP agent")?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut send = |v: Value| -> Result<()> {
            stdin.write_all(format!("{v}\n").as_bytes())?;
            stdin.flush()?;
            Ok(())
        };
        send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}),
        )?;
        send(
            json!({"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {"cwd": "/", "mcpServers": []}}),
        )?;
        send(
            json!({"jsonrpc": "2.0", "id": 3, "method": "session/prompt", "params": {"sessionId": "bench",
            "prompt": [{"type": "text", "text": n.to_string()}]}}),
        )?;
        let (mut seen, mut answered) = (Vec::new(), Vec::new());
        let mut line = String::new();
        let report = loop {
            line.clear();
            ensure!(stdout.read_line(&mut line)? > 0, "the bench agent ended");
            let now = monotonic_ns();
            let v: Value = serde_json::from_str(&line)?;
            if v["method"] == "session/request_permission" {
                seen.push(now);
                let t = monotonic_ns();
                send(
                    json!({"jsonrpc": "2.0", "id": v["id"], "result": {"outcome": {"outcome": "selected", "optionId": "ok"}}}),
                )?;
                answered.push(t);
            } else if let Some(text) = v["params"]["update"]["content"]["text"].as_str() {
                break acp_report(text)?;
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        ensure!(
            report.len() == n,
            "the raw client saw {} of {n} requests",
            report.len()
        );
        let mut to_client = Vec::new();
        let mut to_agent = Vec::new();
        for (i, ((asked, got), (seen, sent))) in
            report.iter().zip(seen.iter().zip(&answered)).enumerate()
        {
            if i >= ACP_WARMUP {
                to_client.push(Duration::from_nanos(seen - asked));
                to_agent.push(Duration::from_nanos(got - sent));
            }
        }
        (latency(&mut to_client), latency(&mut to_agent))
    };

    // Through orch: the same agent as an ACP agent; a client subscribed to its states and
    // decisions answers each decision at once.
    let daemon = Daemon::started(None);
    let mut c = orch_conn(&daemon.socket())?;
    result_of(&c.call(
        -1,
        "orch/events/subscribe",
        json!({ "kinds": ["agent.state", "decision.requested", "agent.message"] }),
    )?)?;
    let agent = result_of(&c.call(
        -2,
        "orch/agent/spawn",
        json!({ "command": ["python3", "-c", ACP_BENCH_AGENT], "protocol": "acp" }),
    )?)?
    .clone();
    let id = agent["id"].as_str().unwrap_or_default().to_string();
    wait_agent_state(&mut c, &id, "idle")?;
    result_of(&c.call(
        -3,
        "orch/agent/send",
        json!({ "id": id, "text": n.to_string() }),
    )?)?;
    let (mut waiting_at, mut answered_at) = (Vec::new(), Vec::new());
    let mut next_id = 100i64;
    let report = loop {
        let v = recv_value(&mut c)?;
        if v["method"] != "orch/event" {
            if v.get("error").is_some() {
                bail!("a request failed: {v}");
            }
            continue;
        }
        let e = &v["params"]["event"];
        match e["kind"].as_str() {
            Some("agent.state")
                if e["subject"] == id.as_str() && e["data"]["state"] == "waiting" =>
            {
                waiting_at.push(monotonic_ns());
            }
            Some("decision.requested") if e["data"]["decision"]["source"]["id"] == id.as_str() => {
                let t = monotonic_ns();
                c.send(&request_frame(
                    next_id,
                    "orch/decision/resolve",
                    json!({ "id": e["data"]["decision"]["id"], "choice": "OK" }),
                ))?;
                next_id += 1;
                answered_at.push(t);
            }
            Some("agent.message")
                if e["subject"] == id.as_str() && e["data"]["role"] == "agent" =>
            {
                break acp_report(e["data"]["text"].as_str().unwrap_or_default())?;
            }
            _ => {}
        }
    };
    drop(daemon);
    ensure!(
        report.len() == n && waiting_at.len() == n && answered_at.len() == n,
        "through orch: {} requests, {} waiting events, {} decisions for {n}",
        report.len(),
        waiting_at.len(),
        answered_at.len()
    );
    let (mut to_waiting, mut to_agent) = (Vec::new(), Vec::new());
    for (i, ((asked, got), (waiting, answered))) in report
        .iter()
        .zip(waiting_at.iter().zip(&answered_at))
        .enumerate()
    {
        if i >= ACP_WARMUP {
            to_waiting.push(Duration::from_nanos(waiting - asked));
            to_agent.push(Duration::from_nanos(got - answered));
        }
    }
    let (ow, oa) = (latency(&mut to_waiting), latency(&mut to_agent));
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    let row = |name: &str, l: Latency| vec![name.to_string(), us(l.p50), us(l.p99), us(l.mean)];
    let goal = Duration::from_millis(1);
    Ok(Section {
        title: "ACP permission requests".into(),
        method: format!(
            "A minimal ACP agent (Python) that asks permission {n} times in a row, stamping each \
             `session/request_permission` with `CLOCK_MONOTONIC` when it writes it and noting when each \
             answer arrives. Raw: the bench drives it over its pipes as a minimal ACP client, answering \
             each request as it reads it. orch: the same agent spawned with `protocol: \"acp\"`; a client \
             subscribed to `agent.state` and `decision.requested` notes when the `waiting` event arrives \
             and answers each decision (`orch/decision/resolve`) as soon as it is announced. Request → \
             `waiting` includes the commit (the event is durable, synced, before any client sees it); \
             answer → agent is from sending `orch/decision/resolve` to the agent reading the outcome. \
             {ACP_SAMPLES} samples per path after {ACP_WARMUP} warm-up requests."
        ),
        table: Table {
            head: vec!["path", "p50", "p99", "mean"],
            rows: vec![
                row("orch: `request_permission` → `waiting` event", ow),
                row("raw: `request_permission` → the client reads it", raw_in),
                row("orch: `orch/decision/resolve` sent → the agent reads the outcome", oa),
                row("raw: answer written → the agent reads it", raw_out),
            ],
        },
        goals: vec![
            Goal {
                goal: "request → `waiting` within 1 ms of the raw ACP round trip".into(),
                measured: format!(
                    "p50 {} vs raw {}",
                    us(ow.p50),
                    us(raw_in.p50)
                ),
                met: ow.p50 <= raw_in.p50 + goal,
            },
            Goal {
                goal: "answer → agent within 1 ms of the raw ACP round trip".into(),
                measured: format!(
                    "p50 {} vs raw {}",
                    us(oa.p50),
                    us(raw_out.p50)
                ),
                met: oa.p50 <= raw_out.p50 + goal,
            },
        ],
        reading: vec![format!(
            "orch adds {} at the median to a permission request reaching a client (the `waiting` event is \
             written and synced to the event log first) and {} to its answer reaching the agent (the \
             answer is recorded, synced, then written to the agent's stdin).",
            us(ow.p50.saturating_sub(raw_in.p50)),
            us(oa.p50.saturating_sub(raw_out.p50)),
        )],
    })
}

/// From the question to the `waiting` event: through a hook (what Claude Code's hook runs) and
/// through the screen, each against the floor of its path.
fn question_section(env: &Env) -> Result<Section> {
    eprintln!("perf:   questions: {QUESTION_SAMPLES} samples per path");
    let dialog = env.scratch.path().join("dialog.txt");
    std::fs::write(&dialog, CLAUDE_DIALOG)?;
    let daemon = Daemon::started(Some(&format!(
        "[agents.asker]\ncommand = [\"bash\", \"--norc\", \"--noprofile\", \"-c\", {script:?}]\n\
         waiting_patterns = [\"Do you want to proceed\\\\?\"]\nlook_back = 14\n",
        script = format!(
            "while read -r l; do case $l in d) cat {};; c) printf '\\033[2J\\033[Hworking\\n';; esac; done",
            dialog.display()
        )
    )));
    let socket = daemon.socket();
    let mut c = orch_conn(&socket)?;
    subscribe_agent_states(&mut c)?;
    // The hook path: an agent that reports through hooks, fed by `orch hook` as Claude Code runs it.
    let hooked = result_of(&c.call(
        -2,
        "orch/agent/spawn",
        json!({ "command": ["bash", "--norc", "--noprofile", "-c", "exec sleep 3600"] }),
    )?)?
    .clone();
    let (hooked_id, hooked_terminal) = (
        hooked["id"].as_str().unwrap_or_default().to_string(),
        hooked["terminalId"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    let run_hook = |socket: &Path, event: &str| -> Result<Duration> {
        let t = Instant::now();
        let mut child = std::process::Command::new(&env.orch_bin)
            .arg("hook")
            .env("ORCH_AGENT_ID", &hooked_id)
            .env("ORCH_TERMINAL_ID", &hooked_terminal)
            .env("ORCH_SOCKET", socket)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("run orch hook")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(event.as_bytes())?;
        child.wait()?;
        Ok(t.elapsed())
    };
    const PERMISSION: &str = r#"{"hook_event_name":"PermissionRequest","tool_name":"Bash","tool_input":{"command":"touch x"}}"#;
    const DONE: &str = r#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#;
    let (mut hook_lat, mut hook_floor) = (Vec::new(), Vec::new());
    let nowhere = env.scratch.path().join("no-daemon.sock");
    for i in 0..=QUESTION_SAMPLES {
        let t = Instant::now();
        run_hook(&socket, PERMISSION)?;
        wait_agent_state(&mut c, &hooked_id, "waiting")?;
        let took = t.elapsed();
        run_hook(&socket, DONE)?;
        wait_agent_state(&mut c, &hooked_id, "busy")?;
        let floor = run_hook(&nowhere, PERMISSION)?;
        if i > 0 {
            hook_lat.push(took);
            hook_floor.push(floor);
        }
    }
    // The screen path: a program that draws Claude Code's dialog when told.
    let asker = result_of(&c.call(-3, "orch/agent/spawn", json!({ "kind": "asker" }))?)?.clone();
    let (asker_id, asker_terminal) = (
        asker["id"].as_str().unwrap_or_default().to_string(),
        asker["terminalId"].as_str().unwrap_or_default().to_string(),
    );
    let mut out = orch_conn(&socket)?;
    result_of(&out.call(
        -4,
        "orch/terminal/subscribe",
        json!({ "id": asker_terminal }),
    )?)?;
    let (mut screen_lat, mut screen_floor) = (Vec::new(), Vec::new());
    for i in 0..=QUESTION_SAMPLES {
        let t = Instant::now();
        out.send(&request_frame(
            10_000 + i as i64,
            "orch/terminal/write",
            json!({ "id": asker_terminal, "data": "d\n" }),
        ))?;
        // The dialog's output reaching a subscriber is the floor of the screen path.
        let floor = loop {
            let v = recv_value(&mut out)?;
            if v["method"] == "orch/terminal/output"
                && v["params"]["data"]
                    .as_str()
                    .is_some_and(|d| d.contains("Do you want to proceed"))
            {
                break t.elapsed();
            }
        };
        wait_agent_state(&mut c, &asker_id, "waiting")?;
        let took = t.elapsed();
        result_of(&out.call(
            20_000 + i as i64,
            "orch/terminal/write",
            json!({ "id": asker_terminal, "data": "c\n" }),
        )?)?;
        wait_agent_state(&mut c, &asker_id, "busy")?;
        if i > 0 {
            screen_lat.push(took);
            screen_floor.push(floor);
        }
    }
    // Every question raised a decision: one per sample of the screen path (the hooks' are raised
    // when their dialog would show, which this program never draws).
    let pending = result_of(&c.call(-5, "orch/decision/list", json!({ "limit": 1000 }))?)?.clone();
    let from_screen = pending["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| d["source"]["id"] == json!(asker_id))
                .count()
        })
        .unwrap_or(0);
    ensure!(
        from_screen == QUESTION_SAMPLES + 1,
        "the screen path raised {from_screen} decisions for {} questions",
        QUESTION_SAMPLES + 1
    );
    drop(daemon);
    let (hl, hf, sl, sf) = (
        latency(&mut hook_lat),
        latency(&mut hook_floor),
        latency(&mut screen_lat),
        latency(&mut screen_floor),
    );
    let row = |name: &str, l: Latency| vec![name.to_string(), ms3(l.p50), ms3(l.p99), ms3(l.mean)];
    let hook_goal = Duration::from_millis(100);
    Ok(Section {
        title: "From a question to `waiting`".into(),
        method: format!(
            "A fresh daemon; one connection subscribed to `agent.state`. Hook: an agent (`sleep`) whose \
             state comes from `orch hook`, run as Claude Code's command hooks run it (a new process, the \
             hook's JSON on stdin, `ORCH_AGENT_ID`, `ORCH_TERMINAL_ID`, `ORCH_SOCKET` set); a sample is \
             from starting `orch hook` with a `PermissionRequest` until the `waiting` event is read (a \
             `PostToolUse` hook resets it to busy between samples, unmeasured). Its floor: the same \
             `orch hook` process with no daemon at its socket, start to exit. Screen: an agent whose program \
             draws Claude Code's permission dialog when told (`orch/terminal/write` `d`), with the \
             built-in claude kind's waiting pattern and look-back; a sample is from the write until the \
             `waiting` event; its floor is the first `orch/terminal/output` notification carrying the \
             dialog, on a second connection. {n} samples per path after one warm-up. Checked: every \
             screen question raised a decision.",
            n = QUESTION_SAMPLES
        ),
        table: Table {
            head: vec!["path", "p50", "p99", "mean"],
            rows: vec![
                row("hook: `orch hook` started → `waiting` event", hl),
                row("floor: `orch hook` with no daemon, start → exit", hf),
                row("screen: dialog written → `waiting` event", sl),
                row("floor: dialog written → its output at a subscriber", sf),
            ],
        },
        goals: vec![Goal {
            goal: "`waiting` at most 100 ms after the hook fires".into(),
            measured: format!("p50 {}, p99 {}", ms3(hl.p50), ms3(hl.p99)),
            met: hl.p99 <= hook_goal,
        }],
        reading: vec![format!(
            "A hook reaches `waiting` {} after it starts at the median, of which {} is starting the `orch \
             hook` process itself; the screen path waits for the output to pause ({} after the dialog \
             arrives, by design: a dialog is read once it is drawn, not mid-draw).",
            ms3(hl.p50),
            ms3(hf.p50),
            ms3(sl.p50.saturating_sub(sf.p50)),
        )],
    })
}

/// Wait for an `agent.state` event moving `agent` to `state` on a subscribed connection.
fn wait_agent_state(c: &mut FramedConn, agent: &str, state: &str) -> Result<()> {
    loop {
        let v = recv_value(c)?;
        if v["method"] == "orch/event"
            && v["params"]["event"]["subject"] == agent
            && v["params"]["event"]["data"]["state"] == state
        {
            return Ok(());
        }
    }
}

/// From a task (or a raw client's paste) to the prompt's request at the model server, through
/// the real Claude Code. Skipped, saying so, when it is not installed.
fn prompt_section() -> Result<Section> {
    use orch_tests::real::{ModelServer, RealAgent};
    let skipped = |why: &str| Section {
        title: "From a task to the model".into(),
        method: format!("Skipped in this run: {why}."),
        table: Table {
            head: vec!["measurement", "result"],
            rows: vec![vec!["every row".into(), format!("skipped: {why}")]],
        },
        goals: Vec::new(),
        reading: vec![format!("The task-to-model rows were skipped: {why}.")],
    };
    if RealAgent::Claude.binary().is_none() {
        return Ok(skipped(
            "Claude Code is not installed (`bash .ci/agents.sh`)",
        ));
    }
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        return Ok(skipped("tmux is not installed"));
    }
    eprintln!("perf:   task to model: {PROMPT_SAMPLES} prompts per path through Claude Code");
    let server = ModelServer::start();
    let mut daemon = Daemon::new(None);
    let home = daemon.state_dir.path().join("claude-home");
    std::fs::create_dir_all(&home)?;
    let setup = RealAgent::Claude.prepare(&home, daemon.workspace.path(), &server);
    std::fs::write(
        daemon.workspace.path().join("orch.toml"),
        setup.orch_toml("claude"),
    )?;
    daemon.start();
    let socket = daemon.socket();
    let mut c = orch_conn(&socket)?;
    subscribe_agent_states(&mut c)?;
    let agent = result_of(&c.call(-2, "orch/agent/spawn", json!({ "kind": "claude" }))?)?.clone();
    let agent_id = agent["id"].as_str().unwrap_or_default().to_string();
    wait_agent_state(&mut c, &agent_id, "idle")?;
    // The time at which the model server logged the request whose prompt holds `marker`.
    let logged_at = |marker: &str| -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = server.requests().into_iter().find(|r| {
                r["side"] != true
                    && r["last_user_text"]
                        .as_str()
                        .is_some_and(|t| t.contains(marker))
            }) {
                return r["time"]
                    .as_f64()
                    .ok_or_else(|| anyhow!("a logged request without a time: {r}"));
            }
            ensure!(
                Instant::now() < deadline,
                "{marker} never reached the model server"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let epoch = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let mut orch_lat = Vec::new();
    for i in 0..=PROMPT_SAMPLES {
        let marker = format!("orch-bench-task-{i}");
        let t0 = epoch();
        let task = result_of(&c.call(
            100 + i as i64,
            "orch/task/create",
            json!({ "title": "bench", "prompt": format!("{marker} @reply(ok)"), "agentId": agent_id }),
        )?)?
        .clone();
        let at = logged_at(&marker)?;
        wait_agent_state(&mut c, &agent_id, "idle")?;
        result_of(&c.call(
            200 + i as i64,
            "orch/task/cancel",
            json!({ "id": task["id"] }),
        )?)?;
        if i > 0 {
            orch_lat.push(Duration::from_secs_f64((at - t0).max(0.0)));
        }
    }
    drop(c);
    drop(daemon);
    // The raw client: the same Claude Code in a tmux pane, typed into with paste-buffer, then
    // send-keys Enter.
    let raw_home = tempfile::Builder::new()
        .prefix("orch-bench-claude-")
        .tempdir()?;
    let raw_ws = tempfile::Builder::new()
        .prefix("orch-bench-ws-")
        .tempdir()?;
    let raw_setup = RealAgent::Claude.prepare(raw_home.path(), raw_ws.path(), &server);
    let tmux = TmuxServer::new("claude");
    let mut new_session: Vec<String> = [
        "new-session",
        "-d",
        "-s",
        "claude",
        "-x",
        "120",
        "-y",
        "40",
        "-c",
    ]
    .map(String::from)
    .to_vec();
    new_session.push(raw_ws.path().display().to_string());
    for (k, v) in &raw_setup.env {
        new_session.push("-e".into());
        new_session.push(format!("{k}={v}"));
    }
    new_session.extend(raw_setup.command.iter().cloned());
    let args: Vec<&str> = new_session.iter().map(String::as_str).collect();
    tmux.tmux(&args)?;
    let idle = || -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = tmux.tmux(&["capture-pane", "-p", "-t", "claude"])?;
            if screen.contains("? for shortcuts") {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the raw Claude Code never became idle:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    idle()?;
    // Claude Code takes an Enter only once its input handler runs (about 0.3 s after it first
    // draws its prompt): give it a second.
    std::thread::sleep(Duration::from_secs(1));
    let mut raw_lat = Vec::new();
    for i in 0..=PROMPT_SAMPLES {
        let marker = format!("raw-bench-task-{i}");
        let t0 = epoch();
        tmux.tmux(&[
            "set-buffer",
            "-b",
            "bench",
            "--",
            &format!("{marker} @reply(ok)"),
        ])?;
        tmux.tmux(&["paste-buffer", "-p", "-d", "-b", "bench", "-t", "claude"])?;
        tmux.tmux(&["send-keys", "-t", "claude", "Enter"])?;
        let at = logged_at(&marker)?;
        if i > 0 {
            raw_lat.push(Duration::from_secs_f64((at - t0).max(0.0)));
        }
        std::thread::sleep(Duration::from_millis(300));
        idle()?;
    }
    let (o, r) = (latency(&mut orch_lat), latency(&mut raw_lat));
    let row = |name: &str, l: Latency| vec![name.to_string(), ms3(l.p50), ms3(l.p99), ms3(l.mean)];
    Ok(Section {
        title: "From a task to the model".into(),
        method: format!(
            "The real Claude Code ({}) against the loopback model server, in a fresh daemon (pty backend, \
             the built-in claude kind with its hooks). orch: with the agent idle, `orch/task/create {{agentId}}` \
             with a prompt; a sample is from sending the request until the model server logged the \
             prompt's request (its own clock; the same machine), then the agent's answer, `idle`, and the \
             task cancelled, unmeasured. Raw: the same Claude Code in a tmux pane, idle; `tmux set-buffer`, \
             `paste-buffer -p`, then `send-keys Enter` (three tmux processes), until the request is logged. \
             {n} prompts per path after one warm-up.",
            "2.1.197",
            n = PROMPT_SAMPLES
        ),
        table: Table {
            head: vec!["path", "p50", "p99", "mean"],
            rows: vec![
                row("orch: `orch/task/create` → request at the model", o),
                row("raw tmux client: paste + Enter → request at the model", r),
                vec![
                    "**orch / raw**".into(),
                    times(o.p50.as_secs_f64() / r.p50.as_secs_f64()),
                    times(o.p99.as_secs_f64() / r.p99.as_secs_f64()),
                    times(o.mean.as_secs_f64() / r.mean.as_secs_f64()),
                ],
            ],
        },
        goals: Vec::new(),
        reading: vec![format!(
            "A task's prompt reaches the model {} after `orch/task/create` at the median, against {} for a \
             raw paste and Enter: orch waits for the paste to show in Claude Code's input box and for the \
             agent to go quiet (60 ms) before its Enter, which is what makes the prompt land on the first try.",
            ms3(o.p50),
            ms3(r.p50)
        )],
    })
}

/// Milliseconds with one decimal.
fn ms3(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------
// Group: worktrees (an agent's own git checkout against plain git)

/// Tracked files in the generated repository.
const WT_FILES: usize = 10_000;
/// Worktrees made per path, measured, after one warm-up each.
const WT_CREATE_ROUNDS: usize = 10;
/// Diffs per path, measured, after [`WT_DIFF_WARMUP`] each.
const WT_DIFF_ROUNDS: usize = 40;
/// Diffs per path before them, not measured.
const WT_DIFF_WARMUP: usize = 3;
/// The diffed worktree's change set: tracked files edited, untracked files added, tracked files
/// deleted (none of it staged or committed).
const WT_MODIFIED: usize = 50;
const WT_ADDED: usize = 10;
const WT_DELETED: usize = 5;
/// Pause after the untimed removal of a worktree and `sync`, before the next measurement: the
/// daemon counts an ended agent's changes off its loop, and that must not overlap what is timed.
const WT_SETTLE: Duration = Duration::from_millis(200);

/// The repository's `i`th file: 250 directories of 40 files.
fn wt_file(i: usize) -> String {
    format!("src/m{:02}/p{}/f{i:05}.rs", i % 50, i / 50 % 5)
}

/// The content of file `i`: 10 to 69 lines of code-like text (about 2.2 KB on average).
fn wt_content(i: usize) -> String {
    let lines = 10 + (i * 7_919) % 60;
    (0..lines)
        .map(|l| format!("    let v{l} = compute({i}, {l}, \"line {l} of file {i}\");\n"))
        .collect()
}

/// The `k`th file of the change set: distinct indices spread over the repository.
fn wt_changed(k: usize) -> usize {
    k * 197 % WT_FILES
}

/// CPU time (user + system) of process `pid` and of its children it has waited for, from
/// `/proc/<pid>/stat` (clock ticks: 10 ms on most kernels, so only sums over many samples mean
/// something).
fn process_cpu(pid: i64) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat: {stat}"))?;
    // Fields after the command name start at field 3 (state); utime, stime, cutime and cstime
    // are fields 14 to 17.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)
        .ok_or_else(|| anyhow!("short /proc/{pid}/stat: {stat}"))?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// User + system time of this process's children it has waited for.
fn children_cpu() -> Duration {
    // SAFETY: a zeroed rusage is valid; getrusage writes into it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Wall and CPU time of one operation.
#[derive(Clone, Copy)]
struct Timed {
    wall: Duration,
    cpu: Duration,
}

/// Samples of one path of a worktree row.
#[derive(Default)]
struct TimedRuns(Vec<Timed>);

impl TimedRuns {
    fn walls(&self) -> Latency {
        latency(&mut self.0.iter().map(|t| t.wall).collect::<Vec<_>>())
    }
    fn min(&self) -> Duration {
        self.0.iter().map(|t| t.wall).min().unwrap_or_default()
    }
    fn max(&self) -> Duration {
        self.0.iter().map(|t| t.wall).max().unwrap_or_default()
    }
    fn mean_cpu(&self) -> Duration {
        self.0.iter().map(|t| t.cpu).sum::<Duration>() / self.0.len().max(1) as u32
    }
}

/// Plain git as the bench runs it: the person's `git`, in `dir`, with the daemon's `HOME` (so
/// that both sides read the same configuration, none of this machine's user's) and an identity
/// for the repository's first commit.
fn plain_git(home: &Path, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.current_dir(dir)
        .env("HOME", home)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@localhost")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@localhost")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Run plain git to the end; its stdout. Exit codes in `ok` count as success (`git diff
/// --no-index` exits 1 when the files differ).
fn run_git(home: &Path, dir: &Path, args: &[&str], ok: &[i32]) -> Result<Vec<u8>> {
    let out = plain_git(home, dir)
        .args(args)
        .output()
        .context("run git")?;
    ensure!(
        out.status.code().is_some_and(|c| ok.contains(&c)),
        "git {} in {}: {}: {}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

/// The repository of the worktree rows at `root`: [`WT_FILES`] files and a `.gitignore`, one
/// commit on `main`, packed (as a cloned repository is).
fn make_worktree_repo(home: &Path, root: &Path) -> Result<()> {
    run_git(home, root, &["init", "-q", "-b", "main"], &[0])?;
    for i in 0..WT_FILES {
        let path = root.join(wt_file(i));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, wt_content(i))?;
    }
    std::fs::write(root.join(".gitignore"), "target/\n*.log\n")?;
    run_git(home, root, &["add", "-A"], &[0])?;
    run_git(home, root, &["commit", "-q", "-m", "10,000 files"], &[0])?;
    run_git(home, root, &["repack", "-a", "-d", "-q"], &[0])?;
    Ok(())
}

/// An orch connection for the worktree rows, numbering its requests.
struct WtClient {
    conn: FramedConn,
    next: i64,
    /// The daemon's pid (its CPU time, with the git processes it waited for, is read from
    /// `/proc`).
    pid: i64,
}

impl WtClient {
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next += 1;
        let v = self.conn.call(self.next, method, params)?;
        Ok(result_of(&v)?.clone())
    }

    /// `orch/agent/spawn {name, command: ["true"], worktree: true}`, timed until the reply;
    /// the agent and its worktree path.
    fn spawn_in_worktree(&mut self, name: &str) -> Result<(Timed, String, PathBuf)> {
        let cpu = process_cpu(self.pid)?;
        let t = Instant::now();
        let agent = self.call(
            AgentSpawn::METHOD,
            json!({ "name": name, "command": ["true"], "worktree": true }),
        )?;
        let wall = t.elapsed();
        let timed = Timed {
            wall,
            cpu: process_cpu(self.pid)?.saturating_sub(cpu),
        };
        let id = agent["id"]
            .as_str()
            .ok_or_else(|| anyhow!("a spawned agent without an id: {agent}"))?
            .to_string();
        let path = agent["worktree"]["path"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("agent {name} has no worktree: {agent}"))?;
        Ok((timed, id, path))
    }

    /// Wait until the agent's program ended (`true` exits at once).
    fn wait_ended(&mut self, id: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = self.call(AgentGet::METHOD, json!({ "id": id }))?;
            if matches!(
                a["state"].as_str(),
                Some("exited" | "failed" | "stopped" | "lost")
            ) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "agent {id} did not end: {}",
                a["state"]
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Worktree creation and diff through the daemon against plain git on a generated repository
/// of 10,000 files. Skipped, saying so, without git.
fn worktrees_group(_env: &Env) -> Result<Vec<Section>> {
    let version = std::process::Command::new("git")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(version) = version else {
        eprintln!("perf:   git is not installed: the worktrees group is skipped");
        return Ok(vec![Section {
            title: "Worktrees".into(),
            method: "Skipped in this run: `git version` did not run (git is not installed).".into(),
            table: Table {
                head: vec!["measurement", "result"],
                rows: vec![vec!["every worktree row".into(), "skipped: no git".into()]],
            },
            goals: Vec::new(),
            reading: vec!["The worktree rows were skipped: git is not installed.".into()],
        }]);
    };
    let mut daemon = Daemon::new(None);
    let home = daemon.state_dir.path().to_path_buf();
    let repo = daemon.workspace.path().canonicalize()?;
    eprintln!("perf:   generating a repository of {WT_FILES} files");
    make_worktree_repo(&home, &repo)?;
    daemon.start();
    let mut conn = orch_conn(&daemon.socket())?;
    let status = conn.call(1, Status::METHOD, json!({}))?;
    let pid = result_of(&status)?["pid"]
        .as_i64()
        .ok_or_else(|| anyhow!("orch/status without a pid: {status}"))?;
    let mut c = WtClient { conn, next: 1, pid };
    let plain_dir = daemon.state_dir.path().join("plain-worktrees");
    flush_dirty_pages();
    let create = worktree_create_section(&mut c, &home, &repo, &plain_dir, &version)?;
    let diff = worktree_diff_section(&mut c, &home, &version)?;
    drop(c);
    drop(daemon);
    Ok(vec![create, diff])
}

/// `orch/agent/spawn {worktree: true}` until the reply, against `git worktree add -b` and
/// starting the program there.
fn worktree_create_section(
    c: &mut WtClient,
    home: &Path,
    repo: &Path,
    plain_dir: &Path,
    version: &str,
) -> Result<Section> {
    eprintln!("perf:   worktree creation: {WT_CREATE_ROUNDS} per path");
    // A file the checkout must hold once the reply (or git) says it is made.
    let probe = wt_file(WT_FILES - 1);
    let (mut orch, mut plain) = (TimedRuns::default(), TimedRuns::default());
    for round in 0..=WT_CREATE_ROUNDS {
        let orch_side = |c: &mut WtClient| -> Result<Timed> {
            flush_dirty_pages();
            std::thread::sleep(WT_SETTLE);
            let (timed, id, path) = c.spawn_in_worktree(&format!("wt-{round}"))?;
            ensure!(
                path.join(&probe).is_file(),
                "orch's worktree {} lacks {probe}",
                path.display()
            );
            c.wait_ended(&id)?;
            c.call(AgentDiscard::METHOD, json!({ "id": id, "force": true }))?;
            ensure!(!path.exists(), "orch left {} behind", path.display());
            Ok(timed)
        };
        let plain_side = || -> Result<Timed> {
            let path = plain_dir.join(format!("wt-{round}"));
            let shown = path.display().to_string();
            let branch = format!("plain/wt-{round}");
            flush_dirty_pages();
            std::thread::sleep(WT_SETTLE);
            let cpu = children_cpu();
            let t = Instant::now();
            run_git(
                home,
                repo,
                &["worktree", "add", "-q", "-b", &branch, &shown],
                &[0],
            )?;
            let mut program = std::process::Command::new("true")
                .current_dir(&path)
                .spawn()
                .context("start true in the worktree")?;
            let wall = t.elapsed();
            program.wait()?;
            let timed = Timed {
                wall,
                cpu: children_cpu().saturating_sub(cpu),
            };
            ensure!(path.join(&probe).is_file(), "{shown} lacks {probe}");
            run_git(home, repo, &["worktree", "remove", "--force", &shown], &[0])?;
            run_git(home, repo, &["branch", "-D", &branch], &[0])?;
            Ok(timed)
        };
        // The side that goes first alternates, so that a slow spell falls on both.
        let (o, p) = if round % 2 == 0 {
            let o = orch_side(c)?;
            (o, plain_side()?)
        } else {
            let p = plain_side()?;
            (orch_side(c)?, p)
        };
        if round > 0 {
            orch.0.push(o);
            plain.0.push(p);
        }
    }
    let (o, p) = (orch.walls(), plain.walls());
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let row = |name: &str, runs: &TimedRuns, l: Latency| {
        vec![
            name.to_string(),
            count(runs.0.len()),
            ms3(l.p50),
            ms3(runs.min()),
            ms3(runs.max()),
            ms3(runs.mean_cpu()),
        ]
    };
    let ratio = r(o.p50, p.p50);
    Ok(Section {
        title: "Worktree creation".into(),
        method: format!(
            "A generated repository of {files} files (250 directories, 10 to 69 lines each, \
             22 MB; one commit on `main`, packed), the workspace of a fresh daemon (pty backend; \
             {version}). orch: `orch/agent/spawn {{name, command: [\"true\"], worktree: true}}`, \
             from sending the request until its reply (the worktree exists, on `orch/<name>`, and \
             `true` runs in it). Plain: `git worktree add -q -b <branch> <path>` in the repository, \
             then starting `true` in the new checkout (until `spawn` returns). Both check out into \
             the daemon's state directory (same file system). Between runs, untimed: the checkout \
             and branch removed (orch: the agent ended, `orch/agent/discard {{force: true}}`, which \
             runs `git worktree remove --force`, `prune` and `branch -D`; plain: `git worktree \
             remove --force` and `git branch -D`), then `sync` and a {settle} ms pause before the \
             next run of either side. {n} runs per path after one warm-up, the side going first \
             alternating. CPU: user + system time per run; orch's is the daemon's and of the git \
             processes it waited for (`/proc/<pid>/stat`, 10 ms ticks, so only the mean means \
             something), plain's the bench's waited-for children's.",
            files = count(WT_FILES),
            settle = WT_SETTLE.as_millis(),
            n = WT_CREATE_ROUNDS
        ),
        table: Table {
            head: vec!["path", "runs", "p50", "min", "max", "mean CPU"],
            rows: vec![
                row(
                    "orch: `orch/agent/spawn {worktree: true}` → reply",
                    &orch,
                    o,
                ),
                row(
                    "plain: `git worktree add -b` + start `true` there",
                    &plain,
                    p,
                ),
                vec![
                    "**orch / plain**".into(),
                    String::new(),
                    times(ratio),
                    times(r(orch.min(), plain.min())),
                    times(r(orch.max(), plain.max())),
                    times(r(orch.mean_cpu(), plain.mean_cpu())),
                ],
            ],
        },
        goals: vec![Goal {
            goal: "worktree creation (`orch/agent/spawn {worktree: true}` → reply) p50 within 1.2x \
                   of plain `git worktree add -b` (10,000 files)"
                .into(),
            measured: format!("{} vs {} = {}", ms3(o.p50), ms3(p.p50), times(ratio)),
            met: ratio <= 1.2,
        }],
        reading: vec![format!(
            "Making an agent's worktree of {} files and starting it there takes {} at the median \
             against {} for `git worktree add` and the same start by hand ({}). The checkout \
             dominates both (mean CPU {} against {}, most of it the kernel writing the files); \
             what orch adds around it (three small git commands before `git worktree add`: the \
             branch name checked, the base resolved; the agent started, its events made durable) \
             is {}.",
            count(WT_FILES),
            ms3(o.p50),
            ms3(p.p50),
            times(ratio),
            ms3(orch.mean_cpu()),
            ms3(plain.mean_cpu()),
            if o.p50 > p.p50 {
                format!("{} at the median", ms3(o.p50 - p.p50))
            } else {
                format!(
                    "lost in this run's spread (min {} against {}, max {} against {})",
                    ms3(orch.min()),
                    ms3(plain.min()),
                    ms3(orch.max()),
                    ms3(plain.max())
                )
            },
        )],
    })
}

/// Make the diffed worktree's change set at `wt`: [`WT_MODIFIED`] files edited (a line changed,
/// three inserted, one appended), [`WT_ADDED`] new files (two in a new directory) and
/// [`WT_DELETED`] files deleted.
fn make_change_set(wt: &Path) -> Result<()> {
    for k in 0..WT_MODIFIED {
        let i = wt_changed(k);
        let path = wt.join(wt_file(i));
        let text = std::fs::read_to_string(&path)?;
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[2] = format!("    let v2 = compute_again({i}); // changed");
        let mid = lines.len() / 2;
        for j in 0..3 {
            lines.insert(mid, format!("    check({i}, {j}); // inserted"));
        }
        lines.push(format!("// appended to file {i}"));
        std::fs::write(&path, lines.join("\n") + "\n")?;
    }
    for k in 0..WT_DELETED {
        std::fs::remove_file(wt.join(wt_file(wt_changed(WT_MODIFIED + k))))?;
    }
    for k in 0..WT_ADDED {
        let rel = if k < 2 {
            format!("src/added/new{k}.rs")
        } else {
            format!("src/m{:02}/new{k}.rs", k * 7 % 50)
        };
        let path = wt.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let body: String = (0..30 + k * 5)
            .map(|l| format!("fn added_{k}_{l}() -> u32 {{ {l} * {k} }}\n"))
            .collect();
        std::fs::write(path, body)?;
    }
    Ok(())
}

/// `orch/agent/diff` against plain git giving the same answer.
fn worktree_diff_section(c: &mut WtClient, home: &Path, version: &str) -> Result<Section> {
    eprintln!("perf:   worktree diff: {WT_DIFF_ROUNDS} per path");
    let (_, id, wt) = c.spawn_in_worktree("diffed")?;
    c.wait_ended(&id)?;
    // As an agent's worktree is after its own git commands: the index refreshed more than a
    // second after the checkout, so that no entry is "racily clean" and re-read every time.
    std::thread::sleep(Duration::from_millis(1_100));
    make_change_set(&wt)?;
    run_git(home, &wt, &["update-index", "-q", "--refresh"], &[0])?;
    flush_dirty_pages();
    let changed = WT_MODIFIED + WT_ADDED + WT_DELETED;
    let tracked_args = [
        "diff",
        "--merge-base",
        "main",
        "-M",
        "--raw",
        "--numstat",
        "--patch",
    ];
    let others_args = ["ls-files", "-z", "--others", "--exclude-standard"];

    // orch: the whole answer, checked.
    let mut orch_patch = 0;
    let mut orch_diff = |c: &mut WtClient| -> Result<Timed> {
        let cpu = process_cpu(c.pid)?;
        let t = Instant::now();
        let d = c.call(AgentDiff::METHOD, json!({ "id": id }))?;
        let wall = t.elapsed();
        let timed = Timed {
            wall,
            cpu: process_cpu(c.pid)?.saturating_sub(cpu),
        };
        let files = d["files"].as_array().map_or(&[][..], Vec::as_slice);
        let of = |s: &str| files.iter().filter(|f| f["status"] == s).count();
        ensure!(
            (of("modified"), of("added"), of("deleted"), files.len())
                == (WT_MODIFIED, WT_ADDED, WT_DELETED, changed)
                && d["truncated"] == false,
            "orch's diff is not the change set: {} files ({} modified, {} added, {} deleted), \
             truncated {}",
            files.len(),
            of("modified"),
            of("added"),
            of("deleted"),
            d["truncated"]
        );
        orch_patch = d["diff"].as_str().map_or(0, str::len);
        Ok(timed)
    };
    // Plain, the same answer: the tracked changes against where the branch meets `main`
    // (status, counts, patch), the untracked files' names, and each one's counts and patch.
    let mut plain_patch = 0;
    let mut plain_full = || -> Result<Timed> {
        let cpu = children_cpu();
        let t = Instant::now();
        let tracked = run_git(home, &wt, &tracked_args, &[0])?;
        let others = run_git(home, &wt, &others_args, &[0])?;
        let mut patch = tracked.len();
        let mut untracked = 0;
        for name in others.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name);
            let one = run_git(
                home,
                &wt,
                &[
                    "diff",
                    "--no-index",
                    "--numstat",
                    "--patch",
                    "--",
                    "/dev/null",
                    &name,
                ],
                &[0, 1],
            )?;
            patch += one.len();
            untracked += 1;
        }
        let wall = t.elapsed();
        let timed = Timed {
            wall,
            cpu: children_cpu().saturating_sub(cpu),
        };
        let numstat = String::from_utf8_lossy(&tracked)
            .lines()
            .filter(|l| l.split('\t').count() == 3)
            .count();
        ensure!(
            (numstat, untracked) == (WT_MODIFIED + WT_DELETED, WT_ADDED),
            "plain git saw {numstat} tracked and {untracked} untracked changes"
        );
        plain_patch = patch;
        Ok(timed)
    };
    // Plain, less: the tracked changes and the untracked files' names only.
    let plain_names = || -> Result<Timed> {
        let cpu = children_cpu();
        let t = Instant::now();
        run_git(home, &wt, &tracked_args, &[0])?;
        run_git(home, &wt, &others_args, &[0])?;
        let wall = t.elapsed();
        Ok(Timed {
            wall,
            cpu: children_cpu().saturating_sub(cpu),
        })
    };
    let (mut orch, mut full, mut names) = (
        TimedRuns::default(),
        TimedRuns::default(),
        TimedRuns::default(),
    );
    for round in 0..WT_DIFF_WARMUP + WT_DIFF_ROUNDS {
        let (o, f, n) = if round % 2 == 0 {
            let o = orch_diff(c)?;
            let f = plain_full()?;
            (o, f, plain_names()?)
        } else {
            let n = plain_names()?;
            let f = plain_full()?;
            (orch_diff(c)?, f, n)
        };
        if round >= WT_DIFF_WARMUP {
            orch.0.push(o);
            full.0.push(f);
            names.0.push(n);
        }
    }
    let (o, f, n) = (orch.walls(), full.walls(), names.walls());
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let row = |name: &str, runs: &TimedRuns, l: Latency| {
        vec![
            name.to_string(),
            count(runs.0.len()),
            ms3(l.p50),
            ms3(l.p99),
            ms3(l.mean),
            ms3(runs.mean_cpu()),
        ]
    };
    let ratio_row = |name: &str, a: (&TimedRuns, Latency), b: (&TimedRuns, Latency)| {
        vec![
            name.to_string(),
            String::new(),
            times(r(a.1.p50, b.1.p50)),
            times(r(a.1.p99, b.1.p99)),
            times(r(a.1.mean, b.1.mean)),
            times(r(a.0.mean_cpu(), b.0.mean_cpu())),
        ]
    };
    let ratio = r(o.p50, f.p50);
    Ok(Section {
        title: "Worktree diff".into(),
        method: format!(
            "The repository of the creation rows; one agent's worktree (`orch/agent/spawn \
             {{worktree: true}}`, its program ended) with {m} files edited (a line changed, three \
             inserted, one appended), {a} new untracked files (two in a new directory) and {d} \
             deleted, nothing staged; the index refreshed once (`git update-index --refresh`, as \
             the agent's own `git status` would), more than a second after the checkout. orch: \
             `orch/agent/diff {{id}}` until the reply ({changed} files with status and counts, \
             the patch of {op} bytes, untracked files included). Plain, the same answer: in the \
             worktree, `git diff --merge-base main -M --raw --numstat --patch`, `git ls-files \
             --others --exclude-standard`, and `git diff --no-index --numstat --patch /dev/null \
             <file>` for each untracked file ({pp} bytes in all), one after the other. Plain, \
             names only: the first two (untracked files without counts or content: less than \
             orch answers). {n} runs per path after {w} warm-ups, the order alternating; {version}. \
             CPU as in the creation rows (orch's: 10 ms ticks, the mean only).",
            m = WT_MODIFIED,
            a = WT_ADDED,
            d = WT_DELETED,
            op = count(orch_patch),
            pp = count(plain_patch),
            n = WT_DIFF_ROUNDS,
            w = WT_DIFF_WARMUP,
        ),
        table: Table {
            head: vec!["path", "runs", "p50", "p99", "mean", "mean CPU"],
            rows: vec![
                row("orch: `orch/agent/diff` → reply", &orch, o),
                row(
                    "plain, same answer: `git diff` + `ls-files --others` + `diff --no-index` each",
                    &full,
                    f,
                ),
                row(
                    "plain, names only: `git diff` + `ls-files --others`",
                    &names,
                    n,
                ),
                ratio_row("**orch / plain, same answer**", (&orch, o), (&full, f)),
                ratio_row("orch / plain, names only", (&orch, o), (&names, n)),
            ],
        },
        goals: vec![Goal {
            goal: format!(
                "worktree diff (`orch/agent/diff`, {changed} files, untracked included) p50 within \
                 1.2x of plain git giving the same answer (10,000 files)"
            ),
            measured: format!("{} vs {} = {}", ms3(o.p50), ms3(f.p50), times(ratio)),
            met: ratio <= 1.2,
        }],
        reading: vec![format!(
            "A diff of {changed} changed files in a {}-file worktree answers in {} at the median \
             against {} for plain git giving the same answer ({}): orch runs a fixed three git \
             commands (`add -A` into a copy of the worktree's index, `merge-base` beside it, one \
             `diff --cached`) where plain git needs one more per untracked file. Against plain \
             git listing the untracked files by name only ({}), orch's answer with their \
             content costs {}.",
            count(WT_FILES),
            ms3(o.p50),
            ms3(f.p50),
            times(ratio),
            ms3(n.p50),
            times(r(o.p50, n.p50)),
        )],
    })
}

// ---------------------------------------------------------------------------------------------
// Clients and the echo server

/// Bytes handed to [`FrameDecoder`] at a time: the same pieces however the kernel splits reads,
/// so the measuring side's cost does not depend on it. (Before the decoder cut frames by offset,
/// whole 64 KiB reads of small frames decoded at about a quarter of the speed of 4 KiB pieces.)
const FEED: usize = 4 * 1024;

/// A server the protocol rows measure.
enum Server {
    /// The daemon at this socket: connections are initialized first, answers must be results.
    Orch(PathBuf),
    /// The echo server at this socket: answers must be the requests themselves.
    Echo(PathBuf),
    /// A JSON-RPC server of the `peers` group at this socket: every `orch/status` answer must be
    /// a result equal to `reply`.
    Peer {
        /// For progress lines.
        name: &'static str,
        /// Its socket.
        path: PathBuf,
        /// Whether connections start with `initialize` and `initialized`, as with the daemon.
        initialize: bool,
        /// The result it serves.
        reply: Arc<Value>,
    },
}

impl Server {
    /// A connection ready for requests.
    fn connect(&self) -> Result<FramedConn> {
        match self {
            Server::Orch(path)
            | Server::Peer {
                path,
                initialize: true,
                ..
            } => {
                let mut c = FramedConn::connect(path)?;
                let init = c.call(
                    0,
                    "initialize",
                    json!({ "processId": std::process::id(), "capabilities": {}, "rootUri": null }),
                )?;
                ensure!(init.get("result").is_some(), "initialize failed: {init}");
                c.send(&encode(&serde_json::to_vec(
                    &json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }),
                )?))?;
                Ok(c)
            }
            Server::Echo(path) | Server::Peer { path, .. } => FramedConn::connect(path),
        }
    }

    /// For progress lines.
    fn name(&self) -> &'static str {
        match self {
            Server::Orch(_) => "orch",
            Server::Echo(_) => "echo",
            Server::Peer { name, .. } => name,
        }
    }

    /// Check that `answers` answer each of `reqs` exactly once, successfully, in any order.
    fn verify(&self, answers: &Received, reqs: &[Request]) -> Result<()> {
        ensure!(
            answers.len() == reqs.len(),
            "{} answers to {} requests",
            answers.len(),
            reqs.len()
        );
        let first = reqs.first().map_or(0, |r| r.id);
        let mut seen = vec![false; reqs.len()];
        for body in answers.iter() {
            let v: Value = serde_json::from_slice(body)
                .with_context(|| format!("undecodable answer {}", String::from_utf8_lossy(body)))?;
            let id = v["id"]
                .as_i64()
                .ok_or_else(|| anyhow!("answer without an integer id: {v}"))?;
            let slot = usize::try_from(id - first)
                .ok()
                .filter(|&i| i < seen.len())
                .ok_or_else(|| anyhow!("answer to an unknown id: {v}"))?;
            ensure!(
                !std::mem::replace(&mut seen[slot], true),
                "request {id} answered twice"
            );
            match self {
                Server::Orch(_) => ensure!(
                    v.get("result").is_some() && v.get("error").is_none(),
                    "request {id} failed: {v}"
                ),
                Server::Echo(_) => ensure!(
                    body == reqs[slot].body.as_slice(),
                    "the echo server changed request {id}"
                ),
                Server::Peer { name, reply, .. } => ensure!(
                    v.get("result") == Some(&**reply) && v.get("error").is_none(),
                    "{name} answered request {id} with {v}"
                ),
            }
        }
        Ok(())
    }
}

/// A request prepared before timing.
struct Request {
    /// Its id.
    id: i64,
    /// The JSON body.
    body: Vec<u8>,
    /// The framed bytes sent.
    frame: Vec<u8>,
}

/// `n` requests of `method` with ids from `first`, params from `params(id)`.
fn requests(method: &str, first: i64, n: usize, params: impl Fn(i64) -> Value) -> Vec<Request> {
    (0..n as i64)
        .map(|i| {
            let id = first + i;
            let body = serde_json::to_vec(
                &json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params(id) }),
            )
            .unwrap();
            Request {
                id,
                frame: encode(&body),
                body,
            }
        })
        .collect()
}

/// Framed requests back to back, for writing many in one call.
struct Frames {
    /// The frames.
    bytes: Vec<u8>,
    /// Where each frame ends in `bytes`.
    ends: Vec<usize>,
}

impl Frames {
    fn of(reqs: &[Request]) -> Arc<Self> {
        let mut f = Frames {
            bytes: Vec::new(),
            ends: Vec::with_capacity(reqs.len()),
        };
        for r in reqs {
            f.bytes.extend_from_slice(&r.frame);
            f.ends.push(f.bytes.len());
        }
        Arc::new(f)
    }

    /// Frames `from..to`.
    fn range(&self, from: usize, to: usize) -> &[u8] {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        &self.bytes[start..self.ends[to - 1]]
    }
}

/// Bodies received during timing, copied into one buffer: checked after timing, and small
/// (a body from [`FrameDecoder`] may hold a whole read buffer's capacity).
#[derive(Default)]
struct Received {
    /// The answers, back to back.
    data: Vec<u8>,
    /// Where each body ends in `data`.
    ends: Vec<usize>,
}

impl Received {
    fn with_capacity(n: usize) -> Self {
        Self {
            data: Vec::with_capacity(n * 512),
            ends: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, body: &[u8]) {
        self.data.extend_from_slice(body);
        self.ends.push(self.data.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ends.iter().scan(0, |start, &end| {
            Some(&self.data[std::mem::replace(start, end)..end])
        })
    }
}

/// Frames out of a byte stream, decoded by [`FrameDecoder`] fed [`FEED`] bytes at a time.
struct FrameReader {
    /// The decoder.
    dec: FrameDecoder,
    /// The last read.
    buf: Box<[u8]>,
    /// How much of `buf` the decoder has been given.
    fed: usize,
    /// How much of `buf` the last read filled.
    filled: usize,
}

impl FrameReader {
    fn new() -> Self {
        Self {
            dec: FrameDecoder::default(),
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            fed: 0,
            filled: 0,
        }
    }

    /// The next body among the bytes already read, if they hold a whole frame.
    fn next_buffered(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(body) = self.dec.next_frame()? {
                return Ok(Some(body));
            }
            if self.fed == self.filled {
                return Ok(None);
            }
            let piece = (self.filled - self.fed).min(FEED);
            self.dec.push(&self.buf[self.fed..self.fed + piece]);
            self.fed += piece;
        }
    }

    /// Read more bytes (after [`Self::next_buffered`] returned `None`); false at end of stream.
    fn fill(&mut self, r: &mut impl Read) -> std::io::Result<bool> {
        let n = r.read(&mut self.buf)?;
        (self.fed, self.filled) = (0, n);
        Ok(n > 0)
    }
}

/// A blocking framed connection: the same client code for every server.
struct FramedConn {
    /// The socket.
    stream: UnixStream,
    /// Frames read so far.
    reader: FrameReader,
}

impl FramedConn {
    fn connect(path: &Path) -> Result<Self> {
        let stream =
            UnixStream::connect(path).with_context(|| format!("connect {}", path.display()))?;
        Ok(Self {
            stream,
            reader: FrameReader::new(),
        })
    }

    fn send(&mut self, frame: &[u8]) -> Result<()> {
        self.stream.write_all(frame).context("write to the server")
    }

    /// The next whole frame's body.
    fn recv(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(body) = self.reader.next_buffered()? {
                return Ok(body);
            }
            if !self
                .reader
                .fill(&mut self.stream)
                .context("read from the server")?
            {
                bail!("the server closed the connection");
            }
        }
    }

    /// The next whole frame's body, or `None` when nothing arrives within `wait`.
    fn try_recv(&mut self, wait: Duration) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(body) = self.reader.next_buffered()? {
                return Ok(Some(body));
            }
            let before = self.stream.read_timeout()?;
            self.stream.set_read_timeout(Some(wait))?;
            let filled = self.reader.fill(&mut self.stream);
            self.stream.set_read_timeout(before)?;
            match filled {
                Ok(true) => {}
                Ok(false) => bail!("the server closed the connection"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e).context("read from the server"),
            }
        }
    }

    /// A request outside any timing, skipping notifications; the whole response.
    fn call(&mut self, id: i64, method: &str, params: Value) -> Result<Value> {
        self.send(&encode(&serde_json::to_vec(
            &json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
        )?))?;
        loop {
            let v: Value = serde_json::from_slice(&self.recv()?)?;
            if v["id"] == json!(id) {
                return Ok(v);
            }
        }
    }
}

/// Sequential round trips: the latency of each and the bodies answered.
fn round_trips(c: &mut FramedConn, reqs: &[Request]) -> Result<(Vec<Duration>, Received)> {
    let mut lat = Vec::with_capacity(reqs.len());
    let mut answers = Received::with_capacity(reqs.len());
    for r in reqs {
        let t = Instant::now();
        c.send(&r.frame)?;
        let body = c.recv()?;
        lat.push(t.elapsed());
        answers.push(&body);
    }
    Ok((lat, answers))
}

/// Write `frames` from a writer thread, as many at a time as keep at most `window` unanswered,
/// while reading every answer here.
fn pipeline(mut c: FramedConn, frames: Arc<Frames>, window: usize) -> Result<Received> {
    let n = frames.ends.len();
    // Answers read so far, published every `ANSWERED_EVERY` and at the end: the writer sends up
    // to `answered + window`, so it always waits for a count that will be published.
    let answered = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut w = c.stream.try_clone()?;
    let progress = answered.clone();
    let to_send = frames.clone();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut sent = 0;
        while sent < n {
            let (lock, cv) = &*progress;
            let done = *cv
                .wait_while(lock.lock().unwrap(), |done| sent - *done >= window)
                .unwrap();
            let upto = (done + window).min(n);
            w.write_all(to_send.range(sent, upto))?;
            sent = upto;
        }
        Ok(())
    });
    let mut answers = Received::with_capacity(n);
    let mut unpublished = 0;
    while answers.len() < n {
        answers.push(&c.recv()?);
        unpublished += 1;
        if unpublished == ANSWERED_EVERY || answers.len() == n {
            let (lock, cv) = &*answered;
            *lock.lock().unwrap() = answers.len();
            cv.notify_one();
            unpublished = 0;
        }
    }
    writer
        .join()
        .map_err(|_| anyhow!("the writer thread panicked"))?
        .context("write the requests")?;
    Ok(answers)
}

/// `per_connection` pipelined requests of `method` on each of [`GROUP_CONNECTIONS`] connections
/// at once (params from the connection's number and the request id), each making one event: the
/// events per second from the start to the last answer, every answer checked and the event count
/// checked against `lastSeq`.
fn pipelined_events(
    server: &Server,
    per_connection: usize,
    method: &str,
    params: impl Fn(usize, i64) -> Value,
) -> Result<f64> {
    Ok(pipelined_events_timed(server, per_connection, method, params)?.0)
}

/// [`pipelined_events`], and when the connections started writing.
fn pipelined_events_timed(
    server: &Server,
    per_connection: usize,
    method: &str,
    params: impl Fn(usize, i64) -> Value,
) -> Result<(f64, Instant)> {
    let total = GROUP_CONNECTIONS * per_connection;
    let before = last_seq(&mut server.connect()?)?;
    let barrier = Arc::new(Barrier::new(GROUP_CONNECTIONS + 1));
    let mut workers = Vec::new();
    for w in 0..GROUP_CONNECTIONS {
        let conn = server.connect()?;
        let reqs = requests(method, 1, per_connection, |id| params(w, id));
        let frames = Frames::of(&reqs);
        let barrier = barrier.clone();
        workers.push(std::thread::spawn(
            move || -> Result<(Received, Vec<Request>)> {
                barrier.wait();
                Ok((pipeline(conn, frames, PIPELINE_WINDOW)?, reqs))
            },
        ));
    }
    barrier.wait();
    let t = Instant::now();
    let results: Vec<_> = workers
        .into_iter()
        .map(|w| {
            w.join()
                .map_err(|_| anyhow!("a pipelining worker panicked"))?
        })
        .collect::<Result<_>>()?;
    let took = t.elapsed();
    for (answers, reqs) in &results {
        server.verify(answers, reqs)?;
    }
    let after = last_seq(&mut server.connect()?)?;
    ensure!(
        after - before == total as u64,
        "expected {total} events, the log grew by {}",
        after - before
    );
    Ok((total as f64 / took.as_secs_f64(), t))
}

/// `lastSeq` from `orch/status`.
fn last_seq(c: &mut FramedConn) -> Result<u64> {
    let v = c.call(-1, Status::METHOD, json!({}))?;
    v["result"]["lastSeq"]
        .as_u64()
        .ok_or_else(|| anyhow!("no lastSeq in {v}"))
}

/// Bytes of an `orch/status` answer body.
fn status_size(server: &Server) -> Result<usize> {
    let mut c = server.connect()?;
    Ok(serde_json::to_vec(&c.call(-1, Status::METHOD, json!({}))?)?.len())
}

/// A server in the bench on a Unix socket in a 0700 directory like the daemon's: an accept loop
/// handing each connection to a handler. The echo server and the `peers` group's servers.
struct SocketServer {
    /// Its socket.
    path: PathBuf,
    /// The 0700 directory holding the socket.
    _dir: tempfile::TempDir,
    /// Tells the accept loop to stop.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    accept: Option<JoinHandle<()>>,
    /// The runtime serving the connections, for an async server (dropped after the accept loop).
    _runtime: Option<tokio::runtime::Runtime>,
}

impl SocketServer {
    /// A thread that answers every frame with the same body, framed: the least a server can do.
    fn echo() -> Result<Self> {
        Self::start("echo", None, |s| {
            std::thread::spawn(move || echo_connection(s));
        })
    }

    /// Accept connections on a new socket, handing each to `handle` (which must not block: it
    /// starts a thread or a task); `runtime` is kept until the server is dropped.
    fn start(
        name: &str,
        runtime: Option<tokio::runtime::Runtime>,
        handle: impl Fn(UnixStream) + Send + 'static,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("orch-bench-{name}-"))
            .tempdir()?;
        let path = dir.path().join(format!("{name}.sock"));
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(s) = conn {
                    handle(s);
                }
            }
        });
        Ok(Self {
            path,
            _dir: dir,
            stop,
            accept: Some(accept),
            _runtime: runtime,
        })
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Echo frames until EOF: answer every whole frame of a read, in one write.
fn echo_connection(mut s: UnixStream) {
    let mut reader = FrameReader::new();
    let mut out = Vec::new();
    loop {
        loop {
            match reader.next_buffered() {
                Ok(Some(body)) => out.extend_from_slice(&encode(&body)),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if !matches!(reader.fill(&mut s), Ok(true)) {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

/// Percentiles (nearest rank) and mean; sorts `v`.
fn latency(v: &mut [Duration]) -> Latency {
    assert!(!v.is_empty(), "no samples");
    v.sort_unstable();
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    Latency {
        p50: rank(0.50),
        p99: rank(0.99),
        mean,
    }
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} us")
    }
}

fn per_s(rate: f64) -> String {
    count(rate.round() as usize)
}

fn times(r: f64) -> String {
    format!("{r:.2}x")
}

/// `12345` as `12,345`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn count(n: usize) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let (first, rest) = digits.split_at(head.min(digits.len()));
    let mut out = first.to_string();
    for group in rest.as_bytes().chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

fn render_table(t: &Table) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", t.head.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        t.head.iter().map(|_| "---|").collect::<String>()
    );
    for r in &t.rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

/// Every section: heading, method, table.
fn render_results(sections: &[Section]) -> String {
    let mut out = String::new();
    for s in sections {
        let _ = writeln!(
            out,
            "## {}\n\n{}\n\n{}",
            s.title,
            s.method,
            render_table(&s.table)
        );
    }
    out
}

/// The goals of every section in one table.
fn render_goals(sections: &[Section]) -> String {
    let rows = sections
        .iter()
        .flat_map(|s| &s.goals)
        .map(|g| {
            vec![
                g.goal.clone(),
                g.measured.clone(),
                if g.met {
                    "met".into()
                } else {
                    "**missed**".into()
                },
            ]
        })
        .collect();
    format!(
        "## Goals\n\n{}",
        render_table(&Table {
            head: vec!["goal", "measured", "result"],
            rows
        })
    )
}

// ---------------------------------------------------------------------------------------------
// The orch binary, the machine, and docs/performance.md

/// Facts about the run recorded in the document.
struct RunInfo {
    /// `/proc/loadavg` before the first group.
    load_before: String,
    /// `/proc/loadavg` after the last group.
    load_after: String,
    /// Wall time of all groups.
    took: Duration,
    /// The binary measured.
    orch_bin: PathBuf,
}

/// `$ORCH_BIN`, or `target/release/orch` beside this bench (`target/release/deps/perf-*`); `None`
/// after saying how to build it.
fn release_orch() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORCH_BIN") {
        let p = PathBuf::from(p);
        if p.exists() {
            return Some(p);
        }
        eprintln!("perf: ORCH_BIN={} does not exist", p.display());
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("orch"))?;
    if bin.exists() {
        return Some(bin);
    }
    eprintln!(
        "perf: {} is missing: build it first with `cargo build --release -p orch` (or set ORCH_BIN)",
        bin.display()
    );
    None
}

/// Say so when the daemon's sources changed after the binary was built: the numbers would be of
/// old code.
fn warn_if_stale(bin: &Path) {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let root = workspace_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![root.join("daemon/src"), root.join("editor-protocol/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                    newest = Some((m, p));
                }
            }
        }
    }
    if let Some((_, p)) = newest.filter(|(t, _)| *t > built) {
        eprintln!(
            "perf: warning: {} changed after {} was built; rebuild with `cargo build --release -p orch`",
            p.display(),
            bin.display()
        );
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tests/")
        .to_path_buf()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Type and device of the filesystem holding `path`, from `/proc/self/mounts`.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| {
                (
                    f[1].len(),
                    format!("{} on {} mounted at {}", f[2], f[0], f[1]),
                )
            })
        })
        .max_by_key(|(len, _)| *len);
    best.map_or_else(|| "filesystem unknown".into(), |(_, d)| d)
}

/// `YYYY-MM-DD HH:MM UTC` (civil-from-days, Howard Hinnant's algorithm).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn git_commit(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Write `docs/performance.md`, keeping its hand-written notes.
fn write_document(sections: &[Section], run: &RunInfo) -> Result<PathBuf> {
    let root = workspace_root();
    let path = root.join("docs/performance.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let notes = match (old.find(NOTES_START), old.find(NOTES_END)) {
        (Some(a), Some(b)) if a < b => old[a + NOTES_START.len()..b].trim().to_string(),
        _ => "Nothing yet.".to_string(),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let orch_bin = run.orch_bin.strip_prefix(&root).unwrap_or(&run.orch_bin);

    let mut d = String::new();
    let _ = writeln!(d, "# Performance\n");
    let _ = writeln!(
        d,
        "Measured by `tests/benches/perf.rs`, which also writes this file: every number below is compared \
         with a baseline measured in the same run, on the real release daemon over real Unix sockets. \
         Edit only the notes at the end; the rest is replaced on the next run.\n"
    );
    let _ = writeln!(d, "- Command: `{COMMAND}`");
    let _ = writeln!(d, "- Date: {}", utc_now());
    let _ = writeln!(
        d,
        "- Machine: {cores} cores (`nproc`), {}, Linux {}",
        cpu_model(),
        kernel.trim()
    );
    let _ = writeln!(
        d,
        "- Load average (1, 5, 15 min): {} before, {} after; the machine is shared, so other work competes for the cores",
        run.load_before, run.load_after
    );
    let _ = writeln!(
        d,
        "- Binary: `{}`{}; the bench took {:.0} s\n",
        orch_bin.display(),
        git_commit(&root)
            .map(|c| format!(", source at `{c}`"))
            .unwrap_or_default(),
        run.took.as_secs_f64()
    );
    let _ = writeln!(d, "{}", render_goals(sections));
    let _ = writeln!(d, "{}", render_results(sections));
    let _ = writeln!(d, "## Reading\n");
    for s in sections {
        for line in &s.reading {
            let _ = writeln!(d, "- {line}");
        }
    }
    let missed: Vec<&Goal> = sections
        .iter()
        .flat_map(|s| &s.goals)
        .filter(|g| !g.met)
        .collect();
    if missed.is_empty() {
        let _ = writeln!(d, "- Every goal measured here is met in this run.");
    } else {
        for g in missed {
            let _ = writeln!(d, "- Missed: {} (measured {}).", g.goal, g.measured);
        }
    }
    if !NOT_MEASURED_YET.is_empty() {
        let _ = writeln!(d, "\n## Not measured yet\n");
        let _ = writeln!(
            d,
            "These goals' components have not landed; their rows join the bench as groups of their own.\n"
        );
        for line in NOT_MEASURED_YET {
            let _ = writeln!(d, "- {line}");
        }
    }
    let _ = writeln!(d, "\n## Notes\n\n{NOTES_START}\n{notes}\n{NOTES_END}");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, d).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}
