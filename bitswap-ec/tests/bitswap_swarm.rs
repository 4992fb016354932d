//! Bitswap between in-process swarms on loopback TCP + Noise + Yamux: the
//! engine end to end, including peers that lie, misbehave or speak 1.0.0.

mod bitswap_support;

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use bitswap_support::{build_swarm, eventually, init_tracing, listen, pseudo_random, spawn_node};
use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use tessera_bitswap_ec::bitswap::{
    BlockProvider, Config, Entry, FetchError, MemoryBlocks, Message, NoBlocks, ProviderError,
    Version, WantType,
};
use tessera_blockstore::{Block, Cid, RAW};

fn raw(seed: u64, len: usize) -> Block {
    Block::from_data_v1(RAW, Bytes::from(pseudo_random(seed, len)))
}

fn fast_config() -> Config {
    let mut c = Config::default();
    c.want_block_timeout = Duration::from_secs(1);
    c.rebroadcast_interval = Duration::from_millis(500);
    c
}

/// Sizes at the edges: empty, one byte, Kubo's and Helia's chunk sizes, one
/// byte over a chunk, and the 2 MiB block limit itself.
const SIZES: [usize; 6] = [0, 1, 256 * 1024, 256 * 1024 + 1, 1 << 20, 2 << 20];

#[tokio::test]
async fn two_peers_fetch_from_each_other() -> Result<()> {
    init_tracing();
    let (a_blocks, b_blocks) = (MemoryBlocks::new(), MemoryBlocks::new());
    let a = spawn_node(Config::default(), a_blocks.clone()).await?;
    let b = spawn_node(Config::default(), b_blocks.clone()).await?;
    let mut on_a = Vec::new();
    for (i, len) in SIZES.iter().enumerate() {
        on_a.push(raw(i as u64, *len));
    }
    // One CIDv0 dag-pb block too.
    on_a.push(Block::from_dag_pb_v0(Bytes::from_static(
        b"\x0a\x02\x08\x02",
    )));
    for blk in &on_a {
        a_blocks.insert(blk.clone());
    }
    let on_b: Vec<Block> = (100..140).map(|i| raw(i, 10_000 + i as usize)).collect();
    for blk in &on_b {
        b_blocks.insert(blk.clone());
    }
    b.connect(&a).await?;

    let session = b.handle.session().with_timeout(Duration::from_secs(30));
    let got: Vec<Block> = session
        .get_many(on_a.iter().map(|b| *b.cid()).collect::<Vec<_>>())
        .map(|r| r.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    assert_eq!(got, on_a, "B got A's blocks, in order, byte for byte");

    let session = a.handle.session().with_timeout(Duration::from_secs(30));
    let got: Vec<Block> = session
        .get_many(on_b.iter().map(|b| *b.cid()).collect::<Vec<_>>())
        .map(|r| r.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    assert_eq!(got, on_b);

    let stats = b.handle.stats().await?;
    assert_eq!(stats.blocks_received, on_a.len() as u64);
    assert!(stats.wantlist.is_empty());
    let ledger = b.handle.ledger(a.peer).await?;
    assert_eq!(ledger.blocks_received, on_a.len() as u64);
    let expected: u64 = on_a.iter().map(|b| b.data().len() as u64).sum();
    assert_eq!(ledger.bytes_received, expected);
    eventually(
        "B's ledger counts what it sent A",
        Duration::from_secs(10),
        || {
            let h = b.handle.clone();
            let (peer, n) = (a.peer, on_b.len() as u64);
            async move { Ok(h.ledger(peer).await?.blocks_sent == n) }
        },
    )
    .await?;
    eventually("A counted what it sent", Duration::from_secs(10), || {
        let h = a.handle.clone();
        let n = on_a.len() as u64;
        async move { Ok(h.stats().await?.blocks_sent == n) }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn over_the_block_limit_is_not_served() -> Result<()> {
    init_tracing();
    let a_blocks = MemoryBlocks::new();
    let a = spawn_node(Config::default(), a_blocks.clone()).await?;
    let b = spawn_node(fast_config(), NoBlocks).await?;
    // One byte over the 2 MiB limit.
    let big = raw(1, (2 << 20) + 1);
    a_blocks.insert(big.clone());
    b.connect(&a).await?;
    let session = b.handle.session().with_timeout(Duration::from_secs(3));
    let err = session.get(*big.cid()).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    Ok(())
}

/// Serves every block with one byte flipped: its bytes hash to another CID.
#[derive(Clone)]
struct Liar(MemoryBlocks);

impl BlockProvider for Liar {
    async fn has(&self, cid: Cid) -> Result<bool, ProviderError> {
        self.0.has(cid).await
    }

    async fn get(&self, cid: Cid) -> Result<Option<Bytes>, ProviderError> {
        Ok(self.0.block(&cid).map(|b| {
            let mut v = b.to_vec();
            if let Some(x) = v.first_mut() {
                *x ^= 1;
            }
            Bytes::from(v)
        }))
    }
}

#[tokio::test]
async fn blocks_with_wrong_bytes_are_dropped_and_fetched_from_an_honest_peer() -> Result<()> {
    init_tracing();
    let blocks: Vec<Block> = (0..8).map(|i| raw(i, 50_000)).collect();
    let (honest_store, liar_store) = (MemoryBlocks::new(), MemoryBlocks::new());
    for b in &blocks {
        honest_store.insert(b.clone());
        liar_store.insert(b.clone());
    }
    let liar = spawn_node(Config::default(), Liar(liar_store)).await?;
    let honest = spawn_node(Config::default(), honest_store).await?;
    let fetcher = spawn_node(fast_config(), NoBlocks).await?;
    // Only the liar at first: every block it sends is refused.
    fetcher.connect(&liar).await?;
    let handle = fetcher.handle.clone();
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    let fetch = tokio::spawn(async move {
        let s = handle.session().with_timeout(Duration::from_secs(30));
        s.get_many(cids).collect::<Vec<_>>().await
    });
    eventually(
        "the liar's blocks were refused",
        Duration::from_secs(20),
        || {
            let h = fetcher.handle.clone();
            async move { Ok(h.stats().await?.unwanted_blocks >= 1) }
        },
    )
    .await?;
    assert_eq!(
        fetcher.handle.stats().await?.blocks_received,
        0,
        "nothing accepted from the liar"
    );
    fetcher.connect(&honest).await?;
    let got = fetch.await?;
    for (r, want) in got.into_iter().zip(&blocks) {
        assert_eq!(&r?, want);
    }
    let ledger = fetcher.handle.ledger(liar.peer).await?;
    assert_eq!(ledger.blocks_received, 0);
    Ok(())
}

#[tokio::test]
async fn a_block_stored_later_reaches_a_peer_told_dont_have() -> Result<()> {
    init_tracing();
    let a_blocks = MemoryBlocks::new();
    let a = spawn_node(Config::default(), a_blocks.clone()).await?;
    // Rebroadcasts rare enough that only notify_new_blocks can deliver in time.
    let mut cfg = Config::default();
    cfg.rebroadcast_interval = Duration::from_secs(120);
    let b = spawn_node(cfg, NoBlocks).await?;
    b.connect(&a).await?;
    let blk = raw(7, 1000);
    let handle = b.handle.clone();
    let cid = *blk.cid();
    let fetch = tokio::spawn(async move { handle.get(cid).await });
    eventually("A holds B's want", Duration::from_secs(10), || {
        let h = a.handle.clone();
        let peer = b.peer;
        async move { Ok(h.peer_wantlist(peer).await?.contains(&cid)) }
    })
    .await?;
    a_blocks.insert(blk.clone());
    a.handle.notify_new_blocks(vec![cid]).await?;
    let got = tokio::time::timeout(Duration::from_secs(10), fetch).await???;
    assert_eq!(got, blk);
    Ok(())
}

#[tokio::test]
async fn dropping_a_fetch_cancels_the_want_on_both_sides() -> Result<()> {
    init_tracing();
    let a = spawn_node(Config::default(), MemoryBlocks::new()).await?;
    let b = spawn_node(Config::default(), NoBlocks).await?;
    b.connect(&a).await?;
    let cid = *raw(9, 10).cid();
    let handle = b.handle.clone();
    let fetch = tokio::spawn(async move { handle.get(cid).await });
    eventually("A holds B's want", Duration::from_secs(10), || {
        let h = a.handle.clone();
        let peer = b.peer;
        async move { Ok(h.peer_wantlist(peer).await?.contains(&cid)) }
    })
    .await?;
    fetch.abort();
    eventually("B's wantlist is empty", Duration::from_secs(10), || {
        let h = b.handle.clone();
        async move { Ok(h.wantlist().await?.is_empty()) }
    })
    .await?;
    eventually("A dropped B's want", Duration::from_secs(10), || {
        let h = a.handle.clone();
        let peer = b.peer;
        async move { Ok(h.peer_wantlist(peer).await?.is_empty()) }
    })
    .await?;
    Ok(())
}

/// A raw libp2p peer that writes whatever bytes it likes on Bitswap streams.
struct RawPeer {
    control: libp2p_stream::Control,
    peer: libp2p::PeerId,
}

async fn raw_peer(target: &bitswap_support::Node) -> Result<RawPeer> {
    let behaviour = libp2p_stream::Behaviour::new();
    let control = behaviour.new_control();
    let mut swarm = build_swarm(behaviour)?;
    let _ = listen(&mut swarm).await?;
    let peer = *swarm.local_peer_id();
    swarm.dial(
        target
            .addr
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(target.peer)),
    )?;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    target.wait_peer(peer).await?;
    Ok(RawPeer { control, peer })
}

impl RawPeer {
    async fn stream(&mut self, to: libp2p::PeerId, version: Version) -> Result<libp2p::Stream> {
        self.control
            .open_stream(to, version.protocol())
            .await
            .map_err(|e| anyhow::anyhow!("open stream: {e}"))
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = body.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn malformed_oversized_and_greedy_peers_do_not_stop_serving() -> Result<()> {
    init_tracing();
    let a_blocks = MemoryBlocks::new();
    let mut cfg = Config::default();
    cfg.max_wants_per_peer = 1000;
    cfg.max_inbound_streams = 8;
    let a = spawn_node(cfg, a_blocks.clone()).await?;
    let mut evil = raw_peer(&a).await?;

    // 1. Garbage protobuf (a group wire type).
    let mut s = evil.stream(a.peer, Version::V1_2_0).await?;
    s.write_all(&frame(&[0x0b, 0x01, 0x02])).await?;
    s.flush().await?;
    // 2. A length prefix one byte over 4 MiB: refused before it is read.
    let mut s2 = evil.stream(a.peer, Version::V1_2_0).await?;
    s2.write_all(&frame(&[])[..0]).await?;
    let mut big_prefix = Vec::new();
    let mut n = (4u64 << 20) + 1;
    while n >= 0x80 {
        big_prefix.push((n as u8) | 0x80);
        n >>= 7;
    }
    big_prefix.push(n as u8);
    s2.write_all(&big_prefix).await?;
    s2.flush().await?;
    // 3. A wantlist of 50 000 blocks (over the 1000 per peer A keeps and over
    // the 16 384 items one message may carry).
    let mut greedy = Message::new();
    for i in 0..50_000u64 {
        greedy.wantlist.push(Entry {
            cid: *raw(1_000_000 + i, 8).cid(),
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: false,
        });
    }
    let mut s3 = evil.stream(a.peer, Version::V1_2_0).await?;
    s3.write_all(&frame(&greedy.to_bytes(Version::V1_2_0)))
        .await?;
    s3.flush().await?;
    // 4. Many streams at once.
    let mut held = Vec::new();
    for _ in 0..20 {
        if let Ok(s) = evil.stream(a.peer, Version::V1_2_0).await {
            held.push(s);
        }
    }

    eventually(
        "A noticed every kind of bad input",
        Duration::from_secs(20),
        || {
            let h = a.handle.clone();
            async move {
                let s = h.stats().await?;
                Ok(s.invalid_messages >= 3 && s.refused_wants > 0)
            }
        },
    )
    .await?;
    let stats = a.handle.stats().await?;
    assert!(
        stats.server_wants <= 1000,
        "holds {} wants",
        stats.server_wants
    );

    // An honest peer is still served.
    let good = spawn_node(Config::default(), NoBlocks).await?;
    good.connect(&a).await?;
    let blk = raw(5, 300_000);
    a_blocks.insert(blk.clone());
    let got = tokio::time::timeout(Duration::from_secs(20), good.handle.get(*blk.cid())).await??;
    assert_eq!(got, blk);
    drop(held);
    let _ = evil.peer;
    Ok(())
}

#[tokio::test]
async fn a_one_zero_zero_peer_gets_bare_blocks() -> Result<()> {
    init_tracing();
    let a_blocks = MemoryBlocks::new();
    let a = spawn_node(Config::default(), a_blocks.clone()).await?;
    let blk = Block::from_dag_pb_v0(Bytes::from(pseudo_random(3, 5000)));
    a_blocks.insert(blk.clone());
    let mut old = raw_peer(&a).await?;
    // The old peer only accepts 1.0.0 streams, so A must answer in 1.0.0.
    let mut incoming = old
        .control
        .accept(StreamProtocol::new("/ipfs/bitswap/1.0.0"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut want = Message::new();
    want.wantlist.push(Entry {
        cid: *blk.cid(),
        priority: 1,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    });
    let mut s = old.stream(a.peer, Version::V1_0_0).await?;
    s.write_all(&frame(&want.to_bytes(Version::V1_0_0))).await?;
    s.close().await?;
    let (_, mut answer) = tokio::time::timeout(Duration::from_secs(10), incoming.next())
        .await?
        .context("no answer stream")?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Read the varint prefix, then the body.
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        answer.read_exact(&mut byte).await?;
        len |= ((byte[0] & 0x7f) as usize) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    buf.resize(len, 0);
    answer.read_exact(&mut buf).await?;
    let msg = Message::decode(Bytes::from(buf))?;
    ensure!(msg.payload.is_empty(), "1.0.0 has no payload field");
    assert_eq!(msg.blocks, vec![blk.data().clone()]);
    Ok(())
}
