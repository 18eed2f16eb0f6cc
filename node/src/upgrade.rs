//! The WebSocket upgrade: decides, before anything is upgraded, whether a request may become a
//! session, then takes the TCP stream away from the HTTP dispatcher and gives it to a session.
//!
//! Refusals that a browser must be able to read (node full, node draining, no or a bad access
//! token) happen *after* the upgrade, as an `error` frame and a close code, because a browser
//! shows a script nothing of a failed handshake. A refused Origin is answered before the
//! upgrade with HTTP 403: a page from a foreign origin must not get a socket at all.
//!
//! An access token arrives as the query parameter `access_token` or as a subprotocol entry
//! `access_token.<jwt>` (a browser's `WebSocket` cannot set headers). That entry is never
//! echoed back: the node picks `switchboard.v1` when offered, so a browser must offer it too.
//!
//! A draining node answers HTTP 503 before upgrading, so a load balancer retries another node.
//! `?resume=<token>&last_seq=<n>` takes over a session: one this node holds (its socket broke,
//! or stalled), or one another node parks for it, after a drain or a break (see
//! `crate::session`'s resume): the token is the credential then, and the session's grant
//! carries over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_codec::Framed;
use actix_http::body::BodySize;
use actix_http::h1::{Codec, Message as H1Message};
use actix_http::header::{self, HeaderValue};
use actix_http::ws::{self, CloseCode, CloseReason, OpCode, Parser};
use actix_http::{HttpMessage, Request, Response, StatusCode};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use serde::Deserialize;
use switchboard::auth::TokenError;
use switchboard::protocol::{ErrorCode, ProtocolError, close, v1};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::bus::{Claim, ParkedSession};
use crate::dialect::{Dialect, error_frame};
use crate::session::{Grant, Session};
use crate::session::{Resumed, Takeover, TakeoverRefused, UNKNOWN_TOKEN};
use crate::state::NodeState;
use actix::Addr;
use switchboard::protocol::v1::ResumeToken;

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
    if state.draining() {
        return respond(
            framed,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "this node is draining; connect to another",
        )
        .await;
    }
    if dialect == Dialect::V1 && offers_subprotocol(&req, v1::SUBPROTOCOL) {
        res.insert_header((header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(v1::SUBPROTOCOL)));
    }
    // A resume's grant is the parked session's; anyone else's is its access token's.
    let admitted = match resume_request(&req).filter(|_| dialect == Dialect::V1) {
        Some(resume) => resume_admit(&state, resume).await,
        None => admit(&state, &req).map(Admitted::Fresh),
    };
    let res = res.finish().drop_body();
    if let Err(e) = framed.send(H1Message::Item((res, BodySize::None))).await {
        if matches!(admitted, Ok(Admitted::Fresh(_) | Admitted::Claimed(..))) {
            state.sessions.release();
        }
        return Err(std::io::Error::other(e.to_string()).into());
    }
    let parts = framed.into_parts();
    let cluster_status = notify(&req, v1::NOTIFY_CLUSTER_STATUS);
    match admitted {
        Ok(Admitted::Fresh(grant)) => {
            Session::start(state, dialect, parts.io, parts.read_buf, grant, None, cluster_status);
            Ok(())
        }
        Ok(Admitted::Claimed(grant, resumed)) => {
            Session::start(state, dialect, parts.io, parts.read_buf, grant, Some(resumed), cluster_status);
            Ok(())
        }
        Ok(Admitted::Here { session, secret, last_seq }) => {
            // The session lives on its own worker: the socket moves there, off this one's reactor.
            let io = parts.io.into_std()?;
            let takeover = Takeover { secret, io, leftover: parts.read_buf, last_seq, cluster_status };
            match session.send(takeover).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(TakeoverRefused { io, error })) => {
                    state.metrics.error(error.code);
                    refuse(TcpStream::from_std(io)?, dialect, error, close::RESUME_FAILED).await
                }
                // The session ended meanwhile; the socket went with the message.
                Err(_) => Ok(()),
            }
        }
        Err((err, close_code)) => {
            state.metrics.error(err.code);
            refuse(parts.io, dialect, err, close_code).await
        }
    }
}

/// What an upgrade becomes.
enum Admitted {
    /// A new session (a connection slot is reserved).
    Fresh(Option<Box<Grant>>),
    /// A session another node held, claimed for this one (a connection slot is reserved).
    Claimed(Option<Box<Grant>>, Resumed),
    /// A session of this node takes the socket over (it checks the secret).
    Here { session: Addr<Session>, secret: u128, last_seq: Option<u64> },
}

/// A resume: the session is on this node, or is claimed from the cluster.
async fn resume_admit(state: &NodeState, req: ResumeRequest) -> Result<Admitted, (ProtocolError, u16)> {
    let failed = |why: String| (ProtocolError::new(ErrorCode::ResumeFailed, why), close::RESUME_FAILED);
    let last_seq = match req.last_seq.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(failed("`last_seq` must be the last `seq` received (an integer)".into())),
    };
    let parsed = req.token.parse::<ResumeToken>().ok();
    if let Some(t) = parsed
        && let Some(session) = state.sessions.get(t.peer)
    {
        return Ok(Admitted::Here { session, secret: t.secret, last_seq });
    }
    let mut parked = claim(state, &req.token, parsed).await.map_err(|e| (e, close::RESUME_FAILED))?;
    let grant = parked.grant.take().map(|g| Box::new(Grant::from_parts(g)));
    let resumed =
        Resumed::new(parked, last_seq, state.replay_bound()).map_err(|e| failed(format!("{e}; connect afresh")))?;
    reserve(state)?;
    Ok(Admitted::Claimed(grant, resumed))
}

/// Whether the upgraded socket may become a session: the access token (if one is required)
/// verifies, and a connection slot is free. `Ok` holds the token's
/// grant and a reserved slot; `Err` the refusal and its close code.
fn admit(state: &NodeState, req: &Request) -> Result<Option<Box<Grant>>, (ProtocolError, u16)> {
    let grant = authenticate(state, req).map_err(|e| {
        debug!(error = %e, "access token refused");
        let code = if e.code() == ErrorCode::Forbidden { close::FORBIDDEN } else { close::UNAUTHORIZED };
        (ProtocolError::new(e.code(), e.to_string()), code)
    })?;
    reserve(state)?;
    Ok(grant)
}

fn reserve(state: &NodeState) -> Result<(), (ProtocolError, u16)> {
    if !state.sessions.reserve() {
        let err = ProtocolError::new(ErrorCode::TooManyConnections, "this node is at its connection limit");
        return Err((err, close::TRY_AGAIN_LATER));
    }
    Ok(())
}

/// How long a resume waits for a session its node is still parking.
const CLAIM_WAIT: Duration = Duration::from_secs(3);

/// How long a resume waits for any node to start parking the session its token names.
const FIND_WAIT: Duration = Duration::from_millis(1500);

/// How often the cluster is asked again for that session (the ask is not acknowledged).
const ASK_AGAIN: Duration = Duration::from_millis(300);

/// Takes the session parked under `token`; for a token of this protocol's form, first asks
/// the node holding it (whichever it is) to park it.
async fn claim(state: &NodeState, token: &str, parsed: Option<ResumeToken>) -> Result<ParkedSession, ProtocolError> {
    let failed = |why: String| ProtocolError::new(ErrorCode::ResumeFailed, why);
    if token.len() > 128 || !state.bus.resumable() {
        return Err(failed(UNKNOWN_TOKEN.into()));
    }
    let started = Instant::now();
    let mut asked: Option<Instant> = None;
    loop {
        let waited = started.elapsed();
        match state.bus.claim(token).await {
            Ok(Claim::Parked(p)) => return Ok(p),
            Ok(Claim::Pending) if waited < CLAIM_WAIT => {}
            Ok(Claim::Pending) => return Err(failed("the parked session was not released in time".into())),
            Ok(Claim::Unknown) => match parsed {
                Some(t) if waited < FIND_WAIT => {
                    if asked.is_none_or(|a| a.elapsed() >= ASK_AGAIN) {
                        state.bus.takeover(&t);
                        asked = Some(Instant::now());
                    }
                }
                _ => return Err(failed(UNKNOWN_TOKEN.into())),
            },
            Err(e) => return Err(failed(format!("cannot resume now: {e}"))),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Deserialize)]
struct ResumeQuery {
    resume: Option<String>,
    last_seq: Option<String>,
}

/// `?resume=<token>&last_seq=<n>`.
struct ResumeRequest {
    token: String,
    last_seq: Option<String>,
}

fn resume_request(req: &Request) -> Option<ResumeRequest> {
    let q = req.uri().query()?;
    let q = actix_web::web::Query::<ResumeQuery>::from_query(q).ok()?.into_inner();
    let token = q.resume.filter(|t| !t.is_empty())?;
    Some(ResumeRequest { token, last_seq: q.last_seq })
}

#[derive(Deserialize)]
struct NotifyQuery {
    notify: Option<String>,
}

/// Whether the client asked for the optional frames `name` (`?notify=a,b`).
fn notify(req: &Request, name: &str) -> bool {
    let Some(q) = req.uri().query() else { return false };
    let notify = actix_web::web::Query::<NotifyQuery>::from_query(q).ok().and_then(|q| q.into_inner().notify);
    notify.is_some_and(|n| v1::notify_wants(&n, name))
}

/// The subprotocol entry that carries a token: `access_token.<jwt>`.
const TOKEN_SUBPROTOCOL: &str = "access_token.";

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// Checks the request's access token, if this node requires or was given one. `Ok(None)`: an
/// anonymous peer this node admits.
fn authenticate(state: &NodeState, req: &Request) -> Result<Option<Box<Grant>>, TokenError> {
    let Some(keys) = &state.tokens else {
        // No secrets, nothing to verify a token with: every peer is anonymous (development).
        return Ok(None);
    };
    match token(req) {
        Some(token) => Ok(Some(Box::new(Grant::from(switchboard::auth::Grant::from(keys.verify(&token)?))))),
        // Secrets configured, yet anonymous peers allowed: a migration to tokens under way.
        None if state.config.edge.allow_anonymous => Ok(None),
        None => Err(TokenError::Missing),
    }
}

/// The token from the query (`?access_token=`, percent-decoded) or else from the subprotocols.
fn token(req: &Request) -> Option<String> {
    let from_query = req
        .uri()
        .query()
        .and_then(|q| actix_web::web::Query::<TokenQuery>::from_query(q).ok())
        .and_then(|q| q.into_inner().access_token)
        .filter(|t| !t.is_empty());
    from_query.or_else(|| {
        subprotocols(req).find_map(|p| p.strip_prefix(TOKEN_SUBPROTOCOL).filter(|t| !t.is_empty()).map(str::to_string))
    })
}

fn subprotocols(req: &Request) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn offers_subprotocol(req: &Request, wanted: &str) -> bool {
    subprotocols(req).any(|p| p == wanted)
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
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
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
