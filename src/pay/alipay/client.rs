//! [`AlipayFundAuth`]: the [`PaymentGateway`] over Alipay's gateway (reference §5).
//!
//! Every call is a form POST of the system parameters plus `biz_content`, signed RSA2 with the
//! application key; every answer's `sign` is checked with Alipay's public key before anything in
//! it is believed.

use std::fmt;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::{TIME_FORMAT, beijing_now, bill, sign};
use crate::config::{AlipayConfig, PaymentsConfig};
use crate::pay::keys::{PrivateKey, PublicKey};
use crate::pay::{
    BillFile, CallbackError, CallbackHeaders, CaptureOutcome, CaptureRequest, Channel, Fen, PayError, PayEvent,
    PayEventKind, PaymentGateway, PlatformState, PlatformUser, Preauth, PreauthRequest, RefundRequest, RefundState,
    fen_to_yuan, keys, yuan_to_fen,
};

const FREEZE: &str = "alipay.fund.auth.order.app.freeze";
const DETAIL: &str = "alipay.fund.auth.operation.detail.query";
const UNFREEZE: &str = "alipay.fund.auth.order.unfreeze";
const CANCEL: &str = "alipay.fund.auth.operation.cancel";
const PAY: &str = "alipay.trade.pay";
const TRADE_QUERY: &str = "alipay.trade.query";
const REFUND: &str = "alipay.trade.refund";
const REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";
const OAUTH: &str = "alipay.system.oauth.token";
const BILL_URL: &str = "alipay.data.dataservice.bill.downloadurl.query";
const PRODUCT: &str = "PRE_AUTH_ONLINE";

/// Alipay fund-auth pre-authorisation.
pub struct AlipayFundAuth {
    app_id: String,
    seller_id: String,
    gateway_url: String,
    app_key: PrivateKey,
    alipay_public: PublicKey,
    http: reqwest::Client,
    notify_url: String,
}

// Keys stay out of Debug output.
impl fmt::Debug for AlipayFundAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlipayFundAuth")
            .field("app_id", &self.app_id)
            .field("gateway_url", &self.gateway_url)
            .field("notify_url", &self.notify_url)
            .finish_non_exhaustive()
    }
}

/// A verified gateway answer.
#[derive(Debug)]
struct Reply {
    code: String,
    sub_code: String,
    sub_msg: String,
    msg: String,
    body: Map<String, Value>,
}

impl Reply {
    fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    fn fen(&self, key: &str) -> Option<i64> {
        self.str(key).and_then(yuan_to_fen)
    }

    fn describe(&self, method: &str) -> String {
        format!("{method}: {} {} {} {}", self.code, self.msg, self.sub_code, self.sub_msg)
    }

    /// 10000 passes; everything else becomes the error a caller must handle.
    fn ok(self, method: &str) -> Result<Reply, PayError> {
        match self.code.as_str() {
            "10000" => Ok(self),
            "20000" => Err(PayError::Retryable(self.describe(method))),
            // "System error: call again with the same parameters."
            "40004" if self.sub_code.ends_with("SYSTEM_ERROR") => Err(PayError::Retryable(self.describe(method))),
            "40004" => Err(PayError::Declined {
                code: if self.sub_code.is_empty() { self.code } else { self.sub_code },
                message: if self.sub_msg.is_empty() { self.msg } else { self.sub_msg },
            }),
            // 40001 missing / 40002 invalid parameter (bad signature), 40006 permission, 20001
            // token, and anything unknown: our side is wrong.
            _ => Err(PayError::Permanent(self.describe(method))),
        }
    }
}

/// Sub-codes meaning "no such order" from the fund-auth and trade APIs.
fn not_found(sub_code: &str) -> bool {
    crate::domain::money::is_not_found_code(sub_code)
}

/// What an unsigned answer says, for the operator reading the error: Alipay cannot sign for an
/// app id it does not know. Never acted on, since anyone on the path could have written it.
fn unsigned_refusal(body: &str, method: &str) -> String {
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(body) else { return String::new() };
    let Some(answer) = top.get(&sign::response_key(method)).or_else(|| top.get("error_response")) else {
        return String::new();
    };
    let field = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    format!(" (unsigned answer, not believed: {} {} {})", field("code"), field("sub_code"), field("sub_msg"))
}

/// `subject` may not contain `/ = &`.
fn clean_subject(title: &str) -> String {
    let s: String = title.chars().filter(|c| !matches!(c, '/' | '=' | '&')).collect();
    let s = s.trim();
    if s.is_empty() { "Heft".to_string() } else { s.to_string() }
}

impl AlipayFundAuth {
    pub fn new(
        config: &AlipayConfig,
        payments: &PaymentsConfig,
        notify_url: String,
    ) -> Result<AlipayFundAuth, PayError> {
        let app_key =
            keys::load_private(&config.app_key_file, keys::sim::ALIPAY_APP_KEY).map_err(PayError::permanent)?;
        let alipay_public = keys::load_public(&config.alipay_public_key_file, keys::sim::ALIPAY_PLATFORM_PUB)
            .map_err(PayError::permanent)?;
        let http = super::super::http_client(payments)?;
        Ok(AlipayFundAuth {
            app_id: config.app_id.clone(),
            seller_id: config.seller_id.clone(),
            gateway_url: config.gateway_url.clone(),
            app_key,
            alipay_public,
            http,
            notify_url,
        })
    }

    /// System parameters + `extra` + `biz_content`, with `sign` last.
    fn signed_params(
        &self,
        method: &str,
        extra: &[(&str, &str)],
        biz: Option<&Value>,
        notify: bool,
    ) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("app_id", self.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("version", "1.0"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.push(("timestamp".into(), beijing_now().format(TIME_FORMAT).to_string()));
        if notify && !self.notify_url.is_empty() {
            p.push(("notify_url".into(), self.notify_url.clone()));
        }
        if let Some(biz) = biz {
            p.push(("biz_content".into(), biz.to_string()));
        }
        let sign = sign::sign_request(&self.app_key, p.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        p.push(("sign".into(), sign));
        p
    }

    /// One gateway call, its answer verified. Non-10000 codes are returned, not mapped: some
    /// callers treat particular ones as success.
    async fn call(
        &self,
        method: &str,
        extra: &[(&str, &str)],
        biz: Option<&Value>,
        notify: bool,
    ) -> Result<Reply, PayError> {
        let params = self.signed_params(method, extra, biz, notify);
        let form = serde_urlencoded::to_string(&params).map_err(PayError::permanent)?;
        let res = self
            .http
            .post(&self.gateway_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded;charset=utf-8")
            .body(form)
            .send()
            .await
            .map_err(|e| PayError::Retryable(format!("{method}: {e}")))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| PayError::Retryable(format!("{method}: {e}")))?;
        if !status.is_success() {
            return Err(PayError::Retryable(format!("{method}: HTTP {status}")));
        }
        let verified = sign::verify_response(&self.alipay_public, &text, method).map_err(|e| {
            let said =
                if matches!(e, sign::SignError::NoSign) { unsigned_refusal(&text, method) } else { String::new() };
            PayError::Permanent(format!("{method}: response {e}{said}"))
        })?;
        let body: Map<String, Value> = serde_json::from_str(verified.raw)
            .map_err(|e| PayError::Permanent(format!("{method}: response object: {e}")))?;
        let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        // A method's own response without a code is a success (oauth.token answers that way).
        let code = match body.get("code") {
            None if verified.key != "error_response" => "10000".to_string(),
            _ => field("code"),
        };
        let reply = Reply { code, msg: field("msg"), sub_code: field("sub_code"), sub_msg: field("sub_msg"), body };
        if reply.code != "10000" {
            tracing::debug!(method, code = %reply.code, sub_code = %reply.sub_code, "alipay refused");
        }
        Ok(reply)
    }

    async fn detail(&self, out_order_no: &str) -> Result<Reply, PayError> {
        let biz = json!({ "out_order_no": out_order_no, "out_request_no": out_order_no });
        self.call(DETAIL, &[], Some(&biz), false).await?.ok(DETAIL)
    }

    async fn trade_query(&self, out_trade_no: &str) -> Result<Option<PlatformState>, PayError> {
        let reply = self.call(TRADE_QUERY, &[], Some(&json!({ "out_trade_no": out_trade_no })), false).await?;
        if reply.code == "40004" && not_found(&reply.sub_code) {
            return Ok(None);
        }
        let reply = reply.ok(TRADE_QUERY)?;
        let amount_fen =
            reply.fen("total_amount").ok_or_else(|| PayError::permanent("trade.query: no total_amount"))?;
        Ok(match reply.str("trade_status") {
            Some("TRADE_SUCCESS" | "TRADE_FINISHED") => Some(PlatformState::Paid {
                amount_fen: Fen(amount_fen),
                transaction_id: reply.str("trade_no").unwrap_or_default().to_string(),
            }),
            Some("WAIT_BUYER_PAY") => Some(PlatformState::Capturing { amount_fen: Fen(amount_fen) }),
            // TRADE_CLOSED: the freeze tells the rest.
            _ => None,
        })
    }
}

#[async_trait]
impl PaymentGateway for AlipayFundAuth {
    fn channel(&self) -> Channel {
        Channel::Alipay
    }

    async fn login(&self, code: &str) -> Result<PlatformUser, PayError> {
        let reply = self.call(OAUTH, &[("grant_type", "authorization_code"), ("code", code)], None, false).await?;
        if reply.code == "40002" && reply.sub_code == "isv.code-invalid" {
            // A stale or reused login code: the shopper's problem, not configuration.
            return Err(PayError::Declined { code: reply.sub_code, message: reply.sub_msg });
        }
        let reply = reply.ok(OAUTH)?;
        let uid = reply
            .str("user_id")
            .or_else(|| reply.str("open_id"))
            .ok_or_else(|| PayError::permanent("oauth.token: no user_id"))?;
        Ok(PlatformUser { uid: uid.to_string(), unionid: None })
    }

    async fn create_preauth(&self, req: &PreauthRequest) -> Result<Preauth, PayError> {
        if !req.cap_fen.is_positive() {
            return Err(PayError::permanent("freeze amount must be positive"));
        }
        let biz = json!({
            "out_order_no": req.out_order_no,
            "out_request_no": req.out_order_no,
            "order_title": req.title,
            "amount": req.cap_fen.yuan(),
            "product_code": PRODUCT,
            "payee_user_id": self.seller_id,
            "timeout_express": "1m",
        });
        // Sign-only method: the mini-program hands the string to the cashier, nothing is sent.
        let params = self.signed_params(FREEZE, &[], Some(&biz), true);
        let order_str = serde_urlencoded::to_string(&params).map_err(PayError::permanent)?;
        Ok(Preauth { platform_order_id: None, confirm: json!({ "orderStr": order_str }) })
    }

    /// A freeze Alipay has never seen (the shopper has not opened the cashier) answers
    /// `Declined` with the platform's not-found sub-code: Alipay keeps no record of an unpaid
    /// sign-only freeze, so "not found" cannot be told from "never will be".
    async fn query(&self, out_order_no: &str, out_trade_no: Option<&str>) -> Result<PlatformState, PayError> {
        if let Some(t) = out_trade_no
            && let Some(state) = self.trade_query(t).await?
        {
            return Ok(state);
        }
        let d = self.detail(out_order_no).await?;
        Ok(match d.str("status") {
            Some("INIT") => PlatformState::Pending,
            Some("CLOSED") => PlatformState::Cancelled,
            Some("SUCCESS") => {
                let nothing_left = d.fen("rest_amount") == Some(0);
                let nothing_paid = d.fen("total_pay_amount").unwrap_or(0) == 0;
                if nothing_left && nothing_paid {
                    PlatformState::Cancelled
                } else {
                    // Paid-and-released freezes stay Authorized here: the trade, not the freeze,
                    // says Paid (query with the out_trade_no).
                    PlatformState::Authorized {
                        platform_order_id: d.str("auth_no").map(str::to_string),
                        payer_id: d.str("payer_user_id").map(str::to_string),
                    }
                }
            }
            other => return Err(PayError::Permanent(format!("detail.query: status {other:?}"))),
        })
    }

    async fn cancel(&self, out_order_no: &str, platform_order_id: Option<&str>, reason: &str) -> Result<(), PayError> {
        let remark = if reason.trim().is_empty() { "cancel" } else { reason };
        let detail = match self.detail(out_order_no).await {
            Ok(d) => Some(d),
            Err(PayError::Declined { code, .. }) if not_found(&code) => None,
            Err(e) => return Err(e),
        };
        match detail.as_ref().and_then(|d| d.str("status")) {
            Some("CLOSED") => Ok(()),
            Some("SUCCESS") => {
                let Some(d) = detail.as_ref() else { return Ok(()) };
                let rest = d.fen("rest_amount").unwrap_or(0);
                if rest <= 0 {
                    return Ok(());
                }
                let auth_no = platform_order_id
                    .or_else(|| d.str("auth_no"))
                    .ok_or_else(|| PayError::permanent("unfreeze: no auth_no"))?;
                // One unfreeze per order: the same request number on a retry makes it idempotent.
                let biz = json!({
                    "auth_no": auth_no,
                    "out_request_no": format!("{out_order_no}U"),
                    "amount": fen_to_yuan(rest),
                    "remark": remark,
                });
                self.call(UNFREEZE, &[], Some(&biz), true).await?.ok(UNFREEZE).map(|_| ())
            }
            // Not paid yet (INIT) or unknown to Alipay: undo the freeze operation so a late
            // confirm cannot succeed.
            _ => {
                let biz = json!({ "out_order_no": out_order_no, "out_request_no": out_order_no, "remark": remark });
                self.call(CANCEL, &[], Some(&biz), false).await?.ok(CANCEL).map(|_| ())
            }
        }
    }

    async fn capture(&self, req: &CaptureRequest) -> Result<CaptureOutcome, PayError> {
        let sum: Fen = req.lines.iter().map(|l| l.amount_fen()).sum();
        if !req.total_fen.is_positive() {
            return Err(PayError::permanent("capture total must be positive (release instead)"));
        }
        if sum != req.total_fen {
            return Err(PayError::Permanent(format!("capture total {} ≠ lines {sum}", req.total_fen)));
        }
        let auth_no = req
            .platform_order_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::permanent("capture: no auth_no"))?;
        let buyer = req
            .payer_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| PayError::permanent("capture: no payer user id"))?;
        let biz = json!({
            "out_trade_no": req.out_trade_no,
            "total_amount": req.total_fen.yuan(),
            "subject": clean_subject(&req.title),
            "product_code": PRODUCT,
            "auth_no": auth_no,
            "buyer_id": buyer,
            "seller_id": self.seller_id,
            "auth_confirm_mode": "COMPLETE",
        });
        let reply = self.call(PAY, &[], Some(&biz), true).await?;
        match (reply.code.as_str(), reply.sub_code.as_str()) {
            ("10003", _) => Ok(CaptureOutcome::Collecting),
            ("40004", "ACQ.TRADE_HAS_SUCCESS") => match self.trade_query(&req.out_trade_no).await? {
                Some(PlatformState::Paid { transaction_id, .. }) => Ok(CaptureOutcome::Paid { transaction_id }),
                other => Err(PayError::Permanent(format!("trade.pay said TRADE_HAS_SUCCESS, query says {other:?}"))),
            },
            _ => {
                let reply = reply.ok(PAY)?;
                let transaction_id =
                    reply.str("trade_no").ok_or_else(|| PayError::permanent("trade.pay: no trade_no"))?.to_string();
                Ok(CaptureOutcome::Paid { transaction_id })
            }
        }
    }

    /// `alipay.trade.refund` on the capture's trade, `out_request_no` = the refund's number.
    /// Alipay answers at once; `fund_change` N means this request moved no money (a repeat, or
    /// not refunded), so the refund query decides.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, PayError> {
        if !req.refund_fen.is_positive() || req.refund_fen > req.paid_fen {
            return Err(PayError::Permanent(format!("refund {} of a payment of {}", req.refund_fen, req.paid_fen)));
        }
        let biz = json!({
            "out_trade_no": req.out_trade_no,
            "refund_amount": req.refund_fen.yuan(),
            "out_request_no": req.out_refund_no,
            "refund_reason": clean_subject(&req.reason),
        });
        let reply = self.call(REFUND, &[], Some(&biz), false).await?.ok(REFUND)?;
        match reply.str("fund_change") {
            Some("Y") => {
                Ok(RefundState::Succeeded { refund_id: reply.str("trade_no").unwrap_or(&req.out_trade_no).to_string() })
            }
            _ => match self.query_refund(req).await? {
                RefundState::Unknown => Ok(RefundState::Processing),
                other => Ok(other),
            },
        }
    }

    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, PayError> {
        let biz = json!({ "out_trade_no": req.out_trade_no, "out_request_no": req.out_refund_no });
        let reply = self.call(REFUND_QUERY, &[], Some(&biz), false).await?;
        if reply.code == "40004" && not_found(&reply.sub_code) {
            return Ok(RefundState::Unknown);
        }
        let reply = reply.ok(REFUND_QUERY)?;
        // No refund under that number: the answer carries no refund fields.
        Ok(match (reply.str("refund_status"), reply.str("refund_amount")) {
            (Some("REFUND_SUCCESS"), _) | (None, Some(_)) => {
                RefundState::Succeeded { refund_id: reply.str("trade_no").unwrap_or(&req.out_trade_no).to_string() }
            }
            (Some(other), _) => RefundState::Failed { reason: format!("refund_status {other}") },
            (None, None) => RefundState::Unknown,
        })
    }

    fn parse_callback(&self, _headers: &CallbackHeaders, body: &[u8]) -> Result<PayEvent, CallbackError> {
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let pairs = form.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if !sign::verify_notify(&self.alipay_public, pairs) {
            return Err(CallbackError::Unverified("missing or bad sign".into()));
        }
        let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
        if get("app_id") != Some(self.app_id.as_str()) {
            return Err(CallbackError::Unverified("app_id is not ours".into()));
        }
        let event_id = get("notify_id").ok_or_else(|| CallbackError::Malformed("no notify_id".into()))?.to_string();
        let event_type = get("notify_type").unwrap_or_default().to_string();
        let owned = |k: &str| get(k).map(str::to_string);
        let (out_order_no, kind) = match event_type.as_str() {
            "fund_auth_freeze" if get("status") == Some("SUCCESS") => (
                owned("out_order_no"),
                PayEventKind::Authorized { platform_order_id: owned("auth_no"), payer_id: owned("payer_user_id") },
            ),
            // A refund on the trade is notified too (with gmt_refund): the payment is unchanged.
            "trade_status_sync" if get("gmt_refund").is_some() => (owned("out_trade_no"), PayEventKind::Other),
            "trade_status_sync" if matches!(get("trade_status"), Some("TRADE_SUCCESS" | "TRADE_FINISHED")) => {
                let amount = get("total_amount").unwrap_or_default();
                let amount_fen =
                    yuan_to_fen(amount).ok_or_else(|| CallbackError::Malformed(format!("total_amount {amount:?}")))?;
                let transaction_id = owned("trade_no").ok_or_else(|| CallbackError::Malformed("no trade_no".into()))?;
                (owned("out_trade_no"), PayEventKind::Paid { amount_fen: Fen(amount_fen), transaction_id })
            }
            "fund_auth_unfreeze" => (owned("out_order_no"), PayEventKind::Released),
            _ => (owned("out_order_no").or_else(|| owned("out_trade_no")), PayEventKind::Other),
        };
        let resource: Map<String, Value> = form.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        Ok(PayEvent { event_id, event_type, out_order_no, kind, resource: Value::Object(resource).to_string() })
    }

    async fn download_bill(&self, date: NaiveDate) -> Result<BillFile, PayError> {
        let biz = json!({ "bill_type": "trade", "bill_date": date.format("%Y-%m-%d").to_string() });
        let reply = self.call(BILL_URL, &[], Some(&biz), false).await?;
        // A day without trades has a bill (EMPTY_DATA_WITH_BILL_FILE); no bill at all means
        // Alipay has not made it yet.
        if reply.code == "40004" && reply.sub_code == "isp.bill_not_exist" {
            return Err(PayError::Retryable(format!("bill {date}: not published yet")));
        }
        let reply = reply.ok(BILL_URL)?;
        let url = match (reply.str("bill_file_code"), reply.str("bill_download_url")) {
            (Some("EMPTY_DATA_WITH_BILL_FILE"), _) | (_, None) => return Ok(BillFile::default()),
            (_, Some(url)) => url.to_string(),
        };
        // The URL itself is the credential (valid 30 s): a plain GET.
        let res = self.http.get(&url).send().await.map_err(|e| PayError::Retryable(format!("bill download: {e}")))?;
        if !res.status().is_success() {
            return Err(PayError::Retryable(format!("bill download: HTTP {}", res.status())));
        }
        let bytes = res.bytes().await.map_err(|e| PayError::Retryable(format!("bill download: {e}")))?;
        let rows = bill::parse_zip(&bytes).map_err(PayError::permanent)?;
        let totals = bill::totals_zip(&bytes).map_err(PayError::permanent)?;
        Ok(BillFile { raw: bytes.to_vec(), rows, totals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_loses_reserved_characters() {
        assert_eq!(clean_subject("a/b=c&d"), "abcd");
        assert_eq!(clean_subject(" / "), "Heft");
    }

    #[test]
    fn not_found_codes() {
        assert!(not_found("ACQ.TRADE_NOT_EXIST"));
        assert!(not_found("ORDER_NOT_EXIST"));
        assert!(!not_found("ACQ.TRADE_HAS_SUCCESS"));
    }

    fn reply(code: &str, sub_code: &str) -> Reply {
        Reply { code: code.into(), sub_code: sub_code.into(), sub_msg: "m".into(), msg: "x".into(), body: Map::new() }
    }

    #[test]
    fn codes_map_to_errors() {
        assert!(reply("10000", "").ok("m").is_ok());
        assert!(matches!(reply("20000", "isp.unknow-error").ok("m"), Err(PayError::Retryable(_))));
        assert_eq!(
            reply("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH").ok("m").err(),
            Some(PayError::Declined { code: "ACQ.BUYER_BALANCE_NOT_ENOUGH".into(), message: "m".into() })
        );
        assert!(matches!(reply("40004", "ACQ.SYSTEM_ERROR").ok("m"), Err(PayError::Retryable(_))));
        for code in ["40001", "40002", "40006", "20001", "99999"] {
            assert!(matches!(reply(code, "").ok("m"), Err(PayError::Permanent(_))), "{code}");
        }
    }
}
