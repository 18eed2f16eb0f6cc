//! A client that ignores `reconnect` while its node drains (keeps its socket, never closes,
//! never resumes): every signal its partners send it from then on is kept for a resume that
//! never comes — by its session until it parks, then by its rooms. None of them may vanish: each
//! is delivered once, in order, or its sender is answered `undeliverable` with its id.
//!
//! Two nodes and a real `redis-server`. A (the stubborn client) is on n0, B on n1, C on n0; all
//! three in one room. B (a remote sender) and C (a local sender, which follows the protocol:
//! it closes on `reconnect` and resumes on n1) stream numbered signals to A every 5 ms; n0 gets
//! SIGTERM. Three ways the kept signals are given up, one test each:
//!
//! - the node exits while A is still parked (its grace outlives the drain),
//! - A's grace runs out while the node still drains,
//! - the node exits before A's session has even parked (the drain is shorter than the wait
//!   for the client's close).
//!
//! For each sender the test accounts for every id: delivered to A once and in order, or
//! answered with an error carrying that id (`undeliverable`; `unknown-peer` once A is gone from
//! the room) — never both, never neither, never two answers.

mod cluster;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchboard_tests::{Client, Frame, ResumingPeer, StreamPlan, V1Peer};
use tokio::task::JoinHandle;

use cluster::Cluster;
use cluster::flow::{self, ANSWER_BOUND, SEND_EVERY, UNLIMITED, ranges, secs};

const ROOM: &str = "stubborn";

/// What A, which ignores `reconnect`, saw: signals by sender, in arrival order, and the rest.
#[derive(Default)]
struct Stubborn {
    signals: BTreeMap<String, Vec<u64>>,
    other: Vec<(Duration, String)>,
}

/// Reads A's socket until the server closes it; sends nothing, never closes on its own.
fn stubborn(mut ws: Client, t0: Instant) -> JoinHandle<Stubborn> {
    tokio::spawn(async move {
        let mut log = Stubborn::default();
        loop {
            match ws.next_within(Duration::from_secs(60)).await {
                Some(Frame::Json(v)) if v["type"] == "signal" && v["data"]["seq"].is_u64() => {
                    let from = v["from"].as_str().unwrap_or_default().to_string();
                    log.signals.entry(from).or_default().push(v["data"]["seq"].as_u64().unwrap_or_default());
                }
                Some(Frame::Json(v)) => log.other.push((t0.elapsed(), v.to_string())),
                Some(other) => {
                    log.other.push((t0.elapsed(), format!("{other:?}")));
                    break;
                }
                None => {
                    log.other.push((t0.elapsed(), "a minute of silence".into()));
                    break;
                }
            }
        }
        log
    })
}

/// One sender's signals to A: what became of each id.
struct Account {
    name: &'static str,
    sent: u64,
    /// Seqs A got, in arrival order.
    delivered: Vec<u64>,
    /// Every error answered with an id, with its code.
    answers: Vec<(u64, String)>,
}

impl Account {
    /// Checks every id has exactly one outcome; returns how many were answered `undeliverable`.
    fn check(&self, problems: &mut Vec<String>) -> usize {
        let name = self.name;
        let disorder: Vec<(u64, u64)> =
            self.delivered.windows(2).filter(|w| w[1] <= w[0]).map(|w| (w[0], w[1])).collect();
        if !disorder.is_empty() {
            problems.push(format!("{name}: delivered out of order or twice (previous, next): {disorder:?}"));
        }
        let mut outcomes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for &s in &self.delivered {
            outcomes.entry(s).or_default().push("delivered".into());
        }
        for (id, code) in &self.answers {
            outcomes.entry(*id).or_default().push(code.clone());
        }
        let silent: Vec<u64> = (0..self.sent).filter(|s| !outcomes.contains_key(s)).collect();
        let several: Vec<String> =
            outcomes.iter().filter(|(_, o)| o.len() > 1).map(|(s, o)| format!("{s}: {o:?}")).collect();
        let unknown: Vec<u64> = outcomes.keys().copied().filter(|&s| s >= self.sent).collect();
        let by = |code: &str| -> Vec<u64> {
            let mut v: Vec<u64> = self.answers.iter().filter(|(_, c)| c == code).map(|(s, _)| *s).collect();
            v.sort_unstable();
            v
        };
        let (undeliverable, unknown_peer) = (by("undeliverable"), by("unknown-peer"));
        let others: Vec<&(u64, String)> =
            self.answers.iter().filter(|(_, c)| c != "undeliverable" && c != "unknown-peer").collect();
        let mut delivered = self.delivered.clone();
        delivered.sort_unstable();
        println!(
            "{name}: sent {}, delivered {} [{}], undeliverable {} [{}], unknown-peer {} [{}], other errors {others:?}, \
             silent {} [{}], more than one outcome {}",
            self.sent,
            delivered.len(),
            ranges(&delivered),
            undeliverable.len(),
            ranges(&undeliverable),
            unknown_peer.len(),
            ranges(&unknown_peer),
            silent.len(),
            ranges(&silent),
            several.len(),
        );
        if !silent.is_empty() {
            problems.push(format!("{name}: {} neither delivered nor answered: {}", silent.len(), ranges(&silent)));
        }
        if !several.is_empty() {
            problems.push(format!(
                "{name}: {} with more than one outcome: {:?}",
                several.len(),
                &several[..several.len().min(10)]
            ));
        }
        if !unknown.is_empty() {
            problems.push(format!("{name}: outcomes for ids never sent: {unknown:?}"));
        }
        if !others.is_empty() {
            problems.push(format!("{name}: unexpected errors: {others:?}"));
        }
        undeliverable.len()
    }
}

/// Waits (off the runtime's workers) until `node` exits; panics after `within`.
async fn wait_exit(node: &mut switchboard_tests::Node, within: Duration) {
    tokio::task::block_in_place(|| node.wait_exit(within))
        .unwrap_or_else(|| panic!("node still runs after {within:?}"));
}

/// A on n0 ignores `reconnect`; B on n1 and C on n0 stream to it; n0 drains with `args`. C
/// streams `c_count` signals (it must be done before the answers are counted: its log records
/// nothing once stopped).
async fn scenario(args: &[&str], c_count: u64) {
    let mut all: Vec<&str> = UNLIMITED.to_vec();
    all.extend_from_slice(args);
    let mut c = Cluster::start(2, &all);
    let (n0, n1) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let mut a = V1Peer::connect(&n0).await;
    let mut b = V1Peer::connect(&n1).await;
    let mut cp = ResumingPeer::connect(&n0).await.resume_via(std::slice::from_ref(&n1));
    a.join(ROOM).await;
    b.join(ROOM).await;
    a.ws.expect("peer-joined").await;
    cp.join(ROOM).await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;
    let (a_id, b_id, c_id) = (a.id.clone(), b.id.clone(), cp.id.clone());

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let a_task = stubborn(a.ws, t0);
    let b_task = flow::spawn_stream(b, ROOM, &a_id, t0, Arc::clone(&stop));
    let plan = StreamPlan { room: ROOM.into(), to: a_id.clone(), count: c_count, every: SEND_EVERY, offerer: true };
    let c_stream = cp.stream(plan);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let term = t0.elapsed();
    c.nodes[0].terminate();
    wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
    let exited = t0.elapsed();
    // C's last signals go out, then what was in flight to n0 as it went is answered by the links.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c_stream.sent() < c_count as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(ANSWER_BOUND + Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    c_stream.stop();
    let (_b, b_log) = b_task.await.expect("B's stream");
    let (c_log, _c) = c_stream.finish().await;
    let a_log = tokio::time::timeout(Duration::from_secs(5), a_task)
        .await
        .expect("A's socket still open after its node exited")
        .expect("A's task");

    println!("SIGTERM to n0 at {}, n0 exited at {}", secs(term), secs(exited));
    println!("A saw besides signals: {:?}", a_log.other);
    println!("B saw: membership {:?}, unexpected {:?}", b_log.membership, b_log.unexpected);
    println!(
        "C: nodes {:?}, resumes {:?}, membership {:?}, problems {:?}",
        c_log.nodes,
        c_log.resumes.iter().map(|r| (r.from_node.clone(), r.to_node.clone(), r.gap)).collect::<Vec<_>>(),
        c_log.membership.iter().map(|(_, m)| m.to_string()).collect::<Vec<_>>(),
        c_log.problems
    );
    let mut problems = Vec::new();
    let got = |id: &str| a_log.signals.get(id).cloned().unwrap_or_default();
    let mut b_answers: Vec<(u64, String)> =
        b_log.undeliverable.iter().map(|(id, _)| (*id, "undeliverable".to_string())).collect();
    b_answers.extend(b_log.refused.iter().map(|(id, code, _)| (*id, code.clone())));
    let remote =
        Account { name: "B (n1) → A", sent: b_log.sent.len() as u64, delivered: got(&b_id), answers: b_answers };
    let c_answers: Vec<(u64, String)> = c_log
        .errors
        .iter()
        .filter_map(|e| Some((e["id"].as_u64()?, e["code"].as_str().unwrap_or_default().to_string())))
        .collect();
    let local = Account {
        name: "C (n0, resumed on n1) → A",
        sent: c_log.sent.len() as u64,
        delivered: got(&c_id),
        answers: c_answers,
    };
    for account in [&remote, &local] {
        if account.check(&mut problems) == 0 {
            problems.push(format!("{}: nothing was answered undeliverable: the scenario did not happen", account.name));
        }
    }
    let stray: Vec<&serde_json::Value> = c_log.errors.iter().filter(|e| !e["id"].is_u64()).collect();
    if !stray.is_empty() {
        problems.push(format!("C got errors without an id: {stray:?}"));
    }
    if !b_log.unexpected.is_empty() {
        problems.push(format!("B got unexpected frames: {:?}", b_log.unexpected));
    }
    for p in &c_log.problems {
        problems.push(format!("C: {p}"));
    }
    if c_log.resumes.len() != 1 || c_log.resumes[0].gap.is_none() {
        problems.push(format!("C did not resume once: {:?}", c_log.resumes));
    }
    flow::assert_no_problems(&problems);
}

/// The drain ends while A is parked (its grace outlives the drain's deadline): the node answers
/// what A's rooms and session kept before it leaves the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_kept_for_a_parked_client_are_answered_when_the_node_exits() {
    // Drain deadline 4 s; A parks 3 s after `reconnect`, its grace (4 s + 3 s) outlives the node.
    scenario(&["--shutdown-timeout-secs", "6"], 1300).await;
}

/// A's grace runs out while the node still drains: its rooms answer what they kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_kept_for_a_parked_client_are_answered_when_its_grace_runs_out() {
    // Drain deadline 8 s; A parks 3 s after `reconnect` and is dropped 3.5 s later.
    scenario(&["--shutdown-timeout-secs", "10", "--resume-grace-ms", "500"], 1800).await;
}

/// The node exits before A's session parks (the drain's deadline, 1.5 s, comes before the 3 s
/// wait for the client's close): what the session kept is answered as it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_kept_by_a_session_that_never_parks_are_answered() {
    scenario(&["--shutdown-timeout-secs", "3"], 900).await;
}
