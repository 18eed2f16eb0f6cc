//! Redis over TLS (issue 15): a TLS-only `redis-server` with a test CA (openssl); nodes on
//! `rediss://` with `--redis-tls-ca-file` become ready, relay across, and read the cluster's
//! state over TLS (the admin API); mutual TLS with a client certificate; and each usual mistake
//! (plain URL to a TLS port, missing CA, missing client certificate) leaves the node unready
//! with a log line that says what to fix.

mod cluster;

use std::time::Duration;

use cluster::members::{answer, call_across, signal_arrives};
use serde_json::Value;
use switchboard_tests::{Node, RedisServer, TestCa, http_get, node_binary};

const API_KEY: &str = "tls-test-admin-key-0123456789abcdef";

fn node(id: &str, url: &str, tls: &[&str]) -> Node {
    let mut args = vec!["--redis-url", url, "--node-id", id, "--node-lease-ms", "1500", "--api-keys", API_KEY];
    args.extend_from_slice(tls);
    Node::start_logged(&node_binary(), &args)
}

/// Two nodes on `redis`, ready; a call across them; the admin API lists both (read over TLS).
async fn relay_across(redis: &RedisServer, tls: &[&str]) {
    let n0 = node("n0", &redis.url(), tls);
    let n1 = node("n1", &redis.url(), tls);
    for n in [&n0, &n1] {
        n.wait_ready(true, Duration::from_secs(10));
    }
    let (mut a, mut b) = call_across(&n0, &n1, "tls").await;
    signal_arrives(&mut b, &mut a, "tls", answer()).await;
    let (status, body) = http_get(&n1.addr, "/v1/nodes", &[("authorization", &format!("Bearer {API_KEY}"))]);
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<&str> = list["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["id"].as_str()).collect();
    assert_eq!(ids, ["n0", "n1"], "{body}");
}

/// Waits `for_` and asserts the node stayed unready and logged `hint`.
fn stays_unready_saying(n: &Node, hint: &str) {
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(n.get("/readyz").0, 503, "a node that cannot reach Redis must not be ready");
    let log = n.log();
    assert!(log.contains("cannot reach Redis") && log.contains(hint), "expected a log line with {hint:?}; got:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_rediss_with_the_ca_file_become_ready_and_relay_across() {
    let ca = TestCa::generate("tls");
    let redis = RedisServer::start_tls(&ca, false);
    let ca_file = ca.ca_cert.to_str().expect("utf-8 path");
    relay_across(&redis, &["--redis-tls-ca-file", ca_file]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usual_tls_mistakes_leave_the_node_unready_with_a_hint() {
    let ca = TestCa::generate("tls-mistakes");
    let redis = RedisServer::start_tls(&ca, false);
    let plain_url = redis.url().replace("rediss://", "redis://");
    let plain = node("plain", &plain_url, &[]);
    // A CA the server's certificate was not signed by: the system roots.
    let no_ca = node("no-ca", &redis.url(), &[]);
    stays_unready_saying(&plain, "if it speaks only TLS, write rediss://");
    stays_unready_saying(&no_ca, "--redis-tls-ca-file");
    assert!(no_ca.log().contains("UnknownIssuer"), "{}", no_ca.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate_and_works_with_it() {
    let ca = TestCa::generate("mtls");
    let redis = RedisServer::start_tls(&ca, true);
    let ca_file = ca.ca_cert.to_str().expect("utf-8 path");
    let without = node("no-cert", &redis.url(), &["--redis-tls-ca-file", ca_file]);
    stays_unready_saying(&without, "--redis-tls-cert-file");
    drop(without);
    let cert = ca.client_cert.to_str().expect("utf-8 path");
    let key = ca.client_key.to_str().expect("utf-8 path");
    relay_across(&redis, &["--redis-tls-ca-file", ca_file, "--redis-tls-cert-file", cert, "--redis-tls-key-file", key])
        .await;
}
