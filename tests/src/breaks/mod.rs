//! A v1 client that survives any break of its socket (issue 13): the client side of the resume
//! contract, written from the spec, for tests that break sockets on purpose.
//!
//! - It tracks the `seq` of every server frame (contiguous from 1 per session, across resumes and
//!   nodes) and acks it (`{"type":"ack","seq":N}`) every [`SeqOptions::ack_frames`] frames or
//!   [`SeqOptions::ack_after`] after an unacked one.
//! - It numbers every message but `ack` with `cseq` and keeps it until the server confirms it
//!   (`pong.last_cseq`, a resumed `welcome.last_cseq`), plus the last few confirmed ones.
//! - It pings every [`SeqOptions::ping_every`] and calls the socket dead after
//!   [`SeqOptions::dead_after`] without any frame (a silent stall), or at once on an error or
//!   end (a reset).
//! - It then resumes with `?resume=<token>&last_seq=<N>` at the URL the test chose last
//!   ([`SeqStream::resume_at`]): first try after 0-100 ms, then 100 ms doubling to 1.6 s,
//!   within the welcome's `resume_within_ms`.
//! - After a resumed welcome it re-sends what the server had not processed, in order. On
//!   purpose it re-sends some that it had processed too, so the server's dedupe is exercised:
//!   after every even-numbered resume the last three before `welcome.last_cseq`, after every
//!   odd-numbered one everything `pong` had not confirmed before the break (what a client that
//!   ignores `last_cseq` would send).
//!
//! It streams numbered signals (`data.n` = 0, 1, 2...) to one partner and records everything
//! in a [`SeqLog`]. Protocol violations are recorded there too (not panics inside its task), so a
//! test can report them all at once. A refused or timed-out resume ends its task: the test
//! sees the session go no further, and the reason in [`SeqLog::problems`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod log;

pub use log::{Break, Got, PeerStateSeen, SeqLog};

use log::problem;

use crate::{STEP_TIMEOUT, with_query};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Confirmed messages kept for the deliberate re-sends.
const KEEP_CONFIRMED: u64 = 8;
/// Messages kept at most (the spec: drop the oldest beyond ~1000).
const OUTBOX_MAX: usize = 1000;
/// A write that takes longer counts as a dead socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// The last backoff between two resume attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(1600);

/// How the client paces itself and when it gives a socket up.
#[derive(Clone, Debug)]
pub struct SeqOptions {
    /// A numbered `ping` this often.
    pub ping_every: Duration,
    /// No frame at all for this long: the socket is dead.
    pub dead_after: Duration,
    /// Ack after this many frames...
    pub ack_frames: u32,
    /// ...or this long after an unacked one.
    pub ack_after: Duration,
    /// One resume attempt (TCP, handshake, first frame) before it counts as failed.
    pub attempt_timeout: Duration,
}

impl Default for SeqOptions {
    fn default() -> Self {
        SeqOptions {
            ping_every: Duration::from_millis(200),
            dead_after: Duration::from_secs(1),
            ack_frames: 16,
            ack_after: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(2),
        }
    }
}

/// What a streaming peer sends: numbered signals to `to` in `room`, one every `every`, until
/// [`SeqStream::stop_sending`].
#[derive(Clone, Debug)]
pub struct SeqPlan {
    pub room: String,
    pub to: String,
    pub every: Duration,
}

impl SeqPlan {
    /// Signal `n` (`cseq` is added when it is sent).
    pub fn message(&self, n: u64) -> Value {
        let kind = if n.is_multiple_of(50) { "offer" } else { "candidate" };
        json!({"type": "signal", "room": self.room, "to": self.to, "data": {"kind": kind, "n": n}})
    }
}

/// A connected, welcomed v1 peer that numbers, acks and resumes.
pub struct SeqPeer {
    pub id: String,
    /// The `node_id` of the last welcome.
    pub node_id: String,
    /// The first welcome's `resume_within_ms`.
    pub resume_within_ms: u64,
    token: String,
    ws: Option<Ws>,
    /// Highest seq received, and the last one acked.
    last_seq: u64,
    acked: u64,
    unacked: u32,
    /// The last cseq given to a message, and the last the server confirmed.
    cseq: u64,
    confirmed: u64,
    /// Messages sent (or queued) and not yet forgotten: every unconfirmed one, and the last
    /// [`KEEP_CONFIRMED`] confirmed ones.
    outbox: VecDeque<(u64, String)>,
    last_frame: Instant,
    conn: usize,
    resumes: usize,
    seq_not_first_reported: bool,
    opts: SeqOptions,
    log: Arc<Mutex<SeqLog>>,
    resume_url: Arc<Mutex<String>>,
}

impl SeqPeer {
    /// Connects to `url` and reads the `welcome`; panics on anything else.
    pub async fn connect(url: &str, opts: SeqOptions) -> SeqPeer {
        let (mut ws, _) = tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("connect {url}: no handshake within {STEP_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let w = match tokio::time::timeout(STEP_TIMEOUT, first_text(&mut ws)).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => panic!("{url}: no welcome: {e}"),
            Err(_) => panic!("{url}: no welcome within {STEP_TIMEOUT:?}"),
        };
        assert_eq!(w["type"], "welcome", "{url}: expected welcome, got {w}");
        assert!(w.get("seq").is_none(), "a welcome carries no seq: {w}");
        let id = w["peer_id"].as_str().unwrap_or_else(|| panic!("welcome without peer_id: {w}")).to_string();
        let token = w["resume_token"].as_str().unwrap_or_else(|| panic!("welcome without resume_token: {w}"));
        let within = w["resume_within_ms"].as_u64().unwrap_or_else(|| panic!("welcome without resume_within_ms: {w}"));
        let node_id = w["node_id"].as_str().unwrap_or_default().to_string();
        let log = SeqLog { id: id.clone(), nodes: vec![node_id.clone()], ..SeqLog::default() };
        SeqPeer {
            id,
            node_id,
            resume_within_ms: within,
            token: token.to_string(),
            ws: Some(ws),
            last_seq: 0,
            acked: 0,
            unacked: 0,
            cseq: 0,
            confirmed: 0,
            outbox: VecDeque::new(),
            last_frame: Instant::now(),
            conn: 0,
            resumes: 0,
            seq_not_first_reported: false,
            opts,
            log: Arc::new(Mutex::new(log)),
            resume_url: Arc::new(Mutex::new(url.to_string())),
        }
    }

    /// The current resume token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The highest seq received.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Joins `room` and returns the `joined` message.
    pub async fn join(&mut self, room: &str) -> Value {
        assert!(self.send_numbered(json!({"type": "join", "room": room})).await, "{}: join not sent", self.id);
        self.expect("joined").await
    }

    /// Reads frames (recording the others) until one of type `ty` (before streaming starts).
    pub async fn expect(&mut self, ty: &str) -> Value {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let ws = self.ws.as_mut().expect("connected");
            let m = tokio::time::timeout_at(deadline, ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no {ty} within {STEP_TIMEOUT:?}", self.id));
            match m {
                Some(Ok(Message::Text(t))) => {
                    self.last_frame = Instant::now();
                    let v = self.numbered(&t);
                    if v["type"] == ty {
                        return v;
                    }
                    self.record(v);
                }
                Some(Ok(Message::Close(c))) => panic!("{}: closed while waiting for {ty}: {c:?}", self.id),
                Some(Ok(_)) => self.last_frame = Instant::now(),
                Some(Err(e)) => panic!("{}: socket error while waiting for {ty}: {e}", self.id),
                None => panic!("{}: socket ended while waiting for {ty}", self.id),
            }
        }
    }

    /// Starts the task that streams `plan`, acks, pings and resumes until [`SeqStream::finish`].
    pub fn stream(self, plan: SeqPlan) -> SeqStream {
        let log = Arc::clone(&self.log);
        let resume_url = Arc::clone(&self.resume_url);
        let (stop, stopped) = watch::channel(false);
        let (sending, send_rx) = watch::channel(true);
        let task = tokio::spawn(run(self, plan, stopped, send_rx));
        SeqStream { log, stop, sending, resume_url, task }
    }

    /// Closes the socket cleanly (close frame 1000) and waits briefly for the server's.
    pub async fn close(mut self) {
        if let Some(mut ws) = self.ws.take() {
            let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "".into(),
            };
            let _ = ws.close(Some(normal)).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), async { while ws.next().await.is_some() {} }).await;
        }
    }

    /// Numbers `v` with the next cseq, keeps it, and sends it if the socket is up; false if the
    /// write failed (the socket is dead; the message stays kept).
    async fn send_numbered(&mut self, mut v: Value) -> bool {
        self.cseq += 1;
        v["cseq"] = json!(self.cseq);
        let text = v.to_string();
        self.outbox.push_back((self.cseq, text.clone()));
        if self.outbox.len() > OUTBOX_MAX {
            let (c, _) = self.outbox.pop_front().expect("not empty");
            if c > self.confirmed {
                problem(&self.log, format!("outbox full: dropped unconfirmed cseq {c} (confirmed {})", self.confirmed));
            }
        }
        self.write(text).await
    }

    async fn write(&mut self, text: String) -> bool {
        let Some(ws) = self.ws.as_mut() else { return true };
        matches!(tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::text(text))).await, Ok(Ok(())))
    }

    async fn send_ack(&mut self) -> bool {
        let seq = self.last_seq;
        let ok = self.write(json!({"type": "ack", "seq": seq}).to_string()).await;
        if ok {
            self.acked = seq;
            self.unacked = 0;
            self.log.lock().expect("seq log").acks_sent += 1;
        }
        ok
    }

    /// Takes a numbered frame: checks and advances `seq`; returns it parsed (`Null` if it is to
    /// be ignored).
    fn numbered(&mut self, text: &str) -> Value {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problem(&self.log, format!("{}: not JSON ({e}): {text}", self.id));
                return Value::Null;
            }
        };
        let Some(seq) = v["seq"].as_u64() else {
            problem(&self.log, format!("{}: a frame without seq after the welcome: {v}", self.id));
            return v;
        };
        if !text.starts_with("{\"seq\":") && !self.seq_not_first_reported {
            self.seq_not_first_reported = true;
            problem(&self.log, format!("{}: seq is not the first key: {text}", self.id));
        }
        if seq <= self.last_seq {
            problem(&self.log, format!("{}: seq {seq} again (last {}), ignored: {v}", self.id, self.last_seq));
            return Value::Null;
        }
        if seq != self.last_seq + 1 {
            problem(&self.log, format!("{}: seq {seq} after {}: a gap: {v}", self.id, self.last_seq));
        }
        self.last_seq = seq;
        self.unacked += 1;
        self.log.lock().expect("seq log").last_seq = seq;
        if v["type"] == "pong"
            && let Some(c) = v["last_cseq"].as_u64()
        {
            self.confirm(c, "pong");
        }
        v
    }

    /// Records a numbered frame in the log.
    fn record(&mut self, v: Value) {
        let seq = v["seq"].as_u64().unwrap_or_default();
        let mut log = self.log.lock().expect("seq log");
        match v["type"].as_str().unwrap_or_default() {
            "" => {}
            "signal" if v["data"]["n"].is_u64() => {
                let from = v["from"].as_str().unwrap_or_default().to_string();
                let n = v["data"]["n"].as_u64().unwrap_or_default();
                log.received.push(Got { from, n, seq, at: Instant::now(), conn: self.conn });
            }
            "pong" => log.pongs += 1,
            "peer-state" => {
                let s = PeerStateSeen {
                    at: Instant::now(),
                    room: v["room"].as_str().unwrap_or_default().to_string(),
                    peer_id: v["peer_id"].as_str().unwrap_or_default().to_string(),
                    state: v["state"].as_str().unwrap_or_default().to_string(),
                    seq,
                };
                log.peer_states.push(s);
            }
            "peer-joined" | "peer-left" => log.membership.push((Instant::now(), v)),
            "error" => log.errors.push(v),
            "welcome" => log.problems.push(format!("{}: a welcome on an open socket: {v}", self.id)),
            _ => log.other.push(v),
        }
    }

    /// The server processed everything up to `c` (`pong`, resumed `welcome`).
    fn confirm(&mut self, c: u64, what: &str) {
        if c > self.cseq {
            problem(&self.log, format!("{}: {what} confirms cseq {c}, but only {} were sent", self.id, self.cseq));
        }
        self.confirmed = self.confirmed.max(c);
        while self.outbox.front().is_some_and(|(f, _)| f + KEEP_CONFIRMED <= self.confirmed) {
            self.outbox.pop_front();
        }
    }

    /// The socket is gone (or given up): record the break and start resuming.
    fn broke(&mut self, down: &mut Option<Down>, cause: String) {
        if self.ws.take().is_none() {
            return;
        }
        let now = Instant::now();
        self.log.lock().expect("seq log").breaks.push(Break {
            detected_at: now,
            cause,
            from_node: self.node_id.clone(),
            last_seq: self.last_seq,
            last_cseq: self.cseq,
            confirmed: self.confirmed,
            attempts: 0,
            attempt_errors: Vec::new(),
            url: String::new(),
            resumed_at: None,
            to_node: String::new(),
            welcome_last_cseq: 0,
            resent: 0,
            resent_processed: 0,
        });
        let first = Duration::from_millis(rand::random_range(0..100));
        *down = Some(Down {
            since: now,
            retry_at: tokio::time::Instant::now() + first,
            backoff: Duration::from_millis(100),
            attempt: None,
            url: String::new(),
        });
    }

    /// Starts the next resume attempt.
    fn try_resume(&mut self, d: &mut Down) {
        let base = self.resume_url.lock().expect("resume url").clone();
        let url = with_query(&with_query(&base, "resume", &self.token), "last_seq", &self.last_seq.to_string());
        if let Some(b) = self.log.lock().expect("seq log").breaks.last_mut() {
            b.attempts += 1;
        }
        d.url = base;
        d.attempt = Some(tokio::spawn(attempt(url, self.opts.attempt_timeout)));
    }

    /// What an attempt brought; false if the session is lost (the task ends).
    async fn attempted(&mut self, down: &mut Option<Down>, outcome: Attempt) -> bool {
        let d = down.as_mut().expect("down");
        let url = std::mem::take(&mut d.url);
        match outcome {
            Attempt::Answered(ws, w) if w["type"] == "welcome" && w["resumed"] == true => {
                *down = None;
                if !self.resumed(*ws, w, url).await {
                    // Broken again at once: the next resume starts from here.
                    self.broke(down, "write failed while re-sending after a resume".into());
                }
                true
            }
            Attempt::Answered(_, w) => {
                problem(&self.log, format!("{}: a resume at {url} was answered {w}", self.id));
                false
            }
            Attempt::Refused { error, close } => {
                problem(
                    &self.log,
                    format!(
                        "{}: resume at {url} refused after {:?}: {error}, then {close:?}",
                        self.id,
                        d.since.elapsed()
                    ),
                );
                false
            }
            Attempt::Failed(e) => {
                let mut log = self.log.lock().expect("seq log");
                let b = log.breaks.last_mut().expect("a break");
                b.attempt_errors.push(format!("{url}: {e}"));
                if d.since.elapsed() + d.backoff >= Duration::from_millis(self.resume_within_ms) {
                    let p =
                        format!("{}: no resume within {} ms: {:?}", self.id, self.resume_within_ms, b.attempt_errors);
                    log.problems.push(p);
                    return false;
                }
                d.retry_at = tokio::time::Instant::now() + d.backoff;
                d.backoff = (d.backoff * 2).min(BACKOFF_MAX);
                true
            }
        }
    }

    /// A resumed welcome: check it, take the socket, re-send; false if a write failed.
    async fn resumed(&mut self, ws: Ws, w: Value, url: String) -> bool {
        let now = Instant::now();
        if w["peer_id"] != self.id.as_str() {
            problem(&self.log, format!("{}: resumed as another peer: {w}", self.id));
        }
        if w.get("seq").is_some() {
            problem(&self.log, format!("{}: a resumed welcome with a seq: {w}", self.id));
        }
        match w["resume_token"].as_str() {
            Some(t) if t != self.token => self.token = t.to_string(),
            _ => problem(&self.log, format!("{}: a resumed welcome without a fresh resume_token: {w}", self.id)),
        }
        let lc = w["last_cseq"].as_u64().unwrap_or_else(|| {
            problem(&self.log, format!("{}: a resumed welcome without last_cseq: {w}", self.id));
            0
        });
        if lc < self.confirmed {
            problem(
                &self.log,
                format!("{}: welcome.last_cseq {lc} below what pong confirmed ({})", self.id, self.confirmed),
            );
        }
        // Re-send: from after last_cseq, and on purpose some the server has already processed
        // (taken before `confirm` forgets them).
        let from = if self.resumes.is_multiple_of(2) { lc.saturating_sub(2).max(1) } else { self.confirmed + 1 };
        self.resumes += 1;
        if self.outbox.front().is_some_and(|(f, _)| *f > from && *f > lc + 1) {
            problem(&self.log, format!("{}: cseq {from}.. no longer kept to re-send", self.id));
        }
        let again: Vec<(u64, String)> = self.outbox.iter().filter(|(c, _)| *c >= from).cloned().collect();
        self.confirm(lc, "welcome");
        self.node_id = w["node_id"].as_str().unwrap_or_default().to_string();
        self.ws = Some(ws);
        self.conn += 1;
        self.last_frame = now;
        self.unacked = 0;
        let (mut resent, mut processed) = (0, 0);
        let mut ok = true;
        for (c, text) in again {
            if !self.write(text).await {
                ok = false;
                break;
            }
            if c <= lc { processed += 1 } else { resent += 1 }
        }
        {
            let mut log = self.log.lock().expect("seq log");
            log.nodes.push(self.node_id.clone());
            let b = log.breaks.last_mut().expect("a break");
            b.resumed_at = Some(now);
            b.url = url;
            b.to_node = self.node_id.clone();
            b.welcome_last_cseq = lc;
            b.resent = resent;
            b.resent_processed = processed;
        }
        ok
    }
}

/// A resume under way.
struct Down {
    since: Instant,
    retry_at: tokio::time::Instant,
    backoff: Duration,
    attempt: Option<JoinHandle<Attempt>>,
    /// The base URL of the attempt under way.
    url: String,
}

/// How a resume attempt went.
enum Attempt {
    /// The first frame (the resumed welcome, one hopes).
    Answered(Box<Ws>, Value),
    /// An error (`resume-failed`), and the close that followed.
    Refused { error: Value, close: Option<(u16, String)> },
    /// No connection, handshake or frame.
    Failed(String),
}

async fn attempt(url: String, t: Duration) -> Attempt {
    let mut ws = match tokio::time::timeout(t, tokio_tungstenite::connect_async(url.as_str())).await {
        Err(_) => return Attempt::Failed(format!("no handshake within {t:?}")),
        Ok(Err(e)) => return Attempt::Failed(e.to_string()),
        Ok(Ok((ws, _))) => ws,
    };
    let first = match tokio::time::timeout(t, first_text(&mut ws)).await {
        Err(_) => return Attempt::Failed(format!("no frame within {t:?}")),
        Ok(Err(e)) => return Attempt::Failed(e),
        Ok(Ok(v)) => v,
    };
    if first["type"] != "error" {
        return Attempt::Answered(Box::new(ws), first);
    }
    let close = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Close(c)) = m {
                return c.map(|c| (u16::from(c.code), c.reason.to_string()));
            }
        }
        None
    })
    .await
    .unwrap_or(None);
    Attempt::Refused { error: first, close }
}

/// The first text frame, parsed.
async fn first_text(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).map_err(|e| format!("not JSON ({e}): {t}")),
            Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("ended".into()),
        }
    }
}

async fn next_message(ws: &mut Option<Ws>) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws.as_mut() {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

enum DownEvent {
    Retry,
    Done(Attempt),
}

async fn down_event(down: &mut Option<Down>) -> DownEvent {
    let Some(d) = down.as_mut() else { return std::future::pending().await };
    match d.attempt.as_mut() {
        Some(h) => {
            let r = h.await;
            d.attempt = None;
            DownEvent::Done(r.unwrap_or_else(|e| Attempt::Failed(format!("attempt task: {e}"))))
        }
        None => {
            tokio::time::sleep_until(d.retry_at).await;
            DownEvent::Retry
        }
    }
}

/// A peer streaming in the background.
pub struct SeqStream {
    log: Arc<Mutex<SeqLog>>,
    stop: watch::Sender<bool>,
    sending: watch::Sender<bool>,
    resume_url: Arc<Mutex<String>>,
    task: JoinHandle<SeqPeer>,
}

impl SeqStream {
    /// A copy of what it saw so far.
    pub fn log(&self) -> SeqLog {
        self.log.lock().expect("seq log").clone()
    }

    /// Where the next resume attempts go (a `ws://.../v1/ws` URL; the resume query is added).
    pub fn resume_at(&self, url: &str) {
        *self.resume_url.lock().expect("resume url") = url.to_string();
    }

    /// Stops sending signals (pings, acks and resumes go on).
    pub fn stop_sending(&self) {
        let _ = self.sending.send(false);
    }

    /// Waits (polling) until `cond` holds of the log; false after `within`.
    pub async fn wait(&self, within: Duration, cond: impl Fn(&SeqLog) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond(&self.log.lock().expect("seq log")) {
                return true;
            }
            if Instant::now() >= deadline || self.task.is_finished() {
                return cond(&self.log.lock().expect("seq log"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// True once the task ended by itself (a lost session).
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the task (a resume under way is abandoned) and returns the log and the peer, its
    /// socket still open if it had one (`None` if the task failed).
    pub async fn finish(self) -> (SeqLog, Option<SeqPeer>) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        let peer = match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(peer)) => Some(peer),
            Ok(Err(e)) => {
                problem(&self.log, format!("client task failed: {e}"));
                None
            }
            Err(_) => {
                task.abort();
                problem(&self.log, "client task did not stop within 5 s".into());
                None
            }
        };
        (self.log.lock().expect("seq log").clone(), peer)
    }
}

async fn run(
    mut p: SeqPeer,
    plan: SeqPlan,
    mut stop: watch::Receiver<bool>,
    mut sending: watch::Receiver<bool>,
) -> SeqPeer {
    use tokio::time::{MissedTickBehavior, interval};
    let mut signal_tick = interval(plan.every);
    signal_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ping_tick = interval(p.opts.ping_every);
    ping_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ack_tick = interval(p.opts.ack_after);
    ack_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut down: Option<Down> = None;
    loop {
        let send_on = *sending.borrow();
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = sending.changed() => {
                if r.is_err() {
                    break;
                }
            }
            ev = down_event(&mut down) => {
                let d = down.as_mut().expect("down");
                match ev {
                    DownEvent::Retry => p.try_resume(d),
                    DownEvent::Done(outcome) => {
                        if !p.attempted(&mut down, outcome).await {
                            break;
                        }
                    }
                }
            }
            m = next_message(&mut p.ws) => {
                p.last_frame = Instant::now();
                match m {
                    Some(Ok(Message::Text(t))) => {
                        let v = p.numbered(&t);
                        p.record(v);
                        if p.unacked >= p.opts.ack_frames && !p.send_ack().await {
                            p.broke(&mut down, "ack write failed".into());
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        problem(&p.log, format!("{}: the server closed the socket: {c:?}", p.id));
                        p.broke(&mut down, format!("server close {c:?}"));
                    }
                    Some(Ok(Message::Binary(b))) => problem(&p.log, format!("{}: a binary frame: {b:?}", p.id)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => p.broke(&mut down, format!("socket error: {e}")),
                    None => p.broke(&mut down, "socket ended".into()),
                }
            }
            _ = signal_tick.tick(), if send_on => {
                let msg = plan.message(n);
                n += 1;
                p.log.lock().expect("seq log").sent = n;
                if !p.send_numbered(msg).await {
                    p.broke(&mut down, "signal write failed".into());
                }
            }
            _ = ping_tick.tick() => {
                if p.ws.is_some() {
                    let silent = p.last_frame.elapsed();
                    if silent >= p.opts.dead_after {
                        p.broke(&mut down, format!("silent for {} ms", silent.as_millis()));
                    } else if !p.send_numbered(json!({"type": "ping"})).await {
                        p.broke(&mut down, "ping write failed".into());
                    }
                }
            }
            _ = ack_tick.tick() => {
                if p.ws.is_some() && p.last_seq > p.acked && !p.send_ack().await {
                    p.broke(&mut down, "ack write failed".into());
                }
            }
        }
    }
    if let Some(h) = down.and_then(|d| d.attempt) {
        h.abort();
    }
    p
}
