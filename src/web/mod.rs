//! HTTP: health, metrics, operator sign-in and the ops API. Handlers parse, call, and map errors; nothing more.

pub mod auth;
pub mod bearer;
pub mod bills;
pub mod cabinet_call;
pub mod catalogue;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod health;
pub mod input;
pub mod live;
pub mod messages;
pub mod nearby;
pub mod openapi;
pub mod operators;
pub mod ops;
pub mod order_view;
pub mod orders;
pub mod pay_notify;
pub mod refunds;
pub mod reports;
pub mod restock;
mod reviews;
mod scan;
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
    /// The live view's hub (`/ops/live`).
    pub live: crate::actors::live::Hub,
}

/// Every route; `spec` is the OpenAPI document served at `/api-docs/openapi.json`.
pub fn routes(spec: serde_json::Value) -> impl Fn(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.configure(openapi::routes(spec.clone())).configure(dashboard::routes).configure(api_routes);
    }
}

fn api_routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that a method a path does not take is 405 with `Allow` (the
    // input middleware gives it the JSON error body), not a 404.
    cfg.service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/metrics").route(web::get().to(health::metrics)))
        .service(web::scope("/ops").configure(ops_routes))
        .service(
            web::scope("/api/v1")
                .service(web::resource("/auth/wechat").route(web::post().to(shoppers::login_wechat)))
                .service(web::resource("/auth/alipay").route(web::post().to(shoppers::login_alipay)))
                .service(web::resource("/me").route(web::get().to(shoppers::me)))
                .service(
                    web::resource("/orders").route(web::post().to(orders::scan)).route(web::get().to(orders::history)),
                )
                .service(web::resource("/orders/{id}").route(web::get().to(orders::get)))
                .service(web::resource("/orders/{id}/appeal").route(web::post().to(orders::appeal)))
                .service(web::resource("/orders/{id}/cancel").route(web::post().to(orders::cancel)))
                .service(web::resource("/cabinets/nearby").route(web::get().to(nearby::nearby))),
        )
        .service(
            web::scope("/pay")
                .service(web::resource("/wechat/notify").route(web::post().to(pay_notify::wechat)))
                .service(web::resource("/alipay/notify").route(web::post().to(pay_notify::alipay))),
        );
}

/// The ops API, under `/ops`.
fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/login").route(web::post().to(auth::login)))
        .service(web::resource("/live").route(web::get().to(live::live)))
        .service(
            web::resource("/operators").route(web::post().to(operators::create)).route(web::get().to(operators::list)),
        )
        .service(web::resource("/operators/{id}").route(web::patch().to(operators::patch)))
        .service(web::resource("/cabinets").route(web::get().to(ops::list_cabinets)))
        .service(web::resource("/nodes").route(web::get().to(ops::list_nodes)))
        .service(web::resource("/cabinets/{sn}").route(web::get().to(ops::get_cabinet)))
        .service(web::resource("/cabinets/{sn}/events").route(web::get().to(ops::cabinet_events)))
        .service(
            web::resource("/cabinets/{sn}/config")
                .route(web::get().to(setup::get_config))
                .route(web::put().to(setup::put_config)),
        )
        .service(web::resource("/cabinets/{sn}/price-tags").route(web::post().to(setup::send_price_tags)))
        .service(web::resource("/cabinets/{sn}/calibration").route(web::post().to(setup::start_calibration)))
        .service(web::resource("/cabinets/{sn}/calibration/{step}").route(web::post().to(setup::calibration_step)))
        .service(web::resource("/cabinets/{sn}/session").route(web::delete().to(setup::abort_session)))
        .service(web::resource("/cabinets/{sn}/sessions").route(web::get().to(setup::list_sessions)))
        .service(web::resource("/cabinets/{sn}/commands").route(web::get().to(setup::list_commands)))
        .service(web::resource("/cabinets/{sn}/restock").route(web::post().to(restock::start_restock)))
        .service(web::resource("/cabinets/{sn}/maintenance").route(web::post().to(restock::start_maintenance)))
        .service(web::resource("/restock-tasks").route(web::get().to(restock::list)))
        .service(web::resource("/restock-tasks/{id}").route(web::get().to(restock::get)))
        .service(web::resource("/orders/{id}").route(web::get().to(reviews::get_order)))
        .service(web::resource("/reviews").route(web::get().to(reviews::list)))
        .service(web::resource("/reviews/{id}").route(web::get().to(reviews::get)))
        .service(web::resource("/reviews/{id}/resolve").route(web::post().to(reviews::resolve)))
        .service(web::resource("/refunds").route(web::get().to(refunds::list)))
        .service(web::resource("/reports/daily").route(web::get().to(reports::daily)))
        .service(web::resource("/stocktake").route(web::get().to(reports::stocktake)))
        .service(web::resource("/bill-cases").route(web::get().to(bills::list_cases)))
        .service(web::resource("/bill-cases/{id}/resolve").route(web::post().to(bills::resolve_case)))
        .service(web::resource("/bill-files/{id}").route(web::get().to(bills::get_file)))
        .service(
            web::resource("/reconcile/runs")
                .route(web::get().to(bills::list_runs))
                .route(web::post().to(bills::run_day)),
        )
        .service(web::resource("/refunds/{out_refund_no}/retry").route(web::post().to(refunds::retry)))
        .service(web::resource("/cabinets/{sn}/weights").route(web::get().to(setup::live_weights)))
        .service(web::resource("/cabinets/{sn}/weight-log").route(web::get().to(setup::weight_log)))
        .service(web::resource("/cabinets/{sn}/lane-health").route(web::get().to(setup::lane_health)))
        .service(web::resource("/commands/{id}").route(web::get().to(setup::get_command)))
        .service(web::resource("/cabinet-types").route(web::get().to(setup::list_cabinet_types)))
        .service(web::resource("/cabinet-types/{name}").route(web::put().to(setup::put_cabinet_type)))
        .service(web::resource("/alerts").route(web::get().to(ops::list_alerts)))
        .service(web::resource("/messages").route(web::get().to(messages::list)))
        .service(web::resource("/messages/{id}/retry").route(web::post().to(messages::retry)))
        .service(web::resource("/payments/{out_order_no}").route(web::get().to(pay_notify::ops_payment)))
        .service(
            web::resource("/products").route(web::post().to(catalogue::create)).route(web::get().to(catalogue::list)),
        )
        .service(
            web::resource("/products/{id}")
                .route(web::get().to(catalogue::get))
                .route(web::put().to(catalogue::replace))
                .route(web::delete().to(catalogue::delete)),
        );
}

/// Malformed query strings, paths and bodies get the same JSON error body as everything else: a
/// body that is not JSON is 400, one over `api.max_body_bytes` 413, and one whose values do not
/// fit (an unknown field, a missing one, a wrong type) 422 naming the field.
pub fn json_errors(max_body_bytes: usize) -> impl Fn(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
            .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body_bytes)
                    .error_handler(move |e, _| json_error(e, max_body_bytes).into()),
            );
    }
}

pub(crate) fn json_error(e: actix_web::error::JsonPayloadError, limit: usize) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match e {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::PayloadTooLarge(limit),
        // A field the body should not have, or lacks: named. A value of the wrong type stays a
        // 400, as serde does not say which field held it.
        E::Deserialize(e)
            if e.is_data()
                && (e.to_string().starts_with("unknown field") || e.to_string().starts_with("missing field")) =>
        {
            let message = e.to_string();
            let field = field_named(&message).unwrap_or("body").to_string();
            let code = if message.starts_with("unknown field") { "unknown_field" } else { "required" };
            ApiError::Invalid(vec![crate::domain::validation::FieldError::new(field, code, message)])
        }
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// The field serde names in its message (`unknown field `product`, expected …`).
fn field_named(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}
