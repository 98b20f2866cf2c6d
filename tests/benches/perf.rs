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
//! needs (daemons on temporary directories, baselines), measures with fixed sample sizes, and
//! returns [`Section`]s (a table, the goals it checks, a reading). The terminal backends' rows
//! join that list as their own groups when the backends land: `pty` (ingest of a program printing
//! 50 MB of mixed text with colour escapes through the pty backend against reading the same
//! program from a raw pty with no emulator; keystroke echo latency) and `tmux`. Until then the
//! written document lists them under "Not measured yet" ([`NOT_MEASURED_YET`]).
//!
//! The bench knows the wire only through `editor-protocol` (framing, method names); it must not
//! know the daemon's internals.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use editor_protocol::framing::{encode, FrameDecoder};
use editor_protocol::methods::{Method, SessionCreate, Status};
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

/// The exact command that produces `docs/performance.md`.
const COMMAND: &str =
    "cargo build --release -p orch && cargo bench -p orch-tests --bench perf -- --write-docs";

/// Every group of rows, in the order they run and appear. Add a group here: a function returning
/// its sections. The `pty` and `tmux` groups described in the module documentation go after
/// `durability`, and their entries leave [`NOT_MEASURED_YET`].
const GROUPS: &[Group] = &[
    Group {
        name: "protocol",
        run: protocol_group,
    },
    Group {
        name: "durability",
        run: durability_group,
    },
];

/// Rows the goals name whose component has not landed: listed in the document so that a reader
/// sees what is missing rather than assuming it was measured.
const NOT_MEASURED_YET: &[&str] = &[
    "pty output ingest: a program printing 50 MB of mixed text with colour escapes through the pty \
     backend (emulator included), MB/s, against reading the same program's output from a raw pty with \
     no emulator",
    "keystroke echo latency through the pty backend: `orch/terminal/write` of one key to the \
     `orch/terminal/output` notification carrying its echo, p50/p99",
    "tmux backend rows: the same ingest and echo measurements through tmux control mode",
];

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
    let env = Env { orch_bin };

    let load_before = loadavg();
    let started = Instant::now();
    let mut sections = Vec::new();
    for g in groups {
        eprintln!("perf: running the {} group", g.name);
        match (g.run)(&env) {
            Ok(s) => sections.extend(s),
            Err(e) => {
                eprintln!("perf: the {} group failed: {e:#}", g.name);
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
        let echo_server = EchoServer::start()?;
        let echo = Server::Echo(echo_server.path.clone());
        eprintln!("perf:   round trips, placed by the scheduler");
        let spread = round_trips_both(&orch, &echo)?;
        let pipe = pipelined_section(&orch, &echo)?;
        (spread, pipe, status_size(&orch)?)
    };
    // A second daemon and echo server, started from a thread bound to one CPU, inherit the binding.
    let one_cpu = on_one_cpu(|| {
        let daemon = Daemon::started(None);
        let echo_server = EchoServer::start()?;
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
    let servers = [echo, orch];
    let mut conns = Vec::new();
    let mut samples = Vec::new();
    for s in servers {
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
    Ok((latency(&mut samples[0]), latency(&mut samples[1])))
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
    eprintln!("perf:   pipelined ({PIPELINE_RUNS} x {PIPELINE_REQUESTS} requests per server)");
    let reqs = requests(Status::METHOD, 1, PIPELINE_REQUESTS, |_| json!({}));
    let frames = Frames::of(&reqs);
    let servers = [echo, orch];
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
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
    let [echo_r, orch_r] = rates.map(|mut v| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    });
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
        let server = Server::Orch(daemon.socket());
        let before = last_seq(&mut server.connect()?)?;
        let barrier = Arc::new(Barrier::new(GROUP_CONNECTIONS + 1));
        let mut workers = Vec::new();
        for w in 0..GROUP_CONNECTIONS {
            let conn = server.connect()?;
            let reqs = requests(
                SessionCreate::METHOD,
                1,
                GROUP_EVENTS_PER_CONNECTION,
                |id| json!({ "name": format!("bench-group-{w}-{id}") }),
            );
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
                    .map_err(|_| anyhow!("a group-commit worker panicked"))?
            })
            .collect::<Result<_>>()?;
        let took = t.elapsed();
        for (answers, reqs) in &results {
            server.verify(answers, reqs)?;
        }
        let after = last_seq(&mut server.connect()?)?;
        ensure!(
            after - before == group_total as u64,
            "expected {group_total} events, the log grew by {}",
            after - before
        );
        group_total as f64 / took.as_secs_f64()
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
// Clients and the echo server

/// Bytes handed to [`FrameDecoder`] at a time. Each frame it returns costs a copy of everything
/// buffered behind that frame, so a whole 64 KiB read of small frames decodes at about a quarter
/// of the speed of 4 KiB pieces, and every returned body keeps the capacity of the buffer it came
/// from. Feeding it in pieces keeps the measuring side cheap and its cost independent of how the
/// kernel happens to split reads.
const FEED: usize = 4 * 1024;

/// A server the protocol rows measure.
enum Server {
    /// The daemon at this socket: connections are initialized first, answers must be results.
    Orch(PathBuf),
    /// The echo server at this socket: answers must be the requests themselves.
    Echo(PathBuf),
}

impl Server {
    /// A connection ready for requests.
    fn connect(&self) -> Result<FramedConn> {
        match self {
            Server::Orch(path) => {
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
            Server::Echo(path) => FramedConn::connect(path),
        }
    }

    /// For progress lines.
    fn name(&self) -> &'static str {
        match self {
            Server::Orch(_) => "orch",
            Server::Echo(_) => "echo",
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

/// A thread that answers every frame with the same body, framed: the least a server can do.
struct EchoServer {
    /// Its socket.
    path: PathBuf,
    /// The 0700 directory holding the socket.
    _dir: tempfile::TempDir,
    /// Tells the accept loop to stop.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    accept: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("orch-bench-echo-")
            .tempdir()?;
        let path = dir.path().join("echo.sock");
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(s) = conn {
                    std::thread::spawn(move || echo_connection(s));
                }
            }
        });
        Ok(Self {
            path,
            _dir: dir,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for EchoServer {
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
    let _ = writeln!(d, "\n## Not measured yet\n");
    let _ = writeln!(
        d,
        "These goals' components have not landed; their rows join the bench as groups of their own.\n"
    );
    for line in NOT_MEASURED_YET {
        let _ = writeln!(d, "- {line}");
    }
    let _ = writeln!(d, "\n## Notes\n\n{NOTES_START}\n{notes}\n{NOTES_END}");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, d).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}
