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
    /// TLS only (the plain port closed) and/or an ACL user: [`RedisServer::command`] then goes
    /// through `redis-cli`.
    access: Access,
}

/// How a test reaches a secured Redis or sentinel: TLS with the test CA, and/or an ACL user.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub ca: Option<PathBuf>,
    pub user: Option<(String, String)>,
    /// A client certificate and key, for a server that requires one (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Access {
    pub fn is_plain(&self) -> bool {
        self.ca.is_none() && self.user.is_none()
    }

    /// The URL's `user:password@`, or nothing.
    pub fn userinfo(&self) -> String {
        self.user.as_ref().map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default()
    }

    /// One command to the server or sentinel on `port`: plain, over RESP (the raw reply);
    /// secured, through `redis-cli` (one line per element). `None` if it is unreachable.
    pub fn command(&self, port: u16, args: &[&str]) -> Option<String> {
        if !self.is_plain() {
            return self.cli(port, args);
        }
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
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

    /// One command through `redis-cli`; its output (one line per element), `None` on failure.
    fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--no-auth-warning"]);
        if let Some(ca) = &self.ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        if let Some((cert, key)) = &self.client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, pass)) = &self.user {
            cmd.args(["--user", user, "--pass", pass]);
        }
        let out = cmd.args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect") && !text.contains("NOAUTH")).then_some(text)
    }

    /// The `redis-server` (or sentinel config) arguments for this access on `port`, with the
    /// certificates of `ca`.
    pub fn server_args(&self, port: u16, ca: Option<&crate::tls::TestCa>) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ca) = ca {
            let file = |p: &PathBuf| p.display().to_string();
            args.extend(["--port".into(), "0".into(), "--tls-port".into(), port.to_string()]);
            args.extend([
                "--tls-cert-file".into(),
                file(&ca.server_cert),
                "--tls-key-file".into(),
                file(&ca.server_key),
            ]);
            args.extend(["--tls-ca-cert-file".into(), file(&ca.ca_cert), "--tls-replication".into(), "yes".into()]);
            args.extend(["--tls-auth-clients".into(), "no".into()]);
        } else {
            args.extend(["--port".into(), port.to_string()]);
        }
        if let Some((user, pass)) = &self.user {
            let rules = ["on".to_string(), format!(">{pass}"), "~*".into(), "&*".into(), "+@all".into()];
            args.extend(["--user".to_string(), user.clone()].into_iter().chain(rules));
            args.extend(["--user".into(), "default".into(), "off".into()]);
        }
        args
    }
}

impl RedisServer {
    /// Starts `redis-server` (in memory only) on a free loopback port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with more `redis-server` arguments (`--replicaof 127.0.0.1
    /// PORT`, say).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::launch(crate::free_port(), extra, Access::default())
    }

    /// A server reached with `access` (TLS-only with the certificates of `ca`, an ACL user that
    /// replaces `default`), plus `extra` arguments.
    pub fn start_secured(access: &Access, ca: Option<&crate::tls::TestCa>, extra: &[&str]) -> RedisServer {
        let port = crate::free_port();
        let mut args = access.server_args(port, ca);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::launch(port, &args, access.clone())
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
        let client = auth_clients.then(|| (ca.client_cert.clone(), ca.client_key.clone()));
        Self::launch(port, &args, Access { ca: Some(ca.ca_cert.clone()), user: None, client })
    }

    /// Starts `redis-server` on `port`, one the test chose (for example a port a node has been
    /// pointed at before any Redis listened there).
    pub fn start_on(port: u16) -> RedisServer {
        Self::launch(port, &[], Access::default())
    }

    fn launch(port: u16, extra: &[&str], access: Access) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("switchboard-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut r = RedisServer { child: None, port, dir, extra, access };
        r.spawn();
        r
    }

    /// The process id of the running `redis-server` (to stop it with SIGSTOP, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        // A secured server's own arguments name its ports (given last, they win).
        let port = if self.access.ca.is_some() { "0".to_string() } else { self.port.to_string() };
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
            let up = self.command(&["PING"]).is_some_and(|r| r.contains("PONG"));
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        let scheme = if self.access.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://{}127.0.0.1:{}", self.access.userinfo(), self.port)
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

    /// Sends one command over RESP and returns the raw reply (`None` if Redis is unreachable);
    /// to a secured server, through `redis-cli` (one line per element).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.access.command(self.port, args)
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
