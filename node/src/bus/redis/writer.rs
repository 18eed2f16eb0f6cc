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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, RedisError, RedisResult, Value};
use switchboard::protocol::{PeerId, RoomName};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::backoff::Backoff;
use super::lease::{leave_cluster, publish_canary, reap_nodes, register, renew_lease};
use super::replies::is_script_error;
use super::scripts::Scripts;
use super::{Shared, wire};
use crate::bus::{BusError, Claim, ClusterEvent, Delivery, MemberRecord, NodeId};

/// One queued operation and where its answer goes.
pub enum Op {
    Join {
        room: RoomName,
        member: MemberRecord,
        joined: Vec<u8>,
        /// Members the room may hold on all nodes together (0: no cap).
        capacity: usize,
        /// How many nodes were told, and the other nodes' members.
        reply: oneshot::Sender<Result<(usize, Vec<MemberRecord>), BusError>>,
    },
    Leave {
        room: RoomName,
        peer: PeerId,
        left: Vec<u8>,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    Publish {
        nodes: Vec<NodeId>,
        payload: Bytes,
        /// The lease generation the caller saw: a relay from before this node re-registered
        /// would reach nodes that no longer know its sender, so it is refused instead.
        generation: u64,
        queued_at: Instant,
        reply: oneshot::Sender<Result<Delivery, BusError>>,
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
            Op::Publish { reply, .. } => drop(reply.send(Err(err))),
        }
    }

    fn commands(&self) -> usize {
        match self {
            Op::Publish { nodes, .. } => nodes.len(),
            _ => 1,
        }
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

pub async fn run(shared: Arc<Shared>, client: redis::Client, mut rx: mpsc::UnboundedReceiver<Op>) {
    let lease = shared.settings.lease;
    let mut renew = tokio::time::interval(lease / 3);
    let mut reap = tokio::time::interval((lease / 6).max(Duration::from_millis(50)));
    let mut canary = tokio::time::interval(shared.settings.canary_every);
    for t in [&mut renew, &mut reap, &mut canary] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut link: Option<Link> = None;
    let mut fresh = true;
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut canary_seq = 0u64;
    loop {
        let Some(l) = link.as_mut() else {
            if !shared.health.is_subscribed() {
                // Registering before the subscription is up would let a peer's Joined go
                // unheard: wait for it (failing what arrives meanwhile).
                if !fail_for(&shared, &mut rx, Duration::from_millis(20), "the cluster subscription is not up").await {
                    return;
                }
                continue;
            }
            // Connecting can take up to its timeout (a frozen Redis accepts and never answers):
            // fail what arrives meanwhile rather than hold it.
            let connecting = connect(&shared, &client, fresh);
            tokio::pin!(connecting);
            let connected = loop {
                tokio::select! {
                    r = &mut connecting => break r,
                    op = rx.recv() => match op {
                        Some(op) => shared.finish(op, Err(BusError::Unavailable("reconnecting to Redis".into()))),
                        None => return,
                    },
                }
            };
            match connected {
                Ok(l) => {
                    info!(node = %shared.keys.node(), epoch = l.epoch, "cluster bus connected");
                    shared.health.connected_now();
                    shared.metrics.up.set(1);
                    // Members admitted while there was no lease (even before the first one)
                    // are written now; rooms already up to date skip it.
                    shared.send_cluster(ClusterEvent::Reassert);
                    fresh = false;
                    backoff.reset();
                    link = Some(l);
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    warn!(node = %shared.keys.node(), error = %e, retry_in_ms = wait.as_millis() as u64, "cluster bus unreachable");
                    if !fail_for(&shared, &mut rx, wait, &e.to_string()).await {
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
                    if let Op::Goodbye { reply } = op {
                        goodbye = Some(reply);
                        break;
                    }
                    commands += op.commands();
                    batch.push(op);
                    if commands < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                let outcome = if batch.is_empty() { Ok(Next::Continue) } else { execute(&shared, l, &mut batch).await };
                if let Some(reply) = goodbye {
                    let _ = reply.send(leave_cluster(&shared, l).await.map_err(|e| BusError::Unavailable(e.to_string())));
                    return;
                }
                outcome
            }
            _ = renew.tick() => renew_lease(&shared, l).await,
            _ = reap.tick() => reap_nodes(&shared, l).await,
            _ = canary.tick() => {
                canary_seq += 1;
                publish_canary(&shared, l, canary_seq).await
            }
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
                Err(e) => link = lost(&shared, e),
            },
            Err(e) => link = lost(&shared, e),
        }
    }
}

pub(super) enum Next {
    Continue,
    /// The lease is gone: take a new one.
    Register,
}

fn lost(shared: &Shared, e: RedisError) -> Option<Link> {
    warn!(node = %shared.keys.node(), error = %e, "cluster bus connection lost");
    shared.health.disconnected();
    shared.metrics.up.set(0);
    shared.metrics.reconnects.inc();
    None
}

/// Fails every operation that arrives during `wait` (a late delivery would be worse than an
/// error); false if the bus itself is gone.
async fn fail_for(shared: &Shared, rx: &mut mpsc::UnboundedReceiver<Op>, wait: Duration, why: &str) -> bool {
    let until = tokio::time::sleep(wait);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => return true,
            op = rx.recv() => match op {
                Some(op) => shared.finish(op, Err(BusError::Unavailable(why.to_string()))),
                None => return false,
            },
        }
    }
}

async fn connect(shared: &Shared, client: &redis::Client, fresh: bool) -> RedisResult<Link> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.settings.timeout))
        .set_response_timeout(Some(shared.settings.timeout));
    let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
    let scripts = Scripts::load(&mut con).await?;
    let mut link = Link { con, scripts, epoch: 0, registered: Instant::now(), since: Instant::now() };
    link.epoch = register(shared, &mut link, fresh).await?;
    Ok(link)
}

/// Sends `batch` as one pipeline and answers each operation.
async fn execute(shared: &Shared, l: &mut Link, batch: &mut Vec<Op>) -> RedisResult<Next> {
    let generation = shared.generation.load(Ordering::SeqCst);
    // A relay queued too long is not sent: it must reach its node well before the receiver's
    // deadline (see `wire::WireEvent::Relay`), or it could be counted delivered and dropped.
    let max_age = shared.settings.timeout / 2;
    let (stale, live): (Vec<Op>, Vec<Op>) = batch.drain(..).partition(|op| match op {
        Op::Publish { generation: g, queued_at, .. } => *g != generation || queued_at.elapsed() > max_age,
        _ => false,
    });
    *batch = live;
    for op in stale {
        let err = match &op {
            Op::Publish { generation: g, .. } if *g != generation => BusError::Fenced,
            _ => BusError::Unavailable("the relay waited too long for Redis".into()),
        };
        shared.finish(op, Err(err));
    }
    if batch.is_empty() {
        return Ok(Next::Continue);
    }
    let k = &shared.keys;
    let epoch = l.epoch.to_string();
    let ttl = ms(shared.settings.record_ttl);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for op in batch.iter() {
        match op {
            Op::Join { room, member, joined, capacity, .. } => {
                pipe.add_command(l.scripts.join.cmd(
                    &[&k.lease(), &k.room(room), &k.node_rooms()],
                    &[
                        k.node().as_bytes(),
                        epoch.as_bytes(),
                        member.peer.to_string().as_bytes(),
                        wire::record(member, l.epoch).as_bytes(),
                        joined,
                        ttl.as_bytes(),
                        k.channel_prefix().as_bytes(),
                        room.as_str().as_bytes(),
                        capacity.to_string().as_bytes(),
                    ],
                ));
            }
            Op::Leave { room, peer, left, .. } => {
                pipe.add_command(l.scripts.leave.cmd(
                    &[&k.lease(), &k.room(room), &k.node_rooms()],
                    &[
                        k.node().as_bytes(),
                        epoch.as_bytes(),
                        peer.to_string().as_bytes(),
                        left,
                        k.channel_prefix().as_bytes(),
                        room.as_str().as_bytes(),
                    ],
                ));
            }
            Op::Publish { nodes, payload, .. } => {
                for node in nodes {
                    pipe.add_command(publish(k.channel(node), payload));
                }
            }
            Op::Members { room, .. } => {
                pipe.cmd("HGETALL").arg(k.room(room));
            }
            Op::Park { key, value, ttl, .. } => {
                pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(ms(*ttl));
            }
            Op::Claim { key, .. } => {
                pipe.add_command(l.scripts.claim.cmd::<&str>(&[key], &[]));
            }
            Op::Move { room, member, from, moved, .. } => {
                let from_rooms = format!("{}{from}", k.node_rooms_prefix());
                pipe.add_command(l.scripts.moves.cmd(
                    &[&k.lease(), &k.room(room), &k.node_rooms(), &from_rooms],
                    &[
                        k.node().as_bytes(),
                        epoch.as_bytes(),
                        member.peer.to_string().as_bytes(),
                        wire::record(member, l.epoch).as_bytes(),
                        moved,
                        ttl.as_bytes(),
                        k.channel_prefix().as_bytes(),
                        room.as_str().as_bytes(),
                        from.as_bytes(),
                    ],
                ));
            }
            // The run loop takes a goodbye out of the batch; one that got here is a no-op.
            Op::Goodbye { .. } => {
                pipe.cmd("PING");
            }
        }
    }
    // Read after the publishes: if the lease is still ours then, it was ours while they went
    // out (only this task ever takes a lease back). If not, receivers may have dropped them.
    let publishes = batch.iter().any(|op| matches!(op, Op::Publish { .. }));
    if publishes {
        pipe.cmd("GET").arg(k.lease());
    }
    let results: Vec<RedisResult<Value>> = match pipe.query_async(&mut l.con).await {
        Ok(r) => r,
        Err(e) => {
            for op in batch.drain(..) {
                shared.finish(op, Err(BusError::Unavailable(e.to_string())));
            }
            return Err(e);
        }
    };
    let mut results = results.into_iter();
    let mut next = Next::Continue;
    let fenced = publishes
        && !matches!(results.as_slice().last(), Some(Ok(Value::BulkString(e))) if e.as_slice() == epoch.as_bytes());
    if fenced {
        next = Next::Register;
    }
    for op in batch.drain(..) {
        let n = op.commands();
        let mine: Vec<RedisResult<Value>> = results.by_ref().take(n).collect();
        if mine.iter().any(|r| r.as_ref().is_err_and(|e| is_script_error(e, "FENCED"))) {
            next = Next::Register;
        }
        if fenced && matches!(op, Op::Publish { .. }) {
            shared.finish(op, Err(BusError::Fenced));
        } else {
            shared.answer(op, mine);
        }
    }
    Ok(next)
}

fn publish(channel: String, payload: &Bytes) -> Cmd {
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(payload.as_ref());
    cmd
}

pub(super) fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}
