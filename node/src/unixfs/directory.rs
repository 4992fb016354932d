//! Building directories: `ipfs add -r` and `--wrap-with-directory`.
//!
//! Entries come in by relative path; `finish` writes every directory
//! bottom-up. A directory's links are sorted by name, bytewise, as
//! go-merkledag sorts them when encoding.
//!
//! # When a directory is sharded
//!
//! Kubo 0.22 builds directories with boxo 0.11's `ipld/unixfs/io`
//! (`DynamicDirectory`). From `io/directory.go` at boxo v0.11.0:
//!
//! - `var HAMTShardingSize = int(256 * units.KiB)`: the threshold, 262 144.
//!   Kubo's `Internal.UnixFSShardingSizeThreshold` defaults to the same.
//! - `productionLinkSize(linkName, linkCid) = len(linkName) + linkCid.ByteLen()`:
//!   the size of a directory is estimated as the sum over its entries of the
//!   name's byte length plus the CID's binary length (not the encoded block
//!   size, and without the Tsize and protobuf framing).
//! - `BasicDirectory.needsToSwitchToHAMTDir` switches to a HAMT when
//!   `estimatedSize + operationSizeChange >= HAMTShardingSize`: at or over
//!   the threshold, not only over it.
//! - `HAMTDirectory.needsToSwitchToBasicDir` switches back below it, so for a
//!   directory built by adding entries the final estimate alone decides.
//!
//! `ipfs-unixfs-importer` (17.x, `shardSplitStrategy: 'links-bytes'`)
//! estimates the same sum but shards only when it is strictly greater than
//! the threshold; the two disagree only when the sum is exactly 262 144.
//! tessera follows Kubo.

use std::collections::BTreeMap;
use std::collections::btree_map;

use cid::{Cid, Version};
use tessera_blockstore::Block;

use super::chunker::dag_pb_block;
use super::data::{Data, DataType};
use super::file::ImportedFile;
use super::hamt::{DirLink, build_shards};
use crate::ipld::{PbLink, PbNode};

/// boxo 0.11's `HAMTShardingSize`.
pub const DEFAULT_SHARD_THRESHOLD: usize = 262_144;

/// How directories are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryOptions {
    /// CID version of directory nodes (`--cid-version`). Defaults to 0.
    pub cid_version: Version,
    /// Estimated size (sum of name bytes plus CID bytes over entries) at
    /// which a directory becomes HAMT-sharded. Defaults to 262 144 bytes, as
    /// Kubo; 0 never shards.
    pub shard_threshold: usize,
}

impl Default for DirectoryOptions {
    fn default() -> Self {
        Self {
            cid_version: Version::V0,
            shard_threshold: DEFAULT_SHARD_THRESHOLD,
        }
    }
}

/// Why an entry could not be added or the tree written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// A path that cannot name an entry.
    #[error("invalid path {path:?}: {reason}")]
    BadPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries under one path.
    #[error("{path:?} was added twice; each path may name one entry")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A path that goes through something that is not a directory.
    #[error("{path:?} is not a directory, so nothing can be added under it")]
    NotADirectory {
        /// The part of the path that is a file.
        path: String,
    },
    /// Two names in a sharded directory with the same 64-bit hash.
    #[error(
        "{first:?} and {second:?} in {directory:?} have the same HAMT hash, which Kubo cannot shard either; rename one"
    )]
    HashCollision {
        /// The directory.
        directory: String,
        /// One name.
        first: String,
        /// The other.
        second: String,
    },
}

/// A directory written by [`DirectoryBuilder::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedDirectory {
    /// Its path relative to the root (`""` for the root itself).
    pub path: String,
    /// Its CID.
    pub cid: Cid,
    /// Cumulative encoded size of its DAG: what `ipfs add` reports.
    pub tsize: u64,
    /// Whether it was written as a HAMT.
    pub sharded: bool,
}

enum Entry {
    Dir(BTreeMap<String, Entry>),
    Link { cid: Cid, tsize: u64 },
}

/// Collects entries by path and writes directories on `finish`.
///
/// Memory holds every entry (a name, a CID and a size): directories are
/// written only once complete, since each one's CID depends on all of its
/// entries.
pub struct DirectoryBuilder {
    options: DirectoryOptions,
    root: BTreeMap<String, Entry>,
}

impl DirectoryBuilder {
    /// An empty root directory.
    pub fn new(options: DirectoryOptions) -> Self {
        Self {
            options,
            root: BTreeMap::new(),
        }
    }

    /// Adds an imported file at `path` (`"a/b/c.txt"`); missing parent
    /// directories are created.
    pub fn add_file(&mut self, path: &str, file: &ImportedFile) -> Result<(), DirectoryError> {
        self.add_link(path, file.cid, file.tsize)
    }

    /// Adds any existing DAG (a symlink node, a directory imported earlier)
    /// at `path`, with its cumulative size.
    pub fn add_link(&mut self, path: &str, cid: Cid, tsize: u64) -> Result<(), DirectoryError> {
        let parts = split(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(DirectoryError::BadPath {
                path: path.to_owned(),
                reason: "a file needs a name",
            });
        };
        let dir = self.dir_at(parents)?;
        match dir.entry((*name).to_owned()) {
            btree_map::Entry::Occupied(_) => Err(DirectoryError::Duplicate {
                path: path.to_owned(),
            }),
            btree_map::Entry::Vacant(v) => {
                v.insert(Entry::Link { cid, tsize });
                Ok(())
            }
        }
    }

    /// Adds a directory at `path` (it stays empty unless entries are added
    /// under it). Adding one that exists is not an error.
    pub fn add_directory(&mut self, path: &str) -> Result<(), DirectoryError> {
        let parts = split(path)?;
        self.dir_at(&parts).map(drop)
    }

    /// Walks to (creating) the directory at `parts`.
    fn dir_at(&mut self, parts: &[&str]) -> Result<&mut BTreeMap<String, Entry>, DirectoryError> {
        let mut dir = &mut self.root;
        for (i, part) in parts.iter().enumerate() {
            let entry = dir
                .entry((*part).to_owned())
                .or_insert_with(|| Entry::Dir(BTreeMap::new()));
            dir = match entry {
                Entry::Dir(d) => d,
                Entry::Link { .. } => {
                    return Err(DirectoryError::NotADirectory {
                        path: parts[..=i].join("/"),
                    });
                }
            };
        }
        Ok(dir)
    }

    /// Writes every directory, deepest first, into `out`, and returns them
    /// in the order written: the root (path `""`) last.
    pub fn finish(self, out: &mut Vec<Block>) -> Result<Vec<ImportedDirectory>, DirectoryError> {
        struct Frame {
            path: String,
            name: String,
            entries: btree_map::IntoIter<String, Entry>,
            links: Vec<DirLink>,
        }
        let mut written = Vec::new();
        // An explicit stack: a hostile path depth must not overflow ours.
        let mut stack = vec![Frame {
            path: String::new(),
            name: String::new(),
            entries: self.root.into_iter(),
            links: Vec::new(),
        }];
        while let Some(frame) = stack.last_mut() {
            match frame.entries.next() {
                Some((name, Entry::Link { cid, tsize })) => {
                    frame.links.push(DirLink { name, cid, tsize });
                }
                Some((name, Entry::Dir(entries))) => {
                    let path = if frame.path.is_empty() {
                        name.clone()
                    } else {
                        format!("{}/{name}", frame.path)
                    };
                    stack.push(Frame {
                        path,
                        name,
                        entries: entries.into_iter(),
                        links: Vec::new(),
                    });
                }
                None => {
                    let Some(done) = stack.pop() else { break };
                    let dir = write_directory(done.path, done.links, self.options, out)?;
                    if let Some(parent) = stack.last_mut() {
                        parent.links.push(DirLink {
                            name: done.name,
                            cid: dir.cid,
                            tsize: dir.tsize,
                        });
                    }
                    written.push(dir);
                }
            }
        }
        Ok(written)
    }
}

/// Deepest path accepted: Linux paths are at most 4096 bytes, so at most
/// 2048 levels. The bound keeps dropping an unfinished tree (recursive) safe.
pub const MAX_PATH_DEPTH: usize = 2048;

fn split(path: &str) -> Result<Vec<&str>, DirectoryError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > MAX_PATH_DEPTH {
        return Err(DirectoryError::BadPath {
            path: path.chars().take(64).collect::<String>() + "...",
            reason: "deeper than 2048 levels",
        });
    }
    for part in &parts {
        if *part == "." || *part == ".." {
            return Err(DirectoryError::BadPath {
                path: path.to_owned(),
                reason: "'.' and '..' cannot be entry names",
            });
        }
    }
    Ok(parts)
}

/// Writes one directory over its entries (sorted by name): a plain node, or
/// a HAMT once the entries' estimated size reaches the threshold.
fn write_directory(
    path: String,
    links: Vec<DirLink>,
    options: DirectoryOptions,
    out: &mut Vec<Block>,
) -> Result<ImportedDirectory, DirectoryError> {
    let estimate: usize = links
        .iter()
        .map(|l| l.name.len() + l.cid.encoded_len())
        .sum();
    if options.shard_threshold > 0 && estimate >= options.shard_threshold {
        let root = build_shards(links, options.cid_version, out).map_err(|c| {
            DirectoryError::HashCollision {
                directory: path.clone(),
                first: c.first,
                second: c.second,
            }
        })?;
        return Ok(ImportedDirectory {
            path,
            cid: root.cid,
            tsize: root.tsize,
            sharded: true,
        });
    }
    let children: u64 = links.iter().map(|l| l.tsize).sum();
    let node = PbNode {
        links: links
            .into_iter()
            .map(|l| PbLink {
                cid: l.cid,
                name: Some(l.name),
                tsize: Some(l.tsize),
            })
            .collect(),
        data: Some(Data::new(DataType::Directory).encode()),
    };
    let bytes = node.encode();
    let tsize = bytes.len() as u64 + children;
    let block = dag_pb_block(options.cid_version, bytes);
    let cid = *block.cid();
    out.push(block);
    Ok(ImportedDirectory {
        path,
        cid,
        tsize,
        sharded: false,
    })
}

/// `ipfs add --wrap-with-directory`: a directory holding the file under
/// `name`.
pub fn wrap_in_directory(
    name: &str,
    file: &ImportedFile,
    options: DirectoryOptions,
    out: &mut Vec<Block>,
) -> Result<ImportedDirectory, DirectoryError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(DirectoryError::BadPath {
            path: name.to_owned(),
            reason: "a wrapped file needs a plain name",
        });
    }
    let mut dir = DirectoryBuilder::new(options);
    dir.add_file(name, file)?;
    let mut written = dir.finish(out)?;
    written.pop().ok_or(DirectoryError::BadPath {
        path: name.to_owned(),
        reason: "no directory was written",
    })
}

/// A UnixFS symlink node pointing at `target`, as `ipfs add` stores symlinks.
pub fn symlink(target: &str, cid_version: Version) -> Block {
    let mut data = Data::new(DataType::Symlink);
    data.data = Some(bytes::Bytes::copy_from_slice(target.as_bytes()));
    let node = PbNode {
        links: vec![],
        data: Some(data.encode()),
    };
    dag_pb_block(cid_version, node.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::{ImportOptions, import_bytes};

    fn file(content: &[u8]) -> ImportedFile {
        import_bytes(content, ImportOptions::default()).unwrap().0
    }

    #[test]
    fn empty_root_is_kubos_empty_directory() {
        let mut out = Vec::new();
        let dirs = DirectoryBuilder::new(DirectoryOptions::default())
            .finish(&mut out)
            .unwrap();
        assert_eq!(dirs.len(), 1);
        assert_eq!(
            dirs[0].cid.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        assert_eq!(dirs[0].tsize, 4);
    }

    #[test]
    fn links_sorted_bytewise_and_nested_dirs_first() {
        let mut b = DirectoryBuilder::new(DirectoryOptions::default());
        b.add_file("b", &file(b"1")).unwrap();
        b.add_file("B", &file(b"2")).unwrap();
        b.add_file("sub/x", &file(b"3")).unwrap();
        b.add_directory("empty").unwrap();
        let mut out = Vec::new();
        let dirs = b.finish(&mut out).unwrap();
        let paths: Vec<&str> = dirs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, vec!["empty", "sub", ""]);
        let root = PbNode::decode(out.last().unwrap().data()).unwrap();
        let names: Vec<&str> = root
            .links
            .iter()
            .map(|l| l.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, vec!["B", "b", "empty", "sub"]);
        let children: u64 = root.links.iter().map(|l| l.tsize.unwrap()).sum();
        assert_eq!(
            dirs[2].tsize,
            out.last().unwrap().data().len() as u64 + children
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        let f = file(b"x");
        let mut b = DirectoryBuilder::new(DirectoryOptions::default());
        b.add_file("a", &f).unwrap();
        assert!(matches!(
            b.add_file("a", &f),
            Err(DirectoryError::Duplicate { .. })
        ));
        assert!(matches!(
            b.add_file("a/b", &f),
            Err(DirectoryError::NotADirectory { path }) if path == "a"
        ));
        assert!(matches!(
            b.add_file("", &f),
            Err(DirectoryError::BadPath { .. })
        ));
        assert!(matches!(
            b.add_file("x/../y", &f),
            Err(DirectoryError::BadPath { .. })
        ));
        assert!(matches!(
            b.add_directory("a"),
            Err(DirectoryError::NotADirectory { .. })
        ));
    }

    #[test]
    fn shards_at_the_threshold_not_below() {
        let f = file(b"x"); // CIDv0: 34 bytes.
        // 10 entries of 6-byte names: estimate 10 * 40 = 400.
        let build = |threshold| {
            let mut b = DirectoryBuilder::new(DirectoryOptions {
                shard_threshold: threshold,
                ..DirectoryOptions::default()
            });
            for i in 0..10 {
                b.add_file(&format!("file{i:02}"), &f).unwrap();
            }
            b.finish(&mut Vec::new()).unwrap().pop().unwrap()
        };
        assert!(!build(401).sharded);
        assert!(build(400).sharded);
        assert!(!build(0).sharded);
    }

    #[test]
    fn wrap_is_a_one_entry_directory() {
        let f = file(b"hello");
        let mut out = Vec::new();
        let d = wrap_in_directory("hello.txt", &f, DirectoryOptions::default(), &mut out).unwrap();
        let node = PbNode::decode(out[0].data()).unwrap();
        assert_eq!(node.links.len(), 1);
        assert_eq!(node.links[0].name.as_deref(), Some("hello.txt"));
        assert_eq!(node.links[0].cid, f.cid);
        assert_eq!(d.tsize, out[0].data().len() as u64 + f.tsize);
        assert!(wrap_in_directory("a/b", &f, DirectoryOptions::default(), &mut out).is_err());
    }

    #[test]
    fn deep_paths_are_bounded_and_do_not_overflow_the_stack() {
        let path = vec!["d"; MAX_PATH_DEPTH].join("/");
        let mut b = DirectoryBuilder::new(DirectoryOptions::default());
        b.add_directory(&path).unwrap();
        let dirs = b.finish(&mut Vec::new()).unwrap();
        assert_eq!(dirs.len(), MAX_PATH_DEPTH + 1);
        // Dropped unfinished, the tree is freed recursively: still fine.
        let mut b = DirectoryBuilder::new(DirectoryOptions::default());
        b.add_directory(&path).unwrap();
        drop(b);
        let deeper = format!("{path}/d");
        let mut b = DirectoryBuilder::new(DirectoryOptions::default());
        assert!(matches!(
            b.add_directory(&deeper),
            Err(DirectoryError::BadPath { .. })
        ));
    }
}
