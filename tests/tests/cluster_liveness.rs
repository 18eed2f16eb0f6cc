//! Node liveness and fencing: a node killed with SIGKILL (its peers leave with `node-lost`
//! within the bound), and a node paused past its lease (declared lost, then back under a new
//! epoch without resurrecting stale state or slipping relays through).

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_tests::{Frame, V1Peer};

use cluster::Cluster;
use cluster::members::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_members_leave_with_node_lost_within_five_seconds() {
    let c = Cluster::with_lease(3, DEFAULT_LEASE_MS, &[]);
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

/// A node stopped on purpose (SIGTERM) drains and leaves the cluster at once: its peers leave
/// with `shutdown`, never later with `node-lost`, and Redis holds nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_with_sigterm_leaves_the_cluster_at_once() {
    let mut c = Cluster::with_lease(2, DEFAULT_LEASE_MS, &["--resume-grace-ms", "500"]);
    let mut a = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    let mut b = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    a.join("bye").await;
    b.join("bye").await;
    a.ws.expect("peer-joined").await;

    c.nodes[1].terminate();
    // b is told to reconnect elsewhere but never does: once its grace has passed it leaves.
    let reconnect = b.ws.expect("reconnect").await;
    assert!(reconnect["within_ms"].as_u64().is_some_and(|ms| ms <= 500), "{reconnect}");
    b.ws.close().await;
    expect_peer_left(&mut a, "bye", &b.id, "timeout").await;
    let status = c.nodes[1].wait_exit(Duration::from_secs(10)).expect("the node exits after its drain");
    assert!(status.success(), "{status:?}");
    assert!(!exists(&c.redis, &key("switchboard", "lease:n1")), "the lease outlived a clean exit");
    assert!(!zrange(&c.redis, &key("switchboard", "nodes")).contains("n1"));
    assert!(hgetall(&c.redis, &key("switchboard", "room:bye")).values().all(|v| !v.starts_with("n1|")));
    // Nothing more about b, not even after the lease would have run out.
    a.ws.expect_silence(Duration::from_millis(DEFAULT_LEASE_MS + 1000)).await;
}
