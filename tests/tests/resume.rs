//! Drain and resume, case by case, on two nodes of a Redis cluster (clients connect straight
//! to the nodes; `rolling_restart.rs` does it behind nginx): a drained peer resumes on the other
//! node and gets what was sent to it in the gap; a bad or used token is refused with
//! `resume-failed` and 4410; a whole room moves; the seed dialect and a lone node still just
//! close with 1001; a client that ignores `reconnect` cannot hold a node past its bound.

mod cluster;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{
    Client, Frame, Node, ResumingPeer, STEP_TIMEOUT, StreamPlan, V1Peer, node_binary, percentile, with_query,
};
use tokio_tungstenite::tungstenite;

use cluster::Cluster;
use cluster::members::QUIET;

/// Long enough that a drained node still runs while the test looks at it.
const DRAIN_ARGS: &[&str] = &["--shutdown-timeout-secs", "20"];

/// The next frame must be a signal from `from`; returns its `data.seq`.
async fn signal_seq(c: &mut Client, from: &str) -> u64 {
    let v = c.recv().await;
    assert_eq!(v["type"], "signal", "expected a signal, got {v}");
    assert_eq!(v["from"], from, "{v}");
    v["data"]["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {v}"))
}

/// The next frame must be `reconnect`; returns (token, within_ms).
async fn expect_reconnect(c: &mut Client) -> (String, u64) {
    let v = c.recv().await;
    assert_eq!(v["type"], "reconnect", "expected reconnect, got {v}");
    let token = v["resume_token"].as_str().unwrap_or_else(|| panic!("no resume_token: {v}")).to_string();
    let within = v["within_ms"].as_u64().unwrap_or_else(|| panic!("no within_ms: {v}"));
    assert!(!token.is_empty() && within > 0, "{v}");
    (token, within)
}

/// The client's side of the close after `reconnect`: close 1000, read to the server's close
/// (1012 `service-restart`); returns the frames that came before it.
async fn close_after_reconnect(c: &mut Client) -> Vec<Value> {
    assert!(c.send_close(1000, "").await, "socket gone before the client's close");
    let mut before = Vec::new();
    loop {
        match c.next().await {
            Frame::Json(v) => before.push(v),
            Frame::Close(close) => {
                assert_eq!(close, Some((1012, "service-restart".to_string())), "server's close after reconnect");
                return before;
            }
            Frame::Ended => panic!("socket ended without the server's close (frames before: {before:?})"),
        }
    }
}

/// Resumes at `url` with `token`; the first frame must be the resumed welcome of `id`.
async fn resume(url: &str, token: &str, id: &str) -> (Client, Value) {
    let mut c = Client::connect(&with_query(url, "resume", token)).await;
    let w = c.recv().await;
    assert_eq!(w["type"], "welcome", "a resume must be answered with welcome, got {w}");
    assert_eq!(w["resumed"], true, "{w}");
    assert_eq!(w["peer_id"], id, "resumed under another peer id: {w}");
    (c, w)
}

/// A resume attempt that must be refused: `resume-failed`, then close 4410.
async fn expect_resume_failed(url: &str, token: &str) {
    let mut c = Client::connect(&with_query(url, "resume", token)).await;
    c.expect_error("resume-failed").await;
    assert_eq!(c.expect_close().await.map(|c| c.0), Some(4410), "close after resume-failed");
}

/// Waits (off the runtime's workers) until `node` exits; panics after `within`.
async fn wait_exit(node: &mut Node, within: Duration) -> Duration {
    let start = Instant::now();
    tokio::task::block_in_place(|| node.wait_exit(within))
        .unwrap_or_else(|| panic!("node still runs after {within:?}"));
    start.elapsed()
}

/// (a) The headline: p on A, its partner q on B. A drains: p is told to reconnect, resumes on
/// B, and gets every signal q sent meanwhile (before p's close, and between the close and the
/// resume) exactly once, in order; q never sees p leave. A answers new upgrades 503 meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_peer_resumes_on_another_node_with_what_was_sent_in_the_gap() {
    let mut c = Cluster::start(2, DRAIN_ARGS);
    let (url_a, url_b) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let mut p = V1Peer::connect(&url_a).await;
    let mut q = V1Peer::connect(&url_b).await;
    p.join("gap").await;
    q.join("gap").await;
    p.ws.expect("peer-joined").await;
    let mut got = Vec::new();
    for s in 0..3 {
        q.signal("gap", &p.id, json!({"kind": "candidate", "seq": s})).await;
        got.push(signal_seq(&mut p.ws, &q.id).await);
    }

    c.nodes[0].terminate();
    let (token, within_ms) = expect_reconnect(&mut p.ws).await;
    let told = Instant::now();
    // Sent before p's close: they may arrive on the old socket or after the resume.
    for s in 3..6 {
        q.signal("gap", &p.id, json!({"kind": "candidate", "seq": s})).await;
    }
    for v in close_after_reconnect(&mut p.ws).await {
        assert_eq!(v["type"], "signal", "only q's signals may come before the close: {v}");
        assert_eq!(v["from"], q.id.as_str(), "{v}");
        got.push(v["data"]["seq"].as_u64().expect("seq"));
    }
    let before_close = got.len() - 3;
    // Sent while p is away: all parked for it.
    for s in 6..12 {
        q.signal("gap", &p.id, json!({"kind": "candidate", "seq": s})).await;
    }
    // The draining node turns new upgrades away before the upgrade, for a balancer to retry.
    match Client::connect_with(&url_a, &[]).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503, "{resp:?}");
            let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok());
            assert_eq!(retry, Some("1"), "{resp:?}");
        }
        Err(e) => panic!("a draining node must answer an upgrade with 503, got {e}"),
        Ok(_) => panic!("a draining node accepted a new WebSocket"),
    }

    let (mut r, w) = resume(&url_b, &token, &p.id).await;
    let gap = told.elapsed();
    assert_eq!(w["node_id"], "n1", "{w}");
    while got.len() < 12 {
        match r.next_within(STEP_TIMEOUT).await {
            Some(Frame::Json(v)) if v["type"] == "signal" && v["from"] == q.id.as_str() => {
                got.push(v["data"]["seq"].as_u64().expect("seq"))
            }
            other => panic!(
                "after the resume p ({}) got {other:?}; q's ({}) signals so far: {got:?} ({before_close} before the close)",
                p.id, q.id
            ),
        }
    }
    assert_eq!(got, (0..12).collect::<Vec<u64>>(), "q's signals to p: lost, doubled or reordered");
    r.expect_silence(QUIET).await;
    // q saw nothing at all: no peer-left, no error.
    q.ws.expect_silence(QUIET).await;
    println!("within_ms {within_ms}; {before_close} signals before the close; reconnect to resumed welcome {gap:?}");

    // The resumed session is p, in the room, both ways; p must not join again.
    r.send_json(json!({"type": "signal", "room": "gap", "to": q.id, "data": {"kind": "answer", "seq": 0}})).await;
    assert_eq!(signal_seq(&mut q.ws, &p.id).await, 0);
    q.signal("gap", &p.id, json!({"kind": "candidate", "seq": 12})).await;
    assert_eq!(signal_seq(&mut r, &q.id).await, 12);

    // A's only session resumed elsewhere: it has nothing left to wait for.
    let exit = wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
    println!("A exited {exit:?} after the resume");
}

/// (b) An unknown or malformed token is refused with `resume-failed`, close 4410.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_resume_token_is_refused_with_resume_failed_and_4410() {
    let c = Cluster::start(2, DRAIN_ARGS);
    let url = c.nodes[0].ws_url("/v1/ws");
    for token in ["not-a-token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "\u{0}\u{ff}%?&="] {
        expect_resume_failed(&url, token).await;
    }
    // The node is fine: a fresh peer connects as ever.
    V1Peer::connect(&url).await;
}

/// (c) A token resumes once: a second use is refused, and the first resumed session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_token_works_once() {
    let mut c = Cluster::start(2, DRAIN_ARGS);
    let (url_a, url_b) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let mut p = V1Peer::connect(&url_a).await;
    let mut q = V1Peer::connect(&url_b).await;
    p.join("once").await;
    q.join("once").await;
    p.ws.expect("peer-joined").await;

    c.nodes[0].terminate();
    let (token, _) = expect_reconnect(&mut p.ws).await;
    assert!(close_after_reconnect(&mut p.ws).await.is_empty());
    let (mut r, _) = resume(&url_b, &token, &p.id).await;
    expect_resume_failed(&url_b, &token).await;

    // The second attempt took nothing from the first.
    q.signal("once", &p.id, json!({"kind": "offer", "seq": 0})).await;
    assert_eq!(signal_seq(&mut r, &q.id).await, 0);
    r.send_json(json!({"type": "signal", "room": "once", "to": q.id, "data": {"kind": "answer", "seq": 0}})).await;
    assert_eq!(signal_seq(&mut q.ws, &p.id).await, 0);
    r.expect_silence(QUIET).await;
    q.ws.expect_silence(QUIET).await;
    wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
}

/// (d) Both peers of a room on A, streaming to each other; A drains, both resume on B, and
/// each gets every signal of the other once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_room_moves_to_another_node_mid_exchange() {
    const N: u64 = 100;
    let mut c = Cluster::start(2, DRAIN_ARGS);
    let (url_a, url_b) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let via = [url_b.clone()];
    let mut a = ResumingPeer::connect(&url_a).await.resume_via(&via);
    let mut b = ResumingPeer::connect(&url_a).await.resume_via(&via);
    a.join("moving").await;
    b.join("moving").await;
    a.expect("peer-joined").await;
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    let plan = |to: &str, offerer| StreamPlan {
        room: "moving".into(),
        to: to.to_string(),
        count: N,
        every: Duration::from_millis(20),
        offerer,
    };
    let sa = a.stream(plan(&b_id, true));
    let sb = b.stream(plan(&a_id, false));
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.nodes[0].terminate();

    let deadline = Instant::now() + Duration::from_secs(15);
    while (sa.received() < N as usize || sb.received() < N as usize) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sa.stop();
    sb.stop();
    let ((la, _pa), (lb, _pb)) = (sa.finish().await, sb.finish().await);
    for (l, partner) in [(&la, &b_id), (&lb, &a_id)] {
        let gaps = l.gaps();
        println!(
            "{}: {} resume(s), gap {:?} ms, longest interval between signals {} ms, nodes {:?}",
            l.id,
            l.resumes.len(),
            gaps.iter().map(Duration::as_millis).collect::<Vec<_>>(),
            l.longest_signal_interval().as_millis(),
            l.nodes
        );
        assert!(l.problems.is_empty(), "{}: {:?}", l.id, l.problems);
        assert!(l.errors.is_empty(), "{}: {:?}", l.id, l.errors);
        let membership: Vec<&serde_json::Value> = l.membership.iter().map(|(_, m)| m).collect();
        assert!(membership.is_empty(), "{}: {membership:?}", l.id);
        assert_eq!(l.resumes.len(), 1, "{}: {:?}", l.id, l.resumes);
        assert_eq!(l.nodes, ["n0", "n1"], "{}", l.id);
        assert_eq!(l.sent.len() as u64, N);
        l.check_exact(partner, N).unwrap_or_else(|e| panic!("{e}"));
        assert!(percentile(&gaps, 100) < Duration::from_secs(3), "{:?}", l.resumes);
    }
    wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
}

async fn seed_join(c: &mut Client, channel: &str, user: &str) {
    c.send_json(json!({"type": "join", "body": {"channelName": channel, "userId": user}})).await;
    let m = c.recv().await;
    assert_eq!(m["type"], "joined", "expected joined, got {m}");
}

/// Reads to the close; panics on a `reconnect` or anything but a close.
async fn expect_plain_going_away(c: &mut Client, who: &str) {
    match c.next().await {
        Frame::Close(close) => {
            assert_eq!(close.as_ref().map(|c| c.0), Some(1001), "{who}: {close:?}");
        }
        other => panic!("{who}: expected close 1001 and nothing before it, got {other:?}"),
    }
}

/// (e) The seed dialect has no resume: on a draining clustered node its clients are closed
/// 1001 as before, while a v1 peer of the same node is told to reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_clients_of_a_draining_cluster_node_are_closed_1001() {
    let c = Cluster::start(2, DRAIN_ARGS);
    let mut seed = Client::connect(&c.nodes[0].ws_url("/ws")).await;
    seed_join(&mut seed, "seed-drain", "alice").await;
    let mut other = Client::connect(&c.nodes[1].ws_url("/ws")).await;
    seed_join(&mut other, "seed-drain", "bob").await;
    let mut v1 = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    v1.join("v1-drain").await;

    c.nodes[0].terminate();
    expect_plain_going_away(&mut seed, "seed client").await;
    expect_reconnect(&mut v1.ws).await;
}

/// (f) A lone node (embedded bus, nowhere to resume) still closes v1 peers 1001 `shutdown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_node_closes_v1_peers_1001_without_reconnect() {
    let mut node = Node::start(&node_binary(), DRAIN_ARGS);
    let mut p = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    p.join("alone").await;
    node.terminate();
    match p.ws.next().await {
        Frame::Close(close) => assert_eq!(close, Some((1001, "shutdown".to_string()))),
        other => panic!("expected close 1001 shutdown, got {other:?}"),
    }
    // Read on, so the client's half of the closing handshake goes out.
    let _ = p.ws.next_within(Duration::from_millis(500)).await;
    wait_exit(&mut node, Duration::from_secs(15)).await;
}

/// (g) A signal the client sent before it read `reconnect` (in flight as the node told it to
/// go) is still relayed, once: to a partner on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signal_sent_just_before_reading_reconnect_is_not_lost() {
    let mut c = Cluster::start(2, DRAIN_ARGS);
    let (url_a, url_b) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let mut p = V1Peer::connect(&url_a).await;
    let mut q = V1Peer::connect(&url_b).await;
    p.join("flight").await;
    q.join("flight").await;
    p.ws.expect("peer-joined").await;

    c.nodes[0].terminate();
    // The node has sent `reconnect` by now; p has not read it yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.signal("flight", &q.id, json!({"kind": "candidate", "seq": 0})).await;
    let (token, _) = expect_reconnect(&mut p.ws).await;
    let before = close_after_reconnect(&mut p.ws).await;
    let (mut r, _) = resume(&url_b, &token, &p.id).await;
    match q.ws.next_within(Duration::from_secs(2)).await {
        Some(Frame::Json(v)) if v["type"] == "signal" => assert_eq!(v["data"]["seq"], 0, "{v}"),
        other => panic!(
            "p's signal sent before it read `reconnect` never reached q: got {other:?} (p saw {before:?} before the close)"
        ),
    }
    q.ws.expect_silence(QUIET).await;
    r.expect_silence(QUIET).await;
    wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
}

/// (h) The same with both peers on the draining node: q's signal, sent before q read its own
/// `reconnect`, reaches p (before p's close or after its resume), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signal_in_flight_between_two_draining_peers_is_not_lost() {
    let mut c = Cluster::start(2, DRAIN_ARGS);
    let (url_a, url_b) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let mut p = V1Peer::connect(&url_a).await;
    let mut q = V1Peer::connect(&url_a).await;
    p.join("flight2").await;
    q.join("flight2").await;
    p.ws.expect("peer-joined").await;

    c.nodes[0].terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.signal("flight2", &p.id, json!({"kind": "candidate", "seq": 0})).await;
    let (tq, _) = expect_reconnect(&mut q.ws).await;
    let (tp, _) = expect_reconnect(&mut p.ws).await;
    let before_q = close_after_reconnect(&mut q.ws).await;
    let before_p = close_after_reconnect(&mut p.ws).await;
    let (mut rq, _) = resume(&url_b, &tq, &q.id).await;
    let (mut rp, _) = resume(&url_b, &tp, &p.id).await;
    let mut got: Vec<Value> = before_p.into_iter().filter(|v| v["type"] == "signal").collect();
    while let Some(Frame::Json(v)) = rp.next_within(QUIET).await {
        got.push(v);
    }
    assert_eq!(got.len(), 1, "q's in-flight signal reached p {} times: {got:?} (q saw {before_q:?})", got.len());
    assert_eq!(got[0]["data"]["seq"], 0, "{got:?}");
    rq.expect_silence(QUIET).await;
    wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
}

/// (i) A burst to a peer that closes right after `reconnect`: whatever the node was relaying to
/// it as it parked arrives (before the close or after the resume), each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_relayed_while_the_peer_parks_arrives_once_in_order() {
    const BURST: u64 = 200;
    let mut c = Cluster::start(2, DRAIN_ARGS);
    let (url_a, url_b) = (c.nodes[0].ws_url("/v1/ws"), c.nodes[1].ws_url("/v1/ws"));
    let mut p = V1Peer::connect(&url_a).await;
    let mut q = V1Peer::connect(&url_b).await;
    p.join("burst").await;
    q.join("burst").await;
    p.ws.expect("peer-joined").await;

    c.nodes[0].terminate();
    let (token, _) = expect_reconnect(&mut p.ws).await;
    let burst: Vec<Value> = (0..BURST)
        .map(|s| json!({"type": "signal", "room": "burst", "to": p.id, "data": {"kind": "candidate", "seq": s}}))
        .collect();
    q.ws.send_batch(&burst).await;
    // p closes while the burst is on its way through Redis to A.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut got: Vec<u64> = close_after_reconnect(&mut p.ws)
        .await
        .iter()
        .map(|v| v["data"]["seq"].as_u64().unwrap_or_else(|| panic!("not a signal: {v}")))
        .collect();
    let before_close = got.len();
    let (mut r, _) = resume(&url_b, &token, &p.id).await;
    while let Some(Frame::Json(v)) = r.next_within(Duration::from_secs(1)).await {
        got.push(v["data"]["seq"].as_u64().unwrap_or_else(|| panic!("not a signal: {v}")));
    }
    let missing: Vec<u64> = (0..BURST).filter(|s| !got.contains(s)).collect();
    assert_eq!(
        got,
        (0..BURST).collect::<Vec<u64>>(),
        "p ({}) got {} of {BURST} ({before_close} before the close); missing {missing:?}",
        p.id,
        got.len()
    );
    q.ws.expect_silence(QUIET).await;
    wait_exit(&mut c.nodes[0], Duration::from_secs(15)).await;
}

/// (j) The drain is bounded: a client that ignores `reconnect` (never closes, never resumes)
/// is parked after the close wait, and the node still exits within `--shutdown-timeout-secs`;
/// its partner on the other node then sees it leave instead of waiting on a ghost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_ignores_reconnect_cannot_hold_the_node_past_its_shutdown_timeout() {
    let mut c = Cluster::start(2, &["--shutdown-timeout-secs", "6"]);
    let mut p = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    let mut q = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    p.join("stubborn").await;
    q.join("stubborn").await;
    p.ws.expect("peer-joined").await;

    c.nodes[0].terminate();
    // p reads nothing and sends nothing from here on.
    // The bound is the shutdown timeout (the drain gives up 2 s before it, leaving the rest
    // to say goodbye and stop); a second of slack for a loaded machine.
    let took = wait_exit(&mut c.nodes[0], Duration::from_secs(10)).await;
    assert!(took <= Duration::from_secs(7), "the drain took {took:?}, past its 6 s bound");
    let left = q.ws.expect("peer-left").await;
    assert_eq!(left["peer_id"], p.id.as_str(), "{left}");
    println!("drain with a client that ignored reconnect: exited after {took:?}; its partner saw {left}");
}
