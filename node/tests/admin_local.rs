//! The admin API served by a lone node (embedded bus), over real HTTP, acting on real sessions.
//!
//! A single machine needs no gateway: the node mounts the gateway's routes over its own rooms.
//! What this file proves:
//! - the API wants its key (`Authorization: Bearer`): none or a wrong one is 401;
//! - `GET /v1/nodes` lists the node from its own figures; `GET /v1/rooms` pages through the
//!   rooms (both protocols) with their member counts; `GET /v1/rooms/{room}` lists members with
//!   their node, and the user and role of their access tokens (or the seed user id);
//! - `DELETE /v1/rooms/{room}/members/{peer}` kicks one member: it gets `left` reason `kicked`,
//!   the room's other peers `peer-left`; an unknown member or room is 404;
//! - `DELETE /v1/rooms/{room}` closes a room (v1 or seed): every member is told `room-closed`,
//!   other rooms hear nothing.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::auth::{Role, TokenKeys};
use switchboard_tests::{Client, Node, V1Peer};

const KEY: &str = "admin-key-0123456789";
const SECRET: &str = "an-integration-test-secret-of-40-bytes!!";
const SILENCE: Duration = Duration::from_millis(300);

/// One HTTP request over a raw socket; (status, JSON body).
fn http(node: &Node, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(&node.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
        node.addr
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {out}")))
}

fn ok(node: &Node, method: &str, path: &str) -> Value {
    let (status, body) = http(node, method, path, Some(KEY));
    assert_eq!(status, 200, "{method} {path}: {body}");
    body
}

/// Every room, following `next_cursor` one room per page: (room, protocol, members).
fn all_rooms(node: &Node) -> Vec<(String, String, u64)> {
    let mut rooms = Vec::new();
    let mut path = "/v1/rooms?limit=1".to_string();
    loop {
        let page = ok(node, "GET", &path);
        for r in page["rooms"].as_array().expect("rooms") {
            let field = |f: &str| r[f].as_str().expect("string").to_string();
            rooms.push((field("room"), field("protocol"), r["members"].as_u64().expect("members")));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/rooms?limit=1&cursor={c}"),
            None => break,
        }
        assert!(rooms.len() < 100, "the cursor never ends");
    }
    rooms.sort();
    rooms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_kick_and_close_through_the_node_s_own_api() {
    let node = start(&[
        "--node-id",
        "solo",
        "--api-keys",
        KEY,
        "--token-secrets",
        SECRET,
        "--allow-anonymous",
        "true",
        "--advertise-url",
        "ws://solo.example:8090",
    ]);
    for key in [None, Some("wrong-key-0123456789")] {
        let (status, body) = http(&node, "GET", "/v1/rooms", key);
        assert_eq!((status, &body["error"]["code"]), (401, &json!("unauthorized")), "{body}");
    }

    let keys = TokenKeys::new(&[SECRET.to_string()], "switchboard").expect("keys");
    let with_token = |user: &str, role| {
        format!("{}?access_token={}", v1_url(&node), keys.mint("lobby", user, role, Duration::from_secs(60)).0)
    };
    let mut ann = V1Peer::connect(&with_token("ann", Role::Participant)).await;
    let mut ben = V1Peer::connect(&with_token("ben", Role::Viewer)).await;
    ann.join("lobby").await;
    ben.join("lobby").await;
    ann.ws.expect("peer-joined").await;
    let mut quiet = joined(&node, "quiet").await;
    let mut sam = Client::connect(&node.ws_url("/ws")).await;
    sam.send_json(json!({"type": "join", "body": {"channelName": "hall x", "userId": "sam"}})).await;
    sam.expect("joined").await;

    let nodes = ok(&node, "GET", "/v1/nodes");
    let me = &nodes["nodes"][0];
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(
        (&me["id"], &me["url"], &me["sessions"], &me["rooms"]),
        (&json!("solo"), &json!("ws://solo.example:8090"), &json!(4), &json!(3))
    );
    assert_eq!(me["draining"], false);

    assert_eq!(
        all_rooms(&node),
        vec![("hall x".into(), "seed".into(), 1), ("lobby".into(), "v1".into(), 2), ("quiet".into(), "v1".into(), 1)]
    );
    let lobby = ok(&node, "GET", "/v1/rooms/lobby");
    let mut members: Vec<Value> = lobby["members"].as_array().expect("members").clone();
    members.sort_by_key(|m| m["user"].as_str().map(str::to_string));
    assert_eq!(
        members,
        vec![
            json!({"peer_id": ann.id, "node": "solo", "user": "ann", "role": "participant"}),
            json!({"peer_id": ben.id, "node": "solo", "user": "ben", "role": "viewer"}),
        ]
    );
    let hall = ok(&node, "GET", "/v1/rooms/hall%20x?protocol=seed");
    assert_eq!((&hall["room"], &hall["protocol"]), (&json!("hall x"), &json!("seed")), "{hall}");
    assert_eq!(hall["members"][0]["seed_user"], "sam", "{hall}");
    assert_eq!(http(&node, "GET", "/v1/rooms/nowhere", Some(KEY)).0, 404);

    // Kick: exactly that member, told why; the room's other peer sees it go.
    let kicked = ok(&node, "DELETE", &format!("/v1/rooms/lobby/members/{}", ann.id));
    assert_eq!(kicked, json!({"removed": 1}));
    assert_eq!(ann.ws.recv().await, json!({"type": "left", "room": "lobby", "reason": "kicked"}));
    let gone = ben.ws.expect("peer-left").await;
    assert_eq!((&gone["peer_id"], &gone["reason"]), (&json!(ann.id), &json!("kicked")));
    assert_eq!(ok(&node, "GET", "/v1/rooms/lobby")["members"].as_array().map(Vec::len), Some(1));
    let (status, body) = http(&node, "DELETE", &format!("/v1/rooms/lobby/members/{}", ann.id), Some(KEY));
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not-found")), "{body}");
    assert_alive(&mut ann).await;

    // Close: a seed channel, then a v1 room; the other room hears nothing.
    assert_eq!(ok(&node, "DELETE", "/v1/rooms/hall%20x?protocol=seed"), json!({"removed": 1}));
    let quit = sam.expect("quit").await;
    assert_eq!(quit["body"], json!({"channelName": "hall x", "userId": "sam", "reason": "room-closed"}));
    assert_eq!(ok(&node, "DELETE", "/v1/rooms/lobby"), json!({"removed": 1}));
    assert_eq!(ben.ws.recv().await, json!({"type": "left", "room": "lobby", "reason": "room-closed"}));
    assert_eq!(http(&node, "DELETE", "/v1/rooms/lobby", Some(KEY)).0, 404);
    quiet.ws.expect_silence(SILENCE).await;
    // Rooms close once empty; the listing follows.
    let mut rooms = all_rooms(&node);
    for _ in 0..50 {
        if rooms.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        rooms = all_rooms(&node);
    }
    assert_eq!(rooms, vec![("quiet".into(), "v1".into(), 1)]);
}
