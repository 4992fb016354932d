//! Protobuf wire primitives for the one schema Bitswap uses.
//!
//! Written out by hand rather than generated: decoded block payloads are
//! `Bytes::slice`s of the received frame (a 4 MiB message is never copied to
//! be parsed), encoded block payloads are written out as their own segments
//! (never copied into a message buffer), and the decoder is small enough to
//! fuzz and to reason about. Only the wire types proto3 can produce are
//! accepted; groups are refused.

use bytes::{BufMut, Bytes, BytesMut};

use super::message::DecodeError;

/// A field's value as it sits on the wire.
#[derive(Debug)]
pub(crate) enum Value {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2: a slice of the frame, not a copy.
    Len(Bytes),
    /// Wire types 1 and 5: no field of the Bitswap schema uses them, but
    /// unknown fields of these types must be skipped, not refused.
    Fixed,
}

/// Reads fields one after the other from a protobuf-encoded message.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u64, Value)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(DecodeError::Malformed("field number 0"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
                let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
                if end > self.buf.len() {
                    return Err(DecodeError::Truncated);
                }
                let v = self.buf.slice(self.pos..end);
                self.pos = end;
                Value::Len(v)
            }
            5 => {
                self.skip(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError::Malformed("unsupported protobuf wire type")),
        };
        Ok(Some((field, value)))
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        if end > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        self.pos = end;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = read_varint(&self.buf[self.pos..])?;
        self.pos += n;
        Ok(v)
    }
}

/// Decodes a base-128 varint from the start of `buf`: its value and length.
pub(crate) fn read_varint(buf: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return Err(DecodeError::Malformed("varint overflows 64 bits"));
        }
        value |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() < 10 {
        Err(DecodeError::Truncated)
    } else {
        Err(DecodeError::Malformed("varint longer than 10 bytes"))
    }
}

/// Length of `v` as a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Protobuf's int32 is sign-extended to 64 bits on the wire.
pub(crate) fn int32_to_wire(v: i32) -> u64 {
    i64::from(v) as u64
}

/// The inverse of [`int32_to_wire`]; like protobuf, keeps the low 32 bits.
pub(crate) fn int32_from_wire(v: u64) -> i32 {
    v as i32
}

/// Length of a key for `field` with any wire type.
pub(crate) fn key_len(field: u64) -> usize {
    varint_len(field << 3)
}

/// Length of a whole length-delimited field whose value is `len` bytes.
pub(crate) fn len_field_len(field: u64, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// Length of a whole varint field.
pub(crate) fn varint_field_len(field: u64, v: u64) -> usize {
    key_len(field) + varint_len(v)
}

/// Builds an encoded message as a list of segments: small fields are packed
/// into shared buffers, large byte fields (block data) become segments of
/// their own so that they are written out without being copied.
pub(crate) struct SegmentWriter {
    segments: Vec<Bytes>,
    current: BytesMut,
    len: usize,
}

/// Byte fields at least this long are kept as their own segment.
const OWN_SEGMENT_MIN: usize = 4096;

impl SegmentWriter {
    pub(crate) fn new() -> Self {
        Self {
            segments: Vec::new(),
            current: BytesMut::with_capacity(256),
            len: 0,
        }
    }

    pub(crate) fn key(&mut self, field: u64, wire_type: u64) {
        self.varint(field << 3 | wire_type);
    }

    pub(crate) fn varint(&mut self, v: u64) {
        let before = self.current.len();
        put_varint(&mut self.current, v);
        self.len += self.current.len() - before;
    }

    pub(crate) fn varint_field(&mut self, field: u64, v: u64) {
        self.key(field, 0);
        self.varint(v);
    }

    /// A length-delimited field whose content follows through other calls.
    pub(crate) fn len_header(&mut self, field: u64, len: usize) {
        self.key(field, 2);
        self.varint(len as u64);
    }

    pub(crate) fn bytes_field(&mut self, field: u64, data: &[u8]) {
        self.len_header(field, data.len());
        self.current.extend_from_slice(data);
        self.len += data.len();
    }

    /// Like [`Self::bytes_field`], without copying `data` if it is large.
    pub(crate) fn shared_bytes_field(&mut self, field: u64, data: &Bytes) {
        if data.len() < OWN_SEGMENT_MIN {
            self.bytes_field(field, data);
            return;
        }
        self.len_header(field, data.len());
        if !self.current.is_empty() {
            let cap = self.current.capacity().max(256);
            let done = std::mem::replace(&mut self.current, BytesMut::with_capacity(cap));
            self.segments.push(done.freeze());
        }
        self.segments.push(data.clone());
        self.len += data.len();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.segments.push(self.current.freeze());
        }
        self.segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_at_group_boundaries() {
        // Each 7-bit boundary changes the encoded length by one byte.
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "length of {v}");
            assert_eq!(read_varint(&b).unwrap(), (v, b.len()));
        }
    }

    #[test]
    fn varint_refuses_truncation_and_overflow() {
        assert_eq!(read_varint(&[0x80, 0x80]), Err(DecodeError::Truncated));
        assert!(read_varint(&[0xff; 10]).is_err());
        assert!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err()
        );
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .unwrap()
                .0,
            u64::MAX
        );
    }

    #[test]
    fn negative_int32_is_ten_bytes_like_protobuf() {
        assert_eq!(varint_len(int32_to_wire(-1)), 10);
        assert_eq!(int32_from_wire(int32_to_wire(-5)), -5);
        assert_eq!(int32_from_wire(int32_to_wire(i32::MAX)), i32::MAX);
    }

    #[test]
    fn reader_slices_len_fields_and_skips_fixed() {
        // field 1 fixed64, field 2 bytes "ab", field 3 fixed32, field 4 varint 300
        let raw = [
            0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 2, b'a', b'b', 0x1d, 1, 2, 3, 4, 0x20, 0xac, 0x02,
        ];
        let mut r = Reader::new(Bytes::copy_from_slice(&raw));
        assert!(matches!(r.next_field().unwrap(), Some((1, Value::Fixed))));
        match r.next_field().unwrap() {
            Some((2, Value::Len(b))) => assert_eq!(&b[..], b"ab"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.next_field().unwrap(), Some((3, Value::Fixed))));
        assert!(matches!(
            r.next_field().unwrap(),
            Some((4, Value::Varint(300)))
        ));
        assert!(r.next_field().unwrap().is_none());
    }

    #[test]
    fn reader_refuses_groups_and_overlong_lengths() {
        let mut r = Reader::new(Bytes::from_static(&[0x0b]));
        assert!(r.next_field().is_err());
        let mut r = Reader::new(Bytes::from_static(&[0x0a, 5, 1]));
        assert_eq!(r.next_field().unwrap_err(), DecodeError::Truncated);
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x01]));
        assert!(r.next_field().is_err());
    }

    #[test]
    fn segment_writer_keeps_large_fields_apart() {
        let big = Bytes::from(vec![7u8; OWN_SEGMENT_MIN]);
        let mut w = SegmentWriter::new();
        w.varint_field(1, 5);
        w.shared_bytes_field(2, &big);
        w.bytes_field(3, b"xy");
        let total = w.len();
        let segs = w.finish();
        assert_eq!(segs.len(), 3);
        assert_eq!(segs.iter().map(Bytes::len).sum::<usize>(), total);
        assert_eq!(
            segs[1].as_ptr(),
            big.as_ptr(),
            "block bytes are shared, not copied"
        );
    }
}
