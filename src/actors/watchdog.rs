//! The liveness watchdog. Every `liveness.check_s` it finds the cabinets
//! silent for longer than `offline_after_s`, takes the fleet's heard/tracked ratio over
//! `window_s`, and applies `domain::liveness::plan_round`: offline when the fleet is healthy,
//! suspect when it is not (and an ops alert says the ingest looks unhealthy).
//!
//! In a cluster one node runs the rounds: whoever holds the `watchdog` lease.

use std::time::Duration;

use actix::prelude::*;

use super::registry::{NotifyLiveness, Registry};
use super::{Shared, now_ms};
use crate::cache::Lease;
use crate::db::{alerts, cabinets};
use crate::domain::alert::{self, AlertCode};
use crate::domain::liveness::{self, FleetHealth, FleetSample, IngestAlert, Liveness, Thresholds, Transition};
use crate::flows;

pub struct Watchdog {
    svc: Shared,
    registry: Addr<Registry>,
    previous: FleetHealth,
    lease: Option<Lease>,
    seeded: bool,
    running: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RoundReport {
    /// Another node holds the watchdog lease.
    NotLeader,
    /// A round was already running.
    Busy,
    Done {
        health: FleetHealth,
        heard: u64,
        tracked: u64,
        ratio: f64,
        transitions: Vec<Transition>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

impl Watchdog {
    pub fn new(svc: Shared, registry: Addr<Registry>) -> Self {
        Watchdog { svc, registry, previous: FleetHealth::Healthy, lease: None, seeded: false, running: false }
    }

    fn lease_ttl_ms(&self) -> u64 {
        self.svc.config.liveness.check_s.max(10) * 3 * 1000
    }
}

struct RoundInput {
    svc: Shared,
    lease: Option<Lease>,
    lease_ttl_ms: u64,
    seeded: bool,
    previous: FleetHealth,
}

struct RoundOutput {
    lease: Option<Lease>,
    seeded: bool,
    report: RoundReport,
}

async fn round(input: RoundInput) -> Result<RoundOutput, WatchdogError> {
    let RoundInput { svc, lease, lease_ttl_ms, mut seeded, mut previous } = input;
    let cfg = &svc.config.liveness;
    let held_before = lease.as_ref().map(|l| l.token);
    let lease = match lease {
        Some(l) if svc.cache.lease_renew(&l, lease_ttl_ms).await? => Some(l),
        _ => svc.cache.lease_acquire("watchdog", svc.node_id(), lease_ttl_ms).await?,
    };
    let Some(token) = lease.as_ref().map(|l| l.token) else {
        return Ok(RoundOutput { lease, seeded, report: RoundReport::NotLeader });
    };
    if held_before != Some(token) {
        // New leader (or this node lost the lease and got it back): another node may have
        // raised the ingest alert, so start from what the database says.
        seeded = false;
        let filter = alerts::AlertFilter { code: Some(AlertCode::IngestUnhealthy), sn: None, open_only: true };
        let open = svc.db.run(move |c| alerts::list(c, &filter, 1)).await?;
        previous = if open.is_empty() { FleetHealth::Healthy } else { FleetHealth::Unhealthy };
    }
    let now = now_ms();
    seeded = seed(&svc, seeded, now).await?;
    // What else is read from the cache and lives in the database comes back within a round.
    flows::cabinet::index_positions(&svc.db, svc.cache.as_ref()).await;
    let cutoff = now - (cfg.offline_after_s * 1000) as i64;
    let silent_sns: Vec<String> =
        svc.cache.heartbeats_before(cutoff, cfg.batch).await?.into_iter().map(|(sn, _)| sn).collect();
    let heard = svc.cache.heartbeats_since(now - (cfg.window_s * 1000) as i64).await?;
    let tracked = svc.cache.heartbeat_tracked().await?;
    let lookup = silent_sns.clone();
    let silent = svc.db.run(move |c| cabinets::liveness_of(c, &lookup)).await?;
    let thresholds = Thresholds { healthy_ratio: cfg.healthy_ratio, min_fleet: cfg.min_fleet };
    let sample = FleetSample { heard, tracked };
    let plan = liveness::plan_round(&silent, sample, previous, thresholds);
    svc.metrics.heartbeat_ratio.set(plan.ratio);

    let applied = apply(&svc, &plan, &silent, &silent_sns, (heard, tracked)).await?;
    Ok(RoundOutput {
        lease,
        seeded,
        report: RoundReport::Done { health: plan.health, heard, tracked, ratio: plan.ratio, transitions: applied },
    })
}

/// Make the cache track every cabinet the database believes reachable (the embedded profile after
/// a restart, a flushed or restarted Redis), each with a full grace period from now; without this
/// they would never be judged. Done at a leader's first round, and whenever the cache tracks fewer
/// than the database says. Whether the tracking is seeded now.
async fn seed(svc: &Shared, seeded: bool, now: i64) -> Result<bool, WatchdogError> {
    let tracked_now = svc.cache.heartbeat_tracked().await?;
    let reachable = svc.db.run(cabinets::count_not_offline).await?;
    if !seeded || tracked_now < u64::try_from(reachable).unwrap_or(0) {
        let sns = svc.db.run(cabinets::not_offline).await?;
        for sn in sns {
            svc.cache.heartbeat_track_if_absent(&sn, now).await?;
        }
    }
    Ok(true)
}

/// Carry out a round's plan: the liveness changes, the cache, and the ingest alert. The changes
/// that went through.
async fn apply(
    svc: &Shared,
    plan: &liveness::RoundPlan,
    silent: &[(String, Liveness)],
    silent_sns: &[String],
    (heard, tracked): (u64, u64),
) -> Result<Vec<Transition>, WatchdogError> {
    let cfg = &svc.config.liveness;
    // Apply: each change is one conditional update with its event, so a racing heartbeat or a
    // second node cannot record it twice.
    let node = svc.node_id().to_string();
    let offline_after_s = cfg.offline_after_s;
    let applied = flows::cabinet::apply_liveness(&svc.db, plan.transitions.clone(), node, offline_after_s).await?;
    for t in &applied {
        // Keep going on a cache error: the database has the change, and every cabinet in the
        // list must still be told and counted. A stale cache entry is corrected by `recover`.
        if let Err(e) = svc.cache.cabinet_set(&t.sn, &[("liveness", t.to.as_str().to_string())]).await {
            tracing::warn!(sn = %t.sn, error = %e, "liveness change not cached");
        }
        svc.metrics.liveness_transitions.with_label_values(&[t.to.as_str()]).inc();
        svc.live.publish(crate::domain::live::Change::Cabinet { sn: t.sn.clone() });
        tracing::info!(sn = %t.sn, from = t.from.as_str(), to = t.to.as_str(), "liveness changed");
    }
    // Offline cabinets (now or already) are no longer expected to beat; their next heartbeat
    // puts them back in the set.
    for (sn, current) in silent {
        let now_offline =
            *current == Liveness::Offline || applied.iter().any(|t| &t.sn == sn && t.to == Liveness::Offline);
        if now_offline {
            svc.cache.heartbeat_forget(sn).await?;
        }
    }
    // Silent members with no cabinet row (deleted) are dropped too.
    for sn in silent_sns.iter().filter(|sn| !silent.iter().any(|(s, _)| s == *sn)) {
        svc.cache.heartbeat_forget(sn).await?;
    }
    match plan.ingest_alert {
        IngestAlert::Raise => {
            let spec = alert::ingest_unhealthy(heard, tracked, plan.ratio, cfg.healthy_ratio);
            tracing::error!(
                heard,
                tracked,
                ratio = plan.ratio,
                "ingest looks unhealthy; silent cabinets marked suspect"
            );
            flows::alerts::raise(&svc.db, spec, 1).await?;
        }
        IngestAlert::Clear => {
            tracing::info!(heard, tracked, ratio = plan.ratio, "ingest healthy again");
            flows::alerts::resolve(&svc.db, AlertCode::IngestUnhealthy, None).await?;
        }
        IngestAlert::Keep => {}
    }
    Ok(applied)
}

impl Actor for Watchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = self.svc.config.liveness.check_s;
        if every > 0 {
            ctx.run_interval(Duration::from_secs(every), |_, ctx| {
                ctx.address().do_send(CheckNow);
            });
        }
    }
}

/// Run one round now (the timer sends this too).
#[derive(Message)]
#[rtype(result = "Result<RoundReport, WatchdogError>")]
pub struct CheckNow;

impl Handler<CheckNow> for Watchdog {
    type Result = ResponseActFuture<Self, Result<RoundReport, WatchdogError>>;

    fn handle(&mut self, _: CheckNow, _ctx: &mut Context<Self>) -> Self::Result {
        if self.running {
            return Box::pin(fut::ready(Ok(RoundReport::Busy)));
        }
        self.running = true;
        let input = RoundInput {
            svc: self.svc.clone(),
            lease: self.lease.clone(),
            lease_ttl_ms: self.lease_ttl_ms(),
            seeded: self.seeded,
            previous: self.previous,
        };
        Box::pin(round(input).into_actor(self).map(|result, act, _ctx| {
            act.running = false;
            match result {
                Ok(out) => {
                    act.lease = out.lease;
                    act.seeded = out.seeded;
                    if let RoundReport::Done { health, transitions, .. } = &out.report {
                        act.previous = *health;
                        for t in transitions {
                            act.registry.do_send(NotifyLiveness { sn: t.sn.clone(), liveness: t.to });
                        }
                    }
                    Ok(out.report)
                }
                Err(e) => {
                    tracing::error!(error = %e, "liveness round failed");
                    Err(e)
                }
            }
        }))
    }
}
