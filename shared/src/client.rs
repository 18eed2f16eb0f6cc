//! A small async signaling client over WebSocket, for tests and for `switchboard-peer`.
//!
//! It is deliberately thin: one [`Client`] is one WebSocket, text frames in and out, with a
//! timeout on every read so a test or a benchmark can never hang on a server that went quiet.
//! Higher-level helpers parse what arrives: [`Client::recv_event`] into a v1 [`Event`],
//! [`Client::recv_json`] into raw JSON for the seed protocol (whose server messages have no
//! Rust client type).
//!
//! Control frames are handled underneath: pings are answered by tungstenite on the next read or
//! write, so a client that keeps reading (see [`Client::drain`]) stays alive under a server's
//! heartbeat without doing anything itself.
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

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::v1::Event;

/// Read buffer per connection. tungstenite's default is 128 KiB, allocated up front: with the
/// tens of thousands of sessions an idle run opens that is gigabytes in the generator. Signaling
/// frames are a few KiB; a larger frame still arrives whole (the buffer grows for it).
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// The text of one received frame. It derefs to `str` and owns its bytes without a copy out of
/// the WebSocket's read buffer.
pub type Text = tungstenite::Utf8Bytes;

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or subprotocol could not be turned into a WebSocket request.
    #[error("bad request for {url}: {reason}")]
    BadRequest { url: String, reason: String },
    /// The TCP connection or the WebSocket handshake failed.
    #[error("connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// Reading or writing an open WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[source] Box<tungstenite::Error>),
    /// No text frame arrived in time.
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection (or the stream ended: then `code` is `None`).
    #[error("connection closed (code {code:?}: {reason:?})")]
    Closed { code: Option<u16>, reason: String },
    /// A text frame arrived but was not the JSON the caller expected.
    #[error("unexpected frame ({source}): {frame}")]
    Json {
        #[source]
        source: serde_json::Error,
        /// The start of the frame, for the error message.
        frame: String,
    },
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        // Boxed: tungstenite's error is large and would bloat every `Result` on the hot path.
        ClientError::Ws(Box::new(e))
    }
}

/// One signaling connection.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    subprotocol: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("subprotocol", &self.subprotocol).finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a WebSocket to `url` (`ws://host:port/path`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, None).await
    }

    /// Opens a WebSocket to `url`, asking for `subprotocol` when given. The handshake fails if
    /// the server does not agree to it, so a successful connect means it was negotiated.
    pub async fn connect_with(url: &str, subprotocol: Option<&str>) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadRequest { url: url.to_owned(), reason };
        let mut request = url.into_client_request().map_err(|e| bad(e.to_string()))?;
        if let Some(p) = subprotocol {
            let value = HeaderValue::from_str(p).map_err(|e| bad(e.to_string()))?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", value);
        }
        // Nagle off, as browsers and Node's `ws` do: signaling frames are small and latency
        // is what a benchmark measures.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        let (ws, response) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| ClientError::Connect { url: url.to_owned(), source: Box::new(e) })?;
        let subprotocol =
            response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Client { ws, subprotocol })
    }

    /// The subprotocol the server agreed to, if one was asked for.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.ws.send(Message::text(text.into())).await?;
        Ok(())
    }

    /// Sends several text frames with one flush, so they usually leave in one TCP write.
    pub async fn send_many(&mut self, texts: impl IntoIterator<Item = String>) -> Result<(), ClientError> {
        for text in texts {
            self.ws.feed(Message::text(text)).await?;
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

    /// Receives the next text frame, waiting until `deadline` at most. Control and binary
    /// frames are skipped (pings are answered underneath).
    pub async fn recv_text_until(&mut self, deadline: Instant) -> Result<Text, ClientError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            match next.map_err(|_| ClientError::Timeout(budget))? {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(ClientError::Closed { code: None, reason: String::new() });
                }
            }
        }
    }

    /// Receives the next frame as a v1 server event.
    pub async fn recv_event(&mut self, timeout: Duration) -> Result<Event, ClientError> {
        let text = self.recv_text(timeout).await?;
        parse_json(&text)
    }

    /// Receives the next frame as untyped JSON (the seed protocol's `{type, body}`).
    pub async fn recv_json(&mut self, timeout: Duration) -> Result<serde_json::Value, ClientError> {
        let text = self.recv_text(timeout).await?;
        parse_json(&text)
    }

    /// Reads and discards frames until the server closes the connection, which keeps an idle
    /// session answering the server's pings. Returns `Ok` on a clean close.
    pub async fn drain(&mut self) -> Result<(), ClientError> {
        while let Some(msg) = self.ws.next().await {
            if let Message::Close(_) = msg? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sends a normal close frame. The server's reply is not awaited.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        Ok(())
    }
}

fn closed(frame: Option<tungstenite::protocol::CloseFrame>) -> ClientError {
    match frame {
        Some(f) => ClientError::Closed { code: Some(u16::from(f.code)), reason: f.reason.as_str().to_owned() },
        None => ClientError::Closed { code: None, reason: String::new() },
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ClientError> {
    serde_json::from_str(text).map_err(|source| ClientError::Json { source, frame: text.chars().take(200).collect() })
}
