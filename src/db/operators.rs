//! Operator accounts. Passwords arrive here already hashed; hashing is the caller's, on the
//! blocking pool.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewOperator, Operator};
use super::schema::operators;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::operator::Role;

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<Operator>> {
    Ok(operators::table.find(id).select(Operator::as_select()).first(conn).optional()?)
}

/// By username, as stored (lower-case; see `domain::operator::normalize_username`).
pub fn find_by_username(conn: &mut AnyConnection, username: &str) -> DbResult<Option<Operator>> {
    Ok(operators::table
        .select(Operator::as_select())
        .filter(operators::username.eq(username))
        .first(conn)
        .optional()?)
}

/// Every operator, by id. Operators number in the tens, so there is no paging.
pub fn list(conn: &mut AnyConnection) -> DbResult<Vec<Operator>> {
    Ok(operators::table.select(Operator::as_select()).order(operators::id.asc()).load(conn)?)
}

/// Create an operator (call inside a write transaction); `None` when the username is taken,
/// found before the insert or, when another request took it in between, by the unique key.
pub fn create(conn: &mut AnyConnection, new: &NewOperator) -> DbResult<Option<Operator>> {
    // Checked first because on PostgreSQL a failed insert would poison the caller's transaction.
    if find_by_username(conn, &new.username)?.is_some() {
        return Ok(None);
    }
    match diesel::insert_into(operators::table).values(new).execute(conn).map_err(DbError::from) {
        Err(e) if e.is_unique_violation() => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    match find_by_username(conn, &new.username)? {
        Some(op) => Ok(Some(op)),
        None => Err(DbError::Corrupt(format!("operator {} vanished after insert", new.username))),
    }
}

pub fn record_login(conn: &mut AnyConnection, id: i64, at: NaiveDateTime) -> DbResult<()> {
    diesel::update(operators::table.find(id)).set(operators::last_login_at.eq(Some(at))).execute(conn)?;
    Ok(())
}

/// A change to an operator; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct OperatorChange {
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
}

/// The active admins' ids. On PostgreSQL their rows are locked until the transaction ends, so
/// two admins changing accounts at once take turns (SQLite's write transactions already do).
pub fn active_admins(conn: &mut AnyConnection) -> DbResult<Vec<i64>> {
    let admins = || {
        operators::table
            .select(operators::id)
            .filter(operators::role.eq(Role::Admin))
            .filter(operators::active.eq(true))
    };
    Ok(match conn {
        AnyConnection::Postgresql(c) => admins().for_update().load(c)?,
        AnyConnection::Sqlite(c) => admins().load(c)?,
    })
}

/// Set what `change` names on operator `id`; the operator as it now is, `None` when there is none.
pub fn update(
    conn: &mut AnyConnection,
    id: i64,
    change: &OperatorChange,
    at: NaiveDateTime,
) -> DbResult<Option<Operator>> {
    diesel::update(operators::table.find(id))
        .set((
            change.role.map(|r| operators::role.eq(r)),
            change.active.map(|a| operators::active.eq(a)),
            change.password_hash.as_deref().map(|h| operators::password_hash.eq(h)),
            operators::updated_at.eq(at),
        ))
        .execute(conn)?;
    find(conn, id)
}
