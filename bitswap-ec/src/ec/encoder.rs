//! The streaming stripe encoder: blocks in, in DAG order; stripes of data
//! and parity blocks out as soon as each is full, and the manifest written
//! along the way.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use rayon::prelude::*;
use tessera_blockstore::{Block, RAW};

use super::codec::{Codec, CodecError, CodecId};
use super::layout::{GroupCutter, Layout, LayoutError};
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
