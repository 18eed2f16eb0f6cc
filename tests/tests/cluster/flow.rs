//! Streams of numbered signals between pairs of peers, and the accounting of every message:
//! delivered (once, in order) or answered with an error. Shared by the Redis fault tests.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_tests::{Frame, Node, V1Peer};
use tokio::task::JoinHandle;

use super::Cluster;

/// How often each streaming peer sends one numbered signal.
pub const SEND_EVERY: Duration = Duration::from_millis(5);

/// A stream of 200 messages per second per connection needs the rate limits off.
pub const UNLIMITED: &[&str] =
    &["--messages-per-sec", "0", "--candidates-per-sec", "0", "--max-candidates-per-negotiation", "0"];

/// Once the streams stop, a peer keeps reading until nothing has arrived for this long.
pub const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// The longest a cross-node relay may wait for its answer: its deadline (1 s), the sender's wait
/// for the receiver's word after it (1 s, then a last probe's 300 ms), and scheduling slack.
pub const ANSWER_BOUND: Duration = Duration::from_millis(3000);

/// A delivery later than this after its send was held somewhere (a healthy relay takes ~1 ms).
pub const LATE: Duration = Duration::from_millis(500);

/// What one streaming peer saw. Times are since the scenario's start.
#[derive(Default)]
pub struct PeerLog {
    /// When each numbered signal was sent (index = seq = the message's `id`).
    pub sent: Vec<Duration>,
    /// `(seq, when)` of every numbered signal received from the partner, in arrival order.
    pub received: Vec<(u64, Duration)>,
    /// `(id, when)` of every `undeliverable` error answered to this peer's own signals.
    pub undeliverable: Vec<(u64, Duration)>,
    /// `(id, code, when)` of every other error answered to this peer's own signals.
    pub refused: Vec<(u64, String, Duration)>,
    /// `peer-joined` / `peer-left` frames.
    pub membership: Vec<(Duration, String)>,
    /// Anything else (an error without id, a closed socket, ...).
    pub unexpected: Vec<(Duration, String)>,
}

/// Records one frame; false if the socket is gone.
pub fn record(log: &mut PeerLog, frame: Frame, t0: Instant) -> bool {
    let at = t0.elapsed();
    match frame {
        Frame::Json(v) if v["type"] == "signal" && v["data"]["seq"].is_u64() => {
            log.received.push((v["data"]["seq"].as_u64().unwrap_or_default(), at));
        }
        Frame::Json(v) if v["type"] == "error" && v["code"] == "undeliverable" && v["id"].is_u64() => {
            log.undeliverable.push((v["id"].as_u64().unwrap_or_default(), at));
        }
        Frame::Json(v) if v["type"] == "error" && v["id"].is_u64() => {
            let code = v["code"].as_str().unwrap_or_default().to_string();
            log.refused.push((v["id"].as_u64().unwrap_or_default(), code, at));
        }
        Frame::Json(v) if v["type"] == "peer-joined" || v["type"] == "peer-left" => {
            log.membership.push((at, v.to_string()));
        }
        Frame::Json(v) => log.unexpected.push((at, v.to_string())),
        other => {
            log.unexpected.push((at, format!("{other:?}")));
            return false;
        }
    }
    true
}

/// Makes `peer` send `{"seq": n}` signals (with `id` n) to `to` in `room` every [`SEND_EVERY`],
/// recording what comes back, until `stop`; then drains until quiet and hands back its log.
pub fn spawn_stream(
    mut peer: V1Peer,
    room: &str,
    to: &str,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(V1Peer, PeerLog)> {
    let (room, to) = (room.to_string(), to.to_string());
    tokio::spawn(async move {
        let mut log = PeerLog::default();
        let mut tick = tokio::time::interval(SEND_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if stop.load(Ordering::SeqCst) {
                let open = peer.ws.next_within(DRAIN_QUIET).await.is_some_and(|f| record(&mut log, f, t0));
                if open {
                    continue;
                }
                break;
            }
            tokio::select! {
                _ = tick.tick() => {
                    let seq = log.sent.len();
                    log.sent.push(t0.elapsed());
                    let msg = json!({"type": "signal", "room": room, "to": to, "data": {"seq": seq}, "id": seq});
                    peer.ws.send_json(msg).await;
                }
                f = peer.ws.next_within(Duration::from_secs(3600)) => {
                    if !record(&mut log, f.expect("an hour of silence"), t0) {
                        break;
                    }
                }
            }
        }
        (peer, log)
    })
}

/// One direction of a stream: what the sender sent, what the receiver got, what bounced.
pub struct Flow {
    pub name: String,
    pub sent: Vec<Duration>,
    /// `(seq, when)` in arrival order.
    pub delivered: Vec<(u64, Duration)>,
    /// id → when the `undeliverable` came back.
    pub undeliverable: HashMap<u64, Duration>,
    /// id → (code, when) of any other error.
    pub refused: HashMap<u64, (String, Duration)>,
    /// Ids answered with more than one error.
    pub duplicate_errors: Vec<u64>,
    /// Membership frames either side saw.
    pub membership: Vec<String>,
    pub unexpected: Vec<String>,
}

impl Flow {
    pub fn new(name: &str, sender: &PeerLog, receiver: &PeerLog) -> Flow {
        let mut undeliverable = HashMap::new();
        let mut refused = HashMap::new();
        let mut duplicate_errors = Vec::new();
        for &(id, at) in &sender.undeliverable {
            if undeliverable.insert(id, at).is_some() {
                duplicate_errors.push(id);
            }
        }
        for (id, code, at) in &sender.refused {
            if refused.insert(*id, (code.clone(), *at)).is_some() || undeliverable.contains_key(id) {
                duplicate_errors.push(*id);
            }
        }
        let timed = |v: &[(Duration, String)]| -> Vec<String> {
            v.iter().map(|(at, f)| format!("{} {f}", secs(*at))).collect()
        };
        let mut membership = timed(&sender.membership);
        membership.extend(timed(&receiver.membership));
        let mut unexpected = timed(&sender.unexpected);
        unexpected.extend(timed(&receiver.unexpected));
        Flow {
            name: name.to_string(),
            sent: sender.sent.clone(),
            delivered: receiver.received.clone(),
            undeliverable,
            refused,
            duplicate_errors,
            membership,
            unexpected,
        }
    }

    /// Seqs that arrived out of order or more than once: `(previous, this)`.
    pub fn disorder(&self) -> Vec<(u64, u64)> {
        self.delivered.windows(2).filter(|w| w[1].0 <= w[0].0).map(|w| (w[0].0, w[1].0)).collect()
    }

    pub fn delivered_set(&self) -> BTreeSet<u64> {
        self.delivered.iter().map(|&(s, _)| s).collect()
    }

    pub fn delivered_at(&self, seq: u64) -> Option<Duration> {
        self.delivered.iter().find(|d| d.0 == seq).map(|d| d.1)
    }

    /// Delivered *and* answered `undeliverable`.
    pub fn both(&self) -> Vec<u64> {
        let d = self.delivered_set();
        let mut both: Vec<u64> = self.undeliverable.keys().copied().filter(|id| d.contains(id)).collect();
        both.sort_unstable();
        both
    }

    /// Neither delivered nor answered with any error.
    pub fn missing(&self) -> Vec<u64> {
        let d = self.delivered_set();
        (0..self.sent.len() as u64)
            .filter(|s| !d.contains(s) && !self.undeliverable.contains_key(s) && !self.refused.contains_key(s))
            .collect()
    }

    /// The longest silence between two deliveries: (length, previous delivery, next delivery).
    pub fn longest_gap(&self) -> (Duration, Duration, Duration) {
        self.delivered.windows(2).map(|w| (w[1].1.saturating_sub(w[0].1), w[0].1, w[1].1)).max().unwrap_or_default()
    }

    /// The slowest `undeliverable` answer, from send to error.
    pub fn slowest_error(&self) -> Duration {
        self.undeliverable.iter().map(|(&id, &at)| at.saturating_sub(self.sent[id as usize])).max().unwrap_or_default()
    }

    /// The slowest `undeliverable`, counted from the send — or, for a message sent during `cut`
    /// (Redis away: its sender cannot hear what the receiver did with it), from the cut's end.
    pub fn slowest_error_after(&self, cut: (Duration, Duration)) -> Duration {
        self.undeliverable
            .iter()
            .map(|(&id, &at)| {
                let sent = self.sent[id as usize];
                let from = if (cut.0..cut.1).contains(&sent) { cut.1 } else { sent };
                at.saturating_sub(from)
            })
            .max()
            .unwrap_or_default()
    }

    /// When the first `undeliverable` came back.
    pub fn first_error(&self) -> Option<Duration> {
        self.undeliverable.values().min().copied()
    }

    /// `(seq, how long it took)` of deliveries later than `late` after their send.
    pub fn late(&self, late: Duration) -> Vec<(u64, Duration)> {
        self.delivered
            .iter()
            .filter_map(|&(s, at)| {
                let took = at.saturating_sub(self.sent[s as usize]);
                (took > late).then_some((s, took))
            })
            .collect()
    }

    pub fn sent_between(&self, from: Duration, to: Duration) -> Vec<u64> {
        (0..self.sent.len() as u64).filter(|&s| (from..to).contains(&self.sent[s as usize])).collect()
    }

    pub fn report(&self) {
        let (gap, from, to) = self.longest_gap();
        let mut errs: Vec<u64> = self.undeliverable.keys().copied().collect();
        errs.sort_unstable();
        let mut by_code: std::collections::BTreeMap<&str, Vec<u64>> = std::collections::BTreeMap::new();
        for (id, (code, _)) in &self.refused {
            by_code.entry(code).or_default().push(*id);
        }
        let refused: Vec<String> = by_code
            .iter_mut()
            .map(|(code, ids)| {
                ids.sort_unstable();
                format!("{code} [{}]", ranges(ids))
            })
            .collect();
        println!(
            "{}: sent {}, delivered {}, undeliverable {} [{}] (slowest answer {} ms), other errors {refused:?}, \
             delivered and undeliverable {}, missing {}, out of order {}, late {}, longest delivery gap {} ms \
             ({}..{}), membership frames {}",
            self.name,
            self.sent.len(),
            self.delivered.len(),
            self.undeliverable.len(),
            ranges(&errs),
            self.slowest_error().as_millis(),
            self.both().len(),
            self.missing().len(),
            self.disorder().len(),
            self.late(LATE).len(),
            gap.as_millis(),
            secs(from),
            secs(to),
            self.membership.len(),
        );
        for m in &self.membership {
            println!("  {}: {m}", self.name);
        }
    }

    /// Delivered at most once and in order, every message accounted for (delivered or answered
    /// with an error carrying its id: never silence), nothing unknown arrived.
    pub fn check_accounted(&self, problems: &mut Vec<String>) {
        let name = &self.name;
        if !self.disorder().is_empty() {
            problems.push(format!("{name}: out of order or duplicated (previous, next): {:?}", self.disorder()));
        }
        if !self.duplicate_errors.is_empty() {
            problems.push(format!("{name}: answered with an error twice: {}", ranges(&self.duplicate_errors)));
        }
        if !self.missing().is_empty() {
            problems.push(format!("{name}: neither delivered nor answered: {}", ranges(&self.missing())));
        }
        if !self.unexpected.is_empty() {
            problems.push(format!("{name}: unexpected frames: {:?}", self.unexpected));
        }
    }

    /// Delivered *or* answered `undeliverable`, never both.
    pub fn check_not_both(&self, problems: &mut Vec<String>) {
        let both = self.both();
        if both.is_empty() {
            return;
        }
        let detail: Vec<String> = both
            .iter()
            .take(10)
            .map(|&s| {
                format!(
                    "seq {s} sent {}, undeliverable {}, delivered {}",
                    secs(self.sent[s as usize]),
                    secs(self.undeliverable[&s]),
                    secs(self.delivered_at(s).unwrap_or_default())
                )
            })
            .collect();
        problems.push(format!(
            "{}: {} delivered although answered undeliverable ({}): {detail:?}",
            self.name,
            both.len(),
            ranges(&both)
        ));
    }

    /// No delivery held back for more than [`LATE`].
    pub fn check_not_late(&self, problems: &mut Vec<String>) {
        let slow = self.late(LATE);
        let Some(&(first, took)) = slow.first() else { return };
        let seqs: Vec<u64> = slow.iter().map(|l| l.0).collect();
        problems.push(format!(
            "{}: {} delivered more than {} ms after being sent ({}); seq {first} sent {}, delivered {} ({} ms)",
            self.name,
            slow.len(),
            LATE.as_millis(),
            ranges(&seqs),
            secs(self.sent[first as usize]),
            secs(self.sent[first as usize] + took),
            took.as_millis()
        ));
    }

    /// No error other than `undeliverable` (an `unknown-peer`, say).
    pub fn check_no_other_errors(&self, problems: &mut Vec<String>) {
        if !self.refused.is_empty() {
            let mut r: Vec<String> =
                self.refused.iter().map(|(id, (code, at))| format!("{id}:{code}@{}", secs(*at))).collect();
            r.sort();
            problems.push(format!("{}: answered with errors other than undeliverable: {r:?}", self.name));
        }
    }

    /// Neither side saw a peer come or go.
    pub fn check_no_membership_change(&self, problems: &mut Vec<String>) {
        if !self.membership.is_empty() {
            problems.push(format!("{}: membership changed: {:?}", self.name, self.membership));
        }
    }

    /// [`check_accounted`](Self::check_accounted), and: delivered *or* answered `undeliverable`
    /// (never both, no other error), never late, no membership churn.
    pub fn check_exact(&self, problems: &mut Vec<String>) {
        self.check_accounted(problems);
        self.check_not_both(problems);
        self.check_not_late(problems);
        self.check_no_other_errors(problems);
        self.check_no_membership_change(problems);
    }

    /// Every message delivered promptly, none bounced or refused, and deliveries never paused
    /// for `max_gap`: a relay that never stopped.
    pub fn check_never_paused(&self, max_gap: Duration, problems: &mut Vec<String>) {
        self.check_accounted(problems);
        self.check_not_late(problems);
        self.check_no_other_errors(problems);
        if !self.undeliverable.is_empty() {
            let mut ids: Vec<u64> = self.undeliverable.keys().copied().collect();
            ids.sort_unstable();
            problems.push(format!("{}: undeliverable: {}", self.name, ranges(&ids)));
        }
        let (gap, from, to) = self.longest_gap();
        if gap >= max_gap {
            problems.push(format!(
                "{}: deliveries stopped for {} ms ({}..{})",
                self.name,
                gap.as_millis(),
                secs(from),
                secs(to)
            ));
        }
    }

    /// [`check_never_paused`](Self::check_never_paused) with no membership churn either.
    pub fn check_all_delivered(&self, max_gap: Duration, problems: &mut Vec<String>) {
        self.check_never_paused(max_gap, problems);
        self.check_no_membership_change(problems);
    }

    /// Every message sent in `[from, to)` was delivered; returns how many there were.
    pub fn check_delivered_between(&self, from: Duration, to: Duration, problems: &mut Vec<String>) -> usize {
        let d = self.delivered_set();
        let window = self.sent_between(from, to);
        let lost: Vec<u64> = window.iter().copied().filter(|s| !d.contains(s)).collect();
        if !lost.is_empty() {
            problems.push(format!(
                "{}: sent after recovery ({}..{}) but not delivered: {}",
                self.name,
                secs(from),
                secs(to),
                ranges(&lost)
            ));
        }
        window.len()
    }

    /// Every message sent in `[from, to)` was answered `undeliverable` (and not delivered);
    /// returns how many there were.
    pub fn check_undeliverable_between(&self, from: Duration, to: Duration, problems: &mut Vec<String>) -> usize {
        let window = self.sent_between(from, to);
        let d = self.delivered_set();
        let wrong: Vec<u64> =
            window.iter().copied().filter(|s| !self.undeliverable.contains_key(s) || d.contains(s)).collect();
        if let Some(&first) = wrong.first() {
            problems.push(format!(
                "{}: {} sent while the bus was down ({}..{}) not (only) answered undeliverable: {}; seq {first} sent \
                 {}, delivered {:?}, undeliverable {:?}",
                self.name,
                wrong.len(),
                secs(from),
                secs(to),
                ranges(&wrong),
                secs(self.sent[first as usize]),
                self.delivered_at(first).map(secs),
                self.undeliverable.get(&first).copied().map(secs),
            ));
        }
        window.len()
    }
}

/// `[1, 2, 3, 7]` as `1..=3, 7`.
pub fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j { seqs[i].to_string() } else { format!("{}..={}", seqs[i], seqs[j]) });
        i = j + 1;
    }
    out.join(", ")
}

pub fn assert_no_problems(problems: &[String]) {
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Two peers streaming at each other.
pub struct Pair {
    pub name: &'static str,
    pub tasks: [JoinHandle<(V1Peer, PeerLog)>; 2],
}

impl Pair {
    /// `a` and `b` have joined `room` and see each other.
    pub fn start(
        name: &'static str,
        (a, b): (V1Peer, V1Peer),
        room: &str,
        t0: Instant,
        stop: &Arc<AtomicBool>,
    ) -> Pair {
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        let tasks =
            [spawn_stream(a, room, &b_id, t0, Arc::clone(stop)), spawn_stream(b, room, &a_id, t0, Arc::clone(stop))];
        Pair { name, tasks }
    }

    /// Waits for both tasks (after `stop`) and returns the two directions.
    pub async fn finish(self) -> [Flow; 2] {
        let [ta, tb] = self.tasks;
        let (_a, la) = ta.await.expect("stream task");
        let (_b, lb) = tb.await.expect("stream task");
        [Flow::new(&format!("{} a→b", self.name), &la, &lb), Flow::new(&format!("{} b→a", self.name), &lb, &la)]
    }
}

/// Two peers in `room`, on `url_a` and `url_b`, each seeing the other.
pub async fn pair(url_a: &str, url_b: &str, room: &str) -> (V1Peer, V1Peer) {
    let mut a = V1Peer::connect(url_a).await;
    let mut b = V1Peer::connect(url_b).await;
    a.join(room).await;
    let joined = b.join(room).await;
    assert_eq!(joined["peers"][0]["peer_id"], json!(a.id), "{joined}");
    assert_eq!(a.ws.expect("peer-joined").await["peer"]["peer_id"], json!(b.id));
    (a, b)
}

/// Waits until every node's `/readyz` is 200 (`ready`) or 503 (`!ready`).
pub fn wait_all(nodes: &[Node], ready: bool, within: Duration) {
    for n in nodes {
        n.wait_ready(ready, within);
    }
}

/// Samples `/readyz` of every node until `until` (since `t0`); returns the number of samples
/// and those that were not 503.
pub fn sample_unready(nodes: &[Node], t0: Instant, until: Duration) -> (usize, Vec<String>) {
    let (mut samples, mut wrong) = (0, Vec::new());
    while t0.elapsed() < until {
        for n in nodes {
            let (status, body) = n.get("/readyz");
            samples += 1;
            if status != 503 {
                wrong.push(format!("{} {} {status} {body}", secs(t0.elapsed()), n.addr));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (samples, wrong)
}

/// The same-node pair S (both on n0) and the cross-node pair X (n0, n1), streaming.
pub struct Streams {
    pub t0: Instant,
    pub stop: Arc<AtomicBool>,
    pub same: Pair,
    pub cross: Pair,
}

impl Streams {
    pub async fn start(c: &Cluster) -> Streams {
        let (n0, n1) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
        let s = pair(&n0, &n0, "same-node").await;
        let x = pair(&n0, &n1, "cross-node").await;
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let same = Pair::start("S (n0, n0)", s, "same-node", t0, &stop);
        let cross = Pair::start("X (n0, n1)", x, "cross-node", t0, &stop);
        Streams { t0, stop, same, cross }
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Stops sending, drains, and returns (same-node flows, cross-node flows), printed.
    pub async fn finish(self) -> ([Flow; 2], [Flow; 2]) {
        self.stop.store(true, Ordering::SeqCst);
        let same = self.same.finish().await;
        let cross = self.cross.finish().await;
        for f in same.iter().chain(&cross) {
            f.report();
        }
        (same, cross)
    }
}
