//! The consensus protocol's messages and their framing.
//!
//! Version 1 frame: one byte `1`, a big-endian `u32` length, that many bytes of JSON (a
//! [`Request`] or a [`Response`]), then a raw tail. Only `InstallSnapshot` has a tail: the chunk's
//! bytes, kept out of the JSON so that a snapshot does not grow fourfold as a JSON number array.
//! A decoder never panics: anything unexpected is a [`WireError::Malformed`].

use bytes::{BufMut, Bytes, BytesMut};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::types::{NodeId, TypeConfig};
use crate::pin::PinsetOp;

const VERSION: u8 = 1;
const HEADER: usize = 5;

/// A message one peer's consensus sends another's.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Raft replication and heartbeat, leader to follower.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election, candidate to voter.
    Vote(VoteRequest<NodeId>),
    /// One chunk of a snapshot, leader to a follower that lags behind the purged log.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A pinset change, follower to leader.
    Submit(PinsetOp),
    /// Add a member, follower to leader.
    AddMember {
        peer: String,
        addrs: Vec<String>,
        voter: bool,
    },
    /// Remove a member, follower to leader.
    RemoveMember { peer: String },
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The change is committed and applied on the leader at this log index.
    Submitted {
        index: u64,
    },
    /// The membership change is committed on the leader; its last entry is at this log index.
    MembershipChanged {
        index: u64,
    },
    /// The request was not served.
    Error(WireError),
}

/// Why a request was not served, grouped by what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum WireError {
    /// Ask the leader instead (its peer id, if known).
    #[error("not the leader (leader: {leader:?})")]
    ForwardToLeader { leader: Option<String> },
    /// Try again shortly (an election or another membership change is under way).
    #[error("busy: {0}")]
    Retry(String),
    /// Will not be served; retrying does not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The sender is not a member of this cluster.
    #[error("peer {0} is not a member of this cluster")]
    NotMember(String),
    /// The bytes did not decode.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The Raft node stopped.
    #[error("stopped: {0}")]
    Stopped(String),
}

fn frame(json: &[u8], tail: &[u8]) -> Result<Bytes, WireError> {
    let len = u32::try_from(json.len())
        .map_err(|_| WireError::Refused(format!("message of {} bytes is too large", json.len())))?;
    let mut out = BytesMut::with_capacity(HEADER + json.len() + tail.len());
    out.put_u8(VERSION);
    out.put_u32(len);
    out.put_slice(json);
    out.put_slice(tail);
    Ok(out.freeze())
}

fn unframe(body: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let malformed = |why: String| WireError::Malformed(why);
    let (header, rest) = body
        .split_at_checked(HEADER)
        .ok_or_else(|| malformed(format!("{} bytes is shorter than a header", body.len())))?;
    if header[0] != VERSION {
        return Err(malformed(format!(
            "frame version {} (this peer speaks {VERSION})",
            header[0]
        )));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    rest.split_at_checked(len).ok_or_else(|| {
        malformed(format!(
            "length {len} exceeds the {} bytes sent",
            rest.len()
        ))
    })
}

impl Request {
    pub(crate) fn encode(self) -> Result<Bytes, WireError> {
        let (request, tail) = match self {
            Request::InstallSnapshot(mut req) => {
                let data = std::mem::take(&mut req.data);
                (Request::InstallSnapshot(req), data)
            }
            other => (other, Vec::new()),
        };
        let json = serde_json::to_vec(&request).map_err(|e| WireError::Refused(e.to_string()))?;
        frame(&json, &tail)
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Request, WireError> {
        let (json, tail) = unframe(body)?;
        let request: Request =
            serde_json::from_slice(json).map_err(|e| WireError::Malformed(e.to_string()))?;
        match request {
            Request::InstallSnapshot(mut req) => {
                req.data = tail.to_vec();
                Ok(Request::InstallSnapshot(req))
            }
            _ if !tail.is_empty() => Err(WireError::Malformed(format!(
                "{} unexpected bytes after the message",
                tail.len()
            ))),
            other => Ok(other),
        }
    }

    /// A short name for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Request::AppendEntries(_) => "AppendEntries",
            Request::Vote(_) => "Vote",
            Request::InstallSnapshot(_) => "InstallSnapshot",
            Request::Submit(_) => "Submit",
            Request::AddMember { .. } => "AddMember",
            Request::RemoveMember { .. } => "RemoveMember",
        }
    }
}

impl Response {
    /// Encodes, falling back to an encoded error: an answer always goes back.
    pub(crate) fn encode(&self) -> Bytes {
        match serde_json::to_vec(self) {
            Ok(json) => frame(&json, &[]).unwrap_or_else(|e| Response::Error(e).encode_error()),
            Err(e) => Response::Error(WireError::Refused(format!("encoding the answer: {e}")))
                .encode_error(),
        }
    }

    /// Encodes an error answer; its JSON is small and made of strings, so this cannot fail, but
    /// if it did the answer would be an empty frame, which the caller reads as malformed.
    fn encode_error(&self) -> Bytes {
        serde_json::to_vec(self)
            .ok()
            .and_then(|json| frame(&json, &[]).ok())
            .unwrap_or_else(|| Bytes::from_static(&[VERSION, 0, 0, 0, 0]))
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Response, WireError> {
        let (json, tail) = unframe(body)?;
        if !tail.is_empty() {
            return Err(WireError::Malformed(format!(
                "{} unexpected bytes after the answer",
                tail.len()
            )));
        }
        serde_json::from_slice(json).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{LeaderId, LogId, SnapshotMeta, Vote};

    use super::*;

    #[test]
    fn install_snapshot_data_travels_raw() {
        let data: Vec<u8> = (0..=255).collect();
        let req = Request::InstallSnapshot(InstallSnapshotRequest {
            vote: Vote::new(3, 7),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(LeaderId::new(3, 7), 42)),
                last_membership: Default::default(),
                snapshot_id: "s".into(),
            },
            offset: 0,
            data: data.clone(),
            done: true,
        });
        let bytes = req.encode().unwrap();
        assert!(bytes.ends_with(&data));
        match Request::decode(&bytes).unwrap() {
            Request::InstallSnapshot(req) => assert_eq!(req.data, data),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        // Boundaries: empty, shorter than the header, header only, length past the end, wrong
        // version, valid frame of invalid JSON, valid message with a stray tail.
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 0, 0],
            vec![1, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 9, b'{'],
            vec![2, 0, 0, 0, 2, b'{', b'}'],
            vec![1, 0, 0, 0, 3, b'{', b'x', b'}'],
            {
                let mut b = Request::RemoveMember { peer: "p".into() }
                    .encode()
                    .unwrap()
                    .to_vec();
                b.push(0);
                b
            },
        ];
        for case in cases {
            assert!(
                matches!(Request::decode(&case), Err(WireError::Malformed(_))),
                "{case:?}"
            );
            assert!(Response::decode(&case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn error_answers_round_trip() {
        let bytes = Response::Error(WireError::ForwardToLeader {
            leader: Some("peer".into()),
        })
        .encode();
        match Response::decode(&bytes).unwrap() {
            Response::Error(WireError::ForwardToLeader { leader }) => {
                assert_eq!(leader.as_deref(), Some("peer"))
            }
            other => panic!("decoded {other:?}"),
        }
    }
}
