//! `orch lsp`: the stdio forwarder editors start. It finds (or starts) the workspace's daemon,
//! checks that the daemon runs the same version, then copies bytes both ways unchanged, so the
//! editor speaks to the shared daemon as if it were a private language server.

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::Client;
use crate::paths::WorkspacePaths;

/// Forward stdio to the workspace daemon until either side closes.
pub async fn run(paths: &WorkspacePaths) -> anyhow::Result<()> {
    // Version check on a separate short connection, so the editor's own connection starts
    // uninitialized exactly as if it had connected directly.
    let mut probe = Client::connect_or_start(paths).await?;
    let init = probe
        .initialize(json!({}))
        .await
        .context("the daemon did not answer initialize")?;
    let version = init["serverInfo"]["version"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    if version != crate::VERSION {
        bail!(
            "the daemon for {} runs orch {version}, but this is orch {}; run `orch stop` so the next start uses this version",
            paths.root.display(),
            crate::VERSION
        );
    }
    let _ = probe.notify("exit", json!(null)).await;
    drop(probe);
    // Connect once the editor has sent something: the daemon closes a connection whose first
    // message does not come within a few seconds (`conn::FIRST_MESSAGE_TIMEOUT`), and an editor
    // may start `orch lsp` before it has anything to say.
    let mut stdin = tokio::io::stdin();
    let mut first = vec![0u8; 64 * 1024];
    let n = stdin
        .read(&mut first)
        .await
        .context("reading editor input failed")?;
    if n == 0 {
        return Ok(());
    }
    first.truncate(n);
    let stream = super::client::connect_own(&paths.socket)
        .await
        .with_context(|| format!("cannot connect to {}", paths.socket.display()))?;
    let (mut sr, mut sw) = stream.into_split();
    let up = async {
        sw.write_all(&first).await?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            sw.write_all(&buf[..n]).await?;
        }
        sw.shutdown().await
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stdout.write_all(&buf[..n]).await?;
            // tokio's stdout buffers: flush every chunk or the editor waits.
            stdout.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    // The daemon going away ends the forwarder (the editor's client then restarts `orch lsp`,
    // which starts a new daemon). The editor closing its input ends it too, once the daemon has
    // answered what was already sent and closed its side (bounded, in case it does not).
    // Input that can no longer be written (the daemon closed: a refusal) still lets what the
    // daemon sent before closing reach the editor: its output is drained before the error.
    tokio::pin!(down);
    let up = tokio::select! {
        r = &mut down => return r.context("forwarding daemon output failed"),
        r = up => r,
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), down).await {
        Ok(r) => r.context("forwarding daemon output failed")?,
        Err(_) => tracing::debug!("daemon kept the connection open after input ended"),
    }
    up.context("forwarding editor input failed")
}
