//! One peer of a mesh room: it joins in turn, calls the members already there, answers those
//! who come after, measures, reports to its room, and stays until the room hangs up.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::client::with_access_token;
use switchboard::protocol::PeerId;
use switchboard::protocol::v1::Event;
use switchboard::rtc::signaling::{Outbox, Signaling};
use switchboard::rtc::{ConnectionState, DataChannel, Peer, PeerEvent, RtcPeer as _};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Figures, Outcome, Plan};
use crate::dc::{echo_ready, exchange, messages, ready};
use crate::ice::MediaArgs;
use crate::stats::round3;

/// A peer's place in its room's join order.
pub struct Turn {
    /// Resolves when the previous peer has joined (or given up).
    pub after: Option<oneshot::Receiver<()>>,
    pub joined: oneshot::Sender<()>,
}

/// One connection of a peer to another member of its room.
struct Link {
    peer: Arc<Peer>,
    /// Its signals, applied in arrival order by a task of their own.
    signals: mpsc::UnboundedSender<Value>,
    caller: bool,
    tracks_added: bool,
}

/// What a peer's helper tasks tell its loop.
enum Note {
    Open,
    Rtts(Result<Vec<f64>, String>),
    Failed(String),
}

/// One peer: connect, join in turn, call or answer every other member, measure, report, then
/// stay (echoing, sending media) until the room hangs up.
pub async fn member(
    j: usize,
    url: String,
    room: String,
    plan: &Plan,
    turn: Turn,
    report: mpsc::UnboundedSender<(usize, Outcome)>,
    mut hangup: watch::Receiver<bool>,
) {
    let Turn { after, joined } = turn;
    let token = match plan.access.token(&room, Some(j)).await {
        Ok(t) => t,
        Err(e) => return drop(report.send((j, Err(format!("token: {e}"))))),
    };
    let url = match &token {
        Some(t) => with_access_token(&url, t),
        None => url,
    };
    let mut sig = match Signaling::connect(&url, plan.timeout).await {
        Ok(s) => s,
        Err(e) => return drop(report.send((j, Err(format!("connect: {e}"))))),
    };
    if let Some(after) = after {
        let _ = after.await;
    }
    let t_join = Instant::now();
    let present = match sig.join(&room, plan.timeout).await {
        Ok(p) => p,
        Err(e) => return drop(report.send((j, Err(format!("join: {e}"))))),
    };
    let joined_at = Instant::now();
    let _ = joined.send(());
    let join_ms = ms(t_join, joined_at);

    let deadline = tokio::time::Instant::now() + plan.timeout;
    let (events_tx, mut events) = mpsc::unbounded_channel::<(PeerId, PeerEvent<DataChannel>)>();
    let (note_tx, mut notes) = mpsc::unbounded_channel::<Note>();
    let mut links: HashMap<PeerId, Link> = HashMap::new();
    let mut fail: Option<String> = None;
    let me = sig.peer_id;
    for id in present {
        match link(plan, &sig.outbox, &room, me, id, true, &events_tx, &note_tx).await {
            Ok(l) => drop(links.insert(id, l)),
            Err(e) => fail = fail.or(Some(e)),
        }
    }
    let expected = plan.peers - 1;
    let (mut open, mut callers_done, mut rtts) = (0usize, 0usize, Vec::new());
    let mut connected_ms = None;
    let mut media_until = None;
    let mut reported = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        if !reported {
            let result = if let Some(e) = fail.take() {
                Some(Err(e))
            } else if tokio::time::Instant::now() >= deadline {
                Some(Err(format!("timeout: {open} of {expected} channels open, {callers_done} echo runs done")))
            } else {
                let callers = links.values().filter(|l| l.caller).count();
                match (connected_ms, media_until) {
                    (Some(c), Some(until)) if callers_done == callers && Instant::now() >= until => {
                        Some(finish(&links, plan, join_ms, c, std::mem::take(&mut rtts)))
                    }
                    _ => None,
                }
            };
            if let Some(result) = result {
                reported = true;
                let _ = report.send((j, result));
            }
        }
        tokio::select! {
            _ = hangup.changed() => break,
            _ = tick.tick() => {}
            ev = sig.events.recv() => match ev {
                // A newcomer will call: be ready for its offer. Across nodes its first signal
                // and its `peer-joined` take different paths, so whichever comes first opens
                // the link.
                Some(Ok(Event::PeerJoined { peer, .. })) if !links.contains_key(&peer.peer_id) => {
                    match link(plan, &sig.outbox, &room, me, peer.peer_id, false, &events_tx, &note_tx).await {
                        Ok(l) => drop(links.insert(peer.peer_id, l)),
                        Err(e) => fail = fail.or(Some(e)),
                    }
                }
                Some(Ok(Event::Signal { from, data, .. })) => match links.entry(from) {
                    Entry::Occupied(l) => drop(l.get().signals.send(data)),
                    Entry::Vacant(v) => {
                        match link(plan, &sig.outbox, &room, me, from, false, &events_tx, &note_tx).await {
                            Ok(l) => drop(v.insert(l).signals.send(data)),
                            Err(e) => fail = fail.or(Some(e)),
                        }
                    }
                },
                Some(Ok(Event::Error { code, message, .. })) => {
                    fail = fail.or(Some(format!("server error {}: {message}", code.as_str())));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    fail = fail.or(Some(format!("signaling: {e}")));
                    break;
                }
                None => break,
            },
            Some((from, ev)) = events.recv() => match ev {
                PeerEvent::State(ConnectionState::Connected) => {
                    if let Some(l) = links.get_mut(&from)
                        && !l.caller
                        && !l.tracks_added
                        && plan.media_secs > 0
                    {
                        // The callee's own tracks: a renegotiation it offers, once connected.
                        l.tracks_added = true;
                        if let Err(e) = add_media(&l.peer, &plan.media).await {
                            fail = fail.or(Some(e));
                        }
                    }
                }
                PeerEvent::State(ConnectionState::Failed) => {
                    fail = fail.or(Some("a peer connection failed".into()));
                }
                PeerEvent::State(_) => {}
                PeerEvent::DataChannel(dc) => {
                    // The callee's side of a caller's channel: open when it arrives.
                    echo_ready(dc);
                    let _ = note_tx.send(Note::Open);
                }
                PeerEvent::NegotiationFailed(e) => fail = fail.or(Some(format!("negotiation: {e}"))),
            },
            Some(note) = notes.recv() => match note {
                Note::Open => {
                    open += 1;
                    if open == expected {
                        connected_ms = Some(ms(joined_at, Instant::now()));
                        media_until = Some(Instant::now() + Duration::from_secs(plan.media_secs));
                    }
                }
                Note::Rtts(Ok(r)) => {
                    callers_done += 1;
                    rtts.extend(r);
                }
                Note::Rtts(Err(e)) | Note::Failed(e) => fail = fail.or(Some(e)),
            },
        }
    }
    if !reported {
        let why = fail.unwrap_or_else(|| format!("hung up early: {open} of {expected} channels open"));
        let _ = report.send((j, Err(why)));
    }
    sig.outbox.send(&json!({"type": "leave", "room": room}));
    for l in links.into_values() {
        l.peer.close().await;
    }
}

/// The figures of a peer that connected, or why it did not count: some other peer's media
/// never reached it.
fn finish(links: &HashMap<PeerId, Link>, plan: &Plan, join_ms: f64, connected_ms: f64, rtts: Vec<f64>) -> Outcome {
    let packets = |l: &Link| {
        let r = l.peer.received();
        r.video_packets.load(Ordering::Relaxed) + r.audio_packets.load(Ordering::Relaxed)
    };
    let silent = links.values().filter(|l| packets(l) == 0).count();
    if plan.media_secs > 0 && silent > 0 {
        return Err(format!("no RTP from {silent} of {} peers", links.len()));
    }
    Ok(Figures { join_ms, connected_ms, rtts, rtp_packets: links.values().map(packets).sum() })
}

/// Opens a connection to `remote`. The caller makes the data channel and adds its media at
/// once; once the channel opens it runs the echo exchange on it.
#[allow(clippy::too_many_arguments)]
async fn link(
    plan: &Plan,
    outbox: &Outbox,
    room: &str,
    me: PeerId,
    remote: PeerId,
    caller: bool,
    events_tx: &mpsc::UnboundedSender<(PeerId, PeerEvent<DataChannel>)>,
    notes: &mpsc::UnboundedSender<Note>,
) -> Result<Link, String> {
    let (out, room) = (outbox.clone(), room.to_owned());
    let send = Arc::new(move |data: Value| out.signal(&room, remote, data));
    let polite = me.to_string() > remote.to_string();
    let (peer, mut peer_events) = Peer::new(polite, &plan.config, send).await.map_err(|e| format!("peer: {e}"))?;
    let peer = Arc::new(peer);
    let events_tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = peer_events.recv().await {
            if events_tx.send((remote, ev)).is_err() {
                return;
            }
        }
    });
    let (signals, mut queue) = mpsc::unbounded_channel::<Value>();
    let (p, notes_in) = (Arc::clone(&peer), notes.clone());
    tokio::spawn(async move {
        while let Some(data) = queue.recv().await {
            if let Err(e) = p.handle_signal(data).await {
                let _ = notes_in.send(Note::Failed(format!("signal: {e}")));
            }
        }
    });
    if caller {
        let sources = if plan.media_secs > 0 { plan.media.sources()?.into() } else { Vec::new() };
        let dc = peer
            .add(Some("load"), sources)
            .await
            .map_err(|e| format!("data channel and tracks: {e}"))?
            .ok_or("no data channel")?;
        let (opened_tx, opened) = oneshot::channel();
        let mut echoes = messages(&dc, Some(opened_tx));
        let (notes, n, size, step) = (notes.clone(), plan.messages, plan.message_bytes, plan.timeout);
        tokio::spawn(async move {
            if opened.await.is_err() {
                return;
            }
            let _ = notes.send(Note::Open);
            let rtts = match ready(&mut echoes, step).await {
                Ok(()) => exchange(&dc, &mut echoes, 0..n, size, step).await,
                Err(e) => Err(e),
            };
            let _ = notes.send(Note::Rtts(rtts));
        });
    }
    Ok(Link { peer, signals, caller, tracks_added: caller })
}

async fn add_media(peer: &Peer, media: &MediaArgs) -> Result<(), String> {
    peer.add(None, media.sources()?.into()).await.map_err(|e| format!("add tracks: {e}"))?;
    Ok(())
}

fn ms(from: Instant, to: Instant) -> f64 {
    round3(to.duration_since(from).as_secs_f64() * 1000.0)
}
