//! The seed blog's own React client (issue 14, items 1 and 2), transcribed to a plain page
//! (`tests/browser/seed-blog-client.html`) and driven in real headless Chromium (Debian's,
//! fake camera and microphone) against two clustered node processes sharing their own
//! redis-server: the flow that works between seed clients on the seed server works here.
//! Scenario: `tests/browser/seed-blog-flow.mjs`; screenshots: `target/test-artifacts/`.

mod browser_support;
mod cluster;

use browser_support::{assert_screenshots, run, scenarios};
use cluster::Cluster;

/// The seed blog's own client flow (`tests/browser/seed-blog-client.html`, its React code
/// transcribed): it joins with empty ids on connecting, learns who came after it only by
/// pressing Join again, sends complete descriptions after ICE gathering; and a page whose user
/// left the id empty can still be called.
#[test]
fn seed_blog_client_pages_join_again_and_call_a_page_without_an_id() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c = Cluster::start(2, &[]);
    let (a, b) = (c.nodes[0].http_url(""), c.nodes[1].http_url(""));
    let report = run(&dir, "seed-blog-flow.mjs", &[&a, &b]);
    let sorted = |v: &serde_json::Value| {
        let mut users: Vec<String> =
            v.as_array().into_iter().flatten().filter_map(|u| u.as_str().map(String::from)).collect();
        users.sort();
        users
    };
    // Joined on connecting, with nothing typed: an anonymous member of the unnamed channel.
    assert_eq!(report["on_open"]["type"], "joined", "{report}");
    let alice = report["alice_joined"].as_array().expect("alice's joined lists");
    assert_eq!(alice.len(), 3, "{report}");
    assert_eq!(sorted(&alice[1]), ["alice"], "{report}");
    assert_eq!(sorted(&alice[2]), ["alice", "bob"], "the first joiner's second Join: {report}");
    assert_eq!(report["carol_joined"]["body"], serde_json::json!([""]), "{report}");
    assert_eq!(sorted(&report["dave_joined"]["body"]), ["", "dave"], "{report}");
    for call in ["frames_call1", "frames_call2"] {
        let frames = report[call].as_array().expect("frames");
        assert!(frames.len() == 2 && frames.iter().all(|f| f.as_u64() > Some(0)), "{call}: {report}");
    }
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_screenshots(&report, "screenshots");
}
