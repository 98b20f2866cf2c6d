//! Tests of the tmux backend against real tmux servers. Each test runs its own server on a
//! unique socket (`tmux -L`), started with no configuration file and killed when the test ends,
//! whether it passed or not. Conditions are awaited with deadlines, never with fixed sleeps.

use std::process::Output;
use std::sync::atomic::AtomicUsize;
use std::sync::Condvar;

use tempfile::TempDir;

use super::*;
use crate::fanout::OutputChunk;

/// Longest wait for anything a test expects tmux or a program to do.
const DEADLINE: Duration = Duration::from_secs(10);

/// The tmux server of one test; killed on drop.
struct Isolated {
    /// The server's socket name.
    socket: String,
    /// Working directory and logs of the test's programs.
    dir: TempDir,
}

impl Isolated {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let socket = format!("orch-test-{}-{tag}-{n}", std::process::id());
        Self {
            socket,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> TmuxConfig {
        TmuxConfig {
            tmux: vec!["tmux".into(), "-f".into(), "/dev/null".into()],
            socket_name: self.socket.clone(),
            session: "ws".into(),
            ssh: Vec::new(),
        }
    }

    fn backend(&self) -> TmuxBackend {
        TmuxBackend::new(self.config())
    }

    /// Run a tmux command on this server, outside the backend.
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap()
    }

    fn window_names(&self) -> Vec<String> {
        let out = self.tmux(&["list-windows", "-t", "=ws", "-F", "#{window_name}"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn spec(&self, id: &str, name: &str, command: &[&str]) -> TerminalSpec {
        TerminalSpec {
            id: id.into(),
            name: name.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            cwd: self.dir.path().to_owned(),
            env: vec![("PS1".into(), "$ ".into())],
            cols: 80,
            rows: 24,
            log_path: self.dir.path().join(format!("logs/{id}.log")),
            scrollback: 1000,
            log_limit: super::LOG_LIMIT,
        }
    }

    fn log(&self, id: &str) -> String {
        let path = self.dir.path().join(format!("logs/{id}.log"));
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        // kill-server returns before the server is gone and leaves the socket file: wait for
        // the server to stop answering, then remove the file.
        let deadline = Instant::now() + DEADLINE;
        while self.tmux(&["has-session"]).status.success() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let dir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let _ = std::fs::remove_file(
            Path::new(&dir)
                .join(format!("tmux-{uid}"))
                .join(&self.socket),
        );
    }
}

/// What an observer was told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Output(String),
    Exited(String, Option<i32>),
}

/// An observer that records everything.
#[derive(Default)]
struct Recorder {
    /// Everything seen, in order.
    seen: Mutex<Vec<Seen>>,
    /// Wakes waiters.
    changed: Condvar,
}

impl TerminalObserver for Recorder {
    fn output(&self, id: &str) {
        self.seen.lock().unwrap().push(Seen::Output(id.into()));
        self.changed.notify_all();
    }

    fn exited(&self, id: &str, exit_code: Option<i32>) {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Exited(id.into(), exit_code));
        self.changed.notify_all();
    }
}

impl Recorder {
    /// Wait until terminal `id` is reported exited; its code.
    fn exit_of(&self, id: &str) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = self.seen.lock().unwrap();
        loop {
            let exits: Vec<Option<i32>> = seen
                .iter()
                .filter_map(|s| match s {
                    Seen::Exited(i, code) if i == id => Some(*code),
                    _ => None,
                })
                .collect();
            if let Some(code) = exits.first() {
                assert_eq!(
                    exits.len(),
                    1,
                    "terminal {id} reported exited more than once"
                );
                return *code;
            }
            let left = deadline.checked_duration_since(Instant::now());
            let Some(left) = left else {
                panic!("terminal {id} was not reported exited")
            };
            seen = self.changed.wait_timeout(seen, left).unwrap().0;
        }
    }

    fn saw_output(&self, id: &str) -> bool {
        self.seen.lock().unwrap().contains(&Seen::Output(id.into()))
    }
}

/// Poll `check` until it returns `Some`, or fail naming `what`.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the terminal's screen has a line for which `pred` holds; the screen's lines.
fn wait_screen(term: &dyn Terminal, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
    wait_for(what, || {
        let screen = term.screen(100).ok()?;
        screen.lines.iter().any(|l| pred(l)).then_some(screen.lines)
    })
}

fn bash() -> [&'static str; 3] {
    ["bash", "--norc", "--noprofile"]
}

#[test]
fn spawned_bash_computes_and_window_is_named_after_the_agent() {
    let srv = Isolated::new("echo");
    let backend = srv.backend();
    assert_eq!(backend.name(), "tmux");
    let obs = Arc::new(Recorder::default());
    let term = backend
        .spawn(srv.spec("t-1", "agent-one", &bash()), obs.clone())
        .unwrap();
    let sub = term.subscribe();

    term.write(b"echo $((6*7))\r").unwrap();
    wait_screen(&*term, "42 on the screen", |l| l == "42");

    assert!(
        srv.window_names().contains(&"agent-one".to_owned()),
        "{:?}",
        srv.window_names()
    );
    assert!(term.handle().unwrap().starts_with('%'));
    assert!(term.pid().is_some());
    assert!(term.alive());
    assert!(obs.saw_output("t-1"));
    wait_for("42 in the log", || {
        srv.log("t-1").contains("42\r\n").then_some(())
    });
    let mut streamed = String::new();
    wait_for("42 in the subscription", || {
        while let Some(OutputChunk::Data(d)) = sub.try_take() {
            streamed.push_str(&d);
        }
        streamed.contains("42\r\n").then_some(())
    });

    let screen = term.screen(0).unwrap();
    assert_eq!((screen.cols, screen.rows), (80, 24));
    assert!(screen.ansi.starts_with("\x1b[0m\x1b[H\x1b[2J"));
    let cursor = format!("\x1b[{};{}H", screen.cursor_row + 1, screen.cursor_col + 1);
    assert!(screen.ansi.ends_with(&cursor), "{:?}", screen.ansi);
    assert!(screen.ansi.contains("42"));

    term.close().unwrap();
    wait_for("the window closed", || {
        (!srv.window_names().contains(&"agent-one".to_owned())).then_some(())
    });
    assert!(!term.alive());
}

#[test]
fn text_cannot_inject_tmux_commands() {
    let srv = Isolated::new("inject");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let payload = "hello' ; new-window -d -n INJECTED 'sleep 99";
    let term = backend
        .spawn(srv.spec("t-cat", "cat", &["cat"]), obs.clone())
        .unwrap();

    term.write(format!("{payload}\r").as_bytes()).unwrap();
    // The tty echoes the line and cat prints it again: two copies once cat has it.
    wait_for("cat to print the payload back", || {
        let lines = term.screen(0).ok()?.lines;
        (lines.iter().filter(|l| *l == payload).count() == 2).then_some(())
    });
    let tricky = "a\"b $HOME #{session_name} #(id) \\ ~ {;} é🦀 \\n end";
    term.paste(&format!("{tricky}\n")).unwrap();
    wait_for("cat to print the pasted text back", || {
        let lines = term.screen(0).ok()?.lines;
        (lines.iter().filter(|l| *l == tricky).count() == 2).then_some(())
    });
    assert!(
        !srv.window_names().iter().any(|n| n.contains("INJECTED")),
        "{:?}",
        srv.window_names()
    );
    wait_for("payload verbatim in the log", || {
        let log = srv.log("t-cat");
        (log.contains(&format!("{payload}\r\n")) && log.contains(&format!("{tricky}\r\n")))
            .then_some(())
    });

    // Arguments, names, directories and environment reach tmux verbatim too.
    let odd_dir = srv.dir.path().join("dir #{session_name} $HOME 'q'");
    std::fs::create_dir(&odd_dir).unwrap();
    let mut spec = srv.spec(
        "t-args",
        "name #{session_name} #(id)",
        &[
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            "printf '<%s>\\n' \"$1\" \"$PWD\" \"$X\"; exec cat",
            "-",
            payload,
        ],
    );
    spec.cwd = odd_dir.clone();
    spec.env.push(("X".into(), "x; $HOME #{host}\nline".into()));
    let args = backend.spawn(spec, obs.clone()).unwrap();
    let want = [
        format!("<{payload}>"),
        format!("<{}>", odd_dir.display()),
        "<x; $HOME #{host}".into(),
    ];
    wait_for("arguments printed verbatim", || {
        let lines = args.screen(0).ok()?.lines;
        want.iter().all(|w| lines.contains(w)).then_some(())
    });
    assert!(srv
        .window_names()
        .contains(&"name #{session_name} #(id)".to_owned()));
    assert!(!srv.window_names().iter().any(|n| n.contains("INJECTED")));
}

#[test]
fn paste_is_bracketed_only_when_the_program_asks() {
    let srv = Isolated::new("paste");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let plain = backend
        .spawn(srv.spec("t-plain", "plain", &["cat", "-v"]), obs.clone())
        .unwrap();
    let bracketed = backend
        .spawn(
            srv.spec(
                "t-br",
                "bracketed",
                &[
                    "sh",
                    "-c",
                    "stty -echo; printf '\\033[?2004hready\\n'; exec cat -v",
                ],
            ),
            obs.clone(),
        )
        .unwrap();
    wait_screen(&*bracketed, "the program ready", |l| l == "ready");
    plain.paste("one\n").unwrap();
    bracketed.paste("two\n").unwrap();
    wait_screen(&*plain, "plain paste", |l| l == "one");
    wait_screen(&*bracketed, "bracketed paste", |l| l == "^[[200~two");
    // Text cannot end the bracketed paste early to smuggle keystrokes in.
    bracketed.paste("a\x1b[201~b\n").unwrap();
    wait_screen(&*bracketed, "escape removed", |l| {
        l == "^[[201~^[[200~a[201~b"
    });
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let srv = Isolated::new("exit");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let three = backend
        .spawn(
            srv.spec("t-3", "three", &["bash", "-c", "exit 3"]),
            obs.clone(),
        )
        .unwrap();
    assert_eq!(obs.exit_of("t-3"), Some(3));
    assert!(!three.alive());
    assert!(matches!(three.write(b"x"), Err(BackendError::Gone { .. })));
    let sub = three.subscribe();
    assert_eq!(sub.try_take(), Some(OutputChunk::Closed));

    // Signalled once the program runs: a SIGTERM in the instant between the start script's
    // trap and the program's start is absorbed by the script (a stop then ends with SIGKILL
    // after its grace period), which is not what this checks.
    let sleeper = backend
        .spawn(
            srv.spec("t-s", "sleeper", &["sh", "-c", "echo up; exec sleep 1000"]),
            obs.clone(),
        )
        .unwrap();
    assert!(sleeper.alive());
    wait_screen(&*sleeper, "the program to run", |l| l == "up");
    sleeper.signal(false).unwrap();
    assert_eq!(obs.exit_of("t-s"), None);
    assert!(!sleeper.alive());

    // A window closed behind the backend's back is reported too.
    let victim = backend
        .spawn(srv.spec("t-v", "victim", &["sleep", "1000"]), obs.clone())
        .unwrap();
    let out = srv.tmux(&["kill-pane", "-t", &victim.handle().unwrap()]);
    assert!(out.status.success());
    assert_eq!(obs.exit_of("t-v"), None);

    // Killed by a signal it did not choose, and forced: no exit code either way.
    let _killed = backend
        .spawn(
            srv.spec("t-k", "killed", &["sh", "-c", "kill -9 $$"]),
            obs.clone(),
        )
        .unwrap();
    assert_eq!(obs.exit_of("t-k"), None);
    let stubborn = backend
        .spawn(
            srv.spec(
                "t-st",
                "stubborn",
                &["sh", "-c", "trap '' TERM; echo up; sleep 1000"],
            ),
            obs.clone(),
        )
        .unwrap();
    wait_screen(&*stubborn, "the trap set", |l| l == "up");
    stubborn.signal(false).unwrap();
    assert!(
        stubborn.alive(),
        "SIGTERM was ignored, the program must still run"
    );
    stubborn.signal(true).unwrap();
    assert_eq!(obs.exit_of("t-st"), None);

    // An interactive shell takes the terminal over in a process group of its own; stopping it
    // must still reach it.
    let shell = backend
        .spawn(srv.spec("t-sh", "shell", &bash()), obs.clone())
        .unwrap();
    shell.write(b"echo $$ ready\r").unwrap();
    wait_screen(&*shell, "the shell ready", |l| {
        l.ends_with(" ready") && !l.contains('$')
    });
    shell.signal(true).unwrap();
    assert_eq!(obs.exit_of("t-sh"), None);
}

#[test]
fn spawn_errors_name_the_problem() {
    let srv = Isolated::new("errors");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let err = backend
        .spawn(srv.spec("t-x", "x", &["no-such-program-orch"]), obs.clone())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot start no-such-program-orch: not found on PATH"
    );
    let mut spec = srv.spec("t-y", "y", &bash());
    spec.cwd = srv.dir.path().join("missing");
    let err = backend.spawn(spec, obs.clone()).err().unwrap();
    assert!(
        err.to_string().ends_with("missing is not a directory"),
        "{err}"
    );

    let missing = TmuxBackend::new(TmuxConfig {
        tmux: vec!["/nonexistent/tmux".into()],
        ..srv.config()
    });
    let probe = missing.probe();
    assert!(!probe.available);
    assert!(
        probe.detail.starts_with("cannot run /nonexistent/tmux"),
        "{}",
        probe.detail
    );
    let err = missing
        .spawn(srv.spec("t-z", "z", &bash()), obs)
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            BackendError::Unavailable {
                backend: "tmux",
                ..
            }
        ),
        "{err}"
    );

    let probe = backend.probe();
    assert!(probe.available);
    assert!(probe.detail.starts_with("tmux 3"), "{}", probe.detail);
}

#[test]
fn resize_changes_the_pane() {
    let srv = Isolated::new("resize");
    let backend = srv.backend();
    let term = backend
        .spawn(srv.spec("t-r", "r", &bash()), Arc::new(Recorder::default()))
        .unwrap();
    term.resize(100, 30).unwrap();
    let screen = term.screen(0).unwrap();
    assert_eq!((screen.cols, screen.rows), (100, 30));
    term.write(b"echo $COLUMNS\r").unwrap();
    wait_screen(&*term, "bash to see 100 columns", |l| l == "100");
}

#[test]
fn a_new_daemon_adopts_a_surviving_pane() {
    let srv = Isolated::new("adopt");
    let spec = srv.spec("t-a", "survivor", &bash());
    let handle = {
        let first = srv.backend();
        let term = first
            .spawn(spec.clone(), Arc::new(Recorder::default()))
            .unwrap();
        term.write(b"echo before\r").unwrap();
        wait_screen(&*term, "first output", |l| l == "before");
        term.handle().unwrap()
        // The backend, its terminal and its control client end here, as in a daemon that died.
    };
    let second = srv.backend();
    let found = second.surviving().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].handle.as_str(), found[0].terminal_id.as_str()),
        (handle.as_str(), "t-a")
    );
    assert!(found[0].alive);

    let obs = Arc::new(Recorder::default());
    let other = srv.spec("t-other", "x", &bash());
    assert!(matches!(
        second.adopt(other, &handle, obs.clone()),
        Err(BackendError::Gone { .. })
    ));
    let missing = second
        .adopt(spec.clone(), "%999", obs.clone())
        .err()
        .unwrap();
    assert!(matches!(missing, BackendError::Gone { .. }), "{missing}");
    assert!(matches!(
        second.adopt(spec.clone(), "nonsense", obs.clone()),
        Err(BackendError::Gone { .. })
    ));

    let term = second.adopt(spec, &handle, obs.clone()).unwrap();
    assert_eq!(term.handle().as_deref(), Some(handle.as_str()));
    let screen = term.screen(0).unwrap();
    assert!(
        screen.lines.contains(&"before".to_owned()),
        "{:?}",
        screen.lines
    );
    term.write(b"echo adopted-$((1+1))\r").unwrap();
    wait_screen(&*term, "output after adoption", |l| l == "adopted-2");
    wait_for("output routed to the new observer", || {
        obs.saw_output("t-a").then_some(())
    });
    wait_for("log continued", || {
        srv.log("t-a").contains("adopted-2\r\n").then_some(())
    });
    term.write(b"exit 7\r").unwrap();
    assert_eq!(obs.exit_of("t-a"), Some(7));
}

#[test]
fn surviving_starts_no_server() {
    let srv = Isolated::new("noserver");
    assert_eq!(srv.backend().surviving().unwrap(), vec![]);
    let out = srv.tmux(&["has-session"]);
    assert!(!out.status.success(), "a server was started");
}

#[test]
fn a_killed_server_loses_its_terminals_and_a_new_one_is_started() {
    let srv = Isolated::new("kill");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let a = backend
        .spawn(srv.spec("t-1", "one", &bash()), obs.clone())
        .unwrap();
    let b = backend
        .spawn(srv.spec("t-2", "two", &["cat"]), obs.clone())
        .unwrap();
    let sub = a.subscribe();
    assert!(srv.tmux(&["kill-server"]).status.success());
    assert_eq!(obs.exit_of("t-1"), None);
    assert_eq!(obs.exit_of("t-2"), None);
    assert!(!a.alive() && !b.alive());
    assert!(matches!(a.write(b"x"), Err(BackendError::Gone { .. })));
    wait_for("the subscriber told", || {
        std::iter::from_fn(|| sub.try_take())
            .any(|c| c == OutputChunk::Closed)
            .then_some(())
    });

    let c = backend
        .spawn(srv.spec("t-3", "three", &bash()), obs.clone())
        .unwrap();
    c.write(b"echo $((6*7))\r").unwrap();
    wait_screen(&*c, "42 on the new server", |l| l == "42");
    assert_ne!(c.pid(), a.pid());
}

#[test]
fn quoting_round_trips_through_tmux() {
    // Every awkward string goes through tmux's command parser into a buffer and comes back out
    // of a file byte for byte.
    let srv = Isolated::new("quote");
    let backend = srv.backend();
    let server = backend.server().unwrap();
    let samples = [
        "plain",
        "hello' ; new-window -d -n INJECTED 'sleep 99",
        "\"double\" \\back\\ $HOME ${X} ~ ~/x #{session_name} #(id) ## #",
        "{ braces } ; \\; %if %endif",
        "two\nlines\r\tand\x1b[0m esc \x7f \x01",
        "é ✓ 🦀 \u{85} \u{2028}",
        "-starts-with-dash",
        "=exact",
        "%1",
        // A `~` that begins a quoted word is a home directory to tmux's parser.
        "~",
        "~root",
        "~/x",
        "~no-such-user-orch",
    ];
    for (i, sample) in samples.iter().enumerate() {
        let path = srv.dir.path().join(format!("buf{i}"));
        let set = command::Cmd::new("set-buffer").args(["-b", "q", "--", sample]);
        let save = command::Cmd::new("save-buffer")
            .args(["-b", "q"])
            .arg(path.to_str().unwrap());
        let request = command::Request::<()>::test(vec![set, save]);
        server
            .run(&request)
            .unwrap_or_else(|e| panic!("sample {sample:?}: {e:?}"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            sample.as_bytes(),
            "sample {sample:?}"
        );
    }
    assert!(!srv.window_names().iter().any(|n| n.contains("INJECTED")));
}

#[test]
fn argv_reaches_the_program_uninterpreted() {
    // Each word arrives as the program's argument exactly: no home directory for `~`, no
    // variable for `$`, no format for `#{}`, as with the pty backend.
    let srv = Isolated::new("argv");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let words = [
        "~root",
        "~",
        "a~b",
        "~/x",
        "~no-such-user-orch",
        "$HOME",
        "#{session_name}",
        "\\t",
        "",
    ];
    let mut argv = vec!["printf", "<%s>\n"];
    argv.extend(words);
    let term = backend
        .spawn(srv.spec("t-argv", "argv", &argv), obs.clone())
        .unwrap();
    assert_eq!(obs.exit_of("t-argv"), Some(0));
    let want: String = words.iter().map(|w| format!("<{w}>\r\n")).collect();
    wait_for("every word in the log", || {
        srv.log("t-argv").contains(&want).then_some(())
    });
    drop(term);
}

#[test]
fn attach_command_names_the_socket_and_pane() {
    let config = TmuxConfig {
        socket_name: "orch 1".into(),
        ..TmuxConfig::new("ws")
    };
    assert_eq!(
        config.attach_argv("%3"),
        ["tmux", "-L", "orch_1", "attach-session", "-t", "%3"]
    );
    assert!(config.is_local());
    let remote = TmuxConfig {
        tmux: vec!["ssh".into(), "box".into(), "tmux".into()],
        ..config
    };
    assert!(!remote.is_local());
    assert_eq!(remote.attach_argv("%3")[..3], ["ssh", "box", "tmux"]);
    // A host: the ssh argv, a terminal for tmux there (-t), and tmux's words as one shell line
    // (quoted where a shell would read them otherwise).
    let host = TmuxConfig {
        ssh: vec!["ssh".into(), "-p".into(), "2222".into(), "me@box".into()],
        session: "my ws".into(),
        ..TmuxConfig::new("ws")
    };
    assert!(!host.is_local());
    assert_eq!(
        host.attach_argv("%3"),
        [
            "ssh",
            "-t",
            "-p",
            "2222",
            "me@box",
            &format!("tmux -L {} attach-session -t %3", host.socket_name)
        ]
    );
    assert_eq!(
        host.argv([
            "display-message".into(),
            "-p".into(),
            "#{pid}\t$HOME's".into()
        ]),
        [
            "ssh",
            "-p",
            "2222",
            "me@box",
            "tmux display-message -p '#{pid}\t$HOME'\\''s'"
        ]
    );
}

#[test]
fn observers_calling_back_do_not_hang() {
    // An observer that (against the rules) asks the terminal for its screen from `output`, on
    // the reader thread: the call fails at once instead of waiting for itself.
    struct Nosy {
        /// The terminal to ask, once spawned.
        term: Mutex<Option<Arc<dyn Terminal>>>,
        /// What each call returned: whether it was an error, and how long it took.
        calls: Mutex<Vec<(bool, Duration)>>,
    }
    impl TerminalObserver for Nosy {
        fn output(&self, _: &str) {
            let term = self.term.lock().unwrap().clone();
            if let Some(term) = term {
                let start = Instant::now();
                let failed = term.screen(0).is_err();
                self.calls.lock().unwrap().push((failed, start.elapsed()));
            }
        }
        fn exited(&self, _: &str, _: Option<i32>) {}
    }
    let srv = Isolated::new("nosy");
    let backend = srv.backend();
    let obs = Arc::new(Nosy {
        term: Mutex::new(None),
        calls: Mutex::new(Vec::new()),
    });
    let term = backend
        .spawn(srv.spec("t-n", "nosy", &["cat"]), obs.clone())
        .unwrap();
    *obs.term.lock().unwrap() = Some(term.clone());
    term.write(b"ping\r").unwrap();
    wait_for("an output callback", || {
        (!obs.calls.lock().unwrap().is_empty()).then_some(())
    });
    let (failed, took) = obs.calls.lock().unwrap()[0];
    assert!(failed && took < Duration::from_secs(1), "{failed} {took:?}");
    *obs.term.lock().unwrap() = None;
}

#[test]
fn last_words_before_an_exit_reach_the_log() {
    // A program that prints a burst and a final message, then exits at once: tmux throws away
    // output it has not sent when a pane's process exits, which the start script's linger
    // prevents.
    let srv = Isolated::new("last");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    for i in 0..10 {
        let id = format!("t-l{i}");
        let script = "i=0; while [ $i -lt 300 ]; do echo \"line $i\"; i=$((i+1)); done; \
                      echo FINAL-WORDS; exit 1";
        let term = backend
            .spawn(srv.spec(&id, "last", &["sh", "-c", script]), obs.clone())
            .unwrap();
        let sub = term.subscribe();
        assert_eq!(obs.exit_of(&id), Some(1));
        // Everything is in by the time the exit is reported, marker removed.
        let log = srv.log(&id);
        assert!(log.starts_with("line 0\r\nline 1\r\n"), "{log:?}");
        let tail = &log[log.len().saturating_sub(80)..];
        assert!(log.ends_with("line 299\r\nFINAL-WORDS\r\n"), "{tail:?}");
        let streamed: String = std::iter::from_fn(|| match sub.try_take() {
            Some(OutputChunk::Data(d)) => Some(d),
            _ => None,
        })
        .collect();
        // Subscribed after the spawn: what came before is not in it, the rest is.
        assert!(log.ends_with(&streamed), "{streamed:?}");
        let screen = term.screen(0).unwrap();
        assert!(
            screen.lines.contains(&"FINAL-WORDS".to_owned()),
            "{:?}",
            screen.lines
        );
        term.close().unwrap();
    }
}

#[test]
fn heavy_output_reaches_the_log_complete() {
    let srv = Isolated::new("heavy");
    let backend = srv.backend();
    let obs = Arc::new(Recorder::default());
    let n = 100_000;
    let spec = srv.spec("t-h", "heavy", &["seq", "1", &n.to_string()]);
    let _term = backend.spawn(spec, obs.clone()).unwrap();
    assert_eq!(obs.exit_of("t-h"), Some(0));
    // The tty turns each "\n" into "\r\n".
    let expected: usize = (1..=n).map(|i: u32| i.to_string().len() + 2).sum();
    let log = srv.log("t-h");
    assert_eq!(log.len(), expected);
    assert!(log.ends_with("99999\r\n100000\r\n"));
}

#[test]
fn exit_markers_are_kept_out_of_the_output() {
    let prefix = command::marker_prefix("t-1");
    let strip = |data: &[u8]| {
        strip_marker(&mut Vec::new(), data, prefix.as_bytes())
            .0
            .into_owned()
    };
    assert_eq!(
        strip_marker(
            &mut Vec::new(),
            b"bye\x1b]2;orch-exited:t-1:3\x1b\\",
            prefix.as_bytes()
        )
        .1,
        Some(3)
    );
    assert_eq!(
        strip_marker(&mut Vec::new(), b"plain", prefix.as_bytes()).1,
        None
    );
    assert_eq!(strip(b"bye\r\n\x1b]2;orch-exited:t-1:0\x1b\\"), b"bye\r\n");
    assert_eq!(strip(b"a\x1b]2;orch-exited:t-1:3\x1b\\b"), b"ab");
    assert_eq!(
        strip(b"\x1b]2;orch-exited:t-2:3\x1b\\"),
        b"\x1b]2;orch-exited:t-2:3\x1b\\"
    );
    assert_eq!(strip(b"plain"), b"plain");
    // Split across notifications, anywhere: held back, then taken out whole.
    let marker = b"line\r\n\x1b]2;orch-exited:t-1:3\x1b\\";
    for cut in 1..marker.len() {
        let mut held = Vec::new();
        let (a, s1) = strip_marker(&mut held, &marker[..cut], prefix.as_bytes());
        let (b, s2) = strip_marker(&mut held, &marker[cut..], prefix.as_bytes());
        assert_eq!([a, b].concat(), b"line\r\n", "cut at {cut}");
        assert_eq!((s1, s2), (None, Some(3)), "cut at {cut}");
        assert!(held.is_empty());
    }
    // What only looked like the start of one goes on as output with the next chunk.
    let mut held = Vec::new();
    let (a, _) = strip_marker(&mut held, b"x\x1b]2;orc", prefix.as_bytes());
    let (b, _) = strip_marker(&mut held, b"hid title\x07", prefix.as_bytes());
    assert_eq!([a, b].concat(), b"x\x1b]2;orchid title\x07");
    // A marker-shaped sequence too long to be ours is not held.
    assert_eq!(
        strip(b"\x1b]2;orch-exited:t-1:3333333333333333333333"),
        b"\x1b]2;orch-exited:t-1:3333333333333333333333"
    );
}
