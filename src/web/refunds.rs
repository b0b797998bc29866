//! Refunds for operators: where each stands, and a failed one sent again.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::auth::{ANY_ROLE, MANAGERS, OpsUser};
use super::ops::page_limit;
use super::{ApiError, AppState};
use crate::db::refunds;
use crate::domain::payment::RefundStatus;
use crate::flows;
use crate::flows::refund::Retried;

#[derive(Debug, Deserialize)]
pub struct RefundQuery {
    /// requested, processing, succeeded, failed.
    pub status: Option<RefundStatus>,
    pub limit: Option<i64>,
}

/// `GET /ops/refunds?status=failed&limit=` → refunds, newest first. Roles: any.
pub async fn list(
    user: OpsUser,
    state: web::Data<AppState>,
    q: web::Query<RefundQuery>,
) -> Result<HttpResponse, ApiError> {
    user.require(ANY_ROLE)?;
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let list = state.svc.db.run(move |c| refunds::list(c, q.status, limit)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "refunds": list })))
}

/// `POST /ops/refunds/{out_refund_no}/retry` — admin, operator: a failed refund sent again under
/// its own number (the platform takes it as the same refund, so it is never given twice).
pub async fn retry(
    user: OpsUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require(MANAGERS)?;
    let no = path.into_inner();
    let (retried, effects) = flows::refund::retry(&state.svc.db, no.clone()).await?;
    state.svc.effects.run(effects);
    match retried {
        Retried::Again(refund) => Ok(HttpResponse::Ok().json(refund)),
        Retried::NotFailed(refund) => Err(ApiError::Conflict {
            code: "not_failed",
            message: format!("refund {no} is {}: only a failed refund is sent again", refund.status),
            detail: None,
        }),
        Retried::NotFound => Err(ApiError::NotFound(format!("refund {no}"))),
    }
}
