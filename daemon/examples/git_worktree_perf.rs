//! Measures the git worktree layer against plain git on a repository of 10,000 files (issue 12's
//! goal: within 1.2x of `git worktree add` and `git diff` run directly). Prints a markdown table
//! of medians; asserts nothing (performance goals are read, not tested).
//!
//! Run: `cargo run -p orch --example git_worktree_perf [-- <files> <create rounds> <diff rounds>]`
//! (defaults 10,000, 6 and 40).
//!
//! Each row compares orch's call with the plain git command(s) giving the same answer, in
//! rounds that alternate which side goes first, after one warm-up round. Two numbers per side:
//! wall time, and the CPU time (user + system) of the git processes, read from
//! `getrusage(RUSAGE_CHILDREN)` — the steadier of the two on a machine shared with other work.
//! - create: [`Repo::create`] (validation, base resolution, `git worktree add`) against
//!   `git worktree add -b <branch> <path> HEAD`; removal is not timed.
//! - diff: [`Repo::diff`] of a worktree with committed, uncommitted and untracked changes against
//!   `git diff main` in it (which misses the untracked files), and against `git diff main` plus
//!   `git ls-files --others --exclude-standard` (the cheapest plain way to see them too).
//! - changed count: [`Repo::changed_count`] against `git diff --name-only main` plus
//!   `git ls-files --others --exclude-standard`.
//!
//! This is a standalone example rather than a row of `tests/benches/perf.rs`: that bench drives
//! the real daemon over the wire and must not know its internals; once `orch/agent/spawn
//! {worktree}` and `orch/agent/diff` exist, it measures them the same way against the same
//! baselines.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orch::adapters::git::{Preparation, Repo, WorktreeSpec};

/// One measurement.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    /// User + system time of the child processes that ended meanwhile.
    cpu: Duration,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let create_rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(6);
    let diff_rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().expect("temporary directory");
    let tmp = std::fs::canonicalize(dir.path()).unwrap();
    let root = tmp.join("repo");
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    make_repo(&root, files);
    let repo = Repo::open(&root).expect("open the repository");

    let mut create = (Vec::new(), Vec::new());
    for round in 0..=create_rounds {
        let plain = || {
            let path = state.join(format!("plain-{round}"));
            let path = path.to_str().unwrap();
            let branch = format!("plain-{round}");
            let ((), s) = measure(|| {
                git(
                    &root,
                    &["worktree", "add", "-q", "-b", &branch, path, "HEAD"],
                );
            });
            git(&root, &["worktree", "remove", "--force", path]);
            git(&root, &["branch", "-D", &branch]);
            s
        };
        let ours = || {
            let spec = WorktreeSpec::for_agent(
                &format!("bench-{round}"),
                state.join(format!("orch-{round}")),
            );
            let (created, s) = measure(|| repo.create(&spec, &Preparation::default()));
            repo.discard(&created.expect("create").worktree)
                .expect("discard");
            s
        };
        record(round, &mut create, plain, ours);
    }

    // One worktree with changes of every kind.
    let spec = WorktreeSpec::for_agent("diffed", state.join("diffed"));
    let wt = repo
        .create(&spec, &Preparation::default())
        .unwrap()
        .worktree;
    for i in 0..10 {
        append(&wt.path.join(file_name(i * 97)), "committed change\n");
    }
    git(&wt.path, &["commit", "-qam", "agent commit"]);
    for i in 10..20 {
        append(&wt.path.join(file_name(i * 97)), "uncommitted change\n");
    }
    for i in 20..23 {
        std::fs::remove_file(wt.path.join(file_name(i * 97))).unwrap();
    }
    for i in 0..5 {
        let text = "new\n".repeat(20);
        std::fs::write(wt.path.join(format!("untracked-{i}.txt")), text).unwrap();
    }
    // As an agent's worktree is after its own git commands: the index refreshed, written more
    // than a second after the files, so that no entry is "racily clean" and re-read every time.
    std::thread::sleep(Duration::from_millis(1100));
    git(&wt.path, &["update-index", "-q", "--refresh"]);
    let listed = repo.diff(&wt, None, 1 << 20).unwrap().files.len();
    let others = ["ls-files", "-z", "--others", "--exclude-standard"];

    let (mut diff_only, mut diff_and_others, mut count) = (
        (Vec::new(), Vec::new()),
        (Vec::new(), Vec::new()),
        (Vec::new(), Vec::new()),
    );
    for round in 0..=diff_rounds {
        let ours_diff = || measure(|| repo.diff(&wt, None, 1 << 20).expect("diff")).1;
        record(
            round,
            &mut diff_only,
            || measure(|| git(&wt.path, &["diff", "main"])).1,
            ours_diff,
        );
        record(
            round,
            &mut diff_and_others,
            || {
                measure(|| {
                    git(&wt.path, &["diff", "main"]);
                    git(&wt.path, &others);
                })
                .1
            },
            ours_diff,
        );
        record(
            round,
            &mut count,
            || {
                measure(|| {
                    git(&wt.path, &["diff", "--name-only", "main"]);
                    git(&wt.path, &others);
                })
                .1
            },
            || measure(|| repo.changed_count(&wt).expect("count")).1,
        );
    }

    println!(
        "Repository of {files} files in 100 directories; medians of {create_rounds} rounds \
         (create) and {diff_rounds} rounds (the others); {}",
        git(&root, &["version"]).trim()
    );
    println!();
    println!(
        "| operation | plain git: wall / git CPU | orch: wall / git CPU | ratio: wall / CPU |"
    );
    println!("|---|---|---|---|");
    row("create worktree (`git worktree add -b`)", create);
    row(
        &format!("diff, {listed} files (`git diff main`: misses untracked)"),
        diff_only,
    );
    row(
        "diff (`git diff main` + `git ls-files --others`)",
        diff_and_others,
    );
    row(
        "changed count (`git diff --name-only main` + `git ls-files --others`)",
        count,
    );
}

/// Run one round of a row: both sides, in an order that alternates by round; the warm-up
/// round (0) is not kept.
fn record(
    round: usize,
    samples: &mut (Vec<Sample>, Vec<Sample>),
    plain: impl FnOnce() -> Sample,
    ours: impl FnOnce() -> Sample,
) {
    let (p, o) = if round.is_multiple_of(2) {
        let p = plain();
        (p, ours())
    } else {
        let o = ours();
        (plain(), o)
    };
    if round > 0 {
        samples.0.push(p);
        samples.1.push(o);
    }
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Sample) {
    let cpu = children_cpu();
    let t = Instant::now();
    let value = f();
    let wall = t.elapsed();
    (
        value,
        Sample {
            wall,
            cpu: children_cpu() - cpu,
        },
    )
}

/// User + system time of all waited-for child processes so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn row(name: &str, samples: (Vec<Sample>, Vec<Sample>)) {
    let (plain, ours) = (median(samples.0), median(samples.1));
    println!(
        "| {name} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2}x / {:.2}x |",
        ms(plain.wall),
        ms(plain.cpu),
        ms(ours.wall),
        ms(ours.cpu),
        ms(ours.wall) / ms(plain.wall),
        ms(ours.cpu) / ms(plain.cpu),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Medians of wall and CPU time, each on its own.
fn median(samples: Vec<Sample>) -> Sample {
    let mut wall: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    let mut cpu: Vec<Duration> = samples.iter().map(|s| s.cpu).collect();
    wall.sort();
    cpu.sort();
    Sample {
        wall: wall[wall.len() / 2],
        cpu: cpu[cpu.len() / 2],
    }
}

fn file_name(i: usize) -> PathBuf {
    PathBuf::from(format!("d{:02}/f{i:05}.txt", i % 100))
}

fn append(path: &Path, text: &str) {
    let mut content = std::fs::read_to_string(path).unwrap();
    content.push_str(text);
    std::fs::write(path, content).unwrap();
}

/// A repository of `files` small text files in 100 directories, one commit, on `main`.
fn make_repo(root: &Path, files: usize) {
    std::fs::create_dir_all(root).unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let path = root.join(file_name(i));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let body: String = (0..20).map(|l| format!("file {i} line {l}\n")).collect();
        std::fs::write(path, body).unwrap();
    }
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "many files"]);
}

/// Run git as a person would, output read whole, failure fatal.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@localhost")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@localhost")
        .stdin(Stdio::null())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
