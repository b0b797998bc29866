//! The weight log (重量流水): load-cell readings as received, closed-door readings of every
//! cabinet and the traces of sessions. Rows are only ever inserted, in batches
//! (`actors::weight_log` queues them); one insert per frame would cost a transaction per frame.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::weight_log;
use super::{AnyConnection, DbResult, write_tx};
use crate::domain::weight::ReadingKind;

/// Rows per INSERT statement: 7 bound parameters a row keeps one statement at 7,000 parameters,
/// under SQLite's limit (32,766 in the bundled build; 999 before 3.32) and PostgreSQL's 65,535,
/// while still amortising the statement over many rows.
pub const ROWS_PER_STATEMENT: usize = 1000;

#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = weight_log)]
// `None` is written as NULL, not as DEFAULT: with DEFAULT in a row diesel cannot put several rows
// in one SQLite statement and falls back to one INSERT per row.
#[diesel(treat_none_as_default_value = false)]
pub struct NewWeightRow {
    pub sn: String,
    /// The session the reading belongs to; `None` for closed-door readings outside a session.
    pub session_id: Option<i64>,
    pub kind: ReadingKind,
    /// When Heft received it (UTC).
    pub recorded_at: NaiveDateTime,
    /// The frame's `ts` (cabinet clock, Unix ms), when it had one.
    pub device_ts: Option<i64>,
    /// JSON array of raw counts, one per channel.
    pub counts: String,
    /// JSON object lane code → grams (rounded to 0.1 g), when the cabinet's lanes are calibrated.
    pub grams: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = weight_log)]
pub struct WeightLogRow {
    pub id: i64,
    pub sn: String,
    pub session_id: Option<i64>,
    pub kind: ReadingKind,
    #[schema(value_type = String)]
    pub recorded_at: NaiveDateTime,
    pub device_ts: Option<i64>,
    pub counts: String,
    pub grams: Option<String>,
}

/// Insert `rows` in one transaction, [`ROWS_PER_STATEMENT`] rows per statement; returns the
/// number inserted.
///
/// The statement is built for the concrete backend (`on_backend!`): through `MultiConnection`
/// diesel runs a batch insert on SQLite as one statement per row.
pub fn insert_batch(conn: &mut AnyConnection, rows: &[NewWeightRow]) -> DbResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    write_tx(conn, |conn| {
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            inserted +=
                crate::on_backend!(conn, |c| { diesel::insert_into(weight_log::table).values(chunk).execute(c) })?;
        }
        Ok(inserted)
    })
}

/// The trace of a session, in the order it was recorded.
pub fn for_session(conn: &mut AnyConnection, session_id: i64) -> DbResult<Vec<WeightLogRow>> {
    Ok(weight_log::table
        .select(WeightLogRow::as_select())
        .filter(weight_log::session_id.eq(session_id))
        .order(weight_log::id.asc())
        .load(conn)?)
}

/// The latest readings of a cabinet, newest first.
pub fn recent(conn: &mut AnyConnection, sn: &str, limit: i64) -> DbResult<Vec<WeightLogRow>> {
    // By recorded_at (the (sn, recorded_at) index serves it), then id for readings received in
    // the same microsecond.
    Ok(weight_log::table
        .select(WeightLogRow::as_select())
        .filter(weight_log::sn.eq(sn))
        .order((weight_log::recorded_at.desc(), weight_log::id.desc()))
        .limit(limit)
        .load(conn)?)
}
