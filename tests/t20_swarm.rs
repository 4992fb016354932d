//! Two and three tessera daemons on one machine: connect, exchange blocks over Bitswap, peering.

#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use std::time::Duration;

use anyhow::Result;
use tessera_tests::{Node, pseudo_random, wait_for};

fn peer_id(node: &Node) -> Result<String> {
    Ok(node.ok(&["id", "-f", "<id>"])?.trim().to_string())
}

#[test]
fn cat_and_pin_fetch_from_a_connected_tessera() -> Result<()> {
    tessera_tests::use_built_binary!();
    let a = Node::start()?;
    let b = Node::start()?;
    // 1.2 MB: five leaves and a root, so the fetch walks a real tree.
    let data = pseudo_random(1_200_000, 21);
    let f = a.dir.path().join("f");
    std::fs::write(&f, &data)?;
    let cid = a
        .ok(&["add", "-Q", f.to_str().unwrap()])?
        .trim()
        .to_string();

    // Not connected: b has nobody to ask and says so at once.
    let err = b.fails(&["cat", &cid])?;
    assert!(err.contains("not found"), "{err}");

    let out = b.ok(&["swarm", "connect", &a.swarm_addr()?])?;
    assert!(out.contains("success"), "{out}");
    let a_id = peer_id(&a)?;
    assert!(b.ok(&["swarm", "peers"])?.contains(&a_id));

    let got = b.run(&["cat", &cid])?;
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(got.stdout == data, "fetched bytes differ");

    // A directory fetched whole by pin add, then served from b's own store.
    let site = a.dir.path().join("site");
    std::fs::create_dir_all(site.join("d"))?;
    std::fs::write(site.join("d/x.bin"), pseudo_random(700_000, 22))?;
    std::fs::write(site.join("y.txt"), b"y")?;
    let out = a.ok(&["add", "-r", "-Q", site.to_str().unwrap()])?;
    let root = out.trim().to_string();
    b.ok(&["pin", "add", &root])?;
    let local = b.ok(&["refs", "local"])?;
    for r in a.ok(&["refs", "-r", &root])?.lines() {
        assert!(local.contains(r), "{r} was not fetched by pin add");
    }
    let stat = b.ok(&["bitswap", "stat"])?;
    assert!(stat.contains(&a_id), "partners should list {a_id}: {stat}");
    let received: u64 = stat
        .lines()
        .find_map(|l| l.trim().strip_prefix("blocks received: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        received >= 6,
        "b fetched at least the file's 6 blocks: {stat}"
    );

    b.ok(&["swarm", "disconnect", &format!("/p2p/{a_id}")])
        .or_else(|_| b.ok(&["swarm", "disconnect", &a_id]))?;
    wait_for("the disconnect", Duration::from_secs(10), || {
        b.ok(&["swarm", "peers"])
            .ok()
            .filter(|p| !p.contains(&a_id))
    })?;
    // What b pinned stays readable without a.
    assert_eq!(b.ok(&["cat", &format!("{root}/y.txt")])?, "y");
    Ok(())
}

#[test]
fn peering_peers_are_kept_connected() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut a = Node::start()?;
    let a_id = peer_id(&a)?;
    let addr = a.swarm_addr()?;
    let base = addr.split("/p2p/").next().unwrap().to_string();
    let mut b = Node::init()?;
    let peering = serde_json::json!([{ "ID": a_id, "Addrs": [base] }]).to_string();
    b.ok(&["config", "--json", "Peering.Peers", &peering])?;
    b.start_daemon()?;
    wait_for(
        "b to connect to its peering peer",
        Duration::from_secs(30),
        || b.ok(&["swarm", "peers"]).ok().filter(|p| p.contains(&a_id)),
    )?;
    // a restarts on the same port: b reconnects by itself.
    a.stop()?;
    wait_for("b to notice", Duration::from_secs(30), || {
        b.ok(&["swarm", "peers"])
            .ok()
            .filter(|p| !p.contains(&a_id))
    })?;
    let port = base.rsplit('/').next().unwrap().to_string();
    a.ok(&[
        "config",
        "--json",
        "Addresses.Swarm",
        &format!(r#"["/ip4/127.0.0.1/tcp/{port}"]"#),
    ])?;
    a.start_daemon()?;
    wait_for("b to reconnect", Duration::from_secs(60), || {
        b.ok(&["swarm", "peers"]).ok().filter(|p| p.contains(&a_id))
    })?;
    b.stop()?;
    Ok(())
}
