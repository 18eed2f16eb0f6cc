//! The demo page in real headless Chromium (Debian's, with a fake camera and microphone): two
//! tabs call each other through one node, which serves the page and the SDK itself. Both decode
//! the other's video, a data-channel message crosses each way, one shares its screen, and a
//! hang-up reaches the other tab. Screenshots: `target/test-artifacts/demo-{a,b}.png`.
//!
//! The browser is driven by `tests/browser/demo-call.mjs` (playwright-core, which never
//! downloads a browser of its own); the cluster versions are in `tests/tests/browser_*.rs`.

#[path = "../../tests/tests/browser_support/mod.rs"]
mod browser_support;

use browser_support::{assert_screenshots, run, scenarios};
use switchboard_tests::Node;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-node");

#[test]
fn two_tabs_of_the_demo_page_call_each_other_in_chromium() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let node = Node::start(BIN, &[]);
    let base = node.http_url("");
    let report = run(&dir, "demo-call.mjs", &["demo", &base, &base]);
    for side in ["frames_a", "frames_b"] {
        let frames = report[side].as_object().expect("frames by peer");
        assert!(frames.len() == 1 && frames.values().all(|f| f.as_u64() > Some(0)), "{side}: {report}");
    }
    assert_eq!(report["screen_share"], true, "{report}");
    assert_screenshots(&report, "screenshots");
}
