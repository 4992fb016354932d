//! Size accounting: what the store holds and what it costs on disk.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::StorageError;

/// A snapshot of the store's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stat {
    /// Number of blocks in the index.
    pub blocks: u64,
    /// Sum of the lengths of those blocks, in bytes.
    pub block_bytes: u64,
    /// Space the store's folder takes on disk (allocated blocks, not file
    /// lengths), in bytes: packs, index and anything else in it.
    pub disk_bytes: u64,
    /// Bytes of pack records that nothing refers to any more, waiting for
    /// compaction.
    pub dead_bytes: u64,
    /// Number of pack files.
    pub packs: u64,
}

/// What the writer thread has done since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Write requests served (puts, deletes, pins, GC and compaction steps).
    pub write_requests: u64,
    /// Batches committed: each is one pack append, one fdatasync and one
    /// index transaction. `write_requests / write_batches` is how well group
    /// commit coalesces concurrent writers.
    pub write_batches: u64,
    /// Bytes appended to pack files (records, including compaction copies).
    pub pack_bytes_written: u64,
}

/// Allocated size of everything under `dir` (`st_blocks * 512`, the number
/// `du` shows), so that sparse or preallocated files count as what they cost.
pub(crate) fn disk_usage(dir: &Path) -> Result<u64, StorageError> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| StorageError::io("listing", &d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("listing", &d, e))?;
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Compaction may delete a pack while we walk.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("reading size of", &path, e)),
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocated_blocks_not_lengths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let used = disk_usage(dir.path()).unwrap();
        // 10 000 bytes take at least 10 000 bytes of blocks; the 1 GiB
        // sparse file takes (almost) nothing.
        assert!(used >= 10_000, "{used}");
        assert!(used < 1 << 20, "{used}");
    }
}
