//! Membership records: the value of a peer's field in a room hash, `node|epoch|json`.
//!
//! Text because the Lua scripts read the owning node before the first `|`; the JSON holds the
//! rest and grows by optional fields, so an older node reads a newer node's record.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::Role;

/// One member as a room hash records it.
#[derive(Debug, Default)]
pub struct Record {
    pub node: String,
    pub epoch: u64,
    /// The `meta` object the peer attached to its join.
    pub meta: Option<Box<RawValue>>,
    /// The seed protocol's client-chosen user id, for seed rooms.
    pub seed_user: Option<String>,
    /// The user its access token names, when it joined with one.
    pub user: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed member record {0:?}")]
pub struct RecordError(pub String);

#[derive(Serialize)]
struct BodyOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    m: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<Role>,
}

#[derive(Deserialize)]
struct BodyIn {
    m: Option<Box<RawValue>>,
    u: Option<String>,
    n: Option<String>,
    r: Option<Role>,
}

/// Writes a record; the pieces are borrowed so the node writes one without copying its member.
pub fn write_record(
    node: &str,
    epoch: u64,
    meta: Option<&RawValue>,
    seed_user: Option<&str>,
    user: Option<&str>,
    role: Option<Role>,
) -> String {
    let body =
        serde_json::to_string(&BodyOut { m: meta, u: seed_user, n: user, r: role }).unwrap_or_else(|_| "{}".into());
    format!("{node}|{epoch}|{body}")
}

pub fn parse_record(text: &str) -> Result<Record, RecordError> {
    let bad = || RecordError(text.chars().take(200).collect());
    let mut parts = text.splitn(3, '|');
    let (Some(node), Some(epoch), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let epoch = epoch.parse().map_err(|_| bad())?;
    let body: BodyIn = serde_json::from_str(body).map_err(|_| bad())?;
    Ok(Record { node: node.to_string(), epoch, meta: body.m, seed_user: body.u, user: body.n, role: body.r })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_even_with_separators_in_meta() {
        let meta = RawValue::from_string(r#"{"name":"a|b"}"#.into()).expect("json");
        let text = write_record("node-a", 7, Some(&meta), Some("alice"), Some("al"), Some(Role::Viewer));
        assert!(text.starts_with("node-a|7|"));
        let back = parse_record(&text).expect("parses");
        assert_eq!((back.node.as_str(), back.epoch), ("node-a", 7));
        assert_eq!(back.meta.as_deref().map(RawValue::get), Some(r#"{"name":"a|b"}"#));
        assert_eq!(back.seed_user.as_deref(), Some("alice"));
        assert_eq!((back.user.as_deref(), back.role), (Some("al"), Some(Role::Viewer)));
    }

    #[test]
    fn an_older_record_without_the_newer_fields_reads() {
        let back = parse_record(r#"n1|3|{"u":"bob"}"#).expect("parses");
        assert_eq!((back.user, back.role, back.seed_user.as_deref()), (None, None, Some("bob")));
        for bad in ["", "n1", "n1|x|{}", "n1|3|not json"] {
            assert!(parse_record(bad).is_err(), "{bad}");
        }
    }
}
