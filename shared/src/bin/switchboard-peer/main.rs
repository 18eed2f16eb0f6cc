//! `switchboard-peer`: the load generator for Switchboard (and for any server speaking the
//! seed protocol), written to measure the same way as `bench/load/load.js` and `idle.js` so
//! results are comparable across implementations.
//!
//! - `load`: many peers at once. With the `rtc` feature, real WebRTC mesh rooms (percentiles of
//!   join, connected and data-channel RTT, failures by cause); with `--signal-only`, the
//!   closed-loop offer/candidates/answer relay across N rooms of two peers (throughput, relay
//!   latency percentiles, join latency and lost messages). One JSON line either way.
//! - `idle`: N joined, idle sessions; prints the server's memory per session.
//! - `smoke` and `join` (feature `rtc`): one real WebRTC call checked end to end; one peer that
//!   stays in a room. Tokens and ICE servers from flags or from the gateway (`access`).
//!
//! It shares a 2-core machine with the server under test, so it defaults to one worker thread
//! and keeps the per-message path allocation-light (see `wire`).

#[cfg(feature = "rtc")]
mod access;
#[cfg(feature = "rtc")]
mod dc;
#[cfg(feature = "rtc")]
mod ice;
mod idle;
#[cfg(feature = "rtc")]
mod join;
mod load;
#[cfg(feature = "rtc")]
mod mesh;
#[cfg(feature = "rtc")]
mod smoke;
mod stats;
mod wire;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-peer",
    version,
    about = "Signaling load generator for Switchboard and seed-protocol servers"
)]
struct Cli {
    /// Tokio worker threads. Default 1: the generator usually shares the machine with the
    /// server it measures, and one thread drives thousands of connections.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Many peers at once: real WebRTC mesh rooms (--peers-per-room), or with --signal-only the
    /// closed-loop relay (load.js's workload: offer, 2 ICE candidates and answer per round).
    /// Prints one JSON line.
    Load(load::Args),
    /// Idle joined sessions (idle.js's workload), to measure server memory per session.
    /// Prints one JSON line, then holds the sessions.
    Idle(idle::Args),
    /// One real WebRTC call (media and data channel) between two peers through one or two
    /// nodes, checked end to end. Prints a JSON report; exits non-zero on any failure.
    #[cfg(feature = "rtc")]
    Smoke(smoke::Args),
    /// One WebRTC peer that joins a room and stays: it calls the peers already there, answers
    /// those who join later, echoes their data-channel messages and sends them video and audio.
    /// For calling a browser or another tool. One JSON line per event.
    #[cfg(feature = "rtc")]
    Join(join::Args),
    /// One real WebRTC call, checked end to end. Not in this build: it needs the `rtc` feature.
    #[cfg(not(feature = "rtc"))]
    Smoke(WithoutRtc),
    /// One WebRTC peer that joins a room and stays. Not in this build: it needs the `rtc`
    /// feature.
    #[cfg(not(feature = "rtc"))]
    Join(WithoutRtc),
}

/// How to build a `switchboard-peer` that makes WebRTC calls.
#[cfg(not(feature = "rtc"))]
const BUILD_WITH_RTC: &str = "cargo build --release -p switchboard --features rtc --bin switchboard-peer";

/// The answer to a WebRTC subcommand in a build without them: what to type instead.
#[cfg(not(feature = "rtc"))]
fn without_rtc(name: &str) -> String {
    format!(
        "`{name}` makes real WebRTC calls, and this switchboard-peer was built without the `rtc` feature; build it with: {BUILD_WITH_RTC}"
    )
}

/// The WebRTC subcommands in a build without them: listed, so that a newcomer who types one
/// learns which build has it instead of reading "unrecognized subcommand". Every argument,
/// `--help` included, is taken and answered with that.
#[cfg(not(feature = "rtc"))]
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
struct WithoutRtc {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

fn main() -> ExitCode {
    stats::start_clock();
    let cli = Cli::parse();
    raise_nofile_limit();
    // One thread: a current-thread runtime, with no work-stealing bookkeeping to pay for.
    let mut builder = match cli.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.into());
            b
        }
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard-peer: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Load(args) => load::run(args).await,
            Cmd::Idle(args) => idle::run(args).await,
            #[cfg(feature = "rtc")]
            Cmd::Smoke(args) => smoke::run(args).await,
            #[cfg(feature = "rtc")]
            Cmd::Join(args) => join::run(args).await,
            #[cfg(not(feature = "rtc"))]
            Cmd::Smoke(_) => Err(without_rtc("smoke")),
            #[cfg(not(feature = "rtc"))]
            Cmd::Join(_) => Err(without_rtc("join")),
        }
    });
    // Idle sessions are still being drained; don't wait for them.
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the open-files soft limit to the hard limit (after trying to lift the hard limit to
/// 2^20 when root): every session is a socket, and the usual soft limit of 1024 would cap a run
/// at a few hundred rooms. Failures are ignored: the run then reports connect errors itself.
fn raise_nofile_limit() {
    const WANT: libc::rlim_t = 1 << 20;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own; the pointer is valid for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && lim.rlim_max < WANT {
        let want = libc::rlimit { rlim_cur: WANT, rlim_max: WANT };
        // SAFETY: setrlimit reads the struct we own; failure is reported by the return value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return;
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}
