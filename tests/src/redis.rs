//! A `redis-server` of the test's own, on a free port: killed, restarted and inspected at will,
//! never the machine's shared Redis.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// Arguments beyond the port and the in-memory settings (a replica's `--replicaof`, TLS).
    extra: Vec<String>,
    /// TLS only: the plain port is closed and [`RedisServer::command`] does not reach it.
    tls: bool,
}

impl RedisServer {
    /// Starts `redis-server` (in memory only) on a free loopback port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with more `redis-server` arguments (`--replicaof 127.0.0.1
    /// PORT`, say).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::launch(crate::free_port(), extra, false)
    }

    /// A TLS-only `redis-server` with the certificates of `ca` (its server certificate, and its
    /// CA for clients' certificates); `auth_clients`: clients must present one (mutual TLS).
    pub fn start_tls(ca: &crate::tls::TestCa, auth_clients: bool) -> RedisServer {
        let port = crate::free_port();
        let (cert, key, cacert) = (ca.server_cert.display(), ca.server_key.display(), ca.ca_cert.display());
        let args = [
            "--tls-port".to_string(),
            port.to_string(),
            "--tls-cert-file".into(),
            cert.to_string(),
            "--tls-key-file".into(),
            key.to_string(),
            "--tls-ca-cert-file".into(),
            cacert.to_string(),
            "--tls-auth-clients".into(),
            if auth_clients { "yes" } else { "no" }.into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(port, &args, true)
    }

    /// Starts `redis-server` on `port`, one the test chose (for example a port a node has been
    /// pointed at before any Redis listened there).
    pub fn start_on(port: u16) -> RedisServer {
        Self::launch(port, &[], false)
    }

    fn launch(port: u16, extra: &[&str], tls: bool) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("switchboard-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut r = RedisServer { child: None, port, dir, extra, tls };
        r.spawn();
        r
    }

    /// The process id of the running `redis-server` (to stop it with SIGSTOP, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let port = if self.tls { "0".to_string() } else { self.port.to_string() };
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server is on PATH");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let up = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                self.command(&["PING"]).is_some_and(|r| r.contains("PONG"))
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would: every connection drops and (no persistence) every key is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one command over RESP and returns the raw reply (`None` if Redis is unreachable).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The keys matching `pattern` (via SCAN-free KEYS: test Redis only).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]).unwrap_or_default();
        reply
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(String::from)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
