//! Per-connection admission control: a general message rate, and WebRTC-aware limits on top —
//! candidates per second, descriptions per minute, and candidates per negotiation.
//!
//! Byte and message rates alone cannot tell a browser trickling 30 candidates from a client
//! spamming a peer with thousands; the per-kind limits can, and each refusal names its limit.

use std::time::Instant;

use switchboard::protocol::shape::SignalKind;
use switchboard::protocol::{ErrorCode, ProtocolError};

use crate::config::Config;

/// A token bucket; `None` rate means unlimited.
#[derive(Debug)]
pub struct Bucket {
    tokens: f32,
    rate_per_sec: f32,
    burst: f32,
    last: Instant,
}

impl Bucket {
    /// `rate_per_sec == 0` disables the bucket.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Option<Self> {
        (rate_per_sec > 0.0).then_some(Bucket {
            tokens: burst as f32,
            rate_per_sec: rate_per_sec as f32,
            burst: burst as f32,
            last: now,
        })
    }

    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn take(bucket: &mut Option<Bucket>, now: Instant) -> bool {
    bucket.as_mut().is_none_or(|b| b.take(now))
}

/// The admission state of one connection.
#[derive(Debug)]
pub struct Admission {
    messages: Option<Bucket>,
    candidates: Option<Bucket>,
    descriptions: Option<Bucket>,
    max_candidates: u32,
    /// Candidates sent per (room, target) since the last description to that target.
    negotiations: Vec<(u64, u32)>,
}

/// Negotiations remembered per connection; older ones are forgotten first.
const MAX_TRACKED_NEGOTIATIONS: usize = 256;

impl Admission {
    pub fn new(cfg: &Config, now: Instant) -> Self {
        let per_sec = |r: u32| f64::from(r);
        Self {
            messages: Bucket::new(per_sec(cfg.messages_per_sec), per_sec(cfg.messages_per_sec) * 2.0, now),
            candidates: Bucket::new(per_sec(cfg.candidates_per_sec), per_sec(cfg.candidates_per_sec) * 2.0, now),
            descriptions: Bucket::new(
                f64::from(cfg.descriptions_per_min) / 60.0,
                (f64::from(cfg.descriptions_per_min) / 2.0).max(1.0),
                now,
            ),
            max_candidates: cfg.max_candidates_per_negotiation,
            negotiations: Vec::new(),
        }
    }

    /// Every data message (text or binary) passes here first.
    pub fn message(&mut self, now: Instant) -> Result<(), ProtocolError> {
        if take(&mut self.messages, now) {
            Ok(())
        } else {
            Err(ProtocolError::new(ErrorCode::RateLimited, "too many messages per second on this connection"))
        }
    }

    /// A relayed payload of `kind` on its way to `target` (a hash of room and peer).
    pub fn signal(&mut self, kind: SignalKind, target: u64, now: Instant) -> Result<(), ProtocolError> {
        match kind {
            SignalKind::Offer | SignalKind::Answer | SignalKind::Rollback => {
                if !take(&mut self.descriptions, now) {
                    return Err(ProtocolError::new(ErrorCode::RateLimited, "too many offers/answers per minute"));
                }
                self.negotiations.retain(|(t, _)| *t != target);
            }
            SignalKind::Candidate => {
                if !take(&mut self.candidates, now) {
                    return Err(ProtocolError::new(ErrorCode::RateLimited, "too many ICE candidates per second"));
                }
                let count = match self.negotiations.iter_mut().find(|(t, _)| *t == target) {
                    Some((_, n)) => n,
                    None => {
                        if self.negotiations.len() >= MAX_TRACKED_NEGOTIATIONS {
                            self.negotiations.remove(0);
                        }
                        self.negotiations.push((target, 0));
                        let last = self.negotiations.len() - 1;
                        &mut self.negotiations[last].1
                    }
                };
                if self.max_candidates > 0 && *count >= self.max_candidates {
                    return Err(ProtocolError::new(
                        ErrorCode::CandidateLimit,
                        format!("more than {} candidates for one negotiation", self.max_candidates),
                    ));
                }
                *count += 1;
            }
            SignalKind::EndOfCandidates | SignalKind::Other => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    fn cfg(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("switchboard-node").chain(args.iter().copied()))
    }

    #[test]
    fn bucket_allows_burst_then_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 20.0, t0).unwrap();
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 20);
        assert!(b.take(t0 + Duration::from_millis(150)));
        assert!(Bucket::new(0.0, 0.0, t0).is_none());
    }

    #[test]
    fn candidates_per_negotiation_reset_on_description() {
        let t0 = Instant::now();
        let mut a = Admission::new(&cfg(&["--max-candidates-per-negotiation", "3", "--candidates-per-sec", "0"]), t0);
        for _ in 0..3 {
            a.signal(SignalKind::Candidate, 7, t0).unwrap();
        }
        assert_eq!(a.signal(SignalKind::Candidate, 7, t0).unwrap_err().code, ErrorCode::CandidateLimit);
        a.signal(SignalKind::Candidate, 8, t0).unwrap();
        a.signal(SignalKind::Offer, 7, t0).unwrap();
        a.signal(SignalKind::Candidate, 7, t0).unwrap();
    }

    #[test]
    fn descriptions_are_rate_limited() {
        let t0 = Instant::now();
        let mut a = Admission::new(&cfg(&["--descriptions-per-min", "4"]), t0);
        assert!(a.signal(SignalKind::Offer, 1, t0).is_ok());
        assert!(a.signal(SignalKind::Answer, 2, t0).is_ok());
        assert_eq!(a.signal(SignalKind::Offer, 1, t0).unwrap_err().code, ErrorCode::RateLimited);
        // A limit of one per minute still admits one.
        let mut one = Admission::new(&cfg(&["--descriptions-per-min", "1"]), t0);
        assert!(one.signal(SignalKind::Offer, 1, t0).is_ok());
        assert!(one.signal(SignalKind::Offer, 1, t0).is_err());
    }
}
