//! Scrubbing: re-hashing stored blocks to find rot before a reader does.
//!
//! The store offers one bounded step; the scrub worker (in the node) owns
//! the schedule, the rate limit and the cursor, which it keeps in its own
//! state so that a restart resumes where it stopped.

use cid::Cid;

use crate::error::GetError;
use crate::store::Blockstore;

/// What one [`Blockstore::scrub_step`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubStep {
    /// Blocks read and verified.
    pub checked: u64,
    /// Bytes hashed, for the caller's rate limit.
    pub bytes: u64,
    /// Blocks that failed and were moved aside (see
    /// [`Blockstore::corrupt_blocks`]): to be rebuilt.
    pub corrupt: Vec<Cid>,
    /// Blocks whose hash function this build cannot compute, left alone.
    pub unverifiable: u64,
    /// Where the next step starts; `None` once the end was reached.
    pub next: Option<Cid>,
}

impl Blockstore {
    /// Verifies up to `limit` blocks after `after` (from the first when
    /// `None`), in [`list_page`](Blockstore::list_page) order. Corrupt blocks
    /// are moved aside as a verified read would. Blocks deleted meanwhile
    /// are skipped.
    pub fn scrub_step(&self, after: Option<&Cid>, limit: usize) -> Result<ScrubStep, GetError> {
        let page = self.list_page(after, limit)?;
        let mut step = ScrubStep {
            next: if page.len() == limit {
                page.last().copied()
            } else {
                None
            },
            ..ScrubStep::default()
        };
        for cid in page {
            match self.get_verified(&cid) {
                Ok(Some(data)) => {
                    step.checked += 1;
                    step.bytes += data.len() as u64;
                }
                Ok(None) => {}
                Err(GetError::Corrupt { cid }) => {
                    step.checked += 1;
                    step.corrupt.push(cid);
                }
                Err(GetError::Unverifiable { .. }) => step.unverifiable += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Block, Config, RAW};

    #[test]
    fn steps_cover_every_block_once_and_find_the_rotten_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            inline_threshold: 0,
            ..Config::default()
        };
        let store = Blockstore::open(dir.path(), config).unwrap();
        let blocks: Vec<Block> = (0..10u8)
            .map(|i| Block::from_data_v1(RAW, Bytes::from(vec![i; 1000])))
            .collect();
        store.put_many(&blocks).unwrap();
        // Rot the bytes of block 3 (record data is unique per block).
        let pack = crate::pack::pack_path(&dir.path().join("packs"), 1);
        let mut bytes = std::fs::read(&pack).unwrap();
        let pos = bytes
            .windows(1000)
            .position(|w| w == &[3u8; 1000][..])
            .unwrap();
        bytes[pos + 500] = 0xff;
        std::fs::write(&pack, &bytes).unwrap();

        let mut total = ScrubStep::default();
        let mut cursor = None;
        let mut steps = 0;
        loop {
            let step = store.scrub_step(cursor.as_ref(), 4).unwrap();
            steps += 1;
            total.checked += step.checked;
            total.bytes += step.bytes;
            total.corrupt.extend(step.corrupt);
            cursor = step.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(steps, 3);
        assert_eq!(total.checked, 10);
        assert_eq!(total.bytes, 9000);
        assert_eq!(total.corrupt, vec![*blocks[3].cid()]);
        assert!(!store.has(blocks[3].cid()).unwrap());
    }
}
