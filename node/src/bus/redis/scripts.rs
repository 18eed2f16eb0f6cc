//! The Lua scripts that make each membership change one atomic step. Their text lives in
//! `lua/`, with a header saying what each takes and returns.

use redis::aio::MultiplexedConnection;
use redis::{Cmd, RedisResult, ToRedisArgs};
use switchboard::cluster::Keys;
use switchboard::protocol::RoomName;

pub struct Script {
    sha: String,
}

impl Script {
    /// An `EVALSHA` of this script. Scripts are loaded on every (re)connect, so a Redis that
    /// restarted empty has them before the first call.
    pub fn cmd<A: ToRedisArgs>(&self, keys: &[&str], args: &[A]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys.len()).arg(keys);
        for a in args {
            cmd.arg(a);
        }
        cmd
    }

    /// An `EVALSHA` of a script that records webhook events (see `lua/events.lua`): the
    /// events stream and its marker follow `keys`.
    pub fn recording<A: ToRedisArgs>(&self, k: &Keys, keys: &[&str], args: &[A]) -> Cmd {
        let (events, on) = (k.events(), k.webhooks_on());
        let mut all = keys.to_vec();
        all.extend([events.as_str(), on.as_str()]);
        self.cmd(&all, args)
    }
}

/// A membership script that records webhook events: the code they share (`lua/records.lua`,
/// `lua/events.lua`) before its own text.
fn recording(text: &str) -> String {
    let events = include_str!("lua/events.lua").replace("@SEED_PREFIX@", RoomName::SEED_PREFIX);
    format!("{}{events}{text}", include_str!("lua/records.lua"))
}

pub struct Scripts {
    pub register: Script,
    pub renew: Script,
    pub reap: Script,
    pub join: Script,
    pub leave: Script,
    pub goodbye: Script,
    pub moves: Script,
    pub claim: Script,
}

impl Scripts {
    /// Loads every script; `publish` is the command they notify nodes with (`SPUBLISH` on a
    /// Redis Cluster: the channels share the keys' slot, and a shard channel stays on its shard).
    pub async fn load(con: &mut MultiplexedConnection, publish: &str) -> RedisResult<Self> {
        let call = format!("redis.call('{publish}'");
        let mut one = async |text: &str| -> RedisResult<Script> {
            let text = text.replace("redis.call('PUBLISH'", &call);
            let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(text).query_async(con).await?;
            Ok(Script { sha })
        };
        Ok(Self {
            register: one(&recording(include_str!("lua/register.lua"))).await?,
            renew: one(&recording(include_str!("lua/renew.lua"))).await?,
            reap: one(&recording(include_str!("lua/reap.lua"))).await?,
            join: one(&recording(include_str!("lua/join.lua"))).await?,
            leave: one(&recording(include_str!("lua/leave.lua"))).await?,
            goodbye: one(&recording(include_str!("lua/goodbye.lua"))).await?,
            moves: one(include_str!("lua/move.lua")).await?,
            claim: one(include_str!("lua/claim.lua")).await?,
        })
    }
}
