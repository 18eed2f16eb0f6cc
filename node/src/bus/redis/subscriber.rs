//! The subscriber: one pub/sub connection carrying this node's channel and the control channel.
//!
//! A pub/sub stream simply ends when its connection drops (Redis also cuts a subscriber whose
//! output buffer overflowed, throwing away what it held), so this task reconnects with backoff
//! and subscribes again; the links recover or answer what was lost. It also gives up on a
//! connection that still looks open but no longer brings back the node's own canary (a Redis
//! that stopped answering, a network path that stalled). After any gap it asks the rooms to
//! reconcile their membership, since membership events sent meanwhile were lost.
//!
//! It also runs the receiving side of the links: statuses go back as soon as the stream is
//! idle (at most [`STATUS_EVERY`](super::link) apart under load), and gaps whose time ran out
//! are given up.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{Msg, PushKind};
use tracing::{info, warn};

use super::Shared;
use super::backoff::Backoff;
use crate::bus::ClusterEvent;

/// How often the links' receiving side gives up expired gaps and repeats owed statuses.
const UPKEEP_EVERY: Duration = Duration::from_millis(10);

pub async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    let mut first = true;
    let mut check = tokio::time::interval(shared.settings.canary_every);
    let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut switched = shared.switched.subscribe();
    loop {
        switched.borrow_and_update();
        // A stalled network path would hang a connect without a bound.
        let subscribed = tokio::time::timeout(shared.settings.timeout, subscribe(&shared)).await;
        let mut stream = match subscribed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let error = e.to_string();
                warn!(
                    node = %shared.keys.node(),
                    redis = %shared.addr,
                    error,
                    hint = shared.endpoint.hint(&error).unwrap_or_default(),
                    "cannot reach Redis: this node is not ready (/readyz 503) and relays nothing to other nodes until it can"
                );
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Err(_) => {
                warn!(
                    node = %shared.keys.node(),
                    redis = %shared.addr,
                    hint = shared.endpoint.hint("timed out").unwrap_or_default(),
                    "cannot reach Redis: subscribing timed out"
                );
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        info!(node = %shared.keys.node(), "cluster subscription up");
        shared.health.subscribed_now();
        backoff.reset();
        if !first {
            let shared = Arc::clone(&shared);
            // Give every node time to write its members again before comparing.
            tokio::spawn(async move {
                tokio::time::sleep(shared.settings.lease).await;
                shared.send_cluster(ClusterEvent::Resync);
            });
        }
        first = false;
        loop {
            let idle_owed = shared.inlets.lock().unwrap_or_else(PoisonError::into_inner).owed(true);
            tokio::select! {
                biased;
                msg = stream.next() => match msg {
                    Some(msg) => {
                        shared.dispatch(msg.get_channel_name(), msg.get_payload_bytes());
                        send_statuses(&shared, false);
                    }
                    None => break,
                },
                // Nothing more to read right now: acknowledge what was delivered.
                _ = std::future::ready(()), if idle_owed => send_statuses(&shared, true),
                _ = upkeep.tick() => {
                    shared.inlets.lock().unwrap_or_else(PoisonError::into_inner).expire();
                    shared.deliver_released();
                    send_statuses(&shared, false);
                }
                _ = switched.changed() => {
                    warn!(node = %shared.keys.node(), "the sentinels named a new master; subscribing there");
                    break;
                }
                _ = check.tick() => {
                    if shared.health.subscription_stale(shared.settings.canary_every, shared.settings.lease) {
                        warn!(node = %shared.keys.node(), "own canary stopped arriving; subscribing again");
                        break;
                    }
                }
            }
        }
        shared.health.subscription_lost();
        shared.metrics.subscription_cuts.inc();
        warn!(node = %shared.keys.node(), "cluster subscription lost");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

type Messages = std::pin::Pin<Box<dyn futures_util::Stream<Item = Msg> + Send>>;

/// Subscribes to this node's channel and the control channel; the stream ends when the
/// subscription does.
///
/// On a Redis Cluster they are shard channels, on the master of their slot: `SSUBSCRIBE` on a
/// RESP3 connection, whose messages come as pushes. The server drops a shard subscription
/// when its slot moves (a `sunsubscribe` push) and a failover drops the connection
/// (`Disconnection`); the redis crate subscribes again neither way on a plain connection, so
/// either ends the stream and this task subscribes again, on the slot's master now.
async fn subscribe(shared: &Shared) -> redis::RedisResult<Messages> {
    let channels = [shared.keys.own_channel(), shared.keys.control()];
    if !shared.endpoint.sharded() {
        let client = shared.endpoint.client(shared.settings.timeout).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channels).await?;
        // The sink stays alive with the stream: once every sink is gone, the crate's driver
        // reads one message at a time and then waits for a wake-up that never comes.
        let (sink, stream) = pubsub.split();
        return Ok(Box::pin(stream.map(move |msg| {
            let _alive = &sink;
            msg
        })));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.settings.timeout))
        .set_response_timeout(Some(shared.settings.timeout))
        .set_push_sender(tx);
    let client = shared.endpoint.resp3_client(shared.settings.timeout).await?;
    let mut con = client.get_multiplexed_async_connection_with_config(&config).await?;
    // One channel per command: each is answered by exactly one confirmation.
    for channel in channels {
        redis::cmd("SSUBSCRIBE").arg(channel).exec_async(&mut con).await?;
    }
    let pushes = futures_util::stream::unfold((rx, con), |(mut rx, con)| async move {
        loop {
            let push = rx.recv().await?;
            match push.kind {
                PushKind::SMessage | PushKind::Message => {
                    if let Some(msg) = Msg::from_push_info(push) {
                        return Some((msg, (rx, con)));
                    }
                }
                PushKind::SUnsubscribe | PushKind::Disconnection => return None,
                _ => {}
            }
        }
    });
    Ok(Box::pin(pushes))
}

/// Sends the statuses the links owe (`eager`: everything delivered so far, at once).
///
/// They go out on a clone of the writer's multiplexed connection, from a task of their own:
/// queued behind the writer's pipeline, an acknowledgement would hold back the relay the
/// client answers with (ping-pong traffic waits a round trip). Without a connection they are
/// dropped: a status is repeated, and the sender probes.
fn send_statuses(shared: &Shared, eager: bool) {
    let statuses = shared.inlets.lock().unwrap_or_else(PoisonError::into_inner).statuses(eager);
    if statuses.is_empty() {
        return;
    }
    let Some(mut con) = shared.upkeep() else { return };
    let mut pipe = redis::pipe();
    for (node, payload) in statuses {
        pipe.cmd(shared.publish).arg(shared.keys.channel(&node)).arg(payload.as_ref()).ignore();
    }
    tokio::spawn(async move {
        let _: redis::RedisResult<()> = pipe.query_async(&mut con).await;
    });
}
