//! The edge's Prometheus metrics, all under `switchboard_`, with names no node metric uses so a
//! node that mounts the edge can serve both registries at one `/metrics`.

use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

/// Why a request was refused authentication (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` where one is required.
    Missing,
    /// An API key route got a key that is not configured.
    BadApiKey,
    /// An access token that did not verify (forged, malformed, another cluster).
    BadToken,
    ExpiredToken,
    /// A browser Origin that is not on `--api-origins`.
    Origin,
}

impl AuthFailure {
    const ALL: [AuthFailure; 5] = [Self::Missing, Self::BadApiKey, Self::BadToken, Self::ExpiredToken, Self::Origin];

    fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::BadApiKey => "bad-api-key",
            Self::BadToken => "bad-token",
            Self::ExpiredToken => "expired-token",
            Self::Origin => "origin",
        }
    }
}

pub struct EdgeMetrics {
    registry: Registry,
    /// By route pattern, method and status. Route patterns, not paths: the label set stays
    /// bounded whatever URLs clients make up.
    requests: IntCounterVec,
    pub tokens_minted: IntCounter,
    pub turn_credentials: IntCounter,
    auth_failures: Vec<IntCounter>,
    pub webhooks: crate::webhook::WebhookMetrics,
}

impl EdgeMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("switchboard".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP API requests, by route pattern, method and status."),
            &["route", "method", "status"],
        )?;
        let tokens_minted = IntCounter::new("tokens_minted_total", "Access tokens minted.")?;
        let turn_credentials = IntCounter::new("turn_credentials_total", "TURN credentials issued.")?;
        let failures =
            IntCounterVec::new(Opts::new("auth_failures_total", "API requests refused, by reason."), &["reason"])?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(tokens_minted.clone()))?;
        registry.register(Box::new(turn_credentials.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        // Resolved up front so every reason shows (at 0) from the first scrape.
        let auth_failures = AuthFailure::ALL.iter().map(|r| failures.with_label_values(&[r.label()])).collect();
        let webhooks = crate::webhook::WebhookMetrics::register(&registry)?;
        Ok(Self { registry, requests, tokens_minted, turn_credentials, auth_failures, webhooks })
    }

    pub fn request(&self, route: &str, method: &str, status: u16) {
        self.requests.with_label_values(&[route, method, status.to_string().as_str()]).inc();
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        if let Some(c) = AuthFailure::ALL.iter().position(|r| *r == reason).and_then(|i| self.auth_failures.get(i)) {
            c.inc();
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders() {
        let m = EdgeMetrics::new().expect("metrics");
        m.request("/v1/tokens", "POST", 200);
        m.tokens_minted.inc();
        m.auth_failure(AuthFailure::BadApiKey);
        let text = m.render();
        for want in [
            r#"switchboard_http_requests_total{method="POST",route="/v1/tokens",status="200"} 1"#,
            "switchboard_tokens_minted_total 1",
            "switchboard_turn_credentials_total 0",
            r#"switchboard_auth_failures_total{reason="bad-api-key"} 1"#,
            r#"switchboard_auth_failures_total{reason="origin"} 0"#,
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
