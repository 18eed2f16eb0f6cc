//! A small async signaling client over WebSocket, for tests and for `switchboard-peer`.
//!
//! It is deliberately thin: one [`Client`] is one WebSocket, text frames in and out, with a
//! timeout on every read so a test or a benchmark can never hang on a server that went quiet.
//! Higher-level helpers parse what arrives: [`Client::recv_event`] into a v1 [`Event`],
//! [`Client::recv_json`] into raw JSON for the seed protocol (whose server messages have no
//! Rust client type).
//!
//! Framing is actix-http's WebSocket codec (client mode: every frame masked with a fresh key)
//! over a tokio `Framed`; the handshake is the plain HTTP/1.1 upgrade of RFC 6455 §4.1, with the
//! server's `Sec-WebSocket-Accept` checked. Pings are answered as they are read, so a client
//! that keeps reading (see [`Client::drain`]) stays alive under a server's heartbeat.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard::client::ClientError> {
//! use std::time::Duration;
//! use switchboard::client::Client;
//! use switchboard::protocol::v1::{self, Event};
//!
//! let mut c = Client::connect_with("ws://127.0.0.1:8080/v1/ws", Some(v1::SUBPROTOCOL)).await?;
//! let Event::Welcome { peer_id, .. } = c.recv_event(Duration::from_secs(5)).await? else {
//!     panic!("welcome is always the first frame");
//! };
//! c.send_text(r#"{"type":"join","room":"lobby"}"#).await?;
//! # let _ = peer_id; Ok(()) }
//! ```

use std::time::Duration;

use actix_http::ws::{self, CloseCode, CloseReason, Codec, Frame, Message};
use base64::Engine;
use bytes::BytesMut;
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedParts};

use crate::protocol::v1::Event;

/// Largest frame the client accepts from a server.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest HTTP response head accepted during the handshake.
const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// The text of one received frame: derefs to `str`, and owns its bytes without a copy out of
/// the read buffer.
pub type Text = ByteString;

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or subprotocol could not be turned into a WebSocket request.
    #[error("bad request for {url}: {reason}")]
    BadRequest { url: String, reason: String },
    /// The TCP connection or the WebSocket handshake failed.
    #[error("connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// Reading or writing an open WebSocket failed.
    #[error("websocket: {0}")]
    Ws(String),
    /// No text frame arrived in time.
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection (or the stream ended: then `code` is `None`).
    #[error("connection closed (code {code:?}: {reason:?})")]
    Closed { code: Option<u16>, reason: String },
    /// A session could not be resumed after the server's `reconnect` or a broken socket (see
    /// [`rtc::signaling`](crate::rtc::signaling)): `resume-failed`, no node took the resume
    /// within the server's `within_ms` (`resume_within_ms`), or a fresh session instead of the
    /// old one.
    /// Connect again without `resume` (a new peer id) and join again.
    #[error("resume failed: {0}")]
    ResumeFailed(String),
    /// A text frame arrived but was not the JSON the caller expected.
    #[error("unexpected frame ({source}): {frame}")]
    Json {
        #[source]
        source: serde_json::Error,
        /// The start of the frame, for the error message.
        frame: String,
    },
}

impl From<ws::ProtocolError> for ClientError {
    fn from(e: ws::ProtocolError) -> Self {
        ClientError::Ws(e.to_string())
    }
}

/// One signaling connection.
pub struct Client {
    ws: Framed<TcpStream, Codec>,
    subprotocol: Option<String>,
    /// Our close frame went out (see [`Client::send_close`]): pings are no longer answered.
    closing: bool,
    /// Text frames [`Client::recv_event`] and [`Client::recv_json`] could not read and skipped.
    unreadable: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("subprotocol", &self.subprotocol).finish_non_exhaustive()
    }
}

/// `ws://host[:port][/path]` split into its parts.
struct Target<'a> {
    authority: &'a str,
    path: &'a str,
}

/// `ws://host[:port][/path][?query]` split into its parts. A query straight after the host
/// (`ws://host?x=1`) keeps its own string for the path: the request line gets a `/` before it.
fn parse_url(url: &str) -> Result<Target<'_>, String> {
    let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs are supported (TLS ends at the load balancer)")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("no host".into());
    }
    Ok(Target { authority, path })
}

/// `url` with an access token as its `access_token` query parameter (how a node takes a token
/// from a client that cannot set headers). A JWT is base64url and dots: nothing to escape.
///
/// ```
/// use switchboard::client::with_access_token;
/// assert_eq!(with_access_token("ws://n/v1/ws", "a.b.c"), "ws://n/v1/ws?access_token=a.b.c");
/// assert_eq!(with_access_token("ws://n/v1/ws?x=1", "a.b.c"), "ws://n/v1/ws?x=1&access_token=a.b.c");
/// ```
pub fn with_access_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}access_token={token}")
}

/// `url` with a resume token as its `resume` query parameter (how a client takes over its
/// parked session after a node's `reconnect`), percent-encoded: the token is opaque. Every
/// other parameter (`access_token`, `room`, …) stays as it was.
///
/// ```
/// use switchboard::client::with_resume;
/// assert_eq!(with_resume("ws://n/v1/ws", "r1"), "ws://n/v1/ws?resume=r1");
/// assert_eq!(with_resume("ws://n/v1/ws?access_token=a.b.c", "a+b/c="), "ws://n/v1/ws?access_token=a.b.c&resume=a%2Bb%2Fc%3D");
/// ```
pub fn with_resume(url: &str, token: &str) -> String {
    let sep = match url.find('?') {
        None => "?",
        Some(_) if url.ends_with(['?', '&']) => "",
        Some(_) => "&",
    };
    format!("{url}{sep}resume={}", percent_encode(token))
}

/// `url` with the query that resumes a session after any break (issue 13): the token as
/// [`with_resume`] puts it, and `last_seq`, the last frame's `seq` the client received (0 if
/// none), so that the server sends again exactly what followed it.
///
/// ```
/// use switchboard::client::with_resume_from;
/// assert_eq!(with_resume_from("ws://n/v1/ws?access_token=a.b.c", "p.1f", 17), "ws://n/v1/ws?access_token=a.b.c&resume=p.1f&last_seq=17");
/// ```
pub fn with_resume_from(url: &str, token: &str, last_seq: u64) -> String {
    format!("{}&last_seq={last_seq}", with_resume(url, token))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Opens a WebSocket to `url` (`ws://host:port/path`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, None).await
    }

    /// Opens a WebSocket to `url`, asking for `subprotocol` when given. The handshake fails if
    /// the server does not agree to it, so a successful connect means it was negotiated.
    pub async fn connect_with(url: &str, subprotocol: Option<&str>) -> Result<Self, ClientError> {
        let target = parse_url(url).map_err(|reason| ClientError::BadRequest { url: url.to_owned(), reason })?;
        let fail = |reason: String| ClientError::Connect { url: url.to_owned(), reason };
        let addr = if target.authority.contains(':') {
            target.authority.to_owned()
        } else {
            format!("{}:80", target.authority)
        };
        let mut io = TcpStream::connect(&addr).await.map_err(|e| fail(e.to_string()))?;
        // Nagle off, as browsers and Node's `ws` do: signaling frames are small and latency is
        // what a benchmark measures.
        io.set_nodelay(true).map_err(|e| fail(e.to_string()))?;

        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        // `ws://host?x=1` asks for `/?x=1`.
        let slash = if target.path.starts_with('?') { "/" } else { "" };
        let mut request = format!(
            "GET {slash}{} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            target.path, target.authority
        );
        if let Some(p) = subprotocol {
            if p.contains(['\r', '\n']) {
                return Err(ClientError::BadRequest { url: url.to_owned(), reason: "bad subprotocol".into() });
            }
            request.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        request.push_str("\r\n");
        io.write_all(request.as_bytes()).await.map_err(|e| fail(e.to_string()))?;

        let mut buf = BytesMut::with_capacity(1024);
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HANDSHAKE_BYTES {
                return Err(fail("handshake response too large".into()));
            }
            if io.read_buf(&mut buf).await.map_err(|e| fail(e.to_string()))? == 0 {
                return Err(fail("connection closed during the handshake".into()));
            }
        };
        let head = buf.split_to(head_end);
        let head = std::str::from_utf8(&head).map_err(|_| fail("handshake response is not text".into()))?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if status.split(' ').nth(1) != Some("101") {
            return Err(fail(format!("server refused the upgrade: {status}")));
        }
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let accept = ws::hash_key(key.as_bytes());
        if header("sec-websocket-accept").as_deref().map(str::as_bytes) != Some(&accept[..]) {
            return Err(fail("bad Sec-WebSocket-Accept".into()));
        }
        let agreed = header("sec-websocket-protocol");
        if subprotocol.is_some() && agreed.as_deref() != subprotocol {
            return Err(fail(format!("server did not agree to subprotocol {subprotocol:?}")));
        }
        let mut parts = FramedParts::new::<Message>(io, Codec::new().client_mode().max_size(MAX_FRAME_BYTES));
        // Frames the server sent right after its response (v1's `welcome`).
        parts.read_buf = buf;
        Ok(Client { ws: Framed::from_parts(parts), subprotocol: agreed, closing: false, unreadable: 0 })
    }

    /// The subprotocol the server agreed to, if one was asked for.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into().into())).await?;
        Ok(())
    }

    /// Sends several text frames with one flush, so they usually leave in one TCP write.
    pub async fn send_many(&mut self, texts: impl IntoIterator<Item = String>) -> Result<(), ClientError> {
        for text in texts {
            self.ws.feed(Message::Text(text.into())).await?;
        }
        self.ws.flush().await?;
        Ok(())
    }

    /// Serializes `msg` (e.g. a [`v1::Request`](crate::protocol::v1::Request)) and sends it.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), ClientError> {
        let text = serde_json::to_string(msg)
            .map_err(|source| ClientError::Json { source, frame: String::from("<outbound>") })?;
        self.send_text(text).await
    }

    /// Receives the next text frame, waiting at most `timeout`.
    pub async fn recv_text(&mut self, timeout: Duration) -> Result<Text, ClientError> {
        self.recv_text_until(Instant::now() + timeout).await
    }

    /// Receives the next text frame, waiting until `deadline` at most. Pings are answered;
    /// other control and binary frames are skipped.
    pub async fn recv_text_until(&mut self, deadline: Instant) -> Result<Text, ClientError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            match next.map_err(|_| ClientError::Timeout(budget))? {
                Some(Ok(Frame::Text(bytes))) => {
                    return ByteString::try_from(bytes).map_err(|_| ClientError::Ws("text frame is not UTF-8".into()));
                }
                Some(Ok(Frame::Ping(payload))) if !self.closing => self.ws.send(Message::Pong(payload)).await?,
                Some(Ok(Frame::Close(reason))) => return Err(closed(reason)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed { code: None, reason: String::new() }),
            }
        }
    }

    /// Receives the next frame as a v1 server event. A frame that cannot be read as one (any
    /// room member can relay odd JSON, e.g. nested deeper than the parser goes) is skipped and
    /// counted in [`Client::unreadable`]: it never ends the session.
    pub async fn recv_event(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        self.recv_parsed(Instant::now() + timeout).await
    }

    /// Receives the next frame as untyped JSON (the seed protocol's `{type, body}`), skipping
    /// and counting what is not JSON, like [`Client::recv_event`].
    pub async fn recv_json(&mut self, timeout: Duration) -> Result<serde_json::Value, ClientError> {
        self.recv_parsed(Instant::now() + timeout).await
    }

    /// Text frames received and skipped because they could not be read.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    async fn recv_parsed<T: serde::de::DeserializeOwned>(&mut self, deadline: Instant) -> Result<T, ClientError> {
        loop {
            let text = self.recv_text_until(deadline).await?;
            match parse_json(&text) {
                Ok(v) => return Ok(v),
                Err(_) => self.unreadable += 1,
            }
        }
    }

    /// Reads and discards frames until the server closes the connection, answering pings, which
    /// keeps an idle session alive under the server's heartbeat. Returns `Ok` on a clean close.
    pub async fn drain(&mut self) -> Result<(), ClientError> {
        while let Some(frame) = self.ws.next().await {
            match frame? {
                Frame::Close(_) => return Ok(()),
                Frame::Ping(payload) => self.ws.send(Message::Pong(payload)).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends a normal close frame. The server's reply is not awaited.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.send_close().await
    }

    /// Sends a normal close frame (1000) and keeps the connection for reading: what the server
    /// sent before its own close still arrives (then [`ClientError::Closed`] with its code).
    /// Pings are no longer answered, since nothing may follow our close.
    pub async fn send_close(&mut self) -> Result<(), ClientError> {
        self.closing = true;
        self.ws.send(Message::Close(Some(CloseReason::from(CloseCode::Normal)))).await?;
        Ok(())
    }
}

fn closed(reason: Option<CloseReason>) -> ClientError {
    match reason {
        Some(r) => ClientError::Closed { code: Some(r.code.into()), reason: r.description.unwrap_or_default() },
        None => ClientError::Closed { code: None, reason: String::new() },
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ClientError> {
    serde_json::from_str(text).map_err(|source| ClientError::Json { source, frame: text.chars().take(200).collect() })
}

#[cfg(test)]
mod tests {
    use super::{parse_url, with_access_token, with_resume, with_resume_from};

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:8090/v1/ws").unwrap();
        assert_eq!((t.authority, t.path), ("127.0.0.1:8090", "/v1/ws"));
        let t = parse_url("ws://node").unwrap();
        assert_eq!((t.authority, t.path), ("node", "/"));
        let t = parse_url("ws://node:80/v1/ws?access_token=a.b.c&resume=x").unwrap();
        assert_eq!((t.authority, t.path), ("node:80", "/v1/ws?access_token=a.b.c&resume=x"));
        let t = parse_url("ws://node?resume=x").unwrap();
        assert_eq!((t.authority, t.path), ("node", "?resume=x"));
        assert!(parse_url("wss://node/ws").is_err());
        assert!(parse_url("ws:///ws").is_err());
    }

    #[test]
    fn resume_urls() {
        // No query yet: `?`.
        assert_eq!(with_resume("ws://n:8090/v1/ws", "t0"), "ws://n:8090/v1/ws?resume=t0");
        assert_eq!(with_resume("ws://n", "t0"), "ws://n?resume=t0");
        // A query already: `&`, and what was there stays (an access token, a room for affinity).
        let url = with_access_token("ws://n:8090/v1/ws", "h.p.s");
        assert_eq!(with_resume(&url, "t0"), "ws://n:8090/v1/ws?access_token=h.p.s&resume=t0");
        assert_eq!(
            with_resume("ws://n/v1/ws?room=lobby&access_token=h.p.s", "t0"),
            "ws://n/v1/ws?room=lobby&access_token=h.p.s&resume=t0"
        );
        // A URL that ends in its separator already gets no second one.
        assert_eq!(with_resume("ws://n/v1/ws?", "t0"), "ws://n/v1/ws?resume=t0");
        assert_eq!(with_resume("ws://n/v1/ws?room=a&", "t0"), "ws://n/v1/ws?room=a&resume=t0");
        // The token is opaque: anything outside RFC 3986's unreserved set is percent-encoded,
        // UTF-8 byte by byte.
        assert_eq!(with_resume("ws://n/v1/ws", "aZ09-._~"), "ws://n/v1/ws?resume=aZ09-._~");
        assert_eq!(
            with_resume("ws://n/v1/ws?access_token=h.p.s", "a+b/c=d&e f?é%"),
            "ws://n/v1/ws?access_token=h.p.s&resume=a%2Bb%2Fc%3Dd%26e%20f%3F%C3%A9%25"
        );
        // After a break: the last seq received follows the token.
        assert_eq!(with_resume_from("ws://n/v1/ws", "p.0a", 0), "ws://n/v1/ws?resume=p.0a&last_seq=0");
        assert_eq!(with_resume_from("ws://n/v1/ws?room=a&", "p.0a", 9), "ws://n/v1/ws?room=a&resume=p.0a&last_seq=9");
        // The result is a URL the client can dial: the request path carries the whole query.
        let url = with_resume("ws://n:8090/v1/ws?access_token=h.p.s", "a b");
        let t = parse_url(&url).unwrap();
        assert_eq!((t.authority, t.path), ("n:8090", "/v1/ws?access_token=h.p.s&resume=a%20b"));
    }
}

#[cfg(test)]
mod unreadable {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::Client;
    use crate::protocol::v1::Event;

    /// A server frame (unmasked, text) holding `payload`.
    fn text_frame(payload: &str) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65_536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload.as_bytes());
        f
    }

    /// Any room member can relay JSON nested deeper than serde_json's 128 levels: the client
    /// skips that frame, counts it, and reads on.
    #[tokio::test]
    async fn a_frame_the_client_cannot_read_is_skipped_and_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.expect("read");
                assert!(n > 0, "client closed during the handshake");
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let key = head
                .split("\r\n")
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key")))
                .map(|(_, v)| v.trim().to_owned())
                .expect("a key");
            let accept = actix_http::ws::hash_key(key.as_bytes());
            let accept = std::str::from_utf8(&accept).expect("ascii");
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            sock.write_all(reply.as_bytes()).await.expect("write");
            let deep = format!(
                r#"{{"type":"broadcast","room":"r","from":"0000000000001","data":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            );
            for frame in [deep.as_str(), "not json", r#"{"type":"pong","id":1}"#] {
                sock.write_all(&text_frame(frame)).await.expect("write");
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        let mut client = Client::connect(&format!("ws://{addr}/v1/ws")).await.expect("connect");
        let event = client.recv_event(Duration::from_secs(5)).await.expect("the session survives");
        assert!(matches!(event, Event::Pong { .. }), "{event:?}");
        assert_eq!(client.unreadable(), 2);
        server.abort();
    }
}
