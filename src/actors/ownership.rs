//! The cabinets this node owns (DESIGN.md "Cluster"). A cabinet's actor takes the ownership
//! lease when its cabinet logs in here ([`Ownership::take`]): a new, larger epoch, which is the
//! fencing token its writes carry (`db::Db::fenced`). One loop renews every lease the node holds
//! in batches; a lease that another node took, or that lapsed, is lost, and its actor is told
//! ([`LeaseLost`]) so it stops and lets go of the cabinet's connection. When the cache cannot be
//! reached for longer than a lease lives, every lease is presumed lost the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::cache::{Cache, CacheResult};
use crate::config::ClusterConfig;
use crate::metrics::Metrics;

/// The cabinet's ownership under `epoch` is gone: another node owns it, or nobody does.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct LeaseLost {
    pub epoch: u64,
}

struct Owned {
    epoch: u64,
    actor: Recipient<LeaseLost>,
}

struct Table {
    owned: HashMap<String, Owned>,
    /// When a renewal round last succeeded (or the node started).
    renewed: Instant,
    renewed_ms: i64,
}

struct Inner {
    node: String,
    cache: Arc<dyn Cache>,
    cfg: ClusterConfig,
    metrics: Metrics,
    table: Mutex<Table>,
    started_ms: i64,
    renewing: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The node's table of owned cabinets; cheap to clone.
#[derive(Clone)]
pub struct Ownership(Arc<Inner>);

/// What a node reports of itself, each renewal round (`GET /ops/nodes`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeReport {
    pub node: String,
    /// Cabinets whose ownership lease the node holds.
    pub cabinets: usize,
    /// Cabinets logged in on the node and not judged offline.
    pub connections: i64,
    /// Unix ms of the node's last renewal round (this report's).
    pub renewed_ms: i64,
    /// Unix ms the node started.
    pub started_ms: i64,
}

/// What `/readyz` and `GET /ops/nodes` say of the node's leases.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseHealth {
    pub owned: usize,
    /// Unix ms of the last renewal round that reached the cache.
    pub renewed_ms: i64,
    /// The leases are known to be held: the last good round is younger than a lease lives.
    pub healthy: bool,
}

impl Ownership {
    pub fn new(node: String, cache: Arc<dyn Cache>, cfg: ClusterConfig, metrics: Metrics) -> Ownership {
        let table = Table { owned: HashMap::new(), renewed: Instant::now(), renewed_ms: super::now_ms() };
        Ownership(Arc::new(Inner {
            node,
            cache,
            cfg,
            metrics,
            table: Mutex::new(table),
            started_ms: super::now_ms(),
            renewing: Mutex::new(None),
        }))
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.0.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// Take the cabinet's ownership (whoever held it) for `actor`; the new epoch. `floor` is the
    /// highest epoch the database has seen for it, so a cache that lost its epochs still hands
    /// out a larger one.
    pub async fn take(&self, sn: &str, floor: u64, actor: Recipient<LeaseLost>) -> CacheResult<u64> {
        let epoch = self.0.cache.own(sn, &self.0.node, floor, self.0.cfg.lease_ttl_ms).await?;
        let mut table = self.table();
        table.owned.insert(sn.to_string(), Owned { epoch, actor });
        self.0.metrics.cabinets_owned.set(table.owned.len() as i64);
        Ok(epoch)
    }

    /// A new actor of the cabinet (the one before crashed) takes over the lease held under
    /// `epoch`, if it still is.
    pub fn adopt(&self, sn: &str, epoch: u64, actor: Recipient<LeaseLost>) {
        if let Some(owned) = self.table().owned.get_mut(sn).filter(|o| o.epoch == epoch) {
            owned.actor = actor;
        }
    }

    /// The epoch this node owns the cabinet under, if it does.
    pub fn epoch(&self, sn: &str) -> Option<u64> {
        self.table().owned.get(sn).map(|o| o.epoch)
    }

    /// Give the ownership up (the cabinet went offline, or its actor stopped), if still held
    /// under `epoch`.
    pub async fn give_up(&self, sn: &str, epoch: u64) {
        if !self.forget(sn, epoch) {
            return;
        }
        if let Err(e) = self.0.cache.disown(sn, &self.0.node, epoch).await {
            // It lapses on its own within the TTL.
            tracing::warn!(%sn, epoch, error = %e, "ownership not given up in the cache");
        }
    }

    /// Drop the cabinet from the table if held under `epoch`; whether it was.
    fn forget(&self, sn: &str, epoch: u64) -> bool {
        let mut table = self.table();
        if table.owned.get(sn).is_none_or(|o| o.epoch != epoch) {
            return false;
        }
        table.owned.remove(sn);
        self.0.metrics.cabinets_owned.set(table.owned.len() as i64);
        true
    }

    pub fn health(&self) -> LeaseHealth {
        let table = self.table();
        let ttl = Duration::from_millis(self.0.cfg.lease_ttl_ms);
        LeaseHealth { owned: table.owned.len(), renewed_ms: table.renewed_ms, healthy: table.renewed.elapsed() < ttl }
    }

    /// Renew every lease now; those lost are dropped and their actors told.
    pub async fn renew(&self) {
        let owned: Vec<(String, u64)> = self.table().owned.iter().map(|(sn, o)| (sn.clone(), o.epoch)).collect();
        let lost = match self.0.cache.renew_owned(&self.0.node, &owned, self.0.cfg.lease_ttl_ms).await {
            Ok(lost) => {
                {
                    let mut table = self.table();
                    table.renewed = Instant::now();
                    table.renewed_ms = super::now_ms();
                }
                self.report(owned.len()).await;
                lost.into_iter().filter_map(|sn| owned.iter().find(|(s, _)| *s == sn).cloned()).collect()
            }
            Err(e) => {
                self.0.metrics.lease_renew_failures.inc();
                let stale = self.table().renewed.elapsed() >= Duration::from_millis(self.0.cfg.lease_ttl_ms);
                tracing::warn!(error = %e, presumed_lost = stale, "ownership leases not renewed");
                if !stale {
                    return;
                }
                owned
            }
        };
        for (sn, epoch) in lost {
            let actor = self.table().owned.get(&sn).filter(|o| o.epoch == epoch).map(|o| o.actor.clone());
            if self.forget(&sn, epoch) {
                self.0.metrics.leases_lost.inc();
                tracing::warn!(%sn, epoch, "ownership lost: another node owns the cabinet, or the lease lapsed");
                if let Some(actor) = actor {
                    actor.do_send(LeaseLost { epoch });
                }
            }
        }
    }

    /// Tell the other nodes (and `GET /ops/nodes`) how this one is; it lapses after three rounds
    /// missed.
    async fn report(&self, owned: usize) {
        let report = NodeReport {
            node: self.0.node.clone(),
            cabinets: owned,
            connections: self.0.metrics.cabinets_connected.get(),
            renewed_ms: super::now_ms(),
            started_ms: self.0.started_ms,
        };
        let Ok(json) = serde_json::to_string(&report) else { return };
        let ttl = self.0.cfg.renew_every_ms.saturating_mul(3);
        if let Err(e) = self.0.cache.node_report(&self.0.node, &json, ttl).await {
            tracing::warn!(error = %e, "node report not written");
        }
    }

    /// Renew in the background until [`stop`](Self::stop).
    pub fn start(&self) {
        let me = self.clone();
        let every = Duration::from_millis(self.0.cfg.renew_every_ms);
        let task = actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.renew().await;
            }
        });
        if let Some(old) = self.0.renewing.lock().unwrap_or_else(PoisonError::into_inner).replace(task) {
            old.abort();
        }
    }

    /// Stop renewing (the node is stopping): its leases lapse unless given up first.
    pub fn stop(&self) {
        if let Some(task) = self.0.renewing.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}
