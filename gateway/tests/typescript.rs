//! `static/switchboard.d.ts` describes a SDK written in plain JavaScript, so nothing keeps the
//! two together but these checks: the declarations against the JS (exports, events, options),
//! against `shared` (error codes, close codes, leave reasons, roles), and tsc (npm `typescript`,
//! pinned by `tests/typescript/package-lock.json`) over an application that uses all of it and
//! over misuses it must refuse.
//!
//! The parsing is string matching over the forms these files use (no TS or JS parser): a new
//! form of declaration needs a new matcher here, and a matcher that finds nothing fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard::protocol::v1::LeaveReason;
use switchboard::protocol::{ErrorCode, Role, close};
use switchboard_tests::{external_tool, run_until};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the gateway crate sits in the workspace").to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The d.ts without its comments, which quote fields, braces and codes that are not types.
fn dts() -> String {
    let text = read("gateway/static/switchboard.d.ts");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i..].split_once("*/").map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out.lines().map(|l| l.split_once("//").map_or(l, |(code, _)| code)).collect::<Vec<_>>().join("\n")
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

/// The single-quoted literals in `s`.
fn quoted(s: &str) -> BTreeSet<String> {
    s.split('\'').skip(1).step_by(2).map(str::to_string).collect()
}

/// The text of `export type <name> = …;`.
fn type_alias<'a>(dts: &'a str, name: &str) -> &'a str {
    let decl = format!("export type {name} =");
    let start = dts.find(&decl).unwrap_or_else(|| panic!("switchboard.d.ts declares no `{decl}`")) + decl.len();
    &dts[start..start + dts[start..].find(';').expect("a type alias ends with ;")]
}

/// The string members of the union `name`.
fn string_union(dts: &str, name: &str) -> BTreeSet<String> {
    let members = quoted(type_alias(dts, name));
    assert!(!members.is_empty(), "switchboard.d.ts: `{name}` has no string members");
    members
}

/// The body of `export interface <name> {…}` (braces matched).
fn interface_body<'a>(dts: &'a str, name: &str) -> &'a str {
    let decl = format!("export interface {name} {{");
    let start = dts.find(&decl).unwrap_or_else(|| panic!("switchboard.d.ts declares no `{decl}`")) + decl.len();
    let mut depth = 1;
    for (i, c) in dts[start..].char_indices() {
        depth += match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        };
        if depth == 0 {
            return &dts[start..start + i];
        }
    }
    panic!("switchboard.d.ts: `{name}` is not closed")
}

/// The property names at the top level of an interface body (`name:`, `name?:`, `'a-b':`).
fn property_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut depth = 0;
    for line in body.lines() {
        let t = line.trim();
        if depth == 0
            && let Some((key, _)) = t.split_once(':')
        {
            let key = key.trim_end_matches('?').trim_matches('\'');
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                names.insert(key.to_string());
            }
        }
        depth += t.matches(['{', '(']).count() as i32 - t.matches(['}', ')']).count() as i32;
    }
    names
}

/// Every identifier that follows `prefix` in `text` (`options.` → `url`, `token`, …).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            rest[..rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len())].to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn error_code_unions_are_the_protocols_and_the_sdks() {
    let dts = dts();
    let server = set(ErrorCode::ALL.iter().map(|c| c.as_str()));
    assert_eq!(string_union(&dts, "ServerErrorCode"), server, "ServerErrorCode against ErrorCode::ALL");

    // The SDK's own codes are declared once, in the JS (gateway/tests/sdk_codes.rs holds the SDK
    // to that list); the d.ts must name the same.
    let js = read("gateway/static/switchboard-protocol.js");
    let decl = "CLIENT_CODES = Object.freeze([";
    let start =
        js.find(decl).expect("switchboard-protocol.js declares `CLIENT_CODES = Object.freeze([…])`") + decl.len();
    let client = quoted(&js[start..start + js[start..].find("])").expect("CLIENT_CODES is closed")]);
    assert!(!client.is_empty(), "CLIENT_CODES is empty");
    assert_eq!(string_union(&dts, "ClientErrorCode"), client, "ClientErrorCode against CLIENT_CODES");

    let all = type_alias(&dts, "SwitchboardErrorCode");
    assert_eq!(
        all.split('|').map(str::trim).collect::<BTreeSet<_>>(),
        BTreeSet::from(["ServerErrorCode", "ClientErrorCode"])
    );
}

#[test]
fn close_code_union_is_shareds() {
    // Every `pub const NAME: u16 = N;` of `protocol::close`: a code added there shows up here.
    let source = read("shared/src/protocol/mod.rs");
    let module = &source[source.find("pub mod close {").expect("shared has `pub mod close`")..];
    let module = &module[..module.find("\n}").expect("`pub mod close` is closed")];
    let shared: BTreeSet<String> = module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const ")?.split_once(": u16 = "))
        .map(|(_, value)| value.trim_end_matches(';').to_string())
        .collect();
    for known in [close::NORMAL, close::SERVICE_RESTART, close::RESUME_FAILED, close::UNAUTHORIZED] {
        assert!(shared.contains(&known.to_string()), "the parse of protocol::close missed {known}");
    }
    let declared: BTreeSet<String> =
        type_alias(&dts(), "ServerCloseCode").split('|').map(|m| m.trim().to_string()).collect();
    assert_eq!(declared, shared, "ServerCloseCode against shared's protocol::close");
}

#[test]
fn leave_reasons_and_roles_are_shareds() {
    // The matches fail to compile when a variant is added: then add it to the list too.
    let reasons = [
        LeaveReason::Left,
        LeaveReason::Disconnected,
        LeaveReason::Timeout,
        LeaveReason::SlowConsumer,
        LeaveReason::Replaced,
        LeaveReason::Shutdown,
        LeaveReason::NodeLost,
        LeaveReason::Kicked,
        LeaveReason::RoomClosed,
    ];
    for r in reasons {
        match r {
            LeaveReason::Left
            | LeaveReason::Disconnected
            | LeaveReason::Timeout
            | LeaveReason::SlowConsumer
            | LeaveReason::Replaced
            | LeaveReason::Shutdown
            | LeaveReason::NodeLost
            | LeaveReason::Kicked
            | LeaveReason::RoomClosed => {}
        }
    }
    let roles = [Role::Participant, Role::Viewer];
    for r in roles {
        match r {
            Role::Participant | Role::Viewer => {}
        }
    }
    let dts = dts();
    // `peer-left` also says the SDK's own: our connection dropped, or we hung up.
    let mut peer_left = set(reasons.iter().map(|r| r.as_str()));
    peer_left.extend(set(["reconnecting", "hung-up"]));
    assert_eq!(string_union(&dts, "PeerLeftReason"), peer_left, "PeerLeftReason");
    assert_eq!(string_union(&dts, "RemovedReason"), set(["kicked", "room-closed"]), "RemovedReason");
    assert!(string_union(&dts, "RemovedReason").iter().all(|r| peer_left.contains(r)));
    assert_eq!(string_union(&dts, "Role"), set(roles.iter().map(|r| r.as_str())), "Role");
}

#[test]
fn declarations_match_the_sdks_exports_events_and_options() {
    let dts = dts();
    let entry = read("gateway/static/switchboard.js");
    let rtc = read("gateway/static/switchboard-rtc.js");
    let signaling = read("gateway/static/switchboard-signaling.js");

    // What `switchboard.js` exports at run time, and what the d.ts says exists at run time.
    let mut exported = BTreeSet::new();
    for kind in ["export class ", "export function ", "export const "] {
        exported.extend(names_after(&entry, kind));
    }
    for (at, _) in entry.match_indices("export {") {
        let list = &entry[at + "export {".len()..];
        let list = &list[..list.find('}').expect("export list is closed")];
        exported.extend(list.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()));
    }
    let mut declared = BTreeSet::new();
    for kind in ["export declare class ", "export declare function ", "export declare const "] {
        declared.extend(names_after(&dts, kind));
    }
    assert!(exported.contains("connect"), "the export parse of switchboard.js found {exported:?}");
    assert_eq!(declared, exported, "run-time exports of switchboard.js against switchboard.d.ts");

    // Every event the client or a peer dispatches has its fields declared, and nothing else does.
    let mut emitted = BTreeSet::new();
    for src in [&entry, &rtc] {
        for (at, _) in src.match_indices("emit('") {
            let name = &src[at + "emit('".len()..];
            emitted.insert(name[..name.find('\'').expect("a closed literal")].to_string());
        }
    }
    assert!(emitted.contains("connection-state") && emitted.contains("track"), "the emit parse found {emitted:?}");
    let events = property_names(interface_body(&dts, "SwitchboardEventFields"));
    assert_eq!(events, emitted, "SwitchboardEventFields against the events switchboard.js and switchboard-rtc.js emit");

    // Every option the client reads, and the backoff's fields the connection reads.
    let mut read_options = names_after(&entry, "options.");
    read_options.extend(names_after(&entry, "this.#opts."));
    let options = property_names(interface_body(&dts, "ConnectOptions"));
    assert!(read_options.contains("token"), "the option parse found {read_options:?}");
    assert_eq!(options, read_options, "ConnectOptions against the options switchboard.js reads");
    let body = interface_body(&dts, "ConnectOptions");
    let backoff = &body[body.find("reconnect?: {").expect("ConnectOptions.reconnect is an object type")..];
    let backoff =
        property_names(&backoff["reconnect?: {".len()..backoff.find('}').expect("closed")].replace(';', "\n"));
    let read_backoff = names_after(&signaling, "reconnect?.");
    assert!(!read_backoff.is_empty(), "no `reconnect?.` reads found in switchboard-signaling.js");
    assert_eq!(backoff, read_backoff, "ConnectOptions.reconnect against what switchboard-signaling.js reads");
}

/// Where npm installs the pinned compiler: under target/, out of the source tree.
fn compiler_dir() -> PathBuf {
    root().join("target/typescript-check")
}

#[test]
fn tsc_accepts_the_example_and_rejects_the_misuse() {
    if !external_tool("node") || !external_tool("npm") {
        return;
    }
    let project = root().join("gateway/tests/typescript");
    let dir = compiler_dir();
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let lock = std::fs::read(project.join("package-lock.json")).expect("a committed package-lock.json");
    let installed = std::fs::read(dir.join("package-lock.json")).is_ok_and(|l| l == lock)
        && dir.join("node_modules/typescript/package.json").is_file();
    if !installed {
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(project.join(file), dir.join(file)).unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--silent"]).current_dir(&dir);
        let (ok, out, err) = run_until(npm, Instant::now() + Duration::from_secs(180));
        assert!(ok, "npm ci failed\n{out}\n{err}");
    }

    let mut tsc = Command::new("node");
    tsc.arg(dir.join("node_modules/typescript/bin/tsc"))
        .args(["--pretty", "false", "--listFiles", "-p"])
        .arg(project.join("tsconfig.json"))
        .current_dir(&project);
    let (ok, out, err) = run_until(tsc, Instant::now() + Duration::from_secs(120));
    assert!(
        ok,
        "tsc found type errors (example.ts must compile; every @ts-expect-error line in misuse.ts must not)\n{out}\n{err}"
    );
    // A tsconfig that lost a file would pass without checking it.
    for file in ["switchboard.d.ts", "example.ts", "misuse.ts"] {
        assert!(out.lines().any(|l| l.ends_with(file)), "tsc did not check {file}:\n{out}");
    }
    assert!(!out.contains("switchboard.js"), "tsc read the JavaScript instead of the declarations:\n{out}");
}
