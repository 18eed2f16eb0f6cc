//! Resume after a broken socket on one node (the multi-process, cross-node and proxy cases are
//! in `tests/tests/resume_breaks.rs`): what the server holds, replays and refuses. (A dropped
//! seed socket still leaves its channel at once: `seed_protocol.rs`.)

mod common;

use std::time::Duration;

use common::{joined, start, v1_url};
use serde_json::{Value, json};
use switchboard_tests::{Client, Frame, Node, STEP_TIMEOUT, with_query};

/// A v1 client that remembers its resume token.
struct Peer {
    ws: Client,
    id: String,
    token: String,
}

async fn connect(url: &str) -> Peer {
    let mut ws = Client::connect(url).await;
    let w = ws.expect("welcome").await;
    assert!(w.get("seq").is_none(), "welcome carries no seq: {w}");
    let token = w["resume_token"].as_str().unwrap_or_else(|| panic!("no resume_token: {w}")).to_string();
    Peer { ws, id: w["peer_id"].as_str().expect("peer_id").to_string(), token }
}

/// Resumes `token` with `last_seq`; the welcome.
async fn resume(node: &Node, token: &str, last_seq: Option<u64>) -> (Client, Value) {
    let mut url = with_query(&v1_url(node), "resume", token);
    if let Some(n) = last_seq {
        url = with_query(&url, "last_seq", &n.to_string());
    }
    let mut ws = Client::connect(&url).await;
    let w = ws.recv().await;
    (ws, w)
}

/// The resume is refused: `resume-failed`, then close 4410.
async fn refused(node: &Node, token: &str, last_seq: Option<u64>) -> String {
    let (mut ws, v) = resume(node, token, last_seq).await;
    assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("error"), Some("resume-failed")), "{v}");
    assert_eq!(ws.expect_close().await, Some((4410, "resume-failed".into())));
    v["message"].as_str().unwrap_or_default().to_string()
}

fn state(room: &str, peer: &str, state: &str) -> Value {
    json!({"type": "peer-state", "room": room, "peer_id": peer, "state": state})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_socket_resumes_in_place_with_every_frame_once_both_ways() {
    let node = start(&["--reconnect-grace-ms", "5000"]);
    let mut a = connect(&v1_url(&node)).await;
    a.ws.send_json(json!({"type": "join", "room": "r", "cseq": 1})).await;
    a.ws.expect("joined").await;
    let mut b = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;
    for n in 2..=3 {
        a.ws.send_json(json!({"type": "broadcast", "room": "r", "data": {"n": n}, "cseq": n})).await;
        assert_eq!(b.ws.expect("broadcast").await["data"]["n"], n);
    }
    let (seen, token) = (a.ws.last_seq(), a.token.clone());
    assert_eq!(seen, 2, "joined and peer-joined were numbered 1 and 2");

    // The socket goes away without a close frame: held, and b is told.
    drop(a.ws);
    assert_eq!(b.ws.recv().await, state("r", &a.id, "reconnecting"));
    for n in 0..5 {
        b.signal("r", &a.id, json!({"n": n})).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (mut a2, w) = resume(&node, &token, Some(seen)).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(
        (w["resumed"].as_bool(), w["peer_id"].as_str(), w["last_cseq"].as_u64()),
        (Some(true), Some(a.id.as_str()), Some(3))
    );
    assert_ne!(w["resume_token"], token.as_str(), "a resumed welcome brings a fresh token");
    for n in 0..5 {
        let v = a2.recv().await;
        assert_eq!((v["type"].as_str(), v["data"]["n"].as_u64()), (Some("signal"), Some(n)), "{v}");
        assert_eq!(a2.last_seq(), seen + 1 + n, "numbering goes on where it stopped");
    }
    assert_eq!(b.ws.recv().await, state("r", &a.id, "connected"));

    // Sent again after the resume: 3 was processed before the break, 4 was not.
    for n in 3..=4 {
        a2.send_json(json!({"type": "broadcast", "room": "r", "data": {"n": n}, "cseq": n})).await;
    }
    assert_eq!(b.ws.recv().await["data"]["n"], 4);
    a2.send_json(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(a2.recv().await, json!({"type": "pong", "id": "p", "last_cseq": 4}));
    b.ws.expect_silence(Duration::from_millis(200)).await;

    // The token was used.
    assert!(refused(&node, &token, Some(seen)).await.contains("unknown, used or expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_socket_is_taken_over_and_closed() {
    let node = start(&[]);
    let mut a = connect(&v1_url(&node)).await;
    a.ws.send_json(json!({"type": "join", "room": "r"})).await;
    a.ws.expect("joined").await;
    let mut b = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;
    b.signal("r", &a.id, json!({"n": 1})).await;
    a.ws.expect("signal").await;
    // The old socket is still open (the node has not noticed anything): the resume takes over.
    let (mut a2, w) = resume(&node, &a.token, Some(a.ws.last_seq())).await;
    assert_eq!((w["resumed"].as_bool(), w["peer_id"].as_str()), (Some(true), Some(a.id.as_str())), "{w}");
    match a.ws.next_within(STEP_TIMEOUT).await {
        Some(Frame::Ended | Frame::Close(_)) => {}
        other => panic!("the old socket should be closed, got {other:?}"),
    }
    b.signal("r", &a.id, json!({"n": 2})).await;
    assert_eq!(a2.expect("signal").await["data"]["n"], 2);
    // No break was seen: no peer-state either way, nothing but what a2 sends.
    b.ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_that_cannot_be_honoured_are_refused_cleanly() {
    let node = start(&["--replay-max-frames", "4", "--reconnect-grace-ms", "5000"]);
    let mut a = connect(&v1_url(&node)).await;
    a.ws.send_json(json!({"type": "join", "room": "r"})).await;
    a.ws.expect("joined").await;
    let mut b = joined(&node, "r").await;
    a.ws.expect("peer-joined").await;

    // Tokens that open nothing.
    let wrong_secret = format!("{}.{}", a.id, "0".repeat(32));
    for bogus in ["nonsense", "0000000000001.00000000000000000000000000000000", wrong_secret.as_str()] {
        assert!(refused(&node, bogus, Some(0)).await.contains("unknown"), "{bogus}");
    }
    // A last_seq that is not a number, or ahead of the session: refused; the session goes on.
    let url = with_query(&with_query(&v1_url(&node), "resume", &a.token), "last_seq", "two");
    let mut ws = Client::connect(&url).await;
    assert!(ws.expect_error("resume-failed").await["message"].as_str().unwrap_or_default().contains("last_seq"));
    assert!(refused(&node, &a.token, Some(99)).await.contains("ahead"));
    b.signal("r", &a.id, json!({"n": 1})).await;
    assert_eq!(a.ws.expect("signal").await["data"]["n"], 1);

    // Past the bound: more arrived while it was away than a session keeps.
    let seen = a.ws.last_seq();
    drop(a.ws);
    assert_eq!(b.ws.recv().await, state("r", &a.id, "reconnecting"));
    for n in 0..6 {
        b.signal("r", &a.id, json!({"n": n})).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(refused(&node, &a.token, Some(seen)).await.contains("no longer kept"));
    // Nobody can resume it now: it ends at once.
    let left = b.ws.expect("peer-left").await;
    assert_eq!(left["peer_id"], a.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_cseqs_are_checked() {
    let node = start(&[]);
    let mut a = connect(&v1_url(&node)).await;
    for bad in [json!({"type": "ack"}), json!({"type": "ack", "seq": 0}), json!({"type": "ping", "cseq": -1, "id": 7})]
    {
        a.ws.send_json(bad.clone()).await;
        let e = a.ws.expect_error("bad-message").await;
        assert_eq!(e.get("id"), bad.get("id"), "{e}");
    }
    // An ack of more than was sent is harmless.
    a.ws.send_json(json!({"type": "ack", "seq": 1_000_000})).await;
    a.ws.send_json(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(a.ws.recv().await, json!({"type": "pong", "id": "alive"}));
}
