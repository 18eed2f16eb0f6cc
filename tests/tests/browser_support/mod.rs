//! What the Chromium tests share: the tools they need (skipped with a note when missing, failed
//! under `CI=true`), one `npm install` of playwright-core (which never downloads a browser: the
//! scripts drive Debian's `/usr/bin/chromium`), one browser scenario at a time, and running a
//! scenario script under a deadline.
//!
//! The scenarios themselves are `tests/browser/*.mjs`; each prints one JSON line on success and,
//! on failure, the reason followed by every page's state and console (this module puts both in
//! the panic message). Screenshots go to `target/test-artifacts/`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::{external_tool, node_binary, run_until};

/// How long a scenario may run, its own deadline (≤ 110 s) included.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(180);

/// One scenario at a time in a test binary: each runs Chromium with several pages and media
/// encoders, and two at once on a small machine make both slow enough to time out.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where screenshots go.
pub fn artifacts() -> PathBuf {
    workspace().join("target/test-artifacts")
}

/// The browser scenarios, ready to run: `None` (and a note) when node, npm or chromium is
/// missing outside CI. Holds the scenario lock for as long as the returned guard lives.
pub fn scenarios() -> Option<(PathBuf, MutexGuard<'static, ()>)> {
    if !external_tool("node") || !external_tool("npm") || !external_tool("chromium") {
        return None;
    }
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    // The pages are the node's compiled-in client: a stale node would serve stale pages.
    node_binary();
    let src = workspace().join("tests/browser");
    // npm writes node_modules next to package.json: work on a copy under target/, shared by
    // every test binary so playwright-core is installed once.
    let dir = workspace().join("target/browser-tests");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for entry in std::fs::read_dir(&src).expect("tests/browser") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "mjs" || e == "json" || e == "html") {
            std::fs::copy(&path, dir.join(path.file_name().expect("file name"))).expect("copy a scenario");
        }
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--silent"]).current_dir(&dir);
        let (ok, out, err) = run_until(npm, Instant::now() + Duration::from_secs(180));
        assert!(ok, "npm install failed\n{out}\n{err}");
    }
    Some((dir, guard))
}

/// Runs `script` (in `dir`, from [`scenarios`]) with the artifacts directory and `args`;
/// returns its JSON report. Panics with the script's whole account when it fails.
pub fn run(dir: &Path, script: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(script).arg(artifacts()).args(args).current_dir(dir);
    let (ok, out, err) = run_until(cmd, Instant::now() + SCENARIO_DEADLINE);
    assert!(ok, "{script} failed\n--- stdout\n{out}\n--- stderr (reason, then the pages' state and console)\n{err}");
    report_of(script, &out)
}

/// A scenario's JSON report: its last line that is an object, which must say `ok`.
fn report_of(script: &str, out: &str) -> Value {
    println!("{}", out.trim());
    let line =
        out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{script} printed no report:\n{out}"));
    let report: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: bad report {line}: {e}"));
    assert_eq!(report["ok"], true, "{report}");
    report
}

/// Asserts every path the report lists under `key` is a saved screenshot.
pub fn assert_screenshots(report: &Value, key: &str) {
    let shots: Vec<&str> = match &report[key] {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        other => panic!("no screenshots under {key}: {other}"),
    };
    assert!(!shots.is_empty(), "{report}");
    for shot in shots {
        let meta = std::fs::metadata(shot).unwrap_or_else(|e| panic!("screenshot {shot}: {e}"));
        assert!(meta.len() > 1000, "screenshot {shot} is empty");
    }
}

/// Like [`run`], for a scenario that needs the test to act midway (break a network path, say):
/// each stdout line `control <command>` goes to `control`, whose answer goes back to the script
/// as one line on its stdin. Everything else is as [`run`] does it, the deadline included.
pub fn run_controlled(dir: &Path, script: &str, args: &[&str], mut control: impl FnMut(&str) -> String) -> Value {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    use std::sync::mpsc::{RecvTimeoutError, channel};

    let mut child = Command::new("node")
        .arg(script)
        .arg(artifacts())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (lines, incoming) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + SCENARIO_DEADLINE;
    let mut out = String::new();
    let mut timed_out = false;
    loop {
        match incoming.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(command) = line.strip_prefix("control ") {
                    let answer = control(command.trim());
                    // A script that died meanwhile reports itself through its exit status.
                    let _ = writeln!(stdin, "{answer}").and_then(|()| stdin.flush());
                }
                out.push_str(&line);
                out.push('\n');
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                let _ = child.kill();
                timed_out = true;
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    drop(stdin);
    let ok = child.wait().is_ok_and(|s| s.success()) && !timed_out;
    let err = errors.join().unwrap_or_default();
    let why = if timed_out { format!("killed after {SCENARIO_DEADLINE:?}\n") } else { String::new() };
    assert!(
        ok,
        "{script} failed\n{why}--- stdout\n{out}\n--- stderr (reason, then the pages' state and console)\n{err}"
    );
    report_of(script, &out)
}
