//! The browser SDK's resume logic without a browser or a node: `sdk_resume/check.mjs` plays the
//! server's side of a session by hand against the SDK's signaling modules, over a fake
//! WebSocket in Node (numbering and acks, a break, a silent socket, a refusal, the end of the
//! window, a second URL, a drain, a clean close). The browser tests
//! (tests/tests/browser_resume.rs) do the same against real nodes, with real breaks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_tests::{external_tool, run_until};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the gateway crate sits in the workspace").to_path_buf()
}

#[test]
fn the_sdk_resumes_its_session_against_a_scripted_server() {
    if !external_tool("node") {
        return;
    }
    // The SDK's files are ES modules with a `.js` name: Node takes them for modules only under a
    // package.json that says so, which gateway/static has no business holding.
    let dir = root().join("target/sdk-resume-check");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("package.json"), "{\"type\":\"module\"}\n").expect("package.json");
    let statics = root().join("gateway/static");
    for entry in std::fs::read_dir(&statics).expect("gateway/static") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name").to_string_lossy().to_string();
        if name.starts_with("switchboard-") && name.ends_with(".js") {
            std::fs::copy(&path, dir.join(&name)).unwrap_or_else(|e| panic!("copy {name}: {e}"));
        }
    }
    std::fs::copy(root().join("gateway/tests/sdk_resume/check.mjs"), dir.join("check.mjs")).expect("copy check.mjs");

    let mut node = Command::new("node");
    node.arg("check.mjs").current_dir(&dir);
    let (ok, out, err) = run_until(node, Instant::now() + Duration::from_secs(90));
    println!("{out}");
    assert!(ok, "the SDK's resume checks failed\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(out.lines().filter(|l| l.starts_with("ok ")).count() >= 9, "not every check ran:\n{out}");
}
