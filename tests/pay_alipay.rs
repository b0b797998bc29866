//! The Alipay fund-auth adapter against the in-process payment simulator: real HTTP, real RSA2
//! signatures both ways, real notifies into a tiny receiver standing in for Heft's endpoint.
//! No database.

use heft::domain::units::Fen;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use heft::config::Config;
use heft::pay::alipay::{AlipayFundAuth, TIME_FORMAT, beijing_now, sign};
use heft::pay::sim::{RunningSim, SimState};
use heft::pay::{
    CallbackError, CallbackHeaders, CaptureLine, CaptureOutcome, CaptureRequest, PayError, PayEvent, PayEventKind,
    PaymentGateway, PlatformState, PreauthRequest, RefundRequest, RefundState, keys,
};
use serde_json::{Value, json};

#[path = "common/ports.rs"]
mod ports;
use ports::free_port;

fn config(extra: &[(&str, &str)]) -> Config {
    let sim = format!("127.0.0.1:{}", free_port());
    let mut env: Vec<(String, String)> = vec![
        ("HEFT__PAY_SIM__LISTEN".into(), sim.clone()),
        ("HEFT__PAY_SIM__TIME_SCALE".into(), "1000.0".into()),
        ("HEFT__PAY_SIM__STATE_FILE".into(), String::new()),
        ("HEFT__ALIPAY__GATEWAY_URL".into(), format!("http://{sim}/gateway.do")),
        ("HEFT__PAYMENTS__HTTP_TIMEOUT_MS".into(), "3000".into()),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    Config::from_toml_and_env(include_str!("../config.toml"), Path::new("config.toml"), env).expect("config")
}

/// What Heft's notify endpoint saw.
#[derive(Clone, Default)]
struct Seen {
    events: Arc<Mutex<Vec<PayEvent>>>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    rejected: Arc<Mutex<Vec<CallbackError>>>,
    /// Answer `fail` to this many verified notifies first.
    fail_next: Arc<AtomicU32>,
}

#[derive(Clone)]
struct Receiver {
    gateway: Arc<AlipayFundAuth>,
    seen: Seen,
}

async fn notify_endpoint(r: web::Data<Receiver>, body: web::Bytes) -> HttpResponse {
    r.seen.bodies.lock().expect("lock").push(body.to_vec());
    match r.gateway.parse_callback(&CallbackHeaders::default(), &body) {
        Ok(event) => {
            r.seen.events.lock().expect("lock").push(event);
            let fail = r.seen.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            HttpResponse::Ok().body(if fail { "fail" } else { "success" })
        }
        Err(e) => {
            r.seen.rejected.lock().expect("lock").push(e);
            HttpResponse::Unauthorized().body("fail")
        }
    }
}

struct Harness {
    config: Config,
    /// `None` only while it restarts.
    sim: Option<RunningSim>,
    gateway: Arc<AlipayFundAuth>,
    seen: Seen,
    base: String,
    http: reqwest::Client,
    receiver: actix_web::dev::ServerHandle,
}

impl Harness {
    /// POST a form to the gateway as is, and verify the signed answer: (response key, object).
    async fn gateway_answer(&self, url: String, form: String, method: &str) -> (String, Value) {
        let text = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded;charset=utf-8")
            .body(form)
            .send()
            .await
            .expect("post")
            .text()
            .await
            .expect("text");
        let platform = keys::load_public("sim", keys::sim::ALIPAY_PLATFORM_PUB).expect("key");
        let verified = sign::verify_response(&platform, &text, method).expect("a signed answer");
        (verified.key.to_string(), serde_json::from_str(verified.raw).expect("json"))
    }

    async fn start() -> Harness {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, &str)]) -> Harness {
        let config = config(extra);
        let sim = heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await.expect("sim");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let notify_url = format!("http://{}/alipay/notify", listener.local_addr().expect("addr"));
        let gateway = Arc::new(AlipayFundAuth::new(&config.alipay, &config.payments, notify_url).expect("gateway"));
        let seen = Seen::default();
        let receiver = Receiver { gateway: gateway.clone(), seen: seen.clone() };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(receiver.clone()))
                .route("/alipay/notify", web::post().to(notify_endpoint))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        let base = format!("http://{}", sim.addr);
        Harness { config, sim: Some(sim), gateway, seen, base, http: reqwest::Client::new(), receiver: handle }
    }

    async fn stop(mut self) {
        self.receiver.stop(false).await;
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
    }

    /// Stop the simulator and start it again on the same address and configuration.
    async fn restart_sim(&mut self) {
        if let Some(sim) = self.sim.take() {
            sim.stop().await;
        }
        let c = &self.config;
        self.sim = Some(heft::pay::sim::start(&c.pay_sim, &c.wechat, &c.alipay).await.expect("sim restarts"));
    }

    fn state(&self) -> &SimState {
        &self.sim.as_ref().expect("a running simulator").state
    }

    async fn hook(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.expect("hook");
        let status = res.status().as_u16();
        (status, res.json().await.expect("hook json"))
    }

    fn events(&self) -> Vec<PayEvent> {
        self.seen.events.lock().expect("lock").clone()
    }

    /// Wait for a verified event matching `f`.
    async fn event(&self, what: &str, f: impl Fn(&PayEvent) -> bool) -> PayEvent {
        eventually(what, || self.events().into_iter().find(|e| f(e))).await
    }

    /// create → the shopper pays the freeze → the freeze notify: (auth_no, payer).
    async fn authorized(&self, out_order_no: &str, cap_fen: i64, user: &str) -> (String, String) {
        let pre = self.gateway.create_preauth(&preauth(out_order_no, cap_fen)).await.expect("create");
        let (status, body) =
            self.hook("/sim/alipay/confirm", json!({ "orderStr": pre.confirm["orderStr"], "user_id": user })).await;
        assert_eq!(status, 200, "{body}");
        let event = self
            .event("freeze notify", |e| {
                e.event_type == "fund_auth_freeze" && e.out_order_no.as_deref() == Some(out_order_no)
            })
            .await;
        match event.kind {
            PayEventKind::Authorized { platform_order_id: Some(auth_no), payer_id: Some(payer) } => {
                assert_eq!(payer, user);
                assert_eq!(Some(auth_no.as_str()), body["auth_no"].as_str());
                (auth_no, payer)
            }
            other => panic!("freeze notify {other:?}"),
        }
    }
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn preauth(out_order_no: &str, cap_fen: i64) -> PreauthRequest {
    PreauthRequest {
        out_order_no: out_order_no.into(),
        cap_fen: Fen(cap_fen),
        title: "智能售货柜押金".into(),
        device_id: "CAB-1".into(),
        payer_id: String::new(),
        attach: "a".into(),
    }
}

fn capture(out_order_no: &str, out_trade_no: &str, auth_no: &str, payer: &str, lines: &[(i64, i64)]) -> CaptureRequest {
    let lines: Vec<CaptureLine> = lines
        .iter()
        .map(|&(unit_fen, count)| CaptureLine { name: "可乐".into(), unit_fen: Fen(unit_fen), count })
        .collect();
    CaptureRequest {
        out_order_no: out_order_no.into(),
        out_trade_no: out_trade_no.into(),
        platform_order_id: Some(auth_no.into()),
        payer_id: Some(payer.into()),
        total_fen: lines.iter().map(CaptureLine::amount_fen).sum(),
        lines,
        title: "智能售货柜购物 a/b".into(),
    }
}

#[actix_rt::test]
async fn login_code_gives_the_user_id_once() {
    let h = Harness::start().await;
    let (_, body) = h.hook("/sim/alipay/login", json!({ "user_id": "2088000000000042" })).await;
    let code = body["auth_code"].as_str().expect("code").to_string();
    assert_eq!(h.gateway.login(&code).await.expect("login").uid, "2088000000000042");
    match h.gateway.login(&code).await {
        Err(PayError::Declined { code, .. }) => assert_eq!(code, "isv.code-invalid"),
        other => panic!("a used code: {other:?}"),
    }
    // No user given: a fresh 2088… id.
    let (_, body) = h.hook("/sim/alipay/login", json!({})).await;
    let uid = h.gateway.login(body["auth_code"].as_str().expect("code")).await.expect("login").uid;
    assert!(uid.starts_with("2088") && uid.len() == 16, "{uid}");
    h.stop().await;
}

#[actix_rt::test]
async fn freeze_capture_and_query_paid() {
    let h = Harness::start().await;
    let pre = h.gateway.create_preauth(&preauth("AF1", 20000)).await.expect("create");
    assert_eq!(pre.platform_order_id, None);
    let order_str = pre.confirm["orderStr"].as_str().expect("orderStr").to_string();
    assert!(order_str.contains("method=alipay.fund.auth.order.app.freeze") && order_str.contains("&sign="));
    // Not paid yet: Alipay has no record (documented as Declined).
    assert!(matches!(h.gateway.query("AF1", None).await, Err(PayError::Declined { .. })));

    let (auth_no, payer) = h.authorized("AF1", 20000, "2088102000300001").await;
    assert_eq!(
        h.gateway.query("AF1", None).await.expect("query"),
        PlatformState::Authorized { platform_order_id: Some(auth_no.clone()), payer_id: Some(payer.clone()) }
    );

    // Checked before sending.
    let mut bad = capture("AF1", "AP1", &auth_no, &payer, &[(450, 2), (350, 1)]);
    bad.total_fen += Fen(1);
    assert!(matches!(h.gateway.capture(&bad).await, Err(PayError::Permanent(_))));
    assert!(matches!(
        h.gateway.capture(&capture("AF1", "AP1", &auth_no, &payer, &[])).await,
        Err(PayError::Permanent(_))
    ));
    let mut no_auth = capture("AF1", "AP1", &auth_no, &payer, &[(450, 2)]);
    no_auth.platform_order_id = None;
    assert!(matches!(h.gateway.capture(&no_auth).await, Err(PayError::Permanent(_))));

    let req = capture("AF1", "AP1", &auth_no, &payer, &[(450, 2), (350, 1)]);
    let CaptureOutcome::Paid { transaction_id } = h.gateway.capture(&req).await.expect("capture") else {
        panic!("Alipay answers synchronously")
    };
    let paid = h.event("trade notify", |e| e.event_type == "trade_status_sync").await;
    assert_eq!(paid.out_order_no.as_deref(), Some("AP1"));
    assert_eq!(paid.kind, PayEventKind::Paid { amount_fen: Fen(1250), transaction_id: transaction_id.clone() });
    assert_eq!(
        h.gateway.query("AF1", Some("AP1")).await.expect("query"),
        PlatformState::Paid { amount_fen: Fen(1250), transaction_id: transaction_id.clone() }
    );
    // A retried capture (same out_trade_no) is the same trade, not a second one.
    assert_eq!(h.gateway.capture(&req).await.expect("retry"), CaptureOutcome::Paid { transaction_id });
    // COMPLETE released the rest; nothing more can be charged.
    let more = capture("AF1", "AP2", &auth_no, &payer, &[(100, 1)]);
    assert!(matches!(h.gateway.capture(&more).await, Err(PayError::Declined { .. })));
    // The stored evidence is the form as JSON.
    let resource: Value = serde_json::from_str(&paid.resource).expect("json");
    assert_eq!(resource["total_amount"], "12.50");
    h.stop().await;
}

/// A trade refunded in part: at once (`fund_change` Y); the same request again moves no money and
/// is still the same refund; more than is left is refused; the bill shows the refund.
#[actix_rt::test]
async fn refund_a_trade() {
    let h = Harness::start().await;
    h.gateway.create_preauth(&preauth("AR1", 20000)).await.expect("create");
    let (auth_no, payer) = h.authorized("AR1", 20000, "2088102000300009").await;
    let CaptureOutcome::Paid { transaction_id } =
        h.gateway.capture(&capture("AR1", "ART1", &auth_no, &payer, &[(450, 2)])).await.expect("capture")
    else {
        panic!("Alipay answers synchronously")
    };
    let req = RefundRequest {
        out_refund_no: "AR1R1".into(),
        out_order_no: "AR1".into(),
        out_trade_no: "ART1".into(),
        transaction_id: transaction_id.clone(),
        paid_fen: Fen(900),
        refund_fen: Fen(450),
        reason: "复核退款".into(),
    };
    assert_eq!(h.gateway.query_refund(&req).await.expect("none yet"), RefundState::Unknown);
    let done = RefundState::Succeeded { refund_id: transaction_id.clone() };
    assert_eq!(h.gateway.refund(&req).await.expect("refund"), done);
    assert_eq!(h.gateway.refund(&req).await.expect("again"), done, "a repeat is the same refund");
    assert_eq!(h.gateway.query_refund(&req).await.expect("query"), done);
    let too_much = RefundRequest { out_refund_no: "AR1R2".into(), refund_fen: Fen(500), ..req.clone() };
    assert!(matches!(h.gateway.refund(&too_much).await, Err(PayError::Declined { .. })));
    // The trade's notify hears of the refund; it changes nothing about the payment.
    let notified =
        h.event("refund notify", |e| e.event_type == "trade_status_sync" && e.kind == PayEventKind::Other).await;
    assert!(notified.resource.contains("gmt_refund"), "{}", notified.resource);
    assert_eq!(h.hook("/sim/clock", json!({ "offset_s": NEXT_MORNING_S })).await.0, 200);
    let rows = h.gateway.download_bill(beijing_now().date()).await.expect("bill").rows;
    let mine: Vec<i64> = rows.iter().filter(|r| r.transaction_id == transaction_id).map(|r| r.amount_fen).collect();
    assert_eq!(mine, [900, -450], "{rows:?}");
    h.stop().await;
}

#[actix_rt::test]
async fn cancel_before_and_after_the_freeze() {
    let h = Harness::start().await;
    // Before: operation.cancel closes it, and the orderStr can no longer be paid.
    let pre = h.gateway.create_preauth(&preauth("AF-EARLY", 20000)).await.expect("create");
    h.gateway.cancel("AF-EARLY", None, "timeout").await.expect("cancel");
    assert_eq!(h.gateway.query("AF-EARLY", None).await.expect("query"), PlatformState::Cancelled);
    let (status, body) = h.hook("/sim/alipay/confirm", json!({ "orderStr": pre.confirm["orderStr"] })).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("ORDER_ALREADY_CLOSED")));
    h.gateway.cancel("AF-EARLY", None, "timeout").await.expect("cancel again is fine");

    // After: the whole freeze is unfrozen, with a notify.
    let (auth_no, _) = h.authorized("AF-LATE", 15000, "2088102000300002").await;
    h.gateway.cancel("AF-LATE", Some(&auth_no), "nothing taken").await.expect("unfreeze");
    assert_eq!(h.gateway.query("AF-LATE", None).await.expect("query"), PlatformState::Cancelled);
    let released = h.event("unfreeze notify", |e| e.event_type == "fund_auth_unfreeze").await;
    assert_eq!((released.out_order_no.as_deref(), released.kind), (Some("AF-LATE"), PayEventKind::Released));
    h.gateway.cancel("AF-LATE", Some(&auth_no), "again").await.expect("idempotent");
    h.stop().await;
}

#[actix_rt::test]
async fn forged_requests_and_responses_are_refused() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong_key = dir.path().join("wrong.key.pem");
    std::fs::write(&wrong_key, keys::sim::WECHAT_MERCHANT_KEY).expect("write");
    let wrong_pub = dir.path().join("wrong.pub.pem");
    std::fs::write(&wrong_pub, keys::sim::ALIPAY_APP_PUB).expect("write");

    // Signed with a key that is not the application's.
    let mut cfg = h.config.alipay.clone();
    cfg.app_key_file = wrong_key.to_string_lossy().into_owned();
    let forged = AlipayFundAuth::new(&cfg, &h.config.payments, String::new()).expect("gateway");
    match forged.login("whatever").await {
        Err(PayError::Permanent(m)) => assert!(m.contains("isv.invalid-signature"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Unknown app.
    let mut cfg = h.config.alipay.clone();
    cfg.app_id = "2021999999999999".into();
    let stranger = AlipayFundAuth::new(&cfg, &h.config.payments, String::new()).expect("gateway");
    match stranger.query("X", None).await {
        Err(PayError::Permanent(m)) => assert!(m.contains("isv.invalid-app-id"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A response not signed by Alipay's key is not believed.
    let mut cfg = h.config.alipay.clone();
    cfg.alipay_public_key_file = wrong_pub.to_string_lossy().into_owned();
    let gullible = AlipayFundAuth::new(&cfg, &h.config.payments, String::new()).expect("gateway");
    match gullible.query("X", None).await {
        Err(PayError::Permanent(m)) => assert!(m.contains("signature does not verify"), "{m}"),
        other => panic!("{other:?}"),
    }

    // On the wire: a tampered parameter after signing.
    let now = beijing_now().format(TIME_FORMAT).to_string();
    let params = vec![
        ("app_id", "2021000000000001"),
        ("method", "alipay.trade.query"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", &now),
        ("version", "1.0"),
        ("biz_content", r#"{"out_trade_no":"AP1"}"#),
    ];
    let app_key = keys::load_private("sim", keys::sim::ALIPAY_APP_KEY).expect("key");
    let s = sign::sign_request(&app_key, params.clone());
    let mut wire: Vec<(&str, &str)> = params
        .iter()
        .map(|&(k, v)| if k == "biz_content" { (k, r#"{"out_trade_no":"AP2"}"#) } else { (k, v) })
        .collect();
    wire.push(("sign", &s));
    let form = serde_urlencoded::to_string(&wire).expect("form");
    let (key, err) = h.gateway_answer(format!("{}/gateway.do", h.base), form, "alipay.trade.query").await;
    // Under the method's own key, as Alipay answers: SDKs look nowhere else.
    assert_eq!(key, "alipay_trade_query_response");
    assert_eq!((err["code"].as_str(), err["sub_code"].as_str()), (Some("40002"), Some("isv.invalid-signature")));
    h.stop().await;
}

#[actix_rt::test]
async fn forged_or_tampered_notifies_fail_verification() {
    let h = Harness::start().await;
    h.authorized("AF-N", 20000, "2088102000300003").await;
    let real = h.seen.bodies.lock().expect("lock")[0].clone();
    let headers = CallbackHeaders::default();
    assert!(h.gateway.parse_callback(&headers, &real).is_ok());

    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&real).expect("form");
    let reencode = |f: &[(String, String)]| serde_urlencoded::to_string(f).expect("form").into_bytes();
    // Tampered amount.
    let tampered: Vec<(String, String)> =
        form.iter().map(|(k, v)| (k.clone(), if k == "amount" { "1.00".into() } else { v.clone() })).collect();
    assert!(matches!(h.gateway.parse_callback(&headers, &reencode(&tampered)), Err(CallbackError::Unverified(_))));
    // No sign.
    let unsigned: Vec<(String, String)> = form.iter().filter(|(k, _)| k != "sign").cloned().collect();
    assert!(matches!(h.gateway.parse_callback(&headers, &reencode(&unsigned)), Err(CallbackError::Unverified(_))));
    // Re-signed with the application's key (anyone could): not Alipay.
    let app_key = keys::load_private("sim", keys::sim::ALIPAY_APP_KEY).expect("key");
    let mut forged = unsigned.clone();
    forged.push(("sign".into(), sign::sign_notify(&app_key, unsigned.iter().map(|(k, v)| (k.as_str(), v.as_str())))));
    assert!(matches!(h.gateway.parse_callback(&headers, &reencode(&forged)), Err(CallbackError::Unverified(_))));
    // Properly signed by Alipay, but for another app.
    let platform_key = keys::load_private("sim", keys::sim::ALIPAY_PLATFORM_KEY).expect("key");
    let mut other: Vec<(String, String)> = unsigned
        .iter()
        .map(|(k, v)| (k.clone(), if k == "app_id" { "2021999999999999".into() } else { v.clone() }))
        .collect();
    let s = sign::sign_notify(&platform_key, other.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    other.push(("sign".into(), s));
    match h.gateway.parse_callback(&headers, &reencode(&other)) {
        Err(CallbackError::Unverified(m)) => assert!(m.contains("app_id"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.gateway.parse_callback(&headers, b"%%%"),
        Err(CallbackError::Unverified(_) | CallbackError::Malformed(_))
    ));
    h.stop().await;
}

#[actix_rt::test]
async fn duplicate_notifies_carry_the_same_notify_id() {
    let h = Harness::start().await;
    h.state().knob(|k| k.duplicate_callbacks = 1);
    h.authorized("AF-D", 20000, "2088102000300004").await;
    let twice = eventually("the duplicate", || {
        let freezes: Vec<PayEvent> = h.events().into_iter().filter(|e| e.event_type == "fund_auth_freeze").collect();
        (freezes.len() == 2).then_some(freezes)
    })
    .await;
    assert_eq!(twice[0].event_id, twice[1].event_id);
    assert_eq!(twice[0], twice[1]);
    h.stop().await;
}

#[actix_rt::test]
async fn unacknowledged_notifies_are_retried_on_the_schedule() {
    let h = Harness::start().await;
    h.seen.fail_next.store(1, Ordering::SeqCst);
    h.authorized("AF-R", 20000, "2088102000300005").await;
    let attempts = eventually("the retry", || {
        let a: Vec<_> =
            h.state().callbacks.attempts().into_iter().filter(|a| a.label.contains("fund_auth_freeze")).collect();
        (a.len() == 2).then_some(a)
    })
    .await;
    assert!(!attempts[0].acked && attempts[1].acked, "{attempts:?}");
    assert_eq!((attempts[0].attempt, attempts[1].attempt), (1, 2));
    // First pause of Alipay's schedule is 240 s; at 1000× that is 240 ms.
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= chrono::Duration::milliseconds(200), "{gap}");
    let freezes: Vec<PayEvent> = h.events().into_iter().filter(|e| e.event_type == "fund_auth_freeze").collect();
    assert_eq!(freezes.len(), 2);
    assert_eq!(freezes[0].event_id, freezes[1].event_id);
    h.stop().await;
}

#[actix_rt::test]
async fn todays_bill_lists_the_trades() {
    let h = Harness::start().await;
    let mut expected = Vec::new();
    for (i, lines) in [vec![(450, 2), (350, 1)], vec![(1999, 1)]].into_iter().enumerate() {
        let order = format!("AF-B{i}");
        let (auth_no, payer) = h.authorized(&order, 20000, "2088102000300006").await;
        let req = capture(&order, &format!("AP-B{i}"), &auth_no, &payer, &lines);
        let CaptureOutcome::Paid { transaction_id } = h.gateway.capture(&req).await.expect("capture") else {
            panic!("paid")
        };
        expected.push((transaction_id, req.out_trade_no.clone(), req.total_fen.0));
    }
    let today = beijing_now().date();
    // Alipay does not serve the current day: not an empty bill, one not made yet.
    match h.gateway.download_bill(today).await {
        Err(PayError::Retryable(m)) => assert!(m.contains("not published yet"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.hook("/sim/clock", json!({ "offset_s": NEXT_MORNING_S })).await.0, 200);
    let bill = h.gateway.download_bill(today).await.expect("bill");
    // The file as served (a zip) is kept, to show what the platform said.
    assert!(bill.raw.starts_with(b"PK"), "{} bytes", bill.raw.len());
    let rows = bill.rows;
    let mut got: Vec<(String, String, i64)> =
        rows.iter().map(|r| (r.transaction_id.clone(), r.out_order_no.clone(), r.amount_fen)).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(rows.iter().all(|r| r.status == "交易" && r.time.date() == today));
    assert_eq!(rows.iter().find(|r| r.amount_fen == 1250).map(|r| r.fee_fen), Some(8));
    let empty_day = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("date");
    assert_eq!(h.gateway.download_bill(empty_day).await.expect("empty bill").rows, vec![]);
    h.stop().await;
}

#[actix_rt::test]
async fn knobs_map_to_declined_retryable_and_recovery() {
    let h = Harness::start_with(&[("HEFT__PAYMENTS__HTTP_TIMEOUT_MS", "1500")]).await;
    let user = "2088102000300007";

    // decline: refused, nothing applied; the same trade later succeeds.
    let (auth_no, payer) = h.authorized("AF-K1", 20000, user).await;
    let req = capture("AF-K1", "AP-K1", &auth_no, &payer, &[(300, 1)]);
    h.state().knob(|k| k.decline = 1);
    match h.gateway.capture(&req).await {
        Err(PayError::Declined { code, .. }) => assert_eq!(code, "ACQ.BUYER_BALANCE_NOT_ENOUGH"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.gateway.query("AF-K1", Some("AP-K1")).await, Ok(PlatformState::Authorized { .. })));
    assert!(matches!(h.gateway.capture(&req).await, Ok(CaptureOutcome::Paid { .. })));

    // server_error: retryable, nothing applied.
    let (auth_no, payer) = h.authorized("AF-K2", 20000, user).await;
    let req = capture("AF-K2", "AP-K2", &auth_no, &payer, &[(300, 1)]);
    h.state().knob(|k| k.server_error = 1);
    assert!(matches!(h.gateway.capture(&req).await, Err(PayError::Retryable(_))));
    assert!(matches!(h.gateway.query("AF-K2", Some("AP-K2")).await, Ok(PlatformState::Authorized { .. })));
    assert!(matches!(h.gateway.capture(&req).await, Ok(CaptureOutcome::Paid { .. })));

    // timeout: retryable, but applied; the retry finds the same trade.
    let (auth_no, payer) = h.authorized("AF-K3", 20000, user).await;
    let req = capture("AF-K3", "AP-K3", &auth_no, &payer, &[(300, 1)]);
    h.state().knob(|k| {
        k.timeout = 1;
        k.hang_ms = 4000;
    });
    assert!(matches!(h.gateway.capture(&req).await, Err(PayError::Retryable(_))));
    let Ok(PlatformState::Paid { transaction_id, amount_fen: Fen(300) }) =
        h.gateway.query("AF-K3", Some("AP-K3")).await
    else {
        panic!("the timed-out capture was applied")
    };
    assert_eq!(h.gateway.capture(&req).await, Ok(CaptureOutcome::Paid { transaction_id }));

    // fail_then_succeed: declined at first, a retry after recover_ms succeeds.
    let (auth_no, payer) = h.authorized("AF-K4", 20000, user).await;
    let req = capture("AF-K4", "AP-K4", &auth_no, &payer, &[(300, 1)]);
    h.state().knob(|k| {
        k.fail_then_succeed = 1;
        k.recover_ms = 300;
    });
    match h.gateway.capture(&req).await {
        Err(PayError::Declined { code, .. }) => assert_eq!(code, "ACQ.PAYMENT_FAIL"),
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let paid = loop {
        match h.gateway.capture(&req).await {
            Ok(CaptureOutcome::Paid { transaction_id }) => break transaction_id,
            Err(PayError::Declined { code, .. }) if code == "ACQ.PAYMENT_FAIL" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    };
    let paid_event = h
        .event("trade notify", |e| e.out_order_no.as_deref() == Some("AP-K4") && e.event_type == "trade_status_sync")
        .await;
    assert_eq!(paid_event.kind, PayEventKind::Paid { amount_fen: Fen(300), transaction_id: paid });
    h.stop().await;
}

/// Seconds that take the simulator's clock from any time today to tomorrow after 09:00 (Beijing),
/// when today's bill is out.
const NEXT_MORNING_S: i64 = 33 * 3600;

/// Sign `params` with the sim application key and return them with `sign` added.
fn app_signed(params: &[(&str, &str)]) -> Vec<(String, String)> {
    let app_key = keys::load_private("sim", keys::sim::ALIPAY_APP_KEY).expect("key");
    let mut out: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.push(("sign".into(), sign::sign_request(&app_key, params.iter().copied())));
    out
}

#[actix_rt::test]
async fn query_string_and_form_are_merged_like_the_java_sdk_sends_them() {
    let h = Harness::start().await;
    let now = beijing_now().format(TIME_FORMAT).to_string();
    let signed = app_signed(&[
        ("app_id", "2021000000000001"),
        ("method", "alipay.trade.query"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", &now),
        ("version", "1.0"),
        ("biz_content", r#"{"out_trade_no":"NOPE"}"#),
    ]);
    // System parameters (and sign) in the URL, biz_content in the body.
    let (body, system): (Vec<_>, Vec<_>) = signed.into_iter().partition(|(k, _)| k == "biz_content");
    let url = format!("{}/gateway.do?{}", h.base, serde_urlencoded::to_string(&system).expect("query"));
    let form = serde_urlencoded::to_string(&body).expect("form");
    let (key, answer) = h.gateway_answer(url, form, "alipay.trade.query").await;
    assert_eq!(key, "alipay_trade_query_response");
    assert_eq!((answer["code"].as_str(), answer["sub_code"].as_str()), (Some("40004"), Some("ACQ.TRADE_NOT_EXIST")));
    h.stop().await;
}

/// The gateway as python-alipay-sdk meets it: GET with every parameter in the query, a
/// `timestamp` that must be near Beijing time, refusals under the method's key, and an unknown
/// app answered without a signature.
#[actix_rt::test]
async fn the_gateway_answers_get_checks_timestamps_and_keys_refusals_by_method() {
    let h = Harness::start().await;
    let platform = keys::load_public("sim", keys::sim::ALIPAY_PLATFORM_PUB).expect("key");
    let get = |params: Vec<(String, String)>| {
        let url = format!("{}/gateway.do?{}", h.base, serde_urlencoded::to_string(&params).expect("query"));
        let http = h.http.clone();
        async move { http.get(url).send().await.expect("get").text().await.expect("text") }
    };
    let call = |method: &'static str, timestamp: String, app_id: &'static str, biz: &'static str| {
        app_signed(&[
            ("app_id", app_id),
            ("method", method),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", &timestamp),
            ("version", "1.0"),
            ("biz_content", biz),
        ])
    };
    let now = || beijing_now().format(TIME_FORMAT).to_string();
    const DETAIL: &str = "alipay.fund.auth.operation.detail.query";

    // GET works, and a freeze nobody made is AUTH_ORDER_NOT_EXIST.
    let text =
        get(call(DETAIL, now(), "2021000000000001", r#"{"out_order_no":"AF-NONE","out_request_no":"AF-NONE"}"#)).await;
    let v = sign::verify_response(&platform, &text, DETAIL).expect("signed");
    assert_eq!(v.key, "alipay_fund_auth_operation_detail_query_response");
    let answer: Value = serde_json::from_str(v.raw).expect("json");
    assert_eq!(answer["sub_code"], "AUTH_ORDER_NOT_EXIST", "{answer}");

    // A freeze that exists, asked about an operation that does not: AUTH_OPERATION_NOT_EXIST.
    h.authorized("AF-OPS", 5000, "2088102000300009").await;
    let text =
        get(call(DETAIL, now(), "2021000000000001", r#"{"out_order_no":"AF-OPS","out_request_no":"AF-OPS-X"}"#)).await;
    let answer: Value =
        serde_json::from_str(sign::verify_response(&platform, &text, DETAIL).expect("signed").raw).expect("json");
    assert_eq!(answer["sub_code"], "AUTH_OPERATION_NOT_EXIST", "{answer}");

    // A request signed an hour ago, or with a timestamp in another format, is refused.
    let hour_ago = (beijing_now() - chrono::Duration::hours(1)).format(TIME_FORMAT).to_string();
    for stale in [hour_ago, "2026/12/03 12:00:00".to_string()] {
        let text = get(call(DETAIL, stale.clone(), "2021000000000001", r#"{"out_order_no":"AF-OPS"}"#)).await;
        let answer: Value =
            serde_json::from_str(sign::verify_response(&platform, &text, DETAIL).expect("signed").raw).expect("json");
        assert_eq!(
            (answer["code"].as_str(), answer["sub_code"].as_str()),
            (Some("40002"), Some("isv.invalid-timestamp")),
            "{stale}"
        );
    }

    // An app the gateway does not know: refused under the method's key, with no signature.
    let text = get(call(DETAIL, now(), "2021999999999999", r#"{"out_order_no":"AF-OPS"}"#)).await;
    let body: Value = serde_json::from_str(&text).expect("json");
    assert!(body.get("sign").is_none(), "{body}");
    assert_eq!(body["alipay_fund_auth_operation_detail_query_response"]["sub_code"], "isv.invalid-app-id", "{body}");
    h.stop().await;
}

#[actix_rt::test]
async fn a_stale_freeze_string_cannot_be_paid() {
    let h = Harness::start().await;
    let biz = r#"{"out_order_no":"AF-OLD","out_request_no":"AF-OLD","order_title":"t","amount":"1.00","product_code":"PRE_AUTH_ONLINE","timeout_express":"1m"}"#;
    let signed = app_signed(&[
        ("app_id", "2021000000000001"),
        ("method", "alipay.fund.auth.order.app.freeze"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", "2025-01-01 12:00:00"),
        ("version", "1.0"),
        ("biz_content", biz),
    ]);
    let order_str = serde_urlencoded::to_string(&signed).expect("orderStr");
    let (status, body) = h.hook("/sim/alipay/confirm", json!({ "orderStr": order_str })).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("ORDER_EXPIRED")));
    // And a tampered one is refused like a forged gateway request.
    let tampered = order_str.replace("1.00", "0.01");
    let (status, body) = h.hook("/sim/alipay/confirm", json!({ "orderStr": tampered })).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("isv.invalid-signature")));
    h.stop().await;
}

/// The two public Alipay SDKs for Python against the simulator, changing nothing but the
/// gateway URL: see `scripts/alipay_third_party.py`. Ignored by default: needs `python3` with
/// `python-alipay-sdk` and `alipay-sdk-python` (`.ci/run` installs them and runs it).
#[actix_rt::test]
#[ignore]
async fn third_party_python_clients() {
    let h = Harness::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/alipay_third_party.py");
    let python = std::env::var("HEFT_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env("ALIPAY_SIM_BASE", &h.base)
        .output()
        .await
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a third-party Alipay client failed");
    assert!(stdout.contains("all steps passed"), "{stdout}");
    h.stop().await;
}

/// The platform does not forget because it restarted: with `pay_sim.state_file` a new simulator
/// on the same file still knows the hold, the trade, the refund and the bill, and goes on with
/// fresh ids.
#[actix_rt::test]
async fn a_restarted_simulator_remembers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pay-sim.db");
    let mut h = Harness::start_with(&[("HEFT__PAY_SIM__STATE_FILE", file.to_str().expect("utf8"))]).await;
    let (auth_no, payer) = h.authorized("AF-KEEP", 20000, "2088102000300011").await;
    let CaptureOutcome::Paid { transaction_id } =
        h.gateway.capture(&capture("AF-KEEP", "AP-KEEP", &auth_no, &payer, &[(450, 2)])).await.expect("capture")
    else {
        panic!("Alipay answers synchronously")
    };
    let refund = RefundRequest {
        out_refund_no: "AP-KEEPR1".into(),
        out_order_no: "AF-KEEP".into(),
        out_trade_no: "AP-KEEP".into(),
        transaction_id: transaction_id.clone(),
        paid_fen: Fen(900),
        refund_fen: Fen(450),
        reason: "restart".into(),
    };
    let refunded = h.gateway.refund(&refund).await.expect("refund");

    h.restart_sim().await;
    assert_eq!(
        h.gateway.query("AF-KEEP", Some("AP-KEEP")).await.expect("query"),
        PlatformState::Paid { amount_fen: Fen(900), transaction_id: transaction_id.clone() }
    );
    assert_eq!(h.gateway.query_refund(&refund).await.expect("refund query"), refunded);
    // A repeated capture is still the same trade, not a second charge.
    let again = h.gateway.capture(&capture("AF-KEEP", "AP-KEEP", &auth_no, &payer, &[(450, 2)])).await;
    assert_eq!(again.expect("repeat"), CaptureOutcome::Paid { transaction_id: transaction_id.clone() });
    // New holds get new numbers.
    let (second, _) = h.authorized("AF-KEEP2", 5000, "2088102000300011").await;
    assert_ne!(second, auth_no);
    // And the day's bill, once out, has the trade and its refund.
    assert_eq!(h.hook("/sim/clock", json!({ "offset_s": NEXT_MORNING_S })).await.0, 200);
    let rows = h.gateway.download_bill(beijing_now().date()).await.expect("bill").rows;
    let mine: Vec<i64> = rows.iter().filter(|r| r.transaction_id == transaction_id).map(|r| r.amount_fen).collect();
    assert_eq!(mine, [900, -450], "{rows:?}");
    h.stop().await;
}
