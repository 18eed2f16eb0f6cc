//! Graceful shutdown: on SIGTERM or SIGINT the node turns unready (new WebSockets get HTTP 503,
//! so a load balancer sends them elsewhere), hands its sessions over, leaves the cluster (its
//! lease and records go at once), then stops the server — all within `--shutdown-timeout-secs`.
//!
//! On a cluster, sessions are told to `reconnect` with a resume token, in paced waves so the
//! other nodes are not stormed; each is parked (peer id, rooms, what arrives for it) until its
//! client resumes on another node, and the node waits until every parked session has been taken
//! over or its grace has run out. A lone node (and the seed dialect, which has no resume)
//! closes sessions with "going away" (1001) instead.
//!
//! What is still kept for clients that did not come back when the drain ends (a session still
//! waiting for its client's close, members still parked) cannot reach them from here any more:
//! before the node says goodbye, the senders of those signals are answered `undeliverable`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_server::ServerHandle;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::registry::OpenRooms;
use crate::room::GiveUp;
use crate::session::{Abandon, Drain, Reconnect};
use crate::state::NodeState;

/// Time kept back from the shutdown timeout for leaving the cluster and stopping the server.
const RESERVE: Duration = Duration::from_secs(2);
/// How long a stopping lone node waits at most for its last webhooks.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

pub async fn on_signal(state: Arc<NodeState>, server: ServerHandle) {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        warn!("cannot install signal handlers; SIGTERM will not drain");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
    let signalled = Instant::now();
    drain(&state).await;
    if let Some(webhooks) = state.webhooks.get() {
        // The members' `peer.left` (shutdown) and the rooms' `room.finished` were just queued;
        // the wait stays within the shutdown timeout, a second kept for stopping the server.
        let left = (signalled + state.config.shutdown_timeout()).saturating_duration_since(Instant::now());
        let within = WEBHOOK_FLUSH.min(left.saturating_sub(Duration::from_secs(1)));
        if !webhooks.flush(within).await {
            warn!(waited_ms = within.as_millis() as u64, "webhooks still pending at exit are lost");
        }
    }
    // Leave the cluster at once rather than let the other nodes wait out this node's lease.
    match tokio::time::timeout(Duration::from_secs(2), state.bus.goodbye()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not leave the cluster cleanly; the lease will expire"),
        Err(_) => warn!("leaving the cluster timed out; the lease will expire"),
    }
    server.stop(true).await;
}

/// Hands every session over (or closes it) and waits, within the shutdown timeout, until
/// nothing is left to hand over.
pub async fn drain(state: &NodeState) {
    let started = Instant::now();
    let timeout = state.config.shutdown_timeout();
    let deadline = started + timeout.saturating_sub(RESERVE).max(timeout / 2);
    state.handoff.set_deadline(deadline);
    // Raise the flag before taking the snapshot: a session starting meanwhile either is in the
    // snapshot or sees the flag (see `Session::started`).
    state.start_draining();
    let sessions = state.sessions.all();
    let count = sessions.len();
    if state.bus.resumable() {
        let (size, interval) = waves(count, state, timeout);
        for (n, wave) in sessions.chunks(size).enumerate() {
            if n > 0 {
                tokio::time::sleep(interval).await;
            }
            for s in wave {
                s.do_send(Reconnect);
            }
        }
    } else {
        for s in sessions {
            s.do_send(Drain);
        }
    }
    while !(state.sessions.is_empty() && state.handoff.settled()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    info!(
        sessions = count,
        left = state.sessions.len(),
        still_parked = state.handoff.parked(),
        took_ms = started.elapsed().as_millis() as u64,
        "drained"
    );
    give_up(state, count > 0).await;
}

/// How long the end of a drain waits for sessions and rooms to give up what they kept.
const GIVE_UP_WAIT: Duration = Duration::from_millis(500);

/// The drain is over: sessions still waiting for their client's close stop waiting, and rooms
/// let go of the members still parked; the senders of what was kept for them are answered
/// (sessions first: what they hand back to a room reaches it before the room gives up).
async fn give_up(state: &NodeState, drained: bool) {
    if !state.bus.resumable() || !drained {
        return;
    }
    let sessions = state.sessions.all();
    let asked = futures_util::future::join_all(sessions.iter().map(|s| s.send(Abandon)));
    let _ = tokio::time::timeout(GIVE_UP_WAIT, asked).await;
    let rooms = match tokio::time::timeout(GIVE_UP_WAIT, state.registry.send(OpenRooms)).await {
        Ok(Ok(rooms)) => rooms,
        _ => return warn!("cannot list the rooms to give up their parked members"),
    };
    let asked = futures_util::future::join_all(rooms.iter().map(|r| r.send(GiveUp)));
    let given_up: usize = match tokio::time::timeout(GIVE_UP_WAIT, asked).await {
        Ok(answers) => answers.into_iter().filter_map(Result::ok).sum(),
        Err(_) => 0,
    };
    // The answers (and those of members given up before, whose grace ran out) are on their
    // way to the bus, which lets its queue go out before the goodbye; relays that were on their
    // way here meet a room without the member, and are answered too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if given_up > 0 {
        info!(members = given_up, "gave up the members still parked: their clients did not come back");
    }
}

/// The wave size and pause: as configured, but widened so that the last wave starts within
/// half of the shutdown timeout (the other half is for the last resumes).
fn waves(sessions: usize, state: &NodeState, timeout: Duration) -> (usize, Duration) {
    let interval = state.config.drain_wave_interval();
    let mut size = state.config.drain_wave_size.max(1) as usize;
    let budget = timeout / 2;
    if !interval.is_zero() {
        let max_waves = (budget.as_millis() / interval.as_millis()).max(1) as usize;
        size = size.max(sessions.div_ceil(max_waves));
    }
    (size, interval)
}
