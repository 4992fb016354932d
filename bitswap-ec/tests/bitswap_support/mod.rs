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
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, noise, tcp, yamux};
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

pub fn build_swarm<B: libp2p::swarm::NetworkBehaviour>(behaviour: B) -> Result<Swarm<B>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour)?
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
    let (behaviour, handle) = bitswap::Behaviour::new(config, provider)?;
    let mut swarm = build_swarm(behaviour)?;
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
