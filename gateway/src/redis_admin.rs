//! [`ClusterAdmin`] over the cluster's Redis: what the nodes write there is all a gateway
//! needs, so it keeps no state and any number of them can run.
//!
//! Reads follow the key space of [`switchboard::cluster::Keys`]: the `nodes` lease zset and
//! each node's `node-info`, `room:<room>` hashes of [member records](switchboard::cluster::parse_record).
//! Kick and close are [`Control`] messages on the control channel every node subscribes to;
//! the node holding the member acts, and its Lua scripts remove the record, so the gateway
//! answers only once the member is gone from the hash. On a Redis Cluster each bucket of the
//! key space ([`Buckets`]) is read on the master holding it: a room in its own bucket, the
//! room list bucket after bucket, the nodes from the first bucket that answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{RedisError, cmd};
use switchboard::api::{Member, NodeInfo, RoomDetail, RoomList, RoomSummary};
use switchboard::cluster::endpoint::Endpoint;
use switchboard::cluster::{Buckets, Control, Keys, parse_record};
use switchboard::protocol::{PeerId, RoomName};
use tracing::warn;

use crate::admin::{AdminError, AdminResult, ClusterAdmin};

/// Bound of one Redis command, and of one whole read of the API.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a kick or close waits for the nodes to remove the members.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(3);
/// SCAN rounds one page of rooms may take (a sparse key space yields empty rounds).
const MAX_SCAN_ROUNDS: usize = 32;

/// The cluster's state, read from (and kicks and closes published to) its Redis.
#[derive(Clone)]
pub struct RedisAdmin {
    inner: Arc<Inner>,
}

struct Inner {
    buckets: Buckets,
    each: Vec<Bucket>,
}

/// One bucket of the key space (the whole of it, but on a Redis Cluster).
struct Bucket {
    endpoint: Endpoint,
    /// The connection, made on first use and dropped after an operation fails for want of
    /// Redis: the next one connects again (through the sentinels: to the current master).
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    keys: Keys,
}

impl RedisAdmin {
    /// Nothing connects yet: a gateway starts, unready, while Redis is away. Operations must
    /// run inside a tokio runtime (an actix system), which then drives the connection.
    pub fn new(endpoint: &Endpoint, buckets: Buckets) -> Self {
        let each = (0..buckets.count())
            .map(|b| {
                // The gateway is no node: `Keys`' own-node keys are never used here.
                let (endpoint, keys) = buckets.reach(b, endpoint, "gateway".into());
                Bucket { endpoint, conn: tokio::sync::Mutex::new(None), keys }
            })
            .collect();
        Self { inner: Arc::new(Inner { buckets, each }) }
    }

    /// Runs one operation against Redis, bounded as a whole.
    fn run<T: Send + 'static>(
        &self,
        bound: Duration,
        op: impl Future<Output = Result<T, AdminError>> + Send + 'static,
    ) -> AdminResult<T> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let result = match tokio::time::timeout(bound, op).await {
                Ok(r) => r,
                Err(_) => Err(AdminError::Unavailable(format!("Redis did not answer within {} ms", bound.as_millis()))),
            };
            if matches!(result, Err(AdminError::Unavailable(_))) {
                for b in &inner.each {
                    b.conn.lock().await.take();
                }
            }
            result
        })
    }
}

fn down(e: RedisError) -> AdminError {
    AdminError::Unavailable(format!("Redis: {e}"))
}

impl Inner {
    fn of_room(&self, room: &str) -> &Bucket {
        &self.each[self.buckets.of_room(room)]
    }

    /// From the first bucket that answers: every node registers in each.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, AdminError> {
        let mut last = AdminError::Unavailable("no bucket".into());
        for b in &self.each {
            match b.nodes().await {
                Ok(nodes) => return Ok(nodes),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One page of rooms, bucket after bucket; with several buckets the cursor is
    /// `<bucket>.<scan cursor>`.
    async fn rooms(&self, cursor: Option<String>, limit: usize) -> Result<RoomList, AdminError> {
        let bad = || AdminError::BadRequest("cursor must be the next_cursor of a previous page".into());
        let (mut bucket, mut cursor) = match cursor.as_deref() {
            None | Some("") => (0, None),
            Some(c) if self.each.len() == 1 => (0, Some(c.to_string())),
            Some(c) => {
                let (b, c) = c.split_once('.').ok_or_else(bad)?;
                (b.parse::<usize>().map_err(|_| bad())?, Some(c.to_string()))
            }
        };
        let mut rooms = Vec::new();
        while let Some(b) = self.each.get(bucket) {
            let page = b.rooms(cursor.take(), limit - rooms.len()).await?;
            rooms.extend(page.rooms);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => bucket += 1,
            }
            if rooms.len() >= limit {
                break;
            }
        }
        let next_cursor = match (self.each.len(), cursor) {
            (_, None) if bucket >= self.each.len() => None,
            (1, c) => c,
            (_, c) => Some(format!("{bucket}.{}", c.unwrap_or_else(|| "0".into()))),
        };
        Ok(RoomList { rooms, next_cursor })
    }
}

impl Bucket {
    async fn conn(&self) -> Result<MultiplexedConnection, AdminError> {
        let mut current = self.conn.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.endpoint.connection(REDIS_TIMEOUT).await.map_err(down)?;
        *current = Some(conn.clone());
        Ok(conn)
    }

    fn room_key(&self, room: &str) -> String {
        format!("{}{room}", self.keys.room_prefix())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, AdminError> {
        let mut conn = self.conn().await?;
        // Lease expiries are on Redis' clock: compare them with Redis' TIME, not ours.
        let (secs, micros): (u64, u64) = cmd("TIME").query_async(&mut conn).await.map_err(down)?;
        let now_ms = secs * 1000 + micros / 1000;
        let live: Vec<(String, f64)> = cmd("ZRANGEBYSCORE")
            .arg(self.keys.nodes())
            .arg(now_ms)
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(down)?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (node, _) in &live {
            pipe.get(self.keys.node_info(node));
            pipe.get(format!("{}{node}", self.keys.lease_prefix()));
            pipe.hlen(format!("{}{node}", self.keys.node_rooms_prefix()));
        }
        let replies: Vec<(Option<String>, Option<u64>, u64)> = pipe.query_async(&mut conn).await.map_err(down)?;
        let mut nodes: Vec<NodeInfo> = live
            .into_iter()
            .zip(replies)
            .map(|((id, _expiry), (info, epoch, rooms))| {
                info.and_then(|json| match serde_json::from_str::<NodeInfo>(&json) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        warn!(node = %id, error = %e, "unreadable node-info; listing what the lease says");
                        None
                    }
                })
                // Its heartbeat's details not written (yet): the lease still says it is alive.
                .unwrap_or_else(|| NodeInfo {
                    id: id.clone(),
                    epoch: epoch.unwrap_or(0),
                    url: None,
                    version: String::new(),
                    started_at: 0,
                    heartbeat_at: 0,
                    sessions: 0,
                    rooms,
                    draining: false,
                })
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    async fn rooms(&self, cursor: Option<String>, limit: usize) -> Result<RoomList, AdminError> {
        let mut cursor: u64 = match cursor.as_deref() {
            None | Some("") => 0,
            Some(c) => c
                .parse()
                .map_err(|_| AdminError::BadRequest("cursor must be the next_cursor of a previous page".into()))?,
        };
        let mut conn = self.conn().await?;
        let pattern = format!("{}*", glob_escape(&self.keys.room_prefix()));
        let mut keys: Vec<String> = Vec::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let (next, batch): (u64, Vec<String>) = cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(limit.max(10))
                .query_async(&mut conn)
                .await
                .map_err(down)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= limit {
                break;
            }
        }
        // SCAN may return a key twice.
        keys.sort();
        keys.dedup();
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.hlen(k);
        }
        let counts: Vec<u64> =
            if keys.is_empty() { Vec::new() } else { pipe.query_async(&mut conn).await.map_err(down)? };
        let rooms = keys
            .iter()
            .zip(counts)
            // A room emptied since the scan is no room.
            .filter(|(_, members)| *members > 0)
            .filter_map(|(key, members)| {
                let (room, protocol) = client_name(self.keys.room_of_key(key)?);
                Some(RoomSummary { room: room.to_string(), protocol: protocol.to_string(), members })
            })
            .collect();
        Ok(RoomList { rooms, next_cursor: (cursor != 0).then(|| cursor.to_string()) })
    }

    async fn room(&self, room: &str) -> Result<RoomDetail, AdminError> {
        let mut conn = self.conn().await?;
        let fields: Vec<(String, String)> =
            cmd("HGETALL").arg(self.room_key(room)).query_async(&mut conn).await.map_err(down)?;
        if fields.is_empty() {
            return Err(AdminError::NoSuchRoom);
        }
        let mut members: Vec<Member> = fields
            .into_iter()
            .filter_map(|(peer, record)| {
                let (Ok(peer_id), Ok(r)) = (peer.parse::<PeerId>(), parse_record(&record)) else {
                    warn!(room, peer, "unreadable member record; skipped");
                    return None;
                };
                Some(Member {
                    peer_id,
                    node: r.node,
                    user: r.user,
                    role: r.role,
                    seed_user: r.seed_user,
                    meta: r.meta.and_then(|m| serde_json::from_str(m.get()).ok()),
                })
            })
            .collect();
        members.sort_by(|a, b| (&a.node, a.peer_id).cmp(&(&b.node, b.peer_id)));
        let (name, protocol) = client_name(room);
        Ok(RoomDetail { room: name.to_string(), protocol: protocol.to_string(), members })
    }

    /// Publishes a control message; an error if no node is listening.
    async fn publish(&self, control: &Control) -> Result<(), AdminError> {
        let receivers: u64 = cmd(self.endpoint.publish_command())
            .arg(self.keys.control())
            .arg(control.encode())
            .query_async(&mut self.conn().await?)
            .await
            .map_err(down)?;
        if receivers == 0 {
            return Err(AdminError::Unavailable("no node is listening on the cluster's control channel".into()));
        }
        Ok(())
    }

    async fn kick(&self, room: &str, peer: PeerId) -> Result<u64, AdminError> {
        let key = self.room_key(room);
        let field = peer.to_string();
        let mut conn = self.conn().await?;
        let present: bool = cmd("HEXISTS").arg(&key).arg(&field).query_async(&mut conn).await.map_err(down)?;
        if !present {
            let exists: bool = cmd("EXISTS").arg(&key).query_async(&mut conn).await.map_err(down)?;
            return Err(if exists { AdminError::NoSuchMember } else { AdminError::NoSuchRoom });
        }
        self.publish(&Control::Kick { room: room.to_string(), peer }).await?;
        self.wait_until(Gone::Member { key: &key, field: &field }).await?;
        Ok(1)
    }

    async fn close(&self, room: &str) -> Result<u64, AdminError> {
        let key = self.room_key(room);
        let members: u64 = cmd("HLEN").arg(&key).query_async(&mut self.conn().await?).await.map_err(down)?;
        if members == 0 {
            return Err(AdminError::NoSuchRoom);
        }
        self.publish(&Control::Close { room: room.to_string() }).await?;
        self.wait_until(Gone::Everyone { key: &key }).await?;
        Ok(members)
    }

    /// Polls (quickly at first, then every 100 ms) until `what` is gone or [`ACTION_TIMEOUT`]
    /// passes.
    async fn wait_until(&self, what: Gone<'_>) -> Result<(), AdminError> {
        let deadline = Instant::now() + ACTION_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        let mut conn = self.conn().await?;
        loop {
            let gone = match what {
                Gone::Member { key, field } => {
                    !cmd("HEXISTS").arg(key).arg(field).query_async::<bool>(&mut conn).await.map_err(down)?
                }
                Gone::Everyone { key } => cmd("HLEN").arg(key).query_async::<u64>(&mut conn).await.map_err(down)? == 0,
            };
            if gone {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(AdminError::Timeout(ACTION_TIMEOUT.as_millis() as u64));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// What a kick or close waits to see gone from a room hash.
#[derive(Clone, Copy)]
enum Gone<'a> {
    Member { key: &'a str, field: &'a str },
    Everyone { key: &'a str },
}

impl ClusterAdmin for RedisAdmin {
    fn nodes(&self) -> AdminResult<Vec<NodeInfo>> {
        let i = Arc::clone(&self.inner);
        self.run(REDIS_TIMEOUT, async move { i.nodes().await })
    }

    fn rooms(&self, cursor: Option<String>, limit: usize) -> AdminResult<RoomList> {
        let i = Arc::clone(&self.inner);
        self.run(REDIS_TIMEOUT, async move { i.rooms(cursor, limit).await })
    }

    fn room(&self, room: &str) -> AdminResult<RoomDetail> {
        let (i, room) = (Arc::clone(&self.inner), room.to_string());
        self.run(REDIS_TIMEOUT, async move { i.of_room(&room).room(&room).await })
    }

    fn kick(&self, room: &str, peer: PeerId) -> AdminResult<u64> {
        let (i, room) = (Arc::clone(&self.inner), room.to_string());
        self.run(ACTION_TIMEOUT + REDIS_TIMEOUT, async move { i.of_room(&room).kick(&room, peer).await })
    }

    fn close(&self, room: &str) -> AdminResult<u64> {
        let (i, room) = (Arc::clone(&self.inner), room.to_string());
        self.run(ACTION_TIMEOUT + REDIS_TIMEOUT, async move { i.of_room(&room).close(&room).await })
    }

    /// Every bucket's master answers.
    fn healthy(&self) -> futures_util::future::BoxFuture<'static, bool> {
        let i = Arc::clone(&self.inner);
        let ping = self.run(Duration::from_secs(1), async move {
            for b in &i.each {
                cmd("PING").query_async::<String>(&mut b.conn().await?).await.map_err(down)?;
            }
            Ok(())
        });
        Box::pin(async move { ping.await.is_ok() })
    }
}

/// A room's name as its clients know it, and its protocol.
fn client_name(room: &str) -> (&str, &'static str) {
    match room.strip_prefix(RoomName::SEED_PREFIX) {
        Some(channel) => (channel, "seed"),
        None => (room, "v1"),
    }
}

/// Escapes the characters SCAN's MATCH treats as glob syntax.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globs() {
        assert_eq!(client_name("seed/my room"), ("my room", "seed"));
        assert_eq!(client_name("team:a"), ("team:a", "v1"));
        assert_eq!(glob_escape("sb:{a}:room:"), "sb:{a}:room:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
