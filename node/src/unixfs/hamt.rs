//! HAMT-sharded directories, as boxo `ipld/unixfs/hamt` lays them out.
//!
//! Each entry name is hashed with murmur3-x64-64; each shard level consumes
//! `log2(fanout)` bits of the hash, most significant first (one byte per
//! level at Kubo's fanout of 256). A slot holding one entry links straight to
//! it under the name `{slot as 2 hex digits}{entry name}`; a slot that more
//! than one entry hashes to links to a child shard under the name `{slot}`
//! alone. Links are in slot order and the shard's `Data` is the occupancy
//! bitfield, big-endian, leading zero bytes dropped (go-bitfield `Bytes`).
//! The layout depends only on the set of names, not on insertion order.

use cid::{Cid, Version};
use tessera_blockstore::Block;

use super::chunker::dag_pb_block;
use super::data::{Data, DataType};
use super::murmur3::hamt_hash;
use crate::ipld::{PbLink, PbNode};

/// Multicodec of murmur3-x64-64, the only HAMT hash Kubo writes or reads.
pub const HAMT_HASH_MURMUR3: u64 = 0x22;
/// Kubo's shard width (boxo `io.DefaultShardWidth`).
pub const HAMT_FANOUT: u64 = 256;

/// A directory entry: the link a directory (or a shard) holds to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirLink {
    pub(crate) name: String,
    pub(crate) cid: Cid,
    pub(crate) tsize: u64,
}

/// Two names whose 64-bit hashes are equal cannot be told apart by a HAMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HashCollision {
    pub(crate) first: String,
    pub(crate) second: String,
}

/// Writes the shards of a directory holding `entries` (names distinct) and
/// returns the root shard's block link.
pub(crate) fn build_shards(
    entries: Vec<DirLink>,
    version: Version,
    out: &mut Vec<Block>,
) -> Result<DirLink, HashCollision> {
    let mut hashed: Vec<([u8; 8], DirLink)> = entries
        .into_iter()
        .map(|e| (hamt_hash(e.name.as_bytes()), e))
        .collect();
    // Sorting by hash puts every shard's entries in slot order, at every level.
    hashed.sort_by_key(|(hash, _)| *hash);
    build_level(&hashed, 0, version, out)
}

fn build_level(
    entries: &[([u8; 8], DirLink)],
    level: usize,
    version: Version,
    out: &mut Vec<Block>,
) -> Result<DirLink, HashCollision> {
    let mut bitfield = [0u8; 32];
    let mut links = Vec::new();
    let mut rest = entries;
    while let Some((hash, _)) = rest.first() {
        let slot = hash[level];
        let n = rest.iter().take_while(|(h, _)| h[level] == slot).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        bitfield[31 - usize::from(slot) / 8] |= 1 << (slot % 8);
        if let [(_, entry)] = group {
            links.push(PbLink {
                cid: entry.cid,
                name: Some(format!("{slot:02X}{}", entry.name)),
                tsize: Some(entry.tsize),
            });
        } else if level + 1 == 8 {
            return Err(HashCollision {
                first: group[0].1.name.clone(),
                second: group[1].1.name.clone(),
            });
        } else {
            let child = build_level(group, level + 1, version, out)?;
            links.push(PbLink {
                cid: child.cid,
                name: Some(format!("{slot:02X}")),
                tsize: Some(child.tsize),
            });
        }
    }
    let first_set = bitfield.iter().position(|&b| b != 0).unwrap_or(32);
    let mut data = Data::new(DataType::HamtShard);
    data.data = Some(bytes::Bytes::copy_from_slice(&bitfield[first_set..]));
    data.hash_type = Some(HAMT_HASH_MURMUR3);
    data.fanout = Some(HAMT_FANOUT);
    let children: u64 = links.iter().filter_map(|l| l.tsize).sum();
    let node = PbNode {
        links,
        data: Some(data.encode()),
    };
    let bytes = node.encode();
    let tsize = bytes.len() as u64 + children;
    let block = dag_pb_block(version, bytes);
    let link = DirLink {
        name: String::new(),
        cid: *block.cid(),
        tsize,
    };
    out.push(block);
    Ok(link)
}

/// Reads successive groups of bits of a name's hash, as boxo `hashBits`.
pub(crate) struct HashBits {
    hash: [u8; 8],
    consumed: u32,
}

impl HashBits {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            hash: hamt_hash(name.as_bytes()),
            consumed: 0,
        }
    }

    /// The next `bits` bits as a slot number; `None` once the hash is used up.
    pub(crate) fn next(&mut self, bits: u32) -> Option<usize> {
        if bits == 0 || bits > 16 || self.consumed + bits > 64 {
            return None;
        }
        let all = u64::from_be_bytes(self.hash);
        let value = (all << self.consumed) >> (64 - bits);
        self.consumed += bits;
        Some(value as usize)
    }
}

/// What a shard's link names, given the width of the slot prefix.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ShardLink<'a> {
    /// A child shard in `slot`.
    Shard { slot: usize },
    /// A directory entry named `name` in `slot`.
    Entry { slot: usize, name: &'a str },
}

/// Splits a shard link name into its slot and entry name; `None` if the
/// prefix is not hex of the right width.
pub(crate) fn parse_link_name(name: &str, pad: usize) -> Option<ShardLink<'_>> {
    let prefix = name.get(..pad)?;
    if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let slot = usize::from_str_radix(prefix, 16).ok()?;
    let rest = &name[pad..];
    Some(if rest.is_empty() {
        ShardLink::Shard { slot }
    } else {
        ShardLink::Entry { slot, name: rest }
    })
}

/// Bits per level and hex digits of slot prefixes for a fanout, if it is one
/// boxo accepts (a power of two; here also at most 2^16).
pub(crate) fn fanout_layout(fanout: u64) -> Option<(u32, usize)> {
    if !fanout.is_power_of_two() || !(2..=1 << 16).contains(&fanout) {
        return None;
    }
    let bits = fanout.trailing_zeros();
    let pad = format!("{:X}", fanout - 1).len();
    Some((bits, pad))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tessera_blockstore::RAW;

    use super::*;

    fn entry(name: &str) -> DirLink {
        let b = Block::from_data_v1(RAW, Bytes::copy_from_slice(name.as_bytes()));
        DirLink {
            name: name.to_owned(),
            cid: *b.cid(),
            tsize: name.len() as u64,
        }
    }

    #[test]
    fn layout_does_not_depend_on_insertion_order() {
        let names: Vec<String> = (0..2000).map(|i| format!("f{i}")).collect();
        let mut a = Vec::new();
        let root_a = build_shards(
            names.iter().map(|n| entry(n)).collect(),
            Version::V0,
            &mut a,
        )
        .unwrap();
        let mut b = Vec::new();
        let root_b = build_shards(
            names.iter().rev().map(|n| entry(n)).collect(),
            Version::V0,
            &mut b,
        )
        .unwrap();
        assert_eq!(root_a, root_b);
        assert_eq!(*a.last().unwrap().cid(), root_a.cid);
    }

    #[test]
    fn every_entry_is_reachable_by_its_hash() {
        let names: Vec<String> = (0..3000).map(|i| format!("entry-{i}")).collect();
        let mut blocks = Vec::new();
        let root = build_shards(
            names.iter().map(|n| entry(n)).collect(),
            Version::V1,
            &mut blocks,
        )
        .unwrap();
        let by_cid: std::collections::HashMap<Cid, Bytes> =
            blocks.into_iter().map(|b| b.into_parts()).collect();
        for name in &names {
            let mut bits = HashBits::new(name);
            let mut node = PbNode::decode(&by_cid[&root.cid]).unwrap();
            loop {
                let slot = bits.next(8).unwrap();
                let found = node
                    .links
                    .iter()
                    .find(|l| {
                        matches!(parse_link_name(l.name.as_deref().unwrap(), 2),
                            Some(ShardLink::Shard { slot: s } | ShardLink::Entry { slot: s, .. }) if s == slot)
                    })
                    .unwrap()
                    .clone();
                match parse_link_name(found.name.as_deref().unwrap(), 2).unwrap() {
                    ShardLink::Entry { name: n, .. } => {
                        assert_eq!(n, name);
                        break;
                    }
                    ShardLink::Shard { .. } => node = PbNode::decode(&by_cid[&found.cid]).unwrap(),
                }
            }
        }
    }

    #[test]
    fn bitfield_is_big_endian_and_trimmed() {
        let mut blocks = Vec::new();
        build_shards(vec![entry("a")], Version::V0, &mut blocks).unwrap();
        let node = PbNode::decode(blocks[0].data()).unwrap();
        let data = Data::decode(node.data.as_ref().unwrap()).unwrap();
        // "a" hashes to 0x85...: slot 0x85 = 133, bit 5 of the 17th byte from
        // the end, which is the first byte once leading zeros are dropped.
        let bitfield = data.data.unwrap();
        assert_eq!(bitfield.len(), 133 / 8 + 1);
        assert_eq!(bitfield[0], 1 << (133 % 8));
        assert_eq!(node.links[0].name.as_deref(), Some("85a"));
        assert_eq!(data.fanout, Some(256));
        assert_eq!(data.hash_type, Some(0x22));
    }

    #[test]
    fn hash_bits_read_msb_first_across_bytes() {
        let mut bits = HashBits::new("hello"); // cb d8 a7 b3 ...
        assert_eq!(bits.next(8), Some(0xcb));
        assert_eq!(bits.next(4), Some(0xd));
        assert_eq!(bits.next(8), Some(0x8a));
        let mut all = HashBits::new("hello");
        for _ in 0..8 {
            assert!(all.next(8).is_some());
        }
        assert_eq!(all.next(8), None);
    }

    #[test]
    fn fanout_layouts() {
        assert_eq!(fanout_layout(256), Some((8, 2)));
        assert_eq!(fanout_layout(16), Some((4, 1)));
        assert_eq!(fanout_layout(4096), Some((12, 3)));
        assert_eq!(fanout_layout(100), None);
        assert_eq!(fanout_layout(0), None);
        assert_eq!(fanout_layout(1), None);
    }
}
