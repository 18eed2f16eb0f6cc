//! The dashboards and alerts in `k8s/components/monitoring`, checked against the real thing:
//! the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`), the
//! PrometheusRule carries exactly the rules file, every runbook link lands on a section of
//! docs/operations.md, the component builds onto the prod overlay, and every metric — and every
//! label and label value — a rule or dashboard panel selects is one that running processes
//! export (two clustered nodes with their own `redis-server`, and a gateway, after a little
//! traffic). A renamed metric fails here, not in a dashboard that silently goes blank.
//!
//! `.ci/run` installs promtool (Debian's `prometheus`); elsewhere a missing one skips its test
//! with a note.

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Node, V1Peer, external_tool, external_tool_probed, node_binary, run_until};

use cluster::Cluster;

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/components/monitoring")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn promtool(args: &[&str]) {
    let mut cmd = Command::new("promtool");
    cmd.args(args).current_dir(monitoring_dir());
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(60));
    assert!(ok, "promtool {args:?} failed:\n{out}\n{err}");
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    if !external_tool("promtool") {
        return;
    }
    promtool(&["check", "rules", "rules.yaml"]);
    promtool(&["test", "rules", "rules_test.yaml"]);
}

/// What prometheusrule.yaml must hold: the rules file's `groups:` under `spec:`.
fn expected_prometheus_rule(rules: &str) -> String {
    let mut out = String::from(
        "# Generated from rules.yaml (its `groups:` under `spec:`); tests/tests/monitoring.rs checks that\n\
         # the two agree. Edit rules.yaml, not this file.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: switchboard\nspec:\n",
    );
    let start = rules.find("\ngroups:").expect("rules.yaml has a top-level `groups:`") + 1;
    for line in rules[start..].lines() {
        if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_prometheus_rule_carries_exactly_the_rules_file() {
    let dir = monitoring_dir();
    let want = expected_prometheus_rule(&read(&dir.join("rules.yaml")));
    let have = read(&dir.join("prometheusrule.yaml"));
    assert!(
        have == want,
        "k8s/components/monitoring/prometheusrule.yaml is out of date with rules.yaml; write it as:\n{want}"
    );
}

/// One alerting rule as the rules file spells it.
struct Rule {
    alert: String,
    expr: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    has_for: bool,
}

/// The rules of rules.yaml. A reader for the shape this file keeps (one key per line, `expr`
/// inline or as a `|` block), not for YAML at large: the test crate carries no YAML parser, and
/// promtool has already judged the file as YAML.
fn rules() -> Vec<Rule> {
    let text = read(&monitoring_dir().join("rules.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let unquote = |v: &str| v.trim().trim_matches('"').to_string();
    let mut rules: Vec<Rule> = Vec::new();
    let mut section = "";
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        i += 1;
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(name) = t.strip_prefix("- alert:") {
            rules.push(Rule {
                alert: name.trim().to_string(),
                expr: String::new(),
                annotations: BTreeMap::new(),
                labels: BTreeMap::new(),
                has_for: false,
            });
            continue;
        }
        let Some(rule) = rules.last_mut() else { continue };
        if t.starts_with("- ") {
            section = "";
            continue;
        }
        match t.split_once(':') {
            Some(("expr", "")) => panic!("{}: expr must be inline or a `|` block", rule.alert),
            Some(("expr", v)) if v.trim() == "|" => {
                let base = lines.get(i).map(|l| indent(l)).unwrap_or(0);
                while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) >= base) {
                    rule.expr.push_str(lines[i].trim());
                    rule.expr.push(' ');
                    i += 1;
                }
            }
            Some(("expr", v)) => rule.expr = v.trim().to_string(),
            Some(("for", _)) => rule.has_for = true,
            Some((key @ ("labels" | "annotations"), "")) => section = key,
            Some((k, v)) if section == "labels" => {
                rule.labels.insert(k.to_string(), unquote(v));
            }
            Some((k, v)) if section == "annotations" => {
                rule.annotations.insert(k.to_string(), unquote(v));
            }
            _ => {}
        }
    }
    assert!(rules.len() >= 10, "only {} rules read from rules.yaml: the reader broke", rules.len());
    rules
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_in_the_operations_guide() {
    let guide = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"));
    let headings: BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            // GitHub's heading anchors: lower case, spaces to dashes, other punctuation dropped.
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut names = BTreeSet::new();
    for rule in rules() {
        assert!(names.insert(rule.alert.clone()), "{} is defined twice", rule.alert);
        assert!(rule.expr.contains("switchboard_"), "{}: empty or foreign expression {:?}", rule.alert, rule.expr);
        let severity = rule.labels.get("severity").map(String::as_str);
        assert!(matches!(severity, Some("critical" | "warning")), "{}: severity {severity:?}", rule.alert);
        for key in ["summary", "description", "runbook_url"] {
            assert!(rule.annotations.get(key).is_some_and(|v| !v.is_empty()), "{}: no {key}", rule.alert);
        }
        let runbook = &rule.annotations["runbook_url"];
        let anchor = runbook
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{}: runbook {runbook} is not in docs/operations.md", rule.alert));
        assert!(
            guide.contains(&format!("<a id=\"{anchor}\"></a>")) || headings.contains(anchor),
            "{}: docs/operations.md has no anchor {anchor}",
            rule.alert
        );
        // Counters that must stay 0 fire at once; the rest wait out blips.
        let instant = rule.expr.contains("increase(");
        assert!(rule.has_for || instant, "{}: a level alert needs a `for:`", rule.alert);
    }
}

fn dashboard() -> Value {
    let path = monitoring_dir().join("dashboards/switchboard.json");
    serde_json::from_str(&read(&path)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (where, PromQL) of every dashboard query, the `$node` variable's included.
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {}: target without expr", p["title"]));
            out.push((format!("panel {}", p["title"]), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["query"]["query"].as_str().or(v["query"].as_str()).filter(|_| v["type"] == "query") {
            // Grafana's `label_values(metric, label)`: as PromQL, a selector grouped by label.
            let (metric, label) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(','))
                .unwrap_or_else(|| panic!("variable {}: unexpected query {q}", v["name"]));
            out.push((format!("variable {}", v["name"]), format!("sum by ({}) ({})", label.trim(), metric.trim())));
        }
    }
    out
}

#[test]
fn the_dashboard_is_importable() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "switchboard");
    assert!(dash["title"].is_string() && dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{}", dash["title"]);
    // Data source chosen on the dashboard, so the same JSON imports by hand and through the
    // sidecar whatever the Prometheus data source is called.
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"));
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "panel id {} twice", p["id"]);
        let g = &p["gridPos"];
        assert!(["h", "w", "x", "y"].iter().all(|k| g[k].is_u64()), "panel {}: gridPos {g}", p["title"]);
        assert!(g["x"].as_u64().unwrap_or(0) + g["w"].as_u64().unwrap_or(0) <= 24, "panel {} overflows", p["title"]);
        if p["targets"].is_array() {
            assert_eq!(p["datasource"], json!({"type": "prometheus", "uid": "${datasource}"}), "panel {}", p["title"]);
        }
    }
    assert!(dashboard_queries(&dash).len() > 30, "too few queries found: the walk broke");
}

/// A metric selector in a PromQL expression: its name and `label op value` matchers.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// What an expression selects, and the labels it groups or matches on (`by`, `on`, ...).
#[derive(Debug, Default)]
struct Uses {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

const FUNCTIONS: [&str; 24] = [
    "rate",
    "irate",
    "increase",
    "delta",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "histogram_quantile",
    "absent",
    "vector",
    "scalar",
    "clamp_min",
    "clamp_max",
    "abs",
    "time",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "changes",
];
const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "inf"];
const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Reads the selectors and grouping labels of `expr`. A scanner for the PromQL these files use,
/// not a parser: anything it does not recognise is an error, so an unknown word (a metric
/// without the `switchboard_` prefix, a function it does not know) cannot slip through.
fn uses(expr: &str) -> Result<Uses, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut uses = Uses::default();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_' || chars[*i] == ':') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let string = |i: &mut usize| -> Result<String, String> {
        let quote = chars[*i];
        let mut s = String::new();
        *i += 1;
        while *i < chars.len() && chars[*i] != quote {
            if chars[*i] == '\\' {
                *i += 1;
            }
            s.extend(chars.get(*i));
            *i += 1;
        }
        if *i >= chars.len() {
            return Err(format!("unterminated string in {expr}"));
        }
        *i += 1;
        Ok(s)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || "()+-*/^%<>=!,".contains(c) {
            i += 1;
        } else if c == '"' || c == '\'' {
            string(&mut i)?;
        } else if c == '[' {
            // A range or subquery duration, perhaps a Grafana variable (`$__rate_interval`).
            i = i + chars[i..].iter().position(|&c| c == ']').ok_or("unclosed [")? + 1;
        } else if c == '$' {
            i += 1;
            word(&mut i);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let w = word(&mut i);
            let mut j = i;
            skip_ws(&mut j);
            // An aggregation may put its grouping first: `sum by (node) (…)`.
            let mut k = j;
            let next = word(&mut k);
            let call = chars.get(j) == Some(&'(') || next == "by" || next == "without";
            if GROUPING.contains(&w.as_str()) {
                if call {
                    let close = j + chars[j..].iter().position(|&c| c == ')').ok_or("unclosed (")?;
                    let list: String = chars[j + 1..close].iter().collect();
                    uses.grouping.extend(list.split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
                    i = close + 1;
                }
            } else if KEYWORDS.contains(&w.to_lowercase().as_str()) || (call && FUNCTIONS.contains(&w.as_str())) {
                // Operators and functions select nothing.
            } else if call {
                return Err(format!("unknown function {w} in {expr}"));
            } else if !w.starts_with("switchboard_") {
                return Err(format!("{w} in {expr} is no Switchboard metric"));
            } else {
                let mut selector = Selector { name: w, matchers: Vec::new() };
                if chars.get(j) == Some(&'{') {
                    i = j + 1;
                    loop {
                        skip_ws(&mut i);
                        match chars.get(i) {
                            Some('}') => break,
                            Some(',') => i += 1,
                            Some(_) => {
                                let label = word(&mut i);
                                skip_ws(&mut i);
                                let op: String = chars[i..].iter().take_while(|c| "=~!".contains(**c)).collect();
                                i += op.len();
                                skip_ws(&mut i);
                                if label.is_empty() || op.is_empty() || !matches!(chars.get(i), Some('"' | '\'')) {
                                    return Err(format!("cannot read the matchers of {} in {expr}", selector.name));
                                }
                                let value = string(&mut i)?;
                                selector.matchers.push((label, op, value));
                            }
                            None => return Err(format!("unclosed {{ in {expr}")),
                        }
                    }
                    i += 1;
                }
                uses.selectors.push(selector);
            }
        } else {
            return Err(format!("unexpected {c:?} in {expr}"));
        }
    }
    Ok(uses)
}

/// Samples by name: the label sets of every sample line in a `/metrics` text.
type Exported = BTreeMap<String, Vec<BTreeMap<String, String>>>;

fn parse_exposition(text: &str, into: &mut Exported) {
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, rest) = match line.find('{') {
            Some(b) => (&line[..b], &line[b + 1..]),
            None => (line.split_whitespace().next().unwrap_or(""), ""),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        while let Some((label, after)) = rest.split_once("=\"") {
            // Values here carry no escaped quotes (codes, routes, statuses, node ids).
            let Some(end) = after.find('"') else { break };
            labels.insert(label.trim_start_matches(',').trim().to_string(), after[..end].to_string());
            rest = &after[end + 1..];
        }
        into.entry(name.to_string()).or_default().push(labels);
    }
}

/// What in `expr` (or its grouping) the exported series do not have.
fn missing(expr: &str, exported: &Exported) -> Vec<String> {
    let uses = match uses(expr) {
        Ok(u) => u,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut labels_in_play = BTreeSet::new();
    if uses.selectors.is_empty() {
        problems.push(format!("no metric selected by {expr}"));
    }
    for s in &uses.selectors {
        let Some(samples) = exported.get(&s.name) else {
            problems.push(format!("{} is not exported", s.name));
            continue;
        };
        labels_in_play.extend(samples.iter().flat_map(|l| l.keys().cloned()));
        for (label, op, value) in &s.matchers {
            if !samples.iter().any(|l| l.contains_key(label)) {
                problems.push(format!("{} has no label {label}", s.name));
                continue;
            }
            // Equality, or a plain alternation of values: each value must be one a series has.
            // Other regexes (Grafana's `$node`, `5..`) are left alone.
            let plain = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || "-_|".contains(c));
            let wanted: Vec<&str> = match op.as_str() {
                "=" => vec![value.as_str()],
                "=~" if plain(value) => value.split('|').collect(),
                _ => vec![],
            };
            for v in wanted {
                if !samples.iter().any(|l| l.get(label).is_some_and(|x| x == v)) {
                    problems.push(format!("{} has no series with {label}=\"{v}\"", s.name));
                }
            }
        }
    }
    for g in &uses.grouping {
        if !labels_in_play.contains(g) {
            problems.push(format!("`{g}` is grouped on but no selected series carries it"));
        }
    }
    problems
}

fn gateway_binary() -> String {
    let node = node_binary();
    let dir = Path::new(&node).parent().expect("target dir");
    // cargo decides whether it is stale (the node's sources are the gateway's too).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "switchboard-gateway", "--bin", "switchboard-gateway"]);
    if dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    assert!(build.status().is_ok_and(|s| s.success()), "cannot build switchboard-gateway");
    dir.join("switchboard-gateway").to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_a_rule_or_panel_uses_is_exported_by_a_running_node_or_gateway() {
    if !external_tool("redis-server") {
        return;
    }
    let c = Cluster::start(2, &[]);
    let gateway = Node::start(&gateway_binary(), &["--redis-url", &c.redis.url()]);
    // Traffic across the two nodes, so the relay and transit histograms hold samples and the
    // request counters have a series (a labelled series appears with its first count).
    let mut a = V1Peer::connect(&c.nodes[0].ws_url("/v1/ws")).await;
    let mut b = V1Peer::connect(&c.nodes[1].ws_url("/v1/ws")).await;
    a.join("monitoring").await;
    b.join("monitoring").await;
    a.ws.expect("peer-joined").await;
    a.signal("monitoring", &b.id, json!({"note": "monitoring"})).await;
    let got = b.ws.expect("signal").await;
    assert_eq!(got["from"], a.id.as_str(), "{got}");
    for server in [&gateway, &c.nodes[0]] {
        server.get("/v1/nodes");
    }

    let mut exported = Exported::new();
    for (what, server) in [("n0", &c.nodes[0]), ("n1", &c.nodes[1]), ("gateway", &gateway)] {
        let (status, body) = server.get("/metrics");
        assert_eq!(status, 200, "/metrics of {what}: {body}");
        parse_exposition(&body, &mut exported);
    }
    assert!(exported.keys().any(|k| k == "switchboard_bus_up"), "no bus metrics: {:?}", exported.keys());

    let mut queries: Vec<(String, String)> =
        rules().into_iter().map(|r| (format!("alert {}", r.alert), r.expr)).collect();
    queries.extend(dashboard_queries(&dashboard()));
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &queries {
        used.extend(uses(expr).map(|u| u.selectors.into_iter().map(|s| s.name)).into_iter().flatten());
        problems.extend(missing(expr, &exported).into_iter().map(|p| format!("{place}: {p}")));
    }
    assert!(problems.is_empty(), "rules and panels use what is not exported:\n{}", problems.join("\n"));
    // The check has teeth: it sees what it should reject.
    for wrong in [
        "rate(switchboard_no_such_total[5m])",
        r#"switchboard_errors_total{code="no-such-code"}"#,
        "sum by (pod) (switchboard_ready)",
        "up == 0",
    ] {
        assert!(!missing(wrong, &exported).is_empty(), "{wrong} passed");
    }
    // And what docs/operations.md says to watch is on the dashboard.
    for watched in [
        "switchboard_ready",
        "switchboard_bus_up",
        "switchboard_bus_silent_loss_total",
        "switchboard_relay_latency_seconds_bucket",
        "switchboard_bus_transit_seconds_bucket",
        "switchboard_sessions_resumed_total",
        "switchboard_bus_link_gaps_total",
        "switchboard_membership_repairs_total",
    ] {
        assert!(used.contains(watched), "nothing shows {watched}");
    }
}

/// The prod overlay with the component added, as an operator would, built in a scratch
/// directory (kustomize takes only relative paths).
fn render_prod_with_monitoring() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo root");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-monitoring");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let dir = dir.canonicalize().expect("scratch dir");
    let up = "../".repeat(dir.components().count() - 1);
    let rel = |p: &str| format!("{up}{}/{p}", root.strip_prefix("/").expect("absolute root").display());
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: switchboard\n\
         resources:\n  - {}\ncomponents:\n  - {}\n",
        rel("k8s/overlays/prod"),
        rel("k8s/components/monitoring"),
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("write kustomization");
    let mut cmd = Command::new("kubectl");
    cmd.arg("kustomize").arg(&dir);
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(60));
    assert!(ok, "kustomize of prod + monitoring failed: {err}");
    out
}

#[test]
fn the_component_builds_onto_the_prod_overlay() {
    if !external_tool_probed("kubectl", &["version", "--client"]) {
        return;
    }
    let rendered = render_prod_with_monitoring();
    let docs: Vec<&str> = rendered.split("\n---\n").collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("\n  name: {name}\n")))
            .unwrap_or_else(|| panic!("no {kind} {name} in the build"))
    };
    for (kind, name) in [("PrometheusRule", "switchboard"), ("ServiceMonitor", "switchboard")] {
        assert!(find(kind, name).contains("namespace: switchboard"), "{kind} outside the overlay's namespace");
    }
    let dashboard = find("ConfigMap", "switchboard-dashboard");
    assert!(dashboard.contains("grafana_dashboard: \"1\""), "the sidecar would not find:\n{dashboard}");
    assert!(dashboard.contains("switchboard.json: |"), "no dashboard file in:\n{dashboard}");

    // The built-in objects against the strict schemas; kubernetes-validate has no schema for
    // the Prometheus Operator's kinds (their rules are promtool's to judge, above).
    if !external_tool("kubernetes-validate") {
        return;
    }
    let builtin: Vec<&str> =
        docs.iter().copied().filter(|d| !d.contains("apiVersion: monitoring.coreos.com/")).collect();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-monitoring/rendered-builtin.yaml");
    std::fs::write(&path, builtin.join("\n---\n")).expect("write rendered manifests");
    let mut cmd = Command::new("kubernetes-validate");
    cmd.args(["--strict", "--quiet"]).arg(&path);
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(120));
    assert!(ok, "prod + monitoring fails schema validation:\n{out}\n{err}");
}
