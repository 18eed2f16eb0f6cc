//! Redis Sentinel for failover tests: a master, a replica and sentinels of the test's own, each
//! on a free loopback port, with timings short enough to fail over in a few seconds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::RedisServer;
use crate::redis::Access;
use crate::tls::TestCa;

/// The master's name the sentinels monitor.
pub const MASTER: &str = "sb-master";
/// A master silent this long is down in a sentinel's eyes (then the quorum decides).
pub const DOWN_AFTER_MS: u64 = 1000;

/// The first master and three sentinels (quorum 2) watching it; its replica is handed out on
/// its own by [`SentinelSet::start`].
pub struct SentinelSet {
    pub master: RedisServer,
    pub sentinels: Vec<Sentinel>,
    access: Access,
}

impl SentinelSet {
    /// Starts a master, one replica and the sentinels, and waits until every sentinel knows the
    /// replica and the other sentinels (before that a failover cannot happen). Returns the set
    /// and the replica (the master after a failover).
    pub fn start() -> (SentinelSet, RedisServer) {
        Self::start_secured(&Access::default(), None)
    }

    /// Like [`SentinelSet::start`], every server and sentinel reached with `access` (TLS only,
    /// with the certificates of `ca`; an ACL user, which the replica and the sentinels use too).
    pub fn start_secured(access: &Access, ca: Option<&TestCa>) -> (SentinelSet, RedisServer) {
        let master = RedisServer::start_secured(access, ca, &[]);
        let port = master.port.to_string();
        let mut extra = vec!["--replicaof", "127.0.0.1", &port];
        if let Some((user, pass)) = &access.user {
            extra.extend(["--masteruser", user, "--masterauth", pass]);
        }
        let replica = RedisServer::start_secured(access, ca, &extra);
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port, access, ca)).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = sentinels.iter().all(|s| {
                let info = s.command(&["SENTINEL", "MASTER", MASTER]).unwrap_or_default();
                field(&info, "num-slaves") == Some("1") && field(&info, "num-other-sentinels") == Some("2")
            });
            let synced = replica.command(&["INFO", "replication"]).is_some_and(|i| i.contains("master_link_status:up"));
            if ready && synced {
                break;
            }
            assert!(Instant::now() < deadline, "the sentinels never saw the replica and each other");
            std::thread::sleep(Duration::from_millis(100));
        }
        (SentinelSet { master, sentinels, access: access.clone() }, replica)
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/<master>`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let scheme = if self.access.ca.is_some() { "rediss+sentinel" } else { "redis+sentinel" };
        format!("{scheme}://{}{}/{MASTER}", self.access.userinfo(), hosts.join(","))
    }

    /// The port of the master the sentinels name now (asked of the first that answers).
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let reply = s.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])?;
            let lines: Vec<&str> = reply.lines().filter(|l| !l.starts_with(['*', '$'])).collect();
            lines.get(1)?.trim().parse().ok()
        })
    }
}

/// In a flat RESP array reply `k, v, k, v…`, the value after `key`.
fn field<'a>(reply: &'a str, key: &str) -> Option<&'a str> {
    let lines: Vec<&str> = reply.lines().map(str::trim).filter(|l| !l.starts_with(['*', '$'])).collect();
    lines.iter().position(|l| *l == key).and_then(|i| lines.get(i + 1)).copied()
}

pub struct Sentinel {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    access: Access,
}

impl Sentinel {
    fn start(master_port: u16, access: &Access, ca: Option<&TestCa>) -> Sentinel {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("switchboard-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let conf = dir.join("sentinel.conf");
        // The server's arguments (ports, TLS, ACL user) as config lines.
        let mut lines = String::new();
        for arg in access.server_args(port, ca) {
            match arg.strip_prefix("--") {
                Some(option) => lines.push_str(&format!("\n{option}")),
                None => lines.push_str(&format!(" {arg}")),
            }
        }
        let mut more = String::new();
        if let Some((user, pass)) = &access.user {
            // To the master and replica, and to the other sentinels.
            more = format!(
                "sentinel auth-user {MASTER} {user}\nsentinel auth-pass {MASTER} {pass}\n\
                 sentinel sentinel-user {user}\nsentinel sentinel-pass {pass}\n"
            );
        }
        // Sentinel rewrites its file as it learns: one each.
        std::fs::write(
            &conf,
            format!(
                "{lines}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n{more}\
                 sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER} 10000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.display()
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server is on PATH");
        let s = Sentinel { child: Some(child), port, dir, access: access.clone() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.command(&["PING"]).is_some_and(|r| r.contains("PONG")) {
            assert!(Instant::now() < deadline, "sentinel on port {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// The process id (to freeze it with SIGSTOP, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// One command over RESP; the raw reply (through `redis-cli` to a secured sentinel).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.access.command(self.port, args)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
