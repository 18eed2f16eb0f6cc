//! Relays: from a local member to one peer or to all, and events arriving from other nodes.

use std::time::Instant;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};
use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError};
use tracing::debug;

use super::{Member, Origin, Room};
use crate::bus::{BusResult, Delivery, Inbound, RoomEvent};
use crate::dialect::error_frame;
use crate::post::Homed;
use crate::session::{Deliver, Provenance, Session};

/// The kind of a server-made broadcast about a member's connection (`peer-state`): nobody
/// asked for it, so nobody is answered if a node misses it.
pub const PEER_STATE: &str = "peer-state";

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
        // This node took a new lease since the room's members were written: write them again
        // first, so the relay reaches nodes that know its sender (the writes go out before it).
        self.reassert_if_stale(ctx);
        let Some(to) = msg.to else {
            self.fan_out(&msg.frame, msg.kind, Some(msg.from), Some(msg.received_at), Origin::Local);
            let nodes = self.remote_nodes();
            if !nodes.is_empty() {
                let event = RoomEvent::Relay { from: msg.from, to: None, frame: msg.frame, id: None };
                let sent = self.state.bus.publish(&self.name, &self.state.node_id, &nodes, event);
                if msg.kind == PEER_STATE {
                    // On its way once asked for; its answer concerns nobody.
                    drop(sent);
                } else {
                    self.report_undelivered(sent, nodes.len(), sender, msg.id, ctx);
                }
            }
            return;
        };
        match self.position(to).map(|i| &mut self.members[i]) {
            Some(m) if m.is_local() => {
                let provenance =
                    Some(Box::new(Provenance { room: Room::me(&self.me, ctx), from: msg.from, via: None, id: msg.id }));
                let d = Deliver { frame: msg.frame, kind: msg.kind, received_at: Some(msg.received_at), provenance };
                m.deliver_from(d, &Origin::Local, false);
            }
            Some(Member { node: Some(node), .. }) => {
                let event = RoomEvent::Relay { from: msg.from, to: Some(to), frame: msg.frame, id: msg.id.clone() };
                let sent = self.state.bus.publish(&self.name, &self.state.node_id, std::slice::from_ref(node), event);
                self.report_undelivered(sent, 1, sender, msg.id, ctx);
            }
            _ => {
                let err = ProtocolError::new(ErrorCode::UnknownPeer, format!("peer {to} is not in this room"));
                self.state.metrics.error(err.code);
                sender.do_send(Deliver {
                    frame: error_frame(self.dialect, &err, msg.id.as_deref()),
                    kind: "error",
                    received_at: None,
                    provenance: None,
                });
            }
        }
    }
}

impl Room {
    /// Answers the sender with `undeliverable` if fewer than `expected` nodes got its relay:
    /// a message the cluster could not carry is never dropped in silence.
    fn report_undelivered(
        &self,
        sent: BusResult<Delivery>,
        expected: usize,
        sender: Homed<Session>,
        id: Option<Box<RawValue>>,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(sent.into_actor(self).map(move |res, act, _| {
            let why = match res {
                Ok(d) if d.nodes >= expected => return,
                Ok(d) if expected == 1 => {
                    debug_assert_eq!(d.nodes, 0);
                    "the peer's node is not reachable".to_string()
                }
                Ok(d) => format!("reached {} of the {expected} nodes holding members", d.nodes),
                Err(e) => e.to_string(),
            };
            sender.do_send(Deliver::new(act.undeliverable_frame(id.as_deref(), &why), "error"));
        }));
    }
}

impl Handler<Inbound> for Room {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        let via = msg.via;
        match msg.event {
            RoomEvent::Joined(r, ack) => {
                if let Some(user) = &r.seed_user {
                    // The seed user id moved to another node's connection: this one is replaced.
                    self.replace_seed_user(user, r.user.as_deref(), ctx);
                }
                self.merge_remote(vec![r], Origin::Script);
                // Now this room routes to the joiner: its node may tell it that it joined.
                if let Some(ack) = ack {
                    self.state.bus.ack(&self.name, ack);
                }
            }
            RoomEvent::Left { peer, reason } => {
                if let Some(i) = self.position(peer).filter(|&i| !self.members[i].is_local()) {
                    self.remove(i, reason, Origin::Script, ctx);
                }
            }
            RoomEvent::Relay { from, to, frame, id } => {
                // Only from a member this room knows on another node: a node that was declared
                // lost and comes back cannot slip in relays from peers that have "left".
                let Some(origin) = self.position(from).and_then(|i| self.members[i].node.clone()) else {
                    debug!(parent: &self.span, from = %from, "refused a relay from a peer not in this room");
                    if to.is_some() {
                        self.bounce(via.as_ref(), from, id, "this node does not know the sender in the room", ctx);
                    }
                    return;
                };
                match to {
                    Some(to) => {
                        let Some(i) = self.position(to) else {
                            return self.bounce(via.as_ref(), from, id, "the peer is not in the room", ctx);
                        };
                        if self.members[i].is_local() {
                            let provenance = Some(Box::new(Provenance {
                                room: Room::me(&self.me, ctx),
                                from,
                                via: via.clone(),
                                id,
                            }));
                            let d = Deliver { frame, kind: "signal", received_at: None, provenance };
                            self.members[i].deliver_from(d, &Origin::Node(origin), false);
                        } else if !self.forward_relay(to, frame, "signal") {
                            // Neither here nor moved on from here: the sender's view is wrong.
                            self.bounce(via.as_ref(), from, id, "the peer is not on this node", ctx);
                        }
                    }
                    None => {
                        self.forward_broadcast(from, &origin, &frame);
                        self.fan_out(&frame, "broadcast", Some(from), None, Origin::Node(origin));
                    }
                }
            }
            RoomEvent::Moved { peer, from, to } => self.on_moved(peer, from, to, ctx),
            RoomEvent::Fence { peer, via, direct } => self.on_fence(peer, via, direct, ctx),
            RoomEvent::Forward { peer, frames, handover } => self.on_forward(peer, frames, handover),
            RoomEvent::Bounce { peer, id, why, .. } => {
                // The sender left meanwhile (or is not this node's): nobody here to tell.
                if let Some(i) = self.position(peer).filter(|&i| self.members[i].is_local()) {
                    self.answer_member(i, id.as_deref(), &why);
                }
            }
        }
    }
}

impl Room {
    /// A relay that came `via` another node and cannot be delivered here goes back to its
    /// sender's node, which answers it. The room's view may be what is wrong: check it soon.
    fn bounce(
        &mut self,
        via: Option<&crate::bus::Via>,
        from: PeerId,
        id: Option<Box<RawValue>>,
        why: &str,
        ctx: &mut Context<Self>,
    ) {
        if let Some(via) = via {
            self.state.bus.bounce(&self.name, via, from, id, why);
        }
        self.reconcile_soon(ctx);
    }
}
