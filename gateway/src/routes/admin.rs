//! The admin routes (API key): nodes, rooms, members; kick a member, close a room.
//!
//! Rooms are named as their clients name them. A seed-protocol channel lives in a namespace of
//! its own, so it is addressed with `?protocol=seed` (or as `seed/<channel>`, URL-encoded):
//! `GET /v1/rooms/lobby?protocol=seed` is the seed channel `lobby`, `GET /v1/rooms/lobby` the
//! v1 room `lobby`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use switchboard::api::{ActionResult, ApiError, NodeList, RoomDetail, RoomList, WebhookFailures};
use switchboard::protocol::{PeerId, RoomName};

use super::{ApiKey, no_store};
use crate::edge::Edge;
use crate::error::ApiFailure;

/// Rooms per page when the request names no limit.
pub const DEFAULT_PAGE: usize = 100;
/// Most rooms per page.
pub const MAX_PAGE: usize = 1000;

/// Which protocol's namespace a room name is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    V1,
    Seed,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomsQuery {
    /// `next_cursor` of the previous page; absent for the first.
    pub cursor: Option<String>,
    /// Rooms per page, 1-1000 (default 100); a page may hold a few more or fewer.
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    /// The room's protocol (default `v1`).
    pub protocol: Option<Protocol>,
}

/// Live nodes, from their heartbeats.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "admin",
    responses(
        (status = 200, body = NodeList),
        (status = 401, body = ApiError),
        (status = 503, description = "The cluster's Redis is unreachable", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn nodes(_key: ApiKey, edge: web::Data<Edge>) -> Result<HttpResponse, ApiFailure> {
    let nodes = edge.admin().nodes().await?;
    Ok(no_store(&NodeList { nodes }))
}

/// Webhooks given up after their retry window, most recent first (the last 100; empty without
/// `--webhook-urls`).
#[utoipa::path(
    get,
    path = "/v1/webhooks/failures",
    tag = "admin",
    responses(
        (status = 200, body = WebhookFailures),
        (status = 401, body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn webhook_failures(_key: ApiKey, edge: web::Data<Edge>) -> Result<HttpResponse, ApiFailure> {
    let failures = edge.webhooks().map(|w| w.failures()).unwrap_or_default();
    Ok(no_store(&WebhookFailures { failures }))
}

/// A page of rooms with their member counts.
#[utoipa::path(
    get,
    path = "/v1/rooms",
    tag = "admin",
    params(RoomsQuery),
    responses(
        (status = 200, body = RoomList),
        (status = 400, body = ApiError),
        (status = 401, body = ApiError),
        (status = 503, body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn rooms(
    _key: ApiKey,
    edge: web::Data<Edge>,
    query: web::Query<RoomsQuery>,
) -> Result<HttpResponse, ApiFailure> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiFailure::bad_request(format!("limit must be 1-{MAX_PAGE}")));
    }
    let query = query.into_inner();
    Ok(no_store(&edge.admin().rooms(query.cursor, limit).await?))
}

/// A room's members, each with the node its WebSocket is on.
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}",
    tag = "admin",
    params(("room" = String, Path, description = "The room's name"), RoomQuery),
    responses(
        (status = 200, body = RoomDetail),
        (status = 400, body = ApiError),
        (status = 401, body = ApiError),
        (status = 404, description = "No such room", body = ApiError),
        (status = 503, body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn room(
    _key: ApiKey,
    edge: web::Data<Edge>,
    path: web::Path<String>,
    query: web::Query<RoomQuery>,
) -> Result<HttpResponse, ApiFailure> {
    let room = room_name(&path, query.protocol)?;
    let detail: RoomDetail = edge.admin().room(room.as_str()).await?;
    Ok(no_store(&detail))
}

/// Closes a room: every member leaves (`left` / `peer-left` with reason `room-closed`).
/// Answers once they are gone.
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}",
    tag = "admin",
    params(("room" = String, Path, description = "The room's name"), RoomQuery),
    responses(
        (status = 200, description = "How many members were removed", body = ActionResult),
        (status = 400, body = ApiError),
        (status = 401, body = ApiError),
        (status = 404, description = "No such room", body = ApiError),
        (status = 503, description = "Redis unreachable, or no node listening", body = ApiError),
        (status = 504, description = "No node removed the members in time", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn close(
    _key: ApiKey,
    edge: web::Data<Edge>,
    path: web::Path<String>,
    query: web::Query<RoomQuery>,
) -> Result<HttpResponse, ApiFailure> {
    let room = room_name(&path, query.protocol)?;
    let removed = edge.admin().close(room.as_str()).await?;
    Ok(no_store(&ActionResult { removed }))
}

/// Kicks one member: it gets `left` with reason `kicked`, the room's other peers `peer-left`.
/// Answers once it is gone.
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}/members/{peer_id}",
    tag = "admin",
    params(
        ("room" = String, Path, description = "The room's name"),
        ("peer_id" = String, Path, description = "The member's peer id (13 characters)"),
        RoomQuery,
    ),
    responses(
        (status = 200, description = "The member was removed", body = ActionResult),
        (status = 400, body = ApiError),
        (status = 401, body = ApiError),
        (status = 404, description = "No such room or member", body = ApiError),
        (status = 503, body = ApiError),
        (status = 504, body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn kick(
    _key: ApiKey,
    edge: web::Data<Edge>,
    path: web::Path<(String, String)>,
    query: web::Query<RoomQuery>,
) -> Result<HttpResponse, ApiFailure> {
    let (room, peer) = path.into_inner();
    let room = room_name(&room, query.protocol)?;
    let peer: PeerId = peer
        .parse()
        .map_err(|e: switchboard::protocol::ProtocolError| ApiFailure::bad_request(e.message.to_string()))?;
    let removed = edge.admin().kick(room.as_str(), peer).await?;
    Ok(no_store(&ActionResult { removed }))
}

/// The room's name in the cluster from the name a client knows it by.
pub fn room_name(name: &str, protocol: Option<Protocol>) -> Result<RoomName, ApiFailure> {
    let parsed = match (protocol, name.strip_prefix(RoomName::SEED_PREFIX)) {
        (Some(Protocol::Seed), _) => RoomName::seed(name),
        (None, Some(channel)) => RoomName::seed(channel),
        _ => RoomName::v1(name),
    };
    parsed.map_err(|e| ApiFailure::bad_request(e.message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_resolve_into_their_namespace() {
        let name = |n: &str, p| room_name(n, p).map(|r| r.as_str().to_string());
        assert_eq!(name("lobby", None).ok().as_deref(), Some("lobby"));
        assert_eq!(name("lobby", Some(Protocol::Seed)).ok().as_deref(), Some("seed/lobby"));
        assert_eq!(name("seed/my room", None).ok().as_deref(), Some("seed/my room"));
        assert!(name("my room", Some(Protocol::V1)).is_err());
        assert!(name("", None).is_err());
    }
}
