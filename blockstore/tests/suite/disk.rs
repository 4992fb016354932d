//! Disk used stays within 5% of the bytes stored.
//!
//! The reason pack files exist: redb alone stores a 256 KiB value in a
//! 512 KiB region and doubled the disk (DESIGN.md, Storage). Measured as the
//! folder's allocated size (`st_blocks * 512`) after the store is closed, so
//! preallocation or sparse files cannot hide anything.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tessera_blockstore::{Block, Blockstore, Config};

use crate::dag::leaf;

fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

fn overhead_of(total_mib: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let blocks_per_batch = 64; // 16 MiB batches, as an import writes them
    let n = total_mib * 4;
    let mut stored = 0u64;
    {
        let store = Blockstore::open(dir.path(), Config::default()).unwrap();
        for start in (0..n).step_by(blocks_per_batch) {
            let batch: Vec<Block> = (start..(start + blocks_per_batch).min(n))
                .map(|i| leaf(256 * 1024, i as u64))
                .collect();
            stored += batch.iter().map(|b| b.data().len() as u64).sum::<u64>();
            store.put_many(&batch).unwrap();
        }
        let stat = store.stat().unwrap();
        assert_eq!(stat.block_bytes, stored);
    }
    (stored, allocated(dir.path()))
}

#[test]
fn disk_used_is_within_5_percent_of_256_kib_blocks_stored() {
    for total_mib in [64, 256] {
        let (stored, used) = overhead_of(total_mib);
        let ratio = used as f64 / stored as f64;
        eprintln!("{total_mib} MiB of 256 KiB blocks: {used} bytes on disk, ratio {ratio:.4}");
        assert!(
            ratio <= 1.05,
            "{stored} bytes stored took {used} bytes on disk ({ratio:.4}x)"
        );
    }
}
