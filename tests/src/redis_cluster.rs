//! A Redis Cluster of the test's own: three masters and a replica each, every one a
//! `redis-server --cluster-enabled yes` on a free loopback port, joined by `redis-cli --cluster
//! create`, with a node timeout short enough to fail over in a few seconds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RedisServer;

/// A master silent this long is failing in its peers' eyes (then its replica is promoted).
pub const NODE_TIMEOUT_MS: u64 = 1000;

pub struct RedisCluster {
    /// Masters first (as `--cluster create` was given them), then their replicas: `servers[i +
    /// masters]` replicates `servers[i]` (checked at start).
    pub servers: Vec<RedisServer>,
    pub masters: usize,
}

impl RedisCluster {
    /// Three masters and three replicas, each master with an equal third of the slots, every
    /// replica synced.
    pub fn start() -> RedisCluster {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let servers: Vec<RedisServer> = (0..6)
            .map(|_| {
                // Not port + 10000, the default: past 55535 that is no port.
                let bus = crate::free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-port",
                    &bus,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    // Slots stay served while another shard is down.
                    "--cluster-require-full-coverage",
                    "no",
                ])
            })
            .collect();
        let addrs: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is on PATH");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let mut c = RedisCluster { servers, masters: 3 };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = c
                .servers
                .iter()
                .all(|s| s.command(&["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok")));
            let synced = c.servers[3..]
                .iter()
                .all(|s| s.command(&["INFO", "replication"]).is_some_and(|i| i.contains("master_link_status:up")));
            if ok && synced {
                break;
            }
            assert!(Instant::now() < deadline, "the Redis Cluster never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        // `--cluster create` pairs replicas with masters itself: order them so.
        let mut replicas: Vec<RedisServer> = c.servers.split_off(3);
        let mut ordered = Vec::new();
        for m in &c.servers {
            let i = replicas
                .iter()
                .position(|r| {
                    r.command(&["INFO", "replication"]).is_some_and(|i| i.contains(&format!("master_port:{}", m.port)))
                })
                .expect("every master has a replica");
            ordered.push(replicas.remove(i));
        }
        c.servers.extend(ordered);
        c
    }

    /// `redis+cluster://127.0.0.1:P1,…` naming every server as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The master serving `slot` now, as the first live server says (`CLUSTER SLOTS`).
    pub fn master_port_of(&self, slot: u16) -> Option<u16> {
        self.servers.iter().find_map(|s| {
            let reply = s.command(&["CLUSTER", "SHARDS"])?;
            shard_master(&reply, slot)
        })
    }

    /// The index in `servers` of the master holding `slot` (as the cluster started).
    pub fn master_of(&self, slot: u16) -> usize {
        let port = self.master_port_of(slot).expect("a master serves the slot");
        self.servers.iter().position(|s| s.port == port).expect("one of ours")
    }

    /// The servers that are masters now (a promoted replica included, a dead master not).
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.servers
            .iter()
            .filter(|s| s.command(&["ROLE"]).is_some_and(|r| r.contains("master") && !r.contains("slave")))
            .collect()
    }
}

impl RedisCluster {
    /// The server listening on `port`.
    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers.iter().find(|s| s.port == port).expect("one of ours")
    }

    /// Moves `slot` (and its keys) to the master on `to`, as `redis-cli --cluster reshard` does,
    /// one slot: `IMPORTING`/`MIGRATING`, `MIGRATE` of its keys, then `SETSLOT … NODE` on both
    /// and on every other master.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let slot_s = slot.to_string();
        let from = self.server(self.master_port_of(slot).expect("the slot's master"));
        let dst = self.server(to);
        let id = |s: &RedisServer| s.command(&["CLUSTER", "MYID"]).map(|r| bulk(&r)).expect("CLUSTER MYID");
        let (from_id, to_id) = (id(from), id(dst));
        let ok = |r: Option<String>, what: &str| {
            assert!(r.as_deref().is_some_and(|r| r.starts_with("+OK")), "{what}: {r:?}")
        };
        ok(dst.command(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id]), "SETSLOT IMPORTING");
        ok(from.command(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id]), "SETSLOT MIGRATING");
        loop {
            let reply = from.command(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]).unwrap_or_default();
            let keys: Vec<&str> = reply.split("\r\n").filter(|l| !l.is_empty() && !l.starts_with(['*', '$'])).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "REPLACE", "KEYS"];
            args.extend(keys);
            let r = from.command(&args);
            assert!(r.as_deref().is_some_and(|r| r.starts_with("+OK") || r.starts_with("+NOKEY")), "MIGRATE: {r:?}");
        }
        ok(dst.command(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]), "SETSLOT NODE (target)");
        ok(from.command(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]), "SETSLOT NODE (source)");
        for m in self.masters() {
            let _ = m.command(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id]);
        }
    }
}

/// A bulk string reply's text.
fn bulk(reply: &str) -> String {
    reply.split("\r\n").nth(1).unwrap_or_default().to_string()
}

/// In a `CLUSTER SHARDS` reply (RESP, flat), the port of the master of the shard whose slot
/// ranges hold `slot`.
fn shard_master(reply: &str, slot: u16) -> Option<u16> {
    let lines: Vec<&str> = reply.lines().map(str::trim).filter(|l| !l.starts_with(['*', '$', '%'])).collect();
    // Each shard: "slots", its range bounds (as `:n`), "nodes", then per node its fields.
    let mut i = 0;
    while i < lines.len() {
        if lines[i] == "slots" {
            let mut bounds = Vec::new();
            let mut j = i + 1;
            while let Some(n) = lines.get(j).and_then(|l| l.strip_prefix(':')).and_then(|n| n.parse::<u16>().ok()) {
                bounds.push(n);
                j += 1;
            }
            let holds = bounds.chunks(2).any(|r| r.len() == 2 && (r[0]..=r[1]).contains(&slot));
            // The next "nodes" section, until the next "slots": the node whose role is master.
            let end = lines[j..].iter().position(|l| *l == "slots").map_or(lines.len(), |k| j + k);
            if holds {
                let shard = &lines[j..end];
                let mut port = None;
                for (k, l) in shard.iter().enumerate() {
                    if *l == "port" {
                        port = shard.get(k + 1).and_then(|p| p.strip_prefix(':')).and_then(|p| p.parse().ok());
                    }
                    if *l == "role" && shard.get(k + 1) == Some(&"master") {
                        let health = shard.iter().skip(k).position(|l| *l == "health").map(|h| shard[k + h + 1]);
                        if health == Some("online") {
                            return port;
                        }
                    }
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}
