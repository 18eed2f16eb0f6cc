//! What operators ask of a room: who is in it, and removing members (a kick, a closed room).
//!
//! Removals go through the normal leave path, so the cluster's records go and the room's
//! other nodes tell their peers `peer-left` with the operator's reason. The removed peer is
//! told too (v1 `left` with the reason, or the seed dialect's `quit` naming itself), and its
//! socket stays open: it may be in other rooms.

use actix::{Context, Handler, Message, MessageResult};
use switchboard::api::Member as ApiMember;
use switchboard::protocol::PeerId;
use switchboard::protocol::v1::LeaveReason;

use super::{Origin, Room};
use crate::session::Evicted;

/// Every member of the room, on every node this room knows of.
#[derive(Message)]
#[rtype(result = "Vec<ApiMember>")]
pub struct Describe;

impl Handler<Describe> for Room {
    type Result = MessageResult<Describe>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        let own = &self.state.node_id;
        let members = self
            .members
            .iter()
            .map(|m| ApiMember {
                peer_id: m.info.peer_id,
                node: m.node.as_ref().unwrap_or(own).to_string(),
                user: m.info.user.as_deref().map(str::to_string),
                role: m.info.role,
                seed_user: m.seed_user.as_deref().map(str::to_string),
                // `meta` was checked to be a JSON object when the peer joined.
                meta: m.info.meta.as_deref().and_then(|raw| serde_json::from_str(raw.get()).ok()),
            })
            .collect();
        MessageResult(members)
    }
}

/// Removes this node's member `peer` (`Some`) or all of this node's members (`None`), for
/// `reason`. Answers how many were removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Remove {
    pub peer: Option<PeerId>,
    pub reason: LeaveReason,
}

impl Handler<Remove> for Room {
    type Result = usize;

    fn handle(&mut self, msg: Remove, ctx: &mut Context<Self>) -> usize {
        self.evict(msg.peer, msg.reason, ctx)
    }
}

impl Room {
    /// Removes local members on an operator's behalf: `peer`, or every one with `None`.
    pub(super) fn evict(&mut self, peer: Option<PeerId>, reason: LeaveReason, ctx: &mut Context<Self>) -> usize {
        let mut removed = 0;
        let mut i = self.members.len();
        while i > 0 {
            i -= 1;
            let m = &self.members[i];
            if !m.is_local() || peer.is_some_and(|p| p != m.info.peer_id) {
                continue;
            }
            // Closing the room: its members all go, so none is told of another's departure.
            let m =
                if peer.is_some() { self.remove(i, reason, Origin::Control, ctx) } else { self.detach(i, reason, ctx) };
            let (frame, kind) = self.removed_frame(m.seed_user.as_deref(), reason);
            if let Some(session) = m.session {
                session.do_send(Evicted { room: self.name.clone(), frame: Some(frame), kind });
            }
            removed += 1;
        }
        if removed > 0 {
            self.check_idle();
        }
        removed
    }
}
