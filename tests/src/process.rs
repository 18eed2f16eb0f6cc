use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A node process; killed when dropped.
pub struct Node {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// What it wrote to stderr, when started with [`Node::start_logged`].
    log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

impl Node {
    /// Starts `bin` (the `switchboard-node` binary) with `args` on a free loopback port.
    pub fn start(bin: &str, args: &[&str]) -> Node {
        Self::start_at(bin, "127.0.0.1:0", args)
    }

    /// Starts `bin` listening on `listen` (to restart a node where its clients expect it).
    pub fn start_at(bin: &str, listen: &str, args: &[&str]) -> Node {
        Self::launch(bin, listen, args, false)
    }

    /// Like [`Node::start`], keeping what the node logs (stderr) for [`Node::log`]; it is also
    /// copied to the test's stderr.
    pub fn start_logged(bin: &str, args: &[&str]) -> Node {
        Self::launch(bin, "127.0.0.1:0", args, true)
    }

    /// What the node has logged so far (empty unless started with [`Node::start_logged`]).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    fn launch(bin: &str, listen: &str, args: &[&str], keep_log: bool) -> Node {
        let mut child = Command::new(bin)
            .args(["--listen", listen, "--log", "warn"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if keep_log { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let log = child.stderr.take().map(|stderr| {
            let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let into = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    let mut l = into.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    l.push_str(&line);
                    l.push('\n');
                }
            });
            log
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("node stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("node did not start: {line:?}"))
            .to_string();
        Node { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory of the node, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `/readyz` answers 200 (`ready`) or 503 (`!ready`) and returns how long that
    /// took; panics after `within`.
    pub fn wait_ready(&self, ready: bool, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if (self.get("/readyz").0 == 200) == ready {
                return start.elapsed();
            }
            let want = if ready { "ready" } else { "unready" };
            assert!(start.elapsed() < within, "node {} never became {want}", self.addr);
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we own.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A plain HTTP GET (status, body) over a raw socket: no HTTP client crate needed.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path, &[])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (32768+ on Linux).
///
/// A node retries a Redis port that nothing listens on yet (or any more); if that port were in
/// the ephemeral range, one of its own connection attempts could be given the very same port as
/// its source and connect to itself (TCP simultaneous open), and the redis-server started there
/// next would find its port taken.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// The `switchboard-node` binary next to the running test (`target/<profile>/`), rebuilt first
/// if any of its sources is newer: tests of this crate cannot use `CARGO_BIN_EXE_*` of another
/// package, so a plain `cargo test -p switchboard-tests` would otherwise run a stale node.
/// (`cargo test --workspace` has just built it; then nothing is rebuilt.) The node serves the
/// browser client compiled in, so the gateway's sources count too.
pub fn node_binary() -> String {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let sources = [
            "node/src",
            "node/Cargo.toml",
            "gateway/src",
            "gateway/static",
            "gateway/Cargo.toml",
            "shared/src",
            "shared/Cargo.toml",
            "Cargo.lock",
        ];
        fresh_binary("switchboard-node", &["-p", "switchboard-node"], &sources, &[])
    })
    .clone()
}

/// The reference peer's binary (`switchboard-peer` with feature `rtc`), rebuilt like
/// [`node_binary`] when missing or older than its sources (the patched webrtc crate among
/// them), or when it was built without `rtc` (its `join`, even `join --help`, then fails).
pub fn peer_binary() -> String {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let sources = ["shared/src", "shared/Cargo.toml", "patches/webrtc-0.17.2", "Cargo.lock"];
        fresh_binary("switchboard-peer", &["-p", "switchboard", "--features", "rtc"], &sources, &["join", "--help"])
    })
    .clone()
}

/// `target/<profile>/<bin>`, built with `cargo build <package> --bin <bin>` (in the running
/// test's profile) if it is missing, older than any of `sources`, or fails `<bin> <probe>`.
fn fresh_binary(bin: &str, package: &[&str], sources: &[&str], probe: &[&str]) -> String {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/<bin>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(bin);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = sources.iter().filter_map(|p| newest_mtime(&root.join(p))).max();
    let usable = || probe.is_empty() || Command::new(&path).args(probe).output().is_ok_and(|o| o.status.success());
    if built.is_none() || newest > built || !usable() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet"]).args(package).args(["--bin", bin]);
        if dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        assert!(build.status().is_ok_and(|s| s.success()), "cannot build {bin}");
    }
    path.to_string_lossy().into_owned()
}

/// The latest modification time of a file, or of any file under a directory.
fn newest_mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest_mtime(&e.path())).max()
}

/// GET `path` from `addr` with extra headers; returns (status, body).
pub fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Runs `cmd` to completion or until `deadline`; returns (success, stdout, stderr). Panics with
/// both outputs if it has to kill it.
pub fn run_until(mut cmd: Command, deadline: Instant) -> (bool, String, String) {
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out_reader.join().unwrap_or_default(), err_reader.join().unwrap_or_default());
    match status {
        Some(s) => (s.success(), stdout, stderr),
        None => panic!("{cmd:?} did not finish in time\nstdout: {stdout}\nstderr: {stderr}"),
    }
}

/// Whether an external program a test needs (node, npm, chromium) can run here. Missing, the
/// test is skipped with a note — except under CI (`CI=true`), whose script installs them all,
/// where a missing tool fails the test instead of letting it pass unrun.
pub fn external_tool(program: &str) -> bool {
    external_tool_probed(program, &["--version"])
}

/// [`external_tool`] for programs that do not take `--version` (`kubectl version --client`).
pub fn external_tool_probed(program: &str, probe: &[&str]) -> bool {
    let found = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "`{program}` is required under CI but is not installed");
        println!("skipped: `{program}` is not on PATH");
    }
    found
}
