//! The latest metrics of every member, as gossipsub brings them (IPFS Cluster's pubsub monitor).
//!
//! A peer is alive while its `ping` metric has not expired; the time it went down is remembered so
//! that its pins are re-allocated only after `Cluster.ReallocateAfter`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use libp2p::PeerId;

use crate::metric::{Metric, now_nanos};

/// The name of the liveness metric.
pub(crate) const PING: &str = "ping";
/// Free space, in bytes.
pub(crate) const FREESPACE: &str = "freespace";
/// Pins this peer tracks.
pub(crate) const PINS: &str = "pins";
/// Pins waiting in its queue.
pub(crate) const PINQUEUE: &str = "pinqueue";

/// Latest metric per (name, peer).
#[derive(Default)]
pub(crate) struct Monitor {
    latest: Mutex<HashMap<(String, PeerId), Metric>>,
}

impl Monitor {
    /// Keeps `m` if it is newer than what we have.
    pub(crate) fn record(&self, mut m: Metric) {
        m.received_at = now_nanos();
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let key = (m.name.clone(), m.peer);
        match latest.get(&key) {
            Some(old) if old.expire_at > m.expire_at => {}
            _ => {
                latest.insert(key, m);
            }
        }
    }

    /// The latest metric of `name` from each peer.
    pub(crate) fn latest(&self, name: &str) -> Vec<Metric> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Metric> = latest
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, m)| m.clone())
            .collect();
        v.sort_by_key(|m| m.peer.to_string());
        v
    }

    /// One peer's latest metric of `name`, if it has not expired.
    pub(crate) fn valid(&self, name: &str, peer: &PeerId) -> Option<Metric> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .get(&(name.to_string(), *peer))
            .filter(|m| m.valid && !m.expired(now_nanos()))
            .cloned()
    }

    /// Names of every metric seen.
    pub(crate) fn names(&self) -> Vec<String> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .keys()
            .map(|(n, _)| n.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Whether `peer`'s liveness metric is current.
    pub(crate) fn alive(&self, peer: &PeerId) -> bool {
        self.valid(PING, peer).is_some()
    }

    /// Unix nanoseconds since which `peer` has been down (its last ping's expiry), `None` if it is
    /// alive or was never seen (a peer never seen counts as down since the monitor started, which
    /// the caller decides).
    pub(crate) fn down_since(&self, peer: &PeerId) -> Option<u64> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let m = latest.get(&(PING.to_string(), *peer))?;
        if m.expired(now_nanos()) {
            Some(m.expire_at)
        } else {
            None
        }
    }

    /// Whether `peer`'s liveness metric expired more than its own TTL ago (a peer never seen is
    /// not long gone: it may be joining).
    pub(crate) fn long_gone(&self, peer: &PeerId) -> bool {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = latest.get(&(PING.to_string(), *peer)) else {
            return false;
        };
        let ttl = m.expire_at.saturating_sub(m.received_at.min(m.expire_at));
        now_nanos() > m.expire_at.saturating_add(ttl)
    }

    /// Forgets a peer (removed from the cluster).
    pub(crate) fn forget(&self, peer: &PeerId) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.retain(|(_, p), _| p != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, peer: PeerId, expire_at: u64) -> Metric {
        Metric {
            name: name.into(),
            peer,
            value: "1".into(),
            expire_at,
            valid: true,
            received_at: 0,
        }
    }

    #[test]
    fn liveness_follows_the_ping_ttl() {
        let m = Monitor::default();
        let a = PeerId::random();
        let b = PeerId::random();
        m.record(metric(PING, a, now_nanos() + 10_000_000_000));
        m.record(metric(PING, b, now_nanos() - 1));
        assert!(m.alive(&a));
        assert!(!m.alive(&b));
        assert!(m.down_since(&b).is_some());
        assert!(m.down_since(&a).is_none());
        // An older metric arriving late does not replace a newer one.
        m.record(metric(PING, a, 1));
        assert!(m.alive(&a));
        assert_eq!(m.names(), vec![PING.to_string()]);
        m.forget(&a);
        assert!(!m.alive(&a));
    }
}
