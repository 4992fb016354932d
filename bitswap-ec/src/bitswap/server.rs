//! The serving side: keeps every peer's wantlist, looks wants up in the
//! [`BlockProvider`](super::BlockProvider), and answers with blocks, HAVE
//! and DONT_HAVE.
//!
//! Fairness: peers with queued wants take turns (round robin); a turn looks
//! up a few want-blocks (`blocks_per_turn`) or many want-haves. Memory: a
//! peer whose answers are not yet written past `peer_send_buffer` bytes
//! gets no turn until they are, all peers together are held to
//! `total_send_buffer`, and wants beyond `max_wants_per_peer` /
//! `max_wants_total` are ignored. A peer that asks for millions of blocks
//! costs a bounded amount of memory and only its share of the turns.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;

use super::config::Config;
use super::ledger::{Change, Ledger, Task};
use super::message::{self, Entry, Message, Payload, Presence, PresenceKind, WantType};
use super::prefix::Prefix;
use super::provider::SharedProvider;

/// Send-buffer bytes reserved for one want-block before its size is known.
const BLOCK_ESTIMATE: usize = 256 * 1024;
/// Send-buffer bytes reserved for one want-have.
const HAVE_ESTIMATE: usize = 64;

enum Found {
    Block(Bytes),
    Have,
    Missing,
}

struct Lookup {
    peer: PeerId,
    reserved: usize,
    results: Vec<(Task, Found)>,
}

/// An answer ready to go to a peer.
pub(crate) struct Answer {
    pub(crate) peer: PeerId,
    pub(crate) message: Message,
    /// Send-buffer bytes it holds until written.
    pub(crate) reserved: usize,
}

pub(crate) struct Server {
    config: Arc<Config>,
    provider: SharedProvider,
    ledgers: HashMap<PeerId, Ledger>,
    ring: VecDeque<PeerId>,
    lookups: FuturesUnordered<BoxFuture<'static, Lookup>>,
    reserved_total: usize,
    wants_total: usize,
    /// Wants ignored because of the limits, for statistics.
    pub(crate) refused_wants: u64,
}

impl Server {
    pub(crate) fn new(config: Arc<Config>, provider: SharedProvider) -> Self {
        Self {
            config,
            provider,
            ledgers: HashMap::new(),
            ring: VecDeque::new(),
            lookups: FuturesUnordered::new(),
            reserved_total: 0,
            wants_total: 0,
            refused_wants: 0,
        }
    }

    /// Applies a received wantlist.
    pub(crate) fn on_wantlist(&mut self, peer: PeerId, full: bool, entries: &[Entry]) {
        if entries.is_empty() && !full {
            return;
        }
        let ledger = self.ledgers.entry(peer).or_default();
        if full {
            let keep: HashSet<Cid> = entries
                .iter()
                .filter(|e| !e.cancel)
                .map(|e| e.cid)
                .collect();
            self.wants_total -= ledger.retain(&keep);
        }
        let mut refused = 0u64;
        for e in entries {
            let may_add = ledger.len() < self.config.max_wants_per_peer
                && self.wants_total < self.config.max_wants_total;
            match ledger.apply(e, may_add) {
                Change::Added => self.wants_total += 1,
                Change::Removed => self.wants_total -= 1,
                Change::Unchanged => {}
                Change::Refused => refused += 1,
            }
        }
        if refused > 0 {
            self.refused_wants += refused;
            tracing::warn!(
                %peer,
                refused,
                held = ledger.len(),
                "peer wants more blocks than the server keeps; ignoring the excess"
            );
        }
        if ledger.queued() > 0 && !ledger.in_ring {
            ledger.in_ring = true;
            self.ring.push_back(peer);
        }
        if ledger.len() == 0 && ledger.reserved == 0 && !ledger.in_ring {
            self.ledgers.remove(&peer);
        }
    }

    /// Blocks that became available: answer peers that were told DONT_HAVE.
    pub(crate) fn on_new_blocks(&mut self, cids: &[Cid]) {
        for (peer, ledger) in &mut self.ledgers {
            let mut any = false;
            for c in cids {
                any |= ledger.retry(c);
            }
            if any && !ledger.in_ring {
                ledger.in_ring = true;
                self.ring.push_back(*peer);
            }
        }
    }

    /// The peer is gone: forget its wants and give back its buffer share.
    pub(crate) fn peer_gone(&mut self, peer: &PeerId) {
        if let Some(l) = self.ledgers.remove(peer) {
            self.wants_total -= l.len();
            self.reserved_total -= l.reserved;
        }
    }

    /// An answer was written (or lost): give its buffer bytes back.
    pub(crate) fn release(&mut self, peer: &PeerId, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if let Some(l) = self.ledgers.get_mut(peer) {
            let b = bytes.min(l.reserved);
            l.reserved -= b;
            self.reserved_total -= b;
            if l.queued() > 0 && !l.in_ring {
                l.in_ring = true;
                self.ring.push_back(*peer);
            }
        }
    }

    /// What `peer` wants from us.
    pub(crate) fn peer_wantlist(&self, peer: &PeerId) -> Vec<Cid> {
        self.ledgers
            .get(peer)
            .map(Ledger::wanted)
            .unwrap_or_default()
    }

    /// Wants held over all peers.
    pub(crate) fn wants_total(&self) -> usize {
        self.wants_total
    }

    /// Starts lookups while the limits allow, in round-robin order.
    fn schedule(&mut self) {
        let cfg = &self.config;
        while self.lookups.len() < cfg.max_concurrent_lookups
            && self.reserved_total < cfg.total_send_buffer
        {
            let Some(peer) = self.ring.pop_front() else {
                break;
            };
            let Some(ledger) = self.ledgers.get_mut(&peer) else {
                continue;
            };
            ledger.in_ring = false;
            if ledger.reserved >= cfg.peer_send_buffer {
                // Back in the ring when `release` frees its buffer.
                continue;
            }
            let tasks = ledger.pop_tasks(cfg.blocks_per_turn, cfg.haves_per_turn);
            if tasks.is_empty() {
                continue;
            }
            let reserved: usize = tasks
                .iter()
                .map(|t| match t.want_type {
                    WantType::Block => BLOCK_ESTIMATE,
                    WantType::Have => HAVE_ESTIMATE,
                })
                .sum();
            ledger.reserved += reserved;
            self.reserved_total += reserved;
            if ledger.queued() > 0 {
                ledger.in_ring = true;
                self.ring.push_back(peer);
            }
            self.lookups
                .push(spawn_lookup(self.provider.clone(), peer, reserved, tasks));
        }
    }

    /// Runs lookups and returns the answers they produced.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, out: &mut Vec<Answer>) {
        loop {
            self.schedule();
            match self.lookups.poll_next_unpin(cx) {
                Poll::Ready(Some(lookup)) => self.answer(lookup, out),
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
    }

    fn answer(&mut self, lookup: Lookup, out: &mut Vec<Answer>) {
        let Lookup {
            peer,
            reserved,
            results,
        } = lookup;
        let Some(ledger) = self.ledgers.get_mut(&peer) else {
            // The peer left; its reservation went with its ledger.
            return;
        };
        let max_block = self.config.max_block_size;
        let target = self.config.target_message_size;
        let mut messages: Vec<(Message, usize)> = Vec::new();
        let mut cur = Message::new();
        let mut cur_len = 0usize;
        for (task, found) in results {
            let Some(want) = ledger.finish(&task) else {
                continue;
            };
            let (item_len, served) = match found {
                Found::Block(data) if data.len() > max_block => {
                    tracing::warn!(cid = %task.cid, len = data.len(), max_block, "not serving a block over the size limit");
                    if want.send_dont_have {
                        push_presence(&mut cur, task.cid, PresenceKind::DontHave)
                    } else {
                        (0, false)
                    }
                }
                Found::Block(data) => {
                    let p = Payload {
                        prefix: Prefix::of(&task.cid),
                        data,
                    };
                    let n = message::payload_wire_len(&p);
                    if cur_len > 0 && cur_len + n > target {
                        messages.push((std::mem::take(&mut cur), cur_len));
                        cur_len = 0;
                    }
                    cur.payload.push(p);
                    (n, true)
                }
                Found::Have => push_presence(&mut cur, task.cid, PresenceKind::Have),
                Found::Missing if want.send_dont_have => {
                    push_presence(&mut cur, task.cid, PresenceKind::DontHave)
                }
                Found::Missing => (0, false),
            };
            cur_len += item_len;
            if served {
                ledger.remove(&task.cid);
                self.wants_total -= 1;
            }
        }
        if !cur.is_empty() {
            messages.push((cur, cur_len));
        }
        // Swap the estimate for what the answers really hold.
        let actual: usize = messages.iter().map(|(_, n)| *n).sum();
        ledger.reserved = ledger.reserved - reserved.min(ledger.reserved) + actual;
        self.reserved_total = self.reserved_total - reserved.min(self.reserved_total) + actual;
        if ledger.queued() > 0 && !ledger.in_ring && ledger.reserved < self.config.peer_send_buffer
        {
            ledger.in_ring = true;
            self.ring.push_back(peer);
        }
        for (message, reserved) in messages {
            out.push(Answer {
                peer,
                message,
                reserved,
            });
        }
    }
}

/// Adds a presence; (its wire length, whether the want is answered for good).
fn push_presence(m: &mut Message, cid: Cid, kind: PresenceKind) -> (usize, bool) {
    let p = Presence { cid, kind };
    let n = message::presence_wire_len(&p);
    m.presences.push(p);
    // HAVE answers a want-have; DONT_HAVE leaves the want standing, so the
    // block is sent if it arrives later (as Kubo).
    (n, kind == PresenceKind::Have)
}

fn spawn_lookup(
    provider: SharedProvider,
    peer: PeerId,
    reserved: usize,
    tasks: Vec<Task>,
) -> BoxFuture<'static, Lookup> {
    let cids: Vec<Task> = tasks.clone();
    let job = tokio::spawn(async move {
        let lookups = tasks.into_iter().map(|task| {
            let provider = provider.clone();
            async move {
                let found = match task.want_type {
                    WantType::Block => match provider.get_boxed(task.cid).await {
                        Ok(Some(data)) => Found::Block(data),
                        Ok(None) => Found::Missing,
                        Err(e) => {
                            tracing::warn!(cid = %task.cid, error = %e, "block provider failed; answering DONT_HAVE");
                            Found::Missing
                        }
                    },
                    WantType::Have => match provider.has_boxed(task.cid).await {
                        Ok(true) => Found::Have,
                        Ok(false) => Found::Missing,
                        Err(e) => {
                            tracing::warn!(cid = %task.cid, error = %e, "block provider failed; answering DONT_HAVE");
                            Found::Missing
                        }
                    },
                };
                (task, found)
            }
        });
        futures::future::join_all(lookups).await
    });
    Box::pin(async move {
        let results = match job.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "block provider task failed; answering DONT_HAVE");
                cids.into_iter().map(|t| (t, Found::Missing)).collect()
            }
        };
        Lookup {
            peer,
            reserved,
            results,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use tessera_blockstore::{Block, RAW};

    use super::super::memory_blocks::MemoryBlocks;
    use super::*;

    fn block(i: u32, size: usize) -> Block {
        let mut v = vec![0u8; size];
        v[..4].copy_from_slice(&i.to_be_bytes());
        Block::from_data_v1(RAW, Bytes::from(v))
    }

    fn entry(cid: Cid, want_type: WantType) -> Entry {
        Entry {
            cid,
            priority: 0,
            cancel: false,
            want_type,
            send_dont_have: true,
        }
    }

    async fn drain(server: &mut Server) -> Vec<Answer> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let before = out.len();
            futures::future::poll_fn(|cx| {
                server.poll(cx, &mut out);
                Poll::Ready(())
            })
            .await;
            if server.lookups.is_empty() && out.len() == before {
                return out;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lookups did not finish"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn answers_blocks_haves_and_dont_haves() {
        let store = MemoryBlocks::new();
        let a = block(1, 100);
        let b = block(2, 100);
        store.insert(a.clone());
        store.insert(b.clone());
        let missing = block(3, 100);
        let mut s = Server::new(Arc::new(Config::default()), Arc::new(store));
        let peer = PeerId::random();
        s.on_wantlist(
            peer,
            false,
            &[
                entry(*a.cid(), WantType::Block),
                entry(*b.cid(), WantType::Have),
                entry(*missing.cid(), WantType::Block),
            ],
        );
        let out = drain(&mut s).await;
        let payload: Vec<_> = out.iter().flat_map(|a| a.message.payload.clone()).collect();
        let presences: Vec<_> = out
            .iter()
            .flat_map(|a| a.message.presences.clone())
            .collect();
        assert_eq!(payload.len(), 1);
        assert_eq!(payload[0].data, *a.data());
        assert!(presences.contains(&Presence {
            cid: *b.cid(),
            kind: PresenceKind::Have
        }));
        assert!(presences.contains(&Presence {
            cid: *missing.cid(),
            kind: PresenceKind::DontHave
        }));
        // Only the missing block's want stays, not queued.
        assert_eq!(s.peer_wantlist(&peer), vec![*missing.cid()]);
        assert_eq!(s.wants_total(), 1);
    }

    #[tokio::test]
    async fn new_block_answers_a_standing_want() {
        let store = MemoryBlocks::new();
        let a = block(1, 100);
        let mut s = Server::new(Arc::new(Config::default()), Arc::new(store.clone()));
        let peer = PeerId::random();
        s.on_wantlist(peer, false, &[entry(*a.cid(), WantType::Block)]);
        let out = drain(&mut s).await;
        assert_eq!(out[0].message.presences.len(), 1);
        store.insert(a.clone());
        s.on_new_blocks(&[*a.cid()]);
        let out = drain(&mut s).await;
        assert_eq!(out[0].message.payload[0].data, *a.data());
        assert_eq!(s.wants_total(), 0);
    }

    #[tokio::test]
    async fn send_buffer_stops_a_peer_until_released() {
        let store = MemoryBlocks::new();
        let blocks: Vec<Block> = (0..64).map(|i| block(i, 256 * 1024)).collect();
        for b in &blocks {
            store.insert(b.clone());
        }
        let cfg = Config::default();
        let peer_buffer = cfg.peer_send_buffer;
        let mut s = Server::new(Arc::new(cfg), Arc::new(store));
        let peer = PeerId::random();
        let wants: Vec<Entry> = blocks
            .iter()
            .map(|b| entry(*b.cid(), WantType::Block))
            .collect();
        s.on_wantlist(peer, false, &wants);
        let out = drain(&mut s).await;
        let held: usize = out.iter().map(|a| a.reserved).sum();
        let sent_blocks: usize = out.iter().map(|a| a.message.payload.len()).sum();
        assert!(sent_blocks < 64, "stopped before sending everything");
        assert!(held <= peer_buffer + 4 * 300 * 1024, "held {held} bytes");
        for a in &out {
            assert!(a.message.encoded_len() <= 4 << 20);
            s.release(&peer, a.reserved);
        }
        let mut total = sent_blocks;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while total < 64 {
            let out = drain(&mut s).await;
            for a in &out {
                total += a.message.payload.len();
                s.release(&peer, a.reserved);
            }
            assert!(std::time::Instant::now() < deadline);
        }
        assert_eq!(total, 64);
    }

    #[tokio::test]
    async fn peers_take_turns() {
        let store = MemoryBlocks::new();
        let blocks: Vec<Block> = (0..40).map(|i| block(i, 1000)).collect();
        for b in &blocks {
            store.insert(b.clone());
        }
        let cfg = Config {
            max_concurrent_lookups: 1,
            ..Config::default()
        };
        let mut s = Server::new(Arc::new(cfg), Arc::new(store));
        let (greedy, modest) = (PeerId::random(), PeerId::random());
        let many: Vec<Entry> = blocks[..36]
            .iter()
            .map(|b| entry(*b.cid(), WantType::Block))
            .collect();
        s.on_wantlist(greedy, false, &many);
        let few: Vec<Entry> = blocks[36..]
            .iter()
            .map(|b| entry(*b.cid(), WantType::Block))
            .collect();
        s.on_wantlist(modest, false, &few);
        // The modest peer is served in the second turn, not after the greedy
        // peer's 36 blocks.
        let mut order = Vec::new();
        let mut out = Vec::new();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        while order.len() < 3 {
            s.poll(&mut cx, &mut out);
            for a in out.drain(..) {
                order.push(a.peer);
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(order[..2], [greedy, modest]);
    }

    #[tokio::test]
    async fn wants_over_the_limit_are_ignored() {
        let cfg = Config {
            max_wants_per_peer: 10,
            max_wants_total: 15,
            ..Config::default()
        };
        let mut s = Server::new(Arc::new(cfg), Arc::new(MemoryBlocks::new()));
        let wants: Vec<Entry> = (0..100)
            .map(|i| entry(*block(i, 10).cid(), WantType::Have))
            .collect();
        let (a, b) = (PeerId::random(), PeerId::random());
        s.on_wantlist(a, false, &wants);
        s.on_wantlist(b, false, &wants);
        assert_eq!(s.peer_wantlist(&a).len(), 10);
        assert_eq!(s.peer_wantlist(&b).len(), 5);
        assert_eq!(s.refused_wants, 185);
        s.peer_gone(&a);
        assert_eq!(s.wants_total(), 5);
        // A full wantlist replaces the old one.
        s.on_wantlist(b, true, &wants[50..52]);
        assert_eq!(s.peer_wantlist(&b).len(), 2);
    }
}
