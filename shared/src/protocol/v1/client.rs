//! Protocol v1 as a Rust client speaks it: owned [`Event`]s with `data` as JSON values, and
//! [`Request`]s to send. The node never uses these; the reference peer and tests do.

use serde::{Deserialize, Serialize};

use super::{ClusterStatus, LeaveReason, Limits, PeerState};
use crate::protocol::{ErrorCode, PeerId, Role};

/// A server message as a Rust client reads it (owned, `data` as a JSON value).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    Welcome {
        protocol: u32,
        peer_id: PeerId,
        node_id: String,
        heartbeat_ms: u64,
        limits: Limits,
        /// This connection resumed a parked session: same peer id, same rooms.
        #[serde(default)]
        resumed: bool,
        /// A clustered node's bus: whether it reaches Redis (absent from lone and older nodes).
        #[serde(default)]
        cluster: Option<ClusterStatus>,
        /// Resumes this session after its socket breaks (absent from older nodes).
        #[serde(default)]
        resume_token: Option<String>,
        /// How long the server holds the session after an abnormal close.
        #[serde(default)]
        resume_within_ms: u64,
        /// On a resumed welcome: the last `cseq` the server processed.
        #[serde(default)]
        last_cseq: Option<u64>,
    },
    /// The node's bus came up or went down (only after asking with `?notify=cluster-status`).
    ClusterStatus {
        connected: bool,
        #[serde(default)]
        redis: Option<String>,
    },
    /// The node is draining: reconnect with `?resume=<resume_token>` within `within_ms`.
    Reconnect {
        resume_token: String,
        within_ms: u64,
    },
    Joined {
        room: String,
        peer_id: PeerId,
        peers: Vec<PeerEntry>,
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    Left {
        room: String,
        /// Set when the server removed this peer (`kicked`, `room-closed`).
        #[serde(default)]
        reason: Option<LeaveReason>,
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    PeerJoined {
        room: String,
        peer: PeerEntry,
    },
    PeerLeft {
        room: String,
        peer_id: PeerId,
        reason: LeaveReason,
    },
    /// Another member lost its socket (`reconnecting`) or resumed (`connected`).
    PeerState {
        room: String,
        peer_id: PeerId,
        state: PeerState,
    },
    Signal {
        room: String,
        from: PeerId,
        data: serde_json::Value,
    },
    Broadcast {
        room: String,
        from: PeerId,
        data: serde_json::Value,
    },
    Pong {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        last_cseq: Option<u64>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

/// A room member as a Rust client reads it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PeerEntry {
    pub peer_id: PeerId,
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    /// The user named by the peer's access token, if it joined with one.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
}

/// A client request as a Rust client writes it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    Join {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        meta: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    Leave {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    Signal {
        room: String,
        to: PeerId,
        data: serde_json::Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    Broadcast {
        room: String,
        data: serde_json::Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    Ping {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    /// Every frame up to `seq` arrived.
    Ack { seq: u64 },
}

impl Request {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
