//! A block read as a UnixFS node, with the checks exporters rely on.

use bytes::Bytes;
use cid::Cid;
use tessera_blockstore::{DAG_PB, RAW};

use super::data::{Data, DataType};
use super::hamt::{HAMT_HASH_MURMUR3, fanout_layout};
use crate::ipld::{PbLink, PbNode};

/// Why a UnixFS DAG could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A block could not be had.
    #[error(transparent)]
    Fetch(#[from] crate::ipld::BlockSourceError),
    /// A block is not a well-formed UnixFS node.
    #[error("block {cid} is not a valid UnixFS node: {reason}")]
    Malformed {
        /// The block.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
    /// A codec UnixFS does not use.
    #[error("block {cid} uses codec 0x{codec:x}; UnixFS uses dag-pb and raw")]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its multicodec.
        codec: u64,
    },
    /// A directory or symlink where file content was asked for.
    #[error("{cid} is a {kind}, not a file")]
    NotAFile {
        /// The node.
        cid: Cid,
        /// What it is.
        kind: &'static str,
    },
    /// A path segment under something that has no entries.
    #[error("{cid} is a {kind}, not a directory, so it has no entry {name:?}")]
    NotADirectory {
        /// The node.
        cid: Cid,
        /// What it is.
        kind: &'static str,
        /// The name looked up.
        name: String,
    },
    /// A path segment that names no entry.
    #[error("no entry named {name:?} in directory {cid}")]
    NoSuchEntry {
        /// The directory.
        cid: Cid,
        /// The name looked up.
        name: String,
    },
}

/// What a UnixFS entry is, as `ipfs ls` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A file (also a raw block).
    File,
    /// A directory, plain or sharded.
    Directory,
    /// A symbolic link.
    Symlink,
}

/// A decoded UnixFS node.
pub(crate) enum Node {
    /// File content in this node, then under each link (with its size).
    File {
        data: Bytes,
        links: Vec<PbLink>,
        block_sizes: Vec<u64>,
    },
    Directory {
        links: Vec<PbLink>,
    },
    Hamt {
        links: Vec<PbLink>,
        bits: u32,
        pad: usize,
    },
    Symlink {
        target: Bytes,
    },
}

impl Node {
    pub(crate) fn kind(&self) -> EntryKind {
        match self {
            Node::File { .. } => EntryKind::File,
            Node::Directory { .. } | Node::Hamt { .. } => EntryKind::Directory,
            Node::Symlink { .. } => EntryKind::Symlink,
        }
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Node::File { .. } => "file",
            Node::Directory { .. } => "directory",
            Node::Hamt { .. } => "sharded directory",
            Node::Symlink { .. } => "symlink",
        }
    }

    /// Bytes of content under a file node.
    pub(crate) fn file_size(&self) -> Option<u64> {
        match self {
            Node::File {
                data, block_sizes, ..
            } => block_sizes
                .iter()
                .try_fold(data.len() as u64, |a, b| a.checked_add(*b)),
            _ => None,
        }
    }
}

/// Decodes and checks a block as UnixFS.
pub(crate) fn decode(cid: &Cid, bytes: Bytes) -> Result<Node, ExportError> {
    let malformed = |reason: String| ExportError::Malformed { cid: *cid, reason };
    match cid.codec() {
        RAW => {
            return Ok(Node::File {
                data: bytes,
                links: Vec::new(),
                block_sizes: Vec::new(),
            });
        }
        DAG_PB => {}
        codec => return Err(ExportError::UnsupportedCodec { cid: *cid, codec }),
    }
    let pb = PbNode::decode(&bytes).map_err(|e| malformed(e.to_string()))?;
    let data_field = pb
        .data
        .ok_or_else(|| malformed("dag-pb node has no UnixFS data".into()))?;
    let data = Data::decode(&data_field).map_err(|e| malformed(e.to_string()))?;
    match data.kind {
        DataType::File | DataType::Raw => {
            if data.block_sizes.len() != pb.links.len() {
                return Err(malformed(format!(
                    "{} links but {} blocksizes",
                    pb.links.len(),
                    data.block_sizes.len()
                )));
            }
            let node = Node::File {
                data: data.data.unwrap_or_default(),
                links: pb.links,
                block_sizes: data.block_sizes,
            };
            let total = node
                .file_size()
                .ok_or_else(|| malformed("blocksizes overflow".into()))?;
            if let Some(declared) = data.file_size
                && declared != total
            {
                return Err(malformed(format!(
                    "filesize {declared} but data and blocksizes add up to {total}"
                )));
            }
            Ok(node)
        }
        DataType::Directory => Ok(Node::Directory { links: pb.links }),
        DataType::HamtShard => {
            if data.hash_type != Some(HAMT_HASH_MURMUR3) {
                return Err(malformed(format!(
                    "HAMT hash function {:?} is not murmur3-x64-64 (0x22)",
                    data.hash_type
                )));
            }
            let (bits, pad) = data
                .fanout
                .and_then(fanout_layout)
                .ok_or_else(|| malformed(format!("bad HAMT fanout {:?}", data.fanout)))?;
            Ok(Node::Hamt {
                links: pb.links,
                bits,
                pad,
            })
        }
        DataType::Symlink => Ok(Node::Symlink {
            target: data.data.unwrap_or_default(),
        }),
        DataType::Metadata => Err(malformed("UnixFS Metadata nodes are not supported".into())),
    }
}

#[cfg(test)]
mod tests {
    use tessera_blockstore::Block;

    use super::*;

    fn pb_block(links: Vec<PbLink>, data: Data) -> Block {
        Block::from_data_v1(
            DAG_PB,
            PbNode {
                links,
                data: Some(data.encode()),
            }
            .encode(),
        )
    }

    #[test]
    fn inconsistent_file_nodes_are_malformed() {
        let leaf = Block::from_data_v1(RAW, Bytes::from_static(b"abc"));
        let link = PbLink {
            cid: *leaf.cid(),
            name: Some(String::new()),
            tsize: Some(3),
        };
        let mut d = Data::new(DataType::File);
        d.block_sizes = vec![3, 3];
        let two_sizes_one_link = pb_block(vec![link.clone()], d);
        let mut d = Data::new(DataType::File);
        d.block_sizes = vec![3];
        d.file_size = Some(4);
        let wrong_total = pb_block(vec![link], d);
        for b in [two_sizes_one_link, wrong_total] {
            assert!(matches!(
                decode(b.cid(), b.data().clone()),
                Err(ExportError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn hamt_needs_murmur3_and_a_power_of_two_fanout() {
        let mut d = Data::new(DataType::HamtShard);
        d.hash_type = Some(0x22);
        d.fanout = Some(255);
        let b = pb_block(vec![], d.clone());
        assert!(decode(b.cid(), b.data().clone()).is_err());
        d.fanout = Some(256);
        d.hash_type = Some(0x12);
        let b = pb_block(vec![], d);
        assert!(decode(b.cid(), b.data().clone()).is_err());
    }

    #[test]
    fn other_codecs_and_non_unixfs_are_errors() {
        let cbor = Block::from_data_v1(0x71, Bytes::from_static(&[0xa0]));
        assert!(matches!(
            decode(cbor.cid(), cbor.data().clone()),
            Err(ExportError::UnsupportedCodec { .. })
        ));
        let bare = Block::from_data_v1(DAG_PB, PbNode::default().encode());
        assert!(matches!(
            decode(bare.cid(), bare.data().clone()),
            Err(ExportError::Malformed { .. })
        ));
    }
}
