//! The simulator's memory on disk. The real platforms never forget an order, a hold, a refund or
//! a bill because they restarted, so neither does the simulator: with `pay_sim.state_file` set,
//! every record a request changed is written to a SQLite file of its own (one row per record,
//! as JSON) before the answer goes out, and a starting simulator reads them back.
//!
//! Records live in `Tracked` maps, which note the keys a request touched; the platform's lock
//! guard writes those when it is released.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl, SqliteConnection};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("simulator state file {path}: {source}")]
    Open { path: String, source: diesel::ConnectionError },
    #[error("simulator state: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("simulator state record {kind}/{key}: {source}")]
    Json { kind: String, key: String, source: serde_json::Error },
}

/// A map of records that remembers which keys were changed since the last save.
pub struct Tracked<V> {
    map: HashMap<String, V>,
    dirty: HashSet<String>,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked { map: HashMap::new(), dirty: HashSet::new() }
    }
}

impl<V> Tracked<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Taken to change: saved with the request.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let v = self.map.get_mut(key)?;
        self.dirty.insert(key.to_string());
        Some(v)
    }

    pub fn insert(&mut self, key: String, value: V) {
        self.dirty.insert(key.clone());
        self.map.insert(key, value);
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.dirty.insert(key.to_string());
        self.map.remove(key)
    }

    /// The first record `pred` picks, taken to change.
    pub fn find_mut(&mut self, mut pred: impl FnMut(&V) -> bool) -> Option<&mut V> {
        let key = self.map.iter().find(|(_, v)| pred(v)).map(|(k, _)| k.clone())?;
        self.get_mut(&key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.map.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// Every record, each taken to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut V)> {
        self.dirty.extend(self.map.keys().cloned());
        self.map.iter_mut()
    }

    /// Keep the records `keep` says to; the others are deleted.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &V) -> bool) {
        let dirty = &mut self.dirty;
        self.map.retain(|k, v| {
            let kept = keep(k, v);
            if !kept {
                dirty.insert(k.clone());
            }
            kept
        });
    }
}

impl<V: Serialize> Tracked<V> {
    /// Add the changed records to `out` as (key, JSON or `None` for deleted), and forget that
    /// they changed. Without a store (`out` is `None`) only the forgetting.
    pub fn take_changes(&mut self, kind: &'static str, out: Option<&mut Vec<Change>>) {
        let Some(out) = out else {
            self.dirty.clear();
            return;
        };
        for key in self.dirty.drain() {
            match self.map.get(&key).map(serde_json::to_string) {
                Some(Ok(json)) => out.push(Change { kind, key, json: Some(json) }),
                Some(Err(e)) => tracing::error!(kind, %key, error = %e, "simulator record not serialisable"),
                None => out.push(Change { kind, key, json: None }),
            }
        }
    }
}

/// A platform's records: what changed since the last save.
pub trait Records {
    fn take_changes(&mut self, out: Option<&mut Vec<Change>>);
}

/// A platform's state, locked for one request; releasing it saves what the request changed.
pub struct Locked<'a, T: Records> {
    guard: MutexGuard<'a, T>,
    store: Option<&'a Store>,
    platform: &'static str,
}

impl<'a, T: Records> Locked<'a, T> {
    pub fn new(mutex: &'a Mutex<T>, store: Option<&'a Store>, platform: &'static str) -> Self {
        Locked { guard: mutex.lock().unwrap_or_else(|p| p.into_inner()), store, platform }
    }
}

impl<T: Records> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: Records> std::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: Records> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        let Some(store) = self.store else {
            self.guard.take_changes(None);
            return;
        };
        let mut changes = Vec::new();
        self.guard.take_changes(Some(&mut changes));
        if let Err(e) = store.save(self.platform, &changes) {
            tracing::error!(platform = self.platform, error = %e, "simulator state not saved");
        }
    }
}

impl<V: DeserializeOwned> Tracked<V> {
    /// Records as the store has them.
    pub fn load(store: Option<&Store>, platform: &str, kind: &str) -> Result<Tracked<V>, StoreError> {
        let mut map = HashMap::new();
        if let Some(store) = store {
            for (key, json) in store.rows(platform, kind)? {
                let v = serde_json::from_str(&json).map_err(|source| StoreError::Json {
                    kind: kind.to_string(),
                    key: key.clone(),
                    source,
                })?;
                map.insert(key, v);
            }
        }
        Ok(Tracked { map, dirty: HashSet::new() })
    }
}

/// A platform's id sequence, saved whenever it moved.
#[derive(Default)]
pub struct Counter {
    value: u64,
    saved: u64,
}

impl Counter {
    pub fn next_id(&mut self) -> u64 {
        self.value += 1;
        self.value
    }

    pub fn take_changes(&mut self, out: Option<&mut Vec<Change>>) {
        if let Some(out) = out.filter(|_| self.value != self.saved) {
            out.push(Change { kind: "seq", key: "seq".into(), json: Some(self.value.to_string()) });
        }
        self.saved = self.value;
    }

    pub fn load(store: Option<&Store>, platform: &str) -> Result<Counter, StoreError> {
        let Some(store) = store else { return Ok(Counter::default()) };
        let value = store.rows(platform, "seq")?.first().and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        Ok(Counter { value, saved: value })
    }
}

/// One record to write (`json`) or delete (`None`).
pub struct Change {
    pub kind: &'static str,
    pub key: String,
    pub json: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    json: String,
}

/// The SQLite file.
pub struct Store {
    conn: Mutex<SqliteConnection>,
}

impl Store {
    pub fn open(path: &str) -> Result<Store, StoreError> {
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn =
            SqliteConnection::establish(path).map_err(|source| StoreError::Open { path: path.to_string(), source })?;
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS records (
                 platform TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, json TEXT NOT NULL,
                 PRIMARY KEY (platform, kind, key));",
        )?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn rows(&self, platform: &str, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<Row> = diesel::sql_query("SELECT key, json FROM records WHERE platform = ? AND kind = ?")
            .bind::<Text, _>(platform)
            .bind::<Text, _>(kind)
            .load(&mut *conn)?;
        Ok(rows.into_iter().map(|r| (r.key, r.json)).collect())
    }

    /// Write a request's changes in one transaction.
    pub fn save(&self, platform: &str, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.transaction(|c| {
            for ch in changes {
                match &ch.json {
                    Some(json) => diesel::sql_query(
                        "INSERT INTO records (platform, kind, key, json) VALUES (?, ?, ?, ?)
                         ON CONFLICT (platform, kind, key) DO UPDATE SET json = excluded.json",
                    )
                    .bind::<Text, _>(platform)
                    .bind::<Text, _>(ch.kind)
                    .bind::<Text, _>(&ch.key)
                    .bind::<Text, _>(json)
                    .execute(c)?,
                    None => diesel::sql_query("DELETE FROM records WHERE platform = ? AND kind = ? AND key = ?")
                        .bind::<Text, _>(platform)
                        .bind::<Text, _>(ch.kind)
                        .bind::<Text, _>(&ch.key)
                        .execute(c)?,
                };
            }
            Ok::<_, diesel::result::Error>(())
        })?;
        Ok(())
    }
}
