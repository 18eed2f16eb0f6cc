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

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Node, RedisServer, V1Peer, free_port, node_binary};

use cluster::flow::*;
use cluster::{Cluster, LEASE_MS};

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
        // What was in flight when Redis died may have reached the other node: its link learns
        // which once the nodes hear each other again, and answers the rest then.
        let slowest = f.slowest_error_after((killed, recovered));
        if slowest >= ANSWER_BOUND {
            problems.push(format!("{}: an undeliverable took {} ms", f.name, slowest.as_millis()));
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
    let took = node.wait_ready(true, Duration::from_secs(10));
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
    early.wait_ready(true, Duration::from_secs(10));
    let late = lonely_node(port, "n1");
    late.wait_ready(true, Duration::from_secs(10));
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

/// A peer that leaves while Redis is down cannot tell the other node (its `Left` never goes
/// out). Once Redis is back, the rooms reconcile with the cluster's records: the other node's
/// peers see it leave, and no ghost stays behind to send to. A peer that stayed is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_during_an_outage_reaches_the_other_node_after_recovery() {
    let mut c = Cluster::start(2, &[]);
    let mut a = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    let mut b = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    let mut d = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    a.join("ghost").await;
    b.join("ghost").await;
    a.ws.expect("peer-joined").await;
    d.join("ghost").await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;

    c.redis.kill();
    wait_all(&c.nodes, false, Duration::from_secs(3));
    b.ws.send_json(json!({"type": "leave", "room": "ghost"})).await;
    b.ws.expect("left").await;
    // d is on b's node: it hears at once. a is on the other node: not while Redis is down.
    let left = d.ws.expect("peer-left").await;
    assert_eq!(left["peer_id"], json!(b.id));
    a.ws.expect_silence(Duration::from_millis(300)).await;

    c.redis.restart();
    wait_all(&c.nodes, true, Duration::from_secs(5));
    let started = Instant::now();
    let left = a.ws.expect("peer-left").await;
    assert_eq!(left["peer_id"], json!(b.id), "{left}");
    println!("the missed leave reached the other node {:?} after recovery", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(3 * LEASE_MS), "reconciliation took {:?}", started.elapsed());
    // No ghost: b is unknown now; d, who stayed, still is reachable, and nothing else arrives.
    a.signal("ghost", &b.id, json!({"hi": 1})).await;
    a.ws.expect_error("unknown-peer").await;
    a.signal("ghost", &d.id, json!({"hi": 2})).await;
    assert_eq!(d.ws.expect("signal").await["data"], json!({"hi": 2}));
    a.ws.expect_silence(Duration::from_millis(LEASE_MS + 500)).await;
}
