//! An in-memory [`BlockProvider`], for tests, benchmarks and small tools.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use cid::Cid;
use tessera_blockstore::Block;

use super::provider::{BlockProvider, ProviderError};

/// Blocks held in memory. Cloning shares the same map.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlocks {
    blocks: Arc<RwLock<HashMap<Cid, Bytes>>>,
}

impl MemoryBlocks {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a block. The caller vouches that its bytes match its CID.
    pub fn insert(&self, block: Block) {
        let (cid, data) = block.into_parts();
        self.write().insert(cid, data);
    }

    /// Removes a block.
    pub fn remove(&self, cid: &Cid) -> Option<Bytes> {
        self.write().remove(cid)
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True if no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A block's bytes.
    pub fn block(&self, cid: &Cid) -> Option<Bytes> {
        self.read().get(cid).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Cid, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is one insert or remove), so a poisoned lock is usable.
        self.blocks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Cid, Bytes>> {
        self.blocks.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl BlockProvider for MemoryBlocks {
    async fn has(&self, cid: Cid) -> Result<bool, ProviderError> {
        Ok(self.read().contains_key(&cid))
    }

    async fn get(&self, cid: Cid) -> Result<Option<Bytes>, ProviderError> {
        Ok(self.block(&cid))
    }
}

#[cfg(test)]
mod tests {
    use tessera_blockstore::RAW;

    use super::*;

    #[tokio::test]
    async fn serves_what_was_inserted() {
        let m = MemoryBlocks::new();
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"x"));
        assert!(!m.has(*b.cid()).await.unwrap());
        m.insert(b.clone());
        assert!(m.has(*b.cid()).await.unwrap());
        assert_eq!(m.get(*b.cid()).await.unwrap(), Some(b.data().clone()));
        assert_eq!(m.len(), 1);
        m.remove(b.cid());
        assert!(m.is_empty());
    }
}
