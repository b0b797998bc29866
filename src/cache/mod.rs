//! The cache: fast, shared, non-durable state.
//!
//! Two adapters behind one trait: Redis in production, an in-process map in the embedded profile.
//! Nothing here is the system of record; the database is. Keys (Redis names, mirrored in memory):
//! - `{prefix}:cab:{sn}`    hash of cabinet facts (status, liveness, temperature, node, …); lapses
//!   [`CABINET_TTL_MS`] after its last write
//! - `{prefix}:hb`          sorted set, sn → last heartbeat (Unix ms), for the liveness watchdog
//! - `{prefix}:geo`         GEO set for nearby search (GCJ-02 longitude/latitude)
//! - `{prefix}:lock:{name}` lease value `"{owner}|{token}"` with a TTL
//! - `{prefix}:fence:{name}` fencing-token counter, only ever increases while it lives: it lapses
//!   [`FENCE_TTL_MS`] after the lease was last taken, long after any holder's lease has
//! - `{prefix}:owner:{sn}` the node that owns a cabinet, `"{node}|{epoch}"`, with a TTL its
//!   owner renews while the cabinet is connected
//! - `{prefix}:epoch:{sn}`  the cabinet's ownership epoch, only ever increasing while it lives
//!   (lapses [`FENCE_TTL_MS`] after it was last taken; the database keeps the highest one in
//!   use, and a new owner starts above it, so losing it costs nothing)
//! - `{prefix}:node:{id}`   what a node reports of itself (JSON), lapsing unless renewed
//! - `{prefix}:nodes`       set of node ids that have reported (members whose report lapsed are
//!   dropped when read)
//! - `{prefix}:order:{id}`  an open order's cached start (lapses with its TTL)
//! - `{prefix}:count:{name}` plain counters
//!
//! Every key has a bounded lifetime or is one of a fixed few (`hb`, `geo`, `nodes`, `count:*`),
//! so the key count follows the fleet, not the orders. Everything here can be lost at any moment: what
//! Heft reads back is rebuilt from the database (the watchdog's round refills the heartbeat set and
//! the GEO index; a heartbeat the cache did not expect refills its cabinet's hash).
//!
//! The prefix comes from config so that several deployments (or parallel tests) can share one Redis.

/// A cabinet hash lives this long after its last write (a heartbeat refreshes it).
pub const CABINET_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// A fencing counter lives this long after its lease was last taken: tokens only need to grow
/// while some holder of the lease may still be alive, and leases last seconds.
pub const FENCE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

mod memory;
mod redis;
#[cfg(test)]
mod tests;

pub use memory::MemoryCache;
pub use redis::RedisCache;

use std::collections::HashMap;

use async_trait::async_trait;

/// Errors from a cache adapter. The memory adapter never fails; Redis can.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("cache value for {key} is malformed: {reason}")]
    Malformed { key: String, reason: String },
}

pub type CacheResult<T> = Result<T, CacheError>;

/// A member of the GEO set found by a radius search.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoHit {
    pub member: String,
    /// Great-circle distance in metres, as Redis computes it (haversine, R = 6372797.560856 m).
    pub distance_m: f64,
}

/// A lease held by `owner`. `token` is the fencing token: it increases every time the lease
/// changes hands, so a write carrying an older token can be refused by whoever checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub token: u64,
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Round trip to the backing store (for `/readyz`).
    async fn ping(&self) -> CacheResult<()>;

    // --- cabinet hash ---------------------------------------------------------------------
    /// Set some fields of the cabinet hash (HSET with several pairs). Other fields are kept.
    async fn cabinet_set(&self, sn: &str, fields: &[(&str, String)]) -> CacheResult<()>;
    /// All fields of the cabinet hash; empty when the cabinet is unknown.
    async fn cabinet_get(&self, sn: &str) -> CacheResult<HashMap<String, String>>;
    /// The hashes of several cabinets in one round trip, in the order asked (empty for unknown).
    async fn cabinet_get_many(&self, sns: &[String]) -> CacheResult<Vec<HashMap<String, String>>>;
    /// One field of the cabinet hash.
    async fn cabinet_field(&self, sn: &str, field: &str) -> CacheResult<Option<String>>;

    // --- heartbeats -----------------------------------------------------------------------
    /// Record a heartbeat received at `at_ms` (Unix ms): set `last_heartbeat_ms` and `fields` on the
    /// cabinet hash, put the cabinet in the heartbeat set with score `at_ms`, and add one to the
    /// `heartbeats` counter. Returns the hash's `liveness` field as it was, so the caller can see a
    /// recovery without a second round trip.
    async fn record_heartbeat(&self, sn: &str, at_ms: i64, fields: &[(&str, String)]) -> CacheResult<Option<String>>;
    /// Put a cabinet in the heartbeat set (at login) without counting a heartbeat.
    async fn heartbeat_track(&self, sn: &str, at_ms: i64) -> CacheResult<()>;
    /// Cabinets in the heartbeat set whose last heartbeat is strictly before `cutoff_ms`, oldest
    /// first, at most `limit`.
    async fn heartbeats_before(&self, cutoff_ms: i64, limit: usize) -> CacheResult<Vec<(String, i64)>>;
    /// Put a cabinet in the heartbeat set only if it is not there yet (watchdog start-up: a
    /// cabinet the database believes online gets a full grace period). True when added.
    async fn heartbeat_track_if_absent(&self, sn: &str, at_ms: i64) -> CacheResult<bool>;
    /// How many cabinets in the heartbeat set were heard from at or after `since_ms`.
    async fn heartbeats_since(&self, since_ms: i64) -> CacheResult<u64>;
    /// Take a cabinet out of the heartbeat set (it is offline; its next heartbeat puts it back).
    async fn heartbeat_forget(&self, sn: &str) -> CacheResult<()>;
    /// How many cabinets the heartbeat set holds (the ones we expect heartbeats from).
    async fn heartbeat_tracked(&self) -> CacheResult<u64>;

    // --- counters ---------------------------------------------------------------------------
    async fn counter_add(&self, name: &str, by: i64) -> CacheResult<i64>;
    async fn counter_get(&self, name: &str) -> CacheResult<i64>;

    // --- GEO --------------------------------------------------------------------------------
    async fn geo_add(&self, member: &str, lng: f64, lat: f64) -> CacheResult<()>;
    async fn geo_remove(&self, member: &str) -> CacheResult<()>;
    /// How many members the GEO set holds (to see that it was lost).
    async fn geo_count(&self) -> CacheResult<u64>;
    /// Members within `radius_m` of the point, nearest first, at most `limit`.
    async fn geo_search(&self, lng: f64, lat: f64, radius_m: f64, limit: usize) -> CacheResult<Vec<GeoHit>>;

    // --- leases -----------------------------------------------------------------------------
    /// Take the lease if it is free or expired, or extend it if `owner` already holds it.
    /// `None` when someone else holds it. A new holder gets a larger token than any before.
    async fn lease_acquire(&self, name: &str, owner: &str, ttl_ms: u64) -> CacheResult<Option<Lease>>;
    /// Extend a lease still held by `owner` with `token`; false when it was lost.
    async fn lease_renew(&self, lease: &Lease, ttl_ms: u64) -> CacheResult<bool>;
    /// Give the lease up if still held with this token; false when it was already lost.
    async fn lease_release(&self, lease: &Lease) -> CacheResult<bool>;
    /// The current holder, if any.
    async fn lease_holder(&self, name: &str) -> CacheResult<Option<Lease>>;

    // --- cabinet ownership -----------------------------------------------------------------
    /// Take the cabinet's ownership for `node`, whoever held it: the epoch goes up by one (and
    /// above `floor`, the highest epoch the database has seen), and the owner is set with a TTL.
    /// Returns the new epoch.
    async fn own(&self, sn: &str, node: &str, floor: u64, ttl_ms: u64) -> CacheResult<u64>;
    /// Extend each ownership `node` still holds under its epoch; returns the serial numbers whose
    /// ownership is no longer `node`'s (taken by another node, or lapsed).
    async fn renew_owned(&self, node: &str, owned: &[(String, u64)], ttl_ms: u64) -> CacheResult<Vec<String>>;
    /// The owner of a cabinet and its epoch, if any.
    async fn owner(&self, sn: &str) -> CacheResult<Option<(String, u64)>>;
    /// Give up the ownership if `node` still holds it under `epoch`; false when it did not.
    async fn disown(&self, sn: &str, node: &str, epoch: u64) -> CacheResult<bool>;
    /// Record what a node reports of itself (JSON) for `ttl_ms`.
    async fn node_report(&self, node: &str, report: &str, ttl_ms: u64) -> CacheResult<()>;
    /// Every node's report still alive, by node id.
    async fn node_reports(&self) -> CacheResult<Vec<(String, String)>>;

    // --- open orders ------------------------------------------------------------------------
    /// `heft:order:{id}`: an order and the weights it started from (JSON) while its session is
    /// open, for whichever actor takes the session up; it lapses after `ttl_ms`.
    async fn order_put(&self, id: i64, value: &str, ttl_ms: u64) -> CacheResult<()>;
    async fn order_get(&self, id: i64) -> CacheResult<Option<String>>;
    async fn order_forget(&self, id: i64) -> CacheResult<()>;
}
