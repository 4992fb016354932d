//! The async side: fetch blocks, open sessions, read statistics. A
//! [`Handle`] talks to the [`Behaviour`](super::Behaviour) over a bounded
//! channel; the behaviour does the work while the swarm is polled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::{Stream, StreamExt};
use libp2p::PeerId;
use tessera_blockstore::{Block, IDENTITY};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::client::{SessionId, WaiterId};
use super::stats::{PeerLedger, Stats};

/// Why a block could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The behaviour is gone: the swarm that drove it was dropped.
    #[error("bitswap is not running: its swarm was stopped; restart the node")]
    Stopped,
    /// No connected peer delivered the block in time.
    #[error(
        "no peer delivered block {cid} within {after:?}; connect to a peer that has it and retry"
    )]
    Timeout {
        /// The block.
        cid: Cid,
        /// The session's timeout.
        after: Duration,
    },
}

/// Requests from handles to the behaviour.
pub(crate) enum Command {
    Want {
        cid: Cid,
        session: SessionId,
        waiter: WaiterId,
        tx: oneshot::Sender<Block>,
    },
    Cancel {
        cid: Cid,
        waiter: WaiterId,
    },
    CloseSession(SessionId),
    NewBlocks(Vec<Cid>),
    Stats(oneshot::Sender<Stats>),
    PeerWantlist(PeerId, oneshot::Sender<Vec<Cid>>),
    Ledger(PeerId, oneshot::Sender<PeerLedger>),
}

struct Shared {
    commands: mpsc::Sender<Command>,
    /// One permit per block wanted at once (`max_client_wants`).
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    window: usize,
}

/// Fetches blocks over Bitswap and reports on the engine. Cheap to clone.
///
/// Blocks come back verified (their bytes hash to their CID) and are not
/// stored: the caller stores them, then calls [`Handle::notify_new_blocks`]
/// so that peers waiting for them are served.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// Withdraws a want if the caller's future is dropped before the block
/// arrives. If the command channel is full, the behaviour's periodic sweep
/// finds the closed waiter instead.
struct CancelOnDrop {
    commands: mpsc::Sender<Command>,
    cid: Cid,
    waiter: WaiterId,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.try_send(Command::Cancel {
                cid: self.cid,
                waiter: self.waiter,
            });
        }
    }
}

impl Handle {
    pub(crate) fn new(commands: mpsc::Sender<Command>, max_wants: usize, window: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                commands,
                permits: Arc::new(Semaphore::new(max_wants)),
                next_id: AtomicU64::new(1),
                window,
            }),
        }
    }

    fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Fetches one block from connected peers. Waits until some peer
    /// delivers it: wrap it in `tokio::time::timeout`, or use a
    /// [`Session`] with a timeout. Dropping the future withdraws the want.
    pub async fn get(&self, cid: Cid) -> Result<Block, FetchError> {
        self.fetch(cid, 0).await
    }

    async fn fetch(&self, cid: Cid, session: SessionId) -> Result<Block, FetchError> {
        if cid.hash().code() == IDENTITY {
            // The "hash" is the data: nothing to fetch.
            return Ok(Block::new_unchecked(
                cid,
                Bytes::copy_from_slice(cid.hash().digest()),
            ));
        }
        let _permit = self
            .shared
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FetchError::Stopped)?;
        let waiter = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Want {
                cid,
                session,
                waiter,
                tx,
            })
            .await
            .map_err(|_| FetchError::Stopped)?;
        let mut guard = CancelOnDrop {
            commands: self.shared.commands.clone(),
            cid,
            waiter,
            armed: true,
        };
        let block = rx.await.map_err(|_| FetchError::Stopped)?;
        guard.armed = false;
        Ok(block)
    }

    /// A session: fetches of related blocks (one DAG) that learn which
    /// peers deliver and ask those first.
    pub fn session(&self) -> Session {
        Session {
            handle: self.clone(),
            id: self.next_id(),
            timeout: None,
        }
    }

    /// Tells the engine that these blocks are now stored, so that peers
    /// that asked for them and were told DONT_HAVE get them.
    pub async fn notify_new_blocks(&self, cids: Vec<Cid>) -> Result<(), FetchError> {
        self.shared
            .commands
            .send(Command::NewBlocks(cids))
            .await
            .map_err(|_| FetchError::Stopped)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, FetchError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(make(tx))
            .await
            .map_err(|_| FetchError::Stopped)?;
        rx.await.map_err(|_| FetchError::Stopped)
    }

    /// Counters and the current wantlist (`ipfs bitswap stat`).
    pub async fn stats(&self) -> Result<Stats, FetchError> {
        self.ask(Command::Stats).await
    }

    /// Blocks this node is fetching (`ipfs bitswap wantlist`).
    pub async fn wantlist(&self) -> Result<Vec<Cid>, FetchError> {
        Ok(self.stats().await?.wantlist)
    }

    /// Blocks `peer` wants from this node (`ipfs bitswap wantlist --peer`).
    pub async fn peer_wantlist(&self, peer: PeerId) -> Result<Vec<Cid>, FetchError> {
        self.ask(|tx| Command::PeerWantlist(peer, tx)).await
    }

    /// What was exchanged with `peer` (`ipfs bitswap ledger`).
    pub async fn ledger(&self, peer: PeerId) -> Result<PeerLedger, FetchError> {
        self.ask(|tx| Command::Ledger(peer, tx)).await
    }
}

/// Related fetches. Dropping it forgets the peers it learned.
#[derive(Debug)]
pub struct Session {
    handle: Handle,
    id: SessionId,
    timeout: Option<Duration>,
}

impl Session {
    /// Gives every fetch of this session a deadline, after which it fails
    /// with [`FetchError::Timeout`]. No deadline by default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Fetches one block within this session.
    pub async fn get(&self, cid: Cid) -> Result<Block, FetchError> {
        fetch_in(self.handle.clone(), self.id, self.timeout, cid).await
    }

    /// Fetches many blocks, yielding them in the order given, with up to
    /// `session_window` requests in flight ahead of the one yielded next.
    pub fn get_many<I>(
        &self,
        cids: I,
    ) -> impl Stream<Item = Result<Block, FetchError>> + Send + 'static
    where
        I: IntoIterator<Item = Cid>,
        I::IntoIter: Send + 'static,
    {
        let handle = self.handle.clone();
        let (id, timeout) = (self.id, self.timeout);
        let window = handle.shared.window;
        futures::stream::iter(cids)
            .map(move |cid| fetch_in(handle.clone(), id, timeout, cid))
            .buffered(window)
    }
}

async fn fetch_in(
    handle: Handle,
    session: SessionId,
    timeout: Option<Duration>,
    cid: Cid,
) -> Result<Block, FetchError> {
    match timeout {
        None => handle.fetch(cid, session).await,
        Some(after) => tokio::time::timeout(after, handle.fetch(cid, session))
            .await
            .map_err(|_| FetchError::Timeout { cid, after })?,
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self
            .handle
            .shared
            .commands
            .try_send(Command::CloseSession(self.id));
    }
}
