//! The seed demo's protocol, spoken at `/ws`, so the seed's React client works unchanged.
//!
//! In: `{type, body}` with `join`, `quit`, `send_offer`, `send_answer`, `send_ice_candidate`;
//! `body` carries `channelName`, `userId` and the `sdp` or `candidate`.
//! Out: `joined` (body: the channel's user ids), `offer_sdp_received`, `answer_sdp_received`,
//! `ice_candidate_received` (body: the relayed object), relayed to every other member of the
//! channel exactly as the seed server does.
//!
//! Where the seed server misbehaves, Switchboard does not: `quit` removes the member (the seed
//! left a `null` behind), malformed JSON gets an `error` frame (the seed crashed), a closed
//! socket leaves every channel at once (the seed left stale members), and the sender's identity
//! comes from its own `join`, never from `body.userId` of a relay.
//!
//! What the seed's client sends before its user has typed anything is admitted as the seed
//! server admitted it: the empty `channelName` is a channel, and the empty `userId` an anonymous
//! member (never taking over, nor taken over by, anyone else).
//!
//! Two additions, both ignored by the seed's client (its `switch` falls through to `default`):
//! `{type:"error", body:{code, message}}` and `{type:"quit", body:{channelName, userId}}` when a
//! member leaves.

use std::borrow::Cow;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::v1::LeaveReason;
use super::{ErrorCode, ProtocolError};

/// What a seed client can send.
#[derive(Debug)]
pub enum SeedMessage<'a> {
    /// `user` is empty for an anonymous member (the seed's client joins on connecting, before
    /// its user has typed an id).
    Join {
        channel: Cow<'a, str>,
        user: Cow<'a, str>,
    },
    Quit {
        channel: Cow<'a, str>,
    },
    Offer {
        channel: Cow<'a, str>,
        sdp: &'a RawValue,
    },
    Answer {
        channel: Cow<'a, str>,
        sdp: &'a RawValue,
    },
    Candidate {
        channel: Cow<'a, str>,
        candidate: &'a RawValue,
    },
}

impl SeedMessage<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::Quit { .. } => "quit",
            Self::Offer { .. } => "send_offer",
            Self::Answer { .. } => "send_answer",
            Self::Candidate { .. } => "send_ice_candidate",
        }
    }
}

/// Longest seed user id accepted.
pub const MAX_USER_ID_CHARS: usize = 128;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    body: Option<Body<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(borrow, default, deserialize_with = "string_or_number")]
    channel_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "string_or_number")]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    candidate: Option<&'a RawValue>,
}

/// The seed's client builds ids with `toString()`, so numbers are ids too.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

impl<'a> SeedMessage<'a> {
    /// Parses one seed text frame.
    pub fn parse(text: &'a str) -> Result<Self, ProtocolError> {
        let env: Envelope<'a> = serde_json::from_str(text).map_err(|e| match super::shape_error(text, &e) {
            Some(e) => ProtocolError::new(ErrorCode::BadMessage, format!("not a seed message: {e}")),
            None => ProtocolError::new(ErrorCode::BadJson, format!("invalid JSON: {e}")),
        })?;
        let kind = env.kind;
        let known = matches!(&*kind, "join" | "quit" | "send_offer" | "send_answer" | "send_ice_candidate");
        if !known {
            let shown: String = kind.chars().take(32).collect();
            return Err(ProtocolError::new(ErrorCode::UnknownType, format!("unknown message type `{shown}`")));
        }
        let body = env
            .body
            .ok_or_else(|| ProtocolError::new(ErrorCode::BadMessage, format!("`{kind}` needs a `body` object")))?;
        let channel = body
            .channel_name
            .ok_or_else(|| ProtocolError::new(ErrorCode::BadMessage, format!("`{kind}` needs `body.channelName`")))?;
        let missing = |field: &str| ProtocolError::new(ErrorCode::BadMessage, format!("`{kind}` needs `body.{field}`"));
        for (raw, what) in [(body.sdp, "sdp"), (body.candidate, "candidate")] {
            if let Some(raw) = raw {
                super::check_depth(raw, what)?;
            }
        }
        Ok(match &*kind {
            "join" => {
                let user = body.user_id.ok_or_else(|| missing("userId"))?;
                if user.chars().count() > MAX_USER_ID_CHARS || user.chars().any(char::is_control) {
                    return Err(ProtocolError::new(ErrorCode::BadMessage, "userId must be 0-128 printable characters"));
                }
                SeedMessage::Join { channel, user }
            }
            "quit" => SeedMessage::Quit { channel },
            "send_offer" => SeedMessage::Offer { channel, sdp: body.sdp.ok_or_else(|| missing("sdp"))? },
            "send_answer" => SeedMessage::Answer { channel, sdp: body.sdp.ok_or_else(|| missing("sdp"))? },
            _ => SeedMessage::Candidate { channel, candidate: body.candidate.ok_or_else(|| missing("candidate"))? },
        })
    }
}

/// What the server sends to a seed client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", content = "body")]
pub enum SeedServerMessage<'a> {
    #[serde(rename = "joined")]
    Joined(&'a [&'a str]),
    #[serde(rename = "offer_sdp_received")]
    OfferReceived(&'a RawValue),
    #[serde(rename = "answer_sdp_received")]
    AnswerReceived(&'a RawValue),
    #[serde(rename = "ice_candidate_received")]
    CandidateReceived(&'a RawValue),
    #[serde(rename = "quit")]
    Quit {
        #[serde(rename = "channelName")]
        channel_name: &'a str,
        #[serde(rename = "userId")]
        user_id: &'a str,
        /// Only for removals by an operator (`kicked`, `room-closed`), which the seed server
        /// never had; ordinary departures keep the exact shape above.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<LeaveReason>,
    },
    #[serde(rename = "error")]
    Error { code: ErrorCode, message: &'a str },
}

impl SeedServerMessage<'_> {
    pub fn to_json(&self) -> String {
        let payload = match self {
            Self::OfferReceived(raw) | Self::AnswerReceived(raw) | Self::CandidateReceived(raw) => raw.get().len(),
            _ => 0,
        };
        super::to_json_sized(self, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_flow() {
        let j = SeedMessage::parse(r#"{"type":"join","body":{"channelName":"c","userId":7}}"#).unwrap();
        assert!(matches!(j, SeedMessage::Join { ref user, .. } if user == "7"));
        let o = SeedMessage::parse(
            r#"{"type":"send_offer","body":{"channelName":"c","userId":"u","sdp":{"type":"offer","sdp":"v=0"}}}"#,
        )
        .unwrap();
        assert!(matches!(o, SeedMessage::Offer { .. }));
        let c = SeedMessage::parse(
            r#"{"type":"send_ice_candidate","body":{"channelName":"c","userId":"u","candidate":{"candidate":""}}}"#,
        )
        .unwrap();
        assert!(matches!(c, SeedMessage::Candidate { .. }));
        assert!(matches!(
            SeedMessage::parse(r#"{"type":"quit","body":{"channelName":"c","userId":"u"}}"#).unwrap(),
            SeedMessage::Quit { .. }
        ));
    }

    #[test]
    fn admits_what_the_seed_client_sends_before_anything_is_typed() {
        let j = SeedMessage::parse(r#"{"type":"join","body":{"channelName":"","userId":""}}"#).unwrap();
        assert!(matches!(j, SeedMessage::Join { ref channel, ref user } if channel.is_empty() && user.is_empty()));
        let code = |s: &str| SeedMessage::parse(s).unwrap_err().code;
        assert_eq!(code(r#"{"type":"join","body":{"channelName":"c","userId":"a\u0007"}}"#), ErrorCode::BadMessage);
        let long = format!(r#"{{"type":"join","body":{{"channelName":"c","userId":"{}"}}}}"#, "x".repeat(129));
        assert_eq!(code(&long), ErrorCode::BadMessage);
        // An id that is absent (or null) is still a malformed join, not an anonymous one.
        assert_eq!(code(r#"{"type":"join","body":{"channelName":"c","userId":null}}"#), ErrorCode::BadMessage);
    }

    #[test]
    fn rejects_what_crashed_the_seed() {
        let code = |s: &str| SeedMessage::parse(s).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadMessage);
        assert_eq!(code("[[["), ErrorCode::BadJson);
        assert_eq!(code("[1,"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"join","body":{"channelName":"c"}}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"send_offer","body":{"channelName":"c"}}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"nope","body":{}}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join","body":{"channelName":{},"userId":"u"}}"#), ErrorCode::BadMessage);
    }

    #[test]
    fn serializes_like_the_seed_server() {
        assert_eq!(SeedServerMessage::Joined(&["a", "b"]).to_json(), r#"{"type":"joined","body":["a","b"]}"#);
        let sdp = RawValue::from_string(r#"{"type":"offer","sdp":"v=0"}"#.into()).unwrap();
        assert_eq!(
            SeedServerMessage::OfferReceived(&sdp).to_json(),
            r#"{"type":"offer_sdp_received","body":{"type":"offer","sdp":"v=0"}}"#
        );
    }
}
