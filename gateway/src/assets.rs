//! The browser client, compiled into the binary so a node or gateway serves it with no files
//! beside it: the SDK (`switchboard.js` and the modules it imports — ES modules, no build
//! step) with its TypeScript declarations, the demo page on it, and the seed protocol's page
//! flow (`seed.html`).

/// The demo page, served at `/` as well as `/index.html`.
pub const INDEX_HTML: &str = include_str!("../static/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
/// The type Deno reads as TypeScript and CDNs serve `.d.ts` with; the `.ts` of common MIME
/// tables is `video/mp2t`, which would pass the declarations off as video.
const TS: &str = "application/typescript; charset=utf-8";

/// Every file of the browser client: (URL path, content type, body). The gateway and a node
/// serve each at its path; `/` serves [`INDEX_HTML`] too. Module scripts must come with a
/// JavaScript content type: browsers refuse to run a module served as anything else.
pub const FILES: &[(&str, &str, &str)] = &[
    ("/index.html", HTML, INDEX_HTML),
    ("/demo.js", JS, include_str!("../static/demo.js")),
    ("/demo-ui.js", JS, include_str!("../static/demo-ui.js")),
    ("/demo.css", CSS, include_str!("../static/demo.css")),
    ("/seed.html", HTML, include_str!("../static/seed.html")),
    ("/switchboard.js", JS, include_str!("../static/switchboard.js")),
    ("/switchboard.d.ts", TS, include_str!("../static/switchboard.d.ts")),
    ("/switchboard-signaling.js", JS, include_str!("../static/switchboard-signaling.js")),
    ("/switchboard-protocol.js", JS, include_str!("../static/switchboard-protocol.js")),
    ("/switchboard-session.js", JS, include_str!("../static/switchboard-session.js")),
    ("/switchboard-resume.js", JS, include_str!("../static/switchboard-resume.js")),
    ("/switchboard-events.js", JS, include_str!("../static/switchboard-events.js")),
    ("/switchboard-ice.js", JS, include_str!("../static/switchboard-ice.js")),
    ("/switchboard-rtc.js", JS, include_str!("../static/switchboard-rtc.js")),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `static/` is listed (a new file forgotten here would 404 in production
    /// while working from disk), and every path is absolute and unique.
    #[test]
    fn every_static_file_is_listed_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/static");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("static dir")
            .map(|e| format!("/{}", e.expect("entry").file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|(path, _, _)| path.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
        assert!(FILES.iter().all(|(path, _, body)| path.starts_with('/') && !body.is_empty()));
    }

    /// The SDK's modules import each other by relative path: each import must be served.
    #[test]
    fn every_module_import_is_served() {
        for (_, content_type, body) in FILES.iter().filter(|(_, t, _)| *t == JS) {
            assert_eq!(*content_type, JS);
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else { continue };
                let path = spec.trim_start_matches('.');
                assert!(FILES.iter().any(|(p, _, _)| *p == path), "{line}: {path} is not served");
            }
        }
    }
}
