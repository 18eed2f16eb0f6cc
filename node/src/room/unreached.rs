//! Signals that will never reach their peer — kept for a member that did not come back, or
//! held for one that left — are answered to their senders `undeliverable` (with their ids),
//! wherever the sender is now: nothing a room accepted for a member vanishes in silence.

use actix::{Context, Handler, Message};
use serde_json::value::RawValue;
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError};
use tracing::debug;

use super::handoff::{Origin, Parked};
use super::{Member, Room};
use crate::bus::Via;
use crate::dialect::error_frame;
use crate::session::{Deliver, Provenance};

/// Why a signal kept for a member that went away unreached is answered.
const NOT_RESUMED: &str = "the peer lost its connection (or its node drained) and did not come back in time";
pub(super) const OVERFLOW: &str = "the peer was away and too much was waiting for it";
const SESSION_ENDED: &str = "the peer's connection ended before the message reached it";
const LATE: &str = "the peer's node stalled and could not deliver it in time";

/// A signal `peer`'s session did not write to its client, and what became of it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Owed {
    pub peer: PeerId,
    pub provenance: Provenance,
    pub fate: Fate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Kept with the parked session: it reaches the client if a resume takes it; else its
    /// sender is answered when the member is given up.
    Kept,
    /// The session ended (or its socket was closing) before it could be written: answered now.
    Lost,
    /// It reached the session past its link's deadline: answered now, never written.
    Late,
}

impl Handler<Owed> for Room {
    type Result = ();

    fn handle(&mut self, msg: Owed, _: &mut Context<Self>) {
        if msg.fate == Fate::Kept
            && let Some(parked) = self.position(msg.peer).and_then(|i| self.members[i].parked.as_mut())
        {
            return parked.owed.push(msg.provenance);
        }
        let why = match msg.fate {
            Fate::Kept => NOT_RESUMED,
            Fate::Lost => SESSION_ENDED,
            Fate::Late => LATE,
        };
        self.answer_lost(msg.provenance, why);
    }
}

/// The node leaves the cluster: its parked members will not resume from here any more. They
/// leave their rooms now (reason `shutdown`), and the senders of what was kept for them are
/// answered, before the node says goodbye. Answers how many were given up.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct GiveUp;

impl Handler<GiveUp> for Room {
    type Result = usize;

    fn handle(&mut self, _: GiveUp, ctx: &mut Context<Self>) -> usize {
        let mut given_up = 0;
        while let Some(i) = self.members.iter().position(|m| m.parked.is_some()) {
            debug!(parent: &self.span, peer = %self.members[i].info.peer_id, "a parked member outlived the drain");
            self.remove(i, LeaveReason::Shutdown, Origin::Local, ctx);
            given_up += 1;
        }
        if given_up > 0 {
            self.check_idle();
        }
        given_up
    }
}

impl Room {
    /// Answers the sender of a signal that will never reach its peer `undeliverable` (with its
    /// id), wherever the sender is now: on this node through its session (or what stands in
    /// for it), on another through its node.
    pub(super) fn answer_lost(&mut self, p: Provenance, why: &str) {
        let Provenance { from, via, id, .. } = p;
        // The sender left the room meanwhile: nobody is left to tell.
        let Some(i) = self.position(from) else { return };
        match (&self.members[i].node, via) {
            (None, _) => self.answer_member(i, id.as_deref(), why),
            // Where it came from, with its place on the link: answered once, whatever the link
            // said of it.
            (Some(node), Some(via)) if *node == via.node => self.state.bus.bounce(&self.name, &via, from, id, why),
            // The sender moved (or came from this node and moved on since).
            (Some(node), _) => {
                let via = Via { node: node.clone(), link: None, expires: None };
                self.state.bus.bounce(&self.name, &via, from, id, why);
            }
        }
    }

    /// Answers this node's member `i` `undeliverable` for its message `id`: through its
    /// session, or what stands in for it (kept while it is parked, held while its join
    /// settles).
    pub(super) fn answer_member(&mut self, i: usize, id: Option<&RawValue>, why: &str) {
        let frame = self.undeliverable_frame(id, why);
        self.members[i].deliver(Deliver::new(frame, "error"));
    }

    /// The `undeliverable` error for message `id`, counted.
    pub(super) fn undeliverable_frame(&self, id: Option<&RawValue>, why: &str) -> bytes::Bytes {
        let err = ProtocolError::new(ErrorCode::Undeliverable, format!("message not delivered: {why}"));
        self.state.metrics.error(err.code);
        error_frame(self.dialect, &err, id)
    }

    /// Answers the senders of what a departing local member was still waiting for: kept while
    /// parked, held while its routes settled after a resume, or held while its join settled.
    pub(super) fn answer_unreached(&mut self, m: &mut Member) {
        let mut lost: Vec<(Provenance, &str)> = Vec::new();
        if let Some(parked) = m.parked.take() {
            let Parked { owed, lost: dropped, .. } = *parked;
            lost.extend(owed.into_iter().map(|p| (p, NOT_RESUMED)));
            lost.extend(dropped.into_iter().map(|p| (p, OVERFLOW)));
        }
        let held = m.hold.take().map(|h| h.held).unwrap_or_default();
        for d in held.into_iter().chain(m.backlog.take().unwrap_or_default()) {
            lost.extend(d.provenance.map(|p| (*p, SESSION_ENDED)));
        }
        for (p, why) in lost {
            self.answer_lost(p, why);
        }
    }
}
