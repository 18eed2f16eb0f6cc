//! What a room does when the cluster itself changes — a node lost, this node's records to be
//! written again — and how its view of the membership converges on the cluster's records
//! whatever events were missed.

use std::collections::HashSet;
use std::time::Duration;

use actix::{ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use switchboard::protocol::PeerId;
use switchboard::protocol::v1::LeaveReason;
use tracing::{info, warn};

use super::{Origin, Room};
use crate::bus::{ClusterEvent, JoinRules, MemberRecord};

/// A difference must still be there this much later to be repaired: a join or leave on its way
/// shows as one for a moment (the record changed, its event has not arrived yet).
const CONFIRM: Duration = Duration::from_millis(300);

/// A re-assert that failed is tried again after this long, until it succeeds.
const REASSERT_RETRY: Duration = Duration::from_millis(250);

/// How soon a room that suspects its view (a relay from or to a peer it does not know) checks.
const SOON: Duration = Duration::from_millis(100);

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
            ClusterEvent::Resync => self.reconcile(ctx),
            // Sessions' business (the registry hands it to them).
            ClusterEvent::Takeover(_) => {}
            // The registry unwraps it for the rooms it concerns.
            ClusterEvent::Within { event, .. } => self.handle(*event, ctx),
        }
    }
}

/// Where a room's view and the cluster's records disagree.
#[derive(Default, PartialEq)]
struct Diff {
    /// Remote members the records no longer hold.
    gone: Vec<PeerId>,
    /// Members on other nodes this room has not heard of.
    new: Vec<PeerId>,
    /// This node's members the records lack.
    unwritten: Vec<PeerId>,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.new.is_empty() && self.unwritten.is_empty()
    }

    /// What both readings agree on.
    fn both(mut self, other: &Diff) -> Diff {
        self.gone.retain(|p| other.gone.contains(p));
        self.new.retain(|p| other.new.contains(p));
        self.unwritten.retain(|p| other.unwritten.contains(p));
        self
    }
}

impl Room {
    /// Starts the periodic check (on a cluster bus), at a random offset so that rooms spread
    /// their reads over the period.
    pub(super) fn start_reconciling(&mut self, ctx: &mut Context<Self>) {
        let Some(every) = self.state.bus.reconcile_every() else { return };
        ctx.run_later(every.mul_f64(rand::random::<f64>()), move |act, ctx| {
            act.reconcile(ctx);
            ctx.run_interval(every, |act, ctx| act.reconcile(ctx));
        });
    }

    /// Checks the view shortly (once, however often asked meanwhile).
    pub(super) fn reconcile_soon(&mut self, ctx: &mut Context<Self>) {
        if self.state.bus.reconcile_every().is_none() || self.reconcile_queued {
            return;
        }
        self.reconcile_queued = true;
        ctx.run_later(SOON, |act, ctx| {
            act.reconcile_queued = false;
            act.reconcile(ctx);
        });
    }

    /// Compares the room's view with the cluster's records and repairs what two readings,
    /// [`CONFIRM`] apart, agree is wrong: clients get the `peer-left` / `peer-joined` that make
    /// their view right, and this node's missing records are written again.
    pub(super) fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.reconciling {
            return;
        }
        self.reconciling = true;
        let first = self.state.bus.members(&self.name);
        ctx.spawn(first.into_actor(self).map(|res, act, ctx| {
            let diff = match res {
                Ok(records) => act.diff(&records),
                Err(e) => {
                    act.reconciling = false;
                    return warn!(parent: &act.span, error = %e, "membership check failed");
                }
            };
            if diff.is_empty() {
                act.reconciling = false;
                return;
            }
            ctx.run_later(CONFIRM, move |act, ctx| {
                let second = act.state.bus.members(&act.name);
                ctx.spawn(second.into_actor(act).map(move |res, act, ctx| {
                    act.reconciling = false;
                    match res {
                        Ok(records) => {
                            let confirmed = diff.both(&act.diff(&records));
                            act.repair(confirmed, records, ctx);
                        }
                        Err(e) => warn!(parent: &act.span, error = %e, "membership check failed"),
                    }
                }));
            });
        }));
    }

    fn diff(&self, records: &[MemberRecord]) -> Diff {
        let own = &self.state.node_id;
        let recorded: HashSet<PeerId> = records.iter().map(|r| r.peer).collect();
        let mut d = Diff::default();
        for m in &self.members {
            let peer = m.info.peer_id;
            if m.node.is_some() && !recorded.contains(&peer) {
                d.gone.push(peer);
            }
            // Parked members are recorded too; a member still settling its join is being written.
            if m.session.is_some() && m.backlog.is_none() && !recorded.contains(&peer) {
                d.unwritten.push(peer);
            }
        }
        for r in records {
            if &r.node != own && self.position(r.peer).is_none() {
                d.new.push(r.peer);
            }
        }
        d
    }

    fn repair(&mut self, diff: Diff, records: Vec<MemberRecord>, ctx: &mut Context<Self>) {
        if diff.is_empty() {
            return;
        }
        info!(
            parent: &self.span,
            gone = diff.gone.len(),
            new = diff.new.len(),
            unwritten = diff.unwritten.len(),
            "membership repaired from the cluster's records"
        );
        let repairs = diff.gone.len() + diff.new.len() + diff.unwritten.len();
        self.state.metrics.bus.repairs.inc_by(repairs as u64);
        for peer in diff.gone {
            if let Some(i) = self.position(peer).filter(|&i| self.members[i].node.is_some()) {
                self.remove(i, LeaveReason::Left, Origin::Control, ctx);
            }
        }
        let new: Vec<MemberRecord> = records.into_iter().filter(|r| diff.new.contains(&r.peer)).collect();
        self.merge_remote(new, Origin::Control);
        for peer in diff.unwritten {
            if let Some(i) = self.position(peer) {
                let record = self.record(&self.members[i]);
                self.write_member(record, ctx);
            }
        }
    }

    /// Writes every local member to the cluster again if this node's lease changed since they
    /// were written (Redis lost them, or this node was declared lost and came back). Tried
    /// again until every write succeeded.
    pub(super) fn reassert_if_stale(&mut self, ctx: &mut Context<Self>) {
        let generation = self.state.bus.generation(&self.name);
        if self.asserted == generation || self.asserting {
            return;
        }
        self.asserting = true;
        let records: Vec<_> = self.members.iter().filter(|m| m.is_local()).map(|m| self.record(m)).collect();
        let joins: Vec<_> =
            records.into_iter().map(|r| self.state.bus.join(&self.name, r, JoinRules::default())).collect();
        let all = futures_util::future::join_all(joins);
        ctx.spawn(all.into_actor(self).map(move |results, act, ctx| {
            let mut failed = 0;
            for res in results {
                match res {
                    Ok(joined) => act.merge_remote(joined.others, Origin::Control),
                    Err(e) => {
                        failed += 1;
                        warn!(parent: &act.span, error = %e, "re-assert failed; trying again");
                    }
                }
            }
            if failed == 0 {
                // Written under `generation`; if the lease changed again meanwhile, again.
                act.asserting = false;
                act.asserted = generation;
                act.reassert_if_stale(ctx);
            } else {
                // Still `asserting`: relays meanwhile do not start another attempt each.
                ctx.run_later(REASSERT_RETRY, |act, ctx| {
                    act.asserting = false;
                    act.reassert_if_stale(ctx);
                });
            }
        }));
    }

    /// Writes one local member's record again (the records lost it).
    fn write_member(&mut self, record: MemberRecord, ctx: &mut Context<Self>) {
        let peer = record.peer;
        let joined = self.state.bus.join(&self.name, record, JoinRules::default());
        ctx.spawn(joined.into_actor(self).map(move |res, act, _| match res {
            Ok(joined) => act.merge_remote(joined.others, Origin::Control),
            Err(e) => warn!(parent: &act.span, peer = %peer, error = %e, "rewriting a member failed"),
        }));
    }
}
