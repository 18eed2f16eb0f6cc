//! The reference peer keeps a real WebRTC call through a node drain: two `switchboard-peer
//! join` processes call each other (ICE, DTLS, SRTP media both ways) through nginx configured
//! like the Ingress (hash on `?room=`), so both sit on one node of a two-node Redis cluster.
//! That node gets SIGTERM and drains; each peer follows its `reconnect` inside the signaling
//! task and resumes on the other node under the same peer id.
//!
//! Checked from the peers' JSON lines (and the nodes' `/metrics`): one `resumed` each (same peer
//! id, from the drained node to the other), no `peer-left`, no second `joined`, no
//! `disconnected`, no connection-state change and no new track after the drain (the call was
//! neither rebuilt nor renegotiated), media still flowing long after the drain, the final
//! `done` with `resumes: 1`; and the resumed sessions still signal both ways: a newcomer joining
//! after the drain is announced to both, and both leaves reach it as `left`, not `disconnected`.
//!
//! `join` only echoes data-channel messages (neither side sends first), so two `join` peers
//! exchange no data-channel messages: the continuous traffic checked here is the media (50
//! audio packets/s each way).

mod cluster;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Frame, Nginx, PeerProc, V1Peer, peer_binary};

use cluster::Cluster;

/// How long each `join` peer stays (`--duration-secs`).
const DURATION_SECS: u64 = 20;
/// Media flowing before the drain, after both sides report the call connected.
const SETTLE: Duration = Duration::from_secs(3);
/// The synthetic audio source's rate (`switchboard::rtc::media::Source::audio`: one per 20 ms).
const AUDIO_PER_SEC: f64 = 50.0;
/// Audio that must have arrived after the drain, at least: 5 s worth.
const AUDIO_AFTER_DRAIN_MIN: f64 = 5.0 * AUDIO_PER_SEC;

/// The earliest `p`'s `--duration-secs` can end (its deadline is set after it starts).
fn earliest_end(p: &PeerProc) -> Instant {
    p.spawned + Duration::from_secs(DURATION_SECS)
}

/// The sum of a metric's samples (all label sets) in a node's `/metrics`.
fn metric(node: &switchboard_tests::Node, name: &str) -> f64 {
    let (status, body) = node.get("/metrics");
    assert_eq!(status, 200, "/metrics of {}: {body}", node.addr);
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_call_of_two_reference_peers_survives_a_node_drain_behind_nginx() {
    if !Nginx::available() {
        return;
    }
    let bin = peer_binary();
    let mut cluster = Cluster::start(2, &["--shutdown-timeout-secs", "15"]);
    let addrs: Vec<&str> = cluster.nodes.iter().map(|n| n.addr.as_str()).collect();
    let nginx = Nginx::start(&addrs);
    let room = format!("peer-resume-{}", std::process::id());
    let url = nginx.ws_url(&format!("/v1/ws?room={room}"));
    let t0 = Instant::now();

    // A first (it answers), then B (the newcomer offers); both through nginx.
    let a = PeerProc::spawn("A", &bin, &url, &room, DURATION_SECS, t0);
    let (_, a_joined) = a.wait_line("joined", Duration::from_secs(15), &[&a], |v| v["event"] == "joined").await;
    let b = PeerProc::spawn("B", &bin, &url, &room, DURATION_SECS, t0);
    let peers = [&a, &b];
    let (_, b_joined) = b.wait_line("joined", Duration::from_secs(15), &peers, |v| v["event"] == "joined").await;
    let (a_id, b_id) =
        (a_joined["peer_id"].as_str().unwrap().to_string(), b_joined["peer_id"].as_str().unwrap().to_string());
    let node_id = a_joined["node"].as_str().expect("node in joined").to_string();
    assert_eq!(
        b_joined["node"],
        node_id.as_str(),
        "nginx's room hash must put both on one node\n{}",
        PeerProc::dump_all(&peers)
    );
    // Cluster::start names its nodes n0, n1, ...
    let drained = node_id
        .strip_prefix('n')
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| *i < 2)
        .unwrap_or_else(|| panic!("unexpected node id {node_id}"));
    let other = 1 - drained;
    let other_id = format!("n{other}");
    // The nodes agree: both v1 sessions on the node the peers name, none on the other.
    assert_eq!(metric(&cluster.nodes[drained], "switchboard_connections"), 2.0, "sessions on {node_id}");
    assert_eq!(metric(&cluster.nodes[other], "switchboard_connections"), 0.0, "sessions on {other_id}");

    // The call is up both ways (B's offer; A's own tracks added by its renegotiation once
    // connected), and media flows for a while.
    let connected = |partner: String| {
        move |v: &Value| v["event"] == "state" && v["peer"] == partner.as_str() && v["state"] == "connected"
    };
    let (a_conn, _) = a.wait_line("connected to B", Duration::from_secs(20), &peers, connected(b_id.clone())).await;
    let (b_conn, _) = b.wait_line("connected to A", Duration::from_secs(20), &peers, connected(a_id.clone())).await;
    tokio::time::sleep(SETTLE).await;

    // Drain their node.
    let t_drain = Instant::now();
    println!(
        "[test +{:7.3}s] SIGTERM {node_id} (pid {})",
        t_drain.duration_since(t0).as_secs_f64(),
        cluster.nodes[drained].pid()
    );
    cluster.nodes[drained].terminate();
    let resumed = |v: &Value| v["event"] == "resumed";
    let (a_res_at, a_res) = a.wait_line("resumed", Duration::from_secs(12), &peers, resumed).await;
    let (b_res_at, b_res) = b.wait_line("resumed", Duration::from_secs(12), &peers, resumed).await;
    for (p, id, r) in [(&a, &a_id, &a_res), (&b, &b_id, &b_res)] {
        assert_eq!(
            r["peer_id"],
            id.as_str(),
            "{}: resumed under another peer id\n{}",
            p.name,
            PeerProc::dump_all(&peers)
        );
        assert_eq!(r["from_node"], node_id.as_str(), "{}: {r}", p.name);
        assert_eq!(r["node"], other_id.as_str(), "{}: {r}", p.name);
        assert_eq!(r["resumes"], 1, "{}: {r}", p.name);
    }
    assert_eq!(metric(&cluster.nodes[other], "switchboard_sessions_resumed_total"), 2.0, "resumes on {other_id}");

    // The resumed sessions still get room events: a newcomer (plain v1 client, via nginx, so
    // on the surviving node) is announced to both; it sees both in the room.
    let mut observer = V1Peer::connect(&url).await;
    let joined = observer.join(&room).await;
    let present: Vec<&str> =
        joined["peers"].as_array().expect("peers").iter().filter_map(|p| p["peer_id"].as_str()).collect();
    assert!(present.contains(&a_id.as_str()) && present.contains(&b_id.as_str()), "observer's joined: {joined}");
    let obs = observer.id.clone();
    for p in peers {
        let obs = obs.clone();
        p.wait_line("peer-joined (observer)", Duration::from_secs(5), &peers, move |v| {
            v["event"] == "peer-joined" && v["peer"] == obs.as_str()
        })
        .await;
    }

    // The drained node exits within its shutdown timeout.
    let exit = cluster.nodes[drained].wait_exit(Duration::from_secs(17));
    let t_exit = t_drain.elapsed();
    assert!(exit.is_some(), "{node_id} still runs 17 s after SIGTERM");
    println!("[test] {node_id} exited {exit:?}, {:.3}s after SIGTERM", t_exit.as_secs_f64());

    // Both peers end at their --duration-secs, with success.
    let mut statuses = Vec::new();
    for p in [&a, &b] {
        let end = p.spawned + Duration::from_secs(DURATION_SECS + 15);
        loop {
            match p.try_wait() {
                Some(s) => {
                    statuses.push(s);
                    break;
                }
                None if Instant::now() > end => {
                    panic!("{} did not finish in time\n{}", p.name, PeerProc::dump_all(&peers))
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    // Let the reader threads take the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = PeerProc::dump_all(&peers);

    // Both leaves reached the observer as `left`: the resumed sessions carried them out.
    let mut left = std::collections::BTreeMap::new();
    while left.len() < 2 {
        match observer.ws.next_within(Duration::from_secs(5)).await {
            Some(Frame::Json(v)) if v["type"] == "peer-left" => {
                left.insert(v["peer_id"].as_str().unwrap_or_default().to_string(), v["reason"].clone());
            }
            Some(Frame::Json(_)) => {}
            other => panic!("observer: {other:?} before both peer-left ({left:?})\n{all}"),
        }
    }
    assert_eq!(left.get(&a_id), Some(&json!("left")), "A's leave as the observer saw it: {left:?}\n{all}");
    assert_eq!(left.get(&b_id), Some(&json!("left")), "B's leave as the observer saw it: {left:?}\n{all}");
    observer.ws.close().await;

    for (p, s) in peers.iter().zip(&statuses) {
        assert!(s.success(), "{} exited {s}\n{all}", p.name);
    }

    // Line by line: nothing but the one resume happened to the call.
    let mut report = Vec::new();
    for (p, partner, partner_id, conn) in [(&a, &b, &b_id, a_conn), (&b, &a, &a_id, b_conn)] {
        let name = p.name;
        let lines = p.lines();
        let count = |e: &str| lines.iter().filter(|(_, v)| v["event"] == e).count();
        assert_eq!(count("joined"), 1, "{name}: joined again (a fresh session, not a resume)\n{all}");
        assert_eq!(count("resumed"), 1, "{name}: resumed more than once\n{all}");
        for bad in ["disconnected", "error", "negotiation-failed", "signal-failed", "<not json>"] {
            assert_eq!(count(bad), 0, "{name}: `{bad}` lines\n{all}");
        }
        // While both still run (before the partner's own leave at its deadline): no peer-left,
        // no state change of the call after the drain.
        let calm_until = earliest_end(partner).min(earliest_end(p));
        for (at, v) in &lines {
            if v["event"] == "peer-left" {
                assert!(
                    *at >= earliest_end(partner) && v["reason"] == "left" && v["peer"] == partner_id.as_str(),
                    "{name}: peer-left during the call: {v}\n{all}"
                );
            }
            if v["event"] == "state" && v["peer"] == partner_id.as_str() && *at > t_drain && *at < calm_until {
                panic!("{name}: the call changed state after the drain: {v}\n{all}");
            }
        }
        let states: Vec<&Value> = lines
            .iter()
            .filter(|(at, v)| v["event"] == "state" && v["peer"] == partner_id.as_str() && *at < calm_until)
            .map(|(_, v)| &v["state"])
            .collect();
        assert_eq!(states.iter().filter(|s| **s == "connected").count(), 1, "{name}: states {states:?}\n{all}");

        let done = lines
            .iter()
            .find(|(_, v)| v["event"] == "done")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name}: no done\n{all}"));
        assert_eq!(done["resumes"], 1, "{name}: {done}\n{all}");
        let got = &done["received"][partner_id.as_str()];
        // Two tracks (video, audio) from the partner: no renegotiation added any after the drain.
        assert_eq!(got["tracks"], 2, "{name} from {}: {got}\n{all}", partner.name);
        let audio = got["audio_packets"].as_u64().unwrap_or(0) as f64;
        // What could have arrived before the drain, at most (from its `connected`, plus 1 s).
        let before_max = ((t_drain - conn).as_secs_f64() + 1.0) * AUDIO_PER_SEC;
        let after_min = audio - before_max;
        assert!(
            after_min >= AUDIO_AFTER_DRAIN_MIN,
            "{name}: too little audio from {} after the drain: {audio} packets in all, up to {before_max:.0} before it\n{all}",
            partner.name
        );
        let (res_at, r) = if name == "A" { (a_res_at, &a_res) } else { (b_res_at, &b_res) };
        report.push(format!(
            "{name}: resumed {} -> {} gap_ms={} attempts={} (seen {:.3}s after SIGTERM); from {}: video={} audio={} (>= {after_min:.0} after the drain) tracks={}",
            r["from_node"], r["node"], r["gap_ms"], r["attempts"], res_at.duration_since(t_drain).as_secs_f64(),
            partner.name, got["video_packets"], got["audio_packets"], got["tracks"]
        ));
    }
    println!("[test] {node_id} drained and exited in {:.3}s", t_exit.as_secs_f64());
    for line in report {
        println!("[test] {line}");
    }
}
