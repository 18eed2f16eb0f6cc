//! `switchboard-peer smoke` — a real WebRTC call (ICE, DTLS, SCTP, SRTP) between two webrtc-rs
//! peers — through a two-node cluster with its own `redis-server`, the peers on different
//! nodes, B renegotiating mid-call. The report is asserted field by field.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::{Node, RedisServer, node_binary, run_until};

/// `switchboard-peer join` into `room` of the node at `url` for `secs` seconds.
fn join_cmd(url: &str, room: &str, secs: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard-peer"));
    cmd.args(["join", "--url", url, "--room", room, "--duration-secs", secs]);
    cmd
}

fn smoke(args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard-peer"));
    cmd.arg("smoke").args(args);
    let (ok, stdout, stderr) = run_until(cmd, Instant::now() + Duration::from_secs(90));
    // The report: a JSON line, then the verdict on a line of its own.
    let (report, verdict) = stdout.trim().split_once('\n').unwrap_or((&stdout, ""));
    let report: Value = serde_json::from_str(report).unwrap_or_else(|e| panic!("report {stdout:?}: {e}\n{stderr}"));
    assert!(ok && report["ok"] == true && verdict.starts_with("ok: "), "smoke failed: {stdout}\n{stderr}");
    println!("{stdout}");
    report
}

#[test]
fn a_webrtc_call_across_two_nodes_carries_data_and_media_and_survives_renegotiation() {
    let redis = RedisServer::start();
    let url = redis.url();
    let nodes: Vec<Node> =
        ["s0", "s1"].iter().map(|id| Node::start(&node_binary(), &["--redis-url", &url, "--node-id", id])).collect();
    for n in &nodes {
        n.wait_ready(true, Duration::from_secs(10));
    }
    let (a, b) = (nodes[0].ws_url("/v1/ws"), nodes[1].ws_url("/v1/ws"));
    let r = smoke(&["--url", &a, "--url", &b, "--messages", "100", "--media-secs", "2", "--renegotiate"]);

    assert_eq!(r["nodes"], serde_json::json!(["s0", "s1"]), "the peers must sit on two nodes");
    // Every data-channel message came back byte for byte, before and after the renegotiation.
    assert_eq!(r["data_channel"]["messages_echoed_intact"], 200, "{r}");
    assert_eq!(r["data_channel"]["after_renegotiation"], 100, "{r}");
    for dir in ["a_to_b", "b_to_a"] {
        let rtp = &r["rtp"][dir];
        assert!(rtp["video_packets"].as_u64() > Some(30), "{dir}: {rtp}");
        assert!(rtp["audio_packets"].as_u64() > Some(50), "{dir}: {rtp}");
    }
    // A received B's video, audio and the video B added mid-call; media from B went on after.
    assert_eq!(r["rtp"]["b_to_a"]["tracks"], 3);
    assert!(r["renegotiation"]["video_packets_since"].as_u64() > Some(0), "{r}");
    for key in ["join_ms", "offer_answer_ms", "ice_connected_ms", "data_channel_open_ms", "hangup_ms"] {
        assert!(r[key].as_f64().is_some_and(|v| v >= 0.0), "{key} missing: {r}");
    }
}

/// `switchboard-peer join`: two tools in one room call each other — the newcomer offers, the
/// one already there answers and then offers its own media — and each receives the other's.
#[test]
fn two_join_peers_in_one_room_send_each_other_media() {
    let node = Node::start(&node_binary(), &[]);
    let url = node.ws_url("/v1/ws");
    let join = |secs: &str| join_cmd(&url, "join-test", secs);
    let first = std::thread::spawn({
        let cmd = join("6");
        move || run_until(cmd, Instant::now() + Duration::from_secs(30))
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, second, stderr) = run_until(join("3"), Instant::now() + Duration::from_secs(30));
    assert!(ok, "{second}\n{stderr}");
    let (ok, first, stderr) = first.join().expect("first join peer");
    assert!(ok, "{first}\n{stderr}");
    let lines = |out: &str| -> Vec<Value> { out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect() };
    // The newcomer's summary: what it received from the first peer.
    let done = lines(&second).into_iter().find(|l| l["event"] == "done").expect("second peer's summary");
    let from_first = done["received"].as_object().and_then(|m| m.values().next()).cloned().expect("one remote");
    assert!(from_first["video_packets"].as_u64() > Some(0) && from_first["audio_packets"].as_u64() > Some(0), "{done}");
    // The first peer saw the newcomer leave, with what it had received from it.
    let left = lines(&first).into_iter().find(|l| l["event"] == "peer-left").expect("first peer saw the leave");
    assert!(left["received"]["video_packets"].as_u64() > Some(0), "{left}");
}

/// Writes a small VP8 IVF file (the format by hand: a 32-byte header, then 12-byte frame headers).
fn write_ivf(path: &std::path::Path) {
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&320u16.to_le_bytes());
    out.extend_from_slice(&240u16.to_le_bytes());
    out.extend_from_slice(&30u32.to_le_bytes()); // timebase denominator
    out.extend_from_slice(&1u32.to_le_bytes()); // numerator: 30 fps
    out.extend_from_slice(&10u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..10u64 {
        let frame = vec![0x10 + i as u8; 800];
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).expect("write ivf");
}

/// Writes a small Ogg Opus file with webrtc-rs's own Ogg writer.
fn write_ogg(path: &std::path::Path) {
    use webrtc::media::io::Writer;
    use webrtc::media::io::ogg_writer::OggWriter;
    let file = std::fs::File::create(path).expect("create ogg");
    let mut w = OggWriter::new(file, 48_000, 2).expect("ogg writer");
    for i in 0..50u32 {
        let packet = webrtc::rtp::packet::Packet {
            header: webrtc::rtp::header::Header { timestamp: i * 960, ..Default::default() },
            payload: bytes::Bytes::from(vec![0xfc; 40]),
        };
        w.write_rtp(&packet).expect("ogg page");
    }
    w.close().expect("close ogg");
}

/// `--video-file` / `--audio-file`: media read from IVF and Ogg files crosses the call.
#[test]
fn media_from_ivf_and_ogg_files_crosses_the_call() {
    let dir = std::env::temp_dir().join(format!("switchboard-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ivf, ogg) = (dir.join("v.ivf"), dir.join("a.ogg"));
    write_ivf(&ivf);
    write_ogg(&ogg);
    let node = Node::start(&node_binary(), &[]);
    let url = node.ws_url("/v1/ws");
    let (ivf, ogg) = (ivf.to_string_lossy().into_owned(), ogg.to_string_lossy().into_owned());
    let r = smoke(&["--url", &url, "--messages", "5", "--media-secs", "1", "--video-file", &ivf, "--audio-file", &ogg]);
    for dir in ["a_to_b", "b_to_a"] {
        let rtp = &r["rtp"][dir];
        assert!(rtp["video_packets"].as_u64() > Some(10), "{dir}: {rtp}");
        assert!(rtp["audio_packets"].as_u64() > Some(20), "{dir}: {rtp}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `join` outlives its node: killed and started again on the same address, the node gets the
/// peer back (it reconnects with backoff and joins again), and a call through it works.
#[test]
fn a_join_peer_reconnects_when_its_node_comes_back() {
    let listen = format!("127.0.0.1:{}", switchboard_tests::free_port());
    let node = Node::start_at(&node_binary(), &listen, &[]);
    let url = node.ws_url("/v1/ws");
    let join = |secs: &str| join_cmd(&url, "comeback", secs);
    let stayer = std::thread::spawn({
        let cmd = join("9");
        move || run_until(cmd, Instant::now() + Duration::from_secs(40))
    });
    std::thread::sleep(Duration::from_millis(1500));
    drop(node); // SIGKILL
    std::thread::sleep(Duration::from_millis(1000));
    let _node = Node::start_at(&node_binary(), &listen, &[]);
    std::thread::sleep(Duration::from_millis(2500));
    let (ok, newcomer, stderr) = run_until(join("3"), Instant::now() + Duration::from_secs(30));
    assert!(ok, "{newcomer}\n{stderr}");
    let (ok, out, stderr) = stayer.join().expect("stayer");
    assert!(ok, "{out}\n{stderr}");
    let events: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "joined").count(), 2, "{out}");
    assert!(kinds.contains(&"disconnected"), "{out}");
    // After joining again it called the newcomer, and media came from it.
    let last_join = kinds.iter().rposition(|k| *k == "joined").expect("joined");
    assert!(events[last_join..].iter().any(|e| e["event"] == "state" && e["state"] == "connected"), "{out}");
    let left = events.iter().rev().find(|e| e["event"] == "peer-left").expect("saw the newcomer leave");
    assert!(left["received"]["video_packets"].as_u64() > Some(0), "{left}");
}
