//! What one peer wants from us: its wantlist and the queue of wants not yet
//! answered, in the order the server answers them (priority, then arrival).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use cid::Cid;

use super::message::{Entry, WantType};

type QueueKey = (Reverse<i32>, u64);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    pub(crate) want_type: WantType,
    pub(crate) send_dont_have: bool,
    priority: i32,
    /// Where the want sits in the queue, if it waits for an answer.
    queued: Option<QueueKey>,
    /// Being looked up right now.
    in_flight: bool,
}

/// A want taken from the queue to be looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    pub(crate) cid: Cid,
    pub(crate) want_type: WantType,
}

/// What applying one wantlist entry did to the number of wants held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Removed,
    Unchanged,
    /// A new want over the limit, ignored.
    Refused,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    wants: HashMap<Cid, Want>,
    queue: BTreeMap<QueueKey, Cid>,
    seq: u64,
    /// Bytes of the send buffer this peer holds (lookups and unsent messages).
    pub(crate) reserved: usize,
    /// The peer is in the server's round robin.
    pub(crate) in_ring: bool,
}

impl Ledger {
    /// Wants held.
    pub(crate) fn len(&self) -> usize {
        self.wants.len()
    }

    /// Wants waiting to be looked up.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn wanted(&self) -> Vec<Cid> {
        self.wants.keys().copied().collect()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, cid: &Cid) -> Option<&Want> {
        self.wants.get(cid)
    }

    fn enqueue(&mut self, cid: Cid) {
        if let Some(w) = self.wants.get_mut(&cid) {
            if let Some(k) = w.queued.take() {
                self.queue.remove(&k);
            }
            self.seq += 1;
            let key = (Reverse(w.priority), self.seq);
            w.queued = Some(key);
            self.queue.insert(key, cid);
        }
    }

    /// Applies one entry. `may_add` says whether a new want fits the limits.
    pub(crate) fn apply(&mut self, e: &Entry, may_add: bool) -> Change {
        if e.cancel {
            return if self.remove(&e.cid) {
                Change::Removed
            } else {
                Change::Unchanged
            };
        }
        match self.wants.get_mut(&e.cid) {
            Some(w) => {
                // A want-have never downgrades a want-block (as Kubo).
                if e.want_type == WantType::Block {
                    w.want_type = WantType::Block;
                }
                w.send_dont_have = e.send_dont_have;
                w.priority = e.priority;
                // Asked again: answer again, even if we said DONT_HAVE before
                // (we may have the block by now).
                if !w.in_flight {
                    self.enqueue(e.cid);
                }
                Change::Unchanged
            }
            None if !may_add => Change::Refused,
            None => {
                self.wants.insert(
                    e.cid,
                    Want {
                        want_type: e.want_type,
                        send_dont_have: e.send_dont_have,
                        priority: e.priority,
                        queued: None,
                        in_flight: false,
                    },
                );
                self.enqueue(e.cid);
                Change::Added
            }
        }
    }

    /// Drops every want not in `keep` (a full wantlist replaces the old one);
    /// returns how many were dropped.
    pub(crate) fn retain(&mut self, keep: &HashSet<Cid>) -> usize {
        let gone: Vec<Cid> = self
            .wants
            .keys()
            .filter(|c| !keep.contains(c))
            .copied()
            .collect();
        for c in &gone {
            self.remove(c);
        }
        gone.len()
    }

    /// Forgets a want; true if it was held.
    pub(crate) fn remove(&mut self, cid: &Cid) -> bool {
        match self.wants.remove(cid) {
            Some(w) => {
                if let Some(k) = w.queued {
                    self.queue.remove(&k);
                }
                true
            }
            None => false,
        }
    }

    /// Takes wants from the head of the queue until `max_blocks` want-blocks
    /// or `max_haves` want-haves are taken, and marks them in flight.
    pub(crate) fn pop_tasks(&mut self, max_blocks: usize, max_haves: usize) -> Vec<Task> {
        let mut tasks = Vec::new();
        let (mut blocks, mut haves) = (0, 0);
        while blocks < max_blocks && haves < max_haves {
            let Some((_, cid)) = self.queue.pop_first() else {
                break;
            };
            let Some(w) = self.wants.get_mut(&cid) else {
                continue;
            };
            w.queued = None;
            w.in_flight = true;
            match w.want_type {
                WantType::Block => blocks += 1,
                WantType::Have => haves += 1,
            }
            tasks.push(Task {
                cid,
                want_type: w.want_type,
            });
        }
        tasks
    }

    /// Ends a lookup. Returns the want if it still stands as it was looked
    /// up; if it was cancelled, `None`; if it was upgraded to want-block
    /// meanwhile, it is queued again and `None` is returned.
    pub(crate) fn finish(&mut self, task: &Task) -> Option<Want> {
        let w = self.wants.get_mut(&task.cid)?;
        if !w.in_flight {
            return None;
        }
        w.in_flight = false;
        if w.want_type != task.want_type {
            self.enqueue(task.cid);
            return None;
        }
        Some(*w)
    }

    /// Queues a want again that was answered DONT_HAVE (or not at all)
    /// because the block was missing; true if it did.
    pub(crate) fn retry(&mut self, cid: &Cid) -> bool {
        match self.wants.get(cid) {
            Some(w) if !w.in_flight && w.queued.is_none() => {
                self.enqueue(*cid);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tessera_blockstore::{Block, RAW};

    use super::*;

    fn cid(i: u32) -> Cid {
        *Block::from_data_v1(RAW, Bytes::from(i.to_be_bytes().to_vec())).cid()
    }

    fn want(i: u32, priority: i32, want_type: WantType) -> Entry {
        Entry {
            cid: cid(i),
            priority,
            cancel: false,
            want_type,
            send_dont_have: true,
        }
    }

    #[test]
    fn serves_by_priority_then_arrival() {
        let mut l = Ledger::default();
        l.apply(&want(1, 1, WantType::Block), true);
        l.apply(&want(2, 5, WantType::Block), true);
        l.apply(&want(3, 1, WantType::Block), true);
        let order: Vec<Cid> = l.pop_tasks(10, 10).into_iter().map(|t| t.cid).collect();
        assert_eq!(order, vec![cid(2), cid(1), cid(3)]);
    }

    #[test]
    fn cancel_removes_queued_and_in_flight_wants() {
        let mut l = Ledger::default();
        l.apply(&want(1, 1, WantType::Block), true);
        l.apply(&want(2, 1, WantType::Block), true);
        let t = l.pop_tasks(1, 10);
        let mut cancel = want(1, 0, WantType::Block);
        cancel.cancel = true;
        assert_eq!(l.apply(&cancel, true), Change::Removed);
        assert!(
            l.finish(&t[0]).is_none(),
            "a cancelled want is not answered"
        );
        cancel.cid = cid(2);
        l.apply(&cancel, true);
        assert_eq!(l.queued(), 0);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn turn_limits_count_blocks_and_haves_apart() {
        let mut l = Ledger::default();
        for i in 0..10 {
            l.apply(
                &want(
                    i,
                    0,
                    if i % 2 == 0 {
                        WantType::Block
                    } else {
                        WantType::Have
                    },
                ),
                true,
            );
        }
        let t = l.pop_tasks(2, 100);
        assert_eq!(
            t.iter().filter(|t| t.want_type == WantType::Block).count(),
            2
        );
        assert_eq!(l.queued(), 10 - t.len());
    }

    #[test]
    fn upgrade_in_flight_requeues_as_block() {
        let mut l = Ledger::default();
        l.apply(&want(1, 0, WantType::Have), true);
        let t = l.pop_tasks(10, 10);
        l.apply(&want(1, 0, WantType::Block), true);
        assert!(l.finish(&t[0]).is_none());
        let t = l.pop_tasks(10, 10);
        assert_eq!(t[0].want_type, WantType::Block);
        // A want-have does not downgrade it.
        l.apply(&want(1, 0, WantType::Have), true);
        assert_eq!(l.get(&cid(1)).unwrap().want_type, WantType::Block);
    }

    #[test]
    fn missing_blocks_wait_until_retried_or_asked_again() {
        let mut l = Ledger::default();
        l.apply(&want(1, 0, WantType::Block), true);
        let t = l.pop_tasks(10, 10);
        assert!(l.finish(&t[0]).is_some());
        assert_eq!((l.len(), l.queued()), (1, 0), "kept, not queued");
        assert!(l.retry(&cid(1)));
        assert!(!l.retry(&cid(1)), "already queued");
        l.pop_tasks(10, 10);
        assert!(!l.retry(&cid(1)), "in flight");
    }

    #[test]
    fn refused_when_full_and_retain_drops_the_rest() {
        let mut l = Ledger::default();
        assert_eq!(
            l.apply(&want(1, 0, WantType::Block), false),
            Change::Refused
        );
        l.apply(&want(1, 0, WantType::Block), true);
        l.apply(&want(2, 0, WantType::Block), true);
        let keep: HashSet<Cid> = [cid(2)].into();
        assert_eq!(l.retain(&keep), 1);
        assert_eq!(l.wanted(), vec![cid(2)]);
    }
}
