//! Restock tasks, as stored: what to bring to a cabinet, the restock session working on it, and
//! what was put in. Opened, taken up and closed by `flows::restock`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::RestockTask;
use super::schema::restock_tasks;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::restock::TaskStatus;

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<RestockTask>> {
    Ok(restock_tasks::table.find(id).select(RestockTask::as_select()).first(conn).optional()?)
}

/// The cabinet's task not yet done (open or in progress).
pub fn current(conn: &mut AnyConnection, sn: &str) -> DbResult<Option<RestockTask>> {
    Ok(restock_tasks::table
        .filter(restock_tasks::sn.eq(sn))
        .filter(restock_tasks::status.eq_any(TaskStatus::CURRENT))
        .select(RestockTask::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(
    conn: &mut AnyConnection,
    status: Option<TaskStatus>,
    sn: Option<&str>,
    limit: i64,
) -> DbResult<Vec<RestockTask>> {
    let mut q = restock_tasks::table.select(RestockTask::as_select()).into_boxed();
    if let Some(s) = status {
        q = q.filter(restock_tasks::status.eq(s));
    }
    if let Some(sn) = sn {
        q = q.filter(restock_tasks::sn.eq(sn.to_string()));
    }
    Ok(q.order(restock_tasks::id.desc()).limit(limit).load(conn)?)
}

/// A new open task asking for `wanted` (JSON); the task as stored.
pub fn create(conn: &mut AnyConnection, sn: &str, wanted: &str, now: NaiveDateTime) -> DbResult<RestockTask> {
    diesel::insert_into(restock_tasks::table)
        .values((
            restock_tasks::sn.eq(sn),
            restock_tasks::status.eq(TaskStatus::Open),
            restock_tasks::wanted.eq(wanted),
            restock_tasks::created_at.eq(now),
            restock_tasks::updated_at.eq(now),
        ))
        .execute(conn)?;
    current(conn, sn)?.ok_or_else(|| DbError::Corrupt(format!("restock task of {sn} vanished")))
}

/// What the task asks for now (JSON).
pub fn set_wanted(conn: &mut AnyConnection, id: i64, wanted: &str, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(restock_tasks::table.find(id))
        .set((restock_tasks::wanted.eq(wanted), restock_tasks::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// The task is in progress with restock session `session_id`.
pub fn take(conn: &mut AnyConnection, id: i64, session_id: i64, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(restock_tasks::table.find(id))
        .set((
            restock_tasks::status.eq(TaskStatus::InProgress),
            restock_tasks::session_id.eq(Some(session_id)),
            restock_tasks::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The task a session worked on, if any.
pub fn of_session(conn: &mut AnyConnection, session_id: i64) -> DbResult<Option<RestockTask>> {
    Ok(restock_tasks::table
        .filter(restock_tasks::session_id.eq(Some(session_id)))
        .select(RestockTask::as_select())
        .first(conn)
        .optional()?)
}

/// A task still in progress with `session_id` is open again (the session ended without counting).
pub fn give_back(conn: &mut AnyConnection, session_id: i64, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(
        restock_tasks::table
            .filter(restock_tasks::session_id.eq(Some(session_id)))
            .filter(restock_tasks::status.eq(TaskStatus::InProgress)),
    )
    .set((
        restock_tasks::status.eq(TaskStatus::Open),
        restock_tasks::session_id.eq(None::<i64>),
        restock_tasks::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(())
}

/// The task is done: what was added (JSON), by whom.
pub fn close(conn: &mut AnyConnection, id: i64, added: &str, by: &str, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(restock_tasks::table.find(id))
        .set((
            restock_tasks::status.eq(TaskStatus::Done),
            restock_tasks::added.eq(Some(added)),
            restock_tasks::closed_at.eq(Some(now)),
            restock_tasks::closed_by.eq(Some(by)),
            restock_tasks::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}
