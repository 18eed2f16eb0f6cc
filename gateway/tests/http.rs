//! The gateway's HTTP surface: CORS and Origin rules, the OpenAPI document, the browser
//! client, probes and metrics, graceful shutdown.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const APP: &str = "https://app.example.com";

#[test]
fn cors_preflight_passes_for_allowed_origins_and_foreign_origins_are_refused() {
    let gw = production_like_gateway(NO_REDIS, &["--api-origins", &format!("{APP},http://localhost:*")]);
    let url = gw.http_url("/v1/tokens");
    let preflight = |origin: &str| {
        call(
            "OPTIONS",
            &url,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization, content-type"),
            ],
            None,
        )
    };

    for origin in [APP, "http://localhost:5173"] {
        let res = preflight(origin);
        assert!(res.status == 200 || res.status == 204, "{origin}: {} {}", res.status, res.body);
        assert_eq!(res.header("access-control-allow-origin"), Some(origin));
        let methods = res.header("access-control-allow-methods").unwrap_or_default().to_ascii_uppercase();
        assert!(methods.contains("POST") && methods.contains("DELETE"), "{methods}");
        let headers = res.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
        assert!(headers.contains("authorization") && headers.contains("content-type"), "{headers}");
        assert!(res.header("access-control-max-age").is_some());
        // Credentials are a header, never cookies.
        assert_eq!(res.header("access-control-allow-credentials"), None);
    }

    // The actual request from an allowed origin carries the CORS header, errors included.
    let auth = format!("Bearer {API_KEY}");
    let res = call(
        "POST",
        &url,
        &[("Origin", APP), ("Authorization", &auth), ("Content-Type", "application/json")],
        Some(r#"{"room":"a","user":"u"}"#),
    );
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("access-control-allow-origin"), Some(APP));
    let res = call("POST", &url, &[("Origin", APP), ("Content-Type", "application/json")], Some("{}"));
    res.assert_error(401, "unauthorized");
    assert_eq!(res.header("access-control-allow-origin"), Some(APP));

    // Foreign origins: refused outright with a typed 403, preflight or not, key or not.
    for origin in ["https://evil.example", "https://app.example.com.evil.example", "http://localhost", "null"] {
        let res = preflight(origin);
        res.assert_error(403, "forbidden");
        assert_eq!(res.header("access-control-allow-origin"), None, "{origin}");
        call(
            "POST",
            &url,
            &[("Origin", origin), ("Authorization", &auth), ("Content-Type", "application/json")],
            Some(r#"{"room":"a","user":"u"}"#),
        )
        .assert_error(403, "forbidden");
    }
    get(&gw, "/v1/ice-servers", &[("Origin", "https://evil.example")]).assert_error(403, "forbidden");
    // Same-origin (a page served by the gateway itself) always passes.
    let own = format!("http://{}", gw.addr);
    assert_eq!(get(&gw, "/v1/openapi.json", &[("Origin", &own)]).status, 200);
    // No Origin: not a browser; the API key decides.
    assert_eq!(post_json(&gw, "/v1/tokens", r#"{"room":"a","user":"u"}"#).status, 200);

    let metrics = get(&gw, "/metrics", &[]).body;
    assert!(metrics.contains(r#"switchboard_auth_failures_total{reason="origin"} 9"#), "{metrics}");
}

#[test]
fn openapi_is_valid_json_listing_every_route_with_its_security() {
    let gw = gateway(NO_REDIS, &[]);
    let res = get(&gw, "/v1/openapi.json", &[]);
    assert_eq!(res.status, 200);
    assert!(res.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let doc = res.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);

    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    let want: BTreeSet<String> = [
        "POST /v1/tokens",
        "GET /v1/ice-servers",
        "GET /v1/openapi.json",
        "GET /v1/nodes",
        "GET /v1/webhooks/failures",
        "GET /v1/rooms",
        "GET /v1/rooms/{room}",
        "DELETE /v1/rooms/{room}",
        "DELETE /v1/rooms/{room}/members/{peer_id}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(routes, want);

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["scheme"], "bearer");
    assert_eq!(schemes["access_token"]["bearerFormat"], "JWT");
    assert_eq!(doc["paths"]["/v1/tokens"]["post"]["security"], serde_json::json!([{"api_key": []}]));
    assert_eq!(doc["paths"]["/v1/nodes"]["get"]["security"], serde_json::json!([{"api_key": []}]));
    for schema in ["TokenRequest", "TokenResponse", "IceServers", "NodeList", "RoomList", "RoomDetail", "ApiError"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    // Every schema a route references is defined.
    let text = res.body;
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }
}

#[test]
fn the_browser_client_probes_metrics_and_unknown_routes() {
    let gw = gateway(NO_REDIS, &[]);
    let page = get(&gw, "/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("<html") || page.body.contains("<!doctype") || page.body.contains("<!DOCTYPE"));
    for (path, content_type, body) in switchboard_gateway::assets::FILES {
        let res = get(&gw, path, &[]);
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.header("content-type"), Some(*content_type), "{path}");
        assert_eq!(res.body.len(), body.len(), "{path}");
    }
    get(&gw, "/no/such/thing", &[]).assert_error(404, "not-found");

    // Without --serve-client, no page.
    let bare = gateway(NO_REDIS, &["--serve-client", "false"]);
    get(&bare, "/", &[]).assert_error(404, "not-found");

    // Liveness needs nothing; readiness needs Redis (nothing listens at NO_REDIS).
    assert_eq!(get(&gw, "/healthz", &[]).status, 200);
    let ready = get(&gw, "/readyz", &[]);
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["redis"], false);
    let metrics = get(&gw, "/metrics", &[]);
    assert!(metrics.body.contains("switchboard_tokens_minted_total 0"), "{}", metrics.body);
}

#[test]
fn sigterm_stops_the_gateway_cleanly() {
    let mut gw = gateway(NO_REDIS, &[]);
    assert_eq!(get(&gw, "/healthz", &[]).status, 200);
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}
