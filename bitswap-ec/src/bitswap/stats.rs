//! Counters for `ipfs bitswap stat` and `ipfs bitswap ledger`.

use cid::Cid;
use libp2p::PeerId;

/// What `ipfs bitswap stat` shows, plus what tessera drops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Blocks this node is fetching.
    pub wantlist: Vec<Cid>,
    /// Connected peers that speak (or may speak) Bitswap.
    pub peers: Vec<PeerId>,
    /// Wanted blocks received.
    pub blocks_received: u64,
    /// Bytes of wanted blocks received.
    pub data_received: u64,
    /// Blocks received again after they had arrived.
    pub dup_blocks_received: u64,
    /// Bytes of those.
    pub dup_data_received: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Blocks sent.
    pub blocks_sent: u64,
    /// Bytes of blocks sent.
    pub data_sent: u64,
    /// Malformed messages and streams dropped.
    pub invalid_messages: u64,
    /// Blocks nobody wanted (including blocks whose bytes did not hash to
    /// any wanted CID), dropped.
    pub unwanted_blocks: u64,
    /// Blocks dropped because they could not be verified or were too large.
    pub unverifiable_blocks: u64,
    /// Wants of peers ignored because of the server's limits.
    pub refused_wants: u64,
    /// Wants of peers the server holds now.
    pub server_wants: usize,
}

/// What `ipfs bitswap ledger PEER` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerLedger {
    /// The peer.
    pub peer: PeerId,
    /// Bytes of blocks sent to it.
    pub bytes_sent: u64,
    /// Bytes of blocks received from it.
    pub bytes_received: u64,
    /// Blocks sent to it.
    pub blocks_sent: u64,
    /// Blocks received from it.
    pub blocks_received: u64,
    /// Blocks it wants from us now.
    pub wants: usize,
}

impl PeerLedger {
    /// An empty ledger for `peer` (Kubo shows one for any peer).
    pub fn new(peer: PeerId) -> Self {
        Self {
            peer,
            bytes_sent: 0,
            bytes_received: 0,
            blocks_sent: 0,
            blocks_received: 0,
            wants: 0,
        }
    }

    /// Kubo's "debt ratio": bytes sent over bytes received plus one.
    pub fn value(&self) -> f64 {
        self.bytes_sent as f64 / (self.bytes_received as f64 + 1.0)
    }

    /// Blocks exchanged either way.
    pub fn exchanged(&self) -> u64 {
        self.blocks_sent + self.blocks_received
    }
}
