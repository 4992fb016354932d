//! The Raft log and vote, in the consensus redb file.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::db::{DbError, blocking};
use super::tables::{KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOG, LOG_META};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Bytes of log entries sent in one AppendEntries, about what a 10 Mbit/s link carries in a
/// 200 ms heartbeat.
const REPLICATION_BUDGET: usize = 256 * 1024;

/// openraft's log store over the shared redb database.
///
/// Every method finishes its redb transaction before returning, so writes are serialized in call
/// order (openraft's requirement) and an appended entry is readable as soon as `append` returns.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    async fn read_meta<T>(
        &self,
        key: &'static str,
        verb_subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let db = self.db.clone();
        blocking(verb_subject, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG_META)?;
            match table.get(key)? {
                Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write_meta<T>(
        &self,
        key: &'static str,
        value: &T,
        subject: ErrorSubject<u64>,
        durability: Durability,
    ) -> Result<(), StorageError>
    where
        T: serde::Serialize,
    {
        let db = self.db.clone();
        let bytes = serde_json::to_vec(value).map_err(|e| {
            StorageError::from(openraft::StorageIOError::new(
                subject.clone(),
                ErrorVerb::Write,
                openraft::AnyError::new(&e),
            ))
        })?;
        blocking(subject, ErrorVerb::Write, move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(LOG_META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            for item in table.range(bounds)? {
                let (_, value) = item?;
                entries.push(serde_json::from_slice(value.value())?);
            }
            Ok(entries)
        })
        .await
    }

    /// Stops after [`REPLICATION_BUDGET`] bytes of entries (but returns at least one), because
    /// openraft 0.9 gives an AppendEntries only one heartbeat interval to complete and only
    /// shrinks the payload on `PayloadTooLarge`, never on a timeout: a message too big for the
    /// link would time out forever.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            let mut bytes = 0;
            for item in table.range(start..end)? {
                let (_, value) = item?;
                bytes += value.value().len();
                entries.push(serde_json::from_slice(value.value())?);
                if bytes >= REPLICATION_BUDGET {
                    break;
                }
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let meta = txn.open_table(LOG_META)?;
            let last_purged_log_id: Option<LogId> = match meta.get(KEY_LAST_PURGED)? {
                Some(value) => serde_json::from_slice(value.value())?,
                None => None,
            };
            let log = txn.open_table(LOG)?;
            let last_log_id = match log.last()? {
                Some((_, value)) => {
                    let entry: Entry = serde_json::from_slice(value.value())?;
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote, ErrorSubject::Vote, Durability::Immediate)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote).await
    }

    /// The committed pointer is only a hint that lets a restarted node apply sooner, so it is
    /// written without an fsync of its own: the next log append makes it durable, and losing it
    /// only means waiting for the leader to say again what is committed.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(
            KEY_COMMITTED,
            &committed,
            ErrorSubject::Store,
            Durability::None,
        )
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)
            .await?
            .flatten())
    }

    /// One redb transaction per call, committed with fsync before `callback` runs: an entry
    /// acknowledged to the leader survives a crash.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let res = blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for entry in &entries {
                    let bytes = serde_json::to_vec(entry)?;
                    table.insert(entry.log_id.index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok::<_, DbError>(())
        })
        .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        let purged = serde_json::to_vec(&Some(log_id)).map_err(|e| {
            StorageError::from(openraft::StorageIOError::write_logs(
                openraft::AnyError::new(&e),
            ))
        })?;
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG_META)?
                .insert(KEY_LAST_PURGED, purged.as_slice())?;
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}
