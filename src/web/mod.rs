//! HTTP: health, metrics and the ops API. Handlers parse, call, and map errors; nothing more.

pub mod error;
pub mod health;
pub mod ops;

use actix::Addr;
use actix_web::web;

use crate::actors::Shared;
use crate::actors::registry::Registry;

pub use error::ApiError;

/// Shared with every handler.
#[derive(Clone)]
pub struct AppState {
    pub svc: Shared,
    pub registry: Addr<Registry>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/ops")
                .route("/cabinets", web::get().to(ops::list_cabinets))
                .route("/cabinets/{sn}", web::get().to(ops::get_cabinet))
                .route("/cabinets/{sn}/events", web::get().to(ops::cabinet_events))
                .route("/alerts", web::get().to(ops::list_alerts)),
        );
}

/// Malformed query strings and paths get the same JSON error body as everything else.
pub fn json_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::JsonConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()));
}
