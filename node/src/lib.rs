//! A Switchboard signaling node.
//!
//! ```text
//!   WebSocket ──► upgrade ──► Session actor ──► Room actor ──► Session actors (same node)
//!                              (one per socket)  (one per room)  └─► Bus ──► other nodes
//!                                     │
//!                                     └── joins ──► Registry actor (creates / stops rooms)
//! ```
//!
//! Start at [`run`]; [`session`] and [`room`] hold the signaling logic, [`transport`] the
//! socket, [`bus`] everything that crosses nodes.

pub mod admin;
pub mod bus;
pub mod cluster_watch;
pub mod config;
pub mod dialect;
pub mod heartbeat;
pub mod limits;
pub mod metrics;
pub mod post;
pub mod registry;
pub mod room;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod transport;
pub mod upgrade;

use std::sync::Arc;

use actix::Actor;
use actix_web::web;
use switchboard::cluster::endpoint::Endpoint;
use switchboard_gateway::admin::ClusterAdmin;
use switchboard_gateway::edge::Edge;
use switchboard_gateway::error::EdgeError;
use switchboard_gateway::redis_admin::RedisAdmin;
use tracing::{info, warn};

use crate::admin::LocalAdmin;

use crate::bus::redis::Settings;
use crate::bus::{BucketedBus, Bus, Inboxes, MemoryBus, NodeId, RedisBus};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::{Attach, Registry, RoomDirectory};
use crate::state::NodeState;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
    #[error("refusing to start (bad-redis-url): {0}")]
    RedisEndpoint(#[from] switchboard::cluster::endpoint::EndpointError),
    #[error("refusing to start ({code}): {0}", code = .0.code())]
    Config(#[from] config::ConfigError),
    #[error("refusing to start ({code}): {0}", code = .0.code())]
    Edge(#[from] EdgeError),
}

/// Runs a node until it is shut down. Must be called inside an actix `System`.
pub async fn run(config: Config) -> Result<(), NodeError> {
    // Before anything listens: a misconfigured production node must not serve for a moment.
    let tokens = config.token_keys()?;
    if tokens.is_some() && config.edge.allow_anonymous {
        warn!("token secrets are set but --allow-anonymous admits peers without a token");
    }
    raise_fd_limit();
    let node_id: NodeId =
        config.node_id.clone().unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>())).into();
    let metrics = Metrics::new(&node_id)?;
    let endpoint = config.redis_endpoint().transpose()?;
    if endpoint.is_some() && config.edge.webhooks_configured() {
        return Err(EdgeError::WebhooksOnGateways.into());
    }
    let bus: Arc<dyn Bus> = match &endpoint {
        None => MemoryBus::new(),
        Some(e) => {
            let settings = redis_settings(&config);
            let buckets = config.redis_tls.buckets(&config.cluster_name, e);
            if buckets.count() == 1 {
                let (endpoint, keys) = buckets.reach(0, e, node_id.clone());
                RedisBus::new(endpoint, keys, settings, metrics.bus.clone())
            } else {
                BucketedBus::new(e, buckets, node_id.clone(), settings, metrics.bus.clone())
            }
        }
    };
    let registry = Registry::new();
    let directory = registry.directory();
    let registry = registry.start();
    let listen = config.listen;
    let state = Arc::new(NodeState::new(config, node_id.clone(), metrics, Arc::clone(&bus), registry.clone(), tokens));
    registry.do_send(Attach(Arc::downgrade(&state)));
    let status = Arc::new(Arc::downgrade(&state));
    bus.attach(node_id.clone(), Inboxes { rooms: directory.clone(), cluster: Arc::new(registry.recipient()), status });

    let edge = web::Data::new(Edge::new(
        &state.config.edge,
        &state.config.cluster_name,
        cluster_admin(&state, &directory, endpoint)?,
    )?);
    if let Some(webhooks) = edge.webhooks() {
        let _ = state.webhooks.set(webhooks.clone());
    }

    let listener = server::bind(listen).map_err(|source| NodeError::Listen { addr: listen, source })?;
    let local = listener.local_addr()?;
    let server = server::build(Arc::clone(&state), edge, listener)?;
    // Scripts and tests read this line to learn the port (with --listen …:0).
    println!("listening on {local}");
    info!(node = %node_id, addr = %local, bus = if state.config.redis_url.is_some() { "redis" } else { "embedded" }, "node up");
    if state.config.demo {
        // 0.0.0.0 is not an address a browser opens.
        let host = match local.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        info!("demo page: http://{host}:{}/?room=demo (open it in two tabs and press Call)", local.port());
    }
    actix_rt::spawn(heartbeat::run(Arc::clone(&state)));
    actix_rt::spawn(cluster_watch::run(Arc::clone(&state)));
    actix_rt::spawn(shutdown::on_signal(Arc::clone(&state), server.handle()));
    server.await?;
    info!(node = %node_id, "node stopped");
    Ok(())
}

/// What the admin API acts on: this node's own rooms on the embedded bus; in a cluster, every
/// node's records in Redis, read as a gateway reads them (any node then answers the same).
fn cluster_admin(
    state: &Arc<NodeState>,
    rooms: &Arc<RoomDirectory>,
    redis: Option<Endpoint>,
) -> Result<Arc<dyn ClusterAdmin>, NodeError> {
    Ok(match redis {
        None => Arc::new(LocalAdmin::new(Arc::downgrade(state), Arc::clone(rooms))),
        Some(endpoint) => {
            let buckets = state.config.redis_tls.buckets(&state.config.cluster_name, &endpoint);
            Arc::new(RedisAdmin::new(&endpoint, buckets))
        }
    })
}

fn redis_settings(config: &Config) -> Settings {
    Settings {
        lease: config.node_lease(),
        record_ttl: std::time::Duration::from_secs(config.record_ttl_secs),
        canary_every: (config.node_lease() / 3).min(std::time::Duration::from_secs(1)),
        timeout: std::time::Duration::from_secs(1),
        reconcile_every: std::time::Duration::from_millis(config.reconcile_ms),
    }
}

/// A node holds one descriptor per session: lift the soft limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
