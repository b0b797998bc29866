//! A business day's settlement per cabinet and product (`daily_settlement`): the day's paid
//! orders read a page at a time, its refunds, debt changes and review cases, added up by
//! `domain::report`, and written whole in place of any earlier run's rows. Fees are the ones the
//! platforms' kept bills show, else the configured rate; losses are the night's stocktake's.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

use super::Ctx;
use crate::config::ReconcileConfig;
use crate::db::reports::{self, DailyRow, DayTotal};
use crate::db::{self, DbError};
use crate::domain::bills::fee;
use crate::domain::calendar::day_bounds;
use crate::domain::payment::Channel;
use crate::domain::report::DayTotals;
use crate::domain::units::Fen;

/// Paid orders read per page.
const PAGE: i64 = 2_000;

/// What a day's settlement came to, over every cabinet and product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SettlementReport {
    pub rows: usize,
    pub orders: usize,
    pub gross_fen: Fen,
    pub refunds_fen: Fen,
    pub fees_fen: Fen,
    pub net_fen: Fen,
    /// Fees taken from a kept bill, of all fees counted (the rest at the configured rate).
    pub fees_from_bills: usize,
    pub fees_counted: usize,
}

/// Write `day`'s settlement.
pub async fn settle_day(ctx: &Ctx, day: NaiveDate) -> Result<SettlementReport, DbError> {
    let rates = ctx.config.reconcile.clone();
    ctx.db
        .run(move |c| {
            let (from, to) = day_bounds(day);
            let mut totals = DayTotals::default();
            let mut report = SettlementReport::default();
            let mut after = None;
            loop {
                let page = reports::paid_orders(c, (from, to), after, PAGE)?;
                let Some(last) = page.last() else { break };
                after = Some((last.paid_at, last.order.order_id));
                for p in &page {
                    report.fees_counted += 1;
                    report.fees_from_bills += usize::from(p.billed_fee.is_some());
                    totals.paid(&p.order, p.billed_fee.unwrap_or_else(|| rate(&rates, p.channel, p.paid_fen)));
                }
                report.orders += page.len();
            }
            for r in reports::refunds_done(c, from, to)? {
                let back = r.billed_fee.unwrap_or_else(|| rate(&rates, r.channel, r.amount));
                totals.refunded(&r.order, &r.now, r.amount, back);
            }
            for (order, delta) in reports::debt_changes(c, from, to)? {
                totals.debt(&order, delta);
            }
            for (sn, product, name, units, value) in crate::db::stocktake::losses_of_day(c, &day.to_string())? {
                totals.lost(&sn, product, &name, units, value);
            }
            let reviewed = reports::reviewed(c, from, to)?;
            for order in &reviewed {
                totals.reviewed(order);
            }
            let (day_s, now) = (day.to_string(), db::now());
            let rows: Vec<DailyRow> = totals.rows().into_iter().map(|r| DailyRow::new(&day_s, r, now)).collect();
            let total = day_total(&day_s, &rows, report.orders, reviewed.len(), now);
            report.rows = rows.len();
            (report.gross_fen, report.refunds_fen, report.fees_fen, report.net_fen) =
                (total.gross_fen, total.refunds_fen, total.fees_fen, total.net_fen);
            reports::replace_day(c, &day_s, &rows, &total)?;
            Ok(report)
        })
        .await
}

/// The fleet's day: the rows' money and units, the orders and cases each counted once.
fn day_total(day: &str, rows: &[DailyRow], orders: usize, reviews: usize, now: NaiveDateTime) -> DayTotal {
    let fen = |f: fn(&DailyRow) -> Fen| Fen(rows.iter().map(|r| f(r).0).sum());
    let units = |f: fn(&DailyRow) -> i64| rows.iter().map(f).sum();
    DayTotal {
        day: day.to_string(),
        orders: orders as i64,
        units_sold: units(|r| r.units_sold),
        gross_fen: fen(|r| r.gross_fen),
        refunds_fen: fen(|r| r.refunds_fen),
        fees_fen: fen(|r| r.fees_fen),
        net_fen: fen(|r| r.net_fen),
        debt_opened_fen: fen(|r| r.debt_opened_fen),
        debt_recovered_fen: fen(|r| r.debt_recovered_fen),
        loss_units: units(|r| r.loss_units),
        loss_fen: fen(|r| r.loss_fen),
        reviews: reviews as i64,
        written_at: now,
    }
}

fn rate(config: &ReconcileConfig, channel: Channel, amount: Fen) -> Fen {
    fee(amount, config.bill_rule(channel).fee_basis_points)
}
