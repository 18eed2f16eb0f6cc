//! Webhooks from a cluster (issue 16): two nodes record their rooms' events in Redis, two
//! gateways deliver them to the harness's receiver (a real HTTP server checking every
//! signature). A node is killed (-9) with members in a room, and the gateway delivering is
//! killed (-9) while a request of its is in flight: every event still arrives, in order per
//! room, a repeat only ever with the same id and body.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use std::sync::Arc;

use switchboard_tests::webhooks::{ONE_MEMBER, Receiver, TWO_MEMBERS, delivered, start_receiver, wait_for};
use switchboard_tests::{Node, Proxy, RedisServer, V1Peer, free_port, http_get, node_binary};

const HOOK_SECRET: &str = "cluster-webhook-secret-0123456789abcdef";
const LEADER: &str = "sb:{switchboard}:webhooks:leader";
const MARKER: &str = "sb:{switchboard}:webhooks";

/// The value of a Redis string (raw RESP in, text out).
fn get(redis: &RedisServer, key: &str) -> Option<String> {
    let reply = redis.command(&["GET", key])?;
    // `$-1`: no such key.
    reply.strip_prefix('$').filter(|r| !r.starts_with('-')).and_then(|r| r.split("\r\n").nth(1)).map(str::to_string)
}

/// A receiver and two gateways delivering to it, by pid, once one of them delivers and the
/// nodes record events (a gateway says it delivers them).
fn hooked(redis: &RedisServer) -> (Arc<Receiver>, BTreeMap<u32, Node>) {
    let port = free_port();
    let r = start_receiver(port, HOOK_SECRET);
    let hook = format!("http://127.0.0.1:{port}/hook");
    let flags = ["--webhook-urls", &hook, "--webhook-secret", HOOK_SECRET];
    let gateways: BTreeMap<u32, Node> =
        (0..2).map(|_| production_like_gateway(&redis.url(), &flags)).map(|g| (g.pid(), g)).collect();
    wait_for("a delivering gateway", Duration::from_secs(10), || {
        leader(redis, gateways.keys().copied()).is_some()
            && redis.command(&["EXISTS", MARKER]).is_some_and(|r| r.starts_with(":1"))
    });
    (r, gateways)
}

/// The pid of the gateway holding the lease, if it is one of `pids`.
fn leader(redis: &RedisServer, mut pids: impl Iterator<Item = u32>) -> Option<u32> {
    let lease = get(redis, LEADER)?;
    pids.find(|p| lease.contains(&format!("-{p}-")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_events_survive_a_killed_node_and_a_killed_gateway() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node =
        |id: &str| Node::start(&node_binary(), &["--redis-url", &url, "--node-id", id, "--node-lease-ms", "1500"]);
    let (n1, n2) = (node("n1"), node("n2"));
    for n in [&n1, &n2] {
        n.wait_ready(true, Duration::from_secs(15));
    }
    let (r, mut gateways) = hooked(&redis);
    let ws = |n: &Node| n.ws_url("/v1/ws");

    // calm: a member on each node; one leaves, the other's socket closes.
    let mut a = V1Peer::connect(&ws(&n1)).await;
    let mut b = V1Peer::connect(&ws(&n2)).await;
    a.join("calm").await;
    b.join("calm").await;
    a.ws.expect("peer-joined").await;
    b.ws.send_json(serde_json::json!({"type": "leave", "room": "calm"})).await;
    b.ws.expect("left").await;
    a.ws.expect("peer-left").await;
    let calm = [a.id.clone(), b.id.clone()];
    a.ws.close().await;

    // crash: n2 is killed with a member in the room; n1 reaps it once its lease runs out.
    let mut c = V1Peer::connect(&ws(&n1)).await;
    let mut d = V1Peer::connect(&ws(&n2)).await;
    c.join("crash").await;
    d.join("crash").await;
    c.ws.expect("peer-joined").await;
    let crash = [c.id.clone(), d.id.clone()];
    drop(n2);
    let left = c.ws.expect("peer-left").await;
    assert_eq!(left["reason"], "node-lost", "{left}");
    c.ws.send_json(serde_json::json!({"type": "leave", "room": "crash"})).await;
    c.ws.expect("left").await;

    // slow: the receiver holds the first attempt of each event 6 s; the delivering gateway is
    // killed while it waits. The other takes the lease over and delivers what was pending.
    let calm_ids: Vec<&str> = calm.iter().map(String::as_str).collect();
    let crash_ids: Vec<&str> = crash.iter().map(String::as_str).collect();
    wait_for("calm and crash delivered", Duration::from_secs(20), || {
        delivered(&r, "calm", &calm_ids).len() == 6 && delivered(&r, "crash", &crash_ids).len() == 6
    });
    let before = r.arrived();
    let mut e = V1Peer::connect(&ws(&n1)).await;
    e.join("slow").await;
    wait_for("slow's first attempt", Duration::from_secs(10), || r.arrived() > before);
    let pid = leader(&redis, gateways.keys().copied()).expect("a gateway delivers");
    drop(gateways.remove(&pid));
    e.ws.send_json(serde_json::json!({"type": "leave", "room": "slow"})).await;
    e.ws.expect("left").await;
    let slow = [e.id.as_str()];
    wait_for("slow delivered by the other gateway", Duration::from_secs(40), || {
        delivered(&r, "slow", &slow).len() == 4
    });

    assert_eq!(delivered(&r, "calm", &calm_ids), TWO_MEMBERS);
    let want_crash = [
        "room.started - -",
        "peer.joined p0 -",
        "peer.joined p1 -",
        "peer.left p1 node-lost",
        "peer.left p0 left",
        "room.finished - -",
    ];
    assert_eq!(delivered(&r, "crash", &crash_ids), want_crash);
    assert_eq!(delivered(&r, "slow", &slow), ONE_MEMBER);

    // Every request signed; a repeat carries the same id and body; the node is named.
    let got = r.got.lock().unwrap().clone();
    let mut bodies: BTreeMap<String, String> = BTreeMap::new();
    for g in &got {
        assert_eq!(g.signed, Ok(()), "{}", g.body);
        let id = g.event["id"].as_str().expect("id").to_string();
        assert!(id.starts_with("evt_") && id.len() == 36, "{id}");
        let first = bodies.entry(id.clone()).or_insert_with(|| g.body.clone());
        assert_eq!(*first, g.body, "a repeat of {id} changed its body");
        assert_eq!(g.event["cluster"], "switchboard");
        if let Some(peer) = g.event.get("peer") {
            assert!(peer["user"].is_null(), "{}", g.body);
            assert!(peer["node"] == "n1" || peer["node"] == "n2", "{}", g.body);
        }
    }
    let d_joined = got.iter().find(|g| g.event["type"] == "peer.joined" && g.event["peer"]["id"] == d.id.as_str());
    assert_eq!(d_joined.map(|g| g.event["peer"]["node"].clone()), Some("n2".into()), "d joined on n2");
    let repeats = got.iter().filter(|g| g.event["room"] == "slow" && g.event["type"] == "room.started").count();
    assert!(repeats >= 2, "slow's first event was sent again by the gateway that took over");

    // The survivor took the pending events over; its counters and failures say so.
    let (_, survivor) = gateways.pop_first().expect("a survivor");
    let (_, metrics) = http_get(&survivor.addr, "/metrics", &[]);
    let value =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(-1.0);
    assert!(value("switchboard_webhooks_delivered_total ") >= 4.0, "{metrics}");
    assert_eq!(value("switchboard_webhooks_failed_total "), 0.0, "{metrics}");
    let auth = format!("Bearer {API_KEY}");
    let (status, body) = http_get(&survivor.addr, "/v1/webhooks/failures", &[("authorization", &auth)]);
    assert_eq!((status, body.contains("\"failures\":[]")), (200, true), "{body}");
    // Delivered events leave the stream.
    wait_for("the stream trimmed", Duration::from_secs(10), || {
        redis
            .command(&["XLEN", "sb:{switchboard}:events"])
            .and_then(|r| r.trim().strip_prefix(':')?.parse::<u64>().ok())
            .is_some_and(|n| n < 16)
    });
}

/// A gateway stopped on purpose (SIGTERM, a rollout) gives the lease up as it goes, instead of
/// leaving the cluster's webhooks stalled until it lapses, and what it had in flight and could
/// not settle meanwhile is delivered by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_hands_the_delivery_over() {
    let redis = RedisServer::start();
    let url = redis.url();
    let n1 = Node::start(&node_binary(), &["--redis-url", &url, "--node-id", "n1"]);
    n1.wait_ready(true, Duration::from_secs(15));
    let (r, mut gateways) = hooked(&redis);

    // The receiver holds slow's first attempts (6 s, past the gateway's 5 s bound): the leader
    // is stopped with room.started in flight.
    let before = r.arrived();
    let mut p = V1Peer::connect(&n1.ws_url("/v1/ws")).await;
    p.join("slow").await;
    wait_for("slow's first attempt", Duration::from_secs(10), || r.arrived() > before);
    let pid = leader(&redis, gateways.keys().copied()).expect("a gateway delivers");
    let mut stopping = gateways.remove(&pid).expect("the leader");
    stopping.terminate();
    assert!(stopping.wait_exit(Duration::from_secs(15)).is_some(), "the gateway did not exit");
    // Given up on its way out, not left to lapse (5 s).
    assert!(
        get(&redis, LEADER).is_none_or(|now| !now.contains(&format!("-{pid}-"))),
        "the stopped gateway still holds the lease"
    );
    p.ws.send_json(serde_json::json!({"type": "leave", "room": "slow"})).await;
    p.ws.expect("left").await;
    let who = [p.id.as_str()];
    wait_for("slow delivered by the other gateway", Duration::from_secs(40), || delivered(&r, "slow", &who).len() == 4);
    assert_eq!(delivered(&r, "slow", &who), ONE_MEMBER);
    assert_eq!(leader(&redis, gateways.keys().copied()), gateways.keys().next().copied(), "the survivor delivers");
}

/// The delivering gateway frozen (SIGSTOP) past its lease: the other takes over; thawed, the
/// old one finds it lost the lease and takes nothing more (every read and claim checks the
/// lease), and each room's events still arrive complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_gateway_comes_back_without_disturbing_the_one_that_replaced_it() {
    let redis = RedisServer::start();
    let url = redis.url();
    let n1 = Node::start(&node_binary(), &["--redis-url", &url, "--node-id", "n1"]);
    n1.wait_ready(true, Duration::from_secs(15));
    let (r, gateways) = hooked(&redis);
    let frozen = leader(&redis, gateways.keys().copied()).expect("a gateway delivers");
    let other = gateways.keys().copied().find(|p| *p != frozen).expect("two gateways");
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP", frozen);
    let ws = n1.ws_url("/v1/ws");
    let mut a = V1Peer::connect(&ws).await;
    a.join("winter").await;
    wait_for("the other gateway delivering", Duration::from_secs(15), || {
        leader(&redis, gateways.keys().copied()) == Some(other)
    });
    signal("-CONT", frozen);
    let mut b = V1Peer::connect(&ws).await;
    b.join("winter").await;
    a.ws.expect("peer-joined").await;
    b.ws.send_json(serde_json::json!({"type": "leave", "room": "winter"})).await;
    b.ws.expect("left").await;
    a.ws.send_json(serde_json::json!({"type": "leave", "room": "winter"})).await;
    a.ws.expect("left").await;
    let who = [a.id.as_str(), b.id.as_str()];
    wait_for("winter delivered", Duration::from_secs(20), || delivered(&r, "winter", &who).len() == 6);
    let want = [&TWO_MEMBERS[..4], &["peer.left p0 left", "room.finished - -"]].concat();
    assert_eq!(delivered(&r, "winter", &who), want);
    assert_eq!(leader(&redis, gateways.keys().copied()), Some(other), "the thawed one took back nothing");
}

/// A node cut off from Redis long enough to lose its connection registers again: its records
/// are cleared and written back, and the webhooks hear nothing of it — only the member that
/// left while it was cut off is reported, `left`, once the node has written back the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reconnecting_to_redis_reports_only_who_really_left() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&format!("127.0.0.1:{}", redis.port));
    let via_proxy = format!("redis://127.0.0.1:{}", proxy.port());
    let n1 = Node::start(&node_binary(), &["--redis-url", &via_proxy, "--node-id", "n1"]);
    n1.wait_ready(true, Duration::from_secs(15));
    let (r, _gateways) = hooked(&redis);
    let ws = n1.ws_url("/v1/ws");
    let (mut a, mut b, mut c) = (V1Peer::connect(&ws).await, V1Peer::connect(&ws).await, V1Peer::connect(&ws).await);
    a.join("steady").await;
    b.join("steady").await;
    c.join("gone").await;
    let steady = [a.id.as_str(), b.id.as_str()];
    let gone = [c.id.as_str()];
    wait_for("the joins delivered", Duration::from_secs(10), || {
        delivered(&r, "steady", &steady).len() == 3 && delivered(&r, "gone", &gone).len() == 2
    });
    let epoch = get(&redis, "sb:{switchboard}:lease:n1");

    // Cut off: the node notices (unready); c leaves meanwhile (its leave cannot be written).
    proxy.stall();
    n1.wait_ready(false, Duration::from_secs(15));
    c.ws.send_json(serde_json::json!({"type": "leave", "room": "gone"})).await;
    c.ws.expect("left").await;
    proxy.heal();
    n1.wait_ready(true, Duration::from_secs(15));
    assert_ne!(get(&redis, "sb:{switchboard}:lease:n1"), epoch, "the node registered again");

    wait_for("c's departure reported", Duration::from_secs(30), || delivered(&r, "gone", &gone).len() == 4);
    assert_eq!(delivered(&r, "gone", &gone), ONE_MEMBER);
    let want = &TWO_MEMBERS[..3];
    assert_eq!(delivered(&r, "steady", &steady), want, "a and b never left");
    drop((a, b));
}
