//! What the nightly stocktake reads, a cabinet at a time (its lanes, its newest closed-door
//! readings, the drift its cells followed, its sessions with their weights, its book changes, the
//! doors opened while nothing held it) and what it keeps: a `stocktake_lanes` row per lane and
//! night, and the `stock_findings` that explain a difference.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{
    cabinets, lane_health, lanes, orders, products, sessions, stock_findings, stock_ledger, stocktake_lanes, weight_log,
};
use super::{AnyConnection, DbResult};
use crate::domain::session::SessionKind;
use crate::domain::stocktake::{FindingKind, LaneStatus, Unreadable};
use crate::domain::units::{Fen, Grams};
use crate::domain::weight::ReadingKind;

/// A lane as the stocktake counts it.
#[derive(Debug, Clone, Queryable)]
pub struct LaneSetup {
    pub lane: String,
    pub channel: i32,
    pub stock: i32,
    pub calibrated_at: Option<NaiveDateTime>,
    pub product_id: Option<i64>,
    pub unit_g: Option<f64>,
    pub tolerance_g: Option<f64>,
    pub price_fen: Option<Fen>,
}

/// Up to `limit` cabinets after `after`, by serial number.
pub fn cabinets_after(conn: &mut AnyConnection, after: Option<&str>, limit: i64) -> DbResult<Vec<String>> {
    let mut q = cabinets::table.select(cabinets::sn).order(cabinets::sn.asc()).limit(limit).into_boxed();
    if let Some(a) = after {
        q = q.filter(cabinets::sn.gt(a.to_string()));
    }
    Ok(q.load(conn)?)
}

/// Cabinet `sn`'s lanes with their products.
pub fn lanes_of(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<LaneSetup>> {
    Ok(lanes::table
        .left_join(products::table)
        .filter(lanes::sn.eq(sn))
        .order(lanes::code.asc())
        .select((
            lanes::code,
            lanes::channel,
            lanes::stock,
            lanes::calibrated_at,
            lanes::product_id,
            products::unit_g.nullable(),
            products::tolerance_g.nullable(),
            products::price_fen.nullable(),
        ))
        .load(conn)?)
}

/// One logged reading: what kind, its raw counts and grams (JSON), when.
pub type Reading = (ReadingKind, String, Option<String>, NaiveDateTime);

/// Cabinet `sn`'s newest `limit` readings at or before `cutoff`, newest first.
pub fn readings_before(
    conn: &mut AnyConnection,
    sn: &str,
    cutoff: NaiveDateTime,
    limit: i64,
) -> DbResult<Vec<Reading>> {
    Ok(weight_log::table
        .filter(weight_log::sn.eq(sn))
        .filter(weight_log::recorded_at.le(cutoff))
        .order((weight_log::recorded_at.desc(), weight_log::id.desc()))
        .limit(limit)
        .select((weight_log::kind, weight_log::counts, weight_log::grams, weight_log::recorded_at))
        .load(conn)?)
}

/// A lane's day: lane, day, drift followed, noise.
pub type LaneDay = (String, String, f64, Option<f64>);

/// Each lane's days.
pub fn health_of(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<LaneDay>> {
    Ok(lane_health::table
        .filter(lane_health::sn.eq(sn))
        .order((lane_health::lane.asc(), lane_health::day.asc()))
        .select((lane_health::lane, lane_health::day, lane_health::drift_g, lane_health::noise_g))
        .load(conn)?)
}

/// Each lane's last night before `day` that it was read (agreeing, or corrected to agree):
/// (lane, its rest in grams, when taken).
pub fn last_nights(conn: &mut AnyConnection, sn: &str, day: &str) -> DbResult<Vec<(String, f64, NaiveDateTime)>> {
    let rows: Vec<(String, Option<f64>, NaiveDateTime)> = stocktake_lanes::table
        .filter(stocktake_lanes::sn.eq(sn))
        .filter(stocktake_lanes::day.lt(day))
        .filter(stocktake_lanes::status.ne(LaneStatus::Unreadable))
        .order((stocktake_lanes::lane.asc(), stocktake_lanes::day.desc()))
        .select((stocktake_lanes::lane, stocktake_lanes::night_g, stocktake_lanes::taken_at))
        .load(conn)?;
    let mut out: Vec<(String, f64, NaiveDateTime)> = Vec::new();
    for (lane, g, at) in rows {
        if out.last().is_none_or(|(l, _, _)| *l != lane)
            && let Some(g) = g
        {
            out.push((lane, g, at));
        }
    }
    Ok(out)
}

/// The lanes of `sn` already taken for `day`.
pub fn done_lanes(conn: &mut AnyConnection, day: &str, sn: &str) -> DbResult<Vec<String>> {
    Ok(stocktake_lanes::table
        .filter(stocktake_lanes::day.eq(day))
        .filter(stocktake_lanes::sn.eq(sn))
        .select(stocktake_lanes::lane)
        .load(conn)?)
}

/// A door session of the cabinet, with its order when it was a purchase.
#[derive(Debug, Clone)]
pub struct DoorSession {
    pub id: i64,
    pub kind: SessionKind,
    pub started_at: NaiveDateTime,
    pub ended_at: NaiveDateTime,
    /// Restock and maintenance: the lanes' weights (`{"before_g": …, "after_g": …}`).
    pub evidence: Option<String>,
    /// Purchase: order id, user, the weights before (lane → grams) and after (lane → grams or
    /// null).
    pub order: Option<(i64, i64, Option<String>, Option<String>)>,
}

type SessionRow = (i64, SessionKind, NaiveDateTime, Option<NaiveDateTime>, Option<String>);
/// A purchase's session, order, user, weights before and after.
type OrderWeights = (Option<i64>, i64, i64, Option<String>, Option<String>);

/// The purchase, restock and maintenance sessions of `sn` that started after `from` and ended by
/// `to`, oldest first.
pub fn door_sessions(
    conn: &mut AnyConnection,
    sn: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> DbResult<Vec<DoorSession>> {
    let kinds = [SessionKind::Purchase, SessionKind::Restock, SessionKind::Maintenance];
    let rows: Vec<SessionRow> = sessions::table
        .filter(sessions::sn.eq(sn))
        .filter(sessions::kind.eq_any(kinds))
        .filter(sessions::started_at.gt(from))
        .filter(sessions::ended_at.le(to))
        .order((sessions::started_at.asc(), sessions::id.asc()))
        .select((sessions::id, sessions::kind, sessions::started_at, sessions::ended_at, sessions::evidence))
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().filter(|r| r.1 == SessionKind::Purchase).map(|r| r.0).collect();
    let found: Vec<OrderWeights> = orders::table
        .filter(orders::session_id.eq_any(&ids))
        .select((orders::session_id, orders::id, orders::user_id, orders::before_g, orders::after_g))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, kind, started_at, ended_at, evidence)| {
            let order = found.iter().find(|o| o.0 == Some(id)).map(|o| (o.1, o.2, o.3.clone(), o.4.clone()));
            Some(DoorSession { id, kind, started_at, ended_at: ended_at?, evidence, order })
        })
        .collect())
}

/// A book change: lane, delta, session, order, when.
pub type BookChange = (String, i32, Option<i64>, Option<i64>, NaiveDateTime);

/// Book changes of `sn` after `from`.
pub fn ledger_since(conn: &mut AnyConnection, sn: &str, from: NaiveDateTime) -> DbResult<Vec<BookChange>> {
    Ok(stock_ledger::table
        .filter(stock_ledger::sn.eq(sn))
        .filter(stock_ledger::created_at.gt(from))
        .select((
            stock_ledger::lane,
            stock_ledger::delta,
            stock_ledger::session_id,
            stock_ledger::order_id,
            stock_ledger::created_at,
        ))
        .load(conn)?)
}

/// When readings of `sn` were taken with a door open and no session holding the cabinet, in
/// `(from, to]`.
pub fn unheld_open(
    conn: &mut AnyConnection,
    sn: &str,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> DbResult<Vec<NaiveDateTime>> {
    Ok(weight_log::table
        .filter(weight_log::sn.eq(sn))
        .filter(weight_log::recorded_at.gt(from))
        .filter(weight_log::recorded_at.le(to))
        .filter(weight_log::kind.eq(ReadingKind::Open))
        .filter(weight_log::session_id.is_null())
        .order(weight_log::recorded_at.asc())
        .select(weight_log::recorded_at)
        .load(conn)?)
}

/// A lane's night, as kept.
#[derive(Debug, Clone, PartialEq, Insertable, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = stocktake_lanes)]
pub struct NewLaneNight {
    pub day: String,
    pub sn: String,
    pub lane: String,
    pub product_id: Option<i64>,
    pub status: LaneStatus,
    pub unreadable: Option<Unreadable>,
    pub book: i32,
    pub implied: Option<i32>,
    pub difference: i32,
    pub night_g: Option<f64>,
    #[schema(value_type = String)]
    pub taken_at: NaiveDateTime,
    /// The sessions weighed and the decision (JSON).
    pub trace: String,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
}

/// A finding, as kept.
#[derive(Debug, Clone, PartialEq, Insertable, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = stock_findings)]
pub struct NewFinding {
    pub stocktake_id: i64,
    pub day: String,
    pub sn: String,
    pub lane: String,
    pub product_id: Option<i64>,
    pub kind: FindingKind,
    pub units: i32,
    #[schema(value_type = i64)]
    pub value_fen: Fen,
    #[schema(value_type = i64)]
    pub charged_fen: Fen,
    pub session_id: Option<i64>,
    pub order_id: Option<i64>,
    pub user_id: Option<i64>,
    #[schema(value_type = Option<String>)]
    pub from_at: Option<NaiveDateTime>,
    #[schema(value_type = Option<String>)]
    pub to_at: Option<NaiveDateTime>,
    #[schema(value_type = Option<f64>)]
    pub from_g: Option<Grams>,
    #[schema(value_type = Option<f64>)]
    pub to_g: Option<Grams>,
}

/// Keep a lane's night and its findings (their `stocktake_id` set here).
pub fn record(conn: &mut AnyConnection, night: &NewLaneNight, findings: &mut [NewFinding]) -> DbResult<i64> {
    let id: i64 = crate::on_backend!(conn, |c| {
        diesel::insert_into(stocktake_lanes::table).values(night).returning(stocktake_lanes::id).get_result(c)?
    });
    for f in findings.iter_mut() {
        f.stocktake_id = id;
    }
    if !findings.is_empty() {
        crate::on_backend!(conn, |c| { diesel::insert_into(stock_findings::table).values(&*findings).execute(c)? });
    }
    Ok(id)
}

/// The nights of `day` (of one cabinet when `sn`), by cabinet and lane, with their findings.
pub fn of_day(
    conn: &mut AnyConnection,
    day: &str,
    sn: Option<&str>,
) -> DbResult<Vec<(i64, NewLaneNight, Vec<NewFinding>)>> {
    let mut q = stocktake_lanes::table.filter(stocktake_lanes::day.eq(day)).into_boxed();
    if let Some(sn) = sn {
        q = q.filter(stocktake_lanes::sn.eq(sn.to_string()));
    }
    let nights: Vec<(i64, NewLaneNight)> = q
        .order((stocktake_lanes::sn.asc(), stocktake_lanes::lane.asc()))
        .select((stocktake_lanes::id, NewLaneNight::as_select()))
        .load(conn)?;
    let ids: Vec<i64> = nights.iter().map(|n| n.0).collect();
    let findings: Vec<NewFinding> = stock_findings::table
        .filter(stock_findings::stocktake_id.eq_any(&ids))
        .order(stock_findings::id.asc())
        .select(NewFinding::as_select())
        .load(conn)?;
    Ok(nights
        .into_iter()
        .map(|(id, n)| (id, n, findings.iter().filter(|f| f.stocktake_id == id).cloned().collect()))
        .collect())
}

/// A cabinet's loss of one product: sn, product, its name, units gone (positive), their value.
pub type Loss = (String, i64, String, i64, Fen);

/// The day's losses per cabinet and product: units gone that no shopper was charged for.
pub fn losses_of_day(conn: &mut AnyConnection, day: &str) -> DbResult<Vec<Loss>> {
    let rows: Vec<(String, Option<i64>, i32, Fen)> = stock_findings::table
        .filter(stock_findings::day.eq(day))
        .filter(stock_findings::kind.ne(FindingKind::Shopper))
        .select((stock_findings::sn, stock_findings::product_id, stock_findings::units, stock_findings::value_fen))
        .load(conn)?;
    let mut out: Vec<(String, i64, i64, Fen)> = Vec::new();
    for (sn, product, units, fen) in rows {
        let Some(product) = product else { continue };
        match out.iter_mut().find(|(s, p, _, _)| *s == sn && *p == product) {
            Some(row) => {
                row.2 -= i64::from(units);
                row.3 = Fen(row.3.0 + fen.0);
            }
            None => out.push((sn, product, -i64::from(units), fen)),
        }
    }
    let ids: Vec<i64> = out.iter().map(|r| r.1).collect();
    let names: Vec<(i64, String)> =
        products::table.filter(products::id.eq_any(&ids)).select((products::id, products::name)).load(conn)?;
    Ok(out
        .into_iter()
        .map(|(sn, p, units, fen)| {
            let name = names.iter().find(|n| n.0 == p).map(|n| n.1.clone()).unwrap_or_default();
            (sn, p, name, units, fen)
        })
        .collect())
}
