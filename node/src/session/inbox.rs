//! What a session receives from the rest of the node: relays and events from its rooms, the
//! answers to its joins, evictions, the heartbeat tick and the drain order.

use std::time::Instant;

use actix::{Context, Handler, Message};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{ErrorCode, PeerId, RoomName, close};

use super::{JoinedRoom, Session};
use crate::bus::Via;
use crate::post::Homed;
use crate::room::Room;

/// A frame for the client: a relay, an event, or a reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: Bytes,
    pub kind: &'static str,
    /// When the relayed message reached this node, for the relay latency histogram.
    pub received_at: Option<Instant>,
    /// For a signal sent to this one peer: whom to answer `undeliverable` if it never reaches
    /// the client (`None` for everything else, so the common path carries one null pointer).
    pub provenance: Option<Box<Provenance>>,
}

impl Deliver {
    /// A frame nobody needs an answer for (an event, a broadcast, a reply).
    pub fn new(frame: Bytes, kind: &'static str) -> Self {
        Deliver { frame, kind, received_at: None, provenance: None }
    }
}

/// Where a signal for one peer came from: its sender is answered `undeliverable` with its `id`
/// if it is kept for the peer (a drain, a resume) and never reaches the client.
pub struct Provenance {
    /// The room that delivered it: it knows where the sender is by the time it is answered.
    pub room: Homed<Room>,
    pub from: PeerId,
    /// The node (and its place on that node's link) it came from; `None` from this node.
    pub via: Option<Via>,
    pub id: Option<Box<RawValue>>,
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let Some(mut msg) = self.buffer_while_resuming(msg) else { return };
        let provenance = msg.provenance.take();
        if let Some(p) = provenance.as_deref()
            && p.via.as_ref().and_then(|v| v.expires).is_some_and(|t| t <= Instant::now())
        {
            // Past its link's deadline (this node stalled since it arrived): its sender may
            // have been answered already, so it must not reach the client now. It is answered
            // (once) instead.
            self.state.metrics.bus.expired.inc();
            return self.expired(provenance.map(|p| *p));
        }
        self.send(msg.frame, msg.kind, ctx);
        if let Some(p) = provenance {
            // Kept for a resume, or dropped by a closing socket: its sender may be owed an answer.
            self.written_or_owed(*p);
        }
        if let Some(t) = msg.received_at {
            self.state.metrics.relay_latency.observe(t.elapsed().as_secs_f64());
        }
    }
}

/// The room accepted this session's join.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JoinAccepted {
    pub room: RoomName,
    pub addr: Homed<Room>,
    pub frame: Bytes,
}

impl Handler<JoinAccepted> for Session {
    type Result = ();

    fn handle(&mut self, msg: JoinAccepted, ctx: &mut Context<Self>) {
        if let Some(i) = self.pending.iter().position(|r| *r == msg.room) {
            self.pending.swap_remove(i);
            self.rooms.push(JoinedRoom { name: msg.room, addr: msg.addr });
        } else if !self.rooms.iter().any(|r| r.name == msg.room) {
            // The client left before the join completed; the room has the leave queued.
            return;
        }
        // (Already in the room: a seed member renamed by a repeated join.)
        self.send(msg.frame, "joined", ctx);
    }
}

/// A room took this resumed session's member back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResumeAccepted {
    pub room: RoomName,
    pub addr: Homed<Room>,
}

impl Handler<ResumeAccepted> for Session {
    type Result = ();

    fn handle(&mut self, msg: ResumeAccepted, ctx: &mut Context<Self>) {
        let joined = JoinedRoom { name: msg.room.clone(), addr: msg.addr };
        self.room_resumed(msg.room, Some(joined), ctx);
    }
}

/// A room could not take this resumed session's member back (it is gone from the room).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResumeRefused {
    pub room: RoomName,
}

impl Handler<ResumeRefused> for Session {
    type Result = ();

    fn handle(&mut self, msg: ResumeRefused, ctx: &mut Context<Self>) {
        self.room_resumed(msg.room, None, ctx);
    }
}

/// The room refused this session's join; `frame` is the error to show.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JoinRefused {
    pub room: RoomName,
    pub frame: Bytes,
}

impl Handler<JoinRefused> for Session {
    type Result = ();

    fn handle(&mut self, msg: JoinRefused, ctx: &mut Context<Self>) {
        self.pending.retain(|r| *r != msg.room);
        self.send(msg.frame, "error", ctx);
    }
}

/// The room removed this session (a seed user id taken over, an operator's kick or close).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evicted {
    pub room: RoomName,
    pub frame: Option<Bytes>,
    /// The frame's type, for metrics.
    pub kind: &'static str,
}

impl Handler<Evicted> for Session {
    type Result = ();

    fn handle(&mut self, msg: Evicted, ctx: &mut Context<Self>) {
        if let Some(i) = self.rooms.iter().position(|r| r.name == msg.room) {
            let room = self.rooms.swap_remove(i);
            self.owed_lost_in(&room.addr);
        }
        // Removed while its join was still settling: the room will not confirm it.
        self.pending.retain(|r| *r != msg.room);
        if let Some(frame) = msg.frame {
            self.send(frame, msg.kind, ctx);
        }
    }
}

/// The node is shutting down: close with "going away" so the client reconnects elsewhere.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Session {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.close(close::GOING_AWAY, "shutdown", LeaveReason::Shutdown, ctx);
    }
}

/// The node's heartbeat tick: ping the client, or close it if it has gone quiet.
///
/// One node-wide ticker sends this to every session (see [`crate::heartbeat`]) instead of a
/// timer per session: an idle session then holds no timer, and a busy one is not re-polling
/// one on every wake-up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat;

impl Handler<Heartbeat> for Session {
    type Result = ();

    fn handle(&mut self, _: Heartbeat, ctx: &mut Context<Self>) {
        if self.io.is_none() {
            // No socket: it waits for a resume (or its grace's end).
        } else if self.last_seen.elapsed() > self.state.config.idle_timeout() {
            self.state.metrics.error(ErrorCode::IdleTimeout);
            if self.may_detach() {
                // Silence is a broken path as much as a closed one: held for a resume.
                self.out.close(Some(actix_http::ws::CloseReason {
                    code: close::IDLE_TIMEOUT.into(),
                    description: Some("idle-timeout".into()),
                }));
                return self.detach(ctx);
            }
            self.close(close::IDLE_TIMEOUT, "idle-timeout", LeaveReason::Timeout, ctx);
        } else {
            self.out.control(actix_http::ws::Message::Ping(Bytes::new()));
        }
    }
}
