//! Getting a new worktree ready for its agent: copying named untracked files from the workspace
//! (`[worktrees] copy`) and running the setup commands (`[worktrees] setup`) once, as argv
//! without a shell, in their own process group, killed with it at the timeout, their output's
//! tail kept for the error a failure becomes.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::run::{describe, Git};
use super::{parse, validate, GitError};

/// How much of a failed setup command's output its error shows.
const TAIL_BYTES: usize = 4_000;
const TAIL_LINES: usize = 40;

/// How long output is still read after a setup command exited (from what it left running, until
/// its process group is killed) or was killed.
const DRAIN: Duration = Duration::from_millis(500);

/// Copy each of `paths` (relative, validated) from `from` to `to`: files with their modes,
/// directories recursively, symbolic links as links. A path missing in `from`, or already present
/// in `to` (it is tracked, so the checkout has it), is skipped with a note.
pub fn copy_files(
    from: &Path,
    to: &Path,
    paths: &[PathBuf],
    notes: &mut Vec<String>,
) -> Result<Vec<PathBuf>, GitError> {
    let mut copied = Vec::new();
    for rel in paths {
        let src = from.join(rel);
        let dst = to.join(rel);
        if std::fs::symlink_metadata(&src).is_err() {
            notes.push(format!(
                "copy: {} is not in {}, skipped",
                rel.display(),
                from.display()
            ));
            continue;
        }
        if std::fs::symlink_metadata(&dst).is_ok() {
            notes.push(format!(
                "copy: {} is already in the worktree (tracked), not copied",
                rel.display()
            ));
            continue;
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| copy_error(rel, e))?;
        }
        copy_tree(&src, &dst).map_err(|e| copy_error(rel, e))?;
        copied.push(rel.clone());
    }
    Ok(copied)
}

fn copy_error(rel: &Path, source: std::io::Error) -> GitError {
    GitError::Io {
        what: format!("copying {} into the worktree", rel.display()),
        source,
    }
}

/// Copy one file, link or directory tree, keeping modes (`fs::copy` keeps a file's permissions).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else if meta.is_dir() {
        std::fs::create_dir(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        std::fs::set_permissions(dst, meta.permissions())
    } else {
        std::fs::copy(src, dst).map(|_| ())
    }
}

/// Check the copy list before anything is created.
pub fn check_copy_list(paths: &[PathBuf]) -> Result<(), GitError> {
    for p in paths {
        validate::check_copy_path(p).map_err(|reason| GitError::InvalidCopyPath {
            path: p.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Run one setup command in `dir`; its output's tail on success, an error on failure.
pub fn run_setup(
    git: &Git,
    argv: &[String],
    dir: &Path,
    timeout: Duration,
) -> Result<String, GitError> {
    let shown = parse::display_words(argv.iter().map(OsStr::new));
    let fail = |outcome: String, tail: String| GitError::SetupFailed {
        command: shown.clone(),
        outcome,
        tail,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(fail("is empty".into(), String::new()));
    };
    // One pipe for both streams: the tail shows them interleaved as a person would have seen.
    let (mut reader, writer) =
        std::io::pipe().map_err(|e| fail(format!("could not start: {e}"), String::new()))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| fail(format!("could not start: {e}"), String::new()))?;
    let mut cmd = git.command(OsStr::new(program), dir);
    cmd.args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}"), String::new()))?;
    // The command holds the only write ends now.
    drop(cmd);
    let pgid = child.id() as libc::pid_t;

    enum Seen {
        Output(Vec<u8>),
        Closed,
        Exited(std::io::Result<std::process::ExitStatus>),
    }
    let (tx, rx) = mpsc::channel();
    let out_tx = tx.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out_tx.send(Seen::Output(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = out_tx.send(Seen::Closed);
    });
    std::thread::spawn(move || {
        let _ = tx.send(Seen::Exited(child.wait()));
    });

    let started = Instant::now();
    let mut output: Vec<u8> = Vec::new();
    let mut status = None;
    let mut timed_out = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        let deadline = drain_until.unwrap_or(started + timeout);
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Seen::Output(bytes)) => {
                output.extend_from_slice(&bytes);
                if output.len() > 4 * TAIL_BYTES {
                    output.drain(..output.len() - TAIL_BYTES);
                }
            }
            Ok(Seen::Closed) => {
                if status.is_some() {
                    break;
                }
            }
            Ok(Seen::Exited(s)) => {
                status = Some(s);
                // What it left running goes with it: setup is done when its command is.
                // SAFETY: killpg on the group the command leads (process_group(0) above).
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                drain_until = Some(Instant::now() + DRAIN);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if drain_until.is_none() => {
                timed_out = true;
                // SAFETY: as above; the group still exists, its leader not yet reaped.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                drain_until = Some(Instant::now() + DRAIN);
            }
            Err(_) => break,
        }
    }
    let tail = parse::tail(&output, TAIL_BYTES, TAIL_LINES);
    if timed_out {
        return Err(fail(
            format!("timed out after {}s", timeout.as_secs_f32()),
            tail,
        ));
    }
    match status {
        Some(Ok(s)) if s.success() => Ok(tail),
        Some(Ok(s)) => Err(fail(format!("failed ({})", describe(s)), tail)),
        Some(Err(e)) => Err(fail(format!("could not be waited for: {e}"), tail)),
        None => Err(fail("did not report its exit".into(), tail)),
    }
}
