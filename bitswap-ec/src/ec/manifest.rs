//! The EC manifest: which blocks form which stripe of which group, as a
//! small content-addressed DAG of DAG-CBOR blocks (version 1).
//!
//! The root block holds the code (codec id, `k`, `m`, shard size), the DAG
//! root, totals, and three chunked lists: stripes, groups and interior
//! blocks. Lists are trees of blocks under 1 MiB each (see `list`), so the
//! manifest of a 100 GiB file is a few dozen blocks, written while the file
//! streams in and read back one path at a time. `docs/erasure-coding.md`
//! has the byte-level layout.

use std::error::Error as StdError;

use bytes::Bytes;
use cid::Cid;
use tessera_blockstore::Block;

use super::codec::{CodecError, CodecId};
use super::layout::{Layout, LayoutError};

mod list;
mod reader;
mod wire;

pub(crate) use list::ListLimits;
use list::{ListBuilder, encode_block};
pub use reader::{ManifestReader, StripeIter};
use wire::{GroupEntry, Root, StripeEntry};

/// What a manifest says about the whole pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHeader {
    /// The code the parity was computed with.
    pub codec: CodecId,
    /// `k`, `m` and the shard size the groups were cut with.
    pub layout: Layout,
    /// The root of the DAG this manifest covers.
    pub root: Cid,
    /// Leaf blocks in all stripes (the data cells).
    pub leaves: u64,
    /// Bytes of those leaves, unpadded.
    pub leaf_bytes: u64,
    /// Stripes in all groups.
    pub stripes: u64,
    /// Groups.
    pub groups: u64,
    /// Interior blocks listed (replicated, not striped).
    pub interior: u64,
}

/// One stripe: up to `k` data cells (fewer only in the last stripe, where
/// the missing cells count as empty) and `m` parity cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stripe {
    /// Position of the stripe in the DAG, from 0.
    pub index: u64,
    /// The group holding it.
    pub group: u64,
    /// CIDs of the data cells, columns `0..data.len()`, in DAG order.
    pub data: Vec<Cid>,
    /// Exact byte length of each data cell.
    pub lens: Vec<u64>,
    /// CIDs of the parity cells, columns `k..k + m`: raw blocks, each
    /// [`Stripe::cell_len`] bytes long.
    pub parity: Vec<Cid>,
}

impl Stripe {
    /// The padded cell length: that of the longest data cell, and of every
    /// parity cell.
    pub fn cell_len(&self) -> u64 {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    /// The CID of the cell in `column` of a `k`-data-column layout, or
    /// `None` if this (short) stripe has no cell there.
    pub fn cid(&self, k: usize, column: usize) -> Option<&Cid> {
        if column < k {
            self.data.get(column)
        } else {
            self.parity.get(column - k)
        }
    }

    /// The exact length of the cell in `column`, as [`Stripe::cid`].
    pub fn len_of(&self, k: usize, column: usize) -> Option<u64> {
        if column < k {
            self.lens.get(column).copied()
        } else if column - k < self.parity.len() {
            Some(self.cell_len())
        } else {
            None
        }
    }
}

/// One group: a run of stripes each of whose columns one peer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// Position of the group, from 0.
    pub index: u64,
    /// Its first stripe.
    pub first_stripe: u64,
    /// Its number of stripes.
    pub stripes: u64,
    /// Bytes in each of its columns, counting cells at their padded length
    /// (exact for parity columns, an upper bound for data columns).
    pub column_bytes: u64,
}

/// A whole manifest in memory: for tests, small pins and tools. Large pins
/// are written by the [`StripeEncoder`](super::StripeEncoder) and read
/// through a [`ManifestReader`], neither of which holds the lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The totals and the code.
    pub header: ManifestHeader,
    /// Every group, in order.
    pub groups: Vec<Group>,
    /// Every stripe, in order.
    pub stripes: Vec<Stripe>,
    /// Every interior block, in the order they were given.
    pub interior: Vec<Cid>,
}

/// Gives the bytes of a block by CID: a blockstore, a Bitswap session, a
/// map in a test. A closure `Fn(&Cid) -> Result<Bytes, E>` is one.
///
/// # To ensure correctness
///
/// Returned bytes need not be verified: the manifest reader hashes every
/// block it is given and refuses a mismatch.
pub trait BlockSource {
    /// The bytes of `cid`, or why they cannot be had.
    fn get(&self, cid: &Cid) -> Result<Bytes, Box<dyn StdError + Send + Sync>>;
}

impl<F, E> BlockSource for F
where
    F: Fn(&Cid) -> Result<Bytes, E>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    fn get(&self, cid: &Cid) -> Result<Bytes, Box<dyn StdError + Send + Sync>> {
        self(cid).map_err(Into::into)
    }
}

/// Why a manifest could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// DAG-CBOR encoding failed (out of memory).
    #[error("could not encode a manifest block: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },
    /// One item alone would make a block over 1 MiB.
    #[error(
        "a manifest block would be {size} bytes, over the 1 MiB block limit; this stripe has CIDs far larger than sha2-256 ones"
    )]
    BlockTooLarge {
        /// Its size.
        size: usize,
    },
    /// The manifest's stripes, groups and totals disagree.
    #[error("manifest is inconsistent: {reason}")]
    Inconsistent {
        /// What disagrees.
        reason: String,
    },
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The block source failed.
    #[error(
        "could not fetch manifest block {cid}: {source}; check that the manifest's blocks are pinned or reachable"
    )]
    Fetch {
        /// The block asked for.
        cid: Cid,
        /// The source's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The source returned bytes that do not hash to the CID.
    #[error(
        "manifest block {cid} is corrupt (its bytes do not match its CID); fetch it from another peer"
    )]
    Corrupt {
        /// The block.
        cid: Cid,
    },
    /// The root is DAG-CBOR but not a tessera EC manifest.
    #[error("{cid} is not a tessera erasure-coding manifest")]
    NotAManifest {
        /// The block.
        cid: Cid,
    },
    /// The manifest was written by a newer (or older) format.
    #[error(
        "manifest version {found} is not supported (this tessera reads version {supported}); upgrade tessera"
    )]
    UnsupportedVersion {
        /// Version in the root block.
        found: u64,
        /// Version this build reads.
        supported: u64,
    },
    /// A block is not the DAG-CBOR shape expected.
    #[error("manifest block {cid} does not decode: {reason}")]
    Decode {
        /// The block.
        cid: Cid,
        /// The decoder's message.
        reason: String,
    },
    /// A block decodes but contradicts the rest of the manifest.
    #[error("manifest block {cid} is invalid: {reason}")]
    Invalid {
        /// The block.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
    /// An index past the end of a list.
    #[error("index {index} is past the end of a list of {count}")]
    OutOfRange {
        /// Index asked for.
        index: u64,
        /// Items in the list.
        count: u64,
    },
    /// The manifest names an unknown codec.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The manifest's `k`, `m` or shard size are unusable.
    #[error("manifest layout is invalid: {0}")]
    Layout(#[from] LayoutError),
}

/// Writes a manifest as its items stream in, emitting list nodes as they
/// fill. Memory: one leaf per list plus a partial branch per level.
#[derive(Debug)]
pub(crate) struct ManifestBuilder {
    codec: CodecId,
    layout: Layout,
    stripes: ListBuilder<StripeEntry>,
    groups: ListBuilder<GroupEntry>,
    interior: ListBuilder<Cid>,
    leaves: u64,
    leaf_bytes: u64,
    next_stripe: u64,
    next_group: u64,
}

impl ManifestBuilder {
    pub(crate) fn new(codec: CodecId, layout: Layout, limits: ListLimits) -> Self {
        Self {
            codec,
            layout,
            stripes: ListBuilder::new(limits),
            groups: ListBuilder::new(limits),
            interior: ListBuilder::new(limits),
            leaves: 0,
            leaf_bytes: 0,
            next_stripe: 0,
            next_group: 0,
        }
    }

    /// Appends the next stripe; `stripe.index` must be the next one.
    pub(crate) fn push_stripe(
        &mut self,
        stripe: &Stripe,
        out: &mut Vec<Block>,
    ) -> Result<(), ManifestError> {
        let k = self.layout.data_shards;
        if stripe.index != self.next_stripe
            || stripe.data.is_empty()
            || stripe.data.len() > k
            || stripe.lens.len() != stripe.data.len()
            || stripe.parity.len() != self.layout.parity_shards
        {
            return Err(ManifestError::Inconsistent {
                reason: format!(
                    "stripe {} has {} data CIDs, {} lengths and {} parity CIDs for a {}+{} code (next stripe is {})",
                    stripe.index,
                    stripe.data.len(),
                    stripe.lens.len(),
                    stripe.parity.len(),
                    k,
                    self.layout.parity_shards,
                    self.next_stripe
                ),
            });
        }
        self.next_stripe += 1;
        self.leaves += stripe.data.len() as u64;
        self.leaf_bytes += stripe.lens.iter().sum::<u64>();
        self.stripes.push(
            StripeEntry {
                group: stripe.group,
                data: stripe.data.clone(),
                lens: stripe.lens.clone(),
                parity: stripe.parity.clone(),
            },
            out,
        )
    }

    /// Appends the next group; `group.index` must be the next one.
    pub(crate) fn push_group(
        &mut self,
        group: &Group,
        out: &mut Vec<Block>,
    ) -> Result<(), ManifestError> {
        if group.index != self.next_group || group.stripes == 0 {
            return Err(ManifestError::Inconsistent {
                reason: format!(
                    "group {} with {} stripes given where group {} was expected",
                    group.index, group.stripes, self.next_group
                ),
            });
        }
        self.next_group += 1;
        self.groups.push(
            GroupEntry {
                first: group.first_stripe,
                stripes: group.stripes,
                column_bytes: group.column_bytes,
            },
            out,
        )
    }

    pub(crate) fn push_interior(
        &mut self,
        cid: Cid,
        out: &mut Vec<Block>,
    ) -> Result<(), ManifestError> {
        self.interior.push(cid, out)
    }

    /// Writes the remaining nodes and the root block (last in `out`).
    pub(crate) fn finish(
        self,
        root: Cid,
        out: &mut Vec<Block>,
    ) -> Result<(Cid, ManifestHeader), ManifestError> {
        let stripes = self.stripes.finish(out)?;
        let groups = self.groups.finish(out)?;
        let interior = self.interior.finish(out)?;
        let header = ManifestHeader {
            codec: self.codec,
            layout: self.layout,
            root,
            leaves: self.leaves,
            leaf_bytes: self.leaf_bytes,
            stripes: stripes.count,
            groups: groups.count,
            interior: interior.count,
        };
        let block = encode_block(&Root {
            format: wire::FORMAT.to_owned(),
            version: wire::VERSION,
            codec: self.codec.as_str().to_owned(),
            k: self.layout.data_shards as u64,
            m: self.layout.parity_shards as u64,
            shard_size: self.layout.shard_size,
            root,
            leaves: self.leaves,
            leaf_bytes: self.leaf_bytes,
            stripes,
            groups,
            interior,
        })?;
        let cid = *block.cid();
        out.push(block);
        Ok((cid, header))
    }
}

impl Manifest {
    /// Encodes the manifest into its blocks, the root block last, and
    /// returns the root's CID. The same manifest always gives the same
    /// blocks.
    pub fn to_blocks(&self) -> Result<(Cid, Vec<Block>), ManifestError> {
        self.to_blocks_with(ListLimits::V1)
    }

    pub(crate) fn to_blocks_with(
        &self,
        limits: ListLimits,
    ) -> Result<(Cid, Vec<Block>), ManifestError> {
        self.check()?;
        let mut out = Vec::new();
        let mut b = ManifestBuilder::new(self.header.codec, self.header.layout, limits);
        for s in &self.stripes {
            b.push_stripe(s, &mut out)?;
        }
        for g in &self.groups {
            b.push_group(g, &mut out)?;
        }
        for c in &self.interior {
            b.push_interior(*c, &mut out)?;
        }
        let (cid, header) = b.finish(self.header.root, &mut out)?;
        if header != self.header {
            return Err(ManifestError::Inconsistent {
                reason: format!(
                    "header totals {:?} do not match the lists ({header:?})",
                    self.header
                ),
            });
        }
        Ok((cid, out))
    }

    /// Reads a whole manifest, checking every block's hash and that groups,
    /// stripes and totals agree.
    pub fn load<S: BlockSource>(source: S, manifest: &Cid) -> Result<Manifest, LoadError> {
        let mut r = ManifestReader::open(source, manifest)?;
        let header = r.header().clone();
        let groups = (0..header.groups)
            .map(|g| r.group(g))
            .collect::<Result<Vec<_>, _>>()?;
        let stripes = r
            .stripes(0..header.stripes)
            .collect::<Result<Vec<_>, _>>()?;
        let interior = (0..header.interior)
            .map(|i| r.interior(i))
            .collect::<Result<Vec<_>, _>>()?;
        let m = Manifest {
            header,
            groups,
            stripes,
            interior,
        };
        m.check().map_err(|e| LoadError::Invalid {
            cid: *manifest,
            reason: e.to_string(),
        })?;
        Ok(m)
    }

    /// Checks that groups tile the stripes, that stripes name their group,
    /// that only the last stripe is short, and that totals add up.
    fn check(&self) -> Result<(), ManifestError> {
        let bad = |reason: String| Err(ManifestError::Inconsistent { reason });
        let k = self.header.layout.data_shards;
        let mut next = 0u64;
        for (i, g) in self.groups.iter().enumerate() {
            if g.index != i as u64 || g.first_stripe != next || g.stripes == 0 {
                return bad(format!(
                    "group {i} does not start where group {} ended",
                    i.saturating_sub(1)
                ));
            }
            let end = g.first_stripe + g.stripes;
            let mut bytes = 0u64;
            for s in self
                .stripes
                .get(g.first_stripe as usize..end as usize)
                .unwrap_or(&[])
            {
                if s.group != g.index {
                    return bad(format!(
                        "stripe {} says group {}, but lies in group {}",
                        s.index, s.group, g.index
                    ));
                }
                bytes += s.cell_len();
            }
            if bytes != g.column_bytes {
                return bad(format!(
                    "group {i} says {} column bytes, its stripes hold {bytes}",
                    g.column_bytes
                ));
            }
            next = end;
        }
        if next != self.stripes.len() as u64 {
            return bad(format!(
                "groups cover {next} stripes of {}",
                self.stripes.len()
            ));
        }
        let last = self.stripes.len().saturating_sub(1);
        for (i, s) in self.stripes.iter().enumerate() {
            if s.index != i as u64 || (i != last && s.data.len() != k) {
                return bad(format!("stripe {i} is short but not last, or out of order"));
            }
        }
        let leaves: u64 = self.stripes.iter().map(|s| s.data.len() as u64).sum();
        let leaf_bytes: u64 = self.stripes.iter().flat_map(|s| &s.lens).sum();
        let h = &self.header;
        if (h.leaves, h.leaf_bytes, h.stripes, h.groups, h.interior)
            != (
                leaves,
                leaf_bytes,
                self.stripes.len() as u64,
                self.groups.len() as u64,
                self.interior.len() as u64,
            )
        {
            return bad("header totals do not match the lists".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use multihash_codetable::{Code, MultihashDigest};
    use proptest::prelude::*;
    use tessera_blockstore::{DAG_PB, RAW};

    use super::*;

    fn cid(codec: u64, n: u64) -> Cid {
        Cid::new_v1(codec, Code::Sha2_256.digest(&n.to_le_bytes()))
    }

    fn store(blocks: &[Block]) -> HashMap<Cid, Bytes> {
        blocks
            .iter()
            .map(|b| (*b.cid(), b.data().clone()))
            .collect()
    }

    fn getter(map: &HashMap<Cid, Bytes>) -> impl Fn(&Cid) -> Result<Bytes, String> + '_ {
        |c| map.get(c).cloned().ok_or_else(|| format!("no block {c}"))
    }

    /// A consistent manifest: `stripes` stripes, groups of `per_group`,
    /// data lengths from `len`.
    fn manifest(
        k: usize,
        m: usize,
        stripes: u64,
        per_group: u64,
        short_last: usize,
        interior: u64,
    ) -> Manifest {
        let layout = Layout {
            data_shards: k,
            parity_shards: m,
            shard_size: 1 << 30,
        };
        let mut n = 0u64;
        let mut next = |codec| {
            n += 1;
            cid(codec, n)
        };
        let stripes: Vec<Stripe> = (0..stripes)
            .map(|i| {
                let d = if i + 1 == stripes && short_last > 0 {
                    short_last.min(k)
                } else {
                    k
                };
                Stripe {
                    index: i,
                    group: i / per_group,
                    data: (0..d).map(|_| next(RAW)).collect(),
                    lens: (0..d).map(|j| (i * 7 + j as u64 * 13) % 300).collect(),
                    parity: (0..m).map(|_| next(RAW)).collect(),
                }
            })
            .collect();
        let groups: Vec<Group> = stripes
            .chunks(per_group as usize)
            .enumerate()
            .map(|(g, s)| Group {
                index: g as u64,
                first_stripe: s[0].index,
                stripes: s.len() as u64,
                column_bytes: s.iter().map(Stripe::cell_len).sum(),
            })
            .collect();
        let interior: Vec<Cid> = (0..interior).map(|_| next(DAG_PB)).collect();
        Manifest {
            header: ManifestHeader {
                codec: CodecId::ReedSolomonCauchy,
                layout,
                root: cid(DAG_PB, u64::MAX),
                leaves: stripes.iter().map(|s| s.data.len() as u64).sum(),
                leaf_bytes: stripes.iter().flat_map(|s| &s.lens).sum(),
                stripes: stripes.len() as u64,
                groups: groups.len() as u64,
                interior: interior.len() as u64,
            },
            groups,
            stripes,
            interior,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn manifests_round_trip_exactly(
            (k, m) in (1usize..20, 1usize..10),
            stripes in 0u64..120,
            per_group in 1u64..30,
            short_last in 0usize..20,
            interior in 0u64..50,
            page_bytes in 1usize..3000,
            fanout in 2usize..6,
        ) {
            let want = manifest(k, m, stripes, per_group, short_last, interior);
            let limits = ListLimits { page_bytes, fanout };
            let (root, blocks) = want.to_blocks_with(limits).unwrap();
            prop_assert_eq!(blocks.last().map(|b| *b.cid()), Some(root));
            let map = store(&blocks);
            let got = Manifest::load(getter(&map), &root).unwrap();
            prop_assert_eq!(&got, &want);
            // Same manifest, same blocks.
            let (again, blocks2) = got.to_blocks_with(limits).unwrap();
            prop_assert_eq!(again, root);
            prop_assert_eq!(blocks2, blocks);
            // Every block is reachable from the root, and nothing else is.
            let mut reachable = ManifestReader::open(getter(&map), &root).unwrap().manifest_blocks().unwrap();
            // Lists with equal contents (say, two empty ones) share blocks.
            reachable.sort();
            reachable.dedup();
            let mut all: Vec<Cid> = map.keys().copied().collect();
            all.sort();
            prop_assert_eq!(reachable, all);
        }
    }

    #[test]
    fn a_100_gib_file_stays_under_1_mib_per_block() {
        // 100 GiB of 256 KiB leaves (409 600), 6+3, 100 MiB shards: 68 267
        // stripes, 171 groups, and one interior node per 174 leaves.
        let leaves = (100u64 << 30) / (256 << 10);
        let stripes = leaves.div_ceil(6);
        let per_group = (100 << 20) / (256 << 10);
        let m = manifest(
            6,
            3,
            stripes,
            per_group,
            (leaves % 6) as usize,
            leaves / 174,
        );
        assert_eq!(m.header.leaves, leaves);
        let (root, blocks) = m.to_blocks().unwrap();
        let largest = blocks.iter().map(|b| b.data().len()).max().unwrap();
        assert!(
            largest < 1 << 20,
            "largest manifest block is {largest} bytes"
        );
        let map = store(&blocks);
        let mut r = ManifestReader::open(getter(&map), &root).unwrap();
        assert_eq!(r.header(), &m.header);
        for i in [0, 1, stripes / 2, stripes - 1] {
            assert_eq!(r.stripe(i).unwrap(), m.stripes[i as usize]);
        }
        assert_eq!(r.group(170).unwrap(), m.groups[170]);
        assert_eq!(
            r.interior(leaves / 174 - 1).unwrap(),
            m.interior[m.interior.len() - 1]
        );
    }

    #[test]
    fn reader_lists_a_column() {
        let m = manifest(3, 2, 10, 4, 1, 0);
        let (root, blocks) = m
            .to_blocks_with(ListLimits {
                page_bytes: 200,
                fanout: 2,
            })
            .unwrap();
        let map = store(&blocks);
        let mut r = ManifestReader::open(getter(&map), &root).unwrap();
        // Group 2 holds stripes 8 and 9; stripe 9 is short (one data cell).
        let col1 = r.column(2, 1).unwrap();
        assert_eq!(col1, vec![(8, m.stripes[8].data[1], m.stripes[8].lens[1])]);
        let col4 = r.column(2, 4).unwrap();
        assert_eq!(
            col4,
            vec![
                (8, m.stripes[8].parity[1], m.stripes[8].cell_len()),
                (9, m.stripes[9].parity[1], m.stripes[9].cell_len())
            ]
        );
        assert!(matches!(r.column(2, 5), Err(LoadError::OutOfRange { .. })));
        assert!(matches!(
            r.group(3),
            Err(LoadError::OutOfRange { index: 3, count: 3 })
        ));
    }

    fn root_with(f: impl FnOnce(&mut wire::Root)) -> (Cid, HashMap<Cid, Bytes>) {
        let m = manifest(2, 1, 3, 2, 0, 1);
        let (root, blocks) = m.to_blocks().unwrap();
        let mut map = store(&blocks);
        let mut r: wire::Root = serde_ipld_dagcbor::from_slice(&map[&root]).unwrap();
        f(&mut r);
        let b = encode_block(&r).unwrap();
        map.insert(*b.cid(), b.data().clone());
        (*b.cid(), map)
    }

    #[test]
    fn unknown_versions_and_foreign_blocks_are_refused() {
        let (root, map) = root_with(|r| r.version = 2);
        assert!(matches!(
            Manifest::load(getter(&map), &root),
            Err(LoadError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
        let msg = ManifestReader::open(getter(&map), &root)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("upgrade tessera"), "{msg}");

        let (root, map) = root_with(|r| r.format = "something-else".into());
        assert!(matches!(
            Manifest::load(getter(&map), &root),
            Err(LoadError::NotAManifest { .. })
        ));

        let (root, map) = root_with(|r| r.codec = "rs-vandermonde".into());
        assert!(matches!(
            Manifest::load(getter(&map), &root),
            Err(LoadError::Codec(CodecError::UnknownCodec { .. }))
        ));

        let (root, map) = root_with(|r| r.m = 0);
        assert!(matches!(
            Manifest::load(getter(&map), &root),
            Err(LoadError::Layout(LayoutError::NoParityShards))
        ));

        // A version-2 root may have entirely different fields: the version
        // is read before anything else.
        #[derive(serde::Serialize)]
        struct Future {
            format: &'static str,
            version: u64,
            shards: Vec<String>,
        }
        let b = encode_block(&Future {
            format: wire::FORMAT,
            version: 9,
            shards: vec!["x".into()],
        })
        .unwrap();
        let map = store(std::slice::from_ref(&b));
        assert!(matches!(
            Manifest::load(getter(&map), b.cid()),
            Err(LoadError::UnsupportedVersion { found: 9, .. })
        ));
        // Raw bytes that are not DAG-CBOR at all.
        let raw = Block::from_data_v1(RAW, Bytes::from_static(b"\xff\x00 not cbor"));
        let map = store(std::slice::from_ref(&raw));
        assert!(matches!(
            Manifest::load(getter(&map), raw.cid()),
            Err(LoadError::NotAManifest { .. })
        ));
    }

    #[test]
    fn corrupt_missing_and_inconsistent_blocks_are_refused() {
        let m = manifest(2, 1, 5, 2, 1, 3);
        let (root, blocks) = m
            .to_blocks_with(ListLimits {
                page_bytes: 100,
                fanout: 2,
            })
            .unwrap();
        // A list node whose bytes were swapped for another block's.
        let mut map = store(&blocks);
        let victim = *blocks[0].cid();
        map.insert(victim, blocks[1].data().clone());
        assert!(
            matches!(Manifest::load(getter(&map), &root), Err(LoadError::Corrupt { cid }) if cid == victim)
        );
        // A missing node.
        let mut map = store(&blocks);
        map.remove(&victim);
        assert!(matches!(
            Manifest::load(getter(&map), &root),
            Err(LoadError::Fetch { .. })
        ));

        // Totals that disagree with the lists are refused on write and read.
        let mut bad = m.clone();
        bad.header.leaf_bytes += 1;
        assert!(matches!(
            bad.to_blocks(),
            Err(ManifestError::Inconsistent { .. })
        ));
        let (root, map) = root_with(|r| r.leaf_bytes += 1);
        assert!(matches!(
            Manifest::load(getter(&map), &root),
            Err(LoadError::Invalid { .. })
        ));
        // A stripe in the wrong group.
        let mut bad = m.clone();
        bad.stripes[1].group = 1;
        assert!(matches!(
            bad.to_blocks(),
            Err(ManifestError::Inconsistent { .. })
        ));
    }
}
