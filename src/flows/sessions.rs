//! Sessions: opening and ending what holds a cabinet (the device lock). At most one session is
//! open per cabinet: the cabinet's actor serialises its own, and the database's unique index
//! refuses a second from any node.

use chrono::NaiveDateTime;

use crate::db::models::{NewSession, Session};
use crate::db::{self, AnyConnection, Db, DbResult, commands, restock, sessions, write_tx};
use crate::domain::session::Outcome;

/// Open a session inside the caller's transaction; `Ok(Err(held))` when another session holds the
/// cabinet.
///
/// The caller is the cabinet's actor and holds no session when it calls this, so an open session
/// of the same node is an orphan (its end was not stored): it is ended as abandoned.
pub fn open_in(conn: &mut AnyConnection, new: &NewSession) -> DbResult<Result<Session, Session>> {
    if let Some(held) = sessions::current(conn, &new.sn)? {
        if held.node_id != new.node_id {
            return Ok(Err(held));
        }
        let detail = r#"{"reason":"orphan: not held by the actor"}"#;
        close_in(conn, held.id, Outcome::Abandoned, Some(detail), new.started_at)?;
    }
    if let Err(e) = sessions::insert(conn, new) {
        // Opened elsewhere between the read and the insert.
        if e.is_unique_violation()
            && let Some(held) = sessions::current(conn, &new.sn)?
        {
            return Ok(Err(held));
        }
        return Err(e);
    }
    sessions::current(conn, &new.sn)?
        .map(Ok)
        .ok_or_else(|| db::DbError::Corrupt(format!("session for {} vanished", new.sn)))
}

/// End a session once, inside the caller's transaction; whether this call ended it. A restock
/// task the session was working on and did not finish is open again for the next restocker.
pub fn close_in(
    conn: &mut AnyConnection,
    id: i64,
    outcome: Outcome,
    detail: Option<&str>,
    at: NaiveDateTime,
) -> DbResult<bool> {
    write_tx(conn, |conn| {
        let ended = sessions::close(conn, id, outcome, detail, at)?;
        restock::give_back(conn, id, at)?;
        Ok(ended)
    })
}

/// Open a session in its own transaction ([`open_in`]).
pub async fn open(db: &Db, new: NewSession) -> DbResult<Result<Session, Session>> {
    db.write(move |c| open_in(c, &new)).await
}

/// End a session in its own transaction ([`close_in`]).
pub async fn end(db: &Db, id: i64, outcome: Outcome, detail: Option<String>) -> DbResult<bool> {
    db.write(move |c| close_in(c, id, outcome, detail.as_deref(), db::now())).await
}

/// What an earlier actor of this cabinet on this node left behind, when no other actor of it
/// runs here now: its session (`stale`) is abandoned, and its pending commands can never be
/// acked.
pub async fn abandon(db: &Db, sn: String, stale: Option<i64>) -> DbResult<()> {
    db.write(move |c| {
        if let Some(s) = stale {
            close_in(c, s, Outcome::Abandoned, None, db::now())?;
        }
        commands::abandon_pending(c, &sn, db::now()).map(|_| ())
    })
    .await
}
