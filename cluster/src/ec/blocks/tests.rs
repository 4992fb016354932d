//! The block protocol between real libp2p swarms (TCP, Noise, Yamux) on loopback, and the
//! in-process peers that the encode tests reuse.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, SwarmBuilder, noise, tcp};
use tessera_blockstore::RAW;

use super::*;

/// A swarm on loopback with a blockstore in a temporary folder, serving the block protocol.
pub(crate) struct TestPeer {
    pub(crate) peer: PeerId,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) store: Blockstore,
    /// Every CID the server reported as stored, in order.
    pub(crate) stored: Arc<Mutex<Vec<Cid>>>,
    _dir: tempfile::TempDir,
}

impl TestPeer {
    pub(crate) fn client(&self) -> BlockClient {
        BlockClient::new(self.control.clone())
    }

    pub(crate) fn has(&self, cid: &Cid) -> bool {
        self.store.has(cid).unwrap()
    }
}

fn swarm() -> Swarm<libp2p_stream::Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            tessera_bitswap_ec::bitswap::yamux_config,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build()
}

async fn listen(swarm: &mut Swarm<libp2p_stream::Behaviour>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("a listen address within 10 s");
        if let SwarmEvent::NewListenAddr { address, .. } = ev {
            return address;
        }
    }
}

/// `n` peers, all connected to each other, each serving blocks to the peers `allowed` accepts.
pub(crate) async fn connected_peers(
    n: usize,
    allowed: Arc<dyn Fn(&PeerId) -> bool + Send + Sync>,
) -> Vec<TestPeer> {
    let mut swarms = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let mut s = swarm();
        let addr = listen(&mut s).await;
        addrs.push(addr.with(Protocol::P2p(*s.local_peer_id())));
        swarms.push(s);
    }
    for (i, s) in swarms.iter_mut().enumerate() {
        for addr in &addrs[i + 1..] {
            s.dial(addr.clone()).unwrap();
        }
    }
    let mut peers = Vec::new();
    let mut links = Vec::new();
    for mut s in swarms {
        let peer = *s.local_peer_id();
        let control = s.behaviour().new_control();
        let connected = Arc::new(Mutex::new(HashSet::new()));
        links.push(connected.clone());
        tokio::spawn(async move {
            loop {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                    s.select_next_some().await
                {
                    connected.lock().unwrap().insert(peer_id);
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), Default::default()).unwrap();
        let stored = Arc::new(Mutex::new(Vec::new()));
        let log = stored.clone();
        tokio::spawn(serve(
            control.clone(),
            store.clone(),
            allowed.clone(),
            Arc::new(move |cids| log.lock().unwrap().extend(cids)),
        ));
        peers.push(TestPeer {
            peer,
            control,
            store,
            stored,
            _dir: dir,
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while links.iter().any(|l| l.lock().unwrap().len() < n - 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "peers did not connect within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Each server registers its protocol when its task first runs; a stream opened before that
    // is refused as unsupported.
    for (i, target) in peers.iter().enumerate() {
        let mut control = peers[(i + 1) % n].control.clone();
        while let Err(e) = control.open_stream(target.peer, PROTOCOL).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} does not serve blocks: {e}",
                target.peer
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    peers
}

pub(crate) fn members() -> Arc<dyn Fn(&PeerId) -> bool + Send + Sync> {
    Arc::new(|_| true)
}

fn block(i: usize, len: usize) -> Block {
    let data: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
    Block::from_data_v1(RAW, Bytes::from(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_of_100_blocks_is_stored_and_acknowledged() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    let blocks: Vec<Block> = (0..100).map(|i| block(i, 1000 + i * 100)).collect();
    let mut session = a.client().push(b.peer).await.unwrap();
    for blk in &blocks {
        session.send(blk.clone()).await.unwrap();
    }
    assert_eq!(session.finish().await.unwrap(), 100);
    for blk in &blocks {
        assert_eq!(b.store.get(blk.cid()).unwrap().unwrap(), blk.data());
    }
    // Bitswap would have been told about every one, once each batch was durable.
    let told: HashSet<Cid> = b.stored.lock().unwrap().iter().copied().collect();
    assert_eq!(told, blocks.iter().map(|b| *b.cid()).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_past_the_window_wait_for_acknowledgements() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    // 48 MiB of 1 MiB blocks: over the 32 MiB window, so the sender must wait for batches to be
    // acknowledged; and one block of exactly 16 MiB, the largest cell there is.
    let mut blocks: Vec<Block> = (0..48).map(|i| block(i, 1 << 20)).collect();
    blocks.push(block(99, MAX_BLOCK));
    let mut session = a.client().push(b.peer).await.unwrap();
    for blk in &blocks {
        session.send(blk.clone()).await.unwrap();
    }
    assert_eq!(session.finish().await.unwrap(), 49);
    assert!(blocks.iter().all(|blk| b.has(blk.cid())));

    // One byte more is refused before anything is sent.
    let mut session = a.client().push(b.peer).await.unwrap();
    let too_big = block(100, MAX_BLOCK + 1);
    assert!(matches!(
        session.send(too_big).await,
        Err(BlockError::TooLarge { size, .. }) if size == MAX_BLOCK + 1
    ));
    assert_eq!(session.finish().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_what_the_peer_has_and_skips_the_rest() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    // 100 present blocks, more than one request's 64 CIDs, between missing ones.
    let present: Vec<Block> = (0..100).map(|i| block(i, 2000)).collect();
    b.store.put_many(&present).unwrap();
    let absent: Vec<Block> = (100..110).map(|i| block(i, 10)).collect();
    let mut ask: Vec<Cid> = Vec::new();
    for (i, p) in present.iter().enumerate() {
        ask.push(*p.cid());
        if i % 10 == 0 {
            ask.push(*absent[i / 10].cid());
        }
    }
    let got = a.client().fetch(b.peer, &ask).await.unwrap();
    assert_eq!(got, present);
    assert!(a.client().fetch(b.peer, &[]).await.unwrap().is_empty());
    let none = a.client().fetch(b.peer, &[*absent[0].cid()]).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_answers_past_64_mib_are_split() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    // Five 16 MiB blocks: the first answer stops at 64 MiB (4 blocks), the client asks again.
    let big: Vec<Block> = (0..5).map(|i| block(i, MAX_BLOCK)).collect();
    b.store.put_many(&big).unwrap();
    let ask: Vec<Cid> = big.iter().map(|b| *b.cid()).collect();
    let got = a.client().fetch(b.peer, &ask).await.unwrap();
    assert_eq!(got, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_with_wrong_bytes_is_refused_and_not_stored() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    let good = block(1, 100);
    let liar = Block::new_unchecked(*block(2, 100).cid(), Bytes::from_static(b"not these bytes"));
    let mut session = a.client().push(b.peer).await.unwrap();
    session.send(good.clone()).await.unwrap();
    // The refusal may surface at the send (the peer ended the stream while it was written) or
    // at the finish; either way it carries the peer's reason.
    let err = match session.send(liar.clone()).await {
        Err(e) => e,
        Ok(()) => session.finish().await.unwrap_err(),
    };
    assert!(
        matches!(&err, BlockError::Refused { peer, reason } if *peer == b.peer && reason.contains("do not match")),
        "{err}"
    );
    // The batch holding the bad block is stored as a whole or not at all.
    assert!(!b.has(liar.cid()));
    assert!(!b.has(good.cid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_end_the_stream_with_an_error() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    let mut control = a.control.clone();
    let mut s = control.open_stream(b.peer, PROTOCOL).await.unwrap();
    write_frame(&mut s, &[PUSH]).await.unwrap();
    assert_eq!(read_frame(&mut s, 1 << 16).await.unwrap().as_ref(), [READY]);
    // A CID length past the end of the frame.
    write_frame(&mut s, &[BLOCK, 200, 1, 2, 3]).await.unwrap();
    let reply = read_frame(&mut s, 1 << 16).await.unwrap();
    assert_eq!(reply.first(), Some(&ERROR), "{reply:?}");
    assert!(
        read_frame(&mut s, 1 << 16).await.is_err(),
        "the stream is closed"
    );

    // A frame longer than a block may be is refused before it is read.
    let mut s = control.open_stream(b.peer, PROTOCOL).await.unwrap();
    write_frame(&mut s, &[PUSH]).await.unwrap();
    assert_eq!(read_frame(&mut s, 1 << 16).await.unwrap().as_ref(), [READY]);
    s.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    assert!(read_frame(&mut s, 1 << 16).await.is_err());

    // An unknown request.
    let mut s = control.open_stream(b.peer, PROTOCOL).await.unwrap();
    write_frame(&mut s, &[77]).await.unwrap();
    assert_eq!(
        read_frame(&mut s, 1 << 16).await.unwrap().first(),
        Some(&ERROR)
    );

    // The server still serves.
    let blk = block(5, 10);
    let mut session = a.client().push(b.peer).await.unwrap();
    session.send(blk.clone()).await.unwrap();
    assert_eq!(session.finish().await.unwrap(), 1);
    assert!(b.has(blk.cid()));
    assert_eq!(b.stored.lock().unwrap().as_slice(), [*blk.cid()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_a_member_gets_the_stream_closed() {
    let peers = connected_peers(2, Arc::new(|_| false)).await;
    let (a, b) = (&peers[0], &peers[1]);
    let blk = block(1, 100);
    let result = async {
        let mut session = a.client().push(b.peer).await?;
        session.send(blk.clone()).await?;
        session.finish().await
    }
    .await;
    assert!(
        matches!(
            result,
            Err(BlockError::Refused { .. } | BlockError::Broken { .. })
        ),
        "{result:?}"
    );
    assert!(!b.has(blk.cid()));

    b.store.put(&blk).unwrap();
    let fetched = a.client().fetch(b.peer, &[*blk.cid()]).await;
    assert!(
        matches!(
            fetched,
            Err(BlockError::Refused { .. } | BlockError::Broken { .. })
        ),
        "{fetched:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_reuse_one_stream_and_replace_one_that_died_idle() {
    let peers = connected_peers(2, members()).await;
    let (a, b) = (&peers[0], &peers[1]);
    let blocks: Vec<Block> = (0..3).map(|i| block(i, 1000)).collect();
    b.store.put_many(&blocks).unwrap();
    let client = a.client();
    for blk in &blocks {
        let got = client.fetch(b.peer, &[*blk.cid()]).await.unwrap();
        assert_eq!(got, vec![blk.clone()]);
        assert_eq!(client.pool.idle_count(&b.peer), 1, "one stream, reused");
    }
    // A stream that died while idle (here: closed by us) is replaced by a fresh one at once.
    let mut dead = client.pool.idle(&b.peer).unwrap();
    dead.close().await.unwrap();
    client.pool.put_back(b.peer, dead);
    let got = client.fetch(b.peer, &[*blocks[0].cid()]).await.unwrap();
    assert_eq!(got, vec![blocks[0].clone()]);
    assert_eq!(client.pool.idle_count(&b.peer), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_loses_its_idle_streams() {
    let member = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = member.clone();
    let peers = connected_peers(
        2,
        Arc::new(move |_| gate.load(std::sync::atomic::Ordering::SeqCst)),
    )
    .await;
    let (a, b) = (&peers[0], &peers[1]);
    let blk = block(1, 100);
    b.store.put(&blk).unwrap();
    let client = a.client();
    assert_eq!(
        client.fetch(b.peer, &[*blk.cid()]).await.unwrap(),
        vec![blk.clone()]
    );
    assert_eq!(client.pool.idle_count(&b.peer), 1);
    member.store(false, std::sync::atomic::Ordering::SeqCst);
    let fetched = client.fetch(b.peer, &[*blk.cid()]).await;
    assert!(
        matches!(
            fetched,
            Err(BlockError::Refused { .. } | BlockError::Broken { .. })
        ),
        "{fetched:?}"
    );
    assert_eq!(
        client.pool.idle_count(&b.peer),
        0,
        "a failed stream is not kept"
    );
}
