//! Runs of the nightly jobs (`reconcile_runs`): one row per job and business day.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::reconcile_runs;
use super::{AnyConnection, DbResult};
use crate::domain::reconcile::{Job, RunStatus};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = reconcile_runs)]
pub struct Run {
    pub job: Job,
    /// `YYYY-MM-DD`, Asia/Shanghai.
    pub day: String,
    pub status: RunStatus,
    pub attempts: i32,
    /// The node that ran it last.
    pub node: String,
    /// The job's figures, JSON (served as `summary` beside the run).
    #[serde(skip)]
    pub summary: Option<String>,
    pub last_error: Option<String>,
    #[schema(value_type = String)]
    pub started_at: NaiveDateTime,
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<NaiveDateTime>,
}

/// Record that `node` started `job` for `day`, counting an attempt.
pub fn start(conn: &mut AnyConnection, job: Job, day: &str, node: &str, now: NaiveDateTime) -> DbResult<()> {
    let row = Run {
        job,
        day: day.to_string(),
        status: RunStatus::Running,
        attempts: 1,
        node: node.to_string(),
        summary: None,
        last_error: None,
        started_at: now,
        finished_at: None,
    };
    crate::on_backend!(conn, |c| {
        diesel::insert_into(reconcile_runs::table)
            .values(&row)
            .on_conflict((reconcile_runs::job, reconcile_runs::day))
            .do_update()
            .set((
                reconcile_runs::status.eq(RunStatus::Running),
                reconcile_runs::attempts.eq(reconcile_runs::attempts + 1),
                reconcile_runs::node.eq(node),
                reconcile_runs::last_error.eq(None::<String>),
                reconcile_runs::started_at.eq(now),
                reconcile_runs::finished_at.eq(None::<NaiveDateTime>),
            ))
            .execute(c)
    })?;
    Ok(())
}

/// Record how a run ended.
pub fn finish(
    conn: &mut AnyConnection,
    job: Job,
    day: &str,
    status: RunStatus,
    summary: Option<&str>,
    error: Option<&str>,
    now: NaiveDateTime,
) -> DbResult<()> {
    diesel::update(reconcile_runs::table.find((job, day)))
        .set((
            reconcile_runs::status.eq(status),
            reconcile_runs::summary.eq(summary),
            reconcile_runs::last_error.eq(error),
            reconcile_runs::finished_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Runs from `since_day` on, oldest first.
pub fn since(conn: &mut AnyConnection, since_day: &str) -> DbResult<Vec<Run>> {
    Ok(reconcile_runs::table
        .filter(reconcile_runs::day.ge(since_day))
        .order((reconcile_runs::day.asc(), reconcile_runs::job.asc()))
        .select(Run::as_select())
        .load(conn)?)
}

/// One run, by its job's name and day.
pub fn find(conn: &mut AnyConnection, job: &str, day: &str) -> DbResult<Option<Run>> {
    let Some(job) = Job::parse(job) else { return Ok(None) };
    Ok(reconcile_runs::table.find((job, day)).select(Run::as_select()).first(conn).optional()?)
}
