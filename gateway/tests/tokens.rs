//! `POST /v1/tokens` on a real gateway process: the token verifies, opens its room (and only
//! its room) on a real node sharing the secret, and every bad request gets a typed error.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use switchboard::auth::{Role, TokenKeys};
use switchboard_tests::{Client, Node, V1Peer, node_binary, run_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_verifies_and_opens_its_room_on_a_node_and_no_other() {
    let gw = production_like_gateway(NO_REDIS, &["--public-ws-url", "ws://signal.example/v1/ws"]);
    let node = Node::start(&node_binary(), &["--token-secrets", SECRET]);

    let before = now();
    let res = post_json(&gw, "/v1/tokens", r#"{"room":"alpha","user":"alice","role":"viewer","ttl_secs":120}"#);
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    assert_eq!(
        (body["room"].as_str(), body["user"].as_str(), body["role"].as_str()),
        (Some("alpha"), Some("alice"), Some("viewer"))
    );
    assert_eq!(body["ws_url"], "ws://signal.example/v1/ws");
    let token = body["token"].as_str().expect("token");

    // It verifies with the shared secret, for this cluster, with what was asked.
    let claims = TokenKeys::new(&[SECRET.to_string()], "switchboard").expect("keys").verify(token).expect("verifies");
    assert_eq!((claims.room.as_str(), claims.sub.as_str(), claims.role), ("alpha", "alice", Role::Viewer));
    assert!((before + 120..=now() + 120).contains(&claims.exp), "exp {} not now + 120", claims.exp);
    assert_eq!(body["expires_at"], claims.exp);
    // Another cluster's nodes refuse it.
    assert!(TokenKeys::new(&[SECRET.to_string()], "other").expect("keys").verify(token).is_err());

    // It opens its room on the node...
    let mut peer = V1Peer::connect(&node.ws_url(&format!("/v1/ws?access_token={token}"))).await;
    let joined = peer.join("alpha").await;
    assert_eq!(joined["room"], "alpha");
    // ...and no other.
    peer.ws.send_json(json!({"type": "join", "room": "beta"})).await;
    peer.ws.expect_error("forbidden").await;

    // As a subprotocol entry too (what a browser sends).
    let token_b = mint(&gw, "gamma", "bob");
    let proto = format!("switchboard.v1, access_token.{}", token_b["token"].as_str().expect("token"));
    let mut ws = Client::connect_with(&node.ws_url("/v1/ws"), &[("Sec-WebSocket-Protocol", &proto)])
        .await
        .expect("upgrade with a token subprotocol");
    ws.expect("welcome").await;
    ws.send_json(json!({"type": "join", "room": "gamma"})).await;
    ws.expect("joined").await;
}

#[test]
fn the_api_refuses_requests_without_a_valid_key() {
    let gw = production_like_gateway(NO_REDIS, &[]);
    let url = gw.http_url("/v1/tokens");
    let body = Some(r#"{"room":"a","user":"u"}"#);
    let json = ("Content-Type", "application/json");

    let res = call("POST", &url, &[json], body);
    res.assert_error(401, "unauthorized");
    assert!(res.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    // A wrong key, a key one byte short, another scheme: all 401, same shape.
    let wrong = format!("Bearer {API_KEY}x");
    let short = format!("Bearer {}", &API_KEY[..API_KEY.len() - 1]);
    let basic = format!("Basic {API_KEY}");
    for auth in [wrong.as_str(), short.as_str(), basic.as_str(), "Bearer "] {
        call("POST", &url, &[json, ("Authorization", auth)], body).assert_error(401, "unauthorized");
    }
    // Without a key, a bad body is still a 401: the key is checked first.
    call("POST", &url, &[json], Some("{not json")).assert_error(401, "unauthorized");
    // The scheme name is case-insensitive.
    let lower = format!("bearer {API_KEY}");
    assert_eq!(call("POST", &url, &[json, ("Authorization", &lower)], body).status, 200);
}

#[test]
fn bad_bodies_get_typed_errors() {
    let gw = production_like_gateway(NO_REDIS, &[]);
    let bad = |body: &str| post_json(&gw, "/v1/tokens", body);
    bad("{not json").assert_error(400, "bad-request");
    bad(r#"{"room":"a"}"#).assert_error(400, "bad-request");
    bad(r#"{"room":"a","user":"u","admin":true}"#).assert_error(400, "bad-request");
    bad(r#"{"room":"a","user":"u","role":"owner"}"#).assert_error(400, "bad-request");
    bad(r#"{"room":"","user":"u"}"#).assert_error(400, "bad-request");
    bad(&json!({"room": "x".repeat(129), "user": "u"}).to_string()).assert_error(400, "bad-request");
    bad(&json!({"room": "tab\there", "user": "u"}).to_string()).assert_error(400, "bad-request");
    bad(r#"{"room":"a","user":""}"#).assert_error(400, "bad-request");
    bad(&json!({"room": "a", "user": "u".repeat(129)}).to_string()).assert_error(400, "bad-request");
    bad(r#"{"room":"a","user":"u","ttl_secs":0}"#).assert_error(400, "bad-request");

    // A seed channel name (free text) is a valid room too.
    assert_eq!(bad(r#"{"room":"team standup","user":"u"}"#).status, 200);
    // A ttl past the cap is capped, not refused.
    let capped = bad(r#"{"room":"a","user":"u","ttl_secs":1000000}"#);
    assert_eq!(capped.status, 200, "{}", capped.body);
    assert!(capped.json()["expires_at"].as_u64().expect("expires_at") <= now() + 86_400);

    let auth = format!("Bearer {API_KEY}");
    let url = gw.http_url("/v1/tokens");
    let body = r#"{"room":"a","user":"u"}"#;
    call("POST", &url, &[("Authorization", &auth), ("Content-Type", "text/plain")], Some(body))
        .assert_error(415, "unsupported-media-type");
    call("POST", &url, &[("Authorization", &auth)], Some(body)).assert_error(415, "unsupported-media-type");
    let huge = json!({"room": "a", "user": "u", "pad": "x".repeat(20_000)}).to_string();
    call("POST", &url, &[("Authorization", &auth), ("Content-Type", "application/json")], Some(&huge))
        .assert_error(413, "payload-too-large");
    // The wrong method is typed too.
    call("GET", &url, &[("Authorization", &auth)], None).assert_error(405, "bad-request");
}

#[test]
fn without_token_secrets_the_gateway_mints_nothing() {
    let gw = gateway(NO_REDIS, &["--api-keys", API_KEY]);
    let res = post_json(&gw, "/v1/tokens", r#"{"room":"a","user":"u"}"#);
    res.assert_error(503, "unavailable");
    assert!(res.json()["error"]["message"].as_str().is_some_and(|m| m.contains("--token-secrets")), "{}", res.body);
}

#[test]
fn production_refuses_development_settings() {
    let bin = env!("CARGO_BIN_EXE_switchboard-gateway");
    let short_key = "short";
    let cases: [(&[&str], &str); 4] = [
        (&["--production", "true", "--api-keys", API_KEY], "--token-secrets"),
        (&["--production", "true", "--token-secrets", SECRET], "--api-keys"),
        (
            &["--production", "true", "--token-secrets", SECRET, "--api-keys", API_KEY, "--allow-anonymous", "true"],
            "--allow-anonymous",
        ),
        (&["--api-keys", short_key], "at least 16"),
    ];
    for (args, says) in cases {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--redis-url", NO_REDIS]).args(args);
        let (ok, stdout, stderr) = run_until(cmd, Instant::now() + Duration::from_secs(10));
        assert!(!ok, "{args:?} started: {stdout}");
        assert!(stderr.contains(says), "{args:?}: expected {says:?} in {stderr}");
        assert!(!stdout.contains("listening on"), "{args:?}: {stdout}");
    }
}
