//! The edge's HTTP routes, mounted into any actix `App` — the gateway binary's, or a node's
//! on a single machine — by [`configure`].
//!
//! | route                                          | auth                     |
//! |------------------------------------------------|--------------------------|
//! | `POST /v1/tokens`                              | API key                  |
//! | `GET /v1/ice-servers`                          | access token or API key (anonymous in development) |
//! | `GET /v1/nodes`                                | API key                  |
//! | `GET /v1/rooms?cursor=&limit=`                 | API key                  |
//! | `GET /v1/rooms/{room}`                         | API key                  |
//! | `DELETE /v1/rooms/{room}`                      | API key                  |
//! | `DELETE /v1/rooms/{room}/members/{peer_id}`    | API key                  |
//! | `GET /v1/openapi.json`                         | none                     |
//! | `GET /` and the browser client's files         | none                     |
//!
//! Every `/v1/*` resource is wrapped, outermost first, in: request metrics, the Origin guard
//! (a browser on an Origin not on `--api-origins` gets 403 `forbidden`, not merely a response
//! its page cannot read), and CORS. The routes are resources of their own rather than one
//! `/v1` scope so the host app keeps its own `/v1/ws`.

pub(crate) mod admin;
pub(crate) mod api;
mod client;
mod middleware;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{HttpResponse, Resource, ResponseError, web};

use crate::edge::Edge;
use crate::error::ApiFailure;

pub use admin::{Protocol, RoomQuery, RoomsQuery};

/// Largest request body the API reads (a token request is ~200 bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Mounts the API (and, with `serve_client`, the browser client) into an app.
pub fn configure(cfg: &mut web::ServiceConfig, edge: web::Data<Edge>, serve_client: bool) {
    cfg.app_data(edge.clone());
    cfg.service(resource("/v1/tokens", &edge).route(web::post().to(api::mint)));
    cfg.service(resource("/v1/ice-servers", &edge).route(web::get().to(api::ice_servers)));
    cfg.service(resource("/v1/openapi.json", &edge).route(web::get().to(api::openapi)));
    cfg.service(resource("/v1/nodes", &edge).route(web::get().to(admin::nodes)));
    cfg.service(resource("/v1/webhooks/failures", &edge).route(web::get().to(admin::webhook_failures)));
    cfg.service(resource("/v1/rooms", &edge).route(web::get().to(admin::rooms)));
    cfg.service(
        resource("/v1/rooms/{room}", &edge).route(web::get().to(admin::room)).route(web::delete().to(admin::close)),
    );
    cfg.service(resource("/v1/rooms/{room}/members/{peer_id}", &edge).route(web::delete().to(admin::kick)));
    if serve_client {
        client::configure(cfg);
    }
}

/// An API resource with its middleware, its extractor settings (so malformed input gets the
/// typed error body too) and a typed 405.
fn resource(
    path: &str,
    edge: &web::Data<Edge>,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody + use<>>,
        Error = actix_web::Error,
        InitError = (),
    > + use<>,
> {
    web::resource(path)
        .app_data(json_config())
        .app_data(web::QueryConfig::default().error_handler(|e, _| ApiFailure::bad_request(e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiFailure::bad_request(e.to_string()).into()))
        .default_service(web::to(method_not_allowed))
        .wrap(middleware::cors(edge))
        .wrap(actix_web::middleware::from_fn(middleware::guard_origin))
        .wrap(actix_web::middleware::from_fn(middleware::count))
}

/// JSON bodies: the size cap, and actix's own parse errors turned into typed ones.
fn json_config() -> web::JsonConfig {
    use actix_web::error::JsonPayloadError as E;
    use actix_web::http::StatusCode;
    use switchboard::api::ApiErrorCode;
    web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(|e, _| {
        let failure = match &e {
            E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiFailure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiErrorCode::PayloadTooLarge,
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            E::ContentType => ApiFailure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ApiErrorCode::UnsupportedMediaType,
                "the body must be JSON: send `Content-Type: application/json`",
            ),
            E::Deserialize(inner) => ApiFailure::bad_request(format!("the body is not a valid request: {inner}")),
            other => ApiFailure::bad_request(format!("the body could not be read: {other}")),
        };
        failure.into()
    })
}

async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let mut res = ApiFailure::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        switchboard::api::ApiErrorCode::BadRequest,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .error_response();
    // The methods each resource takes are few and fixed; listing them is what 405 asks for.
    let allow = match req.match_pattern().as_deref() {
        Some("/v1/tokens") => "POST, OPTIONS",
        Some("/v1/rooms/{room}") => "GET, DELETE, OPTIONS",
        Some("/v1/rooms/{room}/members/{peer_id}") => "DELETE, OPTIONS",
        _ => "GET, OPTIONS",
    };
    if let Ok(v) = header::HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

/// A JSON response no cache keeps: API answers carry credentials or live state.
fn no_store<T: serde::Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

/// Extracting it checks the request's API key. Listed first among a handler's arguments, it
/// runs before the body is read: a request without a key gets 401, whatever its body.
pub struct ApiKey;

impl actix_web::FromRequest for ApiKey {
    type Error = ApiFailure;
    type Future = std::future::Ready<Result<Self, ApiFailure>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(match req.app_data::<web::Data<Edge>>() {
            Some(edge) => edge.require_api_key(req).map(|()| ApiKey),
            None => Err(ApiFailure::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                switchboard::api::ApiErrorCode::Internal,
                "the edge is not configured on this route",
            )),
        })
    }
}
