//! The HTTP edge of a Switchboard cluster: access tokens, ICE servers with TURN credentials,
//! the admin API and the browser client. Stateless: cluster state is read from Redis, so any
//! number of gateways can run behind a load balancer. A single node on the embedded bus mounts
//! the same routes over its own state (see [`admin::ClusterAdmin`]).

pub mod admin;
pub mod assets;
pub mod config;
