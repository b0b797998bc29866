//! The simulated Alipay (gateway.do, fund-auth pre-authorisation) and mini-program login.
//!
//! `POST /gateway.do` (or `GET`, as python-alipay-sdk sends it) checks the app id, the
//! `timestamp` and the RSA2 `sign` over the merged query-string and form parameters, runs the
//! method against in-memory state, and answers `{"<method>_response":{…},"sign":"…"}` signed
//! over the exact object text, refusals included; an unknown app id's answer is unsigned. Freezes, trades and
//! unfreezes are announced by signed form notifies, acknowledged only by the body `success`.
//!
//! Test hooks: `POST /sim/alipay/login` issues a one-use auth code, `POST /sim/alipay/confirm`
//! plays the shopper paying an `orderStr` freeze (refused once its `timeout_express` has passed
//! since its `timestamp`), `GET /sim/alipay/bill/{token}` serves the bill.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::AlipayConfig;
use crate::pay::alipay::bill::{self, BillLine};
use crate::pay::alipay::{TIME_FORMAT, beijing_now, sign};
use crate::pay::keys;
use crate::pay::keys::{PrivateKey, PublicKey};
use crate::pay::sim::callbacks::ALIPAY_SCHEDULE_S;
use crate::pay::sim::store::{Change, Counter, Locked, Records, Store, StoreError, Tracked};
use crate::pay::sim::{Callback, SimError, SimState, merchant_public, take};
use crate::pay::{fen_to_yuan, yuan_to_fen};

const FREEZE: &str = "alipay.fund.auth.order.app.freeze";
const PRODUCT: &str = "PRE_AUTH_ONLINE";
/// How long a bill download URL works.
const BILL_URL_TTL: Duration = Duration::from_secs(30);

pub struct AlipaySim {
    app_id: String,
    seller_id: String,
    app_public: PublicKey,
    platform_key: PrivateKey,
    inner: Mutex<Inner>,
    store: Option<Arc<Store>>,
}

/// What the platform knows. Freezes, trades and the id sequence are kept in the store; login
/// codes, injected failures and bill download tokens live minutes and are not.
#[derive(Default)]
struct Inner {
    seq: Counter,
    /// Login auth code → user id, removed on use.
    codes: HashMap<String, String>,
    /// By out_order_no.
    freezes: Tracked<Freeze>,
    /// By out_trade_no.
    trades: Tracked<Trade>,
    /// out_trade_no → when a failing trade.pay (fail_then_succeed knob) starts to succeed.
    failing: HashMap<String, Instant>,
    /// Bill token → (bill date, expiry).
    bills: HashMap<String, (NaiveDate, Instant)>,
}

impl Inner {
    fn next(&mut self) -> u64 {
        self.seq.next_id()
    }

    fn load(store: Option<&Store>) -> Result<Inner, StoreError> {
        Ok(Inner {
            seq: Counter::load(store, PLATFORM)?,
            freezes: Tracked::load(store, PLATFORM, "freeze")?,
            trades: Tracked::load(store, PLATFORM, "trade")?,
            ..Inner::default()
        })
    }
}

impl Records for Inner {
    fn take_changes(&mut self, mut out: Option<&mut Vec<Change>>) {
        self.freezes.take_changes("freeze", out.as_deref_mut());
        self.trades.take_changes("trade", out.as_deref_mut());
        self.seq.take_changes(out);
    }
}

/// The store's name for this platform's records.
const PLATFORM: &str = "alipay";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Unfreeze {
    amount_fen: i64,
    operation_id: String,
    at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Freeze {
    out_order_no: String,
    out_request_no: String,
    /// Empty for an order cancelled before Alipay saw it.
    auth_no: String,
    operation_id: String,
    /// SUCCESS (frozen) or CLOSED.
    status: String,
    payer_user_id: String,
    amount_fen: i64,
    paid_fen: i64,
    unfrozen_fen: i64,
    created: NaiveDateTime,
    notify_url: Option<String>,
    /// By out_request_no.
    unfreezes: HashMap<String, Unfreeze>,
}

impl Freeze {
    fn rest(&self) -> i64 {
        self.amount_fen - self.paid_fen - self.unfrozen_fen
    }

    fn order_status(&self) -> &'static str {
        match (self.status.as_str(), self.rest()) {
            ("CLOSED", _) => "CLOSED",
            (_, 0) => "FINISH",
            _ => "AUTHORIZED",
        }
    }

    /// The fields detail.query and the fund-auth notifies share, for one operation.
    fn fields(&self, operation: Option<(&str, &Unfreeze)>) -> Vec<(String, String)> {
        let (operation_type, request_no, operation_id, amount, at) = match operation {
            Some((no, u)) => ("UNFREEZE", no.to_string(), u.operation_id.clone(), u.amount_fen, u.at),
            None => ("FREEZE", self.out_request_no.clone(), self.operation_id.clone(), self.amount_fen, self.created),
        };
        let status = if operation.is_some() { "SUCCESS" } else { self.status.as_str() };
        let time = at.format(TIME_FORMAT).to_string();
        let mut f = vec![
            ("out_order_no", self.out_order_no.clone()),
            ("out_request_no", request_no),
            ("operation_type", operation_type.to_string()),
            ("amount", fen_to_yuan(amount)),
            ("status", status.to_string()),
            ("order_status", self.order_status().to_string()),
            ("gmt_create", self.created.format(TIME_FORMAT).to_string()),
            ("gmt_trans", time),
            ("total_freeze_amount", fen_to_yuan(if self.auth_no.is_empty() { 0 } else { self.amount_fen })),
            ("total_unfreeze_amount", fen_to_yuan(self.unfrozen_fen)),
            ("total_pay_amount", fen_to_yuan(self.paid_fen)),
            ("rest_amount", fen_to_yuan(self.rest().max(0))),
        ];
        for (k, v) in [
            ("auth_no", &self.auth_no),
            ("operation_id", &operation_id),
            ("payer_user_id", &self.payer_user_id),
            ("payer_logon_id", &mask(&self.payer_user_id)),
        ] {
            if !v.is_empty() {
                f.push((k, v.clone()));
            }
        }
        f.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trade {
    trade_no: String,
    out_trade_no: String,
    auth_no: String,
    buyer_id: String,
    seller_id: String,
    subject: String,
    total_fen: i64,
    paid_at: NaiveDateTime,
    notify_url: Option<String>,
    /// Refunds by out_request_no: amount and when.
    refunds: Vec<(String, i64, NaiveDateTime)>,
}

impl Trade {
    fn refunded_fen(&self) -> i64 {
        self.refunds.iter().map(|r| r.1).sum()
    }
}

impl Trade {
    fn fields(&self) -> Vec<(String, String)> {
        let amount = fen_to_yuan(self.total_fen);
        let at = self.paid_at.format(TIME_FORMAT).to_string();
        [
            ("trade_no", self.trade_no.clone()),
            ("out_trade_no", self.out_trade_no.clone()),
            ("buyer_user_id", self.buyer_id.clone()),
            ("buyer_logon_id", mask(&self.buyer_id)),
            ("total_amount", amount.clone()),
            ("receipt_amount", amount.clone()),
            ("buyer_pay_amount", amount),
            ("gmt_payment", at),
            ("auth_no", self.auth_no.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A masked logon id, as Alipay shows the payer (`208****0001`).
fn mask(user_id: &str) -> String {
    let chars: Vec<char> = user_id.chars().collect();
    if chars.len() < 8 {
        return user_id.to_string();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// `timeout_express` (`1m`, `15m`, `2h`, `1d`) → how long a freeze string
/// stays payable; `None` when absent or unreadable (no limit).
fn timeout_express(s: &str) -> Option<chrono::Duration> {
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    match unit {
        "m" => Some(chrono::Duration::minutes(n)),
        "h" => Some(chrono::Duration::hours(n)),
        "d" => Some(chrono::Duration::days(n)),
        _ => None,
    }
}

/// A gateway refusal: `code`, `msg`, `sub_code`, `sub_msg`.
struct Refusal(&'static str, &'static str, String, String);

fn business(sub_code: &str, sub_msg: &str) -> Refusal {
    Refusal("40004", "Business Failed", sub_code.to_string(), sub_msg.to_string())
}

fn missing(name: &str) -> Refusal {
    Refusal("40001", "Missing Required Arguments", "isv.missing-parameter".into(), format!("missing {name}"))
}

fn invalid(what: &str) -> Refusal {
    Refusal("40002", "Invalid Arguments", "isv.invalid-parameter".into(), what.to_string())
}

fn unknown_app_id() -> Refusal {
    Refusal("40002", "Invalid Arguments", "isv.invalid-app-id".into(), "无效的AppID参数".into())
}

fn refusal_object(r: Refusal) -> Map<String, Value> {
    let Refusal(code, msg, sub_code, sub_msg) = r;
    let object = json!({ "code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg });
    object.as_object().cloned().unwrap_or_default()
}

/// How far a request's `timestamp` may be from the gateway's clock. Alipay does not publish its
/// tolerance; a quarter of an hour refuses replayed old requests and forgives ordinary skew.
const TIMESTAMP_TOLERANCE_MIN: i64 = 15;

/// The gateway's `timestamp` check: present, `yyyy-MM-dd HH:mm:ss` Beijing time, and near now.
fn check_timestamp(timestamp: Option<&str>, now: NaiveDateTime) -> Result<(), Refusal> {
    let at = timestamp.ok_or_else(|| missing("timestamp"))?;
    let refused = || Refusal("40002", "Invalid Arguments", "isv.invalid-timestamp".into(), "非法的时间戳参数".into());
    let at = NaiveDateTime::parse_from_str(at, TIME_FORMAT).map_err(|_| refused())?;
    if (now - at).num_minutes().abs() > TIMESTAMP_TOLERANCE_MIN {
        return Err(refused());
    }
    Ok(())
}

/// A notify to send once the state lock is released.
struct Notify {
    url: String,
    notify_type: &'static str,
    fields: Vec<(String, String)>,
}

type Outcome = Result<(Vec<(String, String)>, Vec<Notify>), Refusal>;

impl AlipaySim {
    pub fn new(config: &AlipayConfig, store: Option<Arc<Store>>) -> Result<AlipaySim, SimError> {
        Ok(AlipaySim {
            app_id: config.app_id.clone(),
            seller_id: config.seller_id.clone(),
            app_public: merchant_public(&config.app_key_file, keys::sim::ALIPAY_APP_KEY)?,
            platform_key: keys::load_private("sim", keys::sim::ALIPAY_PLATFORM_KEY)?,
            inner: Mutex::new(Inner::load(store.as_deref())?),
            store,
        })
    }

    /// Lose a freeze and its trades, as a platform that no longer has them answers
    /// `AUTH_ORDER_NOT_EXIST` / `ACQ.TRADE_NOT_EXIST`. True when there was one.
    pub fn forget(&self, out_order_no: &str) -> bool {
        let mut inner = self.lock();
        let Some(f) = inner.freezes.remove(out_order_no) else { return false };
        inner.trades.retain(|_, t| f.auth_no.is_empty() || t.auth_no != f.auth_no);
        true
    }

    /// Every freeze as the platform holds it: what is still frozen, and the trades paid against
    /// it (more than one is a double charge).
    pub fn holds(&self) -> Vec<super::Hold> {
        let inner = self.lock();
        inner
            .freezes
            .iter()
            .map(|(no, f)| {
                let trades: Vec<&Trade> =
                    inner.trades.values().filter(|t| !f.auth_no.is_empty() && t.auth_no == f.auth_no).collect();
                super::Hold {
                    channel: PLATFORM.into(),
                    out_order_no: no.clone(),
                    state: f.order_status().into(),
                    held_fen: if f.order_status() == "AUTHORIZED" { f.rest() } else { 0 },
                    charged_fen: trades.iter().map(|t| t.total_fen - t.refunded_fen()).sum(),
                    charges: u32::try_from(trades.len()).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }

    fn lock(&self) -> Locked<'_, Inner> {
        Locked::new(&self.inner, self.store.as_deref(), PLATFORM)
    }

    /// A signed gateway answer.
    fn respond(&self, key: &str, object: Map<String, Value>) -> HttpResponse {
        let body = sign::signed_response(&self.platform_key, key, &Value::Object(object).to_string());
        HttpResponse::Ok().content_type("application/json;charset=utf-8").body(body)
    }

    fn refuse(&self, key: &str, r: Refusal) -> HttpResponse {
        self.respond(key, refusal_object(r))
    }

    /// Checks an app's signed parameters the way the gateway does.
    fn check_signed(&self, params: &[(String, String)]) -> Result<(), Refusal> {
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        if get("app_id") != Some(self.app_id.as_str()) {
            return Err(unknown_app_id());
        }
        if get("sign").is_none_or(str::is_empty) {
            return Err(Refusal(
                "40001",
                "Missing Required Arguments",
                "isv.missing-signature".into(),
                "缺少签名参数".into(),
            ));
        }
        if get("sign_type") != Some("RSA2")
            || !sign::verify_request(&self.app_public, params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            return Err(Refusal("40002", "Invalid Arguments", "isv.invalid-signature".into(), "验签出错".into()));
        }
        Ok(())
    }

    /// Sign and post a notify, honouring the callback knobs.
    fn notify(&self, state: &SimState, n: Notify) {
        let (drop, duplicates, delay_ms) =
            state.knob(|k| (k.drop_callbacks, k.duplicate_callbacks, k.callback_delay_ms));
        if drop {
            return;
        }
        let notify_id = hex::encode(rand::random::<[u8; 16]>());
        let mut params = n.fields;
        params.extend(
            [
                ("notify_id", notify_id.as_str()),
                ("notify_time", &beijing_now().format(TIME_FORMAT).to_string()),
                ("notify_type", n.notify_type),
                ("app_id", &self.app_id),
                ("auth_app_id", &self.app_id),
                ("charset", "utf-8"),
                ("version", "1.0"),
                ("sign_type", "RSA2"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        params.sort();
        let sign = sign::sign_notify(&self.platform_key, params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        params.push(("sign".into(), sign));
        let body = serde_urlencoded::to_string(&params).unwrap_or_default().into_bytes();
        let headers =
            vec![("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string())];
        state.callbacks.send(Callback {
            label: format!("alipay {} {notify_id}", n.notify_type),
            url: n.url,
            schedule: ALIPAY_SCHEDULE_S,
            build: Box::new(move || (headers.clone(), body.clone())),
            acked,
            duplicates,
            delay: Duration::from_millis(delay_ms),
        });
    }
}

/// Alipay stops resending only on the exact body `success`.
fn acked(_status: u16, body: &[u8]) -> bool {
    body == b"success"
}

fn id(prefix_date: NaiveDateTime, middle: &str, seq: u64, width: usize) -> String {
    format!("{}{middle}{seq:0width$}", prefix_date.format("%Y%m%d"))
}

fn biz_str<'a>(biz: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    biz.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn biz_amount(biz: &Map<String, Value>, key: &str) -> Result<i64, Refusal> {
    let s = biz_str(biz, key).ok_or_else(|| missing(key))?;
    match yuan_to_fen(s) {
        Some(fen) if fen > 0 => Ok(fen),
        _ => Err(invalid(&format!("{key} {s:?}"))),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // python-alipay-sdk sends server APIs as GET with everything in the query; the gateway takes it.
    cfg.route("/gateway.do", web::post().to(gateway))
        .route("/gateway.do", web::get().to(gateway))
        .route("/sim/alipay/login", web::post().to(login_hook))
        .route("/sim/alipay/confirm", web::post().to(confirm_hook))
        .route("/sim/alipay/bill/{token}", web::get().to(bill_file));
}

/// The request's parameters: the query string and the form merged (the Java SDK puts system
/// parameters in the query string, gopay everything in the body, python-alipay-sdk GETs).
fn merged_params(req: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    for (k, v) in form {
        params.retain(|(key, _)| *key != k);
        params.push((k, v));
    }
    params
}

/// The injected failures that stop a request before its method runs.
fn injected_refusal(state: &SimState) -> Option<Refusal> {
    if state.knob(|k| take(&mut k.reject_signature)) {
        return Some(Refusal("40002", "Invalid Arguments", "isv.invalid-signature".into(), "验签出错".into()));
    }
    state
        .knob(|k| take(&mut k.server_error))
        .then(|| Refusal("20000", "Service Currently Unavailable", "isp.unknow-error".into(), "系统繁忙".into()))
}

async fn gateway(state: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let sim = &state.alipay;
    let params = merged_params(&req, &body);
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let method = get("method").unwrap_or_default();
    // Errors come back under the method's response key, as Alipay answers (SDKs look there).
    let key = if method.is_empty() { "error_response".to_string() } else { sign::response_key(&method) };
    if get("app_id") != Some(sim.app_id.clone()) {
        // Alipay cannot sign for an app it does not know: this answer carries no `sign`.
        let object = refusal_object(unknown_app_id());
        return HttpResponse::Ok()
            .content_type("application/json;charset=utf-8")
            .body(json!({ key: object }).to_string());
    }
    if let Err(r) = check_timestamp(get("timestamp").as_deref(), beijing_now()).and_then(|()| sim.check_signed(&params))
    {
        return sim.refuse(&key, r);
    }
    let biz: Map<String, Value> = match get("biz_content") {
        None => Map::new(),
        Some(text) => match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => m,
            _ => return sim.refuse(&key, invalid("biz_content is not a JSON object")),
        },
    };
    if let Some(r) = injected_refusal(&state) {
        return sim.refuse(&key, r);
    }
    let hang = state.knob(|k| take(&mut k.timeout).then_some(k.hang_ms));
    let notify_url = get("notify_url");
    let outcome = match method.as_str() {
        "alipay.system.oauth.token" => oauth_token(sim, get("grant_type"), get("code")),
        "alipay.fund.auth.operation.detail.query" => detail_query(sim, &biz),
        "alipay.fund.auth.order.unfreeze" if state.knob(|k| take(&mut k.refuse_release)) => {
            Err(business("REQUEST_AMOUNT_EXCEED", "请求解冻金额超限"))
        }
        "alipay.fund.auth.order.unfreeze" => unfreeze(sim, &biz),
        "alipay.fund.auth.operation.cancel" => operation_cancel(sim, &biz),
        "alipay.trade.pay" => trade_pay(&state, &biz, notify_url),
        "alipay.trade.query" => trade_query(sim, &biz),
        "alipay.trade.refund" => trade_refund(&state, &biz),
        "alipay.trade.fastpay.refund.query" => refund_query(sim, &biz),
        "alipay.data.dataservice.bill.downloadurl.query" => bill_url(&state, &biz, req.connection_info().host()),
        _ => Err(Refusal("40002", "Invalid Arguments", "isv.invalid-method".into(), "不存在的方法名".into())),
    };
    let response = match outcome {
        Ok((fields, notifies)) => {
            for n in notifies {
                sim.notify(&state, n);
            }
            let mut object = Map::new();
            // oauth.token's success carries no code, as on the real gateway.
            if method != "alipay.system.oauth.token" {
                object.insert("code".into(), "10000".into());
                object.insert("msg".into(), "Success".into());
            }
            object.extend(fields.into_iter().map(|(k, v)| (k, Value::String(v))));
            sim.respond(&key, object)
        }
        // A bad login code is the one refusal Alipay answers under error_response (as
        // python-alipay-sdk documents from real answers); the rest come under the method's key.
        Err(r) if r.2 == "isv.code-invalid" => sim.refuse("error_response", r),
        Err(r) => sim.refuse(&key, r),
    };
    if let Some(ms) = hang {
        // Applied, but the answer comes too late for the client.
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    response
}

fn oauth_token(sim: &AlipaySim, grant_type: Option<String>, code: Option<String>) -> Outcome {
    if grant_type.as_deref() != Some("authorization_code") {
        return Err(invalid("grant_type"));
    }
    let code = code.ok_or_else(|| missing("code"))?;
    let user_id = sim
        .lock()
        .codes
        .remove(&code)
        .ok_or_else(|| Refusal("40002", "Invalid Arguments", "isv.code-invalid".into(), "授权码code无效".into()))?;
    let fields = [
        ("user_id", user_id.clone()),
        ("open_id", format!("sim{user_id}")),
        ("access_token", hex::encode(rand::random::<[u8; 16]>())),
        ("expires_in", "1296000".into()),
        ("refresh_token", hex::encode(rand::random::<[u8; 16]>())),
        ("re_expires_in", "2592000".into()),
        ("auth_start", beijing_now().format(TIME_FORMAT).to_string()),
    ];
    Ok((fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), vec![]))
}

/// The freeze a fund-auth request names, by out_order_no or auth_no.
fn find_freeze<'a>(inner: &'a mut Inner, biz: &Map<String, Value>) -> Option<&'a mut Freeze> {
    if let Some(no) = biz_str(biz, "out_order_no") {
        return inner.freezes.get_mut(no);
    }
    let auth_no = biz_str(biz, "auth_no")?;
    inner.freezes.find_mut(|f| f.auth_no == auth_no)
}

fn detail_query(sim: &AlipaySim, biz: &Map<String, Value>) -> Outcome {
    let mut inner = sim.lock();
    let f = find_freeze(&mut inner, biz).ok_or_else(|| business("AUTH_ORDER_NOT_EXIST", "授权订单不存在"))?;
    let request_no = biz_str(biz, "out_request_no").unwrap_or(&f.out_request_no);
    if request_no == f.out_request_no {
        return Ok((f.fields(None), vec![]));
    }
    let op = f.unfreezes.get(request_no).ok_or_else(|| business("AUTH_OPERATION_NOT_EXIST", "操作流水不存在"))?;
    Ok((f.fields(Some((request_no, op))), vec![]))
}

fn unfreeze(sim: &AlipaySim, biz: &Map<String, Value>) -> Outcome {
    let auth_no = biz_str(biz, "auth_no").ok_or_else(|| missing("auth_no"))?;
    let request_no = biz_str(biz, "out_request_no").ok_or_else(|| missing("out_request_no"))?.to_string();
    let amount = biz_amount(biz, "amount")?;
    biz_str(biz, "remark").ok_or_else(|| missing("remark"))?;
    let mut inner = sim.lock();
    let seq = inner.next();
    let f = inner
        .freezes
        .find_mut(|f| f.auth_no == auth_no)
        .ok_or_else(|| business("AUTH_ORDER_NOT_EXIST", "授权订单不存在"))?;
    let fresh = match f.unfreezes.get(&request_no) {
        // The same request again: the same answer, nothing applied twice.
        Some(u) if u.amount_fen == amount => false,
        Some(_) => return Err(business("REQUEST_AMOUNT_NOT_MATCH", "同一请求号金额不一致")),
        None if f.status != "SUCCESS" => return Err(business("ORDER_ALREADY_CLOSED", "授权订单已关闭")),
        None if amount > f.rest() => return Err(business("UNFREEZE_AMOUNT_EXCEED", "解冻金额大于剩余冻结金额")),
        None => true,
    };
    if fresh {
        let now = beijing_now();
        f.unfrozen_fen += amount;
        f.unfreezes
            .insert(request_no.clone(), Unfreeze { amount_fen: amount, operation_id: id(now, "", seq, 12), at: now });
    }
    let op = f.unfreezes.get(&request_no).cloned().ok_or_else(|| invalid("unfreeze"))?;
    let fields = f.fields(Some((&request_no, &op)));
    let notifies = match (&f.notify_url, fresh) {
        (Some(url), true) => {
            vec![Notify { url: url.clone(), notify_type: "fund_auth_unfreeze", fields: fields.clone() }]
        }
        _ => vec![],
    };
    Ok((fields, notifies))
}

fn operation_cancel(sim: &AlipaySim, biz: &Map<String, Value>) -> Outcome {
    if biz_str(biz, "out_order_no").is_none() && biz_str(biz, "auth_no").is_none() {
        return Err(missing("out_order_no"));
    }
    let request_no = biz_str(biz, "out_request_no").or_else(|| biz_str(biz, "operation_id")).unwrap_or_default();
    let mut inner = sim.lock();
    let action = match find_freeze(&mut inner, biz) {
        None => {
            // Never paid: remember it closed so a late confirm of the orderStr fails.
            let Some(out_order_no) = biz_str(biz, "out_order_no") else {
                return Err(business("AUTH_ORDER_NOT_EXIST", "授权订单不存在"));
            };
            inner.freezes.insert(
                out_order_no.to_string(),
                Freeze {
                    out_order_no: out_order_no.to_string(),
                    out_request_no: request_no.to_string(),
                    auth_no: String::new(),
                    operation_id: String::new(),
                    status: "CLOSED".into(),
                    payer_user_id: String::new(),
                    amount_fen: 0,
                    paid_fen: 0,
                    unfrozen_fen: 0,
                    created: beijing_now(),
                    notify_url: None,
                    unfreezes: HashMap::new(),
                },
            );
            "close"
        }
        Some(f) if f.status == "CLOSED" => "close",
        Some(f) if f.paid_fen > 0 => return Err(business("AUTH_ORDER_HAS_PAID", "授权订单已转支付，不能撤销")),
        Some(f) => {
            // Undo the freeze: everything goes back to the shopper.
            f.unfrozen_fen += f.rest();
            f.status = "CLOSED".into();
            "unfreeze"
        }
    };
    let f = find_freeze(&mut inner, biz).ok_or_else(|| invalid("cancel"))?;
    let fields = [
        ("out_order_no", f.out_order_no.clone()),
        ("out_request_no", request_no.to_string()),
        ("auth_no", f.auth_no.clone()),
        ("operation_id", f.operation_id.clone()),
        ("action", action.to_string()),
    ];
    Ok((fields.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_string(), v)).collect(), vec![]))
}

fn trade_pay(state: &SimState, biz: &Map<String, Value>, notify_url: Option<String>) -> Outcome {
    let sim = &state.alipay;
    let out_trade_no = biz_str(biz, "out_trade_no").ok_or_else(|| missing("out_trade_no"))?;
    let total = biz_amount(biz, "total_amount")?;
    let auth_no = biz_str(biz, "auth_no").ok_or_else(|| missing("auth_no"))?;
    let buyer_id = biz_str(biz, "buyer_id").ok_or_else(|| missing("buyer_id"))?;
    let seller_id = biz_str(biz, "seller_id").ok_or_else(|| missing("seller_id"))?;
    let subject = biz_str(biz, "subject").ok_or_else(|| missing("subject"))?;
    if biz_str(biz, "product_code") != Some(PRODUCT) {
        return Err(invalid("product_code must be PRE_AUTH_ONLINE"));
    }
    if subject.contains(['/', '=', '&']) {
        return Err(invalid("subject contains / = &"));
    }
    let mut inner = sim.lock();
    if let Some(t) = inner.trades.get(out_trade_no) {
        // Idempotent on out_trade_no: the same trade again gets the same answer.
        if t.auth_no == auth_no && t.total_fen == total {
            return Ok((t.fields(), vec![]));
        }
        return Err(business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"));
    }
    injected_failure(state, &mut inner, out_trade_no)?;
    if seller_id != sim.seller_id {
        return Err(business("ACQ.PAYEE_NOT_MATCH", "收款方与授权收款方不一致"));
    }
    let seq = inner.next();
    let f = inner
        .freezes
        .find_mut(|f| f.auth_no == auth_no && !auth_no.is_empty())
        .ok_or_else(|| business("ACQ.AUTH_NO_NOT_EXIST", "授权号不存在"))?;
    if f.status != "SUCCESS" || f.rest() == 0 {
        return Err(business("ACQ.AUTH_ORDER_HAS_FINISHED", "授权订单已完结"));
    }
    if f.payer_user_id != buyer_id {
        return Err(business("ACQ.BUYER_NOT_MATCH", "买家与授权付款方不一致"));
    }
    if total > f.rest() {
        return Err(business("ACQ.TOTAL_FEE_EXCEED", "支付金额超过剩余冻结金额"));
    }
    f.paid_fen += total;
    if biz_str(biz, "auth_confirm_mode") == Some("COMPLETE") {
        // The rest goes back to the shopper with the trade.
        f.unfrozen_fen += f.rest();
    }
    let paid_at = beijing_now();
    let trade = Trade {
        trade_no: id(paid_at, "22001", seq, 15),
        out_trade_no: out_trade_no.to_string(),
        auth_no: auth_no.to_string(),
        buyer_id: buyer_id.to_string(),
        seller_id: seller_id.to_string(),
        subject: subject.to_string(),
        total_fen: total,
        paid_at,
        notify_url: notify_url.clone(),
        refunds: Vec::new(),
    };
    let fields = trade.fields();
    let notifies = notify_url.map(|url| trade_notify(url, &trade, &f.out_order_no)).into_iter().collect();
    inner.trades.insert(out_trade_no.to_string(), trade);
    Ok((fields, notifies))
}

/// A refusal the knobs ask for: a decline, or a charge that fails until `recover_ms` has passed.
fn injected_failure(state: &SimState, inner: &mut Inner, out_trade_no: &str) -> Result<(), Refusal> {
    if state.knob(|k| take(&mut k.decline)) {
        return Err(business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足"));
    }
    let now = Instant::now();
    match inner.failing.get(out_trade_no).copied() {
        Some(recover_at) if now < recover_at => return Err(business("ACQ.PAYMENT_FAIL", "支付失败")),
        Some(_) => {
            inner.failing.remove(out_trade_no);
        }
        None => {
            if let Some(ms) = state.knob(|k| take(&mut k.fail_then_succeed).then_some(k.recover_ms)) {
                inner.failing.insert(out_trade_no.to_string(), now + Duration::from_millis(ms));
                return Err(business("ACQ.PAYMENT_FAIL", "支付失败"));
            }
        }
    }
    Ok(())
}

/// The `trade_status_sync` notify of a trade just paid (`out_biz_no`: its freeze's number).
fn trade_notify(url: String, trade: &Trade, out_biz_no: &str) -> Notify {
    let at = trade.paid_at.format(TIME_FORMAT).to_string();
    let mut n = trade.fields();
    n.extend(
        [
            ("trade_status", "TRADE_SUCCESS"),
            ("buyer_id", trade.buyer_id.as_str()),
            ("seller_id", trade.seller_id.as_str()),
            ("subject", trade.subject.as_str()),
            ("gmt_create", &at),
            ("out_biz_no", out_biz_no),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    n.retain(|(k, _)| k != "buyer_user_id");
    Notify { url, notify_type: "trade_status_sync", fields: n }
}

fn trade_query(sim: &AlipaySim, biz: &Map<String, Value>) -> Outcome {
    let inner = sim.lock();
    let trade = match (biz_str(biz, "out_trade_no"), biz_str(biz, "trade_no")) {
        (Some(no), _) => inner.trades.get(no),
        (None, Some(no)) => inner.trades.values().find(|t| t.trade_no == no),
        (None, None) => return Err(missing("out_trade_no")),
    };
    let t = trade.ok_or_else(|| business("ACQ.TRADE_NOT_EXIST", "交易不存在"))?;
    let mut fields = t.fields();
    fields.push(("trade_status".into(), "TRADE_SUCCESS".into()));
    fields.push(("send_pay_date".into(), t.paid_at.format(TIME_FORMAT).to_string()));
    Ok((fields, vec![]))
}

/// The trade a trade API names, by out_trade_no or trade_no.
fn find_trade<'a>(inner: &'a mut Inner, biz: &Map<String, Value>) -> Result<&'a mut Trade, Refusal> {
    let trade = match (biz_str(biz, "out_trade_no"), biz_str(biz, "trade_no")) {
        (Some(no), _) => inner.trades.get_mut(no),
        (None, Some(no)) => inner.trades.find_mut(|t| t.trade_no == no),
        (None, None) => return Err(missing("out_trade_no")),
    };
    trade.ok_or_else(|| business("ACQ.TRADE_NOT_EXIST", "交易不存在"))
}

/// `alipay.trade.refund`: money back on a trade, at once. A repeat of a request number moves no
/// money again (`fund_change` N).
fn trade_refund(state: &SimState, biz: &Map<String, Value>) -> Outcome {
    let sim = &state.alipay;
    let amount = biz_amount(biz, "refund_amount")?;
    if state.knob(|k| take(&mut k.decline)) {
        return Err(business("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足"));
    }
    // Without a request number Alipay takes the trade's whole amount as one refund.
    let request_no = biz_str(biz, "out_request_no").map(str::to_string);
    let mut inner = sim.lock();
    let t = find_trade(&mut inner, biz)?;
    let request_no = request_no.unwrap_or_else(|| t.out_trade_no.clone());
    let fresh = match t.refunds.iter().find(|r| r.0 == request_no) {
        Some(r) if r.1 == amount => false,
        Some(_) => return Err(business("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致")),
        None if amount > t.total_fen - t.refunded_fen() => {
            return Err(business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"));
        }
        None => true,
    };
    let now = beijing_now();
    if fresh {
        t.refunds.push((request_no.clone(), amount, now));
    }
    let at = t.refunds.iter().find(|r| r.0 == request_no).map_or(now, |r| r.2).format(TIME_FORMAT).to_string();
    let fields = vec![
        ("trade_no".to_string(), t.trade_no.clone()),
        ("out_trade_no".into(), t.out_trade_no.clone()),
        ("buyer_logon_id".into(), mask(&t.buyer_id)),
        ("buyer_user_id".into(), t.buyer_id.clone()),
        ("fund_change".into(), if fresh { "Y" } else { "N" }.into()),
        ("refund_fee".into(), fen_to_yuan(t.refunded_fen())),
        ("gmt_refund_pay".into(), at.clone()),
    ];
    // The trade's notify address hears of the refund too: TRADE_CLOSED once all is back.
    let notifies = match (&t.notify_url, fresh) {
        (Some(url), true) => {
            let status = if t.refunded_fen() == t.total_fen { "TRADE_CLOSED" } else { "TRADE_SUCCESS" };
            let mut n = t.fields();
            n.retain(|(k, _)| k != "buyer_user_id");
            n.extend(
                [
                    ("trade_status", status),
                    ("buyer_id", t.buyer_id.as_str()),
                    ("seller_id", t.seller_id.as_str()),
                    ("out_biz_no", request_no.as_str()),
                    ("refund_fee", &fen_to_yuan(t.refunded_fen())),
                    ("gmt_refund", &at),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            vec![Notify { url: url.clone(), notify_type: "trade_status_sync", fields: n }]
        }
        _ => vec![],
    };
    Ok((fields, notifies))
}

/// `alipay.trade.fastpay.refund.query`: a refund by its request number; no refund fields when
/// there is none.
fn refund_query(sim: &AlipaySim, biz: &Map<String, Value>) -> Outcome {
    let request_no = biz_str(biz, "out_request_no").ok_or_else(|| missing("out_request_no"))?.to_string();
    let mut inner = sim.lock();
    let t = find_trade(&mut inner, biz)?;
    let mut fields = vec![
        ("trade_no".to_string(), t.trade_no.clone()),
        ("out_trade_no".into(), t.out_trade_no.clone()),
        ("out_request_no".into(), request_no.clone()),
    ];
    if let Some((_, amount, at)) = t.refunds.iter().find(|r| r.0 == request_no) {
        fields.extend([
            ("total_amount".to_string(), fen_to_yuan(t.total_fen)),
            ("refund_amount".into(), fen_to_yuan(*amount)),
            ("refund_status".into(), "REFUND_SUCCESS".into()),
            ("gmt_refund_pay".into(), at.format(TIME_FORMAT).to_string()),
        ]);
    }
    Ok((fields, vec![]))
}

fn bill_url(state: &SimState, biz: &Map<String, Value>, host: &str) -> Outcome {
    let sim = &state.alipay;
    if biz_str(biz, "bill_type") != Some("trade") {
        return Err(invalid("bill_type: only trade is simulated"));
    }
    let date = biz_str(biz, "bill_date").ok_or_else(|| missing("bill_date"))?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| invalid("bill_date"))?;
    if !state.bill_published(date) {
        // Alipay does not serve the current day; the day before is out early next morning.
        return Err(business("isp.bill_not_exist", "账单不存在"));
    }
    let mut inner = sim.lock();
    let empty =
        !inner.trades.values().any(|t| t.paid_at.date() == date || t.refunds.iter().any(|r| r.2.date() == date));
    let token = hex::encode(rand::random::<[u8; 16]>());
    let now = Instant::now();
    inner.bills.retain(|_, (_, expiry)| *expiry > now);
    inner.bills.insert(token.clone(), (date, now + BILL_URL_TTL));
    let mut fields = vec![("bill_download_url".to_string(), format!("http://{host}/sim/alipay/bill/{token}"))];
    if empty {
        fields.push(("bill_file_code".into(), "EMPTY_DATA_WITH_BILL_FILE".into()));
    }
    Ok((fields, vec![]))
}

impl super::FaultyLine for BillLine {
    fn is_refund(&self) -> bool {
        self.amount_fen < 0
    }

    fn add_amount(&mut self, fen: i64) {
        self.amount_fen += fen;
    }

    fn add_fee(&mut self, fen: i64) {
        self.fee_fen += fen;
    }

    fn unknown(&self, n: u32) -> Self {
        BillLine { trade_no: format!("2099{:024}", n), out_trade_no: format!("UNKNOWN{n:08}"), ..self.clone() }
    }
}

async fn bill_file(state: web::Data<SimState>, token: web::Path<String>) -> HttpResponse {
    let sim = &state.alipay;
    let (date, lines) = {
        let inner = sim.lock();
        let Some((date, expiry)) = inner.bills.get(token.as_str()).copied() else {
            return HttpResponse::NotFound().body("no such bill");
        };
        if expiry <= Instant::now() {
            return HttpResponse::NotFound().body("bill URL expired");
        }
        let mut trades: Vec<&Trade> = inner.trades.values().filter(|t| t.paid_at.date() == date).collect();
        trades.sort_by(|a, b| (a.paid_at, &a.trade_no).cmp(&(b.paid_at, &b.trade_no)));
        let lines: Vec<BillLine> = trades
            .into_iter()
            .map(|t| BillLine {
                trade_no: t.trade_no.clone(),
                out_trade_no: t.out_trade_no.clone(),
                kind: "交易".into(),
                subject: t.subject.clone(),
                created: t.paid_at,
                finished: t.paid_at,
                buyer: mask(&t.buyer_id),
                amount_fen: t.total_fen,
                // 0.6 %, rounded half up.
                fee_fen: (t.total_fen * 6 + 500) / 1000,
                refund_no: String::new(),
            })
            .collect();
        let mut lines = lines;
        // Refunds made that day: 退款 rows, negative, with their request number.
        for t in inner.trades.values() {
            for (request_no, amount, at) in t.refunds.iter().filter(|r| r.2.date() == date) {
                lines.push(BillLine {
                    trade_no: t.trade_no.clone(),
                    out_trade_no: t.out_trade_no.clone(),
                    kind: "退款".into(),
                    subject: t.subject.clone(),
                    created: t.paid_at,
                    finished: *at,
                    buyer: mask(&t.buyer_id),
                    amount_fen: -amount,
                    fee_fen: -((amount * 6 + 500) / 1000),
                    refund_no: request_no.clone(),
                });
            }
        }
        lines.sort_by(|a, b| (a.finished, &a.trade_no).cmp(&(b.finished, &b.trade_no)));
        state.knob(|k| k.bill.clone()).apply(&mut lines);
        (date, lines)
    };
    // Alipay names the bill's account as the 16-digit PID followed by 0156.
    match bill::build_zip(&format!("{}0156", sim.seller_id), date, &lines, beijing_now()) {
        Ok(zip) => HttpResponse::Ok().content_type("application/zip").body(zip),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginHook {
    user_id: Option<String>,
}

/// `my.getAuthCode`: a one-use auth code for a (new or given) user.
async fn login_hook(state: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    let hook: LoginHook = if body.is_empty() {
        LoginHook::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(h) => h,
            Err(e) => {
                return HttpResponse::BadRequest().json(json!({ "code": "INVALID_REQUEST", "message": e.to_string() }));
            }
        }
    };
    let user_id = hook.user_id.unwrap_or_else(|| format!("2088{:012}", rand::random::<u64>() % 1_000_000_000_000));
    let code = hex::encode(rand::random::<[u8; 16]>());
    state.alipay.lock().codes.insert(code.clone(), user_id.clone());
    HttpResponse::Ok().json(json!({ "auth_code": code, "user_id": user_id }))
}

#[derive(Debug, Deserialize)]
struct ConfirmHook {
    #[serde(rename = "orderStr")]
    order_str: String,
    user_id: Option<String>,
}

/// The shopper pays a freeze `orderStr` in the cashier: the freeze succeeds and is notified.
async fn confirm_hook(state: web::Data<SimState>, body: web::Json<ConfirmHook>) -> HttpResponse {
    let sim = &state.alipay;
    let bad = |code: &str, message: &str| HttpResponse::BadRequest().json(json!({ "code": code, "message": message }));
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(&body.order_str) else {
        return bad("INVALID_ORDER_STR", "orderStr is not a form string");
    };
    if let Err(Refusal(_, _, sub_code, sub_msg)) = sim.check_signed(&params) {
        return bad(&sub_code, &sub_msg);
    }
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if get("method") != Some(FREEZE) {
        return bad("INVALID_METHOD", "orderStr is not a fund-auth freeze");
    }
    let Some(Ok(Value::Object(biz))) = get("biz_content").map(serde_json::from_str::<Value>) else {
        return bad("INVALID_BIZ_CONTENT", "biz_content is not a JSON object");
    };
    let (Some(out_order_no), Some(out_request_no)) = (biz_str(&biz, "out_order_no"), biz_str(&biz, "out_request_no"))
    else {
        return bad("MISSING_PARAMETER", "out_order_no / out_request_no");
    };
    let amount = match biz_amount(&biz, "amount") {
        Ok(a) => a,
        Err(Refusal(_, _, _, msg)) => return bad("INVALID_AMOUNT", &msg),
    };
    if biz_str(&biz, "product_code") != Some(PRODUCT) {
        return bad("INVALID_PRODUCT_CODE", "product_code must be PRE_AUTH_ONLINE");
    }
    let expires = get("timestamp")
        .and_then(|t| NaiveDateTime::parse_from_str(t, TIME_FORMAT).ok())
        .zip(biz_str(&biz, "timeout_express").and_then(timeout_express))
        .map(|(t, d)| t + d);
    if expires.is_some_and(|e| beijing_now() > e) {
        return bad("ORDER_EXPIRED", "the freeze string's timeout_express has passed");
    }
    if biz_str(&biz, "payee_user_id").is_some_and(|p| p != sim.seller_id) {
        return bad("PAYEE_NOT_MATCH", "payee_user_id is not the app's account");
    }
    let user_id = body.user_id.clone().unwrap_or_else(|| "2088102000300001".to_string());
    let notify = {
        let mut inner = sim.lock();
        let seq = inner.next();
        match inner.freezes.get(out_order_no) {
            Some(f) if f.status == "CLOSED" => return bad("ORDER_ALREADY_CLOSED", "the freeze was cancelled"),
            Some(f) => {
                // Paid already: the same answer, no second notify.
                return HttpResponse::Ok().json(json!({
                    "out_order_no": f.out_order_no, "auth_no": f.auth_no, "operation_id": f.operation_id, "status": f.status,
                }));
            }
            None => {}
        }
        let now = beijing_now();
        let f = Freeze {
            out_order_no: out_order_no.to_string(),
            out_request_no: out_request_no.to_string(),
            auth_no: id(now, "10002001", seq, 12),
            operation_id: id(now, "", seq, 12),
            status: "SUCCESS".into(),
            payer_user_id: user_id,
            amount_fen: amount,
            paid_fen: 0,
            unfrozen_fen: 0,
            created: now,
            notify_url: get("notify_url").map(str::to_string),
            unfreezes: HashMap::new(),
        };
        let notify =
            f.notify_url.clone().map(|url| Notify { url, notify_type: "fund_auth_freeze", fields: f.fields(None) });
        let answer = json!({ "out_order_no": f.out_order_no, "auth_no": f.auth_no, "operation_id": f.operation_id, "status": f.status });
        inner.freezes.insert(out_order_no.to_string(), f);
        (notify, answer)
    };
    let (notify, answer) = notify;
    if let Some(n) = notify {
        sim.notify(&state, n);
    }
    HttpResponse::Ok().json(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_timeouts() {
        assert_eq!(mask("2088102000300001"), "208****0001");
        assert_eq!(mask("短"), "短");
        assert_eq!(mask("支付宝用户一二三四"), "支付宝****一二三四");
        assert_eq!(timeout_express("1m"), Some(chrono::Duration::minutes(1)));
        assert_eq!(timeout_express("15d"), Some(chrono::Duration::days(15)));
        assert_eq!(timeout_express("1c"), None);
        assert_eq!(timeout_express(""), None);
    }
}
