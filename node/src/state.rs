//! What every actor of a node shares: configuration, metrics, the bus, the directory of open
//! sessions, and whether the node is still taking new sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use actix::Addr;
use switchboard::api::NodeInfo;
use switchboard::auth::TokenKeys;
use switchboard::protocol::PeerId;
use switchboard::protocol::v1::Limits;

use crate::bus::{Bus, NodeId, NodeStatus};
use crate::cluster_watch::ClusterWatch;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::Session;
use switchboard_gateway::origin::OriginPolicy;

pub struct NodeState {
    pub config: Config,
    pub node_id: NodeId,
    pub metrics: Metrics,
    pub bus: Arc<dyn Bus>,
    pub registry: Addr<Registry>,
    pub sessions: SessionDirectory,
    pub limits: Limits,
    pub origins: OriginPolicy,
    /// The keys access tokens are verified with; `None` when no secrets are configured.
    pub tokens: Option<TokenKeys>,
    /// Unix milliseconds when the node started (reported in its heartbeats).
    pub started_at: u64,
    /// Sessions handed to other nodes while this one drains.
    pub handoff: Handoff,
    /// What clients are told of the cluster bus; `None` on a lone node.
    pub cluster: Option<ClusterWatch>,
    /// Where rooms record their events for the webhooks (a lone node with `--webhook-urls`;
    /// set once the edge has started them).
    pub webhooks: std::sync::OnceLock<switchboard_gateway::webhook::Webhooks>,
    draining: AtomicBool,
}

impl NodeState {
    pub fn new(
        config: Config,
        node_id: NodeId,
        metrics: Metrics,
        bus: Arc<dyn Bus>,
        registry: Addr<Registry>,
        tokens: Option<TokenKeys>,
    ) -> Self {
        let limits = config.limits();
        let origins = OriginPolicy::new(&config.allowed_origins);
        let sessions = SessionDirectory::new(config.max_connections);
        let cluster = ClusterWatch::new(&config);
        Self {
            config,
            node_id,
            metrics,
            bus,
            registry,
            sessions,
            limits,
            origins,
            tokens,
            started_at: unix_ms(),
            draining: AtomicBool::new(false),
            handoff: Handoff::default(),
            cluster,
            webhooks: std::sync::OnceLock::new(),
        }
    }

    /// This node as its heartbeat describes it; the bus fills in the lease's epoch.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.node_id.to_string(),
            epoch: 0,
            url: self.config.advertise_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            heartbeat_at: unix_ms(),
            sessions: self.sessions.len() as u64,
            rooms: self.metrics.rooms.get().max(0) as u64,
            draining: self.draining(),
        }
    }

    /// Ready: taking new sessions and able to reach the cluster.
    pub fn ready(&self) -> bool {
        !self.draining() && self.bus.healthy()
    }

    /// What a session keeps for its client's resume at most.
    pub fn replay_bound(&self) -> crate::session::Bound {
        crate::session::Bound {
            frames: usize::try_from(self.config.replay_max_frames).unwrap_or(usize::MAX),
            bytes: usize::try_from(self.config.replay_max_bytes).unwrap_or(usize::MAX),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.ready.set(0);
    }
}

/// The bus reads the node's figures through a weak reference: the state owns the bus.
impl NodeStatus for Weak<NodeState> {
    fn node_info(&self) -> Option<NodeInfo> {
        self.upgrade().map(|s| s.node_info())
    }
}

/// Every open session of this node, by peer id: for the connection limit, for draining on
/// shutdown, and for operators' look-ups.
pub struct SessionDirectory {
    max: usize,
    reserved: AtomicUsize,
    by_peer: Mutex<HashMap<PeerId, Addr<Session>>>,
}

impl SessionDirectory {
    fn new(max: usize) -> Self {
        Self { max, reserved: AtomicUsize::new(0), by_peer: Mutex::new(HashMap::new()) }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<PeerId, Addr<Session>>> {
        self.by_peer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims a connection slot; `false` when the node is full. Every successful call is
    /// matched by one [`release`](Self::release).
    pub fn reserve(&self) -> bool {
        self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    pub fn release(&self) {
        self.reserved.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn insert(&self, peer: PeerId, addr: Addr<Session>) {
        self.map().insert(peer, addr);
    }

    pub fn remove(&self, peer: PeerId) {
        self.map().remove(&peer);
    }

    /// The session of `peer`, if it is open here.
    pub fn get(&self, peer: PeerId) -> Option<Addr<Session>> {
        self.map().get(&peer).cloned()
    }

    pub fn len(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Addr<Session>> {
        self.map().values().cloned().collect()
    }
}

/// Members this node parked for a resume elsewhere, and moved members it still forwards for:
/// a draining node waits for both to reach zero (within its shutdown timeout).
#[derive(Default)]
pub struct Handoff {
    parked: AtomicUsize,
    forwarding: AtomicUsize,
    /// When parked sessions stop waiting (set when the drain starts).
    until: std::sync::OnceLock<std::time::Instant>,
}

impl Handoff {
    pub fn park(&self) {
        self.parked.fetch_add(1, Ordering::AcqRel);
    }

    pub fn unpark(&self) {
        self.parked.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn forwarding_started(&self) {
        self.forwarding.fetch_add(1, Ordering::AcqRel);
    }

    pub fn forwarding_done(&self) {
        self.forwarding.fetch_sub(1, Ordering::AcqRel);
    }

    /// Nothing parked and nothing to forward.
    pub fn settled(&self) -> bool {
        self.parked.load(Ordering::Acquire) == 0 && self.forwarding.load(Ordering::Acquire) == 0
    }

    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Sets when parked sessions stop waiting for their resume; the first call wins.
    pub fn set_deadline(&self, until: std::time::Instant) {
        let _ = self.until.set(until);
    }

    /// How long a session parked now may wait for its resume.
    pub fn grace(&self, configured: std::time::Duration) -> std::time::Duration {
        let left = self.until.get().map_or(configured, |u| u.saturating_duration_since(std::time::Instant::now()));
        configured.min(left)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
