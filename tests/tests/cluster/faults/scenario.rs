//! The scenario: the cluster each fault needs, who joins which room on which node, which flows
//! stream, and the run's log of what it did when (the `[fault t]` lines).

use std::time::{Duration, Instant};

use switchboard_tests::{Proxy, STEP_TIMEOUT};

use super::member::Member;
use super::{BULK_ROOMS, Fault, PUBSUB_LIMIT};
use crate::cluster::Cluster;
use crate::cluster::flow::{UNLIMITED, secs};

/// A flow of numbered signals: name, sender, receiver, whether it streams until the end (and
/// must deliver everything in the recovery window).
pub(super) struct FlowSpec {
    pub(super) name: &'static str,
    pub(super) from: &'static str,
    pub(super) to: &'static str,
    pub(super) streams: bool,
}

/// The flows of every run: both ways within n0, and both ways between n0 and n1.
pub(super) const STREAMS: &[FlowSpec] = &[
    FlowSpec { name: "S a→b (n0→n0)", from: "s0", to: "s1", streams: true },
    FlowSpec { name: "S b→a (n0→n0)", from: "s1", to: "s0", streams: true },
    FlowSpec { name: "X a→b (n0→n1)", from: "x0", to: "x1", streams: true },
    FlowSpec { name: "X b→a (n1→n0)", from: "x1", to: "x0", streams: true },
];
/// The subscriber cut's extra flows: two publishers (n0, n2) into one subscriber (n1).
pub(super) const FLOODS: &[FlowSpec] = &[
    FlowSpec { name: "F flood (n0→n1, 60 KB)", from: "f0", to: "f1", streams: false },
    FlowSpec { name: "G flood (n2→n1, 60 KB)", from: "g2", to: "g1", streams: false },
];

/// One run: its processes, its members, and what happened when.
pub(super) struct Run {
    pub(super) fault: Fault,
    pub(super) c: Cluster,
    pub(super) proxy: Option<Proxy>,
    pub(super) t0: Instant,
    pub(super) members: Vec<Member>,
    pub(super) flows: Vec<&'static FlowSpec>,
    /// `(when, what)`.
    pub(super) marks: Vec<(Duration, String)>,
    /// `(node, from, to)`: when a node was stopped, or cut off from Redis (it answers what it
    /// sent before then only once it can hear the receivers again).
    pub(super) paused: Vec<(usize, Duration, Duration)>,
    pub(super) heal: Duration,
    /// What shows the fault happened, for the report.
    pub(super) evidence: Vec<String>,
    pub(super) problems: Vec<String>,
}

impl Run {
    /// Starts the cluster and the members `fault` needs, and waits until everyone knows everyone.
    pub(super) async fn start(fault: Fault) -> Run {
        let mut extra: Vec<&str> = UNLIMITED.to_vec();
        if fault == Fault::SubscriberCut {
            // The flood's receivers cannot always read 60 KB frames as fast as n1 queues them:
            // no slow-consumer cut of the run's own clients.
            extra.extend(["--max-outbound-bytes", "268435456"]);
        }
        let (c, proxy) = match fault {
            Fault::Partition(_) => {
                let mut c = Cluster::start(1, &extra);
                let proxy = Proxy::start(&format!("127.0.0.1:{}", c.redis.port));
                let n1 = c.start_node_with_redis("n1", &proxy.url("redis"));
                c.nodes.push(n1);
                (c, Some(proxy))
            }
            Fault::SubscriberCut => (Cluster::start(3, &extra), None),
            Fault::SentinelFailover { .. } => (Cluster::with_sentinels(2, &extra), None),
            Fault::ClusterFailover => (Cluster::with_redis_cluster(3, &extra), None),
            _ => (Cluster::start(2, &extra), None),
        };
        let mut plan = vec![
            ("s0", 0, "same-node"),
            ("s1", 0, "same-node"),
            ("x0", 0, "cross-node"),
            ("x1", 1, "cross-node"),
            ("m0a", 0, "mesh"),
            ("m0b", 0, "mesh"),
            ("m0c", 0, "mesh"),
            ("m1a", 1, "mesh"),
            ("m1b", 1, "mesh"),
        ];
        let mut flows: Vec<&'static FlowSpec> = STREAMS.iter().collect();
        if fault == Fault::SubscriberCut {
            plan.extend([("f0", 0, "flood-a"), ("f1", 1, "flood-a"), ("g2", 2, "flood-b"), ("g1", 1, "flood-b")]);
            flows.extend(FLOODS);
        }
        let mut plan: Vec<(String, usize, String)> =
            plan.into_iter().map(|(name, n, room)| (name.to_string(), n, room.to_string())).collect();
        if fault == Fault::ClusterFailover {
            for i in 0..BULK_ROOMS {
                plan.extend([(format!("b{i}a"), 1, format!("bulk-{i}")), (format!("b{i}b"), 2, format!("bulk-{i}"))]);
            }
        }
        let t0 = Instant::now();
        let mut members = Vec::new();
        for (name, n, room) in &plan {
            members.push(Member::start(name, *n, &c.nodes[*n], room, t0).await.unwrap_or_else(|e| panic!("{e}")));
        }
        let mut r = Run {
            fault,
            c,
            proxy,
            t0,
            members,
            flows,
            marks: Vec::new(),
            paused: Vec::new(),
            heal: Duration::ZERO,
            evidence: Vec::new(),
            problems: Vec::new(),
        };
        // Everyone knows everyone before anything streams.
        let deadline = Instant::now() + STEP_TIMEOUT;
        while let Some(wrong) = r.wrong_views().first() {
            assert!(Instant::now() < deadline, "{}: the rooms never settled before the fault: {wrong}", fault.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if fault == Fault::SubscriberCut {
            let set = r.c.redis.command(&["CONFIG", "SET", "client-output-buffer-limit", PUBSUB_LIMIT]);
            assert_eq!(set.as_deref(), Some("+OK\r\n"), "CONFIG SET client-output-buffer-limit {PUBSUB_LIMIT}");
            let get = r.c.redis.command(&["CONFIG", "GET", "client-output-buffer-limit"]).unwrap_or_default();
            let now = get.find("pubsub").map_or(get.as_str(), |i| &get[i..]).trim();
            r.evidence.push(format!("Redis client-output-buffer-limit (CONFIG GET): {now}"));
        }
        if let Some(rc) = &r.c.redis_cluster {
            // The rooms spread over the shards: every master holds some.
            let held: Vec<(u16, usize)> = rc.masters().iter().map(|m| (m.port, m.keys("sb:*:room:*").len())).collect();
            r.evidence.push(format!("room keys per master (port, count): {held:?}"));
            if held.len() != 3 || held.iter().any(|(_, n)| *n == 0) {
                r.problems.push(format!("the rooms are not spread over the three masters: {held:?}"));
            }
        }
        r
    }

    pub(super) fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Logs a step of the run, printed at once and kept with its time.
    pub(super) fn mark(&mut self, what: impl Into<String>) {
        let (at, what) = (self.now(), what.into());
        println!("[{} {}] {what}", self.fault.name(), secs(at));
        self.marks.push((at, what));
    }

    pub(super) fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no member {name}"))
    }

    pub(super) fn stream(&self, from: &str, to: &str, every: Duration, pad: usize) {
        let to = self.member(to).id.clone();
        self.member(from).stream(&to, every, pad);
    }
}
