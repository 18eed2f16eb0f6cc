//! A v1 signaling session for a WebRTC peer: one WebSocket, read and written concurrently.
//!
//! The [`Client`] is owned by a task; callers send through a channel (so ICE callbacks can
//! send from anywhere) and receive v1 events from another. The task ends when the socket closes
//! or every handle is dropped.
//!
//! A draining node's `reconnect` is handled inside the task, unseen by the caller
//! (docs/protocol.md, the client rule of drain and resume): the task stops writing (what the
//! [`Outbox`] gets meanwhile waits in its channel), sends its close and keeps reading until the
//! server's close (or 3 s), passing on what arrives. It then connects again to
//! the same URL plus `resume=<token>`, retrying with a short backoff while the server's
//! `within_ms` lasts, and once a `welcome` with `resumed: true` and the same peer id arrives it
//! goes on: the events of the gap follow, then the waiting messages go out in order. Neither
//! the `reconnect` nor the resumed `welcome` reaches [`Signaling::events`]; each resume shows
//! in [`Signaling::resumed`] instead. A resume that fails (`resume-failed`, no node within
//! `within_ms`, a fresh session instead of the old one) ends the task with
//! [`ClientError::ResumeFailed`]: the caller connects fresh and joins again, as after any
//! other lost connection.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::client::{Client, ClientError, with_resume};
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

/// Sends to the server; cheap to clone into callbacks.
#[derive(Clone)]
pub struct Outbox(mpsc::UnboundedSender<String>);

impl Outbox {
    /// Sends `data` to `to` in `room` as a v1 `signal`.
    pub fn signal(&self, room: &str, to: PeerId, data: Value) {
        let msg = json!({"type": "signal", "room": room, "to": to.to_string(), "data": data});
        // The task only stops with the socket: then there is no one to tell.
        let _ = self.0.send(msg.to_string());
    }

    pub fn send(&self, msg: &Value) {
        let _ = self.0.send(msg.to_string());
    }
}

/// The resumes of one [`Signaling`] so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resumes {
    /// How many times the session was resumed.
    pub count: u32,
    /// The last resume's gap: from its `reconnect` to the resumed `welcome`.
    pub gap: Duration,
    /// The connection attempts the last resume took (1: the first one worked).
    pub attempts: u32,
    /// The node the session is on since the last resume.
    pub node_id: String,
}

/// One signaling connection: the peer id the server gave it, a way to send, and its events.
pub struct Signaling {
    /// Kept across resumes.
    pub peer_id: PeerId,
    /// The node of the first connection; after a resume, see [`Signaling::resumed`].
    pub node_id: String,
    pub outbox: Outbox,
    pub events: mpsc::UnboundedReceiver<Result<Event, ClientError>>,
    /// Changes after each resume. Reading it is optional; its order relative to `events` is
    /// not kept (the resume happened before the first event that follows it on the new node).
    pub resumed: watch::Receiver<Resumes>,
}

impl Signaling {
    /// Connects to a v1 endpoint (`ws://host:port/v1/ws`) and waits for `welcome`. `timeout`
    /// also bounds each resume attempt later on (see the module docs).
    pub async fn connect(url: &str, timeout: Duration) -> Result<Signaling, ClientError> {
        let mut client = Client::connect_with(url, Some(v1::SUBPROTOCOL)).await?;
        let (peer_id, node_id) = match client.recv_event(timeout).await? {
            Event::Welcome { peer_id, node_id, .. } => (peer_id, node_id),
            other => return Err(ClientError::Ws(format!("expected welcome, got {other:?}"))),
        };
        let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (resumed_tx, resumed) = watch::channel(Resumes { node_id: node_id.clone(), ..Resumes::default() });
        let task = Task { url: url.to_owned(), peer_id, timeout, out_rx, ev_tx, resumed_tx };
        tokio::spawn(task.run(client));
        Ok(Signaling { peer_id, node_id, outbox: Outbox(out_tx), events, resumed })
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

/// The task behind a [`Signaling`].
struct Task {
    /// The URL `connect` was given: every resume adds its own token to this one.
    url: String,
    peer_id: PeerId,
    timeout: Duration,
    out_rx: mpsc::UnboundedReceiver<String>,
    ev_tx: mpsc::UnboundedSender<Result<Event, ClientError>>,
    resumed_tx: watch::Sender<Resumes>,
}

/// Why a resume attempt did not work.
enum Attempt {
    /// The connection failed (refused, HTTP 503, closed before `welcome`…): try again while
    /// `within_ms` lasts.
    Retry(ClientError),
    /// The server answered: the session is gone (or a different one came back).
    Final(ClientError),
}

impl Task {
    async fn run(mut self, mut client: Client) {
        loop {
            tokio::select! {
                out = self.out_rx.recv() => match out {
                    Some(text) => {
                        if let Err(e) = client.send_text(text).await {
                            let _ = self.ev_tx.send(Err(e));
                            return;
                        }
                    }
                    None => {
                        let _ = client.close().await;
                        return;
                    }
                },
                // A day: the read waits for the next frame; pings are answered inside.
                ev = client.recv_event(Duration::from_secs(86_400)) => match ev {
                    Ok(Event::Reconnect { resume_token, within_ms }) => {
                        // The outbox is not read from here until the resume is done: what is
                        // sent meanwhile waits in its channel, in order.
                        let since = Instant::now();
                        let deadline = since + Duration::from_millis(within_ms);
                        if !self.drain(&mut client).await {
                            return;
                        }
                        drop(client);
                        match self.resume(&resume_token, deadline).await {
                            Ok((resumed, node_id, attempts)) => {
                                client = resumed;
                                let gap = since.elapsed();
                                self.resumed_tx.send_modify(|r| {
                                    r.count += 1;
                                    r.gap = gap;
                                    r.attempts = attempts;
                                    r.node_id = node_id;
                                });
                            }
                            Err(e) => {
                                let _ = self.ev_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    ev => {
                        let stop = ev.is_err();
                        if self.ev_tx.send(ev).is_err() || stop {
                            return;
                        }
                    }
                },
            }
        }
    }

    /// After `reconnect`: sends our close and reads until the server's (or [`DRAIN_TIMEOUT`]),
    /// passing on the events that arrive meanwhile: they are real. A frame that does not parse
    /// is skipped (the socket is going anyway). False when no one listens any more.
    async fn drain(&self, client: &mut Client) -> bool {
        if client.send_close().await.is_err() {
            return true; // the socket is gone already: nothing more will arrive on it
        }
        let until = Instant::now() + DRAIN_TIMEOUT;
        loop {
            match client.recv_event(until.saturating_duration_since(Instant::now())).await {
                // A second one changes nothing: the first token is the one the server parks.
                Ok(Event::Reconnect { .. }) | Err(ClientError::Json { .. }) => {}
                Ok(ev) => {
                    if self.ev_tx.send(Ok(ev)).is_err() {
                        return false;
                    }
                }
                // The server's close (1012), the end of the stream or the timeout.
                Err(_) => return true,
            }
        }
    }

    /// Connects to the same URL with `resume=<token>` until the session is back (the new
    /// connection, its node id and the attempts it took) or `deadline` has passed.
    async fn resume(&self, token: &str, deadline: Instant) -> Result<(Client, String, u32), ClientError> {
        let url = with_resume(&self.url, token);
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % (RESUME_JITTER_MS + 1))).await;
        let mut backoff = RESUME_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let budget = self.timeout.min(deadline.saturating_duration_since(Instant::now()).max(RESUME_ATTEMPT_MIN));
            let last = match tokio::time::timeout(budget, self.attempt(&url)).await {
                Ok(Ok((client, node_id))) => return Ok((client, node_id, attempts)),
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
    async fn attempt(&self, url: &str) -> Result<(Client, String), Attempt> {
        let mut client = Client::connect_with(url, Some(v1::SUBPROTOCOL)).await.map_err(Attempt::Retry)?;
        match client.recv_event(self.timeout).await {
            Ok(Event::Welcome { peer_id, node_id, resumed: true, .. }) if peer_id == self.peer_id => {
                Ok((client, node_id))
            }
            Ok(Event::Welcome { peer_id, resumed, .. }) => {
                // Not ours: leave that session at once rather than let it idle out.
                let _ = client.close().await;
                Err(Attempt::Final(ClientError::ResumeFailed(format!(
                    "welcome with peer id {peer_id} (resumed: {resumed}) instead of {}",
                    self.peer_id
                ))))
            }
            Ok(Event::Error { code: ErrorCode::ResumeFailed, message, .. }) => {
                Err(Attempt::Final(ClientError::ResumeFailed(format!("resume-failed: {message}"))))
            }
            Err(ClientError::Closed { code: Some(close::RESUME_FAILED), reason }) => {
                Err(Attempt::Final(ClientError::ResumeFailed(format!("closed {}: {reason}", close::RESUME_FAILED))))
            }
            // Another refusal right after the upgrade (`too-many-connections`, `shutting-down`):
            // like a refused connection, another node may take it.
            Ok(Event::Error { code, message, .. }) => {
                Err(Attempt::Retry(ClientError::Ws(format!("{}: {message}", code.as_str()))))
            }
            Ok(other) => Err(Attempt::Final(ClientError::ResumeFailed(format!("expected welcome, got {other:?}")))),
            Err(e) => Err(Attempt::Retry(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The task against a scripted node on a local socket: what a client sees of a drain.

    use std::time::Duration;

    use actix_http::ws::{self, CloseCode, CloseReason, Codec, Frame, Message};
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::codec::Framed;

    use super::Signaling;
    use crate::client::ClientError;
    use crate::protocol::v1::Event;
    use crate::protocol::{PeerId, close};

    const STEP: Duration = Duration::from_secs(5);
    const ME: PeerId = PeerId(7);
    const OTHER: PeerId = PeerId(9);

    type Ws = Framed<TcpStream, Codec>;

    /// Accepts one connection: its request path, and the socket after a 101 (or `None` after
    /// answering `status` instead, like a draining node's 503).
    async fn accept(listener: &TcpListener, status: Option<&str>) -> (String, Option<Ws>) {
        let (mut io, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(io.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        let path = head.split(' ').nth(1).unwrap().to_owned();
        if let Some(status) = status {
            io.write_all(format!("HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
                .unwrap();
            return (path, None);
        }
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a Sec-WebSocket-Key")
            .trim()
            .to_owned();
        let accept = String::from_utf8(ws::hash_key(key.as_bytes()).to_vec()).unwrap();
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: switchboard.v1\r\n\r\n"
        );
        io.write_all(reply.as_bytes()).await.unwrap();
        (path, Some(Framed::new(io, Codec::new())))
    }

    async fn send(ws: &mut Ws, v: Value) {
        ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    fn welcome(peer: PeerId, node: &str, resumed: bool) -> Value {
        json!({
            "type": "welcome", "protocol": 1, "peer_id": peer.to_string(), "node_id": node,
            "heartbeat_ms": 15000, "resumed": resumed,
            "limits": {
                "max_message_bytes": 65536, "max_rooms": 8, "max_peers_per_room": 16,
                "messages_per_sec": 100, "candidates_per_sec": 100, "descriptions_per_min": 100,
                "max_candidates_per_negotiation": 100, "max_meta_bytes": 1024,
            },
        })
    }

    fn signal(n: u32) -> Value {
        json!({"type": "signal", "room": "r", "from": OTHER.to_string(), "data": {"n": n}})
    }

    /// The next text frame, or `Close` as `"<close>"`.
    async fn read(ws: &mut Ws) -> String {
        loop {
            match tokio::time::timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap() {
                Frame::Text(b) => return String::from_utf8(b.to_vec()).unwrap(),
                Frame::Close(_) => return "<close>".into(),
                _ => {}
            }
        }
    }

    async fn connected(listener: &TcpListener, url: &str) -> (Signaling, Ws) {
        let (sig, (_, ws)) = tokio::join!(Signaling::connect(url, STEP), async {
            let (path, ws) = accept(listener, None).await;
            let mut ws = ws.unwrap();
            send(&mut ws, welcome(ME, "n0", false)).await;
            (path, ws)
        });
        (sig.unwrap(), ws)
    }

    /// `reconnect` handled inside: frames before the server's close pass, messages sent in the
    /// gap wait, a 503 is retried, and the caller sees neither `reconnect` nor `welcome`.
    #[tokio::test]
    async fn resumes_invisibly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/ws?access_token=h.p.s", listener.local_addr().unwrap());
        let (mut sig, mut n0) = connected(&listener, &url).await;

        sig.outbox.send(&json!({"m": "before"}));
        assert_eq!(read(&mut n0).await, r#"{"m":"before"}"#);
        send(&mut n0, json!({"type": "reconnect", "resume_token": "t/1+", "within_ms": 5000})).await;
        // The client closes first and sends nothing else on this socket.
        assert_eq!(read(&mut n0).await, "<close>");
        sig.outbox.send(&json!({"m": "during"}));
        // Real frames until the server's close.
        send(&mut n0, signal(1)).await;
        n0.send(Message::Close(Some(CloseReason { code: CloseCode::Restart, description: None }))).await.unwrap();
        drop(n0);

        // A draining node refuses the first attempt; the next one resumes.
        let (path, _) = accept(&listener, Some("503 Service Unavailable")).await;
        assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=t%2F1%2B");
        let (path, n1) = accept(&listener, None).await;
        assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=t%2F1%2B");
        let mut n1 = n1.unwrap();
        send(&mut n1, welcome(ME, "n1", true)).await;
        send(&mut n1, signal(2)).await;
        // What waited goes out after the welcome, in order.
        assert_eq!(read(&mut n1).await, r#"{"m":"during"}"#);

        for n in [1, 2] {
            match sig.next(STEP).await.unwrap() {
                Event::Signal { data, .. } => assert_eq!(data, json!({"n": n})),
                other => panic!("expected signal {n}, got {other:?}"),
            }
        }
        sig.resumed.changed().await.unwrap();
        let r = sig.resumed.borrow().clone();
        assert_eq!((r.count, r.attempts, r.node_id.as_str()), (1, 2, "n1"));
        assert!(r.gap < Duration::from_secs(5), "{:?}", r.gap);

        // A second drain resumes from the URL the caller gave, not the first resume's.
        send(&mut n1, json!({"type": "reconnect", "resume_token": "t2", "within_ms": 5000})).await;
        assert_eq!(read(&mut n1).await, "<close>");
        drop(n1); // no close from the server: the end of the stream does as well
        let (path, n2) = accept(&listener, None).await;
        assert_eq!(path, "/v1/ws?access_token=h.p.s&resume=t2");
        send(&mut n2.unwrap(), welcome(ME, "n2", true)).await;
        sig.resumed.changed().await.unwrap();
        assert_eq!(sig.resumed.borrow().count, 2);
    }

    /// `resume-failed` (and its 4410) ends the task with `ResumeFailed`: the caller starts over.
    #[tokio::test]
    async fn resume_failed_ends_the_session() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
        let (mut sig, mut n0) = connected(&listener, &url).await;
        send(&mut n0, json!({"type": "reconnect", "resume_token": "t", "within_ms": 5000})).await;
        assert_eq!(read(&mut n0).await, "<close>");
        n0.send(Message::Close(Some(CloseReason { code: CloseCode::Restart, description: None }))).await.unwrap();

        let (path, n1) = accept(&listener, None).await;
        assert_eq!(path, "/v1/ws?resume=t");
        let mut n1 = n1.unwrap();
        send(&mut n1, json!({"type": "error", "code": "resume-failed", "message": "unknown token"})).await;
        let code = CloseCode::Other(close::RESUME_FAILED);
        n1.send(Message::Close(Some(CloseReason { code, description: Some("resume-failed".into()) }))).await.unwrap();
        match sig.next(STEP).await {
            Err(ClientError::ResumeFailed(why)) => assert!(why.contains("unknown token"), "{why}"),
            other => panic!("expected ResumeFailed, got {other:?}"),
        }
    }

    /// A fresh `welcome` (another peer id) is no resume; nor is one after `within_ms`.
    #[tokio::test]
    async fn a_fresh_session_is_no_resume() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
        let (mut sig, mut n0) = connected(&listener, &url).await;
        send(&mut n0, json!({"type": "reconnect", "resume_token": "t", "within_ms": 5000})).await;
        assert_eq!(read(&mut n0).await, "<close>");
        drop(n0);
        let (_, n1) = accept(&listener, None).await;
        let mut n1 = n1.unwrap();
        send(&mut n1, welcome(OTHER, "n1", false)).await;
        assert!(matches!(sig.next(STEP).await, Err(ClientError::ResumeFailed(_))));
        // It leaves the session it did not want.
        assert_eq!(read(&mut n1).await, "<close>");
    }

    #[tokio::test]
    async fn gives_up_after_within_ms() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
        let (mut sig, mut n0) = connected(&listener, &url).await;
        send(&mut n0, json!({"type": "reconnect", "resume_token": "t", "within_ms": 300})).await;
        assert_eq!(read(&mut n0).await, "<close>");
        drop(n0);
        let refuse = async {
            loop {
                accept(&listener, Some("503 Service Unavailable")).await;
            }
        };
        tokio::select! {
            ev = sig.next(STEP) => match ev {
                Err(ClientError::ResumeFailed(why)) => assert!(why.contains("in time"), "{why}"),
                other => panic!("expected ResumeFailed, got {other:?}"),
            },
            () = refuse => unreachable!(),
        }
    }
}
