//! The browser client in real headless Chromium (Debian's, fake camera and microphone) against
//! a real cluster: two node processes sharing their own redis-server, pages served by the nodes
//! themselves (the gateway's routes), WebRTC between the pages for real.
//!
//! - the demo page: one page on each node call each other, decode each other's video, chat
//!   both ways, share a screen and hang up;
//! - the seed protocol's page flow (`/seed.html` on `/ws`), one page on each node;
//! - a three-person mesh in one browser context, spread over both nodes;
//! - what the page says when the camera is refused and when the server is unreachable, and
//!   that it reconnects, joins again and calls again when its node comes back;
//! - what the page says while its node cannot reach Redis, and that it stops when Redis is back.
//!
//! Scenarios: `tests/browser/*.mjs`; screenshots: `target/test-artifacts/`.

mod browser_support;
mod cluster;

use browser_support::{assert_screenshots, run, scenarios};
use cluster::Cluster;
use switchboard_tests::{Node, node_binary};

#[test]
fn demo_pages_on_two_nodes_call_each_other() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c = Cluster::start(2, &[]);
    let (a, b) = (c.nodes[0].http_url(""), c.nodes[1].http_url(""));
    let report = run(&dir, "demo-call.mjs", &["cluster", &a, &b]);
    assert_eq!(report["nodes"], serde_json::json!(["n0", "n1"]), "the pages were not on two nodes: {report}");
    for side in ["frames_a", "frames_b"] {
        let frames = report[side].as_object().expect("frames by peer");
        assert!(frames.len() == 1 && frames.values().all(|f| f.as_u64() > Some(0)), "{side}: {report}");
    }
    // Why a peer went, in words ("left the call (left)" said the code twice).
    assert_eq!(report["b_saw"], "ann left the call.", "{report}");
    assert_eq!(report["muted_shown"], "mic off, camera off", "{report}");
    assert_screenshots(&report, "screenshots");
}

#[test]
fn seed_pages_on_two_nodes_call_each_other() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c = Cluster::start(2, &[]);
    let (a, b) = (c.nodes[0].http_url(""), c.nodes[1].http_url(""));
    let report = run(&dir, "seed-call.mjs", &[&a, &b]);
    assert!(report["frames_alice"].as_u64() > Some(0) && report["frames_bob"].as_u64() > Some(0), "{report}");
    assert_eq!(report["members"], serde_json::json!(["bob", "alice"]), "{report}");
    assert_screenshots(&report, "screenshots");
}

#[test]
fn three_pages_form_a_mesh_across_two_nodes() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c = Cluster::start(2, &[]);
    let (a, b) = (c.nodes[0].http_url(""), c.nodes[1].http_url(""));
    let report = run(&dir, "mesh.mjs", &[&a, &b]);
    assert_eq!(report["nodes"], serde_json::json!(["n0", "n1", "n0"]), "{report}");
    for (who, frames) in report["frames"].as_object().expect("frames by page") {
        let by_peer = frames.as_object().expect("frames by peer");
        assert!(by_peer.len() == 2 && by_peer.values().all(|f| f.as_u64() > Some(0)), "{who}: {report}");
    }
    assert_screenshots(&report, "screenshot");
}

#[test]
fn the_page_explains_a_refused_camera_and_an_unreachable_server_then_recovers() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c = Cluster::start(1, &[]);
    let base = c.nodes[0].http_url("");
    let bin = node_binary();
    let mut args = vec![base.as_str(), bin.as_str()];
    args.extend(c.args.iter().map(String::as_str));
    let report = run(&dir, "failures.mjs", &args);
    assert!(report["denied"]["notice"].as_str().is_some_and(|t| t.contains("receive-only")), "{report}");
    assert!(report["unreachable"]["notice"].as_str().is_some_and(|t| t.contains("Cannot reach")), "{report}");
    assert!(
        report["recalled"]["uma"].as_object().is_some_and(|f| f.values().all(|n| n.as_u64() > Some(0))),
        "{report}"
    );
    assert_screenshots(&report, "screenshots");
}

/// A node pointed at a Redis that is not there (yet) serves the page as if all were well; the
/// page must say that this node cannot reach Redis — naming the address, never the password in
/// the URL — and stop saying it once Redis is up, and say it again when Redis goes.
#[test]
fn the_page_says_when_its_node_cannot_reach_redis() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    const PASSWORD: &str = "hunter2-not-for-pages";
    let port = switchboard_tests::free_port();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let node = Node::start(&node_binary(), &["--redis-url", &url, "--node-lease-ms", "1500", "--node-id", "cut"]);
    let report = run(&dir, "cluster-status.mjs", &[&node.http_url(""), &port.to_string(), PASSWORD]);
    let addr = format!("127.0.0.1:{port}");
    for key in ["notice", "from_welcome", "again"] {
        let text = report[key].as_str().unwrap_or_default();
        assert!(text.contains(&format!("cannot reach Redis at {addr}")), "{key}: {report}");
        assert!(!text.contains(PASSWORD), "{key}: {report}");
    }
    assert!(report["status"].as_str().is_some_and(|t| t.contains("cut off")), "{report}");
    assert_screenshots(&report, "screenshots");
}

/// A node drain under two pages in a call, behind nginx configured like the Ingress: both pages
/// resume on the other node with their peer ids, keep their RTCPeerConnection (no peer-left, no
/// renegotiation, frames keep coming), and chat and broadcast both ways afterwards.
#[test]
fn pages_keep_their_call_through_a_node_drain() {
    if !switchboard_tests::Nginx::available() {
        return;
    }
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let mut c = Cluster::start(2, &["--shutdown-timeout-secs", "15"]);
    let addrs: Vec<&str> = c.nodes.iter().map(|n| n.addr.as_str()).collect();
    let nginx = switchboard_tests::Nginx::start(&addrs);
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let pids: Vec<String> = c.nodes.iter().enumerate().map(|(i, n)| format!("n{i}={}", n.pid())).collect();
    let mut args = vec![base.as_str()];
    args.extend(pids.iter().map(String::as_str));
    let report = run(&dir, "resume.mjs", &args);

    let drained = report["drained"].as_str().expect("drained node").to_string();
    let other = if drained == "n0" { "n1" } else { "n0" };
    for side in ["a", "b"] {
        let r = &report[side];
        assert!(r["peer_id"]["before"].is_string(), "{side}: {report}");
        assert_eq!(r["peer_id"]["before"], r["peer_id"]["after"], "{side}: the peer id changed: {report}");
        assert_eq!(r["node"]["before"], drained.as_str(), "{side}: {report}");
        assert_eq!(r["node"]["after"], other, "{side}: not on the other node: {report}");
        assert_eq!(r["node"]["client"], other, "{side}: {report}");
        assert_eq!(r["same_pc"], true, "{side}: the peer connection was replaced: {report}");
        assert_eq!(r["remotes"]["before"], r["remotes"]["after"], "{side}: {report}");
        assert_eq!(r["pc_state"], "connected", "{side}: {report}");
        let (before, after) = (r["frames"]["before"].as_u64().unwrap_or(0), r["frames"]["after"].as_u64().unwrap_or(0));
        assert!(before > 0 && after > before + 30, "{side}: frames {before} -> {after}: {report}");
        for list in ["peer_left", "peer_joined", "signaling_changes", "errors"] {
            assert_eq!(r[list], serde_json::json!([]), "{side}: {list}: {report}");
        }
        assert!(r["peer_left_notice"].is_null(), "{side}: {report}");
        let states: Vec<&str> =
            r["states"].as_array().expect("states").iter().filter_map(|s| s["state"].as_str()).collect();
        assert_eq!(states.first(), Some(&"resuming"), "{side}: {report}");
        assert!(!states.contains(&"reconnecting"), "{side}: a fresh reconnect, not a resume: {report}");
        let resumed = r["states"].as_array().expect("states").iter().find(|s| s["state"] == "connected");
        assert!(resumed.is_some_and(|s| s["resumed"] == true && s["gapMs"].is_u64()), "{side}: {report}");
        println!(
            "page {side}: {} resumed on {other} after a gap of {} ms (seen {} ms after SIGTERM); frames {before} -> {after}",
            r["peer_id"]["after"], r["gap_ms"], r["seen_after_ms"]
        );
    }
    assert_eq!(report["chat"].as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(report["broadcasts"].as_array().map(Vec::len), Some(2), "{report}");
    assert_screenshots(&report, "screenshots");
    // Both resumes went through nginx (the drained node refusing them with 503 where the room's
    // hash still pointed at it, nginx retrying the other).
    let log = nginx.access_log();
    let resumes: Vec<&str> = log.lines().filter(|l| l.contains("/v1/ws?room=") && l.contains("&resume=")).collect();
    println!("nginx, the resumes:\n{}", resumes.join("\n"));
    assert!(resumes.len() >= 2 && resumes.iter().filter(|l| l.contains("\" 101 ")).count() >= 2, "{log}");

    // The drained node finishes its drain and exits cleanly once the sessions moved.
    let i = if drained == "n0" { 0 } else { 1 };
    let status = c.nodes[i].wait_exit(std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the drained node {drained} did not exit cleanly ({status:?})\nnginx:\n{}",
        nginx.access_log()
    );
}
