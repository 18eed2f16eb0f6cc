//! What the gateway's tests share: starting a real gateway process, and a plain HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use switchboard_tests::Node;

/// The token secret every test process shares (at least 32 bytes).
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// An API key of the gateways under test (at least 16 bytes).
pub const API_KEY: &str = "test-api-key-0123456789abcdef";
/// A Redis URL nothing listens on: for tests that never reach the admin API (the gateway
/// connects lazily, so it starts all the same).
pub const NO_REDIS: &str = "redis://127.0.0.1:1";

/// Starts `switchboard-gateway` with `--redis-url redis_url` and `args` on a free port.
pub fn gateway(redis_url: &str, args: &[&str]) -> Node {
    let mut all = vec!["--redis-url", redis_url];
    all.extend_from_slice(args);
    Node::start(env!("CARGO_BIN_EXE_switchboard-gateway"), &all)
}

/// A gateway that mints tokens and knows [`API_KEY`].
pub fn production_like_gateway(redis_url: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--token-secrets", SECRET, "--api-keys", API_KEY];
    args.extend_from_slice(extra);
    gateway(redis_url, &args)
}

/// An HTTP response, headers keyed in lower case.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// Asserts a typed API error: this status, this code, a non-empty message.
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "expected {status} {code}, got {} {}", self.status, self.body);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{}", self.body);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        self
    }
}

/// One HTTP/1.1 request.
pub fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = match body {
        Some(b) => agent.run(req.body(b.to_string()).expect("request")),
        None => agent.run(req.body(()).expect("request")),
    };
    let mut res = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    Resp { status, headers, body }
}

pub fn get(node: &Node, path: &str, headers: &[(&str, &str)]) -> Resp {
    call("GET", &node.http_url(path), headers, None)
}

/// `Authorization: Bearer <credential>` as a header pair.
pub fn bearer(credential: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {credential}"))
}

/// POSTs a JSON body with the API key.
pub fn post_json(node: &Node, path: &str, body: &str) -> Resp {
    let auth = format!("Bearer {API_KEY}");
    call("POST", &node.http_url(path), &[("Authorization", &auth), ("Content-Type", "application/json")], Some(body))
}

/// Mints a token through the gateway's API.
pub fn mint(node: &Node, room: &str, user: &str) -> Value {
    let res = post_json(node, "/v1/tokens", &serde_json::json!({"room": room, "user": user}).to_string());
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()
}

/// Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}
