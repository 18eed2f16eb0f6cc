//! A browser page and the reference peer interoperate: `switchboard-peer join` (webrtc-rs)
//! waits in a room on one node, the demo page (Chromium) joins on the other node and calls it;
//! the page decodes the peer's VP8 video, gets its data-channel echo, and the peer receives
//! the page's audio and video. Scenario: `tests/browser/peer-interop.mjs`.

mod browser_support;
mod cluster;

use browser_support::{assert_screenshots, run, scenarios};
use cluster::Cluster;
use switchboard_tests::peer_binary;

#[test]
fn the_demo_page_calls_the_reference_peer() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let peer = peer_binary();
    let c = Cluster::start(2, &[]);
    let (page_base, peer_ws) = (c.nodes[0].http_url(""), c.nodes[1].ws_url("/v1/ws"));
    let report = run(&dir, "peer-interop.mjs", &[&page_base, &peer, &peer_ws]);
    let frames = report["frames"].as_object().expect("frames by peer");
    assert!(frames.len() == 1 && frames.values().all(|f| f.as_u64() > Some(0)), "{report}");
    assert!(report["echo"]["text"].as_str().is_some_and(|t| t.starts_with("echo me")), "{report}");
    let got = &report["peer_received"];
    assert!(got["video_packets"].as_u64() > Some(0) && got["audio_packets"].as_u64() > Some(0), "{report}");
    assert_screenshots(&report, "screenshot");
}
