//! Reconnect delays: 50 ms doubling to 1 s, with jitter so a fleet does not reconnect in step.

use std::time::Duration;

pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        Self { next: Self::MIN }
    }

    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base + base.mul_f64(rand::random::<f64>() * 0.25)
    }
}
