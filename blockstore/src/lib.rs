//! Content-addressed block store for tessera.
//!
//! Blocks are named by their CID. The index (CID -> place), pins, per-pack
//! accounting and blocks moved aside as corrupt live in one redb database;
//! block bytes live in append-only pack files (`packs/NNNNNNNN.pack`),
//! because redb rounds large values up to a power of two and would double
//! the disk a store of 256 KiB leaves takes. Blocks under
//! [`Config::inline_threshold`] stay inside the index.
//!
//! ```text
//! put/put_many ──► writer thread ──► append + fdatasync pack ──► one redb commit ──► Ok
//!  (any thread)    (group commit)                                 (index entries)
//! get ──► redb snapshot ──► pread at (pack, offset, len) ──► verify ──► Bytes
//! ```
//!
//! Writes from many threads are coalesced by a single writer thread: one
//! append, one fdatasync and one transaction per batch. The index never names
//! bytes that are not durable, and whatever a crash leaves past a pack's
//! committed length is cut off at the next open. Garbage collection walks
//! the pins with a link extractor the caller provides, deletes the rest, and
//! compaction rewrites packs that are mostly dead; a scrub worker re-hashes
//! blocks a bounded step at a time. The on-disk format is
//! described in `docs/blockstore-format.md` (format version 1).
//!
//! The API is blocking; async callers go through `spawn_blocking`.
#![warn(missing_docs)]

mod block;
mod check;
mod compact;
mod config;
mod direct;
mod error;
mod gc;
mod lease;
mod pack;
mod pack_cache;
mod pin;
mod recovery;
mod scrub;
mod stat;
mod store;
mod tables;
mod writer;

pub use block::{Block, DAG_CBOR, DAG_PB, IDENTITY, RAW, SHA2_256, VerifyError, verify};
pub use check::IndexCheck;
pub use cid::Cid;
pub use compact::CompactReport;
pub use config::{Config, ConfigError};
pub use error::{DeleteError, GcError, GetError, OpenError, PinError, PutError, StorageError};
pub use gc::{GcGuard, GcReport, Links};
pub use pin::PinMode;
pub use scrub::ScrubStep;
pub use stat::{Metrics, Stat};
pub use store::{Blockstore, Cids, CorruptBlock};
