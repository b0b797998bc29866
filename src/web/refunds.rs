//! Refunds for operators: where each stands, and a failed one sent again.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::ApiError;
use super::extract::{AnyRole, Managers, Ops, page_limit};
use crate::db::refunds;
use crate::domain::payment::RefundStatus;
use crate::flows;
use crate::flows::refund::Retried;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundQuery {
    /// requested, processing, succeeded, failed.
    pub status: Option<RefundStatus>,
    pub limit: Option<i64>,
}

/// `GET /ops/refunds?status=failed&limit=` → refunds, newest first. Roles: any.
pub async fn list(ops: Ops<AnyRole>, q: web::Query<RefundQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let list = ops.read(move |c| refunds::list(c, q.status, limit)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "refunds": list })))
}

/// `POST /ops/refunds/{out_refund_no}/retry` — admin, operator: a failed refund sent again under
/// its own number (the platform takes it as the same refund, so it is never given twice).
pub async fn retry(ops: Ops<Managers>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let no = path.into_inner();
    let (retried, effects) = flows::refund::retry(&ops.state.svc.db, no.clone()).await?;
    ops.state.svc.effects.run(effects);
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
