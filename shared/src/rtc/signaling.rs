//! A v1 signaling session for a WebRTC peer: one WebSocket, read and written concurrently, that
//! comes back by itself after a draining node's `reconnect` and after any break of its socket.
//!
//! The [`Client`] is owned by a task; callers send through a channel (so ICE callbacks can
//! send from anywhere) and receive v1 events from another. The task ends when every handle is
//! dropped, when the server ends the session, or when a resume fails.
//!
//! **Numbers** (issue 13, `docs/protocol.md`): with a node that offers resuming (its `welcome`
//! carries a `resume_token`), the task keeps the `seq` of every server frame (a repeat is
//! dropped), acknowledges them (`ack`, every 32 frames or 1 s), numbers every message it sends
//! but `ack` with `cseq` and keeps it until the server confirms it (`pong.last_cseq`, a resumed
//! `welcome.last_cseq`). The bookkeeping is [`super::ledger`].
//!
//! **Breaks**: a read or write error, the end of the stream or a server close that leaves the
//! session held (no close frame, 1006, 1011, 1012, 4000), or no frame at all for two
//! heartbeats (`ping` goes out every heartbeat, so a live socket always has a `pong` to read)
//! count as a broken socket. The task drops it without a close frame (a close would end the
//! session), and resumes: `?resume=<token>&last_seq=<n>` on the URLs it was given, in turn,
//! first after 0–100 ms, then 100 ms doubling to 1.6 s, until the resumed `welcome` or until
//! `welcome.resume_within_ms` has passed. Then it re-sends what the server had not processed,
//! in order, and the frames the server kept for it follow.
//!
//! **Drain**: on `reconnect` the task stops writing (what the [`Outbox`] gets meanwhile waits in
//! its channel), sends its close and keeps reading until the server's close (or 3 s), passing on
//! what arrives; then it resumes the same way with the `reconnect`'s token and `within_ms`.
//!
//! Neither `reconnect`, nor a resumed `welcome`, nor the `pong`s of the task's own pings (those
//! without an `id`) reach [`Signaling::events`]; each lost socket and each resume shows in
//! [`Signaling::link`] instead. A resume that fails (`resume-failed`, no node within the time, a fresh session
//! instead of the old one) ends the task with [`ClientError::ResumeFailed`], and a break with a
//! node that does not offer resuming with the error itself: the caller connects fresh and joins
//! again, as after any other lost connection.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::ledger::{Ledger, Seen, seq_of};
use crate::client::{Client, ClientError, with_resume, with_resume_from};
use crate::protocol::v1::{self, Event};
use crate::protocol::{ErrorCode, PeerId, close};

/// How long the task reads after its close, waiting for the server's (1012), on a `reconnect`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound of the random delay before the first resume attempt (so a wave of clients told
/// to reconnect together does not arrive in one instant).
const RESUME_JITTER_MS: u64 = 100;
/// Delay after the first failed resume attempt; it doubles up to [`RESUME_BACKOFF_MAX`].
const RESUME_BACKOFF: Duration = Duration::from_millis(100);
const RESUME_BACKOFF_MAX: Duration = Duration::from_millis(1600);
/// The least time one resume attempt (connect and `welcome`) gets, even near the deadline.
const RESUME_ATTEMPT_MIN: Duration = Duration::from_secs(1);
/// A socket with no frame for this many heartbeats is dead.
const SILENT_HEARTBEATS: u32 = 2;
/// …but never sooner than this.
const SILENCE_MIN: Duration = Duration::from_secs(1);
/// The heartbeat when a `welcome` names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// Sends to the server; cheap to clone into callbacks.
#[derive(Clone)]
pub struct Outbox(mpsc::UnboundedSender<String>);

impl Outbox {
    /// Sends `data` to `to` in `room` as a v1 `signal`.
    pub fn signal(&self, room: &str, to: PeerId, data: Value) {
        let msg = json!({"type": "signal", "room": room, "to": to.to_string(), "data": data});
        // The task only stops with the session: then there is no one to tell.
        let _ = self.0.send(msg.to_string());
    }

    /// Sends a v1 message (a JSON object; the task numbers it).
    pub fn send(&self, msg: &Value) {
        let _ = self.0.send(msg.to_string());
    }
}

/// Why a session resumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Its node drained (`reconnect`).
    Drain,
    /// Its socket broke; what the task saw.
    Break(String),
}

/// One resume of a [`Signaling`] session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Resumes of the session so far, this one included.
    pub count: u32,
    /// Of those, the ones after a break (not a drain).
    pub after_break: u32,
    pub cause: Cause,
    /// From the `reconnect`, or from noticing the break, to the resumed `welcome`.
    pub gap: Duration,
    /// From the last frame read on the old socket to the resumed `welcome`: how long the
    /// session was away (for a silent socket, the silence included).
    pub away: Duration,
    /// The connection attempts it took (1: the first one worked).
    pub attempts: u32,
    pub from_node: String,
    /// The node the session is on now.
    pub node_id: String,
    /// Our messages the server had not processed, sent again.
    pub resent: usize,
}

/// What happens to a [`Signaling`] session's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The socket is lost (a drain, a break): the task is resuming the session.
    Lost(Cause),
    /// The session is back on a new socket.
    Resumed(Resume),
}

/// One signaling connection: the peer id the server gave it, a way to send, and its events.
pub struct Signaling {
    /// Kept across resumes.
    pub peer_id: PeerId,
    /// The node of the first connection; after a resume, see [`Signaling::link`].
    pub node_id: String,
    pub outbox: Outbox,
    pub events: mpsc::UnboundedReceiver<Result<Event, ClientError>>,
    /// A [`Link::Lost`] when the socket is lost and a [`Link::Resumed`] when the session is
    /// back. Reading it is optional; its order relative to `events` is not kept (a resume
    /// happened before the first event that follows it on the new socket).
    pub link: mpsc::UnboundedReceiver<Link>,
}

impl Signaling {
    /// Connects to a v1 endpoint (`ws://host:port/v1/ws`) and waits for `welcome`. `timeout`
    /// also bounds each resume attempt later on (see the module docs).
    pub async fn connect(url: &str, timeout: Duration) -> Result<Signaling, ClientError> {
        Self::connect_any(&[url.to_owned()], timeout).await
    }

    /// Connects to the first of `urls` that takes the connection; resumes try them all, that
    /// one first.
    pub async fn connect_any(urls: &[String], timeout: Duration) -> Result<Signaling, ClientError> {
        let mut last = ClientError::BadRequest { url: String::new(), reason: "no URL to connect to".into() };
        for (at, url) in urls.iter().enumerate() {
            let (client, w) = match open(url, timeout).await {
                Ok(open) => open,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
            let (ev_tx, events) = mpsc::unbounded_channel();
            let (link_tx, link) = mpsc::unbounded_channel();
            let (peer_id, node_id) = (w.peer_id, w.node_id.clone());
            let task = Task {
                urls: urls.to_vec(),
                at,
                peer_id,
                timeout,
                out_rx,
                ev_tx,
                link_tx,
                resumable: w.token.is_some(),
                ledger: Ledger::new(),
                resend: false,
                last_frame: Instant::now(),
                welcome: w,
                count: 0,
                after_break: 0,
            };
            tokio::spawn(task.run(client));
            return Ok(Signaling { peer_id, node_id, outbox: Outbox(out_tx), events, link });
        }
        Err(last)
    }

    /// Joins `room` and returns the peers already in it.
    pub async fn join(&mut self, room: &str, timeout: Duration) -> Result<Vec<PeerId>, ClientError> {
        self.outbox.send(&json!({"type": "join", "room": room}));
        loop {
            match self.next(timeout).await? {
                Event::Joined { peers, .. } => return Ok(peers.into_iter().map(|p| p.peer_id).collect()),
                Event::Error { code, message, .. } => {
                    return Err(ClientError::Ws(format!("join refused: {}: {message}", code.as_str())));
                }
                _ => {}
            }
        }
    }

    /// The next event, waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => Err(ClientError::Closed { code: None, reason: "signaling task ended".into() }),
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }
}

/// What a `welcome` says, as far as the task is concerned.
#[derive(Clone, Debug)]
struct Welcome {
    peer_id: PeerId,
    node_id: String,
    resumed: bool,
    heartbeat: Duration,
    /// Resumes the session after a break (absent: the node does not offer it).
    token: Option<String>,
    /// How long the server holds the session after a break.
    within: Duration,
    last_cseq: Option<u64>,
}

impl Welcome {
    fn read(ev: Event) -> Result<Welcome, Box<Event>> {
        match ev {
            Event::Welcome {
                peer_id,
                node_id,
                resumed,
                heartbeat_ms,
                resume_token,
                resume_within_ms,
                last_cseq,
                ..
            } => Ok(Welcome {
                peer_id,
                node_id,
                resumed,
                heartbeat: match heartbeat_ms {
                    0 => DEFAULT_HEARTBEAT,
                    ms => Duration::from_millis(ms),
                },
                token: resume_token,
                within: Duration::from_millis(resume_within_ms),
                last_cseq,
            }),
            other => Err(Box::new(other)),
        }
    }
}

/// Connects and reads the `welcome`.
async fn open(url: &str, timeout: Duration) -> Result<(Client, Welcome), ClientError> {
    let mut client = Client::connect_with(url, Some(v1::SUBPROTOCOL)).await?;
    let w = Welcome::read(client.recv_event(timeout).await?)
        .map_err(|other| ClientError::Ws(format!("expected welcome, got {other:?}")))?;
    Ok((client, w))
}

/// The task behind a [`Signaling`].
struct Task {
    /// The URLs `connect` was given: every resume adds its own token to these.
    urls: Vec<String>,
    /// The one the session is on (resumes try it first).
    at: usize,
    peer_id: PeerId,
    timeout: Duration,
    out_rx: mpsc::UnboundedReceiver<String>,
    ev_tx: mpsc::UnboundedSender<Result<Event, ClientError>>,
    link_tx: mpsc::UnboundedSender<Link>,
    /// The node numbers its frames and takes ours (its first `welcome` had a resume token).
    resumable: bool,
    ledger: Ledger,
    /// The socket is a resumed one: send what the server had not processed, first.
    resend: bool,
    /// When the last frame arrived.
    last_frame: Instant,
    /// The last `welcome`: its heartbeat, token and node.
    welcome: Welcome,
    count: u32,
    after_break: u32,
}

/// How a socket's service ended.
enum End {
    /// The session is over (the caller was told, or no one listens any more).
    Stop,
    /// A draining node's `reconnect`.
    Drain { token: String, within: Duration },
    /// The socket broke.
    Break(ClientError),
}

/// Why a resume attempt did not work.
enum Attempt {
    /// The connection failed (refused, HTTP 503, closed before `welcome`…): try again while
    /// the time lasts.
    Retry(ClientError),
    /// The server answered: the session is gone (or a different one came back).
    Final(ClientError),
}

/// Whether a read that ended with `e` leaves a session the server holds for a resume: the
/// stream ended without a close frame (or with one that has no code, or says the server
/// failed), the server's idle timeout (4000), a 1012 without `reconnect` (the session is
/// parked). Any other close ends the session (1000, 1001 from a lone node going down, 4001,
/// 4401…): a resume would only be refused.
fn broken(e: &ClientError) -> bool {
    match e {
        ClientError::Closed { code: None, .. } | ClientError::Ws(_) | ClientError::Timeout(_) => true,
        ClientError::Closed { code: Some(code), .. } => {
            matches!(*code, 1005 | 1006 | 1011 | close::SERVICE_RESTART | close::IDLE_TIMEOUT)
        }
        _ => false,
    }
}

impl Task {
    async fn run(mut self, mut client: Client) {
        loop {
            let since;
            let (cause, token, deadline) = match self.serve(&mut client).await {
                End::Stop => return,
                End::Drain { token, within } => {
                    since = Instant::now();
                    let _ = self.link_tx.send(Link::Lost(Cause::Drain));
                    if !self.drain(&mut client).await {
                        return;
                    }
                    (Cause::Drain, token, since + within)
                }
                End::Break(e) => {
                    since = Instant::now();
                    match self.welcome.token.clone() {
                        Some(token) if !self.welcome.within.is_zero() => {
                            let cause = Cause::Break(e.to_string());
                            let _ = self.link_tx.send(Link::Lost(cause.clone()));
                            (cause, token, since + self.welcome.within)
                        }
                        _ => {
                            let _ = self.ev_tx.send(Err(e));
                            return;
                        }
                    }
                }
            };
            // No close frame: after a break the server must hold the session.
            drop(client);
            match self.resume(&token, deadline).await {
                Ok((resumed, w, attempts)) => {
                    client = resumed;
                    self.resumed(cause, w, attempts, since);
                }
                Err(e) => {
                    let _ = self.ev_tx.send(Err(e));
                    return;
                }
            }
        }
    }

    /// Takes the resumed `welcome` in and tells the caller.
    fn resumed(&mut self, cause: Cause, w: Welcome, attempts: u32, since: Instant) {
        let now = Instant::now();
        self.ledger.confirm(w.last_cseq.unwrap_or(0));
        self.ledger.resumed();
        self.resend = true;
        self.count += 1;
        if matches!(cause, Cause::Break(_)) {
            self.after_break += 1;
        }
        let from_node = std::mem::replace(&mut self.welcome, w).node_id;
        let _ = self.link_tx.send(Link::Resumed(Resume {
            count: self.count,
            after_break: self.after_break,
            cause,
            gap: now - since,
            away: now - self.last_frame,
            attempts,
            from_node,
            node_id: self.welcome.node_id.clone(),
            resent: self.ledger.unconfirmed().count(),
        }));
        self.last_frame = now;
    }

    /// No frame for this long: the socket is dead.
    fn silence(&self) -> Duration {
        (self.welcome.heartbeat * SILENT_HEARTBEATS).max(SILENCE_MIN)
    }

    /// Sends `texts`, within the time a silent socket is given (a write into a stalled socket
    /// with full buffers would wait for ever).
    async fn write(&self, client: &mut Client, texts: Vec<String>) -> Result<(), ClientError> {
        let within = self.silence();
        match tokio::time::timeout(within, client.send_many(texts)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Ws(format!("a write did not go out within {within:?}"))),
        }
    }

    /// A message of the caller's, numbered when the node takes numbers.
    fn outgoing(&mut self, text: String) -> String {
        if self.resumable { self.ledger.number(&text) } else { text }
    }

    /// Serves one socket until it ends.
    async fn serve(&mut self, client: &mut Client) -> End {
        if std::mem::take(&mut self.resend) {
            let again: Vec<String> = self.ledger.unconfirmed().map(str::to_owned).collect();
            if !again.is_empty()
                && let Err(e) = self.write(client, again).await
            {
                return End::Break(e);
            }
        }
        let heartbeat = self.welcome.heartbeat;
        let mut beat = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let ack_at = self.ledger.ack_at().filter(|_| self.resumable);
            let silent_at = self.last_frame + self.silence();
            tokio::select! {
                out = self.out_rx.recv() => match out {
                    Some(text) => {
                        let text = self.outgoing(text);
                        if let Err(e) = self.write(client, vec![text]).await {
                            return End::Break(e);
                        }
                    }
                    None => {
                        let _ = client.send_close().await;
                        return End::Stop;
                    }
                },
                frame = client.recv_text_until(silent_at) => match frame {
                    Ok(text) => match self.take(&text) {
                        Some(Event::Reconnect { resume_token, within_ms }) => {
                            return End::Drain { token: resume_token, within: Duration::from_millis(within_ms) };
                        }
                        Some(ev) => {
                            let sent = self.ev_tx.send(Ok(ev));
                            if sent.is_err() {
                                self.leave(client).await;
                                return End::Stop;
                            }
                        }
                        None => {}
                    },
                    Err(ClientError::Timeout(_)) => {
                        let silence = self.silence();
                        return End::Break(ClientError::Ws(format!("no frame for {silence:?}")));
                    }
                    Err(e) if broken(&e) => return End::Break(e),
                    Err(e) => {
                        let _ = self.ev_tx.send(Err(e));
                        return End::Stop;
                    }
                },
                // No one reads the events any more: the session is over.
                () = self.ev_tx.closed() => {
                    self.leave(client).await;
                    return End::Stop;
                }
                _ = beat.tick() => {
                    let ping = self.outgoing(json!({"type": "ping"}).to_string());
                    if let Err(e) = self.write(client, vec![ping]).await {
                        return End::Break(e);
                    }
                }
                () = tokio::time::sleep_until(ack_at.unwrap_or(silent_at)), if ack_at.is_some() => {
                    if let Some(ack) = self.ledger.take_ack(Instant::now())
                        && let Err(e) = self.write(client, vec![ack]).await
                    {
                        return End::Break(e);
                    }
                }
            }
        }
    }

    /// One server frame: notes its seq and returns the event to act on, if any (`None`: a
    /// repeat, our own ping's `pong`, or a frame that does not parse — any room member can
    /// relay odd JSON, and it never ends the session).
    fn take(&mut self, text: &str) -> Option<Event> {
        let now = Instant::now();
        self.last_frame = now;
        if self.ledger.receive(seq_of(text), now) == Seen::Repeat {
            return None;
        }
        match serde_json::from_str::<Event>(text).ok()? {
            Event::Pong { id, last_cseq } => {
                if let Some(c) = last_cseq {
                    self.ledger.confirm(c);
                }
                id.is_some().then_some(Event::Pong { id, last_cseq })
            }
            ev => Some(ev),
        }
    }

    /// No one reads the events any more: sends what the caller still sent (its `leave`,
    /// say) and closes.
    async fn leave(&mut self, client: &mut Client) {
        let mut last = Vec::new();
        while let Ok(text) = self.out_rx.try_recv() {
            last.push(self.outgoing(text));
        }
        if self.write(client, last).await.is_ok() {
            let _ = client.send_close().await;
        }
    }

    /// After `reconnect`: sends our close and reads until the server's (or [`DRAIN_TIMEOUT`]),
    /// passing on the events that arrive meanwhile: they are real. False when no one listens
    /// any more.
    async fn drain(&mut self, client: &mut Client) -> bool {
        if client.send_close().await.is_err() {
            return true; // the socket is gone already: nothing more will arrive on it
        }
        let until = Instant::now() + DRAIN_TIMEOUT;
        loop {
            match client.recv_text_until(until).await {
                Ok(text) => match self.take(&text) {
                    // A second one changes nothing: the first token is the one the server parks.
                    Some(Event::Reconnect { .. }) | None => {}
                    Some(ev) => {
                        if self.ev_tx.send(Ok(ev)).is_err() {
                            return false;
                        }
                    }
                },
                // The server's close (1012), the end of the stream or the timeout.
                Err(_) => return true,
            }
        }
    }

    /// `url` with the resume query: the token, and our last seq when the node numbers frames.
    fn resume_url(&self, url: &str, token: &str) -> String {
        if self.resumable { with_resume_from(url, token, self.ledger.last_seq()) } else { with_resume(url, token) }
    }

    /// Connects with `resume=<token>`, to each URL in turn, until the session is back (the new
    /// connection, its `welcome` and the attempts it took) or `deadline` has passed.
    async fn resume(&mut self, token: &str, deadline: Instant) -> Result<(Client, Welcome, u32), ClientError> {
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % (RESUME_JITTER_MS + 1))).await;
        let mut backoff = RESUME_BACKOFF;
        let mut attempts = 0;
        loop {
            let at = (self.at + attempts as usize) % self.urls.len().max(1);
            let url = self.resume_url(self.urls.get(at).map_or("", String::as_str), token);
            attempts += 1;
            let budget = self.timeout.min(deadline.saturating_duration_since(Instant::now()).max(RESUME_ATTEMPT_MIN));
            let last = match tokio::time::timeout(budget, self.attempt(&url)).await {
                Ok(Ok((client, w))) => {
                    self.at = at;
                    return Ok((client, w, attempts));
                }
                Ok(Err(Attempt::Final(e))) => return Err(e),
                Ok(Err(Attempt::Retry(e))) => e,
                Err(_) => ClientError::Timeout(budget),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::ResumeFailed(format!(
                    "no node took the resume in time ({attempts} attempts, the last: {last})"
                )));
            }
            tokio::time::sleep_until((now + backoff).min(deadline)).await;
            backoff = (backoff * 2).min(RESUME_BACKOFF_MAX);
        }
    }

    /// One resume attempt: connect, then expect `welcome` with `resumed` and our peer id.
    async fn attempt(&self, url: &str) -> Result<(Client, Welcome), Attempt> {
        let mut client = Client::connect_with(url, Some(v1::SUBPROTOCOL)).await.map_err(Attempt::Retry)?;
        match client.recv_event(self.timeout).await.map(Welcome::read) {
            Ok(Ok(w)) if w.resumed && w.peer_id == self.peer_id => Ok((client, w)),
            Ok(Ok(w)) => {
                // Not ours: leave that session at once rather than let it idle out.
                let _ = client.close().await;
                Err(Attempt::Final(ClientError::ResumeFailed(format!(
                    "welcome with peer id {} (resumed: {}) instead of {}",
                    w.peer_id, w.resumed, self.peer_id
                ))))
            }
            Ok(Err(other)) => Err(refused(*other)),
            Err(ClientError::Closed { code: Some(close::RESUME_FAILED), reason }) => {
                Err(Attempt::Final(ClientError::ResumeFailed(format!("closed {}: {reason}", close::RESUME_FAILED))))
            }
            Err(e) => Err(Attempt::Retry(e)),
        }
    }
}

/// What a first frame other than `welcome` means to a resume attempt.
fn refused(first: Event) -> Attempt {
    match first {
        Event::Error { code: ErrorCode::ResumeFailed, message, .. } => {
            Attempt::Final(ClientError::ResumeFailed(format!("resume-failed: {message}")))
        }
        // Another refusal right after the upgrade (`too-many-connections`, `shutting-down`):
        // like a refused connection, another node may take it.
        Event::Error { code, message, .. } => Attempt::Retry(ClientError::Ws(format!("{}: {message}", code.as_str()))),
        other => Attempt::Final(ClientError::ResumeFailed(format!("expected welcome, got {other:?}"))),
    }
}

#[cfg(test)]
#[path = "signaling_tests.rs"]
mod tests;
