//! Tests of the worktree layer against real git, in temporary directories. Each test makes its
//! own repository (`repo/`) and a place for worktrees outside it (`state/`), with git isolated
//! from the person's configuration (`HOME` is the temporary directory, no system config) and no
//! identity configured, so merges exercise orch's fallback identity.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use expect_test::{expect, Expect};
use tempfile::TempDir;

use super::*;

/// One test's repository and state directory.
struct Fixture {
    /// Holds everything; removed on drop.
    _dir: TempDir,
    /// Canonical temporary directory, replaced by `$TMP` in snapshots.
    tmp: PathBuf,
    /// The workspace's checkout.
    root: PathBuf,
    /// Where worktrees go.
    state: PathBuf,
    repo: Repo,
}

impl Fixture {
    /// A repository on `main` with one commit of a few files.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tmp = std::fs::canonicalize(dir.path()).unwrap();
        let root = tmp.join("repo");
        let state = tmp.join("state");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        person_git(&tmp, &root, &["init", "-q", "-b", "main"]);
        write(&root, "a.txt", "one\ntwo\nthree\n");
        write(&root, "b.txt", "bee\n");
        write(&root, ".gitignore", "*.log\n.env\n");
        person_git(&tmp, &root, &["add", "-A"]);
        person_git(&tmp, &root, &["commit", "-q", "-m", "initial"]);
        let repo = Repo::open_with(test_git(&tmp), &root).unwrap();
        assert_eq!(repo.workdir, root);
        Fixture {
            _dir: dir,
            tmp,
            root,
            state,
            repo,
        }
    }

    /// Run git as a person would (with an identity), outside the layer under test.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        person_git(&self.tmp, dir, args)
    }

    fn commit_all(&self, dir: &Path, message: &str) {
        self.git(dir, &["add", "-A"]);
        self.git(dir, &["commit", "-q", "-m", message]);
    }

    fn head(&self, dir: &Path) -> String {
        self.git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// What a person would compare to see that a checkout did not change: HEAD, the status, and
    /// the content of every file in it.
    fn snapshot(&self, dir: &Path) -> String {
        let mut files = Vec::new();
        collect(dir, dir, &mut files);
        files.sort();
        format!(
            "{}\n{}\n{}",
            self.head(dir),
            self.git(dir, &["status", "--porcelain", "--untracked-files=all"]),
            files.join("\n")
        )
    }

    fn spec(&self, agent: &str) -> WorktreeSpec {
        WorktreeSpec::for_agent(agent, self.state.join("worktrees").join(agent))
    }

    fn create(&self, agent: &str) -> Worktree {
        self.repo
            .create(&self.spec(agent), &Preparation::default())
            .unwrap()
            .worktree
    }

    /// An error's message with the temporary directory replaced.
    fn err(&self, e: GitError) -> String {
        e.to_string().replace(&*self.tmp.to_string_lossy(), "$TMP")
    }

    fn branches(&self) -> String {
        self.git(&self.root, &["branch", "--format=%(refname:short)"])
    }
}

/// Run git as a person would, with `home` as its home (no configuration of theirs) and an
/// identity; its stdout, failure fatal.
fn person_git(home: &Path, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"GIT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Person")
        .env("GIT_AUTHOR_EMAIL", "person@example.com")
        .env("GIT_COMMITTER_NAME", "Person")
        .env("GIT_COMMITTER_EMAIL", "person@example.com")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The layer's git, isolated like [`person_git`] but with no identity.
fn test_git(home: &Path) -> Git {
    Git::new(
        "git",
        vec![
            (OsString::from("HOME"), home.as_os_str().to_owned()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ],
    )
}

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

/// Every file under `dir` except `.git`, with its content.
fn collect(top: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name() == Some(std::ffi::OsStr::new(".git")) {
            continue;
        }
        if path.is_dir() {
            collect(top, &path, out);
        } else {
            out.push(format!(
                "{}: {:?}",
                path.strip_prefix(top).unwrap().display(),
                std::fs::read(&path).unwrap()
            ));
        }
    }
}

fn show_files(diff: &Diff) -> String {
    diff.files
        .iter()
        .map(|f| {
            format!(
                "{} {:?}{} +{} -{}{}\n",
                f.status.as_str(),
                f.path,
                f.old_path
                    .as_ref()
                    .map(|o| format!(" (from {o:?})"))
                    .unwrap_or_default(),
                f.additions,
                f.deletions,
                if f.binary { " binary" } else { "" }
            )
        })
        .collect()
}

fn check_err(f: &Fixture, result: Result<impl std::fmt::Debug, GitError>, expect: Expect) {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => expect.assert_eq(&f.err(e)),
    }
}

#[test]
fn outside_a_repository_is_a_clear_error() {
    let f = Fixture::new();
    let plain = f.tmp.join("plain");
    std::fs::create_dir(&plain).unwrap();
    check_err(
        &f,
        Repo::open_with(test_git(&f.tmp), &plain),
        expect!["not a git repository: $TMP/plain"],
    );
    check_err(
        &f,
        Repo::open_with(test_git(&f.tmp), &f.tmp.join("missing")),
        expect!["no such directory: $TMP/missing"],
    );
    check_err(
        &f,
        Repo::open_with(test_git(&f.tmp), &f.root.join(".git")),
        expect!["not a working tree: $TMP/repo/.git (a bare repository, or inside .git)"],
    );
    // From a subdirectory, the repository is found.
    std::fs::create_dir(f.root.join("sub")).unwrap();
    let repo = Repo::open_with(test_git(&f.tmp), &f.root.join("sub")).unwrap();
    assert_eq!(repo.workdir(), f.root);
}

#[test]
fn validation_refusals() {
    let f = Fixture::new();
    let wt = |branch: &str| WorktreeSpec {
        branch: branch.into(),
        ..f.spec("x")
    };
    let at = |path: &str| WorktreeSpec {
        path: path.into(),
        ..f.spec("x")
    };
    std::fs::create_dir(f.root.join("sub")).unwrap();
    std::os::unix::fs::symlink(f.root.join("sub"), f.state.join("into-repo")).unwrap();
    let cases = [
        wt("../x"),
        wt("-x"),
        wt("a..b"),
        wt("a\u{1b}[31mb"),
        wt("HEAD"),
        at("../x"),
        at("-x"),
        at(&f.root.join("inside").to_string_lossy()),
        at(&f.root.join(".git/wt").to_string_lossy()),
        at(&f.state.join("into-repo/wt").to_string_lossy()),
        at(&f.root.to_string_lossy()),
        WorktreeSpec {
            base: Some("-x".into()),
            ..f.spec("x")
        },
        WorktreeSpec {
            base: Some("main..other".into()),
            ..f.spec("x")
        },
        WorktreeSpec {
            base: Some("no-such-branch".into()),
            ..f.spec("x")
        },
    ];
    let mut shown = String::new();
    for spec in &cases {
        let e = f
            .repo
            .create(spec, &Preparation::default())
            .expect_err("refused");
        shown.push_str(&f.err(e));
        shown.push('\n');
    }
    let copy = Preparation {
        copy: vec!["../secret".into(), ".env".into()],
        ..Preparation::default()
    };
    shown.push_str(&f.err(f.repo.create(&f.spec("x"), &copy).unwrap_err()));
    shown.push('\n');
    let copy = Preparation {
        copy: vec!["/etc/passwd".into()],
        ..Preparation::default()
    };
    shown.push_str(&f.err(f.repo.create(&f.spec("x"), &copy).unwrap_err()));
    expect![[r#"
        invalid branch name "../x": contains ".."
        invalid branch name "-x": starts with '-' (it would read as an option)
        invalid branch name "a..b": contains ".."
        invalid branch name "a\u{1b}[31mb": contains the control character '\u{1b}'
        invalid branch name "HEAD": HEAD is reserved by git
        invalid worktree path ../x: is not absolute
        invalid worktree path -x: is not absolute
        invalid worktree path $TMP/repo/inside: is inside the repository at $TMP/repo
        invalid worktree path $TMP/repo/.git/wt: is inside the repository at $TMP/repo
        invalid worktree path $TMP/state/into-repo/wt: is inside the repository at $TMP/repo
        invalid worktree path $TMP/repo: is inside the repository at $TMP/repo
        invalid base "-x": starts with '-' (it would read as an option)
        invalid base "main..other": contains ".."
        base no-such-branch is not a commit in $TMP/repo
        invalid path to copy ../secret: contains ".."
        invalid path to copy /etc/passwd: is absolute; name a path relative to the workspace"#]]
    .assert_eq(&shown);
    // Nothing was created by any of them.
    expect![[r#"
        main
    "#]]
    .assert_eq(&f.branches());
    assert!(!f.state.join("worktrees").exists());
}

#[test]
fn create_records_branch_and_base() {
    let f = Fixture::new();
    let main = f.head(&f.root);
    let wt = f.create("claude-1");
    assert_eq!(wt.path, f.state.join("worktrees/claude-1"));
    assert_eq!(wt.branch, "orch/claude-1");
    assert_eq!(wt.base, "main");
    assert_eq!(wt.base_commit, main);
    assert_eq!(
        f.git(&wt.path, &["branch", "--show-current"]),
        "orch/claude-1\n"
    );
    assert_eq!(read(&wt.path, "a.txt"), "one\ntwo\nthree\n");

    // The same branch again is refused, by name.
    let again = WorktreeSpec {
        path: f.state.join("other"),
        ..f.spec("claude-1")
    };
    check_err(
        &f,
        f.repo.create(&again, &Preparation::default()),
        expect!["branch orch/claude-1 already exists"],
    );
    // An occupied path is refused.
    std::fs::create_dir_all(f.state.join("full")).unwrap();
    write(&f.state, "full/x", "x");
    let full = WorktreeSpec {
        path: f.state.join("full"),
        ..f.spec("other")
    };
    check_err(
        &f,
        f.repo.create(&full, &Preparation::default()),
        expect!["worktree path already exists and is not empty: $TMP/state/full"],
    );

    // A base given by name is recorded as given and resolved to its commit.
    f.git(&f.root, &["tag", "v1"]);
    write(&f.root, "a.txt", "later\n");
    f.commit_all(&f.root, "later");
    let from_tag = f
        .repo
        .create(
            &WorktreeSpec {
                base: Some("v1".into()),
                ..f.spec("tagged")
            },
            &Preparation::default(),
        )
        .unwrap()
        .worktree;
    assert_eq!(from_tag.base, "v1");
    assert_eq!(from_tag.base_commit, main);
    assert_eq!(read(&from_tag.path, "a.txt"), "one\ntwo\nthree\n");

    // A detached workspace HEAD is recorded as its commit.
    f.git(&f.root, &["checkout", "-q", "--detach"]);
    let detached = f.create("detached");
    assert_eq!(detached.base, f.head(&f.root));

    // Reuse checks an existing branch out (here after its checkout was removed).
    f.git(&f.root, &["checkout", "-q", "main"]);
    f.repo.pause(&from_tag).unwrap();
    let reused = f
        .repo
        .create(
            &WorktreeSpec {
                path: f.state.join("reused"),
                branch: from_tag.branch.clone(),
                base: Some("v1".into()),
                existing_branch: ExistingBranch::Reuse,
            },
            &Preparation::default(),
        )
        .unwrap()
        .worktree;
    assert_eq!(reused.base_commit, main);
    assert_eq!(
        f.git(&reused.path, &["branch", "--show-current"]),
        "orch/tagged\n"
    );
}

#[test]
fn no_commits_yet_is_a_clear_error() {
    let f = Fixture::new();
    let empty = f.tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    f.git(&empty, &["init", "-q"]);
    let repo = Repo::open_with(test_git(&f.tmp), &empty).unwrap();
    check_err(
        &f,
        repo.create(&f.spec("x"), &Preparation::default()),
        expect!["repository $TMP/empty has no commits yet"],
    );
}

#[test]
fn two_worktrees_edit_the_same_file_without_interference() {
    let f = Fixture::new();
    let one = f.create("one");
    let two = f.create("two");
    write(&one.path, "a.txt", "one\nTWO by one\nthree\n");
    write(&two.path, "a.txt", "ONE by two\ntwo\nthree\n");
    f.repo.commit_all(&one, "one's change").unwrap().unwrap();
    assert_eq!(read(&two.path, "a.txt"), "ONE by two\ntwo\nthree\n");
    assert_eq!(read(&f.root, "a.txt"), "one\ntwo\nthree\n");
    let d1 = f.repo.diff(&one, None, 1 << 20).unwrap();
    let d2 = f.repo.diff(&two, None, 1 << 20).unwrap();
    expect![[r#"
        diff --git a/a.txt b/a.txt
        index 4cb29ea..a1ebb96 100644
        --- a/a.txt
        +++ b/a.txt
        @@ -1,3 +1,3 @@
         one
        -two
        +TWO by one
         three
        diff --git a/a.txt b/a.txt
        index 4cb29ea..53cea15 100644
        --- a/a.txt
        +++ b/a.txt
        @@ -1,3 +1,3 @@
        -one
        +ONE by two
         two
         three
    "#]]
    .assert_eq(&format!("{}{}", d1.diff, d2.diff));
    assert_eq!(f.git(&f.root, &["status", "--porcelain"]), "");
}

#[test]
fn diff_lists_exactly_the_changes() {
    let f = Fixture::new();
    write(&f.root, "gone.txt", "1\n2\n");
    write(&f.root, "moved.txt", "a\nb\nc\nd\ne\nf\ng\nh\n");
    write(&f.root, "kept.txt", "same\n");
    f.commit_all(&f.root, "more files");
    let wt = f.create("agent");
    // Committed by the agent: a modification and a rename with an edit.
    write(&wt.path, "a.txt", "one\n2\nthree\nfour\n");
    f.git(&wt.path, &["mv", "moved.txt", "renamed.txt"]);
    write(&wt.path, "renamed.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\n");
    f.commit_all(&wt.path, "agent commit");
    // Left uncommitted: a deletion, a staged new file, untracked files with awkward names, a
    // binary file, an ignored file, and a change to a file then undone.
    std::fs::remove_file(wt.path.join("gone.txt")).unwrap();
    write(&wt.path, "staged.txt", "s\n");
    f.git(&wt.path, &["add", "staged.txt"]);
    write(&wt.path, "with space.txt", "x\ny\n");
    write(&wt.path, "new\nline.txt", "z\n");
    write(&wt.path, "dir/deep/quote\"d.txt", "q\n");
    std::fs::write(wt.path.join("image.bin"), [0u8, 1, 2, 3, 0, 255]).unwrap();
    write(&wt.path, "debug.log", "ignored\n");
    write(&wt.path, "kept.txt", "changed\n");
    write(&wt.path, "kept.txt", "same\n");
    let status_before = f.git(&wt.path, &["status", "--porcelain", "-z"]);
    let index_before = std::fs::read(f.git_dir(&wt).join("index")).unwrap();

    let d = f.repo.diff(&wt, None, 1 << 20).unwrap();
    expect![[r#"
        modified "a.txt" +2 -1
        added "dir/deep/quote\"d.txt" +1 -0
        deleted "gone.txt" +0 -2
        added "image.bin" +0 -0 binary
        added "new\nline.txt" +1 -0
        renamed "renamed.txt" (from "moved.txt") +1 -0
        added "staged.txt" +1 -0
        added "with space.txt" +2 -0
    "#]]
    .assert_eq(&show_files(&d));
    assert_eq!(d.base, "main");
    assert_eq!(d.branch, "orch/agent");
    assert_eq!(d.merge_base, wt.base_commit);
    assert!(!d.truncated);
    assert!(d
        .diff
        .contains("Binary files /dev/null and b/image.bin differ"));
    assert!(d
        .diff
        .contains("diff --git \"a/new\\nline.txt\" \"b/new\\nline.txt\""));
    assert!(d
        .diff
        .contains("rename from moved.txt\nrename to renamed.txt\n"));
    // The patch applies to the base and gives the worktree's content.
    let check = f.tmp.join("check");
    f.git(
        &f.root,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            check.to_str().unwrap(),
            "main",
        ],
    );
    std::fs::write(f.tmp.join("p.diff"), &d.diff).unwrap();
    // (A binary file's patch says only that it differs, so it cannot be applied.)
    f.git(
        &check,
        &[
            "apply",
            "--exclude=image.bin",
            f.tmp.join("p.diff").to_str().unwrap(),
        ],
    );
    assert_eq!(read(&check, "renamed.txt"), read(&wt.path, "renamed.txt"));
    assert_eq!(read(&check, "new\nline.txt"), "z\n");
    // Reading the worktree changed nothing in it: not its status, not its index.
    assert_eq!(
        f.git(&wt.path, &["status", "--porcelain", "-z"]),
        status_before
    );
    assert_eq!(
        std::fs::read(f.git_dir(&wt).join("index")).unwrap(),
        index_before
    );
    let leftovers: Vec<_> = std::fs::read_dir(f.git_dir(&wt))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("orch-"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    assert_eq!(f.repo.changed_count(&wt).unwrap(), d.files.len());

    // Against another base: only what differs from it.
    f.git(&f.root, &["branch", "later", "main"]);
    let d = f.repo.diff(&wt, Some("later"), 1 << 20).unwrap();
    assert_eq!(d.base, "later");
    check_err(
        &f,
        f.repo.diff(&wt, Some("-x"), 100),
        expect![[r#"invalid base "-x": starts with '-' (it would read as an option)"#]],
    );
    check_err(
        &f,
        f.repo.diff(&wt, Some("nope"), 100),
        expect!["base nope is not a commit in $TMP/repo"],
    );
}

#[test]
fn diff_of_an_unchanged_worktree_is_empty() {
    let f = Fixture::new();
    let wt = f.create("idle");
    let d = f.repo.diff(&wt, None, 1000).unwrap();
    assert_eq!(
        (d.files.len(), d.diff.as_str(), d.truncated),
        (0, "", false)
    );
    assert_eq!(f.repo.changed_count(&wt).unwrap(), 0);
}

#[test]
fn a_move_without_git_is_one_rename_in_the_diff_and_two_in_the_count() {
    let f = Fixture::new();
    let wt = f.create("mover");
    std::fs::rename(wt.path.join("a.txt"), wt.path.join("moved.txt")).unwrap();
    let d = f.repo.diff(&wt, None, 1 << 20).unwrap();
    expect![[r#"
        renamed "moved.txt" (from "a.txt") +0 -0
    "#]]
    .assert_eq(&show_files(&d));
    assert_eq!(f.repo.changed_count(&wt).unwrap(), 2);
}

#[test]
fn a_change_in_the_second_the_index_was_written_is_seen() {
    // git trusts a file's stat data only if the file is older than the index ("racy git").
    // Make a change the stat data cannot show (same size, same mtime, ctime not trusted) to a
    // file as old as the index: only that rule finds it, so the diff's copy of the index must
    // keep the index's time.
    let f = Fixture::new();
    f.git(&f.root, &["config", "core.trustctime", "false"]);
    let wt = f.create("racy");
    let file = wt.path.join("a.txt");
    let index = f.git_dir(&wt).join("index");
    let then = std::time::SystemTime::now() - Duration::from_secs(10);
    let touch = |path: &Path| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(then)
            .unwrap()
    };
    touch(&file);
    f.git(&wt.path, &["update-index", "-q", "--refresh"]);
    std::fs::write(&file, "ONE\ntwo\nthree\n").unwrap();
    touch(&file);
    touch(&index);
    assert_eq!(f.git(&wt.path, &["diff", "--name-only"]), "a.txt\n");
    let d = f.repo.diff(&wt, None, 1 << 20).unwrap();
    expect![[r#"
        modified "a.txt" +1 -1
    "#]]
    .assert_eq(&show_files(&d));
}

#[test]
fn diff_is_cut_at_the_limit_on_a_line_boundary() {
    let f = Fixture::new();
    let wt = f.create("big");
    let long: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    write(&wt.path, "long.txt", &long);
    write(&wt.path, "z-after.txt", "after\n");
    let full = f.repo.diff(&wt, None, 1 << 20).unwrap();
    assert!(!full.truncated);
    for limit in [0, 1, 100, 1000, 5000] {
        let d = f.repo.diff(&wt, None, limit).unwrap();
        assert!(d.truncated, "limit {limit}");
        assert!(d.diff.len() <= limit, "limit {limit}: {}", d.diff.len());
        assert!(d.diff.is_empty() || d.diff.ends_with('\n'));
        assert!(full.diff.starts_with(&d.diff));
        assert!(limit - d.diff.len() < 20, "cut at the last whole line");
        // The file list is complete whatever the limit.
        assert_eq!(d.files, full.files);
    }
    let exact = f.repo.diff(&wt, None, full.diff.len()).unwrap();
    assert!(!exact.truncated);
    assert_eq!(exact.diff, full.diff);
    // Many files and a small limit: git is stopped early, the list is still whole.
    for i in 0..300 {
        write(&wt.path, &format!("many/{i:03}.txt"), &long);
    }
    let d = f.repo.diff(&wt, None, 10_000).unwrap();
    assert!(d.truncated);
    assert_eq!(d.files.len(), 302);
}

#[test]
fn commit_all_commits_everything_as_orch() {
    let f = Fixture::new();
    let wt = f.create("agent");
    assert_eq!(f.repo.commit_all(&wt, "nothing").unwrap(), None);
    write(&wt.path, "a.txt", "changed\n");
    write(&wt.path, "new.txt", "new\n");
    write(&wt.path, "x.log", "ignored\n");
    let commit = f.repo.commit_all(&wt, "agent work").unwrap().unwrap();
    assert_eq!(commit, f.head(&wt.path));
    expect![[r#"
        orch <orch@localhost> / orch <orch@localhost>: agent work

         a.txt   | 4 +---
         new.txt | 1 +
         2 files changed, 2 insertions(+), 3 deletions(-)
    "#]]
    .assert_eq(&f.git(
        &wt.path,
        &[
            "show",
            "--stat",
            "--format=%an <%ae> / %cn <%ce>: %s",
            "HEAD",
        ],
    ));
    assert_eq!(f.git(&wt.path, &["status", "--porcelain"]), "");
    check_err(
        &f,
        f.repo.commit_all(&wt, "  "),
        expect!["the commit message is empty"],
    );
    // A worktree switched to another branch is not committed to behind its branch's back.
    f.git(&wt.path, &["checkout", "-q", "--detach"]);
    write(&wt.path, "a.txt", "detached\n");
    check_err(
        &f,
        f.repo.commit_all(&wt, "x"),
        expect![
            "worktree $TMP/state/worktrees/agent is not on branch orch/agent (HEAD is detached)"
        ],
    );
}

#[test]
fn squash_merge_lands_one_commit_with_the_worktrees_content() {
    let f = Fixture::new();
    let wt = f.create("agent");
    write(&wt.path, "a.txt", "one\ntwo\nthree\nfour\n");
    f.commit_all(&wt.path, "first");
    write(&wt.path, "c.txt", "sea\n");
    f.commit_all(&wt.path, "second");
    write(&wt.path, "b.txt", "bee changed\n");
    f.repo.commit_all(&wt, "uncommitted work").unwrap();
    let before = f.head(&f.root);
    let merged = f
        .repo
        .merge(&wt, Strategy::Squash, Some("Land agent's work"))
        .unwrap();
    assert_eq!(merged.commit, f.head(&f.root));
    assert_eq!(
        f.git(
            &f.root,
            &["rev-list", "--count", &format!("{before}..HEAD")]
        ),
        "1\n"
    );
    assert_eq!(f.git(&f.root, &["rev-parse", "HEAD^"]).trim(), before);
    assert_eq!(
        f.git(&f.root, &["rev-parse", "HEAD^{tree}"]),
        f.git(&f.root, &["rev-parse", "orch/agent^{tree}"])
    );
    assert_eq!(
        f.git(&f.root, &["log", "-1", "--format=%s"]),
        "Land agent's work\n"
    );
    assert_eq!(f.git(&f.root, &["status", "--porcelain"]), "");
    expect![[r#"
        [
            "a.txt",
            "b.txt",
            "c.txt",
        ]
    "#]]
    .assert_debug_eq(&merged.files);
    // The branch's commits are not in main, but their content is: nothing unmerged.
    let unmerged = f.repo.has_unmerged_work(&wt).unwrap();
    assert_eq!(
        (unmerged.commits, unmerged.landed, unmerged.exists()),
        (3, true, false)
    );
    check_err(
        &f,
        f.repo.merge(&wt, Strategy::Squash, None),
        expect!["branch orch/agent has nothing to merge into main"],
    );
}

#[test]
fn merge_makes_a_merge_commit() {
    let f = Fixture::new();
    let wt = f.create("agent");
    write(&wt.path, "c.txt", "sea\n");
    f.repo.commit_all(&wt, "add c").unwrap();
    write(&f.root, "b.txt", "bee on main\n");
    f.commit_all(&f.root, "main moves on");
    let before = f.head(&f.root);
    let merged = f.repo.merge(&wt, Strategy::Merge, None).unwrap();
    let parents = f.git(&f.root, &["log", "-1", "--format=%P %s"]);
    assert_eq!(
        parents,
        format!("{before} {} Merge branch 'orch/agent'\n", f.head(&wt.path))
    );
    expect![[r#"
        [
            "c.txt",
        ]
    "#]]
    .assert_debug_eq(&merged.files);
    // Merged, so nothing is unmerged; and merging again has nothing to do.
    assert!(!f.repo.has_unmerged_work(&wt).unwrap().exists());
    check_err(
        &f,
        f.repo.merge(&wt, Strategy::Merge, None),
        expect!["branch orch/agent has nothing to merge into main"],
    );
    // Even a fast-forward gets a merge commit, with the message asked for.
    write(&wt.path, "d.txt", "dee\n");
    f.repo.commit_all(&wt, "add d").unwrap();
    f.git(&wt.path, &["merge", "-q", "main"]);
    f.repo.merge(&wt, Strategy::Merge, Some("Merge d")).unwrap();
    assert_eq!(f.git(&f.root, &["log", "-1", "--format=%s"]), "Merge d\n");
    assert_eq!(
        f.git(&f.root, &["log", "-1", "--format=%P"])
            .split(' ')
            .count(),
        2
    );
}

#[test]
fn rebase_replays_the_branch_and_fast_forwards() {
    let f = Fixture::new();
    let wt = f.create("agent");
    write(&wt.path, "c.txt", "sea\n");
    f.repo.commit_all(&wt, "add c").unwrap();
    write(&wt.path, "a.txt", "one\ntwo\nthree\nfour\n");
    f.repo.commit_all(&wt, "extend a").unwrap();
    write(&f.root, "b.txt", "bee on main\n");
    f.commit_all(&f.root, "main moves on");
    let merged = f.repo.merge(&wt, Strategy::Rebase, None).unwrap();
    assert_eq!(merged.commit, f.head(&wt.path));
    assert_eq!(merged.commit, f.head(&f.root));
    // Linear: the agent's commits on top of main's, no merge commit.
    expect![[r#"
        extend a (orch / orch)
        add c (orch / orch)
        main moves on (Person / Person)
        initial (Person / Person)
    "#]]
    .assert_eq(&f.git(&f.root, &["log", "--format=%s (%an / %cn)"]));
    assert_eq!(f.git(&f.root, &["rev-list", "--merges", "HEAD"]), "");
    expect![[r#"
        [
            "a.txt",
            "c.txt",
        ]
    "#]]
    .assert_debug_eq(&merged.files);
    // Uncommitted work in the worktree stops a rebase before it starts.
    write(&wt.path, "d.txt", "dee\n");
    f.repo.commit_all(&wt, "add d").unwrap();
    write(&wt.path, "c.txt", "changed\n");
    check_err(
        &f,
        f.repo.merge(&wt, Strategy::Rebase, None),
        expect!["uncommitted changes in $TMP/state/worktrees/agent: c.txt"],
    );
}

#[test]
fn a_conflict_leaves_the_workspace_untouched_and_names_the_file() {
    for strategy in [Strategy::Merge, Strategy::Squash, Strategy::Rebase] {
        let f = Fixture::new();
        let wt = f.create("agent");
        write(&wt.path, "a.txt", "one\nTWO from agent\nthree\n");
        write(&wt.path, "c.txt", "clean addition\n");
        f.repo.commit_all(&wt, "agent").unwrap();
        write(&f.root, "a.txt", "one\nTWO from main\nthree\n");
        f.commit_all(&f.root, "main");
        // The person has unrelated work in progress: it must survive the aborted merge.
        write(&f.root, "b.txt", "bee, being edited\n");
        write(&f.root, "notes.txt", "untracked notes\n");
        let before = f.snapshot(&f.root);
        let wt_before = f.snapshot(&wt.path);
        let e = f.repo.merge(&wt, strategy, None).unwrap_err();
        assert_eq!(f.err(e), "merge conflict in a.txt", "{strategy:?}");
        assert_eq!(f.snapshot(&f.root), before, "{strategy:?}");
        assert_eq!(f.snapshot(&wt.path), wt_before, "{strategy:?}");
        assert!(
            !f.root.join(".git/MERGE_HEAD").exists() && !f.root.join(".git/SQUASH_MSG").exists()
        );
    }
}

#[test]
fn merge_refuses_what_would_lose_the_persons_work() {
    let f = Fixture::new();
    let wt = f.create("agent");
    write(&wt.path, "a.txt", "agent\n");
    write(&wt.path, "new.txt", "agent's new file\n");
    f.repo.commit_all(&wt, "agent").unwrap();

    // Uncommitted changes to a file the merge writes, and an untracked file it would replace.
    write(&f.root, "a.txt", "person's edit\n");
    write(&f.root, "new.txt", "person's own new file\n");
    let before = f.snapshot(&f.root);
    for s in [Strategy::Merge, Strategy::Squash, Strategy::Rebase] {
        let e = f.repo.merge(&wt, s, None).unwrap_err();
        assert_eq!(
            f.err(e),
            "uncommitted changes in $TMP/repo that the merge would overwrite: a.txt, new.txt",
            "{s:?}"
        );
    }
    assert_eq!(f.snapshot(&f.root), before);
    f.git(&f.root, &["checkout", "--", "a.txt"]);
    std::fs::remove_file(f.root.join("new.txt")).unwrap();

    // Staged changes elsewhere would be swept into a merge commit.
    write(&f.root, "b.txt", "staged\n");
    f.git(&f.root, &["add", "b.txt"]);
    check_err(
        &f,
        f.repo.merge(&wt, Strategy::Squash, None),
        expect!["changes staged in $TMP/repo would be committed with the merge: b.txt"],
    );
    f.git(&f.root, &["reset", "-q", "--hard"]);

    // The base must be what the workspace has checked out.
    f.git(&f.root, &["checkout", "-q", "-b", "feature"]);
    check_err(
        &f,
        f.repo.merge(&wt, Strategy::Merge, None),
        expect!["base branch main is not checked out in $TMP/repo (it has feature)"],
    );
    f.git(&f.root, &["checkout", "-q", "--detach"]);
    check_err(
        &f,
        f.repo.merge(&wt, Strategy::Merge, None),
        expect!["base branch main is not checked out in $TMP/repo (HEAD is detached)"],
    );
    f.git(&f.root, &["checkout", "-q", "main"]);

    // A base that is not a local branch has nowhere to land.
    let tagged = Worktree {
        base: "v-none".into(),
        ..wt.clone()
    };
    check_err(
        &f,
        f.repo.merge(&tagged, Strategy::Merge, None),
        expect!["base v-none is not a local branch, so there is nothing to merge into"],
    );

    // Unrelated uncommitted work does not stop a merge, and survives it.
    write(&f.root, "b.txt", "unrelated edit\n");
    f.repo.merge(&wt, Strategy::Merge, None).unwrap();
    assert_eq!(read(&f.root, "b.txt"), "unrelated edit\n");
    assert_eq!(read(&f.root, "a.txt"), "agent\n");
}

#[test]
fn discard_reports_unmerged_work_then_removes_everything() {
    let f = Fixture::new();
    let wt = f.create("agent");
    assert!(!f.repo.has_unmerged_work(&wt).unwrap().exists());

    write(&wt.path, "scratch.txt", "untracked\n");
    let work = f.repo.has_unmerged_work(&wt).unwrap();
    assert!(work.exists());
    expect![[r#"
        UnmergedWork {
            commits: 0,
            landed: false,
            uncommitted: [
                "scratch.txt",
            ],
        }
    "#]]
    .assert_debug_eq(&work);

    f.repo.commit_all(&wt, "agent").unwrap();
    write(&wt.path, "a.txt", "edited\n");
    let work = f.repo.has_unmerged_work(&wt).unwrap();
    assert_eq!(
        (work.commits, work.landed, work.uncommitted.len()),
        (1, false, 1)
    );

    f.repo.discard(&wt).unwrap();
    assert!(!wt.path.exists());
    assert_eq!(f.branches(), "main\n");
    assert_eq!(
        f.repo.reconcile(std::slice::from_ref(&wt)).unwrap(),
        [Found::Gone]
    );
    // Discarding again is fine.
    f.repo.discard(&wt).unwrap();
}

#[test]
fn pause_and_resume_keep_the_branch_and_its_commits() {
    let f = Fixture::new();
    write(&f.root, ".env", "SECRET=1\n");
    let prep = Preparation {
        copy: vec![".env".into()],
        ..Preparation::default()
    };
    let created = f.repo.create(&f.spec("agent"), &prep).unwrap();
    let wt = created.worktree;
    write(&wt.path, "c.txt", "sea\n");
    check_err(
        &f,
        f.repo.pause(&wt),
        expect!["uncommitted changes in $TMP/state/worktrees/agent: c.txt"],
    );
    assert!(wt.path.exists());

    // The copied .env is ignored (as such files are): not committed, and not in the way of a
    // pause, which removes it with the checkout; resume copies it again.
    f.repo.commit_all(&wt, "agent").unwrap();
    let tip = f.head(&wt.path);
    f.repo.pause(&wt).unwrap();
    assert!(!wt.path.exists());
    assert_eq!(f.git(&f.root, &["rev-parse", "orch/agent"]).trim(), tip);
    assert_eq!(
        f.repo.reconcile(std::slice::from_ref(&wt)).unwrap(),
        [Found::Paused]
    );
    f.repo.pause(&wt).unwrap();

    // Paused, its work can still be reviewed.
    let d = f.repo.diff(&wt, None, 1 << 20).unwrap();
    expect![[r#"
        added "c.txt" +1 -0
    "#]]
    .assert_eq(&show_files(&d));
    assert_eq!(f.repo.changed_count(&wt).unwrap(), d.files.len());
    assert_eq!(f.repo.has_unmerged_work(&wt).unwrap().commits, 1);

    let resumed = f.repo.resume(&wt, &prep).unwrap();
    assert_eq!(resumed.worktree, wt);
    assert_eq!(f.head(&wt.path), tip);
    assert_eq!(read(&wt.path, "c.txt"), "sea\n");
    assert_eq!(read(&wt.path, ".env"), "SECRET=1\n");
    assert_eq!(
        f.git(&wt.path, &["branch", "--show-current"]),
        "orch/agent\n"
    );
    assert_eq!(
        f.repo.reconcile(std::slice::from_ref(&wt)).unwrap(),
        [Found::CheckedOut]
    );
    // Resuming a checked-out worktree does nothing.
    f.repo.resume(&wt, &prep).unwrap();
}

#[test]
fn setup_failure_leaves_nothing_behind() {
    let f = Fixture::new();
    let failing = Preparation {
        setup: vec![
            vec!["sh".into(), "-c".into(), "echo ok > ran-first".into()],
            vec![
                "sh".into(),
                "-c".into(),
                "echo preparing; echo 'cannot build' >&2; exit 3".into(),
            ],
        ],
        ..Preparation::default()
    };
    let spec = f.spec("agent");
    check_err(
        &f,
        f.repo.create(&spec, &failing),
        expect![[r#"
        setup command `sh -c "echo preparing; echo 'cannot build' >&2; exit 3"` failed (exit code 3): preparing
        cannot build"#]],
    );
    assert!(!spec.path.exists());
    assert_eq!(f.branches(), "main\n");
    assert_eq!(
        f.git(&f.root, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );

    let slow = Preparation {
        setup: vec![vec![
            "sh".into(),
            "-c".into(),
            "echo started; sleep 30".into(),
        ]],
        setup_timeout: Duration::from_millis(300),
        ..Preparation::default()
    };
    let started = std::time::Instant::now();
    check_err(
        &f,
        f.repo.create(&spec, &slow),
        expect![[
            r#"setup command `sh -c "echo started; sleep 30"` timed out after 0.3s: started"#
        ]],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!spec.path.exists());
    assert_eq!(f.branches(), "main\n");

    let missing = Preparation {
        setup: vec![vec!["/no/such/program".into()]],
        ..Preparation::default()
    };
    check_err(&f, f.repo.create(&spec, &missing), expect!["setup command `/no/such/program` could not start: No such file or directory (os error 2)"]);
    assert_eq!(f.branches(), "main\n");

    // A setup that succeeds runs in the new checkout, with git pointed at it.
    let ok = Preparation {
        setup: vec![vec![
            "sh".into(),
            "-c".into(),
            "git rev-parse --show-toplevel > toplevel; echo done".into(),
        ]],
        ..Preparation::default()
    };
    let created = f.repo.create(&spec, &ok).unwrap();
    assert_eq!(
        read(&spec.path, "toplevel").trim(),
        spec.path.to_str().unwrap()
    );
    expect![[r#"
        [
            "setup `sh -c \"git rev-parse --show-toplevel > toplevel; echo done\"`:\ndone",
        ]
    "#]]
    .assert_debug_eq(&created.notes);
}

#[test]
fn named_files_are_copied_in() {
    let f = Fixture::new();
    write(&f.root, ".env", "SECRET=1\n");
    std::fs::set_permissions(f.root.join(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&f.root, "conf/local/a.toml", "a = 1\n");
    write(&f.root, "conf/local/sub/run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        f.root.join("conf/local/sub/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("a.toml", f.root.join("conf/local/link")).unwrap();
    let prep = Preparation {
        copy: vec![
            ".env".into(),
            "conf/local".into(),
            "missing.txt".into(),
            "a.txt".into(),
        ],
        ..Preparation::default()
    };
    let created = f.repo.create(&f.spec("agent"), &prep).unwrap();
    let wt = &created.worktree.path;
    let mode = |rel: &str| {
        std::fs::metadata(wt.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(read(wt, ".env"), "SECRET=1\n");
    assert_eq!(mode(".env"), 0o600);
    assert_eq!(read(wt, "conf/local/a.toml"), "a = 1\n");
    assert_eq!(mode("conf/local/sub/run.sh"), 0o755);
    assert_eq!(
        std::fs::read_link(wt.join("conf/local/link")).unwrap(),
        Path::new("a.toml")
    );
    assert_eq!(created.copied, [PathBuf::from(".env"), "conf/local".into()]);
    expect![[r#"
        copy: missing.txt is not in $TMP/repo, skipped
        copy: a.txt is already in the worktree (tracked), not copied"#]]
    .assert_eq(
        &created
            .notes
            .join("\n")
            .replace(&*f.tmp.to_string_lossy(), "$TMP"),
    );
}

#[test]
fn reconcile_after_a_restart() {
    let f = Fixture::new();
    let live = f.create("live");
    let paused = f.create("paused");
    let vanished = f.create("vanished");
    let gone = f.create("gone");
    let switched = f.create("switched");
    f.repo.pause(&paused).unwrap();
    // Its directory deleted behind git's back: git's entry is pruned, the branch remains.
    std::fs::remove_dir_all(&vanished.path).unwrap();
    f.repo.discard(&gone).unwrap();
    f.git(&switched.path, &["checkout", "-q", "-b", "elsewhere"]);
    let found = f
        .repo
        .reconcile(&[live, paused, vanished.clone(), gone, switched])
        .unwrap();
    expect![[r#"
        [
            CheckedOut,
            Paused,
            Paused,
            Gone,
            OnOtherBranch(
                Some(
                    "elsewhere",
                ),
            ),
        ]
    "#]]
    .assert_debug_eq(&found);
    assert!(!f
        .git(&f.root, &["worktree", "list", "--porcelain"])
        .contains("vanished"));
    // And the vanished one can be resumed where it was.
    f.repo.resume(&vanished, &Preparation::default()).unwrap();
    assert!(vanished.path.join("a.txt").exists());
}

impl Fixture {
    /// The worktree's private git directory.
    fn git_dir(&self, wt: &Worktree) -> PathBuf {
        PathBuf::from(
            self.git(&wt.path, &["rev-parse", "--absolute-git-dir"])
                .trim(),
        )
    }
}
