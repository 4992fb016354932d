//! Naming received blocks by hashing them: the only way a block enters the
//! engine. CPU-bound, so the handler runs it on tokio's blocking pool for
//! anything but small messages.

use cid::Cid;
use libp2p::PeerId;
use multihash_codetable::{Code, MultihashDigest};
use tessera_blockstore::{Block, DAG_CBOR, DAG_PB, RAW};

use super::message::{Entry, Message, Presence};

/// A received message after its blocks were hashed.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    pub(crate) wantlist: Vec<Entry>,
    pub(crate) full: bool,
    pub(crate) blocks: Vec<Received>,
    pub(crate) presences: Vec<Presence>,
    /// Blocks that could not be named or were over the size limit.
    pub(crate) dropped_blocks: usize,
    /// Items beyond the per-message limit.
    pub(crate) skipped: usize,
}

/// A received block, named by the hash of its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) block: Block,
    /// Sent in the 1.0.0 form: named CIDv0 here, but the sender may have
    /// meant a CIDv1 with the same multihash.
    pub(crate) legacy: bool,
}

impl Received {
    /// CIDs this block may have been wanted under.
    pub(crate) fn candidates(&self) -> Vec<Cid> {
        let cid = *self.block.cid();
        if !self.legacy {
            return vec![cid];
        }
        let mh = *cid.hash();
        vec![
            cid,
            Cid::new_v1(DAG_PB, mh),
            Cid::new_v1(RAW, mh),
            Cid::new_v1(DAG_CBOR, mh),
        ]
    }
}

/// Hashes every block of `msg` to name it. Blocks that cannot be named
/// (unknown hash function, oversized) are dropped with a log line.
pub(crate) fn name_blocks(msg: Message, max_block_size: usize, peer: &PeerId) -> Inbound {
    let mut out = Inbound {
        wantlist: msg.wantlist,
        full: msg.full,
        blocks: Vec::with_capacity(msg.blocks.len() + msg.payload.len()),
        presences: msg.presences,
        dropped_blocks: 0,
        skipped: msg.skipped,
    };
    for data in msg.blocks {
        if data.len() > max_block_size {
            tracing::warn!(%peer, len = data.len(), max_block_size, "dropping oversized block from peer");
            out.dropped_blocks += 1;
            continue;
        }
        let mh = Code::Sha2_256.digest(&data);
        match Cid::new_v0(mh) {
            Ok(cid) => out.blocks.push(Received {
                block: Block::new_unchecked(cid, data),
                legacy: true,
            }),
            Err(_) => out.dropped_blocks += 1,
        }
    }
    for p in msg.payload {
        if p.data.len() > max_block_size {
            tracing::warn!(%peer, len = p.data.len(), max_block_size, "dropping oversized block from peer");
            out.dropped_blocks += 1;
            continue;
        }
        match p.prefix.cid_for(&p.data) {
            Ok(cid) => out.blocks.push(Received {
                block: Block::new_unchecked(cid, p.data),
                legacy: false,
            }),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "dropping block from peer");
                out.dropped_blocks += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::message::Payload;
    use super::super::prefix::Prefix;
    use super::*;

    #[test]
    fn names_payloads_and_legacy_blocks_by_their_hash() {
        let raw = Block::from_data_v1(RAW, Bytes::from_static(b"raw"));
        let v0 = Block::from_dag_pb_v0(Bytes::from_static(b"\x0a\x02\x08\x02"));
        let mut m = Message::new();
        m.payload.push(Payload {
            prefix: Prefix::of(raw.cid()),
            data: raw.data().clone(),
        });
        m.blocks.push(raw.data().clone());
        m.blocks.push(v0.data().clone());
        let peer = PeerId::random();
        let inbound = name_blocks(m, 100, &peer);
        let cids: Vec<Cid> = inbound.blocks.iter().map(|r| *r.block.cid()).collect();
        assert!(cids.contains(raw.cid()));
        assert!(cids.contains(v0.cid()));
        // The legacy copy of the raw block is named v0 but matches its v1 name.
        let legacy_raw = inbound
            .blocks
            .iter()
            .find(|r| r.legacy && r.block.data() == raw.data())
            .unwrap();
        assert!(legacy_raw.candidates().contains(raw.cid()));
    }

    #[test]
    fn drops_oversized_and_unverifiable_blocks() {
        let mut m = Message::new();
        m.blocks.push(Bytes::from(vec![0u8; 101]));
        m.payload.push(Payload {
            prefix: Prefix {
                version: cid::Version::V1,
                codec: RAW,
                mh_code: 0x1e,
                mh_len: Some(32),
            },
            data: Bytes::from_static(b"x"),
        });
        let inbound = name_blocks(m, 100, &PeerId::random());
        assert!(inbound.blocks.is_empty());
        assert_eq!(inbound.dropped_blocks, 2);
    }
}
