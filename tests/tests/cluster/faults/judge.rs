//! The verdict: once the fault has healed and the recovery window has passed, the streams stop,
//! fresh joiners join, and the checks of the module's notes run on what every member recorded.
//! The report is printed as it goes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::member::{Member, Record, Seen};
use super::metrics::{SUBSCRIPTION_CUTS, check_silent_loss, metrics};
use super::scenario::Run;
use super::{ANSWER_WITHIN, Counts, Fault, Outcome, SETTLE, TAIL, WINDOW};
use crate::cluster::LEASE_MS;
use crate::cluster::flow::{Flow, ranges, secs};

impl Run {
    /// Stops the streams [`WINDOW`] after the [`SETTLE`] bound, lets a fresh joiner join every
    /// room on every node, reads for [`TAIL`], and judges.
    pub(super) async fn judge(mut self, started: Instant) -> Outcome {
        tokio::time::sleep_until((self.t0 + self.heal + SETTLE + WINDOW).into()).await;
        for f in &self.flows {
            self.member(f.from).listen();
        }
        let stopped = self.now();
        self.mark("streams stop; fresh joiners join every room on every node");
        let rooms: BTreeSet<String> = self.members.iter().map(|m| m.room.clone()).collect();
        for room in &rooms {
            // The bulk rooms' fresh joiner is on the node they have no member on.
            let nodes = if room.starts_with("bulk-") { 0..1 } else { 0..self.c.nodes.len() };
            for n in nodes {
                let name = format!("new-{room}@n{n}");
                match Member::start(&name, n, &self.c.nodes[n], room, self.t0).await {
                    Ok(m) => self.members.push(m),
                    Err(e) => self.problems.push(e),
                }
            }
        }
        tokio::time::sleep(TAIL).await;
        // Before the members finish: finishing hands their records over.
        let wrong_views = self.wrong_views();
        for m in &self.members {
            m.finish();
        }
        let mut records = BTreeMap::new();
        for m in &mut self.members {
            records.insert(m.name.clone(), m.finished().await);
        }
        let mut problems = std::mem::take(&mut self.problems);
        let counts = self.check_flows(&records, stopped, &mut problems);
        let fresh: BTreeSet<String> =
            self.members.iter().filter(|m| m.name.starts_with("new-")).map(|m| m.id.clone()).collect();
        let convergence = self.check_views(&records, &fresh, &wrong_views, &mut problems);
        let silent_loss = check_silent_loss(&self.c.nodes, &mut problems);
        self.check_fault_happened(&records, &fresh, &mut problems);
        for e in &self.evidence {
            println!("evidence: {e}");
        }
        let took = started.elapsed();
        let outcome = Outcome { fault: self.fault, counts, convergence, silent_loss, problems, took };
        outcome.print();
        outcome
    }

    /// Checks 1-3 of the module's notes on every flow, printing each; returns their counts.
    fn check_flows(&self, records: &BTreeMap<String, Record>, stopped: Duration, problems: &mut Vec<String>) -> Counts {
        let mut counts = Counts::default();
        for spec in &self.flows {
            let mut f = Flow::new(spec.name, &records[spec.from].log, &records[spec.to].log);
            // Printed per member below, with names.
            f.membership.clear();
            f.report();
            counts.add(Counts::of(&f));
            f.check_accounted(problems);
            f.check_not_both(problems);
            let d = f.delivered_set();
            let mut refused: Vec<String> =
                f.refused.iter().filter(|(s, _)| d.contains(s)).map(|(s, (code, _))| format!("{s}:{code}")).collect();
            if !refused.is_empty() {
                refused.sort();
                problems.push(format!("{}: delivered although answered with an error: {refused:?}", f.name));
            }
            let sender_node = self.member(spec.from).node;
            self.check_answer_times(&f, sender_node, problems);
            if spec.streams {
                let n = f.check_delivered_between(self.heal + SETTLE, stopped, problems);
                if n < 50 {
                    problems.push(format!("{}: only {n} signals sent in the recovery window", f.name));
                }
            }
        }
        counts
    }

    /// Check 7: what shows the fault happened, beyond what was noted while causing it.
    fn check_fault_happened(
        &mut self,
        records: &BTreeMap<String, Record>,
        fresh: &BTreeSet<String>,
        problems: &mut Vec<String>,
    ) {
        let lost_n1 = |m: &str| {
            let rec = &records[m];
            let room = &self.member(m).room;
            self.members
                .iter()
                .filter(|o| &o.room == room && o.node == 1 && !fresh.contains(&o.id))
                .filter(|o| {
                    !rec.seen
                        .iter()
                        .any(|(_, s)| matches!(s, Seen::PeerLeft(p, why) if *p == o.id && why == "node-lost"))
                })
                .map(|o| o.name.clone())
                .collect::<Vec<_>>()
        };
        match self.fault {
            Fault::SubscriberCut => {
                let cuts: Vec<Option<f64>> = self.c.nodes.iter().map(|n| metrics(n, &[SUBSCRIPTION_CUTS])[0]).collect();
                if !cuts.iter().any(|c| c.is_some_and(|c| c > 0.0)) {
                    problems.push(format!("no node counted a subscription cut ({SUBSCRIPTION_CUTS}: {cuts:?})"));
                }
            }
            Fault::NodePause(d) if d > Duration::from_millis(LEASE_MS) => {
                for m in ["x0", "m0a", "m0b", "m0c"] {
                    let missed = lost_n1(m);
                    if !missed.is_empty() {
                        problems.push(format!(
                            "{m} (n0) never saw {missed:?} leave with node-lost: n1's lease did not lapse?"
                        ));
                    }
                }
            }
            Fault::Partition(_) => {
                for m in ["x0", "m0b"] {
                    let missed = lost_n1(m);
                    if !missed.is_empty() {
                        problems.push(format!(
                            "{m} (n0) never saw {missed:?} leave with node-lost: n1's lease did not lapse?"
                        ));
                    }
                }
                for gone in ["m0a", "m0c"] {
                    let id = self.member(gone).id.clone();
                    for m in ["m1a", "m1b"] {
                        let saw = records[m].seen.iter().find(|(_, s)| matches!(s, Seen::PeerLeft(p, _) if *p == id));
                        match saw {
                            Some((at, _)) => self.evidence.push(format!("{m} (n1) saw {gone} leave at {}", secs(*at))),
                            None => problems.push(format!("{m} (n1) never saw {gone} leave: a ghost")),
                        }
                    }
                }
            }
            Fault::SentinelFailover { .. } | Fault::ClusterFailover => {
                // Nobody left: no member may have seen a peer leave (a fresh joiner is not
                // closed either).
                for m in &self.members {
                    for (at, s) in &records[&m.name].seen {
                        if let Seen::PeerLeft(p, why) = s {
                            problems.push(format!("{} saw {p} leave ({why}) at {}: no peer left", m.name, secs(*at)));
                        }
                    }
                }
                let failovers: Vec<Option<f64>> =
                    self.c.nodes.iter().map(|n| metrics(n, &["switchboard_bus_failovers_total"])[0]).collect();
                self.evidence.push(format!("switchboard_bus_failovers_total per node: {failovers:?}"));
            }
            _ => {}
        }
    }

    /// Every answer within [`ANSWER_WITHIN`] of its send, or of its sender's node resuming (or
    /// reaching Redis again).
    fn check_answer_times(&self, f: &Flow, sender_node: usize, problems: &mut Vec<String>) {
        let answers =
            f.undeliverable.iter().map(|(&id, &at)| (id, at)).chain(f.refused.iter().map(|(&id, (_, at))| (id, *at)));
        let mut slow: Vec<(u64, Duration)> = answers
            .filter_map(|(id, at)| {
                let sent = *f.sent.get(id as usize)?;
                let from = self
                    .paused
                    .iter()
                    .filter(|p| p.0 == sender_node && (p.1..p.2).contains(&sent))
                    .map(|p| p.2)
                    .max()
                    .unwrap_or(sent);
                let took = at.saturating_sub(from);
                (took > ANSWER_WITHIN).then_some((id, took))
            })
            .collect();
        slow.sort_unstable();
        if let Some(worst) = slow.iter().max_by_key(|s| s.1) {
            let ids: Vec<u64> = slow.iter().map(|s| s.0).collect();
            problems.push(format!(
                "{}: {} answered later than {} ms after the send ({}); slowest seq {} after {} ms",
                f.name,
                slow.len(),
                ANSWER_WITHIN.as_millis(),
                ranges(&ids),
                worst.0,
                worst.1.as_millis()
            ));
        }
    }
}
