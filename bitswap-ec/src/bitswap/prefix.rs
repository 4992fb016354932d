//! The CID prefix that names a 1.1.0+ payload: everything in a CID but the
//! digest, which the receiver computes from the bytes. Hashing the bytes is
//! therefore both how a received block is named and how it is verified.

use cid::{Cid, Version as CidVersion};
use multihash_codetable::{Code, MultihashDigest};
use tessera_blockstore::{DAG_PB, IDENTITY, SHA2_256};

use super::message::DecodeError;
use super::proto;

/// Version, codec, hash function and digest length of a CID, as go-cid's
/// `Prefix.Bytes()` writes them: four varints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// CID version.
    pub version: CidVersion,
    /// Multicodec of the content.
    pub codec: u64,
    /// Multihash code.
    pub mh_code: u64,
    /// Digest length; `None` is go's `-1`, the hash function's full length.
    pub mh_len: Option<u8>,
}

/// Why a payload cannot be named, so it is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The hash function is not one tessera can compute.
    #[error(
        "payload uses multihash code 0x{0:x}, which tessera cannot verify; only sha2-256 content is fetched"
    )]
    UnsupportedHash(u64),
    /// The digest length is longer than the hash function gives.
    #[error(
        "payload prefix asks for a {len}-byte digest of multihash 0x{code:x}, longer than the hash"
    )]
    DigestTooLong {
        /// Multihash code.
        code: u64,
        /// Requested length.
        len: u8,
    },
    /// An identity "hash" holds the data, which must then fit in a CID.
    #[error("identity-hashed payload of {0} bytes does not fit in a CID")]
    IdentityTooLong(usize),
}

/// go-cid writes a length of -1 ("default") as this varint value.
const DEFAULT_LEN: u64 = u64::MAX;

impl Prefix {
    /// The prefix of `cid`.
    pub fn of(cid: &Cid) -> Self {
        Self {
            version: cid.version(),
            codec: cid.codec(),
            mh_code: cid.hash().code(),
            mh_len: Some(cid.hash().size()),
        }
    }

    /// Parses four varints.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut pos = 0;
        let mut next = || -> Result<u64, DecodeError> {
            let (v, n) = proto::read_varint(&b[pos..])
                .map_err(|_| DecodeError::InvalidPrefix("bad varint"))?;
            pos += n;
            Ok(v)
        };
        let version = match next()? {
            0 => CidVersion::V0,
            1 => CidVersion::V1,
            _ => return Err(DecodeError::InvalidPrefix("unknown CID version")),
        };
        let codec = next()?;
        let mh_code = next()?;
        let mh_len = match next()? {
            DEFAULT_LEN => None,
            n => Some(
                u8::try_from(n)
                    .map_err(|_| DecodeError::InvalidPrefix("digest length over 255"))?,
            ),
        };
        if version == CidVersion::V0
            && (codec != DAG_PB || mh_code != SHA2_256 || mh_len.is_some_and(|l| l != 32))
        {
            return Err(DecodeError::InvalidPrefix(
                "CIDv0 must be dag-pb with a 32-byte sha2-256",
            ));
        }
        Ok(Self {
            version,
            codec,
            mh_code,
            mh_len,
        })
    }

    /// The four varints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = bytes::BytesMut::with_capacity(self.encoded_len());
        proto::put_varint(&mut b, self.version_number());
        proto::put_varint(&mut b, self.codec);
        proto::put_varint(&mut b, self.mh_code);
        proto::put_varint(&mut b, self.len_wire());
        b.to_vec()
    }

    /// Length of [`Prefix::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        proto::varint_len(self.version_number())
            + proto::varint_len(self.codec)
            + proto::varint_len(self.mh_code)
            + proto::varint_len(self.len_wire())
    }

    fn version_number(&self) -> u64 {
        match self.version {
            CidVersion::V0 => 0,
            CidVersion::V1 => 1,
        }
    }

    fn len_wire(&self) -> u64 {
        self.mh_len.map_or(DEFAULT_LEN, u64::from)
    }

    /// Hashes `data` and names it. CPU-bound: call off the async runtime.
    pub fn cid_for(&self, data: &[u8]) -> Result<Cid, PrefixError> {
        let mh = if self.mh_code == IDENTITY {
            if data.len() > 64 || self.mh_len.is_some_and(|l| usize::from(l) != data.len()) {
                return Err(PrefixError::IdentityTooLong(data.len()));
            }
            cid::multihash::Multihash::wrap(IDENTITY, data)
                .map_err(|_| PrefixError::IdentityTooLong(data.len()))?
        } else {
            let code = Code::try_from(self.mh_code)
                .map_err(|_| PrefixError::UnsupportedHash(self.mh_code))?;
            let full = code.digest(data);
            match self.mh_len {
                Some(len) if len > full.size() => {
                    return Err(PrefixError::DigestTooLong {
                        code: self.mh_code,
                        len,
                    });
                }
                Some(len) if len < full.size() => full.truncate(len),
                _ => full,
            }
        };
        // V0 was checked to be dag-pb sha2-256 at parse time; a hand-built
        // prefix that is not falls back to the equivalent CIDv1.
        Ok(Cid::new(self.version, self.codec, mh).unwrap_or_else(|_| Cid::new_v1(self.codec, mh)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tessera_blockstore::{Block, RAW};

    use super::*;

    #[test]
    fn prefix_names_v0_and_v1_blocks() {
        for b in [
            Block::from_dag_pb_v0(Bytes::from_static(b"\x0a\x02\x08\x02")),
            Block::from_data_v1(RAW, Bytes::from_static(b"hello")),
        ] {
            let p = Prefix::of(b.cid());
            let parsed = Prefix::from_bytes(&p.to_bytes()).unwrap();
            assert_eq!(parsed, p);
            assert_eq!(p.to_bytes().len(), p.encoded_len());
            assert_eq!(parsed.cid_for(b.data()).unwrap(), *b.cid());
        }
    }

    #[test]
    fn go_default_length_is_the_full_digest() {
        // go-cid writes MhLength -1 as a 10-byte varint of all ones.
        let raw = [
            1u8, 0x55, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let p = Prefix::from_bytes(&raw).unwrap();
        assert_eq!(p.mh_len, None);
        assert_eq!(p.to_bytes(), raw);
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"x"));
        assert_eq!(p.cid_for(b"x").unwrap(), *b.cid());
    }

    #[test]
    fn other_bytes_give_another_cid() {
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"right"));
        assert_ne!(Prefix::of(b.cid()).cid_for(b"wrong").unwrap(), *b.cid());
    }

    #[test]
    fn refuses_what_it_cannot_verify() {
        let blake3 = Prefix {
            version: CidVersion::V1,
            codec: RAW,
            mh_code: 0x1e,
            mh_len: Some(32),
        };
        assert_eq!(
            blake3.cid_for(b"x"),
            Err(PrefixError::UnsupportedHash(0x1e))
        );
        let long = Prefix {
            mh_len: Some(33),
            mh_code: SHA2_256,
            ..blake3
        };
        assert!(matches!(
            long.cid_for(b"x"),
            Err(PrefixError::DigestTooLong { .. })
        ));
        assert!(
            Prefix::from_bytes(&[0, 0x55, 0x12, 32]).is_err(),
            "v0 must be dag-pb"
        );
        assert!(Prefix::from_bytes(&[2, 0x55, 0x12, 32]).is_err());
        assert!(Prefix::from_bytes(&[1, 0x55]).is_err());
    }

    #[test]
    fn identity_prefix_carries_the_data() {
        let p = Prefix {
            version: CidVersion::V1,
            codec: RAW,
            mh_code: IDENTITY,
            mh_len: None,
        };
        let cid = p.cid_for(b"abc").unwrap();
        assert_eq!(cid.hash().digest(), b"abc");
        assert!(p.cid_for(&[0u8; 65]).is_err());
    }
}
