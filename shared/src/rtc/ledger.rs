//! The bookkeeping that lets a v1 session resume after any break (issue 13), apart from the
//! sockets: which server frames arrived (their `seq`), when to acknowledge them, and which of
//! our messages the server may not have processed yet (their `cseq`).
//!
//! - Every server frame after `welcome` starts `{"seq":N,`: [`seq_of`] reads it without parsing
//!   the frame. [`Ledger::receive`] keeps the highest seen and tells a repeat apart (it should
//!   not happen: the server replays exactly what follows `last_seq`).
//! - An `ack` of everything so far goes out after [`ACK_EVERY_FRAMES`] frames, or
//!   [`ACK_AFTER`] after the first frame it does not cover ([`Ledger::ack_at`],
//!   [`Ledger::take_ack`]), so the server can free its replay buffer.
//! - Every message but `ack` is numbered ([`Ledger::number`]: `{"cseq":N,…`) and kept until the
//!   server says it processed it (`pong.last_cseq`, a resumed `welcome.last_cseq`:
//!   [`Ledger::confirm`]); after a resume, what it did not process goes out again
//!   ([`Ledger::unconfirmed`]), and the server drops what it had already.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::v1::Request;

/// Acknowledge at the latest after this many frames…
pub const ACK_EVERY_FRAMES: u64 = 32;
/// …or this long after the first frame not acknowledged yet.
pub const ACK_AFTER: Duration = Duration::from_secs(1);
/// Unconfirmed messages kept for a resume; the oldest go beyond it (a server that confirms
/// nothing, e.g. one older than `cseq`, must not grow the client without bound).
pub const MAX_UNCONFIRMED: usize = 1024;

pub use crate::protocol::v1::seq_of;

/// What a received frame was to the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A frame with a seq beyond the last one: pass it on.
    New,
    /// A frame whose seq was seen already: drop it.
    Repeat,
    /// A frame without seq (`welcome`, or a node older than resuming).
    Unnumbered,
}

/// One session's numbers. See the module docs.
#[derive(Debug, Default)]
pub struct Ledger {
    last_seq: u64,
    /// The last seq the server was told we have.
    acked: u64,
    /// When the first frame after `acked` arrived.
    unacked_since: Option<Instant>,
    /// The last cseq given out.
    cseq: u64,
    /// Numbered messages not confirmed yet, oldest first.
    unconfirmed: VecDeque<(u64, String)>,
    /// Unconfirmed messages let go beyond [`MAX_UNCONFIRMED`].
    dropped: u64,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest seq received (0: none yet): a resume's `last_seq`.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The last cseq given out.
    pub fn last_cseq(&self) -> u64 {
        self.cseq
    }

    /// Unconfirmed messages let go because more than [`MAX_UNCONFIRMED`] waited.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Notes a received frame's seq.
    pub fn receive(&mut self, seq: Option<u64>, now: Instant) -> Seen {
        let Some(seq) = seq else { return Seen::Unnumbered };
        if seq <= self.last_seq {
            return Seen::Repeat;
        }
        self.last_seq = seq;
        self.unacked_since.get_or_insert(now);
        Seen::New
    }

    /// When the next `ack` is due (`None`: everything is acknowledged).
    pub fn ack_at(&self) -> Option<Instant> {
        let since = self.unacked_since?;
        if self.last_seq - self.acked >= ACK_EVERY_FRAMES {
            return Some(since);
        }
        Some(since + ACK_AFTER)
    }

    /// The `ack` to send now, if one is due at `now`.
    pub fn take_ack(&mut self, now: Instant) -> Option<String> {
        if self.ack_at()? > now {
            return None;
        }
        self.acked = self.last_seq;
        self.unacked_since = None;
        Some(Request::Ack { seq: self.last_seq }.to_json())
    }

    /// Numbers an outgoing message (a JSON object) with the next cseq and keeps it until it is
    /// confirmed; returns the text to send. Anything but an object goes out as it is (the
    /// server refuses it either way).
    pub fn number(&mut self, msg: &str) -> String {
        let Some(rest) = msg.strip_prefix('{') else { return msg.to_owned() };
        self.cseq += 1;
        let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
        let text = format!("{{\"cseq\":{}{sep}{rest}", self.cseq);
        if self.unconfirmed.len() == MAX_UNCONFIRMED {
            self.unconfirmed.pop_front();
            self.dropped += 1;
        }
        self.unconfirmed.push_back((self.cseq, text.clone()));
        text
    }

    /// The server processed every message up to `last_cseq`: they need not go again.
    pub fn confirm(&mut self, last_cseq: u64) {
        while self.unconfirmed.front().is_some_and(|(c, _)| *c <= last_cseq) {
            self.unconfirmed.pop_front();
        }
    }

    /// The messages to send again after a resume (call [`Ledger::confirm`] with the welcome's
    /// `last_cseq` first), in order.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &str> {
        self.unconfirmed.iter().map(|(_, text)| text.as_str())
    }

    /// The session resumed with our `last_seq`: the server knows what we have up to there.
    pub fn resumed(&mut self) {
        self.acked = self.last_seq;
        self.unacked_since = None;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn reads_the_seq_a_frame_starts_with() {
        assert_eq!(seq_of(r#"{"seq":7,"type":"signal","room":"r"}"#), Some(7));
        assert_eq!(seq_of(r#"{"seq":18446744073709551615,"type":"pong"}"#), Some(u64::MAX));
        assert_eq!(seq_of(r#"{"seq":3}"#), Some(3));
        for none in [
            r#"{"type":"welcome","peer_id":"x"}"#,
            r#"{"type":"signal","seq":7}"#,
            r#"{"seq":"7","type":"pong"}"#,
            r#"{"seq":-1,"type":"pong"}"#,
            r#"{"seq":1.5,"type":"pong"}"#,
            r#"{"seq":7"#,
            "",
        ] {
            assert_eq!(seq_of(none), None, "{none}");
        }
    }

    #[test]
    fn keeps_the_highest_seq_and_drops_repeats() {
        let mut l = Ledger::new();
        let now = Instant::now();
        assert_eq!(l.receive(None, now), Seen::Unnumbered);
        assert_eq!(l.receive(Some(1), now), Seen::New);
        assert_eq!(l.receive(Some(2), now), Seen::New);
        assert_eq!(l.receive(Some(2), now), Seen::Repeat);
        assert_eq!(l.receive(Some(1), now), Seen::Repeat);
        // A gap is not ours to fill: the frame is new.
        assert_eq!(l.receive(Some(5), now), Seen::New);
        assert_eq!(l.last_seq(), 5);
    }

    #[test]
    fn acks_after_32_frames_or_a_second() {
        let mut l = Ledger::new();
        let t0 = Instant::now();
        assert_eq!((l.ack_at(), l.take_ack(t0)), (None, None));
        l.receive(Some(1), t0);
        assert_eq!(l.ack_at(), Some(t0 + ACK_AFTER));
        assert_eq!(l.take_ack(t0 + Duration::from_millis(999)), None);
        // Later frames do not push the ack back.
        l.receive(Some(2), t0 + Duration::from_millis(500));
        let ack = l.take_ack(t0 + ACK_AFTER).expect("due after a second");
        assert_eq!(serde_json::from_str::<Value>(&ack).unwrap(), json!({"type": "ack", "seq": 2}));
        assert_eq!(l.ack_at(), None);
        // 32 frames: at once.
        let t1 = t0 + Duration::from_secs(5);
        for seq in 3..=33 {
            l.receive(Some(seq), t1);
            assert_eq!(l.take_ack(t1), None, "{seq}");
        }
        l.receive(Some(34), t1);
        assert_eq!(l.ack_at(), Some(t1));
        assert_eq!(serde_json::from_str::<Value>(&l.take_ack(t1).unwrap()).unwrap()["seq"], 34);
        // Repeats and unnumbered frames need no ack.
        l.receive(Some(34), t1);
        l.receive(None, t1);
        assert_eq!(l.ack_at(), None);
        // A resume tells the server our last seq: nothing to ack.
        l.receive(Some(35), t1);
        l.resumed();
        assert_eq!(l.ack_at(), None);
    }

    #[test]
    fn numbers_keeps_and_confirms() {
        let mut l = Ledger::new();
        let a = l.number(r#"{"type":"join","room":"r"}"#);
        assert_eq!(a, r#"{"cseq":1,"type":"join","room":"r"}"#);
        assert_eq!(l.number("{}"), r#"{"cseq":2}"#);
        let c = l.number(r#"{"type":"ping"}"#);
        let v: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v, json!({"cseq": 3, "type": "ping"}));
        // Not an object: as it is, unnumbered, not kept.
        assert_eq!(l.number("[1]"), "[1]");
        assert_eq!(l.last_cseq(), 3);
        assert_eq!(l.unconfirmed().count(), 3);
        l.confirm(2);
        assert_eq!(l.unconfirmed().collect::<Vec<_>>(), [c.as_str()]);
        // An older confirmation changes nothing.
        l.confirm(1);
        assert_eq!(l.unconfirmed().count(), 1);
        l.confirm(3);
        assert_eq!(l.unconfirmed().count(), 0);
        assert_eq!(l.number(r#"{"type":"ping"}"#), r#"{"cseq":4,"type":"ping"}"#);
    }

    #[test]
    fn keeps_a_bounded_number_of_unconfirmed_messages() {
        let mut l = Ledger::new();
        for _ in 0..MAX_UNCONFIRMED + 10 {
            l.number(r#"{"type":"ping"}"#);
        }
        assert_eq!(l.unconfirmed().count(), MAX_UNCONFIRMED);
        assert_eq!(l.dropped(), 10);
        assert!(l.unconfirmed().next().unwrap().starts_with(r#"{"cseq":11,"#));
    }
}
