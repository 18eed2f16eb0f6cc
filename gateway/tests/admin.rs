//! The admin API of a real gateway over a real cluster: its own redis-server, two node
//! processes, WebSocket peers on both. Nodes, rooms and members are read from what the nodes
//! write to Redis; kicks and closes are carried out by the node holding the members.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use switchboard_tests::{Client, Node, RedisServer, V1Peer, node_binary};

/// Fields drop in order: the processes go before the Redis they use (no reconnect noise).
struct Cluster {
    gw: Node,
    a: Node,
    b: Node,
    _redis: RedisServer,
}

impl Cluster {
    fn start() -> Cluster {
        let redis = RedisServer::start();
        let url = redis.url();
        let node = |id: &str| {
            let n = Node::start(&node_binary(), &["--redis-url", &url, "--node-id", id]);
            n.wait_ready(true, Duration::from_secs(10));
            n
        };
        let (a, b) = (node("node-a"), node("node-b"));
        let gw = production_like_gateway(&url, &[]);
        Cluster { gw, a, b, _redis: redis }
    }

    fn admin(&self, method: &str, path: &str) -> Resp {
        let auth = format!("Bearer {API_KEY}");
        call(method, &self.gw.http_url(path), &[("Authorization", &auth)], None)
    }

    fn ok(&self, method: &str, path: &str) -> Value {
        let res = self.admin(method, path);
        assert_eq!(res.status, 200, "{method} {path}: {}", res.body);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        res.json()
    }
}

/// Polls `f` until it returns `Some`, for up to 5 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn member_nodes(detail: &Value) -> BTreeSet<(String, String)> {
    detail["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["peer_id"].as_str().expect("peer_id").to_string(), m["node"].as_str().expect("node").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_rooms_and_members_across_two_nodes() {
    let c = Cluster::start();

    let nodes = eventually("both nodes listed", || {
        let list = c.ok("GET", "/v1/nodes");
        let ids: Vec<String> =
            list["nodes"].as_array()?.iter().filter_map(|n| n["id"].as_str().map(String::from)).collect();
        (ids == ["node-a", "node-b"]).then_some(list)
    });
    for n in nodes["nodes"].as_array().expect("nodes") {
        assert!(n["epoch"].as_u64().is_some_and(|e| e > 0), "{n}");
    }

    let mut p1 = V1Peer::connect(&c.a.ws_url("/v1/ws")).await;
    let mut p2 = V1Peer::connect(&c.b.ws_url("/v1/ws")).await;
    let mut p3 = V1Peer::connect(&c.b.ws_url("/v1/ws")).await;
    p1.ws.send_json(json!({"type": "join", "room": "standup", "meta": {"name": "Ann"}})).await;
    p1.ws.expect("joined").await;
    p2.join("standup").await;
    p3.join("retro").await;
    let mut seed = Client::connect(&c.a.ws_url("/ws")).await;
    seed.send_json(json!({"type": "join", "body": {"channelName": "lobby one", "userId": "carol"}})).await;
    seed.expect("joined").await;

    // Every room, with its member count and protocol.
    let rooms = c.ok("GET", "/v1/rooms");
    let mut listed: Vec<(String, String, u64)> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| {
            (
                r["room"].as_str().unwrap_or("").into(),
                r["protocol"].as_str().unwrap_or("").into(),
                r["members"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [("lobby one".into(), "seed".into(), 1), ("retro".into(), "v1".into(), 1), ("standup".into(), "v1".into(), 2)]
    );
    assert!(rooms.get("next_cursor").is_none(), "{rooms}");

    // Page by page, following the cursor: each room once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let page = c.ok("GET", &format!("/v1/rooms?limit=1&cursor={cursor}"));
        seen.extend(
            page["rooms"].as_array().expect("rooms").iter().map(|r| r["room"].as_str().unwrap_or("").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["lobby one", "retro", "standup"]);

    // A room's members, each with its node and what it joined with.
    let standup = c.ok("GET", "/v1/rooms/standup");
    assert_eq!((standup["room"].as_str(), standup["protocol"].as_str()), (Some("standup"), Some("v1")));
    assert_eq!(
        member_nodes(&standup),
        BTreeSet::from([(p1.id.clone(), "node-a".into()), (p2.id.clone(), "node-b".into())])
    );
    let ann =
        standup["members"].as_array().expect("members").iter().find(|m| m["peer_id"] == p1.id.as_str()).expect("p1");
    assert_eq!(ann["meta"], json!({"name": "Ann"}));

    // Seed channels: by ?protocol=seed or as seed/<channel>.
    for path in ["/v1/rooms/lobby%20one?protocol=seed", "/v1/rooms/seed%2Flobby%20one"] {
        let lobby = c.ok("GET", path);
        assert_eq!((lobby["room"].as_str(), lobby["protocol"].as_str()), (Some("lobby one"), Some("seed")), "{path}");
        let m = &lobby["members"][0];
        assert_eq!((m["seed_user"].as_str(), m["node"].as_str()), (Some("carol"), Some("node-a")), "{lobby}");
    }
    // The same name in the v1 namespace is another room.
    c.admin("GET", "/v1/rooms/lobby?protocol=v1").assert_error(404, "not-found");

    // Node details follow the heartbeats: node-b holds two rooms.
    eventually("node-b reports its rooms", || {
        let list = c.ok("GET", "/v1/nodes");
        let b = list["nodes"].as_array()?.iter().find(|n| n["id"] == "node-b")?.clone();
        (b["rooms"].as_u64() == Some(2)).then_some(())
    });

    // Errors.
    c.admin("GET", "/v1/rooms/nowhere").assert_error(404, "not-found");
    c.admin("GET", "/v1/rooms/bad%20name").assert_error(400, "bad-request");
    c.admin("GET", "/v1/rooms?cursor=abc").assert_error(400, "bad-request");
    c.admin("GET", "/v1/rooms?limit=0").assert_error(400, "bad-request");
    c.admin("GET", "/v1/rooms?limit=many").assert_error(400, "bad-request");
    for path in ["/v1/nodes", "/v1/rooms", "/v1/rooms/standup"] {
        call("GET", &c.gw.http_url(path), &[], None).assert_error(401, "unauthorized");
    }
    call("DELETE", &c.gw.http_url("/v1/rooms/standup"), &[("Authorization", "Bearer wrong-key-0123456789")], None)
        .assert_error(401, "unauthorized");
    p3.ws.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_and_close_are_carried_out_by_the_owning_nodes() {
    let c = Cluster::start();
    let mut p1 = V1Peer::connect(&c.a.ws_url("/v1/ws")).await;
    let mut p2 = V1Peer::connect(&c.b.ws_url("/v1/ws")).await;
    p1.join("standup").await;
    p2.join("standup").await;
    p1.ws.expect("peer-joined").await;

    // Kick p2 (on node b) through the gateway.
    let kicked = c.ok("DELETE", &format!("/v1/rooms/standup/members/{}", p2.id));
    assert_eq!(kicked["removed"], 1);
    // The answer came once it was gone from the cluster's state.
    assert_eq!(member_nodes(&c.ok("GET", "/v1/rooms/standup")), BTreeSet::from([(p1.id.clone(), "node-a".into())]));
    let left = p2.ws.expect("left").await;
    assert_eq!((left["room"].as_str(), left["reason"].as_str()), (Some("standup"), Some("kicked")), "{left}");
    let gone = p1.ws.expect("peer-left").await;
    assert_eq!((gone["peer_id"].as_str(), gone["reason"].as_str()), (Some(p2.id.as_str()), Some("kicked")), "{gone}");

    c.admin("DELETE", &format!("/v1/rooms/standup/members/{}", p2.id)).assert_error(404, "not-found");
    c.admin("DELETE", &format!("/v1/rooms/nowhere/members/{}", p2.id)).assert_error(404, "not-found");
    c.admin("DELETE", "/v1/rooms/standup/members/not-a-peer").assert_error(400, "bad-request");

    // Close the room with members on both nodes.
    let mut p3 = V1Peer::connect(&c.b.ws_url("/v1/ws")).await;
    p3.join("standup").await;
    let closed = c.ok("DELETE", "/v1/rooms/standup");
    assert_eq!(closed["removed"], 2);
    for p in [&mut p1, &mut p3] {
        let left = p.ws.expect("left").await;
        assert_eq!((left["room"].as_str(), left["reason"].as_str()), (Some("standup"), Some("room-closed")), "{left}");
    }
    c.admin("GET", "/v1/rooms/standup").assert_error(404, "not-found");
    c.admin("DELETE", "/v1/rooms/standup").assert_error(404, "not-found");
    // The sessions outlive the room: they may join again.
    p1.join("standup").await;

    let metrics = get(&c.gw, "/metrics", &[]).body;
    assert!(
        metrics.contains(r#"switchboard_http_requests_total{method="DELETE",route="/v1/rooms/{room}",status="200"} 1"#),
        "{metrics}"
    );
}

#[test]
fn without_redis_or_without_nodes_actions_fail_with_503_or_504() {
    let mut redis = RedisServer::start();
    let gw = production_like_gateway(&redis.url(), &[]);
    let auth = format!("Bearer {API_KEY}");
    let admin = |method: &str, path: &str| call(method, &gw.http_url(path), &[("Authorization", &auth)], None);
    assert_eq!(get(&gw, "/readyz", &[]).status, 200);
    assert_eq!(admin("GET", "/v1/nodes").json()["nodes"], json!([]));

    // A member record whose node is not running: no node listens on the control channel.
    let peer = "0123456789abc";
    let key = "sb:{switchboard}:room:ghost";
    redis.command(&["HSET", key, peer, "gone|1|{}"]).expect("HSET");
    admin("DELETE", &format!("/v1/rooms/ghost/members/{peer}")).assert_error(503, "unavailable");
    admin("DELETE", "/v1/rooms/ghost").assert_error(503, "unavailable");

    // A node listens, but none holds the member: nobody acts, and the gateway says so in time.
    let node = Node::start(&node_binary(), &["--redis-url", &redis.url(), "--node-id", "bystander"]);
    node.wait_ready(true, Duration::from_secs(10));
    let started = Instant::now();
    let res = admin("DELETE", "/v1/rooms/ghost");
    res.assert_error(504, "unavailable");
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());

    // Redis away: typed 503s, and the gateway is unready; back once Redis is.
    redis.kill();
    admin("GET", "/v1/nodes").assert_error(503, "unavailable");
    admin("GET", "/v1/rooms").assert_error(503, "unavailable");
    assert_eq!(get(&gw, "/readyz", &[]).status, 503);
    assert_eq!(get(&gw, "/healthz", &[]).status, 200);
    redis.restart();
    eventually("ready again", || (get(&gw, "/readyz", &[]).status == 200).then_some(()));
    eventually("the API answers again", || (admin("GET", "/v1/rooms").status == 200).then_some(()));
}
