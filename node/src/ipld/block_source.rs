//! Where exporters get blocks from: a trait the DAG service implements.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use tessera_blockstore::{Block, IDENTITY};

/// Why a block could not be had, grouped by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockSourceError {
    /// Nobody that the source asked has the block. Retrying will not help
    /// until a peer that holds it comes online.
    #[error("block {cid} was not found locally or on the network")]
    NotFound {
        /// The block asked for.
        cid: Cid,
    },
    /// The source gave up waiting. Retrying may help.
    #[error("timed out fetching block {cid}; check connectivity to peers that hold it and retry")]
    Timeout {
        /// The block asked for.
        cid: Cid,
    },
    /// Anything else (storage failure, shutdown). The message says what.
    #[error("could not get block {cid}: {reason}")]
    Failed {
        /// The block asked for.
        cid: Cid,
        /// What went wrong, for the user.
        reason: String,
    },
}

/// Something that returns the bytes of a block by CID: the local store, the
/// network, reconstruction from erasure-coded columns, or all of them in turn.
///
/// # To ensure correctness
///
/// - Return only bytes that hash to `cid`: exporters trust them and do not
///   hash again (that would halve `cat` throughput). A source that reads from
///   the network or from disk must verify.
/// - `get` may be called many times concurrently (exporters read ahead) and
///   several times for the same CID; it must not hold locks across awaits that
///   would serialise those calls.
/// - Dropping the returned future cancels the request: exporters drop
///   read-ahead requests when their consumer goes away.
pub trait BlockSource: Send + Sync {
    /// Returns the block's bytes.
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, BlockSourceError>> + Send;
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, BlockSourceError>> + Send {
        (**self).get(cid)
    }
}

impl<T: BlockSource + ?Sized> BlockSource for Arc<T> {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, BlockSourceError>> + Send {
        (**self).get(cid)
    }
}

/// Gets a block, answering identity-hash CIDs (whose data is the digest
/// itself) without asking the source.
pub(crate) async fn get_block<S: BlockSource>(
    source: &S,
    cid: &Cid,
) -> Result<Bytes, BlockSourceError> {
    if cid.hash().code() == IDENTITY {
        return Ok(Bytes::copy_from_slice(cid.hash().digest()));
    }
    source.get(cid).await
}

/// Blocks held in memory: for tests, benchmarks and small in-process DAGs.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlocks {
    blocks: HashMap<Cid, Bytes>,
}

impl MemoryBlocks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a block (replacing one with the same CID).
    pub fn insert(&mut self, block: Block) {
        let (cid, data) = block.into_parts();
        self.blocks.insert(cid, data);
    }

    /// Removes a block, so that tests can see what a missing block does.
    pub fn remove(&mut self, cid: &Cid) -> Option<Bytes> {
        self.blocks.remove(cid)
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Total bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.blocks.values().map(|b| b.len() as u64).sum()
    }
}

impl Extend<Block> for MemoryBlocks {
    fn extend<I: IntoIterator<Item = Block>>(&mut self, iter: I) {
        for block in iter {
            self.insert(block);
        }
    }
}

impl FromIterator<Block> for MemoryBlocks {
    fn from_iter<I: IntoIterator<Item = Block>>(iter: I) -> Self {
        let mut m = Self::new();
        m.extend(iter);
        m
    }
}

impl BlockSource for MemoryBlocks {
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Bytes, BlockSourceError>> + Send {
        let found = self
            .blocks
            .get(cid)
            .cloned()
            .ok_or(BlockSourceError::NotFound { cid: *cid });
        std::future::ready(found)
    }
}

#[cfg(test)]
mod tests {
    use multihash::Multihash;
    use tessera_blockstore::RAW;

    use super::*;

    #[tokio::test]
    async fn identity_cids_need_no_source() {
        let mh = Multihash::<64>::wrap(IDENTITY, b"inline").unwrap();
        let cid = Cid::new_v1(RAW, mh);
        let empty = MemoryBlocks::new();
        assert_eq!(
            get_block(&empty, &cid).await.unwrap(),
            Bytes::from_static(b"inline")
        );
    }

    #[tokio::test]
    async fn memory_blocks_find_what_was_inserted() {
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"x"));
        let mut m = MemoryBlocks::new();
        assert_eq!(
            get_block(&m, b.cid()).await,
            Err(BlockSourceError::NotFound { cid: *b.cid() })
        );
        m.insert(b.clone());
        let shared = Arc::new(m);
        assert_eq!(get_block(&shared, b.cid()).await.unwrap(), *b.data());
    }
}
