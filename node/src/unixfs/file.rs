//! Importing one file: chunks to leaves, leaves to a balanced tree, the same
//! blocks and CIDs as `ipfs add` with the same options.

use bytes::Bytes;
use cid::{Cid, Version};
use tessera_blockstore::{Block, RAW};

use super::balanced::{Balanced, FileLink};
use super::chunker::{Chunker, LeafFormat, dag_pb_block};
use super::data::{Data, DataType};
use crate::ipld::PbNode;

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// Kubo's largest chunk size (boxo `chunker.ChunkSizeLimit`).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Links per file node in Kubo's balanced layout (boxo
/// `helpers.DefaultLinksPerBlock`).
pub const DEFAULT_MAX_LINKS: usize = 174;

/// How a file is cut and built, as `ipfs add` flags set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of dag-pb nodes (`--cid-version`). Defaults to 0.
    pub cid_version: Version,
    /// Leaves as raw blocks instead of dag-pb nodes (`--raw-leaves`).
    /// `None`, the default, means what Kubo does: raw leaves with CIDv1 only.
    pub raw_leaves: Option<bool>,
    /// Bytes per leaf (`--chunker size-N`). Defaults to 262 144; at most
    /// 1 MiB.
    pub chunk_size: usize,
    /// Links per file node. Defaults to 174, which Kubo does not let users
    /// change.
    pub max_links: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            cid_version: Version::V0,
            raw_leaves: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_links: DEFAULT_MAX_LINKS,
        }
    }
}

impl ImportOptions {
    /// Kubo's `--cid-version 1`: CIDv1 and raw leaves.
    pub fn v1() -> Self {
        Self {
            cid_version: Version::V1,
            ..Self::default()
        }
    }

    /// Whether leaves are raw blocks once the default is applied.
    pub fn uses_raw_leaves(&self) -> bool {
        self.raw_leaves.unwrap_or(self.cid_version == Version::V1)
    }

    /// Checks the options, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), ImportOptionsError> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(ImportOptionsError::ChunkSize(self.chunk_size));
        }
        if self.max_links < 2 {
            return Err(ImportOptionsError::MaxLinks(self.max_links));
        }
        Ok(())
    }
}

/// Import options that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportOptionsError {
    /// `chunk_size` out of range.
    #[error("chunk size {0} is out of range: use 1 to 1048576 bytes (Kubo's default is 262144)")]
    ChunkSize(usize),
    /// `max_links` too small to build a tree.
    #[error("max links {0} is too small: use at least 2 (Kubo uses 174)")]
    MaxLinks(usize),
}

/// The root of an imported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedFile {
    /// The root CID: what `ipfs add` prints.
    pub cid: Cid,
    /// Bytes of file content.
    pub file_size: u64,
    /// Cumulative encoded size of every block of the DAG: the `Size` that
    /// `ipfs add` reports and that a directory link to this file carries.
    pub tsize: u64,
}

/// Builds a file's DAG from bytes pushed in order.
///
/// Blocks come out as soon as they are complete: leaves in file order, each
/// parent after its children, the root last. Memory holds one chunk and at
/// most `max_links` links per tree level. Hashing is done inline, so call it
/// from a blocking thread, not from async code.
pub struct FileImporter {
    chunker: Chunker,
    tree: Balanced,
    raw_leaves: bool,
    version: Version,
}

impl FileImporter {
    /// Starts a file.
    pub fn new(options: ImportOptions) -> Result<Self, ImportOptionsError> {
        options.validate()?;
        let raw_leaves = options.uses_raw_leaves();
        let format = if raw_leaves {
            LeafFormat::Raw
        } else {
            LeafFormat::DagPb(options.cid_version)
        };
        Ok(Self {
            chunker: Chunker::new(format, options.chunk_size),
            tree: Balanced::new(options.cid_version, options.max_links),
            raw_leaves,
            version: options.cid_version,
        })
    }

    /// Adds the next bytes of the file; completed blocks go to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Block>) {
        let tree = &mut self.tree;
        self.chunker.push(data, |leaf| add_leaf(tree, leaf, out));
    }

    /// Ends the file, writes the remaining blocks to `out` and returns the root.
    pub fn finish(self, out: &mut Vec<Block>) -> ImportedFile {
        let mut tree = self.tree;
        if let Some(leaf) = self.chunker.finish() {
            add_leaf(&mut tree, leaf, out);
        }
        match tree.finish(out) {
            Some(root) => ImportedFile {
                cid: root.cid,
                file_size: root.file_size,
                tsize: root.tsize,
            },
            None => {
                let block = empty_file(self.raw_leaves, self.version);
                let imported = ImportedFile {
                    cid: *block.cid(),
                    file_size: 0,
                    tsize: block.data().len() as u64,
                };
                out.push(block);
                imported
            }
        }
    }
}

fn add_leaf(tree: &mut Balanced, leaf: super::chunker::Leaf, out: &mut Vec<Block>) {
    let link = FileLink {
        cid: *leaf.block.cid(),
        tsize: leaf.block.data().len() as u64,
        file_size: leaf.file_size,
    };
    out.push(leaf.block);
    tree.push_leaf(link, out);
}

/// Kubo's empty file: an empty raw block, or a leaf with no Data field and
/// filesize 0 (not an empty Data field: go-unixfs leaves it unset).
fn empty_file(raw_leaves: bool, version: Version) -> Block {
    if raw_leaves {
        return Block::from_data_v1(RAW, Bytes::new());
    }
    let mut data = Data::new(DataType::File);
    data.file_size = Some(0);
    let node = PbNode {
        links: vec![],
        data: Some(data.encode()),
    };
    dag_pb_block(version, node.encode())
}

/// Imports a whole buffer: a convenience for small files and tests.
pub fn import_bytes(
    data: &[u8],
    options: ImportOptions,
) -> Result<(ImportedFile, Vec<Block>), ImportOptionsError> {
    let mut importer = FileImporter::new(options)?;
    let mut blocks = Vec::new();
    importer.push(data, &mut blocks);
    let root = importer.finish(&mut blocks);
    Ok((root, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid_of(data: &[u8], options: ImportOptions) -> String {
        import_bytes(data, options).unwrap().0.cid.to_string()
    }

    #[test]
    fn kubo_empty_files() {
        // `ipfs add` and `ipfs add --cid-version 1` of an empty file.
        assert_eq!(
            cid_of(b"", ImportOptions::default()),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(
            cid_of(b"", ImportOptions::v1()),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn single_chunk_with_raw_leaves_is_the_leaf() {
        let (root, blocks) = import_bytes(b"hello", ImportOptions::v1()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(root.cid.codec(), RAW);
        assert_eq!(root.tsize, 5);
        // With CIDv0 and --raw-leaves, the leaf is still CIDv1 raw.
        let v0_raw = ImportOptions {
            raw_leaves: Some(true),
            ..ImportOptions::default()
        };
        assert_eq!(import_bytes(b"hello", v0_raw).unwrap().0.cid, root.cid);
    }

    #[test]
    fn raw_leaves_with_cid_v0_give_v0_parents() {
        let options = ImportOptions {
            raw_leaves: Some(true),
            chunk_size: 2,
            ..ImportOptions::default()
        };
        let (root, blocks) = import_bytes(b"hello", options).unwrap();
        assert_eq!(root.cid.version(), Version::V0);
        assert_eq!(blocks[0].cid().codec(), RAW);
        assert_eq!(blocks[0].cid().version(), Version::V1);
        assert_eq!(root.file_size, 5);
    }

    #[test]
    fn bad_options_are_refused() {
        for options in [
            ImportOptions {
                chunk_size: 0,
                ..ImportOptions::default()
            },
            ImportOptions {
                chunk_size: MAX_CHUNK_SIZE + 1,
                ..ImportOptions::default()
            },
            ImportOptions {
                max_links: 1,
                ..ImportOptions::default()
            },
        ] {
            assert!(FileImporter::new(options).is_err());
        }
    }

    #[test]
    fn push_granularity_does_not_change_the_cid() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let options = ImportOptions {
            chunk_size: 1000,
            max_links: 4,
            ..ImportOptions::default()
        };
        let whole = import_bytes(&data, options).unwrap().0;
        let mut importer = FileImporter::new(options).unwrap();
        let mut blocks = Vec::new();
        for piece in data.chunks(77) {
            importer.push(piece, &mut blocks);
        }
        assert_eq!(importer.finish(&mut blocks), whole);
        let total: u64 = blocks.iter().map(|b| b.data().len() as u64).sum();
        assert_eq!(whole.tsize, total);
    }
}
