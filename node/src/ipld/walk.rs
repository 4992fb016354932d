//! A walk over every block of a DAG: what `refs -r`, `pin add` and
//! `dag export` need.

use std::collections::HashSet;

use bytes::Bytes;
use cid::Cid;
use futures::Stream;

use super::block_source::{BlockSource, BlockSourceError};
use super::links::{LinksError, links};
use super::prefetch::Prefetch;

/// A block met by [`walk`], with the links it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedBlock {
    /// The block's CID.
    pub cid: Cid,
    /// Its bytes, as the source returned them.
    pub data: Bytes,
    /// Every link of the block, duplicates and already-seen ones included
    /// (`refs` prints them as edges).
    pub links: Vec<Cid>,
}

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// A block could not be had.
    #[error(transparent)]
    Fetch(#[from] BlockSourceError),
    /// A block's links could not be read.
    #[error(transparent)]
    Links(#[from] LinksError),
}

/// Walks the DAG under `root` depth-first (pre-order, children in link
/// order), yielding each distinct block once, with up to `read_ahead` blocks
/// fetched concurrently.
///
/// Identity-hash CIDs are yielded with their inline data and never fetched.
/// The first error ends the stream. Memory holds the set of CIDs seen, the
/// queue of CIDs still to visit, and at most about `read_ahead` blocks.
pub fn walk<'a, S>(
    source: S,
    root: Cid,
    read_ahead: usize,
) -> impl Stream<Item = Result<WalkedBlock, WalkError>> + Send + 'a
where
    S: BlockSource + Clone + 'a,
{
    let mut prefetch = Prefetch::new(source, read_ahead);
    prefetch.push_back(root, ());
    let mut seen = HashSet::new();
    seen.insert(root);
    let state = Some((prefetch, seen));
    futures::stream::unfold(state, |state| async move {
        let (mut prefetch, mut seen) = state?;
        let (cid, (), result) = prefetch.next().await?;
        let step = result
            .map_err(WalkError::from)
            .and_then(|data| Ok((links(&cid, &data)?, data)));
        match step {
            Ok((block_links, data)) => {
                let fresh: Vec<(Cid, ())> = block_links
                    .iter()
                    .filter(|c| seen.insert(**c))
                    .map(|c| (*c, ()))
                    .collect();
                prefetch.push_front(fresh);
                let item = WalkedBlock {
                    cid,
                    data,
                    links: block_links,
                };
                Some((Ok(item), Some((prefetch, seen))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tessera_blockstore::{Block, DAG_PB, RAW};

    use super::*;
    use crate::ipld::{MemoryBlocks, PbLink, PbNode};

    fn node(children: &[&Block]) -> Block {
        let links = children
            .iter()
            .map(|b| PbLink {
                cid: *b.cid(),
                name: Some(String::new()),
                tsize: Some(b.data().len() as u64),
            })
            .collect();
        Block::from_data_v1(DAG_PB, PbNode { links, data: None }.encode())
    }

    #[tokio::test]
    async fn visits_each_block_once_in_pre_order() {
        let a = Block::from_data_v1(RAW, Bytes::from_static(b"a"));
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"b"));
        let left = node(&[&a, &b]);
        let right = node(&[&b, &a, &a]);
        let root = node(&[&left, &right, &left]);
        let source: MemoryBlocks = [&a, &b, &left, &right, &root]
            .into_iter()
            .cloned()
            .collect();
        let got: Vec<WalkedBlock> = walk(&source, *root.cid(), 4)
            .map(|r| r.unwrap())
            .collect()
            .await;
        let order: Vec<Cid> = got.iter().map(|w| w.cid).collect();
        assert_eq!(
            order,
            vec![*root.cid(), *left.cid(), *a.cid(), *b.cid(), *right.cid()]
        );
        assert_eq!(got[4].links, vec![*b.cid(), *a.cid(), *a.cid()]);
    }

    #[tokio::test]
    async fn a_missing_block_ends_the_walk_with_its_cid() {
        let a = Block::from_data_v1(RAW, Bytes::from_static(b"a"));
        let root = node(&[&a]);
        let source: MemoryBlocks = [root.clone()].into_iter().collect();
        let got: Vec<_> = walk(&source, *root.cid(), 4).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Err(WalkError::Fetch(BlockSourceError::NotFound {
                cid: *a.cid()
            }))
        );
    }
}
