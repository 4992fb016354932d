//! Where a CID sits in the erasure-coded pins this peer knows: which pin, and whether it is a cell
//! (group, stripe, column), an interior block or a manifest block.
//!
//! The Bitswap server asks [`EcIndex::locate`] for every want it cannot serve from the store, so a
//! lookup is one hash probe under a read lock. To stay small for large pins (a 100 GiB 6+3 pin has
//! 614 400 cells), the index keys a 64-bit hash of each CID to a 12-byte position in the pin's
//! manifest, and compares the CID the manifest names there to the one asked for; it does not keep a
//! second copy of the CIDs.

// Errors name the pin and block at fault (CIDs are 96-byte values) so that a user sees which
// stripe failed and why. They are returned once per block or column, and boxing them would only
// make matching on them clumsier.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use cid::Cid;
use libp2p::PeerId;
use tessera_bitswap_ec::{Manifest, ManifestReader};
use tessera_blockstore::{Block, Blockstore};

use super::blocks::BlockClient;
use super::rebuild::{RebuildError, RemoteBlocks};
use crate::pin::{EcLayout, Pin};

/// What a block is to an erasure-coded pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A data cell (`column < k`) or a parity cell.
    Cell {
        group: usize,
        stripe: usize,
        column: usize,
    },
    /// A DAG node with links, replicated to the interior holders.
    Interior,
    /// A block of the pin's manifest, replicated like interior blocks.
    Manifest,
}

/// Where a block sits: the pin (by root) and its role there.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub(crate) root: Cid,
    pub(crate) role: Role,
}

/// One column of a group as status shows it.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "for `status`, which does not show columns yet")
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnView {
    pub(crate) column: usize,
    /// `None` when the layout names no holder (a layout that disagrees with its manifest).
    pub(crate) holder: Option<PeerId>,
    /// Cells the column holds (a short last stripe has none in its missing data columns).
    pub(crate) cells: u64,
    /// Of those, how many `present` said are there.
    pub(crate) present: u64,
}

impl ColumnView {
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "for `status`, which does not show columns yet")
    )]
    pub(crate) fn complete(&self) -> bool {
        self.present == self.cells
    }
}

/// One group as status shows it.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "for `status`, which does not show columns yet")
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupView {
    pub(crate) group: usize,
    pub(crate) columns: Vec<ColumnView>,
    /// How many more lost cells its worst stripe survives; negative when a stripe already cannot
    /// be read or rebuilt.
    pub(crate) tolerated: i64,
}

/// Index of the erasure-coded pins this peer knows. Cheap to share behind an `Arc`.
#[derive(Default)]
pub(crate) struct EcIndex {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    hasher: RandomState,
    ids: HashMap<Cid, u32>,
    pins: HashMap<u32, Entry>,
    next_id: u32,
    refs: HashMap<u64, Refs>,
}

struct Entry {
    root: Cid,
    layout: EcLayout,
    manifest: Arc<Manifest>,
    manifest_blocks: Vec<Cid>,
}

/// A position in one pin, resolved to a CID through the pin's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ref {
    pin: u32,
    at: At,
}

// u32 positions keep a `Ref` at 12 bytes; no pin comes near 4 billion stripes (that is petabytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Cell { stripe: u32, column: u16 },
    Interior(u32),
    Manifest(u32),
}

/// Almost always one position per hash; a block that occurs twice (identical leaves, or two pins
/// sharing blocks), or a hash collision, makes a list.
#[derive(Debug, Clone)]
enum Refs {
    One(Ref),
    Many(Vec<Ref>),
}

impl Refs {
    fn push(&mut self, r: Ref) {
        match self {
            Refs::One(first) => *self = Refs::Many(vec![*first, r]),
            Refs::Many(v) => v.push(r),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Ref> {
        match self {
            Refs::One(r) => std::slice::from_ref(r).iter(),
            Refs::Many(v) => v.iter(),
        }
    }

    /// Drops the positions of `pin`; `false` when nothing is left.
    fn retain_other(&mut self, pin: u32) -> bool {
        match self {
            Refs::One(r) => r.pin != pin,
            Refs::Many(v) => {
                v.retain(|r| r.pin != pin);
                match v.as_slice() {
                    [] => false,
                    [only] => {
                        *self = Refs::One(*only);
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

impl Entry {
    fn k(&self) -> usize {
        self.manifest.header.layout.data_shards
    }

    fn cid_at(&self, at: At) -> Option<&Cid> {
        match at {
            At::Cell { stripe, column } => self
                .manifest
                .stripes
                .get(stripe as usize)?
                .cid(self.k(), usize::from(column)),
            At::Interior(i) => self.manifest.interior.get(i as usize),
            At::Manifest(i) => self.manifest_blocks.get(i as usize),
        }
    }

    fn role_at(&self, at: At) -> Option<Role> {
        Some(match at {
            At::Cell { stripe, column } => Role::Cell {
                group: usize::try_from(self.manifest.stripes.get(stripe as usize)?.group).ok()?,
                stripe: stripe as usize,
                column: usize::from(column),
            },
            At::Interior(_) => Role::Interior,
            At::Manifest(_) => Role::Manifest,
        })
    }

    /// Every position with its CID.
    fn positions(&self) -> impl Iterator<Item = (At, &Cid)> {
        let k = self.k();
        let columns = k + self.manifest.header.layout.parity_shards;
        let cells = self
            .manifest
            .stripes
            .iter()
            .enumerate()
            .flat_map(move |(s, stripe)| {
                (0..columns).filter_map(move |c| {
                    let at = At::Cell {
                        stripe: u32::try_from(s).ok()?,
                        column: u16::try_from(c).ok()?,
                    };
                    Some((at, stripe.cid(k, c)?))
                })
            });
        let interior = self.manifest.interior.iter().enumerate();
        let interior =
            interior.filter_map(|(i, c)| Some((At::Interior(u32::try_from(i).ok()?), c)));
        let blocks = self.manifest_blocks.iter().enumerate();
        let blocks = blocks.filter_map(|(i, c)| Some((At::Manifest(u32::try_from(i).ok()?), c)));
        cells.chain(interior).chain(blocks)
    }
}

impl Inner {
    fn find(&self, cid: &Cid) -> Option<(&Entry, At)> {
        let refs = self.refs.get(&self.hasher.hash_one(cid))?;
        refs.iter().find_map(|r| {
            let entry = self.pins.get(&r.pin)?;
            (entry.cid_at(r.at) == Some(cid)).then_some((entry, r.at))
        })
    }

    fn remove(&mut self, root: &Cid) {
        let Some(id) = self.ids.remove(root) else {
            return;
        };
        let Some(entry) = self.pins.remove(&id) else {
            return;
        };
        // Once per distinct hash: a block repeated n times (zero-filled leaves of a disk image)
        // has n positions in one list, and filtering that list n times would cost n squared.
        let hashes: HashSet<u64> = entry
            .positions()
            .map(|(_, cid)| self.hasher.hash_one(cid))
            .collect();
        for h in hashes {
            if let Some(refs) = self.refs.get_mut(&h)
                && !refs.retain_other(id)
            {
                self.refs.remove(&h);
            }
        }
    }
}

impl EcIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // The lock guards plain maps that every writer leaves consistent before it can panic.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds (or replaces) an EC pin. A pin without an EC layout is ignored.
    pub(crate) fn insert(&self, pin: &Pin, manifest: Arc<Manifest>, manifest_blocks: Vec<Cid>) {
        let Some(layout) = pin.ec.clone() else {
            tracing::warn!(root = %pin.cid, "not indexing a pin without an EC layout");
            return;
        };
        check_layout(&pin.cid, &layout, &manifest);
        let entry = Entry {
            root: pin.cid,
            layout,
            manifest,
            manifest_blocks,
        };
        // Hashing every CID of a large pin takes a while: do it before taking the write lock, so
        // that Bitswap lookups meanwhile do not wait.
        let hasher = self.read().hasher.clone();
        let hashed: Vec<(u64, At)> = entry
            .positions()
            .map(|(at, cid)| (hasher.hash_one(cid), at))
            .collect();
        let mut inner = self.write();
        inner.remove(&pin.cid);
        let mut id = inner.next_id;
        while inner.pins.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        inner.next_id = id.wrapping_add(1);
        for (h, at) in hashed {
            let r = Ref { pin: id, at };
            inner
                .refs
                .entry(h)
                .and_modify(|refs| refs.push(r))
                .or_insert(Refs::One(r));
        }
        inner.ids.insert(pin.cid, id);
        inner.pins.insert(id, entry);
    }

    /// Takes a repair's new allocations; the manifest, hence every position, stays.
    pub(crate) fn update_layout(&self, pin: &Pin) {
        let Some(layout) = pin.ec.clone() else {
            return;
        };
        let mut inner = self.write();
        let Some(id) = inner.ids.get(&pin.cid).copied() else {
            return;
        };
        if let Some(entry) = inner.pins.get_mut(&id) {
            check_layout(&pin.cid, &layout, &entry.manifest);
            entry.layout = layout;
        }
    }

    pub(crate) fn remove(&self, root: &Cid) {
        self.write().remove(root);
    }

    pub(crate) fn contains_pin(&self, root: &Cid) -> bool {
        self.read().ids.contains_key(root)
    }

    /// The first place `cid` occurs; a block that occurs twice can be produced from either.
    pub(crate) fn locate(&self, cid: &Cid) -> Option<Location> {
        let inner = self.read();
        let (entry, at) = inner.find(cid)?;
        Some(Location {
            root: entry.root,
            role: entry.role_at(at)?,
        })
    }

    /// The layout and manifest of a pin.
    pub(crate) fn get(&self, root: &Cid) -> Option<(EcLayout, Arc<Manifest>)> {
        let inner = self.read();
        let entry = inner.pins.get(inner.ids.get(root)?)?;
        Some((entry.layout.clone(), entry.manifest.clone()))
    }

    /// Whether `peer` must hold `cid` in some pin: a cell of a column it holds, or an interior or
    /// manifest block of a pin it is an interior holder of. Every place the block occurs counts.
    pub(crate) fn must_hold(&self, cid: &Cid, peer: &PeerId) -> bool {
        let inner = self.read();
        let Some(refs) = inner.refs.get(&inner.hasher.hash_one(cid)) else {
            return false;
        };
        refs.iter().any(|r| {
            let Some(entry) = inner.pins.get(&r.pin) else {
                return false;
            };
            if entry.cid_at(r.at) != Some(cid) {
                return false;
            }
            match entry.role_at(r.at) {
                Some(Role::Cell { group, column, .. }) => {
                    holder(&entry.layout, group, column) == Some(*peer)
                }
                Some(Role::Interior | Role::Manifest) => entry.layout.interior.contains(peer),
                None => false,
            }
        })
    }

    /// Every block `peer` must hold for pin `root`, in manifest order. A block that occurs twice in
    /// the DAG is listed twice.
    pub(crate) fn assigned(&self, root: &Cid, peer: &PeerId) -> Vec<Cid> {
        let inner = self.read();
        let Some(entry) = inner.ids.get(root).and_then(|id| inner.pins.get(id)) else {
            return Vec::new();
        };
        let k = entry.k();
        let mut out = Vec::new();
        for (g, holders) in entry.layout.columns.iter().enumerate() {
            let Some(group) = entry.manifest.groups.get(g) else {
                continue;
            };
            for (column, _) in holders.iter().enumerate().filter(|(_, h)| *h == peer) {
                out.extend(
                    group_stripes(&entry.manifest, group.first_stripe, group.stripes)
                        .iter()
                        .filter_map(|s| s.cid(k, column)),
                );
            }
        }
        if entry.layout.interior.contains(peer) {
            out.extend(&entry.manifest.interior);
            out.extend(&entry.manifest_blocks);
        }
        out
    }

    /// Per group and column, the holder and how many of its cells `present` finds, for status.
    /// `present` runs outside the index's lock, so it may be slow (a blockstore lookup).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "for `status`, which does not show columns yet")
    )]
    pub(crate) fn columns(
        &self,
        root: &Cid,
        present: impl Fn(&Cid) -> bool,
    ) -> Option<Vec<GroupView>> {
        let (layout, manifest) = self.get(root)?;
        let k = manifest.header.layout.data_shards;
        let width = manifest.header.layout.columns();
        let views = manifest
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let mut columns: Vec<ColumnView> = (0..width)
                    .map(|column| ColumnView {
                        column,
                        holder: holder(&layout, g, column),
                        cells: 0,
                        present: 0,
                    })
                    .collect();
                let mut tolerated = i64::MAX;
                for stripe in group_stripes(&manifest, group.first_stripe, group.stripes) {
                    let mut here = 0i64;
                    for view in &mut columns {
                        if let Some(cid) = stripe.cid(k, view.column) {
                            view.cells += 1;
                            if present(cid) {
                                view.present += 1;
                                here += 1;
                            }
                        }
                    }
                    tolerated = tolerated.min(here - stripe.data.len() as i64);
                }
                GroupView {
                    group: g,
                    columns,
                    tolerated,
                }
            })
            .collect();
        Some(views)
    }
}

/// The holder of `column` in group `group`, if the layout names one.
pub(crate) fn holder(layout: &EcLayout, group: usize, column: usize) -> Option<PeerId> {
    layout.columns.get(group)?.get(column).copied()
}

/// The stripes of a group, empty if the manifest's group is out of its stripes' range (which
/// `Manifest::load` rules out).
pub(crate) fn group_stripes(
    manifest: &Manifest,
    first: u64,
    count: u64,
) -> &[tessera_bitswap_ec::Stripe] {
    let start = usize::try_from(first).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(count).unwrap_or(usize::MAX));
    manifest.stripes.get(start..end).unwrap_or(&[])
}

/// Logs a layout that does not fit its manifest: lookups still work, and a holder that the layout
/// does not name counts as absent.
fn check_layout(root: &Cid, layout: &EcLayout, manifest: &Manifest) {
    let l = &manifest.header.layout;
    let width = l.columns();
    if (usize::from(layout.k), usize::from(layout.m)) != (l.data_shards, l.parity_shards)
        || layout.columns.len() != manifest.groups.len()
        || layout.columns.iter().any(|g| g.len() != width)
    {
        tracing::warn!(
            %root,
            k = layout.k, m = layout.m, groups = layout.columns.len(),
            manifest_k = l.data_shards, manifest_m = l.parity_shards,
            manifest_groups = manifest.groups.len(),
            "EC layout disagrees with its manifest; cells without a holder count as lost"
        );
    }
}

/// Loads a pin's manifest: each block from the local store, else from the interior holders in
/// turn. Returns it with the CIDs of all its blocks, so that they can be indexed and kept. Blocks
/// fetched from other peers are stored when this peer is an interior holder, since it must keep
/// them anyway.
pub(crate) async fn load_manifest(
    node: &tessera_node::Node,
    blocks: &BlockClient,
    layout: &EcLayout,
) -> Result<(Manifest, Vec<Cid>), RebuildError> {
    let remote: Arc<dyn RemoteBlocks> = Arc::new(blocks.clone());
    load_manifest_from(node.store().clone(), remote, node.peer_id(), layout).await
}

// `Manifest::load` reads through a synchronous `BlockSource`, so it runs on a blocking thread that
// waits on the runtime for each block it must fetch: one request per block missing locally (a
// 100 GiB pin's manifest is about a hundred blocks).
pub(crate) async fn load_manifest_from(
    store: Blockstore,
    remote: Arc<dyn RemoteBlocks>,
    local: PeerId,
    layout: &EcLayout,
) -> Result<(Manifest, Vec<Cid>), RebuildError> {
    let root = layout.manifest;
    let holders: Vec<PeerId> = layout
        .interior
        .iter()
        .filter(|p| **p != local)
        .copied()
        .collect();
    let keep = layout.interior.contains(&local);
    let handle = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let fetched: Mutex<HashMap<Cid, Bytes>> = Mutex::default();
        let source = |cid: &Cid| -> Result<Bytes, String> {
            if let Some(b) = fetched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(cid)
            {
                return Ok(b.clone());
            }
            if let Ok(Some(b)) = store.get_verified(cid) {
                return Ok(b);
            }
            let mut why = Vec::new();
            for peer in &holders {
                match handle.block_on(remote.fetch(*peer, vec![*cid])) {
                    Ok(got) => {
                        if let Some(b) = got.into_iter().find(|b| b.cid() == cid) {
                            let bytes = b.data().clone();
                            fetched
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(*cid, bytes.clone());
                            return Ok(bytes);
                        }
                        why.push(format!("{peer} does not have it"));
                    }
                    Err(e) => why.push(format!("{peer}: {e}")),
                }
            }
            if holders.is_empty() {
                why.push("no other peer holds the manifest".to_owned());
            }
            Err(why.join("; "))
        };
        let manifest = Manifest::load(source, &root)?;
        let blocks = ManifestReader::open(source, &root)?.manifest_blocks()?;
        let fetched = fetched.into_inner().unwrap_or_else(PoisonError::into_inner);
        if keep && !fetched.is_empty() {
            let blocks: Vec<Block> = fetched
                .into_iter()
                .map(|(cid, bytes)| Block::new_unchecked(cid, bytes))
                .collect();
            super::blocks::lease(&store, &blocks);
            store
                .put_many_cold(&blocks)
                .map_err(|e| RebuildError::Store {
                    reason: e.to_string(),
                })?;
        }
        Ok((manifest, blocks))
    });
    task.await.map_err(|e| RebuildError::Task {
        reason: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec::rebuild::tests::{Fixture, SIZES_2_1, SIZES_6_3};

    #[test]
    fn every_cell_interior_and_manifest_block_is_located() {
        let f = Fixture::new(6, 3, 700, SIZES_6_3);
        let k = 6;
        for (s, stripe) in f.manifest.stripes.iter().enumerate() {
            for column in 0..9 {
                let Some(cid) = stripe.cid(k, column) else {
                    continue;
                };
                let loc = f.index.locate(cid).unwrap();
                assert_eq!(loc.root, f.root);
                match loc.role {
                    // A repeated leaf is located at its first occurrence.
                    Role::Cell {
                        stripe: at,
                        column: c,
                        group,
                    } => {
                        assert_eq!(f.manifest.stripes[at].cid(k, c), Some(cid));
                        assert_eq!(group as u64, f.manifest.stripes[at].group);
                        assert!(at <= s);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        for cid in &f.manifest.interior {
            assert_eq!(f.index.locate(cid).unwrap().role, Role::Interior);
        }
        for cid in &f.manifest_blocks {
            assert_eq!(f.index.locate(cid).unwrap().role, Role::Manifest);
        }
        let stranger = Block::from_data_v1(tessera_blockstore::RAW, Bytes::from_static(b"x"));
        assert!(f.index.locate(stranger.cid()).is_none());
        // The DAG root is an interior block.
        assert_eq!(f.index.locate(&f.root).unwrap().role, Role::Interior);
    }

    #[test]
    fn assigned_lists_a_holders_columns_and_the_replicated_blocks() {
        let f = Fixture::new(2, 1, 40, SIZES_2_1);
        let k = 2;
        for (p, peer) in f.peers.iter().enumerate() {
            let got = f.index.assigned(&f.root, peer);
            let mut want = Vec::new();
            for (g, group) in f.manifest.groups.iter().enumerate() {
                for column in 0..3 {
                    if f.layout.columns[g][column] == *peer {
                        let stripes = group_stripes(&f.manifest, group.first_stripe, group.stripes);
                        want.extend(stripes.iter().filter_map(|s| s.cid(k, column)));
                    }
                }
            }
            if f.layout.interior.contains(peer) {
                want.extend(&f.manifest.interior);
                want.extend(&f.manifest_blocks);
            }
            assert_eq!(got, want, "peer {p}");
            // Exactly what the fixture placed on that peer.
            let mut placed: Vec<Cid> = f.stores[p].cids().map(|c| c.unwrap()).collect();
            let mut got = got;
            got.sort();
            got.dedup();
            placed.sort();
            assert_eq!(got, placed, "peer {p}");
        }
        assert!(
            f.index
                .assigned(&f.manifest_blocks[0], &f.peers[0])
                .is_empty()
        );
    }

    #[test]
    fn columns_count_present_cells_and_tolerated_failures() {
        let f = Fixture::new(2, 1, 40, SIZES_2_1);
        let lost = f.layout.columns[0][1];
        let present = |cid: &Cid| !f.index.must_hold(cid, &lost);
        let views = f.index.columns(&f.root, present).unwrap();
        assert_eq!(views.len(), f.manifest.groups.len());
        let g0 = &views[0];
        assert_eq!(g0.columns.len(), 3);
        assert_eq!(g0.columns[1].holder, Some(lost));
        assert_eq!(g0.columns[1].present, 0);
        assert!(g0.columns[1].cells > 0);
        assert!(g0.columns[0].complete() && g0.columns[2].complete());
        // 2+1 with one column lost: no failure left to tolerate.
        assert_eq!(g0.tolerated, 0);
        let all = f.index.columns(&f.root, |_| true).unwrap();
        assert!(all.iter().all(|g| g.tolerated == 1));
        let none = f.index.columns(&f.root, |_| false).unwrap();
        assert!(none.iter().all(|g| g.tolerated < 0));
    }

    #[test]
    fn layouts_update_and_pins_go_away() {
        let f = Fixture::new(2, 1, 40, SIZES_2_1);
        let cell = f.manifest.stripes[0].data[0];
        let mut pin = f.pin.clone();
        let newcomer = PeerId::random();
        if let Some(ec) = &mut pin.ec {
            ec.columns[0][0] = newcomer;
        }
        f.index.update_layout(&pin);
        assert!(f.index.must_hold(&cell, &newcomer));
        assert!(!f.index.must_hold(&cell, &f.layout.columns[0][0]));
        assert_eq!(f.index.get(&f.root).unwrap().0.columns[0][0], newcomer);

        // A second pin sharing no blocks, then the first removed: the second stays whole.
        let other = Fixture::new(2, 1, 40, &[3, 4, 5]);
        other.index_into(&f.index);
        assert!(f.index.contains_pin(&other.root));
        f.index.remove(&f.root);
        assert!(!f.index.contains_pin(&f.root));
        assert!(f.index.locate(&cell).is_none());
        for s in &other.manifest.stripes {
            assert_eq!(f.index.locate(&s.parity[0]).unwrap().root, other.root);
        }
    }

    #[tokio::test]
    async fn manifests_load_from_interior_holders_when_not_local() {
        let f = Fixture::new(6, 3, 700, SIZES_6_3);
        // A peer outside the layout, with an empty store: every block comes from a holder, the
        // first of which is down.
        let (_dir, store) = crate::ec::rebuild::tests::empty_store();
        f.remote.set_down(f.layout.interior[0], true);
        let (manifest, blocks) =
            load_manifest_from(store.clone(), f.remote.clone(), PeerId::random(), &f.layout)
                .await
                .unwrap();
        assert_eq!(manifest, *f.manifest);
        assert_eq!(blocks, f.manifest_blocks);
        // Not an interior holder: nothing kept.
        assert!(!store.has(&f.layout.manifest).unwrap());

        // Every holder down: the error names the manifest block and why each holder failed.
        for p in &f.layout.interior {
            f.remote.set_down(*p, true);
        }
        let err = load_manifest_from(store, f.remote.clone(), PeerId::random(), &f.layout)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&f.layout.manifest.to_string()), "{err}");
        assert!(err.contains(&f.layout.interior[1].to_string()), "{err}");
    }
}
