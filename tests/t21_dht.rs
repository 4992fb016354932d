//! The opt-in Kademlia DHT (`Routing.Type`): three daemons in a line, A - B - C, on loopback.
//! A adds a file and announces its root; C, which was only connected to B, finds A through the
//! DHT, dials it and reads the file. With the default config the routing commands refuse clearly.

#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use std::time::Duration;

use anyhow::Result;
use tessera_tests::{Node, pseudo_random, wait_for};

fn peer_id(node: &Node) -> Result<String> {
    Ok(node.ok(&["id", "-f", "<id>"])?.trim().to_string())
}

fn dht_node(kind: &str) -> Result<Node> {
    let mut n = Node::init()?;
    n.ok(&["config", "Routing.Type", kind])?;
    n.start_daemon()?;
    Ok(n)
}

/// Three daemons of these `Routing.Type`s in a line: A and C each connected to B only.
fn line(kinds: [&str; 3]) -> Result<[Node; 3]> {
    let [a, b, c] = [
        dht_node(kinds[0])?,
        dht_node(kinds[1])?,
        dht_node(kinds[2])?,
    ];
    let b_addr = b.swarm_addr()?;
    a.ok(&["swarm", "connect", &b_addr])?;
    c.ok(&["swarm", "connect", &b_addr])?;
    Ok([a, b, c])
}

/// `tessera cat` on `node` returns exactly `data`.
fn assert_reads(node: &Node, cid: &str, data: &[u8]) -> Result<()> {
    let got = node.run(&["cat", cid])?;
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(got.stdout == data, "bytes read differ from the file added");
    Ok(())
}

/// The peer ids `routing findprovs` prints on `node`, or none if it failed.
fn providers(node: &Node, cid: &str) -> Vec<String> {
    node.ok(&["routing", "findprovs", cid])
        .map(|out| out.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn connected(node: &Node, peer: &str) -> bool {
    node.ok(&["swarm", "peers"])
        .map(|p| p.contains(peer))
        .unwrap_or(false)
}

#[test]
fn a_provider_is_found_through_the_dht_and_read_from() -> Result<()> {
    tessera_tests::use_built_binary!();
    let [a, b, c] = line(["dht", "dht", "dht"])?;
    let (a_id, c_id) = (peer_id(&a)?, peer_id(&c)?);
    assert!(a.ok(&["id"])?.contains("/ipfs/kad/1.0.0"));

    // 1.2 MB: a root and five leaves; only the root is announced (the roots strategy).
    let data = pseudo_random(1_200_000, 41);
    let cid = a.add_bytes(&data)?;
    wait_for(
        "C to find A's provider record through B",
        Duration::from_secs(30),
        || providers(&c, &cid).contains(&a_id).then_some(()),
    )?;
    // Three DHT servers meet through each other's lookups: C may be connected to A already.
    assert_reads(&c, &cid, &data)?;
    assert!(connected(&c, &a_id), "C should have dialled A");
    let found = c.ok(&["routing", "findprovs", &cid, "-n", "1"])?;
    assert_eq!(found.lines().count(), 1, "{found}");

    // C holds the blocks now and announces them on demand; B learns of a second provider.
    c.ok(&["routing", "provide", &cid])?;
    wait_for(
        "B to list C as a provider too",
        Duration::from_secs(30),
        || providers(&b, &cid).contains(&c_id).then_some(()),
    )?;

    // Bad input is refused with a clear message, never a crash.
    let err = c.fails(&["routing", "findprovs", "not-a-cid"])?;
    assert!(err.contains("not a valid CID"), "{err}");
    let err = c.fails(&["routing", "findprovs", &cid, "-n", "0"])?;
    assert!(err.contains("greater than 0"), "{err}");
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let err = c.fails(&["routing", "provide", missing])?;
    assert!(err.contains("not found locally"), "{err}");
    Ok(())
}

/// A block that no connected peer has is looked up in the DHT and fetched from its provider. A
/// and C are DHT clients, which servers never put in their routing tables: C cannot meet A
/// through B's lookups, so only the read's own provider search can connect them.
#[test]
fn a_read_dials_the_provider_the_dht_names() -> Result<()> {
    tessera_tests::use_built_binary!();
    let [a, b, c] = line(["dhtclient", "dhtserver", "dhtclient"])?;
    let a_id = peer_id(&a)?;
    assert!(
        !a.ok(&["id"])?.contains("/ipfs/kad/"),
        "a client does not advertise the DHT"
    );

    let data = pseudo_random(600_000, 42);
    let cid = a.add_bytes(&data)?;
    wait_for(
        "B to hold A's provider record",
        Duration::from_secs(30),
        || providers(&b, &cid).contains(&a_id).then_some(()),
    )?;
    assert!(!connected(&c, &a_id));
    assert_reads(&c, &cid, &data)?;
    assert!(connected(&c, &a_id), "C should have dialled A");
    Ok(())
}

#[test]
fn routing_is_off_by_default_and_says_how_to_turn_it_on() -> Result<()> {
    tessera_tests::use_built_binary!();
    let a = Node::start()?;
    let cid = a.add_bytes(b"hello")?;
    assert!(!a.ok(&["id"])?.contains("/ipfs/kad/"));
    for cmd in [
        vec!["routing", "findprovs", cid.as_str()],
        vec!["routing", "provide", cid.as_str()],
    ] {
        let err = a.fails(&cmd)?;
        assert!(
            err.contains("routing is off") && err.contains("Routing.Type"),
            "{err}"
        );
    }
    let http = reqwest::blocking::Client::new();
    for path in [
        "routing/findprovs",
        "routing/provide",
        "dht/findprovs",
        "dht/provide",
    ] {
        let resp = http
            .post(format!("{}/{path}?arg={cid}", a.api_url()?))
            .send()?;
        assert_eq!(resp.status().as_u16(), 500, "{path}");
        let body: serde_json::Value = resp.json()?;
        assert_eq!(body["Type"], "error", "{path}: {body}");
        assert_eq!(body["Code"], 0, "{path}: {body}");
        let msg = body["Message"].as_str().unwrap_or_default();
        assert!(msg.contains("Routing.Type"), "{path}: {msg}");
    }
    Ok(())
}
