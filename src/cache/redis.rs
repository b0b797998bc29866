//! Redis adapter. Key names are listed in the module doc in `mod.rs`; every compound operation is
//! one round trip (a MULTI/EXEC pipeline or a Lua script) so it is atomic on the server.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use async_trait::async_trait;

use super::{Cache, CacheError, CacheResult, GeoHit, Lease};

/// Take the lease if free (a new, larger fencing token) or extend it if `owner` holds it (same
/// token). Returns the token, or nil when someone else holds it. An unparseable value counts as
/// held by someone else: we never overwrite what we don't understand.
/// KEYS: lock, fence. ARGV: owner, ttl_ms, fence_ttl_ms.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  local token = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
  return token
end
local owner, token = string.match(current, '^(.*)|(%d+)$')
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return token
end
return false
",
    )
});

/// Take a cabinet's ownership, whoever held it: the epoch goes up by one, and above the floor
/// (the database's highest), and the owner is set. Returns the epoch.
/// KEYS: owner, epoch. ARGV: node, floor, ttl_ms, epoch_ttl_ms.
static OWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('INCR', KEYS[2])
if epoch <= tonumber(ARGV[2]) then
  epoch = tonumber(ARGV[2]) + 1
  redis.call('SET', KEYS[2], epoch)
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[3])
return epoch
",
    )
});

/// Extend every ownership still held with exactly its value; returns the indexes (1-based) of
/// those lost. KEYS: the owner keys. ARGV: ttl_ms, then one value per key.
static RENEW_OWNED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
  else
    table.insert(lost, i)
  end
end
return lost
",
    )
});

/// Extend the lease only if its value is exactly ours. KEYS: lock. ARGV: value, ttl_ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Delete the lease only if its value is exactly ours. KEYS: lock. ARGV: value.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// Redis-backed cache. Cloning is cheap: clones share one multiplexed, self-reconnecting
/// connection.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connect (failing if Redis cannot be reached now) and keep reconnecting later as needed.
    pub async fn connect(url: &str, prefix: &str) -> CacheResult<Self> {
        let client = Client::open(url)?;
        // The library's 500 ms response timeout is tight on a small, busy machine; a slow answer
        // is better than a spurious error for state this cheap to fetch.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { conn, prefix: prefix.to_owned() })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    fn hb_key(&self) -> String {
        format!("{}:hb", self.prefix)
    }

    fn geo_key(&self) -> String {
        format!("{}:geo", self.prefix)
    }

    /// A handle for one call; `ConnectionLike` needs `&mut`, and clones share the connection.
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// The lease's stored value; renew/release compare it byte for byte.
fn lease_value(owner: &str, token: u64) -> String {
    format!("{owner}|{token}")
}

/// `"{owner}|{token}"`, split at the last `|` so that an owner may itself contain `|`
/// (the token is all digits).
fn parse_lease(key: &str, name: &str, value: &str) -> CacheResult<Lease> {
    let malformed =
        |reason: &str| CacheError::Malformed { key: key.to_owned(), reason: format!("{reason}: {value:?}") };
    let (owner, token) = value.rsplit_once('|').ok_or_else(|| malformed("no '|' between owner and token"))?;
    Ok(Lease {
        name: name.to_owned(),
        owner: owner.to_owned(),
        token: parse_token(token).ok_or_else(|| malformed("token is not an unsigned integer"))?,
    })
}

/// Digits only (no sign), matching the Lua pattern `%d+` used by the acquire script.
fn parse_token(token: &str) -> Option<u64> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// Redis refuses a zero expiry (`SET … PX 0`); both adapters treat it as the shortest one.
fn ttl_arg(ttl_ms: u64) -> u64 {
    ttl_ms.max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn ping(&self) -> CacheResult<()> {
        let _: String = ::redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn cabinet_set(&self, sn: &str, fields: &[(&str, String)]) -> CacheResult<()> {
        if fields.is_empty() {
            // HSET with no pairs is a syntax error; nothing to do anyway.
            return Ok(());
        }
        let cab = self.key("cab", sn);
        let mut cmd = ::redis::cmd("HSET");
        cmd.arg(&cab);
        for (field, value) in fields {
            cmd.arg(*field).arg(value);
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic().add_command(cmd).ignore().cmd("PEXPIRE").arg(&cab).arg(ttl_arg(super::CABINET_TTL_MS)).ignore();
        let () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn cabinet_get(&self, sn: &str) -> CacheResult<HashMap<String, String>> {
        Ok(::redis::cmd("HGETALL").arg(self.key("cab", sn)).query_async(&mut self.conn()).await?)
    }

    async fn cabinet_get_many(&self, sns: &[String]) -> CacheResult<Vec<HashMap<String, String>>> {
        if sns.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for sn in sns {
            pipe.cmd("HGETALL").arg(self.key("cab", sn));
        }
        Ok(pipe.query_async(&mut self.conn()).await?)
    }

    async fn cabinet_field(&self, sn: &str, field: &str) -> CacheResult<Option<String>> {
        Ok(::redis::cmd("HGET").arg(self.key("cab", sn)).arg(field).query_async(&mut self.conn()).await?)
    }

    async fn record_heartbeat(&self, sn: &str, at_ms: i64, fields: &[(&str, String)]) -> CacheResult<Option<String>> {
        let cab = self.key("cab", sn);
        // HGET first: `fields` may carry a new `liveness`, and the caller wants the old one.
        // MULTI/EXEC keeps the read and the writes together, in one round trip.
        let mut hset = ::redis::cmd("HSET");
        hset.arg(&cab);
        for (field, value) in fields {
            hset.arg(*field).arg(value);
        }
        // Last, so the receipt time wins over a stray `last_heartbeat_ms` in `fields`.
        hset.arg("last_heartbeat_ms").arg(at_ms);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(&cab)
            .arg("liveness")
            .add_command(hset)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&cab)
            .arg(ttl_arg(super::CABINET_TTL_MS))
            .ignore()
            .cmd("ZADD")
            .arg(self.hb_key())
            .arg(at_ms)
            .arg(sn)
            .ignore()
            .cmd("INCR")
            .arg(self.key("count", "heartbeats"))
            .ignore();
        let (prior,): (Option<String>,) = pipe.query_async(&mut self.conn()).await?;
        Ok(prior)
    }

    async fn heartbeat_track(&self, sn: &str, at_ms: i64) -> CacheResult<()> {
        let _: i64 = ::redis::cmd("ZADD").arg(self.hb_key()).arg(at_ms).arg(sn).query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn heartbeat_track_if_absent(&self, sn: &str, at_ms: i64) -> CacheResult<bool> {
        let added: i64 =
            ::redis::cmd("ZADD").arg(self.hb_key()).arg("NX").arg(at_ms).arg(sn).query_async(&mut self.conn()).await?;
        Ok(added == 1)
    }

    async fn heartbeats_since(&self, since_ms: i64) -> CacheResult<u64> {
        Ok(::redis::cmd("ZCOUNT").arg(self.hb_key()).arg(since_ms).arg("+inf").query_async(&mut self.conn()).await?)
    }

    async fn heartbeats_before(&self, cutoff_ms: i64, limit: usize) -> CacheResult<Vec<(String, i64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Scores come back as doubles (which hold any realistic Unix-ms value exactly).
        let rows: Vec<(String, f64)> = ::redis::cmd("ZRANGE")
            .arg(self.hb_key())
            .arg("-inf")
            .arg(format!("({cutoff_ms}"))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await?;
        Ok(rows.into_iter().map(|(sn, score)| (sn, score as i64)).collect())
    }

    async fn heartbeat_forget(&self, sn: &str) -> CacheResult<()> {
        let _: i64 = ::redis::cmd("ZREM").arg(self.hb_key()).arg(sn).query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn heartbeat_tracked(&self) -> CacheResult<u64> {
        Ok(::redis::cmd("ZCARD").arg(self.hb_key()).query_async(&mut self.conn()).await?)
    }

    async fn counter_add(&self, name: &str, by: i64) -> CacheResult<i64> {
        Ok(::redis::cmd("INCRBY").arg(self.key("count", name)).arg(by).query_async(&mut self.conn()).await?)
    }

    async fn counter_get(&self, name: &str) -> CacheResult<i64> {
        let value: Option<i64> = ::redis::cmd("GET").arg(self.key("count", name)).query_async(&mut self.conn()).await?;
        Ok(value.unwrap_or(0))
    }

    async fn geo_add(&self, member: &str, lng: f64, lat: f64) -> CacheResult<()> {
        let _: i64 = ::redis::cmd("GEOADD")
            .arg(self.geo_key())
            .arg(lng)
            .arg(lat)
            .arg(member)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn geo_count(&self) -> CacheResult<u64> {
        Ok(::redis::cmd("ZCARD").arg(self.geo_key()).query_async(&mut self.conn()).await?)
    }

    async fn geo_remove(&self, member: &str) -> CacheResult<()> {
        // A GEO set is a sorted set underneath.
        let _: i64 = ::redis::cmd("ZREM").arg(self.geo_key()).arg(member).query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn geo_search(&self, lng: f64, lat: f64, radius_m: f64, limit: usize) -> CacheResult<Vec<GeoHit>> {
        if limit == 0 || radius_m.is_nan() || radius_m < 0.0 {
            // Redis rejects COUNT 0 and negative radii; both adapters answer "nothing" instead.
            return Ok(Vec::new());
        }
        let rows: Vec<(String, f64)> = ::redis::cmd("GEOSEARCH")
            .arg(self.geo_key())
            .arg("FROMLONLAT")
            .arg(lng)
            .arg(lat)
            .arg("BYRADIUS")
            .arg(radius_m)
            .arg("m")
            .arg("ASC")
            .arg("COUNT")
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .arg("WITHDIST")
            .query_async(&mut self.conn())
            .await?;
        Ok(rows.into_iter().map(|(member, distance_m)| GeoHit { member, distance_m }).collect())
    }

    async fn lease_acquire(&self, name: &str, owner: &str, ttl_ms: u64) -> CacheResult<Option<Lease>> {
        let lock = self.key("lock", name);
        let token: Option<String> = ACQUIRE
            .key(&lock)
            .key(self.key("fence", name))
            .arg(owner)
            .arg(ttl_arg(ttl_ms))
            .arg(ttl_arg(super::FENCE_TTL_MS))
            .invoke_async(&mut self.conn())
            .await?;
        let Some(token) = token else {
            return Ok(None);
        };
        let token = parse_token(&token).ok_or_else(|| CacheError::Malformed {
            key: lock,
            reason: format!("fencing token is not an unsigned integer: {token:?}"),
        })?;
        Ok(Some(Lease { name: name.to_owned(), owner: owner.to_owned(), token }))
    }

    async fn lease_renew(&self, lease: &Lease, ttl_ms: u64) -> CacheResult<bool> {
        let renewed: i64 = RENEW
            .key(self.key("lock", &lease.name))
            .arg(lease_value(&lease.owner, lease.token))
            .arg(ttl_arg(ttl_ms))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(renewed == 1)
    }

    async fn lease_release(&self, lease: &Lease) -> CacheResult<bool> {
        let released: i64 = RELEASE
            .key(self.key("lock", &lease.name))
            .arg(lease_value(&lease.owner, lease.token))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(released == 1)
    }

    async fn own(&self, sn: &str, node: &str, floor: u64, ttl_ms: u64) -> CacheResult<u64> {
        let key = self.key("owner", sn);
        let epoch: i64 = OWN
            .key(&key)
            .key(self.key("epoch", sn))
            .arg(node)
            .arg(floor)
            .arg(ttl_arg(ttl_ms))
            .arg(ttl_arg(super::FENCE_TTL_MS))
            .invoke_async(&mut self.conn())
            .await?;
        u64::try_from(epoch).map_err(|_| CacheError::Malformed { key, reason: format!("epoch {epoch}") })
    }

    async fn renew_owned(&self, node: &str, owned: &[(String, u64)], ttl_ms: u64) -> CacheResult<Vec<String>> {
        let mut lost = Vec::new();
        // Bounded scripts: one long one would hold Redis up for every other client.
        for chunk in owned.chunks(500) {
            let mut script = RENEW_OWNED.prepare_invoke();
            script.arg(ttl_arg(ttl_ms));
            for (sn, epoch) in chunk {
                script.key(self.key("owner", sn)).arg(lease_value(node, *epoch));
            }
            let gone: Vec<usize> = script.invoke_async(&mut self.conn()).await?;
            lost.extend(gone.into_iter().filter_map(|i| chunk.get(i.wrapping_sub(1)).map(|(sn, _)| sn.clone())));
        }
        Ok(lost)
    }

    async fn owner(&self, sn: &str) -> CacheResult<Option<(String, u64)>> {
        let key = self.key("owner", sn);
        let value: Option<String> = ::redis::cmd("GET").arg(&key).query_async(&mut self.conn()).await?;
        Ok(value.map(|v| parse_lease(&key, sn, &v)).transpose()?.map(|l| (l.owner, l.token)))
    }

    async fn disown(&self, sn: &str, node: &str, epoch: u64) -> CacheResult<bool> {
        let released: i64 =
            RELEASE.key(self.key("owner", sn)).arg(lease_value(node, epoch)).invoke_async(&mut self.conn()).await?;
        Ok(released == 1)
    }

    async fn node_report(&self, node: &str, report: &str, ttl_ms: u64) -> CacheResult<()> {
        ::redis::pipe()
            .cmd("SET")
            .arg(self.key("node", node))
            .arg(report)
            .arg("PX")
            .arg(ttl_arg(ttl_ms))
            .ignore()
            .cmd("SADD")
            .arg(format!("{}:nodes", self.prefix))
            .arg(node)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn node_reports(&self) -> CacheResult<Vec<(String, String)>> {
        let set = format!("{}:nodes", self.prefix);
        let mut ids: Vec<String> = ::redis::cmd("SMEMBERS").arg(&set).query_async(&mut self.conn()).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key("node", id)).collect();
        let reports: Vec<Option<String>> = ::redis::cmd("MGET").arg(&keys).query_async(&mut self.conn()).await?;
        let mut alive = Vec::new();
        for (id, report) in ids.into_iter().zip(reports) {
            match report {
                Some(r) => alive.push((id, r)),
                // Lapsed: the node is gone; it adds itself again if it comes back.
                None => ::redis::cmd("SREM").arg(&set).arg(&id).query_async::<()>(&mut self.conn()).await?,
            }
        }
        Ok(alive)
    }

    async fn lease_holder(&self, name: &str) -> CacheResult<Option<Lease>> {
        let lock = self.key("lock", name);
        let value: Option<String> = ::redis::cmd("GET").arg(&lock).query_async(&mut self.conn()).await?;
        value.map(|value| parse_lease(&lock, name, &value)).transpose()
    }

    async fn order_put(&self, id: i64, value: &str, ttl_ms: u64) -> CacheResult<()> {
        let _: () = ::redis::cmd("SET")
            .arg(self.key("order", &id.to_string()))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn order_get(&self, id: i64) -> CacheResult<Option<String>> {
        Ok(::redis::cmd("GET").arg(self.key("order", &id.to_string())).query_async(&mut self.conn()).await?)
    }

    async fn order_forget(&self, id: i64) -> CacheResult<()> {
        let _: i64 = ::redis::cmd("DEL").arg(self.key("order", &id.to_string())).query_async(&mut self.conn()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_value_round_trips_through_the_parser() {
        let lease = parse_lease("p:lock:n", "n", &lease_value("host|pid", 42)).unwrap();
        assert_eq!(lease, Lease { name: "n".to_owned(), owner: "host|pid".to_owned(), token: 42 });
    }

    #[test]
    fn malformed_lease_values_are_reported() {
        for bad in ["no-separator", "owner|", "owner|-1", "owner|+1", "owner|1x", "owner|99999999999999999999"] {
            match parse_lease("p:lock:n", "n", bad) {
                Err(CacheError::Malformed { key, .. }) => assert_eq!(key, "p:lock:n"),
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
    }
}
