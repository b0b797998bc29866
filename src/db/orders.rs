//! Orders and their lines, as stored. What moves an order, and when, is decided in `domain::order`
//! and applied by the flows (`flows::order`); this module reads and writes rows.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewOrder, Order, OrderLine};
use super::schema::{charged_lines, order_lines, orders, payments};
use super::{AnyConnection, DbError, DbResult, write_tx};
use crate::domain::order::OrderStatus;
use crate::domain::settlement::Line;
use crate::domain::units::Fen;

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<Order>> {
    Ok(orders::table.find(id).select(Order::as_select()).first(conn).optional()?)
}

pub fn find_by_out_order_no(conn: &mut AnyConnection, no: &str) -> DbResult<Option<Order>> {
    Ok(orders::table.filter(orders::out_order_no.eq(no)).select(Order::as_select()).first(conn).optional()?)
}

/// The order, locked for the rest of the transaction on PostgreSQL (SQLite has one writer).
///
/// Its payment is locked first: callbacks lock the payment and then the order, so every
/// transaction takes the two in that order and none waits on another crosswise.
pub fn lock(conn: &mut AnyConnection, id: i64) -> DbResult<Option<Order>> {
    Ok(match conn {
        AnyConnection::Postgresql(c) => {
            let no: Option<String> = orders::table.find(id).select(orders::out_order_no).first(c).optional()?;
            if let Some(no) = no {
                payments::table.find(no).select(payments::out_order_no).for_update().first::<String>(c).optional()?;
            }
            orders::table.find(id).select(Order::as_select()).for_update().first(c).optional()?
        }
        AnyConnection::Sqlite(c) => orders::table.find(id).select(Order::as_select()).first(c).optional()?,
    })
}

/// [`lock`], an order that must exist.
pub fn lock_existing(conn: &mut AnyConnection, id: i64) -> DbResult<Order> {
    lock(conn, id)?.ok_or_else(|| DbError::Corrupt(format!("order {id} not found")))
}

/// [`find`], an order that must exist.
pub fn existing(conn: &mut AnyConnection, id: i64) -> DbResult<Order> {
    find(conn, id)?.ok_or_else(|| DbError::Corrupt(format!("order {id} not found")))
}

/// How many of the shopper's orders have the shopper at a cabinet.
pub fn count_at_cabinet(conn: &mut AnyConnection, user_id: i64) -> DbResult<i64> {
    Ok(orders::table
        .filter(orders::user_id.eq(user_id))
        .filter(orders::status.eq_any(OrderStatus::AT_CABINET))
        .count()
        .get_result(conn)?)
}

/// Insert an order in a savepoint, so a refusal by the unique index leaves the caller's
/// transaction usable (PostgreSQL aborts a transaction on a failed statement).
pub fn insert(conn: &mut AnyConnection, new: &NewOrder) -> DbResult<Order> {
    write_tx(conn, |c| diesel::insert_into(orders::table).values(new).execute(c).map_err(DbError::from))?;
    find_by_out_order_no(conn, &new.out_order_no)?
        .ok_or_else(|| DbError::Corrupt(format!("order {} vanished", new.out_order_no)))
}

/// Fields of an order to set; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = orders)]
pub struct OrderChanges {
    pub status: Option<OrderStatus>,
    pub total_fen: Option<Option<Fen>>,
    pub paid_fen: Option<Option<Fen>>,
    pub debt_fen: Option<Fen>,
    pub before_g: Option<Option<String>>,
    pub after_g: Option<Option<String>>,
    pub notices: Option<String>,
    pub cancel_reason: Option<Option<String>>,
    pub authorized_at: Option<Option<NaiveDateTime>>,
    pub opened_at: Option<Option<NaiveDateTime>>,
    pub closed_at: Option<Option<NaiveDateTime>>,
    pub settled_at: Option<Option<NaiveDateTime>>,
    pub finished_at: Option<Option<NaiveDateTime>>,
}

/// Set `changes` on order `id` and its `updated_at`.
pub fn update(conn: &mut AnyConnection, id: i64, changes: &OrderChanges, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(orders::table.find(id)).set((changes, orders::updated_at.eq(now))).execute(conn)?;
    Ok(())
}

pub fn lines(conn: &mut AnyConnection, order_id: i64) -> DbResult<Vec<OrderLine>> {
    Ok(order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .order(order_lines::lane.asc())
        .select(OrderLine::as_select())
        .load(conn)?)
}

/// Replace the order's lines.
pub fn write_lines(conn: &mut AnyConnection, id: i64, lines: &[Line]) -> DbResult<()> {
    diesel::delete(order_lines::table.filter(order_lines::order_id.eq(id))).execute(conn)?;
    // One statement per line: batch inserts are not available over the two-backend connection,
    // and a basket has a handful of lines.
    for l in lines {
        let row = OrderLine {
            order_id: id,
            lane: l.lane.clone(),
            product_id: l.product_id,
            product_name: l.product_name.clone(),
            qty: l.qty,
            unit_fen: l.unit_fen,
            amount_fen: l.amount_fen,
        };
        diesel::insert_into(order_lines::table).values(&row).execute(conn)?;
    }
    Ok(())
}

/// Keep the order's lines as they stand as its charged lines, unless it has some already.
pub fn keep_charged_lines(conn: &mut AnyConnection, id: i64) -> DbResult<()> {
    let kept: i64 = charged_lines::table.filter(charged_lines::order_id.eq(id)).count().get_result(conn)?;
    if kept > 0 {
        return Ok(());
    }
    for l in lines(conn, id)? {
        let row = (
            charged_lines::order_id.eq(l.order_id),
            charged_lines::lane.eq(l.lane),
            charged_lines::product_id.eq(l.product_id),
            charged_lines::product_name.eq(l.product_name),
            charged_lines::qty.eq(l.qty),
            charged_lines::unit_fen.eq(l.unit_fen),
            charged_lines::amount_fen.eq(l.amount_fen),
        );
        diesel::insert_into(charged_lines::table).values(row).execute(conn)?;
    }
    Ok(())
}

/// A shopper's orders, newest first, before `before_id` when given.
pub fn for_user(conn: &mut AnyConnection, user_id: i64, before_id: Option<i64>, limit: i64) -> DbResult<Vec<Order>> {
    let mut q = orders::table.filter(orders::user_id.eq(user_id)).into_boxed();
    if let Some(b) = before_id {
        q = q.filter(orders::id.lt(b));
    }
    Ok(q.order(orders::id.desc()).limit(limit).select(Order::as_select()).load(conn)?)
}

/// The order of a purchase session.
pub fn for_session(conn: &mut AnyConnection, session_id: i64) -> DbResult<Option<Order>> {
    Ok(orders::table.filter(orders::session_id.eq(session_id)).select(Order::as_select()).first(conn).optional()?)
}
