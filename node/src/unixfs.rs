//! UnixFS: files and directories as IPFS DAGs, built exactly as Kubo builds
//! them and read back lazily.
//!
//! Import is synchronous and pure (bytes in, [`Block`](tessera_blockstore::Block)s
//! out, no I/O): [`FileImporter`] chunks a file at a fixed size and builds
//! Kubo's balanced tree (174 links per node), with dag-pb or raw leaves and
//! CIDv0 or CIDv1; [`DirectoryBuilder`] writes directories, switching to
//! HAMT shards exactly where Kubo 0.22 does. Given the same options, every
//! CID is byte for byte the one `ipfs add` prints.
//!
//! Export is asynchronous over a [`BlockSource`](crate::ipld::BlockSource):
//! [`cat`] streams a file or a byte range of it with read-ahead, [`ls`] lists
//! plain and sharded directories, [`resolve_path`] follows a path, and
//! [`get`] walks a whole tree in tar order.

// Errors name the CID at fault (a 72-byte value) so that users know which
// block to look at. They are returned once per walk, not per byte, and
// boxing them would only make matching on them clumsier.
#![allow(clippy::result_large_err)]

mod balanced;
mod cat;
mod chunker;
mod data;
mod directory;
mod file;
mod get;
mod hamt;
mod ls;
mod murmur3;
mod node;

pub use cat::{cat, cat_with_read_ahead};
pub use data::{Data, DataError, DataType, UnixTime};
pub use directory::{
    DEFAULT_SHARD_THRESHOLD, DirectoryBuilder, DirectoryError, DirectoryOptions, ImportedDirectory,
    MAX_PATH_DEPTH, symlink, wrap_in_directory,
};
pub use file::{
    DEFAULT_CHUNK_SIZE, DEFAULT_MAX_LINKS, FileImporter, ImportOptions, ImportOptionsError,
    ImportedFile, MAX_CHUNK_SIZE, import_bytes,
};
pub use get::{TreeItem, get};
pub use hamt::{HAMT_FANOUT, HAMT_HASH_MURMUR3};
pub use ls::{DirEntry, NodeStat, lookup, ls, resolve_path, stat};
pub use node::{EntryKind, ExportError};
