//! Redis Cluster (issue 15): the cluster's keys in buckets spread over the shards, node channels
//! on sharded pub/sub. Three masters and three replicas of the test's own; three nodes on
//! `redis+cluster://`; 300 rooms beyond the streams' (every master holds some); numbered signals
//! streaming within and across nodes; the master holding the cross-node room SIGKILLed for
//! good. Judged like the Sentinel failover (see [`cluster::faults`]): every signal delivered once
//! and in order or answered, every view (300 rooms' included) equal to a fresh joiner's, no
//! silent loss, no `peer-left` at all, every node ready again within 15 s of the kill (the gap
//! is printed as evidence).

mod cluster;

use cluster::faults::{Fault, run};
use cluster::flow::assert_no_problems;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_s_failover_loses_nothing_silently_and_nobody_leaves() {
    assert_no_problems(&run(Fault::ClusterFailover).await.problems);
}

/// Resharding: the slot of a room's bucket moves to another master while its two members (on two
/// nodes) talk. The old master drops the nodes' shard subscriptions of that slot (a
/// `sunsubscribe` push, which the redis crate does not follow by itself) and answers their
/// writes `MOVED`: each node subscribes and registers again on the new master, and the call
/// carries on there; whatever was sent meanwhile is delivered or answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_by_resharding_is_followed() {
    use std::time::{Duration, Instant};

    use cluster::members::{answer, call_across, offer};
    use switchboard_tests::{Frame, Node, RedisCluster, V1Peer, node_binary};

    // Not beside the failover run: two Redis Clusters and their nodes on two cores starve each
    // other.
    let _one_at_a_time = cluster::faults::SERIAL.lock().await;
    let rc = RedisCluster::start();
    let url = rc.url();
    let start =
        |id: &str| Node::start(&node_binary(), &["--redis-url", &url, "--node-id", id, "--node-lease-ms", "1500"]);
    let (n0, n1) = (start("n0"), start("n1"));
    for n in [&n0, &n1] {
        n.wait_ready(true, Duration::from_secs(15));
    }
    let (mut a, mut b) = call_across(&n0, &n1, "moving").await;
    let masters = rc.masters();
    let from = masters.iter().find(|m| !m.keys("sb:*:room:moving").is_empty()).expect("a master holds the room");
    let key = from.keys("sb:*:room:moving").remove(0);
    let slot: u16 = from
        .command(&["CLUSTER", "KEYSLOT", &key])
        .and_then(|r| r.trim().trim_start_matches(':').parse().ok())
        .expect("CLUSTER KEYSLOT");
    let to = masters.iter().find(|m| m.port != from.port).expect("another master").port;
    let from = from.port;
    let channel = key.replace(":room:moving", ":node:n1");
    rc.move_slot(slot, to);
    let moved = Instant::now();
    println!("slot {slot} ({key}) moved from the master on {from} to the one on {to}");
    assert_eq!(rc.master_port_of(slot), Some(to));

    // Signals across, both ways, until each arrives (those sent while the nodes move are
    // answered `undeliverable`).
    async fn arrives(from: &mut V1Peer, to: &mut V1Peer, data: serde_json::Value) -> u32 {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 60, "no signal from {} reached {} after the slot moved", from.id, to.id);
            from.signal("moving", &to.id, data.clone()).await;
            // Besides the signal, a client may hear the node say calls across nodes pause.
            while let Some(Frame::Json(m)) = to.ws.next_within(Duration::from_millis(500)).await {
                if m["type"] == "signal" {
                    assert_eq!(m["data"], data, "{m}");
                    return tries;
                }
            }
            while let Some(Frame::Json(m)) = from.ws.next_within(Duration::from_millis(50)).await {
                if m["type"] == "error" {
                    assert_eq!(m["code"], "undeliverable", "{m}");
                }
            }
        }
    }
    let tries = arrives(&mut a, &mut b, offer()).await + arrives(&mut b, &mut a, answer()).await;
    println!("the call carries on {} ms after the move ({tries} sends)", moved.elapsed().as_millis());
    // Both nodes hear their channels on the new master now, and the room's record is there.
    let new = rc.server(to);
    let subscribed = new.command(&["PUBSUB", "SHARDNUMSUB", &channel]).unwrap_or_default();
    assert!(subscribed.trim_end().ends_with(":1"), "{channel} on the new master: {subscribed:?}");
    assert_eq!(new.keys("sb:*:room:moving"), std::slice::from_ref(&key));
    for n in [&n0, &n1] {
        let (_, metrics) = n.get("/metrics");
        let cuts: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("switchboard_bus_subscription_cuts_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(cuts >= 1.0, "the node never left the old master's subscription");
        assert_eq!(n.get("/readyz").0, 200);
    }
}
