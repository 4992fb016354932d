//! One module per command group.

pub(crate) mod add;
pub(crate) mod block;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod daemon;
pub(crate) mod dag;
pub(crate) mod files;
pub(crate) mod info;
pub(crate) mod init;
pub(crate) mod pin;
pub(crate) mod refs;
pub(crate) mod repo;
pub(crate) mod routing;
pub(crate) mod swarm;

use std::path::PathBuf;

use anyhow::Result;

use crate::client::Client;

/// What every command needs: which repo, which daemon.
pub(crate) struct Context {
    pub(crate) repo: PathBuf,
    pub(crate) api: Option<String>,
    pub(crate) cluster_api: Option<String>,
}

impl Context {
    /// The client of the running daemon.
    pub(crate) fn client(&self) -> Result<Client> {
        Client::connect(&self.repo, self.api.as_deref())
    }
}

/// Writes a whole stream of bytes to stdout.
pub(crate) async fn copy_to_stdout(
    mut s: impl futures::Stream<Item = Result<bytes::Bytes>> + Unpin,
) -> Result<()> {
    use std::io::Write;

    use futures::StreamExt;
    // Plain blocking writes: tokio's stdout hands every write to a blocking thread and waits for
    // it, a thread hop per chunk of the answer. Blocking here stalls only this task; the
    // runtime's workers keep reading the connection, and a full pipe still holds the daemon back.
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = s.next().await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    Ok(())
}
