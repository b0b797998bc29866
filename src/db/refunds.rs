//! Refunds, as stored: money given back on a paid order after a person corrected its basket.
//! Requested and sent by `flows::refund`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::Refund;
use super::schema::refunds;
use super::{AnyConnection, DbResult};
use crate::domain::payment::RefundStatus;
use crate::domain::units::Fen;

pub fn find(conn: &mut AnyConnection, out_refund_no: &str) -> DbResult<Option<Refund>> {
    Ok(refunds::table.find(out_refund_no).select(Refund::as_select()).first(conn).optional()?)
}

/// An order's refunds, oldest first.
pub fn for_order(conn: &mut AnyConnection, order_id: i64) -> DbResult<Vec<Refund>> {
    Ok(refunds::table
        .filter(refunds::order_id.eq(order_id))
        .order(refunds::created_at.asc())
        .then_order_by(refunds::out_refund_no.asc())
        .select(Refund::as_select())
        .load(conn)?)
}

/// How many refunds an order has.
pub fn count_for_order(conn: &mut AnyConnection, order_id: i64) -> DbResult<i64> {
    Ok(refunds::table.filter(refunds::order_id.eq(order_id)).count().get_result(conn)?)
}

/// What an order's refunds give back: all of them, a failed one too (the decision stands; it is
/// retried, or the money goes back another way), so a later correction never refunds it again.
pub fn committed_fen(conn: &mut AnyConnection, order_id: i64) -> DbResult<Fen> {
    let amounts: Vec<Fen> =
        refunds::table.filter(refunds::order_id.eq(order_id)).select(refunds::amount_fen).load(conn)?;
    Ok(amounts.iter().sum())
}

/// Refunds by status (`None`: all), newest first.
pub fn list(conn: &mut AnyConnection, status: Option<RefundStatus>, limit: i64) -> DbResult<Vec<Refund>> {
    let mut q = refunds::table.select(Refund::as_select()).into_boxed();
    if let Some(s) = status {
        q = q.filter(refunds::status.eq(s));
    }
    Ok(q.order(refunds::created_at.desc()).then_order_by(refunds::out_refund_no.desc()).limit(limit).load(conn)?)
}

pub fn insert(conn: &mut AnyConnection, row: &Refund) -> DbResult<()> {
    diesel::insert_into(refunds::table).values(row).execute(conn)?;
    Ok(())
}

/// A failed refund back to `requested`. False when it is not failed.
pub fn reopen(conn: &mut AnyConnection, out_refund_no: &str, now: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(refunds::table.find(out_refund_no).filter(refunds::status.eq(RefundStatus::Failed)))
        .set((
            refunds::status.eq(RefundStatus::Requested),
            refunds::finished_at.eq(None::<NaiveDateTime>),
            refunds::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// The refund is about to go out: `processing` from now on (a later attempt asks the platform
/// first). False when it has ended meanwhile.
pub fn mark_sent(conn: &mut AnyConnection, out_refund_no: &str, now: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(refunds::table.find(out_refund_no).filter(refunds::status.eq_any(RefundStatus::OPEN)))
        .set((refunds::status.eq(RefundStatus::Processing), refunds::updated_at.eq(now)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Why the last attempt did not finish it, for operators.
pub fn note_error(conn: &mut AnyConnection, out_refund_no: &str, error: &str, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(refunds::table.find(out_refund_no))
        .set((refunds::last_error.eq(Some(error)), refunds::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// The refund went through, with the platform's id: `succeeded`, once. False when it had ended.
pub fn succeed(conn: &mut AnyConnection, out_refund_no: &str, refund_id: &str, now: NaiveDateTime) -> DbResult<bool> {
    let open = refunds::table.find(out_refund_no).filter(refunds::status.eq_any(RefundStatus::OPEN));
    let n = diesel::update(open)
        .set((
            refunds::status.eq(RefundStatus::Succeeded),
            refunds::refund_id.eq(Some(refund_id)),
            refunds::last_error.eq(None::<String>),
            refunds::updated_at.eq(now),
            refunds::finished_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// The platform refused or gave up: `failed`, once, with why. False when it had ended.
pub fn fail(conn: &mut AnyConnection, out_refund_no: &str, reason: &str, now: NaiveDateTime) -> DbResult<bool> {
    let open = refunds::table.find(out_refund_no).filter(refunds::status.eq_any(RefundStatus::OPEN));
    let n = diesel::update(open)
        .set((
            refunds::status.eq(RefundStatus::Failed),
            refunds::last_error.eq(Some(reason)),
            refunds::updated_at.eq(now),
            refunds::finished_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(n == 1)
}
