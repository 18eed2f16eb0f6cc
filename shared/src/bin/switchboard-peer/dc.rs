//! Data-channel helpers the WebRTC subcommands share: a channel's messages as a stream, an
//! echo, and the timed echo exchange that checks every message byte for byte.

use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard::rtc::{ChannelEvent, DataChannel, Message, RtcChannel as _, RtcError};
use tokio::sync::{mpsc, oneshot};

/// Sends binary messages `seqs` one at a time and waits for each echo, checking it byte for byte
/// and binary; returns the round trip times, ms.
pub async fn exchange(
    dc: &DataChannel,
    echoes: &mut mpsc::UnboundedReceiver<Message>,
    seqs: std::ops::Range<usize>,
    size: usize,
    step: Duration,
) -> Result<Vec<f64>, String> {
    let mut rtts = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let mut msg = (seq as u64).to_be_bytes().to_vec();
        msg.extend((0..size - 8).map(|i| (i * 31 + seq) as u8));
        let msg = Bytes::from(msg);
        let sent = Instant::now();
        dc.send(&msg).await.map_err(|e| format!("data channel send {seq}: {e}"))?;
        let echo = tokio::time::timeout(step, echoes.recv())
            .await
            .map_err(|_| format!("no echo of data-channel message {seq}"))?
            .ok_or("the data channel closed")?;
        if echo.data != msg {
            return Err(format!("data-channel message {seq} came back different ({} bytes)", echo.data.len()));
        }
        if echo.text {
            return Err(format!("binary data-channel message {seq} came back as text"));
        }
        rtts.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(rtts)
}

/// A data channel's messages, as a stream; `opened` fires when it opens.
pub fn messages(dc: &DataChannel, opened: Option<oneshot::Sender<Instant>>) -> mpsc::UnboundedReceiver<Message> {
    let mut events = dc.events();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut opened = opened;
        while let Some(ev) = events.recv().await {
            match ev {
                ChannelEvent::Open => {
                    if let Some(o) = opened.take() {
                        let _ = o.send(Instant::now());
                    }
                }
                ChannelEvent::Message(m) => {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                ChannelEvent::Closed => return,
            }
        }
    });
    rx
}

/// Echoes every message on `dc` back to its sender, text as text and binary as binary.
pub fn echo(dc: DataChannel) {
    let mut incoming = messages(&dc, None);
    tokio::spawn(async move {
        while let Some(m) = incoming.recv().await {
            match dc.send_message(&m).await {
                // Text that is not UTF-8 cannot go back as text, and as binary it would be
                // another message than the one sent: no echo is the honest answer.
                Ok(()) | Err(RtcError::NotUtf8) => {}
                Err(_) => return,
            }
        }
    });
}

/// What the answering side sends first on a channel it echoes: its echo is listening. A message
/// that reaches webrtc-rs 0.17 before the receiving side has set its handler is dropped, so the
/// sender waits for this before its first message.
pub const READY: &[u8] = b"ready";

/// [`echo`], then [`READY`].
pub fn echo_ready(dc: DataChannel) {
    echo(dc.clone());
    tokio::spawn(async move {
        let _ = dc.send(&Bytes::from_static(READY)).await;
    });
}

/// Waits for the other side's [`READY`].
pub async fn ready(echoes: &mut mpsc::UnboundedReceiver<Message>, step: Duration) -> Result<(), String> {
    match tokio::time::timeout(step, echoes.recv()).await {
        Ok(Some(m)) if m.data == READY => Ok(()),
        Ok(Some(_)) => Err("the first data-channel message was not the echo's ready".into()),
        Ok(None) => Err("the data channel closed".into()),
        Err(_) => Err("the echo side never said ready".into()),
    }
}
