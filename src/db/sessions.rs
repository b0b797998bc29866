//! Sessions: what holds a cabinet (the device lock). At most one is open per cabinet; the
//! database enforces it with a partial unique index, so two nodes cannot both open one.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewSession, Session};
use super::schema::sessions;
use super::{AnyConnection, DbError, DbResult, write_tx};
use crate::domain::session::Outcome;

/// Open a session; `Ok(Err(open))` when another session already holds the cabinet.
///
/// The caller is the cabinet's actor and holds no session when it calls this, so an open session
/// of the same node is an orphan (its close was not stored): it is closed as abandoned.
pub fn open(conn: &mut AnyConnection, new: &NewSession) -> DbResult<Result<Session, Session>> {
    if let Some(held) = current(conn, &new.sn)? {
        if held.node_id != new.node_id {
            return Ok(Err(held));
        }
        close(
            conn,
            held.id,
            Outcome::Abandoned,
            Some(r#"{"reason":"orphan: not held by the actor"}"#),
            new.started_at,
        )?;
    }
    // In a savepoint: on PostgreSQL a failed statement would otherwise abort the whole
    // transaction, and the read below could not tell the caller who holds the cabinet.
    match write_tx(conn, |c| diesel::insert_into(sessions::table).values(new).execute(c)) {
        Ok(_) => {}
        // Opened elsewhere between the read and the insert.
        Err(e) => {
            let e = DbError::from(e);
            if e.is_unique_violation()
                && let Some(held) = current(conn, &new.sn)?
            {
                return Ok(Err(held));
            }
            return Err(e);
        }
    }
    current(conn, &new.sn)?.map(Ok).ok_or_else(|| DbError::Corrupt(format!("session for {} vanished", new.sn)))
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

/// End a session once; returns whether this call ended it. A restock task the session was
/// working on and did not finish is open again.
pub fn close(
    conn: &mut AnyConnection,
    id: i64,
    outcome: Outcome,
    detail: Option<&str>,
    at: NaiveDateTime,
) -> DbResult<bool> {
    write_tx(conn, |conn| {
        let n = diesel::update(sessions::table.find(id).filter(sessions::ended_at.is_null()))
            .set((
                sessions::ended_at.eq(Some(at)),
                sessions::outcome.eq(Some(outcome)),
                sessions::detail.eq(detail.map(str::to_string)),
            ))
            .execute(conn)?;
        super::restock::release(conn, id, at)?;
        Ok(n == 1)
    })
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
