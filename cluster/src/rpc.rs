//! The cluster's request/response protocol between members, `/tessera/cluster/rpc/1.0.0`: Raft
//! messages, and the questions `status`, `recover`, `peers` and `health graph` ask every peer.
//!
//! A request frame, then a reply frame; a stream carries one exchange after another until the
//! opener closes it (see [`crate::stream_pool`]: opening a stream per request cost a negotiation
//! round trip per Raft message). A frame's first byte says what follows: [`RAFT`] carries the
//! consensus's own bytes untouched (snapshots can be large and are not worth re-encoding),
//! [`JSON`] a [`Request`] or [`Reply`]. Streams from peers that are not members are closed unread
//! and logged, and so is a stream whose opener stops being a member.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};

use crate::consensus::{RaftTransport, TransportError};
use crate::frame::{read_frame, write_frame};
use crate::status::PeerPinInfo;
use crate::stream_pool::{SERVER_IDLE, StreamPool, next_request};

/// The protocol name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/tessera/cluster/rpc/1.0.0");
/// A frame of consensus bytes.
const RAFT: u8 = 0;
/// A frame of JSON.
const JSON: u8 = 1;
/// Frames can hold a whole snapshot of the pinset.
const MAX_FRAME: usize = 1 << 30;
/// How long one request may take, snapshots included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Questions one member asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Who are you (for `/peers`)?
    Identity,
    /// Your status of one pin.
    Status(Cid),
    /// Your status of every pin you track.
    StatusAll,
    /// Retry this pin if it is in error, then give the status.
    Recover(Cid),
    /// Cluster members you are connected to (for `health graph`).
    Connected,
}

/// A member as it describes itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireIdentity {
    pub(crate) peer_name: String,
    pub(crate) addresses: Vec<String>,
    pub(crate) cluster_peers: Vec<String>,
    pub(crate) version: String,
    pub(crate) voter: bool,
}

/// Answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    Identity(WireIdentity),
    Status(PeerPinInfo),
    Statuses(Vec<(Cid, PeerPinInfo)>),
    Connected(Vec<String>),
    Error(String),
}

/// Serves requests; the cluster peer implements it.
#[async_trait]
pub(crate) trait Handler: Send + Sync + 'static {
    /// Whether `peer` may use cluster protocols (a member, or a peer that proved the secret).
    fn allowed(&self, peer: &PeerId) -> bool;
    /// A consensus message.
    async fn raft(&self, from: PeerId, body: Bytes) -> Bytes;
    /// Anything else.
    async fn call(&self, from: PeerId, request: Request) -> Reply;
}

/// Sends requests to other members over the swarm, reusing streams between requests.
#[derive(Clone)]
pub(crate) struct Client {
    pool: Arc<StreamPool>,
}

impl Client {
    pub(crate) fn new(control: libp2p_stream::Control) -> Self {
        Client {
            pool: Arc::new(StreamPool::new(control, PROTOCOL)),
        }
    }

    /// One exchange. Every request of this protocol may run twice (Raft messages are idempotent,
    /// pinset changes are set operations, the JSON questions only read), so one that failed on a
    /// reused stream, which the other side may have closed while it sat idle, is sent again on a
    /// fresh stream.
    async fn exchange(&self, peer: PeerId, kind: u8, body: &[u8]) -> Result<(u8, Vec<u8>), String> {
        let mut frame = Vec::with_capacity(body.len() + 1);
        frame.push(kind);
        frame.extend_from_slice(body);
        let work = async {
            let open = || async {
                self.pool
                    .open(peer)
                    .await
                    .map_err(|e| format!("cannot open a cluster stream to {peer}: {e}"))
            };
            let reply = self
                .pool
                .exchange(peer, open, |stream| round(peer, stream, &frame))
                .await?;
            match reply.split_first() {
                Some((k, rest)) => Ok((*k, rest.to_vec())),
                None => Err(format!("{peer} sent an empty reply")),
            }
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| format!("{peer} did not answer within {TIMEOUT:?}"))?
    }

    /// Asks `peer` a question.
    pub(crate) async fn call(&self, peer: PeerId, request: &Request) -> Result<Reply, String> {
        let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let (kind, reply) = self.exchange(peer, JSON, &body).await?;
        if kind != JSON {
            return Err(format!("{peer} answered with a frame of kind {kind}"));
        }
        match serde_json::from_slice(&reply) {
            Ok(Reply::Error(e)) => Err(format!("{peer}: {e}")),
            Ok(r) => Ok(r),
            Err(e) => Err(format!("{peer} sent a malformed reply: {e}")),
        }
    }
}

/// Writes `frame` and reads the reply on `stream`; gives the stream back for reuse.
async fn round(
    peer: PeerId,
    mut stream: Stream,
    frame: &[u8],
) -> Result<(Stream, Vec<u8>), String> {
    write_frame(&mut stream, frame)
        .await
        .map_err(|e| format!("cannot send to {peer}: {e}"))?;
    let reply = read_frame(&mut stream, MAX_FRAME)
        .await
        .map_err(|e| format!("{peer} did not answer (is it a member of this cluster?): {e}"))?;
    Ok((stream, reply))
}

#[async_trait]
impl RaftTransport for Client {
    async fn request(&self, peer: PeerId, body: Bytes) -> Result<Bytes, TransportError> {
        let (kind, reply) = self
            .exchange(peer, RAFT, &body)
            .await
            .map_err(TransportError)?;
        if kind != RAFT {
            return Err(TransportError(format!(
                "{peer} answered a consensus message with a frame of kind {kind}"
            )));
        }
        Ok(Bytes::from(reply))
    }
}

/// Accepts requests until the swarm stops; each stream gets its own task at once, because the
/// stream behaviour drops inbound streams that do not fit its small queue.
pub(crate) async fn serve(mut control: libp2p_stream::Control, handler: Arc<dyn Handler>) {
    let mut incoming = match control.accept(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot accept cluster RPC streams");
            return;
        }
    };
    while let Some((peer, mut stream)) = incoming.next().await {
        if !handler.allowed(&peer) {
            tracing::warn!(%peer, protocol = %PROTOCOL, "refused a cluster stream from a peer that is not a member");
            let _ = stream.close().await;
            continue;
        }
        let handler = handler.clone();
        tokio::spawn(serve_stream(peer, stream, handler));
    }
}

/// Answers requests on one stream, one after another, until the opener closes it, goes quiet for
/// [`SERVER_IDLE`], or stops being a member.
async fn serve_stream(peer: PeerId, mut stream: Stream, handler: Arc<dyn Handler>) {
    let member = |p: &PeerId| handler.allowed(p);
    while let Some(request) =
        next_request(peer, &PROTOCOL, &mut stream, SERVER_IDLE, MAX_FRAME, member).await
    {
        let reply = match request.split_first() {
            Some((&RAFT, body)) => {
                let mut out = vec![RAFT];
                out.extend_from_slice(&handler.raft(peer, Bytes::copy_from_slice(body)).await);
                out
            }
            Some((&JSON, body)) => {
                let reply = match serde_json::from_slice::<Request>(body) {
                    Ok(req) => handler.call(peer, req).await,
                    Err(e) => Reply::Error(format!("malformed request: {e}")),
                };
                let mut out = vec![JSON];
                out.extend(
                    serde_json::to_vec(&reply)
                        .unwrap_or_else(|_| b"{\"Error\":\"cannot encode the reply\"}".to_vec()),
                );
                out
            }
            _ => {
                let mut out = vec![JSON];
                out.extend_from_slice(b"{\"Error\":\"unknown frame kind\"}");
                out
            }
        };
        if let Err(e) = write_frame(&mut stream, &reply).await {
            tracing::debug!(%peer, error = %e, "cannot answer a cluster request");
            return;
        }
    }
    let _ = stream.close().await;
}
