//! Where the cluster's Redis is and how to reach it, for the node and the gateway alike: one
//! `--redis-url` names the topology, the `--redis-tls-*` files complete its TLS.
//!
//! | URL                                                            | topology                  |
//! |----------------------------------------------------------------|---------------------------|
//! | `redis://[[user]:password@]host:port[/db]`, `rediss://…`       | one Redis (a primary)     |
//! | `redis+sentinel://[[user]:password@]host:port[,…]/master[/db]` | Sentinel: the master named|
//! | `redis+cluster://[[user]:password@]host:port[,…]`              | Redis Cluster (seeds)     |
//!
//! `rediss` in any of them means TLS, to sentinels and data nodes alike; the credentials, too,
//! go to both. With Sentinel the master is asked of the sentinels on every (re)connect, so a
//! caller that reconnects whenever its connection fails follows a failover by itself
//! ([`Endpoint::client`]); [`Endpoint::sentinel_client`] lets it also hear `+switch-master`.
//!
//! A Redis Cluster is used one hash slot at a time ([`Endpoint::for_slot`]: a bucket of the
//! cluster's keys, see [`Buckets`](super::Buckets)): every (re)connect asks the cluster
//! (`CLUSTER SLOTS`, from the seeds and every node heard of since) which master holds the slot
//! and connects to that master as to one Redis. A failover, or the slot moving, shows up as a
//! dropped connection or a `MOVED`/`CLUSTERDOWN` answer ([`wrong_server`]): the caller connects
//! again and is sent to the slot's new master.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError,
    RedisResult, TlsCertificates, TlsMode,
};

/// The URL forms `--redis-url` accepts, for error messages.
pub const URL_FORMS: &str = "redis[s]://[[USER]:PASSWORD@]HOST:PORT[/DB], \
     redis[s]+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB] or \
     redis[s]+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]";

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{0}; expected {URL_FORMS}")]
    Url(String),
    #[error("--redis-tls-{flag}-file {path}: {error}")]
    TlsFile { flag: &'static str, path: String, error: String },
    #[error("--redis-tls-cert-file and --redis-tls-key-file go together (a client certificate needs its key)")]
    HalfClientCertificate,
    #[error(
        "--redis-tls-* files are set but the Redis URL does not use TLS: write rediss:// (or rediss+sentinel://, rediss+cluster://)"
    )]
    TlsFilesWithoutTls,
}

/// PEM files completing a TLS URL: the CA that signed the servers' certificates (default: the
/// system's roots) and, for mutual TLS, this client's certificate and key.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    fn load(&self) -> Result<Option<TlsCertificates>, EndpointError> {
        fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, EndpointError> {
            let bytes = std::fs::read(path).map_err(|e| EndpointError::TlsFile {
                flag,
                path: path.display().to_string(),
                error: e.to_string(),
            })?;
            if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                let error = "not a PEM file (no -----BEGIN line)".to_string();
                return Err(EndpointError::TlsFile { flag, path: path.display().to_string(), error });
            }
            Ok(bytes)
        }
        if !self.any() {
            return Ok(None);
        }
        let root_cert = self.ca.as_deref().map(|p| read("ca", p)).transpose()?;
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                Some(ClientTlsConfig { client_cert: read("cert", cert)?, client_key: read("key", key)? })
            }
            (None, None) => None,
            _ => return Err(EndpointError::HalfClientCertificate),
        };
        Ok(Some(TlsCertificates { client_tls, root_cert }))
    }
}

/// What kind of Redis deployment the URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Single,
    Sentinel,
    Cluster,
}

/// A parsed `--redis-url` with its TLS files: checked once at startup, then asked for a client
/// on every (re)connect.
#[derive(Clone)]
pub struct Endpoint {
    topology: Topology,
    shown: String,
    tls: bool,
    /// The hash slot this endpoint serves on a Redis Cluster ([`Endpoint::for_slot`]).
    slot: u16,
}

#[derive(Clone)]
enum Topology {
    Single(Box<Client>),
    Sentinel(Box<Sentinel>),
    Cluster(Box<Seeds>),
}

#[derive(Clone)]
struct Seeds {
    /// The URL's hosts.
    seeds: Vec<(String, u16)>,
    /// The nodes to ask: the URL's hosts and every node the last `CLUSTER SLOTS` answer named
    /// (so that losing the URL's hosts does not lose the cluster, and nodes gone since are
    /// not asked again).
    known: Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    next: Arc<AtomicUsize>,
    /// `user:password` as the URL wrote it (still percent-encoded), for the data nodes' URLs.
    userinfo: Option<String>,
    certs: Option<TlsCertificates>,
}

#[derive(Clone)]
struct Sentinel {
    sentinels: Vec<ConnectionAddr>,
    /// Where the next lookup starts in `sentinels`: the redis crate asks them in order and waits
    /// for each, so a frozen first sentinel would stall every lookup; rotating the start lets
    /// the next attempt (after this one's timeout) begin with another.
    next: Arc<AtomicUsize>,
    master: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    certs: Option<TlsCertificates>,
}

/// Nagle would hold back a lone PUBLISH behind the previous one's ACK.
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// Checks the form of a `--redis-url` (not its TLS files): for a CLI flag's parser.
pub fn check_url(url: &str) -> Result<String, String> {
    parse_url(url).map(|_| url.to_string()).map_err(|e| e.to_string())
}

struct Parsed {
    kind: Kind,
    tls: bool,
    /// One connection info per host, each carrying the URL's credentials (and db for a single).
    hosts: Vec<ConnectionInfo>,
    master: Option<String>,
    db: i64,
    userinfo: Option<String>,
}

fn parse_url(url: &str) -> Result<Parsed, EndpointError> {
    let bad = |why: &str| EndpointError::Url(why.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let (kind, tls) = match scheme {
        "redis" | "redis+unix" | "unix" => (Kind::Single, false),
        "rediss" => (Kind::Single, true),
        "redis+sentinel" => (Kind::Sentinel, false),
        "rediss+sentinel" => (Kind::Sentinel, true),
        "redis+cluster" => (Kind::Cluster, false),
        "rediss+cluster" => (Kind::Cluster, true),
        other => return Err(EndpointError::Url(format!("unknown scheme {other}://"))),
    };
    if kind == Kind::Single {
        let info = url.into_connection_info().map_err(|e| EndpointError::Url(e.to_string()))?;
        let db = info.redis_settings().db();
        return Ok(Parsed { kind, tls, hosts: vec![info], master: None, db, userinfo: None });
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let base = if tls { "rediss" } else { "redis" };
    let hosts = hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                return Err(bad("an empty host in the list"));
            }
            let one = match userinfo {
                Some(u) => format!("{base}://{u}@{host}"),
                None => format!("{base}://{host}"),
            };
            one.as_str().into_connection_info().map_err(|e| EndpointError::Url(format!("{host}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let (master, db) = match kind {
        Kind::Sentinel => {
            let master = parts.next().ok_or_else(|| bad("a Sentinel URL names its master after the hosts: /MASTER"))?;
            let db = match parts.next() {
                Some(d) => d.parse().map_err(|_| EndpointError::Url(format!("database {d:?} is not a number")))?,
                None => 0,
            };
            (Some(master.to_string()), db)
        }
        _ => (None, 0),
    };
    if parts.next().is_some() {
        return Err(bad("unexpected path after the hosts"));
    }
    Ok(Parsed { kind, tls, hosts, master, db, userinfo: userinfo.map(String::from) })
}

impl Endpoint {
    /// Parses `url` and reads the TLS files; nothing connects yet.
    pub fn parse(url: &str, files: &TlsFiles) -> Result<Self, EndpointError> {
        let p = parse_url(url)?;
        if files.any() && !p.tls {
            return Err(EndpointError::TlsFilesWithoutTls);
        }
        let certs = files.load()?;
        if p.tls {
            // The redis crate's rustls takes the process' provider; which one, we decide.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let addrs: Vec<String> = p.hosts.iter().map(|h| h.addr().to_string()).collect();
        let tls_note = if p.tls { " (TLS)" } else { "" };
        let (topology, shown) = match p.kind {
            Kind::Single => {
                let info = p.hosts.into_iter().next().ok_or_else(|| EndpointError::Url("no host".into()))?;
                let info = info.set_tcp_settings(tcp());
                let client = match &certs {
                    Some(certs) => Client::build_with_tls(info, certs.clone()),
                    None => Client::open(info),
                }
                .map_err(|e| EndpointError::Url(e.to_string()))?;
                (Topology::Single(Box::new(client)), format!("{}{tls_note}", addrs.join(",")))
            }
            Kind::Sentinel => {
                let master = p.master.unwrap_or_default();
                let settings = p.hosts[0].redis_settings();
                let (username, password) =
                    (settings.username().map(String::from), settings.password().map(String::from));
                let sentinels = p.hosts.iter().map(|h| h.addr().clone()).collect();
                let shown = format!("master {master} via sentinels {}{tls_note}", addrs.join(","));
                let next = Arc::new(AtomicUsize::new(0));
                let s = Sentinel { sentinels, next, master, db: p.db, username, password, certs };
                (Topology::Sentinel(Box::new(s)), shown)
            }
            Kind::Cluster => {
                let known: Vec<(String, u16)> = p
                    .hosts
                    .iter()
                    .filter_map(|h| match h.addr() {
                        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                            Some((host.clone(), *port))
                        }
                        _ => None,
                    })
                    .collect();
                let seeds = Seeds {
                    seeds: known.clone(),
                    known: Arc::new(std::sync::Mutex::new(known)),
                    next: Arc::new(AtomicUsize::new(0)),
                    userinfo: p.userinfo,
                    certs,
                };
                (Topology::Cluster(Box::new(seeds)), format!("cluster {}{tls_note}", addrs.join(",")))
            }
        };
        if let Topology::Sentinel(s) = &topology {
            // Certificates and settings are checked now, not at the first connect.
            s.client(p.tls).map_err(|e| EndpointError::Url(e.to_string()))?;
        }
        Ok(Endpoint { topology, shown, tls: p.tls, slot: 0 })
    }

    pub fn kind(&self) -> Kind {
        match self.topology {
            Topology::Single(_) => Kind::Single,
            Topology::Sentinel(_) => Kind::Sentinel,
            Topology::Cluster(_) => Kind::Cluster,
        }
    }

    /// This endpoint for the keys of hash `slot` (on a Redis Cluster: its master, wherever it
    /// is at each connect; elsewhere the same Redis).
    pub fn for_slot(&self, slot: u16) -> Endpoint {
        let mut e = self.clone();
        e.slot = slot;
        if let Topology::Cluster(_) = e.topology {
            e.shown = format!("{} slot {slot}", self.shown);
        }
        e
    }

    /// Whether node channels are shard channels (`SPUBLISH`/`SSUBSCRIBE`): on a Redis Cluster,
    /// where classic pub/sub would copy every message to every shard.
    pub fn sharded(&self) -> bool {
        self.kind() == Kind::Cluster
    }

    /// The command that publishes to a node or control channel here.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded() { "SPUBLISH" } else { "PUBLISH" }
    }

    /// Where it points, for logs: hosts and ports, the master's name, whether TLS — never the
    /// password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The Sentinel master's name, if the URL names one.
    pub fn master_name(&self) -> Option<&str> {
        match &self.topology {
            Topology::Sentinel(s) => Some(&s.master),
            _ => None,
        }
    }

    /// A client for the Redis to use now: the one Redis, or the master the sentinels name at
    /// this moment (after checking it calls itself master). Bounded by `within`.
    pub async fn client(&self, within: Duration) -> RedisResult<Client> {
        let timed_out = || RedisError::from((redis::ErrorKind::Io, "asking the sentinels for the master timed out"));
        match &self.topology {
            Topology::Single(client) => Ok((**client).clone()),
            Topology::Sentinel(s) => {
                let mut sentinel = s.client(self.tls)?;
                tokio::time::timeout(within, sentinel.async_get_client()).await.map_err(|_| timed_out())?
            }
            Topology::Cluster(c) => c.client(self.slot, self.tls, false, within).await,
        }
    }

    /// A client speaking RESP3 (for shard-channel subscriptions, whose messages come as
    /// pushes), to the Redis [`Endpoint::client`] names.
    pub async fn resp3_client(&self, within: Duration) -> RedisResult<Client> {
        match &self.topology {
            Topology::Cluster(c) => c.client(self.slot, self.tls, true, within).await,
            _ => {
                let client = self.client(within).await?;
                // The connection info carries the TLS parameters already.
                let info = client.get_connection_info().clone();
                let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
                Client::open(info.set_redis_settings(settings))
            }
        }
    }

    /// What a failure to connect most likely means, for the log line that reports it: the
    /// usual TLS mistakes otherwise show up as a bare `connection reset` or a timeout.
    pub fn hint(&self, error: &str) -> Option<&'static str> {
        let e = error.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| e.contains(w));
        if self.tls {
            if any(&["unknownissuer", "invalid peer certificate", "certificate verify"]) {
                return Some(
                    "the server's certificate is not signed by a CA this process trusts: give it with --redis-tls-ca-file",
                );
            }
            if any(&["certificaterequired", "handshakefailure", "bad certificate", "unknownca"]) {
                return Some(
                    "the server wants a client certificate it trusts: give --redis-tls-cert-file and --redis-tls-key-file",
                );
            }
            if any(&["timed out", "corrupt", "invalidcontenttype", "invalid content type"]) {
                return Some("no TLS answer: if this port speaks plain Redis, write redis:// rather than rediss://");
            }
        } else if any(&["reset by peer", "broken pipe", "connection closed", "unexpected end", "end of file"]) {
            return Some("the server dropped a plain connection at once: if it speaks only TLS, write rediss://");
        }
        None
    }

    /// A multiplexed connection to the Redis to use now ([`Endpoint::client`]), its connect and
    /// every response bounded by `within`.
    pub async fn connection(&self, within: Duration) -> RedisResult<MultiplexedConnection> {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(within)).set_response_timeout(Some(within));
        self.client(within).await?.get_multiplexed_async_connection_with_config(&config).await
    }

    /// A client for one of the sentinels (to hear `+switch-master`); an error for other
    /// topologies.
    pub async fn sentinel_client(&self, within: Duration) -> RedisResult<Client> {
        let Topology::Sentinel(s) = &self.topology else {
            return Err(RedisError::from((redis::ErrorKind::InvalidClientConfig, "not a Sentinel URL")));
        };
        let timed_out = || RedisError::from((redis::ErrorKind::Io, "no sentinel answered in time"));
        let mut sentinel = s.client(self.tls)?;
        tokio::time::timeout(within, sentinel.async_get_sentinel_client()).await.map_err(|_| timed_out())?
    }
}

impl Seeds {
    /// A client for the master holding `slot` now, as the first node that answers says.
    async fn client(&self, slot: u16, tls: bool, resp3: bool, within: Duration) -> RedisResult<Client> {
        let known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        // The last node that answered first; one that failed is passed over by the next caller.
        let start = self.next.load(Ordering::Relaxed);
        let mut last = RedisError::from((redis::ErrorKind::Io, "no cluster node to ask"));
        let deadline = tokio::time::Instant::now() + within;
        // A dead node refuses at once; a frozen one would hold the whole bound: each gets a share.
        let each = (within / 2).max(Duration::from_millis(200));
        for i in 0..known.len() {
            let (host, port) = &known[(start + i) % known.len()];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let asked = tokio::time::timeout(left.min(each), self.ask(host, *port, slot, tls)).await;
            match asked {
                Ok(Ok((master, nodes))) => {
                    self.learn(nodes, (host, *port));
                    return self.open(&master.0, master.1, tls, resp3);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = RedisError::from((redis::ErrorKind::Io, "a cluster node did not answer in time")),
            }
            self.next.store(start + i + 1, Ordering::Relaxed);
        }
        Err(last)
    }

    /// Asks the node at `host:port` which master holds `slot`; also every node it knows.
    async fn ask(
        &self,
        host: &str,
        port: u16,
        slot: u16,
        tls: bool,
    ) -> RedisResult<((String, u16), Vec<(String, u16)>)> {
        let mut con = self.open(host, port, tls, false)?.get_multiplexed_async_connection().await?;
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut con).await?;
        let mut master = None;
        let mut nodes = Vec::new();
        for range in ranges {
            let redis::Value::Array(parts) = range else { continue };
            let (Some(lo), Some(hi)) = (parts.first(), parts.get(1)) else { continue };
            let (lo, hi): (i64, i64) = (redis::from_redis_value_ref(lo)?, redis::from_redis_value_ref(hi)?);
            for (i, node) in parts.iter().skip(2).enumerate() {
                let redis::Value::Array(node) = node else { continue };
                let (Some(ip), Some(p)) = (node.first(), node.get(1)) else { continue };
                let ip: String = redis::from_redis_value_ref(ip)?;
                let p: u16 = redis::from_redis_value_ref(p)?;
                // An empty address means "the one you asked me on".
                let addr = (if ip.is_empty() || ip == "?" { host.to_string() } else { ip }, p);
                if i == 0 && (lo..=hi).contains(&i64::from(slot)) {
                    master = Some(addr.clone());
                }
                nodes.push(addr);
            }
        }
        let master = master.ok_or_else(|| {
            RedisError::from((redis::ErrorKind::Io, "the cluster has no master for the slot", format!("slot {slot}")))
        })?;
        Ok((master, nodes))
    }

    /// Asks `answered` first next time, then the nodes it named, then the URL's hosts.
    fn learn(&self, nodes: Vec<(String, u16)>, answered: (&str, u16)) {
        let first = (answered.0.to_string(), answered.1);
        let mut fresh = vec![first];
        for n in nodes.into_iter().chain(self.seeds.iter().cloned()) {
            if !fresh.contains(&n) {
                fresh.push(n);
            }
        }
        *self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        self.next.store(0, Ordering::Relaxed);
    }

    fn open(&self, host: &str, port: u16, tls: bool, resp3: bool) -> RedisResult<Client> {
        let scheme = if tls { "rediss" } else { "redis" };
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        let auth = self.userinfo.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let protocol = if resp3 { "/?protocol=resp3" } else { "" };
        let info = format!("{scheme}://{auth}{host}:{port}{protocol}").into_connection_info()?.set_tcp_settings(tcp());
        match &self.certs {
            Some(certs) if tls => Client::build_with_tls(info, certs.clone()),
            _ => Client::open(info),
        }
    }
}

impl Sentinel {
    fn client(&self, tls: bool) -> RedisResult<SentinelClient> {
        let mut sentinels = self.sentinels.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % sentinels.len().max(1);
        sentinels.rotate_left(start);
        let mut b = SentinelClientBuilder::new(sentinels, &self.master, SentinelServerType::Master)?
            .set_client_to_redis_db(self.db)
            .set_client_to_redis_tcp_settings(tcp())
            .set_client_to_sentinel_tcp_settings(tcp());
        if let Some(user) = &self.username {
            b = b.set_client_to_redis_username(user).set_client_to_sentinel_username(user);
        }
        if let Some(password) = &self.password {
            b = b.set_client_to_redis_password(password).set_client_to_sentinel_password(password);
        }
        if tls {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certs) = &self.certs {
                b = b
                    .set_client_to_redis_certificates(certs.clone())
                    .set_client_to_sentinel_certificates(certs.clone());
            }
        }
        b.build()
    }
}

/// Whether `e` says the server is no longer (or not yet) the writable primary — a master
/// demoted by a failover answers `READONLY`, a Redis Cluster node that no longer holds the
/// slot `MOVED`: the caller must reconnect (through the sentinels, or asking the cluster)
/// rather than keep using it.
pub fn wrong_server(e: &RedisError) -> bool {
    const CODES: [&str; 7] = ["READONLY", "MASTERDOWN", "LOADING", "MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"];
    e.code().is_some_and(|c| CODES.contains(&c))
        || e.detail().is_some_and(|d| CODES.iter().any(|c| d.contains(&format!("-{c} ")) || d.starts_with(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(url, &TlsFiles::default())
    }

    #[test]
    fn every_topology_parses_and_shows_no_password() {
        let e = parse("redis://:s3cret@10.0.0.5:6380/2").unwrap();
        assert_eq!((e.kind(), e.shown()), (Kind::Single, "10.0.0.5:6380"));
        let e = parse("rediss://app:s3cret@redis.example.com:6380").unwrap();
        assert_eq!((e.kind(), e.shown()), (Kind::Single, "redis.example.com:6380 (TLS)"));
        let e = parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/mymaster/3").unwrap();
        assert_eq!(e.kind(), Kind::Sentinel);
        assert_eq!(e.shown(), "master mymaster via sentinels 10.0.0.1:26379,10.0.0.2:26379");
        assert_eq!(e.master_name(), Some("mymaster"));
        let e = parse("rediss+sentinel://user:pw@s1:26379/m").unwrap();
        assert_eq!(e.shown(), "master m via sentinels s1:26379 (TLS)");
        let e = parse("redis+cluster://a:7000,b:7001").unwrap();
        assert_eq!(e.kind(), Kind::Cluster);
        assert!(e.sharded());
        assert_eq!(e.for_slot(42).shown(), "cluster a:7000,b:7001 slot 42");
        assert!(!parse("redis+sentinel://:s3cret@h:1/m").unwrap().shown().contains("s3cret"));
    }

    #[test]
    fn malformed_urls_are_refused_with_the_forms_expected() {
        for url in [
            "http://h:1",
            "127.0.0.1:6379",
            "redis+sentinel://h:26379",
            "redis+sentinel://h:26379/m/notanumber",
            "redis+sentinel://h:26379,/m",
            "redis+cluster://h:1/extra",
        ] {
            let err = parse(url).err().unwrap_or_else(|| panic!("{url} parsed"));
            assert!(err.to_string().contains("expected redis[s]://"), "{url}: {err}");
        }
    }

    #[test]
    fn tls_files_need_a_tls_url_and_a_key_goes_with_its_certificate() {
        let files = TlsFiles { ca: Some("/nonexistent/ca.pem".into()), ..TlsFiles::default() };
        assert!(matches!(Endpoint::parse("redis://h:1", &files), Err(EndpointError::TlsFilesWithoutTls)));
        let err = Endpoint::parse("rediss://h:1", &files).err().unwrap();
        assert!(err.to_string().starts_with("--redis-tls-ca-file /nonexistent/ca.pem:"), "{err}");
        let dir = std::env::temp_dir().join(format!("sb-endpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let files = TlsFiles { cert: Some(junk.clone()), ..TlsFiles::default() };
        assert!(matches!(Endpoint::parse("rediss://h:1", &files), Err(EndpointError::HalfClientCertificate)));
        let files = TlsFiles { ca: Some(junk), ..TlsFiles::default() };
        let err = Endpoint::parse("rediss://h:1", &files).err().unwrap();
        assert!(err.to_string().contains("not a PEM file"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_usual_tls_mistakes_get_a_hint() {
        let plain = parse("redis://h:1").unwrap();
        assert!(plain.hint("Connection reset by peer (os error 104)").unwrap().contains("rediss://"));
        assert_eq!(plain.hint("Connection refused (os error 111)"), None);
        let tls = parse("rediss://h:1").unwrap();
        assert!(tls.hint("invalid peer certificate: UnknownIssuer").unwrap().contains("--redis-tls-ca-file"));
        assert!(tls.hint("received fatal alert: CertificateRequired").unwrap().contains("--redis-tls-cert-file"));
        assert!(tls.hint("subscribing timed out").unwrap().contains("redis://"));
    }

    #[test]
    fn a_cluster_is_asked_where_it_answered_then_what_it_named_then_the_seeds() {
        let e = parse("redis+cluster://a:1,b:2").unwrap();
        let Topology::Cluster(seeds) = &e.topology else { panic!("a cluster URL") };
        seeds.learn(vec![("c".into(), 3), ("b".into(), 2), ("gone-since".into(), 4)], ("c", 3));
        seeds.learn(vec![("c".into(), 3), ("b".into(), 2)], ("b", 2));
        let known = seeds.known.lock().unwrap().clone();
        assert_eq!(known, [("b".to_string(), 2), ("c".into(), 3), ("a".into(), 1)]);
        assert_eq!(seeds.next.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_demoted_master_is_told_apart() {
        let readonly = RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly), "x"));
        assert!(wrong_server(&readonly));
        let other = RedisError::from((redis::ErrorKind::Io, "reset"));
        assert!(!wrong_server(&other));
    }
}
