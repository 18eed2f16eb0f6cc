//! A member: a client that joins a room, reads and records every frame from then on, and
//! streams numbered signals when the run tells it to. Its record is what the verdict judges.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_tests::{Frame, Node, STEP_TIMEOUT, V1Peer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::flow::{PeerLog, record};

/// A finishing member stops reading after this long without a frame.
const FINISH_QUIET: Duration = Duration::from_millis(300);

#[derive(Clone, Debug, PartialEq)]
enum Ctl {
    /// Read and record; send nothing.
    Listen,
    /// Also send a numbered signal to `to` every `every`, with a `pad` of that many bytes.
    Stream { to: String, every: Duration, pad: usize },
    /// Close the socket (a peer that goes away).
    Close,
    /// Read until [`FINISH_QUIET`], then stop recording (the socket stays open).
    Finish,
}

/// A frame that bears on the member's view of its room, in arrival order.
#[derive(Clone, Debug)]
pub enum Seen {
    PeerJoined(String),
    /// Peer, reason.
    PeerLeft(String, String),
    /// A relayed signal from this peer.
    SignalFrom(String),
}

/// Everything a member saw. Times are since the run's start.
#[derive(Default)]
pub struct Record {
    /// Its numbered signals and everything that came back, as the flows count them.
    pub log: PeerLog,
    /// The peers its `joined` listed.
    pub listed: Vec<String>,
    pub seen: Vec<(Duration, Seen)>,
    /// When the run closed its socket.
    pub closed: Option<Duration>,
    /// When its socket ended without the run asking.
    pub ended: Option<Duration>,
}

pub struct Member {
    pub name: String,
    pub id: String,
    pub room: String,
    pub node: usize,
    ctl: watch::Sender<Ctl>,
    record: Arc<Mutex<Record>>,
    /// Hands the client back when it ends, so that its socket stays open until the run ends.
    task: JoinHandle<Option<V1Peer>>,
    peer: Option<V1Peer>,
}

impl Member {
    /// Connects to `node` (number `n`), joins `room`, and records from then on.
    pub async fn start(name: &str, n: usize, node: &Node, room: &str, t0: Instant) -> Result<Member, String> {
        let mut peer = V1Peer::connect(&node.ws_url("/v1/ws")).await;
        peer.ws.send_json(json!({"type": "join", "room": room, "id": "join"})).await;
        let listed = match peer.ws.next_within(STEP_TIMEOUT).await {
            Some(Frame::Json(v)) if v["type"] == "joined" => v["peers"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["peer_id"].as_str().map(String::from)).collect())
                .unwrap_or_default(),
            other => return Err(format!("{name} could not join {room} on n{n}: {other:?}")),
        };
        let record = Arc::new(Mutex::new(Record { listed, ..Record::default() }));
        let (ctl, rx) = watch::channel(Ctl::Listen);
        let id = peer.id.clone();
        let task = tokio::spawn(run_member(peer, room.to_string(), rx, Arc::clone(&record), t0));
        Ok(Member { name: name.into(), id, room: room.into(), node: n, ctl, record, task, peer: None })
    }

    pub fn stream(&self, to: &str, every: Duration, pad: usize) {
        self.ctl.send_replace(Ctl::Stream { to: to.into(), every, pad });
    }

    pub fn listen(&self) {
        self.ctl.send_replace(Ctl::Listen);
    }

    pub fn close(&self) {
        self.ctl.send_replace(Ctl::Close);
    }

    pub fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().expect("member record")
    }

    /// Tells it to read until quiet and stop recording (the socket stays open).
    pub fn finish(&self) {
        self.ctl.send_replace(Ctl::Finish);
    }

    /// After [`finish`](Self::finish): waits until it stopped, and hands back everything it saw.
    pub async fn finished(&mut self) -> Record {
        self.ctl.send_replace(Ctl::Finish);
        self.peer = (&mut self.task).await.ok().flatten();
        std::mem::take(&mut *self.record())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records one frame; false once the socket is gone.
fn note(rec: &Mutex<Record>, frame: Frame, t0: Instant) -> bool {
    let at = t0.elapsed();
    let seen = match &frame {
        Frame::Json(v) => {
            let peer = |p: &serde_json::Value| p.as_str().map(String::from);
            match v["type"].as_str() {
                Some("peer-joined") => peer(&v["peer"]["peer_id"]).map(Seen::PeerJoined),
                Some("peer-left") => {
                    peer(&v["peer_id"]).map(|p| Seen::PeerLeft(p, v["reason"].as_str().unwrap_or("?").into()))
                }
                Some("signal") => peer(&v["from"]).map(Seen::SignalFrom),
                _ => None,
            }
        }
        _ => None,
    };
    let mut r = rec.lock().expect("member record");
    if let Some(s) = seen {
        r.seen.push((at, s));
    }
    let open = record(&mut r.log, frame, t0);
    if !open {
        r.ended = Some(at);
    }
    open
}

/// The next frame; never, once the socket is gone.
async fn next_frame(peer: &mut V1Peer, open: bool) -> Frame {
    if !open {
        return std::future::pending().await;
    }
    peer.ws.next_within(Duration::from_secs(3600)).await.unwrap_or(Frame::Ended)
}

async fn run_member(
    mut peer: V1Peer,
    room: String,
    mut ctl: watch::Receiver<Ctl>,
    rec: Arc<Mutex<Record>>,
    t0: Instant,
) -> Option<V1Peer> {
    let mut open = true;
    loop {
        let now = ctl.borrow_and_update().clone();
        match now {
            Ctl::Close => {
                rec.lock().expect("member record").closed = Some(t0.elapsed());
                peer.ws.close().await;
                return None;
            }
            Ctl::Finish => {
                while open {
                    match peer.ws.next_within(FINISH_QUIET).await {
                        Some(f) => open = note(&rec, f, t0),
                        None => break,
                    }
                }
                return Some(peer);
            }
            Ctl::Listen => tokio::select! {
                changed = ctl.changed() => if changed.is_err() { return None },
                f = next_frame(&mut peer, open) => open = note(&rec, f, t0),
            },
            Ctl::Stream { to, every, pad } => {
                let pad = "x".repeat(pad);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        changed = ctl.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            break;
                        }
                        _ = tick.tick(), if open => {
                            let seq = {
                                let mut r = rec.lock().expect("member record");
                                r.log.sent.push(t0.elapsed());
                                r.log.sent.len() - 1
                            };
                            let data = if pad.is_empty() { json!({"seq": seq}) } else { json!({"seq": seq, "pad": pad}) };
                            let msg = json!({"type": "signal", "room": room, "to": to, "data": data, "id": seq});
                            if !peer.ws.try_send_json(&msg).await {
                                open = note(&rec, Frame::Ended, t0);
                            }
                        }
                        f = next_frame(&mut peer, open) => open = note(&rec, f, t0),
                    }
                }
            }
        }
    }
}
