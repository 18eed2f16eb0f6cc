//! Cluster membership through real node processes and a `redis-server` of the test's own:
//! simultaneous joins on three nodes, a node killed with SIGKILL, a node paused past its lease
//! (fenced) and resumed, two clusters sharing one Redis, and the seed protocol across nodes.
//!
//! Redis is inspected directly (raw RESP) to check what the cluster leaves behind: the key
//! layout is the one documented in `node/src/bus/redis/keys.rs`.

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Client, Frame, Node, RedisServer, V1Peer, node_binary};

use cluster::{Cluster, wait_ready};

/// How long a client must stay silent to count as "got nothing".
const QUIET: Duration = Duration::from_millis(300);
/// The node's default lease (`--node-lease-ms`).
const DEFAULT_LEASE_MS: u64 = 3000;

const OFFER: &str = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

fn offer() -> Value {
    json!({"type": "offer", "sdp": OFFER})
}

fn answer() -> Value {
    json!({"type": "answer", "sdp": ANSWER})
}

fn candidate(i: usize) -> Value {
    let line = format!("candidate:{i} 1 udp 2122260223 192.0.2.1 {} typ host", 5000 + i);
    json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0})
}

// ---------------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------------

/// Like [`Cluster::start`], with a lease of `lease_ms` instead of the harness's short one.
fn cluster_with_lease(n: usize, lease_ms: u64, extra: &[&str]) -> Cluster {
    let redis = RedisServer::start();
    let mut args: Vec<String> = vec!["--redis-url".into(), redis.url(), "--node-lease-ms".into(), lease_ms.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut c = Cluster { redis, nodes: Vec::new(), args };
    for i in 0..n {
        let node = c.start_node(&format!("n{i}"));
        c.nodes.push(node);
    }
    c
}

/// A node of cluster `name` on `redis`, ready.
fn start_named(redis: &RedisServer, name: &str, id: &str) -> Node {
    let url = redis.url();
    let node = Node::start(
        &node_binary(),
        &["--redis-url", &url, "--node-lease-ms", "1500", "--cluster-name", name, "--node-id", id],
    );
    wait_ready(&node, true, Duration::from_secs(10));
    node
}

fn signal_process(node: &Node, sig: i32) {
    // SAFETY: kill(2) on the pid of a child process this test owns (not yet reaped).
    let rc = unsafe { libc::kill(node.pid() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}) failed", node.pid());
}

// ---------------------------------------------------------------------------------------------
// Redis inspection (raw RESP)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Resp {
    Nil,
    Int(i64),
    Str(String),
    Err(String),
    Arr(Vec<Resp>),
}

fn parse_resp(reply: &str) -> Resp {
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

fn query(r: &RedisServer, args: &[&str]) -> Resp {
    let reply = r.command(args).unwrap_or_else(|| panic!("redis unreachable for {args:?}"));
    match parse_resp(&reply) {
        Resp::Err(e) => panic!("redis {args:?}: {e}"),
        v => v,
    }
}

fn get(r: &RedisServer, key: &str) -> Option<String> {
    match query(r, &["GET", key]) {
        Resp::Nil => None,
        Resp::Str(s) => Some(s),
        other => panic!("GET {key}: {other:?}"),
    }
}

fn hgetall(r: &RedisServer, key: &str) -> BTreeMap<String, String> {
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

fn zrange(r: &RedisServer, key: &str) -> BTreeSet<String> {
    let Resp::Arr(items) = query(r, &["ZRANGE", key, "0", "-1"]) else { panic!("ZRANGE {key}: not an array") };
    items
        .into_iter()
        .map(|i| match i {
            Resp::Str(s) => s,
            other => panic!("ZRANGE {key}: {other:?}"),
        })
        .collect()
}

fn pttl(r: &RedisServer, key: &str) -> i64 {
    match query(r, &["PTTL", key]) {
        Resp::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
}

fn exists(r: &RedisServer, key: &str) -> bool {
    query(r, &["EXISTS", key]) == Resp::Int(1)
}

/// A membership record `node|epoch|json` as (node, epoch).
fn record(value: &str) -> (String, u64) {
    let mut parts = value.splitn(3, '|');
    let (Some(node), Some(epoch), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("not a membership record: {value:?}");
    };
    assert!(serde_json::from_str::<Value>(body).is_ok(), "record body is not JSON: {value:?}");
    (node.to_string(), epoch.parse().unwrap_or_else(|_| panic!("epoch of {value:?}")))
}

fn key(cluster: &str, rest: &str) -> String {
    format!("sb:{{{cluster}}}:{rest}")
}

/// Polls `check` until it holds; panics with `what` after `within`.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
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
async fn expect_peers_joined(p: &mut V1Peer, room: &str, ids: &[&str]) {
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
async fn expect_peer_left(p: &mut V1Peer, room: &str, peer: &str, reason: &str) {
    let m = p.ws.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["room"].as_str(), m["peer_id"].as_str(), m["reason"].as_str()),
        (Some("peer-left"), Some(room), Some(peer), Some(reason)),
        "{}: expected peer-left {peer} ({reason}) in {room}, got {m}",
        p.id
    );
}

/// `from`'s signal `data` to `to` arrives, stamped with `from`'s id.
async fn signal_arrives(from: &mut V1Peer, to: &mut V1Peer, room: &str, data: Value) {
    from.signal(room, &to.id, data.clone()).await;
    let m = to.ws.recv().await;
    assert_eq!(m["type"], "signal", "{}: expected a signal from {}, got {m}", to.id, from.id);
    assert_eq!((m["room"].as_str(), m["from"].as_str()), (Some(room), Some(from.id.as_str())), "{m}");
    assert_eq!(m["data"], data);
}

/// Reads `p` after its join of `room` until it has its `joined` and knows every other peer of
/// `all`; returns (peers listed in `joined`, peers announced by `peer-joined`). Frames of earlier
/// rounds may only be `peer-left`s; anything else, a peer known twice or a stranger fails.
async fn see_join(p: &mut V1Peer, room: &str, all: &[String]) -> (Vec<String>, Vec<String>) {
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
async fn node_lost_times(p: &mut V1Peer, room: &str, lost: &[&str], since: Instant) -> Vec<(String, Duration)> {
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

const ROUNDS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_joins_on_three_nodes_always_see_each_other() {
    // Each connection sends two messages a round: the per-connection message rate is not what
    // this test is about.
    let c = Cluster::start(3, &["--messages-per-sec", "0"]);
    let mut peers = Vec::new();
    for n in &c.nodes {
        peers.push(V1Peer::connect(&n.ws_url("/v1/ws")).await);
    }
    let ids: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
    let [p0, p1, p2] = &mut peers[..] else { unreachable!() };
    // How often each node's peer was the first to be recorded: the race is real only if
    // this varies.
    let mut first = [0usize; 3];
    let started = Instant::now();
    for round in 0..ROUNDS {
        let room = format!("sim-{round}");
        let join = json!({"type": "join", "room": room});
        tokio::join!(p0.ws.send_json(join.clone()), p1.ws.send_json(join.clone()), p2.ws.send_json(join.clone()));
        let (s0, s1, s2) =
            tokio::join!(see_join(p0, &room, &ids), see_join(p1, &room, &ids), see_join(p2, &room, &ids));
        // Joins are recorded one after the other atomically: the k-th recorded joiner lists the
        // k-1 before it in `joined` and hears of the later ones by `peer-joined`. So for every
        // pair, exactly one learned of the other from its `joined`.
        let listed = [s0.0.len(), s1.0.len(), s2.0.len()];
        let mut sorted = listed;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [0, 1, 2],
            "round {round}: joined lists {:?}, peer-joined {:?}",
            [&s0.0, &s1.0, &s2.0],
            [&s0.1, &s1.1, &s2.1]
        );
        first[listed.iter().position(|&n| n == 0).expect("a first joiner")] += 1;

        let leave = json!({"type": "leave", "room": room});
        tokio::join!(p0.ws.send_json(leave.clone()), p1.ws.send_json(leave.clone()), p2.ws.send_json(leave.clone()));
        tokio::join!(p0.ws.expect("left"), p1.ws.expect("left"), p2.ws.expect("left"));
    }
    println!(
        "{ROUNDS} rounds of three simultaneous joins in {:?}; first recorded per node: {first:?}",
        started.elapsed()
    );

    // Every room is gone from Redis once the leaves are through.
    eventually(Duration::from_secs(5), "no room or room index left in Redis", || {
        c.redis.keys("sb:{switchboard}:room:*").is_empty() && c.redis.keys("sb:{switchboard}:node-rooms:*").is_empty()
    });
    // And nothing but the last round's departures arrives afterwards.
    for p in [p0, p1, p2] {
        while let Some(f) = p.ws.next_within(QUIET).await {
            let Frame::Json(m) = &f else { panic!("{}: {f:?}", p.id) };
            assert_eq!((m["type"].as_str(), m["room"].as_str()), (Some("peer-left"), Some("sim-199")), "{m}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A node killed with SIGKILL
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_members_leave_with_node_lost_within_five_seconds() {
    let c = cluster_with_lease(3, DEFAULT_LEASE_MS, &[]);
    let url = |i: usize| c.nodes[i].ws_url("/v1/ws");
    // Room A: one observer on n0, one on n2, two members on n1. Room B: the same with one.
    let mut a0 = V1Peer::connect(&url(0)).await;
    let mut a2 = V1Peer::connect(&url(2)).await;
    let mut k1 = V1Peer::connect(&url(1)).await;
    let mut k2 = V1Peer::connect(&url(1)).await;
    let mut b0 = V1Peer::connect(&url(0)).await;
    let mut b2 = V1Peer::connect(&url(2)).await;
    let mut k3 = V1Peer::connect(&url(1)).await;
    a0.join("crash-a").await;
    a2.join("crash-a").await;
    k1.join("crash-a").await;
    k2.join("crash-a").await;
    b0.join("crash-b").await;
    b2.join("crash-b").await;
    k3.join("crash-b").await;
    expect_peers_joined(&mut a0, "crash-a", &[&a2.id, &k1.id, &k2.id]).await;
    expect_peers_joined(&mut a2, "crash-a", &[&k1.id, &k2.id]).await;
    expect_peers_joined(&mut b0, "crash-b", &[&b2.id, &k3.id]).await;
    expect_peers_joined(&mut b2, "crash-b", &[&k3.id]).await;
    let room_a = hgetall(&c.redis, &key("switchboard", "room:crash-a"));
    assert_eq!(room_a.get(&k1.id).map(|v| record(v).0), Some("n1".into()), "{room_a:?}");

    let killed = Instant::now();
    signal_process(&c.nodes[1], libc::SIGKILL);
    let (lost_a, lost_b) = (vec![k1.id.as_str(), k2.id.as_str()], vec![k3.id.as_str()]);
    let (t_a0, t_a2, t_b0, t_b2) = tokio::join!(
        node_lost_times(&mut a0, "crash-a", &lost_a, killed),
        node_lost_times(&mut a2, "crash-a", &lost_a, killed),
        node_lost_times(&mut b0, "crash-b", &lost_b, killed),
        node_lost_times(&mut b2, "crash-b", &lost_b, killed),
    );
    let mut worst = Duration::ZERO;
    for (who, node, times) in [("a0", "n0", &t_a0), ("a2", "n2", &t_a2), ("b0", "n0", &t_b0), ("b2", "n2", &t_b2)] {
        for (peer, t) in times.iter() {
            println!(
                "node-lost for {peer} reached {who} (on {node}) {t:?} after SIGKILL (lease {DEFAULT_LEASE_MS} ms)"
            );
            worst = worst.max(*t);
        }
    }
    assert!(worst <= Duration::from_secs(5), "node-lost took {worst:?} (> 5 s) after SIGKILL");

    // The killed node is gone from Redis: no member record, lease, room index or liveness entry.
    for room in ["crash-a", "crash-b"] {
        let members = hgetall(&c.redis, &key("switchboard", &format!("room:{room}")));
        assert!(members.values().all(|v| !v.starts_with("n1|")), "{room} still holds n1's members: {members:?}");
        assert_eq!(members.len(), 2, "{room}: {members:?}");
    }
    assert_eq!(get(&c.redis, &key("switchboard", "lease:n1")), None, "n1's lease is still there");
    assert!(!exists(&c.redis, &key("switchboard", "node-rooms:n1")), "n1's room index is still there");
    assert_eq!(zrange(&c.redis, &key("switchboard", "nodes")), BTreeSet::from(["n0".into(), "n2".into()]));

    // The survivors carry on: the lost members are unknown, the others are reachable.
    a0.signal("crash-a", &k1.id, offer()).await;
    a0.ws.expect_error("unknown-peer").await;
    signal_arrives(&mut a0, &mut a2, "crash-a", offer()).await;
    signal_arrives(&mut b2, &mut b0, "crash-b", candidate(1)).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Fencing: a node paused past its lease
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_is_lost_then_comes_back_under_a_new_epoch() {
    let c = Cluster::start(3, &[]);
    let url = |i: usize| c.nodes[i].ws_url("/v1/ws");
    let mut f0 = V1Peer::connect(&url(0)).await;
    let mut f1 = V1Peer::connect(&url(1)).await;
    let mut f2 = V1Peer::connect(&url(2)).await;
    let mut g0 = V1Peer::connect(&url(0)).await;
    let mut g1 = V1Peer::connect(&url(1)).await;
    f0.join("fence").await;
    f1.join("fence").await;
    f2.join("fence").await;
    g0.join("fence-b").await;
    g1.join("fence-b").await;
    expect_peers_joined(&mut f0, "fence", &[&f1.id, &f2.id]).await;
    expect_peers_joined(&mut f1, "fence", &[&f2.id]).await;
    expect_peers_joined(&mut g0, "fence-b", &[&g1.id]).await;

    let room_key = key("switchboard", "room:fence");
    let room_b_key = key("switchboard", "room:fence-b");
    let before = hgetall(&c.redis, &room_key);
    let (node, epoch_before) = record(&before[&f1.id]);
    assert_eq!(node, "n1");
    assert_eq!(get(&c.redis, &key("switchboard", "lease:n1")), Some(epoch_before.to_string()));

    // Paused longer than its lease: the others declare it lost.
    let stopped = Instant::now();
    signal_process(&c.nodes[1], libc::SIGSTOP);
    expect_peer_left(&mut f0, "fence", &f1.id, "node-lost").await;
    expect_peer_left(&mut f2, "fence", &f1.id, "node-lost").await;
    expect_peer_left(&mut g0, "fence-b", &g1.id, "node-lost").await;
    println!("n1 declared lost {:?} after SIGSTOP (lease {} ms)", stopped.elapsed(), cluster::LEASE_MS);
    let during = hgetall(&c.redis, &room_key);
    assert!(!during.contains_key(&f1.id), "n1's member is still recorded: {during:?}");
    let during_b = hgetall(&c.redis, &room_b_key);
    assert!(!during_b.contains_key(&g1.id), "n1's member is still recorded: {during_b:?}");
    assert_eq!(get(&c.redis, &key("switchboard", "lease:n1")), None);
    // While it is away its members are unknown to the others.
    f0.signal("fence", &f1.id, offer()).await;
    f0.ws.expect_error("unknown-peer").await;

    // Resumed: it finds its lease gone, registers under a new epoch and writes its members
    // again, which the others see as joins.
    let resumed = Instant::now();
    signal_process(&c.nodes[1], libc::SIGCONT);
    let m = f0.ws.recv().await;
    println!("n1's member back on n0 {:?} after SIGCONT", resumed.elapsed());
    assert_eq!((m["type"].as_str(), m["peer"]["peer_id"].as_str()), (Some("peer-joined"), Some(f1.id.as_str())), "{m}");
    expect_peers_joined(&mut f2, "fence", &[&f1.id]).await;
    expect_peers_joined(&mut g0, "fence-b", &[&g1.id]).await;

    let after = hgetall(&c.redis, &room_key);
    let (node, epoch_after) = record(&after[&f1.id]);
    assert_eq!(node, "n1");
    assert!(epoch_after > epoch_before, "re-asserted under epoch {epoch_after}, was {epoch_before}");
    assert_eq!(get(&c.redis, &key("switchboard", "lease:n1")), Some(epoch_after.to_string()));

    // Relays work both ways again, across all three nodes.
    signal_arrives(&mut f1, &mut f0, "fence", offer()).await;
    signal_arrives(&mut f0, &mut f1, "fence", answer()).await;
    signal_arrives(&mut f1, &mut f2, "fence", candidate(7)).await;
    signal_arrives(&mut f2, &mut f1, "fence", candidate(8)).await;
    signal_arrives(&mut g1, &mut g0, "fence-b", offer()).await;
    f1.ws.send_json(json!({"type": "broadcast", "room": "fence", "data": {"back": true}})).await;
    for p in [&mut f0, &mut f2] {
        let m = p.ws.expect("broadcast").await;
        assert_eq!((m["from"].as_str(), &m["data"]), (Some(f1.id.as_str()), &json!({"back": true})), "{m}");
    }

    // Nothing stale lingers: one record per member, n1's under the new epoch only, n1's room
    // index counting one member per room, and three live nodes.
    let members = hgetall(&c.redis, &room_key);
    let owners: BTreeMap<&str, String> = members.iter().map(|(p, v)| (p.as_str(), record(v).0)).collect();
    let want: BTreeMap<&str, String> =
        [(f0.id.as_str(), "n0".into()), (f1.id.as_str(), "n1".into()), (f2.id.as_str(), "n2".into())].into();
    assert_eq!(owners, want, "{members:?}");
    let room_b = hgetall(&c.redis, &room_b_key);
    assert_eq!(room_b.len(), 2, "{room_b:?}");
    assert_eq!(record(&room_b[&g1.id]), ("n1".into(), epoch_after));
    let index = hgetall(&c.redis, &key("switchboard", "node-rooms:n1"));
    assert_eq!(index, BTreeMap::from([("fence".into(), "1".into()), ("fence-b".into(), "1".into())]));
    assert_eq!(zrange(&c.redis, &key("switchboard", "nodes")), BTreeSet::from(["n0".into(), "n1".into(), "n2".into()]));
    assert_eq!(c.redis.keys("sb:{switchboard}:lease:*").len(), 3);

    // The resumed node's own members saw no churn: nobody left or joined from their side.
    f1.ws.expect_silence(QUIET).await;
    g1.ws.expect_silence(QUIET).await;
}

/// A signal sent by a peer of a paused node while it is paused is read by that node when it
/// resumes, possibly before it notices its lease is gone. The relay must then either reach its
/// target (after the target saw the sender join again) or come back to the sender as
/// `undeliverable`: a relay is never lost in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_sent_while_its_node_was_paused_is_delivered_or_refused_never_lost() {
    let c = Cluster::start(2, &[]);
    let mut f0 = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    let mut f1 = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    f0.join("paused").await;
    f1.join("paused").await;
    expect_peers_joined(&mut f0, "paused", &[&f1.id]).await;

    signal_process(&c.nodes[1], libc::SIGSTOP);
    expect_peer_left(&mut f0, "paused", &f1.id, "node-lost").await;
    // Written to n1's socket while n1 is stopped: n1 handles it as soon as it resumes.
    f1.signal("paused", &f0.id, offer()).await;
    signal_process(&c.nodes[1], libc::SIGCONT);
    // f1 comes back first (peer-joined precedes any signal from f1)...
    expect_peers_joined(&mut f0, "paused", &[&f1.id]).await;
    // ...then either the offer reaches f0, or f1 is told it was not delivered.
    let wait = Duration::from_secs(3);
    let (who, got) = tokio::select! {
        m = f0.ws.next_within(wait) => ("f0", m),
        m = f1.ws.next_within(wait) => ("f1", m),
    };
    match (who, &got) {
        ("f0", Some(Frame::Json(m))) if m["type"] == "signal" => {
            assert_eq!((m["from"].as_str(), &m["data"]), (Some(f1.id.as_str()), &offer()), "{m}");
        }
        ("f1", Some(Frame::Json(m))) if m["type"] == "error" => assert_eq!(m["code"], "undeliverable", "{m}"),
        _ => panic!(
            "the offer f1 sent while n1 was paused was lost in silence: within {wait:?} after f1 rejoined, f0 got no \
             signal and f1 no undeliverable error (first event: {who}: {got:?})"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Two clusters on one Redis; every key expires
// ---------------------------------------------------------------------------------------------

/// Asserts every key in `r` but the epoch counters has a TTL (a key that expired between the
/// listing and the check is fine); returns the keys seen.
fn assert_all_keys_expire(r: &RedisServer, clusters: &[&str]) -> Vec<String> {
    let keys = r.keys("*");
    let counters: Vec<String> = clusters.iter().map(|c| key(c, "epoch")).collect();
    for k in &keys {
        assert!(clusters.iter().any(|c| k.starts_with(&key(c, ""))), "a key outside the clusters' namespaces: {k}");
        if counters.contains(k) {
            continue;
        }
        let ttl = pttl(r, k);
        assert!(ttl > 0 || ttl == -2, "{k} has no TTL (PTTL {ttl})");
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clusters_on_one_redis_never_mix_and_every_key_expires() {
    let redis = RedisServer::start();
    // The same node ids in both clusters: only the cluster name keeps them apart.
    let mut nodes = vec![
        start_named(&redis, "alpha", "n0"),
        start_named(&redis, "alpha", "n1"),
        start_named(&redis, "beta", "n0"),
        start_named(&redis, "beta", "n1"),
    ];
    let url = |i: usize| nodes[i].ws_url("/v1/ws");
    let mut a0 = V1Peer::connect(&url(0)).await;
    let mut a1 = V1Peer::connect(&url(1)).await;
    let mut b0 = V1Peer::connect(&url(2)).await;
    let mut b1 = V1Peer::connect(&url(3)).await;

    // Interleaved joins of the same room name.
    assert_eq!(a0.join("shared").await["peers"], json!([]));
    assert_eq!(b0.join("shared").await["peers"], json!([]), "beta's first joiner sees alpha's member");
    assert_eq!(a1.join("shared").await["peers"], json!([{"peer_id": a0.id}]));
    assert_eq!(b1.join("shared").await["peers"], json!([{"peer_id": b0.id}]));
    expect_peers_joined(&mut a0, "shared", &[&a1.id]).await;
    expect_peers_joined(&mut b0, "shared", &[&b1.id]).await;

    // A call in each cluster; relays stay inside their cluster.
    signal_arrives(&mut a0, &mut a1, "shared", offer()).await;
    signal_arrives(&mut b1, &mut b0, "shared", offer()).await;
    signal_arrives(&mut a1, &mut a0, "shared", answer()).await;
    signal_arrives(&mut b0, &mut b1, "shared", answer()).await;
    a0.signal("shared", &b0.id, candidate(1)).await;
    a0.ws.expect_error("unknown-peer").await;
    b1.signal("shared", &a1.id, candidate(1)).await;
    b1.ws.expect_error("unknown-peer").await;
    a0.ws.send_json(json!({"type": "broadcast", "room": "shared", "data": "alpha"})).await;
    b0.ws.send_json(json!({"type": "broadcast", "room": "shared", "data": "beta"})).await;
    assert_eq!(a1.ws.expect("broadcast").await["data"], "alpha");
    assert_eq!(b1.ws.expect("broadcast").await["data"], "beta");
    for p in [&mut a0, &mut a1, &mut b0, &mut b1] {
        p.ws.expect_silence(QUIET).await;
    }

    // Redis holds each cluster's own records.
    for (c, mine, theirs) in [("alpha", [&a0, &a1], [&b0, &b1]), ("beta", [&b0, &b1], [&a0, &a1])] {
        let members = hgetall(&redis, &key(c, "room:shared"));
        let ids: BTreeSet<&str> = members.keys().map(String::as_str).collect();
        assert_eq!(ids, BTreeSet::from([mine[0].id.as_str(), mine[1].id.as_str()]), "{c}: {members:?}");
        assert!(theirs.iter().all(|p| !members.contains_key(&p.id)));
        for k in ["epoch", "nodes", "lease:n0", "lease:n1", "node-rooms:n0", "node-rooms:n1"] {
            assert!(exists(&redis, &key(c, k)), "{c}: {k} missing");
        }
    }

    // While the calls are up, every key but the two epoch counters expires.
    let keys = assert_all_keys_expire(&redis, &["alpha", "beta"]);
    println!("with calls up: {} keys, all expiring but the epoch counters: {keys:?}", keys.len());

    // Every node crashes: nothing is left behind forever.
    for n in &nodes {
        signal_process(n, libc::SIGKILL);
    }
    for n in &mut nodes {
        assert!(n.wait_exit(Duration::from_secs(5)).is_some(), "a node survived SIGKILL");
    }
    let keys = assert_all_keys_expire(&redis, &["alpha", "beta"]);
    assert!(keys.contains(&key("alpha", "room:shared")) && keys.contains(&key("beta", "room:shared")), "{keys:?}");
    println!("after SIGKILL of every node: {} keys, all expiring but the epoch counters", keys.len());
}

// ---------------------------------------------------------------------------------------------
// 5. The seed protocol across nodes
// ---------------------------------------------------------------------------------------------

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
