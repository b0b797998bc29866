//! The daily settlement for operators: rows per day × cabinet × product with the fleet's totals
//! per day, as JSON or as a CSV to open in a spreadsheet.

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, Ops};
use crate::db::reports::{self, DailyRow, DayTotal, ReportFilter};
use crate::db::stocktake::{self as stocktake_store, NewFinding, NewLaneNight};
use crate::domain::calendar::business_day;
use crate::domain::units::Fen;

/// `GET /ops/stocktake` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StocktakeQuery {
    /// Business day, `YYYY-MM-DD` (default: yesterday).
    #[param(value_type = Option<String>, format = Date)]
    pub day: Option<NaiveDate>,
    /// Only this cabinet's lanes.
    pub sn: Option<String>,
}

/// One lane's night with what explains its difference.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StocktakeLane {
    pub id: i64,
    #[serde(flatten)]
    pub night: NewLaneNight,
    pub findings: Vec<NewFinding>,
}

/// `GET /ops/stocktake?day=&sn=` → each lane's stock by weight that night: agrees, differs (with
/// its findings: the shopper charged, the loss and its evidence) or unreadable, and the weight
/// trace it was decided from. Roles: any.
#[utoipa::path(
    get, path = "/ops/stocktake", operation_id = "stocktake", tag = "ops: money", security(("operator" = [])), params(StocktakeQuery),
    responses((status = 200, description = "The day's lanes, by cabinet and lane", body = Vec<StocktakeLane>))
)]
pub async fn stocktake(ops: Ops<AnyRole>, q: web::Query<StocktakeQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let day = q.day.unwrap_or_else(|| business_day(chrono::Utc::now()) - chrono::Duration::days(1)).to_string();
    let rows = ops.read(move |c| stocktake_store::of_day(c, &day, q.sn.as_deref())).await?;
    let out: Vec<StocktakeLane> =
        rows.into_iter().map(|(id, night, findings)| StocktakeLane { id, night, findings }).collect();
    Ok(HttpResponse::Ok().json(out))
}

/// Most rows one answer holds.
const MAX_ROWS: i64 = 100_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
    Xlsx,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DailyQuery {
    /// First business day, `YYYY-MM-DD` (default: a week back).
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last business day (default: yesterday). A range that ends before it starts is empty.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    /// Only this cabinet's rows.
    pub sn: Option<String>,
    /// Only this product's rows.
    pub product_id: Option<i64>,
    /// `json` (rows and totals), `csv` (rows) or `xlsx` (a workbook: the rows, and the totals).
    #[param(inline)]
    pub format: Option<Format>,
    /// Most rows (default 10,000).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DailyOut {
    /// Per day, cabinet and product, filtered.
    pub rows: Vec<DailyRow>,
    /// Per day over the whole fleet (the filters do not apply).
    pub totals: Vec<DayTotal>,
}

/// `GET /ops/reports/daily?from=&to=&sn=&product_id=&format=json|csv` → the daily settlement.
/// Roles: any.
#[utoipa::path(
    get, path = "/ops/reports/daily", operation_id = "daily_settlement", tag = "ops: money", security(("operator" = [])), params(DailyQuery),
    responses(
        (status = 200, description = "Rows and per-day totals (JSON), the rows as CSV, or both as an xlsx workbook", content((DailyOut = "application/json"), (String = "text/csv"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
    )
)]
pub async fn daily(ops: Ops<AnyRole>, q: web::Query<DailyQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let yesterday = business_day(chrono::Utc::now()) - chrono::Duration::days(1);
    let to = q.to.unwrap_or(yesterday);
    let from = q.from.unwrap_or(to - chrono::Duration::days(6));
    let limit = match q.limit.unwrap_or(10_000) {
        n if (1..=MAX_ROWS).contains(&n) => n,
        n => return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_ROWS}, got {n}"))),
    };
    let filter = ReportFilter { from: from.to_string(), to: to.to_string(), sn: q.sn, product_id: q.product_id };
    let (rows, totals) = ops
        .read(move |c| Ok((reports::rows(c, &filter, limit)?, reports::day_totals(c, &filter.from, &filter.to)?)))
        .await?;
    match q.format.unwrap_or_default() {
        Format::Json => Ok(HttpResponse::Ok().json(DailyOut { rows, totals })),
        Format::Xlsx => Ok(HttpResponse::Ok()
            .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
            .insert_header(("Content-Disposition", format!("attachment; filename=\"heft-daily-{from}-{to}.xlsx\"")))
            .body(xlsx(&rows, &totals).map_err(ApiError::internal)?)),
        Format::Csv => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("Content-Disposition", format!("attachment; filename=\"heft-daily-{from}-{to}.csv\"")))
            .body(csv(&rows))),
    }
}

/// The columns of a row and of a day's totals, in the spreadsheet's order.
const ROW_HEADER: [&str; 15] = [
    "day",
    "sn",
    "product_id",
    "product",
    "orders",
    "units_sold",
    "gross_yuan",
    "refunds_yuan",
    "fees_yuan",
    "net_yuan",
    "debt_opened_yuan",
    "debt_recovered_yuan",
    "loss_units",
    "loss_yuan",
    "reviews",
];
const TOTAL_HEADER: [&str; 12] = [
    "day",
    "orders",
    "units_sold",
    "gross_yuan",
    "refunds_yuan",
    "fees_yuan",
    "net_yuan",
    "debt_opened_yuan",
    "debt_recovered_yuan",
    "loss_units",
    "loss_yuan",
    "reviews",
];

/// A cell of the workbook: text, a count, or money shown in yuan (kept exact: fen / 100).
enum Cell<'a> {
    Text(&'a str),
    Count(i64),
    Money(Fen),
}

/// The rows and the per-day totals as a workbook of two sheets, numbers as numbers.
fn xlsx(rows: &[DailyRow], totals: &[DayTotal]) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use Cell::{Count, Money, Text};
    let mut book = rust_xlsxwriter::Workbook::new();
    let yuan = rust_xlsxwriter::Format::new().set_num_format("0.00");
    let bold = rust_xlsxwriter::Format::new().set_bold();
    let mut sheet = |name: &str, header: &[&str], cells: Vec<Vec<Cell>>| {
        let ws = book.add_worksheet().set_name(name)?;
        for (c, h) in header.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (r, line) in cells.iter().enumerate() {
            let r = r as u32 + 1;
            for (c, cell) in line.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Text(t) => ws.write_string(r, c, *t).map(|_| ())?,
                    Count(n) => ws.write_number(r, c, *n as f64).map(|_| ())?,
                    Money(f) => ws.write_number_with_format(r, c, f.0 as f64 / 100.0, &yuan).map(|_| ())?,
                }
            }
        }
        Ok::<_, rust_xlsxwriter::XlsxError>(())
    };
    sheet(
        "daily",
        &ROW_HEADER,
        rows.iter()
            .map(|r| {
                vec![
                    Text(&r.day),
                    Text(&r.sn),
                    Count(r.product_id),
                    Text(&r.product_name),
                    Count(r.orders),
                    Count(r.units_sold),
                    Money(r.gross_fen),
                    Money(r.refunds_fen),
                    Money(r.fees_fen),
                    Money(r.net_fen),
                    Money(r.debt_opened_fen),
                    Money(r.debt_recovered_fen),
                    Count(r.loss_units),
                    Money(r.loss_fen),
                    Count(r.reviews),
                ]
            })
            .collect(),
    )?;
    sheet(
        "totals",
        &TOTAL_HEADER,
        totals
            .iter()
            .map(|t| {
                vec![
                    Text(&t.day),
                    Count(t.orders),
                    Count(t.units_sold),
                    Money(t.gross_fen),
                    Money(t.refunds_fen),
                    Money(t.fees_fen),
                    Money(t.net_fen),
                    Money(t.debt_opened_fen),
                    Money(t.debt_recovered_fen),
                    Count(t.loss_units),
                    Money(t.loss_fen),
                    Count(t.reviews),
                ]
            })
            .collect(),
    )?;
    book.save_to_buffer()
}

/// The rows as CSV, amounts in yuan, with a BOM so spreadsheet programs read the names as UTF-8.
fn csv(rows: &[DailyRow]) -> String {
    let mut out = format!("\u{feff}{}\r\n", ROW_HEADER.join(","));
    for r in rows {
        let name = r.product_name.replace('"', "\"\"");
        out.push_str(&format!(
            "{},{},{},\"{name}\",{},{},{},{},{},{},{},{},{},{},{}\r\n",
            r.day,
            r.sn,
            r.product_id,
            r.orders,
            r.units_sold,
            r.gross_fen.yuan(),
            r.refunds_fen.yuan(),
            r.fees_fen.yuan(),
            r.net_fen.yuan(),
            r.debt_opened_fen.yuan(),
            r.debt_recovered_fen.yuan(),
            r.loss_units,
            r.loss_fen.yuan(),
            r.reviews,
        ));
    }
    out
}
