//! The writer: one task, one Redis connection, every command of this node in call order.
//!
//! Rooms enqueue operations synchronously (so a room's calls keep their order); the writer
//! takes whatever has queued up, sends it as one pipeline, and answers each caller. Under load
//! pipelines grow and the cost per command falls; unloaded, a command waits one round trip.
//! The same task keeps the node's lease (register, renew), reaps other nodes' expired leases
//! and publishes the readiness canary, so those share the order and the connection too.
//!
//! While Redis is unreachable every operation fails at once with `Unavailable` (never queued
//! for later, so nothing is delivered late or twice); the task reconnects with backoff, takes a
//! new lease and asks every room to write its members again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{PeerId, RoomName};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Shared;
use super::backoff::Backoff;
use super::lease::{leave_cluster, publish_canary, reap_nodes, register, renew_lease};
use super::link::{BounceVerdict, Outboxes};
use super::pipeline::execute;
use super::scripts::Scripts;
use crate::bus::{BusError, Claim, ClusterEvent, Inbound, LinkSeq, MemberRecord, NodeId};

use super::link::Reply;

/// How often the links' sender side answers what waited too long and probes quiet links.
const SWEEP_EVERY: Duration = Duration::from_millis(25);

/// One queued operation and where its answer goes.
pub enum Op {
    Join {
        room: RoomName,
        member: MemberRecord,
        joined: Vec<u8>,
        /// Members the room may hold on all nodes together (0: no cap).
        capacity: usize,
        /// Refuse if a member that does not yield it holds the joiner's seed user id.
        seat: bool,
        /// How many nodes were told, and the other nodes' members.
        reply: oneshot::Sender<Result<(usize, Vec<MemberRecord>), BusError>>,
    },
    Leave {
        room: RoomName,
        peer: PeerId,
        left: Vec<u8>,
        /// For the webhooks' `peer.left`.
        reason: LeaveReason,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    /// A message for other nodes, each on its link (see [`super::link`]); each node's reply
    /// settles when that node's link does.
    Publish {
        nodes: Vec<NodeId>,
        body: Bytes,
        /// The lease generation the caller saw: a relay from before this node re-registered
        /// would reach nodes that no longer know its sender, so it is refused instead.
        generation: u64,
        queued_at: Instant,
        replies: Vec<Reply>,
    },
    /// Link upkeep, outside the links' order: a retransmit, a skip or a probe.
    Send {
        node: NodeId,
        payload: Bytes,
    },
    /// A message for every node, on the control channel (unsequenced: its sender asks again
    /// if nothing comes of it).
    Control {
        payload: Bytes,
    },
    /// A receiver's status of its link from this node.
    Status {
        from: NodeId,
        inc: u64,
        upto: u64,
        lost: Vec<(u64, u64)>,
        missing: Vec<(u64, u64)>,
    },
    /// A relay of this node's that a receiving room could not deliver: answered once.
    Bounce {
        from: NodeId,
        link: Option<LinkSeq>,
        why: String,
        inbound: Box<Inbound>,
    },
    Members {
        room: RoomName,
        reply: oneshot::Sender<Result<Vec<MemberRecord>, BusError>>,
    },
    /// Store a parked session (or the `pending` marker) under its token.
    Park {
        key: String,
        value: String,
        ttl: Duration,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    /// Take a parked session.
    Claim {
        key: String,
        reply: oneshot::Sender<Result<Claim, BusError>>,
    },
    /// Move a resumed member here from the node that parked it.
    Move {
        room: RoomName,
        member: MemberRecord,
        from: NodeId,
        moved: Vec<u8>,
        reply: oneshot::Sender<Result<Option<Vec<MemberRecord>>, BusError>>,
    },
    /// Leave the cluster; the writer stops after it.
    Goodbye {
        reply: oneshot::Sender<Result<(), BusError>>,
    },
}

impl Op {
    pub fn fail(self, err: BusError) {
        // A caller that stopped waiting does not need the answer.
        match self {
            Op::Join { reply, .. } => drop(reply.send(Err(err))),
            Op::Members { reply, .. } => drop(reply.send(Err(err))),
            Op::Leave { reply, .. } | Op::Goodbye { reply } | Op::Park { reply, .. } => drop(reply.send(Err(err))),
            Op::Claim { reply, .. } => drop(reply.send(Err(err))),
            Op::Move { reply, .. } => drop(reply.send(Err(err))),
            Op::Publish { replies, .. } => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            Op::Send { .. } | Op::Control { .. } | Op::Status { .. } | Op::Bounce { .. } => {}
        }
    }

    fn commands(&self) -> usize {
        match self {
            Op::Publish { nodes, .. } => nodes.len(),
            _ => 1,
        }
    }

    /// Whether the op counts against [`super::MAX_QUEUED`] (link upkeep does not: it must get
    /// through when the queue is full, and it answers nobody).
    pub fn counted(&self) -> bool {
        !matches!(self, Op::Send { .. } | Op::Control { .. } | Op::Status { .. } | Op::Bounce { .. })
    }
}

/// The most operations sent in one pipeline.
const MAX_BATCH: usize = 1024;

/// The writer's connection and the lease it holds.
pub(super) struct Link {
    pub(super) con: MultiplexedConnection,
    pub(super) scripts: Scripts,
    pub(super) epoch: u64,
    /// When the current lease was taken.
    pub(super) registered: Instant,
    /// When the rooms' TTLs were last refreshed.
    pub(super) since: Instant,
}

pub async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Op>) {
    let lease = shared.settings.lease;
    let mut renew = tokio::time::interval(lease / 3);
    let mut reap = tokio::time::interval((lease / 6).max(Duration::from_millis(50)));
    let mut canary = tokio::time::interval(shared.settings.canary_every);
    for t in [&mut renew, &mut reap, &mut canary] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut links =
        Outboxes::new(shared.keys.node().clone(), shared.incarnation, shared.settings.timeout, shared.metrics.clone());
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut link: Option<Link> = None;
    let mut fresh = true;
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut canary_seq = 0u64;
    let mut switched = shared.switched.subscribe();
    loop {
        let Some(l) = link.as_mut() else {
            links.reachable(false);
            if !shared.health.is_subscribed() {
                // Registering before the subscription is up would let a peer's Joined go
                // unheard: wait for it (failing what arrives meanwhile).
                let why = "the cluster subscription is not up";
                if !fail_for(&shared, &mut rx, &mut links, Duration::from_millis(20), why).await {
                    return;
                }
                continue;
            }
            // Connecting can take up to its timeout (a frozen Redis accepts and never answers):
            // fail what arrives meanwhile rather than hold it.
            // A switch announced before this connect is followed by it.
            switched.borrow_and_update();
            let connecting = connect(&shared, fresh);
            tokio::pin!(connecting);
            let connected = loop {
                tokio::select! {
                    r = &mut connecting => break r,
                    op = rx.recv() => match op {
                        Some(op) => refuse(&shared, &mut links, op, "reconnecting to Redis"),
                        None => return,
                    },
                    _ = sweep.tick() => drop(links.sweep()),
                }
            };
            match connected {
                Ok(l) => {
                    info!(node = %shared.keys.node(), redis = %shared.addr, epoch = l.epoch, "cluster bus connected");
                    shared.health.connected_now();
                    links.reachable(true);
                    shared.metrics.up.set(1);
                    // Members admitted while there was no lease (even before the first one)
                    // are written now; rooms already up to date skip it.
                    shared.send_cluster(ClusterEvent::Reassert);
                    fresh = false;
                    backoff.reset();
                    shared.set_upkeep(Some(l.con.clone()));
                    link = Some(l);
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    let error = e.to_string();
                    warn!(
                        node = %shared.keys.node(),
                        redis = %shared.addr,
                        hint = shared.endpoint.hint(&error).unwrap_or_default(),
                        error,
                        retry_in_ms = wait.as_millis() as u64,
                        "cannot reach Redis: this node is not ready (/readyz 503) and relays nothing to other nodes until it can"
                    );
                    if !fail_for(&shared, &mut rx, &mut links, wait, &error).await {
                        return;
                    }
                }
            }
            continue;
        };
        let outcome = tokio::select! {
            op = rx.recv() => {
                let Some(op) = op else { return };
                let mut goodbye = None;
                let mut next = Some(op);
                let mut commands = 0;
                while let Some(op) = next.take() {
                    match op {
                        Op::Goodbye { reply } => {
                            goodbye = Some(reply);
                            break;
                        }
                        Op::Status { from, inc, upto, lost, missing } => {
                            for payload in links.status(&from, inc, upto, &lost, &missing) {
                                commands += 1;
                                batch.push(Op::Send { node: from.clone(), payload });
                            }
                        }
                        Op::Bounce { from, link, why, inbound } => bounce(&shared, &mut links, from, link, &why, *inbound),
                        op => {
                            commands += op.commands();
                            batch.push(op);
                        }
                    }
                    if commands < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                let outcome =
                    if batch.is_empty() { Ok(Next::Continue) } else { execute(&shared, l, &mut links, &mut batch).await };
                if let Some(reply) = goodbye {
                    let _ = reply.send(leave_cluster(&shared, l).await.map_err(|e| BusError::Unavailable(e.to_string())));
                    return;
                }
                outcome
            }
            _ = sweep.tick() => {
                let probes = links.sweep();
                let mut upkeep: Vec<Op> =
                    probes.into_iter().map(|(node, payload)| Op::Send { node, payload }).collect();
                if upkeep.is_empty() { Ok(Next::Continue) } else { execute(&shared, l, &mut links, &mut upkeep).await }
            }
            _ = renew.tick() => renew_lease(&shared, l).await,
            _ = reap.tick() => reap_nodes(&shared, l).await,
            _ = canary.tick() => {
                canary_seq += 1;
                publish_canary(&shared, l, canary_seq).await
            }
            _ = switched.changed() => Ok(Next::Reconnect("the sentinels named a new master")),
        };
        match outcome {
            Ok(Next::Continue) => {}
            Ok(Next::Register) => match register(&shared, l, false).await {
                Ok(epoch) => {
                    warn!(node = %shared.keys.node(), epoch, "cluster lease was lost; rejoined under a new epoch");
                    l.epoch = epoch;
                    l.registered = Instant::now();
                    shared.send_cluster(ClusterEvent::Reassert);
                }
                Err(e) => link = lost(&shared, &e),
            },
            Ok(Next::Reconnect(why)) => link = lost(&shared, &why),
            Err(e) => link = lost(&shared, &e),
        }
    }
}

pub(super) enum Next {
    Continue,
    /// The lease is gone: take a new one.
    Register,
    /// This connection reaches a Redis that is not (or no longer) the writable master: connect
    /// again, asking the sentinels where the master is now.
    Reconnect(&'static str),
}

fn lost(shared: &Shared, e: &dyn std::fmt::Display) -> Option<Link> {
    shared.set_upkeep(None);
    warn!(node = %shared.keys.node(), error = %e, "cluster bus connection lost");
    shared.health.disconnected();
    shared.metrics.up.set(0);
    shared.metrics.reconnects.inc();
    None
}

/// Fails every operation that arrives during `wait` (a late delivery would be worse than an
/// error); false if the bus itself is gone.
async fn fail_for(
    shared: &Shared,
    rx: &mut mpsc::UnboundedReceiver<Op>,
    links: &mut Outboxes,
    wait: Duration,
    why: &str,
) -> bool {
    let until = tokio::time::sleep(wait);
    tokio::pin!(until);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = &mut until => return true,
            op = rx.recv() => match op {
                Some(op) => refuse(shared, links, op, why),
                None => return false,
            },
            // Links keep settling while Redis is away: what was in flight is answered in time.
            _ = sweep.tick() => drop(links.sweep()),
        }
    }
}

/// Handles `op` while Redis cannot be reached: link upkeep still updates the links (what a
/// status asks to send again waits for the next status), anything else fails at once.
fn refuse(shared: &Shared, links: &mut Outboxes, op: Op, why: &str) {
    match op {
        Op::Status { from, inc, upto, lost, missing } => drop(links.status(&from, inc, upto, &lost, &missing)),
        Op::Bounce { from, link, why, inbound } => bounce(shared, links, from, link, &why, *inbound),
        op => shared.finish(op, Err(BusError::Unavailable(why.to_string()))),
    }
}

/// A receiving room could not deliver a relay of this node's: answer its sender once, through
/// the relay's own publish if still unsettled, else through the room.
fn bounce(shared: &Shared, links: &mut Outboxes, from: NodeId, link: Option<LinkSeq>, why: &str, inbound: Inbound) {
    let verdict = link.map_or(BounceVerdict::Deliver, |l| links.bounce(&from, l.incarnation, l.seq, why));
    if verdict == BounceVerdict::Deliver {
        shared.metrics.answered.inc();
        if let Some(i) = shared.inboxes.get() {
            // The room is gone: so is its sender, and nobody is left to tell.
            let _ = i.rooms.deliver(inbound);
        }
    }
}

async fn connect(shared: &Shared, fresh: bool) -> RedisResult<Link> {
    let mut con = shared.endpoint.connection(shared.settings.timeout).await?;
    let scripts = Scripts::load(&mut con, shared.publish).await?;
    let mut link = Link { con, scripts, epoch: 0, registered: Instant::now(), since: Instant::now() };
    link.epoch = register(shared, &mut link, fresh).await?;
    Ok(link)
}

pub(super) fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}
