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
