//! The DAG-CBOR shapes of manifest version 1, exactly as stored.
//!
//! Field names are the map keys; `serde_ipld_dagcbor` writes them in
//! DAG-CBOR's canonical order (shorter keys first), so the bytes, and the
//! CIDs, depend only on the values. `docs/erasure-coding.md` describes the
//! same shapes for readers in other languages.

use cid::Cid;
use serde::{Deserialize, Serialize};

/// `format` of every manifest root, so that a random DAG-CBOR block is
/// refused with a clear error instead of a decode failure.
pub(crate) const FORMAT: &str = "tessera-ec-manifest";
/// The only version this build writes and reads.
pub(crate) const VERSION: u64 = 1;

/// Read first, alone, so that a root of another version or of something
/// else entirely is told apart before its fields are interpreted.
#[derive(Debug, Deserialize)]
pub(crate) struct Probe {
    pub(crate) format: Option<String>,
    pub(crate) version: Option<u64>,
}

/// The root block of a version 1 manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Root {
    pub(crate) format: String,
    pub(crate) version: u64,
    pub(crate) codec: String,
    pub(crate) k: u64,
    pub(crate) m: u64,
    pub(crate) shard_size: u64,
    /// The root of the erasure-coded DAG.
    pub(crate) root: Cid,
    /// Leaf blocks in all stripes, and their bytes (unpadded).
    pub(crate) leaves: u64,
    pub(crate) leaf_bytes: u64,
    pub(crate) stripes: ListRef,
    pub(crate) groups: ListRef,
    pub(crate) interior: ListRef,
}

/// A list of `count` items whose top node is the block `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListRef {
    pub(crate) count: u64,
    pub(crate) node: Cid,
}

/// One block of a chunked list: items, or the lists it concatenates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ListNode<T> {
    Leaf(Vec<T>),
    Branch(Vec<ListRef>),
}

/// One stripe: its data CIDs with their lengths, and its parity CIDs (each
/// as long as the longest data cell).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StripeEntry {
    pub(crate) group: u64,
    pub(crate) data: Vec<Cid>,
    pub(crate) lens: Vec<u64>,
    pub(crate) parity: Vec<Cid>,
}

/// One group: stripes `first..first + stripes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupEntry {
    pub(crate) first: u64,
    pub(crate) stripes: u64,
    pub(crate) column_bytes: u64,
}
