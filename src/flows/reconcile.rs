//! One run of a nightly job for one business day, recorded in `reconcile_runs`: started, then
//! done (with its figures), waiting (the platform's bill is not out yet) or failed. The
//! scheduler and `heft reconcile` both run jobs through here, so a day run by hand counts as run.

use chrono::NaiveDate;
use serde::Serialize;

use super::Ctx;
use super::bills::{self, BillReport, BillsError};
use crate::config::ReconcileConfig;
use crate::db::{self, DbError, alerts, reconcile as runs};
use crate::domain::alert::{self, AlertCode, AlertSpec};
use crate::domain::reconcile::{Job, RunStatus};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("run summary: {0}")]
    Json(#[from] serde_json::Error),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RunOutcome {
    pub job: Job,
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    pub status: RunStatus,
    /// The job's figures when it finished.
    pub report: Option<BillReport>,
    /// Why it is waiting or failed.
    pub error: Option<String>,
}

/// Run `job` for `day` on `node`, recording the run. A job's own failure is recorded and
/// returned as the outcome; only a failure to record it is an error.
pub async fn run(ctx: &Ctx, job: Job, day: NaiveDate, node: &str) -> Result<RunOutcome, ReconcileError> {
    let (day_s, node_s) = (day.to_string(), node.to_string());
    ctx.db.write(move |c| runs::start(c, job, &day_s, &node_s, db::now())).await?;
    let result = bills::reconcile_day(ctx, job.channel(), day).await;
    let (status, report, error) = match result {
        Ok(r) => (RunStatus::Done, Some(r), None),
        Err(e @ BillsError::NotYet { .. }) => (RunStatus::Waiting, None, Some(e.to_string())),
        Err(e) => (RunStatus::Failed, None, Some(e.to_string())),
    };
    let outcome = RunOutcome { job, day, status, report, error };
    let summary = outcome.report.as_ref().map(serde_json::to_string).transpose()?;
    let alerts = alerts_for(&outcome, &ctx.config.reconcile);
    let (day_s, err) = (day.to_string(), outcome.error.clone());
    ctx.db
        .write(move |c| {
            runs::finish(c, job, &day_s, status, summary.as_deref(), err.as_deref(), db::now())?;
            for a in &alerts {
                match a {
                    AlertChange::Raise(spec) => alerts::raise(c, spec, 1, db::now()).map(|_| ())?,
                    AlertChange::Resolve(code, about) => {
                        alerts::resolve_about(c, *code, None, Some(about), db::now()).map(|_| ())?
                    }
                }
            }
            Ok::<_, DbError>(())
        })
        .await?;
    Ok(outcome)
}

enum AlertChange {
    Raise(AlertSpec),
    Resolve(AlertCode, String),
}

/// What a run tells people: new bill cases, a bill long overdue, a failure; and which of its
/// earlier alerts a finished run ends.
fn alerts_for(o: &RunOutcome, config: &ReconcileConfig) -> Vec<AlertChange> {
    let (job, day, channel) = (o.job.as_str(), o.day.to_string(), o.job.channel().as_str());
    let error = o.error.as_deref().unwrap_or("");
    match (o.status, &o.report) {
        (RunStatus::Done, Some(r)) => {
            let mut out = vec![
                AlertChange::Resolve(AlertCode::BillMissing, format!("{channel} {day}")),
                AlertChange::Resolve(AlertCode::ReconcileFailed, format!("{job} {day}")),
            ];
            if r.opened > 0 {
                out.push(AlertChange::Raise(alert::bill_cases(channel, &day, r.opened)));
            }
            out
        }
        (RunStatus::Waiting, _) => {
            let due = config.timetable().starts(o.job, o.day);
            let late_h = due.map_or(0, |at| (chrono::Utc::now() - at).num_hours());
            match late_h >= config.bill_alert_hours {
                true => vec![AlertChange::Raise(alert::bill_missing(channel, &day, late_h, error))],
                false => Vec::new(),
            }
        }
        (RunStatus::Failed, _) => vec![AlertChange::Raise(alert::reconcile_failed(job, &day, error))],
        _ => Vec::new(),
    }
}
