//! The writer thread: the one owner of every write to the store.
//!
//! Callers send requests over a bounded channel and wait on a reply channel
//! of their own. The thread takes the first waiting request, then whatever
//! else is already queued (up to `max_batch_bytes`), and commits them
//! together: block bytes are appended to the current pack with one `writev`
//! run and made durable with one fdatasync, then every index change of the
//! batch is committed in one redb transaction, then every caller is answered.
//! Concurrent writers thus share both syncs (group commit), and the index
//! never names bytes that are not on disk.

use std::collections::HashMap;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cid::Cid;
use redb::{Database, ReadableTable};

use crate::block::Block;
use crate::direct::Stage;
use crate::error::{StorageError, WriteFailure};
use crate::pack::{PACK_HEADER_LEN, PackFile, pack_path, record_header, record_len};
use crate::pack_cache::PackCache;
use crate::pin::{PinMode, apply_pin, apply_unpin};
use crate::tables::{Location, META_BLOCK_BYTES, META_NEXT_PACK_ID, PackInfo, PackedAt, Tables};

/// Marks "no current pack" in the shared current-pack id.
pub(crate) const NO_PACK: u64 = u64::MAX;

/// Where a block that is about to be moved aside was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SeenAt {
    Inline,
    Packed(PackedAt),
    Malformed,
}

/// One relocation of a live record by compaction.
#[derive(Debug)]
pub(crate) struct Relocation {
    pub(crate) cid: Cid,
    pub(crate) from: PackedAt,
    pub(crate) data: Bytes,
}

type Reply<T> = SyncSender<Result<T, WriteFailure>>;

/// A write for the writer thread.
pub(crate) enum Request {
    /// Store blocks (existing ones are skipped).
    Put {
        blocks: Vec<Block>,
        /// Nobody is about to read them: write past the page cache.
        cold: bool,
        /// A pin recorded in the same transaction, once every block is in.
        then_pin: Option<(Cid, PinMode)>,
        reply: Reply<()>,
    },
    /// Remove blocks; answers the length of each removed block.
    Delete {
        cids: Vec<Cid>,
        reply: Reply<Vec<Option<u64>>>,
    },
    Pin {
        cid: Cid,
        mode: PinMode,
        reply: Reply<()>,
    },
    /// Answers whether a pin was removed.
    Unpin {
        cid: Cid,
        mode: PinMode,
        reply: Reply<bool>,
    },
    /// Move a block aside if the index still points where it was read.
    MarkCorrupt {
        cid: Cid,
        seen: SeenAt,
        reason: String,
        reply: Reply<()>,
    },
    /// Copy live records of an old pack into the current one; answers how
    /// many were still live and moved.
    Relocate {
        records: Vec<Relocation>,
        reply: Reply<u64>,
    },
    /// Delete a pack that holds no live record; answers whether it did.
    RetirePack { pack: u32, reply: Reply<bool> },
}

impl Request {
    /// Block bytes the request will append, for batch sizing.
    fn bytes(&self) -> usize {
        match self {
            Request::Put { blocks, .. } => blocks.iter().map(|b| b.data().len()).sum(),
            Request::Relocate { records, .. } => records.iter().map(|r| r.data.len()).sum(),
            _ => 0,
        }
    }

    fn fail(self, e: WriteFailure) {
        // A caller that gave up waiting has dropped its receiver; nothing to do.
        match self {
            Request::Put { reply, .. } | Request::Pin { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Request::MarkCorrupt { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Request::Delete { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Request::Unpin { reply, .. } | Request::RetirePack { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Request::Relocate { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Answers a request once its batch is durable (`None`) or has failed.
type Finish = Box<dyn FnOnce(Option<WriteFailure>) + Send>;

fn finish<T: Send + 'static>(reply: Reply<T>, value: T) -> Finish {
    Box::new(move |failure| {
        // A caller that gave up waiting has dropped its receiver.
        let _ = reply.send(match failure {
            None => Ok(value),
            Some(e) => Err(e),
        });
    })
}

/// Settings the writer needs, copied out of the config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterConfig {
    pub(crate) inline_threshold: usize,
    pub(crate) pack_size_limit: u64,
    pub(crate) max_batch_bytes: usize,
}

/// Counters of the writer thread, shared with the handles.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    pub(crate) batches: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) pack_bytes: AtomicU64,
}

pub(crate) struct Writer {
    counters: Arc<WriterCounters>,
    db: Arc<Database>,
    packs_dir: PathBuf,
    config: WriterConfig,
    current: Option<PackFile>,
    current_id: Arc<AtomicU64>,
    cache: Arc<PackCache>,
    /// The aligned buffer of cold (direct) appends.
    stage: Stage,
}

/// Appends planned for one pack in one batch.
struct Segment {
    pack: PackFile,
    /// Whether this batch created the pack (so a failure deletes it).
    created: bool,
    start_len: u64,
    planned_len: u64,
    /// Record header plus CID, then data, for each record.
    parts: Vec<(Vec<u8>, Bytes)>,
}

/// Everything one batch changes besides table rows.
struct Plan {
    segments: Vec<Segment>,
    packs: HashMap<u32, PackInfo>,
    retired: Vec<u32>,
    block_bytes: u64,
    next_pack_id: u64,
    /// Whether some block of the batch is likely to be read soon (a put that is not
    /// [cold](crate::Blockstore::put_many_cold)): then the batch goes through the page cache.
    hot: bool,
    /// Time spent in `writev` and in fdatasync, for the batch's log line.
    append_time: Duration,
    sync_time: Duration,
}

impl Writer {
    pub(crate) fn new(
        db: Arc<Database>,
        packs_dir: &Path,
        config: WriterConfig,
        current: Option<PackFile>,
        current_id: Arc<AtomicU64>,
        cache: Arc<PackCache>,
        counters: Arc<WriterCounters>,
    ) -> Self {
        current_id.store(
            current.as_ref().map_or(NO_PACK, |p| u64::from(p.id())),
            Ordering::SeqCst,
        );
        Self {
            counters,
            db,
            packs_dir: packs_dir.to_path_buf(),
            config,
            current,
            current_id,
            cache,
            stage: Stage::new(),
        }
    }

    /// Serves requests until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while bytes < self.config.max_batch_bytes {
                match rx.try_recv() {
                    Ok(next) => {
                        bytes += next.bytes();
                        batch.push(next);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit(batch);
        }
        tracing::debug!("blockstore writer stopping: every handle is gone");
    }

    fn commit(&mut self, batch: Vec<Request>) {
        self.counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut finishes = Vec::with_capacity(batch.len());
        let mut unapplied = Vec::new();
        match self.try_commit(batch, &mut finishes, &mut unapplied) {
            Ok(()) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                finishes.into_iter().for_each(|f| f(None));
            }
            Err(e) => {
                tracing::error!(error = %e, "blockstore write batch failed");
                let failure = WriteFailure::Storage(e);
                finishes.into_iter().for_each(|f| f(Some(failure.clone())));
                unapplied.into_iter().for_each(|r| r.fail(failure.clone()));
            }
        }
    }

    /// Applies a batch in one transaction. Applied requests leave their
    /// answer in `finishes`; on failure, the ones not reached are left in
    /// `unapplied`, and the packs are put back as they were.
    fn try_commit(
        &mut self,
        batch: Vec<Request>,
        finishes: &mut Vec<Finish>,
        unapplied: &mut Vec<Request>,
    ) -> Result<(), StorageError> {
        let mut pending = batch.into_iter();
        let txn = match self.db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                unapplied.extend(pending);
                return Err(e.into());
            }
        };
        let mut plan = Plan {
            segments: Vec::new(),
            packs: HashMap::new(),
            retired: Vec::new(),
            block_bytes: 0,
            next_pack_id: 0,
            hot: false,
            append_time: Duration::ZERO,
            sync_time: Duration::ZERO,
        };
        let applied = (|| {
            let mut tables = Tables::open(&txn)?;
            (plan.block_bytes, plan.next_pack_id) = load_counters(&tables)?;
            for req in pending.by_ref() {
                match self.apply(req, &mut tables, &mut plan) {
                    Ok(f) => finishes.push(f),
                    Err((e, req)) => {
                        unapplied.push(*req);
                        return Err(e);
                    }
                }
            }
            self.write_segments(&mut plan, &mut tables)
        })();
        let commit_started = Instant::now();
        let result = applied.and_then(|()| txn.commit().map_err(StorageError::from));
        match result {
            Ok(()) => {
                tracing::trace!(
                    requests = finishes.len(),
                    append_us = plan.append_time.as_micros() as u64,
                    sync_us = plan.sync_time.as_micros() as u64,
                    commit_us = commit_started.elapsed().as_micros() as u64,
                    "batch committed"
                );
                self.after_commit(plan);
                Ok(())
            }
            Err(e) => {
                unapplied.extend(pending);
                self.undo(plan);
                Err(e)
            }
        }
    }

    fn apply(
        &mut self,
        req: Request,
        t: &mut Tables<'_>,
        plan: &mut Plan,
    ) -> Result<Finish, (StorageError, Box<Request>)> {
        macro_rules! attempt {
            ($e:expr, $req:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((StorageError::from(e), Box::new($req))),
                }
            };
        }
        match req {
            Request::Put {
                blocks,
                cold,
                then_pin,
                reply,
            } => {
                plan.hot |= !cold;
                let mut applied = blocks
                    .iter()
                    .try_for_each(|b| self.put_one(b.cid(), b.data(), t, plan));
                if let (Ok(()), Some((cid, mode))) = (&applied, then_pin) {
                    applied = apply_pin(&mut t.pins, &cid.to_bytes(), mode);
                }
                match applied {
                    Ok(()) => Ok(finish(reply, ())),
                    Err(e) => Err((
                        e,
                        Box::new(Request::Put {
                            blocks,
                            cold,
                            then_pin,
                            reply,
                        }),
                    )),
                }
            }
            Request::Delete { cids, reply } => {
                let mut out = Vec::with_capacity(cids.len());
                for cid in &cids {
                    let r = remove_entry(&cid.to_bytes(), None, t, plan);
                    out.push(attempt!(r, Request::Delete { cids, reply }));
                }
                Ok(finish(reply, out))
            }
            Request::Pin { cid, mode, reply } => {
                let r = apply_pin(&mut t.pins, &cid.to_bytes(), mode);
                attempt!(r, Request::Pin { cid, mode, reply });
                Ok(finish(reply, ()))
            }
            Request::Unpin { cid, mode, reply } => {
                let r = apply_unpin(&mut t.pins, &cid.to_bytes(), mode);
                let removed = attempt!(r, Request::Unpin { cid, mode, reply });
                Ok(finish(reply, removed))
            }
            Request::MarkCorrupt {
                cid,
                seen,
                reason,
                reply,
            } => {
                let key = cid.to_bytes();
                let r = remove_entry(&key, Some(seen), t, plan).and_then(|removed| {
                    if removed.is_some() {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        t.corrupt.insert(&key[..], (now, reason.as_str()))?;
                        tracing::warn!(%cid, %reason, "block moved aside as corrupt");
                    }
                    Ok(())
                });
                attempt!(
                    r,
                    Request::MarkCorrupt {
                        cid,
                        seen,
                        reason,
                        reply
                    }
                );
                Ok(finish(reply, ()))
            }
            Request::Relocate { records, reply } => {
                let mut moved = 0;
                for rec in &records {
                    match self.relocate_one(rec, t, plan) {
                        Ok(true) => moved += 1,
                        Ok(false) => {}
                        Err(e) => return Err((e, Box::new(Request::Relocate { records, reply }))),
                    }
                }
                Ok(finish(reply, moved))
            }
            Request::RetirePack { pack, reply } => {
                let r = self.retire(pack, t, plan);
                let retired = attempt!(r, Request::RetirePack { pack, reply });
                Ok(finish(reply, retired))
            }
        }
    }

    fn put_one(
        &mut self,
        cid: &Cid,
        data: &Bytes,
        t: &mut Tables<'_>,
        plan: &mut Plan,
    ) -> Result<(), StorageError> {
        let key = cid.to_bytes();
        if t.blocks.get(&key[..])?.is_some() {
            return Ok(());
        }
        if data.len() < self.config.inline_threshold {
            t.blocks.insert(&key[..], Location::Inline(data))?;
        } else {
            let at = self.plan_append(&key, data.clone(), t, plan)?;
            t.blocks.insert(&key[..], Location::Packed(at))?;
        }
        plan.block_bytes += data.len() as u64;
        // A block that comes back after being moved aside is whole again.
        t.corrupt.remove(&key[..])?;
        Ok(())
    }

    fn relocate_one(
        &mut self,
        rec: &Relocation,
        t: &mut Tables<'_>,
        plan: &mut Plan,
    ) -> Result<bool, StorageError> {
        let key = rec.cid.to_bytes();
        let still_there = t
            .blocks
            .get(&key[..])?
            .is_some_and(|g| matches!(g.value(), Location::Packed(at) if at == rec.from));
        if !still_there {
            return Ok(false);
        }
        let at = self.plan_append(&key, rec.data.clone(), t, plan)?;
        t.blocks.insert(&key[..], Location::Packed(at))?;
        let len = record_len(key.len(), rec.from.len);
        let old = pack_info(rec.from.pack, t, plan)?;
        old.live = old.live.saturating_sub(len);
        old.dead += len;
        Ok(true)
    }

    fn retire(
        &mut self,
        pack: u32,
        t: &mut Tables<'_>,
        plan: &mut Plan,
    ) -> Result<bool, StorageError> {
        let in_use = self.current.as_ref().is_some_and(|p| p.id() == pack)
            || plan.segments.iter().any(|s| s.pack.id() == pack);
        if in_use || plan.retired.contains(&pack) {
            return Ok(false);
        }
        let info = *pack_info(pack, t, plan)?;
        if info.live != 0 {
            return Ok(false);
        }
        plan.packs.remove(&pack);
        t.packs.remove(pack)?;
        plan.retired.push(pack);
        Ok(true)
    }

    /// Reserves room for a record in the current pack (rolling over to a
    /// new pack when the limit would be passed) and returns where its data
    /// will be.
    fn plan_append(
        &mut self,
        key: &[u8],
        data: Bytes,
        t: &mut Tables<'_>,
        plan: &mut Plan,
    ) -> Result<PackedAt, StorageError> {
        let rec_len = record_len(key.len(), data.len() as u64);
        let roll = match plan.segments.last() {
            Some(s) => {
                s.planned_len > PACK_HEADER_LEN
                    && s.planned_len + rec_len > self.config.pack_size_limit
            }
            None => match &self.current {
                Some(p) => {
                    p.len() > PACK_HEADER_LEN && p.len() + rec_len > self.config.pack_size_limit
                }
                None => true,
            },
        };
        if plan.segments.is_empty()
            && !roll
            && let Some(pack) = self.current.take()
        {
            let len = pack.len();
            plan.segments.push(Segment {
                pack,
                created: false,
                start_len: len,
                planned_len: len,
                parts: Vec::new(),
            });
        }
        if roll {
            if plan.segments.is_empty() {
                // The old current pack is full: it takes no part in the batch.
                self.current = None;
            }
            let id = u32::try_from(plan.next_pack_id).map_err(|_| {
                StorageError::inconsistent("pack ids are exhausted (4 billion packs)")
            })?;
            plan.next_pack_id += 1;
            let pack = PackFile::create(&self.packs_dir, id)?;
            plan.packs.insert(
                id,
                PackInfo {
                    committed_len: PACK_HEADER_LEN,
                    live: 0,
                    dead: 0,
                },
            );
            plan.segments.push(Segment {
                pack,
                created: true,
                start_len: PACK_HEADER_LEN,
                planned_len: PACK_HEADER_LEN,
                parts: Vec::new(),
            });
        }
        let Some(seg) = plan.segments.last_mut() else {
            return Err(StorageError::inconsistent("no pack to append to"));
        };
        let id = seg.pack.id();
        let mut head = Vec::with_capacity(key.len() + 12);
        head.extend_from_slice(&record_header(key.len(), data.len() as u64));
        head.extend_from_slice(key);
        let at = PackedAt {
            pack: id,
            offset: seg.planned_len + head.len() as u64,
            len: data.len() as u64,
        };
        seg.planned_len += rec_len;
        seg.parts.push((head, data));
        pack_info(id, t, plan)?.live += rec_len;
        Ok(at)
    }

    /// Appends and syncs every planned segment, then records the packs'
    /// accounting and counters in the transaction.
    fn write_segments(&mut self, plan: &mut Plan, t: &mut Tables<'_>) -> Result<(), StorageError> {
        let mut created_any = false;
        for seg in &mut plan.segments {
            if seg.parts.is_empty() {
                continue;
            }
            // IoSlices borrow the parts; the kernel takes up to 1024 per call.
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(seg.parts.len() * 2);
            for (head, data) in &seg.parts {
                slices.push(IoSlice::new(head));
                slices.push(IoSlice::new(data));
            }
            let started = Instant::now();
            if plan.hot {
                seg.pack.append(&mut slices)?;
            } else {
                seg.pack.append_cold(&mut slices, &mut self.stage)?;
            }
            let appended = Instant::now();
            seg.pack.sync()?;
            plan.append_time += appended - started;
            plan.sync_time += appended.elapsed();
            self.counters
                .pack_bytes
                .fetch_add(seg.planned_len - seg.start_len, Ordering::Relaxed);
            created_any |= seg.created;
            if let Some(info) = plan.packs.get_mut(&seg.pack.id()) {
                info.committed_len = seg.pack.len();
            }
        }
        if created_any {
            sync_dir(&self.packs_dir)?;
        }
        for (id, info) in &plan.packs {
            t.packs.insert(*id, *info)?;
        }
        t.meta.insert(META_BLOCK_BYTES, plan.block_bytes)?;
        t.meta.insert(META_NEXT_PACK_ID, plan.next_pack_id)?;
        Ok(())
    }

    fn after_commit(&mut self, plan: Plan) {
        if let Some(last) = plan.segments.into_iter().last() {
            self.current = Some(last.pack);
        }
        self.current_id.store(
            self.current.as_ref().map_or(NO_PACK, |p| u64::from(p.id())),
            Ordering::SeqCst,
        );
        for id in plan.retired {
            self.cache.forget(id);
            let path = pack_path(&self.packs_dir, id);
            // If this fails the file is an orphan, deleted at the next open.
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(pack = id, "deleted compacted pack"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not delete compacted pack")
                }
            }
        }
    }

    /// Puts the packs back as they were before a failed batch.
    fn undo(&mut self, plan: Plan) {
        for mut seg in plan.segments {
            if seg.created {
                let path = pack_path(&self.packs_dir, seg.pack.id());
                drop(seg.pack);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove pack of failed batch");
                }
            } else {
                if let Err(e) = seg.pack.truncate(seg.start_len) {
                    // The tail is past the committed length: open cuts it.
                    tracing::error!(error = %e, "could not cut back a failed append; reopen the store");
                    continue;
                }
                self.current = Some(seg.pack);
            }
        }
    }
}

/// Reads the counters the batch updates.
fn load_counters(t: &Tables<'_>) -> Result<(u64, u64), StorageError> {
    let bytes = t.meta.get(META_BLOCK_BYTES)?.map_or(0, |g| g.value());
    let next = t.meta.get(META_NEXT_PACK_ID)?.map_or(1, |g| g.value());
    Ok((bytes, next))
}

/// The batch's working copy of a pack's accounting.
fn pack_info<'p>(
    id: u32,
    t: &Tables<'_>,
    plan: &'p mut Plan,
) -> Result<&'p mut PackInfo, StorageError> {
    if let std::collections::hash_map::Entry::Vacant(slot) = plan.packs.entry(id) {
        slot.insert(t.packs.get(id)?.map(|g| g.value()).unwrap_or_default());
    }
    plan.packs
        .get_mut(&id)
        .ok_or_else(|| StorageError::inconsistent("pack accounting vanished"))
}

/// Removes an index entry (only if it is still where `expect` says, when
/// given) and books its record as dead. Returns the block's length.
fn remove_entry(
    key: &[u8],
    expect: Option<SeenAt>,
    t: &mut Tables<'_>,
    plan: &mut Plan,
) -> Result<Option<u64>, StorageError> {
    let (len, packed) = match t.blocks.get(key)?.map(|g| match g.value() {
        Location::Inline(d) => (SeenAt::Inline, d.len() as u64),
        Location::Packed(at) => (SeenAt::Packed(at), at.len),
        Location::Malformed => (SeenAt::Malformed, 0),
    }) {
        None => return Ok(None),
        Some((seen, len)) => {
            if expect.is_some_and(|e| e != seen) {
                return Ok(None);
            }
            (len, seen)
        }
    };
    t.blocks.remove(key)?;
    plan.block_bytes = plan.block_bytes.saturating_sub(len);
    if let SeenAt::Packed(at) = packed {
        let rec = record_len(key.len(), at.len);
        let info = pack_info(at.pack, t, plan)?;
        info.live = info.live.saturating_sub(rec);
        info.dead += rec;
    }
    Ok(Some(len))
}

/// Makes creations and deletions of files in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("syncing folder", dir, e))
}
