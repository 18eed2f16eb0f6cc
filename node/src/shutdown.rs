//! Graceful shutdown: on SIGTERM or SIGINT the node turns unready, closes every session with
//! "going away" (1001, reason `shutdown`) so clients reconnect elsewhere, waits for them to go
//! (bounded by `--shutdown-timeout-secs`), leaves the cluster (its lease and records go at
//! once), then stops the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_server::ServerHandle;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::session::Drain;
use crate::state::NodeState;

pub async fn on_signal(state: Arc<NodeState>, server: ServerHandle) {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        warn!("cannot install signal handlers; SIGTERM will not drain");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
    drain(&state).await;
    // Leave the cluster at once rather than let the other nodes wait out this node's lease.
    match tokio::time::timeout(Duration::from_secs(2), state.bus.goodbye()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not leave the cluster cleanly; the lease will expire"),
        Err(_) => warn!("leaving the cluster timed out; the lease will expire"),
    }
    server.stop(true).await;
}

/// Closes every session and waits, within the shutdown timeout, for them to be gone.
pub async fn drain(state: &NodeState) {
    // Raise the flag before taking the snapshot: a session starting meanwhile either is in the
    // snapshot or sees the flag (see `Session::started`).
    state.start_draining();
    let sessions = state.sessions.all();
    let count = sessions.len();
    for s in sessions {
        s.do_send(Drain);
    }
    let deadline = Instant::now() + state.config.shutdown_timeout();
    while !state.sessions.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    info!(closed = count, left = state.sessions.len(), "drained");
}
