//! The bus metrics of the nodes: scraped from `/metrics`, printed for every run, and check 6 of
//! the module's notes (no silent loss anywhere).

use switchboard_tests::Node;

/// The metrics every run prints for every node (`-` when a node does not export one).
pub const BUS_METRICS: &[&str] = &[
    "switchboard_bus_silent_loss_total",
    "switchboard_bus_link_gaps_total",
    "switchboard_bus_link_retransmits_total",
    "switchboard_bus_link_duplicates_total",
    "switchboard_bus_answered_total",
    "switchboard_bus_subscription_cuts_total",
    "switchboard_bus_expired_total",
    "switchboard_bus_nodes_lost_total",
    "switchboard_bus_reconnects_total",
];
pub const SILENT_LOSS: &str = "switchboard_bus_silent_loss_total";
pub const SUBSCRIPTION_CUTS: &str = "switchboard_bus_subscription_cuts_total";

/// The samples of `names` in a node's `/metrics`, each added over its label sets (`None`: not
/// exported).
pub fn metrics(node: &Node, names: &[&str]) -> Vec<Option<f64>> {
    let (status, body) = node.get("/metrics");
    names
        .iter()
        .map(|name| {
            if status != 200 {
                return None;
            }
            body.lines()
                .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .reduce(|a, b| a + b)
        })
        .collect()
}

/// Prints [`BUS_METRICS`] for each node and checks [`SILENT_LOSS`] is exported and 0 on every
/// one; returns it added over the nodes (`None` if a node lacks it).
pub(super) fn check_silent_loss(nodes: &[Node], problems: &mut Vec<String>) -> Option<f64> {
    let mut silent_loss = Some(0.0);
    for (i, node) in nodes.iter().enumerate() {
        let values = metrics(node, BUS_METRICS);
        let shown: Vec<String> = BUS_METRICS
            .iter()
            .zip(&values)
            .map(|(name, v)| {
                let short = name.trim_start_matches("switchboard_bus_").trim_end_matches("_total");
                format!("{short}={}", v.map_or("-".into(), |v| v.to_string()))
            })
            .collect();
        println!("metrics n{i}: {}", shown.join(" "));
        // BUS_METRICS starts with SILENT_LOSS.
        match values[0] {
            None => {
                silent_loss = None;
                problems.push(format!("n{i}: no {SILENT_LOSS} in /metrics"));
            }
            Some(v) => {
                silent_loss = silent_loss.map(|s| s + v);
                if v != 0.0 {
                    problems.push(format!("n{i}: {SILENT_LOSS} = {v}"));
                }
            }
        }
    }
    silent_loss
}
