//! `smoke`: one real WebRTC call through Switchboard, checked end to end.
//!
//! Two peers (A on the first `--url`, B on the second or the first again) join a fresh room;
//! A (impolite) offers a reliable ordered data channel and its video and audio, B (polite)
//! answers, then adds its own tracks and offers in turn (a second negotiation); they exchange `--messages`
//! messages that B echoes and A checks byte for byte, send video and audio both ways for
//! `--media-secs`, optionally renegotiate mid-call (B adds a track, then `--messages` more), and
//! hang up. Prints one JSON report line, then the verdict on a line of its own (`ok: …` or
//! `FAILED: …`); exits non-zero with the reason on any failure or at `--timeout-secs`.
//!
//! With `--gateway` the ICE servers come from the gateway; with `--token` or `--api-key` the
//! peers connect with access tokens (see `access`). Many calls at once: `load`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::client::{ClientError, with_access_token};
use switchboard::protocol::v1::Event;
use switchboard::rtc::media::Source;
use switchboard::rtc::signaling::Signaling;
use switchboard::rtc::{ConnectionState, DataChannel, Peer, PeerEvent, RtcPeer as _};
use tokio::sync::{mpsc, oneshot};

use crate::access::{Access, AccessArgs};
use crate::dc::{echo, exchange, messages};
use crate::ice::{IceArgs, MediaArgs};
use crate::stats::{percentile, round3};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A node's v1 endpoint, e.g. ws://127.0.0.1:8090/v1/ws. Give two to put the peers on two
    /// nodes (A on the first, B on the second).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Data-channel messages A sends and B echoes (with --renegotiate, as many again after it).
    #[arg(long, default_value_t = 50)]
    messages: usize,
    /// Bytes per data-channel message (at least 8: a sequence number leads).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    message_bytes: u32,
    /// Seconds of media both ways.
    #[arg(long, default_value_t = 2)]
    media_secs: u64,
    /// Mid-call, B adds a second video track (a renegotiation); the data channel and media
    /// must carry on and A must receive the new track.
    #[arg(long)]
    renegotiate: bool,
    #[command(flatten)]
    ice: IceArgs,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    media: MediaArgs,
    /// The whole call must be done within this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

pub async fn run(args: Args) -> Result<(), String> {
    let limit = Duration::from_secs(args.timeout_secs);
    let outcome = match tokio::time::timeout(limit, call(&args)).await {
        Ok(r) => r,
        Err(_) => Err(format!("the call did not complete within {}s", args.timeout_secs)),
    };
    // The JSON line is for scripts; the verdict comes last, on a line of its own: where a reader
    // of a terminal or of a Job's log looks first. One write for both, so that a reader that
    // stops after the JSON (`| head -1`) does not cut the second off with a broken pipe.
    match outcome {
        Ok(report) => {
            println!("{report}\nok: {}", summary(&report));
            Ok(())
        }
        Err(e) => {
            println!("{}\nFAILED: {e}", json!({"ok": false, "error": e}));
            Err(e)
        }
    }
}

/// The verdict line's account of a call that worked, from its report.
fn summary(r: &Value) -> String {
    let mut nodes: Vec<&str> = r["nodes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    nodes.dedup();
    let dc = &r["data_channel"];
    let after = match dc["after_renegotiation"].as_u64() {
        Some(n) => format!(" ({n} of them after the renegotiation)"),
        None => String::new(),
    };
    format!(
        "one call through {}; joined → data channel open in {} ms; {} data-channel messages echoed intact{after}; RTP both ways",
        nodes.join(" and "),
        r["join_to_open_ms"],
        dc["messages_echoed_intact"],
    )
}

/// What the signaling and the peer connection of one side report to the call.
#[derive(Default)]
struct Watch {
    answered: Option<mpsc::UnboundedSender<Instant>>,
    left: Option<mpsc::UnboundedSender<Instant>>,
    connected: Option<oneshot::Sender<Instant>>,
    channel: Option<oneshot::Sender<DataChannel>>,
}

async fn call(args: &Args) -> Result<Value, String> {
    let step = Duration::from_secs(args.timeout_secs);
    let t0 = Instant::now();
    let since = |from: Instant, to: Instant| round3(to.duration_since(from).as_secs_f64() * 1000.0);
    let access = Access::new(&args.access)?;
    // A token opens one room: then the call happens there.
    let room = match access.token_room()? {
        Some(room) => room,
        None => format!("smoke-{:016x}", rand::random::<u64>()),
    };
    let (token_a, token_b) = (access.token(&room, Some(1)).await?, access.token(&room, Some(2)).await?);
    let config = access.peer_config(&args.ice, token_a.as_deref()).await?;
    let url = |url: &String, token: &Option<String>| match token {
        Some(t) => with_access_token(url, t),
        None => url.clone(),
    };
    let url_a = url(&args.urls[0], &token_a);
    let url_b = url(args.urls.get(1).unwrap_or(&args.urls[0]), &token_b);
    let err = |what: &'static str| move |e: ClientError| format!("{what}: {e}");

    let mut sig_a = Signaling::connect(&url_a, step).await.map_err(err("A connect"))?;
    let mut sig_b = Signaling::connect(&url_b, step).await.map_err(err("B connect"))?;
    sig_a.join(&room, step).await.map_err(err("A join"))?;
    let seen = sig_b.join(&room, step).await.map_err(err("B join"))?;
    if seen != [sig_a.peer_id] {
        return Err(format!("B's joined listed {seen:?}, expected A ({})", sig_a.peer_id));
    }
    let (a_id, b_id) = (sig_a.peer_id, sig_b.peer_id);
    loop {
        if let Event::PeerJoined { peer, .. } = sig_a.next(step).await.map_err(err("A waiting for B"))?
            && peer.peer_id == b_id
        {
            break;
        }
    }
    let joined = Instant::now();

    // A's first offer out, for the offer→answer and connect times.
    let (offer_tx, offer_rx) = oneshot::channel::<Instant>();
    let offer_tx = Mutex::new(Some(offer_tx));
    let (out_a, room_a) = (sig_a.outbox.clone(), room.clone());
    let (peer_a, events_a) = Peer::new(
        false,
        &config,
        Arc::new(move |data: Value| {
            if data["type"] == "offer"
                && let Some(tx) = offer_tx.lock().ok().and_then(|mut t| t.take())
            {
                let _ = tx.send(Instant::now());
            }
            out_a.signal(&room_a, b_id, data);
        }),
    )
    .await
    .map_err(|e| format!("A: {e}"))?;
    let (out_b, room_b) = (sig_b.outbox.clone(), room.clone());
    let (peer_b, events_b) = Peer::new(true, &config, Arc::new(move |data: Value| out_b.signal(&room_b, a_id, data)))
        .await
        .map_err(|e| format!("B: {e}"))?;
    let (peer_a, peer_b) = (Arc::new(peer_a), Arc::new(peer_b));

    // A offers its channel and tracks, in one offer; B adds its own once connected, which
    // makes B the offerer of a second negotiation. (Adding them at once would be glare:
    // webrtc-rs 0.17 cannot roll a local offer back, so the polite side could not yield; see
    // rtc/mod.rs.)
    let dc_a = peer_a
        .add(Some("smoke"), args.media.sources()?.into())
        .await
        .map_err(|e| format!("A data channel and tracks: {e}"))?
        .ok_or("A: no data channel")?;
    let (open_tx, open_rx) = oneshot::channel();
    let mut echoes = messages(&dc_a, Some(open_tx));

    let (fail_tx, mut failed) = mpsc::unbounded_channel::<String>();
    let (answered_tx, mut answered) = mpsc::unbounded_channel();
    let (left_tx, mut left) = mpsc::unbounded_channel();
    let (connected_tx, connected_rx) = oneshot::channel();
    let (channel_tx, channel_rx) = oneshot::channel();
    let watch_a =
        Watch { answered: Some(answered_tx), left: Some(left_tx), connected: Some(connected_tx), channel: None };
    let watch_b = Watch { channel: Some(channel_tx), ..Watch::default() };
    let tasks = [
        tokio::spawn(watch(sig_a.events, events_a, Arc::clone(&peer_a), watch_a, fail_tx.clone(), "A")),
        tokio::spawn(watch(sig_b.events, events_b, Arc::clone(&peer_b), watch_b, fail_tx, "B")),
    ];

    let offer_at = offer_rx.await.map_err(|_| "A never sent an offer")?;
    let answer_at = first(answered.recv(), &mut failed, "A never got an answer").await?;
    let connected_at = first(async { connected_rx.await.ok() }, &mut failed, "A never connected").await?;
    let open_at = first(async { open_rx.await.ok() }, &mut failed, "the data channel never opened").await?;
    let tracks_before = peer_a.received().tracks.load(Ordering::Relaxed);
    peer_b.add(None, args.media.sources()?.into()).await.map_err(|e| format!("B add tracks: {e}"))?;
    let b_offered = Instant::now();
    while peer_a.received().tracks.load(Ordering::Relaxed) < tracks_before + 2 {
        if let Ok(f) = failed.try_recv() {
            return Err(f);
        }
        if b_offered.elapsed() > step {
            return Err("A never received B's tracks (B's negotiation)".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b_tracks_at = Instant::now();
    // B echoes everything on the channel A opened.
    let dc_b = first(async { channel_rx.await.ok() }, &mut failed, "B never saw the data channel").await?;
    echo(dc_b);

    let size = args.message_bytes as usize;
    let mut rtts = exchange(&dc_a, &mut echoes, 0..args.messages, size, step).await?;
    tokio::time::sleep(Duration::from_secs(args.media_secs)).await;

    let mut renegotiation = Value::Null;
    let mut after_renegotiation = None;
    if args.renegotiate {
        let tracks = peer_a.received().tracks.load(Ordering::Relaxed);
        let video_before = peer_a.received().video_packets.load(Ordering::Relaxed);
        let started = Instant::now();
        peer_b.add_source(Source::video("video-2")).await.map_err(|e| format!("B renegotiation: {e}"))?;
        while peer_a.received().tracks.load(Ordering::Relaxed) <= tracks {
            if let Ok(f) = failed.try_recv() {
                return Err(f);
            }
            if started.elapsed() > step {
                return Err("A never received the track B added mid-call".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let new_track_ms = since(started, Instant::now());
        // The channel and the media carry on after the renegotiation.
        rtts.extend(exchange(&dc_a, &mut echoes, args.messages..2 * args.messages, size, step).await?);
        after_renegotiation = Some(args.messages);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let video_since = peer_a.received().video_packets.load(Ordering::Relaxed).saturating_sub(video_before);
        if video_since == 0 {
            return Err("video from B stopped after the renegotiation".into());
        }
        renegotiation = json!({"new_track_ms": new_track_ms, "video_packets_since": video_since});
    }

    let (to_b, to_a) = (peer_b.received().snapshot(), peer_a.received().snapshot());
    for (name, r) in [("from A to B", &to_b), ("from B to A", &to_a)] {
        if r["video_packets"] == 0 || r["audio_packets"] == 0 {
            return Err(format!("no RTP {name}: {r}"));
        }
    }

    // Hang up: B leaves the room; A must hear of it.
    let hangup = Instant::now();
    sig_b.outbox.send(&json!({"type": "leave", "room": room}));
    let left_at = first(left.recv(), &mut failed, "A never saw B hang up").await?;
    peer_a.close().await;
    peer_b.close().await;
    for t in tasks {
        t.abort();
    }

    rtts.sort_by(f64::total_cmp);
    Ok(json!({
        "ok": true,
        "room": room,
        "nodes": [sig_a.node_id, sig_b.node_id],
        "join_ms": since(t0, joined),
        "offer_answer_ms": since(offer_at, answer_at),
        "ice_connected_ms": since(offer_at, connected_at),
        "data_channel_open_ms": since(offer_at, open_at),
        "join_to_open_ms": since(joined, open_at),
        "b_tracks_negotiated_ms": since(b_offered, b_tracks_at),
        // Every message A sent and B echoed, checked byte for byte (any other outcome fails the
        // call): --messages, and as many again after a renegotiation.
        "data_channel": {
            "messages_echoed_intact": rtts.len(),
            "after_renegotiation": after_renegotiation,
            "bytes_each": args.message_bytes,
            "echo_rtt_p50_ms": percentile(&rtts, 0.5),
            "echo_rtt_p99_ms": percentile(&rtts, 0.99),
        },
        "rtp": {"a_to_b": to_b, "b_to_a": to_a},
        "renegotiation": renegotiation,
        "hangup_ms": since(hangup, left_at),
        "total_ms": since(t0, Instant::now()),
    }))
}

/// Whichever comes first: `what` happening, or a failure reported by either side.
async fn first<T>(
    what: impl std::future::Future<Output = Option<T>>,
    failed: &mut mpsc::UnboundedReceiver<String>,
    never: &str,
) -> Result<T, String> {
    tokio::select! {
        v = what => v.ok_or_else(|| never.to_string()),
        f = failed.recv() => Err(f.unwrap_or_else(|| never.to_string())),
    }
}

/// Feeds one side's signals to its peer connection, in order, and reports what the call waits
/// for.
async fn watch(
    mut signals: mpsc::UnboundedReceiver<Result<Event, ClientError>>,
    mut events: mpsc::UnboundedReceiver<PeerEvent<DataChannel>>,
    peer: Arc<Peer>,
    mut w: Watch,
    fail: mpsc::UnboundedSender<String>,
    name: &'static str,
) {
    loop {
        tokio::select! {
            s = signals.recv() => match s {
                Some(Ok(Event::Signal { data, .. })) => {
                    let answer = data["type"] == "answer";
                    match peer.handle_signal(data).await {
                        Err(e) => drop(fail.send(format!("{name}: {e}"))),
                        Ok(()) if answer => {
                            if let Some(tx) = &w.answered {
                                let _ = tx.send(Instant::now());
                            }
                        }
                        Ok(()) => {}
                    }
                }
                Some(Ok(Event::PeerLeft { .. })) => {
                    if let Some(tx) = &w.left {
                        let _ = tx.send(Instant::now());
                    }
                }
                Some(Ok(Event::Error { code, message, .. })) => {
                    let _ = fail.send(format!("{name}: server error {}: {message}", code.as_str()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = fail.send(format!("{name}: signaling: {e}"));
                    return;
                }
                None => return,
            },
            e = events.recv() => match e {
                Some(PeerEvent::State(ConnectionState::Connected)) => {
                    if let Some(tx) = w.connected.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
                Some(PeerEvent::State(ConnectionState::Failed)) => {
                    let _ = fail.send(format!("{name}: the peer connection failed"));
                }
                Some(PeerEvent::DataChannel(dc)) => {
                    if let Some(tx) = w.channel.take() {
                        let _ = tx.send(dc);
                    }
                }
                Some(PeerEvent::NegotiationFailed(e)) => {
                    let _ = fail.send(format!("{name}: negotiation: {e}"));
                }
                Some(PeerEvent::State(_)) => {}
                None => return,
            },
        }
    }
}
