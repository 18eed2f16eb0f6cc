//! Delivery soak (issue 12): each fault of `tests/cluster_delivery.rs` repeated, with the
//! counts of every run added up. The scenarios are the test's own (`tests/cluster/faults/`).
//!
//! `cargo bench -p switchboard-tests --bench delivery_soak [-- RUNS] [-- FAULT...]`: RUNS per
//! fault (default `SOAK_RUNS` or 10); FAULTs select faults by name prefix (`subscriber-cut`,
//! `node-pause`, `partition`, `redis-restart`, `redis-freeze`), all by default.
//!
//! Each run prints its report as it goes (see `faults::run`); at the end, one line per fault:
//! sent, delivered, answered `undeliverable` (and with other errors), silent (neither),
//! duplicates, both, out of order, convergence time (worst / median), the silent-loss metric,
//! and how many runs failed a check.

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::time::Duration;

use cluster::faults::{self, Counts, Fault};

struct Tally {
    fault: Fault,
    runs: usize,
    failed: usize,
    panicked: usize,
    counts: Counts,
    convergence: Vec<Duration>,
    never_converged: usize,
    silent_loss: f64,
    silent_loss_missing: usize,
    took: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let runs = args
        .iter()
        .find_map(|a| a.parse().ok())
        .or_else(|| std::env::var("SOAK_RUNS").ok()?.parse().ok())
        .unwrap_or(10usize);
    let wanted: Vec<&String> = args.iter().filter(|a| a.parse::<usize>().is_err()).collect();
    let chosen: Vec<Fault> = Fault::all()
        .into_iter()
        .filter(|f| wanted.is_empty() || wanted.iter().any(|w| f.name().starts_with(w.as_str())))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "delivery soak: {runs} run(s) of each of {:?} ({cores} cores)",
        chosen.iter().map(Fault::name).collect::<Vec<_>>()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    let mut tallies = Vec::new();
    for fault in chosen {
        let mut t = Tally {
            fault,
            runs,
            failed: 0,
            panicked: 0,
            counts: Counts::default(),
            convergence: Vec::new(),
            never_converged: 0,
            silent_loss: 0.0,
            silent_loss_missing: 0,
            took: Duration::ZERO,
        };
        for i in 0..runs {
            println!("---- {} run {}/{runs}", fault.name(), i + 1);
            // A run that panics (a node that never starts, say) counts, and the soak goes on.
            match rt.block_on(async move { tokio::spawn(faults::run(fault)).await }) {
                Ok(o) => {
                    t.counts.add(o.counts);
                    match o.convergence {
                        Some(c) => t.convergence.push(c),
                        None => t.never_converged += 1,
                    }
                    match o.silent_loss {
                        Some(s) => t.silent_loss += s,
                        None => t.silent_loss_missing += 1,
                    }
                    t.took += o.took;
                    if !o.problems.is_empty() {
                        t.failed += 1;
                        println!("{} problem(s):\n  {}", o.problems.len(), o.problems.join("\n  "));
                    }
                }
                Err(e) => {
                    t.panicked += 1;
                    println!("run panicked: {e}");
                }
            }
        }
        tallies.push(t);
    }
    println!();
    println!(
        "| fault | runs | sent | delivered | undeliverable | other errors | silent | duplicates | both | out of order | \
         convergence max / p50 | silent_loss metric | failed runs | s/run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for mut t in tallies {
        t.convergence.sort_unstable();
        let ms = |d: Option<&Duration>| d.map_or("-".into(), |d| format!("{} ms", d.as_millis()));
        let never = if t.never_converged > 0 { format!(" ({} never)", t.never_converged) } else { String::new() };
        let silent_loss = match t.silent_loss_missing {
            0 => t.silent_loss.to_string(),
            n if n == t.runs - t.panicked => "not exported".into(),
            n => format!("{} (not exported in {n} runs)", t.silent_loss),
        };
        let panicked = if t.panicked > 0 { format!(" + {} panicked", t.panicked) } else { String::new() };
        let done = (t.runs - t.panicked).max(1) as f64;
        let c = t.counts;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {}{never} | {silent_loss} | {}{panicked} | {:.1} |",
            t.fault.name(),
            t.runs,
            c.sent,
            c.delivered,
            c.undeliverable,
            c.other_errors,
            c.silent,
            c.duplicates,
            c.both,
            c.out_of_order,
            ms(t.convergence.last()),
            ms(t.convergence.get(t.convergence.len() / 2)),
            t.failed,
            t.took.as_secs_f64() / done,
        );
    }
}
