//! A v1 client that follows the drain/resume protocol (`reconnect` → close 1000, read to the
//! server's close, reconnect with `?resume=<token>`, expect `welcome` with `resumed: true` and
//! the same peer id, flush what was queued) while it streams numbered signals to a partner,
//! and records everything it saw: each signal received, membership changes, errors, and per
//! resume how long the peer was away.
//!
//! Protocol violations the client notices (a `welcome` without `resumed` in answer to a
//! resume, another peer id, no close after `reconnect`, a socket lost without `reconnect`...)
//! are recorded in [`PeerLog::problems`] rather than panicking inside its task, so a test can
//! report all of them at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod log;

pub use log::{PeerLog, Received, Resume, percentile};

use log::{problem, record};

use crate::{Client, Frame, STEP_TIMEOUT};

/// How long the client keeps reading after its own close, for the server's (spec: ~3 s).
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// One connection attempt (TCP, handshake) before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fresh reconnect (after a failed resume) keeps trying.
const FRESH_WITHIN: Duration = Duration::from_secs(10);

/// A connected, welcomed v1 peer that knows how to resume.
pub struct ResumingPeer {
    pub id: String,
    /// The `node_id` of the welcome.
    pub node_id: String,
    url: String,
    resume_urls: Vec<String>,
    rooms: Vec<String>,
    ws: Client,
}

impl ResumingPeer {
    /// Connects to `url` and reads the `welcome`.
    pub async fn connect(url: &str) -> ResumingPeer {
        let mut ws = Client::connect(url).await;
        let w = ws.expect("welcome").await;
        let id = w["peer_id"].as_str().unwrap_or_else(|| panic!("welcome without peer_id: {w}")).to_string();
        let node_id = w["node_id"].as_str().unwrap_or_default().to_string();
        ResumingPeer { id, node_id, url: url.to_string(), resume_urls: vec![url.to_string()], rooms: Vec::new(), ws }
    }

    /// Where to resume: these URLs in turn, one per attempt (default: the URL it connected to,
    /// as behind a load balancer). `resume=<token>` is added to each.
    pub fn resume_via(mut self, urls: &[String]) -> ResumingPeer {
        assert!(!urls.is_empty(), "no URL to resume at");
        self.resume_urls = urls.to_vec();
        self
    }

    /// Joins `room` and returns the `joined` message.
    pub async fn join(&mut self, room: &str) -> Value {
        self.ws.send_json(json!({"type": "join", "room": room})).await;
        self.rooms.push(room.to_string());
        self.ws.expect("joined").await
    }

    /// Skips frames until one of type `ty` (before streaming starts).
    pub async fn expect(&mut self, ty: &str) -> Value {
        self.ws.expect(ty).await
    }

    /// Starts the task that streams `plan` and follows `reconnect`s until [`Streaming::finish`].
    pub fn stream(self, plan: StreamPlan) -> Streaming {
        let log = Arc::new(Mutex::new(PeerLog {
            id: self.id.clone(),
            ids: vec![self.id.clone()],
            nodes: vec![self.node_id.clone()],
            ..PeerLog::default()
        }));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(self, plan, Arc::clone(&log), stopped));
        Streaming { log, stop, task }
    }
}

/// What a streaming peer sends: `count` signals to `to` in `room`, one every `every`.
#[derive(Clone, Debug)]
pub struct StreamPlan {
    pub room: String,
    pub to: String,
    pub count: u64,
    pub every: Duration,
    /// Sends the offers of the exchange (the other side answers).
    pub offerer: bool,
}

impl StreamPlan {
    /// Signal `seq`, shaped like a negotiation: an offer (or answer) every 50, candidates between.
    pub fn message(&self, seq: u64) -> Value {
        let kind = match (seq % 50, self.offerer) {
            (0, true) => "offer",
            (0, false) => "answer",
            _ => "candidate",
        };
        json!({"type": "signal", "room": self.room, "to": self.to, "data": {"kind": kind, "seq": seq}, "id": seq})
    }
}

/// A peer streaming in the background.
pub struct Streaming {
    log: Arc<Mutex<PeerLog>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<ResumingPeer>,
}

impl Streaming {
    /// A copy of what it saw so far.
    pub fn log(&self) -> PeerLog {
        self.log.lock().expect("peer log").clone()
    }

    /// How many numbered signals it received so far.
    pub fn received(&self) -> usize {
        self.log.lock().expect("peer log").received.len()
    }

    /// How many of its own signals it sent (or queued) so far.
    pub fn sent(&self) -> usize {
        self.log.lock().expect("peer log").sent.len()
    }

    /// Asks the task to stop: it records nothing after and keeps its socket open (so its
    /// partner sees no `peer-left` while it is still recording). Stop every peer of a test
    /// before [`finish`](Self::finish)ing any.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the task (within 15 s; a resume under way finishes first) and returns the log and
    /// the peer, its socket still open (`None` if the task failed).
    pub async fn finish(self) -> (PeerLog, Option<ResumingPeer>) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        let peer = match tokio::time::timeout(Duration::from_secs(15), &mut task).await {
            Ok(Ok(peer)) => Some(peer),
            Ok(Err(e)) => {
                self.log.lock().expect("peer log").problems.push(format!("client task failed: {e}"));
                None
            }
            Err(_) => {
                task.abort();
                self.log.lock().expect("peer log").problems.push("client task did not stop within 15 s".into());
                None
            }
        };
        (self.log.lock().expect("peer log").clone(), peer)
    }
}

async fn run(
    mut peer: ResumingPeer,
    plan: StreamPlan,
    log: Arc<Mutex<PeerLog>>,
    mut stop: watch::Receiver<bool>,
) -> ResumingPeer {
    let mut tick = tokio::time::interval(plan.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u64;
    let mut queue: VecDeque<Value> = VecDeque::new();
    let mut conn = 0usize;
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tick.tick(), if next < plan.count => {
                let msg = plan.message(next);
                log.lock().expect("peer log").sent.push(Instant::now());
                if !peer.ws.try_send_json(&msg).await {
                    problem(&log, format!("send of seq {next} failed: the socket is gone"));
                    break;
                }
                next += 1;
                continue;
            }
            f = peer.ws.next_within(Duration::from_secs(3600)) => f.unwrap_or(Frame::Ended),
        };
        match frame {
            Frame::Json(v) if v["type"] == "reconnect" => {
                // Stop sending: whatever falls due meanwhile is queued.
                let ok = {
                    let follow = peer.follow_reconnect(&v, &log, &mut conn);
                    tokio::pin!(follow);
                    loop {
                        tokio::select! {
                            ok = &mut follow => break ok,
                            _ = tick.tick(), if next < plan.count => {
                                log.lock().expect("peer log").sent.push(Instant::now());
                                queue.push_back(plan.message(next));
                                next += 1;
                            }
                        }
                    }
                };
                if !ok {
                    break;
                }
                while let Some(m) = queue.pop_front() {
                    if !peer.ws.try_send_json(&m).await {
                        problem(&log, format!("flush of {m} failed: the socket is gone"));
                        return peer;
                    }
                }
            }
            Frame::Json(v) => record(&log, v, conn),
            other => {
                problem(&log, format!("socket closed without `reconnect`: {other:?}"));
                break;
            }
        }
    }
    peer
}

impl ResumingPeer {
    /// The client rule on `reconnect`; false if the peer cannot go on (no session at all).
    async fn follow_reconnect(&mut self, reconnect: &Value, log: &Mutex<PeerLog>, conn: &mut usize) -> bool {
        let at = Instant::now();
        let (Some(token), Some(within_ms)) = (reconnect["resume_token"].as_str(), reconnect["within_ms"].as_u64())
        else {
            problem(log, format!("malformed reconnect: {reconnect}"));
            return false;
        };
        let token = token.to_string();
        let mut resume = Resume {
            at,
            within_ms,
            frames_before_close: 0,
            server_close: None,
            attempts: 0,
            attempt_errors: Vec::new(),
            gap: None,
            from_node: self.node_id.clone(),
            to_node: String::new(),
        };

        // 1. Close (1000) and read to the server's close: what comes first is real.
        self.ws.send_close(1000, "").await;
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ws.next_within(left).await {
                Some(Frame::Json(v)) => {
                    resume.frames_before_close += 1;
                    if v["type"] == "reconnect" {
                        problem(log, format!("a second reconnect before the close: {v}"));
                    }
                    record(log, v, *conn);
                }
                Some(Frame::Close(c)) => {
                    if c.as_ref().map(|(code, reason)| (*code, reason.as_str())) != Some((1012, "service-restart")) {
                        problem(log, format!("close after reconnect was {c:?}, not 1012 service-restart"));
                    }
                    resume.server_close = c;
                    break;
                }
                Some(Frame::Ended) => {
                    problem(log, "socket ended after reconnect without a close frame".into());
                    break;
                }
                None => {
                    problem(log, format!("no close within {CLOSE_WAIT:?} of reconnect"));
                    break;
                }
            }
        }

        // 2. Reconnect with the token, retrying with backoff until within_ms has passed.
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..100))).await;
        let within = Duration::from_millis(within_ms);
        let mut backoff = Duration::from_millis(100);
        let mut fresh: Option<Client> = None;
        loop {
            let base = &self.resume_urls[resume.attempts as usize % self.resume_urls.len()];
            let url = with_query(base, "resume", &token);
            resume.attempts += 1;
            match tokio::time::timeout(ATTEMPT_TIMEOUT, Client::connect_with(&url, &[])).await {
                Err(_) => resume.attempt_errors.push(format!("{base}: no handshake within {ATTEMPT_TIMEOUT:?}")),
                Ok(Err(e)) => resume.attempt_errors.push(format!("{base}: {e}")),
                Ok(Ok(mut ws)) => match ws.next_within(STEP_TIMEOUT).await {
                    // 3. Success: the same peer, and what was sent in the gap follows.
                    Some(Frame::Json(w)) if w["type"] == "welcome" && w["resumed"] == true => {
                        if w["peer_id"] != self.id.as_str() {
                            problem(log, format!("resumed welcome for another peer id ({}): {w}", self.id));
                        }
                        resume.gap = Some(at.elapsed());
                        resume.to_node = w["node_id"].as_str().unwrap_or_default().to_string();
                        self.node_id = resume.to_node.clone();
                        self.ws = ws;
                        *conn += 1;
                        let mut l = log.lock().expect("peer log");
                        l.nodes.push(resume.to_node.clone());
                        l.resumes.push(resume);
                        return true;
                    }
                    Some(Frame::Json(w)) if w["type"] == "welcome" => {
                        problem(log, format!("a welcome without `resumed` answered a resume: {w}"));
                        fresh = Some(ws);
                        // That is a fresh session: carry on as after a failed resume.
                        self.welcome_fresh(&w, log);
                        break;
                    }
                    // 4. Failure: resume-failed, close 4410, then a fresh session.
                    Some(Frame::Json(e)) if e["type"] == "error" && e["code"] == "resume-failed" => {
                        let close = ws.expect_close().await;
                        if close.as_ref().map(|c| c.0) != Some(4410) {
                            problem(log, format!("resume-failed closed with {close:?}, not 4410"));
                        }
                        problem(
                            log,
                            format!("resume failed at {base} ({} ms after reconnect): {e}", at.elapsed().as_millis()),
                        );
                        log.lock().expect("peer log").errors.push(e);
                        break;
                    }
                    other => {
                        problem(log, format!("resume at {base} answered {other:?}"));
                    }
                },
            }
            if at.elapsed() + backoff >= within {
                problem(
                    log,
                    format!(
                        "no resume within {within_ms} ms after {} attempts: {:?}",
                        resume.attempts, resume.attempt_errors
                    ),
                );
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }

        // A fresh session: a new peer id, join the rooms again (the partner's negotiation is
        // lost; a test sees that as errors and missing signals).
        log.lock().expect("peer log").resumes.push(resume);
        let ws = match fresh {
            Some(ws) => ws,
            None => match self.connect_fresh(log).await {
                Some(ws) => ws,
                None => return false,
            },
        };
        self.ws = ws;
        *conn += 1;
        log.lock().expect("peer log").fresh_reconnects += 1;
        for room in self.rooms.clone() {
            if !self.ws.try_send_json(&json!({"type": "join", "room": room})).await {
                problem(log, "fresh session lost while joining again".into());
                return false;
            }
        }
        true
    }

    async fn connect_fresh(&mut self, log: &Mutex<PeerLog>) -> Option<Client> {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(100);
        while start.elapsed() < FRESH_WITHIN {
            if let Ok(Ok(mut ws)) = tokio::time::timeout(ATTEMPT_TIMEOUT, Client::connect_with(&self.url, &[])).await {
                match ws.next_within(STEP_TIMEOUT).await {
                    Some(Frame::Json(w)) if w["type"] == "welcome" => {
                        self.welcome_fresh(&w, log);
                        return Some(ws);
                    }
                    other => problem(log, format!("fresh connection answered {other:?}")),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        problem(log, format!("no fresh connection within {FRESH_WITHIN:?}"));
        None
    }

    fn welcome_fresh(&mut self, w: &Value, log: &Mutex<PeerLog>) {
        self.id = w["peer_id"].as_str().unwrap_or_default().to_string();
        self.node_id = w["node_id"].as_str().unwrap_or_default().to_string();
        let mut l = log.lock().expect("peer log");
        l.ids.push(self.id.clone());
        l.nodes.push(self.node_id.clone());
    }
}

/// `url` with `key=value` (percent-encoded) added to its query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut enc = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{url}{sep}{key}={enc}")
}
