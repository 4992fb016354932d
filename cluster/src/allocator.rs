//! Where a replicated pin goes: IPFS Cluster's balanced allocator.
//!
//! Candidates are partitioned by the values of the `tag:*` metrics in `Cluster.AllocateBy`, in
//! order; each next allocation goes to the partition that holds the fewest allocations so far
//! (ties: the one with the most free space), and within it to the peer with the most free space.
//! So a pin with replication 2 over tags `group=a` and `group=b` lands once in each group, then
//! on the emptiest disks.

use std::collections::BTreeMap;

use libp2p::PeerId;

/// A peer that may receive a pin: alive, with a current free-space metric.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) peer: PeerId,
    pub(crate) freespace: u64,
    pub(crate) tags: BTreeMap<String, String>,
}

/// Picks up to `want` peers. `first` (user allocations, then current holders that are alive) are
/// kept in front and count towards the balance.
pub(crate) fn allocate(
    candidates: &[Candidate],
    allocate_by: &[String],
    want: usize,
    first: &[PeerId],
) -> Vec<PeerId> {
    let tag_names: Vec<&str> = allocate_by
        .iter()
        .filter_map(|m| m.strip_prefix("tag:"))
        .collect();
    let key = |c: &Candidate| -> Vec<String> {
        tag_names
            .iter()
            .map(|t| c.tags.get(*t).cloned().unwrap_or_default())
            .collect()
    };
    let mut chosen: Vec<PeerId> = Vec::new();
    let mut per_partition: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for p in first {
        if chosen.len() >= want || chosen.contains(p) {
            continue;
        }
        chosen.push(*p);
        if let Some(c) = candidates.iter().find(|c| c.peer == *p) {
            *per_partition.entry(key(c)).or_default() += 1;
        }
    }
    let mut pool: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !chosen.contains(&c.peer))
        .collect();
    while chosen.len() < want && !pool.is_empty() {
        let mut partitions: BTreeMap<Vec<String>, (u64, Vec<usize>)> = BTreeMap::new();
        for (i, c) in pool.iter().enumerate() {
            let e = partitions.entry(key(c)).or_default();
            e.0 = e.0.saturating_add(c.freespace);
            e.1.push(i);
        }
        let Some((_, (_, members))) = partitions.iter().min_by(|(ka, (fa, _)), (kb, (fb, _))| {
            let ca = per_partition.get(*ka).copied().unwrap_or(0);
            let cb = per_partition.get(*kb).copied().unwrap_or(0);
            ca.cmp(&cb).then(fb.cmp(fa))
        }) else {
            break;
        };
        let Some(&best) = members.iter().max_by(|&&a, &&b| {
            pool[a]
                .freespace
                .cmp(&pool[b].freespace)
                // Deterministic among equals: the smaller peer id first.
                .then(pool[b].peer.to_bytes().cmp(&pool[a].peer.to_bytes()))
        }) else {
            break;
        };
        let c = pool.remove(best);
        *per_partition.entry(key(c)).or_default() += 1;
        chosen.push(c.peer);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(free: u64, group: &str) -> Candidate {
        let mut tags = BTreeMap::new();
        if !group.is_empty() {
            tags.insert("group".to_string(), group.to_string());
        }
        Candidate {
            peer: PeerId::random(),
            freespace: free,
            tags,
        }
    }

    #[test]
    fn most_free_space_first() {
        let c = vec![cand(10, ""), cand(30, ""), cand(20, "")];
        let by = vec!["freespace".to_string()];
        let got = allocate(&c, &by, 2, &[]);
        assert_eq!(got, vec![c[1].peer, c[2].peer]);
    }

    #[test]
    fn spreads_over_tag_groups_before_free_space() {
        let c = vec![cand(100, "a"), cand(90, "a"), cand(10, "b")];
        let by = vec!["tag:group".to_string(), "freespace".to_string()];
        let got = allocate(&c, &by, 2, &[]);
        assert!(
            got.contains(&c[0].peer) && got.contains(&c[2].peer),
            "{got:?}"
        );
    }

    #[test]
    fn keeps_given_peers_and_never_repeats() {
        let c = vec![cand(10, ""), cand(30, ""), cand(20, "")];
        let by = vec!["freespace".to_string()];
        let got = allocate(&c, &by, 2, &[c[0].peer]);
        assert_eq!(got, vec![c[0].peer, c[1].peer]);
        let got = allocate(&c, &by, 10, &[]);
        assert_eq!(got.len(), 3);
    }
}
