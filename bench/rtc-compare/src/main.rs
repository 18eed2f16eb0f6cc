//! Loopback connect time of webrtc-rs 0.17.2 against 0.21.1, measured the same way for both.
//!
//! One call: two peer connections in this process (host candidates on 127.0.0.1, no STUN),
//! default codecs and interceptors, prflx nomination at once (as Switchboard's peer sets it).
//! The offerer opens a reliable ordered data channel; descriptions and trickled candidates go
//! to the other side as JSON text over in-process channels, applied in arrival order
//! (candidates held until the remote description is set). Timed from before the first peer
//! connection is built to the offerer's `connected` state and to its data channel's `open`.
//! Calls run one at a time, alternating between the two engines so both see the same machine.
//!
//! Usage: rtc-compare [CALLS=30] [WORKERS=2]

mod v17;
mod v21;

use std::time::{Duration, Instant};

/// A signal as text, the way it would cross a signaling server.
#[derive(Debug)]
pub enum Sig {
    Desc(String),
    Cand(String),
}

/// Times of one call, ms from start.
pub struct Timing {
    pub connected_ms: f64,
    pub open_ms: f64,
}

pub fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((p * v.len() as f64).floor() as usize).min(v.len() - 1);
    (v[i] * 10.0).round() / 10.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    rt.block_on(async {
        // 0.17.2; 0.21.1 as shipped; 0.21.1 with a 20 ms ICE check interval (its default
        // 200 ms paces the first connectivity check).
        let names = ["0.17.2", "0.21.1", "0.21.1 tuned (ICE check 20 ms, answerer DTLS server)"];
        let mut connected: [Vec<f64>; 3] = Default::default();
        let mut open: [Vec<f64>; 3] = Default::default();
        let mut failed = [0usize; 3];
        async fn one(engine: usize) -> Result<Timing, String> {
            match engine {
                0 => v17::call().await,
                1 => v21::call(None).await,
                _ => v21::call(Some(Duration::from_millis(20))).await,
            }
        }
        // One warm-up call each (first-use costs: thread pools, lazy statics).
        for e in 0..3 {
            let _ = one(e).await;
        }
        for i in 0..calls {
            for e in 0..3 {
                match tokio::time::timeout(Duration::from_secs(20), one(e)).await {
                    Ok(Ok(t)) => {
                        connected[e].push(t.connected_ms);
                        open[e].push(t.open_ms);
                    }
                    r => {
                        failed[e] += 1;
                        eprintln!("{} call {i}: {:?}", names[e], r.map(|r| r.err()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for (e, name) in names.iter().enumerate() {
            let (c, o, f) = (&mut connected[e], &mut open[e], failed[e]);
            if o.is_empty() {
                println!("{{\"webrtc\":\"{name}\",\"calls\":0,\"failed\":{f}}}");
                continue;
            }
            println!(
                "{{\"webrtc\":\"{name}\",\"calls\":{},\"failed\":{f},\"workers\":{workers},\
                 \"connected_p50_ms\":{},\"connected_p99_ms\":{},\"open_p50_ms\":{},\"open_p99_ms\":{},\"open_max_ms\":{}}}",
                o.len(),
                pct(c, 0.5),
                pct(c, 0.99),
                pct(o, 0.5),
                pct(o, 0.99),
                pct(o, 1.0),
            );
        }
    });
}
