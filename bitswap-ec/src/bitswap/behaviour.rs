//! The swarm side: tracks connections, feeds received messages to the
//! server and the client, and turns their answers and wants into messages
//! for the connection handlers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use super::client::{BlockOutcome, Client, Outbox, PeerView};
use super::config::{Config, ConfigError};
use super::handle::{Command, Handle};
use super::handler::{Handler, HandlerEvent, HandlerIn, HandlerOut, Outgoing};
use super::message::{self, Message, PresenceKind};
use super::protocol::Version;
use super::provider::{BlockProvider, SharedProvider};
use super::server::{Answer, Server};
use super::stats::{PeerLedger, Stats};

/// Commands from handles queued at most; senders wait beyond.
const COMMAND_QUEUE: usize = 1024;
/// Commands handled per poll before other work gets a turn.
const COMMANDS_PER_POLL: usize = 256;
/// How often timeouts and rebroadcasts are checked, at most.
const TICK: Duration = Duration::from_millis(500);

/// What the behaviour reports to the swarm. Informational: a node may
/// ignore every event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The outbound stream to `peer` speaks `version`.
    Negotiated {
        /// The peer.
        peer: PeerId,
        /// The version both sides chose.
        version: Version,
    },
    /// `peer` speaks no Bitswap version; nothing is asked of it.
    Unsupported {
        /// The peer.
        peer: PeerId,
    },
    /// `peer` sent something malformed, oversized or unverifiable, which
    /// was dropped (and logged).
    Invalid {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
}

struct Peer {
    connections: Vec<ConnectionId>,
    version: Option<Version>,
    unsupported: bool,
    ledger: PeerLedger,
}

#[derive(Default)]
struct Peers(HashMap<PeerId, Peer>);

impl PeerView for Peers {
    fn bitswap_peers(&self) -> Vec<(PeerId, bool)> {
        self.0
            .iter()
            .filter(|(_, p)| !p.unsupported)
            .map(|(id, p)| (*id, p.version.is_none_or(Version::supports_have)))
            .collect()
    }

    fn supports_have(&self, peer: &PeerId) -> Option<bool> {
        self.0
            .get(peer)
            .filter(|p| !p.unsupported)
            .map(|p| p.version.is_none_or(Version::supports_have))
    }
}

/// Bitswap 1.2.0 / 1.1.0 / 1.0.0 as a [`NetworkBehaviour`]: put it in the
/// node's `#[derive(NetworkBehaviour)]` and keep the [`Handle`] from
/// [`Behaviour::new`] for fetching. The swarm must run on tokio (lookups
/// and hashing use tokio's task and blocking pools) and be polled
/// continuously.
pub struct Behaviour {
    config: Arc<Config>,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    server: Server,
    client: Client,
    peers: Peers,
    /// Server send-buffer bytes held by messages queued on each connection.
    conn_reserved: HashMap<ConnectionId, (PeerId, usize)>,
    outbox: Outbox,
    answers: Vec<Answer>,
    pending: VecDeque<ToSwarm<Event, HandlerIn>>,
    tick: Option<tokio::time::Interval>,
    stats: Stats,
}

impl Behaviour {
    /// A behaviour serving from `provider`, and the handle to fetch with.
    pub fn new<P: BlockProvider>(
        config: Config,
        provider: P,
    ) -> Result<(Self, Handle), ConfigError> {
        Self::with_shared_provider(config, Arc::new(provider))
    }

    /// Like [`Behaviour::new`], for a provider already shared.
    pub fn with_provider_arc<P: BlockProvider>(
        config: Config,
        provider: Arc<P>,
    ) -> Result<(Self, Handle), ConfigError> {
        Self::with_shared_provider(config, provider)
    }

    fn with_shared_provider(
        config: Config,
        provider: SharedProvider,
    ) -> Result<(Self, Handle), ConfigError> {
        config.validate()?;
        let config = Arc::new(config);
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let handle = Handle::new(tx, config.max_client_wants, config.session_window);
        let behaviour = Self {
            server: Server::new(config.clone(), provider),
            client: Client::new(config.want_block_timeout, config.rebroadcast_interval),
            config,
            commands: rx,
            commands_open: true,
            peers: Peers::default(),
            conn_reserved: HashMap::new(),
            outbox: Outbox::default(),
            answers: Vec::new(),
            pending: VecDeque::new(),
            tick: None,
            stats: Stats::default(),
        };
        Ok((behaviour, handle))
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Want {
                cid,
                session,
                waiter,
                tx,
            } => self.client.want(
                cid,
                session,
                (waiter, tx),
                &self.peers,
                &mut self.outbox,
                now,
            ),
            Command::Cancel { cid, waiter } => self.client.cancel(&cid, waiter, &mut self.outbox),
            Command::CloseSession(id) => self.client.close_session(id),
            Command::NewBlocks(cids) => self.server.on_new_blocks(&cids),
            Command::Stats(tx) => {
                let mut s = self.stats.clone();
                s.wantlist = self.client.wantlist();
                s.peers = self
                    .peers
                    .bitswap_peers()
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                s.refused_wants = self.server.refused_wants;
                s.server_wants = self.server.wants_total();
                let _ = tx.send(s);
            }
            Command::PeerWantlist(peer, tx) => {
                let _ = tx.send(self.server.peer_wantlist(&peer));
            }
            Command::Ledger(peer, tx) => {
                let mut l = self
                    .peers
                    .0
                    .get(&peer)
                    .map_or_else(|| PeerLedger::new(peer), |p| p.ledger.clone());
                l.wants = self.server.peer_wantlist(&peer).len();
                let _ = tx.send(l);
            }
        }
    }

    fn send(&mut self, peer: PeerId, message: Message, server_bytes: usize) {
        let conn = self
            .peers
            .0
            .get(&peer)
            .filter(|p| !p.unsupported)
            .and_then(|p| p.connections.first().copied());
        let Some(conn) = conn else {
            self.server.release(&peer, server_bytes);
            return;
        };
        if server_bytes > 0 {
            self.conn_reserved.entry(conn).or_insert((peer, 0)).1 += server_bytes;
        }
        tracing::trace!(
            %peer,
            wants = message.wantlist.len(),
            blocks = message.payload.len(),
            presences = message.presences.len(),
            "sending bitswap message"
        );
        self.pending.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(conn),
            event: HandlerIn(Outgoing::new(message, server_bytes)),
        });
    }

    /// Turns gathered wantlist entries into messages, one or more per peer.
    fn flush_outbox(&mut self) {
        let max_len = self.config.max_message_size - message::WANTLIST_OVERHEAD;
        let max_items = self.config.max_items_per_message;
        let outbox = std::mem::take(&mut self.outbox.entries);
        for (peer, entries) in outbox {
            let mut msg = Message::new();
            let mut len = 0;
            for e in entries {
                let n = message::entry_wire_len(&e);
                if !msg.wantlist.is_empty()
                    && (len + n > max_len || msg.wantlist.len() >= max_items)
                {
                    self.send(peer, std::mem::take(&mut msg), 0);
                    len = 0;
                }
                len += n;
                msg.wantlist.push(e);
            }
            if !msg.wantlist.is_empty() {
                self.send(peer, msg, 0);
            }
        }
    }

    fn release(&mut self, peer: PeerId, conn: ConnectionId, server_bytes: usize) {
        if server_bytes == 0 {
            return;
        }
        if let Some((_, held)) = self.conn_reserved.get_mut(&conn) {
            *held = held.saturating_sub(server_bytes);
        }
        self.server.release(&peer, server_bytes);
    }

    fn on_received(&mut self, peer: PeerId, inbound: super::verify::Inbound) {
        let now = Instant::now();
        self.stats.messages_received += 1;
        tracing::trace!(
            %peer,
            wants = inbound.wantlist.len(),
            full = inbound.full,
            blocks = inbound.blocks.len(),
            presences = inbound.presences.len(),
            "received bitswap message"
        );
        if inbound.dropped_blocks > 0 {
            self.stats.unverifiable_blocks += inbound.dropped_blocks as u64;
            self.pending
                .push_back(ToSwarm::GenerateEvent(Event::Invalid {
                    peer,
                    reason: format!("{} blocks could not be verified", inbound.dropped_blocks),
                }));
        }
        if inbound.skipped > 0 {
            tracing::warn!(%peer, skipped = inbound.skipped, "peer sent more items in one message than accepted; ignored the rest");
        }
        if !inbound.wantlist.is_empty() || inbound.full {
            self.server
                .on_wantlist(peer, inbound.full, &inbound.wantlist);
        }
        for received in &inbound.blocks {
            let len = received.block.data().len() as u64;
            match self.client.on_block(peer, received, &mut self.outbox) {
                BlockOutcome::Wanted(_) => {
                    self.stats.blocks_received += 1;
                    self.stats.data_received += len;
                    if let Some(p) = self.peers.0.get_mut(&peer) {
                        p.ledger.blocks_received += 1;
                        p.ledger.bytes_received += len;
                    }
                }
                BlockOutcome::Duplicate => {
                    self.stats.dup_blocks_received += 1;
                    self.stats.dup_data_received += len;
                }
                BlockOutcome::Unwanted => {
                    self.stats.unwanted_blocks += 1;
                    tracing::debug!(%peer, cid = %received.block.cid(), "dropping a block nobody wanted (or whose bytes match no wanted CID)");
                }
            }
        }
        for p in inbound.presences {
            match p.kind {
                PresenceKind::Have => {
                    self.client
                        .on_have(peer, p.cid, &self.peers, &mut self.outbox, now)
                }
                PresenceKind::DontHave => {
                    self.client
                        .on_dont_have(peer, p.cid, &self.peers, &mut self.outbox, now)
                }
            }
        }
    }

    fn on_connection_established(&mut self, peer: PeerId, conn: ConnectionId) {
        let p = self.peers.0.entry(peer).or_insert_with(|| Peer {
            connections: Vec::new(),
            version: None,
            unsupported: false,
            ledger: PeerLedger::new(peer),
        });
        let first = p.connections.is_empty();
        p.connections.push(conn);
        if first {
            self.client.peer_joined(peer, &self.peers, &mut self.outbox);
        }
    }

    fn on_connection_closed(&mut self, peer: PeerId, conn: ConnectionId, remaining: usize) {
        if let Some((_, held)) = self.conn_reserved.remove(&conn) {
            // Messages queued on the closed connection are lost.
            self.server.release(&peer, held);
        }
        if let Some(p) = self.peers.0.get_mut(&peer) {
            p.connections.retain(|c| *c != conn);
        }
        if remaining == 0 {
            self.peers.0.remove(&peer);
            self.server.peer_gone(&peer);
            self.client
                .peer_left(peer, &self.peers, &mut self.outbox, Instant::now());
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(peer, &self.config))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(peer, &self.config))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => self.on_connection_established(peer_id, connection_id),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                remaining_established,
                ..
            }) => self.on_connection_closed(peer_id, connection_id, remaining_established),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let HandlerEvent(event) = event;
        match event {
            HandlerOut::Negotiated(version) => {
                if let Some(p) = self.peers.0.get_mut(&peer) {
                    p.version = Some(version);
                }
                self.pending
                    .push_back(ToSwarm::GenerateEvent(Event::Negotiated { peer, version }));
            }
            HandlerOut::Unsupported => {
                let newly = self
                    .peers
                    .0
                    .get_mut(&peer)
                    .is_some_and(|p| !std::mem::replace(&mut p.unsupported, true));
                if newly {
                    self.server.peer_gone(&peer);
                    self.client
                        .peer_left(peer, &self.peers, &mut self.outbox, Instant::now());
                    self.pending
                        .push_back(ToSwarm::GenerateEvent(Event::Unsupported { peer }));
                }
            }
            HandlerOut::Received(inbound) => self.on_received(peer, *inbound),
            HandlerOut::Invalid(reason) => {
                self.stats.invalid_messages += 1;
                self.pending
                    .push_back(ToSwarm::GenerateEvent(Event::Invalid { peer, reason }));
            }
            HandlerOut::Sent {
                server_bytes,
                blocks,
                block_bytes,
            } => {
                self.release(peer, conn, server_bytes);
                self.stats.blocks_sent += blocks as u64;
                self.stats.data_sent += block_bytes as u64;
                if let Some(p) = self.peers.0.get_mut(&peer) {
                    p.ledger.blocks_sent += blocks as u64;
                    p.ledger.bytes_sent += block_bytes as u64;
                }
            }
            HandlerOut::SendFailed { server_bytes } => self.release(peer, conn, server_bytes),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Poll::Ready(ev);
            }
            let now = Instant::now();
            let mut handled = 0;
            while self.commands_open && handled < COMMANDS_PER_POLL {
                match self.commands.poll_recv(cx) {
                    Poll::Ready(Some(cmd)) => self.command(cmd, now),
                    // Every handle is gone: keep serving, stop listening.
                    Poll::Ready(None) => self.commands_open = false,
                    Poll::Pending => break,
                }
                handled += 1;
            }
            let period = TICK
                .min(self.config.rebroadcast_interval / 2)
                .max(Duration::from_millis(10));
            let tick = self.tick.get_or_insert_with(|| {
                let mut i = tokio::time::interval(period);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            while tick.poll_tick(cx).is_ready() {
                self.client.tick(&self.peers, &mut self.outbox, now);
            }
            let mut answers = std::mem::take(&mut self.answers);
            self.server.poll(cx, &mut answers);
            for a in answers.drain(..) {
                self.send(a.peer, a.message, a.reserved);
            }
            self.answers = answers;
            self.flush_outbox();
            if self.pending.is_empty() {
                if handled == COMMANDS_PER_POLL {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        }
    }
}
