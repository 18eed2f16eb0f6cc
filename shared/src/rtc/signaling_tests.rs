//! The signaling task against a scripted node on a local socket: what a client sees of a drain,
//! of a broken socket, and of the numbers that let it resume.

use std::time::Duration;

use actix_http::ws::{self, CloseCode, CloseReason, Codec, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::{Cause, Link, Resume, Signaling};
use crate::client::ClientError;
use crate::protocol::v1::Event;
use crate::protocol::{PeerId, close};

const STEP: Duration = Duration::from_secs(5);
const ME: PeerId = PeerId(7);
const OTHER: PeerId = PeerId(9);

type Ws = Framed<TcpStream, Codec>;

/// Accepts one connection: its request path, and the socket after a 101 (or `None` after
/// answering `status` instead, like a draining node's 503).
async fn accept(listener: &TcpListener, status: Option<&str>) -> (String, Option<Ws>) {
    let (mut io, _) = listener.accept().await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(io.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    let path = head.split(' ').nth(1).unwrap().to_owned();
    if let Some(status) = status {
        io.write_all(format!("HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        return (path, None);
    }
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a Sec-WebSocket-Key")
        .trim()
        .to_owned();
    let accept = String::from_utf8(ws::hash_key(key.as_bytes()).to_vec()).unwrap();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: switchboard.v1\r\n\r\n"
    );
    io.write_all(reply.as_bytes()).await.unwrap();
    (path, Some(Framed::new(io, Codec::new())))
}

async fn accepted(listener: &TcpListener) -> (String, Ws) {
    let (path, ws) = accept(listener, None).await;
    (path, ws.unwrap())
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Sends `v` numbered as the node numbers its frames: `{"seq":N,…`.
async fn send_seq(ws: &mut Ws, seq: u64, v: Value) {
    let text = v.to_string();
    ws.send(Message::Text(format!("{{\"seq\":{seq},{}", &text[1..]).into())).await.unwrap();
}

/// A node older than resuming after a break: no resume token.
fn welcome(peer: PeerId, node: &str, resumed: bool) -> Value {
    json!({
        "type": "welcome", "protocol": 1, "peer_id": peer.to_string(), "node_id": node,
        "heartbeat_ms": 15000, "resumed": resumed,
        "limits": {
            "max_message_bytes": 65536, "max_rooms": 8, "max_peers_per_room": 16,
            "messages_per_sec": 100, "candidates_per_sec": 100, "descriptions_per_min": 100,
            "max_candidates_per_negotiation": 100, "max_meta_bytes": 1024,
        },
    })
}

/// A node that resumes after any break: its token, its grace, and on a resume `last_cseq`.
fn welcome_r(node: &str, token: &str, heartbeat_ms: u64, last_cseq: Option<u64>) -> Value {
    let mut w = welcome(ME, node, last_cseq.is_some());
    w["heartbeat_ms"] = json!(heartbeat_ms);
    w["resume_token"] = json!(token);
    w["resume_within_ms"] = json!(5000);
    if let Some(c) = last_cseq {
        w["last_cseq"] = json!(c);
    }
    w
}

fn signal(n: u32) -> Value {
    json!({"type": "signal", "room": "r", "from": OTHER.to_string(), "data": {"n": n}})
}

/// The next text frame, or `Close` as `"<close>"`, or the end of the stream as `"<end>"`.
async fn read(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await.expect("a frame in time") {
            Some(Ok(Frame::Text(b))) => return String::from_utf8(b.to_vec()).unwrap(),
            Some(Ok(Frame::Close(_))) => return "<close>".into(),
            None | Some(Err(_)) => return "<end>".into(),
            _ => {}
        }
    }
}

/// The next text frame that is not a `ping` or an `ack`, as JSON.
async fn read_msg(ws: &mut Ws) -> Value {
    loop {
        let text = read(ws).await;
        let v: Value = serde_json::from_str(&text).unwrap_or(json!(text));
        if v["type"] != "ping" && v["type"] != "ack" {
            return v;
        }
    }
}

async fn connected(listener: &TcpListener, url: &str, first: Value) -> (Signaling, Ws) {
    let (sig, (_, ws)) = tokio::join!(Signaling::connect(url, STEP), async {
        let (path, mut ws) = accepted(listener).await;
        send(&mut ws, first).await;
        (path, ws)
    });
    (sig.unwrap(), ws)
}

async fn signal_n(sig: &mut Signaling) -> u64 {
    match sig.next(STEP).await.unwrap() {
        Event::Signal { data, .. } => data["n"].as_u64().unwrap(),
        other => panic!("expected a signal, got {other:?}"),
    }
}

/// The next resume, after the loss it follows.
async fn resumed(sig: &mut Signaling) -> Resume {
    let lost = tokio::time::timeout(STEP, sig.link.recv()).await.expect("a lost link in time").expect("the task");
    let Link::Lost(cause) = lost else { panic!("a resume before its loss: {lost:?}") };
    match tokio::time::timeout(STEP, sig.link.recv()).await.expect("a resume in time").expect("the task") {
        Link::Resumed(r) => {
            assert_eq!(r.cause, cause);
            r
        }
        other => panic!("expected a resume, got {other:?}"),
    }
}

/// `reconnect` handled inside: frames before the server's close pass, messages sent in the
/// gap wait, a 503 is retried, and the caller sees neither `reconnect` nor `welcome`.
#[tokio::test]
async fn resumes_invisibly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws?access_token=h.p.s", listener.local_addr().unwrap());
    let (mut sig, mut n0) = connected(&listener, &url, welcome(ME, "n0", false)).await;

    // A node without resume tokens gets its messages as they are: no numbers.
    sig.outbox.send(&json!({"m": "before"}));
    assert_eq!(read(&mut n0).await, r#"{"m":"before"}"#);
    send(&mut n0, json!({"type": "reconnect", "resume_token": "t/1+", "within_ms": 5000})).await;
    // The client closes first and sends nothing else on this socket.
    assert_eq!(read(&mut n0).await, "<close>");
    sig.outbox.send(&json!({"m": "during"}));
    // Real frames until the server's close.
    send(&mut n0, signal(1)).await;
    n0.send(Message::Close(Some(CloseReason { code: CloseCode::Restart, description: None }))).await.unwrap();
    drop(n0);

    // A draining node refuses the first attempt; the next one resumes.
    let (path, _) = accept(&listener, Some("503 Service Unavailable")).await;
    assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=t%2F1%2B");
    let (path, mut n1) = accepted(&listener).await;
    assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=t%2F1%2B");
    send(&mut n1, welcome(ME, "n1", true)).await;
    send(&mut n1, signal(2)).await;
    // What waited goes out after the welcome, in order.
    assert_eq!(read(&mut n1).await, r#"{"m":"during"}"#);

    for n in [1, 2] {
        assert_eq!(signal_n(&mut sig).await, n);
    }
    let r = resumed(&mut sig).await;
    assert_eq!((r.count, r.after_break, r.attempts, r.cause), (1, 0, 2, Cause::Drain));
    assert_eq!((r.from_node.as_str(), r.node_id.as_str()), ("n0", "n1"));
    assert!(r.gap < Duration::from_secs(5), "{:?}", r.gap);

    // A second drain resumes from the URL the caller gave, not the first resume's.
    send(&mut n1, json!({"type": "reconnect", "resume_token": "t2", "within_ms": 5000})).await;
    assert_eq!(read(&mut n1).await, "<close>");
    drop(n1); // no close from the server: the end of the stream does as well
    let (path, mut n2) = accepted(&listener).await;
    assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=t2");
    send(&mut n2, welcome(ME, "n2", true)).await;
    let r = resumed(&mut sig).await;
    assert_eq!((r.count, r.from_node.as_str(), r.node_id.as_str()), (2, "n1", "n2"));
}

/// `resume-failed` (and its 4410) ends the task with `ResumeFailed`: the caller starts over.
#[tokio::test]
async fn resume_failed_ends_the_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (mut sig, mut n0) = connected(&listener, &url, welcome(ME, "n0", false)).await;
    send(&mut n0, json!({"type": "reconnect", "resume_token": "t", "within_ms": 5000})).await;
    assert_eq!(read(&mut n0).await, "<close>");
    n0.send(Message::Close(Some(CloseReason { code: CloseCode::Restart, description: None }))).await.unwrap();

    let (path, mut n1) = accepted(&listener).await;
    assert_eq!(path, "/v1/ws?resume=t");
    send(&mut n1, json!({"type": "error", "code": "resume-failed", "message": "unknown token"})).await;
    let code = CloseCode::Other(close::RESUME_FAILED);
    n1.send(Message::Close(Some(CloseReason { code, description: Some("resume-failed".into()) }))).await.unwrap();
    match sig.next(STEP).await {
        Err(ClientError::ResumeFailed(why)) => assert!(why.contains("unknown token"), "{why}"),
        other => panic!("expected ResumeFailed, got {other:?}"),
    }
}

/// A fresh `welcome` (another peer id) is no resume; nor is one after `within_ms`.
#[tokio::test]
async fn a_fresh_session_is_no_resume() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (mut sig, mut n0) = connected(&listener, &url, welcome(ME, "n0", false)).await;
    send(&mut n0, json!({"type": "reconnect", "resume_token": "t", "within_ms": 5000})).await;
    assert_eq!(read(&mut n0).await, "<close>");
    drop(n0);
    let (_, mut n1) = accepted(&listener).await;
    send(&mut n1, welcome(OTHER, "n1", false)).await;
    assert!(matches!(sig.next(STEP).await, Err(ClientError::ResumeFailed(_))));
    // It leaves the session it did not want.
    assert_eq!(read(&mut n1).await, "<close>");
}

#[tokio::test]
async fn gives_up_after_within_ms() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (mut sig, mut n0) = connected(&listener, &url, welcome(ME, "n0", false)).await;
    send(&mut n0, json!({"type": "reconnect", "resume_token": "t", "within_ms": 300})).await;
    assert_eq!(read(&mut n0).await, "<close>");
    drop(n0);
    let refuse = async {
        loop {
            accept(&listener, Some("503 Service Unavailable")).await;
        }
    };
    tokio::select! {
        ev = sig.next(STEP) => match ev {
            Err(ClientError::ResumeFailed(why)) => assert!(why.contains("in time"), "{why}"),
            other => panic!("expected ResumeFailed, got {other:?}"),
        },
        () = refuse => unreachable!(),
    }
}

/// With a node that resumes: messages go out numbered, frames are acknowledged (32 at once,
/// fewer after a second), a repeated frame is dropped, and the task's pings and their pongs
/// stay inside.
#[tokio::test]
async fn numbers_messages_and_acknowledges_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (mut sig, mut n0) = connected(&listener, &url, welcome_r("n0", "p.t1", 15000, None)).await;

    sig.outbox.send(&json!({"type": "join", "room": "r"}));
    sig.outbox.signal("r", OTHER, json!({"x": 1}));
    assert_eq!(read_msg(&mut n0).await, json!({"cseq": 1, "type": "join", "room": "r"}));
    let s = read_msg(&mut n0).await;
    assert_eq!((s["cseq"].as_u64(), s["type"].as_str(), &s["data"]), (Some(2), Some("signal"), &json!({"x": 1})));

    // 40 frames (one of them twice): the 32nd is acknowledged at once, the rest within 1 s.
    let t0 = Instant::now();
    for n in 1..=40 {
        send_seq(&mut n0, n, signal(n as u32)).await;
        if n == 5 {
            send_seq(&mut n0, 5, signal(5)).await;
        }
    }
    // A pong without an id answers the task's own ping: the caller does not see it; one with
    // an id is the caller's.
    send_seq(&mut n0, 41, json!({"type": "pong", "last_cseq": 2})).await;
    send_seq(&mut n0, 42, json!({"type": "pong", "id": 3, "last_cseq": 2})).await;
    let first = read(&mut n0).await;
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["type"], "ack", "{first}");
    assert!(first["seq"].as_u64().unwrap() >= 32, "{first}");
    assert!(first.get("cseq").is_none(), "acks are not numbered: {first}");
    let mut last = first;
    while last["seq"] != 42 {
        last = serde_json::from_str(&read(&mut n0).await).unwrap();
        assert_eq!(last["type"], "ack", "{last}");
    }
    assert!(t0.elapsed() < Duration::from_millis(2500), "{:?}", t0.elapsed());
    for n in 1..=40 {
        assert_eq!(signal_n(&mut sig).await, n);
    }
    assert!(matches!(sig.next(STEP).await.unwrap(), Event::Pong { id: Some(_), last_cseq: Some(2) }));
    assert!(matches!(sig.next(Duration::from_millis(100)).await, Err(ClientError::Timeout(_))));
}

/// A socket that breaks (the stream ends, or goes silent) is dropped without a close and the
/// session resumed with the token and the last seq; what the server had not processed goes
/// again, then what waited; a repeated frame of the replay is dropped.
#[tokio::test]
async fn resumes_after_a_break_and_after_silence() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws?access_token=h.p.s", listener.local_addr().unwrap());
    // A short heartbeat: the socket counts as dead after 1 s without a frame.
    let (mut sig, mut n0) = connected(&listener, &url, welcome_r("n0", "p.t1", 300, None)).await;
    sig.outbox.send(&json!({"m": "a"}));
    sig.outbox.send(&json!({"m": "b"}));
    assert_eq!(read_msg(&mut n0).await, json!({"cseq": 1, "m": "a"}));
    assert_eq!(read_msg(&mut n0).await, json!({"cseq": 2, "m": "b"}));
    // The task pings every heartbeat (numbered too); a pong confirms up to "a".
    let ping: Value = loop {
        let v: Value = serde_json::from_str(&read(&mut n0).await).unwrap();
        if v["type"] == "ping" {
            break v;
        }
    };
    assert_eq!(ping["cseq"], 3, "{ping}");
    send_seq(&mut n0, 1, json!({"type": "pong", "last_cseq": 1})).await;
    send_seq(&mut n0, 2, signal(1)).await;
    assert_eq!(signal_n(&mut sig).await, 1);
    // The stream ends without a close frame (a reset, a crash).
    drop(n0);
    sig.outbox.send(&json!({"m": "gap"}));

    let (path, mut n1) = accepted(&listener).await;
    assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=p.t1&last_seq=2");
    // The server had processed up to "b": the pings from 3 on go again, then what waited.
    send(&mut n1, welcome_r("n1", "p.t2", 300, Some(2))).await;
    let mut next = 3;
    loop {
        let v: Value = serde_json::from_str(&read(&mut n1).await).unwrap();
        assert_eq!(v["cseq"], next, "{v}");
        next += 1;
        if v["type"] != "ping" {
            assert_eq!(v["m"], "gap", "{v}");
            break;
        }
    }
    send_seq(&mut n1, 2, signal(1)).await; // a repeat: dropped
    send_seq(&mut n1, 3, signal(2)).await;
    assert_eq!(signal_n(&mut sig).await, 2);
    let r = resumed(&mut sig).await;
    // The pings at least ("gap" too if the task had numbered it before it saw the break).
    assert_eq!((r.count, r.after_break, r.attempts), (1, 1, 1), "{r:?}");
    assert!(r.resent >= 1, "{r:?}");
    assert!(matches!(r.cause, Cause::Break(_)), "{r:?}");
    assert_eq!((r.from_node.as_str(), r.node_id.as_str()), ("n0", "n1"));

    // Then the socket goes silent (a stalled path): nothing arrives for two heartbeats. The
    // task drops it without a close frame: the session must be held.
    let silent = Instant::now();
    loop {
        match read(&mut n1).await.as_str() {
            "<end>" => break,
            "<close>" => panic!("a close frame on the abandoned socket"),
            _ => {}
        }
    }
    let waited = silent.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    let (path, mut n2) = accepted(&listener).await;
    // The fresh token of the last welcome, the last seq.
    assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=p.t2&last_seq=3");
    send(&mut n2, welcome_r("n1", "p.t3", 300, Some(next))).await;
    let r = resumed(&mut sig).await;
    assert_eq!((r.count, r.after_break), (2, 2), "{r:?}");
    assert!(r.away >= Duration::from_millis(900), "{r:?}");
    assert!(matches!(r.cause, Cause::Break(ref why) if why.contains("no frame")), "{r:?}");
}

/// A break with a node that does not resume after one, and a server close that ends the
/// session, reach the caller as errors: no resume is tried.
#[tokio::test]
async fn no_resume_without_a_token_or_after_a_final_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (mut sig, n0) = connected(&listener, &url, welcome(ME, "n0", false)).await;
    drop(n0);
    assert!(matches!(sig.next(STEP).await, Err(ClientError::Closed { code: None, .. })));

    let (mut sig, mut n0) = connected(&listener, &url, welcome_r("n0", "p.t1", 15000, None)).await;
    let code = CloseCode::Other(close::UNAUTHORIZED);
    n0.send(Message::Close(Some(CloseReason { code, description: Some("token-expired".into()) }))).await.unwrap();
    assert!(matches!(sig.next(STEP).await, Err(ClientError::Closed { code: Some(close::UNAUTHORIZED), .. })));
    let late = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(late.is_err(), "a resume after a final close");
}

/// Resumes go to every URL the caller gave, in turn: a node that is gone is passed over.
#[tokio::test]
async fn resumes_on_another_url() {
    let l0 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let urls = [l0.local_addr().unwrap(), l1.local_addr().unwrap()].map(|a| format!("ws://{a}/v1/ws"));
    let (sig, n0) = tokio::join!(Signaling::connect_any(&urls, STEP), async {
        let (_, mut ws) = accepted(&l0).await;
        send(&mut ws, welcome_r("n0", "p.t1", 15000, None)).await;
        ws
    });
    let mut sig = sig.unwrap();
    // n0 goes away for good: its port refuses.
    drop((n0, l0));
    let (path, mut n1) = accepted(&l1).await;
    assert_eq!(path, "/v1/ws?resume=p.t1&last_seq=0");
    send(&mut n1, welcome_r("n1", "p.t2", 15000, Some(0))).await;
    let r = resumed(&mut sig).await;
    assert_eq!((r.attempts, r.node_id.as_str()), (2, "n1"));
}

/// Dropping the [`Signaling`] ends the session cleanly: what was sent last goes out, then a
/// close frame (not a break the server would hold the session for).
#[tokio::test]
async fn dropping_the_session_sends_what_is_left_and_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (sig, mut n0) = connected(&listener, &url, welcome_r("n0", "p.t1", 15000, None)).await;
    // An ICE callback may still hold a clone of the outbox: the events' end is enough.
    let outbox = sig.outbox.clone();
    sig.outbox.send(&json!({"type": "leave", "room": "r"}));
    drop(sig);
    assert_eq!(read_msg(&mut n0).await, json!({"cseq": 1, "type": "leave", "room": "r"}));
    assert_eq!(read(&mut n0).await, "<close>");
    drop(outbox);
}
