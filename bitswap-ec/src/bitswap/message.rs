//! The Bitswap message: what one length-prefixed frame carries.
//!
//! ```protobuf
//! message Message {
//!   message Wantlist {
//!     enum WantType { Block = 0; Have = 1; }
//!     message Entry {
//!       bytes block = 1;         // the CID, binary
//!       int32 priority = 2;
//!       bool cancel = 3;
//!       WantType wantType = 4;   // 1.2.0
//!       bool sendDontHave = 5;   // 1.2.0
//!     }
//!     repeated Entry entries = 1;
//!     bool full = 2;
//!   }
//!   message Block { bytes prefix = 1; bytes data = 2; }
//!   enum BlockPresenceType { Have = 0; DontHave = 1; }
//!   message BlockPresence { bytes cid = 1; BlockPresenceType type = 2; }
//!   Wantlist wantlist = 1;
//!   repeated bytes blocks = 2;            // 1.0.0
//!   repeated Block payload = 3;           // 1.1.0 and later
//!   repeated BlockPresence blockPresences = 4;  // 1.2.0
//!   int32 pendingBytes = 5;
//! }
//! ```
//!
//! Decoding checks structure only; hashing a payload to learn its CID is the
//! job of [`super::verify`], which runs off the async runtime.

use bytes::Bytes;
use cid::Cid;

use super::prefix::Prefix;
use super::proto::{self, Reader, SegmentWriter, Value};
use super::protocol::Version;

/// Why a frame is not a Bitswap message. The whole message is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A field runs past the end of the frame.
    #[error("bitswap message is truncated: the peer sent a cut-off or corrupt frame")]
    Truncated,
    /// The protobuf structure is broken.
    #[error("bitswap message is malformed: {0}")]
    Malformed(&'static str),
    /// A wantlist entry or block presence names no valid CID.
    #[error("bitswap message holds an invalid CID")]
    InvalidCid,
    /// A payload's CID prefix cannot be parsed.
    #[error("bitswap message holds an invalid CID prefix: {0}")]
    InvalidPrefix(&'static str),
}

/// What a wantlist entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WantType {
    /// Send the block.
    #[default]
    Block,
    /// Say whether you have the block (1.2.0).
    Have,
}

/// One entry of a wantlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The wanted block.
    pub cid: Cid,
    /// Higher is served first.
    pub priority: i32,
    /// Withdraws an earlier want for `cid`.
    pub cancel: bool,
    /// Block or have.
    pub want_type: WantType,
    /// Ask for an explicit DONT_HAVE instead of silence.
    pub send_dont_have: bool,
}

/// A block in the 1.1.0+ form: the prefix of its CID and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Version, codec and hash of the block's CID; the digest is computed.
    pub prefix: Prefix,
    /// The block's bytes, a slice of the received frame.
    pub data: Bytes,
}

/// Whether a peer has a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceKind {
    /// The peer has it.
    Have,
    /// The peer does not have it.
    DontHave,
}

/// An answer to a want-have (or a want-block with send-dont-have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The block in question.
    pub cid: Cid,
    /// Have or don't have.
    pub kind: PresenceKind,
}

/// One Bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Wantlist entries (wants and cancels).
    pub wantlist: Vec<Entry>,
    /// The wantlist replaces the sender's earlier one.
    pub full: bool,
    /// Blocks in the 1.0.0 form: bytes only, named by a CIDv0 of their hash.
    pub blocks: Vec<Bytes>,
    /// Blocks in the 1.1.0+ form.
    pub payload: Vec<Payload>,
    /// Have / don't-have answers.
    pub presences: Vec<Presence>,
    /// Bytes the sender still has queued for us (informational).
    pub pending_bytes: i32,
    /// Entries, blocks and presences beyond the decoder's item limit, skipped.
    pub skipped: usize,
}

/// The most entries, blocks and presences one decoded message keeps; the
/// rest are skipped. Without a limit, a 4 MiB frame of minimal entries would
/// decode into hundreds of megabytes of `Cid`s.
pub const DEFAULT_MAX_ITEMS: usize = 16_384;

const WANTLIST: u64 = 1;
const BLOCKS: u64 = 2;
const PAYLOAD: u64 = 3;
const PRESENCES: u64 = 4;
const PENDING_BYTES: u64 = 5;

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if the message carries nothing.
    pub fn is_empty(&self) -> bool {
        self.wantlist.is_empty()
            && !self.full
            && self.blocks.is_empty()
            && self.payload.is_empty()
            && self.presences.is_empty()
    }

    /// Decodes one frame (without its length prefix), keeping at most
    /// [`DEFAULT_MAX_ITEMS`] items.
    pub fn decode(frame: Bytes) -> Result<Self, DecodeError> {
        Self::decode_with_limit(frame, DEFAULT_MAX_ITEMS)
    }

    /// Decodes one frame, keeping at most `max_items` entries, blocks and
    /// presences together; [`Message::skipped`] counts the rest.
    pub fn decode_with_limit(frame: Bytes, max_items: usize) -> Result<Self, DecodeError> {
        let mut msg = Message::default();
        let mut items = 0usize;
        let mut r = Reader::new(frame);
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (WANTLIST, Value::Len(b)) => msg.decode_wantlist(b, &mut items, max_items)?,
                (BLOCKS, Value::Len(b)) => {
                    // Not a match guard: a block over the item limit must be skipped, not fall
                    // through to the wrong-wire-type arm below.
                    let taken = take_item(&mut items, max_items, &mut msg.skipped);
                    if taken {
                        msg.blocks.push(b);
                    }
                }
                (PAYLOAD, Value::Len(b)) => {
                    let p = decode_payload(b)?;
                    if take_item(&mut items, max_items, &mut msg.skipped) {
                        msg.payload.push(p);
                    }
                }
                (PRESENCES, Value::Len(b)) => {
                    if let Some(p) = decode_presence(b)?
                        && take_item(&mut items, max_items, &mut msg.skipped)
                    {
                        msg.presences.push(p);
                    }
                }
                (PENDING_BYTES, Value::Varint(v)) => msg.pending_bytes = proto::int32_from_wire(v),
                (WANTLIST | BLOCKS | PAYLOAD | PRESENCES | PENDING_BYTES, _) => {
                    return Err(DecodeError::Malformed("field has the wrong wire type"));
                }
                _ => {} // unknown field: skipped, as protobuf requires
            }
        }
        Ok(msg)
    }

    fn decode_wantlist(
        &mut self,
        b: Bytes,
        items: &mut usize,
        max: usize,
    ) -> Result<(), DecodeError> {
        let mut r = Reader::new(b);
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1, Value::Len(e)) => {
                    let entry = decode_entry(e)?;
                    if take_item(items, max, &mut self.skipped) {
                        self.wantlist.push(entry);
                    }
                }
                (2, Value::Varint(v)) => self.full = v != 0,
                (1 | 2, _) => {
                    return Err(DecodeError::Malformed(
                        "wantlist field has the wrong wire type",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Exact encoded length for [`Version::V1_2_0`], an upper bound for the
    /// older versions (which drop or shrink parts of the message).
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        let wl = self.wantlist_len();
        if wl > 0 || self.full {
            n += proto::len_field_len(WANTLIST, wl);
        }
        n += self
            .blocks
            .iter()
            .map(|b| proto::len_field_len(BLOCKS, b.len()))
            .sum::<usize>();
        n += self
            .payload
            .iter()
            .map(|p| proto::len_field_len(PAYLOAD, payload_len(p)))
            .sum::<usize>();
        n += self
            .presences
            .iter()
            .map(|p| proto::len_field_len(PRESENCES, presence_len(p)))
            .sum::<usize>();
        if self.pending_bytes != 0 {
            n += proto::varint_field_len(PENDING_BYTES, proto::int32_to_wire(self.pending_bytes));
        }
        n
    }

    fn wantlist_len(&self) -> usize {
        let entries: usize = self
            .wantlist
            .iter()
            .map(|e| proto::len_field_len(1, entry_len(e)))
            .sum();
        entries
            + if self.full {
                proto::varint_field_len(2, 1)
            } else {
                0
            }
    }

    /// Encodes the message for a peer that speaks `version`, as segments to
    /// be written one after the other (block bytes are not copied).
    ///
    /// Below 1.2.0, presences are dropped and want-have becomes want-block
    /// (those versions know neither); in 1.0.0, payloads go out as bare
    /// `blocks`.
    pub fn encode(&self, version: Version) -> Vec<Bytes> {
        let mut w = SegmentWriter::new();
        let legacy_wants: Vec<Entry>;
        let wantlist: &[Entry] = if version.supports_have() {
            &self.wantlist
        } else {
            legacy_wants = self
                .wantlist
                .iter()
                .map(|e| Entry {
                    want_type: WantType::Block,
                    send_dont_have: false,
                    ..e.clone()
                })
                .collect();
            &legacy_wants
        };
        if !wantlist.is_empty() || self.full {
            let entries: usize = wantlist
                .iter()
                .map(|e| proto::len_field_len(1, entry_len(e)))
                .sum();
            let wl = entries
                + if self.full {
                    proto::varint_field_len(2, 1)
                } else {
                    0
                };
            w.len_header(WANTLIST, wl);
            for e in wantlist {
                w.len_header(1, entry_len(e));
                encode_entry(&mut w, e);
            }
            if self.full {
                w.varint_field(2, 1);
            }
        }
        for b in &self.blocks {
            w.shared_bytes_field(BLOCKS, b);
        }
        if version.supports_payload() {
            for p in &self.payload {
                w.len_header(PAYLOAD, payload_len(p));
                w.bytes_field(1, &p.prefix.to_bytes());
                w.shared_bytes_field(2, &p.data);
            }
        } else {
            for p in &self.payload {
                w.shared_bytes_field(BLOCKS, &p.data);
            }
        }
        if version.supports_have() {
            for p in &self.presences {
                w.len_header(PRESENCES, presence_len(p));
                w.bytes_field(1, &p.cid.to_bytes());
                if p.kind == PresenceKind::DontHave {
                    w.varint_field(2, 1);
                }
            }
        }
        if self.pending_bytes != 0 {
            w.varint_field(PENDING_BYTES, proto::int32_to_wire(self.pending_bytes));
        }
        w.finish()
    }

    /// Encodes the message as one contiguous buffer (tests, fuzzing).
    pub fn to_bytes(&self, version: Version) -> Bytes {
        let segs = self.encode(version);
        let mut out = Vec::with_capacity(segs.iter().map(Bytes::len).sum());
        for s in segs {
            out.extend_from_slice(&s);
        }
        Bytes::from(out)
    }
}

/// Counts an item against the limit; false (and one more skipped) past it.
fn take_item(items: &mut usize, max: usize, skipped: &mut usize) -> bool {
    if *items < max {
        *items += 1;
        true
    } else {
        *skipped += 1;
        false
    }
}

fn parse_cid(b: &[u8]) -> Result<Cid, DecodeError> {
    let mut rest = b;
    let cid = Cid::read_bytes(&mut rest).map_err(|_| DecodeError::InvalidCid)?;
    if !rest.is_empty() {
        return Err(DecodeError::InvalidCid);
    }
    Ok(cid)
}

fn decode_entry(b: Bytes) -> Result<Entry, DecodeError> {
    let mut r = Reader::new(b);
    let mut cid = None;
    let mut e = Entry {
        cid: Cid::default(),
        priority: 0,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Len(c)) => cid = Some(parse_cid(&c)?),
            (2, Value::Varint(v)) => e.priority = proto::int32_from_wire(v),
            (3, Value::Varint(v)) => e.cancel = v != 0,
            // proto3 enums are open: an unknown want type is read as the default.
            (4, Value::Varint(v)) => {
                e.want_type = if v == 1 {
                    WantType::Have
                } else {
                    WantType::Block
                }
            }
            (5, Value::Varint(v)) => e.send_dont_have = v != 0,
            (1..=5, _) => {
                return Err(DecodeError::Malformed(
                    "wantlist entry field has the wrong wire type",
                ));
            }
            _ => {}
        }
    }
    e.cid = cid.ok_or(DecodeError::InvalidCid)?;
    Ok(e)
}

fn decode_payload(b: Bytes) -> Result<Payload, DecodeError> {
    let mut r = Reader::new(b);
    let mut prefix = None;
    let mut data = Bytes::new();
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Len(p)) => prefix = Some(Prefix::from_bytes(&p)?),
            (2, Value::Len(d)) => data = d,
            (1 | 2, _) => {
                return Err(DecodeError::Malformed(
                    "payload field has the wrong wire type",
                ));
            }
            _ => {}
        }
    }
    let prefix = prefix.ok_or(DecodeError::InvalidPrefix("payload without a prefix"))?;
    Ok(Payload { prefix, data })
}

/// `None` for a presence type this version does not know (open enum).
fn decode_presence(b: Bytes) -> Result<Option<Presence>, DecodeError> {
    let mut r = Reader::new(b);
    let mut cid = None;
    let mut kind = Some(PresenceKind::Have);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Len(c)) => cid = Some(parse_cid(&c)?),
            (2, Value::Varint(v)) => {
                kind = match v {
                    0 => Some(PresenceKind::Have),
                    1 => Some(PresenceKind::DontHave),
                    _ => None,
                }
            }
            (1 | 2, _) => {
                return Err(DecodeError::Malformed(
                    "block presence field has the wrong wire type",
                ));
            }
            _ => {}
        }
    }
    let cid = cid.ok_or(DecodeError::InvalidCid)?;
    Ok(kind.map(|kind| Presence { cid, kind }))
}

fn entry_len(e: &Entry) -> usize {
    let mut n = proto::len_field_len(1, e.cid.encoded_len());
    if e.priority != 0 {
        n += proto::varint_field_len(2, proto::int32_to_wire(e.priority));
    }
    if e.cancel {
        n += proto::varint_field_len(3, 1);
    }
    if e.want_type == WantType::Have {
        n += proto::varint_field_len(4, 1);
    }
    if e.send_dont_have {
        n += proto::varint_field_len(5, 1);
    }
    n
}

fn encode_entry(w: &mut SegmentWriter, e: &Entry) {
    w.bytes_field(1, &e.cid.to_bytes());
    if e.priority != 0 {
        w.varint_field(2, proto::int32_to_wire(e.priority));
    }
    if e.cancel {
        w.varint_field(3, 1);
    }
    if e.want_type == WantType::Have {
        w.varint_field(4, 1);
    }
    if e.send_dont_have {
        w.varint_field(5, 1);
    }
}

fn payload_len(p: &Payload) -> usize {
    proto::len_field_len(1, p.prefix.encoded_len()) + proto::len_field_len(2, p.data.len())
}

fn presence_len(p: &Presence) -> usize {
    proto::len_field_len(1, p.cid.encoded_len())
        + if p.kind == PresenceKind::DontHave {
            proto::varint_field_len(2, 1)
        } else {
            0
        }
}

/// Encoded size of one wantlist entry inside a message, for batching.
pub(crate) fn entry_wire_len(e: &Entry) -> usize {
    proto::len_field_len(1, entry_len(e))
}

/// Encoded size of one presence inside a message, for batching.
pub(crate) fn presence_wire_len(p: &Presence) -> usize {
    proto::len_field_len(PRESENCES, presence_len(p))
}

/// Encoded size of one payload inside a message, for batching.
pub(crate) fn payload_wire_len(p: &Payload) -> usize {
    proto::len_field_len(PAYLOAD, payload_len(p))
}

/// Bytes a wantlist field adds around its entries, at most.
pub(crate) const WANTLIST_OVERHEAD: usize = 1 + 5 + 2;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tessera_blockstore::{Block, DAG_PB, RAW};

    use super::*;

    fn raw_block(data: &[u8]) -> Block {
        Block::from_data_v1(RAW, Bytes::copy_from_slice(data))
    }

    fn sample() -> Message {
        let a = raw_block(b"a");
        let b = Block::from_dag_pb_v0(Bytes::from_static(&[0x0a, 0x02, 0x08, 0x02]));
        Message {
            wantlist: vec![
                Entry {
                    cid: *a.cid(),
                    priority: -3,
                    cancel: false,
                    want_type: WantType::Have,
                    send_dont_have: true,
                },
                Entry {
                    cid: *b.cid(),
                    priority: 7,
                    cancel: true,
                    want_type: WantType::Block,
                    send_dont_have: false,
                },
            ],
            full: true,
            blocks: vec![],
            payload: vec![Payload {
                prefix: Prefix::of(b.cid()),
                data: b.data().clone(),
            }],
            presences: vec![Presence {
                cid: *a.cid(),
                kind: PresenceKind::DontHave,
            }],
            pending_bytes: 12,
            skipped: 0,
        }
    }

    #[test]
    fn v120_round_trip_is_exact() {
        let m = sample();
        let bytes = m.to_bytes(Version::V1_2_0);
        assert_eq!(bytes.len(), m.encoded_len());
        assert_eq!(Message::decode(bytes).unwrap(), m);
    }

    #[test]
    fn v110_drops_presences_and_have_wants() {
        let m = sample();
        let d = Message::decode(m.to_bytes(Version::V1_1_0)).unwrap();
        assert!(d.presences.is_empty());
        assert!(
            d.wantlist
                .iter()
                .all(|e| e.want_type == WantType::Block && !e.send_dont_have)
        );
        assert_eq!(d.payload, m.payload);
    }

    #[test]
    fn v100_sends_bare_blocks() {
        let m = sample();
        let d = Message::decode(m.to_bytes(Version::V1_0_0)).unwrap();
        assert!(d.payload.is_empty());
        assert_eq!(d.blocks, vec![m.payload[0].data.clone()]);
    }

    #[test]
    fn empty_frame_is_an_empty_message() {
        // A zero-length frame is a valid protobuf message with every field unset.
        let m = Message::decode(Bytes::new()).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn decoded_block_bytes_are_slices_of_the_frame() {
        let data = Bytes::from(vec![1u8; 10_000]);
        let mut m = Message::new();
        m.payload.push(Payload {
            prefix: Prefix::of(raw_block(&data).cid()),
            data,
        });
        let frame = m.to_bytes(Version::V1_2_0);
        let range = frame.as_ptr_range();
        let d = Message::decode(frame.clone()).unwrap();
        assert!(range.contains(&d.payload[0].data.as_ptr()));
    }

    #[test]
    fn item_limit_skips_the_excess() {
        let mut m = Message::new();
        for i in 0..10u8 {
            m.wantlist.push(Entry {
                cid: *raw_block(&[i]).cid(),
                priority: 1,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: false,
            });
        }
        let d = Message::decode_with_limit(m.to_bytes(Version::V1_2_0), 4).unwrap();
        assert_eq!(d.wantlist.len(), 4);
        assert_eq!(d.skipped, 6);
    }

    #[test]
    fn bad_cid_and_wrong_wire_type_are_refused() {
        // wantlist { entry { block: "xyz" } }
        let bad_cid = Bytes::from_static(&[0x0a, 0x07, 0x0a, 0x05, 0x0a, 0x03, b'x', b'y', b'z']);
        assert_eq!(Message::decode(bad_cid), Err(DecodeError::InvalidCid));
        // field 1 (wantlist) as a varint
        assert!(Message::decode(Bytes::from_static(&[0x08, 0x01])).is_err());
        // entry without a CID
        assert_eq!(
            Message::decode(Bytes::from_static(&[0x0a, 0x04, 0x0a, 0x02, 0x10, 0x01])),
            Err(DecodeError::InvalidCid)
        );
        let _ = DAG_PB;
    }

    fn arb_cid() -> impl Strategy<Value = Cid> {
        (any::<Vec<u8>>(), any::<bool>()).prop_map(|(d, v0)| {
            if v0 {
                *Block::from_dag_pb_v0(Bytes::from(d)).cid()
            } else {
                *raw_block(&d).cid()
            }
        })
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            arb_cid(),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(cid, priority, cancel, have, sdh)| Entry {
                cid,
                priority,
                cancel,
                want_type: if have {
                    WantType::Have
                } else {
                    WantType::Block
                },
                send_dont_have: sdh,
            })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            prop::collection::vec(arb_entry(), 0..8),
            any::<bool>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
            prop::collection::vec((arb_cid(), any::<bool>()), 0..4),
            any::<i32>(),
        )
            .prop_map(
                |(wantlist, full, blocks, presences, pending_bytes)| Message {
                    wantlist,
                    full,
                    blocks: vec![],
                    payload: blocks
                        .into_iter()
                        .map(|d| {
                            let b = raw_block(&d);
                            Payload {
                                prefix: Prefix::of(b.cid()),
                                data: b.data().clone(),
                            }
                        })
                        .collect(),
                    presences: presences
                        .into_iter()
                        .map(|(cid, h)| Presence {
                            cid,
                            kind: if h {
                                PresenceKind::Have
                            } else {
                                PresenceKind::DontHave
                            },
                        })
                        .collect(),
                    pending_bytes,
                    skipped: 0,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_message()) {
            let bytes = m.to_bytes(Version::V1_2_0);
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert_eq!(Message::decode(bytes).unwrap(), m);
        }

        #[test]
        fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(Bytes::from(raw));
        }

        #[test]
        fn flipped_bytes_never_panic(m in arb_message(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut raw = m.to_bytes(Version::V1_2_0).to_vec();
            if !raw.is_empty() {
                let i = pos.index(raw.len());
                raw[i] ^= 1 << bit;
            }
            let _ = Message::decode(Bytes::from(raw));
        }

        #[test]
        fn truncation_never_panics(m in arb_message(), cut in any::<prop::sample::Index>()) {
            let raw = m.to_bytes(Version::V1_2_0);
            let n = cut.index(raw.len() + 1);
            let _ = Message::decode(raw.slice(..n));
        }
    }
}
