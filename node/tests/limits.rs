//! Every configurable limit of the node, one test each, through a real process.
//!
//! Each test drives a connection past one limit and asserts both halves of the contract:
//! the client gets the limit's typed error (or close code), and the connection — or, where
//! the limit ends the connection, the other peers' call — keeps working afterwards.
//! Limits covered: message size (1009), messages/s, candidates/s, descriptions/min,
//! candidates per negotiation (reset by a new offer), rooms per connection, peers per room,
//! connections per node (1013, and a slot frees up when a connection closes), `meta`,
//! the Origin allow-list (HTTP 403 before the upgrade), the idle timeout (4000, `timeout`)
//! and the heartbeat that keeps a reading client alive past it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use switchboard_tests::{Client, V1Peer};

const SILENCE: Duration = Duration::from_millis(300);
/// Upper bound for waiting on a token bucket to refill.
const REFILL_BOUND: Duration = Duration::from_secs(5);

/// Reads exactly `n` messages.
async fn recv_n(p: &mut V1Peer, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(p.ws.recv().await);
    }
    out
}

fn count_errors(replies: &[Value], code: &str) -> usize {
    for r in replies {
        assert_eq!(r["type"], "error", "only errors expected, got {r}");
    }
    replies.iter().filter(|r| r["code"] == code).count()
}

/// Sends `data` from `a` to `b` until the node stops refusing it with `rate-limited` (a bucket
/// refilled); then `b` must have received it. Bounded by [`REFILL_BOUND`]. Sends nothing else,
/// so it also works while the general message rate is the one exhausted.
async fn signal_once_refilled(a: &mut V1Peer, b: &mut V1Peer, room: &str, data: Value) {
    let deadline = Instant::now() + REFILL_BOUND;
    loop {
        a.signal(room, &b.id, data.clone()).await;
        // Exactly one of the two happens: an error for the sender or the relay to the target.
        tokio::select! {
            refused = a.ws.recv() => assert_eq!(refused["code"], "rate-limited", "{refused}"),
            got = b.ws.expect("signal") => {
                assert_eq!(got["data"], data, "{got}");
                return;
            }
        }
        assert!(Instant::now() < deadline, "still rate-limited after {REFILL_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that `c` receives nothing but heartbeats for `window`. (Bounded from outside: the
/// harness's `next_within` restarts its timeout on every ping it skips.)
async fn only_heartbeats(c: &mut Client, window: Duration) {
    if let Ok(got) = tokio::time::timeout(window, c.next_within(window)).await {
        assert!(got.is_none(), "expected only heartbeats, got {got:?}");
    }
}

/// `meta` whose JSON text is exactly `len` bytes.
fn meta_of_len(len: usize) -> String {
    format!(r#"{{"p":"{}"}}"#, "x".repeat(len - 8))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_size_closes_with_1009_and_spares_the_others() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "r").await;
    let mut c = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;

    // Under the default limit a 64 KiB SDP passes…
    let sdp = big_sdp(64 * 1024);
    signal_arrives(&mut a, &mut b, "r", json!({"type": "offer", "sdp": sdp})).await;
    // …and so does a message of exactly the limit.
    let ping = r#"{"type":"ping","id":"max"}"#;
    let exact = format!("{ping}{}", " ".repeat(131072 - ping.len()));
    a.ws.send_text(&exact).await;
    assert_eq!(a.ws.recv().await, json!({"type": "pong", "id": "max"}));

    // One byte more is refused and ends the connection with 1009.
    let over = format!("{ping}{}", " ".repeat(131073 - ping.len()));
    a.ws.send_text(&over).await;
    a.ws.expect_error("message-too-big").await;
    assert_eq!(a.ws.expect_close().await, Some((1009, "message-too-big".into())));
    let left = b.ws.expect("peer-left").await;
    assert_eq!((left["peer_id"].as_str(), left["reason"].as_str()), (Some(a.id.as_str()), Some("disconnected")));
    c.ws.expect("peer-left").await;

    // The rest of the call goes on.
    signal_arrives(&mut b, &mut c, "r", answer()).await;
    signal_arrives(&mut c, &mut b, "r", candidate(1)).await;
    assert!(node_metric(&node, "switchboard_errors_total", &[("code", "message-too-big")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_per_sec_is_rate_limited_then_recovers() {
    let node = start(&["--messages-per-sec", "5"]);
    let (mut a, mut b) = pair(&node, "r").await;

    const BURST: usize = 30;
    for i in 0..BURST {
        a.ws.send_json(json!({"type": "ping", "id": i})).await;
    }
    let replies = recv_n(&mut a, BURST).await;
    let pongs = replies.iter().filter(|r| r["type"] == "pong").count();
    let limited = replies.iter().filter(|r| r["type"] == "error" && r["code"] == "rate-limited").count();
    println!("burst of {BURST} pings: {pongs} pongs, {limited} rate-limited");
    assert_eq!(pongs + limited, BURST, "every frame gets exactly one reply: {replies:?}");
    assert!(pongs >= 1 && limited >= 1, "{replies:?}");
    a.ws.expect_silence(SILENCE).await;

    // The other peer has its own budget.
    assert_alive(&mut b).await;
    // And a's comes back.
    let deadline = Instant::now() + REFILL_BOUND;
    loop {
        a.ws.send_json(json!({"type": "ping", "id": "again"})).await;
        let r = a.ws.recv().await;
        if r["type"] == "pong" {
            break;
        }
        assert_eq!(r["code"], "rate-limited", "{r}");
        assert!(Instant::now() < deadline, "still rate-limited after {REFILL_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    signal_once_refilled(&mut a, &mut b, "r", offer()).await;
    assert!(node_metric(&node, "switchboard_errors_total", &[("code", "rate-limited")]) >= limited as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_per_sec_is_rate_limited_then_recovers() {
    let node = start(&["--candidates-per-sec", "2", "--max-candidates-per-negotiation", "0"]);
    let (mut a, mut b) = pair(&node, "r").await;

    const BURST: u32 = 12;
    for i in 0..BURST {
        a.signal("r", &b.id, candidate(i)).await;
    }
    let refused = count_errors(&replies_until_pong(&mut a, "burst").await, "rate-limited");
    let passed = BURST as usize - refused;
    println!("burst of {BURST} candidates: {passed} relayed, {refused} rate-limited");
    assert!(refused >= 1 && passed >= 1);
    // The ones that passed arrive in order, and nothing else does.
    let mut last = None;
    for m in recv_n(&mut b, passed).await {
        assert_eq!(m["type"], "signal", "{m}");
        let line = m["data"]["candidate"].as_str().expect("candidate").to_string();
        let n: u32 = line["candidate:".len()..].split(' ').next().and_then(|f| f.parse().ok()).expect("foundation");
        assert!(last.is_none_or(|l| n > l), "out of order: {line}");
        last = Some(n);
    }
    b.ws.expect_silence(SILENCE).await;

    // Other kinds of signal are not held back by the candidate budget…
    signal_arrives(&mut a, &mut b, "r", offer()).await;
    signal_arrives(&mut a, &mut b, "r", json!({"chat": "still here"})).await;
    // …and candidates flow again once the bucket refills.
    signal_once_refilled(&mut a, &mut b, "r", candidate(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptions_per_min_is_rate_limited_then_recovers() {
    // 60/min: a burst of 30, then one a second.
    let node = start(&["--descriptions-per-min", "60"]);
    let (mut a, mut b) = pair(&node, "r").await;

    const BURST: usize = 36;
    for i in 0..BURST {
        a.signal("r", &b.id, if i % 2 == 0 { offer() } else { answer() }).await;
    }
    let refused = count_errors(&replies_until_pong(&mut a, "burst").await, "rate-limited");
    let passed = BURST - refused;
    println!("burst of {BURST} descriptions: {passed} relayed, {refused} rate-limited");
    assert!(refused >= 1 && passed >= 30, "burst is 30: {passed} passed");
    for m in recv_n(&mut b, passed).await {
        assert!(m["type"] == "signal" && m["data"]["sdp"].is_string(), "{m}");
    }
    b.ws.expect_silence(SILENCE).await;

    // Candidates and app data still pass; descriptions do once the bucket refills.
    signal_arrives(&mut a, &mut b, "r", candidate(1)).await;
    signal_arrives(&mut a, &mut b, "r", json!({"mute": true})).await;
    signal_once_refilled(&mut a, &mut b, "r", offer()).await;
    // The receiver's own budget is untouched.
    signal_arrives(&mut b, &mut a, "r", answer()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_per_negotiation_are_capped_and_reset_by_a_new_offer() {
    let node = start(&["--max-candidates-per-negotiation", "3", "--candidates-per-sec", "0"]);
    let (mut a, mut b) = pair(&node, "r").await;
    let mut c = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;

    signal_arrives(&mut a, &mut b, "r", offer()).await;
    for i in 0..3 {
        signal_arrives(&mut a, &mut b, "r", candidate(i)).await;
    }
    a.signal("r", &b.id, candidate(3)).await;
    a.ws.expect_error("candidate-limit").await;
    b.ws.expect_silence(SILENCE).await;

    // The cap is per negotiation: a's negotiation with c is separate…
    for i in 0..3 {
        signal_arrives(&mut a, &mut c, "r", candidate(10 + i)).await;
    }
    // …end-of-candidates and app data are not candidates…
    signal_arrives(&mut a, &mut b, "r", json!({"candidate": "", "sdpMid": "0"})).await;
    signal_arrives(&mut a, &mut b, "r", json!({"chat": "hi"})).await;
    // …and a new offer starts a new negotiation with a fresh allowance.
    signal_arrives(&mut a, &mut b, "r", offer()).await;
    for i in 20..23 {
        signal_arrives(&mut a, &mut b, "r", candidate(i)).await;
    }
    a.signal("r", &b.id, candidate(23)).await;
    a.ws.expect_error("candidate-limit").await;
    // b can still send its own candidates to a.
    signal_arrives(&mut b, &mut a, "r", candidate(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_per_connection_are_limited() {
    let node = start(&["--max-rooms-per-connection", "2"]);
    let (mut a, mut b) = pair(&node, "r1").await;
    a.join("r2").await;
    a.ws.send_json(json!({"type": "join", "room": "r3", "id": 3})).await;
    let e = a.ws.expect_error("room-limit").await;
    assert_eq!(e["id"], 3);

    // Still in its rooms and able to talk.
    signal_arrives(&mut a, &mut b, "r1", offer()).await;
    signal_arrives(&mut b, &mut a, "r1", answer()).await;
    // Leaving frees a slot.
    a.ws.send_json(json!({"type": "leave", "room": "r2"})).await;
    a.ws.expect("left").await;
    assert_eq!(a.join("r3").await["room"], "r3");

    // Joins on their way count too: three pipelined joins, the third refused.
    let mut p = V1Peer::connect(&v1_url(&node)).await;
    for r in ["x1", "x2", "x3"] {
        p.ws.send_json(json!({"type": "join", "room": r})).await;
    }
    let replies = recv_n(&mut p, 3).await;
    assert_eq!(replies.iter().filter(|r| r["type"] == "joined").count(), 2, "{replies:?}");
    assert_eq!(
        count_errors(&replies.into_iter().filter(|r| r["type"] == "error").collect::<Vec<_>>(), "room-limit"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_per_room_are_limited() {
    let node = start(&["--max-peers-per-room", "2"]);
    let (mut a, mut b) = pair(&node, "full").await;
    let mut c = V1Peer::connect(&v1_url(&node)).await;
    c.ws.send_json(json!({"type": "join", "room": "full", "id": "c"})).await;
    let e = c.ws.expect_error("room-full").await;
    assert_eq!(e["id"], "c");
    // Nobody in the room heard of c, and their call goes on.
    a.ws.expect_silence(SILENCE).await;
    signal_arrives(&mut a, &mut b, "full", offer()).await;
    // c is not half-joined: it may join elsewhere, and may not address the full room.
    c.join("other").await;
    c.signal("full", &a.id, json!({})).await;
    c.ws.expect_error("not-joined").await;

    // A seat frees up when someone leaves.
    b.ws.send_json(json!({"type": "leave", "room": "full"})).await;
    b.ws.expect("left").await;
    a.ws.expect("peer-left").await;
    let j = c.join("full").await;
    assert_eq!(j["peers"], json!([{"peer_id": a.id}]));
    signal_arrives(&mut c, &mut a, "full", offer()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_1013_until_a_slot_frees() {
    let node = start(&["--max-connections", "2"]);
    let (mut a, mut b) = pair(&node, "r").await;

    let mut extra = Client::connect(&v1_url(&node)).await;
    extra.expect_error("too-many-connections").await;
    assert_eq!(extra.expect_close().await, Some((1013, "too-many-connections".into())));
    // The refused socket did not take a slot, and the existing call is untouched.
    signal_arrives(&mut a, &mut b, "r", offer()).await;
    let mut again = Client::connect(&v1_url(&node)).await;
    again.expect_error("too-many-connections").await;

    // Once one connection closes, a new one gets in (the slot is freed asynchronously).
    b.ws.close().await;
    a.ws.expect("peer-left").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        let mut ws = Client::connect(&v1_url(&node)).await;
        let first = ws.recv().await;
        if first["type"] == "welcome" {
            break V1Peer { id: first["peer_id"].as_str().expect("peer_id").to_string(), ws };
        }
        assert_eq!(first["code"], "too-many-connections", "{first}");
        assert!(Instant::now() < deadline, "no slot freed after a connection closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.join("r").await;
    a.ws.expect("peer-joined").await;
    signal_arrives(&mut c, &mut a, "r", offer()).await;
    assert!(node_metric(&node, "switchboard_errors_total", &[("code", "too-many-connections")]) >= 2.0);
    assert_eq!(node_metric(&node, "switchboard_connections", &[("protocol", "v1")]), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_meta_is_refused() {
    let node = start(&["--max-meta-bytes", "64"]);
    let (mut a, _b) = pair(&node, "lobby").await;
    let mut c = V1Peer::connect(&v1_url(&node)).await;
    for meta in [meta_of_len(65), "\"a string\"".into(), "[1,2]".into(), "5".into(), "true".into()] {
        c.ws.send_text(&format!(r#"{{"type":"join","room":"lobby","meta":{meta},"id":"m"}}"#)).await;
        let e = c.ws.expect_error("bad-meta").await;
        assert_eq!(e["id"], "m");
    }
    a.ws.expect_silence(SILENCE).await;
    // A refused join leaves nothing behind: the same join with a fitting meta works.
    let ok = meta_of_len(64);
    c.ws.send_text(&format!(r#"{{"type":"join","room":"lobby","meta":{ok}}}"#)).await;
    c.ws.expect("joined").await;
    let pj = a.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"]["meta"], serde_json::from_str::<Value>(&ok).expect("json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list_is_enforced_before_the_upgrade() {
    // Default list: any localhost / 127.0.0.1 port, plus no-Origin and same-origin requests.
    let node = start(&[]);
    let same_origin = format!("http://{}", node.addr);
    let allowed: [&[(&str, &str)]; 5] = [
        &[],
        &[("Origin", "http://localhost:3000")],
        &[("Origin", "https://127.0.0.1:8443")],
        &[("Origin", "http://127.0.0.1:5173")],
        &[("Origin", same_origin.as_str())],
    ];
    for headers in allowed {
        let (resp, ws) = RawWs::handshake(&node.addr, "/v1/ws", headers).await;
        assert_eq!(resp.status, 101, "{headers:?}: {resp:?}");
        assert_eq!(ws.expect("socket").recv_json().await["type"], "welcome");
    }
    for origin in ["https://evil.example", "null", "http://localhost.evil.com:80", "http://localhost"] {
        assert_origin_refused(&node.addr, origin).await;
    }
    assert!(node_metric(&node, "switchboard_errors_total", &[("code", "origin-refused")]) >= 4.0);

    // An explicit list replaces the default: exact origins only.
    let node = start(&["--allowed-origins", "https://app.example.com"]);
    let url = v1_url(&node);
    let mut ok = Client::connect_with(&url, &[("Origin", "https://app.example.com")]).await.expect("allowed origin");
    assert_eq!(ok.recv().await["type"], "welcome");
    let mut none = Client::connect_with(&url, &[]).await.expect("no origin");
    assert_eq!(none.recv().await["type"], "welcome");
    let same_origin = format!("http://{}", node.addr);
    let mut same = Client::connect_with(&url, &[("Origin", same_origin.as_str())]).await.expect("same origin");
    assert_eq!(same.recv().await["type"], "welcome");
    for origin in [
        "https://app.example.com:8443",
        "http://app.example.com",
        "https://app.example.com.evil.com",
        "http://localhost:3000",
    ] {
        assert_origin_refused(&node.addr, origin).await;
        assert!(Client::connect_with(&url, &[("Origin", origin)]).await.is_err(), "{origin} got a socket");
    }
    // The refusals cost the allowed sessions nothing.
    ok.send_json(json!({"type": "ping", "id": 1})).await;
    assert_eq!(ok.recv().await["type"], "pong");
}

async fn assert_origin_refused(addr: &str, origin: &str) {
    let (resp, ws) = RawWs::handshake(addr, "/v1/ws", &[("Origin", origin)]).await;
    assert_eq!(resp.status, 403, "{origin}: {resp:?}");
    assert!(ws.is_none());
    let body: Value = serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("403 body not JSON ({e}): {resp:?}"));
    assert_eq!(body["error"]["code"], "origin-refused", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_cuts_off_a_silent_client() {
    let node = start(&["--heartbeat-secs", "1", "--idle-timeout-secs", "2", "--reconnect-grace-ms", "500"]);
    let mut active = joined(&node, "r").await;
    // The idle client is a raw socket: it answers no ping because it is never read until the end.
    // (A tungstenite client read that late may report the socket as reset instead of the close
    // frame: it flushes its queued pongs into the closed socket before parsing what is buffered.)
    let (mut idle, idle_id) = RawWs::connect_v1(&node).await;
    idle.join("r").await;
    assert_eq!(active.ws.expect("peer-joined").await["peer"]["peer_id"], idle_id.as_str());
    // Silence counts as a broken path: held for a resume first, then gone.
    let held = active.ws.recv().await;
    assert_eq!(held, json!({"type": "peer-state", "room": "r", "peer_id": idle_id, "state": "reconnecting"}));
    let left = active.ws.expect("peer-left").await;
    assert_eq!(left, json!({"type": "peer-left", "room": "r", "peer_id": idle_id, "reason": "timeout"}));
    // The reading peer survived the same timeout.
    assert_alive(&mut active).await;
    // The idle client, once it reads, finds the close code (after the pings it never answered).
    assert_eq!(idle.expect_close().await, Some((4000, "idle-timeout".into())));
    assert!(idle.pings >= 1, "the node never pinged the idle client");
    assert!(node_metric(&node, "switchboard_errors_total", &[("code", "idle-timeout")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_a_reading_client_alive() {
    let node = start(&["--heartbeat-secs", "1", "--idle-timeout-secs", "2"]);
    let (mut a, mut b) = pair(&node, "r").await;
    let (mut raw, _) = RawWs::connect_v1(&node).await;

    // Read (and so answer pings) for twice the idle timeout without sending a message.
    let window = Duration::from_secs(4);
    let ((), (), rr) =
        tokio::join!(only_heartbeats(&mut a.ws, window), only_heartbeats(&mut b.ws, window), raw.next_within(window));
    assert!(rr.is_none(), "expected only heartbeats, got {rr:?}");
    assert!(raw.pings >= 2, "the node sent {} pings in {window:?} with a 1 s heartbeat", raw.pings);

    assert_alive(&mut a).await;
    signal_arrives(&mut a, &mut b, "r", offer()).await;
    raw.assert_pong("still-here").await;
}
