//! openraft's network over a [`RaftTransport`]: each Raft RPC becomes one request.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use openraft::AnyError;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::transport::RaftTransport;
use super::types::{NodeId, RaftNode, TypeConfig};
use super::wire::{Request, Response};

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, RaftNode, RaftError<NodeId, E>>;

/// Makes one [`Connection`] per target; connections are cheap, the transport holds the streams.
pub(crate) struct Network {
    pub(crate) transport: Arc<dyn RaftTransport>,
    /// How long replication to an unreachable peer pauses before trying again.
    pub(crate) backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &RaftNode) -> Connection {
        Connection {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
            peer: node.peer(),
            backoff: self.backoff,
        }
    }
}

/// The Raft RPCs to one peer.
pub(crate) struct Connection {
    transport: Arc<dyn RaftTransport>,
    target: NodeId,
    node: RaftNode,
    /// `None` if the membership holds a peer id that does not parse: every RPC then fails as
    /// unreachable instead of panicking inside openraft.
    peer: Option<PeerId>,
    backoff: Duration,
}

impl Connection {
    /// Sends `request`; a transport failure is `Unreachable` (openraft backs off), an answer
    /// that is not the expected kind is a `NetworkError`.
    async fn call<E: std::error::Error>(
        &self,
        request: Request,
    ) -> Result<Response, RPCError<NodeId, RaftNode, RaftError<NodeId, E>>> {
        let Some(peer) = self.peer else {
            return Err(RPCError::Unreachable(Unreachable::from(AnyError::error(
                format!(
                    "membership holds an invalid peer id {:?}",
                    self.node.peer_id
                ),
            ))));
        };
        let body = request
            .encode()
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self
            .transport
            .request(peer, body)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        Response::decode(&answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    fn unexpected<E: std::error::Error>(
        &self,
        response: Response,
    ) -> RPCError<NodeId, RaftNode, RaftError<NodeId, E>> {
        let what = match response {
            Response::Error(e) => e.to_string(),
            other => format!("unexpected answer {other:?}"),
        };
        RPCError::Network(NetworkError::from(AnyError::error(format!(
            "peer {}: {what}",
            self.node.peer_id
        ))))
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<NodeId, E>,
    ) -> RPCError<NodeId, RaftNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        match self.call(Request::AppendEntries(rpc)).await? {
            Response::AppendEntries(Ok(resp)) => Ok(resp),
            Response::AppendEntries(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        match self.call(Request::InstallSnapshot(rpc)).await? {
            Response::InstallSnapshot(Ok(resp)) => Ok(resp),
            Response::InstallSnapshot(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(Request::Vote(rpc)).await? {
            Response::Vote(Ok(resp)) => Ok(resp),
            Response::Vote(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    /// A peer that cannot be reached is retried at heartbeat pace rather than openraft's fixed
    /// 500 ms, so a peer that comes back is caught up without a noticeable pause.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}
