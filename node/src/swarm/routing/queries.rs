//! The swarm task's side of the DHT: what each Kademlia query in flight is for (an answer to
//! `routing/provide`, providers streamed to `routing/findprovs`, or a search that dials the
//! providers of a block no connected peer has), and Kademlia's events turned into those answers.

use std::collections::{HashMap, HashSet};

use cid::Cid;
use libp2p::core::Endpoint;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

use super::super::behaviour::Behaviour;
use super::{
    KAD_PROTOCOL, MAX_FIND_PROVIDERS, MAX_PROVIDER_KEYS, Provider, RoutingCommand, RoutingError,
    key, without_peer,
};

/// Providers that one search for a missing block dials at most.
const MAX_PROVIDER_DIALS: usize = 5;
/// Searches for missing blocks in flight at once; more are skipped (the fetcher asks again later).
const MAX_SEARCHES: usize = 8;

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
