//! What a clustered node tells its v1 clients about its Redis: `welcome.cluster` to everyone,
//! and `cluster-status` frames only to clients that asked (`?notify=cluster-status`), so one
//! written before the frame existed never sees a message type it does not know. The demo page's
//! side of it (the notice, the address, no password) is in `browser_cluster.rs`.

mod cluster;

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::{Client, Frame, Node, node_binary};

use cluster::Cluster;

/// The next JSON frame within `t` (a Redis cut takes seconds to be sure of).
async fn next_json(c: &mut Client, t: Duration, what: &str) -> Value {
    match c.next_within(t).await {
        Some(Frame::Json(v)) => v,
        other => panic!("{what}: expected a frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_asked_hear_redis_go_and_come_back_and_others_see_it_only_in_welcome() {
    let mut c = Cluster::start(1, &[]);
    let redis = format!("127.0.0.1:{}", c.redis.port);
    let url = |path: &str| c.nodes[0].ws_url(path);
    let mut asked = Client::connect(&url("/v1/ws?room=r&notify=other,cluster-status")).await;
    let welcome = asked.expect("welcome").await;
    assert_eq!(welcome["cluster"], json!({"connected": true, "redis": redis}), "{welcome}");
    let mut plain = Client::connect(&url("/v1/ws")).await;
    assert_eq!(plain.expect("welcome").await["cluster"]["connected"], true);
    // The seed protocol has no such frame, whatever its client asks for.
    let mut seed = Client::connect(&url("/ws?notify=cluster-status")).await;

    c.redis.kill();
    let down = next_json(&mut asked, Duration::from_secs(15), "Redis killed").await;
    assert_eq!(down, json!({"type": "cluster-status", "connected": false, "redis": redis}));
    // Opened now, a session hears it in its welcome.
    let mut late = Client::connect(&url("/v1/ws")).await;
    assert_eq!(late.expect("welcome").await["cluster"], json!({"connected": false, "redis": redis}));

    c.redis.restart();
    let up = next_json(&mut asked, Duration::from_secs(15), "Redis back").await;
    assert_eq!(up, json!({"type": "cluster-status", "connected": true, "redis": redis}));
    // Nothing more (one frame per change), and nothing at all to those that did not ask.
    for (who, client) in [("asked", &mut asked), ("plain", &mut plain), ("late", &mut late), ("seed", &mut seed)] {
        if let Some(f) = client.next_within(Duration::from_millis(500)).await {
            panic!("{who} got {f:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_has_no_cluster_to_report() {
    let node = Node::start(&node_binary(), &[]);
    let mut client = Client::connect(&node.ws_url("/v1/ws?notify=cluster-status")).await;
    let welcome = client.expect("welcome").await;
    assert!(welcome.get("cluster").is_none(), "{welcome}");
    assert_eq!(welcome["protocol"], 1);
}
