//! Cluster membership through real node processes and a `redis-server` of the test's own:
//! simultaneous joins on three nodes, and two clusters sharing one Redis (namespaces, TTLs).
//! Redis is inspected directly (raw RESP) to check what the cluster leaves behind: the key
//! layout is the one documented in `node/src/bus/redis/keys.rs`.

mod cluster;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_tests::{Frame, RedisServer, V1Peer};

use cluster::Cluster;
use cluster::members::*;

const ROUNDS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_joins_on_three_nodes_always_see_each_other() {
    // Each connection sends two messages a round: the per-connection message rate is not what
    // this test is about.
    let c = Cluster::start(3, &["--messages-per-sec", "0"]);
    let mut peers = Vec::new();
    for n in &c.nodes {
        peers.push(V1Peer::connect(&n.ws_url("/v1/ws")).await);
    }
    let ids: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
    let [p0, p1, p2] = &mut peers[..] else { unreachable!() };
    // How often each node's peer was the first to be recorded: the race is real only if
    // this varies.
    let mut first = [0usize; 3];
    let started = Instant::now();
    for round in 0..ROUNDS {
        let room = format!("sim-{round}");
        let join = json!({"type": "join", "room": room});
        tokio::join!(p0.ws.send_json(join.clone()), p1.ws.send_json(join.clone()), p2.ws.send_json(join.clone()));
        let (s0, s1, s2) =
            tokio::join!(see_join(p0, &room, &ids), see_join(p1, &room, &ids), see_join(p2, &room, &ids));
        // Joins are recorded one after the other atomically: the k-th recorded joiner lists the
        // k-1 before it in `joined` and hears of the later ones by `peer-joined`. So for every
        // pair, exactly one learned of the other from its `joined`.
        let listed = [s0.0.len(), s1.0.len(), s2.0.len()];
        let mut sorted = listed;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [0, 1, 2],
            "round {round}: joined lists {:?}, peer-joined {:?}",
            [&s0.0, &s1.0, &s2.0],
            [&s0.1, &s1.1, &s2.1]
        );
        first[listed.iter().position(|&n| n == 0).expect("a first joiner")] += 1;

        let leave = json!({"type": "leave", "room": room});
        tokio::join!(p0.ws.send_json(leave.clone()), p1.ws.send_json(leave.clone()), p2.ws.send_json(leave.clone()));
        tokio::join!(p0.ws.expect("left"), p1.ws.expect("left"), p2.ws.expect("left"));
    }
    println!(
        "{ROUNDS} rounds of three simultaneous joins in {:?}; first recorded per node: {first:?}",
        started.elapsed()
    );

    // Every room is gone from Redis once the leaves are through.
    eventually(Duration::from_secs(5), "no room or room index left in Redis", || {
        c.redis.keys("sb:{switchboard}:room:*").is_empty() && c.redis.keys("sb:{switchboard}:node-rooms:*").is_empty()
    });
    // And nothing but the last round's departures arrives afterwards.
    for p in [p0, p1, p2] {
        while let Some(f) = p.ws.next_within(QUIET).await {
            let Frame::Json(m) = &f else { panic!("{}: {f:?}", p.id) };
            assert_eq!((m["type"].as_str(), m["room"].as_str()), (Some("peer-left"), Some("sim-199")), "{m}");
        }
    }
}

/// What a peer's join came to: `joined`, or the `error` code (events before it are skipped).
async fn join_outcome(p: &mut V1Peer) -> Result<(), String> {
    loop {
        let m = p.ws.recv().await;
        match m["type"].as_str() {
            Some("joined") => return Ok(()),
            Some("error") => return Err(m["code"].as_str().unwrap_or_default().to_string()),
            _ => {}
        }
    }
}

/// `--max-peers-per-room` holds for the room across the cluster: three peers on three nodes
/// racing into a room of two never make three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_s_capacity_holds_across_nodes_under_racing_joins() {
    let c = Cluster::start(3, &["--messages-per-sec", "0", "--max-peers-per-room", "2"]);
    let mut peers = Vec::new();
    for n in &c.nodes {
        peers.push(V1Peer::connect(&n.ws_url("/v1/ws")).await);
    }
    let [p0, p1, p2] = &mut peers[..] else { unreachable!() };
    let mut refused_per_node = [0usize; 3];
    for round in 0..20 {
        let room = format!("cap-{round}");
        let join = json!({"type": "join", "room": room});
        tokio::join!(p0.ws.send_json(join.clone()), p1.ws.send_json(join.clone()), p2.ws.send_json(join.clone()));
        let outcomes = tokio::join!(join_outcome(p0), join_outcome(p1), join_outcome(p2));
        let outcomes = [outcomes.0, outcomes.1, outcomes.2];
        let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(admitted, 2, "round {round}: {outcomes:?}");
        let refused = outcomes.iter().position(|o| o.is_err()).expect("one refused");
        assert_eq!(outcomes[refused], Err("room-full".to_string()), "round {round}");
        refused_per_node[refused] += 1;
        let leave = json!({"type": "leave", "room": room});
        for (i, p) in [&mut *p0, &mut *p1, &mut *p2].into_iter().enumerate() {
            if i != refused {
                p.ws.send_json(leave.clone()).await;
            }
        }
        for p in [&mut *p0, &mut *p1, &mut *p2] {
            while p.ws.next_within(Duration::from_millis(150)).await.is_some() {}
        }
    }
    println!("refused per node over 20 rounds: {refused_per_node:?}");
    eventually(Duration::from_secs(5), "no room left in Redis", || c.redis.keys("sb:{switchboard}:room:*").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. A node killed with SIGKILL
// ---------------------------------------------------------------------------------------------

/// Asserts every key in `r` but the epoch counters has a TTL (a key that expired between the
/// listing and the check is fine); returns the keys seen.
fn assert_all_keys_expire(r: &RedisServer, clusters: &[&str]) -> Vec<String> {
    let keys = r.keys("*");
    let counters: Vec<String> = clusters.iter().map(|c| key(c, "epoch")).collect();
    for k in &keys {
        assert!(clusters.iter().any(|c| k.starts_with(&key(c, ""))), "a key outside the clusters' namespaces: {k}");
        if counters.contains(k) {
            continue;
        }
        let ttl = pttl(r, k);
        assert!(ttl > 0 || ttl == -2, "{k} has no TTL (PTTL {ttl})");
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clusters_on_one_redis_never_mix_and_every_key_expires() {
    let redis = RedisServer::start();
    // The same node ids in both clusters: only the cluster name keeps them apart.
    let mut nodes = vec![
        start_named(&redis, "alpha", "n0"),
        start_named(&redis, "alpha", "n1"),
        start_named(&redis, "beta", "n0"),
        start_named(&redis, "beta", "n1"),
    ];
    let url = |i: usize| nodes[i].ws_url("/v1/ws");
    let mut a0 = V1Peer::connect(&url(0)).await;
    let mut a1 = V1Peer::connect(&url(1)).await;
    let mut b0 = V1Peer::connect(&url(2)).await;
    let mut b1 = V1Peer::connect(&url(3)).await;

    // Interleaved joins of the same room name.
    assert_eq!(a0.join("shared").await["peers"], json!([]));
    assert_eq!(b0.join("shared").await["peers"], json!([]), "beta's first joiner sees alpha's member");
    assert_eq!(a1.join("shared").await["peers"], json!([{"peer_id": a0.id}]));
    assert_eq!(b1.join("shared").await["peers"], json!([{"peer_id": b0.id}]));
    expect_peers_joined(&mut a0, "shared", &[&a1.id]).await;
    expect_peers_joined(&mut b0, "shared", &[&b1.id]).await;

    // A call in each cluster; relays stay inside their cluster.
    signal_arrives(&mut a0, &mut a1, "shared", offer()).await;
    signal_arrives(&mut b1, &mut b0, "shared", offer()).await;
    signal_arrives(&mut a1, &mut a0, "shared", answer()).await;
    signal_arrives(&mut b0, &mut b1, "shared", answer()).await;
    a0.signal("shared", &b0.id, candidate(1)).await;
    a0.ws.expect_error("unknown-peer").await;
    b1.signal("shared", &a1.id, candidate(1)).await;
    b1.ws.expect_error("unknown-peer").await;
    a0.ws.send_json(json!({"type": "broadcast", "room": "shared", "data": "alpha"})).await;
    b0.ws.send_json(json!({"type": "broadcast", "room": "shared", "data": "beta"})).await;
    assert_eq!(a1.ws.expect("broadcast").await["data"], "alpha");
    assert_eq!(b1.ws.expect("broadcast").await["data"], "beta");
    for p in [&mut a0, &mut a1, &mut b0, &mut b1] {
        p.ws.expect_silence(QUIET).await;
    }

    // Redis holds each cluster's own records.
    for (c, mine, theirs) in [("alpha", [&a0, &a1], [&b0, &b1]), ("beta", [&b0, &b1], [&a0, &a1])] {
        let members = hgetall(&redis, &key(c, "room:shared"));
        let ids: BTreeSet<&str> = members.keys().map(String::as_str).collect();
        assert_eq!(ids, BTreeSet::from([mine[0].id.as_str(), mine[1].id.as_str()]), "{c}: {members:?}");
        assert!(theirs.iter().all(|p| !members.contains_key(&p.id)));
        for k in ["epoch", "nodes", "lease:n0", "lease:n1", "node-rooms:n0", "node-rooms:n1"] {
            assert!(exists(&redis, &key(c, k)), "{c}: {k} missing");
        }
    }

    // While the calls are up, every key but the two epoch counters expires.
    let keys = assert_all_keys_expire(&redis, &["alpha", "beta"]);
    println!("with calls up: {} keys, all expiring but the epoch counters: {keys:?}", keys.len());

    // Every node crashes: nothing is left behind forever.
    for n in &nodes {
        signal_process(n, libc::SIGKILL);
    }
    for n in &mut nodes {
        assert!(n.wait_exit(Duration::from_secs(5)).is_some(), "a node survived SIGKILL");
    }
    let keys = assert_all_keys_expire(&redis, &["alpha", "beta"]);
    assert!(keys.contains(&key("alpha", "room:shared")) && keys.contains(&key("beta", "room:shared")), "{keys:?}");
    println!("after SIGKILL of every node: {} keys, all expiring but the epoch counters", keys.len());
}

// ---------------------------------------------------------------------------------------------
// 5. The seed protocol across nodes
// ---------------------------------------------------------------------------------------------
