//! A rolling restart behind a real nginx configured like the Ingress (room affinity by
//! consistent hash of `?room=`, a 503 or refused upgrade retried on the next node): every node
//! of a three-node cluster in turn gets SIGTERM, drains (its sessions told to `reconnect` and
//! resumed on the others through nginx), exits, and starts again on its port with its node id,
//! while 50 rooms of two peers are in the middle of a signaling exchange.
//!
//! What the drain/resume protocol promises and this test checks: nobody sees `peer-left`, no
//! error, every peer gets exactly the signals its partner sent (each once, in order), and every
//! peer on a drained node resumed under its peer id.

use std::time::{Duration, Instant};

use switchboard_tests::{
    Nginx, Node, PeerLog, RedisServer, ResumingPeer, StreamPlan, free_port, node_binary, percentile,
};

const ROOMS: usize = 50;
/// Signals each peer sends its partner, one every [`EVERY`]: 12 s of streaming, over all three
/// restarts (each takes ~3 s: drain, exit, start, ready, a 1 s pause).
const SIGNALS: u64 = 400;
const EVERY: Duration = Duration::from_millis(30);

fn node_args(redis: &str, i: usize) -> Vec<String> {
    [
        "--redis-url",
        redis,
        "--node-id",
        &format!("node-{i}"),
        "--shutdown-timeout-secs",
        "20",
        "--drain-wave-size",
        "20",
        "--drain-wave-interval-ms",
        "50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_node(addr: &str, args: &[String]) -> Node {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::start_at(&node_binary(), addr, &args);
    node.wait_ready(true, Duration::from_secs(10));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_behind_nginx_loses_no_signal_and_no_peer() {
    if !Nginx::available() {
        return;
    }
    let redis = RedisServer::start();
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < 3 {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let args: Vec<Vec<String>> = (0..3).map(|i| node_args(&redis.url(), i)).collect();
    let mut nodes: Vec<Node> = (0..3).map(|i| start_node(&addrs[i], &args[i])).collect();
    let nginx = Nginx::start(&addrs.iter().map(String::as_str).collect::<Vec<_>>());

    // 50 rooms of two, joined through nginx.
    let mut pairs = Vec::new();
    for r in 0..ROOMS {
        let room = format!("roll-{r}");
        let url = nginx.ws_url(&format!("/v1/ws?room={room}"));
        let mut a = ResumingPeer::connect(&url).await;
        let mut b = ResumingPeer::connect(&url).await;
        a.join(&room).await;
        b.join(&room).await;
        let pj = a.expect("peer-joined").await;
        assert_eq!(pj["peer"]["peer_id"], b.id.as_str(), "{pj}");
        pairs.push((room, a, b));
    }
    let mut placement = std::collections::BTreeMap::<String, usize>::new();
    for (_, a, b) in &pairs {
        *placement.entry(a.node_id.clone()).or_default() += 1;
        *placement.entry(b.node_id.clone()).or_default() += 1;
    }
    println!("peers per node before the restarts: {placement:?}");

    // Mid-negotiation: each peer streams numbered signals to its partner.
    let t0 = Instant::now();
    let mut streams = Vec::new();
    for (room, a, b) in pairs {
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        let plan = |to: &str, offerer| StreamPlan {
            room: room.clone(),
            to: to.to_string(),
            count: SIGNALS,
            every: EVERY,
            offerer,
        };
        streams.push((a_id.clone(), b_id.clone(), a.stream(plan(&b_id, true))));
        let sb = b.stream(plan(&a_id, false));
        streams.push((b_id, a_id, sb));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The rolling restart, one node at a time (blocking waits, off the runtime's workers).
    let restart = tokio::task::spawn_blocking(move || {
        let mut timeline = Vec::new();
        for i in 0..3 {
            let term = t0.elapsed();
            nodes[i].terminate();
            let status = nodes[i].wait_exit(Duration::from_secs(25));
            let exited = t0.elapsed();
            let Some(status) = status else {
                return Err(format!("node-{i} still running 25 s after SIGTERM"));
            };
            nodes[i] = start_node(&addrs[i], &args[i]);
            let ready = t0.elapsed();
            println!(
                "node-{i}: SIGTERM at {:.2}s, exited ({status}) at {:.2}s, ready again at {:.2}s",
                term.as_secs_f64(),
                exited.as_secs_f64(),
                ready.as_secs_f64()
            );
            timeline.push((term, exited, ready));
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok((nodes, timeline))
    });
    let (nodes, timeline) = match tokio::time::timeout(Duration::from_secs(90), restart).await {
        Ok(Ok(Ok(r))) => r,
        Ok(Ok(Err(e))) => panic!("{e}\nnginx error log:\n{}", nginx.error_log()),
        Ok(Err(e)) => panic!("restart thread: {e}"),
        Err(_) => panic!("the rolling restart took over 90 s"),
    };

    // Let the streams finish and everything sent arrive (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while streams.iter().any(|(_, _, s)| s.received() < SIGNALS as usize || s.sent() < SIGNALS as usize)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let streamed = t0.elapsed();
    // Stop every peer before collecting any: a socket closed now would be a `peer-left`.
    for (_, _, s) in &streams {
        s.stop();
    }
    let mut logs: Vec<(String, String, PeerLog)> = Vec::new();
    let mut peers = Vec::new();
    for (id, partner, s) in streams {
        let (log, peer) = s.finish().await;
        logs.push((id, partner, log));
        peers.push(peer);
    }

    // The figures.
    let gaps: Vec<Duration> = logs.iter().flat_map(|(_, _, l)| l.gaps()).collect();
    let resumes: usize = logs.iter().map(|(_, _, l)| l.resumes.len()).sum();
    let longest_interval = logs.iter().map(|(_, _, l)| l.longest_signal_interval()).max().unwrap_or_default();
    let attempts: u32 = logs.iter().flat_map(|(_, _, l)| l.resumes.iter().map(|r| r.attempts)).sum();
    let before_close: usize = logs.iter().flat_map(|(_, _, l)| l.resumes.iter().map(|r| r.frames_before_close)).sum();
    let mut per_peer = std::collections::BTreeMap::<usize, usize>::new();
    for (_, _, l) in &logs {
        *per_peer.entry(l.resumes.len()).or_default() += 1;
    }
    println!(
        "{} peers, {resumes} resumes ({attempts} connection attempts, {before_close} frames between reconnect and close); \
         peers by resume count {per_peer:?}",
        logs.len()
    );
    println!(
        "resume gap: p50 {} ms, p99 {} ms, longest {} ms; longest interval between two signals received: {} ms; \
         streams done at {:.2}s",
        percentile(&gaps, 50).as_millis(),
        percentile(&gaps, 99).as_millis(),
        gaps.iter().max().copied().unwrap_or_default().as_millis(),
        longest_interval.as_millis(),
        streamed.as_secs_f64()
    );

    // The checks.
    let mut problems: Vec<String> = Vec::new();
    let last_send = logs.iter().filter_map(|(_, _, l)| l.sent.last().map(|t| t.duration_since(t0))).min();
    for (i, (term, _, _)) in timeline.iter().enumerate() {
        if last_send.is_none_or(|s| s < *term) {
            problems.push(format!("node-{i} got SIGTERM after the streams ended: the test did not test it"));
        }
    }
    for (id, partner, l) in &logs {
        if let Err(e) = l.check_exact(partner, SIGNALS) {
            // When the missing ones were sent, and where both sides were meanwhile.
            let theirs = logs.iter().find(|(i, _, _)| i == partner).map(|(_, _, p)| p);
            let got: std::collections::BTreeSet<u64> = l.seqs_from(partner).into_iter().collect();
            let sent_at: Vec<String> = (0..SIGNALS)
                .filter(|s| !got.contains(s))
                .filter_map(|s| theirs.and_then(|p| p.sent.get(s as usize)).map(|t| (s, t)))
                .map(|(s, t)| format!("{s} sent at {:.3}s", t.duration_since(t0).as_secs_f64()))
                .collect();
            // What arrived around the first hole: (seq, when, on which connection).
            let hole = (0..SIGNALS).find(|s| !got.contains(s)).unwrap_or_default();
            let around: Vec<String> = l
                .received
                .iter()
                .filter(|r| r.from == *partner && r.seq + 3 >= hole && r.seq <= hole + 3)
                .map(|r| format!("{}@{:.3}s/conn{}", r.seq, r.at.duration_since(t0).as_secs_f64(), r.conn))
                .collect();
            problems.push(format!(
                "{e}; {sent_at:?}; received around it {around:?}; receiver's resumes: {}; sender's resumes: {}",
                describe(l, t0),
                theirs.map(|p| describe(p, t0)).unwrap_or_default()
            ));
        }
        if l.sent.len() as u64 != SIGNALS {
            problems.push(format!("{id} sent {} of {SIGNALS}", l.sent.len()));
        }
        for (at, m) in &l.membership {
            let who = m["peer_id"].as_str().unwrap_or_default();
            let theirs = logs.iter().find(|(i, _, _)| i == who).map(|(_, _, l)| describe(l, t0)).unwrap_or_default();
            problems.push(format!(
                "{id} (resumes: {}) saw at {:.3}s {m}; {who}'s resumes: {theirs}",
                describe(l, t0),
                at.duration_since(t0).as_secs_f64()
            ));
        }
        for e in &l.errors {
            problems.push(format!("{id} got {e}"));
        }
        for p in &l.problems {
            problems.push(format!("{id}: {p}"));
        }
        if l.resumes.is_empty() {
            problems.push(format!("{id} (on {}) never resumed, yet every node was drained", l.nodes[0]));
        }
        if l.ids.len() != 1 || l.fresh_reconnects > 0 {
            problems.push(format!("{id} changed peer id: {:?}", l.ids));
        }
        for r in &l.resumes {
            if r.from_node == r.to_node {
                problems.push(format!("{id} resumed on the node it left ({}): {r:?}", r.from_node));
            }
        }
    }
    drop(peers);
    // nginx logs a WebSocket when it ends: the upgrades it retried on another node (a draining
    // node's 503, a stopped node's refusal) show as several upstream statuses.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let access = nginx.access_log();
    let upgrades = access.lines().filter(|l| l.contains("/v1/ws")).count();
    let retried: Vec<&str> = access.lines().filter(|l| l.contains("up_status=") && l.contains(", ")).collect();
    let on_503 = retried.iter().filter(|l| l.contains("503")).count();
    println!(
        "nginx: {upgrades} WebSocket requests, {} retried on another node ({on_503} after a 503), e.g. {:?}",
        retried.len(),
        retried.first()
    );
    drop(nodes);
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(40);
        panic!(
            "{n} problems, first {}:\n{}\nnginx error log (tail):\n{}",
            problems.len(),
            problems.join("\n"),
            tail(&nginx.error_log(), 40)
        );
    }
}

/// A peer's resumes: when `reconnect` came, from where to where, how long it was away.
fn describe(l: &PeerLog, t0: Instant) -> String {
    let r: Vec<String> = l
        .resumes
        .iter()
        .map(|r| {
            format!(
                "[reconnect at {:.3}s {}->{} gap {:?} ms, {} frames before close {:?}]",
                r.at.duration_since(t0).as_secs_f64(),
                r.from_node,
                r.to_node,
                r.gap.map(|g| g.as_millis()),
                r.frames_before_close,
                r.server_close
            )
        })
        .collect();
    r.join(" ")
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
