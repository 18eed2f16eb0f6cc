//! A `switchboard-peer join` process (the reference peer, a real WebRTC call), watched through
//! its stdout: one JSON line an event, each kept with when the test read it.
//!
//! Every line is echoed to the test's output as it arrives (`[<name> +<s>] <line>`, seconds
//! since the test's `t0`), and [`PeerProc::dump_all`] gives every peer's lines and stderr for a
//! failure message. Dropping a `PeerProc` kills the process.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How often the waits look at the lines read so far.
const POLL: Duration = Duration::from_millis(20);

/// One `switchboard-peer join` process: its stdout's JSON lines, each with when the test read it.
pub struct PeerProc {
    /// The name its lines and failure messages go by (`A`, `B`, ...).
    pub name: &'static str,
    /// When the process was started (its `--duration-secs` runs from a little later).
    pub spawned: Instant,
    /// The test's start, what the times in its output count from.
    t0: Instant,
    child: Mutex<Child>,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
    stderr: Arc<Mutex<String>>,
}

impl PeerProc {
    /// Starts `<bin> join --url <url> --room <room> --duration-secs <duration_secs>`. A line that
    /// is not JSON is kept as `{"event": "<not json>", "line": ...}`.
    pub fn spawn(name: &'static str, bin: &str, url: &str, room: &str, duration_secs: u64, t0: Instant) -> PeerProc {
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .args(["join", "--url", url, "--room", room, "--duration-secs", &duration_secs.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let at = Instant::now();
                println!("[{name} +{:7.3}s] {line}", at.duration_since(t0).as_secs_f64());
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "<not json>", "line": line}));
                l.lock().unwrap().push((at, v));
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let e = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            *e.lock().unwrap() = s;
        });
        PeerProc { name, spawned, t0, child: Mutex::new(child), lines, stderr }
    }

    /// The lines read so far, each with when it was read.
    pub fn lines(&self) -> Vec<(Instant, Value)> {
        self.lines.lock().unwrap().clone()
    }

    /// How many lines of `event` were read so far.
    pub fn count(&self, event: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|(_, v)| v["event"] == event).count()
    }

    /// SIGINT: the peer leaves, prints `done` and exits.
    pub fn interrupt(&self) {
        let pid = self.child.lock().unwrap().id();
        // SAFETY: kill(2) with the pid of a child we own.
        unsafe {
            libc::kill(pid as i32, libc::SIGINT);
        }
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// Its lines (times since `t0`) and its stderr, for a failure message.
    pub fn dump(&self) -> String {
        let mut s = format!("--- {} (stdout) ---\n", self.name);
        for (at, v) in self.lines() {
            s.push_str(&format!("+{:7.3}s {v}\n", at.duration_since(self.t0).as_secs_f64()));
        }
        s.push_str(&format!("--- {} (stderr) ---\n{}\n", self.name, self.stderr.lock().unwrap()));
        s
    }

    /// All the peers' [`dump`](PeerProc::dump)s, for a failure message.
    pub fn dump_all(peers: &[&PeerProc]) -> String {
        peers.iter().map(|p| p.dump()).collect()
    }

    /// Waits until it printed a line matching `pred`; returns it with when it was read. Fails
    /// the test (with `peers`' output) after `within`.
    pub async fn wait_line(
        &self,
        what: &str,
        within: Duration,
        peers: &[&PeerProc],
        pred: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(hit) = self.lines().into_iter().find(|(_, v)| pred(v)) {
                return hit;
            }
            assert!(Instant::now() < deadline, "{}: no {what} within {within:?}\n{}", self.name, Self::dump_all(peers));
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until it printed `n` lines of `event`; returns the last of them. Fails the test
    /// (with `peers`' output) after `within`.
    pub async fn wait_count(&self, event: &str, n: usize, within: Duration, peers: &[&PeerProc]) -> (Instant, Value) {
        let deadline = Instant::now() + within;
        loop {
            let hits: Vec<(Instant, Value)> = self.lines().into_iter().filter(|(_, v)| v["event"] == event).collect();
            if hits.len() >= n {
                return hits[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} `{event}` lines of {n} within {within:?}\n{}",
                self.name,
                hits.len(),
                Self::dump_all(peers)
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}
