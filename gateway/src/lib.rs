//! The HTTP edge of a Switchboard cluster: access tokens, ICE servers with TURN credentials,
//! the admin API and the browser client. Stateless: cluster state is read from Redis, so any
//! number of gateways can run behind a load balancer. A single node on the embedded bus mounts
//! the same routes over its own state (see [`admin::ClusterAdmin`]).
//!
//! ```text
//!   EdgeArgs ──► edge::Edge ──► routes::configure(app) ──► /v1/tokens, /v1/ice-servers,
//!                   │                                       /v1/nodes, /v1/rooms…, /v1/openapi.json
//!                   └── Arc<dyn ClusterAdmin>: redis_admin::RedisAdmin (gateway, clustered node)
//!                                              or the node's own (a lone node)
//! ```

pub mod admin;
pub mod assets;
pub mod config;
pub mod edge;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod origin;
pub mod redis_admin;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod turn;
pub mod webhook;
