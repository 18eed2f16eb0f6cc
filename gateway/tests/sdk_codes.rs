//! The browser SDK (gateway/static, plain JS with no build step) and docs/protocol.md spell the
//! protocol's error and close codes out as literals, while `shared` is the one place that
//! defines them. A renamed or removed code would otherwise break only the browser, at run time:
//! here every code the JS and the docs name is held to `ErrorCode::ALL` and `protocol::close`.
//!
//! The scanning is plain string matching over a few forms the SDK uses (no JS parser): it finds
//! what the code base writes today, and a new form of naming a code needs a new matcher here.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use switchboard::protocol::{ErrorCode, close};

/// Every close code in `shared`, by the name the SDK's `CLOSE_<NAME>` constants take. The values
/// come from `shared` itself; only a constant added there must be added here too (the docs
/// check below fails until it is, once the docs list it).
const SHARED_CLOSE: [(&str, u16); 12] = [
    ("NORMAL", close::NORMAL),
    ("GOING_AWAY", close::GOING_AWAY),
    ("PROTOCOL_ERROR", close::PROTOCOL_ERROR),
    ("INVALID_PAYLOAD", close::INVALID_PAYLOAD),
    ("TOO_BIG", close::TOO_BIG),
    ("SERVICE_RESTART", close::SERVICE_RESTART),
    ("RESUME_FAILED", close::RESUME_FAILED),
    ("TRY_AGAIN_LATER", close::TRY_AGAIN_LATER),
    ("IDLE_TIMEOUT", close::IDLE_TIMEOUT),
    ("SLOW_CONSUMER", close::SLOW_CONSUMER),
    ("UNAUTHORIZED", close::UNAUTHORIZED),
    ("FORBIDDEN", close::FORBIDDEN),
];

/// Where the SDK declares its client-side codes.
const CLIENT_CODES_FILE: &str = "switchboard-protocol.js";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the gateway crate sits in the workspace").to_path_buf()
}

/// A JS source file, named as the failure messages show it (relative to the repository).
struct Source {
    name: String,
    text: String,
}

/// Every JS file the gateway serves, and the browser tests that drive them: a code compared in
/// the demo or a test is as broken by a rename as one in the SDK.
fn sources() -> Vec<Source> {
    let root = repo_root();
    let mut out = Vec::new();
    for (dir, ext) in [("gateway/static", "js"), ("tests/browser", "mjs")] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.expect("read_dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
            out.push(Source { name, text });
        }
    }
    assert!(
        out.iter().any(|s| s.name.ends_with(CLIENT_CODES_FILE)),
        "no {CLIENT_CODES_FILE} found under {}",
        root.display()
    );
    out
}

fn server_codes() -> BTreeSet<&'static str> {
    ErrorCode::ALL.iter().map(|c| c.as_str()).collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// The string literal `s` starts with (after blanks), single- or double-quoted, if any. Codes
/// hold no escapes, so a backslash ends the search rather than being decoded.
fn literal_at(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let quote = s.chars().next().filter(|&q| q == '\'' || q == '"')?;
    let body = &s[1..];
    let end = body.find([quote, '\\', '\n'])?;
    (body[end..].starts_with(quote)).then(|| &body[..end])
}

/// Every string literal in `s`.
fn literals_in(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(['\'', '"']) {
        match literal_at(&rest[i..]) {
            Some(lit) => {
                out.push(lit);
                rest = &rest[i + lit.len() + 2..];
            }
            None => rest = &rest[i + 1..],
        }
    }
    out
}

/// The identifier that ends `before` (blanks skipped), e.g. `code` of `err?.code `.
fn ident_before(before: &str) -> &str {
    let t = before.trim_end();
    let start = t.rfind(|c| !is_ident(c)).map_or(0, |i| i + 1);
    &t[start..]
}

/// `s` from its start up to the first `,`, `;` or closing bracket outside brackets: one
/// property value or argument.
fn one_expression(s: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return &s[..i],
            ')' | ']' | '}' => depth -= 1,
            ',' | ';' if depth == 0 => return &s[..i],
            _ => {}
        }
    }
    s
}

/// The block `s` opens with its first `{` (braces matched; strings in it hold no braces here),
/// and where in `s` it starts.
fn block_after(s: &str) -> (usize, &str) {
    let Some(open) = s.find('{') else { return (0, "") };
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return (open, &s[open..open + i]);
                }
            }
            _ => {}
        }
    }
    (open, &s[open..])
}

/// The property path `s` starts with (after blanks), e.g. `err?.code` of ` err?.code && …`.
fn leading_path(s: &str) -> &str {
    let s = s.trim_start();
    &s[..s.find(|c| !is_ident(c) && c != '.' && c != '?').unwrap_or(s.len())]
}

/// An error code named in a source, with where (byte offset) for the message.
struct Named<'a> {
    code: &'a str,
    at: usize,
}

/// Every error code `text` names: the first argument of `new SwitchboardError('…')`, a literal
/// compared (`===`, `!==`) with something called `code`, the literals of a `code: …` property,
/// and the cases of a `switch` on a `code`.
fn named_codes(text: &str) -> Vec<Named<'_>> {
    let mut out = Vec::new();

    for (at, _) in text.match_indices("new SwitchboardError(") {
        if let Some(code) = literal_at(&text[at + "new SwitchboardError(".len()..]) {
            out.push(Named { code, at });
        }
    }
    for op in ["===", "!=="] {
        for (at, _) in text.match_indices(op) {
            let (before, after) = (&text[..at], &text[at + op.len()..]);
            if ident_before(before) == "code"
                && let Some(code) = literal_at(after)
            {
                out.push(Named { code, at });
            }
            // `'x' === e.code`: the literal on the left.
            if ident_before(leading_path(after)) == "code" {
                let t = before.trim_end();
                if let Some(q) = t.chars().last().filter(|&q| q == '\'' || q == '"')
                    && let Some(open) = t[..t.len() - 1].rfind(q)
                {
                    out.push(Named { code: &t[open + 1..t.len() - 1], at });
                }
            }
        }
    }
    for (at, _) in text.match_indices("code:") {
        if text[..at].chars().last().is_some_and(is_ident) {
            continue; // `closeCode:` and the like
        }
        for code in literals_in(one_expression(&text[at + "code:".len()..])) {
            out.push(Named { code, at });
        }
    }
    for (at, _) in text.match_indices("switch (") {
        let head = one_expression(&text[at + "switch (".len()..]);
        if ident_before(head) != "code" {
            continue;
        }
        let (open, block) = block_after(&text[at..]);
        for (case, _) in block.match_indices("case ") {
            if let Some(code) = literal_at(&block[case + "case ".len()..]) {
                out.push(Named { code, at: at + open + case });
            }
        }
    }
    out.sort_by_key(|n| n.at);
    out
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// The entries of `CLIENT_CODES = Object.freeze([…])` in `text`, if it declares them.
fn client_codes(text: &str) -> Option<Vec<&str>> {
    let decl = "CLIENT_CODES = Object.freeze([";
    let start = text.find(decl)? + decl.len();
    let end = start + text[start..].find("])")?;
    Some(literals_in(&text[start..end]))
}

#[test]
fn sdk_error_codes_are_the_servers_or_declared_client_side() {
    let server = server_codes();
    let sources = sources();
    let declaring = sources.iter().find(|s| s.name.ends_with(CLIENT_CODES_FILE)).expect("checked in sources()");
    let client = client_codes(&declaring.text).unwrap_or_else(|| {
        panic!(
            "{}: no `export const CLIENT_CODES = Object.freeze([...])`: the SDK must list its own error codes there",
            declaring.name
        )
    });
    assert!(!client.is_empty(), "{}: CLIENT_CODES is empty", declaring.name);

    let mut problems = String::new();
    let mut seen = BTreeSet::new();
    for code in &client {
        if !seen.insert(*code) {
            writeln!(problems, "{}: CLIENT_CODES lists '{code}' twice", declaring.name).unwrap();
        }
        if server.contains(code) {
            writeln!(
                problems,
                "{}: CLIENT_CODES lists '{code}', which is a server error code (ErrorCode::ALL in shared): \
                 an app could not tell the two apart",
                declaring.name
            )
            .unwrap();
        }
    }

    let mut used_client = BTreeSet::new();
    for src in &sources {
        for Named { code, at } in named_codes(&src.text) {
            if client.contains(&code) {
                used_client.insert(code);
            } else if !server.contains(code) {
                writeln!(
                    problems,
                    "{}:{}: names error code '{code}', which is neither a server code (ErrorCode::ALL in shared) \
                     nor one of the SDK's CLIENT_CODES ({CLIENT_CODES_FILE})",
                    src.name,
                    line_of(&src.text, at)
                )
                .unwrap();
            }
        }
    }
    for code in client.iter().filter(|c| !used_client.contains(*c)) {
        writeln!(problems, "{}: CLIENT_CODES lists '{code}', which no SDK file uses any more", declaring.name).unwrap();
    }
    assert!(problems.is_empty(), "SDK error codes out of step with shared:\n{problems}");
}

/// `CLOSE_<NAME> = <number>` declarations in `text`: (name, value or the text that is not one, offset).
fn close_constants(text: &str) -> Vec<(&str, Result<u16, &str>, usize)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("const CLOSE_") {
        let rest = &text[at + "const CLOSE_".len()..];
        let name_len = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        let name = &rest[..name_len];
        let Some(value) = rest[name_len..].trim_start().strip_prefix('=') else { continue };
        let value = one_expression(value).trim();
        out.push((name, value.parse::<u16>().map_err(|_| value), at));
    }
    out
}

#[test]
fn sdk_close_codes_match_shared() {
    let mut problems = String::new();
    let mut found = 0;
    for src in &sources() {
        for (name, value, at) in close_constants(&src.text) {
            found += 1;
            let line = line_of(&src.text, at);
            let shared = SHARED_CLOSE.iter().find(|(n, _)| *n == name).map(|&(_, v)| v);
            match (value, shared) {
                (Err(text), _) => {
                    writeln!(problems, "{}:{line}: CLOSE_{name} is `{text}`, not a number literal", src.name).unwrap()
                }
                (Ok(_), None) => writeln!(
                    problems,
                    "{}:{line}: CLOSE_{name} has no counterpart close::{name} in shared (shared/src/protocol/mod.rs)",
                    src.name
                )
                .unwrap(),
                (Ok(v), Some(want)) if v != want => writeln!(
                    problems,
                    "{}:{line}: CLOSE_{name} is {v}, but close::{name} in shared is {want}",
                    src.name
                )
                .unwrap(),
                _ => {}
            }
        }
        // The application range (4000–4999) is all the server's own: compared bare, such a code
        // escapes the check above.
        for op in ["===", "!=="] {
            for (at, _) in src.text.match_indices(op) {
                let rhs = one_expression(src.text[at + op.len()..].trim_start()).trim();
                if rhs.parse::<u16>().is_ok_and(|n| (4000..5000).contains(&n)) {
                    writeln!(
                        problems,
                        "{}:{}: compares with close code {rhs} as a bare number: declare a CLOSE_ constant",
                        src.name,
                        line_of(&src.text, at)
                    )
                    .unwrap();
                }
            }
        }
    }
    assert!(found > 0, "no CLOSE_ constants found in the SDK: has the declaration form changed?");
    assert!(problems.is_empty(), "SDK close codes out of step with shared:\n{problems}");
}

/// The table rows of the section under `heading` in docs/protocol.md, as their first cells.
fn doc_table_keys(doc: &str, heading: &str) -> Vec<String> {
    let start = doc.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("docs/protocol.md has no `{heading}`"));
    let section = &doc[start + heading.len() + 2..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .map(|l| l.split('|').next().unwrap_or("").trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with("---") && k != "Code")
        .collect()
}

#[test]
fn docs_tables_list_exactly_shareds_codes() {
    let path = repo_root().join("docs/protocol.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut problems = String::new();

    let rows = doc_table_keys(&doc, "## Error codes");
    let documented: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
    if documented.len() != rows.len() {
        writeln!(problems, "docs/protocol.md, \"Error codes\": a code has two rows").unwrap();
    }
    for code in server_codes().difference(&documented) {
        writeln!(problems, "docs/protocol.md, \"Error codes\": no row for '{code}' (in ErrorCode::ALL)").unwrap();
    }
    for code in documented.difference(&server_codes()) {
        writeln!(problems, "docs/protocol.md, \"Error codes\": a row for '{code}', which is not in ErrorCode::ALL")
            .unwrap();
    }

    let rows = doc_table_keys(&doc, "## Close codes");
    let documented: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
    let shared: BTreeSet<String> = SHARED_CLOSE.iter().map(|(_, v)| v.to_string()).collect();
    let shared: BTreeSet<&str> = shared.iter().map(String::as_str).collect();
    if documented.len() != rows.len() {
        writeln!(problems, "docs/protocol.md, \"Close codes\": a code has two rows").unwrap();
    }
    for code in shared.difference(&documented) {
        writeln!(problems, "docs/protocol.md, \"Close codes\": no row for {code} (in shared's protocol::close)")
            .unwrap();
    }
    // RFC 6455 §7.4.1 reserves these for what an endpoint sees when no close frame came: no
    // server sends them, so shared has no constant, but a client acts on them (1006: resume).
    let seen_not_sent = BTreeSet::from(["1005", "1006", "1015"]);
    for code in documented.difference(&shared).filter(|c| !seen_not_sent.contains(*c)) {
        writeln!(
            problems,
            "docs/protocol.md, \"Close codes\": a row for {code}, which is not in shared's protocol::close \
             (or not yet in this test's SHARED_CLOSE)"
        )
        .unwrap();
    }
    assert!(problems.is_empty(), "docs/protocol.md out of step with shared:\n{problems}");
}

/// The matchers fail silently when the SDK stops writing a form they know: each must still
/// find its form, and leave alone the look-alikes that are not error codes.
#[test]
fn scanner_finds_each_form() {
    let js = r#"
      new SwitchboardError('a', 'not-a-code');
      if (err?.code === 'b' || 'c' !== e.code) {}
      const why = { code: x ? 'd' : "e", message: 'not-a-code' };
      switch (e.code) { case 'f': break; }
      switch (msg.type) { case 'not-a-code': break; }
      if (closeCode === 'not-a-code' || msg.type === 'not-a-code') {}
      const CLOSE_X = 4999;
    "#;
    let got: Vec<&str> = named_codes(js).iter().map(|n| n.code).collect();
    assert_eq!(got, ["a", "b", "c", "d", "e", "f"]);
    let closes: Vec<_> = close_constants(js).into_iter().map(|(name, value, _)| (name, value)).collect();
    assert_eq!(closes, [("X", Ok(4999))]);
}
