//! WebRTC-aware shape checks for relayed `data`.
//!
//! A signaling server that relays any JSON lets a buggy or hostile client feed peers garbage
//! that browsers reject late and obscurely. These checks recognise the two payloads WebRTC
//! signaling is made of — an `RTCSessionDescriptionInit` and an `RTCIceCandidateInit` — and
//! reject malformed ones with `bad-sdp` / `bad-candidate` before they leave the node. Anything
//! else is application data and is relayed as is (subject to the general limits).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ErrorCode, ProtocolError};

/// What a relayed payload is, as far as admission control cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// An offer: starts a negotiation.
    Offer,
    /// An answer or provisional answer: completes one.
    Answer,
    /// A rollback description.
    Rollback,
    /// One ICE candidate.
    Candidate,
    /// The end-of-candidates marker (an empty candidate string).
    EndOfCandidates,
    /// Application data.
    Other,
}

impl SignalKind {
    pub fn is_description(self) -> bool {
        matches!(self, Self::Offer | Self::Answer | Self::Rollback)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Rollback => "rollback",
            Self::Candidate => "candidate",
            Self::EndOfCandidates => "end-of-candidates",
            Self::Other => "other",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    candidate: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sdp_mid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sdp_m_line_index: Option<&'a RawValue>,
}

fn as_string<'a>(raw: &'a RawValue, code: ErrorCode, what: &str) -> Result<Cow<'a, str>, ProtocolError> {
    serde_json::from_str::<Cow<'a, str>>(raw.get())
        .map_err(|_| ProtocolError::new(code, format!("`{what}` must be a string")))
}

/// Classifies `data` and checks it has the shape its kind demands.
pub fn classify(data: &RawValue) -> Result<SignalKind, ProtocolError> {
    if !data.get().starts_with('{') {
        return Ok(SignalKind::Other);
    }
    let Ok(probe) = serde_json::from_str::<Probe<'_>>(data.get()) else {
        return Ok(SignalKind::Other);
    };
    if let Some(kind) = probe.kind {
        let sdp_types = ["\"offer\"", "\"answer\"", "\"pranswer\"", "\"rollback\""];
        let kind = kind.get();
        if let Some(i) = sdp_types.iter().position(|t| *t == kind) {
            return check_description(i, probe.sdp);
        }
        if probe.sdp.is_some() {
            return Err(ProtocolError::new(
                ErrorCode::BadSdp,
                "a description's `type` must be offer, answer, pranswer or rollback",
            ));
        }
    } else if probe.sdp.is_some() && probe.candidate.is_none() {
        return Err(ProtocolError::new(ErrorCode::BadSdp, "a session description needs a `type`"));
    }
    match probe.candidate {
        Some(raw) => check_candidate(raw, probe.sdp_mid, probe.sdp_m_line_index),
        None => Ok(SignalKind::Other),
    }
}

fn check_description(type_index: usize, sdp: Option<&RawValue>) -> Result<SignalKind, ProtocolError> {
    if type_index == 3 {
        return Ok(SignalKind::Rollback);
    }
    let sdp = sdp.ok_or_else(|| ProtocolError::new(ErrorCode::BadSdp, "a description needs `sdp`"))?;
    // Checked on the raw JSON text, so a large SDP is scanned once (by the parser) and never
    // unescaped: a JSON string can only hold NUL as the escape `\u0000`.
    let raw = sdp.get();
    if !raw.starts_with('"') {
        return Err(ProtocolError::new(ErrorCode::BadSdp, "`sdp` must be a string"));
    }
    if !raw.starts_with("\"v=0") {
        return Err(ProtocolError::new(ErrorCode::BadSdp, "`sdp` must start with `v=0`"));
    }
    if raw.contains("\\u0000") {
        return Err(ProtocolError::new(ErrorCode::BadSdp, "`sdp` must not contain NUL"));
    }
    Ok(if type_index == 0 { SignalKind::Offer } else { SignalKind::Answer })
}

fn check_candidate(
    raw: &RawValue,
    mid: Option<&RawValue>,
    index: Option<&RawValue>,
) -> Result<SignalKind, ProtocolError> {
    let bad = |why: &str| ProtocolError::new(ErrorCode::BadCandidate, format!("bad ICE candidate: {why}"));
    let line = as_string(raw, ErrorCode::BadCandidate, "candidate")?;
    let mid_ok = match mid.map(RawValue::get) {
        None | Some("null") => false,
        Some(s) => {
            if !s.starts_with('"') || s.len() > 66 {
                return Err(bad("`sdpMid` must be a string of at most 64 characters or null"));
            }
            true
        }
    };
    let index_ok = match index.map(RawValue::get) {
        None | Some("null") => false,
        Some(s) => {
            if s.parse::<u16>().is_err() {
                return Err(bad("`sdpMLineIndex` must be an integer 0-65535 or null"));
            }
            true
        }
    };
    if line.is_empty() {
        return Ok(SignalKind::EndOfCandidates);
    }
    if !mid_ok && !index_ok {
        return Err(bad("needs `sdpMid` or `sdpMLineIndex`"));
    }
    check_candidate_line(&line).map_err(bad)?;
    Ok(SignalKind::Candidate)
}

/// Checks an RFC 8839 `candidate-attribute` (with or without the `a=` prefix).
pub fn check_candidate_line(line: &str) -> Result<(), &'static str> {
    let line = line.strip_prefix("a=").unwrap_or(line);
    let rest = line.strip_prefix("candidate:").ok_or("must start with `candidate:`")?;
    if line.len() > 1024 {
        return Err("longer than 1024 characters");
    }
    let mut f = rest.split(' ');
    let foundation = f.next().unwrap_or("");
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if foundation.is_empty() || foundation.len() > 32 || !foundation.chars().all(ice_char) {
        return Err("bad foundation");
    }
    let component: u16 = f.next().and_then(|s| s.parse().ok()).ok_or("bad component id")?;
    if !(1..=256).contains(&component) {
        return Err("component id out of range");
    }
    let transport = f.next().ok_or("missing transport")?;
    if !transport.eq_ignore_ascii_case("udp") && !transport.eq_ignore_ascii_case("tcp") {
        return Err("transport must be udp or tcp");
    }
    f.next().and_then(|s| s.parse::<u32>().ok()).ok_or("bad priority")?;
    let address = f.next().ok_or("missing address")?;
    let address_ok = address.parse::<std::net::IpAddr>().is_ok()
        || (!address.is_empty()
            && address.len() <= 253
            && address.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !address_ok {
        return Err("bad connection address");
    }
    f.next().and_then(|s| s.parse::<u16>().ok()).ok_or("bad port")?;
    if f.next() != Some("typ") {
        return Err("missing `typ`");
    }
    match f.next() {
        Some("host" | "srflx" | "prflx" | "relay") => Ok(()),
        _ => Err("candidate type must be host, srflx, prflx or relay"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Result<SignalKind, ErrorCode> {
        classify(&RawValue::from_string(s.into()).unwrap()).map_err(|e| e.code)
    }

    #[test]
    fn recognises_descriptions_and_candidates() {
        assert_eq!(kind(r#"{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"}"#), Ok(SignalKind::Offer));
        assert_eq!(kind(r#"{"type":"answer","sdp":"v=0 xxxx","ts":1}"#), Ok(SignalKind::Answer));
        assert_eq!(kind(r#"{"type":"pranswer","sdp":"v=0"}"#), Ok(SignalKind::Answer));
        assert_eq!(kind(r#"{"type":"rollback"}"#), Ok(SignalKind::Rollback));
        let c = r#"{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"a"}"#;
        assert_eq!(kind(c), Ok(SignalKind::Candidate));
        let mdns = r#"{"candidate":"candidate:1 1 UDP 2122260223 4f9e1c2a-1b2c.local 54321 typ host","sdpMid":"0"}"#;
        assert_eq!(kind(mdns), Ok(SignalKind::Candidate));
        assert_eq!(kind(r#"{"candidate":"","sdpMid":"0"}"#), Ok(SignalKind::EndOfCandidates));
        assert_eq!(kind(r#"{"hello":"world"}"#), Ok(SignalKind::Other));
        assert_eq!(kind(r#""just text""#), Ok(SignalKind::Other));
        assert_eq!(kind("[1,2,3]"), Ok(SignalKind::Other));
    }

    #[test]
    fn rejects_malformed_webrtc_payloads() {
        assert_eq!(kind(r#"{"type":"offer"}"#), Err(ErrorCode::BadSdp));
        assert_eq!(kind(r#"{"type":"offer","sdp":42}"#), Err(ErrorCode::BadSdp));
        assert_eq!(kind(r#"{"type":"offer","sdp":"hello"}"#), Err(ErrorCode::BadSdp));
        assert_eq!(kind(r#"{"type":"bogus","sdp":"v=0"}"#), Err(ErrorCode::BadSdp));
        assert_eq!(kind(r#"{"sdp":"v=0"}"#), Err(ErrorCode::BadSdp));
        assert_eq!(kind(r#"{"type":"answer","sdp":"v=0\u0000"}"#), Err(ErrorCode::BadSdp));
        assert_eq!(kind(r#"{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}"#), Err(ErrorCode::BadCandidate));
        assert_eq!(kind(r#"{"candidate":"hello","sdpMid":"0"}"#), Err(ErrorCode::BadCandidate));
        assert_eq!(
            kind(r#"{"candidate":"candidate:1 1 sctp 1 1.2.3.4 5 typ host","sdpMid":"0"}"#),
            Err(ErrorCode::BadCandidate)
        );
        assert_eq!(
            kind(r#"{"candidate":"candidate:1 1 udp 1 1.2.3.4 99999 typ host","sdpMid":"0"}"#),
            Err(ErrorCode::BadCandidate)
        );
        assert_eq!(
            kind(r#"{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ bogus","sdpMid":"0"}"#),
            Err(ErrorCode::BadCandidate)
        );
        assert_eq!(
            kind(r#"{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMLineIndex":-1}"#),
            Err(ErrorCode::BadCandidate)
        );
    }
}
