//! The protocols one tessera peer speaks on its single swarm.

use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, ping};
use tessera_bitswap_ec::bitswap;

/// Identify, ping and Bitswap for everyone. Cluster protocols ride on `stream` (their handlers check
/// membership before reading a byte) and cluster metrics on `gossipsub` (receivers drop messages
/// whose signed author is not a member).
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) bitswap: bitswap::Behaviour,
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
}
