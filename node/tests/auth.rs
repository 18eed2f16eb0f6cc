//! Access tokens end to end: a real node process with `--token-secrets`, real WebSocket clients,
//! tokens minted with the same `switchboard::auth` the gateway signs with.
//!
//! What this file proves:
//! - a socket without a token, or with an expired, not-yet-valid, forged (spliced payload),
//!   unknown-key, `alg: none`, other-cluster or malformed one, is upgraded and then refused with
//!   an `error` frame carrying the token's error code and a clear message, and close 4401 —
//!   in both dialects — and the refusals are counted in `switchboard_errors_total`;
//! - both carriers work: `?access_token=` and the subprotocol entry `access_token.<jwt>`, and
//!   the subprotocol echoed back is `switchboard.v1`, never the token;
//! - a token opens exactly its room: joining another is `forbidden` (v1 and seed) and the
//!   session stays usable; a viewer may signal but not broadcast;
//! - the token's user and role reach the room's other peers (`peer-joined`, `joined.peers`);
//! - without secrets a node admits anonymous peers; `--allow-anonymous` admits them next to
//!   token holders; `--production` without secrets (or with a short secret) refuses to start.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};
use switchboard::auth::{Claims, ISSUER, Role, TokenKeys};
use switchboard_tests::{Client, Node, V1Peer};

const SECRET: &str = "an-integration-test-secret-of-40-bytes!!";
const OTHER_SECRET: &str = "another-secret-nobody-configured-0123456";
/// The node's default `--cluster-name`: the audience of its tokens.
const CLUSTER: &str = "switchboard";

fn keys() -> TokenKeys {
    TokenKeys::new(&[SECRET.to_string()], CLUSTER).expect("keys")
}

fn token(room: &str, user: &str, role: Role) -> String {
    keys().mint(room, user, role, Duration::from_secs(300)).0
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn claims(room: &str, nbf: u64, exp: u64) -> Claims {
    Claims {
        iss: ISSUER.into(),
        aud: CLUSTER.into(),
        sub: "mallory".into(),
        room: room.into(),
        role: Role::Participant,
        iat: nbf,
        nbf,
        exp,
        jti: "test".into(),
    }
}

fn secured(extra: &[&str]) -> Node {
    let mut args = vec!["--token-secrets", SECRET];
    args.extend_from_slice(extra);
    start(&args)
}

/// Opens `path` (with its query) and expects the upgrade, an `error` with `code`, then close
/// 4401. Returns the error frame.
async fn refused(node: &Node, path: &str, headers: &[(&str, &str)], code: &str) -> Value {
    let (resp, ws) = RawWs::handshake(&node.addr, path, headers).await;
    assert_eq!(resp.status, 101, "refusals come after the upgrade, where a browser can read them: {resp:?}");
    let mut ws = ws.expect("socket");
    let err = ws.recv_json().await;
    let got = if err["code"].is_string() { &err["code"] } else { &err["body"]["code"] };
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(got, code, "{err}");
    let close = ws.expect_close().await;
    assert_eq!(close.as_ref().map(|c| c.0), Some(4401), "close for {code}: {close:?}");
    assert_eq!(close.map(|c| c.1).as_deref(), Some(code));
    err
}

fn message(err: &Value) -> String {
    err["message"].as_str().or(err["body"]["message"].as_str()).expect("message").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_bad_tokens_are_refused_after_the_upgrade_with_their_codes() {
    let node = secured(&[]);
    let now = now();
    let good = token("r", "ann", Role::Participant);
    let parts: Vec<&str> = good.split('.').collect();
    // Same header (so the same kid) and the original signature over another room's payload.
    let other_room = token("other-room", "ann", Role::Participant);
    let spliced = format!("{}.{}.{}", parts[0], other_room.split('.').nth(1).expect("payload"), parts[2]);
    // {"alg":"none","typ":"JWT"}, no signature.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("expired", keys().sign(&claims("r", now - 600, now - 300)), "token-expired", "expired"),
        ("not yet valid", keys().sign(&claims("r", now + 300, now + 600)), "token-invalid", "not valid yet"),
        ("forged", spliced, "token-invalid", "signature"),
        (
            "unknown key",
            TokenKeys::new(&[OTHER_SECRET.to_string()], CLUSTER)
                .expect("keys")
                .mint("r", "ann", Role::Participant, Duration::from_secs(60))
                .0,
            "token-invalid",
            "unknown key",
        ),
        ("alg none", unsigned, "token-invalid", ""),
        (
            "other cluster",
            TokenKeys::new(&[SECRET.to_string()], "another-cluster")
                .expect("keys")
                .mint("r", "ann", Role::Participant, Duration::from_secs(60))
                .0,
            "token-invalid",
            "audience",
        ),
        ("malformed", "not-a-jwt".to_string(), "token-invalid", "well-formed"),
    ];
    for (what, bad, code, says) in &cases {
        let err = refused(&node, &format!("/v1/ws?access_token={bad}"), &[], code).await;
        assert!(message(&err).contains(says), "{what}: {err}");
        // The same through the other carrier.
        let proto = format!("switchboard.v1, access_token.{bad}");
        refused(&node, "/v1/ws", &[("Sec-WebSocket-Protocol", &proto)], code).await;
    }
    let err = refused(&node, "/v1/ws", &[], "unauthorized").await;
    assert!(message(&err).contains("access_token"), "says how to pass a token: {err}");
    // The seed dialect refuses in its own error shape.
    let err = refused(&node, "/ws", &[], "unauthorized").await;
    assert_eq!(err["body"]["code"], "unauthorized", "{err}");
    refused(&node, &format!("/ws?access_token={}", cases[0].1), &[], "token-expired").await;

    assert_eq!(node_metric(&node, "switchboard_errors_total", &[("code", "unauthorized")]), 2.0);
    assert_eq!(node_metric(&node, "switchboard_errors_total", &[("code", "token-expired")]), 3.0);
    assert_eq!(node_metric(&node, "switchboard_errors_total", &[("code", "token-invalid")]), 12.0);
    // No slot was taken by a refused socket.
    assert_eq!(node_metric(&node, "switchboard_connections", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_carriers_admit_a_valid_token_and_only_switchboard_v1_is_echoed() {
    let node = secured(&[]);
    let t = token("carrier", "ann", Role::Participant);
    let mut by_query = V1Peer::connect(&format!("{}?access_token={t}", v1_url(&node))).await;
    assert_eq!(by_query.join("carrier").await["room"], "carrier");

    let proto = format!("switchboard.v1, access_token.{t}");
    let (resp, ws) = RawWs::handshake(&node.addr, "/v1/ws", &[("Sec-WebSocket-Protocol", &proto)]).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(resp.header("sec-websocket-protocol"), Some("switchboard.v1"), "{resp:?}");
    let mut ws = ws.expect("socket");
    let welcome = ws.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    // A standard client checks the echoed subprotocol against what it offered.
    let mut std_client = Client::connect_with(&v1_url(&node), &[("Sec-WebSocket-Protocol", &proto)])
        .await
        .expect("a browser-style client accepts the handshake");
    assert_eq!(std_client.expect("welcome").await["type"], "welcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_room_never_opens_another() {
    let node = secured(&[]);
    let mut p =
        V1Peer::connect(&format!("{}?access_token={}", v1_url(&node), token("room-a", "ann", Role::Participant))).await;
    p.ws.send_json(json!({"type": "join", "room": "room-b", "id": 1})).await;
    let err = p.ws.expect_error("forbidden").await;
    assert_eq!(err["id"], 1, "{err}");
    assert!(message(&err).contains("room-a") && message(&err).contains("room-b"), "{err}");
    assert_alive(&mut p).await;
    assert_eq!(p.join("room-a").await["room"], "room-a");

    // Seed: the token names the channel; another channelName gets the seed dialect's error.
    let seed_url = format!("{}?access_token={}", node.ws_url("/ws"), token("chan a", "bob", Role::Participant));
    let mut s = Client::connect(&seed_url).await;
    s.send_json(json!({"type": "join", "body": {"channelName": "chan b", "userId": "bob"}})).await;
    let err = s.expect_error("forbidden").await;
    assert!(message(&err).contains("chan a"), "{err}");
    s.send_json(json!({"type": "join", "body": {"channelName": "chan a", "userId": "bob"}})).await;
    assert_eq!(s.expect("joined").await["body"], json!(["bob"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_travel_with_members_and_viewers_may_not_broadcast() {
    let node = secured(&[]);
    let url = |user: &str, role| format!("{}?access_token={}", v1_url(&node), token("stage", user, role));
    let mut alice = V1Peer::connect(&url("alice", Role::Participant)).await;
    alice.join("stage").await;
    let mut bob = V1Peer::connect(&url("bob", Role::Viewer)).await;
    let joined = bob.join("stage").await;
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": alice.id, "user": "alice", "role": "participant"}]),
        "joined.peers carry the token's user and role"
    );
    let pj = alice.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"], json!({"peer_id": bob.id, "user": "bob", "role": "viewer"}));

    bob.ws.send_json(json!({"type": "broadcast", "room": "stage", "data": {"hi": 1}, "id": "b"})).await;
    let err = bob.ws.expect_error("forbidden").await;
    assert_eq!(err["id"], "b");
    assert!(message(&err).contains("viewer"), "{err}");
    // A viewer still signals (it must answer offers to receive media), and stays connected.
    signal_arrives(&mut bob, &mut alice, "stage", answer()).await;
    alice.ws.send_json(json!({"type": "broadcast", "room": "stage", "data": {"hi": 2}})).await;
    assert_eq!(bob.ws.expect("broadcast").await["data"], json!({"hi": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_secrets_admits_anonymous_peers() {
    let node = start(&[]);
    let (mut a, mut b) = pair(&node, "open").await;
    signal_arrives(&mut a, &mut b, "open", offer()).await;
    // A token is no use to a node that cannot verify it: the peer is simply anonymous.
    let mut c = V1Peer::connect(&format!("{}?access_token=whatever", v1_url(&node))).await;
    c.join("open").await;
    let pj = a.ws.expect("peer-joined").await;
    assert_eq!(pj["peer"], json!({"peer_id": c.id}), "no user or role without a verified token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_anonymous_admits_peers_without_a_token_but_not_with_a_bad_one() {
    let node = secured(&["--allow-anonymous", "true"]);
    let mut anon = V1Peer::connect(&v1_url(&node)).await;
    anon.join("mixed").await;
    let mut named =
        V1Peer::connect(&format!("{}?access_token={}", v1_url(&node), token("mixed", "carol", Role::Participant)))
            .await;
    let joined = named.join("mixed").await;
    assert_eq!(joined["peers"], json!([{"peer_id": anon.id}]));
    assert_eq!(anon.ws.expect("peer-joined").await["peer"]["user"], "carol");
    refused(&node, "/v1/ws?access_token=forged.token.here", &[], "token-invalid").await;
}

#[test]
fn production_without_secrets_or_with_weak_ones_refuses_to_start() {
    refuses_to_start(&["--production", "true"], "--production requires --token-secrets");
    refuses_to_start(&["--production", "true", "--token-secrets", SECRET], "--production requires --api-keys");
    refuses_to_start(
        &[
            "--production",
            "true",
            "--token-secrets",
            SECRET,
            "--api-keys",
            "k-0123456789abcdef",
            "--allow-anonymous",
            "true",
        ],
        "--production forbids --allow-anonymous",
    );
    refuses_to_start(
        &["--token-secrets", "too-short"],
        "at least 32 are required (make one with `openssl rand -hex 32`)",
    );
}
