//! `/healthz` (the process answers), `/readyz` (its dependencies answer), `/metrics`.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when the database and the cache answer, 503 naming what does not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.svc.db.ping().await;
    let cache = state.svc.cache.ping().await;
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let db = db.map_err(|e| e.to_string());
    let cache = cache.map_err(|e| e.to_string());
    let body = json!({
        "status": if db.is_ok() && cache.is_ok() { "ready" } else { "unavailable" },
        "checks": {"database": show(&db), "cache": show(&cache)},
    });
    if db.is_ok() && cache.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.svc.metrics.render())
}
