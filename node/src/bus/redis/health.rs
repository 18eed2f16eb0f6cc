//! The bus's health as `/readyz` sees it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What `/readyz` asks: connected, subscribed, and the canary came back recently.
pub(super) struct Health {
    base: Instant,
    connected: AtomicBool,
    connected_at: AtomicU64,
    subscribed: AtomicBool,
    subscribed_at: AtomicU64,
    canary_at: AtomicU64,
}

impl Health {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            connected: AtomicBool::new(false),
            connected_at: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            subscribed_at: AtomicU64::new(0),
            canary_at: AtomicU64::new(0),
        }
    }

    pub(super) fn now(&self) -> u64 {
        // Milliseconds since the bus started, plus one so that 0 means "never".
        self.base.elapsed().as_millis() as u64 + 1
    }

    pub(super) fn connected_now(&self) {
        self.connected_at.store(self.now(), Ordering::SeqCst);
        self.connected.store(true, Ordering::SeqCst);
    }

    pub(super) fn disconnected(&self) {
        self.connected.store(false, Ordering::SeqCst);
    }

    pub(super) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    pub(super) fn subscription_lost(&self) {
        self.subscribed.store(false, Ordering::SeqCst);
    }

    pub(super) fn connected_for(&self) -> Duration {
        if !self.connected.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now().saturating_sub(self.connected_at.load(Ordering::SeqCst)))
    }

    pub(super) fn subscribed_now(&self) {
        self.subscribed_at.store(self.now(), Ordering::SeqCst);
        self.subscribed.store(true, Ordering::SeqCst);
    }

    pub(super) fn canary_seen(&self) {
        self.canary_at.store(self.now(), Ordering::SeqCst);
    }

    pub(super) fn healthy(&self, every: Duration) -> bool {
        let seen = self.canary_at.load(Ordering::SeqCst);
        self.connected.load(Ordering::SeqCst)
            && self.subscribed.load(Ordering::SeqCst)
            && seen != 0
            && self.now() - seen <= 3 * every.as_millis() as u64
    }

    /// No canary for a while although the writer has been connected long enough to send
    /// some: the subscription is dead. With the writer cut off from Redis for longer than a
    /// lease, it is presumed dead too (a stalled path stalls both connections), so that once
    /// Redis can be reached again the node subscribes afresh and reconciles.
    pub(super) fn subscription_stale(&self, every: Duration, lease: Duration) -> bool {
        let last = self.canary_at.load(Ordering::SeqCst).max(self.subscribed_at.load(Ordering::SeqCst));
        let silent = Duration::from_millis(self.now().saturating_sub(last));
        let writer_down = !self.connected.load(Ordering::SeqCst);
        silent > 4 * every && (self.connected_for() > 4 * every || (writer_down && silent > lease))
    }
}
