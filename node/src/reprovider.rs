//! Announcing pinned content in the DHT, with Kubo's "roots" reprovider strategy: the root of each
//! pin (recursive and direct), never the blocks below a root. A reader who finds the root's
//! provider fetches the rest from it over the same Bitswap session.
//!
//! Roots are provided as they are pinned (by `add`, `pin add`, `dag import` and the cluster's pin
//! tracker), and the whole pinset again every [`REPROVIDE_INTERVAL`], so that the records, which
//! other peers keep for 48 hours, never lapse. The first round runs as soon as the DHT has a
//! connected peer: at start the routing table is empty, and a provide then reaches nobody. Each
//! round also stops announcing what is no longer pinned.
//!
//! Nothing here runs with `Routing.Type none`.

use std::collections::HashSet;
use std::time::Duration;

use cid::Cid;
use futures::StreamExt;
use tokio::sync::watch;

use crate::node::Node;
use crate::swarm::routing_key;

/// How often the whole pinset is announced again: Kubo's `Reprovider.Interval` default.
pub(crate) const REPROVIDE_INTERVAL: Duration = Duration::from_secs(22 * 60 * 60);

impl Node {
    /// Announces freshly pinned roots in the background; a no-op with routing off. A failure is
    /// only logged: the next reprovide round tries again.
    pub(crate) fn provide_roots(&self, roots: Vec<Cid>) {
        let Some(swarm) = self.swarm().filter(|s| s.routing_enabled()).cloned() else {
            return;
        };
        if roots.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let mut results = Box::pin(swarm.provide_each(roots));
            while let Some((root, r)) = results.next().await {
                match r {
                    Ok(()) => tracing::debug!(%root, "provided"),
                    Err(e) => tracing::debug!(%root, error = %e, "not provided now"),
                }
            }
        });
    }
}

/// Runs the reprovider until `shutdown` turns true; returns at once with routing off.
pub(crate) async fn run(node: Node, mut shutdown: watch::Receiver<bool>) {
    let Some(swarm) = node.swarm().filter(|s| s.routing_enabled()).cloned() else {
        return;
    };
    let mut ready = swarm.dht_ready();
    tokio::select! {
        r = ready.wait_for(|r| *r) => if r.is_err() { return },
        _ = shutdown.wait_for(|v| *v) => return,
    }
    loop {
        round(&node).await;
        tokio::select! {
            _ = tokio::time::sleep(REPROVIDE_INTERVAL) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
    }
}

/// Announces every pinned root once, and stops announcing the rest.
async fn round(node: &Node) {
    let Some(swarm) = node.swarm().cloned() else {
        return;
    };
    let store = node.store().clone();
    let pins = match tokio::task::spawn_blocking(move || store.pins()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reprovide: cannot list the pins");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "reprovide: the pin listing failed");
            return;
        }
    };
    // One announcement per multihash: a CIDv0 and a CIDv1 of the same block share a record.
    let mut keys = HashSet::new();
    let roots: Vec<Cid> = pins
        .into_iter()
        .map(|(cid, _)| cid)
        .filter(|cid| keys.insert(routing_key(cid)))
        .collect();
    if let Err(e) = swarm.retain_provided(keys).await {
        tracing::debug!(error = %e, "reprovide: cannot drop stale records");
    }
    let total = roots.len();
    let mut results = Box::pin(swarm.provide_each(roots));
    let mut failed = 0usize;
    while let Some((root, r)) = results.next().await {
        if let Err(e) = r {
            tracing::debug!(%root, error = %e, "reprovide: not provided");
            failed += 1;
        }
    }
    tracing::info!(
        roots = total,
        failed,
        "reprovided the pinned roots in the DHT"
    );
}
