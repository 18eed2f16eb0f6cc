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

/// The sentinel a node listens to for `+switch-master` freezes (SIGSTOP: its socket stays open,
/// nothing answers): the node notices (its pings go unanswered), moves to another sentinel, and
/// still hears an operator's failover there — `switchboard_bus_failovers_total` counts only
/// what it heard, so this is the watcher's doing, not a dropped connection's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_sentinel_is_left_for_another() {
    use std::time::{Duration, Instant};

    use switchboard_tests::{Node, SENTINEL_MASTER, SentinelSet, node_binary};

    let (set, replica) = SentinelSet::start();
    let url = set.url();
    let node = Node::start(&node_binary(), &["--redis-url", &url, "--node-id", "n0", "--node-lease-ms", "1500"]);
    node.wait_ready(true, Duration::from_secs(15));
    let failovers = || {
        let (_, body) = node.get("/metrics");
        body.lines()
            .filter(|l| l.starts_with("switchboard_bus_failovers_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    // The sentinel the node listens to: the one with a pub/sub client.
    let t0 = Instant::now();
    let watched = loop {
        let listened = set
            .sentinels
            .iter()
            .position(|s| s.command(&["CLIENT", "LIST", "TYPE", "pubsub"]).is_some_and(|l| l.contains("sub=1")));
        if let Some(i) = listened {
            break i;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the node listens to no sentinel");
        std::thread::sleep(Duration::from_millis(50));
    };
    let frozen = set.sentinels[watched].pid().expect("sentinel runs") as i32;
    // SAFETY: kill(2) on a sentinel this test started.
    assert_eq!(unsafe { libc::kill(frozen, libc::SIGSTOP) }, 0);
    // The watcher pings every 2 s and waits 1 s for the answer.
    std::thread::sleep(Duration::from_secs(5));
    let other = &set.sentinels[(watched + 1) % set.sentinels.len()];
    let reply = other.command(&["SENTINEL", "FAILOVER", SENTINEL_MASTER]);
    assert_eq!(reply.as_deref(), Some("+OK\r\n"), "SENTINEL FAILOVER");
    let asked = Instant::now();
    while failovers() < 1.0 {
        assert!(asked.elapsed() < Duration::from_secs(15), "the node never heard the switch (first sentinel frozen)");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "sentinel {watched} frozen; heard +switch-master {} ms after SENTINEL FAILOVER",
        asked.elapsed().as_millis()
    );
    // SAFETY: as above.
    unsafe { libc::kill(frozen, libc::SIGCONT) };
    while set.master_port() != Some(replica.port) {
        assert!(asked.elapsed() < Duration::from_secs(15), "the replica was not promoted");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.wait_ready(true, Duration::from_secs(15));
    println!("done {} ms after the failover", asked.elapsed().as_millis());
}
