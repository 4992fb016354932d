//! The IPFS Cluster peer inside every `tessera daemon`: membership and Raft consensus on the shared
//! pinset, metrics broadcast over gossipsub, the balanced allocator, the pin tracker that makes the
//! local blockstore hold what the pinset assigns to this peer, and the IPFS Cluster REST API.
#![warn(missing_docs)]

mod allocator;
pub mod api;
pub mod config;
pub mod consensus;
pub mod duration;
mod ec;
mod frame;
mod join;
pub mod metric;
mod monitor;
pub mod peer;
pub mod pin;
pub mod rest_api;
mod rpc;
pub mod status;
mod stream_pool;
mod tracker;

pub use api::{ClusterApi, ClusterError, ConnectGraph, PeerIdentity, PinOptions};
pub use consensus::{Consensus, ConsensusConfig, ConsensusError, RaftTransport};
pub use metric::Metric;
pub use pin::{EcLayout, Pin, PinMode, PinsetOp};
pub use status::{GlobalPinInfo, PeerPinInfo, PinStatus};
