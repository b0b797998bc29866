//! Operator accounts: created (by an admin or `heft admin create`) and changed by an admin, and
//! each sign-in recorded. Passwords arrive hashed: hashing is the caller's, off the async threads.

use crate::db::models::{NewOperator, Operator};
use crate::db::operators::{self, OperatorChange};
use crate::db::{self, Db, DbError, DbResult};
use crate::domain::operator::{AccountChange, ChangeRefusal, check_change};
use crate::domain::validation::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("operator {0} not found")]
    NotFound(i64),
    #[error("operator {0} already exists")]
    Duplicate(String),
    #[error(transparent)]
    Refused(#[from] ChangeRefusal),
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

/// A new operator; `Duplicate` when the username is taken.
pub async fn create(db: &Db, new: NewOperator) -> Result<Operator, OperatorError> {
    db.write(move |c| operators::create(c, &new)?.ok_or_else(|| OperatorError::Duplicate(new.username.clone()))).await
}

/// Admin `actor` changes operator `id` (see `domain::operator::check_change`).
pub async fn change(db: &Db, actor: i64, id: i64, change: OperatorChange) -> Result<Operator, OperatorError> {
    db.write(move |c| {
        let admins = operators::active_admins(c)?;
        let current = operators::find(c, id)?.ok_or(OperatorError::NotFound(id))?;
        let asked = AccountChange {
            id,
            role: current.role,
            active: current.active,
            new_role: change.role,
            new_active: change.active,
        };
        check_change(actor, &admins, &asked)?;
        operators::update(c, id, &change, db::now())?.ok_or(OperatorError::NotFound(id))
    })
    .await
}

/// Operator `id` signed in.
pub async fn signed_in(db: &Db, id: i64) -> DbResult<()> {
    db.write(move |c| operators::record_login(c, id, db::now())).await
}
