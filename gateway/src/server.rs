//! The gateway binary's server: the edge's routes over a [`RedisAdmin`], plus the probes and
//! metrics an orchestrator scrapes.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::admin::ClusterAdmin;
use crate::config::GatewayConfig;
use crate::edge::Edge;
use crate::error::{ApiFailure, EdgeError};
use crate::redis_admin::RedisAdmin;
use crate::routes;
use crate::webhook;
use switchboard::cluster::endpoint::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("--redis-url: {0}")]
    RedisUrl(#[from] switchboard::cluster::endpoint::EndpointError),
    #[error("{0}")]
    Edge(#[from] EdgeError),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
}

impl GatewayError {
    /// A stable name for the failure, for logs and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Listen { .. } => "listen",
            Self::RedisUrl(_) => "bad-redis-url",
            Self::Edge(e) => e.code(),
            Self::Server(_) => "server",
        }
    }
}

/// What the probes read.
struct Probe {
    admin: Arc<dyn ClusterAdmin>,
    draining: AtomicBool,
}

/// Runs the gateway until SIGTERM or SIGINT. Must be called inside an actix `System`.
pub async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let endpoint = Endpoint::parse(&config.redis_url, &config.redis_tls.files())?;
    let buckets = config.redis_tls.buckets(&config.cluster_name, &endpoint);
    let admin: Arc<dyn ClusterAdmin> = Arc::new(RedisAdmin::new(&endpoint, buckets.clone()));
    let edge = web::Data::new(Edge::new(&config.edge, &config.cluster_name, Arc::clone(&admin))?);
    // The cluster's nodes record the events in Redis; the gateways deliver them.
    let feeding = edge.webhooks().map(|hooks| webhook::stream::start(&endpoint, &buckets, hooks.clone()));
    let probe = web::Data::new(Probe { admin, draining: AtomicBool::new(false) });
    let listener =
        TcpListener::bind(config.listen).map_err(|source| GatewayError::Listen { addr: config.listen, source })?;
    let local = listener.local_addr()?;
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let serve_client = config.serve_client;
    let for_app = (edge.clone(), probe.clone());
    let server = HttpServer::new(move || {
        let (edge, probe) = for_app.clone();
        App::new()
            .app_data(probe)
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            // Browsers ask for one on every page load; answer without a 404 in their console.
            .route("/favicon.ico", web::get().to(HttpResponse::NoContent))
            .configure(|cfg| routes::configure(cfg, edge, serve_client))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout_secs.max(1))
    .listen(listener)?
    .run();
    // Scripts and tests read this line to learn the port (with --listen …:0).
    println!("listening on {local}");
    info!(addr = %local, cluster = %config.cluster_name, tokens = edge.token_keys().is_some(), "gateway up");
    actix_rt::spawn(on_signal(server.handle(), probe.into_inner(), feeding));
    server.await?;
    info!("gateway stopped");
    Ok(())
}

/// On SIGTERM or SIGINT: turn unready, hand the webhook delivery over, let requests in flight
/// finish, stop.
async fn on_signal(server: ServerHandle, probe: Arc<Probe>, feeding: Option<webhook::stream::Feeding>) {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        warn!("cannot install signal handlers; SIGTERM will not drain");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
    probe.draining.store(true, Ordering::SeqCst);
    if let Some(feeding) = feeding {
        feeding.hand_over().await;
    }
    server.stop(true).await;
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready while the cluster's Redis answers: every API route but the client's needs it, or the
/// token secrets, which cannot go away.
async fn readyz(probe: web::Data<Probe>) -> HttpResponse {
    let redis = probe.admin.healthy().await;
    let draining = probe.draining.load(Ordering::SeqCst);
    let ready = redis && !draining;
    let body = json!({ "ready": ready, "redis": redis, "draining": draining });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

async fn metrics(edge: web::Data<Edge>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(edge.metrics().render())
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiFailure> {
    Err(ApiFailure::not_found(format!("no route {}", req.path().chars().take(200).collect::<String>())))
}
