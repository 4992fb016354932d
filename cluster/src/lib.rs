//! The tessera IPFS Cluster peer. Nothing here yet: see the issue "Cluster peer".
#![warn(missing_docs)]
