//! Landing a worktree's branch in its base, the branch checked out in the workspace: a merge
//! commit, one squashed commit, or a rebase and fast-forward. Before anything changes, the merge
//! is refused when the workspace is not on the base or has uncommitted changes the merge would
//! overwrite (or staged changes a merge commit would take in). A conflict is aborted so the
//! workspace is exactly as before, and reported with the conflicting files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{check_base, describe_head, parse, GitError, Merged, Repo, Strategy, Worktree};

pub(super) fn merge(
    repo: &Repo,
    wt: &Worktree,
    strategy: Strategy,
    message: Option<&str>,
) -> Result<Merged, GitError> {
    check_base(&wt.base)?;
    if message.is_some_and(|m| m.trim().is_empty()) {
        return Err(GitError::EmptyMessage { what: "merge" });
    }
    let workdir = repo.workdir.as_path();
    let base = wt.base.as_str();
    let before = repo
        .branch_commit(base)?
        .ok_or_else(|| GitError::BaseNotBranch {
            base: base.to_owned(),
        })?;
    let head = repo.symbolic_head(workdir)?;
    if head.as_deref() != Some(base) {
        return Err(GitError::BaseNotCheckedOut {
            base: base.to_owned(),
            path: workdir.to_owned(),
            head: describe_head(head.as_deref()),
        });
    }
    repo.require_branch(&wt.branch)?;
    let tip = format!("refs/heads/{}", wt.branch);
    let ahead = repo
        .git
        .at(workdir)
        .args(["rev-list", "--count"])
        .arg(format!("refs/heads/{base}..{tip}"))
        .arg("--")
        .line()?;
    if ahead == "0" {
        return Err(nothing(wt));
    }

    // What the merge will write in the workspace, against what is uncommitted there.
    let touched: BTreeSet<PathBuf> = parse::names(
        &repo
            .git
            .at(workdir)
            .args(["diff", "--name-only", "--no-renames", "-z", "--no-relative"])
            .arg(format!("refs/heads/{base}...{tip}"))
            .arg("--")
            .run()?,
    )
    .into_iter()
    .collect();
    let status = repo.status(workdir)?;
    let unresolved = paths(status.iter().filter(|e| e.unmerged()));
    if !unresolved.is_empty() {
        return Err(GitError::Unresolved {
            path: workdir.to_owned(),
            files: unresolved,
        });
    }
    let overlapping = paths(status.iter().filter(|e| touched.contains(&e.path)));
    if !overlapping.is_empty() {
        return Err(GitError::WouldOverwrite {
            path: workdir.to_owned(),
            files: overlapping,
        });
    }
    let staged = paths(status.iter().filter(|e| e.is_staged()));
    if !staged.is_empty() && strategy != Strategy::Rebase {
        return Err(GitError::StagedChanges {
            path: workdir.to_owned(),
            files: staged,
        });
    }

    let identity = repo.identity()?;
    match strategy {
        Strategy::Merge => {
            let mut call = repo.git.at(workdir).args([
                "merge",
                "--no-ff",
                "--no-edit",
                "--quiet",
                "--no-verify",
                "--no-autostash",
                "--no-verify-signatures",
            ]);
            // git's own default would name `refs/heads/...`, which is passed for exactness.
            let default = default_message(&wt.branch, base);
            call = call.args(["-m", message.unwrap_or(&default)]);
            for (k, v) in &identity {
                call = call.env(k, *v);
            }
            let call = call.args(["--end-of-options", &tip]);
            let out = call.output()?;
            if !out.status.success() {
                let conflicts = conflicted(repo, workdir)?;
                if !conflicts.is_empty() || in_progress(repo, workdir, "MERGE_HEAD")? {
                    repo.git.at(workdir).args(["merge", "--abort"]).run()?;
                }
                return Err(if conflicts.is_empty() {
                    call.failed(out.status, &out.stderr)
                } else {
                    GitError::Conflict { files: conflicts }
                });
            }
        }
        Strategy::Squash => {
            let mut call = repo.git.at(workdir).args([
                "merge",
                "--squash",
                "--quiet",
                "--no-autostash",
                "--no-verify-signatures",
            ]);
            for (k, v) in &identity {
                call = call.env(k, *v);
            }
            let call = call.args(["--end-of-options", &tip]);
            let out = call.output()?;
            if !out.status.success() {
                let conflicts = conflicted(repo, workdir)?;
                // A squash leaves no MERGE_HEAD to abort; `reset --merge` undoes it the same
                // way, keeping uncommitted changes in files it did not touch.
                repo.git
                    .at(workdir)
                    .args(["reset", "--merge", "--quiet"])
                    .run()?;
                return Err(if conflicts.is_empty() {
                    call.failed(out.status, &out.stderr)
                } else {
                    GitError::Conflict { files: conflicts }
                });
            }
            let changed = !repo
                .git
                .at(workdir)
                .args(["diff", "--cached", "--quiet"])
                .test()?;
            if !changed {
                let _ = repo
                    .git
                    .at(workdir)
                    .args(["reset", "--merge", "--quiet"])
                    .run();
                return Err(nothing(wt));
            }
            let mut call = repo
                .git
                .at(workdir)
                .args(["commit", "--quiet", "--no-verify"]);
            call = match message {
                Some(m) => call.args(["-m", m]),
                // git's squash message: the list of the branch's commits.
                None => call.arg("--no-edit"),
            };
            for (k, v) in &identity {
                call = call.env(k, *v);
            }
            if let Err(e) = call.run() {
                let _ = repo
                    .git
                    .at(workdir)
                    .args(["reset", "--merge", "--quiet"])
                    .run();
                return Err(e);
            }
        }
        Strategy::Rebase => {
            repo.require_checked_out(wt)?;
            let dirty = paths(repo.status(&wt.path)?.iter());
            if !dirty.is_empty() {
                return Err(GitError::Uncommitted {
                    path: wt.path.clone(),
                    files: dirty,
                });
            }
            repo.require_on_branch(wt)?;
            let mut call = repo.git.at(&wt.path).args([
                "rebase",
                "--quiet",
                "--no-autostash",
                "--no-update-refs",
                "--no-verify",
            ]);
            for (k, v) in &identity {
                call = call.env(k, *v);
            }
            let call = call.arg(format!("refs/heads/{base}"));
            let out = call.output()?;
            if !out.status.success() {
                let conflicts = conflicted(repo, &wt.path)?;
                if in_progress(repo, &wt.path, "REBASE_HEAD")? || !conflicts.is_empty() {
                    repo.git.at(&wt.path).args(["rebase", "--abort"]).run()?;
                }
                return Err(if conflicts.is_empty() {
                    call.failed(out.status, &out.stderr)
                } else {
                    GitError::Conflict { files: conflicts }
                });
            }
            repo.git
                .at(workdir)
                .args(["merge", "--ff-only", "--quiet", "--no-autostash"])
                .args(["--end-of-options", &tip])
                .run()?;
        }
    }
    let commit = repo.git.at(workdir).args(["rev-parse", "HEAD"]).line()?;
    let files = parse::names(
        &repo
            .git
            .at(workdir)
            .args(["diff", "--name-only", "--no-renames", "-z", "--no-relative"])
            .args([&before, &commit, "--"])
            .run()?,
    );
    Ok(Merged { commit, files })
}

/// A merge commit's message when none is given, as git writes it for a branch.
fn default_message(branch: &str, base: &str) -> String {
    if matches!(base, "main" | "master") {
        format!("Merge branch '{branch}'")
    } else {
        format!("Merge branch '{branch}' into {base}")
    }
}

fn nothing(wt: &Worktree) -> GitError {
    GitError::NothingToMerge {
        branch: wt.branch.clone(),
        base: wt.base.clone(),
    }
}

fn paths<'a>(entries: impl Iterator<Item = &'a parse::StatusEntry>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = entries.map(|e| e.path.clone()).collect();
    paths.dedup();
    paths
}

/// The files left in conflict in a checkout.
fn conflicted(repo: &Repo, dir: &Path) -> Result<Vec<PathBuf>, GitError> {
    Ok(parse::names(
        &repo
            .git
            .at(dir)
            .args([
                "diff",
                "--name-only",
                "--diff-filter=U",
                "-z",
                "--no-relative",
            ])
            .run()?,
    ))
}

/// Whether a merge or rebase is stopped half-way in a checkout (`MERGE_HEAD`, `REBASE_HEAD`).
fn in_progress(repo: &Repo, dir: &Path, marker: &str) -> Result<bool, GitError> {
    Ok(repo
        .git
        .at(dir)
        .args(["rev-parse", "--verify", "--quiet", marker])
        .output()?
        .status
        .success())
}
