//! The registry actor: creates a room actor on its first join and stops it once it is empty.
//!
//! Joins are routed through here so that "is this room empty?" has one authority. A room that
//! empties reports how many joins it has seen; the registry stops it only if that equals the
//! joins it routed, i.e. no join is still on its way to the room. Relays never pass here:
//! sessions talk to the rooms they joined directly.
//!
//! A room actor is started on the worker thread of the session that opened it, so the two
//! peers of a call usually share a thread with their room.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use actix::{Actor, ActorContext, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message, MessageResult};
use switchboard::protocol::RoomName;
use tracing::debug;

use crate::bus::{ClusterEvent, Inbound, RoomInbox};
use crate::room::{Close, Join, Leave, Resume, Room};
use crate::session::Surrender;
use crate::state::NodeState;

pub struct Registry {
    state: Weak<NodeState>,
    rooms: HashMap<RoomName, Entry>,
    directory: Arc<RoomDirectory>,
}

/// The open rooms by name, readable from any thread: the bus hands events from other nodes
/// straight to their room. Only the registry writes it, as it opens and closes rooms.
#[derive(Default)]
pub struct RoomDirectory(RwLock<HashMap<RoomName, Addr<Room>>>);

impl RoomDirectory {
    /// The open room `name`, if this node holds it.
    pub fn get(&self, name: &RoomName) -> Option<Addr<Room>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every open room of this node.
    pub fn all(&self) -> Vec<(RoomName, Addr<Room>)> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).iter().map(|(n, a)| (n.clone(), a.clone())).collect()
    }
}

impl RoomInbox for RoomDirectory {
    fn deliver(&self, msg: Inbound) -> Result<(), Inbound> {
        match self.0.read().unwrap_or_else(PoisonError::into_inner).get(&msg.room) {
            Some(room) => {
                room.do_send(msg);
                Ok(())
            }
            None => Err(msg),
        }
    }
}

struct Entry {
    addr: Addr<Room>,
    /// Joins sent to this room so far.
    routed: u64,
}

impl Registry {
    pub fn new() -> Self {
        Self { state: Weak::new(), rooms: HashMap::new(), directory: Arc::default() }
    }

    /// The directory the bus delivers through.
    pub fn directory(&self) -> Arc<RoomDirectory> {
        Arc::clone(&self.directory)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// Hands the registry the node state once it exists (the state holds the registry's address,
/// so the two are tied after both are built).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub Weak<NodeState>);

impl Handler<Attach> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        self.state = msg.0;
    }
}

/// Route a join to its room, creating the room on `arbiter` if it does not exist.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route {
    pub room: RoomName,
    pub join: Join,
    pub arbiter: ArbiterHandle,
}

impl Handler<Route> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) {
        if let Some(entry) = self.open(&msg.room, &msg.arbiter, ctx) {
            entry.routed += 1;
            entry.addr.do_send(msg.join);
        }
    }
}

/// Route a resumed session's member to its room, creating the room if it does not exist.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteResume {
    pub room: RoomName,
    pub resume: Resume,
    pub arbiter: ArbiterHandle,
}

impl Handler<RouteResume> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RouteResume, ctx: &mut Context<Self>) {
        if let Some(entry) = self.open(&msg.room, &msg.arbiter, ctx) {
            entry.routed += 1;
            entry.addr.do_send(msg.resume);
        }
    }
}

impl Registry {
    /// The room `name`, started on `arbiter` if it is not open yet.
    fn open(&mut self, name: &RoomName, arbiter: &ArbiterHandle, ctx: &mut Context<Self>) -> Option<&mut Entry> {
        let Some(state) = self.state.upgrade() else {
            ctx.stop();
            return None;
        };
        let directory = &self.directory;
        Some(self.rooms.entry(name.clone()).or_insert_with(|| {
            state.metrics.rooms.inc();
            debug!(node = %state.node_id, room = %name, "room opened");
            let (room, registry, st) = (name.clone(), ctx.address(), Arc::clone(&state));
            let addr = Room::start_in_arbiter(arbiter, move |_| Room::new(room, st, registry));
            directory.0.write().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), addr.clone());
            Entry { addr, routed: 0 }
        }))
    }
}

/// A room has no members left after seeing `joins_seen` joins.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomIdle {
    pub room: RoomName,
    pub joins_seen: u64,
}

impl Handler<RoomIdle> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RoomIdle, _: &mut Context<Self>) {
        let Some(entry) = self.rooms.get(&msg.room) else { return };
        if entry.routed != msg.joins_seen {
            // A join is on its way: the room lives on.
            return;
        }
        if let Some(entry) = self.rooms.remove(&msg.room) {
            self.directory.0.write().unwrap_or_else(PoisonError::into_inner).remove(&msg.room);
            entry.addr.do_send(Close);
            if let Some(state) = self.state.upgrade() {
                state.metrics.rooms.dec();
                debug!(node = %state.node_id, room = %msg.room, "room closed");
            }
        }
    }
}

impl Handler<ClusterEvent> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ClusterEvent, _: &mut Context<Self>) {
        match &msg {
            // An operator's action concerns one room; a node without it has nothing to do.
            ClusterEvent::Kick { room, .. } | ClusterEvent::Close { room } => {
                if let Some(entry) = self.rooms.get(room) {
                    entry.addr.do_send(msg);
                }
            }
            // About a session, not a room: the one holding it (if here) checks the token.
            ClusterEvent::Takeover(token) => {
                let session = self.state.upgrade().and_then(|s| s.sessions.get(token.peer));
                if let Some(session) = session {
                    session.do_send(Surrender { secret: token.secret });
                }
            }
            ClusterEvent::Within { bucket, buckets, event } => {
                for (room, entry) in &self.rooms {
                    if buckets.of_room(room.as_str()) == *bucket {
                        entry.addr.do_send((**event).clone());
                    }
                }
            }
            _ => {
                for entry in self.rooms.values() {
                    entry.addr.do_send(msg.clone());
                }
            }
        }
    }
}

/// Every open room of this node (a drain's last step asks each to give up its parked members).
#[derive(Message)]
#[rtype(result = "Vec<Addr<Room>>")]
pub struct OpenRooms;

impl Handler<OpenRooms> for Registry {
    type Result = MessageResult<OpenRooms>;

    fn handle(&mut self, _: OpenRooms, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rooms.values().map(|e| e.addr.clone()).collect())
    }
}

/// Leave a room by name: for a session that stops while its join is still on the way, so the
/// leave reaches the room after the join (both pass through here, in order).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteLeave {
    pub room: RoomName,
    pub leave: Leave,
}

impl Handler<RouteLeave> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RouteLeave, _: &mut Context<Self>) {
        if let Some(entry) = self.rooms.get(&msg.room) {
            entry.addr.do_send(msg.leave);
        }
    }
}
