//! The gateway's HTTP API: request and response bodies.
//!
//! The gateway serves them, the reference peer and the tests read them, and (with the
//! `openapi` feature) they describe themselves in the OpenAPI document at `/v1/openapi.json`.
//! Field names are snake_case like the v1 protocol's.

use serde::{Deserialize, Serialize};

use crate::protocol::{PeerId, Role};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The one room the token opens (v1 room name, or the seed protocol's channel name).
    pub room: String,
    /// The user, as the application knows them: shown to the room's other peers.
    pub user: String,
    #[serde(default)]
    pub role: Role,
    /// Lifetime in seconds (default 3600, at most 86400). A session outlives its token: the
    /// token is checked when a WebSocket opens.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenResponse {
    /// The JWT: pass it as `?access_token=` or as subprotocol `access_token.<jwt>`.
    pub token: String,
    pub room: String,
    pub user: String,
    pub role: Role,
    /// Unix seconds.
    pub expires_at: u64,
    /// Where clients connect (v1 protocol), when the gateway is configured with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// `GET /v1/ice-servers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    /// How long the TURN credentials are good for, seconds (0 without TURN).
    pub ttl_secs: u64,
    /// Unix seconds when the TURN credentials expire (0 without TURN).
    pub expires_at: u64,
}

/// A node as its heartbeats describe it (`GET /v1/nodes`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NodeInfo {
    pub id: String,
    /// Its lease's epoch: a restarted node has a higher one.
    pub epoch: u64,
    /// Where clients reach it, when configured (`--advertise-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub version: String,
    /// Unix milliseconds.
    pub started_at: u64,
    /// Unix milliseconds of its last heartbeat.
    pub heartbeat_at: u64,
    pub sessions: u64,
    pub rooms: u64,
    pub draining: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NodeList {
    pub nodes: Vec<NodeInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RoomSummary {
    /// The room's name as clients use it.
    pub room: String,
    /// `v1` or `seed`.
    pub protocol: String,
    pub members: u64,
}

/// `GET /v1/rooms`: a page of rooms; pass `next_cursor` back as `?cursor=` for the next.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Member {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub peer_id: PeerId,
    /// The node its WebSocket is on.
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The seed protocol's user id, in seed rooms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub meta: Option<serde_json::Value>,
}

/// `GET /v1/rooms/{room}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RoomDetail {
    pub room: String,
    pub protocol: String,
    pub members: Vec<Member>,
}

/// What the gateway answers for an admin action.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ActionResult {
    /// Members removed.
    pub removed: u64,
}

/// Every error the HTTP API returns: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiErrorBody {
    pub code: ApiErrorCode,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ApiErrorCode {
    /// No API key / access token, or a wrong one.
    Unauthorized,
    /// The access token has expired: get a new one and retry.
    TokenExpired,
    /// The access token is malformed, forged, or for another cluster.
    TokenInvalid,
    /// Authenticated, but not allowed (e.g. an Origin not on the list).
    Forbidden,
    /// Malformed body or parameters.
    BadRequest,
    /// The body is larger than the route accepts (HTTP 413).
    PayloadTooLarge,
    /// The body is not `application/json` (HTTP 415).
    UnsupportedMediaType,
    NotFound,
    /// Too many requests from this client.
    RateLimited,
    /// The cluster's Redis cannot be reached, or no node acted in time.
    Unavailable,
    Internal,
}

impl ApiError {
    pub fn new(code: ApiErrorCode, message: impl Into<String>) -> Self {
        Self { error: ApiErrorBody { code, message: message.into() } }
    }
}

/// What a webhook tells (its `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum WebhookKind {
    /// A room's first member joined.
    #[serde(rename = "room.started")]
    RoomStarted,
    /// A room's last member left.
    #[serde(rename = "room.finished")]
    RoomFinished,
    #[serde(rename = "peer.joined")]
    PeerJoined,
    #[serde(rename = "peer.left")]
    PeerLeft,
}

/// The body of one webhook `POST`: the same bytes on every retry, the same `id` on a duplicate.
/// Fields that do not apply are absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookEvent {
    /// Unique per event (`evt_` and 32 hex digits).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    /// When it happened, Unix milliseconds.
    pub created_at: u64,
    pub cluster: String,
    /// The room as its clients name it.
    pub room: String,
    /// Peer events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<WebhookPeer>,
    /// `peer.left` only: why (as `peer-left.reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub reason: Option<crate::protocol::v1::LeaveReason>,
}

/// The peer of a `peer.*` webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookPeer {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: PeerId,
    /// The access token's user; `null` for an anonymous peer.
    pub user: Option<String>,
    /// The node it is connected to.
    pub node: String,
}

/// A webhook that could not be delivered in its retry window (`GET /v1/webhooks/failures`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookFailure {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    pub room: String,
    pub url: String,
    pub attempts: u32,
    /// What the last attempt got: `HTTP 500`, `timed out after 5 s`, a connection error.
    pub last_error: String,
    /// When it was given up, Unix milliseconds.
    pub failed_at: u64,
}

/// `GET /v1/webhooks/failures`: the most recent first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookFailures {
    pub failures: Vec<WebhookFailure>,
}
