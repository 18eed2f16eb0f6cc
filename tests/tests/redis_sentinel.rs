//! Redis under Sentinel (issue 15): the nodes find the master through the sentinels and follow a
//! failover by themselves. A master, a replica and three sentinels of the test's own; two nodes
//! on `redis+sentinel://`; numbered signals streaming within and across nodes; the master
//! SIGKILLed for good. Judged like every fault of `cluster_delivery.rs` (see
//! [`cluster::faults`]): every signal delivered once and in order or answered, views converged,
//! no silent loss; plus no `peer-left` at all, and both nodes ready again within 15 s of the kill
//! (the gap is printed as evidence). And an operator's failover while the old master lives on.

mod cluster;

use cluster::faults::{Fault, run};
use cluster::flow::assert_no_problems;

/// The master SIGKILLed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_s_failover_loses_nothing_silently_and_nobody_leaves() {
    assert_no_problems(&run(Fault::SentinelFailover { kill: true }).await.problems);
}

/// `SENTINEL FAILOVER` while the master lives on (demoted to a replica of the new one): the
/// nodes must follow the sentinels to the new master, not stay split on the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_failover_moves_every_node_to_the_new_master() {
    assert_no_problems(&run(Fault::SentinelFailover { kill: false }).await.problems);
}

/// Everything secured at once: TLS-only master, replica and sentinels (the test CA), an ACL user
/// (`default` off) that the URL gives to sentinels and servers alike. Two nodes on
/// `rediss+sentinel://app:…@…` relay across, the master is killed, and they relay across again
/// on the promoted replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_an_acl_user_reach_sentinels_and_servers_alike() {
    use std::time::{Duration, Instant};

    use cluster::members::{answer, call_across, offer, signal_arrives};
    use switchboard_tests::{Access, Node, SentinelSet, TestCa, node_binary};

    let ca = TestCa::generate("sentinel-tls");
    let user = Some(("app".into(), "app-secret-pw".into()));
    let access = Access { ca: Some(ca.ca_cert.clone()), user, client: None };
    let (mut set, replica) = SentinelSet::start_secured(&access, Some(&ca));
    let url = set.url();
    assert!(url.starts_with("rediss+sentinel://app:app-secret-pw@"), "{url}");
    let ca_file = ca.ca_cert.to_str().expect("utf-8 path");
    let start = |id: &str| {
        Node::start(
            &node_binary(),
            &["--redis-url", &url, "--redis-tls-ca-file", ca_file, "--node-id", id, "--node-lease-ms", "1500"],
        )
    };
    let (n0, n1) = (start("n0"), start("n1"));
    for n in [&n0, &n1] {
        n.wait_ready(true, Duration::from_secs(15));
    }
    let (mut a, mut b) = call_across(&n0, &n1, "secured").await;

    set.master.kill();
    let killed = Instant::now();
    // The nodes lost their connections at the kill; ready again means on the promoted replica.
    while set.master_port() != Some(replica.port) {
        assert!(killed.elapsed() < Duration::from_secs(15), "the sentinels never promoted the replica");
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in [&n0, &n1] {
        n.wait_ready(true, Duration::from_secs(15));
    }
    println!("both nodes ready again {} ms after the master's kill", killed.elapsed().as_millis());
    signal_arrives(&mut b, &mut a, "secured", answer()).await;
    signal_arrives(&mut a, &mut b, "secured", offer()).await;
}
