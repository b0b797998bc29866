//! Book stock and its ledger: every change of a lane's stock is one ledger row, written in the
//! transaction of what caused it (a sale, a move, a review, a restock).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{LedgerRow, NewLedgerRow};
use super::schema::{lanes, stock_ledger};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::stock::StockChange;

/// What a ledger row refers to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerRefs {
    pub order_id: Option<i64>,
    pub session_id: Option<i64>,
    pub task_id: Option<i64>,
}

/// A lane's stock across one change, and the threshold it is restocked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub before: i64,
    pub after: i64,
    pub threshold: i64,
}

/// Change one lane's book stock and write its ledger row, inside the caller's transaction.
pub fn change(
    conn: &mut AnyConnection,
    sn: &str,
    ch: &StockChange,
    refs: LedgerRefs,
    now: NaiveDateTime,
) -> DbResult<Changed> {
    let (threshold, product_id): (i32, Option<i64>) = lanes::table
        .find((sn, &ch.lane))
        .select((lanes::threshold, lanes::product_id))
        .first(conn)
        .optional()?
        .ok_or_else(|| DbError::Corrupt(format!("lane {sn}/{} not found", ch.lane)))?;
    let delta = i32::try_from(ch.delta).map_err(|_| DbError::Corrupt(format!("stock change {}", ch.delta)))?;
    // Added in the database, not written from what was read: two changes of one lane in
    // concurrent transactions (PostgreSQL) must both count.
    diesel::update(lanes::table.find((sn, &ch.lane))).set(lanes::stock.eq(lanes::stock + delta)).execute(conn)?;
    let after: i32 = lanes::table.find((sn, &ch.lane)).select(lanes::stock).first(conn)?;
    diesel::insert_into(stock_ledger::table)
        .values(NewLedgerRow {
            sn: sn.into(),
            lane: ch.lane.clone(),
            product_id: ch.product_id.or(product_id),
            delta,
            stock_after: after,
            reason: ch.reason,
            order_id: refs.order_id,
            session_id: refs.session_id,
            task_id: refs.task_id,
            created_at: now,
        })
        .execute(conn)?;
    Ok(Changed { before: i64::from(after - delta), after: i64::from(after), threshold: i64::from(threshold) })
}

/// The stock ledger of a cabinet, oldest first.
pub fn ledger(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<LedgerRow>> {
    Ok(stock_ledger::table
        .filter(stock_ledger::sn.eq(sn))
        .order(stock_ledger::id.asc())
        .select(LedgerRow::as_select())
        .load(conn)?)
}
