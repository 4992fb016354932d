//! Bitswap serves from the blockstore.

use bytes::Bytes;
use cid::Cid;
use tessera_bitswap_ec::bitswap::{BlockProvider, ProviderError};
use tessera_blockstore::{Blockstore, GetError};

/// The local blockstore as Bitswap's block source. Reads run on the blocking pool; a block that
/// fails verification is moved aside by the store and reported as missing, never served.
pub(crate) struct StoreProvider {
    pub(crate) store: Blockstore,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> ProviderError {
    ProviderError::Unavailable(Box::new(e))
}

impl BlockProvider for StoreProvider {
    async fn has(&self, cid: Cid) -> Result<bool, ProviderError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.has(&cid))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    async fn get(&self, cid: Cid) -> Result<Option<Bytes>, ProviderError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.get(&cid))
            .await
            .map_err(unavailable)?
        {
            Ok(v) => Ok(v),
            Err(GetError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}
