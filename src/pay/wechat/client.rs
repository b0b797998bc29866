//! The WeChat Pay Score adapter: [`PaymentGateway`] over API v3 (reference §1–4).

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{bill, sign};
use crate::config::{PaymentsConfig, WechatConfig};
use crate::pay::keys;
use crate::pay::keys::{PrivateKey, PublicKey};
use crate::pay::{
    BillFile, CallbackError, CallbackHeaders, CaptureOutcome, CaptureRequest, Channel, Fen, PayError, PayEvent,
    PayEventKind, PaymentGateway, PlatformState, PlatformUser, Preauth, PreauthRequest, RefundRequest, RefundState,
};

/// Responses and callbacks older or newer than this are refused (the SDKs' five minutes).
pub const MAX_CLOCK_SKEW_S: i64 = 300;
/// Pay Score limits on a charge line (reference §3.2).
pub const MAX_LINE_NAME_CHARS: usize = 20;
pub const MAX_LINE_COUNT: i64 = 100;
pub const MAX_LINES: usize = 100;
pub const MAX_REASON_CHARS: usize = 50;
/// A refund's reason is shown to the shopper (at most 80 characters).
pub const MAX_REFUND_REASON_CHARS: usize = 80;

const USER_AGENT: &str = concat!("heft/", env!("CARGO_PKG_VERSION"), " (WeChatPay-APIv3)");

pub struct WechatPayScore {
    config: WechatConfig,
    http: reqwest::Client,
    merchant_key: PrivateKey,
    platform_key: PublicKey,
    notify_url: String,
}

/// A WeChat error body `{code, message}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl WechatPayScore {
    pub fn new(
        config: &WechatConfig,
        payments: &PaymentsConfig,
        notify_url: String,
    ) -> Result<WechatPayScore, PayError> {
        let merchant_key = keys::load_private(&config.merchant_key_file, keys::sim::WECHAT_MERCHANT_KEY)
            .map_err(PayError::permanent)?;
        let platform_key = keys::load_public(&config.platform_public_key_file, keys::sim::WECHAT_PLATFORM_PUB)
            .map_err(PayError::permanent)?;
        let http = super::super::http_client(payments)?;
        Ok(WechatPayScore { config: config.clone(), http, merchant_key, platform_key, notify_url })
    }

    fn base(&self) -> &str {
        self.config.base_url.trim_end_matches('/')
    }

    /// Check `Wechatpay-*` headers and the signature over `ts\nnonce\nbody\n`.
    fn verify_signed(
        &self,
        timestamp: Option<&str>,
        nonce: Option<&str>,
        signature: Option<&str>,
        serial: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let (Some(ts), Some(nonce), Some(signature), Some(serial)) = (timestamp, nonce, signature, serial) else {
            return Err("missing Wechatpay-Timestamp/Nonce/Signature/Serial".into());
        };
        if serial != self.config.platform_public_key_id {
            return Err(format!("signed with unknown key {serial}"));
        }
        let t: i64 = ts.trim().parse().map_err(|_| "Wechatpay-Timestamp is not a number".to_string())?;
        if chrono::Utc::now().timestamp().abs_diff(t) >= MAX_CLOCK_SKEW_S.unsigned_abs() {
            return Err("Wechatpay-Timestamp is more than 5 minutes off".into());
        }
        if !sign::verify_response(&self.platform_key, ts, nonce, body, signature) {
            return Err("Wechatpay-Signature does not verify".into());
        }
        Ok(())
    }

    /// Send a signed request. `signed_response`: verify the answer (every API but the bill file).
    /// Returns the 2xx body.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<String>,
        signed_response: bool,
    ) -> Result<Vec<u8>, PayError> {
        let parsed = reqwest::Url::parse(url).map_err(PayError::permanent)?;
        let uri = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let body_bytes = body.unwrap_or_default();
        let auth = sign::sign_request(
            &self.merchant_key,
            &self.config.mchid,
            &self.config.merchant_serial_no,
            method.as_str(),
            &uri,
            chrono::Utc::now().timestamp(),
            &sign::nonce(),
            body_bytes.as_bytes(),
        );
        let mut req = self
            .http
            .request(method.clone(), parsed)
            .header("Authorization", auth.header())
            .header("Accept", "application/json")
            .header("User-Agent", USER_AGENT)
            .header("Wechatpay-Serial", &self.config.platform_public_key_id);
        if method != reqwest::Method::GET {
            req = req.header("Content-Type", "application/json").body(body_bytes);
        }
        let res = req.send().await.map_err(|e| PayError::Retryable(format!("WeChat Pay {uri}: {e}")))?;
        let status = res.status().as_u16();
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (ts, nonce, sig, serial) = (
            header("Wechatpay-Timestamp"),
            header("Wechatpay-Nonce"),
            header("Wechatpay-Signature"),
            header("Wechatpay-Serial"),
        );
        let request_id = header("Request-ID").unwrap_or_default();
        let bytes = res.bytes().await.map_err(|e| PayError::Retryable(format!("WeChat Pay {uri}: {e}")))?.to_vec();
        if (200..300).contains(&status) {
            if signed_response {
                self.verify_signed(ts.as_deref(), nonce.as_deref(), sig.as_deref(), serial.as_deref(), &bytes)
                    .map_err(|e| {
                        PayError::Permanent(format!("WeChat Pay {uri} response (Request-ID {request_id}): {e}"))
                    })?;
            }
            return Ok(bytes);
        }
        Err(map_error(status, &bytes))
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, PayError> {
        let url = format!("{}{path}", self.base());
        let body = body.map(Value::to_string);
        let bytes = self.send(method, &url, body, true).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| PayError::Permanent(format!("WeChat Pay {path}: not JSON: {e}")))
    }

    fn query_path(&self, out_order_no: &str) -> String {
        let q = serde_urlencoded::to_string([
            ("out_order_no", out_order_no),
            ("service_id", self.config.service_id.as_str()),
            ("appid", self.config.appid.as_str()),
        ])
        .unwrap_or_default();
        format!("/v3/payscore/serviceorder?{q}")
    }

    /// The body of `complete`: one post_payment per line, split in chunks of at most 100.
    fn post_payments(req: &CaptureRequest) -> Result<Vec<Value>, PayError> {
        let mut out = Vec::new();
        for line in &req.lines {
            if line.count < 1 || line.unit_fen < Fen::ZERO {
                return Err(PayError::Permanent(format!(
                    "capture line {:?}: count {} unit {}",
                    line.name, line.count, line.unit_fen
                )));
            }
            // The name is display-only: shorten rather than refuse.
            let name: String = line.name.chars().take(MAX_LINE_NAME_CHARS).collect();
            let mut left = line.count;
            while left > 0 {
                let count = left.min(MAX_LINE_COUNT);
                out.push(json!({"name": name, "amount": line.unit_fen * count, "count": count}));
                left -= count;
            }
        }
        if out.len() > MAX_LINES {
            return Err(PayError::Permanent(format!(
                "{} charge lines, Pay Score takes at most {MAX_LINES}",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// Map a non-2xx answer (reference §1.1).
fn map_error(status: u16, body: &[u8]) -> PayError {
    let e: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = if e.code.is_empty() { format!("HTTP_{status}") } else { e.code };
    let text = format!("{status} {code}: {}", e.message);
    match status {
        429 | 500..=599 => PayError::Retryable(text),
        401 => PayError::Permanent(text),
        400 if code == "PARAM_ERROR" || code == "INVALID_REQUEST" => PayError::Permanent(text),
        _ => PayError::Declined { code, message: e.message },
    }
}

fn map_state(order: &Value) -> Result<PlatformState, PayError> {
    let s = |k: &str| order.get(k).and_then(Value::as_str);
    let state = s("state").unwrap_or_default();
    let desc = s("state_description").unwrap_or_default();
    let total = order.get("total_amount").and_then(Value::as_i64).unwrap_or(0);
    let collection = order.get("collection");
    let collection_state = collection.and_then(|c| c.get("state")).and_then(Value::as_str).unwrap_or_default();
    Ok(match (state, desc) {
        ("CREATED", _) => PlatformState::Pending,
        ("DOING", "USER_CONFIRM") => PlatformState::Authorized {
            platform_order_id: s("order_id").map(str::to_string),
            payer_id: s("openid").map(str::to_string),
        },
        ("DOING", "MCH_COMPLETE") if collection_state != "USER_PAID" => {
            PlatformState::Capturing { amount_fen: Fen(total) }
        }
        ("DONE", _) | ("DOING", "MCH_COMPLETE") => {
            let (amount_fen, transaction_id) = paid(order)
                .ok_or_else(|| PayError::Permanent("a paid Pay Score order without a transaction_id".into()))?;
            PlatformState::Paid { amount_fen: Fen(amount_fen), transaction_id }
        }
        ("REVOKED" | "EXPIRED", _) => PlatformState::Cancelled,
        _ => return Err(PayError::Permanent(format!("unknown Pay Score state {state}/{desc}"))),
    })
}

/// Amount (collection.paid_amount, else total_amount) and the last collection detail's
/// transaction_id.
fn paid(order: &Value) -> Option<(i64, String)> {
    let collection = order.get("collection");
    let amount = collection
        .and_then(|c| c.get("paid_amount"))
        .and_then(Value::as_i64)
        .or_else(|| order.get("total_amount").and_then(Value::as_i64))?;
    let txn = collection
        .and_then(|c| c.get("details"))
        .and_then(Value::as_array)
        .and_then(|d| d.iter().rev().find_map(|d| d.get("transaction_id").and_then(Value::as_str)))?;
    Some((amount, txn.to_string()))
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    event_type: String,
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    ciphertext: String,
    nonce: String,
    #[serde(default)]
    associated_data: String,
}

#[async_trait]
impl PaymentGateway for WechatPayScore {
    fn channel(&self) -> Channel {
        Channel::Wechat
    }

    async fn login(&self, code: &str) -> Result<PlatformUser, PayError> {
        let q = serde_urlencoded::to_string([
            ("appid", self.config.appid.as_str()),
            ("secret", self.config.app_secret.as_str()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .map_err(PayError::permanent)?;
        let url = format!("{}/sns/jscode2session?{q}", self.config.login_base_url.trim_end_matches('/'));
        // The URL carries the AppSecret: errors say which API, never the URL.
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| PayError::Retryable(format!("jscode2session: {}", e.without_url())))?;
        let status = res.status();
        let bytes =
            res.bytes().await.map_err(|e| PayError::Retryable(format!("jscode2session: {}", e.without_url())))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(PayError::Retryable(format!("jscode2session: HTTP {status}")));
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| PayError::Permanent(format!("jscode2session: {e}")))?;
        let errcode = v.get("errcode").and_then(Value::as_i64).unwrap_or(0);
        if errcode != 0 {
            let message = v.get("errmsg").and_then(Value::as_str).unwrap_or_default().to_string();
            return Err(match errcode {
                -1 | 45011 => PayError::Retryable(format!("jscode2session {errcode}: {message}")),
                40029 | 40163 | 40226 => PayError::Declined { code: errcode.to_string(), message },
                _ => PayError::Permanent(format!("jscode2session {errcode}: {message}")),
            });
        }
        let uid = v.get("openid").and_then(Value::as_str).filter(|s| !s.is_empty());
        let uid = uid.ok_or_else(|| PayError::Permanent("jscode2session: no openid".into()))?;
        Ok(PlatformUser { uid: uid.to_string(), unionid: v.get("unionid").and_then(Value::as_str).map(str::to_string) })
    }

    async fn create_preauth(&self, req: &PreauthRequest) -> Result<Preauth, PayError> {
        if !req.cap_fen.is_positive() {
            return Err(PayError::Permanent(format!("risk fund {} fen", req.cap_fen)));
        }
        let title: String = req.title.chars().take(MAX_LINE_NAME_CHARS).collect();
        let body = json!({
            "out_order_no": req.out_order_no,
            "appid": self.config.appid,
            "service_id": self.config.service_id,
            "service_introduction": title,
            "time_range": {"start_time": "OnAccept"},
            "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": req.cap_fen, "description": "预估商品费用"},
            "attach": req.attach,
            "notify_url": self.notify_url,
            "need_user_confirm": true,
            "device": {"start_device_id": req.device_id},
        });
        let order = self.call(reqwest::Method::POST, "/v3/payscore/serviceorder", Some(&body)).await?;
        let package = order
            .get("package")
            .and_then(Value::as_str)
            .ok_or_else(|| PayError::Permanent("create: no package in the answer".into()))?
            .to_string();
        let order_id = order.get("order_id").and_then(Value::as_str).map(str::to_string);
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let nonce_str = sign::nonce();
        let params = [
            ("mch_id", self.config.mchid.as_str()),
            ("package", package.as_str()),
            ("timestamp", timestamp.as_str()),
            ("nonce_str", nonce_str.as_str()),
            ("sign_type", "HMAC-SHA256"),
        ];
        let legacy_sign = sign::legacy_sign(&params, &self.config.apiv2_key).map_err(PayError::permanent)?;
        Ok(Preauth {
            platform_order_id: order_id,
            confirm: json!({
                "businessType": "wxpayScoreUse",
                "extraData": {"package": package},
                "legacy": {
                    "mch_id": self.config.mchid,
                    "package": package,
                    "timestamp": timestamp,
                    "nonce_str": nonce_str,
                    "sign_type": "HMAC-SHA256",
                    "sign": legacy_sign,
                },
            }),
        })
    }

    async fn query(&self, out_order_no: &str, _out_trade_no: Option<&str>) -> Result<PlatformState, PayError> {
        let order = self.call(reqwest::Method::GET, &self.query_path(out_order_no), None).await?;
        map_state(&order)
    }

    async fn cancel(&self, out_order_no: &str, _platform_order_id: Option<&str>, reason: &str) -> Result<(), PayError> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let reason = if reason.trim().is_empty() { "取消".to_string() } else { reason };
        let body = json!({"appid": self.config.appid, "service_id": self.config.service_id, "reason": reason});
        let path = format!("/v3/payscore/serviceorder/{}/cancel", path_segment(out_order_no)?);
        self.call(reqwest::Method::POST, &path, Some(&body)).await.map(|_| ())
    }

    async fn capture(&self, req: &CaptureRequest) -> Result<CaptureOutcome, PayError> {
        let sum: Fen = req.lines.iter().map(|l| l.amount_fen()).sum();
        if !req.total_fen.is_positive() {
            return Err(PayError::Permanent("capture of nothing: cancel the order instead".into()));
        }
        if sum != req.total_fen {
            return Err(PayError::Permanent(format!("capture total {} is not the lines' sum {sum}", req.total_fen)));
        }
        let payments = Self::post_payments(req)?;
        let body = json!({
            "appid": self.config.appid,
            "service_id": self.config.service_id,
            "post_payments": payments,
            "total_amount": req.total_fen,
        });
        let path = format!("/v3/payscore/serviceorder/{}/complete", path_segment(&req.out_order_no)?);
        self.call(reqwest::Method::POST, &path, Some(&body)).await?;
        Ok(CaptureOutcome::Collecting)
    }

    /// The standard refund API, by the collection's `transaction_id` (Pay Score deductions are
    /// refunded like any WeChat Pay transaction).
    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, PayError> {
        if !req.refund_fen.is_positive() || req.refund_fen > req.paid_fen {
            return Err(PayError::Permanent(format!("refund {} of a payment of {}", req.refund_fen, req.paid_fen)));
        }
        refund_segment(&req.out_refund_no)?;
        let reason: String = req.reason.chars().take(MAX_REFUND_REASON_CHARS).collect();
        let body = json!({
            "transaction_id": req.transaction_id,
            "out_refund_no": req.out_refund_no,
            "reason": reason,
            "notify_url": self.notify_url,
            "amount": {"refund": req.refund_fen, "total": req.paid_fen, "currency": "CNY"},
        });
        let refund = self.call(reqwest::Method::POST, "/v3/refund/domestic/refunds", Some(&body)).await?;
        map_refund(&refund)
    }

    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, PayError> {
        let path = format!("/v3/refund/domestic/refunds/{}", refund_segment(&req.out_refund_no)?);
        match self.call(reqwest::Method::GET, &path, None).await {
            Ok(refund) => map_refund(&refund),
            Err(PayError::Declined { code, .. }) if code == "RESOURCE_NOT_EXISTS" || code == "HTTP_404" => {
                Ok(RefundState::Unknown)
            }
            Err(e) => Err(e),
        }
    }

    fn parse_callback(&self, headers: &CallbackHeaders, body: &[u8]) -> Result<PayEvent, CallbackError> {
        if let Some(t) = headers.signature_type.as_deref()
            && t != sign::SCHEME
        {
            return Err(CallbackError::Unverified(format!("signature type {t}")));
        }
        self.verify_signed(
            headers.timestamp.as_deref(),
            headers.nonce.as_deref(),
            headers.signature.as_deref(),
            headers.serial.as_deref(),
            body,
        )
        .map_err(CallbackError::Unverified)?;
        let env: Envelope = serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let plain = sign::aead_decrypt(
            self.config.apiv3_key.as_bytes(),
            env.resource.nonce.as_bytes(),
            env.resource.associated_data.as_bytes(),
            &env.resource.ciphertext,
        )
        .map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let resource =
            String::from_utf8(plain).map_err(|_| CallbackError::Malformed("resource is not UTF-8".into()))?;
        let order: Value = serde_json::from_str(&resource).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let s = |k: &str| order.get(k).and_then(Value::as_str).map(str::to_string);
        let kind = match env.event_type.as_str() {
            "PAYSCORE.USER_CONFIRM" => {
                PayEventKind::Authorized { platform_order_id: s("order_id"), payer_id: s("openid") }
            }
            "PAYSCORE.USER_PAID" => {
                let (amount_fen, transaction_id) = paid(&order)
                    .ok_or_else(|| CallbackError::Malformed("USER_PAID without a transaction_id".into()))?;
                PayEventKind::Paid { amount_fen: Fen(amount_fen), transaction_id }
            }
            "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED" => {
                let out_refund_no = s("out_refund_no")
                    .ok_or_else(|| CallbackError::Malformed("refund without out_refund_no".into()))?;
                let status = s("refund_status").unwrap_or_else(|| env.event_type.trim_start_matches("REFUND.").into());
                PayEventKind::Refund {
                    out_refund_no,
                    refund_id: s("refund_id"),
                    succeeded: status == "SUCCESS",
                    status,
                }
            }
            _ => PayEventKind::Other,
        };
        // A refund names no pre-authorisation: Heft finds it by the refund's number.
        let out_order_no = match kind {
            PayEventKind::Refund { .. } => None,
            _ => s("out_order_no"),
        };
        Ok(PayEvent { event_id: env.id, event_type: env.event_type, out_order_no, kind, resource })
    }

    async fn download_bill(&self, date: NaiveDate) -> Result<BillFile, PayError> {
        let path = format!("/v3/bill/tradebill?bill_date={}&bill_type=ALL", date.format("%Y-%m-%d"));
        let apply = match self.call(reqwest::Method::GET, &path, None).await {
            Ok(v) => v,
            Err(PayError::Declined { code, .. }) if code == "NO_STATEMENT_EXIST" => return Ok(BillFile::default()),
            Err(PayError::Declined { code, .. }) if code == "STATEMENT_CREATING" => {
                return Err(PayError::Retryable(format!("bill {date}: not published yet")));
            }
            Err(e) => return Err(e),
        };
        let field = |k: &str| apply.get(k).and_then(Value::as_str).map(str::to_string);
        let url = field("download_url").ok_or_else(|| PayError::Permanent("tradebill: no download_url".into()))?;
        let hash = field("hash_value").ok_or_else(|| PayError::Permanent("tradebill: no hash_value".into()))?;
        // The file itself is not signed: its hash, from the signed answer above, vouches for it.
        let bytes = self.send(reqwest::Method::GET, &url, None, false).await?;
        let csv = if url.contains("tartype=gzip") { bill::gunzip(&bytes).map_err(PayError::permanent)? } else { bytes };
        if !bill::sha1_hex(&csv).eq_ignore_ascii_case(hash.trim()) {
            return Err(PayError::Permanent(format!("bill {date}: SHA1 does not match hash_value")));
        }
        let rows = bill::parse(&csv).map_err(PayError::permanent)?;
        let totals = bill::totals(&csv).map_err(PayError::permanent)?;
        Ok(BillFile { raw: csv, rows, totals })
    }
}

/// A refund as WeChat reports it (`status`: SUCCESS, PROCESSING, CLOSED, ABNORMAL).
fn map_refund(refund: &Value) -> Result<RefundState, PayError> {
    let s = |k: &str| refund.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    Ok(match s("status") {
        Some("SUCCESS") => RefundState::Succeeded {
            refund_id: s("refund_id").ok_or_else(|| PayError::permanent("a refund without refund_id"))?.to_string(),
        },
        Some("PROCESSING") => RefundState::Processing,
        Some(other @ ("CLOSED" | "ABNORMAL")) => RefundState::Failed { reason: format!("refund {other}") },
        other => return Err(PayError::Permanent(format!("refund status {other:?}"))),
    })
}

/// `out_refund_no` goes into a path: at most 64 of the characters WeChat allows.
fn refund_segment(out_refund_no: &str) -> Result<&str, PayError> {
    let ok = !out_refund_no.is_empty()
        && out_refund_no.len() <= 64
        && out_refund_no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b));
    if ok { Ok(out_refund_no) } else { Err(PayError::Permanent(format!("out_refund_no {out_refund_no:?}"))) }
}

/// `out_order_no` goes into a path: it may only hold the characters WeChat allows.
fn path_segment(out_order_no: &str) -> Result<&str, PayError> {
    let ok = !out_order_no.is_empty()
        && out_order_no.len() <= 32
        && out_order_no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
    if ok { Ok(out_order_no) } else { Err(PayError::Permanent(format!("out_order_no {out_order_no:?}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::CaptureLine;

    #[test]
    fn errors_map_to_the_three_kinds() {
        let body = |c: &str| format!(r#"{{"code":"{c}","message":"m"}}"#).into_bytes();
        assert!(matches!(map_error(500, &body("SYSTEM_ERROR")), PayError::Retryable(_)));
        assert!(matches!(map_error(503, b""), PayError::Retryable(_)));
        assert!(matches!(map_error(429, &body("RATELIMIT_EXCEEDED")), PayError::Retryable(_)));
        assert!(matches!(map_error(401, &body("SIGN_ERROR")), PayError::Permanent(_)));
        assert!(matches!(map_error(400, &body("PARAM_ERROR")), PayError::Permanent(_)));
        assert!(matches!(map_error(400, &body("INVALID_REQUEST")), PayError::Permanent(_)));
        assert_eq!(
            map_error(403, &body("RULE_LIMIT")),
            PayError::Declined { code: "RULE_LIMIT".into(), message: "m".into() }
        );
        assert!(matches!(map_error(400, &body("INVALID_ORDER_STATE")), PayError::Declined { .. }));
        assert!(matches!(map_error(404, b""), PayError::Declined { code, .. } if code == "HTTP_404"));
    }

    #[test]
    fn states_map() {
        let st = |v: Value| map_state(&v).expect("state");
        assert_eq!(st(json!({"state": "CREATED"})), PlatformState::Pending);
        assert_eq!(
            st(json!({"state": "DOING", "state_description": "USER_CONFIRM", "order_id": "1", "openid": "o"})),
            PlatformState::Authorized { platform_order_id: Some("1".into()), payer_id: Some("o".into()) }
        );
        assert_eq!(
            st(json!({"state": "DOING", "state_description": "MCH_COMPLETE", "total_amount": 5,
                "collection": {"state": "USER_PAYING"}})),
            PlatformState::Capturing { amount_fen: Fen(5) }
        );
        assert_eq!(
            st(json!({"state": "DONE", "total_amount": 5, "collection": {"state": "USER_PAID", "paid_amount": 5,
                "details": [{"transaction_id": "a"}, {"transaction_id": "b"}]}})),
            PlatformState::Paid { amount_fen: Fen(5), transaction_id: "b".into() }
        );
        assert_eq!(st(json!({"state": "REVOKED"})), PlatformState::Cancelled);
        assert_eq!(st(json!({"state": "EXPIRED"})), PlatformState::Cancelled);
        assert!(map_state(&json!({"state": "DONE"})).is_err());
    }

    #[test]
    fn post_payments_split_and_shorten() {
        let req = |lines: Vec<CaptureLine>| CaptureRequest {
            out_order_no: "o".into(),
            out_trade_no: "t".into(),
            platform_order_id: None,
            payer_id: None,
            total_fen: lines.iter().map(CaptureLine::amount_fen).sum(),
            lines,
            title: "t".into(),
        };
        let p = WechatPayScore::post_payments(&req(vec![CaptureLine {
            name: "一二三四五六七八九十一二三四五六七八九十多".into(),
            unit_fen: Fen(3),
            count: 250,
        }]))
        .expect("lines");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], json!({"name": "一二三四五六七八九十一二三四五六七八九十", "amount": 300, "count": 100}));
        assert_eq!(p[2]["count"], 50);
        let many = (0..101).map(|i| CaptureLine { name: format!("p{i}"), unit_fen: Fen(1), count: 1 }).collect();
        assert!(WechatPayScore::post_payments(&req(many)).is_err());
        assert!(
            WechatPayScore::post_payments(&req(vec![CaptureLine { name: "x".into(), unit_fen: Fen(1), count: 0 }]))
                .is_err()
        );
    }

    #[test]
    fn path_segments() {
        assert!(path_segment("VC2025_a-b").is_ok());
        assert!(path_segment("a/b").is_err());
        assert!(path_segment("").is_err());
    }
}
