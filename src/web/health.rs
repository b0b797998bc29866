//! `/healthz` (the process answers), `/readyz` (its dependencies answer), `/metrics`.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// Always `ok`.
    pub status: &'static str,
}

/// The process answers (a liveness probe: it says nothing of the database or the cache).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Alive)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`, or `unavailable` when a check fails.
    #[schema(pattern = "^(ready|unavailable)$")]
    pub status: &'static str,
    pub checks: Checks,
}

/// Each dependency: `ok`, or what is wrong with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checks {
    pub database: String,
    pub cache: String,
    /// The cabinets' ownership leases: `ok` while the last renewal round reached the cache
    /// within a lease's life; else the node may no longer own its cabinets.
    pub leases: String,
    /// Ownership leases this node holds.
    pub cabinets_owned: usize,
}

/// 200 when the database and the cache answer and the node's leases are renewed, 503 naming
/// what is wrong.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "A dependency does not answer; `checks` says which", body = Ready),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.svc.db.ping().await.map_err(|e| e.to_string());
    let cache = state.svc.cache.ping().await.map_err(|e| e.to_string());
    let health = state.svc.ownership.health();
    let leases = match health.healthy {
        true => Ok(()),
        false => Err(format!("not renewed since {} (Unix ms)", health.renewed_ms)),
    };
    let ready = db.is_ok() && cache.is_ok() && leases.is_ok();
    let show = |r: Result<(), String>| r.map_or_else(|e| e, |()| "ok".to_string());
    let body = Ready {
        status: if ready { "ready" } else { "unavailable" },
        checks: Checks { database: show(db), cache: show(cache), leases: show(leases), cabinets_owned: health.owned },
    };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.svc.metrics.render())
}
