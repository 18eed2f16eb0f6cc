//! Webhooks: every room and membership change of the cluster, `POST`ed as JSON to the
//! application's URLs, signed, at least once and in order per room.
//!
//! Each URL has its own queues, one per room: a room's events go out one at a time, in the
//! order they happened, and an event that fails holds back only its own room's later events
//! while it is retried (exponential backoff, 0.5 s doubling to 60 s, for
//! [`WebhookSettings::retry_for`]: 10 minutes by default); after that it is given up, counted
//! and listed (`GET /v1/webhooks/failures`), and the room's next event goes. Rooms are
//! delivered concurrently, at most [`IN_FLIGHT`] requests per URL at once.
//!
//! Who records the events: a lone node's rooms, through [`Webhooks::send`]; a cluster's
//! membership scripts, in a Redis stream that the gateways deliver from ([`stream`]), each
//! event acknowledged there once every URL has settled it ([`Webhooks::deliver`]).

mod entry;
pub mod stream;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use prometheus::{IntCounter, IntGauge, Registry};
use sha2::Sha256;
use switchboard::api::{WebhookEvent, WebhookFailure, WebhookKind, WebhookPeer};
use switchboard::protocol::v1::LeaveReason;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

/// The shortest secret accepted, bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Requests in flight per URL at most.
pub const IN_FLIGHT: usize = 16;
/// Failures kept for the admin API.
const FAILURES_KEPT: usize = 100;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("--webhook-urls are set but --webhook-secret is not: receivers could not verify a delivery")]
    NoSecret,
    #[error(
        "--webhook-secret is {0} bytes; at least {MIN_SECRET_BYTES} are required (make one with `openssl rand -hex 32`)"
    )]
    ShortSecret(usize),
    #[error("--webhook-urls: {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
}

/// What [`Webhooks::start`] needs.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub urls: Vec<String>,
    pub secret: Vec<u8>,
    /// How long an event is retried before it is given up.
    pub retry_for: Duration,
    /// One attempt's bound, connect to last byte.
    pub timeout: Duration,
}

impl WebhookSettings {
    /// Checks the flags; `None` when no URL is set.
    pub fn new(urls: &[String], secret: Option<&str>, retry_for: Duration) -> Result<Option<Self>, WebhookError> {
        let urls: Vec<String> = urls.iter().filter(|u| !u.is_empty()).cloned().collect();
        if urls.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(WebhookError::BadUrl(bad.clone()));
        }
        let secret = secret.filter(|s| !s.is_empty()).ok_or(WebhookError::NoSecret)?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WebhookError::ShortSecret(secret.len()));
        }
        let timeout = Duration::from_secs(5);
        Ok(Some(Self { urls, secret: secret.as_bytes().to_vec(), retry_for, timeout }))
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the `Switchboard-Signature`
/// header a receiver checks (and rejects when `t` is more than 5 minutes old).
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    // An HMAC key may be of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhook counters, registered (at 0) whether or not webhooks are configured.
#[derive(Clone)]
pub struct WebhookMetrics {
    pub pending: IntGauge,
    pub delivered: IntCounter,
    pub retried: IntCounter,
    pub failed: IntCounter,
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            pending: IntGauge::new(
                "webhooks_pending",
                "Webhook deliveries not yet acknowledged (queued, in flight or waiting to retry).",
            )?,
            delivered: IntCounter::new(
                "webhooks_delivered_total",
                "Webhook deliveries a receiver acknowledged (2xx).",
            )?,
            retried: IntCounter::new("webhooks_retried_total", "Webhook attempts that failed and were tried again.")?,
            failed: IntCounter::new("webhooks_failed_total", "Webhooks given up after their retry window.")?,
        };
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.delivered.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.failed.clone()))?;
        Ok(m)
    }
}

/// The sending side: cheap to clone, callable from any thread.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::UnboundedSender<Queued>,
    failures: Arc<Mutex<VecDeque<WebhookFailure>>>,
    cluster: Arc<str>,
    /// `pending` counts deliveries not yet settled from the moment an event is sent, once per URL.
    metrics: WebhookMetrics,
    urls: usize,
}

impl Webhooks {
    /// Starts the deliveries on a thread of their own (they block on HTTP, never a worker).
    pub fn start(settings: WebhookSettings, cluster: &str, metrics: WebhookMetrics) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let failures = Arc::new(Mutex::new(VecDeque::new()));
        let (handle_metrics, urls) = (metrics.clone(), settings.urls.len());
        let shared = Arc::new(Shared { settings, metrics, failures: Arc::clone(&failures) });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(shared.settings.timeout))
            .http_status_as_error(false)
            // A redirected POST becomes a GET without the body: a 3xx is an answer to fix at
            // the receiver (it shows as `HTTP 30x` in the failures), never a delivery.
            .max_redirects(0)
            .build()
            .into();
        std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime {
                    Ok(rt) => rt.block_on(dispatch(shared, agent, rx)),
                    Err(e) => warn!(error = %e, "webhooks cannot start: no runtime"),
                }
            })
            .map_err(|e| warn!(error = %e, "webhooks cannot start: no thread"))
            .ok();
        Self { tx, failures, cluster: cluster.into(), metrics: handle_metrics, urls }
    }

    /// Waits until every delivery has settled (delivered or given up), at most `within`; whether
    /// they all did. A stopping node calls it so that its last events (the members leaving with
    /// `shutdown`, the rooms finishing) go out before it exits.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.metrics.pending.get() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Queues one event for every URL (`peer` and `reason` as the kind has them).
    pub fn send(&self, kind: WebhookKind, room: String, peer: Option<WebhookPeer>, reason: Option<LeaveReason>) {
        let event = WebhookEvent {
            id: format!("evt_{:032x}", rand::random::<u128>()),
            kind,
            created_at: now_ms(),
            cluster: self.cluster.to_string(),
            room,
            peer,
            reason,
        };
        self.queue(event, None);
    }

    /// Queues an event recorded elsewhere for every URL; the answer comes once every URL has
    /// settled it (delivered or given up), or is dropped if it never can be.
    pub fn deliver(&self, event: WebhookEvent) -> oneshot::Receiver<()> {
        let (done, settled) = oneshot::channel();
        self.queue(event, Some(done));
        settled
    }

    /// Recorded events that were lost or unreadable before delivery: counted as given up.
    pub fn dropped(&self, events: usize) {
        self.metrics.failed.inc_by((self.urls * events) as u64);
    }

    fn queue(&self, event: WebhookEvent, done: Option<oneshot::Sender<()>>) {
        // Counted now, not when the dispatcher takes it: a flush must not see 0 meanwhile.
        self.metrics.pending.add(self.urls as i64);
        if self.tx.send(Queued { event, done }).is_err() {
            // The delivery thread never started (logged then): counted as given up.
            self.metrics.pending.sub(self.urls as i64);
            self.metrics.failed.inc_by(self.urls as u64);
        }
    }

    /// The most recent failures first.
    pub fn failures(&self) -> Vec<WebhookFailure> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).iter().rev().cloned().collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct Shared {
    settings: WebhookSettings,
    metrics: WebhookMetrics,
    failures: Arc<Mutex<VecDeque<WebhookFailure>>>,
}

/// One URL's rooms: the events each still has to deliver, the head one in flight.
type Queues = Arc<Mutex<HashMap<String, VecDeque<Arc<Prepared>>>>>;

/// An event on its way to the dispatcher.
struct Queued {
    event: WebhookEvent,
    done: Option<oneshot::Sender<()>>,
}

/// An event serialized once: every retry sends these bytes.
struct Prepared {
    event: WebhookEvent,
    body: Vec<u8>,
    /// URLs that have not settled it yet, and whom to tell when none is left.
    unsettled: Mutex<(usize, Option<oneshot::Sender<()>>)>,
}

impl Prepared {
    /// One URL has settled it.
    fn settled(&self) {
        let mut u = self.unsettled.lock().unwrap_or_else(PoisonError::into_inner);
        u.0 = u.0.saturating_sub(1);
        if u.0 == 0
            && let Some(done) = u.1.take()
        {
            let _ = done.send(());
        }
    }
}

async fn dispatch(shared: Arc<Shared>, agent: ureq::Agent, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let urls: Vec<(String, Queues, Arc<Semaphore>)> = shared
        .settings
        .urls
        .iter()
        .map(|u| (u.clone(), Queues::default(), Arc::new(Semaphore::new(IN_FLIGHT))))
        .collect();
    while let Some(Queued { event, done }) = rx.recv().await {
        let body = match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "an event could not be serialized; given up");
                shared.metrics.pending.sub(urls.len() as i64);
                shared.metrics.failed.inc_by(urls.len() as u64);
                continue;
            }
        };
        let prepared = Arc::new(Prepared { event, body, unsettled: Mutex::new((urls.len(), done)) });
        for (url, queues, slots) in &urls {
            let room = prepared.event.room.clone();
            let idle = {
                let mut q = queues.lock().unwrap_or_else(PoisonError::into_inner);
                let queue = q.entry(room.clone()).or_default();
                queue.push_back(Arc::clone(&prepared));
                queue.len() == 1
            };
            if idle {
                let worker = RoomWorker {
                    shared: Arc::clone(&shared),
                    agent: agent.clone(),
                    url: url.clone(),
                    queues: Arc::clone(queues),
                    slots: Arc::clone(slots),
                    room,
                };
                tokio::spawn(worker.run());
            }
        }
    }
}

/// Delivers one room's events to one URL, in order, until its queue is empty.
struct RoomWorker {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    url: String,
    queues: Queues,
    slots: Arc<Semaphore>,
    room: String,
}

impl RoomWorker {
    async fn run(self) {
        loop {
            let head = {
                let q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                q.get(&self.room).and_then(|queue| queue.front().cloned())
            };
            let Some(event) = head else { return };
            self.deliver(&event).await;
            self.shared.metrics.pending.dec();
            event.settled();
            let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(queue) = q.get_mut(&self.room) else { return };
            queue.pop_front();
            if queue.is_empty() {
                q.remove(&self.room);
                return;
            }
        }
    }

    /// Tries until a 2xx or the end of the retry window.
    async fn deliver(&self, p: &Arc<Prepared>) {
        let started = Instant::now();
        let mut wait = FIRST_RETRY;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = {
                let _slot = self.slots.acquire().await;
                self.attempt(p).await
            };
            let error = match outcome {
                Ok(()) => {
                    self.shared.metrics.delivered.inc();
                    return;
                }
                Err(e) => e,
            };
            if started.elapsed() + wait > self.shared.settings.retry_for {
                warn!(url = %self.url, id = %p.event.id, room = %p.event.room, attempts, error, "webhook given up");
                self.shared.metrics.failed.inc();
                let failure = WebhookFailure {
                    id: p.event.id.clone(),
                    kind: p.event.kind,
                    room: p.event.room.clone(),
                    url: self.url.clone(),
                    attempts,
                    last_error: error,
                    failed_at: now_ms(),
                };
                let mut f = self.shared.failures.lock().unwrap_or_else(PoisonError::into_inner);
                if f.len() == FAILURES_KEPT {
                    f.pop_front();
                }
                f.push_back(failure);
                return;
            }
            debug!(url = %self.url, id = %p.event.id, attempts, error, retry_in_ms = wait.as_millis() as u64, "webhook retry");
            self.shared.metrics.retried.inc();
            // Jitter: receivers coming back are not hit by every room at once.
            let jitter = wait.mul_f64(rand::random::<f64>() / 4.0);
            tokio::time::sleep(wait + jitter).await;
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }

    async fn attempt(&self, p: &Arc<Prepared>) -> Result<(), String> {
        let (agent, url, p) = (self.agent.clone(), self.url.clone(), Arc::clone(p));
        let secret = self.shared.settings.secret.clone();
        let timeout = self.shared.settings.timeout;
        let sent = tokio::task::spawn_blocking(move || {
            let t = now_ms() / 1000;
            agent
                .post(&url)
                .header("content-type", "application/json")
                .header("switchboard-signature", &signature(&secret, t, &p.body))
                .header("switchboard-event-id", &p.event.id)
                .send(&p.body[..])
                .map(|r| r.status().as_u16())
        })
        .await;
        match sent {
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(format!("HTTP {status}")),
            Ok(Err(ureq::Error::Timeout(_))) => Err(format!("timed out after {} s", timeout.as_secs())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the delivery task failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // Computed independently: Python's hmac.new(secret, b'1700000000.' + body, sha256).
        let sig = signature(b"0123456789abcdef0123456789abcdef", 1700000000, br#"{"id":"evt_1"}"#);
        assert_eq!(sig, "t=1700000000,v1=5815f7d6d473ae7d0b8a17f678bd83446fe9f1456bc1161e16ec253f529cc979");
    }

    #[test]
    fn settings_refuse_what_a_receiver_could_not_verify() {
        let urls = vec!["https://app.example/hooks".to_string()];
        let ten = Duration::from_secs(600);
        assert!(matches!(WebhookSettings::new(&urls, None, ten), Err(WebhookError::NoSecret)));
        assert!(matches!(WebhookSettings::new(&urls, Some("short"), ten), Err(WebhookError::ShortSecret(5))));
        let bad = vec!["ftp://x".to_string()];
        assert!(matches!(WebhookSettings::new(&bad, Some(&"s".repeat(32)), ten), Err(WebhookError::BadUrl(_))));
        assert!(WebhookSettings::new(&[], None, ten).unwrap().is_none());
        assert!(WebhookSettings::new(&urls, Some(&"s".repeat(32)), ten).unwrap().is_some());
    }
}
