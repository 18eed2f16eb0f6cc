//! The browser client, compiled into the binary so a node or gateway serves it with no files
//! beside it: the SDK (`switchboard.js`, an ES module, no build step) and the demo page.

/// The demo page.
pub const INDEX_HTML: &str = include_str!("../static/index.html");
