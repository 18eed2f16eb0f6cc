//! Protocol v1, spoken at `/v1/ws`.
//!
//! Client → server: `join`, `leave`, `signal` (targeted), `broadcast`, `ping`; each may carry an
//! `id` (string or number) that the server echoes on the reply or error it causes.
//! Server → client: `welcome` (first frame: protocol version, the peer id, limits), `joined`,
//! `left`, `peer-joined`, `peer-left`, `signal`, `broadcast`, `pong`, `error`; and, only to a
//! client that asked for it (`?notify=cluster-status`), `cluster-status`.
//!
//! The server assigns peer ids and stamps `from` itself: a client can never speak as another
//! peer, nor address a room it has not joined. See `docs/protocol.md` for every message.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{ErrorCode, PeerId, ProtocolError, Role};

mod client;
mod cluster;
mod resume;
pub use client::{Event, PeerEntry, Request};
pub use cluster::{ClusterStatus, NOTIFY_CLUSTER_STATUS, notify_wants};
pub use resume::{ResumeToken, seq_of, seq_prefix};

/// The protocol version this module speaks.
pub const VERSION: u32 = 1;
/// The WebSocket subprotocol a client may ask for to pin v1.
pub const SUBPROTOCOL: &str = "switchboard.v1";
/// Longest `id` (as raw JSON) a client may attach.
pub const MAX_ID_BYTES: usize = 64;

/// A parsed client frame: the message and the correlation `id` to echo.
#[derive(Debug)]
pub struct ClientFrame<'a> {
    pub id: Option<&'a RawValue>,
    /// The client's number for this message (1, 2, 3…), so a resumed session processes each
    /// message once however often the client re-sends it.
    pub cseq: Option<u64>,
    pub msg: ClientMessage<'a>,
}

/// What a client can ask of the server. Borrowed from the frame: nothing is copied until the
/// session decides the message is admissible.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    Join {
        room: Cow<'a, str>,
        meta: Option<&'a RawValue>,
    },
    Leave {
        room: Cow<'a, str>,
    },
    Signal {
        room: Cow<'a, str>,
        to: PeerId,
        data: &'a RawValue,
    },
    Broadcast {
        room: Cow<'a, str>,
        data: &'a RawValue,
    },
    Ping,
    /// Every frame up to `seq` arrived: the server may forget them.
    Ack {
        seq: u64,
    },
}

impl ClientMessage<'_> {
    /// The message's `type` on the wire (also its metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Signal { .. } => "signal",
            Self::Broadcast { .. } => "broadcast",
            Self::Ping => "ping",
            Self::Ack { .. } => "ack",
        }
    }
}

/// A frame the server could not accept, with the `id` to echo when one was readable.
#[derive(Debug)]
pub struct Rejected<'a> {
    pub error: ProtocolError,
    pub id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cseq: Option<&'a RawValue>,
    #[serde(borrow, default)]
    seq: Option<&'a RawValue>,
}

/// A positive integer field (`cseq`, an ack's `seq`), or the reason it is not one.
fn counter(raw: &RawValue, what: &str) -> Result<u64, ProtocolError> {
    raw.get()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ProtocolError::new(ErrorCode::BadMessage, format!("`{what}` must be a positive integer")))
}

impl<'a> ClientFrame<'a> {
    /// Parses one text frame. Unknown fields are ignored so that newer clients can add them.
    pub fn parse(text: &'a str) -> Result<Self, Rejected<'a>> {
        let env: Envelope<'a> = serde_json::from_str(text).map_err(|e| Rejected {
            error: match super::shape_error(text, &e) {
                Some(e) => ProtocolError::new(ErrorCode::BadMessage, format!("not a v1 message: {e}")),
                None => ProtocolError::new(ErrorCode::BadJson, format!("invalid JSON: {e}")),
            },
            id: None,
        })?;
        let id = env.id;
        let reject = |code, message: String| Rejected { error: ProtocolError::new(code, message), id };
        if let Some(raw) = id {
            let s = raw.get();
            let scalar = s.starts_with('"') || s.starts_with('-') || s.as_bytes()[0].is_ascii_digit();
            if !scalar || s.len() > MAX_ID_BYTES {
                return Err(Rejected {
                    error: ProtocolError::new(
                        ErrorCode::BadMessage,
                        "`id` must be a string or number of at most 64 bytes",
                    ),
                    id: None,
                });
            }
        }
        let need_room = |room: Option<Cow<'a, str>>| {
            room.ok_or_else(|| reject(ErrorCode::BadMessage, format!("`{}` needs a `room`", env.kind)))
        };
        for (raw, what) in [(env.data, "data"), (env.meta, "meta")] {
            if let Some(raw) = raw {
                super::check_depth(raw, what).map_err(|error| Rejected { error, id })?;
            }
        }
        let cseq = env.cseq.map(|c| counter(c, "cseq")).transpose().map_err(|error| Rejected { error, id })?;
        let msg = match &*env.kind {
            "join" => ClientMessage::Join { room: need_room(env.room)?, meta: env.meta },
            "leave" => ClientMessage::Leave { room: need_room(env.room)? },
            "signal" => {
                let room = need_room(env.room)?;
                let to = env.to.ok_or_else(|| reject(ErrorCode::BadMessage, "`signal` needs a `to` peer id".into()))?;
                let to = to.parse().map_err(|e: ProtocolError| Rejected { error: e, id })?;
                let data = env.data.ok_or_else(|| reject(ErrorCode::BadMessage, "`signal` needs `data`".into()))?;
                ClientMessage::Signal { room, to, data }
            }
            "broadcast" => {
                let room = need_room(env.room)?;
                let data = env.data.ok_or_else(|| reject(ErrorCode::BadMessage, "`broadcast` needs `data`".into()))?;
                ClientMessage::Broadcast { room, data }
            }
            "ping" => ClientMessage::Ping,
            "ack" => {
                let seq = env.seq.ok_or_else(|| reject(ErrorCode::BadMessage, "`ack` needs a `seq`".into()))?;
                ClientMessage::Ack { seq: counter(seq, "seq").map_err(|error| Rejected { error, id })? }
            }
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(reject(ErrorCode::UnknownType, format!("unknown message type `{shown}`")));
            }
        };
        Ok(ClientFrame { id, cseq, msg })
    }
}

/// A member of a room as other members see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Arc<RawValue>>,
    /// The user its access token names (only for peers that joined with a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Arc<str>>,
    /// The role its access token grants (only for peers that joined with a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// Why a peer left a room, as `peer-left.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveReason {
    /// It sent `leave` (or the seed's `quit`).
    Left,
    /// Its WebSocket closed.
    Disconnected,
    /// It stopped answering heartbeats.
    Timeout,
    /// It was cut off for reading too slowly.
    SlowConsumer,
    /// A newer connection took over its seed user id.
    Replaced,
    /// Its node shut down.
    Shutdown,
    /// Its node vanished without a goodbye.
    NodeLost,
    /// An operator removed it.
    Kicked,
    /// An operator closed the room.
    RoomClosed,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Disconnected => "disconnected",
            Self::Timeout => "timeout",
            Self::SlowConsumer => "slow-consumer",
            Self::Replaced => "replaced",
            Self::Shutdown => "shutdown",
            Self::NodeLost => "node-lost",
            Self::Kicked => "kicked",
            Self::RoomClosed => "room-closed",
        }
    }
}

/// A member's connection as the other members of its rooms see it (`peer-state.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    /// Its socket broke; the server holds it for its resume (`welcome.resume_within_ms`).
    Reconnecting,
    /// It resumed: same peer id, nothing lost.
    Connected,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconnecting => "reconnecting",
            Self::Connected => "connected",
        }
    }
}

/// The limits a node enforces, announced in `welcome` so clients can pace themselves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_rooms: usize,
    pub max_peers_per_room: usize,
    pub messages_per_sec: u32,
    pub candidates_per_sec: u32,
    pub descriptions_per_min: u32,
    pub max_candidates_per_negotiation: u32,
    pub max_meta_bytes: usize,
    /// How deep `data` and `meta` may nest arrays and objects ([`super::MAX_JSON_DEPTH`]);
    /// absent (0) from nodes older than this field.
    #[serde(default)]
    pub max_json_depth: usize,
}

/// What the server sends. Serialized once per event and fanned out as the same bytes.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    Welcome {
        protocol: u32,
        peer_id: PeerId,
        node_id: &'a str,
        heartbeat_ms: u64,
        limits: &'a Limits,
        /// True when this connection took over a parked session (`?resume=<token>`): the peer
        /// id and every room membership are the ones it had, and what was sent to it in the gap
        /// follows. Absent on a fresh session.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
        /// The token that resumes this session (`?resume=<token>&last_seq=<n>`, on any node)
        /// after its socket breaks; single-use, and every welcome brings a fresh one.
        resume_token: &'a str,
        /// How long the session is held after an abnormal close (0: it is not).
        resume_within_ms: u64,
        /// On a resumed welcome: the last client `cseq` the server processed (the client
        /// re-sends what follows).
        #[serde(skip_serializing_if = "Option::is_none")]
        last_cseq: Option<u64>,
        /// Whether this node reaches its cluster bus right now; absent on a lone node (no
        /// `--redis-url`), which has no cluster to lose.
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster: Option<&'a ClusterStatus>,
    },
    /// The node's [`ClusterStatus`] changed (it has held for a moment); only to clients that
    /// asked with `?notify=cluster-status`.
    ClusterStatus {
        #[serde(flatten)]
        status: &'a ClusterStatus,
    },
    /// The node is draining: reconnect (to any node) with `?resume=<resume_token>` within
    /// `within_ms` to keep this peer id and its rooms; the server closes with 1012 next.
    Reconnect {
        resume_token: &'a str,
        within_ms: u64,
    },
    Joined {
        room: &'a str,
        peer_id: PeerId,
        peers: &'a [PeerInfo],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Left {
        room: &'a str,
        /// Only when the server removed the peer (`kicked`, `room-closed`); a `leave` the
        /// client asked for is answered without one.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<LeaveReason>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    PeerJoined {
        room: &'a str,
        peer: &'a PeerInfo,
    },
    PeerLeft {
        room: &'a str,
        peer_id: PeerId,
        reason: LeaveReason,
    },
    /// Another member lost its socket and is held for its resume, or resumed.
    PeerState {
        room: &'a str,
        peer_id: PeerId,
        state: PeerState,
    },
    Signal {
        room: &'a str,
        from: PeerId,
        data: &'a RawValue,
    },
    Broadcast {
        room: &'a str,
        from: PeerId,
        data: &'a RawValue,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        /// The last client `cseq` processed, once the client numbers its messages: what it
        /// keeps for a resume up to here can go.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_cseq: Option<u64>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
}

impl ServerMessage<'_> {
    /// Serializes to the text of one frame.
    pub fn to_json(&self) -> String {
        let payload = match self {
            Self::Signal { data, .. } | Self::Broadcast { data, .. } => data.get().len(),
            _ => 0,
        };
        super::to_json_sized(self, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientFrame<'_>, Rejected<'_>> {
        ClientFrame::parse(s)
    }

    #[test]
    fn parses_every_client_message() {
        let to = PeerId(42).to_string();
        let f = parse(r#"{"type":"join","room":"r1","meta":{"name":"ann"},"id":7}"#).unwrap();
        assert!(matches!(f.msg, ClientMessage::Join { ref room, meta: Some(_) } if room == "r1"));
        assert_eq!(f.id.unwrap().get(), "7");
        let s = format!(r#"{{"type":"signal","room":"r1","to":"{to}","data":{{"type":"offer","sdp":"v=0\r\n"}}}}"#);
        let f = parse(&s).unwrap();
        assert!(matches!(f.msg, ClientMessage::Signal { to: PeerId(42), .. }));
        assert!(matches!(
            parse(r#"{"type":"broadcast","room":"r","data":1}"#).unwrap().msg,
            ClientMessage::Broadcast { .. }
        ));
        assert!(matches!(parse(r#"{"type":"leave","room":"r"}"#).unwrap().msg, ClientMessage::Leave { .. }));
        assert!(matches!(parse(r#"{"type":"ping","extra":true}"#).unwrap().msg, ClientMessage::Ping));
        assert!(matches!(parse(r#"{"type":"ack","seq":9}"#).unwrap().msg, ClientMessage::Ack { seq: 9 }));
        let f = parse(r#"{"type":"broadcast","room":"r","data":1,"cseq":4}"#).unwrap();
        assert_eq!(f.cseq, Some(4));
    }

    #[test]
    fn counters_must_be_positive_integers() {
        let code = |s: &str| parse(s).unwrap_err().error.code;
        for bad in [
            r#"{"type":"ack"}"#,
            r#"{"type":"ack","seq":0}"#,
            r#"{"type":"ack","seq":-1}"#,
            r#"{"type":"ack","seq":"3"}"#,
            r#"{"type":"ack","seq":1.5}"#,
            r#"{"type":"ping","cseq":0}"#,
            r#"{"type":"ping","cseq":"1"}"#,
            r#"{"type":"ping","cseq":99999999999999999999999}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::BadMessage, "{bad}");
        }
        let r = parse(r#"{"type":"ping","cseq":1e3,"id":5}"#).unwrap_err();
        assert_eq!(r.id.unwrap().get(), "5");
    }

    #[test]
    fn rejects_with_typed_codes_and_echoes_id() {
        let code = |s: &str| parse(s).unwrap_err().error.code;
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        // Invalid JSON whose first wrong token is also the wrong shape is still invalid JSON.
        assert_eq!(code("[[["), ErrorCode::BadJson);
        assert_eq!(code("[1,"), ErrorCode::BadJson);
        let deep =
            |n: usize| format!(r#"{{"type":"broadcast","room":"r","data":{}{},"id":3}}"#, "[".repeat(n), "]".repeat(n));
        assert!(parse(&deep(32)).is_ok());
        let too_deep = deep(33);
        let r = parse(&too_deep).unwrap_err();
        assert_eq!((r.error.code, r.id.map(|i| i.get().to_string())), (ErrorCode::TooDeep, Some("3".into())));
        assert!(parse(r#"{"type":"broadcast","room":"r","data":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#).is_ok());
        assert_eq!(
            code(&format!(r#"{{"type":"join","room":"r","meta":{{"a":{}1{}}}}}"#, "[".repeat(40), "]".repeat(40))),
            ErrorCode::TooDeep
        );
        assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"room":"r"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"signal","room":"r","to":"x","data":{}}"#), ErrorCode::BadPeerId);
        assert_eq!(code(r#"{"type":"ping","id":{"a":1}}"#), ErrorCode::BadMessage);
        let r = parse(r#"{"type":"join","id":"abc"}"#).unwrap_err();
        assert_eq!(r.id.unwrap().get(), r#""abc""#);
    }

    #[test]
    fn server_messages_serialize_with_raw_data_untouched() {
        let data = RawValue::from_string(r#"{"type":"offer","sdp":"v=0\r\n"}"#.into()).unwrap();
        let json = ServerMessage::Signal { room: "r", from: PeerId(1), data: &data }.to_json();
        assert_eq!(
            json,
            r#"{"type":"signal","room":"r","from":"0000000000001","data":{"type":"offer","sdp":"v=0\r\n"}}"#
        );
        let ev: Event = serde_json::from_str(&json).unwrap();
        assert!(matches!(ev, Event::Signal { from: PeerId(1), .. }));
        let err = ServerMessage::Error { code: ErrorCode::RoomFull, message: "full", id: None }.to_json();
        assert_eq!(err, r#"{"type":"error","code":"room-full","message":"full"}"#);
    }
}
