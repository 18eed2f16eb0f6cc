//! One round trip of the writer: a batch of operations sent as one pipeline, each answered
//! from its own commands' results.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::{Cmd, RedisResult, Value};
use switchboard::cluster::endpoint::wrong_server;

use super::Shared;
use super::link::Outboxes;
use super::replies::is_script_error;
use super::wire;
use super::writer::{Link, Next, Op, ms};
use crate::bus::{BusError, MemberRecord, NodeId};

/// What each command of the pipeline was for.
enum Sent {
    Op(Op),
    /// A message on the link to that node, with its sequence number.
    Link(NodeId, u64),
    /// A status or a probe: nobody waits for it.
    Upkeep,
}

/// Sends `batch` as one pipeline and answers each operation.
pub(super) async fn execute(
    shared: &Shared,
    l: &mut Link,
    links: &mut Outboxes,
    batch: &mut Vec<Op>,
) -> RedisResult<Next> {
    let generation = shared.generation.load(Ordering::SeqCst);
    // A relay queued too long is not sent: it must reach its node well before its deadline.
    let max_age = shared.settings.timeout / 2;
    let k = &shared.keys;
    let epoch = l.epoch.to_string();
    let ttl = ms(shared.settings.record_ttl);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut sent = Vec::with_capacity(batch.len());
    for op in batch.drain(..) {
        match op {
            Op::Publish { generation: g, queued_at, .. } if g != generation || queued_at.elapsed() > max_age => {
                let err = if g != generation {
                    BusError::Fenced
                } else {
                    BusError::Unavailable("the relay waited too long for Redis".into())
                };
                shared.finish(op, Err(err));
            }
            Op::Publish { nodes, body, replies, .. } => {
                shared.queued.fetch_sub(1, Ordering::Relaxed);
                for (node, reply) in nodes.into_iter().zip(replies) {
                    match links.open(&node, &body, reply) {
                        Ok((seq, payload)) => {
                            pipe.add_command(publish(shared.publish, k.channel(&node), &payload));
                            sent.push(Sent::Link(node, seq));
                        }
                        Err(reply) => {
                            shared.metrics.errors.inc();
                            let why = "too many messages to the peer's node are unsettled";
                            let _ = reply.send(Err(BusError::Lost(why.into())));
                        }
                    }
                }
            }
            Op::Send { node, payload } => {
                pipe.add_command(publish(shared.publish, k.channel(&node), &payload));
                sent.push(Sent::Upkeep);
            }
            Op::Control { payload } => {
                pipe.add_command(publish(shared.publish, k.control(), &payload));
                sent.push(Sent::Upkeep);
            }
            op => {
                add_command(&mut pipe, shared, l, &op, &epoch, &ttl);
                sent.push(Sent::Op(op));
            }
        }
    }
    if sent.is_empty() {
        return Ok(Next::Continue);
    }
    // Read after the publishes: if the lease is still ours then, it was ours while they went
    // out (only this task ever takes a lease back). If not, take a new one; what the
    // receivers dropped meanwhile comes back through the links.
    let publishes = sent.iter().filter(|s| matches!(s, Sent::Link(..))).count();
    if publishes > 0 {
        pipe.cmd("GET").arg(k.lease());
        shared.metrics.published.inc_by(publishes as u64);
    }
    let results: Vec<RedisResult<Value>> = match pipe.query_async(&mut l.con).await {
        Ok(r) => r,
        Err(e) => {
            // Messages on links may or may not have gone out: their links settle them.
            for s in sent {
                if let Sent::Op(op) = s {
                    shared.finish(op, Err(BusError::Unavailable(e.to_string())));
                }
            }
            return Err(e);
        }
    };
    let mut next = Next::Continue;
    let lease_held = matches!(results.last(), Some(Ok(Value::BulkString(e))) if e.as_slice() == epoch.as_bytes());
    if publishes > 0 && !lease_held {
        next = Next::Register;
    }
    if results.iter().any(|r| r.as_ref().is_err_and(wrong_server)) {
        next = Next::Reconnect("this Redis no longer serves the keys (READONLY, MOVED…): the master or the slot moved");
    }
    for (s, result) in sent.into_iter().zip(results) {
        match s {
            Sent::Op(op) => {
                if result.as_ref().is_err_and(|e| is_script_error(e, "FENCED")) && matches!(next, Next::Continue) {
                    next = Next::Register;
                }
                shared.answer(op, vec![result]);
            }
            Sent::Link(node, seq) => {
                let receivers = match result {
                    Ok(Value::Int(n)) => Some(n),
                    _ => None,
                };
                if receivers == Some(0) {
                    shared.metrics.undelivered.inc();
                }
                links.published(&node, seq, receivers);
            }
            Sent::Upkeep => {}
        }
    }
    Ok(next)
}

/// The join script's seat arguments: the seed user id as its record writes it (JSON), empty
/// for no check (no seat asked for, or an anonymous member, which holds no seat); and the
/// joiner's token user after a `=`, empty for an anonymous joiner.
fn seat_args(member: &MemberRecord, check: bool) -> (String, String) {
    let seat = member.seed_user.as_deref().filter(|u| check && !u.is_empty());
    let seat = seat.and_then(|u| serde_json::to_string(u).ok()).unwrap_or_default();
    let user = member.user.as_deref().map(|u| format!("={u}")).unwrap_or_default();
    (seat, user)
}

fn add_command(pipe: &mut redis::Pipeline, shared: &Shared, l: &Link, op: &Op, epoch: &str, ttl: &str) {
    let k = &shared.keys;
    match op {
        Op::Join { room, member, joined, capacity, seat, .. } => {
            let (seat, user) = seat_args(member, *seat);
            pipe.add_command(l.scripts.join.recording(
                k,
                &[&k.lease(), &k.room(room), &k.node_rooms(), &k.limbo()],
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
                    seat.as_bytes(),
                    user.as_bytes(),
                ],
            ));
        }
        Op::Leave { room, peer, left, reason, .. } => {
            pipe.add_command(l.scripts.leave.recording(
                k,
                &[&k.lease(), &k.room(room), &k.node_rooms()],
                &[
                    k.node().as_bytes(),
                    epoch.as_bytes(),
                    peer.to_string().as_bytes(),
                    left,
                    k.channel_prefix().as_bytes(),
                    room.as_str().as_bytes(),
                    reason.as_str().as_bytes(),
                ],
            ));
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
        // Handled before a pipeline is built; one that got here is a no-op.
        Op::Goodbye { .. }
        | Op::Publish { .. }
        | Op::Send { .. }
        | Op::Control { .. }
        | Op::Status { .. }
        | Op::Bounce { .. } => {
            pipe.cmd("PING");
        }
    }
}

fn publish(command: &str, channel: String, payload: &Bytes) -> Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(channel).arg(payload.as_ref());
    cmd
}
