//! The Redis bus: cluster membership in Redis hashes, cross-node relay over Redis pub/sub.
//!
//! ```text
//!  rooms ──(enqueue, in call order)──► writer task ──pipeline──► Redis ──► subscriber task ──► registry ──► rooms
//!                                       (one connection:            (one pub/sub connection:
//!                                        scripts, PUBLISH, lease)    own channel + control)
//! ```
//!
//! Where Redis is comes from an [`Endpoint`]: one Redis, or (Sentinel) whichever master the
//! sentinels name when a task (re)connects; `sentinel` hears `+switch-master` and makes both
//! tasks reconnect at once, so a failover is followed like a Redis restart (new lease epoch,
//! members written again, rooms reconciled).
//!
//! Each node subscribes to exactly one channel of its own; a relay is published to the channel
//! of the node that holds its target, so PUBLISH's receiver count says whether that node got
//! it. Membership changes are Lua scripts that write and notify in one step ([`keys`] lists
//! the key space, `lua/` the scripts). Both tasks run on a thread of their own, so Redis I/O
//! never competes with a WebSocket worker's turn.

mod acks;
mod backoff;
mod health;
mod inbound;
mod lease;
mod link;
mod pipeline;
mod replies;
mod scripts;
mod sentinel;
mod subscriber;
mod wire;
mod writer;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use serde_json::value::RawValue;
use switchboard::protocol::v1::{LeaveReason, ResumeToken};
use switchboard::protocol::{PeerId, RoomName};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use acks::{AckSlot, Acks};
use health::Health;
use link::Inlets;
use switchboard::cluster::Control;
pub use switchboard::cluster::Keys;
use switchboard::cluster::endpoint::{Endpoint, Kind};
use writer::Op;

use super::{
    Bus, BusError, BusResult, Claim, ClusterEvent, Delivery, Inboxes, JoinAck, JoinRules, Joined, MemberRecord, NodeId,
    ParkedSession, RoomEvent, Via,
};

/// What a resume token holds while its session is still being parked.
const PENDING: &str = "pending";
use crate::metrics::BusMetrics;

/// Timings of the Redis bus.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A node that has not renewed its lease for this long is declared lost.
    pub lease: Duration,
    /// TTL of membership records (refreshed while their node lives).
    pub record_ttl: Duration,
    /// How often the readiness canary goes round.
    pub canary_every: Duration,
    /// Connect and response timeout of Redis commands; also how long a message between nodes
    /// may take to be delivered (its deadline).
    pub timeout: Duration,
    /// How often each room compares its membership with the cluster's records.
    pub reconcile_every: Duration,
}

/// How long a join waits for the other nodes of its room to take it in. A node that does not
/// answer in time is stuck or dying (its lease will tell); the join goes on without it.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// Times a bounce that could not be sent (Redis away) is tried, 200 ms apart.
const BOUNCE_TRIES: usize = 25;

/// Operations queued for the writer beyond which the bus refuses more (Redis is not keeping up).
const MAX_QUEUED: usize = 200_000;

pub struct RedisBus {
    shared: Arc<Shared>,
    start: Mutex<Option<mpsc::UnboundedReceiver<Op>>>,
    arbiter: OnceLock<actix::Arbiter>,
}

impl RedisBus {
    /// The bus of the key space `keys` (a whole cluster's, or one bucket's on a Redis Cluster:
    /// see [`super::buckets`]). Nothing connects until [`Bus::attach`] or [`RedisBus::start`].
    pub fn new(endpoint: Endpoint, keys: Keys, settings: Settings, metrics: BusMetrics) -> Arc<Self> {
        // Hosts and ports only: the password stays out of the logs.
        let addr = endpoint.shown().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            // Ordered by start time: a message from an earlier process of the same node id that
            // arrives late is told apart from the current one's.
            incarnation: wire::now_us(),
            inlets: Mutex::new(Inlets::new(keys.node().clone(), metrics.clone())),
            upkeep: Mutex::new(None),
            addr,
            publish: endpoint.publish_command(),
            keys,
            settings,
            health: Health::new(),
            metrics,
            inboxes: OnceLock::new(),
            queued: AtomicUsize::new(0),
            acks: Acks::default(),
            tx,
            generation: AtomicU64::new(0),
            endpoint,
            switched: tokio::sync::watch::Sender::new(0),
        });
        Arc::new(Self { shared, start: Mutex::new(Some(rx)), arbiter: OnceLock::new() })
    }
}

impl RedisBus {
    /// Starts the bus's tasks on `arbiter` (a thread of its own: Redis I/O never waits for a
    /// WebSocket worker's turn; the buckets of a Redis Cluster share one).
    pub fn start(&self, inboxes: Inboxes, arbiter: &actix::ArbiterHandle) {
        let _ = self.shared.inboxes.set(inboxes);
        let Some(rx) = self.start.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        arbiter.spawn(subscriber::run(Arc::clone(&self.shared)));
        arbiter.spawn(writer::run(Arc::clone(&self.shared), rx));
        if self.shared.endpoint.kind() == Kind::Sentinel {
            arbiter.spawn(sentinel::run(Arc::clone(&self.shared)));
        }
    }
}

fn answer<T: Send + 'static>(rx: oneshot::Receiver<Result<T, BusError>>) -> BusResult<T> {
    async move { rx.await.unwrap_or_else(|_| Err(BusError::Unavailable("the bus has stopped".into()))) }.boxed()
}

impl Bus for RedisBus {
    fn attach(&self, node: NodeId, inboxes: Inboxes) {
        debug_assert_eq!(&node, self.shared.keys.node());
        let arbiter = actix::Arbiter::new();
        self.start(inboxes, &arbiter.handle());
        let _ = self.arbiter.set(arbiter);
    }

    fn join(&self, room: &RoomName, member: MemberRecord, rules: JoinRules) -> BusResult<Joined> {
        let (reply, rx) = oneshot::channel();
        // The acknowledgement slot exists before the script runs: an ack can overtake the
        // script's own reply (it comes back on the other connection).
        let (token, acked) = self.shared.acks.open();
        let ack = JoinAck { node: self.shared.keys.node().clone(), token };
        let joined = wire::encode_event(room, &RoomEvent::Joined(member.clone(), Some(ack)));
        let capacity = rules.capacity.unwrap_or(0);
        self.shared.enqueue(Op::Join { room: room.clone(), member, joined, capacity, seat: rules.seat, reply });
        // The slot is freed however this ends, even if the caller drops the future unpolled.
        let slot = AckSlot { shared: Arc::clone(&self.shared), token };
        async move {
            let result = rx.await.unwrap_or_else(|_| Err(BusError::Unavailable("the bus has stopped".into())));
            let (told, others) = result?;
            if told == 0 {
                return Ok(Joined { others, settled: None });
            }
            slot.shared.acks.expect(token, told);
            let settled = async move {
                if tokio::time::timeout(ACK_TIMEOUT, acked).await.is_err() {
                    warn!(node = %slot.shared.keys.node(), "a node did not acknowledge a join in time");
                }
                drop(slot);
            };
            Ok(Joined { others, settled: Some(settled.boxed()) })
        }
        .boxed()
    }

    fn ack(&self, _room: &RoomName, ack: JoinAck) {
        self.shared.send_ack(ack);
    }

    fn leave(&self, room: &RoomName, _node: &NodeId, peer: PeerId, reason: LeaveReason) -> BusResult<()> {
        let (reply, rx) = oneshot::channel();
        let left = wire::encode_event(room, &RoomEvent::Left { peer, reason });
        self.shared.enqueue(Op::Leave { room: room.clone(), peer, left, reason, reply });
        answer(rx)
    }

    fn publish(&self, room: &RoomName, _from: &NodeId, to: &[NodeId], event: RoomEvent) -> BusResult<Delivery> {
        if to.is_empty() {
            return async { Ok(Delivery { nodes: 0 }) }.boxed();
        }
        let body = Bytes::from(wire::encode_event(room, &event));
        let settled = self.shared.publish(to.to_vec(), body);
        async move {
            // Each node's link settles on its own: delivered, or answered with why not.
            let mut nodes = 0;
            let mut failed = None;
            for rx in settled {
                match rx.await.unwrap_or_else(|_| Err(BusError::Unavailable("the bus has stopped".into()))) {
                    Ok(()) => nodes += 1,
                    Err(e) => failed = Some(e),
                }
            }
            match failed {
                Some(e) if nodes == 0 => Err(e),
                _ => Ok(Delivery { nodes }),
            }
        }
        .boxed()
    }

    fn members(&self, room: &RoomName) -> BusResult<Vec<MemberRecord>> {
        let (reply, rx) = oneshot::channel();
        self.shared.enqueue(Op::Members { room: room.clone(), reply });
        answer(rx)
    }

    fn goodbye(&self) -> BusResult<()> {
        let shared = Arc::clone(&self.shared);
        async move {
            // Let the leaves of the sessions just drained go out first (bounded).
            let deadline = Instant::now() + Duration::from_millis(500);
            while shared.queued.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (reply, rx) = oneshot::channel();
            shared.enqueue(Op::Goodbye { reply });
            rx.await.unwrap_or_else(|_| Err(BusError::Unavailable("the bus has stopped".into())))
        }
        .boxed()
    }

    fn generation(&self, _room: &RoomName) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    fn resumable(&self) -> bool {
        true
    }

    fn bounce(&self, room: &RoomName, via: &Via, from: PeerId, id: Option<Box<RawValue>>, why: &str) {
        self.shared.bounce(room, via, from, id, why);
    }

    fn reconcile_every(&self) -> Option<Duration> {
        Some(self.shared.settings.reconcile_every)
    }

    fn park(&self, token: &str, parked: Option<&ParkedSession>, ttl: Duration) -> BusResult<()> {
        let value = match parked {
            None => PENDING.to_string(),
            Some(p) => match serde_json::to_string(p) {
                Ok(v) => v,
                Err(e) => return async move { Err(BusError::Corrupt(e.to_string())) }.boxed(),
            },
        };
        let (reply, rx) = oneshot::channel();
        self.shared.enqueue(Op::Park { key: self.shared.keys.parked(token), value, ttl, reply });
        answer(rx)
    }

    fn takeover(&self, token: &ResumeToken) {
        let payload = Control::Takeover { peer: token.peer, secret: token.secret }.encode();
        self.shared.enqueue(Op::Control { payload: Bytes::from(payload) });
    }

    fn claim(&self, token: &str) -> BusResult<Claim> {
        let (reply, rx) = oneshot::channel();
        self.shared.enqueue(Op::Claim { key: self.shared.keys.parked(token), reply });
        answer(rx)
    }

    fn resume(&self, room: &RoomName, member: MemberRecord, from: &NodeId) -> BusResult<Option<Vec<MemberRecord>>> {
        let (reply, rx) = oneshot::channel();
        let moved = wire::encode_event(
            room,
            &RoomEvent::Moved { peer: member.peer, from: from.clone(), to: self.shared.keys.node().clone() },
        );
        self.shared.enqueue(Op::Move { room: room.clone(), member, from: from.clone(), moved, reply });
        answer(rx)
    }

    fn healthy(&self) -> bool {
        self.shared.health.healthy(self.shared.settings.canary_every)
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        if let Some(a) = self.arbiter.get() {
            a.stop();
        }
    }
}

/// What the bus's two tasks and its callers share.
pub struct Shared {
    /// This process's identity on its links (its start time, µs).
    incarnation: u64,
    /// The receiving side of the links into this node (the subscriber task's).
    inlets: Mutex<Inlets>,
    /// The writer's connection while it has one, shared for link statuses (see `subscriber`).
    upkeep: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// Where Redis is (host:port), for logs.
    addr: String,
    keys: Keys,
    /// `PUBLISH`, or `SPUBLISH` on a Redis Cluster (node channels are shard channels there).
    publish: &'static str,
    settings: Settings,
    health: Health,
    metrics: BusMetrics,
    inboxes: OnceLock<Inboxes>,
    queued: AtomicUsize,
    acks: Acks,
    tx: mpsc::UnboundedSender<Op>,
    /// Counts this node's registrations (its leases).
    generation: AtomicU64,
    endpoint: Endpoint,
    /// Bumped when the sentinels announce a new master: the writer and the subscriber drop
    /// their connections and connect again (to the new master).
    switched: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn set_upkeep(&self, con: Option<redis::aio::MultiplexedConnection>) {
        *self.upkeep.lock().unwrap_or_else(PoisonError::into_inner) = con;
    }

    fn upkeep(&self) -> Option<redis::aio::MultiplexedConnection> {
        self.upkeep.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Queues `op` for the writer, or answers it at once if the writer cannot take it.
    fn enqueue(&self, op: Op) {
        if !op.counted() {
            let _ = self.tx.send(op);
            return;
        }
        let queued = self.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= MAX_QUEUED {
            return self.finish(op, Err(BusError::Overloaded(queued)));
        }
        if let Err(mpsc::error::SendError(op)) = self.tx.send(op) {
            self.finish(op, Err(BusError::Unavailable("the bus has stopped".into())));
        }
    }

    /// Queues `body` for each of `nodes` on its link; each receiver settles with that node's
    /// outcome.
    fn publish(&self, nodes: Vec<NodeId>, body: Bytes) -> Vec<oneshot::Receiver<Result<(), BusError>>> {
        let (replies, settled): (Vec<_>, Vec<_>) = nodes.iter().map(|_| oneshot::channel()).unzip();
        let generation = self.generation.load(Ordering::SeqCst);
        self.enqueue(Op::Publish { nodes, body, generation, queued_at: Instant::now(), replies });
        settled
    }

    fn send_ack(&self, ack: JoinAck) {
        // Nobody waits on the answer: a lost ack only makes the joiner wait out its bound.
        let body = Bytes::from(wire::encode(&wire::Wire::Ack { token: ack.token }));
        drop(self.publish(vec![ack.node], body));
    }

    /// Answers a relay that came through `via` and cannot be delivered here: its sender's node
    /// answers the sender (once, whatever its link already said).
    fn bounce(self: &Arc<Self>, room: &RoomName, via: &Via, from: PeerId, id: Option<Box<RawValue>>, why: &str) {
        self.metrics.bounced.inc();
        let event = RoomEvent::Bounce { peer: from, id, why: why.to_string(), link: via.link };
        let body = Bytes::from(wire::encode_event(room, &event));
        let shared = Arc::clone(self);
        let node = via.node.clone();
        tokio::spawn(async move {
            // An answer that could not even be sent (Redis away) is tried again for a while.
            for _ in 0..BOUNCE_TRIES {
                let settled = shared.publish(vec![node.clone()], body.clone());
                let mut retry = false;
                for rx in settled {
                    match rx.await {
                        // Delivered, or its sender's node is gone (and the sender with it).
                        Ok(Ok(()) | Err(BusError::NodeGone)) | Err(_) => {}
                        Ok(Err(BusError::Unavailable(_) | BusError::Fenced | BusError::Overloaded(_))) => retry = true,
                        // The answer itself was lost: its relay is neither delivered nor answered.
                        Ok(Err(_)) => shared.metrics.silent_loss.inc(),
                    }
                }
                if !retry {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            shared.metrics.silent_loss.inc();
        });
    }

    /// Tells a moved peer's old and new nodes that this node routes to the new one from now on
    /// (see `crate::room`'s handoff): through the old node, behind what it still forwards, and
    /// straight to the new one.
    pub(super) fn send_fences(&self, room: &RoomName, peer: PeerId, from: NodeId, to: NodeId) {
        let via = self.keys.node().clone();
        for (node, direct) in [(from, false), (to, true)] {
            let event = RoomEvent::Fence { peer, via: via.clone(), direct };
            let body = Bytes::from(wire::encode_event(room, &event));
            drop(self.publish(vec![node], body));
        }
    }

    fn send_cluster(&self, event: ClusterEvent) {
        if let Some(i) = self.inboxes.get() {
            i.cluster.tell(event);
        }
    }
}
