//! The browser client in real headless Chromium (Debian's, fake camera and microphone) against
//! a real cluster: two node processes sharing their own redis-server, pages served by the nodes
//! themselves (the gateway's routes), WebRTC between the pages for real.
//!
//! - the demo page: one page on each node call each other, decode each other's video, chat
//!   both ways, share a screen and hang up;
//! - the seed protocol's page flow (`/seed.html` on `/ws`), one page on each node;
//! - a three-person mesh in one browser context, spread over both nodes;
//! - what the page says when the camera is refused and when the server is unreachable, and
//!   that it reconnects, joins again and calls again when its node comes back.
//!
//! Scenarios: `tests/browser/*.mjs`; screenshots: `target/test-artifacts/`.

mod browser_support;
mod cluster;

use browser_support::{assert_screenshots, run, scenarios};
use cluster::Cluster;
use switchboard_tests::node_binary;

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
    assert!(report["b_saw"].as_str().is_some_and(|t| t.contains("ann left")), "{report}");
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
