//! Bitswap against a real Helia 7 (npm, driven by tests/js/helia-peer.mjs):
//! Helia fetches a file DAG that tessera serves, and tessera fetches a file
//! that Helia imported. Content is compared byte for byte.

mod bitswap_support;

use std::time::Duration;

use anyhow::{Context as _, Result};
use bitswap_support::{
    build_file_dag, fetch_file, init_tracing, pseudo_random, setup_peers, spawn_node, start_helia,
};
use serde_json::json;
use tessera_bitswap_ec::bitswap::{Config, MemoryBlocks};
use tessera_blockstore::Cid;

async fn round_trip(v1: bool, size: usize, seed: u64) -> Result<()> {
    init_tracing();
    setup_peers().await?;
    let dir = tempfile::tempdir()?;
    let content = pseudo_random(seed, size);
    let (root, blocks) = build_file_dag(&content, v1);
    let store = MemoryBlocks::new();
    for b in blocks {
        store.insert(b);
    }
    let a = spawn_node(Config::default(), store).await?;
    let mut helia = start_helia(dir.path()).await?;
    let (helia_id, helia_addr) = helia.address().await?;

    // Helia dials tessera and fetches the DAG tessera serves.
    helia
        .call(
            json!({"op": "connect", "addr": format!("{}/p2p/{}", a.addr, a.peer)}),
            Duration::from_secs(30),
        )
        .await?;
    a.wait_peer(helia_id).await?;
    let dest = dir.path().join("from-tessera");
    let r = helia
        .call(
            json!({"op": "cat", "cid": root.to_string(), "dest": dest, "timeout_ms": 60_000}),
            Duration::from_secs(90),
        )
        .await?;
    assert_eq!(r["bytes"].as_u64(), Some(content.len() as u64));
    assert!(
        std::fs::read(&dest)? == content,
        "Helia got the file tessera served, byte for byte"
    );

    // tessera fetches a file Helia imported (profile picks v0/256 KiB or v1/1 MiB).
    let other = pseudo_random(seed + 1, size);
    let path = dir.path().join("helia-added");
    std::fs::write(&path, &other)?;
    let profile = if v1 {
        "unixfs-v1-2025"
    } else {
        "unixfs-v0-2015"
    };
    let cid = helia
        .call(
            json!({"op": "add", "path": path, "profile": profile}),
            Duration::from_secs(60),
        )
        .await?;
    let cid: Cid = cid.as_str().context("no CID")?.parse()?;
    assert_eq!(cid.version() == cid::Version::V1, v1);
    let b = spawn_node(Config::default(), tessera_bitswap_ec::bitswap::NoBlocks).await?;
    b.dial_addr(helia_addr).await?;
    b.wait_peer(helia_id).await?;
    let session = b.handle.session().with_timeout(Duration::from_secs(60));
    let got = fetch_file(&session, cid).await?;
    assert!(
        got == other,
        "tessera fetched a Helia-imported file, byte for byte"
    );

    helia
        .call(json!({"op": "stop"}), Duration::from_secs(30))
        .await?;
    Ok(())
}

/// CIDv0, dag-pb leaves of 256 KiB; 3 MiB + 1 byte so the last leaf holds
/// a single byte.
#[tokio::test]
async fn helia_and_tessera_exchange_cidv0_256k_blocks() -> Result<()> {
    round_trip(false, 3 * (1 << 20) + 1, 31).await
}

/// CIDv1, raw leaves of 1 MiB (Helia's default); 5 MiB + 1 byte.
#[tokio::test]
async fn helia_and_tessera_exchange_cidv1_1m_blocks() -> Result<()> {
    round_trip(true, 5 * (1 << 20) + 1, 41).await
}
