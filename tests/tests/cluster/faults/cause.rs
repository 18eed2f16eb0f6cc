//! How a run causes each fault (and notes, as it goes, what shows the fault took effect): the
//! fault's half of the run, between the warm-up and the verdict.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchboard_tests::{Node, RedisServer};

use super::member::{Member, Seen};
use super::scenario::{FLOODS, Run};
use super::{FLOOD_EVERY, FLOOD_FOR, FLOOD_PAD, SETTLE};
use crate::cluster::LEASE_MS;
use crate::cluster::flow::secs;
use crate::cluster::members::signal_process;

impl Run {
    /// `Fault::SubscriberCut`: floods n1's subscriber for [`FLOOD_FOR`]; `heal` is the flood's end.
    pub(super) async fn subscriber_cut(&mut self) {
        let before = pubsub_clients(&self.c.redis);
        for f in FLOODS {
            self.stream(f.from, f.to, FLOOD_EVERY, FLOOD_PAD);
        }
        self.mark(format!("flood starts: f0 (n0) → f1 (n1) and g2 (n2) → g1 (n1), {FLOOD_PAD} bytes each"));
        // Every pub/sub connection Redis has had during the flood (sampled): each one beyond the
        // first three is a subscriber that was cut and came back.
        let (start, mut seen) = (Instant::now(), before.clone());
        while start.elapsed() < FLOOD_FOR {
            seen.extend(pubsub_clients(&self.c.redis));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for f in FLOODS {
            self.member(f.from).listen();
        }
        self.heal = self.now();
        self.mark("flood stops (heal)");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = pubsub_clients(&self.c.redis);
        seen.extend(after.iter().cloned());
        let new = seen.len() - before.len();
        self.evidence.push(format!(
            "Redis pub/sub connections (CLIENT LIST TYPE pubsub, ids): before the flood {before:?}, 0.5 s after \
             {after:?}; at least {new} new ones during the flood (subscribers cut and back)"
        ));
        if new == 0 {
            self.problems.push("the flood made Redis cut no subscriber (no new pub/sub connection)".into());
        }
    }

    /// `Fault::NodePause`: n1 stopped for `d`.
    pub(super) async fn node_pause(&mut self, d: Duration) {
        signal_process(&self.c.nodes[1], libc::SIGSTOP);
        let from = self.now();
        self.mark(format!("n1 SIGSTOP for {} ms (lease {} ms)", d.as_millis(), LEASE_MS));
        tokio::time::sleep(d).await;
        signal_process(&self.c.nodes[1], libc::SIGCONT);
        self.heal = self.now();
        self.paused.push((1, from, self.heal));
        self.mark("n1 SIGCONT (heal)");
    }

    /// `Fault::Partition`: n1's path to Redis stalled for `d`, m0a and m0c leaving meanwhile.
    pub(super) async fn partition(&mut self, d: Duration) {
        let proxy = self.proxy.as_ref().expect("a proxy in front of Redis");
        proxy.stall();
        let held = proxy.connections();
        let from = self.now();
        self.mark(format!("n1's path to Redis stalls for {} ms ({held} connections held open)", d.as_millis()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.member("m0a").close();
        self.mark("m0a (n0) closes its socket: leaves the mesh");
        let (m1a, deadline) = (self.member("m1a").id.clone(), Instant::now() + Duration::from_secs(5));
        let lost = |m: &Member| m.record().seen.iter().any(|(_, s)| matches!(s, Seen::PeerLeft(p, _) if *p == m1a));
        while !lost(self.member("m0b")) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.member("m0c").close();
        self.mark("n0 has dropped n1's members; m0c (n0) closes its socket: leaves the mesh");
        tokio::time::sleep_until((self.t0 + from + d - Duration::from_millis(500)).into()).await;
        let ready = readiness(&self.c.nodes);
        self.evidence.push(format!("/readyz 0.5 s before the heal: {ready}"));
        tokio::time::sleep_until((self.t0 + from + d).into()).await;
        let proxy = self.proxy.as_ref().expect("a proxy in front of Redis");
        proxy.heal();
        self.heal = self.now();
        // Cut off, n1 cannot hear what was delivered of its last relays: it answers them
        // once it hears again.
        self.paused.push((1, from.saturating_sub(IN_FLIGHT), self.heal));
        self.mark(format!("n1's path heals ({} connections)", proxy.connections()));
    }

    /// `Fault::RedisRestart`: Redis killed and restarted empty `n` times.
    pub(super) async fn redis_restart(&mut self, n: usize) {
        let downs = [300, 1000, 2000].map(Duration::from_millis);
        for (i, down) in downs.iter().cycle().take(n).enumerate() {
            self.c.redis.kill();
            let from = self.now();
            self.mark(format!("redis SIGKILL (down {} ms)", down.as_millis()));
            tokio::time::sleep(*down).await;
            self.c.redis.restart();
            self.heal = self.now();
            self.mark("redis restarted, empty (heal)");
            match all_ready(&self.c.nodes, Duration::from_secs(15)).await {
                Some(took) => {
                    self.mark(format!("every node ready again ({} ms)", took.as_millis()));
                    // Relays in flight when Redis died are settled once the nodes hear again.
                    let back = self.now();
                    let from = from.saturating_sub(IN_FLIGHT);
                    self.paused.extend([(0, from, back), (1, from, back)]);
                }
                None => {
                    self.problems.push(format!("{}: a node was not ready 15 s after Redis came back", secs(self.now())))
                }
            }
            if i + 1 == n {
                break;
            }
            // A member not written back now would be healed by the next restart: look first.
            tokio::time::sleep_until((self.t0 + self.heal + SETTLE).into()).await;
            let wrong = self.wrong_views();
            self.mark(format!("{} wrong view(s) {} ms after the restart", wrong.len(), SETTLE.as_millis()));
            for w in wrong {
                self.problems.push(format!("{} ms after restart {}: view {w}", SETTLE.as_millis(), i + 1));
            }
        }
        let keys = self.c.redis.keys("*");
        let rooms: Vec<&String> = keys.iter().filter(|k| k.contains(":room:")).collect();
        self.evidence.push(format!("keys in Redis after the last restart: {} ({rooms:?})", keys.len()));
    }

    /// `Fault::RedisFreeze`: Redis stopped for `d`.
    pub(super) async fn redis_freeze(&mut self, d: Duration) {
        signal_redis(&self.c.redis, libc::SIGSTOP);
        let from = self.now();
        self.mark(format!("redis SIGSTOP for {} ms", d.as_millis()));
        tokio::time::sleep(d.saturating_sub(Duration::from_millis(300))).await;
        let ready = readiness(&self.c.nodes);
        self.evidence.push(format!("/readyz 0.3 s before SIGCONT: {ready}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal_redis(&self.c.redis, libc::SIGCONT);
        self.heal = self.now();
        let from = from.saturating_sub(IN_FLIGHT);
        self.paused.extend([(0, from, self.heal), (1, from, self.heal)]);
        self.mark("redis SIGCONT (heal)");
    }
}

impl Run {
    /// `Fault::SentinelFailover`: the master SIGKILLed for good (`kill`), or failed over by an
    /// operator while it lives on; `heal` is when every node is ready again on the promoted
    /// replica (for a manual failover: when both nodes have moved there).
    pub(super) async fn sentinel_failover(&mut self, kill: bool) {
        let before = self.c.sentinels.as_ref().and_then(|s| s.master_port());
        let killed = if kill { Some(self.lose_the_last_writes().await) } else { None };
        if !kill {
            let set = self.c.sentinels.as_mut().expect("a Sentinel cluster");
            let reply = set.sentinels[0].command(&["SENTINEL", "FAILOVER", switchboard_tests::SENTINEL_MASTER]);
            assert_eq!(reply.as_deref(), Some("+OK\r\n"), "SENTINEL FAILOVER");
        }
        let from = killed.unwrap_or_else(|| self.now());
        let how = if kill { "SIGKILL" } else { "SENTINEL FAILOVER (it lives on, demoted)" };
        self.mark(format!("master (port {before:?}) {how} at {}; the sentinels must promote the replica", secs(from)));
        let unready = if kill { all_unready_once(&self.c.nodes, Duration::from_secs(5)).await } else { "-".into() };
        let moved = if kill {
            all_ready(&self.c.nodes, Duration::from_secs(15)).await
        } else {
            all_on(&self.c.redis, self.c.nodes.len(), Duration::from_secs(15)).await
        };
        self.heal = self.now();
        match moved {
            Some(_) => {
                let gap = self.heal - from;
                self.mark(format!(
                    "every node ready (on the new master) again, {} ms after the {how} (heal)",
                    gap.as_millis()
                ));
                self.evidence
                    .push(format!("failover gap ({how} → every node ready on the new master): {} ms", gap.as_millis()));
            }
            None => self.problems.push(format!("a node was not ready on the new master 15 s after the {how}")),
        }
        let after = self.c.sentinels.as_ref().and_then(|s| s.master_port());
        self.evidence.push(format!(
            "the sentinels' master: port {before:?} before, {after:?} after (the replica is {}); nodes unready \
             during the failover: {unready}",
            self.c.redis.port
        ));
        if after != Some(self.c.redis.port) {
            self.problems.push(format!("the sentinels did not promote the replica (master now {after:?})"));
        }
        let back = self.now();
        let from = from.saturating_sub(IN_FLIGHT);
        self.paused.extend([(0, from, back), (1, from, back)]);
    }
}

impl Run {
    /// `Fault::ClusterFailover`: the master holding the cross-node room SIGKILLed for good; its
    /// replica must be promoted, and every node ready again on it; `heal` is then.
    pub(super) async fn cluster_failover(&mut self) {
        let rc = self.c.redis_cluster.as_mut().expect("a Redis Cluster");
        let victim = rc
            .servers
            .iter()
            .position(|s| {
                !s.keys("sb:*:room:cross-node").is_empty() && s.command(&["ROLE"]).is_some_and(|r| r.contains("master"))
            })
            .expect("a master holds the cross-node room");
        let port = rc.servers[victim].port;
        let key = rc.servers[victim].keys("sb:*:room:cross-node").remove(0);
        let slot: u16 = rc.servers[victim]
            .command(&["CLUSTER", "KEYSLOT", &key])
            .and_then(|r| r.trim().trim_start_matches(':').parse().ok())
            .expect("CLUSTER KEYSLOT");
        rc.servers[victim].kill();
        let from = self.now();
        self.mark(format!("master on port {port} (holding {key}, slot {slot}) SIGKILL; its replica must be promoted"));
        let unready = all_unready_once(&self.c.nodes, Duration::from_secs(5)).await;
        let ready = all_ready(&self.c.nodes, Duration::from_secs(15)).await;
        self.heal = self.now();
        let gap = self.heal - from;
        match ready {
            Some(_) => {
                self.mark(format!("every node ready again, {} ms after the SIGKILL (heal)", gap.as_millis()));
                self.evidence.push(format!("failover gap (SIGKILL → every node ready): {} ms", gap.as_millis()));
            }
            None => self.problems.push("a node was not ready 15 s after the master's SIGKILL".into()),
        }
        let rc = self.c.redis_cluster.as_ref().expect("a Redis Cluster");
        let now = rc.master_port_of(slot);
        self.evidence.push(format!(
            "slot {slot}: master port {port} before, {now:?} after; nodes unready during the failover: {unready}"
        ));
        if now.is_none() || now == Some(port) {
            self.problems.push(format!("no replica was promoted for slot {slot} (master now {now:?})"));
        }
        let back = self.now();
        let from = from.saturating_sub(IN_FLIGHT);
        self.paused.extend((0..self.c.nodes.len()).map(|n| (n, from, back)));
    }

    /// Kills the master with writes its replica never got: the replica is stopped (SIGSTOP,
    /// shorter than the sentinels' `down-after`) and its replication link cut (`CLIENT KILL TYPE
    /// replica`) while `late` joins the mesh on n1, the master is SIGKILLed, and the replica
    /// continues — without `late`'s record (checked), which the nodes must write again after
    /// the failover.
    /// Returns when the master was killed.
    async fn lose_the_last_writes(&mut self) -> Duration {
        signal_redis(&self.c.redis, libc::SIGSTOP);
        // Its replication link cut too: what the master takes now is not even on its way.
        let cut = self.c.sentinels.as_ref().and_then(|s| s.master.command(&["CLIENT", "KILL", "TYPE", "replica"]));
        self.mark(format!(
            "replica SIGSTOP, its link cut ({:?}): what the master takes now is never replicated",
            cut.as_deref().map(str::trim)
        ));
        match Member::start("late", 1, &self.c.nodes[1], "mesh", self.t0).await {
            Ok(m) => self.members.push(m),
            Err(e) => self.problems.push(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let late = self.member("late").id.clone();
        let key = "sb:{switchboard}:room:mesh";
        let on_master = self.c.sentinels.as_ref().and_then(|s| s.master.command(&["HEXISTS", key, &late]));
        let set = self.c.sentinels.as_mut().expect("a Sentinel cluster");
        set.master.kill();
        let killed = self.now();
        self.mark("late (n1) joined the mesh; master SIGKILL");
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal_redis(&self.c.redis, libc::SIGCONT);
        let on_replica = self.c.redis.command(&["HEXISTS", key, &late]);
        self.mark("replica SIGCONT");
        self.evidence.push(format!(
            "late's record on the master before the kill: {:?}; on the replica right after: {:?} (lost with the master)",
            on_master.as_deref().map(str::trim),
            on_replica.as_deref().map(str::trim)
        ));
        if on_replica.as_deref() != Some(":0\r\n") {
            self.problems.push(format!("the replica had late's record after all ({on_replica:?}): no write was lost"));
        }
        killed
    }
}

/// Waits until `redis` has the subscriptions of `nodes` nodes (each subscribes to its own channel
/// and the control channel there once it has moved) and every node's lease is written there.
async fn all_on(redis: &RedisServer, nodes: usize, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        let role = redis.command(&["ROLE"]).unwrap_or_default();
        let subscribers = redis.command(&["PUBSUB", "NUMSUB", "sb:{switchboard}:control"]).unwrap_or_default();
        let count = subscribers.lines().last().and_then(|l| l.strip_prefix(':')).and_then(|n| n.parse::<usize>().ok());
        if role.contains("master") && count == Some(nodes) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

/// Waits until each node has answered `/readyz` 503 at least once (it noticed the fault); says
/// which did.
async fn all_unready_once(nodes: &[Node], within: Duration) -> String {
    let start = Instant::now();
    let mut seen = vec![false; nodes.len()];
    while start.elapsed() < within && !seen.iter().all(|s| *s) {
        for (i, n) in nodes.iter().enumerate() {
            seen[i] |= n.get("/readyz").0 != 200;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let which: Vec<String> =
        seen.iter().enumerate().map(|(i, s)| format!("n{i} {}", if *s { "yes" } else { "no" })).collect();
    which.join(", ")
}

/// Relays sent this long before a node lost Redis may still have been on their way.
const IN_FLIGHT: Duration = Duration::from_millis(200);

/// The ids of Redis's pub/sub connections.
fn pubsub_clients(redis: &RedisServer) -> BTreeSet<String> {
    let list = redis.command(&["CLIENT", "LIST", "TYPE", "pubsub"]).unwrap_or_default();
    list.lines().filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).map(String::from)).collect()
}

fn signal_redis(redis: &RedisServer, sig: i32) {
    let pid = redis.pid().expect("redis-server runs") as i32;
    // SAFETY: kill(2) on the redis-server child this run started.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// `/readyz` of each node as `n0 200, n1 503`.
fn readiness(nodes: &[Node]) -> String {
    let states: Vec<String> = nodes.iter().enumerate().map(|(i, n)| format!("n{i} {}", n.get("/readyz").0)).collect();
    states.join(", ")
}

/// Waits (without blocking the runtime) until every node is ready; how long it took, or `None`.
async fn all_ready(nodes: &[Node], within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if nodes.iter().all(|n| n.get("/readyz").0 == 200) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}
