//! The Kubernetes manifests, checked without a cluster: every overlay builds with kustomize,
//! every object passes strict schema validation for a current Kubernetes version
//! (`kubernetes-validate`), the security scan (`checkov`) finds nothing that is not accepted
//! with a reason in the manifest itself, and every `SWITCHBOARD_*` variable the manifests set
//! is a flag the binary it is given to actually reads (configuration drift fails here, not in a
//! crash-looping pod).
//!
//! The Dockerfile gets the same scan.
//!
//! `.ci/run` installs the Python tools into a virtualenv on PATH; `kubectl` (for its built-in
//! kustomize) comes with the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_tests::{external_tool, external_tool_probed, node_binary, run_until};

const BUILDS: [&str; 4] = ["overlays/dev", "overlays/prod", "overlays/prod-redis-ca", "smoke"];

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s")
}

fn kubectl() -> bool {
    external_tool_probed("kubectl", &["version", "--client"])
}

fn kustomize(dir: &str) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.arg("kustomize").arg(k8s_dir().join(dir));
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(60));
    assert!(ok, "kustomize {dir} failed: {err}");
    out
}

/// Writes each build to a scratch directory, one file per build.
fn rendered() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-rendered");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    BUILDS
        .iter()
        .map(|b| {
            let path = dir.join(format!("{}.yaml", b.replace('/', "-")));
            std::fs::write(&path, kustomize(b)).expect("write rendered manifests");
            (b.to_string(), path)
        })
        .collect()
}

#[test]
fn every_overlay_passes_strict_schema_validation() {
    if !kubectl() || !external_tool("kubernetes-validate") {
        return;
    }
    for (build, path) in rendered() {
        let mut cmd = Command::new("kubernetes-validate");
        cmd.args(["--strict", "--quiet"]).arg(&path);
        let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(120));
        assert!(ok, "{build} fails schema validation:\n{out}\n{err}");
    }
}

#[test]
fn the_security_scan_finds_nothing_unexplained() {
    if !kubectl() || !external_tool("checkov") {
        return;
    }
    let rendered = rendered();
    let dir = rendered[0].1.parent().expect("scratch dir").to_path_buf();
    let mut cmd = Command::new("checkov");
    cmd.arg("-d").arg(&dir).args(["--framework", "kubernetes", "--compact", "--quiet", "--skip-download"]);
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(300));
    assert!(
        ok,
        "checkov found problems (accept one only with a `checkov.io/skipN` annotation and a reason):\n{out}\n{err}"
    );
    let mut cmd = Command::new("checkov");
    cmd.arg("-f").arg(k8s_dir().join("../Dockerfile"));
    cmd.args(["--framework", "dockerfile", "--compact", "--quiet", "--skip-download"]);
    let (ok, out, err) = run_until(cmd, Instant::now() + Duration::from_secs(300));
    assert!(ok, "checkov found problems in the Dockerfile (accept with `#checkov:skip=ID:reason`):\n{out}\n{err}");
}

/// `SWITCHBOARD_*` names a container sets, by the binary its `command` runs.
fn env_names_by_binary(yaml: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut binary: Option<String> = None;
    // kustomize writes `command:` as a block list: the program is on the next line.
    let mut command_follows = false;
    let program =
        |text: &str| text.split('/').next_back().map(|b| b.trim_matches(|c: char| "\"[] ".contains(c)).to_string());
    for line in yaml.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        if command_follows {
            binary = program(t);
            command_follows = false;
        }
        if let Some(cmd) = t.strip_prefix("command:") {
            if cmd.trim().is_empty() {
                command_follows = true;
            } else {
                binary = program(cmd);
            }
        }
        if let (Some(name), Some(bin)) = (t.strip_prefix("name: SWITCHBOARD_"), &binary) {
            found.push((bin.clone(), format!("SWITCHBOARD_{}", name.trim())));
        }
    }
    found
}

#[test]
fn every_variable_the_manifests_set_is_read_by_its_binary() {
    if !kubectl() {
        return;
    }
    let target = Path::new(&node_binary()).parent().expect("target dir").to_path_buf();
    let help = |bin: &str| {
        let out = Command::new(target.join(bin)).arg("--help").output().expect("run --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // clap prints `[env: NAME=value]`, or `[env: NAME]` for hidden values.
    let reads =
        |help: &str, name: &str| help.contains(&format!("env: {name}=")) || help.contains(&format!("env: {name}]"));
    // The ConfigMap goes to both binaries through envFrom: each must read every key.
    let base = kustomize("overlays/prod");
    let configmap: Vec<String> = base
        .split("\n---\n")
        .filter(|doc| doc.contains("kind: ConfigMap"))
        .flat_map(|doc| doc.lines().filter_map(|l| l.trim().split_once(':')).map(|(k, _)| k.to_string()))
        .filter(|k| k.starts_with("SWITCHBOARD_"))
        .collect();
    assert!(!configmap.is_empty(), "no ConfigMap keys found");
    let mut checked = 0;
    for bin in ["switchboard-node", "switchboard-gateway"] {
        if !target.join(bin).is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo).args(["build", "--quiet", "-p", bin, "--bin", bin]).status();
            assert!(status.is_ok_and(|s| s.success()), "cannot build {bin}");
        }
        let help = help(bin);
        for name in &configmap {
            assert!(reads(&help, name), "{bin} does not read {name} (set by the ConfigMap)");
            checked += 1;
        }
        for build in ["overlays/dev", "overlays/prod"] {
            for (b, name) in env_names_by_binary(&kustomize(build)) {
                if b == bin {
                    assert!(reads(&help, &name), "{build}: {bin} does not read {name}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} variables checked: the manifest parsing broke");
}
