//! The DAG service's network side: ask connected peers over Bitswap, and with the DHT on, look up
//! and dial the providers of a block that connected peers do not deliver.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cid::Cid;
use futures::FutureExt;
use futures::future::BoxFuture;
use tessera_bitswap_ec::bitswap::{FetchError, Handle, Session};
use tessera_blockstore::Block;

use super::routing::ProviderSearch;
use crate::dag::Fetcher;
use crate::ipld::BlockSourceError;

/// How long a want waits on connected peers before the DHT is asked for providers: Kubo's
/// `ProviderSearchDelay`. Most blocks come from a connected peer well within it, so a DAG walk
/// from a peer that has it never touches the DHT.
const PROVIDER_SEARCH_DELAY: Duration = Duration::from_secs(1);
/// Searches for a block still missing repeat with doubling pauses up to this one, until the fetch
/// ends: a provider may announce, or a DHT peer may connect, after the first search.
const MAX_SEARCH_PAUSE: Duration = Duration::from_secs(16);

/// Fetches over Bitswap, giving up on a block after `timeout` (Kubo's reads wait as long as the
/// client does; a bound keeps `pin add` of an unreachable CID from hanging forever).
///
/// Every fetch goes through one long-lived Bitswap session. A session remembers which peers
/// delivered and asks them for the next block directly (want-block, with want-have to a few other
/// session peers), where a fresh session per block first broadcast want-have and waited for a HAVE:
/// one more round trip for every block of a DAG walk. A peer of the session that lacks a block says
/// DONT_HAVE, and the want moves on to a broadcast, so a shared session costs a miss one round
/// trip and saves one on every hit.
///
/// With the DHT on (`search`), a want that is still open after [`PROVIDER_SEARCH_DELAY`] starts a
/// provider lookup that dials what it finds; Bitswap tells every newly connected peer what it
/// wants, so the same want then reaches the provider. The swarm runs one lookup per block at a
/// time and dials a few providers per lookup.
pub(crate) struct BitswapFetcher {
    pub(crate) handle: Handle,
    pub(crate) session: Arc<Session>,
    /// Connected peer count: with nobody to ask, a read fails at once instead of waiting out the
    /// timeout (with the DHT on, once a lookup found no provider either).
    pub(crate) connected: Arc<AtomicUsize>,
    /// Provider lookups, when the DHT runs.
    pub(crate) search: Option<ProviderSearch>,
}

fn fetched(cid: Cid, r: Result<Block, FetchError>) -> Result<Block, BlockSourceError> {
    match r {
        Ok(b) => Ok(b),
        Err(FetchError::Timeout { .. }) => Err(BlockSourceError::Timeout { cid }),
        Err(e) => Err(BlockSourceError::Failed {
            cid,
            reason: e.to_string(),
        }),
    }
}

impl Fetcher for BitswapFetcher {
    fn fetch(&self, cid: Cid) -> BoxFuture<'static, Result<Block, BlockSourceError>> {
        let nobody = self.connected.load(Ordering::Relaxed) == 0;
        let session = self.session.clone();
        let Some(search) = self.search.clone() else {
            if nobody {
                return futures::future::ready(Err(BlockSourceError::NotFound { cid })).boxed();
            }
            return async move { fetched(cid, session.get(cid).await) }.boxed();
        };
        async move {
            if nobody && search.reach(cid).await == 0 {
                return Err(BlockSourceError::NotFound { cid });
            }
            let get = session.get(cid);
            tokio::pin!(get);
            let mut pause = PROVIDER_SEARCH_DELAY;
            loop {
                tokio::select! {
                    r = &mut get => return fetched(cid, r),
                    _ = tokio::time::sleep(pause) => {
                        search.start(cid);
                        pause = (pause * 2).min(MAX_SEARCH_PAUSE);
                    }
                }
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
