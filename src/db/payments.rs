//! Pre-authorisations and the callbacks the platforms sent about them.
//!
//! A callback is stored and applied in one transaction, with the payment row locked (PostgreSQL
//! `FOR UPDATE`; SQLite has one writer), so two copies of a callback arriving at once on two
//! nodes cannot both apply: the second finds the event id taken, or the state already moved.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewPaymentEvent, Payment, PaymentEvent};
use super::schema::{payment_events, payments};
use super::{AnyConnection, DbResult, write_tx};
use crate::domain::payment::{self, Channel, PaymentState, Reported, Verdict};
use crate::mq::topics::{Capture, Payload, Release};

pub fn create(conn: &mut AnyConnection, row: &Payment) -> DbResult<()> {
    diesel::insert_into(payments::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, out_order_no: &str) -> DbResult<Option<Payment>> {
    Ok(payments::table.find(out_order_no).select(Payment::as_select()).first(conn).optional()?)
}

/// The payment a callback is about: Alipay trade notifies name the trade (`out_trade_no`), the
/// rest name the pre-authorisation. Locked for the rest of the transaction on PostgreSQL.
fn find_for_update(conn: &mut AnyConnection, channel: Channel, no: &str) -> DbResult<Option<Payment>> {
    // The select is typed per backend, so it is written out in each arm.
    macro_rules! query {
        () => {
            payments::table
                .filter(payments::channel.eq(channel))
                .filter(payments::out_order_no.eq(no).or(payments::out_trade_no.eq(no)))
                .select(Payment::as_select())
        };
    }
    Ok(match conn {
        AnyConnection::Postgresql(c) => query!().for_update().first(c).optional()?,
        AnyConnection::Sqlite(c) => query!().first(c).optional()?,
    })
}

/// What became of one callback.
#[derive(Debug, Clone)]
pub enum Applied {
    /// The same platform event was received before: nothing done.
    Duplicate,
    /// About a payment Heft has no record of (yet): not stored, so the platform sends it again.
    UnknownPayment,
    /// Stored; the verdict says what it did. `payment` is the row after it; `order` the order of
    /// this pre-authorisation when the callback moved it (authorised, paid).
    Stored { verdict: Verdict, payment: Option<Box<Payment>>, order: Option<Box<super::models::Order>> },
}

/// A verified callback to store and apply.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub channel: Channel,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub out_order_no: Option<&'a str>,
    pub resource: &'a str,
    /// The body as received.
    pub raw: &'a str,
    pub reported: Reported,
}

/// Store the callback and apply it to its payment and its order, in one transaction.
/// `open_check`: when the door must have opened after an authorisation (`door.open_check`).
pub fn record_callback(
    conn: &mut AnyConnection,
    event: &Incoming<'_>,
    open_check: chrono::Duration,
    now: NaiveDateTime,
) -> DbResult<Applied> {
    write_tx(conn, |conn| {
        let taken: i64 = payment_events::table
            .filter(payment_events::channel.eq(event.channel))
            .filter(payment_events::event_id.eq(event.event_id))
            .count()
            .get_result(conn)?;
        if taken > 0 {
            return Ok(Applied::Duplicate);
        }
        // A refund callback names the refund: its payment is the refund's.
        let refund_of = match &event.reported {
            Reported::Refund { out_refund_no, .. } => {
                super::refunds::find(conn, out_refund_no)?.map(|r| r.out_order_no)
            }
            _ => None,
        };
        let current = match refund_of.as_deref().or(event.out_order_no) {
            Some(no) => match find_for_update(conn, event.channel, no)? {
                Some(p) => Some(p),
                None => return Ok(Applied::UnknownPayment),
            },
            None => None,
        };
        let verdict = match &current {
            Some(p) => payment::apply(p.state, p.transaction_id.as_deref(), &event.reported),
            None => Verdict::Ignored("about no payment"),
        };
        let inserted = write_tx(conn, |conn| -> DbResult<usize> {
            Ok(diesel::insert_into(payment_events::table)
                .values(NewPaymentEvent {
                    channel: event.channel,
                    event_id: event.event_id,
                    event_type: event.event_type,
                    out_order_no: event.out_order_no,
                    resource: event.resource,
                    raw: event.raw,
                    outcome: verdict.outcome(),
                    received_at: now,
                })
                .execute(conn)?)
        });
        match inserted {
            Ok(_) => {}
            // The same event stored by a concurrent request since our check.
            Err(e) if e.is_unique_violation() => return Ok(Applied::Duplicate),
            Err(e) => return Err(e),
        }
        let Some(p) = current else { return Ok(Applied::Stored { verdict, payment: None, order: None }) };
        if let Verdict::Apply { to, changes } | Verdict::Anomaly { to, changes, .. } = &verdict {
            diesel::update(payments::table.find(&p.out_order_no))
                .set((
                    payments::state.eq(*to),
                    changes.platform_order_id.as_ref().map(|v| payments::platform_order_id.eq(v)),
                    changes.payer_id.as_ref().map(|v| payments::payer_id.eq(v)),
                    changes.amount_fen.map(|v| payments::amount_fen.eq(v)),
                    changes.transaction_id.as_ref().map(|v| payments::transaction_id.eq(v)),
                    payments::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        if let (Verdict::RefundEnded, Reported::Refund { out_refund_no, refund_id, succeeded, status }) =
            (&verdict, &event.reported)
        {
            let how = match (succeeded, refund_id) {
                (true, Some(id)) => Some(super::refunds::Ended::Succeeded { refund_id: id.clone() }),
                // Succeeded, but without its number: the refund consumer's query records it.
                (true, None) => None,
                (false, _) => Some(super::refunds::Ended::Failed { reason: format!("the platform says {status}") }),
            };
            if let Some(how) = how {
                super::refunds::ended(conn, out_refund_no, &how, now)?;
            }
        }
        if verdict == Verdict::ReleaseNeeded {
            Release { out_order_no: p.out_order_no.clone() }.enqueue(conn)?;
        }
        if let Verdict::Anomaly { reason, .. } = &verdict {
            let spec = crate::domain::alert::payment_anomaly(event.channel.as_str(), &p.out_order_no, reason);
            super::alerts::raise(conn, &spec, 1, now)?;
        }
        let order = move_order(conn, &p.out_order_no, &verdict, open_check, now)?;
        let payment = find(conn, &p.out_order_no)?.map(Box::new);
        Ok(Applied::Stored { verdict, payment, order })
    })
}

/// What a payment's new state does to its order: authorised → the door opens; paid → `paid`.
/// A payment reported paid for an order whose charge had failed is not taken on the callback's
/// word alone: the capture runs again, which asks the platform first and keeps its answer.
fn move_order(
    conn: &mut AnyConnection,
    out_order_no: &str,
    verdict: &Verdict,
    open_check: chrono::Duration,
    now: NaiveDateTime,
) -> DbResult<Option<Box<super::models::Order>>> {
    let to = match verdict {
        Verdict::Apply { to, .. } | Verdict::Anomaly { to, .. } => *to,
        _ => return Ok(None),
    };
    let Some(order) = super::orders::find_by_out_order_no(conn, out_order_no)? else { return Ok(None) };
    let moved = match to {
        PaymentState::Authorized => super::orders::authorize(conn, order.id, open_check, now)?,
        PaymentState::Paid => {
            if order.status == crate::domain::order::OrderStatus::PaymentFailed {
                Capture { order_id: order.id, round: 0 }.enqueue(conn)?;
                return Ok(None);
            }
            let amount = find(conn, out_order_no)?.and_then(|p| p.amount_fen).unwrap_or(0);
            super::orders::paid(conn, order.id, amount, now)?
        }
        _ => return Ok(None),
    };
    Ok(moved.moved().then(|| Box::new(moved.order().clone())))
}

/// Move a payment from one of `from` to `to` (Heft's own moves: capture sent, cancelled),
/// recording the trade number a capture used. False when it was in no state of `from` (a
/// callback moved it first): the caller must look again rather than overwrite.
pub fn set_state(
    conn: &mut AnyConnection,
    out_order_no: &str,
    from: &[PaymentState],
    to: PaymentState,
    out_trade_no: Option<&str>,
    now: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(payments::table.find(out_order_no).filter(payments::state.eq_any(from.to_vec())))
        .set((payments::state.eq(to), out_trade_no.map(|v| payments::out_trade_no.eq(v)), payments::updated_at.eq(now)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Callbacks about one payment, oldest first.
pub fn events(conn: &mut AnyConnection, out_order_no: &str) -> DbResult<Vec<PaymentEvent>> {
    Ok(payment_events::table
        .filter(payment_events::out_order_no.eq(out_order_no))
        .order(payment_events::id.asc())
        .select(PaymentEvent::as_select())
        .load(conn)?)
}

/// The platform says the money moved: record it (from any state before `paid`), as a paid
/// callback would. False when it was already paid or cancelled.
pub fn record_paid(
    conn: &mut AnyConnection,
    out_order_no: &str,
    amount_fen: i64,
    transaction_id: &str,
    now: NaiveDateTime,
) -> DbResult<bool> {
    let open = [PaymentState::Created, PaymentState::Authorized, PaymentState::Capturing];
    let n = diesel::update(payments::table.find(out_order_no).filter(payments::state.eq_any(open)))
        .set((
            payments::state.eq(PaymentState::Paid),
            payments::amount_fen.eq(Some(amount_fen)),
            payments::transaction_id.eq(Some(transaction_id)),
            payments::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// The platform's own id for a pre-authorisation (WeChat `order_id`), known once it is created.
pub fn set_platform_order_id(conn: &mut AnyConnection, out_order_no: &str, id: &str) -> DbResult<()> {
    diesel::update(payments::table.find(out_order_no).filter(payments::platform_order_id.is_null()))
        .set(payments::platform_order_id.eq(id))
        .execute(conn)?;
    Ok(())
}
