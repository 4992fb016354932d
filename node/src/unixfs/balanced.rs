//! The balanced layout (boxo `importer/balanced`, Kubo's default), built
//! bottom-up as leaves stream in.
//!
//! boxo grows the tree from the top: the first leaf is the root; when the
//! root is full, a new root adopts it as first child and fills the rest with
//! subtrees of the old root's depth. The shape that comes out is the one of
//! grouping leaves `max_links` at a time into parents, then those parents
//! `max_links` at a time, until one node is left, with every leaf at the same
//! depth (so a last parent may have a single child). This builder makes that
//! shape holding one partial node per level: a level is written out when a
//! link arrives that does not fit, and at the end every level but a lone top
//! link is written.

use cid::{Cid, Version};
use tessera_blockstore::Block;

use super::chunker::dag_pb_block;
use super::data::{Data, DataType};
use crate::ipld::{PbLink, PbNode};

/// A child of a file node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileLink {
    pub(crate) cid: Cid,
    /// Cumulative encoded size of the child DAG.
    pub(crate) tsize: u64,
    /// File bytes under the child.
    pub(crate) file_size: u64,
}

pub(crate) struct Balanced {
    version: Version,
    max_links: usize,
    levels: Vec<Vec<FileLink>>,
}

impl Balanced {
    pub(crate) fn new(version: Version, max_links: usize) -> Self {
        Self {
            version,
            max_links,
            levels: vec![Vec::new()],
        }
    }

    /// Adds the next leaf.
    pub(crate) fn push_leaf(&mut self, leaf: FileLink, out: &mut Vec<Block>) {
        self.push(0, leaf, out);
    }

    fn push(&mut self, level: usize, link: FileLink, out: &mut Vec<Block>) {
        if self.levels[level].len() == self.max_links {
            let parent = self.write_level(level, out);
            if level + 1 == self.levels.len() {
                self.levels.push(Vec::new());
            }
            self.push(level + 1, parent, out);
        }
        self.levels[level].push(link);
    }

    /// Writes the parent of everything at `level` and empties it.
    fn write_level(&mut self, level: usize, out: &mut Vec<Block>) -> FileLink {
        let children = std::mem::take(&mut self.levels[level]);
        let (block, link) = parent_node(self.version, &children);
        out.push(block);
        link
    }

    /// Writes the remaining parents and returns the root; `None` if no leaf
    /// was pushed.
    pub(crate) fn finish(mut self, out: &mut Vec<Block>) -> Option<FileLink> {
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            match self.levels[level].len() {
                0 if top => return None,
                1 if top => return self.levels[level].pop(),
                _ => {}
            }
            let parent = self.write_level(level, out);
            if top {
                self.levels.push(Vec::new());
            }
            self.push(level + 1, parent, out);
            level += 1;
        }
    }
}

/// Encodes a file node over `children`: UnixFS `{Type: File, filesize,
/// blocksizes}` and one unnamed link per child, as go-unixfs writes them.
pub(crate) fn parent_node(version: Version, children: &[FileLink]) -> (Block, FileLink) {
    let mut data = Data::new(DataType::File);
    data.block_sizes = children.iter().map(|c| c.file_size).collect();
    let file_size: u64 = data.block_sizes.iter().sum();
    data.file_size = Some(file_size);
    let node = PbNode {
        links: children
            .iter()
            .map(|c| PbLink {
                cid: c.cid,
                name: Some(String::new()),
                tsize: Some(c.tsize),
            })
            .collect(),
        data: Some(data.encode()),
    };
    let bytes = node.encode();
    let tsize = bytes.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    let block = dag_pb_block(version, bytes);
    let link = FileLink {
        cid: *block.cid(),
        tsize,
        file_size,
    };
    (block, link)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tessera_blockstore::RAW;

    use super::*;

    fn leaf(i: u64) -> FileLink {
        let b = Block::from_data_v1(RAW, Bytes::from(i.to_le_bytes().to_vec()));
        FileLink {
            cid: *b.cid(),
            tsize: 8,
            file_size: 8,
        }
    }

    /// Depth and child counts of the tree built over `n` leaves with fanout 3.
    fn shape(n: u64) -> (usize, Vec<usize>) {
        let mut out = Vec::new();
        let mut b = Balanced::new(Version::V0, 3);
        for i in 0..n {
            b.push_leaf(leaf(i), &mut out);
        }
        let root = b.finish(&mut out).unwrap();
        let counts: Vec<usize> = out
            .iter()
            .map(|blk| PbNode::decode(blk.data()).unwrap().links.len())
            .collect();
        if n > 1 {
            assert_eq!(*out.last().unwrap().cid(), root.cid);
        }
        assert_eq!(root.file_size, 8 * n);
        (out.len(), counts)
    }

    #[test]
    fn shapes_match_boxo_balanced() {
        // One leaf: the leaf is the root, no parent.
        assert_eq!(shape(1), (0, vec![]));
        // A full root.
        assert_eq!(shape(3), (1, vec![3]));
        // One more: the first full node, a parent of the lone leaf, a root.
        assert_eq!(shape(4), (3, vec![3, 1, 2]));
        // A full depth-2 tree.
        assert_eq!(shape(9), (4, vec![3, 3, 3, 3]));
        // One more: a new root over the full tree and a chain down to the
        // leaf (blocks come out in post-order: the chain's bottom first).
        assert_eq!(shape(10), (7, vec![3, 3, 3, 1, 3, 1, 2]));
    }

    #[test]
    fn tsize_adds_up() {
        let mut out = Vec::new();
        let mut b = Balanced::new(Version::V1, 3);
        for i in 0..5 {
            b.push_leaf(leaf(i), &mut out);
        }
        let root = b.finish(&mut out).unwrap();
        let encoded: u64 = out.iter().map(|b| b.data().len() as u64).sum();
        assert_eq!(root.tsize, encoded + 5 * 8);
    }
}
