//! The platforms' bills as Heft keeps them (`bill_files`, `bill_rows`), what Heft holds that a
//! bill may show (payments and refunds), and the cases where they disagree (`bill_cases`).
//! `flows::bills` decides; this only stores and reads.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::models::{Payment, Refund};
use super::schema::{bill_cases, bill_files, bill_rows, payments, refunds};
use super::{AnyConnection, DbResult, write_tx};
use crate::domain::bills::{BillCaseKind, BillCaseStatus, EntryKind, Resolution};
use crate::domain::payment::{Channel, PaymentState, RefundStatus};
use crate::domain::units::Fen;

/// Keys per `IN (…)` list: well inside SQLite's bound-parameter limit.
const CHUNK: usize = 500;

/// A downloaded bill to keep.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = bill_files)]
pub struct NewBillFile {
    pub channel: Channel,
    pub day: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub row_count: i64,
    /// The stated totals as JSON.
    pub totals: Option<String>,
    pub raw: Vec<u8>,
    pub fetched_at: NaiveDateTime,
}

/// A kept bill, without its bytes.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = bill_files)]
pub struct BillFileInfo {
    pub id: i64,
    pub channel: Channel,
    pub day: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub row_count: i64,
    pub totals: Option<String>,
    #[schema(value_type = String)]
    pub fetched_at: NaiveDateTime,
}

/// A bill row as kept.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Queryable, Selectable)]
#[diesel(table_name = bill_rows)]
pub struct BillRowRecord {
    pub channel: Channel,
    pub day: String,
    pub kind: EntryKind,
    pub transaction_id: String,
    pub out_order_no: String,
    pub amount_fen: Fen,
    pub fee_fen: Fen,
    pub status: String,
    pub at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = bill_rows)]
struct NewRow {
    file_id: i64,
    #[diesel(embed)]
    row: BillRowRecord,
}

/// A case to open.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = bill_cases)]
// NULL rather than DEFAULT, so several cases go in one SQLite statement.
#[diesel(treat_none_as_default_value = false)]
pub struct NewBillCase {
    pub channel: Channel,
    pub day: String,
    pub kind: BillCaseKind,
    pub out_order_no: String,
    pub subject: String,
    pub transaction_id: Option<String>,
    pub out_refund_no: Option<String>,
    pub heft_fen: Option<Fen>,
    pub bill_fen: Option<Fen>,
    pub detail: String,
    pub file_id: Option<i64>,
    pub status: BillCaseStatus,
    pub created_at: NaiveDateTime,
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = bill_cases)]
pub struct BillCase {
    pub id: i64,
    pub channel: Channel,
    /// The bill's business day, `YYYY-MM-DD`.
    pub day: String,
    pub kind: BillCaseKind,
    pub out_order_no: String,
    /// What names the case besides its order: the transaction, the refund, or empty for totals.
    pub subject: String,
    pub transaction_id: Option<String>,
    pub out_refund_no: Option<String>,
    /// What Heft recorded, fen (the fee it expected for `fee`).
    pub heft_fen: Option<Fen>,
    /// What the bill shows, fen.
    pub bill_fen: Option<Fen>,
    pub detail: String,
    /// The kept bill behind it (`GET /ops/bills/{id}/file`).
    pub file_id: Option<i64>,
    pub status: BillCaseStatus,
    pub resolution: Option<Resolution>,
    pub note: Option<String>,
    pub resolved_by: Option<String>,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<NaiveDateTime>,
}

/// Keep a bill and its rows, as the day's only rows for its platform. A file already kept (same
/// SHA-256) is not stored again; its id comes back either way.
pub fn store_file(conn: &mut AnyConnection, file: &NewBillFile, rows: &[BillRowRecord]) -> DbResult<i64> {
    write_tx(conn, |conn| {
        let kept: Option<i64> = bill_files::table
            .filter(bill_files::channel.eq(file.channel))
            .filter(bill_files::day.eq(&file.day))
            .filter(bill_files::sha256.eq(&file.sha256))
            .select(bill_files::id)
            .first(conn)
            .optional()?;
        if let Some(id) = kept {
            return Ok(id);
        }
        let id: i64 = crate::on_backend!(conn, |c| {
            diesel::insert_into(bill_files::table).values(file).returning(bill_files::id).get_result(c)
        })?;
        // A bill published again replaces the day's rows: its cases keep their file id.
        diesel::delete(
            bill_rows::table.filter(bill_rows::channel.eq(file.channel)).filter(bill_rows::day.eq(&file.day)),
        )
        .execute(conn)?;
        for chunk in rows.chunks(CHUNK) {
            let new: Vec<NewRow> = chunk.iter().map(|row| NewRow { file_id: id, row: row.clone() }).collect();
            crate::on_backend!(conn, |c| { diesel::insert_into(bill_rows::table).values(&new).execute(c) })?;
        }
        Ok(id)
    })
}

/// The newest kept bill of a platform's day.
pub fn file_of(conn: &mut AnyConnection, channel: Channel, day: &str) -> DbResult<Option<BillFileInfo>> {
    Ok(bill_files::table
        .filter(bill_files::channel.eq(channel))
        .filter(bill_files::day.eq(day))
        .order(bill_files::id.desc())
        .select(BillFileInfo::as_select())
        .first(conn)
        .optional()?)
}

/// A kept bill's bytes, with its channel and day.
pub fn raw(conn: &mut AnyConnection, id: i64) -> DbResult<Option<(BillFileInfo, Vec<u8>)>> {
    Ok(bill_files::table.find(id).select((BillFileInfo::as_select(), bill_files::raw)).first(conn).optional()?)
}

/// Payments of `channel` whose transaction number, `out_order_no` or `out_trade_no` is among
/// `keys`.
pub fn payments_named(conn: &mut AnyConnection, channel: Channel, keys: &[String]) -> DbResult<Vec<Payment>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let found: Vec<Payment> = payments::table
            .filter(payments::channel.eq(channel))
            .filter(
                payments::out_order_no
                    .eq_any(chunk)
                    .or(payments::transaction_id.eq_any(chunk))
                    .or(payments::out_trade_no.eq_any(chunk)),
            )
            .select(Payment::as_select())
            .load(conn)?;
        out.extend(found);
    }
    out.sort_by(|a, b| a.out_order_no.cmp(&b.out_order_no));
    out.dedup_by(|a, b| a.out_order_no == b.out_order_no);
    Ok(out)
}

/// Payments of `channel` paid between `from` and `to` (UTC) that no kept bill shows, after
/// `after` by number, `limit` at most.
pub fn paid_unshown(
    conn: &mut AnyConnection,
    channel: Channel,
    (from, to): (NaiveDateTime, NaiveDateTime),
    after: &str,
    limit: i64,
) -> DbResult<Vec<Payment>> {
    let shown = bill_rows::table
        .filter(bill_rows::out_order_no.eq(payments::out_order_no))
        .filter(bill_rows::kind.eq(EntryKind::Payment));
    Ok(payments::table
        .filter(payments::channel.eq(channel))
        .filter(payments::state.eq(PaymentState::Paid))
        .filter(payments::updated_at.ge(from))
        .filter(payments::updated_at.lt(to))
        .filter(payments::out_order_no.gt(after))
        .filter(diesel::dsl::not(diesel::dsl::exists(shown)))
        .order(payments::out_order_no.asc())
        .limit(limit)
        .select(Payment::as_select())
        .load(conn)?)
}

/// Refunds on the orders `out_order_nos` names that no other day's bill has shown (a refund row
/// of the same order and amount).
pub fn refunds_of(conn: &mut AnyConnection, out_order_nos: &[String], day: &str) -> DbResult<Vec<Refund>> {
    let mut out = Vec::new();
    for chunk in out_order_nos.chunks(CHUNK) {
        let shown_before = bill_rows::table
            .filter(bill_rows::out_order_no.eq(refunds::out_order_no))
            .filter(bill_rows::kind.eq(EntryKind::Refund))
            .filter(bill_rows::amount_fen.eq(refunds::amount_fen))
            .filter(bill_rows::day.ne(day));
        let found: Vec<Refund> = refunds::table
            .filter(refunds::out_order_no.eq_any(chunk))
            .filter(diesel::dsl::not(diesel::dsl::exists(shown_before)))
            .select(Refund::as_select())
            .load(conn)?;
        out.extend(found);
    }
    Ok(out)
}

/// Refunds on `channel`'s payments that succeeded between `from` and `to` (UTC), that no kept
/// bill shows and whose order `day`'s bill does not refund, after `after` by number, `limit` at
/// most.
pub fn refunds_unshown(
    conn: &mut AnyConnection,
    channel: Channel,
    (from, to): (NaiveDateTime, NaiveDateTime),
    day: &str,
    after: &str,
    limit: i64,
) -> DbResult<Vec<Refund>> {
    let shown = bill_rows::table
        .filter(bill_rows::out_order_no.eq(refunds::out_order_no))
        .filter(bill_rows::kind.eq(EntryKind::Refund))
        .filter(bill_rows::amount_fen.eq(refunds::amount_fen).or(bill_rows::day.eq(day)));
    Ok(refunds::table
        .inner_join(payments::table)
        .filter(payments::channel.eq(channel))
        .filter(refunds::status.eq(RefundStatus::Succeeded))
        .filter(refunds::finished_at.ge(from))
        .filter(refunds::finished_at.lt(to))
        .filter(refunds::out_refund_no.gt(after))
        .filter(diesel::dsl::not(diesel::dsl::exists(shown)))
        .order(refunds::out_refund_no.asc())
        .limit(limit)
        .select(Refund::as_select())
        .load(conn)?)
}

/// Open each case not already on record; how many were new.
pub fn open_cases(conn: &mut AnyConnection, cases: &[NewBillCase]) -> DbResult<usize> {
    write_tx(conn, |conn| {
        let mut new = 0;
        for chunk in cases.chunks(CHUNK) {
            new += crate::on_backend!(conn, |c| {
                diesel::insert_into(bill_cases::table).values(chunk).on_conflict_do_nothing().execute(c)
            })?;
        }
        Ok(new)
    })
}

/// Which cases to list.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<BillCaseStatus>,
    pub channel: Option<Channel>,
    pub day: Option<String>,
    pub kind: Option<BillCaseKind>,
}

/// Cases, newest first.
pub fn cases(conn: &mut AnyConnection, f: &CaseFilter, limit: i64) -> DbResult<Vec<BillCase>> {
    let mut q = bill_cases::table.select(BillCase::as_select()).into_boxed();
    if let Some(s) = f.status {
        q = q.filter(bill_cases::status.eq(s));
    }
    if let Some(c) = f.channel {
        q = q.filter(bill_cases::channel.eq(c));
    }
    if let Some(d) = &f.day {
        q = q.filter(bill_cases::day.eq(d.clone()));
    }
    if let Some(k) = f.kind {
        q = q.filter(bill_cases::kind.eq(k));
    }
    Ok(q.order(bill_cases::id.desc()).limit(limit).load(conn)?)
}

pub fn find_case(conn: &mut AnyConnection, id: i64) -> DbResult<Option<BillCase>> {
    Ok(bill_cases::table.find(id).select(BillCase::as_select()).first(conn).optional()?)
}

/// Close an open case. False when it was not open.
pub fn resolve_case(
    conn: &mut AnyConnection,
    id: i64,
    resolution: Resolution,
    note: &str,
    by: &str,
    now: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(bill_cases::table.find(id).filter(bill_cases::status.eq(BillCaseStatus::Open)))
        .set((
            bill_cases::status.eq(BillCaseStatus::Resolved),
            bill_cases::resolution.eq(Some(resolution)),
            bill_cases::note.eq(Some(note)),
            bill_cases::resolved_by.eq(Some(by)),
            bill_cases::resolved_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(n == 1)
}
