//! The room actor: one per room with members on this node.
//!
//! It owns the room's view of membership (its own members and, through the bus, those on
//! other nodes), admits joins against the room's capacity, and fans relays out to the members'
//! sessions. Frames arrive already serialized by the sending session, so a broadcast to N
//! members costs N reference-count increments, not N serializations.

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::seed::SeedServerMessage;
use switchboard::protocol::v1::{LeaveReason, PeerInfo, ServerMessage};
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError, RoomName};
use tracing::{Span, debug, info_span, warn};

use crate::bus::{Inbound, MemberRecord, RoomEvent};
use crate::dialect::{Dialect, error_frame};
use crate::registry::{Registry, RoomIdle};
use crate::session::{Deliver, Evicted, JoinAccepted, JoinRefused, Session};
use crate::state::NodeState;

pub struct Room {
    name: RoomName,
    dialect: Dialect,
    state: Arc<NodeState>,
    registry: Addr<Registry>,
    members: Vec<Member>,
    /// Members on this node (the room closes when none are left).
    local: usize,
    joins_seen: u64,
    span: Span,
}

struct Member {
    info: PeerInfo,
    seed_user: Option<Arc<str>>,
    /// `None` for a member on another node.
    session: Option<Addr<Session>>,
}

impl Room {
    pub fn new(name: RoomName, state: Arc<NodeState>, registry: Addr<Registry>) -> Self {
        let dialect = if name.is_seed() { Dialect::Seed } else { Dialect::V1 };
        let span = info_span!("room", node = %state.node_id, room = %name);
        Self { name, dialect, state, registry, members: Vec::new(), local: 0, joins_seen: 0, span }
    }

    fn position(&self, peer: PeerId) -> Option<usize> {
        self.members.iter().position(|m| m.info.peer_id == peer)
    }

    fn has_remote(&self) -> bool {
        self.members.len() > self.local
    }

    /// Sends `frame` to every local member but `except`.
    fn fan_out(&self, frame: &Bytes, kind: &'static str, except: Option<PeerId>, received_at: Option<Instant>) {
        for m in &self.members {
            if Some(m.info.peer_id) == except {
                continue;
            }
            if let Some(s) = &m.session {
                s.do_send(Deliver { frame: frame.clone(), kind, received_at });
            }
        }
    }

    fn joined_frame(&self, peer: PeerId, id: Option<&RawValue>) -> Bytes {
        let text = match self.dialect {
            Dialect::V1 => {
                let peers: Vec<PeerInfo> =
                    self.members.iter().filter(|m| m.info.peer_id != peer).map(|m| m.info.clone()).collect();
                ServerMessage::Joined { room: self.name.client_name(), peer_id: peer, peers: &peers, id }.to_json()
            }
            Dialect::Seed => {
                let users: Vec<&str> = self.members.iter().filter_map(|m| m.seed_user.as_deref()).collect();
                SeedServerMessage::Joined(&users).to_json()
            }
        };
        Bytes::from(text)
    }

    fn peer_joined_frame(&self, info: &PeerInfo) -> Option<Bytes> {
        match self.dialect {
            Dialect::V1 => {
                Some(Bytes::from(ServerMessage::PeerJoined { room: self.name.client_name(), peer: info }.to_json()))
            }
            // The seed protocol has no such message; its clients learn of peers by their offers.
            Dialect::Seed => None,
        }
    }

    fn peer_left_frame(&self, peer: PeerId, seed_user: Option<&str>, reason: LeaveReason) -> Bytes {
        let text = match self.dialect {
            Dialect::V1 => ServerMessage::PeerLeft { room: self.name.client_name(), peer_id: peer, reason }.to_json(),
            Dialect::Seed => {
                SeedServerMessage::Quit { channel_name: self.name.client_name(), user_id: seed_user.unwrap_or("") }
                    .to_json()
            }
        };
        Bytes::from(text)
    }

    fn add(&mut self, member: Member) {
        if member.session.is_some() {
            self.local += 1;
            self.state.metrics.members.inc();
        }
        self.members.push(member);
    }

    /// Removes a member and tells the others; returns it.
    fn remove(&mut self, index: usize, reason: LeaveReason, ctx: &mut Context<Self>) -> Member {
        let m = self.members.remove(index);
        let peer = m.info.peer_id;
        if m.session.is_some() {
            self.local -= 1;
            self.state.metrics.members.dec();
            let bus = Arc::clone(&self.state.bus);
            let (room, node) = (self.name.clone(), self.state.node_id.clone());
            ctx.spawn(
                async move {
                    if let Err(e) = bus.leave(&room, &node, peer).await {
                        warn!(room = %room, peer = %peer, error = %e, "bus leave failed");
                    }
                }
                .into_actor(self),
            );
            if self.has_remote() {
                self.publish(RoomEvent::Left { peer, reason }, ctx);
            }
        }
        // A seed user id taken over stays in the channel (on its new socket): the seed's `quit`
        // notice has no reason field, so sending one would read as a departure.
        if !(self.dialect == Dialect::Seed && reason == LeaveReason::Replaced) {
            let frame = self.peer_left_frame(peer, m.seed_user.as_deref(), reason);
            let kind = if self.dialect == Dialect::V1 { "peer-left" } else { "quit" };
            self.fan_out(&frame, kind, None, None);
        }
        debug!(parent: &self.span, peer = %peer, reason = reason.as_str(), "left");
        m
    }

    fn publish(&self, event: RoomEvent, ctx: &mut Context<Self>) {
        let bus = Arc::clone(&self.state.bus);
        let (room, node) = (self.name.clone(), self.state.node_id.clone());
        ctx.spawn(
            async move {
                if let Err(e) = bus.publish(&room, &node, event).await {
                    warn!(room = %room, error = %e, "bus publish failed");
                }
            }
            .into_actor(self),
        );
    }

    fn check_idle(&self) {
        if self.local == 0 {
            self.registry.do_send(RoomIdle { room: self.name.clone(), joins_seen: self.joins_seen });
        }
    }

    fn refuse(&self, session: &Addr<Session>, err: ProtocolError, id: Option<&RawValue>) {
        self.state.metrics.error(err.code);
        session.do_send(JoinRefused { room: self.name.clone(), frame: error_frame(self.dialect, &err, id) });
    }

    fn finish_join(&mut self, join: Join, others: Vec<MemberRecord>, ctx: &mut Context<Self>) {
        // Members on other nodes that this room has not heard of yet (the bus's answer is
        // authoritative: it was read atomically with our own write).
        for r in others {
            if self.position(r.peer).is_none() {
                self.add(Member {
                    info: PeerInfo { peer_id: r.peer, meta: r.meta },
                    seed_user: r.seed_user,
                    session: None,
                });
            }
        }
        if let Some(user) = &join.seed_user
            && let Some(i) = self.members.iter().position(|m| m.seed_user.as_ref() == Some(user) && m.session.is_some())
        {
            let old = self.remove(i, LeaveReason::Replaced, ctx);
            if let Some(s) = old.session {
                let err = ProtocolError::new(ErrorCode::Replaced, "a newer connection joined with your userId");
                s.do_send(Evicted { room: self.name.clone(), frame: Some(error_frame(self.dialect, &err, None)) });
            }
        }
        let info = PeerInfo { peer_id: join.peer, meta: join.meta };
        if let Some(frame) = self.peer_joined_frame(&info) {
            self.fan_out(&frame, "peer-joined", None, None);
        }
        let record = MemberRecord {
            peer: join.peer,
            node: self.state.node_id.clone(),
            meta: info.meta.clone(),
            seed_user: join.seed_user.clone(),
        };
        self.add(Member { info, seed_user: join.seed_user, session: Some(join.session.clone()) });
        let frame = self.joined_frame(join.peer, join.id.as_deref());
        join.session.do_send(JoinAccepted { room: self.name.clone(), addr: ctx.address(), frame });
        if self.has_remote() {
            self.publish(RoomEvent::Joined(record), ctx);
        }
        debug!(parent: &self.span, peer = %join.peer, members = self.members.len(), "joined");
    }
}

impl Actor for Room {
    type Context = Context<Self>;
}

/// A session asks to join.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub peer: PeerId,
    pub session: Addr<Session>,
    pub meta: Option<Arc<RawValue>>,
    pub seed_user: Option<Arc<str>>,
    pub id: Option<Box<RawValue>>,
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Context<Self>) {
        self.joins_seen += 1;
        if self.position(join.peer).is_some() {
            let err = ProtocolError::new(ErrorCode::AlreadyJoined, "already a member of this room");
            return self.refuse(&join.session, err, join.id.as_deref());
        }
        let replaces =
            join.seed_user.as_ref().is_some_and(|u| self.members.iter().any(|m| m.seed_user.as_ref() == Some(u)));
        if self.members.len() >= self.state.config.max_peers_per_room && !replaces {
            let err = ProtocolError::new(
                ErrorCode::RoomFull,
                format!("the room holds at most {} peers", self.state.config.max_peers_per_room),
            );
            self.refuse(&join.session, err, join.id.as_deref());
            return self.check_idle();
        }
        let record = MemberRecord {
            peer: join.peer,
            node: self.state.node_id.clone(),
            meta: join.meta.clone(),
            seed_user: join.seed_user.clone(),
        };
        // Wait (holding the mailbox) so that joins and relays keep their order.
        let fut = self.state.bus.join(&self.name, record);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(others) => act.finish_join(join, others, ctx),
            Err(e) => {
                let err = ProtocolError::new(ErrorCode::Undeliverable, format!("cannot join: {e}"));
                act.refuse(&join.session, err, join.id.as_deref());
                act.check_idle();
            }
        }));
    }
}

/// A session leaves (or its socket closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub peer: PeerId,
    pub reason: LeaveReason,
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        if let Some(i) = self.position(msg.peer).filter(|&i| self.members[i].session.is_some()) {
            self.remove(i, msg.reason, ctx);
        }
        self.check_idle();
    }
}

/// A frame from one member, to one peer or (with `to: None`) to every other member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relay {
    pub from: PeerId,
    pub to: Option<PeerId>,
    pub frame: Bytes,
    pub kind: &'static str,
    pub received_at: Instant,
    /// The client's correlation id, echoed if the relay fails.
    pub id: Option<Box<RawValue>>,
}

impl Handler<Relay> for Room {
    type Result = ();

    fn handle(&mut self, msg: Relay, ctx: &mut Context<Self>) {
        let Some(sender) = self.position(msg.from).and_then(|i| self.members[i].session.clone()) else {
            // Evicted while the relay was in flight; the session has been told already.
            return;
        };
        let Some(to) = msg.to else {
            self.fan_out(&msg.frame, msg.kind, Some(msg.from), Some(msg.received_at));
            if self.has_remote() {
                self.publish(RoomEvent::Relay { from: msg.from, to: None, frame: msg.frame }, ctx);
            }
            return;
        };
        match self.position(to).map(|i| &self.members[i]) {
            Some(Member { session: Some(s), .. }) => {
                s.do_send(Deliver { frame: msg.frame, kind: msg.kind, received_at: Some(msg.received_at) });
            }
            Some(_) => {
                let bus = Arc::clone(&self.state.bus);
                let (room, node, dialect) = (self.name.clone(), self.state.node_id.clone(), self.dialect);
                let event = RoomEvent::Relay { from: msg.from, to: Some(to), frame: msg.frame };
                let id = msg.id;
                ctx.spawn(async move { bus.publish(&room, &node, event).await }.into_actor(self).map(
                    move |res, act, _| {
                        let why = match res {
                            Ok(d) if d.nodes > 0 => return,
                            Ok(_) => "no node holds that peer any more".to_string(),
                            Err(e) => e.to_string(),
                        };
                        let err = ProtocolError::new(ErrorCode::Undeliverable, format!("signal not delivered: {why}"));
                        act.state.metrics.error(err.code);
                        sender.do_send(Deliver {
                            frame: error_frame(dialect, &err, id.as_deref()),
                            kind: "error",
                            received_at: None,
                        });
                    },
                ));
            }
            None => {
                let err = ProtocolError::new(ErrorCode::UnknownPeer, format!("peer {to} is not in this room"));
                self.state.metrics.error(err.code);
                sender.do_send(Deliver {
                    frame: error_frame(self.dialect, &err, msg.id.as_deref()),
                    kind: "error",
                    received_at: None,
                });
            }
        }
    }
}

impl Handler<Inbound> for Room {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        match msg.event {
            RoomEvent::Joined(r) => {
                if self.position(r.peer).is_none() {
                    let info = PeerInfo { peer_id: r.peer, meta: r.meta };
                    if let Some(frame) = self.peer_joined_frame(&info) {
                        self.fan_out(&frame, "peer-joined", None, None);
                    }
                    self.add(Member { info, seed_user: r.seed_user, session: None });
                }
            }
            RoomEvent::Left { peer, reason } => {
                if let Some(i) = self.position(peer).filter(|&i| self.members[i].session.is_none()) {
                    self.remove(i, reason, ctx);
                }
            }
            RoomEvent::Relay { from, to, frame } => match to {
                Some(to) => {
                    if let Some(s) = self.position(to).and_then(|i| self.members[i].session.as_ref()) {
                        s.do_send(Deliver { frame, kind: "signal", received_at: None });
                    }
                }
                None => self.fan_out(&frame, "broadcast", Some(from), None),
            },
        }
    }
}

/// The registry confirmed the room is idle: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for Room {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        if self.local == 0 {
            ctx.stop();
        }
    }
}
