//! What only seed channels have: user ids that are seats (one connection per id, taken over
//! by a newer one — but a token holder's only by the same user), anonymous members (the empty
//! id), and repeated joins, which the seed's client uses to learn who is in the channel.

use std::sync::Arc;

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{ErrorCode, PeerId, ProtocolError};
use tracing::debug;

use super::{Join, Origin, Room};
use crate::bus::seat_yields;
use crate::dialect::error_frame;
use crate::session::{Deliver, Evicted};

impl Room {
    /// A seed `join` from a session that is a member already (or on its way in).
    ///
    /// With the same user id it changes nothing and is answered with `joined` and the current
    /// list, as the seed server answered it: the seed's client has no other way to learn who
    /// joined after it. With another id the member is renamed: it leaves under the old id (the
    /// others get its `quit`) and joins under the new one, taking that id over as any join
    /// would. A rename the seats refuse leaves the member as it was.
    pub(super) fn seed_rejoin(&mut self, join: Join, ctx: &mut Context<Self>) {
        let member = self.position(join.peer).filter(|&i| self.members[i].session.is_some());
        let Some(i) = member else {
            // Its first join did not hold (refused, or replaced, kicked or left since): the
            // session has been told so, and holds nothing this answer should change.
            let err = ProtocolError::new(
                ErrorCode::NotJoined,
                "this connection's earlier join of the channel did not hold (refused, replaced or left); join again",
            );
            self.state.metrics.error(err.code);
            join.session.do_send(Deliver::new(error_frame(self.dialect, &err, None), "error"));
            return self.check_idle();
        };
        if self.members[i].seed_user == join.seed_user {
            return self.answer_rejoin(join.peer, ctx);
        }
        if let Err(err) = self.check_seat(&join) {
            self.state.metrics.error(err.code);
            return self.members[i].deliver(Deliver::new(error_frame(self.dialect, &err, None), "error"));
        }
        debug!(parent: &self.span, peer = %join.peer, "seed member renamed");
        self.remove(i, LeaveReason::Left, Origin::Local, ctx);
        self.admit(join, ctx);
    }

    /// Answers a repeated join with `joined`: the whole membership, read from the cluster as a
    /// first join's is (members on other nodes this room had not heard of yet join its view).
    fn answer_rejoin(&mut self, peer: PeerId, ctx: &mut Context<Self>) {
        let own = self.state.node_id.clone();
        let read = self.state.bus.members(&self.name);
        // Holding the mailbox, like a join: the list is as of this message's place.
        ctx.wait(read.into_actor(self).map(move |res, act, _| {
            match res {
                Ok(records) => {
                    act.merge_remote(records.into_iter().filter(|r| r.node != own).collect(), Origin::Control)
                }
                // The room's own view, which every settled join has reached, still answers.
                Err(e) => debug!(parent: &act.span, error = %e, "membership read failed; answering from the view"),
            }
            let Some(i) = act.position(peer) else { return };
            let frame = act.joined_frame(peer, None);
            // Through the member: a join still settling gets its first `joined` before this one.
            act.members[i].deliver(Deliver::new(frame, "joined"));
        }));
    }

    /// Refuses `join`. A seed rename that is refused has already given up its old membership:
    /// its session is told it is out of the room, not merely that a join failed.
    pub(super) fn refuse_join(&self, join: &Join, err: ProtocolError) {
        if !join.repeat {
            return self.refuse(&join.session, err, join.id.as_deref());
        }
        self.state.metrics.error(err.code);
        let frame = Some(error_frame(self.dialect, &err, None));
        join.session.do_send(Evicted { room: self.name.clone(), frame, kind: "error" });
    }

    /// Refuses a join whose seed user id another member holds without yielding it (a token
    /// holder's, to anyone without a token for that user).
    pub(super) fn check_seat(&self, join: &Join) -> Result<(), ProtocolError> {
        let Some(user) = join.seed_user.as_ref().filter(|u| !u.is_empty()) else { return Ok(()) };
        let held = self.members.iter().any(|m| {
            m.info.peer_id != join.peer
                && m.seed_user.as_ref() == Some(user)
                && !seat_yields(m.info.user.as_deref(), join.user.as_deref())
        });
        if held { Err(seat_taken(user)) } else { Ok(()) }
    }

    /// Whether `join` takes over a seat (so the room does not grow).
    pub(super) fn replaces_seat(&self, join: &Join) -> bool {
        let Some(user) = join.seed_user.as_ref().filter(|u| !u.is_empty()) else { return false };
        self.members.iter().any(|m| m.info.peer_id != join.peer && m.seed_user.as_ref() == Some(user))
    }

    /// Removes every member holding seed user id `user` that yields it to a joiner whose token
    /// names `joiner` (or who has none), evicting local ones. Anonymous members hold no seat.
    pub(super) fn replace_seed_user(&mut self, user: &Arc<str>, joiner: Option<&str>, ctx: &mut Context<Self>) {
        if user.is_empty() {
            return;
        }
        let holds =
            |m: &super::Member| m.seed_user.as_ref() == Some(user) && seat_yields(m.info.user.as_deref(), joiner);
        while let Some(i) = self.members.iter().position(holds) {
            let old = self.remove(i, LeaveReason::Replaced, Origin::Control, ctx);
            if let Some(s) = old.session {
                let err = ProtocolError::new(ErrorCode::Replaced, "a newer connection joined with your userId");
                let frame = Some(error_frame(self.dialect, &err, None));
                s.do_send(Evicted { room: self.name.clone(), frame, kind: "error" });
            }
        }
    }
}

/// The refusal of a join for a seed user id a token holder has.
pub(super) fn seat_taken(user: &str) -> ProtocolError {
    let shown: String = user.chars().take(64).collect();
    ProtocolError::new(
        ErrorCode::Forbidden,
        format!(
            "userId {shown:?} is held by a connection whose access token names that user; only a token for it may take it over"
        ),
    )
}
