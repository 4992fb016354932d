//! The DAG service's network side: ask connected peers over Bitswap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cid::Cid;
use futures::FutureExt;
use futures::future::BoxFuture;
use tessera_bitswap_ec::bitswap::{FetchError, Handle};
use tessera_blockstore::Block;

use crate::dag::Fetcher;
use crate::ipld::BlockSourceError;

/// Fetches over Bitswap, giving up on a block after `timeout` (Kubo's reads wait as long as the
/// client does; a bound keeps `pin add` of an unreachable CID from hanging forever).
pub(crate) struct BitswapFetcher {
    pub(crate) handle: Handle,
    pub(crate) timeout: Duration,
    /// Connected peer count: with nobody to ask, a read fails at once instead of waiting out the
    /// timeout.
    pub(crate) connected: Arc<AtomicUsize>,
}

impl Fetcher for BitswapFetcher {
    fn fetch(&self, cid: Cid) -> BoxFuture<'static, Result<Block, BlockSourceError>> {
        if self.connected.load(Ordering::Relaxed) == 0 {
            return futures::future::ready(Err(BlockSourceError::NotFound { cid })).boxed();
        }
        let session = self.handle.session().with_timeout(self.timeout);
        async move {
            match session.get(cid).await {
                Ok(b) => Ok(b),
                Err(FetchError::Timeout { .. }) => Err(BlockSourceError::Timeout { cid }),
                Err(e) => Err(BlockSourceError::Failed {
                    cid,
                    reason: e.to_string(),
                }),
            }
        }
        .boxed()
    }

    fn stored(&self, cids: Vec<Cid>) -> BoxFuture<'static, ()> {
        let handle = self.handle.clone();
        async move {
            if let Err(e) = handle.notify_new_blocks(cids).await {
                tracing::debug!(error = %e, "cannot tell bitswap about new blocks");
            }
        }
        .boxed()
    }
}
