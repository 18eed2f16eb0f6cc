//! What nodes and the gateway share through Redis: the key space, membership records and the
//! control messages every node listens to.
//!
//! These are protocol too — between the processes of one cluster rather than with clients — so
//! they live here, and the stateless gateway reads the very format the nodes write. (Relay
//! messages between nodes are the node's own business and stay in its bus.)

#[cfg(feature = "redis")]
mod buckets;
#[cfg(feature = "redis")]
pub mod endpoint;
mod keys;
mod record;

use std::sync::Arc;

#[cfg(feature = "redis")]
pub use buckets::{Buckets, MAX_BUCKETS, SLOTS, slot};
pub use keys::Keys;
pub use record::{Record, RecordError, parse_record, write_record};

use crate::protocol::PeerId;

/// A node's identity in the cluster.
pub type NodeId = Arc<str>;

/// A message on the cluster's control channel, for every node.
///
/// Text, one line: `lost <node>` is also written by Lua scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// A node's lease was reaped (or a restarted node's earlier incarnation is gone): every
    /// room drops its members.
    Lost(String),
    /// An operator removed `peer` from `room`; the node holding it acts.
    Kick { room: String, peer: PeerId },
    /// An operator closed `room`; every node holding members of it removes them.
    Close { room: String },
    /// A client resumes `peer`'s session on another node: the node holding it (which checks
    /// `secret`, the resume token's) parks it for that node to claim.
    Takeover { peer: PeerId, secret: u128 },
}

impl Control {
    pub fn encode(&self) -> String {
        // Room names may hold spaces (seed channels): the room goes last, the peer before it.
        match self {
            Self::Lost(node) => format!("lost {node}"),
            Self::Kick { room, peer } => format!("kick {peer} {room}"),
            Self::Close { room } => format!("close {room}"),
            Self::Takeover { peer, secret } => format!("takeover {peer} {secret:032x}"),
        }
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (verb, rest) = text.split_once(' ')?;
        match verb {
            "lost" => Some(Self::Lost(rest.to_string())),
            "kick" => {
                let (peer, room) = rest.split_once(' ')?;
                Some(Self::Kick { room: room.to_string(), peer: peer.parse().ok()? })
            }
            "close" => Some(Self::Close { room: rest.to_string() }),
            "takeover" => {
                let (peer, secret) = rest.split_once(' ')?;
                Some(Self::Takeover { peer: peer.parse().ok()?, secret: u128::from_str_radix(secret, 16).ok()? })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_with_spaces_in_rooms() {
        for c in [
            Control::Lost("node-a".into()),
            Control::Kick { room: "seed:lobby 1".into(), peer: PeerId(17) },
            Control::Close { room: "team standup".into() },
            Control::Takeover { peer: PeerId(99), secret: u128::MAX - 7 },
        ] {
            assert_eq!(Control::decode(&c.encode()), Some(c));
        }
        for bad in ["", "lost", "kick x room", "kick 5", "explode everything", "takeover 5", "takeover x ff"] {
            assert_eq!(Control::decode(bad), None, "{bad}");
        }
    }
}
