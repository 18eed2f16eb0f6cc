//! The demo page in real headless Chromium (Debian's, with a fake camera and microphone): two
//! tabs call each other through a real node, both decode the other's video, a data-channel
//! message crosses, and a hang-up reaches the other tab. Screenshots of both tabs are saved to
//! `target/test-artifacts/`.
//!
//! The browser is driven by `tests/browser/demo-call.mjs` (playwright-core, which never
//! downloads a browser of its own).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_tests::{Node, external_tool, run_until};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-node");

#[test]
fn two_tabs_of_the_demo_page_call_each_other_in_chromium() {
    if !external_tool("node") || !external_tool("npm") || !external_tool("chromium") {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = workspace.join("tests/browser");
    // npm writes node_modules next to package.json: work on a copy under target/.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for file in ["package.json", "demo-call.mjs"] {
        std::fs::copy(src.join(file), dir.join(file)).expect("copy the browser script");
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--silent"]).current_dir(&dir);
        let (ok, out, err) = run_until(npm, Instant::now() + Duration::from_secs(120));
        assert!(ok, "npm install failed\n{out}\n{err}");
    }

    let node = Node::start(BIN, &[]);
    let artifacts = workspace.join("target/test-artifacts");
    let mut call = Command::new("node");
    call.arg("demo-call.mjs").arg(node.http_url("")).arg(&artifacts).current_dir(&dir);
    let (ok, out, err) = run_until(call, Instant::now() + Duration::from_secs(90));
    assert!(ok, "the two-tab call failed\nstdout: {out}\nstderr: {err}");
    println!("{}", out.trim());
    assert!(out.contains("\"ok\":true"), "{out}");
    assert!(artifacts.join("demo-a.png").is_file() && artifacts.join("demo-b.png").is_file());
}
