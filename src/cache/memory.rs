//! In-process cache for the embedded profile. It mirrors the Redis adapter's semantics (see the
//! module doc in `mod.rs`) closely enough that the shared test suite passes against both: the
//! sorted set orders by score then member bytes, GEO positions are quantised the way Redis stores
//! them, and distances use Redis's haversine and 4-decimal reply precision.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError, CacheResult, GeoHit, Lease};

/// The counter `record_heartbeat` adds to; Redis keeps it at `{prefix}:count:heartbeats`.
const HEARTBEATS_COUNTER: &str = "heartbeats";

/// Everything lives behind one mutex so that compound operations (a heartbeat touches the hash,
/// the sorted set and a counter) are atomic, like the Redis pipeline/scripts. No method awaits
/// while holding it.
#[derive(Debug, Default)]
pub struct MemoryCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cabinets: HashMap<String, HashMap<String, String>>,
    heartbeats: SortedSet,
    counters: HashMap<String, i64>,
    /// Member → (longitude, latitude) as Redis would give them back (quantised).
    geo: HashMap<String, (f64, f64)>,
    leases: HashMap<String, Held>,
    /// Last fencing token handed out per lease name, and when; never decreases while it lives
    /// (`FENCE_TTL_MS` after it was last handed out, as in Redis).
    fences: HashMap<String, (u64, Instant)>,
    /// Lease acquisitions since expired leases and fences were last swept.
    since_sweep: u32,
    /// Node reports and when they lapse.
    nodes: HashMap<String, (String, Option<Instant>)>,
    /// Open orders: value and when it lapses (`None`: beyond what `Instant` can hold).
    orders: HashMap<i64, (String, Option<Instant>)>,
}

#[derive(Debug)]
struct Held {
    owner: String,
    token: u64,
    /// `None` when the TTL is too large for `Instant` to represent: effectively never expires.
    expires_at: Option<Instant>,
}

impl Held {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// A Redis-like sorted set of `i64` scores: a map for lookups and an ordered index that sorts
/// by (score, member), which is Redis's order (members compare bytewise, as `String` does).
#[derive(Debug, Default)]
struct SortedSet {
    scores: HashMap<String, i64>,
    order: BTreeSet<(i64, String)>,
}

impl SortedSet {
    fn insert(&mut self, member: &str, score: i64) {
        if let Some(old) = self.scores.insert(member.to_owned(), score) {
            self.order.remove(&(old, member.to_owned()));
        }
        self.order.insert((score, member.to_owned()));
    }

    fn remove(&mut self, member: &str) {
        if let Some(old) = self.scores.remove(member) {
            self.order.remove(&(old, member.to_owned()));
        }
    }

    fn len(&self) -> usize {
        self.scores.len()
    }

    fn count_from(&self, since: i64) -> usize {
        self.order.range((since, String::new())..).count()
    }

    fn before(&self, cutoff: i64, limit: usize) -> Vec<(String, i64)> {
        self.order
            .iter()
            .take_while(|(score, _)| *score < cutoff)
            .take(limit)
            .map(|(score, member)| (member.clone(), *score))
            .collect()
    }
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic while holding the lock cannot leave the maps half-updated in a way that matters
    /// for a non-durable cache, so a poisoned lock is simply taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many acquisitions between two sweeps: often enough that one lease per order keeps the maps
/// small, seldom enough that a sweep's cost does not count.
const SWEEP_EVERY: u32 = 1024;

impl State {
    /// Drop expired leases and lapsed fences now and then, as Redis expires its keys.
    fn sweep(&mut self, now: Instant) {
        self.since_sweep += 1;
        if self.since_sweep < SWEEP_EVERY {
            return;
        }
        self.since_sweep = 0;
        self.leases.retain(|_, held| held.is_live(now));
        let fence_ttl = Duration::from_millis(super::FENCE_TTL_MS);
        let leases = &self.leases;
        self.fences.retain(|name, (_, at)| leases.contains_key(name) || now.duration_since(*at) < fence_ttl);
    }
}

fn set_fields(hash: &mut HashMap<String, String>, fields: &[(&str, String)]) {
    for (field, value) in fields {
        hash.insert((*field).to_owned(), value.clone());
    }
}

/// Redis refuses a zero expiry (`SET … PX 0`); both adapters treat it as the shortest one.
/// Ownerships live beside the leases, under their Redis key's name.
fn owner_key(sn: &str) -> String {
    format!("owner:{sn}")
}

fn lease_deadline(now: Instant, ttl_ms: u64) -> Option<Instant> {
    now.checked_add(Duration::from_millis(ttl_ms.max(1)))
}

#[async_trait]
impl Cache for MemoryCache {
    async fn ping(&self) -> CacheResult<()> {
        Ok(())
    }

    async fn cabinet_set(&self, sn: &str, fields: &[(&str, String)]) -> CacheResult<()> {
        if fields.is_empty() {
            // Redis never holds an empty hash; don't create one here either.
            return Ok(());
        }
        let mut state = self.state();
        set_fields(state.cabinets.entry(sn.to_owned()).or_default(), fields);
        Ok(())
    }

    async fn cabinet_get(&self, sn: &str) -> CacheResult<HashMap<String, String>> {
        Ok(self.state().cabinets.get(sn).cloned().unwrap_or_default())
    }

    async fn cabinet_get_many(&self, sns: &[String]) -> CacheResult<Vec<HashMap<String, String>>> {
        let state = self.state();
        Ok(sns.iter().map(|sn| state.cabinets.get(sn).cloned().unwrap_or_default()).collect())
    }

    async fn cabinet_field(&self, sn: &str, field: &str) -> CacheResult<Option<String>> {
        Ok(self.state().cabinets.get(sn).and_then(|hash| hash.get(field)).cloned())
    }

    async fn record_heartbeat(&self, sn: &str, at_ms: i64, fields: &[(&str, String)]) -> CacheResult<Option<String>> {
        let mut state = self.state();
        let hash = state.cabinets.entry(sn.to_owned()).or_default();
        // Read before writing: `fields` may carry a new `liveness`.
        let prior = hash.get("liveness").cloned();
        set_fields(hash, fields);
        hash.insert("last_heartbeat_ms".to_owned(), at_ms.to_string());
        state.heartbeats.insert(sn, at_ms);
        let counter = state.counters.entry(HEARTBEATS_COUNTER.to_owned()).or_default();
        // Redis's INCR fails on overflow; a heartbeat counter wrapping is not worth failing a
        // heartbeat for, so saturate.
        *counter = counter.saturating_add(1);
        Ok(prior)
    }

    async fn heartbeat_track(&self, sn: &str, at_ms: i64) -> CacheResult<()> {
        self.state().heartbeats.insert(sn, at_ms);
        Ok(())
    }

    async fn heartbeat_track_if_absent(&self, sn: &str, at_ms: i64) -> CacheResult<bool> {
        let mut state = self.state();
        if state.heartbeats.scores.contains_key(sn) {
            return Ok(false);
        }
        state.heartbeats.insert(sn, at_ms);
        Ok(true)
    }

    async fn heartbeats_since(&self, since_ms: i64) -> CacheResult<u64> {
        Ok(self.state().heartbeats.count_from(since_ms) as u64)
    }

    async fn heartbeats_before(&self, cutoff_ms: i64, limit: usize) -> CacheResult<Vec<(String, i64)>> {
        Ok(self.state().heartbeats.before(cutoff_ms, limit))
    }

    async fn heartbeat_forget(&self, sn: &str) -> CacheResult<()> {
        self.state().heartbeats.remove(sn);
        Ok(())
    }

    async fn heartbeat_tracked(&self) -> CacheResult<u64> {
        Ok(self.state().heartbeats.len() as u64)
    }

    async fn counter_add(&self, name: &str, by: i64) -> CacheResult<i64> {
        let mut state = self.state();
        let counter = state.counters.entry(name.to_owned()).or_default();
        // Same refusal as Redis's INCRBY, so callers see one behaviour.
        *counter = counter.checked_add(by).ok_or_else(|| CacheError::Malformed {
            key: format!("count:{name}"),
            reason: "increment or decrement would overflow".to_owned(),
        })?;
        Ok(*counter)
    }

    async fn counter_get(&self, name: &str) -> CacheResult<i64> {
        Ok(self.state().counters.get(name).copied().unwrap_or(0))
    }

    async fn geo_add(&self, member: &str, lng: f64, lat: f64) -> CacheResult<()> {
        check_lng_lat(lng, lat)?;
        let stored = geo::quantise(lng, lat);
        self.state().geo.insert(member.to_owned(), stored);
        Ok(())
    }

    async fn geo_count(&self) -> CacheResult<u64> {
        Ok(self.state().geo.len() as u64)
    }

    async fn geo_remove(&self, member: &str) -> CacheResult<()> {
        self.state().geo.remove(member);
        Ok(())
    }

    async fn geo_search(&self, lng: f64, lat: f64, radius_m: f64, limit: usize) -> CacheResult<Vec<GeoHit>> {
        if limit == 0 || radius_m.is_nan() || radius_m < 0.0 {
            // Redis rejects COUNT 0 and negative radii; both adapters answer "nothing" instead.
            return Ok(Vec::new());
        }
        check_lng_lat(lng, lat)?;
        let mut hits: Vec<GeoHit> = self
            .state()
            .geo
            .iter()
            .filter_map(|(member, &(m_lng, m_lat))| {
                let distance = geo::distance_m(lng, lat, m_lng, m_lat);
                (distance <= radius_m).then(|| GeoHit { member: member.clone(), distance_m: geo::as_replied(distance) })
            })
            .collect();
        // Redis leaves ties in unspecified order; break them by member to stay deterministic.
        hits.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m).then_with(|| a.member.cmp(&b.member)));
        hits.truncate(limit);
        Ok(hits)
    }

    async fn lease_acquire(&self, name: &str, owner: &str, ttl_ms: u64) -> CacheResult<Option<Lease>> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(held) = state.leases.get_mut(name).filter(|held| held.is_live(now)) {
            if held.owner != owner {
                return Ok(None);
            }
            // Same owner: extend, keep the token (it has not changed hands).
            held.expires_at = lease_deadline(now, ttl_ms);
            return Ok(Some(Lease { name: name.to_owned(), owner: owner.to_owned(), token: held.token }));
        }
        state.sweep(now);
        let fence = state.fences.entry(name.to_owned()).or_insert((0, now));
        *fence = (fence.0 + 1, now);
        let token = fence.0;
        state
            .leases
            .insert(name.to_owned(), Held { owner: owner.to_owned(), token, expires_at: lease_deadline(now, ttl_ms) });
        Ok(Some(Lease { name: name.to_owned(), owner: owner.to_owned(), token }))
    }

    async fn lease_renew(&self, lease: &Lease, ttl_ms: u64) -> CacheResult<bool> {
        let now = Instant::now();
        let mut state = self.state();
        match state.leases.get_mut(&lease.name) {
            Some(held) if held.is_live(now) && held.owner == lease.owner && held.token == lease.token => {
                held.expires_at = lease_deadline(now, ttl_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn lease_release(&self, lease: &Lease) -> CacheResult<bool> {
        let now = Instant::now();
        let mut state = self.state();
        let ours = state
            .leases
            .get(&lease.name)
            .is_some_and(|held| held.is_live(now) && held.owner == lease.owner && held.token == lease.token);
        if ours {
            // The fence stays: the next holder must still get a larger token.
            state.leases.remove(&lease.name);
        }
        Ok(ours)
    }

    async fn own(&self, sn: &str, node: &str, floor: u64, ttl_ms: u64) -> CacheResult<u64> {
        let now = Instant::now();
        let name = owner_key(sn);
        let mut state = self.state();
        state.sweep(now);
        let fence = state.fences.entry(name.clone()).or_insert((0, now));
        *fence = ((fence.0 + 1).max(floor.saturating_add(1)), now);
        let epoch = fence.0;
        state
            .leases
            .insert(name, Held { owner: node.to_owned(), token: epoch, expires_at: lease_deadline(now, ttl_ms) });
        Ok(epoch)
    }

    async fn renew_owned(&self, node: &str, owned: &[(String, u64)], ttl_ms: u64) -> CacheResult<Vec<String>> {
        let now = Instant::now();
        let mut state = self.state();
        let mut lost = Vec::new();
        for (sn, epoch) in owned {
            match state.leases.get_mut(&owner_key(sn)).filter(|h| h.is_live(now)) {
                Some(held) if held.owner == node && held.token == *epoch => {
                    held.expires_at = lease_deadline(now, ttl_ms)
                }
                _ => lost.push(sn.clone()),
            }
        }
        Ok(lost)
    }

    async fn owner(&self, sn: &str) -> CacheResult<Option<(String, u64)>> {
        Ok(self.lease_holder(&owner_key(sn)).await?.map(|l| (l.owner, l.token)))
    }

    async fn disown(&self, sn: &str, node: &str, epoch: u64) -> CacheResult<bool> {
        let lease = Lease { name: owner_key(sn), owner: node.to_owned(), token: epoch };
        self.lease_release(&lease).await
    }

    async fn node_report(&self, node: &str, report: &str, ttl_ms: u64) -> CacheResult<()> {
        let expires = lease_deadline(Instant::now(), ttl_ms);
        self.state().nodes.insert(node.to_owned(), (report.to_owned(), expires));
        Ok(())
    }

    async fn node_reports(&self) -> CacheResult<Vec<(String, String)>> {
        let now = Instant::now();
        let mut state = self.state();
        state.nodes.retain(|_, (_, at)| at.is_none_or(|at| now < at));
        let mut alive: Vec<_> = state.nodes.iter().map(|(id, (r, _))| (id.clone(), r.clone())).collect();
        alive.sort();
        Ok(alive)
    }

    async fn lease_holder(&self, name: &str) -> CacheResult<Option<Lease>> {
        let now = Instant::now();
        Ok(self.state().leases.get(name).filter(|held| held.is_live(now)).map(|held| Lease {
            name: name.to_owned(),
            owner: held.owner.clone(),
            token: held.token,
        }))
    }

    async fn order_put(&self, id: i64, value: &str, ttl_ms: u64) -> CacheResult<()> {
        let now = Instant::now();
        let mut state = self.state();
        // Lapsed entries go when another is written, so the map stays as small as Redis's keys.
        state.orders.retain(|_, (_, until)| until.is_none_or(|t| now < t));
        state.orders.insert(id, (value.to_owned(), lease_deadline(now, ttl_ms)));
        Ok(())
    }

    async fn order_get(&self, id: i64) -> CacheResult<Option<String>> {
        let now = Instant::now();
        Ok(self.state().orders.get(&id).filter(|(_, until)| until.is_none_or(|t| now < t)).map(|(v, _)| v.clone()))
    }

    async fn order_forget(&self, id: i64) -> CacheResult<()> {
        self.state().orders.remove(&id);
        Ok(())
    }
}

/// Redis's GEOADD/GEOSEARCH refuse coordinates outside the Web-Mercator square; so do we.
fn check_lng_lat(lng: f64, lat: f64) -> CacheResult<()> {
    let lng_ok = (geo::LNG_MIN..=geo::LNG_MAX).contains(&lng);
    let lat_ok = (geo::LAT_MIN..=geo::LAT_MAX).contains(&lat);
    if lng_ok && lat_ok {
        Ok(())
    } else {
        Err(CacheError::Malformed {
            key: "geo".to_owned(),
            reason: format!("invalid longitude,latitude pair {lng},{lat}"),
        })
    }
}

/// Redis's GEO arithmetic (src/geohash.c, src/geohash_helper.c), reproduced so that the memory
/// adapter reports the same positions and distances as Redis.
mod geo {
    pub const LNG_MIN: f64 = -180.0;
    pub const LNG_MAX: f64 = 180.0;
    pub const LAT_MIN: f64 = -85.05112878;
    pub const LAT_MAX: f64 = 85.05112878;
    /// Redis's EARTH_RADIUS_IN_METERS.
    pub const EARTH_RADIUS_M: f64 = 6372797.560856;
    /// Bits per coordinate in the 52-bit geohash score Redis stores.
    const STEP: u32 = 26;

    /// Encode to the 26-bit cell Redis would store and decode back to the cell's centre, which
    /// is where Redis measures distances from (GEOPOS shows the same point).
    pub fn quantise(lng: f64, lat: f64) -> (f64, f64) {
        (centre(lng, LNG_MIN, LNG_MAX).clamp(LNG_MIN, LNG_MAX), centre(lat, LAT_MIN, LAT_MAX).clamp(LAT_MIN, LAT_MAX))
    }

    fn centre(value: f64, min: f64, max: f64) -> f64 {
        let cells = (1u64 << STEP) as f64;
        let scale = max - min;
        // Truncating cast, as C's double → uint32_t conversion in geohashEncode.
        let cell = ((value - min) / scale * cells) as u32;
        let lo = min + (f64::from(cell) / cells) * scale;
        let hi = min + ((f64::from(cell) + 1.0) / cells) * scale;
        (lo + hi) / 2.0
    }

    /// geohashGetDistance: haversine on a sphere of radius EARTH_RADIUS_M.
    pub fn distance_m(lng1: f64, lat1: f64, lng2: f64, lat2: f64) -> f64 {
        let v = ((lng2.to_radians() - lng1.to_radians()) / 2.0).sin();
        if v == 0.0 {
            // Redis's shortcut for equal longitudes; kept for bit-for-bit agreement.
            return EARTH_RADIUS_M * (lat2.to_radians() - lat1.to_radians()).abs();
        }
        let (lat1r, lat2r) = (lat1.to_radians(), lat2.to_radians());
        let u = ((lat2r - lat1r) / 2.0).sin();
        let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }

    /// Redis replies WITHDIST as a decimal with 4 places; round the same way (exact-decimal
    /// formatting, like printf's "%.4f") so both adapters return equal numbers.
    pub fn as_replied(distance_m: f64) -> f64 {
        format!("{distance_m:.4}").parse().unwrap_or(distance_m)
    }
}
