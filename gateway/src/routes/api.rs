//! The client-facing routes: tokens, ICE servers, the OpenAPI document.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use switchboard::api::{ApiError, IceServers, TokenRequest, TokenResponse};

use super::{ApiKey, no_store};
use crate::edge::Edge;
use crate::error::ApiFailure;

/// Mints an access token for one room.
///
/// The token is a JWT (HS256) the application hands to its user's client, which passes it to
/// a node as `?access_token=<jwt>` or as the WebSocket subprotocol `access_token.<jwt>`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The token", body = TokenResponse),
        (status = 400, description = "Malformed body, room or user", body = ApiError),
        (status = 401, description = "No API key, or a wrong one", body = ApiError),
        (status = 403, description = "A browser Origin not on --api-origins", body = ApiError),
        (status = 413, description = "Body too large", body = ApiError),
        (status = 415, description = "Body is not application/json", body = ApiError),
        (status = 503, description = "No token secrets configured (development)", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn mint(
    _key: ApiKey,
    edge: web::Data<Edge>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiFailure> {
    Ok(no_store(&edge.mint(body.into_inner())?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IceQuery {
    /// With an API key: the user the TURN credential is labelled with (default `service`).
    /// Ignored with an access token, whose user is used.
    pub user: Option<String>,
}

/// ICE servers for `RTCPeerConnection`: STUN, and TURN with a short-lived credential.
///
/// TURN credentials follow the TURN REST form coturn checks with `use-auth-secret`: username
/// `<expiry unix seconds>:<user>`, password base64(HMAC-SHA1(secret, username)).
#[utoipa::path(
    get,
    path = "/v1/ice-servers",
    tag = "ice",
    params(IceQuery),
    responses(
        (status = 200, description = "The ICE servers", body = IceServers),
        (status = 401, description = "No credential where one is required, or a bad one (`unauthorized`, `token-expired`, `token-invalid`)", body = ApiError),
        (status = 403, description = "A browser Origin not on --api-origins", body = ApiError),
    ),
    security((), ("access_token" = []), ("api_key" = []))
)]
pub async fn ice_servers(
    req: HttpRequest,
    edge: web::Data<Edge>,
    query: web::Query<IceQuery>,
) -> Result<HttpResponse, ApiFailure> {
    let user = edge.ice_user(&req, query.user.as_deref())?;
    Ok(no_store(&edge.ice_servers(&user)))
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "application/json")).body(crate::openapi::document())
}
