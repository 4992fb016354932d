//! The links of a block, by codec: what `refs`, `pin add` and `dag export`
//! follow.

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use tessera_blockstore::{DAG_CBOR, DAG_PB, RAW};

use super::dag_pb::{DagPbError, PbNode};

/// Why the links of a block could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinksError {
    /// The block claims to be dag-pb but is not.
    #[error("block {cid} is not valid dag-pb: {source}")]
    DagPb {
        /// The block.
        cid: Cid,
        /// What is wrong with it.
        source: DagPbError,
    },
    /// The block claims to be dag-cbor but is not.
    #[error("block {cid} is not valid dag-cbor: {reason}")]
    DagCbor {
        /// The block.
        cid: Cid,
        /// What the decoder said.
        reason: String,
    },
    /// A codec whose links tessera cannot read.
    #[error(
        "block {cid} uses codec 0x{codec:x}, whose links tessera cannot follow; only dag-pb, dag-cbor and raw DAGs can be walked"
    )]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its multicodec.
        codec: u64,
    },
}

/// Lists the CIDs a block links to, in the order the block holds them.
///
/// `data` must be the bytes of `cid` (the codec comes from the CID).
pub fn links(cid: &Cid, data: &Bytes) -> Result<Vec<Cid>, LinksError> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => PbNode::decode(data)
            .map(|node| node.links.into_iter().map(|l| l.cid).collect())
            .map_err(|source| LinksError::DagPb { cid: *cid, source }),
        DAG_CBOR => {
            let value: Ipld =
                serde_ipld_dagcbor::from_slice(data).map_err(|e| LinksError::DagCbor {
                    cid: *cid,
                    reason: e.to_string(),
                })?;
            Ok(cbor_links(value))
        }
        codec => Err(LinksError::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// Collects tag-42 links depth-first, without recursion: the decoder bounds
/// nesting, but an explicit stack keeps this safe whatever that bound is.
fn cbor_links(root: Ipld) -> Vec<Cid> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(value) = stack.pop() {
        match value {
            Ipld::Link(cid) => out.push(cid),
            Ipld::List(items) => stack.extend(items.into_iter().rev()),
            Ipld::Map(map) => stack.extend(map.into_values().rev()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tessera_blockstore::Block;

    use super::*;
    use crate::ipld::dag_pb::PbLink;

    #[test]
    fn raw_has_no_links() {
        let b = Block::from_data_v1(RAW, Bytes::from_static(b"leaf"));
        assert_eq!(links(b.cid(), b.data()).unwrap(), vec![]);
    }

    #[test]
    fn dag_pb_links_in_order() {
        let a = *Block::from_data_v1(RAW, Bytes::from_static(b"a")).cid();
        let b = *Block::from_data_v1(RAW, Bytes::from_static(b"b")).cid();
        let node = PbNode {
            links: [b, a]
                .into_iter()
                .map(|cid| PbLink {
                    cid,
                    name: None,
                    tsize: None,
                })
                .collect(),
            data: None,
        };
        let block = Block::from_data_v1(DAG_PB, node.encode());
        assert_eq!(links(block.cid(), block.data()).unwrap(), vec![b, a]);
    }

    #[test]
    fn dag_cbor_links_are_found_at_any_depth() {
        let a = *Block::from_data_v1(RAW, Bytes::from_static(b"a")).cid();
        let b = *Block::from_data_v1(RAW, Bytes::from_static(b"b")).cid();
        let mut inner = BTreeMap::new();
        inner.insert(
            "deep".to_owned(),
            Ipld::List(vec![Ipld::Integer(1), Ipld::Link(b)]),
        );
        let mut map = BTreeMap::new();
        map.insert("a".to_owned(), Ipld::Link(a));
        map.insert("b".to_owned(), Ipld::Map(inner));
        let bytes = serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap();
        let block = Block::from_data_v1(DAG_CBOR, Bytes::from(bytes));
        assert_eq!(links(block.cid(), block.data()).unwrap(), vec![a, b]);
    }

    #[test]
    fn garbage_and_unknown_codecs_are_errors() {
        let cbor = Block::from_data_v1(DAG_CBOR, Bytes::from_static(&[0xff, 0x00]));
        assert!(matches!(
            links(cbor.cid(), cbor.data()),
            Err(LinksError::DagCbor { .. })
        ));
        let pb = Block::from_data_v1(DAG_PB, Bytes::from_static(&[0x1a]));
        assert!(matches!(
            links(pb.cid(), pb.data()),
            Err(LinksError::DagPb { .. })
        ));
        let json = Block::from_data_v1(0x0129, Bytes::from_static(b"{}"));
        assert!(matches!(
            links(json.cid(), json.data()),
            Err(LinksError::UnsupportedCodec { codec: 0x0129, .. })
        ));
    }
}
