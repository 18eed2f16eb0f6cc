//! The gateway's settings. [`EdgeArgs`] are shared with the node (which flattens them into its
//! own flags): a node verifies the tokens a gateway signs, and on a single machine the node
//! serves the gateway's routes itself. Every flag also reads `SWITCHBOARD_<NAME>`.

use crate::origin::LOCAL_ORIGINS;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// The stateless HTTP edge of a Switchboard cluster: access tokens, ICE servers with TURN
/// credentials, the admin API (read from and acted on through the cluster's Redis) and the
/// browser client.
#[derive(Clone, Debug, Parser)]
#[command(name = "switchboard-gateway", version, about, long_about = None)]
pub struct GatewayConfig {
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// The cluster's Redis, as the nodes reach it (`redis[s]://`, `redis[s]+sentinel://`,
    /// `redis[s]+cluster://`; see
    /// the node's `--redis-url`): the nodes' membership and heartbeats are read there, kicks and
    /// closes published there.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", value_parser = switchboard::cluster::endpoint::check_url)]
    pub redis_url: String,

    #[command(flatten)]
    pub redis_tls: RedisTlsArgs,

    /// Cluster name: the namespace of the cluster's Redis keys, and the audience of its tokens.
    /// Must match the nodes'.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_NAME", default_value = "switchboard", value_parser = parse_name)]
    pub cluster_name: String,

    /// Log format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber EnvFilter syntax); RUST_LOG also works.
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,

    /// Worker threads. 0 = one per core.
    #[arg(long, env = "SWITCHBOARD_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Serve the browser client (the demo page and the SDK) at `/`.
    #[arg(long, env = "SWITCHBOARD_SERVE_CLIENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub serve_client: bool,

    /// On SIGTERM, how long to let requests in flight finish, seconds.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    #[command(flatten)]
    pub edge: EdgeArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Cluster names appear inside Redis keys (the same rule as the node's).
fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok { Ok(s.to_string()) } else { Err("must be 1-64 characters of A-Z a-z 0-9 _ - .".into()) }
}

/// The files a `rediss://` URL needs beyond the system's roots (node and gateway alike).
#[derive(Clone, Debug, Default, Args)]
pub struct RedisTlsArgs {
    /// PEM file of the CA(s) that signed the Redis servers' (and sentinels') certificates, for a
    /// `rediss` URL. Default: the system's trusted roots.
    #[arg(long, env = "SWITCHBOARD_REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,

    /// PEM client certificate for mutual TLS (Redis `tls-auth-clients yes`); needs
    /// `--redis-tls-key-file`.
    #[arg(long, env = "SWITCHBOARD_REDIS_TLS_CERT_FILE")]
    pub redis_tls_cert_file: Option<std::path::PathBuf>,

    /// PEM private key of `--redis-tls-cert-file`.
    #[arg(long, env = "SWITCHBOARD_REDIS_TLS_KEY_FILE")]
    pub redis_tls_key_file: Option<std::path::PathBuf>,

    /// Buckets the cluster's keys are split into on a Redis Cluster (`redis+cluster://`): each
    /// lives in one hash slot, so this bounds how many shards carry the cluster. Must be the
    /// same on every node and gateway. Default: 6 on a Redis Cluster (as many on each of 2, 3 or 6
    /// shards), 1 elsewhere. More buckets than shards cost CPU per message (smaller pipelines).
    #[arg(long, env = "SWITCHBOARD_REDIS_BUCKETS", value_parser = clap::value_parser!(u16).range(1..=i64::from(switchboard::cluster::MAX_BUCKETS)))]
    pub redis_buckets: Option<u16>,
}

/// Buckets on a Redis Cluster when `--redis-buckets` is not given.
pub const DEFAULT_CLUSTER_BUCKETS: u16 = 6;

impl RedisTlsArgs {
    /// The cluster's buckets on `endpoint` (see `--redis-buckets`).
    pub fn buckets(
        &self,
        cluster: &str,
        endpoint: &switchboard::cluster::endpoint::Endpoint,
    ) -> switchboard::cluster::Buckets {
        let default = if endpoint.sharded() { DEFAULT_CLUSTER_BUCKETS } else { 1 };
        switchboard::cluster::Buckets::new(cluster, self.redis_buckets.unwrap_or(default))
    }

    pub fn files(&self) -> switchboard::cluster::endpoint::TlsFiles {
        switchboard::cluster::endpoint::TlsFiles {
            ca: self.redis_tls_ca_file.clone(),
            cert: self.redis_tls_cert_file.clone(),
            key: self.redis_tls_key_file.clone(),
        }
    }
}

/// Tokens, ICE servers, the admin API and browser rules.
#[derive(Clone, Debug, Default, Args)]
pub struct EdgeArgs {
    /// Secrets access tokens are signed with (HS256, at least 32 bytes each, comma-separated).
    /// The first signs; all verify, so a secret can be rotated in two steps. With none, a node
    /// admits anonymous peers (development) and the gateway mints no tokens.
    #[arg(long, env = "SWITCHBOARD_TOKEN_SECRETS", value_delimiter = ',', hide_env_values = true)]
    pub token_secrets: Vec<String>,

    /// Admit peers without a token even though token secrets are configured (a migration aid;
    /// refused with --production).
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allow_anonymous: bool,

    /// Refuse to start with development settings: requires token secrets and an API key, and
    /// no anonymous peers.
    #[arg(long, env = "SWITCHBOARD_PRODUCTION", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub production: bool,

    /// API keys for `POST /v1/tokens` and the admin API (comma-separated, at least 16 bytes
    /// each), sent as `Authorization: Bearer <key>`. With none, those routes answer 401.
    #[arg(long, env = "SWITCHBOARD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,

    /// STUN server URLs handed to clients (comma-separated, e.g. `stun:stun.example.com:3478`).
    #[arg(long, env = "SWITCHBOARD_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// TURN server URLs handed to clients with short-lived credentials (comma-separated, e.g.
    /// `turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349`).
    #[arg(long, env = "SWITCHBOARD_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// The TURN server's shared secret (coturn `static-auth-secret` with `use-auth-secret`).
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Lifetime of TURN credentials, seconds.
    #[arg(long, env = "SWITCHBOARD_TURN_TTL_SECS", default_value_t = 3600)]
    pub turn_ttl_secs: u64,

    /// Origins allowed to call the HTTP API from a browser (CORS), comma-separated; same
    /// syntax as the node's --allowed-origins. Default: localhost on any port.
    #[arg(
        long,
        env = "SWITCHBOARD_API_ORIGINS",
        value_delimiter = ',',
        default_value = LOCAL_ORIGINS
    )]
    pub api_origins: Vec<String>,

    /// The v1 WebSocket URL clients should connect to, returned with each token (e.g.
    /// `wss://signal.example.com/v1/ws`).
    #[arg(long, env = "SWITCHBOARD_PUBLIC_WS_URL")]
    pub public_ws_url: Option<String>,

    /// URLs that get every room and membership change as a signed JSON `POST`
    /// (`room.started`, `room.finished`, `peer.joined`, `peer.left`), comma-separated. A lone
    /// node delivers its own; in a cluster the nodes record them in Redis and the gateways
    /// with this flag deliver them (one at a time, the others standing by).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,

    /// The key of each delivery's `Switchboard-Signature` (HMAC-SHA256, at least 32 bytes).
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// How long a webhook the receiver does not acknowledge (2xx within 5 s) is retried, with
    /// exponential backoff, before it is given up and listed at `GET /v1/webhooks/failures`,
    /// seconds.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_RETRY_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_retry_secs: u64,
}

impl EdgeArgs {
    /// Whether any webhook URL is set (an empty `SWITCHBOARD_WEBHOOK_URLS=""` is none).
    pub fn webhooks_configured(&self) -> bool {
        self.webhook_urls.iter().any(|u| !u.is_empty())
    }

    pub fn webhook_retry(&self) -> Duration {
        Duration::from_secs(self.webhook_retry_secs)
    }

    pub fn turn_ttl(&self) -> Duration {
        Duration::from_secs(self.turn_ttl_secs.max(60))
    }
}
