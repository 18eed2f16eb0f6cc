//! Reading what the scripts answer: member records, and the join script's count of nodes told.

use redis::{RedisError, RedisResult, Value};

use super::wire;
use crate::bus::{BusError, Claim, MemberRecord};

/// `[peer, record, peer, record, ...]` into member records.
pub(super) fn records(value: Option<RedisResult<Value>>) -> Result<Vec<MemberRecord>, BusError> {
    let Some(Ok(value)) = value else { return Ok(Vec::new()) };
    let flat: Vec<String> = redis::from_redis_value(value).map_err(|e| BusError::Corrupt(e.to_string()))?;
    pairs(&flat)
}

pub(super) fn pairs(flat: &[String]) -> Result<Vec<MemberRecord>, BusError> {
    flat.chunks_exact(2).map(|pair| wire::parse_record(&pair[0], &pair[1])).collect()
}

/// The join script's answer, `[told, peer, record, ...]`: how many nodes were told, and the
/// other nodes' members.
pub(super) fn joined(value: Option<RedisResult<Value>>) -> Result<(usize, Vec<MemberRecord>), BusError> {
    let corrupt = |e: String| BusError::Corrupt(e);
    let Some(Ok(Value::Array(mut items))) = value else { return Err(corrupt("join: not a list".into())) };
    if items.is_empty() {
        return Err(corrupt("join: empty answer".into()));
    }
    let told: i64 = redis::from_redis_value(items.remove(0)).map_err(|e| corrupt(e.to_string()))?;
    let flat: Vec<String> = redis::from_redis_value(Value::Array(items)).map_err(|e| corrupt(e.to_string()))?;
    Ok((told.max(0) as usize, pairs(&flat)?))
}

/// Whether `e` is the script error `name` (`redis.error_reply(name)`): depending on the Redis
/// version it arrives as its own error code or as the detail of a generic `ERR`.
pub(super) fn is_script_error(e: &RedisError, name: &str) -> bool {
    e.code() == Some(name) || e.detail().is_some_and(|d| d.split_whitespace().next() == Some(name))
}

/// The claim script's answer: a parked session's JSON, `pending`, or nil.
pub(super) fn claim(value: Option<RedisResult<Value>>) -> Result<Claim, BusError> {
    let text: Option<String> = match value {
        Some(Ok(v)) => redis::from_redis_value(v).map_err(|e| BusError::Corrupt(e.to_string()))?,
        _ => None,
    };
    match text.as_deref() {
        None => Ok(Claim::Unknown),
        Some(super::PENDING) => Ok(Claim::Pending),
        Some(json) => {
            serde_json::from_str(json).map(Claim::Parked).map_err(|e| BusError::Corrupt(format!("parked session: {e}")))
        }
    }
}
