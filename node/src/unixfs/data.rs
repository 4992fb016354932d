//! The UnixFS `Data` message that sits in a dag-pb node's data field.
//!
//! ```protobuf
//! message Data {
//!   enum DataType { Raw = 0; Directory = 1; File = 2; Metadata = 3; Symlink = 4; HAMTShard = 5; }
//!   required DataType Type = 1;
//!   optional bytes Data = 2;
//!   optional uint64 filesize = 3;
//!   repeated uint64 blocksizes = 4;
//!   optional uint64 hashType = 5;
//!   optional uint64 fanout = 6;
//!   optional uint32 mode = 7;
//!   optional UnixTime mtime = 8;
//! }
//! message UnixTime { required int64 Seconds = 1; optional fixed32 FractionalNanoseconds = 2; }
//! ```
//!
//! Encoding writes fields in number order with `blocksizes` unpacked, as Go's
//! proto2 marshaller (and so Kubo) does; decoding also accepts packed
//! `blocksizes`.

use bytes::Bytes;

use crate::ipld::WireError;
use crate::ipld::protobuf::{self, FIXED32, LEN, Reader, VARINT};

/// What a UnixFS node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Raw file data (old Kubo leaves); reads like `File`.
    Raw,
    /// A plain directory: one link per entry.
    Directory,
    /// A file, or one piece of one.
    File,
    /// Unused metadata wrapper.
    Metadata,
    /// A symbolic link; `data` holds the target.
    Symlink,
    /// One node of a HAMT-sharded directory.
    HamtShard,
}

impl DataType {
    fn code(self) -> u64 {
        match self {
            DataType::Raw => 0,
            DataType::Directory => 1,
            DataType::File => 2,
            DataType::Metadata => 3,
            DataType::Symlink => 4,
            DataType::HamtShard => 5,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }
}

/// A modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime {
    /// Seconds since the Unix epoch (negative before it).
    pub seconds: i64,
    /// Nanoseconds within the second, if recorded.
    pub nanos: Option<u32>,
}

/// A decoded UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// What the node is.
    pub kind: DataType,
    /// File bytes held in this node, a symlink target, or a HAMT bitfield.
    pub data: Option<Bytes>,
    /// Total file size under this node.
    pub file_size: Option<u64>,
    /// File bytes under each link, in link order.
    pub block_sizes: Vec<u64>,
    /// HAMT hash function (0x22: murmur3-x64-64).
    pub hash_type: Option<u64>,
    /// HAMT fanout.
    pub fanout: Option<u64>,
    /// Unix permission bits.
    pub mode: Option<u32>,
    /// Modification time.
    pub mtime: Option<UnixTime>,
}

/// Why bytes are not a UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The protobuf framing is broken.
    #[error("malformed UnixFS data: {0}")]
    Wire(#[from] WireError),
    /// The required Type field is absent.
    #[error("UnixFS data has no Type")]
    MissingType,
    /// A Type this implementation does not know.
    #[error("unknown UnixFS type {0}")]
    UnknownType(u64),
    /// A field with the wrong wire type.
    #[error("UnixFS field {field} has wire type {wire_type}, expected another")]
    WrongWireType {
        /// Field number.
        field: u64,
        /// Wire type found.
        wire_type: u8,
    },
    /// `mode` does not fit 32 bits.
    #[error("UnixFS mode {0} does not fit in 32 bits")]
    BadMode(u64),
}

impl Data {
    /// A node of the given type with every optional field absent.
    pub fn new(kind: DataType) -> Self {
        Self {
            kind,
            data: None,
            file_size: None,
            block_sizes: Vec::new(),
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// Decodes the message; `data` comes back as a slice of `bytes`.
    pub fn decode(bytes: &Bytes) -> Result<Self, DataError> {
        let mut r = Reader::new(bytes);
        let mut kind = None;
        let mut out = Data::new(DataType::Raw);
        while !r.is_empty() {
            let (field, wire_type) = r.key()?;
            let wrong = DataError::WrongWireType { field, wire_type };
            match (field, wire_type) {
                (1, VARINT) => {
                    let code = r.varint()?;
                    kind = Some(DataType::from_code(code).ok_or(DataError::UnknownType(code))?);
                }
                (2, LEN) => out.data = Some(bytes.slice(r.len_delimited()?)),
                (3, VARINT) => out.file_size = Some(r.varint()?),
                (4, VARINT) => out.block_sizes.push(r.varint()?),
                (4, LEN) => {
                    let range = r.len_delimited()?;
                    let mut packed = Reader::new(&bytes[range]);
                    while !packed.is_empty() {
                        out.block_sizes.push(packed.varint()?);
                    }
                }
                (5, VARINT) => out.hash_type = Some(r.varint()?),
                (6, VARINT) => out.fanout = Some(r.varint()?),
                (7, VARINT) => {
                    let m = r.varint()?;
                    out.mode = Some(u32::try_from(m).map_err(|_| DataError::BadMode(m))?);
                }
                (8, LEN) => {
                    let range = r.len_delimited()?;
                    out.mtime = Some(decode_time(&bytes[range])?);
                }
                (1..=8, _) => return Err(wrong),
                // Unknown fields are skipped, as proto2 readers do: newer
                // writers may add some.
                (_, wt) => r.skip(wt)?,
            }
        }
        out.kind = kind.ok_or(DataError::MissingType)?;
        Ok(out)
    }

    /// Size of the encoding, in bytes.
    pub fn encoded_len(&self) -> usize {
        let mut n = 1 + protobuf::varint_len(self.kind.code());
        if let Some(d) = &self.data {
            n += protobuf::bytes_field_len(d.len());
        }
        if let Some(s) = self.file_size {
            n += 1 + protobuf::varint_len(s);
        }
        n += self
            .block_sizes
            .iter()
            .map(|&b| 1 + protobuf::varint_len(b))
            .sum::<usize>();
        for v in [self.hash_type, self.fanout, self.mode.map(u64::from)]
            .into_iter()
            .flatten()
        {
            n += 1 + protobuf::varint_len(v);
        }
        if let Some(t) = &self.mtime {
            n += protobuf::bytes_field_len(time_len(t));
        }
        n
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        protobuf::put_varint_field(out, 1, self.kind.code());
        if let Some(d) = &self.data {
            protobuf::put_bytes_field(out, 2, d);
        }
        if let Some(s) = self.file_size {
            protobuf::put_varint_field(out, 3, s);
        }
        for &b in &self.block_sizes {
            protobuf::put_varint_field(out, 4, b);
        }
        if let Some(h) = self.hash_type {
            protobuf::put_varint_field(out, 5, h);
        }
        if let Some(f) = self.fanout {
            protobuf::put_varint_field(out, 6, f);
        }
        if let Some(m) = self.mode {
            protobuf::put_varint_field(out, 7, u64::from(m));
        }
        if let Some(t) = &self.mtime {
            protobuf::put_key(out, 8, LEN);
            protobuf::put_varint(out, time_len(t) as u64);
            protobuf::put_varint_field(out, 1, t.seconds as u64);
            if let Some(ns) = t.nanos {
                protobuf::put_key(out, 2, FIXED32);
                out.extend_from_slice(&ns.to_le_bytes());
            }
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        Bytes::from(out)
    }
}

fn time_len(t: &UnixTime) -> usize {
    // int64 goes on the wire as its two's-complement u64.
    1 + protobuf::varint_len(t.seconds as u64) + t.nanos.map_or(0, |_| 5)
}

fn decode_time(buf: &[u8]) -> Result<UnixTime, DataError> {
    let mut r = Reader::new(buf);
    let mut t = UnixTime {
        seconds: 0,
        nanos: None,
    };
    while !r.is_empty() {
        match r.key()? {
            (1, VARINT) => t.seconds = r.varint()? as i64,
            (2, FIXED32) => t.nanos = Some(r.fixed32()?),
            (field @ (1 | 2), wire_type) => {
                return Err(DataError::WrongWireType { field, wire_type });
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn kubo_file_leaf_bytes() {
        // go-unixfs leaf of "a": Type=File, Data="a", filesize=1.
        let mut d = Data::new(DataType::File);
        d.data = Some(Bytes::from_static(b"a"));
        d.file_size = Some(1);
        assert_eq!(&d.encode()[..], &[0x08, 0x02, 0x12, 0x01, b'a', 0x18, 0x01]);
    }

    #[test]
    fn blocksizes_are_unpacked_but_packed_decodes() {
        let mut d = Data::new(DataType::File);
        d.file_size = Some(300);
        d.block_sizes = vec![200, 100];
        let bytes = d.encode();
        assert_eq!(
            &bytes[..],
            &[0x08, 0x02, 0x18, 0xac, 0x02, 0x20, 0xc8, 0x01, 0x20, 0x64]
        );
        let packed =
            Bytes::from_static(&[0x08, 0x02, 0x18, 0xac, 0x02, 0x22, 0x03, 0xc8, 0x01, 0x64]);
        assert_eq!(Data::decode(&packed).unwrap(), d);
    }

    #[test]
    fn bad_messages_are_errors() {
        for bytes in [
            &[][..],                                           // no Type
            &[0x08, 0x09],                                     // unknown Type
            &[0x0a, 0x00],                                     // Type as bytes
            &[0x08, 0x02, 0x38, 0x80, 0x80, 0x80, 0x80, 0x10], // mode over 32 bits
            &[0x08, 0x02, 0x12, 0x05],                         // truncated Data
        ] {
            assert!(
                Data::decode(&Bytes::copy_from_slice(bytes)).is_err(),
                "{bytes:?}"
            );
        }
    }

    fn arb_data() -> impl Strategy<Value = Data> {
        (
            0u64..6,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec(any::<u64>(), 0..4),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of((any::<i64>(), proptest::option::of(any::<u32>()))),
        )
            .prop_map(|(k, data, fs, bs, ht, fo, mode, mtime)| Data {
                kind: DataType::from_code(k).unwrap(),
                data: data.map(Bytes::from),
                file_size: fs,
                block_sizes: bs,
                hash_type: ht,
                fanout: fo,
                mode,
                mtime: mtime.map(|(seconds, nanos)| UnixTime { seconds, nanos }),
            })
    }

    proptest! {
        #[test]
        fn round_trips(d in arb_data()) {
            let bytes = d.encode();
            prop_assert_eq!(bytes.len(), d.encoded_len());
            prop_assert_eq!(Data::decode(&bytes).unwrap(), d);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Data::decode(&Bytes::from(bytes));
        }
    }
}
