//! Pre-authorisations and the callbacks the platforms sent about them, as stored. What a callback
//! does is decided in `domain::payment` and applied by `flows::callbacks`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewPaymentEvent, Payment, PaymentEvent};
use super::schema::{payment_events, payments};
use super::{AnyConnection, DbError, DbResult, write_tx};
use crate::domain::payment::{Changes, Channel, PaymentState};
use crate::domain::units::Fen;

pub fn create(conn: &mut AnyConnection, row: &Payment) -> DbResult<()> {
    diesel::insert_into(payments::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, out_order_no: &str) -> DbResult<Option<Payment>> {
    Ok(payments::table.find(out_order_no).select(Payment::as_select()).first(conn).optional()?)
}

/// The payment a callback is about: Alipay trade notifies name the trade (`out_trade_no`), the
/// rest name the pre-authorisation. Locked for the rest of the transaction on PostgreSQL (SQLite
/// has one writer), so two copies of a callback cannot both apply.
pub fn find_for_update(conn: &mut AnyConnection, channel: Channel, no: &str) -> DbResult<Option<Payment>> {
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

/// Whether this platform event was stored before.
pub fn event_seen(conn: &mut AnyConnection, channel: Channel, event_id: &str) -> DbResult<bool> {
    let n: i64 = payment_events::table
        .filter(payment_events::channel.eq(channel))
        .filter(payment_events::event_id.eq(event_id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Store a callback, in a savepoint: a copy stored by a concurrent request since the caller
/// looked is a unique violation the caller can tell apart (`DbError::is_unique_violation`).
pub fn insert_event(conn: &mut AnyConnection, event: &NewPaymentEvent<'_>) -> DbResult<()> {
    write_tx(conn, |c| diesel::insert_into(payment_events::table).values(event).execute(c).map_err(DbError::from))?;
    Ok(())
}

/// Move a payment to `to` with what a callback reported (the fields `changes` sets).
pub fn apply(
    conn: &mut AnyConnection,
    out_order_no: &str,
    to: PaymentState,
    changes: &Changes,
    now: NaiveDateTime,
) -> DbResult<()> {
    diesel::update(payments::table.find(out_order_no))
        .set((
            payments::state.eq(to),
            changes.platform_order_id.as_ref().map(|v| payments::platform_order_id.eq(v)),
            changes.payer_id.as_ref().map(|v| payments::payer_id.eq(v)),
            changes.amount_fen.map(|v| payments::amount_fen.eq(v)),
            changes.transaction_id.as_ref().map(|v| payments::transaction_id.eq(v)),
            payments::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
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
    amount_fen: Fen,
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

/// The platform's ids for a pre-authorisation and its payer, where known (a query found them).
pub fn set_ids(
    conn: &mut AnyConnection,
    out_order_no: &str,
    platform_order_id: Option<&str>,
    payer_id: Option<&str>,
) -> DbResult<()> {
    if platform_order_id.is_none() && payer_id.is_none() {
        return Ok(());
    }
    diesel::update(payments::table.find(out_order_no))
        .set((platform_order_id.map(|v| payments::platform_order_id.eq(v)), payer_id.map(|v| payments::payer_id.eq(v))))
        .execute(conn)?;
    Ok(())
}

/// The platform's own id for a pre-authorisation (WeChat `order_id`), known once it is created.
pub fn set_platform_order_id(conn: &mut AnyConnection, out_order_no: &str, id: &str) -> DbResult<()> {
    diesel::update(payments::table.find(out_order_no).filter(payments::platform_order_id.is_null()))
        .set(payments::platform_order_id.eq(id))
        .execute(conn)?;
    Ok(())
}
