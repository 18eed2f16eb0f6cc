//! A cluster for one test: its own `redis-server` and N node processes joined to it.

#![allow(dead_code)]

pub mod faults;
pub mod flow;
pub mod members;

use std::time::Duration;

use switchboard_tests::{Node, RedisCluster, RedisServer, SentinelSet, node_binary};

pub struct Cluster {
    /// The one Redis, or (Sentinel) the replica the failover will promote: `sentinels` holds the
    /// first master.
    pub redis: RedisServer,
    pub nodes: Vec<Node>,
    pub args: Vec<String>,
    pub sentinels: Option<SentinelSet>,
    /// A Redis Cluster (three masters, three replicas), the nodes on `redis+cluster://`:
    /// `redis` is then one more server of it (the first replica).
    pub redis_cluster: Option<RedisCluster>,
}

/// A lease short enough for tests to see a lost node quickly.
pub const LEASE_MS: u64 = 1500;

impl Cluster {
    /// Redis plus `n` nodes (`n0`, `n1`, ...), each ready (its canary went round Redis).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Self::with_lease(n, LEASE_MS, extra)
    }

    /// Like [`Cluster::start`], with a lease of `lease_ms` instead of the short [`LEASE_MS`].
    pub fn with_lease(n: usize, lease_ms: u64, extra: &[&str]) -> Cluster {
        let redis = RedisServer::start();
        let mut args: Vec<String> =
            vec!["--redis-url".into(), redis.url(), "--node-lease-ms".into(), lease_ms.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Cluster { redis, nodes: Vec::new(), args, sentinels: None, redis_cluster: None };
        for i in 0..n {
            let node = c.start_node(&format!("n{i}"));
            c.nodes.push(node);
        }
        c
    }

    /// `n` nodes on a Sentinel-managed Redis (a master, a replica, three sentinels), reaching
    /// it through the sentinels (`redis+sentinel://`). `redis` is the replica.
    pub fn with_sentinels(n: usize, extra: &[&str]) -> Cluster {
        let (set, replica) = SentinelSet::start();
        let url = set.url();
        let mut args: Vec<String> = vec!["--redis-url".into(), url, "--node-lease-ms".into(), LEASE_MS.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Cluster { redis: replica, nodes: Vec::new(), args, sentinels: Some(set), redis_cluster: None };
        for i in 0..n {
            let node = c.start_node(&format!("n{i}"));
            c.nodes.push(node);
        }
        c
    }

    /// `n` nodes on a Redis Cluster of three masters and three replicas (`redis+cluster://`,
    /// every server a seed).
    pub fn with_redis_cluster(n: usize, extra: &[&str]) -> Cluster {
        let mut rc = RedisCluster::start();
        let url = rc.url();
        let redis = rc.servers.remove(rc.masters);
        let mut args: Vec<String> = vec!["--redis-url".into(), url, "--node-lease-ms".into(), LEASE_MS.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Cluster { redis, nodes: Vec::new(), args, sentinels: None, redis_cluster: Some(rc) };
        for i in 0..n {
            let node = c.start_node(&format!("n{i}"));
            c.nodes.push(node);
        }
        c
    }

    /// The URL the nodes reach Redis by.
    pub fn redis_url(&self) -> String {
        let i = self.args.iter().position(|a| a == "--redis-url").expect("--redis-url");
        self.args[i + 1].clone()
    }

    /// Starts one more node with this cluster's settings and waits until it is ready.
    pub fn start_node(&self, id: &str) -> Node {
        self.start_node_with_redis(id, &self.redis_url())
    }

    /// Like [`Cluster::start_node`], but the node reaches Redis at `redis_url` (a
    /// [`Proxy`](switchboard_tests::Proxy) in front of this cluster's Redis, say).
    pub fn start_node_with_redis(&self, id: &str, redis_url: &str) -> Node {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        if let Some(i) = args.iter().position(|a| *a == "--redis-url") {
            args[i + 1] = redis_url;
        }
        args.extend(["--node-id", id]);
        let node = Node::start(&node_binary(), &args);
        node.wait_ready(true, Duration::from_secs(10));
        node
    }
}
