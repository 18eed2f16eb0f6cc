//! Helpers for the membership tests: signal payloads, clusters with a chosen lease, raw
//! RESP reads of what the cluster keeps in Redis, and expectations on what peers see.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Frame, Node, RedisServer, V1Peer, node_binary};

/// How long a client must stay silent to count as "got nothing".
pub const QUIET: Duration = Duration::from_millis(300);
/// The node's default lease (`--node-lease-ms`).
pub const DEFAULT_LEASE_MS: u64 = 3000;

pub const OFFER: &str = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
pub const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

pub fn offer() -> Value {
    json!({"type": "offer", "sdp": OFFER})
}

pub fn answer() -> Value {
    json!({"type": "answer", "sdp": ANSWER})
}

pub fn candidate(i: usize) -> Value {
    let line = format!("candidate:{i} 1 udp 2122260223 192.0.2.1 {} typ host", 5000 + i);
    json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0})
}

// ---------------------------------------------------------------------------------------------
// Clusters ([`super::Cluster::with_lease`] for a longer lease)
// ---------------------------------------------------------------------------------------------

/// A node of cluster `name` on `redis`, ready.
pub fn start_named(redis: &RedisServer, name: &str, id: &str) -> Node {
    let url = redis.url();
    let node = Node::start(
        &node_binary(),
        &["--redis-url", &url, "--node-lease-ms", "1500", "--cluster-name", name, "--node-id", id],
    );
    node.wait_ready(true, Duration::from_secs(10));
    node
}

pub fn signal_process(node: &Node, sig: i32) {
    // SAFETY: kill(2) on the pid of a child process this test owns (not yet reaped).
    let rc = unsafe { libc::kill(node.pid() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}) failed", node.pid());
}

// ---------------------------------------------------------------------------------------------
// Redis inspection (raw RESP)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Resp {
    Nil,
    Int(i64),
    Str(String),
    Err(String),
    Arr(Vec<Resp>),
}

pub fn parse_resp(reply: &str) -> Resp {
    fn line<'a>(b: &'a [u8], pos: &mut usize) -> &'a str {
        let start = *pos;
        let end = start + b[start..].windows(2).position(|w| w == b"\r\n").expect("RESP line end");
        *pos = end + 2;
        std::str::from_utf8(&b[start..end]).expect("RESP line is UTF-8")
    }
    fn one(b: &[u8], pos: &mut usize) -> Resp {
        let l = line(b, pos);
        let (kind, rest) = l.split_at(1);
        match kind {
            "+" => Resp::Str(rest.to_string()),
            "-" => Resp::Err(rest.to_string()),
            ":" => Resp::Int(rest.parse().expect("RESP integer")),
            "$" => {
                let n: i64 = rest.parse().expect("RESP bulk length");
                if n < 0 {
                    return Resp::Nil;
                }
                let (start, end) = (*pos, *pos + n as usize);
                *pos = end + 2;
                Resp::Str(String::from_utf8(b[start..end].to_vec()).expect("bulk string is UTF-8"))
            }
            "*" => {
                let n: i64 = rest.parse().expect("RESP array length");
                if n < 0 {
                    return Resp::Nil;
                }
                Resp::Arr((0..n).map(|_| one(b, pos)).collect())
            }
            _ => panic!("not RESP: {l:?}"),
        }
    }
    let mut pos = 0;
    one(reply.as_bytes(), &mut pos)
}

pub fn query(r: &RedisServer, args: &[&str]) -> Resp {
    let reply = r.command(args).unwrap_or_else(|| panic!("redis unreachable for {args:?}"));
    match parse_resp(&reply) {
        Resp::Err(e) => panic!("redis {args:?}: {e}"),
        v => v,
    }
}

pub fn get(r: &RedisServer, key: &str) -> Option<String> {
    match query(r, &["GET", key]) {
        Resp::Nil => None,
        Resp::Str(s) => Some(s),
        other => panic!("GET {key}: {other:?}"),
    }
}

pub fn hgetall(r: &RedisServer, key: &str) -> BTreeMap<String, String> {
    let Resp::Arr(items) = query(r, &["HGETALL", key]) else { panic!("HGETALL {key}: not an array") };
    let strs: Vec<String> = items
        .into_iter()
        .map(|i| match i {
            Resp::Str(s) => s,
            other => panic!("HGETALL {key}: {other:?}"),
        })
        .collect();
    strs.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
}

pub fn zrange(r: &RedisServer, key: &str) -> BTreeSet<String> {
    let Resp::Arr(items) = query(r, &["ZRANGE", key, "0", "-1"]) else { panic!("ZRANGE {key}: not an array") };
    items
        .into_iter()
        .map(|i| match i {
            Resp::Str(s) => s,
            other => panic!("ZRANGE {key}: {other:?}"),
        })
        .collect()
}

pub fn pttl(r: &RedisServer, key: &str) -> i64 {
    match query(r, &["PTTL", key]) {
        Resp::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
}

pub fn exists(r: &RedisServer, key: &str) -> bool {
    query(r, &["EXISTS", key]) == Resp::Int(1)
}

/// A membership record `node|epoch|json` as (node, epoch).
pub fn record(value: &str) -> (String, u64) {
    let mut parts = value.splitn(3, '|');
    let (Some(node), Some(epoch), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("not a membership record: {value:?}");
    };
    assert!(serde_json::from_str::<Value>(body).is_ok(), "record body is not JSON: {value:?}");
    (node.to_string(), epoch.parse().unwrap_or_else(|_| panic!("epoch of {value:?}")))
}

pub fn key(cluster: &str, rest: &str) -> String {
    format!("sb:{{{cluster}}}:{rest}")
}

/// Polls `check` until it holds; panics with `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never happened within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------------------------

/// Reads exactly `ids.len()` frames from `p`: each a `peer-joined` in `room`, together naming
/// every peer of `ids`.
pub async fn expect_peers_joined(p: &mut V1Peer, room: &str, ids: &[&str]) {
    let mut got = BTreeSet::new();
    for _ in 0..ids.len() {
        let m = p.ws.recv().await;
        assert_eq!((m["type"].as_str(), m["room"].as_str()), (Some("peer-joined"), Some(room)), "{}: {m}", p.id);
        let id = m["peer"]["peer_id"].as_str().unwrap_or_else(|| panic!("no peer id: {m}")).to_string();
        assert!(got.insert(id), "{}: announced twice: {m}", p.id);
    }
    let want: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "{}: peer-joined in {room}", p.id);
}

/// The next frame of `p` must be `peer-left` for `peer` in `room` with `reason`.
pub async fn expect_peer_left(p: &mut V1Peer, room: &str, peer: &str, reason: &str) {
    let m = p.ws.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["room"].as_str(), m["peer_id"].as_str(), m["reason"].as_str()),
        (Some("peer-left"), Some(room), Some(peer), Some(reason)),
        "{}: expected peer-left {peer} ({reason}) in {room}, got {m}",
        p.id
    );
}

/// `from`'s signal `data` to `to` arrives, stamped with `from`'s id.
pub async fn signal_arrives(from: &mut V1Peer, to: &mut V1Peer, room: &str, data: Value) {
    from.signal(room, &to.id, data.clone()).await;
    let m = to.ws.recv().await;
    assert_eq!(m["type"], "signal", "{}: expected a signal from {}, got {m}", to.id, from.id);
    assert_eq!((m["room"].as_str(), m["from"].as_str()), (Some(room), Some(from.id.as_str())), "{m}");
    assert_eq!(m["data"], data);
}

/// Reads `p` after its join of `room` until it has its `joined` and knows every other peer of
/// `all`; returns (peers listed in `joined`, peers announced by `peer-joined`). Frames of earlier
/// rounds may only be `peer-left`s; anything else, a peer known twice or a stranger fails.
pub async fn see_join(p: &mut V1Peer, room: &str, all: &[String]) -> (Vec<String>, Vec<String>) {
    let others: BTreeSet<&str> = all.iter().map(String::as_str).filter(|id| *id != p.id).collect();
    let mut listed: Option<Vec<String>> = None;
    let mut announced: Vec<String> = Vec::new();
    let deadline = Instant::now() + switchboard_tests::STEP_TIMEOUT;
    loop {
        let known: Vec<&str> = listed.iter().flatten().chain(&announced).map(String::as_str).collect();
        let distinct: BTreeSet<&str> = known.iter().copied().collect();
        assert_eq!(distinct.len(), known.len(), "{} in {room}: a peer reported twice: {known:?}", p.id);
        assert!(distinct.is_subset(&others), "{} in {room}: unknown peers in {known:?}, expected {others:?}", p.id);
        if listed.is_some() && distinct == others {
            return (listed.unwrap_or_default(), announced);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let m = match p.ws.next_within(left).await {
            Some(Frame::Json(m)) => m,
            other => panic!(
                "{} in {room}: got {other:?} while waiting; joined peers {listed:?}, peer-joined {announced:?}",
                p.id
            ),
        };
        if m["room"] != room {
            // The last round's leaves may still be on their way.
            assert_eq!(m["type"], "peer-left", "{} in {room}: unexpected frame of another room: {m}", p.id);
            continue;
        }
        match m["type"].as_str() {
            Some("joined") => {
                assert!(listed.is_none(), "{} in {room}: a second joined: {m}", p.id);
                let peers = m["peers"].as_array().unwrap_or_else(|| panic!("no peers: {m}"));
                listed = Some(peers.iter().map(|x| x["peer_id"].as_str().expect("peer_id").to_string()).collect());
            }
            Some("peer-joined") => announced.push(m["peer"]["peer_id"].as_str().expect("peer_id").to_string()),
            _ => panic!("{} in {room}: unexpected {m}", p.id),
        }
    }
}

/// Reads `p` until it has a `peer-left` with reason `node-lost` in `room` for every peer of
/// `lost` (nothing else may arrive); returns each one's arrival, measured from `since`.
pub async fn node_lost_times(p: &mut V1Peer, room: &str, lost: &[&str], since: Instant) -> Vec<(String, Duration)> {
    let mut times = Vec::new();
    let deadline = since + Duration::from_secs(20);
    while times.len() < lost.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = match p.ws.next_within(left).await {
            Some(Frame::Json(m)) => m,
            other => panic!("{}: got {other:?} while waiting for node-lost of {lost:?}; so far {times:?}", p.id),
        };
        let at = since.elapsed();
        assert_eq!(
            (m["type"].as_str(), m["room"].as_str(), m["reason"].as_str()),
            (Some("peer-left"), Some(room), Some("node-lost")),
            "{}: {m}",
            p.id
        );
        let peer = m["peer_id"].as_str().expect("peer_id").to_string();
        assert!(lost.contains(&peer.as_str()), "{}: node-lost for {peer}, not a member of the lost node", p.id);
        assert!(times.iter().all(|(q, _)| *q != peer), "{}: node-lost for {peer} twice", p.id);
        times.push((peer, at));
    }
    times
}

// ---------------------------------------------------------------------------------------------
// 1. Simultaneous joins
// ---------------------------------------------------------------------------------------------

/// Two peers, on `n0` and `n1`, in `room`: joined, each knowing the other, an offer delivered
/// from the first to the second.
pub async fn call_across(n0: &Node, n1: &Node, room: &str) -> (V1Peer, V1Peer) {
    let mut a = V1Peer::connect(&n0.ws_url("/v1/ws")).await;
    let mut b = V1Peer::connect(&n1.ws_url("/v1/ws")).await;
    a.join(room).await;
    b.join(room).await;
    expect_peers_joined(&mut a, room, &[&b.id]).await;
    signal_arrives(&mut a, &mut b, room, offer()).await;
    (a, b)
}
