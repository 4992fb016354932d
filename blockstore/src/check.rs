//! A consistency check of the index against the packs (an fsck), for
//! operators after a crash and for tests after every step.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable};

use crate::error::{GetError, StorageError};
use crate::pack::{PACK_HEADER_LEN, pack_path, record_len};
use crate::store::Blockstore;
use crate::tables::{Location, META_BLOCK_BYTES, META_NEXT_PACK_ID, PackInfo, ReadTables};

/// What [`Blockstore::check_index`] found. Empty `problems` means the index
/// and the packs agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexCheck {
    /// Index entries checked.
    pub blocks: u64,
    /// Packs checked.
    pub packs: u64,
    /// One line per disagreement, saying what and where.
    pub problems: Vec<String>,
}

impl Blockstore {
    /// Checks, on one snapshot, that every index entry points inside the
    /// committed part of an existing pack, that each pack's accounting adds
    /// up to its committed length, and that the counters match the entries.
    /// Reads the whole index and no block bytes.
    pub fn check_index(&self) -> Result<IndexCheck, GetError> {
        let txn = self.inner.db.begin_read().map_err(StorageError::from)?;
        let t = ReadTables::open(&txn).map_err(StorageError::from)?;
        let mut out = IndexCheck::default();
        let mut packs: HashMap<u32, PackInfo> = HashMap::new();
        for entry in t.packs.iter().map_err(StorageError::from)? {
            let (id, info) = entry.map_err(StorageError::from)?;
            packs.insert(id.value(), info.value());
        }
        out.packs = packs.len() as u64;
        let mut live: HashMap<u32, u64> = HashMap::new();
        let mut bytes = 0u64;
        for entry in t.blocks.iter().map_err(StorageError::from)? {
            let (k, v) = entry.map_err(StorageError::from)?;
            out.blocks += 1;
            let key = k.value();
            let name =
                cid::Cid::try_from(key).map_or_else(|_| format!("{key:02x?}"), |c| c.to_string());
            match v.value() {
                Location::Inline(d) => bytes += d.len() as u64,
                Location::Packed(at) => {
                    bytes += at.len;
                    *live.entry(at.pack).or_default() += record_len(key.len(), at.len);
                    match packs.get(&at.pack) {
                        None => out.problems.push(format!(
                            "{name} points into pack {} which the index does not list",
                            at.pack
                        )),
                        Some(info) if at.offset + at.len > info.committed_len => {
                            out.problems.push(format!(
                                "{name} ends at {} past the committed length {} of pack {}",
                                at.offset + at.len,
                                info.committed_len,
                                at.pack
                            ))
                        }
                        Some(_) => {}
                    }
                }
                Location::Malformed => out
                    .problems
                    .push(format!("{name} has an unreadable index value")),
            }
        }
        let mut max_id = 0;
        for (id, info) in &packs {
            max_id = max_id.max(*id);
            if PACK_HEADER_LEN + info.live + info.dead != info.committed_len {
                out.problems.push(format!(
                    "pack {id}: header {PACK_HEADER_LEN} + live {} + dead {} != committed {}",
                    info.live, info.dead, info.committed_len
                ));
            }
            let indexed = live.get(id).copied().unwrap_or(0);
            if indexed != info.live {
                out.problems.push(format!(
                    "pack {id}: index entries hold {indexed} bytes, accounting says live {}",
                    info.live
                ));
            }
            let path = pack_path(&self.inner.packs_dir, *id);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() < info.committed_len => out.problems.push(format!(
                    "{} is {} bytes, shorter than its committed {}",
                    path.display(),
                    m.len(),
                    info.committed_len
                )),
                Ok(_) => {}
                Err(e) => out.problems.push(format!("{}: {e}", path.display())),
            }
        }
        let counted = t
            .meta
            .get(META_BLOCK_BYTES)
            .map_err(StorageError::from)?
            .map_or(0, |g| g.value());
        if counted != bytes {
            out.problems.push(format!(
                "block-bytes counter says {counted}, index entries hold {bytes}"
            ));
        }
        let next = t
            .meta
            .get(META_NEXT_PACK_ID)
            .map_err(StorageError::from)?
            .map_or(0, |g| g.value());
        if !packs.is_empty() && next <= u64::from(max_id) {
            out.problems.push(format!(
                "next-pack-id {next} would reuse the id of pack {max_id}"
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Block, Config, RAW};

    #[test]
    fn a_healthy_store_checks_clean_and_a_cut_pack_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            inline_threshold: 16,
            ..Config::default()
        };
        let store = Blockstore::open(dir.path(), config).unwrap();
        let blocks: Vec<Block> = (0..10u8)
            .map(|i| Block::from_data_v1(RAW, Bytes::from(vec![i; 100 * i as usize])))
            .collect();
        store.put_many(&blocks).unwrap();
        store.delete(blocks[5].cid()).unwrap();
        let check = store.check_index().unwrap();
        assert_eq!(check.problems, Vec::<String>::new());
        assert_eq!(check.blocks, 9);
        assert_eq!(check.packs, 1);

        let pack = pack_path(&dir.path().join("packs"), 1);
        let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
        f.set_len(100).unwrap();
        let check = store.check_index().unwrap();
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains("shorter than its committed")),
            "{check:?}"
        );
    }
}
