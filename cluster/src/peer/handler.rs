//! What the cluster peer answers: other members' RPCs, joins, and the node's hooks (the Kubo
//! API's `pin/add` and `pin/rm`, and the Prometheus endpoint).

use std::fmt::Write;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use futures::future::BoxFuture;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p::{Multiaddr, PeerId};

use super::Cluster;
use crate::api::{ClusterApi, PinOptions};
use crate::join;
use crate::pin::PinMode;
use crate::rpc::{Handler, Reply, Request, WireIdentity};
use crate::status::PinStatus;

#[async_trait]
impl Handler for Cluster {
    fn allowed(&self, peer: &PeerId) -> bool {
        self.is_trusted(peer)
    }

    async fn raft(&self, from: PeerId, body: Bytes) -> Bytes {
        self.inner.consensus.handle(from, body).await
    }

    async fn call(&self, _from: PeerId, request: Request) -> Reply {
        match request {
            Request::Identity => {
                let id = self.id().await;
                Reply::Identity(WireIdentity {
                    peer_name: id.peer_name,
                    addresses: id.addresses.iter().map(|a| a.to_string()).collect(),
                    cluster_peers: id.cluster_peers.iter().map(|p| p.to_string()).collect(),
                    version: id.version,
                    voter: id.voter,
                })
            }
            Request::Status(cid) => Reply::Status(self.inner.tracker.status(cid).await),
            Request::StatusAll => Reply::Statuses(self.inner.tracker.status_all()),
            Request::Recover(cid) => {
                self.inner.tracker.recover(cid);
                Reply::Status(self.inner.tracker.status(cid).await)
            }
            Request::Connected => match self.inner.swarm.peers().await {
                Ok(peers) => {
                    let members = self.member_ids();
                    Reply::Connected(
                        peers
                            .into_iter()
                            .map(|p| p.peer)
                            .filter(|p| members.contains(p))
                            .map(|p| p.to_string())
                            .collect(),
                    )
                }
                Err(e) => Reply::Error(e.to_string()),
            },
        }
    }
}

#[async_trait]
impl join::Admit for Cluster {
    fn trust(&self, peer: PeerId, _addrs: &[Multiaddr]) -> Vec<(PeerId, Vec<Multiaddr>)> {
        Cluster::trust(self, peer);
        let mut members: Vec<(PeerId, Vec<Multiaddr>)> = self
            .inner
            .consensus
            .members()
            .into_iter()
            .map(|m| (m.peer, m.addrs))
            .collect();
        if !members.iter().any(|(p, _)| *p == self.inner.local) {
            members.push((self.inner.local, self.inner.node.listen_addrs()));
        }
        members
    }

    async fn add(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), String> {
        self.learn_addrs(peer, &addrs).await;
        self.inner
            .consensus
            .add_member(peer, addrs, true)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Answers join streams (open to anyone; the handshake decides).
pub(super) async fn serve_joins(cluster: Cluster) {
    let mut control = cluster.inner.swarm.streams();
    let mut incoming = match control.accept(join::PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot accept cluster joins");
            return;
        }
    };
    while let Some((peer, mut stream)) = incoming.next().await {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let work = join::answer(
                &mut stream,
                &cluster.inner.settings.secret,
                cluster.inner.local,
                peer,
                &cluster,
            );
            match tokio::time::timeout(std::time::Duration::from_secs(60), work).await {
                Ok(Ok(())) => tracing::info!(%peer, "a peer joined the cluster"),
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "refused a cluster join"),
                Err(_) => tracing::warn!(%peer, "a cluster join timed out"),
            }
            let _ = stream.close().await;
        });
    }
}

impl tessera_node::Pinner for Cluster {
    fn pin(&self, root: Cid, recursive: bool) -> BoxFuture<'static, Result<(), String>> {
        let cluster = self.clone();
        async move {
            let options = PinOptions {
                mode: if recursive {
                    PinMode::Recursive
                } else {
                    PinMode::Direct
                },
                ..PinOptions::default()
            };
            let pin = ClusterApi::pin(&cluster, root, options)
                .await
                .map_err(|e| e.message)?;
            if pin.is_allocated_to(&cluster.inner.local) {
                // `ipfs pin add` returns once the content is here: so does the proxy.
                cluster
                    .inner
                    .tracker
                    .wait_pinned(root, cluster.inner.settings.pin_timeout)
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn unpin(&self, root: Cid) -> BoxFuture<'static, Result<(), String>> {
        let cluster = self.clone();
        async move {
            let in_pinset = cluster
                .inner
                .consensus
                .get(&root)
                .map_err(|e| e.to_string())?
                .is_some();
            if in_pinset {
                ClusterApi::unpin(&cluster, root)
                    .await
                    .map_err(|e| e.message)?;
            }
            // A pin this node made alone (`add`, `dag import`) is a local pin: remove it too, so
            // that `pin rm` after `add` behaves as Kubo's.
            let local = cluster.inner.node.unpin_local(root).await?;
            if !in_pinset && !local {
                return Err(format!("{root} is not pinned or pinned indirectly"));
            }
            Ok(())
        }
        .boxed()
    }
}

impl tessera_node::MetricsSource for Cluster {
    fn render(&self) -> BoxFuture<'static, String> {
        let cluster = self.clone();
        async move {
            let mut out = String::new();
            let (counts, queue) = cluster.inner.tracker.counts();
            let _ = writeln!(
                out,
                "# HELP tessera_cluster_pins Pins this peer tracks, by IPFS Cluster status.\n# TYPE tessera_cluster_pins gauge"
            );
            for st in PinStatus::ALL {
                let _ = writeln!(
                    out,
                    "tessera_cluster_pins{{status=\"{}\"}} {}",
                    st.as_str(),
                    counts.get(&st).copied().unwrap_or(0)
                );
            }
            let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            };
            gauge(&mut out, "tessera_cluster_pin_queue", "Pins waiting for the tracker.", queue as u64);
            let pinset = cluster.inner.consensus.len().unwrap_or(0);
            gauge(&mut out, "tessera_cluster_pinset_size", "Pins in the shared pinset.", pinset);
            let st = cluster.inner.consensus.status();
            gauge(&mut out, "tessera_cluster_raft_term", "Current Raft term.", st.term);
            gauge(&mut out, "tessera_cluster_raft_last_log_index", "Last Raft log index.", st.last_log_index);
            gauge(&mut out, "tessera_cluster_raft_last_applied", "Last Raft entry applied to the pinset.", st.last_applied);
            gauge(
                &mut out,
                "tessera_cluster_raft_is_leader",
                "1 when this peer leads the consensus.",
                u64::from(st.leader == Some(cluster.inner.local)),
            );
            gauge(&mut out, "tessera_cluster_voters", "Voting members.", st.voters.len() as u64);
            gauge(&mut out, "tessera_cluster_learners", "Non-voting members.", st.learners.len() as u64);
            let found = cluster.inner.scrub_found.load(std::sync::atomic::Ordering::Relaxed);
            let healed = cluster.inner.scrub_healed.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP tessera_cluster_scrub_corrupt_total Rotten blocks the scrub found.\n# TYPE tessera_cluster_scrub_corrupt_total counter\ntessera_cluster_scrub_corrupt_total {found}"
            );
            let _ = writeln!(
                out,
                "# HELP tessera_cluster_scrub_healed_total Rotten blocks that are whole again.\n# TYPE tessera_cluster_scrub_healed_total counter\ntessera_cluster_scrub_healed_total {healed}"
            );
            let alive = cluster
                .member_ids()
                .iter()
                .filter(|p| cluster.inner.monitor.alive(p))
                .count();
            gauge(&mut out, "tessera_cluster_peers_alive", "Members whose metrics are current.", alive as u64);
            out
        }
        .boxed()
    }
}
