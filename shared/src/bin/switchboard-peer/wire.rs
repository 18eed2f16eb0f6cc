//! The frames a load peer writes and the little it reads out of the frames it receives, for
//! both dialects.
//!
//! This is the hot path of the generator, so nothing here builds a `serde_json::Value`:
//! outbound frames are a prebuilt prefix, the send timestamp and a fixed suffix; inbound frames
//! are read with borrowed structs that keep the payload as a `RawValue` and pull out only `type`
//! and `ts`. The ~3 KB SDP is scanned, never copied into a tree.
//!
//! Names interpolated into frames (`room-7`, `a-7`, peer ids, the `v=0 xxx…` SDP) are this
//! program's own ASCII with nothing to escape, which is what makes `format!` safe here.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Which protocol the peers speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// The seed demo's `{type, body}` protocol (endpoint `/ws`); messages relayed to every
    /// other member of the channel.
    Seed,
    /// Protocol v1 (endpoint `/v1/ws`): server-assigned peer ids, targeted `signal`s.
    V1,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Seed => "seed",
            Proto::V1 => "v1",
        }
    }
}

/// What a load peer needs to know about a frame it received. Relayed messages carry their
/// sender's `ts` (ms on the shared process clock), `None` if it had none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Inbound {
    Offer(Option<f64>),
    Answer(Option<f64>),
    Candidate(Option<f64>),
    Joined,
    /// A protocol error frame: some message of ours was refused.
    Error,
    /// Anything else (`welcome`, `peer-joined`, the seed's `quit`, ...): ignored.
    Other,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// The seed protocol's payload.
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    /// v1's payload of a `signal`.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The relayed description or candidate, as far as the generator cares.
#[derive(Deserialize)]
struct Stamped<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<f64>,
}

fn stamped(raw: Option<&RawValue>) -> Option<Stamped<'_>> {
    serde_json::from_str(raw?.get()).ok()
}

/// Classifies one inbound frame. Frames that are not JSON objects with a `type` are `Other`.
pub fn classify(proto: Proto, text: &str) -> Inbound {
    let Ok(env) = serde_json::from_str::<Envelope<'_>>(text) else {
        return Inbound::Other;
    };
    match (proto, &*env.kind) {
        (_, "joined") => Inbound::Joined,
        (_, "error") => Inbound::Error,
        (Proto::Seed, "offer_sdp_received") => Inbound::Offer(stamped(env.body).and_then(|s| s.ts)),
        (Proto::Seed, "answer_sdp_received") => Inbound::Answer(stamped(env.body).and_then(|s| s.ts)),
        (Proto::Seed, "ice_candidate_received") => Inbound::Candidate(stamped(env.body).and_then(|s| s.ts)),
        (Proto::V1, "signal") => match stamped(env.data) {
            Some(Stamped { kind: Some(k), ts }) if k == "offer" => Inbound::Offer(ts),
            Some(Stamped { kind: Some(k), ts }) if k == "answer" => Inbound::Answer(ts),
            // A candidate init has no `type`.
            Some(Stamped { kind: None, ts }) => Inbound::Candidate(ts),
            _ => Inbound::Other,
        },
        _ => Inbound::Other,
    }
}

/// The seed `join` for `userId` in `channelName`.
pub fn seed_join(channel: &str, user: &str) -> String {
    format!(r#"{{"type":"join","body":{{"channelName":"{channel}","userId":"{user}"}}}}"#)
}

/// The v1 `join` for `room`.
pub fn v1_join(room: &str) -> String {
    format!(r#"{{"type":"join","room":"{room}"}}"#)
}

/// A frame with a `ts` slot: everything before the timestamp, and what closes the frame after.
struct Stamp {
    prefix: String,
    suffix: &'static str,
}

impl Stamp {
    fn at(&self, ts: f64) -> String {
        let mut s = String::with_capacity(self.prefix.len() + 16 + self.suffix.len());
        s.push_str(&self.prefix);
        // Microsecond precision is plenty and keeps the number short.
        let _ = write!(s, "{ts:.3}");
        s.push_str(self.suffix);
        s
    }
}

/// The frames one room sends each round, built once before the run starts.
pub struct RoomFrames {
    offer: Stamp,
    candidates: [Stamp; 2],
    answer: Stamp,
}

/// The SDP used for offers and answers: `v=0 ` padded with `x` to `bytes` (load.js's
/// `'v=0 '.padEnd(sdpBytes, 'x')`, which never truncates).
pub fn padded_sdp(bytes: usize) -> String {
    let mut sdp = String::from("v=0 ");
    while sdp.len() < bytes {
        sdp.push('x');
    }
    sdp
}

/// The two ICE candidates B sends per round, as in load.js: valid RFC 8839 host candidates.
fn candidate_line(k: usize) -> String {
    format!("candidate:{k} 1 udp 2122260223 127.0.0.1 5{k}000 typ host")
}

impl RoomFrames {
    /// Seed frames for room `i`: A is user `a-i`, B is `b-i`, the channel is `room-i`.
    pub fn seed(i: usize, sdp: &str) -> Self {
        let head = |kind: &str, user: &str| {
            format!(r#"{{"type":"{kind}","body":{{"channelName":"room-{i}","userId":"{user}-{i}","#)
        };
        let offer = Stamp {
            prefix: format!(r#"{}"sdp":{{"type":"offer","sdp":"{sdp}","ts":"#, head("send_offer", "a")),
            suffix: "}}}",
        };
        let answer = Stamp {
            prefix: format!(r#"{}"sdp":{{"type":"answer","sdp":"{sdp}","ts":"#, head("send_answer", "b")),
            suffix: "}}}",
        };
        let candidates = [0, 1].map(|k| Stamp {
            prefix: format!(
                r#"{}"candidate":{{"candidate":"{}","sdpMid":"0","ts":"#,
                head("send_ice_candidate", "b"),
                candidate_line(k)
            ),
            suffix: "}}}",
        });
        RoomFrames { offer, candidates, answer }
    }

    /// v1 frames for `room`: A's offers go `to` B's peer id, B's replies to A's.
    pub fn v1(room: &str, a_id: &str, b_id: &str, sdp: &str) -> Self {
        let head = |to: &str| format!(r#"{{"type":"signal","room":"{room}","to":"{to}","data":"#);
        let offer = Stamp { prefix: format!(r#"{}{{"type":"offer","sdp":"{sdp}","ts":"#, head(b_id)), suffix: "}}" };
        let answer = Stamp { prefix: format!(r#"{}{{"type":"answer","sdp":"{sdp}","ts":"#, head(a_id)), suffix: "}}" };
        let candidates = [0, 1].map(|k| Stamp {
            prefix: format!(r#"{}{{"candidate":"{}","sdpMid":"0","ts":"#, head(a_id), candidate_line(k)),
            suffix: "}}",
        });
        RoomFrames { offer, candidates, answer }
    }

    /// A's offer, stamped `ts`.
    pub fn offer(&self, ts: f64) -> String {
        self.offer.at(ts)
    }

    /// B's reply to an offer: two candidates then the answer, each stamped as it is built.
    pub fn reply(&self, now: impl Fn() -> f64) -> [String; 3] {
        [self.candidates[0].at(now()), self.candidates[1].at(now()), self.answer.at(now())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard::protocol::{seed::SeedMessage, shape, v1::ClientFrame, v1::ClientMessage};

    #[test]
    fn seed_frames_parse_as_the_seed_protocol() {
        let f = RoomFrames::seed(7, &padded_sdp(40));
        assert!(
            matches!(SeedMessage::parse(&f.offer(1.5)).unwrap(), SeedMessage::Offer { ref channel, .. } if channel == "room-7")
        );
        let [c0, c1, ans] = f.reply(|| 2.25);
        for c in [&c0, &c1] {
            let SeedMessage::Candidate { candidate, .. } = SeedMessage::parse(c).unwrap() else { panic!("{c}") };
            assert_eq!(shape::classify(candidate).unwrap(), shape::SignalKind::Candidate);
        }
        let SeedMessage::Answer { sdp, .. } = SeedMessage::parse(&ans).unwrap() else { panic!("{ans}") };
        assert_eq!(shape::classify(sdp).unwrap(), shape::SignalKind::Answer);
        assert!(matches!(SeedMessage::parse(&seed_join("room-7", "a-7")).unwrap(), SeedMessage::Join { .. }));
    }

    #[test]
    fn v1_frames_parse_as_v1_and_pass_shape_checks() {
        let a = "0000000000001";
        let b = "0000000000002";
        let f = RoomFrames::v1("room-3", a, b, &padded_sdp(3000));
        let offer = f.offer(12.0);
        let ClientMessage::Signal { to, data, .. } = ClientFrame::parse(&offer).unwrap().msg else { panic!() };
        assert_eq!(to.to_string(), b);
        assert_eq!(shape::classify(data).unwrap(), shape::SignalKind::Offer);
        for (frame, kind) in f.reply(|| 1.0).iter().zip([
            shape::SignalKind::Candidate,
            shape::SignalKind::Candidate,
            shape::SignalKind::Answer,
        ]) {
            let ClientMessage::Signal { to, data, .. } = ClientFrame::parse(frame).unwrap().msg else { panic!() };
            assert_eq!(to.to_string(), a);
            assert_eq!(shape::classify(data).unwrap(), kind);
        }
        assert!(matches!(ClientFrame::parse(&v1_join("room-3")).unwrap().msg, ClientMessage::Join { .. }));
    }

    #[test]
    fn classifies_relayed_frames() {
        let seed = r#"{"type":"offer_sdp_received","body":{"type":"offer","sdp":"v=0 xx","ts":3.5}}"#;
        assert_eq!(classify(Proto::Seed, seed), Inbound::Offer(Some(3.5)));
        let cand = r#"{"type":"ice_candidate_received","body":{"candidate":"candidate:0 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","ts":4}}"#;
        assert_eq!(classify(Proto::Seed, cand), Inbound::Candidate(Some(4.0)));
        assert_eq!(classify(Proto::Seed, r#"{"type":"joined","body":["a-1"]}"#), Inbound::Joined);
        let v1 =
            r#"{"type":"signal","room":"r","from":"0000000000001","data":{"type":"answer","sdp":"v=0","ts":9.25}}"#;
        assert_eq!(classify(Proto::V1, v1), Inbound::Answer(Some(9.25)));
        let v1c = r#"{"type":"signal","room":"r","from":"0000000000001","data":{"candidate":"c","sdpMid":"0","ts":1}}"#;
        assert_eq!(classify(Proto::V1, v1c), Inbound::Candidate(Some(1.0)));
        assert_eq!(
            classify(Proto::V1, r#"{"type":"peer-joined","room":"r","peer":{"peer_id":"0000000000001"}}"#),
            Inbound::Other
        );
        assert_eq!(
            classify(Proto::V1, r#"{"type":"error","code":"rate-limited","message":"slow down"}"#),
            Inbound::Error
        );
        assert_eq!(classify(Proto::V1, "not json"), Inbound::Other);
    }
}
