//! Webhooks from a cluster. The nodes' membership scripts append every event to a Redis stream
//! in the same step as the change (`node/src/bus/redis/lua/events.lua`), so an event survives
//! the node it happened on; the gateways deliver them from there:
//!
//! - **One gateway at a time** delivers, the holder of a lease ([`Keys::webhooks_leader`],
//!   [`LEASE`] long, renewed every second): two would split a room's events between them and
//!   lose their order. The others stand by and take the lease when it lapses.
//! - It reads through a **consumer group**: what it has read and not yet settled stays in the
//!   group's pending list. A gateway that becomes the leader first claims every pending entry
//!   (`XAUTOCLAIM` from the start, any idle time: the lease says the previous leader is gone),
//!   in stream order, then reads new ones. So a gateway killed mid-delivery loses nothing, each
//!   room keeps its order, and an event it had sent may arrive twice, with the same id.
//! - Every read and claim runs in a script that first checks the lease ([`GUARDED`]): a leader
//!   that stalled past its lease (a paused VM, a command that reached Redis late) cannot read
//!   entries away from the one that replaced it. What such a gateway still took, and whatever
//!   did not settle, is claimed again by the leader once idle for longer than a lease
//!   ([`RECLAIM_EVERY`]).
//! - An entry is acknowledged once every URL has settled it (delivered, or given up after the
//!   retry window), and the stream is trimmed up to the oldest entry not yet settled.
//! - Every gateway with webhooks keeps [`Keys::webhooks_on`] alive ([`MARKER_TTL`]): the nodes
//!   record events only while it exists, so a cluster without webhooks stores none, and one whose
//!   webhook gateways have all been gone that long stops growing the stream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamPendingReply, StreamReadReply};
use redis::{AsyncCommands, RedisResult, Script};
use switchboard::cluster::endpoint::Endpoint;
use switchboard::cluster::{Buckets, Keys};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Webhooks;

/// The consumer group of the gateways.
pub const GROUP: &str = "webhooks";
/// How long a leader that stopped renewing keeps the lease.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the lease is renewed (or, by the others, tried for).
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long the nodes go on recording events after the last webhook gateway went.
pub const MARKER_TTL: Duration = Duration::from_secs(3600);
const MARKER_EVERY: Duration = Duration::from_secs(10);
/// Entries read per round, and read but not settled at most (the rest waits in Redis).
const READ_COUNT: usize = 256;
const MAX_UNSETTLED: usize = 10_000;
/// How long the leader waits before reading again when there was nothing new.
const POLL: Duration = Duration::from_millis(100);
/// How often the leader claims entries left idle (a stalled former leader's, unsettled ones).
const RECLAIM_EVERY: Duration = Duration::from_secs(10);
/// How long an entry must have been idle to be claimed again by a sitting leader.
const RECLAIM_IDLE: Duration = Duration::from_secs(10);
/// Bound of connecting and of one command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stopping gateway waits for what it has in flight before it gives the lease up.
pub const HAND_OVER: Duration = Duration::from_secs(5);

/// Takes the lease if it is free, renews it if it is ours; 1 if we hold it now.
const TAKE_LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Runs a command on the stream only if this gateway holds the lease (nil otherwise).
/// KEYS: the lease, the stream; ARGV: this gateway's name, the command and its arguments.
const GUARDED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
return redis.call(unpack(ARGV, 2))";

/// Gives the lease up if it is ours.
const GIVE_UP_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// The delivering tasks (one per bucket of the key space), to stop them.
pub struct Feeding {
    stop: watch::Sender<bool>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

impl Feeding {
    /// Stops reading, lets what is in flight settle (at most [`HAND_OVER`]), and gives the
    /// lease up: another gateway takes over at once instead of once the lease lapses, and
    /// claims whatever did not settle.
    pub async fn hand_over(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(HAND_OVER + REDIS_TIMEOUT, futures_util::future::join_all(self.tasks)).await;
    }
}

/// Starts delivering the cluster's events through `hooks`, on the current actix system: one
/// feed per bucket (each bucket's rooms record into their bucket's stream, so each room's
/// events stay in one stream, in order).
pub fn start(endpoint: &Endpoint, buckets: &Buckets, hooks: Webhooks) -> Feeding {
    let (stop, stopping) = watch::channel(false);
    // Where it runs (the pod, in Kubernetes) and which process: an operator reading the
    // lease or the group's consumers sees which gateway delivers.
    let me = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "gateway".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    let tasks = (0..buckets.count())
        .map(|b| {
            let (endpoint, keys) = buckets.reach(b, endpoint, "gateway".into());
            let feed = Feed {
                endpoint,
                keys,
                hooks: hooks.clone(),
                me: me.clone(),
                lease: Script::new(TAKE_LEASE),
                give_up: Script::new(GIVE_UP_LEASE),
                guarded: Script::new(GUARDED),
                stopping: stopping.clone(),
            };
            actix_rt::spawn(feed.run())
        })
        .collect();
    Feeding { stop, tasks }
}

struct Feed {
    endpoint: Endpoint,
    keys: Keys,
    hooks: Webhooks,
    /// This gateway's consumer name and lease value.
    me: String,
    lease: Script,
    give_up: Script,
    guarded: Script,
    stopping: watch::Receiver<bool>,
}

/// A stream entry id, ordered as Redis orders them.
pub(super) type EntryId = (u64, u64);

pub(super) fn parse_id(id: &str) -> Option<EntryId> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What the leader has read and not yet acknowledged.
#[derive(Default)]
struct Unsettled {
    /// Read and not yet acknowledged (settled ones included until their `XACK` succeeds).
    ids: BTreeSet<EntryId>,
    /// Settled, to acknowledge (kept until an `XACK` succeeds, across reconnects).
    acking: Vec<(String, EntryId)>,
    settling: FuturesUnordered<Settling>,
    /// The newest entry read: the stream is trimmed up to it when nothing is unsettled.
    last_read: Option<EntryId>,
}

/// An entry on its way to the receivers: its id as Redis writes it and parsed, and whether
/// every URL settled it.
type Settling = futures_util::future::BoxFuture<'static, (String, EntryId, bool)>;

impl Feed {
    async fn run(self) {
        let mut unsettled = Unsettled::default();
        loop {
            let con = match self.endpoint.connection(REDIS_TIMEOUT).await {
                Ok(con) => con,
                Err(e) => {
                    warn!(error = %e, "webhooks: cannot reach Redis; retrying");
                    tokio::time::sleep(RENEW_EVERY).await;
                    continue;
                }
            };
            match self.serve(con, &mut unsettled).await {
                Ok(()) => return,
                Err(e) if *self.stopping.borrow() => {
                    // What did not settle stays pending; the lease lapses.
                    warn!(error = %e, "webhooks: Redis lost while handing over");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "webhooks: Redis connection lost; retrying");
                    tokio::time::sleep(RENEW_EVERY).await;
                }
            }
        }
    }

    /// Runs on one connection until it fails, or until it is stopped (then hands over).
    async fn serve(&self, mut con: MultiplexedConnection, unsettled: &mut Unsettled) -> RedisResult<()> {
        let k = &self.keys;
        // The group first, then the marker: no event is recorded before the group would see it.
        let created: RedisResult<()> = con.xgroup_create_mkstream(k.events(), GROUP, "0").await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e);
        }
        let mut leader = false;
        let mut marked_at: Option<Instant> = None;
        let mut renewed_at: Option<Instant> = None;
        let mut reclaimed_at = Instant::now();
        loop {
            if *self.stopping.borrow() {
                return self.hand_over(&mut con, unsettled, leader).await;
            }
            if marked_at.is_none_or(|t| t.elapsed() >= MARKER_EVERY) {
                let () = con.pset_ex(k.webhooks_on(), 1, MARKER_TTL.as_millis() as u64).await?;
                marked_at = Some(Instant::now());
            }
            if renewed_at.is_none_or(|t| t.elapsed() >= RENEW_EVERY) {
                let held: i64 = self
                    .lease
                    .key(k.webhooks_leader())
                    .arg(&self.me)
                    .arg(LEASE.as_millis() as u64)
                    .invoke_async(&mut con)
                    .await?;
                renewed_at = Some(Instant::now());
                match (leader, held == 1) {
                    (false, true) => {
                        info!(gateway = %self.me, "webhooks: delivering for the cluster");
                        leader = true;
                        self.claim(&mut con, unsettled, Duration::ZERO).await?;
                        self.forget_idle_consumers(&mut con).await?;
                        reclaimed_at = Instant::now();
                    }
                    (true, false) => {
                        warn!(gateway = %self.me, "webhooks: lost the lease; another gateway delivers");
                        leader = false;
                    }
                    _ => {}
                }
            }
            if leader && reclaimed_at.elapsed() >= RECLAIM_EVERY {
                self.claim(&mut con, unsettled, RECLAIM_IDLE).await?;
                reclaimed_at = Instant::now();
            }
            self.acknowledge(&mut con, unsettled, leader).await?;
            let mut got = 0;
            if leader && unsettled.ids.len() < MAX_UNSETTLED {
                let read: Option<StreamReadReply> = self
                    .guarded(&["XREADGROUP", "GROUP", GROUP, &self.me, "COUNT", &READ_COUNT.to_string()])
                    .arg("STREAMS")
                    .arg(k.events())
                    .arg(">")
                    .invoke_async(&mut con)
                    .await?;
                for entry in read.into_iter().flat_map(|r| r.keys).flat_map(|key| key.ids) {
                    got += 1;
                    self.dispatch(entry, unsettled);
                }
            }
            if got < READ_COUNT {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// [`GUARDED`] for this command (its arguments after the name may follow).
    fn guarded(&self, command: &[&str]) -> redis::ScriptInvocation<'_> {
        let mut run = self.guarded.key(self.keys.webhooks_leader());
        run.key(self.keys.events()).arg(&self.me).arg(command);
        run
    }

    /// Lets what is in flight settle (bounded), then gives the lease up.
    async fn hand_over(
        &self,
        con: &mut MultiplexedConnection,
        unsettled: &mut Unsettled,
        leader: bool,
    ) -> RedisResult<()> {
        let deadline = Instant::now() + HAND_OVER;
        loop {
            self.acknowledge(con, unsettled, leader).await?;
            if unsettled.ids.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _: i64 = self.give_up.key(self.keys.webhooks_leader()).arg(&self.me).invoke_async(con).await?;
        info!(gateway = %self.me, unsettled = unsettled.ids.len(), "webhooks: handed the delivery over");
        Ok(())
    }

    /// Claims every entry pending in the group idle for at least `idle`, whoever read it, in
    /// stream order (what is already on its way here is not sent twice).
    async fn claim(
        &self,
        con: &mut MultiplexedConnection,
        unsettled: &mut Unsettled,
        idle: Duration,
    ) -> RedisResult<()> {
        let k = &self.keys;
        let mut from = "0-0".to_string();
        let mut claimed = 0usize;
        loop {
            let reply: Option<StreamAutoClaimReply> = self
                .guarded(&["XAUTOCLAIM"])
                .arg(k.events())
                .arg(GROUP)
                .arg(&self.me)
                .arg(idle.as_millis() as u64)
                .arg(&from)
                .arg("COUNT")
                .arg(READ_COUNT)
                .invoke_async(con)
                .await?;
            // Not the leader any more.
            let Some(reply) = reply else { return Ok(()) };
            if !reply.deleted_ids.is_empty() {
                // Gone from the stream before anyone settled them: the stream's cap (a receiver
                // down for long) dropped them.
                warn!(
                    dropped = reply.deleted_ids.len(),
                    "webhooks: events dropped by the stream's cap, never delivered"
                );
                self.hooks.dropped(reply.deleted_ids.len());
                let () = con.xack(k.events(), GROUP, &reply.deleted_ids).await?;
            }
            claimed += reply.claimed.len();
            for entry in reply.claimed {
                self.dispatch(entry, unsettled);
            }
            if reply.next_stream_id == "0-0" {
                break;
            }
            from = reply.next_stream_id;
        }
        if claimed > 0 {
            info!(gateway = %self.me, claimed, "webhooks: claimed events read but not settled");
        }
        Ok(())
    }

    /// Removes the group's consumers that hold nothing (gateways gone: each process is one).
    async fn forget_idle_consumers(&self, con: &mut MultiplexedConnection) -> RedisResult<()> {
        let info: StreamInfoConsumersReply = con.xinfo_consumers(self.keys.events(), GROUP).await?;
        for c in info.consumers.iter().filter(|c| c.pending == 0 && c.name != self.me) {
            let _: i64 = con.xgroup_delconsumer(self.keys.events(), GROUP, &c.name).await?;
        }
        Ok(())
    }

    /// Hands one entry to the deliveries.
    fn dispatch(&self, entry: StreamId, unsettled: &mut Unsettled) {
        let Some(id) = parse_id(&entry.id) else { return };
        if !unsettled.ids.insert(id) {
            // Already on its way (claimed back after a reconnect): once is enough here.
            return;
        }
        unsettled.last_read = unsettled.last_read.max(Some(id));
        let name = entry.id.clone();
        match super::entry::event_of(self.keys.cluster(), &entry, id) {
            Some(event) => {
                let settled = self.hooks.deliver(event);
                unsettled.settling.push(Box::pin(async move { (name, id, settled.await.is_ok()) }));
            }
            None => {
                // Never deliverable: counted as given up, and acknowledged.
                warn!(entry = %name, "webhooks: an unreadable event; skipped");
                self.hooks.dropped(1);
                unsettled.settling.push(Box::pin(futures_util::future::ready((name, id, true))));
            }
        }
    }

    /// Acknowledges what has settled and trims the stream behind it.
    async fn acknowledge(
        &self,
        con: &mut MultiplexedConnection,
        unsettled: &mut Unsettled,
        leader: bool,
    ) -> RedisResult<()> {
        let k = &self.keys;
        while let Some(Some((name, id, ok))) = futures_util::FutureExt::now_or_never(unsettled.settling.next()) {
            if ok {
                unsettled.acking.push((name, id));
            } else {
                // Not settled (the deliveries stopped): left pending, claimed again later.
                unsettled.ids.remove(&id);
            }
        }
        if unsettled.acking.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = unsettled.acking.iter().map(|(name, _)| name.as_str()).collect();
        let () = con.xack(k.events(), GROUP, &names).await?;
        for (_, id) in unsettled.acking.drain(..) {
            unsettled.ids.remove(&id);
        }
        if !leader {
            return Ok(());
        }
        // Everything before the oldest entry still pending — ours, or one a gateway that lost
        // the lease is still sending — has been delivered: trimmed away.
        let Some((ms, seq)) = unsettled.last_read else { return Ok(()) };
        let mut keep = (ms, seq + 1);
        if let StreamPendingReply::Data(p) = con.xpending(k.events(), GROUP).await? {
            keep = keep.min(parse_id(&p.start_id).unwrap_or((0, 0)));
        }
        let _: i64 = redis::cmd("XTRIM")
            .arg(k.events())
            .arg("MINID")
            .arg(format!("{}-{}", keep.0, keep.1))
            .query_async(con)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_as_redis_orders_them() {
        assert!(parse_id("1700000000000-2") < parse_id("1700000000000-10"));
        assert!(parse_id("999-99") < parse_id("1000-0"));
        assert_eq!(parse_id("nonsense"), None);
    }
}
