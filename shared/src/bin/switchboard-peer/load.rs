//! `switchboard-peer load`: many peers at once, in one of two modes.
//!
//! - Real WebRTC (the default; feature `rtc`): rooms of `--peers-per-room` webrtc-rs peers in a
//!   full mesh — see `mesh`.
//! - `--signal-only` (implied by `--proto seed`: the WebRTC mode speaks v1): closed-loop
//!   signaling relay load, the same workload as `bench/load/load.js`, so Rust and Node runs of
//!   it are comparable. The rest of this module.
//!
//! N rooms of two peers; A connects to `urls[i % n]` and B to `urls[(i + 1) % n]`, so with two
//! URLs every room spans two nodes. Rooms are set up 50 at a time (connect A, connect B, A
//! joins, B joins), timing each join from sending `join` to receiving `joined`. Then every room
//! runs its rounds at once: A sends an offer; B, on receiving it, sends two ICE candidates and
//! an answer; A, on receiving the answer, starts the next round. Each relayed message carries
//! its send time, so its latency is `receive time - ts` on the process clock.
//!
//! One task drives both peers of a room, strictly in protocol order. That is the same causality
//! as load.js's callbacks (B only ever has an offer to read, A only candidates and the answer),
//! without a second task and channel per room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchboard::client::{Client, ClientError};
use switchboard::protocol::v1::{self, Event, Request, seq_of};
use tokio::time::Instant;

use crate::stats::{self, JsonLine, now_ms};
use crate::wire::{self, Inbound, Proto, RoomFrames};

/// Rooms set up concurrently, as in load.js.
const JOIN_BATCH: usize = 50;
/// Messages relayed per round: an offer, two candidates, an answer.
const MSGS_PER_ROUND: u64 = 4;
/// How many server errors and room failures are printed before the rest are only counted.
const MAX_REPORTED: u32 = 5;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Relay signaling messages only (offer, candidates, answer in a closed loop), no WebRTC:
    /// what the signaling path alone sustains. Implied by --proto seed.
    #[arg(long)]
    pub signal_only: bool,
    /// Protocol the peers speak: `seed` (endpoint /ws; relay only) or `v1` (endpoint /v1/ws).
    /// Default: seed with --signal-only, v1 otherwise.
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// Comma-separated WebSocket URLs. Peer A of room i connects to urls[i % n], peer B to
    /// urls[(i+1) % n]: with two URLs every room spans two nodes.
    #[arg(long, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// Number of rooms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,
    /// Peers in each room; every pair of a room connects (WebRTC mode). The relay has two.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub peers_per_room: u32,
    /// Offer/answer rounds per room; each relays 4 messages (offer, 2 candidates, answer).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Size in bytes of the SDP in each offer and answer ("v=0 " padded with 'x').
    #[arg(long, default_value_t = 3000)]
    pub sdp_bytes: usize,
    /// Relay: bound on the rounds phase (when it passes, the run stops and reports what was
    /// delivered: lost > 0), and on each connect and join during setup. WebRTC: bound on each
    /// peer's whole run.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// PID of a server under test, repeatable or comma-separated; its VmRSS at the end of the
    /// run is reported as node_rss_kib (summed over all pids, with node_rss_kib_each per pid).
    #[arg(long, value_delimiter = ',')]
    pub node_pid: Vec<u32>,
    /// Ask for this WebSocket subprotocol (e.g. switchboard.v1); the connect fails if the
    /// server does not agree to it.
    #[arg(long)]
    pub subprotocol: Option<String>,
    #[cfg(feature = "rtc")]
    #[command(flatten)]
    pub rtc: crate::mesh::MeshArgs,
}

impl Args {
    /// The relay generator rather than WebRTC peers.
    fn signal_only(&self) -> bool {
        self.signal_only || self.proto == Some(Proto::Seed)
    }
}

/// Setup parameters shared by every room task.
struct Setup {
    proto: Proto,
    urls: Vec<String>,
    sdp: String,
    timeout: Duration,
    subprotocol: Option<String>,
}

/// The two connected, joined peers of one room and the frames they will send.
struct Room {
    i: usize,
    proto: Proto,
    a: Client,
    b: Client,
    frames: RoomFrames,
}

/// What one room's run produced.
#[derive(Default)]
struct RoomStats {
    latencies_ms: Vec<f64>,
    /// Relayed messages received, including any without a `ts`.
    delivered: u64,
    server_errors: u32,
    timed_out: bool,
    failed: bool,
}

static REPORTED: AtomicU32 = AtomicU32::new(0);

/// Prints a problem to stderr unless enough have been printed already.
fn report(msg: impl FnOnce() -> String) {
    if REPORTED.fetch_add(1, Ordering::Relaxed) < MAX_REPORTED {
        eprintln!("switchboard-peer: {}", msg());
    }
}

pub async fn run(args: Args) -> Result<(), String> {
    if !args.signal_only() {
        #[cfg(feature = "rtc")]
        return crate::mesh::run(&args).await;
        #[cfg(not(feature = "rtc"))]
        return Err(format!(
            "WebRTC load needs switchboard-peer built with the `rtc` feature ({}); --signal-only runs the relay",
            crate::BUILD_WITH_RTC
        ));
    }
    if args.peers_per_room != 2 {
        return Err("--signal-only runs rooms of two peers (--peers-per-room 2)".into());
    }
    let proto = args.proto.unwrap_or(Proto::Seed);
    let rooms = args.rooms as usize;
    let setup = Arc::new(Setup {
        proto,
        urls: args.urls.clone(),
        sdp: wire::padded_sdp(args.sdp_bytes),
        timeout: Duration::from_secs(args.timeout_secs),
        subprotocol: args.subprotocol.clone(),
    });

    let mut ready = Vec::with_capacity(rooms);
    let mut join_lat = Vec::with_capacity(rooms * 2);
    for start in (0..rooms).step_by(JOIN_BATCH) {
        let batch: Vec<_> =
            (start..rooms.min(start + JOIN_BATCH)).map(|i| tokio::spawn(setup_room(i, setup.clone()))).collect();
        for task in batch {
            let (room, lat) = task.await.map_err(|e| format!("setup task: {e}"))??;
            join_lat.extend(lat);
            ready.push(room);
        }
    }

    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    let rounds = args.rounds;
    let tasks: Vec<_> = ready.into_iter().map(|room| tokio::spawn(run_room(room, rounds, deadline))).collect();
    let mut done = Vec::with_capacity(rooms);
    let mut lat = Vec::with_capacity(rooms * rounds as usize * MSGS_PER_ROUND as usize);
    let (mut delivered, mut server_errors, mut timed_out, mut failed) = (0u64, 0u32, 0u32, 0u32);
    for task in tasks {
        let (room, st) = task.await.map_err(|e| format!("room task: {e}"))?;
        lat.extend_from_slice(&st.latencies_ms);
        delivered += st.delivered;
        server_errors += st.server_errors;
        timed_out += u32::from(st.timed_out);
        failed += u32::from(st.failed);
        done.push(room);
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss_each: Vec<Option<u64>> =
        args.node_pid.iter().map(|&p| stats::rss_kib(p).map_err(|e| eprintln!("switchboard-peer: {e}")).ok()).collect();

    if timed_out > 0 {
        eprintln!(
            "switchboard-peer: {timed_out} of {rooms} rooms had not finished when the {}s timeout passed",
            args.timeout_secs
        );
    }
    if failed > 0 {
        eprintln!("switchboard-peer: {failed} of {rooms} rooms lost a connection");
    }

    lat.sort_unstable_by(f64::total_cmp);
    join_lat.sort_unstable_by(f64::total_cmp);
    let expected = rooms as u64 * u64::from(rounds) * MSGS_PER_ROUND;
    let mut line = JsonLine::new();
    line.str("proto", proto.name())
        .int("urls", args.urls.len())
        .int("rooms", rooms)
        .int("rounds", rounds)
        .int("conns", rooms * 2)
        .int("delivered", delivered)
        .int("lost", expected as i64 - delivered as i64)
        .num("secs", stats::round3(secs))
        .int("msgs_per_s", (delivered as f64 / secs).round() as u64)
        .num("p50_ms", stats::percentile(&lat, 0.5))
        .num("p99_ms", stats::percentile(&lat, 0.99))
        .num("max_ms", stats::percentile(&lat, 1.0))
        .num("join_p50_ms", stats::percentile(&join_lat, 0.5))
        .num("join_p99_ms", stats::percentile(&join_lat, 0.99));
    if server_errors > 0 {
        line.int("server_errors", server_errors);
    }
    if !rss_each.is_empty() {
        let total = rss_each.iter().copied().sum::<Option<u64>>();
        line.opt_int("node_rss_kib", total);
        if rss_each.len() > 1 {
            let each: Vec<String> =
                rss_each.iter().map(|r| r.map_or_else(|| "null".to_owned(), |k| k.to_string())).collect();
            line.raw("node_rss_kib_each", &format!("[{}]", each.join(",")));
        }
    }
    println!("{}", line.finish());

    // Close politely so the server sees normal closes rather than resets, but never let a
    // stuck server hold the exit for long.
    let closes = done.into_iter().flat_map(|r| [r.a, r.b]).map(|c| tokio::spawn(c.close()));
    let _ = tokio::time::timeout(Duration::from_secs(2), futures_util::future::join_all(closes)).await;
    Ok(())
}

/// Connects and joins both peers of room `i`; returns the room and its two join latencies.
async fn setup_room(i: usize, s: Arc<Setup>) -> Result<(Room, [f64; 2]), String> {
    let n = s.urls.len();
    let (url_a, url_b) = (&s.urls[i % n], &s.urls[(i + 1) % n]);
    let mut a = connect(url_a, &s).await?;
    let mut b = connect(url_b, &s).await?;
    let room = format!("room-{i}");
    let ctx = |who: &str, e: ClientError| format!("room {i} peer {who}: {e}");
    match s.proto {
        Proto::Seed => {
            let ja = join_seed(&mut a, &wire::seed_join(&room, &format!("a-{i}")), s.timeout)
                .await
                .map_err(|e| ctx("a", e))?;
            let jb = join_seed(&mut b, &wire::seed_join(&room, &format!("b-{i}")), s.timeout)
                .await
                .map_err(|e| ctx("b", e))?;
            Ok((Room { i, proto: s.proto, a, b, frames: RoomFrames::seed(i, &s.sdp) }, [ja, jb]))
        }
        Proto::V1 => {
            // The welcome is read before timing the join, so join latency is join alone.
            let a_welcome = welcome(&mut a, s.timeout).await.map_err(|e| ctx("a", e))?;
            welcome(&mut b, s.timeout).await.map_err(|e| ctx("b", e))?;
            let (ja, _) = join_v1(&mut a, &room, s.timeout).await.map_err(|e| ctx("a", e))?;
            let (jb, peers) = join_v1(&mut b, &room, s.timeout).await.map_err(|e| ctx("b", e))?;
            // Each side learns the other's id the way a real client would: B from the member
            // list in its `joined`, A from the `peer-joined` that B's join caused.
            let a_id = peers
                .iter()
                .map(|p| p.peer_id)
                .find(|&p| p == a_welcome)
                .ok_or_else(|| format!("room {i}: B's joined.peers lacks A ({a_welcome})"))?;
            let b_id = peer_joined(&mut a, &room, s.timeout).await.map_err(|e| ctx("a", e))?;
            let frames = RoomFrames::v1(&room, &a_id.to_string(), &b_id.to_string(), &s.sdp);
            Ok((Room { i, proto: s.proto, a, b, frames }, [ja, jb]))
        }
    }
}

/// Opens one peer's WebSocket, bounded by the setup timeout.
async fn connect(url: &str, s: &Setup) -> Result<Client, String> {
    match tokio::time::timeout(s.timeout, Client::connect_with(url, s.subprotocol.as_deref())).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("connect to {url}: no handshake within {:?}", s.timeout)),
    }
}

/// Sends a seed `join` and waits for `joined`; returns the join latency in ms.
async fn join_seed(c: &mut Client, join: &str, timeout: Duration) -> Result<f64, ClientError> {
    let t0 = now_ms();
    let deadline = Instant::now() + timeout;
    c.send_text(join).await?;
    loop {
        let text = c.recv_text_until(deadline).await?;
        match wire::classify(Proto::Seed, &text) {
            Inbound::Joined => return Ok(now_ms() - t0),
            Inbound::Error => return Err(refused(&text)),
            _ => {}
        }
    }
}

/// Reads v1's first frame, `welcome`, and returns the peer id it assigns.
async fn welcome(c: &mut Client, timeout: Duration) -> Result<switchboard::protocol::PeerId, ClientError> {
    match c.recv_event(timeout).await? {
        Event::Welcome { peer_id, .. } => Ok(peer_id),
        other => Err(ClientError::Closed { code: None, reason: format!("expected welcome first, got {other:?}") }),
    }
}

/// Sends a v1 `join` and waits for `joined`; returns the join latency in ms and the members
/// already in the room.
async fn join_v1(c: &mut Client, room: &str, timeout: Duration) -> Result<(f64, Vec<v1::PeerEntry>), ClientError> {
    let t0 = now_ms();
    let deadline = Instant::now() + timeout;
    c.send_text(wire::v1_join(room)).await?;
    loop {
        let text = c.recv_text_until(deadline).await?;
        match wire::classify(Proto::V1, &text) {
            Inbound::Joined => {
                let lat = now_ms() - t0;
                let peers = match serde_json::from_str::<Event>(&text) {
                    Ok(Event::Joined { peers, .. }) => peers,
                    Ok(_) => Vec::new(),
                    Err(source) => {
                        return Err(ClientError::Json { source, frame: text.chars().take(200).collect() });
                    }
                };
                return Ok((lat, peers));
            }
            Inbound::Error => return Err(refused(&text)),
            _ => {}
        }
    }
}

/// Waits for the `peer-joined` of `room` and returns the newcomer's id.
async fn peer_joined(
    c: &mut Client,
    room: &str,
    timeout: Duration,
) -> Result<switchboard::protocol::PeerId, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = c.recv_text_until(deadline).await?;
        match serde_json::from_str::<Event>(&text) {
            Ok(Event::PeerJoined { room: r, peer }) if r == room => return Ok(peer.peer_id),
            Ok(Event::Error { .. }) => return Err(refused(&text)),
            _ => {}
        }
    }
}

/// A server's refusal during setup, as an error carrying its frame.
fn refused(frame: &str) -> ClientError {
    ClientError::Closed {
        code: None,
        reason: format!("server refused: {}", frame.chars().take(200).collect::<String>()),
    }
}

/// Runs `rounds` offer/answer rounds in one room until done or `deadline`.
/// Rounds between two acknowledgements (a round brings A three frames, B one).
const ACK_EVERY_ROUNDS: u32 = 8;

async fn run_room(mut room: Room, rounds: u32, deadline: Instant) -> (Room, RoomStats) {
    let mut st =
        RoomStats { latencies_ms: Vec::with_capacity(rounds as usize * MSGS_PER_ROUND as usize), ..Default::default() };
    if let Err(e) = rounds_loop(&mut room, rounds, deadline, &mut st).await {
        match e {
            ClientError::Timeout(_) => st.timed_out = true,
            e => {
                st.failed = true;
                report(|| format!("room {}: {e}", room.i));
            }
        }
    }
    (room, st)
}

async fn rounds_loop(room: &mut Room, rounds: u32, deadline: Instant, st: &mut RoomStats) -> Result<(), ClientError> {
    let Room { i, proto, a, b, frames } = room;
    let proto = *proto;
    // The last frame numbers each side read (v1), acknowledged every few rounds like the SDK
    // does (about every 32 frames): else the node keeps every frame for a resume.
    let (mut a_seq, mut b_seq) = (None, None);
    for round in 0..rounds {
        if round % ACK_EVERY_ROUNDS == ACK_EVERY_ROUNDS - 1 {
            if let Some(seq) = a_seq.take() {
                a.send_text(Request::Ack { seq }.to_json()).await?;
            }
            if let Some(seq) = b_seq.take() {
                b.send_text(Request::Ack { seq }.to_json()).await?;
            }
        }
        a.send_text(frames.offer(now_ms())).await?;
        // B: wait for the offer, reply with two candidates and the answer.
        loop {
            let text = b.recv_text_until(deadline).await?;
            let at = now_ms();
            b_seq = seq_of(&text).or(b_seq);
            match wire::classify(proto, &text) {
                Inbound::Offer(ts) => {
                    st.record(at, ts);
                    break;
                }
                Inbound::Error => st.server_error(*i, &text),
                _ => {}
            }
        }
        b.send_many(frames.reply(now_ms)).await?;
        // A: count candidates as they come; the answer ends the round. (A candidate overtaken
        // by the answer is counted in the next round, as load.js's listeners would.)
        loop {
            let text = a.recv_text_until(deadline).await?;
            let at = now_ms();
            a_seq = seq_of(&text).or(a_seq);
            match wire::classify(proto, &text) {
                Inbound::Candidate(ts) => st.record(at, ts),
                Inbound::Answer(ts) => {
                    st.record(at, ts);
                    break;
                }
                Inbound::Error => st.server_error(*i, &text),
                _ => {}
            }
        }
    }
    Ok(())
}

impl RoomStats {
    fn record(&mut self, at: f64, ts: Option<f64>) {
        self.delivered += 1;
        if let Some(ts) = ts {
            self.latencies_ms.push(at - ts);
        }
    }

    fn server_error(&mut self, room: usize, frame: &str) {
        self.server_errors += 1;
        report(|| format!("room {room}: server error: {}", frame.chars().take(300).collect::<String>()));
    }
}
