//! Tells v1 clients whether this node reaches its cluster bus.
//!
//! A node cut off from Redis still takes sessions and relays among them, so to its clients it
//! looks healthy: a page says "waiting for others…" while the peer it waits for sits on another
//! node, unreachable. The node knows (`/readyz` is 503); this tells its clients too — in every
//! `welcome`, and as a `cluster-status` frame to those that asked (`?notify=cluster-status`)
//! whenever the state has changed and held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard::protocol::v1::{ClusterStatus, ServerMessage};
use tracing::{info, warn};

use crate::config::Config;
use crate::session::ClusterChanged;
use crate::state::NodeState;

/// How long the bus must stay in a new state before clients hear of it: one late canary
/// reaches no one, and a flapping Redis does not cost every client a frame per flap.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the bus's health is looked at.
const POLL: Duration = Duration::from_millis(250);

/// What this node last told its clients about its bus.
pub struct ClusterWatch {
    connected: AtomicBool,
    /// The status for each state (down, up), built once: every `welcome` carries one.
    statuses: [ClusterStatus; 2],
}

impl ClusterWatch {
    /// `None` for a lone node (no `--redis-url`): there is no cluster to lose.
    pub fn new(config: &Config) -> Option<Self> {
        config.redis_url.as_ref()?;
        // A production node does not hand its internal addresses to anonymous clients; its
        // operators have the logs, which name the address.
        let redis = if config.edge.production { None } else { config.redis_addr() };
        let status = |connected| ClusterStatus { connected, redis: redis.clone() };
        // Assumed up at start: the bus needs a moment to connect, and a client arriving in that
        // moment should not see an alarm that a correct setup clears a second later.
        Some(Self { connected: AtomicBool::new(true), statuses: [status(false), status(true)] })
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The status clients are told now.
    pub fn status(&self) -> &ClusterStatus {
        &self.statuses[usize::from(self.connected())]
    }
}

/// Watches the bus for as long as the node runs, and tells every session of a change that held.
pub async fn run(state: Arc<NodeState>) {
    let Some(watch) = state.cluster.as_ref() else { return };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut differs_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        let healthy = state.bus.healthy();
        if healthy == watch.connected() {
            differs_since = None;
            continue;
        }
        if differs_since.get_or_insert_with(Instant::now).elapsed() < SETTLE {
            continue;
        }
        differs_since = None;
        // Stored before the directory is read, while a new session registers before it reads
        // the state for its `welcome`: each session either reads the new state or is told it.
        watch.connected.store(healthy, Ordering::SeqCst);
        let status = watch.status();
        let redis = status.redis.as_deref().unwrap_or("(not shown)");
        if healthy {
            info!(node = %state.node_id, redis, "cluster bus back: clients told calls across nodes work again");
        } else {
            warn!(node = %state.node_id, redis, "clients told this node cannot reach Redis");
        }
        let frame = Bytes::from(ServerMessage::ClusterStatus { status }.to_json());
        for session in state.sessions.all() {
            session.do_send(ClusterChanged(frame.clone()));
        }
    }
}
