//! The faults of issue 12: what each one is, how long it lasts, and its name in the reports. How
//! a run causes each one is in `cause.rs`; what shows it happened, in `judge.rs`.

use std::time::Duration;

/// A flood: one signal of [`FLOOD_PAD`] bytes every [`FLOOD_EVERY`] per sender, for [`FLOOD_FOR`].
pub const FLOOD_PAD: usize = 60_000;
pub const FLOOD_EVERY: Duration = Duration::from_millis(2);
pub const FLOOD_FOR: Duration = Duration::from_secs(2);
/// Redis's limit for pub/sub clients in the subscriber-cut run: cut at 64 KB queued, or at
/// 32 KB queued for 1 s.
pub const PUBSUB_LIMIT: &str = "pubsub 64kb 32kb 1";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Redis cuts a subscriber: `client-output-buffer-limit` [`PUBSUB_LIMIT`] (set with
    /// `CONFIG SET`) and a [`FLOOD_FOR`] flood of 60 KB signals from n0 and n2 to n1 while the
    /// streams run. Three nodes: two publishers feed n1's subscriber in the same Redis event
    /// loop turn. Evidence: new pub/sub connections at Redis during the flood (`CLIENT LIST
    /// TYPE pubsub`, sampled), and `switchboard_bus_subscription_cuts_total` > 0 on some node.
    /// `heal` is the end of the flood.
    SubscriberCut,
    /// n1 gets SIGSTOP, and SIGCONT this long later (`heal`). Longer than the lease: n0's
    /// members must see n1's members leave (`peer-left` `node-lost`), and come back.
    NodePause(Duration),
    /// n1 reaches Redis through a [`Proxy`](switchboard_tests::Proxy), which stalls (no FIN, no
    /// RST) for this long, then heals (`heal`). Two members of n0 leave the mesh (close their
    /// socket) meanwhile: m0a 1 s into the stall, while n0 still counts n1 in (its `peer-left`
    /// goes toward n1 and waits in the stalled path), and m0c once n0 has declared n1 lost
    /// (nothing goes toward n1). m1a and m1b (on n1) must see both leave after the heal (no
    /// ghost); n0's members must see n1's members leave (`node-lost`).
    Partition(Duration),
    /// Redis SIGKILLed and restarted empty this many times while the streams run (down 0.3 s,
    /// 1 s, 2 s in turn); `heal` is the last restart. Every member must be written back: the
    /// views are checked [`SETTLE`](super::SETTLE) after each restart (the next kill follows at
    /// once), and after the last as after any fault.
    RedisRestart(usize),
    /// Redis gets SIGSTOP, and SIGCONT this long later (`heal`).
    RedisFreeze(Duration),
    /// Redis under Sentinel (a master, a replica, three sentinels; the nodes on
    /// `redis+sentinel://`): the sentinels promote the replica. `kill`: the master is SIGKILLed
    /// and never comes back, `heal` is when every node is ready again (must be within 15 s of
    /// the kill: the gap is reported). Otherwise an operator's `SENTINEL FAILOVER` while the
    /// master lives on (demoted to a replica): the nodes must move to the new master, not stay
    /// on the old one. No live peer may see another leave.
    SentinelFailover { kill: bool },
    /// A Redis Cluster (three masters, three replicas; three nodes on `redis+cluster://`) with
    /// 300 more rooms, each with a member on n1 and one on n2, spread over every master: the
    /// master holding the streams' cross-node room is SIGKILLed for good and its replica
    /// promoted. `heal`, the bound and the criteria as for [`Fault::SentinelFailover`].
    ClusterFailover,
}

/// Rooms of [`Fault::ClusterFailover`] beyond the streams' (`bulk-0`, `bulk-1`, …).
pub const BULK_ROOMS: usize = 300;

impl Fault {
    /// The faults of issue 12, as the test file and the soak run them.
    pub fn all() -> Vec<Fault> {
        vec![
            Fault::SubscriberCut,
            Fault::NodePause(Duration::from_millis(1000)),
            Fault::NodePause(Duration::from_millis(3000)),
            Fault::Partition(Duration::from_secs(10)),
            Fault::RedisRestart(3),
            Fault::RedisFreeze(Duration::from_secs(2)),
        ]
    }

    pub fn name(&self) -> String {
        match self {
            Fault::SubscriberCut => "subscriber-cut".into(),
            Fault::NodePause(d) => format!("node-pause-{}ms", d.as_millis()),
            Fault::Partition(d) => format!("partition-{}ms", d.as_millis()),
            Fault::RedisRestart(n) => format!("redis-restart-x{n}"),
            Fault::RedisFreeze(d) => format!("redis-freeze-{}ms", d.as_millis()),
            Fault::SentinelFailover { kill: true } => "sentinel-failover-kill".into(),
            Fault::SentinelFailover { kill: false } => "sentinel-failover-manual".into(),
            Fault::ClusterFailover => "redis-cluster-failover".into(),
        }
    }
}
