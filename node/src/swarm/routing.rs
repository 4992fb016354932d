//! Content routing over the Kademlia DHT (`Routing.Type`), on Kubo's protocol `/ipfs/kad/1.0.0`.
//!
//! Off by default: with `none` the swarm has no Kademlia behaviour at all. With the DHT on, peers
//! enter the routing table when identify says they speak the protocol (with the listen addresses
//! they report), and from `Bootstrap` and `Peering.Peers`; the DHT is never seeded with the public
//! network's bootstrap nodes. Records live in a bounded in-memory store.
//!
//! The swarm task owns the behaviour and drives its queries ([`Queries`]); handles reach it with
//! [`RoutingCommand`]s.

mod queries;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use cid::Cid;
use futures::{Stream, StreamExt};
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::kad::{self, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use queries::Queries;

use super::{Command, SwarmError, SwarmHandle};
use crate::config::RoutingMode;

/// Kubo's (and every IPFS DHT's) Kademlia protocol.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");

/// Keys the store holds provider records for, ours and other peers' together (about 200 bytes a
/// record, up to [`MAX_PROVIDERS_PER_KEY`] records a key). A provide past it fails and says so.
const MAX_PROVIDER_KEYS: usize = 100_000;
/// Providers kept per key: Kademlia's replication factor, as Kubo keeps.
const MAX_PROVIDERS_PER_KEY: usize = 20;
/// Value records (IPNS and the like) other peers may put here. tessera never reads them; it keeps
/// a few so that it answers as a DHT server should, within a bound.
const MAX_RECORDS: usize = 1024;
/// Largest value record kept: Kubo's limit for an IPNS record.
const MAX_RECORD_BYTES: usize = 10 << 10;
/// Most providers `routing/findprovs` reports for one request.
pub(crate) const MAX_FIND_PROVIDERS: usize = 1000;
/// Provide queries one caller runs at once: each waits on several peers, so a few overlap well.
const CONCURRENT_PROVIDES: usize = 8;
/// How long provider records stay valid on the peers that hold them: Kubo's 48 hours. The
/// reprovider renews ours every 22 hours.
const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(48 * 60 * 60);

/// The DHT behaviour as the swarm holds it.
pub(crate) type Kad = kad::Behaviour<MemoryStore>;

/// Why a routing request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// `Routing.Type` is `none`.
    #[error(
        "content routing is off: this node runs no DHT (config key Routing.Type is \"none\"); turn it on with `tessera config Routing.Type dht` and restart the daemon"
    )]
    Off,
    /// The routing table is empty: there is nobody to send a record to.
    #[error(
        "cannot provide {cid}: the DHT knows no peers yet; connect to a peer that runs the DHT (Routing.Type dht) or list one in Bootstrap or Peering.Peers"
    )]
    NoPeers {
        /// The CID.
        cid: Cid,
    },
    /// The record store is full.
    #[error("cannot provide {cid}: the DHT's provider store is full ({max} keys)")]
    StoreFull {
        /// The CID.
        cid: Cid,
        /// The bound.
        max: usize,
    },
    /// The provide query ended without any peer answering.
    #[error("cannot provide {cid}: no DHT peer could be reached")]
    Unreached {
        /// The CID.
        cid: Cid,
    },
    /// The provide query ran out of time.
    #[error("providing {cid} timed out")]
    Timeout {
        /// The CID.
        cid: Cid,
    },
    /// The swarm is gone.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

/// A provider found in the DHT.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The peer.
    pub peer: PeerId,
    /// Its addresses as far as this node knows them (without `/p2p/`); may be empty.
    pub addrs: Vec<Multiaddr>,
}

/// Routing requests from handles to the swarm task.
pub(crate) enum RoutingCommand {
    /// Stream up to `limit` providers of the CID into the sender, which is dropped at the end.
    FindProviders(Cid, usize, mpsc::Sender<Provider>),
    /// Announce this node as a provider.
    Provide(Cid, oneshot::Sender<Result<(), RoutingError>>),
    /// Look providers up and dial them; the reply (if any) gets how many were reached.
    Search(Cid, Option<oneshot::Sender<usize>>),
    /// Stop announcing every key that is not one of these (the reprovider's pinset).
    RetainProvided(HashSet<RecordKey>, oneshot::Sender<()>),
}

/// The record key of a CID: its multihash, as Kubo keys provider records (so a CIDv0 and a CIDv1
/// of the same bytes meet).
pub(crate) fn key(cid: &Cid) -> RecordKey {
    RecordKey::new(&cid.hash().to_bytes())
}

/// The Kademlia behaviour for `mode`, or none when routing is off.
pub(crate) fn behaviour(local: PeerId, mode: RoutingMode) -> Option<Kad> {
    let server = match mode {
        RoutingMode::Off => return None,
        RoutingMode::Client => false,
        RoutingMode::Server => true,
    };
    let mut config = kad::Config::new(KAD_PROTOCOL);
    // The reprovider republishes what is pinned now; Kademlia's own job would keep republishing
    // whatever was ever provided.
    config.set_provider_publication_interval(None);
    config.set_provider_record_ttl(Some(PROVIDER_RECORD_TTL));
    if let Some(k) = NonZeroUsize::new(MAX_PROVIDERS_PER_KEY) {
        config.set_replication_factor(k);
    }
    let store = MemoryStore::with_config(
        local,
        MemoryStoreConfig {
            max_records: MAX_RECORDS,
            max_value_bytes: MAX_RECORD_BYTES,
            max_provided_keys: MAX_PROVIDER_KEYS,
            max_providers_per_key: MAX_PROVIDERS_PER_KEY,
        },
    );
    let mut kad = kad::Behaviour::with_config(local, store, config);
    // Set, not left to Kademlia's auto mode: auto waits for a confirmed external address, which
    // needs AutoNAT, which tessera does not run.
    kad.set_mode(Some(if server {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));
    Some(kad)
}

/// `addr` without a trailing `/p2p/ID`, as Kubo lists a peer's addresses beside its id.
fn without_peer(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// Starts provider searches for the fetcher without holding the whole swarm handle.
#[derive(Clone)]
pub(crate) struct ProviderSearch {
    pub(super) commands: mpsc::Sender<Command>,
}

impl ProviderSearch {
    /// Starts a search (and dials what it finds) unless one for the same block is running.
    /// Best effort: with the command queue full, this round is skipped.
    pub(crate) fn start(&self, cid: Cid) {
        let _ = self
            .commands
            .try_send(Command::Routing(RoutingCommand::Search(cid, None)));
    }

    /// Searches and waits for the lookup to end; returns how many providers were dialled or
    /// already connected.
    pub(crate) async fn reach(&self, cid: Cid) -> usize {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Routing(RoutingCommand::Search(cid, Some(tx))))
            .await
            .is_err()
        {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

impl SwarmHandle {
    /// Whether the DHT runs (`Routing.Type` is not `none`).
    pub fn routing_enabled(&self) -> bool {
        self.routing != RoutingMode::Off
    }

    fn check_routing(&self) -> Result<(), RoutingError> {
        if self.routing_enabled() {
            Ok(())
        } else {
            Err(RoutingError::Off)
        }
    }

    /// Looks up providers of `cid`; they arrive on the receiver as they are found, at most
    /// `limit` (and at most 1000), and the receiver ends when the lookup does.
    pub async fn find_providers(
        &self,
        cid: Cid,
        limit: usize,
    ) -> Result<mpsc::Receiver<Provider>, RoutingError> {
        self.check_routing()?;
        let limit = limit.clamp(1, MAX_FIND_PROVIDERS);
        let (tx, rx) = mpsc::channel(limit);
        self.commands
            .send(Command::Routing(RoutingCommand::FindProviders(
                cid, limit, tx,
            )))
            .await
            .map_err(|_| SwarmError::Stopped)?;
        Ok(rx)
    }

    /// Announces this node as a provider of `cid` to the DHT peers closest to it, and keeps it in
    /// the local store so that lookups reaching this node find it.
    pub async fn provide(&self, cid: Cid) -> Result<(), RoutingError> {
        self.check_routing()?;
        self.ask(|tx| Command::Routing(RoutingCommand::Provide(cid, tx)))
            .await?
    }

    /// Announces each of `cids`, [`CONCURRENT_PROVIDES`] at a time, and yields each outcome with
    /// its CID as it comes (the API's `provide` and the reprovider both announce many keys).
    pub(crate) fn provide_each(
        &self,
        cids: Vec<Cid>,
    ) -> impl Stream<Item = (Cid, Result<(), RoutingError>)> + Send + 'static {
        let swarm = self.clone();
        futures::stream::iter(cids)
            .map(move |cid| {
                let swarm = swarm.clone();
                async move { (cid, swarm.provide(cid).await) }
            })
            .buffer_unordered(CONCURRENT_PROVIDES)
    }

    /// Stops announcing every key but `keep`.
    pub(crate) async fn retain_provided(
        &self,
        keep: HashSet<RecordKey>,
    ) -> Result<(), RoutingError> {
        self.check_routing()?;
        Ok(self
            .ask(|tx| Command::Routing(RoutingCommand::RetainProvided(keep, tx)))
            .await?)
    }

    /// Turns true once a connected DHT peer is in the routing table (never, with routing off).
    pub(crate) fn dht_ready(&self) -> watch::Receiver<bool> {
        self.dht_ready.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cidv0_and_its_cidv1_share_a_record_key() {
        let v0: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        let v1 = Cid::new_v1(0x70, *v0.hash());
        assert_eq!(key(&v0), key(&v1));
        assert_eq!(key(&v0).as_ref(), v0.hash().to_bytes().as_slice());
    }

    #[test]
    fn addresses_lose_their_peer_suffix_only() {
        let peer = PeerId::random();
        let bare: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let full = bare.clone().with(Protocol::P2p(peer));
        assert_eq!(without_peer(full), bare);
        assert_eq!(without_peer(bare.clone()), bare);
    }

    #[test]
    fn routing_off_builds_no_behaviour() {
        let local = PeerId::random();
        assert!(behaviour(local, RoutingMode::Off).is_none());
        let client = behaviour(local, RoutingMode::Client).unwrap();
        assert_eq!(client.mode(), kad::Mode::Client);
        let server = behaviour(local, RoutingMode::Server).unwrap();
        assert_eq!(server.mode(), kad::Mode::Server);
        assert_eq!(server.protocol_names(), &[KAD_PROTOCOL]);
    }
}
