//! The node under hostile or broken clients, through a real process.
//!
//! What this file proves:
//! - every malformed message (bad JSON, binary, unknown type, wrong shape) gets a typed error
//!   and the connection stays usable; fragmented messages are reassembled; text that is not
//!   UTF-8 (also when split across fragments) gets `bad-json` and close 1007;
//! - oversized input is refused with `message-too-big` and close 1009 — a single frame and
//!   fragments that only add up to too much — and WebSocket framing violations close the
//!   socket with 1002, without hurting the node or its other sessions;
//! - 1,000 random byte strings sent as text and 1,000 as binary (a fixed-seed xorshift, so
//!   every run sends the same bytes) each get exactly one error, while a call in another room
//!   keeps signaling in both directions and loses or reorders nothing; the node stays up;
//! - a peer that stops reading is cut off as a slow consumer (`peer-left` reason
//!   `slow-consumer`) while ≥ 30 MiB of broadcasts flood it: the node's RSS stays bounded and
//!   a concurrent call loses nothing.
//!
//! Two more pin bugs this suite found and the node fixed: a frame header that claims a huge
//! length is refused while its payload streams in (not after buffering it), and a peer that
//! reads continuously is never cut off as a slow consumer by a burst of large relays.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard_tests::{Frame, Node, STEP_TIMEOUT, V1Peer};
use tokio::task::JoinHandle;

/// Signals per direction per round of a [`Call`].
const CALL_BURST: u64 = 20;

/// A [`Call`] is a probe, not the subject: it trickles candidates without renegotiating, so
/// nodes that host one lift the candidate limits (and the general rate, for the floods).
const CALL_FRIENDLY: [&str; 6] =
    ["--messages-per-sec", "0", "--candidates-per-sec", "0", "--max-candidates-per-negotiation", "1000000"];

/// Two peers signaling in bursts, both ways, until stopped: every signal must arrive, from the
/// right peer, in order, and nothing else may arrive.
struct Call {
    stop: Arc<AtomicBool>,
    /// Rounds completed so far (one round: a burst each way).
    progress: Arc<AtomicU64>,
    task: JoinHandle<CallReport>,
}

#[derive(Debug)]
struct CallReport {
    rounds: u64,
    signals: u64,
}

impl Call {
    async fn start(node: &Node, room: &str) -> Call {
        let (a, b) = pair(node, room).await;
        let stop = Arc::new(AtomicBool::new(false));
        let room = room.to_string();
        let progress = Arc::new(AtomicU64::new(0));
        let (flag, done) = (Arc::clone(&stop), Arc::clone(&progress));
        let task = tokio::spawn(async move {
            let (mut a, mut b) = (a, b);
            let (mut rounds, mut seq) = (0, 0);
            // At least a few rounds, however quickly the other side of the test finishes.
            while rounds < 3 || !flag.load(Ordering::Acquire) {
                seq = burst(&mut a, &mut b, &room, seq).await;
                seq = burst(&mut b, &mut a, &room, seq).await;
                rounds += 1;
                done.store(rounds, Ordering::Release);
            }
            CallReport { rounds, signals: seq }
        });
        Call { stop, progress, task }
    }

    fn rounds(&self) -> u64 {
        self.progress.load(Ordering::Acquire)
    }

    /// Waits (bounded) until the call has completed `n` more rounds: proof that it is live now.
    async fn advances(&self, n: u64) {
        let target = self.rounds() + n;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.rounds() < target {
            assert!(!self.task.is_finished(), "the call ended early");
            assert!(tokio::time::Instant::now() < deadline, "the call stalled at round {}", self.rounds());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> CallReport {
        self.stop.store(true, Ordering::Release);
        let report =
            tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("call stuck").expect("call failed");
        assert_eq!(report.signals, report.rounds * 2 * CALL_BURST);
        report
    }
}

/// Sends [`CALL_BURST`] signals from `tx` to `rx` (alternating candidates and app data) and
/// checks they all arrive in order. Returns the next sequence number.
async fn burst(tx: &mut V1Peer, rx: &mut V1Peer, room: &str, first: u64) -> u64 {
    let data = |seq: u64| if seq.is_multiple_of(2) { json!({"seq": seq}) } else { candidate(seq as u32) };
    for seq in first..first + CALL_BURST {
        tx.signal(room, &rx.id, data(seq)).await;
    }
    for seq in first..first + CALL_BURST {
        let m = rx.ws.recv().await;
        assert_eq!(m["type"], "signal", "call disturbed: {m}");
        assert_eq!(m["from"], tx.id.as_str(), "{m}");
        assert_eq!(m["data"], data(seq), "lost or reordered at {seq}: {m}");
    }
    first + CALL_BURST
}

/// A raw v1 socket that has joined `room`.
async fn raw_joined(node: &Node, room: &str) -> RawWs {
    let (mut ws, _) = RawWs::connect_v1(node).await;
    ws.join(room).await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_typed_errors_and_the_connection_survives() {
    let node = start(&[]);
    let mut ws = raw_joined(&node, "r").await;
    // Any member could relay this, and serde_json-based clients (switchboard-peer) stop at 128
    // levels: the node refuses it.
    let deep = format!(r#"{{"type":"broadcast","room":"r","data":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    let cases: [(&[u8], &str); 11] = [
        (deep.as_bytes(), "too-deep"),
        (b"{nope", "bad-json"),
        (b"", "bad-json"),
        (b"   ", "bad-json"),
        // Not JSON, although its first wrong token is also the wrong shape.
        (b"[[[", "bad-json"),
        (b"[1,", "bad-json"),
        (b"[1,2]", "bad-message"),
        (b"null", "bad-message"),
        (b"{\"room\":\"r\"}", "bad-message"),
        (b"{\"type\":42}", "bad-message"),
        (b"{\"type\":\"dance\"}", "unknown-type"),
    ];
    for (i, (bytes, code)) in cases.iter().enumerate() {
        ws.send_text_bytes(bytes).await;
        ws.expect_error(code).await;
        ws.assert_pong(&format!("after-{i}")).await;
    }
    ws.send_binary(b"{\"type\":\"ping\"}").await;
    ws.expect_error("binary-unsupported").await;
    ws.send_binary(&[]).await;
    ws.expect_error("binary-unsupported").await;

    // A text message in three fragments (with a ping in between) is reassembled…
    let msg = br#"{"type":"ping","id":"fragmented"}"#;
    ws.send_frame(false, op::TEXT, &msg[..10]).await;
    ws.send_frame(false, op::CONTINUATION, &msg[10..20]).await;
    ws.send_frame(true, op::PING, b"hb").await;
    ws.send_frame(true, op::CONTINUATION, &msg[20..]).await;
    assert_eq!(ws.recv_json().await, json!({"type": "pong", "id": "fragmented"}));
    // …and a fragmented binary message is refused once.
    ws.send_frame(false, op::BINARY, b"ab").await;
    ws.send_frame(true, op::CONTINUATION, b"cd").await;
    ws.expect_error("binary-unsupported").await;
    ws.assert_pong("end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_text_gets_bad_json_and_closes_with_1007() {
    let mut node = start(&[]);
    let mut bystander = raw_joined(&node, "r").await;
    let invalid: [&[u8]; 3] = [b"\xff\xfe{\"type\":\"ping\"}", b"{\"type\":\"ping\"}\xc3\x28", b"\xed\xa0\x80"];
    for bytes in invalid {
        let mut ws = raw_joined(&node, "r").await;
        ws.send_text_bytes(bytes).await;
        ws.expect_error("bad-json").await;
        assert_eq!(ws.expect_close().await, Some((1007, "invalid-utf8".into())), "{bytes:?}");
        assert_eq!(bystander.recv_json().await["type"], "peer-joined");
        let left = bystander.recv_json().await;
        assert_eq!(
            (left["type"].as_str(), left["reason"].as_str()),
            (Some("peer-left"), Some("disconnected")),
            "{left}"
        );
    }
    // Invalid UTF-8 split across fragments is caught once the message is whole.
    let mut ws = raw_joined(&node, "frag").await;
    ws.send_frame(false, op::TEXT, b"{\"type\":\"ping\",\"id\":\"\xc3").await;
    ws.send_frame(true, op::CONTINUATION, b"\x28\"}").await;
    ws.expect_error("bad-json").await;
    assert_eq!(ws.expect_close().await, Some((1007, "invalid-utf8".into())));
    // …while a multi-byte character split across fragments is fine.
    let mut ws = raw_joined(&node, "frag").await;
    ws.send_frame(false, op::TEXT, b"{\"type\":\"ping\",\"id\":\"\xc3").await;
    ws.send_frame(true, op::CONTINUATION, b"\xa9\"}").await;
    assert_eq!(ws.recv_json().await, json!({"type": "pong", "id": "\u{e9}"}));

    bystander.assert_pong("alive").await;
    assert_healthy(&mut node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_is_refused_with_1009() {
    const MAX: usize = 4096;
    let mut node = start(&["--max-message-bytes", "4096"]);
    let mut call = raw_joined(&node, "call").await;

    // One frame a byte over the limit.
    let mut ws = raw_joined(&node, "r").await;
    ws.send_text_bytes(&vec![b' '; MAX + 1]).await;
    ws.expect_error("message-too-big").await;
    assert_eq!(ws.expect_close().await, Some((1009, "message-too-big".into())));

    // Fragments that each fit but add up to more than the limit.
    let (mut ws, _) = RawWs::connect_v1(&node).await;
    let chunk = vec![b' '; MAX / 2];
    ws.send_frame(false, op::TEXT, &chunk).await;
    ws.send_frame(false, op::CONTINUATION, &chunk).await;
    ws.send_frame(true, op::CONTINUATION, b"  ").await;
    ws.expect_error("message-too-big").await;
    assert_eq!(ws.expect_close().await, Some((1009, "message-too-big".into())));

    // Exactly the limit, in fragments, is fine.
    let (mut ws, _) = RawWs::connect_v1(&node).await;
    let ping = br#"{"type":"ping","id":"exact"}"#;
    let mut exact = ping.to_vec();
    exact.resize(MAX, b' ');
    ws.send_frame(false, op::TEXT, &exact[..MAX / 2]).await;
    ws.send_frame(true, op::CONTINUATION, &exact[MAX / 2..]).await;
    assert_eq!(ws.recv_json().await, json!({"type": "pong", "id": "exact"}));

    call.assert_pong("still-here").await;
    assert_healthy(&mut node);
    assert_eq!(node_metric(&node, "switchboard_errors_total", &[("code", "message-too-big")]), 2.0);
}

/// A masked text frame header declaring `len` payload bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_oversized_frame_is_refused_before_its_payload_arrives() {
    let node = start(&["--max-message-bytes", "4096"]);
    // A header that claims 1 GiB: the limit is known from the header alone.
    let (mut ws, _) = RawWs::connect_v1(&node).await;
    ws.write_raw(&frame_header(1 << 30)).await.expect("write header");
    match ws.next_within(STEP_TIMEOUT).await {
        Some(RawFrame::Json(e)) => assert_eq!(e["code"], "message-too-big", "{e}"),
        other => panic!("no message-too-big for a frame declaring 1 GiB (limit 4096): {other:?}"),
    }
    assert_eq!(ws.expect_close().await, Some((1009, "message-too-big".into())));

    // And streaming that payload must not make the node hold it.
    let (mut ws, _) = RawWs::connect_v1(&node).await;
    let before = node.rss_kib();
    ws.write_raw(&frame_header(1 << 30)).await.expect("write header");
    let chunk = vec![b' '; 1 << 20];
    let mut streamed = 0;
    while streamed < 64 && ws.write_raw(&chunk).await.is_ok() {
        streamed += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = node.rss_kib().saturating_sub(before) / 1024;
    println!("streamed {streamed} MiB of a frame declaring 1 GiB: node RSS +{grown} MiB");
    assert!(grown < 16, "the node buffered {grown} MiB of one over-limit frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_violations_close_with_1002() {
    let mut node = start(&[]);
    let mut bystander = raw_joined(&node, "r").await;

    let violations: [(&str, Vec<u8>); 5] = [
        ("unmasked frame", vec![]),
        ("reserved opcode 0x3", vec![0x83, 0x80, 0, 0, 0, 0]),
        ("continuation without a start", vec![0x80, 0x80, 0, 0, 0, 0]),
        ("reserved bits set", vec![0xC1, 0x80, 0, 0, 0, 0]),
        ("a text frame inside a fragmented message", vec![0x01, 0x80, 0, 0, 0, 0, 0x81, 0x80, 0, 0, 0, 0]),
    ];
    for (what, bytes) in violations {
        let mut ws = raw_joined(&node, "r").await;
        if bytes.is_empty() {
            ws.send_unmasked(op::TEXT, br#"{"type":"ping"}"#).await;
        } else {
            ws.write_raw(&bytes).await.expect("write");
        }
        let closed = ws.expect_close().await;
        assert_eq!(closed, Some((1002, "protocol-error".into())), "{what}");
        let joined = bystander.recv_json().await;
        assert_eq!(joined["type"], "peer-joined", "{joined}");
        let left = bystander.recv_json().await;
        assert_eq!(
            (left["type"].as_str(), left["reason"].as_str()),
            (Some("peer-left"), Some("disconnected")),
            "{what}: {left}"
        );
    }
    bystander.assert_pong("alive").await;
    assert_healthy(&mut node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_gets_errors_while_a_call_goes_on() {
    const EACH: usize = 1000;
    const BATCH: usize = 50;
    let mut node = start(&CALL_FRIENDLY);
    let call = Call::start(&node, "call").await;
    let mut junk = raw_joined(&node, "junk").await;
    let mut rng = XorShift::new(0x00c0_ffee_1234_5678);

    call.advances(1).await;
    let started = std::time::Instant::now();
    let rounds_before = call.rounds();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut sent = 0;
    for binary in [false, true] {
        for _ in 0..EACH / BATCH {
            for _ in 0..BATCH {
                let len = match rng.below(10) {
                    0 => rng.below(16 * 1024),
                    _ => rng.below(512),
                } as usize;
                let bytes = rng.bytes(len);
                if binary {
                    junk.send_binary(&bytes).await;
                } else {
                    junk.send_text_bytes(String::from_utf8_lossy(&bytes).as_bytes()).await;
                }
                sent += 1;
            }
            for _ in 0..BATCH {
                let e = junk.recv_json().await;
                assert_eq!(e["type"], "error", "garbage was accepted: {e}");
                let code = e["code"].as_str().expect("code").to_string();
                let expected: &[&str] =
                    if binary { &["binary-unsupported"] } else { &["bad-json", "bad-message", "unknown-type"] };
                assert!(
                    expected.contains(&code.as_str()),
                    "unexpected {code} for {} garbage: {e}",
                    if binary { "binary" } else { "text" }
                );
                *codes.entry(code).or_default() += 1;
            }
            // The call must be making progress while the garbage flows, batch after batch.
            call.advances(1).await;
        }
    }
    let rounds_during = call.rounds() - rounds_before;
    println!("garbage phase: {:?}, call rounds meanwhile: {rounds_during}", started.elapsed());
    println!("garbage sent: {sent}, errors by code: {codes:?}");
    assert_eq!(codes.values().sum::<usize>(), 2 * EACH);
    junk.assert_pong("after-garbage").await;
    let report = call.finish().await;
    println!("call during garbage: {report:?}");

    assert_healthy(&mut node);
    let invalid = node_metric(&node, "switchboard_messages_in_total", &[("protocol", "v1"), ("type", "invalid")]);
    assert_eq!(invalid, (2 * EACH) as f64);
    let errors: f64 = ["bad-json", "bad-message", "unknown-type", "binary-unsupported"]
        .iter()
        .map(|c| node_metric(&node, "switchboard_errors_total", &[("code", c)]))
        .sum();
    assert_eq!(errors, (2 * EACH) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_off_and_memory_stays_bounded() {
    const MESSAGES: usize = 2000;
    const BLOB: usize = 16 * 1024;
    let mut node = start(&[&CALL_FRIENDLY[..], &["--max-outbound-bytes", "262144"]].concat());
    let call = Call::start(&node, "call").await;
    let mut flooder = joined(&node, "flood").await;
    // The slow peer joins, and from then on its socket is never polled.
    let slow = joined(&node, "flood").await;
    assert_eq!(flooder.ws.expect("peer-joined").await["peer"]["peer_id"], slow.id.as_str());

    let rss_before = node.rss_kib();
    let mut rss_peak = rss_before;
    let blob = "x".repeat(BLOB);
    let mut sent_bytes = 0usize;
    for i in 0..MESSAGES {
        let text = json!({"type": "broadcast", "room": "flood", "data": {"i": i, "blob": blob}}).to_string();
        sent_bytes += text.len();
        flooder.ws.send_text(&text).await;
        if i % 100 == 0 {
            rss_peak = rss_peak.max(node.rss_kib());
            call.advances(1).await;
        }
    }
    let left = flooder.ws.expect("peer-left").await;
    assert_eq!(left, json!({"type": "peer-left", "room": "flood", "peer_id": slow.id, "reason": "slow-consumer"}));
    let rss_after = node.rss_kib();
    rss_peak = rss_peak.max(rss_after);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "slow consumer: sent {:.1} MiB in {MESSAGES} broadcasts; node RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        sent_bytes as f64 / (1024.0 * 1024.0),
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after)
    );
    assert!(sent_bytes >= 30 * 1024 * 1024);
    assert!(rss_before > 0, "cannot read the node's RSS");
    assert!(rss_peak.saturating_sub(rss_before) < 64 * 1024, "node RSS grew by {:.1} MiB", mib(rss_peak - rss_before));

    let report = call.finish().await;
    println!("call during flood: {report:?}");
    // The flooder is fine: it is alone in the room now.
    assert_alive(&mut flooder).await;
    assert!(node_metric(&node, "switchboard_errors_total", &[("code", "slow-consumer")]) >= 1.0);
    assert_healthy(&mut node);

    // The slow peer, reading at last, finds what the kernel buffered and then the end.
    let mut slow = slow;
    let mut broadcasts = 0;
    let end = loop {
        match slow.ws.next().await {
            Frame::Json(v) if v["type"] == "broadcast" => broadcasts += 1,
            Frame::Json(v) => panic!("unexpected {v}"),
            other => break other,
        }
    };
    println!("slow peer had {broadcasts} broadcasts buffered, then {end:?}");
    assert!(broadcasts < MESSAGES);
    assert!(matches!(end, Frame::Ended | Frame::Close(Some((4001, _)))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_peer_is_not_cut_off_by_a_burst() {
    const MESSAGES: usize = 200;
    let node = start(&["--max-outbound-bytes", "262144", "--messages-per-sec", "0"]);
    let mut flooder = joined(&node, "burst").await;
    let reader = joined(&node, "burst").await;
    flooder.ws.expect("peer-joined").await;
    // The reader drains its socket all along, in its own task.
    let drain = tokio::spawn(async move {
        let mut reader = reader;
        for i in 0..MESSAGES {
            match reader.ws.next().await {
                Frame::Json(v) if v["type"] == "broadcast" => assert_eq!(v["data"]["i"], i, "{v}"),
                other => panic!("a reading peer got {other:?} after {i} of {MESSAGES} broadcasts"),
            }
        }
        reader
    });
    let blob = "x".repeat(16 * 1024);
    for i in 0..MESSAGES {
        flooder.ws.send_json(json!({"type": "broadcast", "room": "burst", "data": {"i": i, "blob": blob}})).await;
    }
    let mut reader = drain.await.expect("reader");
    assert_alive(&mut reader).await;
    flooder.ws.expect_silence(Duration::from_millis(300)).await;
}
