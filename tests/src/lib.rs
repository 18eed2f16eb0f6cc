//! The test harness: real node processes and real WebSocket clients.
//!
//! Tests start nodes as child processes of the built binary (`--listen 127.0.0.1:0`, the port
//! read back from the node's `listening on` line), talk to them over real sockets, and kill
//! them on drop. Nothing here mocks the node.

mod breaks;
mod client;
mod coturn;
mod nginx;
mod peer_proc;
mod process;
mod proxy;
mod redis;
mod redis_cluster;
mod resume;
mod sentinel;
mod tls;
pub mod webhooks;

pub use breaks::{Break, Got, PeerStateSeen, SeqLog, SeqOptions, SeqPeer, SeqPlan, SeqStream};
pub use client::{Client, Frame, V1Peer};
pub use coturn::Coturn;
pub use nginx::Nginx;
pub use peer_proc::PeerProc;
pub use process::{
    Node, external_tool, external_tool_probed, free_port, http_get, node_binary, peer_binary, run_until,
};
pub use proxy::Proxy;
pub use redis::{Access, RedisServer};
pub use redis_cluster::RedisCluster;
pub use resume::{PeerLog, Received, Resume, ResumingPeer, StreamPlan, Streaming, percentile, with_query};
pub use sentinel::{MASTER as SENTINEL_MASTER, SentinelSet};
pub use tls::TestCa;

/// How long any single expectation waits before the test fails.
pub const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
