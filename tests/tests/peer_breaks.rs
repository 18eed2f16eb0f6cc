//! The reference peer keeps a real WebRTC call through ten breaks of its signaling socket
//! (issue 13, "resume after any disconnect"): two `switchboard-peer join` processes call each
//! other (ICE, DTLS, SRTP media both ways) through a lone node; B reaches the node through a
//! [`Proxy`] the test controls, and the test breaks B's socket ten times, a few hundred ms
//! apart: eight TCP resets (RST both ways) and two silent stalls (no FIN, no RST: B notices
//! that nothing arrived for two heartbeats, then the proxy heals and B's resume gets through).
//! Each time B's signaling task resumes the session by itself (`?resume=<token>&last_seq=<n>`),
//! with the same peer id, on the same peer connection.
//!
//! Checked from the peers' JSON lines: B has one `signaling-lost` and one `resumed` (cause
//! `break`, same peer id) per break, never a second `joined` nor `disconnected`; its final
//! `done` counts 10 resumes, all after a break. A never sees `peer-left` or `peer-joined`
//! during the call, only `peer-state` lines about B (`reconnecting` then `connected`, at least
//! around every reset). The call is neither rebuilt nor renegotiated (beyond an ICE restart,
//! which a break of the signaling path alone does not need): no connection-state change after
//! it connected, two tracks each way, and the media keeps flowing through the breaks (most of
//! the audio the call's length allows arrives, and seconds of it after the last break).
//!
//! The node runs with a 1 s heartbeat and a 3 s idle timeout (so a stall is noticed within
//! ~2 s) and a 5 s reconnect grace. About 25 s in all.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::{Node, PeerProc, Proxy, node_binary, peer_binary};

/// Breaks of B's socket.
const BREAKS: usize = 10;
/// Which of them are stalls (the others are resets).
const STALLS: [usize; 2] = [2, 6];
/// Between a resume and the next break.
const PAUSE: Duration = Duration::from_millis(300);
/// Media flowing before the first break, after both sides report the call connected.
const SETTLE: Duration = Duration::from_secs(2);
/// Media watched after the last break.
const AFTER: Duration = Duration::from_secs(4);
/// The synthetic audio source's rate (`switchboard::rtc::media::Source::audio`: one per 20 ms).
const AUDIO_PER_SEC: f64 = 50.0;
/// Upper bound of each peer's stay; the test ends both with SIGINT well before.
const DURATION_SECS: u64 = 55;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_call_survives_ten_breaks_of_one_peers_signaling_socket() {
    let bin = peer_binary();
    let node = Node::start(
        &node_binary(),
        &["--heartbeat-secs", "1", "--idle-timeout-secs", "3", "--reconnect-grace-ms", "5000"],
    );
    let proxy = Proxy::start(&node.addr);
    let room = format!("peer-breaks-{}", std::process::id());
    let t0 = Instant::now();

    // A first, straight to the node (it answers); then B, the newcomer that offers, through
    // the proxy.
    let a = PeerProc::spawn("A", &bin, &node.ws_url("/v1/ws"), &room, DURATION_SECS, t0);
    let (_, a_joined) = a.wait_line("joined", Duration::from_secs(15), &[&a], |v| v["event"] == "joined").await;
    let b = PeerProc::spawn("B", &bin, &format!("{}/v1/ws", proxy.url("ws")), &room, DURATION_SECS, t0);
    let peers = [&a, &b];
    let (_, b_joined) = b.wait_line("joined", Duration::from_secs(15), &peers, |v| v["event"] == "joined").await;
    let a_id = a_joined["peer_id"].as_str().expect("A's peer id").to_string();
    let b_id = b_joined["peer_id"].as_str().expect("B's peer id").to_string();
    assert_eq!(proxy.connections(), 1, "B's socket goes through the proxy");

    let connected = |partner: String| {
        move |v: &Value| v["event"] == "state" && v["peer"] == partner.as_str() && v["state"] == "connected"
    };
    let (a_conn, _) = a.wait_line("connected to B", Duration::from_secs(20), &peers, connected(b_id.clone())).await;
    let (b_conn, _) = b.wait_line("connected to A", Duration::from_secs(20), &peers, connected(a_id.clone())).await;
    tokio::time::sleep(SETTLE).await;

    // Ten breaks, each once the last resume is through.
    let t_first = Instant::now();
    let mut report = Vec::new();
    for i in 0..BREAKS {
        let at = Instant::now();
        let kind = if STALLS.contains(&i) {
            proxy.stall();
            // B notices the silence (two heartbeats), drops the socket and tries to resume; the
            // attempt waits in the proxy's backlog until the heal.
            b.wait_count("signaling-lost", i + 1, Duration::from_secs(6), &peers).await;
            proxy.heal();
            "stall"
        } else {
            let closed = proxy.reset();
            assert!(closed >= 1, "break {i}: the proxy held no connection to reset\n{}", PeerProc::dump_all(&peers));
            "reset"
        };
        println!("[test +{:7.3}s] break {i}: {kind}", at.duration_since(t0).as_secs_f64());
        let (res_at, r) = b.wait_count("resumed", i + 1, Duration::from_secs(8), &peers).await;
        assert_eq!(r["peer_id"], b_id.as_str(), "B resumed under another peer id: {r}\n{}", PeerProc::dump_all(&peers));
        assert_eq!(r["cause"], "break", "{r}");
        report.push(format!(
            "break {i} ({kind}): resumed {:.3}s after it, gap_ms={} away_ms={} attempts={} resent={} ({})",
            res_at.duration_since(at).as_secs_f64(),
            r["gap_ms"],
            r["away_ms"],
            r["attempts"],
            r["resent"],
            r["why"].as_str().unwrap_or_default()
        ));
        tokio::time::sleep(PAUSE).await;
    }
    let t_last = Instant::now();
    tokio::time::sleep(AFTER).await;

    // Both leave (SIGINT) and report.
    let t_end = Instant::now();
    for p in peers {
        p.interrupt();
    }
    let mut statuses = Vec::new();
    for p in peers {
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = p.try_wait() {
                break s;
            }
            assert!(Instant::now() < end, "{} did not exit after SIGINT\n{}", p.name, PeerProc::dump_all(&peers));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        statuses.push(status);
    }
    // Let the reader threads take the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = PeerProc::dump_all(&peers);
    for (p, s) in peers.iter().zip(&statuses) {
        assert!(s.success(), "{} exited {s}\n{all}", p.name);
    }

    // B: one loss and one resume per break, nothing else.
    assert_eq!(b.count("signaling-lost"), BREAKS, "B's losses\n{all}");
    assert_eq!(b.count("resumed"), BREAKS, "B's resumes\n{all}");
    for p in peers {
        let name = p.name;
        assert_eq!(p.count("joined"), 1, "{name}: joined again (a fresh session, not a resume)\n{all}");
        for bad in ["disconnected", "error", "negotiation-failed", "signal-failed", "ice-restart-failed", "<not json>"]
        {
            assert_eq!(p.count(bad), 0, "{name}: `{bad}` lines\n{all}");
        }
    }
    assert_eq!(a.count("signaling-lost") + a.count("resumed"), 0, "A's own socket never broke\n{all}");

    // A: B never left nor joined again during the call; its breaks show as `peer-state`.
    let a_lines = a.lines();
    for (at, v) in &a_lines {
        if v["event"] == "peer-left" {
            assert!(*at >= t_end, "A: peer-left during the call: {v}\n{all}");
        }
        if v["event"] == "peer-joined" {
            assert!(*at < t_first, "A: peer-joined during the breaks: {v}\n{all}");
        }
        if v["event"] == "peer-state" {
            assert_eq!(v["peer"], b_id.as_str(), "A: peer-state of another peer: {v}\n{all}");
        }
    }
    let states: Vec<&str> =
        a_lines.iter().filter(|(_, v)| v["event"] == "peer-state").filter_map(|(_, v)| v["state"].as_str()).collect();
    // Each reset: `reconnecting` then `connected`; a stall: that pair or nothing.
    let resets = BREAKS - STALLS.len();
    assert!(
        states.len() >= 2 * resets,
        "A saw {} peer-state lines for {resets} resets: {states:?}\n{all}",
        states.len()
    );
    for (i, s) in states.iter().enumerate() {
        let want = if i % 2 == 0 { "reconnecting" } else { "connected" };
        assert_eq!(*s, want, "A's peer-state lines out of order: {states:?}\n{all}");
    }
    assert_eq!(states.len() % 2, 0, "B still reconnecting at the end, as A saw it: {states:?}\n{all}");

    // The call: one connection, connected once, no state change after, two tracks each way,
    // and media all along.
    for (p, partner, partner_id, conn) in [(&a, &b, &b_id, a_conn), (&b, &a, &a_id, b_conn)] {
        let name = p.name;
        let lines = p.lines();
        let call: Vec<(Instant, &str)> = lines
            .iter()
            .filter(|(at, v)| v["event"] == "state" && v["peer"] == partner_id.as_str() && *at < t_end)
            .filter_map(|(at, v)| Some((*at, v["state"].as_str()?)))
            .collect();
        assert_eq!(call.iter().filter(|(_, s)| *s == "connected").count(), 1, "{name}: call states {call:?}\n{all}");
        assert!(call.iter().all(|(at, _)| *at <= conn), "{name}: the call changed state after it connected\n{all}");

        let done = lines
            .iter()
            .find(|(_, v)| v["event"] == "done")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name}: no done\n{all}"));
        let (resumes, after_break) = if name == "B" { (BREAKS, BREAKS) } else { (0, 0) };
        assert_eq!(done["resumes"], resumes, "{name}: {done}\n{all}");
        assert_eq!(done["resumes_after_break"], after_break, "{name}: {done}\n{all}");
        let got = &done["received"][partner_id.as_str()];
        assert_eq!(got["tracks"], 2, "{name} from {}: {got}\n{all}", partner.name);
        let audio = got["audio_packets"].as_u64().unwrap_or(0) as f64;
        // A's own tracks start with its renegotiation once connected: count from there, less 1 s.
        let possible = ((t_end - conn).as_secs_f64() - 1.0) * AUDIO_PER_SEC;
        assert!(
            audio >= 0.7 * possible,
            "{name}: {audio} audio packets from {} of ~{possible:.0} the call allowed\n{all}",
            partner.name
        );
        let before_max = ((t_last - conn).as_secs_f64() + 1.0) * AUDIO_PER_SEC;
        let after_min = audio - before_max;
        assert!(
            after_min >= (AFTER.as_secs_f64() - 2.0) * AUDIO_PER_SEC,
            "{name}: too little audio from {} after the last break: {audio} in all, up to {before_max:.0} before it\n{all}",
            partner.name
        );
        report.push(format!(
            "{name} from {}: video={} audio={audio} (of ~{possible:.0} possible; >= {after_min:.0} after the last break) tracks={}",
            partner.name, got["video_packets"], got["tracks"]
        ));
    }
    report.push(format!("A saw {} peer-state lines about B: {states:?}", states.len()));
    report.push(format!(
        "{BREAKS} breaks in {:.3}s; the whole test {:.3}s",
        (t_last - t_first).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));
    for line in report {
        println!("[test] {line}");
    }
}
