//! Resuming after any disconnect.
//!
//! A v1 session whose socket breaks without a close frame (a reset, a dead path, the idle
//! timeout) is not ended: it is *detached* for `--reconnect-grace-ms`, keeps numbering what its
//! rooms send (kept in its replay, not written), and its rooms tell the other members it is
//! `reconnecting`. Its client comes back with `?resume=<token>&last_seq=<n>`:
//! - on **this node**, the upgrade hands the new socket to the session itself ([`Takeover`]):
//!   it writes the resumed `welcome`, the frames after `last_seq`, and goes on; a socket it still
//!   held (a path that stalled without a reset) is dropped;
//! - on **another node**, that node asks the cluster for the session ([`Surrender`], through
//!   the bus's control channel): this node parks it exactly as a drain does (its rooms keep the
//!   member and what reaches it; the session, with its replay, is stored under its token), and
//!   the other node claims it and takes the rooms back (see [`super::handoff`]).
//!
//! Either way the rooms hear `connected` once it is back, and each frame reaches the client
//! once: the replay starts after what the client says it has. Messages the client sends again
//! are processed once, by their `cseq` (see [`super::v1`]).

use std::time::{Duration, Instant};

use actix::{ActorContext, AsyncContext, Context, Handler, Message};
use bytes::{Bytes, BytesMut};
use switchboard::protocol::v1::{LeaveReason, PeerState, ServerMessage};
use switchboard::protocol::{ErrorCode, ProtocolError};
use tracing::{debug, warn};

use super::handoff::Handoff;
use super::{Bound, Replay, ReplayError, Session};
use crate::bus::ParkedSession;
use crate::dialect::Dialect;
use crate::room::{PEER_STATE, Relay};
use crate::transport::{self, Reader};

/// What a token that opens nothing is told.
pub const UNKNOWN_TOKEN: &str = "unknown, used or expired resume token; connect afresh";

/// A parked session claimed for a resume here, checked against what its client says it has.
pub struct Resumed {
    pub parked: ParkedSession,
    pub replay: Replay,
    pub last_seq: u64,
}

impl Resumed {
    /// `last_seq`: what the client says it has; without it, what it had read by the drain's
    /// `reconnect` (or everything kept, from a node that did not number frames).
    pub fn new(mut parked: ParkedSession, last_seq: Option<u64>, bound: Bound) -> Result<Self, ReplayError> {
        let frames = std::mem::take(&mut parked.frames).into_iter().map(Bytes::from);
        let numbered = parked.first_seq > 0;
        let replay = Replay::resumed(parked.first_seq, frames, parked.last_cseq);
        let last_seq = match (numbered, last_seq.or(parked.reconnect_seq)) {
            (true, Some(n)) => n,
            _ => replay.first() - 1,
        };
        replay.check(last_seq, bound)?;
        Ok(Self { parked, replay, last_seq })
    }
}

impl Session {
    /// Whether a socket that broke holds this session for a resume rather than ending it.
    pub(super) fn may_detach(&self) -> bool {
        self.dialect == Dialect::V1
            && self.handoff.is_none()
            && !self.out.is_closing()
            && self.state.config.reconnect_grace_ms > 0
    }

    /// The socket is gone: hold the session for its client's resume.
    pub(super) fn detach(&mut self, ctx: &mut Context<Self>) {
        self.drop_socket(ctx);
        let grace = self.state.config.reconnect_grace();
        let timer = ctx.run_later(grace, |act, ctx| act.grace_over(ctx));
        self.handoff = Some(Box::new(Handoff::Detached { timer, until: Instant::now() + grace, owed: Vec::new() }));
        self.state.metrics.detached.inc();
        debug!(parent: &self.span, grace_ms = grace.as_millis() as u64, "socket lost: held for a resume");
        self.announce(PeerState::Reconnecting, ctx);
    }

    /// No resume came: the session ends, and its rooms hear it left (`timeout`).
    fn grace_over(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.handoff.as_deref(), Some(Handoff::Detached { .. })) {
            return;
        }
        debug!(parent: &self.span, "no resume in time");
        self.give_up_kept();
        self.handoff = None;
        self.leave_reason = LeaveReason::Timeout;
        ctx.stop();
    }

    /// Stops reading and writing the current socket, and lets it go.
    pub(super) fn drop_socket(&mut self, ctx: &mut Context<Self>) {
        if let Some(io) = self.io.take() {
            io.stop::<Session>(ctx);
        }
        self.out.drop_socket();
        self.fragments = None;
    }

    /// Tells the other members of its rooms how its connection stands.
    pub(super) fn announce(&self, state: PeerState, _: &mut Context<Self>) {
        let now = Instant::now();
        for r in &self.rooms {
            let frame = ServerMessage::PeerState { room: r.name.client_name(), peer_id: self.id, state }.to_json();
            r.addr.do_send(Relay {
                from: self.id,
                to: None,
                frame: Bytes::from(frame),
                kind: PEER_STATE,
                received_at: now,
                id: None,
            });
        }
    }

    /// Writes every kept frame after `last_seq` (the client has the rest), with its number.
    pub(super) fn replay_after(&mut self, last_seq: u64, ctx: &mut Context<Self>) {
        self.replay.ack(last_seq);
        let frames: Vec<(u64, Bytes)> = self.replay.after(last_seq).map(|(seq, f)| (seq, f.clone())).collect();
        for (seq, frame) in frames {
            self.write(Some(seq), &frame, "replay", ctx);
        }
    }

    /// The session cannot be resumed by anyone any more: it ends now.
    fn end_unresumable(&mut self, ctx: &mut Context<Self>) {
        if let Some(Handoff::Detached { timer, .. }) = self.handoff.as_deref() {
            ctx.cancel_future(*timer);
        }
        self.give_up_kept();
        self.handoff = None;
        self.drop_socket(ctx);
        self.leave_reason = LeaveReason::Disconnected;
        ctx.stop();
    }
}

/// A resume on this node: the new socket, for the session to take over.
#[derive(Message)]
#[rtype(result = "Result<(), TakeoverRefused>")]
pub struct Takeover {
    pub secret: u128,
    /// Upgraded already (the 101 is written); detached from the upgrading thread's reactor.
    pub io: std::net::TcpStream,
    pub leftover: BytesMut,
    pub last_seq: Option<u64>,
    pub cluster_status: bool,
}

/// The session did not take the socket: it goes back to be told why.
pub struct TakeoverRefused {
    pub io: std::net::TcpStream,
    pub error: ProtocolError,
}

impl Handler<Takeover> for Session {
    type Result = Result<(), TakeoverRefused>;

    fn handle(&mut self, t: Takeover, ctx: &mut Context<Self>) -> Self::Result {
        let refuse =
            |io, why: String| Err(TakeoverRefused { io, error: ProtocolError::new(ErrorCode::ResumeFailed, why) });
        if t.secret != self.secret || self.dialect != Dialect::V1 || self.out.is_closing() {
            return refuse(t.io, UNKNOWN_TOKEN.into());
        }
        if !matches!(self.handoff.as_deref(), None | Some(Handoff::Detached { .. })) {
            return refuse(t.io, "the session is being handed over to another node; resume again".into());
        }
        let last_seq = t.last_seq.unwrap_or(self.replay.first() - 1);
        if let Err(e) = self.replay.check(last_seq, self.state.replay_bound()) {
            if matches!(e, ReplayError::Gone { .. }) {
                // What the client missed is gone for good: nobody can resume it.
                self.end_unresumable(ctx);
            }
            return refuse(t.io, format!("{e}; connect afresh"));
        }
        let io = match tokio::net::TcpStream::from_std(t.io) {
            Ok(io) => io,
            Err(e) => {
                warn!(parent: &self.span, error = %e, "cannot take over the resumed socket");
                return Ok(());
            }
        };
        let announced = match self.handoff.take().map(|b| *b) {
            // What it kept is written now: its senders need no answer.
            Some(Handoff::Detached { timer, .. }) => {
                ctx.cancel_future(timer);
                true
            }
            _ => false,
        };
        // A socket it still held (it stalled without a reset) goes.
        self.drop_socket(ctx);
        let _ = io.set_nodelay(true);
        let (rd, wr) = io.into_split();
        self.out.attach(wr);
        self.io =
            Some(transport::start::<Session>(ctx, Reader::new(rd, t.leftover, self.state.config.max_message_bytes)));
        self.secret = rand::random();
        self.cluster_status = t.cluster_status;
        self.last_seen = Instant::now();
        self.state.metrics.resumed_here.inc();
        self.welcome(true, ctx);
        self.replay_after(last_seq, ctx);
        if announced {
            self.announce(PeerState::Connected, ctx);
        }
        debug!(parent: &self.span, last_seq, "resumed on the same node");
        Ok(())
    }
}

/// A client resumes this session on another node: park it for that node to claim.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Surrender {
    pub secret: u128,
}

/// Shortest hold of a session parked for a resume under way.
const MIN_PARK: Duration = Duration::from_secs(2);

impl Handler<Surrender> for Session {
    type Result = ();

    fn handle(&mut self, s: Surrender, ctx: &mut Context<Self>) {
        if s.secret != self.secret || self.dialect != Dialect::V1 || self.out.is_closing() {
            return;
        }
        if !self.state.bus.resumable() {
            return;
        }
        let grace = match self.handoff.as_deref() {
            None => self.state.config.reconnect_grace(),
            Some(Handoff::Detached { until, .. }) => until.saturating_duration_since(Instant::now()),
            // Told to `reconnect`, and its client went before closing here: park now.
            Some(Handoff::Parking { parked: false, .. }) => {
                self.drop_socket(ctx);
                return self.park(ctx);
            }
            Some(_) => return,
        };
        if !self.pending.is_empty() {
            // A join is settling: park after it (its `joined` goes with the session).
            ctx.run_later(Duration::from_millis(50), move |_, ctx| ctx.notify(s));
            return;
        }
        debug!(parent: &self.span, "its client resumes on another node: parking");
        self.park_now(grace.max(MIN_PARK), ctx);
    }
}
