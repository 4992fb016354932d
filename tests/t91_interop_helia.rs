//! tessera daemons and a real Helia 7 (npm, driven by tests/js/helia-peer.mjs) fetch from each other
//! over Bitswap on loopback: Helia's default content (CIDv1, raw leaves, 1 MiB blocks) and Kubo's
//! (CIDv0, 256 KiB), both directions, compared byte for byte.

#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tessera_tests::{JsonPeer, Node, pseudo_random, setup_peers, workspace_root};

/// The Helia peer (tests/js/helia-peer.mjs).
struct Helia;

impl Helia {
    fn start() -> Result<(JsonPeer, Value)> {
        setup_peers()?;
        let mut cmd = Command::new("node");
        cmd.arg(workspace_root().join("tests/js/helia-peer.mjs"))
            .current_dir(workspace_root().join("tests/js"));
        let mut h = JsonPeer::spawn("Helia", cmd)?;
        let id = h.ask(json!({"op": "start"}))?;
        Ok((h, id))
    }
}

fn helia_addr(id: &Value) -> Result<String> {
    let pid = id["id"].as_str().context("id")?;
    let a = id["addrs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .find(|s| s.starts_with("/ip4/127.0.0.1/tcp/"))
        })
        .context("no loopback TCP address")?;
    Ok(if a.contains("/p2p/") {
        a.to_string()
    } else {
        format!("{a}/p2p/{pid}")
    })
}

#[test]
fn tessera_fetches_from_helia_both_profiles() -> Result<()> {
    tessera_tests::use_built_binary!();
    let (mut helia, id) = Helia::start()?;
    let node = Node::start()?;
    node.ok(&["swarm", "connect", &helia_addr(&id)?])?;
    for (profile, size, seed) in [
        ("unixfs-v1-2025", 2 * 1_048_576 + 11, 95u64),
        ("unixfs-v0-2015", 2 * 262_144 + 3, 96),
    ] {
        let data = pseudo_random(size, seed);
        let f = node.dir.path().join(format!("{profile}.bin"));
        std::fs::write(&f, &data)?;
        let cid = helia
            .ask(json!({"op": "add", "path": f, "profile": profile}))?
            .as_str()
            .context("cid")?
            .to_string();
        let got = node.run(&["cat", &cid])?;
        assert!(
            got.status.success(),
            "{profile}: {}\n{}",
            String::from_utf8_lossy(&got.stderr),
            node.log()
        );
        assert!(got.stdout == data, "{profile}: bytes from Helia differ");
    }
    Ok(())
}

#[test]
fn helia_fetches_from_tessera_both_profiles() -> Result<()> {
    tessera_tests::use_built_binary!();
    let (mut helia, _) = Helia::start()?;
    let node = Node::start()?;
    let v1 = pseudo_random(3 * 1_048_576 + 5, 97);
    let v0 = pseudo_random(3 * 262_144 + 5, 98);
    let f1 = node.dir.path().join("v1.bin");
    let f0 = node.dir.path().join("v0.bin");
    std::fs::write(&f1, &v1)?;
    std::fs::write(&f0, &v0)?;
    let c1 = node
        .ok(&[
            "add",
            "-Q",
            "--cid-version",
            "1",
            "--chunker",
            "size-1048576",
            f1.to_str().unwrap(),
        ])?
        .trim()
        .to_string();
    let c0 = node
        .ok(&["add", "-Q", f0.to_str().unwrap()])?
        .trim()
        .to_string();
    helia.ask(json!({"op": "connect", "addr": node.swarm_addr()?}))?;
    for (cid, data) in [(&c1, &v1), (&c0, &v0)] {
        let dest = node.dir.path().join(format!("helia-{cid}"));
        helia
            .ask(json!({"op": "cat", "cid": cid, "dest": dest, "timeout_ms": 60000}))
            .with_context(|| format!("Helia fetching {cid}; tessera log:\n{}", node.log()))?;
        assert!(
            std::fs::read(&dest)? == *data,
            "Helia got different bytes for {cid}"
        );
    }
    Ok(())
}
