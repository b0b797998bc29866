//! Refunds for operators: where each stands, and a failed one sent again.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::auth::{ANY_ROLE, MANAGERS, OpsUser};
use super::ops::page_limit;
use super::{ApiError, AppState};
use crate::db::{self, DbError, refunds};
use crate::domain::payment::RefundStatus;

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
    let key = no.clone();
    let (retried, refund) = state
        .svc
        .db
        .write(move |c| Ok::<_, DbError>((refunds::retry(c, &key, db::now())?, refunds::find(c, &key)?)))
        .await?;
    let refund = refund.ok_or_else(|| ApiError::NotFound(format!("refund {no}")))?;
    if !retried {
        return Err(ApiError::Conflict {
            code: "not_failed",
            message: format!("refund {no} is {}: only a failed refund is sent again", refund.status),
            detail: None,
        });
    }
    state.svc.relay.wake();
    Ok(HttpResponse::Ok().json(refund))
}
