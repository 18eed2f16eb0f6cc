//! A session's part in a drain: told to reconnect and parked on the draining node; taken back
//! on the node its client comes back to (see `crate::room`'s handoff for the rooms' part).
//!
//! Parking waits for the client: after `reconnect` the client stops sending and closes, so
//! once its close arrives everything it sent has been relayed. Nothing more is written to the
//! socket after `reconnect` (a browser drops what reaches a socket it has begun to close):
//! what the session would have written — replies, and what its rooms deliver until they have
//! parked the member — goes with the parked session, which is stored under its token only
//! then; then the socket is closed (1012). A client that resumes after that close always finds
//! its session, and gets those frames right after the resumed `welcome`.
//!
//! A session whose socket broke is parked the same way when its client resumes on another node
//! (see [`super::resume`]): then there is no client to wait for.

use std::time::{Duration, Instant};

use actix::{ActorFutureExt, Arbiter, AsyncContext, Context, Handler, Message, SpawnHandle, WrapFuture};
use serde_json::value::RawValue;
use switchboard::protocol::v1::{LeaveReason, PeerState, ServerMessage};
use switchboard::protocol::{ErrorCode, ProtocolError, RoomName, close};
use tracing::{debug, warn};

use super::{Deliver, JoinedRoom, Provenance, Session};
use crate::bus::{ParkedRoom, ParkedSession};
use crate::dialect::{Dialect, error_frame};
use crate::post::Homed;
use crate::registry::RouteResume;
use crate::room::{Fate, Leave, Owed, Park, Resume, Room};

/// How long a client told to reconnect has to close its socket before it is parked anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// How much longer than the client's window the token lives (clocks, a resume in flight).
const TOKEN_MARGIN: Duration = Duration::from_secs(1);

/// How much longer than the token a parked member waits in its rooms: a resume that took the
/// token just in time still finds its member.
const MEMBER_MARGIN: Duration = Duration::from_secs(2);

pub enum Handoff {
    /// Its socket broke (no close frame): held for a resume until `--reconnect-grace-ms` ends
    /// (`timer`). Frames are numbered and kept, not written; `owed` are the senders of the
    /// signals among them, answered if no resume comes.
    Detached { timer: SpawnHandle, until: Instant, owed: Vec<Provenance> },
    /// Parks once its client has closed (`reconnect` sent), or at once (its client resumes
    /// elsewhere); frames are kept, not written.
    Parking {
        grace: Duration,
        parked: bool,
        /// The `seq` of the `reconnect` frame: a client that does not say what it has read
        /// (`last_seq`) read nothing after it.
        reconnect_seq: Option<u64>,
        /// Its rooms were told it is `reconnecting`: they hear `connected` when it resumes.
        announced: bool,
        /// Rooms still to answer [`Park`], and what those that did said.
        waiting: usize,
        rooms: Vec<ParkedRoom>,
        /// Where the signals for one peer among the kept frames came from; handed back to their
        /// rooms (`None` since) once the session is stored: they go with it, and are answered
        /// if no resume takes them.
        owed: Option<Vec<Provenance>>,
    },
    /// Taking its rooms back; `welcome` waits until every room has answered, then the frames
    /// after `last_seq` (kept by the old node) and `buffered` (what its rooms delivered here
    /// meanwhile) follow.
    Resuming {
        parked: Option<ParkedSession>,
        last_seq: u64,
        waiting: usize,
        failed: bool,
        buffered: Vec<Deliver>,
        /// Its old rooms heard it was `reconnecting`: they hear `connected` once it is back.
        announced: bool,
    },
}

impl Handoff {
    pub fn resuming(parked: ParkedSession, last_seq: u64) -> Self {
        Handoff::Resuming {
            parked: Some(parked),
            last_seq,
            waiting: 0,
            failed: false,
            buffered: Vec::new(),
            announced: false,
        }
    }

    /// Parking, `owed` carried over from a detached session.
    pub(super) fn parking(grace: Duration, reconnect_seq: Option<u64>, announced: bool, owed: Vec<Provenance>) -> Self {
        Handoff::Parking {
            grace,
            parked: false,
            reconnect_seq,
            announced,
            waiting: 0,
            rooms: Vec::new(),
            owed: Some(owed),
        }
    }
}

/// A room parked this session's member (`None`: it was not a member any more).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomParked {
    pub parked: Option<ParkedRoom>,
}

impl Handler<RoomParked> for Session {
    type Result = ();

    fn handle(&mut self, msg: RoomParked, ctx: &mut Context<Self>) {
        let Some(Handoff::Parking { waiting, rooms, .. }) = self.handoff.as_deref_mut() else { return };
        if *waiting == 0 {
            return;
        }
        *waiting -= 1;
        rooms.extend(msg.parked);
        self.parked_in_rooms(ctx);
    }
}

/// The node drains: hand this session over to whichever node its client comes back to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconnect;

impl Handler<Reconnect> for Session {
    type Result = ();

    fn handle(&mut self, _: Reconnect, ctx: &mut Context<Self>) {
        match self.handoff.as_deref() {
            _ if self.out.is_closing() => return,
            Some(Handoff::Parking { .. }) => return,
            // Still taking its rooms back from another node: hand it on once it has them.
            Some(Handoff::Resuming { .. }) => {
                ctx.run_later(Duration::from_millis(50), |_, ctx| ctx.notify(Reconnect));
                return;
            }
            Some(Handoff::Detached { .. }) | None => {}
        }
        if self.dialect == Dialect::Seed || !self.state.bus.resumable() {
            // The seed protocol has no resume, and a lone node nowhere to resume to.
            return self.close(close::GOING_AWAY, "shutdown", LeaveReason::Shutdown, ctx);
        }
        if !self.pending.is_empty() {
            // A join is settling (bounded by the bus's acknowledgement wait): park after it.
            ctx.run_later(Duration::from_millis(50), |_, ctx| ctx.notify(Reconnect));
            return;
        }
        let grace = self.state.handoff.grace(self.state.config.resume_grace());
        if matches!(self.handoff.as_deref(), Some(Handoff::Detached { .. })) {
            // No socket to say `reconnect` on: park now; its client resumes with the token it has.
            return self.park_now(grace, ctx);
        }
        let token = self.token().to_string();
        let issued = self.state.bus.park(&token, None, grace + TOKEN_MARGIN);
        ctx.wait(issued.into_actor(self).map(move |res, act, ctx| {
            if let Err(e) = res {
                warn!(parent: &act.span, error = %e, "cannot park the session; closing it instead");
                return act.close(close::GOING_AWAY, "shutdown", LeaveReason::Shutdown, ctx);
            }
            let frame = ServerMessage::Reconnect { resume_token: &token, within_ms: grace.as_millis() as u64 };
            act.send(frame.to_json(), "reconnect", ctx);
            let seq = act.replay.last_seq();
            act.handoff = Some(Box::new(Handoff::parking(grace, Some(seq), false, Vec::new())));
            ctx.run_later(CLOSE_WAIT, |act, ctx| act.park(ctx));
        }));
    }
}

impl Session {
    /// True while this session waits for its client's close to park.
    pub(super) fn parking(&self) -> bool {
        matches!(self.handoff.as_deref(), Some(Handoff::Parking { parked: false, .. }))
    }

    /// True while frames for the client are kept rather than written (it was told to
    /// reconnect, or it has no socket).
    pub(super) fn holding(&self) -> bool {
        matches!(self.handoff.as_deref(), Some(Handoff::Parking { .. } | Handoff::Detached { .. }))
    }

    /// Parks this session at once for a resume elsewhere (its client is not on this socket,
    /// if it has one at all): whatever it has not written stays in its replay.
    pub(super) fn park_now(&mut self, grace: Duration, ctx: &mut Context<Self>) {
        let (owed, announced) = match self.handoff.take().map(|b| *b) {
            Some(Handoff::Detached { timer, owed, .. }) => {
                ctx.cancel_future(timer);
                (owed, true)
            }
            _ => (Vec::new(), false),
        };
        self.drop_socket(ctx);
        // Says "being parked" to a resume asking meanwhile (the store below replaces it).
        drop(self.state.bus.park(&self.token().to_string(), None, grace + TOKEN_MARGIN));
        self.handoff = Some(Box::new(Handoff::parking(grace, None, announced, owed)));
        self.park(ctx);
    }

    /// Parks this session's memberships; once every room has answered, stores the session
    /// under its token and closes the socket.
    pub(super) fn park(&mut self, ctx: &mut Context<Self>) {
        // Its rooms keep the member now: the session must not leave them when it stops.
        let rooms: Vec<JoinedRoom> = self.rooms.drain(..).collect();
        let Some(Handoff::Parking { grace, parked, waiting, .. }) = self.handoff.as_deref_mut() else { return };
        if *parked {
            return;
        }
        *parked = true;
        *waiting = rooms.len();
        let member_grace = *grace + TOKEN_MARGIN + MEMBER_MARGIN;
        for r in &rooms {
            r.addr.do_send(Park { peer: self.id, session: Homed::here(ctx.address()), grace: member_grace });
        }
        self.parked_in_rooms(ctx);
    }

    /// Every room has parked the member (each answered behind what it delivered before, so
    /// all of that is kept): store the session, then close.
    fn parked_in_rooms(&mut self, ctx: &mut Context<Self>) {
        let Some(Handoff::Parking { grace, waiting: 0, rooms, owed, reconnect_seq, announced, .. }) =
            self.handoff.as_deref_mut()
        else {
            return;
        };
        let grace = *grace;
        // Ahead of the store, so ahead of any resume's `Moved` in each room: there they wait
        // with the parked member, and are answered unless it resumes (when the replay has them).
        let owed = owed.take().unwrap_or_default();
        let reconnect_seq = *reconnect_seq;
        if let Some(seq) = reconnect_seq.filter(|_| !self.replay.acknowledges()) {
            // A client that never acknowledged resumes from its `reconnect` (it sends no
            // `last_seq`): what came before it need not be stored.
            self.replay.ack(seq);
        }
        let (first_seq, frames) = self.replay.export();
        let parked = ParkedSession {
            peer: self.id,
            node: self.state.node_id.to_string(),
            rooms: std::mem::take(rooms),
            grant: self.grant.as_ref().map(|g| g.parts()),
            frames,
            first_seq,
            last_cseq: self.replay.last_cseq,
            reconnect_seq,
            announced: *announced,
        };
        self.hand_back(owed, Fate::Kept);
        let stored = self.state.bus.park(&self.token().to_string(), Some(&parked), grace + TOKEN_MARGIN);
        ctx.wait(stored.into_actor(self).map(|res, act, ctx| {
            if let Err(e) = res {
                warn!(parent: &act.span, error = %e, "parked session not stored: it cannot resume");
            }
            debug!(parent: &act.span, "parked");
            act.state.metrics.bus.parked.inc();
            act.close(close::SERVICE_RESTART, "service-restart", LeaveReason::Shutdown, ctx);
        }));
    }

    /// A session taking over a parked one: asks each of its rooms for the member back.
    pub(super) fn start_resume(&mut self, ctx: &mut Context<Self>) {
        let Some(Handoff::Resuming { parked, .. }) = self.handoff.as_deref_mut() else { return };
        let Some(parked) = parked.take() else { return };
        let from: crate::bus::NodeId = parked.node.as_str().into();
        let was_announced = parked.announced;
        let mut waiting = 0;
        for r in parked.rooms {
            let Ok(room) = RoomName::parse(&r.room) else { continue };
            let meta = r.meta.and_then(|m| RawValue::from_string(m).ok()).map(std::sync::Arc::from);
            let resume = Resume {
                peer: self.id,
                session: Homed::here(ctx.address()),
                from: from.clone(),
                meta,
                user: r.user.map(Into::into),
                role: r.role,
            };
            self.pending.push(room.clone());
            self.state.registry.do_send(RouteResume { room, resume, arbiter: Arbiter::current() });
            waiting += 1;
        }
        if let Some(Handoff::Resuming { waiting: w, announced, .. }) = self.handoff.as_deref_mut() {
            *w = waiting;
            *announced = was_announced;
        }
        self.resume_settled(ctx);
    }

    /// A room answered (or none was asked): once all have, welcome the client back, or tell it
    /// the resume failed.
    pub(super) fn resume_settled(&mut self, ctx: &mut Context<Self>) {
        let Some(Handoff::Resuming { waiting: 0, failed, .. }) = self.handoff.as_deref() else { return };
        let failed = *failed;
        if failed {
            // What its rooms delivered meanwhile will not reach the client either.
            self.give_up_kept();
        }
        let Some(Handoff::Resuming { last_seq, buffered, announced, .. }) = self.handoff.take().map(|b| *b) else {
            return;
        };
        if failed {
            // Rooms that did take it back hear it leave (the client starts afresh).
            let err =
                ProtocolError::new(ErrorCode::ResumeFailed, "a room of the parked session is gone; connect afresh");
            // In place of `welcome`, like every refused resume: not numbered.
            self.state.metrics.error(err.code);
            self.write(None, &error_frame(self.dialect, &err, None), "error", ctx);
            return self.close(close::RESUME_FAILED, "resume-failed", LeaveReason::Disconnected, ctx);
        }
        self.state.metrics.bus.resumed.inc();
        self.welcome(true, ctx);
        self.replay_after(last_seq, ctx);
        for d in buffered {
            self.send(d.frame, d.kind, ctx);
        }
        if announced {
            self.announce(PeerState::Connected, ctx);
        }
        debug!(parent: &self.span, "resumed");
    }

    /// A signal for this peer with a sender to answer has been handed to the socket: fine,
    /// unless it was kept for a resume instead (owed until the resume takes it), or the socket
    /// is closing and dropped it (its sender is answered now).
    pub(super) fn written_or_owed(&mut self, p: Provenance) {
        match self.handoff.as_deref_mut() {
            Some(Handoff::Parking { owed: Some(owed), .. } | Handoff::Detached { owed, .. }) => owed.push(p),
            // Kept after the parked session was stored (or given up): it goes nowhere.
            Some(Handoff::Parking { owed: None, .. }) => self.hand_back(vec![p], Fate::Lost),
            _ if self.out.is_closing() => self.hand_back(vec![p], Fate::Lost),
            _ => {}
        }
    }

    /// A signal that reached this session past its link's deadline: answered, never written.
    pub(super) fn expired(&self, p: Option<Provenance>) {
        self.hand_back(p.into_iter().collect(), Fate::Late);
    }

    /// Gives signals this session did not write to its client back to the rooms that delivered
    /// them, with their `fate`.
    fn hand_back(&self, owed: Vec<Provenance>, fate: Fate) {
        for p in owed {
            let room = p.room.clone();
            room.do_send(Owed { peer: self.id, provenance: p, fate });
        }
    }

    /// The session leaves `room` while it keeps frames for a resume: those `room` delivered are
    /// lost (a resume will not find the member there).
    pub(super) fn owed_lost_in(&mut self, room: &actix::Addr<Room>) {
        let owed = match self.handoff.as_deref_mut() {
            Some(Handoff::Parking { owed: Some(owed), .. } | Handoff::Detached { owed, .. }) => owed,
            _ => return,
        };
        let (lost, kept): (Vec<_>, Vec<_>) = std::mem::take(owed).into_iter().partition(|p| p.room == *room);
        *owed = kept;
        self.hand_back(lost, Fate::Lost);
    }

    /// The session ends: what it kept for a resume it will not have (it never parked, it was
    /// still resuming, or its client did not come back) is answered.
    pub(super) fn give_up_kept(&mut self) {
        let lost = match self.handoff.as_deref_mut() {
            Some(Handoff::Parking { owed, .. }) => owed.take().unwrap_or_default(),
            Some(Handoff::Detached { owed, .. }) => std::mem::take(owed),
            Some(Handoff::Resuming { buffered, .. }) => {
                std::mem::take(buffered).into_iter().filter_map(|d| d.provenance.map(|p| *p)).collect()
            }
            None => return,
        };
        self.hand_back(lost, Fate::Lost);
    }

    /// Keeps `d` if this session is still resuming; gives it back otherwise.
    pub(super) fn buffer_while_resuming(&mut self, d: Deliver) -> Option<Deliver> {
        match self.handoff.as_deref_mut() {
            Some(Handoff::Resuming { buffered, .. }) => {
                buffered.push(d);
                None
            }
            _ => Some(d),
        }
    }

    /// One room answered a resume.
    pub(super) fn room_resumed(&mut self, room: RoomName, joined: Option<JoinedRoom>, ctx: &mut Context<Self>) {
        self.pending.retain(|r| *r != room);
        let ok = joined.is_some();
        if let Some(j) = joined {
            self.rooms.push(j);
        }
        if let Some(Handoff::Resuming { waiting, failed, .. }) = self.handoff.as_deref_mut() {
            *waiting = waiting.saturating_sub(1);
            *failed |= !ok;
        }
        self.resume_settled(ctx);
    }
}

/// The node is leaving the cluster: a session still waiting for its client's close (it was
/// told to `reconnect` and did not go) will not park any more. What it kept is answered, it
/// leaves its rooms at once (what they would still send it is answered there), and closes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Abandon;

impl Handler<Abandon> for Session {
    type Result = ();

    fn handle(&mut self, _: Abandon, ctx: &mut Context<Self>) {
        if !self.parking() {
            return;
        }
        self.give_up_kept();
        self.handoff = None;
        for room in self.rooms.drain(..) {
            room.addr.do_send(Leave { peer: self.id, reason: LeaveReason::Shutdown });
        }
        self.close(close::GOING_AWAY, "shutdown", LeaveReason::Shutdown, ctx);
    }
}
