//! Running the `git` binary: argv only (never a shell), stdin closed, in a given directory, with
//! an environment that cannot send git elsewhere or make it wait for a person. Every failure
//! becomes a [`GitError`] that shows the command and the end of what git said.
//!
//! The environment: every inherited `GIT_*` variable is removed except the ones that choose
//! configuration files ([`keep_inherited`]) — `GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE` and
//! friends are set by hooks and by `git rebase --exec`, and a daemon started from one would
//! otherwise act on another repository. Then `LC_ALL=C` (messages are matched in English),
//! `GIT_TERMINAL_PROMPT=0` and a no-op editor (nothing waits on a terminal), and
//! `GIT_OPTIONAL_LOCKS=0` (reading a worktree never takes the lock an agent's own `git` needs).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use super::parse;
use super::GitError;

/// Inherited `GIT_*` variables kept: they choose which configuration files git reads (a person's
/// setup, or a test's isolation), not which repository it works on.
const KEEP: &[&str] = &[
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_EXEC_PATH",
];

/// How much of git's stderr an error keeps.
const ERROR_TAIL_BYTES: usize = 2_000;
const ERROR_TAIL_LINES: usize = 12;

/// Whether an inherited environment variable is passed on to git and to setup commands.
pub fn keep_inherited(key: &OsStr) -> bool {
    let key = key.as_encoded_bytes();
    !key.starts_with(b"GIT_") || KEEP.iter().any(|k| k.as_bytes() == key)
}

/// The git program and the environment every command gets.
#[derive(Debug, Clone)]
pub struct Git {
    program: OsString,
    /// Variables set on every command after the inherited ones are filtered (tests isolate
    /// themselves from the person's configuration with these).
    extra_env: Vec<(OsString, OsString)>,
}

impl Default for Git {
    fn default() -> Self {
        Self {
            program: "git".into(),
            extra_env: Vec::new(),
        }
    }
}

impl Git {
    /// Run `program` instead of `git` from `PATH`, with `env` added to every command.
    pub fn new(program: impl Into<OsString>, env: Vec<(OsString, OsString)>) -> Self {
        Self {
            program: program.into(),
            extra_env: env,
        }
    }

    /// A git command to run in `dir`.
    pub fn at<'a>(&'a self, dir: &'a Path) -> Call<'a> {
        Call {
            git: self,
            dir,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// A command that runs `argv` with the same environment rules (setup commands).
    pub fn command(&self, argv0: &OsStr, dir: &Path) -> Command {
        let mut cmd = Command::new(argv0);
        cmd.current_dir(dir).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if !keep_inherited(&key) {
                cmd.env_remove(key);
            }
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// One git command being built.
pub struct Call<'a> {
    git: &'a Git,
    dir: &'a Path,
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
}

impl Call<'_> {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set a variable for this command only (`GIT_INDEX_FILE`, an identity).
    pub fn env(mut self, key: &'static str, value: impl Into<OsString>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// The command as shown in errors.
    pub fn display(&self) -> String {
        parse::display_command(&self.git.program, &self.args)
    }

    fn command(&self) -> Command {
        let mut cmd = self.git.command(&self.git.program, self.dir);
        cmd.args(&self.args)
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", ":")
            .env("GIT_SEQUENCE_EDITOR", ":")
            .env("GIT_MERGE_AUTOEDIT", "no")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_ADVICE", "0");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run to the end and return its output whatever the exit status.
    pub fn output(&self) -> Result<Output, GitError> {
        self.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| self.spawn_error(e))
    }

    /// Run; its stdout if it succeeded, else an error with its stderr.
    pub fn run(&self) -> Result<Vec<u8>, GitError> {
        let out = self.output()?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failed(out.status, &out.stderr))
        }
    }

    /// Run; stdout as one trimmed line of text.
    pub fn line(&self) -> Result<String, GitError> {
        let out = self.run()?;
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }

    /// Run a command that answers with its exit status: 0 is yes, 1 is no, anything else fails.
    pub fn test(&self) -> Result<bool, GitError> {
        let out = self.output()?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failed(out.status, &out.stderr)),
        }
    }

    /// Run with stdout piped for the caller to read as it comes (stderr is collected by
    /// [`Streaming::finish`]).
    pub fn spawn(&self) -> Result<Streaming, GitError> {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let mut stderr = child.stderr.take().expect("piped");
        // stderr is read on its own thread so a chatty git never blocks on a full pipe while the
        // caller reads stdout.
        let errors = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        Ok(Streaming {
            display: self.display(),
            child,
            errors: Some(errors),
        })
    }

    /// The error for a command that exited unsuccessfully.
    pub fn failed(&self, status: ExitStatus, stderr: &[u8]) -> GitError {
        GitError::Command {
            command: self.display(),
            status: describe(status),
            stderr: parse::tail(stderr, ERROR_TAIL_BYTES, ERROR_TAIL_LINES),
        }
    }

    fn spawn_error(&self, source: std::io::Error) -> GitError {
        GitError::Spawn {
            program: PathBuf::from(&self.git.program),
            dir: self.dir.to_owned(),
            source,
        }
    }
}

/// A git command whose stdout is read as it comes.
pub struct Streaming {
    display: String,
    child: Child,
    errors: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Streaming {
    pub fn stdout(&mut self) -> &mut std::process::ChildStdout {
        self.child.stdout.as_mut().expect("piped")
    }

    /// Stop it early: the caller has read all it wants.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.errors.take() {
            let _ = t.join();
        }
    }

    /// Wait for it; an error with its stderr unless it succeeded.
    pub fn finish(mut self) -> Result<(), GitError> {
        let status = self.child.wait().map_err(|source| GitError::Io {
            what: format!("waiting for {}", self.display),
            source,
        })?;
        let stderr = self
            .errors
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(GitError::Command {
                command: self.display.clone(),
                status: describe(status),
                stderr: parse::tail(&stderr, ERROR_TAIL_BYTES, ERROR_TAIL_LINES),
            })
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if self.errors.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An exit status in words: `exit code 1`, `killed by signal 9`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn what_every_git_command_is_given() {
        let git = Git::new("git", vec![("HOME".into(), "/tmp/home".into())]);
        let call = git
            .at(Path::new("/repo"))
            .args(["diff", "--cached"])
            .env("GIT_INDEX_FILE", "/repo/.git/orch-index-1-0");
        let cmd = call.command();
        let mut set: Vec<String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
            .collect();
        set.sort();
        expect![[r#"
            "git" in "/repo": git diff --cached
            GIT_ADVICE=0
            GIT_EDITOR=:
            GIT_INDEX_FILE=/repo/.git/orch-index-1-0
            GIT_MERGE_AUTOEDIT=no
            GIT_OPTIONAL_LOCKS=0
            GIT_SEQUENCE_EDITOR=:
            GIT_TERMINAL_PROMPT=0
            HOME=/tmp/home
            LANGUAGE=C
            LC_ALL=C"#]]
        .assert_eq(&format!(
            "{:?} in {:?}: {}\n{}",
            cmd.get_program(),
            cmd.get_current_dir().unwrap(),
            call.display(),
            set.join("\n")
        ));
    }

    #[test]
    fn inherited_git_variables_are_dropped_but_config_selectors() {
        let shown: String = [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_COMMON_DIR",
            "GIT_CONFIG_PARAMETERS",
            "GIT_CONFIG_COUNT",
            "GIT_EXTERNAL_DIFF",
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_NOSYSTEM",
            "GIT_EXEC_PATH",
            "HOME",
            "PATH",
            "MY_GIT_DIR",
        ]
        .iter()
        .map(|k| format!("{k}: {}\n", keep_inherited(OsStr::new(k))))
        .collect();
        expect![[r#"
            GIT_DIR: false
            GIT_WORK_TREE: false
            GIT_INDEX_FILE: false
            GIT_OBJECT_DIRECTORY: false
            GIT_COMMON_DIR: false
            GIT_CONFIG_PARAMETERS: false
            GIT_CONFIG_COUNT: false
            GIT_EXTERNAL_DIFF: false
            GIT_CONFIG_GLOBAL: true
            GIT_CONFIG_NOSYSTEM: true
            GIT_EXEC_PATH: true
            HOME: true
            PATH: true
            MY_GIT_DIR: true
        "#]]
        .assert_eq(&shown);
    }
}
