//! The Redis key space and channel names of one cluster.
//!
//! Everything starts with `sb:{<cluster>}:`, so two clusters share a Redis without meeting,
//! and (the braces are a Redis Cluster hash tag) one cluster's membership keys sit in one
//! hash slot, which lets one Lua script touch a room, a node's lease and its room index
//! atomically. On a Redis Cluster each bucket of the cluster has this whole key space under a
//! tag of its own, `sb:{<cluster>/<b>}:` (see [`Buckets`](super::Buckets)). Pub/sub is per node, not per room: see `docs/architecture.md` for the numbers.
//!
//! | key / channel                   | type    | holds                                     | TTL         |
//! |---------------------------------|---------|-------------------------------------------|-------------|
//! | `sb:{c}:epoch`                  | string  | last lease epoch handed out               | none (1 key)|
//! | `sb:{c}:nodes`                  | zset    | node id → lease expiry (Redis clock, ms)  | room TTL    |
//! | `sb:{c}:lease:<node>`           | string  | the node's current epoch                  | lease       |
//! | `sb:{c}:node-rooms:<node>`      | hash    | room → this node's member count there     | room TTL    |
//! | `sb:{c}:node-info:<node>`       | string  | JSON [`NodeInfo`](crate::api::NodeInfo)   | 2 × lease   |
//! | `sb:{c}:room:<room>`            | hash    | peer id → [`record`](super::record)       | room TTL    |
//! | `sb:{c}:parked:<token>`         | string  | a parked session (JSON), or `pending`     | resume grace|
//! | `sb:{c}:limbo:<node>`           | hash    | records a re-registration cleared, for the webhooks | record TTL |
//! | `sb:{c}:events`                 | stream  | webhook events, oldest undelivered first  | trimmed as delivered |
//! | `sb:{c}:webhooks`               | string  | "a gateway delivers webhooks": nodes record events while it lives | 1 h, renewed |
//! | `sb:{c}:webhooks:leader`        | string  | the gateway delivering them               | 5 s, renewed |
//! | channel `sb:{c}:node:<node>`    | pub/sub | events for that node's rooms              | —           |
//! | channel `sb:{c}:control`        | pub/sub | [`Control`](super::Control) messages      | —           |

use crate::protocol::RoomName;

use super::NodeId;

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    cluster: String,
    node: NodeId,
}

impl Keys {
    pub fn new(cluster: &str, node: NodeId) -> Self {
        Self::tagged(cluster, cluster, node)
    }

    /// The key space under hash tag `tag`: one bucket of a cluster spread over a Redis Cluster
    /// (see [`Buckets`](super::Buckets)).
    pub fn tagged(cluster: &str, tag: &str, node: NodeId) -> Self {
        Self { prefix: format!("sb:{{{tag}}}:"), cluster: cluster.to_string(), node }
    }

    /// The cluster's name (`--cluster-name`).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    pub fn lease(&self) -> String {
        format!("{}lease:{}", self.prefix, self.node)
    }

    pub fn lease_prefix(&self) -> String {
        format!("{}lease:", self.prefix)
    }

    pub fn node_rooms(&self) -> String {
        format!("{}node-rooms:{}", self.prefix, self.node)
    }

    pub fn node_rooms_prefix(&self) -> String {
        format!("{}node-rooms:", self.prefix)
    }

    pub fn room(&self, room: &RoomName) -> String {
        format!("{}room:{}", self.prefix, room.as_str())
    }

    pub fn node_info(&self, node: &str) -> String {
        format!("{}node-info:{node}", self.prefix)
    }

    /// The room a `room:` key is for, if `key` is one of this cluster's room keys.
    pub fn room_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("room:")
    }

    /// A session parked by a draining node, under its resume token.
    pub fn parked(&self, token: &str) -> String {
        format!("{}parked:{token}", self.prefix)
    }

    pub fn room_prefix(&self) -> String {
        format!("{}room:", self.prefix)
    }

    pub fn channel(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    pub fn own_channel(&self) -> String {
        self.channel(&self.node)
    }

    pub fn channel_prefix(&self) -> String {
        format!("{}node:", self.prefix)
    }

    pub fn control(&self) -> String {
        format!("{}control", self.prefix)
    }

    /// Records a re-registration of this node cleared, until written again or reported gone
    /// (see `node/src/bus/redis/lua/events.lua`).
    pub fn limbo(&self) -> String {
        format!("{}limbo:{}", self.prefix, self.node)
    }

    pub fn limbo_prefix(&self) -> String {
        format!("{}limbo:", self.prefix)
    }

    /// The webhook events the membership scripts record (a stream; a consumer group of the
    /// gateways delivers them).
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// Present while gateways deliver webhooks: the scripts record events only then.
    pub fn webhooks_on(&self) -> String {
        format!("{}webhooks", self.prefix)
    }

    /// The gateway delivering the events (one at a time keeps each room's order).
    pub fn webhooks_leader(&self) -> String {
        format!("{}webhooks:leader", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_cluster_hash_tag() {
        let k = Keys::new("blue", "n1".into());
        let room = RoomName::v1("r").expect("valid");
        for key in [
            k.epoch(),
            k.nodes(),
            k.lease(),
            k.node_rooms(),
            k.room(&room),
            k.own_channel(),
            k.control(),
            k.events(),
            k.webhooks_on(),
            k.webhooks_leader(),
        ] {
            assert!(key.starts_with("sb:{blue}:"), "{key}");
        }
        assert_eq!(k.room(&room), "sb:{blue}:room:r");
        assert_eq!(k.own_channel(), "sb:{blue}:node:n1");
    }
}
