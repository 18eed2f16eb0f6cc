//! The bus over a Redis Cluster: one [`RedisBus`] per bucket of the key space.
//!
//! A Lua script may touch one hash slot only, and each membership change touches a room, the
//! node's lease and its room index at once; so each bucket ([`Buckets`]) holds a complete
//! copy of the one-Redis key space in a slot of its own, and a room lives in one bucket. This
//! node registers, renews, subscribes and keeps its links in every bucket, each through the
//! bus already proven on one Redis (its leases, epochs, sequenced links, re-registration and
//! reconciliation), reaching whichever master holds the bucket's slot. Everything about a room
//! goes through its bucket's bus, so a room's order of membership events and relays is one
//! bus's order, as on one Redis.
//!
//! A shard's failure is a Redis restart for its buckets only: what their buses report about
//! the cluster (a node lost, members to write again, views to reconcile) reaches the rooms of
//! those buckets only ([`ClusterEvent::Within`]).

use std::sync::{Arc, OnceLock};

use futures_util::FutureExt;
use futures_util::future::join_all;
use prometheus::IntGauge;
use serde_json::value::RawValue;
use switchboard::cluster::Buckets;
use switchboard::cluster::endpoint::Endpoint;
use switchboard::protocol::v1::{LeaveReason, ResumeToken};
use switchboard::protocol::{PeerId, RoomName};

use super::redis::{RedisBus, Settings};
use super::{
    Bus, BusResult, Claim, ClusterEvent, ClusterInbox, Delivery, Inboxes, JoinAck, JoinRules, Joined, MemberRecord,
    NodeId, ParkedSession, RoomEvent, Via,
};
use crate::metrics::BusMetrics;

pub struct BucketedBus {
    buckets: Arc<Buckets>,
    buses: Vec<Arc<RedisBus>>,
    /// 1 while every bucket's bus is up (each bus's own gauge would only say its own state).
    up: IntGauge,
    arbiter: OnceLock<actix::Arbiter>,
}

impl BucketedBus {
    pub fn new(
        endpoint: &Endpoint,
        buckets: Buckets,
        node: NodeId,
        settings: Settings,
        metrics: BusMetrics,
    ) -> Arc<Self> {
        let up = metrics.up.clone();
        let buses = (0..buckets.count())
            .map(|b| {
                let mut metrics = metrics.clone();
                metrics.up = IntGauge::new("bucket_up", "one bucket's bus is up").unwrap_or_else(|_| up.clone());
                let (endpoint, keys) = buckets.reach(b, endpoint, node.clone());
                RedisBus::new(endpoint, keys, settings.clone(), metrics)
            })
            .collect();
        Arc::new(Self { buckets: Arc::new(buckets), buses, up, arbiter: OnceLock::new() })
    }

    fn of_room(&self, room: &RoomName) -> &RedisBus {
        &self.buses[self.buckets.of_room(room.as_str())]
    }

    fn of_token(&self, token: &str) -> &RedisBus {
        &self.buses[self.buckets.of_token(token)]
    }
}

/// Passes a bucket's news about the cluster to the rooms of that bucket only.
struct InBucket {
    to: Arc<dyn ClusterInbox>,
    bucket: usize,
    buckets: Arc<Buckets>,
}

impl ClusterInbox for InBucket {
    fn tell(&self, event: ClusterEvent) {
        let event = match event {
            e @ (ClusterEvent::NodeLost(_) | ClusterEvent::Reassert | ClusterEvent::Resync) => {
                ClusterEvent::Within { bucket: self.bucket, buckets: Arc::clone(&self.buckets), event: Box::new(e) }
            }
            // About one room or one session, named in the event: wherever it is.
            e => e,
        };
        self.to.tell(event);
    }
}

impl Bus for BucketedBus {
    fn attach(&self, _node: NodeId, inboxes: Inboxes) {
        // One thread for every bucket's tasks: they wait on Redis, they do not compute.
        let arbiter = actix::Arbiter::new();
        for (bucket, bus) in self.buses.iter().enumerate() {
            let cluster =
                Arc::new(InBucket { to: Arc::clone(&inboxes.cluster), bucket, buckets: Arc::clone(&self.buckets) });
            let inboxes = Inboxes { rooms: Arc::clone(&inboxes.rooms), cluster, status: Arc::clone(&inboxes.status) };
            bus.start(inboxes, &arbiter.handle());
        }
        let _ = self.arbiter.set(arbiter);
    }

    fn join(&self, room: &RoomName, member: MemberRecord, rules: JoinRules) -> BusResult<Joined> {
        self.of_room(room).join(room, member, rules)
    }

    fn ack(&self, room: &RoomName, ack: JoinAck) {
        self.of_room(room).ack(room, ack);
    }

    fn leave(&self, room: &RoomName, node: &NodeId, peer: PeerId, reason: LeaveReason) -> BusResult<()> {
        self.of_room(room).leave(room, node, peer, reason)
    }

    fn publish(&self, room: &RoomName, from: &NodeId, to: &[NodeId], event: RoomEvent) -> BusResult<Delivery> {
        self.of_room(room).publish(room, from, to, event)
    }

    fn members(&self, room: &RoomName) -> BusResult<Vec<MemberRecord>> {
        self.of_room(room).members(room)
    }

    fn generation(&self, room: &RoomName) -> u64 {
        self.of_room(room).generation(room)
    }

    fn goodbye(&self) -> BusResult<()> {
        let all = join_all(self.buses.iter().map(|b| b.goodbye()));
        async move { all.await.into_iter().collect::<Result<Vec<()>, _>>().map(drop) }.boxed()
    }

    fn healthy(&self) -> bool {
        let healthy = self.buses.iter().all(|b| b.healthy());
        self.up.set(i64::from(healthy));
        healthy
    }

    fn bounce(&self, room: &RoomName, via: &Via, from: PeerId, id: Option<Box<RawValue>>, why: &str) {
        self.of_room(room).bounce(room, via, from, id, why);
    }

    fn reconcile_every(&self) -> Option<std::time::Duration> {
        self.buses.first().and_then(|b| b.reconcile_every())
    }

    fn resumable(&self) -> bool {
        true
    }

    fn park(&self, token: &str, parked: Option<&ParkedSession>, ttl: std::time::Duration) -> BusResult<()> {
        self.of_token(token).park(token, parked, ttl)
    }

    fn claim(&self, token: &str) -> BusResult<Claim> {
        self.of_token(token).claim(token)
    }

    fn takeover(&self, token: &ResumeToken) {
        // Every node listens in every bucket: any one reaches the holder; the peer spreads them.
        self.of_token(&token.peer.to_string()).takeover(token);
    }

    fn resume(&self, room: &RoomName, member: MemberRecord, from: &NodeId) -> BusResult<Option<Vec<MemberRecord>>> {
        self.of_room(room).resume(room, member, from)
    }
}

impl Drop for BucketedBus {
    fn drop(&mut self) {
        if let Some(a) = self.arbiter.get() {
            a.stop();
        }
    }
}
