//! What a [`SeqPeer`](super::SeqPeer) records: every numbered signal it received, every
//! `peer-state` and membership change, errors, each break of its socket and its resume, and the
//! protocol violations it noticed.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One numbered signal received.
#[derive(Clone, Debug)]
pub struct Got {
    pub from: String,
    /// The signal's own number (`data.n`), 0, 1, 2... per sender.
    pub n: u64,
    /// The frame's `seq`.
    pub seq: u64,
    pub at: Instant,
    /// Which connection it came on: 0 the first, 1 after the first resume, ...
    pub conn: usize,
}

/// One `peer-state` frame.
#[derive(Clone, Debug)]
pub struct PeerStateSeen {
    pub at: Instant,
    pub room: String,
    pub peer_id: String,
    /// `reconnecting` or `connected`.
    pub state: String,
    pub seq: u64,
}

/// One break of the socket and what the resume after it did.
#[derive(Clone, Debug)]
pub struct Break {
    /// When the client noticed the socket was gone (error, end, or silence).
    pub detected_at: Instant,
    /// How it noticed.
    pub cause: String,
    /// The node it was connected to (the welcome's `node_id`).
    pub from_node: String,
    /// The `last_seq` it resumes with: the last frame it received.
    pub last_seq: u64,
    /// Its last `cseq` when the socket broke, and the last the server had confirmed (`pong`).
    pub last_cseq: u64,
    pub confirmed: u64,
    /// Connection attempts so far (1: the first worked).
    pub attempts: u32,
    pub attempt_errors: Vec<String>,
    /// The URL (without the query the resume adds) of the attempt that worked.
    pub url: String,
    /// When the resumed `welcome` arrived; `None` until then (or if the resume failed).
    pub resumed_at: Option<Instant>,
    /// The resumed welcome's `node_id`.
    pub to_node: String,
    /// The resumed welcome's `last_cseq`.
    pub welcome_last_cseq: u64,
    /// Messages re-sent after the resume with a `cseq` above `welcome_last_cseq`.
    pub resent: usize,
    /// Messages re-sent on purpose with a `cseq` the server had processed (the dedupe must drop
    /// them).
    pub resent_processed: usize,
}

impl Break {
    /// From detection to the resumed welcome.
    pub fn reconnect_time(&self) -> Option<Duration> {
        self.resumed_at.map(|r| r.saturating_duration_since(self.detected_at))
    }
}

/// Everything a [`SeqPeer`](super::SeqPeer) saw.
#[derive(Clone, Debug, Default)]
pub struct SeqLog {
    pub id: String,
    /// The node of each connection, in turn.
    pub nodes: Vec<String>,
    /// Its own numbered signals so far: `0..sent` were sent (or queued while the socket was
    /// down).
    pub sent: u64,
    pub received: Vec<Got>,
    pub peer_states: Vec<PeerStateSeen>,
    /// `peer-joined` / `peer-left` frames, with when they arrived.
    pub membership: Vec<(Instant, Value)>,
    pub errors: Vec<Value>,
    /// Any other numbered frame but `pong` (`joined`, ...).
    pub other: Vec<Value>,
    pub pongs: u64,
    pub acks_sent: u64,
    pub breaks: Vec<Break>,
    /// The highest `seq` received.
    pub last_seq: u64,
    /// Protocol violations the client noticed.
    pub problems: Vec<String>,
}

impl SeqLog {
    /// The numbers of the signals received from `from`, in arrival order.
    pub fn ns_from(&self, from: &str) -> Vec<u64> {
        self.received.iter().filter(|r| r.from == from).map(|r| r.n).collect()
    }

    /// How many signals arrived from `from`.
    pub fn count_from(&self, from: &str) -> usize {
        self.received.iter().filter(|r| r.from == from).count()
    }

    /// `Err` unless exactly `0..count` arrived from `from`, in order, each once.
    pub fn check_exact(&self, from: &str, count: u64) -> Result<(), String> {
        let got = self.ns_from(from);
        if got.iter().copied().eq(0..count) {
            return Ok(());
        }
        let mut seen = BTreeSet::new();
        let dups: Vec<u64> = got.iter().copied().filter(|s| !seen.insert(*s)).collect();
        let missing: Vec<u64> = (0..count).filter(|s| !seen.contains(s)).collect();
        let disorder: Vec<(u64, u64)> = got.windows(2).filter(|w| w[1] <= w[0]).map(|w| (w[0], w[1])).collect();
        Err(format!(
            "{} got {} of {count} signals from {from}: missing {missing:?}, duplicates {dups:?}, out of order {disorder:?}",
            self.id,
            got.len()
        ))
    }

    /// The `peer-state` frames about `peer`, from index `from` of [`peer_states`](Self::peer_states).
    pub fn states_of(&self, peer: &str, from: usize) -> Vec<&PeerStateSeen> {
        self.peer_states.iter().skip(from).filter(|s| s.peer_id == peer).collect()
    }

    /// Breaks whose resume succeeded.
    pub fn resumed(&self) -> usize {
        self.breaks.iter().filter(|b| b.resumed_at.is_some()).count()
    }

    /// The longest wait between two consecutive signals received.
    pub fn longest_signal_interval(&self) -> Duration {
        self.received.windows(2).map(|w| w[1].at.saturating_duration_since(w[0].at)).max().unwrap_or_default()
    }
}

pub(super) fn problem(log: &Mutex<SeqLog>, p: String) {
    log.lock().expect("seq log").problems.push(p);
}
