//! The redb tables of the consensus database: one file holds the Raft log, the vote, the applied
//! pinset and the current snapshot, so that a commit moves them together.
//!
//! Format version 1. Every value is JSON (serde_json) unless said otherwise:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `raft-log-v1` | log index (u64) | an openraft `Entry` whose payload is a `PinsetOp` |
//! | `raft-log-meta-v1` | `"vote"`, `"committed"`, `"last-purged"` | `Vote`, `Option<LogId>`, `Option<LogId>` |
//! | `raft-state-meta-v1` | `"last-applied"`, `"last-membership"` | `Option<LogId>`, `StoredMembership` |
//! | `pinset-v1` | the CID's binary form | a `Pin` |
//! | `raft-snapshot-v1` | `"meta"`, `"data"` | `SnapshotMeta`, the snapshot bytes (see `snapshot.rs`) |

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, TableDefinition};

use super::error::ConsensusError;

/// Raft log entries by index.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft-log-v1");
/// The log store's single values.
pub(crate) const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft-log-meta-v1");
/// The state machine's single values.
pub(crate) const STATE_META: TableDefinition<&str, &[u8]> =
    TableDefinition::new("raft-state-meta-v1");
/// The applied pinset, by CID bytes (so listing is in CID-bytes order).
pub(crate) const PINS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pinset-v1");
/// The current snapshot.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft-snapshot-v1");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last-purged";
pub(crate) const KEY_LAST_APPLIED: &str = "last-applied";
pub(crate) const KEY_LAST_MEMBERSHIP: &str = "last-membership";
pub(crate) const KEY_SNAPSHOT_META: &str = "meta";
pub(crate) const KEY_SNAPSHOT_DATA: &str = "data";

/// How long `open` waits for a previous instance in this process (just shut down, its tasks still
/// finishing) to release the file.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// Opens or creates the database and makes sure every table exists, so that readers never meet a
/// missing table.
pub(crate) fn open(path: &Path) -> Result<Database, ConsensusError> {
    let deadline = Instant::now() + REOPEN_WAIT;
    let db = loop {
        match Database::create(path) {
            Ok(db) => break db,
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(ConsensusError::Storage(format!(
                    "{} is open in another process or consensus instance; stop it first",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(ConsensusError::Storage(format!(
                    "opening {}: {e}",
                    path.display()
                )));
            }
        }
    };
    let storage = |e: &dyn std::fmt::Display| {
        ConsensusError::Storage(format!("creating tables in {}: {e}", path.display()))
    };
    let txn = db.begin_write().map_err(|e| storage(&e))?;
    txn.open_table(LOG).map_err(|e| storage(&e))?;
    txn.open_table(LOG_META).map_err(|e| storage(&e))?;
    txn.open_table(STATE_META).map_err(|e| storage(&e))?;
    txn.open_table(PINS).map_err(|e| storage(&e))?;
    txn.open_table(SNAPSHOT).map_err(|e| storage(&e))?;
    txn.commit().map_err(|e| storage(&e))?;
    Ok(db)
}
