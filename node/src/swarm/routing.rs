//! Content routing over the Kademlia DHT (`Routing.Type`), on Kubo's protocol `/ipfs/kad/1.0.0`.
//!
//! Off by default: with `none` the swarm has no Kademlia behaviour at all. With the DHT on, peers
//! enter the routing table when identify says they speak the protocol (with the listen addresses
//! they report), and from `Bootstrap` and `Peering.Peers`; the DHT is never seeded with the public
//! network's bootstrap nodes. Records live in a bounded in-memory store.
//!
//! The swarm task owns the behaviour; [`Queries`] keeps what each query in flight is for (an
//! answer to `routing/provide`, providers streamed to `routing/findprovs`, or a search that dials
//! the providers of a block that no connected peer has) and turns Kademlia's events into answers.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use cid::Cid;
use libp2p::core::Endpoint;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

use super::behaviour::Behaviour;
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
/// Providers that one search for a missing block dials at most.
const MAX_PROVIDER_DIALS: usize = 5;
/// Searches for missing blocks in flight at once; more are skipped (the fetcher asks again later).
const MAX_SEARCHES: usize = 8;
/// Most providers `routing/findprovs` reports for one request.
pub(crate) const MAX_FIND_PROVIDERS: usize = 1000;
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

/// `findprovs` waiting for providers.
struct Find {
    sink: mpsc::Sender<Provider>,
    wanted: usize,
    seen: HashSet<PeerId>,
}

/// A search for the providers of a block no connected peer has.
struct Search {
    key: Vec<u8>,
    reached: HashSet<PeerId>,
    waiters: Vec<oneshot::Sender<usize>>,
}

/// The DHT's queries in flight, owned by the swarm task.
pub(crate) struct Queries {
    provides: HashMap<QueryId, (Cid, oneshot::Sender<Result<(), RoutingError>>)>,
    finds: HashMap<QueryId, Find>,
    searches: HashMap<QueryId, Search>,
    /// Multihash bytes of each block being searched for, so that one lookup serves every fetch of it.
    searching: HashMap<Vec<u8>, QueryId>,
    /// Turns true once a connected peer is in the routing table: until then a provide would reach
    /// nobody, so the reprovider waits for it.
    ready: watch::Sender<bool>,
}

impl Queries {
    pub(crate) fn new(ready: watch::Sender<bool>) -> Self {
        Queries {
            provides: HashMap::new(),
            finds: HashMap::new(),
            searches: HashMap::new(),
            searching: HashMap::new(),
            ready,
        }
    }

    /// Puts the configured peers (`Bootstrap` entries with a `/p2p/` part, `Peering.Peers`) in
    /// the routing table.
    pub(crate) fn seed(
        swarm: &mut Swarm<Behaviour>,
        bootstrap: &[Multiaddr],
        peering: &[(PeerId, Vec<Multiaddr>)],
    ) {
        let Some(kad) = swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        for addr in bootstrap {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                kad.add_address(&peer, without_peer(addr.clone()));
            }
        }
        for (peer, addrs) in peering {
            for addr in addrs {
                kad.add_address(peer, addr.clone());
            }
        }
    }

    /// Identify told us what `peer` speaks and where it listens: a DHT server goes in the table.
    pub(crate) fn on_identified(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        info: &libp2p::identify::Info,
    ) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        let Some(kad) = swarm.behaviour_mut().kad.as_mut() else {
            return;
        };
        for addr in &info.listen_addrs {
            kad.add_address(&peer, without_peer(addr.clone()));
        }
        if swarm.is_connected(&peer) {
            self.ready.send_if_modified(|r| !std::mem::replace(r, true));
        }
    }

    pub(crate) fn on_command(&mut self, swarm: &mut Swarm<Behaviour>, cmd: RoutingCommand) {
        let Some(kad) = swarm.behaviour_mut().kad.as_mut() else {
            // The handle checks first; whatever slipped through gets nothing (senders dropped).
            if let RoutingCommand::Provide(_, reply) = cmd {
                let _ = reply.send(Err(RoutingError::Off));
            }
            return;
        };
        match cmd {
            RoutingCommand::FindProviders(cid, limit, sink) => {
                let id = kad.get_providers(key(&cid));
                self.finds.insert(
                    id,
                    Find {
                        sink,
                        wanted: limit.clamp(1, MAX_FIND_PROVIDERS),
                        seen: HashSet::new(),
                    },
                );
            }
            RoutingCommand::Provide(cid, reply) => {
                if kad.kbuckets().all(|b| b.num_entries() == 0) {
                    let _ = reply.send(Err(RoutingError::NoPeers { cid }));
                    return;
                }
                match kad.start_providing(key(&cid)) {
                    Ok(id) => {
                        self.provides.insert(id, (cid, reply));
                    }
                    Err(_) => {
                        // The only way a memory store refuses our own record: it is full.
                        let _ = reply.send(Err(RoutingError::StoreFull {
                            cid,
                            max: MAX_PROVIDER_KEYS,
                        }));
                    }
                }
            }
            RoutingCommand::Search(cid, reply) => {
                let mh = cid.hash().to_bytes();
                if let Some(id) = self.searching.get(&mh) {
                    if let (Some(s), Some(r)) = (self.searches.get_mut(id), reply) {
                        s.waiters.push(r);
                    }
                    return;
                }
                if self.searches.len() >= MAX_SEARCHES {
                    tracing::debug!(%cid, "too many provider searches in flight; skipped");
                    if let Some(r) = reply {
                        let _ = r.send(0);
                    }
                    return;
                }
                let id = kad.get_providers(key(&cid));
                tracing::debug!(%cid, "no connected peer has the block: asking the DHT");
                self.searching.insert(mh.clone(), id);
                self.searches.insert(
                    id,
                    Search {
                        key: mh,
                        reached: HashSet::new(),
                        waiters: reply.into_iter().collect(),
                    },
                );
            }
            RoutingCommand::RetainProvided(keep, reply) => {
                // `provided` holds only this node's own records.
                let stale: Vec<RecordKey> = kad
                    .store_mut()
                    .provided()
                    .filter(|r| !keep.contains(&r.key))
                    .map(|r| r.key.clone())
                    .collect();
                for k in &stale {
                    kad.stop_providing(k);
                }
                let _ = reply.send(());
            }
        }
    }

    pub(crate) fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated { peer, .. } if swarm.is_connected(&peer) => {
                self.ready.send_if_modified(|r| !std::mem::replace(r, true));
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => match result {
                QueryResult::StartProviding(result) => {
                    let Some((cid, reply)) = self.provides.remove(&id) else {
                        return;
                    };
                    let answer = match result {
                        Ok(_) if stats.num_successes() == 0 => Err(RoutingError::Unreached { cid }),
                        Ok(_) => Ok(()),
                        Err(_) => Err(RoutingError::Timeout { cid }),
                    };
                    let _ = reply.send(answer);
                }
                QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                    key,
                    providers,
                })) => {
                    self.found(swarm, id, &key, providers);
                    if step.last {
                        self.ended(id);
                    }
                }
                QueryResult::GetProviders(_) if step.last => self.ended(id),
                _ => {}
            },
            _ => {}
        }
    }

    fn found(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: QueryId,
        key: &RecordKey,
        providers: HashSet<PeerId>,
    ) {
        let mut done = false;
        if let Some(find) = self.finds.get_mut(&id) {
            for peer in providers.iter().copied() {
                if find.seen.len() >= find.wanted {
                    break;
                }
                if !find.seen.insert(peer) {
                    continue;
                }
                let addrs = provider_addrs(swarm, key, peer);
                if find.sink.try_send(Provider { peer, addrs }).is_err() {
                    // The client went away (the channel holds `wanted` providers, so never full).
                    done = true;
                    break;
                }
            }
            done |= find.seen.len() >= find.wanted;
        } else if let Some(search) = self.searches.get_mut(&id) {
            let local = *swarm.local_peer_id();
            for peer in providers.iter().copied() {
                if search.reached.len() >= MAX_PROVIDER_DIALS {
                    break;
                }
                if peer == local || !search.reached.insert(peer) {
                    continue;
                }
                if swarm.is_connected(&peer) {
                    continue;
                }
                // The query's addresses are only known to Kademlia while the query runs: dial now.
                let addrs = provider_addrs(swarm, key, peer);
                tracing::debug!(%peer, ?addrs, "dialling a provider found in the DHT");
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .extend_addresses_through_behaviour()
                    .build();
                if let Err(e) = swarm.dial(opts) {
                    tracing::debug!(%peer, error = %e, "cannot dial a provider");
                }
            }
            done = search.reached.len() >= MAX_PROVIDER_DIALS;
        }
        if done {
            if let Some(mut q) = swarm
                .behaviour_mut()
                .kad
                .as_mut()
                .and_then(|k| k.query_mut(&id))
            {
                q.finish();
            }
            self.ended(id);
        }
    }

    /// A provider lookup is over: close its stream or answer its waiters.
    fn ended(&mut self, id: QueryId) {
        self.finds.remove(&id);
        if let Some(search) = self.searches.remove(&id) {
            self.searching.remove(&search.key);
            for w in search.waiters {
                let _ = w.send(search.reached.len());
            }
        }
    }
}

/// What this node knows of a provider's addresses: ours if it is us, else the provider record's
/// and whatever Kademlia holds (its routing table, and the addresses peers reported during the
/// queries in flight). The last is read through Kademlia's own answer to "where can this peer be
/// dialled", the only way to reach the addresses a query learnt; it changes nothing.
fn provider_addrs(swarm: &mut Swarm<Behaviour>, key: &RecordKey, peer: PeerId) -> Vec<Multiaddr> {
    if peer == *swarm.local_peer_id() {
        return swarm
            .listeners()
            .chain(swarm.external_addresses())
            .cloned()
            .collect();
    }
    let Some(kad) = swarm.behaviour_mut().kad.as_mut() else {
        return Vec::new();
    };
    let mut addrs: Vec<Multiaddr> = kad
        .store_mut()
        .providers(key)
        .into_iter()
        .filter(|r| r.provider == peer)
        .flat_map(|r| r.addresses)
        .collect();
    if let Ok(more) = kad.handle_pending_outbound_connection(
        ConnectionId::new_unchecked(0),
        Some(peer),
        &[],
        Endpoint::Dialer,
    ) {
        addrs.extend(more);
    }
    let mut seen = HashSet::new();
    addrs
        .into_iter()
        .map(without_peer)
        .filter(|a| seen.insert(a.clone()))
        .collect()
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
