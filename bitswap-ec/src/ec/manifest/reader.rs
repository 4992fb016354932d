//! Reads a manifest lazily: the root block at open, then one path of list
//! nodes per lookup, every block hash-checked.

use std::ops::Range;

use bytes::Bytes;
use cid::Cid;

use super::list::{LeafCache, lookup, node_cids};
use super::wire::{self, GroupEntry, Probe, Root, StripeEntry};
use super::{BlockSource, Group, LoadError, ManifestHeader, Stripe};
use crate::ec::codec::CodecId;
use crate::ec::layout::{Layout, MAX_CELL_LEN};

/// A manifest opened for reading, holding only its root and the last leaf
/// read of each list, whatever the size of the pin.
///
/// Sequential reads (a repair walking a group's stripes in order) fetch
/// each list block once.
pub struct ManifestReader<S> {
    source: S,
    cid: Cid,
    header: ManifestHeader,
    root: Root,
    stripes: Option<LeafCache<StripeEntry>>,
    groups: Option<LeafCache<GroupEntry>>,
    interior: Option<LeafCache<Cid>>,
}

impl<S> std::fmt::Debug for ManifestReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestReader")
            .field("cid", &self.cid)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<S: BlockSource> ManifestReader<S> {
    /// Fetches and checks the root block of the manifest `manifest`.
    pub fn open(source: S, manifest: &Cid) -> Result<Self, LoadError> {
        let bytes = fetch(&source, manifest)?;
        let probe: Probe = serde_ipld_dagcbor::from_slice(&bytes)
            .map_err(|_| LoadError::NotAManifest { cid: *manifest })?;
        if probe.format.as_deref() != Some(wire::FORMAT) {
            return Err(LoadError::NotAManifest { cid: *manifest });
        }
        match probe.version {
            Some(wire::VERSION) => {}
            found => {
                return Err(LoadError::UnsupportedVersion {
                    found: found.unwrap_or(0),
                    supported: wire::VERSION,
                });
            }
        }
        let root: Root = serde_ipld_dagcbor::from_slice(&bytes).map_err(|e| LoadError::Decode {
            cid: *manifest,
            reason: e.to_string(),
        })?;
        let codec: CodecId = root.codec.parse()?;
        let layout = Layout {
            data_shards: usize::try_from(root.k).unwrap_or(usize::MAX),
            parity_shards: usize::try_from(root.m).unwrap_or(usize::MAX),
            shard_size: root.shard_size,
        };
        layout.validate()?;
        if root.leaves < root.stripes.count
            || root.leaves > root.stripes.count.saturating_mul(root.k)
        {
            return Err(LoadError::Invalid {
                cid: *manifest,
                reason: format!(
                    "{} leaves cannot fill {} stripes",
                    root.leaves, root.stripes.count
                ),
            });
        }
        let header = ManifestHeader {
            codec,
            layout,
            root: root.root,
            leaves: root.leaves,
            leaf_bytes: root.leaf_bytes,
            stripes: root.stripes.count,
            groups: root.groups.count,
            interior: root.interior.count,
        };
        Ok(Self {
            source,
            cid: *manifest,
            header,
            root,
            stripes: None,
            groups: None,
            interior: None,
        })
    }

    /// The manifest's own CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The code, the layout and the totals.
    pub fn header(&self) -> &ManifestHeader {
        &self.header
    }

    /// Stripe `index`.
    pub fn stripe(&mut self, index: u64) -> Result<Stripe, LoadError> {
        let source = &self.source;
        let e: StripeEntry = lookup(&self.root.stripes, index, &mut self.stripes, |c| {
            fetch(source, c)
        })?;
        let (k, m) = (
            self.header.layout.data_shards,
            self.header.layout.parity_shards,
        );
        if e.data.is_empty()
            || e.data.len() > k
            || e.lens.len() != e.data.len()
            || e.parity.len() != m
            || e.group >= self.header.groups
            || e.lens.iter().any(|&l| l > MAX_CELL_LEN)
        {
            return Err(LoadError::Invalid {
                cid: self.cid,
                reason: format!(
                    "stripe {index} has {} data CIDs, {} lengths (the longest {}), {} parity CIDs and group {} in a {k}+{m} manifest of {} groups",
                    e.data.len(),
                    e.lens.len(),
                    e.lens.iter().max().unwrap_or(&0),
                    e.parity.len(),
                    e.group,
                    self.header.groups
                ),
            });
        }
        Ok(Stripe {
            index,
            group: e.group,
            data: e.data,
            lens: e.lens,
            parity: e.parity,
        })
    }

    /// Group `index`.
    pub fn group(&mut self, index: u64) -> Result<Group, LoadError> {
        let source = &self.source;
        let e: GroupEntry = lookup(&self.root.groups, index, &mut self.groups, |c| {
            fetch(source, c)
        })?;
        if e.stripes == 0 || e.first.saturating_add(e.stripes) > self.header.stripes {
            return Err(LoadError::Invalid {
                cid: self.cid,
                reason: format!("group {index} spans stripes past the end of the manifest"),
            });
        }
        Ok(Group {
            index,
            first_stripe: e.first,
            stripes: e.stripes,
            column_bytes: e.column_bytes,
        })
    }

    /// Interior block `index`, in the order the encoder was given them.
    pub fn interior(&mut self, index: u64) -> Result<Cid, LoadError> {
        let source = &self.source;
        lookup(&self.root.interior, index, &mut self.interior, |c| {
            fetch(source, c)
        })
    }

    /// The stripes in `range`, read lazily in order.
    pub fn stripes(&mut self, range: Range<u64>) -> StripeIter<'_, S> {
        StripeIter {
            reader: self,
            range,
        }
    }

    /// The cells of `column` in group `group`, in stripe order: what the
    /// peer holding that column stores. Short last stripes contribute no
    /// cell to the data columns they lack.
    pub fn column(&mut self, group: u64, column: usize) -> Result<Vec<(u64, Cid, u64)>, LoadError> {
        let g = self.group(group)?;
        let k = self.header.layout.data_shards;
        if column >= self.header.layout.columns() {
            return Err(LoadError::OutOfRange {
                index: column as u64,
                count: self.header.layout.columns() as u64,
            });
        }
        let mut out = Vec::new();
        for s in self.stripes(g.first_stripe..g.first_stripe + g.stripes) {
            let s = s?;
            if let (Some(cid), Some(len)) = (s.cid(k, column), s.len_of(k, column)) {
                out.push((s.index, *cid, len));
            }
        }
        Ok(out)
    }

    /// The CIDs of every block of the manifest itself, the root first: what
    /// must be replicated for the manifest to survive.
    pub fn manifest_blocks(&self) -> Result<Vec<Cid>, LoadError> {
        let mut out = vec![self.cid];
        for list in [&self.root.stripes, &self.root.groups, &self.root.interior] {
            out.extend(node_cids(list, |c| fetch(&self.source, c))?);
        }
        Ok(out)
    }
}

/// The stripes of a range, fetched as the iteration reaches them.
pub struct StripeIter<'a, S> {
    reader: &'a mut ManifestReader<S>,
    range: Range<u64>,
}

impl<S> std::fmt::Debug for StripeIter<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeIter")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl<S: BlockSource> Iterator for StripeIter<'_, S> {
    type Item = Result<Stripe, LoadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.range.next()?;
        let r = self.reader.stripe(i);
        if r.is_err() {
            // Stop after the first error rather than repeat it.
            self.range = self.range.end..self.range.end;
        }
        Some(r)
    }
}

fn fetch<S: BlockSource>(source: &S, cid: &Cid) -> Result<Bytes, LoadError> {
    let bytes = source
        .get(cid)
        .map_err(|source| LoadError::Fetch { cid: *cid, source })?;
    tessera_blockstore::verify(cid, &bytes).map_err(|_| LoadError::Corrupt { cid: *cid })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::Arc;

    use tessera_blockstore::{Block, RAW};

    use super::*;
    use crate::ec::encoder::{BlockKind, Emitted, StripeEncoder};
    use crate::ec::manifest::ListLimits;
    use crate::ec::reed_solomon::ReedSolomon;

    /// Six 2+1 stripes whose stripe list has one stripe per leaf node.
    fn six_stripes() -> (Cid, HashMap<Cid, Bytes>) {
        let limits = ListLimits {
            page_bytes: 150,
            fanout: 2,
        };
        let codec = Arc::new(ReedSolomon::new(2, 1).unwrap());
        let mut enc = StripeEncoder::with_limits(Layout::new(2, 1), codec, limits).unwrap();
        let mut emitted = Vec::new();
        for i in 0..12u8 {
            let b = Block::from_data_v1(RAW, Bytes::from(vec![i; 4]));
            emitted.extend(enc.push(b, BlockKind::Leaf).unwrap());
        }
        let finished = enc.finish(Cid::default()).unwrap();
        emitted.extend(finished.emitted);
        let blocks = emitted
            .into_iter()
            .filter_map(|e| match e {
                Emitted::Manifest(m) => Some(m.into_parts()),
                _ => None,
            })
            .collect();
        (finished.manifest, blocks)
    }

    #[test]
    fn stripe_iteration_stops_at_the_first_missing_block() {
        let (manifest, blocks) = six_stripes();
        // The last block fetched for stripe 2 is the leaf that holds it.
        let fetched = RefCell::new(Vec::new());
        let recording = |c: &Cid| {
            fetched.borrow_mut().push(*c);
            blocks.get(c).cloned().ok_or("gone")
        };
        let mut r = ManifestReader::open(recording, &manifest).unwrap();
        assert_eq!(r.header().stripes, 6);
        r.stripe(2).unwrap();
        let leaf_of_2 = *fetched.borrow().last().unwrap();
        // With every block present the walk yields all six.
        let mut again =
            ManifestReader::open(|c: &Cid| blocks.get(c).cloned().ok_or("gone"), &manifest)
                .unwrap();
        let all: Vec<u64> = again.stripes(0..6).map(|s| s.unwrap().index).collect();
        assert_eq!(all, [0, 1, 2, 3, 4, 5]);

        let mut partial = blocks.clone();
        partial.remove(&leaf_of_2);
        let mut r =
            ManifestReader::open(|c: &Cid| partial.get(c).cloned().ok_or("gone"), &manifest)
                .unwrap();
        let results: Vec<Result<Stripe, LoadError>> = r.stripes(0..6).collect();
        assert_eq!(results.len(), 3, "two stripes, one error, then the end");
        assert!(results[..2].iter().all(Result::is_ok));
        assert!(matches!(&results[2], Err(LoadError::Fetch { cid, .. }) if *cid == leaf_of_2));
        // Stripes past the hole are still reachable one by one.
        assert_eq!(r.stripe(4).unwrap().index, 4);
    }
}
