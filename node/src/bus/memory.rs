//! The embedded bus: membership and fan-out inside one process.
//!
//! A lone node uses it with no other node attached, so every call completes at once and the
//! relay path never touches it. Several nodes in one process can share one `MemoryBus`, which
//! is how the room logic's cross-node paths are tested without Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{PeerId, RoomName};

use super::{
    Bus, BusError, BusResult, Claim, Delivery, Inbound, Inboxes, JoinAck, JoinRules, Joined, MemberRecord, NodeId,
    ParkedSession, RoomEvent, seat_yields,
};

#[derive(Default)]
pub struct MemoryBus {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<NodeId, Inboxes>,
    rooms: HashMap<RoomName, Vec<MemberRecord>>,
}

impl State {
    /// Sends `event` to every node but `origin` holding members of `room`.
    fn notify(&self, room: &RoomName, origin: &NodeId, event: &RoomEvent) {
        let Some(members) = self.rooms.get(room) else { return };
        let mut nodes: Vec<&NodeId> = members.iter().map(|m| &m.node).filter(|n| *n != origin).collect();
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            if let Some(inbox) = self.nodes.get(node) {
                // Events for rooms a node no longer holds have no one to reach.
                let _ = inbox.rooms.deliver(Inbound { room: room.clone(), event: event.clone(), via: None });
            }
        }
    }
}

impl MemoryBus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Bus for MemoryBus {
    fn attach(&self, node: NodeId, inboxes: Inboxes) {
        self.state().nodes.insert(node, inboxes);
    }

    fn join(&self, room: &RoomName, member: MemberRecord, rules: JoinRules) -> BusResult<Joined> {
        let mut state = self.state();
        let others = || state.rooms.get(room).into_iter().flatten().filter(|m| m.peer != member.peer);
        if rules.capacity.is_some_and(|cap| others().count() >= cap) {
            return async { Err(BusError::RoomFull) }.boxed();
        }
        let seat = member.seed_user.as_deref().filter(|u| rules.seat && !u.is_empty());
        let taken = |m: &MemberRecord| {
            m.seed_user.as_deref() == seat && !seat_yields(m.user.as_deref(), member.user.as_deref())
        };
        if seat.is_some() && others().any(taken) {
            return async { Err(BusError::SeatTaken) }.boxed();
        }
        // In one process the other nodes' rooms get the event through their mailboxes; no
        // acknowledgement is awaited (the embedded bus serves one node in production).
        state.notify(room, &member.node, &RoomEvent::Joined(member.clone(), None));
        let members = state.rooms.entry(room.clone()).or_default();
        let others = members.iter().filter(|m| m.node != member.node).cloned().collect();
        members.retain(|m| m.peer != member.peer);
        members.push(member);
        async move { Ok(Joined { others, settled: None }) }.boxed()
    }

    fn ack(&self, _room: &RoomName, _ack: JoinAck) {}

    fn leave(&self, room: &RoomName, node: &NodeId, peer: PeerId, reason: LeaveReason) -> BusResult<()> {
        let mut state = self.state();
        let Some(members) = state.rooms.get_mut(room) else { return async { Ok(()) }.boxed() };
        let before = members.len();
        members.retain(|m| !(m.peer == peer && &m.node == node));
        let removed = members.len() < before;
        if members.is_empty() {
            state.rooms.remove(room);
        } else if removed {
            state.notify(room, node, &RoomEvent::Left { peer, reason });
        }
        async { Ok(()) }.boxed()
    }

    fn publish(&self, room: &RoomName, _from: &NodeId, to: &[NodeId], event: RoomEvent) -> BusResult<Delivery> {
        let state = self.state();
        let mut delivered = 0;
        for node in to {
            if let Some(inbox) = state.nodes.get(node) {
                // Events for rooms a node no longer holds have no one to reach.
                let _ = inbox.rooms.deliver(Inbound { room: room.clone(), event: event.clone(), via: None });
                delivered += 1;
            }
        }
        async move { Ok(Delivery { nodes: delivered }) }.boxed()
    }

    fn members(&self, room: &RoomName) -> BusResult<Vec<MemberRecord>> {
        let members = self.state().rooms.get(room).cloned().unwrap_or_default();
        async move { Ok(members) }.boxed()
    }

    fn goodbye(&self) -> BusResult<()> {
        async { Ok(()) }.boxed()
    }

    fn generation(&self, _room: &RoomName) -> u64 {
        0
    }

    fn healthy(&self) -> bool {
        true
    }

    fn resumable(&self) -> bool {
        false
    }

    fn park(&self, _: &str, _: Option<&ParkedSession>, _: Duration) -> BusResult<()> {
        async { Err(BusError::Unavailable("a lone node has nowhere to resume a session".into())) }.boxed()
    }

    fn claim(&self, _: &str) -> BusResult<Claim> {
        async { Ok(Claim::Unknown) }.boxed()
    }

    fn resume(&self, _: &RoomName, _: MemberRecord, _: &NodeId) -> BusResult<Option<Vec<MemberRecord>>> {
        async { Ok(None) }.boxed()
    }
}
