//! The ops API for the fleet. Every route needs an operator token (`Authorization: Bearer <jwt>`
//! from `POST /ops/auth/login`); each states the roles it allows.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
pub use super::cabinet_call::ConnectionOut;
use super::extract::{AnyRole, Ops, OpsCabinet, SnPath, page_limit};
use crate::db::alerts::{self, AlertFilter};
use crate::db::cabinets::{self, CabinetFilter};
use crate::db::models::{Alert, Cabinet, CabinetEvent};
use crate::domain::alert::AlertCode;
use crate::domain::cabinet::{CabinetEventKind, CabinetStatus};
use crate::domain::liveness::Liveness;

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CabinetOut {
    pub sn: String,
    #[serde(rename = "type")]
    pub cabinet_type: String,
    /// Lifecycle: `initializing` until configured and calibrated, then `ready`; or `disabled`.
    pub status: CabinetStatus,
    /// Reachability: `online`, `suspect` or `offline`.
    pub liveness: Liveness,
    /// Ready and online: a shopper may use it.
    pub sellable: bool,
    /// The node holding its connection, as of its last login.
    pub node: Option<String>,
    pub firmware: Option<String>,
    pub boot: i64,
    /// GCJ-02 (the datum of Amap and Tencent maps).
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub liveness_changed_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub temperature_c: Option<f64>,
    pub heating: Option<bool>,
    /// The cabinet's MQTT connection (its login session, not an ops session) as its actor sees
    /// it, when the actor is on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionOut>,
}

pub(super) fn utc(t: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.and_utc())
}

fn cabinet_out(c: Cabinet, facts: &HashMap<String, String>) -> CabinetOut {
    let sellable = crate::domain::cabinet::sellable(c.status, c.liveness);
    CabinetOut {
        sellable,
        last_heartbeat_at: facts
            .get("last_heartbeat_ms")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis),
        temperature_c: facts.get("temperature_c").and_then(|v| v.parse().ok()),
        heating: facts.get("heating").and_then(|v| v.parse().ok()),
        sn: c.sn,
        cabinet_type: c.cabinet_type,
        status: c.status,
        liveness: c.liveness,
        node: c.node_id,
        firmware: c.firmware,
        boot: c.last_boot,
        lat: c.lat,
        lng: c.lng,
        last_login_at: utc(c.last_login_at),
        liveness_changed_at: utc(c.liveness_changed_at),
        connection: None,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[param(value_type = Option<CabinetStatus>)]
    pub status: Option<String>,
    #[param(value_type = Option<Liveness>)]
    pub liveness: Option<String>,
    /// Keyset paging: the `next_after` of the previous page.
    pub after: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CabinetPage {
    pub cabinets: Vec<CabinetOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodesOut {
    /// The node that answered.
    pub this: String,
    /// Every node that reported itself within three renewal rounds, by id.
    pub nodes: Vec<crate::actors::ownership::NodeReport>,
}

/// `GET /ops/nodes` → the cluster's nodes: the cabinets each owns, its connections and its last
/// lease renewal. Roles: any.
#[utoipa::path(
    get, path = "/ops/nodes", tag = "ops: fleet", security(("operator" = [])),
    responses((status = 200, description = "The nodes", body = NodesOut))
)]
pub async fn list_nodes(ops: Ops<AnyRole>) -> Result<HttpResponse, ApiError> {
    let svc = &ops.state.svc;
    let mut nodes = Vec::new();
    for (id, json) in svc.cache.node_reports().await? {
        match serde_json::from_str(&json) {
            Ok(report) => nodes.push(report),
            Err(e) => tracing::warn!(node = %id, error = %e, "node report does not read"),
        }
    }
    Ok(HttpResponse::Ok().json(NodesOut { this: svc.node_id().to_string(), nodes }))
}

/// `GET /ops/cabinets?status=&liveness=&after=&limit=` → cabinets by serial number, paged. Roles:
/// any.
#[utoipa::path(
    get, path = "/ops/cabinets", tag = "ops: fleet", security(("operator" = [])), params(ListQuery),
    responses((status = 200, description = "A page of cabinets", body = CabinetPage))
)]
pub async fn list_cabinets(ops: Ops<AnyRole>, q: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let filter = CabinetFilter {
        status: q
            .status
            .as_deref()
            .map(|s| CabinetStatus::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown status {s:?}"))))
            .transpose()?,
        liveness: q
            .liveness
            .as_deref()
            .map(|s| Liveness::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown liveness {s:?}"))))
            .transpose()?,
        after: q.after,
    };
    let limit = page_limit(q.limit)?;
    let rows = ops.read(move |c| cabinets::list(c, &filter, limit)).await?;
    let next_after = (rows.len() as i64 == limit).then(|| rows.last().map(|c| c.sn.clone())).flatten();
    let sns: Vec<String> = rows.iter().map(|c| c.sn.clone()).collect();
    let facts = ops.state.svc.cache.cabinet_get_many(&sns).await?;
    let out: Vec<CabinetOut> = rows.into_iter().zip(facts.iter()).map(|(row, f)| cabinet_out(row, f)).collect();
    Ok(HttpResponse::Ok().json(CabinetPage { cabinets: out, next_after }))
}

/// `GET /ops/cabinets/{sn}` → one cabinet, with its session as this node sees it. Roles: any.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}", tag = "ops: fleet", security(("operator" = [])), params(SnPath),
    responses((status = 200, description = "The cabinet", body = CabinetOut))
)]
pub async fn get_cabinet(OpsCabinet { ops, sn }: OpsCabinet<AnyRole>) -> Result<HttpResponse, ApiError> {
    let key = sn.to_string();
    let row =
        ops.read(move |c| cabinets::find(c, &key)).await?.ok_or_else(|| ApiError::NotFound(format!("cabinet {sn}")))?;
    let facts = ops.state.svc.cache.cabinet_get(sn.as_str()).await?;
    let mut out = cabinet_out(row, &facts);
    // Asked of the node that owns the cabinet; a cabinet connected nowhere has none.
    out.connection = match super::cabinet_call::ask(&ops.state, &sn, super::cabinet_call::Call::Connection).await {
        Ok(answer) => serde_json::from_value(answer.body).ok(),
        Err(_) => None,
    };
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[param(value_type = Option<CabinetEventKind>)]
    pub kind: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsOut {
    pub events: Vec<CabinetEvent>,
}

/// `GET /ops/cabinets/{sn}/events?kind=&limit=` → its events, newest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/events", tag = "ops: fleet", security(("operator" = [])),
    params(SnPath, EventsQuery),
    responses((status = 200, description = "Its events, newest first", body = EventsOut))
)]
pub async fn cabinet_events(
    OpsCabinet { ops, sn }: OpsCabinet<AnyRole>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(q.limit)?;
    let kind = q
        .into_inner()
        .kind
        .map(|k| CabinetEventKind::parse(&k).ok_or_else(|| ApiError::BadRequest(format!("unknown kind {k:?}"))))
        .transpose()?;
    let key = sn.to_string();
    let (exists, events): (bool, Vec<CabinetEvent>) = ops
        .read(move |c| {
            let exists = cabinets::find(c, &key)?.is_some();
            Ok::<_, crate::db::DbError>((exists, cabinets::events(c, &key, kind, limit)?))
        })
        .await?;
    if !exists {
        return Err(ApiError::NotFound(format!("cabinet {sn}")));
    }
    Ok(HttpResponse::Ok().json(EventsOut { events }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    #[param(value_type = Option<AlertCode>)]
    pub code: Option<String>,
    pub sn: Option<String>,
    /// Only alerts not yet resolved (default false).
    pub open: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertsOut {
    pub alerts: Vec<Alert>,
}

/// `GET /ops/alerts?code=&sn=&open=&limit=` → alerts, newest first. Roles: any.
#[utoipa::path(
    get, path = "/ops/alerts", tag = "ops: fleet", security(("operator" = [])), params(AlertsQuery),
    responses((status = 200, description = "Alerts, newest first", body = AlertsOut))
)]
pub async fn list_alerts(ops: Ops<AnyRole>, q: web::Query<AlertsQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = page_limit(q.limit)?;
    let code = q
        .code
        .map(|c| AlertCode::parse(&c).ok_or_else(|| ApiError::BadRequest(format!("unknown alert code {c:?}"))))
        .transpose()?;
    let filter = AlertFilter { code, sn: q.sn, open_only: q.open.unwrap_or(false) };
    let rows: Vec<Alert> = ops.read(move |c| alerts::list(c, &filter, limit)).await?;
    Ok(HttpResponse::Ok().json(AlertsOut { alerts: rows }))
}
