//! The few protobuf wire-format pieces that dag-pb and UnixFS need.
//!
//! Both messages are tiny and fixed, so a hand-written reader and writer is
//! shorter than generated code, never copies payloads (length-delimited fields
//! come back as ranges into the input, which callers turn into `Bytes` slices)
//! and is easy to make panic-free on arbitrary input, which the decoders need
//! since every block they read came from the network.

use std::ops::Range;

/// Wire type of varint fields.
pub(crate) const VARINT: u8 = 0;
/// Wire type of 64-bit fixed fields.
pub(crate) const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (bytes, strings, messages, packed).
pub(crate) const LEN: u8 = 2;
/// Wire type of 32-bit fixed fields.
pub(crate) const FIXED32: u8 = 5;

/// Why a protobuf buffer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ended inside a field.
    #[error("truncated protobuf at byte {at}")]
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// A varint ran over 10 bytes or over 64 bits.
    #[error("overlong varint at byte {at}")]
    BadVarint {
        /// Offset of the varint.
        at: usize,
    },
    /// A wire type that protobuf does not define (or the deprecated groups).
    #[error("unsupported protobuf wire type {wire_type} at byte {at}")]
    BadWireType {
        /// The wire type found.
        wire_type: u8,
        /// Offset of the field key.
        at: usize,
    },
}

/// A cursor over a protobuf message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated { at: self.pos });
            };
            self.pos += 1;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(WireError::BadVarint { at: start });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::BadVarint { at: start })
    }

    /// Reads a field key: (field number, wire type).
    pub(crate) fn key(&mut self) -> Result<(u64, u8), WireError> {
        let at = self.pos;
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        match wire_type {
            VARINT | FIXED64 | LEN | FIXED32 => Ok((key >> 3, wire_type)),
            _ => Err(WireError::BadWireType { wire_type, at }),
        }
    }

    /// Reads a length-delimited payload and returns where it sits in the buffer.
    pub(crate) fn len_delimited(&mut self) -> Result<Range<usize>, WireError> {
        let at = self.pos;
        let len = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::Truncated { at })?;
        self.pos = end;
        Ok(start..end)
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32, WireError> {
        let at = self.pos;
        let bytes = self
            .buf
            .get(at..at + 4)
            .ok_or(WireError::Truncated { at })?;
        self.pos += 4;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Skips the value of a field of the given wire type.
    pub(crate) fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.advance(8),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.advance(4),
            _ => Err(WireError::BadWireType {
                wire_type,
                at: self.pos,
            }),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated { at: self.pos });
        }
        self.pos += n;
        Ok(())
    }
}

/// Number of bytes `v` takes as a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_key(out: &mut Vec<u8>, field: u64, wire_type: u8) {
    put_varint(out, (field << 3) | u64::from(wire_type));
}

pub(crate) fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

/// Encoded size of a length-delimited field with a one-byte key.
pub(crate) fn bytes_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_group_boundaries() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let eleven = [0xff; 11];
        assert!(matches!(
            Reader::new(&eleven).varint(),
            Err(WireError::BadVarint { .. })
        ));
        // Ten bytes whose last carries more than the 64th bit.
        let mut too_big = [0xff; 10];
        too_big[9] = 0x02;
        assert!(matches!(
            Reader::new(&too_big).varint(),
            Err(WireError::BadVarint { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x80]).varint(),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn length_past_the_end_is_truncated_not_a_panic() {
        let buf = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut r = Reader::new(&buf);
        assert_eq!(r.key().unwrap(), (1, LEN));
        assert!(matches!(
            r.len_delimited(),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn groups_are_refused() {
        // Field 1, wire type 3 (start group).
        assert!(matches!(
            Reader::new(&[0x0b]).key(),
            Err(WireError::BadWireType { wire_type: 3, .. })
        ));
    }
}
