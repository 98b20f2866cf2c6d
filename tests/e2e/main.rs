//! Cross-component tests: a real `orch` daemon on temporary directories, real sockets, real
//! processes in real ptys, real tmux (isolated servers), a real headless Neovim and a real VS Code
//! (code-server's server in Chromium).
//!
//! One integration binary; each module is one area. Protocol cases run both on the socket and
//! through `orch lsp`.

mod acp_agents;
mod agents;
mod cli;
mod docs;
mod durability;
mod events;
mod hosts;
mod model_server;
mod nvim;
mod protocol;
mod real_agents;
mod tasks;
mod tmux;
mod vscode;
mod worktrees;
