//! The wire protocol: JSON text frames over WebSocket.
//!
//! Two dialects share one node:
//! - [`v1`] at `/v1/ws`: server-assigned peer ids, targeted signals, typed errors. The version is
//!   announced in the first frame the server sends ([`v1::ServerMessage::Welcome`]) and, when the
//!   client asks for it, negotiated as the WebSocket subprotocol [`v1::SUBPROTOCOL`]. A v2 gets a
//!   new path and subprotocol; v1 clients keep working unchanged.
//! - [`seed`] at `/ws`: the seed demo's `{type, body}` messages, relayed to every other member
//!   of a channel, so the seed's React client works unchanged.
//!
//! Parsing is two-staged on purpose: an [`Envelope`](v1) borrows the frame and keeps the opaque
//! `data` as a [`RawValue`](serde_json::value::RawValue), so a 64 KiB SDP is scanned once and
//! never rebuilt into a JSON tree on the relay path.

mod error;
mod ids;
mod role;
pub mod seed;
pub mod shape;
pub mod v1;

pub use error::{ErrorCode, ProtocolError};
pub use ids::{PeerId, RoomName};
pub use role::Role;

/// How deep `data` and `meta` (and a seed message's `sdp` and `candidate`) may nest arrays and
/// objects. Far beyond any WebRTC payload, and below what common JSON parsers accept (serde_json
/// stops at 128), so that no member can relay a frame its peers' clients cannot read.
pub const MAX_JSON_DEPTH: usize = 32;

/// Refuses `raw` (the `what` of a message) if it nests deeper than [`MAX_JSON_DEPTH`]. One pass
/// over the bytes: brackets inside strings do not count.
pub fn check_depth(raw: &serde_json::value::RawValue, what: &str) -> Result<(), ProtocolError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw.get().as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    let message = format!("`{what}` nests deeper than {MAX_JSON_DEPTH} levels");
                    return Err(ProtocolError::new(ErrorCode::TooDeep, message));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `e`, from parsing `text` as a message, if it is about the message's shape (valid JSON of
/// the wrong form: `bad-message`); `None` if `text` is not valid JSON at all (`bad-json`).
/// serde reports the first problem it meets while streaming, so `[[[` fails as "expected a
/// string" before its end shows it is no JSON: the text is checked once more, on this error
/// path only.
fn shape_error<'e>(text: &str, e: &'e serde_json::Error) -> Option<&'e serde_json::Error> {
    (e.is_data() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()).then_some(e)
}

/// Serializes a server message into a buffer sized for its relayed payload up front: a 3 KB
/// SDP would otherwise be copied through six doublings of a 128-byte string.
fn to_json_sized<T: serde::Serialize>(msg: &T, payload: usize) -> String {
    let mut buf = Vec::with_capacity(payload + 160);
    match serde_json::to_writer(&mut buf, msg) {
        // serde_json writes only valid UTF-8.
        Ok(()) => String::from_utf8(buf).unwrap_or_default(),
        // Unreachable for these types (string keys, raw or plain values); never send garbage.
        Err(e) => format!(r#"{{"type":"error","code":"internal","message":"serialize: {e}"}}"#),
    }
}

/// WebSocket close codes the server uses, with the reason text it sends alongside.
pub mod close {
    /// Normal closure: the client asked to close.
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down or draining; reconnect (to any node).
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket framing (bad opcode, unmasked frame…).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8 (RFC 6455 §8.1).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A frame or message exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The node is draining and has sent `reconnect` with a resume token: reconnect at once.
    pub const SERVICE_RESTART: u16 = 1012;
    /// A `?resume=` token that could not be used (see `resume-failed`): reconnect fresh.
    pub const RESUME_FAILED: u16 = 4410;
    /// The node is at its connection limit; try again later (or another node).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Nothing (not even a pong) arrived within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// The client read too slowly: its outbound queue passed the bound.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// No access token, or one that does not verify (HTTP 401's counterpart).
    pub const UNAUTHORIZED: u16 = 4401;
    /// A valid access token that does not open what was asked (HTTP 403's counterpart).
    pub const FORBIDDEN: u16 = 4403;
}
