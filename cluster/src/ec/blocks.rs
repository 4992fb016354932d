//! The cluster's block protocol, `/tessera/cluster/blocks/1.0.0`: members push the cells, parity,
//! interior and manifest blocks of an erasure-coded pin straight into each other's blockstores,
//! and fetch blocks that a peer holds, without Bitswap's want lists.
//!
//! # Wire format (version 1)
//!
//! Every message is a frame of [`crate::frame`] (a 4-byte big-endian length, then the body); the
//! first byte of a body says what it is. The opener's first frame names the request:
//!
//! - **Push**: `[PUSH]`; the receiver answers `[READY]`; then any number of
//!   `[BLOCK][cid length: u8][cid][data]`, then `[END]`.
//!   The receiver hashes every block, stores them in batches of about 16 MiB (one
//!   `Blockstore::put_many_cold`: one append, one fsync, one index commit) and answers each stored
//!   batch with `[ACK][blocks: u64][bytes: u64]`, the totals stored so far (big-endian). After
//!   `[END]` and the last batch it answers `[DONE][blocks: u64][bytes: u64]` and closes. The
//!   sender keeps at most 32 MiB of block data unacknowledged, which bounds the receiver's memory
//!   and gives back-pressure from its disk.
//! - **Fetch**: `[FETCH]` followed by up to 64 `[cid length: u8][cid]`. The answer goes through
//!   the CIDs in order, `[BLOCK]...` for one the store holds or `[MISSING][cid length][cid]` for
//!   one it does not, and ends with `[END]`. The server may end early once it has sent 64 MiB
//!   (always after at least one block); the client asks again for the CIDs left unanswered.
//!   After `[END]` the stream takes another request (`FETCH` or `PUSH`) until the opener closes
//!   it: fetches reuse idle streams ([`crate::stream_pool`]), since a degraded read asks for
//!   single cells by the thousand.
//!
//! Either side ends a stream it cannot continue with `[ERROR][utf-8 message]`. A malformed frame,
//! a frame over 16 MiB plus the header, or a block whose bytes do not match its CID makes the
//! receiver answer `[ERROR]` and close: nothing is stored past the last acknowledged batch.
//! Streams from peers that are not members are closed unread and logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tessera_blockstore::{Block, Blockstore};
use tokio::sync::{mpsc, watch};

use crate::frame::{read_frame, write_frame};
use crate::stream_pool::{SERVER_IDLE, StreamPool, next_request};

/// The protocol name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/cluster/blocks/1.0.0");

/// First frame of a push session.
/// How long pushed blocks are kept from GC before their pin reaches this peer's tracker, which
/// pins them (see `Blockstore::lease`). An add that has not committed by then has failed, and its
/// blocks are garbage.
pub(crate) const PUSH_LEASE: Duration = Duration::from_secs(3600);

/// Keeps `blocks` from GC for [`PUSH_LEASE`]; taken before they are stored, so that no GC can
/// fall between the write and the lease.
pub(crate) fn lease(store: &Blockstore, blocks: &[Block]) {
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    store.lease(&cids, std::time::Instant::now() + PUSH_LEASE);
}

const PUSH: u8 = 1;
/// First byte of a fetch request.
const FETCH: u8 = 2;
/// A block: CID and bytes.
const BLOCK: u8 = 3;
/// The end of a push, or of a fetch answer.
const END: u8 = 4;
/// Blocks and bytes durable so far.
const ACK: u8 = 5;
/// Every block of the push is durable; the last frame of a push.
const DONE: u8 = 6;
/// A fetched CID the store does not have.
const MISSING: u8 = 7;
/// The stream ends with this message.
const ERROR: u8 = 8;
/// The receiver of a push has the stream and takes blocks.
const READY: u8 = 9;

/// The largest cell docs/erasure-coding.md allows; no block of a pin is larger.
const MAX_BLOCK: usize = 16 << 20;
/// Frames carry a kind byte, a CID length byte and a CID besides the block.
const MAX_FRAME: usize = MAX_BLOCK + 2 + u8::MAX as usize;
/// Unacknowledged block bytes a sender may have on one stream.
const WINDOW: u64 = 32 << 20;
/// A receiver stores a batch once it holds this many bytes (one fsync each).
const BATCH_BYTES: usize = 16 << 20;
/// ... or this many blocks, so that a stream of tiny blocks is acknowledged too.
const BATCH_BLOCKS: usize = 4096;
/// CIDs per fetch request.
const FETCH_CIDS: usize = 64;
/// Block bytes per fetch answer.
const FETCH_BYTES: usize = 64 << 20;
/// Opening a stream (dialling included).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A sender waiting for acknowledgements gives up after this long without one.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a failed write waits for the peer's reason (see `PushSession::write_failure`).
const WRITE_FAILURE_WAIT: Duration = Duration::from_secs(5);
/// Pause before a retry, times the attempt: the peer's queue of inbound streams needs its
/// accepting task to run before it takes another.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Tries to open a push whose stream is lost before the peer's `READY`.
const PUSH_ATTEMPTS: u32 = 3;
/// Tries of one fetch request whose stream broke.
const FETCH_ATTEMPTS: u32 = 3;
/// One fetch round trip, answer included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// A receiver drops a push that sent nothing for this long: the sender may legitimately pause
/// while the walk fetches the DAG from the network, so this is long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The first frame of a stream must come quickly.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a block exchange with a peer failed, grouped by what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BlockError {
    /// No stream could be opened; the peer may be down or not connected.
    #[error("cannot reach peer {peer} for blocks: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    /// The peer answered with an error or closed the stream (it may not count us as a member).
    #[error("peer {peer} refused the blocks: {reason}")]
    Refused { peer: PeerId, reason: String },
    /// The peer stopped answering.
    #[error(
        "peer {peer} did not answer within {after:?}; it may be overloaded or gone, retry later"
    )]
    Timeout { peer: PeerId, after: Duration },
    /// The stream broke in the middle of the exchange.
    #[error("the block stream with peer {peer} broke: {reason}; retry")]
    Broken { peer: PeerId, reason: String },
    /// The peer sent something the protocol does not allow (a bad block, a malformed frame).
    #[error("peer {peer} broke the block protocol: {reason}")]
    Protocol { peer: PeerId, reason: String },
    /// A block that no peer would accept.
    #[error("block {cid} is {size} bytes, over the 16 MiB limit of an erasure-coded cell")]
    TooLarge { cid: Cid, size: usize },
}

/// Opens push sessions and fetches to other members over the swarm.
#[derive(Clone)]
pub(crate) struct BlockClient {
    /// Pushes open fresh streams (one per session); fetches reuse idle ones.
    pool: Arc<StreamPool>,
}

impl BlockClient {
    pub(crate) fn new(control: libp2p_stream::Control) -> Self {
        BlockClient {
            pool: Arc::new(StreamPool::new(control, PROTOCOL)),
        }
    }

    async fn open(&self, peer: PeerId) -> Result<Stream, BlockError> {
        match tokio::time::timeout(OPEN_TIMEOUT, self.pool.open(peer)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                Err(BlockError::Refused {
                    peer,
                    reason: format!("it does not speak {PROTOCOL} (is it a tessera cluster peer?)"),
                })
            }
            Ok(Err(e)) => Err(BlockError::Unreachable {
                peer,
                reason: e.to_string(),
            }),
            Err(_) => Err(BlockError::Timeout {
                peer,
                after: OPEN_TIMEOUT,
            }),
        }
    }

    /// Opens a push session to `peer`: blocks go in order over one stream, with back-pressure
    /// from the peer's disk; the peer verifies and stores them durably in batches.
    ///
    /// The peer answers `READY` before any block is sent. Why: its stream behaviour drops an
    /// inbound stream that finds its small queue full (libp2p-stream 0.5 queues one), which the
    /// sender would otherwise see only as a reset in the middle of its blocks. A stream lost that
    /// way before `READY` is simply opened again.
    pub(crate) async fn push(&self, peer: PeerId) -> Result<PushSession, BlockError> {
        let mut attempt = 1;
        let stream = loop {
            match self.open_push(peer).await {
                Ok(s) => break s,
                Err(e @ (BlockError::Broken { .. } | BlockError::Refused { .. }))
                    if attempt < PUSH_ATTEMPTS =>
                {
                    tracing::debug!(%peer, error = %e, attempt, "push stream lost before READY; opening another");
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let (reader, writer) = stream.split();
        let (tx, acks) = watch::channel(Acks::default());
        let task = tokio::spawn(read_acks(reader, tx));
        Ok(PushSession {
            peer,
            writer,
            acks,
            _reader: AbortOnDrop(task),
            sent_blocks: 0,
            sent_bytes: 0,
        })
    }

    /// Opens a stream, asks for a push and waits for the peer's `READY`.
    async fn open_push(&self, peer: PeerId) -> Result<Stream, BlockError> {
        let mut stream = self.open(peer).await?;
        write_frame(&mut stream, &[PUSH])
            .await
            .map_err(|e| broken(peer, &e))?;
        let frame =
            match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream, 64 << 10)).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => return Err(read_failure(peer, &e)),
                Err(_) => {
                    return Err(BlockError::Timeout {
                        peer,
                        after: REQUEST_TIMEOUT,
                    });
                }
            };
        match frame.split_first() {
            Some((&READY, [])) => Ok(stream),
            Some((&ERROR, reason)) => Err(refused(peer, reason)),
            _ => Err(protocol(peer, "expected READY to a push".into())),
        }
    }

    /// Fetches the blocks among `cids` that `peer` holds in its blockstore, verified against their
    /// CIDs; absent ones are missing from the result. Asks at most 64 CIDs / 64 MiB per round
    /// trip.
    pub(crate) async fn fetch(&self, peer: PeerId, cids: &[Cid]) -> Result<Vec<Block>, BlockError> {
        let mut out = Vec::new();
        let mut rest = cids;
        while !rest.is_empty() {
            let ask = &rest[..rest.len().min(FETCH_CIDS)];
            let mut attempt = 1;
            let (blocks, answered) = loop {
                match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_round(peer, ask)).await {
                    Ok(Ok(r)) => break r,
                    // The peer's stream behaviour dropped the stream from its full queue of
                    // inbound streams (libp2p-stream 0.5 queues one): the opener sees a reset
                    // (yamux words it "connection is closed") or a close, the same close that a
                    // peer which does not count us as a member gives. A new stream usually
                    // works, and a degraded read may need this very cell.
                    Ok(Err(e @ (BlockError::Broken { .. } | BlockError::Refused { .. })))
                        if attempt < FETCH_ATTEMPTS =>
                    {
                        tracing::debug!(%peer, error = %e, attempt, "block fetch lost its stream; retrying");
                        tokio::time::sleep(RETRY_PAUSE * attempt).await;
                        attempt += 1;
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(BlockError::Timeout {
                            peer,
                            after: FETCH_TIMEOUT,
                        });
                    }
                }
            };
            out.extend(blocks);
            rest = &rest[answered..];
        }
        Ok(out)
    }

    /// One request on an idle stream if there is one, else on a new one; a reused stream that
    /// fails (its server may have closed it while it sat idle) is replaced by a new one at once.
    /// The blocks found, and how many of `ask` were answered (a prefix, at least 1).
    async fn fetch_round(
        &self,
        peer: PeerId,
        ask: &[Cid],
    ) -> Result<(Vec<Block>, usize), BlockError> {
        self.pool
            .exchange(
                peer,
                || self.open(peer),
                |stream| self.fetch_on(peer, stream, ask),
            )
            .await
    }

    /// One fetch request and its whole answer on `stream`, which is handed back for reuse.
    async fn fetch_on(
        &self,
        peer: PeerId,
        mut stream: Stream,
        ask: &[Cid],
    ) -> Result<(Stream, (Vec<Block>, usize)), BlockError> {
        let mut request = vec![FETCH];
        for cid in ask {
            put_cid(&mut request, cid);
        }
        write_frame(&mut stream, &request)
            .await
            .map_err(|e| broken(peer, &e))?;
        let mut found = Vec::new();
        let mut answered = 0;
        loop {
            let frame = read_frame(&mut stream, MAX_FRAME)
                .await
                .map_err(|e| read_failure(peer, &e))?;
            match frame.first().copied() {
                Some(BLOCK) => {
                    let (cid, data) = parse_block(frame).map_err(|r| protocol(peer, r))?;
                    expect_next(peer, ask, answered, &cid)?;
                    found.push(Block::new_unchecked(cid, data));
                    answered += 1;
                }
                Some(MISSING) => {
                    let cid = parse_cid(&frame[1..]).map_err(|r| protocol(peer, r))?.0;
                    expect_next(peer, ask, answered, &cid)?;
                    answered += 1;
                }
                Some(END) => break,
                Some(ERROR) => return Err(refused(peer, &frame[1..])),
                _ => return Err(protocol(peer, "unexpected frame in a fetch answer".into())),
            }
        }
        if answered == 0 {
            return Err(protocol(
                peer,
                "a fetch answer named none of the CIDs asked".into(),
            ));
        }
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<Block>, String> {
            for b in &found {
                tessera_blockstore::verify(b.cid(), b.data()).map_err(|e| e.to_string())?;
            }
            Ok(found)
        })
        .await
        .map_err(|e| broken(peer, &e))?
        .map_err(|r| protocol(peer, r))?;
        Ok((stream, (found, answered)))
    }
}

/// Checks that the answer goes through the CIDs asked, in order.
fn expect_next(peer: PeerId, ask: &[Cid], answered: usize, cid: &Cid) -> Result<(), BlockError> {
    match ask.get(answered) {
        Some(want) if want == cid => Ok(()),
        _ => Err(protocol(
            peer,
            format!("answered {cid}, which was not the next CID asked"),
        )),
    }
}

/// What the receiver acknowledged so far, as the stream's reader task sees it.
#[derive(Debug, Clone, Default)]
struct Acks {
    blocks: u64,
    bytes: u64,
    done: bool,
    failed: Option<Failure>,
}

#[derive(Debug, Clone)]
enum Failure {
    Refused(String),
    Broken(String),
    Protocol(String),
}

impl Failure {
    fn into_error(self, peer: PeerId) -> BlockError {
        match self {
            Failure::Refused(reason) => BlockError::Refused { peer, reason },
            Failure::Broken(reason) => BlockError::Broken { peer, reason },
            Failure::Protocol(reason) => BlockError::Protocol { peer, reason },
        }
    }
}

/// Aborts the task when dropped: a push session that is dropped must not leave its reader (and
/// with it the stream) alive.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An open push to one peer. Dropping it without [`PushSession::finish`] abandons the push: the
/// peer keeps what it acknowledged, and the caller must not count on any of it.
pub(crate) struct PushSession {
    peer: PeerId,
    writer: WriteHalf<Stream>,
    acks: watch::Receiver<Acks>,
    _reader: AbortOnDrop,
    sent_blocks: u64,
    sent_bytes: u64,
}

impl PushSession {
    /// Sends one block; waits while the peer has a full window of unacknowledged bytes.
    pub(crate) async fn send(&mut self, block: Block) -> Result<(), BlockError> {
        let len = block.data().len();
        if len > MAX_BLOCK {
            return Err(BlockError::TooLarge {
                cid: *block.cid(),
                size: len,
            });
        }
        self.wait_for_room(len as u64).await?;
        if let Err(e) = write_block(&mut self.writer, block.cid(), block.data()).await {
            return Err(self.write_failure(&e).await);
        }
        self.sent_blocks += 1;
        self.sent_bytes += len as u64;
        Ok(())
    }

    /// Ends the session; returns once the peer acknowledged that every block sent is durable,
    /// with their count.
    pub(crate) async fn finish(mut self) -> Result<u64, BlockError> {
        if let Err(e) = write_frame(&mut self.writer, &[END]).await {
            return Err(self.write_failure(&e).await);
        }
        loop {
            let acks = self.acks.borrow_and_update().clone();
            if let Some(f) = acks.failed {
                return Err(f.into_error(self.peer));
            }
            if acks.done {
                if (acks.blocks, acks.bytes) != (self.sent_blocks, self.sent_bytes) {
                    return Err(protocol(
                        self.peer,
                        format!(
                            "it stored {} blocks ({} bytes) of the {} ({} bytes) sent",
                            acks.blocks, acks.bytes, self.sent_blocks, self.sent_bytes
                        ),
                    ));
                }
                let _ = self.writer.close().await;
                return Ok(acks.blocks);
            }
            self.wait_for_ack().await?;
        }
    }

    /// Waits until `len` more bytes fit in the window (a block larger than the whole window is
    /// sent alone).
    async fn wait_for_room(&mut self, len: u64) -> Result<(), BlockError> {
        loop {
            let acks = self.acks.borrow_and_update().clone();
            if let Some(f) = acks.failed {
                return Err(f.into_error(self.peer));
            }
            let in_flight = self.sent_bytes.saturating_sub(acks.bytes);
            if in_flight == 0 || in_flight + len <= WINDOW {
                return Ok(());
            }
            self.wait_for_ack().await?;
        }
    }

    async fn wait_for_ack(&mut self) -> Result<(), BlockError> {
        match tokio::time::timeout(ACK_TIMEOUT, self.acks.changed()).await {
            Ok(Ok(())) => Ok(()),
            // The reader ended without saying why (it always records a failure, so this is a
            // panic or an abort).
            Ok(Err(_)) => Err(self.failure_or(BlockError::Broken {
                peer: self.peer,
                reason: "the acknowledgement reader stopped".into(),
            })),
            Err(_) => Err(BlockError::Timeout {
                peer: self.peer,
                after: ACK_TIMEOUT,
            }),
        }
    }

    /// Why a write failed. The peer that refuses a block answers with a reason and ends the
    /// stream, and a write can fail before the reader task has read that reason: wait for the
    /// reader (briefly; it records a failure whenever the stream ends) rather than report a bare
    /// broken stream.
    async fn write_failure(&mut self, e: &std::io::Error) -> BlockError {
        let otherwise = broken(self.peer, e);
        let reported = self.acks.wait_for(|a| a.failed.is_some());
        let failed = match tokio::time::timeout(WRITE_FAILURE_WAIT, reported).await {
            Ok(Ok(a)) => a.failed.clone(),
            _ => None,
        };
        match failed {
            Some(f) => f.into_error(self.peer),
            None => self.failure_or(otherwise),
        }
    }

    /// The failure the peer reported, which explains a broken write better than the write does.
    fn failure_or(&self, otherwise: BlockError) -> BlockError {
        match self.acks.borrow().failed.clone() {
            Some(f) => f.into_error(self.peer),
            None => otherwise,
        }
    }
}

/// Reads acknowledgements until `DONE` or a failure, publishing each.
async fn read_acks(mut reader: ReadHalf<Stream>, tx: watch::Sender<Acks>) {
    loop {
        let frame = match read_frame(&mut reader, 64 << 10).await {
            Ok(f) => f,
            Err(e) => {
                let failure = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Failure::Refused(
                        "it closed the stream before storing every block (is this peer a member of the cluster?)"
                            .into(),
                    )
                } else {
                    Failure::Broken(e.to_string())
                };
                tx.send_modify(|a| a.failed = Some(failure));
                return;
            }
        };
        match (frame.first().copied(), parse_totals(&frame)) {
            (Some(kind @ (ACK | DONE)), Some((blocks, bytes))) => {
                tx.send_modify(|a| {
                    a.blocks = blocks;
                    a.bytes = bytes;
                    a.done = kind == DONE;
                });
                if kind == DONE {
                    return;
                }
            }
            (Some(ERROR), _) => {
                let msg = String::from_utf8_lossy(&frame[1..]).into_owned();
                tx.send_modify(|a| a.failed = Some(Failure::Refused(msg)));
                return;
            }
            _ => {
                tx.send_modify(|a| {
                    a.failed = Some(Failure::Protocol("malformed acknowledgement".into()))
                });
                return;
            }
        }
    }
}

/// Serves pushes and fetches until the swarm stops. `allowed` is the membership gate; `stored` is
/// told the CIDs of each durable batch (the caller tells Bitswap).
pub(crate) async fn serve(
    mut control: libp2p_stream::Control,
    store: Blockstore,
    allowed: Arc<dyn Fn(&PeerId) -> bool + Send + Sync>,
    stored: Arc<dyn Fn(Vec<Cid>) + Send + Sync>,
) {
    let mut incoming = match control.accept(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot accept cluster block streams");
            return;
        }
    };
    // Each stream gets its own task at once: the stream behaviour drops inbound streams that do
    // not fit its small queue.
    while let Some((peer, mut stream)) = incoming.next().await {
        if !allowed(&peer) {
            tracing::warn!(%peer, protocol = %PROTOCOL, "refused a cluster block stream from a peer that is not a member");
            tokio::spawn(async move {
                let _ = stream.close().await;
            });
            continue;
        }
        let store = store.clone();
        let allowed = allowed.clone();
        let stored = stored.clone();
        tokio::spawn(async move {
            serve_stream(peer, stream, store, allowed, stored).await;
        });
    }
}

/// Answers requests on one stream until the opener closes it, a push takes it over, it goes
/// quiet for [`SERVER_IDLE`], or the opener stops being a member.
async fn serve_stream(
    peer: PeerId,
    mut stream: Stream,
    store: Blockstore,
    allowed: Arc<dyn Fn(&PeerId) -> bool + Send + Sync>,
    stored: Arc<dyn Fn(Vec<Cid>) + Send + Sync>,
) {
    let max_request = 1 + FETCH_CIDS * (1 + u8::MAX as usize);
    // The first request comes right after the stream opens; later ones whenever the opener
    // needs the stream again.
    let mut wait = REQUEST_TIMEOUT;
    while let Some(request) =
        next_request(peer, &PROTOCOL, &mut stream, wait, max_request, &*allowed).await
    {
        match request.split_first() {
            Some((&PUSH, [])) => return receive_push(peer, stream, store, stored).await,
            Some((&FETCH, cids)) => {
                if !answer_fetch(peer, &mut stream, cids, &store).await {
                    return;
                }
            }
            _ => {
                let _ = write_frame(&mut stream, &error_frame("unknown request")).await;
                break;
            }
        }
        wait = SERVER_IDLE;
    }
    let _ = stream.close().await;
}

/// What the reading side of a push hands to the storing side, in stream order.
enum Step {
    Batch(Vec<Block>),
    End,
    Fail(String),
}

/// Reads a push; a second task stores batches and acknowledges them while the next batch
/// arrives, so that the sender never waits for an fsync it could overlap.
async fn receive_push(
    peer: PeerId,
    mut stream: Stream,
    store: Blockstore,
    stored: Arc<dyn Fn(Vec<Cid>) + Send + Sync>,
) {
    if write_frame(&mut stream, &[READY]).await.is_err() {
        return;
    }
    let (mut reader, writer) = stream.split();
    let (tx, rx) = mpsc::channel(1);
    let storing = tokio::spawn(store_batches(peer, writer, rx, store, stored));
    let mut batch: Vec<Block> = Vec::new();
    let mut batch_bytes = 0usize;
    let last = loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut reader, MAX_FRAME))
            .await
        {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "cluster block push ended without its end frame");
                // Nobody to answer: dropping the channel stops the storing side.
                break None;
            }
            Err(_) => break Some(Step::Fail(format!("nothing received for {IDLE_TIMEOUT:?}"))),
        };
        match frame.first().copied() {
            Some(BLOCK) => match parse_block(frame) {
                Ok((cid, data)) => {
                    batch_bytes += data.len();
                    batch.push(Block::new_unchecked(cid, data));
                    if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_BLOCKS {
                        batch_bytes = 0;
                        if tx
                            .send(Step::Batch(std::mem::take(&mut batch)))
                            .await
                            .is_err()
                        {
                            break None;
                        }
                    }
                }
                Err(reason) => break Some(Step::Fail(reason)),
            },
            Some(END) => {
                if !batch.is_empty()
                    && tx
                        .send(Step::Batch(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                {
                    break None;
                }
                break Some(Step::End);
            }
            _ => break Some(Step::Fail("unexpected frame in a push".into())),
        }
    };
    if let Some(step) = last {
        let _ = tx.send(step).await;
    }
    drop(tx);
    let _ = storing.await;
}

async fn store_batches(
    peer: PeerId,
    mut writer: WriteHalf<Stream>,
    mut rx: mpsc::Receiver<Step>,
    store: Blockstore,
    stored: Arc<dyn Fn(Vec<Cid>) + Send + Sync>,
) {
    let (mut blocks, mut bytes) = (0u64, 0u64);
    while let Some(step) = rx.recv().await {
        match step {
            Step::Batch(batch) => {
                let n = batch.len() as u64;
                let size: u64 = batch.iter().map(|b| b.data().len() as u64).sum();
                let store = store.clone();
                let put = tokio::task::spawn_blocking(move || -> Result<Vec<Cid>, String> {
                    for b in &batch {
                        tessera_blockstore::verify(b.cid(), b.data()).map_err(|e| e.to_string())?;
                    }
                    lease(&store, &batch);
                    store
                        .put_many_cold(&batch)
                        .map_err(|e| format!("cannot store the blocks: {e}"))?;
                    Ok(batch.iter().map(|b| *b.cid()).collect())
                })
                .await
                .unwrap_or_else(|e| Err(format!("the store task failed: {e}")));
                match put {
                    Ok(cids) => {
                        blocks += n;
                        bytes += size;
                        stored(cids);
                        if write_frame(&mut writer, &totals(ACK, blocks, bytes))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(%peer, %reason, "refused a cluster block push");
                        let _ = write_frame(&mut writer, &error_frame(&reason)).await;
                        let _ = writer.close().await;
                        return;
                    }
                }
            }
            Step::End => {
                let _ = write_frame(&mut writer, &totals(DONE, blocks, bytes)).await;
                let _ = writer.close().await;
                return;
            }
            Step::Fail(reason) => {
                tracing::warn!(%peer, %reason, "refused a cluster block push");
                let _ = write_frame(&mut writer, &error_frame(&reason)).await;
                let _ = writer.close().await;
                return;
            }
        }
    }
}

/// Answers a fetch from the store, in the order asked, within [`FETCH_BYTES`]. Returns whether the
/// stream may take another request (false: it failed, or an error answer closed it).
async fn answer_fetch(
    peer: PeerId,
    stream: &mut Stream,
    mut request: &[u8],
    store: &Blockstore,
) -> bool {
    let mut cids = Vec::new();
    while !request.is_empty() {
        match parse_cid(request) {
            Ok((cid, rest)) if cids.len() < FETCH_CIDS => {
                cids.push(cid);
                request = rest;
            }
            Ok(_) => {
                let _ = write_frame(stream, &error_frame("too many CIDs in one fetch")).await;
                let _ = stream.close().await;
                return false;
            }
            Err(reason) => {
                tracing::debug!(%peer, %reason, "malformed cluster block fetch");
                let _ = write_frame(stream, &error_frame(&reason)).await;
                let _ = stream.close().await;
                return false;
            }
        }
    }
    let mut budget = FETCH_BYTES;
    let mut sent_any = false;
    for cid in cids {
        let s = store.clone();
        // A corrupt block has been moved aside by the store; like any read failure, the peer
        // must look elsewhere.
        let data = match tokio::task::spawn_blocking(move || s.get(&cid)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::debug!(%cid, error = %e, "cannot read a block a member asked for");
                None
            }
            Err(_) => None,
        };
        let result = match data {
            Some(d) => {
                if sent_any && d.len() > budget {
                    break;
                }
                budget = budget.saturating_sub(d.len());
                sent_any = true;
                write_block(stream, &cid, &d).await
            }
            None => {
                let mut frame = vec![MISSING];
                put_cid(&mut frame, &cid);
                write_frame(stream, &frame).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "cannot answer a cluster block fetch");
            return false;
        }
    }
    write_frame(stream, &[END]).await.is_ok()
}

/// Writes a `BLOCK` frame: the header in one write, the block in another, so that the block's
/// bytes are never copied into a frame buffer.
async fn write_block<W: AsyncWrite + Unpin>(
    w: &mut W,
    cid: &Cid,
    data: &[u8],
) -> std::io::Result<()> {
    let mut head = vec![0, 0, 0, 0, BLOCK];
    put_cid(&mut head, cid);
    let len = u32::try_from(head.len() - 4 + data.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "block over 4 GiB"))?;
    head[..4].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(data).await?;
    w.flush().await
}

/// Appends `[cid length: u8][cid]`. CIDs of sha2-256 are 34 to 36 bytes; a CID over 255 bytes
/// cannot name a block tessera stores, and is written truncated so that the peer refuses it.
fn put_cid(out: &mut Vec<u8>, cid: &Cid) {
    let bytes = cid.to_bytes();
    let n = bytes.len().min(u8::MAX as usize);
    out.push(n as u8);
    out.extend_from_slice(&bytes[..n]);
}

/// Reads `[cid length][cid]` from the front of `buf`; returns the CID and the rest.
fn parse_cid(buf: &[u8]) -> Result<(Cid, &[u8]), String> {
    let (&len, rest) = buf.split_first().ok_or("a CID is missing")?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err("a CID is cut short".into());
    }
    let cid = Cid::try_from(&rest[..len]).map_err(|e| format!("malformed CID: {e}"))?;
    Ok((cid, &rest[len..]))
}

/// Splits a `BLOCK` frame into its CID and bytes, keeping the frame's buffer (no copy).
fn parse_block(frame: Vec<u8>) -> Result<(Cid, Bytes), String> {
    let body = frame.get(1..).ok_or("empty frame")?;
    let (cid, rest) = parse_cid(body)?;
    if rest.len() > MAX_BLOCK {
        return Err(format!("block {cid} is over the 16 MiB limit"));
    }
    let start = frame.len() - rest.len();
    Ok((cid, Bytes::from(frame).slice(start..)))
}

fn totals(kind: u8, blocks: u64, bytes: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(17);
    f.push(kind);
    f.extend_from_slice(&blocks.to_be_bytes());
    f.extend_from_slice(&bytes.to_be_bytes());
    f
}

fn parse_totals(frame: &[u8]) -> Option<(u64, u64)> {
    let body: &[u8; 16] = frame.get(1..)?.try_into().ok()?;
    let (blocks, bytes) = body.split_at(8);
    Some((
        u64::from_be_bytes(blocks.try_into().ok()?),
        u64::from_be_bytes(bytes.try_into().ok()?),
    ))
}

fn error_frame(msg: &str) -> Vec<u8> {
    let mut f = vec![ERROR];
    f.extend_from_slice(msg.as_bytes());
    f
}

fn broken(peer: PeerId, e: &dyn std::fmt::Display) -> BlockError {
    BlockError::Broken {
        peer,
        reason: e.to_string(),
    }
}

fn protocol(peer: PeerId, reason: String) -> BlockError {
    BlockError::Protocol { peer, reason }
}

fn refused(peer: PeerId, msg: &[u8]) -> BlockError {
    BlockError::Refused {
        peer,
        reason: String::from_utf8_lossy(msg).into_owned(),
    }
}

fn read_failure(peer: PeerId, e: &std::io::Error) -> BlockError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        BlockError::Refused {
            peer,
            reason: "it closed the stream (is this peer a member of the cluster?)".into(),
        }
    } else {
        broken(peer, e)
    }
}

#[cfg(test)]
pub(crate) mod tests;
