//! dag-pb, the codec of UnixFS: a `PBNode` of links and opaque data.
//!
//! Encoding follows the canonical form of the [dag-pb spec] that go-merkledag
//! and `@ipld/dag-pb` emit: every link before the data (field 2 before field 1,
//! against protobuf's usual field order), and inside a link Hash, Name, Tsize.
//! CIDs of everything tessera imports depend on those bytes being identical.
//!
//! Decoding is as strict as the spec where it matters (no unknown fields, no
//! repeated singular fields, valid CIDs and UTF-8 names) but accepts fields in
//! any order, and never panics: blocks come from the network and are fuzzed.
//!
//! [dag-pb spec]: https://ipld.io/specs/codecs/dag-pb/spec/

use bytes::Bytes;
use cid::Cid;

use super::protobuf::{self, LEN, Reader, VARINT, WireError};

/// A link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// The CID the link points to.
    pub cid: Cid,
    /// The link's name: the entry name in a directory, empty in files.
    /// Kubo always writes it, even empty, so `Some("")` and `None` encode
    /// differently.
    pub name: Option<String>,
    /// Cumulative size of the linked DAG (its blocks' encoded sizes summed).
    pub tsize: Option<u64>,
}

/// A decoded dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// Links, in encoded order (UnixFS: file order, or sorted by name).
    pub links: Vec<PbLink>,
    /// The opaque data field (for UnixFS, an encoded `unixfs::Data`).
    pub data: Option<Bytes>,
}

/// Why bytes are not a valid dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DagPbError {
    /// The protobuf framing is broken.
    #[error("malformed dag-pb protobuf: {0}")]
    Wire(#[from] WireError),
    /// A field number or wire type that dag-pb does not define.
    #[error("dag-pb {message} has an unexpected field {field} (wire type {wire_type})")]
    UnexpectedField {
        /// `PBNode` or `PBLink`.
        message: &'static str,
        /// The field number.
        field: u64,
        /// Its wire type.
        wire_type: u8,
    },
    /// A singular field appears twice.
    #[error("dag-pb {message} repeats its {field} field")]
    DuplicateField {
        /// `PBNode` or `PBLink`.
        message: &'static str,
        /// The field name.
        field: &'static str,
    },
    /// A link without its required Hash.
    #[error("dag-pb link {index} has no Hash")]
    MissingHash {
        /// Index of the link in the node.
        index: usize,
    },
    /// A link whose Hash is not a CID.
    #[error("dag-pb link {index} has an invalid CID")]
    BadCid {
        /// Index of the link in the node.
        index: usize,
    },
    /// A link name that is not UTF-8.
    #[error("dag-pb link {index} has a name that is not UTF-8")]
    BadName {
        /// Index of the link in the node.
        index: usize,
    },
}

impl PbNode {
    /// Decodes a block. Data comes back as a slice of `block`, without copying.
    pub fn decode(block: &Bytes) -> Result<Self, DagPbError> {
        let mut r = Reader::new(block);
        let mut node = PbNode::default();
        while !r.is_empty() {
            match r.key()? {
                (1, LEN) => {
                    let range = r.len_delimited()?;
                    if node.data.is_some() {
                        return Err(DagPbError::DuplicateField {
                            message: "PBNode",
                            field: "Data",
                        });
                    }
                    node.data = Some(block.slice(range));
                }
                (2, LEN) => {
                    let range = r.len_delimited()?;
                    let index = node.links.len();
                    node.links.push(decode_link(&block[range], index)?);
                }
                (field, wire_type) => {
                    return Err(DagPbError::UnexpectedField {
                        message: "PBNode",
                        field,
                        wire_type,
                    });
                }
            }
        }
        Ok(node)
    }

    /// Size of the canonical encoding, in bytes.
    pub fn encoded_len(&self) -> usize {
        let links: usize = self
            .links
            .iter()
            .map(|l| protobuf::bytes_field_len(link_len(l)))
            .sum();
        links
            + self
                .data
                .as_ref()
                .map_or(0, |d| protobuf::bytes_field_len(d.len()))
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        for link in &self.links {
            protobuf::put_key(out, 2, LEN);
            protobuf::put_varint(out, link_len(link) as u64);
            encode_link(link, out);
        }
        if let Some(data) = &self.data {
            protobuf::put_bytes_field(out, 1, data);
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        Bytes::from(out)
    }
}

fn link_len(link: &PbLink) -> usize {
    protobuf::bytes_field_len(link.cid.encoded_len())
        + link
            .name
            .as_ref()
            .map_or(0, |n| protobuf::bytes_field_len(n.len()))
        + link.tsize.map_or(0, |t| 1 + protobuf::varint_len(t))
}

fn encode_link(link: &PbLink, out: &mut Vec<u8>) {
    protobuf::put_key(out, 1, LEN);
    protobuf::put_varint(out, link.cid.encoded_len() as u64);
    put_cid(out, &link.cid);
    if let Some(name) = &link.name {
        protobuf::put_bytes_field(out, 2, name.as_bytes());
    }
    if let Some(tsize) = link.tsize {
        protobuf::put_varint_field(out, 3, tsize);
    }
}

/// Appends a CID's binary form.
pub(crate) fn put_cid(out: &mut Vec<u8>, cid: &Cid) {
    // Writing into a Vec cannot fail.
    let _written = cid.write_bytes(&mut *out);
}

/// Parses a CID that must fill `bytes` exactly.
pub(crate) fn cid_from_exact(bytes: &[u8]) -> Option<Cid> {
    let mut rest = bytes;
    let cid = Cid::read_bytes(&mut rest).ok()?;
    rest.is_empty().then_some(cid)
}

fn decode_link(buf: &[u8], index: usize) -> Result<PbLink, DagPbError> {
    let mut r = Reader::new(buf);
    let mut cid = None;
    let mut name = None;
    let mut tsize = None;
    let dup = |field| DagPbError::DuplicateField {
        message: "PBLink",
        field,
    };
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let range = r.len_delimited()?;
                if cid.is_some() {
                    return Err(dup("Hash"));
                }
                cid = Some(cid_from_exact(&buf[range]).ok_or(DagPbError::BadCid { index })?);
            }
            (2, LEN) => {
                let range = r.len_delimited()?;
                if name.is_some() {
                    return Err(dup("Name"));
                }
                let s =
                    std::str::from_utf8(&buf[range]).map_err(|_| DagPbError::BadName { index })?;
                name = Some(s.to_owned());
            }
            (3, VARINT) => {
                let v = r.varint()?;
                if tsize.is_some() {
                    return Err(dup("Tsize"));
                }
                tsize = Some(v);
            }
            (field, wire_type) => {
                return Err(DagPbError::UnexpectedField {
                    message: "PBLink",
                    field,
                    wire_type,
                });
            }
        }
    }
    Ok(PbLink {
        cid: cid.ok_or(DagPbError::MissingHash { index })?,
        name,
        tsize,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tessera_blockstore::{Block, DAG_PB, RAW};

    use super::*;

    fn raw_cid(data: &'static [u8]) -> Cid {
        *Block::from_data_v1(RAW, Bytes::from_static(data)).cid()
    }

    #[test]
    fn empty_directory_is_kubos() {
        // `ipfs object new unixfs-dir`: Data = {Type: Directory}, no links.
        let node = PbNode {
            links: vec![],
            data: Some(Bytes::from_static(&[0x08, 0x01])),
        };
        let block = Block::from_dag_pb_v0(node.encode());
        assert_eq!(
            block.cid().to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
    }

    #[test]
    fn links_are_written_before_data() {
        let node = PbNode {
            links: vec![PbLink {
                cid: raw_cid(b"a"),
                name: Some(String::new()),
                tsize: Some(1),
            }],
            data: Some(Bytes::from_static(b"d")),
        };
        let bytes = node.encode();
        assert_eq!(bytes[0], 0x12, "field 2 (Links) first");
        assert_eq!(bytes.len(), node.encoded_len());
        assert_eq!(&bytes[bytes.len() - 3..], &[0x0a, 0x01, b'd']);
        assert_eq!(PbNode::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn empty_name_and_absent_name_differ() {
        let with = PbLink {
            cid: raw_cid(b"a"),
            name: Some(String::new()),
            tsize: None,
        };
        let without = PbLink {
            name: None,
            ..with.clone()
        };
        let a = PbNode {
            links: vec![with],
            data: None,
        }
        .encode();
        let b = PbNode {
            links: vec![without],
            data: None,
        }
        .encode();
        assert_eq!(a.len(), b.len() + 2);
    }

    #[test]
    fn data_decodes_as_a_slice_of_the_block() {
        let node = PbNode {
            links: vec![],
            data: Some(Bytes::from_static(b"hello")),
        };
        let bytes = node.encode();
        let decoded = PbNode::decode(&bytes).unwrap();
        let data = decoded.data.unwrap();
        assert_eq!(data.as_ptr(), bytes[2..].as_ptr());
    }

    #[test]
    fn malformed_nodes_are_typed_errors() {
        let cid = raw_cid(b"a");
        let mut link = vec![];
        protobuf::put_bytes_field(&mut link, 1, &cid.to_bytes());
        let mut dup_hash = link.clone();
        dup_hash.extend_from_slice(&link);

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x0a, 0x00, 0x0a, 0x00], "duplicate data"),
            (vec![0x18, 0x01], "unknown field 3"),
            (vec![0x08, 0x01], "data as varint"),
            (
                {
                    let mut v = vec![];
                    protobuf::put_bytes_field(&mut v, 2, &[]);
                    v
                },
                "link without hash",
            ),
            (
                {
                    let mut v = vec![];
                    protobuf::put_bytes_field(&mut v, 2, &[0x0a, 0x02, 0x01, 0x55]);
                    v
                },
                "bad cid",
            ),
            (
                {
                    let mut v = vec![];
                    protobuf::put_bytes_field(&mut v, 2, &dup_hash);
                    v
                },
                "duplicate hash",
            ),
            (
                {
                    let mut l = link.clone();
                    protobuf::put_bytes_field(&mut l, 2, &[0xff]);
                    let mut v = vec![];
                    protobuf::put_bytes_field(&mut v, 2, &l);
                    v
                },
                "name not utf-8",
            ),
            (vec![0x12, 0x05, 0x0a], "truncated"),
        ];
        for (bytes, what) in cases {
            assert!(PbNode::decode(&Bytes::from(bytes)).is_err(), "{what}");
        }
    }

    #[test]
    fn cid_with_trailing_bytes_is_refused() {
        let mut bytes = raw_cid(b"a").to_bytes();
        bytes.push(0);
        assert!(cid_from_exact(&bytes).is_none());
        let v1 = Cid::new_v1(DAG_PB, *raw_cid(b"a").hash());
        assert_eq!(cid_from_exact(&v1.to_bytes()), Some(v1));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PbNode::decode(&Bytes::from(bytes));
        }

        #[test]
        fn encode_decode_round_trip(
            names in proptest::collection::vec(proptest::option::of("[a-z]{0,8}"), 0..8),
            tsize in proptest::option::of(any::<u64>()),
            data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        ) {
            let node = PbNode {
                links: names.into_iter().map(|name| PbLink { cid: raw_cid(b"x"), name, tsize }).collect(),
                data: data.map(Bytes::from),
            };
            let bytes = node.encode();
            prop_assert_eq!(bytes.len(), node.encoded_len());
            prop_assert_eq!(PbNode::decode(&bytes).unwrap(), node);
        }
    }
}
