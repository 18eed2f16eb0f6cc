//! TURN end to end: a real coturn on loopback (TURN REST credentials, `use-auth-secret`), a
//! real gateway handing out those credentials and minting access tokens, a node that requires
//! tokens, and two `switchboard-peer smoke` peers with `--ice-transport-policy relay`: they
//! gather relay candidates only, so the call connects through coturn or not at all. Data-channel
//! messages and RTP must cross it. Skipped with a note when coturn is not installed (failed
//! under `CI=true`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::{Coturn, Node, RedisServer, external_tool, node_binary, run_until};

const TURN_SECRET: &str = "turn-shared-secret-for-the-test";
const TOKEN_SECRET: &str = "token-secret-0123456789abcdef0123456789";
const API_KEY: &str = "api-key-0123456789abcdef";

/// The `switchboard-gateway` binary beside the node's (another package's binary has no
/// `CARGO_BIN_EXE_*` here); cargo builds it first, which is a no-op when it is fresh.
fn gateway_binary() -> String {
    let node = PathBuf::from(node_binary());
    let dir = node.parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "switchboard-gateway", "--bin", "switchboard-gateway"]);
    if dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    assert!(build.status().is_ok_and(|s| s.success()), "cannot build switchboard-gateway");
    dir.join("switchboard-gateway").to_string_lossy().into_owned()
}

fn smoke(args: &[&str]) -> (bool, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard-peer"));
    cmd.arg("smoke").args(args);
    let (ok, stdout, stderr) = run_until(cmd, Instant::now() + Duration::from_secs(90));
    // The report: a JSON line, then the verdict (`ok: …` or `FAILED: …`) on a line of its own.
    let (report, verdict) = stdout.trim().split_once('\n').unwrap_or((&stdout, ""));
    let report: Value = serde_json::from_str(report).unwrap_or_else(|e| panic!("report {stdout:?}: {e}\n{stderr}"));
    assert_eq!(report["ok"] == true, verdict.starts_with("ok: "), "the verdict contradicts the report: {stdout}");
    (ok, report, stderr)
}

#[test]
fn a_relay_only_call_connects_through_coturn_with_gateway_credentials() {
    if !external_tool("turnserver") {
        return;
    }
    let coturn = Coturn::start(TURN_SECRET);
    let redis = RedisServer::start();
    let gateway = Node::start(
        &gateway_binary(),
        &[
            "--redis-url",
            &redis.url(),
            "--token-secrets",
            TOKEN_SECRET,
            "--api-keys",
            API_KEY,
            "--turn-urls",
            &coturn.url(),
            "--turn-secret",
            TURN_SECRET,
        ],
    );
    // The node admits token holders only: the peers' tokens come from the gateway.
    let node = Node::start(&node_binary(), &["--token-secrets", TOKEN_SECRET]);
    let (ws, gw) = (node.ws_url("/v1/ws"), gateway.http_url(""));

    let (ok, r, stderr) = smoke(&[
        "--url",
        &ws,
        "--gateway",
        &gw,
        "--api-key",
        API_KEY,
        "--ice-transport-policy",
        "relay",
        "--messages",
        "50",
        "--media-secs",
        "2",
    ]);
    assert!(ok && r["ok"] == true, "the relayed call failed: {r}\n{stderr}");
    println!("{r}");
    assert_eq!(r["data_channel"]["messages_echoed_intact"], 50, "every message echoed byte for byte: {r}");
    for dir in ["a_to_b", "b_to_a"] {
        let rtp = &r["rtp"][dir];
        assert!(rtp["video_packets"].as_u64() > Some(30), "{dir}: {rtp}");
        assert!(rtp["audio_packets"].as_u64() > Some(50), "{dir}: {rtp}");
    }

    // The same call with a TURN password coturn rejects cannot connect: relay-only really
    // leaves no other path (no host candidate falls back on loopback).
    let wrong = ["--turn", &coturn.url(), "--turn-username", "9999999999:x", "--turn-credential", "wrong"];
    let token = mint(&gw, "relay-refused");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard-peer"));
    cmd.args(["smoke", "--url", &ws, "--token", &token, "--ice-transport-policy", "relay", "--timeout-secs", "8"])
        .args(wrong);
    let (ok, stdout, _) = run_until(cmd, Instant::now() + Duration::from_secs(60));
    assert!(!ok, "a relay-only call with a refused TURN credential must not connect: {stdout}");
    assert!(stdout.contains("\"ok\":false") && stdout.contains("\nFAILED: "), "{stdout}");
}

/// An access token for `room`, minted by the gateway's `POST /v1/tokens`.
fn mint(gateway: &str, room: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    let body = serde_json::json!({"room": room, "user": "relay-test"});
    let mut res = agent
        .post(format!("{gateway}/v1/tokens"))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .send_json(&body)
        .expect("POST /v1/tokens");
    let v: Value = res.body_mut().read_json().expect("token response");
    v["token"].as_str().expect("token").to_owned()
}
