//! Ordered read-ahead over a block source: the engine under `cat`, `ls` of
//! sharded directories and DAG walks.
//!
//! A walk keeps a queue of blocks it will need, in the order it will need
//! them. Fetches start for the first `window` entries of the queue, finish in
//! any order, and are handed out in queue order. Expanding the front (pushing
//! a node's children before its later siblings) keeps depth-first order, which
//! is file order for UnixFS. When blocks come from the network this turns one
//! round trip per block into one per `window` blocks.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::block_source::{BlockSource, BlockSourceError, get_block};

type Fetch<'a> = Pin<Box<dyn Future<Output = (u64, Result<Bytes, BlockSourceError>)> + Send + 'a>>;

/// Read-ahead used when the caller does not choose one: enough to hide a
/// network round trip behind 32 leaves (8 MiB of 256 KiB leaves).
pub const DEFAULT_READ_AHEAD: usize = 32;

struct Slot<T> {
    cid: Cid,
    tag: T,
    id: u64,
    started: bool,
}

pub(crate) struct Prefetch<'a, S, T> {
    source: S,
    window: usize,
    queue: VecDeque<Slot<T>>,
    inflight: FuturesUnordered<Fetch<'a>>,
    done: HashMap<u64, Result<Bytes, BlockSourceError>>,
    next_id: u64,
}

impl<'a, S, T> Prefetch<'a, S, T>
where
    S: BlockSource + Clone + 'a,
{
    pub(crate) fn new(source: S, window: usize) -> Self {
        Self {
            source,
            window: window.max(1),
            queue: VecDeque::new(),
            inflight: FuturesUnordered::new(),
            done: HashMap::new(),
            next_id: 0,
        }
    }

    fn slot(&mut self, cid: Cid, tag: T) -> Slot<T> {
        self.next_id += 1;
        Slot {
            cid,
            tag,
            id: self.next_id,
            started: false,
        }
    }

    /// Queues blocks to be handed out after everything already queued.
    pub(crate) fn push_back(&mut self, cid: Cid, tag: T) {
        let slot = self.slot(cid, tag);
        self.queue.push_back(slot);
    }

    /// Queues blocks to be handed out next, in the iterator's order.
    pub(crate) fn push_front(&mut self, items: Vec<(Cid, T)>) {
        for (cid, tag) in items.into_iter().rev() {
            let slot = self.slot(cid, tag);
            self.queue.push_front(slot);
        }
    }

    /// Queues, at the front, a block the caller already has.
    pub(crate) fn push_front_ready(&mut self, cid: Cid, tag: T, bytes: Bytes) {
        let mut slot = self.slot(cid, tag);
        slot.started = true;
        self.done.insert(slot.id, Ok(bytes));
        self.queue.push_front(slot);
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Starts fetches inside the window. Blocks fetched but pushed back by
    /// later expansions still count against the window, so memory stays
    /// bounded; the front always starts, so the walk always progresses.
    fn launch(&mut self) {
        let limit = self.window.min(self.queue.len());
        for i in 0..limit {
            let outstanding = self.inflight.len() + self.done.len();
            if outstanding >= self.window && i > 0 {
                break;
            }
            let slot = &mut self.queue[i];
            if slot.started {
                continue;
            }
            slot.started = true;
            let (id, cid, source) = (slot.id, slot.cid, self.source.clone());
            self.inflight.push(Box::pin(
                async move { (id, get_block(&source, &cid).await) },
            ));
        }
    }

    /// The front of the queue with its bytes, or `None` when the queue is empty.
    pub(crate) async fn next(&mut self) -> Option<(Cid, T, Result<Bytes, BlockSourceError>)> {
        loop {
            self.launch();
            let front_id = self.queue.front()?.id;
            if let Some(result) = self.done.remove(&front_id) {
                let slot = self.queue.pop_front()?;
                return Some((slot.cid, slot.tag, result));
            }
            match self.inflight.next().await {
                Some((id, result)) => {
                    self.done.insert(id, result);
                }
                // Unreachable: the front was started by `launch` and is not done.
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tessera_blockstore::{Block, RAW};

    use super::*;
    use crate::ipld::MemoryBlocks;

    /// A source that records how many requests were open at once.
    struct Counting {
        inner: MemoryBlocks,
        open: AtomicUsize,
        max_open: AtomicUsize,
        order: Mutex<Vec<Cid>>,
    }

    impl BlockSource for Counting {
        async fn get(&self, cid: &Cid) -> Result<Bytes, BlockSourceError> {
            let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_open.fetch_max(now, Ordering::SeqCst);
            self.order.lock().unwrap().push(*cid);
            // Let other fetches start before this one ends.
            tokio::task::yield_now().await;
            let r = self.inner.get(cid).await;
            self.open.fetch_sub(1, Ordering::SeqCst);
            r
        }
    }

    #[tokio::test]
    async fn hands_out_in_queue_order_with_bounded_concurrency() {
        let blocks: Vec<Block> = (0..100u32)
            .map(|i| Block::from_data_v1(RAW, Bytes::from(i.to_le_bytes().to_vec())))
            .collect();
        let source = Counting {
            inner: blocks.iter().cloned().collect(),
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(0),
            order: Mutex::new(Vec::new()),
        };
        let mut p = Prefetch::new(&source, 8);
        for (i, b) in blocks.iter().enumerate() {
            p.push_back(*b.cid(), i);
        }
        let mut seen = Vec::new();
        while let Some((cid, i, r)) = p.next().await {
            assert_eq!(cid, *blocks[i].cid());
            assert_eq!(r.unwrap(), *blocks[i].data());
            seen.push(i);
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let max = source.max_open.load(Ordering::SeqCst);
        assert!(max > 1 && max <= 8, "max concurrent fetches {max}");
    }

    #[tokio::test]
    async fn push_front_goes_before_prefetched_siblings() {
        let blocks: Vec<Block> = (0..6u8)
            .map(|i| Block::from_data_v1(RAW, Bytes::from(vec![i])))
            .collect();
        let source: MemoryBlocks = blocks.iter().cloned().collect();
        let mut p = Prefetch::new(&source, 4);
        p.push_back(*blocks[0].cid(), 0);
        p.push_back(*blocks[1].cid(), 1);
        let (_, first, _) = p.next().await.unwrap();
        assert_eq!(first, 0);
        p.push_front(vec![(*blocks[2].cid(), 2), (*blocks[3].cid(), 3)]);
        let mut rest = Vec::new();
        while let Some((_, i, r)) = p.next().await {
            r.unwrap();
            rest.push(i);
        }
        assert_eq!(rest, vec![2, 3, 1]);
    }

    #[tokio::test]
    async fn missing_blocks_come_back_as_errors_in_place() {
        let present = Block::from_data_v1(RAW, Bytes::from_static(b"here"));
        let missing = Block::from_data_v1(RAW, Bytes::from_static(b"gone"));
        let source: MemoryBlocks = [present.clone()].into_iter().collect();
        let mut p = Prefetch::new(&source, 4);
        p.push_back(*missing.cid(), ());
        p.push_back(*present.cid(), ());
        let (cid, (), r) = p.next().await.unwrap();
        assert_eq!(cid, *missing.cid());
        assert_eq!(r, Err(BlockSourceError::NotFound { cid }));
        assert!(p.next().await.unwrap().2.is_ok());
        assert!(p.is_empty());
    }
}
