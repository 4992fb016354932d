//! The DAG service: where every reader (cat, get, ls, refs, pin add, the gateway, Bitswap's server)
//! gets blocks. First the local store, then the network when the node has one.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use futures::future::BoxFuture;
use tessera_blockstore::{Block, Blockstore, GetError, IDENTITY};

use crate::ipld::{BlockSource, BlockSourceError};

/// Fetches blocks that the local store lacks, from other peers (Bitswap) or by reconstruction.
///
/// # To ensure correctness
///
/// - Return only blocks whose bytes hash to `cid` (verify what came from outside).
/// - The DAG service stores what `fetch` returns, so implementations need not.
/// - May be called concurrently for many CIDs; dropping the future cancels the want.
pub trait Fetcher: Send + Sync + 'static {
    /// Gets one block from elsewhere.
    fn fetch(&self, cid: Cid) -> BoxFuture<'static, Result<Block, BlockSourceError>>;

    /// Told after blocks were stored locally, so that peers waiting for them can be served.
    fn stored(&self, cids: Vec<Cid>) -> BoxFuture<'static, ()>;
}

/// Makes blocks that no peer may hold any more, such as erasure-coded cells rebuilt from the
/// other cells of their stripe. The cluster installs one; the node only asks it.
///
/// # To ensure correctness
///
/// - `can_produce` must be cheap and must not touch the network: it runs for every block a
///   Bitswap peer asks about.
/// - `produce` returns only bytes that hash to `cid`.
/// - `produce` must not ask Bitswap (which could ask this producer again on another peer); it
///   reaches other peers by its own protocols.
pub trait Producer: Send + Sync + 'static {
    /// Whether `cid` is one this producer knows how to make.
    fn can_produce(&self, cid: &Cid) -> bool;
    /// Makes the block's bytes.
    fn produce(&self, cid: Cid) -> BoxFuture<'static, Result<Bytes, String>>;
}

/// Where the producer is installed once the layer above has started; shared by the DAG service
/// and the Bitswap server.
pub(crate) type ProducerSlot = Arc<std::sync::OnceLock<Arc<dyn Producer>>>;

/// Local store first, then the producer (for blocks it knows), then the network.
#[derive(Clone)]
pub struct DagService {
    store: Blockstore,
    fetcher: Option<Arc<dyn Fetcher>>,
    producer: ProducerSlot,
    /// Store what the network brings, one block at a time. Off for callers that store fetched
    /// blocks themselves in large batches (`pin add`): one fsync per batch instead of per block.
    store_fetched: bool,
}

impl std::fmt::Debug for DagService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DagService")
            .field("network", &self.fetcher.is_some())
            .finish()
    }
}

impl DagService {
    /// A DAG service over the local store only: a missing block is an error at once, as with
    /// `ipfs --offline`.
    pub fn local(store: Blockstore) -> Self {
        Self {
            store,
            fetcher: None,
            producer: ProducerSlot::default(),
            store_fetched: true,
        }
    }

    /// A DAG service that asks `fetcher` for what the store lacks and keeps what it gets.
    pub fn with_fetcher(store: Blockstore, fetcher: Arc<dyn Fetcher>) -> Self {
        Self {
            store,
            fetcher: Some(fetcher),
            producer: ProducerSlot::default(),
            store_fetched: true,
        }
    }

    /// Tells the network that blocks were stored (after an add or an import), so that peers that
    /// want them are answered.
    pub async fn announce(&self, cids: Vec<Cid>) {
        if let Some(f) = &self.fetcher {
            f.stored(cids).await;
        }
    }

    /// The same service, but blocks fetched from the network are returned without being stored:
    /// the caller stores them (in batches) and then calls [`DagService::announce`].
    pub fn without_storing(&self) -> DagService {
        DagService {
            store_fetched: false,
            ..self.clone()
        }
    }

    /// Shares `slot` as this service's producer slot (the daemon gives the Bitswap server the same).
    pub(crate) fn with_producer_slot(mut self, slot: ProducerSlot) -> Self {
        self.producer = slot;
        self
    }

    /// Installs the producer (once; later calls are ignored).
    pub fn set_producer(&self, producer: Arc<dyn Producer>) {
        let _ = self.producer.set(producer);
    }

    /// The installed producer, if any.
    pub fn producer(&self) -> Option<&Arc<dyn Producer>> {
        self.producer.get()
    }

    /// The local store.
    pub fn store(&self) -> &Blockstore {
        &self.store
    }

    /// The block from the local store, without asking the network.
    pub async fn get_local(&self, cid: &Cid) -> Result<Option<Bytes>, BlockSourceError> {
        if cid.hash().code() == IDENTITY {
            return Ok(Some(Bytes::copy_from_slice(cid.hash().digest())));
        }
        let store = self.store.clone();
        let c = *cid;
        let res = tokio::task::spawn_blocking(move || store.get(&c))
            .await
            .map_err(|e| BlockSourceError::Failed {
                cid: *cid,
                reason: format!("store task failed: {e}"),
            })?;
        match res {
            Ok(v) => Ok(v),
            // A corrupt block has been moved aside by the store: treat it as missing so that the
            // network (or reconstruction) can bring a good copy.
            Err(GetError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(BlockSourceError::Failed {
                cid: *cid,
                reason: e.to_string(),
            }),
        }
    }
}

impl BlockSource for DagService {
    async fn get(&self, cid: &Cid) -> Result<Bytes, BlockSourceError> {
        if let Some(bytes) = self.get_local(cid).await? {
            return Ok(bytes);
        }
        let block = match self.producer.get().filter(|p| p.can_produce(cid)) {
            Some(p) => {
                let data = p
                    .produce(*cid)
                    .await
                    .map_err(|reason| BlockSourceError::Failed { cid: *cid, reason })?;
                Block::new_unchecked(*cid, data)
            }
            None => {
                let Some(fetcher) = &self.fetcher else {
                    return Err(BlockSourceError::NotFound { cid: *cid });
                };
                fetcher.fetch(*cid).await?
            }
        };
        if !self.store_fetched {
            return Ok(block.into_parts().1);
        }
        let store = self.store.clone();
        let b = block.clone();
        tokio::task::spawn_blocking(move || store.put_many_cold(std::slice::from_ref(&b)))
            .await
            .map_err(|e| BlockSourceError::Failed {
                cid: *cid,
                reason: format!("store task failed: {e}"),
            })?
            .map_err(|e| BlockSourceError::Failed {
                cid: *cid,
                reason: e.to_string(),
            })?;
        if let Some(fetcher) = &self.fetcher {
            fetcher.stored(vec![*cid]).await;
        }
        Ok(block.into_parts().1)
    }
}
