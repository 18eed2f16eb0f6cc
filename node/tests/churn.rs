//! Churn without leaks: waves of peers join rooms, signal, and go away — cleanly, by `leave`,
//! or by dropping the socket mid-call — and afterwards every gauge is back to zero and the
//! node's memory has stopped growing from one wave to the next.

mod common;

use std::time::Duration;

use common::{assert_healthy, node_metric, start};
use serde_json::json;
use switchboard_tests::{Node, V1Peer};

const WAVES: usize = 5;
const ROOMS_PER_WAVE: usize = 200;

/// One wave: `ROOMS_PER_WAVE` two-peer rooms, one signal each way, then every third room ends
/// by `leave`, every third by a close frame, every third by a dropped socket.
async fn wave(url: &str, wave: usize) {
    let mut tasks = Vec::new();
    for r in 0..ROOMS_PER_WAVE {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let room = format!("churn-{wave}-{r}");
            let mut a = V1Peer::connect(&url).await;
            let mut b = V1Peer::connect(&url).await;
            a.join(&room).await;
            b.join(&room).await;
            a.signal(&room, &b.id, json!({"n": r})).await;
            assert_eq!(b.ws.expect("signal").await["data"]["n"], r);
            b.signal(&room, &a.id, json!({"n": r})).await;
            assert_eq!(a.ws.expect("signal").await["data"]["n"], r);
            match r % 3 {
                0 => {
                    a.ws.send_json(json!({"type": "leave", "room": room})).await;
                    a.ws.expect("left").await;
                    b.ws.send_json(json!({"type": "leave", "room": room})).await;
                    b.ws.expect("left").await;
                    a.ws.close().await;
                    b.ws.close().await;
                }
                1 => {
                    a.ws.close().await;
                    b.ws.close().await;
                }
                _ => drop((a, b)),
            }
        }));
    }
    for t in tasks {
        t.await.expect("room task");
    }
}

/// Waits until the node reports no connections, rooms or members.
async fn settle(node: &Node) -> (f64, f64, f64) {
    let mut last = (0.0, 0.0, 0.0);
    for _ in 0..100 {
        last = (
            node_metric(node, "switchboard_connections", &[]),
            node_metric(node, "switchboard_rooms", &[]),
            node_metric(node, "switchboard_room_members", &[]),
        );
        if last == (0.0, 0.0, 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_of_calls_leave_nothing_behind() {
    // Dropped sockets (every third room) hold their sessions for a resume: a short grace.
    let mut node = start(&["--messages-per-sec", "0", "--reconnect-grace-ms", "300"]);
    let url = node.ws_url("/v1/ws");
    let mut rss = Vec::new();
    for w in 0..WAVES {
        wave(&url, w).await;
        assert_eq!(settle(&node).await, (0.0, 0.0, 0.0), "wave {w}: connections, rooms, members left behind");
        rss.push(node.rss_kib());
    }
    assert_healthy(&mut node);
    println!("RSS after each wave of {} sessions (KiB): {rss:?}", ROOMS_PER_WAVE * 2);
    // The first wave grows the allocator's pools; later waves must reuse them.
    let growth = rss[WAVES - 1].saturating_sub(rss[1]);
    assert!(growth < 4096, "RSS kept growing across waves: {rss:?}");
    let opened = node_metric(&node, "switchboard_connections_total", &[]);
    assert_eq!(opened, (WAVES * ROOMS_PER_WAVE * 2) as f64);
}
