//! The add pipeline: bytes in, a UnixFS DAG durable in the blockstore and pinned, events out.
//!
//! Three stages, each bounded, so memory stays flat whatever the upload size:
//!
//! ```text
//! caller (async) ──entries──► import thread ──batches──► store thread ──► put_many (append+fsync+commit)
//!                  (bounded)  chunk + hash     (2 × ~16 MiB)             then pin under the GC guard
//! ```
//!
//! Hashing runs on the import thread while the store thread waits on the disk, so the two overlap.
//! The store thread holds the blockstore's GC guard from its first write to the pin, so GC can never
//! sweep blocks of an add in progress. Nothing is pinned unless every block is durable; an aborted
//! add leaves only unpinned blocks, which the next GC removes.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use tokio::sync::mpsc;

use bytes::Bytes;
use cid::{Cid, Version};
use tessera_blockstore::{Block, Blockstore, PinMode};

use crate::unixfs::{DirectoryBuilder, DirectoryOptions, FileImporter, ImportOptions};

/// Blocks are handed to the blockstore in batches of about this many bytes: one fsync each.
const BATCH_BYTES: usize = 16 << 20;
/// Progress events are sent at most once per this many bytes of a file.
const PROGRESS_STEP: u64 = 1 << 20;

/// What the caller feeds the pipeline, in upload order.
#[derive(Debug)]
pub enum AddInput {
    /// A file starts; its relative path (`dir/a.txt`), or `""` for an unnamed upload.
    FileStart(String),
    /// The next bytes of the current file.
    Data(Bytes),
    /// The current file is complete.
    FileEnd,
    /// An (empty, or to be filled) directory.
    Directory(String),
    /// A symbolic link and its target.
    Symlink(String, String),
    /// The upload broke off: store nothing more, pin nothing.
    Abort(String),
}

/// What the pipeline reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddEvent {
    /// Bytes of the current file imported so far.
    Progress {
        /// The file's path.
        name: String,
        /// Bytes so far.
        bytes: u64,
    },
    /// A file, symlink or directory is complete.
    Added {
        /// Its path (the CID when the upload had no name).
        name: String,
        /// Its CID.
        cid: Cid,
        /// Cumulative size of its DAG, as `ipfs add` reports `Size`.
        size: u64,
    },
    /// The add failed; nothing was pinned.
    Failed(String),
}

/// How to add.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Chunking and CID options.
    pub import: ImportOptions,
    /// Put everything in one directory and report it last, named `""`.
    pub wrap: bool,
    /// Compute CIDs only.
    pub only_hash: bool,
    /// Pin the top-level entries (or the wrapper).
    pub pin: bool,
    /// Report progress events.
    pub progress: bool,
}

/// Sink for events: the caller's channel. A failed send means the caller went away.
pub trait EventSink: Send + 'static {
    /// Delivers one event; returns false if nobody listens any more.
    fn send(&mut self, event: AddEvent) -> bool;
}

/// Where the blocks of an add go, on the store thread: the node's blockstore ([`StoreSink`]), or
/// another consumer (the cluster streams an erasure-coded add into its encoder, so that the adding
/// peer never stores what it does not hold).
pub trait BlockSink: Send + 'static {
    /// Takes the next batch of new blocks, in import order (children before parents). Blocking is
    /// the back-pressure that reaches the upload.
    fn put(&mut self, blocks: Vec<Block>) -> Result<(), String>;
    /// The import completed: `roots` are the top-level entries (or the wrapper), each once. Not
    /// called when the add failed.
    fn finish(&mut self, roots: Vec<Cid>) -> Result<(), String>;
    /// How many bytes of blocks to gather per `put`. Up to four batches are in flight between the
    /// import and the sink, so this bounds the add's memory.
    fn batch_bytes(&self) -> usize {
        BATCH_BYTES
    }
    /// Runs the whole add (every `put`, then `finish`) inside whatever the sink must hold meanwhile.
    fn session(
        &mut self,
        add: &mut dyn FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        add(self)
    }
}

/// The ordinary sink: every block durable in the blockstore, then the roots pinned (unless the
/// options say not to), all under the blockstore's GC guard so that GC never sweeps an add in
/// progress.
pub struct StoreSink {
    store: Blockstore,
    only_hash: bool,
    pin: bool,
    stored: Stored,
    pinned: Option<Stored>,
}

impl StoreSink {
    /// `stored` is called with the CIDs of each batch once it is durable (the node tells Bitswap).
    pub fn new(
        store: Blockstore,
        options: &AddOptions,
        stored: impl Fn(Vec<Cid>) + Send + 'static,
    ) -> Self {
        StoreSink {
            store,
            only_hash: options.only_hash,
            pin: options.pin,
            stored: Box::new(stored),
            pinned: None,
        }
    }

    /// `pinned` is called with the roots once they are pinned (the node announces them in the
    /// DHT when routing is on).
    pub fn on_pinned(mut self, pinned: impl Fn(Vec<Cid>) + Send + 'static) -> Self {
        self.pinned = Some(Box::new(pinned));
        self
    }
}

impl BlockSink for StoreSink {
    fn put(&mut self, blocks: Vec<Block>) -> Result<(), String> {
        if self.only_hash {
            return Ok(());
        }
        self.store
            .put_many(&blocks)
            .map_err(|e| format!("cannot store blocks: {e}"))?;
        (self.stored)(blocks.iter().map(|b| *b.cid()).collect());
        Ok(())
    }

    fn finish(&mut self, roots: Vec<Cid>) -> Result<(), String> {
        if self.only_hash || !self.pin {
            return Ok(());
        }
        for root in &roots {
            self.store
                .pin(root, PinMode::Recursive)
                .map_err(|e| format!("cannot pin {root}: {e}"))?;
        }
        if let Some(pinned) = &self.pinned {
            pinned(roots);
        }
        Ok(())
    }

    fn session(
        &mut self,
        add: &mut dyn FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let store = self.store.clone();
        let _guard = store.gc_guard();
        add(self)
    }
}

/// Starts the pipeline into the node's blockstore; returns the sender of inputs. The pipeline
/// ends after `input` is dropped (then it finishes the directories and pins) or after an
/// [`AddInput::Abort`].
///
/// `stored` is called with the CIDs of each batch once it is durable (the node tells Bitswap).
pub fn start(
    store: Blockstore,
    options: AddOptions,
    events: impl EventSink,
    stored: impl Fn(Vec<Cid>) + Send + 'static,
) -> std::io::Result<mpsc::Sender<AddInput>> {
    let sink = StoreSink::new(store, &options, stored);
    start_into(sink, options, events)
}

/// [`start`] into any [`BlockSink`].
pub fn start_into(
    sink: impl BlockSink,
    options: AddOptions,
    events: impl EventSink,
) -> std::io::Result<mpsc::Sender<AddInput>> {
    // A tokio channel: the async feeder awaits room (back-pressure from the disk reaches the upload)
    // without a blocking-pool hop per chunk; the import thread takes from it with blocking_recv.
    let (tx, rx) = mpsc::channel::<AddInput>(64);
    std::thread::Builder::new()
        .name("tessera-add".into())
        .spawn(move || import_thread(sink, options, rx, events))?;
    Ok(tx)
}

type Stored = Box<dyn Fn(Vec<Cid>) + Send>;

struct Current {
    name: String,
    importer: FileImporter,
    bytes: u64,
    last_progress: u64,
}

fn import_thread(
    sink: impl BlockSink,
    options: AddOptions,
    mut rx: mpsc::Receiver<AddInput>,
    mut events: impl EventSink,
) {
    let (batch_tx, batch_rx) = sync_channel::<Batch>(2);
    let batch_bytes = sink.batch_bytes();
    let storer = std::thread::Builder::new()
        .name("tessera-add-store".into())
        .spawn(move || store_thread(sink, batch_rx));
    let storer = match storer {
        Ok(h) => h,
        Err(e) => {
            events.send(AddEvent::Failed(format!(
                "cannot start the store thread: {e}"
            )));
            return;
        }
    };
    let outcome = import(&options, batch_bytes, &mut rx, &batch_tx, &mut events);
    let (pins, failure) = match outcome {
        Ok(pins) => (pins, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    if failure.is_none() {
        let _ = batch_tx.send(Batch::Finish { pins });
    }
    drop(batch_tx);
    let stored = storer
        .join()
        .unwrap_or_else(|_| Err("the store thread panicked".into()));
    // A store thread that failed is why the import stopped ("the store thread stopped"), so its
    // error is the one to report.
    match (failure, stored) {
        (_, Err(e)) | (Some(e), Ok(())) => {
            events.send(AddEvent::Failed(e));
        }
        (None, Ok(())) => {}
    }
}

/// Reads inputs until the end, returning the roots to pin, or why the add failed.
fn import(
    options: &AddOptions,
    batch_bytes: usize,
    rx: &mut mpsc::Receiver<AddInput>,
    batches: &SyncSender<Batch>,
    events: &mut impl EventSink,
) -> Result<Vec<Cid>, String> {
    let dir_options = DirectoryOptions {
        cid_version: options.import.cid_version,
        ..DirectoryOptions::default()
    };
    let mut dirs = DirectoryBuilder::new(dir_options);
    let mut has_dirs = false;
    let mut current: Option<Current> = None;
    let mut pending = Vec::new();
    let mut pending_bytes = 0usize;
    let mut top_level: Vec<(String, Cid)> = Vec::new();
    let mut named_entries = 0usize;

    let flush = |pending: &mut Vec<Block>, pending_bytes: &mut usize| -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        *pending_bytes = 0;
        batches
            .send(Batch::Blocks(std::mem::take(pending)))
            .map_err(|_| "the store thread stopped".to_string())
    };

    while let Some(input) = rx.blocking_recv() {
        match input {
            AddInput::Abort(why) => return Err(why),
            AddInput::FileStart(name) => {
                if current.is_some() {
                    return Err("a file started before the previous one ended".into());
                }
                let importer = FileImporter::new(options.import).map_err(|e| e.to_string())?;
                current = Some(Current {
                    name,
                    importer,
                    bytes: 0,
                    last_progress: 0,
                });
            }
            AddInput::Data(data) => {
                let cur = current.as_mut().ok_or("file data outside of a file")?;
                let before = pending.len();
                cur.importer.push(&data, &mut pending);
                pending_bytes += pending[before..]
                    .iter()
                    .map(|b| b.data().len())
                    .sum::<usize>();
                cur.bytes += data.len() as u64;
                if options.progress && cur.bytes - cur.last_progress >= PROGRESS_STEP {
                    cur.last_progress = cur.bytes;
                    if !events.send(AddEvent::Progress {
                        name: cur.name.clone(),
                        bytes: cur.bytes,
                    }) {
                        return Err("the client went away".into());
                    }
                }
                if pending_bytes >= batch_bytes {
                    flush(&mut pending, &mut pending_bytes)?;
                }
            }
            AddInput::FileEnd => {
                let cur = current.take().ok_or("file end outside of a file")?;
                let file = cur.importer.finish(&mut pending);
                if options.progress {
                    events.send(AddEvent::Progress {
                        name: cur.name.clone(),
                        bytes: cur.bytes,
                    });
                }
                let shown = if cur.name.is_empty() {
                    file.cid.to_string()
                } else {
                    cur.name.clone()
                };
                if !events.send(AddEvent::Added {
                    name: shown,
                    cid: file.cid,
                    size: file.tsize,
                }) {
                    return Err("the client went away".into());
                }
                if cur.name.is_empty() {
                    top_level.push((String::new(), file.cid));
                    if options.wrap {
                        named_entries += 1;
                        dirs.add_file(&file.cid.to_string(), &file)
                            .map_err(|e| e.to_string())?;
                    }
                } else {
                    named_entries += 1;
                    dirs.add_file(&cur.name, &file).map_err(|e| e.to_string())?;
                    if cur.name.contains('/') {
                        // Its parents exist implicitly, as in Kubo, even without directory parts.
                        has_dirs = true;
                    } else {
                        top_level.push((cur.name.clone(), file.cid));
                    }
                }
            }
            AddInput::Directory(name) => {
                dirs.add_directory(&name).map_err(|e| e.to_string())?;
                has_dirs = true;
                named_entries += 1;
            }
            AddInput::Symlink(name, target) => {
                let block = crate::unixfs::symlink(&target, options.import.cid_version);
                let cid = *block.cid();
                let size = block.data().len() as u64;
                pending.push(block);
                dirs.add_link(&name, cid, size).map_err(|e| e.to_string())?;
                events.send(AddEvent::Added {
                    name: name.clone(),
                    cid,
                    size,
                });
                named_entries += 1;
                if name.contains('/') {
                    has_dirs = true;
                } else {
                    top_level.push((name, cid));
                }
            }
        }
    }
    if current.is_some() {
        return Err("the upload ended in the middle of a file".into());
    }
    if named_entries == 0 && top_level.is_empty() {
        return Err("no files were uploaded".into());
    }
    let mut pins: Vec<Cid> = top_level
        .iter()
        .filter(|(n, _)| !n.contains('/'))
        .map(|(_, c)| *c)
        .collect();
    if has_dirs || options.wrap {
        let written = dirs.finish(&mut pending).map_err(|e| e.to_string())?;
        for d in written {
            if d.path.is_empty() {
                if options.wrap {
                    events.send(AddEvent::Added {
                        name: String::new(),
                        cid: d.cid,
                        size: d.tsize,
                    });
                    pins = vec![d.cid];
                }
                continue;
            }
            events.send(AddEvent::Added {
                name: d.path.clone(),
                cid: d.cid,
                size: d.tsize,
            });
            if !d.path.contains('/') && !options.wrap {
                pins.push(d.cid);
            }
        }
    }
    flush(&mut pending, &mut pending_bytes)?;
    pins.sort();
    pins.dedup();
    Ok(pins)
}

enum Batch {
    Blocks(Vec<Block>),
    Finish { pins: Vec<Cid> },
}

fn store_thread(mut sink: impl BlockSink, rx: Receiver<Batch>) -> Result<(), String> {
    sink.session(&mut |sink| {
        for batch in rx.iter() {
            match batch {
                Batch::Blocks(blocks) => sink.put(blocks)?,
                Batch::Finish { pins } => sink.finish(pins)?,
            }
        }
        Ok(())
    })
}

/// Parses Kubo's `--chunker` value (`size-N`; `default`).
pub fn parse_chunker(s: &str) -> Result<usize, String> {
    if s == "default" {
        return Ok(crate::unixfs::DEFAULT_CHUNK_SIZE);
    }
    match s.strip_prefix("size-") {
        Some(n) => n
            .parse()
            .map_err(|_| format!("chunker \"{s}\": \"{n}\" is not a size in bytes")),
        None => Err(format!(
            "unsupported chunker \"{s}\": tessera supports size-N (fixed-size chunks)"
        )),
    }
}

/// CID version from Kubo's `cid-version` argument.
pub fn parse_cid_version(v: u64) -> Result<Version, String> {
    match v {
        0 => Ok(Version::V0),
        1 => Ok(Version::V1),
        other => Err(format!("unknown CID version {other}: use 0 or 1")),
    }
}
