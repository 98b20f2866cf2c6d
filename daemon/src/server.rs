//! `orch serve`: take the workspace lock, open the store, start the runtime, and serve the local
//! socket (or one stdio connection) until `orch/daemon/stop`, SIGTERM or SIGINT.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::adapters::sled_store::SledStore;
use crate::config::Config;
use crate::paths::WorkspacePaths;
use crate::ports::TerminalBackend;
use crate::rpc::Rpc;
use crate::runtime::Runtime;
use crate::transport::{conn, socket};

/// The terminal backends this daemon offers.
pub fn backends(paths: &WorkspacePaths, config: &Config) -> Vec<Arc<dyn TerminalBackend>> {
    let mut v: Vec<Arc<dyn TerminalBackend>> =
        vec![Arc::new(crate::adapters::pty::PtyBackend::new())];
    v.extend(crate::adapters::tmux_backend(paths, config));
    v
}

/// Run the daemon for `paths.root`.
pub async fn serve(paths: WorkspacePaths, stdio: bool) -> anyhow::Result<()> {
    let began = std::time::Instant::now();
    let _lock = socket::acquire_lock(&paths)?;
    let config = Config::load(&paths.root)?;
    // The store holds agents' environments: the state directory is private.
    socket::prepare_private_dir(&paths.state_dir)?;
    let store = SledStore::open(&paths.state_dir.join("store"))?;
    let store_opened = began.elapsed();
    let backends = backends(&paths, &config);
    let config_worktrees = config.worktrees.clone();
    let config_hosts = config.clone();
    let (rt, handle, rx, mut stop) = Runtime::start(
        paths.clone(),
        config,
        Box::new(store),
        crate::runtime::Backends {
            local: backends,
            hosts: crate::adapters::remote_hosts(&paths, &config_hosts),
        },
        Some(Arc::new(crate::adapters::acp::AcpBackend)),
        Some(Arc::new(crate::adapters::git::GitWorktrees::open(
            &paths.root,
            &config_worktrees,
        ))),
        Arc::new(crate::clock::SystemClock),
    )?;
    tracing::info!(
        workspace = %paths.root.display(),
        pid = std::process::id(),
        version = crate::VERSION,
        store_opened_ms = store_opened.as_millis() as u64,
        state_loaded_ms = (began.elapsed() - store_opened).as_millis() as u64,
        "daemon started"
    );
    let runtime = tokio::spawn(rt.run(rx));
    // SIGTERM and SIGINT stop the daemon the same way `orch/daemon/stop` does.
    let h = handle.clone();
    tokio::spawn(async move {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            _ => return,
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("signal received, stopping");
        h.stop_daemon().await;
    });
    let dispatch = Rpc::new(handle.clone());
    if stdio {
        let served = tokio::spawn(conn::serve(
            tokio::io::stdin(),
            tokio::io::stdout(),
            dispatch,
            "stdio".into(),
            // The only client, started by its editor: a slow first message hurts no one else.
            None,
        ));
        tokio::select! {
            _ = served => {
                // The only client left: a private daemon ends with it.
                handle.stop_daemon().await;
            }
            _ = stop.changed() => {}
        }
    } else {
        let listener = socket::bind(&paths)?;
        tracing::info!(socket = %paths.socket.display(), "listening");
        socket::accept_loop(listener, dispatch, stop.clone()).await;
        let _ = std::fs::remove_file(&paths.socket);
    }
    let _ = runtime.await;
    tracing::info!("daemon stopped");
    Ok(())
}
