//! Access tokens: what lets a client into exactly one room.
//!
//! A token is a JWT signed with HS256 by the gateway (`POST /v1/tokens`) and checked by a node
//! when a WebSocket is upgraded. Both sides share the secret; several secrets may be configured
//! so one can be rotated without refusing tokens signed a moment ago: the first signs, every
//! one verifies, and the token's `kid` (a fingerprint of its secret) says which.
//!
//! Verification pins the algorithm (a token claiming `none` or RS256 is refused before its
//! signature is looked at) and requires `exp`, `aud` and `room`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::protocol::ErrorCode;
pub use crate::protocol::Role;

/// Shortest secret accepted: HS256 wants at least its output size.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest lifetime a token may be minted with.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Clock skew tolerated between the gateway that signs and the node that verifies.
const LEEWAY_SECS: u64 = 5;
/// Issuer written into every token.
pub const ISSUER: &str = "switchboard";

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user, as the application knows them; shown to the room's other peers.
    pub sub: String,
    /// The one room this token opens.
    pub room: String,
    #[serde(default)]
    pub role: Role,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// Unique per token, for audit logs.
    pub jti: String,
}

/// The part of a verified token a session keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub room: String,
    pub user: String,
    pub role: Role,
    pub expires_at: u64,
}

impl From<Claims> for Grant {
    fn from(c: Claims) -> Self {
        Self { room: c.room, user: c.sub, role: c.role, expires_at: c.exp }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "token secret {index} is {len} bytes; at least {MIN_SECRET_BYTES} are required (make one with `openssl rand -hex 32`)"
    )]
    TooShort { index: usize, len: usize },
    #[error("no token secret configured")]
    None,
}

/// Why a token was refused. Each maps to a protocol error code a client can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("an access token is required (query parameter `access_token` or subprotocol `access_token.<jwt>`)")]
    Missing,
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token's signature does not verify")]
    BadSignature,
    #[error("the access token was signed with an unknown key")]
    UnknownKey,
    #[error("the access token's algorithm is not HS256")]
    BadAlgorithm,
    #[error("the access token is for another audience")]
    WrongAudience,
    #[error("the access token lacks a required claim or has a malformed one: {0}")]
    BadClaims(String),
    #[error("the access token is for room {granted:?}, not {asked:?}")]
    WrongRoom { granted: String, asked: String },
    #[error("the access token is for user {granted:?}, not {asked:?}")]
    WrongUser { granted: String, asked: String },
    #[error("a {role} may not {action}")]
    NotAllowed { role: &'static str, action: &'static str },
}

impl TokenError {
    /// The protocol error code a client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::Unauthorized,
            Self::Expired => ErrorCode::TokenExpired,
            Self::WrongRoom { .. } | Self::WrongUser { .. } | Self::NotAllowed { .. } => ErrorCode::Forbidden,
            _ => ErrorCode::TokenInvalid,
        }
    }
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The secrets tokens are signed and verified with.
pub struct TokenKeys {
    keys: Vec<Key>,
    audience: String,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("TokenKeys").field("kids", &kids).field("audience", &self.audience).finish()
    }
}

impl TokenKeys {
    /// `secrets[0]` signs; all verify. `audience` is the `aud` every token must carry (the
    /// cluster name, so a token for one cluster never opens another).
    pub fn new(secrets: &[String], audience: &str) -> Result<Self, KeyError> {
        if secrets.is_empty() {
            return Err(KeyError::None);
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(index, s)| {
                if s.len() < MIN_SECRET_BYTES {
                    return Err(KeyError::TooShort { index, len: s.len() });
                }
                Ok(Key {
                    kid: fingerprint(s.as_bytes()),
                    encoding: EncodingKey::from_secret(s.as_bytes()),
                    decoding: DecodingKey::from_secret(s.as_bytes()),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys, audience: audience.to_string() })
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Signs a token for `user` in `room`, valid for `ttl` (at most [`MAX_TTL`]).
    pub fn mint(&self, room: &str, user: &str, role: Role, ttl: Duration) -> (String, Claims) {
        let now = unix_now();
        let ttl = ttl.min(MAX_TTL).as_secs().max(1);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: self.audience.clone(),
            sub: user.into(),
            room: room.into(),
            role,
            iat: now,
            nbf: now,
            exp: now + ttl,
            jti: format!("{:032x}", rand_u128()),
        };
        (self.sign(&claims), claims)
    }

    /// Signs `claims` as they are (tests use it for expired and not-yet-valid tokens).
    pub fn sign(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let header = Header { kid: Some(key.kid.clone()), ..Header::new(Algorithm::HS256) };
        // Encoding plain claims with an HMAC key cannot fail.
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap_or_default()
    }

    /// Checks a token's algorithm, signature, `exp`/`nbf` and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::BadAlgorithm);
        }
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid).ok_or(TokenError::UnknownKey)?,
            None => &self.keys[0],
        };
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "aud", "sub", "nbf", "iss"]);
        match jsonwebtoken::decode::<Claims>(token, &key.decoding, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidAlgorithm => TokenError::BadAlgorithm,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => TokenError::Malformed,
                ErrorKind::Json(e) => TokenError::BadClaims(e.to_string()),
                other => TokenError::BadClaims(format!("{other:?}")),
            }),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A short public name for a secret: FNV-1a of it, so a `kid` reveals nothing useful.
fn fingerprint(secret: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in secret {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:016x}", h)
}

fn rand_u128() -> u128 {
    // jti only needs to be unique, not secret: time plus a process-wide counter suffices.
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (nanos << 32) ^ u128::from(SEQ.fetch_add(1, Ordering::Relaxed)) ^ u128::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> TokenKeys {
        TokenKeys::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "blue").expect("keys")
    }

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn a_minted_token_verifies_and_carries_its_grant() {
        let k = keys(&[A]);
        let (token, claims) = k.mint("room-a", "alice", Role::Viewer, Duration::from_secs(60));
        let back = k.verify(&token).expect("verifies");
        assert_eq!(back, claims);
        let grant = Grant::from(back);
        assert_eq!((grant.room.as_str(), grant.user.as_str(), grant.role), ("room-a", "alice", Role::Viewer));
    }

    #[test]
    fn rotation_old_secret_still_verifies_unknown_does_not() {
        let (old, _) = keys(&[B]).mint("r", "u", Role::Participant, Duration::from_secs(60));
        assert!(keys(&[A, B]).verify(&old).is_ok());
        assert_eq!(keys(&[A]).verify(&old), Err(TokenError::UnknownKey));
    }

    #[test]
    fn forged_foreign_and_unsigned_tokens_are_refused() {
        let k = keys(&[A]);
        let (token, _) = k.mint("r", "u", Role::Participant, Duration::from_secs(60));
        // The same header (so the same kid), another room, the original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let (forged, _) = k.mint("other-room", "u", Role::Participant, Duration::from_secs(60));
        let forged_body = forged.split('.').nth(1).expect("payload");
        let spliced = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
        assert_eq!(k.verify(&spliced), Err(TokenError::BadSignature));
        let (other_aud, _) = TokenKeys::new(&[A.to_string()], "green").expect("keys").mint(
            "r",
            "u",
            Role::Participant,
            Duration::from_secs(60),
        );
        assert_eq!(k.verify(&other_aud), Err(TokenError::WrongAudience));
        // {"alg":"none","typ":"JWT"}
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(matches!(k.verify(&none), Err(TokenError::Malformed | TokenError::BadAlgorithm)));
        assert_eq!(k.verify("not a token"), Err(TokenError::Malformed));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(TokenKeys::new(&["short".into()], "a"), Err(KeyError::TooShort { index: 0, len: 5 })));
        assert!(matches!(TokenKeys::new(&[], "a"), Err(KeyError::None)));
    }
}
