//! Sessions, as stored: what holds a cabinet (the device lock). At most one is open per cabinet;
//! the database enforces it with a partial unique index, so two nodes cannot both open one.
//! Opened and closed by `flows::sessions`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewSession, Session};
use super::schema::sessions;
use super::{AnyConnection, DbError, DbResult, write_tx};
use crate::domain::session::Outcome;

/// Insert a session, in a savepoint: on PostgreSQL a failed statement would otherwise abort the
/// caller's whole transaction, and it could not read who holds the cabinet. A unique violation
/// means another session holds it.
pub fn insert(conn: &mut AnyConnection, new: &NewSession) -> DbResult<()> {
    write_tx(conn, |c| diesel::insert_into(sessions::table).values(new).execute(c).map_err(DbError::from))?;
    Ok(())
}

/// The open session of a cabinet, if any.
pub fn current(conn: &mut AnyConnection, sn: &str) -> DbResult<Option<Session>> {
    Ok(sessions::table
        .select(Session::as_select())
        .filter(sessions::sn.eq(sn))
        .filter(sessions::ended_at.is_null())
        .first(conn)
        .optional()?)
}

/// Keep the weights a settlement judged with the session.
pub fn set_evidence(conn: &mut AnyConnection, id: i64, evidence: &str) -> DbResult<()> {
    diesel::update(sessions::table.find(id)).set(sessions::evidence.eq(Some(evidence))).execute(conn)?;
    Ok(())
}

/// End a session once; returns whether this call ended it.
pub fn close(
    conn: &mut AnyConnection,
    id: i64,
    outcome: Outcome,
    detail: Option<&str>,
    at: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(sessions::table.find(id).filter(sessions::ended_at.is_null()))
        .set((
            sessions::ended_at.eq(Some(at)),
            sessions::outcome.eq(Some(outcome)),
            sessions::detail.eq(detail.map(str::to_string)),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Whether the session is still open, holding its row for the rest of the transaction on
/// PostgreSQL (SQLite has one writer), so two ends of one session cannot both go through.
pub fn lock_open(conn: &mut AnyConnection, id: i64) -> DbResult<bool> {
    macro_rules! query {
        () => {
            sessions::table.find(id).filter(sessions::ended_at.is_null()).select(sessions::id)
        };
    }
    let found: Option<i64> = match conn {
        AnyConnection::Postgresql(c) => query!().for_update().first(c).optional()?,
        AnyConnection::Sqlite(c) => query!().first(c).optional()?,
    };
    Ok(found.is_some())
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<Session>> {
    Ok(sessions::table.find(id).select(Session::as_select()).first(conn).optional()?)
}

/// Newest first.
pub fn list(conn: &mut AnyConnection, sn: &str, limit: i64) -> DbResult<Vec<Session>> {
    Ok(sessions::table
        .select(Session::as_select())
        .filter(sessions::sn.eq(sn))
        .order(sessions::id.desc())
        .limit(limit)
        .load(conn)?)
}
