//! What every ops handler needs before it does its own work, taken from the request once: an
//! operator whose role the route allows, the cabinet its path names, the page it asks for.
//! Handlers take these as arguments and start with what is theirs.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::auth::{ADMINS, ANY_ROLE, CALIBRATORS, MANAGERS, OpsUser, RESTOCKERS};
use super::{ApiError, AppState};
use crate::db::{AnyConnection, DbResult};
use crate::domain::cabinet::Sn;
use crate::domain::operator::Role;

/// The roles a route allows.
pub trait Allowed {
    const ROLES: &'static [Role];
}

macro_rules! allowed {
    ($($(#[$doc:meta])* $name:ident = $roles:expr;)+) => { $(
        $(#[$doc])*
        pub struct $name;
        impl Allowed for $name {
            const ROLES: &'static [Role] = $roles;
        }
    )+ };
}

allowed! {
    /// Any operator: reading the fleet's state.
    AnyRole = ANY_ROLE;
    /// Changing the catalogue and the fleet's configuration.
    Managers = MANAGERS;
    /// Operator accounts.
    Admins = ADMINS;
    /// Calibrating lanes.
    Calibrators = CALIBRATORS;
    /// Opening a door to restock it.
    Restockers = RESTOCKERS;
}

/// An operator the route allows (401 without a valid token, 403 for a role it does not allow),
/// with the services handlers use.
pub struct Ops<R> {
    pub user: OpsUser,
    pub state: web::Data<AppState>,
    allowed: PhantomData<R>,
}

impl<R: Allowed> FromRequest for Ops<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = OpsUser::from_request(req, payload);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let user = user.await?;
            user.require(R::ROLES)?;
            let state = state.ok_or_else(|| ApiError::internal("AppState missing"))?;
            Ok(Ops { user, state, allowed: PhantomData })
        })
    }
}

impl<R> Ops<R> {
    /// Read from the database on its blocking pool. Writes go through `flows`.
    pub async fn read<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut AnyConnection) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.state.svc.db.run(query).await?)
    }
}

/// An operator the route allows, acting on the cabinet `{sn}` of the path: 400 when it is no
/// serial number, 404 when there is no such cabinet, whatever the sub-resource. The role is
/// checked first: a refused operator learns nothing of the path.
pub struct OpsCabinet<R> {
    pub ops: Ops<R>,
    pub sn: Sn,
}

impl<R: Allowed + 'static> FromRequest for OpsCabinet<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let ops = Ops::<R>::from_request(req, payload);
        let raw = req.match_info().get("sn").unwrap_or_default().to_string();
        Box::pin(async move {
            let ops = ops.await?;
            let sn = parse_sn(&raw)?;
            let key = sn.to_string();
            if !ops.read(move |c| crate::db::cabinets::exists(c, &key)).await? {
                return Err(ApiError::NotFound(format!("cabinet {sn}")));
            }
            Ok(OpsCabinet { ops, sn })
        })
    }
}

pub fn parse_sn(raw: &str) -> Result<Sn, ApiError> {
    Sn::parse(raw).map_err(|e| ApiError::BadRequest(format!("invalid serial number: {e}")))
}

/// The most rows one page of a list holds.
pub const MAX_PAGE: i64 = 500;

/// A list's `limit` (default 100), 400 outside 1..=[`MAX_PAGE`].
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(100) {
        n if (1..=MAX_PAGE).contains(&n) => Ok(n),
        n => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}, got {n}"))),
    }
}

/// The `{sn}` of a cabinet's path, as the spec declares it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SnPath {
    /// The cabinet's serial number: ASCII letters, digits, '-' and '_' (400 otherwise; 404 when
    /// there is no such cabinet).
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$", example = "SN-0001")]
    pub sn: String,
}

/// The `{id}` of a stored record's path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    #[param(example = 1)]
    pub id: i64,
}
