//! The command line as a newcomer meets it: mistakes are answered with what to type instead,
//! switches are plain switches, logs are readable wherever they go, and a node that cannot
//! reach its Redis says so, naming it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use switchboard_tests::free_port;

#[test]
fn mistakes_are_answered_with_what_to_type_instead() {
    refuses_to_start(
        &["--port", "9793"],
        "there is no --port: the port is part of --listen, e.g. --listen 0.0.0.0:9793",
    );
    for (listen, says) in [("9793", "give an address too, e.g. 0.0.0.0:9793"), ("localhost", "expected IP:PORT")] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (ok, _, stderr) = switchboard_tests::run_until(node_command(&["--listen", listen]), deadline);
        assert!(!ok && stderr.contains(says), "--listen {listen}: stderr does not say {says:?}:\n{stderr}");
    }
    refuses_to_start(&["--redis-url", "nonsense"], "expected redis[s]://[[USER]:PASSWORD@]HOST:PORT[/DB]");
    refuses_to_start(
        &["--redis-url", "redis+sentinel://s1:26379,s2:26379"],
        "a Sentinel URL names its master after the hosts: /MASTER",
    );
    refuses_to_start(
        &["--redis-url", "redis://cache:6379", "--redis-tls-ca-file", "/etc/ssl/certs/ca-certificates.crt"],
        "refusing to start (bad-redis-url): --redis-tls-* files are set but the Redis URL does not use TLS",
    );
    refuses_to_start(
        &["--redis-url", "rediss://cache:6380", "--redis-tls-ca-file", "/nonexistent/ca.pem"],
        "--redis-tls-ca-file /nonexistent/ca.pem: No such file",
    );
    refuses_to_start(
        &["--redis-url", "rediss://cache:6380", "--redis-tls-cert-file", "/nonexistent/client.pem"],
        "--redis-tls-cert-file and --redis-tls-key-file go together",
    );
    refuses_to_start(&["--redis-url", "redis+cluster://c1:7000,c2:7000/0"], "unexpected path after the hosts");
    refuses_to_start(
        &["--redis-url", "redis+cluster://c1:7000", "--redis-buckets", "0"],
        "invalid value '0' for '--redis-buckets <REDIS_BUCKETS>'",
    );
    refuses_to_start(&["--redis-url", "redis+cluster://c1:7000", "--redis-buckets", "257"], "1..=256");
}

#[test]
fn on_off_flags_are_plain_switches_that_also_take_a_value() {
    // `--production` alone means true: the node then insists on secrets.
    refuses_to_start(&["--production"], "--production requires --token-secrets");
    refuses_to_start(&["--production=true"], "--production requires --token-secrets");
    for args in
        [&["--demo"][..], &["--demo=false"], &["--demo", "false"], &["--allow-anonymous"], &["--production=false"]]
    {
        let mut child = start_logged(args);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts the node with `args`, its output piped, and waits for its `listening on` line.
fn start_logged(args: &[&str]) -> std::process::Child {
    start_with_env(args, &[])
}

fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut cmd = node_command(&all);
    cmd.env_remove("RUST_LOG").stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("node binary");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout).lines().next().and_then(Result::ok).unwrap_or_default();
    assert!(line.starts_with("listening on"), "{args:?} did not start: {line:?}");
    child
}

/// Reads `child`'s stderr until `want` shows up (or `within` passes), then stops the child.
fn stderr_until(mut child: std::process::Child, want: &str, within: Duration) -> String {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(want) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn logs_are_readable_in_a_file_and_an_empty_rust_log_does_not_silence_them() {
    let child = start_with_env(&[], &[("RUST_LOG", "")]);
    let log = stderr_until(child, "demo page", Duration::from_secs(10));
    assert!(log.contains("node up"), "an empty RUST_LOG silenced the logs:\n{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{log:?}");
    assert!(log.contains("demo page: http://127.0.0.1:"), "the demo's address is not said:\n{log}");
}

#[test]
fn a_node_that_cannot_reach_its_redis_says_so_naming_it() {
    let port = free_port();
    let url = format!("redis://:secret@127.0.0.1:{port}");
    let child = start_logged(&["--redis-url", &url]);
    let log = stderr_until(child, "cannot reach Redis", Duration::from_secs(10));
    assert!(log.contains("cannot reach Redis"), "no word of Redis being unreachable:\n{log}");
    assert!(log.contains(&format!("127.0.0.1:{port}")), "the address is not named:\n{log}");
    assert!(!log.contains("secret"), "the password is in the log:\n{log}");

    // Through sentinels that do not answer: named too, with the master's name, no password.
    let url = format!("redis+sentinel://:secret@127.0.0.1:{port}/cache-master");
    let log = stderr_until(start_logged(&["--redis-url", &url]), "cannot reach Redis", Duration::from_secs(10));
    assert!(log.contains(&format!("master cache-master via sentinels 127.0.0.1:{port}")), "not named:\n{log}");
    assert!(!log.contains("secret"), "the password is in the log:\n{log}");
}

/// `--workers` beyond the CPUs the process may run on is capped, and the node says so: two
/// busy workers on one CPU take turns in the kernel's time slices, milliseconds per relay.
#[test]
fn workers_beyond_the_cpus_the_node_may_use_are_capped_with_a_warning() {
    use std::os::unix::process::CommandExt;
    let mut cmd = node_command(&["--listen", "127.0.0.1:0", "--workers", "2"]);
    cmd.env_remove("RUST_LOG").stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls: sched_setaffinity on a
    // stack-allocated set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("node binary");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout).lines().next().and_then(Result::ok).unwrap_or_default();
    assert!(line.starts_with("listening on"), "the node did not start: {line:?}");
    let log = stderr_until(child, "starting 1 workers", Duration::from_secs(10));
    assert!(log.contains("--workers 2 is more than the 1 CPU"), "no word of the cap:\n{log}");
    assert!(log.contains("starting 1 workers"), "two workers share one CPU:\n{log}");
}
