//! What a room does when the cluster itself changes: a node lost, this node's records to be
//! written again, membership to be reconciled after missed events.

use std::collections::HashSet;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use switchboard::protocol::v1::LeaveReason;
use tracing::{info, warn};

use super::{Origin, Room};
use crate::bus::ClusterEvent;

impl Handler<ClusterEvent> for Room {
    type Result = ();

    fn handle(&mut self, event: ClusterEvent, ctx: &mut Context<Self>) {
        match event {
            ClusterEvent::NodeLost(node) => {
                let mut i = self.members.len();
                while i > 0 {
                    i -= 1;
                    if self.members[i].node.as_ref() == Some(&node) {
                        self.remove(i, LeaveReason::NodeLost, Origin::Control, ctx);
                    }
                }
            }
            ClusterEvent::Reassert => self.reassert_if_stale(ctx),
            ClusterEvent::Kick { peer, .. } => {
                self.evict(Some(peer), LeaveReason::Kicked, ctx);
            }
            ClusterEvent::Close { .. } => {
                self.evict(None, LeaveReason::RoomClosed, ctx);
            }
            ClusterEvent::Resync => {
                let fut = self.state.bus.members(&self.name);
                ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
                    let records = match res {
                        Ok(r) => r,
                        Err(e) => return warn!(parent: &act.span, error = %e, "resync failed"),
                    };
                    let own = &act.state.node_id;
                    let remote: Vec<_> = records.into_iter().filter(|r| &r.node != own).collect();
                    let present: HashSet<_> = remote.iter().map(|r| r.peer).collect();
                    let mut i = act.members.len();
                    let mut dropped = 0;
                    while i > 0 {
                        i -= 1;
                        if act.members[i].node.is_some() && !present.contains(&act.members[i].info.peer_id) {
                            act.remove(i, LeaveReason::Left, Origin::Control, ctx);
                            dropped += 1;
                        }
                    }
                    let before = act.members.len();
                    act.merge_remote(remote, Origin::Control);
                    if dropped > 0 || act.members.len() != before {
                        info!(parent: &act.span, dropped, added = act.members.len() - before, "membership reconciled");
                    }
                }));
            }
        }
    }
}

impl Room {
    /// Writes every local member to the cluster again if this node's lease changed since they
    /// were written (Redis lost them, or this node was declared lost and came back).
    pub(super) fn reassert_if_stale(&mut self, ctx: &mut Context<Self>) {
        let generation = self.state.bus.generation();
        if self.asserted == generation {
            return;
        }
        self.asserted = generation;
        let records: Vec<_> = self.members.iter().filter(|m| m.is_local()).map(|m| self.record(m)).collect();
        for record in records {
            let peer = record.peer;
            let joined = self.state.bus.join(&self.name, record, None);
            ctx.spawn(joined.into_actor(self).map(move |res, act, _| match res {
                Ok(joined) => act.merge_remote(joined.others, Origin::Control),
                Err(e) => warn!(parent: &act.span, peer = %peer, error = %e, "re-assert failed"),
            }));
        }
    }
}
