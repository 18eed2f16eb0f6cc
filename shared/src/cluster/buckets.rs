//! How one Switchboard cluster spreads over the shards of a Redis Cluster.
//!
//! Each Lua script of the nodes touches a room, a node's lease and its room index at once, and
//! a script may only touch keys of one hash slot. So the key space is split into a fixed
//! number of *buckets*, each a complete copy of the one-Redis key space (its own leases,
//! epochs, room index, rooms, event stream and node channels) under one hash tag; a room lives
//! in one bucket, chosen from its name. Every node takes part in every bucket.
//!
//! A bucket's tag is chosen so that its slot falls in the bucket's share of the slot range
//! (bucket `b` of `n`: slots `b·16384/n ..< (b+1)·16384/n`): a cluster whose shards own equal
//! contiguous ranges (what `redis-cli --cluster create` makes) holds equal numbers of buckets
//! on each shard. One bucket is the one-Redis key space itself (`sb:{<cluster>}:…`).

use crc::{CRC_16_XMODEM, Crc};

use super::endpoint::Endpoint;
use super::{Keys, NodeId};

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The most buckets a cluster may have (each costs every node a lease and a subscription).
pub const MAX_BUCKETS: u16 = 256;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// Redis Cluster's slot of a key (its hash tag's, if it has one).
pub fn slot(key: &str) -> u16 {
    let tagged = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}').filter(|&len| len > 0).map(|len| &key[open + 1..open + 1 + len]));
    CRC16.checksum(tagged.unwrap_or(key).as_bytes()) % SLOTS
}

/// The buckets of one cluster: their tags, and which holds what.
#[derive(Clone, Debug)]
pub struct Buckets {
    cluster: String,
    tags: Vec<String>,
}

impl Buckets {
    /// `count` buckets (1..=[`MAX_BUCKETS`]) for the cluster named `cluster`.
    pub fn new(cluster: &str, count: u16) -> Self {
        let count = count.clamp(1, MAX_BUCKETS);
        let tags =
            if count == 1 { vec![cluster.to_string()] } else { (0..count).map(|b| tag(cluster, b, count)).collect() };
        Self { cluster: cluster.to_string(), tags }
    }

    pub fn count(&self) -> usize {
        self.tags.len()
    }

    /// The bucket holding `room` (a room's name in the cluster, `RoomName::as_str`).
    pub fn of_room(&self, room: &str) -> usize {
        self.of(room)
    }

    /// The bucket holding a resume token's parked session and its takeover.
    pub fn of_token(&self, token: &str) -> usize {
        self.of(token)
    }

    fn of(&self, name: &str) -> usize {
        if self.tags.len() == 1 {
            return 0;
        }
        // Not the slot itself: a name with braces must not pick its own bucket.
        usize::from(CRC16.checksum(name.as_bytes())) % self.tags.len()
    }

    /// The key space of bucket `b`, for `node`.
    pub fn keys(&self, b: usize, node: NodeId) -> Keys {
        Keys::tagged(&self.cluster, &self.tags[b % self.tags.len()], node)
    }

    /// The hash slot of bucket `b` (where a Redis Cluster keeps it).
    pub fn slot(&self, b: usize) -> u16 {
        slot(&format!("{{{}}}", self.tags[b % self.tags.len()]))
    }

    /// Bucket `b` as `node` reaches it: `endpoint` aimed at the bucket's slot, and its keys.
    pub fn reach(&self, b: usize, endpoint: &Endpoint, node: NodeId) -> (Endpoint, Keys) {
        (endpoint.for_slot(self.slot(b)), self.keys(b, node))
    }
}

/// The first of `<cluster>/<b>`, `<cluster>/<b>.1`, `<cluster>/<b>.2`, … whose slot lies in
/// bucket `b`'s share of the slot range (one in `count` tries on average).
fn tag(cluster: &str, b: u16, count: u16) -> String {
    let share = |s: u16| u32::from(s) * u32::from(count) / u32::from(SLOTS);
    (0u32..)
        .map(|k| if k == 0 { format!("{cluster}/{b}") } else { format!("{cluster}/{b}.{k}") })
        .find(|t| share(CRC16.checksum(t.as_bytes()) % SLOTS) == u32::from(b))
        .unwrap_or_else(|| format!("{cluster}/{b}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Values from `redis-cli CLUSTER KEYSLOT`.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(slot("{}x"), CRC16.checksum(b"{}x") % SLOTS);
    }

    #[test]
    fn one_bucket_is_the_one_redis_key_space() {
        let b = Buckets::new("blue", 1);
        assert_eq!(b.keys(0, "n1".into()).room_prefix(), "sb:{blue}:room:");
        assert_eq!(b.of_room("anything"), 0);
    }

    #[test]
    fn buckets_cover_the_slot_range_evenly_and_rooms_spread() {
        let b = Buckets::new("blue", 12);
        for i in 0..12 {
            let slot = u32::from(b.slot(i));
            assert_eq!(slot * 12 / u32::from(SLOTS), i as u32, "bucket {i} at slot {slot}");
            let keys = b.keys(i, "n1".into());
            assert_eq!(super::slot(&keys.room_prefix()), b.slot(i));
            assert_eq!(super::slot(&keys.own_channel()), b.slot(i));
        }
        let mut per = [0; 12];
        for r in 0..1200 {
            per[b.of_room(&format!("room-{r}"))] += 1;
        }
        assert!(per.iter().all(|&n| n > 50), "{per:?}");
    }
}
