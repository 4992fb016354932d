//! Bitswap 1.2.0, 1.1.0 and 1.0.0: the block exchange that Kubo and Helia
//! speak, serving and fetching, on a libp2p 0.57 swarm.
//!
//! Split as rust-libp2p splits a protocol: [`protocol`](self::Version) holds
//! names, negotiation and framing, `message` the wire format (a hand-written
//! protobuf codec that never copies block bytes), `handler` one connection,
//! and [`Behaviour`] the swarm side with its two engines, `server` (per-peer
//! wantlists answered round-robin from a [`BlockProvider`]) and `client`
//! (wants, sessions, retries).
//!
//! # Wiring it into a node
//!
//! ```no_run
//! # use tessera_bitswap_ec::bitswap::{self, MemoryBlocks};
//! # async fn demo(cid: cid::Cid) -> Result<(), Box<dyn std::error::Error>> {
//! // The provider is the node's blockstore (later with reconstruction).
//! let (behaviour, handle) = bitswap::Behaviour::new(bitswap::Config::default(), MemoryBlocks::new())?;
//! // Put `behaviour` in the node's #[derive(NetworkBehaviour)] beside
//! // identify (Helia only sends wants to peers whose identify lists a
//! // Bitswap protocol), build the swarm's Yamux with
//! // `bitswap::yamux_config()` (see `muxer.rs`: Helia's frames otherwise kill
//! // connections, and Kubo pays for small frames), and poll the swarm on tokio. Keep `handle` (cheap to
//! // clone) for the DAG service:
//! let session = handle.session();
//! let block = session.get(cid).await?; // verified against its CID
//! // store the block, then let waiting peers have it:
//! handle.notify_new_blocks(vec![*block.cid()]).await?;
//! # drop(behaviour);
//! # Ok(()) }
//! ```
//!
//! # What is checked
//!
//! Every received block is named by hashing its bytes (off the async
//! runtime) and is only handed out if that name was wanted: a block whose
//! bytes do not match the CID asked for is dropped and counted. Messages
//! are limited to 4 MiB and blocks to 2 MiB (Kubo's limits); malformed
//! messages and oversized frames close the stream with a log line; wants
//! beyond the per-peer and total limits are ignored; a connection may hold
//! a bounded number of inbound streams. See [`Config`] for every limit.

mod behaviour;
mod client;
mod config;
mod handle;
mod handler;
mod ledger;
mod memory_blocks;
mod message;
mod muxer;
mod prefix;
mod proto;
mod protocol;
mod provider;
mod server;
mod stats;
mod verify;

pub use behaviour::{Behaviour, Event};
pub use config::{Config, ConfigError};
pub use handle::{FetchError, Handle, Session};
pub use handler::{Handler, HandlerEvent, HandlerIn};
pub use memory_blocks::MemoryBlocks;
pub use message::{
    DEFAULT_MAX_ITEMS, DecodeError, Entry, Message, Payload, Presence, PresenceKind, WantType,
};
pub use muxer::{SPLIT_SEND_SIZE, YAMUX_MAX_STREAMS, Yamux, yamux_config};
pub use prefix::{Prefix, PrefixError};
pub use protocol::{FrameError, Upgrade, Version};
pub use provider::{BlockProvider, NoBlocks, ProviderError};
pub use stats::{PeerLedger, Stats};
