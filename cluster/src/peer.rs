//! The cluster peer: what `tessera daemon` runs beside the IPFS node, on the same swarm.
//!
//! [`ClusterExtension`] plugs into the node's daemon. It opens the Raft consensus (its redb file is
//! `<repo>/cluster/raft.redb`, apart from the blockstore's so that neither store's transactions
//! wait for the other's fsyncs), serves the cluster protocols to members only, joins or founds the
//! cluster, broadcasts and collects metrics, runs the pin tracker and, on the leader, expiry and
//! re-allocation; then it serves the IPFS Cluster REST API until the daemon stops.

mod api_impl;
mod duties;
mod ec_ops;
mod handler;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tessera_node::Node;
use tessera_node::daemon::{Extension, Running};
use tessera_node::swarm::SwarmHandle;

use crate::config::{ClusterConfig, Settings};
use crate::consensus::{Consensus, ConsensusConfig};
use crate::ec::blocks::BlockClient;
use crate::ec::holder::EcHolder;
use crate::ec::index::EcIndex;
use crate::ec::rebuild::Rebuilder;
use crate::monitor::Monitor;
use crate::rpc;
use crate::tracker::Tracker;

/// The file in the repo where a running daemon records its REST API address (as `api` holds the
/// Kubo API's), so that the CLI finds it.
pub const REST_API_FILE: &str = "cluster-api";

/// A running cluster peer. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    swarm: SwarmHandle,
    local: PeerId,
    settings: Settings,
    consensus: Consensus,
    rpc: rpc::Client,
    monitor: Arc<Monitor>,
    tracker: Arc<Tracker>,
    /// The block protocol: pushes of erasure-coded cells, fetches of cells for reconstruction.
    blocks: BlockClient,
    /// Shares of erasure-coded pins, and where each cell of them sits.
    ec: Arc<EcHolder>,
    /// Rotten blocks the scrub found, and those rebuilt, since start.
    scrub_found: std::sync::atomic::AtomicU64,
    scrub_healed: std::sync::atomic::AtomicU64,
    /// Blocks the scrub found rotten that are not whole again yet.
    rotten: Mutex<HashSet<cid::Cid>>,
    /// Peers that proved the secret through a join, trusted before the membership lists them.
    trusted: Mutex<HashSet<PeerId>>,
    /// The gossipsub topic of this cluster's metrics (derived from the secret, so that two
    /// clusters sharing a swarm never mix).
    topic: String,
}

/// Plugs the cluster peer into `tessera daemon`.
#[derive(Debug, Default)]
pub struct ClusterExtension;

impl Extension for ClusterExtension {
    fn start(
        self: Box<Self>,
        node: Node,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<Running, String>> {
        async move { Cluster::start(node, shutdown).await }.boxed()
    }
}

impl Cluster {
    async fn start(
        node: Node,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Running, String> {
        let settings = ClusterConfig::from_json(node.config().cluster.as_ref())
            .and_then(|c| c.settings())
            .map_err(|e| e.to_string())?;
        let swarm = node
            .swarm()
            .cloned()
            .ok_or("the cluster needs the node's swarm")?;
        let local = node.peer_id();
        let dir = node.root().join("cluster");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let rpc = rpc::Client::new(swarm.streams());
        let consensus = Consensus::open(
            &dir.join("raft.redb"),
            local,
            node.listen_addrs(),
            Arc::new(rpc.clone()),
            ConsensusConfig {
                heartbeat: settings.heartbeat,
                election_timeout_min: settings.election_timeout,
                election_timeout_max: settings.election_timeout * 2,
                snapshot_after: settings.raw.snapshot_after,
                max_voters: settings.raw.max_voters,
            },
        )
        .await
        .map_err(|e| format!("cannot open the cluster's consensus: {e}"))?;
        let monitor = Arc::new(Monitor::default());
        let blocks = BlockClient::new(swarm.streams());
        let index = Arc::new(EcIndex::default());
        let alive_monitor = monitor.clone();
        let rebuilder = Rebuilder::new(
            node.clone(),
            blocks.clone(),
            index.clone(),
            local,
            // A peer counts as down for reads only once its metrics have been missing for a whole
            // TTL twice over: gossip can lag behind a busy peer, and asking a dead one costs a
            // refused dial while skipping a live one costs a reconstruction.
            Arc::new(move |p: &PeerId| *p == local || !alive_monitor.long_gone(p)),
        );
        let ec = Arc::new(EcHolder::new(
            node.clone(),
            local,
            index,
            rebuilder.clone(),
            blocks.clone(),
            settings.raw.concurrent_repairs,
        ));
        node.dag().set_producer(Arc::new(rebuilder));
        let tracker = Tracker::start(
            node.clone(),
            consensus.clone(),
            ec.clone(),
            settings.peer_name.clone(),
            settings.raw.pin_concurrency,
            settings.raw.pin_retries,
            settings.pin_timeout,
            shutdown.clone(),
        );
        let topic = {
            use sha2::Digest;
            let h = sha2::Sha256::digest(settings.secret);
            format!("tessera-cluster/{}/metrics", hex::encode(&h[..8]))
        };
        let cluster = Cluster {
            inner: Arc::new(Inner {
                node: node.clone(),
                swarm,
                local,
                settings,
                consensus,
                rpc,
                monitor,
                tracker,
                blocks,
                ec,
                scrub_found: Default::default(),
                scrub_healed: Default::default(),
                rotten: Default::default(),
                trusted: Mutex::new(HashSet::new()),
                topic,
            }),
        };
        tokio::spawn(rpc::serve(
            cluster.inner.swarm.streams(),
            Arc::new(cluster.clone()),
        ));
        tokio::spawn(handler::serve_joins(cluster.clone()));
        {
            let gate = cluster.clone();
            let bitswap = cluster.inner.swarm.bitswap().clone();
            tokio::spawn(crate::ec::blocks::serve(
                cluster.inner.swarm.streams(),
                node.store().clone(),
                Arc::new(move |p: &PeerId| gate.is_trusted(p)),
                Arc::new(move |cids: Vec<cid::Cid>| {
                    let bitswap = bitswap.clone();
                    tokio::spawn(async move {
                        let _ = bitswap.notify_new_blocks(cids).await;
                    });
                }),
            ));
        }
        if !cluster.inner.consensus.is_initialized().await {
            if cluster.inner.settings.join.is_empty() {
                cluster
                    .inner
                    .consensus
                    .initialize()
                    .await
                    .map_err(|e| format!("cannot found a new cluster: {e}"))?;
                tracing::info!("founded a new cluster of one peer");
            } else {
                tokio::spawn(duties::join_loop(cluster.clone(), shutdown.clone()));
            }
        }
        duties::spawn(cluster.clone(), shutdown.clone());
        cluster.start_scrub(shutdown.clone());
        node.set_pinner(Arc::new(cluster.clone()));
        node.set_metrics_source(Arc::new(cluster.clone()));

        let listener = tokio::net::TcpListener::bind(cluster.inner.settings.rest_api)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {} (Cluster.RestAPI): {e}; is another daemon using that port? Change it with `tessera config Cluster.RestAPI /ip4/127.0.0.1/tcp/PORT`",
                    cluster.inner.settings.rest_api
                )
            })?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let file = RestApiFile::write(node.root().to_path_buf(), addr)?;
        tracing::info!(rest_api = %addr, peer = %local, "cluster peer ready");
        let auth = cluster
            .inner
            .settings
            .raw
            .basic_auth_credentials
            .iter()
            .next()
            .map(|(user, password)| crate::rest_api::BasicAuth {
                user: user.clone(),
                password: password.clone(),
            });
        let router = crate::rest_api::router(Arc::new(cluster.clone()), auth);
        let consensus = cluster.inner.consensus.clone();
        let mut stop = shutdown;
        Ok(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|v| *v).await;
                })
                .await;
            consensus.shutdown().await;
            drop(file);
            served.map_err(|e| format!("REST API: {e}"))
        }
        .boxed())
    }

    fn lock_rotten(&self) -> std::sync::MutexGuard<'_, HashSet<cid::Cid>> {
        self.inner.rotten.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-hashes stored blocks in the background, and rebuilds rotten blocks of erasure-coded
    /// shares: every few seconds, what the store holds as corrupt (found by the scrub or by a
    /// verified read) and the EC index locates is rebuilt from its stripe and stored again. Blocks
    /// the index does not know yet (its pins are still loading) are tried again at the next pass.
    ///
    /// A rotten cell may also come back through the pin tracker, whose reconcile rebuilds any
    /// missing block of the share: `healed` counts corrupt blocks that are whole again, whoever
    /// put them back.
    fn start_scrub(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        use std::sync::atomic::Ordering;
        let cluster = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cluster.inner.settings.metric_interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
                let rotten: Vec<cid::Cid> = cluster.lock_rotten().iter().copied().collect();
                let store = cluster.inner.node.store().clone();
                let Ok(Ok((back, corrupt))) = tokio::task::spawn_blocking(move || {
                    let back: Vec<cid::Cid> = rotten
                        .into_iter()
                        .filter(|c| store.has(c).unwrap_or(false))
                        .collect();
                    store.corrupt_blocks().map(|c| (back, c))
                })
                .await
                else {
                    continue;
                };
                if !back.is_empty() {
                    let mut rotten = cluster.lock_rotten();
                    for c in &back {
                        rotten.remove(c);
                    }
                    cluster
                        .inner
                        .scrub_healed
                        .fetch_add(back.len() as u64, Ordering::Relaxed);
                    tracing::info!(blocks = back.len(), "rotten blocks are whole again");
                }
                if corrupt.is_empty() {
                    continue;
                }
                let (healed, failed) = crate::ec::scrub::heal(
                    &cluster.inner.ec.rebuilder,
                    cluster.inner.node.store(),
                    corrupt.into_iter().map(|c| c.cid).collect(),
                )
                .await;
                if healed + failed > 0 {
                    tracing::info!(
                        healed,
                        failed,
                        "rebuilt rotten blocks of erasure-coded shares"
                    );
                }
            }
        });
        let cluster = self.clone();
        tokio::spawn(async move {
            let c2 = cluster.clone();
            crate::ec::scrub::scrub_loop(
                cluster.inner.node.store().clone(),
                cluster.inner.settings.raw.scrub_bytes_per_second,
                move |cids| {
                    c2.inner
                        .scrub_found
                        .fetch_add(cids.len() as u64, Ordering::Relaxed);
                    c2.lock_rotten().extend(cids);
                },
                shutdown,
            )
            .await;
        });
    }

    /// Every member, this peer included (it may not be one yet while joining).
    fn member_ids(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self
            .inner
            .consensus
            .members()
            .into_iter()
            .map(|m| m.peer)
            .collect();
        if !v.contains(&self.inner.local) {
            v.push(self.inner.local);
        }
        v
    }

    fn trust(&self, peer: PeerId) {
        self.inner
            .trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer);
    }

    fn is_trusted(&self, peer: &PeerId) -> bool {
        self.inner.consensus.is_member(peer)
            || self
                .inner
                .trusted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(peer)
    }

    /// Tells the swarm where a peer listens, so streams can be opened to it by id.
    async fn learn_addrs(&self, peer: PeerId, addrs: &[Multiaddr]) {
        for a in addrs {
            let bare: Multiaddr = a
                .iter()
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect();
            let _ = self.inner.swarm.add_address(peer, bare).await;
        }
    }
}

/// The repo's `cluster-api` file, removed when the daemon stops.
struct RestApiFile {
    path: PathBuf,
}

impl RestApiFile {
    fn write(root: PathBuf, addr: std::net::SocketAddr) -> Result<Self, String> {
        let path = root.join(REST_API_FILE);
        std::fs::write(&path, tessera_node::socket_to_multiaddr(addr).to_string())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(RestApiFile { path })
    }
}

impl Drop for RestApiFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
