//! The receiving side of the bus, on the subscriber task: control messages, link messages
//! (sequenced, into the links' inlets), and what they deliver to the rooms.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use switchboard::cluster::Control;
use switchboard::protocol::v1::ResumeToken;
use tracing::{debug, warn};

use super::link::Received;
use super::writer::Op;
use super::{Shared, wire};
use crate::bus::{ClusterEvent, Inbound, Inboxes, LinkSeq, NodeId, RoomEvent, Via};

/// Where a message a link delivered came from, with its deadline on this node's clock.
fn via(node: NodeId, link: LinkSeq, deadline_us: u64) -> Via {
    let left = Duration::from_micros(deadline_us.saturating_sub(wire::now_us()));
    Via { node, link: Some(link), expires: Some(Instant::now() + left) }
}

impl Shared {
    /// A message on the control channel: a lost node, or an operator's kick or close.
    fn control(&self, inboxes: &Inboxes, payload: &[u8]) {
        let Some(control) = std::str::from_utf8(payload).ok().and_then(Control::decode) else {
            self.metrics.errors.inc();
            return debug!(node = %self.keys.node(), "dropped an unreadable control message");
        };
        let event = match control {
            Control::Lost(node) if node == self.keys.node().as_ref() => return,
            Control::Lost(node) => {
                warn!(node = %self.keys.node(), lost = %node, "node lost");
                self.metrics.nodes_lost.inc();
                ClusterEvent::NodeLost(node.as_str().into())
            }
            Control::Kick { room, peer } => match wire::room_name(&room) {
                Ok(room) => ClusterEvent::Kick { room, peer },
                Err(e) => return debug!(node = %self.keys.node(), error = %e, "dropped a kick for a bad room"),
            },
            Control::Close { room } => match wire::room_name(&room) {
                Ok(room) => ClusterEvent::Close { room },
                Err(e) => return debug!(node = %self.keys.node(), error = %e, "dropped a close for a bad room"),
            },
            Control::Takeover { peer, secret } => ClusterEvent::Takeover(ResumeToken { peer, secret }),
        };
        inboxes.cluster.tell(event);
    }

    /// Hands one received channel message to the node.
    pub(super) fn dispatch(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let Some(inboxes) = self.inboxes.get() else { return };
        if channel == self.keys.control() {
            return self.control(inboxes, payload);
        }
        match wire::decode(payload) {
            Ok(wire::Decoded::Link(wire::LinkMsg::Data { src, inc, seq, base, deadline_us, body })) => {
                let mut inlets = self.inlets.lock().unwrap_or_else(PoisonError::into_inner);
                let received = inlets.receive(src, inc, seq, base, deadline_us, body);
                drop(inlets);
                if let Received::Deliver(link) = received {
                    let sent_us = deadline_us.saturating_sub(self.settings.timeout.as_micros() as u64);
                    self.metrics.transit.observe(wire::now_us().saturating_sub(sent_us) as f64 / 1e6);
                    self.deliver(inboxes, body, via(src.into(), link, deadline_us));
                }
                // What this message released from behind a gap, after it.
                self.deliver_released();
            }
            Ok(wire::Decoded::Link(wire::LinkMsg::Status { from, inc, upto, lost, missing })) => {
                self.enqueue(Op::Status { from: from.into(), inc, upto, lost, missing });
            }
            Ok(wire::Decoded::Link(wire::LinkMsg::Probe { src, inc, last, base })) => {
                self.inlets.lock().unwrap_or_else(PoisonError::into_inner).probe(src, inc, last, base);
            }
            // Unsequenced: the canary, or a node of the previous version.
            Ok(other) => self.take(inboxes, other, None),
            Err(e) => {
                self.metrics.errors.inc();
                debug!(node = %self.keys.node(), error = %e, "dropped an unreadable cluster message");
            }
        }
    }

    /// Delivers what the links released from behind gaps given up on.
    pub(super) fn deliver_released(self: &Arc<Self>) {
        let Some(inboxes) = self.inboxes.get() else { return };
        let ready = self.inlets.lock().unwrap_or_else(PoisonError::into_inner).ready();
        for r in ready {
            self.deliver(inboxes, &r.body, via(r.src, r.link, r.deadline_us));
        }
    }

    /// A message a link delivered.
    fn deliver(self: &Arc<Self>, inboxes: &Inboxes, body: &[u8], via: Via) {
        match wire::decode(body) {
            Ok(decoded) => self.take(inboxes, decoded, Some(via)),
            Err(e) => {
                // Settled as delivered on its link, yet nobody can be told: the one silent loss.
                self.metrics.errors.inc();
                self.metrics.silent_loss.inc();
                warn!(node = %self.keys.node(), from = %via.node, error = %e, "dropped an unreadable message from a link");
            }
        }
    }

    fn take(self: &Arc<Self>, inboxes: &Inboxes, decoded: wire::Decoded<'_>, via: Option<Via>) {
        let (room, event) = match decoded {
            wire::Decoded::Canary => return self.health.canary_seen(),
            wire::Decoded::Ack { token } => return self.acks.received(token),
            wire::Decoded::Room { room, event, sent_us } => {
                if let Some(sent) = sent_us {
                    // An unsequenced relay (a node of the previous version): its own deadline.
                    let age = wire::now_us().saturating_sub(sent);
                    self.metrics.transit.observe(age as f64 / 1e6);
                    if age > self.settings.timeout.as_micros() as u64 {
                        self.metrics.expired.inc();
                        return warn!(node = %self.keys.node(), room = %room, age_us = age, "dropped a relay that arrived too late");
                    }
                }
                (room, event)
            }
            wire::Decoded::Link(_) => {
                self.metrics.errors.inc();
                return debug!(node = %self.keys.node(), "dropped link upkeep nested in a link message");
            }
        };
        self.metrics.received.inc();
        if let (RoomEvent::Bounce { link, why, .. }, Some(v)) = (&event, &via) {
            // The link's sender side decides whether the relay still needs this answer.
            let (from, link, why) = (v.node.clone(), *link, why.clone());
            return self.enqueue(Op::Bounce { from, link, why, inbound: Box::new(Inbound { room, event, via }) });
        }
        match inboxes.rooms.deliver(Inbound { room, event, via }) {
            Ok(()) => {}
            // No such room here (it just closed): nothing here needs to know the joiner.
            Err(Inbound { event: RoomEvent::Joined(_, Some(ack)), .. }) => self.send_ack(ack),
            // Nothing here routes to the moved peer any more; its new node still waits
            // for this node's word on it.
            Err(Inbound { room, event: RoomEvent::Moved { peer, from, to }, .. })
                if &to != self.keys.node() && &from != self.keys.node() =>
            {
                self.send_fences(&room, peer, from, to)
            }
            // A signal for a peer of a room this node no longer holds.
            Err(Inbound { room, event: RoomEvent::Relay { from, to: Some(_), id, .. }, via: Some(via) }) => {
                self.bounce(&room, &via, from, id, "the peer is not in the room")
            }
            Err(_) => {}
        }
    }
}
