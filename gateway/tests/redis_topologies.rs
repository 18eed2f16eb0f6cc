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
