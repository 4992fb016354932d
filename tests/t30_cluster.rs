//! The cluster peer across real `tessera daemon` processes on loopback: joining with the secret,
//! Raft failover, catching up after a restart, refusal of strangers, and no acknowledged pin lost to
//! a kill -9.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;
use tessera_tests::{Node, wait_for};

/// Cluster timings short enough for tests, long enough for a loaded 2-core CI machine.
fn fast_timings(n: &Node) -> Result<()> {
    n.ok(&["config", "Cluster.MetricInterval", "500ms"])?;
    n.ok(&["config", "Cluster.MetricTTL", "3s"])?;
    n.ok(&["config", "Cluster.ReallocateAfter", "2s"])?;
    n.ok(&["config", "Cluster.Heartbeat", "150ms"])?;
    n.ok(&["config", "Cluster.ElectionTimeout", "1s"])?;
    Ok(())
}

/// Starts a cluster of `n` peers: the first founds it, the others join through it.
fn start_cluster(n: usize) -> Result<Vec<Node>> {
    start_cluster_with(n, &[])
}

/// The same, with extra config (JSON values) on the founder (which leads while the others join).
fn start_cluster_with(n: usize, founder_config: &[(&str, &str)]) -> Result<Vec<Node>> {
    let mut first = Node::init()?;
    fast_timings(&first)?;
    for (k, v) in founder_config {
        first.ok(&["config", "--json", k, v])?;
    }
    first.start_daemon()?;
    let secret = first.ok(&["config", "Cluster.Secret"])?.trim().to_string();
    let addr = first.swarm_addr()?;
    let mut peers = vec![first];
    for _ in 1..n {
        let mut p = Node::init_with(&["--join", &addr, "--secret", &secret])?;
        fast_timings(&p)?;
        p.start_daemon()?;
        peers.push(p);
    }
    wait_members(&peers, n)?;
    tessera_tests::wait_cluster_metrics(&peers, n)?;
    Ok(peers)
}

/// Waits until every running peer lists `n` members, all answering.
fn wait_members(peers: &[Node], n: usize) -> Result<()> {
    for p in peers.iter().filter(|p| p.is_running()) {
        wait_for(
            &format!("{n} members answering"),
            Duration::from_secs(60),
            || {
                let list = p.rest_lines("/peers").ok()?;
                let ok = list
                    .iter()
                    .filter(|m| m["error"].as_str().unwrap_or("").is_empty())
                    .count();
                (list.len() == n && ok == n).then_some(())
            },
        )?;
    }
    Ok(())
}

fn leader(peers: &[Node]) -> Option<usize> {
    peers
        .iter()
        .position(|p| p.is_running() && p.prometheus("tessera_cluster_raft_is_leader") == Some(1.0))
}

/// Statuses of `cid` as `peer` gathers them from every member: peer id -> status.
fn statuses(peer: &Node, cid: &str) -> Result<Vec<(String, String)>> {
    let g = peer.rest_get(&format!("/pins/{cid}"))?;
    let Some(map) = g["peer_map"].as_object() else {
        bail!("no peer_map in {g}");
    };
    Ok(map
        .iter()
        .map(|(p, i)| (p.clone(), i["status"].as_str().unwrap_or("").to_string()))
        .collect())
}

fn wait_pinned_on(peer: &Node, cid: &str, count: usize) -> Result<()> {
    wait_for(
        &format!("{cid} pinned on {count} peers"),
        Duration::from_secs(60),
        || {
            let s = statuses(peer, cid).ok()?;
            (s.iter().filter(|(_, st)| st == "pinned").count() >= count).then_some(())
        },
    )
}

fn rest_post(n: &Node, path: &str) -> Result<Value> {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}{path}", n.cluster_url()?))
        .send()?;
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() {
        bail!("POST {path}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn three_peers_pin_everywhere_and_survive_the_leader() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut peers = start_cluster(3)?;
    // `pin add` through the Kubo path of a follower becomes a cluster pin held by every peer.
    let cid = peers[0].add_bytes(&tessera_tests::pseudo_random(300_000, 1))?;
    peers[1].ok(&["pin", "add", &cid])?;
    wait_pinned_on(&peers[2], &cid, 3)?;
    let out = peers[2].ok(&["status", &cid])?;
    assert_eq!(out.matches(": PINNED").count(), 3, "{out}");
    let listed = peers[2].ok(&["pin", "ls", "--cluster", "-q"])?;
    assert!(listed.contains(&cid));
    // Every peer's metrics reach every other.
    wait_for("freespace of 3 peers", Duration::from_secs(30), || {
        let out = peers[1].ok(&["health", "metrics", "freespace"]).ok()?;
        (out.lines()
            .filter(|l| l.contains("freespace:") && !l.contains("EXPIRED"))
            .count()
            == 3)
            .then_some(())
    })?;
    let graph = peers[0].ok(&["health", "graph"])?;
    assert_eq!(graph.matches(" -> ").count(), 3, "{graph}");

    // Kill the leader: another one is elected and pins keep working.
    let old = wait_for("a leader", Duration::from_secs(30), || leader(&peers))?;
    peers[old].kill()?;
    let new = wait_for("a new leader", Duration::from_secs(30), || {
        leader(&peers).filter(|l| *l != old)
    })?;
    let survivor = (0..3).find(|i| *i != old && *i != new).unwrap();
    let cid2 = peers[new].add_bytes(b"after the leader died")?;
    peers[survivor].ok(&[
        "pin",
        "add",
        &cid2,
        "--replication-min",
        "1",
        "--replication-max",
        "2",
        "--name",
        "after",
    ])?;
    wait_pinned_on(&peers[survivor], &cid2, 2)?;
    let pin = peers[new].rest_get(&format!("/allocations/{cid2}"))?;
    assert_eq!(pin["name"], "after");
    assert_eq!(
        pin["allocations"].as_array().map(Vec::len),
        Some(2),
        "{pin}"
    );
    Ok(())
}

#[test]
fn a_stopped_peer_catches_up_and_unpins() -> Result<()> {
    tessera_tests::use_built_binary!();
    // Two voters; the third peer joins as a learner (IPFS Cluster's follower).
    let mut peers = start_cluster_with(3, &[("Cluster.MaxVoters", "2")])?;
    wait_for("one learner", Duration::from_secs(30), || {
        (peers[0].prometheus("tessera_cluster_learners") == Some(1.0)
            && peers[0].prometheus("tessera_cluster_voters") == Some(2.0))
        .then_some(())
    })?;
    let a = peers[0].add_bytes(b"first while c is down")?;
    let b = peers[0].add_bytes(b"second while c is down")?;
    let gone = peers[0].add_bytes(b"pinned then removed while c is down")?;
    peers[0].ok(&["pin", "add", &gone])?;
    wait_pinned_on(&peers[0], &gone, 3)?;
    peers[2].stop()?;
    peers[0].ok(&["pin", "add", &a])?;
    peers[1].ok(&["pin", "add", &b])?;
    peers[1].ok(&["pin", "rm", &gone])?;
    peers[2].start_daemon()?;
    for cid in [&a, &b] {
        wait_for("the restarted peer to pin", Duration::from_secs(60), || {
            let out = peers[2].ok(&["status", "--local", cid]).ok()?;
            out.contains(": PINNED").then_some(())
        })?;
    }
    let pins = peers[2].ok(&["pin", "ls", "--cluster", "-q"])?;
    assert!(
        pins.contains(&a) && pins.contains(&b) && !pins.contains(&gone),
        "{pins}"
    );
    // The state export lists both pins; import on a fresh cluster re-creates them.
    let exported = peers[2].ok(&["state", "export"])?;
    assert_eq!(exported.lines().count(), 2, "{exported}");
    let fresh = Node::start()?;
    let file = fresh.dir.path().join("pins.jsonl");
    std::fs::write(&file, &exported)?;
    fresh.ok(&["state", "import", file.to_str().unwrap()])?;
    let imported = fresh.ok(&["pin", "ls", "--cluster", "-q"])?;
    assert!(imported.contains(&a) && imported.contains(&b), "{imported}");
    // A pin with an expiry goes away by itself.
    let brief = peers[0].add_bytes(b"expires soon")?;
    peers[0].ok(&["pin", "add", &brief, "--expire-in", "1s", "--name", "brief"])?;
    wait_for("the expired pin to go", Duration::from_secs(30), || {
        let pins = peers[1].ok(&["pin", "ls", "--cluster", "-q"]).ok()?;
        (!pins.contains(&brief)).then_some(())
    })?;
    Ok(())
}

#[test]
fn wrong_secret_cannot_join() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut a = Node::init()?;
    fast_timings(&a)?;
    a.start_daemon()?;
    let addr = a.swarm_addr()?;
    let wrong = "11".repeat(32);
    let mut b = Node::init_with(&["--join", &addr, "--secret", &wrong])?;
    fast_timings(&b)?;
    b.start_daemon()?;
    wait_for("the join to be refused", Duration::from_secs(30), || {
        b.log()
            .contains("does not know this cluster's secret")
            .then_some(())
    })?;
    let members = a.rest_lines("/peers")?;
    assert_eq!(members.len(), 1, "{members:?}");
    assert!(a.log().contains("refused a cluster join"), "{}", a.log());
    Ok(())
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_pin() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut peers = start_cluster(3)?;
    // 1000 distinct small files, so that every pin has real content to fetch.
    let dir = peers[0].dir.path().join("burst");
    std::fs::create_dir_all(&dir)?;
    for i in 0..1000 {
        std::fs::write(dir.join(format!("f{i}")), format!("burst file {i}"))?;
    }
    let out = peers[0].ok(&["add", "-r", "-q", dir.to_str().unwrap()])?;
    let mut cids: Vec<String> = out.lines().map(str::to_string).collect();
    cids.pop(); // the directory itself
    assert_eq!(cids.len(), 1000);
    let url = peers[1].cluster_url()?;
    let victim = 2;
    let acknowledged = std::sync::Mutex::new(Vec::new());
    let sent = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for chunk in cids.chunks(125) {
            let url = &url;
            let acknowledged = &acknowledged;
            let sent = &sent;
            s.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for cid in chunk {
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let r = http
                        .post(format!(
                            "{url}/pins/{cid}?replication-min=1&replication-max=2"
                        ))
                        .send();
                    if let Ok(r) = r
                        && r.status().is_success()
                    {
                        acknowledged.lock().unwrap().push(cid.clone());
                    }
                }
            });
        }
        // Kill a peer in the middle of the burst.
        wait_for("half the burst sent", Duration::from_secs(120), || {
            (sent.load(std::sync::atomic::Ordering::Relaxed) >= 500).then_some(())
        })
        .unwrap();
        peers[victim].kill().unwrap();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    println!(
        "faults injected: 1 kill -9; pins acknowledged: {}",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= 500,
        "only {} pins acknowledged",
        acknowledged.len()
    );
    peers[victim].start_daemon()?;
    for (i, p) in peers.iter().enumerate() {
        let listed: HashSet<String> =
            wait_for("the pinset to settle", Duration::from_secs(60), || {
                let v = p.rest_lines("/allocations").ok()?;
                let set: HashSet<String> = v
                    .iter()
                    .filter_map(|p| {
                        p["cid"]["/"]
                            .as_str()
                            .or(p["cid"].as_str())
                            .map(str::to_string)
                    })
                    .collect();
                acknowledged.iter().all(|c| set.contains(c)).then_some(set)
            })?;
        let lost = acknowledged.iter().filter(|c| !listed.contains(*c)).count();
        println!(
            "peer {i}: {} pins listed, {lost} acknowledged pins lost",
            listed.len()
        );
        assert_eq!(lost, 0);
    }
    Ok(())
}

#[test]
fn five_peers_replicate_and_reallocate() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut peers = start_cluster(5)?;
    let cid = peers[0].add_bytes(&tessera_tests::pseudo_random(600_000, 5))?;
    let pin = rest_post(
        &peers[3],
        &format!("/pins/{cid}?replication-min=2&replication-max=3&name=five"),
    )?;
    let allocs: Vec<String> = pin["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(allocs.len(), 3, "{pin}");
    wait_pinned_on(&peers[0], &cid, 3)?;
    // Kill one holder that is not peer 0 (which holds the content): after ReallocateAfter, the pin
    // moves to a live peer and is pinned on 3 peers again.
    let ids: Vec<String> = peers
        .iter()
        .map(|p| {
            p.rest_get("/id").unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let victim = (1..5).find(|i| allocs.contains(&ids[*i])).unwrap();
    peers[victim].kill()?;
    let dead = ids[victim].clone();
    let observer = (1..5).find(|i| *i != victim).unwrap();
    wait_for(
        "re-allocation away from the dead peer",
        Duration::from_secs(60),
        || {
            let p = peers[observer]
                .rest_get(&format!("/allocations/{cid}"))
                .ok()?;
            let a: Vec<&str> = p["allocations"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            (a.len() == 3 && !a.contains(&dead.as_str())).then_some(())
        },
    )?;
    wait_for("3 live holders pinned", Duration::from_secs(60), || {
        let s = statuses(&peers[observer], &cid).ok()?;
        (s.iter()
            .filter(|(p, st)| st == "pinned" && *p != dead)
            .count()
            >= 3)
            .then_some(())
    })?;
    // The dead peer can be removed from the cluster.
    peers[observer].ok(&["peers", "rm", &dead])?;
    wait_members(&peers, 4)?;
    // Killing the leader leaves a quorum of the remaining voters.
    let old = wait_for("a leader", Duration::from_secs(30), || leader(&peers))?;
    peers[old].kill()?;
    let new = wait_for("a new leader", Duration::from_secs(30), || {
        leader(&peers).filter(|l| *l != old)
    })?;
    let cid3 = peers[new].add_bytes(b"after two peers died")?;
    rest_post(
        &peers[new],
        &format!("/pins/{cid3}?replication-min=1&replication-max=2"),
    )?;
    wait_pinned_on(&peers[new], &cid3, 2)?;
    // A pin that cannot get its minimum is refused clearly.
    let err = rest_post(
        &peers[new],
        &format!("/pins/{cid}?replication-min=5&replication-max=5"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not enough peers"), "{err}");
    Ok(())
}

#[test]
fn a_strangers_stream_on_a_cluster_protocol_is_closed_unanswered() -> Result<()> {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;

    tessera_tests::use_built_binary!();
    let mut a = Node::init()?;
    a.start_daemon()?;
    let addr: libp2p::Multiaddr = a.swarm_addr()?.parse()?;
    let peer = addr
        .iter()
        .find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .unwrap();
    let rt = tokio::runtime::Runtime::new()?;
    let answer: Vec<u8> = rt.block_on(async {
        // A real libp2p peer with its own identity, not a member of a's cluster.
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .build();
        let mut control = swarm.behaviour().new_control();
        swarm.dial(addr.clone())?;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                    break;
                }
            }
        })
        .await?;
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let mut stream = control
            .open_stream(
                peer,
                libp2p::StreamProtocol::new("/tessera/cluster/rpc/1.0.0"),
            )
            .await?;
        // A well-formed request: frame kind 1 (JSON), "Identity".
        let body = b"\x01\"Identity\"";
        stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await?;
        anyhow::Ok(buf)
    })?;
    assert!(answer.is_empty(), "a stranger got an answer: {answer:?}");
    wait_for("the refusal in the log", Duration::from_secs(10), || {
        a.log()
            .contains("refused a cluster stream from a peer that is not a member")
            .then_some(())
    })?;
    Ok(())
}

#[test]
fn the_ipfs_cluster_js_client_works_unchanged() -> Result<()> {
    tessera_tests::use_built_binary!();
    tessera_tests::setup_peers()?;
    let peers = start_cluster(2)?;
    let out = std::process::Command::new("node")
        .arg(tessera_tests::workspace_root().join("tests/js/cluster-client-check.mjs"))
        .arg(peers[1].cluster_url()?)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "@nftstorage/ipfs-cluster checks failed:\n{stdout}\n{stderr}\ndaemon logs:\n{}\n{}",
        peers[0].log(),
        peers[1].log()
    );
    let summary: Value = serde_json::from_str(stdout.trim())?;
    println!("{summary}");
    Ok(())
}
