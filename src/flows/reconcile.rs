//! One run of a nightly job for one business day, recorded in `reconcile_runs`: started, then
//! done (with its figures), waiting (the platform's bill is not out yet) or failed. The
//! scheduler and `heft reconcile` both run jobs through here, so a day run by hand counts as run.

use chrono::NaiveDate;
use serde::Serialize;

use super::bills::{self, BillReport, BillsError};
use super::report::{self, SettlementReport};
use super::stocktake::{self, StockReport};
use super::{Ctx, Effects, Runner};
use crate::config::ReconcileConfig;
use crate::db::{self, DbError, alerts, reconcile as runs};
use crate::domain::alert::{self, AlertCode, AlertSpec};
use crate::domain::live::Change;
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
    pub report: Option<JobReport>,
    /// Why it is waiting or failed.
    pub error: Option<String>,
}

/// A run on record as operators see it: its figures as an object.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub run: runs::Run,
    /// What the job found: `{"stock": {lanes, agree, differ, unreadable, findings, charged_fen,
    /// loss_units…}}`, `{"bills": {rows, matched, waiting, cases, opened…}}` or
    /// `{"settlement": {orders, rows, gross_fen, net_fen…}}`.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
}

impl RunView {
    pub fn of(mut run: runs::Run) -> RunView {
        let summary = run.summary.take().and_then(|s| serde_json::from_str(&s).ok());
        RunView { run, summary }
    }
}

/// What a finished job found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobReport {
    Stock(StockReport),
    Bills(BillReport),
    Settlement(SettlementReport),
}

/// Run `job` for `day` on `node`, recording the run. A job's own failure is recorded and
/// returned as the outcome; only a failure to record it is an error.
pub async fn run(
    ctx: &Ctx,
    runner: &dyn Runner,
    job: Job,
    day: NaiveDate,
    node: &str,
) -> Result<RunOutcome, ReconcileError> {
    let (day_s, node_s) = (day.to_string(), node.to_string());
    ctx.db.write(move |c| runs::start(c, job, &day_s, &node_s, db::now())).await?;
    let told = || Effects { live: vec![Change::Reconcile { job, day: day.to_string() }], ..Effects::default() };
    runner.run(told());
    let (status, report, error) = match job.channel() {
        Some(channel) => match bills::reconcile_day(ctx, channel, day).await {
            Ok(r) => (RunStatus::Done, Some(JobReport::Bills(r)), None),
            Err(e @ BillsError::NotYet { .. }) => (RunStatus::Waiting, None, Some(e.to_string())),
            Err(e) => (RunStatus::Failed, None, Some(e.to_string())),
        },
        None if job == Job::Stock => match stocktake::take_day(ctx, day).await {
            Ok(r) => (RunStatus::Done, Some(JobReport::Stock(r)), None),
            Err(e) => (RunStatus::Failed, None, Some(e.to_string())),
        },
        None => match report::settle_day(ctx, day).await {
            Ok(r) => (RunStatus::Done, Some(JobReport::Settlement(r)), None),
            Err(e) => (RunStatus::Failed, None, Some(e.to_string())),
        },
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
    runner.run(told());
    Ok(outcome)
}

enum AlertChange {
    Raise(AlertSpec),
    Resolve(AlertCode, String),
}

/// What a run tells people: new bill cases, a bill long overdue, a failure; and which of its
/// earlier alerts a finished run ends.
fn alerts_for(o: &RunOutcome, config: &ReconcileConfig) -> Vec<AlertChange> {
    let (job, day) = (o.job.as_str(), o.day.to_string());
    let channel = o.job.channel().map_or("", |c| c.as_str());
    let error = o.error.as_deref().unwrap_or("");
    match (o.status, &o.report) {
        (RunStatus::Done, Some(r)) => {
            let mut out = vec![AlertChange::Resolve(AlertCode::ReconcileFailed, format!("{job} {day}"))];
            if let JobReport::Bills(r) = r {
                out.push(AlertChange::Resolve(AlertCode::BillMissing, format!("{channel} {day}")));
                if r.opened > 0 {
                    out.push(AlertChange::Raise(alert::bill_cases(channel, &day, r.opened)));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: RunStatus, report: Option<JobReport>, day: NaiveDate) -> RunOutcome {
        RunOutcome { job: Job::BillsWechat, day, status, report, error: Some("not out".into()) }
    }

    fn kinds(changes: &[AlertChange]) -> Vec<(bool, AlertCode)> {
        changes
            .iter()
            .map(|c| match c {
                AlertChange::Raise(spec) => (true, spec.code),
                AlertChange::Resolve(code, _) => (false, *code),
            })
            .collect()
    }

    #[test]
    fn a_run_tells_what_it_found_and_ends_what_it_mended() {
        let config = ReconcileConfig::default();
        let today = crate::domain::calendar::business_day(chrono::Utc::now());
        let yesterday = today - chrono::Duration::days(1);
        let long_ago = today - chrono::Duration::days(3);
        assert!(kinds(&alerts_for(&outcome(RunStatus::Waiting, None, today), &config)).is_empty(), "not late yet");
        let late = alerts_for(&outcome(RunStatus::Waiting, None, long_ago), &config);
        assert_eq!(kinds(&late), [(true, AlertCode::BillMissing)]);
        let failed = alerts_for(&outcome(RunStatus::Failed, None, yesterday), &config);
        assert_eq!(kinds(&failed), [(true, AlertCode::ReconcileFailed)]);
        let found = BillReport { opened: 2, ..BillReport::default() };
        let done = alerts_for(&outcome(RunStatus::Done, Some(JobReport::Bills(found)), yesterday), &config);
        assert_eq!(
            kinds(&done),
            [(false, AlertCode::ReconcileFailed), (false, AlertCode::BillMissing), (true, AlertCode::BillCases)]
        );
    }
}
