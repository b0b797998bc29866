//! The live hub: one per node. It hears what changed on the live bus (`mq::live`), reads the
//! rows a change names (never polling for changes), and queues each subscriber's deltas
//! (`domain::live::SendQueue`); `web::live` drains a socket's queue into its websocket.
//!
//! The fleet is kept in memory once anyone follows it (one read of every cabinet), so a fleet
//! snapshot is a serialisation, not a query; a cabinet's row goes out at most once per
//! `live.fleet_interval_ms`, its lane weights once per `live.weights_interval_ms`.

mod state;
pub mod views;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};

use self::state::{Dirty, HubState, Read};
pub use self::state::{LiveError, Out, Popped};
use crate::cache::Cache;
use crate::config::LiveConfig;
use crate::db::Db;
use crate::domain::live::{Change, Topic};
use crate::domain::operator::Role;
use crate::metrics::Metrics;
use crate::mq::live::Heard;

/// Rows as JSON.
fn json<T: serde::Serialize>(rows: &T) -> String {
    serde_json::to_string(rows).unwrap_or_else(|_| "null".into())
}

/// How often the hub reads what changed and lets held rows go.
const TICK: Duration = Duration::from_millis(50);

/// A socket as the hub knows it.
pub struct SocketHandle {
    pub id: u64,
    /// Notified when something waits in the socket's queue (or it must close).
    pub wake: Arc<Notify>,
}

/// The node's hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LiveConfig,
    db: Db,
    cache: Arc<dyn Cache>,
    metrics: Metrics,
    state: Mutex<HubState>,
    /// Read the fleet once, however many subscribe at the same moment.
    loading: tokio::sync::Mutex<()>,
}

impl Hub {
    /// The node's hub, hearing its live bus.
    pub fn start(svc: &crate::actors::Services) -> Hub {
        let (cfg, bus) = (svc.config.live.clone(), &svc.live);
        let (db, cache, metrics) = (svc.db.clone(), svc.cache.clone(), svc.metrics.clone());
        let state = HubState::new(&cfg);
        let hub = Hub {
            inner: Arc::new(Inner {
                cfg,
                db,
                cache,
                metrics,
                state: Mutex::new(state),
                loading: tokio::sync::Mutex::new(()),
            }),
        };
        tokio::spawn(hub.clone().run(bus.subscribe()));
        hub
    }

    pub fn config(&self) -> &LiveConfig {
        &self.inner.cfg
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding it left plain data behind; carry on with it.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new socket for operator `operator` with `role`.
    pub fn open(&self, operator: i64, role: Role) -> Result<SocketHandle, LiveError> {
        let mut st = self.state();
        let max = self.inner.cfg.max_sockets;
        if st.sockets() >= max {
            return Err(LiveError::Full(max));
        }
        let (id, wake) = st.open(operator, role, &self.inner.cfg);
        self.inner.metrics.live_sockets.set(st.sockets() as i64);
        Ok(SocketHandle { id, wake })
    }

    /// Sockets open on this node.
    pub fn sockets(&self) -> usize {
        self.state().sockets()
    }

    /// Messages waiting in the longest socket queue (never more than `live.queue_capacity`).
    pub fn longest_queue(&self) -> usize {
        self.state().longest_queue()
    }

    pub fn close(&self, socket: u64) {
        let mut st = self.state();
        st.close(socket);
        self.inner.metrics.live_sockets.set(st.sockets() as i64);
    }

    /// Follow `topic` as subscription `sub`: its snapshot is owed, then its deltas.
    pub fn subscribe(&self, socket: u64, sub: u64, topic: Topic) -> Result<(), LiveError> {
        self.state().subscribe(socket, sub, topic, self.inner.cfg.max_subscriptions)
    }

    /// Stop subscription `sub`; false when the socket has none by that number.
    pub fn unsubscribe(&self, socket: u64, sub: u64) -> bool {
        self.state().unsubscribe(socket, sub)
    }

    /// What goes out next on this socket.
    pub fn pop(&self, socket: u64) -> Popped {
        self.state().pop(socket)
    }

    /// The topic of a subscription, if the socket still has it.
    pub fn topic(&self, socket: u64, sub: u64) -> Option<Topic> {
        self.state().topic(socket, sub)
    }

    /// A fresh snapshot of `topic`, as JSON.
    pub async fn snapshot(&self, topic: &Topic) -> Result<String, LiveError> {
        let rows = self.inner.cfg.snapshot_rows;
        let db = &self.inner.db;
        Ok(match topic {
            Topic::Fleet => {
                self.load_fleet(false).await?;
                self.state().fleet_json().unwrap_or_else(|| "[]".into())
            }
            Topic::Cabinet(sn) => self.cabinet_snapshot(sn.as_str()).await?,
            Topic::Orders => json(&db.run(move |c| crate::db::live::recent_orders(c, None, rows)).await?),
            Topic::Alerts => {
                // The alerts followed from now on are told apart from those already open.
                self.load_fleet(false).await?;
                json(&db.run(move |c| crate::db::live::open_alerts(c, None, rows)).await?)
            }
            Topic::Reviews => json(&db.run(move |c| crate::db::live::open_cases(c, rows)).await?),
            Topic::Restock => json(&db.run(move |c| crate::db::live::open_tasks(c, None, rows)).await?),
            Topic::Reconcile => {
                let since =
                    (crate::domain::calendar::business_day(chrono::Utc::now()) - chrono::Duration::days(7)).to_string();
                let runs = db.run(move |c| crate::db::reconcile::since(c, &since)).await?;
                json(&runs.into_iter().map(crate::flows::reconcile::RunView::of).collect::<Vec<_>>())
            }
        })
    }

    /// One cabinet: its row, lanes, recent sessions, commands, events, alerts, orders, tasks.
    async fn cabinet_snapshot(&self, sn: &str) -> Result<String, LiveError> {
        self.load_fleet(false).await?;
        let Some(cabinet) = self.state().fleet_row(sn) else { return Err(LiveError::NoCabinet(sn.to_string())) };
        let key = sn.to_string();
        let recent = 20;
        let mut snap = self
            .inner
            .db
            .run(move |c| {
                Ok::<_, crate::db::DbError>(views::CabinetSnapshot {
                    cabinet,
                    lanes: crate::db::layout::lanes_with_products(c, &key)?
                        .into_iter()
                        .map(views::LaneOut::of)
                        .collect(),
                    closed_g: None,
                    sessions: crate::db::sessions::list(c, &key, recent)?,
                    commands: crate::db::commands::list(c, &key, recent)?,
                    events: crate::db::cabinets::events(c, &key, None, recent)?,
                    alerts: crate::db::live::open_alerts(c, Some(std::slice::from_ref(&key)), recent)?,
                    orders: crate::db::live::recent_orders(c, Some(&key), recent)?,
                    restock: crate::db::live::open_tasks(c, Some(&key), recent)?,
                })
            })
            .await?;
        // The closed-door grams the cabinet's actor caches (on whichever node holds it).
        snap.closed_g = self
            .cached(&[sn.to_string()])
            .await
            .get(sn)
            .and_then(|f| f.get("weights"))
            .and_then(|w| serde_json::from_str(w).ok());
        Ok(serde_json::to_string(&snap).unwrap_or_else(|_| "null".into()))
    }

    /// Hear the bus until the node stops.
    async fn run(self, mut rx: broadcast::Receiver<Heard>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                heard = rx.recv() => match heard {
                    Ok(Heard::Change(change)) => self.hear(&change),
                    Ok(Heard::Missed) | Err(broadcast::error::RecvError::Lagged(_)) => self.missed().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
    }

    /// Note a change: what is carried goes out now; what is named is read at the next flush.
    fn hear(&self, change: &Change) {
        self.inner.metrics.live_changes.inc();
        let now = Instant::now();
        self.state().hear(change, now);
    }

    /// Changes were lost: read the fleet again and resync every subscription.
    async fn missed(&self) {
        tracing::info!("live changes may have been missed; every subscription is resynced");
        let loaded = self.state().fleet_loaded();
        if loaded && let Err(e) = self.load_fleet(true).await {
            tracing::warn!(error = %e, "fleet not read again");
        }
        self.state().resync_all();
    }

    /// Read what changed and queue it for its subscribers.
    async fn flush(&self) {
        let dirty = self.state().take_dirty(Instant::now());
        if dirty.is_empty() {
            return;
        }
        if let Err(e) = self.read_and_deliver(dirty).await {
            tracing::warn!(error = %e, "live changes not read; their subscribers are resynced");
            self.state().resync_all();
        }
    }

    async fn read_and_deliver(&self, dirty: Dirty) -> Result<(), LiveError> {
        let Dirty { cabinets, rows, orders, alerts, reviews, tasks, commands, operators, runs } = dirty;
        if !cabinets.is_empty() {
            let sns: Vec<String> = cabinets.into_iter().collect();
            let (rows, open) = self.read_cabinets(sns.clone()).await?;
            self.state().cabinets_read(&sns, rows, open);
        }
        if !rows.is_empty() {
            self.state().rows_changed(&rows);
        }
        let ids = |s: BTreeSet<i64>| s.into_iter().collect::<Vec<i64>>();
        let (orders, alerts, reviews, tasks) = (ids(orders), ids(alerts), ids(reviews), ids(tasks));
        let db = &self.inner.db;
        let read = db
            .run(move |c| {
                // An order that moved may have had a case opened with it.
                let mut cases = crate::db::live::cases(c, &reviews)?;
                cases.extend(
                    crate::db::live::open_cases_of(c, &orders)?.into_iter().filter(|k| !reviews.contains(&k.id)),
                );
                Ok::<_, crate::db::DbError>(Read {
                    orders: crate::db::live::orders(c, &orders)?,
                    alerts: crate::db::live::alerts(c, &alerts)?,
                    cases,
                    tasks: crate::db::live::tasks(c, &tasks)?,
                    commands: commands
                        .iter()
                        .filter_map(|id| crate::db::live::command(c, id).transpose())
                        .collect::<Result<Vec<_>, _>>()?,
                    runs: runs
                        .iter()
                        .filter_map(|(job, day)| crate::db::reconcile::find(c, job, day).transpose())
                        .map(|r| r.map(crate::flows::reconcile::RunView::of))
                        .collect::<Result<Vec<_>, _>>()?,
                })
            })
            .await?;
        self.state().rows_read(read);
        if !operators.is_empty() {
            self.check_operators(operators).await?;
        }
        Ok(())
    }

    /// Cabinets' rows and open alerts, from the database and the cache.
    async fn read_cabinets(
        &self,
        sns: Vec<String>,
    ) -> Result<(std::collections::BTreeMap<String, views::FleetRow>, Vec<crate::db::models::Alert>), LiveError> {
        let keys = sns.clone();
        let (facts, open) = self
            .inner
            .db
            .run(move |c| {
                Ok::<_, crate::db::DbError>((
                    crate::db::live::fleet(c, Some(&keys))?,
                    crate::db::live::open_alerts(c, Some(&keys), i64::MAX)?,
                ))
            })
            .await?;
        let cached = self.cached(&sns).await;
        Ok((views::fleet_rows(facts, &cached), open))
    }

    /// What the cache holds of these cabinets (nothing, if it cannot be read: the rows go out
    /// without a temperature rather than not at all).
    async fn cached(&self, sns: &[String]) -> HashMap<String, HashMap<String, String>> {
        match self.inner.cache.cabinet_get_many(sns).await {
            Ok(facts) => sns.iter().cloned().zip(facts).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "cabinet facts not read from the cache");
                HashMap::new()
            }
        }
    }

    /// Read every cabinet (once, or again with `again`).
    async fn load_fleet(&self, again: bool) -> Result<(), LiveError> {
        let _one = self.inner.loading.lock().await;
        if !again && self.state().fleet_loaded() {
            return Ok(());
        }
        let started = Instant::now();
        let limit = i64::MAX;
        let (facts, open) = self
            .inner
            .db
            .run(move |c| {
                Ok::<_, crate::db::DbError>((
                    crate::db::live::fleet(c, None)?,
                    crate::db::live::open_alerts(c, None, limit)?,
                ))
            })
            .await?;
        let sns: Vec<String> = facts.cabinets.iter().map(|c| c.sn.clone()).collect();
        let cached = self.cached(&sns).await;
        let rows = views::fleet_rows(facts, &cached);
        tracing::info!(cabinets = rows.len(), ms = started.elapsed().as_millis() as u64, "live fleet read");
        self.state().fleet_loaded_with(rows, open);
        Ok(())
    }

    /// Operators whose account changed: a disabled one, or one whose role changed, is closed
    /// (a new socket gets what the new role may see).
    async fn check_operators(&self, ids: BTreeSet<i64>) -> Result<(), LiveError> {
        let ids: Vec<i64> = ids.into_iter().collect();
        let found = self
            .inner
            .db
            .run(move |c| {
                ids.iter()
                    .map(|&id| crate::db::operators::find(c, id).map(|o| (id, o.map(|o| (o.active, o.role)))))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut st = self.state();
        for (id, now) in found {
            st.operator_is(id, now);
        }
        Ok(())
    }
}
