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
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::stdout();
    while let Some(chunk) = s.next().await {
        out.write_all(&chunk?).await?;
    }
    out.flush().await?;
    Ok(())
}
