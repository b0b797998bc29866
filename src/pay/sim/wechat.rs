//! The simulated WeChat Pay (API v3, Pay Score) and mini-program login (reference §1–4, §6).
//!
//! Every `/v3/…` request must carry `Accept`, `User-Agent` and a valid `WECHATPAY2-SHA256-RSA2048`
//! Authorization by the configured merchant key, mchid and serial; every JSON answer is signed with
//! the simulator's demo platform key (`Wechatpay-Serial` = `platform_public_key_id`), except the
//! bill file, which real WeChat does not sign either. Callbacks are AEAD-encrypted with the APIv3
//! key and signed afresh on each delivery attempt.

// Handlers bail out early with the platform's error response; the simulator is not a hot path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::WechatConfig;
use crate::pay::keys;
use crate::pay::keys::{PrivateKey, PublicKey};
use crate::pay::sim::callbacks::WECHAT_SCHEDULE_S;
use crate::pay::sim::store::{Change, Counter, Locked, Records, Store, StoreError, Tracked};
use crate::pay::sim::{Callback, SimError, SimState, merchant_public, take};
use crate::pay::wechat::{bill, sign};

/// Requests further than this from the simulator's clock are refused (reference §1.2).
const MAX_SKEW_S: i64 = 300;
/// A login code is good for one use within five minutes.
const CODE_TTL_S: i64 = 300;
/// A bill download URL is good for five minutes.
const BILL_URL_TTL_S: i64 = 300;
/// CREATED orders expire after 30 days.
const EXPIRY_DAYS: i64 = 30;
/// How long the simulated deduction takes after `complete` (unless `fail_then_succeed`).
const COLLECT_MS: u64 = 50;
/// How long a simulated refund stays PROCESSING before it succeeds.
const REFUND_MS: u64 = 50;

/// Asia/Shanghai: no daylight saving, UTC+8 all year.
const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(o) => o,
    None => panic!("UTC+8 is a valid offset"),
};

fn shanghai() -> FixedOffset {
    SHANGHAI
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum St {
    Created,
    UserConfirm,
    MchComplete,
    Done,
    Revoked,
    Expired,
}

impl St {
    /// The state as the platform names it (`DOING` split into its descriptions).
    fn name(self) -> &'static str {
        match self {
            St::Created => "CREATED",
            St::UserConfirm => "USER_CONFIRM",
            St::MchComplete => "MCH_COMPLETE",
            St::Done => "DONE",
            St::Revoked => "REVOKED",
            St::Expired => "EXPIRED",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Order {
    /// The create body, for the idempotency check.
    request: Value,
    order_id: String,
    package: String,
    query_id: String,
    state: St,
    openid: Option<String>,
    created_at: DateTime<Utc>,
    post_payments: Value,
    post_discounts: Value,
    total_amount: Option<i64>,
    transaction_id: Option<String>,
    trade_no: Option<String>,
    paid_at: Option<DateTime<Utc>>,
}

/// A refund (the standard refund API, by a Pay Score deduction's transaction).
#[derive(Serialize, Deserialize)]
struct Refund {
    refund_id: String,
    out_order_no: String,
    transaction_id: String,
    trade_no: String,
    amount_fen: i64,
    total_fen: i64,
    /// PROCESSING, then SUCCESS.
    status: String,
    created_at: DateTime<Utc>,
    success_at: Option<DateTime<Utc>>,
    notify_url: Option<String>,
}

struct Code {
    openid: String,
    issued: DateTime<Utc>,
    used: bool,
}

struct BillFile {
    bytes: Vec<u8>,
    expires: DateTime<Utc>,
}

/// What the platform knows. Orders, refunds and the id sequence are kept in the store; login
/// codes and bill download tokens live minutes and are not.
#[derive(Default)]
struct Inner {
    orders: Tracked<Order>,
    /// By out_refund_no.
    refunds: Tracked<Refund>,
    codes: HashMap<String, Code>,
    bills: HashMap<String, BillFile>,
    seq: Counter,
}

impl Records for Inner {
    fn take_changes(&mut self, mut out: Option<&mut Vec<Change>>) {
        self.orders.take_changes("order", out.as_deref_mut());
        self.refunds.take_changes("refund", out.as_deref_mut());
        self.seq.take_changes(out);
    }
}

impl Inner {
    fn load(store: Option<&Store>) -> Result<Inner, StoreError> {
        Ok(Inner {
            orders: Tracked::load(store, PLATFORM, "order")?,
            refunds: Tracked::load(store, PLATFORM, "refund")?,
            seq: Counter::load(store, PLATFORM)?,
            ..Inner::default()
        })
    }
}

/// The store's name for this platform's records.
const PLATFORM: &str = "wechat";

pub struct WechatSim {
    config: WechatConfig,
    merchant_public: PublicKey,
    /// Always the demo platform key: the simulator is the platform, whatever Heft is told to trust.
    platform_key: PrivateKey,
    inner: Mutex<Inner>,
    store: Option<Arc<Store>>,
}

impl WechatSim {
    pub fn new(config: &WechatConfig, store: Option<Arc<Store>>) -> Result<WechatSim, SimError> {
        Ok(WechatSim {
            config: config.clone(),
            merchant_public: merchant_public(&config.merchant_key_file, keys::sim::WECHAT_MERCHANT_KEY)?,
            platform_key: keys::load_private("sim", keys::sim::WECHAT_PLATFORM_KEY)?,
            inner: Mutex::new(Inner::load(store.as_deref())?),
            store,
        })
    }

    /// Lose an order, as a platform that no longer has it answers `ORDER_NOT_EXIST`. True when
    /// there was one.
    pub fn forget(&self, out_order_no: &str) -> bool {
        self.lock().orders.remove(out_order_no).is_some()
    }

    /// Every Pay Score order as the platform holds it: what is frozen, what was charged.
    pub fn holds(&self) -> Vec<super::Hold> {
        let inner = self.lock();
        inner
            .orders
            .iter()
            .map(|(no, o)| {
                let charged = matches!(o.state, St::MchComplete | St::Done);
                let risk_fund = o.request.pointer("/risk_fund/amount").and_then(Value::as_i64).unwrap_or(0);
                super::Hold {
                    channel: PLATFORM.into(),
                    out_order_no: no.clone(),
                    state: o.state.name().into(),
                    held_fen: if o.state == St::UserConfirm { risk_fund } else { 0 },
                    charged_fen: if charged { o.total_amount.unwrap_or(0) } else { 0 },
                    charges: u32::from(charged),
                }
            })
            .collect()
    }

    fn lock(&self) -> Locked<'_, Inner> {
        Locked::new(&self.inner, self.store.as_deref(), PLATFORM)
    }

    /// A JSON answer signed over `ts\nnonce\nbody\n`.
    fn signed(&self, status: StatusCode, v: &Value) -> HttpResponse {
        let body = v.to_string();
        let ts = Utc::now().timestamp().to_string();
        let nonce = sign::nonce();
        let signature = sign::sign_response(&self.platform_key, &ts, &nonce, body.as_bytes());
        HttpResponse::build(status)
            .content_type("application/json; charset=utf-8")
            .insert_header(("Request-ID", request_id()))
            .insert_header(("Wechatpay-Timestamp", ts))
            .insert_header(("Wechatpay-Nonce", nonce))
            .insert_header(("Wechatpay-Signature", signature))
            .insert_header(("Wechatpay-Serial", self.config.platform_public_key_id.clone()))
            .insert_header(("Wechatpay-Signature-Type", sign::SCHEME))
            .body(body)
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> HttpResponse {
        self.signed(status, &json!({"code": code, "message": message}))
    }

    /// The platform's checks on every v3 request (reference §6.1).
    fn authenticate(&self, req: &HttpRequest, body: &[u8]) -> Result<(), HttpResponse> {
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
        if header("Accept").is_none() || header("User-Agent").is_none() {
            return Err(self.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "Http头缺少Accept或User-Agent"));
        }
        let sign_error = |m: &str| self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", m);
        let auth = header("Authorization")
            .ok_or_else(|| sign_error("Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》"))?;
        let auth = sign::Authorization::parse(auth).map_err(|e| sign_error(&e.to_string()))?;
        if auth.mchid != self.config.mchid {
            return Err(sign_error("商户号与签名不匹配"));
        }
        if !auth.serial_no.eq_ignore_ascii_case(&self.config.merchant_serial_no) {
            return Err(sign_error("商户证书序列号有误"));
        }
        let ts: i64 = auth.timestamp.parse().map_err(|_| sign_error("签名时间戳格式错误"))?;
        if Utc::now().timestamp().abs_diff(ts) >= MAX_SKEW_S.unsigned_abs() {
            return Err(sign_error("签名时间戳已过期"));
        }
        let uri = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if !sign::verify_request(&self.merchant_public, &auth, req.method().as_str(), uri, body) {
            return Err(sign_error("签名错误"));
        }
        Ok(())
    }

    /// Authentication, then the failure knobs. `Ok(hang)`: go on, answering after `hang`.
    fn admit(
        &self,
        state: &SimState,
        req: &HttpRequest,
        body: &[u8],
        declinable: bool,
    ) -> Result<Option<Duration>, HttpResponse> {
        self.authenticate(req, body)?;
        if state.knob(|k| take(&mut k.reject_signature)) {
            return Err(self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", "签名错误"));
        }
        let (server_error, decline, hang) = state.knob(|k| {
            let server_error = take(&mut k.server_error);
            let decline = !server_error && declinable && take(&mut k.decline);
            let hang = (!server_error && !decline && take(&mut k.timeout)).then(|| Duration::from_millis(k.hang_ms));
            (server_error, decline, hang)
        });
        if server_error {
            return Err(self.error(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "系统错误"));
        }
        if decline {
            return Err(self.error(StatusCode::FORBIDDEN, "RULE_LIMIT", "不符合支付分使用规则"));
        }
        Ok(hang)
    }

    /// [`admit`](Self::admit) a call with a JSON body naming our appid and service: the body.
    fn admit_body(
        &self,
        state: &SimState,
        req: &HttpRequest,
        body: &[u8],
        declinable: bool,
    ) -> Result<(Option<Duration>, Value), HttpResponse> {
        let hang = self.admit(state, req, body, declinable)?;
        let v = parse_body(self, body)?;
        check_ids(self, &v)?;
        Ok((hang, v))
    }

    fn next_seq(inner: &mut Inner) -> u64 {
        inner.seq.next_id()
    }

    /// The order as query returns it (and callbacks carry it).
    fn order_json(&self, out_order_no: &str, o: &Order) -> Value {
        let r = &o.request;
        let mut v = json!({
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "out_order_no": out_order_no,
            "service_id": self.config.service_id,
            "service_introduction": r.get("service_introduction"),
            "risk_fund": r.get("risk_fund"),
            "time_range": r.get("time_range"),
            "attach": r.get("attach"),
            "notify_url": r.get("notify_url"),
            "order_id": o.order_id,
            "post_payments": o.post_payments,
            "post_discounts": o.post_discounts,
            "need_collection": true,
        });
        let state = match o.state {
            St::Created => "CREATED",
            St::UserConfirm | St::MchComplete => "DOING",
            St::Done => "DONE",
            St::Revoked => "REVOKED",
            St::Expired => "EXPIRED",
        };
        v["state"] = json!(state);
        match o.state {
            St::UserConfirm => v["state_description"] = json!("USER_CONFIRM"),
            St::MchComplete => v["state_description"] = json!("MCH_COMPLETE"),
            _ => {}
        }
        for k in ["location", "device"] {
            if let Some(x) = r.get(k) {
                v[k] = x.clone();
            }
        }
        if let Some(openid) = &o.openid {
            v["openid"] = json!(openid);
        }
        if let Some(total) = o.total_amount {
            v["total_amount"] = json!(total);
            let mut c = json!({"state": "USER_PAYING", "total_amount": total, "paying_amount": total, "paid_amount": 0, "details": []});
            if let (St::Done, Some(txn), Some(at)) = (o.state, &o.transaction_id, o.paid_at) {
                c = json!({
                    "state": "USER_PAID",
                    "total_amount": total,
                    "paying_amount": 0,
                    "paid_amount": total,
                    "details": [{
                        "seq": 1,
                        "amount": total,
                        "paid_type": "NEWTON",
                        "paid_time": at.with_timezone(&shanghai()).format("%Y%m%d%H%M%S").to_string(),
                        "transaction_id": txn,
                    }],
                });
            }
            v["collection"] = c;
        }
        v
    }

    /// Queue a Pay Score callback for this order.
    fn notify(&self, state: &SimState, order: &Value, event_type: &str, summary: &str) {
        let Some(url) = order.get("notify_url").and_then(Value::as_str).map(str::to_string) else { return };
        let out_order_no = order.get("out_order_no").and_then(Value::as_str).unwrap_or_default().to_string();
        self.notify_resource(state, &url, "payscore", order, event_type, summary, &out_order_no);
    }

    /// Queue a callback whose resource (of `original_type`) is `resource`, encrypted.
    #[allow(clippy::too_many_arguments)]
    fn notify_resource(
        &self,
        state: &SimState,
        url: &str,
        original_type: &str,
        resource: &Value,
        event_type: &str,
        summary: &str,
        about: &str,
    ) {
        let url = url.to_string();
        let (drop, duplicates, delay_ms) =
            state.knob(|k| (k.drop_callbacks, k.duplicate_callbacks, k.callback_delay_ms));
        if drop {
            return;
        }
        let nonce = sign::gcm_nonce();
        let plaintext = resource.to_string();
        let ciphertext = match sign::aead_encrypt(
            self.config.apiv3_key.as_bytes(),
            nonce.as_bytes(),
            original_type.as_bytes(),
            plaintext.as_bytes(),
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "simulator cannot encrypt a callback (APIv3 key length?)");
                return;
            }
        };
        let now = Utc::now().with_timezone(&shanghai());
        let envelope = json!({
            "id": uuid_like(),
            "create_time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": original_type,
                "nonce": nonce,
            },
        });
        let body = envelope.to_string().into_bytes();
        let key = self.platform_key.clone();
        let serial = self.config.platform_public_key_id.clone();
        state.callbacks.send(Callback {
            label: format!("wechat {event_type} {about}"),
            url,
            schedule: WECHAT_SCHEDULE_S,
            // Each attempt is signed with its own timestamp and nonce.
            build: Box::new(move || {
                let ts = Utc::now().timestamp().to_string();
                let nonce = sign::nonce();
                let signature = sign::sign_response(&key, &ts, &nonce, &body);
                let headers = vec![
                    ("Content-Type".to_string(), "application/json".to_string()),
                    ("Wechatpay-Timestamp".to_string(), ts),
                    ("Wechatpay-Nonce".to_string(), nonce),
                    ("Wechatpay-Signature".to_string(), signature),
                    ("Wechatpay-Serial".to_string(), serial.clone()),
                    ("Wechatpay-Signature-Type".to_string(), sign::SCHEME.to_string()),
                    ("Request-ID".to_string(), request_id()),
                ];
                (headers, body.clone())
            }),
            acked: |status, _| status == 200 || status == 204,
            duplicates,
            delay: Duration::from_millis(delay_ms),
        });
    }

    /// Collection finished: DONE / USER_PAID, a transaction id, the USER_PAID callback.
    fn collect(&self, state: &SimState, out_order_no: &str) {
        let order = {
            let mut inner = self.lock();
            let seq = Self::next_seq(&mut inner);
            let Some(o) = inner.orders.get_mut(out_order_no) else { return };
            if o.state != St::MchComplete {
                return;
            }
            let now = Utc::now();
            let local = now.with_timezone(&shanghai());
            o.state = St::Done;
            o.paid_at = Some(now);
            o.transaction_id = Some(format!("4200002500{}{seq:010}", local.format("%Y%m%d")));
            o.trade_no = Some(format!("PS{}{seq:010}", local.format("%Y%m%d%H%M%S")));
            self.order_json(out_order_no, o)
        };
        self.notify(state, &order, "PAYSCORE.USER_PAID", "支付成功");
    }

    /// A refund as the refund API returns it.
    fn refund_json(&self, out_refund_no: &str, r: &Refund) -> Value {
        let time = |t: DateTime<Utc>| t.with_timezone(&shanghai()).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let mut v = json!({
            "refund_id": r.refund_id,
            "out_refund_no": out_refund_no,
            "transaction_id": r.transaction_id,
            "out_trade_no": r.trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": time(r.created_at),
            "status": r.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": r.total_fen, "refund": r.amount_fen, "payer_total": r.total_fen, "payer_refund": r.amount_fen,
                "settlement_total": r.total_fen, "settlement_refund": r.amount_fen, "discount_refund": 0,
                "currency": "CNY",
            },
        });
        if let Some(at) = r.success_at {
            v["success_time"] = json!(time(at));
        }
        v
    }

    /// The refund went through: SUCCESS, and the REFUND.SUCCESS callback.
    fn refund_done(&self, state: &SimState, out_refund_no: &str) {
        let (resource, url) = {
            let mut inner = self.lock();
            let Some(r) = inner.refunds.get_mut(out_refund_no) else { return };
            if r.status != "PROCESSING" {
                return;
            }
            r.status = "SUCCESS".into();
            r.success_at = Some(Utc::now());
            let full = self.refund_json(out_refund_no, r);
            // The callback's resource: the refund, as `refund_status`.
            let resource = json!({
                "mchid": self.config.mchid,
                "out_trade_no": full["out_trade_no"],
                "transaction_id": full["transaction_id"],
                "out_refund_no": out_refund_no,
                "refund_id": full["refund_id"],
                "refund_status": "SUCCESS",
                "success_time": full["success_time"],
                "user_received_account": full["user_received_account"],
                "amount": {"total": r.total_fen, "refund": r.amount_fen, "payer_total": r.total_fen, "payer_refund": r.amount_fen},
            });
            (resource, r.notify_url.clone())
        };
        if let Some(url) = url {
            self.notify_resource(state, &url, "refund", &resource, "REFUND.SUCCESS", "退款成功", out_refund_no);
        }
    }

    fn refresh(o: &mut Order) {
        if o.state == St::Created && Utc::now() - o.created_at > chrono::Duration::days(EXPIRY_DAYS) {
            o.state = St::Expired;
        }
    }
}

fn request_id() -> String {
    format!("08{}", sign::nonce().to_uppercase())
}

fn uuid_like() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn query_map(req: &HttpRequest) -> HashMap<String, String> {
    serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
}

async fn answer(hang: Option<Duration>, res: HttpResponse) -> HttpResponse {
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    res
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// `appid` and `service_id` in a body must be this merchant's.
fn check_ids(w: &WechatSim, v: &Value) -> Result<(), HttpResponse> {
    if str_field(v, "appid") != Some(w.config.appid.as_str()) {
        return Err(w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "appid与商户号不匹配"));
    }
    if str_field(v, "service_id") != Some(w.config.service_id.as_str()) {
        return Err(w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "service_id错误"));
    }
    Ok(())
}

fn parse_body(w: &WechatSim, body: &[u8]) -> Result<Value, HttpResponse> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "请求体不是合法的JSON对象"))
}

fn chars(v: &Value, k: &str) -> usize {
    str_field(v, k).map(|s| s.chars().count()).unwrap_or(0)
}

fn valid_out_order_no(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b))
}

async fn create(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let w = &state.wechat;
    let (hang, v) = match w.admit_body(&state, &req, &body, true) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let param = |m: &str| w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
    let out_order_no = str_field(&v, "out_order_no").unwrap_or_default().to_string();
    if !valid_out_order_no(&out_order_no) {
        return param("out_order_no格式错误");
    }
    let intro = chars(&v, "service_introduction");
    if intro == 0 || intro > 20 {
        return param("service_introduction长度应为1-20个字符");
    }
    if v.pointer("/time_range/start_time").and_then(Value::as_str).is_none() {
        return param("缺少time_range.start_time");
    }
    let risk = v.pointer("/risk_fund/amount").and_then(Value::as_i64);
    let risk_name = v.pointer("/risk_fund/name").and_then(Value::as_str).unwrap_or_default();
    if !matches!(risk_name, "DEPOSIT" | "ADVANCE" | "CASH_DEPOSIT" | "ESTIMATE_ORDER_COST")
        || risk.is_none_or(|a| a <= 0)
    {
        return param("risk_fund错误");
    }
    if chars(&v, "notify_url") == 0 || chars(&v, "notify_url") > 255 {
        return param("缺少notify_url");
    }
    if chars(&v, "attach") > 256 {
        return param("attach超长");
    }
    if v.get("need_user_confirm").and_then(Value::as_bool) == Some(false) {
        return w.error(StatusCode::FORBIDDEN, "NO_AUTH", "商户无免确认模式权限");
    }
    let res = {
        let mut inner = w.lock();
        let seq = WechatSim::next_seq(&mut inner);
        if let Some(o) = inner.orders.get_mut(&out_order_no) {
            if o.request != v {
                return w.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "订单重入参数校验失败");
            }
            WechatSim::refresh(o);
            let mut j = w.order_json(&out_order_no, o);
            j["package"] = json!(o.package);
            w.signed(StatusCode::OK, &j)
        } else {
            let now = Utc::now();
            let order_id = format!("1000000000{}{seq:010}", now.with_timezone(&shanghai()).format("%Y%m%d%H%M%S"));
            let o = Order {
                request: v.clone(),
                package: format!("AAQTnZoAAAAB{}", sign::nonce()),
                query_id: format!("QID{}", sign::nonce()),
                order_id,
                state: St::Created,
                openid: None,
                created_at: now,
                post_payments: v.get("post_payments").cloned().unwrap_or(json!([])),
                post_discounts: v.get("post_discounts").cloned().unwrap_or(json!([])),
                total_amount: None,
                transaction_id: None,
                trade_no: None,
                paid_at: None,
            };
            let mut j = w.order_json(&out_order_no, &o);
            j["package"] = json!(o.package);
            inner.orders.insert(out_order_no.clone(), o);
            w.signed(StatusCode::OK, &j)
        }
    };
    answer(hang, res).await
}

async fn query(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let w = &state.wechat;
    let hang = match w.admit(&state, &req, b"", false) {
        Ok(h) => h,
        Err(res) => return res,
    };
    let q = query_map(&req);
    let ids = json!({"appid": q.get("appid"), "service_id": q.get("service_id")});
    if let Err(res) = check_ids(w, &ids) {
        return res;
    }
    let res = {
        let mut inner = w.lock();
        let key = match (q.get("out_order_no"), q.get("query_id")) {
            (Some(no), None) => Some(no.clone()),
            (None, Some(qid)) => inner.orders.iter().find(|(_, o)| &o.query_id == qid).map(|(k, _)| k.clone()),
            _ => return w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "out_order_no和query_id必须且只能填一个"),
        };
        match key.and_then(|k| inner.orders.get_mut(&k).map(|o| (k, o))) {
            Some((k, o)) => {
                WechatSim::refresh(o);
                w.signed(StatusCode::OK, &w.order_json(&k, o))
            }
            None => w.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
        }
    };
    answer(hang, res).await
}

async fn cancel(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let w = &state.wechat;
    let (hang, v) = match w.admit_body(&state, &req, &body, false) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let reason = chars(&v, "reason");
    if reason == 0 || reason > 50 {
        return w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "reason长度应为1-50个字符");
    }
    if state.knob(|k| take(&mut k.refuse_release)) {
        return w.error(StatusCode::BAD_REQUEST, "INVALID_ORDER_STATE", "订单状态不允许取消");
    }
    let out_order_no = path.into_inner();
    let res = {
        let mut inner = w.lock();
        match inner.orders.get_mut(&out_order_no) {
            None => w.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
            Some(o) => {
                WechatSim::refresh(o);
                if matches!(o.state, St::Created | St::UserConfirm) {
                    o.state = St::Revoked;
                    w.signed(
                        StatusCode::OK,
                        &json!({"appid": w.config.appid, "mchid": w.config.mchid, "out_order_no": out_order_no,
                            "service_id": w.config.service_id, "order_id": o.order_id}),
                    )
                } else {
                    w.error(StatusCode::BAD_REQUEST, "INVALID_ORDER_STATE", "订单状态不允许取消")
                }
            }
        }
    };
    answer(hang, res).await
}

fn sum_amounts(v: Option<&Value>) -> Option<i64> {
    let Some(items) = v else { return Some(0) };
    items.as_array()?.iter().try_fold(0i64, |acc, i| acc.checked_add(i.get("amount")?.as_i64()?))
}

async fn complete(
    state: web::Data<SimState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let w = &state.wechat;
    let (hang, v) = match w.admit_body(&state, &req, &body, true) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let param = |m: &str| w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
    let Some(payments) = v.get("post_payments").and_then(Value::as_array).filter(|p| !p.is_empty() && p.len() <= 100)
    else {
        return param("post_payments应为1-100项");
    };
    for p in payments {
        let name = chars(p, "name");
        let count = p.get("count").and_then(Value::as_i64).unwrap_or(1);
        if name == 0
            || name > 20
            || !(1..=100).contains(&count)
            || p.get("amount").and_then(Value::as_i64).is_none_or(|a| a < 0)
        {
            return param("post_payments项目错误");
        }
    }
    let (Some(paid), Some(discounts), Some(total)) = (
        sum_amounts(v.get("post_payments")),
        sum_amounts(v.get("post_discounts")),
        v.get("total_amount").and_then(Value::as_i64),
    ) else {
        return param("金额格式错误");
    };
    if total != paid - discounts || total < 0 {
        return param("total_amount应等于post_payments金额之和减去post_discounts金额之和");
    }
    let out_order_no = path.into_inner();
    let res = {
        let mut inner = w.lock();
        match inner.orders.get_mut(&out_order_no) {
            None => w.error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
            Some(o) => {
                WechatSim::refresh(o);
                let cap = o.request.pointer("/risk_fund/amount").and_then(Value::as_i64).unwrap_or(0);
                if o.state != St::UserConfirm {
                    w.error(StatusCode::BAD_REQUEST, "INVALID_ORDER_STATE", "订单状态不允许完结")
                } else if total > cap {
                    param("total_amount不能超过risk_fund金额")
                } else {
                    o.state = St::MchComplete;
                    o.total_amount = Some(total);
                    o.post_payments = v.get("post_payments").cloned().unwrap_or(json!([]));
                    o.post_discounts = v.get("post_discounts").cloned().unwrap_or(json!([]));
                    let mut j = w.order_json(&out_order_no, o);
                    if let Some(obj) = j.as_object_mut() {
                        obj.remove("collection");
                        obj.remove("openid");
                    }
                    w.signed(StatusCode::OK, &j)
                }
            }
        }
    };
    if res.status() == StatusCode::OK {
        // The deduction happens later; a fail_then_succeed capture takes recover_ms to go through.
        let delay = state.knob(|k| if take(&mut k.fail_then_succeed) { k.recover_ms } else { COLLECT_MS });
        let st = state.clone();
        actix_rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            st.wechat.collect(&st, &out_order_no);
        });
    }
    answer(hang, res).await
}

/// `POST /v3/refund/domestic/refunds`: refund (part of) a deduction, by its transaction_id.
async fn refund(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let w = &state.wechat;
    let hang = match w.admit(&state, &req, &body, false) {
        Ok(h) => h,
        Err(res) => return res,
    };
    let v = match parse_body(w, &body) {
        Ok(v) => v,
        Err(res) => return res,
    };
    let param = |m: &str| w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", m);
    let Some(out_refund_no) = str_field(&v, "out_refund_no").filter(|n| {
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
    }) else {
        return param("out_refund_no格式错误");
    };
    let amount = v.get("amount");
    let (Some(refund_fen), Some(total_fen)) = (
        amount.and_then(|a| a.get("refund")).and_then(Value::as_i64).filter(|a| *a > 0),
        amount.and_then(|a| a.get("total")).and_then(Value::as_i64),
    ) else {
        return param("amount.refund和amount.total必填且为正整数");
    };
    if amount.and_then(|a| str_field(a, "currency")) != Some("CNY") {
        return param("amount.currency只支持CNY");
    }
    if str_field(&v, "transaction_id").is_none() && str_field(&v, "out_trade_no").is_none() {
        return param("transaction_id和out_trade_no必须填一个");
    }
    if state.knob(|k| take(&mut k.decline)) {
        return answer(hang, w.error(StatusCode::FORBIDDEN, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")).await;
    }
    let (res, fresh) = take_refund(w, out_refund_no, refund_fen, total_fen, &v);
    if fresh {
        let (st, no) = (state.clone(), out_refund_no.to_string());
        actix_rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(REFUND_MS)).await;
            st.wechat.refund_done(&st, &no);
        });
    }
    answer(hang, res).await
}

/// The refund API's checks and bookkeeping: the answer, and whether a new refund was taken.
fn take_refund(w: &WechatSim, out_refund_no: &str, refund_fen: i64, total_fen: i64, v: &Value) -> (HttpResponse, bool) {
    let transaction_id = str_field(v, "transaction_id");
    let out_trade_no = str_field(v, "out_trade_no");
    let mut inner = w.lock();
    if let Some(r) = inner.refunds.get(out_refund_no) {
        // The same refund again: the same answer; another amount under its number is refused.
        if r.amount_fen != refund_fen {
            return (w.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "同一退款单号的退款金额不一致"), false);
        }
        return (w.signed(StatusCode::OK, &w.refund_json(out_refund_no, r)), false);
    }
    let paid = inner.orders.iter().find(|(_, o)| {
        o.state == St::Done
            && (transaction_id.is_some_and(|t| o.transaction_id.as_deref() == Some(t))
                || out_trade_no.is_some_and(|t| o.trade_no.as_deref() == Some(t)))
    });
    let Some((out_order_no, o)) = paid else {
        return (w.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"), false);
    };
    let (out_order_no, paid_fen) = (out_order_no.clone(), o.total_amount.unwrap_or(0));
    let (txn, trade_no) = (o.transaction_id.clone().unwrap_or_default(), o.trade_no.clone().unwrap_or_default());
    if total_fen != paid_fen {
        return (w.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "订单金额与支付金额不一致"), false);
    }
    let refunded: i64 = inner.refunds.values().filter(|r| r.transaction_id == txn).map(|r| r.amount_fen).sum();
    if refund_fen > paid_fen - refunded {
        return (w.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "退款金额大于可退金额"), false);
    }
    let seq = WechatSim::next_seq(&mut inner);
    let now = Utc::now();
    let r = Refund {
        refund_id: format!("50300{}{seq:010}", now.with_timezone(&shanghai()).format("%Y%m%d")),
        out_order_no,
        transaction_id: txn,
        trade_no,
        amount_fen: refund_fen,
        total_fen,
        status: "PROCESSING".into(),
        created_at: now,
        success_at: None,
        notify_url: str_field(v, "notify_url").map(str::to_string),
    };
    let res = w.signed(StatusCode::OK, &w.refund_json(out_refund_no, &r));
    inner.refunds.insert(out_refund_no.to_string(), r);
    (res, true)
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
async fn query_refund(state: web::Data<SimState>, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let w = &state.wechat;
    let hang = match w.admit(&state, &req, b"", false) {
        Ok(h) => h,
        Err(res) => return res,
    };
    let no = path.into_inner();
    let res = match w.lock().refunds.get(&no) {
        Some(r) => w.signed(StatusCode::OK, &w.refund_json(&no, r)),
        None => w.error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在"),
    };
    answer(hang, res).await
}

/// The day's bill: each payment done that day, and each refund that went through, dated as the
/// official bill dates it, by the day it was accepted (受理), as a REFUND row of its payment.
fn bill_lines(w: &WechatSim, date: chrono::NaiveDate) -> Vec<bill::BillLine> {
    let inner = w.lock();
    let mut lines: Vec<bill::BillLine> = inner
        .orders
        .iter()
        .filter_map(|(no, o)| {
            let at = o.paid_at?.with_timezone(&shanghai());
            if o.state != St::Done || at.date_naive() != date {
                return None;
            }
            let amount = o.total_amount?;
            Some(bill::BillLine {
                time: at.naive_local(),
                appid: w.config.appid.clone(),
                mchid: w.config.mchid.clone(),
                transaction_id: o.transaction_id.clone()?,
                trade_no: o.trade_no.clone()?,
                openid: o.openid.clone().unwrap_or_default(),
                trade_type: "AUTH".into(),
                amount_fen: amount,
                fee_fen: bill::fee_fen(amount),
                product: str_field(&o.request, "service_introduction").unwrap_or_default().to_string(),
                attach: format!("wxzff|{}|{no}", o.order_id),
                refund: None,
            })
        })
        .collect();
    // Refunds accepted that day that went through, each a REFUND row of its payment.
    for (out_refund_no, r) in inner.refunds.iter() {
        let at = r.created_at.with_timezone(&shanghai());
        if r.success_at.is_none() {
            continue;
        }
        let Some(o) = inner.orders.get(&r.out_order_no).filter(|_| at.date_naive() == date) else { continue };
        lines.push(bill::BillLine {
            time: at.naive_local(),
            appid: w.config.appid.clone(),
            mchid: w.config.mchid.clone(),
            transaction_id: r.transaction_id.clone(),
            trade_no: r.trade_no.clone(),
            openid: o.openid.clone().unwrap_or_default(),
            trade_type: "AUTH".into(),
            amount_fen: 0,
            fee_fen: -bill::fee_fen(r.amount_fen),
            product: str_field(&o.request, "service_introduction").unwrap_or_default().to_string(),
            attach: format!("wxzff|{}|{}", o.order_id, r.out_order_no),
            refund: Some(bill::BillRefund {
                refund_id: r.refund_id.clone(),
                out_refund_no: out_refund_no.clone(),
                amount_fen: r.amount_fen,
            }),
        });
    }
    lines.sort_by(|a, b| (a.time, &a.transaction_id).cmp(&(b.time, &b.transaction_id)));
    lines
}

impl super::FaultyLine for bill::BillLine {
    fn is_refund(&self) -> bool {
        self.refund.is_some()
    }

    fn add_amount(&mut self, fen: i64) {
        self.amount_fen += fen;
    }

    fn add_fee(&mut self, fen: i64) {
        self.fee_fen += fen;
    }

    fn unknown(&self, n: u32) -> Self {
        bill::BillLine {
            transaction_id: format!("42000099{:020}", n),
            trade_no: format!("UNKNOWN{n:08}"),
            attach: format!("wxzff|0|UNKNOWN{n:08}"),
            ..self.clone()
        }
    }
}

async fn tradebill(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let w = &state.wechat;
    let hang = match w.admit(&state, &req, b"", false) {
        Ok(h) => h,
        Err(res) => return res,
    };
    let q = query_map(&req);
    let Some(date) = q.get("bill_date").and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
        return w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "bill_date格式错误");
    };
    if q.get("bill_type").is_some_and(|t| t != "ALL") {
        return w.error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "模拟器只提供bill_type=ALL");
    }
    if !state.bill_published(date) {
        // WeChat builds a day's bill from 09:00 the next day; today's does not exist yet.
        return answer(hang, w.error(StatusCode::BAD_REQUEST, "STATEMENT_CREATING", "账单生成中，请稍后再试")).await;
    }
    let gzip = q.get("tar_type").is_some_and(|t| t == "GZIP");
    let mut lines = bill_lines(w, date);
    state.knob(|k| k.bill.clone()).apply(&mut lines);
    if lines.is_empty() {
        return answer(hang, w.error(StatusCode::BAD_REQUEST, "NO_STATEMENT_EXIST", "请求的账单文件不存在")).await;
    }
    let csv = bill::build(&lines);
    let hash = bill::sha1_hex(csv.as_bytes());
    let bytes = if gzip {
        match bill::gzip(csv.as_bytes()) {
            Ok(b) => b,
            Err(e) => return w.error(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", &e.to_string()),
        }
    } else {
        csv.into_bytes()
    };
    let token = sign::nonce();
    w.lock()
        .bills
        .insert(token.clone(), BillFile { bytes, expires: Utc::now() + chrono::Duration::seconds(BILL_URL_TTL_S) });
    // The simulator's own address, as the client reached it.
    let tar = if gzip { "&tartype=gzip" } else { "" };
    let url = {
        let ci = req.connection_info();
        format!("{}://{}/v3/billdownload/file?token={token}{tar}", ci.scheme(), ci.host())
    };
    answer(hang, w.signed(StatusCode::OK, &json!({"hash_type": "SHA1", "hash_value": hash, "download_url": url}))).await
}

async fn billdownload(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let w = &state.wechat;
    if let Err(res) = w.authenticate(&req, b"") {
        return res;
    }
    let q = query_map(&req);
    let inner = w.lock();
    match q.get("token").and_then(|t| inner.bills.get(t)).filter(|b| b.expires > Utc::now()) {
        // Not signed: the hash in the signed apply answer vouches for the file.
        Some(b) => HttpResponse::Ok()
            .content_type(if q.contains_key("tartype") { "application/x-gzip" } else { "text/plain; charset=utf-8" })
            .insert_header(("Request-ID", request_id()))
            .body(b.bytes.clone()),
        None => w.error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "下载链接已失效"),
    }
}

async fn jscode2session(state: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    let w = &state.wechat;
    let q = query_map(&req);
    let err = |code: i64, msg: &str| HttpResponse::Ok().json(json!({"errcode": code, "errmsg": msg}));
    if q.get("appid") != Some(&w.config.appid) {
        return err(40013, "invalid appid");
    }
    if q.get("secret") != Some(&w.config.app_secret) {
        return err(40125, "invalid appsecret");
    }
    if q.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return err(40002, "invalid grant_type");
    }
    let mut inner = w.lock();
    let Some(code) = q.get("js_code").and_then(|c| inner.codes.get_mut(c)) else {
        return err(40029, "invalid code");
    };
    if code.used {
        return err(40163, "code been used");
    }
    if Utc::now() - code.issued > chrono::Duration::seconds(CODE_TTL_S) {
        return err(40029, "invalid code");
    }
    code.used = true;
    HttpResponse::Ok().json(json!({"openid": code.openid, "session_key": sign::nonce()}))
}

/// Test hook: the phone's `wx.login`.
async fn sim_login(state: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let openid = str_field(&v, "openid").map(str::to_string).unwrap_or_else(|| format!("oSim{}", &sign::nonce()[..24]));
    let code = sign::nonce();
    state.wechat.lock().codes.insert(code.clone(), Code { openid: openid.clone(), issued: Utc::now(), used: false });
    HttpResponse::Ok().json(json!({"code": code, "openid": openid}))
}

/// Test hook: the shopper confirms on the Pay Score page, opened with `{package}` or the legacy
/// signed parameters.
async fn sim_confirm(state: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    let w = &state.wechat;
    let bad = |code: &str, m: &str| HttpResponse::BadRequest().json(json!({"code": code, "message": m}));
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad("PARAM_ERROR", "not JSON") };
    let Some(package) = str_field(&v, "package") else { return bad("PARAM_ERROR", "package missing") };
    if let Some(given) = str_field(&v, "sign") {
        let f = |k: &str| str_field(&v, k).unwrap_or_default();
        if f("mch_id") != w.config.mchid || f("sign_type") != "HMAC-SHA256" {
            return bad("PARAM_ERROR", "mch_id or sign_type");
        }
        let params = [
            ("mch_id", f("mch_id")),
            ("package", package),
            ("timestamp", f("timestamp")),
            ("nonce_str", f("nonce_str")),
            ("sign_type", f("sign_type")),
        ];
        match sign::legacy_sign(&params, &w.config.apiv2_key) {
            Ok(s) if s == given => {}
            _ => return bad("SIGN_ERROR", "legacy sign does not verify"),
        }
    }
    let openid = str_field(&v, "openid").map(str::to_string).unwrap_or_else(|| format!("oSim{}", &sign::nonce()[..24]));
    let order = {
        let mut inner = w.lock();
        let Some((no, o)) = inner.orders.iter_mut().find(|(_, o)| o.package == package) else {
            return bad("ORDER_NOT_EXIST", "no order with this package");
        };
        WechatSim::refresh(o);
        if o.state != St::Created {
            return bad("INVALID_ORDER_STATE", "the order cannot be confirmed any more");
        }
        o.state = St::UserConfirm;
        o.openid = Some(openid);
        (w.order_json(no, o), o.query_id.clone())
    };
    w.notify(&state, &order.0, "PAYSCORE.USER_CONFIRM", "确认订单");
    HttpResponse::Ok().json(json!({"query_id": order.1, "out_order_no": order.0["out_order_no"]}))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/payscore/serviceorder", web::post().to(create))
        .route("/v3/payscore/serviceorder", web::get().to(query))
        .route("/v3/payscore/serviceorder/{out_order_no}/cancel", web::post().to(cancel))
        .route("/v3/payscore/serviceorder/{out_order_no}/complete", web::post().to(complete))
        .route("/v3/refund/domestic/refunds", web::post().to(refund))
        .route("/v3/refund/domestic/refunds/{out_refund_no}", web::get().to(query_refund))
        .route("/v3/bill/tradebill", web::get().to(tradebill))
        .route("/v3/billdownload/file", web::get().to(billdownload))
        .route("/sns/jscode2session", web::get().to(jscode2session))
        .route("/sim/wechat/login", web::post().to(sim_login))
        .route("/sim/wechat/confirm", web::post().to(sim_confirm));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_with(store: Option<Arc<Store>>) -> WechatSim {
        let shipped = include_str!("../../../config.toml");
        let config = crate::config::Config::from_toml_and_env(shipped, std::path::Path::new("config.toml"), [])
            .expect("shipped config");
        WechatSim::new(&config.wechat, store).expect("simulator")
    }

    fn sim() -> WechatSim {
        sim_with(None)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    /// A refund accepted late on one day that went through the next is a row of the day it was
    /// accepted (受理), as the official bill dates it.
    #[test]
    fn refund_rows_are_dated_by_acceptance() {
        let w = sim();
        {
            let mut inner = w.lock();
            inner.orders.insert(
                "VC1".into(),
                Order {
                    request: json!({"service_introduction": "Heft"}),
                    order_id: "1000".into(),
                    package: String::new(),
                    query_id: String::new(),
                    state: St::Done,
                    openid: Some("o1".into()),
                    created_at: at("2026-01-01T10:00:00+08:00"),
                    post_payments: Value::Null,
                    post_discounts: Value::Null,
                    total_amount: Some(900),
                    transaction_id: Some("4200001".into()),
                    trade_no: Some("PS1".into()),
                    paid_at: Some(at("2026-01-01T10:05:00+08:00")),
                },
            );
            inner.refunds.insert(
                "VC1R1".into(),
                Refund {
                    refund_id: "5030001".into(),
                    out_order_no: "VC1".into(),
                    transaction_id: "4200001".into(),
                    trade_no: "PS1".into(),
                    amount_fen: 450,
                    total_fen: 900,
                    status: "SUCCESS".into(),
                    created_at: at("2026-01-01T23:59:30+08:00"),
                    success_at: Some(at("2026-01-02T00:00:40+08:00")),
                    notify_url: None,
                },
            );
        }
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 1, d).expect("date");
        let first = bill_lines(&w, day(1));
        assert_eq!(first.len(), 2, "the payment and the refund accepted that day");
        assert_eq!(first[1].refund.as_ref().map(|r| r.amount_fen), Some(450));
        assert!(bill_lines(&w, day(2)).is_empty(), "nothing was accepted on the 2nd");
    }

    /// With a store, a new simulator on the same file knows the orders and refunds, and its ids
    /// go on from where the last one stopped.
    #[test]
    fn a_new_simulator_on_the_same_file_remembers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pay-sim.db");
        let open = || Some(Arc::new(Store::open(path.to_str().expect("utf8")).expect("store")));
        let w = sim_with(open());
        let seq = {
            let mut inner = w.lock();
            let seq = WechatSim::next_seq(&mut inner);
            inner.orders.insert("VC9".into(), serde_json::from_value(order_json()).expect("order"));
            seq
        };
        drop(w);
        let w = sim_with(open());
        let mut inner = w.lock();
        assert_eq!(inner.orders.get("VC9").and_then(|o| o.total_amount), Some(900));
        assert_eq!(WechatSim::next_seq(&mut inner), seq + 1);
        assert!(inner.refunds.get("none").is_none());
    }

    fn order_json() -> Value {
        json!({
            "request": {}, "order_id": "1000", "package": "", "query_id": "", "state": "Done",
            "openid": "o1", "created_at": "2026-01-01T02:00:00Z", "post_payments": null, "post_discounts": null,
            "total_amount": 900, "transaction_id": "4200001", "trade_no": "PS1", "paid_at": "2026-01-01T02:05:00Z"
        })
    }
}
