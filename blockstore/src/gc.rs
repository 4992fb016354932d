//! Garbage collection: delete every block that no pin reaches.
//!
//! Mark and sweep over one index snapshot. The store knows no IPLD codec, so
//! the caller passes a link extractor. Raw blocks (codec 0x55) have no links
//! by definition and are never read. Every other block on the walk is read
//! and verified before its links are trusted: a corrupt block could
//! otherwise name the wrong children and get its real ones swept.
//!
//! A recursive pin whose DAG is incomplete (blocks still being fetched, or
//! lost) does not fail GC: what is there is kept, the gaps are counted.
//! The mark set holds the CID bytes of every kept block in memory, about
//! 100 bytes each (100 MB for a million blocks).

use std::collections::HashSet;
use std::sync::RwLockReadGuard;

use cid::Cid;
use redb::{ReadableDatabase, ReadableTable};

use crate::block::{RAW, VerifyError, verify};
use crate::compact::CompactReport;
use crate::error::{GcError, StorageError};
use crate::pack_cache::ReadFailure;
use crate::pin::PinMode;
use crate::store::{Blockstore, parse_key};
use crate::tables::{Location, ReadTables};
use crate::writer::Request;

/// Deletions are sent to the writer this many at a time.
const SWEEP_BATCH: usize = 1024;

/// Holds garbage collection off while it lives.
///
/// Take it before writing the blocks of a DAG and drop it after pinning the
/// root: GC cannot run in between, so it cannot delete the new, not yet
/// pinned blocks. Many guards can be held at once. Do not call
/// [`Blockstore::gc`] while holding one on the same thread: it would wait
/// for itself.
#[must_use = "GC is held off only while the guard lives"]
#[derive(Debug)]
pub struct GcGuard<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

/// What a garbage collection did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct GcReport {
    /// Blocks deleted.
    pub blocks_removed: u64,
    /// The CIDs of the deleted blocks, in deletion order (`ipfs repo gc` prints them).
    pub removed: Vec<Cid>,
    /// Bytes of the deleted blocks.
    pub bytes_removed: u64,
    /// Blocks kept because a pin reaches them.
    pub blocks_kept: u64,
    /// Links of recursive pins that point at blocks the store does not have.
    pub missing: u64,
    /// Blocks kept whose links could not be followed: unreadable, corrupt,
    /// or refused by the link extractor. Their children were not marked
    /// through them.
    pub unfollowed: u64,
    /// The compaction that ran after the sweep.
    pub compaction: CompactReport,
}

/// The caller's link extractor: a block's CID and bytes in, its links out.
pub type Links<'a> = &'a dyn Fn(&Cid, &[u8]) -> Result<Vec<Cid>, String>;

impl Blockstore {
    /// A guard that keeps [`gc`](Blockstore::gc) from starting until it is
    /// dropped (and waits for a running one to finish).
    pub fn gc_guard(&self) -> GcGuard<'_> {
        GcGuard {
            _guard: self.inner.gc_lock.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Deletes every block that no pin reaches, then compacts packs whose
    /// dead share passed [`Config::compact_threshold`](crate::Config).
    ///
    /// Direct pins keep their block; recursive pins keep every block reachable
    /// through `links`. Waits for every [`GcGuard`] to be dropped first.
    pub fn gc(&self, links: Links<'_>) -> Result<GcReport, GcError> {
        let _one_at_a_time = self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut report = {
            let _exclusive = self
                .inner
                .gc_lock
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
            let tables = ReadTables::open(&txn).map_err(StorageError::from)?;
            let mut report = GcReport::default();
            let marked = self.mark(&tables, links, &mut report)?;
            report.blocks_kept = marked.len() as u64;
            self.sweep(&tables, &marked, &mut report)?;
            report
        };
        report.compaction = self.compact_locked()?;
        tracing::info!(?report, "garbage collection done");
        Ok(report)
    }

    /// The CID bytes of every stored block that a pin reaches.
    fn mark(
        &self,
        t: &ReadTables,
        links: Links<'_>,
        report: &mut GcReport,
    ) -> Result<HashSet<Vec<u8>>, GcError> {
        let mut marked: HashSet<Vec<u8>> = HashSet::new();
        for key in self.live_leases() {
            if t.blocks
                .get(&key[..])
                .map_err(StorageError::from)?
                .is_some()
            {
                marked.insert(key);
            }
        }
        let mut stack: Vec<Cid> = Vec::new();
        for entry in t.pins.iter().map_err(StorageError::from)? {
            let (k, v) = entry.map_err(StorageError::from)?;
            let cid = parse_key(k.value())?;
            match PinMode::from_byte(v.value()) {
                Some(PinMode::Recursive) => stack.push(cid),
                Some(PinMode::Direct) => {
                    if t.blocks
                        .get(k.value())
                        .map_err(StorageError::from)?
                        .is_some()
                    {
                        marked.insert(k.value().to_vec());
                    }
                }
                None => tracing::warn!(%cid, "ignoring pin with an unknown mode"),
            }
        }
        while let Some(cid) = stack.pop() {
            let key = cid.to_bytes();
            if marked.contains(&key) {
                continue;
            }
            let data = {
                let Some(guard) = t.blocks.get(&key[..]).map_err(StorageError::from)? else {
                    report.missing += 1;
                    tracing::debug!(%cid, "pinned DAG is missing a block");
                    continue;
                };
                marked.insert(key);
                if cid.codec() == RAW {
                    continue;
                }
                match guard.value() {
                    Location::Inline(d) => Ok(d.to_vec()),
                    Location::Packed(at) => self.inner.cache.read(&at),
                    Location::Malformed => Err(ReadFailure::Truncated),
                }
            };
            let data = match data {
                Ok(d) => d,
                // Compaction cannot run now (the maintenance lock is ours),
                // so a missing pack or short read is lost data.
                Err(ReadFailure::PackMissing | ReadFailure::Truncated) => {
                    report.unfollowed += 1;
                    tracing::warn!(%cid, "pinned block is unreadable; keeping it, not following its links");
                    continue;
                }
                Err(ReadFailure::Storage(e)) => return Err(e.into()),
            };
            match verify(&cid, &data) {
                Ok(()) | Err(VerifyError::UnsupportedHash { .. }) => {}
                Err(_) => {
                    report.unfollowed += 1;
                    tracing::warn!(%cid, "pinned block is corrupt; keeping it, not following its links");
                    continue;
                }
            }
            match links(&cid, &data) {
                Ok(children) => stack.extend(
                    children
                        .into_iter()
                        .filter(|c| !marked.contains(&c.to_bytes())),
                ),
                Err(reason) => {
                    report.unfollowed += 1;
                    tracing::warn!(%cid, %reason, "cannot read links of pinned block; keeping it");
                }
            }
        }
        Ok(marked)
    }

    /// Deletes every indexed block of the snapshot that is not marked.
    fn sweep(
        &self,
        t: &ReadTables,
        marked: &HashSet<Vec<u8>>,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let mut batch: Vec<Cid> = Vec::with_capacity(SWEEP_BATCH);
        for entry in t.blocks.iter().map_err(StorageError::from)? {
            let (k, _) = entry.map_err(StorageError::from)?;
            if marked.contains(k.value()) {
                continue;
            }
            batch.push(parse_key(k.value())?);
            if batch.len() == SWEEP_BATCH {
                self.delete_batch(std::mem::take(&mut batch), report)?;
            }
        }
        if !batch.is_empty() {
            self.delete_batch(batch, report)?;
        }
        Ok(())
    }

    fn delete_batch(&self, cids: Vec<Cid>, report: &mut GcReport) -> Result<(), GcError> {
        let asked = cids.clone();
        let reply = self.send(|reply| Request::Delete { cids, reply })?;
        let removed = reply.recv().map_err(|_| GcError::Closed)??;
        for (cid, len) in asked.into_iter().zip(removed) {
            if let Some(len) = len {
                report.blocks_removed += 1;
                report.bytes_removed += len;
                report.removed.push(cid);
            }
        }
        Ok(())
    }
}
