//! Operator accounts. Passwords arrive here already hashed; hashing is the caller's, on the
//! blocking pool.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewOperator, Operator};
use super::schema::operators;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::operator::Role;
use crate::domain::validation::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("operator {0} not found")]
    NotFound(i64),
    #[error("operator {0} already exists")]
    Duplicate(String),
    /// The change would lock the acting admin out.
    #[error("{message}")]
    Lockout { code: &'static str, message: String },
    /// The acting admin was disabled or demoted while the request ran.
    #[error("your account is no longer an active admin")]
    NoLongerAdmin,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for OperatorError {
    fn from(e: diesel::result::Error) -> Self {
        OperatorError::Db(e.into())
    }
}

impl OperatorError {
    /// The field error a form shows for a taken username.
    pub fn duplicate_field(username: &str) -> FieldError {
        FieldError::new("username", "duplicate", format!("username {username} is taken"))
    }
}

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

/// Create an operator (call inside a write transaction). A taken username is `Duplicate`, found
/// before the insert or, when another request took it in between, by the unique key.
pub fn create(conn: &mut AnyConnection, new: &NewOperator) -> Result<Operator, OperatorError> {
    // Checked first because on PostgreSQL a failed insert would poison the caller's transaction.
    if find_by_username(conn, &new.username)?.is_some() {
        return Err(OperatorError::Duplicate(new.username.clone()));
    }
    diesel::insert_into(operators::table).values(new).execute(conn).map_err(|e| {
        let e = DbError::from(e);
        if e.is_unique_violation() { OperatorError::Duplicate(new.username.clone()) } else { e.into() }
    })?;
    find_by_username(conn, &new.username)?
        .ok_or_else(|| DbError::Corrupt(format!("operator {} vanished after insert", new.username)).into())
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

/// Apply `change` to operator `id` on behalf of admin `actor` (call inside a write transaction).
///
/// An admin may not demote or disable themself (`self_lockout`), and the actor must still be an
/// active admin when the change is made (`NoLongerAdmin`). Together these keep at least one active
/// admin, even when two admins demote each other at once: on PostgreSQL the active admins' rows
/// are locked first, so the second change waits for the first and then finds its actor demoted;
/// SQLite's write transactions already run one at a time.
pub fn update(
    conn: &mut AnyConnection,
    actor: i64,
    id: i64,
    change: &OperatorChange,
    at: NaiveDateTime,
) -> Result<Operator, OperatorError> {
    let admin = Role::Admin;
    let admins =
        || operators::table.select(operators::id).filter(operators::role.eq(admin)).filter(operators::active.eq(true));
    let active_admins: Vec<i64> = match conn {
        AnyConnection::Postgresql(c) => admins().for_update().load(c)?,
        AnyConnection::Sqlite(c) => admins().load(c)?,
    };
    if !active_admins.contains(&actor) {
        // Disabled or demoted by another admin since the request was authenticated.
        return Err(OperatorError::NoLongerAdmin);
    }
    let current = find(conn, id)?.ok_or(OperatorError::NotFound(id))?;
    let stays_admin =
        change.role.map_or(current.role == admin, |r| r == Role::Admin) && change.active.unwrap_or(current.active);
    if !stays_admin && id == actor {
        return Err(OperatorError::Lockout {
            code: "self_lockout",
            message: "an admin cannot demote or disable their own account; ask another admin".into(),
        });
    }
    diesel::update(operators::table.find(id))
        .set((
            change.role.map(|r| operators::role.eq(r)),
            change.active.map(|a| operators::active.eq(a)),
            change.password_hash.as_deref().map(|h| operators::password_hash.eq(h)),
            operators::updated_at.eq(at),
        ))
        .execute(conn)?;
    find(conn, id)?.ok_or_else(|| OperatorError::NotFound(id))
}
