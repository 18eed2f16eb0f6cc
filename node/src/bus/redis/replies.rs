//! Reading what the scripts answer (member records, the join script's count of nodes told),
//! and answering each operation from its commands' results.

use std::sync::atomic::Ordering;

use redis::{RedisError, RedisResult, Value};

use super::writer::Op;
use super::{Shared, wire};
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

impl Shared {
    /// Answers an operation that never reached Redis.
    pub(super) fn finish(&self, op: Op, err: Result<(), BusError>) {
        if op.counted() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        if let Err(e) = err {
            self.metrics.errors.inc();
            op.fail(e);
        }
    }

    /// Answers an operation from its commands' results.
    pub(super) fn answer(&self, op: Op, results: Vec<RedisResult<Value>>) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let failed = results.iter().find_map(|r| r.as_ref().err()).map(|e| {
            self.metrics.errors.inc();
            if is_script_error(e, "FENCED") {
                BusError::Fenced
            } else if is_script_error(e, "FULL") {
                BusError::RoomFull
            } else if is_script_error(e, "SEAT") {
                BusError::SeatTaken
            } else {
                BusError::Unavailable(e.to_string())
            }
        });
        // A caller that stopped waiting does not need the answer.
        match op {
            Op::Join { reply, .. } => {
                let out = match failed {
                    Some(e) => Err(e),
                    None => joined(results.into_iter().next()),
                };
                let _ = reply.send(out);
            }
            Op::Members { reply, .. } => {
                let out = match failed {
                    Some(e) => Err(e),
                    None => records(results.into_iter().next()),
                };
                let _ = reply.send(out);
            }
            Op::Leave { reply, .. } | Op::Goodbye { reply } | Op::Park { reply, .. } => {
                let _ = reply.send(failed.map_or(Ok(()), Err));
            }
            Op::Claim { reply, .. } => {
                let out = match failed {
                    Some(e) => Err(e),
                    None => claim(results.into_iter().next()),
                };
                let _ = reply.send(out);
            }
            Op::Move { reply, .. } => {
                let gone = results.iter().any(|r| r.as_ref().is_err_and(|e| is_script_error(e, "GONE")));
                let out = match failed {
                    _ if gone => Ok(None),
                    Some(e) => Err(e),
                    None => records(results.into_iter().next()).map(Some),
                };
                let _ = reply.send(out);
            }
            // Settled by their links, never answered from a pipeline (see `pipeline`).
            op
            @ (Op::Publish { .. } | Op::Send { .. } | Op::Control { .. } | Op::Status { .. } | Op::Bounce { .. }) => {
                op.fail(failed.unwrap_or(BusError::Unavailable("not sent".into())))
            }
        }
    }
}
