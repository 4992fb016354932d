//! The DAG service's network side: ask connected peers over Bitswap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cid::Cid;
use futures::FutureExt;
use futures::future::BoxFuture;
use tessera_bitswap_ec::bitswap::{FetchError, Handle, Session};
use tessera_blockstore::Block;

use crate::dag::Fetcher;
use crate::ipld::BlockSourceError;

/// Fetches over Bitswap, giving up on a block after `timeout` (Kubo's reads wait as long as the
/// client does; a bound keeps `pin add` of an unreachable CID from hanging forever).
///
/// Every fetch goes through one long-lived Bitswap session. A session remembers which peers
/// delivered and asks them for the next block directly (want-block, with want-have to a few other
/// session peers), where a fresh session per block first broadcast want-have and waited for a HAVE:
/// one more round trip for every block of a DAG walk. A peer of the session that lacks a block says
/// DONT_HAVE, and the want moves on to a broadcast, so a shared session costs a miss one round
/// trip and saves one on every hit.
pub(crate) struct BitswapFetcher {
    pub(crate) handle: Handle,
    pub(crate) session: Arc<Session>,
    /// Connected peer count: with nobody to ask, a read fails at once instead of waiting out the
    /// timeout.
    pub(crate) connected: Arc<AtomicUsize>,
}

impl Fetcher for BitswapFetcher {
    fn fetch(&self, cid: Cid) -> BoxFuture<'static, Result<Block, BlockSourceError>> {
        if self.connected.load(Ordering::Relaxed) == 0 {
            return futures::future::ready(Err(BlockSourceError::NotFound { cid })).boxed();
        }
        let session = self.session.clone();
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
