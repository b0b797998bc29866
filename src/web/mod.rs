//! HTTP: health, metrics, operator sign-in and the ops API. Handlers parse, call, and map errors; nothing more.

pub mod auth;
pub mod bearer;
pub mod catalogue;
pub mod error;
pub mod extract;
pub mod health;
pub mod messages;
pub mod nearby;
pub mod openapi;
pub mod operators;
pub mod ops;
pub mod orders;
pub mod pay_notify;
pub mod refunds;
pub mod restock;
mod reviews;
pub mod setup;
pub mod shoppers;

use std::sync::Arc;

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
    /// sn → cabinet actor on this node (read-only here; the registry writes it).
    pub cabinets: crate::actors::registry::Cabinets,
    /// Operator tokens, the login limiter and the password-hashing pool.
    pub auth: Arc<auth::AuthState>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(openapi::routes)
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/ops")
                .route("/auth/login", web::post().to(auth::login))
                .route("/operators", web::post().to(operators::create))
                .route("/operators", web::get().to(operators::list))
                .route("/operators/{id}", web::patch().to(operators::patch))
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
                .route("/cabinets/{sn}/restock", web::post().to(restock::start_restock))
                .route("/cabinets/{sn}/maintenance", web::post().to(restock::start_maintenance))
                .route("/restock-tasks", web::get().to(restock::list))
                .route("/restock-tasks/{id}", web::get().to(restock::get))
                .route("/reviews", web::get().to(reviews::list))
                .route("/reviews/{id}", web::get().to(reviews::get))
                .route("/reviews/{id}/resolve", web::post().to(reviews::resolve))
                .route("/refunds", web::get().to(refunds::list))
                .route("/refunds/{out_refund_no}/retry", web::post().to(refunds::retry))
                .route("/cabinets/{sn}/weights", web::get().to(setup::live_weights))
                .route("/cabinets/{sn}/weight-log", web::get().to(setup::weight_log))
                .route("/commands/{id}", web::get().to(setup::get_command))
                .route("/cabinet-types", web::get().to(setup::list_cabinet_types))
                .route("/cabinet-types/{name}", web::put().to(setup::put_cabinet_type))
                .route("/alerts", web::get().to(ops::list_alerts))
                .route("/messages", web::get().to(messages::list))
                .route("/messages/{id}/retry", web::post().to(messages::retry))
                .route("/payments/{out_order_no}", web::get().to(pay_notify::ops_payment))
                .route("/products", web::post().to(catalogue::create))
                .route("/products", web::get().to(catalogue::list))
                .route("/products/{id}", web::get().to(catalogue::get))
                .route("/products/{id}", web::put().to(catalogue::replace))
                .route("/products/{id}", web::delete().to(catalogue::delete)),
        )
        .service(
            web::scope("/api/v1")
                .route("/auth/wechat", web::post().to(shoppers::login_wechat))
                .route("/auth/alipay", web::post().to(shoppers::login_alipay))
                .route("/me", web::get().to(shoppers::me))
                .route("/orders", web::post().to(orders::scan))
                .route("/orders", web::get().to(orders::history))
                .route("/orders/{id}", web::get().to(orders::get))
                .route("/orders/{id}/appeal", web::post().to(orders::appeal))
                .route("/orders/{id}/cancel", web::post().to(orders::cancel))
                .route("/cabinets/nearby", web::get().to(nearby::nearby)),
        )
        .service(
            web::scope("/pay")
                .route("/wechat/notify", web::post().to(pay_notify::wechat))
                .route("/alipay/notify", web::post().to(pay_notify::alipay)),
        );
}

/// Malformed query strings and paths get the same JSON error body as everything else.
pub fn json_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::JsonConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()));
}
