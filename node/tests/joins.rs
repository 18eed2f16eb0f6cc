//! Join and leave under races: a leave that overtakes its own join, many peers joining one room
//! at the same moment, and rooms that empty while a join is on its way.

use std::time::Duration;

use serde_json::json;
use switchboard_tests::{Client, Node, V1Peer};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-node");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_sent_before_joined_cancels_the_join() {
    let node = Node::start(BIN, &[]);
    let mut watcher = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    watcher.join("race").await;
    let mut p = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    // One write: the node reads both before the room can answer the join.
    p.ws.send_batch(&[
        json!({"type": "join", "room": "race", "id": 1}),
        json!({"type": "leave", "room": "race", "id": 2}),
    ])
    .await;
    let left = p.ws.recv().await;
    assert_eq!(left["type"], "left", "{left}");
    assert_eq!(left["id"], 2);
    p.ws.expect_silence(Duration::from_millis(300)).await;
    // The room saw the peer come and go, and holds only the watcher now.
    watcher.ws.expect("peer-joined").await;
    let gone = watcher.ws.expect("peer-left").await;
    assert_eq!(gone["peer_id"], p.id.as_str());
    assert_eq!(gone["reason"], "left");
    let mut late = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    let joined = late.join("race").await;
    assert_eq!(joined["peers"].as_array().map(Vec::len), Some(1), "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_joins_all_see_each_other() {
    let node = Node::start(BIN, &[]);
    for round in 0..20 {
        let room = format!("crowd-{round}");
        let mut peers = Vec::new();
        for _ in 0..8 {
            peers.push(V1Peer::connect(&node.ws_url("/v1/ws")).await);
        }
        for p in &mut peers {
            p.ws.send_json(json!({"type": "join", "room": room})).await;
        }
        let ids: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
        for p in &mut peers {
            let joined = p.ws.expect("joined").await;
            let mut seen: Vec<String> = joined["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["peer_id"].as_str().unwrap().to_string())
                .collect();
            // Those who joined later announce themselves with peer-joined.
            while seen.len() < ids.len() - 1 {
                let ev = p.ws.expect("peer-joined").await;
                seen.push(ev["peer"]["peer_id"].as_str().unwrap().to_string());
            }
            seen.sort();
            let mut others: Vec<String> = ids.iter().filter(|i| **i != p.id).cloned().collect();
            others.sort();
            assert_eq!(seen, others, "round {round}: membership views diverge");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_emptied_and_rejoined_at_once_keeps_working() {
    let node = Node::start(BIN, &[]);
    for i in 0..50 {
        let mut a = V1Peer::connect(&node.ws_url("/v1/ws")).await;
        a.join("flicker").await;
        // Leave and immediately let a new peer join: the registry must not stop the room
        // under the new join.
        a.ws.send_json(json!({"type": "leave", "room": "flicker"})).await;
        let mut b = V1Peer::connect(&node.ws_url("/v1/ws")).await;
        let mut c = V1Peer::connect(&node.ws_url("/v1/ws")).await;
        b.join("flicker").await;
        c.join("flicker").await;
        c.signal("flicker", &b.id, json!({"n": i})).await;
        let got = b.ws.expect("signal").await;
        assert_eq!(got["data"]["n"], i);
        a.ws.close().await;
        b.ws.close().await;
        c.ws.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_takeover_does_not_announce_a_departure() {
    let node = Node::start(BIN, &[]);
    let join = |user: &str| json!({"type": "join", "body": {"channelName": "t", "userId": user}});
    let mut bob = Client::connect(&node.ws_url("/ws")).await;
    bob.send_json(join("bob")).await;
    bob.expect("joined").await;
    let mut alice1 = Client::connect(&node.ws_url("/ws")).await;
    alice1.send_json(join("alice")).await;
    alice1.expect("joined").await;
    let mut alice2 = Client::connect(&node.ws_url("/ws")).await;
    alice2.send_json(join("alice")).await;
    let joined = alice2.expect("joined").await;
    assert_eq!(joined["body"], json!(["bob", "alice"]));
    alice1.expect_error("replaced").await;
    // Bob hears nothing: alice is still in the channel.
    bob.expect_silence(Duration::from_millis(300)).await;
    // Closing the replaced socket does not remove the new alice either.
    alice1.close().await;
    bob.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_fails_the_connection_with_1007() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, coding::Data, coding::OpCode};
    let node = Node::start(BIN, &[]);
    let mut p = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    let frame = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    p.ws.send_raw(Message::Frame(frame)).await;
    p.ws.expect_error("bad-json").await;
    assert_eq!(p.ws.expect_close().await, Some((1007, "invalid-utf8".to_string())));
}
