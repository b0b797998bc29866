//! `heft admin create`: make an operator account from the command line, which is how the first
//! admin comes to exist (the API needs an admin to create operators).

use crate::db::models::{NewOperator, Operator};
use crate::db::operators;
use crate::db::{Db, DbError, now};
use crate::domain::operator::{self, Role};
use crate::domain::validation::FieldError;
use crate::flows::operators::{self as operator_flows, OperatorError};
use crate::secrets::{self, SecretError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error(
        "operator {0} already exists; choose another username (an admin can reset a password with PATCH /ops/operators/{{id}})"
    )]
    Exists(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ")
}

impl From<OperatorError> for AdminError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::Duplicate(name) => AdminError::Exists(name),
            OperatorError::Db(e) => AdminError::Db(e),
            other => AdminError::Db(DbError::Corrupt(other.to_string())),
        }
    }
}

impl From<diesel::result::Error> for AdminError {
    fn from(e: diesel::result::Error) -> Self {
        AdminError::Db(e.into())
    }
}

/// A password to print once: 32 random bytes as URL-safe base64 (43 characters).
pub fn generate_password() -> String {
    secrets::new_token()
}

/// Validate, hash (on the blocking pool) and store a new active operator.
pub async fn create_operator(
    db: &Db,
    username: &str,
    password: String,
    role: Role,
    min_password_len: usize,
) -> Result<Operator, AdminError> {
    let username = operator::normalize_username(username);
    let errors: Vec<FieldError> =
        [operator::validate_username(&username), operator::validate_password(&password, min_password_len)]
            .into_iter()
            .filter_map(Result::err)
            .flatten()
            .collect();
    if !errors.is_empty() {
        return Err(AdminError::Invalid(errors));
    }
    let probe = username.clone();
    if db.run(move |c| operators::find_by_username(c, &probe)).await?.is_some() {
        return Err(AdminError::Exists(username));
    }
    let password_hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|_| DbError::Cancelled)??;
    let at = now();
    let new = NewOperator { username, password_hash, role, active: true, created_at: at, updated_at: at };
    Ok(operator_flows::create(db, new).await?)
}
