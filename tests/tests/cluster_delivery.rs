//! Cross-node delivery you can prove (issue 12): under each fault an operator can cause, every
//! numbered signal is delivered once and in order or answered `undeliverable` (never both,
//! never neither), and every client's view of its room comes right within 5 s of the heal.
//!
//! One test per fault, each with real node processes and a `redis-server` of its own; the
//! scenarios, and what each run checks, are in [`cluster::faults`] (shared with the
//! `delivery_soak` bench, which repeats them). Runs are serialized: 10-20 s each, about 1.5 min for
//! the file.

mod cluster;

use std::time::Duration;

use cluster::faults::{Fault, run};
use cluster::flow::assert_no_problems;

/// Redis cuts n1's subscriber (a small `client-output-buffer-limit pubsub`) under a flood of
/// 60 KB cross-node signals.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_cut_by_redis_loses_nothing_silently() {
    assert_no_problems(&run(Fault::SubscriberCut).await.problems);
}

/// n1 stopped (SIGSTOP) for 1 s, less than its 1.5 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_under_its_lease_loses_nothing_silently() {
    assert_no_problems(&run(Fault::NodePause(Duration::from_millis(1000))).await.problems);
}

/// n1 stopped for 3 s, more than its lease: n0's members see it leave (`node-lost`) and come
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_loses_nothing_silently_and_rejoins() {
    assert_no_problems(&run(Fault::NodePause(Duration::from_millis(3000))).await.problems);
}

/// n1's path to Redis stalls for 10 s (no FIN, no RST), then heals; a peer of n0 leaves
/// meanwhile, and n1's members must see it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_partitioned_from_redis_loses_nothing_silently_and_keeps_no_ghost() {
    assert_no_problems(&run(Fault::Partition(Duration::from_secs(10))).await.problems);
}

/// Redis SIGKILLed and restarted empty, three times, while the streams run: every member is
/// written back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restarted_empty_loses_nothing_silently_and_forgets_no_member() {
    assert_no_problems(&run(Fault::RedisRestart(3)).await.problems);
}

/// Redis stopped (SIGSTOP) for 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_loses_nothing_silently() {
    assert_no_problems(&run(Fault::RedisFreeze(Duration::from_secs(2))).await.problems);
}
