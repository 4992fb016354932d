//! IPLD below UnixFS: the dag-pb codec, the links of a block by codec, CAR
//! archives, the [`BlockSource`] that exporters read from, and a walk over a
//! whole DAG.
//!
//! Everything here is codec-level and independent of where blocks live: the
//! DAG service implements [`BlockSource`] (local store, then the network,
//! then reconstruction) and hands it to the walkers.

// Errors name the CID at fault (a 72-byte value) so that users know which
// block to look at. They are returned once per walk, not per byte, and
// boxing them would only make matching on them clumsier.
#![allow(clippy::result_large_err)]

mod block_source;
pub mod car;
mod dag_pb;
mod links;
mod prefetch;
pub(crate) mod protobuf;
mod walk;

pub(crate) use block_source::get_block;
pub use block_source::{BlockSource, BlockSourceError, MemoryBlocks};
pub use car::{CarError, CarLimits, CarReader, CarWriter};
pub use dag_pb::{DagPbError, PbLink, PbNode};
pub use links::{LinksError, links};
pub use prefetch::DEFAULT_READ_AHEAD;
pub(crate) use prefetch::Prefetch;
pub use protobuf::WireError;
pub use walk::{WalkError, WalkedBlock, walk};
