//! Joining a cluster, `/tessera/cluster/join/1.0.0`: the only cluster protocol open to strangers.
//!
//! Both sides prove that they know the cluster secret without sending it: each answers the other's
//! random nonce with HMAC-SHA256(secret, label | nonce | own peer id | other peer id). Binding both
//! peer ids (which Noise authenticated) stops a relay from replaying a proof to a third peer. The
//! member answering a good proof first trusts the joiner and sends it the member list (so that the
//! joiner accepts the leader's Raft messages while it is being added), then asks the consensus to
//! add it, then says how that went.

use futures::AsyncWriteExt;
use hmac::{Hmac, Mac};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::frame::{read_frame, write_frame};

/// The protocol name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/cluster/join/1.0.0");
/// Join messages are small.
const MAX_FRAME: usize = 1 << 20;

/// Messages, in order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Joiner: my nonce.
    Hello { nonce: String },
    /// Member: my nonce, and my proof over yours.
    Challenge { nonce: String, proof: String },
    /// Joiner: my proof over yours, my addresses.
    Prove { proof: String, addrs: Vec<String> },
    /// Member: you are trusted; these are the members (peer, addresses).
    Accepted { members: Vec<(String, Vec<String>)> },
    /// Member: no (wrong secret, or something failed).
    Refused { reason: String },
    /// Member: the consensus added you.
    Done,
}

/// HMAC over the nonce and both peer ids.
pub(crate) fn proof(
    secret: &[u8; 32],
    label: &str,
    nonce: &[u8],
    prover: &PeerId,
    verifier: &PeerId,
) -> Vec<u8> {
    // A 32-byte key is always accepted by HMAC.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(label.as_bytes());
    mac.update(nonce);
    mac.update(&prover.to_bytes());
    mac.update(&verifier.to_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn verify(
    secret: &[u8; 32],
    label: &str,
    nonce: &[u8],
    prover: &PeerId,
    verifier: &PeerId,
    claimed: &str,
) -> bool {
    let Ok(claimed) = hex::decode(claimed) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(label.as_bytes());
    mac.update(nonce);
    mac.update(&prover.to_bytes());
    mac.update(&verifier.to_bytes());
    // Constant-time comparison.
    mac.verify_slice(&claimed).is_ok()
}

const MEMBER_LABEL: &str = "tessera-cluster-join-member";
const JOINER_LABEL: &str = "tessera-cluster-join-joiner";

async fn send<S: futures::AsyncWrite + Unpin>(s: &mut S, m: &Message) -> Result<(), String> {
    let bytes = serde_json::to_vec(m).map_err(|e| e.to_string())?;
    write_frame(s, &bytes).await.map_err(|e| e.to_string())
}

async fn recv<S: futures::AsyncRead + Unpin>(s: &mut S) -> Result<Message, String> {
    let bytes = read_frame(s, MAX_FRAME).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("malformed join message: {e}"))
}

/// What a joiner learns from a successful join.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) members: Vec<(PeerId, Vec<Multiaddr>)>,
}

/// The joiner's side, over an open stream to `member`. `trust` is called with the member list as
/// soon as the member accepted the proof, before the consensus adds this peer.
pub(crate) async fn join<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8; 32],
    local: PeerId,
    member: PeerId,
    addrs: &[Multiaddr],
    trust: impl FnOnce(&[(PeerId, Vec<Multiaddr>)]),
) -> Result<Joined, String> {
    let nonce: [u8; 32] = rand::random();
    send(
        stream,
        &Message::Hello {
            nonce: hex::encode(nonce),
        },
    )
    .await?;
    let (their_nonce, their_proof) = match recv(stream).await? {
        Message::Challenge { nonce, proof } => (nonce, proof),
        Message::Refused { reason } => return Err(reason),
        other => return Err(format!("unexpected join message {other:?}")),
    };
    if !verify(secret, MEMBER_LABEL, &nonce, &member, &local, &their_proof) {
        return Err(format!(
            "{member} does not know this cluster's secret (Cluster.Secret differs); not joining it"
        ));
    }
    let their_nonce = hex::decode(&their_nonce).map_err(|e| format!("bad nonce: {e}"))?;
    let proof = proof(secret, JOINER_LABEL, &their_nonce, &local, &member);
    send(
        stream,
        &Message::Prove {
            proof: hex::encode(proof),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        },
    )
    .await?;
    let members = match recv(stream).await? {
        Message::Accepted { members } => parse_members(&members),
        Message::Refused { reason } => return Err(format!("{member} refused the join: {reason}")),
        other => return Err(format!("unexpected join message {other:?}")),
    };
    trust(&members);
    match recv(stream).await? {
        Message::Done => {}
        Message::Refused { reason } => {
            return Err(format!("{member} could not add this peer: {reason}"));
        }
        other => return Err(format!("unexpected join message {other:?}")),
    }
    let _ = stream.close().await;
    Ok(Joined { members })
}

fn parse_members(members: &[(String, Vec<String>)]) -> Vec<(PeerId, Vec<Multiaddr>)> {
    members
        .iter()
        .filter_map(|(p, addrs)| {
            let p: PeerId = p.parse().ok()?;
            Some((p, addrs.iter().filter_map(|a| a.parse().ok()).collect()))
        })
        .collect()
}

/// What a member does with a joiner that proved the secret.
#[async_trait::async_trait]
pub(crate) trait Admit: Send + Sync {
    /// Trusts the peer for cluster protocols and returns the members to tell it about.
    fn trust(&self, peer: PeerId, addrs: &[Multiaddr]) -> Vec<(PeerId, Vec<Multiaddr>)>;
    /// Adds it through the consensus.
    async fn add(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), String>;
}

/// The member's side of one incoming join stream.
pub(crate) async fn answer<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &[u8; 32],
    local: PeerId,
    joiner: PeerId,
    admit: &dyn Admit,
) -> Result<(), String> {
    let their_nonce = match recv(stream).await? {
        Message::Hello { nonce } => hex::decode(nonce).map_err(|e| format!("bad nonce: {e}"))?,
        other => return Err(format!("unexpected join message {other:?}")),
    };
    let nonce: [u8; 32] = rand::random();
    let my_proof = proof(secret, MEMBER_LABEL, &their_nonce, &local, &joiner);
    send(
        stream,
        &Message::Challenge {
            nonce: hex::encode(nonce),
            proof: hex::encode(my_proof),
        },
    )
    .await?;
    let (their_proof, addrs) = match recv(stream).await? {
        Message::Prove { proof, addrs } => (proof, addrs),
        other => return Err(format!("unexpected join message {other:?}")),
    };
    if !verify(secret, JOINER_LABEL, &nonce, &joiner, &local, &their_proof) {
        let _ = send(
            stream,
            &Message::Refused {
                reason: "wrong cluster secret".into(),
            },
        )
        .await;
        return Err("wrong cluster secret".into());
    }
    let addrs: Vec<Multiaddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let members = admit.trust(joiner, &addrs);
    send(
        stream,
        &Message::Accepted {
            members: members
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().map(|a| a.to_string()).collect()))
                .collect(),
        },
    )
    .await?;
    match admit.add(joiner, addrs).await {
        Ok(()) => send(stream, &Message::Done).await?,
        Err(e) => {
            let _ = send(stream, &Message::Refused { reason: e.clone() }).await;
            return Err(e);
        }
    }
    let _ = stream.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proofs_bind_secret_nonce_and_both_peers() {
        let s = [7u8; 32];
        let a = PeerId::random();
        let b = PeerId::random();
        let p = hex::encode(proof(&s, MEMBER_LABEL, b"n", &a, &b));
        assert!(verify(&s, MEMBER_LABEL, b"n", &a, &b, &p));
        assert!(!verify(&[8u8; 32], MEMBER_LABEL, b"n", &a, &b, &p));
        assert!(!verify(&s, MEMBER_LABEL, b"m", &a, &b, &p));
        assert!(!verify(&s, MEMBER_LABEL, b"n", &b, &a, &p));
        assert!(!verify(&s, JOINER_LABEL, b"n", &a, &b, &p));
        assert!(!verify(&s, MEMBER_LABEL, b"n", &a, &b, "zz"));
    }
}
