//! The tessera IPFS node.
#![warn(missing_docs)]
