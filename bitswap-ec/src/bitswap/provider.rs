//! Where the server takes the blocks it serves from.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use futures::future::BoxFuture;

/// The blocks this node can serve: the node implements it over its
/// blockstore, and the erasure-coding engine can answer for blocks that are
/// not on disk but can be rebuilt.
///
/// # To ensure correctness
///
/// - `get` returns the exact bytes named by `cid` (the server does not hash
///   them again); a block that fails verification on read must be reported
///   as missing (`Ok(None)`), never served.
/// - `has` returning `true` is a promise that `get` will produce the block
///   soon: peers that hear HAVE ask for the block next. A block that can be
///   reconstructed counts as had.
/// - Both may be called many times for the same CID and concurrently, from
///   tokio tasks: do blocking I/O through `spawn_blocking`, never inline.
/// - An `Err` is logged and answered as DONT_HAVE; it does not stop serving.
pub trait BlockProvider: Send + Sync + 'static {
    /// Whether the block can be served.
    fn has(&self, cid: Cid) -> impl Future<Output = Result<bool, ProviderError>> + Send;

    /// The block's bytes, or `None` if it cannot be served.
    fn get(&self, cid: Cid) -> impl Future<Output = Result<Option<Bytes>, ProviderError>> + Send;
}

/// Why the provider could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The store failed; the peer is told DONT_HAVE.
    #[error("block provider failed, check the blockstore: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// [`BlockProvider`] behind a pointer, so that the behaviour is not generic.
pub(crate) trait DynProvider: Send + Sync + 'static {
    fn has_boxed(&self, cid: Cid) -> BoxFuture<'_, Result<bool, ProviderError>>;
    fn get_boxed(&self, cid: Cid) -> BoxFuture<'_, Result<Option<Bytes>, ProviderError>>;
}

impl<P: BlockProvider> DynProvider for P {
    fn has_boxed(&self, cid: Cid) -> BoxFuture<'_, Result<bool, ProviderError>> {
        Box::pin(self.has(cid))
    }

    fn get_boxed(&self, cid: Cid) -> BoxFuture<'_, Result<Option<Bytes>, ProviderError>> {
        Box::pin(self.get(cid))
    }
}

pub(crate) type SharedProvider = Arc<dyn DynProvider>;

/// Serves nothing: for a node that only fetches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBlocks;

impl BlockProvider for NoBlocks {
    async fn has(&self, _cid: Cid) -> Result<bool, ProviderError> {
        Ok(false)
    }

    async fn get(&self, _cid: Cid) -> Result<Option<Bytes>, ProviderError> {
        Ok(None)
    }
}
