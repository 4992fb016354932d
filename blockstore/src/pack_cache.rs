//! Open read handles of pack files, shared by every reader.
//!
//! Reads are positioned (`pread`), so one handle serves any number of threads
//! at once. A handle stays valid after compaction unlinks its file, which lets
//! a read that started before the unlink finish.

use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::StorageError;
use crate::pack::pack_path;
use crate::tables::PackedAt;

/// Why a packed block could not be read.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The pack file does not exist (compacted away, or lost).
    PackMissing,
    /// The pack is shorter than the index says: the bytes are lost.
    Truncated,
    /// Any other I/O failure: the disk, not the data, is in trouble.
    Storage(StorageError),
}

#[derive(Debug)]
pub(crate) struct PackCache {
    packs_dir: PathBuf,
    max_open: usize,
    open: RwLock<HashMap<u32, Arc<File>>>,
}

impl PackCache {
    pub(crate) fn new(packs_dir: &Path, max_open: usize) -> Self {
        Self {
            packs_dir: packs_dir.to_path_buf(),
            max_open,
            open: RwLock::new(HashMap::new()),
        }
    }

    /// A read handle of pack `id`, opening it if needed.
    pub(crate) fn handle(&self, id: u32) -> Result<Arc<File>, ReadFailure> {
        if let Some(f) = self.open.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(f.clone());
        }
        let path = pack_path(&self.packs_dir, id);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(ReadFailure::PackMissing),
            Err(e) => {
                return Err(ReadFailure::Storage(StorageError::io(
                    "opening pack file",
                    &path,
                    e,
                )));
            }
        };
        let mut open = self.open.write().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max_open {
            // Dropping every handle is crude but bounded and rare: a store
            // has more packs than max_open only past 256 GiB by default.
            open.clear();
        }
        Ok(open.entry(id).or_insert(file).clone())
    }

    /// Reads the block bytes at `at`.
    pub(crate) fn read(&self, at: &PackedAt) -> Result<Vec<u8>, ReadFailure> {
        let file = self.handle(at.pack)?;
        let len = usize::try_from(at.len).map_err(|_| ReadFailure::Truncated)?;
        let mut data = vec![0u8; len];
        match file.read_exact_at(&mut data, at.offset) {
            Ok(()) => Ok(data),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ReadFailure::Truncated),
            Err(e) => Err(ReadFailure::Storage(StorageError::io(
                "reading block from",
                &pack_path(&self.packs_dir, at.pack),
                e,
            ))),
        }
    }

    /// Drops the handle of a pack that compaction deleted.
    pub(crate) fn forget(&self, id: u32) {
        self.open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_at_offsets_and_reports_missing_and_short_packs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(pack_path(dir.path(), 1), b"0123456789").unwrap();
        let cache = PackCache::new(dir.path(), 1);
        let at = |pack, offset, len| PackedAt { pack, offset, len };
        assert_eq!(cache.read(&at(1, 2, 3)).unwrap(), b"234");
        assert_eq!(cache.read(&at(1, 10, 0)).unwrap(), b"");
        assert!(matches!(
            cache.read(&at(1, 8, 3)),
            Err(ReadFailure::Truncated)
        ));
        assert!(matches!(
            cache.read(&at(2, 0, 1)),
            Err(ReadFailure::PackMissing)
        ));
        // A second pack evicts the first (max_open = 1) and both still read.
        std::fs::write(pack_path(dir.path(), 2), b"abc").unwrap();
        assert_eq!(cache.read(&at(2, 0, 3)).unwrap(), b"abc");
        assert_eq!(cache.read(&at(1, 0, 1)).unwrap(), b"0");
    }

    #[test]
    fn a_cached_handle_outlives_the_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = pack_path(dir.path(), 5);
        std::fs::write(&path, b"still here").unwrap();
        let cache = PackCache::new(dir.path(), 8);
        let at = PackedAt {
            pack: 5,
            offset: 6,
            len: 4,
        };
        assert_eq!(cache.read(&at).unwrap(), b"here");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(cache.read(&at).unwrap(), b"here");
        cache.forget(5);
        assert!(matches!(cache.read(&at), Err(ReadFailure::PackMissing)));
    }
}
