//! Resuming a session after its socket breaks: the resume token, and how a server frame is
//! numbered.

use std::fmt;
use std::str::FromStr;

use crate::protocol::PeerId;

/// What `welcome.resume_token` holds: the peer it resumes and a secret only that session's
/// client was told. Any node can read which peer it names (to find the session, wherever it is
/// held); only the node holding the session can tell whether the secret is right.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResumeToken {
    pub peer: PeerId,
    pub secret: u128,
}

impl ResumeToken {
    /// The wire length: a peer id, a dot, 32 hex digits.
    pub const LEN: usize = PeerId::LEN + 1 + 32;
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:032x}", self.peer, self.secret)
    }
}

/// Never printed whole: the secret is a credential.
impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResumeToken({}.…)", self.peer)
    }
}

/// Not a token this protocol issues.
#[derive(Debug, thiserror::Error)]
#[error("not a resume token")]
pub struct NotAToken;

impl FromStr for ResumeToken {
    type Err = NotAToken;

    fn from_str(s: &str) -> Result<Self, NotAToken> {
        let (peer, secret) = s.split_once('.').ok_or(NotAToken)?;
        if secret.len() != 32 || !secret.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(NotAToken);
        }
        Ok(Self {
            peer: peer.parse().map_err(|_| NotAToken)?,
            secret: u128::from_str_radix(secret, 16).map_err(|_| NotAToken)?,
        })
    }
}

/// What replaces a server frame's opening `{` to number it: `{"seq":N,`. The frame is
/// serialized once for all its recipients; each session numbers its copy as it writes it.
pub fn seq_prefix(seq: u64) -> String {
    format!("{{\"seq\":{seq},")
}

/// The `seq` a server frame starts with (`{"seq":N,…`), if it has one: read without parsing
/// the frame.
pub fn seq_of(frame: &str) -> Option<u64> {
    let rest = frame.strip_prefix("{\"seq\":")?;
    let end = rest.find([',', '}'])?;
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_lookalikes() {
        let t = ResumeToken { peer: PeerId(77), secret: 0x0123_4567_89ab_cdef_0011_2233_4455_6677 };
        let text = t.to_string();
        assert_eq!(text.len(), ResumeToken::LEN);
        assert_eq!(text.parse::<ResumeToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains(&format!("{:x}", t.secret)));
        for bad in ["", "x", "0000000000001.", "0000000000001.0123", &text.to_uppercase(), &text[1..]] {
            assert!(bad.parse::<ResumeToken>().is_err(), "{bad}");
        }
        // A drain token of older nodes (32 hex digits, no peer) is not one.
        assert!(format!("{:032x}", 5u128).parse::<ResumeToken>().is_err());
    }

    #[test]
    fn numbering_keeps_the_frame_intact() {
        let frame = r#"{"type":"pong"}"#;
        let numbered = format!("{}{}", seq_prefix(12), &frame[1..]);
        let v: serde_json::Value = serde_json::from_str(&numbered).unwrap();
        assert_eq!((v["seq"].as_u64(), v["type"].as_str()), (Some(12), Some("pong")));
        assert_eq!(seq_of(&numbered), Some(12));
        assert_eq!(seq_of(r#"{"type":"pong","seq":42}"#), None);
        assert_eq!(seq_of(r#"{"seq":}"#), None);
    }
}
