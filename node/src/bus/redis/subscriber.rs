//! The subscriber: one pub/sub connection carrying this node's channel and the control channel.
//!
//! A pub/sub stream simply ends when its connection drops, so this task reconnects with backoff
//! and subscribes again. It also gives up on a connection that still looks open but no longer
//! brings back the node's own canary (a Redis that stopped answering). After any gap it asks
//! the rooms to reconcile their membership, since events sent meanwhile were lost.

use std::sync::Arc;

use futures_util::StreamExt;
use tracing::{info, warn};

use super::Shared;
use super::backoff::Backoff;
use crate::bus::ClusterEvent;

pub async fn run(shared: Arc<Shared>, client: redis::Client) {
    let mut backoff = Backoff::new();
    let mut first = true;
    let mut check = tokio::time::interval(shared.settings.canary_every);
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                warn!(node = %shared.keys.node(), error = %e, "cluster subscription unreachable");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&[shared.keys.own_channel(), shared.keys.control()]).await {
            warn!(node = %shared.keys.node(), error = %e, "cannot subscribe");
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        }
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
        let mut stream = pubsub.on_message();
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => shared.dispatch(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => break,
                },
                _ = check.tick() => {
                    if shared.health.subscription_stale(shared.settings.canary_every) {
                        warn!(node = %shared.keys.node(), "own canary stopped arriving; subscribing again");
                        break;
                    }
                }
            }
        }
        shared.health.subscription_lost();
        warn!(node = %shared.keys.node(), "cluster subscription lost");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
