//! The cluster peer's background work: joining, staying connected to members, broadcasting and
//! collecting metrics, and the leader's chores (expiring pins, re-allocating pins of dead peers).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;

use super::Cluster;
use crate::allocator::{Candidate, allocate};
use crate::join;
use crate::metric::{Metric, now_nanos};
use crate::monitor::{FREESPACE, PING, PINQUEUE, PINS};
use crate::pin::{Pin, PinsetOp};
use crate::status::PinStatus;

/// Starts the periodic work.
pub(super) fn spawn(cluster: Cluster, shutdown: watch::Receiver<bool>) {
    tokio::spawn(until(shutdown.clone(), keep_connected(cluster.clone())));
    tokio::spawn(until(shutdown.clone(), publish_metrics(cluster.clone())));
    tokio::spawn(until(shutdown.clone(), receive_metrics(cluster.clone())));
    tokio::spawn(until(shutdown, leader_chores(cluster)));
}

async fn until(mut shutdown: watch::Receiver<bool>, work: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = work => {}
        _ = shutdown.wait_for(|v| *v) => {}
    }
}

/// Joins through `Cluster.Join` until this peer is a member, retrying with backoff.
pub(super) async fn join_loop(cluster: Cluster, shutdown: watch::Receiver<bool>) {
    let work = async {
        let mut backoff = Duration::from_secs(1);
        loop {
            for addr in &cluster.inner.settings.join {
                match join_once(&cluster, addr.clone()).await {
                    Ok(member) => {
                        tracing::info!(%member, "joined the cluster");
                        return;
                    }
                    Err(e) => tracing::warn!(%addr, error = %e, "cannot join the cluster yet"),
                }
            }
            if cluster.inner.consensus.is_initialized().await {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    };
    until(shutdown, work).await;
}

async fn join_once(cluster: &Cluster, addr: Multiaddr) -> Result<PeerId, String> {
    let member = cluster
        .inner
        .swarm
        .connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut control = cluster.inner.swarm.streams();
    let mut stream = control
        .open_stream(member, join::PROTOCOL)
        .await
        .map_err(|e| format!("{member} does not accept joins: {e}"))?;
    let addrs = cluster.inner.node.listen_addrs();
    let trusted = std::sync::Mutex::new(Vec::new());
    let joined = tokio::time::timeout(
        Duration::from_secs(60),
        join::join(
            &mut stream,
            &cluster.inner.settings.secret,
            cluster.inner.local,
            member,
            &addrs,
            |members| {
                for (p, a) in members {
                    cluster.trust(*p);
                    if let Ok(mut t) = trusted.lock() {
                        t.push((*p, a.clone()));
                    }
                }
            },
        ),
    )
    .await
    .map_err(|_| format!("{member} did not finish the join within 60 s"))??;
    for (p, a) in joined.members {
        cluster.learn_addrs(p, &a).await;
    }
    Ok(member)
}

/// Dials members that are not connected, so that Raft, gossip and Bitswap between members never
/// wait for a dial.
async fn keep_connected(cluster: Cluster) {
    let consensus = &cluster.inner.consensus;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut seen = consensus.membership_index();
    loop {
        // A member that just joined is dialled at once: until then nobody here knows its
        // addresses, nor it theirs, and reads from it (or its reads) fail.
        tokio::select! {
            _ = tick.tick() => {}
            now = consensus.membership_changed(seen) => seen = now,
        }
        let connected: Vec<PeerId> = match cluster.inner.swarm.peers().await {
            Ok(p) => p.into_iter().map(|p| p.peer).collect(),
            Err(_) => return,
        };
        for m in consensus.members() {
            if m.peer == cluster.inner.local || connected.contains(&m.peer) {
                continue;
            }
            cluster.learn_addrs(m.peer, &m.addrs).await;
            for a in &m.addrs {
                let mut full = a.clone();
                if !a.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                    full.push(Protocol::P2p(m.peer));
                }
                if cluster.inner.swarm.connect(full).await.is_ok() {
                    break;
                }
            }
        }
    }
}

fn own_metrics(cluster: &Cluster, freespace: u64) -> Vec<Metric> {
    let s = &cluster.inner.settings;
    let expire_at = now_nanos().saturating_add(s.metric_ttl.as_nanos() as u64);
    let (counts, queue) = cluster.inner.tracker.counts();
    let pins = counts.get(&PinStatus::Pinned).copied().unwrap_or(0);
    let metric = |name: &str, value: String| Metric {
        name: name.to_string(),
        peer: cluster.inner.local,
        value,
        expire_at,
        valid: true,
        received_at: 0,
    };
    let mut v = vec![
        metric(PING, String::new()),
        metric(FREESPACE, freespace.to_string()),
        metric(PINS, pins.to_string()),
        metric(PINQUEUE, queue.to_string()),
    ];
    for (k, val) in &s.raw.tags {
        v.push(metric(&format!("tag:{k}"), val.clone()));
    }
    v
}

async fn free_space(cluster: &Cluster) -> u64 {
    let store = cluster.inner.node.store().clone();
    let max = cluster.inner.node.config().storage_max();
    match tokio::task::spawn_blocking(move || store.stat()).await {
        Ok(Ok(stat)) => max.saturating_sub(stat.disk_bytes),
        _ => 0,
    }
}

async fn publish_metrics(cluster: Cluster) {
    let mut tick = tokio::time::interval(cluster.inner.settings.metric_interval);
    loop {
        tick.tick().await;
        let metrics = own_metrics(&cluster, free_space(&cluster).await);
        for m in &metrics {
            cluster.inner.monitor.record(m.clone());
        }
        let Ok(data) = serde_json::to_vec(&metrics) else {
            continue;
        };
        if cluster
            .inner
            .swarm
            .publish(&cluster.inner.topic, data)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn receive_metrics(cluster: Cluster) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    if cluster
        .inner
        .swarm
        .subscribe(&cluster.inner.topic, tx)
        .await
        .is_err()
    {
        return;
    }
    while let Some(msg) = rx.recv().await {
        if !cluster.is_trusted(&msg.author) {
            tracing::warn!(peer = %msg.author, "dropped cluster metrics from a peer that is not a member");
            continue;
        }
        let metrics: Vec<Metric> = match serde_json::from_slice(&msg.data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(peer = %msg.author, error = %e, "malformed cluster metrics");
                continue;
            }
        };
        for m in metrics {
            // A member speaks for itself only.
            if m.peer == msg.author {
                cluster.inner.monitor.record(m);
            }
        }
    }
}

/// Candidates for new allocations: members whose metrics are current.
pub(super) fn candidates(cluster: &Cluster) -> Vec<Candidate> {
    let mon = &cluster.inner.monitor;
    cluster
        .member_ids()
        .into_iter()
        .filter(|p| mon.alive(p))
        .map(|peer| {
            let freespace = mon
                .valid(FREESPACE, &peer)
                .and_then(|m| m.value.parse().ok())
                .unwrap_or(0);
            let tags = cluster
                .inner
                .monitor
                .names()
                .into_iter()
                .filter_map(|n| {
                    let tag = n.strip_prefix("tag:")?.to_string();
                    let v = mon.valid(&n, &peer)?.value;
                    Some((tag, v))
                })
                .collect();
            Candidate {
                peer,
                freespace,
                tags,
            }
        })
        .collect()
}

/// Picks allocations for a replicated pin: user allocations first, then current holders that are
/// alive, then the balanced allocator. Errors when fewer than `min` peers are available.
pub(super) fn choose(
    cluster: &Cluster,
    min: i32,
    max: i32,
    user: &[PeerId],
    current: &[PeerId],
) -> Result<Vec<PeerId>, String> {
    let cands = candidates(cluster);
    let alive: Vec<PeerId> = cands.iter().map(|c| c.peer).collect();
    let mut first: Vec<PeerId> = user.iter().filter(|p| alive.contains(p)).copied().collect();
    first.extend(current.iter().filter(|p| alive.contains(p)));
    let want = usize::try_from(max).unwrap_or(0);
    let chosen = allocate(
        &cands,
        &cluster.inner.settings.raw.allocate_by,
        want,
        &first,
    );
    let need = usize::try_from(min).unwrap_or(0);
    if chosen.len() < need {
        return Err(format!(
            "not enough peers to allocate the pin: needed at least {min}, wanted at most {max}, {} available (peers whose metrics are current: {})",
            chosen.len(),
            alive.len()
        ));
    }
    Ok(chosen)
}

/// On the leader: remove expired pins; move pins away from peers down longer than
/// `Cluster.ReallocateAfter` (or no longer members).
async fn leader_chores(cluster: Cluster) {
    let mut tick = tokio::time::interval(cluster.inner.settings.metric_interval);
    // When this leader first saw each member without a current metric.
    let mut missing_since: HashMap<PeerId, u64> = HashMap::new();
    loop {
        tick.tick().await;
        let now = now_nanos();
        let members = cluster.member_ids();
        for p in &members {
            if cluster.inner.monitor.alive(p) {
                missing_since.remove(p);
            } else {
                let since = cluster.inner.monitor.down_since(p).unwrap_or(now);
                missing_since.entry(*p).or_insert(since);
            }
        }
        if cluster.inner.consensus.leader() != Some(cluster.inner.local) {
            continue;
        }
        let grace = cluster.inner.settings.reallocate_after.as_nanos() as u64;
        let gone = |p: &PeerId| {
            !members.contains(p)
                || missing_since
                    .get(p)
                    .is_some_and(|since| now.saturating_sub(*since) >= grace)
        };
        let down: BTreeSet<PeerId> = members
            .iter()
            .filter(|p| **p != cluster.inner.local && gone(p))
            .copied()
            .collect();
        cluster.inner.consensus.rotate_voters(&down).await;
        let now_secs = now / 1_000_000_000;
        let mut after = None;
        let mut ops = Vec::new();
        while let Ok(page) = cluster.inner.consensus.list(after.as_ref(), 1000) {
            for pin in &page {
                if pin.expire_at.is_some_and(|t| t <= now_secs) {
                    ops.push(PinsetOp::Unpin(pin.cid));
                    continue;
                }
                if let Some(op) = reallocation(&cluster, pin, &gone) {
                    ops.push(op);
                }
            }
            match page.last() {
                Some(l) if page.len() == 1000 => after = Some(l.cid),
                _ => break,
            }
        }
        for chunk in ops.chunks(100) {
            if let Err(e) = cluster
                .inner
                .consensus
                .submit(PinsetOp::Batch(chunk.to_vec()))
                .await
            {
                tracing::warn!(error = %e, "cannot commit expiries and re-allocations");
            }
        }
    }
}

fn reallocation(cluster: &Cluster, pin: &Pin, gone: &impl Fn(&PeerId) -> bool) -> Option<PinsetOp> {
    if pin.ec.is_some() {
        return cluster.ec_reallocation(pin, gone);
    }
    if pin.replication_max == -1 || !pin.allocations.iter().any(gone) {
        return None;
    }
    let keep: Vec<PeerId> = pin
        .allocations
        .iter()
        .filter(|p| !gone(p))
        .copied()
        .collect();
    match choose(
        cluster,
        pin.replication_min,
        pin.replication_max,
        &pin.user_allocations,
        &keep,
    ) {
        Ok(new) if new != pin.allocations => {
            tracing::info!(cid = %pin.cid, from = ?pin.allocations, to = ?new, "re-allocating a pin away from a peer that is down");
            let mut p = pin.clone();
            p.allocations = new;
            Some(PinsetOp::Pin(p))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(cid = %pin.cid, error = %e, "cannot re-allocate a pin held by a peer that is down");
            None
        }
    }
}
