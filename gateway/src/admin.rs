//! The seam between the admin API and wherever the cluster's state is.
//!
//! The gateway binary reads Redis ([`crate::redis_admin::RedisAdmin`]): it is stateless and
//! any number of copies can run. A node on the embedded bus (the single-machine run) serves the
//! same routes over its own rooms through its own implementation of this trait.

use futures_util::future::BoxFuture;
use switchboard::api::{NodeInfo, RoomDetail, RoomList};
use switchboard::protocol::PeerId;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such room")]
    NoSuchRoom,
    #[error("no such member in that room")]
    NoSuchMember,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the cluster state is unavailable: {0}")]
    Unavailable(String),
    #[error("no node acted within {0} ms")]
    Timeout(u64),
}

pub type AdminResult<T> = BoxFuture<'static, Result<T, AdminError>>;

/// The cluster's state as the admin API sees it.
///
/// `room` arguments are rooms' names in the cluster ([`RoomName::as_str`](switchboard::protocol::RoomName::as_str):
/// a v1 room as given, a seed channel as `seed/<channel>`), already validated by the route;
/// answers name rooms as their clients do, with a `protocol`.
pub trait ClusterAdmin: Send + Sync + 'static {
    /// Live nodes, from their heartbeats.
    fn nodes(&self) -> AdminResult<Vec<NodeInfo>>;
    /// One page of rooms (`cursor` from the previous page), at most about `limit` of them.
    fn rooms(&self, cursor: Option<String>, limit: usize) -> AdminResult<RoomList>;
    /// A room's members with the node each is on.
    fn room(&self, room: &str) -> AdminResult<RoomDetail>;
    /// Removes one member: the node holding it tells it (`left`, reason `kicked`) and the
    /// room's other peers (`peer-left`, reason `kicked`). Resolves once it is gone.
    fn kick(&self, room: &str, peer: PeerId) -> AdminResult<u64>;
    /// Removes every member (reason `room-closed`). Resolves with how many were removed.
    fn close(&self, room: &str) -> AdminResult<u64>;
    /// True while the cluster state can be read (readiness).
    fn healthy(&self) -> BoxFuture<'static, bool>;
}
