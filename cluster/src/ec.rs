//! Erasure-coded pins across the cluster: distributing a DAG's stripes to column holders,
//! finding and rebuilding cells, repair and scrub. The codec, stripes and manifest format are
//! `tessera_bitswap_ec::ec` (see docs/erasure-coding.md); this module is about peers.

pub(crate) mod blocks;
pub(crate) mod encode;
pub(crate) mod holder;
pub(crate) mod index;
pub(crate) mod placement;
pub(crate) mod rebuild;
pub(crate) mod scrub;
