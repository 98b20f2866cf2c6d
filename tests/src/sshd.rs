//! A real OpenSSH server on a random loopback port, for remote-host tests and benches: its own
//! generated host key and user key, `authorized_keys` and `known_hosts` in a temporary
//! directory; the person running the tests logs in as themselves. Sessions get `SHLVL=1`, so a
//! bash login shell does not read `~/.bashrc` (bash reads it for SSH commands only at level 1):
//! the tests must not depend on what a machine's start-up files do, and killing connections (as
//! [`Sshd::stop`] does) in the middle of one that takes a lock (pyenv's `rehash` does) would
//! leave every later login waiting for that lock. [`Sshd::stop`] ends the
//! listener and every connection it serves (a host going away); [`Sshd::start_again`] brings it
//! back on the same port with the same keys.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// Where Debian's OpenSSH server lives.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running (or stopped) sshd of a test.
pub struct Sshd {
    dir: TempDir,
    /// The loopback port it listens on.
    pub port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Whether sshd, ssh and ssh-keygen can be run here.
    pub fn available() -> bool {
        Path::new(SSHD).exists()
            && Command::new("ssh")
                .arg("-V")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            && Command::new("ssh-keygen")
                .arg("-?")
                .stderr(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .is_ok()
    }

    /// Generate keys and start the server; panics with sshd's words when it cannot.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-sshd-")
            .tempdir()
            .unwrap();
        for key in ["host_key", "user_key"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "orch-test", "-f"])
                .arg(dir.path().join(key))
                .output()
                .expect("run ssh-keygen");
            assert!(out.status.success(), "ssh-keygen: {out:?}");
        }
        let user_pub = std::fs::read_to_string(dir.path().join("user_key.pub")).unwrap();
        write_private(&dir.path().join("authorized_keys"), &user_pub);
        let port = free_port();
        let host_pub = std::fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        write_private(
            &dir.path().join("known_hosts"),
            &format!("[127.0.0.1]:{port} {host_pub}\n"),
        );
        let d = dir.path().display();
        write_private(
            &dir.path().join("sshd_config"),
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n\
                 MaxStartups 100\nMaxSessions 100\nSetEnv SHLVL=1\n"
            ),
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // sshd running as root wants its privilege separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let mut s = Self {
            dir,
            port,
            child: None,
        };
        s.start_again();
        s
    }

    /// Start the server (again) on its port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "sshd already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run sshd");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd ended at start ({status}): {}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sshd never listened on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// End the listener and every connection it serves, as a host going down does. Programs
    /// the connections started in the background (a tmux server) run on.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let listener = child.id();
        let connections = descendants(listener, |comm| comm.starts_with("sshd"));
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(listener as i32, libc::SIGKILL) };
        for pid in connections {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = child.wait();
    }

    /// The argv that reaches this server as the current user (the `ssh` of a host entry): no
    /// user configuration, this server's key only, its host key pinned.
    pub fn ssh_argv(&self) -> Vec<String> {
        let d = self.dir.path();
        let mut argv: Vec<String> = vec!["ssh".into(), "-F".into(), "/dev/null".into()];
        for opt in [
            format!("IdentityFile={}", d.join("user_key").display()),
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={}", d.join("known_hosts").display()),
            "StrictHostKeyChecking=yes".into(),
            "BatchMode=yes".into(),
            "ConnectTimeout=5".into(),
            "LogLevel=ERROR".into(),
        ] {
            argv.push("-o".into());
            argv.push(opt);
        }
        argv.extend([
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            current_user(),
            "127.0.0.1".into(),
        ]);
        argv
    }

    /// What sshd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The directory holding its keys and configuration.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The login name of the user running the tests.
pub fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            let out = Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "root".into())
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Processes below `root` (children, their children, ...) whose command name `keep` accepts.
fn descendants(root: u32, keep: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut parents: Vec<(u32, u32, String)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parents.push((pid, ppid, comm));
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        for (pid, ppid, _) in &parents {
            if *ppid == p && !found.contains(pid) {
                found.push(*pid);
            }
        }
        i += 1;
    }
    parents
        .into_iter()
        .filter(|(pid, _, comm)| *pid != root && found.contains(pid) && keep(comm))
        .map(|(pid, _, _)| pid)
        .collect()
}
