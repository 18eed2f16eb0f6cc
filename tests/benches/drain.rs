//! Drain benchmark: how long a node takes to hand all its sessions over, and what the clients
//! see, with paced waves and with everything at once.
//!
//! Redis and three release nodes; `ROOMS` two-peer rooms whose peers all sit on node A and
//! stream numbered signals to each other (one every 250 ms each). A gets SIGTERM; each client
//! resumes on B or C (alternately, as a load balancer would spread them). Printed per run: the
//! drain time (SIGTERM → exit), the resume gap (`reconnect` → resumed `welcome`) p50/p99/max,
//! the longest pause between two signals a client received, and lost / duplicated / reordered
//! signals and `peer-left`s (all must be zero).
//!
//! `cargo bench -p switchboard-tests --bench drain [-- ROOMS...]` (default 500 and 2000 rooms).

use std::time::{Duration, Instant};

use switchboard_tests::{Node, RedisServer, ResumingPeer, StreamPlan, free_port, node_binary, percentile};

/// One signal every this often from each peer.
const EVERY: Duration = Duration::from_millis(250);

struct Outcome {
    sessions: usize,
    drain: Duration,
    gaps: Vec<Duration>,
    longest_interval: Duration,
    faults: usize,
    peer_left: usize,
}

async fn run(rooms: usize, paced: bool) -> Outcome {
    let redis = RedisServer::start();
    let url = redis.url();
    let waves: &[&str] = if paced {
        &["--drain-wave-size", "200", "--drain-wave-interval-ms", "100"]
    } else {
        &["--drain-wave-size", "1000000"]
    };
    let start = |id: &str| {
        let mut args = vec!["--redis-url", &url, "--node-id", id, "--shutdown-timeout-secs", "30"];
        args.extend_from_slice(waves);
        let listen = format!("127.0.0.1:{}", free_port());
        let node = Node::start_at(&node_binary(), &listen, &args);
        node.wait_ready(true, Duration::from_secs(10));
        node
    };
    let mut a = start("a");
    let (b, c) = (start("b"), start("c"));
    let elsewhere = [b.ws_url("/v1/ws"), c.ws_url("/v1/ws")];

    // Every peer on A; the two peers of a room resume on different nodes.
    let mut pairs = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let room = format!("drain-{r}");
        let mut p = ResumingPeer::connect(&a.ws_url("/v1/ws")).await.resume_via(&[elsewhere[0].clone()]);
        let mut q = ResumingPeer::connect(&a.ws_url("/v1/ws")).await.resume_via(&[elsewhere[1].clone()]);
        p.join(&room).await;
        q.join(&room).await;
        p.expect("peer-joined").await;
        pairs.push((room, p, q));
    }
    // Long enough to stream through the whole drain; stopped once it is over.
    let count = 10_000;
    let mut streams = Vec::with_capacity(rooms * 2);
    for (room, p, q) in pairs {
        let (pid, qid) = (p.id.clone(), q.id.clone());
        let plan =
            |to: &str, offerer| StreamPlan { room: room.clone(), to: to.to_string(), count, every: EVERY, offerer };
        streams.push((qid.clone(), p.stream(plan(&qid, true))));
        streams.push((pid.clone(), q.stream(plan(&pid, false))));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t0 = Instant::now();
    a.terminate();
    let exited = tokio::task::spawn_blocking(move || {
        let status = a.wait_exit(Duration::from_secs(40));
        (status, t0.elapsed())
    });
    let (status, drain) = exited.await.expect("waiting for A");
    assert!(status.is_some_and(|s| s.success()), "node A did not exit cleanly: {status:?}");
    // Let the last resumes settle and a few more signals through.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (_, s) in &streams {
        s.stop();
    }
    let sent: Vec<(String, u64)> = streams.iter().map(|(_, s)| (s.log().id.clone(), s.sent() as u64)).collect();
    let mut logs = Vec::with_capacity(streams.len());
    for (from, s) in streams {
        let (log, _peer) = s.finish().await;
        logs.push((from, log));
    }
    let mut gaps = Vec::new();
    let (mut faults, mut peer_left, mut longest) = (0, 0, Duration::ZERO);
    for (from, log) in &logs {
        gaps.extend(log.gaps());
        longest = longest.max(log.longest_signal_interval());
        peer_left += log.membership.iter().filter(|(_, m)| m["type"] == "peer-left").count();
        faults += log.problems.len() + log.errors.len() + log.fresh_reconnects;
        // What the partner had sent when it stopped must have arrived, once and in order.
        let count = sent.iter().find(|(id, _)| id == from).map_or(0, |(_, n)| *n);
        let got = log.seqs_from(from);
        if !got.iter().copied().eq(0..count) && !got.iter().copied().eq(0..count.saturating_sub(1)) {
            faults += 1;
            eprintln!("{}", log.check_exact(from, count).err().unwrap_or_default());
        }
    }
    drop((b, c, redis));
    Outcome { sessions: rooms * 2, drain, gaps, longest_interval: longest, faults, peer_left }
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![500, 2000] } else { sizes };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("drain benchmark: 3 release nodes + Redis on this machine ({cores} cores), clients in this process");
    println!(
        "| sessions | waves | drain (SIGTERM → exit) | resume gap p50 / p99 / max | longest signal pause | faults | peer-left |"
    );
    println!("|---|---|---|---|---|---|---|");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for rooms in sizes {
        for paced in [true, false] {
            let o = rt.block_on(run(rooms, paced));
            let ms = |d: Duration| d.as_millis();
            println!(
                "| {} | {} | {} ms | {} / {} / {} ms ({} resumes) | {} ms | {} | {} |",
                o.sessions,
                if paced { "200 per 100 ms" } else { "all at once" },
                ms(o.drain),
                ms(percentile(&o.gaps, 50)),
                ms(percentile(&o.gaps, 99)),
                ms(percentile(&o.gaps, 100)),
                o.gaps.len(),
                ms(o.longest_interval),
                o.faults,
                o.peer_left,
            );
        }
    }
}
