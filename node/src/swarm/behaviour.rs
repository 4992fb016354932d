//! The protocols one tessera peer speaks on its single swarm.

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{gossipsub, identify, ping};
use tessera_bitswap_ec::bitswap;

use super::routing::Kad;

/// Identify, ping and Bitswap for everyone. Cluster protocols ride on `stream` (their handlers check
/// membership before reading a byte) and cluster metrics on `gossipsub` (receivers drop messages
/// whose signed author is not a member). `kad` is the DHT, present only when `Routing.Type` asks
/// for it: with routing off the node neither speaks nor advertises the protocol.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) bitswap: bitswap::Behaviour,
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) kad: Toggle<Kad>,
}
