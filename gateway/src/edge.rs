//! [`Edge`]: everything the HTTP routes share — the keys tokens are signed with, the API keys,
//! the ICE servers, the Origin rules, the metrics, and the way to the cluster's state.
//!
//! Built once from [`EdgeArgs`] by the gateway binary, or by a node that serves the same
//! routes itself (a single machine), and handed to [`crate::routes::configure`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header;
use subtle::ConstantTimeEq;
use switchboard::api::{IceServer, IceServers, TokenRequest, TokenResponse};
use switchboard::auth::{MAX_TTL, TokenKeys, unix_now};
use switchboard::protocol::RoomName;

use crate::admin::ClusterAdmin;
use crate::config::EdgeArgs;
use crate::error::{ApiFailure, EdgeError};
use crate::metrics::{AuthFailure, EdgeMetrics};
use crate::origin::OriginPolicy;
use crate::turn::TurnSecret;
use crate::webhook::{WebhookSettings, Webhooks};

/// Shortest API key accepted: 16 bytes of a random key are beyond guessing online.
pub const MIN_API_KEY_BYTES: usize = 16;
/// Lifetime of a token when the request names none, seconds.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Longest user name a token may carry, bytes.
pub const MAX_USER_BYTES: usize = 128;
/// The TURN user of a request that presented no credential (development only).
const ANONYMOUS: &str = "anonymous";
/// The TURN user of an API-key request that names none.
const SERVICE: &str = "service";

/// The shared state of the edge's routes.
pub struct Edge {
    tokens: Option<TokenKeys>,
    /// ICE servers may be handed out without a credential: no token secrets (development), or
    /// `--allow-anonymous` (nodes admit anonymous peers, who need ICE servers too).
    anonymous_ice: bool,
    api_keys: Vec<Vec<u8>>,
    stun_urls: Vec<String>,
    turn_urls: Vec<String>,
    turn: Option<TurnSecret>,
    turn_ttl: Duration,
    origins: OriginPolicy,
    public_ws_url: Option<String>,
    admin: Arc<dyn ClusterAdmin>,
    metrics: EdgeMetrics,
    webhooks: Option<Webhooks>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets or keys themselves.
        f.debug_struct("Edge")
            .field("tokens", &self.tokens)
            .field("api_keys", &self.api_keys.len())
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Checks `args` and builds the edge. `cluster` is the cluster name: the audience of every
    /// token, so a token minted for one cluster never opens another.
    pub fn new(args: &EdgeArgs, cluster: &str, admin: Arc<dyn ClusterAdmin>) -> Result<Edge, EdgeError> {
        let tokens = match args.token_secrets.iter().any(|s| !s.is_empty()) {
            true => Some(TokenKeys::new(&args.token_secrets, cluster)?),
            false => None,
        };
        let api_keys: Vec<Vec<u8>> =
            args.api_keys.iter().filter(|k| !k.is_empty()).map(|k| k.as_bytes().to_vec()).collect();
        if let Some((index, key)) = api_keys.iter().enumerate().find(|(_, k)| k.len() < MIN_API_KEY_BYTES) {
            return Err(EdgeError::ApiKeyTooShort { index, len: key.len() });
        }
        if args.production {
            if tokens.is_none() {
                return Err(EdgeError::Production("token secrets are required (--token-secrets)"));
            }
            if api_keys.is_empty() {
                return Err(EdgeError::Production("an API key is required (--api-keys)"));
            }
            if args.allow_anonymous {
                return Err(EdgeError::Production("anonymous peers are not allowed (--allow-anonymous)"));
            }
        }
        let metrics = EdgeMetrics::new()?;
        let turn = args.turn_secret.as_deref().filter(|s| !s.is_empty()).map(TurnSecret::new).transpose()?;
        let turn_urls: Vec<String> = args.turn_urls.iter().filter(|u| !u.is_empty()).cloned().collect();
        if !turn_urls.is_empty() && turn.is_none() {
            return Err(EdgeError::TurnWithoutSecret);
        }
        Ok(Edge {
            anonymous_ice: tokens.is_none() || args.allow_anonymous,
            tokens,
            api_keys,
            stun_urls: args.stun_urls.iter().filter(|u| !u.is_empty()).cloned().collect(),
            turn_urls,
            turn,
            turn_ttl: args.turn_ttl(),
            origins: OriginPolicy::new(&args.api_origins),
            public_ws_url: args.public_ws_url.clone(),
            admin,
            webhooks: match WebhookSettings::new(
                &args.webhook_urls,
                args.webhook_secret.as_deref(),
                args.webhook_retry(),
            )? {
                Some(settings) => Some(Webhooks::start(settings, cluster, metrics.webhooks.clone())),
                None => None,
            },
            metrics,
        })
    }

    /// Where a lone node's rooms record their events; `None` without `--webhook-urls`.
    pub fn webhooks(&self) -> Option<&Webhooks> {
        self.webhooks.as_ref()
    }

    pub fn admin(&self) -> &Arc<dyn ClusterAdmin> {
        &self.admin
    }

    /// The rules browsers' `Origin` must pass to use the API.
    pub fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    pub fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }

    /// The keys tokens are signed with; `None` in development (no `--token-secrets`).
    pub fn token_keys(&self) -> Option<&TokenKeys> {
        self.tokens.as_ref()
    }

    /// Passes when the request carries one of the configured API keys as its bearer.
    pub fn require_api_key(&self, req: &HttpRequest) -> Result<(), ApiFailure> {
        let Some(presented) = bearer(req) else {
            self.metrics.auth_failure(AuthFailure::Missing);
            return Err(ApiFailure::unauthorized("an API key is required: `Authorization: Bearer <key>`"));
        };
        if self.api_keys.is_empty() {
            self.metrics.auth_failure(AuthFailure::BadApiKey);
            return Err(ApiFailure::unauthorized("this server has no API keys configured (--api-keys)"));
        }
        if !self.is_api_key(presented) {
            self.metrics.auth_failure(AuthFailure::BadApiKey);
            return Err(ApiFailure::unauthorized("the API key is not valid"));
        }
        Ok(())
    }

    /// Compares against every key, in constant time per key, without stopping at a match.
    fn is_api_key(&self, presented: &str) -> bool {
        let mut found = subtle::Choice::from(0);
        for key in &self.api_keys {
            found |= key.as_slice().ct_eq(presented.as_bytes());
        }
        found.into()
    }

    /// Mints the token a validated request asks for.
    pub fn mint(&self, req: TokenRequest) -> Result<TokenResponse, ApiFailure> {
        let Some(keys) = &self.tokens else {
            return Err(ApiFailure::unavailable(
                "this server mints no access tokens: it was started without --token-secrets (development mode admits anonymous peers)",
            ));
        };
        validate_room(&req.room)?;
        validate_user("user", &req.user)?;
        let ttl = match req.ttl_secs {
            None => DEFAULT_TOKEN_TTL_SECS,
            Some(0) => return Err(ApiFailure::bad_request("ttl_secs must be at least 1")),
            Some(t) => t.min(MAX_TTL.as_secs()),
        };
        let (token, claims) = keys.mint(&req.room, &req.user, req.role, Duration::from_secs(ttl));
        self.metrics.tokens_minted.inc();
        Ok(TokenResponse {
            token,
            room: claims.room,
            user: claims.sub,
            role: claims.role,
            expires_at: claims.exp,
            ws_url: self.public_ws_url.clone(),
        })
    }

    /// Who asks for ICE servers: the `sub` of a valid access token, the `user` an API-key
    /// holder names (default `service`), or `anonymous` where anonymous peers are admitted.
    pub fn ice_user(&self, req: &HttpRequest, named: Option<&str>) -> Result<String, ApiFailure> {
        let Some(presented) = bearer(req) else {
            if self.anonymous_ice {
                return Ok(ANONYMOUS.into());
            }
            self.metrics.auth_failure(AuthFailure::Missing);
            return Err(ApiFailure::unauthorized(
                "an access token (or API key) is required: `Authorization: Bearer <token>`",
            ));
        };
        if self.is_api_key(presented) {
            let user = named.unwrap_or(SERVICE);
            validate_user("user", user)?;
            return Ok(user.to_string());
        }
        match &self.tokens {
            Some(keys) => keys.verify(presented).map(|claims| claims.sub).map_err(|e| {
                let reason = match e {
                    switchboard::auth::TokenError::Expired => AuthFailure::ExpiredToken,
                    _ => AuthFailure::BadToken,
                };
                self.metrics.auth_failure(reason);
                ApiFailure::from(e)
            }),
            // Development: no secret to check a token with, and none is needed.
            None => Ok(ANONYMOUS.into()),
        }
    }

    /// STUN entries, and TURN entries with a fresh credential for `user`.
    pub fn ice_servers(&self, user: &str) -> IceServers {
        let mut ice_servers = Vec::with_capacity(2);
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer { urls: self.stun_urls.clone(), username: None, credential: None });
        }
        let (mut ttl_secs, mut expires_at) = (0, 0);
        if let Some(turn) = self.turn.as_ref().filter(|_| !self.turn_urls.is_empty()) {
            ttl_secs = self.turn_ttl.as_secs();
            let c = turn.credential(user, unix_now() + ttl_secs);
            expires_at = c.expires_at;
            ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(c.username),
                credential: Some(c.credential),
            });
            self.metrics.turn_credentials.inc();
        }
        IceServers { ice_servers, ttl_secs, expires_at }
    }
}

/// The credential of `Authorization: Bearer <credential>` (scheme case-insensitive).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// A token's room: a v1 room name or a seed channel name (the seed's rules are the wider).
fn validate_room(room: &str) -> Result<(), ApiFailure> {
    if RoomName::v1(room).is_ok() || RoomName::seed(room).is_ok() {
        return Ok(());
    }
    Err(ApiFailure::bad_request(
        "room must be a v1 room name (1-128 characters of A-Z a-z 0-9 _ - . : @) or a seed channel name (1-128 printable characters)",
    ))
}

fn validate_user(field: &str, user: &str) -> Result<(), ApiFailure> {
    if user.is_empty() || user.len() > MAX_USER_BYTES || user.chars().any(char::is_control) {
        return Err(ApiFailure::bad_request(format!(
            "{field} must be 1-{MAX_USER_BYTES} bytes with no control characters"
        )));
    }
    Ok(())
}
