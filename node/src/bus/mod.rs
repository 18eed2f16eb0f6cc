//! The cluster bus: the only way a room talks beyond its node.
//!
//! A room actor asks the bus to record membership (so that `joined` lists members on every
//! node) and to carry events to the rooms of other nodes. The bus hands events from other nodes
//! to this node's [`Inbound`] recipient. Actors see only these types — never Redis's — so the
//! embedded [`MemoryBus`] and the Redis bus are interchangeable.

mod memory;

use std::sync::Arc;

use actix::{Message, Recipient};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{PeerId, RoomName};

pub use memory::MemoryBus;

/// A node's identity in the cluster.
pub type NodeId = Arc<str>;

/// A room member as the cluster records it.
#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub peer: PeerId,
    pub node: NodeId,
    pub meta: Option<Arc<RawValue>>,
    /// The seed protocol's client-chosen user id, for seed rooms.
    pub seed_user: Option<Arc<str>>,
}

/// What travels between nodes about one room.
#[derive(Clone, Debug)]
pub enum RoomEvent {
    Joined(MemberRecord),
    Left {
        peer: PeerId,
        reason: LeaveReason,
    },
    /// A frame already serialized for the room's dialect: to one peer, or to every member but
    /// the sender.
    Relay {
        from: PeerId,
        to: Option<PeerId>,
        frame: Bytes,
    },
}

/// An event from another node, for a room of this one.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Inbound {
    pub room: RoomName,
    pub event: RoomEvent,
}

/// How a publish went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Nodes that received the event.
    pub nodes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the cluster bus is unavailable: {0}")]
    Unavailable(String),
}

pub type BusResult<T> = BoxFuture<'static, Result<T, BusError>>;

pub trait Bus: Send + Sync + 'static {
    /// Starts delivering this node's inbound events to `inbox`.
    fn attach(&self, node: NodeId, inbox: Recipient<Inbound>);

    /// Records `member` in `room` and returns the room's members on *other* nodes, atomically:
    /// two peers joining at once on two nodes always see each other.
    fn join(&self, room: &RoomName, member: MemberRecord) -> BusResult<Vec<MemberRecord>>;

    /// Removes `peer` from `room`.
    fn leave(&self, room: &RoomName, node: &NodeId, peer: PeerId) -> BusResult<()>;

    /// Carries `event` to the other nodes that hold members of `room`.
    fn publish(&self, room: &RoomName, origin: &NodeId, event: RoomEvent) -> BusResult<Delivery>;

    /// True while the bus can carry events (the embedded bus always can).
    fn healthy(&self) -> bool;
}
