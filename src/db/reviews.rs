//! Review cases, as stored: orders a person must look at, and what they decided. Opened and
//! resolved by `flows::review`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::ReviewCase;
use super::schema::review_cases;
use super::{AnyConnection, DbError, DbResult, write_tx};
use crate::domain::review::{CaseKind, CaseStatus};

/// Open a case on an order (one open case per order): its id, or the id of the case already open.
pub fn open_case(
    conn: &mut AnyConnection,
    order_id: i64,
    kind: CaseKind,
    reasons: &str,
    by: &str,
    now: NaiveDateTime,
) -> DbResult<i64> {
    let inserted = write_tx(conn, |c| {
        diesel::insert_into(review_cases::table)
            .values((
                review_cases::order_id.eq(order_id),
                review_cases::kind.eq(kind),
                review_cases::status.eq(CaseStatus::Open),
                review_cases::reasons.eq(reasons),
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

/// The case is resolved: what was decided (JSON), by whom.
pub fn resolve(conn: &mut AnyConnection, id: i64, resolution: &str, by: &str, now: NaiveDateTime) -> DbResult<()> {
    diesel::update(review_cases::table.find(id))
        .set((
            review_cases::status.eq(CaseStatus::Resolved),
            review_cases::resolution.eq(Some(resolution)),
            review_cases::resolved_by.eq(Some(by)),
            review_cases::resolved_at.eq(Some(now)),
        ))
        .execute(conn)?;
    Ok(())
}
