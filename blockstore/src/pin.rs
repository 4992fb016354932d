//! Pins: which blocks garbage collection must keep.
//!
//! One pin set, as in Kubo: a CID is pinned directly (the block alone) or
//! recursively (the block and every block reachable through its links), never
//! both. A recursive pin supersedes a direct one. Pins are not reference
//! counted by owner: the cluster is the single owner of a node's pin set (a
//! user's `ipfs pin add` becomes a cluster pin), and keeps who asked for what
//! in its own state. A CID may be pinned before its blocks arrive.

use redb::{ReadableTable, Table};

use crate::error::StorageError;
use crate::tables::{PIN_DIRECT, PIN_RECURSIVE};

/// How much of a DAG a pin keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinMode {
    /// Keeps the block itself.
    Direct,
    /// Keeps the block and everything reachable through its links.
    Recursive,
}

impl PinMode {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            PinMode::Direct => PIN_DIRECT,
            PinMode::Recursive => PIN_RECURSIVE,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            PIN_DIRECT => Some(PinMode::Direct),
            PIN_RECURSIVE => Some(PinMode::Recursive),
            _ => None,
        }
    }
}

/// Adds a pin. Pinning twice is a no-op; a direct pin of a recursively
/// pinned CID changes nothing; a recursive pin replaces a direct one.
pub(crate) fn apply_pin(
    pins: &mut Table<'_, &'static [u8], u8>,
    key: &[u8],
    mode: PinMode,
) -> Result<(), StorageError> {
    let current = pins.get(key)?.and_then(|g| PinMode::from_byte(g.value()));
    let next = match (current, mode) {
        (Some(PinMode::Recursive), _) => return Ok(()),
        (_, mode) => mode,
    };
    if current != Some(next) {
        pins.insert(key, next.to_byte())?;
    }
    Ok(())
}

/// Removes a pin, as Kubo's `pin rm` does: `Recursive` removes whichever pin
/// the CID has, `Direct` removes only a direct pin (and leaves a recursive
/// one alone). Returns whether a pin was removed.
pub(crate) fn apply_unpin(
    pins: &mut Table<'_, &'static [u8], u8>,
    key: &[u8],
    mode: PinMode,
) -> Result<bool, StorageError> {
    let current = pins.get(key)?.map(|g| g.value());
    let remove = match (current.and_then(PinMode::from_byte), mode) {
        (None, _) => current.is_some(), // an unreadable pin value goes away
        (Some(_), PinMode::Recursive) => true,
        (Some(PinMode::Direct), PinMode::Direct) => true,
        (Some(PinMode::Recursive), PinMode::Direct) => false,
    };
    if remove {
        pins.remove(key)?;
    }
    Ok(remove)
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase};

    use super::*;
    use crate::tables::PINS;

    fn with_pins<T>(db: &Database, f: impl FnOnce(&mut Table<'_, &'static [u8], u8>) -> T) -> T {
        let txn = db.begin_write().unwrap();
        let out = {
            let mut t = txn.open_table(PINS).unwrap();
            f(&mut t)
        };
        txn.commit().unwrap();
        out
    }

    fn mode(db: &Database, key: &[u8]) -> Option<PinMode> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(PINS).unwrap();
        t.get(key)
            .unwrap()
            .and_then(|g| PinMode::from_byte(g.value()))
    }

    #[test]
    fn recursive_supersedes_direct_and_unpin_follows_kubo() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let k = b"cid".as_slice();

        with_pins(&db, |t| apply_pin(t, k, PinMode::Direct)).unwrap();
        assert_eq!(mode(&db, k), Some(PinMode::Direct));
        with_pins(&db, |t| apply_pin(t, k, PinMode::Recursive)).unwrap();
        assert_eq!(mode(&db, k), Some(PinMode::Recursive));
        // A direct pin does not downgrade a recursive one.
        with_pins(&db, |t| apply_pin(t, k, PinMode::Direct)).unwrap();
        assert_eq!(mode(&db, k), Some(PinMode::Recursive));
        // Unpinning "direct" leaves a recursive pin alone.
        assert!(!with_pins(&db, |t| apply_unpin(t, k, PinMode::Direct)).unwrap());
        assert_eq!(mode(&db, k), Some(PinMode::Recursive));
        assert!(with_pins(&db, |t| apply_unpin(t, k, PinMode::Recursive)).unwrap());
        assert_eq!(mode(&db, k), None);
        // Idempotent: a second unpin reports that nothing was pinned.
        assert!(!with_pins(&db, |t| apply_unpin(t, k, PinMode::Recursive)).unwrap());

        with_pins(&db, |t| apply_pin(t, k, PinMode::Direct)).unwrap();
        assert!(with_pins(&db, |t| apply_unpin(t, k, PinMode::Recursive)).unwrap());
        assert_eq!(mode(&db, k), None);
    }
}
