//! The streaming stripe encoder: blocks in, in DAG order; stripes of data
//! and parity blocks out as soon as each is full, and the manifest written
//! along the way.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use rayon::prelude::*;
use tessera_blockstore::{Block, RAW};

use super::codec::{Codec, CodecError, CodecId};
use super::layout::{GroupCutter, Layout, LayoutError, MAX_CELL_LEN};
use super::manifest::{Group, ListLimits, ManifestBuilder, ManifestError, ManifestHeader, Stripe};
use super::parallel;

/// What a block is to the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A block without links (a raw leaf, or a dag-pb leaf of a CIDv0
    /// import): it becomes a data cell of a stripe.
    Leaf,
    /// A DAG node with links: small, replicated to `m + 1` peers rather
    /// than striped, and listed in the manifest.
    Interior,
}

/// A block the encoder hands back, with what the caller must do with it.
#[derive(Clone, Debug)]
pub enum Emitted {
    /// A complete stripe: place cell `j` on the holder of column `j` of its
    /// group.
    Stripe(EncodedStripe),
    /// An interior block, passed through: replicate it.
    Interior(Block),
    /// A block of the manifest: replicate it.
    Manifest(Block),
}

/// One encoded stripe: its data blocks, its freshly computed parity blocks
/// (raw, CIDv1, sha2-256), and its manifest entry.
#[derive(Clone, Debug)]
pub struct EncodedStripe {
    stripe: Stripe,
    k: usize,
    data: Vec<Block>,
    parity: Vec<Block>,
}

impl EncodedStripe {
    /// Index, group, CIDs and lengths, as the manifest records them.
    pub fn stripe(&self) -> &Stripe {
        &self.stripe
    }

    /// The data blocks, columns `0..data().len()`.
    pub fn data(&self) -> &[Block] {
        &self.data
    }

    /// The parity blocks, columns `k..k + m`.
    pub fn parity(&self) -> &[Block] {
        &self.parity
    }

    /// Every cell with its column. Parity columns start at `k` even in a
    /// short stripe, whose missing data columns stay empty.
    pub fn cells(&self) -> impl Iterator<Item = (usize, &Block)> {
        let k = self.k;
        self.data
            .iter()
            .enumerate()
            .chain(self.parity.iter().enumerate().map(move |(i, b)| (k + i, b)))
    }

    /// The manifest entry and every cell with its column, by value.
    pub fn into_parts(self) -> (Stripe, Vec<(usize, Block)>) {
        let k = self.k;
        let cells = self
            .data
            .into_iter()
            .enumerate()
            .chain(self.parity.into_iter().enumerate().map(|(i, b)| (k + i, b)))
            .collect();
        (self.stripe, cells)
    }
}

/// The end of an encoding: the last blocks, and the manifest's CID.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Blocks still to place: the short last stripe, the last manifest
    /// blocks, the manifest root last.
    pub emitted: Vec<Emitted>,
    /// The manifest root's CID, to record beside the DAG root in the pinset.
    pub manifest: Cid,
    /// The manifest's totals.
    pub header: ManifestHeader,
}

/// Why encoding stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The layout is unusable.
    #[error("invalid erasure-coding layout: {0}")]
    Layout(#[from] LayoutError),
    /// The codec refused the stripe (a codec whose shape does not match the
    /// layout).
    #[error("erasure codec failed: {0}")]
    Codec(#[from] CodecError),
    /// The manifest could not be written.
    #[error("could not write the EC manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A leaf is longer than a cell may be (16 MiB).
    #[error(
        "leaf {cid} is {size} bytes, over the 16 MiB cell limit; import with a smaller chunk size"
    )]
    LeafTooLarge {
        /// The leaf.
        cid: Cid,
        /// Its length.
        size: usize,
    },
}

/// Turns a stream of DAG blocks into stripes, parity and a manifest.
///
/// Memory: the open stripe (at most `k` blocks, shared `Bytes`), its `m`
/// parity buffers while they are computed, and the manifest's open list
/// nodes. Encoding and hashing of parity run on rayon's pool, on all cores;
/// call the encoder from a blocking thread, not from an async task.
#[derive(Debug)]
pub struct StripeEncoder {
    layout: Layout,
    codec: Arc<dyn Codec>,
    pending: Vec<Block>,
    next_stripe: u64,
    groups: GroupCutter,
    manifest: ManifestBuilder,
}

impl StripeEncoder {
    /// An encoder for `layout` with tessera's Reed-Solomon codec.
    pub fn new(layout: Layout) -> Result<Self, EncodeError> {
        layout.validate()?;
        let codec = CodecId::ReedSolomonCauchy.build(layout.data_shards, layout.parity_shards)?;
        Self::with_codec(layout, codec)
    }

    /// An encoder for `layout` with a given codec, whose shape must match.
    pub fn with_codec(layout: Layout, codec: Arc<dyn Codec>) -> Result<Self, EncodeError> {
        Self::with_limits(layout, codec, ListLimits::V1)
    }

    pub(crate) fn with_limits(
        layout: Layout,
        codec: Arc<dyn Codec>,
        limits: ListLimits,
    ) -> Result<Self, EncodeError> {
        layout.validate()?;
        if (codec.data_cells(), codec.parity_cells()) != (layout.data_shards, layout.parity_shards)
        {
            return Err(CodecError::InvalidShape {
                data: codec.data_cells(),
                parity: codec.parity_cells(),
            }
            .into());
        }
        Ok(Self {
            layout,
            manifest: ManifestBuilder::new(codec.id(), layout, limits),
            codec,
            pending: Vec::with_capacity(layout.data_shards),
            next_stripe: 0,
            groups: GroupCutter::new(layout.shard_size),
        })
    }

    /// The layout being encoded.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Feeds the next block in DAG order. Leaves are held until their
    /// stripe is full, then come back with the stripe's parity; interior
    /// blocks come straight back.
    pub fn push(&mut self, block: Block, kind: BlockKind) -> Result<Vec<Emitted>, EncodeError> {
        let mut out = Vec::new();
        match kind {
            BlockKind::Interior => {
                let mut blocks = Vec::new();
                self.manifest.push_interior(*block.cid(), &mut blocks)?;
                out.push(Emitted::Interior(block));
                out.extend(blocks.into_iter().map(Emitted::Manifest));
            }
            BlockKind::Leaf => {
                if block.data().len() as u64 > MAX_CELL_LEN {
                    return Err(EncodeError::LeafTooLarge {
                        cid: *block.cid(),
                        size: block.data().len(),
                    });
                }
                self.pending.push(block);
                if self.pending.len() == self.layout.data_shards {
                    self.encode_stripe(&mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Encodes the short last stripe, if any, closes the last group and
    /// writes the manifest for the DAG rooted at `root`.
    pub fn finish(mut self, root: Cid) -> Result<Finished, EncodeError> {
        let mut emitted = Vec::new();
        if !self.pending.is_empty() {
            self.encode_stripe(&mut emitted)?;
        }
        let mut blocks = Vec::new();
        if let Some(g) = self.groups.close() {
            self.manifest.push_group(&group_of(g), &mut blocks)?;
        }
        let (manifest, header) = self.manifest.finish(root, &mut blocks)?;
        emitted.extend(blocks.into_iter().map(Emitted::Manifest));
        Ok(Finished {
            emitted,
            manifest,
            header,
        })
    }

    fn encode_stripe(&mut self, out: &mut Vec<Emitted>) -> Result<(), EncodeError> {
        let data = std::mem::take(&mut self.pending);
        self.pending.reserve(self.layout.data_shards);
        let k = self.layout.data_shards;
        let cell_len = data.iter().map(|b| b.data().len()).max().unwrap_or(0);

        // Cells shorter than the longest are padded with zeros, and a short
        // stripe's missing cells are all zeros. Only those are copied.
        let padded: Vec<Option<Vec<u8>>> = data
            .iter()
            .map(|b| {
                (b.data().len() < cell_len).then(|| {
                    let mut v = vec![0u8; cell_len];
                    v[..b.data().len()].copy_from_slice(b.data());
                    v
                })
            })
            .collect();
        let zeros = if data.len() < k {
            vec![0u8; cell_len]
        } else {
            Vec::new()
        };
        let mut inputs: Vec<&[u8]> = data
            .iter()
            .zip(&padded)
            .map(|(b, p)| p.as_deref().unwrap_or(b.data()))
            .collect();
        inputs.resize(k, &zeros);

        // One allocation per cell: `vec![vec![0; n]; m]` would clone (copy)
        // the first buffer m - 1 times.
        let mut parity: Vec<Vec<u8>> = (0..self.layout.parity_shards)
            .map(|_| vec![0u8; cell_len])
            .collect();
        parallel::encode(self.codec.as_ref(), &inputs, &mut parity)?;
        let parity: Vec<Block> = parity
            .into_par_iter()
            .map(|p| Block::from_data_v1(RAW, Bytes::from(p)))
            .collect();

        let index = self.next_stripe;
        self.next_stripe += 1;
        let (group, closed) = self.groups.place(index, cell_len as u64);
        let stripe = Stripe {
            index,
            group,
            data: data.iter().map(|b| *b.cid()).collect(),
            lens: data.iter().map(|b| b.data().len() as u64).collect(),
            parity: parity.iter().map(|b| *b.cid()).collect(),
        };
        let mut blocks = Vec::new();
        if let Some(g) = closed {
            self.manifest.push_group(&group_of(g), &mut blocks)?;
        }
        self.manifest.push_stripe(&stripe, &mut blocks)?;
        out.push(Emitted::Stripe(EncodedStripe {
            stripe,
            k,
            data,
            parity,
        }));
        out.extend(blocks.into_iter().map(Emitted::Manifest));
        Ok(())
    }
}

fn group_of(g: super::layout::ClosedGroup) -> Group {
    Group {
        index: g.index,
        first_stripe: g.first_stripe,
        stripes: g.stripes,
        column_bytes: g.column_bytes,
    }
}

#[cfg(test)]
mod tests {
    use tessera_blockstore::DAG_PB;

    use super::*;
    use crate::ec::reed_solomon::ReedSolomon;

    fn leaf(byte: u8, len: usize) -> Block {
        Block::from_data_v1(RAW, Bytes::from(vec![byte; len]))
    }

    fn stripes(emitted: &[Emitted]) -> Vec<&EncodedStripe> {
        emitted
            .iter()
            .filter_map(|e| match e {
                Emitted::Stripe(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stripe_comes_out_when_its_kth_leaf_goes_in() {
        let mut enc = StripeEncoder::new(Layout::new(3, 2)).unwrap();
        assert!(enc.push(leaf(1, 10), BlockKind::Leaf).unwrap().is_empty());
        // Interior blocks come straight back, stripes or not.
        let node = Block::from_data_v1(DAG_PB, Bytes::from_static(b"node"));
        let out = enc.push(node.clone(), BlockKind::Interior).unwrap();
        assert!(matches!(&out[..], [Emitted::Interior(b)] if *b == node));
        assert!(enc.push(leaf(2, 10), BlockKind::Leaf).unwrap().is_empty());
        let out = enc.push(leaf(3, 10), BlockKind::Leaf).unwrap();
        let s = stripes(&out);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].data().len(), s[0].parity().len()), (3, 2));
        let columns: Vec<usize> = s[0].cells().map(|(c, _)| c).collect();
        assert_eq!(columns, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn parity_is_the_codec_over_zero_padded_cells() {
        let (k, m) = (4, 2);
        let mut enc = StripeEncoder::new(Layout::new(k, m)).unwrap();
        // A short last stripe of cells 0, 5 and 300 bytes long: padded to
        // 300, with one all-zero cell for the missing fourth leaf.
        let leaves = [leaf(7, 0), leaf(8, 5), leaf(9, 300)];
        let mut out = Vec::new();
        for l in &leaves {
            out.extend(enc.push(l.clone(), BlockKind::Leaf).unwrap());
        }
        assert!(out.is_empty());
        let root = *leaves[0].cid();
        let finished = enc.finish(root).unwrap();
        let s = stripes(&finished.emitted)[0];
        assert_eq!(s.stripe().lens, [0, 5, 300]);
        assert_eq!(s.stripe().cell_len(), 300);

        let padded: Vec<Vec<u8>> = (0..k)
            .map(|j| {
                let mut v = vec![0u8; 300];
                if let Some(l) = leaves.get(j) {
                    v[..l.data().len()].copy_from_slice(l.data());
                }
                v
            })
            .collect();
        let ins: Vec<&[u8]> = padded.iter().map(Vec::as_slice).collect();
        let mut want: Vec<Vec<u8>> = (0..m).map(|_| vec![0u8; 300]).collect();
        let mut outs: Vec<&mut [u8]> = want.iter_mut().map(Vec::as_mut_slice).collect();
        ReedSolomon::new(k, m)
            .unwrap()
            .encode(&ins, &mut outs)
            .unwrap();
        for (p, w) in s.parity().iter().zip(&want) {
            assert_eq!(p.data().as_ref(), w.as_slice());
            // Parity blocks are CIDv1, raw, sha2-256.
            assert_eq!(p.cid().version(), cid::Version::V1);
            assert_eq!(p.cid().codec(), RAW);
            assert_eq!(p.cid().hash().code(), tessera_blockstore::SHA2_256);
        }
        // The manifest root comes last and is the CID returned.
        match finished.emitted.last() {
            Some(Emitted::Manifest(b)) => assert_eq!(*b.cid(), finished.manifest),
            other => panic!("last emitted block is {other:?}"),
        }
        assert_eq!(
            (finished.header.leaves, finished.header.leaf_bytes),
            (3, 305)
        );
    }

    #[test]
    fn an_empty_dag_gives_an_empty_manifest() {
        let enc = StripeEncoder::new(Layout::new(2, 1)).unwrap();
        let root = *leaf(0, 1).cid();
        let finished = enc.finish(root).unwrap();
        assert_eq!((finished.header.stripes, finished.header.groups), (0, 0));
        assert!(stripes(&finished.emitted).is_empty());
    }

    #[test]
    fn leaves_over_the_cell_limit_are_refused() {
        let mut enc = StripeEncoder::new(Layout::new(2, 1)).unwrap();
        let big = leaf(1, MAX_CELL_LEN as usize + 1);
        assert!(matches!(
            enc.push(big, BlockKind::Leaf),
            Err(EncodeError::LeafTooLarge { size, .. }) if size as u64 == MAX_CELL_LEN + 1
        ));
        // Exactly at the limit is fine.
        assert!(
            enc.push(leaf(2, MAX_CELL_LEN as usize), BlockKind::Leaf)
                .is_ok()
        );
    }

    #[test]
    fn layouts_and_codecs_that_disagree_are_refused() {
        let bad = Layout {
            parity_shards: 0,
            ..Layout::default()
        };
        assert!(matches!(
            StripeEncoder::new(bad),
            Err(EncodeError::Layout(LayoutError::NoParityShards))
        ));
        let codec: Arc<dyn Codec> = Arc::new(ReedSolomon::new(4, 2).unwrap());
        assert!(matches!(
            StripeEncoder::with_codec(Layout::new(6, 3), codec),
            Err(EncodeError::Codec(CodecError::InvalidShape {
                data: 4,
                parity: 2
            }))
        ));
    }
}
