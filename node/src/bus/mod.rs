//! The cluster bus: the only way a room talks beyond its node.
//!
//! A room actor asks the bus to record membership (so that `joined` lists members on every
//! node) and to carry relays to the nodes of its remote members. Membership changes reach the
//! other nodes of a room *from the bus itself*, in the same atomic step that records them: the
//! set of nodes to tell is read together with the write, so a join and a leave racing on two
//! nodes can never leave one of them with a ghost member.
//!
//! The bus hands events from other nodes to this node's [`Inbound`] recipient and news about
//! the cluster itself ([`ClusterEvent`]) to its control recipient. Actors see only these
//! types — never Redis's — so the embedded [`MemoryBus`] and the [`RedisBus`] are
//! interchangeable.

mod buckets;
mod memory;
pub mod redis;

use std::sync::Arc;

use actix::{Message, Recipient};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use switchboard::api::NodeInfo;
use switchboard::protocol::v1::{LeaveReason, ResumeToken};
use switchboard::protocol::{PeerId, Role, RoomName};

pub use buckets::BucketedBus;
pub use memory::MemoryBus;
pub use redis::RedisBus;

pub use switchboard::cluster::NodeId;

/// A room member as the cluster records it.
#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub peer: PeerId,
    pub node: NodeId,
    pub meta: Option<Arc<RawValue>>,
    /// The seed protocol's client-chosen user id, for seed rooms.
    pub seed_user: Option<Arc<str>>,
    /// The user its access token names, when it joined with one.
    pub user: Option<Arc<str>>,
    /// The role its access token grants, when it joined with one.
    pub role: Option<Role>,
}

/// Whether a seed seat (a member holding a seed user id) may be taken over by a joiner with
/// the same id: an anonymous holder's may be taken by anyone, a token holder's only by a
/// connection whose token names the same user. (Empty seed ids are anonymous members, never a
/// seat: callers do not ask for them.)
pub fn seat_yields(holder_user: Option<&str>, joiner_user: Option<&str>) -> bool {
    holder_user.is_none_or(|h| joiner_user == Some(h))
}

/// What a new join must pass across the cluster, checked atomically with its write. A member
/// written again (a re-assert, a repair) passes `JoinRules::default()`: nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct JoinRules {
    /// Refuse ([`BusError::RoomFull`]) if the room already holds this many members.
    pub capacity: Option<usize>,
    /// Refuse ([`BusError::SeatTaken`]) if another member holds the joiner's seed user id and
    /// does not yield it ([`seat_yields`]).
    pub seat: bool,
}

/// What travels between nodes about one room.
#[derive(Clone, Debug)]
pub enum RoomEvent {
    /// A member joined on another node; once the room has taken it in, it acknowledges with
    /// [`Bus::ack`] so the joiner's `joined` can wait for every node to know it.
    Joined(MemberRecord, Option<JoinAck>),
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
        /// The sender's correlation id, echoed in `undeliverable` if the target's node cannot
        /// deliver it.
        id: Option<Box<RawValue>>,
    },
    /// A parked member resumed on node `to`: it was on `from`. Sent by the move itself to every
    /// node holding members of the room, `from` first, and to `to` itself as a marker of where
    /// the move stands in the order of membership events (see [`crate::room`]'s handoff).
    Moved {
        peer: PeerId,
        from: NodeId,
        to: NodeId,
    },
    /// Node `via` routes to the moved `peer`'s new node from now on. Sent to the old node
    /// (`direct: false`), which passes it on after whatever it still had to forward, and to the
    /// new node (`direct: true`), so it knows which relays from `via` already count it in.
    Fence {
        peer: PeerId,
        via: NodeId,
        direct: bool,
    },
    /// Frames the old node had for a moved `peer`: everything it buffered while the peer was
    /// parked (`handover: true`, which is also the old node's own fence), or a relay that
    /// reached it from a node that had not heard of the move yet.
    Forward {
        peer: PeerId,
        frames: Vec<Held>,
        handover: bool,
    },
    /// A relay from this node's `peer` that the receiving node could not deliver (its target
    /// is not there, or it expired on the way): `peer` is answered `undeliverable` with `id`.
    /// `link` names the relay on its link, so an answer the link layer already gave is not
    /// given twice.
    Bounce {
        peer: PeerId,
        id: Option<Box<RawValue>>,
        why: String,
        link: Option<LinkSeq>,
    },
}

/// A message's place on a sequenced node-to-node link: the sender's incarnation and the
/// sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSeq {
    pub incarnation: u64,
    pub seq: u64,
}

/// Where an event from another node came from: its node and its place on that node's link to
/// this one (see `redis::link`), for answering what a room cannot deliver.
#[derive(Clone, Debug)]
pub struct Via {
    pub node: NodeId,
    pub link: Option<LinkSeq>,
    /// When the link stops promising delivery (its deadline, on this node's clock): a signal
    /// still not written to its client by then is answered instead (its sender may have been
    /// answered already, if this node stalled meanwhile).
    pub expires: Option<std::time::Instant>,
}

/// A frame kept for a member that cannot take it yet, with its metrics label.
#[derive(Clone, Debug)]
pub struct Held {
    pub frame: Bytes,
    pub kind: &'static str,
}

/// A session parked by a draining node until it resumes (on any node) with its token.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParkedSession {
    pub peer: PeerId,
    /// The node that parked it, which holds its memberships and buffers meanwhile.
    pub node: String,
    pub rooms: Vec<ParkedRoom>,
    /// What its access token allowed (room, user, role), carried over to the new session.
    pub grant: Option<(String, String, Role)>,
    /// The frames its client may not have read yet (not acknowledged, or produced after its
    /// socket broke or after `reconnect`), numbered from `first_seq`: the resumed `welcome` is
    /// followed by those after the client's `last_seq`.
    #[serde(default)]
    pub frames: Vec<String>,
    /// The `seq` of `frames[0]` (0 from nodes that did not number frames: replay them all).
    #[serde(default)]
    pub first_seq: u64,
    /// The last client `cseq` processed.
    #[serde(default)]
    pub last_cseq: u64,
    /// The `seq` of the `reconnect` frame, when a drain parked it: a client that does not say
    /// what it read (`last_seq`) read nothing after it.
    #[serde(default)]
    pub reconnect_seq: Option<u64>,
    /// Its rooms were told it is `reconnecting` (its socket broke): they hear `connected` once
    /// it resumes.
    #[serde(default)]
    pub announced: bool,
}

/// One room of a parked session, with what its record says about the member.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParkedRoom {
    /// The room's name in the cluster (`RoomName::as_str`).
    pub room: String,
    pub meta: Option<String>,
    pub user: Option<String>,
    pub role: Option<Role>,
}

/// What the cluster holds under a resume token.
#[derive(Debug)]
pub enum Claim {
    /// The session, now taken: the token cannot be used again.
    Parked(ParkedSession),
    /// The token exists but its session is still finishing on its node: ask again shortly.
    Pending,
    /// No such token (never issued, used already, or expired).
    Unknown,
}

/// Owed to a joiner's node once its `Joined` has been taken in.
#[derive(Clone, Debug)]
pub struct JoinAck {
    pub node: NodeId,
    pub token: u64,
}

/// A recorded join.
pub struct Joined {
    /// The room's members on other nodes, read atomically with the write.
    pub others: Vec<MemberRecord>,
    /// Completes once every other node holding members of the room has taken the join in
    /// (or a bound has passed); `None` if there is no one to wait for. Until then the joiner
    /// is not told it joined: when it is, a message anyone sends it, or sends to the room,
    /// is routed by nodes that already know it.
    pub settled: Option<BoxFuture<'static, ()>>,
}

/// An event from another node, for a room of this one.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Inbound {
    pub room: RoomName,
    pub event: RoomEvent,
    /// The node it came from (`None` on the embedded bus).
    pub via: Option<Via>,
}

/// News about the cluster rather than one room; the registry passes it to every room.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub enum ClusterEvent {
    /// A node stopped renewing its lease: its members are gone from every room.
    NodeLost(NodeId),
    /// This node's membership records may be missing from the cluster (it came back from a
    /// lost connection or a lost lease): every room writes its local members again.
    Reassert,
    /// Membership events may have been missed (the subscription was down): every room
    /// reconciles its remote members with the cluster's records.
    Resync,
    /// An operator removed `peer` from `room`: the node holding it removes it (reason
    /// `kicked`). The registry hands this to that one room only.
    Kick { room: RoomName, peer: PeerId },
    /// An operator closed `room`: every node removes its members of it (`room-closed`).
    Close { room: RoomName },
    /// A client resumes on another node with this token: the node holding its session (it
    /// checks the secret) parks it there for the resume. The registry hands it to the session.
    Takeover(ResumeToken),
    /// `event` concerns only the rooms of one bucket of a Redis Cluster (its bus reported it):
    /// the registry hands it to those.
    Within { bucket: usize, buckets: Arc<switchboard::cluster::Buckets>, event: Box<ClusterEvent> },
}

/// How a publish went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Nodes that received the event.
    pub nodes: usize,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum BusError {
    #[error("the cluster bus is unavailable: {0}")]
    Unavailable(String),
    #[error("this node's cluster lease was lost; it is rejoining under a new one")]
    Fenced,
    #[error("the cluster bus is overloaded ({0} operations queued)")]
    Overloaded(usize),
    #[error("a cluster record could not be read: {0}")]
    Corrupt(String),
    #[error("the room is full across the cluster")]
    RoomFull,
    #[error("the seed user id is held by a connection with an access token for that user")]
    SeatTaken,
    /// Nobody was subscribed to the receiving node's channel: that node is gone.
    #[error("the peer's node is not reachable")]
    NodeGone,
    /// The receiving node did not deliver it (or cannot be known to have): the sender is told.
    #[error("{0}")]
    Lost(String),
}

pub type BusResult<T> = BoxFuture<'static, Result<T, BusError>>;

/// Hands an event to the room it is for; gives it back if this node holds no such room.
pub trait RoomInbox: Send + Sync {
    // The event comes back by move, on the rare path where its room is gone: no boxing.
    #[allow(clippy::result_large_err)]
    fn deliver(&self, msg: Inbound) -> Result<(), Inbound>;
}

/// Where the bus reports news about the cluster (the registry; one bucket's bus reports
/// through a filter naming its bucket).
pub trait ClusterInbox: Send + Sync {
    fn tell(&self, event: ClusterEvent);
}

impl ClusterInbox for Recipient<ClusterEvent> {
    fn tell(&self, event: ClusterEvent) {
        self.do_send(event);
    }
}

/// What a node says about itself in its heartbeats (the admin API's node list).
pub trait NodeStatus: Send + Sync {
    /// The node's current figures; `None` once the node is gone.
    fn node_info(&self) -> Option<NodeInfo>;
}

/// Where the bus delivers what it receives, and where it reads what it reports.
#[derive(Clone)]
pub struct Inboxes {
    /// Straight to the rooms (the relay path takes no detour through another actor).
    pub rooms: Arc<dyn RoomInbox>,
    pub cluster: Arc<dyn ClusterInbox>,
    /// Read at every lease renewal.
    pub status: Arc<dyn NodeStatus>,
}

/// The seam between rooms and the cluster. Every method takes its place in the bus's order
/// when it is *called* (not when its future is first polled), so a room's calls reach other
/// nodes in the order the room made them.
pub trait Bus: Send + Sync + 'static {
    /// Starts delivering this node's inbound events.
    fn attach(&self, node: NodeId, inboxes: Inboxes);

    /// Records `member` in `room`, tells the other nodes holding members (`Joined`), and
    /// returns the room's members on *other* nodes — atomically: two peers joining at once on
    /// two nodes always see each other. `rules` are checked in the same step (nothing is
    /// written if they refuse): a capacity on all nodes together, so racing joins on several
    /// nodes cannot overfill the room, and seed seats, so racing joins cannot take a token
    /// holder's user id.
    fn join(&self, room: &RoomName, member: MemberRecord, rules: JoinRules) -> BusResult<Joined>;

    /// Tells a joiner's node that this node has taken its join in (to `room`).
    fn ack(&self, room: &RoomName, ack: JoinAck);

    /// Removes this node's `peer` from `room` and tells the other nodes holding members
    /// (`Left`). Never removes another node's member.
    fn leave(&self, room: &RoomName, node: &NodeId, peer: PeerId, reason: LeaveReason) -> BusResult<()>;

    /// Carries a relay to the nodes `to`; the delivery counts the nodes that received it.
    fn publish(&self, room: &RoomName, from: &NodeId, to: &[NodeId], event: RoomEvent) -> BusResult<Delivery>;

    /// Every member of `room`, on every node.
    fn members(&self, room: &RoomName) -> BusResult<Vec<MemberRecord>>;

    /// Changes whenever this node's membership records of `room` may have been lost from the
    /// cluster (it took a new lease where the room lives). A room whose members were written
    /// under an older generation writes them again before relaying anything.
    fn generation(&self, room: &RoomName) -> u64;

    /// Leaves the cluster on purpose (after a drain): this node's lease and remaining records
    /// go at once, instead of other nodes waiting out the lease. The bus carries nothing after.
    fn goodbye(&self) -> BusResult<()>;

    /// True while the bus can carry events (the embedded bus always can).
    fn healthy(&self) -> bool;

    /// Tells the node a relay came `via` that it cannot be delivered here: its sender is
    /// answered `undeliverable` with `id` (once, whatever the link said of it).
    fn bounce(&self, _room: &RoomName, _via: &Via, _from: PeerId, _id: Option<Box<RawValue>>, _why: &str) {}

    /// How often a room compares its view of the membership with the cluster's records, to
    /// repair what a missed event left wrong (`None` on the embedded bus: there is nothing to
    /// miss).
    fn reconcile_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether sessions parked here can resume on another node (not on the embedded bus:
    /// there is no other node).
    fn resumable(&self) -> bool;

    /// Stores a parked session under `token` for `ttl` (`None`: the token is issued but its
    /// session is still finishing).
    fn park(&self, token: &str, parked: Option<&ParkedSession>, ttl: std::time::Duration) -> BusResult<()>;

    /// Takes the session parked under `token`, at most once.
    fn claim(&self, token: &str) -> BusResult<Claim>;

    /// Asks the node holding `token`'s session (whichever it is) to park it for a resume here
    /// ([`ClusterEvent::Takeover`] there); nothing on the embedded bus (no other node).
    fn takeover(&self, _token: &ResumeToken) {}

    /// Moves `member`, parked on node `from`, to this node in `room`: its record changes owner
    /// and the room's nodes are told ([`RoomEvent::Moved`]). Returns the members on other
    /// nodes, or `None` if the parked member is gone from the room (its node left, or the
    /// record expired).
    fn resume(&self, room: &RoomName, member: MemberRecord, from: &NodeId) -> BusResult<Option<Vec<MemberRecord>>>;
}
