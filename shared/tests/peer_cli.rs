//! `switchboard-peer` built without the `rtc` feature (the load generator alone) still lists
//! `smoke` and `join`, and answers them with the build that has them rather than with
//! "unrecognized subcommand".

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_tests::run_until;

/// `switchboard-peer` with the `peer` feature only, built in a target dir of its own: the
/// workspace's tests build it with `rtc`, and the two builds would overwrite each other's binary.
fn peer_without_rtc() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>, target
    let profile = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    let target = profile.parent().expect("target dir").join("peer-without-rtc");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "switchboard", "--features", "peer", "--bin", "switchboard-peer"]);
    build.arg("--target-dir").arg(&target);
    let release = profile.file_name().is_some_and(|p| p == "release");
    if release {
        build.arg("--release");
    }
    assert!(build.status().is_ok_and(|s| s.success()), "cannot build switchboard-peer without rtc");
    target.join(if release { "release" } else { "debug" }).join("switchboard-peer")
}

#[test]
fn without_rtc_the_webrtc_subcommands_say_which_build_has_them() {
    let bin = peer_without_rtc();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(args);
        run_until(cmd, Instant::now() + Duration::from_secs(30))
    };
    let build = "cargo build --release -p switchboard --features rtc --bin switchboard-peer";
    for args in [
        &["smoke", "--url", "ws://127.0.0.1:8090/v1/ws"][..],
        &["smoke"],
        &["smoke", "--help"],
        &["join", "--url", "ws://127.0.0.1:8090/v1/ws", "--room", "demo"],
    ] {
        let (ok, stdout, stderr) = run(args);
        assert!(!ok, "{args:?} must fail in a build without rtc: {stdout}");
        assert!(
            stderr.contains("built without the `rtc` feature") && stderr.contains(build),
            "{args:?} must name the build that has it:\n{stderr}"
        );
        assert!(!stderr.contains("unrecognized subcommand"), "{stderr}");
    }
    // WebRTC load says the same; the subcommands are listed in --help.
    let (ok, _, stderr) = run(&["load", "--urls", "ws://127.0.0.1:1/v1/ws", "--proto", "v1"]);
    assert!(!ok && stderr.contains(build), "{stderr}");
    let (ok, help, _) = run(&["--help"]);
    assert!(ok && help.contains("smoke") && help.contains("join") && help.contains("rtc"), "{help}");
}
