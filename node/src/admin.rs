//! The admin API over this node's own rooms, for a node on the embedded bus (the single-machine
//! run): it is the whole cluster, so its rooms are all the rooms there are.
//!
//! A clustered node mounts the gateway's Redis-backed admin instead, which reads every node's
//! records and asks the owning node to act over the control channel.
//!
//! Rooms are found in the registry's directory (readable from any thread) and asked with
//! typed actor messages ([`Describe`], [`Remove`]), so every answer is the room's own view, in
//! order with its joins and leaves.

use std::sync::{Arc, Weak};

use actix::Addr;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use switchboard::api::{NodeInfo, RoomDetail, RoomList, RoomSummary};
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{PeerId, RoomName};
use switchboard_gateway::admin::{AdminError, AdminResult, ClusterAdmin};

use crate::registry::RoomDirectory;
use crate::room::{Describe, Remove, Room};
use crate::state::NodeState;

pub struct LocalAdmin {
    /// Weak: the state holds what serves the routes that hold this.
    state: Weak<NodeState>,
    rooms: Arc<RoomDirectory>,
}

impl LocalAdmin {
    pub fn new(state: Weak<NodeState>, rooms: Arc<RoomDirectory>) -> Self {
        Self { state, rooms }
    }

    fn find(&self, room: &str) -> Result<(RoomName, Addr<Room>), AdminError> {
        let name = RoomName::parse(room).map_err(|e| AdminError::BadRequest(e.message.to_string()))?;
        let addr = self.rooms.get(&name).ok_or(AdminError::NoSuchRoom)?;
        Ok((name, addr))
    }
}

fn gone(e: actix::MailboxError) -> AdminError {
    // The room stopped between the look-up and the question: it had emptied.
    match e {
        actix::MailboxError::Closed => AdminError::NoSuchRoom,
        actix::MailboxError::Timeout => AdminError::Timeout(0),
    }
}

fn protocol(name: &RoomName) -> String {
    if name.is_seed() { "seed" } else { "v1" }.to_string()
}

impl ClusterAdmin for LocalAdmin {
    fn nodes(&self) -> AdminResult<Vec<NodeInfo>> {
        let info = self.state.upgrade().map(|s| s.node_info());
        async move { Ok(info.into_iter().collect()) }.boxed()
    }

    fn rooms(&self, cursor: Option<String>, limit: usize) -> AdminResult<RoomList> {
        let limit = limit.max(1);
        // The cursor is the last room of the previous page, by its name in the cluster.
        let mut rooms: Vec<_> =
            self.rooms.all().into_iter().filter(|(n, _)| cursor.as_deref().is_none_or(|c| n.as_str() > c)).collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        let next_cursor = (rooms.len() > limit).then(|| rooms[limit - 1].0.as_str().to_string());
        rooms.truncate(limit);
        async move {
            let described = join_all(rooms.iter().map(|(_, addr)| addr.send(Describe))).await;
            let rooms = rooms
                .iter()
                .zip(described)
                // A room that stopped meanwhile had emptied: it is not listed.
                .filter_map(|((name, _), members)| {
                    let members = members.ok()?;
                    let summary = RoomSummary {
                        room: name.client_name().to_string(),
                        protocol: protocol(name),
                        members: members.len() as u64,
                    };
                    (!members.is_empty()).then_some(summary)
                })
                .collect();
            Ok(RoomList { rooms, next_cursor })
        }
        .boxed()
    }

    fn room(&self, room: &str) -> AdminResult<RoomDetail> {
        let found = self.find(room);
        async move {
            let (name, addr) = found?;
            let members = addr.send(Describe).await.map_err(gone)?;
            if members.is_empty() {
                return Err(AdminError::NoSuchRoom);
            }
            Ok(RoomDetail { room: name.client_name().to_string(), protocol: protocol(&name), members })
        }
        .boxed()
    }

    fn kick(&self, room: &str, peer: PeerId) -> AdminResult<u64> {
        let found = self.find(room);
        async move {
            let (_, addr) = found?;
            let removed = addr.send(Remove { peer: Some(peer), reason: LeaveReason::Kicked }).await.map_err(gone)?;
            if removed == 0 {
                return Err(AdminError::NoSuchMember);
            }
            Ok(removed as u64)
        }
        .boxed()
    }

    fn close(&self, room: &str) -> AdminResult<u64> {
        let found = self.find(room);
        async move {
            let (_, addr) = found?;
            let removed = addr.send(Remove { peer: None, reason: LeaveReason::RoomClosed }).await.map_err(gone)?;
            if removed == 0 {
                return Err(AdminError::NoSuchRoom);
            }
            Ok(removed as u64)
        }
        .boxed()
    }

    fn healthy(&self) -> BoxFuture<'static, bool> {
        let healthy = self.state.upgrade().is_some_and(|s| s.bus.healthy());
        async move { healthy }.boxed()
    }
}
