//! The session actor: one per WebSocket.
//!
//! It owns its socket (through [`crate::transport`]), checks every client message against the
//! protocol and the connection's limits, serializes what it relays once, and hands it to the
//! room. It is the only place a peer's identity is stamped on a message, so a client can never
//! speak as another peer. The dialects' message handling lives in [`v1`] and [`seed`].

mod cluster;
mod grant;
mod handoff;
mod inbox;
mod replay;
mod resume;
mod seed;
mod v1;

pub use cluster::ClusterChanged;
pub use grant::Grant;
pub use handoff::{Abandon, Reconnect, RoomParked};
pub use inbox::{
    Deliver, Drain, Evicted, Heartbeat, JoinAccepted, JoinRefused, Provenance, ResumeAccepted, ResumeRefused,
};
pub use replay::{Bound, Replay, ReplayError};
pub use resume::{Resumed, Surrender, Takeover, TakeoverRefused, UNKNOWN_TOKEN};

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Running};
use actix_http::ws::{CloseCode, CloseReason, Frame, Item, ProtocolError as WsError};
use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;
use switchboard::protocol::v1::{LeaveReason, ResumeToken, ServerMessage};
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError, RoomName, close};
use tokio::net::TcpStream;
use tracing::{Span, debug, info, info_span};

use crate::dialect::{Dialect, error_frame};
use crate::limits::Admission;
use crate::post::Homed;
use crate::registry::RouteLeave;
use crate::room::{Leave, Room};
use crate::state::NodeState;
use crate::transport::{self, Connection, Outbox, Reader};

/// How long a closing session waits for its close frame to flush before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct Session {
    id: PeerId,
    dialect: Dialect,
    state: Arc<NodeState>,
    rooms: Vec<JoinedRoom>,
    /// Rooms whose join is on its way.
    pending: Vec<RoomName>,
    out: Outbox,
    admission: Admission,
    last_seen: Instant,
    /// A fragmented text message being reassembled (`None` when not fragmented).
    fragments: Option<BytesMut>,
    /// Why this peer leaves its rooms when the session ends.
    leave_reason: LeaveReason,
    /// What its access token allows; `None` for an anonymous peer (no token required).
    grant: Option<Box<Grant>>,
    /// Being handed to another node (draining) or taken over from one (resuming).
    handoff: Option<Box<handoff::Handoff>>,
    /// The client asked for `cluster-status` frames (`?notify=cluster-status`, v1 only).
    cluster_status: bool,
    /// What it sent the client (numbered), for a resume; and what the client sent (`cseq`).
    replay: Replay,
    /// The secret of the token that resumes this session (`welcome.resume_token`).
    secret: u128,
    /// Its socket's reader and writer; `None` while it has no socket.
    io: Option<transport::Running>,
    span: Span,
}

struct JoinedRoom {
    name: RoomName,
    addr: Homed<Room>,
}

impl Session {
    /// Starts a session on the current worker thread over a freshly upgraded socket.
    pub fn start(
        state: Arc<NodeState>,
        dialect: Dialect,
        io: TcpStream,
        leftover: BytesMut,
        grant: Option<Box<Grant>>,
        resume: Option<Resumed>,
        cluster_status: bool,
    ) -> Addr<Session> {
        let _ = io.set_nodelay(true);
        let (rd, wr) = io.into_split();
        let now = Instant::now();
        let id = resume.as_ref().map_or_else(|| PeerId(rand::random()), |r| r.parked.peer);
        let (replay, handoff) = match resume {
            Some(r) => (r.replay, Some(Box::new(handoff::Handoff::resuming(r.parked, r.last_seq)))),
            None => (Replay::new(), None),
        };
        let span = info_span!("session", node = %state.node_id, peer = %id, proto = dialect.as_str());
        Session::create(move |ctx| {
            let io = transport::start::<Session>(ctx, Reader::new(rd, leftover, state.config.max_message_bytes));
            Session {
                id,
                dialect,
                out: Outbox::new(wr, state.config.max_outbound_bytes),
                admission: Admission::new(&state.config, now),
                state,
                rooms: Vec::new(),
                pending: Vec::new(),
                last_seen: now,
                fragments: None,
                leave_reason: LeaveReason::Disconnected,
                grant,
                handoff,
                // The seed protocol has no such frame: its clients get none, whatever they ask.
                cluster_status: cluster_status && dialect == Dialect::V1,
                replay,
                secret: rand::random(),
                io: Some(io),
                span,
            }
        })
    }

    /// The token that resumes this session now.
    fn token(&self) -> ResumeToken {
        ResumeToken { peer: self.id, secret: self.secret }
    }

    /// The first frame of a v1 session.
    fn welcome(&mut self, resumed: bool, ctx: &mut Context<Self>) {
        let token = self.token().to_string();
        let welcome = ServerMessage::Welcome {
            protocol: switchboard::protocol::v1::VERSION,
            peer_id: self.id,
            node_id: &self.state.node_id,
            heartbeat_ms: self.state.config.heartbeat().as_millis() as u64,
            limits: &self.state.limits,
            resumed,
            cluster: self.state.cluster.as_ref().map(|c| c.status()),
            resume_token: &token,
            resume_within_ms: self.state.config.reconnect_grace_ms,
            last_cseq: resumed.then_some(self.replay.last_cseq),
        }
        .to_json();
        // The one frame without a number: it starts (or restarts) the numbering's connection.
        self.write(None, welcome.as_bytes(), "welcome", ctx);
    }

    /// Queues a frame for the client (a v1 client's numbered and kept for a resume, and only
    /// kept while it has no socket to read it from).
    fn send(&mut self, frame: impl Into<Bytes>, kind: &'static str, ctx: &mut Context<Self>) {
        let frame = frame.into();
        if self.dialect == Dialect::Seed {
            return self.write(None, &frame, kind, ctx);
        }
        let seq = self.replay.push(frame.clone(), self.state.replay_bound());
        if self.holding() {
            return;
        }
        self.write(Some(seq), &frame, kind, ctx);
    }

    /// Writes a frame to the socket; a client too slow to take it is cut off.
    fn write(&mut self, seq: Option<u64>, frame: &[u8], kind: &'static str, ctx: &mut Context<Self>) {
        let queued = match seq {
            Some(seq) => self.out.numbered(seq, frame),
            None => self.out.text(frame),
        };
        if queued.is_err() {
            let queued = self.out.queued();
            info!(parent: &self.span, queued, "outbound queue full: closing slow consumer");
            self.state.metrics.error(ErrorCode::SlowConsumer);
            self.close(close::SLOW_CONSUMER, "slow-consumer", LeaveReason::SlowConsumer, ctx);
            return;
        }
        self.state.metrics.message_out(self.dialect, kind);
    }

    /// Reports `err` to the client as an `error` frame.
    fn fail(&mut self, err: &ProtocolError, id: Option<&RawValue>, ctx: &mut Context<Self>) {
        self.state.metrics.error(err.code);
        let frame = error_frame(self.dialect, err, id);
        self.send(frame, "error", ctx);
    }

    /// Sends a close frame, then ends the session once it is flushed (or after a grace period).
    fn close(&mut self, code: u16, reason: &str, leave: LeaveReason, ctx: &mut Context<Self>) {
        if self.out.is_closing() {
            return;
        }
        self.leave_reason = leave;
        if self.io.is_none() {
            // No socket to close (it broke; the session was waiting for a resume).
            return ctx.stop();
        }
        self.out.close(Some(CloseReason { code: CloseCode::from(code), description: Some(reason.to_string()) }));
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }

    fn room(&self, name: &str) -> Option<&JoinedRoom> {
        self.rooms.iter().find(|r| r.name.client_name() == name)
    }

    fn is_member_or_pending(&self, name: &RoomName) -> bool {
        self.rooms.iter().any(|r| r.name == *name) || self.pending.contains(name)
    }

    /// Admission common to every join: the access token's room, the per-connection room limit
    /// and duplicates.
    fn admit_join(&self, name: &RoomName) -> Result<(), ProtocolError> {
        if let Some(grant) = &self.grant {
            grant.check_join(name.client_name())?;
        }
        if self.is_member_or_pending(name) {
            return Err(ProtocolError::new(ErrorCode::AlreadyJoined, "already a member of this room"));
        }
        let max = self.state.config.max_rooms_per_connection;
        if self.rooms.len() + self.pending.len() >= max {
            return Err(ProtocolError::new(
                ErrorCode::RoomLimit,
                format!("a connection may be in at most {max} rooms"),
            ));
        }
        Ok(())
    }

    /// Leaves `name` (explicitly); returns whether the session was a member or on its way in.
    ///
    /// A join still on its way is cancelled through the registry, so the leave reaches the room
    /// after the join; the room's late `JoinAccepted` is then ignored.
    fn leave_room(&mut self, name: &RoomName) -> bool {
        let leave = Leave { peer: self.id, reason: LeaveReason::Left };
        if let Some(i) = self.rooms.iter().position(|r| r.name == *name) {
            let room = self.rooms.swap_remove(i);
            self.owed_lost_in(&room.addr);
            room.addr.do_send(leave);
            true
        } else if let Some(i) = self.pending.iter().position(|r| r == name) {
            let room = self.pending.swap_remove(i);
            self.state.registry.do_send(RouteLeave { room, leave });
            true
        } else {
            false
        }
    }

    /// A message over the size limit: say so, then close with 1009 (its remaining bytes cannot
    /// be skipped reliably, so the connection cannot go on).
    fn refuse_too_big(&mut self, ctx: &mut Context<Self>) {
        let max = self.state.config.max_message_bytes;
        let err = ProtocolError::new(ErrorCode::MessageTooBig, format!("messages are limited to {max} bytes"));
        self.fail(&err, None, ctx);
        self.close(close::TOO_BIG, "message-too-big", LeaveReason::Disconnected, ctx);
    }

    /// Adds a continuation to the message being reassembled, within the size limit.
    fn append_fragment(&mut self, b: &[u8], ctx: &mut Context<Self>) {
        let max = self.state.config.max_message_bytes;
        let Some(buf) = self.fragments.as_mut() else { return };
        if buf.len() + b.len() > max {
            self.fragments = None;
            return self.refuse_too_big(ctx);
        }
        buf.extend_from_slice(b);
    }

    fn on_text(&mut self, bytes: &[u8], received_at: Instant, ctx: &mut Context<Self>) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            // RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection (1007).
            self.state.metrics.message_in(self.dialect, "invalid");
            let err = ProtocolError::new(ErrorCode::BadJson, "text frames must be UTF-8 JSON");
            self.fail(&err, None, ctx);
            return self.close(close::INVALID_PAYLOAD, "invalid-utf8", LeaveReason::Disconnected, ctx);
        };
        if let Err(err) = self.admission.message(received_at) {
            self.state.metrics.message_in(self.dialect, "invalid");
            return self.fail(&err, None, ctx);
        }
        match self.dialect {
            Dialect::V1 => self.on_v1(text, received_at, ctx),
            Dialect::Seed => self.on_seed(text, received_at, ctx),
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.state.sessions.insert(self.id, ctx.address());
        self.state.metrics.connection_opened(self.dialect);
        if self.handoff.is_some() {
            // Resuming: `welcome` follows once its rooms have taken it back.
            self.start_resume(ctx);
        } else if self.dialect == Dialect::V1 {
            self.welcome(false, ctx);
        }
        debug!(parent: &self.span, "session opened");
        // A drain snapshots the directory after raising its flag, and this session registered
        // before looking at the flag: so either the drain saw this session, or this session
        // sees the drain.
        if self.state.draining() {
            ctx.notify(Reconnect);
        }
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Ahead of the leaves: the rooms answer what was kept for a resume that will not be.
        self.give_up_kept();
        for room in self.rooms.drain(..) {
            room.addr.do_send(Leave { peer: self.id, reason: self.leave_reason });
        }
        for name in self.pending.drain(..) {
            let leave = Leave { peer: self.id, reason: self.leave_reason };
            self.state.registry.do_send(RouteLeave { room: name, leave });
        }
        self.state.sessions.remove(self.id);
        self.state.sessions.release();
        self.state.metrics.connection_closed(self.dialect);
        debug!(parent: &self.span, reason = self.leave_reason.as_str(), "session closed");
    }
}

impl Connection for Session {
    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.last_seen = now;
        match frame {
            Frame::Text(bytes) => self.on_text(&bytes, now, ctx),
            Frame::Binary(_) => {
                self.state.metrics.message_in(self.dialect, "invalid");
                if let Err(err) = self.admission.message(now) {
                    return self.fail(&err, None, ctx);
                }
                let err = ProtocolError::new(
                    ErrorCode::BinaryUnsupported,
                    "binary frames are not part of the protocol; send JSON text",
                );
                self.fail(&err, None, ctx);
            }
            Frame::Continuation(item) => match item {
                Item::FirstText(b) => self.fragments = Some(BytesMut::from(&b[..])),
                Item::FirstBinary(_) => {
                    self.fragments = None;
                    let err = ProtocolError::new(
                        ErrorCode::BinaryUnsupported,
                        "binary messages are not part of the protocol",
                    );
                    self.fail(&err, None, ctx);
                }
                Item::Continue(b) => self.append_fragment(&b, ctx),
                Item::Last(b) => {
                    self.append_fragment(&b, ctx);
                    if let Some(whole) = self.fragments.take() {
                        self.on_text(&whole, now, ctx);
                    }
                }
            },
            Frame::Ping(b) => self.out.control(actix_http::ws::Message::Pong(b)),
            Frame::Pong(_) => {}
            // Told to reconnect: the client's close means all it sent has been relayed.
            Frame::Close(_) if self.parking() => self.park(ctx),
            Frame::Close(reason) => {
                let code = reason.as_ref().map_or(close::NORMAL, |r| u16::from(r.code));
                self.close(code, "bye", LeaveReason::Disconnected, ctx);
            }
        }
    }

    fn on_protocol_error(&mut self, err: WsError, ctx: &mut Context<Self>) {
        debug!(parent: &self.span, error = %err, "websocket protocol error");
        if matches!(err, WsError::Overflow) {
            self.refuse_too_big(ctx);
        } else {
            self.close(close::PROTOCOL_ERROR, "protocol-error", LeaveReason::Disconnected, ctx);
        }
    }

    fn on_closed(&mut self, ctx: &mut Context<Self>) {
        if self.io.is_none() {
            // Its socket was let go of already (the reader and the writer may both report it).
            return;
        }
        if self.parking() {
            self.park(ctx);
        } else if self.may_detach() {
            // No close frame: the network, not the client, ended it. Hold it for a resume.
            self.detach(ctx);
        } else if !matches!(self.handoff.as_deref(), Some(handoff::Handoff::Parking { .. })) || self.out.is_closing() {
            // (A session still parking stops once its own close has gone out.)
            ctx.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle session carries one of these; keep it small (see docs/architecture.md).
    #[test]
    fn session_state_stays_small() {
        let size = std::mem::size_of::<Session>();
        println!(
            "Session {size} B, Outbox {} B, Admission {} B, Reader {} B, Writer {} B, Context {} B",
            std::mem::size_of::<Outbox>(),
            std::mem::size_of::<Admission>(),
            std::mem::size_of::<Reader>(),
            std::mem::size_of::<transport::Writer>(),
            std::mem::size_of::<Context<Session>>(),
        );
        assert!(size <= 512, "Session grew to {size} bytes");
    }
}
