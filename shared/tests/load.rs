//! `switchboard-peer load`: real WebRTC mesh rooms across a two-node cluster, and the
//! signaling-only relay, each run end to end and its JSON line checked.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::{Node, RedisServer, node_binary, run_until};

fn load(args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard-peer"));
    cmd.args(["--threads", "2", "load"]).args(args);
    let (ok, stdout, stderr) = run_until(cmd, Instant::now() + Duration::from_secs(120));
    let line: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("line {stdout:?}: {e}\n{stderr}"));
    assert!(ok, "load failed: {line}\n{stderr}");
    println!("{line}");
    line
}

/// Two rooms of three peers, each room spread over two nodes: every pair connects (6
/// connections), every caller's echoes come back, media reaches every peer from every other.
#[test]
fn mesh_rooms_across_two_nodes_connect_every_pair() {
    let redis = RedisServer::start();
    let nodes: Vec<Node> = ["m0", "m1"]
        .iter()
        .map(|id| Node::start(&node_binary(), &["--redis-url", &redis.url(), "--node-id", id]))
        .collect();
    for n in &nodes {
        n.wait_ready(true, Duration::from_secs(10));
    }
    let urls = format!("{},{}", nodes[0].ws_url("/v1/ws"), nodes[1].ws_url("/v1/ws"));
    let r = load(&["--urls", &urls, "--rooms", "2", "--peers-per-room", "3", "--messages", "5", "--media-secs", "1"]);
    assert_eq!(r["mode"], "webrtc");
    assert_eq!(r["peers"], 6);
    assert_eq!(r["connections"], 6);
    assert_eq!(r["connected_peers"], 6, "{r}");
    assert_eq!(r["failed"], serde_json::json!({}), "{r}");
    for key in ["join_ms", "connected_ms", "rtt_ms"] {
        assert!(r[key]["p50"].as_f64().is_some_and(|v| v > 0.0), "{key}: {r}");
        assert!(r[key]["p99"].as_f64() >= r[key]["p50"].as_f64(), "{key}: {r}");
    }
    assert!(r["rtp_packets_received"].as_u64() > Some(6 * 2 * 20), "{r}");
}

/// `--signal-only`: the relay generator (v1 here), no WebRTC; nothing lost.
#[test]
fn signal_only_relays_offers_candidates_and_answers() {
    let node = Node::start(&node_binary(), &[]);
    let r =
        load(&["--signal-only", "--proto", "v1", "--urls", &node.ws_url("/v1/ws"), "--rooms", "3", "--rounds", "5"]);
    assert_eq!(r["proto"], "v1");
    assert_eq!(r["delivered"], 3 * 5 * 4);
    assert_eq!(r["lost"], 0);
}
