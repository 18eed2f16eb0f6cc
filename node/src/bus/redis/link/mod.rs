//! Sequenced node-to-node links: Redis pub/sub is at most once, and `PUBLISH`'s receiver count
//! is not an acknowledgement, so every message one node publishes to another travels on a
//! link that makes its fate known.
//!
//! A link is (sender node, the sender's *incarnation* — its process's start time —, receiver
//! node).
//! Every message on it ([`LinkMsg::Data`](super::wire::LinkMsg::Data)) carries a sequence number
//! (1, 2, 3…), the sender's *base* (the lowest number it has not settled) and a *deadline*
//! (the sender's clock + [`Settings::timeout`](super::Settings)), after which the receiver no
//! longer delivers it.
//!
//! - **Receiver** ([`Inlets`]): delivers in sequence order; a number ahead of the next expected
//!   one is held (bounded) and the gap reported at once in a [`LinkMsg::Status`](super::wire::LinkMsg::Status)
//!   (`missing`); duplicates are dropped. A message that arrives (or whose gap is given up)
//!   past its deadline is not delivered and is reported `lost`. Statuses go back on the
//!   sender's node channel as soon as the receiver is idle, at most [`STATUS_EVERY`] apart
//!   under load, and say: everything up to `upto` is settled, except the `lost` ranges.
//! - **Sender** ([`Outboxes`]): keeps every message until a status settles it (bounded in count
//!   and bytes per link). A status settles it as delivered or lost; `missing` numbers are sent
//!   again (or, if the sender has already answered them, *skipped*: an empty body). A message
//!   that reached no subscriber (`PUBLISH` returned 0) is answered at once; one that nobody
//!   accounts for is probed for and, [`ANSWER_SLACK`] after its deadline, answered.
//!
//! An answer is a [`BusError::Lost`](crate::bus::BusError) on the publish, which the room
//! turns into `undeliverable` for the sender. So every relay ends delivered once, in order, or
//! answered — and a message the receiver drops *after* the link delivered it (its target is not
//! in the room) comes back as a [`Bounce`](crate::bus::RoomEvent::Bounce) on the reverse link.

mod inlet;
pub(super) mod outbox;

use std::time::Duration;

use bytes::Bytes;

use super::wire::{self, LinkMsg, Wire};

pub(super) use inlet::{Inlets, Received};
pub(super) use outbox::{BounceVerdict, Outboxes, Reply};

/// Longest a receiver waits before acknowledging what it delivered while messages keep coming.
pub(super) const STATUS_EVERY: Duration = Duration::from_millis(20);

/// Shortest gap between two statuses on one link when the receiver is idle: a lone relay is
/// acknowledged at once, a stream in bursts at most this often.
pub(super) const STATUS_EAGER: Duration = Duration::from_millis(2);

/// How long past its deadline the sender waits for a word on a message before answering it
/// itself: the receiver has stopped delivering it by then (clocks agree within ~0.5 s), and
/// its last status has had time to arrive.
pub(super) const ANSWER_SLACK: Duration = Duration::from_millis(1000);

/// A message the sender has heard nothing about for this long makes it ask (a lost tail).
pub(super) const PROBE_AFTER: Duration = Duration::from_millis(100);

/// Closed, inclusive ranges of sequence numbers, merged as they grow.
pub(super) fn push_range(ranges: &mut Vec<(u64, u64)>, seq: u64) {
    match ranges.last_mut() {
        Some((_, end)) if *end + 1 == seq => *end = seq,
        Some((_, end)) if *end >= seq => {}
        _ => ranges.push((seq, seq)),
    }
}

pub(super) fn in_ranges(ranges: &[(u64, u64)], seq: u64) -> bool {
    ranges.iter().any(|&(a, b)| a <= seq && seq <= b)
}

#[cfg(test)]
mod tests;

/// The payload of a message on a link: its header, then `body` copied once (the body is the
/// last field of [`LinkMsg::Data`], so the header is encoded alone and the body appended).
pub(super) fn data(src: &str, inc: u64, seq: u64, base: u64, deadline_us: u64, body: &[u8]) -> Bytes {
    let mut out = wire::encode(&Wire::Link(LinkMsg::Data { src, inc, seq, base, deadline_us, body: &[] }));
    // The empty body was encoded as its length, a single 0 byte: replace it with the real one.
    out.pop();
    out.reserve(body.len() + 10);
    let mut len = body.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(body);
    Bytes::from(out)
}
