//! The embedded bus: membership and fan-out inside one process.
//!
//! A lone node uses it with no other node attached, so every call completes at once and the
//! relay path never touches it. Several nodes in one process can share one `MemoryBus`, which
//! is how the room logic's cross-node paths are tested without Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix::Recipient;
use futures_util::FutureExt;
use switchboard::protocol::{PeerId, RoomName};

use super::{Bus, BusResult, Delivery, Inbound, MemberRecord, NodeId, RoomEvent};

#[derive(Default)]
pub struct MemoryBus {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<NodeId, Recipient<Inbound>>,
    rooms: HashMap<RoomName, Vec<MemberRecord>>,
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
    fn attach(&self, node: NodeId, inbox: Recipient<Inbound>) {
        self.state().nodes.insert(node, inbox);
    }

    fn join(&self, room: &RoomName, member: MemberRecord) -> BusResult<Vec<MemberRecord>> {
        let mut state = self.state();
        let members = state.rooms.entry(room.clone()).or_default();
        let others = members.iter().filter(|m| m.node != member.node).cloned().collect();
        members.retain(|m| m.peer != member.peer);
        members.push(member);
        async move { Ok(others) }.boxed()
    }

    fn leave(&self, room: &RoomName, _node: &NodeId, peer: PeerId) -> BusResult<()> {
        let mut state = self.state();
        if let Some(members) = state.rooms.get_mut(room) {
            members.retain(|m| m.peer != peer);
            if members.is_empty() {
                state.rooms.remove(room);
            }
        }
        async { Ok(()) }.boxed()
    }

    fn publish(&self, room: &RoomName, origin: &NodeId, event: RoomEvent) -> BusResult<Delivery> {
        let state = self.state();
        let mut nodes: Vec<&NodeId> = state
            .rooms
            .get(room)
            .map(|ms| ms.iter().map(|m| &m.node).filter(|n| *n != origin).collect())
            .unwrap_or_default();
        nodes.sort();
        nodes.dedup();
        let mut delivered = 0;
        for node in nodes {
            if let Some(inbox) = state.nodes.get(node) {
                inbox.do_send(Inbound { room: room.clone(), event: event.clone() });
                delivered += 1;
            }
        }
        async move { Ok(Delivery { nodes: delivered }) }.boxed()
    }

    fn healthy(&self) -> bool {
        true
    }
}
