//! Adapters: the implementations of the ports in `ports.rs` — the sled event store, the
//! terminal backends and the ACP client (the `ConversationBackend`: agents speaking the Agent
//! Client Protocol, behind a terminal of its own) and agents' git worktrees (`Worktrees`).
//!
//! Only this module names sled, portable-pty, alacritty_terminal, tmux or git.

pub mod acp;
pub mod emulator;
pub mod git;
pub mod host;
pub mod pty;
pub mod sled_store;
pub mod tmux;

use std::sync::Arc;

use crate::config::Config;
use crate::paths::WorkspacePaths;
use crate::ports::{RemoteHost, TerminalBackend};

/// Variables that describe the terminal, multiplexer or editor the *daemon* was started from.
/// A program in one of our terminals is not in that terminal: Claude Code told `TMUX` believes
/// it runs in tmux, an editor's variables point it at a window it is not in. Both backends drop
/// them (the pty backend for each program, the tmux backend for the server it starts) before a
/// spec's own environment is applied, which may set any of them back on purpose.
const FOREIGN_TERMINAL_VARS: &[&str] = &[
    "TMUX",
    "TMUX_PANE",
    "STY",
    "WINDOW",
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "TERM_SESSION_ID",
    "TERMINAL_EMULATOR",
    "VTE_VERSION",
    "WINDOWID",
    "WT_SESSION",
    "WT_PROFILE_ID",
    "LC_TERMINAL",
    "LC_TERMINAL_VERSION",
    "COLUMNS",
    "LINES",
    "NVIM",
    "NVIM_LISTEN_ADDRESS",
    "VIM_TERMINAL",
    "INSIDE_EMACS",
    "ZELLIJ",
    "ZELLIJ_PANE_ID",
    "ZELLIJ_SESSION_NAME",
];

/// Prefixes of such variables (a terminal's own families).
const FOREIGN_TERMINAL_PREFIXES: &[&str] = &[
    "KITTY_",
    "ITERM_",
    "WEZTERM_",
    "ALACRITTY_",
    "KONSOLE_",
    "GHOSTTY_",
    "VSCODE_",
];

/// Whether an inherited variable describes the daemon's own terminal (see
/// `FOREIGN_TERMINAL_VARS`).
pub fn foreign_terminal_var(key: &str) -> bool {
    FOREIGN_TERMINAL_VARS.contains(&key)
        || FOREIGN_TERMINAL_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The tmux layout of a workspace: orch's own server (`[tmux] socket_name`, default
/// `orch-<uid>`) with one session per workspace, named after the workspace directory plus a short
/// hash of its path so two checkouts of one project do not share a session.
pub fn tmux_config(paths: &WorkspacePaths, config: &Config) -> tmux::TmuxConfig {
    let dir = paths
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let hash = crate::paths::fnv1a(paths.root.as_os_str().as_encoded_bytes());
    let mut t = tmux::TmuxConfig::new(format!("{dir}-{:06x}", hash & 0xff_ffff));
    t.tmux = config.tmux.command.clone();
    if !config.tmux.socket_name.is_empty() {
        t.socket_name = config.tmux.socket_name.clone();
    }
    t
}

/// The argv that shows a person the tmux window of pane `handle`, for `orch attach`.
pub fn tmux_attach_command(paths: &WorkspacePaths, config: &Config, handle: &str) -> Vec<String> {
    tmux_config(paths, config).attach_argv(handle)
}

/// The tmux backend for this workspace.
pub fn tmux_backend(paths: &WorkspacePaths, config: &Config) -> Option<Arc<dyn TerminalBackend>> {
    Some(Arc::new(tmux::TmuxBackend::new(tmux_config(paths, config))))
}

/// The tmux layout on host `name`: the workspace's session name, the host's socket, its tmux
/// program behind its `ssh` argv.
pub fn host_tmux_config(
    paths: &WorkspacePaths,
    config: &Config,
    name: &str,
) -> Option<tmux::TmuxConfig> {
    let host = config.hosts.get(name)?;
    let mut t = tmux_config(paths, config);
    // Several machines may drive the same host account: the session names this one too.
    let dir = t
        .session
        .rsplit_once('-')
        .map_or(t.session.as_str(), |(d, _)| d)
        .to_owned();
    let here = local_host_name();
    let hash = crate::paths::fnv1a(
        [
            here.as_bytes(),
            b"\0",
            paths.root.as_os_str().as_encoded_bytes(),
        ]
        .concat()
        .as_slice(),
    );
    t.session = format!("{dir}-{:06x}", hash & 0xff_ffff);
    t.tmux = vec![host.tmux.clone()];
    t.socket_name = host.socket();
    t.ssh = host.ssh.clone();
    Some(t)
}

/// This machine's name (`gethostname`), or `localhost`.
fn local_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "localhost".into(),
    }
}

/// The configured remote hosts, not yet connected.
pub fn remote_hosts(paths: &WorkspacePaths, config: &Config) -> Vec<Arc<dyn RemoteHost>> {
    config
        .hosts
        .keys()
        .filter_map(|name| {
            let t = host_tmux_config(paths, config, name)?;
            Some(Arc::new(host::SshHost::new(name, t)) as Arc<dyn RemoteHost>)
        })
        .collect()
}
