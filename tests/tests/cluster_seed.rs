//! The seed demo's protocol across nodes: a call between clients on two nodes, `quit` seen
//! on the other node, and a seed user id taken over from another node.

mod cluster;

use serde_json::{Value, json};
use switchboard_tests::Client;

use cluster::Cluster;
use cluster::members::*;

async fn seed_join(c: &mut Client, channel: &str, user: Value) -> Vec<String> {
    c.send_json(json!({"type": "join", "body": {"channelName": channel, "userId": user}})).await;
    let m = c.recv().await;
    assert_eq!(m["type"], "joined", "expected joined, got {m}");
    let mut users: Vec<String> = m["body"]
        .as_array()
        .unwrap_or_else(|| panic!("joined body is not an array: {m}"))
        .iter()
        .map(|u| u.as_str().unwrap_or_else(|| panic!("user id is not a string: {m}")).to_string())
        .collect();
    users.sort();
    users
}

async fn seed_send(c: &mut Client, ty: &str, channel: &str, user: Value, field: &str, payload: Value) {
    c.send_json(json!({"type": ty, "body": {"channelName": channel, "userId": user, field: payload}})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_clients_on_two_nodes_call_each_other_and_see_quits() {
    let c = Cluster::start(2, &[]);
    let ch = "회의실 1";
    let mut alice = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    let mut bob = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    assert_eq!(seed_join(&mut alice, ch, json!("alice")).await, ["alice"]);
    // A numeric user id, as the seed client may send, comes back as a string.
    assert_eq!(seed_join(&mut bob, ch, json!(42)).await, ["42", "alice"]);
    // The seed protocol has no "peer joined" notice.
    alice.expect_silence(QUIET).await;

    let mut sdp = offer();
    sdp["x-extra"] = json!({"kept": [1, 2, 3]});
    seed_send(&mut alice, "send_offer", ch, json!("alice"), "sdp", sdp.clone()).await;
    assert_eq!(bob.recv().await, json!({"type": "offer_sdp_received", "body": sdp}));
    seed_send(&mut bob, "send_answer", ch, json!(42), "sdp", answer()).await;
    assert_eq!(alice.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));
    for i in 0..5 {
        seed_send(&mut alice, "send_ice_candidate", ch, json!("alice"), "candidate", candidate(i)).await;
        seed_send(&mut bob, "send_ice_candidate", ch, json!(42), "candidate", candidate(10 + i)).await;
    }
    for i in 0..5 {
        assert_eq!(bob.recv().await, json!({"type": "ice_candidate_received", "body": candidate(i)}));
        assert_eq!(alice.recv().await, json!({"type": "ice_candidate_received", "body": candidate(10 + i)}));
    }
    let end = json!({"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0});
    seed_send(&mut bob, "send_ice_candidate", ch, json!(42), "candidate", end.clone()).await;
    assert_eq!(alice.recv().await, json!({"type": "ice_candidate_received", "body": end}));
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;

    // alice quits: bob, on the other node, is told.
    alice.send_json(json!({"type": "quit", "body": {"channelName": ch, "userId": "alice"}})).await;
    assert_eq!(bob.recv().await, json!({"type": "quit", "body": {"channelName": ch, "userId": "alice"}}));
    // She is gone from the channel on every node.
    let mut carol = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    assert_eq!(seed_join(&mut carol, ch, json!("carol")).await, ["42", "carol"]);
    seed_send(&mut bob, "send_offer", ch, json!(42), "sdp", offer()).await;
    assert_eq!(carol.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    alice.expect_silence(QUIET).await;

    // bob's socket closes: carol, on the other node, gets a quit for him.
    bob.close().await;
    assert_eq!(carol.recv().await, json!({"type": "quit", "body": {"channelName": ch, "userId": "42"}}));
    carol.expect_silence(QUIET).await;
}

/// The seed's "one userId per channel" holds across nodes: a second connection with the same
/// userId on another node takes over, as it does on one node (`seed_protocol.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_user_id_takeover_works_across_nodes() {
    let c = Cluster::start(2, &[]);
    let ch = "takeover";
    let mut old = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    let mut bob = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    assert_eq!(seed_join(&mut old, ch, json!("alice")).await, ["alice"]);
    assert_eq!(seed_join(&mut bob, ch, json!("bob")).await, ["alice", "bob"]);

    // "alice" reconnects through the other node.
    let mut new = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    assert_eq!(seed_join(&mut new, ch, json!("alice")).await, ["alice", "bob"], "alice is in the channel twice");
    let err = old.expect_error("replaced").await;
    assert!(err["body"]["message"].is_string(), "{err}");
    // bob sees no quit: alice is still there, on her new connection.
    bob.expect_silence(QUIET).await;

    // Relays to "alice" reach the new connection only; the old one is out of the channel.
    seed_send(&mut bob, "send_offer", ch, json!("bob"), "sdp", offer()).await;
    assert_eq!(new.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    old.expect_silence(QUIET).await;
    seed_send(&mut old, "send_answer", ch, json!("alice"), "sdp", answer()).await;
    old.expect_error("not-joined").await;
    seed_send(&mut new, "send_answer", ch, json!("alice"), "sdp", answer()).await;
    assert_eq!(bob.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));
}
