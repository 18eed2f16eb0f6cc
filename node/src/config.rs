//! Node configuration: every flag also reads `SWITCHBOARD_<NAME>` from the environment.
//!
//! Defaults are the ones a laptop wants (the seed's port 8090, any localhost origin, embedded
//! bus); production overrides them through the environment of its Deployment.

use std::net::SocketAddr;
use std::time::Duration;
use switchboard_gateway::origin::LOCAL_ORIGINS;

use clap::{Parser, ValueEnum};
use switchboard::auth::{KeyError, TokenKeys};
use switchboard::cluster::endpoint::{Endpoint, EndpointError};
use switchboard::protocol::v1::Limits;
use switchboard_gateway::config::EdgeArgs;

/// A Switchboard signaling node: WebRTC offer/answer/candidate relay over WebSocket.
///
/// Protocol v1 is served at /v1/ws, the seed demo's protocol at /ws, the browser client at /,
/// the HTTP API (tokens, ICE servers, admin) under /v1/, and /healthz, /readyz, /metrics for
/// operators.
#[derive(Clone, Debug, Parser)]
#[command(name = "switchboard-node", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (HTTP and WebSocket), e.g. `0.0.0.0:8090` or `127.0.0.1:9000`.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "0.0.0.0:8090", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Not a flag of this node (the port is part of --listen): named here so that `--port`
    /// is answered with what to use instead of a guess at a similar flag.
    #[arg(long, hide = true, value_parser = no_port_flag)]
    pub port: Option<String>,

    /// This node's id in the cluster (in logs, metrics and membership): 1-64 characters of
    /// `A-Z a-z 0-9 _ - .` (a pod name fits). Default: a random id.
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_parser = parse_name)]
    pub node_id: Option<String>,

    /// Redis URL for clustering. Absent: the node runs alone on the embedded in-memory bus.
    /// One Redis: `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`; Sentinel (the master is asked
    /// of the sentinels, failovers followed): `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,
    /// HOST:PORT…]/MASTER[/DB]`; Redis Cluster (rooms spread over its shards, see
    /// `--redis-buckets`): `redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]`.
    /// `rediss` instead of `redis` for TLS (see `--redis-tls-*`).
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", value_parser = switchboard::cluster::endpoint::check_url)]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub redis_tls: switchboard_gateway::config::RedisTlsArgs,

    /// Cluster name: the namespace of this cluster's keys and channels, so several clusters can
    /// share one Redis.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_NAME", default_value = "switchboard", value_parser = parse_name)]
    pub cluster_name: String,

    /// A node that has not renewed its lease in Redis for this long is declared lost and its
    /// peers leave every room with reason `node-lost`, milliseconds. Renewed every third of it.
    #[arg(long, env = "SWITCHBOARD_NODE_LEASE_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(300..))]
    pub node_lease_ms: u64,

    /// TTL of membership records in Redis, seconds: what a crashed cluster leaves behind is
    /// gone after this long. Live rooms are refreshed well before.
    #[arg(long, env = "SWITCHBOARD_RECORD_TTL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..))]
    pub record_ttl_secs: u64,

    /// How often each room compares its members with the cluster's records and repairs what a
    /// missed event left wrong (its clients get `peer-joined`/`peer-left`), milliseconds: one
    /// `HGETALL` per room per period.
    #[arg(long, env = "SWITCHBOARD_RECONCILE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(200..))]
    pub reconcile_ms: u64,

    /// Log format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber EnvFilter syntax); RUST_LOG also works.
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,

    /// Worker threads serving connections. 0 = one per CPU this process may run on; more than
    /// that is capped (workers sharing a CPU wait for each other's time slices).
    #[arg(long, env = "SWITCHBOARD_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Origins allowed to open WebSockets (comma-separated). Entries: `*` (any), an exact origin
    /// such as `https://app.example.com`, or one with a port wildcard such as
    /// `http://localhost:*`. Requests without an Origin header (non-browser clients) and
    /// same-origin requests are always allowed.
    #[arg(
        long,
        env = "SWITCHBOARD_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = LOCAL_ORIGINS
    )]
    pub allowed_origins: Vec<String>,

    /// Largest WebSocket message (frame or reassembled fragments), bytes. A 64 KiB SDP fits.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES", default_value_t = 128 * 1024)]
    pub max_message_bytes: usize,

    /// Messages per second one connection may send (sustained; bursts up to twice this).
    /// For this and the other rate limits, 0 means unlimited.
    #[arg(long, env = "SWITCHBOARD_MESSAGES_PER_SEC", default_value_t = 200)]
    pub messages_per_sec: u32,

    /// ICE candidates per second one connection may send (bursts up to twice this).
    #[arg(long, env = "SWITCHBOARD_CANDIDATES_PER_SEC", default_value_t = 100)]
    pub candidates_per_sec: u32,

    /// Offers/answers per minute one connection may send (bursts up to this many at once).
    #[arg(long, env = "SWITCHBOARD_DESCRIPTIONS_PER_MIN", default_value_t = 120)]
    pub descriptions_per_min: u32,

    /// Candidates one connection may send to one peer between two descriptions (0: no cap).
    #[arg(long, env = "SWITCHBOARD_MAX_CANDIDATES_PER_NEGOTIATION", default_value_t = 200)]
    pub max_candidates_per_negotiation: u32,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS_PER_CONNECTION", default_value_t = 16)]
    pub max_rooms_per_connection: usize,

    /// Peers one room may hold.
    #[arg(long, env = "SWITCHBOARD_MAX_PEERS_PER_ROOM", default_value_t = 50)]
    pub max_peers_per_room: usize,

    /// WebSocket connections this node accepts at once.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// Bytes one connection's outbound queue may hold before the client is cut off as too slow.
    #[arg(long, env = "SWITCHBOARD_MAX_OUTBOUND_BYTES", default_value_t = 1024 * 1024)]
    pub max_outbound_bytes: usize,

    /// Largest `meta` a peer may attach to its join, bytes of JSON.
    #[arg(long, env = "SWITCHBOARD_MAX_META_BYTES", default_value_t = 1024)]
    pub max_meta_bytes: usize,

    /// How often the node pings each WebSocket, seconds.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,

    /// Close a connection that sent nothing (not even a pong) for this long, seconds.
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_SECS", default_value_t = 45)]
    pub idle_timeout_secs: u64,

    /// On SIGTERM: how long to wait for sessions to close before exiting anyway, seconds.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    /// On SIGTERM (clustered nodes): how many sessions are told to `reconnect` per wave, so the
    /// other nodes take the resumes in steps rather than all at once.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WAVE_SIZE", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub drain_wave_size: u64,

    /// Pause between two drain waves, milliseconds. The waves are widened if they would not all
    /// start within half of `--shutdown-timeout-secs`.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WAVE_INTERVAL_MS", default_value_t = 100)]
    pub drain_wave_interval_ms: u64,

    /// How long a session told to `reconnect` stays parked (peer id, rooms, messages for it)
    /// waiting for its resume, milliseconds; capped by what is left of the shutdown timeout.
    #[arg(long, env = "SWITCHBOARD_RESUME_GRACE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub resume_grace_ms: u64,

    /// How long a session whose socket broke (no close frame, a reset, the idle timeout) is
    /// held for its client to resume it (`?resume=`, on any node) before its rooms hear it left
    /// (`timeout`), milliseconds; its rooms see `peer-state` `reconnecting` meanwhile. 0: a
    /// broken socket ends its session at once.
    #[arg(long, env = "SWITCHBOARD_RECONNECT_GRACE_MS", default_value_t = 15_000)]
    pub reconnect_grace_ms: u64,

    /// Frames a session keeps for a resume until its client acknowledges them; a client that
    /// falls further behind cannot resume (it starts afresh).
    #[arg(long, env = "SWITCHBOARD_REPLAY_MAX_FRAMES", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub replay_max_frames: u64,

    /// Bytes of frames a session keeps for a resume until its client acknowledges them.
    #[arg(long, env = "SWITCHBOARD_REPLAY_MAX_BYTES", default_value_t = 512 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub replay_max_bytes: u64,

    /// Serve the browser client (demo page and SDK) at `/` (turn off in production if the
    /// gateway serves the client).
    #[arg(long, env = "SWITCHBOARD_DEMO", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub demo: bool,

    /// Where clients reach this node (e.g. `wss://n1.signal.example.com`), published in its
    /// heartbeat for the admin API's node list.
    #[arg(long, env = "SWITCHBOARD_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Access tokens, ICE servers, the admin API: the flags the gateway shares.
    #[command(flatten)]
    pub edge: EdgeArgs,
}

/// A configuration the node refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--production requires --token-secrets: without them every peer joins anonymously")]
    ProductionWithoutSecrets,
    #[error("--production requires --api-keys: without them the token and admin API cannot be used")]
    ProductionWithoutApiKeys,
    #[error("--production forbids --allow-anonymous")]
    ProductionAnonymous,
    #[error("--token-secrets: {0}")]
    Secrets(#[from] KeyError),
}

impl ConfigError {
    /// A stable code for logs and scripts, like the protocol's error codes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ProductionWithoutSecrets => "production-without-secrets",
            Self::ProductionWithoutApiKeys => "production-without-api-keys",
            Self::ProductionAnonymous => "production-anonymous",
            Self::Secrets(_) => "bad-token-secret",
        }
    }
}

/// Node ids and cluster names appear inside Redis keys and membership records.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    Err(match s.parse::<u16>() {
        Ok(port) => format!(
            "that is a port alone; give an address too, e.g. 0.0.0.0:{port} (every interface) or 127.0.0.1:{port}"
        ),
        Err(_) => "expected IP:PORT, e.g. 0.0.0.0:8090 or 127.0.0.1:9000 ([::]:8090 for IPv6)".into(),
    })
}

fn no_port_flag(s: &str) -> Result<String, String> {
    Err(format!("there is no --port: the port is part of --listen, e.g. --listen 0.0.0.0:{s}"))
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok { Ok(s.to_string()) } else { Err("must be 1-64 characters of A-Z a-z 0-9 _ - .".into()) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    pub fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.resume_grace_ms)
    }

    pub fn reconnect_grace(&self) -> Duration {
        Duration::from_millis(self.reconnect_grace_ms)
    }

    pub fn drain_wave_interval(&self) -> Duration {
        Duration::from_millis(self.drain_wave_interval_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn node_lease(&self) -> Duration {
        Duration::from_millis(self.node_lease_ms)
    }

    /// Checks the settings that only make sense together, and builds the token keys (`None`:
    /// no secrets, peers join anonymously). Production settings must not fall back to any
    /// development default.
    pub fn token_keys(&self) -> Result<Option<TokenKeys>, ConfigError> {
        let edge = &self.edge;
        let secrets = self.token_secrets();
        if edge.production {
            if secrets.is_empty() {
                return Err(ConfigError::ProductionWithoutSecrets);
            }
            if edge.api_keys.iter().all(String::is_empty) {
                return Err(ConfigError::ProductionWithoutApiKeys);
            }
            if edge.allow_anonymous {
                return Err(ConfigError::ProductionAnonymous);
            }
        }
        if secrets.is_empty() {
            return Ok(None);
        }
        Ok(Some(TokenKeys::new(&secrets, &self.cluster_name)?))
    }

    /// The configured token secrets; an empty entry (`SWITCHBOARD_TOKEN_SECRETS=""`) is none.
    fn token_secrets(&self) -> Vec<String> {
        self.edge.token_secrets.iter().filter(|s| !s.is_empty()).cloned().collect()
    }

    /// The cluster's Redis, with its TLS files read; `None` without a Redis URL.
    pub fn redis_endpoint(&self) -> Option<Result<Endpoint, EndpointError>> {
        let url = self.redis_url.as_deref()?;
        Some(Endpoint::parse(url, &self.redis_tls.files()))
    }

    /// Where `--redis-url` points, as `host:port` (hosts, master name, TLS): never the URL
    /// itself, which may carry a password. `None` without a Redis URL.
    pub fn redis_addr(&self) -> Option<String> {
        // The URL was checked when the flag was parsed; one that stopped parsing is shown as
        // nothing rather than as itself.
        let url = self.redis_url.as_deref()?;
        Endpoint::parse(url, &Default::default()).ok().map(|e| e.shown().to_string())
    }

    /// The limits as announced to v1 clients in `welcome`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            max_rooms: self.max_rooms_per_connection,
            max_peers_per_room: self.max_peers_per_room,
            messages_per_sec: self.messages_per_sec,
            candidates_per_sec: self.candidates_per_sec,
            descriptions_per_min: self.descriptions_per_min,
            max_candidates_per_negotiation: self.max_candidates_per_negotiation,
            max_meta_bytes: self.max_meta_bytes,
            max_json_depth: switchboard::protocol::MAX_JSON_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys(args: &[&str]) -> Result<Option<TokenKeys>, ConfigError> {
        Config::parse_from(std::iter::once("switchboard-node").chain(args.iter().copied())).token_keys()
    }

    #[test]
    fn production_refuses_development_settings() {
        assert!(matches!(keys(&[]), Ok(None)));
        assert!(matches!(keys(&["--token-secrets", SECRET]), Ok(Some(_))));
        let prod = ["--production", "true"];
        assert!(matches!(keys(&prod), Err(ConfigError::ProductionWithoutSecrets)));
        assert!(matches!(
            keys(&[&prod[..], &["--token-secrets", SECRET]].concat()),
            Err(ConfigError::ProductionWithoutApiKeys)
        ));
        let full = [&prod[..], &["--token-secrets", SECRET, "--api-keys", "an-api-key-of-16-bytes"]].concat();
        assert!(matches!(keys(&full), Ok(Some(_))));
        assert!(matches!(
            keys(&[&full[..], &["--allow-anonymous", "true"]].concat()),
            Err(ConfigError::ProductionAnonymous)
        ));
        assert!(matches!(keys(&["--token-secrets", "short"]), Err(ConfigError::Secrets(KeyError::TooShort { .. }))));
    }

    #[test]
    fn the_redis_address_shown_carries_no_password() {
        let addr = |url: &str| Config::parse_from(["switchboard-node", "--redis-url", url]).redis_addr();
        assert_eq!(addr("redis://:s3cret@10.0.0.5:6380/2").as_deref(), Some("10.0.0.5:6380"));
        assert_eq!(addr("redis://user:s3cret@redis.example.com").as_deref(), Some("redis.example.com:6379"));
        assert_eq!(Config::parse_from(["switchboard-node"]).redis_addr(), None);
    }
}
