//! What a resuming peer records: every numbered signal it received, membership changes,
//! errors, each resume and its gap, and protocol violations it noticed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One numbered signal received.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub seq: u64,
    pub at: Instant,
    /// Which connection it came on: 0 the first, 1 after the first reconnect, ...
    pub conn: usize,
}

/// One `reconnect` followed.
#[derive(Clone, Debug)]
pub struct Resume {
    /// When the `reconnect` frame arrived.
    pub at: Instant,
    pub within_ms: u64,
    /// Frames that arrived after `reconnect` and before the server's close (processed).
    pub frames_before_close: usize,
    /// The server's close frame (`None`: the socket ended without one, or none within 3 s).
    pub server_close: Option<(u16, String)>,
    /// Connection attempts the resume took (1: the first one worked).
    pub attempts: u32,
    /// Why the failed attempts failed.
    pub attempt_errors: Vec<String>,
    /// From `reconnect` to the resumed `welcome`; `None` if the resume failed.
    pub gap: Option<Duration>,
    pub from_node: String,
    pub to_node: String,
}

/// Everything a streaming peer saw.
#[derive(Clone, Debug, Default)]
pub struct PeerLog {
    /// Its first peer id.
    pub id: String,
    /// Every peer id it had (more than one only after a failed resume).
    pub ids: Vec<String>,
    /// The node of each connection, in turn.
    pub nodes: Vec<String>,
    /// When each of its own signals was sent or queued (index = seq).
    pub sent: Vec<Instant>,
    pub received: Vec<Received>,
    /// `peer-joined` / `peer-left` frames, with when they arrived.
    pub membership: Vec<(Instant, Value)>,
    pub errors: Vec<Value>,
    /// Any other frame (a `joined` after a fresh reconnect, ...).
    pub other: Vec<Value>,
    pub resumes: Vec<Resume>,
    /// Resumes that failed: the client reconnected fresh with a new id.
    pub fresh_reconnects: usize,
    /// Protocol violations the client noticed.
    pub problems: Vec<String>,
}

impl PeerLog {
    /// The seqs received from `from`, in arrival order.
    pub fn seqs_from(&self, from: &str) -> Vec<u64> {
        self.received.iter().filter(|r| r.from == from).map(|r| r.seq).collect()
    }

    /// `Err` unless exactly `0..count` arrived from `from`, in order, each once.
    pub fn check_exact(&self, from: &str, count: u64) -> Result<(), String> {
        let got = self.seqs_from(from);
        if got.iter().copied().eq(0..count) {
            return Ok(());
        }
        let mut seen = std::collections::BTreeSet::new();
        let dups: Vec<u64> = got.iter().copied().filter(|s| !seen.insert(*s)).collect();
        let missing: Vec<u64> = (0..count).filter(|s| !seen.contains(s)).collect();
        let disorder: Vec<(u64, u64)> = got.windows(2).filter(|w| w[1] <= w[0]).map(|w| (w[0], w[1])).collect();
        Err(format!(
            "{} got {} of {count} from {from}: missing {missing:?}, duplicates {dups:?}, out of order {disorder:?}",
            self.id,
            got.len()
        ))
    }

    /// The longest wait between two consecutive signals received.
    pub fn longest_signal_interval(&self) -> Duration {
        self.received.windows(2).map(|w| w[1].at.saturating_duration_since(w[0].at)).max().unwrap_or_default()
    }

    /// The gaps of the resumes that succeeded.
    pub fn gaps(&self) -> Vec<Duration> {
        self.resumes.iter().filter_map(|r| r.gap).collect()
    }
}

pub(super) fn record(log: &Mutex<PeerLog>, v: Value, conn: usize) {
    let mut log = log.lock().expect("peer log");
    match v["type"].as_str().unwrap_or_default() {
        "signal" if v["data"]["seq"].is_u64() => {
            let from = v["from"].as_str().unwrap_or_default().to_string();
            let seq = v["data"]["seq"].as_u64().unwrap_or_default();
            log.received.push(Received { from, seq, at: Instant::now(), conn });
        }
        "peer-joined" | "peer-left" => log.membership.push((Instant::now(), v)),
        "error" => log.errors.push(v),
        _ => log.other.push(v),
    }
}

pub(super) fn problem(log: &Mutex<PeerLog>, p: String) {
    log.lock().expect("peer log").problems.push(p);
}

/// The `p`th percentile (0..=100) of `v` (nearest rank); zero if empty.
pub fn percentile(v: &[Duration], p: u32) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = (p as usize * s.len()).div_ceil(100).clamp(1, s.len());
    s[rank - 1]
}
