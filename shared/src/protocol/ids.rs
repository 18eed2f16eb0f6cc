use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ErrorCode, ProtocolError};

/// A peer's identity, assigned by the server when a WebSocket opens.
///
/// Inside the cluster it is a random 64-bit number (cheap to copy and hash, collision chance
/// negligible across any realistic cluster); on the wire it is 13 lowercase base-32 characters,
/// so it is safe in URLs, logs and Redis keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl PeerId {
    /// The wire length of a peer id.
    pub const LEN: usize = 13;

    pub fn to_wire(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let mut v = self.0;
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        out
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.to_wire();
        // The alphabet is ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&wire).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PeerId {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ProtocolError::new(
                ErrorCode::BadPeerId,
                format!("`{}` is not a peer id", s.chars().take(32).collect::<String>()),
            )
        };
        if s.len() != Self::LEN {
            return Err(bad());
        }
        let mut v: u64 = 0;
        for (i, b) in s.bytes().enumerate() {
            let d = ALPHABET.iter().position(|&a| a == b).ok_or_else(bad)? as u64;
            // 13 * 5 = 65 bits: the first character may only carry the top 4 bits.
            if i == 0 && d > 15 {
                return Err(bad());
            }
            v = (v << 5) | d;
        }
        Ok(PeerId(v))
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A room's name as clients give it, validated.
///
/// v1 names are 1–128 characters of `A-Z a-z 0-9 _ - . : @`; seed channel names are any
/// 0–128 printable characters (the seed's UI is free text, and its client joins with the empty
/// name before its user has typed one) and live in their own namespace (`seed/…`), which no v1
/// name can reach because `/` is not a v1 character.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    pub const MAX_LEN: usize = 128;
    pub const SEED_PREFIX: &'static str = "seed/";

    /// Validates a v1 room name.
    pub fn v1(name: &str) -> Result<Self, ProtocolError> {
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b));
        if ok {
            Ok(RoomName(name.into()))
        } else {
            Err(ProtocolError::new(ErrorCode::BadRoom, "room names are 1-128 characters of A-Z a-z 0-9 _ - . : @"))
        }
    }

    /// Validates a seed channel name that someone chose (an access token's room, the admin
    /// API's) and maps it into the seed namespace: 1–128 printable characters.
    pub fn seed(channel: &str) -> Result<Self, ProtocolError> {
        if channel.is_empty() {
            return Err(ProtocolError::new(ErrorCode::BadRoom, "channelName must be 1-128 printable characters"));
        }
        Self::seed_channel(channel)
    }

    /// Validates a seed client's `channelName` and maps it into the seed namespace: 0–128
    /// printable characters. The empty name is a channel too, because the seed's client joins
    /// it on connecting, before its user has typed a channel, and the seed server admitted it.
    pub fn seed_channel(channel: &str) -> Result<Self, ProtocolError> {
        if channel.chars().count() > Self::MAX_LEN || channel.chars().any(char::is_control) {
            return Err(ProtocolError::new(ErrorCode::BadRoom, "channelName must be 0-128 printable characters"));
        }
        Ok(RoomName(format!("{}{channel}", Self::SEED_PREFIX).into()))
    }

    /// Validates a name as the cluster stores it (Redis keys, control messages, the admin
    /// API): `seed/<channel>` for a seed channel (the empty one included), any other name for
    /// a v1 room.
    pub fn parse(name: &str) -> Result<Self, ProtocolError> {
        match name.strip_prefix(Self::SEED_PREFIX) {
            Some(channel) => Self::seed_channel(channel),
            None => Self::v1(name),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for rooms of the seed protocol's namespace.
    pub fn is_seed(&self) -> bool {
        self.0.starts_with(Self::SEED_PREFIX)
    }

    /// The name as its own protocol's clients know it (without the namespace prefix).
    pub fn client_name(&self) -> &str {
        self.0.strip_prefix(Self::SEED_PREFIX).unwrap_or(&self.0)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_through_the_wire_form() {
        for v in [0, 1, 31, 32, u64::MAX, 0x0123_4567_89ab_cdef] {
            let id = PeerId(v);
            let s = id.to_string();
            assert_eq!(s.len(), PeerId::LEN);
            assert_eq!(s.parse::<PeerId>().unwrap(), id);
        }
    }

    #[test]
    fn peer_id_rejects_garbage() {
        for s in ["", "abc", "zzzzzzzzzzzzz", "0000000000000o", "000000000000!", "ü00000000000"] {
            assert!(s.parse::<PeerId>().is_err(), "{s}");
        }
    }

    #[test]
    fn room_names() {
        assert!(RoomName::v1("lobby-1.a:b@c_d").is_ok());
        for bad in ["", "a b", "seed/x", "é", &"x".repeat(129)] {
            assert_eq!(RoomName::v1(bad).unwrap_err().code, ErrorCode::BadRoom, "{bad}");
        }
        let seed = RoomName::seed("채널 1").unwrap();
        assert!(seed.is_seed());
        assert_eq!(seed.client_name(), "채널 1");
        assert!(RoomName::seed("a\nb").is_err());
        // A client's empty channelName is a channel; nobody mints a token for it.
        assert!(RoomName::seed("").is_err());
        let lobby = RoomName::seed_channel("").unwrap();
        assert_eq!((lobby.as_str(), lobby.client_name()), ("seed/", ""));
        assert_eq!(RoomName::parse("seed/").unwrap(), lobby);
        assert!(RoomName::seed_channel(&"x".repeat(129)).is_err());
        assert_eq!(RoomName::parse("seed/채널 1").unwrap(), seed);
        assert_eq!(RoomName::parse("lobby").unwrap(), RoomName::v1("lobby").unwrap());
        assert!(RoomName::parse("no spaces").is_err());
    }
}
