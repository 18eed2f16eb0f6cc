//! The room actor: one per room with members on this node.
//!
//! It owns the room's view of membership (its own members and, through the bus, those on
//! other nodes), admits joins against the room's capacity, and fans relays out to the members'
//! sessions. Frames arrive already serialized by the sending session, so a broadcast to N
//! members costs N reference-count increments, not N serializations.
//!
//! Membership changes reach other nodes through the bus (which tells them in the same step
//! that records the change); relays to remote members go to their nodes' inboxes. The room's
//! view of remote members is only ever changed by what the bus reports — their own joins and
//! leaves, a lost node, a reconciliation — never deduced from this node's local count.

mod admin;
mod cluster;
mod frames;
mod handoff;
mod member;
mod relay;
mod seed;
mod unreached;

pub use admin::{Describe, Remove};
pub use handoff::{Park, Resume};
pub use relay::{PEER_STATE, Relay};
pub use unreached::{Fate, GiveUp, Owed};

use handoff::{Forwarding, Origin};
use member::Member;

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::api::{WebhookKind, WebhookPeer};
use switchboard::protocol::v1::{LeaveReason, PeerInfo};
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError, Role, RoomName};
use tracing::{Span, debug, info_span, warn};

use crate::bus::{BusError, JoinRules, Joined, MemberRecord, NodeId};
use crate::dialect::{Dialect, error_frame};
use crate::post::Homed;
use crate::registry::{Registry, RoomIdle};
use crate::session::{Deliver, JoinAccepted, JoinRefused, Session};
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
    /// The bus generation under which this room's local members were last written.
    asserted: u64,
    /// A re-assert is under way (or waiting to be tried again).
    asserting: bool,
    /// A membership check is under way, or one is scheduled soon.
    reconciling: bool,
    reconcile_queued: bool,
    /// Members that resumed on another node, for whom this node still forwards what reaches it
    /// (see [`handoff`]).
    forwarding: Vec<Forwarding>,
    /// This room's own address with its worker, for what sessions send back to it.
    me: std::cell::OnceCell<Homed<Room>>,
    span: Span,
}

impl Room {
    pub fn new(name: RoomName, state: Arc<NodeState>, registry: Addr<Registry>) -> Self {
        let dialect = if name.is_seed() { Dialect::Seed } else { Dialect::V1 };
        let span = info_span!("room", node = %state.node_id, room = %name);
        let asserted = state.bus.generation(&name);
        Self {
            name,
            dialect,
            state,
            registry,
            members: Vec::new(),
            local: 0,
            joins_seen: 0,
            asserted,
            asserting: false,
            reconciling: false,
            reconcile_queued: false,
            forwarding: Vec::new(),
            me: std::cell::OnceCell::new(),
            span,
        }
    }

    /// This room's [`Homed`] address (the room never leaves its worker).
    fn me(me: &std::cell::OnceCell<Homed<Room>>, ctx: &Context<Self>) -> Homed<Room> {
        me.get_or_init(|| Homed::here(ctx.address())).clone()
    }

    fn position(&self, peer: PeerId) -> Option<usize> {
        self.members.iter().position(|m| m.info.peer_id == peer)
    }

    /// The distinct nodes holding this room's remote members.
    fn remote_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.members.iter().filter_map(|m| m.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// This node's record of a local member, as the bus stores it.
    fn record(&self, m: &Member) -> MemberRecord {
        MemberRecord {
            peer: m.info.peer_id,
            node: self.state.node_id.clone(),
            meta: m.info.meta.clone(),
            seed_user: m.seed_user.clone(),
            user: m.info.user.clone(),
            role: m.info.role,
        }
    }

    /// Adds the remote members this room has not heard of, announcing each to the local ones.
    fn merge_remote(&mut self, records: Vec<MemberRecord>, origin: Origin) {
        for r in records {
            if self.position(r.peer).is_none() {
                let m = Member::remote(r);
                if let Some(frame) = self.peer_joined_frame(&m.info) {
                    self.fan_out(&frame, "peer-joined", None, None, origin.clone());
                }
                self.add(m);
            }
        }
    }

    /// Sends `frame`, which came from `origin`, to every local member but `except`.
    fn fan_out(
        &mut self,
        frame: &Bytes,
        kind: &'static str,
        except: Option<PeerId>,
        received_at: Option<Instant>,
        origin: Origin,
    ) {
        for m in &mut self.members {
            if Some(m.info.peer_id) != except && m.is_local() {
                let d = Deliver { frame: frame.clone(), kind, received_at, provenance: None };
                m.deliver_from(d, &origin, true);
            }
        }
    }

    fn add(&mut self, member: Member) {
        if member.is_local() {
            self.local += 1;
            self.state.metrics.members.inc();
        }
        self.members.push(member);
    }

    /// Records an event for the webhooks, if this node delivers any.
    fn webhook(&self, kind: WebhookKind, peer: Option<(PeerId, Option<String>)>, reason: Option<LeaveReason>) {
        let Some(hooks) = self.state.webhooks.get() else { return };
        let node = self.state.node_id.to_string();
        let peer = peer.map(|(id, user)| WebhookPeer { id, user, node });
        hooks.send(kind, self.name.client_name().to_string(), peer, reason);
    }

    /// Removes a member and tells the others (the news came from `origin`); returns it.
    fn remove(&mut self, index: usize, reason: LeaveReason, origin: Origin, ctx: &mut Context<Self>) -> Member {
        let m = self.detach(index, reason, ctx);
        // A seed user id taken over stays in the channel (on its new socket): the seed's `quit`
        // notice has no reason field, so sending one would read as a departure.
        if !(self.dialect == Dialect::Seed && reason == LeaveReason::Replaced) {
            let frame = self.peer_left_frame(m.info.peer_id, m.seed_user.as_deref(), reason);
            let kind = if self.dialect == Dialect::V1 { "peer-left" } else { "quit" };
            self.fan_out(&frame, kind, None, None, origin);
        }
        m
    }

    /// Takes a member out of the room and, for a local one, out of the cluster's records
    /// (the bus tells the other nodes); this node's other members are not told.
    fn detach(&mut self, index: usize, reason: LeaveReason, ctx: &mut Context<Self>) -> Member {
        let mut m = self.members.remove(index);
        let peer = m.info.peer_id;
        let parked = m.parked.is_some();
        if m.is_local() {
            self.local -= 1;
            self.state.metrics.members.dec();
            self.webhook(WebhookKind::PeerLeft, Some((peer, m.info.user.as_deref().map(String::from))), Some(reason));
            if self.local == 0 {
                self.webhook(WebhookKind::RoomFinished, None, None);
            }
            // The bus tells the other nodes; the call enqueues now, so it keeps its place
            // before any later relay of this room.
            let left = self.state.bus.leave(&self.name, &self.state.node_id, peer, reason);
            let room = self.name.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = left.await {
                        warn!(room = %room, peer = %peer, error = %e, "bus leave failed");
                    }
                }
                .into_actor(self),
            );
        }
        // What it was still waiting for will not reach it: its senders are answered.
        self.answer_unreached(&mut m);
        if parked {
            // Last: a drain that sees nothing parked any more finds the leave and the answers
            // on their way to the bus already.
            self.state.handoff.unpark();
        }
        debug!(parent: &self.span, peer = %peer, reason = reason.as_str(), "left");
        m
    }

    fn room_full(&self) -> ProtocolError {
        let max = self.state.config.max_peers_per_room;
        ProtocolError::new(ErrorCode::RoomFull, format!("the room holds at most {max} peers"))
    }

    fn check_idle(&self) {
        if self.local == 0 && self.forwarding.is_empty() {
            self.registry.do_send(RoomIdle { room: self.name.clone(), joins_seen: self.joins_seen });
        }
    }

    fn refuse(&self, session: &Homed<Session>, err: ProtocolError, id: Option<&RawValue>) {
        self.state.metrics.error(err.code);
        session.do_send(JoinRefused { room: self.name.clone(), frame: error_frame(self.dialect, &err, id) });
    }

    fn finish_join(&mut self, join: Join, joined: Joined, ctx: &mut Context<Self>) {
        // Members on other nodes that this room has not heard of yet (the bus's answer is
        // authoritative: it was read atomically with our own write). The joiner is not a
        // member yet, so it learns of them from its `joined`, not from `peer-joined`.
        for r in joined.others {
            if self.position(r.peer).is_none() {
                self.add(Member::remote(r));
            }
        }
        if let Some(user) = &join.seed_user {
            // The user id's earlier connection, here or on another node, is replaced; its own
            // node evicts a remote one when this join's `Joined` reaches it.
            self.replace_seed_user(user, join.user.as_deref(), ctx);
        }
        let info = PeerInfo { peer_id: join.peer, meta: join.meta, user: join.user, role: join.role };
        if let Some(frame) = self.peer_joined_frame(&info) {
            self.fan_out(&frame, "peer-joined", None, None, Origin::Local);
        }
        let peer = join.peer;
        if self.local == 0 {
            self.webhook(WebhookKind::RoomStarted, None, None);
        }
        self.webhook(WebhookKind::PeerJoined, Some((peer, info.user.as_deref().map(String::from))), None);
        let backlog = joined.settled.is_some().then(Vec::new);
        self.add(Member {
            info,
            seed_user: join.seed_user,
            session: Some(join.session.clone()),
            node: None,
            backlog,
            parked: None,
            hold: None,
        });
        // The member list as of now: what arrives later reaches the joiner as events.
        let frame = self.joined_frame(join.peer, join.id.as_deref());
        let accepted = JoinAccepted { room: self.name.clone(), addr: Self::me(&self.me, ctx), frame };
        match joined.settled {
            None => join.session.do_send(accepted),
            Some(settled) => {
                ctx.spawn(settled.into_actor(self).map(move |(), act, _| {
                    // Gone already (left or evicted while settling)? Its session was told.
                    let Some(m) = act.position(peer).map(|i| &mut act.members[i]) else { return };
                    let backlog = m.backlog.take().unwrap_or_default();
                    join.session.do_send(accepted);
                    for d in backlog {
                        join.session.do_send(d);
                    }
                }));
            }
        }
        debug!(parent: &self.span, peer = %peer, members = self.members.len(), "joined");
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_reconciling(ctx);
    }
}

/// A session asks to join.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub peer: PeerId,
    pub session: Homed<Session>,
    pub meta: Option<Arc<RawValue>>,
    pub seed_user: Option<Arc<str>>,
    /// The user and role of the session's access token, if it has one.
    pub user: Option<Arc<str>>,
    pub role: Option<Role>,
    pub id: Option<Box<RawValue>>,
    /// A seed client's join of a channel its session is in already (or on its way into): the
    /// room answers it with `joined` or renames the member (see [`seed`]), never adds one.
    pub repeat: bool,
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Context<Self>) {
        self.joins_seen += 1;
        if join.repeat {
            return self.seed_rejoin(join, ctx);
        }
        if self.position(join.peer).is_some() {
            let err = ProtocolError::new(ErrorCode::AlreadyJoined, "already a member of this room");
            return self.refuse(&join.session, err, join.id.as_deref());
        }
        self.admit(join, ctx);
    }
}

impl Room {
    /// Admits a new member (or a renamed seed member) against the room's capacity and seats,
    /// across the cluster.
    fn admit(&mut self, join: Join, ctx: &mut Context<Self>) {
        if let Err(err) = self.check_seat(&join) {
            self.refuse_join(&join, err);
            return self.check_idle();
        }
        let replaces = self.replaces_seat(&join);
        if self.members.len() >= self.state.config.max_peers_per_room && !replaces {
            self.refuse_join(&join, self.room_full());
            return self.check_idle();
        }
        let record = MemberRecord {
            peer: join.peer,
            node: self.state.node_id.clone(),
            meta: join.meta.clone(),
            seed_user: join.seed_user.clone(),
            user: join.user.clone(),
            role: join.role,
        };
        if self.local == 0 {
            // Nothing written under an older lease is left to write again.
            self.asserted = self.state.bus.generation(&self.name);
        }
        // Wait (holding the mailbox) so that joins and relays keep their order.
        // The cap holds across the cluster: the bus checks it against every node's members.
        let rules = JoinRules { capacity: (!replaces).then_some(self.state.config.max_peers_per_room), seat: true };
        let fut = self.state.bus.join(&self.name, record, rules);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(others) => act.finish_join(join, others, ctx),
            // Redis is away: calls on this node keep working, and the member is written to the
            // cluster when the bus comes back (every room re-asserts its members then).
            Err(e @ (BusError::Unavailable(_) | BusError::Fenced)) => {
                warn!(parent: &act.span, peer = %join.peer, error = %e, "admitted without the cluster");
                act.finish_join(join, Joined { others: Vec::new(), settled: None }, ctx);
            }
            Err(BusError::RoomFull) => {
                act.refuse_join(&join, act.room_full());
                act.check_idle();
            }
            Err(BusError::SeatTaken) => {
                let user = join.seed_user.as_deref().unwrap_or_default();
                act.refuse_join(&join, seed::seat_taken(user));
                act.check_idle();
            }
            Err(e) => {
                let err = ProtocolError::new(ErrorCode::Undeliverable, format!("cannot join: {e}"));
                act.refuse_join(&join, err);
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
            self.remove(i, msg.reason, Origin::Local, ctx);
        }
        self.check_idle();
    }
}

/// The registry confirmed the room is idle: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for Room {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        if self.local == 0 && self.forwarding.is_empty() {
            ctx.stop();
        }
    }
}
