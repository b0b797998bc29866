//! Payment platform callbacks: `POST /pay/wechat/notify` and `POST /pay/alipay/notify`.
//!
//! Verify (and for WeChat decrypt) first; an unsigned or forged callback is answered 401 and
//! changes nothing. A verified one is stored and applied in one transaction with its payment row
//! locked (`db::payments::record_callback`); a platform event seen before is answered as a
//! success and not applied again. Answers are in the form each platform expects: WeChat reads
//! the status (204, or 4xx/5xx with `{"code":"FAIL","message":…}`), Alipay reads the body
//! (`success`, anything else means "send it again").

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use crate::db::{self, payments};
use crate::domain::payment::Verdict;
use crate::pay::{CallbackError, CallbackHeaders, Channel, PayEvent};

pub async fn wechat(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    handle(state, Channel::Wechat, headers(&req), body).await
}

pub async fn alipay(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    handle(state, Channel::Alipay, headers(&req), body).await
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
    let metrics = &state.svc.metrics;
    let event = match state.svc.payments.get(channel).parse_callback(&headers, &body) {
        Ok(event) => event,
        Err(e) => {
            let (status, outcome) = match &e {
                CallbackError::Unverified(_) => (StatusCode::UNAUTHORIZED, "unverified"),
                CallbackError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            };
            tracing::warn!(%channel, error = %e, "payment callback refused");
            metrics.payment_callbacks.with_label_values(&[channel.as_str(), outcome]).inc();
            return answer(channel, status, &e.to_string());
        }
    };
    let PayEvent { event_id, event_type, out_order_no, kind: reported, resource } = event;
    // Kept as evidence exactly as it came (both platforms send UTF-8 text).
    let raw = String::from_utf8_lossy(&body).into_owned();
    let open_check = chrono::Duration::seconds(i64::try_from(state.svc.config.orders.open_check_s).unwrap_or(60));
    let applied = state
        .svc
        .db
        .write(move |c| {
            let incoming = payments::Incoming {
                channel,
                event_id: &event_id,
                event_type: &event_type,
                out_order_no: out_order_no.as_deref(),
                resource: &resource,
                raw: &raw,
                reported,
            };
            payments::record_callback(c, &incoming, open_check, db::now())
        })
        .await;
    match applied {
        Ok(payments::Applied::UnknownPayment) => {
            // Possibly a callback that overtook our own write of the payment: asked again later.
            tracing::warn!(%channel, "callback about a payment Heft has no record of; asked to send again");
            metrics.payment_callbacks.with_label_values(&[channel.as_str(), "unknown_payment"]).inc();
            answer(channel, StatusCode::SERVICE_UNAVAILABLE, "unknown order, send again later")
        }
        Ok(payments::Applied::Duplicate) => {
            metrics.payment_callbacks.with_label_values(&[channel.as_str(), "duplicate"]).inc();
            answer(channel, StatusCode::OK, "")
        }
        Ok(payments::Applied::Stored { verdict, payment, order: moved }) => {
            let order = payment.as_ref().map(|p| p.out_order_no.as_str()).unwrap_or("-");
            if let Some(moved) = moved {
                // The door opens (authorised) or the order is done (paid); messages may wait.
                state.svc.relay.wake();
                crate::actors::purchase::order_moved(&state.routes, &moved);
            }
            match &verdict {
                Verdict::ReleaseNeeded => {
                    tracing::warn!(%channel, order, "confirmation for a cancelled pre-authorisation: released");
                    state.svc.relay.wake();
                }
                Verdict::Anomaly { reason, .. } => tracing::error!(%channel, order, reason, "payment anomaly"),
                Verdict::Ignored(why) => tracing::info!(%channel, order, why, "payment callback ignored"),
                _ => {}
            }
            metrics.payment_callbacks.with_label_values(&[channel.as_str(), verdict.outcome().as_str()]).inc();
            answer(channel, StatusCode::OK, "")
        }
        Err(e) => {
            // Not stored: the platform sends it again.
            tracing::error!(%channel, error = %e, "payment callback not stored");
            metrics.payment_callbacks.with_label_values(&[channel.as_str(), "error"]).inc();
            answer(channel, StatusCode::INTERNAL_SERVER_ERROR, "not stored, send again")
        }
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
