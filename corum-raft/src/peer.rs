//! A node's connections to its peers, for openraft: each RPC is one frame over the node's
//! network (`net.rs`), answered by the peer's server (`server.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;

use crate::net::{Frame, Net, Request, Response};
use crate::types::{decode, NodeId, Replicated, Types};

/// Opens connections to peers for openraft.
pub(crate) struct Factory {
    pub(crate) net: Arc<Net>,
}

impl<D: Replicated> RaftNetworkFactory<Types<D>> for Factory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, addr: node.addr.parse().ok(), net: self.net.clone() }
    }
}

/// openraft's view of one peer.
pub(crate) struct Peer {
    target: NodeId,
    addr: Option<SocketAddr>,
    net: Arc<Net>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl Peer {
    async fn call<D: Replicated, E: std::error::Error>(
        &self,
        request: Request<D>,
        timeout: Duration,
    ) -> RpcResult<Response<D>, E> {
        let Some(addr) = self.addr else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "the peer's address does not parse");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let frame = Frame::encode(&request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if frame.body_len() > self.net.limits.max_frame {
            // openraft splits the entries and sends again; other requests cannot be split.
            if let Request::Append(rpc) = &request {
                let hint = (rpc.entries.len() as u64 / 2).max(1);
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint)));
            }
        }
        let answer =
            self.net.call(addr, frame, timeout).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        decode(&answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected answer: {what}"));
    RPCError::Network(NetworkError::new(&e))
}

impl<D: Replicated> RaftNetwork<Types<D>> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types<D>>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        match self.call::<D, _>(Request::Append(rpc), option.hard_ttl()).await? {
            Response::Append(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Response::Rejected(why) => Err(unexpected(&why)),
            _ => Err(unexpected("not an append answer")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types<D>>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        match self.call::<D, _>(Request::Snapshot(rpc), option.hard_ttl()).await? {
            Response::Snapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Response::Rejected(why) => Err(unexpected(&why)),
            _ => Err(unexpected("not a snapshot answer")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        match self.call::<D, _>(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Response::Rejected(why) => Err(unexpected(&why)),
            _ => Err(unexpected("not a vote answer")),
        }
    }
}
