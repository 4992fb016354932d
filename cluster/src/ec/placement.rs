//! Which peer holds which column of an erasure-coded pin.
//!
//! A group's `k + m` columns go to distinct peers whenever the cluster has that many, so that
//! losing any `m` peers loses at most `m` columns of each group. Groups start at successive
//! offsets of one ordering of the peers (column `j` of group `g` goes to peer
//! `(g * (k + m) + j) mod n`), so that the cells of a large pin spread over every peer instead of
//! filling the same `k + m` disks; with fewer than `k + m` peers the same rule deals the columns
//! round-robin, which gives every peer `floor` or `ceil` of `(k + m) / n` columns of each group.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::allocator::Candidate;

/// Peers ordered for placement: most free space first (ties by peer id), from alive candidates.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    peers: Vec<PeerId>,
    k: usize,
    m: usize,
}

impl Placement {
    /// Orders `candidates` (each peer once, its first metric counting); fails without any.
    pub(crate) fn new(candidates: &[Candidate], k: usize, m: usize) -> Result<Placement, String> {
        if k == 0 || m == 0 {
            return Err(format!(
                "an erasure-coded pin needs at least one data and one parity shard, not {k}+{m}"
            ));
        }
        let mut sorted: Vec<&Candidate> = Vec::with_capacity(candidates.len());
        for c in candidates {
            if !sorted.iter().any(|s| s.peer == c.peer) {
                sorted.push(c);
            }
        }
        sorted.sort_by(|a, b| by_free_space(a, b));
        if sorted.is_empty() {
            return Err(
                "no peer can take an erasure-coded pin: no alive peer has reported its free space yet"
                    .into(),
            );
        }
        Ok(Placement {
            peers: sorted.iter().map(|c| c.peer).collect(),
            k,
            m,
        })
    }

    /// The ordered peers.
    #[cfg(test)]
    pub(crate) fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    /// Holders of group `g`'s `k + m` columns: distinct peers when there are at least `k + m`
    /// candidates; groups rotate so that load evens out across groups; with fewer peers, columns
    /// are spread as evenly as possible.
    pub(crate) fn group(&self, g: usize) -> Vec<PeerId> {
        let width = self.k + self.m;
        let n = self.peers.len();
        // Reduced first so that no group index can overflow the product.
        let start = (g % n) * (width % n) % n;
        (0..width).map(|j| self.peers[(start + j) % n]).collect()
    }

    /// The `m + 1` peers (or all if fewer) holding interior blocks and the manifest: the same
    /// number of failures that the columns survive leaves one copy.
    pub(crate) fn interior(&self) -> Vec<PeerId> {
        self.peers.iter().take(self.m + 1).copied().collect()
    }
}

/// Most free space first, then the smaller peer id, so that every peer computes the same order.
fn by_free_space(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.freespace
        .cmp(&a.freespace)
        .then_with(|| a.peer.to_bytes().cmp(&b.peer.to_bytes()))
}

/// How many columns each peer of `group` holds.
fn columns_per_peer(group: &[PeerId]) -> HashMap<PeerId, usize> {
    let mut counts = HashMap::new();
    for p in group {
        *counts.entry(*p).or_insert(0) += 1;
    }
    counts
}

/// How many peer failures a group survives for sure: the largest `f` such that the `f` peers
/// holding the most columns of the group together hold at most `m` columns.
pub(crate) fn tolerated_failures(group: &[PeerId], m: usize) -> usize {
    let mut counts: Vec<usize> = columns_per_peer(group).into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut lost = 0;
    let mut f = 0;
    for c in counts {
        lost += c;
        if lost > m {
            break;
        }
        f += 1;
    }
    f
}

/// A replacement holder for a column of `group` whose holder is gone: an alive candidate holding
/// no column of that group (most free space first), else the alive candidate holding the fewest
/// columns of it; `None` if no candidate.
pub(crate) fn replacement(
    candidates: &[Candidate],
    group: &[PeerId],
    gone: &dyn Fn(&PeerId) -> bool,
) -> Option<PeerId> {
    let counts = columns_per_peer(group);
    candidates
        .iter()
        .filter(|c| !gone(&c.peer))
        .min_by(|a, b| {
            let ca = counts.get(&a.peer).copied().unwrap_or(0);
            let cb = counts.get(&b.peer).copied().unwrap_or(0);
            ca.cmp(&cb).then_with(|| by_free_space(a, b))
        })
        .map(|c| c.peer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, HashSet};

    use super::*;

    fn candidates(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                peer: PeerId::random(),
                // Distinct, so that the order is the index order.
                freespace: 1_000_000 - i as u64,
                tags: BTreeMap::new(),
            })
            .collect()
    }

    #[test]
    fn peers_are_ordered_by_free_space_then_id() {
        let mut cs = candidates(3);
        cs[2].freespace = 2_000_000;
        cs.push(Candidate {
            freespace: 0,
            ..cs[0].clone()
        });
        let p = Placement::new(&cs, 2, 1).unwrap();
        // The duplicate of peer 0 is ignored; peer 2 has the most space.
        assert_eq!(p.peers(), [cs[2].peer, cs[0].peer, cs[1].peer]);

        let mut ties = candidates(4);
        for c in &mut ties {
            c.freespace = 7;
        }
        let p = Placement::new(&ties, 2, 1).unwrap();
        let mut want: Vec<PeerId> = ties.iter().map(|c| c.peer).collect();
        want.sort_by_key(|p| p.to_bytes());
        assert_eq!(p.peers(), want);

        assert!(Placement::new(&[], 6, 3).is_err());
        assert!(Placement::new(&cs, 0, 3).is_err());
    }

    #[test]
    fn twelve_peers_six_plus_three_distinct_and_rotating() {
        let cs = candidates(12);
        let p = Placement::new(&cs, 6, 3).unwrap();
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        for g in 0..4 {
            let group = p.group(g);
            assert_eq!(group.len(), 9);
            let distinct: HashSet<_> = group.iter().collect();
            assert_eq!(distinct.len(), 9, "group {g} reuses a peer");
            assert_eq!(tolerated_failures(&group, 3), 3);
            for peer in group {
                *load.entry(peer).or_default() += 1;
            }
        }
        // 4 groups x 9 columns over 12 peers: exactly 3 columns each.
        assert_eq!(load.len(), 12);
        assert!(load.values().all(|&c| c == 3), "{load:?}");
        // Groups start at different peers.
        assert_ne!(p.group(0)[0], p.group(1)[0]);
        assert_eq!(p.interior(), p.peers()[..4]);
    }

    #[test]
    fn four_peers_six_plus_three_spread_evenly() {
        let cs = candidates(4);
        let p = Placement::new(&cs, 6, 3).unwrap();
        let mut total: HashMap<PeerId, usize> = HashMap::new();
        for g in 0..4 {
            let group = p.group(g);
            let counts = columns_per_peer(&group);
            assert_eq!(counts.len(), 4);
            assert!(counts.values().all(|&c| c == 2 || c == 3), "{counts:?}");
            // One peer holds 3 columns: losing it costs all 3 parities' worth.
            assert_eq!(tolerated_failures(&group, 3), 1);
            for (peer, c) in counts {
                *total.entry(peer).or_default() += c;
            }
        }
        // Over 4 groups the peer holding 3 columns rotates: 9 columns each.
        assert!(total.values().all(|&c| c == 9), "{total:?}");
        assert_eq!(p.interior().len(), 4);
    }

    #[test]
    fn huge_group_indexes_do_not_overflow() {
        let p = Placement::new(&candidates(5), 6, 3).unwrap();
        assert_eq!(p.group(usize::MAX).len(), 9);
    }

    #[test]
    fn tolerated_failures_counts_the_fullest_peers() {
        let ps: Vec<PeerId> = (0..9).map(|_| PeerId::random()).collect();
        assert_eq!(tolerated_failures(&ps, 3), 3);
        let three_by_three: Vec<PeerId> = (0..9).map(|j| ps[j % 3]).collect();
        assert_eq!(tolerated_failures(&three_by_three, 3), 1);
        // 2, 2, 1 ... : the two fullest hold 4 > 3.
        let mut twos = ps.clone();
        twos[1] = ps[0];
        twos[3] = ps[2];
        assert_eq!(tolerated_failures(&twos, 3), 1);
        // One peer holding m + 1 columns: no failure is safe.
        let four: Vec<PeerId> = (0..9).map(|j| ps[usize::from(j >= 4)]).collect();
        assert_eq!(tolerated_failures(&four, 3), 0);
        assert_eq!(tolerated_failures(&[], 3), 0);
    }

    #[test]
    fn replacement_avoids_the_group() {
        let cs = candidates(12);
        let p = Placement::new(&cs, 6, 3).unwrap();
        let group = p.group(0);
        let dead = group[4];
        let r = replacement(&cs, &group, &|peer| *peer == dead).unwrap();
        assert!(!group.contains(&r));
        // The outsider with the most free space: the 10th peer in order.
        assert_eq!(r, p.peers()[9]);

        // Only members of the group left: the one holding the fewest columns.
        let few = candidates(4);
        let p = Placement::new(&few, 6, 3).unwrap();
        let group = p.group(0);
        let counts = columns_per_peer(&group);
        let dead = group[0];
        let r = replacement(&few, &group, &|peer| *peer == dead).unwrap();
        assert_ne!(r, dead);
        assert_eq!(counts[&r], 2);

        assert_eq!(replacement(&few, &group, &|_| true), None);
    }
}
