//! The browser client with access tokens, on two clustered nodes that require them: pages join
//! with `?token=` minted by `POST /v1/tokens` (API key), call each other and fetch their ICE
//! servers with their token; a token for another room shows `forbidden`, no token
//! `unauthorized`, an expired one `token-expired` — each as a notice, with no reconnect loop.
//! Then operator actions through the admin API: a kicked page says so (and may call again), a
//! closed room says so on every page. Scenario: `tests/browser/tokens.mjs`.

mod browser_support;
mod cluster;

use browser_support::{assert_screenshots, run, scenarios};
use cluster::Cluster;

const SECRET: &str = "browser-test-secret-0123456789abcdef";
const API_KEY: &str = "browser-test-api-key-0123456789";

#[test]
fn pages_join_with_minted_tokens_and_show_refusals_and_operator_removals() {
    let Some((dir, _one_at_a_time)) = scenarios() else { return };
    let c =
        Cluster::start(2, &["--token-secrets", SECRET, "--api-keys", API_KEY, "--stun-urls", "stun:127.0.0.1:3478"]);
    let (a, b) = (c.nodes[0].http_url(""), c.nodes[1].http_url(""));
    let report = run(&dir, "tokens.mjs", &[&a, &b, API_KEY]);
    assert_eq!(report["users"], serde_json::json!(["bob", "ann"]), "{report}");
    assert_eq!(report["ice_servers"], serde_json::json!([{"urls": ["stun:127.0.0.1:3478"]}]), "{report}");
    for code in ["forbidden", "unauthorized", "expired"] {
        assert!(report["refusals"][code].as_str().is_some_and(|t| t.starts_with("Access refused")), "{code}: {report}");
    }
    assert_eq!(report["operator"]["kicked"]["removed"], 1, "{report}");
    assert_eq!(report["operator"]["closed"]["removed"], 2, "{report}");
    assert!(report["operator"]["kick_notice"].as_str().is_some_and(|t| t.contains("(kicked)")), "{report}");
    // The others read why in words, not as the protocol's reason code.
    assert_eq!(report["operator"]["kick_seen"], "bob was removed from the call.", "{report}");
    // The page takes its token from `token=` in its own address: that is what it tells to add.
    let unauthorized = report["refusals"]["unauthorized"].as_str().unwrap_or_default();
    assert!(unauthorized.contains("&token=") && !unauthorized.contains("access_token"), "{report}");
    assert_screenshots(&report, "screenshots");
}
