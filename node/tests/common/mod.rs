//! Helpers shared by the node's integration tests (`v1_protocol`, `limits`, `robustness`).
//!
//! Besides small builders for v1 payloads it holds [`RawWs`], a deliberately minimal WebSocket
//! client written over a plain `TcpStream`. The harness's `Client` (tokio-tungstenite) only
//! sends well-formed messages, and `tokio-tungstenite` is not a dependency of this crate's
//! tests, so anything a well-behaved client library refuses to produce — binary frames, text
//! frames that are not UTF-8, unmasked frames, bad opcodes, fragments, a frame header claiming
//! a huge length — goes through `RawWs`. It also exposes the raw handshake response (status,
//! headers, body) for the Origin and subprotocol checks.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::{Node, STEP_TIMEOUT, V1Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts the node binary built for these tests with `args`.
pub fn start(args: &[&str]) -> Node {
    Node::start(env!("CARGO_BIN_EXE_switchboard-node"), args)
}

/// The node binary with `args`, in an environment without `SWITCHBOARD_*` variables.
pub fn node_command(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-node"));
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SWITCHBOARD_")) {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs the node binary with `args` and expects it to exit non-zero before listening, saying
/// `says` on stderr.
pub fn refuses_to_start(args: &[&str], says: &str) {
    let mut all = vec!["--listen", "127.0.0.1:0", "--log", "warn"];
    all.extend_from_slice(args);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (ok, stdout, stderr) = switchboard_tests::run_until(node_command(&all), deadline);
    assert!(!ok, "{args:?} started:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("listening on"), "{args:?} listened before refusing: {stdout}");
    assert!(stderr.contains(says), "{args:?}: stderr does not say {says:?}:\n{stderr}");
}

/// The v1 endpoint of `node`.
pub fn v1_url(node: &Node) -> String {
    node.ws_url("/v1/ws")
}

/// A welcomed v1 peer that has joined `room`.
pub async fn joined(node: &Node, room: &str) -> V1Peer {
    let mut p = V1Peer::connect(&v1_url(node)).await;
    p.join(room).await;
    p
}

/// Two welcomed peers in `room`; the first has seen the second's `peer-joined`.
pub async fn pair(node: &Node, room: &str) -> (V1Peer, V1Peer) {
    let mut a = joined(node, room).await;
    let b = joined(node, room).await;
    let pj = a.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"]["peer_id"], b.id.as_str());
    (a, b)
}

/// A well-formed ICE candidate (`n` varies the foundation and port).
pub fn candidate(n: u32) -> Value {
    json!({
        "candidate": format!("candidate:{n} 1 udp 2122260223 192.0.2.1 {} typ host", 5000 + n % 50000),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    })
}

/// An offer with a short, valid SDP.
pub fn offer() -> Value {
    json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"})
}

/// An answer with a short, valid SDP.
pub fn answer() -> Value {
    json!({"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n"})
}

/// A plausible SDP of exactly `len` bytes (UTF-8), with CRLFs, quotes, a backslash and
/// non-ASCII text so that any re-encoding on the way would show.
pub fn big_sdp(len: usize) -> String {
    let mut s = String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=\"Ünïcode\" \\ session\r\n");
    let mut i = 0u32;
    while s.len() < len {
        s.push_str(&format!(
            "a=candidate:{i} 1 udp 2122260223 192.0.2.{} {} typ host generation 0\r\n",
            i % 250,
            1024 + i
        ));
        i += 1;
    }
    // Cut at a char boundary (the filler is ASCII) and pad back to `len`.
    s.truncate(len);
    s
}

/// Sends `v`, then a `ping` with `mark` as its id, and collects everything the server answered
/// before that `pong` (replies to one connection's frames keep their order).
pub async fn replies_until_pong(p: &mut V1Peer, mark: &str) -> Vec<Value> {
    p.ws.send_json(json!({"type": "ping", "id": mark})).await;
    let mut out = Vec::new();
    loop {
        let v = p.ws.recv().await;
        if v["type"] == "pong" && v["id"] == mark {
            return out;
        }
        out.push(v);
    }
}

/// Round-trips a `ping` to prove the connection still answers.
pub async fn assert_alive(p: &mut V1Peer) {
    let mark = format!("alive-{}", p.id);
    let before = replies_until_pong(p, &mark).await;
    assert!(before.iter().all(|v| v["type"] != "error"), "unexpected errors before pong: {before:?}");
}

/// Sends a signal and asserts that `to` receives it, from `from`, with `data` untouched.
pub async fn signal_arrives(from: &mut V1Peer, to: &mut V1Peer, room: &str, data: Value) {
    from.signal(room, &to.id, data.clone()).await;
    let got = to.ws.expect("signal").await;
    assert_eq!(got["from"], from.id.as_str(), "{got}");
    assert_eq!(got["room"], room, "{got}");
    assert_eq!(got["data"], data, "{got}");
}

/// The value of the Prometheus sample `name` whose labels include every `labels` pair;
/// 0 when there is no such sample.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then_some(value)
        })
        .map(|v| v.parse::<f64>().unwrap_or_else(|e| panic!("bad sample {v}: {e}")))
        .sum()
}

/// Fetches `/metrics` and reads one sample (see [`metric`]).
pub fn node_metric(node: &Node, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = node.get("/metrics");
    assert_eq!(status, 200, "/metrics answered {status}");
    metric(&body, name, labels)
}

/// Asserts `/healthz` answers 200.
pub fn assert_healthy(node: &mut Node) {
    assert!(node.alive(), "node process exited");
    let (status, body) = node.get("/healthz");
    assert_eq!(status, 200, "/healthz: {status} {body}");
}

/// xorshift64*: a tiny deterministic PRNG (fixed seeds, reproducible runs, no crate).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// RawWs: a WebSocket client with full control over what goes on the wire.
// ---------------------------------------------------------------------------------------------

/// WebSocket opcodes (RFC 6455 §5.2).
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The server's answer to an upgrade request.
#[derive(Debug)]
pub struct HandshakeResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HandshakeResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What arrived on a [`RawWs`].
#[derive(Debug)]
pub enum RawFrame {
    Json(Value),
    /// A text frame that is not JSON (never expected from the node).
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
    Ended,
}

pub struct RawWs {
    io: TcpStream,
    /// Bytes read past the last parsed frame.
    buf: Vec<u8>,
    mask_seed: XorShift,
    /// Pings received from the server (each answered with a pong).
    pub pings: usize,
}

impl RawWs {
    /// Sends an upgrade request for `path` with extra `headers`. Returns the response and, if
    /// it was `101 Switching Protocols`, the open socket.
    pub async fn handshake(addr: &str, path: &str, headers: &[(&str, &str)]) -> (HandshakeResponse, Option<RawWs>) {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        io.set_nodelay(true).ok();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        io.write_all(req.as_bytes()).await.expect("write handshake");

        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(STEP_TIMEOUT, io.read(&mut chunk))
                .await
                .expect("handshake response timed out")
                .expect("read handshake");
            assert!(n > 0, "connection closed during handshake: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut rest = buf.split_off(head_end);
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = HandshakeResponse { status, headers, body: String::new() };
        if status == 101 {
            return (resp, Some(RawWs { io, buf: rest, mask_seed: XorShift::new(0x5eed), pings: 0 }));
        }
        let len: usize = resp.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while rest.len() < len {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(STEP_TIMEOUT, io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        resp.body = String::from_utf8_lossy(&rest).to_string();
        (resp, None)
    }

    /// Opens a WebSocket at `path`; panics unless the upgrade succeeds.
    pub async fn connect(node: &Node, path: &str) -> RawWs {
        let (resp, ws) = Self::handshake(&node.addr, path, &[]).await;
        assert_eq!(resp.status, 101, "upgrade refused: {resp:?}");
        ws.expect("socket")
    }

    /// Opens a v1 socket and consumes `welcome`; returns the socket and its peer id.
    pub async fn connect_v1(node: &Node) -> (RawWs, String) {
        let mut ws = Self::connect(node, "/v1/ws").await;
        let welcome = ws.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let id = welcome["peer_id"].as_str().expect("peer_id").to_string();
        (ws, id)
    }

    /// Joins `room` and consumes the `joined` reply.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send_json(&json!({"type": "join", "room": room})).await;
        let joined = self.recv_json().await;
        assert_eq!(joined["type"], "joined", "{joined}");
        joined
    }

    /// Encodes one frame. `mask: false` produces the unmasked frame a client must never send.
    fn encode(&mut self, fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push((if fin { 0x80 } else { 0 }) | opcode);
        let mask_bit = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if mask {
            let key = (self.mask_seed.next_u64() as u32).to_be_bytes();
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// Writes raw bytes; `Err` if the node already dropped the socket.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await
    }

    /// Sends one (masked) frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = self.encode(fin, opcode, payload, true);
        self.write_raw(&frame).await.expect("send frame");
    }

    /// Sends one frame without the client mask (a protocol violation).
    pub async fn send_unmasked(&mut self, opcode: u8, payload: &[u8]) {
        let frame = self.encode(true, opcode, payload, false);
        self.write_raw(&frame).await.expect("send frame");
    }

    /// A text frame whose payload is `bytes` as is (UTF-8 or not).
    pub async fn send_text_bytes(&mut self, bytes: &[u8]) {
        self.send_frame(true, op::TEXT, bytes).await;
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text_bytes(v.to_string().as_bytes()).await;
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send_frame(true, op::BINARY, bytes).await;
    }

    /// Reads one frame within `t`; pings are answered and skipped, pongs skipped.
    pub async fn next_within(&mut self, t: Duration) -> Option<RawFrame> {
        let deadline = tokio::time::Instant::now() + t;
        loop {
            if let Some((opcode, payload)) = self.parse_frame() {
                match opcode {
                    op::TEXT => {
                        return Some(match serde_json::from_slice(&payload) {
                            Ok(v) => RawFrame::Json(v),
                            Err(_) => RawFrame::Text(payload),
                        });
                    }
                    op::BINARY => return Some(RawFrame::Binary(payload)),
                    op::CLOSE => {
                        let c = (payload.len() >= 2).then(|| {
                            (
                                u16::from_be_bytes([payload[0], payload[1]]),
                                String::from_utf8_lossy(&payload[2..]).to_string(),
                            )
                        });
                        return Some(RawFrame::Close(c));
                    }
                    op::PING => {
                        self.pings += 1;
                        let pong = self.encode(true, op::PONG, &payload, true);
                        let _ = self.write_raw(&pong).await;
                        continue;
                    }
                    _ => continue,
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(RawFrame::Ended),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Takes one complete (unmasked, server-sent) frame off the buffer, if there is one.
    fn parse_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0F;
        let (len, hdr) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < hdr + len {
            return None;
        }
        let payload = b[hdr..hdr + len].to_vec();
        self.buf.drain(..hdr + len);
        Some((opcode, payload))
    }

    pub async fn next(&mut self) -> RawFrame {
        self.next_within(STEP_TIMEOUT).await.unwrap_or_else(|| panic!("nothing arrived within {STEP_TIMEOUT:?}"))
    }

    /// The next JSON message, without the `seq` the node numbers every v1 frame with after
    /// `welcome` (a refusal in place of `welcome` has none).
    pub async fn recv_json(&mut self) -> Value {
        match self.next().await {
            RawFrame::Json(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("seq");
                }
                v
            }
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next message must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv_json().await;
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(v["code"], code, "expected error {code}, got {v}");
        v
    }

    /// Reads until the server closes; the close code and reason (`None` if the socket just
    /// ended).
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next().await {
                RawFrame::Close(c) => return c,
                RawFrame::Ended => return None,
                _ => continue,
            }
        }
    }

    /// A `ping` with `id` must be answered with a `pong` echoing it.
    pub async fn assert_pong(&mut self, id: &str) {
        self.send_json(&json!({"type": "ping", "id": id})).await;
        let v = self.recv_json().await;
        assert_eq!(v, json!({"type": "pong", "id": id}));
    }
}
