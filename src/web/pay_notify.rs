//! Payment platform callbacks: `POST /pay/wechat/notify` and `POST /pay/alipay/notify`.
//!
//! Verify (and for WeChat decrypt) first; an unsigned or forged callback is answered 401 and
//! changes nothing. A verified one is stored and applied in one transaction with its payment row
//! locked (`flows::callbacks`); a platform event seen before is answered as a success and not
//! applied again. Answers are in the form each platform expects: WeChat reads
//! the status (204, or 4xx/5xx with `{"code":"FAIL","message":…}`), Alipay reads the body
//! (`success`, anything else means "send it again").

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use crate::db::models::{Payment, PaymentEvent};
use crate::db::payments;
use crate::domain::payment::Verdict;
use crate::flows;
use crate::flows::callbacks::{CallbackFail, Received};
use crate::pay::{CallbackError, CallbackHeaders, Channel};

/// WeChat Pay's answer body when a callback is not taken (the platform sends it again).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WechatFail {
    /// Always `FAIL`.
    pub code: &'static str,
    pub message: String,
}

/// A WeChat Pay v3 notification (`Wechatpay-*` headers signed with the platform's key; the
/// resource AES-256-GCM-encrypted with the merchant's API v3 key).
#[utoipa::path(
    post, path = "/pay/wechat/notify", tag = "payment callbacks",
    request_body(content = Object, content_type = "application/json"),
    params(
        ("Wechatpay-Timestamp" = String, Header), ("Wechatpay-Nonce" = String, Header),
        ("Wechatpay-Signature" = String, Header), ("Wechatpay-Serial" = String, Header),
    ),
    responses(
        (status = 204, description = "Taken (applied, or seen before)"),
        (status = 400, description = "Malformed", body = WechatFail),
        (status = 401, description = "The signature does not verify: nothing changed", body = WechatFail),
        (status = 413, description = "Over `api.max_body_bytes`", body = WechatFail),
        (status = 500, description = "Not stored; send again", body = WechatFail),
        (status = 503, description = "About an order not known yet; send again later", body = WechatFail),
    )
)]
pub async fn wechat(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    receive(state, Channel::Wechat, &req, body).await
}

/// An Alipay asynchronous notification (form fields, RSA2-signed with Alipay's key). The answer is
/// the text `success`, or `fail` to have it sent again.
#[utoipa::path(
    post, path = "/pay/alipay/notify", tag = "payment callbacks",
    request_body(content = HashMap<String, String>, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`success`: taken (applied, or seen before)", body = String, content_type = "text/plain"),
        (status = 400, description = "`fail`: malformed", body = String, content_type = "text/plain"),
        (status = 401, description = "`fail`: the signature does not verify; nothing changed", body = String, content_type = "text/plain"),
        (status = 413, description = "`fail`: over `api.max_body_bytes`", body = String, content_type = "text/plain"),
        (status = 500, description = "`fail`: not stored; send again", body = String, content_type = "text/plain"),
        (status = 503, description = "`fail`: about an order not known yet; send again later", body = String, content_type = "text/plain"),
    )
)]
pub async fn alipay(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    receive(state, Channel::Alipay, &req, body).await
}

/// The body read up to `api.max_body_bytes`; over it, or unreadable, the platform is answered in
/// its own form (and sends again, which changes nothing).
async fn receive(state: web::Data<AppState>, channel: Channel, req: &HttpRequest, body: web::Payload) -> HttpResponse {
    let limit = state.svc.config.api.max_body_bytes;
    match body.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => handle(state, channel, headers(req), bytes).await,
        Ok(Err(e)) => answer(channel, StatusCode::BAD_REQUEST, &format!("body: {e}")),
        Err(_) => {
            tracing::warn!(%channel, limit, "payment callback over the body limit refused");
            answer(channel, StatusCode::PAYLOAD_TOO_LARGE, &format!("body over {limit} bytes"))
        }
    }
}

fn headers(req: &HttpRequest) -> CallbackHeaders {
    let get = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    CallbackHeaders {
        timestamp: get("Wechatpay-Timestamp"),
        nonce: get("Wechatpay-Nonce"),
        signature: get("Wechatpay-Signature"),
        serial: get("Wechatpay-Serial"),
        signature_type: get("Wechatpay-Signature-Type"),
    }
}

/// The answer in the platform's own form.
fn answer(channel: Channel, status: StatusCode, message: &str) -> HttpResponse {
    match (channel, status.is_success()) {
        (Channel::Wechat, true) => HttpResponse::NoContent().finish(),
        (Channel::Wechat, false) => {
            HttpResponse::build(status).json(WechatFail { code: "FAIL", message: message.to_string() })
        }
        (Channel::Alipay, true) => HttpResponse::Ok().content_type("text/plain").body("success"),
        (Channel::Alipay, false) => HttpResponse::build(status).content_type("text/plain").body("fail"),
    }
}

async fn handle(
    state: web::Data<AppState>,
    channel: Channel,
    headers: CallbackHeaders,
    body: web::Bytes,
) -> HttpResponse {
    let received = flows::callbacks::receive(&state.svc.flows(), channel, &headers, &body).await;
    let (status, outcome, message) = match received {
        Err(CallbackFail::Refused(e)) => {
            tracing::warn!(%channel, error = %e, "payment callback refused");
            match e {
                CallbackError::Unverified(_) => (StatusCode::UNAUTHORIZED, "unverified", e.to_string()),
                CallbackError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed", e.to_string()),
            }
        }
        // Not stored: the platform sends it again.
        Err(CallbackFail::Db(e)) => {
            tracing::error!(%channel, error = %e, "payment callback not stored");
            (StatusCode::INTERNAL_SERVER_ERROR, "error", "not stored, send again".into())
        }
        // Possibly a callback that overtook our own write of the payment: asked again later.
        Ok((Received::UnknownPayment, _)) => {
            tracing::warn!(%channel, "callback about a payment Heft has no record of; asked to send again");
            (StatusCode::SERVICE_UNAVAILABLE, "unknown_payment", "unknown order, send again later".into())
        }
        Ok((Received::Duplicate, _)) => (StatusCode::OK, "duplicate", String::new()),
        Ok((Received::Stored { verdict, out_order_no }, effects)) => {
            // The door opens (authorised), the order is done (paid), a hold is released.
            state.svc.effects.run(effects);
            log_verdict(channel, out_order_no.as_deref().unwrap_or("-"), &verdict);
            (StatusCode::OK, verdict.outcome().as_str(), String::new())
        }
    };
    state.svc.metrics.payment_callbacks.with_label_values(&[channel.as_str(), outcome]).inc();
    answer(channel, status, &message)
}

fn log_verdict(channel: Channel, order: &str, verdict: &Verdict) {
    match verdict {
        Verdict::ReleaseNeeded => {
            tracing::warn!(%channel, order, "confirmation for a cancelled pre-authorisation: released")
        }
        Verdict::Anomaly { reason, .. } => tracing::error!(%channel, order, reason, "payment anomaly"),
        Verdict::Ignored(why) => tracing::info!(%channel, order, why, "payment callback ignored"),
        _ => {}
    }
}

/// `GET /ops/payments/{out_order_no}`: a pre-authorisation and every callback about it, with
/// what each did (applied, already_applied, ignored, release_needed, anomaly).
#[utoipa::path(
    get, path = "/ops/payments/{out_order_no}", tag = "ops: money", security(("operator" = [])),
    params(("out_order_no" = String, Path, description = "The order's payment number")),
    responses(
        (status = 200, description = "The payment and its callbacks", body = PaymentOut),
        (status = 404, description = "No such payment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn ops_payment(
    user: super::auth::OpsUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, super::ApiError> {
    user.require(super::auth::ANY_ROLE)?;
    let no = path.into_inner();
    let (payment, events) = state
        .svc
        .db
        .run(move |c| Ok::<_, crate::db::DbError>((payments::find(c, &no)?, payments::events(c, &no)?)))
        .await?;
    let payment = payment.ok_or_else(|| super::ApiError::NotFound("payment".into()))?;
    Ok(HttpResponse::Ok().json(PaymentOut { payment, events }))
}

/// A pre-authorisation and every callback about it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PaymentOut {
    pub payment: Payment,
    pub events: Vec<PaymentEvent>,
}
