//! This node's lease, kept by the writer task on its connection: register (a new epoch),
//! renew, reap other nodes' expired leases, the readiness canary, and the goodbye.
//!
//! Every registration and renewal also writes the node's heartbeat (`node-info`, JSON
//! [`NodeInfo`](switchboard::api::NodeInfo)) with a TTL of two leases, which the gateway's
//! admin API lists; a renewal writes it in the same script, so only a lease holder writes it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::RedisResult;
use tracing::{info, warn};

use super::writer::{Link, Next, ms};
use super::{Shared, wire};

/// How long the records a re-registration cleared wait to be written again before the webhooks
/// hear them as gone (a reconnecting node's rooms re-assert within a second or two).
const LIMBO_SETTLE: Duration = Duration::from_secs(10);

pub(super) async fn register(shared: &Shared, l: &mut Link, fresh: bool) -> RedisResult<u64> {
    // Bumped first: whatever rooms send from now on sees that they must write their members
    // again before their relays can reach anyone.
    shared.generation.fetch_add(1, Ordering::SeqCst);
    let k = &shared.keys;
    let s = &shared.settings;
    let cmd = l.scripts.register.recording(
        k,
        &[&k.epoch(), &k.nodes(), &k.lease(), &k.node_rooms(), &k.limbo()],
        &[
            k.node().as_ref(),
            ms(s.lease).as_str(),
            ms(s.record_ttl).as_str(),
            k.room_prefix().as_str(),
            if fresh { "1" } else { "0" },
            k.control().as_str(),
            ms(LIMBO_SETTLE).as_str(),
        ],
    );
    let epoch: u64 = cmd.query_async(&mut l.con).await?;
    // Listed at once rather than a third of a lease later.
    if let Some(info) = node_info(shared, epoch) {
        let () = redis::cmd("SET")
            .arg(k.node_info(k.node()))
            .arg(info)
            .arg("PX")
            .arg(ms(2 * s.lease))
            .query_async(&mut l.con)
            .await?;
    }
    Ok(epoch)
}

/// This node's heartbeat as JSON, under lease `epoch`.
fn node_info(shared: &Shared, epoch: u64) -> Option<String> {
    let mut info = shared.inboxes.get()?.status.node_info()?;
    info.epoch = epoch;
    serde_json::to_string(&info).ok()
}

pub(super) async fn renew_lease(shared: &Shared, l: &mut Link) -> RedisResult<Next> {
    let k = &shared.keys;
    let s = &shared.settings;
    // Rooms' TTLs are refreshed about four times per TTL, not on every renewal.
    let touch = l.since.elapsed() >= s.record_ttl / 4;
    if touch {
        l.since = Instant::now();
    }
    let info = node_info(shared, l.epoch).unwrap_or_default();
    let cmd = l.scripts.renew.recording(
        k,
        &[&k.nodes(), &k.lease(), &k.node_rooms(), &k.node_info(k.node()), &k.limbo()],
        &[
            k.node().as_ref(),
            l.epoch.to_string().as_str(),
            ms(s.lease).as_str(),
            ms(s.record_ttl).as_str(),
            if touch { "1" } else { "0" },
            k.room_prefix().as_str(),
            info.as_str(),
            ms(2 * s.lease).as_str(),
        ],
    );
    let held: i64 = cmd.query_async(&mut l.con).await?;
    Ok(if held == 1 { Next::Continue } else { Next::Register })
}

pub(super) async fn reap_nodes(shared: &Shared, l: &mut Link) -> RedisResult<Next> {
    // Right after this node took a lease (a reconnect, a Redis restart or freeze) the other
    // nodes may be renewing theirs too: give them one lease period before reading an expired
    // lease as a dead node. The script also refuses if this node's own lease has lapsed, so a
    // reap held up in a frozen Redis cannot run late and declare everyone lost.
    if l.registered.elapsed() < shared.settings.lease {
        return Ok(Next::Continue);
    }
    let k = &shared.keys;
    let cmd = l.scripts.reap.recording(
        k,
        &[&k.nodes(), &k.lease()],
        &[
            k.lease_prefix().as_str(),
            k.node_rooms_prefix().as_str(),
            k.room_prefix().as_str(),
            k.control().as_str(),
            "16",
            l.epoch.to_string().as_str(),
            k.node_info("").as_str(),
            k.limbo_prefix().as_str(),
        ],
    );
    let dead: Vec<String> = cmd.query_async(&mut l.con).await?;
    for node in dead {
        warn!(node = %shared.keys.node(), lost = %node, "reaped a node whose lease ran out");
    }
    Ok(Next::Continue)
}

/// Removes this node from the cluster (lease, records) and marks the bus down.
pub(super) async fn leave_cluster(shared: &Shared, l: &mut Link) -> RedisResult<()> {
    let k = &shared.keys;
    let cmd = l.scripts.goodbye.recording(
        k,
        &[&k.nodes(), &k.lease(), &k.node_rooms(), &k.node_info(k.node()), &k.limbo()],
        &[k.node().as_ref(), l.epoch.to_string().as_str(), k.room_prefix().as_str(), k.control().as_str()],
    );
    let removed: i64 = cmd.query_async(&mut l.con).await?;
    shared.health.disconnected();
    shared.metrics.up.set(0);
    info!(node = %k.node(), records_left = removed, "left the cluster");
    Ok(())
}

pub(super) async fn publish_canary(shared: &Shared, l: &mut Link, seq: u64) -> RedisResult<Next> {
    let payload = wire::encode(&wire::Wire::Canary { seq });
    let _: i64 = redis::cmd(shared.publish).arg(shared.keys.own_channel()).arg(payload).query_async(&mut l.con).await?;
    Ok(Next::Continue)
}
