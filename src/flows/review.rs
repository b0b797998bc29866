//! The review queue: orders a person must look at — the settlement could not read the weights
//! (`flows::settle` opens those cases), or the shopper appeals — and what the person decides,
//! applied in one transaction with the case's resolution (`domain::review` decides what a
//! decision does, and prices the lines).

use chrono::NaiveDateTime;

use super::order;
use super::{Effects, refund, stock};
use crate::db::models::Order;
use crate::db::orders::{self, OrderChanges};
use crate::db::stock::LedgerRefs;
use crate::db::{self, AnyConnection, Db, DbError, layout, refunds, reviews, users, write_tx};
use crate::domain::live::Change;
use crate::domain::order::{OrderEvent, OrderStatus, rebasket};
use crate::domain::review::{self, CaseKind, CaseStatus, Decision, LaneOffer, Resolution, ReviewRefusal};
use crate::domain::settlement::Line;
use crate::domain::stock::{StockReason, basket_changes, correction_changes};
use crate::domain::texts;
use crate::domain::units::Fen;

/// Why a case was not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ReviewFail {
    #[error("review case not found")]
    NotFound,
    #[error("the case is already resolved")]
    Resolved,
    #[error("{0}")]
    Refused(#[from] ReviewRefusal),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ReviewFail {
    fn from(e: diesel::result::Error) -> Self {
        ReviewFail::Db(e.into())
    }
}

/// Why a shopper's appeal was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AppealFail {
    /// Nothing was settled to appeal (the order is at the cabinet, or was cancelled).
    #[error("the order is {0}: nothing was settled to appeal")]
    NotSettled(OrderStatus),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The shopper appeals a settled order: a case for a person, with what they say (`reasons`,
/// JSON). Its id (the open case's, when one is open already).
pub async fn appeal(db: &Db, order: &Order, reasons: String, by: String) -> Result<i64, AppealFail> {
    if OrderStatus::AT_CABINET.contains(&order.status) || order.status == OrderStatus::Cancelled {
        return Err(AppealFail::NotSettled(order.status));
    }
    let id = order.id;
    Ok(db.write(move |c| reviews::open_case(c, id, CaseKind::Appeal, &reasons, &by, db::now())).await?)
}

/// A person's decision on a case.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    /// Lane → units: what the order should have charged.
    pub lines: Vec<(String, i64)>,
    pub note: String,
    pub by: String,
}

/// Resolve a case, in one transaction with its resolution:
/// - `charge` (an order in `review`): the lines the person set, priced as the lanes' products are
///   now; stock and ledger follow, and the charge (or the release, for no lines) goes out.
/// - `refund` (a `paid` order): the lines the person set replace the charged ones; stock and
///   ledger follow the difference; what was paid beyond the new total is refunded
///   (`payment.refund`), what it adds becomes debt.
/// - `dismiss` (an appeal): nothing changes.
pub async fn resolve(db: &Db, case_id: i64, decided: Decided) -> Result<(Order, Effects), ReviewFail> {
    let order = db.write(move |c| resolve_in(c, case_id, &decided, db::now())).await?;
    let effects = Effects::order_changed(order.id)
        .changed(Change::Review { id: case_id })
        .changed(Change::Cabinet { sn: order.sn.clone() });
    Ok((order, effects))
}

fn resolve_in(conn: &mut AnyConnection, case_id: i64, d: &Decided, now: NaiveDateTime) -> Result<Order, ReviewFail> {
    write_tx(conn, |conn| {
        let case = reviews::find_case(conn, case_id)?.ok_or(ReviewFail::NotFound)?;
        if case.status != CaseStatus::Open {
            return Err(ReviewFail::Resolved);
        }
        let order = orders::lock(conn, case.order_id)?.ok_or(ReviewFail::NotFound)?;
        match review::resolution(d.decision, order.status)? {
            Resolution::ChargeLines => charge(conn, &order, &d.lines, now)?,
            Resolution::CorrectPaid => correct_paid(conn, &order, case_id, d, now)?,
            Resolution::NothingToChange => {}
        }
        let resolution = serde_json::json!({ "decision": d.decision, "lines": d.lines, "note": d.note }).to_string();
        reviews::resolve(conn, case_id, &resolution, &d.by, now)?;
        orders::find(conn, order.id)?.ok_or(ReviewFail::NotFound)
    })
}

/// The lines a person set on the order's cabinet, priced (`domain::review::priced_lines`).
fn priced(
    conn: &mut AnyConnection,
    order: &Order,
    set: &[(String, i64)],
    charged: &[Line],
) -> Result<Vec<Line>, ReviewFail> {
    let offers: Vec<LaneOffer> = layout::lanes_with_products(conn, &order.sn)?
        .into_iter()
        .map(|(lane, product)| LaneOffer {
            lane: lane.code,
            capacity: i64::from(lane.capacity),
            product: lane.product_id.zip(product).map(|(id, (_, _, price, name))| (id, name, price)),
        })
        .collect();
    Ok(review::priced_lines(&order.sn, set, &offers, charged)?)
}

/// An order in review gets the lines the person set and goes to `paying` (or `no_purchase`).
fn charge(
    conn: &mut AnyConnection,
    order: &Order,
    set: &[(String, i64)],
    now: NaiveDateTime,
) -> Result<(), ReviewFail> {
    let lines = priced(conn, order, set, &[])?;
    let empty = lines.is_empty();
    let total: Fen = lines.iter().map(|l| l.amount_fen).sum();
    order::apply(conn, order.id, OrderEvent::Reviewed { empty }, now, |conn, o, to| {
        orders::write_lines(conn, o.id, &lines)?;
        orders::update(conn, o.id, &OrderChanges { total_fen: Some(Some(total)), ..Default::default() }, now)?;
        order::owe_excess(conn, o, total, now)?;
        let refs = LedgerRefs { order_id: Some(o.id), session_id: o.session_id, task_id: None };
        stock::change_in(conn, &o.sn, &basket_changes(&lines, &[], StockReason::Review), refs, now)?;
        order::charge_or_release(conn, o, to, now)
    })?;
    Ok(())
}

/// A paid order's basket, corrected: the new lines and total, stock back on (or off) the lanes by
/// the difference, and the money squared — refunded beyond the new total, owed short of it.
fn correct_paid(
    conn: &mut AnyConnection,
    order: &Order,
    case_id: i64,
    d: &Decided,
    now: NaiveDateTime,
) -> Result<(), ReviewFail> {
    let charged: Vec<Line> = orders::lines(conn, order.id)?.iter().map(Line::from).collect();
    let lines = priced(conn, order, &d.lines, &charged)?;
    let total: Fen = lines.iter().map(|l| l.amount_fen).sum();
    // What the shopper has paid and keeps paid: the charge, less refunds already under way.
    let kept = order.paid_fen.unwrap_or_default() - refunds::committed_fen(conn, order.id)?;
    let money = rebasket(kept, total);
    orders::write_lines(conn, order.id, &lines)?;
    let changes = OrderChanges { total_fen: Some(Some(total)), debt_fen: Some(money.debt_fen), ..Default::default() };
    orders::update(conn, order.id, &changes, now)?;
    users::add_debt(conn, order.user_id, order.id, money.debt_fen - order.debt_fen, now)?;
    let refs = LedgerRefs { order_id: Some(order.id), session_id: order.session_id, task_id: None };
    stock::change_in(conn, &order.sn, &correction_changes(&charged, &lines), refs, now)?;
    if money.refund_fen.is_positive() {
        let reason = if d.note.trim().is_empty() { texts::REVIEW_REFUND_REASON } else { d.note.as_str() };
        refund::request_in(conn, order, Some(case_id), money.refund_fen, reason, &d.by, now)?;
    }
    Ok(())
}
