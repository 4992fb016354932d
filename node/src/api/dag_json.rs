//! dag-json views of blocks, for `dag get` and `dag put`, following the IPLD data model: dag-pb
//! nodes as `{"Data": bytes, "Links": [{"Hash", "Name", "Tsize"}]}` as Kubo shows them.

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::ipld::{PbLink, PbNode};

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const DAG_CBOR: u64 = 0x71;
const DAG_JSON: u64 = 0x0129;
const JSON: u64 = 0x0200;

/// The block's content as IPLD.
pub(crate) fn decode(cid: &Cid, data: &Bytes) -> Result<Ipld, String> {
    match cid.codec() {
        RAW => Ok(Ipld::Bytes(data.to_vec())),
        DAG_CBOR => serde_ipld_dagcbor::from_slice(data)
            .map_err(|e| format!("block {cid} is not valid dag-cbor: {e}")),
        DAG_JSON | JSON => serde_ipld_dagjson::from_slice(data)
            .map_err(|e| format!("block {cid} is not valid dag-json: {e}")),
        DAG_PB => {
            let node = PbNode::decode(data)
                .map_err(|e| format!("block {cid} is not valid dag-pb: {e}"))?;
            Ok(pb_to_ipld(&node))
        }
        other => Err(format!(
            "block {cid} has codec 0x{other:x}, which dag get cannot decode"
        )),
    }
}

fn pb_to_ipld(node: &PbNode) -> Ipld {
    let mut map = BTreeMap::new();
    if let Some(d) = &node.data {
        map.insert("Data".to_string(), Ipld::Bytes(d.to_vec()));
    }
    let links = node
        .links
        .iter()
        .map(|l| {
            let mut m = BTreeMap::new();
            m.insert("Hash".to_string(), Ipld::Link(l.cid));
            if let Some(n) = &l.name {
                m.insert("Name".to_string(), Ipld::String(n.clone()));
            }
            if let Some(t) = l.tsize {
                m.insert("Tsize".to_string(), Ipld::Integer(t as i128));
            }
            Ipld::Map(m)
        })
        .collect();
    map.insert("Links".to_string(), Ipld::List(links));
    Ipld::Map(map)
}

fn ipld_to_pb(v: &Ipld) -> Result<PbNode, String> {
    let Ipld::Map(m) = v else {
        return Err("a dag-pb node must be a map with Data and Links".into());
    };
    for k in m.keys() {
        if k != "Data" && k != "Links" {
            return Err(format!("a dag-pb node has only Data and Links, not {k}"));
        }
    }
    let data = match m.get("Data") {
        None => None,
        Some(Ipld::Bytes(b)) => Some(Bytes::from(b.clone())),
        Some(_) => return Err("Data of a dag-pb node must be bytes".into()),
    };
    let mut links = Vec::new();
    match m.get("Links") {
        None => {}
        Some(Ipld::List(items)) => {
            for item in items {
                let Ipld::Map(l) = item else {
                    return Err("each dag-pb link must be a map".into());
                };
                let cid = match l.get("Hash") {
                    Some(Ipld::Link(c)) => *c,
                    _ => return Err("each dag-pb link needs a Hash link".into()),
                };
                let name = match l.get("Name") {
                    None => None,
                    Some(Ipld::String(s)) => Some(s.clone()),
                    Some(_) => return Err("a link's Name must be a string".into()),
                };
                let tsize = match l.get("Tsize") {
                    None => None,
                    Some(Ipld::Integer(i)) if *i >= 0 && *i <= u64::MAX as i128 => Some(*i as u64),
                    Some(_) => return Err("a link's Tsize must be a non-negative integer".into()),
                };
                links.push(PbLink { cid, name, tsize });
            }
        }
        Some(_) => return Err("Links of a dag-pb node must be a list".into()),
    }
    Ok(PbNode { links, data })
}

/// Renders IPLD in an output codec (`dag-json`, `json`, `dag-cbor`, `raw` for raw blocks).
pub(crate) fn encode(v: &Ipld, codec: u64) -> Result<Vec<u8>, String> {
    match codec {
        DAG_JSON | JSON => {
            serde_ipld_dagjson::to_vec(v).map_err(|e| format!("cannot encode as dag-json: {e}"))
        }
        DAG_CBOR => {
            serde_ipld_dagcbor::to_vec(v).map_err(|e| format!("cannot encode as dag-cbor: {e}"))
        }
        DAG_PB => Ok(ipld_to_pb(v)?.encode().to_vec()),
        RAW => match v {
            Ipld::Bytes(b) => Ok(b.clone()),
            _ => Err("only bytes can be stored with the raw codec".into()),
        },
        other => Err(format!("codec 0x{other:x} is not supported here")),
    }
}

/// Parses input bytes in an input codec.
pub(crate) fn parse(input: &[u8], codec: u64) -> Result<Ipld, String> {
    match codec {
        DAG_JSON | JSON => serde_ipld_dagjson::from_slice(input)
            .map_err(|e| format!("invalid dag-json input: {e}")),
        DAG_CBOR => serde_ipld_dagcbor::from_slice(input)
            .map_err(|e| format!("invalid dag-cbor input: {e}")),
        DAG_PB => Ok(pb_to_ipld(
            &PbNode::decode(&Bytes::copy_from_slice(input)).map_err(|e| e.to_string())?,
        )),
        RAW => Ok(Ipld::Bytes(input.to_vec())),
        other => Err(format!("input codec 0x{other:x} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_blockstore::Block;

    #[test]
    fn dag_pb_round_trips_through_dag_json() {
        let child = Block::from_data_v1(RAW, Bytes::from_static(b"x"));
        let node = PbNode {
            links: vec![PbLink {
                cid: *child.cid(),
                name: Some("a".into()),
                tsize: Some(1),
            }],
            data: Some(Bytes::from_static(&[8, 1])),
        };
        let ipld = pb_to_ipld(&node);
        let json = encode(&ipld, DAG_JSON).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.starts_with("{\"Data\":{\"/\":{\"bytes\":"), "{text}");
        let back = ipld_to_pb(&parse(&json, DAG_JSON).unwrap()).unwrap();
        assert_eq!(back, node);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(parse(b"{", DAG_JSON).is_err());
        assert!(parse(&[0xff, 0x00], DAG_CBOR).is_err());
        assert!(ipld_to_pb(&Ipld::Integer(1)).is_err());
    }
}
