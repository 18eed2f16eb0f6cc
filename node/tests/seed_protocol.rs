//! The seed demo's protocol at `/ws`, through a real node process and real WebSocket clients.
//!
//! The seed (a React demo and a Node `ws` server) is our compatibility contract: its message
//! names, its `{type, body}` envelope and its relay-to-everyone-else semantics are reproduced
//! exactly. Its server's defects are not: `quit` really removes the member, malformed JSON gets
//! an `error` instead of crashing the server, a closed socket leaves its channels, and a relay's
//! sender is the connection's own join, never `body.userId`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Client, Frame, Node, V1Peer, external_tool, run_until};

const NODE_BIN: &str = env!("CARGO_BIN_EXE_switchboard-node");
/// How long a client must stay silent to count as "got nothing".
const QUIET: Duration = Duration::from_millis(300);

const OFFER_SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n";
const ANSWER_SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
const CANDIDATE_LINE: &str = "candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host";

fn start() -> Node {
    Node::start(NODE_BIN, &[])
}

async fn connect(node: &Node) -> Client {
    Client::connect(&node.ws_url("/ws")).await
}

fn offer() -> Value {
    json!({"type": "offer", "sdp": OFFER_SDP})
}

fn answer() -> Value {
    json!({"type": "answer", "sdp": ANSWER_SDP})
}

fn candidate() -> Value {
    json!({"candidate": CANDIDATE_LINE, "sdpMid": "0", "sdpMLineIndex": 0})
}

/// Sends the seed's `join` and returns the `joined` body (the channel's user ids); the very next
/// message must be `joined`.
async fn join(c: &mut Client, channel: &str, user: impl Into<Value>) -> Vec<Value> {
    c.send_json(json!({"type": "join", "body": {"channelName": channel, "userId": user.into()}})).await;
    let m = c.recv().await;
    assert_eq!(m["type"], "joined", "expected joined, got {m}");
    m["body"].as_array().unwrap_or_else(|| panic!("joined body is not an array: {m}")).clone()
}

/// The `joined` body as a sorted list of strings (the order is the node's, not the contract's).
fn sorted(users: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = users
        .iter()
        .map(|u| u.as_str().unwrap_or_else(|| panic!("user id is not a string: {u}")).to_string())
        .collect();
    v.sort();
    v
}

async fn send_offer(c: &mut Client, channel: &str, user: &str, sdp: Value) {
    c.send_json(json!({"type": "send_offer", "body": {"channelName": channel, "userId": user, "sdp": sdp}})).await;
}

async fn send_answer(c: &mut Client, channel: &str, user: &str, sdp: Value) {
    c.send_json(json!({"type": "send_answer", "body": {"channelName": channel, "userId": user, "sdp": sdp}})).await;
}

async fn send_candidate(c: &mut Client, channel: &str, user: &str, cand: Value) {
    c.send_json(
        json!({"type": "send_ice_candidate", "body": {"channelName": channel, "userId": user, "candidate": cand}}),
    )
    .await;
}

async fn quit(c: &mut Client, channel: &str, user: &str) {
    c.send_json(json!({"type": "quit", "body": {"channelName": channel, "userId": user}})).await;
}

/// Skips to the next message of type `ty` and returns its body.
async fn body_of(c: &mut Client, ty: &str) -> Value {
    c.expect(ty).await["body"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_flow_relays_offer_answer_and_candidates_verbatim() {
    let node = start();
    let mut alice = connect(&node).await;
    let mut bob = connect(&node).await;

    assert_eq!(join(&mut alice, "c", "alice").await, vec![json!("alice")]);
    assert_eq!(join(&mut bob, "c", "bob").await, vec![json!("alice"), json!("bob")]);
    // The seed protocol has no "peer joined" notice: alice learns of bob by his messages.
    alice.expect_silence(QUIET).await;

    // The offer reaches bob as `offer_sdp_received` with the sdp object exactly as sent,
    // fields the node does not know about included.
    let mut sdp = offer();
    sdp["x-extra"] = json!({"kept": [1, 2, 3]});
    send_offer(&mut alice, "c", "alice", sdp.clone()).await;
    assert_eq!(bob.recv().await, json!({"type": "offer_sdp_received", "body": sdp}));
    alice.expect_silence(QUIET).await;

    send_answer(&mut bob, "c", "bob", answer()).await;
    assert_eq!(alice.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));

    send_candidate(&mut alice, "c", "alice", candidate()).await;
    assert_eq!(bob.recv().await, json!({"type": "ice_candidate_received", "body": candidate()}));
    send_candidate(&mut bob, "c", "bob", candidate()).await;
    assert_eq!(alice.recv().await, json!({"type": "ice_candidate_received", "body": candidate()}));

    // The end-of-candidates marker is relayed as well.
    let end = json!({"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0});
    send_candidate(&mut bob, "c", "bob", end.clone()).await;
    assert_eq!(alice.recv().await, json!({"type": "ice_candidate_received", "body": end}));

    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_relay_reaches_every_other_member_but_not_the_sender() {
    let node = start();
    let mut alice = connect(&node).await;
    let mut bob = connect(&node).await;
    let mut carol = connect(&node).await;
    join(&mut alice, "c", "alice").await;
    join(&mut bob, "c", "bob").await;
    assert_eq!(sorted(&join(&mut carol, "c", "carol").await), ["alice", "bob", "carol"]);

    send_offer(&mut alice, "c", "alice", offer()).await;
    assert_eq!(bob.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    assert_eq!(carol.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));

    send_answer(&mut bob, "c", "bob", answer()).await;
    assert_eq!(alice.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));
    assert_eq!(carol.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));

    send_candidate(&mut carol, "c", "carol", candidate()).await;
    assert_eq!(alice.recv().await, json!({"type": "ice_candidate_received", "body": candidate()}));
    assert_eq!(bob.recv().await, json!({"type": "ice_candidate_received", "body": candidate()}));

    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_silence(QUIET).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_quit_removes_the_member_and_tells_the_others() {
    let node = start();
    let mut alice = connect(&node).await;
    let mut bob = connect(&node).await;
    join(&mut alice, "c", "alice").await;
    join(&mut bob, "c", "bob").await;

    quit(&mut alice, "c", "alice").await;
    assert_eq!(bob.recv().await, json!({"type": "quit", "body": {"channelName": "c", "userId": "alice"}}));

    // The seed server left `alice: null` behind, so a later joiner still saw her (and relays
    // crashed on the null socket). Here she is gone.
    let mut carol = connect(&node).await;
    assert_eq!(sorted(&join(&mut carol, "c", "carol").await), ["bob", "carol"]);

    // Relays no longer reach her, and she can no longer relay into the channel.
    send_offer(&mut bob, "c", "bob", offer()).await;
    assert_eq!(carol.recv().await["type"], "offer_sdp_received");
    alice.expect_silence(QUIET).await;
    send_offer(&mut alice, "c", "alice", offer()).await;
    alice.expect_error("not-joined").await;
    // Quitting twice is an error too, not a crash.
    quit(&mut alice, "c", "alice").await;
    alice.expect_error("not-joined").await;

    // She can come back on the same connection.
    assert_eq!(sorted(&join(&mut alice, "c", "alice").await), ["alice", "bob", "carol"]);
    send_answer(&mut alice, "c", "alice", answer()).await;
    assert_eq!(bob.recv().await["type"], "answer_sdp_received");
    assert_eq!(carol.recv().await["type"], "answer_sdp_received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_malformed_messages_get_errors_and_the_connection_lives_on() {
    let node = start();
    let mut alice = connect(&node).await;
    let mut bob = connect(&node).await;
    join(&mut alice, "c", "alice").await;
    join(&mut bob, "c", "bob").await;

    // The seed server's JSON.parse threw here and took the whole process down.
    alice.send_text("{not json").await;
    let err = alice.expect_error("bad-json").await;
    assert!(err["body"]["message"].is_string(), "{err}");
    for not_json in ["[[[", "[1,"] {
        alice.send_text(not_json).await;
        alice.expect_error("bad-json").await;
    }
    assert_eq!(err["body"].as_object().map(|o| o.len()), Some(2), "seed errors are {{code, message}}: {err}");

    // Messages the seed server crashed on or silently dropped.
    for (text, code) in [
        (r#"{"type":"join"}"#, "bad-message"),
        (r#"{"type":"join","body":{"channelName":"c"}}"#, "bad-message"),
        (r#"{"type":"send_offer","body":{"channelName":"c","userId":"alice"}}"#, "bad-message"),
        (r#"{"type":"dance","body":{}}"#, "unknown-type"),
        (r#"[1,2,3]"#, "bad-message"),
        (
            r#"{"type":"send_offer","body":{"channelName":"nowhere","userId":"alice","sdp":{"type":"offer","sdp":"v=0\r\n"}}}"#,
            "not-joined",
        ),
        (
            r#"{"type":"send_offer","body":{"channelName":"c","userId":"alice","sdp":{"type":"offer","sdp":"hello"}}}"#,
            "bad-sdp",
        ),
        (
            r#"{"type":"send_offer","body":{"channelName":"c","userId":"alice","sdp":{"type":"answer","sdp":"v=0\r\n"}}}"#,
            "bad-sdp",
        ),
        (
            r#"{"type":"send_ice_candidate","body":{"channelName":"c","userId":"alice","candidate":{"candidate":"hello","sdpMid":"0"}}}"#,
            "bad-candidate",
        ),
    ] {
        alice.send_text(text).await;
        let e = alice.recv().await;
        assert_eq!(e["type"], "error", "{text} -> {e}");
        assert_eq!(e["body"]["code"], code, "{text} -> {e}");
    }
    // None of the rejected relays reached bob.
    bob.expect_silence(QUIET).await;

    // Both connections (and the channel) still work.
    send_offer(&mut alice, "c", "alice", offer()).await;
    assert_eq!(bob.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    bob.send_text("}}}").await;
    bob.expect_error("bad-json").await;
    send_answer(&mut bob, "c", "bob", answer()).await;
    assert_eq!(alice.recv().await, json!({"type": "answer_sdp_received", "body": answer()}));

    // Other connections were never affected.
    let mut carol = connect(&node).await;
    assert_eq!(sorted(&join(&mut carol, "c", "carol").await), ["alice", "bob", "carol"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_closed_socket_leaves_the_channel() {
    let node = start();
    let mut alice = connect(&node).await;
    let mut bob = connect(&node).await;
    let mut dave = connect(&node).await;
    join(&mut bob, "c", "bob").await;
    join(&mut alice, "c", "alice").await;
    join(&mut dave, "c", "dave").await;

    // A clean close (close frame) …
    alice.close().await;
    assert_eq!(bob.recv().await, json!({"type": "quit", "body": {"channelName": "c", "userId": "alice"}}));
    assert_eq!(dave.recv().await, json!({"type": "quit", "body": {"channelName": "c", "userId": "alice"}}));

    // … and a socket that just goes away (no close frame).
    drop(dave);
    assert_eq!(bob.recv().await, json!({"type": "quit", "body": {"channelName": "c", "userId": "dave"}}));

    // The seed server kept stale sockets in the channel; a later joiner sees only bob.
    let mut carol = connect(&node).await;
    assert_eq!(sorted(&join(&mut carol, "c", "carol").await), ["bob", "carol"]);
    send_offer(&mut carol, "c", "carol", offer()).await;
    assert_eq!(bob.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    carol.expect_silence(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_relay_sender_is_its_own_join_not_body_user_id() {
    let node = start();
    let mut alice = connect(&node).await;
    let mut bob = connect(&node).await;
    join(&mut alice, "c", "alice").await;
    join(&mut bob, "c", "bob").await;

    // Bob claims to be alice. The seed server skipped the member named by body.userId, so this
    // offer went back to bob himself and never to alice. The node relays from bob's own join.
    send_offer(&mut bob, "c", "alice", offer()).await;
    assert_eq!(alice.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    bob.expect_silence(QUIET).await;

    // A client that never joined "c" cannot relay into it, whatever userId it claims.
    let mut mallory = connect(&node).await;
    send_offer(&mut mallory, "c", "alice", offer()).await;
    mallory.expect_error("not-joined").await;
    send_candidate(&mut mallory, "c", "bob", candidate()).await;
    mallory.expect_error("not-joined").await;
    // Not even after joining some other channel.
    join(&mut mallory, "elsewhere", "alice").await;
    send_answer(&mut mallory, "c", "alice", answer()).await;
    mallory.expect_error("not-joined").await;
    // Nor can it quit someone else out of the channel.
    quit(&mut mallory, "c", "bob").await;
    mallory.expect_error("not-joined").await;

    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
    send_offer(&mut alice, "c", "alice", offer()).await;
    assert_eq!(bob.recv().await["type"], "offer_sdp_received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_same_user_id_takes_over_and_numeric_ids_work() {
    let node = start();
    let mut old = connect(&node).await;
    let mut bob = connect(&node).await;
    join(&mut old, "c", "alice").await;
    join(&mut bob, "c", "bob").await;

    // A second connection with the same userId (a reload, a second tab) takes the seat.
    let mut new = connect(&node).await;
    assert_eq!(sorted(&join(&mut new, "c", "alice").await), ["alice", "bob"]);
    let err = old.expect_error("replaced").await;
    assert!(err["body"]["message"].is_string(), "{err}");

    // Relays to "alice" reach the new connection only.
    send_offer(&mut bob, "c", "bob", offer()).await;
    assert_eq!(body_of(&mut new, "offer_sdp_received").await, offer());
    old.expect_silence(QUIET).await;
    // The old connection is open but no longer in the channel.
    send_answer(&mut old, "c", "alice", answer()).await;
    old.expect_error("not-joined").await;
    send_answer(&mut new, "c", "alice", answer()).await;
    assert_eq!(body_of(&mut bob, "answer_sdp_received").await, answer());

    // userIds may be numbers (the seed builds them with toString()); they come back as strings.
    let mut one = connect(&node).await;
    let mut two = connect(&node).await;
    assert_eq!(join(&mut one, "numbers", 1).await, vec![json!("1")]);
    assert_eq!(join(&mut two, "numbers", 2).await, vec![json!("1"), json!("2")]);
    send_offer(&mut one, "numbers", "1", offer()).await;
    assert_eq!(two.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    // A number and its string form are the same user id: this takes over "2".
    let mut two_again = connect(&node).await;
    assert_eq!(sorted(&join(&mut two_again, "numbers", "2").await), ["1", "2"]);
    two.expect_error("replaced").await;
    two.close().await;
    one.send_json(json!({"type": "quit", "body": {"channelName": "numbers", "userId": 1}})).await;
    assert_eq!(body_of(&mut two_again, "quit").await, json!({"channelName": "numbers", "userId": "1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_channel_names_may_hold_spaces_and_korean() {
    let node = start();
    let mut a = connect(&node).await;
    let mut b = connect(&node).await;
    let mut other = connect(&node).await;
    let room = "회의실 1 (팀 채널)";
    join(&mut a, room, "민지").await;
    assert_eq!(join(&mut b, room, "서준").await, vec![json!("민지"), json!("서준")]);
    // A different channel, differing only in its last character, is a different channel.
    assert_eq!(join(&mut other, "회의실 1 (팀 채널", "민지").await, vec![json!("민지")]);

    send_offer(&mut a, room, "민지", offer()).await;
    assert_eq!(b.recv().await, json!({"type": "offer_sdp_received", "body": offer()}));
    send_candidate(&mut b, room, "서준", candidate()).await;
    assert_eq!(a.recv().await, json!({"type": "ice_candidate_received", "body": candidate()}));
    other.expect_silence(QUIET).await;

    quit(&mut b, room, "서준").await;
    assert_eq!(a.recv().await, json!({"type": "quit", "body": {"channelName": room, "userId": "서준"}}));

    // Names that are not printable text, or too long, are refused, not stored.
    let mut c = connect(&node).await;
    c.send_json(json!({"type": "join", "body": {"channelName": "a\nb", "userId": "x"}})).await;
    c.expect_error("bad-room").await;
    c.send_json(json!({"type": "join", "body": {"channelName": "x".repeat(129), "userId": "x"}})).await;
    c.expect_error("bad-room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_v1_namespaces_are_separate() {
    let node = start();
    let mut alice = connect(&node).await;
    join(&mut alice, "c", "alice").await;

    let mut v1 = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    let joined = v1.join("c").await;
    assert_eq!(joined["peers"], json!([]), "a v1 room must not see seed channel members: {joined}");
    // The seed namespace is not reachable by name from v1 either.
    v1.ws.send_json(json!({"type": "join", "room": "seed/c"})).await;
    v1.ws.expect_error("bad-room").await;

    let mut bob = connect(&node).await;
    assert_eq!(join(&mut bob, "c", "bob").await, vec![json!("alice"), json!("bob")]);
    alice.expect_silence(QUIET).await;

    // Nothing crosses in either direction.
    send_offer(&mut alice, "c", "alice", offer()).await;
    assert_eq!(bob.recv().await["type"], "offer_sdp_received");
    v1.ws.send_json(json!({"type": "broadcast", "room": "c", "data": {"hello": "seed?"}})).await;
    v1.ws.expect_silence(QUIET).await;
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;

    // A v1 peer joining "c" later sees only the first v1 peer.
    let mut v1b = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    let joined = v1b.join("c").await;
    let peers: Vec<&str> = joined["peers"].as_array().unwrap().iter().map(|p| p["peer_id"].as_str().unwrap()).collect();
    assert_eq!(peers, [v1.id.as_str()]);
    // Seed clients are not told about v1 peers (and never get v1 frames).
    alice.expect_silence(QUIET).await;
    match v1.ws.next().await {
        Frame::Json(m) => assert_eq!(m["type"], "peer-joined", "{m}"),
        other => panic!("expected peer-joined, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The load script of the benchmarks, against one node.

/// Copies the load scripts (read-only in the workspace) into a scratch directory that survives
/// between runs, so `npm install` happens once.
fn prepare_load_dir() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/load");
    let dst = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seed-load");
    std::fs::create_dir_all(&dst).expect("create the load scratch dir");
    for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())) {
        let entry = entry.expect("dir entry");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy a load script");
        }
    }
    dst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_load_script_loses_nothing() {
    if !external_tool("node") || !external_tool("npm") {
        return;
    }
    let node = start();
    let url = node.ws_url("/ws");
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let dir = prepare_load_dir();
        if !dir.join("node_modules").is_dir() {
            let mut npm = Command::new("npm");
            npm.args(["install", "--no-audit", "--no-fund", "--silent"]).current_dir(&dir);
            let (ok, out, err) = run_until(npm, Instant::now() + Duration::from_secs(25));
            assert!(ok, "npm install failed in {}\n{out}\n{err}", dir.display());
        }
        let mut load = Command::new("node");
        load.args([
            "load.js",
            "--proto",
            "seed",
            "--urls",
            &url,
            "--rooms",
            "50",
            "--rounds",
            "20",
            "--timeout-ms",
            "15000",
        ])
        .current_dir(&dir);
        let (ok, out, err) = run_until(load, Instant::now() + Duration::from_secs(25));
        assert!(ok, "load.js failed\nstdout: {out}\nstderr: {err}");
        out
    })
    .await
    .expect("load task");
    let line = report
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line from load.js: {report}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("load.js printed {line}: {e}"));
    println!("load.js ({:?} including setup): {v}", started.elapsed());
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["delivered"], 4000, "{v}");
}
