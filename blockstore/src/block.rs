//! A block: bytes and the CID that names them.

use bytes::Bytes;
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

/// Multicodec of raw binary blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb (UnixFS) blocks.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of dag-cbor blocks.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of sha2-256, the hash IPFS uses by default.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity "hash": the digest is the data itself.
pub const IDENTITY: u64 = 0x00;

/// Why a block's bytes and its CID do not belong together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bytes hash to something else than the CID says.
    #[error(
        "block bytes do not match CID {cid}: the block is corrupt or was sent under the wrong name"
    )]
    Mismatch {
        /// The CID the block claimed.
        cid: Cid,
    },
    /// The CID uses a hash function this build cannot compute.
    #[error("CID {cid} uses multihash code 0x{code:x}, which tessera cannot verify; use sha2-256")]
    UnsupportedHash {
        /// The CID the block claimed.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
}

/// An immutable block. Cloning is cheap: the bytes are reference counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Pairs bytes with a CID that the caller has already checked or computed.
    ///
    /// Use [`Block::verified`] for anything that came from outside the process.
    pub fn new_unchecked(cid: Cid, data: Bytes) -> Self {
        Self { cid, data }
    }

    /// Pairs bytes with a CID after checking that the bytes hash to it.
    pub fn verified(cid: Cid, data: Bytes) -> Result<Self, VerifyError> {
        verify(&cid, &data)?;
        Ok(Self { cid, data })
    }

    /// Hashes `data` with sha2-256 and names it with a CIDv1 of `codec`.
    pub fn from_data_v1(codec: u64, data: Bytes) -> Self {
        let cid = Cid::new_v1(codec, Code::Sha2_256.digest(&data));
        Self { cid, data }
    }

    /// Hashes dag-pb `data` with sha2-256 and names it with a CIDv0.
    pub fn from_dag_pb_v0(data: Bytes) -> Self {
        let mh = Code::Sha2_256.digest(&data);
        // A sha2-256 multihash is always a valid CIDv0.
        let cid = Cid::new_v0(mh).unwrap_or_else(|_| Cid::new_v1(DAG_PB, mh));
        Self { cid, data }
    }

    /// The block's name.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Splits the block into its name and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

/// Checks that `data` hashes to `cid`'s multihash.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), VerifyError> {
    let mh = cid.hash();
    let code = mh.code();
    if code == IDENTITY {
        // The identity "hash" carries the data itself.
        return if mh.digest() == data {
            Ok(())
        } else {
            Err(VerifyError::Mismatch { cid: *cid })
        };
    }
    let computed = match Code::try_from(code) {
        Ok(c) => c.digest(data),
        Err(_) => {
            return Err(VerifyError::UnsupportedHash { cid: *cid, code });
        }
    };
    if computed.digest() == mh.digest() && computed.size() == mh.size() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch { cid: *cid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_accepts_matching_and_refuses_flipped_bytes() {
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"hello"));
        assert!(Block::verified(*b.cid(), b.data().clone()).is_ok());
        let err = Block::verified(*b.cid(), Bytes::from_static(b"hellO")).unwrap_err();
        assert_eq!(err, VerifyError::Mismatch { cid: *b.cid() });
    }

    #[test]
    fn v0_of_empty_unixfs_file_is_kubos() {
        // `ipfs add` of an empty file: dag-pb node with Data = {Type: File}.
        let b = Block::from_dag_pb_v0(Bytes::from_static(&[0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]));
        assert_eq!(
            b.cid().to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
    }
}
