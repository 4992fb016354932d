//! The fetching side: what we want, from whom we asked it, who has it.
//!
//! A want starts with the peers its session already got blocks from: one of
//! them (the least loaded) is sent want-block, the others want-have. A want
//! with no session peers is sent want-have (with send-dont-have) to every
//! connected peer; the first HAVE gets a want-block. A DONT_HAVE, a timeout
//! (`want_block_timeout`) or a disconnect moves the want-block on to the
//! next peer that said HAVE, else to everyone not yet asked; wants nobody
//! has offered are asked again of everyone every `rebroadcast_interval`.
//! When the block arrives, every other peer that holds our want gets a
//! cancel. Peers that speak only 1.0.0 or 1.1.0 know no want-have and are
//! sent want-block.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use cid::Cid;
use libp2p::PeerId;
use tessera_blockstore::Block;
use tokio::sync::oneshot;

use super::message::{Entry, WantType};
use super::verify::Received;

/// Identifies a session; 0 is "no session".
pub(crate) type SessionId = u64;
/// Identifies one waiting caller.
pub(crate) type WaiterId = u64;

/// Peers a session remembers, most recent first.
const SESSION_PEERS: usize = 16;
/// Other session peers sent want-have beside the want-block.
const SESSION_HAVES: usize = 4;
/// Received CIDs remembered to count duplicates.
const RECENT: usize = 8192;
/// A session unused this long is forgotten, in case its `Session` was
/// dropped while the command channel was full.
const SESSION_IDLE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct SessionPeers {
    /// Most recent first.
    peers: VecDeque<PeerId>,
    last_used: Option<Instant>,
}

/// Connected peers as the client sees them.
pub(crate) trait PeerView {
    /// Peers that may speak Bitswap, each with whether it knows want-have.
    fn bitswap_peers(&self) -> Vec<(PeerId, bool)>;
    fn supports_have(&self, peer: &PeerId) -> Option<bool>;
}

/// Wantlist entries to send, gathered per peer and flushed once per poll.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) entries: HashMap<PeerId, Vec<Entry>>,
}

impl Outbox {
    fn push(&mut self, peer: PeerId, e: Entry) {
        self.entries.entry(peer).or_default().push(e);
    }
}

struct Want {
    waiters: Vec<(WaiterId, oneshot::Sender<Block>)>,
    session: SessionId,
    priority: i32,
    /// Peers holding a want of ours for this block (to cancel).
    asked: HashSet<PeerId>,
    /// The peer asked for the block, and since when.
    block_from: Option<(PeerId, Instant)>,
    /// Peers that said HAVE, not yet asked for the block.
    haves: VecDeque<PeerId>,
    /// Peers that said DONT_HAVE (or timed out) since the last broadcast.
    dont_haves: HashSet<PeerId>,
    last_broadcast: Option<Instant>,
}

/// What happened to a received block.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BlockOutcome {
    /// It was wanted and handed to its waiters.
    Wanted(Cid),
    /// We had received it already.
    Duplicate,
    /// Nobody wanted it.
    Unwanted,
}

pub(crate) struct Client {
    wants: HashMap<Cid, Want>,
    sessions: HashMap<SessionId, SessionPeers>,
    /// Want-blocks outstanding per peer, to spread load.
    load: HashMap<PeerId, usize>,
    recent: VecDeque<Cid>,
    recent_set: HashSet<Cid>,
    next_priority: i32,
    want_block_timeout: Duration,
    rebroadcast_interval: Duration,
}

impl Client {
    pub(crate) fn new(want_block_timeout: Duration, rebroadcast_interval: Duration) -> Self {
        Self {
            wants: HashMap::new(),
            sessions: HashMap::new(),
            load: HashMap::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            next_priority: i32::MAX,
            want_block_timeout,
            rebroadcast_interval,
        }
    }

    pub(crate) fn wantlist(&self) -> Vec<Cid> {
        self.wants.keys().copied().collect()
    }

    /// A caller wants `cid`.
    pub(crate) fn want(
        &mut self,
        cid: Cid,
        session: SessionId,
        waiter: (WaiterId, oneshot::Sender<Block>),
        peers: &dyn PeerView,
        out: &mut Outbox,
        now: Instant,
    ) {
        if let Some(w) = self.wants.get_mut(&cid) {
            w.waiters.push(waiter);
            return;
        }
        // Earlier wants first: servers answer higher priorities first.
        let priority = self.next_priority;
        self.next_priority = if self.next_priority <= 1 {
            i32::MAX
        } else {
            self.next_priority - 1
        };
        self.wants.insert(
            cid,
            Want {
                waiters: vec![waiter],
                session,
                priority,
                asked: HashSet::new(),
                block_from: None,
                haves: VecDeque::new(),
                dont_haves: HashSet::new(),
                last_broadcast: None,
            },
        );
        self.start(cid, peers, out, now);
    }

    /// First requests for a new want.
    fn start(&mut self, cid: Cid, peers: &dyn PeerView, out: &mut Outbox, now: Instant) {
        let Some(w) = self.wants.get(&cid) else {
            return;
        };
        let mut session_peers = Vec::new();
        if w.session != 0 {
            let s = self.sessions.entry(w.session).or_default();
            s.last_used = Some(now);
            session_peers = s
                .peers
                .iter()
                .filter(|p| peers.supports_have(p).is_some())
                .copied()
                .collect();
        }
        let Some(&target) = session_peers
            .iter()
            .min_by_key(|p| self.load.get(p).copied().unwrap_or(0))
        else {
            self.broadcast(cid, peers, out, now);
            return;
        };
        self.ask_block(cid, target, out, now);
        let others: Vec<PeerId> = session_peers
            .into_iter()
            .filter(|p| *p != target)
            .take(SESSION_HAVES)
            .collect();
        for p in others {
            self.ask_have(cid, p, peers, out);
        }
    }

    fn entry(&self, cid: Cid, want_type: WantType) -> Entry {
        Entry {
            cid,
            priority: self.wants.get(&cid).map_or(1, |w| w.priority),
            cancel: false,
            want_type,
            send_dont_have: true,
        }
    }

    fn ask_block(&mut self, cid: Cid, peer: PeerId, out: &mut Outbox, now: Instant) {
        let e = self.entry(cid, WantType::Block);
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        w.block_from = Some((peer, now));
        w.asked.insert(peer);
        *self.load.entry(peer).or_default() += 1;
        out.push(peer, e);
    }

    fn ask_have(&mut self, cid: Cid, peer: PeerId, peers: &dyn PeerView, out: &mut Outbox) {
        let legacy = peers.supports_have(&peer) == Some(false);
        // A legacy peer cannot answer want-have; it is asked for the block.
        let e = self.entry(
            cid,
            if legacy {
                WantType::Block
            } else {
                WantType::Have
            },
        );
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        w.asked.insert(peer);
        out.push(peer, e);
    }

    fn clear_block_from(&mut self, cid: &Cid) {
        if let Some(w) = self.wants.get_mut(cid)
            && let Some((p, _)) = w.block_from.take()
            && let Some(n) = self.load.get_mut(&p)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.load.remove(&p);
            }
        }
    }

    /// Want-have to every connected peer not known to lack the block.
    fn broadcast(&mut self, cid: Cid, peers: &dyn PeerView, out: &mut Outbox, now: Instant) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        w.last_broadcast = Some(now);
        let skip = w.dont_haves.clone();
        let busy = w.block_from.map(|(p, _)| p);
        for (p, _) in peers.bitswap_peers() {
            if !skip.contains(&p) && Some(p) != busy {
                self.ask_have(cid, p, peers, out);
            }
        }
    }

    /// Moves the want-block on after `cid`'s block peer failed.
    fn next_peer(&mut self, cid: Cid, peers: &dyn PeerView, out: &mut Outbox, now: Instant) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        while let Some(p) = w.haves.pop_front() {
            if peers.supports_have(&p).is_some() {
                self.ask_block(cid, p, out, now);
                return;
            }
        }
        let unasked = peers
            .bitswap_peers()
            .into_iter()
            .any(|(p, _)| !w.asked.contains(&p) && !w.dont_haves.contains(&p));
        if unasked {
            self.broadcast(cid, peers, out, now);
        }
    }

    /// A caller gave up; the want goes when its last caller does.
    pub(crate) fn cancel(&mut self, cid: &Cid, waiter: WaiterId, out: &mut Outbox) {
        let Some(w) = self.wants.get_mut(cid) else {
            return;
        };
        w.waiters.retain(|(id, _)| *id != waiter);
        if w.waiters.is_empty() {
            self.drop_want(cid, None, out);
        }
    }

    fn drop_want(&mut self, cid: &Cid, except: Option<PeerId>, out: &mut Outbox) {
        self.clear_block_from(cid);
        let Some(w) = self.wants.remove(cid) else {
            return;
        };
        for p in w.asked {
            if Some(p) != except {
                out.push(
                    p,
                    Entry {
                        cid: *cid,
                        priority: 0,
                        cancel: true,
                        want_type: WantType::Block,
                        send_dont_have: false,
                    },
                );
            }
        }
    }

    /// A verified block arrived from `peer`.
    pub(crate) fn on_block(
        &mut self,
        peer: PeerId,
        received: &Received,
        out: &mut Outbox,
    ) -> BlockOutcome {
        let Some(cid) = received
            .candidates()
            .into_iter()
            .find(|c| self.wants.contains_key(c))
        else {
            return if self.recent_set.contains(received.block.cid()) {
                BlockOutcome::Duplicate
            } else {
                BlockOutcome::Unwanted
            };
        };
        let session = self.wants.get(&cid).map_or(0, |w| w.session);
        let waiters = self
            .wants
            .get_mut(&cid)
            .map(|w| std::mem::take(&mut w.waiters))
            .unwrap_or_default();
        self.drop_want(&cid, Some(peer), out);
        let block = Block::new_unchecked(cid, received.block.data().clone());
        for (_, tx) in waiters {
            let _ = tx.send(block.clone());
        }
        self.learn(session, peer);
        self.remember(cid);
        BlockOutcome::Wanted(cid)
    }

    fn remember(&mut self, cid: Cid) {
        if self.recent_set.insert(cid) {
            self.recent.push_back(cid);
            if self.recent.len() > RECENT
                && let Some(old) = self.recent.pop_front()
            {
                self.recent_set.remove(&old);
            }
        }
    }

    /// The session got something from `peer`: ask it first next time.
    fn learn(&mut self, session: SessionId, peer: PeerId) {
        if session == 0 {
            return;
        }
        let s = self.sessions.entry(session).or_default();
        s.last_used.get_or_insert_with(Instant::now);
        let peers = &mut s.peers;
        if peers.front() == Some(&peer) {
            return;
        }
        peers.retain(|p| *p != peer);
        peers.push_front(peer);
        peers.truncate(SESSION_PEERS);
    }

    /// `peer` has `cid`.
    pub(crate) fn on_have(
        &mut self,
        peer: PeerId,
        cid: Cid,
        peers: &dyn PeerView,
        out: &mut Outbox,
        now: Instant,
    ) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        let session = w.session;
        if w.block_from.is_none() {
            self.ask_block(cid, peer, out, now);
        } else if w.block_from.map(|(p, _)| p) != Some(peer) && !w.haves.contains(&peer) {
            w.haves.push_back(peer);
        }
        if session != 0 {
            // A peer with one block of a DAG likely has the rest.
            let s = self.sessions.entry(session).or_default();
            s.last_used.get_or_insert(now);
            let s = &mut s.peers;
            if !s.contains(&peer) {
                s.push_back(peer);
                s.truncate(SESSION_PEERS);
            }
        }
        let _ = peers;
    }

    /// `peer` lacks `cid`.
    pub(crate) fn on_dont_have(
        &mut self,
        peer: PeerId,
        cid: Cid,
        peers: &dyn PeerView,
        out: &mut Outbox,
        now: Instant,
    ) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        w.dont_haves.insert(peer);
        w.haves.retain(|p| *p != peer);
        if w.block_from.map(|(p, _)| p) == Some(peer) {
            self.clear_block_from(&cid);
            self.next_peer(cid, peers, out, now);
        }
    }

    /// A peer connected: it hears everything we want.
    pub(crate) fn peer_joined(&mut self, peer: PeerId, peers: &dyn PeerView, out: &mut Outbox) {
        let cids: Vec<Cid> = self.wants.keys().copied().collect();
        for cid in cids {
            self.ask_have(cid, peer, peers, out);
        }
    }

    /// A peer left (or turned out not to speak Bitswap).
    pub(crate) fn peer_left(
        &mut self,
        peer: PeerId,
        peers: &dyn PeerView,
        out: &mut Outbox,
        now: Instant,
    ) {
        self.load.remove(&peer);
        for s in self.sessions.values_mut() {
            s.peers.retain(|p| *p != peer);
        }
        let mut stalled = Vec::new();
        for (cid, w) in &mut self.wants {
            w.asked.remove(&peer);
            w.haves.retain(|p| *p != peer);
            w.dont_haves.remove(&peer);
            if w.block_from.map(|(p, _)| p) == Some(peer) {
                w.block_from = None;
                stalled.push(*cid);
            }
        }
        for cid in stalled {
            self.next_peer(cid, peers, out, now);
        }
    }

    pub(crate) fn close_session(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    /// Timeouts, rebroadcasts, and wants whose callers all went away.
    pub(crate) fn tick(&mut self, peers: &dyn PeerView, out: &mut Outbox, now: Instant) {
        self.sessions.retain(|_, s| {
            s.last_used
                .is_none_or(|t| now.duration_since(t) < SESSION_IDLE)
        });
        let mut abandoned = Vec::new();
        let mut timed_out = Vec::new();
        let mut stalled = Vec::new();
        for (cid, w) in &mut self.wants {
            w.waiters.retain(|(_, tx)| !tx.is_closed());
            if w.waiters.is_empty() {
                abandoned.push(*cid);
                continue;
            }
            match w.block_from {
                Some((p, since)) if now.duration_since(since) >= self.want_block_timeout => {
                    timed_out.push((*cid, p))
                }
                Some(_) => {}
                None if !w.haves.is_empty() => stalled.push(*cid),
                None if w
                    .last_broadcast
                    .is_none_or(|t| now.duration_since(t) >= self.rebroadcast_interval) =>
                {
                    // Peers that said DONT_HAVE may have it by now.
                    w.dont_haves.clear();
                    stalled.push(*cid);
                }
                None => {}
            }
        }
        for cid in abandoned {
            self.drop_want(&cid, None, out);
        }
        for (cid, peer) in timed_out {
            tracing::debug!(%cid, %peer, "peer did not send a block in time; asking another");
            if let Some(w) = self.wants.get_mut(&cid) {
                w.dont_haves.insert(peer);
            }
            self.clear_block_from(&cid);
            self.next_peer(cid, peers, out, now);
            if let Some(w) = self.wants.get(&cid)
                && w.block_from.is_none()
                && w.last_broadcast
                    .is_none_or(|t| now.duration_since(t) >= self.rebroadcast_interval)
            {
                self.broadcast(cid, peers, out, now);
            }
        }
        for cid in stalled {
            let has_haves = self.wants.get(&cid).is_some_and(|w| !w.haves.is_empty());
            if has_haves {
                self.next_peer(cid, peers, out, now);
            } else {
                self.broadcast(cid, peers, out, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tessera_blockstore::RAW;

    use super::*;

    struct Peers(Vec<(PeerId, bool)>);

    impl PeerView for Peers {
        fn bitswap_peers(&self) -> Vec<(PeerId, bool)> {
            self.0.clone()
        }
        fn supports_have(&self, peer: &PeerId) -> Option<bool> {
            self.0.iter().find(|(p, _)| p == peer).map(|(_, h)| *h)
        }
    }

    fn block(i: u32) -> Block {
        Block::from_data_v1(RAW, Bytes::from(i.to_be_bytes().to_vec()))
    }

    fn received(b: &Block) -> Received {
        Received {
            block: b.clone(),
            legacy: false,
        }
    }

    fn sent(out: &mut Outbox, peer: PeerId) -> Vec<(Cid, WantType, bool)> {
        out.entries
            .remove(&peer)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.cid, e.want_type, e.cancel))
            .collect()
    }

    fn setup(n: usize) -> (Client, Peers, Vec<PeerId>) {
        let ids: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        let peers = Peers(ids.iter().map(|p| (*p, true)).collect());
        (
            Client::new(Duration::from_secs(10), Duration::from_secs(3)),
            peers,
            ids,
        )
    }

    #[test]
    fn broadcast_have_then_block_from_first_have_then_cancel_others() {
        let (mut c, peers, ids) = setup(3);
        let mut out = Outbox::default();
        let now = Instant::now();
        let b = block(1);
        let (tx, mut rx) = oneshot::channel();
        c.want(*b.cid(), 1, (1, tx), &peers, &mut out, now);
        for p in &ids {
            assert_eq!(sent(&mut out, *p), vec![(*b.cid(), WantType::Have, false)]);
        }
        c.on_dont_have(ids[0], *b.cid(), &peers, &mut out, now);
        c.on_have(ids[1], *b.cid(), &peers, &mut out, now);
        c.on_have(ids[2], *b.cid(), &peers, &mut out, now);
        assert_eq!(
            sent(&mut out, ids[1]),
            vec![(*b.cid(), WantType::Block, false)]
        );
        assert!(out.entries.is_empty(), "only one want-block");
        assert_eq!(
            c.on_block(ids[1], &received(&b), &mut out),
            BlockOutcome::Wanted(*b.cid())
        );
        assert_eq!(rx.try_recv().unwrap(), b);
        // Everyone else that holds our want hears cancel; the sender does not.
        assert_eq!(
            sent(&mut out, ids[0]),
            vec![(*b.cid(), WantType::Block, true)]
        );
        assert_eq!(
            sent(&mut out, ids[2]),
            vec![(*b.cid(), WantType::Block, true)]
        );
        assert!(out.entries.is_empty());
        assert_eq!(
            c.on_block(ids[2], &received(&b), &mut out),
            BlockOutcome::Duplicate
        );
        assert_eq!(
            c.on_block(ids[2], &received(&block(9)), &mut out),
            BlockOutcome::Unwanted
        );
    }

    #[test]
    fn session_asks_the_peer_that_delivered_directly() {
        let (mut c, peers, ids) = setup(2);
        let mut out = Outbox::default();
        let now = Instant::now();
        let (a, b) = (block(1), block(2));
        let (tx, _rx) = oneshot::channel();
        c.want(*a.cid(), 7, (1, tx), &peers, &mut out, now);
        c.on_block(ids[1], &received(&a), &mut out);
        out.entries.clear();
        let (tx, _rx2) = oneshot::channel();
        c.want(*b.cid(), 7, (2, tx), &peers, &mut out, now);
        assert_eq!(
            sent(&mut out, ids[1]),
            vec![(*b.cid(), WantType::Block, false)]
        );
        assert!(
            out.entries.is_empty(),
            "no broadcast when the session knows a peer"
        );
    }

    #[test]
    fn dont_have_and_timeout_move_the_want_on() {
        let (mut c, peers, ids) = setup(3);
        let mut out = Outbox::default();
        let t0 = Instant::now();
        let b = block(1);
        let (tx, _rx) = oneshot::channel();
        c.want(*b.cid(), 0, (1, tx), &peers, &mut out, t0);
        c.on_have(ids[0], *b.cid(), &peers, &mut out, t0);
        c.on_have(ids[1], *b.cid(), &peers, &mut out, t0);
        c.on_have(ids[2], *b.cid(), &peers, &mut out, t0);
        out.entries.clear();
        c.on_dont_have(ids[0], *b.cid(), &peers, &mut out, t0);
        assert_eq!(
            sent(&mut out, ids[1]),
            vec![(*b.cid(), WantType::Block, false)]
        );
        // ids[1] never answers: after the timeout, ids[2] is asked.
        c.tick(&peers, &mut out, t0 + Duration::from_secs(5));
        assert!(out.entries.is_empty());
        c.tick(&peers, &mut out, t0 + Duration::from_secs(11));
        assert_eq!(
            sent(&mut out, ids[2]),
            vec![(*b.cid(), WantType::Block, false)]
        );
    }

    #[test]
    fn disconnect_moves_the_want_and_join_hears_wants() {
        let (mut c, mut peers, ids) = setup(2);
        let mut out = Outbox::default();
        let now = Instant::now();
        let b = block(1);
        let (tx, _rx) = oneshot::channel();
        c.want(*b.cid(), 0, (1, tx), &peers, &mut out, now);
        c.on_have(ids[0], *b.cid(), &peers, &mut out, now);
        out.entries.clear();
        peers.0.retain(|(p, _)| *p != ids[0]);
        c.peer_left(ids[0], &peers, &mut out, now);
        // ids[1] was asked already and said nothing yet: no new message.
        assert!(out.entries.is_empty());
        let newcomer = PeerId::random();
        peers.0.push((newcomer, true));
        c.peer_joined(newcomer, &peers, &mut out);
        assert_eq!(
            sent(&mut out, newcomer),
            vec![(*b.cid(), WantType::Have, false)]
        );
    }

    #[test]
    fn abandoned_wants_are_cancelled_and_stalled_ones_rebroadcast() {
        let (mut c, peers, ids) = setup(1);
        let mut out = Outbox::default();
        let t0 = Instant::now();
        let (a, b) = (block(1), block(2));
        let (tx, rx) = oneshot::channel();
        c.want(*a.cid(), 0, (1, tx), &peers, &mut out, t0);
        let (tx, _keep) = oneshot::channel();
        c.want(*b.cid(), 0, (2, tx), &peers, &mut out, t0);
        c.on_dont_have(ids[0], *b.cid(), &peers, &mut out, t0);
        out.entries.clear();
        drop(rx);
        c.tick(&peers, &mut out, t0 + Duration::from_secs(4));
        let mut got = sent(&mut out, ids[0]);
        got.sort_by_key(|(c, _, _)| *c == *a.cid());
        assert_eq!(
            got,
            vec![
                (*b.cid(), WantType::Have, false),
                (*a.cid(), WantType::Block, true)
            ]
        );
        assert_eq!(c.wantlist(), vec![*b.cid()]);
    }

    #[test]
    fn legacy_peers_get_want_block() {
        let mut c = Client::new(Duration::from_secs(10), Duration::from_secs(3));
        let old = PeerId::random();
        let peers = Peers(vec![(old, false)]);
        let mut out = Outbox::default();
        let b = block(1);
        let (tx, _rx) = oneshot::channel();
        c.want(*b.cid(), 0, (1, tx), &peers, &mut out, Instant::now());
        assert_eq!(
            sent(&mut out, old),
            vec![(*b.cid(), WantType::Block, false)]
        );
    }
}
