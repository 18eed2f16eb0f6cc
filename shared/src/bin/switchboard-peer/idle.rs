//! `switchboard-peer idle`: many joined sessions that do nothing, to measure what an idle
//! session costs the server in memory (`bench/load/idle.js`'s workload).
//!
//! Sessions open 200 at a time; session i joins room `r{i/2}` (seed user `u{i}`), so rooms are
//! pairs. Once every session is joined and the server has had 2 s to settle, the server's RSS is
//! compared with its RSS before the first connect: `(held - before) * 1024 / sessions` bytes
//! per session. Unlike idle.js, each session waits for its `joined`, so "held" really means
//! every session is in its room.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard::client::{Client, ClientError};
use switchboard::protocol::v1::{Event, Request, seq_of};
use tokio::time::Instant;

use crate::stats::{self, JsonLine};
use crate::wire::{self, Inbound, Proto};

/// Sessions opened concurrently, as in idle.js.
const OPEN_BATCH: usize = 200;
/// Time the server gets after the last join before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// WebSocket URL of the server under test (seed: .../ws, v1: .../v1/ws).
    #[arg(long)]
    pub url: String,
    /// Protocol the sessions speak.
    #[arg(long, value_enum, default_value = "seed")]
    pub proto: Proto,
    /// Number of sessions to open and join (pairwise into rooms).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions: u32,
    /// How long to keep the sessions open after reporting, in seconds.
    #[arg(long, default_value_t = 8)]
    pub hold_secs: u64,
    /// PID of the server under test, repeatable or comma-separated (RSS is summed): reports
    /// its VmRSS before opening and while the sessions are held, and bytes per session.
    #[arg(long, value_delimiter = ',')]
    pub node_pid: Vec<u32>,
    /// Bound on each session's connect and join, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Ask for this WebSocket subprotocol (e.g. switchboard.v1).
    #[arg(long)]
    pub subprotocol: Option<String>,
    /// Join each session into a room (`--join false`: connect only). Comparing the two runs
    /// tells what a room membership costs the server on top of a connection.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub join: bool,
    /// v1: acknowledge every numbered frame (`ack`), as the SDK does, so the server lets go of
    /// what it keeps for a resume (`--ack false`: it keeps all of it, the worst case).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub ack: bool,
}

pub async fn run(args: Args) -> Result<(), String> {
    let n = args.sessions as usize;
    let before = stats::total_rss_kib(&args.node_pid);
    let timeout = Duration::from_secs(args.timeout_secs);
    let args = Arc::new(args);
    // Sessions the server closed while we held them: reported at the end.
    let dropped = Arc::new(AtomicUsize::new(0));

    let t0 = Instant::now();
    for start in (0..n).step_by(OPEN_BATCH) {
        let batch: Vec<_> = (start..n.min(start + OPEN_BATCH))
            .map(|i| {
                let args = args.clone();
                tokio::spawn(
                    async move { open_session(i, &args, timeout).await.map_err(|e| format!("session {i}: {e}")) },
                )
            })
            .collect();
        for task in batch {
            let mut client = task.await.map_err(|e| format!("session task: {e}"))??;
            let dropped = dropped.clone();
            let ack = args.ack && matches!(args.proto, Proto::V1);
            // Keep reading so server pings are answered and the session stays alive.
            tokio::spawn(async move {
                let _ = if ack { hold_acking(&mut client).await } else { client.drain().await };
                dropped.fetch_add(1, Ordering::Relaxed);
            });
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();

    tokio::time::sleep(SETTLE).await;
    let held = stats::total_rss_kib(&args.node_pid);
    let mut line = JsonLine::new();
    line.str("proto", args.proto.name())
        .str("url", &args.url)
        .int("sessions", n)
        .raw("joined", if args.join { "true" } else { "false" })
        .int("open", n - dropped.load(Ordering::Relaxed))
        .num("open_secs", stats::round3(open_secs));
    if !args.node_pid.is_empty() {
        line.opt_int("node_rss_before_kib", before)
            .opt_int("node_rss_held_kib", held)
            .opt_int("bytes_per_session", before.zip(held).map(|(b, h)| (h as i64 - b as i64) * 1024 / n as i64));
    }
    println!("{}", line.finish());

    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let lost = dropped.load(Ordering::Relaxed);
    if lost > 0 {
        eprintln!("switchboard-peer: the server closed {lost} of {n} sessions while they were held");
    }
    Ok(())
}

/// Opens session `i` and joins it into room `r{i/2}`; returns once the server confirmed.
async fn open_session(i: usize, args: &Args, timeout: Duration) -> Result<Client, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut c = tokio::time::timeout_at(deadline, Client::connect_with(&args.url, args.subprotocol.as_deref()))
        .await
        .map_err(|_| ClientError::Timeout(timeout))??;
    let room = format!("r{}", i / 2);
    let join = match args.proto {
        Proto::Seed => wire::seed_join(&room, &format!("u{i}")),
        Proto::V1 => {
            let text = c.recv_text_until(deadline).await?;
            if !matches!(serde_json::from_str(&text), Ok(Event::Welcome { .. })) {
                return Err(ClientError::Closed { code: None, reason: format!("expected welcome, got {text}") });
            }
            wire::v1_join(&room)
        }
    };
    if !args.join {
        return Ok(c);
    }
    c.send_text(join).await?;
    loop {
        let text = c.recv_text_until(deadline).await?;
        match wire::classify(args.proto, &text) {
            Inbound::Joined => {
                if let Some(seq) = seq_of(&text).filter(|_| args.ack) {
                    c.send_text(Request::Ack { seq }.to_json()).await?;
                }
                return Ok(c);
            }
            Inbound::Error => {
                return Err(ClientError::Closed { code: None, reason: format!("server refused join: {text}") });
            }
            _ => {}
        }
    }
}

/// Reads until the server closes, acknowledging each numbered frame.
async fn hold_acking(c: &mut Client) -> Result<(), ClientError> {
    let forever = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        let text = c.recv_text_until(forever).await?;
        if let Some(seq) = seq_of(&text) {
            c.send_text(Request::Ack { seq }.to_json()).await?;
        }
    }
}
