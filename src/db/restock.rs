//! Restock tasks: what to bring to a cabinet (`restock.check`), the restock session that puts it
//! in, and what was actually added, measured by weight, with the stock and ledger it changes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::models::{Lane, RestockTask};
use super::schema::{lanes, restock_tasks};
use super::{AnyConnection, DbError, DbResult, orders, write_tx};
use crate::domain::restock::{LaneStock, TaskStatus, lanes_to_restock};
use crate::mq::topics::{Payload, RestockCheck};

/// One lane of a task: how many units to bring (`wanted`) or were put in (`added`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLane {
    pub lane: String,
    pub product_id: Option<i64>,
    pub qty: i64,
}

/// A lane whose weight change after a restock could not be counted: a person counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uncounted {
    pub lane: String,
    /// The weights it was judged from, for the person who counts it.
    pub before_g: Option<f64>,
    pub after_g: Option<f64>,
    pub delta_g: Option<f64>,
    pub why: String,
}

/// The alert a new task raises; resolved when the task is done.
pub const RESTOCK_NEEDED: &str = "restock_needed";

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

fn json<T: Serialize>(v: &T) -> DbResult<String> {
    serde_json::to_string(v).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// What the cabinet's lanes need now: every lane at or under its threshold, filled to capacity.
fn wanted(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<TaskLane>> {
    let all: Vec<Lane> = lanes::table.filter(lanes::sn.eq(sn)).select(Lane::as_select()).load(conn)?;
    let stock: Vec<LaneStock> = all
        .iter()
        .filter(|l| l.product_id.is_some())
        .map(|l| LaneStock {
            code: l.code.clone(),
            capacity: i64::from(l.capacity),
            threshold: i64::from(l.threshold),
            stock: i64::from(l.stock),
        })
        .collect();
    Ok(lanes_to_restock(&stock)
        .into_iter()
        .map(|(lane, qty)| {
            let product_id = all.iter().find(|l| l.code == lane).and_then(|l| l.product_id);
            TaskLane { lane, product_id, qty }
        })
        .collect())
}

/// `restock.check`: make the cabinet's open task say what its lanes need now (created when there
/// is none; a task already in progress is left to its restocker). `Some((task, created))` when
/// anything needs filling.
pub fn check(conn: &mut AnyConnection, sn: &str, now: NaiveDateTime) -> DbResult<Option<(RestockTask, bool)>> {
    write_tx(conn, |conn| {
        let need = wanted(conn, sn)?;
        let current = current(conn, sn)?;
        if need.is_empty() {
            return Ok(None);
        }
        let created = match &current {
            Some(t) if t.status == TaskStatus::InProgress => return Ok(Some((t.clone(), false))),
            Some(t) => {
                diesel::update(restock_tasks::table.find(t.id))
                    .set((restock_tasks::wanted.eq(json(&need)?), restock_tasks::updated_at.eq(now)))
                    .execute(conn)?;
                false
            }
            None => {
                diesel::insert_into(restock_tasks::table)
                    .values((
                        restock_tasks::sn.eq(sn),
                        restock_tasks::status.eq(TaskStatus::Open),
                        restock_tasks::wanted.eq(json(&need)?),
                        restock_tasks::created_at.eq(now),
                        restock_tasks::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                true
            }
        };
        let task = current_or_err(conn, sn)?;
        Ok(Some((task, created)))
    })
}

fn current_or_err(conn: &mut AnyConnection, sn: &str) -> DbResult<RestockTask> {
    current(conn, sn)?.ok_or_else(|| DbError::Corrupt(format!("restock task of {sn} vanished")))
}

/// A restock session opened: the cabinet's open task is in progress with it (if there is one).
pub fn begin(conn: &mut AnyConnection, sn: &str, session_id: i64, now: NaiveDateTime) -> DbResult<Option<i64>> {
    let Some(task) = current(conn, sn)? else { return Ok(None) };
    diesel::update(restock_tasks::table.find(task.id))
        .set((
            restock_tasks::status.eq(TaskStatus::InProgress),
            restock_tasks::session_id.eq(Some(session_id)),
            restock_tasks::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(Some(task.id))
}

/// A restock session ended without counting anything (cancelled, aborted, abandoned): its task
/// is open again for the next restocker.
pub fn release(conn: &mut AnyConnection, session_id: i64, now: NaiveDateTime) -> DbResult<()> {
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

/// The restock door closed and the lanes settled: in one transaction, stock and ledger rows for
/// what was added, the task closed with it, and the session ended. Lanes that could not be
/// counted keep their book stock and are listed on the task for a person. Lanes still at or
/// under their threshold afterwards (a partial fill) get a fresh `restock.check`. A restock that
/// put nothing in leaves its task open. Done once: a repeat for a session already ended changes
/// nothing.
pub fn finish(
    conn: &mut AnyConnection,
    sn: &str,
    session_id: i64,
    added: &[TaskLane],
    uncounted: &[Uncounted],
    by: &str,
    now: NaiveDateTime,
) -> DbResult<Option<i64>> {
    write_tx(conn, |conn| {
        if !super::sessions::lock_open(conn, session_id)? {
            return Ok(None);
        }
        let task = restock_tasks::table
            .filter(restock_tasks::session_id.eq(Some(session_id)))
            .select(RestockTask::as_select())
            .first(conn)
            .optional()?;
        let task_id = task.as_ref().map(|t| t.id);
        let record = serde_json::json!({ "added": added, "uncounted": uncounted });
        let changes: Vec<orders::StockChange> = added
            .iter()
            .map(|a| orders::StockChange {
                lane: a.lane.clone(),
                product_id: a.product_id,
                delta: a.qty,
                reason: crate::domain::stock::StockReason::Restock,
            })
            .collect();
        orders::change_stock(conn, sn, &changes, (None, Some(session_id), task_id), now)?;
        // Nothing went in and nothing is left to count: the door was opened for nothing, and the
        // task is still to be done (the session's close below gives it back).
        let nothing = added.is_empty() && uncounted.is_empty();
        if let Some(id) = task_id.filter(|_| !nothing) {
            diesel::update(restock_tasks::table.find(id))
                .set((
                    restock_tasks::status.eq(TaskStatus::Done),
                    restock_tasks::added.eq(Some(record.to_string())),
                    restock_tasks::closed_at.eq(Some(now)),
                    restock_tasks::closed_by.eq(Some(by)),
                    restock_tasks::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        super::sessions::close(
            conn,
            session_id,
            crate::domain::session::Outcome::Done,
            Some(&record.to_string()),
            now,
        )?;
        if task_id.is_some() && !nothing {
            super::alerts::resolve(conn, RESTOCK_NEEDED, Some(sn), now)?;
        }
        if !wanted(conn, sn)?.is_empty() {
            RestockCheck { sn: sn.to_string(), lanes: Vec::new() }.enqueue(conn)?;
        }
        Ok(task_id)
    })
}
