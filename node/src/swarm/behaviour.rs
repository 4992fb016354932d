//! The protocols one tessera peer speaks on its single swarm.

use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, ping};
use tessera_bitswap_ec::bitswap;

/// Identify and ping for everyone, Bitswap for everyone. Cluster protocols join later, behind a
/// membership check.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) bitswap: bitswap::Behaviour,
}
