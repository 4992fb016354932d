//! Bringing the packs back in line with the index at open.
//!
//! After a crash the index is the truth: redb commits atomically, and it only
//! ever names bytes that were synced before the commit. So at open:
//! - bytes of a pack past its committed length (a torn or uncommitted
//!   append) are cut off;
//! - pack files the index does not know (created by a batch that never
//!   committed, or compacted away before the file was unlinked) are deleted;
//! - the newest pack with room left becomes the one to append to.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::StorageError;
use crate::pack::{PackFile, pack_path, parse_pack_name};
use crate::tables::{PACKS, PackInfo};
use crate::writer::sync_dir;

/// What open found and did, for the log and for tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Packs whose uncommitted tail was cut off.
    pub(crate) truncated: Vec<u32>,
    /// Pack files the index did not know, now deleted.
    pub(crate) orphans_deleted: Vec<u32>,
    /// Packs the index knows but whose file is missing or short.
    pub(crate) damaged: Vec<u32>,
}

/// Reconciles `packs_dir` with the index; returns the pack to append to.
pub(crate) fn recover(
    db: &Database,
    packs_dir: &Path,
    pack_size_limit: u64,
) -> Result<(Option<PackFile>, Recovery), StorageError> {
    let mut report = Recovery::default();
    let known: Vec<(u32, PackInfo)> = {
        let txn = db.begin_read()?;
        let packs = txn.open_table(PACKS)?;
        packs
            .iter()?
            .map(|r| r.map(|(k, v)| (k.value(), v.value())))
            .collect::<Result<_, _>>()?
    };
    let is_known = |id: u32| known.binary_search_by_key(&id, |(k, _)| *k).is_ok();

    let entries =
        std::fs::read_dir(packs_dir).map_err(|e| StorageError::io("listing", packs_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("listing", packs_dir, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(parse_pack_name) else {
            continue;
        };
        if !is_known(id) {
            let path = pack_path(packs_dir, id);
            std::fs::remove_file(&path)
                .map_err(|e| StorageError::io("deleting orphan pack", &path, e))?;
            tracing::info!(pack = id, "deleted pack file that no index entry refers to");
            report.orphans_deleted.push(id);
        }
    }

    for (id, info) in &known {
        let path = pack_path(packs_dir, *id);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > info.committed_len => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| StorageError::io("opening", &path, e))?;
                f.set_len(info.committed_len)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| StorageError::io("truncating", &path, e))?;
                tracing::info!(
                    pack = id,
                    cut = m.len() - info.committed_len,
                    "cut uncommitted bytes off the end of a pack"
                );
                report.truncated.push(*id);
            }
            Ok(m) if m.len() < info.committed_len => {
                tracing::error!(
                    pack = id,
                    have = m.len(),
                    committed = info.committed_len,
                    "pack file is shorter than committed: blocks in the lost part will read as corrupt"
                );
                report.damaged.push(*id);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(
                    pack = id,
                    "pack file is missing: its blocks will read as corrupt"
                );
                report.damaged.push(*id);
            }
            Err(e) => return Err(StorageError::io("reading size of", &path, e)),
        }
    }
    if !report.orphans_deleted.is_empty() {
        sync_dir(packs_dir)?;
    }

    let current = match known.last() {
        Some((id, info))
            if info.committed_len < pack_size_limit && !report.damaged.contains(id) =>
        {
            Some(PackFile::open_append(packs_dir, *id, info.committed_len)?)
        }
        _ => None,
    };
    Ok((current, report))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::pack::pack_path;
    use crate::{Block, Blockstore, Config, RAW};

    #[test]
    fn open_cuts_torn_tails_deletes_orphans_and_appends_after_the_committed_end() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("packs");
        let config = Config {
            inline_threshold: 0,
            ..Config::default()
        };
        let a = Block::from_data_v1(RAW, Bytes::from(vec![1u8; 3000]));
        let committed = {
            let store = Blockstore::open(dir.path(), config.clone()).unwrap();
            store.put(&a).unwrap();
            std::fs::metadata(pack_path(&packs, 1)).unwrap().len()
        };
        // What a crash between append and commit leaves: a tail, and a pack
        // created by a batch that never committed.
        let mut bytes = std::fs::read(pack_path(&packs, 1)).unwrap();
        bytes.extend_from_slice(b"TR torn record of a batch that never committed");
        std::fs::write(pack_path(&packs, 1), &bytes).unwrap();
        std::fs::write(pack_path(&packs, 2), b"TESSPACK orphan").unwrap();
        std::fs::write(packs.join("notes.txt"), b"not a pack").unwrap();

        let store = Blockstore::open(dir.path(), config).unwrap();
        assert_eq!(
            std::fs::metadata(pack_path(&packs, 1)).unwrap().len(),
            committed
        );
        assert!(!pack_path(&packs, 2).exists());
        assert!(
            packs.join("notes.txt").exists(),
            "foreign files are left alone"
        );
        let b = Block::from_data_v1(RAW, Bytes::from(vec![2u8; 3000]));
        store.put(&b).unwrap();
        for blk in [&a, &b] {
            assert_eq!(
                store.get_verified(blk.cid()).unwrap().as_ref(),
                Some(blk.data())
            );
        }
        assert_eq!(store.check_index().unwrap().problems, Vec::<String>::new());
        // The new block went into pack 1 right after the committed end: the
        // orphan's id 2 was never handed out, and is still free.
        assert_eq!(store.stat().unwrap().packs, 1);
    }
}
