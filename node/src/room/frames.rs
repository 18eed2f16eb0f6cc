//! The frames a room writes itself, in its dialect.

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::PeerId;
use switchboard::protocol::seed::SeedServerMessage;
use switchboard::protocol::v1::{LeaveReason, PeerInfo, ServerMessage};

use super::Room;
use crate::dialect::Dialect;

impl Room {
    pub(super) fn joined_frame(&self, peer: PeerId, id: Option<&RawValue>) -> Bytes {
        let text = match self.dialect {
            Dialect::V1 => {
                let peers: Vec<PeerInfo> =
                    self.members.iter().filter(|m| m.info.peer_id != peer).map(|m| m.info.clone()).collect();
                ServerMessage::Joined { room: self.name.client_name(), peer_id: peer, peers: &peers, id }.to_json()
            }
            Dialect::Seed => {
                let users: Vec<&str> = self.members.iter().filter_map(|m| m.seed_user.as_deref()).collect();
                SeedServerMessage::Joined(&users).to_json()
            }
        };
        Bytes::from(text)
    }

    pub(super) fn peer_joined_frame(&self, info: &PeerInfo) -> Option<Bytes> {
        match self.dialect {
            Dialect::V1 => {
                Some(Bytes::from(ServerMessage::PeerJoined { room: self.name.client_name(), peer: info }.to_json()))
            }
            // The seed protocol has no such message; its clients learn of peers by their offers.
            Dialect::Seed => None,
        }
    }

    pub(super) fn peer_left_frame(&self, peer: PeerId, seed_user: Option<&str>, reason: LeaveReason) -> Bytes {
        let text = match self.dialect {
            Dialect::V1 => ServerMessage::PeerLeft { room: self.name.client_name(), peer_id: peer, reason }.to_json(),
            Dialect::Seed => SeedServerMessage::Quit {
                channel_name: self.name.client_name(),
                user_id: seed_user.unwrap_or(""),
                reason: operator_reason(reason),
            }
            .to_json(),
        };
        Bytes::from(text)
    }

    /// What a member the server removed is told: v1 `left` with the reason, or the seed
    /// dialect's `quit` notice naming its own user id. Returns the frame and its metrics label.
    pub(super) fn removed_frame(&self, seed_user: Option<&str>, reason: LeaveReason) -> (Bytes, &'static str) {
        let room = self.name.client_name();
        match self.dialect {
            Dialect::V1 => {
                (Bytes::from(ServerMessage::Left { room, reason: Some(reason), id: None }.to_json()), "left")
            }
            Dialect::Seed => {
                let quit = SeedServerMessage::Quit {
                    channel_name: room,
                    user_id: seed_user.unwrap_or(""),
                    reason: Some(reason),
                };
                (Bytes::from(quit.to_json()), "quit")
            }
        }
    }
}

/// The seed's `quit` notice keeps the seed server's exact shape for ordinary departures; only
/// an operator's removal, which the seed never had, says why.
fn operator_reason(reason: LeaveReason) -> Option<LeaveReason> {
    matches!(reason, LeaveReason::Kicked | LeaveReason::RoomClosed).then_some(reason)
}
