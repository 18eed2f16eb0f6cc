//! Clock, percentiles, the node's memory, and the one JSON line a run prints.
//!
//! Everything here mirrors `bench/load/load.js` so that a Rust run and a Node run of the same
//! workload can be put side by side: the same percentile rule, the same rounding, the same key
//! order.

use std::fmt::{Display, Write as _};
use std::sync::LazyLock;
use std::time::Instant;

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Starts the process clock. Call first thing in `main` so timestamps are small numbers.
pub fn start_clock() {
    LazyLock::force(&START);
}

/// Milliseconds since the process started, from a monotonic clock.
///
/// Every peer of the run shares it, so `receive time - ts` is a true relay latency even when
/// sender and receiver run on different worker threads. (load.js uses `process.hrtime` the same
/// way.) Wall-clock time would be wrong: it can step while a run is in progress.
pub fn now_ms() -> f64 {
    START.elapsed().as_secs_f64() * 1000.0
}

/// Rounds to 3 decimals (microseconds, for values in ms), like JavaScript's `toFixed(3)`.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// load.js's percentile: the element at `floor(p * len)` of the sorted values, clamped to the
/// last one; 0 for no values. `sorted` must be sorted ascending.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).floor() as usize).min(sorted.len() - 1);
    round3(sorted[i])
}

/// Resident set size of `pid` in KiB, from `VmRSS` in `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS in {path}"))
}

/// The summed RSS of `pids` (a cluster's nodes count together), `None` when there are no pids
/// or one could not be read (the reason goes to stderr, the run still reports).
pub fn total_rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for &pid in pids {
        match rss_kib(pid) {
            Ok(kib) => total += kib,
            Err(e) => {
                eprintln!("switchboard-peer: node rss: {e}");
                return None;
            }
        }
    }
    Some(total)
}

/// A JSON object written key by key, so the keys come out in load.js's order (serde_json's
/// `Value` would sort them).
pub struct JsonLine(String);

impl Default for JsonLine {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonLine {
    pub fn new() -> Self {
        JsonLine(String::from("{"))
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        // Keys are this program's own literals: plain ASCII, nothing to escape.
        let _ = write!(self.0, "\"{key}\":");
        &mut self.0
    }

    /// A string value, JSON-escaped.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let escaped = serde_json::to_string(value).unwrap_or_else(|_| String::from("null"));
        self.key(key).push_str(&escaped);
        self
    }

    /// An integer value.
    pub fn int(&mut self, key: &str, value: impl Display) -> &mut Self {
        let _ = write!(self.key(key), "{value}");
        self
    }

    /// A float value; non-finite values (which JSON cannot hold) become `null`.
    pub fn num(&mut self, key: &str, value: f64) -> &mut Self {
        let out = self.key(key);
        if value.is_finite() {
            // Rust prints the shortest text that reads back as the same f64, and `2` for 2.0,
            // as JavaScript does.
            let _ = write!(out, "{value}");
        } else {
            out.push_str("null");
        }
        self
    }

    /// A value that is already JSON text.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// An optional integer: `null` when absent.
    pub fn opt_int(&mut self, key: &str, value: Option<impl Display>) -> &mut Self {
        match value {
            Some(v) => self.int(key, v),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    pub fn finish(&mut self) -> String {
        let mut line = std::mem::take(&mut self.0);
        line.push('}');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_load_js() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&xs, 0.5), 3.0);
        assert_eq!(percentile(&xs, 0.99), 4.0);
        assert_eq!(percentile(&xs, 1.0), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[0.123_456_7], 0.5), 0.123);
    }

    #[test]
    fn json_line_keeps_order() {
        let line = JsonLine::new()
            .str("proto", "seed")
            .int("rooms", 2)
            .num("p50_ms", 2.0)
            .num("x", f64::NAN)
            .opt_int("rss", None::<u64>)
            .finish();
        assert_eq!(line, r#"{"proto":"seed","rooms":2,"p50_ms":2,"x":null,"rss":null}"#);
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
