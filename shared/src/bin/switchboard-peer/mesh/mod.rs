//! `load` with real WebRTC: `--rooms` rooms of `--peers-per-room` webrtc-rs peers, every pair
//! of a room connected (a full mesh: k peers hold k-1 connections each), all rooms at once.
//!
//! Peer j of room r connects to `urls[(r + j) % n]`, so with several URLs a room spans nodes.
//! The peers of a room join one after another, each once the previous has its `joined`: who
//! joins later calls the peers already there (it is in no one's `joined` list yet, they are in
//! its own), so exactly one side of every pair offers and no negotiation ever meets another
//! (webrtc-rs 0.17 cannot roll back a local offer; see `switchboard::rtc`). Perfect-negotiation
//! roles still come from the peer ids (the larger id is polite), so both sides agree on who
//! would yield. The caller offers a data channel and its video and audio; the callee answers
//! and, once connected, adds its own tracks (a second negotiation, which it offers).
//!
//! Measured per peer: join (`join` sent → `joined`), connected (`joined` → the data channels to
//! all k-1 others open), and the round trip of `--messages` echoes on each channel it opened.
//! After `--media-secs` of media, a peer that received no RTP from some other peer fails.
//! The room hangs up once all its peers have reported (or failed). One JSON line: percentiles
//! (p50/p95/p99/max) and failures by cause (the message with its numbers blanked).

mod member;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::rtc::PeerConfig;
use tokio::sync::{mpsc, oneshot, watch};

use crate::access::{Access, AccessArgs};
use crate::ice::{IceArgs, MediaArgs};
use crate::stats::{percentile, round3};
use member::{Turn, member};

#[derive(clap::Args, Debug)]
pub struct MeshArgs {
    /// WebRTC: data-channel messages each caller sends on each of its channels (echoed back,
    /// checked byte for byte, timed).
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// WebRTC: bytes per data-channel message (at least 8: a sequence number leads).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    message_bytes: u32,
    /// WebRTC: seconds of video and audio both ways once a peer is connected; 0 = data
    /// channels only, no tracks.
    #[arg(long, default_value_t = 2)]
    media_secs: u64,
    #[command(flatten)]
    ice: IceArgs,
    #[command(flatten)]
    access: AccessArgs,
    #[command(flatten)]
    media: MediaArgs,
}

/// What every peer of the run shares.
struct Plan {
    urls: Vec<String>,
    peers: usize,
    timeout: Duration,
    messages: usize,
    message_bytes: usize,
    media_secs: u64,
    media: MediaArgs,
    access: Access,
    config: PeerConfig,
}

/// One peer's figures.
struct Figures {
    join_ms: f64,
    connected_ms: f64,
    rtts: Vec<f64>,
    rtp_packets: u64,
}

type Outcome = Result<Figures, String>;

pub async fn run(args: &crate::load::Args) -> Result<(), String> {
    let m = &args.rtc;
    if args.proto.is_some_and(|p| p != crate::wire::Proto::V1) {
        return Err("WebRTC load speaks v1 (--signal-only for the seed relay)".into());
    }
    let access = Access::new(&m.access)?;
    let rooms = args.rooms as usize;
    let names: Vec<String> = match access.token_room()? {
        Some(room) if rooms == 1 => vec![room],
        Some(_) => return Err("--token opens one room: use --rooms 1, or --api-key for a token per peer".into()),
        None => {
            let tag = rand::random::<u32>();
            (0..rooms).map(|r| format!("load-{tag:08x}-{r}")).collect()
        }
    };
    // ICE servers once for the run (asked with a token for the first room, when tokens are in
    // use); media files read once up front, so a bad path fails before any peer starts.
    let probe = access.token(&names[0], Some(0)).await?;
    let config = access.peer_config(&m.ice, probe.as_deref()).await?;
    m.media.sources()?;
    let plan = Arc::new(Plan {
        urls: args.urls.clone(),
        peers: args.peers_per_room as usize,
        timeout: Duration::from_secs(args.timeout_secs),
        messages: m.messages,
        message_bytes: m.message_bytes as usize,
        media_secs: m.media_secs,
        media: m.media.clone(),
        access,
        config,
    });

    let started = Instant::now();
    let rooms_run: Vec<_> =
        names.into_iter().enumerate().map(|(r, name)| tokio::spawn(room(r, name, Arc::clone(&plan)))).collect();
    let mut outcomes = Vec::new();
    for task in rooms_run {
        outcomes.extend(task.await.map_err(|e| format!("room task: {e}"))?);
    }
    let report = summarize(&plan, rooms, &outcomes, started.elapsed());
    println!("{report}");
    if report["connected_peers"] == 0 { Err("no peer connected".into()) } else { Ok(()) }
}

/// The run's JSON line.
fn summarize(plan: &Plan, rooms: usize, outcomes: &[Outcome], took: Duration) -> Value {
    let (mut joins, mut connects, mut rtts) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    let mut rtp = 0;
    for o in outcomes {
        match o {
            Ok(f) => {
                joins.push(f.join_ms);
                connects.push(f.connected_ms);
                rtts.extend_from_slice(&f.rtts);
                rtp += f.rtp_packets;
            }
            Err(e) => *failed.entry(cause(e)).or_default() += 1,
        }
    }
    let k = plan.peers;
    json!({
        "mode": "webrtc",
        "urls": plan.urls.len(),
        "rooms": rooms,
        "peers_per_room": k,
        "peers": outcomes.len(),
        "connections": rooms * k * (k - 1) / 2,
        "connected_peers": connects.len(),
        "failed": failed,
        "join_ms": percentiles(&mut joins),
        "connected_ms": percentiles(&mut connects),
        "rtt_ms": percentiles(&mut rtts),
        "rtp_packets_received": rtp,
        "relay_only": plan.config.relay_only,
        "total_secs": round3(took.as_secs_f64()),
    })
}

fn percentiles(v: &mut [f64]) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "p50": percentile(v, 0.5),
        "p95": percentile(v, 0.95),
        "p99": percentile(v, 0.99),
        "max": v.last().copied().map(round3),
    })
}

/// A failure's message with digits blanked, so that failures of one kind count together.
fn cause(e: &str) -> String {
    let mut out = String::new();
    for c in e.chars().take(120) {
        let c = if c.is_ascii_digit() { '#' } else { c };
        if !(c == '#' && out.ends_with('#')) {
            out.push(c);
        }
    }
    out
}

/// Runs the peers of one room; returns each peer's outcome once the room has hung up.
async fn room(r: usize, name: String, plan: Arc<Plan>) -> Vec<Outcome> {
    let (hangup_tx, hangup) = watch::channel(false);
    let (report_tx, mut reports) = mpsc::unbounded_channel::<(usize, Outcome)>();
    let mut previous: Option<oneshot::Receiver<()>> = None;
    let mut members = Vec::with_capacity(plan.peers);
    for j in 0..plan.peers {
        let (joined_tx, joined_rx) = oneshot::channel();
        let url = plan.urls[(r + j) % plan.urls.len()].clone();
        let turn = Turn { after: previous.replace(joined_rx), joined: joined_tx };
        let (plan, name, report, hangup) = (Arc::clone(&plan), name.clone(), report_tx.clone(), hangup.clone());
        members.push(tokio::spawn(async move { member(j, url, name, &plan, turn, report, hangup).await }));
    }
    drop(report_tx);
    let mut outcomes: Vec<Option<Outcome>> = (0..plan.peers).map(|_| None).collect();
    let mut left = plan.peers;
    while left > 0 {
        match reports.recv().await {
            Some((j, o)) => {
                outcomes[j] = Some(o);
                left -= 1;
            }
            None => break,
        }
    }
    let _ = hangup_tx.send(true);
    for m in members {
        let _ = m.await;
    }
    outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err("the peer's task ended without a report".into()))).collect()
}

#[cfg(test)]
mod tests {
    use super::cause;

    #[test]
    fn causes_blank_their_numbers() {
        assert_eq!(
            cause("timeout: 2 of 3 channels open, 10 echo runs done"),
            "timeout: # of # channels open, # echo runs done"
        );
    }
}
