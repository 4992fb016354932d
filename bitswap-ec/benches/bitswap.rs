//! Bitswap transfer speed between two in-process swarms over loopback TCP +
//! Noise + Yamux (the same stack a node runs), in MiB/s.
//!
//! A plain bench binary rather than criterion: one transfer of hundreds of
//! MiB is the measurement, repeated a few times, not a microsecond loop.
//!
//! ```text
//! cargo bench -p tessera-bitswap-ec --bench bitswap
//! TESSERA_BENCH_MIB=256,1024 TESSERA_BENCH_RUNS=3 cargo bench -p tessera-bitswap-ec --bench bitswap
//! ```
//!
//! Each size is fetched with 256 KiB blocks (Kubo's chunks) and 1 MiB
//! blocks (Helia's), twice: into memory (hashed and dropped: the protocol
//! alone) and into a file, appended and `fdatasync`ed every 16 MiB and at
//! the end (what the blockstore's pack files do): the clock stops when the
//! last byte is durable. Reference on the 2-core test machine: Kubo -> Kubo
//! 22-36 MiB/s; the bare transport about 500 MiB/s.
//!
//! With `TESSERA_BENCH_KUBO=1` the same sizes also go Kubo -> Kubo,
//! Kubo -> tessera and tessera -> Kubo, with a real Kubo 0.22 (installed by
//! `tests/setup-peers.sh`), as UnixFS files (CIDv0, 256 KiB leaves, Kubo's
//! defaults), so that all four figures come from one run on one machine.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, SwarmBuilder, noise, tcp};
use tessera_bitswap_ec::bitswap::{self, BlockProvider, Handle, ProviderError};
use tessera_blockstore::{Block, Cid, RAW};

// The interop tests' helpers: Kubo driver, in-process nodes, UnixFS DAGs.
// The module allows its own dead code.
#[path = "../tests/bitswap_support/mod.rs"]
mod support;

/// Serves `count` distinct blocks without holding them: block `i` is `i` as
/// 8 bytes followed by a shared tail, built on request (one memcpy).
#[derive(Clone)]
struct Generated {
    tail: Bytes,
    index: Arc<HashMap<Cid, u64>>,
}

impl Generated {
    fn new(count: u64, block_size: usize) -> (Self, Vec<Cid>) {
        let tail: Vec<u8> = (0..block_size - 8).map(|i| (i * 31 + 7) as u8).collect();
        let tail = Bytes::from(tail);
        let mut index = HashMap::new();
        let mut cids = Vec::new();
        for i in 0..count {
            let b = Block::from_data_v1(RAW, build(&tail, i));
            index.insert(*b.cid(), i);
            cids.push(*b.cid());
        }
        (
            Self {
                tail,
                index: Arc::new(index),
            },
            cids,
        )
    }
}

fn build(tail: &Bytes, i: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(tail.len() + 8);
    b.put_u64(i);
    b.extend_from_slice(tail);
    b.freeze()
}

impl BlockProvider for Generated {
    async fn has(&self, cid: Cid) -> Result<bool, ProviderError> {
        Ok(self.index.contains_key(&cid))
    }

    async fn get(&self, cid: Cid) -> Result<Option<Bytes>, ProviderError> {
        Ok(self.index.get(&cid).map(|i| build(&self.tail, *i)))
    }
}

fn swarm(
    behaviour: bitswap::Behaviour,
) -> Result<Swarm<bitswap::Behaviour>, Box<dyn std::error::Error>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap::yamux_config,
        )?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build())
}

async fn listen(
    s: &mut Swarm<bitswap::Behaviour>,
) -> Result<Multiaddr, Box<dyn std::error::Error>> {
    s.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
            return Ok(address);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Sink {
    Memory,
    Durable,
}

/// One transfer; returns MiB/s.
async fn transfer(
    total_mib: u64,
    block_size: usize,
    sink: Sink,
) -> Result<f64, Box<dyn std::error::Error>> {
    let count = total_mib * (1 << 20) / block_size as u64;
    let (provider, cids) = Generated::new(count, block_size);
    let (server_b, _server_handle) = bitswap::Behaviour::new(bitswap::Config::default(), provider)?;
    let (client_b, client) =
        bitswap::Behaviour::new(bitswap::Config::default(), bitswap::NoBlocks)?;
    let mut server = swarm(server_b)?;
    let mut fetcher = swarm(client_b)?;
    let addr = listen(&mut server).await?;
    let server_peer = *server.local_peer_id();
    fetcher.dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_peer)))?;
    let s1 = tokio::spawn(async move {
        loop {
            server.select_next_some().await;
        }
    });
    let s2 = tokio::spawn(async move {
        loop {
            fetcher.select_next_some().await;
        }
    });
    wait_connected(&client).await?;

    let dir = tempfile::tempdir()?;
    // 64 MiB of blocks may wait for the disk while it syncs.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>((64 << 20) / block_size);
    let path = dir.path().join("pack");
    let writer = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut f = std::fs::File::create(&path)?;
        let (mut since_sync, mut written) = (0usize, 0u64);
        while let Some(data) = rx.blocking_recv() {
            f.write_all(&data)?;
            since_sync += data.len();
            written += data.len() as u64;
            if since_sync >= 16 << 20 {
                f.sync_data()?;
                since_sync = 0;
            }
        }
        f.sync_data()?;
        Ok(written)
    });

    let start = Instant::now();
    let session = client.session().with_timeout(Duration::from_secs(60));
    let mut stream = session.get_many(cids);
    let mut bytes = 0u64;
    while let Some(block) = stream.next().await {
        let block = block?;
        bytes += block.data().len() as u64;
        if sink == Sink::Durable {
            tx.send(block.data().clone())
                .await
                .map_err(|_| "writer thread stopped")?;
        }
    }
    drop(tx);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| "writer thread panicked")??;
    let secs = start.elapsed().as_secs_f64();
    if sink == Sink::Durable && written != bytes {
        return Err(format!("wrote {written} of {bytes} bytes").into());
    }
    s1.abort();
    s2.abort();
    Ok(bytes as f64 / (1 << 20) as f64 / secs)
}

async fn wait_connected(h: &Handle) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.stats().await?.peers.is_empty() {
        if Instant::now() > deadline {
            return Err("swarms did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn mib_per_s(bytes: usize, since: Instant) -> f64 {
    bytes as f64 / (1 << 20) as f64 / since.elapsed().as_secs_f64()
}

/// Kubo -> Kubo, Kubo -> tessera, tessera -> Kubo for one size; MiB/s each.
async fn kubo_legs(mib: u64) -> Result<[f64; 3], Box<dyn std::error::Error>> {
    use serde_json::json;
    let long = Duration::from_secs(1800);
    support::setup_peers().await?;
    let dir = tempfile::tempdir()?;
    let sub = |name: &str| -> std::io::Result<std::path::PathBuf> {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    };
    let size = (mib as usize) << 20;
    let content = support::pseudo_random(mib, size);
    let file = dir.path().join("file");
    std::fs::write(&file, &content)?;

    let mut k1 = support::start_kubo(&sub("k1")?).await?;
    let cid = k1.call(json!({"op": "add", "path": file}), long).await?;
    let cid_str = cid.as_str().ok_or("Kubo gave no CID")?.to_string();
    let (_, k1_addr) = k1.address().await?;

    // Kubo -> Kubo.
    let mut k2 = support::start_kubo(&sub("k2")?).await?;
    k2.call(json!({"op": "connect", "addr": k1_addr.to_string()}), long)
        .await?;
    let out = dir.path().join("k2-out");
    let t = Instant::now();
    k2.call(json!({"op": "download", "cid": cid_str, "dest": out}), long)
        .await?;
    let kubo_kubo = mib_per_s(size, t);
    if std::fs::read(&out)? != content {
        return Err("Kubo -> Kubo: content differs".into());
    }
    k2.call(json!({"op": "stop"}), long).await?;
    drop(k2);

    // Kubo -> tessera.
    let node = support::spawn_node(bitswap::Config::default(), bitswap::NoBlocks).await?;
    node.dial_addr(k1_addr.clone()).await?;
    let kubo_id = k1.address().await?.0;
    node.wait_peer(kubo_id).await?;
    let session = node.handle.session().with_timeout(Duration::from_secs(120));
    let t = Instant::now();
    let got = support::fetch_file(&session, cid_str.parse()?).await?;
    let kubo_tessera = mib_per_s(size, t);
    if got != content {
        return Err("Kubo -> tessera: content differs".into());
    }
    drop((got, session, node));
    k1.call(json!({"op": "stop"}), long).await?;
    drop(k1);

    // tessera -> Kubo.
    let (root, blocks) = support::build_file_dag(&content, false);
    let store = bitswap::MemoryBlocks::new();
    for b in blocks {
        store.insert(b);
    }
    let server = support::spawn_node(bitswap::Config::default(), store).await?;
    let mut k3 = support::start_kubo(&sub("k3")?).await?;
    k3.call(
        json!({"op": "connect", "addr": format!("{}/p2p/{}", server.addr, server.peer)}),
        long,
    )
    .await?;
    let out = dir.path().join("k3-out");
    let t = Instant::now();
    k3.call(
        json!({"op": "download", "cid": root.to_string(), "dest": out}),
        long,
    )
    .await?;
    let tessera_kubo = mib_per_s(size, t);
    if std::fs::read(&out)? != content {
        return Err("tessera -> Kubo: content differs".into());
    }
    k3.call(json!({"op": "stop"}), long).await?;
    Ok([kubo_kubo, kubo_tessera, tessera_kubo])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // of the kind and only wants to know the binary runs: keep it short.
    let benching = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<u64> = std::env::var("TESSERA_BENCH_MIB")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![if benching { 256 } else { 8 }]);
    let runs: usize = std::env::var("TESSERA_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 3 } else { 1 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("bitswap tessera -> tessera, loopback TCP + Noise + Yamux, {runs} run(s) each, MiB/s");
    println!(
        "{:>8} {:>8} {:>8} {:>30}",
        "MiB", "block", "sink", "median (all runs)"
    );
    for &mib in &sizes {
        for block_size in [256 * 1024, 1 << 20] {
            for sink in [Sink::Memory, Sink::Durable] {
                let mut figures = Vec::new();
                for _ in 0..runs {
                    figures.push(rt.block_on(transfer(mib, block_size, sink))?);
                }
                let mut sorted = figures.clone();
                sorted.sort_by(f64::total_cmp);
                let median = sorted[sorted.len() / 2];
                let all: Vec<String> = figures.iter().map(|f| format!("{f:.0}")).collect();
                println!(
                    "{:>8} {:>7}K {:>8} {:>12.1} ({})",
                    mib,
                    block_size / 1024,
                    if sink == Sink::Memory {
                        "memory"
                    } else {
                        "fsync"
                    },
                    median,
                    all.join(", ")
                );
            }
        }
    }
    if std::env::var("TESSERA_BENCH_KUBO").is_ok_and(|v| v == "1") {
        println!("UnixFS file (CIDv0, 256 KiB leaves) with a real Kubo 0.22, MiB/s");
        println!(
            "{:>8} {:>14} {:>14} {:>14}",
            "MiB", "Kubo->Kubo", "Kubo->tessera", "tessera->Kubo"
        );
        for &mib in &sizes {
            let [kk, kt, tk] = rt.block_on(kubo_legs(mib))?;
            println!("{mib:>8} {kk:>14.1} {kt:>14.1} {tk:>14.1}");
        }
    }
    Ok(())
}
