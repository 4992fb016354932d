//! CAR (content-addressed archive) files: `dag export`, `dag import` and the
//! gateway's `application/vnd.ipld.car`.
//!
//! A CARv1 is a varint-prefixed DAG-CBOR header `{roots, version: 1}`
//! followed by sections `varint(len) || CID bytes || block bytes`
//! ([spec](https://ipld.io/specs/transport/car/carv1/)). The reader also
//! takes a CARv2 (a fixed pragma and a 40-byte header wrapped around a CARv1
//! payload, as Kubo's `dag import` does) and ignores its index.
//!
//! Both sides stream: the writer emits a section per call, the reader parses
//! one section per call and keeps at most one block in memory. The reader is
//! synchronous and hashes every block: from async code run it inside
//! `spawn_blocking` over `tokio_util::io::SyncIoBridge`.

use std::io::{self, BufReader, Read, Write};

use bytes::Bytes;
use cid::Cid;
use serde::{Deserialize, Serialize};
use tessera_blockstore::{Block, VerifyError};

use super::protobuf;

/// Longest CID the reader accepts in a section (CIDv1 with a 64-byte digest
/// and long varints fits well within this).
const MAX_CID_LEN: u64 = 128;

/// Bounds that keep a hostile CAR from making the reader allocate without
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLimits {
    /// Largest block accepted, in bytes. Defaults to 2 MiB, Bitswap's limit:
    /// a bigger block could not be served to other peers anyway.
    pub max_block_size: usize,
    /// Largest header accepted, in bytes. Defaults to 1 MiB (about 28 000
    /// roots).
    pub max_header_size: usize,
}

impl Default for CarLimits {
    fn default() -> Self {
        Self {
            max_block_size: 2 << 20,
            max_header_size: 1 << 20,
        }
    }
}

/// Why a CAR could not be read. Offsets count bytes from the start of the
/// input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// Reading the input failed.
    #[error("reading CAR at byte {offset}: {source}")]
    Io {
        /// Where reading failed.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// The input ended inside the header or a section.
    #[error("CAR truncated at byte {offset}: the file is incomplete")]
    Truncated {
        /// Where more bytes were needed.
        offset: u64,
    },
    /// A header over [`CarLimits::max_header_size`].
    #[error("CAR header of {size} bytes exceeds the {limit}-byte limit")]
    HeaderTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The header is not the DAG-CBOR map the spec describes.
    #[error("invalid CAR header: {reason}")]
    BadHeader {
        /// What is wrong.
        reason: String,
    },
    /// A CAR version other than 1 and 2.
    #[error("CAR version {version} is not supported; use CARv1 or CARv2")]
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
    /// A section whose varint length is malformed.
    #[error("invalid section length at byte {offset}")]
    BadLength {
        /// Offset of the section.
        offset: u64,
    },
    /// A block over [`CarLimits::max_block_size`].
    #[error("section at byte {offset} is {size} bytes, over the {limit}-byte block limit")]
    BlockTooLarge {
        /// Offset of the section.
        offset: u64,
        /// Size of the section (CID and block), or of the block.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// A section that does not start with a valid CID.
    #[error("invalid CID in section at byte {offset}")]
    BadCid {
        /// Offset of the section.
        offset: u64,
    },
    /// A block whose bytes do not hash to its CID.
    #[error("block {cid} at byte {offset} does not match its CID: the CAR is corrupt")]
    Corrupt {
        /// The CID the section claims.
        cid: Cid,
        /// Offset of the section.
        offset: u64,
    },
    /// A block hashed with a function tessera cannot compute.
    #[error("block {cid} at byte {offset} uses multihash 0x{code:x}, which tessera cannot verify")]
    UnsupportedHash {
        /// The CID the section claims.
        cid: Cid,
        /// Offset of the section.
        offset: u64,
        /// The multihash code.
        code: u64,
    },
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    // Field order is DAG-CBOR's canonical key order (shorter keys first).
    roots: &'a [Cid],
    version: u64,
}

#[derive(Deserialize)]
struct HeaderIn {
    version: u64,
    #[serde(default)]
    roots: Option<Vec<Cid>>,
}

/// The CARv1 header, length prefix included: the first bytes of a CAR.
pub fn header_bytes(roots: &[Cid]) -> Vec<u8> {
    let cbor = serde_ipld_dagcbor::to_vec(&HeaderOut { roots, version: 1 })
        // Serialising a slice of CIDs and an integer cannot fail.
        .unwrap_or_default();
    let mut out = Vec::with_capacity(cbor.len() + 2);
    protobuf::put_varint(&mut out, cbor.len() as u64);
    out.extend_from_slice(&cbor);
    out
}

/// What goes before a block's bytes in its section: the length prefix and
/// the CID. Lets async writers send the block itself without copying it.
pub fn section_prefix(cid: &Cid, data_len: usize) -> Vec<u8> {
    let cid_len = cid.encoded_len();
    let mut out = Vec::with_capacity(cid_len + 10);
    protobuf::put_varint(&mut out, (cid_len + data_len) as u64);
    super::dag_pb::put_cid(&mut out, cid);
    out
}

/// Writes a CARv1, one block at a time.
#[derive(Debug)]
pub struct CarWriter<W: Write> {
    out: W,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header.
    pub fn new(mut out: W, roots: &[Cid]) -> io::Result<Self> {
        out.write_all(&header_bytes(roots))?;
        Ok(Self { out })
    }

    /// Appends a block. The caller is trusted to pass bytes that match the CID.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        self.out.write_all(&section_prefix(cid, data.len()))?;
        self.out.write_all(data)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a CARv1 or CARv2, verifying every block against its CID.
#[derive(Debug)]
pub struct CarReader<R: Read> {
    input: BufReader<R>,
    roots: Vec<Cid>,
    limits: CarLimits,
    offset: u64,
    /// Where the payload ends (CARv2 data size); `None` reads to the end.
    end: Option<u64>,
    done: bool,
}

impl<R: Read> CarReader<R> {
    /// Reads the header with the default [`CarLimits`].
    pub fn new(input: R) -> Result<Self, CarError> {
        Self::with_limits(input, CarLimits::default())
    }

    /// Reads the header.
    pub fn with_limits(input: R, limits: CarLimits) -> Result<Self, CarError> {
        let mut reader = Self {
            input: BufReader::with_capacity(64 << 10, input),
            roots: Vec::new(),
            limits,
            offset: 0,
            end: None,
            done: false,
        };
        let header = reader.read_header()?;
        match header.version {
            1 => {
                reader.roots = header.roots.ok_or_else(|| CarError::BadHeader {
                    reason: "CARv1 header has no roots".into(),
                })?;
            }
            2 => reader.enter_v2_payload()?,
            version => return Err(CarError::UnsupportedVersion { version }),
        }
        Ok(reader)
    }

    /// The roots the header names.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    fn read_header(&mut self) -> Result<HeaderIn, CarError> {
        let at = self.offset;
        let len = self
            .read_varint()?
            .ok_or(CarError::Truncated { offset: at })?;
        if len > self.limits.max_header_size as u64 {
            return Err(CarError::HeaderTooLarge {
                size: len,
                limit: self.limits.max_header_size,
            });
        }
        let bytes = self.read_exact_vec(len as usize)?;
        serde_ipld_dagcbor::from_slice(&bytes).map_err(|e| CarError::BadHeader {
            reason: e.to_string(),
        })
    }

    /// Skips a CARv2's fixed header and padding, then reads the CARv1 header
    /// of its payload.
    fn enter_v2_payload(&mut self) -> Result<(), CarError> {
        let fixed = self.read_exact_vec(40)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&fixed[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let (data_offset, data_size) = (word(16), word(24));
        let skip = data_offset
            .checked_sub(self.offset)
            .ok_or_else(|| CarError::BadHeader {
                reason: format!("CARv2 payload offset {data_offset} points inside its header"),
            })?;
        let at = self.offset;
        let skipped = io::copy(&mut (&mut self.input).take(skip), &mut io::sink())
            .map_err(|source| CarError::Io { offset: at, source })?;
        self.offset += skipped;
        if skipped < skip {
            return Err(CarError::Truncated {
                offset: self.offset,
            });
        }
        self.end = Some(data_offset.saturating_add(data_size));
        let inner = self.read_header()?;
        if inner.version != 1 {
            return Err(CarError::BadHeader {
                reason: format!("CARv2 payload is a version {} CAR, not 1", inner.version),
            });
        }
        self.roots = inner.roots.ok_or_else(|| CarError::BadHeader {
            reason: "CARv2 payload header has no roots".into(),
        })?;
        Ok(())
    }

    /// Reads, checks and returns the next block; `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<Block>, CarError> {
        if self.done || self.end.is_some_and(|end| self.offset >= end) {
            return Ok(None);
        }
        let offset = self.offset;
        let Some(len) = self.read_varint()? else {
            self.done = true;
            return Ok(None);
        };
        if len == 0 {
            return Err(CarError::BadCid { offset });
        }
        let limit = self.limits.max_block_size as u64 + MAX_CID_LEN;
        if len > limit {
            return Err(CarError::BlockTooLarge {
                offset,
                size: len,
                limit: self.limits.max_block_size,
            });
        }
        let section = Bytes::from(self.read_exact_vec(len as usize)?);
        let mut rest: &[u8] = &section;
        let cid = Cid::read_bytes(&mut rest).map_err(|_| CarError::BadCid { offset })?;
        let data = section.slice(section.len() - rest.len()..);
        if data.len() > self.limits.max_block_size {
            return Err(CarError::BlockTooLarge {
                offset,
                size: data.len() as u64,
                limit: self.limits.max_block_size,
            });
        }
        match Block::verified(cid, data) {
            Ok(block) => Ok(Some(block)),
            Err(VerifyError::UnsupportedHash { code, .. }) => {
                Err(CarError::UnsupportedHash { cid, offset, code })
            }
            Err(_) => Err(CarError::Corrupt { cid, offset }),
        }
    }

    /// Reads a varint; `None` if the input ends before its first byte.
    fn read_varint(&mut self) -> Result<Option<u64>, CarError> {
        let start = self.offset;
        let mut value = 0u64;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            let n = loop {
                match self.input.read(&mut byte) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(CarError::Io {
                            offset: self.offset,
                            source,
                        });
                    }
                }
            };
            if n == 0 {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(CarError::Truncated {
                        offset: self.offset,
                    })
                };
            }
            self.offset += 1;
            let b = byte[0];
            if i == 9 && b > 1 {
                return Err(CarError::BadLength { offset: start });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(CarError::BadLength { offset: start })
    }

    fn read_exact_vec(&mut self, len: usize) -> Result<Vec<u8>, CarError> {
        let mut buf = Vec::with_capacity(len);
        let at = self.offset;
        let n = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|source| CarError::Io { offset: at, source })?;
        self.offset += n as u64;
        if n < len {
            return Err(CarError::Truncated {
                offset: self.offset,
            });
        }
        Ok(buf)
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_block() {
            Ok(block) => block.map(Ok),
            Err(e) => {
                // One error ends the archive: the framing is lost after it.
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tessera_blockstore::{DAG_CBOR, RAW};

    use super::*;

    fn blocks() -> Vec<Block> {
        (0..5u8)
            .map(|i| Block::from_data_v1(RAW, Bytes::from(vec![i; 1000 * usize::from(i)])))
            .collect()
    }

    fn car_of(blocks: &[Block]) -> Vec<u8> {
        let mut w = CarWriter::new(Vec::new(), &[*blocks[0].cid()]).unwrap();
        for b in blocks {
            w.write_block(b.cid(), b.data()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn header_is_the_canonical_dag_cbor_map() {
        let cid: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            .parse()
            .unwrap();
        let h = header_bytes(&[cid]);
        // varint length, map(2), "roots", array(1), tag 42, bytes(37), 0x00 prefix.
        assert_eq!(h[0] as usize, h.len() - 1);
        assert_eq!(&h[1..8], &[0xa2, 0x65, b'r', b'o', b'o', b't', b's']);
        assert_eq!(&h[8..13], &[0x81, 0xd8, 0x2a, 0x58, 37]);
        assert_eq!(h[13], 0x00);
        assert_eq!(&h[14..50], &cid.to_bytes()[..]);
        assert_eq!(
            &h[50..],
            &[0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01]
        );
    }

    #[test]
    fn round_trip_keeps_roots_blocks_and_order() {
        let bs = blocks();
        let car = car_of(&bs);
        let mut r = CarReader::new(&car[..]).unwrap();
        assert_eq!(r.roots(), &[*bs[0].cid()]);
        let back: Vec<Block> = r.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(back, bs);
    }

    #[test]
    fn flipped_byte_names_the_block_and_offset() {
        let bs = blocks();
        let mut car = car_of(&bs);
        let last = car.len() - 1;
        car[last] ^= 1;
        let header_len = header_bytes(&[*bs[0].cid()]).len() as u64;
        let sections: u64 = bs[..4]
            .iter()
            .map(|b| section_prefix(b.cid(), b.data().len()).len() as u64 + b.data().len() as u64)
            .sum();
        let results: Vec<_> = CarReader::new(&car[..]).unwrap().collect();
        assert_eq!(results.len(), 5);
        match &results[4] {
            Err(CarError::Corrupt { cid, offset }) => {
                assert_eq!(cid, bs[4].cid());
                assert_eq!(*offset, header_len + sections);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn truncation_and_oversize_are_errors() {
        let bs = blocks();
        let car = car_of(&bs);
        let cut = &car[..car.len() - 10];
        let results: Vec<_> = CarReader::new(cut).unwrap().collect();
        assert!(matches!(
            results.last(),
            Some(Err(CarError::Truncated { .. }))
        ));

        let limits = CarLimits {
            max_block_size: 3000,
            ..CarLimits::default()
        };
        let results: Vec<_> = CarReader::with_limits(&car[..], limits).unwrap().collect();
        assert!(matches!(
            results.last(),
            Some(Err(CarError::BlockTooLarge { size: 4036, .. }))
        ));

        // A header that claims to be 16 MiB.
        let mut huge = Vec::new();
        protobuf::put_varint(&mut huge, 16 << 20);
        assert!(matches!(
            CarReader::new(&huge[..]),
            Err(CarError::HeaderTooLarge { .. })
        ));
    }

    #[test]
    fn garbage_headers_are_errors() {
        for bytes in [
            &[][..],
            &[0x01, 0xff],
            &[0x02, 0xa1, 0x00],
            &[0x05, 0xa1, 0x67],
        ] {
            assert!(CarReader::new(bytes).is_err(), "{bytes:?}");
        }
        let v3 = serde_ipld_dagcbor::to_vec(&HeaderOut {
            roots: &[],
            version: 3,
        })
        .unwrap();
        let mut car = vec![v3.len() as u8];
        car.extend_from_slice(&v3);
        assert!(matches!(
            CarReader::new(&car[..]),
            Err(CarError::UnsupportedVersion { version: 3 })
        ));
    }

    #[test]
    fn carv2_payload_is_read_and_index_ignored() {
        let bs = blocks();
        let v1 = car_of(&bs);
        let pragma = [
            0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02,
        ];
        let data_offset = (pragma.len() + 40 + 7) as u64; // 7 bytes of padding
        let mut car = pragma.to_vec();
        car.extend_from_slice(&[0u8; 16]);
        car.extend_from_slice(&data_offset.to_le_bytes());
        car.extend_from_slice(&(v1.len() as u64).to_le_bytes());
        car.extend_from_slice(&0u64.to_le_bytes());
        car.extend_from_slice(&[0u8; 7]);
        car.extend_from_slice(&v1);
        car.extend_from_slice(b"an index that is not CAR sections");
        let mut r = CarReader::new(&car[..]).unwrap();
        assert_eq!(r.roots(), &[*bs[0].cid()]);
        let back: Vec<Block> = r.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(back, bs);
    }

    #[test]
    fn dag_cbor_blocks_pass_through() {
        let b = Block::from_data_v1(DAG_CBOR, Bytes::from_static(&[0xa0]));
        let car = car_of(std::slice::from_ref(&b));
        let back: Vec<Block> = CarReader::new(&car[..])
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(back, vec![b]);
    }
}
