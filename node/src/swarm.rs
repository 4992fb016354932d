//! The node's libp2p swarm: TCP and QUIC, Noise, Yamux, identify, ping and Bitswap, driven by one
//! task that owns it. Other parts talk to that task through a cheap, cloneable [`SwarmHandle`].
//!
//! Peers listed in `Peering.Peers` are kept connected: when a connection to one closes, it is
//! redialled with exponential backoff (1 s doubling to 5 min), as Kubo's peering service does.
//!
//! With `Routing.Type` other than `none` the swarm also runs the Kademlia DHT ([`routing`]).

mod behaviour;
mod fetcher;
mod provider;
mod routing;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, noise, ping, tcp};
use tessera_bitswap_ec::bitswap;
use tessera_blockstore::Blockstore;
use tokio::sync::{mpsc, oneshot};

pub(crate) use fetcher::BitswapFetcher;
pub(crate) use routing::key as routing_key;
pub use routing::{Provider, RoutingError};

use behaviour::{Behaviour, BehaviourEvent};
use provider::StoreProvider;
use routing::{ProviderSearch, Queries, RoutingCommand};

use crate::config::RoutingMode;

/// The identify protocol version Kubo announces.
const PROTOCOL_VERSION: &str = "ipfs/0.1.0";

/// Why the swarm could not start or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmError {
    /// A listen address could not be used.
    #[error("cannot listen on {addr} (Addresses.Swarm): {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The transport stack could not be built.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// A dial failed.
    #[error("failed to dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The swarm task has stopped.
    #[error("the swarm is not running (the daemon is shutting down)")]
    Stopped,
}

/// A connected peer, as `swarm peers` lists it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// The remote address of (one of) the connection(s).
    pub addr: Multiaddr,
    /// Whether we dialled.
    pub outbound: bool,
    /// Last ping round trip.
    pub latency: Option<Duration>,
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, SwarmError>>),
    Disconnect(PeerId, oneshot::Sender<bool>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    KnownAddrs(oneshot::Sender<HashMap<PeerId, Vec<Multiaddr>>>),
    AddAddress(PeerId, Multiaddr),
    Subscribe(String, mpsc::Sender<GossipMessage>),
    Publish(String, Vec<u8>),
    Routing(RoutingCommand),
}

/// A gossipsub message as subscribers get it.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// Who wrote and signed it (not who forwarded it).
    pub author: PeerId,
    /// The payload.
    pub data: Vec<u8>,
}

/// Talks to the swarm task. Dropping every handle does not stop the swarm; the daemon's shutdown does.
#[derive(Clone)]
pub struct SwarmHandle {
    commands: mpsc::Sender<Command>,
    bitswap: bitswap::Handle,
    local: PeerId,
    connected: Arc<AtomicUsize>,
    streams: libp2p_stream::Control,
    routing: RoutingMode,
    dht_ready: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for SwarmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmHandle")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl SwarmHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SwarmError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| SwarmError::Stopped)?;
        rx.await.map_err(|_| SwarmError::Stopped)
    }

    /// Dials an address (with `/p2p/ID` it waits for that peer's connection) and returns the peer.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, SwarmError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Closes every connection to a peer; false if there was none.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, SwarmError> {
        self.ask(|tx| Command::Disconnect(peer, tx)).await
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, SwarmError> {
        self.ask(Command::Peers).await
    }

    /// Addresses the swarm listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, SwarmError> {
        self.ask(Command::ListenAddrs).await
    }

    /// Addresses known for connected peers.
    pub async fn known_addrs(&self) -> Result<HashMap<PeerId, Vec<Multiaddr>>, SwarmError> {
        self.ask(Command::KnownAddrs).await
    }

    /// The Bitswap engine.
    pub fn bitswap(&self) -> &bitswap::Handle {
        &self.bitswap
    }

    /// Opens and accepts streams of protocols that other crates define (the cluster's). Each caller
    /// that opens streams should clone it: `open_stream` takes `&mut self`.
    pub fn streams(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    /// Tells the swarm an address of a peer, so that streams can be opened to it by peer id alone.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), SwarmError> {
        self.commands
            .send(Command::AddAddress(peer, addr))
            .await
            .map_err(|_| SwarmError::Stopped)
    }

    /// Subscribes to a gossipsub topic; messages arrive on `sink` until it is dropped. Messages that
    /// do not fit (the receiver is slow) are dropped, as gossip may be.
    pub async fn subscribe(
        &self,
        topic: &str,
        sink: mpsc::Sender<GossipMessage>,
    ) -> Result<(), SwarmError> {
        self.commands
            .send(Command::Subscribe(topic.to_string(), sink))
            .await
            .map_err(|_| SwarmError::Stopped)
    }

    /// Publishes on a gossipsub topic. Best effort: with no subscribed peer the message goes nowhere.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), SwarmError> {
        self.commands
            .send(Command::Publish(topic.to_string(), data))
            .await
            .map_err(|_| SwarmError::Stopped)
    }

    /// This peer.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// How many peers are connected right now.
    pub fn connected_peers(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// A fetcher for the DAG service over this swarm's Bitswap.
    pub(crate) fn fetcher(&self, timeout: Duration) -> BitswapFetcher {
        BitswapFetcher {
            handle: self.bitswap.clone(),
            session: Arc::new(self.bitswap.session().with_timeout(timeout)),
            connected: self.connected.clone(),
            search: self.routing_enabled().then(|| ProviderSearch {
                commands: self.commands.clone(),
            }),
        }
    }
}

/// Swarm settings from the config.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// `Addresses.Swarm`.
    pub listen: Vec<Multiaddr>,
    /// `Addresses.Announce`: when set, the only addresses announced.
    pub announce: Vec<Multiaddr>,
    /// `Peering.Peers`: (peer, addresses) kept connected.
    pub peering: Vec<(PeerId, Vec<Multiaddr>)>,
    /// `Bootstrap`: dialled once at start (and, with the DHT on, put in its routing table).
    pub bootstrap: Vec<Multiaddr>,
    /// `Routing.Type`.
    pub routing: RoutingMode,
}

/// Builds the swarm, starts listening and spawns its task. Returns the handle and the addresses it
/// listens on once the listeners are up.
pub(crate) async fn start(
    keypair: Keypair,
    store: Blockstore,
    producer: crate::dag::ProducerSlot,
    config: SwarmConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(SwarmHandle, Vec<Multiaddr>, Vec<String>), SwarmError> {
    let local = keypair.public().to_peer_id();
    let (bitswap_behaviour, bitswap_handle) = bitswap::Behaviour::new(
        bitswap::Config::default(),
        StoreProvider { store, producer },
    )
    .map_err(|e| SwarmError::Build(e.to_string()))?;
    let mut slot = Some(bitswap_behaviour);
    let stream_behaviour = libp2p_stream::Behaviour::new();
    let streams = stream_behaviour.new_control();
    let mut stream_slot = Some(stream_behaviour);
    let mut kad_slot = Some(routing::behaviour(local, config.routing));
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            // Keeps every Yamux window at or under 1 MiB: rust-yamux refuses larger frames, and
            // Helia sends frames as large as the window (see bitswap::yamux_config).
            bitswap::yamux_config,
        )
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| {
            let bitswap = slot.take().ok_or("behaviour built twice")?;
            let stream = stream_slot.take().ok_or("behaviour built twice")?;
            let kad = kad_slot.take().ok_or("behaviour built twice")?;
            // Signed messages, strict validation: a receiver can trust `source` as the author and
            // check it against the cluster's membership.
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .map_err(|e| e.to_string())?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            Ok(Behaviour {
                stream,
                gossipsub,
                identify: identify::Behaviour::new(
                    identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                        .with_agent_version(concat!("tessera/", env!("CARGO_PKG_VERSION")).into()),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                bitswap,
                kad: kad.into(),
            })
        })
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();

    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SwarmError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
    }
    for addr in &config.announce {
        swarm.add_external_address(addr.clone());
    }
    // With the DHT on and nothing to announce, the listen addresses are the node's addresses to
    // the world, as Kubo announces them: Kademlia puts only external addresses in the provider
    // records it sends, and a record without addresses is useless once its provider is not in the
    // answering peer's routing table (a DHT client never is). There is no AutoNAT to confirm them.
    let listen_is_external = config.routing != RoutingMode::Off && config.announce.is_empty();
    // Wait until every listener reports its address (port 0 resolves here).
    let mut listening = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listening.len() < config.listen.len() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| SwarmError::Listen {
                addr: format!("{:?}", config.listen),
                reason: "no listener came up in 10 s".into(),
            })?;
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if listen_is_external {
                    swarm.add_external_address(address.clone());
                }
                listening.push(address);
            }
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                return Err(SwarmError::Listen {
                    addr: format!("{:?}", config.listen),
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }
    let mut protocols = vec![
        "/ipfs/bitswap/1.2.0".to_string(),
        "/ipfs/bitswap/1.1.0".into(),
        "/ipfs/bitswap/1.0.0".into(),
        "/ipfs/bitswap".into(),
        "/ipfs/id/1.0.0".into(),
        "/ipfs/ping/1.0.0".into(),
    ];
    // A DHT client asks but does not answer, so it does not advertise the protocol.
    if config.routing == RoutingMode::Server {
        protocols.push(routing::KAD_PROTOCOL.to_string());
    }

    let (tx, rx) = mpsc::channel(64);
    let connected = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let handle = SwarmHandle {
        commands: tx,
        bitswap: bitswap_handle,
        local,
        connected: connected.clone(),
        streams,
        routing: config.routing,
        dht_ready: ready_rx,
    };
    let mut task = Task {
        swarm,
        rx,
        pending_dials: HashMap::new(),
        latency: HashMap::new(),
        peering: config
            .peering
            .iter()
            .map(|(p, a)| (*p, a.clone()))
            .collect(),
        redial: HashMap::new(),
        connected: HashSet::new(),
        conns: HashMap::new(),
        connected_count: connected,
        topics: HashMap::new(),
        queries: Queries::new(ready_tx),
        listen_is_external,
    };
    // Peering peers are dialled on the first tick, and again with backoff whenever not connected.
    let now = tokio::time::Instant::now();
    for (peer, _) in &config.peering {
        task.redial.insert(*peer, (now, Duration::from_secs(1)));
    }
    Queries::seed(&mut task.swarm, &config.bootstrap, &config.peering);
    for addr in &config.bootstrap {
        let _ = task.swarm.dial(addr.clone());
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = task.run() => {}
            _ = shutdown.wait_for(|v| *v) => {}
        }
        tracing::debug!("swarm stopped");
    });
    Ok((handle, listening, protocols))
}

struct Task {
    swarm: Swarm<Behaviour>,
    rx: mpsc::Receiver<Command>,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<PeerId, SwarmError>>>>,
    latency: HashMap<PeerId, Duration>,
    peering: HashMap<PeerId, Vec<Multiaddr>>,
    /// Next redial time and backoff of peering peers that are not connected.
    redial: HashMap<PeerId, (tokio::time::Instant, Duration)>,
    connected: HashSet<PeerId>,
    /// One remote address per connected peer, and whether we dialled it.
    conns: HashMap<PeerId, (Multiaddr, bool)>,
    /// `connected.len()`, shared with the handles.
    connected_count: Arc<AtomicUsize>,
    /// Subscribers of each gossipsub topic.
    topics: HashMap<gossipsub::TopicHash, Vec<mpsc::Sender<GossipMessage>>>,
    /// The DHT's queries in flight.
    queries: Queries,
    /// Listen addresses are announced as external ones (see [`start`]).
    listen_is_external: bool,
}

impl Task {
    async fn run(&mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                cmd = self.rx.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = tick.tick() => self.redial_peering(),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr, reply) => {
                let peer = addr.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                match peer {
                    Some(p) if self.swarm.is_connected(&p) => {
                        let _ = reply.send(Ok(p));
                    }
                    Some(p) => {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                            .addresses(vec![addr.clone()])
                            .build();
                        match self.swarm.dial(opts) {
                            Ok(()) => self.pending_dials.entry(p).or_default().push(reply),
                            Err(e) => {
                                let _ = reply.send(Err(SwarmError::Dial {
                                    addr: addr.to_string(),
                                    reason: e.to_string(),
                                }));
                            }
                        }
                    }
                    None => {
                        let _ = reply.send(Err(SwarmError::Dial {
                            addr: addr.to_string(),
                            reason: "the address has no /p2p/PEER_ID part; add the peer id".into(),
                        }));
                    }
                }
            }
            Command::Disconnect(peer, reply) => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::AddAddress(peer, addr) => {
                self.swarm.add_peer_address(peer, addr);
            }
            Command::Subscribe(topic, sink) => {
                let topic = gossipsub::IdentTopic::new(topic);
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    tracing::warn!(%topic, error = %e, "cannot subscribe");
                }
                self.topics.entry(topic.hash()).or_default().push(sink);
            }
            Command::Publish(topic, data) => {
                let topic = gossipsub::IdentTopic::new(topic);
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), data)
                {
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(e) => tracing::debug!(%topic, error = %e, "cannot publish"),
                }
            }
            Command::Routing(cmd) => self.queries.on_command(&mut self.swarm, cmd),
            Command::KnownAddrs(reply) => {
                let mut map: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for p in self.peer_infos() {
                    map.entry(p.peer).or_default().push(p.addr);
                }
                let _ = reply.send(map);
            }
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .map(|(peer, (addr, outbound))| PeerInfo {
                peer: *peer,
                addr: addr.clone(),
                outbound: *outbound,
                latency: self.latency.get(peer).copied(),
            })
            .collect()
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } if self.listen_is_external => {
                self.swarm.add_external_address(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } if self.listen_is_external => {
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let (addr, outbound) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address.clone(), true),
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), false)
                    }
                };
                self.conns.insert(peer_id, (addr, outbound));
                self.connected.insert(peer_id);
                self.connected_count
                    .store(self.connected.len(), Ordering::Relaxed);
                self.redial.remove(&peer_id);
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(peer_id));
                }
                tracing::debug!(%peer_id, "connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.conns.remove(&peer_id);
                self.connected.remove(&peer_id);
                self.connected_count
                    .store(self.connected.len(), Ordering::Relaxed);
                self.latency.remove(&peer_id);
                if self.peering.contains_key(&peer_id) {
                    self.redial.insert(
                        peer_id,
                        (
                            tokio::time::Instant::now() + Duration::from_secs(1),
                            Duration::from_secs(1),
                        ),
                    );
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if let Some(replies) = self.pending_dials.remove(&peer) {
                    let reason = dial_reason(&error);
                    for reply in replies {
                        let _ = reply.send(Err(SwarmError::Dial {
                            addr: peer.to_string(),
                            reason: reason.clone(),
                        }));
                    }
                }
                if self.peering.contains_key(&peer) && !self.swarm.is_connected(&peer) {
                    let backoff = self
                        .redial
                        .get(&peer)
                        .map(|(_, b)| (*b * 2).min(Duration::from_secs(300)))
                        .unwrap_or(Duration::from_secs(1));
                    self.redial
                        .insert(peer, (tokio::time::Instant::now() + backoff, backoff));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.latency.insert(peer, rtt);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let Some(author) = message.source else {
                    return;
                };
                if let Some(sinks) = self.topics.get_mut(&message.topic) {
                    sinks.retain(|s| !s.is_closed());
                    for sink in sinks.iter() {
                        let _ = sink.try_send(GossipMessage {
                            author,
                            data: message.data.clone(),
                        });
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(%peer_id, agent = %info.agent_version, "identified");
                self.queries.on_identified(&mut self.swarm, peer_id, &info);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
                self.queries.on_event(&mut self.swarm, event);
            }
            _ => {}
        }
    }

    fn redial_peering(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<PeerId> = self
            .redial
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.swarm.is_connected(&peer) {
                self.redial.remove(&peer);
                continue;
            }
            if let Some(addrs) = self.peering.get(&peer) {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs.clone())
                    .build();
                let _ = self.swarm.dial(opts);
            }
            if let Some((at, backoff)) = self.redial.get_mut(&peer) {
                *backoff = (*backoff * 2).min(Duration::from_secs(300));
                *at = now + *backoff;
            }
        }
    }
}

fn dial_reason(e: &DialError) -> String {
    match e {
        DialError::Transport(errs) => errs
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
