//! What a run found: the fate of every id of its flows, added up, and the one-line summary the
//! soak adds up across runs.

use std::time::Duration;

use super::Fault;
use crate::cluster::flow::Flow;

/// What happened to the ids of one flow (or of several, added up).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub sent: usize,
    /// Distinct ids delivered.
    pub delivered: usize,
    pub undeliverable: usize,
    /// Answered with another error (`unknown-peer` while the partner was gone, say).
    pub other_errors: usize,
    /// Neither delivered nor answered.
    pub silent: usize,
    /// Extra deliveries of an id, and extra answers.
    pub duplicates: usize,
    /// Delivered and answered.
    pub both: usize,
    /// Deliveries of an id lower than the one before.
    pub out_of_order: usize,
}

impl Counts {
    pub fn of(f: &Flow) -> Counts {
        let delivered = f.delivered_set();
        let both = delivered.iter().filter(|s| f.undeliverable.contains_key(s) || f.refused.contains_key(s)).count();
        Counts {
            sent: f.sent.len(),
            delivered: delivered.len(),
            undeliverable: f.undeliverable.len(),
            other_errors: f.refused.len(),
            silent: f.missing().len(),
            duplicates: f.delivered.len() - delivered.len() + f.duplicate_errors.len(),
            both,
            out_of_order: f.delivered.windows(2).filter(|w| w[1].0 < w[0].0).count(),
        }
    }

    pub fn add(&mut self, o: Counts) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.undeliverable += o.undeliverable;
        self.other_errors += o.other_errors;
        self.silent += o.silent;
        self.duplicates += o.duplicates;
        self.both += o.both;
        self.out_of_order += o.out_of_order;
    }
}

/// What one run found.
pub struct Outcome {
    pub fault: Fault,
    /// All flows added up.
    pub counts: Counts,
    /// From `heal` to the last change of any view (0 if none changed after it); `None` if the
    /// views never came right.
    pub convergence: Option<Duration>,
    /// `switchboard_bus_silent_loss_total` added over the nodes; `None` if a node lacks it.
    pub silent_loss: Option<f64>,
    pub problems: Vec<String>,
    pub took: Duration,
}

impl Outcome {
    /// The run's last line: its counts, convergence, the silent-loss metric and problems.
    pub fn print(&self) {
        let c = self.counts;
        println!(
            "{}: sent {}, delivered {}, undeliverable {}, other errors {}, silent {}, duplicates {}, both {}, out of order \
             {}, convergence {}, silent_loss metric {}, {} problem(s), {:.1} s",
            self.fault.name(),
            c.sent,
            c.delivered,
            c.undeliverable,
            c.other_errors,
            c.silent,
            c.duplicates,
            c.both,
            c.out_of_order,
            self.convergence.map_or("never".into(), |d| format!("{} ms", d.as_millis())),
            self.silent_loss.map_or("-".into(), |s| s.to_string()),
            self.problems.len(),
            self.took.as_secs_f64()
        );
    }
}
