//! What the Redis bus writes: channel messages between nodes and membership records.
//!
//! Channel messages are a version byte and a postcard body (compact, and a relay's frame is
//! carried as raw bytes, never re-encoded). Membership records are text, `node|epoch|json`,
//! because the Lua scripts read the owner before the `|`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchboard::cluster;
use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{PeerId, Role, RoomName};

use crate::bus::{BusError, Held, JoinAck, MemberRecord, NodeId, RoomEvent};

/// Bumped when the message layout changes; a node drops messages of another version.
const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
pub enum Wire<'a> {
    Room {
        room: &'a str,
        #[serde(borrow)]
        event: WireEvent<'a>,
    },
    /// Readiness probe: a node publishes these to itself through Redis.
    Canary { seq: u64 },
    /// A node has taken in the join whose `Joined` carried this token.
    Ack { token: u64 },
    /// A node-to-node link's traffic (see [`super::link`]).
    Link(#[serde(borrow)] LinkMsg<'a>),
}

/// What travels on a link.
#[derive(Serialize, Deserialize)]
pub enum LinkMsg<'a> {
    /// A message on the sequenced link from node `src` (incarnation `inc`) to the receiving
    /// node: `body` is an encoded [`Wire`] message, or empty for a *skip* (the sender has
    /// answered that message itself; the receiver moves past it). `base` is the lowest
    /// sequence number the sender has not settled; `deadline_us` (sender's wall clock) is when
    /// the receiver stops delivering it (see [`super::link`]).
    Data {
        src: &'a str,
        inc: u64,
        seq: u64,
        base: u64,
        deadline_us: u64,
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
    },
    /// The receiving node `from`'s state of its link from the addressed node's incarnation
    /// `inc`: everything up to `upto` is settled, of which the `lost` ranges were not
    /// delivered; the `missing` ranges never arrived (send them again, or skip them).
    Status { from: &'a str, inc: u64, upto: u64, lost: Vec<(u64, u64)>, missing: Vec<(u64, u64)> },
    /// The sender asks for a [`LinkMsg::Status`]: it has sent up to `last`.
    Probe { src: &'a str, inc: u64, last: u64, base: u64 },
}

// Variant order is the wire format: append only.
#[derive(Serialize, Deserialize)]
pub enum WireEvent<'a> {
    Joined {
        peer: u64,
        node: &'a str,
        meta: Option<&'a str>,
        seed_user: Option<&'a str>,
        ack: Option<u64>,
    },
    Left {
        peer: u64,
        reason: LeaveReason,
    },
    /// `sent_us`: the sender's wall clock when the relay was handed to the bus. A receiver drops
    /// a relay older than the sender's Redis timeout: by then the sender may have been told it
    /// was undeliverable (a Redis that froze with it in flight delivers it late).
    Relay {
        from: u64,
        to: Option<u64>,
        #[serde(with = "serde_bytes")]
        frame: &'a [u8],
        sent_us: u64,
    },
    /// `Joined` for a member with an access token: its user and role too. A variant of its own
    /// so that a node of the previous version, which cannot read it, still reads every join
    /// without a token during a rolling upgrade (those are sent as `Joined`).
    JoinedAs {
        peer: u64,
        node: &'a str,
        meta: Option<&'a str>,
        seed_user: Option<&'a str>,
        ack: Option<u64>,
        user: Option<&'a str>,
        role: Option<Role>,
    },
    Moved {
        peer: u64,
        from: &'a str,
        to: &'a str,
    },
    Fence {
        peer: u64,
        via: &'a str,
        direct: bool,
    },
    Forward {
        peer: u64,
        #[serde(borrow)]
        frames: Vec<WireFrame<'a>>,
        handover: bool,
    },
    /// A relay on a sequenced link (whose header carries its deadline), with the sender's
    /// correlation id for an answer.
    Signal {
        from: u64,
        to: Option<u64>,
        #[serde(with = "serde_bytes")]
        frame: &'a [u8],
        id: Option<&'a str>,
    },
    Bounce {
        peer: u64,
        id: Option<&'a str>,
        why: &'a str,
        link: Option<(u64, u64)>,
    },
}

/// A forwarded frame and its kind (an index into [`KINDS`]).
#[derive(Serialize, Deserialize)]
pub struct WireFrame<'a> {
    kind: u8,
    #[serde(with = "serde_bytes")]
    frame: &'a [u8],
}

/// The kinds of frame a room hands a member (metrics labels), by their wire index.
const KINDS: [&str; 7] = ["signal", "broadcast", "peer-joined", "peer-left", "left", "error", "relay"];

fn kind_index(kind: &str) -> u8 {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len() - 1) as u8
}

fn kind_name(index: u8) -> &'static str {
    KINDS.get(usize::from(index)).copied().unwrap_or("relay")
}

pub fn encode(msg: &Wire<'_>) -> Vec<u8> {
    // Serialized straight after the version byte, in one allocation (a relay's frame is
    // copied once). Serializing plain data into a Vec cannot fail.
    postcard::to_extend(msg, vec![VERSION]).unwrap_or_else(|_| vec![VERSION])
}

pub fn encode_event(room: &RoomName, event: &RoomEvent) -> Vec<u8> {
    let event = match event {
        RoomEvent::Joined(m, ack) if m.user.is_none() && m.role.is_none() => WireEvent::Joined {
            peer: m.peer.0,
            node: &m.node,
            meta: m.meta.as_deref().map(RawValue::get),
            seed_user: m.seed_user.as_deref(),
            ack: ack.as_ref().map(|a| a.token),
        },
        RoomEvent::Joined(m, ack) => WireEvent::JoinedAs {
            peer: m.peer.0,
            node: &m.node,
            meta: m.meta.as_deref().map(RawValue::get),
            seed_user: m.seed_user.as_deref(),
            ack: ack.as_ref().map(|a| a.token),
            user: m.user.as_deref(),
            role: m.role,
        },
        RoomEvent::Left { peer, reason } => WireEvent::Left { peer: peer.0, reason: *reason },
        RoomEvent::Relay { from, to, frame, id } => {
            WireEvent::Signal { from: from.0, to: to.map(|p| p.0), frame, id: id.as_deref().map(RawValue::get) }
        }
        RoomEvent::Bounce { peer, id, why, link } => WireEvent::Bounce {
            peer: peer.0,
            id: id.as_deref().map(RawValue::get),
            why,
            link: link.map(|l| (l.incarnation, l.seq)),
        },
        RoomEvent::Moved { peer, from, to } => WireEvent::Moved { peer: peer.0, from, to },
        RoomEvent::Fence { peer, via, direct } => WireEvent::Fence { peer: peer.0, via, direct: *direct },
        RoomEvent::Forward { peer, frames, handover } => WireEvent::Forward {
            peer: peer.0,
            frames: frames.iter().map(|h| WireFrame { kind: kind_index(h.kind), frame: &h.frame }).collect(),
            handover: *handover,
        },
    };
    encode(&Wire::Room { room: room.as_str(), event })
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A decoded channel message.
pub enum Decoded<'a> {
    /// `sent_us` for relays of the unsequenced kind (from a node of the previous version).
    Room {
        room: RoomName,
        event: RoomEvent,
        sent_us: Option<u64>,
    },
    Canary,
    Ack {
        token: u64,
    },
    /// Link traffic: a message, a status or a probe.
    Link(LinkMsg<'a>),
}

pub fn decode(payload: &[u8]) -> Result<Decoded<'_>, BusError> {
    let corrupt = |what: String| BusError::Corrupt(what);
    let (&version, body) = payload.split_first().ok_or_else(|| corrupt("empty message".into()))?;
    if version != VERSION {
        return Err(corrupt(format!("message version {version}, this node speaks {VERSION}")));
    }
    let wire: Wire<'_> = postcard::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
    let (room, event) = match wire {
        Wire::Canary { .. } => return Ok(Decoded::Canary),
        Wire::Ack { token } => return Ok(Decoded::Ack { token }),
        Wire::Link(msg) => return Ok(Decoded::Link(msg)),
        Wire::Room { room, event } => (room, event),
    };
    let room = room_name(room)?;
    let mut sent = None;
    let event = match event {
        WireEvent::Joined { peer, node, meta, seed_user, ack } => joined(peer, node, meta, seed_user, ack, None, None)?,
        WireEvent::JoinedAs { peer, node, meta, seed_user, ack, user, role } => {
            joined(peer, node, meta, seed_user, ack, user, role)?
        }
        WireEvent::Left { peer, reason } => RoomEvent::Left { peer: PeerId(peer), reason },
        WireEvent::Relay { from, to, frame, sent_us } => {
            sent = Some(sent_us);
            let frame = bytes::Bytes::copy_from_slice(frame);
            RoomEvent::Relay { from: PeerId(from), to: to.map(PeerId), frame, id: None }
        }
        WireEvent::Signal { from, to, frame, id } => RoomEvent::Relay {
            from: PeerId(from),
            to: to.map(PeerId),
            frame: bytes::Bytes::copy_from_slice(frame),
            id: id.map(boxed_raw).transpose()?,
        },
        WireEvent::Bounce { peer, id, why, link } => RoomEvent::Bounce {
            peer: PeerId(peer),
            id: id.map(boxed_raw).transpose()?,
            why: why.to_string(),
            link: link.map(|(incarnation, seq)| crate::bus::LinkSeq { incarnation, seq }),
        },
        WireEvent::Moved { peer, from, to } => {
            RoomEvent::Moved { peer: PeerId(peer), from: from.into(), to: to.into() }
        }
        WireEvent::Fence { peer, via, direct } => RoomEvent::Fence { peer: PeerId(peer), via: via.into(), direct },
        WireEvent::Forward { peer, frames, handover } => RoomEvent::Forward {
            peer: PeerId(peer),
            frames: frames
                .into_iter()
                .map(|f| Held { frame: bytes::Bytes::copy_from_slice(f.frame), kind: kind_name(f.kind) })
                .collect(),
            handover,
        },
    };
    Ok(Decoded::Room { room, event, sent_us: sent })
}

fn joined(
    peer: u64,
    node: &str,
    meta: Option<&str>,
    seed_user: Option<&str>,
    ack: Option<u64>,
    user: Option<&str>,
    role: Option<Role>,
) -> Result<RoomEvent, BusError> {
    let node = NodeId::from(node);
    let ack = ack.map(|token| JoinAck { node: node.clone(), token });
    let record = MemberRecord {
        peer: PeerId(peer),
        node,
        meta: meta.map(raw).transpose()?,
        seed_user: seed_user.map(Arc::from),
        user: user.map(Arc::from),
        role,
    };
    Ok(RoomEvent::Joined(record, ack))
}

/// A room name read back from Redis is validated like one from a client.
pub fn room_name(name: &str) -> Result<RoomName, BusError> {
    RoomName::parse(name).map_err(|e| BusError::Corrupt(format!("room {name:?}: {}", e.message)))
}

fn boxed_raw(json: &str) -> Result<Box<RawValue>, BusError> {
    RawValue::from_string(json.to_string()).map_err(|e| BusError::Corrupt(format!("relay id: {e}")))
}

fn raw(json: &str) -> Result<Arc<RawValue>, BusError> {
    RawValue::from_string(json.to_string()).map(Arc::from).map_err(|e| BusError::Corrupt(format!("member meta: {e}")))
}

/// The membership record of `m`, as the room hash stores it.
pub fn record(m: &MemberRecord, epoch: u64) -> String {
    cluster::write_record(&m.node, epoch, m.meta.as_deref(), m.seed_user.as_deref(), m.user.as_deref(), m.role)
}

pub fn parse_record(peer: &str, record: &str) -> Result<MemberRecord, BusError> {
    let corrupt = || BusError::Corrupt(format!("member record {peer}: {record:?}"));
    let r = cluster::parse_record(record).map_err(|_| corrupt())?;
    let peer: PeerId = peer.parse().map_err(|_| corrupt())?;
    Ok(MemberRecord {
        peer,
        node: NodeId::from(r.node),
        meta: r.meta.map(Arc::from),
        seed_user: r.seed_user.map(Arc::from),
        user: r.user.map(Arc::from),
        role: r.role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> MemberRecord {
        MemberRecord {
            peer: PeerId(42),
            node: "node-a".into(),
            meta: Some(Arc::from(RawValue::from_string(r#"{"name":"a|b"}"#.into()).expect("json"))),
            seed_user: Some("alice".into()),
            user: None,
            role: None,
        }
    }

    #[test]
    fn records_round_trip_even_with_separators_in_meta() {
        let m = member();
        let text = record(&m, 7);
        assert!(text.starts_with("node-a|7|"));
        let back = parse_record(&m.peer.to_string(), &text).expect("parses");
        assert_eq!(back.node.as_ref(), "node-a");
        assert_eq!(back.meta.as_deref().map(RawValue::get), Some(r#"{"name":"a|b"}"#));
        assert_eq!(back.seed_user.as_deref(), Some("alice"));
    }

    #[test]
    fn events_round_trip() {
        let room = RoomName::seed("lobby 1").expect("valid");
        let frame = bytes::Bytes::from_static(br#"{"type":"signal"}"#);
        let id = Some(RawValue::from_string("7".into()).expect("json"));
        let payload = encode_event(&room, &RoomEvent::Relay { from: PeerId(1), to: Some(PeerId(2)), frame, id });
        let Ok(Decoded::Room { room: r, event: RoomEvent::Relay { from, to, frame, id }, sent_us: None }) =
            decode(&payload)
        else {
            panic!("not a relay");
        };
        assert_eq!((r, from, to), (room, PeerId(1), Some(PeerId(2))));
        assert_eq!(id.as_deref().map(RawValue::get), Some("7"));
        assert_eq!(&frame[..], br#"{"type":"signal"}"#);
        let payload = encode_event(
            &RoomName::v1("r").expect("valid"),
            &RoomEvent::Joined(member(), Some(JoinAck { node: "node-a".into(), token: 9 })),
        );
        let Ok(Decoded::Room { event: RoomEvent::Joined(m, Some(ack)), .. }) = decode(&payload) else {
            panic!("not a joined");
        };
        assert_eq!((m.peer, ack.node.as_ref(), ack.token), (PeerId(42), "node-a", 9));
    }

    #[test]
    fn a_member_with_a_token_travels_as_joined_as_and_one_without_as_joined() {
        let room = RoomName::v1("r").expect("valid");
        // [version, Wire::Room, room length, 'r', event variant, ...]: the variant index is the
        // part of the layout a node of the previous version must still understand.
        let plain = encode_event(&room, &RoomEvent::Joined(member(), None));
        assert_eq!(plain[4], 0, "a join without a token keeps the original `Joined` layout");
        let mut m = member();
        (m.user, m.role) = (Some("ann".into()), Some(Role::Viewer));
        let with_token = encode_event(&room, &RoomEvent::Joined(m, None));
        assert_eq!(with_token[4], 3, "`JoinedAs` is appended after the original variants");
        let Ok(Decoded::Room { event: RoomEvent::Joined(back, None), .. }) = decode(&with_token) else {
            panic!("not a joined");
        };
        assert_eq!((back.user.as_deref(), back.role), (Some("ann"), Some(Role::Viewer)));
        assert_eq!(back.seed_user.as_deref(), Some("alice"));
        let record = parse_record("0000000000001", &record(&back, 3)).expect("parses");
        assert_eq!((record.user.as_deref(), record.role), (Some("ann"), Some(Role::Viewer)));
    }

    #[test]
    fn handoff_events_round_trip() {
        let room = RoomName::v1("r").expect("valid");
        let frames = vec![
            Held { frame: bytes::Bytes::from_static(b"{\"a\":1}"), kind: "signal" },
            Held { frame: bytes::Bytes::from_static(b"{}"), kind: "peer-left" },
        ];
        let payload = encode_event(&room, &RoomEvent::Forward { peer: PeerId(7), frames, handover: true });
        let Ok(Decoded::Room { event: RoomEvent::Forward { peer, frames, handover }, .. }) = decode(&payload) else {
            panic!("not a forward");
        };
        assert_eq!((peer, handover, frames.len()), (PeerId(7), true, 2));
        assert_eq!((&frames[0].frame[..], frames[0].kind, frames[1].kind), (&b"{\"a\":1}"[..], "signal", "peer-left"));
        let payload =
            encode_event(&room, &RoomEvent::Moved { peer: PeerId(7), from: "node-a".into(), to: "node-b".into() });
        let Ok(Decoded::Room { event: RoomEvent::Moved { from, to, .. }, .. }) = decode(&payload) else {
            panic!("not a move");
        };
        assert_eq!((from.as_ref(), to.as_ref()), ("node-a", "node-b"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x09abc", b"\x01\xff\xff\xff\xff\xff", b"\x01\x00\x03a/b\x00"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
