//! Bitswap and erasure coding for tessera.
#![warn(missing_docs)]

pub mod bitswap;
mod ec;

pub use ec::{
    BlockKind, BlockSource, Codec, CodecError, CodecId, Emitted, EncodeError, EncodedStripe,
    Finished, Group, Kernel, Layout, LayoutError, LoadError, Manifest, ManifestError,
    ManifestHeader, ManifestReader, ReconstructError, Reconstructor, ReedSolomon, Stripe,
    StripeEncoder, StripeIter,
};
