//! Operator accounts, managed by admins. Password hashes never leave: responses carry
//! [`OperatorOut`].

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{Admins, IdPath, Ops};
use super::ops::utc;
use crate::db;
use crate::db::models::{NewOperator, Operator};
use crate::db::operators::{self, OperatorChange};
use crate::domain::operator::ChangeRefusal;
use crate::domain::operator::{self, Role};
use crate::domain::validation::FieldError;
use crate::flows::{self, operators::OperatorError};

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct OperatorOut {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<Operator> for OperatorOut {
    fn from(o: Operator) -> Self {
        OperatorOut {
            id: o.id,
            username: o.username,
            role: o.role,
            active: o.active,
            created_at: o.created_at.and_utc(),
            updated_at: o.updated_at.and_utc(),
            last_login_at: utc(o.last_login_at),
        }
    }
}

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::NotFound(id) => ApiError::NotFound(format!("operator {id}")),
            OperatorError::Duplicate(name) => ApiError::Invalid(vec![OperatorError::duplicate_field(&name)]),
            OperatorError::Refused(ChangeRefusal::SelfLockout) => {
                ApiError::Conflict { code: "self_lockout", message: e.to_string(), detail: None }
            }
            OperatorError::Refused(ChangeRefusal::NoLongerAdmin) => ApiError::Forbidden(e.to_string()),
            OperatorError::Db(e) => e.into(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    /// 3–32 ASCII letters, digits, '.', '_' or '-' (compared without case).
    #[schema(pattern = r"^[A-Za-z0-9._-]{3,32}$")]
    pub username: String,
    /// At least `auth.min_password_len` characters (the spec states this node's), at most 128.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Text, so an unknown role is a field error rather than an unreadable body.
    #[schema(value_type = Role)]
    pub role: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperatorsOut {
    pub operators: Vec<OperatorOut>,
}

/// `POST /ops/operators` {username, password, role} → 201 with the operator. Roles: admin.
#[utoipa::path(
    post, path = "/ops/operators", operation_id = "create_operator", tag = "ops: operators", security(("operator" = [])), request_body = CreateOperator,
    responses(
        (status = 201, description = "Created", body = OperatorOut),
        (status = 422, description = "A field is refused (a username taken, a weak password, …)", body = crate::web::error::ErrorBody),
    )
)]
pub async fn create(ops: Ops<Admins>, body: web::Json<CreateOperator>) -> Result<HttpResponse, ApiError> {
    let CreateOperator { username, password, role } = body.into_inner();
    let username = operator::normalize_username(&username);
    let mut errors: Vec<FieldError> = [
        operator::validate_username(&username),
        operator::validate_password(&password, ops.state.auth.min_password_len),
    ]
    .into_iter()
    .filter_map(Result::err)
    .flatten()
    .collect();
    let role = match operator::parse_role("role", &role) {
        Ok(role) if errors.is_empty() => role,
        Ok(_) => return Err(ApiError::Invalid(errors)),
        Err(e) => {
            errors.push(e);
            return Err(ApiError::Invalid(errors));
        }
    };
    // Refuse a taken name before spending a hash on it; the insert checks again.
    let probe = username.clone();
    if ops.read(move |c| operators::find_by_username(c, &probe)).await?.is_some() {
        return Err(OperatorError::Duplicate(username).into());
    }
    let password_hash = ops.state.auth.hash_password(password).await?;
    let at = db::now();
    let new = NewOperator { username, password_hash, role, active: true, created_at: at, updated_at: at };
    let created = flows::operators::create(&ops.state.svc.db, new).await?;
    tracing::info!(by = %ops.user.username, operator = %created.username, role = %created.role, "operator created");
    Ok(HttpResponse::Created().json(OperatorOut::from(created)))
}

/// `GET /ops/operators` → every operator, by id. Roles: admin.
#[utoipa::path(
    get, path = "/ops/operators", operation_id = "list_operators", tag = "ops: operators", security(("operator" = [])),
    responses((status = 200, description = "Every operator", body = OperatorsOut))
)]
pub async fn list(ops: Ops<Admins>) -> Result<HttpResponse, ApiError> {
    let rows = ops.read(operators::list).await?;
    let out: Vec<OperatorOut> = rows.into_iter().map(OperatorOut::from).collect();
    Ok(HttpResponse::Ok().json(OperatorsOut { operators: out }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchOperator {
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    pub active: Option<bool>,
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

/// `PATCH /ops/operators/{id}` {role?, active?, password?} → the operator. Roles: admin.
/// An admin cannot demote or disable themself (409 `self_lockout`), so one active admin always
/// remains.
#[utoipa::path(
    patch, path = "/ops/operators/{id}", operation_id = "patch_operator", tag = "ops: operators", security(("operator" = [])), params(IdPath),
    request_body = PatchOperator,
    responses(
        (status = 200, description = "Changed", body = OperatorOut),
        (status = 409, description = "self_lockout: an admin cannot demote or disable themself", body = crate::web::error::ErrorBody),
        (status = 422, description = "A field is refused", body = crate::web::error::ErrorBody),
    )
)]
pub async fn patch(
    ops: Ops<Admins>,
    path: web::Path<i64>,
    body: web::Json<PatchOperator>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let PatchOperator { role, active, password } = body.into_inner();
    let mut errors = Vec::new();
    let role = role.and_then(|r| operator::parse_role("role", &r).map_err(|e| errors.push(e)).ok());
    if let Some(Err(e)) = password.as_deref().map(|p| operator::validate_password(p, ops.state.auth.min_password_len)) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let password_hash = match password {
        Some(p) => Some(ops.state.auth.hash_password(p).await?),
        None => None,
    };
    let changed_password = password_hash.is_some();
    let change = OperatorChange { role, active, password_hash };
    let updated = flows::operators::change(&ops.state.svc.db, ops.user.id, id, change).await?;
    // Their live sockets are checked again: a disabled account's are closed.
    ops.state.svc.live.publish(crate::domain::live::Change::Operator { id: updated.id });
    tracing::info!(
        by = %ops.user.username, operator = %updated.username, role = %updated.role, active = updated.active,
        changed_password, "operator changed"
    );
    Ok(HttpResponse::Ok().json(OperatorOut::from(updated)))
}
