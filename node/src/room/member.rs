//! A room's member as the room keeps it: connected here, parked here while this node drains,
//! or on another node; and how a frame reaches it in each case.

use std::sync::Arc;

use crate::post::Homed;
use switchboard::protocol::v1::PeerInfo;

use super::handoff::{self, Hold, Origin, Parked, Verdict};
use super::unreached::{Fate, Owed};
use crate::bus::{MemberRecord, NodeId};
use crate::session::{Deliver, Session};

pub(super) struct Member {
    pub(super) info: PeerInfo,
    pub(super) seed_user: Option<Arc<str>>,
    /// `None` for a member on another node.
    pub(super) session: Option<Homed<Session>>,
    /// The member's node, for a member on another node.
    pub(super) node: Option<NodeId>,
    /// For a local member whose join is still settling across the cluster: what arrived for it
    /// meanwhile, delivered right after its `joined`.
    pub(super) backlog: Option<Vec<Deliver>>,
    /// For a member parked by this draining node: what arrived for it since, handed to the
    /// node it resumes on. A parked member has no session but is still this node's.
    pub(super) parked: Option<Box<Parked>>,
    /// For a member that just resumed here: what waits until the cluster's routes to it settle.
    pub(super) hold: Option<Box<Hold>>,
}

impl Member {
    pub(super) fn remote(r: MemberRecord) -> Self {
        let info = PeerInfo { peer_id: r.peer, meta: r.meta, user: r.user, role: r.role };
        Member {
            info,
            seed_user: r.seed_user,
            session: None,
            node: Some(r.node),
            backlog: None,
            parked: None,
            hold: None,
        }
    }

    /// This node's member: connected, or parked while this node drains.
    pub(super) fn is_local(&self) -> bool {
        self.node.is_none()
    }

    /// Hands `d` to this member's session (or what stands in for it); a remote member gets
    /// nothing here.
    pub(super) fn deliver(&mut self, d: Deliver) {
        if let Some(parked) = &mut self.parked {
            return handoff::keep(parked, d);
        }
        match (&mut self.backlog, &self.session) {
            (Some(backlog), _) => backlog.push(d),
            // Its session stopped and its leave is on the way here: a signal sent to it now
            // would be dropped with the session's mailbox; its sender is answered instead.
            (None, Some(s)) if !s.connected() => {
                if let Some(p) = d.provenance {
                    let room = p.room.clone();
                    room.do_send(Owed { peer: self.info.peer_id, provenance: *p, fate: Fate::Lost });
                }
            }
            (None, Some(s)) => s.do_send(d),
            (None, None) => {}
        }
    }

    /// [`deliver`](Self::deliver), unless the member just resumed here and `d`, coming from
    /// `origin`, must wait for the routes to settle (or is coming through its old node).
    pub(super) fn deliver_from(&mut self, d: Deliver, origin: &Origin, broadcast: bool) {
        match self.hold.as_mut().map(|h| h.verdict(origin, broadcast)) {
            None => self.deliver(d),
            Some(Verdict::Skip) => {}
            Some(Verdict::Hold) => {
                if let Some(h) = &mut self.hold {
                    h.held.push(d);
                }
            }
        }
    }
}
