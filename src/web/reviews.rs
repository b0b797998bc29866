//! The review queue: orders a person must look at — the settlement could not read the weights,
//! or the shopper appealed. A case shows the order, its lines, the weights it was settled from and
//! the session's whole weight trace; resolving it charges what the person set (or releases the
//! pre-authorisation when they set nothing), corrects a paid order and refunds the difference, or
//! dismisses an appeal.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{AnyRole, IdPath, Managers, Ops, page_limit};
use super::orders::{OrderView, detail};
use crate::db::models::ReviewCase;
use crate::db::reviews;
use crate::db::weight_log::WeightLogRow;
use crate::db::{DbError, orders, weight_log};
use crate::domain::review::Decision;
use crate::domain::review::{CaseKind, CaseStatus};
use crate::flows;
use crate::flows::review::{Decided, ReviewFail};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    /// open (default) or resolved.
    pub status: Option<CaseStatus>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A review case: why it is open, and how it was decided.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseOut {
    pub id: i64,
    pub order_id: i64,
    pub kind: CaseKind,
    pub status: CaseStatus,
    /// Why a person must look (the settlement's findings, or the shopper's appeal).
    pub reasons: serde_json::Value,
    pub opened_by: String,
    pub resolution: Option<serde_json::Value>,
    pub resolved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<&ReviewCase> for CaseOut {
    fn from(c: &ReviewCase) -> Self {
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
        CaseOut {
            id: c.id,
            order_id: c.order_id,
            kind: c.kind,
            status: c.status,
            reasons: parse(&c.reasons),
            opened_by: c.opened_by.clone(),
            resolution: c.resolution.as_deref().map(parse),
            resolved_by: c.resolved_by.clone(),
            created_at: c.created_at.and_utc(),
            resolved_at: c.resolved_at.map(|t| t.and_utc()),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CasesOut {
    pub cases: Vec<CaseOut>,
}

/// A case with its order and the weight trace of the order's session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseDetail {
    pub case: CaseOut,
    pub order: OrderView,
    pub trace: Vec<WeightLogRow>,
}

/// `GET /ops/reviews?status=open|resolved&limit=` → cases, oldest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/reviews", operation_id = "list_reviews", tag = "ops: money", security(("operator" = [])), params(CaseQuery),
    responses((status = 200, description = "Cases, oldest first", body = CasesOut, links(("GetCase" = (operation_id = "get_review", parameters(("id" = "$response.body#/cases/0/id")))), ("ResolveCase" = (operation_id = "resolve_review", parameters(("id" = "$response.body#/cases/0/id")))))))
)]
pub async fn list(ops: Ops<AnyRole>, q: web::Query<CaseQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let status = q.status.unwrap_or(CaseStatus::Open);
    let cases = ops.read(move |c| reviews::cases(c, Some(status), limit)).await?;
    Ok(HttpResponse::Ok().json(CasesOut { cases: cases.iter().map(CaseOut::from).collect() }))
}

/// `GET /ops/reviews/{id}` → the case, its order with lines and weights, and the weight trace of
/// the order's session. Roles: any.
#[utoipa::path(
    get, path = "/ops/reviews/{id}", operation_id = "get_review", tag = "ops: money", security(("operator" = [])), params(IdPath),
    responses((status = 200, description = "The case", body = CaseDetail))
)]
pub async fn get(ops: Ops<AnyRole>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let found = ops
        .read(move |c| {
            let Some(case) = reviews::find_case(c, id)? else { return Ok::<_, DbError>(None) };
            let Some(order) = orders::find(c, case.order_id)? else { return Ok(None) };
            let trace = match order.session_id {
                Some(s) => weight_log::for_session(c, s)?,
                None => Vec::new(),
            };
            Ok(Some((case, detail(c, order)?, trace)))
        })
        .await?;
    let (case, (order, lines, refunds), trace) =
        found.ok_or_else(|| ApiError::NotFound(format!("review case {id}")))?;
    Ok(HttpResponse::Ok().json(CaseDetail {
        case: CaseOut::from(&case),
        order: OrderView::new(&order, &lines, &refunds),
        trace,
    }))
}

/// An order as operators see it: its lines, refunds and the weight trace of its session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OpsOrder {
    pub order: OrderView,
    /// Every reading of the order's session, oldest first: before, while and after the door was
    /// open.
    pub trace: Vec<WeightLogRow>,
}

/// `GET /ops/orders/{id}` — admin, operator: an order with its lines, refunds and weight trace.
#[utoipa::path(
    get, path = "/ops/orders/{id}", operation_id = "ops_get_order", tag = "ops: money", security(("operator" = [])), params(IdPath),
    responses((status = 200, description = "The order", body = OpsOrder))
)]
pub async fn get_order(ops: Ops<Managers>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let found = ops
        .read(move |c| {
            let Some(order) = orders::find(c, id)? else { return Ok::<_, DbError>(None) };
            let trace = match order.session_id {
                Some(s) => weight_log::for_session(c, s)?,
                None => Vec::new(),
            };
            Ok(Some((detail(c, order)?, trace)))
        })
        .await?;
    let ((order, lines, refunds), trace) = found.ok_or_else(|| ApiError::NotFound(format!("order {id}")))?;
    Ok(HttpResponse::Ok().json(OpsOrder { order: OrderView::new(&order, &lines, &refunds), trace }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineIn {
    /// A lane of the order's door.
    pub lane: String,
    #[schema(minimum = 0)]
    pub qty: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveIn {
    /// `charge` (an order in review: charge `lines`, or release the hold when there are none),
    /// `refund` (a paid order: `lines` are what it should have charged; the difference goes back)
    /// or `dismiss` (an appeal found unfounded).
    pub decision: Decision,
    #[serde(default)]
    pub lines: Vec<LineIn>,
    #[serde(default)]
    pub note: String,
}

/// `POST /ops/reviews/{id}/resolve` — admin, operator: decide a case.
#[utoipa::path(
    post, path = "/ops/reviews/{id}/resolve", operation_id = "resolve_review", tag = "ops: money", security(("operator" = [])), params(IdPath),
    request_body = ResolveIn,
    responses(
        (status = 200, description = "Decided: the order as it now stands", body = OrderView),
        (status = 409, description = "already_resolved, or not_resolvable (the decision does not fit the order)", body = crate::web::error::ErrorBody),
    )
)]
pub async fn resolve(
    ops: Ops<Managers>,
    path: web::Path<i64>,
    body: web::Json<ResolveIn>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let decided = Decided {
        decision: body.decision,
        lines: body.lines.into_iter().map(|l| (l.lane, l.qty)).collect(),
        note: body.note,
        by: ops.user.username.clone(),
    };
    let (order, effects) = flows::review::resolve(&ops.state.svc.db, id, decided).await.map_err(|e| match e {
        ReviewFail::NotFound => ApiError::NotFound(format!("review case {id}")),
        ReviewFail::Resolved => ApiError::Conflict { code: "already_resolved", message: e.to_string(), detail: None },
        ReviewFail::Refused(why) => {
            ApiError::Conflict { code: "not_resolvable", message: why.to_string(), detail: None }
        }
        ReviewFail::Db(e) => e.into(),
    })?;
    ops.state.svc.effects.run(effects);
    let (order, lines, refunds) = ops.read(move |c| detail(c, order)).await?;
    Ok(HttpResponse::Ok().json(OrderView::new(&order, &lines, &refunds)))
}
