//! The erasure-coding engine: Reed-Solomon stripes over the leaf blocks of
//! a DAG, the manifest that describes them, and reconstruction.
//!
//! The flow, as `docs/erasure-coding.md` details:
//!
//! - [`StripeEncoder`] takes blocks in DAG order, cuts the leaves into
//!   stripes of `k` cells, computes `m` parity blocks per stripe with a
//!   [`Codec`] and deals stripes into groups whose columns stay under the
//!   shard size ([`Layout`]). It writes the [`Manifest`] as it goes.
//! - [`ManifestReader`] reads a manifest one block at a time, whatever the
//!   size of the pin.
//! - [`Reconstructor`] rebuilds missing cells of a stripe from any `k`
//!   good ones, or one column across many stripes for a repair.
//!
//! [`ReedSolomon`] is the codec; its GF(2^8) kernel ([`Kernel`]) is chosen
//! at run time among AVX2, SSSE3 and portable code.
//!
//! Everything here is synchronous and CPU-bound: encoding and hashing fan
//! out over rayon's global pool. Async callers run these calls inside
//! `spawn_blocking`, never on the runtime's worker threads.

mod codec;
mod encoder;
mod gf;
mod kernel;
mod layout;
mod manifest;
mod parallel;
mod reconstruct;
mod reed_solomon;

pub use codec::{Codec, CodecError, CodecId};
pub use encoder::{BlockKind, Emitted, EncodeError, EncodedStripe, Finished, StripeEncoder};
pub use kernel::Kernel;
pub use layout::{Layout, LayoutError};
pub use manifest::{
    BlockSource, Group, LoadError, Manifest, ManifestError, ManifestHeader, ManifestReader, Stripe,
    StripeIter,
};
pub use reconstruct::{ReconstructError, Reconstructor};
pub use reed_solomon::ReedSolomon;
