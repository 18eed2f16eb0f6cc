//! The fault scenarios of issue 12 (cross-node delivery you can prove), shared by
//! `tests/cluster_delivery.rs` (each fault once) and `benches/delivery_soak.rs` (each fault many
//! times).
//!
//! Each run starts its own `redis-server` and node processes (`--node-lease-ms` 1500) and puts
//! members in rooms across them:
//!
//! - `same-node`: s0 and s1 on n0 stream numbered signals at each other (flows `S`);
//! - `cross-node`: x0 on n0 and x1 on n1 stream at each other (flows `X`);
//! - `mesh`: m0a, m0b, m0c on n0 and m1a, m1b on n1 only listen: witnesses of membership;
//! - for the subscriber cut, `flood-a` and `flood-b`, whose senders (f0 on n0, g2 on n2) push
//!   60 KB signals at receivers on n1 (flows `F`, `G`).
//!
//! A streamed signal is `{"seq": n}` with `id` n (plus a `pad` string in a flood). Every member
//! reads and records every frame from its join to the end. After the fault ([`Fault`]) heals
//! (at `heal`: when the node can reach Redis again), the streams go on for [`SETTLE`] +
//! [`WINDOW`], then a fresh joiner joins every room on every node, and after [`TAIL`] more the
//! run judges:
//!
//! 1. every id of every flow: delivered once and in order, or answered with an error carrying
//!    its id; never both, never neither (silent), nothing unknown ([`Flow::check_accounted`],
//!    [`Flow::check_not_both`], and delivered-and-refused);
//! 2. every answer came within [`ANSWER_WITHIN`] of its send (of its sender's node resuming,
//!    for what it was sent while that node was stopped);
//! 3. the cluster works again: every streamed signal sent in `[heal + SETTLE, stop)` arrived;
//! 4. membership converged: every member's view of its room (the peers of its `joined`, plus
//!    `peer-joined`, minus `peer-left`) plus itself is exactly the room's members whose socket
//!    is open, fresh joiners included (so it equals what a fresh joiner's `joined` lists, plus
//!    that joiner); no view changed later than [`SETTLE`] after `heal` (besides the fresh
//!    joiners' arrival);
//! 5. frames agree with the view they arrive in: no `peer-joined` of a known peer, no
//!    `peer-left` of an unknown one, no signal from a peer not in the view;
//! 6. `switchboard_bus_silent_loss_total` is present and 0 on every node;
//! 7. evidence that the fault happened (per fault, see [`Fault`]).
//!
//! Runs are serialized ([`SERIAL`]): two at once on a small machine starve each other's nodes,
//! which is a fault of its own.
//!
//! Here: the time bounds and [`run`], which drives one run through its steps; the faults
//! themselves in `fault.rs`; the cluster, members and flows of a run in `scenario.rs`; the
//! recording members in `member.rs`; how each fault is caused in `cause.rs`; the verdict in
//! `judge.rs`, with the views (checks 4-5) in `view.rs` and the metrics (6) in `metrics.rs`; what
//! a run found in `counts.rs`.
//!
//! [`Flow::check_accounted`]: super::flow::Flow::check_accounted
//! [`Flow::check_not_both`]: super::flow::Flow::check_not_both

#![allow(dead_code)]

mod cause;
mod counts;
mod fault;
mod judge;
mod member;
mod metrics;
mod scenario;
mod view;

use std::time::{Duration, Instant};

pub use counts::{Counts, Outcome};
pub use fault::{BULK_ROOMS, FLOOD_EVERY, FLOOD_FOR, FLOOD_PAD, Fault, PUBSUB_LIMIT};

use self::scenario::{Run, STREAMS};
use crate::cluster::flow::SEND_EVERY;

/// The convergence bound: after `heal`, every view is right within this long.
pub const SETTLE: Duration = Duration::from_secs(5);
/// After [`SETTLE`], streams go on this long; all they send must arrive.
pub const WINDOW: Duration = Duration::from_secs(1);
/// After the streams stop (and fresh joiners join), members read this long before the count.
pub const TAIL: Duration = Duration::from_millis(2500);
/// Streams run this long before the fault.
pub const WARMUP: Duration = Duration::from_millis(500);
/// The latest an answer may come: relay deadline 1 s + 0.5 s clock margin + probe slack (the
/// node's promise: ~3 s), plus 0.5 s for a loaded two-core test machine.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(3500);

/// One run at a time (see the module's notes).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `fault` once, prints its report, and returns what it found.
pub async fn run(fault: Fault) -> Outcome {
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    println!("==== {} ====", fault.name());
    let mut r = Run::start(fault).await;
    for f in STREAMS {
        r.stream(f.from, f.to, SEND_EVERY, 0);
    }
    r.mark("streams start");
    tokio::time::sleep(WARMUP).await;
    match fault {
        Fault::SubscriberCut => r.subscriber_cut().await,
        Fault::NodePause(d) => r.node_pause(d).await,
        Fault::Partition(d) => r.partition(d).await,
        Fault::RedisRestart(n) => r.redis_restart(n).await,
        Fault::RedisFreeze(d) => r.redis_freeze(d).await,
        Fault::SentinelFailover { kill } => r.sentinel_failover(kill).await,
        Fault::ClusterFailover => r.cluster_failover().await,
    }
    r.judge(started).await
}
