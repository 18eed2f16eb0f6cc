//! The seed dialect as the seed's own client uses it, on two clustered nodes (issue 14, items
//! 1-3):
//!
//! - a repeated `join` is answered with `joined` and the channel's whole membership across
//!   nodes (the seed client's only way to learn who came after it), adds no member and tells
//!   nobody anything; a `join` with another `userId` renames the member;
//! - the empty `userId` (and `channelName`) the seed client joins with before anything is typed
//!   is admitted: an anonymous member, callable, never taking over another; joining a named
//!   channel takes the connection out of the unnamed one;
//! - with access tokens a `userId` is the token's user: a token for `mallory` cannot join as
//!   `alice` nor evict her, and neither can a connection without a token, on either node.

mod cluster;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::{Client, Node};

use cluster::Cluster;
use cluster::members::{QUIET, answer, offer};

const SECRET: &str = "seed-dialect-test-secret-0123456789abcdef";
const API_KEY: &str = "seed-dialect-api-key-0123456789";

fn join_msg(channel: &str, user: &str) -> Value {
    json!({"type": "join", "body": {"channelName": channel, "userId": user}})
}

/// The user ids of a `joined`, sorted (across nodes a list is in the order Redis reads it).
fn users(m: &Value) -> Vec<String> {
    assert_eq!(m["type"], "joined", "expected joined, got {m}");
    let list = m["body"].as_array().unwrap_or_else(|| panic!("joined body is not an array: {m}"));
    let mut users: Vec<String> =
        list.iter().map(|u| u.as_str().unwrap_or_else(|| panic!("not a string: {m}")).to_string()).collect();
    users.sort();
    users
}

async fn join(c: &mut Client, channel: &str, user: &str) -> Vec<String> {
    c.send_json(join_msg(channel, user)).await;
    users(&c.recv().await)
}

async fn relay(c: &mut Client, ty: &str, channel: &str, field: &str, payload: Value) {
    c.send_json(json!({"type": ty, "body": {"channelName": channel, "userId": "ignored", field: payload}})).await;
}

fn quit_notice(channel: &str, user: &str) -> Value {
    json!({"type": "quit", "body": {"channelName": channel, "userId": user}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_join_answers_the_whole_membership_across_nodes() {
    let c = Cluster::start(2, &[]);
    let ch = "standup";
    let mut alice = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    let mut bob = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    assert_eq!(join(&mut alice, ch, "alice").await, ["alice"]);
    assert_eq!(join(&mut bob, ch, "bob").await, ["alice", "bob"]);

    // The first joiner presses Join again: it learns of bob, on the other node.
    assert_eq!(join(&mut alice, ch, "alice").await, ["alice", "bob"]);
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;

    // Two joins at once (the second while the first is on its way): two answers, one member.
    let mut carol = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    carol.send_batch(&[join_msg(ch, "carol"), join_msg(ch, "carol")]).await;
    for _ in 0..2 {
        assert_eq!(users(&carol.recv().await), ["alice", "bob", "carol"]);
    }
    let mut dave = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    assert_eq!(join(&mut dave, ch, "dave").await, ["alice", "bob", "carol", "dave"], "a repeat added a member");

    // Relays reach each member once: nobody was added twice on any node.
    relay(&mut alice, "send_offer", ch, "sdp", offer()).await;
    for p in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(p.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
        p.expect_silence(QUIET).await;
    }

    // Another userId on the same connection renames its member: the old id quits.
    assert_eq!(join(&mut carol, ch, "caroline").await, ["alice", "bob", "caroline", "dave"]);
    for p in [&mut alice, &mut bob, &mut dave] {
        assert_eq!(p.recv().await, quit_notice(ch, "carol"));
    }
    assert_eq!(join(&mut bob, ch, "bob").await, ["alice", "bob", "caroline", "dave"]);
    relay(&mut carol, "send_answer", ch, "sdp", answer()).await;
    assert_eq!(alice.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));

    // A quit ends the membership for good: a repeat then is a first join again.
    carol.send_json(json!({"type": "quit", "body": {"channelName": ch, "userId": "caroline"}})).await;
    assert_eq!(alice.recv().await, quit_notice(ch, "caroline"));
    assert_eq!(join(&mut carol, ch, "carol").await, ["alice", "bob", "carol", "dave"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_user_id_is_an_anonymous_member_that_can_be_called() {
    let c = Cluster::start(2, &[]);
    // What the seed client sends on connecting, before its user typed anything.
    let mut x = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    let mut y = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    assert_eq!(join(&mut x, "", "").await, [""]);
    // Anonymous members hold no seat: the second does not replace the first.
    assert_eq!(join(&mut y, "", "").await, ["", ""]);
    x.expect_silence(QUIET).await;

    // Then Join with what was typed: x is alice in room-1, and out of the unnamed channel.
    assert_eq!(join(&mut x, "room-1", "alice").await, ["alice"]);
    assert_eq!(y.recv().await, quit_notice("", ""));
    relay(&mut y, "send_offer", "", "sdp", offer()).await;
    x.expect_silence(QUIET).await;

    // A page whose user left the id empty, on either node, joins room-1 and is called.
    let mut z = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    let mut w = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    assert_eq!(join(&mut z, "room-1", "").await, ["", "alice"]);
    assert_eq!(join(&mut w, "room-1", "").await, ["", "", "alice"]);
    z.expect_silence(QUIET).await;
    relay(&mut x, "send_offer", "room-1", "sdp", offer()).await;
    for p in [&mut z, &mut w] {
        assert_eq!(p.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    }
    relay(&mut z, "send_answer", "room-1", "sdp", answer()).await;
    assert_eq!(x.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));
    assert_eq!(w.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));

    // Typing an id later renames the anonymous member; the other anonymous one stays.
    assert_eq!(join(&mut z, "room-1", "zoe").await, ["", "alice", "zoe"]);
    assert_eq!(x.recv().await, quit_notice("room-1", ""));
    assert_eq!(w.recv().await, quit_notice("room-1", ""));
    // A closed anonymous socket leaves like any other.
    w.close().await;
    assert_eq!(x.recv().await, quit_notice("room-1", ""));
    assert_eq!(join(&mut x, "room-1", "alice").await, ["alice", "zoe"]);
}

/// `POST /v1/tokens` on `node`: a token for `user` in seed channel `room`.
fn mint(node: &Node, room: &str, user: &str) -> String {
    let body = json!({"room": room, "user": user, "ttl_secs": 600}).to_string();
    let mut s = std::net::TcpStream::connect(&node.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let req = format!(
        "POST /v1/tokens HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        node.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let json = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("POST /v1/tokens: {e}: {out}"));
    v["token"].as_str().unwrap_or_else(|| panic!("no token: {out}")).to_string()
}

async fn with_token(node: &Node, room: &str, user: &str) -> Client {
    Client::connect(&format!("{}?access_token={}", node.ws_url("/ws"), mint(node, room, user))).await
}

fn message(err: &Value) -> &str {
    err["body"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tokens_user_is_its_seed_user_id_and_its_seat_is_its_own() {
    let c = Cluster::start(2, &["--token-secrets", SECRET, "--api-keys", API_KEY, "--allow-anonymous"]);
    let ch = "room-s";
    let (n0, n1) = (&c.nodes[0], &c.nodes[1]);
    let mut alice = with_token(n0, ch, "alice").await;
    assert_eq!(join(&mut alice, ch, "alice").await, ["alice"]);

    // Without a token, on a node that holds nobody of the channel yet (the cluster's records
    // decide): alice's seat is not taken.
    let mut eve = Client::connect(&n1.ws_url("/ws")).await;
    eve.send_json(join_msg(ch, "alice")).await;
    let err = eve.expect_error("forbidden").await;
    assert!(message(&err).contains("alice"), "{err}");

    // A token for mallory is mallory's seat only, however often it asks for alice's.
    let mut mallory = with_token(n1, ch, "mallory").await;
    for _ in 0..3 {
        mallory.send_json(join_msg(ch, "alice")).await;
        let err = mallory.expect_error("forbidden").await;
        assert!(message(&err).contains("mallory") && message(&err).contains("alice"), "{err}");
    }
    assert_eq!(join(&mut mallory, ch, "mallory").await, ["alice", "mallory"]);
    // Nor by renaming itself once in.
    mallory.send_json(join_msg(ch, "alice")).await;
    mallory.expect_error("forbidden").await;
    // And not without a token on a node that knows her.
    eve.send_json(join_msg(ch, "alice")).await;
    eve.expect_error("forbidden").await;
    alice.expect_silence(QUIET).await;
    relay(&mut mallory, "send_offer", ch, "sdp", offer()).await;
    assert_eq!(alice.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));

    // Alice's own token takes her seat over (a reload, another node); an empty id is hers.
    let mut alice2 = with_token(n1, ch, "alice").await;
    assert_eq!(join(&mut alice2, ch, "").await, ["alice", "mallory"]);
    alice.expect_error("replaced").await;
    mallory.expect_silence(QUIET).await;
    assert_eq!(join(&mut alice2, ch, "alice").await, ["alice", "mallory"]);

    // An anonymous seat yields to the token holder, never the other way round.
    let mut anon = Client::connect(&n0.ws_url("/ws")).await;
    assert_eq!(join(&mut anon, ch, "bob").await, ["alice", "bob", "mallory"]);
    let mut bob = with_token(n1, ch, "bob").await;
    assert_eq!(join(&mut bob, ch, "bob").await, ["alice", "bob", "mallory"]);
    anon.expect_error("replaced").await;
    anon.send_json(join_msg(ch, "bob")).await;
    anon.expect_error("forbidden").await;
    bob.expect_silence(QUIET).await;
}
