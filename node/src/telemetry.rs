//! Logging: tracing-subscriber with an env filter, pretty or JSON lines, to stderr (stdout
//! carries only the one `listening on` line that scripts and tests read).

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    // An empty RUST_LOG (`RUST_LOG= cmd`) would silence everything: it counts as unset.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(if config.log.trim().is_empty() { "info" } else { &config.log }));
    // Colour only on a terminal: escape codes in a log file or a pipe are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // `try_init` fails only if a subscriber is already set (as in tests); keep that one.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
