//! The [`Blockstore`] handle: open, reads, and the write calls that go
//! through the writer thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use cid::Cid;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::block::{Block, VerifyError, verify};
use crate::config::Config;
use crate::error::{
    DeleteError, GetError, OpenError, PinError, PutError, StorageError, WriteFailure,
};
use crate::pack_cache::{PackCache, ReadFailure};
use crate::pin::PinMode;
use crate::recovery::recover;
use crate::stat::{Metrics, Stat, disk_usage};
use crate::tables::{
    BLOCKS, FORMAT_VERSION, Location, META_BLOCK_BYTES, META_FORMAT_VERSION, META_NEXT_PACK_ID,
    ReadTables, Tables,
};
use crate::writer::{NO_PACK, Request, SeenAt, Writer, WriterConfig, WriterCounters, sync_dir};

/// File name of the index database inside the store's folder.
const INDEX_FILE: &str = "index.redb";
/// Folder of the pack files inside the store's folder.
const PACKS_DIR: &str = "packs";

/// A content-addressed block store: a redb index and append-only pack files.
///
/// A cheap handle: clones share one store. The store closes (and its writer
/// thread stops) when the last clone is dropped. Every call blocks; async
/// code calls it through `spawn_blocking`.
///
/// # To ensure correctness
///
/// - `put` and `put_many` return `Ok` only once the blocks' bytes and index
///   entries are durable (fdatasync of the pack, then a redb commit).
///   Putting a block twice is a no-op.
/// - `pin`, `unpin` and `delete` are durable on return and idempotent.
/// - `gc` deletes every block not reachable from a pin. To write a DAG and
///   then pin it without GC deleting it in between, hold
///   [`gc_guard`](Blockstore::gc_guard) from the first put until the pin.
/// - A block whose bytes do not match its CID is never returned by a
///   verifying read; it is moved aside and reported as
///   [`GetError::Corrupt`].
#[derive(Clone)]
pub struct Blockstore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) db: Arc<Database>,
    pub(crate) cache: Arc<PackCache>,
    pub(crate) packs_dir: PathBuf,
    /// Id of the pack being appended to, or [`NO_PACK`].
    pub(crate) current_pack: Arc<AtomicU64>,
    /// Shared by adds, exclusive for GC.
    pub(crate) gc_lock: RwLock<()>,
    /// One GC or compaction at a time.
    pub(crate) maintenance: Mutex<()>,
    /// Blocks kept from GC without a pin, for a while (see `lease.rs`).
    pub(crate) leases: Mutex<crate::lease::Leases>,
    counters: Arc<WriterCounters>,
    tx: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its last batch; waiting
        // for it means the database is closed when the last handle is gone,
        // so the store can be reopened at once.
        self.tx = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("blockstore writer thread panicked");
        }
    }
}

impl std::fmt::Debug for Blockstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blockstore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// A block that was moved aside because its bytes did not match its CID.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptBlock {
    /// The block.
    pub cid: Cid,
    /// What was wrong.
    pub reason: String,
    /// When it was found, in seconds since the Unix epoch.
    pub found_at: u64,
}

impl Blockstore {
    /// Opens the store in `dir`, creating it if needed.
    ///
    /// Repairs what a crash may have left: uncommitted pack tails are cut
    /// off and pack files the index does not know are deleted.
    pub fn open(dir: &Path, config: Config) -> Result<Blockstore, OpenError> {
        config.validate()?;
        let packs_dir = dir.join(PACKS_DIR);
        std::fs::create_dir_all(&packs_dir)
            .map_err(|e| StorageError::io("creating", &packs_dir, e))?;
        let db = redb::Builder::new()
            .set_cache_size(config.index_cache_bytes)
            .create(dir.join(INDEX_FILE))
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => OpenError::Locked {
                    path: dir.to_path_buf(),
                },
                e => OpenError::Storage(e.into()),
            })?;
        init_tables(&db)?;
        // The folder's entries (index file, packs folder) must be as durable
        // as what is written into them.
        sync_dir(dir)?;
        let (current, recovery) = recover(&db, &packs_dir, config.pack_size_limit)?;
        if recovery != Default::default() {
            tracing::warn!(?recovery, dir = %dir.display(), "blockstore repaired after an unclean stop");
        }

        let db = Arc::new(db);
        let cache = Arc::new(PackCache::new(&packs_dir, config.max_open_packs));
        let current_pack = Arc::new(AtomicU64::new(NO_PACK));
        let counters = Arc::new(WriterCounters::default());
        let writer = Writer::new(
            db.clone(),
            &packs_dir,
            WriterConfig {
                inline_threshold: config.inline_threshold,
                pack_size_limit: config.pack_size_limit,
                max_batch_bytes: config.max_batch_bytes,
            },
            current,
            current_pack.clone(),
            cache.clone(),
            counters.clone(),
        );
        let (tx, rx) = sync_channel(config.write_queue_depth);
        let span = tracing::info_span!("blockstore-writer", dir = %dir.display());
        let writer = std::thread::Builder::new()
            .name("blockstore-writer".into())
            .spawn(move || span.in_scope(|| writer.run(rx)))
            .map_err(|e| StorageError::io("starting writer thread for", dir, e))?;

        Ok(Blockstore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                config,
                db,
                cache,
                packs_dir,
                current_pack,
                gc_lock: RwLock::new(()),
                maintenance: Mutex::new(()),
                leases: Mutex::default(),
                counters,
                tx: Some(tx),
                writer: Some(writer),
            }),
        })
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Stores one block; durable on `Ok`. A block already stored is a no-op.
    pub fn put(&self, block: &Block) -> Result<(), PutError> {
        self.put_many(std::slice::from_ref(block))
    }

    /// Stores blocks; all of them are durable on `Ok`.
    ///
    /// Blocks already stored are skipped without touching the disk. Large
    /// calls are cut into batches of at most `max_batch_bytes`, sent to the
    /// writer back to back; on `Err` some batches may be stored.
    pub fn put_many(&self, blocks: &[Block]) -> Result<(), PutError> {
        self.put_blocks(blocks, false, None)
    }

    /// [`put_many`](Self::put_many) for blocks that nobody is about to read
    /// (cells pushed by an erasure-coded add, rebuilt columns, blocks fetched
    /// for a pin): where the filesystem allows, they go to disk without being
    /// copied into the page cache, which on a busy node is the largest cost
    /// of storing them. A batch that also holds ordinary puts is written the
    /// ordinary way. Durability and reads are the same either way.
    pub fn put_many_cold(&self, blocks: &[Block]) -> Result<(), PutError> {
        self.put_blocks(blocks, true, None)
    }

    /// [`put_many_cold`](Self::put_many_cold), then [`pin`](Self::pin) `root`, the pin in the
    /// same transaction as the last blocks: a pin of a small DAG fetched from the network costs
    /// one fsync instead of two. The pin is recorded only if every block is stored.
    pub fn put_many_cold_and_pin(
        &self,
        blocks: &[Block],
        root: &Cid,
        mode: PinMode,
    ) -> Result<(), PutError> {
        self.put_blocks(blocks, true, Some((*root, mode)))
    }

    fn put_blocks(
        &self,
        blocks: &[Block],
        cold: bool,
        then_pin: Option<(Cid, PinMode)>,
    ) -> Result<(), PutError> {
        let missing = self.missing(blocks)?;
        if missing.is_empty() && then_pin.is_none() {
            return Ok(());
        }
        let mut replies = Vec::new();
        let mut batch: Vec<Block> = Vec::new();
        let mut batch_bytes = 0usize;
        for block in missing {
            if !batch.is_empty()
                && batch_bytes + block.data().len() > self.inner.config.max_batch_bytes
            {
                replies.push(self.send(|reply| Request::Put {
                    blocks: std::mem::take(&mut batch),
                    cold,
                    then_pin: None,
                    reply,
                })?);
                batch_bytes = 0;
            }
            batch_bytes += block.data().len();
            batch.push(block.clone());
        }
        if then_pin.is_some() {
            // The pin goes with the last batch only once the earlier ones are durable.
            for reply in replies.drain(..) {
                reply.recv().map_err(|_| PutError::Closed)??;
            }
        }
        replies.push(self.send(|reply| Request::Put {
            blocks: batch,
            cold,
            then_pin,
            reply,
        })?);
        for reply in replies {
            reply.recv().map_err(|_| PutError::Closed)??;
        }
        Ok(())
    }

    /// The blocks of `blocks` that the index does not have yet.
    fn missing<'b>(&self, blocks: &'b [Block]) -> Result<Vec<&'b Block>, PutError> {
        let tables = self.read_blocks()?;
        let mut out = Vec::new();
        for block in blocks {
            let key = block.cid().to_bytes();
            if tables.get(&key[..]).map_err(StorageError::from)?.is_none() {
                out.push(block);
            }
        }
        Ok(out)
    }

    /// The block's bytes, verified against its CID when
    /// [`Config::verify_on_read`] is set. `None` if the store does not have it.
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>, GetError> {
        let check = if self.inner.config.verify_on_read {
            Check::IfPossible
        } else {
            Check::No
        };
        self.read(cid, check)
    }

    /// The block's bytes, always verified against its CID.
    pub fn get_verified(&self, cid: &Cid) -> Result<Option<Bytes>, GetError> {
        self.read(cid, Check::Always)
    }

    /// Whether the store has the block (without reading it).
    pub fn has(&self, cid: &Cid) -> Result<bool, GetError> {
        let key = cid.to_bytes();
        Ok(self
            .read_blocks()?
            .get(&key[..])
            .map_err(StorageError::from)?
            .is_some())
    }

    /// The block's length in bytes, if the store has it.
    pub fn size_of(&self, cid: &Cid) -> Result<Option<u64>, GetError> {
        let key = cid.to_bytes();
        let table = self.read_blocks()?;
        let guard = table.get(&key[..]).map_err(StorageError::from)?;
        Ok(guard.and_then(|g| match g.value() {
            Location::Inline(d) => Some(d.len() as u64),
            Location::Packed(at) => Some(at.len),
            Location::Malformed => None,
        }))
    }

    /// Removes a block from the index; its pack bytes become dead and are
    /// reclaimed by compaction. Returns whether the block was there.
    ///
    /// Pins are not checked: a caller that must not delete pinned blocks
    /// (`ipfs block rm`) checks [`pin_mode`](Blockstore::pin_mode) first.
    pub fn delete(&self, cid: &Cid) -> Result<bool, DeleteError> {
        let reply = self.send(|reply| Request::Delete {
            cids: vec![*cid],
            reply,
        })?;
        let removed = reply.recv().map_err(|_| DeleteError::Closed)??;
        Ok(removed.first().is_some_and(Option::is_some))
    }

    /// Up to `limit` CIDs in the store's order (by CID bytes), starting
    /// after `after` (from the first when `None`). Page through the whole
    /// store by passing the last CID of each page to the next call.
    pub fn list_page(&self, after: Option<&Cid>, limit: usize) -> Result<Vec<Cid>, GetError> {
        let table = self.read_blocks()?;
        let start = after.map(|c| c.to_bytes());
        let range = match &start {
            Some(k) => table.range::<&[u8]>((
                std::ops::Bound::Excluded(&k[..]),
                std::ops::Bound::Unbounded,
            )),
            None => table.range::<&[u8]>(..),
        }
        .map_err(StorageError::from)?;
        let mut out = Vec::with_capacity(limit.min(4096));
        for entry in range.take(limit) {
            let (k, _) = entry.map_err(StorageError::from)?;
            out.push(parse_key(k.value())?);
        }
        Ok(out)
    }

    /// Every CID in the store, read page by page so that memory stays
    /// bounded whatever the store's size.
    pub fn cids(&self) -> Cids {
        Cids {
            store: self.clone(),
            page: Vec::new().into_iter(),
            last: None,
            done: false,
        }
    }

    /// Counts of blocks and bytes, and the space the store takes on disk.
    pub fn stat(&self) -> Result<Stat, GetError> {
        let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
        let t = ReadTables::open(&txn).map_err(StorageError::from)?;
        let blocks = t.blocks.len().map_err(StorageError::from)?;
        let block_bytes = t
            .meta
            .get(META_BLOCK_BYTES)
            .map_err(StorageError::from)?
            .map_or(0, |g| g.value());
        let mut dead_bytes = 0;
        let mut packs = 0;
        for entry in t.packs.iter().map_err(StorageError::from)? {
            let (_, info) = entry.map_err(StorageError::from)?;
            dead_bytes += info.value().dead;
            packs += 1;
        }
        Ok(Stat {
            blocks,
            block_bytes,
            disk_bytes: disk_usage(&self.inner.dir)?,
            dead_bytes,
            packs,
        })
    }

    /// Counters of the writer since the store was opened.
    pub fn metrics(&self) -> Metrics {
        let c = &self.inner.counters;
        Metrics {
            write_requests: c.requests.load(Ordering::Relaxed),
            write_batches: c.batches.load(Ordering::Relaxed),
            pack_bytes_written: c.pack_bytes.load(Ordering::Relaxed),
        }
    }

    /// Pins `cid`. Idempotent; a recursive pin supersedes a direct one and a
    /// direct pin of a recursively pinned CID changes nothing. The blocks
    /// need not be stored yet.
    pub fn pin(&self, cid: &Cid, mode: PinMode) -> Result<(), PinError> {
        let reply = self.send(|reply| Request::Pin {
            cid: *cid,
            mode,
            reply,
        })?;
        reply.recv().map_err(|_| PinError::Closed)??;
        Ok(())
    }

    /// Pins many CIDs with one mode. The requests are queued together, so the writer commits them
    /// in a few transactions (one fsync each) instead of one per CID: erasure-coded pins hold
    /// thousands of cells per peer.
    pub fn pin_many(&self, cids: &[Cid], mode: PinMode) -> Result<(), PinError> {
        let replies = cids
            .iter()
            .map(|cid| {
                self.send(|reply| Request::Pin {
                    cid: *cid,
                    mode,
                    reply,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for reply in replies {
            reply.recv().map_err(|_| PinError::Closed)??;
        }
        Ok(())
    }

    /// Unpins many CIDs with one mode, as [`Blockstore::unpin`] each, queued together. Returns how
    /// many pins were removed.
    pub fn unpin_many(&self, cids: &[Cid], mode: PinMode) -> Result<usize, PinError> {
        let replies = cids
            .iter()
            .map(|cid| {
                self.send(|reply| Request::Unpin {
                    cid: *cid,
                    mode,
                    reply,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut removed = 0;
        for reply in replies {
            if reply.recv().map_err(|_| PinError::Closed)?? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Unpins `cid` as Kubo's `pin rm` does: `Recursive` removes whatever
    /// pin the CID has, `Direct` only a direct pin. Returns whether a pin
    /// was removed.
    pub fn unpin(&self, cid: &Cid, mode: PinMode) -> Result<bool, PinError> {
        let reply = self.send(|reply| Request::Unpin {
            cid: *cid,
            mode,
            reply,
        })?;
        Ok(reply.recv().map_err(|_| PinError::Closed)??)
    }

    /// Every pin.
    pub fn pins(&self) -> Result<Vec<(Cid, PinMode)>, PinError> {
        let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
        let t = ReadTables::open(&txn).map_err(StorageError::from)?;
        let mut out = Vec::new();
        for entry in t.pins.iter().map_err(StorageError::from)? {
            let (k, v) = entry.map_err(StorageError::from)?;
            if let Some(mode) = PinMode::from_byte(v.value()) {
                out.push((parse_key(k.value())?, mode));
            }
        }
        Ok(out)
    }

    /// How `cid` is pinned, if at all. Only the pin of `cid` itself: a
    /// block reachable from a recursive pin reports `None`.
    pub fn pin_mode(&self, cid: &Cid) -> Result<Option<PinMode>, PinError> {
        let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
        let t = ReadTables::open(&txn).map_err(StorageError::from)?;
        let key = cid.to_bytes();
        let v = t.pins.get(&key[..]).map_err(StorageError::from)?;
        Ok(v.and_then(|g| PinMode::from_byte(g.value())))
    }

    /// Blocks that were moved aside as corrupt and not stored again since:
    /// what a repair has to rebuild.
    pub fn corrupt_blocks(&self) -> Result<Vec<CorruptBlock>, GetError> {
        let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
        let t = ReadTables::open(&txn).map_err(StorageError::from)?;
        let mut out = Vec::new();
        for entry in t.corrupt.iter().map_err(StorageError::from)? {
            let (k, v) = entry.map_err(StorageError::from)?;
            let (found_at, reason) = v.value();
            out.push(CorruptBlock {
                cid: parse_key(k.value())?,
                reason: reason.to_string(),
                found_at,
            });
        }
        Ok(out)
    }

    /// Hands a request to the writer thread; returns where its answer comes.
    pub(crate) fn send<T>(
        &self,
        make: impl FnOnce(SyncSender<Result<T, WriteFailure>>) -> Request,
    ) -> Result<std::sync::mpsc::Receiver<Result<T, WriteFailure>>, WriteFailure> {
        let (reply, rx) = sync_channel(1);
        let tx = self.inner.tx.as_ref().ok_or(WriteFailure::Closed)?;
        tx.send(make(reply)).map_err(|_| WriteFailure::Closed)?;
        Ok(rx)
    }

    /// The index table, on a fresh snapshot.
    fn read_blocks(
        &self,
    ) -> Result<redb::ReadOnlyTable<&'static [u8], crate::tables::LocationValue>, StorageError>
    {
        let txn = self.inner.db.begin_read()?;
        Ok(txn.open_table(BLOCKS)?)
    }

    fn read(&self, cid: &Cid, check: Check) -> Result<Option<Bytes>, GetError> {
        let key = cid.to_bytes();
        // A pack can vanish under a reader when compaction moves its blocks
        // and deletes it; the index then names the new place, so look again.
        for attempt in 0..3 {
            let (data, seen) = {
                let table = self.read_blocks()?;
                let Some(guard) = table.get(&key[..]).map_err(StorageError::from)? else {
                    return Ok(None);
                };
                match guard.value() {
                    Location::Inline(d) => (Ok(d.to_vec()), SeenAt::Inline),
                    Location::Packed(at) => (self.inner.cache.read(&at), SeenAt::Packed(at)),
                    Location::Malformed => (Err(ReadFailure::Truncated), SeenAt::Malformed),
                }
            };
            let data = match data {
                Ok(d) => d,
                Err(ReadFailure::PackMissing) if attempt < 2 => continue,
                Err(ReadFailure::PackMissing) => {
                    return Err(self.move_aside(cid, seen, "its pack file is missing"));
                }
                Err(ReadFailure::Truncated) => {
                    return Err(self.move_aside(
                        cid,
                        seen,
                        "its bytes are past the end of its pack or its index entry is unreadable",
                    ));
                }
                Err(ReadFailure::Storage(e)) => return Err(e.into()),
            };
            if check != Check::No {
                match verify(cid, &data) {
                    Ok(()) => {}
                    Err(VerifyError::UnsupportedHash { code, .. }) if check == Check::Always => {
                        return Err(GetError::Unverifiable { cid: *cid, code });
                    }
                    Err(VerifyError::UnsupportedHash { .. }) => {}
                    Err(_) => {
                        return Err(self.move_aside(cid, seen, "its bytes do not hash to its CID"));
                    }
                }
            }
            return Ok(Some(Bytes::from(data)));
        }
        Ok(None)
    }

    /// Takes a block out of the index and records it as corrupt; returns the
    /// error the reader gets.
    pub(crate) fn move_aside(&self, cid: &Cid, seen: SeenAt, reason: &str) -> GetError {
        let sent = self.send(|reply| Request::MarkCorrupt {
            cid: *cid,
            seen,
            reason: reason.to_string(),
            reply,
        });
        let result = sent.and_then(|rx| rx.recv().map_err(|_| WriteFailure::Closed)?);
        match result {
            Ok(()) => GetError::Corrupt { cid: *cid },
            Err(e) => e.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    No,
    /// Verify when the hash function is known.
    IfPossible,
    /// Verify, and refuse blocks whose hash function is unknown.
    Always,
}

/// Parses an index key back into a CID.
pub(crate) fn parse_key(key: &[u8]) -> Result<Cid, StorageError> {
    Cid::try_from(key)
        .map_err(|e| StorageError::inconsistent(format!("index key is not a CID: {e}")))
}

/// Creates the tables and the format record of a new store; checks the
/// format of an existing one.
fn init_tables(db: &Database) -> Result<(), OpenError> {
    let txn = db.begin_write().map_err(StorageError::from)?;
    {
        let mut t = Tables::open(&txn).map_err(StorageError::from)?;
        let found = t
            .meta
            .get(META_FORMAT_VERSION)
            .map_err(StorageError::from)?
            .map(|g| g.value());
        match found {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(OpenError::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => {
                t.meta
                    .insert(META_FORMAT_VERSION, FORMAT_VERSION)
                    .map_err(StorageError::from)?;
                t.meta
                    .insert(META_NEXT_PACK_ID, 1)
                    .map_err(StorageError::from)?;
                t.meta
                    .insert(META_BLOCK_BYTES, 0)
                    .map_err(StorageError::from)?;
            }
        }
    }
    txn.commit().map_err(StorageError::from)?;
    Ok(())
}

/// Iterator over every CID of a store, from [`Blockstore::cids`].
///
/// Reads pages of 1024 CIDs; blocks added or removed while it runs may or
/// may not be seen.
#[derive(Debug)]
pub struct Cids {
    store: Blockstore,
    page: std::vec::IntoIter<Cid>,
    last: Option<Cid>,
    done: bool,
}

impl Iterator for Cids {
    type Item = Result<Cid, GetError>;

    fn next(&mut self) -> Option<Self::Item> {
        const PAGE: usize = 1024;
        if let Some(cid) = self.page.next() {
            self.last = Some(cid);
            return Some(Ok(cid));
        }
        if self.done {
            return None;
        }
        match self.store.list_page(self.last.as_ref(), PAGE) {
            Ok(page) => {
                self.done = page.len() < PAGE;
                self.page = page.into_iter();
                let cid = self.page.next()?;
                self.last = Some(cid);
                Some(Ok(cid))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;
    use crate::block::RAW;

    fn block(len: usize, seed: u8) -> Block {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        Block::from_data_v1(RAW, Bytes::from(data))
    }

    fn small_packs() -> Config {
        Config {
            inline_threshold: 64,
            pack_size_limit: 4096,
            ..Config::default()
        }
    }

    #[test]
    fn the_handle_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Blockstore>();
        assert!(std::mem::size_of::<Blockstore>() <= std::mem::size_of::<usize>());
    }

    #[test]
    fn pin_many_and_unpin_many() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        let blocks: Vec<Block> = (0..200).map(|i| block(100, i as u8)).collect();
        store.put_many(&blocks).unwrap();
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        store.pin_many(&cids, PinMode::Direct).unwrap();
        assert!(
            cids.iter()
                .all(|c| store.pin_mode(c).unwrap() == Some(PinMode::Direct))
        );
        assert_eq!(store.unpin_many(&cids[..50], PinMode::Direct).unwrap(), 50);
        assert_eq!(store.unpin_many(&cids[..50], PinMode::Direct).unwrap(), 0);
        assert_eq!(store.pins().unwrap().len(), 150);
    }

    #[test]
    fn put_get_has_size_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        let inline = block(10, 1);
        let packed = block(1000, 2);
        store.put_many(&[inline.clone(), packed.clone()]).unwrap();
        for b in [&inline, &packed] {
            assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
            assert_eq!(
                store.get_verified(b.cid()).unwrap().as_ref(),
                Some(b.data())
            );
            assert!(store.has(b.cid()).unwrap());
            assert_eq!(store.size_of(b.cid()).unwrap(), Some(b.data().len() as u64));
        }
        assert!(store.delete(packed.cid()).unwrap());
        assert!(!store.delete(packed.cid()).unwrap());
        assert_eq!(store.get(packed.cid()).unwrap(), None);
        assert!(!store.has(packed.cid()).unwrap());
        assert_eq!(store.size_of(packed.cid()).unwrap(), None);
        assert!(store.has(inline.cid()).unwrap());
    }

    #[test]
    fn blocks_survive_reopen_and_appends_continue_in_the_same_pack() {
        let dir = tempfile::tempdir().unwrap();
        let a = block(500, 1);
        let b = block(600, 2);
        {
            let store = Blockstore::open(dir.path(), small_packs()).unwrap();
            store.put(&a).unwrap();
        }
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        assert_eq!(store.get(a.cid()).unwrap().as_ref(), Some(a.data()));
        store.put(&b).unwrap();
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        assert_eq!(store.stat().unwrap().packs, 1);
    }

    #[test]
    fn a_second_open_of_the_same_folder_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), Config::default()).unwrap();
        let err = Blockstore::open(dir.path(), Config::default()).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        let clone = store.clone();
        drop(store);
        // A clone keeps the store open.
        assert!(Blockstore::open(dir.path(), Config::default()).is_err());
        drop(clone);
        Blockstore::open(dir.path(), Config::default()).unwrap();
    }

    #[test]
    fn invalid_config_is_refused_at_open_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            compact_threshold: 2.0,
            ..Config::default()
        };
        let err = Blockstore::open(dir.path(), config).unwrap_err();
        assert!(err.to_string().contains("compact_threshold"), "{err}");
    }

    #[test]
    fn a_store_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Blockstore::open(dir.path(), Config::default()).unwrap());
        {
            let db = Database::open(dir.path().join(INDEX_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(crate::tables::META)
                .unwrap()
                .insert(META_FORMAT_VERSION, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Blockstore::open(dir.path(), Config::default()).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::UnsupportedFormat {
                    found: 99,
                    supported: 1
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn putting_an_existing_block_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        let b = block(1000, 3);
        store.put(&b).unwrap();
        let before = store.metrics();
        store.put(&b).unwrap();
        store.put_many(&[b.clone(), b.clone()]).unwrap();
        assert_eq!(store.metrics(), before);
        // Duplicates inside one new batch are stored once.
        let c = block(1000, 4);
        store.put_many(&[c.clone(), c.clone()]).unwrap();
        let stat = store.stat().unwrap();
        assert_eq!(stat.blocks, 2);
        assert_eq!(stat.block_bytes, 2000);
    }

    #[test]
    fn packs_roll_over_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        // 1500-byte blocks: two fit a 4096-byte pack, the third does not.
        let blocks: Vec<Block> = (0..5).map(|i| block(1500, i)).collect();
        store.put_many(&blocks).unwrap();
        assert_eq!(store.stat().unwrap().packs, 3);
        // A block bigger than the limit gets a pack of its own.
        let big = block(10_000, 9);
        store.put(&big).unwrap();
        assert_eq!(store.stat().unwrap().packs, 4);
        for b in blocks.iter().chain([&big]) {
            assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        }
        let names: Vec<String> = std::fs::read_dir(dir.path().join(PACKS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn list_pages_through_everything_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        let blocks: Vec<Block> = (0..25).map(|i| block(100 + i as usize, i)).collect();
        store.put_many(&blocks).unwrap();
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_page(after.as_ref(), 7).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 7);
            after = page.last().copied();
            paged.extend(page);
        }
        let mut expected: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        expected.sort_by_key(|c| c.to_bytes());
        assert_eq!(paged, expected);
        let iterated: Vec<Cid> = store.cids().map(Result::unwrap).collect();
        assert_eq!(iterated, expected);
        assert_eq!(store.list_page(None, 0).unwrap(), Vec::<Cid>::new());
    }

    #[test]
    fn stat_counts_blocks_bytes_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        assert_eq!(store.stat().unwrap().blocks, 0);
        store.put_many(&[block(10, 1), block(2000, 2)]).unwrap();
        let stat = store.stat().unwrap();
        assert_eq!(stat.blocks, 2);
        assert_eq!(stat.block_bytes, 2010);
        assert!(stat.disk_bytes >= 2000, "{stat:?}");
        assert_eq!(stat.dead_bytes, 0);
        store.delete(block(2000, 2).cid()).unwrap();
        let stat = store.stat().unwrap();
        assert_eq!(stat.blocks, 1);
        assert_eq!(stat.block_bytes, 10);
        assert!(stat.dead_bytes > 2000, "{stat:?}");
    }

    #[test]
    fn pins_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (block(1, 1), block(2, 2));
        {
            let store = Blockstore::open(dir.path(), Config::default()).unwrap();
            store.pin(a.cid(), PinMode::Direct).unwrap();
            store.pin(a.cid(), PinMode::Direct).unwrap();
            store.pin(b.cid(), PinMode::Recursive).unwrap();
            assert!(!store.unpin(b.cid(), PinMode::Direct).unwrap());
        }
        let store = Blockstore::open(dir.path(), Config::default()).unwrap();
        assert_eq!(store.pin_mode(a.cid()).unwrap(), Some(PinMode::Direct));
        assert_eq!(store.pin_mode(b.cid()).unwrap(), Some(PinMode::Recursive));
        let mut pins = store.pins().unwrap();
        pins.sort_by_key(|(c, _)| c.to_bytes());
        let mut expected = vec![(*a.cid(), PinMode::Direct), (*b.cid(), PinMode::Recursive)];
        expected.sort_by_key(|(c, _)| c.to_bytes());
        assert_eq!(pins, expected);
        assert!(store.unpin(a.cid(), PinMode::Recursive).unwrap());
        assert!(!store.unpin(a.cid(), PinMode::Recursive).unwrap());
        assert_eq!(store.pin_mode(a.cid()).unwrap(), None);
    }

    #[test]
    fn concurrent_puts_are_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), Config::default()).unwrap();
        const THREADS: usize = 8;
        const PUTS: usize = 50;
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (store, barrier) = (&store, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..PUTS {
                        let mut data = vec![0u8; 8192];
                        data[..16].copy_from_slice(&((t * PUTS + i) as u128).to_le_bytes());
                        store
                            .put(&Block::from_data_v1(RAW, Bytes::from(data)))
                            .unwrap();
                    }
                });
            }
        });
        let m = store.metrics();
        assert_eq!(m.write_requests, (THREADS * PUTS) as u64);
        // Eight threads each waiting on an fdatasync: while one batch syncs,
        // the others queue up and go in the next one together.
        assert!(
            m.write_batches * 2 < m.write_requests,
            "no coalescing: {m:?}"
        );
        assert_eq!(store.stat().unwrap().blocks, (THREADS * PUTS) as u64);
    }

    #[test]
    fn a_flipped_byte_is_never_returned_and_the_block_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), small_packs()).unwrap();
        let b = block(1000, 5);
        store.put(&b).unwrap();
        let pack = crate::pack::pack_path(&dir.path().join(PACKS_DIR), 1);
        let mut bytes = std::fs::read(&pack).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&pack, &bytes).unwrap();

        let err = store.get(b.cid()).unwrap_err();
        assert!(
            matches!(err, GetError::Corrupt { cid } if cid == *b.cid()),
            "{err}"
        );
        assert!(!store.has(b.cid()).unwrap());
        assert_eq!(store.get(b.cid()).unwrap(), None);
        let corrupt = store.corrupt_blocks().unwrap();
        assert_eq!(corrupt.len(), 1);
        assert_eq!(corrupt[0].cid, *b.cid());
        assert!(corrupt[0].reason.contains("hash"), "{:?}", corrupt[0]);
        // Putting the block again repairs it and clears the record.
        store.put(&b).unwrap();
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        assert!(store.corrupt_blocks().unwrap().is_empty());
    }

    #[test]
    fn unverified_get_returns_what_is_on_disk_and_get_verified_still_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            verify_on_read: false,
            ..small_packs()
        };
        let store = Blockstore::open(dir.path(), config).unwrap();
        let b = block(1000, 6);
        store.put(&b).unwrap();
        let pack = crate::pack::pack_path(&dir.path().join(PACKS_DIR), 1);
        let mut bytes = std::fs::read(&pack).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&pack, &bytes).unwrap();
        let got = store.get(b.cid()).unwrap().unwrap();
        assert_ne!(&got, b.data());
        assert!(matches!(
            store.get_verified(b.cid()),
            Err(GetError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_block_under_an_unknown_hash_is_served_unverified_but_not_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blockstore::open(dir.path(), Config::default()).unwrap();
        // Multihash code 0x1e is blake3, which this build does not compute.
        let mh = cid::multihash::Multihash::<64>::wrap(0x1e, &[7u8; 32]).unwrap();
        let b = Block::new_unchecked(Cid::new_v1(RAW, mh), Bytes::from_static(b"opaque"));
        store.put(&b).unwrap();
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        assert!(matches!(
            store.get_verified(b.cid()),
            Err(GetError::Unverifiable { code: 0x1e, .. })
        ));
        assert!(store.has(b.cid()).unwrap());
    }
}
