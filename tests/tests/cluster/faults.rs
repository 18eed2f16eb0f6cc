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

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_tests::{Frame, Node, Proxy, RedisServer, STEP_TIMEOUT, V1Peer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Cluster;
use super::flow::{Flow, PeerLog, SEND_EVERY, UNLIMITED, ranges, record, secs};
use super::members::signal_process;

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
/// A finishing member stops reading after this long without a frame.
const FINISH_QUIET: Duration = Duration::from_millis(300);
/// A flood: one signal of [`FLOOD_PAD`] bytes every [`FLOOD_EVERY`] per sender, for [`FLOOD_FOR`].
pub const FLOOD_PAD: usize = 60_000;
pub const FLOOD_EVERY: Duration = Duration::from_millis(2);
pub const FLOOD_FOR: Duration = Duration::from_secs(2);
/// Redis's limit for pub/sub clients in the subscriber-cut run: cut at 64 KB queued, or at
/// 32 KB queued for 1 s.
pub const PUBSUB_LIMIT: &str = "pubsub 64kb 32kb 1";

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

/// One run at a time (see the module's notes).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Redis cuts a subscriber: `client-output-buffer-limit` [`PUBSUB_LIMIT`] (set with
    /// `CONFIG SET`) and a [`FLOOD_FOR`] flood of 60 KB signals from n0 and n2 to n1 while the
    /// streams run. Three nodes: two publishers feed n1's subscriber in the same Redis event
    /// loop turn. Evidence: new pub/sub connections at Redis during the flood (`CLIENT LIST
    /// TYPE pubsub`, sampled), and `switchboard_bus_subscription_cuts_total` > 0 on some node.
    /// `heal` is the end of the flood.
    SubscriberCut,
    /// n1 gets SIGSTOP, and SIGCONT this long later (`heal`). Longer than the lease: n0's
    /// members must see n1's members leave (`peer-left` `node-lost`), and come back.
    NodePause(Duration),
    /// n1 reaches Redis through a [`Proxy`], which stalls (no FIN, no RST) for this long, then
    /// heals (`heal`). Two members of n0 leave the mesh (close their socket) meanwhile: m0a 1 s
    /// into the stall, while n0 still counts n1 in (its `peer-left` goes toward n1 and waits in
    /// the stalled path), and m0c once n0 has declared n1 lost (nothing goes toward n1). m1a and
    /// m1b (on n1) must see both leave after the heal (no ghost); n0's members must see n1's
    /// members leave (`node-lost`).
    Partition(Duration),
    /// Redis SIGKILLed and restarted empty this many times while the streams run (down 0.3 s,
    /// 1 s, 2 s in turn); `heal` is the last restart. Every member must be written back: the
    /// views are checked [`SETTLE`] after each restart (the next kill follows at once), and
    /// after the last as after any fault.
    RedisRestart(usize),
    /// Redis gets SIGSTOP, and SIGCONT this long later (`heal`).
    RedisFreeze(Duration),
}

impl Fault {
    /// The faults of issue 12, as the test file and the soak run them.
    pub fn all() -> Vec<Fault> {
        vec![
            Fault::SubscriberCut,
            Fault::NodePause(Duration::from_millis(1000)),
            Fault::NodePause(Duration::from_millis(3000)),
            Fault::Partition(Duration::from_secs(10)),
            Fault::RedisRestart(3),
            Fault::RedisFreeze(Duration::from_secs(2)),
        ]
    }

    pub fn name(&self) -> String {
        match self {
            Fault::SubscriberCut => "subscriber-cut".into(),
            Fault::NodePause(d) => format!("node-pause-{}ms", d.as_millis()),
            Fault::Partition(d) => format!("partition-{}ms", d.as_millis()),
            Fault::RedisRestart(n) => format!("redis-restart-x{n}"),
            Fault::RedisFreeze(d) => format!("redis-freeze-{}ms", d.as_millis()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Members: a client that records everything, and streams when told to
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Ctl {
    /// Read and record; send nothing.
    Listen,
    /// Also send a numbered signal to `to` every `every`, with a `pad` of that many bytes.
    Stream { to: String, every: Duration, pad: usize },
    /// Close the socket (a peer that goes away).
    Close,
    /// Read until [`FINISH_QUIET`], then stop recording (the socket stays open).
    Finish,
}

/// A frame that bears on the member's view of its room, in arrival order.
#[derive(Clone, Debug)]
pub enum Seen {
    PeerJoined(String),
    /// Peer, reason.
    PeerLeft(String, String),
    /// A relayed signal from this peer.
    SignalFrom(String),
}

/// Everything a member saw. Times are since the run's start.
#[derive(Default)]
pub struct Record {
    /// Its numbered signals and everything that came back, as the flows count them.
    pub log: PeerLog,
    /// The peers its `joined` listed.
    pub listed: Vec<String>,
    pub seen: Vec<(Duration, Seen)>,
    /// When the run closed its socket.
    pub closed: Option<Duration>,
    /// When its socket ended without the run asking.
    pub ended: Option<Duration>,
}

/// A member's view of its room, replayed from its frames.
#[derive(Default)]
pub struct Replay {
    pub view: BTreeSet<String>,
    /// `(when, peer)` of every change.
    pub changes: Vec<(Duration, String)>,
    /// Frames that contradict the view they arrived in.
    pub contradictions: Vec<String>,
}

impl Record {
    /// `names` maps peer ids to member names, for the messages.
    pub fn replay(&self, names: &BTreeMap<String, String>) -> Replay {
        let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
        let mut r = Replay { view: self.listed.iter().cloned().collect(), ..Replay::default() };
        let mut strangers: Vec<(Duration, String)> = Vec::new();
        for (at, seen) in &self.seen {
            match seen {
                Seen::PeerJoined(p) => {
                    if !r.view.insert(p.clone()) {
                        r.contradictions.push(format!("{} peer-joined {}, already in the view", secs(*at), name(p)));
                    }
                    r.changes.push((*at, p.clone()));
                }
                Seen::PeerLeft(p, why) => {
                    if !r.view.remove(p) {
                        r.contradictions.push(format!("{} peer-left {} ({why}), not in the view", secs(*at), name(p)));
                    }
                    r.changes.push((*at, p.clone()));
                }
                Seen::SignalFrom(p) if !r.view.contains(p) => strangers.push((*at, name(p))),
                Seen::SignalFrom(_) => {}
            }
        }
        if let (Some(first), Some(last)) = (strangers.first(), strangers.last()) {
            r.contradictions.push(format!(
                "{} signal(s) from a peer not in the view, {} from {} .. {} from {}",
                strangers.len(),
                secs(first.0),
                first.1,
                secs(last.0),
                last.1
            ));
        }
        r
    }

    /// `joined` and the membership frames, compactly: `joined [..], 2.209s -x1(node-lost), ...`.
    pub fn membership(&self, names: &BTreeMap<String, String>) -> String {
        let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
        let listed: Vec<String> = self.listed.iter().map(name).collect();
        let mut out = format!("joined [{}]", listed.join(" "));
        for (at, seen) in &self.seen {
            match seen {
                Seen::PeerJoined(p) => out.push_str(&format!(", {} +{}", secs(*at), name(p))),
                Seen::PeerLeft(p, why) => out.push_str(&format!(", {} -{}({why})", secs(*at), name(p))),
                Seen::SignalFrom(_) => {}
            }
        }
        out
    }
}

pub struct Member {
    pub name: String,
    pub id: String,
    pub room: String,
    pub node: usize,
    ctl: watch::Sender<Ctl>,
    record: Arc<Mutex<Record>>,
    /// Hands the client back when it ends, so that its socket stays open until the run ends.
    task: JoinHandle<Option<V1Peer>>,
    peer: Option<V1Peer>,
}

impl Member {
    /// Connects to `node` (number `n`), joins `room`, and records from then on.
    pub async fn start(name: &str, n: usize, node: &Node, room: &str, t0: Instant) -> Result<Member, String> {
        let mut peer = V1Peer::connect(&node.ws_url("/v1/ws")).await;
        peer.ws.send_json(json!({"type": "join", "room": room, "id": "join"})).await;
        let listed = match peer.ws.next_within(STEP_TIMEOUT).await {
            Some(Frame::Json(v)) if v["type"] == "joined" => v["peers"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["peer_id"].as_str().map(String::from)).collect())
                .unwrap_or_default(),
            other => return Err(format!("{name} could not join {room} on n{n}: {other:?}")),
        };
        let record = Arc::new(Mutex::new(Record { listed, ..Record::default() }));
        let (ctl, rx) = watch::channel(Ctl::Listen);
        let id = peer.id.clone();
        let task = tokio::spawn(run_member(peer, room.to_string(), rx, Arc::clone(&record), t0));
        Ok(Member { name: name.into(), id, room: room.into(), node: n, ctl, record, task, peer: None })
    }

    pub fn stream(&self, to: &str, every: Duration, pad: usize) {
        self.ctl.send_replace(Ctl::Stream { to: to.into(), every, pad });
    }

    pub fn listen(&self) {
        self.ctl.send_replace(Ctl::Listen);
    }

    pub fn close(&self) {
        self.ctl.send_replace(Ctl::Close);
    }

    pub fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().expect("member record")
    }

    /// Tells it to read until quiet and stop recording (the socket stays open).
    pub fn finish(&self) {
        self.ctl.send_replace(Ctl::Finish);
    }

    /// After [`finish`](Self::finish): waits until it stopped, and hands back everything it saw.
    pub async fn finished(&mut self) -> Record {
        self.ctl.send_replace(Ctl::Finish);
        self.peer = (&mut self.task).await.ok().flatten();
        std::mem::take(&mut *self.record())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records one frame; false once the socket is gone.
fn note(rec: &Mutex<Record>, frame: Frame, t0: Instant) -> bool {
    let at = t0.elapsed();
    let seen = match &frame {
        Frame::Json(v) => {
            let peer = |p: &serde_json::Value| p.as_str().map(String::from);
            match v["type"].as_str() {
                Some("peer-joined") => peer(&v["peer"]["peer_id"]).map(Seen::PeerJoined),
                Some("peer-left") => {
                    peer(&v["peer_id"]).map(|p| Seen::PeerLeft(p, v["reason"].as_str().unwrap_or("?").into()))
                }
                Some("signal") => peer(&v["from"]).map(Seen::SignalFrom),
                _ => None,
            }
        }
        _ => None,
    };
    let mut r = rec.lock().expect("member record");
    if let Some(s) = seen {
        r.seen.push((at, s));
    }
    let open = record(&mut r.log, frame, t0);
    if !open {
        r.ended = Some(at);
    }
    open
}

/// The next frame; never, once the socket is gone.
async fn next_frame(peer: &mut V1Peer, open: bool) -> Frame {
    if !open {
        return std::future::pending().await;
    }
    peer.ws.next_within(Duration::from_secs(3600)).await.unwrap_or(Frame::Ended)
}

async fn run_member(
    mut peer: V1Peer,
    room: String,
    mut ctl: watch::Receiver<Ctl>,
    rec: Arc<Mutex<Record>>,
    t0: Instant,
) -> Option<V1Peer> {
    let mut open = true;
    loop {
        let now = ctl.borrow_and_update().clone();
        match now {
            Ctl::Close => {
                rec.lock().expect("member record").closed = Some(t0.elapsed());
                peer.ws.close().await;
                return None;
            }
            Ctl::Finish => {
                while open {
                    match peer.ws.next_within(FINISH_QUIET).await {
                        Some(f) => open = note(&rec, f, t0),
                        None => break,
                    }
                }
                return Some(peer);
            }
            Ctl::Listen => tokio::select! {
                changed = ctl.changed() => if changed.is_err() { return None },
                f = next_frame(&mut peer, open) => open = note(&rec, f, t0),
            },
            Ctl::Stream { to, every, pad } => {
                let pad = "x".repeat(pad);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        changed = ctl.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            break;
                        }
                        _ = tick.tick(), if open => {
                            let seq = {
                                let mut r = rec.lock().expect("member record");
                                r.log.sent.push(t0.elapsed());
                                r.log.sent.len() - 1
                            };
                            let data = if pad.is_empty() { json!({"seq": seq}) } else { json!({"seq": seq, "pad": pad}) };
                            let msg = json!({"type": "signal", "room": room, "to": to, "data": data, "id": seq});
                            if !peer.ws.try_send_json(&msg).await {
                                open = note(&rec, Frame::Ended, t0);
                            }
                        }
                        f = next_frame(&mut peer, open) => open = note(&rec, f, t0),
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counts
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Helpers: metrics, Redis, readiness
// ---------------------------------------------------------------------------------------------

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

/// The ids of Redis's pub/sub connections.
fn pubsub_clients(redis: &RedisServer) -> BTreeSet<String> {
    let list = redis.command(&["CLIENT", "LIST", "TYPE", "pubsub"]).unwrap_or_default();
    list.lines().filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).map(String::from)).collect()
}

fn signal_redis(redis: &RedisServer, sig: i32) {
    let pid = redis.pid().expect("redis-server runs") as i32;
    // SAFETY: kill(2) on the redis-server child this run started.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// `/readyz` of each node as `n0 200, n1 503`.
fn readiness(nodes: &[Node]) -> String {
    let states: Vec<String> = nodes.iter().enumerate().map(|(i, n)| format!("n{i} {}", n.get("/readyz").0)).collect();
    states.join(", ")
}

/// Waits (without blocking the runtime) until every node is ready; how long it took, or `None`.
async fn all_ready(nodes: &[Node], within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if nodes.iter().all(|n| n.get("/readyz").0 == 200) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// A run
// ---------------------------------------------------------------------------------------------

/// A flow of numbered signals: name, sender, receiver, whether it streams until the end (and
/// must deliver everything in the recovery window).
struct FlowSpec {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    streams: bool,
}

const STREAMS: &[FlowSpec] = &[
    FlowSpec { name: "S a→b (n0→n0)", from: "s0", to: "s1", streams: true },
    FlowSpec { name: "S b→a (n0→n0)", from: "s1", to: "s0", streams: true },
    FlowSpec { name: "X a→b (n0→n1)", from: "x0", to: "x1", streams: true },
    FlowSpec { name: "X b→a (n1→n0)", from: "x1", to: "x0", streams: true },
];
const FLOODS: &[FlowSpec] = &[
    FlowSpec { name: "F flood (n0→n1, 60 KB)", from: "f0", to: "f1", streams: false },
    FlowSpec { name: "G flood (n2→n1, 60 KB)", from: "g2", to: "g1", streams: false },
];

struct Run {
    fault: Fault,
    c: Cluster,
    proxy: Option<Proxy>,
    t0: Instant,
    members: Vec<Member>,
    flows: Vec<&'static FlowSpec>,
    /// `(when, what)`.
    marks: Vec<(Duration, String)>,
    /// `(node, from, to)`: when a node was stopped.
    paused: Vec<(usize, Duration, Duration)>,
    heal: Duration,
    /// What shows the fault happened, for the report.
    evidence: Vec<String>,
    problems: Vec<String>,
}

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
    }
    r.judge(started).await
}

impl Run {
    async fn start(fault: Fault) -> Run {
        let mut extra: Vec<&str> = UNLIMITED.to_vec();
        if fault == Fault::SubscriberCut {
            // The flood's receivers cannot always read 60 KB frames as fast as n1 queues them:
            // no slow-consumer cut of the run's own clients.
            extra.extend(["--max-outbound-bytes", "268435456"]);
        }
        let (c, proxy) = match fault {
            Fault::Partition(_) => {
                let mut c = Cluster::start(1, &extra);
                let proxy = Proxy::start(&format!("127.0.0.1:{}", c.redis.port));
                let n1 = c.start_node_with_redis("n1", &proxy.url("redis"));
                c.nodes.push(n1);
                (c, Some(proxy))
            }
            Fault::SubscriberCut => (Cluster::start(3, &extra), None),
            _ => (Cluster::start(2, &extra), None),
        };
        let mut plan = vec![
            ("s0", 0, "same-node"),
            ("s1", 0, "same-node"),
            ("x0", 0, "cross-node"),
            ("x1", 1, "cross-node"),
            ("m0a", 0, "mesh"),
            ("m0b", 0, "mesh"),
            ("m0c", 0, "mesh"),
            ("m1a", 1, "mesh"),
            ("m1b", 1, "mesh"),
        ];
        let mut flows: Vec<&'static FlowSpec> = STREAMS.iter().collect();
        if fault == Fault::SubscriberCut {
            plan.extend([("f0", 0, "flood-a"), ("f1", 1, "flood-a"), ("g2", 2, "flood-b"), ("g1", 1, "flood-b")]);
            flows.extend(FLOODS);
        }
        let t0 = Instant::now();
        let mut members = Vec::new();
        for (name, n, room) in plan {
            members.push(Member::start(name, n, &c.nodes[n], room, t0).await.unwrap_or_else(|e| panic!("{e}")));
        }
        let mut r = Run {
            fault,
            c,
            proxy,
            t0,
            members,
            flows,
            marks: Vec::new(),
            paused: Vec::new(),
            heal: Duration::ZERO,
            evidence: Vec::new(),
            problems: Vec::new(),
        };
        // Everyone knows everyone before anything streams.
        let deadline = Instant::now() + STEP_TIMEOUT;
        while let Some(wrong) = r.wrong_views().first() {
            assert!(Instant::now() < deadline, "{}: the rooms never settled before the fault: {wrong}", fault.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if fault == Fault::SubscriberCut {
            let set = r.c.redis.command(&["CONFIG", "SET", "client-output-buffer-limit", PUBSUB_LIMIT]);
            assert_eq!(set.as_deref(), Some("+OK\r\n"), "CONFIG SET client-output-buffer-limit {PUBSUB_LIMIT}");
            let get = r.c.redis.command(&["CONFIG", "GET", "client-output-buffer-limit"]).unwrap_or_default();
            let now = get.find("pubsub").map_or(get.as_str(), |i| &get[i..]).trim();
            r.evidence.push(format!("Redis client-output-buffer-limit (CONFIG GET): {now}"));
        }
        r
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn mark(&mut self, what: impl Into<String>) {
        let (at, what) = (self.now(), what.into());
        println!("[{} {}] {what}", self.fault.name(), secs(at));
        self.marks.push((at, what));
    }

    fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no member {name}"))
    }

    fn stream(&self, from: &str, to: &str, every: Duration, pad: usize) {
        let to = self.member(to).id.clone();
        self.member(from).stream(&to, every, pad);
    }

    fn names(&self) -> BTreeMap<String, String> {
        self.members.iter().map(|m| (m.id.clone(), m.name.clone())).collect()
    }

    /// The members of each room whose socket is open.
    fn truth(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &self.members {
            let rec = m.record();
            let room = rooms.entry(m.room.clone()).or_default();
            if rec.closed.is_none() && rec.ended.is_none() {
                room.insert(m.id.clone());
            }
        }
        rooms
    }

    /// Each open member whose view plus itself is not its room's open members, explained.
    fn wrong_views(&self) -> Vec<String> {
        let (truth, names) = (self.truth(), self.names());
        let name = |ids: &mut dyn Iterator<Item = &String>| -> String {
            ids.map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone())).collect::<Vec<_>>().join(" ")
        };
        let mut wrong = Vec::new();
        for m in &self.members {
            let Some(room) = truth.get(&m.room).filter(|r| r.contains(&m.id)) else { continue };
            let mut view = m.record().replay(&names).view;
            view.insert(m.id.clone());
            if &view != room {
                wrong.push(format!(
                    "{} (n{}) in {}: missing [{}], ghosts [{}]",
                    m.name,
                    m.node,
                    m.room,
                    name(&mut room.difference(&view)),
                    name(&mut view.difference(room))
                ));
            }
        }
        wrong
    }

    // -- the faults ------------------------------------------------------------------------

    async fn subscriber_cut(&mut self) {
        let before = pubsub_clients(&self.c.redis);
        for f in FLOODS {
            self.stream(f.from, f.to, FLOOD_EVERY, FLOOD_PAD);
        }
        self.mark(format!("flood starts: f0 (n0) → f1 (n1) and g2 (n2) → g1 (n1), {FLOOD_PAD} bytes each"));
        // Every pub/sub connection Redis has had during the flood (sampled): each one beyond the
        // first three is a subscriber that was cut and came back.
        let (start, mut seen) = (Instant::now(), before.clone());
        while start.elapsed() < FLOOD_FOR {
            seen.extend(pubsub_clients(&self.c.redis));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for f in FLOODS {
            self.member(f.from).listen();
        }
        self.heal = self.now();
        self.mark("flood stops (heal)");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = pubsub_clients(&self.c.redis);
        seen.extend(after.iter().cloned());
        let new = seen.len() - before.len();
        self.evidence.push(format!(
            "Redis pub/sub connections (CLIENT LIST TYPE pubsub, ids): before the flood {before:?}, 0.5 s after \
             {after:?}; at least {new} new ones during the flood (subscribers cut and back)"
        ));
        if new == 0 {
            self.problems.push("the flood made Redis cut no subscriber (no new pub/sub connection)".into());
        }
    }

    async fn node_pause(&mut self, d: Duration) {
        signal_process(&self.c.nodes[1], libc::SIGSTOP);
        let from = self.now();
        self.mark(format!("n1 SIGSTOP for {} ms (lease {} ms)", d.as_millis(), super::LEASE_MS));
        tokio::time::sleep(d).await;
        signal_process(&self.c.nodes[1], libc::SIGCONT);
        self.heal = self.now();
        self.paused.push((1, from, self.heal));
        self.mark("n1 SIGCONT (heal)");
    }

    async fn partition(&mut self, d: Duration) {
        let proxy = self.proxy.as_ref().expect("a proxy in front of Redis");
        proxy.stall();
        let held = proxy.connections();
        let from = self.now();
        self.mark(format!("n1's path to Redis stalls for {} ms ({held} connections held open)", d.as_millis()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.member("m0a").close();
        self.mark("m0a (n0) closes its socket: leaves the mesh");
        let (m1a, deadline) = (self.member("m1a").id.clone(), Instant::now() + Duration::from_secs(5));
        let lost = |m: &Member| m.record().seen.iter().any(|(_, s)| matches!(s, Seen::PeerLeft(p, _) if *p == m1a));
        while !lost(self.member("m0b")) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.member("m0c").close();
        self.mark("n0 has dropped n1's members; m0c (n0) closes its socket: leaves the mesh");
        tokio::time::sleep_until((self.t0 + from + d - Duration::from_millis(500)).into()).await;
        let ready = readiness(&self.c.nodes);
        self.evidence.push(format!("/readyz 0.5 s before the heal: {ready}"));
        tokio::time::sleep_until((self.t0 + from + d).into()).await;
        let proxy = self.proxy.as_ref().expect("a proxy in front of Redis");
        proxy.heal();
        self.heal = self.now();
        self.mark(format!("n1's path heals ({} connections)", proxy.connections()));
    }

    async fn redis_restart(&mut self, n: usize) {
        let downs = [300, 1000, 2000].map(Duration::from_millis);
        for (i, down) in downs.iter().cycle().take(n).enumerate() {
            self.c.redis.kill();
            self.mark(format!("redis SIGKILL (down {} ms)", down.as_millis()));
            tokio::time::sleep(*down).await;
            self.c.redis.restart();
            self.heal = self.now();
            self.mark("redis restarted, empty (heal)");
            match all_ready(&self.c.nodes, Duration::from_secs(15)).await {
                Some(took) => self.mark(format!("every node ready again ({} ms)", took.as_millis())),
                None => {
                    self.problems.push(format!("{}: a node was not ready 15 s after Redis came back", secs(self.now())))
                }
            }
            if i + 1 == n {
                break;
            }
            // A member not written back now would be healed by the next restart: look first.
            tokio::time::sleep_until((self.t0 + self.heal + SETTLE).into()).await;
            let wrong = self.wrong_views();
            self.mark(format!("{} wrong view(s) {} ms after the restart", wrong.len(), SETTLE.as_millis()));
            for w in wrong {
                self.problems.push(format!("{} ms after restart {}: view {w}", SETTLE.as_millis(), i + 1));
            }
        }
        let keys = self.c.redis.keys("*");
        let rooms: Vec<&String> = keys.iter().filter(|k| k.contains(":room:")).collect();
        self.evidence.push(format!("keys in Redis after the last restart: {} ({rooms:?})", keys.len()));
    }

    async fn redis_freeze(&mut self, d: Duration) {
        signal_redis(&self.c.redis, libc::SIGSTOP);
        self.mark(format!("redis SIGSTOP for {} ms", d.as_millis()));
        tokio::time::sleep(d.saturating_sub(Duration::from_millis(300))).await;
        let ready = readiness(&self.c.nodes);
        self.evidence.push(format!("/readyz 0.3 s before SIGCONT: {ready}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal_redis(&self.c.redis, libc::SIGCONT);
        self.heal = self.now();
        self.mark("redis SIGCONT (heal)");
    }

    // -- the verdict -----------------------------------------------------------------------

    async fn judge(mut self, started: Instant) -> Outcome {
        tokio::time::sleep_until((self.t0 + self.heal + SETTLE + WINDOW).into()).await;
        for f in &self.flows {
            self.member(f.from).listen();
        }
        let stopped = self.now();
        self.mark("streams stop; fresh joiners join every room on every node");
        let rooms: BTreeSet<String> = self.members.iter().map(|m| m.room.clone()).collect();
        for room in &rooms {
            for n in 0..self.c.nodes.len() {
                let name = format!("new-{room}@n{n}");
                match Member::start(&name, n, &self.c.nodes[n], room, self.t0).await {
                    Ok(m) => self.members.push(m),
                    Err(e) => self.problems.push(e),
                }
            }
        }
        tokio::time::sleep(TAIL).await;
        let wrong_views = self.wrong_views();
        let names = self.names();
        for m in &self.members {
            m.finish();
        }
        let mut records = BTreeMap::new();
        for m in &mut self.members {
            records.insert(m.name.clone(), m.finished().await);
        }
        let fault = self.fault;
        let mut problems = std::mem::take(&mut self.problems);
        let by_name = |n: &str| &records[n];

        // 1-3. Every id of every flow.
        let mut counts = Counts::default();
        for spec in &self.flows {
            let mut f = Flow::new(spec.name, &by_name(spec.from).log, &by_name(spec.to).log);
            // Printed per member below, with names.
            f.membership.clear();
            f.report();
            counts.add(Counts::of(&f));
            f.check_accounted(&mut problems);
            f.check_not_both(&mut problems);
            let d = f.delivered_set();
            let mut refused: Vec<String> =
                f.refused.iter().filter(|(s, _)| d.contains(s)).map(|(s, (code, _))| format!("{s}:{code}")).collect();
            if !refused.is_empty() {
                refused.sort();
                problems.push(format!("{}: delivered although answered with an error: {refused:?}", f.name));
            }
            let sender_node = self.member(spec.from).node;
            self.check_answer_times(&f, sender_node, &mut problems);
            if spec.streams {
                let n = f.check_delivered_between(self.heal + SETTLE, stopped, &mut problems);
                if n < 50 {
                    problems.push(format!("{}: only {n} signals sent in the recovery window", f.name));
                }
            }
        }

        // 4-5. Views.
        let fresh: BTreeSet<String> =
            self.members.iter().filter(|m| m.name.starts_with("new-")).map(|m| m.id.clone()).collect();
        let mut last_change = Duration::ZERO;
        for m in &self.members {
            let rec = by_name(&m.name);
            let replay = rec.replay(&names);
            for c in &replay.contradictions {
                problems.push(format!("{} (n{}) in {}: {c}", m.name, m.node, m.room));
            }
            let last = replay.changes.iter().filter(|(_, p)| !fresh.contains(p)).map(|c| c.0).max();
            if rec.closed.is_none() && !fresh.contains(&m.id) {
                last_change = last_change.max(last.unwrap_or_default().saturating_sub(self.heal));
            }
            if !fresh.contains(&m.id) {
                println!("  {} (n{}) in {}: {}", m.name, m.node, m.room, rec.membership(&names));
            }
        }
        let convergence = wrong_views.is_empty().then_some(last_change);
        match convergence {
            Some(c) => println!(
                "views: every member's view of its room is its open members (= a fresh joiner's view); last change \
                 {} ms after the heal",
                c.as_millis()
            ),
            None => println!("views: {} wrong: {wrong_views:?}", wrong_views.len()),
        }
        problems.extend(wrong_views.iter().map(|w| format!("view {w}")));
        if last_change > SETTLE {
            problems.push(format!(
                "membership converged {} ms after the heal (bound {} ms)",
                last_change.as_millis(),
                SETTLE.as_millis()
            ));
        }

        // 6. Metrics.
        let mut silent_loss = Some(0.0);
        for (i, node) in self.c.nodes.iter().enumerate() {
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

        // 7. The fault happened.
        let lost_n1 = |m: &str| {
            let rec = by_name(m);
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
        match fault {
            Fault::SubscriberCut => {
                let cuts: Vec<Option<f64>> = self.c.nodes.iter().map(|n| metrics(n, &[SUBSCRIPTION_CUTS])[0]).collect();
                if !cuts.iter().any(|c| c.is_some_and(|c| c > 0.0)) {
                    problems.push(format!("no node counted a subscription cut ({SUBSCRIPTION_CUTS}: {cuts:?})"));
                }
            }
            Fault::NodePause(d) if d > Duration::from_millis(super::LEASE_MS) => {
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
                        let saw = by_name(m).seen.iter().find(|(_, s)| matches!(s, Seen::PeerLeft(p, _) if *p == id));
                        match saw {
                            Some((at, _)) => self.evidence.push(format!("{m} (n1) saw {gone} leave at {}", secs(*at))),
                            None => problems.push(format!("{m} (n1) never saw {gone} leave: a ghost")),
                        }
                    }
                }
            }
            _ => {}
        }
        for e in &self.evidence {
            println!("evidence: {e}");
        }
        let took = started.elapsed();
        let c = counts;
        println!(
            "{}: sent {}, delivered {}, undeliverable {}, other errors {}, silent {}, duplicates {}, both {}, out of order \
             {}, convergence {}, silent_loss metric {}, {} problem(s), {:.1} s",
            fault.name(),
            c.sent,
            c.delivered,
            c.undeliverable,
            c.other_errors,
            c.silent,
            c.duplicates,
            c.both,
            c.out_of_order,
            convergence.map_or("never".into(), |d| format!("{} ms", d.as_millis())),
            silent_loss.map_or("-".into(), |s| s.to_string()),
            problems.len(),
            took.as_secs_f64()
        );
        Outcome { fault, counts, convergence, silent_loss, problems, took }
    }

    /// Every answer within [`ANSWER_WITHIN`] of its send, or of its sender's node resuming.
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
