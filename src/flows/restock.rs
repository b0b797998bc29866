//! Restock and maintenance: what a cabinet needs (`restock.check` keeps its task up to date), the
//! door sessions that open a door for a restocker or a maintainer, and what their weights say when
//! the door has closed — a restock counted into book stock by weight (`domain::restock`), a
//! maintenance recorded and flagged where anything moved.

use chrono::NaiveDateTime;

use super::{Effects, alerts, sessions, stock};
use crate::db::models::{Lane, NewSession, Session};
use crate::db::stock::LedgerRefs;
use crate::db::{self, AnyConnection, Db, DbError, DbResult, layout, restock, write_tx};
use crate::domain::alert::{self, AlertCode};
use crate::domain::count::CountRule;
use crate::domain::live::Change;
use crate::domain::restock::{
    LaneChange, LaneStock, RestockCount, TaskLane, TaskStatus, count_restock, lanes_to_restock, maintenance_moves,
};
use crate::domain::session::{Outcome, SessionKind};
use crate::domain::settlement::LaneReading;
use crate::domain::stock::{StockChange, StockReason};
use crate::domain::stocktake::SessionWeights;
use crate::domain::units::Grams;
use crate::mq::topics::{Payload, RestockCheck};

fn json<T: serde::Serialize>(v: &T) -> DbResult<String> {
    serde_json::to_string(v).map_err(|e| DbError::Corrupt(e.to_string()))
}

/// What the cabinet's lanes need now: every lane holding a product at or under its threshold,
/// filled to capacity.
fn wanted(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<TaskLane>> {
    let all: Vec<Lane> = layout::lanes(conn, sn)?;
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

/// `restock.check`: make the cabinet's open task say what its lanes need now — created when there
/// is none (and operators alerted once per new task), left to its restocker when one is at it.
pub async fn check(db: &Db, sn: String) -> DbResult<Effects> {
    let cabinet = Change::Cabinet { sn: sn.clone() };
    let task = db
        .write(move |c| {
            let now = db::now();
            let need = wanted(c, &sn)?;
            if need.is_empty() {
                return Ok(None);
            }
            match restock::current(c, &sn)? {
                Some(t) if t.status == TaskStatus::InProgress => Ok(None),
                Some(t) => restock::set_wanted(c, t.id, &json(&need)?, now).map(|()| Some(t.id)),
                None => {
                    let task = restock::create(c, &sn, &json(&need)?, now)?;
                    alerts::raise_in(c, &alert::restock_needed(&sn, task.id, &task.wanted))?;
                    Ok(Some(task.id))
                }
            }
        })
        .await?;
    Ok(match task {
        Some(id) => Effects::none().changed(Change::Restock { id }).changed(cabinet),
        None => Effects::none(),
    })
}

/// A restock or maintenance session opened at a door (`Err(held)`: another session holds the
/// cabinet). A restock takes the cabinet's open task, if it has one: its id comes back.
pub async fn open_session(db: &Db, new: NewSession) -> DbResult<Result<(Session, Option<i64>), Session>> {
    db.write(move |c| {
        write_tx(c, |c| {
            let session = match sessions::open_in(c, &new)? {
                Ok(s) => s,
                Err(held) => return Ok(Err(held)),
            };
            let task = match (new.kind, restock::current(c, &new.sn)?) {
                (SessionKind::Restock, Some(task)) => {
                    restock::take(c, task.id, session.id, db::now())?;
                    Some(task.id)
                }
                _ => None,
            };
            Ok(Ok((session, task)))
        })
    })
    .await
}

/// The restock door closed and the lanes settled: in one transaction, stock and ledger rows for
/// what was added, the task closed with it, and the session ended. Lanes that could not be
/// counted keep their book stock and are listed on the task for a person (and alerted). Lanes
/// still at or under their threshold afterwards (a partial fill) get a fresh `restock.check`. A
/// restock that put nothing in leaves its task open. Done once: a repeat for a session already
/// ended changes nothing.
pub async fn finish(
    db: &Db,
    sn: String,
    session_id: i64,
    readings: Vec<LaneReading>,
    by: String,
    rule: &CountRule,
) -> DbResult<Effects> {
    let count = count_restock(&readings, rule);
    let weights = weights_json(readings.iter().map(|r| (r.lane.as_str(), r.before_g, r.after_g)));
    let cabinet = Change::Cabinet { sn: sn.clone() };
    let task = db
        .write(move |c| {
            let task = finish_in(c, &sn, session_id, &count, &by, db::now())?;
            db::sessions::set_evidence(c, session_id, &weights)?;
            Ok::<_, DbError>(task)
        })
        .await?;
    let effects = Effects::wake().changed(cabinet);
    Ok(match task {
        Some(id) => effects.changed(Change::Restock { id }),
        None => effects,
    })
}

fn finish_in(
    conn: &mut AnyConnection,
    sn: &str,
    session_id: i64,
    count: &RestockCount,
    by: &str,
    now: NaiveDateTime,
) -> DbResult<Option<i64>> {
    write_tx(conn, |conn| {
        if !db::sessions::lock_open(conn, session_id)? {
            return Ok(None);
        }
        if !count.uncounted.is_empty() {
            alerts::raise_in(conn, &alert::restock_uncounted(sn, &count.uncounted))?;
        }
        let task_id = restock::of_session(conn, session_id)?.map(|t| t.id);
        let record = json(count)?;
        let changes: Vec<StockChange> = count
            .added
            .iter()
            .map(|a| StockChange {
                lane: a.lane.clone(),
                product_id: a.product_id,
                delta: a.qty,
                reason: StockReason::Restock,
            })
            .collect();
        let refs = LedgerRefs { order_id: None, session_id: Some(session_id), task_id };
        stock::change_in(conn, sn, &changes, refs, now)?;
        // Nothing went in and nothing is left to count: the door was opened for nothing, and the
        // task is still to be done (the session's end below gives it back).
        let done = task_id.filter(|_| !count.is_empty());
        if let Some(id) = done {
            restock::close(conn, id, &record, by, now)?;
        }
        sessions::close_in(conn, session_id, Outcome::Done, Some(&record), now)?;
        if done.is_some() {
            alerts::resolve_in(conn, AlertCode::RestockNeeded, Some(sn))?;
        }
        if !wanted(conn, sn)?.is_empty() {
            RestockCheck { sn: sn.to_string(), lanes: Vec::new() }.enqueue(conn)?;
        }
        Ok(task_id)
    })
}

/// A maintenance door settled: nothing changes hands; any lane that moved (or cannot be
/// compared) is recorded on the session and flagged.
pub async fn finish_maintenance(
    db: &Db,
    sn: String,
    session_id: i64,
    changes: Vec<LaneChange>,
    by: String,
) -> DbResult<()> {
    let moved = maintenance_moves(&changes);
    let detail = serde_json::json!({ "by": by, "weight_changes": moved }).to_string();
    let weights = weights_json(changes.iter().map(|l| (l.lane.as_str(), l.before_g, l.after_g)));
    db.write(move |c| {
        if !moved.is_empty() {
            alerts::raise_in(c, &alert::maintenance_weight_change(&sn, &by, &moved))?;
        }
        if sessions::close_in(c, session_id, Outcome::Done, Some(&detail), db::now())? {
            db::sessions::set_evidence(c, session_id, &weights)?;
        }
        Ok(())
    })
    .await
}

/// A door session's lane weights, kept on it for the nightly stocktake to trace through.
fn weights_json<'a>(lanes: impl Iterator<Item = (&'a str, Option<Grams>, Option<Grams>)>) -> String {
    serde_json::to_string(&SessionWeights::of(lanes)).unwrap_or_default()
}
