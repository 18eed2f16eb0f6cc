//! The release image, built and run without a container daemon: `image/build.sh` packs the
//! release binaries into an OCI layout with umoci; this test unpacks it into a runtime bundle
//! and runs the node in it under runc as the Kubernetes base runs it (uid 65532 from the image's
//! own config, read-only root, no capabilities), then checks `/readyz`, a call between two real
//! WebSocket clients, and a SIGTERM drain (close 1001 `shutdown`, exit 0 within the bound).
//!
//! The Dockerfile cannot be built here (no registry for its bases). What ties the two images
//! together is the build command: the script runs the Dockerfile's `cargo build` line verbatim,
//! and the test checks that the image holds those outputs byte for byte.
//!
//! Needs umoci and runc (Debian packages) and root (runc creates namespaces and cgroups);
//! otherwise skipped with a note, or failed under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Frame, V1Peer, external_tool, free_port, http_get, run_until};

/// What the node gets to drain (`--shutdown-timeout-secs`); it exits 2 s before at the latest.
const SHUTDOWN_SECS: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_image_runs_under_runc_and_drains() {
    if !external_tool("umoci") || !external_tool(runc()) {
        return;
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "runc needs root under CI");
        println!("skipped: runc needs root (namespaces, cgroups)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let version = workspace_version(&root);

    // A cold release build takes minutes on a small machine; afterwards this is cargo's
    // no-op check plus, only if a binary changed, the repack.
    let started = Instant::now();
    let mut build = Command::new("bash");
    build.arg(root.join("image/build.sh")).current_dir(&root);
    let (ok, out, err) = run_until(build, Instant::now() + Duration::from_secs(40 * 60));
    assert!(ok, "image/build.sh failed\nstdout: {out}\nstderr: {err}");
    println!("image built in {:.1} s: {}", started.elapsed().as_secs_f64(), out.trim());

    let run = Run::new();
    let image = format!("{}:{version}", target_dir().join("oci/switchboard").display());
    let (ok, out, err) = run_until(cmd("umoci", &["unpack", "--image", &image, path(&run.bundle)]), deadline(120));
    assert!(ok, "umoci unpack failed\nstdout: {out}\nstderr: {err}");
    let rootfs = run.bundle.join("rootfs");

    // The Dockerfile's build stage runs the same `cargo build` lines on the same sources and
    // lock file; the image must hold exactly what they left in target/release.
    for bin in ["switchboard-node", "switchboard-gateway", "switchboard-peer"] {
        let in_image = std::fs::read(rootfs.join("usr/local/bin").join(bin)).expect("binary in the image");
        let built = std::fs::read(target_dir().join("release").join(bin)).expect("release binary");
        assert!(in_image == built, "{bin} in the image differs from target/release/{bin}");
    }
    // distroless-like: no shell to exec into, and the `nonroot` account.
    assert!(!rootfs.join("bin/sh").exists(), "the image has a shell");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config_path = run.bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).expect("config.json")).expect("json");
    // The user comes from the image (`umoci config --config.user`), not from this test.
    assert_eq!(config["process"]["user"]["uid"], 65532, "{}", config["process"]);
    assert_eq!(config["process"]["user"]["gid"], 65532, "{}", config["process"]);
    assert_eq!(config["process"]["args"][0], "/usr/local/bin/switchboard-node");
    adapt(&mut config, &addr);
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config.json");

    let mut runc = run.start();
    let ready_in = wait_ready(&addr, &mut runc, &run);
    println!("container ready in {} ms", ready_in.as_millis());
    assert_eq!(http_get(&addr, "/healthz", &[]).0, 200);

    // What the kernel says about the container's process: Kubernetes' securityContext, held.
    let pid = run.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uids = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    assert_eq!(uids.split_whitespace().skip(1).collect::<Vec<_>>(), ["65532"; 4], "{uids}");
    let caps = status.lines().find(|l| l.starts_with("CapEff:")).expect("CapEff line");
    assert!(caps.ends_with("0000000000000000"), "{caps}");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root_mount = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/")).expect("root mount");
    assert!(root_mount.split(' ').nth(5).is_some_and(|o| o.split(',').any(|f| f == "ro")), "{root_mount}");

    // A call: join, offer and answer relayed.
    let url = format!("ws://{addr}/v1/ws");
    let mut a = V1Peer::connect(&url).await;
    let mut b = V1Peer::connect(&url).await;
    a.join("image-call").await;
    let joined = b.join("image-call").await;
    assert_eq!(joined["peers"][0]["peer_id"], json!(a.id), "{joined}");
    assert_eq!(a.ws.expect("peer-joined").await["peer"]["peer_id"], json!(b.id));
    a.signal("image-call", &b.id, json!({"type": "offer", "sdp": "v=0\r\n"})).await;
    let offer = b.ws.expect("signal").await;
    assert_eq!((offer["from"].clone(), offer["data"]["type"].clone()), (json!(a.id), json!("offer")), "{offer}");
    b.signal("image-call", &a.id, json!({"type": "answer", "sdp": "v=0\r\n"})).await;
    let answer = a.ws.expect("signal").await;
    assert_eq!((answer["from"].clone(), answer["data"]["type"].clone()), (json!(b.id), json!("answer")), "{answer}");

    // SIGTERM through the runtime, as the kubelet sends it: a lone node has nowhere to hand its
    // sessions to, so it closes them 1001 `shutdown` and exits 0 within its bound.
    let terminated = Instant::now();
    let (ok, out, err) = run_until(run.runc(&["kill", &run.id, "TERM"]), deadline(10));
    assert!(ok, "runc kill failed\nstdout: {out}\nstderr: {err}");
    for (who, p) in [("a", &mut a), ("b", &mut b)] {
        loop {
            match p.ws.next().await {
                // The partner's session may be closed first; its room says so before ours closes.
                Frame::Json(m) if m["type"] == "peer-left" && m["reason"] == "shutdown" => continue,
                Frame::Close(close) => {
                    assert_eq!(close, Some((1001, "shutdown".to_string())), "{who}\n{}", run.log());
                    break;
                }
                other => panic!("{who}: expected close 1001 shutdown, got {other:?}\n{}", run.log()),
            }
        }
    }
    // Read on, so the clients' halves of the closing handshakes go out.
    for p in [&mut a, &mut b] {
        let _ = p.ws.next_within(Duration::from_millis(200)).await;
    }
    let bound = Duration::from_secs(SHUTDOWN_SECS);
    let exit = loop {
        if let Some(status) = runc.try_wait().expect("wait for runc") {
            break status;
        }
        assert!(terminated.elapsed() < bound, "the node did not exit within {bound:?}\n{}", run.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "the node exited {exit}\n{}", run.log());
    println!("drained: both closed 1001, exit 0 seen {} ms after SIGTERM", terminated.elapsed().as_millis());
}

/// The test's view of the bundle umoci generated: the node on the host's loopback, and the
/// rest as the Kubernetes base has it.
fn adapt(config: &mut Value, addr: &str) {
    let process = &mut config["process"];
    process["terminal"] = json!(false);
    let args = process["args"].as_array_mut().expect("args");
    let secs = SHUTDOWN_SECS.to_string();
    args.extend(
        ["--listen", addr, "--log", "warn", "--demo", "--node-id", "image-test", "--shutdown-timeout-secs", &secs]
            .map(Value::from),
    );
    // `capabilities: drop: ["ALL"]`, `allowPrivilegeEscalation: false`.
    process["capabilities"] =
        json!({"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []});
    process["noNewPrivileges"] = json!(true);
    // `readOnlyRootFilesystem: true`.
    config["root"]["readonly"] = json!(true);
    // Share the host's network namespace, so the test reaches the node on 127.0.0.1 without
    // setting up a bridge (what a CNI plugin does in a cluster).
    let namespaces = config["linux"]["namespaces"].as_array_mut().expect("namespaces");
    namespaces.retain(|ns| ns["type"] != "network");
}

/// A runc container of this test: its state directory, bundle and id, all under one temp dir;
/// on drop the container is deleted (killed if still running) whatever the test's outcome,
/// which also ends a foreground `runc run`.
struct Run {
    dir: PathBuf,
    state: PathBuf,
    bundle: PathBuf,
    id: String,
}

impl Run {
    fn new() -> Run {
        let id = format!("switchboard-image-{}-{}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Run { state: dir.join("state"), bundle: dir.join("bundle"), dir, id }
    }

    fn runc(&self, args: &[&str]) -> Command {
        let mut c = cmd(runc(), &["--root", path(&self.state)]);
        c.args(args);
        c
    }

    /// `runc run` in the foreground, as a child of the test: unlike `run -d`, it stays to
    /// reap the container's process and exits with its status, which the drain check needs.
    fn start(&self) -> Child {
        let log = std::fs::File::create(self.dir.join("node.log")).expect("log");
        self.runc(&["run", "--bundle", path(&self.bundle), &self.id])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("runc run")
    }

    /// The container's init process (the node), as runc reports it.
    fn pid(&self) -> u32 {
        let (ok, out, err) = run_until(self.runc(&["state", &self.id]), deadline(10));
        assert!(ok, "runc state: {err}");
        let state: Value = serde_json::from_str(&out).expect("runc state json");
        state["pid"].as_u64().expect("pid") as u32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "-f", &self.id]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `/readyz` until 200; panics with the container's output if runc exits first or the
/// node is not ready within 15 s.
fn wait_ready(addr: &str, runc: &mut Child, run: &Run) -> Duration {
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/readyz", &[]).0 == 200 {
            return start.elapsed();
        }
        if let Ok(Some(status)) = runc.try_wait() {
            panic!("runc exited ({status}) before the node was ready\n{}", run.log());
        }
        assert!(start.elapsed() < Duration::from_secs(15), "node in the container never ready\n{}", run.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `runc` from PATH, or Debian's `/usr/sbin/runc` where `/usr/sbin` is not on it.
fn runc() -> &'static str {
    let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("runc").is_file()));
    if !on_path && Path::new("/usr/sbin/runc").is_file() { "/usr/sbin/runc" } else { "runc" }
}

/// The target directory this test was built in (`target/debug/deps/<test>` → `target`), which
/// is where the script's cargo builds put the release binaries too.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

fn workspace_version(root: &Path) -> String {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version")
        .to_string()
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}
