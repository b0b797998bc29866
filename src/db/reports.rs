//! What a day's settlement is made of, read a page at a time (orders paid, refunds, debt changes
//! and review cases of a window), and the `daily_settlement` rows it comes to.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::models::OrderLine;
use super::schema::{
    bill_rows, charged_lines, daily_settlement, daily_totals, debt_ledger, order_lines, orders, refunds, review_cases,
};
use super::{AnyConnection, DbResult, write_tx};
use crate::domain::bills::EntryKind;
use crate::domain::order::OrderStatus;
use crate::domain::payment::{Channel, RefundStatus};
use crate::domain::report::{LineFact, OrderFact, SettlementRow};
use crate::domain::units::Fen;

const CHUNK: usize = 500;

/// An order paid in the window, with what settles its fee.
#[derive(Debug, Clone)]
pub struct PaidOrder {
    pub order: OrderFact,
    pub channel: Channel,
    pub paid_fen: Fen,
    /// The fee the platform's bill shows for it, when a kept bill has it.
    pub billed_fee: Option<Fen>,
    pub paid_at: NaiveDateTime,
}

/// id, sn, channel, out_order_no, paid_fen, finished_at.
type PaidRow = (i64, String, Channel, String, Option<Fen>, Option<NaiveDateTime>);

/// Where a page of paid orders ended: when the last was paid, and its id.
pub type PageEnd = Option<(NaiveDateTime, i64)>;

/// Orders paid in `[from, to)` after `after`, in the order they were paid, up to `limit`.
pub fn paid_orders(
    conn: &mut AnyConnection,
    (from, to): (NaiveDateTime, NaiveDateTime),
    after: PageEnd,
    limit: i64,
) -> DbResult<Vec<PaidOrder>> {
    let mut q = orders::table
        .filter(orders::status.eq(OrderStatus::Paid))
        .filter(orders::finished_at.ge(from))
        .filter(orders::finished_at.lt(to))
        .into_boxed();
    if let Some((at, id)) = after {
        // The first condition alone starts the index range; the second skips what the page took.
        q = q.filter(orders::finished_at.ge(at)).filter(orders::finished_at.gt(at).or(orders::id.gt(id)));
    }
    let page: Vec<PaidRow> = q
        .order((orders::finished_at.asc(), orders::id.asc()))
        .limit(limit)
        .select((orders::id, orders::sn, orders::channel, orders::out_order_no, orders::paid_fen, orders::finished_at))
        .load(conn)?;
    let ids: Vec<i64> = page.iter().map(|p| p.0).collect();
    let mut lines = lines_of(conn, &ids, Lines::Charged)?;
    let numbers: Vec<String> = page.iter().map(|p| p.3.clone()).collect();
    let fees = billed(conn, &numbers, EntryKind::Payment)?;
    Ok(page
        .into_iter()
        .map(|(id, sn, channel, no, paid, at)| PaidOrder {
            order: OrderFact { order_id: id, sn, lines: lines.remove(&id).unwrap_or_default() },
            channel,
            paid_fen: paid.unwrap_or_default(),
            billed_fee: fees.get(&(no, 0)).copied(),
            paid_at: at.unwrap_or(from),
        })
        .collect())
}

/// A refund that went through in the window.
#[derive(Debug, Clone)]
pub struct DoneRefund {
    /// The order as charged.
    pub order: OrderFact,
    /// Its lines now (after the correction that refunded it).
    pub now: Vec<LineFact>,
    pub channel: Channel,
    pub amount: Fen,
    /// The fee the platform's bill shows it gave back, when a kept bill has it.
    pub billed_fee: Option<Fen>,
}

/// Refunds that succeeded in `[from, to)`.
pub fn refunds_done(conn: &mut AnyConnection, from: NaiveDateTime, to: NaiveDateTime) -> DbResult<Vec<DoneRefund>> {
    let done: Vec<(i64, String, Channel, String, Fen)> = refunds::table
        .inner_join(orders::table)
        .filter(refunds::status.eq(RefundStatus::Succeeded))
        .filter(refunds::finished_at.ge(from))
        .filter(refunds::finished_at.lt(to))
        .select((orders::id, orders::sn, orders::channel, orders::out_order_no, refunds::amount_fen))
        .load(conn)?;
    let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
    let charged = lines_of(conn, &ids, Lines::Charged)?;
    let now = lines_of(conn, &ids, Lines::Now)?;
    let numbers: Vec<String> = done.iter().map(|d| d.3.clone()).collect();
    let fees = billed(conn, &numbers, EntryKind::Refund)?;
    Ok(done
        .into_iter()
        .map(|(id, sn, channel, no, amount)| DoneRefund {
            order: OrderFact { order_id: id, sn, lines: charged.get(&id).cloned().unwrap_or_default() },
            now: now.get(&id).cloned().unwrap_or_default(),
            channel,
            billed_fee: fees.get(&(no, amount.0)).copied(),
            amount,
        })
        .collect())
}

/// Debt changes in `[from, to)` with their orders.
pub fn debt_changes(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> DbResult<Vec<(OrderFact, Fen)>> {
    let changes: Vec<(i64, String, Fen)> = debt_ledger::table
        .inner_join(orders::table)
        .filter(debt_ledger::at.ge(from))
        .filter(debt_ledger::at.lt(to))
        .select((orders::id, orders::sn, debt_ledger::delta_fen))
        .load(conn)?;
    let ids: Vec<i64> = changes.iter().map(|c| c.0).collect();
    let lines = lines_of(conn, &ids, Lines::Now)?;
    Ok(changes
        .into_iter()
        .map(|(id, sn, delta)| {
            (OrderFact { order_id: id, sn, lines: lines.get(&id).cloned().unwrap_or_default() }, delta)
        })
        .collect())
}

/// Orders a review case was opened on in `[from, to)`, once per case.
pub fn reviewed(conn: &mut AnyConnection, from: NaiveDateTime, to: NaiveDateTime) -> DbResult<Vec<OrderFact>> {
    let cases: Vec<(i64, String)> = review_cases::table
        .inner_join(orders::table)
        .filter(review_cases::created_at.ge(from))
        .filter(review_cases::created_at.lt(to))
        .select((orders::id, orders::sn))
        .load(conn)?;
    let ids: Vec<i64> = cases.iter().map(|c| c.0).collect();
    let lines = lines_of(conn, &ids, Lines::Now)?;
    Ok(cases
        .into_iter()
        .map(|(id, sn)| OrderFact { order_id: id, sn, lines: lines.get(&id).cloned().unwrap_or_default() })
        .collect())
}

/// Which of an order's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// As paid (`charged_lines`); an order paid before they were kept falls back to its lines now.
    Charged,
    /// As they stand (`order_lines`).
    Now,
}

fn lines_of(conn: &mut AnyConnection, ids: &[i64], which: Lines) -> DbResult<HashMap<i64, Vec<LineFact>>> {
    let mut out: HashMap<i64, Vec<LineFact>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let mut rows: Vec<OrderLine> = match which {
            Lines::Charged => charged_lines::table
                .filter(charged_lines::order_id.eq_any(chunk))
                .select((
                    charged_lines::order_id,
                    charged_lines::lane,
                    charged_lines::product_id,
                    charged_lines::product_name,
                    charged_lines::qty,
                    charged_lines::unit_fen,
                    charged_lines::amount_fen,
                ))
                .load(conn)?,
            Lines::Now => Vec::new(),
        };
        let have: std::collections::HashSet<i64> = rows.iter().map(|l| l.order_id).collect();
        let rest: Vec<i64> = chunk.iter().copied().filter(|id| !have.contains(id)).collect();
        if !rest.is_empty() {
            let now: Vec<OrderLine> = order_lines::table
                .filter(order_lines::order_id.eq_any(&rest))
                .select(OrderLine::as_select())
                .load(conn)?;
            rows.extend(now);
        }
        rows.sort_by(|a, b| (a.order_id, &a.lane).cmp(&(b.order_id, &b.lane)));
        for l in rows {
            out.entry(l.order_id).or_default().push(LineFact {
                lane: l.lane,
                product_id: l.product_id,
                product_name: l.product_name,
                qty: l.qty,
                amount: l.amount_fen,
            });
        }
    }
    Ok(out)
}

/// Fees the kept bills show for these orders' rows of `kind`, by (order, amount for refunds,
/// else 0), as positive fen.
fn billed(conn: &mut AnyConnection, numbers: &[String], kind: EntryKind) -> DbResult<HashMap<(String, i64), Fen>> {
    let mut out = HashMap::new();
    for chunk in numbers.chunks(CHUNK) {
        let rows: Vec<(String, Fen, Fen)> = bill_rows::table
            .filter(bill_rows::out_order_no.eq_any(chunk))
            .filter(bill_rows::kind.eq(kind))
            .select((bill_rows::out_order_no, bill_rows::amount_fen, bill_rows::fee_fen))
            .load(conn)?;
        for (no, amount, fee) in rows {
            let key = (no, if kind == EntryKind::Refund { amount.0 } else { 0 });
            out.insert(key, Fen(fee.0.abs()));
        }
    }
    Ok(out)
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = daily_settlement)]
pub struct DailyRow {
    /// `YYYY-MM-DD`, Asia/Shanghai.
    pub day: String,
    pub sn: String,
    pub product_id: i64,
    pub product_name: String,
    pub orders: i64,
    pub units_sold: i64,
    pub gross_fen: Fen,
    pub refunds_fen: Fen,
    pub fees_fen: Fen,
    pub net_fen: Fen,
    pub debt_opened_fen: Fen,
    pub debt_recovered_fen: Fen,
    pub loss_units: i64,
    pub loss_fen: Fen,
    pub reviews: i64,
    #[schema(value_type = String)]
    pub written_at: NaiveDateTime,
}

impl DailyRow {
    pub fn new(day: &str, r: SettlementRow, now: NaiveDateTime) -> DailyRow {
        DailyRow {
            day: day.to_string(),
            sn: r.sn,
            product_id: r.product_id,
            product_name: r.product_name,
            orders: r.orders,
            units_sold: r.units_sold,
            gross_fen: r.gross_fen,
            refunds_fen: r.refunds_fen,
            fees_fen: r.fees_fen,
            net_fen: r.net_fen,
            debt_opened_fen: r.debt_opened_fen,
            debt_recovered_fen: r.debt_recovered_fen,
            loss_units: r.loss_units,
            loss_fen: r.loss_fen,
            reviews: r.reviews,
            written_at: now,
        }
    }
}

/// The day's rows and totals, replacing what an earlier run wrote.
pub fn replace_day(conn: &mut AnyConnection, day: &str, rows: &[DailyRow], total: &DayTotal) -> DbResult<()> {
    write_tx(conn, |conn| {
        diesel::delete(daily_totals::table.filter(daily_totals::day.eq(day))).execute(conn)?;
        diesel::insert_into(daily_totals::table).values(total).execute(conn)?;
        diesel::delete(daily_settlement::table.filter(daily_settlement::day.eq(day))).execute(conn)?;
        for chunk in rows.chunks(CHUNK / 2) {
            crate::on_backend!(conn, |c| { diesel::insert_into(daily_settlement::table).values(chunk).execute(c) })?;
        }
        Ok(())
    })
}

/// Which rows to read.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub from: String,
    pub to: String,
    pub sn: Option<String>,
    pub product_id: Option<i64>,
}

/// Rows of `[from, to]` (days), by day, cabinet and product.
pub fn rows(conn: &mut AnyConnection, f: &ReportFilter, limit: i64) -> DbResult<Vec<DailyRow>> {
    let mut q = daily_settlement::table
        .filter(daily_settlement::day.ge(f.from.clone()))
        .filter(daily_settlement::day.le(f.to.clone()))
        .select(DailyRow::as_select())
        .into_boxed();
    if let Some(sn) = &f.sn {
        q = q.filter(daily_settlement::sn.eq(sn.clone()));
    }
    if let Some(p) = f.product_id {
        q = q.filter(daily_settlement::product_id.eq(p));
    }
    Ok(q.order((daily_settlement::day.asc(), daily_settlement::sn.asc(), daily_settlement::product_id.asc()))
        .limit(limit)
        .load(conn)?)
}

/// A day's figures over the whole fleet: its orders and review cases counted once each.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = daily_totals)]
pub struct DayTotal {
    pub day: String,
    /// Orders paid that day.
    pub orders: i64,
    pub units_sold: i64,
    pub gross_fen: Fen,
    pub refunds_fen: Fen,
    pub fees_fen: Fen,
    pub net_fen: Fen,
    pub debt_opened_fen: Fen,
    pub debt_recovered_fen: Fen,
    pub loss_units: i64,
    pub loss_fen: Fen,
    /// Review cases opened that day.
    pub reviews: i64,
    #[schema(value_type = String)]
    pub written_at: NaiveDateTime,
}

/// Per-day totals of `[from, to]`.
pub fn day_totals(conn: &mut AnyConnection, from: &str, to: &str) -> DbResult<Vec<DayTotal>> {
    Ok(daily_totals::table
        .filter(daily_totals::day.ge(from))
        .filter(daily_totals::day.le(to))
        .order(daily_totals::day.asc())
        .select(DayTotal::as_select())
        .load(conn)?)
}
