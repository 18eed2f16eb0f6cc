//! A cluster whose Redis freezes (SIGSTOP): it keeps accepting TCP connections into its queue
//! and answers nothing. Nodes must turn unready, answer cross-node relays `undeliverable` at
//! once (never hold them, never deliver one late), keep same-node calls going, and recover.
//! A frozen Redis still completes TCP handshakes into its accept queue, which is how the tests
//! see a node start an attempt to reconnect (see [`accept_queue`]).

mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_tests::{RedisServer, V1Peer};

use cluster::Cluster;
use cluster::flow::*;

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
        // Relays in flight at the freeze are settled once the nodes hear each other again.
        let slowest = flow.slowest_error_after((f.frozen, f.recovered));
        if slowest >= ANSWER_BOUND {
            problems.push(format!("{}: an undeliverable took {} ms", flow.name, slowest.as_millis()));
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
