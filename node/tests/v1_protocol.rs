//! Protocol v1 end to end: a real node process, real WebSocket clients.
//!
//! What this file proves about `/v1/ws`:
//! - the first frame is `welcome` (protocol, a server-assigned 13-character peer id, node id,
//!   heartbeat, the limits as configured), and the `switchboard.v1` subprotocol is echoed only
//!   when the client asks for it;
//! - membership: `joined.peers`, `peer-joined` (with `meta`), `left`, and `peer-left` with reason
//!   `left` or `disconnected` (close frame or plain TCP drop);
//! - relays: a `signal` reaches its target only, a `broadcast` every other member but not the
//!   sender, `from` is always stamped by the server (a spoofed `from` is ignored), a 64 KiB SDP
//!   arrives byte-for-byte, and WebRTC payloads are shape-checked (`bad-sdp`, `bad-candidate`)
//!   while application data passes as is;
//! - addressing is confined to rooms: a signal into a room one has not joined is `not-joined`,
//!   one to a peer of another room is `unknown-peer` (and that peer gets nothing), one to
//!   oneself is `self-addressed`, and two rooms active at once never leak into each other;
//! - `id` is echoed on `joined`, `left`, `pong` and errors (and refused when not a short scalar);
//! - ordering: a newcomer's `peer-joined` reaches the others before its first signal;
//! - the server echoes the client's close code; plain HTTP on the WebSocket paths gets JSON
//!   refusals (426, 404);
//! - `/metrics` counts messages in, errors and relays, and its gauges return to 0.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard_tests::{Client, Frame, V1Peer};

/// Long enough for a misrouted frame to show up on loopback; short enough to keep tests fast.
const SILENCE: Duration = Duration::from_millis(300);

fn peer_ids(joined: &Value) -> HashSet<String> {
    joined["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["peer_id"].as_str().expect("peer_id").to_string())
        .collect()
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_is_the_first_frame_and_announces_limits() {
    let node = start(&[
        "--node-id",
        "it-node",
        "--heartbeat-secs",
        "3",
        "--max-peers-per-room",
        "7",
        "--max-meta-bytes",
        "333",
    ]);
    let mut ws = Client::connect(&v1_url(&node)).await;
    let w = ws.recv().await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["protocol"], 1);
    assert_eq!(w["node_id"], "it-node");
    assert_eq!(w["heartbeat_ms"], 3000);
    let id = w["peer_id"].as_str().expect("peer_id");
    assert_eq!(id.len(), 13, "{id}");
    assert!(id.bytes().all(|b| b"0123456789abcdefghjkmnpqrstvwxyz".contains(&b)), "{id}");
    let limits = &w["limits"];
    assert_eq!(limits["max_message_bytes"], 131072);
    assert_eq!(limits["max_peers_per_room"], 7);
    assert_eq!(limits["max_meta_bytes"], 333);
    assert_eq!(limits["max_json_depth"], 32);
    for key in [
        "max_rooms",
        "messages_per_sec",
        "candidates_per_sec",
        "descriptions_per_min",
        "max_candidates_per_negotiation",
    ] {
        assert!(limits[key].is_u64(), "limits.{key} missing: {limits}");
    }
    // Ids are per connection.
    let other = V1Peer::connect(&v1_url(&node)).await;
    assert_ne!(other.id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_announce_membership() {
    let node = start(&[]);
    let url = v1_url(&node);
    let mut a = V1Peer::connect(&url).await;
    let mut b = V1Peer::connect(&url).await;
    let mut c = V1Peer::connect(&url).await;

    assert_eq!(a.join("lobby").await, json!({"type": "joined", "room": "lobby", "peer_id": a.id, "peers": []}));
    let jb = b.join("lobby").await;
    assert_eq!(jb, json!({"type": "joined", "room": "lobby", "peer_id": b.id, "peers": [{"peer_id": a.id}]}));
    assert_eq!(a.ws.recv().await, json!({"type": "peer-joined", "room": "lobby", "peer": {"peer_id": b.id}}));

    let jc = c.join("lobby").await;
    assert_eq!(peer_ids(&jc), set(&[&a.id, &b.id]));
    let pj = json!({"type": "peer-joined", "room": "lobby", "peer": {"peer_id": c.id}});
    assert_eq!(a.ws.recv().await, pj);
    assert_eq!(b.ws.recv().await, pj);

    b.ws.send_json(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(b.ws.recv().await, json!({"type": "left", "room": "lobby"}));
    let pl = json!({"type": "peer-left", "room": "lobby", "peer_id": b.id, "reason": "left"});
    assert_eq!(a.ws.recv().await, pl);
    assert_eq!(c.ws.recv().await, pl);

    // Gone means gone: b may no longer address the room, and a cannot reach b there.
    b.signal("lobby", &a.id, json!({"x": 1})).await;
    b.ws.expect_error("not-joined").await;
    a.signal("lobby", &b.id, json!({"x": 1})).await;
    a.ws.expect_error("unknown-peer").await;
    b.ws.send_json(json!({"type": "leave", "room": "lobby"})).await;
    b.ws.expect_error("not-joined").await;

    // Rejoining works and shows the current members.
    let again = b.join("lobby").await;
    assert_eq!(peer_ids(&again), set(&[&a.id, &c.id]));
    a.ws.expect("peer-joined").await;
    c.ws.expect("peer-joined").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_errors_are_typed() {
    let node = start(&[]);
    let mut a = joined(&node, "room-1").await;
    for bad in ["", "a b", "seed/x", "é", &"x".repeat(129)] {
        a.ws.send_json(json!({"type": "join", "room": bad})).await;
        a.ws.expect_error("bad-room").await;
    }
    a.ws.send_json(json!({"type": "join", "room": "room-1"})).await;
    a.ws.expect_error("already-joined").await;
    a.ws.send_json(json!({"type": "join"})).await;
    a.ws.expect_error("bad-message").await;
    a.signal("room-1", "not-a-peer-id", json!({})).await;
    a.ws.expect_error("bad-peer-id").await;
    a.signal("room-1", "0000000000000", json!({})).await;
    a.ws.expect_error("unknown-peer").await;
    // A 128-character name of every allowed character class is fine.
    let long = format!("Az09_-.:@{}", "r".repeat(119));
    assert_eq!(a.join(&long).await["room"], long.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_reaches_only_its_target() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "call").await;
    let mut c = joined(&node, "call").await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;

    let data = json!({"hello": "b", "n": [1, 2, 3]});
    a.signal("call", &b.id, data.clone()).await;
    assert_eq!(b.ws.recv().await, json!({"type": "signal", "room": "call", "from": a.id, "data": data}));
    c.ws.expect_silence(SILENCE).await;
    a.ws.expect_silence(SILENCE).await;

    // And the other way round, to the third member.
    signal_arrives(&mut c, &mut a, "call", offer()).await;
    b.ws.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_other_member_but_not_the_sender() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "party").await;
    let mut c = joined(&node, "party").await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;

    let data = json!({"chat": "hi all"});
    a.ws.send_json(json!({"type": "broadcast", "room": "party", "data": data})).await;
    let expected = json!({"type": "broadcast", "room": "party", "from": a.id, "data": data});
    assert_eq!(b.ws.recv().await, expected);
    assert_eq!(c.ws.recv().await, expected);
    a.ws.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_socket_reports_disconnected() {
    let node = start(&["--reconnect-grace-ms", "500"]);
    let (mut a, b) = pair(&node, "r").await;
    let c = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;

    // A clean close (close frame)…
    let b_id = b.id.clone();
    b.ws.close().await;
    assert_eq!(a.ws.recv().await, json!({"type": "peer-left", "room": "r", "peer_id": b_id, "reason": "disconnected"}));

    // …and a TCP connection that just goes away: held for its resume, which does not come.
    let c_id = c.id.clone();
    let dropped = std::time::Instant::now();
    drop(c);
    assert_eq!(a.ws.recv().await, json!({"type": "peer-state", "room": "r", "peer_id": c_id, "state": "reconnecting"}));
    assert_eq!(a.ws.recv().await, json!({"type": "peer-left", "room": "r", "peer_id": c_id, "reason": "timeout"}));
    assert!(dropped.elapsed() >= Duration::from_millis(450), "left before its grace: {:?}", dropped.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_from_is_ignored() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "r").await;
    let mut c = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;
    b.ws.expect("peer-joined").await;

    // a claims to be c, in the envelope and in a top-level field the server must not trust.
    a.ws.send_json(json!({"type": "signal", "room": "r", "to": b.id, "from": c.id, "data": {"n": 1}})).await;
    let got = b.ws.expect("signal").await;
    assert_eq!(got["from"], a.id.as_str(), "{got}");
    a.ws.send_json(json!({"type": "broadcast", "room": "r", "from": b.id, "data": {"n": 2}})).await;
    assert_eq!(b.ws.expect("broadcast").await["from"], a.id.as_str());
    assert_eq!(c.ws.expect("broadcast").await["from"], a.id.as_str());
    // c saw nothing of the targeted signal.
    c.ws.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_room_addressing_is_refused() {
    let node = start(&[]);
    let mut a = joined(&node, "room-a").await;
    let mut b = joined(&node, "room-b").await;

    // Into a room a did not join (even though b is there).
    a.signal("room-b", &b.id, json!({"x": 1})).await;
    a.ws.expect_error("not-joined").await;
    a.ws.send_json(json!({"type": "broadcast", "room": "room-b", "data": {"x": 2}})).await;
    a.ws.expect_error("not-joined").await;
    // Within a's room, to a peer who is only in another room.
    a.signal("room-a", &b.id, json!({"x": 3})).await;
    a.ws.expect_error("unknown-peer").await;
    b.ws.expect_silence(SILENCE).await;
    assert_alive(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_addressed_signal_is_refused() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "r").await;
    let me = a.id.clone();
    a.signal("r", &me, offer()).await;
    a.ws.expect_error("self-addressed").await;
    b.ws.expect_silence(SILENCE).await;
    signal_arrives(&mut a, &mut b, "r", offer()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_is_shown_to_other_members() {
    let node = start(&[]);
    let url = v1_url(&node);
    let mut a = V1Peer::connect(&url).await;
    let mut b = V1Peer::connect(&url).await;
    let mut c = V1Peer::connect(&url).await;
    let ann = json!({"name": "Ann", "tags": ["host"], "n": 1});
    a.ws.send_json(json!({"type": "join", "room": "m", "meta": ann})).await;
    a.ws.expect("joined").await;

    let bob = json!({"name": "Bob"});
    b.ws.send_json(json!({"type": "join", "room": "m", "meta": bob})).await;
    let jb = b.ws.expect("joined").await;
    assert_eq!(jb["peers"], json!([{"peer_id": a.id, "meta": ann}]));
    assert_eq!(a.ws.recv().await, json!({"type": "peer-joined", "room": "m", "peer": {"peer_id": b.id, "meta": bob}}));

    // `meta: null` is the same as no meta.
    c.ws.send_json(json!({"type": "join", "room": "m", "meta": null})).await;
    let jc = c.ws.expect("joined").await;
    let peers = jc["peers"].as_array().expect("peers");
    assert!(peers.contains(&json!({"peer_id": a.id, "meta": ann})), "{jc}");
    assert!(peers.contains(&json!({"peer_id": b.id, "meta": bob})), "{jc}");
    assert_eq!(a.ws.recv().await, json!({"type": "peer-joined", "room": "m", "peer": {"peer_id": c.id}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_is_echoed_on_replies_and_errors() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "r").await;

    a.ws.send_json(json!({"type": "join", "room": "other", "id": 7})).await;
    let j = a.ws.expect("joined").await;
    assert_eq!(j["id"], 7);
    a.ws.send_json(json!({"type": "ping", "id": "p-1"})).await;
    assert_eq!(a.ws.recv().await, json!({"type": "pong", "id": "p-1"}));
    a.ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(a.ws.recv().await, json!({"type": "pong"}));
    a.ws.send_json(json!({"type": "leave", "room": "other", "id": -3.5})).await;
    assert_eq!(a.ws.recv().await, json!({"type": "left", "room": "other", "id": -3.5}));

    // Errors found by the session, by the parser, by the shape check and by the room.
    let cases = [
        (json!({"type": "join", "room": "r", "id": "dup"}), "already-joined", json!("dup")),
        (json!({"type": "signal", "room": "nope", "to": b.id, "data": {}, "id": 1}), "not-joined", json!(1)),
        (json!({"type": "dance", "id": "d"}), "unknown-type", json!("d")),
        (
            json!({"type": "signal", "room": "r", "to": b.id, "data": {"type": "offer", "sdp": "x"}, "id": 2}),
            "bad-sdp",
            json!(2),
        ),
        (
            json!({"type": "signal", "room": "r", "to": "0000000000000", "data": {}, "id": "u"}),
            "unknown-peer",
            json!("u"),
        ),
    ];
    for (msg, code, id) in cases {
        a.ws.send_json(msg).await;
        let e = a.ws.expect_error(code).await;
        assert_eq!(e["id"], id, "{e}");
        assert!(e["message"].is_string(), "{e}");
    }
    // An `id` that is not a short scalar is refused and not echoed; `null` is no id.
    for bad in [json!({"a": 1}), json!([1]), json!(true), json!("x".repeat(63))] {
        a.ws.send_json(json!({"type": "ping", "id": bad})).await;
        let e = a.ws.expect_error("bad-message").await;
        assert!(e.get("id").is_none(), "{e}");
    }
    let longest = "x".repeat(62); // 64 bytes with its quotes
    a.ws.send_json(json!({"type": "ping", "id": longest})).await;
    assert_eq!(a.ws.recv().await, json!({"type": "pong", "id": longest}));
    a.ws.send_json(json!({"type": "ping", "id": null})).await;
    assert_eq!(a.ws.recv().await, json!({"type": "pong"}));
    b.ws.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_echoed_only_when_requested() {
    let node = start(&[]);
    let (resp, ws) =
        RawWs::handshake(&node.addr, "/v1/ws", &[("Sec-WebSocket-Protocol", "chat, switchboard.v1")]).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(resp.header("sec-websocket-protocol"), Some("switchboard.v1"), "{resp:?}");
    let mut ws = ws.expect("socket");
    assert_eq!(ws.recv_json().await["type"], "welcome");

    let (resp, _) = RawWs::handshake(&node.addr, "/v1/ws", &[]).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-protocol"), None, "{resp:?}");

    let (resp, _) = RawWs::handshake(&node.addr, "/v1/ws", &[("Sec-WebSocket-Protocol", "chat")]).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-protocol"), None, "an unknown subprotocol must not be echoed: {resp:?}");

    // A standard client that asks for the subprotocol accepts the handshake.
    let mut c =
        Client::connect_with(&v1_url(&node), &[("Sec-WebSocket-Protocol", "switchboard.v1")]).await.expect("connect");
    assert_eq!(c.recv().await["type"], "welcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refusals_are_json() {
    let node = start(&[]);
    let (status, body) = node.get("/v1/ws");
    assert_eq!(status, 426, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["error"]["code"], "bad-message");
    let (resp, ws) = RawWs::handshake(&node.addr, "/v2/ws", &[]).await;
    assert_eq!(resp.status, 404, "{resp:?}");
    assert!(ws.is_none());
    assert_eq!(serde_json::from_str::<Value>(&resp.body).expect("json")["error"]["code"], "bad-message");
    let (status, body) = node.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["ready"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_echoes_the_clients_close_code() {
    let node = start(&[]);
    for code in [1000u16, 3001, 4999] {
        let (mut ws, _) = RawWs::connect_v1(&node).await;
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"done");
        ws.send_frame(true, op::CLOSE, &payload).await;
        assert_eq!(ws.expect_close().await, Some((code, "bye".into())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_joined_arrives_before_the_newcomers_first_signal() {
    let node = start(&[]);
    let mut a = joined(&node, "r").await;
    // Newcomers signal the moment they have `joined`; a must always hear of them first.
    for _ in 0..20 {
        let mut x = V1Peer::connect(&v1_url(&node)).await;
        x.ws.send_json(json!({"type": "join", "room": "r"})).await;
        x.ws.expect("joined").await;
        x.signal("r", &a.id, offer()).await;
        let first = a.ws.recv().await;
        assert_eq!(
            (first["type"].as_str(), first["peer"]["peer_id"].as_str()),
            (Some("peer-joined"), Some(x.id.as_str())),
            "{first}"
        );
        assert_eq!(a.ws.recv().await["from"], x.id.as_str());
        x.ws.close().await;
        assert_eq!(a.ws.expect("peer-left").await["peer_id"], x.id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_of_64_kib_passes_through_intact() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "big").await;
    let sdp = big_sdp(64 * 1024);
    assert_eq!(sdp.len(), 64 * 1024);

    let data = json!({"type": "offer", "sdp": sdp});
    a.signal("big", &b.id, data).await;
    let got = b.ws.expect("signal").await;
    let got_sdp = got["data"]["sdp"].as_str().expect("sdp");
    assert_eq!(got_sdp.len(), sdp.len());
    assert!(got_sdp.as_bytes() == sdp.as_bytes(), "the SDP changed on the way");
    assert_eq!(got["data"]["type"], "offer");

    // The answer back, and a broadcast of the same size.
    let answer = format!("v=0\r\n{}", &sdp[5..]);
    b.signal("big", &a.id, json!({"type": "answer", "sdp": answer})).await;
    assert!(a.ws.expect("signal").await["data"]["sdp"].as_str() == Some(answer.as_str()));
    b.ws.send_json(json!({"type": "broadcast", "room": "big", "data": {"blob": sdp}})).await;
    assert!(a.ws.expect("broadcast").await["data"]["blob"].as_str() == Some(sdp.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_payloads_are_shape_checked_and_app_data_passes() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "r").await;
    let refused = [
        (json!({"type": "offer", "sdp": "hello"}), "bad-sdp"),
        (json!({"type": "answer"}), "bad-sdp"),
        (json!({"type": "offer", "sdp": 42}), "bad-sdp"),
        (json!({"sdp": "v=0"}), "bad-sdp"),
        (json!({"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host"}), "bad-candidate"),
        (json!({"candidate": "hello", "sdpMid": "0"}), "bad-candidate"),
        (json!({"candidate": "candidate:1 1 udp 1 192.0.2.1 99999 typ host", "sdpMid": "0"}), "bad-candidate"),
    ];
    for (data, code) in refused {
        a.signal("r", &b.id, data).await;
        a.ws.expect_error(code).await;
    }
    b.ws.expect_silence(SILENCE).await;

    let passed = [
        offer(),
        answer(),
        json!({"type": "pranswer", "sdp": "v=0\r\n"}),
        json!({"type": "rollback"}),
        candidate(1),
        json!({"candidate": "", "sdpMid": "0"}),
        json!({"chat": "app data", "type": "custom"}),
        json!([1, "two", null]),
        json!("just text"),
        json!(42),
    ];
    for data in passed {
        signal_arrives(&mut a, &mut b, "r", data).await;
    }
    a.ws.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_messages_errors_and_relays() {
    let node = start(&[]);
    let before = |ty: &str| node_metric(&node, "switchboard_messages_in_total", &[("protocol", "v1"), ("type", ty)]);
    let err = |code: &str| node_metric(&node, "switchboard_errors_total", &[("code", code)]);
    let relays = || node_metric(&node, "switchboard_relay_latency_seconds_count", &[]);
    let (signals0, pings0, bad_json0, not_joined0, relays0) =
        (before("signal"), before("ping"), err("bad-json"), err("not-joined"), relays());

    let (mut a, mut b) = pair(&node, "r").await;
    for i in 0..3 {
        signal_arrives(&mut a, &mut b, "r", json!({"i": i})).await;
    }
    a.ws.send_json(json!({"type": "broadcast", "room": "r", "data": 1})).await;
    b.ws.expect("broadcast").await;
    a.ws.send_text("{not json").await;
    a.ws.expect_error("bad-json").await;
    a.signal("elsewhere", &b.id, json!({})).await;
    a.ws.expect_error("not-joined").await;
    assert_alive(&mut a).await;

    assert_eq!(before("signal") - signals0, 4.0, "3 relayed signals + 1 refused");
    assert_eq!(before("broadcast"), 1.0);
    assert_eq!(before("join"), 2.0);
    assert_eq!(before("ping") - pings0, 1.0);
    assert_eq!(err("bad-json") - bad_json0, 1.0);
    assert_eq!(err("not-joined") - not_joined0, 1.0);
    assert!(before("invalid") >= 1.0);
    assert_eq!(relays() - relays0, 4.0, "3 signals + 1 broadcast to one member");
    assert_eq!(node_metric(&node, "switchboard_connections", &[("protocol", "v1")]), 2.0);
    assert_eq!(node_metric(&node, "switchboard_rooms", &[]), 1.0);
    assert!(node_metric(&node, "switchboard_messages_out_total", &[("protocol", "v1"), ("type", "signal")]) >= 3.0);

    // When everyone is gone, the gauges come back down (sessions and rooms end asynchronously).
    a.ws.close().await;
    b.ws.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (conns, rooms) = (
            node_metric(&node, "switchboard_connections", &[("protocol", "v1")]),
            node_metric(&node, "switchboard_rooms", &[]),
        );
        if conns == 0.0 && rooms == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "gauges stuck at connections={conns} rooms={rooms}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node_metric(&node, "switchboard_room_members", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_isolated() {
    let node = start(&[]);
    let (mut r1, mut r2) = pair(&node, "red").await;
    let (mut b1, mut b2) = pair(&node, "blue").await;
    // One peer in both rooms sees each room's traffic once, labelled with its room.
    let mut both = joined(&node, "red").await;
    both.join("blue").await;
    for p in [&mut r1, &mut r2, &mut b1, &mut b2] {
        p.ws.expect("peer-joined").await;
    }

    const N: u64 = 20;
    for i in 0..N {
        r1.signal("red", &r2.id, json!({"red": i})).await;
        b1.signal("blue", &b2.id, json!({"blue": i})).await;
        r1.ws.send_json(json!({"type": "broadcast", "room": "red", "data": {"red-all": i}})).await;
        b1.ws.send_json(json!({"type": "broadcast", "room": "blue", "data": {"blue-all": i}})).await;
    }
    for (rx, room, from) in [(&mut r2, "red", r1.id.clone()), (&mut b2, "blue", b1.id.clone())] {
        let (mut sig, mut all) = (0, 0);
        for _ in 0..2 * N {
            let m = rx.ws.recv().await;
            assert_eq!(m["room"], room, "{m}");
            assert_eq!(m["from"], from.as_str(), "{m}");
            match m["type"].as_str() {
                Some("signal") => {
                    assert_eq!(m["data"][room], sig, "{m}");
                    sig += 1;
                }
                Some("broadcast") => {
                    assert_eq!(m["data"][format!("{room}-all")], all, "{m}");
                    all += 1;
                }
                _ => panic!("unexpected {m}"),
            }
        }
    }
    let (mut red, mut blue) = (0, 0);
    for _ in 0..2 * N {
        let m = both.ws.expect("broadcast").await;
        match m["room"].as_str() {
            Some("red") => {
                assert_eq!(m["data"]["red-all"], red, "{m}");
                red += 1;
            }
            Some("blue") => {
                assert_eq!(m["data"]["blue-all"], blue, "{m}");
                blue += 1;
            }
            _ => panic!("unexpected {m}"),
        }
    }
    for p in [&mut r1, &mut r2, &mut b1, &mut b2, &mut both] {
        match p.ws.next_within(SILENCE).await {
            None => {}
            Some(Frame::Json(v)) => panic!("leak: {v}"),
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}
