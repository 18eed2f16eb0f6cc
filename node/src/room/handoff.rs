//! Handing a member from a draining node to the node it resumes on, with nothing lost, nothing
//! repeated and nothing reordered.
//!
//! 1. **Park** (old node A). The draining session asks each of its rooms to park it: the member
//!    stays in the room (and in the cluster's records) without a session, and whatever reaches
//!    it is kept, in order.
//! 2. **Move** (new node B). The client comes back on B with its resume token. B's room rewrites
//!    the member's record from A to B and, in the same Redis step, publishes [`Moved`] to A
//!    first, then to every other node holding members, then to B itself.
//! 3. **Handover** (A). On `Moved`, A sends B everything it kept (`Forward`, `handover`) and from
//!    then on forwards what still reaches it for the member — relays from nodes that have not
//!    processed `Moved` yet.
//! 4. **Fences** (every other node N). On `Moved`, N routes to B from then on and says so twice:
//!    to A (`Fence`, which A passes to B behind whatever of N's it forwarded) and to B
//!    (`Fence`, `direct`).
//! 5. **Hold** (B). Until every node's fence has come through A, B holds what reaches the member
//!    any other way, and delivers it after. A broadcast from N that reaches B before N's direct
//!    fence predates the move: A forwards its copy, so B skips its own. Membership events that
//!    reach B before B's own `Moved` marker likewise went to A too.
//!
//! Per sender, then, frames arrive in the order sent: all that went to A come first (in A's
//! handover and forwards, on A's one channel to B), then the fence, then what went to B. The
//! waits are bounded ([`HOLD_LIMIT`], [`FORWARD_LIMIT`]) in case a node dies meanwhile.
//!
//! [`Moved`]: crate::bus::RoomEvent::Moved

use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};
use serde_json::value::RawValue;
use switchboard::protocol::v1::{LeaveReason, PeerInfo};
use switchboard::protocol::{PeerId, Role};
use tracing::{debug, warn};

use super::{Member, Room};
use crate::bus::{Held, MemberRecord, NodeId, ParkedRoom, RoomEvent};
use crate::post::Homed;
use crate::session::{Deliver, Provenance, ResumeAccepted, ResumeRefused, RoomParked, Session};

/// How long a resumed member's frames may wait for the cluster's fences.
const HOLD_LIMIT: Duration = Duration::from_secs(2);

/// How long the old node keeps forwarding for a member that moved on.
const FORWARD_LIMIT: Duration = Duration::from_secs(3);

/// Frames kept for one parked member at most; a member that misses more cannot resume cleanly
/// (its client would see a gap), so it is dropped from the room when its grace ends instead.
const MAX_KEPT: usize = 4096;

/// Where a frame for a member came from, as far as ordering across a move goes.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A relay from a member on that node.
    Node(NodeId),
    /// A member of this node.
    Local,
    /// A membership event written by a Lua script (ordered by Redis).
    Script,
    /// The cluster itself or an operator (lost nodes, reconciliation, kicks).
    Control,
}

pub enum Verdict {
    Hold,
    Skip,
}

/// What a member that just resumed here waits for.
pub struct Hold {
    pub held: Vec<Deliver>,
    /// The node that parked it.
    old: NodeId,
    /// Nodes that routed to the old node when the move happened.
    expected: Vec<NodeId>,
    /// Nodes whose fence has not come through the old node yet.
    via_pending: Vec<NodeId>,
    /// Nodes known to route here: what they send directly counts this member in.
    direct: Vec<NodeId>,
    /// This node's own `Moved` arrived: later membership events were not sent to the old node.
    marker: bool,
}

impl Hold {
    pub fn verdict(&self, origin: &Origin, broadcast: bool) -> Verdict {
        match origin {
            Origin::Node(n) if broadcast && self.expected.contains(n) && !self.direct.contains(n) => Verdict::Skip,
            Origin::Script if !self.marker => Verdict::Skip,
            _ => Verdict::Hold,
        }
    }
}

/// A member that moved to node `to`, for whom this (old) node still forwards.
pub struct Forwarding {
    peer: PeerId,
    to: NodeId,
    expected: Vec<NodeId>,
    fenced: Vec<NodeId>,
}

impl Forwarding {
    fn done(&self) -> bool {
        self.expected.iter().all(|n| self.fenced.contains(n))
    }
}

/// What a room keeps for a member parked by this draining node.
#[derive(Default)]
pub struct Parked {
    /// What arrived for it since, in order: handed to the node it resumes on.
    pub(super) frames: Vec<Held>,
    /// Senders of the signals for it among `frames`, and among what its session kept for it
    /// after `reconnect`: answered `undeliverable` unless it resumes (and so gets them).
    pub(super) owed: Vec<Provenance>,
    /// Senders of signals that did not fit in `frames`: answered whatever happens.
    pub(super) lost: Vec<Provenance>,
    /// Tells this parking from a later one of the same member (it may resume elsewhere and
    /// come back, to be parked here again): a grace timer ends only its own parking.
    pub(super) id: u64,
}

/// Keeps `d` for a parked member.
pub fn keep(parked: &mut Parked, d: Deliver) {
    if parked.frames.len() < MAX_KEPT {
        parked.frames.push(Held { frame: d.frame, kind: d.kind });
        parked.owed.extend(d.provenance.map(|p| *p));
    } else {
        warn!(kept = parked.frames.len(), "a parked member's buffer is full: dropping a frame");
        parked.lost.extend(d.provenance.map(|p| *p));
    }
}

/// The draining session parks its member: the room keeps its place and its frames until it
/// resumes elsewhere or `grace` runs out. The room answers the session with [`RoomParked`]
/// through its mailbox, behind every frame it delivered before.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Park {
    pub peer: PeerId,
    pub session: Homed<Session>,
    pub grace: Duration,
}

impl Handler<Park> for Room {
    type Result = ();

    fn handle(&mut self, msg: Park, ctx: &mut Context<Self>) {
        let Some(i) = self.position(msg.peer).filter(|&i| self.members[i].session.is_some()) else {
            return msg.session.do_send(RoomParked { parked: None });
        };
        let m = &mut self.members[i];
        m.session = None;
        let id = rand::random();
        let mut kept = Box::new(Parked { id, ..Parked::default() });
        // Whatever waited for a join still settling goes first.
        for d in m.backlog.take().unwrap_or_default() {
            keep(&mut kept, d);
        }
        m.parked = Some(kept);
        self.state.handoff.park();
        let parked = ParkedRoom {
            room: self.name.as_str().to_string(),
            meta: m.info.meta.as_deref().map(|r| r.get().to_string()),
            user: m.info.user.as_deref().map(str::to_string),
            role: m.info.role,
        };
        msg.session.do_send(RoomParked { parked: Some(parked) });
        let peer = msg.peer;
        ctx.run_later(msg.grace, move |act, ctx| {
            let this_parking = |m: &Member| m.parked.as_ref().is_some_and(|p| p.id == id);
            if let Some(i) = act.position(peer).filter(|&i| this_parking(&act.members[i])) {
                debug!(parent: &act.span, peer = %peer, "a parked member did not resume in time");
                act.remove(i, LeaveReason::Timeout, Origin::Local, ctx);
                act.check_idle();
            }
        });
    }
}

/// A session resumed here takes its member back from node `from`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume {
    pub peer: PeerId,
    pub session: Homed<Session>,
    pub from: NodeId,
    pub meta: Option<std::sync::Arc<RawValue>>,
    pub user: Option<std::sync::Arc<str>>,
    pub role: Option<Role>,
}

impl Handler<Resume> for Room {
    type Result = ();

    fn handle(&mut self, r: Resume, ctx: &mut Context<Self>) {
        self.joins_seen += 1;
        let known = self.position(r.peer);
        if known.is_some_and(|i| self.members[i].is_local()) || r.from == self.state.node_id {
            r.session.do_send(ResumeRefused { room: self.name.clone() });
            return self.check_idle();
        }
        if self.local == 0 {
            self.asserted = self.state.bus.generation(&self.name);
        }
        let record = MemberRecord {
            peer: r.peer,
            node: self.state.node_id.clone(),
            meta: r.meta.clone(),
            seed_user: None,
            user: r.user.clone(),
            role: r.role,
        };
        // Holding the mailbox: the old node's handover must not be handled before the member.
        let fut = self.state.bus.resume(&self.name, record, &r.from);
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Some(others)) => act.finish_resume(r, others, ctx),
            Ok(None) => {
                debug!(parent: &act.span, peer = %r.peer, "nothing to resume: the parked member is gone");
                r.session.do_send(ResumeRefused { room: act.name.clone() });
                act.check_idle();
            }
            Err(e) => {
                warn!(parent: &act.span, peer = %r.peer, error = %e, "resume failed");
                r.session.do_send(ResumeRefused { room: act.name.clone() });
                act.check_idle();
            }
        }));
    }
}

impl Room {
    fn finish_resume(&mut self, r: Resume, others: Vec<MemberRecord>, ctx: &mut Context<Self>) {
        let own = self.state.node_id.clone();
        // This room knew the member on its old node: what it sent there must come first.
        let knew = match self.position(r.peer) {
            Some(i) => {
                self.members.remove(i);
                true
            }
            None => false,
        };
        let mut expected: Vec<NodeId> = others.iter().map(|o| o.node.clone()).collect();
        expected.push(r.from.clone());
        expected.sort();
        expected.dedup();
        // Members this room had not heard of (the member knows them from its old node).
        self.merge_remote(others, Origin::Control);
        let mut via_pending = expected.clone();
        if knew {
            self.publish_to(
                std::slice::from_ref(&r.from),
                RoomEvent::Fence { peer: r.peer, via: own.clone(), direct: false },
            );
            via_pending.push(own.clone());
        }
        let hold = Hold { held: Vec::new(), old: r.from, expected, via_pending, direct: vec![own], marker: false };
        let info = PeerInfo { peer_id: r.peer, meta: r.meta, user: r.user, role: r.role };
        self.add(Member {
            info,
            seed_user: None,
            session: Some(r.session.clone()),
            node: None,
            backlog: None,
            parked: None,
            hold: Some(Box::new(hold)),
        });
        r.session.do_send(ResumeAccepted { room: self.name.clone(), addr: Room::me(&self.me, ctx) });
        let peer = r.peer;
        ctx.run_later(HOLD_LIMIT, move |act, _| {
            if let Some(i) = act.position(peer).filter(|&i| act.members[i].hold.is_some()) {
                warn!(parent: &act.span, peer = %peer, "a resumed member's routes did not settle in time");
                act.release(i);
            }
        });
        debug!(parent: &self.span, peer = %peer, "resumed");
    }

    /// Delivers what a resumed member held, and lets what follows through.
    fn release(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(hold) = m.hold.take() {
            for d in hold.held {
                m.deliver(d);
            }
        }
    }

    /// Publishes a handoff event to `nodes`; a lost one only makes a wait run to its bound.
    fn publish_to(&self, nodes: &[NodeId], event: RoomEvent) {
        let sent = self.state.bus.publish(&self.name, &self.state.node_id, nodes, event);
        actix::spawn(async move {
            let _ = sent.await;
        });
    }

    pub(super) fn on_moved(&mut self, peer: PeerId, from: NodeId, to: NodeId, ctx: &mut Context<Self>) {
        let own = self.state.node_id.clone();
        if from == own {
            self.hand_over(peer, to, ctx);
        } else if to == own {
            if let Some(h) = self.position(peer).and_then(|i| self.members[i].hold.as_mut()) {
                h.marker = true;
            }
        } else {
            if let Some(i) = self.position(peer).filter(|&i| self.members[i].node.as_ref() == Some(&from)) {
                self.members[i].node = Some(to.clone());
            }
            self.publish_to(&[from], RoomEvent::Fence { peer, via: own.clone(), direct: false });
            self.publish_to(&[to], RoomEvent::Fence { peer, via: own, direct: true });
        }
    }

    /// The old node's side of a move: send what was kept, then keep forwarding until every
    /// node that routed here has fenced.
    fn hand_over(&mut self, peer: PeerId, to: NodeId, ctx: &mut Context<Self>) {
        let Some(i) = self.position(peer).filter(|&i| self.members[i].parked.is_some()) else {
            return warn!(parent: &self.span, peer = %peer, "moved away, but was not parked here");
        };
        let expected = self.remote_nodes();
        let m = &mut self.members[i];
        // What it owes goes along (this handover, or the parked session's replay); what did
        // not fit does not.
        let Parked { frames, owed: _, lost, .. } = *m.parked.take().unwrap_or_default();
        m.node = Some(to.clone());
        self.local -= 1;
        self.state.metrics.members.dec();
        self.state.handoff.unpark();
        debug!(parent: &self.span, peer = %peer, to = %to, kept = frames.len(), "handed over");
        self.publish_to(std::slice::from_ref(&to), RoomEvent::Forward { peer, frames, handover: true });
        for p in lost {
            self.answer_lost(p, super::unreached::OVERFLOW);
        }
        if !expected.is_empty() {
            self.forwarding.push(Forwarding { peer, to, expected, fenced: Vec::new() });
            self.state.handoff.forwarding_started();
            ctx.run_later(FORWARD_LIMIT, move |act, _| {
                if let Some(f) = act.forwarding.iter().position(|f| f.peer == peer) {
                    act.forwarding.swap_remove(f);
                    act.state.handoff.forwarding_done();
                    act.check_idle();
                }
            });
        }
        self.check_idle();
    }

    pub(super) fn on_fence(&mut self, peer: PeerId, via: NodeId, direct: bool, _: &mut Context<Self>) {
        if !direct && let Some(f) = self.forwarding.iter().position(|f| f.peer == peer) {
            // Behind everything of `via`'s this node forwarded.
            let to = self.forwarding[f].to.clone();
            self.publish_to(&[to], RoomEvent::Fence { peer, via: via.clone(), direct: false });
            self.forwarding[f].fenced.push(via);
            if self.forwarding[f].done() {
                self.forwarding.swap_remove(f);
                self.state.handoff.forwarding_done();
                self.check_idle();
            }
            return;
        }
        let Some(i) = self.position(peer) else { return };
        let Some(h) = self.members[i].hold.as_mut() else { return };
        if direct {
            h.direct.push(via);
        } else {
            h.via_pending.retain(|n| *n != via);
            if h.via_pending.is_empty() {
                self.release(i);
            }
        }
    }

    pub(super) fn on_forward(&mut self, peer: PeerId, frames: Vec<Held>, handover: bool) {
        let Some(i) = self.position(peer).filter(|&i| self.members[i].is_local()) else { return };
        let m = &mut self.members[i];
        for f in frames {
            m.deliver(Deliver::new(f.frame, f.kind));
        }
        if handover && let Some(h) = m.hold.as_mut() {
            let old = h.old.clone();
            h.direct.push(old.clone());
            h.via_pending.retain(|n| *n != old);
            if h.via_pending.is_empty() {
                self.release(i);
            }
        }
    }

    /// A relay for a member that moved on, from a node that did not know yet.
    /// False if `to` is not a member this node forwards for.
    pub(super) fn forward_relay(&mut self, to: PeerId, frame: bytes::Bytes, kind: &'static str) -> bool {
        let Some(f) = self.forwarding.iter().find(|f| f.peer == to) else { return false };
        let event = RoomEvent::Forward { peer: to, frames: vec![Held { frame, kind }], handover: false };
        self.publish_to(std::slice::from_ref(&f.to), event);
        true
    }

    /// A broadcast from a node that has not fenced: it did not count the moved members in.
    pub(super) fn forward_broadcast(&mut self, from: PeerId, origin: &NodeId, frame: &bytes::Bytes) {
        for f in &self.forwarding {
            if f.peer != from && f.expected.contains(origin) && !f.fenced.contains(origin) {
                let held = Held { frame: frame.clone(), kind: "broadcast" };
                let event = RoomEvent::Forward { peer: f.peer, frames: vec![held], handover: false };
                self.publish_to(std::slice::from_ref(&f.to), event);
            }
        }
    }
}
