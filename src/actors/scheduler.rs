//! The nightly jobs in `serve`. Every `reconcile.check_s` the node holding the `reconcile`
//! lease reads the runs on record, asks `domain::reconcile::due` which are due (a night missed
//! while Heft was down is due at the next start), and runs them one by one through
//! `flows::reconcile`. Each run is idempotent, so a run cut off with its node is simply run again.

use std::time::Duration;

use actix::prelude::*;

use super::Shared;
use crate::cache::Lease;
use crate::db::reconcile as runs;
use crate::domain::calendar::business_day;
use crate::domain::reconcile::{self, RunState, RunStatus};
use crate::flows::reconcile::{JobReport, RunOutcome};

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Run(#[from] crate::flows::reconcile::ReconcileError),
    #[error("run on record: {0}")]
    Corrupt(String),
}

pub struct Scheduler {
    svc: Shared,
    lease: Option<Lease>,
    running: bool,
}

impl Scheduler {
    pub fn new(svc: Shared) -> Scheduler {
        Scheduler { svc, lease: None, running: false }
    }
}

/// What one look at the timetable did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Another node holds the lease.
    NotLeader,
    /// A round was still running.
    Busy,
    /// The runs that were due, as they ended.
    Ran(Vec<RunOutcome>),
}

async fn round(svc: Shared, lease: Option<Lease>) -> (Option<Lease>, Result<Round, SchedulerError>) {
    let cfg = &svc.config.reconcile;
    // The lease outlives a long run: a bill of 300,000 rows takes minutes.
    let ttl_ms = u64::try_from(cfg.stale_minutes).unwrap_or(120) * 60_000;
    let lease = match lease {
        Some(l) => match svc.cache.lease_renew(&l, ttl_ms).await {
            Ok(true) => Some(l),
            Ok(false) => None,
            Err(e) => return (Some(l), Err(e.into())),
        },
        None => match svc.cache.lease_acquire("reconcile", svc.node_id(), ttl_ms).await {
            Ok(l) => l,
            Err(e) => return (None, Err(e.into())),
        },
    };
    if lease.is_none() {
        return (None, Ok(Round::NotLeader));
    }
    (lease, run_due(&svc).await)
}

async fn run_due(svc: &Shared) -> Result<Round, SchedulerError> {
    let table = svc.config.reconcile.timetable();
    let now = chrono::Utc::now();
    let since = (business_day(now) - chrono::Duration::days(table.catch_up_days)).to_string();
    let on_record = svc.db.run(move |c| runs::since(c, &since)).await?;
    let states = on_record.iter().map(run_state).collect::<Result<Vec<_>, _>>()?;
    let ctx = svc.flows();
    let mut ran = Vec::new();
    for (job, day) in reconcile::due(now, &table, &states) {
        let started = std::time::Instant::now();
        tracing::info!(%job, %day, "reconciliation run starting");
        let outcome = crate::flows::reconcile::run(&ctx, svc.effects.as_ref(), job, day, svc.node_id()).await?;
        observe(svc, &outcome, started.elapsed());
        ran.push(outcome);
    }
    Ok(Round::Ran(ran))
}

fn run_state(r: &runs::Run) -> Result<RunState, SchedulerError> {
    let day = chrono::NaiveDate::parse_from_str(&r.day, "%Y-%m-%d")
        .map_err(|e| SchedulerError::Corrupt(format!("{} day {:?}: {e}", r.job, r.day)))?;
    Ok(RunState { job: r.job, day, status: r.status, started_at: r.started_at })
}

/// Log and count a run.
fn observe(svc: &Shared, o: &RunOutcome, took: Duration) {
    let m = &svc.metrics;
    m.reconcile_runs.with_label_values(&[o.job.as_str(), o.status.as_str()]).inc();
    m.reconcile_seconds.with_label_values(&[o.job.as_str()]).observe(took.as_secs_f64());
    if let Some(JobReport::Bills(r)) = &o.report {
        m.reconcile_rows.with_label_values(&[o.job.as_str()]).inc_by(r.rows as u64);
        m.reconcile_cases_opened.with_label_values(&[o.job.as_str()]).inc_by(r.opened as u64);
    }
    match o.status {
        RunStatus::Done => {
            tracing::info!(job = %o.job, day = %o.day, report = ?o.report, ?took, "reconciliation run done")
        }
        RunStatus::Waiting => tracing::info!(job = %o.job, day = %o.day, error = ?o.error, "bill not out yet"),
        _ => tracing::warn!(job = %o.job, day = %o.day, error = ?o.error, "reconciliation run did not finish"),
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = self.svc.config.reconcile.check_s;
        if self.svc.config.reconcile.enabled && every > 0 {
            ctx.address().do_send(RunDue);
            ctx.run_interval(Duration::from_secs(every), |_, ctx| ctx.address().do_send(RunDue));
        }
    }
}

/// Look at the timetable now and run what is due (the timer sends this too).
#[derive(Message)]
#[rtype(result = "Result<Round, SchedulerError>")]
pub struct RunDue;

impl Handler<RunDue> for Scheduler {
    type Result = ResponseActFuture<Self, Result<Round, SchedulerError>>;

    fn handle(&mut self, _: RunDue, _ctx: &mut Context<Self>) -> Self::Result {
        if self.running {
            return Box::pin(fut::ready(Ok(Round::Busy)));
        }
        self.running = true;
        Box::pin(round(self.svc.clone(), self.lease.clone()).into_actor(self).map(|(lease, result), act, _| {
            act.running = false;
            act.lease = lease;
            if let Err(e) = &result {
                tracing::error!(error = %e, "reconciliation round failed");
            }
            result
        }))
    }
}
