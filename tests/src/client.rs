use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::STEP_TIMEOUT;

/// What arrived on a socket.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Close(Option<(u16, String)>),
    /// The socket ended without a close frame.
    Ended,
}

/// A raw WebSocket client.
///
/// It reads a v1 frame's `seq` (the server numbers every frame after `welcome`, for resumes)
/// into [`last_seq`](Self::last_seq) and hands the frame over without it, so tests compare
/// frames by what they say.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    last_seq: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url, &[]).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Connects with extra handshake headers (Origin, Sec-WebSocket-Protocol…).
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            req.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Client { ws, last_seq: 0 })
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends several messages in one write, so the server reads them together.
    pub async fn send_batch(&mut self, msgs: &[Value]) {
        for m in msgs {
            self.ws.feed(Message::text(m.to_string())).await.expect("feed");
        }
        self.ws.flush().await.expect("flush");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s)).await.expect("send text");
    }

    /// Sends a message; false if the socket is gone (where [`send_json`](Self::send_json) panics).
    pub async fn try_send_json(&mut self, v: &Value) -> bool {
        self.ws.send(Message::text(v.to_string())).await.is_ok()
    }

    /// Starts the closing handshake with `code` and keeps the socket: what the server sends
    /// before its own close frame can still be read with [`next`](Self::next).
    pub async fn send_close(&mut self, code: u16, reason: &str) -> bool {
        let frame =
            tokio_tungstenite::tungstenite::protocol::CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        self.ws.send(Message::Close(Some(frame))).await.is_ok()
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next JSON frame or close (pings and pongs are skipped).
    pub async fn next(&mut self) -> Frame {
        self.next_within(STEP_TIMEOUT).await.unwrap_or_else(|| panic!("nothing arrived within {STEP_TIMEOUT:?}"))
    }

    /// Like [`next`](Self::next) but `None` on timeout.
    pub async fn next_within(&mut self, t: Duration) -> Option<Frame> {
        // One deadline for the whole wait: heartbeat pings must not restart it.
        let deadline = tokio::time::Instant::now() + t;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Frame::Ended),
                Ok(Some(Ok(m))) => m,
            };
            return Some(match m {
                Message::Text(t) => {
                    let mut v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON: {t}: {e}"));
                    if let Some(seq) = v.as_object_mut().and_then(|o| o.remove("seq")).and_then(|s| s.as_u64()) {
                        self.last_seq = seq;
                    }
                    Frame::Json(v)
                }
                Message::Close(c) => Frame::Close(c.map(|c| (u16::from(c.code), c.reason.to_string()))),
                Message::Binary(b) => panic!("binary frame from server: {b:?}"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            });
        }
    }

    /// The `seq` of the last numbered frame read (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next JSON message; panics on close.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Frame::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Skips messages until one of type `ty` arrives (v1 and seed both use `type`).
    pub async fn expect(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// The next message must be an error with `code` (v1: top level; seed: in `body`).
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv().await;
        let got = if v["code"].is_string() { &v["code"] } else { &v["body"]["code"] };
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(got, code, "expected error {code}, got {v}");
        v
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next().await {
                Frame::Close(c) => return c,
                Frame::Ended => return None,
                Frame::Json(_) => continue,
            }
        }
    }

    /// Asserts nothing but heartbeats arrives for `t`.
    pub async fn expect_silence(&mut self, t: Duration) {
        if let Some(f) = self.next_within(t).await {
            panic!("expected silence, got {f:?}");
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// A v1 peer: connected, welcomed, with its server-assigned id.
pub struct V1Peer {
    pub ws: Client,
    pub id: String,
}

impl V1Peer {
    pub async fn connect(url: &str) -> V1Peer {
        let mut ws = Client::connect(url).await;
        let welcome = ws.expect("welcome").await;
        let id = welcome["peer_id"].as_str().expect("peer_id").to_string();
        V1Peer { ws, id }
    }

    /// Joins `room` and returns the `joined` message.
    pub async fn join(&mut self, room: &str) -> Value {
        self.ws.send_json(json!({"type": "join", "room": room})).await;
        self.ws.expect("joined").await
    }

    pub async fn signal(&mut self, room: &str, to: &str, data: Value) {
        self.ws.send_json(json!({"type": "signal", "room": room, "to": to, "data": data})).await;
    }
}
