//! Bitswap and erasure coding for tessera.
#![warn(missing_docs)]

pub mod bitswap;
