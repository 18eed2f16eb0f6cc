//! Joins waiting for the other nodes of their room to acknowledge them.
//!
//! A slot opens before the join script runs (an ack can overtake the script's own reply, since
//! it comes back on the subscriber's connection), learns how many acks to expect from the
//! script's answer, and fires once that many arrived. Dropping the [`AckSlot`] frees it however
//! the wait ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::Shared;

pub(super) struct AckSlot {
    pub(super) shared: Arc<Shared>,
    pub(super) token: u64,
}

impl Drop for AckSlot {
    fn drop(&mut self) {
        self.shared.acks.close(self.token);
    }
}

/// Joins waiting for other nodes' acknowledgements, by token.
#[derive(Default)]
pub(super) struct Acks {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, PendingAck>>,
}

pub(super) struct PendingAck {
    expected: Option<usize>,
    received: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Acks {
    pub(super) fn open(&self) -> (u64, oneshot::Receiver<()>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (done, rx) = oneshot::channel();
        self.lock().insert(token, PendingAck { expected: None, received: 0, done: Some(done) });
        (token, rx)
    }

    pub(super) fn expect(&self, token: u64, n: usize) {
        if let Some(p) = self.lock().get_mut(&token) {
            p.expected = Some(n);
            p.fire();
        }
    }

    pub(super) fn received(&self, token: u64) {
        if let Some(p) = self.lock().get_mut(&token) {
            p.received += 1;
            p.fire();
        }
    }

    pub(super) fn close(&self, token: u64) {
        self.lock().remove(&token);
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PendingAck>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PendingAck {
    pub(super) fn fire(&mut self) {
        if self.expected.is_some_and(|n| self.received >= n)
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}
