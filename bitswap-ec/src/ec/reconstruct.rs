//! Rebuilding missing cells of a stripe from any `k` survivors, checked
//! against their CIDs: one block for a read, or a whole column for a repair.

use std::sync::Arc;

use bytes::Bytes;
use rayon::prelude::*;
use tessera_blockstore::Block;

use super::codec::{Codec, CodecError};
use super::layout::MAX_CELL_LEN;
use super::manifest::{ManifestHeader, Stripe};
use super::parallel;

/// Why cells could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconstructError {
    /// Fewer than `need` good cells: nothing was rebuilt. Cells that failed
    /// their CID check count as missing.
    #[error(
        "stripe {stripe}: only {have} good cells of the {need} needed; fetch more cells of this stripe from other peers"
    )]
    TooFewCells {
        /// The stripe.
        stripe: u64,
        /// Cells present with the right length and hash.
        have: usize,
        /// Cells needed: `k`, less the data cells a short last stripe lacks
        /// (those are known zeros).
        need: usize,
    },
    /// `cells` does not have one entry per column.
    #[error("expected {expected} cells (one per column, None for missing), got {got}")]
    CellCount {
        /// `k + m`.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// A wanted column has no cell in this stripe.
    #[error("stripe {stripe} has no cell in column {column}")]
    NoSuchCell {
        /// The stripe.
        stripe: u64,
        /// The column asked for.
        column: usize,
    },
    /// Even from cells that all match their CIDs, a rebuilt cell does not
    /// match its own: the manifest does not describe these blocks, or was
    /// written by another codec.
    #[error(
        "stripe {stripe}: rebuilt column {column} does not match its CID although every input did; the manifest is wrong for this data"
    )]
    Mismatch {
        /// The stripe.
        stripe: u64,
        /// The column.
        column: usize,
    },
    /// The stripe does not fit the codec: no data cells or more than `k`,
    /// lengths that do not match the CIDs, not `m` parity cells, or cells
    /// over 16 MiB.
    #[error(
        "stripe {stripe} does not fit this {k}+{m} code; check that the manifest and the codec belong together"
    )]
    InvalidStripe {
        /// The stripe.
        stripe: u64,
        /// Data cells of the code.
        k: usize,
        /// Parity cells of the code.
        m: usize,
    },
    /// The codec refused the call.
    #[error("erasure codec failed: {0}")]
    Codec(#[from] CodecError),
}

/// Rebuilds cells of the stripes of one manifest.
///
/// Present cells are not hashed up front: the wanted cells are decoded from
/// the first `k` present ones and checked against their CIDs. Only if one
/// fails are all present cells hashed, the corrupt ones dropped as missing,
/// and the decode retried. A rebuilt cell is returned only once it matches
/// its CID, so a result is never garbage.
#[derive(Clone, Debug)]
pub struct Reconstructor {
    codec: Arc<dyn Codec>,
}

impl Reconstructor {
    /// A reconstructor for stripes coded with `codec`.
    pub fn new(codec: Arc<dyn Codec>) -> Self {
        Self { codec }
    }

    /// A reconstructor for the codec and shape a manifest names.
    pub fn for_manifest(header: &ManifestHeader) -> Result<Self, CodecError> {
        let codec = header
            .codec
            .build(header.layout.data_shards, header.layout.parity_shards)?;
        Ok(Self::new(codec))
    }

    /// Rebuilds the cells of `stripe` in columns `wanted` from `cells`
    /// (`k + m` entries, `None` for the missing), returning them in the
    /// order asked, each checked against its CID. Decoding uses all cores.
    pub fn rebuild(
        &self,
        stripe: &Stripe,
        cells: &[Option<Bytes>],
        wanted: &[usize],
    ) -> Result<Vec<Block>, ReconstructError> {
        self.rebuild_with(stripe, cells, wanted, true)
    }

    /// Rebuilds column `column` of many stripes in one pass, in parallel
    /// across stripes, sharing the decode matrix of each erasure pattern:
    /// the repair of one lost shard. A stripe without a cell in `column` (a
    /// short last stripe) gives `Ok(None)`.
    pub fn rebuild_column(
        &self,
        column: usize,
        batch: &[(Stripe, Vec<Option<Bytes>>)],
    ) -> Vec<Result<Option<Block>, ReconstructError>> {
        let k = self.codec.data_cells();
        batch
            .par_iter()
            .map(|(stripe, cells)| {
                if stripe.cid(k, column).is_none() {
                    return Ok(None);
                }
                Ok(self.rebuild_with(stripe, cells, &[column], false)?.pop())
            })
            .collect()
    }

    fn rebuild_with(
        &self,
        stripe: &Stripe,
        cells: &[Option<Bytes>],
        wanted: &[usize],
        split: bool,
    ) -> Result<Vec<Block>, ReconstructError> {
        let (k, m) = (self.codec.data_cells(), self.codec.parity_cells());
        if cells.len() != k + m {
            return Err(ReconstructError::CellCount {
                expected: k + m,
                got: cells.len(),
            });
        }
        let d = stripe.data.len();
        if d == 0
            || d > k
            || stripe.lens.len() != d
            || stripe.parity.len() != m
            || stripe.cell_len() > MAX_CELL_LEN
        {
            return Err(ReconstructError::InvalidStripe {
                stripe: stripe.index,
                k,
                m,
            });
        }
        for &w in wanted {
            if stripe.cid(k, w).is_none() {
                return Err(ReconstructError::NoSuchCell {
                    stripe: stripe.index,
                    column: w,
                });
            }
        }
        // A cell of the wrong length is corrupt: treat it as missing now.
        let mut usable: Vec<bool> = (0..k + m)
            .map(|j| match (&cells[j], stripe.len_of(k, j)) {
                (Some(c), Some(len)) => c.len() as u64 == len,
                _ => false,
            })
            .collect();
        if let Some(blocks) = self.attempt(stripe, cells, &usable, wanted, split)? {
            return Ok(blocks);
        }
        // Some rebuilt cell failed its CID: an input was corrupt. Hash every
        // candidate, drop the bad ones, and decode again from good cells.
        let checks: Vec<(usize, bool)> = (0..k + m)
            .into_par_iter()
            .filter(|&j| usable[j])
            .map(|j| {
                let ok = match (&cells[j], stripe.cid(k, j)) {
                    (Some(c), Some(cid)) => tessera_blockstore::verify(cid, c).is_ok(),
                    _ => false,
                };
                (j, ok)
            })
            .collect();
        for (j, ok) in checks {
            usable[j] = ok;
        }
        match self.attempt(stripe, cells, &usable, wanted, split)? {
            Some(blocks) => Ok(blocks),
            None => Err(ReconstructError::Mismatch {
                stripe: stripe.index,
                column: wanted.first().copied().unwrap_or(0),
            }),
        }
    }

    /// One decode from the first `k` usable cells; `None` if a rebuilt cell
    /// fails its CID.
    fn attempt(
        &self,
        stripe: &Stripe,
        cells: &[Option<Bytes>],
        usable: &[bool],
        wanted: &[usize],
        split: bool,
    ) -> Result<Option<Vec<Block>>, ReconstructError> {
        let (k, m) = (self.codec.data_cells(), self.codec.parity_cells());
        let d = stripe.data.len();
        let cell_len = stripe.cell_len() as usize;
        let need = d;
        let have = usable.iter().filter(|&&u| u).count();
        // The data columns a short stripe lacks are known zeros: they are
        // free cells, and used first.
        if have + (k - d) < k {
            return Err(ReconstructError::TooFewCells {
                stripe: stripe.index,
                have,
                need,
            });
        }
        let zeros = if d < k {
            vec![0u8; cell_len]
        } else {
            Vec::new()
        };
        let mut chosen: Vec<usize> = (d..k).collect();
        chosen.extend((0..k + m).filter(|&j| usable[j]).take(d));
        chosen.sort_unstable();
        // Chosen cells shorter than the stripe are padded with zeros.
        let padded: Vec<(usize, Vec<u8>)> = chosen
            .iter()
            .filter(|&&j| j < d)
            .filter_map(|&j| {
                let c = cells[j].as_ref()?;
                (c.len() < cell_len).then(|| {
                    let mut v = vec![0u8; cell_len];
                    v[..c.len()].copy_from_slice(c);
                    (j, v)
                })
            })
            .collect();
        let mut inputs: Vec<Option<&[u8]>> = vec![None; k + m];
        for &j in &chosen {
            inputs[j] = if j >= d && j < k {
                Some(&zeros)
            } else if let Some((_, v)) = padded.iter().find(|(p, _)| *p == j) {
                Some(v)
            } else {
                cells[j].as_deref()
            };
        }
        let mut out: Vec<Vec<u8>> = wanted.iter().map(|_| vec![0u8; cell_len]).collect();
        if split {
            parallel::reconstruct(self.codec.as_ref(), &inputs, wanted, &mut out)?;
        } else {
            let mut outs: Vec<&mut [u8]> = out.iter_mut().map(Vec::as_mut_slice).collect();
            self.codec.reconstruct(&inputs, wanted, &mut outs)?;
        }
        let check = |(w, mut bytes): (&usize, Vec<u8>)| -> Option<Block> {
            let cid = stripe.cid(k, *w)?;
            bytes.truncate(stripe.len_of(k, *w)? as usize);
            Block::verified(*cid, Bytes::from(bytes)).ok()
        };
        let blocks: Option<Vec<Block>> = if split && wanted.len() > 1 {
            wanted.par_iter().zip(out).map(check).collect()
        } else {
            wanted.iter().zip(out).map(check).collect()
        };
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cid::Cid;
    use proptest::prelude::*;
    use tessera_blockstore::RAW;

    use super::*;
    use crate::ec::encoder::{BlockKind, Emitted, StripeEncoder};
    use crate::ec::layout::Layout;
    use crate::ec::manifest::Manifest;

    /// SplitMix64: erasure patterns from one proptest-chosen seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// `count` distinct values of `from`, in random order.
        fn pick(&mut self, from: &[usize], count: usize) -> Vec<usize> {
            let mut v = from.to_vec();
            for i in 0..v.len() {
                let j = i + self.below(v.len() - i);
                v.swap(i, j);
            }
            v.truncate(count);
            v
        }
    }

    fn leaf(i: usize, len: usize) -> Block {
        let bytes: Vec<u8> = (0..len)
            .map(|p| {
                (p.wrapping_mul(131)
                    .wrapping_add(i.wrapping_mul(7))
                    .wrapping_add(1)) as u8
            })
            .collect();
        Block::from_data_v1(RAW, Bytes::from(bytes))
    }

    /// Encodes leaves of the given sizes (with an interior block after
    /// every third leaf) and returns the stripes with their cells, the
    /// manifest CID and every emitted block.
    struct Encoded {
        stripes: Vec<(Stripe, Vec<Option<Bytes>>)>,
        manifest: Cid,
        store: HashMap<Cid, Bytes>,
    }

    fn encode(layout: Layout, sizes: &[usize]) -> Encoded {
        let mut enc = StripeEncoder::new(layout).unwrap();
        let mut emitted = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            emitted.extend(enc.push(leaf(i, len), BlockKind::Leaf).unwrap());
            if i % 3 == 2 {
                let node =
                    Block::from_data_v1(tessera_blockstore::DAG_PB, Bytes::from(vec![i as u8; 3]));
                emitted.extend(enc.push(node, BlockKind::Interior).unwrap());
            }
        }
        let root = *leaf(usize::MAX, 1).cid();
        let finished = enc.finish(root).unwrap();
        emitted.extend(finished.emitted);
        let mut out = Encoded {
            stripes: Vec::new(),
            manifest: finished.manifest,
            store: HashMap::new(),
        };
        let n = layout.columns();
        for e in emitted {
            match e {
                Emitted::Stripe(s) => {
                    let (stripe, blocks) = s.into_parts();
                    let mut cells = vec![None; n];
                    for (col, b) in blocks {
                        out.store.insert(*b.cid(), b.data().clone());
                        cells[col] = Some(b.data().clone());
                    }
                    out.stripes.push((stripe, cells));
                }
                Emitted::Interior(b) | Emitted::Manifest(b) => {
                    out.store.insert(*b.cid(), b.data().clone());
                }
            }
        }
        out
    }

    fn real_columns(layout: &Layout, stripe: &Stripe) -> Vec<usize> {
        (0..stripe.data.len())
            .chain(layout.data_shards..layout.columns())
            .collect()
    }

    /// Erases `erase` random real cells of every stripe (and corrupts one
    /// more when there is room), rebuilds them and checks the bytes.
    fn check_rebuilds(
        layout: Layout,
        sizes: &[usize],
        seed: u64,
        corrupt: bool,
    ) -> Result<(), TestCaseError> {
        let enc = encode(layout, sizes);
        let manifest = Manifest::load(
            |c: &Cid| enc.store.get(c).cloned().ok_or("missing"),
            &enc.manifest,
        )
        .unwrap();
        prop_assert_eq!(manifest.stripes.len(), enc.stripes.len());
        let rec = Reconstructor::for_manifest(&manifest.header).unwrap();
        let mut rng = Rng(seed);
        for ((stripe, cells), loaded) in enc.stripes.iter().zip(&manifest.stripes) {
            prop_assert_eq!(stripe, loaded);
            let real = real_columns(&layout, stripe);
            let erase = rng.below(layout.parity_shards + 1);
            let picked = rng.pick(&real, erase + 1);
            let (lost, spare) = picked.split_at(erase);
            let mut damaged = cells.clone();
            for &j in lost {
                damaged[j] = None;
            }
            // Corruption is an erasure: only allowed while one is left.
            if corrupt
                && erase < layout.parity_shards
                && let Some(&victim) = spare.first()
                && let Some(c) = &damaged[victim]
            {
                let mut v = c.to_vec();
                match v.first_mut() {
                    Some(b) => *b ^= 0x5a,
                    None => v.push(1), // a 0-byte cell corrupted by growing
                }
                damaged[victim] = Some(Bytes::from(v));
            }
            let rebuilt = rec.rebuild(stripe, &damaged, lost).unwrap();
            for (&j, b) in lost.iter().zip(&rebuilt) {
                prop_assert_eq!(
                    Some(b.data()),
                    cells[j].as_ref(),
                    "stripe {} column {}",
                    stripe.index,
                    j
                );
            }
        }
        Ok(())
    }

    fn sizes() -> impl Strategy<Value = Vec<usize>> {
        // 0- and 1-byte blocks are frequent; lengths cross the 64-byte
        // kernel step and the 32-byte SSSE3 step.
        let size = prop_oneof![Just(0usize), Just(1), 0usize..200, 0usize..3000];
        proptest::collection::vec(size, 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn up_to_m_erasures_in_every_stripe_rebuild_identical_blocks(
            k in 1usize..9,
            m in 1usize..5,
            shard_size in 1u64..20_000,
            sizes in sizes(),
            seed in any::<u64>(),
            corrupt in any::<bool>(),
        ) {
            let layout = Layout { data_shards: k, parity_shards: m, shard_size };
            check_rebuilds(layout, &sizes, seed, corrupt)?;
        }

        #[test]
        fn m_plus_one_erasures_fail_cleanly(
            k in 1usize..9,
            m in 1usize..5,
            sizes in sizes(),
            seed in any::<u64>(),
        ) {
            let layout = Layout { data_shards: k, parity_shards: m, shard_size: 1 << 20 };
            let enc = encode(layout, &sizes);
            let rec = Reconstructor::new(crate::ec::codec::CodecId::ReedSolomonCauchy.build(k, m).unwrap());
            let mut rng = Rng(seed);
            let (stripe, cells) = &enc.stripes[rng.below(enc.stripes.len())];
            let real = real_columns(&layout, stripe);
            let lost = rng.pick(&real, m + 1);
            let mut damaged = cells.clone();
            for &j in &lost {
                damaged[j] = None;
            }
            let d = stripe.data.len();
            prop_assert_eq!(
                rec.rebuild(stripe, &damaged, &lost[..1]),
                Err(ReconstructError::TooFewCells { stripe: stripe.index, have: d - 1, need: d })
            );
            let column = rec.rebuild_column(lost[0], std::slice::from_ref(&(stripe.clone(), damaged)));
            let failed = matches!(column[0], Err(ReconstructError::TooFewCells { .. }));
            prop_assert!(failed, "column rebuild with m + 1 erasures: {:?}", column[0]);
        }
    }

    // Boundary sizes (6+3, 256-byte leaves so a cell is several kernel
    // steps): each one is where an off-by-one in stripe or group cutting
    // would show.

    /// Exactly one stripe: no short stripe at all, a single group.
    #[test]
    fn boundary_one_stripe() {
        let layout = Layout::new(6, 3);
        let enc = encode(layout, &[256; 6]);
        assert_eq!(enc.stripes.len(), 1);
        assert_eq!(enc.stripes[0].0.data.len(), 6);
        check_rebuilds(layout, &[256; 6], 1, true).unwrap();
    }

    /// One stripe plus one block: a second stripe of one data cell and five
    /// known-zero ones, rebuildable from any one of its four real cells.
    #[test]
    fn boundary_one_stripe_plus_one_block() {
        let layout = Layout::new(6, 3);
        let enc = encode(layout, &[256; 7]);
        assert_eq!(enc.stripes.len(), 2);
        let (last, cells) = &enc.stripes[1];
        assert_eq!(last.data.len(), 1);
        let rec = Reconstructor::for_manifest(
            &Manifest::load(
                |c: &Cid| enc.store.get(c).cloned().ok_or("missing"),
                &enc.manifest,
            )
            .unwrap()
            .header,
        )
        .unwrap();
        for keep in [0, 6, 7, 8] {
            let only: Vec<Option<Bytes>> = (0..9)
                .map(|j| if j == keep { cells[j].clone() } else { None })
                .collect();
            let lost: Vec<usize> = [0, 6, 7, 8].into_iter().filter(|&j| j != keep).collect();
            let rebuilt = rec.rebuild(last, &only, &lost).unwrap();
            for (j, b) in lost.iter().zip(rebuilt) {
                assert_eq!(Some(b.data()), cells[*j].as_ref());
            }
        }
        check_rebuilds(layout, &[256; 7], 2, true).unwrap();
    }

    /// One group plus one stripe: the group closes exactly at the shard
    /// size, and the next stripe opens a group of its own.
    #[test]
    fn boundary_one_group_plus_one_stripe() {
        // Groups of 4 stripes of 256-byte cells: shard size 1024.
        let layout = Layout {
            data_shards: 6,
            parity_shards: 3,
            shard_size: 1024,
        };
        let sizes = [256usize; 6 * 5];
        let enc = encode(layout, &sizes);
        let groups: Vec<u64> = enc.stripes.iter().map(|(s, _)| s.group).collect();
        assert_eq!(groups, [0, 0, 0, 0, 1]);
        check_rebuilds(layout, &sizes, 3, true).unwrap();
    }

    #[test]
    fn a_column_rebuilds_across_stripes_in_one_call() {
        let layout = Layout::new(4, 2);
        let sizes: Vec<usize> = (0..23).map(|i| 100 + i * 37).collect();
        let enc = encode(layout, &sizes);
        let rec = Reconstructor::new(
            crate::ec::codec::CodecId::ReedSolomonCauchy
                .build(4, 2)
                .unwrap(),
        );
        for column in [0, 3, 5] {
            let batch: Vec<(Stripe, Vec<Option<Bytes>>)> = enc
                .stripes
                .iter()
                .map(|(s, cells)| {
                    let mut c = cells.clone();
                    c[column] = None;
                    c[(column + 1) % 6] = None;
                    (s.clone(), c)
                })
                .collect();
            let rebuilt = rec.rebuild_column(column, &batch);
            for ((s, cells), r) in enc.stripes.iter().zip(rebuilt) {
                let r = r.unwrap();
                assert_eq!(
                    r.as_ref().map(|b| b.data()),
                    cells[column].as_ref(),
                    "stripe {}",
                    s.index
                );
            }
        }
    }

    #[test]
    fn a_cell_that_fails_its_cid_counts_as_missing() {
        let layout = Layout::new(2, 1);
        let enc = encode(layout, &[500, 500]);
        let (stripe, cells) = &enc.stripes[0];
        let rec = Reconstructor::new(
            crate::ec::codec::CodecId::ReedSolomonCauchy
                .build(2, 1)
                .unwrap(),
        );
        // Column 0 lost, column 1 corrupt (same length): only one good cell.
        let mut bad = cells[1].as_ref().unwrap().to_vec();
        bad[100] ^= 1;
        let damaged = vec![None, Some(Bytes::from(bad)), cells[2].clone()];
        assert_eq!(
            rec.rebuild(stripe, &damaged, &[0]),
            Err(ReconstructError::TooFewCells {
                stripe: 0,
                have: 1,
                need: 2
            })
        );
        // A cell of the wrong length is refused without hashing.
        let short = vec![
            None,
            Some(cells[1].as_ref().unwrap().slice(..499)),
            cells[2].clone(),
        ];
        assert!(matches!(
            rec.rebuild(stripe, &short, &[0]),
            Err(ReconstructError::TooFewCells { have: 1, .. })
        ));
    }

    #[test]
    fn stripes_that_do_not_fit_the_code_are_refused() {
        let layout = Layout::new(2, 1);
        let enc = encode(layout, &[10, 10]);
        let (stripe, cells) = &enc.stripes[0];
        let rec = Reconstructor::new(
            crate::ec::codec::CodecId::ReedSolomonCauchy
                .build(2, 1)
                .unwrap(),
        );
        let invalid = ReconstructError::InvalidStripe {
            stripe: 0,
            k: 2,
            m: 1,
        };
        let mut huge = stripe.clone();
        huge.lens[0] = MAX_CELL_LEN + 1;
        assert_eq!(rec.rebuild(&huge, cells, &[0]), Err(invalid.clone()));
        let mut extra = stripe.clone();
        extra.parity.push(extra.parity[0]);
        assert_eq!(rec.rebuild(&extra, cells, &[0]), Err(invalid.clone()));
        let mut no_lens = stripe.clone();
        no_lens.lens.pop();
        assert_eq!(rec.rebuild(&no_lens, cells, &[0]), Err(invalid));
    }

    #[test]
    fn wanted_columns_outside_a_short_stripe_are_refused() {
        let layout = Layout::new(4, 2);
        let enc = encode(layout, &[10]);
        let (stripe, cells) = &enc.stripes[0];
        let rec = Reconstructor::new(
            crate::ec::codec::CodecId::ReedSolomonCauchy
                .build(4, 2)
                .unwrap(),
        );
        assert_eq!(
            rec.rebuild(stripe, cells, &[2]),
            Err(ReconstructError::NoSuchCell {
                stripe: 0,
                column: 2
            })
        );
        assert_eq!(
            rec.rebuild(stripe, &cells[..5], &[0]),
            Err(ReconstructError::CellCount {
                expected: 6,
                got: 5
            })
        );
        assert_eq!(
            rec.rebuild_column(2, std::slice::from_ref(&enc.stripes[0])),
            vec![Ok(None)]
        );
    }
}
