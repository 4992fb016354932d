//! Compaction: reclaiming the space of dead records.
//!
//! A pack whose dead share passed [`Config::compact_threshold`](crate::Config)
//! is walked record by record (the record headers make this possible without
//! the index). Each record the index still points at is read, verified, and
//! handed to the writer, which appends it to the current pack, syncs, and
//! repoints the index in one transaction, only if the entry has not changed
//! meanwhile. Once nothing points into the old pack, the writer drops it
//! from the index and deletes the file.
//!
//! Every step is crash-safe: before the repointing commit the old copy is
//! the one indexed (the new bytes are an uncommitted tail, cut at open);
//! after it, the new copy is; a pack dropped from the index but not yet
//! deleted is an orphan file, deleted at open.

use std::fs::File;

use redb::{ReadableDatabase, ReadableTable};

use crate::block::{VerifyError, verify};
use crate::error::{GcError, StorageError};
use crate::pack::{pack_path, record_len, scan_records};
use crate::pack_cache::ReadFailure;
use crate::store::Blockstore;
use crate::tables::{Location, PackInfo, PackedAt, ReadTables};
use crate::writer::{Relocation, Request, SeenAt};

/// Live records are handed to the writer in batches of about this size.
const RELOCATE_BATCH_BYTES: usize = 16 << 20;

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// Packs whose live records were copied into the current pack.
    pub packs_rewritten: u64,
    /// Pack files deleted.
    pub packs_deleted: u64,
    /// Blocks copied.
    pub blocks_moved: u64,
    /// Bytes of records copied.
    pub bytes_moved: u64,
    /// Bytes of pack files deleted, less what was copied out of them.
    pub bytes_reclaimed: u64,
    /// Blocks found corrupt while copying, moved aside instead.
    pub blocks_corrupt: u64,
    /// Packs left alone because they could not be walked (see the log).
    pub packs_skipped: u64,
}

impl Blockstore {
    /// Rewrites every pack whose dead share passed the threshold, and
    /// deletes packs with nothing live. Runs after every [`gc`]; call it
    /// after many [`delete`]s.
    ///
    /// [`gc`]: Blockstore::gc
    /// [`delete`]: Blockstore::delete
    pub fn compact(&self) -> Result<CompactReport, GcError> {
        let _one_at_a_time = self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.compact_locked()
    }

    /// Compaction proper; the caller holds the maintenance lock.
    pub(crate) fn compact_locked(&self) -> Result<CompactReport, GcError> {
        let threshold = self.inner.config.compact_threshold;
        let current = self
            .inner
            .current_pack
            .load(std::sync::atomic::Ordering::SeqCst);
        let candidates: Vec<(u32, PackInfo)> = {
            let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
            let t = ReadTables::open(&txn).map_err(StorageError::from)?;
            let mut out = Vec::new();
            for entry in t.packs.iter().map_err(StorageError::from)? {
                let (id, info) = entry.map_err(StorageError::from)?;
                let (id, info) = (id.value(), info.value());
                if u64::from(id) != current && (info.live == 0 || info.dead_share() >= threshold) {
                    out.push((id, info));
                }
            }
            out
        };
        let mut report = CompactReport::default();
        for (id, info) in candidates {
            let moved_before = report.bytes_moved;
            if info.live > 0 {
                match self.relocate_pack(id, info, &mut report) {
                    Ok(()) => report.packs_rewritten += 1,
                    Err(PackWalk::Skip(e)) => {
                        tracing::error!(pack = id, error = %e, "cannot compact pack; leaving it as it is");
                        report.packs_skipped += 1;
                        continue;
                    }
                    Err(PackWalk::Fail(e)) => return Err(e),
                }
            }
            let reply = self.send(|reply| Request::RetirePack { pack: id, reply })?;
            if reply.recv().map_err(|_| GcError::Closed)?? {
                report.packs_deleted += 1;
                report.bytes_reclaimed += info
                    .committed_len
                    .saturating_sub(report.bytes_moved - moved_before);
            }
        }
        if report != CompactReport::default() {
            tracing::info!(?report, "compaction done");
        }
        Ok(report)
    }

    /// Copies every live record of pack `id` into the current pack.
    fn relocate_pack(
        &self,
        id: u32,
        info: PackInfo,
        report: &mut CompactReport,
    ) -> Result<(), PackWalk> {
        let file = match self.inner.cache.handle(id) {
            Ok(f) => f,
            Err(ReadFailure::PackMissing) => {
                return Err(PackWalk::Skip(StorageError::inconsistent(format!(
                    "pack {id} is in the index but its file is missing"
                ))));
            }
            Err(ReadFailure::Truncated) => {
                return Err(PackWalk::Skip(StorageError::inconsistent(format!(
                    "pack {id} is short"
                ))));
            }
            Err(ReadFailure::Storage(e)) => return Err(PackWalk::Fail(e.into())),
        };
        let path = pack_path(&self.inner.packs_dir, id);
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| PackWalk::Fail(StorageError::from(e).into()))?;
        let t = ReadTables::open(&txn).map_err(|e| PackWalk::Fail(StorageError::from(e).into()))?;
        let mut batch: Vec<Relocation> = Vec::new();
        let mut batch_bytes = 0usize;
        // Errors of the writer are kept apart from errors of the walk.
        let mut failed: Option<GcError> = None;
        let walked = scan_records(&file, &path, id, info.committed_len, |rec| {
            let at = PackedAt {
                pack: id,
                offset: rec.data_offset,
                len: rec.data_len,
            };
            let key = rec.cid.to_bytes();
            let live = t
                .blocks
                .get(&key[..])?
                .is_some_and(|g| matches!(g.value(), Location::Packed(p) if p == at));
            if !live {
                return Ok(true);
            }
            let data = read_record(&file, &at, &path)?;
            match verify(&rec.cid, &data) {
                Ok(()) | Err(VerifyError::UnsupportedHash { .. }) => {}
                Err(_) => {
                    match self.move_aside(
                        &rec.cid,
                        SeenAt::Packed(at),
                        "its bytes do not hash to its CID (found by compaction)",
                    ) {
                        crate::error::GetError::Corrupt { .. } => report.blocks_corrupt += 1,
                        e => {
                            failed =
                                Some(GcError::Storage(StorageError::inconsistent(e.to_string())));
                            return Ok(false);
                        }
                    }
                    return Ok(true);
                }
            }
            batch_bytes += data.len();
            batch.push(Relocation {
                cid: rec.cid,
                from: at,
                data: data.into(),
            });
            if batch_bytes >= RELOCATE_BATCH_BYTES {
                batch_bytes = 0;
                if let Err(e) = self.relocate(std::mem::take(&mut batch), report) {
                    failed = Some(e);
                    return Ok(false);
                }
            }
            Ok(true)
        });
        if let Some(e) = failed {
            return Err(PackWalk::Fail(e));
        }
        walked.map_err(PackWalk::Skip)?;
        if !batch.is_empty() {
            self.relocate(batch, report).map_err(PackWalk::Fail)?;
        }
        Ok(())
    }

    fn relocate(
        &self,
        records: Vec<Relocation>,
        report: &mut CompactReport,
    ) -> Result<(), GcError> {
        let bytes: u64 = records
            .iter()
            .map(|r| record_len(r.cid.encoded_len(), r.from.len))
            .sum();
        let count = records.len() as u64;
        let reply = self.send(|reply| Request::Relocate { records, reply })?;
        let moved = reply.recv().map_err(|_| GcError::Closed)??;
        report.blocks_moved += moved;
        // Records deleted while the batch waited were not copied; count
        // the bytes of the ones that were, roughly, by share.
        report.bytes_moved += (bytes * moved).checked_div(count).unwrap_or(0);
        Ok(())
    }
}

/// Why a pack walk stopped.
enum PackWalk {
    /// The pack cannot be walked; other packs can still be compacted.
    Skip(StorageError),
    /// The store itself failed; stop compacting.
    Fail(GcError),
}

fn read_record(
    file: &File,
    at: &PackedAt,
    path: &std::path::Path,
) -> Result<Vec<u8>, StorageError> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(at.len)
        .map_err(|_| StorageError::inconsistent("record larger than memory"))?;
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, at.offset)
        .map_err(|e| StorageError::io("reading record from", path, e))?;
    Ok(data)
}
