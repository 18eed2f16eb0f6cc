//! Webhooks from a lone node (issue 16): the harness's receiver (a real HTTP server that checks
//! every signature and misbehaves per room — fails twice, times out once, always fails,
//! redirects) against the exact set of events the rooms' members caused, delivered at least
//! once and in order per room, a retry carrying the same body and id.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;
use switchboard_tests::webhooks::{ONE_MEMBER, TWO_MEMBERS, delivered, start_receiver, wait_for};
use switchboard_tests::{V1Peer, free_port, http_get};

const SECRET: &str = "webhook-test-secret-0123456789abcdef";
const API_KEY: &str = "webhook-test-admin-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_delivers_every_room_event_signed_in_order_and_retries_failures() {
    let port = free_port();
    let r = start_receiver(port, SECRET);
    let url = format!("http://127.0.0.1:{port}/hook");
    let node = start(&[
        "--webhook-urls",
        &url,
        "--webhook-secret",
        SECRET,
        "--webhook-retry-secs",
        "6",
        "--api-keys",
        API_KEY,
    ]);
    let ws = node.ws_url("/v1/ws");

    // calm: two peers, one leaves, the other's socket closes.
    let mut a = V1Peer::connect(&ws).await;
    let mut b = V1Peer::connect(&ws).await;
    a.join("calm").await;
    b.join("calm").await;
    b.ws.send_json(serde_json::json!({"type": "leave", "room": "calm"})).await;
    b.ws.expect("left").await;
    // The room has taken b's leave (a is told) before a's socket closes.
    a.ws.expect("peer-left").await;
    let calm = [a.id.clone(), b.id.clone()];
    a.ws.close().await;

    // flaky, slow, dead: one peer each, joining and leaving.
    let mut ids = BTreeMap::new();
    for room in ["flaky", "slow", "dead", "moved"] {
        let mut p = V1Peer::connect(&ws).await;
        p.join(room).await;
        p.ws.send_json(serde_json::json!({"type": "leave", "room": room})).await;
        p.ws.expect("left").await;
        ids.insert(room, p.id.clone());
    }

    let calm_ids: Vec<&str> = calm.iter().map(String::as_str).collect();
    wait_for("calm's six events", Duration::from_secs(10), || delivered(&r, "calm", &calm_ids).len() == 6);
    assert_eq!(delivered(&r, "calm", &calm_ids), TWO_MEMBERS);
    for room in ["flaky", "slow"] {
        let who = [ids[room].as_str()];
        wait_for(room, Duration::from_secs(20), || delivered(&r, room, &who).len() == 4);
        assert_eq!(delivered(&r, room, &who), ONE_MEMBER, "{room}");
    }

    // dead and moved: each event given up after its 6 s window (its room's next one waits for
    // it: order per room), listed with what the receiver answered; a redirect is not followed.
    let (_, auth) = ("authorization", format!("Bearer {API_KEY}"));
    wait_for("dead's failures listed", Duration::from_secs(45), || {
        let (_, body) = http_get(&node.addr, "/v1/webhooks/failures", &[("authorization", &auth)]);
        serde_json::from_str::<Value>(&body).is_ok_and(|v| v["failures"].as_array().is_some_and(|f| f.len() == 8))
    });
    let (status, body) = http_get(&node.addr, "/v1/webhooks/failures", &[("authorization", &auth)]);
    assert_eq!(status, 200, "{body}");
    let failures: Value = serde_json::from_str(&body).expect("json");
    for f in failures["failures"].as_array().expect("failures") {
        let want = match f["room"].as_str() {
            Some("dead") => "HTTP 503",
            Some("moved") => "HTTP 301",
            _ => panic!("only dead's and moved's events fail: {f}"),
        };
        assert_eq!(f["url"], url.as_str(), "{f}");
        assert_eq!(f["last_error"], want, "{f}");
        assert!(f["attempts"].as_u64().is_some_and(|n| n >= 3), "backed off yet retried: {f}");
    }

    let got = r.got.lock().unwrap().clone();
    // Every request signed; a repeat of an id carries the very same body.
    let mut bodies: BTreeMap<String, &str> = BTreeMap::new();
    for g in &got {
        assert_eq!(g.signed, Ok(()), "{}", g.body);
        let id = g.event["id"].as_str().expect("id").to_string();
        assert!(id.starts_with("evt_") && id.len() == 36, "{id}");
        let first = bodies.entry(id.clone()).or_insert(&g.body);
        assert_eq!(*first, g.body.as_str(), "a retry of {id} changed its body");
        assert_eq!(g.event["cluster"], "switchboard");
        assert!(g.event["created_at"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{}", g.body);
        if let Some(peer) = g.event.get("peer") {
            assert!(peer["user"].is_null(), "anonymous peers have user null: {}", g.body);
            assert!(peer["node"].is_string(), "{}", g.body);
        } else {
            assert!(g.event["type"].as_str().is_some_and(|t| t.starts_with("room.")), "{}", g.body);
        }
        assert_eq!(g.event.get("reason").is_some(), g.event["type"] == "peer.left", "{}", g.body);
    }
    let attempts = |room: &str| got.iter().filter(|g| g.event["room"] == room).count();
    assert_eq!(attempts("flaky"), 4 * 3, "each of flaky's events: two failures, then delivered");
    assert!(attempts("slow") >= 5, "slow's first event timed out and came again");

    // The counters agree.
    let (_, metrics) = http_get(&node.addr, "/metrics", &[]);
    let value =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(-1.0);
    assert_eq!(value("switchboard_webhooks_pending "), 0.0, "{metrics}");
    assert_eq!(value("switchboard_webhooks_failed_total "), 8.0);
    assert_eq!(value("switchboard_webhooks_delivered_total "), 14.0);
    assert!(value("switchboard_webhooks_retried_total ") >= 8.0 + 1.0);
}

#[test]
fn webhook_flags_that_a_receiver_could_not_verify_refuse_to_start() {
    refuses_to_start(
        &["--webhook-urls", "http://127.0.0.1:9/hook"],
        "--webhook-urls are set but --webhook-secret is not",
    );
    refuses_to_start(
        &["--webhook-urls", "http://127.0.0.1:9/hook", "--webhook-secret", "short"],
        "--webhook-secret is 5 bytes; at least 32 are required",
    );
    refuses_to_start(
        &[
            "--webhook-urls",
            "http://127.0.0.1:9/hook",
            "--webhook-secret",
            SECRET,
            "--redis-url",
            "redis://127.0.0.1:1",
        ],
        "set the webhook flags on the gateways instead",
    );
}

/// SIGTERM: the members leave with `shutdown` and their rooms finish, and the node waits for
/// those last webhooks before it exits (the receiver fails their first attempt: they go out
/// only if the node stays for the retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_sends_its_last_events_before_it_exits() {
    let port = free_port();
    let r = start_receiver(port, SECRET);
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut node = start(&["--webhook-urls", &url, "--webhook-secret", SECRET]);
    let mut p = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    p.join("bye").await;
    let who = [p.id.as_str()];
    wait_for("bye's first events", Duration::from_secs(10), || delivered(&r, "bye", &who).len() == 2);
    node.terminate();
    assert!(node.wait_exit(Duration::from_secs(15)).is_some(), "the node did not exit");
    let want = ["room.started - -", "peer.joined p0 -", "peer.left p0 shutdown", "room.finished - -"];
    assert_eq!(delivered(&r, "bye", &who), want, "delivered before the node exited");
}
