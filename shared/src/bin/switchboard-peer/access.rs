//! Getting into a room and finding the way to the other peers: access tokens and ICE servers,
//! from flags or from the gateway.
//!
//! - `--token JWT`: every peer connects with it (`?access_token=`); it opens one room, whose
//!   name the run reads from the token's `room` claim (the node verifies it; we only read).
//! - `--api-key KEY` with `--gateway URL`: each peer gets a token of its own from
//!   `POST /v1/tokens` (`shared::api::TokenRequest`) for the room it joins.
//! - `--gateway URL`: ICE servers (STUN, TURN with fresh credentials) from
//!   `GET /v1/ice-servers`, instead of `--stun`/`--turn`.
//!
//! Neither: anonymous peers (a node without token secrets) and the ICE flags.

use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard::api::{ApiError, IceServers, TokenRequest, TokenResponse};
use switchboard::protocol::Role;
use switchboard::rtc::{IceServer, PeerConfig};

use crate::ice::IceArgs;

/// Bound on each call to the gateway.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct AccessArgs {
    /// The gateway's base URL (http://host:port). ICE servers then come from its
    /// GET /v1/ice-servers instead of --stun/--turn; with --api-key, tokens from POST /v1/tokens.
    #[arg(long, env = "SWITCHBOARD_GATEWAY")]
    gateway: Option<String>,
    /// An access token (JWT) for the room; every peer connects with it. The run joins the
    /// room the token opens.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true, conflicts_with = "api_key")]
    token: Option<String>,
    /// An API key of the gateway (the first, if a comma-separated list): each peer mints its
    /// own token with POST /v1/tokens. Needs --gateway.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true, requires = "gateway")]
    api_key: Option<String>,
    /// The user name in minted tokens (a peer number is appended where a run has several).
    #[arg(long, default_value = "switchboard-peer")]
    user: String,
}

/// The resolved access settings of a run; cheap to share between peers.
#[derive(Clone, Debug)]
pub struct Access {
    gateway: Option<String>,
    token: Option<String>,
    api_key: Option<String>,
    user: String,
}

impl Access {
    pub fn new(args: &AccessArgs) -> Result<Self, String> {
        let gateway = match &args.gateway {
            Some(g) if !g.starts_with("http://") => {
                return Err(format!("--gateway {g}: only http:// URLs (TLS ends at the load balancer)"));
            }
            g => g.as_ref().map(|g| g.trim_end_matches('/').to_owned()),
        };
        let api_key = args.api_key.as_ref().and_then(|k| k.split(',').map(str::trim).find(|k| !k.is_empty()));
        Ok(Access { gateway, token: args.token.clone(), api_key: api_key.map(str::to_owned), user: args.user.clone() })
    }

    /// The room `--token` opens, read from its `room` claim; `None` without a token.
    pub fn token_room(&self) -> Result<Option<String>, String> {
        let Some(token) = &self.token else { return Ok(None) };
        let bad = |why: &str| format!("--token is not a JWT with a room claim: {why}");
        let payload = token.split('.').nth(1).ok_or_else(|| bad("no payload"))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| bad(&e.to_string()))?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
        claims["room"].as_str().map(|r| Some(r.to_owned())).ok_or_else(|| bad("no room"))
    }

    /// The token peer `who` connects with to join `room`: `--token`, one minted with
    /// `--api-key`, or none.
    pub async fn token(&self, room: &str, who: Option<usize>) -> Result<Option<String>, String> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let (Some(gateway), Some(key)) = (&self.gateway, &self.api_key) else { return Ok(None) };
        let user = match who {
            Some(n) => format!("{}-{n}", self.user),
            None => self.user.clone(),
        };
        let body = TokenRequest { room: room.to_owned(), user, role: Role::Participant, ttl_secs: Some(600) };
        let url = format!("{gateway}/v1/tokens");
        let key = key.clone();
        let r: TokenResponse = blocking(move || post_json(&url, &key, &body)).await?;
        Ok(Some(r.token))
    }

    /// The peer connection settings: ICE servers from the gateway (asked with `token`) when
    /// `--gateway` is given, else from the flags.
    pub async fn peer_config(&self, ice: &IceArgs, token: Option<&str>) -> Result<PeerConfig, String> {
        let ice_servers = match &self.gateway {
            Some(gateway) => {
                let url = format!("{gateway}/v1/ice-servers");
                let bearer = token.map(str::to_owned);
                let r: IceServers = blocking(move || get_json(&url, bearer.as_deref())).await?;
                r.ice_servers.into_iter().map(IceServer::from).collect()
            }
            None => ice.servers(),
        };
        Ok(PeerConfig { ice_servers, relay_only: ice.relay_only() })
    }
}

/// Runs a blocking HTTP call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("gateway call: {e}"))?
}

fn agent() -> ureq::Agent {
    // Statuses are read here (the API's error body says why), not turned into bare errors.
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(HTTP_TIMEOUT)).build().into()
}

fn get_json<T: DeserializeOwned>(url: &str, bearer: Option<&str>) -> Result<T, String> {
    let mut req = agent().get(url);
    if let Some(b) = bearer {
        req = req.header("Authorization", &format!("Bearer {b}"));
    }
    read(url, req.call())
}

fn post_json<B: Serialize, T: DeserializeOwned>(url: &str, bearer: &str, body: &B) -> Result<T, String> {
    let req = agent().post(url).header("Authorization", &format!("Bearer {bearer}"));
    read(url, req.send_json(body))
}

/// The body of a 2xx as `T`; otherwise the API's `{error: {code, message}}` as the error.
fn read<T: DeserializeOwned>(url: &str, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T, String> {
    let mut resp = r.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return resp.body_mut().read_json().map_err(|e| format!("{url}: unexpected body: {e}"));
    }
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    match serde_json::from_str::<ApiError>(&text) {
        Ok(e) => Err(format!(
            "{url}: {} {}: {}",
            status.as_u16(),
            serde_json::to_value(e.error.code).ok().and_then(|c| c.as_str().map(str::to_owned)).unwrap_or_default(),
            e.error.message
        )),
        Err(_) => Err(format!("{url}: {status}: {}", text.chars().take(200).collect::<String>())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>) -> Access {
        Access { gateway: None, token: token.map(str::to_owned), api_key: None, user: "u".into() }
    }

    #[test]
    fn reads_the_room_claim_of_a_token() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"room":"lobby","sub":"ann"}"#);
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln");
        assert_eq!(access(Some(&token)).token_room().unwrap().as_deref(), Some("lobby"));
        assert_eq!(access(None).token_room().unwrap(), None);
        assert!(access(Some("not-a-jwt")).token_room().is_err());
    }
}
