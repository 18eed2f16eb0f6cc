//! `GET /v1/ice-servers`: TURN credentials checked against the published TURN REST algorithm
//! computed independently (Python's hmac), against a real coturn, and the route's auth.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use switchboard::auth::{Claims, ISSUER, Role, TokenKeys};
use switchboard_tests::{Coturn, external_tool_probed, run_until};

const TURN_SECRET: &str = "coturn-shared-secret";

/// base64(HMAC-SHA1(secret, username)), by Python's standard library: not our code.
fn python_turn_password(secret: &str, username: &str) -> String {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import hmac,hashlib,base64,sys; \
         print(base64.b64encode(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha1).digest()).decode())",
        secret,
        username,
    ]);
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(10));
    assert!(ok, "python3: {err}");
    out.trim().to_string()
}

/// Allocates a relay with `username`/`password` and relays a few packets through it
/// (two clients talking through their relays); true if that worked.
fn allocates(coturn: &Coturn, username: &str, password: &str) -> bool {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args([
        "-p",
        &coturn.port().to_string(),
        "-u",
        username,
        "-w",
        password,
        "-y",
        "-n",
        "2",
        "-m",
        "1",
        "127.0.0.1",
    ]);
    run_until(cmd, Instant::now() + Duration::from_secs(30)).0
}

fn turn_gateway(turn_port: u16) -> switchboard_tests::Node {
    let stun = format!("stun:127.0.0.1:{turn_port}");
    let turn = format!("turn:127.0.0.1:{turn_port}?transport=udp,turn:127.0.0.1:{turn_port}?transport=tcp");
    production_like_gateway(
        NO_REDIS,
        &["--stun-urls", &stun, "--turn-urls", &turn, "--turn-secret", TURN_SECRET, "--turn-ttl-secs", "600"],
    )
}

#[test]
fn turn_credentials_follow_the_published_algorithm() {
    let gw = turn_gateway(3478);
    let token = mint(&gw, "alpha", "alice")["token"].as_str().expect("token").to_string();
    let before = now();
    let res = get(&gw, "/v1/ice-servers", &[("Authorization", &format!("Bearer {token}"))]);
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    let servers = body["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers.len(), 2, "{body}");
    assert_eq!(servers[0]["urls"], serde_json::json!(["stun:127.0.0.1:3478"]));
    assert!(servers[0].get("username").is_none() && servers[0].get("credential").is_none());
    let turn = &servers[1];
    assert_eq!(turn["urls"].as_array().map(Vec::len), Some(2));

    // username = "<expiry>:<user>", expiry = now + ttl; the user is the token's.
    let username = turn["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    let expiry: u64 = expiry.parse().expect("unix seconds");
    assert_eq!(user, "alice");
    assert!((before + 600..=now() + 600).contains(&expiry), "expiry {expiry} is not now + 600");
    assert_eq!((body["ttl_secs"].as_u64(), body["expires_at"].as_u64()), (Some(600), Some(expiry)));
    // password = base64(HMAC-SHA1(secret, username)), computed by someone else.
    assert_eq!(turn["credential"].as_str(), Some(python_turn_password(TURN_SECRET, username).as_str()));

    // An API key holder names the user the credential is labelled with.
    let key = format!("Bearer {API_KEY}");
    let res = get(&gw, "/v1/ice-servers?user=recorder-1", &[("Authorization", &key)]);
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.json()["ice_servers"][1]["username"].as_str().is_some_and(|u| u.ends_with(":recorder-1")));

    let metrics = get(&gw, "/metrics", &[]).body;
    assert!(metrics.contains("switchboard_turn_credentials_total 2"), "{metrics}");
    assert!(metrics.contains("switchboard_tokens_minted_total 1"), "{metrics}");
}

#[test]
fn coturn_accepts_the_gateways_credentials_and_refuses_a_wrong_password() {
    // turnutils_uclient ships in the same package and has no option that exits 0.
    if !external_tool_probed("turnserver", &["--version"]) {
        return;
    }
    let coturn = Coturn::start(TURN_SECRET);
    let gw = turn_gateway(coturn.port());
    let token = mint(&gw, "alpha", "alice")["token"].as_str().expect("token").to_string();
    let body = get(&gw, "/v1/ice-servers", &[("Authorization", &format!("Bearer {token}"))]).json();
    let turn = &body["ice_servers"][1];
    let (username, password) = (turn["username"].as_str().expect("username"), turn["credential"].as_str().expect("pw"));

    assert!(allocates(&coturn, username, password), "coturn refused the gateway's credential {username}");
    assert!(!allocates(&coturn, username, "d3JvbmcgcGFzc3dvcmQ="), "coturn accepted a wrong password");
    // The expiry is part of what is signed: moving it invalidates the password.
    let (_, user) = username.split_once(':').expect("expiry:user");
    let later = format!("{}:{user}", now() + 7200);
    assert!(!allocates(&coturn, &later, password), "coturn accepted a credential with a forged expiry");
}

#[test]
fn ice_servers_refuse_missing_forged_and_expired_tokens() {
    let gw = turn_gateway(3478);
    let ice = |auth: Option<&str>| {
        let header = auth.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
        get(&gw, "/v1/ice-servers", &headers)
    };
    ice(None).assert_error(401, "unauthorized");
    ice(Some("not-a-jwt")).assert_error(401, "token-invalid");

    let keys = TokenKeys::new(&[SECRET.to_string()], "switchboard").expect("keys");
    let (good, _) = keys.mint("alpha", "alice", Role::Participant, Duration::from_secs(60));
    assert_eq!(ice(Some(&good)).status, 200);

    // Signed with a secret the gateway does not have.
    let other = TokenKeys::new(&["another-secret-0123456789abcdef01234".to_string()], "switchboard").expect("keys");
    let (foreign, _) = other.mint("alpha", "alice", Role::Participant, Duration::from_secs(60));
    ice(Some(&foreign)).assert_error(401, "token-invalid");
    // The gateway's own header and signature over a payload it never signed.
    let (evil, _) = keys.mint("beta", "mallory", Role::Participant, Duration::from_secs(60));
    let g: Vec<&str> = good.split('.').collect();
    let spliced = format!("{}.{}.{}", g[0], evil.split('.').nth(1).expect("payload"), g[2]);
    ice(Some(&spliced)).assert_error(401, "token-invalid");
    // For another cluster.
    let green = TokenKeys::new(&[SECRET.to_string()], "green").expect("keys");
    ice(Some(&green.mint("alpha", "alice", Role::Participant, Duration::from_secs(60)).0))
        .assert_error(401, "token-invalid");
    // Expired a minute ago (past the clock-skew leeway).
    let t = now();
    let expired = keys.sign(&Claims {
        iss: ISSUER.into(),
        aud: "switchboard".into(),
        sub: "alice".into(),
        room: "alpha".into(),
        role: Role::Participant,
        iat: t - 3600,
        nbf: t - 3600,
        exp: t - 60,
        jti: "expired".into(),
    });
    ice(Some(&expired)).assert_error(401, "token-expired");

    let metrics = get(&gw, "/metrics", &[]).body;
    for want in [
        r#"switchboard_auth_failures_total{reason="missing"} 1"#,
        r#"switchboard_auth_failures_total{reason="bad-token"} 4"#,
        r#"switchboard_auth_failures_total{reason="expired-token"} 1"#,
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
}

#[test]
fn development_and_allow_anonymous_hand_out_ice_servers_without_a_token() {
    let turn = ["--turn-urls", "turn:127.0.0.1:3478", "--turn-secret", TURN_SECRET];
    // No token secrets: development.
    let dev = gateway(NO_REDIS, &turn);
    let res = get(&dev, "/v1/ice-servers", &[]);
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.json()["ice_servers"][0]["username"].as_str().is_some_and(|u| u.ends_with(":anonymous")));

    // Token secrets, but anonymous peers admitted: they need ICE servers too; a bad token is
    // still refused rather than taken as anonymous.
    let mut args = vec!["--token-secrets", SECRET, "--allow-anonymous", "true"];
    args.extend_from_slice(&turn);
    let lax = gateway(NO_REDIS, &args);
    assert_eq!(get(&lax, "/v1/ice-servers", &[]).status, 200);
    get(&lax, "/v1/ice-servers", &[("Authorization", "Bearer forged")]).assert_error(401, "token-invalid");

    // No TURN configured: no credentials, ttl 0.
    let plain = gateway(NO_REDIS, &["--stun-urls", "stun:stun.example.com:3478"]);
    let body = get(&plain, "/v1/ice-servers", &[]).json();
    assert_eq!(body["ice_servers"].as_array().map(Vec::len), Some(1));
    assert_eq!((body["ttl_secs"].as_u64(), body["expires_at"].as_u64()), (Some(0), Some(0)));
}
