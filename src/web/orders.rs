//! The shopper's orders: scan a door (`POST /api/v1/orders`), follow the order, the history, an
//! appeal, and cancelling before the door opens.
//!
//! The scan reserves the cabinet and writes the order and its payment in one transaction (through
//! the cabinet's actor, which holds the device lock), then asks the platform for the
//! pre-authorisation. The answer carries what the mini-program needs to open the platform's
//! confirm page; the confirmation comes back as the platform's callback and opens the door.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::shoppers::Shopper;
use super::{ApiError, AppState};
use crate::db::models::{Order, OrderLine, Refund};
use crate::db::{self, DbError, orders};
use crate::domain::cabinet::Sn;
use crate::domain::order::{OrderStatus, Stay};
use crate::domain::review::CaseStatus;
use crate::domain::validation::FieldError;
use crate::flows;
use crate::flows::order::Moved;
use crate::flows::review::AppealFail;
use crate::pay::Channel;

pub use super::order_view::{LineView, OrderView, RefundView, ScanRequest, ScanResponse};

/// Scan a door: reserve the cabinet and start the pre-authorisation.
///
/// Refusals, each with its own `error` code and a `message` to show as is: `shopper_blocked`
/// (403), `unpaid_debt` (402), `channel_not_bound` (403), `order_open` (409), `no_such_door`
/// (404), `cabinet_not_online` (409), `cabinet_busy` (409, with the session holding it).
#[utoipa::path(
    post, path = "/api/v1/orders", tag = "shopper", security(("shopper" = [])), request_body = ScanRequest,
    responses(
        (status = 201, description = "Reserved; open the platform's confirm page with `confirm`", body = ScanResponse, links(("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/order/id")))), ("CancelOrder" = (operation_id = "cancel", parameters(("id" = "$response.body#/order/id")))))),
        (status = 402, description = "unpaid_debt", body = crate::web::error::ErrorBody),
        (status = 403, description = "shopper_blocked, channel_not_bound", body = crate::web::error::ErrorBody),
        (status = 404, description = "no_such_door, or no such cabinet", body = crate::web::error::ErrorBody),
        (status = 409, description = "order_open, cabinet_not_online, cabinet_busy, preauth_declined", body = crate::web::error::ErrorBody),
        (status = 422, description = "A field is invalid", body = crate::web::error::ErrorBody),
        (status = 502, description = "The payment platform failed; nothing is held", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn scan(
    shopper: Shopper,
    state: web::Data<AppState>,
    body: web::Json<ScanRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let sn = Sn::parse(body.sn.trim())
        .map_err(|e| ApiError::Invalid(vec![FieldError::new("sn", "invalid", e.to_string())]))?;
    let channel = Channel::parse(&body.channel)
        .ok_or_else(|| ApiError::Invalid(vec![FieldError::new("channel", "invalid", "wechat or alipay")]))?;
    let (user_id, payer_id) = (shopper.user.id, shopper.user.platform_uid.clone());
    super::cabinet_call::call(
        &state,
        &sn,
        super::cabinet_call::Call::Scan { user_id, payer_id, channel, door: body.door },
    )
    .await
}

/// An order with its lines and refunds, as [`OrderView`] shows it.
pub type OrderDetail = (Order, Vec<OrderLine>, Vec<Refund>);

pub fn detail(c: &mut db::AnyConnection, o: Order) -> Result<OrderDetail, DbError> {
    let lines = orders::lines(c, o.id)?;
    let refunds = db::refunds::for_order(c, o.id)?;
    Ok((o, lines, refunds))
}

async fn own_order(state: &AppState, shopper: &Shopper, id: i64) -> Result<OrderDetail, ApiError> {
    let found = state
        .svc
        .db
        .run(move |c| {
            let Some(o) = orders::find(c, id)? else { return Ok::<_, DbError>(None) };
            Ok(Some(detail(c, o)?))
        })
        .await?;
    // Another shopper's order is "not found", not "forbidden": ids are not to be probed.
    found.filter(|(o, _, _)| o.user_id == shopper.user.id).ok_or_else(|| ApiError::NotFound("order".into()))
}

/// One of the shopper's orders: status, lines, amounts, and the weights it was settled from.
#[utoipa::path(
    get, path = "/api/v1/orders/{id}", operation_id = "get_order", tag = "shopper", security(("shopper" = [])),
    params(("id" = i64, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order of this shopper", body = crate::web::error::ErrorBody),
    )
)]
pub async fn get(shopper: Shopper, state: web::Data<AppState>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let (order, lines, refunds) = own_order(&state, &shopper, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(OrderView::new(&order, &lines, &refunds)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Orders older than this id (the last id of the previous page).
    pub before: Option<i64>,
    /// At most this many (default 20; below 1 or above 100 is taken as 1 or 100).
    pub limit: Option<i64>,
}

/// The shopper's orders, newest first.
#[utoipa::path(
    get, path = "/api/v1/orders", tag = "shopper", security(("shopper" = [])), params(HistoryQuery),
    responses((status = 200, description = "Orders, newest first", body = Vec<OrderView>))
)]
pub async fn history(
    shopper: Shopper,
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let (user, before) = (shopper.user.id, query.before);
    let views = state
        .svc
        .db
        .run(move |c| {
            let list = orders::for_user(c, user, before, limit)?;
            let mut out = Vec::with_capacity(list.len());
            for o in list {
                let (o, lines, refunds) = detail(c, o)?;
                out.push(OrderView::new(&o, &lines, &refunds));
            }
            Ok::<_, DbError>(out)
        })
        .await?;
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealRequest {
    /// What the shopper says is wrong (1 to 500 characters, something visible).
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// What the shopper says they took, per lane (optional).
    #[serde(default)]
    pub claimed: BTreeMap<String, i64>,
}

/// Appeal an order: a person looks at it (the review queue) with its weight trace.
#[utoipa::path(
    post, path = "/api/v1/orders/{id}/appeal", tag = "shopper", security(("shopper" = [])),
    params(("id" = i64, Path, description = "Order id")), request_body = AppealRequest,
    responses(
        (status = 201, description = "A review case is open", body = AppealOpened),
        (status = 404, description = "No such order of this shopper", body = crate::web::error::ErrorBody),
        (status = 409, description = "not_appealable: the order has not been settled", body = crate::web::error::ErrorBody),
    )
)]
pub async fn appeal(
    shopper: Shopper,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<AppealRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let reason = body.reason.trim().to_string();
    if crate::domain::validation::is_blank(&reason) || reason.chars().count() > 500 {
        return Err(ApiError::Invalid(vec![FieldError::new("reason", "invalid", "1 to 500 characters")]));
    }
    let (order, _, _) = own_order(&state, &shopper, path.into_inner()).await?;
    let reasons = serde_json::json!({ "appeal": reason, "claimed": body.claimed }).to_string();
    let by = format!("user:{}", shopper.user.id);
    let case_id = flows::review::appeal(&state.svc.db, &order, reasons, by).await.map_err(|e| match e {
        AppealFail::NotSettled(_) => {
            ApiError::Conflict { code: "not_appealable", message: e.to_string(), detail: None }
        }
        AppealFail::Db(e) => e.into(),
    })?;
    state.svc.live.publish(crate::domain::live::Change::Review { id: case_id });
    Ok(HttpResponse::Created().json(AppealOpened { case_id, order_id: order.id, status: CaseStatus::Open }))
}

/// The review case an appeal opened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppealOpened {
    pub case_id: i64,
    pub order_id: i64,
    pub status: CaseStatus,
}

/// Cancel an order before the door opens (the shopper changed their mind on the confirm page).
#[utoipa::path(
    post, path = "/api/v1/orders/{id}/cancel", tag = "shopper", security(("shopper" = [])),
    params(("id" = i64, Path, description = "Order id")),
    responses(
        (status = 200, description = "Cancelled (or already)", body = OrderView),
        (status = 404, description = "No such order of this shopper", body = crate::web::error::ErrorBody),
        (status = 409, description = "not_cancellable: the door has opened", body = crate::web::error::ErrorBody),
    )
)]
pub async fn cancel(
    shopper: Shopper,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let (order, _, _) = own_order(&state, &shopper, path.into_inner()).await?;
    let id = order.id;
    let (moved, effects) = flows::authorise::shopper_cancel(&state.svc.db, id).await?;
    if let Moved::Stayed(o, Stay::Refused(why)) = &moved
        && o.status != OrderStatus::Cancelled
    {
        return Err(ApiError::Conflict { code: "not_cancellable", message: why.to_string(), detail: None });
    }
    state.svc.effects.run(effects);
    let lines = state.svc.db.run(move |c| orders::lines(c, id)).await?;
    Ok(HttpResponse::Ok().json(OrderView::new(moved.order(), &lines, &[])))
}
