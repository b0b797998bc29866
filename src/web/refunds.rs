//! Refunds for operators: where each stands, and a failed one sent again.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, Managers, Ops, page_limit};
use crate::db::models::Refund;
use crate::db::refunds;
use crate::domain::payment::RefundStatus;
use crate::flows;
use crate::flows::refund::Retried;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RefundQuery {
    pub status: Option<RefundStatus>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundsOut {
    pub refunds: Vec<Refund>,
}

/// `GET /ops/refunds?status=failed&limit=` → refunds, newest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/refunds", operation_id = "list_refunds", tag = "ops: money", security(("operator" = [])), params(RefundQuery),
    responses((status = 200, description = "Refunds, newest first", body = RefundsOut, links(("RetryRefund" = (operation_id = "retry_refund", parameters(("out_refund_no" = "$response.body#/refunds/0/out_refund_no")))), ("GetPayment" = (operation_id = "ops_payment", parameters(("out_order_no" = "$response.body#/refunds/0/out_order_no")))))))
)]
pub async fn list(ops: Ops<AnyRole>, q: web::Query<RefundQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let list = ops.read(move |c| refunds::list(c, q.status, limit)).await?;
    Ok(HttpResponse::Ok().json(RefundsOut { refunds: list }))
}

/// `POST /ops/refunds/{out_refund_no}/retry` — admin, operator: a failed refund sent again under
/// its own number (the platform takes it as the same refund, so it is never given twice).
#[utoipa::path(
    post, path = "/ops/refunds/{out_refund_no}/retry", operation_id = "retry_refund", tag = "ops: money", security(("operator" = [])),
    params(("out_refund_no" = String, Path, description = "The refund's number")),
    responses(
        (status = 200, description = "Sent again", body = Refund),
        (status = 404, description = "No such refund", body = crate::web::error::ErrorBody),
        (status = 409, description = "not_failed: only a failed refund is sent again", body = crate::web::error::ErrorBody),
    )
)]
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
