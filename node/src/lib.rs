//! The tessera IPFS node: what `ipfs daemon` is for Kubo.
//!
//! A node owns a repo folder ([`Repo`]: config, identity, blockstore), imports and exports UnixFS,
//! serves the Kubo RPC API and the HTTP gateway, and (with the swarm) exchanges blocks over Bitswap.
//! The cluster crate sits above and reaches the node only through the traits defined here.
#![warn(missing_docs)]

pub mod adder;
mod addr;
mod api;
pub mod config;
pub mod daemon;
mod dag;
mod gateway;
pub mod ipld;
mod node;
mod pinning;
mod repo;
mod reprovider;
pub mod swarm;
pub mod unixfs;

pub use addr::{multiaddr_to_socket, socket_to_multiaddr};
pub use api::add::{add_multipart, add_multipart_into};
pub use config::{Config, ConfigError};
pub use dag::{DagService, Fetcher, Producer};
pub use node::{ConfigChangeError, Node, set_config_key};
pub use pinning::{MetricsSource, Pinner};
pub use repo::{Repo, RepoError, default_repo_path};
