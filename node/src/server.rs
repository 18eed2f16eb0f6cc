//! The HTTP side of a node: one listener serving WebSocket upgrades (taken over by sessions)
//! and the plain HTTP routes: probes, metrics, and the gateway's routes (tokens, ICE servers,
//! the admin API, the browser client), so a single machine needs no gateway.
//!
//! actix-web's `HttpServer` has no hook for taking a socket at the upgrade, so the node builds
//! the same stack itself: actix-server workers running actix-http's `HttpService`, whose
//! `upgrade` service gets WebSocket requests and whose normal path is the actix-web `App`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{fn_factory, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::{App, HttpResponse, web};
use serde_json::json;
use socket2::{Domain, Socket, Type};
use switchboard_gateway::edge::Edge;
use switchboard_gateway::routes;

use crate::state::NodeState;
use crate::upgrade::upgrade;

/// Binds the listener with a deep accept backlog (bursts of reconnects after a node restart).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// How many workers to run for `asked` (0 = one per CPU): never more than the CPUs this process
/// may run on (its affinity mask and cgroup quota). Two busy workers sharing one CPU do not take
/// turns message by message but in the kernel's time slices: each waits up to 8 ms for the other,
/// and a relay's p99 grew to 10–20× its p50 (BENCHMARKS.md, "Fairness under saturation").
fn workers(asked: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match asked {
        0 => cpus,
        n if n > cpus => {
            tracing::warn!(
                asked = n,
                cpus,
                "--workers {n} is more than the {cpus} CPU(s) this process may run on; running {cpus}: \
                 workers sharing a CPU wait for each other's time slices (milliseconds per relay)"
            );
            cpus
        }
        n => n,
    }
}

/// Builds the server over `listener`; it runs when awaited.
pub fn build(state: Arc<NodeState>, edge: web::Data<Edge>, listener: TcpListener) -> std::io::Result<Server> {
    let workers = workers(state.config.workers);
    let per_worker = state.config.max_connections.saturating_add(64);
    Server::build()
        .workers(workers)
        .max_concurrent_connections(per_worker)
        .disable_signals()
        .shutdown_timeout(state.config.shutdown_timeout_secs.max(1))
        .listen("switchboard", listener, move || {
            let for_upgrade = Arc::clone(&state);
            let for_app = Arc::clone(&state);
            HttpService::build()
                .client_request_timeout(Duration::from_secs(10))
                .upgrade(fn_factory(move || {
                    let state = Arc::clone(&for_upgrade);
                    async move {
                        Ok::<_, ()>(fn_service(move |(req, framed)| upgrade(Arc::clone(&state), req, framed)))
                    }
                }))
                .finish(map_config(app(for_app, edge.clone()), |_| AppConfig::default()))
                .tcp()
        })
        .map(|b| b.run())
}

fn app(
    state: Arc<NodeState>,
    edge: web::Data<Edge>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let serve_client = state.config.demo;
    App::new()
        .app_data(web::Data::from(state))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        // Browsers ask for one on every page load; answer without a 404 in their console.
        .route("/favicon.ico", web::get().to(HttpResponse::NoContent))
        .route("/ws", web::get().to(upgrade_required))
        .route("/v1/ws", web::get().to(upgrade_required))
        .configure(|cfg| routes::configure(cfg, edge, serve_client))
        .default_service(web::to(not_found))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<NodeState>) -> HttpResponse {
    let body = json!({
        "ready": state.ready(),
        "draining": state.draining(),
        "bus": state.bus.healthy(),
        "node_id": &*state.node_id,
        "sessions": state.sessions.len(),
    });
    if state.ready() { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

async fn metrics(state: web::Data<NodeState>, edge: web::Data<Edge>) -> HttpResponse {
    // Readiness depends on the bus, which changes on its own: read it at scrape time.
    state.metrics.ready.set(i64::from(state.ready()));
    // The HTTP API's own series (requests, tokens minted) follow the node's.
    let body = state.metrics.render() + &edge.metrics().render();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}

async fn upgrade_required() -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::UPGRADE_REQUIRED)
        .insert_header(("Upgrade", "websocket"))
        .json(json!({ "error": { "code": "bad-message", "message": "this endpoint speaks WebSocket only" } }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": { "code": "not-found", "message": "no such route" } }))
}
