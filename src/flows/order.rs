//! Moving an order, inside a flow's transaction: lock it, ask the status machine
//! (`domain::order::next`), write only when it says so, with what the move carries. Events arrive
//! at least once, late, and from several places (callbacks, queries, timers, the cabinet); a
//! repeat changes nothing.

use chrono::NaiveDateTime;

use super::{Effects, OrderMoved, sessions};
use crate::db::models::Order;
use crate::db::orders::{self, OrderChanges};
use crate::db::{AnyConnection, DbError, DbResult, payments, users};
use crate::domain::live::Change;
use crate::domain::order::{self, OrderEvent, OrderStatus, Stay};
use crate::domain::payment::{self as pay_rules, PaymentState};
use crate::domain::session::Outcome;
use crate::domain::texts::{self, NoticeCode};
use crate::domain::units::Fen;
use crate::mq::topics::{OpenCheck, Payload, Release};

/// What a move did.
#[derive(Debug, Clone)]
pub enum Moved {
    /// The order moved; the row after it.
    To(Box<Order>),
    /// Nothing to do (a repeat, or overtaken), or refused: the order as it is, and why.
    Stayed(Box<Order>, Stay),
}

impl Moved {
    pub fn order(&self) -> &Order {
        match self {
            Moved::To(o) | Moved::Stayed(o, _) => o,
        }
    }

    pub fn moved(&self) -> bool {
        matches!(self, Moved::To(_))
    }

    /// What the order's cabinet must hear of this move: an authorised order opens its door, a
    /// cancelled one lets the cabinet go (both enqueued a message: the relay is woken too). Any
    /// move is news for the live view.
    pub fn effects(&self) -> Effects {
        match self {
            Moved::To(o) if matches!(o.status, OrderStatus::Authorized | OrderStatus::Cancelled) => Effects::none()
                .order_moved(OrderMoved { sn: o.sn.clone(), order_id: o.id, status: o.status })
                .changed(Change::Order { id: o.id }),
            Moved::To(o) => Effects::none().changed(Change::Order { id: o.id }),
            Moved::Stayed(..) => Effects::none(),
        }
    }
}

/// Apply `event` to order `id` inside the caller's transaction; `extra` writes what the move
/// carries (timestamps, weights, lines, messages) when it happens, given the order before it and
/// the status it moved to.
pub fn apply(
    conn: &mut AnyConnection,
    id: i64,
    event: OrderEvent,
    now: NaiveDateTime,
    extra: impl FnOnce(&mut AnyConnection, &Order, OrderStatus) -> DbResult<()>,
) -> DbResult<Moved> {
    let current = orders::lock_existing(conn, id)?;
    match order::next(current.status, &event) {
        Err(stay) => Ok(Moved::Stayed(Box::new(current), stay)),
        Ok(to) => {
            let finished = to.is_final().then_some(Some(now));
            orders::update(
                conn,
                id,
                &OrderChanges { status: Some(to), finished_at: finished, ..Default::default() },
                now,
            )?;
            extra(conn, &current, to)?;
            Ok(Moved::To(Box::new(orders::existing(conn, id)?)))
        }
    }
}

/// When an authorisation opens its door: learnt within `window` of the scan, and then checked on
/// `check` later (`orders.open_window_s`, `orders.open_check_s`).
#[derive(Debug, Clone, Copy)]
pub struct OpenTimes {
    pub window: chrono::Duration,
    pub check: chrono::Duration,
}

impl OpenTimes {
    pub fn of(o: &crate::config::OrdersConfig) -> OpenTimes {
        OpenTimes { window: super::secs(o.open_window_s), check: super::secs(o.open_check_s) }
    }
}

/// The platform confirmed the pre-authorisation: `authorized`, and `door.open_check` scheduled
/// (the backstop if the cabinet never reports the door open). A confirmation learnt too long
/// after the scan opens nothing: the order is cancelled, the hold released, and a notice says why.
pub fn authorize(conn: &mut AnyConnection, id: i64, times: OpenTimes, now: NaiveDateTime) -> DbResult<Moved> {
    let current = orders::lock_existing(conn, id)?;
    if current.status == OrderStatus::Created && !order::opens_the_door(current.created_at, now, times.window) {
        let moved = cancel(conn, id, OrderEvent::AuthorisedTooLate, "authorised_too_late", now)?;
        add_notice(conn, id, NoticeCode::AuthorisedTooLate, texts::AUTHORISED_TOO_LATE, now)?;
        return Ok(match moved {
            Moved::To(_) => Moved::To(Box::new(orders::existing(conn, id)?)),
            stayed => stayed,
        });
    }
    let open_check = times.check;
    apply(conn, id, OrderEvent::Authorized, now, |conn, _, _| {
        orders::update(conn, id, &OrderChanges { authorized_at: Some(Some(now)), ..Default::default() }, now)?;
        OpenCheck { order_id: id, attempt: 1 }.enqueue_at(conn, Some(now + open_check))?;
        Ok(())
    })
}

/// The door opened (recorded with the weights it started from, when known).
pub fn door_opened(conn: &mut AnyConnection, id: i64, before_g: Option<&str>, now: NaiveDateTime) -> DbResult<Moved> {
    apply(conn, id, OrderEvent::DoorOpened, now, |conn, _, _| {
        let changes = OrderChanges {
            opened_at: Some(Some(now)),
            before_g: before_g.map(|b| Some(b.to_string())),
            ..Default::default()
        };
        orders::update(conn, id, &changes, now)
    })
}

/// The door closed: `settling`.
pub fn door_closed(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> DbResult<Moved> {
    apply(conn, id, OrderEvent::DoorClosed, now, |conn, _, _| {
        orders::update(conn, id, &OrderChanges { closed_at: Some(Some(now)), ..Default::default() }, now)
    })
}

/// End an order before the door opened (`AuthTimeout`, `DoorNeverOpened`, `ShopperCancelled`, or
/// the platform refusing the pre-authorisation): `cancelled`, the payment `cancelled`, the
/// session closed, and `payment.release` to give back anything the platform holds.
pub fn cancel(
    conn: &mut AnyConnection,
    id: i64,
    event: OrderEvent,
    reason: &str,
    now: NaiveDateTime,
) -> DbResult<Moved> {
    apply(conn, id, event, now, |conn, o, _| {
        orders::update(
            conn,
            id,
            &OrderChanges { cancel_reason: Some(Some(reason.into())), ..Default::default() },
            now,
        )?;
        let from = [PaymentState::Created, PaymentState::Authorized];
        payments::set_state(conn, &o.out_order_no, &from, PaymentState::Cancelled, None, now)?;
        if let Some(s) = o.session_id {
            let detail = serde_json::json!({ "order_id": id, "reason": reason }).to_string();
            sessions::close_in(conn, s, Outcome::Cancelled, Some(&detail), now)?;
        }
        Release::new(&o.out_order_no).enqueue(conn)?;
        Ok(())
    })
}

/// The charge went through: `paid`, with what the platform says was paid. A debt the order left
/// on the account (a failed charge before) is taken off again; the part over the cap stays owed.
pub fn paid(conn: &mut AnyConnection, id: i64, amount_fen: Fen, now: NaiveDateTime) -> DbResult<Moved> {
    apply(conn, id, OrderEvent::Paid, now, |conn, o, _| {
        let debt = pay_rules::paid_debt(o.debt_fen, o.total_fen.unwrap_or_default(), o.cap_fen);
        let changes = OrderChanges {
            paid_fen: Some(Some(amount_fen)),
            debt_fen: Some(debt.order_debt_fen),
            ..Default::default()
        };
        orders::update(conn, id, &changes, now)?;
        // The basket as paid, for the day's settlement: a later correction replaces the lines.
        orders::keep_charged_lines(conn, id)?;
        if debt.cleared_fen.is_positive() {
            users::add_debt(conn, o.user_id, o.id, -debt.cleared_fen, now)?;
        }
        Ok(())
    })
}

/// The platform refused the charge: `payment_failed`, and the amount is debt on the order and the
/// account (the shopper cannot shop again before it is paid). The caller schedules what comes next.
pub fn payment_failed(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> DbResult<Moved> {
    apply(conn, id, OrderEvent::PaymentFailed, now, |conn, o, _| {
        let owed = pay_rules::charge_fen(o.total_fen.unwrap_or_default(), o.cap_fen);
        orders::update(conn, id, &OrderChanges { debt_fen: Some(o.debt_fen + owed), ..Default::default() }, now)?;
        users::add_debt(conn, o.user_id, o.id, owed, now)
    })
}

/// A notice on an order, once per code (a second one of the same code is dropped).
pub fn add_notice(
    conn: &mut AnyConnection,
    id: i64,
    code: NoticeCode,
    message: &str,
    now: NaiveDateTime,
) -> DbResult<()> {
    let Some(o) = orders::lock(conn, id)? else { return Ok(()) };
    let mut notices: Vec<texts::Notice> = serde_json::from_str(&o.notices).unwrap_or_default();
    if notices.iter().any(|n| n.code == code) {
        return Ok(());
    }
    notices.push(texts::Notice { code, message: message.into(), at: now });
    let text = serde_json::to_string(&notices).map_err(|e| DbError::Corrupt(e.to_string()))?;
    orders::update(conn, id, &OrderChanges { notices: Some(text), ..Default::default() }, now)
}

/// A basket over the cap: the excess becomes debt on the order and the account, with a notice.
pub fn owe_excess(conn: &mut AnyConnection, o: &Order, total_fen: Fen, now: NaiveDateTime) -> DbResult<()> {
    let excess = pay_rules::excess_fen(total_fen, o.cap_fen);
    if excess == Fen::ZERO {
        return Ok(());
    }
    orders::update(conn, o.id, &OrderChanges { debt_fen: Some(excess), ..Default::default() }, now)?;
    users::add_debt(conn, o.user_id, o.id, excess, now)?;
    add_notice(conn, o.id, NoticeCode::OverCapDebt, &texts::over_cap_debt(excess), now)
}

/// `fen` more owed on order `id` (the stocktake found units its settlement missed): added to the
/// order's debt and the shopper's account, with a notice. What was added; nothing when the order
/// is gone.
pub fn owe_more(
    conn: &mut AnyConnection,
    id: i64,
    fen: Fen,
    code: NoticeCode,
    message: &str,
    now: NaiveDateTime,
) -> DbResult<Fen> {
    let Some(o) = orders::lock(conn, id)? else { return Ok(Fen::ZERO) };
    orders::update(conn, id, &OrderChanges { debt_fen: Some(Fen(o.debt_fen.0 + fen.0)), ..Default::default() }, now)?;
    users::add_debt(conn, o.user_id, id, fen, now)?;
    add_notice(conn, id, code, message, now)?;
    Ok(fen)
}

/// The money of a fixed basket moves: `payment.capture`, or for nothing taken (`no_purchase`) the
/// pre-authorisation cancelled and `payment.release`.
pub fn charge_or_release(conn: &mut AnyConnection, o: &Order, to: OrderStatus, now: NaiveDateTime) -> DbResult<()> {
    if to == OrderStatus::NoPurchase {
        payments::set_state(conn, &o.out_order_no, &[PaymentState::Authorized], PaymentState::Cancelled, None, now)?;
        Release::new(&o.out_order_no).enqueue(conn)?;
    } else {
        crate::mq::topics::Capture { order_id: o.id, round: 0 }.enqueue(conn)?;
    }
    Ok(())
}
