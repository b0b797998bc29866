//! The outbox: messages that must not be lost, written in the caller's write transaction and
//! delivered by the relay (`actors::relay`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::outbox;
use super::{AnyConnection, DbError, DbResult, now, write_tx};

pub use crate::domain::outbox::OutboxStatus;

/// Longest `last_error` kept: errors can quote payloads, and the column is for people.
const MAX_ERROR_CHARS: usize = 1000;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: String,
    pub topic: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
    pub deliver_at: NaiveDateTime,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub done_at: Option<NaiveDateTime>,
}

/// A new message id: 32 hex digits, random.
pub fn new_message_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Store a message (`payload`: its JSON text), to be delivered at `deliver_at` (now when `None`),
/// inside the caller's transaction. Returns the message id. Producers write typed messages
/// through `mq::topics::Payload`.
pub fn enqueue(
    conn: &mut AnyConnection,
    topic: &str,
    payload: &str,
    deliver_at: Option<NaiveDateTime>,
) -> DbResult<String> {
    let at = now();
    let deliver_at = deliver_at.unwrap_or(at);
    let id = new_message_id();
    diesel::insert_into(outbox::table)
        .values((
            outbox::message_id.eq(&id),
            outbox::topic.eq(topic),
            outbox::payload.eq(payload),
            outbox::created_at.eq(at),
            outbox::deliver_at.eq(deliver_at),
            outbox::status.eq(OutboxStatus::Pending),
            outbox::attempts.eq(0),
            // Ready to claim now; `due` holds it back until its deliver_at is within reach.
            outbox::next_attempt_at.eq(at),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Claim up to `limit` pending rows that are ready (not leased, not backing off) and due by
/// `horizon`, oldest first, by moving their
/// `next_attempt_at` to `lease_until`: another relay (another node) does not take them until
/// then, and if this one dies before marking them they become due again by themselves.
/// On PostgreSQL the rows are locked with `FOR UPDATE SKIP LOCKED` while claimed, so two nodes
/// claiming at the same moment take different rows.
///
/// The horizon is now for in-process delivery; RabbitMQ takes a message early (up to its longest
/// wait queue ahead) and holds it in the wait queue until its time.
pub fn due(
    conn: &mut AnyConnection,
    limit: usize,
    horizon: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> DbResult<Vec<OutboxRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    write_tx(conn, |c| {
        let at = now();
        // A macro, not a closure: the selection's type is tied to one backend.
        macro_rules! query {
            () => {
                outbox::table
                    .select(OutboxRow::as_select())
                    .filter(outbox::status.eq(OutboxStatus::Pending))
                    // A row never claimed is ready whatever its clock says: a transaction that
                    // committed just before this claim may have stamped rows after `at`, and
                    // one commit's messages then go out in one round, not split over two.
                    .filter(outbox::next_attempt_at.le(at).or(outbox::next_attempt_at.eq(outbox::created_at)))
                    .filter(outbox::deliver_at.le(horizon))
                    .order((outbox::next_attempt_at, outbox::id))
                    .limit(limit)
            };
        }
        let rows: Vec<OutboxRow> = match c {
            AnyConnection::Postgresql(pg) => query!().for_update().skip_locked().load(pg)?,
            // One writer at a time (BEGIN IMMEDIATE): nothing to skip.
            AnyConnection::Sqlite(lite) => query!().load(lite)?,
        };
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if !ids.is_empty() {
            diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
                .set(outbox::next_attempt_at.eq(lease_until))
                .execute(c)?;
        }
        Ok::<_, DbError>(rows)
    })
}

/// Delivered (confirmed by RabbitMQ, or handled in process).
pub fn mark_done(conn: &mut AnyConnection, ids: &[i64]) -> DbResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::update(outbox::table.filter(outbox::id.eq_any(ids)).filter(outbox::status.eq(OutboxStatus::Pending)))
        .set((outbox::status.eq(OutboxStatus::Done), outbox::done_at.eq(Some(now()))))
        .execute(conn)?)
}

/// Not delivered this time: try again at `next_attempt_at`.
pub fn mark_failed(
    conn: &mut AnyConnection,
    id: i64,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    error: &str,
) -> DbResult<usize> {
    Ok(diesel::update(outbox::table.find(id).filter(outbox::status.eq(OutboxStatus::Pending)))
        .set((
            outbox::attempts.eq(attempts),
            outbox::next_attempt_at.eq(next_attempt_at),
            outbox::last_error.eq(Some(clip(error))),
        ))
        .execute(conn)?)
}

/// Given up on after `attempts` failed handlings; kept for ops (list, retry). By message id, as
/// RabbitMQ consumers know only that. Returns whether a row changed.
pub fn mark_dead(conn: &mut AnyConnection, message_id: &str, attempts: i32, error: &str) -> DbResult<bool> {
    let n = diesel::update(
        outbox::table.filter(outbox::message_id.eq(message_id)).filter(outbox::status.ne(OutboxStatus::Dead)),
    )
    .set((
        outbox::status.eq(OutboxStatus::Dead),
        outbox::attempts.eq(attempts),
        outbox::last_error.eq(Some(clip(error))),
    ))
    .execute(conn)?;
    Ok(n > 0)
}

/// Rows with `status`, newest first.
pub fn list(conn: &mut AnyConnection, status: OutboxStatus, limit: i64) -> DbResult<Vec<OutboxRow>> {
    Ok(outbox::table
        .select(OutboxRow::as_select())
        .filter(outbox::status.eq(status))
        .order(outbox::id.desc())
        .limit(limit)
        .load(conn)?)
}

pub fn list_dead(conn: &mut AnyConnection, limit: i64) -> DbResult<Vec<OutboxRow>> {
    list(conn, OutboxStatus::Dead, limit)
}

pub fn find(conn: &mut AnyConnection, message_id: &str) -> DbResult<Option<OutboxRow>> {
    Ok(outbox::table.select(OutboxRow::as_select()).filter(outbox::message_id.eq(message_id)).first(conn).optional()?)
}

/// A dead message back to pending, due now, its attempts counted from zero. False when there is
/// no dead message with this id.
pub fn requeue(conn: &mut AnyConnection, message_id: &str) -> DbResult<bool> {
    let n = diesel::update(
        outbox::table.filter(outbox::message_id.eq(message_id)).filter(outbox::status.eq(OutboxStatus::Dead)),
    )
    .set((outbox::status.eq(OutboxStatus::Pending), outbox::attempts.eq(0), outbox::next_attempt_at.eq(now())))
    .execute(conn)?;
    Ok(n > 0)
}

/// Delete delivered rows done before `older_than`. Dead rows are kept.
pub fn purge_done(conn: &mut AnyConnection, older_than: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(
        outbox::table.filter(outbox::status.eq(OutboxStatus::Done)).filter(outbox::done_at.lt(older_than)),
    )
    .execute(conn)?)
}

/// Seconds the oldest due pending row has been waiting (0 when none is due): since it became
/// deliverable — written (`next_attempt_at` starts at the write), due (`deliver_at`), and past any
/// retry pause — whichever came last.
pub fn lag(conn: &mut AnyConnection) -> DbResult<f64> {
    let at = now();
    let due: Vec<(NaiveDateTime, NaiveDateTime)> = outbox::table
        .select((outbox::deliver_at, outbox::next_attempt_at))
        .filter(outbox::status.eq(OutboxStatus::Pending))
        .filter(outbox::next_attempt_at.le(at))
        .filter(outbox::deliver_at.le(at))
        .order(outbox::deliver_at.asc())
        .limit(1000)
        .load(conn)?;
    let oldest = due.into_iter().map(|(d, n)| d.max(n)).min();
    Ok(oldest.map_or(0.0, |t| (at - t).num_milliseconds().max(0) as f64 / 1000.0))
}

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}
