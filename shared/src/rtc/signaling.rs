//! A v1 signaling session for a WebRTC peer: one WebSocket, read and written concurrently.
//!
//! The [`Client`] is owned by a task; callers send through a channel (so ICE callbacks can
//! send from anywhere) and receive v1 events from another. The task ends when the socket closes
//! or every handle is dropped.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::client::{Client, ClientError};
use crate::protocol::PeerId;
use crate::protocol::v1::{self, Event};

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

/// One signaling connection: the peer id the server gave it, a way to send, and its events.
pub struct Signaling {
    pub peer_id: PeerId,
    pub node_id: String,
    pub outbox: Outbox,
    pub events: mpsc::UnboundedReceiver<Result<Event, ClientError>>,
}

impl Signaling {
    /// Connects to a v1 endpoint (`ws://host:port/v1/ws`) and waits for `welcome`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Signaling, ClientError> {
        let mut client = Client::connect_with(url, Some(v1::SUBPROTOCOL)).await?;
        let (peer_id, node_id) = match client.recv_event(timeout).await? {
            Event::Welcome { peer_id, node_id, .. } => (peer_id, node_id),
            other => return Err(ClientError::Ws(format!("expected welcome, got {other:?}"))),
        };
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = out_rx.recv() => match out {
                        Some(text) => {
                            if let Err(e) = client.send_text(text).await {
                                let _ = ev_tx.send(Err(e));
                                return;
                            }
                        }
                        None => {
                            let _ = client.close().await;
                            return;
                        }
                    },
                    // A day: the read waits for the next frame; pings are answered inside.
                    ev = client.recv_event(Duration::from_secs(86_400)) => {
                        let stop = ev.is_err();
                        if ev_tx.send(ev).is_err() || stop {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Signaling { peer_id, node_id, outbox: Outbox(out_tx), events })
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
