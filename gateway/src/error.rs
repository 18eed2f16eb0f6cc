//! The errors of the edge: what a request gets back ([`ApiFailure`], always the typed
//! `{"error": {"code", "message"}}` body of [`ApiError`]) and what stops it from starting
//! ([`EdgeError`]).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use switchboard::api::{ApiError, ApiErrorCode};
use switchboard::auth::{KeyError, TokenError};

use crate::admin::AdminError;

/// A refused or failed API request: an HTTP status and the typed body that goes with it.
///
/// Handlers return it as their error; actix turns it into the response, so every failure of
/// the API — including a body actix itself could not parse — has the same JSON shape.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{status} {code:?}: {message}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: ApiErrorCode,
    pub message: String,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: ApiErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ApiErrorCode::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ApiErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ApiErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ApiErrorCode::Unavailable, message)
    }

    /// The body, as the API sends it.
    pub fn body(&self) -> ApiError {
        ApiError::new(self.code, self.message.clone())
    }
}

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        // An error about credentials must not be cached by a proxy either.
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme the client should use.
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"switchboard\""));
        }
        res.json(self.body())
    }
}

impl From<AdminError> for ApiFailure {
    fn from(e: AdminError) -> Self {
        let message = e.to_string();
        match e {
            AdminError::NoSuchRoom | AdminError::NoSuchMember => Self::not_found(message),
            AdminError::BadRequest(_) => Self::bad_request(message),
            AdminError::Unavailable(_) => Self::unavailable(message),
            AdminError::Timeout(_) => Self::new(StatusCode::GATEWAY_TIMEOUT, ApiErrorCode::Unavailable, message),
        }
    }
}

impl From<TokenError> for ApiFailure {
    fn from(e: TokenError) -> Self {
        let message = e.to_string();
        match e {
            TokenError::Missing => Self::unauthorized(message),
            TokenError::Expired => Self::new(StatusCode::UNAUTHORIZED, ApiErrorCode::TokenExpired, message),
            TokenError::WrongRoom { .. } | TokenError::WrongUser { .. } | TokenError::NotAllowed { .. } => {
                Self::forbidden(message)
            }
            _ => Self::new(StatusCode::UNAUTHORIZED, ApiErrorCode::TokenInvalid, message),
        }
    }
}

/// Settings the edge refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("--token-secrets: {0}")]
    TokenSecrets(#[from] KeyError),
    #[error(
        "--api-keys: key {index} is {len} bytes; at least {min} are required (make one with `openssl rand -hex 24`)",
        min = crate::edge::MIN_API_KEY_BYTES
    )]
    ApiKeyTooShort { index: usize, len: usize },
    #[error("--turn-urls are set but --turn-secret is not: TURN servers need credentials")]
    TurnWithoutSecret,
    #[error("--turn-secret: {0}")]
    TurnSecret(String),
    #[error("--production: {0}")]
    Production(&'static str),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Webhook(#[from] crate::webhook::WebhookError),
    #[error(
        "--webhook-urls on a clustered node: its events are recorded in Redis and delivered by the gateways; set the webhook flags on the gateways instead"
    )]
    WebhooksOnGateways,
}

impl EdgeError {
    /// A stable name for the failure (logs and exit messages).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TokenSecrets(_) => "bad-token-secrets",
            Self::ApiKeyTooShort { .. } => "bad-api-keys",
            Self::TurnWithoutSecret | Self::TurnSecret(_) => "bad-turn-config",
            Self::Production(_) => "not-production-ready",
            Self::Metrics(_) => "metrics",
            Self::Webhook(_) | Self::WebhooksOnGateways => "bad-webhook-config",
        }
    }
}
