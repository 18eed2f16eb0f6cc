//! Which protocol a session speaks; rooms of one dialect only ever hold sessions of it, since
//! seed channels live in their own `seed/` namespace.

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard::protocol::ProtocolError;
use switchboard::protocol::seed::SeedServerMessage;
use switchboard::protocol::v1::ServerMessage;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Protocol v1 at `/v1/ws`.
    V1,
    /// The seed demo's protocol at `/ws`.
    Seed,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::Seed => "seed",
        }
    }
}

/// The `error` frame for `err` in `dialect`, echoing the client's `id` (v1 only).
pub fn error_frame(dialect: Dialect, err: &ProtocolError, id: Option<&RawValue>) -> Bytes {
    let text = match dialect {
        Dialect::V1 => ServerMessage::Error { code: err.code, message: &err.message, id }.to_json(),
        Dialect::Seed => SeedServerMessage::Error { code: err.code, message: &err.message }.to_json(),
    };
    Bytes::from(text)
}
