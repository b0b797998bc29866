//! Refunds: money given back on a paid order after a person corrected its basket. A refund is
//! written with its `payment.refund` message in the transaction of the decision; the consumer
//! (`pay::refund`) sends it and records how it ended.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{Order, Refund};
use super::schema::refunds;
use super::{AnyConnection, DbResult, alerts, write_tx};
use crate::domain::alert::{AlertSpec, Audience, Severity};
use crate::domain::payment::RefundStatus;
use crate::mq::topics::{Payload, Refund as RefundMessage};

/// The alert a failed refund raises.
pub const REFUND_FAILED: &str = "refund_failed";

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

/// What an order's refunds give back: all of them, a failed one too (the decision stands; it is
/// retried, or the money goes back another way), so a later correction never refunds it again.
pub fn committed_fen(conn: &mut AnyConnection, order_id: i64) -> DbResult<i64> {
    let amounts: Vec<i64> =
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

/// A failed refund sent again, under its own number (the platforms take it as the same refund):
/// `requested`, with a fresh `payment.refund`. False when it is not failed.
pub fn retry(conn: &mut AnyConnection, out_refund_no: &str, now: NaiveDateTime) -> DbResult<bool> {
    write_tx(conn, |conn| {
        let n = diesel::update(refunds::table.find(out_refund_no).filter(refunds::status.eq(RefundStatus::Failed)))
            .set((
                refunds::status.eq(RefundStatus::Requested),
                refunds::finished_at.eq(None::<NaiveDateTime>),
                refunds::updated_at.eq(now),
            ))
            .execute(conn)?;
        if n == 1 {
            let chain = now.and_utc().timestamp_millis().to_string();
            // A retry starts a new chain of rounds.
            RefundMessage { out_refund_no: out_refund_no.to_string(), chain, round: 0 }.enqueue(conn)?;
        }
        Ok(n == 1)
    })
}

/// A refund of `amount_fen` on `order` and its `payment.refund` message, inside the caller's
/// transaction. Its number is the order's with `R` and a count (`HO…R1`), so it is the same
/// whichever node sends it, however often.
pub fn request(
    conn: &mut AnyConnection,
    order: &Order,
    case_id: Option<i64>,
    amount_fen: i64,
    reason: &str,
    by: &str,
    now: NaiveDateTime,
) -> DbResult<Refund> {
    let n: i64 = refunds::table.filter(refunds::order_id.eq(order.id)).count().get_result(conn)?;
    let row = Refund {
        out_refund_no: format!("{}R{}", order.out_order_no, n + 1),
        order_id: order.id,
        out_order_no: order.out_order_no.clone(),
        case_id,
        amount_fen,
        reason: reason.to_string(),
        status: RefundStatus::Requested,
        refund_id: None,
        last_error: None,
        requested_by: by.to_string(),
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    diesel::insert_into(refunds::table).values(&row).execute(conn)?;
    RefundMessage { out_refund_no: row.out_refund_no.clone(), chain: "0".into(), round: 0 }.enqueue(conn)?;
    Ok(row)
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

/// How a refund ended on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Succeeded { refund_id: String },
    Failed { reason: String },
}

/// Record how the refund ended, once (a repeat, from the callback and the consumer both, changes
/// nothing). A failure raises a critical alert: the shopper is owed money Heft could not return.
/// True when this call ended it.
pub fn ended(conn: &mut AnyConnection, out_refund_no: &str, how: &Ended, now: NaiveDateTime) -> DbResult<bool> {
    write_tx(conn, |conn| {
        let open = refunds::table.find(out_refund_no).filter(refunds::status.eq_any(RefundStatus::OPEN));
        let n = match how {
            Ended::Succeeded { refund_id } => diesel::update(open)
                .set((
                    refunds::status.eq(RefundStatus::Succeeded),
                    refunds::refund_id.eq(Some(refund_id)),
                    refunds::last_error.eq(None::<String>),
                    refunds::updated_at.eq(now),
                    refunds::finished_at.eq(Some(now)),
                ))
                .execute(conn)?,
            Ended::Failed { reason } => diesel::update(open)
                .set((
                    refunds::status.eq(RefundStatus::Failed),
                    refunds::last_error.eq(Some(reason)),
                    refunds::updated_at.eq(now),
                    refunds::finished_at.eq(Some(now)),
                ))
                .execute(conn)?,
        };
        if n == 0 {
            return Ok(false);
        }
        if let Ended::Failed { reason } = how
            && let Some(r) = find(conn, out_refund_no)?
        {
            let sn = super::orders::find(conn, r.order_id)?.map(|o| o.sn);
            let spec = AlertSpec {
                audience: Audience::Ops,
                severity: Severity::Critical,
                code: REFUND_FAILED.into(),
                sn,
                message: format!(
                    "refund {out_refund_no} of {} fen on order {} failed ({reason}): give it back another way",
                    r.amount_fen, r.order_id
                ),
                detail: Some(serde_json::json!({ "out_refund_no": out_refund_no, "order_id": r.order_id }).to_string()),
            };
            alerts::raise(conn, &spec, 1, now)?;
        }
        Ok(true)
    })
}
