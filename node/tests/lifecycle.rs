//! A node's life as operators see it: probes, metrics, and a SIGTERM drain that closes every
//! session with "going away" and a reason before the process exits.

use std::time::Duration;

use switchboard_tests::{Client, Node, V1Peer};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-node");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_answer() {
    let node = Node::start(BIN, &["--node-id", "probe-node"]);
    let (status, body) = node.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = node.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    let (status, body) = node.get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("switchboard_ready{node=\"probe-node\"} 1"), "{body}");
    let (status, _) = node.get("/v1/ws");
    assert_eq!(status, 426, "a plain GET of the WebSocket endpoint asks for an upgrade");
    let (status, _) = node.get("/nope");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_session_with_a_reason_and_exits() {
    let mut node = Node::start(BIN, &["--shutdown-timeout-secs", "5"]);
    let mut a = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    let mut b = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    a.join("drain").await;
    b.join("drain").await;
    let mut seed = Client::connect(&node.ws_url("/ws")).await;

    node.terminate();
    for ws in [&mut a.ws, &mut b.ws, &mut seed] {
        let close = ws.expect_close().await;
        assert_eq!(close, Some((1001, "shutdown".to_string())));
    }
    let status = node.wait_exit(Duration::from_secs(8)).expect("node exits after draining");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cluster_settings_fail_clearly_at_start() {
    for (args, expect) in [
        (&["--redis-url", "nonsense://127.0.0.1:1"][..], "--redis-url"),
        (&["--node-id", "a|b"][..], "--node-id"),
        (&["--cluster-name", "has space"][..], "--cluster-name"),
        (&["--node-lease-ms", "10"][..], "--node-lease-ms"),
    ] {
        let out =
            std::process::Command::new(BIN).args(["--listen", "127.0.0.1:0"]).args(args).output().expect("run node");
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_false_while_draining() {
    // A client that never reads keeps its session (and so the drain) open until the close
    // grace runs out, which leaves time to ask /readyz.
    let mut node = Node::start(
        BIN,
        &["--messages-per-sec", "0", "--max-outbound-bytes", "67108864", "--shutdown-timeout-secs", "5"],
    );
    let mut flooder = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    let mut sleeper = V1Peer::connect(&node.ws_url("/v1/ws")).await;
    flooder.join("drain-slow").await;
    sleeper.join("drain-slow").await;
    flooder.ws.expect("peer-joined").await;
    let blob = "x".repeat(60 * 1024);
    for _ in 0..400 {
        flooder.ws.send_json(serde_json::json!({"type": "broadcast", "room": "drain-slow", "data": blob})).await;
    }
    // Let the node push what the kernel takes; the rest waits in the sleeper's outbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.get("/readyz").0, 200);

    node.terminate();
    let mut saw_unready = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (status, body) = node.get("/readyz");
        if status == 503 {
            assert!(body.contains("\"draining\":true"), "{body}");
            saw_unready = true;
            break;
        }
    }
    assert!(saw_unready, "/readyz never reported 503 during the drain");
    assert!(node.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    drop(sleeper);
}
