//! The gateway reaches the cluster's Redis however the nodes do (issue 15): over TLS with a test
//! CA, and through Sentinel, following a failover by itself (it reconnects through the
//! sentinels after an operation fails for want of Redis).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use switchboard_tests::{Node, RedisServer, SentinelSet, TestCa, node_binary};

fn listed_nodes(gw: &Node) -> Option<Vec<String>> {
    let (_, auth) = bearer(API_KEY);
    let r = get(gw, "/v1/nodes", &[("authorization", &auth)]);
    if r.status != 200 {
        return None;
    }
    let list: Value = r.json();
    Some(list["nodes"].as_array()?.iter().filter_map(|n| n["id"].as_str().map(String::from)).collect())
}

/// Waits until `gw` is ready and lists exactly `ids`; how long that took.
fn lists_within(gw: &Node, ids: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if gw.get("/readyz").0 == 200 && listed_nodes(gw).is_some_and(|l| l == ids) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "gateway not ready listing {ids:?} within {within:?}: {:?}",
            listed_nodes(gw)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_gateway_reads_a_tls_redis_with_the_ca_file() {
    let ca = TestCa::generate("gateway");
    let redis = RedisServer::start_tls(&ca, false);
    let ca_file = ca.ca_cert.to_str().expect("utf-8 path");
    let node =
        Node::start(&node_binary(), &["--redis-url", &redis.url(), "--redis-tls-ca-file", ca_file, "--node-id", "n0"]);
    node.wait_ready(true, Duration::from_secs(10));
    let gw = production_like_gateway(&redis.url(), &["--redis-tls-ca-file", ca_file]);
    lists_within(&gw, &["n0"], Duration::from_secs(10));
    // Without the CA it cannot verify the server, and is not ready.
    let blind = production_like_gateway(&redis.url(), &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(blind.get("/readyz").0, 503);
}

#[test]
fn a_gateway_follows_a_sentinel_failover() {
    let (mut set, _replica) = SentinelSet::start();
    let url = set.url();
    let node = Node::start(&node_binary(), &["--redis-url", &url, "--node-id", "n0", "--node-lease-ms", "1500"]);
    node.wait_ready(true, Duration::from_secs(10));
    let gw = production_like_gateway(&url, &[]);
    lists_within(&gw, &["n0"], Duration::from_secs(10));
    set.master.kill();
    let killed = Instant::now();
    // Unready while there is no master, then ready on the promoted replica with the node there.
    let deadline = killed + Duration::from_secs(10);
    while gw.get("/readyz").0 == 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    let back = lists_within(&gw, &["n0"], Duration::from_secs(15));
    println!("gateway ready and listing the node again {} ms after the master's kill", killed.elapsed().as_millis());
    assert!(back < Duration::from_secs(15));
}

/// On a Redis Cluster (three masters, three replicas) the gateway reads and acts on every
/// bucket of the key space, each on the master holding it: 24 rooms spread over all three
/// masters are listed page by page, each once; a room's members are read from its bucket; a
/// kick and a close reach the node holding the members (sharded control channels); and the
/// webhooks of every room, recorded in six buckets' streams, are delivered in order per room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_webhooks_span_every_shard_of_a_redis_cluster() {
    use std::collections::BTreeSet;

    use switchboard_tests::webhooks::{TWO_MEMBERS, delivered, start_receiver, wait_for};
    use switchboard_tests::{RedisCluster, V1Peer, free_port};

    const HOOK_SECRET: &str = "cluster-webhook-secret-0123456789abcdef";
    let rc = RedisCluster::start();
    let url = rc.url();
    let node =
        |id: &str| Node::start(&node_binary(), &["--redis-url", &url, "--node-id", id, "--node-lease-ms", "1500"]);
    let (n1, n2) = (node("n1"), node("n2"));
    for n in [&n1, &n2] {
        n.wait_ready(true, Duration::from_secs(15));
    }
    let port = free_port();
    let receiver = start_receiver(port, HOOK_SECRET);
    let hook = format!("http://127.0.0.1:{port}/hook");
    let gw = production_like_gateway(&url, &["--webhook-urls", &hook, "--webhook-secret", HOOK_SECRET]);
    lists_within(&gw, &["n1", "n2"], Duration::from_secs(15));
    // The nodes record events once the gateway's marker is in every bucket.
    wait_for("the webhook marker in all 6 buckets", Duration::from_secs(10), || {
        rc.masters().iter().map(|m| m.keys("sb:*:webhooks").len()).sum::<usize>() == 6
    });

    let rooms: Vec<String> = (0..24).map(|i| format!("room-{i}")).collect();
    let mut pairs = Vec::new();
    for room in &rooms {
        let mut a = V1Peer::connect(&n1.ws_url("/v1/ws")).await;
        let mut b = V1Peer::connect(&n2.ws_url("/v1/ws")).await;
        a.join(room).await;
        b.join(room).await;
        a.ws.expect("peer-joined").await;
        pairs.push((a, b));
    }
    let held: Vec<usize> = rc.masters().iter().map(|m| m.keys("sb:*:room:*").len()).collect();
    println!("room keys per master: {held:?}");
    assert!(held.len() == 3 && held.iter().all(|n| *n > 0), "rooms not on every master: {held:?}");

    let auth = format!("Bearer {API_KEY}");
    let admin = |method: &str, path: &str| call(method, &gw.http_url(path), &[("Authorization", &auth)], None);
    // A page is SCAN's (its size a hint, as on one Redis), bucket after bucket.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = admin("GET", &format!("/v1/rooms?limit=5&cursor={cursor}"));
        assert_eq!(page.status, 200, "{}", page.body);
        let page: Value = page.json();
        let listed = page["rooms"].as_array().expect("rooms");
        seen.extend(listed.iter().map(|r| (r["room"].as_str().unwrap_or("").to_string(), r["members"].as_u64())));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    seen.sort();
    let expected: Vec<(String, Option<u64>)> = {
        let mut e: Vec<_> = rooms.iter().map(|r| (r.clone(), Some(2))).collect();
        e.sort();
        e
    };
    assert_eq!(seen, expected, "every room listed once, with its two members");

    let detail: Value = admin("GET", "/v1/rooms/room-3").json();
    let members: BTreeSet<(String, String)> = detail["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["peer_id"].as_str().unwrap_or("").into(), m["node"].as_str().unwrap_or("").into()))
        .collect();
    let (a3, b3) = (&pairs[3].0.id, &pairs[3].1.id);
    assert_eq!(members, BTreeSet::from([(a3.clone(), "n1".into()), (b3.clone(), "n2".into())]));

    let kicked = admin("DELETE", &format!("/v1/rooms/room-5/members/{}", pairs[5].1.id));
    assert_eq!(kicked.status, 200, "{}", kicked.body);
    let left = pairs[5].0.ws.expect("peer-left").await;
    assert_eq!(left["reason"], "kicked", "{left}");
    let closed = admin("DELETE", "/v1/rooms/room-7");
    assert_eq!(closed.status, 200, "{}", closed.body);
    admin("GET", "/v1/rooms/room-7").assert_error(404, "not-found");

    // Every other room: the second member leaves, the first one's socket closes.
    let mut watched = Vec::new();
    for (i, (mut a, mut b)) in pairs.into_iter().enumerate() {
        if i == 5 || i == 7 {
            continue;
        }
        b.ws.send_json(serde_json::json!({"type": "leave", "room": rooms[i]})).await;
        b.ws.expect("left").await;
        a.ws.expect("peer-left").await;
        watched.push((rooms[i].clone(), [a.id.clone(), b.id.clone()]));
        a.ws.close().await;
    }
    wait_for("every room's six events", Duration::from_secs(20), || {
        watched.iter().all(|(room, ids)| {
            delivered(&receiver, room, &[ids[0].as_str(), ids[1].as_str()]).len() >= TWO_MEMBERS.len()
        })
    });
    for (room, ids) in &watched {
        assert_eq!(delivered(&receiver, room, &[ids[0].as_str(), ids[1].as_str()]), TWO_MEMBERS, "{room}");
    }
}
