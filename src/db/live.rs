//! What the live view reads: the fleet's rows all at once (or a few cabinets' at a time, as they
//! change), and the rows a change names. Lists of keys are read in chunks, within what either
//! backend takes as query parameters.

use diesel::prelude::*;

use super::models::{Alert, Cabinet, CommandRow, Order, RestockTask, ReviewCase, Session};
use super::schema::{alerts, cabinets, commands, lanes, orders, restock_tasks, review_cases, sessions};
use super::{AnyConnection, DbResult};
use crate::domain::restock::TaskStatus;
use crate::domain::review::CaseStatus;

/// Keys per `IN (…)`.
const CHUNK: usize = 500;

/// What makes a cabinet's row in the fleet view, besides what the cabinet reports live.
#[derive(Debug, Default)]
pub struct FleetFacts {
    pub cabinets: Vec<Cabinet>,
    /// One serial number per open alert.
    pub open_alerts: Vec<String>,
    /// One serial number per lane at or below its restock threshold.
    pub low_lanes: Vec<String>,
    /// Sessions not ended.
    pub sessions: Vec<Session>,
}

/// Every cabinet's facts (`sns` = `None`), or these cabinets'.
pub fn fleet(conn: &mut AnyConnection, sns: Option<&[String]>) -> DbResult<FleetFacts> {
    let Some(sns) = sns else {
        return Ok(FleetFacts {
            cabinets: cabinets::table.select(Cabinet::as_select()).order(cabinets::sn.asc()).load(conn)?,
            open_alerts: alerts::table
                .select(alerts::sn)
                .filter(alerts::resolved_at.is_null())
                .load::<Option<String>>(conn)?
                .into_iter()
                .flatten()
                .collect(),
            low_lanes: lanes::table.select(lanes::sn).filter(lanes::stock.le(lanes::threshold)).load(conn)?,
            sessions: sessions::table.select(Session::as_select()).filter(sessions::ended_at.is_null()).load(conn)?,
        });
    };
    let mut facts = FleetFacts::default();
    for chunk in sns.chunks(CHUNK) {
        facts.cabinets.extend(
            cabinets::table.select(Cabinet::as_select()).filter(cabinets::sn.eq_any(chunk)).load::<Cabinet>(conn)?,
        );
        facts.open_alerts.extend(
            alerts::table
                .select(alerts::sn)
                .filter(alerts::resolved_at.is_null().and(alerts::sn.eq_any(chunk)))
                .load::<Option<String>>(conn)?
                .into_iter()
                .flatten(),
        );
        facts.low_lanes.extend(
            lanes::table
                .select(lanes::sn)
                .filter(lanes::stock.le(lanes::threshold).and(lanes::sn.eq_any(chunk)))
                .load::<String>(conn)?,
        );
        facts.sessions.extend(
            sessions::table
                .select(Session::as_select())
                .filter(sessions::ended_at.is_null().and(sessions::sn.eq_any(chunk)))
                .load::<Session>(conn)?,
        );
    }
    Ok(facts)
}

/// Open alerts, newest first: all of them up to `limit`, or every one of these cabinets'.
pub fn open_alerts(conn: &mut AnyConnection, sns: Option<&[String]>, limit: i64) -> DbResult<Vec<Alert>> {
    let open = alerts::table.select(Alert::as_select()).filter(alerts::resolved_at.is_null());
    let Some(sns) = sns else { return Ok(open.order(alerts::id.desc()).limit(limit).load(conn)?) };
    let mut out = Vec::new();
    for chunk in sns.chunks(CHUNK) {
        out.extend(open.filter(alerts::sn.eq_any(chunk)).load::<Alert>(conn)?);
    }
    Ok(out)
}

pub fn alerts(conn: &mut AnyConnection, ids: &[i64]) -> DbResult<Vec<Alert>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(alerts::table.select(Alert::as_select()).filter(alerts::id.eq_any(chunk)).load::<Alert>(conn)?);
    }
    Ok(out)
}

pub fn orders(conn: &mut AnyConnection, ids: &[i64]) -> DbResult<Vec<Order>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(orders::table.select(Order::as_select()).filter(orders::id.eq_any(chunk)).load::<Order>(conn)?);
    }
    Ok(out)
}

/// The newest orders, of one cabinet or of all.
pub fn recent_orders(conn: &mut AnyConnection, sn: Option<&str>, limit: i64) -> DbResult<Vec<Order>> {
    let mut q = orders::table.select(Order::as_select()).into_boxed();
    if let Some(sn) = sn {
        q = q.filter(orders::sn.eq(sn.to_string()));
    }
    Ok(q.order(orders::id.desc()).limit(limit).load(conn)?)
}

pub fn cases(conn: &mut AnyConnection, ids: &[i64]) -> DbResult<Vec<ReviewCase>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(
            review_cases::table
                .select(ReviewCase::as_select())
                .filter(review_cases::id.eq_any(chunk))
                .load::<ReviewCase>(conn)?,
        );
    }
    Ok(out)
}

/// Open cases of these orders (a settlement that went to review opened one).
pub fn open_cases_of(conn: &mut AnyConnection, order_ids: &[i64]) -> DbResult<Vec<ReviewCase>> {
    let mut out = Vec::new();
    for chunk in order_ids.chunks(CHUNK) {
        out.extend(
            review_cases::table
                .select(ReviewCase::as_select())
                .filter(review_cases::status.eq(CaseStatus::Open).and(review_cases::order_id.eq_any(chunk)))
                .load::<ReviewCase>(conn)?,
        );
    }
    Ok(out)
}

/// Cases waiting for a decision, oldest first (the queue's order).
pub fn open_cases(conn: &mut AnyConnection, limit: i64) -> DbResult<Vec<ReviewCase>> {
    Ok(review_cases::table
        .select(ReviewCase::as_select())
        .filter(review_cases::status.eq(CaseStatus::Open))
        .order(review_cases::id.asc())
        .limit(limit)
        .load(conn)?)
}

pub fn tasks(conn: &mut AnyConnection, ids: &[i64]) -> DbResult<Vec<RestockTask>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(
            restock_tasks::table
                .select(RestockTask::as_select())
                .filter(restock_tasks::id.eq_any(chunk))
                .load::<RestockTask>(conn)?,
        );
    }
    Ok(out)
}

/// Tasks not yet done, newest first, of one cabinet or of all.
pub fn open_tasks(conn: &mut AnyConnection, sn: Option<&str>, limit: i64) -> DbResult<Vec<RestockTask>> {
    let mut q = restock_tasks::table
        .select(RestockTask::as_select())
        .filter(restock_tasks::status.eq_any([TaskStatus::Open, TaskStatus::InProgress]))
        .into_boxed();
    if let Some(sn) = sn {
        q = q.filter(restock_tasks::sn.eq(sn.to_string()));
    }
    Ok(q.order(restock_tasks::id.desc()).limit(limit).load(conn)?)
}

pub fn command(conn: &mut AnyConnection, id: &str) -> DbResult<Option<CommandRow>> {
    Ok(commands::table.find(id).select(CommandRow::as_select()).first(conn).optional()?)
}
