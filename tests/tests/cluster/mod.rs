//! A cluster for one test: its own `redis-server` and N node processes joined to it.

#![allow(dead_code)]

pub mod flow;
pub mod members;

use std::time::{Duration, Instant};

use switchboard_tests::{Node, RedisServer, node_binary};

pub struct Cluster {
    pub redis: RedisServer,
    pub nodes: Vec<Node>,
    pub args: Vec<String>,
}

/// A lease short enough for tests to see a lost node quickly.
pub const LEASE_MS: u64 = 1500;

impl Cluster {
    /// Redis plus `n` nodes (`n0`, `n1`, ...), each ready (its canary went round Redis).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let redis = RedisServer::start();
        let mut args: Vec<String> =
            vec!["--redis-url".into(), redis.url(), "--node-lease-ms".into(), LEASE_MS.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Cluster { redis, nodes: Vec::new(), args };
        for i in 0..n {
            let node = c.start_node(&format!("n{i}"));
            c.nodes.push(node);
        }
        c
    }

    /// Starts one more node with this cluster's settings and waits until it is ready.
    pub fn start_node(&self, id: &str) -> Node {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["--node-id", id]);
        let node = Node::start(&node_binary(), &args);
        wait_ready(&node, true, Duration::from_secs(10));
        node
    }
}

/// Waits until `/readyz` answers 200 (`ready`) or 503 (`!ready`); panics after `within`.
pub fn wait_ready(node: &Node, ready: bool, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _) = node.get("/readyz");
        if (status == 200) == ready {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "node {} never became {}",
            node.addr,
            if ready { "ready" } else { "unready" }
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
