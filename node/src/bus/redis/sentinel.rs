//! Hears the sentinels announce a new master (`+switch-master`) and makes the writer and the
//! subscriber connect again, at once.
//!
//! A master that dies drops their connections, and they reconnect through the sentinels by
//! themselves; but a master cut off from the sentinels (not from this node) keeps accepting
//! writes until it is reachable again and demoted, and a node still on it would be split from
//! the nodes on the new master. So the bus follows the sentinels' word, not only its sockets.

use std::sync::Arc;

use futures_util::StreamExt;
use tracing::{info, warn};

use super::Shared;
use super::backoff::Backoff;

const CHANNEL: &str = "+switch-master";
/// How often the sentinel connection is checked (a `PING`, answered within the bus timeout).
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(shared: Arc<Shared>) {
    let Some(master) = shared.endpoint.master_name().map(String::from) else { return };
    let timeout = shared.settings.timeout;
    let mut backoff = Backoff::new();
    loop {
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = shared.endpoint.sentinel_client(timeout).await?.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                info!(node = %shared.keys.node(), master, "listening to the sentinels for failovers");
                let (mut sink, mut stream) = pubsub.split();
                let mut check = tokio::time::interval(CHECK_EVERY);
                loop {
                    tokio::select! {
                        msg = stream.next() => {
                            let Some(msg) = msg else { break };
                            // `<master-name> <old-ip> <old-port> <new-ip> <new-port>`
                            let payload = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                            let mut words = payload.split(' ');
                            if words.next() == Some(master.as_str()) {
                                let to: Vec<&str> = words.skip(2).collect();
                                warn!(node = %shared.keys.node(), master, to = to.join(":"), "the sentinels switched the master; reconnecting");
                                shared.metrics.failovers.inc();
                                shared.switched.send_modify(|n| *n += 1);
                            }
                        }
                        // A sentinel that stopped answering (frozen, its path stalled) would
                        // keep its announcements to itself: leave it for another.
                        _ = check.tick() => {
                            let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                warn!(node = %shared.keys.node(), "the sentinel stopped answering");
                                break;
                            }
                        }
                    }
                }
                warn!(node = %shared.keys.node(), "lost the sentinel connection; asking another");
            }
            Ok(Err(e)) => warn!(node = %shared.keys.node(), error = %e, "cannot reach any sentinel"),
            Err(_) => warn!(node = %shared.keys.node(), "cannot reach any sentinel: timed out"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
