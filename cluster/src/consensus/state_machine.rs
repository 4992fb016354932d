//! The applied pinset and its snapshots, in the consensus redb file.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table};
use tokio::sync::{broadcast, watch};

use super::db::{DbError, blocking};
use super::snapshot;
use super::status::Applied;
use super::tables::{
    KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, PINS, SNAPSHOT,
    STATE_META,
};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::pin::PinsetOp;

/// Where applied changes are announced: the ordered events for subscribers, and the last applied
/// index for callers waiting to read their own write.
#[derive(Clone)]
pub(crate) struct Announce {
    pub(crate) events: broadcast::Sender<Applied>,
    pub(crate) applied: Arc<watch::Sender<u64>>,
}

impl Announce {
    fn send(&self, events: Vec<Applied>, applied: Option<u64>) {
        for event in events {
            // No receiver is not an error: nobody subscribed yet.
            let _ = self.events.send(event);
        }
        if let Some(index) = applied {
            self.applied.send_modify(|a| *a = (*a).max(index));
        }
    }
}

/// openraft's state machine over the shared redb database.
///
/// ### To ensure correctness
///
/// Applies commit without an fsync of their own (`Durability::None`): every later log append,
/// vote, snapshot or purge commits with fsync and makes them durable, and a crash before that
/// rolls the pinset and its last-applied id back together, so the entries are applied again from
/// the log (which is only purged after a durable snapshot covers it).
pub(crate) struct StateMachine {
    db: Arc<Database>,
    announce: Announce,
}

impl StateMachine {
    pub(crate) fn new(db: Arc<Database>, announce: Announce) -> Self {
        StateMachine { db, announce }
    }
}

/// Reads the last applied log id and membership (defaults when nothing was applied yet).
pub(crate) fn read_applied(db: &Database) -> Result<(Option<LogId>, StoredMembership), DbError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(STATE_META)?;
    let applied = match meta.get(KEY_LAST_APPLIED)? {
        Some(value) => serde_json::from_slice(value.value())?,
        None => None,
    };
    let membership = match meta.get(KEY_LAST_MEMBERSHIP)? {
        Some(value) => serde_json::from_slice(value.value())?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

fn apply_op(pins: &mut Table<&[u8], &[u8]>, op: &PinsetOp) -> Result<(), DbError> {
    match op {
        PinsetOp::Pin(pin) => {
            let json = serde_json::to_vec(pin)?;
            pins.insert(pin.cid.to_bytes().as_slice(), json.as_slice())?;
        }
        PinsetOp::Unpin(cid) => {
            pins.remove(cid.to_bytes().as_slice())?;
        }
        PinsetOp::Batch(ops) => {
            for op in ops {
                apply_op(pins, op)?;
            }
        }
    }
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let db = self.db.clone();
        blocking(ErrorSubject::StateMachine, ErrorVerb::Read, move || {
            read_applied(&db)
        })
        .await
    }

    /// One redb transaction for the whole batch; the events go out after it commits, in order.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let count = entries.len();
        let db = self.db.clone();
        let (events, last) = blocking(ErrorSubject::StateMachine, ErrorVerb::Write, move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            let mut events = Vec::with_capacity(entries.len());
            let mut last = None;
            {
                let mut pins = txn.open_table(PINS)?;
                let mut meta = txn.open_table(STATE_META)?;
                for entry in entries {
                    let index = entry.log_id.index;
                    last = Some(entry.log_id);
                    match entry.payload {
                        EntryPayload::Blank => {}
                        EntryPayload::Normal(op) => {
                            apply_op(&mut pins, &op)?;
                            events.push(Applied::Op { index, op });
                        }
                        EntryPayload::Membership(membership) => {
                            let stored = StoredMembership::new(Some(entry.log_id), membership);
                            let json = serde_json::to_vec(&stored)?;
                            meta.insert(KEY_LAST_MEMBERSHIP, json.as_slice())?;
                            events.push(Applied::Membership { index });
                        }
                    }
                }
                if last.is_some() {
                    let json = serde_json::to_vec(&last)?;
                    meta.insert(KEY_LAST_APPLIED, json.as_slice())?;
                }
            }
            txn.commit()?;
            Ok((events, last))
        })
        .await?;
        self.announce.send(events, last.map(|l| l.index));
        Ok(vec![(); count])
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Replaces the pinset wholesale in one transaction (committed with fsync: the snapshot is
    /// also the only copy of what it covers once the log is purged).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let meta = meta.clone();
        let data = snapshot.into_inner();
        let db = self.db.clone();
        let signature = meta.signature();
        let index = meta.last_log_id.map(|l| l.index);
        blocking(
            ErrorSubject::Snapshot(Some(signature)),
            ErrorVerb::Write,
            move || {
                let pins = snapshot::read(&data).map_err(|e| DbError(e.to_string()))?;
                let txn = db.begin_write()?;
                txn.delete_table(PINS)?;
                {
                    let mut table = txn.open_table(PINS)?;
                    for (key, json) in &pins {
                        table.insert(key.as_slice(), json.as_slice())?;
                    }
                    let mut state = txn.open_table(STATE_META)?;
                    state.insert(
                        KEY_LAST_APPLIED,
                        serde_json::to_vec(&meta.last_log_id)?.as_slice(),
                    )?;
                    state.insert(
                        KEY_LAST_MEMBERSHIP,
                        serde_json::to_vec(&meta.last_membership)?.as_slice(),
                    )?;
                    let mut snap = txn.open_table(SNAPSHOT)?;
                    snap.insert(KEY_SNAPSHOT_META, serde_json::to_vec(&meta)?.as_slice())?;
                    snap.insert(KEY_SNAPSHOT_DATA, data.as_slice())?;
                }
                txn.commit()?;
                Ok(())
            },
        )
        .await?;
        let index = index.unwrap_or(0);
        self.announce
            .send(vec![Applied::Snapshot { index }], Some(index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Read, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(SNAPSHOT)?;
            let (Some(meta), Some(data)) =
                (table.get(KEY_SNAPSHOT_META)?, table.get(KEY_SNAPSHOT_DATA)?)
            else {
                return Ok(None);
            };
            let meta: SnapshotMeta = serde_json::from_slice(meta.value())?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data.value().to_vec())),
            }))
        })
        .await
    }
}

/// Builds a snapshot from a read transaction, which sees one consistent applied state while
/// applies go on.
pub(crate) struct SnapshotBuilder {
    db: Arc<Database>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Write, move || {
            let (meta, data) = {
                let txn = db.begin_read()?;
                let state = txn.open_table(STATE_META)?;
                let last_log_id: Option<LogId> = match state.get(KEY_LAST_APPLIED)? {
                    Some(value) => serde_json::from_slice(value.value())?,
                    None => None,
                };
                let last_membership: StoredMembership = match state.get(KEY_LAST_MEMBERSHIP)? {
                    Some(value) => serde_json::from_slice(value.value())?,
                    None => StoredMembership::default(),
                };
                let mut writer = snapshot::Writer::new()?;
                for item in txn.open_table(PINS)?.iter()? {
                    let (_, json) = item?;
                    writer.push(json.value());
                }
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let snapshot_id = match last_log_id {
                    Some(l) => format!("{}-{}-{nanos}", l.leader_id, l.index),
                    None => format!("0-0-{nanos}"),
                };
                let meta = SnapshotMeta {
                    last_log_id,
                    last_membership,
                    snapshot_id,
                };
                (meta, writer.finish())
            };
            // Keep the newest snapshot only: an install that raced ahead of this build wins.
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SNAPSHOT)?;
                let stored: Option<SnapshotMeta> = match table.get(KEY_SNAPSHOT_META)? {
                    Some(value) => Some(serde_json::from_slice(value.value())?),
                    None => None,
                };
                if stored.is_none_or(|s| s.last_log_id <= meta.last_log_id) {
                    table.insert(KEY_SNAPSHOT_META, serde_json::to_vec(&meta)?.as_slice())?;
                    table.insert(KEY_SNAPSHOT_DATA, data.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })
        })
        .await
    }
}
