//! Chunked lists: a long list of items stored as a tree of DAG-CBOR blocks,
//! none over 1 MiB, written as the items stream in and read back one path
//! at a time.
//!
//! Leaves hold items up to [`ListLimits::page_bytes`] of encoding; branches
//! hold up to [`ListLimits::fanout`] `{count, node}` references. Counts make
//! item `i` reachable in `depth` block reads without loading the rest.

use std::mem;

use bytes::Bytes;
use cid::Cid;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_blockstore::{Block, DAG_CBOR};

use super::wire::{ListNode, ListRef};
use super::{LoadError, ManifestError};

/// No manifest block may pass this: Bitswap peers refuse larger blocks.
pub(crate) const MAX_BLOCK: usize = 1 << 20;
/// Deepest tree a reader follows; 4096-way branches reach 2^96 items in 8.
const MAX_DEPTH: usize = 16;

/// Where the builder cuts nodes. Part of what makes the bytes of a manifest
/// deterministic, so fixed for version 1; tests shrink them to build deep
/// trees from few items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListLimits {
    /// A leaf is closed before an item would take it past this many bytes
    /// of item encoding.
    pub(crate) page_bytes: usize,
    /// References per branch.
    pub(crate) fanout: usize,
}

impl ListLimits {
    pub(crate) const V1: ListLimits = ListLimits {
        page_bytes: 256 * 1024,
        fanout: 4096,
    };
}

/// Encodes a DAG-CBOR value as a CIDv1 dag-cbor sha2-256 block.
pub(crate) fn encode_block<T: Serialize>(value: &T) -> Result<Block, ManifestError> {
    let bytes = serde_ipld_dagcbor::to_vec(value).map_err(|e| ManifestError::Encode {
        reason: e.to_string(),
    })?;
    if bytes.len() > MAX_BLOCK {
        return Err(ManifestError::BlockTooLarge { size: bytes.len() });
    }
    Ok(Block::from_data_v1(DAG_CBOR, Bytes::from(bytes)))
}

/// Builds one chunked list, emitting each node as soon as it is full.
#[derive(Debug)]
pub(crate) struct ListBuilder<T> {
    limits: ListLimits,
    page: Vec<T>,
    page_bytes: usize,
    /// `levels[0]` holds references to leaves not yet under a branch, and
    /// so on up.
    levels: Vec<Vec<ListRef>>,
    count: u64,
}

impl<T: Serialize> ListBuilder<T> {
    pub(crate) fn new(limits: ListLimits) -> Self {
        Self {
            limits,
            page: Vec::new(),
            page_bytes: 0,
            levels: Vec::new(),
            count: 0,
        }
    }

    pub(crate) fn push(&mut self, item: T, out: &mut Vec<Block>) -> Result<(), ManifestError> {
        let size = serde_ipld_dagcbor::to_vec(&item)
            .map_err(|e| ManifestError::Encode {
                reason: e.to_string(),
            })?
            .len();
        if !self.page.is_empty() && self.page_bytes + size > self.limits.page_bytes {
            self.flush_page(out)?;
        }
        self.page.push(item);
        self.page_bytes += size;
        self.count += 1;
        Ok(())
    }

    fn flush_page(&mut self, out: &mut Vec<Block>) -> Result<(), ManifestError> {
        let items = mem::take(&mut self.page);
        self.page_bytes = 0;
        let count = items.len() as u64;
        let block = encode_block(&ListNode::Leaf(items))?;
        let node = *block.cid();
        out.push(block);
        self.add_ref(0, ListRef { count, node }, out)
    }

    fn add_ref(
        &mut self,
        level: usize,
        r: ListRef,
        out: &mut Vec<Block>,
    ) -> Result<(), ManifestError> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(r);
        if self.levels[level].len() >= self.limits.fanout {
            let refs = mem::take(&mut self.levels[level]);
            let parent = branch(refs, out)?;
            self.add_ref(level + 1, parent, out)?;
        }
        Ok(())
    }

    /// Flushes what is left and returns the reference to the top node. An
    /// empty list is one empty leaf.
    pub(crate) fn finish(mut self, out: &mut Vec<Block>) -> Result<ListRef, ManifestError> {
        if !self.page.is_empty() || self.count == 0 {
            self.flush_page(out)?;
        }
        let mut level = 0;
        while level < self.levels.len() {
            let refs = mem::take(&mut self.levels[level]);
            let top = level + 1 == self.levels.len();
            match refs.len() {
                1 if top => return Ok(refs[0]),
                0 => {}
                _ => {
                    let parent = branch(refs, out)?;
                    self.add_ref(level + 1, parent, out)?;
                }
            }
            level += 1;
        }
        // flush_page always leaves one reference somewhere, and every level
        // below the top is folded into the next, so the loop returns.
        Err(ManifestError::Encode {
            reason: "chunked list builder lost its top node".into(),
        })
    }
}

fn branch(refs: Vec<ListRef>, out: &mut Vec<Block>) -> Result<ListRef, ManifestError> {
    let count = refs.iter().map(|r| r.count).sum();
    let block = encode_block(&ListNode::<()>::Branch(refs))?;
    let node = *block.cid();
    out.push(block);
    Ok(ListRef { count, node })
}

/// A decoded leaf and the index of its first item, kept so that walking a
/// list in order reads each leaf once.
#[derive(Debug)]
pub(crate) struct LeafCache<T> {
    start: u64,
    items: Vec<T>,
}

/// Item `index` of `list`, fetching nodes with `get` (which verifies them).
pub(crate) fn lookup<T, G>(
    list: &ListRef,
    index: u64,
    cache: &mut Option<LeafCache<T>>,
    mut get: G,
) -> Result<T, LoadError>
where
    T: DeserializeOwned + Clone,
    G: FnMut(&Cid) -> Result<Bytes, LoadError>,
{
    if index >= list.count {
        return Err(LoadError::OutOfRange {
            index,
            count: list.count,
        });
    }
    if let Some(c) = cache
        && index >= c.start
        && let Some(item) = c.items.get((index - c.start) as usize)
    {
        return Ok(item.clone());
    }
    let mut node = *list;
    let mut start = 0u64;
    for _ in 0..MAX_DEPTH {
        match decode_node::<T>(&node.node, &get(&node.node)?)? {
            ListNode::Leaf(items) => {
                if items.len() as u64 != node.count {
                    return Err(invalid(
                        &node.node,
                        "leaf holds a different number of items than its reference says",
                    ));
                }
                let item = items[(index - start) as usize].clone();
                *cache = Some(LeafCache { start, items });
                return Ok(item);
            }
            ListNode::Branch(refs) => {
                if refs.iter().map(|r| r.count).fold(0u64, u64::saturating_add) != node.count {
                    return Err(invalid(
                        &node.node,
                        "branch counts do not add up to its reference's count",
                    ));
                }
                let mut child = None;
                for r in refs {
                    if index < start + r.count {
                        child = Some(r);
                        break;
                    }
                    start += r.count;
                }
                node = child.ok_or_else(|| invalid(&node.node, "index not under any child"))?;
            }
        }
    }
    Err(invalid(
        &list.node,
        "list is deeper than any tessera writes",
    ))
}

/// Every node CID of `list`, top first, children in order.
pub(crate) fn node_cids<G>(list: &ListRef, mut get: G) -> Result<Vec<Cid>, LoadError>
where
    G: FnMut(&Cid) -> Result<Bytes, LoadError>,
{
    let mut out = Vec::new();
    let mut stack = vec![(list.node, 0usize)];
    while let Some((cid, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            return Err(invalid(
                &list.node,
                "list is deeper than any tessera writes",
            ));
        }
        out.push(cid);
        // Leaves are decoded with `IgnoredAny` items: only the shape matters.
        if let ListNode::Branch(refs) = decode_node::<serde::de::IgnoredAny>(&cid, &get(&cid)?)? {
            stack.extend(refs.iter().rev().map(|r| (r.node, depth + 1)));
        }
    }
    Ok(out)
}

fn decode_node<T: DeserializeOwned>(cid: &Cid, bytes: &[u8]) -> Result<ListNode<T>, LoadError> {
    if bytes.len() > MAX_BLOCK {
        return Err(invalid(cid, "block is over 1 MiB"));
    }
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| LoadError::Decode {
        cid: *cid,
        reason: e.to_string(),
    })
}

fn invalid(cid: &Cid, reason: &str) -> LoadError {
    LoadError::Invalid {
        cid: *cid,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn build(items: u64, limits: ListLimits) -> (ListRef, HashMap<Cid, Bytes>, usize) {
        let mut out = Vec::new();
        let mut b = ListBuilder::new(limits);
        for i in 0..items {
            b.push(i, &mut out).unwrap();
        }
        let top = b.finish(&mut out).unwrap();
        let max = out.iter().map(|b| b.data().len()).max().unwrap_or(0);
        let store = out.into_iter().map(|b| b.into_parts()).collect();
        (top, store, max)
    }

    #[test]
    fn every_item_is_found_at_every_depth() {
        let tiny = ListLimits {
            page_bytes: 8,
            fanout: 3,
        };
        // 0 items: one empty leaf. 1: one leaf. 200 with 3-way branches of
        // 4-item leaves: several levels, with partial nodes at each.
        for n in [0u64, 1, 4, 5, 12, 13, 200] {
            let (top, store, _) = build(n, tiny);
            assert_eq!(top.count, n);
            let get = |c: &Cid| {
                store
                    .get(c)
                    .cloned()
                    .ok_or(LoadError::OutOfRange { index: 0, count: 0 })
            };
            let mut cache = None;
            for i in 0..n {
                assert_eq!(lookup::<u64, _>(&top, i, &mut cache, get).unwrap(), i);
            }
            let mut cache = None;
            for i in (0..n).rev() {
                assert_eq!(lookup::<u64, _>(&top, i, &mut cache, get).unwrap(), i);
            }
            assert!(matches!(
                lookup::<u64, _>(&top, n, &mut None, get),
                Err(LoadError::OutOfRange { .. })
            ));
            let mut nodes = node_cids(&top, get).unwrap();
            nodes.sort();
            let mut stored: Vec<Cid> = store.keys().copied().collect();
            stored.sort();
            assert_eq!(
                nodes, stored,
                "every emitted block is reachable, for {n} items"
            );
        }
    }

    #[test]
    fn same_items_give_same_top() {
        let (a, _, _) = build(1000, ListLimits::V1);
        let (b, _, _) = build(1000, ListLimits::V1);
        assert_eq!(a, b);
    }

    #[test]
    fn large_lists_stay_under_the_block_limit() {
        // 300 000 numbers of up to 9 bytes: several full leaves.
        let (top, _, max) = build(300_000, ListLimits::V1);
        assert_eq!(top.count, 300_000);
        assert!(max <= ListLimits::V1.page_bytes + 16, "largest block {max}");
    }
}
