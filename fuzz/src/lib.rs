//! The checks the fuzz targets run, shared with the plain tests in
//! `tests/` so that they also run without cargo-fuzz and nightly.

use bytes::Bytes;
use tessera_bitswap_ec::bitswap::{Message, Version};

/// Decodes `data` as one Bitswap message. Whatever the input, decoding must
/// not panic; what decodes must survive a re-encoding unchanged, and every
/// payload must be nameable (or refused) without panicking.
pub fn bitswap_message(data: &[u8]) {
    let Ok(msg) = Message::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = Message::decode(msg.to_bytes(Version::V1_2_0)).expect("re-encoded message decodes");
    assert_eq!(again.wantlist, msg.wantlist);
    assert_eq!(again.full, msg.full);
    assert_eq!(again.blocks, msg.blocks);
    assert_eq!(again.payload, msg.payload);
    assert_eq!(again.presences, msg.presences);
    assert_eq!(again.pending_bytes, msg.pending_bytes);
    assert_eq!(msg.to_bytes(Version::V1_2_0).len(), msg.encoded_len());
    for v in [Version::V1_0_0, Version::V1_1_0] {
        let old = Message::decode(msg.to_bytes(v)).expect("older encodings decode");
        assert!(old.presences.is_empty());
        assert!(old.to_bytes(v).len() <= msg.encoded_len());
    }
    for p in &msg.payload {
        let _ = p.prefix.cid_for(&p.data);
    }
}
