//! Operator actions and heartbeats in a real two-node cluster with its own `redis-server`.
//!
//! The gateway asks nodes to act by publishing on the cluster's control channel; these tests
//! publish exactly what it publishes (`kick <peer> <room>`, `close <room>`) with a plain Redis
//! client, so they prove the nodes' side on its own:
//! - a kick removes exactly that peer: it gets `left` with reason `kicked` and keeps its socket
//!   (and its other rooms), the peer on the other node gets `peer-left` `kicked`, Redis no
//!   longer lists it, and peers of other rooms hear nothing;
//! - a close removes every member of that room on both nodes (`left` `room-closed`, the seed
//!   dialect's `quit` with the reason), Redis drops the room, other rooms are untouched;
//! - each node's heartbeat (`node-info`) is in Redis with sane fields and a TTL of two leases,
//!   and is gone as soon as the node is stopped with SIGTERM.

mod cluster;

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::{Client, V1Peer};

use cluster::members::*;
use cluster::{Cluster, LEASE_MS};

/// Long enough for a stray frame to arrive on loopback.
const SILENCE: Duration = Duration::from_millis(400);

fn control(c: &Cluster, message: &str) {
    let reply = c.redis.command(&["PUBLISH", &key("switchboard", "control"), message]).expect("redis reachable");
    // Both nodes subscribe to the control channel.
    assert_eq!(reply.trim(), ":2", "PUBLISH {message:?} reached {reply:?}");
}

fn room_members(c: &Cluster, room: &str) -> Vec<String> {
    hgetall(&c.redis, &key("switchboard", &format!("room:{room}"))).into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kick_removes_exactly_that_peer_on_every_node() {
    let c = Cluster::start(2, &[]);
    let url = |i: usize| c.nodes[i].ws_url("/v1/ws");
    let mut a = V1Peer::connect(&url(0)).await;
    let mut b = V1Peer::connect(&url(1)).await;
    let mut side = V1Peer::connect(&url(0)).await;
    let mut far = V1Peer::connect(&url(1)).await;
    a.join("ops").await;
    b.join("ops").await;
    expect_peers_joined(&mut a, "ops", &[&b.id]).await;
    side.join("side").await;
    far.join("side").await;
    a.join("side").await;
    expect_peers_joined(&mut side, "side", &[&far.id, &a.id]).await;
    expect_peers_joined(&mut far, "side", &[&a.id]).await;
    assert_eq!(room_members(&c, "ops").len(), 2);

    control(&c, &format!("kick {} ops", a.id));
    let left = a.ws.recv().await;
    assert_eq!(left, json!({"type": "left", "room": "ops", "reason": "kicked"}));
    expect_peer_left(&mut b, "ops", &a.id, "kicked").await;
    eventually(Duration::from_secs(2), "the kicked member's record is gone", || {
        room_members(&c, "ops") == vec![b.id.clone()]
    });
    side.ws.expect_silence(SILENCE).await;
    far.ws.expect_silence(SILENCE).await;

    // The kicked peer's socket and its other room are intact; the room it left is closed to it.
    signal_arrives(&mut a, &mut side, "side", offer()).await;
    signal_arrives(&mut far, &mut a, "side", answer()).await;
    a.signal("ops", &b.id, offer()).await;
    a.ws.expect_error("not-joined").await;
    // It may come back (a kick is not a ban: tokens decide who may join).
    a.join("ops").await;
    expect_peers_joined(&mut b, "ops", &[&a.id]).await;

    // A kick names its room: the same peer in another room, or an unknown peer, is left alone.
    control(&c, &format!("kick {} elsewhere", b.id));
    control(&c, "kick 0000000000001 ops");
    for p in [&mut a, &mut b, &mut side, &mut far] {
        p.ws.expect_silence(SILENCE).await;
    }
    assert_eq!(room_members(&c, "ops").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_close_removes_every_member_of_that_room_on_both_nodes() {
    let c = Cluster::start(2, &[]);
    let url = |i: usize| c.nodes[i].ws_url("/v1/ws");
    let mut p0 = V1Peer::connect(&url(0)).await;
    let mut q0 = V1Peer::connect(&url(0)).await;
    let mut p1 = V1Peer::connect(&url(1)).await;
    let mut e0 = V1Peer::connect(&url(0)).await;
    let mut e1 = V1Peer::connect(&url(1)).await;
    for p in [&mut p0, &mut q0, &mut p1] {
        p.join("town").await;
    }
    expect_peers_joined(&mut p0, "town", &[&q0.id, &p1.id]).await;
    expect_peers_joined(&mut q0, "town", &[&p1.id]).await;
    e0.join("village").await;
    e1.join("village").await;
    expect_peers_joined(&mut e0, "village", &[&e1.id]).await;
    // A seed channel with a member on each node.
    let mut s0 = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    let mut s1 = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    s0.send_json(json!({"type": "join", "body": {"channelName": "hall x", "userId": "sam"}})).await;
    s0.expect("joined").await;
    s1.send_json(json!({"type": "join", "body": {"channelName": "hall x", "userId": "sue"}})).await;
    s1.expect("joined").await;

    control(&c, "close town");
    // Each member gets its own `left`; one may first hear of another's departure.
    for p in [&mut p0, &mut q0, &mut p1] {
        let left = expect_left(p).await;
        assert_eq!(left, json!({"type": "left", "room": "town", "reason": "room-closed"}), "{}", p.id);
        p.ws.expect_silence(SILENCE).await;
    }
    eventually(Duration::from_secs(2), "the closed room is gone from Redis", || room_members(&c, "town").is_empty());
    e0.ws.expect_silence(SILENCE).await;
    e1.ws.expect_silence(SILENCE).await;
    signal_arrives(&mut e1, &mut e0, "village", offer()).await;
    // The closed room's peers are still connected.
    p1.ws.send_json(json!({"type": "ping", "id": 1})).await;
    assert_eq!(p1.ws.recv().await, json!({"type": "pong", "id": 1}));

    control(&c, "close seed/hall x");
    for (s, user) in [(&mut s0, "sam"), (&mut s1, "sue")] {
        let own = loop {
            let m = s.expect("quit").await;
            if m["body"]["userId"] == user {
                break m;
            }
        };
        assert_eq!(own["body"], json!({"channelName": "hall x", "userId": user, "reason": "room-closed"}));
    }
    eventually(Duration::from_secs(2), "the closed channel is gone from Redis", || {
        room_members(&c, "seed/hall x").is_empty()
    });
}

/// The next `left` of `p`, skipping `peer-left`s of the room's other members.
async fn expect_left(p: &mut V1Peer) -> Value {
    loop {
        let m = p.ws.recv().await;
        match m["type"].as_str() {
            Some("left") => return m,
            Some("peer-left") => assert_eq!(m["reason"], "room-closed", "{m}"),
            _ => panic!("{}: expected left, got {m}", p.id),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_describe_each_node_and_vanish_on_sigterm() {
    let mut c = Cluster::start(2, &["--advertise-url", "wss://signal.example.com"]);
    let info = |c: &Cluster, node: &str| -> Option<Value> {
        get(&c.redis, &key("switchboard", &format!("node-info:{node}")))
            .map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("node-info {s}: {e}")))
    };
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut p = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
        p.join("beat").await;
        peers.push(p);
    }
    // Renewed every third of a lease: the counts show up within one.
    eventually(Duration::from_millis(2 * LEASE_MS), "n1's heartbeat counts its sessions", || {
        info(&c, "n1").is_some_and(|i| i["sessions"] == 3 && i["rooms"] == 1)
    });
    let (n0, n1) = (info(&c, "n0").expect("n0 heartbeat"), info(&c, "n1").expect("n1 heartbeat"));
    for (i, id) in [(&n0, "n0"), (&n1, "n1")] {
        assert_eq!(i["id"], id, "{i}");
        assert!(i["epoch"].as_u64().is_some_and(|e| e > 0), "{i}");
        assert_eq!(i["url"], "wss://signal.example.com", "{i}");
        assert_eq!(i["version"], env!("CARGO_PKG_VERSION"), "{i}");
        assert_eq!(i["draining"], false, "{i}");
        let (started, beat) = (i["started_at"].as_u64().expect("started_at"), i["heartbeat_at"].as_u64().expect("at"));
        assert!(started > 1_600_000_000_000 && started <= beat, "unix milliseconds, started before the beat: {i}");
        let ttl = pttl(&c.redis, &key("switchboard", &format!("node-info:{id}")));
        assert!(ttl > 0 && ttl <= 2 * LEASE_MS as i64, "TTL two leases: {ttl}");
    }
    assert_eq!(n0["sessions"], 0, "{n0}");
    assert_ne!(n0["epoch"], n1["epoch"], "each lease has its own epoch");

    c.nodes[1].terminate();
    c.nodes[1].wait_exit(Duration::from_secs(15)).expect("n1 exits after SIGTERM");
    assert_eq!(info(&c, "n1"), None, "n1's heartbeat is deleted by its goodbye, not left to expire");
    assert!(info(&c, "n0").is_some());
}
