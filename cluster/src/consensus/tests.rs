//! Multi-node tests over an in-process transport.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use cid::multihash::Multihash;
use libp2p::{Multiaddr, PeerId};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::TryRecvError;

use super::wire::{Request, Response, WireError};
use super::*;
use crate::pin::{Pin, PinsetOp};

/// Peers by id, and which of them are cut off.
#[derive(Default)]
struct Net {
    nodes: Mutex<HashMap<PeerId, Consensus>>,
    down: Mutex<HashSet<PeerId>>,
}

impl Net {
    fn is_down(&self, peer: &PeerId) -> bool {
        self.down.lock().unwrap().contains(peer)
    }
}

/// One peer's view of the in-process network.
struct Link {
    net: Arc<Net>,
    local: PeerId,
}

#[async_trait::async_trait]
impl RaftTransport for Link {
    async fn request(&self, peer: PeerId, body: Bytes) -> Result<Bytes, TransportError> {
        if self.net.is_down(&self.local) || self.net.is_down(&peer) {
            return Err(TransportError(format!("{peer} is unreachable")));
        }
        let node = self.net.nodes.lock().unwrap().get(&peer).cloned();
        match node {
            Some(node) => Ok(node.handle(self.local, body).await),
            None => Err(TransportError(format!("{peer} is not running"))),
        }
    }
}

fn test_config() -> ConsensusConfig {
    ConsensusConfig {
        heartbeat: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        ..Default::default()
    }
}

/// Peers sharing a temporary directory and a [`Net`].
struct Harness {
    net: Arc<Net>,
    dir: tempfile::TempDir,
    config: ConsensusConfig,
}

impl Harness {
    fn new(config: ConsensusConfig) -> Self {
        Harness {
            net: Arc::new(Net::default()),
            dir: tempfile::tempdir().unwrap(),
            config,
        }
    }

    fn path(&self, peer: &PeerId) -> PathBuf {
        self.dir.path().join(format!("{peer}.redb"))
    }

    fn addr(peer: &PeerId) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap()
    }

    /// Opens (or reopens) `peer` from its database file and puts it on the network.
    async fn start(&self, peer: PeerId) -> Consensus {
        let link = Arc::new(Link {
            net: self.net.clone(),
            local: peer,
        });
        let node = Consensus::open(
            &self.path(&peer),
            peer,
            vec![Self::addr(&peer)],
            link,
            self.config.clone(),
        )
        .await
        .unwrap();
        self.net.nodes.lock().unwrap().insert(peer, node.clone());
        self.net.down.lock().unwrap().remove(&peer);
        node
    }

    /// Cuts `peer` off: every request to or from it fails.
    fn cut(&self, peer: PeerId) {
        self.net.down.lock().unwrap().insert(peer);
    }

    /// Takes `peer` off the network and stops it.
    async fn stop(&self, node: Consensus) {
        let peer = node.inner.local;
        self.net.nodes.lock().unwrap().remove(&peer);
        node.shutdown().await;
    }

    /// Starts a fresh node and has `via` add it as a member (a voter if `voter` and there is room).
    async fn join(&self, via: &Consensus, voter: bool) -> Consensus {
        let node = self.start(PeerId::random()).await;
        let peer = node.inner.local;
        via.add_member(peer, vec![Self::addr(&peer)], voter)
            .await
            .unwrap();
        node
    }

    /// Initializes the first node and adds the others as voters.
    async fn form(&self, count: usize) -> Vec<Consensus> {
        let mut nodes = Vec::new();
        for _ in 0..count {
            nodes.push(self.start(PeerId::random()).await);
        }
        nodes[0].initialize().await.unwrap();
        let first = nodes[0].inner.local;
        eventually("the first node leads", || nodes[0].leader() == Some(first)).await;
        for node in &nodes[1..] {
            let peer = node.inner.local;
            nodes[0]
                .add_member(peer, vec![Self::addr(&peer)], true)
                .await
                .unwrap();
        }
        eventually("every node knows every voter and the leader", || {
            nodes.iter().all(|n| {
                n.members().iter().filter(|m| m.voter).count() == count && n.leader() == Some(first)
            })
        })
        .await;
        nodes
    }
}

/// Polls `condition` until it holds, failing the test after 20 seconds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cid(n: u64) -> Cid {
    let digest = Sha256::digest(n.to_be_bytes());
    Cid::new_v1(0x55, Multihash::wrap(0x12, &digest).unwrap())
}

fn pin(n: u64) -> Pin {
    let mut pin = Pin::new(cid(n), -1, -1);
    pin.name = format!("pin {n}");
    pin
}

fn leader_of(nodes: &[Consensus]) -> Option<&Consensus> {
    nodes
        .iter()
        .find(|n| n.status().role == "leader" && n.leader() == Some(n.inner.local))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_on_a_follower_is_read_on_every_node() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(3).await;
    let follower = &nodes[2];
    assert_eq!(follower.status().role, "follower");

    let index = follower.submit(PinsetOp::Pin(pin(1))).await.unwrap();

    // Read-your-writes on the submitting node, without waiting.
    assert_eq!(follower.get(&cid(1)).unwrap(), Some(pin(1)));
    assert!(follower.status().last_applied >= index);
    eventually("every node has the pin", || {
        nodes
            .iter()
            .all(|n| n.get(&cid(1)).unwrap() == Some(pin(1)))
    })
    .await;

    follower.submit(PinsetOp::Unpin(cid(1))).await.unwrap();
    assert_eq!(follower.get(&cid(1)).unwrap(), None);
    eventually("every node dropped the pin", || {
        nodes.iter().all(|n| n.get(&cid(1)).unwrap().is_none())
    })
    .await;

    let status = nodes[0].status();
    assert_eq!(status.voters.len(), 3);
    assert!(status.learners.is_empty());
    for node in &nodes {
        for other in &nodes {
            assert!(node.is_member(&other.inner.local));
        }
        assert!(!node.is_member(&PeerId::random()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up_after_restart() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(3).await;
    nodes[1].submit(PinsetOp::Pin(pin(1))).await.unwrap();

    let old = nodes[0].clone();
    let old_peer = old.inner.local;
    harness.cut(old_peer);
    eventually("the others elect a new leader", || {
        nodes[1..]
            .iter()
            .any(|n| n.leader().is_some_and(|l| l != old_peer) && n.status().role == "leader")
    })
    .await;
    for (n, node) in nodes[1..].iter().enumerate() {
        node.submit(PinsetOp::Pin(pin(10 + n as u64)))
            .await
            .unwrap();
    }

    // Kill the old leader for good, then restart it from its database.
    harness.stop(old).await;
    drop(nodes);
    let restarted = harness.start(old_peer).await;
    eventually("the restarted node catches up", || {
        (10..12).all(|n| restarted.get(&cid(n)).unwrap() == Some(pin(n)))
            && restarted.get(&cid(1)).unwrap() == Some(pin(1))
    })
    .await;
    restarted.submit(PinsetOp::Pin(pin(20))).await.unwrap();
    assert_eq!(restarted.get(&cid(20)).unwrap(), Some(pin(20)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_bring_a_late_member_up_to_date() {
    let config = ConsensusConfig {
        snapshot_after: 20,
        ..test_config()
    };
    let harness = Harness::new(config);
    let nodes = harness.form(1).await;
    let leader = &nodes[0];
    for n in 0..60 {
        leader.submit(PinsetOp::Pin(pin(n))).await.unwrap();
    }
    eventually("the leader snapshots and purges", || {
        let m = leader.metrics();
        m.snapshot.is_some_and(|s| s.index >= 40) && m.purged.is_some()
    })
    .await;
    let logged = {
        let txn = leader.inner.db.begin_read().unwrap();
        txn.open_table(tables::LOG).unwrap().len().unwrap()
    };
    // 20 since the last snapshot plus 10 kept behind it, and a few in flight.
    assert!(logged <= 35, "{logged} log entries kept");

    let late = harness.start(PeerId::random()).await;
    let mut events = late.subscribe();
    let late_peer = late.inner.local;
    leader
        .add_member(late_peer, vec![Harness::addr(&late_peer)], true)
        .await
        .unwrap();
    eventually("the late member has every pin", || {
        late.len().unwrap() == 60
    })
    .await;
    assert!(
        late.metrics().snapshot.is_some(),
        "caught up without a snapshot"
    );
    let mut saw_snapshot = false;
    loop {
        match events.try_recv() {
            Ok(Applied::Snapshot { index }) => {
                assert!(index >= 40);
                saw_snapshot = true;
            }
            Ok(_) => {}
            Err(TryRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(saw_snapshot);
    assert_eq!(late.get(&cid(59)).unwrap(), Some(pin(59)));
    assert!(leader.members().iter().all(|m| m.voter));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_member_shrinks_the_cluster() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(3).await;
    let gone = nodes[2].inner.local;
    // Asked on the other follower: forwarded to the leader.
    nodes[1].remove_member(gone).await.unwrap();
    assert!(!nodes[1].is_member(&gone));
    eventually("the leader dropped the member", || {
        !nodes[0].is_member(&gone) && nodes[0].members().len() == 2
    })
    .await;
    harness.stop(nodes[2].clone()).await;
    nodes[1].submit(PinsetOp::Pin(pin(1))).await.unwrap();
    // Removing a non-member is not an error.
    nodes[0].remove_member(gone).await.unwrap();
    // Removing the last voters one by one stops at the last one.
    nodes[0].remove_member(nodes[1].inner.local).await.unwrap();
    let last = nodes[0].inner.local;
    let err = nodes[0].remove_member(last).await.unwrap_err();
    assert!(matches!(err, ConsensusError::Membership(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_can_remove_itself_and_members_join_through_a_follower() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(3).await;
    let old = nodes[0].inner.local;
    nodes[0].remove_member(old).await.unwrap();
    eventually("the others elect a leader among themselves", || {
        nodes[1..]
            .iter()
            .all(|n| !n.is_member(&old) && n.leader().is_some_and(|l| l != old))
    })
    .await;
    harness.stop(nodes[0].clone()).await;
    nodes[2].submit(PinsetOp::Pin(pin(1))).await.unwrap();

    // Added by asking whichever node is not the leader: forwarded.
    let follower = nodes[1..]
        .iter()
        .find(|n| n.status().role == "follower")
        .unwrap();
    let joiner = harness.join(follower, true).await;
    let peer = joiner.inner.local;
    assert!(follower.members().iter().any(|m| m.peer == peer && m.voter));
    eventually("the joiner has the pinset", || {
        joiner.get(&cid(1)).unwrap() == Some(pin(1))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_wakes_whoever_waits_for_one() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(2).await;
    let follower = nodes[1].clone();
    let seen = follower.membership_index();
    let waiter = tokio::spawn(async move { follower.membership_changed(seen).await });
    let joiner = harness.join(&nodes[0], false).await;
    let peer = joiner.inner.local;
    let now = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the follower saw the new member within 20 s")
        .unwrap();
    assert!(now > seen, "{now} after {seen}");
    assert!(nodes[1].members().iter().any(|m| m.peer == peer));
    // An index that is already stale answers at once.
    assert_eq!(
        nodes[1].membership_changed(seen).await,
        nodes[1].membership_index()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_beyond_max_voters_stay_learners() {
    let config = ConsensusConfig {
        max_voters: 1,
        ..test_config()
    };
    let harness = Harness::new(config);
    let nodes = harness.form(1).await;
    let learner = harness.join(&nodes[0], true).await;
    let peer = learner.inner.local;
    let members = nodes[0].members();
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m.peer == peer && !m.voter));
    eventually("the learner knows it is one", || {
        learner.status().role == "learner" && learner.status().learners == vec![peer]
    })
    .await;
    // A learner can submit too: it forwards to the leader.
    learner.submit(PinsetOp::Pin(pin(1))).await.unwrap();
    assert_eq!(learner.get(&cid(1)).unwrap(), Some(pin(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_that_die_over_time_are_replaced_and_the_quorum_holds() {
    let config = ConsensusConfig {
        max_voters: 3,
        ..test_config()
    };
    let harness = Harness::new(config);
    let mut nodes = harness.form(3).await;
    for _ in 0..3 {
        let learner = harness.join(&nodes[0], true).await;
        nodes.push(learner);
    }
    let leader = nodes[0].clone();
    assert_eq!(leader.status().voters.len(), 3);
    // Two voters of three die one after the other: without rotation the second loses the quorum.
    for (round, dead) in [1usize, 2].into_iter().enumerate() {
        let peer = nodes[dead].inner.local;
        harness.cut(peer);
        let mut written = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while written.is_none() {
            assert!(Instant::now() < deadline, "no rotation in round {round}");
            written = leader.rotate_voters(&[peer].into()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let voters = leader.status().voters;
        assert_eq!(voters.len(), 3, "{voters:?}");
        assert!(!voters.contains(&peer), "a dead voter kept its seat");
        assert!(
            leader.members().iter().any(|m| m.peer == peer && !m.voter),
            "a dead voter stays a member, as learner"
        );
        // Nothing more to do: a second call writes nothing.
        assert_eq!(leader.rotate_voters(&[peer].into()).await, None);
    }
    // The quorum is among the living: changes still commit.
    leader
        .submit(PinsetOp::Pin(pin(7)))
        .await
        .expect("a commit after two voters of three died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_answer() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(1).await;
    let node = &nodes[0];
    let stranger = PeerId::random();
    for garbage in [
        &b""[..],
        b"\x01",
        b"\x01\xff\xff\xff\xff{",
        b"\x01\0\0\0\x02{}",
        b"\x07hello",
    ] {
        let answer = node.handle(stranger, Bytes::copy_from_slice(garbage)).await;
        match Response::decode(&answer).unwrap() {
            Response::Error(WireError::Malformed(_)) => {}
            other => panic!("{garbage:?} answered {other:?}"),
        }
    }
    // A well-formed change from a non-member is refused.
    let body = Request::Submit(PinsetOp::Pin(pin(1))).encode().unwrap();
    match Response::decode(&node.handle(stranger, body).await).unwrap() {
        Response::Error(WireError::NotMember(_)) => {}
        other => panic!("answered {other:?}"),
    }
    assert_eq!(node.get(&cid(1)).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninitialized_node_refuses_submits() {
    let harness = Harness::new(test_config());
    let node = harness.start(PeerId::random()).await;
    assert!(!node.is_initialized().await);
    let err = node.submit(PinsetOp::Pin(pin(1))).await.unwrap_err();
    assert!(matches!(err, ConsensusError::NotInitialized), "{err}");
    node.initialize().await.unwrap();
    assert!(node.is_initialized().await);
    // Twice is fine.
    node.initialize().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_after_drop_keeps_every_acknowledged_pin() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(1).await;
    let peer = nodes[0].inner.local;
    let mut tasks = Vec::new();
    for n in 0..200 {
        let node = nodes[0].clone();
        tasks.push(tokio::spawn(async move {
            node.submit(PinsetOp::Pin(pin(n))).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Dropped, not shut down: the last handle going stops Raft in the background.
    harness.net.nodes.lock().unwrap().clear();
    drop(nodes);

    let node = harness.start(peer).await;
    assert_eq!(node.len().unwrap(), 200);
    for n in 0..200 {
        assert_eq!(node.get(&cid(n)).unwrap(), Some(pin(n)));
    }
    eventually("the node leads again", || node.leader() == Some(peer)).await;
    node.submit(PinsetOp::Pin(pin(200))).await.unwrap();
    assert_eq!(node.len().unwrap(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_a_large_pinset_in_cid_order() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(1).await;
    let node = &nodes[0];
    const PINS: u64 = 100_000;
    for chunk in 0..PINS / 1000 {
        let ops = (chunk * 1000..(chunk + 1) * 1000)
            .map(|n| PinsetOp::Pin(pin(n)))
            .collect();
        node.submit(PinsetOp::Batch(ops)).await.unwrap();
    }
    assert_eq!(node.len().unwrap(), PINS);

    let started = Instant::now();
    let mut seen = 0;
    let mut after: Option<Cid> = None;
    let mut previous: Option<Vec<u8>> = None;
    loop {
        let page = node.list(after.as_ref(), 1000).unwrap();
        if page.is_empty() {
            break;
        }
        for pin in &page {
            let key = pin.cid.to_bytes();
            assert!(previous.as_ref().is_none_or(|p| *p < key), "out of order");
            previous = Some(key);
        }
        seen += page.len() as u64;
        after = page.last().map(|p| p.cid);
    }
    let elapsed = started.elapsed();
    eprintln!("listed {seen} pins in pages of 1000 in {elapsed:?}");
    assert_eq!(seen, PINS);
    assert!(elapsed < Duration::from_secs(2), "listing took {elapsed:?}");
    // Boundaries: a limit of 0, and a start past the last CID.
    assert!(node.list(None, 0).unwrap().is_empty());
    assert!(node.list(after.as_ref(), 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_through_three_peers() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(3).await;
    const SUBMITTERS: u64 = 64;
    const EACH: u64 = 40;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let node = nodes[(s % 3) as usize].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let n = s * EACH + i;
                node.submit(PinsetOp::Pin(pin(n))).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = SUBMITTERS * EACH;
    eprintln!(
        "{total} pins acknowledged in {elapsed:?}: {:.0} pins/s (leader {}, followers forwarding)",
        total as f64 / elapsed.as_secs_f64(),
        leader_of(&nodes)
            .map(|n| n.inner.local.to_string())
            .unwrap_or_default()
    );
    eventually("every node has every pin", || {
        nodes.iter().all(|n| n.len().unwrap() == total)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_changes_in_log_order() {
    let harness = Harness::new(test_config());
    let nodes = harness.form(1).await;
    let node = &nodes[0];
    let mut events = node.subscribe();
    for n in 0..5 {
        node.submit(PinsetOp::Pin(pin(n))).await.unwrap();
    }
    node.submit(PinsetOp::Unpin(cid(0))).await.unwrap();
    let mut ops = Vec::new();
    let mut last_index = 0;
    while ops.len() < 6 {
        match events.recv().await.unwrap() {
            Applied::Op { index, op } => {
                assert!(index > last_index);
                last_index = index;
                ops.push(op);
            }
            Applied::Membership { .. } | Applied::Snapshot { .. } => {}
        }
    }
    assert_eq!(ops[0], PinsetOp::Pin(pin(0)));
    assert_eq!(ops[5], PinsetOp::Unpin(cid(0)));
}
