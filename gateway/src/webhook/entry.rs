//! A stream entry of the cluster's webhook events, as the gateways read it: the fields
//! `node/src/bus/redis/lua/events.lua` writes, made into the event a receiver gets.

use redis::streams::StreamId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use switchboard::api::{WebhookEvent, WebhookKind, WebhookPeer};
use switchboard::protocol::v1::LeaveReason;

use super::stream::EntryId;

/// The event an entry records (`node/src/bus/redis/lua/events.lua`). Its time is the entry's,
/// and its `id` is derived from the cluster's name and the entry's: the same on every delivery,
/// by whichever gateway, and distinct between clusters sharing a receiver.
pub(super) fn event_of(cluster: &str, entry: &StreamId, (ms, seq): EntryId) -> Option<WebhookEvent> {
    use serde::de::IntoDeserializer;
    use serde::de::value::Error;
    let field = |name: &str| entry.get::<String>(name);
    let text = |value: String| IntoDeserializer::<Error>::into_deserializer(value);
    let kind = WebhookKind::deserialize(text(field("type")?)).ok()?;
    let peer = match field("peer") {
        Some(id) => Some(WebhookPeer { id: id.parse().ok()?, user: field("user"), node: field("node")? }),
        None => None,
    };
    let reason = match field("reason") {
        Some(r) => Some(LeaveReason::deserialize(text(r)).ok()?),
        None => None,
    };
    let digest = Sha256::digest(format!("{cluster}/{ms}-{seq}"));
    Some(WebhookEvent {
        id: format!("evt_{}", &hex::encode(digest)[..32]),
        kind,
        created_at: ms,
        cluster: cluster.to_string(),
        room: field("room")?,
        peer,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as `events.lua` writes it.
    fn entry(fields: &[(&str, &str)]) -> StreamId {
        let map =
            fields.iter().map(|(k, v)| (k.to_string(), redis::Value::BulkString(v.as_bytes().to_vec()))).collect();
        StreamId { id: "1764921600123-7".into(), map, ..Default::default() }
    }

    #[test]
    fn entries_become_the_events_they_record() {
        let id = (1_764_921_600_123, 7);
        let left = [
            ("type", "peer.left"),
            ("room", "standup"),
            ("peer", "0123456789abc"),
            ("node", "n2"),
            ("user", "alice"),
            ("reason", "node-lost"),
        ];
        let e = event_of("blue", &entry(&left), id).expect("an event");
        assert_eq!((e.kind, e.created_at, e.room.as_str()), (WebhookKind::PeerLeft, 1_764_921_600_123, "standup"));
        let peer = e.peer.as_ref().expect("peer");
        assert_eq!(
            (peer.id.to_string().as_str(), peer.user.as_deref(), peer.node.as_str()),
            ("0123456789abc", Some("alice"), "n2")
        );
        assert_eq!(e.reason, Some(LeaveReason::NodeLost));
        assert!(e.id.starts_with("evt_") && e.id.len() == 36, "{}", e.id);
        // The same entry gives the same id; another cluster's entry at the same position does not.
        assert_eq!(event_of("blue", &entry(&left), id).map(|e| e.id), Some(e.id.clone()));
        assert_ne!(event_of("green", &entry(&left), id).map(|e| e.id), Some(e.id));
        let started = event_of("blue", &entry(&[("type", "room.started"), ("room", "r")]), id).expect("event");
        assert_eq!((started.peer, started.reason), (None, None));
        let anonymous = [("type", "peer.joined"), ("room", "r"), ("peer", "0123456789abc"), ("node", "n1")];
        assert_eq!(event_of("blue", &entry(&anonymous), id).and_then(|e| e.peer).map(|p| p.user), Some(None));
        assert!(event_of("blue", &entry(&[("type", "room.exploded"), ("room", "r")]), id).is_none());
        assert!(
            event_of("blue", &entry(&[("type", "peer.left"), ("room", "r"), ("peer", "not a peer")]), id).is_none()
        );
    }
}
