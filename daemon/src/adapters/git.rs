//! The git worktree layer: everything orch needs from git to give an agent its own checkout on
//! its own branch, show what it changed, land its work in the workspace or throw it away. A typed
//! API over the `git` binary (see `run.rs` for how git is run: argv only, a clean environment,
//! no prompts); errors name what was wrong ([`GitError`]).
//!
//! # Using it from the runtime
//!
//! Every call is blocking (it waits for git processes): the runtime calls them from
//! `tokio::task::spawn_blocking` and feeds the outcome back to its loop as an observation, like
//! any other side effect. [`Repo`] is cheap to clone and holds no open resources.
//!
//! - At start-up, [`Repo::open`] on the workspace root. Outside a repository it fails with
//!   [`GitError::NotARepository`]; the runtime keeps the error and returns it to a spawn that asks
//!   for a worktree rather than failing the daemon.
//! - `spawn {worktree}`: [`WorktreeSpec::for_agent`] (branch `orch/<name>`, path chosen by the
//!   runtime — by default `<state dir>/worktrees/<name>`, never inside the repository, which
//!   [`Repo::create`] refuses), then [`Repo::create`] with the `[worktrees]` [`Preparation`]. The
//!   returned [`Worktree`] is what the runtime records in its `worktree.created` event (the agent
//!   object's worktree, branch, base); the agent is then started with `cwd = worktree.path`.
//!   [`Created::notes`] (files skipped, setup output) belong in that event or the spawn reply.
//! - After each agent turn or task attempt: [`Repo::changed_count`] for `worktree.changed`.
//! - `orch/agent/diff`: [`Repo::diff`] with the request's base and a size limit.
//! - `orch/agent/merge`: [`Repo::commit_all`] unless `commit_on_done` is off, then
//!   [`Repo::merge`]; [`GitError::Conflict`] means the workspace was left exactly as it was.
//!   Merges into one workspace must not run concurrently (the runtime serialises them; git's own
//!   index lock would otherwise fail the second one).
//! - `orch/agent/discard`: [`Repo::has_unmerged_work`]; when [`UnmergedWork::exists`] and the
//!   request is not forced, a decision asks a person first; then [`Repo::discard`].
//! - `pause`: [`Repo::pause`] (refused while there is uncommitted work: [`Repo::commit_all`]
//!   first, or ask); `resume`: [`Repo::resume`].
//! - After a daemon restart: [`Repo::reconcile`] with the recorded worktrees says which are
//!   checked out, paused or gone (and prunes git's stale entries).
//!
//! # Invariants
//!
//! - Nothing orch creates is left half-made: a failed [`Repo::create`] (setup command, copy)
//!   removes the checkout and the branch it created.
//! - orch never deletes uncommitted work on its own: [`Repo::pause`] refuses it, and
//!   [`Repo::discard`] (which does delete it) is only called after [`Repo::has_unmerged_work`]
//!   was shown to a person or the request was forced.
//! - A merge that fails leaves the workspace's checkout as it was: a conflict is aborted
//!   (`merge --abort`, `reset --merge`, `rebase --abort`), and a merge that would touch the
//!   workspace's uncommitted files is refused before it starts.
//! - Reading a worktree (diff, counts) never changes it: untracked files are added to a copy of
//!   its index, not to the index the agent's own git uses.
//!
//! Untracked files that the repository does not ignore are the agent's work like any other:
//! [`Repo::diff`] hashes them (into git's object store, as `git add` would) and
//! [`Repo::commit_all`] commits them. A dependency directory the repository fails to ignore
//! makes both slow and large; the remedy is the repository's `.gitignore`, not a guess here.
//!
//! Hooks: a checkout runs the repository's `post-checkout` hook as any checkout does (Git LFS
//! needs it); the commits, merges and rebases orch makes skip the hooks that could refuse them
//! (`pre-commit`, `pre-merge-commit`, `commit-msg`, `pre-rebase`: `--no-verify`): the checks are
//! orch's gates, and a hook waiting for input would leave a merge half-done.
//!
//! git 2.38 or newer is needed (`merge-tree --write-tree`, `rebase --no-update-refs`);
//! [`Repo::open`] says so when it finds an older one.
//!
//! This module knows git and the file system; it knows nothing of the runtime, the store, the
//! wire or agents beyond a name. `validate.rs` and `parse.rs` are its pure parts; `run.rs` runs
//! git; `prepare.rs` copies files and runs setup commands; `merge.rs` lands work.

mod merge;
mod parse;
mod port;
mod prepare;
mod run;
#[cfg(test)]
mod tests;
pub mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use port::GitWorktrees;
pub use run::Git;

/// The identity of the commits orch makes of an agent's uncommitted work, and of merges when the
/// person has no git identity configured.
pub const ORCH_NAME: &str = "orch";
pub const ORCH_EMAIL: &str = "orch@localhost";

/// How long a setup command may run by default.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(600);

/// The oldest git this layer works with.
const MIN_GIT: (u32, u32) = (2, 38);

/// At most this many file names are listed in an error message.
const NAMES_IN_ERRORS: usize = 10;

/// A git repository orch works in, seen from the workspace.
#[derive(Debug, Clone)]
pub struct Repo {
    git: Git,
    /// The workspace's checkout (the top level of the worktree the workspace is in): merges land
    /// here, and new worktrees may not be created inside it.
    workdir: PathBuf,
    /// The git directory all worktrees share (`.git` of the main worktree).
    common_dir: PathBuf,
}

/// An agent's worktree as orch records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// Where it is checked out (absolute, symbolic links resolved).
    pub path: PathBuf,
    /// Its branch, without `refs/heads/`.
    pub branch: String,
    /// What it was based on, as the person named it (`main`, `v1.2`, a commit), or the branch the
    /// workspace had checked out (or its commit, when detached). Diffs are against this by
    /// default and merges land in it.
    pub base: String,
    /// The commit `base` resolved to when the worktree was created.
    pub base_commit: String,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeSpec {
    /// Where to check it out: absolute, outside the repository; missing or an empty directory.
    pub path: PathBuf,
    /// The branch to create.
    pub branch: String,
    /// What to start from; by default the workspace's current HEAD.
    pub base: Option<String>,
    /// What to do when the branch already exists.
    pub existing_branch: ExistingBranch,
}

/// What [`Repo::create`] does with a branch that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingBranch {
    /// Fail with [`GitError::BranchExists`].
    Refuse,
    /// Check the existing branch out (its base is where it and `base` meet).
    Reuse,
}

/// Getting a new checkout ready (`[worktrees]` in `orch.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preparation {
    /// Untracked files to copy from the workspace, relative paths (`.env`); directories are
    /// copied recursively, missing ones skipped with a note. They should be ignored by the
    /// repository (as such files are): [`Repo::commit_all`] commits untracked files that are not.
    pub copy: Vec<PathBuf>,
    /// Commands (argv, no shell) run once in the new checkout, in order.
    pub setup: Vec<Vec<String>>,
    /// How long each setup command may take.
    pub setup_timeout: Duration,
}

/// A created (or resumed) worktree and what happened while preparing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub worktree: Worktree,
    /// The paths of [`Preparation::copy`] that were copied.
    pub copied: Vec<PathBuf>,
    /// Things a person may want to know: files skipped, the end of each setup command's output.
    pub notes: Vec<String>,
}

/// How a file differs from the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
}

/// One changed file of a [`Diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Relative to the worktree's top level; for a rename, the new path. Exact bytes: it may be
    /// any name git accepts, not necessarily UTF-8.
    pub path: PathBuf,
    pub status: ChangeStatus,
    /// A renamed file's old path.
    pub old_path: Option<PathBuf>,
    /// Lines added and deleted (0 for binary files).
    pub additions: u64,
    pub deletions: u64,
    /// git considers it binary: no line counts, and the patch only says the file differs.
    pub binary: bool,
}

/// What an agent's worktree changed against a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The base it is compared against, as named.
    pub base: String,
    /// The commit compared against: where `base` and the worktree's branch meet.
    pub merge_base: String,
    pub branch: String,
    /// Every changed file, including uncommitted and untracked ones (ignored ones are not).
    pub files: Vec<FileChange>,
    /// The unified diff (`git diff -M` format, `a/` and `b/` prefixes), cut at a line boundary
    /// when longer than the limit. Bytes that are not UTF-8 are replaced.
    pub diff: String,
    /// Whether `diff` was cut (`files` is always complete).
    pub truncated: bool,
}

/// How [`Repo::merge`] lands a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A merge commit (`--no-ff`), even when a fast-forward were possible.
    Merge,
    /// One new commit on the base with all of the branch's changes.
    Squash,
    /// The branch's commits replayed onto the base, which is then fast-forwarded.
    Rebase,
}

/// A landed merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The base branch's new head.
    pub commit: String,
    /// The files the merge changed in the workspace.
    pub files: Vec<PathBuf>,
}

/// Work on a worktree's branch that its base does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmergedWork {
    /// Commits on the branch that are not in the base.
    pub commits: u64,
    /// The base already has the content of those commits (a squash merge landed them), so
    /// merging them would change nothing.
    pub landed: bool,
    /// Uncommitted and untracked files in the checkout (none when it is paused).
    pub uncommitted: Vec<PathBuf>,
}

/// What a recorded worktree is now ([`Repo::reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Checked out where recorded, on its branch.
    CheckedOut,
    /// Checked out where recorded, but on another branch (`None`: detached) — someone switched.
    OnOtherBranch(Option<String>),
    /// Not checked out; its branch exists ([`Repo::resume`] brings it back).
    Paused,
    /// Neither the checkout nor the branch exists.
    Gone,
}

/// What went wrong, naming the thing that was wrong.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {found} is too old: orch needs {}.{} or newer", MIN_GIT.0, MIN_GIT.1)]
    GitTooOld { found: String },
    #[error("no such directory: {}", path.display())]
    NoSuchDirectory { path: PathBuf },
    #[error("not a git repository: {}", path.display())]
    NotARepository { path: PathBuf },
    #[error("not a working tree: {} (a bare repository, or inside .git)", path.display())]
    NotAWorkTree { path: PathBuf },
    #[error("repository {} has no commits yet", path.display())]
    NoCommits { path: PathBuf },
    #[error("invalid branch name {name:?}: {reason}")]
    InvalidBranch { name: String, reason: String },
    #[error("invalid base {name:?}: {reason}")]
    InvalidBase { name: String, reason: String },
    #[error("base {name} is not a commit in {}", repo.display())]
    UnknownBase { name: String, repo: PathBuf },
    #[error("invalid worktree path {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: String },
    #[error("invalid path to copy {}: {reason}", path.display())]
    InvalidCopyPath { path: PathBuf, reason: String },
    #[error("branch {branch} already exists")]
    BranchExists { branch: String },
    #[error("branch {branch} does not exist")]
    BranchMissing { branch: String },
    #[error("worktree path already exists and is not empty: {}", path.display())]
    PathExists { path: PathBuf },
    #[error("worktree {} is not checked out", path.display())]
    NotCheckedOut { path: PathBuf },
    #[error("worktree {} is not on branch {branch} ({head})", path.display())]
    NotOnBranch {
        path: PathBuf,
        branch: String,
        head: String,
    },
    #[error("setup command `{command}` {outcome}{}", suffix(tail))]
    SetupFailed {
        command: String,
        outcome: String,
        tail: String,
    },
    #[error("uncommitted changes in {}: {}", path.display(), names(files))]
    Uncommitted { path: PathBuf, files: Vec<PathBuf> },
    #[error("unresolved conflicts in {}: {}", path.display(), names(files))]
    Unresolved { path: PathBuf, files: Vec<PathBuf> },
    #[error("uncommitted changes in {} that the merge would overwrite: {}", path.display(), names(files))]
    WouldOverwrite { path: PathBuf, files: Vec<PathBuf> },
    #[error("changes staged in {} would be committed with the merge: {}", path.display(), names(files))]
    StagedChanges { path: PathBuf, files: Vec<PathBuf> },
    #[error("base {base} is not a local branch, so there is nothing to merge into")]
    BaseNotBranch { base: String },
    #[error("base branch {base} is not checked out in {} ({head})", path.display())]
    BaseNotCheckedOut {
        base: String,
        path: PathBuf,
        head: String,
    },
    #[error("branch {branch} has nothing to merge into {base}")]
    NothingToMerge { branch: String, base: String },
    #[error("merge conflict in {}", names(files))]
    Conflict { files: Vec<PathBuf> },
    #[error("{command} failed ({status}){}", suffix(stderr))]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not run {} in {}: {source}", program.display(), dir.display())]
    Spawn {
        program: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the {what} message is empty")]
    EmptyMessage { what: &'static str },
    #[error("base {base} and branch {branch} have no common history")]
    NoCommonHistory { base: String, branch: String },
    #[error("{0}")]
    Malformed(String),
}

impl From<parse::Malformed> for GitError {
    fn from(m: parse::Malformed) -> Self {
        GitError::Malformed(m.0)
    }
}

/// File names for an error message: the first few, and how many more.
fn names(files: &[PathBuf]) -> String {
    let shown: Vec<String> = files
        .iter()
        .take(NAMES_IN_ERRORS)
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let shown = shown.join(", ");
    if files.len() > NAMES_IN_ERRORS {
        format!("{shown} and {} more", files.len() - NAMES_IN_ERRORS)
    } else {
        shown
    }
}

fn suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl WorktreeSpec {
    /// The defaults for an agent: branch `orch/<name>` from the workspace's HEAD at `path`.
    pub fn for_agent(agent_name: &str, path: PathBuf) -> Self {
        Self {
            path,
            branch: validate::default_branch(agent_name),
            base: None,
            existing_branch: ExistingBranch::Refuse,
        }
    }
}

impl Default for Preparation {
    fn default() -> Self {
        Self {
            copy: Vec::new(),
            setup: Vec::new(),
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
        }
    }
}

impl ChangeStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Added => "added",
            ChangeStatus::Modified => "modified",
            ChangeStatus::Deleted => "deleted",
            ChangeStatus::Renamed => "renamed",
        }
    }
}

impl Strategy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Merge => "merge",
            Strategy::Squash => "squash",
            Strategy::Rebase => "rebase",
        }
    }

    /// Parse a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        [Strategy::Merge, Strategy::Squash, Strategy::Rebase]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl UnmergedWork {
    /// Whether discarding would lose something.
    pub fn exists(&self) -> bool {
        !self.uncommitted.is_empty() || (self.commits > 0 && !self.landed)
    }
}

impl Repo {
    /// The repository `path` (the workspace root, or any directory in it) is in.
    pub fn open(path: &Path) -> Result<Self, GitError> {
        Self::open_with(Git::default(), path)
    }

    /// [`Repo::open`] running git as `git` says.
    pub fn open_with(git: Git, path: &Path) -> Result<Self, GitError> {
        if !path.is_dir() {
            return Err(GitError::NoSuchDirectory {
                path: path.to_owned(),
            });
        }
        let version = git.at(path).arg("version").line()?;
        match parse_version(&version) {
            Some(v) if v >= MIN_GIT => {}
            _ => {
                return Err(GitError::GitTooOld {
                    found: version.trim_start_matches("git version ").to_owned(),
                })
            }
        }
        let call = git
            .at(path)
            .args(["rev-parse", "--path-format=absolute", "--show-toplevel"])
            .arg("--git-common-dir");
        let out = call.output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(if stderr.contains("not a git repository") {
                GitError::NotARepository {
                    path: path.to_owned(),
                }
            } else if stderr.contains("must be run in a work tree") {
                GitError::NotAWorkTree {
                    path: path.to_owned(),
                }
            } else {
                call.failed(out.status, &out.stderr)
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let (Some(top), Some(common)) = (lines.next(), lines.next()) else {
            return Err(GitError::Malformed(format!(
                "unexpected rev-parse output: {text:?}"
            )));
        };
        let canonical = |p: &str| {
            std::fs::canonicalize(p).map_err(|source| GitError::Io {
                what: format!("resolving {p}"),
                source,
            })
        };
        Ok(Self {
            workdir: canonical(top)?,
            common_dir: canonical(common)?,
            git,
        })
    }

    /// The workspace's checkout.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// Create a worktree on a new branch (or an existing one, when the spec says so), copy the
    /// named files in and run the setup commands. On any failure after git created something,
    /// what it created is removed again.
    pub fn create(&self, spec: &WorktreeSpec, prep: &Preparation) -> Result<Created, GitError> {
        validate::check_branch(&spec.branch).map_err(|reason| GitError::InvalidBranch {
            name: spec.branch.clone(),
            reason,
        })?;
        if let Some(base) = &spec.base {
            check_base(base)?;
        }
        prepare::check_copy_list(&prep.copy)?;
        let path = self.check_new_location(&spec.path)?;
        if !self
            .git
            .at(&self.workdir)
            .args(["check-ref-format", "--branch", &spec.branch])
            .test()?
        {
            return Err(GitError::InvalidBranch {
                name: spec.branch.clone(),
                reason: "refused by git check-ref-format".into(),
            });
        }
        let (base, base_commit) = match &spec.base {
            Some(name) => (name.clone(), self.resolve(name)?),
            None => self.head()?,
        };
        let existing = match spec.existing_branch {
            ExistingBranch::Refuse => None,
            ExistingBranch::Reuse => self.branch_commit(&spec.branch)?,
        };
        let (base_commit, created_branch) = match existing {
            Some(tip) => {
                self.worktree_add(&path, None, &spec.branch)?;
                let meet = self
                    .git
                    .at(&self.workdir)
                    .args(["merge-base", &base_commit, &tip])
                    .line()
                    .unwrap_or(base_commit);
                (meet, false)
            }
            None => {
                self.worktree_add(&path, Some(&spec.branch), &base_commit)?;
                (base_commit, true)
            }
        };
        let worktree = Worktree {
            path,
            branch: spec.branch.clone(),
            base,
            base_commit,
        };
        match self.prepare(&worktree, prep) {
            Ok((copied, notes)) => Ok(Created {
                worktree,
                copied,
                notes,
            }),
            Err(e) => {
                self.remove_checkout(&worktree.path);
                if created_branch {
                    let _ = self.delete_branch(&worktree.branch);
                }
                Err(e)
            }
        }
    }

    /// What the worktree changed against `base` (default: its recorded base), from where the two
    /// meet to its working state: commits, uncommitted changes and untracked files. The patch is
    /// cut at `limit_bytes` on a line boundary. A paused worktree shows its branch's commits.
    pub fn diff(
        &self,
        wt: &Worktree,
        base: Option<&str>,
        limit_bytes: usize,
    ) -> Result<Diff, GitError> {
        let base = base.unwrap_or(&wt.base);
        check_base(base)?;
        let (merge_base, stream) = if self.is_checked_out(wt) {
            let index = ScratchIndex::new(&wt.path)?;
            // The merge base is found while `add` scans the worktree: both only read.
            let merge_base = self
                .git
                .at(&wt.path)
                .args(["merge-base", base, "HEAD"])
                .spawn()?;
            index.add_all(&self.git, &wt.path)?;
            let merge_base = read_line(merge_base).map_err(|e| self.no_merge_base(e, base, wt))?;
            let stream = self
                .git
                .at(&wt.path)
                .env("GIT_INDEX_FILE", index.path.clone())
                .args(["diff", "--cached"])
                .args(DIFF_OPTIONS)
                .args(["--raw", "--numstat", "--patch", "-z", &merge_base, "--"])
                .spawn()?;
            (merge_base, read_diff(stream, limit_bytes)?)
        } else {
            let tip = format!("refs/heads/{}", wt.branch);
            self.require_branch(&wt.branch)?;
            let merge_base = self
                .git
                .at(&self.workdir)
                .args(["merge-base", base, &tip])
                .line()
                .map_err(|e| self.no_merge_base(e, base, wt))?;
            let stream = self
                .git
                .at(&self.workdir)
                .arg("diff")
                .args(DIFF_OPTIONS)
                .args([
                    "--raw",
                    "--numstat",
                    "--patch",
                    "-z",
                    &merge_base,
                    &tip,
                    "--",
                ])
                .spawn()?;
            (merge_base, read_diff(stream, limit_bytes)?)
        };
        let (files, diff, truncated) = stream;
        Ok(Diff {
            base: base.to_owned(),
            merge_base,
            branch: wt.branch.clone(),
            files,
            diff,
            truncated,
        })
    }

    /// How many files the worktree changed against its base, without line counts or patch: for
    /// `worktree.changed` after each turn. Cheaper than [`Repo::diff`] (tracked changes and
    /// untracked files are listed by two git commands running at once, and nothing is hashed or
    /// written), at one cost: a tracked file moved without git (`mv a b`) counts as two files,
    /// where the diff shows one rename.
    pub fn changed_count(&self, wt: &Worktree) -> Result<usize, GitError> {
        check_base(&wt.base)?;
        if self.is_checked_out(wt) {
            let untracked = self
                .git
                .at(&wt.path)
                .args(["ls-files", "-z", "--others", "--exclude-standard"])
                .spawn()?;
            let tracked = self
                .git
                .at(&wt.path)
                .args(["diff", "--merge-base"])
                .args(DIFF_OPTIONS)
                .args(["--name-only", "-z", &wt.base, "--"])
                .run()
                .map_err(|e| self.no_merge_base(e, &wt.base, wt))?;
            let untracked = read_all(untracked)?;
            Ok(parse::names(&tracked).len() + parse::names(&untracked).len())
        } else {
            self.require_branch(&wt.branch)?;
            let out = self
                .git
                .at(&self.workdir)
                .arg("diff")
                .args(DIFF_OPTIONS)
                .args(["--name-only", "-z"])
                .arg(format!("{}...refs/heads/{}", wt.base, wt.branch))
                .arg("--")
                .run()
                .map_err(|e| self.no_merge_base(e, &wt.base, wt))?;
            Ok(parse::names(&out).len())
        }
    }

    /// Commit everything the agent left uncommitted in its worktree (tracked changes and
    /// untracked files, not ignored ones) as `orch <orch@localhost>`, without running hooks (the
    /// person's checks are orch's gates). `None` when there was nothing to commit.
    pub fn commit_all(&self, wt: &Worktree, message: &str) -> Result<Option<String>, GitError> {
        if message.trim().is_empty() {
            return Err(GitError::EmptyMessage { what: "commit" });
        }
        self.require_checked_out(wt)?;
        let status = self.status(&wt.path)?;
        if status.is_empty() {
            return Ok(None);
        }
        let unresolved: Vec<PathBuf> = status
            .iter()
            .filter(|e| e.unmerged())
            .map(|e| e.path.clone())
            .collect();
        if !unresolved.is_empty() {
            return Err(GitError::Unresolved {
                path: wt.path.clone(),
                files: unresolved,
            });
        }
        self.require_on_branch(wt)?;
        self.git.at(&wt.path).args(["add", "-A"]).run()?;
        let commit = self
            .git
            .at(&wt.path)
            .args([
                "commit",
                "--quiet",
                "--no-verify",
                "--no-gpg-sign",
                "-m",
                message,
            ])
            .env("GIT_AUTHOR_NAME", ORCH_NAME)
            .env("GIT_AUTHOR_EMAIL", ORCH_EMAIL)
            .env("GIT_COMMITTER_NAME", ORCH_NAME)
            .env("GIT_COMMITTER_EMAIL", ORCH_EMAIL);
        let out = commit.output()?;
        if !out.status.success() {
            // The status may have listed a file whose content is unchanged after all.
            let staged = !self
                .git
                .at(&wt.path)
                .args(["diff", "--cached", "--quiet"])
                .test()?;
            if !staged {
                return Ok(None);
            }
            return Err(commit.failed(out.status, &out.stderr));
        }
        Ok(Some(
            self.git.at(&wt.path).args(["rev-parse", "HEAD"]).line()?,
        ))
    }

    /// Land the worktree's branch in its base, which must be the branch checked out in the
    /// workspace. `message` is the merge or squash commit's message (git's default when none).
    /// Uncommitted work in the worktree is not part of it: [`Repo::commit_all`] first.
    pub fn merge(
        &self,
        wt: &Worktree,
        strategy: Strategy,
        message: Option<&str>,
    ) -> Result<Merged, GitError> {
        merge::merge(self, wt, strategy, message)
    }

    /// What discarding the worktree would lose.
    pub fn has_unmerged_work(&self, wt: &Worktree) -> Result<UnmergedWork, GitError> {
        check_base(&wt.base)?;
        let uncommitted = if self.is_checked_out(wt) {
            let mut paths: Vec<PathBuf> =
                self.status(&wt.path)?.into_iter().map(|e| e.path).collect();
            paths.dedup();
            paths
        } else {
            Vec::new()
        };
        let tip = format!("refs/heads/{}", wt.branch);
        let commits = match self.branch_commit(&wt.branch)? {
            None => 0,
            Some(_) => {
                let count = self
                    .git
                    .at(&self.workdir)
                    .args(["rev-list", "--count"])
                    .arg(format!("{}..{tip}", wt.base))
                    .arg("--")
                    .line()
                    .map_err(|e| self.no_merge_base(e, &wt.base, wt))?;
                count.parse().map_err(|_| {
                    GitError::Malformed(format!("unexpected rev-list count: {count:?}"))
                })?
            }
        };
        let landed = commits > 0 && self.content_in(&wt.base, &tip)?;
        Ok(UnmergedWork {
            commits,
            landed,
            uncommitted,
        })
    }

    /// Remove the worktree's checkout (whatever is in it) and delete its branch. Done is done:
    /// a checkout or branch already gone is not an error.
    pub fn discard(&self, wt: &Worktree) -> Result<(), GitError> {
        if self.is_registered(&wt.path)? {
            self.git
                .at(&self.workdir)
                .args(["worktree", "remove", "--force", "--"])
                .arg(&wt.path)
                .run()?;
        }
        self.prune()?;
        if self.branch_commit(&wt.branch)?.is_some() {
            self.delete_branch(&wt.branch)?;
        }
        Ok(())
    }

    /// Remove the worktree's checkout but keep its branch. Refused while the checkout has
    /// uncommitted or untracked files ([`Repo::commit_all`] first); ignored files (build output,
    /// copied `.env`) go with the checkout, and [`Repo::resume`] prepares it again. Pausing a
    /// paused worktree does nothing.
    pub fn pause(&self, wt: &Worktree) -> Result<(), GitError> {
        if !self.is_registered(&wt.path)? {
            return Ok(());
        }
        let files: Vec<PathBuf> = self.status(&wt.path)?.into_iter().map(|e| e.path).collect();
        if !files.is_empty() {
            return Err(GitError::Uncommitted {
                path: wt.path.clone(),
                files,
            });
        }
        self.git
            .at(&self.workdir)
            .args(["worktree", "remove", "--"])
            .arg(&wt.path)
            .run()?;
        Ok(())
    }

    /// Check a paused worktree's branch out again where it was, and prepare it as a new one
    /// (copied files, setup). On a setup failure the checkout is removed again; the branch stays.
    /// Resuming a checked-out worktree does nothing.
    pub fn resume(&self, wt: &Worktree, prep: &Preparation) -> Result<Created, GitError> {
        let done = |copied, notes| Created {
            worktree: wt.clone(),
            copied,
            notes,
        };
        if self.is_checked_out(wt) {
            return Ok(done(Vec::new(), Vec::new()));
        }
        prepare::check_copy_list(&prep.copy)?;
        self.prune()?;
        self.require_branch(&wt.branch)?;
        let path = self.check_new_location(&wt.path)?;
        self.worktree_add(&path, None, &wt.branch)?;
        match self.prepare(wt, prep) {
            Ok((copied, notes)) => Ok(done(copied, notes)),
            Err(e) => {
                self.remove_checkout(&wt.path);
                Err(e)
            }
        }
    }

    /// After a restart: what each recorded worktree is now, in order. git's entries for
    /// checkouts whose directory is gone are pruned first.
    pub fn reconcile(&self, recorded: &[Worktree]) -> Result<Vec<Found>, GitError> {
        self.prune()?;
        let listed = self.list()?;
        let mut found = Vec::with_capacity(recorded.len());
        for wt in recorded {
            let state = match listed.iter().find(|l| l.path == wt.path) {
                Some(l) if l.branch.as_deref() == Some(wt.branch.as_str()) => Found::CheckedOut,
                Some(l) => Found::OnOtherBranch(l.branch.clone()),
                None if self.branch_commit(&wt.branch)?.is_some() => Found::Paused,
                None => Found::Gone,
            };
            found.push(state);
        }
        Ok(found)
    }

    // --- shared steps ---

    /// Why `git merge-base <base> <branch>` failed: an unknown base, or no common history.
    fn no_merge_base(&self, failed: GitError, base: &str, wt: &Worktree) -> GitError {
        match self.resolve(base) {
            Err(unknown) => unknown,
            Ok(_) if matches!(&failed, GitError::Command { status, .. } if status == "exit code 1") => {
                GitError::NoCommonHistory {
                    base: base.to_owned(),
                    branch: wt.branch.clone(),
                }
            }
            Ok(_) => failed,
        }
    }

    /// Validate a new checkout's location and resolve it: not inside the repository, missing or
    /// an empty directory.
    fn check_new_location(&self, path: &Path) -> Result<PathBuf, GitError> {
        let invalid = |reason: String| GitError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        validate::check_worktree_path(path).map_err(invalid)?;
        let resolved = validate::resolve_new(path).map_err(|e| invalid(e.to_string()))?;
        let main = (self.common_dir.file_name() == Some(std::ffi::OsStr::new(".git")))
            .then(|| self.common_dir.parent())
            .flatten();
        for root in [Some(self.workdir.as_path()), Some(&self.common_dir), main]
            .into_iter()
            .flatten()
        {
            if validate::is_within(&resolved, root) {
                return Err(invalid(format!(
                    "is inside the repository at {}",
                    root.display()
                )));
            }
        }
        match std::fs::read_dir(&resolved).map(|mut entries| entries.next().is_none()) {
            Ok(true) => Ok(resolved),
            Ok(false) => Err(GitError::PathExists { path: resolved }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(resolved),
            Err(_) => Err(GitError::PathExists { path: resolved }),
        }
    }

    /// `git worktree add`, on a new branch from `start` or on the existing branch `start`.
    fn worktree_add(
        &self,
        path: &Path,
        new_branch: Option<&str>,
        start: &str,
    ) -> Result<(), GitError> {
        let call = self
            .git
            .at(&self.workdir)
            .args(worktree_add_args(path, new_branch, start));
        let out = call.output()?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(match new_branch {
            Some(branch)
                if stderr.contains("a branch named") && stderr.contains("already exists") =>
            {
                GitError::BranchExists {
                    branch: branch.to_owned(),
                }
            }
            _ => call.failed(out.status, &out.stderr),
        })
    }

    /// Copy files in and run the setup commands.
    fn prepare(
        &self,
        wt: &Worktree,
        prep: &Preparation,
    ) -> Result<(Vec<PathBuf>, Vec<String>), GitError> {
        let mut notes = Vec::new();
        let copied = prepare::copy_files(&self.workdir, &wt.path, &prep.copy, &mut notes)?;
        for argv in &prep.setup {
            let tail = prepare::run_setup(&self.git, argv, &wt.path, prep.setup_timeout)?;
            if !tail.is_empty() {
                let shown = parse::display_words(argv.iter().map(std::ffi::OsStr::new));
                notes.push(format!("setup `{shown}`:\n{tail}"));
            }
        }
        Ok((copied, notes))
    }

    /// Remove a checkout orch just made, as well as it can: this runs on a failure path, whose
    /// error is the one to report.
    fn remove_checkout(&self, path: &Path) {
        let removed = self
            .git
            .at(&self.workdir)
            .args(["worktree", "remove", "--force", "--force", "--"])
            .arg(path)
            .run();
        if removed.is_err() {
            let _ = std::fs::remove_dir_all(path);
            let _ = self.prune();
        }
    }

    fn delete_branch(&self, branch: &str) -> Result<(), GitError> {
        self.git
            .at(&self.workdir)
            .args(["branch", "-D", "--", branch])
            .run()
            .map(drop)
    }

    fn prune(&self) -> Result<(), GitError> {
        self.git
            .at(&self.workdir)
            .args(["worktree", "prune"])
            .run()
            .map(drop)
    }

    fn list(&self) -> Result<Vec<parse::Listed>, GitError> {
        let out = self
            .git
            .at(&self.workdir)
            .args(["worktree", "list", "--porcelain", "-z"])
            .run()?;
        Ok(parse::worktree_list(&out)?)
    }

    /// Whether git knows a worktree at `path` whose directory still exists.
    fn is_registered(&self, path: &Path) -> Result<bool, GitError> {
        Ok(self
            .list()?
            .iter()
            .any(|l| l.path == path && !l.prunable && path.is_dir()))
    }

    /// Whether the worktree's checkout is there (its `.git` file is, which only git writes).
    fn is_checked_out(&self, wt: &Worktree) -> bool {
        wt.path.join(".git").is_file()
    }

    fn require_checked_out(&self, wt: &Worktree) -> Result<(), GitError> {
        if self.is_checked_out(wt) {
            Ok(())
        } else {
            Err(GitError::NotCheckedOut {
                path: wt.path.clone(),
            })
        }
    }

    /// The worktree's HEAD must be its branch, or commits made there would be lost to it.
    fn require_on_branch(&self, wt: &Worktree) -> Result<(), GitError> {
        let head = self.symbolic_head(&wt.path)?;
        if head.as_deref() == Some(wt.branch.as_str()) {
            return Ok(());
        }
        Err(GitError::NotOnBranch {
            path: wt.path.clone(),
            branch: wt.branch.clone(),
            head: describe_head(head.as_deref()),
        })
    }

    /// The branch checked out in `dir`, or none when detached.
    fn symbolic_head(&self, dir: &Path) -> Result<Option<String>, GitError> {
        let call = self.git.at(dir).args(["symbolic-ref", "-q", "HEAD"]);
        let out = call.output()?;
        match out.status.code() {
            Some(0) => {
                let name = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
                Ok(Some(
                    name.strip_prefix("refs/heads/").unwrap_or(&name).to_owned(),
                ))
            }
            Some(1) => Ok(None),
            _ => Err(call.failed(out.status, &out.stderr)),
        }
    }

    fn require_branch(&self, branch: &str) -> Result<String, GitError> {
        self.branch_commit(branch)?
            .ok_or_else(|| GitError::BranchMissing {
                branch: branch.to_owned(),
            })
    }

    /// The commit a local branch points at, if it exists.
    fn branch_commit(&self, branch: &str) -> Result<Option<String>, GitError> {
        let out = self
            .git
            .at(&self.workdir)
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{branch}^{{commit}}"))
            .output()?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned()))
    }

    /// The commit a revision names.
    fn resolve(&self, name: &str) -> Result<String, GitError> {
        let out = self
            .git
            .at(&self.workdir)
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{name}^{{commit}}"))
            .output()?;
        if !out.status.success() {
            return Err(GitError::UnknownBase {
                name: name.to_owned(),
                repo: self.workdir.clone(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// The workspace's HEAD as a base: its branch's name (or the commit when detached) and
    /// commit.
    fn head(&self) -> Result<(String, String), GitError> {
        let out = self
            .git
            .at(&self.workdir)
            .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
            .output()?;
        if !out.status.success() {
            return Err(GitError::NoCommits {
                path: self.workdir.clone(),
            });
        }
        let commit = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
        let name = self
            .symbolic_head(&self.workdir)?
            .unwrap_or_else(|| commit.clone());
        Ok((name, commit))
    }

    /// `git status` of a checkout: every uncommitted change and untracked file.
    fn status(&self, dir: &Path) -> Result<Vec<parse::StatusEntry>, GitError> {
        let out = self
            .git
            .at(dir)
            .args([
                "status",
                "--porcelain",
                "-z",
                "--untracked-files=all",
                "--ignore-submodules=none",
            ])
            .run()?;
        Ok(parse::status(&out)?)
    }

    /// Whether merging `tip` into `base` would change nothing: `base` already has its content.
    fn content_in(&self, base: &str, tip: &str) -> Result<bool, GitError> {
        let merged = self
            .git
            .at(&self.workdir)
            .args(["merge-tree", "--write-tree", "--no-messages", base, tip])
            .output()?;
        if !merged.status.success() {
            return Ok(false);
        }
        let tree = String::from_utf8_lossy(&merged.stdout);
        let tree = tree.lines().next().unwrap_or_default();
        let base_tree = self
            .git
            .at(&self.workdir)
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{base}^{{tree}}"))
            .line()?;
        Ok(tree == base_tree)
    }

    /// Environment for commits made on the person's behalf (merges): their git identity when
    /// they have one, else orch's.
    fn identity(&self) -> Result<Vec<(&'static str, &'static str)>, GitError> {
        let known = self
            .git
            .at(&self.workdir)
            .args(["var", "GIT_COMMITTER_IDENT"])
            .output()?
            .status
            .success();
        Ok(if known {
            Vec::new()
        } else {
            vec![
                ("GIT_AUTHOR_NAME", ORCH_NAME),
                ("GIT_AUTHOR_EMAIL", ORCH_EMAIL),
                ("GIT_COMMITTER_NAME", ORCH_NAME),
                ("GIT_COMMITTER_EMAIL", ORCH_EMAIL),
            ]
        })
    }
}

/// Options of every diff orch reads: exact and independent of the person's diff configuration
/// (no external or text-conversion drivers, no colour, standard prefixes, whole-tree paths),
/// renames detected.
const DIFF_OPTIONS: &[&str] = &[
    "--no-ext-diff",
    "--no-textconv",
    "--no-color",
    "--no-relative",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--ignore-submodules=none",
    "-M",
];

/// The arguments of `git worktree add`: on a new branch from `start`, or on branch `start`.
fn worktree_add_args(
    path: &Path,
    new_branch: Option<&str>,
    start: &str,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["worktree".into(), "add".into(), "--quiet".into()];
    if let Some(branch) = new_branch {
        args.extend(["--no-track".into(), "-b".into(), branch.into()]);
    }
    args.extend(["--".into(), path.as_os_str().to_owned(), start.into()]);
    args
}

/// The major and minor version in `git version`'s answer (`git version 2.47.3`,
/// `git version 2.39.5 (Apple Git-154)`).
fn parse_version(answer: &str) -> Option<(u32, u32)> {
    let number = answer.strip_prefix("git version ")?.split(' ').next()?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_base(name: &str) -> Result<(), GitError> {
    validate::check_base(name).map_err(|reason| GitError::InvalidBase {
        name: name.to_owned(),
        reason,
    })
}

fn describe_head(branch: Option<&str>) -> String {
    match branch {
        Some(b) => format!("it has {b}"),
        None => "HEAD is detached".into(),
    }
}

/// Everything a started git command prints, once it succeeded.
fn read_all(mut cmd: run::Streaming) -> Result<Vec<u8>, GitError> {
    let mut out = Vec::new();
    cmd.stdout()
        .read_to_end(&mut out)
        .map_err(|source| GitError::Io {
            what: "reading git's output".into(),
            source,
        })?;
    cmd.finish()?;
    Ok(out)
}

/// The first line a started git command prints.
fn read_line(cmd: run::Streaming) -> Result<String, GitError> {
    let out = read_all(cmd)?;
    Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
}

/// Read `git diff --raw --numstat --patch -z`: the file list whole, the patch up to `limit`
/// bytes (git is stopped once more than that has come).
fn read_diff(
    mut cmd: run::Streaming,
    limit: usize,
) -> Result<(Vec<FileChange>, String, bool), GitError> {
    let io = |source| GitError::Io {
        what: "reading git's diff".into(),
        source,
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut summary = None;
    // The summary is parsed again only when the output has doubled, so a long one costs linear
    // time while it arrives.
    let mut next_try = 0;
    let mut stopped = false;
    loop {
        let n = cmd.stdout().read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if summary.is_none() && buf.len() >= next_try {
            summary = parse::diff_summary(&buf, false)?;
            next_try = buf.len() * 2;
        }
        if let Some(s) = &summary {
            if buf.len() - s.patch_start > limit {
                stopped = true;
                break;
            }
        }
    }
    if stopped {
        cmd.kill();
    } else {
        cmd.finish()?;
    }
    let summary = match summary {
        Some(s) => s,
        None => parse::diff_summary(&buf, true)?
            .ok_or_else(|| GitError::Malformed("git's diff ended early".into()))?,
    };
    let patch = &buf[summary.patch_start..];
    let (kept, truncated) = parse::cut_at_line(patch, limit);
    Ok((
        summary.files,
        String::from_utf8_lossy(&patch[..kept]).into_owned(),
        truncated,
    ))
}

/// A private copy of a worktree's index, to which everything in the worktree is added so that a
/// diff of it includes untracked files — without touching the index the agent's git uses.
/// Copying keeps the index's file stat data, so `add` hashes only what changed. It lives in the
/// worktree's git directory (same file system; split-index files found) and is removed on drop.
struct ScratchIndex {
    path: PathBuf,
}

impl ScratchIndex {
    fn new(worktree: &Path) -> Result<Self, GitError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let io = |what: String| {
            move |source| GitError::Io {
                what: what.clone(),
                source,
            }
        };
        let gitfile = worktree.join(".git");
        let content =
            std::fs::read(&gitfile).map_err(io(format!("reading {}", gitfile.display())))?;
        let gitdir = parse::gitfile(&content, worktree).ok_or_else(|| {
            GitError::Malformed(format!(
                "{} is not a worktree's .git file",
                gitfile.display()
            ))
        })?;
        let path = gitdir.join(format!(
            "orch-index-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let index = gitdir.join("index");
        let copied = std::fs::copy(&index, &path).and_then(|_| {
            // git trusts an entry's file stat data only when the file is older than the index
            // ("racy git"); a copy stamped now would make a file changed in the second the index
            // was written look unchanged. The copy keeps the original's time.
            let modified = std::fs::metadata(&index)?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(modified)
        });
        // Removed on drop, whatever happens next.
        let scratch = Self { path };
        match copied {
            Ok(()) => Ok(scratch),
            // A checkout without an index yet: git starts an empty one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(scratch),
            Err(e) => Err(io(format!("copying the index of {}", worktree.display()))(
                e,
            )),
        }
    }

    /// Add everything in the worktree (new, changed and deleted files; not ignored ones).
    /// The copy is read once more and thrown away, so it is written without the checksum
    /// (`index.skipHash`, git 2.40; older versions ignore the setting) that its reader would
    /// otherwise verify: two hashes of the whole index saved.
    fn add_all(&self, git: &Git, worktree: &Path) -> Result<(), GitError> {
        git.at(worktree)
            .env("GIT_INDEX_FILE", self.path.clone())
            .args(["-c", "index.skipHash=true", "add", "-A", "--ignore-errors"])
            .run()
            .map(drop)
    }
}

impl Drop for ScratchIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("lock"));
    }
}

#[cfg(test)]
mod unit {
    use expect_test::expect;

    use super::*;

    #[test]
    fn worktree_add_argv() {
        let show = |args: Vec<std::ffi::OsString>| {
            parse::display_command(std::ffi::OsStr::new("git"), &args)
        };
        expect![[r#"
            git worktree add --quiet --no-track -b orch/a -- "/state/wt/a b" 4a19155
            git worktree add --quiet -- /state/wt/-x orch/a"#]]
        .assert_eq(&format!(
            "{}\n{}",
            show(worktree_add_args(
                Path::new("/state/wt/a b"),
                Some("orch/a"),
                "4a19155"
            )),
            show(worktree_add_args(Path::new("/state/wt/-x"), None, "orch/a")),
        ));
    }

    #[test]
    fn error_messages() {
        let many: Vec<PathBuf> = (0..12)
            .map(|i| PathBuf::from(format!("f{i}.txt")))
            .collect();
        let errors = [
            GitError::NotARepository {
                path: "/tmp/x".into(),
            },
            GitError::BranchExists {
                branch: "orch/x".into(),
            },
            GitError::Conflict {
                files: vec!["a.txt".into(), "b c.txt".into()],
            },
            GitError::WouldOverwrite {
                path: "/repo".into(),
                files: many,
            },
            GitError::SetupFailed {
                command: "npm ci".into(),
                outcome: "failed (exit code 1)".into(),
                tail: "npm ERR! missing package.json".into(),
            },
            GitError::BaseNotCheckedOut {
                base: "main".into(),
                path: "/repo".into(),
                head: describe_head(Some("feature")),
            },
            GitError::Command {
                command: "git branch -D -- orch/x".into(),
                status: "exit code 1".into(),
                stderr: String::new(),
            },
        ];
        let shown: String = errors.iter().map(|e| format!("{e}\n")).collect();
        expect![[r#"
            not a git repository: /tmp/x
            branch orch/x already exists
            merge conflict in a.txt, b c.txt
            uncommitted changes in /repo that the merge would overwrite: f0.txt, f1.txt, f2.txt, f3.txt, f4.txt, f5.txt, f6.txt, f7.txt, f8.txt, f9.txt and 2 more
            setup command `npm ci` failed (exit code 1): npm ERR! missing package.json
            base branch main is not checked out in /repo (it has feature)
            git branch -D -- orch/x failed (exit code 1)
        "#]].assert_eq(&shown);
    }

    #[test]
    fn versions() {
        let shown: String = [
            "git version 2.47.3",
            "git version 2.39.5 (Apple Git-154)",
            "git version 2.45.1.windows.1",
            "git version 3.0",
            "git version two",
            "hub version 2.14",
        ]
        .iter()
        .map(|a| format!("{a}: {:?}\n", parse_version(a)))
        .collect();
        expect![[r#"
            git version 2.47.3: Some((2, 47))
            git version 2.39.5 (Apple Git-154): Some((2, 39))
            git version 2.45.1.windows.1: Some((2, 45))
            git version 3.0: Some((3, 0))
            git version two: None
            hub version 2.14: None
        "#]]
        .assert_eq(&shown);
    }

    #[test]
    fn strategies_round_trip() {
        for s in [Strategy::Merge, Strategy::Squash, Strategy::Rebase] {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::parse("octopus"), None);
    }
}
