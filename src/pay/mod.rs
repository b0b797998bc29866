//! Payments: one [`PaymentGateway`] trait, an adapter per platform (WeChat Pay Score over API v3,
//! Alipay fund-auth pre-authorisation), and `sim`, a local simulator of both platforms that
//! speaks the same wire protocols, signatures and callbacks included.
//!
//! Amounts are integer fen everywhere in Heft; adapters convert at the wire (WeChat JSON carries
//! fen, Alipay carries yuan strings, both bills carry yuan).

pub mod alipay;
pub mod keys;
pub mod sim;
pub mod wechat;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::money::{Failure, is_not_found_code};
pub use crate::domain::payment::Channel;
pub use crate::domain::units::Fen;

/// Why a platform call failed, in the three ways a caller must treat differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    /// The platform said no to this request (insufficient funds, risk control, order in the
    /// wrong state…). Retrying the same request will not help.
    #[error("declined by the platform: {code}: {message}")]
    Declined { code: String, message: String },
    /// Timeout, connection failure, 5xx, rate limit, "system busy": the same request may succeed
    /// later. The outcome of the original request is unknown — query before assuming anything.
    #[error("platform unavailable (retry): {0}")]
    Retryable(String),
    /// Our side is wrong: bad signature, bad parameters, bad configuration, a response or callback
    /// that fails verification. Needs a person.
    #[error("permanent platform error: {0}")]
    Permanent(String),
}

impl PayError {
    pub fn permanent(e: impl fmt::Display) -> PayError {
        PayError::Permanent(e.to_string())
    }

    /// What this failure is to the rule for money messages (`domain::money`).
    pub fn failure(&self) -> Failure {
        match self {
            PayError::Retryable(_) => Failure::Unreachable,
            PayError::Declined { code, .. } if is_not_found_code(code) => Failure::NotFound,
            PayError::Declined { .. } => Failure::Refused,
            PayError::Permanent(_) => Failure::Broken,
        }
    }
}

/// A callback that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Missing or wrong signature, unknown key, stale timestamp: answered 401, nothing changes.
    #[error("callback signature: {0}")]
    Unverified(String),
    /// Signed but unreadable (cannot decrypt, not the expected shape): answered 400.
    #[error("callback body: {0}")]
    Malformed(String),
}

/// What the platform needs to start a pre-authorisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreauthRequest {
    /// Heft's number for this pre-authorisation: `out_order_no` on both platforms. Unique, at
    /// most 32 of `[0-9A-Za-z_-]`.
    pub out_order_no: String,
    /// The most that may be charged (Pay Score risk fund / Alipay freeze amount).
    pub cap_fen: Fen,
    /// Shown to the shopper (≤ 20 characters).
    pub title: String,
    /// The cabinet, as `device.start_device_id`.
    pub device_id: String,
    /// The shopper's id on the platform (openid / Alipay user id), where the platform takes it.
    pub payer_id: String,
    /// Echoed back in callbacks.
    pub attach: String,
}

/// What the mini-program needs to open the platform's confirm page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preauth {
    /// WeChat `order_id` (Alipay has none until the freeze).
    pub platform_order_id: Option<String>,
    /// WeChat: `{businessType: "wxpayScoreUse", extraData: {package}, legacy: {mch_id, package,
    /// timestamp, nonce_str, sign_type, sign}}`; Alipay: `{orderStr}` for `my.tradePay`.
    pub confirm: serde_json::Value,
}

/// Where a pre-authorisation stands on the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlatformState {
    /// Created, waiting for the shopper (WeChat CREATED; Alipay freeze not paid).
    Pending,
    /// The shopper confirmed (WeChat DOING/USER_CONFIRM; Alipay freeze SUCCESS).
    Authorized { platform_order_id: Option<String>, payer_id: Option<String> },
    /// Captured, money still being collected (WeChat MCH_COMPLETE/USER_PAYING).
    Capturing { amount_fen: Fen },
    /// Paid: the money moved. `transaction_id` is the key in the platform's bill.
    Paid { amount_fen: Fen, transaction_id: String },
    /// Cancelled, released or expired: nothing will be charged.
    Cancelled,
}

/// One line of what was bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureLine {
    pub name: String,
    pub unit_fen: Fen,
    pub count: i64,
}

impl CaptureLine {
    pub fn amount_fen(&self) -> Fen {
        self.unit_fen * self.count
    }
}

/// Charge a pre-authorisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    pub out_order_no: String,
    /// Alipay's trade number for the `trade.pay` (WeChat has none); unique, reused on a retry.
    pub out_trade_no: String,
    /// From the authorisation: Alipay `auth_no` (WeChat: the service `order_id`, unused).
    pub platform_order_id: Option<String>,
    /// From the authorisation: Alipay `payer_user_id` (`buyer_id`); WeChat openid, unused.
    pub payer_id: Option<String>,
    pub lines: Vec<CaptureLine>,
    /// Must equal the lines' sum; checked before anything is sent.
    pub total_fen: Fen,
    pub title: String,
}

/// What a capture came back with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureOutcome {
    /// The money moved (Alipay trade.pay answers synchronously).
    Paid { transaction_id: String },
    /// Accepted; the platform collects and calls back (WeChat USER_PAYING).
    Collecting,
}

/// Give money back on a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// Heft's number for this refund, the same on every retry: both platforms take a repeat of it
    /// as the same refund (WeChat `out_refund_no`, Alipay `out_request_no`).
    pub out_refund_no: String,
    pub out_order_no: String,
    /// The trade the capture made (Alipay refunds name it).
    pub out_trade_no: String,
    /// The platform's transaction (WeChat refunds name it).
    pub transaction_id: String,
    /// What the payment took, and what goes back.
    pub paid_fen: Fen,
    pub refund_fen: Fen,
    /// Shown to the shopper (at most 80 characters).
    pub reason: String,
}

/// Where a refund stands on the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundState {
    /// Accepted; the money is on its way back (WeChat PROCESSING).
    Processing,
    /// The money went back. `refund_id`: the platform's number for it.
    Succeeded { refund_id: String },
    /// The platform gave up on it (WeChat CLOSED or ABNORMAL): a person must act.
    Failed { reason: String },
    /// The platform knows no such refund: the request never reached it.
    Unknown,
}

/// A verified, decoded callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayEvent {
    /// The platform's id for this notification (WeChat `id`, Alipay `notify_id`): the dedupe key.
    pub event_id: String,
    /// WeChat `event_type` (`PAYSCORE.USER_CONFIRM`…), Alipay `notify_type` (`fund_auth_freeze`…).
    pub event_type: String,
    pub out_order_no: Option<String>,
    pub kind: PayEventKind,
    /// The decrypted resource (WeChat) or the form as JSON (Alipay), stored as evidence.
    pub resource: String,
}

/// What a callback reports: the payment state machine's own input, so the callback handler passes
/// it on unchanged.
pub use crate::domain::payment::Reported as PayEventKind;

/// The headers a callback may be verified with (WeChat signs in headers, Alipay in the body).
#[derive(Debug, Clone, Default)]
pub struct CallbackHeaders {
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
    pub serial: Option<String>,
    pub signature_type: Option<String>,
}

/// One row of a day's bill: a payment or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillRow {
    /// The platform's transaction number (WeChat 微信订单号, Alipay 支付宝交易号).
    pub transaction_id: String,
    /// Heft's number as the bill shows it (WeChat: out_order_no from 商户数据包 for Pay Score;
    /// Alipay: the out_trade_no).
    pub out_order_no: String,
    /// Payment positive, refund negative, fen.
    pub amount_fen: i64,
    /// Platform fee, fen (rounded half up from the bill's five decimals).
    pub fee_fen: i64,
    /// `SUCCESS`, `REFUND`, `交易`, `退款`…, as in the bill.
    pub status: String,
    /// Asia/Shanghai, as in the bill.
    pub time: chrono::NaiveDateTime,
}

/// A day's bill as the platform served it: the file's bytes, kept as evidence, and its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillFile {
    /// As downloaded (WeChat: the CSV, unzipped; Alipay: the zip); empty for a day without one.
    pub raw: Vec<u8>,
    pub rows: Vec<BillRow>,
    /// What the bill says its rows add up to, to check them by.
    pub totals: Option<crate::domain::bills::BillTotals>,
}

impl BillFile {
    /// SHA-256 of [`BillFile::raw`], lower-case hex: what a kept file is known by.
    pub fn sha256_hex(&self) -> String {
        sha256_hex(&self.raw)
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The shopper a mini-program login code stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformUser {
    /// WeChat openid / Alipay user id.
    pub uid: String,
    pub unionid: Option<String>,
}

/// One payment platform, as Heft uses it.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn channel(&self) -> Channel;

    /// Exchange a mini-program login code (`wx.login` / `my.getAuthCode`) for the shopper's id.
    async fn login(&self, code: &str) -> Result<PlatformUser, PayError>;

    /// Start a pre-authorisation; idempotent for the same request.
    async fn create_preauth(&self, req: &PreauthRequest) -> Result<Preauth, PayError>;

    /// Where the pre-authorisation stands (and, when captured, the payment).
    async fn query(&self, out_order_no: &str, out_trade_no: Option<&str>) -> Result<PlatformState, PayError>;

    /// Cancel a pre-authorisation not yet captured, or release what is still held.
    async fn cancel(&self, out_order_no: &str, platform_order_id: Option<&str>, reason: &str) -> Result<(), PayError>;

    /// Charge the lines against the pre-authorisation.
    async fn capture(&self, req: &CaptureRequest) -> Result<CaptureOutcome, PayError>;

    /// Give part or all of a payment back; idempotent on `out_refund_no`.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundState, PayError>;

    /// Where a refund stands.
    async fn query_refund(&self, req: &RefundRequest) -> Result<RefundState, PayError>;

    /// Verify and decode a callback exactly as received.
    fn parse_callback(&self, headers: &CallbackHeaders, body: &[u8]) -> Result<PayEvent, CallbackError>;

    /// Fetch and parse one day's bill (Asia/Shanghai date). An empty day has no rows.
    async fn download_bill(&self, date: NaiveDate) -> Result<BillFile, PayError>;
}

/// The platforms Heft takes payments on.
#[derive(Clone)]
pub struct Gateways {
    pub wechat: Arc<dyn PaymentGateway>,
    pub alipay: Arc<dyn PaymentGateway>,
}

impl Gateways {
    /// Both adapters, calling back to `{notify_base}/pay/{channel}/notify`.
    pub fn from_config(config: &crate::config::Config, notify_base: &str) -> Result<Gateways, PayError> {
        Ok(Gateways {
            wechat: Arc::new(wechat::WechatPayScore::new(
                &config.wechat,
                &config.payments,
                format!("{notify_base}/pay/wechat/notify"),
            )?),
            alipay: Arc::new(alipay::AlipayFundAuth::new(
                &config.alipay,
                &config.payments,
                format!("{notify_base}/pay/alipay/notify"),
            )?),
        })
    }

    pub fn get(&self, channel: Channel) -> &Arc<dyn PaymentGateway> {
        match channel {
            Channel::Wechat => &self.wechat,
            Channel::Alipay => &self.alipay,
        }
    }
}

/// The HTTP client of a platform adapter. Idle connections are dropped after 4 s: a server that
/// closes a kept-alive connection (actix-web, as the simulator runs, after 5 s) must not do so
/// under a request just sent on it, which fails as "error sending request".
pub fn http_client(payments: &crate::config::PaymentsConfig) -> Result<reqwest::Client, PayError> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(payments.http_timeout_ms))
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .build()
        .map_err(PayError::permanent)
}

/// Fen → `"12.50"` (Alipay amounts, bills).
pub fn fen_to_yuan(fen: i64) -> String {
    crate::domain::units::Fen(fen).yuan()
}

/// `"12.50"`, `"12.5"`, `"12"`, `"-0.08"` → fen. Refuses more than two decimals unless they are
/// zeros (bills print fees with five).
pub fn yuan_to_fen(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 2 && frac[2..].bytes().any(|b| b != b'0') {
        return None;
    }
    let mut cents = [b'0'; 2];
    for (i, b) in frac.bytes().take(2).enumerate() {
        cents[i] = b;
    }
    let yuan: i64 = int.parse().ok()?;
    let cents: i64 = std::str::from_utf8(&cents).ok()?.parse().ok()?;
    let fen = yuan.checked_mul(100)?.checked_add(cents)?;
    Some(if neg { -fen } else { fen })
}

/// A fee printed with up to five decimals (`"0.08000"`) → fen, rounded half up.
pub fn fee_to_fen(s: &str) -> Option<i64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = frac.as_bytes().to_vec();
    digits.resize(5, b'0');
    let hundred_thousandths: i64 = std::str::from_utf8(&digits[..5]).ok()?.parse().ok()?;
    let yuan: i64 = int.parse().ok()?;
    Some(yuan.checked_mul(100)? + (hundred_thousandths + 500) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_and_fen() {
        assert_eq!(fen_to_yuan(1250), "12.50");
        assert_eq!(fen_to_yuan(5), "0.05");
        assert_eq!(fen_to_yuan(-8), "-0.08");
        assert_eq!(yuan_to_fen("12.50"), Some(1250));
        assert_eq!(yuan_to_fen("12.5"), Some(1250));
        assert_eq!(yuan_to_fen("12"), Some(1200));
        assert_eq!(yuan_to_fen(" -0.08 "), Some(-8));
        assert_eq!(yuan_to_fen("1.001"), None);
        assert_eq!(yuan_to_fen("1.000"), Some(100));
        assert_eq!(yuan_to_fen("abc"), None);
        assert_eq!(yuan_to_fen(".5"), None);
        assert_eq!(fee_to_fen("0.08000"), Some(8));
        assert_eq!(fee_to_fen("0.07500"), Some(8));
        assert_eq!(fee_to_fen("0.07499"), Some(7));
        assert_eq!(fee_to_fen("1.2"), Some(120));
    }

    proptest::proptest! {
        #[test]
        fn fen_round_trips_through_yuan(fen in -10_000_000_000i64..10_000_000_000i64) {
            proptest::prop_assert_eq!(yuan_to_fen(&fen_to_yuan(fen)), Some(fen));
        }
    }
}
