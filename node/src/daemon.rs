//! `tessera daemon`: open the repo, serve the Kubo RPC API and the gateway until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use tessera_blockstore::Blockstore;

use crate::addr::{multiaddr_to_socket, socket_to_multiaddr};
use crate::dag::DagService;
use crate::node::Node;
use crate::repo::{Repo, RepoError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The repo is missing, locked or broken.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The blockstore could not be opened.
    #[error("cannot open the blockstore: {0}")]
    Blockstore(String),
    /// A listen address is malformed.
    #[error("config key {key}: {message}")]
    Address {
        /// The config key.
        key: &'static str,
        /// Why.
        message: String,
    },
    /// A listener could not be bound.
    #[error(
        "cannot listen on {addr} ({key}): {source}; is another daemon using that port? Change it with `tessera config {key} /ip4/127.0.0.1/tcp/PORT`"
    )]
    Bind {
        /// The config key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The swarm could not start.
    #[error("{0}")]
    Swarm(String),
    /// The extension (the cluster peer) could not start or failed.
    #[error("{0}")]
    Extension(String),
    /// A server failed while running.
    #[error("server error: {0}")]
    Serve(String),
}

/// How long a read waits for a block from the network before giving up.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn swarm_config(config: &crate::Config) -> Result<crate::swarm::SwarmConfig, DaemonError> {
    let parse = |key: &'static str, s: &str| {
        s.parse::<libp2p::Multiaddr>()
            .map_err(|e| DaemonError::Address {
                key,
                message: format!("`{s}`: {e}"),
            })
    };
    let listen = config
        .addresses
        .swarm
        .iter()
        .map(|a| parse("Addresses.Swarm", a))
        .collect::<Result<_, _>>()?;
    let announce = config
        .addresses
        .announce
        .iter()
        .map(|a| parse("Addresses.Announce", a))
        .collect::<Result<_, _>>()?;
    let bootstrap = config
        .bootstrap
        .iter()
        .map(|a| parse("Bootstrap", a))
        .collect::<Result<_, _>>()?;
    let mut peering = Vec::new();
    for p in &config.peering.peers {
        let id =
            p.id.parse::<libp2p::PeerId>()
                .map_err(|e| DaemonError::Address {
                    key: "Peering.Peers",
                    message: e.to_string(),
                })?;
        let addrs = p
            .addrs
            .iter()
            .map(|a| parse("Peering.Peers", a))
            .collect::<Result<_, _>>()?;
        peering.push((id, addrs));
    }
    let routing = config
        .routing
        .mode()
        .map_err(|message| DaemonError::Address {
            key: "Routing.Type",
            message,
        })?;
    Ok(crate::swarm::SwarmConfig {
        listen,
        announce,
        peering,
        bootstrap,
        routing,
    })
}

/// A future that runs until the daemon shuts down.
pub type Running = futures::future::BoxFuture<'static, Result<(), String>>;

/// What the layer above the node (the cluster peer) plugs into a daemon, so that one process serves
/// both without the node knowing the cluster.
pub trait Extension: Send + 'static {
    /// Starts once the node and its swarm are up and before the APIs serve (so it can install a
    /// [`crate::Pinner`]); a failure stops the daemon from starting. The returned future runs
    /// beside the API servers until `shutdown` turns true.
    fn start(
        self: Box<Self>,
        node: Node,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> futures::future::BoxFuture<'static, Result<Running, String>>;
}

/// Where a started daemon listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The Kubo RPC API.
    pub api: SocketAddr,
    /// The gateway.
    pub gateway: SocketAddr,
}

/// Runs the daemon until `shutdown` completes; `started` is told where it listens.
pub async fn run(
    mut repo: Repo,
    shutdown: impl Future<Output = ()> + Send + 'static,
    extension: Option<Box<dyn Extension>>,
    started: impl FnOnce(&Node, &Listening),
) -> Result<(), DaemonError> {
    repo.lock()?;
    let keypair = repo.keypair()?;
    let config = repo.config().clone();
    let blocks_path = repo.blocks_path();
    let store_config = tessera_blockstore::Config {
        verify_on_read: config.datastore.verify_on_read,
        ..tessera_blockstore::Config::default()
    };
    let store = tokio::task::spawn_blocking(move || Blockstore::open(&blocks_path, store_config))
        .await
        .map_err(|e| DaemonError::Blockstore(e.to_string()))?
        .map_err(|e| DaemonError::Blockstore(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let swarm_config = swarm_config(&config)?;
    let producer = crate::dag::ProducerSlot::default();
    let (swarm, swarm_addrs, protocols) = crate::swarm::start(
        keypair.clone(),
        store.clone(),
        producer.clone(),
        swarm_config,
        stop_rx.clone(),
    )
    .await
    .map_err(|e| DaemonError::Swarm(e.to_string()))?;
    let fetcher = swarm.fetcher(FETCH_TIMEOUT);
    let dag = DagService::with_fetcher(store.clone(), std::sync::Arc::new(fetcher))
        .with_producer_slot(producer);
    let node = Node::new(repo.root(), config.clone(), store, dag, keypair.public());
    node.set_swarm(swarm);
    node.set_listen_addrs(swarm_addrs);
    node.set_protocols(protocols);
    tokio::spawn(crate::reprovider::run(node.clone(), stop_rx.clone()));

    let extension = match extension {
        Some(ext) => Some(
            ext.start(node.clone(), stop_rx.clone())
                .await
                .map_err(DaemonError::Extension)?,
        ),
        None => None,
    };

    let api_addr =
        multiaddr_to_socket(&config.addresses.api).map_err(|message| DaemonError::Address {
            key: "Addresses.API",
            message,
        })?;
    let gw_addr =
        multiaddr_to_socket(&config.addresses.gateway).map_err(|message| DaemonError::Address {
            key: "Addresses.Gateway",
            message,
        })?;
    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|source| DaemonError::Bind {
            key: "Addresses.API",
            addr: api_addr,
            source,
        })?;
    let gw_listener = tokio::net::TcpListener::bind(gw_addr)
        .await
        .map_err(|source| DaemonError::Bind {
            key: "Addresses.Gateway",
            addr: gw_addr,
            source,
        })?;
    let listening = Listening {
        api: api_listener
            .local_addr()
            .map_err(|e| DaemonError::Serve(e.to_string()))?,
        gateway: gw_listener
            .local_addr()
            .map_err(|e| DaemonError::Serve(e.to_string()))?,
    };

    let files = AddressFiles::write(repo.root().to_path_buf(), &listening)?;
    started(&node, &listening);
    tracing::info!(api = %listening.api, gateway = %listening.gateway, peer = %node.peer_id(), "daemon ready");

    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let api = axum::serve(api_listener, crate::api::router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let gw = axum::serve(gw_listener, crate::gateway::router(node.clone()))
        .with_graceful_shutdown(stopped(stop_rx));
    let ext = async move {
        match extension {
            Some(running) => running.await,
            None => Ok(()),
        }
    };
    let (a, g, e) = tokio::join!(api.into_future(), gw.into_future(), ext);
    drop(files);
    a.map_err(|e| DaemonError::Serve(e.to_string()))?;
    g.map_err(|e| DaemonError::Serve(e.to_string()))?;
    e.map_err(DaemonError::Extension)?;
    tracing::info!("daemon stopped");
    Ok(())
}

/// The repo's `api` and `gateway` files, removed when the daemon stops.
struct AddressFiles {
    root: PathBuf,
}

impl AddressFiles {
    fn write(root: PathBuf, l: &Listening) -> Result<Self, DaemonError> {
        let w = |path: PathBuf, addr: SocketAddr| {
            std::fs::write(&path, socket_to_multiaddr(addr).to_string())
                .map_err(|e| DaemonError::Serve(format!("cannot write {}: {e}", path.display())))
        };
        w(Repo::api_file(&root), l.api)?;
        w(Repo::gateway_file(&root), l.gateway)?;
        Ok(Self { root })
    }
}

impl Drop for AddressFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Repo::api_file(&self.root));
        let _ = std::fs::remove_file(Repo::gateway_file(&self.root));
    }
}
