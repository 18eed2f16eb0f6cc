//! The WebSocket upgrade: decides, before anything is upgraded, whether a request may become a
//! session, then takes the TCP stream away from the HTTP dispatcher and gives it to a session.
//!
//! Refusals that a browser must be able to read (node full, node draining) happen *after* the
//! upgrade, as an `error` frame and a close code, because a browser shows a script nothing of
//! a failed handshake. A refused Origin is answered before the upgrade with HTTP 403: a page
//! from a foreign origin must not get a socket at all.

use std::sync::Arc;

use actix_codec::Framed;
use actix_http::body::BodySize;
use actix_http::h1::{Codec, Message as H1Message};
use actix_http::header::{self, HeaderValue};
use actix_http::ws::{self, CloseCode, CloseReason, OpCode, Parser};
use actix_http::{HttpMessage, Request, Response, StatusCode};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use switchboard::protocol::{ErrorCode, ProtocolError, close, v1};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::dialect::{Dialect, error_frame};
use crate::session::Session;
use crate::state::NodeState;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("writing the handshake response: {0}")]
    Io(#[from] std::io::Error),
}

/// Handles one upgrade request end to end.
pub async fn upgrade(
    state: Arc<NodeState>,
    req: Request,
    mut framed: Framed<TcpStream, Codec>,
) -> Result<(), UpgradeError> {
    let dialect = match req.path() {
        "/v1/ws" => Dialect::V1,
        "/ws" => Dialect::Seed,
        _ => {
            return respond(
                framed,
                StatusCode::NOT_FOUND,
                ErrorCode::BadMessage,
                "no WebSocket endpoint here; use /v1/ws or /ws",
            )
            .await;
        }
    };
    let mut res = match ws::handshake(req.head()) {
        Ok(res) => res,
        Err(e) => {
            return respond(
                framed,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadMessage,
                &format!("bad WebSocket handshake: {e}"),
            )
            .await;
        }
    };
    let headers = req.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !state.origins.allows(origin, host) {
        state.metrics.error(ErrorCode::OriginRefused);
        debug!(origin, "origin refused");
        return respond(
            framed,
            StatusCode::FORBIDDEN,
            ErrorCode::OriginRefused,
            "this Origin may not open WebSockets here",
        )
        .await;
    }
    if dialect == Dialect::V1 && offers_subprotocol(&req, v1::SUBPROTOCOL) {
        res.insert_header((header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(v1::SUBPROTOCOL)));
    }
    let refusal = if state.draining() {
        Some((ErrorCode::ShuttingDown, "this node is shutting down; connect to another", close::GOING_AWAY))
    } else if !state.sessions.reserve() {
        Some((ErrorCode::TooManyConnections, "this node is at its connection limit", close::TRY_AGAIN_LATER))
    } else {
        None
    };
    let res = res.finish().drop_body();
    if let Err(e) = framed.send(H1Message::Item((res, BodySize::None))).await {
        if refusal.is_none() {
            state.sessions.release();
        }
        return Err(std::io::Error::other(e.to_string()).into());
    }
    let parts = framed.into_parts();
    if let Some((code, message, close_code)) = refusal {
        state.metrics.error(code);
        return refuse(parts.io, dialect, ProtocolError::new(code, message), close_code).await;
    }
    Session::start(state, dialect, parts.io, parts.read_buf);
    Ok(())
}

fn offers_subprotocol(req: &Request, wanted: &str) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == wanted)
}

/// Answers a request that will not be upgraded with a JSON error body.
async fn respond(
    mut framed: Framed<TcpStream, Codec>,
    status: StatusCode,
    code: ErrorCode,
    message: &str,
) -> Result<(), UpgradeError> {
    let body = Bytes::from(serde_json::json!({ "error": { "code": code, "message": message } }).to_string());
    let mut res = Response::with_body(status, ());
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    let size = BodySize::Sized(body.len() as u64);
    let sent = async {
        framed.send(H1Message::Item((res, size))).await?;
        framed.send(H1Message::Chunk(Some(body))).await?;
        framed.send(H1Message::Chunk(None)).await
    };
    sent.await.map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}

/// Sends an `error` frame and a close frame on a just-upgraded socket, then closes it.
async fn refuse(mut io: TcpStream, dialect: Dialect, err: ProtocolError, code: u16) -> Result<(), UpgradeError> {
    let mut buf = BytesMut::new();
    Parser::write_message(&mut buf, error_frame(dialect, &err, None), OpCode::Text, true, false);
    Parser::write_close(
        &mut buf,
        Some(CloseReason { code: CloseCode::from(code), description: Some(err.code.as_str().into()) }),
        false,
    );
    io.write_all(&buf).await?;
    io.shutdown().await?;
    Ok(())
}

/// The HTTP stack wants every service error as a response; by the time the upgrade fails the
/// handshake is already written (or the socket is gone), so this is only ever logged.
impl From<UpgradeError> for Response<actix_http::body::BoxBody> {
    fn from(_: UpgradeError) -> Self {
        Response::internal_server_error()
    }
}
