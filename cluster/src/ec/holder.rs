//! What a peer does with an erasure-coded pin of the pinset: hold its share.
//!
//! Its share is the cells of the columns the layout gives it, plus the interior and manifest
//! blocks if it is one of the `m + 1` interior holders. Each block of the share is pinned
//! directly (so that `repo gc` keeps exactly the share and frees the rest of the DAG); a block of
//! the share that is missing (a column given to this peer by a repair, or a cell that scrub found
//! rotten) is rebuilt from the other cells of its stripe first. Blocks of the pin outside the share
//! (a column moved away, the adding peer's whole import) are unpinned.

use std::collections::BTreeSet;
use std::sync::Arc;

use cid::Cid;
use libp2p::PeerId;
use tessera_blockstore::PinMode;
use tessera_node::Node;
use tokio::sync::Semaphore;

use super::blocks::BlockClient;
use super::index::{EcIndex, Role, load_manifest};
use super::rebuild::Rebuilder;
use crate::pin::Pin;

/// How the share of one pin stands after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    /// This peer holds no part of the pin.
    None {
        /// Whether a whole-DAG pin of the root was dropped: the adding peer need not be a holder,
        /// and then its whole import is garbage.
        replaced_root_pin: bool,
    },
    /// Every block of the share is here and pinned.
    Complete {
        /// Blocks in the share.
        blocks: usize,
        /// Whether a whole-DAG pin of the root was replaced (the adding peer's import): the
        /// blocks other peers hold can now be collected.
        replaced_root_pin: bool,
    },
}

/// Holds the shares of EC pins on this peer.
pub(crate) struct EcHolder {
    node: Node,
    local: PeerId,
    pub(crate) index: Arc<EcIndex>,
    pub(crate) rebuilder: Rebuilder,
    blocks: BlockClient,
    /// Columns rebuilt at once, so that repairs never starve reads.
    repairs: Semaphore,
}

impl EcHolder {
    pub(crate) fn new(
        node: Node,
        local: PeerId,
        index: Arc<EcIndex>,
        rebuilder: Rebuilder,
        blocks: BlockClient,
        concurrent_repairs: usize,
    ) -> Self {
        EcHolder {
            node,
            local,
            index,
            rebuilder,
            blocks,
            repairs: Semaphore::new(concurrent_repairs.max(1)),
        }
    }

    /// Makes sure the pin's manifest is loaded and indexed with the pin's current layout.
    pub(crate) async fn index_pin(&self, pin: &Pin) -> Result<(), String> {
        let Some(layout) = &pin.ec else {
            return Err(format!("{} is not an erasure-coded pin", pin.cid));
        };
        if self.index.contains_pin(&pin.cid) {
            self.index.update_layout(pin);
            return Ok(());
        }
        let (manifest, manifest_blocks) = load_manifest(&self.node, &self.blocks, layout)
            .await
            .map_err(|e| {
                format!(
                    "cannot load the manifest {} of {}: {e}",
                    layout.manifest, pin.cid
                )
            })?;
        self.index.insert(pin, Arc::new(manifest), manifest_blocks);
        Ok(())
    }

    /// Every block of the pin, whoever holds it.
    fn all_blocks(&self, pin: &Pin) -> BTreeSet<Cid> {
        let mut all = BTreeSet::new();
        if let Some(layout) = &pin.ec {
            for h in layout.holders() {
                all.extend(self.index.assigned(&pin.cid, &h));
            }
        }
        all
    }

    /// The blocks among `cids` that no EC pin makes this peer hold. Direct pins are not counted
    /// per pin, and the same block may occur in several pins (a cell of zeros, a file added twice
    /// with other options): unpinning a block because one pin no longer needs it here would
    /// let GC take it from under another pin's share.
    fn not_mine(&self, cids: impl Iterator<Item = Cid>) -> Vec<Cid> {
        cids.filter(|c| !self.index.must_hold(c, &self.local))
            .collect()
    }

    /// Brings this peer's share of `pin` to complete and pinned, rebuilding what is missing, and
    /// unpins the rest of the pin's blocks.
    pub(crate) async fn reconcile(&self, pin: &Pin) -> Result<Share, String> {
        self.index_pin(pin).await?;
        let assigned = self.index.assigned(&pin.cid, &self.local);
        let mine: BTreeSet<Cid> = assigned.iter().copied().collect();
        let others = self.not_mine(
            self.all_blocks(pin)
                .into_iter()
                .filter(|c| !mine.contains(c)),
        );
        let store = self.node.store().clone();
        if !others.is_empty() {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.unpin_many(&others, PinMode::Direct))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        if assigned.is_empty() {
            // A column of a short pin may have no cell at all: its holder holds it whole.
            let replaced_root_pin = self.pin_share(pin.cid, Vec::new()).await?;
            return Ok(if pin.is_allocated_to(&self.local) {
                Share::Complete {
                    blocks: 0,
                    replaced_root_pin,
                }
            } else {
                Share::None { replaced_root_pin }
            });
        }
        let missing = {
            let s = store.clone();
            let a = assigned.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<Cid>, String> {
                let mut missing = Vec::new();
                for c in a {
                    if !s.has(&c).map_err(|e| e.to_string())? {
                        missing.push(c);
                    }
                }
                Ok(missing)
            })
            .await
            .map_err(|e| e.to_string())??
        };
        if !missing.is_empty() {
            self.fill(pin, &missing).await?;
        }
        let n = assigned.len();
        let replaced_root_pin = self.pin_share(pin.cid, assigned).await?;
        Ok(Share::Complete {
            blocks: n,
            replaced_root_pin,
        })
    }

    /// Pins the share directly and drops a recursive pin of the root, in one step that GC cannot
    /// split: a single-block DAG's root is also its only cell, and a direct pin does nothing on a
    /// recursively pinned CID, so the order matters. Returns whether a root pin was dropped.
    async fn pin_share(&self, root: Cid, share: Vec<Cid>) -> Result<bool, String> {
        let store = self.node.store().clone();
        tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let _no_gc = store.gc_guard();
            let dropped = match store.pin_mode(&root).map_err(|e| e.to_string())? {
                Some(PinMode::Recursive) => store
                    .unpin(&root, PinMode::Recursive)
                    .map_err(|e| e.to_string())?,
                _ => false,
            };
            store
                .pin_many(&share, PinMode::Direct)
                .map_err(|e| e.to_string())?;
            // Pinned now: the lease taken when they were pushed has done its work.
            store.release(&share);
            Ok(dropped)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Rebuilds missing blocks of the share: whole columns for cells, one by one for interior and
    /// manifest blocks.
    async fn fill(&self, pin: &Pin, missing: &[Cid]) -> Result<(), String> {
        let _permit = self.repairs.acquire().await.map_err(|e| e.to_string())?;
        let mut columns = BTreeSet::new();
        let mut singles = Vec::new();
        for c in missing {
            match self.index.locate(c).map(|l| l.role) {
                Some(Role::Cell { group, column, .. }) => {
                    columns.insert((group, column));
                }
                Some(_) => singles.push(*c),
                None => return Err(format!("{c} is not a block of {}", pin.cid)),
            }
        }
        for (group, column) in columns {
            let n = self
                .rebuilder
                .rebuild_column(&pin.cid, group, column)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(root = %pin.cid, group, column, cells = n, "rebuilt a column");
        }
        let mut rebuilt = Vec::new();
        for c in singles {
            let data = self.rebuilder.produce(c).await.map_err(|e| e.to_string())?;
            rebuilt.push(tessera_blockstore::Block::new_unchecked(c, data));
        }
        if !rebuilt.is_empty() {
            let store = self.node.store().clone();
            tokio::task::spawn_blocking(move || {
                super::blocks::lease(&store, &rebuilt);
                store.put_many_cold(&rebuilt)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Drops this peer's share of a pin removed from the pinset.
    pub(crate) async fn release(&self, pin_root: &Cid, last: Option<&Pin>) -> Result<(), String> {
        let blocks: Vec<Cid> = match last {
            Some(p) => self.all_blocks(p).into_iter().collect(),
            None => self.index.assigned(pin_root, &self.local),
        };
        self.index.remove(pin_root);
        let blocks = self.not_mine(blocks.into_iter());
        if blocks.is_empty() {
            return Ok(());
        }
        let store = self.node.store().clone();
        tokio::task::spawn_blocking(move || store.unpin_many(&blocks, PinMode::Direct))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
