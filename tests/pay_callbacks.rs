//! Payment callbacks through Heft's own endpoints (`/pay/wechat/notify`, `/pay/alipay/notify`),
//! sent by the platform simulator Heft runs: verified, stored, applied once, answered in the
//! platform's form; forged ones refused with nothing changed; a confirmation that arrives after
//! the cancel never authorises.

mod common;

use common::{Profile, TestServer, eventually};
use heft::db::models::Payment;
use heft::db::{self, payments};
use heft::domain::payment::PaymentState;
use heft::domain::units::Fen;
use heft::pay::{CaptureLine, CaptureRequest, Channel, PreauthRequest};
use serde_json::{Value, json};

async fn knobs(s: &TestServer, knobs: Value) {
    let res = s.http.post(format!("{}/sim/knobs", s.sim_base())).json(&knobs).send().await.expect("knobs");
    assert!(res.status().is_success());
}

/// Sign a shopper in through the API; their user id.
async fn shopper(s: &TestServer, channel: Channel, uid: &str) -> i64 {
    let code = s.platform_login_code(channel.as_str(), uid).await;
    let res: Value = s
        .http
        .post(format!("{}/api/v1/auth/{channel}", s.base))
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("json");
    res["account"]["user_id"].as_i64().unwrap_or_else(|| panic!("sign in: {res}"))
}

/// Ask the platform for a pre-authorisation and record it, as the purchase flow will.
async fn preauth(s: &TestServer, channel: Channel, user_id: i64, payer: &str) -> (String, Value) {
    let (out_order_no, pre) = platform_preauth(s, channel, payer).await;
    record_payment(s, channel, user_id, &out_order_no, pre.platform_order_id).await;
    (out_order_no, pre.confirm)
}

/// Only the platform's side: Heft has not written the payment yet.
async fn platform_preauth(s: &TestServer, channel: Channel, payer: &str) -> (String, heft::pay::Preauth) {
    let out_order_no = format!("T{}{:08x}", channel.as_str().len(), rand::random::<u32>());
    let req = PreauthRequest {
        out_order_no: out_order_no.clone(),
        cap_fen: Fen(20_000),
        title: "智能售货柜购物".into(),
        device_id: "CAB-0001".into(),
        payer_id: payer.into(),
        attach: "test".into(),
    };
    let pre = s.heft.services.payments.get(channel).create_preauth(&req).await.expect("create pre-authorisation");
    (out_order_no, pre)
}

async fn record_payment(s: &TestServer, channel: Channel, user_id: i64, no: &str, platform_order_id: Option<String>) {
    let now = db::now();
    let row = Payment {
        out_order_no: no.to_string(),
        channel,
        user_id,
        state: PaymentState::Created,
        cap_fen: Fen(20_000),
        amount_fen: None,
        platform_order_id,
        payer_id: None,
        out_trade_no: None,
        transaction_id: None,
        created_at: now,
        updated_at: now,
    };
    s.heft.services.db.write(move |c| payments::create(c, &row)).await.expect("payment row");
}

/// The shopper confirms on the platform's page.
async fn confirm(s: &TestServer, channel: Channel, confirm: &Value, payer: &str) {
    let body = match channel {
        Channel::Wechat => json!({"package": confirm["extraData"]["package"], "openid": payer}),
        Channel::Alipay => json!({"orderStr": confirm["orderStr"], "user_id": payer}),
    };
    let res = s.http.post(format!("{}/sim/{channel}/confirm", s.sim_base())).json(&body).send().await.expect("confirm");
    let status = res.status();
    assert!(status.is_success(), "confirm: {status} {}", res.text().await.unwrap_or_default());
}

async fn payment(s: &TestServer, no: &str) -> Payment {
    let no = no.to_string();
    s.heft.services.db.run(move |c| payments::find(c, &no)).await.expect("db").expect("payment")
}

async fn outcomes(s: &TestServer, no: &str) -> Vec<String> {
    let no = no.to_string();
    s.heft
        .services
        .db
        .run(move |c| payments::events(c, &no))
        .await
        .expect("db")
        .into_iter()
        .map(|e| e.outcome.as_str().to_string())
        .collect()
}

async fn wait_state(s: &TestServer, no: &str, state: PaymentState) -> Payment {
    eventually(&format!("payment {no} {}", state.as_str()), || async {
        let p = payment(s, no).await;
        (p.state == state).then_some(p)
    })
    .await
}

async fn callbacks(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    for (channel, payer) in [(Channel::Wechat, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"), (Channel::Alipay, "2088102000300001")] {
        let user = shopper(&s, channel, payer).await;

        // create → confirm (each callback sent three times) → authorised once.
        knobs(&s, json!({"duplicate_callbacks": 2})).await;
        let (no, page) = preauth(&s, channel, user, payer).await;
        confirm(&s, channel, &page, payer).await;
        let p = wait_state(&s, &no, PaymentState::Authorized).await;
        assert_eq!(p.payer_id.as_deref(), Some(payer), "{channel}");
        let duplicates = format!("heft_payment_callbacks_total{{channel=\"{channel}\",outcome=\"duplicate\"}}");
        eventually("the duplicate copies arrive", || async { (s.metric(&duplicates).await >= 2.0).then_some(()) })
            .await;
        assert_eq!(outcomes(&s, &no).await, vec!["applied"], "{channel}: stored once, applied once");
        let order_no = no.clone();
        let events = s.heft.services.db.run(move |c| payments::events(c, &order_no)).await.expect("events");
        // The body as received, and what it says.
        match channel {
            Channel::Wechat => assert!(events[0].raw.contains("\"ciphertext\"") && events[0].resource.contains(&no)),
            Channel::Alipay => assert!(events[0].raw.contains("sign=") && events[0].resource.contains(&no)),
        }
        knobs(&s, json!({})).await;

        // Forged callbacks: 401, nothing stored.
        let url = format!("{}/pay/{channel}/notify", s.base);
        let forged = match channel {
            Channel::Wechat => s
                .http
                .post(&url)
                .header("Wechatpay-Timestamp", chrono::Utc::now().timestamp().to_string())
                .header("Wechatpay-Nonce", "n")
                .header("Wechatpay-Signature", "Zm9yZ2Vk")
                .header("Wechatpay-Serial", "PUB_KEY_ID_0112300001092025112500000000000000")
                .body(r#"{"id":"EV-1","event_type":"PAYSCORE.USER_PAID","resource":{}}"#),
            Channel::Alipay => s
                .http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("notify_id=x&notify_type=trade_status_sync&out_trade_no={no}&trade_status=TRADE_SUCCESS&total_amount=1.00&sign_type=RSA2&sign=Zm9yZ2Vk")),
        };
        let res = forged.send().await.expect("forged");
        assert_eq!(res.status().as_u16(), 401, "{channel}");
        let unsigned = s.http.post(&url).body("{}").send().await.expect("unsigned");
        assert_eq!(unsigned.status().as_u16(), 401, "{channel}");
        assert_eq!(outcomes(&s, &no).await.len(), 1);

        // capture → paid, from the platform's callback.
        let capture = CaptureRequest {
            out_order_no: no.clone(),
            out_trade_no: format!("{no}P"),
            platform_order_id: p.platform_order_id.clone(),
            payer_id: p.payer_id.clone(),
            lines: vec![CaptureLine { name: "可乐".into(), unit_fen: Fen(350), count: 2 }],
            total_fen: Fen(700),
            title: "智能售货柜购物".into(),
        };
        let trade_no = capture.out_trade_no.clone();
        let order_no = no.clone();
        s.heft
            .services
            .db
            .write(move |c| {
                payments::set_state(
                    c,
                    &order_no,
                    &[PaymentState::Authorized],
                    PaymentState::Capturing,
                    Some(&trade_no),
                    db::now(),
                )
            })
            .await
            .expect("capturing");
        s.heft.services.payments.get(channel).capture(&capture).await.expect("capture");
        let p = wait_state(&s, &no, PaymentState::Paid).await;
        assert_eq!(p.amount_fen, Some(Fen(700)), "{channel}");
        assert!(p.transaction_id.is_some());

        // Heft gives up on a pre-authorisation (its cancel to the platform lost in the race)
        // and the shopper confirms just then: the confirmation must not authorise; it releases
        // the hold on the platform instead.
        let (no, page) = preauth(&s, channel, user, payer).await;
        let order_no = no.clone();
        let moved = s
            .heft
            .services
            .db
            .write(move |c| {
                payments::set_state(c, &order_no, &[PaymentState::Created], PaymentState::Cancelled, None, db::now())
            })
            .await
            .expect("cancelled");
        assert!(moved);
        confirm(&s, channel, &page, payer).await;
        eventually("the late confirmation arrives", || async {
            outcomes(&s, &no).await.contains(&"release_needed".to_string()).then_some(())
        })
        .await;
        let gateway = s.heft.services.payments.get(channel).clone();
        eventually("the hold is released on the platform", || async {
            matches!(gateway.query(&no, None).await, Ok(heft::pay::PlatformState::Cancelled)).then_some(())
        })
        .await;
        assert_eq!(payment(&s, &no).await.state.as_str(), "cancelled", "{channel}: never authorised after the cancel");

        // A callback about a payment Heft has not written yet is not swallowed: the platform is
        // asked to send it again, and it applies once the payment exists.
        let unknown = format!("heft_payment_callbacks_total{{channel=\"{channel}\",outcome=\"unknown_payment\"}}");
        let before = s.metric(&unknown).await;
        let (no, pre) = platform_preauth(&s, channel, payer).await;
        confirm(&s, channel, &pre.confirm, payer).await;
        eventually("the callback is refused for now", || async { (s.metric(&unknown).await > before).then_some(()) })
            .await;
        record_payment(&s, channel, user, &no, pre.platform_order_id).await;
        wait_state(&s, &no, PaymentState::Authorized).await;
        assert_eq!(outcomes(&s, &no).await, vec!["applied"]);
    }
    s.stop().await;
}
both_profiles!(payment_callbacks, callbacks);
