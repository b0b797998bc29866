//! Review cases: orders a person must look at — the settlement could not read the weights
//! (`weights`), or the shopper disputes what they were charged (`appeal`) — and what the person
//! decides, applied in one transaction with the case's resolution.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::models::{Order, OrderLine, ReviewCase};
use super::orders::{self, StockChange};
use super::schema::{lanes, orders as order_rows, products, review_cases};
use super::{AnyConnection, DbError, DbResult, refunds, write_tx};
use crate::domain::order::{OrderEvent, OrderStatus, rebasket};
use crate::domain::review::{CaseKind, CaseStatus};
use crate::domain::settlement::Line;
use crate::domain::stock::StockReason;

/// Open a review case on an order (one open case per order); its id, or the id of the case
/// already open.
pub fn open_case(
    conn: &mut AnyConnection,
    order_id: i64,
    kind: CaseKind,
    reasons: &serde_json::Value,
    by: &str,
    now: NaiveDateTime,
) -> DbResult<i64> {
    let reasons = reasons.to_string();
    let inserted = write_tx(conn, |c| {
        diesel::insert_into(review_cases::table)
            .values((
                review_cases::order_id.eq(order_id),
                review_cases::kind.eq(kind),
                review_cases::status.eq(CaseStatus::Open),
                review_cases::reasons.eq(&reasons),
                review_cases::opened_by.eq(by),
                review_cases::created_at.eq(now),
            ))
            .execute(c)
            .map_err(DbError::from)
    });
    match inserted {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => {}
        Err(e) => return Err(e),
    }
    Ok(review_cases::table
        .filter(review_cases::order_id.eq(order_id))
        .filter(review_cases::status.eq(CaseStatus::Open))
        .select(review_cases::id)
        .first(conn)?)
}

pub fn find_case(conn: &mut AnyConnection, id: i64) -> DbResult<Option<ReviewCase>> {
    Ok(review_cases::table.find(id).select(ReviewCase::as_select()).first(conn).optional()?)
}

/// Cases, oldest first.
pub fn cases(conn: &mut AnyConnection, status: Option<CaseStatus>, limit: i64) -> DbResult<Vec<ReviewCase>> {
    let mut q = review_cases::table.select(ReviewCase::as_select()).into_boxed();
    if let Some(s) = status {
        q = q.filter(review_cases::status.eq(s));
    }
    Ok(q.order(review_cases::id.asc()).limit(limit).load(conn)?)
}

/// What a person decided on a review case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Charge these lines (an order in review; none: release the pre-authorisation).
    Charge,
    /// These lines are what a paid order should have charged: what was paid beyond them goes
    /// back (a refund), what they add is owed.
    Refund,
    /// Nothing to change (an appeal found unfounded).
    Dismiss,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewFail {
    #[error("review case not found")]
    NotFound,
    #[error("the case is already resolved")]
    Resolved,
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ReviewFail {
    fn from(e: diesel::result::Error) -> Self {
        ReviewFail::Db(e.into())
    }
}

/// Resolve a case, in one transaction with its resolution:
/// - `charge` (an order in `review`): the lines the person set, priced as the lanes' products
///   are now; stock and ledger follow, and the charge (or the release, for no lines) goes out.
/// - `refund` (a `paid` order): the lines the person set replace the charged ones; stock and
///   ledger follow the difference; what was paid beyond the new total is refunded
///   (`payment.refund`), what it adds becomes debt.
/// - `dismiss` (an appeal): nothing changes.
pub fn resolve_case(
    conn: &mut AnyConnection,
    case_id: i64,
    decision: &Decision,
    set: &[(String, i64)],
    by: &str,
    note: &str,
    now: NaiveDateTime,
) -> Result<Order, ReviewFail> {
    write_tx(conn, |conn| {
        let case = find_case(conn, case_id)?.ok_or(ReviewFail::NotFound)?;
        if case.status != CaseStatus::Open {
            return Err(ReviewFail::Resolved);
        }
        let order = orders::lock(conn, case.order_id)?.ok_or(ReviewFail::NotFound)?;
        let status = order.status;
        match (decision, status) {
            (Decision::Charge, OrderStatus::Review) => charge(conn, &order, set, now)?,
            (Decision::Refund, OrderStatus::Paid) => correct_paid(conn, &order, case_id, set, by, note, now)?,
            (Decision::Charge, other) => {
                return Err(ReviewFail::Refused(format!(
                    "the order is {}: only an order in review can be charged (a paid order is corrected with refund)",
                    other.as_str()
                )));
            }
            (Decision::Refund, other) => {
                return Err(ReviewFail::Refused(format!(
                    "the order is {}: only a paid order can be refunded (an order in review is charged)",
                    other.as_str()
                )));
            }
            (Decision::Dismiss, OrderStatus::Review) => {
                return Err(ReviewFail::Refused(
                    "an order in review must be charged (with no lines to release it)".into(),
                ));
            }
            (Decision::Dismiss, _) => {}
        }
        let resolution = serde_json::json!({ "decision": decision, "lines": set, "note": note }).to_string();
        diesel::update(review_cases::table.find(case_id))
            .set((
                review_cases::status.eq(CaseStatus::Resolved),
                review_cases::resolution.eq(Some(resolution)),
                review_cases::resolved_by.eq(Some(by)),
                review_cases::resolved_at.eq(Some(now)),
            ))
            .execute(conn)?;
        orders::find(conn, order.id)?.ok_or(ReviewFail::NotFound)
    })
}

/// An order in review gets the lines the person set and goes to `paying` (or `no_purchase`).
fn charge(
    conn: &mut AnyConnection,
    order: &Order,
    set: &[(String, i64)],
    now: NaiveDateTime,
) -> Result<(), ReviewFail> {
    let lines = priced_lines(conn, &order.sn, set, &[])?;
    let empty = lines.is_empty();
    let total: i64 = lines.iter().map(|l| l.amount_fen).sum();
    orders::apply(conn, order.id, OrderEvent::Reviewed { empty }, now, |conn, o, to| {
        orders::write_lines(conn, o.id, &lines)?;
        diesel::update(order_rows::table.find(o.id)).set(order_rows::total_fen.eq(Some(total))).execute(conn)?;
        orders::owe_excess(conn, o, total, now)?;
        let changes: Vec<StockChange> = orders::basket_changes(&lines, &[])
            .into_iter()
            .map(|c| StockChange { reason: StockReason::Review, ..c })
            .collect();
        orders::book_basket(conn, o, to, &changes, now)
    })?;
    Ok(())
}

/// A paid order's basket, corrected: the new lines and total, stock back on (or off) the lanes
/// by the difference, and the money squared — refunded beyond the new total, owed short of it.
fn correct_paid(
    conn: &mut AnyConnection,
    order: &Order,
    case_id: i64,
    set: &[(String, i64)],
    by: &str,
    note: &str,
    now: NaiveDateTime,
) -> Result<(), ReviewFail> {
    let before = orders::lines(conn, order.id)?;
    let lines = priced_lines(conn, &order.sn, set, &before)?;
    let total: i64 = lines.iter().map(|l| l.amount_fen).sum();
    // What the shopper has paid and keeps paid: the charge, less refunds already under way.
    let kept = order.paid_fen.unwrap_or(0) - refunds::committed_fen(conn, order.id)?;
    let money = rebasket(kept, total);
    orders::write_lines(conn, order.id, &lines)?;
    diesel::update(order_rows::table.find(order.id))
        .set((
            order_rows::total_fen.eq(Some(total)),
            order_rows::debt_fen.eq(money.debt_fen),
            order_rows::updated_at.eq(now),
        ))
        .execute(conn)?;
    orders::add_debt(conn, order.user_id, money.debt_fen - order.debt_fen, now)?;
    // Units the charge took and the person says were not taken are on the shelf, and the other
    // way round.
    let mut changes = Vec::new();
    for lane in before.iter().map(|l| &l.lane).chain(lines.iter().map(|l| &l.lane)) {
        if changes.iter().any(|c: &StockChange| &c.lane == lane) {
            continue;
        }
        let was = before.iter().find(|l| &l.lane == lane);
        let now_is = lines.iter().find(|l| &l.lane == lane);
        let delta = was.map_or(0, |l| l.qty) - now_is.map_or(0, |l| l.qty);
        if delta != 0 {
            let product_id = now_is.map(|l| l.product_id).or(was.map(|l| l.product_id));
            changes.push(StockChange { lane: lane.clone(), product_id, delta, reason: StockReason::Review });
        }
    }
    orders::change_stock(conn, &order.sn, &changes, (Some(order.id), order.session_id, None), now)?;
    if money.refund_fen > 0 {
        let reason = if note.trim().is_empty() { "订单复核退款" } else { note };
        refunds::request(conn, order, Some(case_id), money.refund_fen, reason, by, now)?;
    }
    Ok(())
}

/// A lane's capacity, and its product's id, name and price (none when it holds none).
type LaneProduct = (i32, Option<i64>, Option<String>, Option<i64>);

/// The lines a person set: a lane the order charged keeps the product and price it was charged
/// at; any other is priced as its product is now. Each lane once, a lane of the cabinet, and no
/// more units than it holds when full.
fn priced_lines(
    conn: &mut AnyConnection,
    sn: &str,
    set: &[(String, i64)],
    charged: &[OrderLine],
) -> Result<Vec<Line>, ReviewFail> {
    let mut lines: Vec<Line> = Vec::new();
    for (i, (lane, qty)) in set.iter().enumerate() {
        if set[..i].iter().any(|(l, _)| l == lane) {
            return Err(ReviewFail::Refused(format!("lane {lane} is listed twice")));
        }
        if *qty < 0 {
            return Err(ReviewFail::Refused(format!("lane {lane}: a quantity cannot be negative")));
        }
        let found: Option<LaneProduct> = lanes::table
            .left_join(products::table)
            .filter(lanes::sn.eq(sn))
            .filter(lanes::code.eq(lane))
            .select((lanes::capacity, lanes::product_id, products::name.nullable(), products::price_fen.nullable()))
            .first(conn)
            .optional()?;
        let Some((capacity, product_id, name, price)) = found else {
            return Err(ReviewFail::Refused(format!("cabinet {sn} has no lane {lane}")));
        };
        if *qty > i64::from(capacity) {
            return Err(ReviewFail::Refused(format!("lane {lane} holds at most {capacity} units, not {qty}")));
        }
        if *qty == 0 {
            continue;
        }
        let line = match (charged.iter().find(|l| &l.lane == lane), product_id, name, price) {
            (Some(was), ..) => Line {
                lane: lane.clone(),
                product_id: was.product_id,
                product_name: was.product_name.clone(),
                qty: *qty,
                unit_fen: was.unit_fen,
                amount_fen: was.unit_fen * qty,
            },
            (None, Some(product_id), Some(product_name), Some(price)) => Line {
                lane: lane.clone(),
                product_id,
                product_name,
                qty: *qty,
                unit_fen: price,
                amount_fen: price * qty,
            },
            _ => return Err(ReviewFail::Refused(format!("lane {lane} holds no product on cabinet {sn}"))),
        };
        lines.push(line);
    }
    Ok(lines)
}
