//! Bitswap serves from the blockstore.

use bytes::Bytes;
use cid::Cid;
use tessera_bitswap_ec::bitswap::{BlockProvider, ProviderError};
use tessera_blockstore::{Blockstore, GetError};

use crate::dag::ProducerSlot;

/// The local blockstore as Bitswap's block source. Reads run on the blocking pool; a block that
/// fails verification is moved aside by the store and reported as missing, never served. Blocks
/// the store lacks but the producer can make (erasure-coded cells of dead peers) are made, so that
/// Kubo and Helia peers get them without knowing.
pub(crate) struct StoreProvider {
    pub(crate) store: Blockstore,
    pub(crate) producer: ProducerSlot,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> ProviderError {
    ProviderError::Unavailable(Box::new(e))
}

impl BlockProvider for StoreProvider {
    async fn has(&self, cid: Cid) -> Result<bool, ProviderError> {
        let store = self.store.clone();
        let here = tokio::task::spawn_blocking(move || store.has(&cid))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        Ok(here || self.producer.get().is_some_and(|p| p.can_produce(&cid)))
    }

    async fn get(&self, cid: Cid) -> Result<Option<Bytes>, ProviderError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.get(&cid))
            .await
            .map_err(unavailable)?
        {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) | Err(GetError::Corrupt { .. }) => match self.producer.get() {
                Some(p) if p.can_produce(&cid) => match p.produce(cid).await {
                    Ok(data) => Ok(Some(data)),
                    Err(reason) => {
                        tracing::debug!(%cid, %reason, "cannot make a block a peer wants");
                        Ok(None)
                    }
                },
                _ => Ok(None),
            },
            Err(e) => Err(unavailable(e)),
        }
    }
}
