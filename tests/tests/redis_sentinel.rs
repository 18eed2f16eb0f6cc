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
