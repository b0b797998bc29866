//! Orders: the scan, each move of the status machine (`domain::order::next`), the settlement
//! and the charge, each in one transaction with what it causes (the session's end, the payment's
//! state, stock and ledger rows, outbox messages).
//!
//! Every move reads the order (locked with `FOR UPDATE` on PostgreSQL; SQLite has one writer),
//! asks the pure status machine, and writes only when it says so: events arrive at least once,
//! late, and from several places (callbacks, queries, timers, the cabinet), and a repeat changes
//! nothing.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::models::{NewLedgerRow, NewOrder, NewSession, Order, OrderLine, Payment, Session};
use super::schema::{accounts, lanes, order_lines, orders, payments, stock_ledger};
use super::{AnyConnection, DbError, DbResult, sessions, write_tx};
use crate::domain::order::{self, OrderEvent, OrderStatus, ScanFacts, ScanRefusal, Stay};
use crate::domain::payment::PaymentState;
use crate::domain::session::Outcome;
use crate::domain::settlement::{Line, Move};
use crate::domain::stock::StockReason;
use crate::mq::topics::{AuthTimeout, Capture, OpenCheck, Payload, Release, RestockCheck};

/// A notice on an order: something the shopper is told beside the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub code: String,
    pub message: String,
    pub at: NaiveDateTime,
}

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
pub(super) fn lock(conn: &mut AnyConnection, id: i64) -> DbResult<Option<Order>> {
    Ok(match conn {
        AnyConnection::Postgresql(c) => {
            let no: Option<String> = orders::table.find(id).select(orders::out_order_no).first(c).optional()?;
            if let Some(no) = no {
                payments::table.find(no).select(payments::state).for_update().first::<String>(c).optional()?;
            }
            orders::table.find(id).select(Order::as_select()).for_update().first(c).optional()?
        }
        AnyConnection::Sqlite(c) => orders::table.find(id).select(Order::as_select()).first(c).optional()?,
    })
}

pub fn lines(conn: &mut AnyConnection, order_id: i64) -> DbResult<Vec<OrderLine>> {
    Ok(order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .order(order_lines::lane.asc())
        .select(OrderLine::as_select())
        .load(conn)?)
}

/// A shopper's orders, newest first, before `before_id` when given.
pub fn for_user(conn: &mut AnyConnection, user_id: i64, before_id: Option<i64>, limit: i64) -> DbResult<Vec<Order>> {
    let mut q = orders::table.filter(orders::user_id.eq(user_id)).into_boxed();
    if let Some(b) = before_id {
        q = q.filter(orders::id.lt(b));
    }
    Ok(q.order(orders::id.desc()).limit(limit).select(Order::as_select()).load(conn)?)
}

/// What the cabinet's actor knows at a scan; the rest is read in the transaction.
#[derive(Debug, Clone)]
pub struct ScanInput {
    pub user_id: i64,
    pub channel: crate::pay::Channel,
    pub payer_id: String,
    pub door: u32,
    pub door_exists: bool,
    pub cabinet_status: crate::domain::cabinet::CabinetStatus,
    pub liveness: crate::domain::liveness::Liveness,
    pub cabinet_busy: bool,
    pub cap_fen: i64,
    pub session: NewSession,
    pub auth_timeout: Duration,
}

/// A scan that went through: the order `created`, its payment `created`, the session that holds
/// the cabinet, and `order.auth_timeout` scheduled — all in one transaction.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub order: Order,
    pub session: Session,
}

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanFail {
    #[error("{0}")]
    Refused(ScanRefusal),
    /// Another node's session holds the cabinet.
    #[error("the cabinet is held by another session")]
    Busy(Box<Session>),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ScanFail {
    fn from(e: diesel::result::Error) -> Self {
        ScanFail::Db(e.into())
    }
}

/// A new pre-authorisation number: `HO` + UTC time + 8 random hex digits (24 characters of
/// `[0-9A-Z]`, within both platforms' 32).
pub fn new_out_order_no(now: NaiveDateTime) -> String {
    format!("HO{}{:08X}", now.format("%Y%m%d%H%M%S"), rand::random::<u32>())
}

/// The trade number a capture uses (Alipay `trade.pay`); the same on every retry.
pub fn out_trade_no(out_order_no: &str) -> String {
    format!("{out_order_no}T")
}

pub fn scan(conn: &mut AnyConnection, input: &ScanInput, now: NaiveDateTime) -> Result<Scanned, ScanFail> {
    write_tx(conn, |conn| {
        let account = accounts::table
            .find(input.user_id)
            .select(super::models::Account::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| DbError::Corrupt(format!("user {} has no account", input.user_id)))?;
        let open_order: i64 = orders::table
            .filter(orders::user_id.eq(input.user_id))
            .filter(orders::status.eq_any(OrderStatus::AT_CABINET))
            .count()
            .get_result(conn)?;
        let bound = match input.channel {
            crate::pay::Channel::Wechat => crate::domain::account::WECHAT_PAYSCORE,
            crate::pay::Channel::Alipay => crate::domain::account::ALIPAY_FUND_AUTH,
        };
        let facts = ScanFacts {
            blocked: account.blocked,
            debt_fen: account.debt_fen,
            channel_bound: crate::domain::account::channels(&account.channels).contains(&bound),
            open_order: open_order > 0,
            door_exists: input.door_exists,
            cabinet_status: input.cabinet_status,
            liveness: input.liveness,
            cabinet_busy: input.cabinet_busy,
        };
        order::check_scan(&facts).map_err(ScanFail::Refused)?;
        let session = match sessions::open(conn, &input.session)? {
            Ok(s) => s,
            Err(held) => return Err(ScanFail::Busy(Box::new(held))),
        };
        let no = new_out_order_no(now);
        super::payments::create(
            conn,
            &Payment {
                out_order_no: no.clone(),
                channel: input.channel,
                user_id: input.user_id,
                state: PaymentState::Created,
                cap_fen: input.cap_fen,
                amount_fen: None,
                platform_order_id: None,
                payer_id: Some(input.payer_id.clone()),
                out_trade_no: None,
                transaction_id: None,
                created_at: now,
                updated_at: now,
            },
        )?;
        let new = NewOrder {
            user_id: input.user_id,
            sn: input.session.sn.clone(),
            door: i32::try_from(input.door).unwrap_or(i32::MAX),
            channel: input.channel,
            status: OrderStatus::Created,
            out_order_no: no.clone(),
            session_id: Some(session.id),
            cap_fen: input.cap_fen,
            debt_fen: 0,
            notices: "[]".into(),
            created_at: now,
            updated_at: now,
        };
        // The partial unique index is the last word on "one open order": two scans by one
        // shopper at once on two cabinets both pass the count above.
        match write_tx(conn, |c| diesel::insert_into(orders::table).values(&new).execute(c)) {
            Ok(_) => {}
            Err(e) => {
                let e = DbError::from(e);
                return Err(if e.is_unique_violation() { ScanFail::Refused(ScanRefusal::OrderOpen) } else { e.into() });
            }
        }
        let order = find_by_out_order_no(conn, &no)?.ok_or_else(|| DbError::Corrupt(format!("order {no} vanished")))?;
        AuthTimeout { order_id: order.id }.enqueue_at(conn, Some(now + input.auth_timeout))?;
        Ok(Scanned { order, session })
    })
}

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
}

/// Apply `event` to order `id` inside the caller's transaction; `extra` writes what the move
/// carries (timestamps, weights) when it happens.
pub(super) fn apply(
    conn: &mut AnyConnection,
    id: i64,
    event: OrderEvent,
    now: NaiveDateTime,
    extra: impl FnOnce(&mut AnyConnection, &Order, OrderStatus) -> DbResult<()>,
) -> DbResult<Moved> {
    let current = lock(conn, id)?.ok_or_else(|| DbError::Corrupt(format!("order {id} not found")))?;
    let status = current.status;
    match order::next(status, &event) {
        Err(stay) => Ok(Moved::Stayed(Box::new(current), stay)),
        Ok(to) => {
            diesel::update(orders::table.find(id))
                .set((orders::status.eq(to), orders::updated_at.eq(now)))
                .execute(conn)?;
            if to.is_final() {
                diesel::update(orders::table.find(id)).set(orders::finished_at.eq(Some(now))).execute(conn)?;
            }
            extra(conn, &current, to)?;
            let after = find(conn, id)?.ok_or_else(|| DbError::Corrupt(format!("order {id} vanished")))?;
            Ok(Moved::To(Box::new(after)))
        }
    }
}

/// The platform confirmed the pre-authorisation: `authorized`, and `door.open_check` scheduled
/// (the backstop if the cabinet never reports the door open). Inside the caller's transaction.
pub fn authorize(conn: &mut AnyConnection, id: i64, open_check: Duration, now: NaiveDateTime) -> DbResult<Moved> {
    apply(conn, id, OrderEvent::Authorized, now, |conn, _, _| {
        diesel::update(orders::table.find(id)).set(orders::authorized_at.eq(Some(now))).execute(conn)?;
        OpenCheck { order_id: id, attempt: 1 }.enqueue_at(conn, Some(now + open_check))?;
        Ok(())
    })
}

/// A query found the pre-authorisation confirmed before its callback came: record it on the
/// payment as a callback would, and authorise the order.
pub fn authorize_from_query(
    conn: &mut AnyConnection,
    id: i64,
    platform_order_id: Option<&str>,
    payer_id: Option<&str>,
    open_check: Duration,
    now: NaiveDateTime,
) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        let o = lock(conn, id)?.ok_or_else(|| DbError::Corrupt(format!("order {id} not found")))?;
        let moved = super::payments::set_state(
            conn,
            &o.out_order_no,
            &[PaymentState::Created],
            PaymentState::Authorized,
            None,
            now,
        )?;
        if moved && (platform_order_id.is_some() || payer_id.is_some()) {
            diesel::update(payments::table.find(&o.out_order_no))
                .set((
                    platform_order_id.map(|v| payments::platform_order_id.eq(v)),
                    payer_id.map(|v| payments::payer_id.eq(v)),
                ))
                .execute(conn)?;
        }
        authorize(conn, id, open_check, now)
    })
}

/// The cabinet reported the door open: `door_open`, with the weights it started from.
pub fn door_opened(conn: &mut AnyConnection, id: i64, before_g: &str, now: NaiveDateTime) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        apply(conn, id, OrderEvent::DoorOpened, now, |conn, _, _| {
            diesel::update(orders::table.find(id))
                .set((orders::opened_at.eq(Some(now)), orders::before_g.eq(Some(before_g))))
                .execute(conn)?;
            Ok(())
        })
    })
}

/// The cabinet reported the door closed: `settling`.
pub fn door_closed(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        apply(conn, id, OrderEvent::DoorClosed, now, |conn, _, _| {
            diesel::update(orders::table.find(id)).set(orders::closed_at.eq(Some(now))).execute(conn)?;
            Ok(())
        })
    })
}

/// Add a notice to an order (door open too long, basket over the cap, before-weights that
/// disagree with the last closed-door reading).
pub fn add_notice(conn: &mut AnyConnection, id: i64, code: &str, message: &str, now: NaiveDateTime) -> DbResult<()> {
    write_tx(conn, |conn| {
        let Some(o) = lock(conn, id)? else { return Ok(()) };
        let mut notices: Vec<Notice> = serde_json::from_str(&o.notices).unwrap_or_default();
        if notices.iter().any(|n| n.code == code) {
            return Ok(());
        }
        notices.push(Notice { code: code.into(), message: message.into(), at: now });
        let text = serde_json::to_string(&notices).map_err(|e| DbError::Corrupt(e.to_string()))?;
        diesel::update(orders::table.find(id)).set(orders::notices.eq(text)).execute(conn)?;
        Ok(())
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
    write_tx(conn, |conn| {
        apply(conn, id, event, now, |conn, o, _| {
            diesel::update(orders::table.find(id)).set(orders::cancel_reason.eq(Some(reason))).execute(conn)?;
            super::payments::set_state(
                conn,
                &o.out_order_no,
                &[PaymentState::Created, PaymentState::Authorized],
                PaymentState::Cancelled,
                None,
                now,
            )?;
            if let Some(s) = o.session_id {
                let detail = serde_json::json!({ "order_id": id, "reason": reason }).to_string();
                sessions::close(conn, s, Outcome::Cancelled, Some(&detail), now)?;
            }
            Release { out_order_no: o.out_order_no.clone() }.enqueue(conn)?;
            Ok(())
        })
    })
}

/// One lane's stock change in a settlement (or a restock, a review): `delta` units, with why.
#[derive(Debug, Clone)]
pub struct StockChange {
    pub lane: String,
    pub product_id: Option<i64>,
    pub delta: i64,
    pub reason: StockReason,
}

/// Change book stock and write the ledger rows, inside the caller's transaction; lanes a change
/// took to their threshold or under get `restock.check` in the same transaction.
pub fn change_stock(
    conn: &mut AnyConnection,
    sn: &str,
    changes: &[StockChange],
    refs: (Option<i64>, Option<i64>, Option<i64>),
    now: NaiveDateTime,
) -> DbResult<()> {
    let (order_id, session_id, task_id) = refs;
    let mut low = Vec::new();
    for ch in changes.iter().filter(|c| c.delta != 0) {
        let lane = lanes::table
            .find((sn, &ch.lane))
            .select(super::models::Lane::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| DbError::Corrupt(format!("lane {sn}/{} not found", ch.lane)))?;
        let delta = i32::try_from(ch.delta).map_err(|_| DbError::Corrupt(format!("stock change {}", ch.delta)))?;
        // Added in the database, not written from what was read: two changes of one lane in
        // concurrent transactions (PostgreSQL) must both count.
        diesel::update(lanes::table.find((sn, &ch.lane))).set(lanes::stock.eq(lanes::stock + delta)).execute(conn)?;
        let after: i32 = lanes::table.find((sn, &ch.lane)).select(lanes::stock).first(conn)?;
        let before = after - delta;
        diesel::insert_into(stock_ledger::table)
            .values(NewLedgerRow {
                sn: sn.into(),
                lane: ch.lane.clone(),
                product_id: ch.product_id.or(lane.product_id),
                delta,
                stock_after: after,
                reason: ch.reason,
                order_id,
                session_id,
                task_id,
                created_at: now,
            })
            .execute(conn)?;
        if crate::domain::restock::crossed_threshold(i64::from(before), i64::from(after), i64::from(lane.threshold)) {
            low.push(ch.lane.clone());
        }
    }
    if !low.is_empty() {
        RestockCheck { sn: sn.to_string(), lanes: low }.enqueue(conn)?;
    }
    Ok(())
}

/// The stock changes of a settled basket: sold lines leave, moved units follow the shopper's hand.
pub fn basket_changes(lines: &[Line], moves: &[Move]) -> Vec<StockChange> {
    let mut out: Vec<StockChange> = lines
        .iter()
        .map(|l| StockChange {
            lane: l.lane.clone(),
            product_id: Some(l.product_id),
            delta: -l.qty,
            reason: StockReason::Sale,
        })
        .collect();
    for m in moves {
        out.push(StockChange {
            lane: m.from_lane.clone(),
            product_id: Some(m.product_id),
            delta: -m.qty,
            reason: StockReason::Move,
        });
        out.push(StockChange {
            lane: m.to_lane.clone(),
            product_id: Some(m.product_id),
            delta: m.qty,
            reason: StockReason::Move,
        });
    }
    out
}

/// What the settlement found.
#[derive(Debug, Clone)]
pub enum SettleInput {
    Settled { lines: Vec<Line>, moves: Vec<Move>, total_fen: i64 },
    Review { reasons: serde_json::Value },
}

/// The door closed and every lane settled (or did not): in one transaction, the lines and total,
/// `paying` (or `no_purchase`, or `review`), stock and ledger, the messages (`payment.capture`,
/// `payment.release` for an empty basket, `restock.check` for lanes that crossed their
/// threshold), and the session's end.
pub fn settle(
    conn: &mut AnyConnection,
    id: i64,
    input: &SettleInput,
    after_g: &str,
    now: NaiveDateTime,
) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        // The open and the close are recorded on their own writes; if one was lost, it is
        // recorded here (the cabinet did report both, or there would be nothing to settle).
        let status = find(conn, id)?.map(|o| o.status);
        if status == Some(OrderStatus::Authorized) {
            apply(conn, id, OrderEvent::DoorOpened, now, |conn, _, _| {
                diesel::update(orders::table.find(id)).set(orders::opened_at.eq(Some(now))).execute(conn)?;
                Ok(())
            })?;
        }
        if matches!(status, Some(OrderStatus::Authorized | OrderStatus::DoorOpen)) {
            apply(conn, id, OrderEvent::DoorClosed, now, |conn, _, _| {
                diesel::update(orders::table.find(id)).set(orders::closed_at.eq(Some(now))).execute(conn)?;
                Ok(())
            })?;
        }
        let event = match input {
            SettleInput::Settled { lines, .. } => OrderEvent::Settled { empty: lines.is_empty() },
            SettleInput::Review { .. } => OrderEvent::Ambiguous,
        };
        apply(conn, id, event, now, |conn, o, to| {
            diesel::update(orders::table.find(id))
                .set((orders::settled_at.eq(Some(now)), orders::after_g.eq(Some(after_g))))
                .execute(conn)?;
            match input {
                SettleInput::Settled { lines, moves, total_fen } => {
                    write_lines(conn, id, lines)?;
                    diesel::update(orders::table.find(id)).set(orders::total_fen.eq(Some(*total_fen))).execute(conn)?;
                    owe_excess(conn, o, *total_fen, now)?;
                    book_basket(conn, o, to, &basket_changes(lines, moves), now)?;
                }
                SettleInput::Review { reasons } => {
                    super::reviews::open_case(
                        conn,
                        id,
                        crate::domain::review::CaseKind::Weights,
                        reasons,
                        "system",
                        now,
                    )?;
                }
            }
            if let Some(s) = o.session_id {
                let detail = serde_json::json!({ "order_id": id, "status": to.as_str() }).to_string();
                sessions::close(conn, s, Outcome::Done, Some(&detail), now)?;
            }
            Ok(())
        })
    })
}

/// A basket is fixed (settled, or set by a person): stock and ledger follow it, lanes that fell
/// to their threshold get `restock.check`, and the money moves — `payment.capture`, or for
/// nothing taken the pre-authorisation cancelled and `payment.release`.
pub(super) fn book_basket(
    conn: &mut AnyConnection,
    o: &Order,
    to: OrderStatus,
    changes: &[StockChange],
    now: NaiveDateTime,
) -> DbResult<()> {
    change_stock(conn, &o.sn, changes, (Some(o.id), o.session_id, None), now)?;
    if to == OrderStatus::NoPurchase {
        let from = [PaymentState::Authorized];
        super::payments::set_state(conn, &o.out_order_no, &from, PaymentState::Cancelled, None, now)?;
        Release { out_order_no: o.out_order_no.clone() }.enqueue(conn)?;
    } else {
        Capture { order_id: o.id, round: 0 }.enqueue(conn)?;
    }
    Ok(())
}

pub(super) fn write_lines(conn: &mut AnyConnection, id: i64, lines: &[Line]) -> DbResult<()> {
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

/// The charge went through: `paid`, with what the platform says was paid. A debt the order left
/// on the account (a failed charge before) is taken off again.
pub fn paid(conn: &mut AnyConnection, id: i64, amount_fen: i64, now: NaiveDateTime) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        apply(conn, id, OrderEvent::Paid, now, |conn, o, _| {
            // What is still owed is the part over the cap; a failed charge's debt is paid now.
            let excess = excess_fen(o, o.total_fen.unwrap_or(0));
            diesel::update(orders::table.find(id))
                .set((orders::paid_fen.eq(Some(amount_fen)), orders::debt_fen.eq(excess)))
                .execute(conn)?;
            let cleared = o.debt_fen - excess;
            if cleared > 0 {
                add_debt(conn, o.user_id, -cleared, now)?;
            }
            Ok(())
        })
    })
}

/// What a basket of `total_fen` comes to over the order's pre-authorisation: the platform will
/// not charge more than it holds, so the excess is owed.
pub fn excess_fen(o: &Order, total_fen: i64) -> i64 {
    (total_fen - o.cap_fen).max(0)
}

/// What the capture charges: the basket up to the cap.
pub fn charge_fen(o: &Order) -> i64 {
    o.total_fen.unwrap_or(0).min(o.cap_fen)
}

/// A basket over the cap: the excess becomes debt on the order and the account, with a notice.
pub(super) fn owe_excess(conn: &mut AnyConnection, o: &Order, total_fen: i64, now: NaiveDateTime) -> DbResult<()> {
    let excess = excess_fen(o, total_fen);
    if excess == 0 {
        return Ok(());
    }
    diesel::update(orders::table.find(o.id)).set(orders::debt_fen.eq(excess)).execute(conn)?;
    add_debt(conn, o.user_id, excess, now)?;
    let text = format!("所选商品超出授权额度，超出的 {} 分计为欠款", excess);
    add_notice(conn, o.id, "over_cap_debt", &text, now)
}

/// The platform refused the charge: `payment_failed`, and the amount is debt on the account
/// (the shopper cannot shop again before it is paid). The caller schedules what comes next.
pub fn payment_failed(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        apply(conn, id, OrderEvent::PaymentFailed, now, |conn, o, _| {
            let owed = charge_fen(o);
            diesel::update(orders::table.find(id)).set(orders::debt_fen.eq(o.debt_fen + owed)).execute(conn)?;
            add_debt(conn, o.user_id, owed, now)
        })
    })
}

pub(super) fn add_debt(conn: &mut AnyConnection, user_id: i64, fen: i64, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(accounts::table.find(user_id))
        .set((accounts::debt_fen.eq(accounts::debt_fen + fen), accounts::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// Orders of a cabinet whose session is the given one (a purchase session's order).
pub fn for_session(conn: &mut AnyConnection, session_id: i64) -> DbResult<Option<Order>> {
    Ok(orders::table.filter(orders::session_id.eq(session_id)).select(Order::as_select()).first(conn).optional()?)
}

/// The stock ledger of a cabinet, oldest first.
pub fn ledger(conn: &mut AnyConnection, sn: &str) -> DbResult<Vec<super::models::LedgerRow>> {
    Ok(stock_ledger::table
        .filter(stock_ledger::sn.eq(sn))
        .order(stock_ledger::id.asc())
        .select(super::models::LedgerRow::as_select())
        .load(conn)?)
}
