//! Locations: the canonical workspace root and, from it, the socket, lock and state paths.
//!
//! `ORCH_RUNTIME_DIR` replaces the socket directory (default `$XDG_RUNTIME_DIR/orch`, else
//! `<tmp>/orch-<uid>`); `ORCH_STATE_DIR` replaces the state directory (default
//! `$XDG_STATE_HOME/orch`, else `~/.local/state/orch`). Each workspace gets a name derived from a
//! hash of its canonical root, so two workspaces never share a socket or a store.

use std::path::{Path, PathBuf};

/// Every path one workspace's daemon uses.
#[derive(Debug, Clone)]
pub struct WorkspacePaths {
    /// Canonical workspace root.
    pub root: PathBuf,
    /// The socket directory (mode 0700).
    pub runtime_dir: PathBuf,
    /// The socket file (mode 0600).
    pub socket: PathBuf,
    /// The lock file held by the running daemon; holds its pid and version.
    pub lock: PathBuf,
    /// This workspace's state directory (store, output logs, daemon log).
    pub state_dir: PathBuf,
}

/// FNV-1a 64: stable across builds and Rust versions (std's hasher is not), which matters because
/// `orch lsp` of one build must find the daemon of the same build by path.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Create `dir` and any missing parents with mode 0700, whatever the umask: everything under the
/// state directory (the store, output and gate logs) is the user's alone. Existing directories
/// are left as they are.
pub fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The current user's uid.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

impl WorkspacePaths {
    /// Paths for the workspace at `root` (made canonical; it must exist).
    pub fn for_root(root: &Path) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root).map_err(|e| {
            std::io::Error::new(e.kind(), format!("workspace {}: {e}", root.display()))
        })?;
        let name = format!("{:016x}", fnv1a(root.as_os_str().as_encoded_bytes()));
        let runtime_dir = match std::env::var_os("ORCH_RUNTIME_DIR") {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(d) => PathBuf::from(d).join("orch"),
                None => std::env::temp_dir().join(format!("orch-{}", uid())),
            },
        };
        let state_base = match std::env::var_os("ORCH_STATE_DIR") {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("XDG_STATE_HOME") {
                Some(d) => PathBuf::from(d).join("orch"),
                None => match std::env::var_os("HOME") {
                    Some(h) => PathBuf::from(h).join(".local/state/orch"),
                    None => std::env::temp_dir().join(format!("orch-state-{}", uid())),
                },
            },
        };
        Ok(Self {
            socket: runtime_dir.join(format!("{name}.sock")),
            lock: runtime_dir.join(format!("{name}.lock")),
            state_dir: state_base.join(&name),
            runtime_dir,
            root,
        })
    }

    /// The daemon's log file.
    pub fn daemon_log(&self) -> PathBuf {
        self.state_dir.join("daemon.log")
    }

    /// Where a terminal's output log goes.
    pub fn output_log(&self, terminal_id: &str) -> PathBuf {
        self.state_dir
            .join("output")
            .join(format!("{terminal_id}.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"/a"), fnv1a(b"/b"));
    }
}
