use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Every error the server reports, as the `code` of an `error` message.
///
/// Codes are stable strings (kebab-case on the wire); messages are for humans and may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame was not valid JSON.
    BadJson,
    /// Valid JSON, but not a message of this protocol (missing or mistyped fields).
    BadMessage,
    /// The `type` is not one this protocol knows.
    UnknownType,
    /// A binary frame: the protocol is JSON text only.
    BinaryUnsupported,
    /// A frame or message over the size limit.
    MessageTooBig,
    /// The connection sent messages faster than its limit allows.
    RateLimited,
    /// A room name that breaks the naming rules.
    BadRoom,
    /// A peer id that is not of the server's form.
    BadPeerId,
    /// The connection is already in as many rooms as it may be.
    RoomLimit,
    /// The room has as many peers as it may have.
    RoomFull,
    /// The connection is not a member of the room it named.
    NotJoined,
    /// The connection is already a member of that room.
    AlreadyJoined,
    /// The addressed peer is not a member of the room.
    UnknownPeer,
    /// A signal addressed to the sender itself.
    SelfAddressed,
    /// `data` claimed to be a session description but is not one.
    BadSdp,
    /// `data` claimed to be an ICE candidate but is not one.
    BadCandidate,
    /// Too many candidates for one offer/answer exchange.
    CandidateLimit,
    /// `meta` is too large or not an object.
    BadMeta,
    /// `data` or `meta` nests arrays and objects deeper than [`MAX_JSON_DEPTH`](super::MAX_JSON_DEPTH).
    TooDeep,
    /// The node is at its connection limit.
    TooManyConnections,
    /// The WebSocket upgrade came from an Origin that is not allowed.
    OriginRefused,
    /// The node is shutting down; reconnect elsewhere.
    ShuttingDown,
    /// The client read too slowly and its outbound queue passed the bound.
    SlowConsumer,
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    /// A seed user id already in the channel was taken over by a newer connection.
    Replaced,
    /// A `?resume=` token that is unknown, used already or expired, or a room the parked
    /// session could not be moved back into: join again (the session goes on with a new id).
    ResumeFailed,
    /// The message could not reach a peer on another node.
    Undeliverable,
    /// Something failed inside the server; the message was not processed.
    Internal,
    /// This node requires an access token and none was given.
    Unauthorized,
    /// The access token's `exp` has passed: fetch a new one.
    TokenExpired,
    /// The access token is malformed, forged, signed with an unknown key or for another
    /// cluster.
    TokenInvalid,
    /// The access token does not allow this (another room, or a viewer broadcasting).
    Forbidden,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad-json",
            Self::BadMessage => "bad-message",
            Self::UnknownType => "unknown-type",
            Self::BinaryUnsupported => "binary-unsupported",
            Self::MessageTooBig => "message-too-big",
            Self::RateLimited => "rate-limited",
            Self::BadRoom => "bad-room",
            Self::BadPeerId => "bad-peer-id",
            Self::RoomLimit => "room-limit",
            Self::RoomFull => "room-full",
            Self::NotJoined => "not-joined",
            Self::AlreadyJoined => "already-joined",
            Self::UnknownPeer => "unknown-peer",
            Self::SelfAddressed => "self-addressed",
            Self::BadSdp => "bad-sdp",
            Self::BadCandidate => "bad-candidate",
            Self::CandidateLimit => "candidate-limit",
            Self::BadMeta => "bad-meta",
            Self::TooDeep => "too-deep",
            Self::TooManyConnections => "too-many-connections",
            Self::OriginRefused => "origin-refused",
            Self::ShuttingDown => "shutting-down",
            Self::SlowConsumer => "slow-consumer",
            Self::IdleTimeout => "idle-timeout",
            Self::Replaced => "replaced",
            Self::Undeliverable => "undeliverable",
            Self::Internal => "internal",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token-expired",
            Self::TokenInvalid => "token-invalid",
            Self::Forbidden => "forbidden",
            Self::ResumeFailed => "resume-failed",
        }
    }

    /// Every code, for metrics that want a series per code from the start.
    pub const ALL: [ErrorCode; 32] = [
        Self::BadJson,
        Self::BadMessage,
        Self::UnknownType,
        Self::BinaryUnsupported,
        Self::MessageTooBig,
        Self::RateLimited,
        Self::BadRoom,
        Self::BadPeerId,
        Self::RoomLimit,
        Self::RoomFull,
        Self::NotJoined,
        Self::AlreadyJoined,
        Self::UnknownPeer,
        Self::SelfAddressed,
        Self::BadSdp,
        Self::BadCandidate,
        Self::CandidateLimit,
        Self::BadMeta,
        Self::TooDeep,
        Self::TooManyConnections,
        Self::OriginRefused,
        Self::ShuttingDown,
        Self::SlowConsumer,
        Self::IdleTimeout,
        Self::Replaced,
        Self::Undeliverable,
        Self::Internal,
        Self::Unauthorized,
        Self::TokenExpired,
        Self::TokenInvalid,
        Self::Forbidden,
        Self::ResumeFailed,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol-level error: what the server sends back as `error {code, message}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
