//! What a clustered node tells its v1 clients about its cluster bus: a client that sees only
//! "waiting for others…" cannot tell an empty room from a node cut off from Redis.

use serde::{Deserialize, Serialize};

/// Whether a clustered node can reach its cluster bus (Redis): in `welcome`, and as a
/// `cluster-status` frame when it changes. While `connected` is false, calls within the node go
/// on but nothing reaches peers on other nodes, so a client should say so rather than wait.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterStatus {
    pub connected: bool,
    /// Where the node looks for Redis, `host:port` (never the URL: it may hold a password).
    /// Absent on a node started with `--production`, which keeps its topology to itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

/// Optional server frames a v1 client asks for with `?notify=<name>[,<name>…]` on the
/// WebSocket URL. Frames a client did not ask for never reach it: a client written before they
/// existed sees no message type it does not know.
pub const NOTIFY_CLUSTER_STATUS: &str = "cluster-status";

/// Whether a `notify` query value (`a,b,…`) asks for `name`.
pub fn notify_wants(notify: &str, name: &str) -> bool {
    notify.split(',').any(|n| n.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::super::{Event, Limits, ServerMessage, VERSION};
    use super::*;
    use crate::protocol::PeerId;

    #[test]
    fn cluster_status_is_a_frame_and_an_optional_welcome_field() {
        let down = ClusterStatus { connected: false, redis: Some("10.0.0.5:6379".into()) };
        let json = ServerMessage::ClusterStatus { status: &down }.to_json();
        assert_eq!(json, r#"{"type":"cluster-status","connected":false,"redis":"10.0.0.5:6379"}"#);
        let ev: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(ev, Event::ClusterStatus { connected: false, redis: Some("10.0.0.5:6379".into()) });
        let hidden = ClusterStatus { connected: true, redis: None };
        assert_eq!(
            ServerMessage::ClusterStatus { status: &hidden }.to_json(),
            r#"{"type":"cluster-status","connected":true}"#
        );

        let limits = Limits {
            max_message_bytes: 1,
            max_rooms: 1,
            max_peers_per_room: 1,
            messages_per_sec: 0,
            candidates_per_sec: 0,
            descriptions_per_min: 0,
            max_candidates_per_negotiation: 0,
            max_meta_bytes: 1,
            max_json_depth: 32,
        };
        let welcome = |cluster| {
            ServerMessage::Welcome {
                protocol: VERSION,
                peer_id: PeerId(1),
                node_id: "n",
                heartbeat_ms: 1,
                limits: &limits,
                resumed: false,
                resume_token: "t",
                resume_within_ms: 0,
                last_cseq: None,
                cluster,
            }
            .to_json()
        };
        assert!(!welcome(None).contains("cluster"), "a lone node's welcome is as before");
        let json = welcome(Some(&down));
        assert!(json.ends_with(r#","cluster":{"connected":false,"redis":"10.0.0.5:6379"}}"#), "{json}");
        let Event::Welcome { cluster, .. } = serde_json::from_str(&json).unwrap() else { panic!("{json}") };
        assert_eq!(cluster, Some(down));
    }

    #[test]
    fn notify_lists_names() {
        assert!(notify_wants("cluster-status", NOTIFY_CLUSTER_STATUS));
        assert!(notify_wants("other, cluster-status", NOTIFY_CLUSTER_STATUS));
        assert!(!notify_wants("cluster-statuses", NOTIFY_CLUSTER_STATUS));
        assert!(!notify_wants("", NOTIFY_CLUSTER_STATUS));
    }
}
