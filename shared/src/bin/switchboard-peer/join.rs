//! `join`: one WebRTC peer that stays in a room, for calling a browser or another tool.
//!
//! It offers to the peers already in the room (as the impolite side) and answers those who
//! join later (as the polite side, adding its own tracks once connected, so it never has to
//! roll back an offer — see `switchboard::rtc`). It echoes every data-channel message (text as
//! text, binary as binary: a browser tells the two apart), sends synthetic video and audio, and
//! prints one JSON line per event; on exit (after
//! `--duration-secs`, or SIGINT) a summary of what each remote peer sent it. A draining node's
//! `reconnect`, and any break of the signaling socket (a reset, a stalled path, the node's idle
//! timeout), are followed inside the signaling task (`switchboard::rtc::signaling`): the
//! session resumes (on any node) with the same peer id and the calls go on on the same peer
//! connections (one `resumed` line each, with how long the socket was away); a call whose ICE
//! went `disconnected` or `failed` meanwhile restarts ICE. Other members' breaks show as
//! `peer-state` lines. If the resume fails, it connects again (with backoff), joins again and
//! calls whoever is there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::client::with_access_token;
use switchboard::protocol::PeerId;
use switchboard::protocol::v1::{Event, PeerState};
use switchboard::rtc::signaling::{Cause, Link, Outbox, Signaling};
use switchboard::rtc::{ConnectionState, DataChannel, Peer, PeerConfig, PeerEvent, RtcPeer as _};
use tokio::sync::mpsc;

use crate::access::{Access, AccessArgs};
use crate::dc::echo;
use crate::ice::{IceArgs, MediaArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The node's v1 endpoint, e.g. ws://127.0.0.1:8090/v1/ws. Give it more than once for
    /// several nodes: the first that answers takes the session, and resumes try them all.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// The room to join.
    #[arg(long)]
    room: String,
    /// Seconds to stay; 0 = until SIGINT.
    #[arg(long, default_value_t = 0)]
    duration_secs: u64,
    /// When the signaling connection drops (a node restarting, say), connect again with backoff
    /// (200 ms doubling to 5 s), join again and call whoever is there.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    reconnect: bool,
    #[command(flatten)]
    ice: IceArgs,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    media: MediaArgs,
}

/// One remote peer and our connection to it.
struct Remote {
    peer: Arc<Peer>,
    /// Its signals, applied in order by a task of their own.
    signals: mpsc::UnboundedSender<Value>,
    tracks_added: bool,
    /// We offered the call: the impolite side, which restarts ICE first.
    offerer: bool,
}

/// The resumes of the signaling session, across fresh sessions too.
#[derive(Default)]
struct Resumes {
    /// Every resume: after a drain or after a break.
    all: u32,
    /// The ones after a broken socket.
    after_break: u32,
}

/// How long the polite side of a call waits, after a resume, before it restarts a broken ICE
/// itself: the impolite side restarts at once, and two restarts offered together would be
/// glare (which webrtc-rs 0.17 cannot roll back).
const POLITE_RESTART_DELAY: Duration = Duration::from_secs(2);

fn emit(v: Value) {
    println!("{v}");
}

pub async fn run(args: Args) -> Result<(), String> {
    let deadline = match args.duration_secs {
        0 => None,
        secs => Some(tokio::time::Instant::now() + Duration::from_secs(secs)),
    };
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let mut summary = serde_json::Map::new();
    let mut backoff = Duration::from_millis(200);
    let mut resumes = Resumes::default();
    loop {
        match session(&args, deadline, &mut stop, &mut summary, &mut backoff, &mut resumes).await {
            Ok(()) => break,
            Err(e) if args.reconnect => {
                emit(json!({"event": "disconnected", "error": e, "retry_in_ms": backoff.as_millis() as u64}));
                let wait = tokio::time::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                tokio::select! {
                    _ = wait => {}
                    _ = until(deadline) => break,
                    _ = stop.changed() => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    emit(json!({
        "event": "done",
        "resumes": resumes.all,
        "resumes_after_break": resumes.after_break,
        "received": summary,
    }));
    Ok(())
}

/// Resolves at `deadline`, or never.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One signaling session: connect, join, call and answer until the deadline or a stop (`Ok`)
/// or until the connection fails (`Err`). What each remote peer sent goes into `summary`; each
/// resume of the signaling session (a draining node's `reconnect`, a broken socket) counts in
/// `resumes`.
async fn session(
    args: &Args,
    deadline: Option<tokio::time::Instant>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    summary: &mut serde_json::Map<String, Value>,
    backoff: &mut Duration,
    resumes: &mut Resumes,
) -> Result<(), String> {
    let step = Duration::from_secs(10);
    // A token and ICE servers per session: a fresh token (and fresh TURN credentials) after
    // a reconnect, since the old ones may have expired in between.
    let access = Access::new(&args.access)?;
    let token = access.token(&args.room, None).await?;
    let config = access.peer_config(&args.ice, token.as_deref()).await?;
    let urls: Vec<String> = args
        .url
        .iter()
        .map(|url| match &token {
            Some(t) => with_access_token(url, t),
            None => url.clone(),
        })
        .collect();
    let mut sig = Signaling::connect_any(&urls, step).await.map_err(|e| format!("connect: {e}"))?;
    let present = sig.join(&args.room, step).await.map_err(|e| format!("join: {e}"))?;
    *backoff = Duration::from_millis(200);
    let ids: Vec<String> = present.iter().map(ToString::to_string).collect();
    emit(
        json!({"event": "joined", "room": args.room, "peer_id": sig.peer_id.to_string(), "node": sig.node_id, "peers": ids}),
    );
    let (events_tx, mut events) = mpsc::unbounded_channel::<(PeerId, PeerEvent<DataChannel>)>();
    let mut remotes: HashMap<PeerId, Remote> = HashMap::new();
    let result = async {
        for id in present {
            let r = open(&sig.outbox, &args.room, &config, id, true, &args.media, events_tx.clone()).await?;
            remotes.insert(id, r);
        }
        loop {
            tokio::select! {
                _ = until(deadline) => return Ok(()),
                _ = stop.changed() => return Ok(()),
                // The signaling socket was lost (a drain, a break) and the task resumes the
                // session by itself (after a drain on another node; after a break on any):
                // same peer id, same room, the same calls. A call whose ICE broke meanwhile
                // restarts it.
                Some(link) = sig.link.recv() => match link {
                    Link::Lost(cause) => {
                        let (cause, why) = match cause {
                            Cause::Drain => ("drain", None),
                            Cause::Break(why) => ("break", Some(why)),
                        };
                        emit(json!({"event": "signaling-lost", "cause": cause, "why": why}));
                    }
                    Link::Resumed(r) => {
                        resumes.all += 1;
                        let why = match r.cause {
                            Cause::Drain => None,
                            Cause::Break(why) => {
                                resumes.after_break += 1;
                                Some(why)
                            }
                        };
                        emit(json!({
                            "event": "resumed",
                            "peer_id": sig.peer_id.to_string(),
                            "cause": if why.is_some() { "break" } else { "drain" },
                            "why": why,
                            "from_node": r.from_node,
                            "node": r.node_id,
                            "gap_ms": r.gap.as_millis() as u64,
                            "away_ms": r.away.as_millis() as u64,
                            "attempts": r.attempts,
                            "resent": r.resent,
                            "resumes": resumes.all,
                            "resumes_after_break": resumes.after_break,
                        }));
                        for (id, remote) in &remotes {
                            restart_broken_ice(remote, *id, "resumed");
                        }
                    }
                },
                ev = sig.events.recv() => match ev {
                    Some(Ok(Event::PeerJoined { peer, .. })) => {
                        emit(json!({"event": "peer-joined", "peer": peer.peer_id.to_string()}));
                        let r = open(&sig.outbox, &args.room, &config, peer.peer_id, false, &args.media, events_tx.clone()).await?;
                        remotes.insert(peer.peer_id, r);
                    }
                    Some(Ok(Event::Signal { from, data, .. })) => {
                        let r = match remotes.entry(from) {
                            std::collections::hash_map::Entry::Occupied(r) => r.into_mut(),
                            // A peer we had not heard of (it joined before us and offers first).
                            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                                open(&sig.outbox, &args.room, &config, from, false, &args.media, events_tx.clone()).await?,
                            ),
                        };
                        let _ = r.signals.send(data);
                    }
                    // Another member's socket broke (it is held for its resume) or it resumed.
                    Some(Ok(Event::PeerState { peer_id, state, .. })) => {
                        emit(json!({"event": "peer-state", "peer": peer_id.to_string(), "state": state.as_str()}));
                        if state == PeerState::Connected
                            && let Some(remote) = remotes.get(&peer_id)
                        {
                            restart_broken_ice(remote, peer_id, "peer-resumed");
                        }
                    }
                    Some(Ok(Event::PeerLeft { peer_id, reason, .. })) => {
                        if let Some(r) = remotes.remove(&peer_id) {
                            let received = r.peer.received().snapshot();
                            emit(json!({"event": "peer-left", "peer": peer_id.to_string(), "reason": reason, "received": received}));
                            summary.insert(peer_id.to_string(), received);
                            r.peer.close().await;
                        }
                    }
                    Some(Ok(Event::Error { code, message, .. })) => {
                        emit(json!({"event": "error", "code": code.as_str(), "message": message}));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("signaling: {e}")),
                    None => return Err("signaling ended".to_string()),
                },
                Some((from, ev)) = events.recv() => match ev {
                    PeerEvent::State(state) => {
                        emit(json!({"event": "state", "peer": from.to_string(), "state": state.to_string()}));
                        if state == ConnectionState::Connected
                            && let Some(r) = remotes.get_mut(&from)
                            && !r.tracks_added
                        {
                            // The answering side's own tracks: a renegotiation it offers.
                            r.tracks_added = true;
                            add_media(&r.peer, &args.media).await?;
                        }
                    }
                    PeerEvent::DataChannel(dc) => echo(dc),
                    PeerEvent::NegotiationFailed(e) => {
                        emit(json!({"event": "negotiation-failed", "peer": from.to_string(), "error": e}));
                    }
                },
            }
        }
    }
    .await;
    sig.outbox.send(&json!({"type": "leave", "room": args.room}));
    for (id, r) in remotes {
        summary.insert(id.to_string(), r.peer.received().snapshot());
        r.peer.close().await;
    }
    result
}

/// Opens a connection to `remote`; as the offerer, with a data channel and media at once.
async fn open(
    outbox: &Outbox,
    room: &str,
    config: &PeerConfig,
    remote: PeerId,
    offerer: bool,
    media: &MediaArgs,
    events_tx: mpsc::UnboundedSender<(PeerId, PeerEvent<DataChannel>)>,
) -> Result<Remote, String> {
    let (out, room) = (outbox.clone(), room.to_string());
    let send = Arc::new(move |data: Value| out.signal(&room, remote, data));
    let (peer, mut peer_events) = Peer::new(!offerer, config, send).await.map_err(|e| format!("peer: {e}"))?;
    let peer = Arc::new(peer);
    tokio::spawn(async move {
        while let Some(ev) = peer_events.recv().await {
            if events_tx.send((remote, ev)).is_err() {
                return;
            }
        }
    });
    let (signals, mut queue) = mpsc::unbounded_channel::<Value>();
    let p = Arc::clone(&peer);
    tokio::spawn(async move {
        while let Some(data) = queue.recv().await {
            // The browser SDK tells its peers its mute state as signal data: application data,
            // not negotiation, so it is reported rather than fed to the engine.
            if let Some(muted) = data.get("muted") {
                emit(json!({"event": "peer-muted", "peer": remote.to_string(), "muted": muted}));
                continue;
            }
            if let Err(e) = p.handle_signal(data).await {
                emit(json!({"event": "signal-failed", "peer": remote.to_string(), "error": e.to_string()}));
            }
        }
    });
    if offerer {
        let dc = peer.add(Some("chat"), media.sources()?.into()).await.map_err(|e| format!("data channel: {e}"))?;
        if let Some(dc) = dc {
            echo(dc);
        }
    }
    Ok(Remote { peer, signals, tracks_added: offerer, offerer })
}

/// After a resume (ours, or the remote's): if the call's ICE went `disconnected` or `failed`
/// while signaling was away, restarts it. The impolite side (the call's offerer) does it at
/// once; the polite side only if it is still broken [`POLITE_RESTART_DELAY`] later.
fn restart_broken_ice(remote: &Remote, id: PeerId, after: &'static str) {
    let broken = |s| matches!(s, ConnectionState::Disconnected | ConnectionState::Failed);
    if !broken(remote.peer.connection_state()) {
        return;
    }
    let (peer, polite) = (Arc::clone(&remote.peer), !remote.offerer);
    tokio::spawn(async move {
        if polite {
            tokio::time::sleep(POLITE_RESTART_DELAY).await;
        }
        let state = peer.connection_state();
        if !broken(state) {
            return;
        }
        emit(json!({"event": "ice-restart", "peer": id.to_string(), "state": state.as_str(), "after": after}));
        if let Err(e) = peer.restart_ice().await {
            emit(json!({"event": "ice-restart-failed", "peer": id.to_string(), "error": e.to_string()}));
        }
    });
}

async fn add_media(peer: &Peer, media: &MediaArgs) -> Result<(), String> {
    peer.add(None, media.sources()?.into()).await.map_err(|e| format!("add tracks: {e}"))?;
    Ok(())
}
