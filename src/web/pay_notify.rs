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
use crate::db::payments;
use crate::domain::payment::Verdict;
use crate::flows;
use crate::flows::callbacks::{CallbackFail, Received};
use crate::pay::{CallbackError, CallbackHeaders, Channel};

pub async fn wechat(state: web::Data<AppState>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    receive(state, Channel::Wechat, &req, body).await
}

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
            HttpResponse::build(status).json(serde_json::json!({"code": "FAIL", "message": message}))
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "payment": payment, "events": events })))
}
