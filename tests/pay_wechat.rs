//! The WeChat Pay Score adapter against the in-process payment simulator, with a tiny HTTP
//! receiver standing in for Heft's notify endpoint. No database needed.

use heft::domain::units::Fen;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use heft::config::Config;
use heft::pay::keys;
use heft::pay::sim::RunningSim;
use heft::pay::wechat::{WechatPayScore, sign};
use heft::pay::{
    CallbackError, CallbackHeaders, CaptureLine, CaptureOutcome, CaptureRequest, PayError, PayEvent, PayEventKind,
    PaymentGateway, PlatformState, PreauthRequest, RefundRequest, RefundState,
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(15);

type Raw = (CallbackHeaders, Vec<u8>);

struct Receiver {
    events: Mutex<Vec<Result<PayEvent, CallbackError>>>,
    raw: Mutex<Vec<Raw>>,
    /// Answer 500 to this many callbacks first.
    fail_first: AtomicU32,
}

struct Env {
    sim: RunningSim,
    base: String,
    gateway: Arc<WechatPayScore>,
    receiver: Arc<Receiver>,
    config: Config,
    http: reqwest::Client,
}

fn config() -> Config {
    let env = [
        ("HEFT__PAY_SIM__LISTEN", "127.0.0.1:0"),
        ("HEFT__PAY_SIM__TIME_SCALE", "1000.0"),
        ("HEFT__PAY_SIM__STATE_FILE", ""),
        ("HEFT__PAYMENTS__HTTP_TIMEOUT_MS", "1000"),
    ];
    Config::from_toml_and_env(
        include_str!("../config.toml"),
        Path::new("config.toml"),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("shipped config")
}

fn headers_of(req: &HttpRequest) -> CallbackHeaders {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    CallbackHeaders {
        timestamp: h("Wechatpay-Timestamp"),
        nonce: h("Wechatpay-Nonce"),
        signature: h("Wechatpay-Signature"),
        serial: h("Wechatpay-Serial"),
        signature_type: h("Wechatpay-Signature-Type"),
    }
}

async fn notify(
    req: HttpRequest,
    body: web::Bytes,
    gateway: web::Data<WechatPayScore>,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    let headers = headers_of(&req);
    let parsed = gateway.parse_callback(&headers, &body);
    receiver.raw.lock().expect("lock").push((headers, body.to_vec()));
    let failing = receiver.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let ok = parsed.is_ok();
    receiver.events.lock().expect("lock").push(parsed);
    match (failing, ok) {
        (true, _) => HttpResponse::InternalServerError().json(json!({"code": "FAIL", "message": "busy"})),
        (false, true) => HttpResponse::NoContent().finish(),
        (false, false) => HttpResponse::Unauthorized().json(json!({"code": "FAIL", "message": "unverified"})),
    }
}

/// Seconds that take the simulator's clock from any time today to tomorrow after 09:00 (Beijing),
/// when today's bill is out.
const NEXT_MORNING_S: i64 = 33 * 3600;

async fn start() -> Env {
    let mut config = config();
    let sim = heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await.expect("simulator");
    let base = format!("http://{}", sim.addr);
    config.wechat.base_url = base.clone();
    config.wechat.login_base_url = base.clone();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let notify_url = format!("http://{}/pay/wechat/notify", listener.local_addr().expect("addr"));
    let gateway = Arc::new(WechatPayScore::new(&config.wechat, &config.payments, notify_url).expect("gateway"));
    let receiver =
        Arc::new(Receiver { events: Mutex::default(), raw: Mutex::default(), fail_first: AtomicU32::new(0) });
    let (g, r) = (web::Data::from(gateway.clone()), web::Data::from(receiver.clone()));
    let server = HttpServer::new(move || {
        App::new().app_data(g.clone()).app_data(r.clone()).route("/pay/wechat/notify", web::post().to(notify))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    actix_rt::spawn(server);
    Env { sim, base, gateway, receiver, config, http: reqwest::Client::new() }
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Env {
    fn events(&self) -> Vec<PayEvent> {
        self.receiver.events.lock().expect("lock").iter().filter_map(|e| e.as_ref().ok().cloned()).collect()
    }

    async fn event(&self, out_order_no: &str, event_type: &str) -> PayEvent {
        eventually(event_type, || {
            self.events()
                .into_iter()
                .find(|e| e.out_order_no.as_deref() == Some(out_order_no) && e.event_type == event_type)
        })
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.expect("post");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn knobs(&self, knobs: Value) {
        assert_eq!(self.post("/sim/knobs", knobs).await.0, 200);
    }

    async fn confirm(&self, package: &str, openid: &str) -> (u16, Value) {
        self.post("/sim/wechat/confirm", json!({"package": package, "openid": openid})).await
    }
}

fn preauth(no: &str) -> PreauthRequest {
    PreauthRequest {
        out_order_no: no.into(),
        cap_fen: Fen(20000),
        title: "智能售货柜购物".into(),
        device_id: "CAB-0001".into(),
        payer_id: String::new(),
        attach: "session-1".into(),
    }
}

fn capture(no: &str, lines: Vec<CaptureLine>) -> CaptureRequest {
    CaptureRequest {
        out_order_no: no.into(),
        out_trade_no: format!("T{no}"),
        platform_order_id: None,
        payer_id: None,
        total_fen: lines.iter().map(CaptureLine::amount_fen).sum(),
        lines,
        title: "智能售货柜购物".into(),
    }
}

fn no(tag: &str) -> String {
    format!("VC{tag}{:08x}", rand::random::<u32>())
}

fn package(p: &heft::pay::Preauth) -> String {
    p.confirm["extraData"]["package"].as_str().expect("package").to_string()
}

#[actix_rt::test]
async fn create_confirm_capture_paid_and_bill() {
    let env = start().await;
    let gw = &env.gateway;

    // Login: a code from the phone, one use.
    let (_, login) = env.post("/sim/wechat/login", json!({"openid": "oShopper1"})).await;
    let code = login["code"].as_str().expect("code");
    assert_eq!(gw.login(code).await.expect("login").uid, "oShopper1");
    assert!(matches!(gw.login(code).await, Err(PayError::Declined { code, .. }) if code == "40163"));
    assert!(matches!(gw.login("nope").await, Err(PayError::Declined { code, .. }) if code == "40029"));

    let no = no("A");
    let pre = gw.create_preauth(&preauth(&no)).await.expect("create");
    assert!(pre.platform_order_id.is_some());
    assert_eq!(pre.confirm["businessType"], "wxpayScoreUse");
    // Idempotent create; a different body under the same number is refused.
    let again = gw.create_preauth(&preauth(&no)).await.expect("create again");
    assert_eq!(again.platform_order_id, pre.platform_order_id);
    let mut changed = preauth(&no);
    changed.cap_fen = Fen(100);
    assert!(matches!(gw.create_preauth(&changed).await, Err(PayError::Permanent(m)) if m.contains("INVALID_REQUEST")));
    assert_eq!(gw.query(&no, None).await.expect("query"), PlatformState::Pending);

    assert_eq!(env.confirm(&package(&pre), "oShopper1").await.0, 200);
    let confirmed = env.event(&no, "PAYSCORE.USER_CONFIRM").await;
    assert_eq!(
        confirmed.kind,
        PayEventKind::Authorized {
            platform_order_id: pre.platform_order_id.clone(),
            payer_id: Some("oShopper1".into())
        }
    );
    let resource: Value = serde_json::from_str(&confirmed.resource).expect("resource");
    assert_eq!((resource["state"].as_str(), resource["attach"].as_str()), (Some("DOING"), Some("session-1")));
    assert!(matches!(gw.query(&no, None).await.expect("query"), PlatformState::Authorized { .. }));

    // Refused before sending: nothing to charge, or a total that is not the lines' sum.
    let lines = vec![
        CaptureLine { name: "可口可乐 330ml".into(), unit_fen: Fen(350), count: 2 },
        CaptureLine { name: "薯片".into(), unit_fen: Fen(550), count: 1 },
    ];
    let mut wrong = capture(&no, lines.clone());
    wrong.total_fen += Fen(1);
    assert!(matches!(gw.capture(&wrong).await, Err(PayError::Permanent(_))));
    assert!(matches!(gw.capture(&capture(&no, vec![])).await, Err(PayError::Permanent(_))));

    assert_eq!(gw.capture(&capture(&no, lines.clone())).await.expect("capture"), CaptureOutcome::Collecting);
    // Completing twice is refused by the platform.
    assert!(
        matches!(gw.capture(&capture(&no, lines)).await, Err(PayError::Declined { code, .. }) if code == "INVALID_ORDER_STATE")
    );
    let paid = env.event(&no, "PAYSCORE.USER_PAID").await;
    let PayEventKind::Paid { amount_fen, transaction_id } = paid.kind else { panic!("{paid:?}") };
    assert_eq!(amount_fen, Fen(1250));
    assert_eq!(
        gw.query(&no, None).await.expect("query"),
        PlatformState::Paid { amount_fen: Fen(1250), transaction_id: transaction_id.clone() }
    );

    // Today's bill (Asia/Shanghai) has the payment; a day without any is empty.
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    // WeChat makes a day's bill from 09:00 the next day: today's is not an empty bill, it is not
    // made yet.
    match gw.download_bill(today).await {
        Err(PayError::Retryable(m)) => assert!(m.contains("not published yet"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(env.post("/sim/clock", json!({ "offset_s": NEXT_MORNING_S })).await.0, 200);
    let bill = gw.download_bill(today).await.expect("bill");
    // The file as served is kept, to show what the platform said.
    assert!(String::from_utf8_lossy(&bill.raw).contains(&transaction_id), "{bill:?}");
    assert_eq!(bill.sha256_hex().len(), 64);
    let rows = bill.rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].transaction_id.as_str(), rows[0].out_order_no.as_str()),
        (transaction_id.as_str(), no.as_str())
    );
    assert_eq!((rows[0].amount_fen, rows[0].fee_fen, rows[0].status.as_str()), (1250, 8, "SUCCESS"));
    let empty_day = today - chrono::Duration::days(3);
    assert_eq!(gw.download_bill(empty_day).await.expect("empty bill").rows, vec![]);
    env.sim.stop().await;
}

/// A paid Pay Score order refunded in part, by its transaction: PROCESSING, then SUCCESS with a
/// signed REFUND.SUCCESS callback; a repeat of the refund is the same refund; more than is left
/// is refused; an unknown refund is Unknown; the bill shows the refund row.
#[actix_rt::test]
async fn refund_by_transaction() {
    let env = start().await;
    let gw = &env.gateway;
    let no = no("R");
    let pre = gw.create_preauth(&preauth(&no)).await.expect("create");
    assert_eq!(env.confirm(&package(&pre), "oShopper2").await.0, 200);
    env.event(&no, "PAYSCORE.USER_CONFIRM").await;
    let lines = vec![CaptureLine { name: "可口可乐 330ml".into(), unit_fen: Fen(350), count: 2 }];
    gw.capture(&capture(&no, lines)).await.expect("capture");
    let paid = env.event(&no, "PAYSCORE.USER_PAID").await;
    let PayEventKind::Paid { transaction_id, .. } = paid.kind else { panic!("{paid:?}") };
    let req = RefundRequest {
        out_refund_no: format!("{no}R1"),
        out_order_no: no.clone(),
        out_trade_no: format!("T{no}"),
        transaction_id: transaction_id.clone(),
        paid_fen: Fen(700),
        refund_fen: Fen(350),
        reason: "复核退款".into(),
    };
    assert_eq!(gw.query_refund(&req).await.expect("not yet"), RefundState::Unknown);
    assert_eq!(gw.refund(&req).await.expect("refund"), RefundState::Processing);
    let done = eventually("the REFUND.SUCCESS callback", || {
        env.events().into_iter().find(|e| e.event_type == "REFUND.SUCCESS")
    })
    .await;
    let PayEventKind::Refund { out_refund_no, refund_id, succeeded, .. } = done.kind else { panic!("{done:?}") };
    assert_eq!((out_refund_no.as_str(), succeeded), (req.out_refund_no.as_str(), true));
    assert_eq!(done.out_order_no, None, "a refund is found by its own number");
    let refund_id = refund_id.expect("refund_id");
    assert_eq!(gw.query_refund(&req).await.expect("query"), RefundState::Succeeded { refund_id: refund_id.clone() });
    // The same refund again is the same refund.
    assert_eq!(gw.refund(&req).await.expect("again"), RefundState::Succeeded { refund_id });
    // More than is left is refused (a second refund of 400 on 350 left): a request of ours that is
    // wrong, for a person.
    let too_much = RefundRequest { out_refund_no: format!("{no}R2"), refund_fen: Fen(400), ..req.clone() };
    assert!(matches!(gw.refund(&too_much).await, Err(PayError::Permanent(m)) if m.contains("INVALID_REQUEST")));
    // Checked before sending.
    let over = RefundRequest { refund_fen: Fen(701), ..req.clone() };
    assert!(matches!(gw.refund(&over).await, Err(PayError::Permanent(_))));
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    assert_eq!(env.post("/sim/clock", json!({ "offset_s": NEXT_MORNING_S })).await.0, 200);
    let rows = gw.download_bill(today).await.expect("bill").rows;
    let mine: Vec<(i64, &str)> =
        rows.iter().filter(|r| r.transaction_id == transaction_id).map(|r| (r.amount_fen, r.status.as_str())).collect();
    assert_eq!(mine, [(700, "SUCCESS"), (-350, "REFUND")], "{rows:?}");
    env.sim.stop().await;
}

#[actix_rt::test]
async fn cancelled_order_refuses_a_late_confirm() {
    let env = start().await;
    let gw = &env.gateway;
    let no = no("C");
    let pre = gw.create_preauth(&preauth(&no)).await.expect("create");
    gw.cancel(&no, None, "60 秒内未确认，柜门未打开。这段说明超过五十个字符也会被截断而不是被平台拒绝的哦哦哦")
        .await
        .expect("cancel");
    assert_eq!(gw.query(&no, None).await.expect("query"), PlatformState::Cancelled);
    let (status, body) = env.confirm(&package(&pre), "oLate").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_ORDER_STATE")));
    assert_eq!(gw.query(&no, None).await.expect("query"), PlatformState::Cancelled);
    // Cancelling again, or an unknown order, is the platform saying no.
    assert!(matches!(gw.cancel(&no, None, "again").await, Err(PayError::Declined { .. })));
    assert!(
        matches!(gw.query("VCunknown", None).await, Err(PayError::Declined { code, .. }) if code == "ORDER_NOT_EXIST")
    );
    env.sim.stop().await;
}

#[actix_rt::test]
async fn legacy_signed_confirm() {
    let env = start().await;
    let no = no("L");
    let pre = env.gateway.create_preauth(&preauth(&no)).await.expect("create");
    let mut legacy = pre.confirm["legacy"].clone();
    assert_eq!(legacy["sign_type"], "HMAC-SHA256");
    let good_sign = legacy["sign"].clone();
    legacy["sign"] = json!("00");
    assert_eq!(env.post("/sim/wechat/confirm", legacy.clone()).await.0, 400);
    legacy["sign"] = good_sign;
    legacy["openid"] = json!("oLegacy");
    assert_eq!(env.post("/sim/wechat/confirm", legacy).await.0, 200);
    let e = env.event(&no, "PAYSCORE.USER_CONFIRM").await;
    assert!(matches!(e.kind, PayEventKind::Authorized { payer_id: Some(ref p), .. } if p == "oLegacy"));
    env.sim.stop().await;
}

#[actix_rt::test]
async fn forged_requests_get_sign_error() {
    let env = start().await;
    let w = &env.config.wechat;
    let merchant = keys::load_private("sim", keys::sim::WECHAT_MERCHANT_KEY).expect("key");
    let stranger = keys::load_private("sim", keys::sim::ALIPAY_APP_KEY).expect("key");
    let uri = format!("/v3/payscore/serviceorder?out_order_no=x&service_id={}&appid={}", w.service_id, w.appid);
    let now = chrono::Utc::now().timestamp();
    let send = |auth: String, method: &str, uri: &str, body: &str, ua: bool| {
        let mut r = env
            .http
            .request(method.parse().expect("method"), format!("{}{uri}", env.base))
            .header("Authorization", auth)
            .header("Accept", "application/json")
            .body(body.to_string());
        if ua {
            r = r.header("User-Agent", "forger/1");
        }
        async move {
            let res = r.send().await.expect("send");
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null)["code"].as_str().map(str::to_string),
            )
        }
    };
    let sign_err = (401, Some("SIGN_ERROR".to_string()));
    let auth = |key, ts, method: &str, uri: &str, body: &str| {
        sign::sign_request(key, &w.mchid, &w.merchant_serial_no, method, uri, ts, &sign::nonce(), body.as_bytes())
            .header()
    };
    // Control: the right key works (404: no such order).
    assert_eq!(send(auth(&merchant, now, "GET", &uri, ""), "GET", &uri, "", true).await.0, 404);
    assert_eq!(send(auth(&stranger, now, "GET", &uri, ""), "GET", &uri, "", true).await, sign_err);
    let body = r#"{"appid":"x"}"#;
    let tampered = r#"{"appid":"y"}"#;
    let path = "/v3/payscore/serviceorder";
    assert_eq!(send(auth(&merchant, now, "POST", path, body), "POST", path, tampered, true).await, sign_err);
    assert_eq!(send(auth(&merchant, now - 301, "GET", &uri, ""), "GET", &uri, "", true).await, sign_err);
    let wrong_mchid = sign::sign_request(&merchant, "999", &w.merchant_serial_no, "GET", &uri, now, "n", b"").header();
    assert_eq!(send(wrong_mchid, "GET", &uri, "", true).await, sign_err);
    assert_eq!(send("Bearer x".into(), "GET", &uri, "", true).await, sign_err);
    assert_eq!(
        send(auth(&merchant, now, "GET", &uri, ""), "GET", &uri, "", false).await,
        (400, Some("INVALID_REQUEST".to_string()))
    );
    env.sim.stop().await;
}

#[actix_rt::test]
async fn forged_callbacks_fail_to_parse() {
    let env = start().await;
    let gw = &env.gateway;
    let no = no("F");
    let pre = gw.create_preauth(&preauth(&no)).await.expect("create");
    env.confirm(&package(&pre), "oF").await;
    env.event(&no, "PAYSCORE.USER_CONFIRM").await;
    let (headers, body) = env.receiver.raw.lock().expect("lock")[0].clone();
    assert!(gw.parse_callback(&headers, &body).is_ok(), "a replay of the genuine callback verifies");

    let unverified =
        |h: &CallbackHeaders, b: &[u8]| matches!(gw.parse_callback(h, b), Err(CallbackError::Unverified(_)));
    let text = String::from_utf8(body.clone()).expect("utf8");
    assert!(unverified(&headers, text.replace("PAYSCORE.USER_CONFIRM", "PAYSCORE.USER_PAID").as_bytes()));
    assert!(unverified(&CallbackHeaders { serial: Some("PUB_KEY_ID_OTHER".into()), ..headers.clone() }, &body));
    assert!(unverified(&CallbackHeaders { signature: None, ..headers.clone() }, &body));
    // Signed by someone else's key, fresh timestamp.
    let stranger = keys::load_private("sim", keys::sim::ALIPAY_PLATFORM_KEY).expect("key");
    let platform = keys::load_private("sim", keys::sim::WECHAT_PLATFORM_KEY).expect("key");
    let resign = |key, ts: i64, b: &[u8]| {
        let ts = ts.to_string();
        let nonce = sign::nonce();
        CallbackHeaders {
            signature: Some(sign::sign_response(key, &ts, &nonce, b)),
            timestamp: Some(ts),
            nonce: Some(nonce),
            ..headers.clone()
        }
    };
    let now = chrono::Utc::now().timestamp();
    assert!(unverified(&resign(&stranger, now, &body), &body));
    // Properly signed but stale.
    assert!(unverified(&resign(&platform, now - 400, &body), &body));
    // Properly signed and fresh, but the resource does not decrypt.
    let mut env_json: Value = serde_json::from_slice(&body).expect("json");
    env_json["resource"]["associated_data"] = json!("other");
    let b = env_json.to_string();
    assert!(matches!(
        gw.parse_callback(&resign(&platform, now, b.as_bytes()), b.as_bytes()),
        Err(CallbackError::Malformed(_))
    ));
    env.sim.stop().await;
}

#[actix_rt::test]
async fn duplicate_callbacks_share_the_event_id() {
    let env = start().await;
    env.knobs(json!({"duplicate_callbacks": 1})).await;
    let no = no("D");
    let pre = env.gateway.create_preauth(&preauth(&no)).await.expect("create");
    env.confirm(&package(&pre), "oD").await;
    let ids = eventually("two deliveries", || {
        let ids: Vec<String> =
            env.events().into_iter().filter(|e| e.out_order_no.as_deref() == Some(&no)).map(|e| e.event_id).collect();
        (ids.len() >= 2).then_some(ids)
    })
    .await;
    assert_eq!(ids[0], ids[1]);
    env.sim.stop().await;
}

#[actix_rt::test]
async fn unacknowledged_callback_is_retried_on_the_schedule() {
    let env = start().await;
    env.receiver.fail_first.store(2, Ordering::SeqCst);
    let no = no("R");
    let pre = env.gateway.create_preauth(&preauth(&no)).await.expect("create");
    env.confirm(&package(&pre), "oR").await;
    let attempts = eventually("an acknowledged third attempt", || {
        let a = env.sim.state.callbacks.attempts();
        a.iter().any(|a| a.acked).then_some(a)
    })
    .await;
    let statuses: Vec<(u32, u16)> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(statuses, vec![(1, 500), (2, 500), (3, 204)]);
    // 15 s between attempts, divided by the time scale of 1000.
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= chrono::Duration::milliseconds(14), "{gap:?}");
    let ids: Vec<String> = env.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id == &ids[0]));
    env.sim.stop().await;
}

#[actix_rt::test]
async fn knobs_map_to_declined_and_retryable() {
    let env = start().await;
    let gw = &env.gateway;
    env.knobs(json!({"decline": 1})).await;
    let no1 = no("K");
    assert!(
        matches!(gw.create_preauth(&preauth(&no1)).await, Err(PayError::Declined { code, .. }) if code == "RULE_LIMIT")
    );
    assert!(matches!(gw.query(&no1, None).await, Err(PayError::Declined { code, .. }) if code == "ORDER_NOT_EXIST"));

    env.knobs(json!({"server_error": 1})).await;
    assert!(matches!(gw.create_preauth(&preauth(&no1)).await, Err(PayError::Retryable(_))));
    assert!(gw.query(&no1, None).await.is_err(), "a 500 applies nothing");

    // Timeout: applied, answered after the client gave up (http_timeout_ms = 1000).
    env.knobs(json!({"timeout": 1, "hang_ms": 2500})).await;
    let no2 = no("T");
    assert!(matches!(gw.create_preauth(&preauth(&no2)).await, Err(PayError::Retryable(_))));
    assert_eq!(gw.query(&no2, None).await.expect("query"), PlatformState::Pending);
    // The retry with the identical body succeeds (idempotent create).
    gw.create_preauth(&preauth(&no2)).await.expect("retry");
    env.sim.stop().await;
}

/// A third-party client (PyPI `wechatpayv3`) against the simulator: see
/// `scripts/wechatpay_third_party.py`. Ignored by default: needs `python3` (or `HEFT_PYTHON`) with
/// `wechatpayv3` (`.ci/run` installs it and runs it).
#[actix_rt::test]
#[ignore]
async fn third_party_python_client() {
    let env = start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/wechatpay_third_party.py");
    let python = std::env::var("HEFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env("WECHAT_SIM_BASE", &env.base)
        .output()
        .await
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "third-party client failed");
    env.sim.stop().await;
}
