//! Every redb table of the store, and the encoding of their values.
//!
//! The names carry a version: a change of a key or value encoding gets a new
//! name (`blocks-v2`) and a migration, never a silent reinterpretation.
//! `docs/blockstore-format.md` describes the same layout for readers outside
//! the code.

use redb::{
    ReadOnlyTable, ReadTransaction, Table, TableDefinition, TableError, TypeName, Value,
    WriteTransaction,
};

/// CID bytes -> where the block's bytes are.
pub(crate) const BLOCKS: TableDefinition<&[u8], LocationValue> = TableDefinition::new("blocks-v1");
/// Pack id -> its committed length and byte accounting.
pub(crate) const PACKS: TableDefinition<u32, PackInfo> = TableDefinition::new("packs-v1");
/// CID bytes -> pin mode ([`PIN_DIRECT`] or [`PIN_RECURSIVE`]).
pub(crate) const PINS: TableDefinition<&[u8], u8> = TableDefinition::new("pins-v1");
/// CID bytes -> (unix seconds when found, why) of blocks moved aside.
pub(crate) const CORRUPT: TableDefinition<&[u8], (u64, &str)> = TableDefinition::new("corrupt-v1");
/// Named counters and the format version.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta-v1");

/// `meta-v1` key: the store's format version, [`FORMAT_VERSION`].
pub(crate) const META_FORMAT_VERSION: &str = "format-version";
/// `meta-v1` key: the id the next new pack file gets. Ids are never reused,
/// so a reader holding a stale location can never read another pack's bytes.
pub(crate) const META_NEXT_PACK_ID: &str = "next-pack-id";
/// `meta-v1` key: the sum of the lengths of all indexed blocks.
pub(crate) const META_BLOCK_BYTES: &str = "block-bytes";

/// The on-disk format this build reads and writes (tables and packs).
pub(crate) const FORMAT_VERSION: u64 = 1;

/// `pins-v1` value of a direct pin.
pub(crate) const PIN_DIRECT: u8 = 1;
/// `pins-v1` value of a recursive pin.
pub(crate) const PIN_RECURSIVE: u8 = 2;

/// Where a block's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location<'a> {
    /// In the index entry itself.
    Inline(&'a [u8]),
    /// In a pack file.
    Packed(PackedAt),
    /// An index value this build cannot decode (disk corruption that redb's
    /// checksums missed, or a newer format).
    Malformed,
}

/// A run of `len` block bytes at `offset` in pack `pack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PackedAt {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

const TAG_PACKED: u8 = 0;
const TAG_INLINE: u8 = 1;
const PACKED_LEN: usize = 1 + 4 + 8 + 8;

/// redb codec of [`Location`]: a tag byte, then either the inline bytes or
/// the pack id (u32 LE), offset and length (u64 LE each).
#[derive(Debug)]
pub(crate) struct LocationValue;

impl Value for LocationValue {
    type SelfType<'a> = Location<'a>;
    type AsBytes<'a> = Vec<u8>;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Location<'a>
    where
        Self: 'a,
    {
        match data.split_first() {
            Some((&TAG_INLINE, rest)) => Location::Inline(rest),
            Some((&TAG_PACKED, rest)) if data.len() == PACKED_LEN => {
                let (pack, rest) = rest.split_at(4);
                let (offset, len) = rest.split_at(8);
                Location::Packed(PackedAt {
                    pack: u32::from_le_bytes(pack.try_into().unwrap_or_default()),
                    offset: u64::from_le_bytes(offset.try_into().unwrap_or_default()),
                    len: u64::from_le_bytes(len.try_into().unwrap_or_default()),
                })
            }
            _ => Location::Malformed,
        }
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a Location<'b>) -> Vec<u8>
    where
        Self: 'b,
    {
        match value {
            Location::Inline(data) => {
                let mut v = Vec::with_capacity(1 + data.len());
                v.push(TAG_INLINE);
                v.extend_from_slice(data);
                v
            }
            Location::Packed(at) => {
                let mut v = Vec::with_capacity(PACKED_LEN);
                v.push(TAG_PACKED);
                v.extend_from_slice(&at.pack.to_le_bytes());
                v.extend_from_slice(&at.offset.to_le_bytes());
                v.extend_from_slice(&at.len.to_le_bytes());
                v
            }
            // Never written; an empty value decodes back to Malformed.
            Location::Malformed => Vec::new(),
        }
    }

    fn type_name() -> TypeName {
        TypeName::new("tessera::Location")
    }
}

/// Per-pack accounting, all in bytes of whole records (header, CID, data).
///
/// Invariant, kept by every transaction: `PACK_HEADER_LEN + live + dead ==
/// committed_len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PackInfo {
    /// Bytes of the file that the index may point into; anything past this
    /// is a torn append and is cut off at open.
    pub(crate) committed_len: u64,
    /// Bytes of records that an index entry points at.
    pub(crate) live: u64,
    /// Bytes of records that nothing points at any more.
    pub(crate) dead: u64,
}

impl PackInfo {
    /// The share of dead record bytes, 0 for an empty pack.
    pub(crate) fn dead_share(&self) -> f64 {
        let total = self.live + self.dead;
        if total == 0 {
            0.0
        } else {
            self.dead as f64 / total as f64
        }
    }
}

impl Value for PackInfo {
    type SelfType<'a> = PackInfo;
    type AsBytes<'a> = [u8; 24];

    fn fixed_width() -> Option<usize> {
        Some(24)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> PackInfo
    where
        Self: 'a,
    {
        let word = |i: usize| {
            data.get(i * 8..i * 8 + 8)
                .and_then(|w| w.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or_default()
        };
        PackInfo {
            committed_len: word(0),
            live: word(1),
            dead: word(2),
        }
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a PackInfo) -> [u8; 24]
    where
        Self: 'b,
    {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&value.committed_len.to_le_bytes());
        out[8..16].copy_from_slice(&value.live.to_le_bytes());
        out[16..24].copy_from_slice(&value.dead.to_le_bytes());
        out
    }

    fn type_name() -> TypeName {
        TypeName::new("tessera::PackInfo")
    }
}

/// All tables, opened for writing in one transaction.
pub(crate) struct Tables<'txn> {
    pub(crate) blocks: Table<'txn, &'static [u8], LocationValue>,
    pub(crate) packs: Table<'txn, u32, PackInfo>,
    pub(crate) pins: Table<'txn, &'static [u8], u8>,
    pub(crate) corrupt: Table<'txn, &'static [u8], (u64, &'static str)>,
    pub(crate) meta: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    /// Opens (creating on first use) every table.
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, TableError> {
        Ok(Self {
            blocks: txn.open_table(BLOCKS)?,
            packs: txn.open_table(PACKS)?,
            pins: txn.open_table(PINS)?,
            corrupt: txn.open_table(CORRUPT)?,
            meta: txn.open_table(META)?,
        })
    }
}

/// All tables, opened read-only on one snapshot.
pub(crate) struct ReadTables {
    pub(crate) blocks: ReadOnlyTable<&'static [u8], LocationValue>,
    pub(crate) packs: ReadOnlyTable<u32, PackInfo>,
    pub(crate) pins: ReadOnlyTable<&'static [u8], u8>,
    pub(crate) corrupt: ReadOnlyTable<&'static [u8], (u64, &'static str)>,
    pub(crate) meta: ReadOnlyTable<&'static str, u64>,
}

impl ReadTables {
    /// Opens every table; they exist, since open creates them.
    pub(crate) fn open(txn: &ReadTransaction) -> Result<Self, TableError> {
        Ok(Self {
            blocks: txn.open_table(BLOCKS)?,
            packs: txn.open_table(PACKS)?,
            pins: txn.open_table(PINS)?,
            corrupt: txn.open_table(CORRUPT)?,
            meta: txn.open_table(META)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_round_trips() {
        let cases = [
            Location::Inline(b""),
            Location::Inline(b"tiny block"),
            Location::Packed(PackedAt {
                pack: 7,
                offset: 1 << 40,
                len: 262_144,
            }),
        ];
        for loc in cases {
            let bytes = LocationValue::as_bytes(&loc);
            assert_eq!(LocationValue::from_bytes(&bytes), loc);
        }
    }

    #[test]
    fn malformed_locations_do_not_panic() {
        assert_eq!(LocationValue::from_bytes(&[]), Location::Malformed);
        assert_eq!(LocationValue::from_bytes(&[0, 1, 2]), Location::Malformed);
        assert_eq!(LocationValue::from_bytes(&[9, 1]), Location::Malformed);
    }

    #[test]
    fn pack_info_round_trips_and_reports_dead_share() {
        let info = PackInfo {
            committed_len: 100,
            live: 30,
            dead: 54,
        };
        assert_eq!(PackInfo::from_bytes(&PackInfo::as_bytes(&info)), info);
        assert!((info.dead_share() - 54.0 / 84.0).abs() < 1e-9);
        assert_eq!(PackInfo::default().dead_share(), 0.0);
    }
}
