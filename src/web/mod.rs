//! HTTP: health, metrics and the ops API. Handlers parse, call, and map errors; nothing more.

pub mod error;
pub mod health;
pub mod nearby;
pub mod ops;
pub mod setup;

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
                .route("/cabinets/{sn}/config", web::get().to(setup::get_config))
                .route("/cabinets/{sn}/config", web::put().to(setup::put_config))
                .route("/cabinets/{sn}/price-tags", web::post().to(setup::send_price_tags))
                .route("/cabinets/{sn}/calibration", web::post().to(setup::start_calibration))
                .route("/cabinets/{sn}/calibration/{step}", web::post().to(setup::calibration_step))
                .route("/cabinets/{sn}/session", web::delete().to(setup::abort_session))
                .route("/cabinets/{sn}/sessions", web::get().to(setup::list_sessions))
                .route("/cabinets/{sn}/commands", web::get().to(setup::list_commands))
                .route("/cabinets/{sn}/weights", web::get().to(setup::live_weights))
                .route("/cabinets/{sn}/weight-log", web::get().to(setup::weight_log))
                .route("/commands/{id}", web::get().to(setup::get_command))
                .route("/cabinet-types", web::get().to(setup::list_cabinet_types))
                .route("/cabinet-types/{name}", web::put().to(setup::put_cabinet_type))
                .route("/alerts", web::get().to(ops::list_alerts)),
        )
        .service(web::scope("/api/v1").route("/cabinets/nearby", web::get().to(nearby::nearby)));
}

/// Malformed query strings and paths get the same JSON error body as everything else.
pub fn json_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::JsonConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()));
}
