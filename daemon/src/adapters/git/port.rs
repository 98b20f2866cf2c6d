//! The git worktree layer as the runtime's [`Worktrees`] port: [`GitWorktrees`] holds the
//! workspace's [`Repo`] (or why there is none), the `[worktrees]` preparation and the lock that
//! keeps merges into the workspace one at a time, and turns [`GitError`]s into the
//! [`VcsError`]s the runtime tells clients.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{
    ChangeStatus, ExistingBranch, Found, GitError, Preparation, Repo, Strategy, Worktree,
    WorktreeSpec,
};
use crate::config::WorktreesConfig;
use crate::core::agent::WorktreeRecord;
use crate::ports::{
    ChangedFile, DiffReport, Landed, Unmerged, VcsError, WorktreeFound, WorktreeMade,
    WorktreeRequest, Worktrees,
};

/// Most bytes of a unified diff returned; longer ones are cut at a line boundary.
pub const DIFF_LIMIT: usize = 4 << 20;

/// The workspace's repository, seen as agents' worktrees.
pub struct GitWorktrees {
    /// The repository, or why worktrees cannot be made here.
    repo: Result<Repo, String>,
    /// What a new checkout gets.
    prep: Preparation,
    /// Merges into the workspace run one at a time (git's index lock would fail a second).
    merging: Mutex<()>,
}

impl GitWorktrees {
    /// The repository the workspace `root` is in, prepared as `config` says. Outside a
    /// repository this still succeeds: each call then says why it cannot work.
    pub fn open(root: &Path, config: &WorktreesConfig) -> Self {
        Self {
            repo: Repo::open(root).map_err(|e| e.to_string()),
            prep: Preparation {
                copy: config.copy.clone(),
                setup: config.setup.clone(),
                setup_timeout: Duration::from_secs(config.setup_timeout_s),
            },
            merging: Mutex::new(()),
        }
    }

    fn repo(&self) -> Result<&Repo, VcsError> {
        self.repo
            .as_ref()
            .map_err(|why| VcsError::Unavailable(format!("worktrees need git: {why}")))
    }
}

/// The layer's view of a recorded worktree.
fn worktree(w: &WorktreeRecord) -> Worktree {
    Worktree {
        path: PathBuf::from(&w.path),
        branch: w.branch.clone(),
        base: w.base.clone(),
        base_commit: w.base_commit.clone(),
    }
}

fn record(w: Worktree, changes: u64) -> WorktreeRecord {
    WorktreeRecord {
        path: w.path.to_string_lossy().into_owned(),
        branch: w.branch,
        base: w.base,
        base_commit: w.base_commit,
        changes,
        paused: false,
    }
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What the runtime tells a client about a [`GitError`].
fn vcs(e: GitError) -> VcsError {
    let text = e.to_string();
    match e {
        GitError::GitTooOld { .. }
        | GitError::NoSuchDirectory { .. }
        | GitError::NotARepository { .. }
        | GitError::NotAWorkTree { .. }
        | GitError::NoCommits { .. } => VcsError::Unavailable(text),
        GitError::InvalidBranch { .. }
        | GitError::BranchExists { .. }
        | GitError::InvalidPath { .. } => VcsError::Invalid {
            field: "worktree",
            message: text,
        },
        GitError::InvalidBase { .. } | GitError::UnknownBase { .. } => VcsError::Invalid {
            field: "base",
            message: text,
        },
        GitError::Conflict { files } => VcsError::Conflict {
            files: files.iter().map(|f| lossy(f)).collect(),
        },
        GitError::Uncommitted { .. }
        | GitError::Unresolved { .. }
        | GitError::WouldOverwrite { .. }
        | GitError::StagedChanges { .. }
        | GitError::BaseNotBranch { .. }
        | GitError::BaseNotCheckedOut { .. }
        | GitError::NothingToMerge { .. }
        | GitError::NoCommonHistory { .. }
        | GitError::NotCheckedOut { .. }
        | GitError::NotOnBranch { .. }
        | GitError::BranchMissing { .. }
        | GitError::PathExists { .. } => VcsError::Refused(text),
        GitError::InvalidCopyPath { .. }
        | GitError::SetupFailed { .. }
        | GitError::Command { .. }
        | GitError::Spawn { .. }
        | GitError::Io { .. }
        | GitError::EmptyMessage { .. }
        | GitError::Malformed(_) => VcsError::Failed(text),
    }
}

impl Worktrees for GitWorktrees {
    fn create(&self, req: &WorktreeRequest) -> Result<WorktreeMade, VcsError> {
        let repo = self.repo()?;
        let spec = WorktreeSpec {
            path: req.path.clone(),
            branch: req.branch.clone(),
            base: req.base.clone(),
            existing_branch: ExistingBranch::Refuse,
        };
        let made = repo.create(&spec, &self.prep).map_err(vcs)?;
        Ok(WorktreeMade {
            worktree: record(made.worktree, 0),
            notes: made.notes,
        })
    }

    fn diff(&self, wt: &WorktreeRecord, base: Option<&str>) -> Result<DiffReport, VcsError> {
        let d = self
            .repo()?
            .diff(&worktree(wt), base, DIFF_LIMIT)
            .map_err(vcs)?;
        Ok(DiffReport {
            base: d.base,
            merge_base: d.merge_base,
            branch: d.branch,
            files: d
                .files
                .into_iter()
                .map(|f| ChangedFile {
                    path: lossy(&f.path),
                    status: match f.status {
                        ChangeStatus::Added => "added",
                        ChangeStatus::Modified => "modified",
                        ChangeStatus::Deleted => "deleted",
                        ChangeStatus::Renamed => "renamed",
                    },
                    old_path: f.old_path.as_deref().map(lossy),
                    additions: f.additions,
                    deletions: f.deletions,
                    binary: f.binary,
                })
                .collect(),
            diff: d.diff,
            truncated: d.truncated,
        })
    }

    fn changed_count(&self, wt: &WorktreeRecord) -> Result<u64, VcsError> {
        let n = self.repo()?.changed_count(&worktree(wt)).map_err(vcs)?;
        Ok(n as u64)
    }

    fn land(
        &self,
        wt: &WorktreeRecord,
        strategy: &str,
        message: Option<&str>,
        commit_first: bool,
        agent: &str,
    ) -> Result<Landed, VcsError> {
        let repo = self.repo()?;
        let strategy = Strategy::parse(strategy).ok_or_else(|| VcsError::Invalid {
            field: "strategy",
            message: format!("{strategy:?} is not a strategy; expected merge, squash or rebase"),
        })?;
        let _one_at_a_time = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        let w = worktree(wt);
        if commit_first && !wt.paused {
            repo.commit_all(&w, &format!("{agent}: work left uncommitted"))
                .map_err(vcs)?;
        }
        let merged = repo.merge(&w, strategy, message).map_err(vcs)?;
        Ok(Landed {
            commit: merged.commit,
            files: merged.files.iter().map(|f| lossy(f)).collect(),
        })
    }

    fn unmerged(&self, wt: &WorktreeRecord) -> Result<Unmerged, VcsError> {
        let u = self.repo()?.has_unmerged_work(&worktree(wt)).map_err(vcs)?;
        Ok(Unmerged {
            commits: if u.landed { 0 } else { u.commits },
            uncommitted: u.uncommitted.iter().map(|f| lossy(f)).collect(),
        })
    }

    fn discard(&self, wt: &WorktreeRecord) -> Result<(), VcsError> {
        self.repo()?.discard(&worktree(wt)).map_err(vcs)
    }

    fn pause(&self, wt: &WorktreeRecord, agent: &str) -> Result<(), VcsError> {
        let repo = self.repo()?;
        let w = worktree(wt);
        if !wt.paused {
            repo.commit_all(&w, &format!("{agent}: work left uncommitted (paused)"))
                .map_err(vcs)?;
        }
        repo.pause(&w).map_err(vcs)
    }

    fn resume(&self, wt: &WorktreeRecord) -> Result<WorktreeMade, VcsError> {
        let made = self
            .repo()?
            .resume(&worktree(wt), &self.prep)
            .map_err(vcs)?;
        Ok(WorktreeMade {
            worktree: record(made.worktree, wt.changes),
            notes: made.notes,
        })
    }

    fn reconcile(&self, recorded: &[WorktreeRecord]) -> Result<Vec<WorktreeFound>, VcsError> {
        let recorded: Vec<Worktree> = recorded.iter().map(worktree).collect();
        let found = self.repo()?.reconcile(&recorded).map_err(vcs)?;
        Ok(found
            .into_iter()
            .map(|f| match f {
                Found::CheckedOut => WorktreeFound::CheckedOut,
                Found::OnOtherBranch(b) => WorktreeFound::OnOtherBranch(b),
                Found::Paused => WorktreeFound::Paused,
                Found::Gone => WorktreeFound::Gone,
            })
            .collect())
    }
}
