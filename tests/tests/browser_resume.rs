//! Resume after any disconnect (issue 13), in real headless Chromium against a real cluster:
//! two demo pages in a call, one on each node (their own redis-server), page A's signaling
//! through a [`Proxy`] the test breaks — a reset, then a stall of a few seconds — while both
//! pages chat (data channel) and broadcast (through the breaking signaling session).
//!
//! Each time, page A's SDK resumes its session by itself (same peer id, `resumed`), page B shows
//! A "reconnecting…" and then back, nobody leaves or joins, both keep the very same
//! RTCPeerConnection and keep decoding video, and every chat line and broadcast sent around the
//! break arrives once, in order, both ways. The nodes run short heartbeats and idle timeouts so
//! that a stalled socket is found dead (by the page and by its node) within the stall.
//!
//! Scenario: `tests/browser/resume-break.mjs`; screenshots: `target/test-artifacts/`.

mod browser_support;
mod cluster;

use std::time::Instant;

use browser_support::{assert_screenshots, run_controlled, scenarios};
use cluster::Cluster;
use serde_json::Value;
use switchboard_tests::Proxy;

/// The states `connection-state` reported on page A, in order (retries, which carry no cause, left out).
fn states(report: &Value) -> Vec<String> {
    report["a"]["states"]
        .as_array()
        .expect("A's states")
        .iter()
        .filter(|s| s["state"] != "resuming" || s["cause"].is_string())
        .map(|s| match (s["state"].as_str().unwrap_or("?"), s["resumed"] == true, s["cause"].as_str()) {
            ("connected", true, _) => "resumed".to_string(),
            ("resuming", _, Some(cause)) => format!("resuming:{cause}"),
            (state, _, _) => state.to_string(),
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn pages_keep_their_call_through_a_reset_and_a_stall_of_one_pages_network() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c = Cluster::start(2, &["--heartbeat-secs", "1", "--idle-timeout-secs", "3"]);
    let proxy = Proxy::start(&c.nodes[0].addr);
    let (a, b, ws) = (c.nodes[0].http_url(""), c.nodes[1].http_url(""), proxy.url("ws"));
    let started = Instant::now();
    let report = run_controlled(&dir, "resume-break.mjs", &[&a, &b, &ws], |command| match command {
        "reset" => format!("reset {}", proxy.reset()),
        "stall" => {
            proxy.stall();
            "stalled".into()
        }
        "heal" => {
            proxy.heal();
            "healed".into()
        }
        other => format!("unknown command {other}"),
    });
    let took = started.elapsed();

    // A resumed each time, never reconnected afresh. (On a loaded machine a late pong can make
    // the page take its socket for dead once more: another resume, which is fine.)
    let states = states(&report);
    assert!(
        states.len() >= 4 && states.chunks(2).all(|p| p == ["resuming:break", "resumed"]),
        "page A's connection states {states:?}: {report}"
    );
    // B saw A go and come back, each time, on A's tile.
    let presence = strings(&report["b"]["presence"]);
    assert!(
        presence.len() >= 4 && presence.chunks(2).all(|p| p == ["reconnecting", "connected"]),
        "B's peer-presence of A {presence:?}: {report}"
    );
    let shown = strings(&report["b"]["shown"]);
    assert_eq!(shown.iter().filter(|t| **t == "reconnecting…").count(), presence.len() / 2, "B's tile of A: {shown:?}");
    assert_eq!(shown.last(), Some(&""), "B's tile of A still says reconnecting: {shown:?}");
    assert!(!strings(&report["a"]["notices"]).is_empty(), "A never said it was reconnecting: {report}");
    assert!(report["b"]["states"].as_array().is_some_and(Vec::is_empty), "B's own connection moved: {report}");

    for phase in ["reset", "stall"] {
        let r = &report[phase];
        let count = if phase == "reset" { 40 } else { 25 };
        assert_eq!(r["each_way"], serde_json::json!([count, count]), "{phase}: {report}");
        for side in ["a", "b"] {
            let frames = &r["frames"][side];
            let (before, after) = (frames[0].as_u64().unwrap_or(0), frames[1].as_u64().unwrap_or(0));
            assert!(before > 0 && after > before + 30, "{phase}: page {side} frames {before} -> {after}");
        }
        println!(
            "{phase}: A away {} ms; the phase took {} ms; frames A {} B {}",
            r["gap_ms"], r["took_ms"], r["frames"]["a"], r["frames"]["b"]
        );
    }
    assert!(report["stall"]["stalled_ms"].as_u64() >= Some(4500), "{report}");
    assert_screenshots(&report, "screenshots");
    println!("the scenario took {took:?}");
}
