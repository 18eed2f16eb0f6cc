//! The Origin allow-list: for WebSocket upgrades on a node, and for the HTTP API (CORS) on the
//! gateway.
//!
//! Browsers attach cookies and other ambient credentials to cross-site WebSocket handshakes,
//! and nothing like CORS stops a hostile page from opening one (cross-site WebSocket
//! hijacking). So the node checks `Origin` before it upgrades: same-origin requests and
//! clients that send no Origin (not browsers) pass; any other origin must be on the list.

/// One allowed origin.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Any,
    Exact(String),
    /// `scheme://host:` — any port.
    AnyPort(String),
}

/// The development default of both allow-lists: any port on localhost, by name or address.
pub const LOCAL_ORIGINS: &str = "http://localhost:*,http://127.0.0.1:*,https://localhost:*,https://127.0.0.1:*";

#[derive(Clone, Debug)]
pub struct OriginPolicy {
    rules: Vec<Rule>,
}

impl OriginPolicy {
    pub fn new(entries: &[String]) -> Self {
        let rules = entries
            .iter()
            .map(|e| e.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e == "*" {
                    Rule::Any
                } else if let Some(prefix) = e.strip_suffix('*').filter(|p| p.ends_with(':')) {
                    Rule::AnyPort(prefix.to_string())
                } else {
                    Rule::Exact(e)
                }
            })
            .collect();
        Self { rules }
    }

    /// `origin` is the request's Origin header, `host` its Host header.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let authority = origin.split_once("://").map(|(_, a)| a);
        if let (Some(a), Some(h)) = (authority, host)
            && a.eq_ignore_ascii_case(h)
        {
            return true;
        }
        self.rules.iter().any(|r| match r {
            Rule::Any => true,
            Rule::Exact(e) => *e == origin,
            Rule::AnyPort(prefix) => origin
                .strip_prefix(prefix.as_str())
                .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn rules() {
        let p = policy(&["https://app.example.com", "http://localhost:*"]);
        assert!(p.allows(None, Some("node:8090")));
        assert!(p.allows(Some("https://app.example.com"), None));
        assert!(p.allows(Some("HTTPS://APP.example.com/"), None));
        assert!(p.allows(Some("http://localhost:3000"), None));
        assert!(p.allows(Some("http://node:8090"), Some("node:8090")));
        assert!(!p.allows(Some("http://localhost:"), None));
        assert!(!p.allows(Some("http://localhost.evil.com:80"), None));
        assert!(!p.allows(Some("https://evil.example"), Some("node:8090")));
        assert!(!p.allows(Some("null"), Some("node:8090")));
        assert!(policy(&["*"]).allows(Some("https://anything"), None));
    }
}
