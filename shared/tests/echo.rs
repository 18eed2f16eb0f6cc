//! `switchboard-peer join` echoes a data-channel message as what it was sent: text as text,
//! binary as binary — a browser's `onmessage` gets a string for one and an `ArrayBuffer` for the
//! other, so an echo that changes the kind is a different message. Real processes: a node, the
//! `join` peer, and a webrtc-rs peer in this test calling it through the node. The browser
//! SDK's mute state (signal data `{"muted": …}`) is reported by the `join` peer, not refused.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use switchboard::protocol::v1::Event;
use switchboard::rtc::signaling::Signaling;
use switchboard::rtc::{ChannelEvent, Message, Peer, PeerConfig, RtcChannel as _, RtcPeer as _};
use switchboard_tests::{Node, node_binary};
use tokio::sync::mpsc;

/// Kills the `join` process however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_join_peer_echoes_text_as_text_and_binary_as_binary() {
    let node = Node::start(&node_binary(), &[]);
    let url = node.ws_url("/v1/ws");
    let room = format!("echo-{}", std::process::id());
    let join = Command::new(env!("CARGO_BIN_EXE_switchboard-peer"))
        .args(["join", "--url", &url, "--room", &room, "--duration-secs", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("switchboard-peer join");
    let mut join = Killed(join);
    let stdout = join.0.stdout.take().expect("join's stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let step = Duration::from_secs(10);
        // Join once the `join` peer is in the room: it answers newcomers, and this peer offers.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut sig, remote) = loop {
            let mut sig = Signaling::connect(&url, step).await.expect("connect");
            if let [remote] = sig.join(&room, step).await.expect("join")[..] {
                break (sig, remote);
            }
            assert!(Instant::now() < deadline, "switchboard-peer join never joined {room}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (out, r) = (sig.outbox.clone(), room.clone());
        let app = sig.outbox.clone();
        let send = Arc::new(move |data: Value| out.signal(&r, remote, data));
        let (peer, mut peer_events) = Peer::new(false, &PeerConfig::default(), send).await.expect("peer");
        let peer = Arc::new(peer);
        let dc = peer.add(Some("chat"), Vec::new()).await.expect("data channel").expect("a channel");
        let mut channel = dc.events();
        let p = Arc::clone(&peer);
        tokio::spawn(async move {
            while let Some(Ok(ev)) = sig.events.recv().await {
                if let Event::Signal { data, .. } = ev {
                    let _ = p.handle_signal(data).await;
                }
            }
        });
        tokio::spawn(async move { while peer_events.recv().await.is_some() {} });

        let (echoes_tx, mut echoes) = mpsc::unbounded_channel();
        let opened = tokio::time::timeout(step, async {
            while let Some(ev) = channel.recv().await {
                match ev {
                    ChannelEvent::Open => return true,
                    ChannelEvent::Message(_) | ChannelEvent::Closed => {}
                }
            }
            false
        })
        .await;
        assert_eq!(opened, Ok(true), "the data channel to the join peer never opened");
        tokio::spawn(async move {
            while let Some(ev) = channel.recv().await {
                if let ChannelEvent::Message(m) = ev {
                    let _ = echoes_tx.send(m);
                }
            }
        });

        let text = Message::text("echo me ✓");
        let binary = Message::binary(Bytes::from_static(&[0x00, 0xff, b'e', b'c', b'h', b'o']));
        for sent in [text, binary] {
            let echo = echo_of(&dc, &mut echoes, &sent).await;
            assert_eq!(echo, sent, "the echo must be the message sent, of the same kind");
        }
        app.signal(&room, remote, serde_json::json!({"muted": {"audio": true, "video": false}}));
        peer.close().await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("the join peer never reported the mute state");
        assert!(!line.contains("signal-failed"), "the mute state was refused as a signal: {line}");
        let Ok(ev) = serde_json::from_str::<Value>(&line) else { continue };
        if ev["event"] == "peer-muted" {
            assert_eq!(ev["muted"], serde_json::json!({"audio": true, "video": false}), "{line}");
            break;
        }
    }
}

/// Sends `m` until its echo comes back (the join peer drops what arrives before its echo is
/// listening, and says nothing when it is), then returns that echo.
async fn echo_of(
    dc: &switchboard::rtc::DataChannel,
    echoes: &mut mpsc::UnboundedReceiver<Message>,
    m: &Message,
) -> Message {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        dc.send_message(m).await.expect("send");
        if let Ok(Some(echo)) = tokio::time::timeout(Duration::from_millis(300), echoes.recv()).await {
            // Echoes of an earlier message (a retry's) differ in bytes: skip them.
            if echo.data == m.data {
                return echo;
            }
        }
    }
    panic!("no echo of {m:?}");
}
