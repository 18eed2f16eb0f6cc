//! A cluster under Redis faults: a `redis-server` of the test's own, killed, restarted, frozen
//! (SIGSTOP) or not there yet, and real node processes.
//!
//! What the design promises and these tests check: while Redis is unreachable every bus
//! operation fails at once, so a cross-node relay is answered with `undeliverable` (never
//! dropped in silence, never delivered late or twice); same-node relays never touch Redis and
//! keep going; joins are admitted locally and become visible across nodes once Redis is back;
//! `/readyz` is 503 while the bus is down and 200 again after recovery.
//!
//! Most tests stream numbered signals (`data: {"seq": n}`, `id: n`, every [`SEND_EVERY`]) in
//! both directions of a same-node pair and a cross-node pair while the fault happens, then
//! account for every message: delivered (once, in order), or answered with an error. A frozen
//! Redis still completes TCP handshakes into its accept queue, which is how the tests see a
//! node start an attempt to reconnect (see [`accept_queue`]).

mod cluster;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Frame, Node, RedisServer, V1Peer, free_port, node_binary};
use tokio::task::JoinHandle;

use cluster::{Cluster, LEASE_MS, wait_ready};

/// How often each streaming peer sends one numbered signal.
const SEND_EVERY: Duration = Duration::from_millis(5);

/// A stream of 200 messages per second per connection needs the rate limits off.
const UNLIMITED: &[&str] =
    &["--messages-per-sec", "0", "--candidates-per-sec", "0", "--max-candidates-per-negotiation", "0"];

/// Once the streams stop, a peer keeps reading until nothing has arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// A delivery later than this after its send was held somewhere (a healthy relay takes ~1 ms).
const LATE: Duration = Duration::from_millis(500);

/// What one streaming peer saw. Times are since the scenario's start.
#[derive(Default)]
struct PeerLog {
    /// When each numbered signal was sent (index = seq = the message's `id`).
    sent: Vec<Duration>,
    /// `(seq, when)` of every numbered signal received from the partner, in arrival order.
    received: Vec<(u64, Duration)>,
    /// `(id, when)` of every `undeliverable` error answered to this peer's own signals.
    undeliverable: Vec<(u64, Duration)>,
    /// `(id, code, when)` of every other error answered to this peer's own signals.
    refused: Vec<(u64, String, Duration)>,
    /// `peer-joined` / `peer-left` frames.
    membership: Vec<(Duration, String)>,
    /// Anything else (an error without id, a closed socket, ...).
    unexpected: Vec<(Duration, String)>,
}

/// Records one frame; false if the socket is gone.
fn record(log: &mut PeerLog, frame: Frame, t0: Instant) -> bool {
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
fn spawn_stream(
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
struct Flow {
    name: String,
    sent: Vec<Duration>,
    /// `(seq, when)` in arrival order.
    delivered: Vec<(u64, Duration)>,
    /// id → when the `undeliverable` came back.
    undeliverable: HashMap<u64, Duration>,
    /// id → (code, when) of any other error.
    refused: HashMap<u64, (String, Duration)>,
    /// Ids answered with more than one error.
    duplicate_errors: Vec<u64>,
    /// Membership frames either side saw.
    membership: Vec<String>,
    unexpected: Vec<String>,
}

impl Flow {
    fn new(name: &str, sender: &PeerLog, receiver: &PeerLog) -> Flow {
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
    fn disorder(&self) -> Vec<(u64, u64)> {
        self.delivered.windows(2).filter(|w| w[1].0 <= w[0].0).map(|w| (w[0].0, w[1].0)).collect()
    }

    fn delivered_set(&self) -> BTreeSet<u64> {
        self.delivered.iter().map(|&(s, _)| s).collect()
    }

    fn delivered_at(&self, seq: u64) -> Option<Duration> {
        self.delivered.iter().find(|d| d.0 == seq).map(|d| d.1)
    }

    /// Delivered *and* answered `undeliverable`.
    fn both(&self) -> Vec<u64> {
        let d = self.delivered_set();
        let mut both: Vec<u64> = self.undeliverable.keys().copied().filter(|id| d.contains(id)).collect();
        both.sort_unstable();
        both
    }

    /// Neither delivered nor answered with any error.
    fn missing(&self) -> Vec<u64> {
        let d = self.delivered_set();
        (0..self.sent.len() as u64)
            .filter(|s| !d.contains(s) && !self.undeliverable.contains_key(s) && !self.refused.contains_key(s))
            .collect()
    }

    /// The longest silence between two deliveries: (length, previous delivery, next delivery).
    fn longest_gap(&self) -> (Duration, Duration, Duration) {
        self.delivered.windows(2).map(|w| (w[1].1.saturating_sub(w[0].1), w[0].1, w[1].1)).max().unwrap_or_default()
    }

    /// The slowest `undeliverable` answer, from send to error.
    fn slowest_error(&self) -> Duration {
        self.undeliverable.iter().map(|(&id, &at)| at.saturating_sub(self.sent[id as usize])).max().unwrap_or_default()
    }

    /// When the first `undeliverable` came back.
    fn first_error(&self) -> Option<Duration> {
        self.undeliverable.values().min().copied()
    }

    /// `(seq, how long it took)` of deliveries later than `late` after their send.
    fn late(&self, late: Duration) -> Vec<(u64, Duration)> {
        self.delivered
            .iter()
            .filter_map(|&(s, at)| {
                let took = at.saturating_sub(self.sent[s as usize]);
                (took > late).then_some((s, took))
            })
            .collect()
    }

    fn sent_between(&self, from: Duration, to: Duration) -> Vec<u64> {
        (0..self.sent.len() as u64).filter(|&s| (from..to).contains(&self.sent[s as usize])).collect()
    }

    fn report(&self) {
        let (gap, from, to) = self.longest_gap();
        let mut errs: Vec<u64> = self.undeliverable.keys().copied().collect();
        errs.sort_unstable();
        let mut refused: Vec<String> = self.refused.iter().map(|(id, (code, _))| format!("{id}:{code}")).collect();
        refused.sort();
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
    fn check_accounted(&self, problems: &mut Vec<String>) {
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
    fn check_not_both(&self, problems: &mut Vec<String>) {
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
    fn check_not_late(&self, problems: &mut Vec<String>) {
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
    fn check_no_other_errors(&self, problems: &mut Vec<String>) {
        if !self.refused.is_empty() {
            let mut r: Vec<String> =
                self.refused.iter().map(|(id, (code, at))| format!("{id}:{code}@{}", secs(*at))).collect();
            r.sort();
            problems.push(format!("{}: answered with errors other than undeliverable: {r:?}", self.name));
        }
    }

    /// Neither side saw a peer come or go.
    fn check_no_membership_change(&self, problems: &mut Vec<String>) {
        if !self.membership.is_empty() {
            problems.push(format!("{}: membership changed: {:?}", self.name, self.membership));
        }
    }

    /// [`check_accounted`](Self::check_accounted), and: delivered *or* answered `undeliverable`
    /// (never both, no other error), never late, no membership churn.
    fn check_exact(&self, problems: &mut Vec<String>) {
        self.check_accounted(problems);
        self.check_not_both(problems);
        self.check_not_late(problems);
        self.check_no_other_errors(problems);
        self.check_no_membership_change(problems);
    }

    /// Every message delivered promptly, none bounced or refused, and deliveries never paused
    /// for `max_gap`: a relay that never stopped.
    fn check_never_paused(&self, max_gap: Duration, problems: &mut Vec<String>) {
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
    fn check_all_delivered(&self, max_gap: Duration, problems: &mut Vec<String>) {
        self.check_never_paused(max_gap, problems);
        self.check_no_membership_change(problems);
    }

    /// Every message sent in `[from, to)` was delivered; returns how many there were.
    fn check_delivered_between(&self, from: Duration, to: Duration, problems: &mut Vec<String>) -> usize {
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
    fn check_undeliverable_between(&self, from: Duration, to: Duration, problems: &mut Vec<String>) -> usize {
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
fn ranges(seqs: &[u64]) -> String {
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

fn assert_no_problems(problems: &[String]) {
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Two peers streaming at each other.
struct Pair {
    name: &'static str,
    tasks: [JoinHandle<(V1Peer, PeerLog)>; 2],
}

impl Pair {
    /// `a` and `b` have joined `room` and see each other.
    fn start(name: &'static str, (a, b): (V1Peer, V1Peer), room: &str, t0: Instant, stop: &Arc<AtomicBool>) -> Pair {
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        let tasks =
            [spawn_stream(a, room, &b_id, t0, Arc::clone(stop)), spawn_stream(b, room, &a_id, t0, Arc::clone(stop))];
        Pair { name, tasks }
    }

    /// Waits for both tasks (after `stop`) and returns the two directions.
    async fn finish(self) -> [Flow; 2] {
        let [ta, tb] = self.tasks;
        let (_a, la) = ta.await.expect("stream task");
        let (_b, lb) = tb.await.expect("stream task");
        [Flow::new(&format!("{} a→b", self.name), &la, &lb), Flow::new(&format!("{} b→a", self.name), &lb, &la)]
    }
}

/// Two peers in `room`, on `url_a` and `url_b`, each seeing the other.
async fn pair(url_a: &str, url_b: &str, room: &str) -> (V1Peer, V1Peer) {
    let mut a = V1Peer::connect(url_a).await;
    let mut b = V1Peer::connect(url_b).await;
    a.join(room).await;
    let joined = b.join(room).await;
    assert_eq!(joined["peers"][0]["peer_id"], json!(a.id), "{joined}");
    assert_eq!(a.ws.expect("peer-joined").await["peer"]["peer_id"], json!(b.id));
    (a, b)
}

/// Waits until every node's `/readyz` is 200 (`ready`) or 503 (`!ready`).
fn wait_all(nodes: &[Node], ready: bool, within: Duration) {
    for n in nodes {
        wait_ready(n, ready, within);
    }
}

/// Samples `/readyz` of every node until `until` (since `t0`); returns the number of samples
/// and those that were not 503.
fn sample_unready(nodes: &[Node], t0: Instant, until: Duration) -> (usize, Vec<String>) {
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
struct Streams {
    t0: Instant,
    stop: Arc<AtomicBool>,
    same: Pair,
    cross: Pair,
}

impl Streams {
    async fn start(c: &Cluster) -> Streams {
        let (n0, n1) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
        let s = pair(&n0, &n0, "same-node").await;
        let x = pair(&n0, &n1, "cross-node").await;
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let same = Pair::start("S (n0, n0)", s, "same-node", t0, &stop);
        let cross = Pair::start("X (n0, n1)", x, "cross-node", t0, &stop);
        Streams { t0, stop, same, cross }
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Stops sending, drains, and returns (same-node flows, cross-node flows), printed.
    async fn finish(self) -> ([Flow; 2], [Flow; 2]) {
        self.stop.store(true, Ordering::SeqCst);
        let same = self.same.finish().await;
        let cross = self.cross.finish().await;
        for f in same.iter().chain(&cross) {
            f.report();
        }
        (same, cross)
    }
}

/// The headline: Redis is killed (SIGKILL) under live traffic and comes back empty 2 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_survive_a_redis_crash_and_restart() {
    let mut c = Cluster::start(2, UNLIMITED);
    let streams = Streams::start(&c).await;
    std::thread::sleep(Duration::from_millis(500));

    let killed = streams.now();
    c.redis.kill();
    wait_all(&c.nodes, false, Duration::from_secs(3));
    let unready = streams.now();
    let (samples, ready_while_down) = sample_unready(&c.nodes, streams.t0, killed + Duration::from_secs(2));
    let restarted = streams.now();
    c.redis.restart();
    let restarted_up = streams.now();
    wait_all(&c.nodes, true, Duration::from_secs(15));
    let recovered = streams.now();
    std::thread::sleep(Duration::from_secs(1));
    let stopped = streams.now();
    println!(
        "redis killed {}, both nodes 503 {}, restarted {} (answering {}), both nodes 200 {}, streams stopped {}",
        secs(killed),
        secs(unready),
        secs(restarted),
        secs(restarted_up),
        secs(recovered),
        secs(stopped)
    );
    println!("/readyz while down: {samples} samples, {} not 503", ready_while_down.len());
    let (same, cross) = streams.finish().await;

    let mut problems = Vec::new();
    // (d) readiness: 503 on both nodes for the whole outage (and 200 after: wait_all above).
    if !ready_while_down.is_empty() {
        problems.push(format!("/readyz not 503 while Redis was down: {ready_while_down:?}"));
    }
    // (a) the same-node pair never noticed.
    for f in &same {
        f.check_all_delivered(Duration::from_secs(1), &mut problems);
    }
    for f in &cross {
        // (b) once, in order, or answered undeliverable with its id; never both, never neither.
        f.check_exact(&mut problems);
        if f.check_undeliverable_between(unready, restarted, &mut problems) == 0 {
            problems.push(format!("{}: nothing was sent during the outage", f.name));
        }
        if f.slowest_error() >= Duration::from_secs(1) {
            problems.push(format!("{}: an undeliverable took {} ms", f.name, f.slowest_error().as_millis()));
        }
        // (c) the relay resumed: everything sent once both nodes were ready again arrived.
        let after = f.check_delivered_between(recovered, stopped, &mut problems);
        if after < 50 {
            problems.push(format!("{}: only {after} messages sent after recovery", f.name));
        }
    }
    assert_no_problems(&problems);
}

/// A peer that joins while Redis is down is admitted on its node, and seen across the cluster
/// once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_during_an_outage_is_admitted_and_seen_after_recovery() {
    let mut c = Cluster::start(2, &[]);
    let mut a = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    a.join("outage-join").await;

    c.redis.kill();
    wait_all(&c.nodes, false, Duration::from_secs(3));
    let mut b = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    let joined = b.join("outage-join").await;
    println!("joined during the outage: {joined}");
    // Nobody on node 0 can hear of it yet.
    a.ws.expect_silence(Duration::from_millis(300)).await;

    c.redis.restart();
    wait_all(&c.nodes, true, Duration::from_secs(15));
    let pj = a.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"]["peer_id"], json!(b.id), "{pj}");
    if joined["peers"] == json!([]) {
        let pj = b.ws.expect("peer-joined").await;
        assert_eq!(pj["peer"]["peer_id"], json!(a.id), "{pj}");
    }

    a.ws.send_json(json!({"type": "signal", "room": "outage-join", "to": b.id, "data": {"hello": "b"}, "id": 1})).await;
    let s = b.ws.expect("signal").await;
    assert_eq!((s["from"].clone(), s["data"].clone()), (json!(a.id), json!({"hello": "b"})), "{s}");
    b.ws.send_json(json!({"type": "signal", "room": "outage-join", "to": a.id, "data": {"hello": "a"}, "id": 2})).await;
    let s = a.ws.expect("signal").await;
    assert_eq!((s["from"].clone(), s["data"].clone()), (json!(b.id), json!({"hello": "a"})), "{s}");
    // One peer-joined each and nothing more, even after the rooms reconcile (a lease after the
    // subscription came back).
    a.ws.expect_silence(Duration::from_millis(2 * LEASE_MS)).await;
    b.ws.expect_silence(Duration::from_millis(300)).await;
}

/// A node of its own pointed at `127.0.0.1:port`, where Redis may not listen (yet).
fn lonely_node(port: u16, id: &str) -> Node {
    let url = format!("redis://127.0.0.1:{port}");
    Node::start(&node_binary(), &["--redis-url", &url, "--node-lease-ms", &LEASE_MS.to_string(), "--node-id", id])
}

/// `/readyz` tells the truth: not ready, with `bus: false`, while no Redis listens at the
/// configured address; ready once one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_redis_is_not_ready_until_redis_appears() {
    let port = free_port();
    let node = lonely_node(port, "n0");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let (status, body) = node.get("/readyz");
        let parsed: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz body {body}: {e}"));
        assert_eq!((status, &parsed["bus"], &parsed["ready"]), (503, &json!(false), &json!(false)), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let _redis = RedisServer::start_on(port);
    let took = wait_ready(&node, true, Duration::from_secs(10));
    println!("ready {} ms after redis-server answered", took.as_millis());
    let (status, body) = node.get("/readyz");
    let parsed: Value = serde_json::from_str(&body).expect("/readyz body");
    assert_eq!((status, &parsed["bus"], &parsed["ready"]), (200, &json!(true), &json!(true)), "{body}");
}

/// Members admitted while their node had not reached Redis yet (the node started first) are
/// written to the cluster once it does: a peer joining the room on another node sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_admitted_before_redis_first_came_up_become_visible() {
    let port = free_port();
    let early = lonely_node(port, "n0");
    let mut a = V1Peer::connect(&early.ws_url("/v1/ws")).await;
    let joined = a.join("early").await;
    assert_eq!(joined["peers"], json!([]));

    let redis = RedisServer::start_on(port);
    wait_ready(&early, true, Duration::from_secs(10));
    let late = lonely_node(port, "n1");
    wait_ready(&late, true, Duration::from_secs(10));
    // Give the early node every chance (more than a lease) to write its member.
    std::thread::sleep(Duration::from_millis(2 * LEASE_MS));
    let record = redis.command(&["HGETALL", "sb:{switchboard}:room:early"]);
    println!("room record in Redis: {record:?}");

    let mut b = V1Peer::connect(&late.ws_url("/v1/ws")).await;
    let joined = b.join("early").await;
    assert_eq!(
        joined["peers"][0]["peer_id"],
        json!(a.id),
        "the member admitted before Redis came up is invisible to the other node: {joined}; room record {record:?}"
    );
    let pj = a.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"]["peer_id"], json!(b.id));
    b.signal("early", &a.id, json!({"hello": "a"})).await;
    assert_eq!(a.ws.expect("signal").await["data"], json!({"hello": "a"}));
}

fn signal_redis(redis: &RedisServer, sig: i32) {
    let pid = redis.pid().expect("redis-server runs") as i32;
    // SAFETY: kill(2) on the redis-server child this test started.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Connections waiting in the accept queue of the listener on `127.0.0.1:port` (a frozen
/// Redis accepts none, so each connect attempt of a node adds one).
fn accept_queue(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1] == local && f[3] == "0A")
        .and_then(|f| f[4].split_once(':').and_then(|(_, rx)| usize::from_str_radix(rx, 16).ok()))
        .unwrap_or_else(|| panic!("no listener on 127.0.0.1:{port}"))
}

/// When the frozen Redis is let go again.
enum Thaw {
    /// This long after both nodes turned unready.
    AfterUnready(Duration),
    /// Once both nodes have been unready for a while, this long after a node's next attempt to
    /// reconnect (its connection lands in the frozen Redis's accept queue); less than the 1 s
    /// the attempt waits for an answer, so the attempt succeeds.
    IntoReconnect(Duration),
}

/// What a freeze scenario saw; times are since the streams started.
struct Freeze {
    frozen: Duration,
    unready: Duration,
    attempt: Option<Duration>,
    thawed: Duration,
    recovered: Duration,
    stopped: Duration,
    ready_while_down: Vec<String>,
    same: [Flow; 2],
    cross: [Flow; 2],
}

/// Streams as in the headline, SIGSTOPs Redis (its connections stay open, nothing answers),
/// SIGCONTs it as `thaw` says, streams 1.5 s more after both nodes are ready.
async fn freeze(thaw: Thaw) -> Freeze {
    let c = Cluster::start(2, UNLIMITED);
    let streams = Streams::start(&c).await;
    std::thread::sleep(Duration::from_millis(500));

    let frozen = streams.now();
    signal_redis(&c.redis, libc::SIGSTOP);
    wait_all(&c.nodes, false, Duration::from_secs(5));
    let unready = streams.now();
    let mut attempt = None;
    let ready_while_down = match thaw {
        Thaw::AfterUnready(d) => sample_unready(&c.nodes, streams.t0, unready + d).1,
        Thaw::IntoReconnect(d) => {
            // Let the first reconnect attempts run out, then catch a fresh one.
            let (_, mut wrong) = sample_unready(&c.nodes, streams.t0, unready + Duration::from_millis(1500));
            let queued = accept_queue(c.redis.port);
            let deadline = Instant::now() + Duration::from_secs(5);
            while accept_queue(c.redis.port) <= queued {
                assert!(Instant::now() < deadline, "no node tried to reconnect to the frozen Redis within 5 s");
                std::thread::sleep(Duration::from_millis(2));
            }
            attempt = Some(streams.now());
            wrong.extend(sample_unready(&c.nodes, streams.t0, streams.now() + d).1);
            wrong
        }
    };
    let thawed = streams.now();
    signal_redis(&c.redis, libc::SIGCONT);
    wait_all(&c.nodes, true, Duration::from_secs(15));
    let recovered = streams.now();
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = streams.now();
    println!(
        "redis stopped {}, both nodes 503 {} ({} ms later), reconnect attempt seen {:?}, continued {}, both nodes \
         200 {}, streams stopped {}; /readyz not 503 while frozen: {}",
        secs(frozen),
        secs(unready),
        (unready - frozen).as_millis(),
        attempt.map(secs),
        secs(thawed),
        secs(recovered),
        secs(stopped),
        ready_while_down.len()
    );
    let (same, cross) = streams.finish().await;
    Freeze { frozen, unready, attempt, thawed, recovered, stopped, ready_while_down, same, cross }
}

/// A Redis that stops answering without closing its connections (SIGSTOP): `/readyz` turns 503
/// within a few seconds, cross-node relays are answered (not met with silence) within a bounded
/// time, same-node relays carry on, and after SIGCONT the cluster recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_is_detected_and_survived() {
    let f = freeze(Thaw::AfterUnready(Duration::from_secs(2))).await;
    let mut problems = Vec::new();
    if f.unready - f.frozen >= Duration::from_secs(5) {
        problems.push(format!("/readyz took {} ms to turn 503", (f.unready - f.frozen).as_millis()));
    }
    if !f.ready_while_down.is_empty() {
        problems.push(format!("/readyz not 503 while Redis was frozen: {:?}", f.ready_while_down));
    }
    for flow in &f.same {
        flow.check_all_delivered(Duration::from_secs(1), &mut problems);
    }
    for flow in &f.cross {
        // Every message delivered once in order or answered; the `exact` accounting is the next
        // test's.
        flow.check_accounted(&mut problems);
        let bounced =
            flow.sent_between(f.unready, f.thawed).iter().filter(|s| flow.undeliverable.contains_key(s)).count();
        if bounced == 0 {
            problems.push(format!("{}: nothing sent during the freeze was answered undeliverable", flow.name));
        }
        if flow.slowest_error() >= Duration::from_secs(3) {
            problems.push(format!("{}: an undeliverable took {} ms", flow.name, flow.slowest_error().as_millis()));
        }
        let after = flow.check_delivered_between(f.recovered, f.stopped, &mut problems);
        if after < 50 {
            problems.push(format!("{}: only {after} messages sent after recovery", flow.name));
        }
    }
    assert_no_problems(&problems);
}

/// The design's promise under a frozen Redis: a relay is delivered exactly once, promptly, or
/// answered `undeliverable` — never answered `undeliverable` and then delivered after all when
/// Redis wakes up (the client would have retried or given up by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_never_delivers_a_relay_that_was_answered_undeliverable() {
    let f = freeze(Thaw::AfterUnready(Duration::from_secs(2))).await;
    let mut problems = Vec::new();
    for flow in &f.cross {
        flow.check_accounted(&mut problems);
        flow.check_not_both(&mut problems);
    }
    assert_no_problems(&problems);
}

/// While a node's writer is reconnecting to a frozen Redis, relays reaching it must fail at once
/// like every other relay during the outage, not wait for the attempt and go out (late) if it
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_are_not_held_while_a_node_reconnects() {
    let f = freeze(Thaw::IntoReconnect(Duration::from_millis(600))).await;
    let attempt = f.attempt.expect("a reconnect attempt was seen");
    let mut problems = Vec::new();
    for flow in &f.cross {
        // Sent once the first relays in flight at the freeze had timed out (so never written to
        // the frozen connection) and before the thaw: Redis could not carry any of them.
        let from = flow.first_error().unwrap_or(f.unready).max(f.unready);
        let n = flow.check_undeliverable_between(from, f.thawed, &mut problems);
        println!(
            "{}: {n} sent between {} and the thaw at {} (reconnect attempt at {})",
            flow.name,
            secs(from),
            secs(f.thawed),
            secs(attempt)
        );
    }
    assert_no_problems(&problems);
}

/// A join while Redis is frozen is admitted at once (the bus fails it at once, as it does every
/// operation while Redis is away), and the room's same-node relays never pause for it. The join
/// is made just as the node starts an attempt to reconnect (the attempt waits up to 1 s for the
/// frozen Redis), so an operation queued behind that attempt would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_while_redis_is_frozen_is_admitted_at_once_and_never_stalls_its_room() {
    let c = Cluster::start(1, UNLIMITED);
    let url = c.nodes[0].ws_url("/v1/ws");
    let s = pair(&url, &url, "same-node").await;
    let mut newcomer = V1Peer::connect(&url).await;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let same = Pair::start("S (n0, n0)", s, "same-node", t0, &stop);
    std::thread::sleep(Duration::from_millis(500));

    let frozen = t0.elapsed();
    signal_redis(&c.redis, libc::SIGSTOP);
    wait_all(&c.nodes, false, Duration::from_secs(5));
    // Let the first reconnect attempts run out, then catch a fresh one (only this node tries).
    std::thread::sleep(Duration::from_millis(1500));
    let queued = accept_queue(c.redis.port);
    let deadline = Instant::now() + Duration::from_secs(5);
    while accept_queue(c.redis.port) <= queued {
        assert!(Instant::now() < deadline, "the node did not try to reconnect to the frozen Redis within 5 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let attempt = t0.elapsed();
    newcomer.ws.send_json(json!({"type": "join", "room": "same-node", "id": 1})).await;
    let joined = newcomer.ws.expect("joined").await;
    let join_took = t0.elapsed() - attempt;
    std::thread::sleep(Duration::from_millis(500));
    let thawed = t0.elapsed();
    signal_redis(&c.redis, libc::SIGCONT);
    wait_all(&c.nodes, true, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let flows = same.finish().await;
    println!(
        "redis stopped {}, reconnect attempt seen {}, join answered {} ms later ({}), continued {}",
        secs(frozen),
        secs(attempt),
        join_took.as_millis(),
        joined,
        secs(thawed)
    );
    let mut problems = Vec::new();
    if join_took >= Duration::from_millis(500) {
        problems.push(format!("the join took {} ms to be answered while Redis was frozen", join_took.as_millis()));
    }
    for f in &flows {
        f.report();
        f.check_never_paused(Duration::from_millis(500), &mut problems);
    }
    assert_no_problems(&problems);
}
