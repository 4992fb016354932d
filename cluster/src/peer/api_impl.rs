//! The REST API's requests, answered by the cluster peer.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cid::Cid;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, stream};
use libp2p::PeerId;

use super::Cluster;
use super::duties::choose;
use crate::api::{ClusterApi, ClusterError, ConnectGraph, PeerIdentity, PinOptions};
use crate::config::check_replication;
use crate::metric::Metric;
use crate::metric::now_secs;
use crate::pin::{Pin, PinsetOp};
use crate::rpc::{Reply, Request};
use crate::status::{GlobalPinInfo, PeerPinInfo, PinStatus};

const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Cluster {
    /// Asks every member (this one locally) and collects the answers, in member order.
    async fn ask_all(&self, request: Request) -> Vec<(PeerId, Result<Reply, String>)> {
        let members = self.member_ids();
        let futs = members.into_iter().map(|peer| {
            let request = request.clone();
            async move {
                let r = if peer == self.inner.local {
                    Ok(crate::rpc::Handler::call(self, peer, request).await)
                } else {
                    self.inner.rpc.call(peer, &request).await
                };
                (peer, r)
            }
        });
        futures::future::join_all(futs).await
    }

    fn error_info(&self, peer: PeerId, error: String) -> PeerPinInfo {
        PeerPinInfo {
            peer,
            peer_name: String::new(),
            status: PinStatus::ClusterError,
            error,
            timestamp: now_secs(),
            attempt_count: 0,
            ipfs_addresses: Vec::new(),
        }
    }

    /// Every member's status answer to `request` (one that is answered with a status).
    async fn statuses(&self, request: Request) -> Vec<PeerPinInfo> {
        self.ask_all(request)
            .await
            .into_iter()
            .map(|(peer, r)| match r {
                Ok(Reply::Status(i)) => i,
                Ok(_) => self.error_info(peer, "unexpected reply".into()),
                Err(e) => self.error_info(peer, e),
            })
            .collect()
    }

    /// The statuses of one pin, an erasure-coded pin's turned into its real redundancy.
    fn global(&self, cid: Cid, pin: Option<Pin>, infos: Vec<PeerPinInfo>) -> GlobalPinInfo {
        let mut g = GlobalPinInfo {
            cid,
            pin,
            peer_map: infos.into_iter().map(|i| (i.peer.to_string(), i)).collect(),
        };
        self.ec_status(&mut g);
        g
    }

    fn get_pin(&self, cid: &Cid) -> Result<Option<Pin>, ClusterError> {
        self.inner
            .consensus
            .get(cid)
            .map_err(|e| ClusterError::internal(e.to_string()))
    }
}

#[async_trait]
impl ClusterApi for Cluster {
    async fn id(&self) -> PeerIdentity {
        let voter = self
            .inner
            .consensus
            .members()
            .iter()
            .find(|m| m.peer == self.inner.local)
            .map(|m| m.voter)
            .unwrap_or(false);
        PeerIdentity {
            peer: self.inner.local,
            peer_name: self.inner.settings.peer_name.clone(),
            addresses: self.inner.node.listen_addrs(),
            cluster_peers: self.member_ids(),
            version: VERSION.to_string(),
            voter,
            error: None,
        }
    }

    async fn peers(&self) -> Vec<PeerIdentity> {
        let mut out = Vec::new();
        for (peer, r) in self.ask_all(Request::Identity).await {
            out.push(match r {
                Ok(Reply::Identity(w)) => PeerIdentity {
                    peer,
                    peer_name: w.peer_name,
                    addresses: w.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                    cluster_peers: w
                        .cluster_peers
                        .iter()
                        .filter_map(|p| p.parse().ok())
                        .collect(),
                    version: w.version,
                    voter: w.voter,
                    error: None,
                },
                Ok(_) => unreachable_identity(peer, "unexpected reply".into()),
                Err(e) => unreachable_identity(peer, e),
            });
        }
        out
    }

    async fn peer_remove(&self, peer: PeerId) -> Result<(), ClusterError> {
        if !self.inner.consensus.is_member(&peer) {
            return Err(ClusterError::not_found(format!(
                "{peer} is not a member of this cluster"
            )));
        }
        self.inner
            .consensus
            .remove_member(peer)
            .await
            .map_err(|e| ClusterError::internal(e.to_string()))?;
        self.inner.monitor.forget(&peer);
        Ok(())
    }

    fn ec_add(
        &self,
        k: u8,
        m: u8,
        options: PinOptions,
    ) -> Result<
        (
            crate::api::ImportSink,
            futures::future::BoxFuture<'static, Result<Pin, ClusterError>>,
        ),
        ClusterError,
    > {
        Cluster::ec_add(self, k, m, options)
    }

    async fn pin(&self, cid: Cid, options: PinOptions) -> Result<Pin, ClusterError> {
        if let Some((k, m)) = options.erasure {
            return self.pin_ec(cid, k, m, options).await;
        }
        let mut base = Pin::new(
            cid,
            self.inner.settings.raw.replication_factor_min,
            self.inner.settings.raw.replication_factor_max,
        );
        if let Some(from) = options.pin_update {
            // IPFS Cluster's pin update: the new pin takes the old one's options and allocations.
            let old = self.get_pin(&from)?.ok_or_else(|| {
                ClusterError::not_found(format!("pin-update: {from} is not pinned in the cluster"))
            })?;
            base = Pin { cid, ..old };
        }
        let min = options.replication_min.unwrap_or(base.replication_min);
        let max = options.replication_max.unwrap_or(base.replication_max);
        check_replication(min, max).map_err(ClusterError::bad_request)?;
        let existing = self.get_pin(&cid)?;
        let current = existing
            .as_ref()
            .map(|p| p.allocations.clone())
            .unwrap_or_else(|| base.allocations.clone());
        let allocations = if max == -1 {
            Vec::new()
        } else {
            choose(self, min, max, &options.user_allocations, &current)
                .map_err(ClusterError::internal)?
        };
        let pin = Pin {
            cid,
            mode: options.mode,
            name: if options.name.is_empty() {
                base.name
            } else {
                options.name
            },
            replication_min: min,
            replication_max: max,
            allocations,
            user_allocations: options.user_allocations,
            metadata: if options.metadata.is_empty() {
                base.metadata
            } else {
                options.metadata
            },
            expire_at: options.expire_at.or(base.expire_at),
            timestamp: now_secs(),
            ec: None,
        };
        self.inner
            .consensus
            .submit(PinsetOp::Pin(pin.clone()))
            .await
            .map_err(|e| ClusterError::internal(e.to_string()))?;
        Ok(pin)
    }

    async fn unpin(&self, cid: Cid) -> Result<Pin, ClusterError> {
        let pin = self.get_pin(&cid)?.ok_or_else(|| {
            ClusterError::not_found(format!("{cid} is not pinned in the cluster"))
        })?;
        self.inner
            .consensus
            .submit(PinsetOp::Unpin(cid))
            .await
            .map_err(|e| ClusterError::internal(e.to_string()))?;
        Ok(pin)
    }

    async fn allocation(&self, cid: Cid) -> Result<Option<Pin>, ClusterError> {
        self.get_pin(&cid)
    }

    fn allocations(&self) -> BoxStream<'static, Result<Pin, ClusterError>> {
        let consensus = self.inner.consensus.clone();
        // Pages of the pinset, read one after another: memory stays at one page.
        stream::unfold(Some(None::<Cid>), move |after| {
            let consensus = consensus.clone();
            async move {
                let after = after?;
                match consensus.list(after.as_ref(), 1000) {
                    Ok(page) => {
                        let next = if page.len() == 1000 {
                            page.last().map(|p| Some(p.cid))
                        } else {
                            None
                        };
                        if page.is_empty() {
                            return None;
                        }
                        Some((stream::iter(page.into_iter().map(Ok)).left_stream(), next))
                    }
                    Err(e) => Some((
                        stream::iter(vec![Err(ClusterError::internal(e.to_string()))])
                            .right_stream(),
                        None,
                    )),
                }
            }
        })
        .flatten()
        .boxed()
    }

    async fn status(&self, cid: Cid, local: bool) -> Result<GlobalPinInfo, ClusterError> {
        let pin = self.get_pin(&cid)?;
        let infos = if local {
            vec![self.inner.tracker.status(cid).await]
        } else {
            self.statuses(Request::Status(cid)).await
        };
        Ok(self.global(cid, pin, infos))
    }

    fn status_all(
        &self,
        filter: Vec<String>,
        local: bool,
    ) -> BoxStream<'static, Result<GlobalPinInfo, ClusterError>> {
        let cluster = self.clone();
        async move {
            let answers = if local {
                vec![(
                    cluster.inner.local,
                    Ok(Reply::Statuses(cluster.inner.tracker.status_all())),
                )]
            } else {
                cluster.ask_all(Request::StatusAll).await
            };
            let mut by_cid: BTreeMap<Vec<u8>, (Cid, Vec<PeerPinInfo>)> = BTreeMap::new();
            let mut failed = Vec::new();
            for (peer, r) in answers {
                match r {
                    Ok(Reply::Statuses(list)) => {
                        for (cid, info) in list {
                            by_cid
                                .entry(cid.to_bytes())
                                .or_insert_with(|| (cid, Vec::new()))
                                .1
                                .push(info);
                        }
                    }
                    Ok(_) => failed.push((peer, "unexpected reply".to_string())),
                    Err(e) => failed.push((peer, e)),
                }
            }
            let mut out = Vec::new();
            for (_, (cid, mut infos)) in by_cid {
                let pin = match cluster.get_pin(&cid) {
                    Ok(p) => p,
                    Err(e) => {
                        out.push(Err(e));
                        break;
                    }
                };
                // A pin removed from the pinset that a peer still reports unpinned is history.
                if pin.is_none() && infos.iter().all(|i| i.status == PinStatus::Unpinned) {
                    continue;
                }
                for (peer, e) in &failed {
                    infos.push(cluster.error_info(*peer, e.clone()));
                }
                if !filter.is_empty()
                    && !infos
                        .iter()
                        .any(|i| filter.iter().any(|w| i.status.matches_filter(w)))
                {
                    continue;
                }
                out.push(Ok(cluster.global(cid, pin, infos)));
            }
            stream::iter(out)
        }
        .flatten_stream()
        .boxed()
    }

    async fn recover(&self, cid: Cid, local: bool) -> Result<GlobalPinInfo, ClusterError> {
        let pin = self.get_pin(&cid)?;
        if pin.is_none() {
            return Err(ClusterError::not_found(format!(
                "{cid} is not pinned in the cluster"
            )));
        }
        let infos = if local {
            self.inner.tracker.recover(cid);
            vec![self.inner.tracker.status(cid).await]
        } else {
            self.statuses(Request::Recover(cid)).await
        };
        Ok(self.global(cid, pin, infos))
    }

    async fn repair(&self, cid: Cid) -> Result<GlobalPinInfo, ClusterError> {
        self.repair_now(cid).await
    }

    fn recover_all(&self, local: bool) -> BoxStream<'static, Result<GlobalPinInfo, ClusterError>> {
        let cluster = self.clone();
        self.status_all(vec!["error".into()], local)
            .then(move |r| {
                let cluster = cluster.clone();
                async move {
                    match r {
                        Ok(g) => cluster.recover(g.cid, local).await,
                        Err(e) => Err(e),
                    }
                }
            })
            .boxed()
    }

    async fn health_graph(&self) -> ConnectGraph {
        let mut graph = ConnectGraph {
            cluster_id: Some(self.inner.local),
            ..ConnectGraph::default()
        };
        for (peer, r) in self.ask_all(Request::Connected).await {
            match r {
                Ok(Reply::Connected(list)) => {
                    graph
                        .cluster_links
                        .insert(peer, list.iter().filter_map(|p| p.parse().ok()).collect());
                }
                Ok(_) => {
                    graph.errors.insert(peer, "unexpected reply".into());
                }
                Err(e) => {
                    graph.errors.insert(peer, e);
                }
            }
        }
        graph
    }

    async fn metric_names(&self) -> Vec<String> {
        self.inner.monitor.names()
    }

    async fn latest_metrics(&self, name: &str) -> Vec<Metric> {
        self.inner.monitor.latest(name)
    }

    fn node(&self) -> &tessera_node::Node {
        &self.inner.node
    }
}

fn unreachable_identity(peer: PeerId, error: String) -> PeerIdentity {
    PeerIdentity {
        peer,
        peer_name: String::new(),
        addresses: Vec::new(),
        cluster_peers: Vec::new(),
        version: String::new(),
        voter: false,
        error: Some(error),
    }
}
