//! A toy linked-block format for GC tests.
//!
//! The store knows no codec, so tests make their own: a node's bytes are a
//! link count, each link as a length-prefixed CID, then a payload. Nodes use
//! the dag-cbor codec number (so GC reads them); leaves are raw.

use bytes::Bytes;
use tessera_blockstore::{Block, Cid, DAG_CBOR, RAW};

/// A node linking to `links`, padded with `payload` bytes.
pub(crate) fn node(links: &[Cid], payload: &[u8]) -> Block {
    let mut data = vec![links.len() as u8];
    for l in links {
        let b = l.to_bytes();
        data.push(b.len() as u8);
        data.extend_from_slice(&b);
    }
    data.extend_from_slice(payload);
    Block::from_data_v1(DAG_CBOR, Bytes::from(data))
}

/// A raw leaf of `len` bytes that differ by `seed`.
pub(crate) fn leaf(len: usize, seed: u64) -> Block {
    let mut data = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    if len >= 8 {
        data[..8].copy_from_slice(&seed.to_le_bytes());
    }
    Block::from_data_v1(RAW, Bytes::from(data))
}

/// The link extractor for [`node`]s, as GC wants it.
pub(crate) fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, String> {
    if cid.codec() != DAG_CBOR {
        return Ok(Vec::new());
    }
    let (&n, mut rest) = data.split_first().ok_or("empty node")?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (&len, r) = rest.split_first().ok_or("truncated link")?;
        let (cid, r) = r
            .split_at_checked(len as usize)
            .ok_or("truncated link bytes")?;
        out.push(Cid::try_from(cid).map_err(|e| e.to_string())?);
        rest = r;
    }
    Ok(out)
}
